/* SPDX-License-Identifier: MIT */
/* test_slabs.c - the life of tiny slabs in one thread: a slab is current,
 * full, partial (frees land on its own list, inline), and goes back to its
 * superslab when its last block is freed, whatever path that free takes.
 * Contents of the blocks still live are checked at every step.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "api_test.h"
#include "hak_tiny.h"

#define SIZE 512 /* 128 blocks per 64 KiB slab */
#define PER_SLAB (65536 / SIZE)
#define COUNT (PER_SLAB * 8 + PER_SLAB / 2) /* 8 full slabs, 1 half current */

static char *blocks[COUNT];

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static void shuffle(unsigned *idx, unsigned n) {
  for (unsigned i = n - 1; i > 0; i--) {
    unsigned j = (unsigned)rng_below(&rng, i + 1);
    unsigned t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
  }
}

static void fill_all(void) {
  for (unsigned i = 0; i < COUNT; i++) {
    blocks[i] = hak_malloc(SIZE);
    assert_non_null(blocks[i]);
    pattern_fill(blocks[i], SIZE, i);
  }
}

static void check_live(void) {
  for (unsigned i = 0; i < COUNT; i++)
    if (blocks[i] && pattern_mismatch(blocks[i], SIZE, i) != SIZE)
      fail_msg("block %u (%p) corrupt", i, (void *)blocks[i]);
}

/* Every block freed in random order: full slabs become partial, partial
 * ones empty and go back; at the end this heap holds at most the slabs it
 * held before (the current one of the class may stay). */
static void test_random_order_releases_slabs(void **state) {
  (void)state;
  unsigned before = hak_tiny_info().slabs_in_use;
  fill_all();
  unsigned peak = hak_tiny_info().slabs_in_use;
  assert_true(peak >= before + COUNT / PER_SLAB);
  static unsigned idx[COUNT];
  for (unsigned i = 0; i < COUNT; i++)
    idx[i] = i;
  shuffle(idx, COUNT);
  for (unsigned k = 0; k < COUNT; k++) {
    hak_free(blocks[idx[k]]);
    blocks[idx[k]] = NULL;
    if (k % 97 == 0)
      check_live();
  }
  unsigned after = hak_tiny_info().slabs_in_use;
  if (after > before + 1)
    fail_msg("%u slabs in use after every block was freed (%u before, %u at "
             "the peak)",
             after, before, peak);
}

/* Half the blocks freed at random (slabs partial), then as many allocated
 * again: they come from the partial slabs, not from new ones, and nothing
 * live is disturbed. */
static void test_partial_slabs_are_reused(void **state) {
  (void)state;
  fill_all();
  unsigned peak = hak_tiny_info().slabs_in_use;
  unsigned freed = 0;
  for (unsigned i = 0; i < COUNT; i++)
    if (rng_next(&rng) & 1) {
      hak_free(blocks[i]);
      blocks[i] = NULL;
      freed++;
    }
  check_live();
  for (unsigned i = 0; i < COUNT; i++)
    if (!blocks[i]) {
      blocks[i] = hak_malloc(SIZE);
      assert_non_null(blocks[i]);
      pattern_fill(blocks[i], SIZE, i);
    }
  unsigned again = hak_tiny_info().slabs_in_use;
  if (again > peak)
    fail_msg("refilling %u freed blocks took %u new slabs", freed,
             again - peak);
  check_live();
  for (unsigned i = 0; i < COUNT; i++) {
    hak_free(blocks[i]);
    blocks[i] = NULL;
  }
}

/* A slab emptied by the inline partial-slab path and then refilled is a
 * fresh slab: its blocks can be handed out again and hold their data. */
static void test_cycles(void **state) {
  (void)state;
  unsigned before = hak_tiny_info().slabs_in_use;
  for (int round = 0; round < 20; round++) {
    fill_all();
    /* Oldest first: the first slabs are full, so their first free takes the
     * slow path and the rest the inline one. */
    for (unsigned i = 0; i < COUNT; i++) {
      hak_free(blocks[i]);
      blocks[i] = NULL;
    }
  }
  assert_true(hak_tiny_info().slabs_in_use <= before + 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_random_order_releases_slabs),
      cmocka_unit_test(test_partial_slabs_are_reused),
      cmocka_unit_test(test_cycles),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
