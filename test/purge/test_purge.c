/* SPDX-License-Identifier: MIT */
/* test_purge.c - the delayed purge through the public API.
 *
 * Memory freed in bulk keeps its pages while the purge delay runs, so a
 * batch allocated again makes no system call; once the delay has run out,
 * the next slow path of the tier gives the pages back.  Nothing here
 * depends on timing to pass: "no purge" runs with a delay of an hour, and
 * "purge" waits longer than a short delay.  The system calls are asserted
 * where they are counted (standard, observe); the occupancy functions and
 * the resident set in every build.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cmocka.h>

#include "core_internal.h"
#include "purge_delay.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* Sleeps past a purge delay of delay_ms, however coarse the clock. */
static void wait_past(unsigned delay_ms) {
  uint64_t start = hak_os_clock_ms();
  while (hak_os_clock_ms() < start + delay_ms + 2)
    usleep(1000);
}

static uint64_t count(enum hak_stat id) {
  struct hak_stats_snapshot s;
  hak_stats_snapshot(&s);
  return s.count[id];
}

static int all_zero(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i])
      return 0;
  return 1;
}

/* A new thread's first tiny malloc takes a slab: the tiny slow path. */
static void *tiny_slab_user(void *arg) {
  (void)arg;
  hak_free(hak_malloc(16));
  return NULL;
}

enum { TINY_BLOCKS = 64 * 60 }; /* 1 KiB blocks: 60 slabs */
static void *blocks[TINY_BLOCKS];

static void tiny_round(void) {
  for (int i = 0; i < TINY_BLOCKS; i++) {
    blocks[i] = hak_malloc(1024);
    assert_non_null(blocks[i]);
    memset(blocks[i], 0x3A, 1024);
  }
  for (int i = 0; i < TINY_BLOCKS; i++)
    hak_free(blocks[i]);
}

static void test_tiny_slabs(void **state) {
  (void)state;
  set_delay(NEVER);
  tiny_round();
  unsigned dirty = hak_tiny_info().slabs_dirty;
  assert_true(dirty >= 50);

  /* Reused within the delay: no madvise, and the slabs are dirty again. */
  uint64_t madvise = count(HAK_STAT_SYS_MADVISE);
  tiny_round();
  assert_int_equal(count(HAK_STAT_SYS_MADVISE), madvise);
  assert_true(hak_tiny_info().slabs_dirty >= 50);

  /* Past the delay, the next slab taken purges them. */
  uint64_t decommitted = count(HAK_STAT_OS_BYTES_DECOMMITTED);
  set_delay(SHORT);
  wait_past(SHORT);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, tiny_slab_user, NULL), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_true(hak_tiny_info().slabs_dirty <= 1); /* the thread's own */
  if (HAK_GATE_COUNT_SYSCALLS)
    assert_true(count(HAK_STAT_OS_BYTES_DECOMMITTED) - decommitted >=
                50 * HAK_TINY_SLAB_SIZE);
}

/* 32 KiB blocks: 12.5 MiB, 13 slabs (the classes from 64 KiB keep their
 * free slabs longer: test_mid_big_classes). */
enum { MID_BLOCKS = 400, MID_BLOCK = 32 * KiB };

static void mid_round_of(size_t size) {
  for (int i = 0; i < MID_BLOCKS; i++) {
    blocks[i] = hak_malloc(size);
    assert_non_null(blocks[i]);
    memset(blocks[i], 0x5B, size);
  }
  for (int i = 0; i < MID_BLOCKS; i++)
    hak_free(blocks[i]);
}

static void mid_round(void) { mid_round_of(MID_BLOCK); }

/* Free mid slabs whose pages are resident: dirty ones in the tier, and
 * whole superslabs (four slabs) gone back to libhak-os's cache. */
static unsigned mid_resident_free_slabs(void) {
  return hak_mid_dirty_slabs() +
         (unsigned)HAK_MID_SLABS * hak_os_cache_info().superslabs_committed;
}

static void test_mid_slabs(void **state) {
  (void)state;
  set_delay(NEVER);
  mid_round();
  assert_true(mid_resident_free_slabs() >= 8);
  size_t rss = hak_os_rss_current();

  uint64_t madvise = count(HAK_STAT_SYS_MADVISE);
  mid_round();
  assert_int_equal(count(HAK_STAT_SYS_MADVISE), madvise);
  assert_true(mid_resident_free_slabs() >= 8);

  /* Past the delay, the next slab taken (a class not used yet) purges the
   * tier's slabs, the next entry into libhak-os (a large block) its
   * cache. */
  set_delay(SHORT);
  wait_past(SHORT);
  void *p = hak_malloc(100 * KiB);
  assert_non_null(p);
  assert_int_equal(hak_mid_dirty_slabs(), 0);
  hak_free(hak_malloc(900 * KiB));
  /* The large block's arena stays with the large tier, pages and all. */
  assert_int_equal(hak_os_cache_info().superslabs_committed, 0);
  assert_true(hak_os_rss_current() + 8 * MiB <= rss);
  if (HAK_GATE_COUNT_SYSCALLS)
    assert_true(count(HAK_STAT_SYS_MADVISE) > madvise);
  hak_free(p);
}

/* The mid classes from 64 KiB up keep their free slabs for 100 purge
 * delays, not one (mid.c: blocks written whole take long enough between
 * calls that one delay gave their slabs back under load). */
static void test_mid_big_classes(void **state) {
  (void)state;
  enum { DELAY = 20 }; /* a held slab then waits 2 s */
  set_delay(DELAY);
  mid_round_of(128 * KiB); /* 50 MiB over 50 slabs */
  assert_true(hak_mid_dirty_slabs() > 0);
  wait_past(DELAY);
  void *p = hak_malloc(40 * KiB); /* a slab taken: what is due goes */
  assert_non_null(p);
  assert_true(hak_mid_dirty_slabs() > 0);
  hak_free(p);
  wait_past(100 * DELAY);
  p = hak_malloc(48 * KiB); /* a class not used yet: a slab taken */
  assert_non_null(p);
  assert_int_equal(hak_mid_dirty_slabs(), 0);
  hak_free(p);
  set_delay(NEVER);
}

/* The pages of [p, p + n) that are resident. */
static size_t resident_pages(const void *p, size_t n) {
  uintptr_t first = (uintptr_t)p & ~(uintptr_t)4095;
  size_t pages = ((uintptr_t)p + n - first + 4095) / 4096, in = 0;
  unsigned char vec[64];
  assert_true(pages <= sizeof vec);
  assert_int_equal(mincore((void *)first, pages * 4096, vec), 0);
  for (size_t i = 0; i < pages; i++)
    in += vec[i] & 1;
  return in;
}

/* Blocks freed between blocks still in use: their pages go back once the
 * slab has been quiet for a purge delay, and by malloc_trim at once, while
 * the blocks in use keep their contents. */
enum { HOLE_BLOCKS = 64, HOLE_SIZE = 12 * KiB }; /* 3 pages a block */
static char *hole[HOLE_BLOCKS];

static size_t freed_resident(void) {
  size_t n = 0;
  for (int i = 0; i < HOLE_BLOCKS; i++)
    if (i % 4)
      n += resident_pages(hole[i], HOLE_SIZE);
  return n;
}

static void make_holes(void) {
  for (int i = 0; i < HOLE_BLOCKS; i++) {
    hole[i] = hak_malloc(HOLE_SIZE);
    assert_non_null(hole[i]);
    memset(hole[i], 0x5C, HOLE_SIZE);
  }
  for (int i = 0; i < HOLE_BLOCKS; i++)
    if (i % 4)
      hak_free(hole[i]);
}

static void check_kept_blocks(void) {
  for (int i = 0; i < HOLE_BLOCKS; i += 4) {
    for (size_t k = 0; k < HOLE_SIZE; k++)
      assert_int_equal((unsigned char)hole[i][k], 0x5C);
    hak_free(hole[i]);
  }
}

static void test_mid_holes(void **state) {
  (void)state;
  set_delay(SHORT);
  make_holes();
  size_t freed_pages = (size_t)HOLE_BLOCKS * 3 / 4 * 3;
  /* The thread's list keeps the last few blocks it freed (up to 128 KiB of
   * the class); the others are back in their slab. */
  assert_true(freed_resident() > freed_pages / 2);
  /* The first look sees the takes and puts, the next one a quiet slab. */
  wait_past(SHORT);
  hak_mid_purge();
  wait_past(SHORT);
  hak_mid_purge();
  assert_true(freed_resident() <= 12 * 3); /* what the list holds */
  check_kept_blocks();

  set_delay(NEVER);
  make_holes();
  hak_mid_purge();
  assert_true(freed_resident() > freed_pages / 2);
  hak_mid_trim(); /* the list goes back first: every hole */
  assert_int_equal(freed_resident(), 0);
  check_kept_blocks();
}

/* Large blocks: the superslab comes back from the cache without a system
 * call, and calloc still returns zeros from a reused one. */
static void test_large_reuse(void **state) {
  (void)state;
  set_delay(NEVER);
  unsigned char *p = hak_malloc(MiB);
  assert_non_null(p);
  memset(p, 0xEE, MiB);
  hak_free(p);
  uint64_t mmaps = count(HAK_STAT_SYS_MMAP);
  uint64_t munmaps = count(HAK_STAT_SYS_MUNMAP);
  for (int i = 0; i < 100; i++) {
    unsigned char *q = hak_malloc(MiB);
    assert_non_null(q);
    q[MiB - 1] = 1;
    hak_free(q);
  }
  assert_int_equal(count(HAK_STAT_SYS_MMAP), mmaps);
  assert_int_equal(count(HAK_STAT_SYS_MUNMAP), munmaps);

  /* Written, freed, taken again by calloc: bigger and smaller. */
  p = hak_malloc(MiB);
  memset(p, 0xEE, MiB);
  hak_free(p);
  unsigned char *z = hak_calloc(1, 2 * MiB);
  assert_non_null(z);
  assert_true(all_zero(z, 2 * MiB));
  memset(z, 0xEE, 2 * MiB);
  hak_free(z);
  z = hak_calloc(1, 300 * KiB);
  assert_non_null(z);
  assert_true(all_zero(z, 300 * KiB));
  hak_free(z);

  /* Past the delay, the cached superslabs are decommitted. */
  set_delay(SHORT);
  wait_past(SHORT);
  hak_os_purge();
  assert_int_equal(hak_os_cache_info().superslabs_committed, 0);
}

/* calloc on every reuse path that clears less than the whole block: mid
 * blocks carved from slabs another class wrote part of, or from untouched
 * pages (the "fresh" link bit); superslabs passed between the tiers through
 * libhak-os's cache with the extent that may be resident; large blocks.
 * Every block is filled to its usable end before it is freed, so a byte
 * that calloc wrongly trusts to be zero shows up. */
enum { CALLOC_BLOCKS = 4096 };
static unsigned char *cblocks[CALLOC_BLOCKS];

static void calloc_round(size_t size, size_t bytes) {
  size_t n = bytes / size;
  n = n < 4 ? 4 : n > CALLOC_BLOCKS ? CALLOC_BLOCKS : n;
  for (size_t i = 0; i < n; i++) {
    cblocks[i] = hak_calloc(1, size);
    assert_non_null(cblocks[i]);
    assert_true(all_zero(cblocks[i], size));
    memset(cblocks[i], 0xC3, hak_usable_size(cblocks[i]));
  }
  /* Odd blocks first: slabs empty out in a different order each time. */
  for (size_t i = 1; i < n; i += 2)
    hak_free(cblocks[i]);
  for (size_t i = 0; i < n; i += 2)
    hak_free(cblocks[i]);
}

static void test_calloc_reuse(void **state) {
  (void)state;
  static const size_t sizes[] = {1024,      1536,      16 * KiB, 48 * KiB,
                                 256 * KiB, MiB,       20 * KiB, 1100,
                                 200000,    64,        3 * MiB,  1280,
                                 96 * KiB,  160 * KiB, 2048,     700 * KiB};
  const size_t nsizes = sizeof sizes / sizeof sizes[0];
  set_delay(NEVER);
  for (int pass = 0; pass < 3; pass++)
    for (size_t i = 0; i < nsizes; i++)
      calloc_round(sizes[(i * 7 + (size_t)pass) % nsizes], 6 * MiB);
  /* The same after decommits: free slabs and superslabs go back to zero
   * pages between the rounds. */
  set_delay(SHORT);
  for (size_t i = 0; i < nsizes; i++) {
    calloc_round(sizes[i], 6 * MiB);
    wait_past(SHORT);
    hak_os_purge();
  }
  set_delay(NEVER);
}

/* Resident pages of [p, p + n), p page-aligned. */
static size_t resident(const void *p, size_t n) {
  unsigned char vec[256];
  size_t pages = (n + 4095) / 4096, count = 0;
  assert_true(pages <= sizeof vec);
  assert_int_equal(mincore((void *)p, pages * 4096, vec), 0);
  for (size_t i = 0; i < pages; i++)
    count += vec[i] & 1;
  return count;
}

/* Big mid blocks (256 KiB) whose last users wrote one byte each come back
 * from calloc zero without their other pages faulted in; blocks written in
 * full are cleared again without asking the kernel. */
enum { SPARSE_BLOCKS = 8 };
static void test_calloc_sparse(void **state) {
  (void)state;
  const size_t size = 256 * KiB;
  unsigned char *b[SPARSE_BLOCKS];
  /* The first test of the run: the mid tier's memory is untouched. */
  set_delay(NEVER);
  for (int round = 0; round < 3; round++) {
    uint64_t mincores = count(HAK_STAT_SYS_MINCORE);
    for (int i = 0; i < SPARSE_BLOCKS; i++) {
      b[i] = hak_calloc(1, size);
      assert_non_null(b[i]);
      assert_int_equal((uintptr_t)b[i] % 4096, 0);
      /* Counted before reading: a read maps the kernel's zero page. */
      assert_true(resident(b[i], size) <= 2);
      assert_true(all_zero(b[i], size));
      /* The read mapped the zero page everywhere, which mincore counts as
       * resident: drop those mappings, as if the program had never read
       * more than it writes. */
      madvise(b[i] + 4096, size - 8192, MADV_DONTNEED);
      b[i][0] = 1;
      b[i][size - 1] = 1;
    }
    if (HAK_GATE_COUNT_SYSCALLS && round > 0)
      assert_true(count(HAK_STAT_SYS_MINCORE) > mincores);
    for (int i = 0; i < SPARSE_BLOCKS; i++)
      hak_free(b[i]);
  }
  /* Written in full: the next calloc finds every page resident, and the
   * one after that knows it. */
  for (int round = 0; round < 3; round++) {
    uint64_t mincores = count(HAK_STAT_SYS_MINCORE);
    for (int i = 0; i < SPARSE_BLOCKS; i++) {
      b[i] = hak_calloc(1, size);
      assert_non_null(b[i]);
      assert_true(all_zero(b[i], size));
      memset(b[i], 0xA5, size);
    }
    if (HAK_GATE_COUNT_SYSCALLS && round == 2)
      assert_int_equal(count(HAK_STAT_SYS_MINCORE), mincores);
    for (int i = 0; i < SPARSE_BLOCKS; i++)
      hak_free(b[i]);
  }
}

int main(void) {
  /* The residency checks count 4 KiB pages. With THP "always" the kernel
   * may back a first touch with a 2 MiB page, so the process opts out:
   * the tests then hold whatever the system's THP mode. */
  prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
  hak_free(hak_malloc(1)); /* start-up first: it configures every tier */
  const struct CMUnitTest tests[] = {
      /* First: it needs memory the mid tier never touched. */
      cmocka_unit_test(test_calloc_sparse),
      cmocka_unit_test(test_tiny_slabs),
      cmocka_unit_test(test_mid_slabs),
      cmocka_unit_test(test_mid_big_classes),
      cmocka_unit_test(test_mid_holes),
      cmocka_unit_test(test_large_reuse),
      cmocka_unit_test(test_calloc_reuse),
  };
  return cmocka_run_group_tests_name("purge", tests, NULL, NULL);
}
