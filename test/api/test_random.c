/* SPDX-License-Identifier: MIT */
/* test_random.c - randomized operations checked against a shadow model.
 *
 * A fixed-seed PRNG drives malloc, calloc, realloc, reallocarray, free,
 * free_sized and the aligned allocators over a few hundred slots, with sizes
 * in every tier (tiny, mid, large, huge).  The shadow model knows each live
 * block's size, alignment and pattern seed; every operation on a slot first
 * checks the block's whole contents, realloc checks the preserved prefix,
 * calloc checks zeroes, and every so often all live blocks are checked, so
 * an allocator that hands out overlapping blocks, loses bytes when a block
 * moves or returns dirty calloc memory fails with the slot and offset.
 *
 * HAK_RANDOM_OPS and HAK_RANDOM_SEED (environment) change the length and
 * seed, for longer runs by hand; the registered test uses the defaults.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "api_test.h"

#define SLOTS 400
#define DEFAULT_OPS 100000
#define DEFAULT_SEED 0x5eed5eedull
/* Blocks up to this size are filled and checked byte for byte; bigger ones
 * on the first 128 bytes of every page (see test_pattern.h). */
#define FULL_LIMIT ((size_t)16 * KiB)

struct slot {
  char *p;
  size_t size;
  size_t align; /* asked for (16 = none) */
  uint32_t seed;
};

static struct slot slots[SLOTS];
static uint64_t rng;
static unsigned long op_index;
static uint32_t next_seed = 1;

static void check_slot(unsigned i, const char *when) {
  struct slot *s = &slots[i];
  if (!s->p)
    return;
  size_t bad =
      pattern_mismatch_block(s->p, s->size, s->size, s->seed, FULL_LIMIT);
  if (bad != s->size)
    fail_msg("op %lu (%s): slot %u, block %p of %zu bytes: byte %zu changed",
             op_index, when, i, (void *)s->p, s->size, bad);
}

static size_t random_size(void) {
  unsigned r = (unsigned)rng_below(&rng, 1000);
  if (r < 20)
    return 0;
  if (r < 700)
    return 1 + rng_below(&rng, TINY_MAX); /* tiny */
  if (r < 960) { /* mid: log-uniform from 1 KiB to 256 KiB */
    unsigned shift = 10 + (unsigned)rng_below(&rng, 8);
    size_t lo = (size_t)1 << shift;
    return lo + 1 + rng_below(&rng, lo);
  }
  if (r < 992)
    return MID_MAX + 1 + rng_below(&rng, SUPERSLAB - MID_MAX); /* large */
  return SUPERSLAB + rng_below(&rng, 8 * MiB); /* huge */
}

static size_t random_align(void) {
  unsigned r = (unsigned)rng_below(&rng, 100);
  if (r < 90)
    return (size_t)32 << rng_below(&rng, 8); /* 32 .. 4 KiB */
  if (r < 99)
    return (size_t)8 * KiB << rng_below(&rng, 8); /* 8 KiB .. 1 MiB */
  return (size_t)4 * MiB; /* a superslab's alignment: the arena's slack */
}

static void check_new(unsigned i, char *p, size_t n, size_t align,
                      const char *fn) {
  if (p == NULL)
    fail_msg("op %lu: %s(%zu) returned NULL (errno %d)", op_index, fn, n, errno);
  if ((uintptr_t)p & (align - 1))
    fail_msg("op %lu: %s(%zu) = %p, not aligned to %zu", op_index, fn, n,
             (void *)p, align);
  size_t u = hak_usable_size(p);
  if (u < n)
    fail_msg("op %lu: %s(%zu): usable size %zu", op_index, fn, n, u);
  /* No live block may overlap the new one (only their ends are compared:
   * the contents checks catch overlaps inside). */
  for (unsigned j = 0; j < SLOTS; j++) {
    const struct slot *o = &slots[j];
    if (j == i || !o->p)
      continue;
    size_t on = o->size ? o->size : 1, nn = n ? n : 1;
    if (p < o->p + on && o->p < p + nn)
      fail_msg("op %lu: %s(%zu) = %p overlaps slot %u (%p, %zu bytes)",
               op_index, fn, n, (void *)p, j, (void *)o->p, o->size);
  }
}

static void do_free(unsigned i) {
  struct slot *s = &slots[i];
  check_slot(i, "before free");
  switch (rng_below(&rng, 4)) {
  case 0:
    hak_free_sized(s->p, s->size);
    break;
  case 1:
    errno = 0;
    if (hak_realloc(s->p, 0) != NULL)
      fail_msg("op %lu: realloc(p, 0) did not return NULL", op_index);
    break;
  default:
    hak_free(s->p);
  }
  s->p = NULL;
}

static void do_malloc(unsigned i) {
  struct slot *s = &slots[i];
  size_t n = random_size();
  char *p;
  size_t align = 16;
  const char *fn;
  switch (rng_below(&rng, 10)) {
  case 0:
    fn = "realloc(NULL)";
    p = hak_realloc(NULL, n);
    break;
  case 1:
  case 2: {
    fn = "calloc";
    size_t count = 1 + rng_below(&rng, 8), each = n / count;
    n = count * each;
    p = hak_calloc(count, each);
    check_new(i, p, n, align, fn);
    for (size_t k = 0; k < n; k += n <= FULL_LIMIT ? 1 : 61)
      if (p[k] != 0)
        fail_msg("op %lu: calloc(%zu, %zu) = %p: byte %zu is 0x%02x", op_index,
                 count, each, (void *)p, k, (unsigned char)p[k]);
    break;
  }
  case 3: {
    align = random_align();
    fn = "posix_memalign";
    void *q = NULL;
    int r = hak_posix_memalign(&q, align, n);
    if (r)
      fail_msg("op %lu: posix_memalign(%zu, %zu) = %d", op_index, align, n, r);
    p = q;
    break;
  }
  case 4:
    align = random_align();
    fn = rng_below(&rng, 2) ? "aligned_alloc" : "memalign";
    p = fn[0] == 'a' ? hak_aligned_alloc(align, n) : hak_memalign(align, n);
    break;
  default:
    fn = "malloc";
    p = hak_malloc(n);
  }
  check_new(i, p, n, align, fn);
  s->p = p;
  s->size = n;
  s->align = align;
  s->seed = next_seed++;
  pattern_fill_block(p, n, s->seed, FULL_LIMIT);
}

static void do_realloc(unsigned i) {
  struct slot *s = &slots[i];
  check_slot(i, "before realloc");
  size_t n = random_size();
  if (n == 0)
    n = 1; /* realloc(p, 0) is a free: do_free covers it */
  char *q;
  if (rng_below(&rng, 4) == 0) {
    size_t count = 1 + rng_below(&rng, 4);
    n = (n + count - 1) / count * count;
    q = hak_reallocarray(s->p, count, n / count);
  } else {
    q = hak_realloc(s->p, n);
  }
  char *old = s->p;
  s->p = NULL; /* not live for the overlap check */
  check_new(i, q, n, 16, "realloc");
  size_t keep = s->size < n ? s->size : n;
  /* Checked the way the old block was filled (a block bigger than
   * FULL_LIMIT was filled sparsely, whatever the new size). */
  size_t bad = pattern_mismatch_block(q, keep, s->size, s->seed, FULL_LIMIT);
  if (bad != keep)
    fail_msg("op %lu: realloc slot %u %p (%zu) -> %p (%zu): byte %zu of the "
             "%zu kept changed",
             op_index, i, (void *)old, s->size, (void *)q, n, bad, keep);
  /* A reallocated block is only promised the usual 16 bytes of alignment. */
  s->p = q;
  s->size = n;
  s->align = 16;
  /* Same seed: the prefix is rewritten as is. */
  pattern_fill_block(q, n, s->seed, FULL_LIMIT);
}

static void check_all(const char *when) {
  for (unsigned i = 0; i < SLOTS; i++)
    check_slot(i, when);
}

static unsigned long env_ulong(const char *name, unsigned long dflt) {
  const char *v = getenv(name);
  if (!v || !*v)
    return dflt;
  return strtoul(v, NULL, 0);
}

static void test_random_against_shadow(void **state) {
  (void)state;
  unsigned long ops = env_ulong("HAK_RANDOM_OPS", DEFAULT_OPS);
  rng = env_ulong("HAK_RANDOM_SEED", DEFAULT_SEED);
  unsigned long counts[4] = {0};
  for (op_index = 0; op_index < ops; op_index++) {
    unsigned i = (unsigned)rng_below(&rng, SLOTS);
    unsigned r = (unsigned)rng_below(&rng, 100);
    if (!slots[i].p) {
      do_malloc(i);
      counts[0]++;
    } else if (r < 45) {
      do_free(i);
      counts[1]++;
    } else if (r < 80) {
      do_realloc(i);
      counts[2]++;
    } else {
      check_slot(i, "check");
      counts[3]++;
    }
    if (op_index % 10000 == 9999)
      check_all("periodic check");
  }
  check_all("end");
  for (unsigned i = 0; i < SLOTS; i++) {
    if (slots[i].p)
      hak_free(slots[i].p);
    slots[i].p = NULL;
  }
  print_message("random: %lu ops (allocations %lu, frees %lu, reallocs %lu, "
                "checks %lu)\n", ops, counts[0], counts[1], counts[2], counts[3]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_random_against_shadow),
  };
  return cmocka_run_group_tests_name("api_random", tests, NULL, NULL);
}
