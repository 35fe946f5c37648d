/* SPDX-License-Identifier: MIT */
/* hak_stats.h - the bottom of hakmem: build-variant gates and counters.
 *
 * Every layer includes this header and nothing in it includes another hakmem
 * header.  It holds two things:
 *   1. the gates: HAK_BUILD_VARIANT (set once by CMake) turned into named
 *      compile-time switches, so that no other file tests the variant;
 *   2. the counters: per-thread, summed on report, so that counting never
 *      costs an atomic operation on a hot path.  They compile to nothing in
 *      the builds that do not keep them.
 */
#ifndef HAK_STATS_H
#define HAK_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- build variant gates ------------------------------------------------ */
#define HAK_VARIANT_FAST 0
#define HAK_VARIANT_STANDARD 1
#define HAK_VARIANT_OBSERVE 2

#ifndef HAK_BUILD_VARIANT
#error "HAK_BUILD_VARIANT must be set by the build (0 fast, 1 standard, 2 observe)"
#endif

/* Misuse checks: off only in the fast build.  One gate per check, so that
 * each can be measured alone (docs/BENCHMARKS.md has the tax of each; a
 * measurement build may override one with -D, the presets never do). */
#define HAK_GATE_CHECKS (HAK_BUILD_VARIANT != HAK_VARIANT_FAST)
/* free looks the pointer's region up in the registry before reading its
 * header: a pointer hakmem never returned is reported, not dereferenced. */
#ifndef HAK_GATE_CHECK_FOREIGN
#define HAK_GATE_CHECK_FOREIGN HAK_GATE_CHECKS
#endif
/* free verifies that the pointer starts a block of its slab or region. */
#ifndef HAK_GATE_CHECK_BLOCK_START
#define HAK_GATE_CHECK_BLOCK_START HAK_GATE_CHECKS
#endif
/* Freed blocks carry a marker (second word) that a double free finds. */
#ifndef HAK_GATE_CHECK_DOUBLE_FREE
#define HAK_GATE_CHECK_DOUBLE_FREE HAK_GATE_CHECKS
#endif
/* Free-list links are encoded with a secret and checked when followed. */
#ifndef HAK_GATE_ENCODE_LINKS
#define HAK_GATE_ENCODE_LINKS HAK_GATE_CHECKS
#endif
/* Sized delete (C++) checks the size against the block's class and reports
 * a mismatch; without it, a size of a tiny class routes the block to the
 * tiny front without reading the region map (the size is trusted). */
#ifndef HAK_GATE_CHECK_DELETE_SIZE
#define HAK_GATE_CHECK_DELETE_SIZE HAK_GATE_CHECKS
#endif
/* System-call counters: cheap (system calls are rare), kept outside fast. */
#define HAK_GATE_COUNT_SYSCALLS (HAK_BUILD_VARIANT != HAK_VARIANT_FAST)
/* Per-path counters (every malloc and free): the observe build only. */
#define HAK_GATE_COUNT_PATHS (HAK_BUILD_VARIANT == HAK_VARIANT_OBSERVE)
/* Runtime configuration from HAKMEM_* variables: not in the fast build. */
#define HAK_GATE_ENV_CONFIG (HAK_BUILD_VARIANT != HAK_VARIANT_FAST)
/* Guarded allocations by sampling (HAKMEM_GUARD_SAMPLE, libhak-os's
 * guard.c): compiled out of the fast build, where the sampling test, the
 * pool and the fault handler do not exist. */
#define HAK_GATE_GUARD (HAK_BUILD_VARIANT != HAK_VARIANT_FAST)
/* Report printed at exit without being asked: the observe build. */
#define HAK_GATE_REPORT_AT_EXIT (HAK_BUILD_VARIANT == HAK_VARIANT_OBSERVE)

#define HAK_API __attribute__((visibility("default")))
#define HAK_INTERNAL __attribute__((visibility("hidden")))
#define HAK_LIKELY(x) __builtin_expect(!!(x), 1)
#define HAK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define HAK_COLD __attribute__((noinline, cold))
/* malloc and free start on a cache line: both then span the fewest lines
 * and fetch blocks.  Measured in libhakmem.so under LD_PRELOAD on Mixed:
 * +3 % (123.3 -> 126.9 M ops/s median of 6, interleaved); the static
 * build, where they happened to sit well, is unchanged.  Aligning every
 * function (-falign-functions=64) gives the same and pads the cold ones. */
#define HAK_HOT_ENTRY __attribute__((aligned(64)))

/* ---- valgrind (HAKMEM_VALGRIND builds) ----------------------------------
 * memcheck is told where blocks begin and end by libhak-core; here, what
 * every layer needs: silence while hakmem's own code touches freed blocks,
 * and regions fresh from libhak-os made accessible again (their bytes may
 * have been a freed block of another tier). */
#if defined(HAK_VALGRIND) && HAK_VALGRIND
#include <valgrind/memcheck.h>
#define HAK_VG_QUIET_BEGIN() VALGRIND_DISABLE_ERROR_REPORTING
#define HAK_VG_QUIET_END() VALGRIND_ENABLE_ERROR_REPORTING
#define HAK_VG_FRESH(p, n) VALGRIND_MAKE_MEM_DEFINED((p), (n))
#else
#define HAK_VG_QUIET_BEGIN() ((void)0)
#define HAK_VG_QUIET_END() ((void)0)
#define HAK_VG_FRESH(p, n) ((void)0)
#endif

/* ---- counters ------------------------------------------------------------ */
/* One list, used to build the enum and the names in the report. */
#define HAK_STAT_LIST(X)                                                      \
  X(SYS_MMAP, "sys.mmap")                                                     \
  X(SYS_MUNMAP, "sys.munmap")                                                 \
  X(SYS_MADVISE, "sys.madvise")                                               \
  X(SYS_MREMAP, "sys.mremap")                                                 \
  X(SYS_MINCORE, "sys.mincore")                                               \
  X(OS_BYTES_MAPPED, "os.bytes_mapped")                                       \
  X(OS_BYTES_UNMAPPED, "os.bytes_unmapped")                                   \
  X(OS_BYTES_DECOMMITTED, "os.bytes_decommitted")                             \
  X(OS_SUPERSLAB_NEW, "os.superslab_new")                                     \
  X(OS_SUPERSLAB_REUSED, "os.superslab_reused")                               \
  X(OS_SUPERSLAB_RELEASED, "os.superslab_released")                           \
  X(OS_HUGE_NEW, "os.huge_new")                                               \
  X(OS_HUGE_REUSED, "os.huge_reused")                                         \
  X(OS_MAP_LEAVES, "os.map_leaves")                                           \
  X(TINY_MALLOC, "tiny.malloc")                                               \
  X(TINY_FREE_LOCAL, "tiny.free_local")                                       \
  X(TINY_FREE_REMOTE, "tiny.free_remote")                                     \
  X(TINY_REFILL, "tiny.refill")                                               \
  X(TINY_REMOTE_COLLECTED, "tiny.remote_collected")                           \
  X(TINY_SLAB_NEW, "tiny.slab_new")                                           \
  X(TINY_SLAB_RELEASED, "tiny.slab_released")                                 \
  X(TINY_SLAB_ADOPTED, "tiny.slab_adopted")                                   \
  X(MID_MALLOC, "mid.malloc")                                                 \
  X(MID_FREE, "mid.free")                                                     \
  X(LARGE_MALLOC, "large.malloc")                                             \
  X(LARGE_FREE, "large.free")

enum hak_stat {
#define HAK_STAT_ENUM(id, name) HAK_STAT_##id,
  HAK_STAT_LIST(HAK_STAT_ENUM)
#undef HAK_STAT_ENUM
      HAK_STAT_COUNT
};

/* Number of tiny size classes counted per class (mallocs and frees). */
#define HAK_STATS_CLASSES 64

struct hak_stats_thread {
  uint64_t count[HAK_STAT_COUNT];
  uint64_t class_malloc[HAK_STATS_CLASSES];
  uint64_t class_free[HAK_STATS_CLASSES];
  struct hak_stats_thread *next; /* registry of live threads */
  int registered; /* 0 not yet, 1 in the registry, -1 thread has exited,
                     HAK_STATS_SHARED for the block of exited threads */
};

#if HAK_GATE_COUNT_SYSCALLS || HAK_GATE_COUNT_PATHS
extern __thread struct hak_stats_thread hak_stats_tls
    __attribute__((tls_model("initial-exec")));
HAK_INTERNAL struct hak_stats_thread *hak_stats_register_thread(void);
/* The calling thread's counters: its TLS block, registered on first use.
 * After the thread's exit hook ran, counts (from later key destructors) go
 * to one shared block that outlives every thread. */
static inline struct hak_stats_thread *hak_stats_self(void) {
  struct hak_stats_thread *t = &hak_stats_tls;
  if (HAK_UNLIKELY(t->registered != 1))
    return hak_stats_register_thread();
  return t;
}
#define HAK_STATS_SHARED (-2) /* `registered` of the shared block */
/* The owner adds with a relaxed load and a relaxed store (plain moves, no
 * locked instruction), so that a report's relaxed loads do not race; the
 * shared block of exited threads takes an atomic add. */
static inline void hak_stats_bump(struct hak_stats_thread *t, uint64_t *c,
                                  uint64_t n) {
  if (HAK_UNLIKELY(t->registered == HAK_STATS_SHARED))
    __atomic_fetch_add(c, n, __ATOMIC_RELAXED);
  else
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}
static inline void hak_stats_add(size_t field, uint64_t n) {
  struct hak_stats_thread *t = hak_stats_self();
  hak_stats_bump(t, (uint64_t *)((char *)t + field), n);
}
#define HAK_STAT_ADD_(id, n)                                                  \
  hak_stats_add(offsetof(struct hak_stats_thread, count[HAK_STAT_##id]), (n))
#else
#define HAK_STAT_ADD_(id, n) ((void)0)
#endif

/* Counters that exist wherever system calls are counted. */
#if HAK_GATE_COUNT_SYSCALLS
#define HAK_STAT_SYS(id, n) HAK_STAT_ADD_(id, n)
#else
#define HAK_STAT_SYS(id, n) ((void)0)
#endif

/* Counters on every path: observe only. */
#if HAK_GATE_COUNT_PATHS
#define HAK_STAT_PATH(id, n) HAK_STAT_ADD_(id, n)
#define HAK_STAT_CLASS_MALLOC(c)                                              \
  hak_stats_add(offsetof(struct hak_stats_thread, class_malloc) + 8 * (size_t)(c), 1)
#define HAK_STAT_CLASS_FREE(c)                                                \
  hak_stats_add(offsetof(struct hak_stats_thread, class_free) + 8 * (size_t)(c), 1)
#else
#define HAK_STAT_PATH(id, n) ((void)0)
#define HAK_STAT_CLASS_MALLOC(c) ((void)0)
#define HAK_STAT_CLASS_FREE(c) ((void)0)
#endif

/* A snapshot: live threads plus those that have exited. */
struct hak_stats_snapshot {
  uint64_t count[HAK_STAT_COUNT];
  uint64_t class_malloc[HAK_STATS_CLASSES];
  uint64_t class_free[HAK_STATS_CLASSES];
};

/* Sum of every thread's counters, exact for exited threads and a relaxed
 * read for live ones. */
HAK_INTERNAL void hak_stats_snapshot(struct hak_stats_snapshot *out);
/* The same without waiting: false if another thread holds the registry
 * (a signal handler must not block on a lock its own thread may hold). */
HAK_INTERNAL bool hak_stats_try_snapshot(struct hak_stats_snapshot *out);
/* Folds the calling thread's counters into the totals (thread exit). */
HAK_INTERNAL void hak_stats_thread_exit(void);
/* Fork: hold the registry lock across fork() (the report takes it). */
HAK_INTERNAL void hak_stats_fork_prepare(void);
HAK_INTERNAL void hak_stats_fork_parent(void);
HAK_INTERNAL void hak_stats_fork_child(void);

/* Name of a counter, for reports. */
HAK_INTERNAL const char *hak_stats_name(enum hak_stat id);
/* Whether this build keeps counter id: the counters before TINY_MALLOC
 * are bumped with HAK_STAT_SYS (system calls and what they map), the rest
 * with HAK_STAT_PATH. */
static inline bool hak_stats_collected(enum hak_stat id) {
  return id < HAK_STAT_TINY_MALLOC ? HAK_GATE_COUNT_SYSCALLS
                                   : HAK_GATE_COUNT_PATHS;
}

/* ---- where the memory is ------------------------------------------------
 * This layer knows no tier: the layers that own the memory fill this when
 * a report is made (libhak-core gathers it from libhak-tiny, its own tiers
 * and libhak-os), and the report formats it.  Nothing here is counted on
 * a hot path.  hakmem.h's struct hak_stats has the same layout (libhak-core
 * checks it at compile time): its comments say what each field means. */
#define HAK_STATS_TIERS 3 /* tiny, mid, large */
enum { HAK_STATS_TIER_TINY, HAK_STATS_TIER_MID, HAK_STATS_TIER_LARGE };

struct hak_stats_mem_class {
  size_t block_size;
  size_t live_blocks;
  size_t free_blocks;
};

struct hak_stats_mem_tier {
  size_t live_blocks, live_bytes;
  size_t free_blocks, free_bytes;
  size_t cached_bytes;
  size_t mapped, committed, committed_peak;
  size_t classes; /* entries of class[] in use */
  struct hak_stats_mem_class class_[HAK_STATS_CLASSES];
};

struct hak_stats_mem_os {
  size_t mapped, mapped_peak, committed, cached_bytes, rss, rss_peak;
};

struct hak_stats_memory {
  unsigned size, version; /* as hakmem.h's struct hak_stats */
  struct hak_stats_mem_tier tier[HAK_STATS_TIERS];
  struct hak_stats_mem_os os;
};

/* What a report needs besides the counters. */
struct hak_stats_header {
  int version;         /* hak_version() */
  long pid;
  const char *program; /* short name, or NULL */
  bool gathered;       /* memory's tiers hold numbers (not from a signal
                          handler, which must not take the tiers' locks) */
};

/* Formats a report as text (json == 0) or one JSON object into buf;
 * returns the length the whole report needs, as snprintf does.  When
 * that is n or more, text is cut to n - 1 bytes and JSON left out (buf
 * holds ""), so that buf never holds an object that does not parse.  Always
 * NUL-terminated when n > 0.  Formatting only: the caller decides where it
 * goes, so that this layer makes no I/O.  docs/STATS.md: every field. */
HAK_INTERNAL size_t hak_stats_format(const struct hak_stats_header *h,
                                     const struct hak_stats_snapshot *s,
                                     const struct hak_stats_memory *m,
                                     int json, char *buf, size_t n);

#endif
