/* SPDX-License-Identifier: MIT */
/* test_exit_purge.c - memory that threads leave behind when they exit goes
 * back while the threads that remain keep calling.
 *
 *  - A slab abandoned by an exited thread whose blocks are then all freed
 *    by another thread is released at the next thread exit, even when no
 *    thread needs a slab of its class (adoption would never meet it).
 *  - The same slabs are released within a purge delay or so while the
 *    remaining threads keep calling, with no thread exiting.
 *  - Free slabs dirtied by exiting threads are decommitted once the purge
 *    delay has run out, by a thread whose calls take no slab at all (mid
 *    refills from partly used slabs), not only by the next slab taken.
 *  - The empty slab a mid class keeps goes back once it has stayed empty
 *    for the purge delay, and at once on a trim.
 *  - A mid slab that a burst carved far and that a few blocks of the main
 *    thread keep in use is trimmed back to those blocks once the burst is
 *    over, and carving past them again gives memory that calloc clears.
 *
 * Nothing here depends on timing to pass: the second test waits past a
 * short delay and then calls until the condition holds, with a generous
 * bound.  Label `threads`: the tsan preset runs it.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core_internal.h"
#include "purge_delay.h"

#define KiB ((size_t)1 << 10)

/* 48-byte blocks over several slabs (1365 to a 64 KiB slab). */
enum { ABANDONED_BLOCKS = 6000, BLOCK = 48 };
static unsigned char *blocks[ABANDONED_BLOCKS];

static void *allocate_and_exit(void *arg) {
  (void)arg;
  for (int i = 0; i < ABANDONED_BLOCKS; i++) {
    blocks[i] = hak_malloc(BLOCK);
    if (blocks[i])
      memset(blocks[i], (unsigned char)i, BLOCK);
  }
  return NULL;
}

/* A thread of another class only: it adopts none of the slabs above. */
static void *other_class_and_exit(void *arg) {
  (void)arg;
  hak_free(hak_malloc(200));
  return NULL;
}

static void run_thread(void *(*fn)(void *)) {
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, fn, NULL), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
}

/* The main thread's calls while it waits for a purge: 2 KiB blocks from
 * one slab that stays in use (the block kept live), so that they take and
 * release no slab; mid refills look at the purge.  Calls until done()
 * holds or the bound (minutes, for the sanitizer builds) runs out. */
static bool call_until(bool (*done)(void)) {
  enum { BATCH = 100 };
  static void *live;
  if (!live)
    live = hak_malloc(2 * KiB);
  void *mine[BATCH];
  uint64_t start = hak_os_clock_ms();
  while (!done()) {
    if (hak_os_clock_ms() > start + 120000)
      return false;
    for (int i = 0; i < BATCH; i++) {
      mine[i] = hak_malloc(2 * KiB);
      assert_non_null(mine[i]);
      memset(mine[i], 0x11, 2 * KiB);
    }
    for (int i = 0; i < BATCH; i++)
      hak_free(mine[i]);
    usleep(1000);
  }
  return true;
}

static void test_abandoned_emptied_remotely(void **state) {
  (void)state;
  unsigned before = hak_tiny_info().slabs_abandoned;
  run_thread(allocate_and_exit);
  /* The thread ended with its blocks live: its slabs are abandoned. */
  assert_true(hak_tiny_info().slabs_abandoned >= before + 4);
  for (int i = 0; i < ABANDONED_BLOCKS; i++) {
    assert_non_null(blocks[i]);
    for (int j = 0; j < BLOCK; j++)
      assert_int_equal(blocks[i][j], (unsigned char)i);
    hak_free(blocks[i]); /* remote frees into abandoned slabs */
  }
  run_thread(other_class_and_exit);
  assert_true(hak_tiny_info().slabs_abandoned <= before);
}

static unsigned abandoned_before;
static bool abandoned_back(void) {
  return hak_tiny_info().slabs_abandoned <= abandoned_before;
}

static void test_abandoned_swept_while_calling(void **state) {
  (void)state;
  set_delay(SHORT);
  abandoned_before = hak_tiny_info().slabs_abandoned;
  run_thread(allocate_and_exit);
  assert_true(hak_tiny_info().slabs_abandoned >= abandoned_before + 4);
  for (int i = 0; i < ABANDONED_BLOCKS; i++)
    hak_free(blocks[i]);
  /* No thread exits from here on. */
  assert_true(call_until(abandoned_back));
}

/* Tiny and mid blocks freed by their own thread, which then exits: the
 * slabs go back to the slab sets dirty. */
enum { CHURN_BLOCKS = 2000 };
static void *churn_and_exit(void *arg) {
  (void)arg;
  static __thread void *b[CHURN_BLOCKS];
  for (int i = 0; i < CHURN_BLOCKS; i++) {
    b[i] = hak_malloc(i % 2 ? 1024 : 32 * KiB);
    if (b[i])
      memset(b[i], 0x5C, 64);
  }
  for (int i = 0; i < CHURN_BLOCKS; i++)
    hak_free(b[i]);
  return NULL;
}

static bool all_purged(void) {
  return hak_mid_dirty_slabs() == 0 && hak_tiny_info().slabs_dirty == 0 &&
         hak_os_cache_info().superslabs_committed == 0;
}

static void test_purge_while_calling(void **state) {
  (void)state;
  set_delay(SHORT);
  pthread_t t[4];
  for (int i = 0; i < 4; i++)
    assert_int_equal(pthread_create(&t[i], NULL, churn_and_exit, NULL), 0);
  for (int i = 0; i < 4; i++)
    assert_int_equal(pthread_join(t[i], NULL), 0);
  assert_true(call_until(all_purged));
}

/* 96 KiB blocks, ten to a slab: freed, they empty their slabs; the class
 * keeps one and releases the rest. */
enum { MID_BLOCKS = 30, MID_BLOCK = 96 * KiB };
static void *mid_churn_and_exit(void *arg) {
  (void)arg;
  void *b[MID_BLOCKS];
  for (int i = 0; i < MID_BLOCKS; i++) {
    b[i] = hak_malloc(MID_BLOCK);
    if (b[i])
      memset(b[i], 0x3C, MID_BLOCK);
  }
  for (int i = 0; i < MID_BLOCKS; i++)
    hak_free(b[i]);
  return NULL;
}

static bool kept_given_back(void) {
  return !hak_mid_keeps_empty_slab(MID_BLOCK);
}

static void test_kept_empty_mid_slabs_given_back(void **state) {
  (void)state;
  set_delay(SHORT);
  run_thread(mid_churn_and_exit);
  assert_true(hak_mid_keeps_empty_slab(MID_BLOCK));
  assert_true(call_until(kept_given_back));
  /* A trim does not wait for the delay. */
  set_delay(NEVER);
  run_thread(mid_churn_and_exit);
  assert_true(hak_mid_keeps_empty_slab(MID_BLOCK));
  hak_trim(0);
  assert_false(hak_mid_keeps_empty_slab(MID_BLOCK));
  set_delay(SHORT);
}

/* 4 KiB blocks, 256 to a slab: the burst carves most of one slab, the
 * main thread's few blocks were carved before it, at the slab's start. */
enum { BURST_BLOCKS = 200, BURST_BLOCK = 4 * KiB, OWN_BLOCKS = 4 };
static void *burst_and_exit(void *arg) {
  (void)arg;
  void *b[BURST_BLOCKS];
  for (int i = 0; i < BURST_BLOCKS; i++) {
    b[i] = hak_malloc(BURST_BLOCK);
    assert_non_null(b[i]);
    memset(b[i], 0xA5, BURST_BLOCK);
  }
  for (int i = 0; i < BURST_BLOCKS; i++)
    hak_free(b[i]);
  return NULL;
}

static unsigned burst_class(void) {
  unsigned cls = 0;
  while (hak_mid_class_size(cls) != BURST_BLOCK)
    cls++;
  return cls;
}

/* Blocks of the class carved and not out: what stays resident for it. */
static size_t burst_free_blocks(void) {
  struct hak_mid_usage u;
  hak_mid_usage(&u);
  return u.free_blocks[burst_class()];
}

static bool burst_trimmed(void) { return burst_free_blocks() < 64; }

static void test_mid_burst_trimmed(void **state) {
  (void)state;
  set_delay(SHORT);
  unsigned char *own[OWN_BLOCKS];
  for (int i = 0; i < OWN_BLOCKS; i++) {
    own[i] = hak_malloc(BURST_BLOCK);
    assert_non_null(own[i]);
    memset(own[i], i + 1, BURST_BLOCK);
  }
  run_thread(burst_and_exit);
  assert_true(burst_free_blocks() >= BURST_BLOCKS / 2);
  assert_true(call_until(burst_trimmed));
  for (int i = 0; i < OWN_BLOCKS; i++)
    for (size_t j = 0; j < BURST_BLOCK; j++)
      assert_int_equal(own[i][j], i + 1);
  /* Carving past the blocks in use again: given-back pages and the ones
   * the burst wrote alike read as zero through calloc. */
  unsigned char *b[BURST_BLOCKS];
  for (int i = 0; i < BURST_BLOCKS; i++) {
    b[i] = hak_calloc(1, BURST_BLOCK);
    assert_non_null(b[i]);
    for (size_t j = 0; j < BURST_BLOCK; j++)
      assert_int_equal(b[i][j], 0);
    memset(b[i], 0x5A, BURST_BLOCK);
  }
  for (int i = 0; i < BURST_BLOCKS; i++)
    hak_free(b[i]);
  for (int i = 0; i < OWN_BLOCKS; i++)
    hak_free(own[i]);
}

int main(void) {
  hak_free(hak_malloc(1)); /* start-up first: it configures every tier */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_abandoned_emptied_remotely),
      cmocka_unit_test(test_abandoned_swept_while_calling),
      cmocka_unit_test(test_purge_while_calling),
      cmocka_unit_test(test_kept_empty_mid_slabs_given_back),
      cmocka_unit_test(test_mid_burst_trimmed),
  };
  return cmocka_run_group_tests_name("exit_purge", tests, NULL, NULL);
}
