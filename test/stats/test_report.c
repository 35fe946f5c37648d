/* SPDX-License-Identifier: MIT */
/* test_report.c - the report of a real process: where its memory is (per
 * tier and class), the header, hak_stats_get against hak_memory_info,
 * hak_collect, and HAKMEM_STATS_FILE with %p in a child process.
 *
 * Run with HAKMEM_PURGE_DELAY_MS=100000 (test/stats/CMakeLists.txt), so
 * that freed memory stays until hak_collect gives it back; the fast build
 * reads no settings and its checks that need them are skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hakmem.h"

static char report[1 << 16];

/* The class of the tiny or mid tier whose blocks are `size` bytes. */
static const struct hak_stats_class *class_of(const struct hak_stats *s,
                                              int tier, size_t size) {
  for (size_t i = 0; i < s->tier[tier].classes; i++)
    if (s->tier[tier].class_[i].block_size == size)
      return &s->tier[tier].class_[i];
  return NULL;
}

static void get(struct hak_stats *s) {
  memset(s, 0xA5, sizeof *s);
  s->size = sizeof *s;
  assert_int_equal(hak_stats_get(s), 0);
  assert_int_equal(s->size, sizeof *s);
  assert_int_equal(s->version, HAK_STATS_VERSION);
}

static void test_get_refuses_bad_input(void **state) {
  (void)state;
  errno = 0;
  assert_int_equal(hak_stats_get(NULL), -1);
  assert_int_equal(errno, EINVAL);
  struct hak_stats s;
  s.size = 8;
  errno = 0;
  assert_int_equal(hak_stats_get(&s), -1);
  assert_int_equal(errno, EINVAL);
}

/* 100 blocks of 48 bytes: the 48-byte class holds at least 100 live ones,
 * in the struct and in both forms of the report. */
static void test_class_live_blocks(void **state) {
  (void)state;
  enum { N = 100 };
  void *p[N];
  struct hak_stats before, after;
  get(&before);
  for (int i = 0; i < N; i++)
    assert_non_null(p[i] = hak_malloc(48));
  void *mid = hak_malloc(5000);
  void *big = hak_malloc((size_t)1 << 20);
  assert_non_null(mid);
  assert_non_null(big);
  get(&after);
  const struct hak_stats_class *c0 = class_of(&before, HAK_STATS_TINY, 48);
  const struct hak_stats_class *c = class_of(&after, HAK_STATS_TINY, 48);
  assert_non_null(c);
  assert_int_equal(after.tier[HAK_STATS_TINY].classes, 48);
  assert_int_equal(after.tier[HAK_STATS_MID].classes, 32);
  assert_int_equal(after.tier[HAK_STATS_LARGE].classes, 0);
  assert_true(c->live_blocks >= N);
  assert_int_equal(c->live_blocks - c0->live_blocks, N);
  const struct hak_stats_tier *t = &after.tier[HAK_STATS_TINY];
  assert_true(t->live_bytes >= (size_t)N * 48);
  assert_true(t->mapped >= t->committed);
  assert_true(t->committed_peak >= t->committed);
  assert_true(t->committed >= t->live_bytes);
  /* The mid block's class, the large block's pages. */
  const struct hak_stats_class *m = class_of(&after, HAK_STATS_MID, 5120);
  assert_non_null(m);
  assert_true(m->live_blocks >= 1);
  const struct hak_stats_tier *l = &after.tier[HAK_STATS_LARGE];
  assert_true(l->live_blocks >= 1);
  assert_true(l->live_bytes >= (size_t)1 << 20);
  assert_true(l->mapped >= l->live_bytes);
  assert_true(l->committed_peak >= l->committed);
  assert_true(after.os.mapped >= t->mapped + l->mapped);
  assert_true(after.os.mapped_peak >= after.os.mapped);
  assert_true(after.os.rss > 0);
  assert_true(after.os.rss_peak >= after.os.rss);

  /* The JSON: the 48-byte class entry with its live blocks. */
  size_t n = hak_stats_report(report, sizeof report, 1);
  assert_true(n > 0 && n < sizeof report);
  const char *e = strstr(report, "\"block_size\":48,\"live_blocks\":");
  assert_non_null(e);
  unsigned long long live = strtoull(strchr(e + 14, ':') + 1, NULL, 10);
  assert_true(live >= N);
  /* The text: the class row, its block size, live blocks. */
  n = hak_stats_report(report, sizeof report, 0);
  assert_true(n > 0 && n < sizeof report);
  const char *row = strstr(report, "  tiny classes:\n");
  assert_non_null(row);
  int found = 0;
  for (const char *line = row; line && *line; line = strchr(line, '\n')) {
    line++;
    unsigned long long cls, bs, lb;
    if (sscanf(line, " %llu %llu %llu", &cls, &bs, &lb) == 3 && bs == 48) {
      assert_true(lb >= N);
      found = 1;
      break;
    }
  }
  assert_true(found);
  for (int i = 0; i < N; i++)
    hak_free(p[i]);
  hak_free(mid);
  hak_free(big);
}

/* The same figures as hak_memory_info (mallinfo2). */
static void test_get_matches_memory_info(void **state) {
  (void)state;
  void *keep[64];
  for (int i = 0; i < 64; i++)
    keep[i] = hak_malloc((size_t)(i + 1) * 700);
  struct hak_stats s;
  struct hak_memory_info mi;
  get(&s);
  hak_memory_info(&mi);
  const struct hak_stats_tier *t = s.tier;
  assert_int_equal(mi.in_use,
                   t[0].live_bytes + t[1].live_bytes + t[2].live_bytes);
  assert_int_equal(mi.free, t[0].free_bytes + t[0].cached_bytes +
                                t[1].free_bytes + t[1].cached_bytes +
                                t[2].cached_bytes + s.os.cached_bytes);
  assert_int_equal(mi.large_blocks, t[2].live_blocks);
  assert_int_equal(mi.large_bytes, t[2].live_bytes);
  assert_int_equal(mi.mapped, s.os.mapped);
  assert_int_equal(mi.mapped_peak, s.os.mapped_peak);
  /* Per tier, the classes add up to the tier. */
  for (int k = 0; k < 2; k++) {
    size_t live = 0, bytes = 0, free_ = 0;
    for (size_t i = 0; i < t[k].classes; i++) {
      live += t[k].class_[i].live_blocks;
      bytes += t[k].class_[i].live_blocks * t[k].class_[i].block_size;
      free_ += t[k].class_[i].free_blocks;
    }
    assert_int_equal(live, t[k].live_blocks);
    assert_int_equal(bytes, t[k].live_bytes);
    assert_int_equal(free_, t[k].free_blocks);
  }
  assert_int_equal(s.os.committed, t[0].committed + t[1].committed +
                                       t[2].committed + s.os.cached_bytes);
  for (int i = 0; i < 64; i++)
    hak_free(keep[i]);
}

/* A lot freed: hak_collect(1) gives it back, committed goes down. */
static void test_collect_lowers_committed(void **state) {
  (void)state;
  enum { N = 40000 }; /* 20 MiB of 512-byte blocks, and mid and big ones */
  static void *p[N], *q[200];
  for (int i = 0; i < N; i++)
    assert_non_null(p[i] = hak_malloc(512));
  for (int i = 0; i < 200; i++)
    assert_non_null(q[i] = hak_malloc(100000));
  void *big = hak_malloc((size_t)8 << 20);
  assert_non_null(big);
  memset(big, 1, (size_t)8 << 20);
  for (int i = 0; i < N; i++)
    hak_free(p[i]);
  for (int i = 0; i < 200; i++)
    hak_free(q[i]);
  hak_free(big);
  struct hak_stats a, b, c;
  get(&a);
  b = a;
  if (strcmp(HAKMEM_TEST_VARIANT, "fast") != 0) {
    /* Not forced: the delay (100 s here) has not run out, little goes.
     * (The fast build's delay is 10 ms: this could take it all.) */
    hak_collect(0);
    get(&b);
    assert_true(b.os.committed <= a.os.committed);
  }
  size_t given = hak_collect(1);
  get(&c);
  assert_true(given > 0);
  assert_true(c.os.committed < b.os.committed);
  assert_true(c.tier[HAK_STATS_TINY].committed <
              b.tier[HAK_STATS_TINY].committed);
  assert_int_equal(c.tier[HAK_STATS_TINY].cached_bytes, 0);
  assert_int_equal(c.tier[HAK_STATS_MID].cached_bytes, 0);
  assert_int_equal(c.os.cached_bytes, 0);
  /* The peaks stay. */
  assert_true(c.tier[HAK_STATS_TINY].committed_peak >=
              a.tier[HAK_STATS_TINY].committed);
  /* Nothing left to give. */
  assert_int_equal(hak_collect(1), 0);
}

/* The header: version, variant, pid and program name. */
static void test_header(void **state) {
  (void)state;
  size_t n = hak_stats_report(report, sizeof report, 1);
  assert_true(n > 0 && n < sizeof report);
  char want[256];
  snprintf(want, sizeof want,
           "{\"header\":{\"version\":\"%d.%d.%d\",\"variant\":\"%s\","
           "\"pid\":%ld,\"program\":\"test_report\"}",
           HAKMEM_VERSION_MAJOR, HAKMEM_VERSION_MINOR, HAKMEM_VERSION_PATCH,
           HAKMEM_TEST_VARIANT, (long)getpid());
  assert_memory_equal(report, want, strlen(want));
  n = hak_stats_report(report, sizeof report, 0);
  snprintf(want, sizeof want,
           "hakmem %d.%d.%d statistics (%s build), pid %ld (test_report)\n",
           HAKMEM_VERSION_MAJOR, HAKMEM_VERSION_MINOR, HAKMEM_VERSION_PATCH,
           HAKMEM_TEST_VARIANT, (long)getpid());
  assert_memory_equal(report, want, strlen(want));
  /* Uncollected counters are left out. */
  int std = !strcmp(HAKMEM_TEST_VARIANT, "standard");
  int obs = !strcmp(HAKMEM_TEST_VARIANT, "observe");
  assert_int_equal(strstr(report, "sys.mmap") != NULL, std || obs);
  assert_int_equal(strstr(report, "tiny.malloc") != NULL, obs);
}

/* The needed length, as snprintf; JSON is whole or absent. */
static void test_report_length(void **state) {
  (void)state;
  for (int json = 0; json < 2; json++) {
    size_t need = hak_stats_report(NULL, 0, json);
    assert_true(need > 100);
    char *buf = hak_malloc(need + 4096);
    size_t n = hak_stats_report(buf, need + 4096, json);
    assert_true(n < need + 4096);
    assert_int_equal(strlen(buf), n);
    /* One byte short (the report may have grown by a few bytes since:
     * ask with what it says now). */
    n = hak_stats_report(buf, n, json);
    assert_true(strlen(buf) < n);
    if (json)
      assert_string_equal(buf, "");
    hak_free(buf);
  }
}

/* HAKMEM_STATS_FILE=dir/report-%p.txt: a child's report goes to its own
 * file, named with its pid, and the parent's to another. */
static void test_stats_file_per_process(void **state) {
  (void)state;
  const char *pattern = getenv("HAKMEM_STATS_FILE");
  if (!pattern || !strcmp(HAKMEM_TEST_VARIANT, "fast"))
    skip(); /* the fast build reads no settings */
  char path[512];
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    hak_stats_print();
    _exit(0);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  const char *p = strstr(pattern, "%p");
  assert_non_null(p);
  snprintf(path, sizeof path, "%.*s%ld%s", (int)(p - pattern), pattern,
           (long)pid, p + 2);
  FILE *f = fopen(path, "r");
  if (!f)
    print_error("no report file %s\n", path);
  assert_non_null(f);
  size_t n = fread(report, 1, sizeof report - 1, f);
  fclose(f);
  report[n] = 0;
  char want[64];
  snprintf(want, sizeof want, "pid %ld (test_report)\n", (long)pid);
  assert_non_null(strstr(report, want));
  remove(path);
  /* The parent's own, appended: two reports, one file. */
  snprintf(path, sizeof path, "%.*s%ld%s", (int)(p - pattern), pattern,
           (long)getpid(), p + 2);
  remove(path);
  hak_stats_print();
  hak_stats_print();
  f = fopen(path, "r");
  assert_non_null(f);
  n = fread(report, 1, sizeof report - 1, f);
  fclose(f);
  report[n] = 0;
  snprintf(want, sizeof want, "pid %ld (test_report)\n", (long)getpid());
  const char *first = strstr(report, want);
  assert_non_null(first);
  assert_non_null(strstr(first + 1, want));
  remove(path);
}

/* HAKMEM_STATS_SIGNAL=10 (SIGUSR1): the report from the handler has the
 * header and the resident set, and says why the tiers are left out. */
static void test_signal_report(void **state) {
  (void)state;
  const char *pattern = getenv("HAKMEM_STATS_FILE");
  const char *sig = getenv("HAKMEM_STATS_SIGNAL");
  if (!pattern || !sig || strcmp(sig, "10") != 0 ||
      !strcmp(HAKMEM_TEST_VARIANT, "fast"))
    skip();
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    raise(SIGUSR1);
    _exit(0);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  const char *p = strstr(pattern, "%p");
  char path[512];
  snprintf(path, sizeof path, "%.*s%ld%s", (int)(p - pattern), pattern,
           (long)pid, p + 2);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  size_t n = fread(report, 1, sizeof report - 1, f);
  fclose(f);
  report[n] = 0;
  remove(path);
  char want[64];
  snprintf(want, sizeof want, "pid %ld (test_report)\n", (long)pid);
  assert_non_null(strstr(report, want));
  assert_non_null(strstr(report, "no tier figures"));
  assert_non_null(strstr(report, "  rss "));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get_refuses_bad_input),
      cmocka_unit_test(test_class_live_blocks),
      cmocka_unit_test(test_get_matches_memory_info),
      cmocka_unit_test(test_collect_lowers_committed),
      cmocka_unit_test(test_header),
      cmocka_unit_test(test_report_length),
      cmocka_unit_test(test_stats_file_per_process),
      cmocka_unit_test(test_signal_report),
  };
  return cmocka_run_group_tests_name("report", tests, NULL, NULL);
}
