/* SPDX-License-Identifier: MIT */
/* test_stats.c - libhak-stats: counter names, snapshots summed over live and
 * exited threads, and the text and JSON reports, including truncation.
 *
 * The counters are bumped with the layer's own macros (HAK_STAT_SYS,
 * HAK_STAT_PATH, HAK_STAT_CLASS_*), so each assertion follows the gates of
 * the build: system-call counters in standard and observe, path and class
 * counters in observe only, nothing at all in fast.
 */
#include "hak_stats.h"

#include <ctype.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_child.h"

static const char *variant_name(void) {
  return HAK_BUILD_VARIANT == HAK_VARIANT_FAST       ? "fast"
         : HAK_BUILD_VARIANT == HAK_VARIANT_STANDARD ? "standard"
                                                     : "observe";
}

/* A snapshot with a distinct value in every field. */
static void fill_synthetic(struct hak_stats_snapshot *s) {
  memset(s, 0, sizeof *s);
  for (int i = 0; i < HAK_STAT_COUNT; i++)
    s->count[i] = 1000003ull * (uint64_t)(i + 1) + 7;
  s->count[0] = UINT64_MAX; /* the widest value */
  s->class_malloc[0] = 11;
  s->class_free[0] = 10;
  s->class_malloc[3] = 5;
  s->class_free[3] = 2;
  s->class_malloc[HAK_STATS_CLASSES - 1] = 123456789;
  s->class_free[HAK_STATS_CLASSES - 1] = 0;
  s->class_free[7] = 9; /* frees without mallocs still show */
}

/* ---- names -----------------------------------------------------------------
 */

static void test_names(void **state) {
  (void)state;
  for (int i = 0; i < HAK_STAT_COUNT; i++) {
    const char *n = hak_stats_name((enum hak_stat)i);
    assert_non_null(n);
    assert_true(strlen(n) > 0);
    assert_string_not_equal(n, "?");
    /* Usable as a JSON key and a table column without quoting. */
    for (const char *c = n; *c; c++)
      assert_true(islower((unsigned char)*c) || isdigit((unsigned char)*c) ||
                  *c == '.' || *c == '_');
    for (int j = 0; j < i; j++)
      assert_string_not_equal(n, hak_stats_name((enum hak_stat)j));
  }
  assert_string_equal(hak_stats_name(HAK_STAT_SYS_MMAP), "sys.mmap");
  assert_string_equal(hak_stats_name(HAK_STAT_SYS_MUNMAP), "sys.munmap");
  assert_string_equal(hak_stats_name(HAK_STAT_SYS_MADVISE), "sys.madvise");
  /* Out of range: a placeholder, not a crash. */
  assert_string_equal(hak_stats_name(HAK_STAT_COUNT), "?");
  assert_string_equal(hak_stats_name((enum hak_stat) - 1), "?");
  assert_string_equal(hak_stats_name((enum hak_stat)100000), "?");
}

/* ---- snapshots
 * ---------------------------------------------------------------- */

#define THREADS 4
#define PER_THREAD 10000

struct job {
  int id;
  pthread_barrier_t *counted; /* all threads have counted */
  pthread_barrier_t *release; /* main thread has looked */
  int exit_midway;            /* call hak_stats_thread_exit half way */
};

static void count_some(int id, int n) {
  (void)id; /* unused where the macros compile to nothing */
  for (int i = 0; i < n; i++) {
    HAK_STAT_SYS(SYS_MADVISE, 1);
    HAK_STAT_SYS(OS_BYTES_MAPPED, (uint64_t)id);
    HAK_STAT_PATH(TINY_MALLOC, 2);
    HAK_STAT_CLASS_MALLOC(id);
    HAK_STAT_CLASS_FREE(HAK_STATS_CLASSES - 1 - id);
  }
}

static void *counter_thread(void *arg) {
  struct job *j = arg;
  if (j->exit_midway) {
    count_some(j->id, PER_THREAD / 2);
    /* Folded into the exited totals; counting again registers anew. */
    hak_stats_thread_exit();
    count_some(j->id, PER_THREAD / 2);
  } else {
    count_some(j->id, PER_THREAD);
  }
  if (j->counted)
    pthread_barrier_wait(j->counted);
  if (j->release)
    pthread_barrier_wait(j->release);
  return NULL;
}

/* What THREADS threads with ids 1..THREADS add to each field. */
static void expected(struct hak_stats_snapshot *e, uint64_t rounds) {
  memset(e, 0, sizeof *e);
  for (int id = 1; id <= THREADS; id++) {
    if (HAK_GATE_COUNT_SYSCALLS) {
      e->count[HAK_STAT_SYS_MADVISE] += rounds;
      e->count[HAK_STAT_OS_BYTES_MAPPED] += rounds * (uint64_t)id;
    }
    if (HAK_GATE_COUNT_PATHS) {
      e->count[HAK_STAT_TINY_MALLOC] += 2 * rounds;
      e->class_malloc[id] += rounds;
      e->class_free[HAK_STATS_CLASSES - 1 - id] += rounds;
    }
  }
}

static void assert_delta(const struct hak_stats_snapshot *before,
                         const struct hak_stats_snapshot *after,
                         const struct hak_stats_snapshot *want) {
  for (int i = 0; i < HAK_STAT_COUNT; i++) {
    if (after->count[i] - before->count[i] != want->count[i])
      print_error("counter %s: %llu, expected %llu\n",
                  hak_stats_name((enum hak_stat)i),
                  (unsigned long long)(after->count[i] - before->count[i]),
                  (unsigned long long)want->count[i]);
    assert_int_equal(after->count[i] - before->count[i], want->count[i]);
  }
  for (int i = 0; i < HAK_STATS_CLASSES; i++) {
    assert_int_equal(after->class_malloc[i] - before->class_malloc[i],
                     want->class_malloc[i]);
    assert_int_equal(after->class_free[i] - before->class_free[i],
                     want->class_free[i]);
  }
}

static void run_threads(int exit_midway) {
  struct hak_stats_snapshot before, live, gone, want;
  hak_stats_snapshot(&before);
  pthread_barrier_t counted, release;
  assert_int_equal(pthread_barrier_init(&counted, NULL, THREADS + 1), 0);
  assert_int_equal(pthread_barrier_init(&release, NULL, THREADS + 1), 0);
  pthread_t t[THREADS];
  struct job jobs[THREADS];
  for (int i = 0; i < THREADS; i++) {
    jobs[i] = (struct job){i + 1, &counted, &release, exit_midway};
    assert_int_equal(pthread_create(&t[i], NULL, counter_thread, &jobs[i]), 0);
  }
  /* Every thread alive and done counting: their blocks are summed. */
  pthread_barrier_wait(&counted);
  hak_stats_snapshot(&live);
  pthread_barrier_wait(&release);
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_join(t[i], NULL), 0);
  /* Every thread gone: the same totals, from the exited sums. */
  hak_stats_snapshot(&gone);
  pthread_barrier_destroy(&counted);
  pthread_barrier_destroy(&release);

  expected(&want, PER_THREAD);
  assert_delta(&before, &live, &want);
  assert_delta(&before, &gone, &want);
}

static void test_snapshot_live_and_exited_threads(void **state) {
  (void)state;
  run_threads(0);
}

static void test_snapshot_thread_exit_then_count_again(void **state) {
  (void)state;
  run_threads(1);
}

/* Many short-lived threads, several of them at a time. */
static void *short_thread(void *arg) {
  count_some((int)(intptr_t)arg, 100);
  return NULL;
}

static void test_snapshot_many_exited_threads(void **state) {
  (void)state;
  struct hak_stats_snapshot before, after, want;
  hak_stats_snapshot(&before);
  for (int round = 0; round < 25; round++) {
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
      assert_int_equal(
          pthread_create(&t[i], NULL, short_thread, (void *)(intptr_t)(i + 1)),
          0);
    for (int i = 0; i < THREADS; i++)
      assert_int_equal(pthread_join(t[i], NULL), 0);
  }
  hak_stats_snapshot(&after);
  expected(&want, 25 * 100);
  assert_delta(&before, &after, &want);
}

/* The calling thread's own counts, and the snapshot while others count. */
static volatile int stop_counting;
static void *busy_thread(void *arg) {
  (void)arg;
  while (!__atomic_load_n(&stop_counting, __ATOMIC_RELAXED))
    HAK_STAT_SYS(SYS_MREMAP, 1);
  return NULL;
}

static void test_snapshot_own_thread_and_concurrent(void **state) {
  (void)state;
  struct hak_stats_snapshot a, b;
  hak_stats_snapshot(&a);
  for (int i = 0; i < 1000; i++)
    HAK_STAT_SYS(SYS_MUNMAP, 3);
  HAK_STAT_PATH(MID_MALLOC, 5);
  hak_stats_snapshot(&b);
  assert_int_equal(b.count[HAK_STAT_SYS_MUNMAP] - a.count[HAK_STAT_SYS_MUNMAP],
                   HAK_GATE_COUNT_SYSCALLS ? 3000 : 0);
  assert_int_equal(b.count[HAK_STAT_MID_MALLOC] - a.count[HAK_STAT_MID_MALLOC],
                   HAK_GATE_COUNT_PATHS ? 5 : 0);

  /* try_snapshot, uncontended, sees the same as snapshot. */
  struct hak_stats_snapshot c;
  memset(&c, 0xEE, sizeof c);
  assert_true(hak_stats_try_snapshot(&c));
  assert_memory_equal(&b, &c, sizeof b);

  /* Snapshots taken while another thread counts never go backwards. */
  stop_counting = 0;
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, busy_thread, NULL), 0);
  uint64_t last = 0;
  for (int i = 0; i < 2000; i++) {
    hak_stats_snapshot(&c);
    assert_true(c.count[HAK_STAT_SYS_MREMAP] >= last);
    last = c.count[HAK_STAT_SYS_MREMAP];
  }
  __atomic_store_n(&stop_counting, 1, __ATOMIC_RELAXED);
  assert_int_equal(pthread_join(t, NULL), 0);
  hak_stats_snapshot(&c);
  assert_true(c.count[HAK_STAT_SYS_MREMAP] >= last);
  if (!HAK_GATE_COUNT_SYSCALLS)
    assert_int_equal(c.count[HAK_STAT_SYS_MREMAP], 0);
}

#if !HAK_GATE_COUNT_SYSCALLS && !HAK_GATE_COUNT_PATHS
/* The fast build keeps no counters at all: every snapshot is zeros, and
 * it overwrites whatever the caller's buffer held. */
static void test_snapshot_fast_is_zero(void **state) {
  (void)state;
  count_some(1, 10);
  struct job j = {2, NULL, NULL, 0};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, counter_thread, &j), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  struct hak_stats_snapshot s, zero;
  memset(&zero, 0, sizeof zero);
  memset(&s, 0xA5, sizeof s);
  hak_stats_snapshot(&s);
  assert_memory_equal(&s, &zero, sizeof s);
  memset(&s, 0xA5, sizeof s);
  assert_true(hak_stats_try_snapshot(&s));
  assert_memory_equal(&s, &zero, sizeof s);
}
#endif

/* fork while the registry lock is held (as the fork handlers hold it): the
 * child gets a working lock, a snapshot, and new threads that count. */
static void *count_and_exit(void *arg) {
  (void)arg;
  count_some(1, 7);
  return NULL;
}

static int fork_child(void *before_fork) {
  const struct hak_stats_snapshot *before = before_fork;
  struct hak_stats_snapshot a, b, want;
  hak_stats_snapshot(&a);
  /* The parent's counts were inherited. */
  if (memcmp(&a, before, sizeof a) != 0)
    return 2;
  pthread_t t;
  if (pthread_create(&t, NULL, count_and_exit, NULL) != 0 ||
      pthread_join(t, NULL) != 0)
    return 3;
  hak_stats_snapshot(&b);
  memset(&want, 0, sizeof want);
  if (HAK_GATE_COUNT_SYSCALLS) {
    want.count[HAK_STAT_SYS_MADVISE] = 7;
    want.count[HAK_STAT_OS_BYTES_MAPPED] = 7;
  }
  if (HAK_GATE_COUNT_PATHS) {
    want.count[HAK_STAT_TINY_MALLOC] = 14;
    want.class_malloc[1] = 7;
    want.class_free[HAK_STATS_CLASSES - 2] = 7;
  }
  for (int i = 0; i < HAK_STAT_COUNT; i++)
    if (b.count[i] - a.count[i] != want.count[i])
      return 4;
  for (int i = 0; i < HAK_STATS_CLASSES; i++)
    if (b.class_malloc[i] - a.class_malloc[i] != want.class_malloc[i] ||
        b.class_free[i] - a.class_free[i] != want.class_free[i])
      return 5;
  return 0;
}

static void test_fork(void **state) {
  (void)state;
  count_some(1, 3);
  struct hak_stats_snapshot before;
  hak_stats_snapshot(&before);
  /* The alarm: a dead lock ends the child instead of hanging it. */
  const struct child_opts opts = {.alarm = 10,
                                  .prepare = hak_stats_fork_prepare,
                                  .parent = hak_stats_fork_parent,
                                  .child = hak_stats_fork_child};
  struct child_end end;
  child_run(fork_child, &before, &opts, &end);
  assert_int_equal(end.how, CHILD_EXITED);
  assert_int_equal(end.code, 0);
  /* The parent's lock was released too. */
  struct hak_stats_snapshot after;
  assert_true(hak_stats_try_snapshot(&after));
}

/* ---- a minimal JSON checker
 * --------------------------------------------------- */

/* Parses one JSON value; records top-level object members (key -> text of
 * the value) so that the test can look them up. */
struct member {
  char key[64];
  const char *value;
  size_t value_len;
};
struct json {
  const char *p;
  int depth;
  struct member members[256];
  int n_members;
};

static void ws(struct json *j) {
  while (*j->p == ' ' || *j->p == '\n' || *j->p == '\t' || *j->p == '\r')
    j->p++;
}

static int value(struct json *j);

static int string(struct json *j, char *out, size_t out_n) {
  if (*j->p != '"')
    return 0;
  j->p++;
  size_t n = 0;
  while (*j->p != '"') {
    unsigned char c = (unsigned char)*j->p;
    if (c == 0 || c < 0x20)
      return 0;
    if (c == '\\') { /* escapes are valid JSON but unexpected here */
      j->p++;
      if (!strchr("\"\\/bfnrtu", *j->p))
        return 0;
    }
    if (out && n + 1 < out_n)
      out[n++] = (char)c;
    j->p++;
  }
  if (out)
    out[n] = 0;
  j->p++;
  return 1;
}

static int number(struct json *j) {
  const char *s = j->p;
  if (*j->p == '-')
    j->p++;
  if (*j->p == '0')
    j->p++;
  else if (*j->p >= '1' && *j->p <= '9')
    while (isdigit((unsigned char)*j->p))
      j->p++;
  else
    return 0;
  if (*j->p == '.') {
    j->p++;
    if (!isdigit((unsigned char)*j->p))
      return 0;
    while (isdigit((unsigned char)*j->p))
      j->p++;
  }
  return j->p > s;
}

static int object(struct json *j) {
  int top = j->depth == 0;
  j->depth++;
  j->p++; /* '{' */
  ws(j);
  if (*j->p == '}') {
    j->p++;
    j->depth--;
    return 1;
  }
  for (;;) {
    char key[64];
    ws(j);
    if (!string(j, key, sizeof key))
      return 0;
    ws(j);
    if (*j->p != ':')
      return 0;
    j->p++;
    ws(j);
    const char *v = j->p;
    if (!value(j))
      return 0;
    if (top) {
      for (int i = 0; i < j->n_members; i++)
        if (strcmp(j->members[i].key, key) == 0)
          return 0; /* duplicate key */
      if (j->n_members == 256)
        return 0;
      struct member *m = &j->members[j->n_members++];
      snprintf(m->key, sizeof m->key, "%s", key);
      m->value = v;
      m->value_len = (size_t)(j->p - v);
    }
    ws(j);
    if (*j->p == ',') {
      j->p++;
      continue;
    }
    if (*j->p == '}') {
      j->p++;
      j->depth--;
      return 1;
    }
    return 0;
  }
}

static int array(struct json *j) {
  j->depth++;
  j->p++; /* '[' */
  ws(j);
  if (*j->p == ']') {
    j->p++;
    j->depth--;
    return 1;
  }
  for (;;) {
    ws(j);
    if (!value(j))
      return 0;
    ws(j);
    if (*j->p == ',') {
      j->p++;
      continue;
    }
    if (*j->p == ']') {
      j->p++;
      j->depth--;
      return 1;
    }
    return 0;
  }
}

static int value(struct json *j) {
  ws(j);
  switch (*j->p) {
  case '{':
    return object(j);
  case '[':
    return array(j);
  case '"':
    return string(j, NULL, 0);
  case 't':
    return strncmp(j->p, "true", 4) == 0 ? (j->p += 4, 1) : 0;
  case 'f':
    return strncmp(j->p, "false", 5) == 0 ? (j->p += 5, 1) : 0;
  case 'n':
    return strncmp(j->p, "null", 4) == 0 ? (j->p += 4, 1) : 0;
  default:
    return number(j);
  }
}

/* The whole text is exactly one object (plus trailing white space). */
static void parse_one_object(struct json *j, const char *text) {
  memset(j, 0, sizeof *j);
  j->p = text;
  ws(j);
  assert_int_equal(*j->p, '{');
  assert_true(value(j));
  assert_int_equal(j->depth, 0);
  ws(j);
  assert_int_equal(*j->p, 0);
}

static const struct member *member(const struct json *j, const char *key) {
  for (int i = 0; i < j->n_members; i++)
    if (strcmp(j->members[i].key, key) == 0)
      return &j->members[i];
  return NULL;
}

static unsigned long long member_u64(const struct json *j, const char *key) {
  const struct member *m = member(j, key);
  if (!m)
    print_error("JSON member %s missing\n", key);
  assert_non_null(m);
  char buf[32];
  assert_true(m->value_len > 0 && m->value_len < sizeof buf);
  memcpy(buf, m->value, m->value_len);
  buf[m->value_len] = 0;
  for (size_t i = 0; i < m->value_len; i++)
    assert_true(isdigit((unsigned char)buf[i]));
  return strtoull(buf, NULL, 10);
}

/* The elements of an array member, as numbers. */
static int member_array(const struct json *j, const char *key,
                        unsigned long long *out, int max) {
  const struct member *m = member(j, key);
  assert_non_null(m);
  assert_int_equal(m->value[0], '[');
  const char *p = m->value + 1;
  int n = 0;
  while (*p != ']') {
    char *end;
    assert_true(n < max);
    out[n++] = strtoull(p, &end, 10);
    assert_true(end > p);
    p = end;
    if (*p == ',')
      p++;
  }
  return n;
}

/* Self-test of the checker: it must reject what is not one object. */
static void test_json_checker_rejects(void **state) {
  (void)state;
  static const char *const bad[] = {
      "{\"a\":1",          "{\"a\":1}}",   "{\"a\":1,}",        "{\"a\" 1}",
      "{\"a\":1 \"b\":2}", "{\"a\":[1,2}", "{\"a\":01}",        "{a:1}",
      "{\"a\":1}{}",       "[1]",          "{\"a\":1,\"a\":2}", "",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    struct json j;
    memset(&j, 0, sizeof j);
    j.p = bad[i];
    ws(&j);
    int ok = *j.p == '{' && value(&j) && j.depth == 0;
    if (ok) {
      ws(&j);
      ok = *j.p == 0;
    }
    if (ok)
      print_error("checker accepted: %s\n", bad[i]);
    assert_false(ok);
  }
  struct json j;
  parse_one_object(&j, " {\"a\":1,\"b\":[1,2,{\"c\":\"d\"}],\"e\":{}}\n");
  assert_int_equal(j.n_members, 3);
  assert_int_equal(member_u64(&j, "a"), 1);
}

/* ---- formatting
 * ---------------------------------------------------------------- */

static char big[1 << 16];

static void test_format_json(void **state) {
  (void)state;
  struct hak_stats_snapshot s;
  fill_synthetic(&s);
  hak_stats_set_rss(123456789, 987654321);
  size_t n = hak_stats_format(&s, 1, big, sizeof big);
  assert_true(n > 0 && n < sizeof big - 1);
  assert_int_equal(n, strlen(big));

  struct json j;
  parse_one_object(&j, big);
  const struct member *v = member(&j, "variant");
  assert_non_null(v);
  char want[32];
  snprintf(want, sizeof want, "\"%s\"", variant_name());
  assert_int_equal(v->value_len, strlen(want));
  assert_memory_equal(v->value, want, v->value_len);
  for (int i = 0; i < HAK_STAT_COUNT; i++)
    assert_int_equal(member_u64(&j, hak_stats_name((enum hak_stat)i)),
                     s.count[i]);
  assert_int_equal(member_u64(&j, "rss.current"), 123456789);
  assert_int_equal(member_u64(&j, "rss.peak"), 987654321);
  unsigned long long a[HAK_STATS_CLASSES + 1];
  assert_int_equal(member_array(&j, "class_malloc", a, HAK_STATS_CLASSES + 1),
                   HAK_STATS_CLASSES);
  for (int i = 0; i < HAK_STATS_CLASSES; i++)
    assert_int_equal(a[i], s.class_malloc[i]);
  assert_int_equal(member_array(&j, "class_free", a, HAK_STATS_CLASSES + 1),
                   HAK_STATS_CLASSES);
  for (int i = 0; i < HAK_STATS_CLASSES; i++)
    assert_int_equal(a[i], s.class_free[i]);
  /* Nothing but these members. */
  assert_int_equal(j.n_members, 1 + HAK_STAT_COUNT + 2 + 2);

  /* A peak read below the current size (the kernel's high-water mark lags)
   * is reported as the current size: the peak is never the smaller. */
  hak_stats_set_rss(5000000, 4000000);
  hak_stats_format(&s, 1, big, sizeof big);
  parse_one_object(&j, big);
  assert_int_equal(member_u64(&j, "rss.current"), 5000000);
  assert_int_equal(member_u64(&j, "rss.peak"), 5000000);

  /* An all-zero snapshot is one valid object too. */
  memset(&s, 0, sizeof s);
  hak_stats_set_rss(0, 0);
  n = hak_stats_format(&s, 1, big, sizeof big);
  assert_int_equal(n, strlen(big));
  parse_one_object(&j, big);
  assert_int_equal(member_u64(&j, hak_stats_name(HAK_STAT_SYS_MMAP)), 0);

  /* A real snapshot, whatever the build counted. */
  hak_stats_snapshot(&s);
  n = hak_stats_format(&s, 1, big, sizeof big);
  parse_one_object(&j, big);
  assert_int_equal(member_u64(&j, "sys.mmap"), s.count[HAK_STAT_SYS_MMAP]);
}

/* Finds the table line of a counter and returns its value. */
static int text_value(const char *text, const char *name,
                      unsigned long long *value) {
  size_t len = strlen(name);
  for (const char *line = text; *line;) {
    const char *end = strchr(line, '\n');
    assert_non_null(end); /* every line ends with a newline */
    const char *p = line;
    while (*p == ' ')
      p++;
    if (strncmp(p, name, len) == 0 && p[len] == ' ') {
      char *num_end;
      *value = strtoull(p + len, &num_end, 10);
      assert_ptr_equal(num_end, end); /* the number ends the line */
      return 1;
    }
    line = end + 1;
  }
  return 0;
}

static void test_format_text(void **state) {
  (void)state;
  struct hak_stats_snapshot s;
  fill_synthetic(&s);
  hak_stats_set_rss(4096, 8192);
  /* The block sizes come from the tier that owns the classes. */
  static uint32_t sizes[HAK_STATS_CLASSES];
  for (int i = 0; i < HAK_STATS_CLASSES; i++)
    sizes[i] = 100u * (unsigned)(i + 1) + 7;
  hak_stats_set_class_sizes(sizes, HAK_STATS_CLASSES);
  size_t n = hak_stats_format(&s, 0, big, sizeof big);
  assert_true(n > 0 && n < sizeof big - 1);
  assert_int_equal(n, strlen(big));
  assert_int_equal(big[n - 1], '\n');

  char title[64];
  snprintf(title, sizeof title, "hakmem statistics (%s build)\n",
           variant_name());
  assert_memory_equal(big, title, strlen(title));
  for (int i = 0; i < HAK_STAT_COUNT; i++) {
    unsigned long long v;
    assert_true(text_value(big, hak_stats_name((enum hak_stat)i), &v));
    assert_int_equal(v, s.count[i]);
  }
  unsigned long long v;
  assert_true(text_value(big, "rss.current", &v));
  assert_int_equal(v, 4096);
  assert_true(text_value(big, "rss.peak", &v));
  assert_int_equal(v, 8192);

  /* The class table: one line per class used: class, block size,
   * mallocs, frees. */
  static const struct {
    int cls;
    unsigned long long m, f;
  } rows[] = {
      {0, 11, 10}, {3, 5, 2}, {7, 0, 9}, {HAK_STATS_CLASSES - 1, 123456789, 0}};
  for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) {
    char line[128];
    int found = 0;
    for (const char *p = big; *p && !found; p = strchr(p, '\n') + 1) {
      unsigned long long c, bs, m, f;
      int used = 0;
      if (sscanf(p, " %llu %llu %llu %llu%n", &c, &bs, &m, &f, &used) == 4 &&
          p[used] == '\n' && c == (unsigned long long)rows[r].cls) {
        assert_int_equal(bs, sizes[c]);
        assert_int_equal(m, rows[r].m);
        assert_int_equal(f, rows[r].f);
        found = 1;
      }
    }
    snprintf(line, sizeof line, "class %d row", rows[r].cls);
    if (!found)
      print_error("%s missing in:\n%s", line, big);
    assert_true(found);
  }
  /* No row for an unused class. */
  for (const char *p = big; *p; p = strchr(p, '\n') + 1) {
    unsigned long long c, bs, m, f;
    if (sscanf(p, " %llu %llu %llu %llu", &c, &bs, &m, &f) == 4)
      assert_true(c == 0 || c == 3 || c == 7 || c == HAK_STATS_CLASSES - 1);
  }

  /* Without class counts, no class table. */
  memset(s.class_malloc, 0, sizeof s.class_malloc);
  memset(s.class_free, 0, sizeof s.class_free);
  n = hak_stats_format(&s, 0, big, sizeof big);
  assert_null(strstr(big, "class"));
  assert_int_equal(n, strlen(big));
}

/* Every buffer size from 0 up past the full length: no byte written past
 * n, always NUL-terminated, the full length returned (as snprintf does), and
 * the longest prefix that fits for text, nothing for JSON that does not fit
 * whole (a cut object would not parse). */
static void check_truncation(int json) {
  static char full[1 << 16];
  static char buf[1 << 16];
  struct hak_stats_snapshot s;
  fill_synthetic(&s);
  hak_stats_set_rss(UINT64_MAX, UINT64_MAX);
  size_t len = hak_stats_format(&s, json, full, sizeof full);
  assert_int_equal(len, strlen(full));
  assert_true(len + 64 < sizeof buf);
  const size_t guard = 32;
  for (size_t n = 0; n <= len + 2; n += (n < 300 || n + 300 > len) ? 1 : 7) {
    memset(buf, 0xA5, n + guard);
    size_t r = hak_stats_format(&s, json, buf, n);
    for (size_t i = n; i < n + guard; i++)
      if ((unsigned char)buf[i] != 0xA5) {
        print_error("n = %zu: byte %zu written past the buffer\n", n, i);
        fail();
      }
    assert_int_equal(r, len);
    if (n == 0)
      continue;
    size_t want = len < n - 1 ? len : n - 1;
    if (json && len >= n)
      want = 0;
    assert_int_equal(buf[want], 0);
    assert_int_equal(strlen(buf), want);
    assert_memory_equal(buf, full, want);
  }
}

static void test_format_truncation_text(void **state) {
  (void)state;
  check_truncation(0);
}

static void test_format_truncation_json(void **state) {
  (void)state;
  check_truncation(1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_names),
    cmocka_unit_test(test_snapshot_live_and_exited_threads),
    cmocka_unit_test(test_snapshot_thread_exit_then_count_again),
    cmocka_unit_test(test_snapshot_many_exited_threads),
    cmocka_unit_test(test_snapshot_own_thread_and_concurrent),
#if !HAK_GATE_COUNT_SYSCALLS && !HAK_GATE_COUNT_PATHS
    cmocka_unit_test(test_snapshot_fast_is_zero),
#endif
    cmocka_unit_test(test_fork),
    cmocka_unit_test(test_json_checker_rejects),
    cmocka_unit_test(test_format_json),
    cmocka_unit_test(test_format_text),
    cmocka_unit_test(test_format_truncation_text),
    cmocka_unit_test(test_format_truncation_json),
  };
  return cmocka_run_group_tests_name("stats", tests, NULL, NULL);
}
