/* SPDX-License-Identifier: MIT */
/* core_internal.h - what libhak-core's files share: the tiers above tiny,
 * the configuration, and the misuse report. */
#ifndef HAK_CORE_INTERNAL_H
#define HAK_CORE_INTERNAL_H

#include "hak_tiny.h"
#include "hakmem.h"

#include <stdbool.h>
#include <stddef.h>

/* ---- configuration (config.c) ------------------------------------------ */
enum { HAK_REPORT_OFF = 0, HAK_REPORT_TEXT = 1, HAK_REPORT_JSON = 2 };

struct hak_config {
  int stats;                /* HAKMEM_STATS: report at exit */
  bool verbose;             /* HAKMEM_VERBOSE */
  unsigned superslab_cache; /* HAKMEM_SUPERSLAB_CACHE */
  unsigned superslab_reserve;
  size_t huge_cache_mb;     /* HAKMEM_HUGE_CACHE_MB */
  bool thp;                 /* HAKMEM_THP */
  unsigned tiny_dirty_slabs;/* HAKMEM_TINY_DIRTY_SLABS */
  unsigned mid_dirty_slabs; /* free mid slabs kept resident at most (mallopt) */
  unsigned purge_delay_ms;  /* HAKMEM_PURGE_DELAY_MS */
  size_t mid_cache_kb;      /* HAKMEM_MID_CACHE_KB, per class and thread */
  size_t stats_signal;      /* HAKMEM_STATS_SIGNAL: print the report on it */
  bool guard_pages;         /* HAKMEM_GUARD_PAGES: no-access page after large blocks */
  unsigned guard_sample;    /* HAKMEM_GUARD_SAMPLE: guard 1 allocation in N */
  unsigned guard_slots;     /* HAKMEM_GUARD_SLOTS: slots of the guarded pool */
  size_t guard_max;         /* HAKMEM_GUARD_MAX: largest block guarded */
  char stats_file[256];     /* HAKMEM_STATS_FILE: reports go there ("" stderr) */
  unsigned checks;          /* HAKMEM_CHECKS: 0 (fast build), 1 every per-call
                               check, 2 also audits and guard pages */
};

/* The configuration in force: defaults in the fast build, the defaults
 * overridden by HAKMEM_* variables (read once) in the others. */
HAK_INTERNAL extern struct hak_config hak_config;
/* Parses the HAKMEM_* variables into cfg, warning on stderr about bad
 * values; does nothing in the fast build. */
HAK_INTERNAL void hak_config_load(struct hak_config *cfg);
HAK_INTERNAL void hak_config_defaults(struct hak_config *cfg);
/* Hands hak_config to the layers (their bounds and delays): at start-up,
 * and again when mallopt changes it. */
HAK_INTERNAL void hak_config_apply(void);

/* Start-up: configuration, fork handlers.  Idempotent and cheap to call
 * again; called from a constructor and from the slow paths, whichever runs
 * first. */
HAK_INTERNAL void hak_init(void);
extern int hak_initialized;
static inline void hak_ensure_init(void) {
  if (HAK_UNLIKELY(!__atomic_load_n(&hak_initialized, __ATOMIC_ACQUIRE)))
    hak_init();
}

/* ---- valgrind (HAKMEM_VALGRIND builds) ------------------------------------ */
#define VG_ENTER() HAK_VG_QUIET_BEGIN()
#define VG_LEAVE() HAK_VG_QUIET_END()
#if defined(HAK_VALGRIND) && HAK_VALGRIND
#define VG_ALLOC(p, zeroed)                                                    \
  do {                                                                         \
    if (p)                                                                     \
      VALGRIND_MALLOCLIKE_BLOCK((p), hak_usable_size(p), 0, (zeroed));         \
  } while (0)
#define VG_FREE(p)                                                             \
  do {                                                                         \
    if (p)                                                                     \
      VALGRIND_FREELIKE_BLOCK((p), 0);                                         \
  } while (0)
#define VG_RESIZE(p, old, new) VALGRIND_RESIZEINPLACE_BLOCK((p), (old), (new), 0)
#else
#define VG_ALLOC(p, zeroed) ((void)0)
#define VG_FREE(p) ((void)0)
#define VG_RESIZE(p, old, new) ((void)0)
#endif

/* ---- the report (info.c) ------------------------------------------------ */
/* hak_stats_report's work; from a signal handler (from_signal) it waits
 * for no lock and leaves the tiers out, and returns 0 when busy. */
HAK_INTERNAL size_t hak_stats_report_to(char *buf, size_t size, int json,
                                        bool from_signal);
HAK_INTERNAL void hak_report_fork_prepare(void);
HAK_INTERNAL void hak_report_fork_parent(void);

/* ---- misuse ---------------------------------------------------------- */
HAK_INTERNAL __attribute__((noreturn)) void hak_misuse(const char *func,
                                                       const char *what,
                                                       const void *p);

/* ---- mid tier (mid.c): 1 KiB < size <= 256 KiB -------------------------- */
#define HAK_MID_MAX ((size_t)256 << 10)
#define HAK_MID_CLASSES 32
#define HAK_MID_SLAB_SHIFT 20 /* 1 MiB slabs, 4 per superslab */
#define HAK_MID_SLAB_SIZE ((size_t)1 << HAK_MID_SLAB_SHIFT)
#define HAK_MID_SLABS (HAK_SUPERSLAB_SIZE / HAK_MID_SLAB_SIZE)
#define HAK_MID_HEADER ((size_t)64 << 10) /* slab 0 starts past the header */

/* The purge delay of free mid slabs, and how many may keep their pages
 * whatever the delay (start-up, mallopt, tests). */
HAK_INTERNAL void hak_mid_configure(unsigned purge_delay_ms,
                                    unsigned dirty_limit);
HAK_INTERNAL void *hak_mid_malloc(size_t size);
/* calloc's mid block: clears only what may be non-zero. */
HAK_INTERNAL void *hak_mid_calloc(size_t size);
/* A block of at least size bytes aligned to align (<= 64 KiB), or NULL with
 * errno unchanged when no mid class fits; ENOMEM on exhaustion. */
HAK_INTERNAL void *hak_mid_malloc_aligned(size_t size, size_t align, bool *fits);
HAK_INTERNAL void hak_mid_free(void *p);
HAK_INTERNAL size_t hak_mid_usable_size(const void *p);
/* The block size of the class of a mid size (what malloc(size) gives). */
HAK_INTERNAL size_t hak_mid_good_size(size_t size);
/* How far p lies into the carved block that holds it (0: its start), or
 * SIZE_MAX when no block of a slab in use holds it (checked paths). */
HAK_INTERNAL size_t hak_mid_block_offset(const void *p);
/* Whether the block at p carries the freed marker (checked builds). */
HAK_INTERNAL bool hak_mid_is_freed(const void *p);
/* Free mid slabs whose pages are still resident (waiting for the purge
 * delay), for tests. */
HAK_INTERNAL unsigned hak_mid_dirty_slabs(void);
/* Whether the class of a mid size keeps an empty slab (slab_put keeps one
 * per class for the purge delay), for tests. */
HAK_INTERNAL bool hak_mid_keeps_empty_slab(size_t size);
HAK_INTERNAL void hak_mid_thread_exit(void);
/* Blocks and bytes of the mid tier (as hak_tiny_usage): live, counted from
 * the slabs' counts less the calling thread's lists (other threads' lists
 * count as live); free: the rest of the carved blocks, and in bytes also
 * the dirty free slabs.  Per class, block size mid_class_size. */
struct hak_mid_usage {
  size_t in_use;
  size_t free;
  size_t dirty_bytes;
  size_t mapped, committed, committed_peak;
  size_t live_blocks[HAK_MID_CLASSES];
  size_t free_blocks[HAK_MID_CLASSES];
};
HAK_INTERNAL void hak_mid_usage(struct hak_mid_usage *u);
/* The block size of mid class cls. */
HAK_INTERNAL size_t hak_mid_class_size(unsigned cls);
/* Gives back the free slabs whose purge delay has run out (hak_collect). */
HAK_INTERNAL void hak_mid_purge(void);
/* malloc_trim: the calling thread's lists go back to the slabs, and the
 * free slabs kept for the delay are decommitted; returns bytes given back. */
HAK_INTERNAL size_t hak_mid_trim(void);
HAK_INTERNAL void hak_mid_fork_prepare(void);
HAK_INTERNAL void hak_mid_fork_parent(void);

/* ---- large tier (large.c): above the mid tier ------------------------- */
/* *zeroed tells whether the block is known to be all zero bytes.  An
 * alignment of 2^36 or more is refused (ENOMEM) without reserving. */
HAK_INTERNAL void *hak_large_malloc(size_t size, size_t align, bool *zeroed);
/* calloc's large block: clears only the pages that may be non-zero. */
HAK_INTERNAL void *hak_large_calloc(size_t size);
HAK_INTERNAL void hak_large_free(void *p);
/* Misuse (a pointer that is not a live block) is reported as func's. */
HAK_INTERNAL size_t hak_large_usable_size(const void *p, const char *func);
/* realloc of a big block to size > HAK_MID_MAX: in place where the
 * neighbouring pages are free, else by moving pages (mremap) or copying;
 * NULL (errno ENOMEM) leaves p as it was. */
HAK_INTERNAL void *hak_large_realloc(void *p, size_t size);
/* Occupancy, for tests: arenas with free pages and with dirty free pages,
 * bytes of dirty free pages (retained), of live blocks, and the bound on
 * the retained bytes in force. */
struct hak_large_info {
  unsigned arenas_with_free, arenas_dirty;
  size_t dirty_bytes, live_bytes, retain_limit;
};
HAK_INTERNAL struct hak_large_info hak_large_info(void);
/* Gives back what the purge delay or the bound says must go (every entry
 * into the tier does it; tests call it directly). */
HAK_INTERNAL void hak_large_purge(void);
/* Gives back every arena that holds no live block (tests; the tier does it
 * itself when the kernel refuses a mapping). */
HAK_INTERNAL void hak_large_release(void);
/* The same when libhak-os runs out (its reclaim hook); false if the tier
 * was busy or had nothing to give. */
HAK_INTERNAL bool hak_large_reclaim(void);
/* Blocks of the large tier in use: count and bytes (whole pages). */
HAK_INTERNAL void hak_large_usage(size_t *blocks, size_t *bytes);
/* Bytes of the large tier's arenas: mapped, that may be resident (live
 * blocks, dirty free pages, headers), and the most of that at once. */
struct hak_large_memory {
  size_t mapped, committed, committed_peak;
};
HAK_INTERNAL struct hak_large_memory hak_large_memory(void);
HAK_INTERNAL void hak_large_fork_prepare(void);
HAK_INTERNAL void hak_large_fork_parent(void);

#endif
