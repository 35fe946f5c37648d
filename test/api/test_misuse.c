/* SPDX-License-Identifier: MIT */
/* test_misuse.c - misuse is reported and aborts (checked builds).
 *
 * Each case runs in a forked child whose stderr is a pipe: the child does
 * the misuse and must die by SIGABRT; the parent reads what it wrote and
 * asserts that the message names the problem ("double free", "invalid
 * pointer") and the address, printed with %p.  The fast build has no
 * checks (HAK_GATE_CHECKS is 0): there every case is skipped.
 *
 * The child never returns into cmocka: if the misuse goes unnoticed it
 * exits with status 99, which the parent reports.  Under AddressSanitizer
 * (the debug preset) the child's abort is a plain SIGABRT: ASan does not
 * handle SIGABRT unless asked (handle_abort=0 by default), so nothing is
 * reported as an ASan error.
 */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "api_test.h"
#include "hak_stats.h" /* HAK_GATE_CHECKS */
#include "test_child.h"

typedef void (*misuse_fn)(void *arg);

/* The fast build trusts its input: there is nothing to test. */
#define REQUIRE_CHECKS()                                                       \
  do {                                                                         \
    if (!HAK_GATE_CHECKS)                                                      \
      skip();                                                                  \
  } while (0)

struct misuse {
  misuse_fn fn;
  void *arg;
};

/* The child: the misuse must abort it; if it returns, the child says so. */
static int misuse_child(void *arg) {
  struct misuse *m = arg;
  m->fn(m->arg);
  static const char msg[] = "misuse went unnoticed\n";
  ssize_t w = write(2, msg, sizeof msg - 1);
  (void)w;
  return 99;
}

/* Runs fn(arg) in a child; asserts the child died by SIGABRT with a message
 * on stderr that contains `problem` and the address `addr` as %p prints it. */
static void expect_abort(misuse_fn fn, void *arg, const char *problem,
                         const void *addr) {
  if (!HAK_GATE_CHECKS) {
    skip(); /* the fast build does not check */
    return;
  }
  struct misuse m = {fn, arg};
  struct child_end end;
  child_run(misuse_child, &m,
            &(struct child_opts){
                .alarm = 20, .capture_stderr = true, .no_core = true},
            &end);

  char where[64];
  snprintf(where, sizeof where, "%p", addr);
  if (end.how != CHILD_KILLED || end.code != SIGABRT) {
    char how[160];
    fail_msg("expected SIGABRT for \"%s\" at %s; the child %s; its stderr: "
             "\"%s\"",
             problem, where, child_end_text(&end, how, sizeof how), end.err);
  }
  if (strstr(end.err, problem) == NULL)
    fail_msg("the message does not say \"%s\": \"%s\"", problem, end.err);
  if (strstr(end.err, where) == NULL)
    fail_msg("the message does not give the address %s: \"%s\"", where,
             end.err);
  if (strstr(end.err, "hakmem") == NULL)
    fail_msg("the message does not say who reports it: \"%s\"", end.err);
}

/* ---- the misuses (run in the child) ---------------------------------- */

static void free_twice(void *p) {
  hak_free(p);
  hak_free(p);
}

static void free_once(void *p) { hak_free(p); }

static void free_then_realloc(void *p) {
  hak_free(p);
  (void)hak_realloc(p, 8 * MiB); /* p was freed: misuse of realloc */
}

/* The same with a size the block still fits: realloc would hand it back. */
static void free_then_realloc_in_place(void *p) {
  size_t n = hak_usable_size(p);
  hak_free(p);
  (void)hak_realloc(p, n);
}

static void realloc_zero_then_free(void *p) {
  if (hak_realloc(p, 0) != NULL)
    _exit(97);
  hak_free(p); /* realloc(p, 0) freed it: this is the second free */
}

static void *free_in_thread(void *p) {
  hak_free(p);
  return NULL;
}

static void free_remotely_then_locally(void *p) {
  pthread_t th;
  if (pthread_create(&th, NULL, free_in_thread, p) || pthread_join(th, NULL))
    _exit(96);
  hak_free(p);
}

static void realloc_foreign(void *p) {
  void *q = hak_realloc(p, 100);
  (void)q;
}

static void usable_size_foreign(void *p) {
  size_t n = hak_usable_size(p);
  (void)n;
}

/* ---- the cases ---------------------------------------------------------- */

static void test_double_free_tiny(void **state) {
  (void)state;
  REQUIRE_CHECKS();
  const size_t sizes[] = {1, 16, 24, 100, 1024};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    char *p = hak_malloc(sizes[i]);
    assert_non_null(p);
    memset(p, 0x11, sizes[i]);
    expect_abort(free_twice, p, "double free", p);
    hak_free(p); /* the parent's copy was never freed */
  }
}

static void test_double_free_tiny_remote(void **state) {
  (void)state;
  REQUIRE_CHECKS();
  /* First free on another thread (a remote free), second on this one. */
  char *p = hak_malloc(48);
  assert_non_null(p);
  expect_abort(free_remotely_then_locally, p, "double free", p);
  hak_free(p);
}

/* Double frees into slabs that are not current: the first free into a full
 * slab (slow path) and a free into a partial one (inline). */
static char *idle_blocks[300]; /* 512 B: the first two slabs fill up */

static void free_in_full_then_partial_twice(void *arg) {
  (void)arg;
  hak_free(idle_blocks[0]); /* full -> partial */
  hak_free(idle_blocks[1]); /* partial: inline */
  hak_free(idle_blocks[1]);
}

static void free_in_full_twice(void *arg) {
  (void)arg;
  hak_free(idle_blocks[2]);
  hak_free(idle_blocks[2]);
}

static void test_double_free_tiny_idle_slabs(void **state) {
  (void)state;
  REQUIRE_CHECKS();
  for (int i = 0; i < 300; i++) {
    idle_blocks[i] = hak_malloc(512);
    assert_non_null(idle_blocks[i]);
    memset(idle_blocks[i], i, 512);
  }
  expect_abort(free_in_full_then_partial_twice, NULL, "double free",
               idle_blocks[1]);
  expect_abort(free_in_full_twice, NULL, "double free", idle_blocks[2]);
  for (int i = 0; i < 300; i++)
    hak_free(idle_blocks[i]);
}

/* HAKMEM_CHECKS=2 (the api_misuse_checks2 run): a write after free into a
 * block of a partial slab, where the link stays intact, is found when the
 * slab's list is taken, before any of it is handed out again. */
static char *audit_blocks[600];

static void write_after_free_then_refill(void *arg) {
  (void)arg;
  hak_free(audit_blocks[0]); /* full -> partial */
  hak_free(audit_blocks[1]);
  ((volatile uint64_t *)audit_blocks[1])[1] = 0x4141414141414141ull;
  for (int i = 0; i < 600; i++) /* the current slab runs out */
    if (!hak_malloc(512))
      _exit(95);
}

static void test_audit_finds_write_after_free(void **state) {
  (void)state;
  REQUIRE_CHECKS();
  const char *level = getenv("HAKMEM_CHECKS");
  if (!level || strcmp(level, "2") != 0)
    skip(); /* level 1 does not audit */
  for (int i = 0; i < 300; i++) {
    audit_blocks[i] = hak_malloc(512);
    assert_non_null(audit_blocks[i]);
  }
  expect_abort(write_after_free_then_refill, NULL, "corrupted free list",
               audit_blocks[1]);
  for (int i = 0; i < 300; i++)
    hak_free(audit_blocks[i]);
}

static void test_double_free_mid(void **state) {
  (void)state;
  REQUIRE_CHECKS();
  const size_t sizes[] = {1025, 5000, 100 * KiB, MID_MAX};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    char *p = hak_malloc(sizes[i]);
    assert_non_null(p);
    memset(p, 0x22, sizes[i]);
    expect_abort(free_twice, p, "double free", p);
    hak_free(p);
  }
}

static void test_double_free_large(void **state) {
  (void)state;
  REQUIRE_CHECKS();
  const size_t sizes[] = {MID_MAX + 1, MiB, 6 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    char *p = hak_malloc(sizes[i]);
    assert_non_null(p);
    memset(p, 0x33, 64);
    expect_abort(free_twice, p, "double free", p);
    hak_free(p);
  }
}

/* realloc of a freed big block names realloc, not the free it would make. */
static void test_realloc_after_free_large(void **state) {
  (void)state;
  REQUIRE_CHECKS();
  const size_t sizes[] = {MID_MAX + 1, 2 * MiB, 6 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    char *p = hak_malloc(sizes[i]);
    assert_non_null(p);
    expect_abort(free_then_realloc, p, "realloc(): invalid pointer or double free", p);
    hak_free(p);
  }
}

/* The same for tiny and mid blocks, whether realloc would move the block
 * or keep it; an interior pointer is realloc's misuse too. */
static void test_realloc_after_free_tiny_mid(void **state) {
  (void)state;
  REQUIRE_CHECKS();
  const size_t sizes[] = {40, 1000, 3000, 100000};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    char *p = hak_malloc(sizes[i]);
    assert_non_null(p);
    expect_abort(free_then_realloc, p,
                 "realloc(): invalid pointer or double free", p);
    expect_abort(free_then_realloc_in_place, p,
                 "realloc(): invalid pointer or double free", p);
    expect_abort(realloc_foreign, p + 16, "realloc(): invalid pointer", p + 16);
    hak_free(p);
  }
}

static void test_realloc_zero_frees(void **state) {
  (void)state;
  REQUIRE_CHECKS();
  /* realloc(p, 0) returns NULL and frees p (glibc): a later free of p is a
   * double free. */
  const size_t sizes[] = {40, 3000};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    char *p = hak_malloc(sizes[i]);
    assert_non_null(p);
    expect_abort(realloc_zero_then_free, p, "double free", p);
    hak_free(p);
  }
}

static void test_interior_pointer_tiny(void **state) {
  (void)state;
  REQUIRE_CHECKS();
  char *p = hak_malloc(64);
  assert_non_null(p);
  memset(p, 0x44, 64);
  expect_abort(free_once, p + 8, "invalid pointer", p + 8);
  expect_abort(free_once, p + 32, "invalid pointer", p + 32);
  hak_free(p);
  char *q = hak_malloc(1000);
  assert_non_null(q);
  expect_abort(free_once, q + 16, "invalid pointer", q + 16);
  hak_free(q);
}

static void test_interior_pointer_mid_large(void **state) {
  (void)state;
  REQUIRE_CHECKS();
  char *p = hak_malloc(8000);
  assert_non_null(p);
  expect_abort(free_once, p + 16, "invalid pointer", p + 16);
  hak_free(p);
  char *q = hak_malloc(MiB);
  assert_non_null(q);
  expect_abort(free_once, q + 4096, "invalid pointer", q + 4096);
  expect_abort(free_once, q + 16, "invalid pointer", q + 16);
  hak_free(q);
}

static void test_interior_pointer_huge(void **state) {
  (void)state;
  REQUIRE_CHECKS();
  /* Past the first 4 MiB of a huge block: no region header there. */
  char *p = hak_malloc(12 * MiB);
  assert_non_null(p);
  expect_abort(free_once, p + 5 * MiB, "invalid pointer", p + 5 * MiB);
  expect_abort(free_once, p + 8 * MiB + 16, "invalid pointer", p + 8 * MiB + 16);
  hak_free(p);
}

/* A write into a freed block (use after free) overwrites its free-list
 * link; taking the blocks again must notice instead of handing out memory
 * the link points to. */
struct uaf {
  size_t size;
  char *victim; /* freed, then written */
};

static void write_after_free_then_malloc(void *arg) {
  struct uaf *u = arg;
  char *other = hak_malloc(u->size);
  hak_free(other);
  hak_free(u->victim); /* the most recently freed: next in line */
  memset(u->victim, 0x41, 16); /* use after free: the link and marker */
  for (int i = 0; i < 4; i++) {
    char *p = hak_malloc(u->size);
    if (p == NULL)
      _exit(95);
    memset(p, 0, u->size);
  }
}

static void test_write_after_free_detected(void **state) {
  (void)state;
  REQUIRE_CHECKS();
  const size_t sizes[] = {16, 100, 1024, 2000, 40 * KiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    struct uaf u = {sizes[i], hak_malloc(sizes[i])};
    assert_non_null(u.victim);
    expect_abort(write_after_free_then_malloc, &u, "corrupted free list",
                 u.victim);
    hak_free(u.victim);
  }
}

static char static_buffer[256] __attribute__((aligned(16)));

static void test_foreign_pointers(void **state) {
  (void)state;
  REQUIRE_CHECKS();
  char stack_buffer[64] __attribute__((aligned(16)));
  memset(stack_buffer, 0, sizeof stack_buffer);
  expect_abort(free_once, stack_buffer, "invalid pointer", stack_buffer);
  expect_abort(free_once, static_buffer, "invalid pointer", static_buffer);
  expect_abort(free_once, static_buffer + 16, "invalid pointer",
               static_buffer + 16);
  /* A block from the C library's malloc is not hakmem's either. */
  char *libc_block = malloc(100);
  assert_non_null(libc_block);
  expect_abort(free_once, libc_block, "invalid pointer", libc_block);
  free(libc_block);
  /* realloc and malloc_usable_size check their pointer too. */
  expect_abort(realloc_foreign, stack_buffer, "invalid pointer", stack_buffer);
  expect_abort(usable_size_foreign, static_buffer, "invalid pointer",
               static_buffer);
}

static void test_checks_leave_valid_frees_alone(void **state) {
  (void)state;
  /* The checked free must not reject correct frees (including blocks whose
   * second word happens to look like anything). */
  for (int round = 0; round < 1000; round++) {
    size_t n = 16 + (size_t)(round * 53) % 3000;
    uint64_t *p = hak_malloc(n);
    assert_non_null(p);
    p[0] = (uint64_t)(uintptr_t)p;
    p[1] = ~(uint64_t)(uintptr_t)p;
    hak_free(p);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_double_free_tiny),
      cmocka_unit_test(test_double_free_tiny_remote),
      cmocka_unit_test(test_double_free_tiny_idle_slabs),
      cmocka_unit_test(test_audit_finds_write_after_free),
      cmocka_unit_test(test_double_free_mid),
      cmocka_unit_test(test_double_free_large),
      cmocka_unit_test(test_realloc_after_free_large),
      cmocka_unit_test(test_realloc_after_free_tiny_mid),
      cmocka_unit_test(test_realloc_zero_frees),
      cmocka_unit_test(test_interior_pointer_tiny),
      cmocka_unit_test(test_interior_pointer_mid_large),
      cmocka_unit_test(test_interior_pointer_huge),
      cmocka_unit_test(test_write_after_free_detected),
      cmocka_unit_test(test_foreign_pointers),
      cmocka_unit_test(test_checks_leave_valid_frees_alone),
  };
  return cmocka_run_group_tests_name("api_misuse", tests, NULL, NULL);
}
