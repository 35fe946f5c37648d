/* api_test.h - helpers shared by the behaviour tests of test/api.
 *
 * Every test includes this header after the system headers that cmocka
 * needs.  Helpers only use cmocka's assertions in the test process itself;
 * code that runs in a forked child reports through its exit status instead
 * (a cmocka failure in a child would unwind into the child's copy of the
 * test runner and go on running the other tests there).
 */
#ifndef HAK_API_TEST_H
#define HAK_API_TEST_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "hakmem.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* Size limits of the tiers (libhak-core/src/api.c). */
#define TINY_MAX ((size_t)1024)
#define MID_MAX ((size_t)256 * KiB)
#define SUPERSLAB ((size_t)4 * MiB)
#define PAGE ((size_t)4096)

/* The byte that position i of a block filled with `seed` holds.  Depends on
 * the position, so a block that moved by a few bytes or was overwritten by
 * a neighbour does not compare equal. */
static inline unsigned char pattern_byte(uint32_t seed, size_t i) {
  uint32_t x = seed * 2654435761u + (uint32_t)i * 40503u + (uint32_t)(i >> 16);
  return (unsigned char)(x ^ (x >> 13) ^ (x >> 24));
}

static inline void pattern_fill(void *p, size_t n, uint32_t seed) {
  unsigned char *c = p;
  for (size_t i = 0; i < n; i++)
    c[i] = pattern_byte(seed, i);
}

/* Index of the first byte that differs from the pattern, or n. */
static inline size_t pattern_mismatch(const void *p, size_t n, uint32_t seed) {
  const unsigned char *c = p;
  for (size_t i = 0; i < n; i++)
    if (c[i] != pattern_byte(seed, i))
      return i;
  return n;
}

/* Big blocks are megabytes: the tests touch every page of them but do not
 * spend their time in memset.  The sparse pattern covers the first 128
 * bytes of every 4 KiB (positions independent of the block's size, so a
 * prefix of a sparsely filled block is a sparsely filled block). */
#define SPARSE_RUN 128
static inline void pattern_fill_sparse(void *p, size_t n, uint32_t seed) {
  unsigned char *c = p;
  for (size_t off = 0; off < n; off += 4096)
    for (size_t i = off; i < off + SPARSE_RUN && i < n; i++)
      c[i] = pattern_byte(seed, i);
}

static inline size_t pattern_mismatch_sparse(const void *p, size_t n,
                                             uint32_t seed) {
  const unsigned char *c = p;
  for (size_t off = 0; off < n; off += 4096)
    for (size_t i = off; i < off + SPARSE_RUN && i < n; i++)
      if (c[i] != pattern_byte(seed, i))
        return i;
  return n;
}

/* Asserts that the first n bytes at p hold the pattern `seed`, naming the
 * first bad offset in the failure. */
#define assert_pattern(p, n, seed)                                             \
  do {                                                                         \
    size_t bad_ = pattern_mismatch((p), (n), (seed));                          \
    if (bad_ != (size_t)(n))                                                   \
      fail_msg("pattern %u broken at offset %zu of %zu (block %p)",            \
               (unsigned)(seed), bad_, (size_t)(n), (const void *)(p));        \
  } while (0)

#define assert_pattern_sparse(p, n, seed)                                      \
  do {                                                                         \
    size_t bad_ = pattern_mismatch_sparse((p), (n), (seed));                   \
    if (bad_ != (size_t)(n))                                                   \
      fail_msg("pattern %u broken at offset %zu of %zu (block %p)",            \
               (unsigned)(seed), bad_, (size_t)(n), (const void *)(p));        \
  } while (0)

#define assert_aligned(p, a)                                                   \
  do {                                                                         \
    if (((uintptr_t)(p) & ((uintptr_t)(a) - 1)) != 0)                          \
      fail_msg("%p is not aligned to %zu", (const void *)(p), (size_t)(a));    \
  } while (0)

/* splitmix64: a small PRNG with a fixed seed, so every run does the same. */
static inline uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static inline size_t rng_below(uint64_t *s, size_t n) {
  return (size_t)(rng_next(s) % n);
}

#endif
