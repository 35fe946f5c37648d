/* SPDX-License-Identifier: MIT */
/* stress.h - what the stress tests share: the run length (short for CI, long
 * by hand), block filling and checking for blocks of any size, and reporting
 * from threads (cmocka's assertions are for the main thread only).
 *
 * Run length: the short mode (the default, what ctest runs) takes a few
 * seconds per test; the long mode runs for minutes.  Either
 *     HAK_STRESS=long ctest -L stress          (environment), or
 *     ./stress_threads long                    (first argument)
 * selects the long mode; HAK_STRESS_SECONDS=<n> sets the length of the
 * time-bounded parts of the long mode (default 60 per test).
 */
#ifndef HAK_STRESS_H
#define HAK_STRESS_H

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_test.h" /* test/api; with it test/common/test_pattern.h */

/* Sanitizer builds run the same code several times slower: the short mode
 * does fewer rounds there, so that the debug and tsan presets stay within
 * their budget.  GCC defines these macros; clang has __has_feature. */
#if defined(__SANITIZE_THREAD__)
#define STRESS_SLOW 4
#elif defined(__SANITIZE_ADDRESS__)
#define STRESS_SLOW 2
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STRESS_SLOW 4
#elif __has_feature(address_sanitizer)
#define STRESS_SLOW 2
#endif
#endif
#ifndef STRESS_SLOW
#define STRESS_SLOW 1
#endif

static int stress_long_mode;
static double stress_seconds = 60;

/* Reads the mode from argv[1] ("long" or "short") or HAK_STRESS. */
static inline void stress_parse_mode(int argc, char **argv) {
  const char *m = argc > 1 ? argv[1] : getenv("HAK_STRESS");
  if (m && strcmp(m, "long") == 0)
    stress_long_mode = 1;
  else if (m && *m && strcmp(m, "short") != 0) {
    fprintf(stderr, "usage: %s [short|long] (or HAK_STRESS=short|long)\n",
            argv[0]);
    exit(2);
  }
  const char *s = getenv("HAK_STRESS_SECONDS");
  if (s && atof(s) > 0)
    stress_seconds = atof(s);
}

static inline double stress_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Blocks up to FULL_BYTES are filled and checked byte for byte; bigger ones
 * sparsely (the first 128 bytes of each page) plus their last 64 bytes, so
 * both ends of every block are covered. */
#define FULL_BYTES ((size_t)16 * KiB)

static inline void block_fill(void *p, size_t n, uint32_t seed) {
  if (n <= FULL_BYTES) {
    pattern_fill(p, n, seed);
    return;
  }
  pattern_fill_sparse(p, n, seed);
  unsigned char *c = p;
  for (size_t i = n - 64; i < n; i++)
    c[i] = pattern_byte(seed, i);
}

/* Index of the first byte of the first `n` that is wrong, or n. */
static inline size_t block_mismatch(const void *p, size_t n, size_t filled,
                                    uint32_t seed) {
  /* `filled`: the size the block was filled at (a realloc keeps a prefix of
   * n <= filled bytes, checked with the fill's own layout). */
  if (filled <= FULL_BYTES)
    return pattern_mismatch(p, n, seed);
  size_t bad = pattern_mismatch_sparse(p, n, seed);
  if (bad != n)
    return bad;
  const unsigned char *c = p;
  for (size_t i = filled - 64; i < n; i++)
    if (c[i] != pattern_byte(seed, i))
      return i;
  return n;
}

/* The first error of a run, kept for the main thread to report; later ones
 * are only counted. */
struct stress_errors {
  pthread_mutex_t lock;
  unsigned long count;
  char first[512];
};

static inline void stress_error(struct stress_errors *e, const char *fmt, ...) {
  pthread_mutex_lock(&e->lock);
  if (e->count++ == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->first, sizeof e->first, fmt, ap);
    va_end(ap);
  }
  pthread_mutex_unlock(&e->lock);
}

#endif
