/* SPDX-License-Identifier: MIT */
/* test_exit_purge.c - memory that threads leave behind when they exit goes
 * back while the threads that remain keep calling.
 *
 *  - A slab abandoned by an exited thread whose blocks are then all freed
 *    by another thread is released at the next thread exit, even when no
 *    thread needs a slab of its class (adoption would never meet it).
 *  - Free slabs dirtied by exiting threads are decommitted once the purge
 *    delay has run out, by a thread whose calls take no slab at all (mid
 *    refills from partly used slabs), not only by the next slab taken.
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

#define SHORT 5u
#define KiB ((size_t)1 << 10)

/* The configuration every tier reads, as start-up would pass it down. */
static void set_delay(unsigned ms) {
  hak_config.purge_delay_ms = ms;
  struct hak_tiny_config tiny = {.dirty_slab_limit = 4096,
                                 .purge_delay_ms = ms};
  hak_tiny_configure(&tiny);
  hak_mid_configure(ms, 64);
  struct hak_os_config os = hak_os_default_config();
  os.purge_delay_ms = ms;
  hak_os_configure(&os);
}

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

static void test_purge_while_calling(void **state) {
  (void)state;
  /* The main thread's working set first: 2 KiB blocks from one slab that
   * stays in use, so the calls below take and release no slab. */
  enum { BATCH = 100 };
  void *mine[BATCH];
  for (int i = 0; i < BATCH; i++)
    mine[i] = hak_malloc(2 * KiB);
  for (int i = 0; i < BATCH; i++)
    hak_free(mine[i]);

  set_delay(SHORT);
  pthread_t t[4];
  for (int i = 0; i < 4; i++)
    assert_int_equal(pthread_create(&t[i], NULL, churn_and_exit, NULL), 0);
  for (int i = 0; i < 4; i++)
    assert_int_equal(pthread_join(t[i], NULL), 0);

  /* Keep calling; within the bound (minutes, for the sanitizer builds),
   * the delay runs out and a refill purges. */
  uint64_t start = hak_os_clock_ms();
  bool purged = false;
  while (!purged && hak_os_clock_ms() < start + 120000) {
    for (int i = 0; i < BATCH; i++) {
      mine[i] = hak_malloc(2 * KiB);
      assert_non_null(mine[i]);
      memset(mine[i], 0x11, 2 * KiB);
    }
    for (int i = 0; i < BATCH; i++)
      hak_free(mine[i]);
    purged = hak_mid_dirty_slabs() == 0 && hak_tiny_info().slabs_dirty == 0 &&
             hak_os_cache_info().superslabs_committed == 0;
    usleep(1000);
  }
  assert_true(purged);
}

int main(void) {
  hak_free(hak_malloc(1)); /* start-up first: it configures every tier */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_abandoned_emptied_remotely),
      cmocka_unit_test(test_purge_while_calling),
  };
  return cmocka_run_group_tests_name("exit_purge", tests, NULL, NULL);
}
