/* test_fork.c - fork() in a threaded program that uses hakmem.
 *
 * Worker threads allocate and free blocks of every tier without pause while
 * the main thread forks 50 times.  Each child allocates and frees a lot
 * (tiny, mid, large, huge), frees blocks that an exited thread allocated
 * before the fork, starts a thread of its own, and exits 0 only if every
 * block kept its contents.  A child that deadlocks on a lock held at fork
 * time is killed by its alarm, so the test fails instead of hanging.
 *
 * The child never calls cmocka (a failure there would unwind into the
 * child's copy of the runner); it reports through its exit status.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api_test.h"
#include "hak_stats.h" /* hak_stats_snapshot */

#define WORKERS 2
#define FORKS 50

static volatile int stop_workers;

static size_t worker_size(uint64_t *rng) {
  unsigned r = (unsigned)rng_below(rng, 100);
  if (r < 70)
    return 1 + rng_below(rng, TINY_MAX);
  if (r < 98)
    return TINY_MAX + 1 + rng_below(rng, MID_MAX - TINY_MAX);
  return MID_MAX + 1 + rng_below(rng, 6 * MiB); /* large and huge */
}

static void *worker(void *arg) {
  uint64_t rng = (uintptr_t)arg;
  enum { LIVE = 64 };
  char *live[LIVE] = {0};
  size_t sizes[LIVE] = {0};
  unsigned long errors = 0;
  while (!__atomic_load_n(&stop_workers, __ATOMIC_RELAXED)) {
    unsigned i = (unsigned)rng_below(&rng, LIVE);
    if (live[i]) {
      if (live[i][0] != (char)i || live[i][sizes[i] - 1] != (char)i)
        errors++;
      hak_free(live[i]);
      live[i] = NULL;
    } else {
      size_t n = worker_size(&rng);
      live[i] = rng_below(&rng, 8) == 0 ? hak_calloc(1, n) : hak_malloc(n);
      if (live[i] == NULL) {
        errors++;
        continue;
      }
      sizes[i] = n;
      live[i][0] = (char)i;
      live[i][n - 1] = (char)i;
      if (n <= 4096)
        memset(live[i], (char)i, n);
    }
  }
  for (unsigned i = 0; i < LIVE; i++)
    hak_free(live[i]);
  return (void *)(uintptr_t)errors;
}

/* Blocks allocated by a thread that has exited before the forks: in the
 * child they are freed into slabs whose owner is gone. */
#define INHERITED 600
static struct item_ {
  char *p;
  size_t size;
} inherited[INHERITED];

static void *make_inherited(void *arg) {
  (void)arg;
  uint64_t rng = 77;
  for (unsigned i = 0; i < INHERITED; i++) {
    size_t n = i % 50 == 0 ? MID_MAX + 1 + rng_below(&rng, MiB)
               : i % 3 == 0 ? TINY_MAX + 1 + rng_below(&rng, 20 * KiB)
                            : 1 + rng_below(&rng, TINY_MAX);
    inherited[i].p = hak_malloc(n);
    if (inherited[i].p == NULL)
      return (void *)1;
    inherited[i].size = n;
    pattern_fill(inherited[i].p, n > 64 * KiB ? 64 * KiB : n, i);
  }
  return NULL;
}

/* ---- what the child does ------------------------------------------------ */

enum child_status {
  CHILD_OK = 0,
  CHILD_NOMEM = 10,
  CHILD_CORRUPT = 11,
  CHILD_INHERITED_CORRUPT = 12,
  CHILD_THREAD = 13,
  CHILD_CALLOC = 14,
};

static int churn(uint64_t seed, int rounds) {
  enum { SLOTS = 128 };
  char *p[SLOTS] = {0};
  size_t n[SLOTS] = {0};
  uint64_t rng = seed;
  for (int r = 0; r < rounds; r++) {
    unsigned i = (unsigned)rng_below(&rng, SLOTS);
    if (p[i]) {
      size_t check = n[i] > 8192 ? 8192 : n[i];
      if (pattern_mismatch(p[i], check, (uint32_t)(i + seed)) != check)
        return CHILD_CORRUPT;
      hak_free(p[i]);
      p[i] = NULL;
    } else {
      size_t s = worker_size(&rng);
      if (r % 7 == 0) {
        p[i] = hak_calloc(s, 1);
        if (p[i] == NULL)
          return CHILD_NOMEM;
        size_t check = s > 8192 ? 8192 : s;
        for (size_t k = 0; k < check; k++)
          if (p[i][k] != 0)
            return CHILD_CALLOC;
      } else {
        p[i] = hak_malloc(s);
        if (p[i] == NULL)
          return CHILD_NOMEM;
      }
      n[i] = s;
      pattern_fill(p[i], s > 8192 ? 8192 : s, (uint32_t)(i + seed));
    }
  }
  for (unsigned i = 0; i < SLOTS; i++)
    hak_free(p[i]);
  return CHILD_OK;
}

static void *child_thread(void *arg) {
  return (void *)(intptr_t)churn((uintptr_t)arg, 1000);
}

static int child_main(int round) {
  alarm(20); /* a deadlock in the child ends it by SIGALRM */
  int st = churn(1000 + (uint64_t)round, 2500);
  if (st)
    return st;
  /* Blocks of the exited thread, and of the parent's main thread. */
  for (unsigned i = 0; i < INHERITED; i++) {
    size_t check = inherited[i].size > 64 * KiB ? 64 * KiB : inherited[i].size;
    if (pattern_mismatch(inherited[i].p, check, i) != check)
      return CHILD_INHERITED_CORRUPT;
    hak_free(inherited[i].p);
  }
  /* Threads work in the child too: its locks were reset, not left held. */
  pthread_t th;
  if (pthread_create(&th, NULL, child_thread, (void *)(uintptr_t)(round + 5000)))
    return CHILD_THREAD;
  st = churn(2000 + (uint64_t)round, 1000);
  void *ret;
  if (pthread_join(th, &ret))
    return CHILD_THREAD;
  if (st)
    return st;
  return (int)(intptr_t)ret;
}

static void test_fork_while_threads_allocate(void **state) {
  (void)state;
  pthread_t th;
  void *ret;
  assert_int_equal(pthread_create(&th, NULL, make_inherited, NULL), 0);
  assert_int_equal(pthread_join(th, &ret), 0);
  assert_null(ret);

  pthread_t workers[WORKERS];
  stop_workers = 0;
  for (int i = 0; i < WORKERS; i++)
    assert_int_equal(pthread_create(&workers[i], NULL, worker,
                                    (void *)(uintptr_t)(i + 1)), 0);
  for (int round = 0; round < FORKS; round++) {
    /* Let the workers get going (and be inside the allocator). */
    for (int k = 0; k < 200; k++)
      hak_free(hak_malloc((size_t)k * 37 + 1));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
      _exit(child_main(round));
    int status;
    pid_t w;
    do
      w = waitpid(pid, &status, 0);
    while (w < 0 && errno == EINTR);
    assert_int_equal(w, pid);
    if (WIFSIGNALED(status))
      fail_msg("fork %d: child killed by signal %d%s", round, WTERMSIG(status),
               WTERMSIG(status) == SIGALRM ? " (deadlock: alarm)" : "");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      fail_msg("fork %d: child exited with status %d", round,
               WEXITSTATUS(status));
  }
  __atomic_store_n(&stop_workers, 1, __ATOMIC_RELAXED);
  for (int i = 0; i < WORKERS; i++) {
    assert_int_equal(pthread_join(workers[i], &ret), 0);
    if (ret)
      fail_msg("worker %d saw %lu errors", i, (unsigned long)(uintptr_t)ret);
  }
  /* The parent's copies of the inherited blocks are untouched. */
  for (unsigned i = 0; i < INHERITED; i++) {
    size_t check = inherited[i].size > 64 * KiB ? 64 * KiB : inherited[i].size;
    assert_pattern(inherited[i].p, check, i);
    hak_free(inherited[i].p);
  }
}

/* ---- fork while another thread reads the statistics ------------------- */

/* A report may be taken on any thread (hak_stats_report, or the
 * HAKMEM_STATS_SIGNAL handler) while another thread forks, and threads
 * register and fold their counters as they start and end.  The child must
 * find the statistics usable: a report in the child (and, in the observe
 * build, its report at exit or a new thread's first count) must not block
 * on a lock that another thread of the parent held at fork time.  The
 * reporting thread here takes snapshots back to back (the internal
 * hak_stats_snapshot: hak_stats_report spends most of its time reading
 * /proc, which makes the window at fork narrow but not empty). */
static volatile int stop_reporter;

static void *reporter(void *arg) {
  (void)arg;
  unsigned long reports = 0;
  struct hak_stats_snapshot snap;
  while (!__atomic_load_n(&stop_reporter, __ATOMIC_RELAXED)) {
    hak_stats_snapshot(&snap);
    reports++;
  }
  return (void *)(uintptr_t)reports;
}

static int child_report(int round) {
  alarm(3); /* blocked on a lock held at fork: SIGALRM */
  char buf[4096];
  if (hak_stats_report(buf, sizeof buf, round & 1) == 0)
    return 20;
  pthread_t th;
  if (pthread_create(&th, NULL, child_thread, (void *)(uintptr_t)(round + 9000)))
    return CHILD_THREAD;
  void *ret;
  if (pthread_join(th, &ret))
    return CHILD_THREAD;
  if (ret)
    return (int)(intptr_t)ret;
  if (hak_stats_report(buf, sizeof buf, 0) == 0)
    return 20;
  return CHILD_OK;
}

static void test_fork_while_reporting(void **state) {
  (void)state;
  enum { ROUNDS = 20 };
  pthread_t rep;
  stop_reporter = 0;
  assert_int_equal(pthread_create(&rep, NULL, reporter, NULL), 0);
  int round, status = 0;
  for (round = 0; round < ROUNDS; round++) {
    for (int k = 0; k < 100; k++)
      hak_free(hak_malloc((size_t)k * 53 + 1));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
      _exit(child_report(round));
    pid_t w;
    do
      w = waitpid(pid, &status, 0);
    while (w < 0 && errno == EINTR);
    assert_int_equal(w, pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      break; /* one is enough (and each hang costs the alarm's seconds) */
  }
  __atomic_store_n(&stop_reporter, 1, __ATOMIC_RELAXED);
  void *reports;
  assert_int_equal(pthread_join(rep, &reports), 0);
  if (round < ROUNDS) {
    if (WIFSIGNALED(status))
      fail_msg("fork %d: the child was killed by signal %d%s", round,
               WTERMSIG(status),
               WTERMSIG(status) == SIGALRM
                   ? " (alarm: blocked on a lock another thread held at fork)"
                   : "");
    fail_msg("fork %d: the child exited with %d", round, WEXITSTATUS(status));
  }
  print_message("fork while reporting: %d children fine; %lu snapshots in the "
                "parent meanwhile\n", ROUNDS, (unsigned long)(uintptr_t)reports);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fork_while_threads_allocate),
      cmocka_unit_test(test_fork_while_reporting),
  };
  return cmocka_run_group_tests_name("api_fork", tests, NULL, NULL);
}
