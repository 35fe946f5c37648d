/* SPDX-License-Identifier: MIT */
/* test_counters.c - the counters add up: at a checkpoint, mallocs - frees
 * equals the blocks live in each tier, and system calls are counted when
 * memory is mapped.  Observe build for path counters; standard also has
 * the system-call ones; fast has none (all zero, asserted). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdint.h>
#include <string.h>

#include "hak_tiny.h"
#include "hakmem.h"

static uint64_t c(const struct hak_stats_snapshot *s, enum hak_stat id) {
  return s->count[id];
}

static void test_paths_add_up(void **state) {
  (void)state;
  enum { TINY = 3000, MID = 300, LARGE = 12 };
  static void *tiny[TINY], *mid[MID], *large[LARGE];
  struct hak_stats_snapshot a, b, z;
  hak_stats_snapshot(&a);
  for (int i = 0; i < TINY; i++)
    tiny[i] = hak_malloc((size_t)(i % 1024) + 1);
  for (int i = 0; i < MID; i++)
    mid[i] = hak_malloc(2000 + (size_t)i * 100);
  for (int i = 0; i < LARGE; i++)
    large[i] = hak_malloc(((size_t)300 << 10) + (size_t)i * 4096);
  /* Free two thirds of the tiny ones and half of the others. */
  for (int i = 0; i < TINY; i++)
    if (i % 3)
      hak_free(tiny[i]);
  for (int i = 0; i < MID; i += 2)
    hak_free(mid[i]);
  for (int i = 0; i < LARGE; i += 2)
    hak_free(large[i]);
  hak_stats_snapshot(&b);
  if (!HAK_GATE_COUNT_PATHS) {
    assert_int_equal(c(&b, HAK_STAT_TINY_MALLOC), 0);
    assert_int_equal(c(&b, HAK_STAT_MID_MALLOC), 0);
    if (!HAK_GATE_COUNT_SYSCALLS) {
      memset(&z, 0, sizeof z);
      assert_memory_equal(&b, &z, sizeof z);
    }
  } else {
    uint64_t tm = c(&b, HAK_STAT_TINY_MALLOC) - c(&a, HAK_STAT_TINY_MALLOC);
    uint64_t tf = c(&b, HAK_STAT_TINY_FREE_LOCAL) + c(&b, HAK_STAT_TINY_FREE_REMOTE) -
                  c(&a, HAK_STAT_TINY_FREE_LOCAL) - c(&a, HAK_STAT_TINY_FREE_REMOTE);
    assert_int_equal(tm, TINY);
    assert_int_equal(tm - tf, TINY / 3); /* live at the checkpoint */
    uint64_t cm = 0, cf = 0;
    for (int k = 0; k < HAK_STATS_CLASSES; k++) {
      cm += b.class_malloc[k] - a.class_malloc[k];
      cf += b.class_free[k] - a.class_free[k];
    }
    assert_int_equal(cm, tm);
    assert_int_equal(cf, tf);
    assert_int_equal(c(&b, HAK_STAT_MID_MALLOC) - c(&a, HAK_STAT_MID_MALLOC), MID);
    assert_int_equal(c(&b, HAK_STAT_MID_FREE) - c(&a, HAK_STAT_MID_FREE), MID / 2);
    assert_int_equal(c(&b, HAK_STAT_LARGE_MALLOC) - c(&a, HAK_STAT_LARGE_MALLOC), LARGE);
    assert_int_equal(c(&b, HAK_STAT_LARGE_FREE) - c(&a, HAK_STAT_LARGE_FREE), LARGE / 2);
  }
  for (int i = 0; i < TINY; i += 3)
    hak_free(tiny[i]);
  for (int i = 1; i < MID; i += 2)
    hak_free(mid[i]);
  for (int i = 1; i < LARGE; i += 2)
    hak_free(large[i]);
}

static void test_syscalls_counted(void **state) {
  (void)state;
  struct hak_stats_snapshot a, b;
  hak_stats_snapshot(&a);
  /* Blocks larger than the large tier keeps (32 MiB + half the peak of the
   * live bytes, at most 512 MiB): each maps and unmaps. */
  for (int i = 0; i < 3; i++) {
    void *p = hak_malloc((size_t)600 << 20);
    assert_non_null(p);
    memset(p, 1, 4096);
    hak_free(p);
  }
  hak_stats_snapshot(&b);
  /* Less the leaves of the region map that a new range of address space
   * needs (os.map_leaves): where a block lands is the kernel's choice. */
  uint64_t mm = c(&b, HAK_STAT_SYS_MMAP) - c(&a, HAK_STAT_SYS_MMAP) -
                (c(&b, HAK_STAT_OS_MAP_LEAVES) - c(&a, HAK_STAT_OS_MAP_LEAVES));
  uint64_t mu = c(&b, HAK_STAT_SYS_MUNMAP) - c(&a, HAK_STAT_SYS_MUNMAP);
  if (HAK_GATE_COUNT_SYSCALLS) {
    assert_int_equal(mm, 3);
    assert_true(mu >= 3); /* each: trimming the alignment slack, and the unmap */
  } else {
    assert_int_equal(mm, 0);
    assert_int_equal(mu, 0);
  }
}

static void test_report_formats(void **state) {
  (void)state;
  char text[32768], json[32768];
  size_t n = hak_stats_report(text, sizeof text, 0);
  assert_true(n > 0 && n < sizeof text);
  /* Counters this build does not keep are left out, not printed as 0. */
  assert_int_equal(strstr(text, "sys.mmap") != NULL, HAK_GATE_COUNT_SYSCALLS);
  assert_int_equal(strstr(text, "tiny.malloc") != NULL, HAK_GATE_COUNT_PATHS);
  assert_non_null(strstr(text, "rss"));
  n = hak_stats_report(json, sizeof json, 1);
  assert_true(n > 0 && n < sizeof json);
  assert_memory_equal(json, "{\"header\":{", 11);
  assert_int_equal(strstr(json, "\"sys.mmap\":") != NULL,
                   HAK_GATE_COUNT_SYSCALLS);
  assert_int_equal(strstr(json, "\"tiny.malloc\":") != NULL,
                   HAK_GATE_COUNT_PATHS);
  assert_non_null(strstr(json, "\"rss_peak\":"));
  assert_non_null(strstr(json, "}\n"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_paths_add_up),
      cmocka_unit_test(test_syscalls_counted),
      cmocka_unit_test(test_report_formats),
  };
  return cmocka_run_group_tests_name("observe_counters", tests, NULL, NULL);
}
