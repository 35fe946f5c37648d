/* SPDX-License-Identifier: MIT */
/* test_conformance.c - the hak_* API answers as the C library does.
 *
 * Links the product (hakmem::hakmem) and calls only hakmem.h.  Covers: the
 * alignment and usable size of every size up to 64 KiB, malloc(0) and
 * free(NULL), realloc across every tier boundary (tiny 1..1024 B, mid up to
 * 256 KiB, large up to 4 MiB, huge beyond) in both directions, calloc on
 * reused memory, every errno answer, the aligned allocators at every
 * alignment up to 8 MiB, valloc/pvalloc, realloc(p, 0) and hak_free_sized,
 * and bad input (zero-byte products, alignments below a pointer or beyond
 * the address space, reallocarray to zero bytes).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "api_test.h"

/* Hides a constant from the compiler, so that calls with absurd sizes are
 * neither warned about (alloc_size) nor folded. */
static size_t opaque(size_t x) {
  volatile size_t v = x;
  return v;
}

/* Resident set size from /proc/self/statm (the product exports no helper). */
static size_t rss_bytes(void) {
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  assert_true(fd >= 0);
  char buf[128];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  assert_true(n > 0);
  buf[n] = 0;
  unsigned long size = 0, resident = 0;
  assert_int_equal(sscanf(buf, "%lu %lu", &size, &resident), 2);
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* ---- sizes, alignment, usable size ------------------------------------- */

static void check_block(void *p, size_t n) {
  if (p == NULL)
    fail_msg("hak_malloc(%zu) returned NULL", n);
  assert_aligned(p, 16);
  size_t u = hak_usable_size(p);
  if (u < n)
    fail_msg("hak_usable_size = %zu < %zu requested", u, n);
  memset(p, 0xa5, u); /* the whole usable size is writable */
}

static void test_every_size_aligned(void **state) {
  (void)state;
  /* Every size up to 4 KiB (tiny classes and the first mid classes), then a
   * stride that is not a multiple of 16 up to 64 KiB.  Several blocks of a
   * size are kept live at once so they come from different positions. */
  enum { LIVE = 4 };
  for (size_t n = 1; n <= 64 * KiB; n += n < 4 * KiB ? 1 : 97) {
    void *p[LIVE];
    for (int i = 0; i < LIVE; i++) {
      p[i] = hak_malloc(n);
      check_block(p[i], n);
      pattern_fill(p[i], n, (uint32_t)(n * LIVE + (size_t)i));
    }
    for (int i = 0; i < LIVE; i++) {
      assert_pattern(p[i], n, (uint32_t)(n * LIVE + (size_t)i));
      hak_free(p[i]);
    }
  }
}

static void test_usable_size_of_null(void **state) {
  (void)state;
  assert_int_equal(hak_usable_size(NULL), 0);
}

static void test_malloc_zero_unique(void **state) {
  (void)state;
  enum { N = 64 };
  void *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = hak_malloc(0);
    assert_non_null(p[i]);
    assert_aligned(p[i], 16);
    for (int j = 0; j < i; j++)
      assert_ptr_not_equal(p[i], p[j]);
  }
  for (int i = 0; i < N; i++)
    hak_free(p[i]);
  /* Freed and taken again, many times: no growth, no crash. */
  for (int i = 0; i < 100000; i++)
    hak_free(hak_malloc(0));
}

static void test_free_null(void **state) {
  (void)state;
  errno = 4321;
  hak_free(NULL);
  hak_free_sized(NULL, 0);
  hak_free_sized(NULL, 100);
  assert_int_equal(errno, 4321);
}

/* ---- realloc across the tiers -------------------------------------------- */

static bool is_sparse(size_t n) { return n > MiB; }

static void fill(void *p, size_t n, uint32_t seed) {
  if (is_sparse(n))
    pattern_fill_sparse(p, n, seed);
  else
    pattern_fill(p, n, seed);
}

/* Walks one block through the given sizes with hak_realloc, checking at each
 * step that the common prefix survived and the new size is usable. */
static void realloc_chain(const size_t *sizes, size_t count, uint32_t seed) {
  size_t n = sizes[0];
  char *p = hak_malloc(n);
  assert_non_null(p);
  fill(p, n, seed);
  for (size_t i = 1; i < count; i++) {
    size_t m = sizes[i];
    char *q = hak_realloc(p, m);
    if (q == NULL)
      fail_msg("hak_realloc(%zu -> %zu) returned NULL", n, m);
    assert_aligned(q, 16);
    size_t u = hak_usable_size(q);
    if (u < m)
      fail_msg("realloc %zu -> %zu: usable size %zu", n, m, u);
    size_t keep = n < m ? n : m;
    size_t bad = is_sparse(n) ? pattern_mismatch_sparse(q, keep, seed)
                              : pattern_mismatch(q, keep, seed);
    if (bad != keep)
      fail_msg("realloc %zu -> %zu (%p -> %p) lost byte %zu of the %zu kept",
               n, m, (void *)p, (void *)q, bad, keep);
    q[u - 1] = 1; /* the last usable byte is writable */
    seed++;
    fill(q, m, seed);
    p = q;
    n = m;
  }
  hak_free(p);
}

static void test_realloc_up_and_down_every_tier(void **state) {
  (void)state;
  const size_t sizes[] = {
      8,          100,        1000,      /* tiny -> tiny */
      1024,       1025,                  /* tiny -> mid at the boundary */
      5000,       100 * KiB,  MID_MAX,   /* mid -> mid */
      MID_MAX + 1,                       /* mid -> large at the boundary */
      MiB,        3 * MiB,               /* large -> large (grows in place) */
      SUPERSLAB - PAGE, SUPERSLAB,       /* the last large size, then huge */
      6 * MiB,    12 * MiB,              /* huge -> huge */
      7 * MiB,                           /* huge shrinks */
      2 * MiB,                           /* huge -> large */
      MID_MAX,    200 * KiB,             /* large -> mid */
      1025,       1024,       600,       /* mid -> tiny */
      20,         1,                     /* tiny shrinks */
      6 * MiB,                           /* tiny -> huge directly */
      16,                                /* huge -> tiny directly */
      300 * KiB,  1000,       5 * MiB, 40 * KiB,
  };
  realloc_chain(sizes, sizeof sizes / sizeof sizes[0], 1);
  /* A huge block shrunk in place below a superslab (its region shrinks with
   * it), then grown again, past a superslab, and down to mid. */
  const size_t huge_down_up[] = {5 * MiB, 2 * MiB + 600 * KiB, 3 * MiB + 900 * KiB,
                                 4 * MiB + 512 * KiB, 9 * MiB, 300 * KiB};
  realloc_chain(huge_down_up, sizeof huge_down_up / sizeof huge_down_up[0], 500);
}

static void test_realloc_each_transition(void **state) {
  (void)state;
  /* Each boundary on its own, in both directions, from a fresh block. */
  const size_t pairs[][2] = {
      {1, 1024},          {1024, 1},             /* tiny <-> tiny */
      {17, 1025},         {1025, 17},            /* tiny <-> mid */
      {1000, 200 * KiB},  {200 * KiB, 1000},     /* tiny <-> mid, far */
      {2000, 300 * KiB},  {300 * KiB, 2000},     /* mid <-> large */
      {MID_MAX, MID_MAX + 1}, {MID_MAX + 1, MID_MAX},
      {300 * KiB, 5 * MiB}, {5 * MiB, 300 * KiB}, /* large <-> huge */
      {SUPERSLAB - PAGE, SUPERSLAB - PAGE + 1},
      {SUPERSLAB - PAGE + 1, SUPERSLAB - PAGE},
      {100, 9 * MiB},     {9 * MiB, 100},        /* tiny <-> huge */
      {50 * KiB, 9 * MiB}, {9 * MiB, 50 * KiB},  /* mid <-> huge */
  };
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
    realloc_chain(pairs[i], 2, (uint32_t)(100 + i * 10));
}

static void test_realloc_large_grows_in_place(void **state) {
  (void)state;
  /* A large block grows into the free pages that follow it in its arena
   * (a 300 KiB block here opens a standard arena, 4 MiB, with nothing
   * after it): bookkeeping, and the block does not move. */
  size_t n = 300 * KiB;
  char *p = hak_malloc(n);
  assert_non_null(p);
  pattern_fill(p, n, 7);
  const size_t steps[] = {512 * KiB, MiB, 2 * MiB, 3 * MiB, SUPERSLAB - 2 * PAGE};
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    char *q = hak_realloc(p, steps[i]);
    assert_non_null(q);
    if (q != p)
      fail_msg("large block %p moved to %p when growing to %zu", (void *)p,
               (void *)q, steps[i]);
    assert_true(hak_usable_size(q) >= steps[i]);
    assert_pattern(q, n, 7);
    q[steps[i] - 1] = 3; /* the new end is writable */
    q[hak_usable_size(q) - 1] = 4;
  }
  /* Shrinking by less than half also keeps it where it is. */
  char *q = hak_realloc(p, 2 * MiB);
  assert_ptr_equal(q, p);
  assert_pattern(q, n, 7);
  hak_free(q);
}

static void test_realloc_huge(void **state) {
  (void)state;
  /* Huge blocks grow with mremap where the address space allows, else
   * move; either way the contents stay. */
  size_t n = 5 * MiB;
  char *p = hak_malloc(n);
  assert_non_null(p);
  pattern_fill_sparse(p, n, 11);
  for (size_t m = 6 * MiB; m <= 20 * MiB; m += 3 * MiB + 12345) {
    p = hak_realloc(p, m);
    assert_non_null(p);
    assert_true(hak_usable_size(p) >= m);
    assert_pattern_sparse(p, n, 11);
    p[m - 1] = 1;
  }
  p = hak_realloc(p, 4 * MiB + 1);
  assert_non_null(p);
  assert_pattern_sparse(p, 4 * MiB + 1, 11);
  hak_free(p);
}

static void test_realloc_null_is_malloc(void **state) {
  (void)state;
  const size_t sizes[] = {0, 1, 1024, 1025, MID_MAX, MID_MAX + 1, 5 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    char *p = hak_realloc(NULL, sizes[i]);
    assert_non_null(p);
    assert_true(hak_usable_size(p) >= sizes[i]);
    memset(p, 1, sizes[i]);
    hak_free(p);
  }
}

/* realloc(p, 0) frees p and returns NULL: done many times, memory does not
 * grow (a leak of the blocks would be tens of megabytes). */
static void test_realloc_zero_frees(void **state) {
  (void)state;
  const struct {
    size_t size;
    int rounds;
  } cases[] = {{1000, 50000}, {64 * KiB, 1000}, {512 * KiB, 100}, {5 * MiB, 12}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    /* Warm up the tier's caches first. */
    for (int i = 0; i < 4; i++) {
      char *p = hak_malloc(cases[c].size);
      assert_non_null(p);
      memset(p, 1, cases[c].size);
      errno = 0;
      assert_null(hak_realloc(p, 0));
    }
    size_t before = rss_bytes();
    for (int i = 0; i < cases[c].rounds; i++) {
      char *p = hak_malloc(cases[c].size);
      assert_non_null(p);
      memset(p, 1, cases[c].size); /* make every page resident */
      assert_null(hak_realloc(p, 0));
    }
    size_t after = rss_bytes();
    if (after > before + 16 * MiB)
      fail_msg("realloc(p, 0) of %zu-byte blocks, %d times: RSS %zu -> %zu",
               cases[c].size, cases[c].rounds, before, after);
  }
}

/* hak_free_sized with any size between the requested and the usable size
 * frees the block (memory is reused: RSS stays flat). */
static void test_free_sized(void **state) {
  (void)state;
  const size_t sizes[] = {1, 16, 17, 1000, 1024, 1025, 5000, MID_MAX,
                          MID_MAX + 1, MiB, 5 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    char *p = hak_malloc(sizes[i]);
    assert_non_null(p);
    size_t u = hak_usable_size(p);
    memset(p, 2, u);
    hak_free_sized(p, sizes[i]);
    p = hak_malloc(sizes[i]);
    assert_non_null(p);
    hak_free_sized(p, hak_usable_size(p));
  }
  size_t before = rss_bytes();
  for (int r = 0; r < 20000; r++) {
    size_t n = 1 + (size_t)(r * 131) % (64 * KiB);
    char *p = hak_malloc(n);
    assert_non_null(p);
    memset(p, 3, n);
    hak_free_sized(p, n + (size_t)r % (hak_usable_size(p) - n + 1));
  }
  size_t after = rss_bytes();
  if (after > before + 16 * MiB)
    fail_msg("hak_free_sized: RSS %zu -> %zu over 20000 rounds", before, after);
}

/* ---- calloc ---------------------------------------------------------------- */

static void expect_zero(const unsigned char *p, size_t n, const char *what) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != 0)
      fail_msg("%s: byte %zu of %zu is 0x%02x, not 0", what, i, n, p[i]);
}

static void test_calloc_zeroes_reused_memory(void **state) {
  (void)state;
  const size_t sizes[] = {1,       16,       24,         100,     1000,
                          1024,    1025,     4096,       50000,   MID_MAX,
                          MID_MAX + 1, MiB,  SUPERSLAB - PAGE, 6 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    /* Dirty a few blocks of the size, free them, calloc the same size: the
     * blocks come back from the thread's lists or the caches. */
    enum { K = 8 };
    void *p[K];
    for (int k = 0; k < K; k++) {
      p[k] = hak_malloc(n);
      assert_non_null(p[k]);
      memset(p[k], 0xff, hak_usable_size(p[k]));
    }
    for (int k = K - 1; k >= 0; k--)
      hak_free(p[k]);
    for (int k = 0; k < K; k++) {
      p[k] = hak_calloc(1, n);
      assert_non_null(p[k]);
      char what[64];
      snprintf(what, sizeof what, "calloc(1, %zu) #%d", n, k);
      expect_zero(p[k], n, what);
      memset(p[k], 0xee, n);
    }
    for (int k = 0; k < K; k++)
      hak_free(p[k]);
    /* count * size, the other way round. */
    for (int k = 0; k < K; k++) {
      p[k] = hak_calloc(n, 1);
      assert_non_null(p[k]);
      expect_zero(p[k], n, "calloc(n, 1)");
    }
    for (int k = 0; k < K; k++)
      hak_free(p[k]);
  }
  /* A multiplication that does not overflow. */
  unsigned *a = hak_calloc(3000, sizeof *a);
  assert_non_null(a);
  expect_zero((unsigned char *)a, 3000 * sizeof *a, "calloc(3000, 4)");
  hak_free(a);
}

static void test_calloc_fresh_large_zero(void **state) {
  (void)state;
  /* Big blocks no one has used: every page reads zero. */
  const size_t sizes[] = {MID_MAX + 1, 2 * MiB, SUPERSLAB - PAGE, 10 * MiB, 33 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    unsigned char *p = hak_calloc(sizes[i], 1);
    assert_non_null(p);
    expect_zero(p, sizes[i], "large calloc");
    hak_free(p);
  }
  /* Several at once (so they cannot all be the same cached region). */
  unsigned char *q[6];
  for (int i = 0; i < 6; i++) {
    q[i] = hak_calloc(1, 3 * MiB + (size_t)i * PAGE);
    assert_non_null(q[i]);
    expect_zero(q[i], 3 * MiB + (size_t)i * PAGE, "large calloc, many live");
    memset(q[i], 0x77, 3 * MiB);
  }
  for (int i = 0; i < 6; i++)
    hak_free(q[i]);
}

/* ---- errno answers ------------------------------------------------------- */

static void test_malloc_impossible_sizes(void **state) {
  (void)state;
  const size_t sizes[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4096,
                          (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX,
                          (size_t)1 << 62, (size_t)1 << 50};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    errno = 0;
    void *p = hak_malloc(opaque(sizes[i]));
    if (p != NULL)
      fail_msg("hak_malloc(%zu) succeeded", sizes[i]);
    assert_int_equal(errno, ENOMEM);
  }
}

static void test_calloc_overflow(void **state) {
  (void)state;
  const size_t pairs[][2] = {
      {SIZE_MAX, 2},           {2, SIZE_MAX},
      {(size_t)1 << 32, (size_t)1 << 32},
      {SIZE_MAX / 2 + 1, 2},   {SIZE_MAX, SIZE_MAX},
      {1, SIZE_MAX},           /* no overflow, still impossible */
      {(size_t)PTRDIFF_MAX / 2 + 1, 2},
  };
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    errno = 0;
    void *p = hak_calloc(opaque(pairs[i][0]), opaque(pairs[i][1]));
    if (p != NULL)
      fail_msg("hak_calloc(%zu, %zu) succeeded", pairs[i][0], pairs[i][1]);
    assert_int_equal(errno, ENOMEM);
  }
}

static void test_reallocarray_overflow_keeps_block(void **state) {
  (void)state;
  const size_t sizes[] = {100, 5000, 500 * KiB, 5 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    char *p = hak_malloc(sizes[i]);
    assert_non_null(p);
    fill(p, sizes[i], 21);
    errno = 0;
    assert_null(hak_reallocarray(p, opaque(SIZE_MAX / 3), 4));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(hak_reallocarray(p, opaque((size_t)1 << 33), (size_t)1 << 31));
    assert_int_equal(errno, ENOMEM);
    /* A product that fits but is impossible. */
    errno = 0;
    assert_null(hak_reallocarray(p, opaque(SIZE_MAX / 2), 2));
    assert_int_equal(errno, ENOMEM);
    if (is_sparse(sizes[i]))
      assert_pattern_sparse(p, sizes[i], 21);
    else
      assert_pattern(p, sizes[i], 21);
    /* And a good one still works on the same block. */
    char *q = hak_reallocarray(p, 2, sizes[i]);
    assert_non_null(q);
    if (is_sparse(sizes[i]))
      assert_pattern_sparse(q, sizes[i], 21);
    else
      assert_pattern(q, sizes[i], 21);
    hak_free(q);
  }
  /* reallocarray(NULL, ...) is an allocation. */
  char *r = hak_reallocarray(NULL, 10, 10);
  assert_non_null(r);
  memset(r, 0, 100);
  hak_free(r);
}

static void test_realloc_impossible_keeps_block(void **state) {
  (void)state;
  const size_t sizes[] = {1, 100, 1024, 5000, MID_MAX, 500 * KiB, 5 * MiB};
  const size_t bad[] = {SIZE_MAX, SIZE_MAX - 4095, (size_t)PTRDIFF_MAX + 1,
                        (size_t)PTRDIFF_MAX, (size_t)1 << 50};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    char *p = hak_malloc(sizes[i]);
    assert_non_null(p);
    fill(p, sizes[i], 31);
    size_t u = hak_usable_size(p);
    for (size_t j = 0; j < sizeof bad / sizeof bad[0]; j++) {
      errno = 0;
      void *q = hak_realloc(p, opaque(bad[j]));
      if (q != NULL)
        fail_msg("hak_realloc(%zu-byte block, %zu) succeeded", sizes[i], bad[j]);
      assert_int_equal(errno, ENOMEM);
      /* The old block is intact and still the caller's. */
      assert_int_equal(hak_usable_size(p), u);
    }
    if (is_sparse(sizes[i]))
      assert_pattern_sparse(p, sizes[i], 31);
    else
      assert_pattern(p, sizes[i], 31);
    hak_free(p);
  }
}

/* ---- aligned allocation --------------------------------------------------- */

static void test_posix_memalign_einval(void **state) {
  (void)state;
  const size_t bad[] = {0, 1, 2, 3, 4, 12, 24, 48, 100, 4097,
                        SIZE_MAX, (size_t)1 << 63 | 8};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    void *out = (void *)&out; /* a sentinel */
    errno = 777;
    int r = hak_posix_memalign(&out, opaque(bad[i]), 64);
    if (r != EINVAL)
      fail_msg("posix_memalign(alignment %zu) returned %d, not EINVAL", bad[i], r);
    assert_int_equal(errno, 777);
  }
}

static void test_posix_memalign_enomem(void **state) {
  (void)state;
  const size_t aligns[] = {8, 16, 64, 4096, 64 * KiB, 2 * MiB, 8 * MiB};
  for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
    void *out = NULL;
    errno = 777;
    int r = hak_posix_memalign(&out, aligns[i], opaque(SIZE_MAX - 8));
    if (r != ENOMEM)
      fail_msg("posix_memalign(%zu, SIZE_MAX - 8) returned %d", aligns[i], r);
    assert_int_equal(errno, 777); /* errno untouched on failure too */
  }
}

static void test_aligned_alloc_einval(void **state) {
  (void)state;
  const size_t bad[] = {0, 3, 5, 24, 1000, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    errno = 0;
    void *p = hak_aligned_alloc(opaque(bad[i]), 64);
    if (p != NULL)
      fail_msg("aligned_alloc(%zu, 64) succeeded", bad[i]);
    assert_int_equal(errno, EINVAL);
  }
}

static void test_memalign_glibc_semantics(void **state) {
  (void)state;
  /* Not a power of two: rounded up to the next one. */
  const size_t cases[][2] = {{3, 16}, {24, 32}, {48, 64}, {100, 128},
                             {1000, 1024}, {5000, 8192}, {65537, 131072},
                             {3 * MiB, 4 * MiB}, {5 * MiB, 8 * MiB}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    for (size_t n = 1; n <= 300 * KiB; n *= 7) {
      char *p = hak_memalign(opaque(cases[i][0]), n);
      if (p == NULL)
        fail_msg("memalign(%zu, %zu) failed", cases[i][0], n);
      assert_aligned(p, cases[i][1]);
      assert_true(hak_usable_size(p) >= n);
      memset(p, 5, n);
      hak_free(p);
    }
  }
  /* Below 16 (and 0): no constraint beyond the usual. */
  for (size_t a = 0; a <= 16; a++) {
    char *p = hak_memalign(opaque(a), 40);
    assert_non_null(p);
    assert_aligned(p, 16);
    hak_free(p);
  }
  /* An alignment no block can have. */
  errno = 0;
  assert_null(hak_memalign(opaque(SIZE_MAX), 16));
  assert_int_equal(errno, EINVAL);
  errno = 0;
  assert_null(hak_memalign(opaque(SIZE_MAX / 2 + 2), 16));
  assert_int_equal(errno, EINVAL);
  /* A possible alignment with an impossible size. */
  errno = 0;
  assert_null(hak_memalign(64, opaque(SIZE_MAX - 100)));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(hak_aligned_alloc(4096, opaque((size_t)PTRDIFF_MAX)));
  assert_int_equal(errno, ENOMEM);
}

enum how { POSIX_MEMALIGN, ALIGNED_ALLOC, MEMALIGN };

static void *aligned_by(enum how h, size_t align, size_t n) {
  switch (h) {
  case POSIX_MEMALIGN: {
    void *p = NULL;
    int r = hak_posix_memalign(&p, align, n);
    if (r != 0)
      fail_msg("posix_memalign(%zu, %zu) = %d", align, n, r);
    return p;
  }
  case ALIGNED_ALLOC:
    return hak_aligned_alloc(align, n);
  default:
    return hak_memalign(align, n);
  }
}

static void check_aligned_block(char *p, size_t align, size_t n, const char *fn,
                                uint32_t seed) {
  if (p == NULL)
    fail_msg("%s(%zu, %zu) returned NULL", fn, align, n);
  if ((uintptr_t)p & (align - 1))
    fail_msg("%s(%zu, %zu) = %p: misaligned", fn, align, n, (void *)p);
  size_t u = hak_usable_size(p);
  if (u < n)
    fail_msg("%s(%zu, %zu): usable size %zu", fn, align, n, u);
  p[u - 1] = 9; /* the end of the usable size is writable */
  fill(p, n, seed);
}

static void test_aligned_every_alignment(void **state) {
  (void)state;
  const char *names[] = {"posix_memalign", "aligned_alloc", "memalign"};
  /* tiny, tiny/mid boundary, mid, mid/large boundary, large, huge */
  const size_t sizes[] = {0,         1,           8,        100,
                          1000,      1024,        1025,     3000,
                          40 * KiB,  MID_MAX - 1, MID_MAX,  MID_MAX + 1,
                          MiB,       3 * MiB,     SUPERSLAB - PAGE, 5 * MiB};
  uint32_t seed = 1000;
  for (int h = POSIX_MEMALIGN; h <= MEMALIGN; h++) {
    for (size_t align = 8; align <= 8 * MiB; align *= 2) {
      /* Several live at once, freed in a different order, so that the
       * alignment does not come from a single lucky address. */
      enum { N = sizeof sizes / sizeof sizes[0] };
      char *p[N];
      for (size_t i = 0; i < N; i++) {
        p[i] = aligned_by((enum how)h, align, sizes[i]);
        check_aligned_block(p[i], align, sizes[i], names[h], seed + (uint32_t)i);
      }
      for (size_t i = 0; i < N; i++) {
        size_t n = sizes[i];
        size_t bad = is_sparse(n) ? pattern_mismatch_sparse(p[i], n, seed + (uint32_t)i)
                                  : pattern_mismatch(p[i], n, seed + (uint32_t)i);
        if (bad != n)
          fail_msg("%s(%zu, %zu): byte %zu overwritten by a neighbour",
                   names[h], align, n, bad);
      }
      for (size_t i = 0; i < N; i += 2)
        hak_free(p[i]);
      for (size_t i = 1; i < N; i += 2)
        hak_free(p[i]);
      seed += 100;
    }
  }
}

static void test_aligned_realloc_keeps_contents(void **state) {
  (void)state;
  /* A block from an aligned allocator is an ordinary block for realloc and
   * free (including blocks aligned to a superslab or more). */
  const size_t aligns[] = {32, 4096, 64 * KiB, MiB, 4 * MiB, 8 * MiB};
  for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
    char *p = hak_aligned_alloc(aligns[i], 1000);
    assert_non_null(p);
    assert_aligned(p, aligns[i]);
    pattern_fill(p, 1000, 41);
    p = hak_realloc(p, 200 * KiB);
    assert_non_null(p);
    assert_pattern(p, 1000, 41);
    p = hak_realloc(p, 6 * MiB);
    assert_non_null(p);
    assert_pattern(p, 1000, 41);
    p = hak_realloc(p, 10);
    assert_non_null(p);
    assert_pattern(p, 10, 41);
    hak_free(p);
  }
}

static void test_valloc_pvalloc(void **state) {
  (void)state;
  const size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 5000, 12289,
                          100 * KiB, MID_MAX, MID_MAX + 1, MiB, 5 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    char *p = hak_valloc(n);
    if (p == NULL)
      fail_msg("valloc(%zu) failed", n);
    assert_aligned(p, PAGE);
    assert_true(hak_usable_size(p) >= n);
    fill(p, n, 51);
    char *q = hak_pvalloc(n);
    if (q == NULL)
      fail_msg("pvalloc(%zu) failed", n);
    assert_aligned(q, PAGE);
    size_t rounded = n == 0 ? PAGE : (n + PAGE - 1) & ~(PAGE - 1);
    size_t u = hak_usable_size(q);
    if (u < rounded)
      fail_msg("pvalloc(%zu): usable size %zu < %zu (a whole page)", n, u, rounded);
    memset(q, 0x3c, rounded); /* the whole rounded size is the caller's */
    size_t bad = is_sparse(n) ? pattern_mismatch_sparse(p, n, 51)
                              : pattern_mismatch(p, n, 51);
    assert_int_equal(bad, n);
    hak_free(p);
    hak_free(q);
  }
  errno = 0;
  assert_null(hak_pvalloc(opaque(SIZE_MAX - 10)));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(hak_valloc(opaque(SIZE_MAX - 10)));
  assert_int_equal(errno, ENOMEM);
}

/* ---- bad input the other tests do not reach ------------------------------ */

/* Everything here is answered as POSIX and glibc answer it, in every build:
 * zero-byte products, alignments below a pointer (valid for aligned_alloc
 * and memalign, EINVAL for posix_memalign: test_posix_memalign_einval),
 * alignments beyond the address space, reallocarray to zero bytes. */
static void test_bad_input_contained(void **state) {
  (void)state;
  /* calloc with a zero product, one factor absurd: a unique, freeable
   * block, not ENOMEM (there is no overflow). */
  const size_t zero_products[][2] = {{0, 0}, {0, 1}, {1, 0}, {0, SIZE_MAX},
                                     {SIZE_MAX, 0}, {(size_t)1 << 63, 0}};
  void *z[sizeof zero_products / sizeof zero_products[0]];
  for (size_t i = 0; i < sizeof zero_products / sizeof zero_products[0]; i++) {
    errno = 0;
    z[i] = hak_calloc(opaque(zero_products[i][0]), opaque(zero_products[i][1]));
    if (z[i] == NULL)
      fail_msg("calloc(%zu, %zu) = NULL (errno %d): a zero-byte block is "
               "possible", zero_products[i][0], zero_products[i][1], errno);
    assert_aligned(z[i], 16);
    for (size_t j = 0; j < i; j++)
      assert_ptr_not_equal(z[i], z[j]);
  }
  for (size_t i = 0; i < sizeof z / sizeof z[0]; i++)
    hak_free(z[i]);

  /* Alignments below 16 (and below a pointer) are valid for aligned_alloc
   * and memalign: ordinary 16-byte aligned blocks, of any size. */
  for (size_t a = 1; a <= 8; a *= 2) {
    const size_t sizes[] = {0, 1, 3, 7, 100, 5000, MID_MAX + 3};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      char *p = hak_aligned_alloc(opaque(a), sizes[i]);
      if (p == NULL)
        fail_msg("aligned_alloc(%zu, %zu) = NULL", a, sizes[i]);
      assert_aligned(p, 16);
      assert_true(hak_usable_size(p) >= sizes[i]);
      memset(p, 0x11, sizes[i]);
      char *q = hak_memalign(opaque(a), sizes[i]);
      assert_non_null(q);
      assert_aligned(q, 16);
      memset(q, 0x22, sizes[i]);
      hak_free(p);
      hak_free(q);
    }
  }
  /* A size smaller than the alignment, zero included. */
  for (size_t a = 32; a <= 8 * MiB; a *= 4) {
    char *p = hak_aligned_alloc(opaque(a), 0);
    if (p == NULL)
      fail_msg("aligned_alloc(%zu, 0) = NULL", a);
    assert_aligned(p, a);
    hak_free(p);
  }

  /* Powers of two no address space can honour: ENOMEM (not EINVAL, not a
   * crash, not a block); posix_memalign returns it and leaves errno. */
  const size_t vast[] = {(size_t)1 << 47, (size_t)1 << 52, (size_t)1 << 62,
                         (size_t)1 << 63};
  for (size_t i = 0; i < sizeof vast / sizeof vast[0]; i++) {
    errno = 0;
    void *p = hak_aligned_alloc(opaque(vast[i]), 64);
    if (p != NULL || errno != ENOMEM)
      fail_msg("aligned_alloc(%zu, 64) = %p, errno %d: not NULL, ENOMEM",
               vast[i], p, errno);
    errno = 0;
    p = hak_memalign(opaque(vast[i]), 1);
    if (p != NULL || errno != ENOMEM)
      fail_msg("memalign(%zu, 1) = %p, errno %d: not NULL, ENOMEM", vast[i], p,
               errno);
    void *out = (void *)&out;
    errno = 555;
    int r = hak_posix_memalign(&out, opaque(vast[i]), 8);
    if (r != ENOMEM || errno != 555 || out != (void *)&out)
      fail_msg("posix_memalign(%zu, 8) = %d, errno %d: not ENOMEM, untouched",
               vast[i], r, errno);
  }

  /* reallocarray to zero bytes is realloc(p, 0): the block is freed (done
   * many times, memory does not grow) and NULL comes back. */
  size_t before = rss_bytes();
  for (int i = 0; i < 20000; i++) {
    char *p = hak_malloc(2000);
    assert_non_null(p);
    memset(p, 1, 2000);
    assert_null(hak_reallocarray(p, opaque(i & 1 ? 0 : 10), opaque(i & 1 ? 10 : 0)));
    p = hak_malloc(300 * KiB);
    assert_non_null(p);
    memset(p, 1, 300 * KiB);
    assert_null(hak_reallocarray(p, opaque(SIZE_MAX), 0));
  }
  size_t after = rss_bytes();
  if (after > before + 16 * MiB)
    fail_msg("reallocarray(p, n, 0) 40000 times: RSS %zu -> %zu KiB", before >> 10,
             after >> 10);
  /* reallocarray(NULL, 0, 0) is malloc(0). */
  void *p = hak_reallocarray(NULL, 0, 0);
  assert_non_null(p);
  hak_free(p);
  /* realloc(NULL, 0) likewise, and each is a distinct block. */
  void *a = hak_realloc(NULL, 0), *b = hak_realloc(NULL, 0);
  assert_non_null(a);
  assert_non_null(b);
  assert_ptr_not_equal(a, b);
  hak_free(a);
  hak_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_size_aligned),
      cmocka_unit_test(test_usable_size_of_null),
      cmocka_unit_test(test_malloc_zero_unique),
      cmocka_unit_test(test_free_null),
      cmocka_unit_test(test_realloc_up_and_down_every_tier),
      cmocka_unit_test(test_realloc_each_transition),
      cmocka_unit_test(test_realloc_large_grows_in_place),
      cmocka_unit_test(test_realloc_huge),
      cmocka_unit_test(test_realloc_null_is_malloc),
      cmocka_unit_test(test_realloc_zero_frees),
      cmocka_unit_test(test_free_sized),
      cmocka_unit_test(test_calloc_zeroes_reused_memory),
      cmocka_unit_test(test_calloc_fresh_large_zero),
      cmocka_unit_test(test_malloc_impossible_sizes),
      cmocka_unit_test(test_calloc_overflow),
      cmocka_unit_test(test_reallocarray_overflow_keeps_block),
      cmocka_unit_test(test_realloc_impossible_keeps_block),
      cmocka_unit_test(test_posix_memalign_einval),
      cmocka_unit_test(test_posix_memalign_enomem),
      cmocka_unit_test(test_aligned_alloc_einval),
      cmocka_unit_test(test_memalign_glibc_semantics),
      cmocka_unit_test(test_aligned_every_alignment),
      cmocka_unit_test(test_aligned_realloc_keeps_contents),
      cmocka_unit_test(test_valloc_pvalloc),
      cmocka_unit_test(test_bad_input_contained),
  };
  return cmocka_run_group_tests_name("api_conformance", tests, NULL, NULL);
}
