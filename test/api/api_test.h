/* SPDX-License-Identifier: MIT */
/* api_test.h - helpers shared by the behaviour tests of test/api (and the
 * stress tests): cmocka assertions on blocks, over test/common's
 * test_pattern.h (tier limits, the PRNG, the fill pattern).
 *
 * Every test includes this header after the system headers that cmocka
 * needs.  Helpers only use cmocka's assertions in the test process itself;
 * code that runs in a forked child (test/common/test_child.h) reports
 * through its exit status instead.
 */
#ifndef HAK_API_TEST_H
#define HAK_API_TEST_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "hakmem.h"
#include "test_pattern.h" /* test/common: tier limits, rng, patterns */

/* Asserts that the first n bytes at p hold the pattern `seed`, naming the
 * first bad offset in the failure. */
#define assert_pattern(p, n, seed)                                             \
  do {                                                                         \
    size_t bad_ = pattern_mismatch((p), (n), (seed));                          \
    if (bad_ != (size_t)(n))                                                   \
      fail_msg("pattern %u broken at offset %zu of %zu (block %p)",            \
               (unsigned)(seed), bad_, (size_t)(n), (const void *)(p));        \
  } while (0)

#define assert_pattern_sparse(p, n, seed)                                      \
  do {                                                                         \
    size_t bad_ = pattern_mismatch_sparse((p), (n), (seed));                   \
    if (bad_ != (size_t)(n))                                                   \
      fail_msg("pattern %u broken at offset %zu of %zu (block %p)",            \
               (unsigned)(seed), bad_, (size_t)(n), (const void *)(p));        \
  } while (0)

#define assert_aligned(p, a)                                                   \
  do {                                                                         \
    if (((uintptr_t)(p) & ((uintptr_t)(a) - 1)) != 0)                          \
      fail_msg("%p is not aligned to %zu", (const void *)(p), (size_t)(a));    \
  } while (0)

#endif
