/* SPDX-License-Identifier: MIT */
/* test_oom.c - exhausted memory: NULL with errno ENOMEM, nothing broken.
 *
 * hakmem.h: "an impossible size or exhausted memory gives NULL with errno
 * ENOMEM".  The impossible sizes are in test_conformance.c; here the kernel
 * refuses: libhak-os's test hook (hak_os_fail_next_mappings) makes the next
 * mappings fail, after hak_os_release_caches and hak_large_release have
 * emptied the caches and the large tier's free arenas, so that the
 * allocation has to map.  For every tier and entry point: the call
 * fails cleanly (realloc keeps the old block, posix_memalign leaves errno
 * alone), and the allocator works again as soon as the kernel does.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "api_test.h"
#include "core_internal.h"
#include "hak_os.h"

/* Empties the caches and arms n mapping failures. */
static void refuse_next_mappings(unsigned n) {
  hak_large_release(); /* first: its standard arenas go to the caches */
  hak_os_release_caches();
  hak_os_fail_next_mappings(n);
}

static void disarm(void) { hak_os_fail_next_mappings(0); }

static void test_aligned_from_free_arena(void **state) {
  (void)state;
  /* A freed big block's pages serve a later block of another size and
   * alignment: no mapping is needed, so a refusing kernel does not show. */
  char *warm = hak_malloc(9 * MiB);
  assert_non_null(warm);
  memset(warm, 1, 9 * MiB);
  hak_free(warm); /* kept by the large tier, its pages resident */
  hak_os_fail_next_mappings(1);
  errno = 0;
  void *p = hak_aligned_alloc(4 * MiB, 4 * MiB);
  disarm();
  assert_non_null(p);
  assert_aligned(p, 4 * MiB);
  memset(p, 1, 4 * MiB);
  hak_free(p);
}

static void test_large_and_huge(void **state) {
  (void)state;
  const size_t sizes[] = {MID_MAX + 1, MiB, SUPERSLAB - PAGE, 5 * MiB, 40 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    refuse_next_mappings(1);
    errno = 0;
    void *p = hak_malloc(sizes[i]);
    if (p != NULL)
      fail_msg("malloc(%zu) succeeded with the kernel refusing", sizes[i]);
    assert_int_equal(errno, ENOMEM);
    refuse_next_mappings(1);
    errno = 0;
    assert_null(hak_calloc(1, sizes[i]));
    assert_int_equal(errno, ENOMEM);
    disarm();
    p = hak_malloc(sizes[i]);
    assert_non_null(p);
    memset(p, 2, sizes[i] > MiB ? MiB : sizes[i]);
    hak_free(p);
  }
}

static void test_aligned(void **state) {
  (void)state;
  const size_t aligns[] = {4096, 64 * KiB, MiB, 4 * MiB, 8 * MiB};
  for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
    size_t n = 300 * KiB;
    refuse_next_mappings(2);
    void *p = (void *)&p;
    errno = 1234;
    int r = hak_posix_memalign(&p, aligns[i], n);
    if (r != ENOMEM)
      fail_msg("posix_memalign(%zu, %zu) = %d with the kernel refusing",
               aligns[i], n, r);
    assert_int_equal(errno, 1234);
    refuse_next_mappings(2);
    errno = 0;
    assert_null(hak_aligned_alloc(aligns[i], n));
    assert_int_equal(errno, ENOMEM);
    refuse_next_mappings(2);
    errno = 0;
    assert_null(hak_memalign(aligns[i], n));
    assert_int_equal(errno, ENOMEM);
    disarm();
    p = hak_aligned_alloc(aligns[i], n);
    assert_non_null(p);
    assert_aligned(p, aligns[i]);
    memset(p, 3, n);
    hak_free(p);
  }
}

static void test_realloc_keeps_block(void **state) {
  (void)state;
  /* Growing needs a new mapping: mid -> large, large -> huge, huge grown
   * far (mremap may still manage in place: then it is not a failure). */
  const size_t from[] = {5000, 100 * KiB, MiB, 3 * MiB};
  const size_t to[] = {MiB, 600 * KiB, 6 * MiB, 12 * MiB};
  for (size_t i = 0; i < sizeof from / sizeof from[0]; i++) {
    char *p = hak_malloc(from[i]);
    assert_non_null(p);
    pattern_fill_sparse(p, from[i], (uint32_t)i + 5);
    refuse_next_mappings(1);
    errno = 0;
    char *q = hak_realloc(p, to[i]);
    disarm();
    if (q == NULL) {
      assert_int_equal(errno, ENOMEM);
      assert_pattern_sparse(p, from[i], (uint32_t)i + 5);
      q = hak_realloc(p, to[i]); /* now it works */
      assert_non_null(q);
    }
    assert_pattern_sparse(q, from[i], (uint32_t)i + 5);
    hak_free(q);
  }
  /* reallocarray the same way. */
  char *p = hak_malloc(2000);
  assert_non_null(p);
  pattern_fill(p, 2000, 77);
  refuse_next_mappings(1);
  errno = 0;
  char *q = hak_reallocarray(p, 1000, 1000);
  disarm();
  if (q == NULL) {
    assert_int_equal(errno, ENOMEM);
    assert_pattern(p, 2000, 77);
    hak_free(p);
  } else {
    assert_pattern(q, 2000, 77);
    hak_free(q);
  }
}

/* Allocates blocks of `size` until one fails (the tier needs a superslab
 * and the kernel refuses every mapping from now on), then frees them all;
 * returns how many it got.  (A single refused mapping need not surface: a
 * tier that was taking a batch of blocks returns what it already has.) */
static size_t exhaust(size_t size, size_t limit) {
  char **blocks = calloc(limit, sizeof *blocks);
  assert_non_null(blocks);
  refuse_next_mappings(1000000000u);
  size_t n = 0;
  int err = 0;
  for (; n < limit; n++) {
    errno = 0;
    blocks[n] = hak_malloc(size);
    if (blocks[n] == NULL) {
      err = errno;
      break;
    }
    blocks[n][0] = 1;
    blocks[n][size - 1] = 2;
  }
  disarm();
  if (n == limit)
    fail_msg("%zu blocks of %zu bytes: none failed with the kernel refusing",
             limit, size);
  if (err != ENOMEM)
    fail_msg("malloc(%zu) failed after %zu blocks with errno %d, not ENOMEM",
             size, n, err);
  /* The kernel gives again: so does the allocator, for this size too. */
  char *more = hak_malloc(size);
  if (more == NULL)
    fail_msg("malloc(%zu) still fails once mappings work again (errno %d)",
             size, errno);
  hak_free(more);
  for (size_t i = 0; i < n; i++) {
    if (blocks[i][0] != 1 || blocks[i][size - 1] != 2)
      fail_msg("block %zu of %zu bytes changed", i, size);
    hak_free(blocks[i]);
  }
  free(blocks);
  return n;
}

static void test_mid_tier(void **state) {
  (void)state;
  const size_t sizes[] = {1025, 8000, 60 * KiB, 200 * KiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = exhaust(sizes[i], 200000);
    print_message("mid %zu: NULL after %zu blocks\n", sizes[i], n);
  }
}

static void test_tiny_front(void **state) {
  (void)state;
  const size_t sizes[] = {1024, 16, 500};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = exhaust(sizes[i], 2000000);
    print_message("tiny %zu: NULL after %zu blocks\n", sizes[i], n);
  }
}

static void test_everything_works_after(void **state) {
  (void)state;
  /* After all the failures, a mixed workload still runs clean. */
  enum { N = 2000 };
  static char *p[N];
  static size_t sz[N];
  uint64_t rng = 5;
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < N; i++) {
      sz[i] = i % 100 == 0 ? MID_MAX + rng_below(&rng, 2 * MiB)
              : i % 5 == 0 ? TINY_MAX + rng_below(&rng, 30 * KiB)
                           : 1 + rng_below(&rng, TINY_MAX);
      p[i] = hak_malloc(sz[i]);
      assert_non_null(p[i]);
      pattern_fill(p[i], sz[i] > 4096 ? 4096 : sz[i], (uint32_t)i);
    }
    for (int i = 0; i < N; i++) {
      assert_pattern(p[i], sz[i] > 4096 ? 4096 : sz[i], (uint32_t)i);
      hak_free(p[i]);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_aligned_from_free_arena),
      cmocka_unit_test(test_large_and_huge),
      cmocka_unit_test(test_aligned),
      cmocka_unit_test(test_realloc_keeps_block),
      cmocka_unit_test(test_mid_tier),
      cmocka_unit_test(test_tiny_front),
      cmocka_unit_test(test_everything_works_after),
  };
  return cmocka_run_group_tests_name("api_oom", tests, NULL, NULL);
}
