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
#include <stdarg.h>
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

static const char *const names[HAK_STAT_COUNT] = {
#define HAK_STAT_NAME(id, name) name,
    HAK_STAT_LIST(HAK_STAT_NAME)
#undef HAK_STAT_NAME
};

const char *hak_stats_name(enum hak_stat id) {
  return (unsigned)id < HAK_STAT_COUNT ? names[id] : "?";
}

/* Appends to buf without overflowing, and counts what the whole report
 * needs; vsnprintf does not allocate for these formats. */
struct out {
  char *buf;
  size_t n, len, need;
};

static void put(struct out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...) {
  size_t room = o->len < o->n ? o->n - o->len : 0;
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
  va_end(ap);
  if (w > 0) {
    o->len += (size_t)w < room ? (size_t)w : (room ? room - 1 : 0);
    o->need += (size_t)w;
  }
}

/* Bytes in the text form: B below 1 KiB, else KiB, MiB or GiB with one
 * decimal, right-aligned in 10 columns. */
static void put_bytes(struct out *o, size_t v) {
  static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB"};
  if (v < 1024) {
    put(o, " %8zu B", v);
    return;
  }
  double x = (double)v / 1024;
  unsigned u = 0;
  while (x >= 1024 && u < 3) {
    x /= 1024;
    u++;
  }
  put(o, " %6.1f %s", x, unit[u]);
}

static const char *const tier_names[HAK_STATS_TIERS] = {"tiny", "mid", "large"};

static const char *variant_name(void) {
  return HAK_BUILD_VARIANT == HAK_VARIANT_FAST       ? "fast"
         : HAK_BUILD_VARIANT == HAK_VARIANT_STANDARD ? "standard"
                                                     : "observe";
}

/* A class appears when it holds a block or was used. */
static bool class_shown(const struct hak_stats_mem_class *c,
                        const struct hak_stats_snapshot *s, int tier,
                        size_t i) {
  bool counted = tier == HAK_STATS_TIER_TINY && HAK_GATE_COUNT_PATHS &&
                 i < HAK_STATS_CLASSES &&
                 (s->class_malloc[i] || s->class_free[i]);
  return c->live_blocks || c->free_blocks || counted;
}

/* The peak resident size is never below the current one: the kernel
 * updates its high-water mark lazily (VmHWM lags VmRSS by up to a
 * scheduler tick's page faults), so a peak read just after the current
 * size can be the smaller. */
static size_t rss_peak_of(const struct hak_stats_memory *m) {
  return m->os.rss_peak > m->os.rss ? m->os.rss_peak : m->os.rss;
}

static void json_report(struct out *o, const struct hak_stats_header *h,
                        const struct hak_stats_snapshot *s,
                        const struct hak_stats_memory *m) {
  put(o, "{\"header\":{\"version\":\"%d.%d.%d\",\"variant\":\"%s\",\"pid\":%ld",
      h->version / 10000, h->version / 100 % 100, h->version % 100,
      variant_name(), h->pid);
  /* A program name is a file name: quotes, backslashes, control
   * characters and bytes above ASCII (which need not be UTF-8) are escaped
   * so that the object always parses. */
  put(o, ",\"program\":\"");
  for (const char *c = h->program ? h->program : ""; *c; c++) {
    unsigned char ch = (unsigned char)*c;
    if (ch == '"' || ch == '\\')
      put(o, "\\%c", ch);
    else if (ch < 0x20 || ch >= 0x7f) /* bytes, maybe not UTF-8: escaped */
      put(o, "\\u%04x", ch);
    else
      put(o, "%c", ch);
  }
  put(o, "\"}");
  if (h->gathered) {
    put(o, ",\"tiers\":{");
    for (int t = 0; t < HAK_STATS_TIERS; t++) {
      const struct hak_stats_mem_tier *r = &m->tier[t];
      put(o,
          "%s\"%s\":{\"live_blocks\":%zu,\"live_bytes\":%zu,"
          "\"free_blocks\":%zu,\"free_bytes\":%zu,\"cached_bytes\":%zu,"
          "\"mapped\":%zu,\"committed\":%zu,\"committed_peak\":%zu",
          t ? "," : "", tier_names[t], r->live_blocks, r->live_bytes,
          r->free_blocks, r->free_bytes, r->cached_bytes, r->mapped,
          r->committed, r->committed_peak);
      if (t != HAK_STATS_TIER_LARGE) {
        put(o, ",\"classes\":[");
        bool first = true;
        for (size_t i = 0; i < r->classes && i < HAK_STATS_CLASSES; i++) {
          const struct hak_stats_mem_class *c = &r->class_[i];
          if (!class_shown(c, s, t, i))
            continue;
          put(o,
              "%s{\"class\":%zu,\"block_size\":%zu,\"live_blocks\":%zu,"
              "\"live_bytes\":%zu,\"free_blocks\":%zu,\"free_bytes\":%zu",
              first ? "" : ",", i, c->block_size, c->live_blocks,
              c->live_blocks * c->block_size, c->free_blocks,
              c->free_blocks * c->block_size);
          if (t == HAK_STATS_TIER_TINY && HAK_GATE_COUNT_PATHS)
            put(o, ",\"mallocs\":%llu,\"frees\":%llu",
                (unsigned long long)s->class_malloc[i],
                (unsigned long long)s->class_free[i]);
          put(o, "}");
          first = false;
        }
        put(o, "]");
      }
      put(o, "}");
    }
    put(o, "}");
    put(o,
        ",\"os\":{\"mapped\":%zu,\"mapped_peak\":%zu,\"committed\":%zu,"
        "\"cached_bytes\":%zu,",
        m->os.mapped, m->os.mapped_peak, m->os.committed, m->os.cached_bytes);
  } else {
    put(o, ",\"os\":{");
  }
  put(o, "\"rss\":%zu,\"rss_peak\":%zu}", m->os.rss, rss_peak_of(m));
  /* Only the counters this build keeps: a 0 would claim that nothing
   * happened. */
  put(o, ",\"counters\":{");
  bool first = true;
  for (int i = 0; i < HAK_STAT_COUNT; i++) {
    if (!hak_stats_collected((enum hak_stat)i))
      continue;
    put(o, "%s\"%s\":%llu", first ? "" : ",", names[i],
        (unsigned long long)s->count[i]);
    first = false;
  }
  put(o, "}}\n");
}

static void text_report(struct out *o, const struct hak_stats_header *h,
                        const struct hak_stats_snapshot *s,
                        const struct hak_stats_memory *m) {
  put(o, "hakmem %d.%d.%d statistics (%s build), pid %ld (%s)\n",
      h->version / 10000, h->version / 100 % 100, h->version % 100,
      variant_name(), h->pid, h->program ? h->program : "?");
  if (h->gathered) {
    put(o, "  %-6s %12s %10s %12s %10s %10s %10s %10s %10s\n", "tier",
        "live blocks", "live", "free blocks", "free", "cached", "mapped",
        "committed", "peak");
    for (int t = 0; t < HAK_STATS_TIERS; t++) {
      const struct hak_stats_mem_tier *r = &m->tier[t];
      put(o, "  %-6s %12zu", tier_names[t], r->live_blocks);
      put_bytes(o, r->live_bytes);
      put(o, " %12zu", r->free_blocks);
      put_bytes(o, r->free_bytes);
      put_bytes(o, r->cached_bytes);
      put_bytes(o, r->mapped);
      put_bytes(o, r->committed);
      put_bytes(o, r->committed_peak);
      put(o, "\n");
    }
    put(o, "  %-20s", "os mapped");
    put_bytes(o, m->os.mapped);
    put(o, "  (peak");
    put_bytes(o, m->os.mapped_peak);
    put(o, ")\n  %-20s", "os committed");
    put_bytes(o, m->os.committed);
    put(o, "  (cached by the os layer");
    put_bytes(o, m->os.cached_bytes);
    put(o, ")\n");
  } else {
    put(o, "  (no tier figures: a report from a signal handler does not "
           "take the tiers' locks)\n");
  }
  put(o, "  %-20s", "rss");
  put_bytes(o, m->os.rss);
  put(o, "  (peak");
  put_bytes(o, rss_peak_of(m));
  put(o, ")\n");
  for (int t = 0; h->gathered && t < HAK_STATS_TIER_LARGE; t++) {
    const struct hak_stats_mem_tier *r = &m->tier[t];
    bool counts = t == HAK_STATS_TIER_TINY && HAK_GATE_COUNT_PATHS;
    bool any = false;
    for (size_t i = 0; i < r->classes && i < HAK_STATS_CLASSES; i++) {
      const struct hak_stats_mem_class *c = &r->class_[i];
      if (!class_shown(c, s, t, i))
        continue;
      if (!any) {
        put(o, "  %s classes:\n  %5s %7s %12s %10s %12s %10s", tier_names[t],
            "class", "block", "live blocks", "live", "free blocks", "free");
        put(o, counts ? " %12s %12s\n" : "\n", "mallocs", "frees");
        any = true;
      }
      put(o, "  %5zu %7zu %12zu", i, c->block_size, c->live_blocks);
      put_bytes(o, c->live_blocks * c->block_size);
      put(o, " %12zu", c->free_blocks);
      put_bytes(o, c->free_blocks * c->block_size);
      if (counts)
        put(o, " %12llu %12llu", (unsigned long long)s->class_malloc[i],
            (unsigned long long)s->class_free[i]);
      put(o, "\n");
    }
  }
  bool any = false;
  for (int i = 0; i < HAK_STAT_COUNT; i++) {
    if (!hak_stats_collected((enum hak_stat)i))
      continue;
    if (!any)
      put(o, "  counters:\n");
    any = true;
    put(o, "  %-26s %20llu\n", names[i], (unsigned long long)s->count[i]);
  }
  if (!any)
    put(o, "  (this build keeps no counters)\n");
}

size_t hak_stats_format(const struct hak_stats_header *h,
                        const struct hak_stats_snapshot *s,
                        const struct hak_stats_memory *m, int json, char *buf,
                        size_t n) {
  struct out o = {buf, n, 0, 0};
  if (n)
    buf[0] = 0;
  if (json)
    json_report(&o, h, s, m);
  else
    text_report(&o, h, s, m);
  /* A cut JSON object would not parse: the caller gets none, and the size
   * to ask again with, as from a cut text. */
  if (json && o.need >= n && n)
    buf[0] = 0;
  return o.need;
}
