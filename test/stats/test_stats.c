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

/* Memory figures with a distinct value in every field: tiny classes 0, 3
 * and 47 and mid class 2 hold blocks. */
static struct hak_stats_memory mem;
static void fill_memory(struct hak_stats_memory *m) {
  memset(m, 0, sizeof *m);
  for (int t = 0; t < HAK_STATS_TIERS; t++) {
    struct hak_stats_mem_tier *r = &m->tier[t];
    r->live_blocks = 100 + t;
    r->live_bytes = 1000 + t;
    r->free_blocks = 200 + t;
    r->free_bytes = 2000 + t;
    r->cached_bytes = 3000 + t;
    r->mapped = ((size_t)4 << 20) * (size_t)(t + 1);
    r->committed = ((size_t)3 << 20) + (size_t)t;
    r->committed_peak = ((size_t)5 << 30) + (size_t)t;
    r->classes = t == 0 ? 48 : t == 1 ? 32 : 0;
    for (size_t i = 0; i < r->classes; i++)
      r->class_[i].block_size = 16 * (i + 1) + 1000 * (size_t)t;
  }
  m->tier[0].class_[0].live_blocks = 7;
  m->tier[0].class_[3].live_blocks = 100;
  m->tier[0].class_[3].free_blocks = 28;
  m->tier[0].class_[47].free_blocks = 5;
  m->tier[1].class_[2].live_blocks = 9;
  m->os.mapped = 123 << 20;
  m->os.mapped_peak = 456 << 20;
  m->os.committed = 77777;
  m->os.cached_bytes = 8888;
  m->os.rss = 123456789;
  m->os.rss_peak = 987654321;
}

static struct hak_stats_header header(bool gathered) {
  return (struct hak_stats_header){.version = 204,
                                   .pid = 4242,
                                   .program = "pro\"g\\x",
                                   .gathered = gathered};
}

/* The value of member key of j, parsed as one object into sub (its text
 * copied to store, which must outlive sub). */
static void sub_object(const struct json *j, const char *key, struct json *sub,
                       char *store, size_t n) {
  const struct member *m = member(j, key);
  if (!m)
    print_error("JSON member %s missing\n", key);
  assert_non_null(m);
  assert_true(m->value_len < n);
  memcpy(store, m->value, m->value_len);
  store[m->value_len] = 0;
  parse_one_object(sub, store);
}

static void assert_string_member(const struct json *j, const char *key,
                                 const char *want_json) {
  const struct member *m = member(j, key);
  assert_non_null(m);
  assert_int_equal(m->value_len, strlen(want_json));
  assert_memory_equal(m->value, want_json, m->value_len);
}

static void check_counters(const struct json *root,
                           const struct hak_stats_snapshot *s) {
  static char store[8192];
  struct json c;
  sub_object(root, "counters", &c, store, sizeof store);
  int kept = 0;
  for (int i = 0; i < HAK_STAT_COUNT; i++) {
    const char *name = hak_stats_name((enum hak_stat)i);
    if (hak_stats_collected((enum hak_stat)i)) {
      assert_int_equal(member_u64(&c, name), s->count[i]);
      kept++;
    } else {
      /* Not collected: left out, not a 0 that would say nothing happened. */
      assert_null(member(&c, name));
    }
  }
  assert_int_equal(c.n_members, kept);
  assert_int_equal(hak_stats_collected(HAK_STAT_SYS_MMAP),
                   HAK_GATE_COUNT_SYSCALLS);
  assert_int_equal(hak_stats_collected(HAK_STAT_TINY_MALLOC),
                   HAK_GATE_COUNT_PATHS);
}

static void test_format_json(void **state) {
  (void)state;
  struct hak_stats_snapshot s;
  fill_synthetic(&s);
  fill_memory(&mem);
  struct hak_stats_header h = header(true);
  size_t n = hak_stats_format(&h, &s, &mem, 1, big, sizeof big);
  assert_true(n > 0 && n < sizeof big - 1);
  assert_int_equal(n, strlen(big));

  struct json j;
  parse_one_object(&j, big);
  assert_int_equal(j.n_members, 4);
  static char hs[1024], ts[16384], tt[8192], os_[1024];
  struct json hj, tj, tiny, oj;
  sub_object(&j, "header", &hj, hs, sizeof hs);
  assert_string_member(&hj, "version", "\"0.2.4\"");
  char want[32];
  snprintf(want, sizeof want, "\"%s\"", variant_name());
  assert_string_member(&hj, "variant", want);
  assert_int_equal(member_u64(&hj, "pid"), 4242);
  /* The program name escaped: the object still parses. */
  assert_string_member(&hj, "program", "\"pro\\\"g\\\\x\"");

  sub_object(&j, "tiers", &tj, ts, sizeof ts);
  assert_int_equal(tj.n_members, 3);
  static const char *const tiers[] = {"tiny", "mid", "large"};
  for (int t = 0; t < 3; t++) {
    sub_object(&tj, tiers[t], &tiny, tt, sizeof tt);
    const struct hak_stats_mem_tier *r = &mem.tier[t];
    assert_int_equal(member_u64(&tiny, "live_blocks"), r->live_blocks);
    assert_int_equal(member_u64(&tiny, "live_bytes"), r->live_bytes);
    assert_int_equal(member_u64(&tiny, "free_blocks"), r->free_blocks);
    assert_int_equal(member_u64(&tiny, "free_bytes"), r->free_bytes);
    assert_int_equal(member_u64(&tiny, "cached_bytes"), r->cached_bytes);
    assert_int_equal(member_u64(&tiny, "mapped"), r->mapped);
    assert_int_equal(member_u64(&tiny, "committed"), r->committed);
    assert_int_equal(member_u64(&tiny, "committed_peak"), r->committed_peak);
    assert_int_equal(member(&tiny, "classes") != NULL, t != 2);
  }
  /* Each class that holds a block has an entry with its block size. */
  sub_object(&tj, "tiny", &tiny, tt, sizeof tt);
  const struct member *cl = member(&tiny, "classes");
  char entry[256];
  snprintf(entry, sizeof entry,
           "{\"class\":3,\"block_size\":64,\"live_blocks\":100,"
           "\"live_bytes\":6400,\"free_blocks\":28,\"free_bytes\":1792");
  assert_non_null(strstr(cl->value, entry));
  assert_non_null(strstr(cl->value, "{\"class\":47,\"block_size\":768,"));
  assert_true(strstr(cl->value, "{\"class\":0,\"block_size\":16,") ==
              cl->value + 1);
  /* Empty classes are left out (unless the observe build counted them). */
  if (!HAK_GATE_COUNT_PATHS)
    assert_null(strstr(cl->value, "\"class\":1,"));
  else
    assert_non_null(strstr(cl->value, "\"class\":7,\"block_size\":128,"));
  sub_object(&tj, "mid", &tiny, tt, sizeof tt);
  cl = member(&tiny, "classes");
  assert_non_null(strstr(cl->value, "{\"class\":2,\"block_size\":1048,"
                                    "\"live_blocks\":9,\"live_bytes\":9432,"));

  sub_object(&j, "os", &oj, os_, sizeof os_);
  assert_int_equal(member_u64(&oj, "mapped"), 123 << 20);
  assert_int_equal(member_u64(&oj, "mapped_peak"), 456 << 20);
  assert_int_equal(member_u64(&oj, "committed"), 77777);
  assert_int_equal(member_u64(&oj, "cached_bytes"), 8888);
  assert_int_equal(member_u64(&oj, "rss"), 123456789);
  assert_int_equal(member_u64(&oj, "rss_peak"), 987654321);
  check_counters(&j, &s);

  /* Control bytes and bytes above ASCII in the name are escaped. */
  struct hak_stats_header odd = h;
  odd.program = "x\001\377y";
  hak_stats_format(&odd, &s, &mem, 1, big, sizeof big);
  parse_one_object(&j, big);
  sub_object(&j, "header", &hj, hs, sizeof hs);
  assert_string_member(&hj, "program", "\"x\\u0001\\u00ffy\"");

  /* A peak read below the current size (the kernel's high-water mark lags)
   * is reported as the current size: the peak is never the smaller. */
  mem.os.rss = 5000000;
  mem.os.rss_peak = 4000000;
  hak_stats_format(&h, &s, &mem, 1, big, sizeof big);
  parse_one_object(&j, big);
  sub_object(&j, "os", &oj, os_, sizeof os_);
  assert_int_equal(member_u64(&oj, "rss"), 5000000);
  assert_int_equal(member_u64(&oj, "rss_peak"), 5000000);

  /* From a signal handler: no tiers, the os part holds the resident set. */
  h = header(false);
  hak_stats_format(&h, &s, &mem, 1, big, sizeof big);
  parse_one_object(&j, big);
  assert_int_equal(j.n_members, 3);
  assert_null(member(&j, "tiers"));
  sub_object(&j, "os", &oj, os_, sizeof os_);
  assert_int_equal(oj.n_members, 2);
  assert_int_equal(member_u64(&oj, "rss"), 5000000);

  /* All zero, no program name: one valid object too. */
  memset(&s, 0, sizeof s);
  memset(&mem, 0, sizeof mem);
  h = (struct hak_stats_header){0};
  n = hak_stats_format(&h, &s, &mem, 1, big, sizeof big);
  assert_int_equal(n, strlen(big));
  parse_one_object(&j, big);
  check_counters(&j, &s);

  /* A real snapshot, whatever the build counted. */
  hak_stats_snapshot(&s);
  h = header(true);
  n = hak_stats_format(&h, &s, &mem, 1, big, sizeof big);
  parse_one_object(&j, big);
  check_counters(&j, &s);
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
  fill_memory(&mem);
  mem.os.rss = 4096;
  mem.os.rss_peak = 3 << 20;
  struct hak_stats_header h = header(true);
  size_t n = hak_stats_format(&h, &s, &mem, 0, big, sizeof big);
  assert_true(n > 0 && n < sizeof big - 1);
  assert_int_equal(n, strlen(big));
  assert_int_equal(big[n - 1], '\n');

  char title[128];
  snprintf(title, sizeof title,
           "hakmem 0.2.4 statistics (%s build), pid 4242 (pro\"g\\x)\n",
           variant_name());
  assert_memory_equal(big, title, strlen(title));
  for (int i = 0; i < HAK_STAT_COUNT; i++) {
    unsigned long long v;
    int found = text_value(big, hak_stats_name((enum hak_stat)i), &v);
    assert_int_equal(found, hak_stats_collected((enum hak_stat)i));
    if (found)
      assert_int_equal(v, s.count[i]);
  }
  /* Human units. */
  assert_non_null(strstr(big, "rss                     4.0 KiB  (peak    3.0 MiB)\n"));
  assert_non_null(strstr(big, "\n  tiny            100     1000 B          200"));
  assert_non_null(strstr(big, "    5.0 GiB\n"));

  /* The class tables: one line per class that holds a block: class, block
   * size, live blocks and bytes, free blocks and bytes (and in observe,
   * mallocs and frees). */
  assert_non_null(strstr(big, "  tiny classes:\n"));
  assert_non_null(strstr(big, "  mid classes:\n"));
  assert_non_null(strstr(big, "\n      3      64          100    6.2 KiB           28    1.8 KiB"));
  assert_non_null(strstr(big, "\n      2    1048            9    9.2 KiB            0        0 B"));

  /* From a signal handler: a line says why the tiers are missing. */
  h = header(false);
  n = hak_stats_format(&h, &s, &mem, 0, big, sizeof big);
  assert_int_equal(n, strlen(big));
  assert_null(strstr(big, "classes:"));
  assert_non_null(strstr(big, "no tier figures"));
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
  fill_memory(&mem);
  mem.os.rss = mem.os.rss_peak = SIZE_MAX;
  struct hak_stats_header h = header(true);
  size_t len = hak_stats_format(&h, &s, &mem, json, full, sizeof full);
  assert_int_equal(len, strlen(full));
  assert_true(len + 64 < sizeof buf);
  const size_t guard = 32;
  for (size_t n = 0; n <= len + 2; n += (n < 300 || n + 300 > len) ? 1 : 7) {
    memset(buf, 0xA5, n + guard);
    size_t r = hak_stats_format(&h, &s, &mem, json, buf, n);
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
