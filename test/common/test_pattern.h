/* SPDX-License-Identifier: MIT */
/* test_pattern.h - what the tests that fill blocks share: the tiers' size
 * limits, a seeded PRNG, and the pattern blocks are filled with and checked
 * against.
 *
 * No cmocka here: the fuzz target (test/fuzz/fuzz_alloc.c) includes this
 * header too, and its libFuzzer build has no cmocka.  The cmocka assertions
 * built on these helpers (assert_pattern...) are in test/api/api_test.h.
 */
#ifndef HAK_TEST_PATTERN_H
#define HAK_TEST_PATTERN_H

#include <stddef.h>
#include <stdint.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* Size limits of the tiers (libhak-core/src/api.c). */
#define TINY_MAX ((size_t)1024)
#define MID_MAX ((size_t)256 * KiB)
#define SUPERSLAB ((size_t)4 * MiB)
#define PAGE ((size_t)4096)

/* ---- the PRNG ------------------------------------------------------------ */

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

/* ---- the pattern --------------------------------------------------------- */

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

/* Blocks of any size: up to `full` bytes filled byte for byte, bigger ones
 * sparsely. */
static inline void pattern_fill_block(void *p, size_t n, uint32_t seed,
                                      size_t full) {
  if (n <= full)
    pattern_fill(p, n, seed);
  else
    pattern_fill_sparse(p, n, seed);
}

/* The first wrong byte among the first n of a block that was filled by
 * pattern_fill_block at `filled` bytes (n < filled: the prefix a realloc
 * kept, checked the way the old block was filled), or n. */
static inline size_t pattern_mismatch_block(const void *p, size_t n,
                                            size_t filled, uint32_t seed,
                                            size_t full) {
  return filled <= full ? pattern_mismatch(p, n, seed)
                        : pattern_mismatch_sparse(p, n, seed);
}

#endif
