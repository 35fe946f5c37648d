/* SPDX-License-Identifier: MIT */
/* stats.c - per-thread counters, summed on report.
 *
 * Each thread counts into its own TLS block with plain increments; a block is
 * linked into a registry the first time its thread counts, and folded into
 * the totals of exited threads when the thread ends.  A report sums the
 * totals and the live blocks; reading a live block races benignly with its
 * owner (a counter may be one behind), which is what a report can accept.
 */
#include "hak_stats.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#if HAK_GATE_COUNT_SYSCALLS || HAK_GATE_COUNT_PATHS
__thread struct hak_stats_thread hak_stats_tls
    __attribute__((tls_model("initial-exec")));

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hak_stats_thread *registry;
static struct hak_stats_snapshot exited; /* counters of ended threads */
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

static void on_thread_exit(void *arg) {
  (void)arg;
  hak_stats_thread_exit();
}

static void make_exit_key(void) {
  pthread_key_create(&exit_key, on_thread_exit);
}

/* Counts made on threads whose exit hook already ran (atomic adds: several
 * exiting threads may count at once). */
static struct hak_stats_thread late = {.registered = HAK_STATS_SHARED};

struct hak_stats_thread *hak_stats_register_thread(void) {
  struct hak_stats_thread *t = &hak_stats_tls;
  if (t->registered < 0)
    return &late;
  /* Mark first: pthread_setspecific may allocate, and the allocation counts. */
  t->registered = 1;
  pthread_mutex_lock(&registry_lock);
  t->next = registry;
  registry = t;
  pthread_mutex_unlock(&registry_lock);
  pthread_once(&exit_key_once, make_exit_key);
  pthread_setspecific(exit_key, t);
  return t;
}

static void add_block(struct hak_stats_snapshot *s,
                      const struct hak_stats_thread *t) {
  for (int i = 0; i < HAK_STAT_COUNT; i++)
    s->count[i] += __atomic_load_n(&t->count[i], __ATOMIC_RELAXED);
  for (int i = 0; i < HAK_STATS_CLASSES; i++) {
    s->class_malloc[i] +=
        __atomic_load_n(&t->class_malloc[i], __ATOMIC_RELAXED);
    s->class_free[i] += __atomic_load_n(&t->class_free[i], __ATOMIC_RELAXED);
  }
}

void hak_stats_thread_exit(void) {
  struct hak_stats_thread *t = &hak_stats_tls;
  if (t->registered != 1)
    return;
  pthread_mutex_lock(&registry_lock);
  for (struct hak_stats_thread **p = &registry; *p; p = &(*p)->next) {
    if (*p == t) {
      *p = t->next;
      break;
    }
  }
  add_block(&exited, t);
  memset(t, 0, sizeof *t);
  /* Never registered again: a count made after this hook could link the
   * block back in with no hook left to unlink it, and the registry would
   * then point into a dead thread's TLS.  glibc does exactly that: at the
   * very end of a detached thread, after every destructor round, it frees
   * cached stacks' DTVs with free() (found with Python's test_threading
   * under the observe build).  Later counts go to `late`. */
  t->registered = -1;
  pthread_mutex_unlock(&registry_lock);
}

static void sum_locked(struct hak_stats_snapshot *out) {
  *out = exited;
  add_block(out, &late);
  for (struct hak_stats_thread *t = registry; t; t = t->next)
    add_block(out, t);
  pthread_mutex_unlock(&registry_lock);
}

void hak_stats_snapshot(struct hak_stats_snapshot *out) {
  pthread_mutex_lock(&registry_lock);
  sum_locked(out);
}

bool hak_stats_try_snapshot(struct hak_stats_snapshot *out) {
  if (pthread_mutex_trylock(&registry_lock) != 0)
    return false;
  sum_locked(out);
  return true;
}
void hak_stats_fork_prepare(void) { pthread_mutex_lock(&registry_lock); }
void hak_stats_fork_parent(void) { pthread_mutex_unlock(&registry_lock); }
void hak_stats_fork_child(void) { pthread_mutex_unlock(&registry_lock); }
#else
void hak_stats_fork_prepare(void) {}
void hak_stats_fork_parent(void) {}
void hak_stats_fork_child(void) {}
void hak_stats_snapshot(struct hak_stats_snapshot *out) {
  memset(out, 0, sizeof *out);
}
bool hak_stats_try_snapshot(struct hak_stats_snapshot *out) {
  memset(out, 0, sizeof *out);
  return true;
}
void hak_stats_thread_exit(void) {}
#endif

static uint64_t rss_current, rss_peak;
static const uint32_t *class_sizes;
static unsigned class_count;

void hak_stats_set_class_sizes(const uint32_t *sizes, unsigned n) {
  class_sizes = sizes;
  class_count = n;
}

void hak_stats_set_rss(uint64_t current_bytes, uint64_t peak_bytes) {
  rss_current = current_bytes;
  /* The kernel updates its high-water mark lazily (VmHWM lags VmRSS by up
   * to a scheduler tick's page faults), so a peak read just after the
   * current size can be the smaller: the peak is at least what is there. */
  rss_peak = peak_bytes > current_bytes ? peak_bytes : current_bytes;
}

static const char *const names[HAK_STAT_COUNT] = {
#define HAK_STAT_NAME(id, name) name,
    HAK_STAT_LIST(HAK_STAT_NAME)
#undef HAK_STAT_NAME
};

const char *hak_stats_name(enum hak_stat id) {
  return (unsigned)id < HAK_STAT_COUNT ? names[id] : "?";
}

/* Appends to buf without overflowing, and counts what the whole report
 * needs; snprintf does not allocate for these integer formats. */
struct out {
  char *buf;
  size_t n, len, need;
};

static void put(struct out *o, const char *fmt, unsigned long long a,
                const char *s) {
  size_t room = o->len < o->n ? o->n - o->len : 0;
  int w = s ? snprintf(o->buf + o->len, room, fmt, s, a)
            : snprintf(o->buf + o->len, room, fmt, a);
  if (w > 0) {
    o->len += (size_t)w < room ? (size_t)w : (room ? room - 1 : 0);
    o->need += (size_t)w;
  }
}

size_t hak_stats_format(const struct hak_stats_snapshot *s, int json, char *buf,
                        size_t n) {
  struct out o = {buf, n, 0, 0};
  if (n)
    buf[0] = 0;
  const char *variant = HAK_BUILD_VARIANT == HAK_VARIANT_FAST       ? "fast"
                        : HAK_BUILD_VARIANT == HAK_VARIANT_STANDARD ? "standard"
                                                                    : "observe";
  if (json) {
    put(&o, "{\"variant\":\"%s\"", 0, variant);
    for (int i = 0; i < HAK_STAT_COUNT; i++)
      put(&o, ",\"%s\":%llu", s->count[i], names[i]);
    put(&o, ",\"rss.current\":%llu", rss_current, NULL);
    put(&o, ",\"rss.peak\":%llu", rss_peak, NULL);
    put(&o, ",\"class_malloc\":[", 0, NULL);
    for (int i = 0; i < HAK_STATS_CLASSES; i++)
      put(&o, i ? ",%llu" : "%llu", s->class_malloc[i], NULL);
    put(&o, "],\"class_free\":[", 0, NULL);
    for (int i = 0; i < HAK_STATS_CLASSES; i++)
      put(&o, i ? ",%llu" : "%llu", s->class_free[i], NULL);
    put(&o, "]}\n", 0, NULL);
  } else {
    put(&o, "hakmem statistics (%s build)\n", 0, variant);
    for (int i = 0; i < HAK_STAT_COUNT; i++)
      put(&o, "  %-26s %20llu\n", s->count[i], names[i]);
    put(&o, "  %-26s %20llu\n", rss_current, "rss.current");
    put(&o, "  %-26s %20llu\n", rss_peak, "rss.peak");
    int any = 0;
    for (int i = 0; i < HAK_STATS_CLASSES; i++)
      any |= s->class_malloc[i] != 0;
    if (any) {
      put(&o, "  %s\n", 0, "class  block     mallocs       frees");
      for (int i = 0; i < HAK_STATS_CLASSES; i++) {
        if (!s->class_malloc[i] && !s->class_free[i])
          continue;
        put(&o, "  %5llu", (unsigned long long)i, NULL);
        put(&o, " %6llu",
            (unsigned long long)((unsigned)i < class_count ? class_sizes[i]
                                                           : 0),
            NULL);
        put(&o, " %11llu", s->class_malloc[i], NULL);
        put(&o, " %11llu\n", s->class_free[i], NULL);
      }
    }
  }
  /* A cut JSON object would not parse: the caller gets none, and the size
   * to ask again with, as from a cut text. */
  if (json && o.need >= n && n)
    buf[0] = 0;
  return o.need;
}
