/* SPDX-License-Identifier: MIT */
/* bench_alloc.h - the one place where a benchmark program meets an allocator.
 *
 * Every benchmark source is compiled once per allocator; the build passes
 * exactly one of BENCH_ALLOC_HAKMEM, BENCH_ALLOC_LIBC or BENCH_ALLOC_MIMALLOC,
 * and this header turns it into static inline wrappers.  The choice is made
 * by the preprocessor, so a timed loop never tests which allocator it runs.
 *
 * BENCH_ALLOC_NAME names the allocator in the output line.  The libc build is
 * also the "plain binary" of the LD_PRELOAD protocol: whatever malloc the
 * dynamic linker binds is the one measured, so it reports the preloaded
 * library separately (bench_preload_name()).
 */
#ifndef BENCH_ALLOC_H
#define BENCH_ALLOC_H

#include <stddef.h>

#if defined(BENCH_ALLOC_HAKMEM) + defined(BENCH_ALLOC_LIBC) +                  \
        defined(BENCH_ALLOC_MIMALLOC) !=                                       \
    1
#error                                                                         \
    "define exactly one of BENCH_ALLOC_HAKMEM, BENCH_ALLOC_LIBC, BENCH_ALLOC_MIMALLOC"
#endif

#if defined(BENCH_ALLOC_HAKMEM)
#include <hakmem.h>
#ifndef BENCH_HAKMEM_VARIANT
#define BENCH_HAKMEM_VARIANT "unknown"
#endif
#define BENCH_ALLOC_NAME ("hakmem-" BENCH_HAKMEM_VARIANT)
/* Only hakmem keeps counters the harness can read (hak_stats_report). */
#define BENCH_HAS_STATS 1
static inline void *bench_malloc(size_t n) { return hak_malloc(n); }
static inline void bench_free(void *p) { hak_free(p); }
static inline void *bench_calloc(size_t c, size_t n) {
  return hak_calloc(c, n);
}
static inline void *bench_realloc(void *p, size_t n) {
  return hak_realloc(p, n);
}
static inline int bench_posix_memalign(void **out, size_t a, size_t n) {
  return hak_posix_memalign(out, a, n);
}
static inline size_t bench_stats_report(char *buf, size_t n) {
  return hak_stats_report(buf, n, 1);
}

#elif defined(BENCH_ALLOC_MIMALLOC)
#include <mimalloc.h>
#define BENCH_ALLOC_NAME "mimalloc"
#define BENCH_HAS_STATS 0
static inline void *bench_malloc(size_t n) { return mi_malloc(n); }
static inline void bench_free(void *p) { mi_free(p); }
static inline void *bench_calloc(size_t c, size_t n) { return mi_calloc(c, n); }
static inline void *bench_realloc(void *p, size_t n) {
  return mi_realloc(p, n);
}
static inline int bench_posix_memalign(void **out, size_t a, size_t n) {
  return mi_posix_memalign(out, a, n);
}

#else /* BENCH_ALLOC_LIBC */
#include <stdlib.h>
#define BENCH_ALLOC_NAME "libc"
#define BENCH_HAS_STATS 0
static inline void *bench_malloc(size_t n) { return malloc(n); }
static inline void bench_free(void *p) { free(p); }
static inline void *bench_calloc(size_t c, size_t n) { return calloc(c, n); }
static inline void *bench_realloc(void *p, size_t n) { return realloc(p, n); }
static inline int bench_posix_memalign(void **out, size_t a, size_t n) {
  return posix_memalign(out, a, n);
}
#endif

#if !BENCH_HAS_STATS
static inline size_t bench_stats_report(char *buf, size_t n) {
  (void)buf;
  (void)n;
  return 0;
}
#endif

#endif
