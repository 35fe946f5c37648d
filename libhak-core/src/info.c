/* SPDX-License-Identifier: MIT */
/* info.c - what hakmem holds, and the C library's malloc extensions built
 * on it: malloc_trim, mallinfo2, mallinfo, malloc_stats, malloc_info and
 * mallopt (exported by libhakmem.so; hak_ names in both products).
 *
 * Nothing here runs on a hot path, and nothing is counted on one: the
 * bytes in use are summed when asked, from the slabs' metadata (tiny, mid)
 * and the large tier's count of its blocks. */
#include "core_internal.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* hakmem.h's struct hak_stats is the report's struct hak_stats_memory
 * under its public name: one layout, checked here, so that hak_stats_get
 * copies what the report formats. */
#define SAME_FIELD(f)                                                          \
  _Static_assert(offsetof(struct hak_stats, f) ==                              \
                     offsetof(struct hak_stats_memory, f),                     \
                 "struct hak_stats and hak_stats_memory differ at " #f)
_Static_assert(sizeof(struct hak_stats) == sizeof(struct hak_stats_memory),
               "struct hak_stats and hak_stats_memory differ in size");
_Static_assert(HAK_STATS_MAX_CLASSES == HAK_STATS_CLASSES,
               "class table sizes differ");
_Static_assert(HAK_TINY_CLASSES <= HAK_STATS_CLASSES &&
                   HAK_MID_CLASSES <= HAK_STATS_CLASSES,
               "a tier has more classes than the report's table");
SAME_FIELD(size);
SAME_FIELD(version);
SAME_FIELD(tier[1].live_blocks);
SAME_FIELD(tier[1].live_bytes);
SAME_FIELD(tier[1].free_blocks);
SAME_FIELD(tier[1].free_bytes);
SAME_FIELD(tier[1].cached_bytes);
SAME_FIELD(tier[1].mapped);
SAME_FIELD(tier[1].committed);
SAME_FIELD(tier[1].committed_peak);
SAME_FIELD(tier[1].classes);
SAME_FIELD(tier[1].class_[1].block_size);
SAME_FIELD(tier[1].class_[1].live_blocks);
SAME_FIELD(tier[1].class_[1].free_blocks);
SAME_FIELD(os.mapped);
SAME_FIELD(os.mapped_peak);
SAME_FIELD(os.committed);
SAME_FIELD(os.cached_bytes);
SAME_FIELD(os.rss);
SAME_FIELD(os.rss_peak);

/* A tier of slabs: its totals are its classes' sums. */
static void slab_tier(struct hak_stats_mem_tier *t, unsigned classes,
                      const size_t *live, const size_t *free_,
                      size_t (*block_size)(unsigned), size_t dirty,
                      size_t mapped, size_t committed, size_t peak) {
  t->classes = classes;
  for (unsigned c = 0; c < classes; c++) {
    struct hak_stats_mem_class *k = &t->class_[c];
    k->block_size = block_size(c);
    k->live_blocks = live ? live[c] : 0;
    k->free_blocks = free_ ? free_[c] : 0;
    t->live_blocks += k->live_blocks;
    t->live_bytes += k->live_blocks * k->block_size;
    t->free_blocks += k->free_blocks;
    t->free_bytes += k->free_blocks * k->block_size;
  }
  t->cached_bytes = dirty;
  t->mapped = mapped;
  t->committed = committed;
  t->committed_peak = peak > committed ? peak : committed;
}

static size_t tiny_block_size(unsigned c) { return hak_tiny_class_size(c); }

/* Where the memory is, gathered from the layers that own it.  With
 * tiers == false only what a signal handler may read: the block sizes and
 * the resident set (the tiers' walks take their locks, which the
 * interrupted thread may hold). */
static void gather(struct hak_stats_memory *m, bool tiers) {
  memset(m, 0, sizeof *m);
  m->size = sizeof *m;
  m->version = HAK_STATS_VERSION;
  struct hak_stats_mem_tier *tiny = &m->tier[HAK_STATS_TIER_TINY];
  struct hak_stats_mem_tier *mid = &m->tier[HAK_STATS_TIER_MID];
  struct hak_stats_mem_tier *large = &m->tier[HAK_STATS_TIER_LARGE];
  if (tiers) {
    struct hak_tiny_usage tu;
    struct hak_mid_usage mu;
    VG_ENTER(); /* walks the calling thread's lists */
    hak_tiny_usage(&tu);
    hak_mid_usage(&mu);
    VG_LEAVE();
    slab_tier(tiny, HAK_TINY_CLASSES, tu.live_blocks, tu.free_blocks,
              tiny_block_size, tu.dirty_bytes, tu.mapped, tu.committed,
              tu.committed_peak);
    slab_tier(mid, HAK_MID_CLASSES, mu.live_blocks, mu.free_blocks,
              hak_mid_class_size, mu.dirty_bytes, mu.mapped, mu.committed,
              mu.committed_peak);
    hak_large_usage(&large->live_blocks, &large->live_bytes);
    struct hak_large_memory lm = hak_large_memory();
    large->cached_bytes = hak_large_info().dirty_bytes;
    large->mapped = lm.mapped;
    large->committed = lm.committed;
    large->committed_peak = lm.committed_peak;
    struct hak_os_cache_info cache = hak_os_cache_info();
    m->os.cached_bytes = cache.superslab_committed_bytes + cache.huge_bytes;
    m->os.mapped = hak_os_mapped_bytes();
    m->os.mapped_peak = hak_os_mapped_peak();
    m->os.committed = tiny->committed + mid->committed + large->committed +
                      m->os.cached_bytes;
  } else {
    slab_tier(tiny, HAK_TINY_CLASSES, NULL, NULL, tiny_block_size, 0, 0, 0, 0);
    slab_tier(mid, HAK_MID_CLASSES, NULL, NULL, hak_mid_class_size, 0, 0, 0, 0);
  }
  m->os.rss = hak_os_rss_current();
  size_t peak = hak_os_rss_peak();
  m->os.rss_peak = peak > m->os.rss ? peak : m->os.rss;
}

/* Static: 5 KiB that a signal handler's stack need not hold; the lock keeps
 * two reports from filling it at once, and is held across fork. */
static struct hak_stats_memory report_memory;
static pthread_mutex_t m_lock = PTHREAD_MUTEX_INITIALIZER;
void hak_report_fork_prepare(void) { pthread_mutex_lock(&m_lock); }
void hak_report_fork_parent(void) { pthread_mutex_unlock(&m_lock); }

size_t hak_stats_report_to(char *buf, size_t size, int json, bool from_signal) {
  struct hak_stats_snapshot s;
  if (from_signal) {
    if (!hak_stats_try_snapshot(&s))
      return 0;
  } else {
    hak_stats_snapshot(&s);
  }
  if (from_signal ? pthread_mutex_trylock(&m_lock) != 0
                  : pthread_mutex_lock(&m_lock) != 0)
    return 0;
  gather(&report_memory, !from_signal);
  extern char *program_invocation_short_name; /* glibc's, as <errno.h> */
  struct hak_stats_header h = {.version = hak_version(),
                               .pid = hak_os_pid(),
                               .program = program_invocation_short_name,
                               .gathered = !from_signal};
  size_t n = hak_stats_format(&h, &s, &report_memory, json, buf, size);
  pthread_mutex_unlock(&m_lock);
  return n;
}

int hak_stats_get(struct hak_stats *out) {
  if (!out || out->size < sizeof(struct hak_stats)) {
    /* Version 1 is the first: nothing smaller was ever valid. */
    errno = EINVAL;
    return -1;
  }
  hak_ensure_init();
  struct hak_stats_memory m;
  gather(&m, true);
  memcpy(out, &m, sizeof m);
  out->size = sizeof *out;
  return 0;
}

void hak_memory_info(struct hak_memory_info *info) {
  hak_ensure_init();
  struct hak_stats_memory m;
  gather(&m, true);
  const struct hak_stats_mem_tier *t = m.tier;
  *info = (struct hak_memory_info){
      .in_use = t[0].live_bytes + t[1].live_bytes + t[2].live_bytes,
      .free = t[0].free_bytes + t[0].cached_bytes + t[1].free_bytes +
              t[1].cached_bytes + t[2].cached_bytes + m.os.cached_bytes,
      .mapped = m.os.mapped,
      .mapped_peak = m.os.mapped_peak,
      .large_blocks = t[2].live_blocks,
      .large_bytes = t[2].live_bytes,
  };
}

/* malloc_trim's work: returns the bytes given back. */
static size_t trim_to(size_t pad) {
  size_t released = 0;
  /* The free slabs the tiers keep for the purge delay first (they may be
   * all there is), then the free superslabs and huge regions, oldest
   * first, down to pad. */
  size_t slabs = (size_t)hak_tiny_info().slabs_dirty * HAK_TINY_SLAB_SIZE +
                 (size_t)hak_mid_dirty_slabs() * HAK_MID_SLAB_SIZE;
  VG_ENTER();
  if (slabs > pad || pad == 0) {
    released += hak_tiny_trim() + hak_mid_trim();
    slabs = 0;
  }
  VG_LEAVE();
  /* The big-block arenas with no live block go back whole (their free
   * pages are kept for a while otherwise, docs/ARCHITECTURE.md). */
  size_t large_dirty = hak_large_info().dirty_bytes;
  hak_large_release();
  size_t large_left = hak_large_info().dirty_bytes;
  released +=
      large_dirty - (large_left < large_dirty ? large_left : large_dirty);
  released += hak_os_trim(pad - slabs);
  return released;
}

int hak_trim(size_t pad) {
  hak_ensure_init();
  return trim_to(pad) != 0;
}

/* Free bytes that may be resident: the tiers' dirty slabs and pages and
 * libhak-os's cached regions (what hak_collect can give back). */
static size_t resident_free(void) {
  struct hak_os_cache_info cache = hak_os_cache_info();
  return (size_t)hak_tiny_info().slabs_dirty * HAK_TINY_SLAB_SIZE +
         (size_t)hak_mid_dirty_slabs() * HAK_MID_SLAB_SIZE +
         hak_large_info().dirty_bytes + cache.superslab_committed_bytes +
         cache.huge_bytes;
}

size_t hak_collect(int force) {
  hak_ensure_init();
  size_t before = resident_free();
  if (force) {
    trim_to(0);
  } else {
    /* What the next allocations would give back: each tier's expired
     * slabs and pages, then libhak-os's expired regions. */
    VG_ENTER();
    hak_mid_purge(); /* the tiny and os layers' due purges too */
    VG_LEAVE();
    hak_large_purge();
    hak_os_purge();
  }
  size_t after = resident_free();
  return before > after ? before - after : 0;
}

static size_t slabs_within(int bytes, size_t slab, size_t most) {
  size_t n = (size_t)bytes / slab;
  return n < most ? n : most;
}

int hak_mallopt(int param, int value) {
  hak_ensure_init();
  switch (param) {
  case M_TRIM_THRESHOLD:
    /* Free memory above this stays resident no longer than the purge
     * delay: the bounds of the free superslabs and the free tiny and mid
     * slabs that keep their pages within it (HAKMEM_SUPERSLAB_CACHE,
     * HAKMEM_TINY_DIRTY_SLABS, and the mid tier's 64), each set to it. */
    if (value < 0)
      return 0;
    hak_config.superslab_cache = (unsigned)((size_t)value / HAK_SUPERSLAB_SIZE);
    hak_config.tiny_dirty_slabs =
        (unsigned)slabs_within(value, HAK_TINY_SLAB_SIZE, 4096);
    hak_config.mid_dirty_slabs =
        (unsigned)slabs_within(value, HAK_MID_SLAB_SIZE, 4096);
    hak_config_apply();
    return 1;
  default:
    /* M_MMAP_THRESHOLD (the tiers' bounds are fixed: every block above
     * 4 MiB - 4 KiB has a mapping of its own), M_TOP_PAD, M_MMAP_MAX,
     * M_ARENA_*, M_PERTURB, M_CHECK_ACTION, M_MXFAST: no hakmem meaning. */
    return 0;
  }
}

/* ---- the C library's names (libhakmem.so only) -------------------------- */
#ifdef HAK_OVERRIDE
#define HAK_EXPORT __attribute__((visibility("default")))

HAK_EXPORT int malloc_trim(size_t pad) { return hak_trim(pad); }

/* glibc's fields, as far as they have a hakmem meaning: arena, the bytes
 * mapped; uordblks, in use; fordblks, free in the caches; hblks and hblkhd,
 * the blocks above the mid tier (a region each, as glibc's mmapped chunks)
 * and their bytes, which glibc counts outside uordblks, and so does this;
 * usmblks, the most mapped at once (glibc: 0).  The rest: 0. */
HAK_EXPORT struct mallinfo2 mallinfo2(void) {
  struct hak_memory_info i;
  hak_memory_info(&i);
  return (struct mallinfo2){.arena = i.mapped,
                            .hblks = i.large_blocks,
                            .hblkhd = i.large_bytes,
                            .usmblks = i.mapped_peak,
                            .uordblks = i.in_use - i.large_bytes,
                            .fordblks = i.free};
}

static int clamp(size_t x) { return x > INT_MAX ? INT_MAX : (int)x; }

HAK_EXPORT struct mallinfo mallinfo(void) {
  struct mallinfo2 m = mallinfo2();
  return (struct mallinfo){.arena = clamp(m.arena),
                           .hblks = clamp(m.hblks),
                           .hblkhd = clamp(m.hblkhd),
                           .usmblks = clamp(m.usmblks),
                           .uordblks = clamp(m.uordblks),
                           .fordblks = clamp(m.fordblks)};
}

HAK_EXPORT void malloc_stats(void) { hak_stats_print(); }

/* glibc's element layout: one heap (hakmem has no arenas), the free bytes
 * as the "rest" total, the large blocks as "mmap", the mapped bytes as
 * system and address space.  No <sizes> entries: hakmem's free blocks are
 * not kept in bins that a histogram would describe. */
HAK_EXPORT int malloc_info(int options, FILE *fp) {
  if (options != 0) {
    errno = EINVAL;
    return -1;
  }
  struct hak_memory_info i;
  hak_memory_info(&i);
  fprintf(fp,
          "<malloc version=\"1\">\n"
          "<heap nr=\"0\">\n"
          "<sizes>\n"
          "</sizes>\n"
          "<total type=\"fast\" count=\"0\" size=\"0\"/>\n"
          "<total type=\"rest\" count=\"0\" size=\"%zu\"/>\n"
          "<system type=\"current\" size=\"%zu\"/>\n"
          "<system type=\"max\" size=\"%zu\"/>\n"
          "<aspace type=\"total\" size=\"%zu\"/>\n"
          "<aspace type=\"mprotect\" size=\"%zu\"/>\n"
          "</heap>\n"
          "<total type=\"fast\" count=\"0\" size=\"0\"/>\n"
          "<total type=\"rest\" count=\"0\" size=\"%zu\"/>\n"
          "<total type=\"mmap\" count=\"%zu\" size=\"%zu\"/>\n"
          "<system type=\"current\" size=\"%zu\"/>\n"
          "<system type=\"max\" size=\"%zu\"/>\n"
          "<aspace type=\"total\" size=\"%zu\"/>\n"
          "<aspace type=\"mprotect\" size=\"%zu\"/>\n"
          "</malloc>\n",
          i.free, i.mapped, i.mapped_peak, i.mapped, i.mapped, i.free,
          i.large_blocks, i.large_bytes, i.mapped, i.mapped_peak, i.mapped,
          i.mapped);
  return 0;
}

HAK_EXPORT int mallopt(int param, int value) {
  return hak_mallopt(param, value);
}
#endif
