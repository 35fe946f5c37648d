/* SPDX-License-Identifier: MIT */
/* test_first_use.c - the allocator's first calls, in every order.
 *
 * hakmem needs no initialisation call: the first malloc of a process may be
 * of any size, on any thread, through any entry point (ARCHITECTURE.md,
 * "Initialisation").  Whatever a tier sets up lazily (heap ids, secrets for
 * the checked builds' free-list encoding and freed markers, thread keys)
 * must be in place before the first block of *any* tier is handed out, not
 * only before the first tiny one.
 *
 * Each case runs in a child forked from a parent that has not called hakmem
 * at all (only its constructor has run), so each child's first call is the
 * process's first.  The child reports through its exit status; the parent
 * asserts 0 (or, for the double-free case in the checked builds, SIGABRT
 * with "double free" on stderr).
 */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "api_test.h"
#include "hak_stats.h" /* HAK_GATE_CHECKS */
#include "test_child.h"

/* ---- child side --------------------------------------------------------- */

enum { BAD_NULL = 10, BAD_CONTENTS = 11, BAD_THREAD = 12, BAD_ZERO = 13 };

/* A mixed workload after the first calls: every tier, frees in another
 * order, contents checked.  Returns 0 or a BAD_ code. */
static int workload(uint32_t seed) {
  enum { N = 600 };
  static char *p[N];
  static size_t n[N];
  uint64_t rng = seed;
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < N; i++) {
      unsigned r = (unsigned)rng_below(&rng, 100);
      n[i] = r < 60   ? 1 + rng_below(&rng, TINY_MAX)
             : r < 97 ? TINY_MAX + 1 + rng_below(&rng, 40 * KiB)
                      : MID_MAX + 1 + rng_below(&rng, 2 * MiB);
      p[i] = hak_malloc(n[i]);
      if (p[i] == NULL)
        return BAD_NULL;
      pattern_fill(p[i], n[i] > 8192 ? 8192 : n[i], seed + (uint32_t)i);
    }
    for (int i = N - 1; i >= 0; i -= 2) {
      if (pattern_mismatch(p[i], n[i] > 8192 ? 8192 : n[i], seed + (uint32_t)i) !=
          (n[i] > 8192 ? 8192 : n[i]))
        return BAD_CONTENTS;
      hak_free(p[i]);
    }
    for (int i = N - 2; i >= 0; i -= 2) {
      if (pattern_mismatch(p[i], n[i] > 8192 ? 8192 : n[i], seed + (uint32_t)i) !=
          (n[i] > 8192 ? 8192 : n[i]))
        return BAD_CONTENTS;
      hak_free(p[i]);
    }
  }
  return 0;
}

/* Allocates `count` blocks of `size`, frees every other one, allocates
 * again (reusing the freed), and checks all; leaves nothing allocated. */
static int same_size(size_t size, int count) {
  char *p[64];
  if (count > 64)
    count = 64;
  for (int i = 0; i < count; i++) {
    p[i] = hak_malloc(size);
    if (p[i] == NULL)
      return BAD_NULL;
    memset(p[i], i + 1, size);
  }
  for (int i = 0; i < count; i += 2)
    hak_free(p[i]);
  for (int i = 0; i < count; i += 2) {
    p[i] = hak_malloc(size);
    if (p[i] == NULL)
      return BAD_NULL;
    memset(p[i], i + 1, size);
  }
  for (int i = 0; i < count; i++) {
    for (size_t k = 0; k < size; k += 97)
      if (p[i][k] != (char)(i + 1))
        return BAD_CONTENTS;
    hak_free(p[i]);
  }
  return 0;
}

#define TRY(x)                                                                 \
  do {                                                                         \
    int r_ = (x);                                                              \
    if (r_)                                                                    \
      return r_;                                                               \
  } while (0)

static int mid_then_tiny(void) {
  char *a = hak_malloc(2000); /* the process's first block: mid */
  if (!a)
    return BAD_NULL;
  memset(a, 1, 2000);
  char *b = hak_malloc(16); /* the first tiny block */
  if (!b)
    return BAD_NULL;
  char *c = hak_malloc(2000); /* the mid tier's next block */
  if (!c)
    return BAD_NULL;
  memset(c, 2, 2000);
  hak_free(b);
  hak_free(a);
  hak_free(c);
  TRY(same_size(2000, 64));
  TRY(same_size(5000, 40));
  return workload(1);
}

static int mid_free_then_tiny(void) {
  /* Mid blocks freed (onto the thread's list) before the first tiny block,
   * taken again after it. */
  char *a[8];
  for (int i = 0; i < 8; i++) {
    a[i] = hak_malloc(3000);
    if (!a[i])
      return BAD_NULL;
  }
  for (int i = 0; i < 8; i++)
    hak_free(a[i]);
  hak_free(hak_malloc(100));
  TRY(same_size(3000, 64));
  return workload(2);
}

static int large_then_others(void) {
  char *a = hak_malloc(MiB);
  if (!a)
    return BAD_NULL;
  memset(a, 3, MiB);
  char *h = hak_malloc(6 * MiB);
  if (!h)
    return BAD_NULL;
  hak_free(h);
  TRY(same_size(300, 64));
  TRY(same_size(70 * KiB, 20));
  hak_free(a);
  return workload(3);
}

static int calloc_mid_first(void) {
  unsigned char *a = hak_calloc(100, 40);
  if (!a)
    return BAD_NULL;
  for (int i = 0; i < 4000; i++)
    if (a[i])
      return BAD_ZERO;
  TRY(same_size(48, 64));
  TRY(same_size(4000, 64));
  hak_free(a);
  return workload(4);
}

static int aligned_mid_first(void) {
  void *a = NULL;
  if (hak_posix_memalign(&a, 256, 3000) != 0 || ((uintptr_t)a & 255))
    return BAD_NULL;
  char *b = hak_aligned_alloc(64, 1500);
  if (!b)
    return BAD_NULL;
  TRY(same_size(32, 64));
  TRY(same_size(1500, 64));
  hak_free(a);
  hak_free(b);
  return workload(5);
}

static int realloc_first(void) {
  char *a = hak_realloc(NULL, 1500);
  if (!a)
    return BAD_NULL;
  memset(a, 7, 1500);
  a = hak_realloc(a, 100); /* mid -> tiny: the first tiny block */
  if (!a || a[99] != 7)
    return BAD_CONTENTS;
  TRY(same_size(1500, 64));
  hak_free(a);
  return workload(6);
}

static void *thread_mid(void *arg) {
  char **out = arg;
  for (int i = 0; i < 16; i++) {
    out[i] = hak_malloc(2500);
    if (out[i])
      memset(out[i], 9, 2500);
  }
  return NULL;
}

static int first_on_another_thread(void) {
  /* The first block of the process comes from a thread that then ends; the
   * main thread frees those blocks and goes on. */
  char *blocks[16];
  pthread_t th;
  if (pthread_create(&th, NULL, thread_mid, blocks) || pthread_join(th, NULL))
    return BAD_THREAD;
  for (int i = 0; i < 16; i++)
    if (!blocks[i])
      return BAD_NULL;
  hak_free(hak_malloc(40));
  for (int i = 0; i < 16; i++) {
    if (blocks[i][2499] != 9)
      return BAD_CONTENTS;
    hak_free(blocks[i]);
  }
  TRY(same_size(2500, 64));
  return workload(7);
}

static int double_free_mid_across_first_tiny(void) {
  /* Checked builds: a mid block freed before the first tiny block and
   * freed again after it is still a double free. */
  char *a = hak_malloc(4000);
  if (!a)
    return BAD_NULL;
  hak_free(a);
  hak_free(hak_malloc(64));
  hak_free(a); /* must abort */
  return 0;
}

static int double_free_child(void *arg) {
  (void)arg;
  return double_free_mid_across_first_tiny() + 99;
}

/* ---- parent side ---------------------------------------------------------- */

struct case_fn {
  int (*fn)(void);
};

static int call_case(void *arg) { return ((struct case_fn *)arg)->fn(); }

static void run_case(int (*fn)(void), const char *name) {
  struct case_fn c = {fn};
  struct child_end end;
  child_run(call_case, &c, &(struct child_opts){.alarm = 30}, &end);
  if (child_ok(&end))
    return;
  char how[160];
  child_end_text(&end, how, sizeof how);
  if (end.how != CHILD_EXITED)
    fail_msg("%s: the child %s (its stderr above says why)", name, how);
  fail_msg("%s: the child %s (%s)", name, how,
           end.code == BAD_NULL       ? "an allocation failed"
           : end.code == BAD_CONTENTS ? "a block lost its contents"
           : end.code == BAD_ZERO     ? "calloc memory not zero"
                                      : "see the code");
}

static void test_mid_then_tiny(void **s) { (void)s; run_case(mid_then_tiny, "mid first"); }
static void test_mid_free_then_tiny(void **s) {
  (void)s;
  run_case(mid_free_then_tiny, "mid freed before the first tiny block");
}
static void test_large_first(void **s) { (void)s; run_case(large_then_others, "large first"); }
static void test_calloc_first(void **s) { (void)s; run_case(calloc_mid_first, "calloc first"); }
static void test_aligned_first(void **s) { (void)s; run_case(aligned_mid_first, "aligned first"); }
static void test_realloc_first(void **s) { (void)s; run_case(realloc_first, "realloc first"); }
static void test_first_on_thread(void **s) {
  (void)s;
  run_case(first_on_another_thread, "first block on another thread");
}

static void test_double_free_detected_across_first_tiny(void **s) {
  (void)s;
  if (!HAK_GATE_CHECKS)
    skip();
  struct child_end end;
  child_run(double_free_child, NULL,
            &(struct child_opts){
                .alarm = 20, .capture_stderr = true, .no_core = true},
            &end);
  if (end.how != CHILD_KILLED || end.code != SIGABRT) {
    char how[160];
    fail_msg("double free of a mid block freed before the first tiny block: "
             "not detected (the child %s, stderr \"%s\")",
             child_end_text(&end, how, sizeof how), end.err);
  }
  if (!strstr(end.err, "double free"))
    fail_msg("aborted, but not for a double free: \"%s\"", end.err);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mid_then_tiny),
      cmocka_unit_test(test_mid_free_then_tiny),
      cmocka_unit_test(test_large_first),
      cmocka_unit_test(test_calloc_first),
      cmocka_unit_test(test_aligned_first),
      cmocka_unit_test(test_realloc_first),
      cmocka_unit_test(test_first_on_thread),
      cmocka_unit_test(test_double_free_detected_across_first_tiny),
  };
  return cmocka_run_group_tests_name("api_first_use", tests, NULL, NULL);
}
