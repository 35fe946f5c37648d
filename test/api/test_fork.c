/* SPDX-License-Identifier: MIT */
/* test_fork.c - fork() in a threaded program that uses hakmem.
 *
 * Worker threads allocate and free blocks of every tier without pause while
 * the main thread forks 50 times.  Each child allocates and frees a lot
 * (tiny, mid, large, huge), frees blocks that an exited thread allocated
 * before the fork, starts a thread of its own, and exits 0 only if every
 * block kept its contents.  A child that deadlocks on a lock held at fork
 * time is killed by its alarm, so the test fails instead of hanging.
 *
 * Nested: children that start worker threads of their own and fork again
 * while those run, three generations deep, each checking the blocks it
 * inherited.  From a thread: a thread other than the main one forks while
 * other threads allocate, pass blocks to each other (remote frees), and
 * start and end (thread-exit hand-over of slabs, the mid tier's flush, the
 * statistics' fold-in: every lock those paths take is held by someone at
 * some fork).
 *
 * The child never calls cmocka (a failure there would unwind into the
 * child's copy of the runner); it reports through its exit status.
 *
 * HAK_FORK_CHILD_THREADS=0 (environment): children start no threads.
 * ThreadSanitizer cannot follow a thread created after a multi-threaded
 * fork (it dies: "starting new threads after multi-threaded fork is not
 * supported", or "dup thread with used id" with die_after_fork=0), so the
 * tsan build runs this test in that mode (test/api/CMakeLists.txt).
 */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "api_test.h"
#include "hak_stats.h" /* hak_stats_snapshot */
#include "test_child.h"

#define WORKERS 2
#define FORKS 50

static volatile int stop_workers;
static bool child_threads = true; /* HAK_FORK_CHILD_THREADS */

/* AddressSanitizer's own allocator (GCC 12) is not fork-safe: a child forked
 * while another thread is inside it -- starting or ending a thread, which
 * allocates there -- deadlocks when it next uses it.  So the forks wait
 * until the threads they race with have started (their start-up is the C
 * library's and the sanitizer's, not hakmem's), and in AddressSanitizer
 * builds threads that come and go do so between forks, not across one. */
static unsigned workers_started;
static void wait_started(unsigned n) {
  while (__atomic_load_n(&workers_started, __ATOMIC_ACQUIRE) < n)
    sched_yield();
}
#if defined(__SANITIZE_ADDRESS__)
#define ASAN_FORK_UNSAFE 1
#else
#define ASAN_FORK_UNSAFE 0
#endif

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
  __atomic_add_fetch(&workers_started, 1, __ATOMIC_RELEASE);
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

/* The forking thread allocates just before each fork, so that the fork
 * comes while the allocator is busy on this thread as well as on others
 * (workers get going meanwhile). */
static void allocate_before_fork(int count, size_t step) {
  for (int k = 0; k < count; k++)
    hak_free(hak_malloc((size_t)k * step + 1));
}

/* The inherited blocks as a child finds them (their first 64 KiB). */
static int check_inherited(void) {
  for (unsigned i = 0; i < INHERITED; i++) {
    size_t check = inherited[i].size > 64 * KiB ? 64 * KiB : inherited[i].size;
    if (pattern_mismatch(inherited[i].p, check, i) != check)
      return CHILD_INHERITED_CORRUPT;
  }
  return CHILD_OK;
}

/* A child's own copies of the inherited blocks go back, once checked. */
static int check_and_free_inherited(void) {
  int st = check_inherited();
  if (st)
    return st;
  for (unsigned i = 0; i < INHERITED; i++)
    hak_free(inherited[i].p);
  return CHILD_OK;
}

/* A deadlock in a child ends it by SIGALRM: the test fails, not hangs. */
static const struct child_opts child_alarm_20 = {.alarm = 20};

static int child_main(void *arg) {
  int round = (int)(intptr_t)arg;
  int st = churn(1000 + (uint64_t)round, 2500);
  if (st)
    return st;
  /* Blocks of the exited thread, and of the parent's main thread. */
  if ((st = check_and_free_inherited()))
    return st;
  /* Threads work in the child too: its locks were reset, not left held. */
  if (!child_threads)
    return churn(2000 + (uint64_t)round, 1000);
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

/* What the forks of the first and the nested tests happen amid: blocks of a
 * thread that has exited, and WORKERS threads allocating and freeing. */
static void start_scene(pthread_t workers[WORKERS], unsigned first_seed) {
  pthread_t th;
  void *ret;
  assert_int_equal(pthread_create(&th, NULL, make_inherited, NULL), 0);
  assert_int_equal(pthread_join(th, &ret), 0);
  assert_null(ret);
  __atomic_store_n(&stop_workers, 0, __ATOMIC_RELAXED);
  workers_started = 0;
  for (unsigned i = 0; i < WORKERS; i++)
    assert_int_equal(pthread_create(&workers[i], NULL, worker,
                                    (void *)(uintptr_t)(i + first_seed)),
                     0);
  wait_started(WORKERS);
}

/* Stops the workers: none saw a broken block, and the parent's copies of
 * the inherited blocks are untouched. */
static void end_scene(pthread_t workers[WORKERS]) {
  __atomic_store_n(&stop_workers, 1, __ATOMIC_RELAXED);
  for (int i = 0; i < WORKERS; i++) {
    void *ret;
    assert_int_equal(pthread_join(workers[i], &ret), 0);
    if (ret)
      fail_msg("worker %d saw %lu errors", i, (unsigned long)(uintptr_t)ret);
  }
  for (unsigned i = 0; i < INHERITED; i++) {
    size_t check = inherited[i].size > 64 * KiB ? 64 * KiB : inherited[i].size;
    assert_pattern(inherited[i].p, check, i);
    hak_free(inherited[i].p);
  }
}

static void test_fork_while_threads_allocate(void **state) {
  (void)state;
  pthread_t workers[WORKERS];
  start_scene(workers, 1);
  for (int round = 0; round < FORKS; round++) {
    allocate_before_fork(200, 37);
    struct child_end end;
    child_run(child_main, (void *)(intptr_t)round, &child_alarm_20, &end);
    if (!child_ok(&end)) {
      char how[160];
      fail_msg("fork %d: the child %s", round,
               child_end_text(&end, how, sizeof how));
    }
  }
  end_scene(workers);
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

static int child_report(void *arg) {
  int round = (int)(intptr_t)arg;
  char buf[4096];
  if (hak_stats_report(buf, sizeof buf, round & 1) == 0)
    return 20;
  if (child_threads) {
    pthread_t th;
    if (pthread_create(&th, NULL, child_thread, (void *)(uintptr_t)(round + 9000)))
      return CHILD_THREAD;
    void *ret;
    if (pthread_join(th, &ret))
      return CHILD_THREAD;
    if (ret)
      return (int)(intptr_t)ret;
  } else {
    int st = churn(9000 + (uint64_t)round, 1000);
    if (st)
      return st;
  }
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
  /* A child blocked on a lock held at fork ends by SIGALRM. */
  const struct child_opts opts = {.alarm = 3};
  struct child_end end;
  int round;
  for (round = 0; round < ROUNDS; round++) {
    allocate_before_fork(100, 53);
    child_run(child_report, (void *)(intptr_t)round, &opts, &end);
    if (!child_ok(&end))
      break; /* one is enough (and each hang costs the alarm's seconds) */
  }
  __atomic_store_n(&stop_reporter, 1, __ATOMIC_RELAXED);
  void *reports;
  assert_int_equal(pthread_join(rep, &reports), 0);
  if (round < ROUNDS) {
    char how[160];
    fail_msg("fork %d: the child %s", round,
             child_end_text(&end, how, sizeof how));
  }
  print_message("fork while reporting: %d children fine; %lu snapshots in the "
                "parent meanwhile\n", ROUNDS, (unsigned long)(uintptr_t)reports);
}

/* ---- nested forks: children with threads of their own fork again ---------- */

#define NEST_DEPTH 3
#define NEST_ROUNDS 5

/* Writes a line to stderr without stdio's buffers (the child may be
 * anywhere). */
static void child_say(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static void child_say(const char *fmt, ...) {
  char msg[160];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n >= (int)sizeof msg)
    n = (int)sizeof msg - 1; /* cut short */
  if (n > 0 && write(2, msg, (size_t)n) < 0)
    _exit(99);
}

/* Waits for a child; how it ended as one status that a child can pass up:
 * its exit status, or 91 (killed by its alarm: a deadlock), 92 (killed by
 * another signal), 90 (lost: waitpid failed). */
static int wait_child(struct child *c) {
  struct child_end end;
  child_wait(c, &end);
  if (end.how == CHILD_EXITED)
    return end.code;
  if (end.how == CHILD_KILLED)
    return end.code == SIGALRM ? 91 : 92;
  return 90;
}

static int fork_generation(int depth, int round);

/* One generation: workers of its own run while it forks the next one; the
 * next one finds every inherited block intact and does the same.  Returns
 * 0, or a status naming the first problem (deeper ones are passed up). */
static int nested(int depth, int round) {
  int st = check_inherited();
  if (st)
    return st;
  pthread_t w[WORKERS];
  int started = 0;
  if (child_threads) {
    __atomic_store_n(&stop_workers, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&workers_started, 0, __ATOMIC_RELAXED);
    for (; started < WORKERS; started++)
      if (pthread_create(&w[started], NULL, worker,
                         (void *)(uintptr_t)(depth * 100 + round * 7 + started + 1)))
        return CHILD_THREAD;
    wait_started(WORKERS);
  }
  st = churn(3000 + (uint64_t)(depth * 100 + round), 1000);
  if (!st && depth < NEST_DEPTH) {
    allocate_before_fork(100, 61);
    st = fork_generation(depth + 1, round);
  }
  __atomic_store_n(&stop_workers, 1, __ATOMIC_RELAXED);
  for (int i = 0; i < started; i++) {
    void *ret;
    if (pthread_join(w[i], &ret))
      return CHILD_THREAD;
    if (ret && !st)
      st = CHILD_CORRUPT; /* a worker saw a broken block */
  }
  if (st)
    return st;
  /* This generation's own copies of the inherited blocks go back. */
  if ((st = check_and_free_inherited()))
    return st;
  return churn(4000 + (uint64_t)(depth * 100 + round), 1000);
}

struct generation {
  int depth, round;
};

static int generation_main(void *arg) {
  const struct generation *g = arg;
  int st = nested(g->depth, g->round);
  if (st)
    child_say("nested fork: round %d, generation %d failed with status %d\n",
              g->round, g->depth, st);
  return st;
}

/* Forks generation `depth` and waits for it: 0, or the first problem of it
 * or of a generation below (93: the fork failed). */
static int fork_generation(int depth, int round) {
  struct generation g = {depth, round};
  struct child c;
  if (!child_start(&c, generation_main, &g, &(struct child_opts){.alarm = 30}))
    return 93;
  return wait_child(&c);
}

static void test_nested_forks(void **state) {
  (void)state;
  pthread_t workers[WORKERS];
  start_scene(workers, 77);
  for (int round = 0; round < NEST_ROUNDS; round++) {
    allocate_before_fork(200, 37);
    int st = fork_generation(1, round);
    if (st)
      fail_msg("round %d: nested forks failed with status %d (91: alarm, a "
               "deadlock; 92: a signal; 93: fork failed; 11/12: contents; "
               "13: thread)",
               round, st);
  }
  end_scene(workers);
  print_message("nested forks: %d rounds, %d generations deep, workers running "
                "in every generation%s\n", NEST_ROUNDS, NEST_DEPTH,
                child_threads ? "" : " (but the first: HAK_FORK_CHILD_THREADS=0)");
}

/* ---- fork from a thread, while threads start, end and free remotely ------- */

#define PASS_SLOTS 256
static struct {
  pthread_mutex_t lock;
  char *p;
  size_t size;
  uint32_t seed;
} passed[PASS_SLOTS];
static volatile int stop_busy;

/* Allocates into the shared slots and frees (after checking) what others
 * put there: most frees are of another thread's blocks. */
static void *passer(void *arg) {
  uint64_t rng = (uintptr_t)arg;
  unsigned long errors = 0;
  __atomic_add_fetch(&workers_started, 1, __ATOMIC_RELEASE);
  while (!__atomic_load_n(&stop_busy, __ATOMIC_RELAXED)) {
    unsigned i = (unsigned)rng_below(&rng, PASS_SLOTS);
    /* A child reads the slots without their locks (a thread of the parent
     * may hold one): a block is published only once filled, and
     * unpublished before it is freed, so the child sees whole blocks only
     * and never frees one the parent was freeing. */
    pthread_mutex_lock(&passed[i].lock);
    char *p = passed[i].p;
    if (p) {
      size_t check = passed[i].size > 4096 ? 4096 : passed[i].size;
      if (pattern_mismatch(p, check, passed[i].seed) != check)
        errors++;
      __atomic_store_n(&passed[i].p, NULL, __ATOMIC_SEQ_CST);
      hak_free(p);
    } else {
      size_t n = worker_size(&rng);
      p = hak_malloc(n);
      if (p == NULL) {
        errors++;
      } else {
        passed[i].size = n;
        passed[i].seed = (uint32_t)rng;
        pattern_fill(p, n > 4096 ? 4096 : n, passed[i].seed);
        __atomic_store_n(&passed[i].p, p, __ATOMIC_SEQ_CST);
      }
    }
    pthread_mutex_unlock(&passed[i].lock);
  }
  return (void *)(uintptr_t)errors;
}

static void *short_lived(void *arg) {
  /* A few blocks of each tier, some left behind in the shared slots (freed
   * later by other threads), then exit: slabs handed over, mid lists
   * flushed, counters folded in. */
  return (void *)(intptr_t)churn((uintptr_t)arg, 150);
}

/* Held by the spawner around each batch of threads, and by the forker around
 * fork(), in AddressSanitizer builds only (see ASAN_FORK_UNSAFE). */
static pthread_mutex_t spawn_lock = PTHREAD_MUTEX_INITIALIZER;

static void *spawner(void *arg) {
  (void)arg;
  unsigned long failures = 0, n = 0;
  __atomic_add_fetch(&workers_started, 1, __ATOMIC_RELEASE);
  while (!__atomic_load_n(&stop_busy, __ATOMIC_RELAXED)) {
    if (ASAN_FORK_UNSAFE)
      pthread_mutex_lock(&spawn_lock);
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
      if (pthread_create(&th[i], NULL, short_lived, (void *)(uintptr_t)(n++ * 31 + 5)))
        failures++, th[i] = 0;
    for (int i = 0; i < 3; i++) {
      void *ret = NULL;
      if (th[i] && (pthread_join(th[i], &ret) || ret))
        failures++;
    }
    if (ASAN_FORK_UNSAFE) {
      pthread_mutex_unlock(&spawn_lock);
      sched_yield();
    }
  }
  return (void *)(uintptr_t)failures;
}

struct forker_result {
  int round, status;
};

/* The child of a fork from a thread. */
static int forked_from_thread(void *arg) {
  int round = (int)(intptr_t)arg;
  int st = churn(5000 + (uint64_t)round, 1000);
  /* Blocks in the shared slots, allocated by threads that do not exist in
   * the child: check and free them all. */
  for (unsigned i = 0; !st && i < PASS_SLOTS; i++) {
    if (!passed[i].p)
      continue;
    size_t check = passed[i].size > 4096 ? 4096 : passed[i].size;
    if (pattern_mismatch(passed[i].p, check, passed[i].seed) != check)
      st = CHILD_INHERITED_CORRUPT;
    hak_free(passed[i].p);
  }
  if (!st && child_threads) {
    pthread_t th;
    void *ret;
    if (pthread_create(&th, NULL, child_thread,
                       (void *)(uintptr_t)(round + 7000)) ||
        pthread_join(th, &ret))
      st = CHILD_THREAD;
    else
      st = (int)(intptr_t)ret;
  }
  return st;
}

static void *forker(void *arg) {
  struct forker_result *res = arg;
  enum { ROUNDS = 20 };
  for (res->round = 0; res->round < ROUNDS; res->round++) {
    allocate_before_fork(100, 43);
    if (ASAN_FORK_UNSAFE)
      pthread_mutex_lock(&spawn_lock);
    struct child c;
    bool started = child_start(&c, forked_from_thread,
                               (void *)(intptr_t)res->round, &child_alarm_20);
    if (ASAN_FORK_UNSAFE)
      pthread_mutex_unlock(&spawn_lock);
    if (!started) {
      res->status = 93;
      return NULL;
    }
    res->status = wait_child(&c);
    if (res->status)
      return NULL;
  }
  return NULL;
}

static void test_fork_from_thread_while_threads_come_and_go(void **state) {
  (void)state;
  for (int i = 0; i < PASS_SLOTS; i++) {
    pthread_mutex_init(&passed[i].lock, NULL);
    passed[i].p = NULL;
  }
  /* The slots' locks are held by the passers at fork time too; a child
   * must not wait on them. */
  stop_busy = 0;
  workers_started = 0;
  pthread_t pass[2], spawn;
  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&pass[i], NULL, passer, (void *)(uintptr_t)(i + 900)), 0);
  assert_int_equal(pthread_create(&spawn, NULL, spawner, NULL), 0);
  wait_started(3);
  struct forker_result res = {0, 0};
  pthread_t fk;
  assert_int_equal(pthread_create(&fk, NULL, forker, &res), 0);
  assert_int_equal(pthread_join(fk, NULL), 0);
  __atomic_store_n(&stop_busy, 1, __ATOMIC_RELAXED);
  void *ret;
  for (int i = 0; i < 2; i++) {
    assert_int_equal(pthread_join(pass[i], &ret), 0);
    if (ret)
      fail_msg("passer %d saw %lu errors", i, (unsigned long)(uintptr_t)ret);
  }
  assert_int_equal(pthread_join(spawn, &ret), 0);
  if (ret)
    fail_msg("short-lived threads: %lu failures", (unsigned long)(uintptr_t)ret);
  if (res.status)
    fail_msg("fork %d from a thread: the child failed with status %d (91: "
             "alarm, a deadlock; 92: a signal; 93: fork failed; 11/12: "
             "contents; 13: thread)",
             res.round, res.status);
  for (int i = 0; i < PASS_SLOTS; i++) {
    hak_free(passed[i].p);
    pthread_mutex_destroy(&passed[i].lock);
  }
  print_message("fork from a thread: %d children fine while threads came and "
                "went\n", res.round);
}

int main(void) {
  const char *ct = getenv("HAK_FORK_CHILD_THREADS");
  child_threads = !(ct && strcmp(ct, "0") == 0);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fork_while_threads_allocate),
      cmocka_unit_test(test_fork_while_reporting),
      cmocka_unit_test(test_nested_forks),
      cmocka_unit_test(test_fork_from_thread_while_threads_come_and_go),
  };
  return cmocka_run_group_tests_name("api_fork", tests, NULL, NULL);
}
