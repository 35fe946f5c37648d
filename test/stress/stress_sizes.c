/* SPDX-License-Identifier: MIT */
/* stress_sizes.c - every size across the tier and class boundaries, realloc
 * chains that cross the tiers, and aligned allocation at every power of two.
 *
 *  - sizes: every size from 0 to 2 KiB (the 64 tiny classes and the tiny /
 *    mid boundary at 1 KiB), both sides of every mid class (1280 ..
 *    256 KiB), every size within 1 KiB of the mid / large boundary
 *    (256 KiB) and a stride around it, every size (stride 7) within 8 KiB
 *    below the large / huge boundary (4 MiB - a page, where the header page
 *    no longer fits) and a stride beyond it.  A window of the last 48 blocks
 *    stays live: each new block must not overlap any of them (by address
 *    range, usable size included), its whole usable size must be writable,
 *    and every block's pattern is checked when it leaves the window.
 *  - realloc chains: 8 blocks walked through 10000 resizes chosen to cross
 *    and hit the boundaries (1024/1025, 256 KiB/+1, 4 MiB - 4 KiB/+1, huge),
 *    interleaved so that moves and in-place resizes mix; then one block
 *    grown by 1/8 at a time from 1 byte to 9 MiB and shrunk back.  The kept
 *    prefix is checked at every step.
 *  - aligned: every power of two from 1 to 32 MiB through aligned_alloc,
 *    memalign and posix_memalign (from sizeof(void *)), sizes around the
 *    alignment and in every tier, 24 live at once (no overlap), freed in a
 *    shuffled order; some reallocated (contents kept).
 *
 * Short mode: about a second in the release builds; long mode repeats the
 * chains and the aligned sweep with other seeds for HAK_STRESS_SECONDS.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "stress.h"

/* ---- a window of live blocks, checked for overlap ----------------------- */

#define WINDOW 48
struct live {
  char *p;
  size_t size, usable;
  uint32_t seed;
};

struct window {
  struct live b[WINDOW];
  unsigned next;
  unsigned long blocks;
};

static void window_retire(struct live *l, const char *what) {
  if (!l->p)
    return;
  size_t bad = block_mismatch(l->p, l->size, l->size, l->seed);
  if (bad != l->size)
    fail_msg("%s: block %p of %zu bytes: byte %zu changed while live", what,
             (void *)l->p, l->size, bad);
  hak_free(l->p);
  l->p = NULL;
}

/* Takes a new block of n bytes into the window (retiring the oldest). */
static void window_add(struct window *w, char *p, size_t n, size_t align,
                       const char *what) {
  if (p == NULL)
    fail_msg("%s: allocation of %zu bytes (alignment %zu) failed, errno %d",
             what, n, align, errno);
  if ((uintptr_t)p & (align - 1))
    fail_msg("%s: %p for %zu bytes is not aligned to %zu", what, (void *)p, n,
             align);
  size_t u = hak_usable_size(p);
  if (u < n)
    fail_msg("%s: usable size %zu < %zu", what, u, n);
  uintptr_t a = (uintptr_t)p, e = a + (u ? u : 1);
  for (unsigned i = 0; i < WINDOW; i++) {
    struct live *l = &w->b[i];
    if (!l->p)
      continue;
    uintptr_t la = (uintptr_t)l->p, le = la + (l->usable ? l->usable : 1);
    if (a < le && la < e)
      fail_msg("%s: new block [%p, +%zu) overlaps the live block [%p, +%zu) "
               "of %zu bytes", what, (void *)p, u, (void *)l->p, l->usable,
               l->size);
  }
  if (u)
    p[u - 1] = 0x5a; /* the last usable byte is the caller's */
  struct live *slot = &w->b[w->next];
  w->next = (w->next + 1) % WINDOW;
  window_retire(slot, what);
  uint32_t seed = (uint32_t)++w->blocks * 7919u;
  block_fill(p, n, seed);
  *slot = (struct live){p, n, u, seed};
}

static void window_clear(struct window *w, const char *what) {
  for (unsigned i = 0; i < WINDOW; i++)
    window_retire(&w->b[i], what);
}

/* Size classes of the mid tier (docs/ARCHITECTURE.md): four per doubling
 * from 1 KiB: 1280, 1536, 1792, 2048, 2560, ..., 262144. */
static size_t mid_class_size(unsigned cls) {
  unsigned k = cls / 4 + 10;
  return (size_t)(cls % 4 + 5) << (k - 2);
}

static void test_every_size_across_boundaries(void **state) {
  (void)state;
  double t0 = stress_now();
  static struct window w;
  char what[96];
  /* 0 .. 2 KiB, every size, some through calloc (zeroes checked). */
  for (size_t n = 0; n <= 2 * KiB; n++) {
    snprintf(what, sizeof what, "size %zu", n);
    char *p;
    if (n % 5 == 0) {
      p = hak_calloc(1, n);
      for (size_t k = 0; p && k < n; k++)
        if (p[k])
          fail_msg("calloc(1, %zu): byte %zu is not zero", n, k);
    } else {
      p = hak_malloc(n);
    }
    window_add(&w, p, n, 16, what);
  }
  /* Both sides of every mid class. */
  for (unsigned cls = 0; cls < 32; cls++) {
    size_t c = mid_class_size(cls);
    for (size_t n = c - 2; n <= c + 2; n++) {
      snprintf(what, sizeof what, "mid class %u (%zu), size %zu", cls, c, n);
      window_add(&w, hak_malloc(n), n, 16, what);
    }
  }
  /* The mid / large boundary: every size within 1 KiB, then a stride. */
  for (size_t n = MID_MAX - KiB; n <= MID_MAX + KiB; n++) {
    snprintf(what, sizeof what, "size MID_MAX%+td", (ptrdiff_t)(n - MID_MAX));
    window_add(&w, hak_malloc(n), n, 16, what);
  }
  for (size_t n = MID_MAX - 64 * KiB; n <= MID_MAX + 64 * KiB; n += 509) {
    snprintf(what, sizeof what, "size MID_MAX%+td", (ptrdiff_t)(n - MID_MAX));
    window_add(&w, hak_malloc(n), n, 16, what);
  }
  window_clear(&w, "mid/large");
  /* The large / huge boundary: a large block is one superslab with a page
   * of header, so 4 MiB - 4 KiB is the largest (less with guard pages). */
  for (size_t n = SUPERSLAB - 3 * PAGE; n <= SUPERSLAB - PAGE + 64; n += 7) {
    snprintf(what, sizeof what, "size 4 MiB%+td", (ptrdiff_t)(n - SUPERSLAB));
    window_add(&w, hak_malloc(n), n, 16, what);
  }
  for (size_t n = SUPERSLAB - PAGE - 2; n <= SUPERSLAB + 2 * PAGE; n += 4093) {
    snprintf(what, sizeof what, "size 4 MiB%+td", (ptrdiff_t)(n - SUPERSLAB));
    window_add(&w, hak_calloc(n, 1), n, 16, what);
  }
  window_clear(&w, "large/huge");
  /* Huge sizes up to 40 MiB, a few of each order. */
  for (size_t n = SUPERSLAB + 1; n <= 40 * MiB; n = n * 3 / 2 + 4095) {
    snprintf(what, sizeof what, "huge size %zu", n);
    window_add(&w, hak_malloc(n), n, 16, what);
  }
  window_clear(&w, "huge");
  print_message("sizes: %lu blocks, every one checked against the %d before "
                "it (%.2f s)\n", w.blocks, WINDOW, stress_now() - t0);
}

/* ---- realloc chains ------------------------------------------------------ */

static const size_t boundary_sizes[] = {
    1,           16,          17,          1023,       1024,
    1025,        1280,        1281,        64 * KiB,   MID_MAX - 1,
    MID_MAX,     MID_MAX + 1, 300 * KiB,   MiB,        SUPERSLAB - 2 * PAGE,
    SUPERSLAB - PAGE, SUPERSLAB - PAGE + 1, SUPERSLAB, SUPERSLAB + 1, 9 * MiB,
};
#define NBOUNDARY (sizeof boundary_sizes / sizeof boundary_sizes[0])

static size_t chain_size(uint64_t *rng, size_t cur) {
  unsigned r = (unsigned)rng_below(rng, 100);
  if (r < 30) /* a boundary */
    return boundary_sizes[rng_below(rng, NBOUNDARY)];
  if (r < 60) { /* a small step either way */
    size_t d = 1 + rng_below(rng, 64);
    return rng_below(rng, 2) || cur <= d ? cur + d : cur - d;
  }
  if (r < 75) /* tiny */
    return 1 + rng_below(rng, TINY_MAX);
  if (r < 92) /* mid */
    return TINY_MAX + 1 + rng_below(rng, MID_MAX - TINY_MAX);
  if (r < 99) /* large */
    return MID_MAX + 1 + rng_below(rng, SUPERSLAB - MID_MAX);
  return SUPERSLAB + rng_below(rng, 8 * MiB); /* huge (and the boundaries) */
}

struct chain {
  char *p;
  size_t size;
  uint32_t seed;
};

static unsigned long realloc_chains(uint64_t seed, unsigned steps) {
  enum { CHAINS = 8 };
  struct chain c[CHAINS];
  uint64_t rng = seed;
  for (unsigned i = 0; i < CHAINS; i++) {
    c[i].size = 1 + i * 100;
    c[i].p = hak_malloc(c[i].size);
    assert_non_null(c[i].p);
    c[i].seed = (uint32_t)(seed + i);
    block_fill(c[i].p, c[i].size, c[i].seed);
  }
  unsigned long moved = 0;
  for (unsigned s = 0; s < steps; s++) {
    struct chain *k = &c[rng_below(&rng, CHAINS)];
    size_t m = chain_size(&rng, k->size);
    char *q = (s % 11 == 0) ? hak_reallocarray(k->p, 1, m) : hak_realloc(k->p, m);
    if (q == NULL)
      fail_msg("step %u: realloc(%p, %zu -> %zu) failed (errno %d)", s,
               (void *)k->p, k->size, m, errno);
    if ((uintptr_t)q & 15)
      fail_msg("step %u: realloc to %zu gave %p, misaligned", s, m, (void *)q);
    size_t u = hak_usable_size(q);
    if (u < m)
      fail_msg("step %u: realloc to %zu: usable size %zu", s, m, u);
    size_t keep = k->size < m ? k->size : m;
    size_t bad = block_mismatch(q, keep, k->size, k->seed);
    if (bad != keep)
      fail_msg("step %u: realloc %zu -> %zu (%p -> %p) lost byte %zu of the "
               "%zu kept", s, k->size, m, (void *)k->p, (void *)q, bad, keep);
    moved += q != k->p;
    q[u - 1] = 1;
    k->p = q;
    k->size = m;
    k->seed += CHAINS;
    block_fill(q, m, k->seed);
  }
  for (unsigned i = 0; i < CHAINS; i++) {
    size_t bad = block_mismatch(c[i].p, c[i].size, c[i].size, c[i].seed);
    if (bad != c[i].size)
      fail_msg("chain %u: byte %zu of %zu changed", i, bad, c[i].size);
    hak_free(c[i].p);
  }
  return moved;
}

/* Grows a block by an eighth at a time (a buffer being appended to), then
 * shrinks it the same way. */
static unsigned grow_and_shrink(size_t top, uint32_t seed) {
  size_t n = 1;
  char *p = hak_malloc(n);
  assert_non_null(p);
  block_fill(p, n, seed);
  unsigned steps = 0;
  bool growing = true;
  while (growing || n > 1) {
    size_t m = growing ? n + n / 8 + 1 : n - n / 8 - 1;
    if (growing && m > top) {
      growing = false;
      continue;
    }
    if (m == 0)
      m = 1;
    char *q = hak_realloc(p, m);
    if (q == NULL)
      fail_msg("realloc %zu -> %zu failed", n, m);
    size_t keep = n < m ? n : m;
    size_t bad = block_mismatch(q, keep, n, seed);
    if (bad != keep)
      fail_msg("%s %zu -> %zu (%p -> %p): byte %zu of %zu changed",
               growing ? "growing" : "shrinking", n, m, (void *)p, (void *)q,
               bad, keep);
    seed++;
    block_fill(q, m, seed);
    p = q;
    n = m;
    steps++;
  }
  hak_free(p);
  return steps;
}

static void test_realloc_chains(void **state) {
  (void)state;
  double t0 = stress_now();
  unsigned steps = 10000 / STRESS_SLOW;
  unsigned long moved = realloc_chains(0xc4a1, steps);
  unsigned g = grow_and_shrink(9 * MiB, 77);
  unsigned long total = steps;
  if (stress_long_mode) {
    double end = stress_now() + stress_seconds / 2;
    for (uint64_t s = 1; stress_now() < end; s++) {
      moved += realloc_chains(0xc4a1 + s * 1000, 20000);
      total += 20000;
    }
  }
  print_message("realloc chains: %lu resizes (%lu moved the block); grow and "
                "shrink 1 B <-> 9 MiB in %u steps (%.2f s)\n", total, moved, g,
                stress_now() - t0);
  assert_true(moved > 0);
}

/* ---- aligned allocation at every power of two ---------------------------- */

enum how { ALIGNED_ALLOC, MEMALIGN, POSIX_MEMALIGN };
static const char *const how_name[] = {"aligned_alloc", "memalign",
                                       "posix_memalign"};

static char *aligned_by(enum how h, size_t align, size_t n) {
  switch (h) {
  case ALIGNED_ALLOC:
    return hak_aligned_alloc(align, n);
  case MEMALIGN:
    return hak_memalign(align, n);
  default: {
    void *p = NULL;
    int r = hak_posix_memalign(&p, align, n);
    if (r != 0)
      fail_msg("posix_memalign(%zu, %zu) = %d", align, n, r);
    return p;
  }
  }
}

static unsigned long aligned_sweep(uint64_t seed) {
  static struct window w;
  uint64_t rng = seed;
  char what[96];
  unsigned long blocks = 0;
  for (int h = ALIGNED_ALLOC; h <= POSIX_MEMALIGN; h++) {
    for (unsigned shift = 0; shift <= 25; shift++) {
      size_t align = (size_t)1 << shift;
      if (h == POSIX_MEMALIGN && align < sizeof(void *))
        continue; /* EINVAL there: test_conformance checks it */
      /* Around the alignment, and one of each tier. */
      size_t sizes[] = {0,
                        1,
                        align > 1 ? align - 1 : 1,
                        align,
                        align + 1,
                        align + align / 2,
                        1 + rng_below(&rng, TINY_MAX),
                        TINY_MAX + 1 + rng_below(&rng, MID_MAX - TINY_MAX),
                        MID_MAX + 1 + rng_below(&rng, SUPERSLAB - MID_MAX),
                        shift < 20 ? SUPERSLAB + rng_below(&rng, 2 * MiB) : 3,
                        };
      for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        if (n > 48 * MiB)
          n = 48 * MiB;
        snprintf(what, sizeof what, "%s(%zu, %zu)", how_name[h], align, n);
        char *p = aligned_by((enum how)h, align, n);
        size_t a = align < 16 ? 16 : align; /* every block is 16-aligned */
        if (rng_below(&rng, 6) == 0 && p) {
          /* An aligned block is an ordinary one for realloc. */
          size_t m = 1 + rng_below(&rng, 2 * MID_MAX);
          block_fill(p, n, 99);
          char *q = hak_realloc(p, m);
          if (!q)
            fail_msg("%s, then realloc to %zu failed", what, m);
          size_t keep = n < m ? n : m;
          size_t bad = block_mismatch(q, keep, n, 99);
          if (bad != keep)
            fail_msg("%s, then realloc to %zu: byte %zu of %zu changed", what,
                     m, bad, keep);
          p = q;
          n = m;
          a = 16;
        }
        window_add(&w, p, n, a, what);
        blocks++;
        /* Retire a random one now and then, so frees come in no order. */
        if (rng_below(&rng, 3) == 0)
          window_retire(&w.b[rng_below(&rng, WINDOW)], what);
      }
    }
  }
  window_clear(&w, "aligned");
  return blocks;
}

static void test_aligned_every_power_of_two(void **state) {
  (void)state;
  double t0 = stress_now();
  unsigned long blocks = aligned_sweep(12345);
  if (stress_long_mode) {
    double end = stress_now() + stress_seconds / 2;
    for (uint64_t s = 1; stress_now() < end; s++)
      blocks += aligned_sweep(12345 + s);
  }
  print_message("aligned: %lu blocks at alignments 1 .. 32 MiB (%.2f s)\n",
                blocks, stress_now() - t0);
}

int main(int argc, char **argv) {
  stress_parse_mode(argc, argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_size_across_boundaries),
      cmocka_unit_test(test_realloc_chains),
      cmocka_unit_test(test_aligned_every_power_of_two),
  };
  return cmocka_run_group_tests_name("stress_sizes", tests, NULL, NULL);
}
