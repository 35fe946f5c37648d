/* SPDX-License-Identifier: MIT */
/* test_guard.c - guarded allocations by sampling (libhak-os's guard.c).
 *
 * Run with HAKMEM_GUARD_SAMPLE=1 (test/guard/CMakeLists.txt): every
 * hak_malloc (and the rest of the family) that reaches a sampling point and
 * fits a slot is guarded.  Each misuse runs in a forked child whose stderr
 * is a pipe: the child must die by the signal named (SIGSEGV for a fault in
 * a guard or a quarantined slot, SIGABRT for canary damage found at free
 * and for a double or invalid free), and its report must name the kind,
 * the offset and the block's size.  A child that survives its misuse exits
 * with 99.
 *
 * Sizes: small (a tiny class), medium (the mid tier) and large (the large
 * tier; HAKMEM_GUARD_MAX is set above 1 MiB so that it is guarded too).
 * The side a block sits against is chosen per allocation: a case that needs
 * one side allocates until it gets it (hak_os_guard_side).
 *
 * The fast build compiles sampling out: every case is skipped there (the
 * tests are not even registered, see CMakeLists.txt).
 */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "api_test.h"

/* The misuse is the point: the compiler sees some of it. */
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#include "cxx_entry.h" /* hak_new, hak_delete_sized */
#include "hak_os.h"    /* hak_os_guard_side, hak_os_guard_info */
#include "test_child.h"

enum side { ANY = 0, LEFT = 1, RIGHT = 2 };

/* A guarded block of n bytes against `side`: allocates until one is (the
 * others are freed), failing the child (exit 97) if none comes. */
static char *guarded(size_t n, enum side side) {
  for (int i = 0; i < 64; i++) {
    char *p = hak_malloc(n);
    int got = p ? hak_os_guard_side(p) : 0;
    if (got && (side == ANY || got == (int)side))
      return p;
    hak_free(p);
  }
  static const char msg[] = "no guarded block of the side asked for\n";
  ssize_t w = write(2, msg, sizeof msg - 1);
  (void)w;
  _exit(97);
}

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

/* ---- the misuse cases -----------------------------------------------------
 */

enum action {
  OVERFLOW_AT_GUARD, /* one write just past the 16-rounded end (right) */
  OVERFLOW_READ_32,  /* one read 32 bytes past the end (right) */
  OVERFLOW_RUN_32,   /* memset 32 bytes too many (right) */
  OVERFLOW_RUN_1M,   /* memset 1 MiB too many (right) */
  OVERFLOW_CANARY,   /* one byte past the end, in the slack (right), free */
  UNDERFLOW_1,       /* p[-1] (left) */
  UNDERFLOW_32,      /* p[-32] read (left) */
  UNDERFLOW_CANARY,  /* p[-1] (right: the slack before it), free */
  UAF_READ,
  UAF_WRITE,
  UAF_ZERO, /* memset of the freed block */
  ZERO_READ,
  ZERO_WRITE,
  DOUBLE_FREE,
  INVALID_FREE,
};

struct misuse {
  enum action action;
  size_t size;
  /* filled by the child setup (known before the fork, as the parent's
   * copy of the allocation is the same) */
};

static volatile char sink;

/* A run of writes from p on, byte by byte in order (memset may store its
 * last bytes first, which would fault elsewhere than the end). */
static void write_run(char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    ((volatile char *)p)[i] = 'x';
}

/* hakmem's fault handlers, as main found them: cmocka installs its own
 * over them while a test runs (a program's handler installed after
 * hakmem's replaces it), so the children put them back. */
static struct sigaction hakmem_segv, hakmem_bus;
static void restore_hakmem_handlers(void) {
  sigaction(SIGSEGV, &hakmem_segv, NULL);
  sigaction(SIGBUS, &hakmem_bus, NULL);
}

static int misuse_child(void *arg) {
  const struct misuse *m = arg;
  restore_hakmem_handlers();
  size_t n = m->size;
  char *p;
  switch (m->action) {
  case OVERFLOW_AT_GUARD:
    p = guarded(n, RIGHT);
    p[round16(n)] = 1;
    break;
  case OVERFLOW_READ_32:
    p = guarded(n, RIGHT);
    sink = p[n + 32];
    break;
  case OVERFLOW_RUN_32:
    p = guarded(n, RIGHT);
    write_run(p, n + 32);
    break;
  case OVERFLOW_RUN_1M:
    p = guarded(n, RIGHT);
    write_run(p, n + ((size_t)1 << 20));
    break;
  case OVERFLOW_CANARY:
    p = guarded(n, RIGHT);
    p[n] = 1; /* n is not a multiple of 16: still the slot's page */
    hak_free(p);
    break;
  case UNDERFLOW_1:
    p = guarded(n, LEFT);
    p[-1] = 1;
    break;
  case UNDERFLOW_32:
    p = guarded(n, LEFT);
    sink = p[-32];
    break;
  case UNDERFLOW_CANARY:
    p = guarded(n, RIGHT);
    if (((uintptr_t)p & 4095) == 0)
      _exit(96); /* no slack before it on its page: the case does not apply */
    p[-1] = 1;
    hak_free(p);
    break;
  case UAF_READ:
    p = guarded(n, ANY);
    p[8] = 1;
    hak_free(p);
    sink = p[8];
    break;
  case UAF_WRITE:
    p = guarded(n, ANY);
    hak_free(p);
    p[8] = 1;
    break;
  case UAF_ZERO:
    p = guarded(n, ANY);
    hak_free(p);
    memset(p, 0, n);
    break;
  case ZERO_READ:
    p = guarded(0, ANY);
    sink = p[0];
    break;
  case ZERO_WRITE:
    p = guarded(0, ANY);
    p[0] = 1;
    break;
  case DOUBLE_FREE:
    p = guarded(n, ANY);
    hak_free(p);
    hak_free(p);
    break;
  case INVALID_FREE:
    p = guarded(n, ANY);
    hak_free(p + 16);
    break;
  }
  static const char msg[] = "misuse went unnoticed\n";
  ssize_t w = write(2, msg, sizeof msg - 1);
  (void)w;
  return 99;
}

/* Runs the case; asserts the signal and that every needle is in the
 * report. */
static void expect(enum action action, size_t size, int sig,
                   const char *const *needles) {
  if (!HAK_GATE_GUARD) {
    skip();
    return;
  }
  struct misuse m = {action, size};
  struct child_end end;
  child_run(misuse_child, &m,
            &(struct child_opts){
                .alarm = 30, .capture_stderr = true, .no_core = true},
            &end);
  if (end.how != CHILD_KILLED || end.code != sig) {
    char how[160];
    fail_msg("case %d, size %zu: expected signal %d; the child %s; its "
             "stderr: \"%s\"",
             (int)action, size, sig, child_end_text(&end, how, sizeof how),
             end.err);
  }
  if (strstr(end.err, "the earlier handler ran"))
    fail_msg("case %d: a fault in the pool went to the earlier handler: "
             "\"%s\"",
             (int)action, end.err);
  for (; *needles; needles++)
    if (!strstr(end.err, *needles))
      fail_msg("case %d, size %zu: the report does not say \"%s\": \"%s\"",
               (int)action, size, *needles, end.err);
  if (action != DOUBLE_FREE && action != INVALID_FREE &&
      !strstr(end.err, "the block was allocated at"))
    fail_msg("case %d: no allocation stack: \"%s\"", (int)action, end.err);
}

#define NEEDLES(...) ((const char *const[]){__VA_ARGS__, NULL})

/* small: not a multiple of 16 (the canary cases need slack) */
static const size_t sizes[] = {100, 20000 + 4, ((size_t)1 << 20) + 4};

static void overflow_cases(size_t n) {
  char where[96];
  /* One write at the guard: round16(n) - n bytes past the end. */
  snprintf(where, sizeof where, "%zu bytes past the end of a %zu-byte block",
           round16(n) - n, n);
  expect(OVERFLOW_AT_GUARD, n, SIGSEGV,
         NEEDLES("buffer overflow (write)", where));
  snprintf(where, sizeof where, "32 bytes past the end of a %zu-byte block", n);
  expect(OVERFLOW_READ_32, n, SIGSEGV,
         NEEDLES("buffer overflow (read)", where));
  /* A run past the end faults at the first byte of the guard page. */
  snprintf(where, sizeof where, "%zu bytes past the end of a %zu-byte block",
           round16(n) - n, n);
  expect(OVERFLOW_RUN_32, n, SIGSEGV,
         NEEDLES("buffer overflow (write)", where));
  expect(OVERFLOW_RUN_1M, n, SIGSEGV,
         NEEDLES("buffer overflow (write)", where));
  /* One byte into the slack: the canary, found at free. */
  snprintf(where, sizeof where, "0 bytes past the end of a %zu-byte block", n);
  expect(OVERFLOW_CANARY, n, SIGABRT,
         NEEDLES("buffer overflow (canary damaged, found at free)", where,
                 "found by the free at"));
}

static void test_overflow_small(void **state) {
  (void)state;
  overflow_cases(sizes[0]);
}
static void test_overflow_medium(void **state) {
  (void)state;
  overflow_cases(sizes[1]);
}
static void test_overflow_large(void **state) {
  (void)state;
  overflow_cases(sizes[2]);
}

static void underflow_cases(size_t n) {
  char where[96];
  snprintf(where, sizeof where, "1 byte before the start of a %zu-byte block",
           n);
  expect(UNDERFLOW_1, n, SIGSEGV, NEEDLES("buffer underflow (write)", where));
  expect(UNDERFLOW_CANARY, n, SIGABRT,
         NEEDLES("buffer underflow (canary damaged, found at free)", where));
  snprintf(where, sizeof where, "32 bytes before the start of a %zu-byte block",
           n);
  expect(UNDERFLOW_32, n, SIGSEGV, NEEDLES("buffer underflow (read)", where));
}

static void test_underflow_small(void **state) {
  (void)state;
  underflow_cases(sizes[0]);
}
static void test_underflow_medium(void **state) {
  (void)state;
  underflow_cases(sizes[1]);
}
static void test_underflow_large(void **state) {
  (void)state;
  underflow_cases(sizes[2]);
}

static void use_after_free_cases(size_t n) {
  char where[96];
  snprintf(where, sizeof where, "8 bytes into a freed %zu-byte block", n);
  expect(UAF_READ, n, SIGSEGV,
         NEEDLES("use after free (read)", where, "and freed at"));
  expect(UAF_WRITE, n, SIGSEGV,
         NEEDLES("use after free (write)", where, "and freed at"));
  /* memset may start anywhere in the block: the offset is not asserted. */
  snprintf(where, sizeof where, "into a freed %zu-byte block", n);
  expect(UAF_ZERO, n, SIGSEGV, NEEDLES("use after free (write)", where));
}

static void test_use_after_free_small(void **state) {
  (void)state;
  use_after_free_cases(sizes[0]);
}
static void test_use_after_free_medium(void **state) {
  (void)state;
  use_after_free_cases(sizes[1]);
}
static void test_use_after_free_large(void **state) {
  (void)state;
  use_after_free_cases(sizes[2]);
}

static void test_zero_byte_block(void **state) {
  (void)state;
  expect(ZERO_READ, 0, SIGSEGV,
         NEEDLES("buffer overflow (read)",
                 "0 bytes past the end of a 0-byte block"));
  expect(ZERO_WRITE, 0, SIGSEGV,
         NEEDLES("buffer overflow (write)",
                 "0 bytes past the end of a 0-byte block"));
}

static void test_double_and_invalid_free(void **state) {
  (void)state;
  for (unsigned i = 0; i < 3; i++) {
    expect(DOUBLE_FREE, sizes[i], SIGABRT,
           NEEDLES("hakmem: free(): double free"));
    expect(INVALID_FREE, sizes[i], SIGABRT,
           NEEDLES("hakmem: free(): invalid pointer (not the start of a "
                   "guarded block)"));
  }
}

/* ---- correct programs ------------------------------------------------------
 */

static void check_fill(const char *p, size_t n, char c) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != c)
      fail_msg("byte %zu of %zu is %d, not %d", i, n, p[i], c);
}

/* Every entry point hands out guarded blocks that behave: contents,
 * alignment, zeroing, realloc across sizes, usable size. */
static void test_entry_points(void **state) {
  (void)state;
  if (!HAK_GATE_GUARD)
    skip();
  static const size_t ns[] = {1,      15,   16,    100,       1024,
                              1025,   5000, 65536, 256 << 10, (256 << 10) + 1,
                              1 << 20};
  for (unsigned i = 0; i < sizeof ns / sizeof ns[0]; i++) {
    size_t n = ns[i];
    char *p = guarded(n, ANY);
    assert_aligned(p, 16);
    assert_true(hak_usable_size(p) >= n);
    memset(p, 'a', n);
    char *z = hak_calloc(1, n);
    assert_non_null(z);
    assert_true(hak_os_guard_side(z) != 0);
    check_fill(z, n, 0);
    /* realloc of a guarded block moves it to a new (guarded) block */
    char *q = hak_realloc(p, n + 100);
    assert_non_null(q);
    assert_true(hak_os_guard_side(q) != 0);
    check_fill(q, n, 'a');
    q = hak_realloc(q, n / 2 + 1);
    assert_non_null(q);
    check_fill(q, n / 2 + 1, 'a');
    hak_free(q);
    hak_free(z);
    void *a = NULL;
    assert_int_equal(hak_posix_memalign(&a, 256, n), 0);
    assert_aligned(a, 256);
    memset(a, 'b', n);
    hak_free(a);
    char *v = hak_aligned_alloc(4096, n);
    assert_non_null(v);
    assert_aligned(v, 4096);
    memset(v, 'c', n);
    hak_free(v);
  }
  /* C++: new and the sized delete of a guarded block */
  for (unsigned i = 0; i < sizeof ns / sizeof ns[0]; i++) {
    char *c = hak_new(ns[i]);
    assert_non_null(c);
    memset(c, 'd', ns[i]);
    hak_delete_sized(c, ns[i]);
  }
  /* above HAKMEM_GUARD_MAX (2 MiB here): not guarded, from the large tier */
  char *big = hak_malloc((size_t)3 << 20);
  assert_non_null(big);
  assert_int_equal(hak_os_guard_side(big), 0);
  memset(big, 'e', (size_t)3 << 20);
  hak_free(big);
}

/* A SIGSEGV handler installed before hakmem's (this constructor runs before
 * hakmem's, which has the default priority): hakmem's handler must pass it
 * every fault outside the pool, and none inside.  It says so, then lets the
 * process die by the signal, as the default action would. */
static void earlier_handler(int sig, siginfo_t *si, void *uc) {
  (void)si;
  (void)uc;
  static const char msg[] = "the earlier handler ran\n";
  ssize_t w = write(2, msg, sizeof msg - 1);
  (void)w;
  signal(sig, SIG_DFL); /* returning faults again, and kills */
}
__attribute__((constructor(101))) static void install_earlier_handler(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = earlier_handler;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, NULL);
}

static int wild_child(void *arg) {
  (void)arg;
  restore_hakmem_handlers();
  sink = *(volatile char *)(uintptr_t)16;
  return 99;
}
/* A fault outside the pool is not hakmem's: no report, the earlier
 * handler runs. */
static void test_other_faults_chain(void **state) {
  (void)state;
  if (!HAK_GATE_GUARD)
    skip();
  struct child_end end;
  child_run(wild_child, NULL,
            &(struct child_opts){
                .alarm = 30, .capture_stderr = true, .no_core = true},
            &end);
  if (end.how != CHILD_KILLED || end.code != SIGSEGV ||
      !strstr(end.err, "the earlier handler ran"))
    fail_msg("the fault did not go to the earlier handler: \"%s\"", end.err);
  if (strstr(end.err, "hakmem: "))
    fail_msg("a fault outside the pool was reported: \"%s\"", end.err);
}

/* The pool runs full: allocations fall back to the tiers and never fail;
 * freed slots come back after the quarantine. */
static int pool_full_child(void *arg) {
  (void)arg;
  hak_free(guarded(60000, ANY)); /* the pool is reserved on first use */
  unsigned slots = hak_os_guard_info().slots;
  if (slots == 0)
    return 10;
  size_t count = slots + 64;
  char **b = calloc(count, sizeof *b);
  if (!b)
    return 11;
  unsigned plain = 0;
  for (size_t i = 0; i < count; i++) {
    size_t n = 16 + (i * 37) % 3000;
    b[i] = hak_malloc(n);
    if (!b[i])
      return 12;
    memset(b[i], (int)(i & 0x7f), n);
    plain += hak_os_guard_side(b[i]) == 0;
  }
  if (plain < 64)
    return 13; /* the pool never filled */
  if (hak_os_guard_info().live != slots)
    return 14;
  for (size_t i = 0; i < count; i++) {
    size_t n = 16 + (i * 37) % 3000;
    for (size_t k = 0; k < n; k++)
      if (b[i][k] != (char)(i & 0x7f))
        return 15;
    hak_free(b[i]);
  }
  /* the slots are free again (quarantined, then reused oldest first); a
   * size none of the above used, as the fallback blocks now wait in the
   * tiers' lists of their classes */
  if (hak_os_guard_info().live >= slots)
    return 16;
  char *p = guarded(60000, ANY);
  hak_free(p);
  free(b);
  return 0;
}
static void test_pool_full_falls_back(void **state) {
  (void)state;
  if (!HAK_GATE_GUARD)
    skip();
  struct child_end end;
  child_run(pool_full_child, NULL,
            &(struct child_opts){.alarm = 60, .capture_stderr = true}, &end);
  if (!child_ok(&end)) {
    char how[160];
    fail_msg("the child %s: \"%s\"", child_end_text(&end, how, sizeof how),
             end.err);
  }
}

/* fork with live guarded blocks: the child reads, frees and allocates
 * them; the parent's stay as they were. */
#define FORK_BLOCKS 40
static char *fork_blocks[FORK_BLOCKS];
static size_t fork_size(unsigned i) { return 8 + i * 997 % 70000; }
static int fork_child(void *arg) {
  (void)arg;
  for (unsigned i = 0; i < FORK_BLOCKS; i++) {
    for (size_t k = 0; k < fork_size(i); k++)
      if (fork_blocks[i][k] != (char)('A' + i % 26))
        return 20;
    hak_free(fork_blocks[i]);
  }
  for (unsigned i = 0; i < FORK_BLOCKS; i++) {
    char *p = hak_malloc(fork_size(i));
    if (!p)
      return 21;
    memset(p, 'z', fork_size(i));
    hak_free(p);
  }
  return 0;
}
static void test_fork_with_live_blocks(void **state) {
  (void)state;
  if (!HAK_GATE_GUARD)
    skip();
  unsigned guarded_count = 0;
  for (unsigned i = 0; i < FORK_BLOCKS; i++) {
    fork_blocks[i] = hak_malloc(fork_size(i));
    assert_non_null(fork_blocks[i]);
    guarded_count += hak_os_guard_side(fork_blocks[i]) != 0;
    memset(fork_blocks[i], 'A' + i % 26, fork_size(i));
  }
  assert_true(guarded_count > 0);
  struct child_end end;
  child_run(fork_child, NULL,
            &(struct child_opts){.alarm = 60, .capture_stderr = true}, &end);
  if (!child_ok(&end)) {
    char how[160];
    fail_msg("the child %s: \"%s\"", child_end_text(&end, how, sizeof how),
             end.err);
  }
  for (unsigned i = 0; i < FORK_BLOCKS; i++) {
    check_fill(fork_blocks[i], fork_size(i), (char)('A' + i % 26));
    hak_free(fork_blocks[i]);
  }
}

/* Threads allocate and free guarded blocks at once, and free each other's
 * (a shared exchange slot per pair). */
#define THREADS 4
#define ROUNDS 3000
static char *exchange[THREADS];
static void *thread_body(void *arg) {
  unsigned id = (unsigned)(uintptr_t)arg;
  uint64_t x = 0x9e3779b97f4a7c15ull * (id + 1);
  char *mine[16] = {0};
  for (unsigned r = 0; r < ROUNDS; r++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    unsigned k = (unsigned)(x % 16);
    size_t n = 1 + (size_t)(x >> 20) % 9000;
    if (mine[k]) {
      if (mine[k][0] != (char)k || mine[k][1] != (char)id)
        return (void *)1;
      hak_free(mine[k]);
    }
    mine[k] = hak_malloc(n < 2 ? 2 : n);
    if (!mine[k])
      return (void *)2;
    mine[k][0] = (char)k;
    mine[k][1] = (char)id;
    if (r % 8 == 0) { /* pass a block to the next thread, free what comes */
      char *b = hak_malloc(n);
      if (!b)
        return (void *)3;
      memset(b, 'q', n);
      b = __atomic_exchange_n(&exchange[(id + 1) % THREADS], b,
                              __ATOMIC_ACQ_REL);
      hak_free(b);
    }
  }
  for (unsigned k = 0; k < 16; k++)
    hak_free(mine[k]);
  return NULL;
}
static void test_threads(void **state) {
  (void)state;
  if (!HAK_GATE_GUARD)
    skip();
  pthread_t t[THREADS];
  for (unsigned i = 0; i < THREADS; i++)
    assert_int_equal(
        pthread_create(&t[i], NULL, thread_body, (void *)(uintptr_t)i), 0);
  for (unsigned i = 0; i < THREADS; i++) {
    void *rc;
    pthread_join(t[i], &rc);
    assert_null(rc);
  }
  for (unsigned i = 0; i < THREADS; i++)
    hak_free(__atomic_exchange_n(&exchange[i], NULL, __ATOMIC_ACQ_REL));
}

/* An argument runs the tests whose names match it (guard_pool_full). */
int main(int argc, char **argv) {
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  sigaction(SIGSEGV, NULL, &hakmem_segv);
  sigaction(SIGBUS, NULL, &hakmem_bus);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_entry_points),
      cmocka_unit_test(test_overflow_small),
      cmocka_unit_test(test_overflow_medium),
      cmocka_unit_test(test_overflow_large),
      cmocka_unit_test(test_underflow_small),
      cmocka_unit_test(test_underflow_medium),
      cmocka_unit_test(test_underflow_large),
      cmocka_unit_test(test_use_after_free_small),
      cmocka_unit_test(test_use_after_free_medium),
      cmocka_unit_test(test_use_after_free_large),
      cmocka_unit_test(test_zero_byte_block),
      cmocka_unit_test(test_double_and_invalid_free),
      cmocka_unit_test(test_other_faults_chain),
      cmocka_unit_test(test_pool_full_falls_back),
      cmocka_unit_test(test_fork_with_live_blocks),
      cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests_name("guard", tests, NULL, NULL);
}
