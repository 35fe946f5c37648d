/* SPDX-License-Identifier: MIT */
/* hakmem.h - the public API of hakmem, a general-purpose memory allocator.
 *
 * Every function behaves as its C library namesake without the prefix:
 *   - hak_malloc(0) returns a unique pointer that hak_free accepts;
 *   - hak_free(NULL) does nothing;
 *   - an impossible size or exhausted memory gives NULL with errno ENOMEM;
 *   - hak_realloc(p, 0) with p != NULL frees p and returns NULL, as glibc
 *     does; hak_realloc(NULL, n) is hak_malloc(n);
 *   - hak_posix_memalign returns EINVAL for an alignment that is not a power
 *     of two multiple of sizeof(void *), without touching errno;
 *     hak_aligned_alloc and hak_memalign give NULL with errno EINVAL for one
 *     that is not a power of two.
 * Blocks are 16-byte aligned.  Linking libhakmem.so (or loading it with
 * LD_PRELOAD) also makes malloc, free and the rest of the family these.
 */
#ifndef HAKMEM_H
#define HAKMEM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HAKMEM_API __attribute__((visibility("default")))
/* None of them throws: C++ callers need no exception table around them. */
#if defined(__cplusplus) && __cplusplus >= 201103L
#define HAKMEM_NOEXCEPT noexcept
#else
#define HAKMEM_NOEXCEPT
#endif
#define HAKMEM_VERSION_MAJOR 0
#define HAKMEM_VERSION_MINOR 2
#define HAKMEM_VERSION_PATCH 0
/* One number that compares in order: 10000 * major + 100 * minor + patch. */
#define HAKMEM_VERSION                                                        \
  (HAKMEM_VERSION_MAJOR * 10000 + HAKMEM_VERSION_MINOR * 100 +                \
   HAKMEM_VERSION_PATCH)

/* The version of the library linked or loaded, as HAKMEM_VERSION: it may
 * differ from the header's when the shared library was replaced. */
HAKMEM_API int hak_version(void) HAKMEM_NOEXCEPT;

/* Settings a program carries with it, read once at start-up by the
 * standard and observe builds (the fast build has no run-time settings):
 * define it in the program, for example
 *   const char *hakmem_conf = "purge_delay_ms=50,thp=on";
 * "name=value" pairs separated by commas, names as the HAKMEM_* variables
 * without the prefix, in any case.  HAKMEM_CONF (same syntax) and then each
 * HAKMEM_* variable override it.  docs/CONFIG.md lists the settings. */
extern const char *hakmem_conf;

HAKMEM_API void *hak_malloc(size_t size) HAKMEM_NOEXCEPT
    __attribute__((malloc, alloc_size(1)));
HAKMEM_API void hak_free(void *ptr) HAKMEM_NOEXCEPT;
/* Frees ptr, whose requested size the caller states (size may be any value
 * between the requested size and hak_usable_size(ptr)). */
HAKMEM_API void hak_free_sized(void *ptr, size_t size) HAKMEM_NOEXCEPT;
HAKMEM_API void *hak_calloc(size_t count, size_t size) HAKMEM_NOEXCEPT
    __attribute__((malloc, alloc_size(1, 2)));
HAKMEM_API void *hak_realloc(void *ptr, size_t size) HAKMEM_NOEXCEPT
    __attribute__((alloc_size(2)));
HAKMEM_API void *hak_reallocarray(void *ptr, size_t count,
                                  size_t size) HAKMEM_NOEXCEPT;
HAKMEM_API int hak_posix_memalign(void **out, size_t alignment,
                                  size_t size) HAKMEM_NOEXCEPT;
HAKMEM_API void *hak_aligned_alloc(size_t alignment,
                                   size_t size) HAKMEM_NOEXCEPT
    __attribute__((malloc, alloc_size(2)));
HAKMEM_API void *hak_memalign(size_t alignment, size_t size) HAKMEM_NOEXCEPT
    __attribute__((malloc, alloc_size(2)));
HAKMEM_API void *hak_valloc(size_t size) HAKMEM_NOEXCEPT
    __attribute__((malloc));
HAKMEM_API void *hak_pvalloc(size_t size) HAKMEM_NOEXCEPT
    __attribute__((malloc));
/* Bytes usable in the block at ptr (>= the size asked for); 0 for NULL. */
HAKMEM_API size_t hak_usable_size(const void *ptr) HAKMEM_NOEXCEPT;

/* Prints the statistics report now: to stderr, or appended to
 * HAKMEM_STATS_FILE when it is set; text, or JSON when HAKMEM_STATS=json.
 * docs/STATS.md describes every field. */
HAKMEM_API void hak_stats_print(void) HAKMEM_NOEXCEPT;
/* Writes the report into buf (one JSON object when json != 0) and returns
 * the length the whole report needs, not counting the NUL, as snprintf
 * does: a return of size or more means buf was too small.  A text report is
 * then cut to size - 1 bytes; a JSON one is left out (buf holds ""), never
 * cut into something that does not parse.  hak_stats_report(NULL, 0, json)
 * asks for the length alone. */
HAKMEM_API size_t hak_stats_report(char *buf, size_t size,
                                   int json) HAKMEM_NOEXCEPT;

/* ---- where the memory is: the report's numbers, without parsing ----------
 * Gathered when asked, from the tiers' own metadata (nothing is counted on
 * the fast paths); every build has them, the fast one included.  Exact
 * for the calling thread's blocks; while other threads run, their current
 * tiny slabs and their per-thread lists count as live (docs/STATS.md). */
#define HAK_STATS_VERSION 1
#define HAK_STATS_MAX_CLASSES 64 /* tiny: 48 classes, mid: 32 */
enum { HAK_STATS_TINY = 0, HAK_STATS_MID = 1, HAK_STATS_LARGE = 2 };

struct hak_stats_class {
  size_t block_size;  /* bytes of each block of the class */
  size_t live_blocks; /* blocks in use (bytes: x block_size) */
  size_t free_blocks; /* carved and free: on slab free lists and the calling
                         thread's lists */
};

struct hak_stats_tier {
  size_t live_blocks, live_bytes; /* in use, at their block size (large:
                                     whole pages) */
  size_t free_blocks, free_bytes; /* carved and free (large: 0) */
  size_t cached_bytes;   /* free slabs (large: free pages) kept with their
                            pages for the purge delay */
  size_t mapped;         /* address space of the tier's superslabs/arenas */
  size_t committed;      /* of it, bytes that may be resident: an upper
                            bound (a slab in use counts whole) */
  size_t committed_peak; /* the most committed at once so far */
  size_t classes;        /* entries of class_ in use (large: 0) */
  struct hak_stats_class class_[HAK_STATS_MAX_CLASSES];
};

struct hak_stats {
  unsigned size;    /* set by the caller: sizeof(struct hak_stats) */
  unsigned version; /* set by hak_stats_get: HAK_STATS_VERSION */
  struct hak_stats_tier tier[3]; /* HAK_STATS_TINY, _MID, _LARGE */
  struct {
    size_t mapped, mapped_peak; /* all of hakmem's mappings, the caches'
                                   included, and the most at once */
    size_t committed;    /* the tiers' committed plus cached_bytes */
    size_t cached_bytes; /* free superslabs and regions libhak-os keeps with
                            their pages */
    size_t rss, rss_peak; /* the process's resident set (VmRSS, VmHWM);
                             rss_peak >= rss */
  } os;
};
/* Fills *out, of which the caller has set out->size (a later version may
 * add fields at the end; an older caller gets the part it knows).  Returns
 * 0, or -1 with errno EINVAL when out is NULL or out->size is smaller than
 * version 1's struct. */
HAKMEM_API int hak_stats_get(struct hak_stats *out) HAKMEM_NOEXCEPT;

/* Gives free memory back to the kernel now.  force == 0: what the purge
 * delay (HAKMEM_PURGE_DELAY_MS) has already run out for, as the next
 * allocations would; force != 0: everything hakmem holds free, whatever
 * the delay (the calling thread's lists first go back to their slabs), as
 * hak_trim(0).  Returns the bytes of free memory that were resident and no
 * longer are (0: nothing to give). */
HAKMEM_API size_t hak_collect(int force) HAKMEM_NOEXCEPT;

/* ---- the C library's malloc extensions (glibc's <malloc.h>) --------------
 * libhakmem.so also exports malloc_trim, mallinfo2, mallinfo, malloc_stats,
 * malloc_info and mallopt, built on these (docs/CONFIG.md: the mapping). */

/* Memory held by hakmem, from its own accounting, summed when asked (no
 * counter on a fast path).  Exact for the calling thread's blocks; blocks
 * that other threads keep in their per-thread lists count as in use. */
struct hak_memory_info {
  size_t in_use;       /* bytes of the blocks in use, each at its block size */
  size_t free;         /* bytes free in hakmem's caches that may be resident:
                          free blocks of slabs in use, free slabs and regions
                          kept for the purge delay */
  size_t mapped;       /* bytes of address space mapped (in use and cached) */
  size_t mapped_peak;  /* the most mapped at once so far */
  size_t large_blocks; /* blocks above 256 KiB in use (a region each) */
  size_t large_bytes;  /* their bytes (part of in_use) */
};
HAKMEM_API void hak_memory_info(struct hak_memory_info *info) HAKMEM_NOEXCEPT;
/* Gives back to the kernel what hakmem's caches hold beyond pad bytes (the
 * calling thread's lists first go back to their slabs); returns 1 if memory
 * was given back, 0 if not (malloc_trim). */
HAKMEM_API int hak_trim(size_t pad) HAKMEM_NOEXCEPT;
/* mallopt: 1 when the option has a hakmem meaning and the value was taken,
 * 0 otherwise (docs/CONFIG.md lists which). */
HAKMEM_API int hak_mallopt(int param, int value) HAKMEM_NOEXCEPT;

#ifdef __cplusplus
}
#endif
#endif
