/* SPDX-License-Identifier: MIT */
/* os.c - regions from the kernel, their caches, and the region map.
 *
 * Everything here is a slow path: it runs when a tier needs a new superslab
 * or a huge block, never per malloc.  One lock guards the caches; the
 * region map is read without it.
 */
#include "hak_os.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t os_lock = PTHREAD_MUTEX_INITIALIZER;

static struct hak_os_config config = {
    .superslab_cache = 32, /* 128 MiB */
    .superslab_reserve = 16,
    .huge_cache_bytes = (size_t)512 << 20,
    .purge_delay_ms = 10,
    .transparent_huge_pages = false,
};

/* Free superslabs, oldest first.  The committed ones (pages kept) always
 * follow the decommitted ones: memory is decommitted oldest first, whether
 * by the delay or by the bound, so allocation takes from the end and gets a
 * committed one whenever there is one. */
struct superslab_slot {
  void *base;
  uint64_t freed_ms; /* when it was freed (hak_os_clock_ms) */
  size_t dirty;      /* bytes from its start that may be resident; 0 once
                        decommitted */
};
static struct superslab_slot free_superslabs[HAK_OS_SUPERSLAB_SLOTS];
static unsigned free_count, committed_count;
static size_t committed_bytes; /* sum of their `dirty` */

/* Free huge regions, oldest first. */
struct huge_slot {
  void *base;
  size_t mapped;
  uint64_t freed_ms;
};
static struct huge_slot huge_cache[HAK_OS_HUGE_SLOTS];
static unsigned huge_count;
static size_t huge_bytes;

/* The earliest time at which a cached region's delay runs out (UINT64_MAX:
 * none is waiting), so that the check on every call is one compare.
 * Written under os_lock; hak_os_purge_due reads it without (relaxed). */
static uint64_t next_purge_ms = UINT64_MAX;

static void set_next_purge(uint64_t ms) {
  __atomic_store_n(&next_purge_ms, ms, __ATOMIC_RELAXED);
}

static unsigned fail_mappings; /* test hook */
static bool (*reclaim)(void);  /* hak_os_set_reclaim */

void hak_os_set_reclaim(bool (*fn)(void)) {
  __atomic_store_n(&reclaim, fn, __ATOMIC_RELEASE);
}

/* Bytes of the regions mapped now (in use or cached) and the most so far:
 * mallinfo's and malloc_info's figures.  Atomic: a huge region is resized
 * without the lock. */
static size_t mapped_bytes, mapped_peak;

static void count_mapped(size_t add, size_t sub) {
  size_t now = __atomic_add_fetch(&mapped_bytes, add - sub, __ATOMIC_RELAXED);
  size_t peak = __atomic_load_n(&mapped_peak, __ATOMIC_RELAXED);
  while (now > peak &&
         !__atomic_compare_exchange_n(&mapped_peak, &peak, now, true,
                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
}

size_t hak_os_mapped_bytes(void) {
  return __atomic_load_n(&mapped_bytes, __ATOMIC_RELAXED);
}
size_t hak_os_mapped_peak(void) {
  return __atomic_load_n(&mapped_peak, __ATOMIC_RELAXED);
}

struct hak_os_config hak_os_default_config(void) {
  return config;
}

static void enforce_bounds_locked(void);
static void purge_locked(uint64_t now);

void hak_os_configure(const struct hak_os_config *cfg) {
  pthread_mutex_lock(&os_lock);
  config = *cfg;
  if (config.superslab_cache > HAK_OS_SUPERSLAB_SLOTS)
    config.superslab_cache = HAK_OS_SUPERSLAB_SLOTS;
  if (config.superslab_reserve > HAK_OS_SUPERSLAB_SLOTS)
    config.superslab_reserve = HAK_OS_SUPERSLAB_SLOTS;
  /* What is cached already obeys the new bounds and delay at once. */
  enforce_bounds_locked();
  set_next_purge(0);
  purge_locked(hak_os_clock_ms());
  pthread_mutex_unlock(&os_lock);
}

uint64_t hak_os_clock_ms(void) {
  /* The coarse clock is read from the vDSO page without entering the
   * kernel, whatever the clocksource (CLOCK_MONOTONIC falls back to a
   * system call on some virtual machines); its resolution, a scheduler
   * tick (1-4 ms), is fine for delays of milliseconds. */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void hak_os_fail_next_mappings(unsigned n) {
  __atomic_store_n(&fail_mappings, n, __ATOMIC_RELAXED);
}

/* ---- system calls, each counted -------------------------------------- */

static void *sys_mmap(size_t size) {
  HAK_STAT_SYS(SYS_MMAP, 1);
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    errno = ENOMEM;
    return NULL;
  }
  HAK_STAT_SYS(OS_BYTES_MAPPED, size);
  return p;
}

static void sys_munmap(void *p, size_t size) {
  if (size == 0)
    return;
  HAK_STAT_SYS(SYS_MUNMAP, 1);
  HAK_STAT_SYS(OS_BYTES_UNMAPPED, size);
  munmap(p, size);
}

void hak_os_decommit(void *p, size_t n) {
  if (n == 0)
    return;
  /* MADV_DONTNEED, not MADV_FREE: the pages leave the resident set at once
   * (MADV_FREE keeps them counted until the kernel is under pressure, which
   * makes RSS lie), and they read as zero afterwards, which lets calloc skip
   * zeroing a decommitted region. */
  HAK_STAT_SYS(SYS_MADVISE, 1);
  HAK_STAT_SYS(OS_BYTES_DECOMMITTED, n);
  madvise(p, n, MADV_DONTNEED);
}

/* Writing zeros to a page the process never touched costs a page fault
 * (2-4 us here) to store what the kernel would have returned anyway, and
 * makes the page resident.  One mincore call covers 256 pages and costs
 * 1.3-4.6 us on the benchmark VM, about what clearing 128 KiB of resident
 * memory does: hence HAK_OS_ZERO_PROBE.  A page mincore reports absent
 * is either untouched or swapped out: MADV_DONTNEED makes both read as
 * zero, so the answer needs no other knowledge to be right.  A page swapped
 * out between the two calls is cleared by memset, which faults it back. */
enum { ZERO_PROBE_PAGES = 256 };

/* The last few ranges this thread cleared and found all resident.  A
 * program that writes what it callocs gets the same blocks back and would
 * pay the probe every time for nothing; one that writes a corner of them
 * never gets here.  Only a hint: a page gone since (decommitted, swapped
 * out) is cleared by memset, which is right, only slower. */
enum { ZERO_HINTS = 16 };
static __thread struct zero_hint {
  const char *p;
  size_t n;
} zero_hints[ZERO_HINTS] __attribute__((tls_model("initial-exec")));

static struct zero_hint *zero_hint_of(const char *p) {
  uintptr_t page = (uintptr_t)p / HAK_PAGE_SIZE;
  return &zero_hints[(page * 0x9E3779B97F4A7C15u) >> 60];
}

bool hak_os_zero(void *p, size_t n) {
  char *c = p, *end = c + n;
  char *a = (char *)(((uintptr_t)c + HAK_PAGE_SIZE - 1) & ~(HAK_PAGE_SIZE - 1));
  char *b = (char *)((uintptr_t)end & ~(HAK_PAGE_SIZE - 1));
  if (n < HAK_OS_ZERO_PROBE || a >= b) {
    memset(p, 0, n);
    return true;
  }
  struct zero_hint *hint = zero_hint_of(c);
  if (hint->p == c && hint->n == n) {
    memset(p, 0, n);
    return true;
  }
  memset(c, 0, (size_t)(a - c));
  memset(b, 0, (size_t)(end - b));
  unsigned char vec[ZERO_PROBE_PAGES];
  char *absent = NULL; /* start of the current run of absent pages */
  bool all_resident = true;
  while (a < b) {
    size_t pages = (size_t)(b - a) / HAK_PAGE_SIZE;
    if (pages > ZERO_PROBE_PAGES)
      pages = ZERO_PROBE_PAGES;
    HAK_STAT_SYS(SYS_MINCORE, 1);
    if (mincore(a, pages * HAK_PAGE_SIZE, vec) != 0) {
      /* Refused (a sandbox): clear what is left the plain way. */
      if (absent)
        hak_os_decommit(absent, (size_t)(a - absent));
      memset(a, 0, (size_t)(b - a));
      return false;
    }
    for (size_t i = 0; i < pages;) {
      size_t j = i + 1;
      bool resident = vec[i] & 1;
      while (j < pages && (vec[j] & 1) == resident)
        j++;
      char *run = a + i * HAK_PAGE_SIZE;
      if (resident) {
        if (absent)
          hak_os_decommit(absent, (size_t)(run - absent));
        absent = NULL;
        memset(run, 0, (j - i) * HAK_PAGE_SIZE);
      } else if (!absent) {
        absent = run;
        all_resident = false;
      }
      i = j;
    }
    a += pages * HAK_PAGE_SIZE;
  }
  if (absent)
    hak_os_decommit(absent, (size_t)(b - absent));
  if (all_resident)
    *hint = (struct zero_hint){c, n};
  return all_resident;
}

void hak_os_protect(void *p, size_t n, bool access) {
  mprotect(p, n, access ? PROT_READ | PROT_WRITE : PROT_NONE);
}

/* ---- the region map: one byte per superslab-sized unit ----------------- */

/* 64 KiB of .bss for the top table, of which a program touches a line or
 * two: a flat map's 32 MiB counted against RLIMIT_AS (VmSize) in full, an
 * eighth of a 256 MiB limit. */
struct hak_os_map hak_os_map;

/* Top entry t: its leaf's offset from `none`, 0 while the range has none. */
static uintptr_t top_entry(uintptr_t t) {
  return __atomic_load_n(&hak_os_map.top[t], __ATOMIC_ACQUIRE);
}

bool hak_os_map_reserve(const void *base, size_t size) {
  uintptr_t first = (uintptr_t)base >> HAK_SUPERSLAB_SHIFT;
  uintptr_t last =
      ((uintptr_t)base + (size ? size : 1) - 1) >> HAK_SUPERSLAB_SHIFT;
  if (first >= HAK_OS_MAP_UNITS) /* never, for a user-space mapping */
    return true;
  if (last >= HAK_OS_MAP_UNITS)
    last = HAK_OS_MAP_UNITS - 1;
  for (uintptr_t t = first >> HAK_OS_MAP_LEAF_SHIFT;
       t <= last >> HAK_OS_MAP_LEAF_SHIFT; t++) {
    if (top_entry(t))
      continue;
    /* Not counted as mapped bytes: no block lives there. */
    HAK_STAT_SYS(SYS_MMAP, 1);
    HAK_STAT_SYS(OS_MAP_LEAVES, 1);
    void *p = mmap(NULL, HAK_OS_MAP_LEAF, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      errno = ENOMEM;
      return false;
    }
    uintptr_t expected = 0;
    if (!__atomic_compare_exchange_n(&hak_os_map.top[t], &expected,
                                     (uintptr_t)p - (uintptr_t)hak_os_map.none,
                                     false, __ATOMIC_RELEASE,
                                     __ATOMIC_RELAXED)) {
      HAK_STAT_SYS(SYS_MUNMAP, 1); /* another thread mapped it first */
      munmap(p, HAK_OS_MAP_LEAF);
    }
  }
  return true;
}

static void map_set(const void *base, enum hak_region_kind kind) {
  size_t unit = (uintptr_t)base >> HAK_SUPERSLAB_SHIFT;
  if (unit >= HAK_OS_MAP_UNITS)
    return;
  uintptr_t entry = top_entry(unit >> HAK_OS_MAP_LEAF_SHIFT);
  if (HAK_UNLIKELY(!entry)) {
    if (kind != HAK_REGION_NONE)
      hak_os_abort(); /* a region mapped without hak_os_map_reserve */
    return;
  }
  uint8_t *byte = (uint8_t *)((uintptr_t)hak_os_map.none + entry +
                              (unit & (HAK_OS_MAP_LEAF - 1)));
  __atomic_store_n(byte, (uint8_t)kind, __ATOMIC_RELEASE);
}

void hak_os_set_kind(void *unit, enum hak_region_kind kind) {
  map_set(unit, kind);
}

/* ---- aligned mappings ------------------------------------------------- */

/* Maps `size` bytes aligned to HAK_SUPERSLAB_SIZE: over-reserve by one
 * alignment unit, then trim the ends.  Called with os_lock held. */
static void unmap_region(void *base, size_t size);

/* Unmaps every cached region; returns whether there was any.  Called with
 * os_lock held. */
static bool release_caches_locked(void) {
  bool any = free_count || huge_count;
  while (free_count)
    unmap_region(free_superslabs[--free_count].base, HAK_SUPERSLAB_SIZE);
  committed_count = 0;
  committed_bytes = 0;
  while (huge_count) {
    huge_count--;
    unmap_region(huge_cache[huge_count].base, huge_cache[huge_count].mapped);
  }
  huge_bytes = 0;
  set_next_purge(UINT64_MAX);
  return any;
}

static void *map_aligned(size_t size) {
  if (HAK_UNLIKELY(__atomic_load_n(&fail_mappings, __ATOMIC_RELAXED))) {
    __atomic_fetch_sub(&fail_mappings, 1, __ATOMIC_RELAXED);
    errno = ENOMEM;
    return NULL;
  }
  size_t over = size + HAK_SUPERSLAB_SIZE;
  char *p = sys_mmap(over);
  /* Refused (address space or a limit exhausted): what the caches hold is
   * the program's to have back before it is told there is no memory. */
  if (!p && release_caches_locked())
    p = sys_mmap(over);
  bool (*fn)(void) = __atomic_load_n(&reclaim, __ATOMIC_ACQUIRE);
  if (!p && fn) {
    /* The tier's free memory comes back through this layer, whose lock it
     * takes: dropped meanwhile (nothing is half done here). */
    pthread_mutex_unlock(&os_lock);
    bool any = fn();
    pthread_mutex_lock(&os_lock);
    if (any) {
      release_caches_locked();
      p = sys_mmap(over);
    }
  }
  if (!p)
    return NULL;
  uintptr_t a =
      ((uintptr_t)p + HAK_SUPERSLAB_MASK) & ~(uintptr_t)HAK_SUPERSLAB_MASK;
  size_t head = a - (uintptr_t)p;
  sys_munmap(p, head);
  sys_munmap((char *)a + size, over - head - size);
  if (!hak_os_map_reserve((void *)a, size)) {
    sys_munmap((void *)a, size);
    return NULL;
  }
  if (config.transparent_huge_pages) {
    HAK_STAT_SYS(SYS_MADVISE, 1);
    madvise((void *)a, size, MADV_HUGEPAGE);
  }
  map_set((void *)a, HAK_REGION_CACHED);
  count_mapped(size, 0);
  return (void *)a;
}

static void unmap_region(void *base, size_t size) {
  map_set(base, HAK_REGION_NONE);
  sys_munmap(base, size);
  count_mapped(0, size);
}

/* ---- the delayed purge ------------------------------------------------ */

/* A region freed now is likely to be wanted again soon (a batch freed and
 * allocated again, a working set breathing): keeping it with its pages
 * makes that reuse free of system calls and page faults.  One that stayed
 * unused for the purge delay is probably not wanted: superslabs are then
 * decommitted, and unmapped past the reserve; huge regions are unmapped.
 * The bounds are a backstop for bursts that come faster than the delay. */

static uint64_t due_ms(uint64_t freed_ms) {
  return freed_ms + config.purge_delay_ms;
}

static void superslab_decommit(struct superslab_slot *e) {
  hak_os_decommit(e->base, e->dirty);
  committed_bytes -= e->dirty;
  committed_count--;
  e->dirty = 0;
}

static void superslab_remove(unsigned i) {
  if (free_superslabs[i].dirty) {
    committed_count--;
    committed_bytes -= free_superslabs[i].dirty;
  }
  memmove(&free_superslabs[i], &free_superslabs[i + 1],
          (free_count - i - 1) * sizeof free_superslabs[0]);
  free_count--;
}

static void huge_remove(unsigned i) {
  huge_bytes -= huge_cache[i].mapped;
  memmove(&huge_cache[i], &huge_cache[i + 1],
          (huge_count - i - 1) * sizeof huge_cache[0]);
  huge_count--;
}

/* The byte bounds, whatever the delay: the oldest committed superslabs are
 * decommitted, the oldest huge regions unmapped. */
static void enforce_bounds_locked(void) {
  size_t limit = (size_t)config.superslab_cache * HAK_SUPERSLAB_SIZE;
  for (unsigned i = 0; committed_bytes > limit; i++) {
    if (free_superslabs[i].dirty)
      superslab_decommit(&free_superslabs[i]);
  }
  while (huge_count && huge_bytes > config.huge_cache_bytes) {
    unmap_region(huge_cache[0].base, huge_cache[0].mapped);
    huge_remove(0);
  }
}

/* Gives back what outlived the delay.  Cheap unless a delay has run out:
 * called on every entry into this layer, which is already a slow path. */
static void purge_locked(uint64_t now) {
  if (now < next_purge_ms)
    return;
  uint64_t next = UINT64_MAX;
  /* The array is in order of freeing, so the expired ones come first. */
  unsigned expired = 0, decommitted = 0;
  for (unsigned i = 0; i < free_count; i++) {
    if (now >= due_ms(free_superslabs[i].freed_ms)) {
      expired++;
    } else {
      uint64_t due = due_ms(free_superslabs[i].freed_ms);
      next = due < next ? due : next;
      decommitted += free_superslabs[i].dirty == 0; /* by the bound */
    }
  }
  /* The reserve keeps the most recently freed of those that end up
   * decommitted; older expired ones are unmapped (without a decommit
   * first), the others decommitted. */
  decommitted += expired;
  unsigned unmap = decommitted > config.superslab_reserve
                       ? decommitted - config.superslab_reserve
                       : 0;
  if (unmap > expired)
    unmap = expired;
  for (unsigned i = 0; i < unmap; i++) {
    struct superslab_slot *e = &free_superslabs[i];
    if (e->dirty) {
      committed_count--;
      committed_bytes -= e->dirty;
    }
    unmap_region(e->base, HAK_SUPERSLAB_SIZE);
  }
  free_count -= unmap;
  memmove(&free_superslabs[0], &free_superslabs[unmap],
          free_count * sizeof free_superslabs[0]);
  for (unsigned i = 0; i < expired - unmap; i++)
    if (free_superslabs[i].dirty)
      superslab_decommit(&free_superslabs[i]);
  for (unsigned i = 0; i < huge_count;) {
    if (now >= due_ms(huge_cache[i].freed_ms)) {
      unmap_region(huge_cache[i].base, huge_cache[i].mapped);
      huge_remove(i);
    } else {
      uint64_t due = due_ms(huge_cache[i].freed_ms);
      next = due < next ? due : next;
      i++;
    }
  }
  set_next_purge(next);
}

static void schedule_purge(uint64_t freed_ms) {
  if (due_ms(freed_ms) < next_purge_ms)
    set_next_purge(due_ms(freed_ms));
}

void hak_os_purge(void) {
  pthread_mutex_lock(&os_lock);
  purge_locked(hak_os_clock_ms());
  pthread_mutex_unlock(&os_lock);
}

void hak_os_purge_due(uint64_t now) {
  if (now >= __atomic_load_n(&next_purge_ms, __ATOMIC_RELAXED))
    hak_os_purge();
}

/* ---- superslabs ------------------------------------------------------- */

/* Takes the most recently freed superslab: committed if any is (they are
 * at the end, see free_superslabs), warmest in caches.  With
 * resident_only, only a committed one.  Called with os_lock held. */
static void *take_cached_locked(size_t *dirty, bool resident_only) {
  if (!free_count || (resident_only && !free_superslabs[free_count - 1].dirty))
    return NULL;
  struct superslab_slot *e = &free_superslabs[free_count - 1];
  void *ss = e->base;
  *dirty = e->dirty; /* decommitted pages read as zero */
  superslab_remove(free_count - 1);
  HAK_STAT_SYS(OS_SUPERSLAB_REUSED, 1);
  return ss;
}

void *hak_os_superslab_alloc_dirty(size_t *dirty) {
  pthread_mutex_lock(&os_lock);
  purge_locked(hak_os_clock_ms());
  void *ss = take_cached_locked(dirty, false);
  if (!ss) {
    ss = map_aligned(HAK_SUPERSLAB_SIZE);
    *dirty = 0;
    if (ss)
      HAK_STAT_SYS(OS_SUPERSLAB_NEW, 1);
  }
  pthread_mutex_unlock(&os_lock);
  if (ss)
    HAK_VG_FRESH(ss, HAK_SUPERSLAB_SIZE);
  return ss;
}

void *hak_os_superslab_alloc_resident(size_t *dirty) {
  pthread_mutex_lock(&os_lock);
  purge_locked(hak_os_clock_ms());
  void *ss = take_cached_locked(dirty, true);
  pthread_mutex_unlock(&os_lock);
  if (ss)
    HAK_VG_FRESH(ss, HAK_SUPERSLAB_SIZE);
  return ss;
}

void *hak_os_superslab_alloc(bool *zeroed) {
  size_t dirty;
  void *ss = hak_os_superslab_alloc_dirty(&dirty);
  *zeroed = dirty == 0;
  return ss;
}

void hak_os_superslab_free(void *ss) {
  hak_os_superslab_free_dirty(ss, HAK_SUPERSLAB_SIZE);
}

void hak_os_superslab_free_dirty(void *ss, size_t dirty) {
  /* A late free into a cached region is recognised by its kind.  The
   * header page counts as dirty always. */
  map_set(ss, HAK_REGION_CACHED);
  dirty = (dirty + HAK_PAGE_SIZE - 1) & ~(HAK_PAGE_SIZE - 1);
  if (dirty < HAK_PAGE_SIZE)
    dirty = HAK_PAGE_SIZE;
  if (dirty > HAK_SUPERSLAB_SIZE)
    dirty = HAK_SUPERSLAB_SIZE;
  pthread_mutex_lock(&os_lock);
  HAK_STAT_SYS(OS_SUPERSLAB_RELEASED, 1);
  uint64_t now = hak_os_clock_ms();
  if (free_count == HAK_OS_SUPERSLAB_SLOTS) {
    /* Full of regions freed within the delay: the oldest goes. */
    unmap_region(free_superslabs[0].base, HAK_SUPERSLAB_SIZE);
    superslab_remove(0);
  }
  free_superslabs[free_count++] =
      (struct superslab_slot){.base = ss, .freed_ms = now, .dirty = dirty};
  committed_count++;
  committed_bytes += dirty;
  schedule_purge(now);
  purge_locked(now); /* first: what it unmaps needs no decommit */
  enforce_bounds_locked();
  pthread_mutex_unlock(&os_lock);
}

/* ---- huge regions ------------------------------------------------------ */

static size_t page_round(size_t n) {
  return (n + HAK_PAGE_SIZE - 1) & ~(HAK_PAGE_SIZE - 1);
}

void *hak_os_huge_alloc(size_t size, size_t *mapped, bool *zeroed) {
  if (size > ((size_t)1 << 46)) { /* more than the address space */
    errno = ENOMEM;
    return NULL;
  }
  size = page_round(size ? size : 1); /* a region is never empty */
  pthread_mutex_lock(&os_lock);
  purge_locked(hak_os_clock_ms());
  /* Best fit among cached regions no more than twice the size, so that a
   * small request does not pin a big region. */
  int best = -1;
  for (unsigned i = 0; i < huge_count; i++) {
    size_t m = huge_cache[i].mapped;
    if (m >= size && m / 2 <= size && (best < 0 || m < huge_cache[best].mapped))
      best = (int)i;
  }
  void *base;
  if (best >= 0) {
    base = huge_cache[best].base;
    *mapped = huge_cache[best].mapped;
    huge_remove((unsigned)best);
    *zeroed = false;
    HAK_STAT_SYS(OS_HUGE_REUSED, 1);
  } else {
    base = map_aligned(size);
    *mapped = size;
    *zeroed = true;
    if (base)
      HAK_STAT_SYS(OS_HUGE_NEW, 1);
  }
  pthread_mutex_unlock(&os_lock);
  if (base)
    HAK_VG_FRESH(base, *mapped);
  return base;
}

void hak_os_huge_free(void *base, size_t mapped) {
  map_set(base, HAK_REGION_CACHED);
  pthread_mutex_lock(&os_lock);
  uint64_t now = hak_os_clock_ms();
  if (mapped <= config.huge_cache_bytes) {
    /* Make room by evicting the oldest entries. */
    while (huge_count && (huge_count == HAK_OS_HUGE_SLOTS ||
                          huge_bytes + mapped > config.huge_cache_bytes)) {
      unmap_region(huge_cache[0].base, huge_cache[0].mapped);
      huge_remove(0);
    }
    huge_cache[huge_count++] = (struct huge_slot){base, mapped, now};
    huge_bytes += mapped;
    schedule_purge(now);
  } else {
    unmap_region(base, mapped);
  }
  purge_locked(now);
  pthread_mutex_unlock(&os_lock);
}

bool hak_os_huge_resize(void *base, size_t mapped, size_t new_size,
                        size_t *new_mapped) {
  new_size = page_round(new_size ? new_size : 1);
  if (new_size == mapped) {
    *new_mapped = mapped;
    return true;
  }
  if (new_size < mapped) {
    sys_munmap((char *)base + new_size, mapped - new_size);
    count_mapped(0, mapped - new_size);
    *new_mapped = new_size;
    return true;
  }
  /* Grow in place only: moving would break the alignment that lets a
   * pointer find its header.  A refusal is an answer, not an error: the
   * caller moves the region instead, and the program's errno stays as it
   * was (a successful malloc must not leave ENOMEM behind). */
  HAK_STAT_SYS(SYS_MREMAP, 1);
  int saved = errno;
  void *p = mremap(base, mapped, new_size, 0);
  if (p == MAP_FAILED) {
    errno = saved;
    return false;
  }
  if (!hak_os_map_reserve(base, new_size)) { /* into a leaf not mapped */
    sys_munmap((char *)base + mapped, new_size - mapped);
    errno = saved;
    return false;
  }
  HAK_STAT_SYS(OS_BYTES_MAPPED, new_size - mapped);
  count_mapped(new_size - mapped, 0);
  *new_mapped = new_size;
  return true;
}

void *hak_os_huge_move(void *base, size_t mapped, size_t new_size,
                       size_t *new_mapped) {
  new_size = page_round(new_size);
  if (new_size < mapped || new_size > ((size_t)1 << 46)) {
    errno = ENOMEM;
    return NULL;
  }
  /* An aligned reservation first (no pages), then the region's pages
   * moved over its start: the kernel moves page tables, not bytes. */
  pthread_mutex_lock(&os_lock);
  char *to = map_aligned(new_size);
  pthread_mutex_unlock(&os_lock);
  if (!to)
    return NULL;
  HAK_STAT_SYS(SYS_MREMAP, 1);
  void *p = mremap(base, mapped, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, to);
  if (p == MAP_FAILED) {
    unmap_region(to, new_size);
    errno = ENOMEM;
    return NULL;
  }
  map_set(base, HAK_REGION_NONE);
  *new_mapped = new_size;
  return to;
}

/* false: refused, the caller copies instead (errno left as it was, as in
 * hak_os_huge_resize). */
bool hak_os_move_pages(void *from, size_t n, void *to) {
  int saved = errno;
  HAK_STAT_SYS(SYS_MREMAP, 1);
  if (mremap(from, n, n, MREMAP_MAYMOVE | MREMAP_FIXED, to) == MAP_FAILED) {
    errno = saved;
    return false;
  }
  /* The hole the move left is mapped again (fresh pages, which read as
   * zero); if even that is refused, the pages go back where they were. */
  HAK_STAT_SYS(SYS_MMAP, 1);
  void *p =
      mmap(from, n, PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  if (p == MAP_FAILED) {
    HAK_STAT_SYS(SYS_MREMAP, 1);
    if (mremap(to, n, n, MREMAP_MAYMOVE | MREMAP_FIXED, from) == MAP_FAILED)
      hak_os_abort(); /* a hole in a region: nothing safe is left to do */
    errno = saved;
    return false;
  }
  return true;
}

void hak_os_release_caches(void) {
  pthread_mutex_lock(&os_lock);
  release_caches_locked();
  pthread_mutex_unlock(&os_lock);
}

size_t hak_os_trim(size_t keep) {
  size_t released = 0;
  pthread_mutex_lock(&os_lock);
  /* Huge regions first (they are the most memory per entry and the least
   * likely to fit the next request), oldest first; then free superslabs,
   * oldest first, decommitted, and unmapped past the reserve. */
  while (huge_count && huge_bytes + committed_bytes > keep) {
    released += huge_cache[0].mapped;
    unmap_region(huge_cache[0].base, huge_cache[0].mapped);
    huge_remove(0);
  }
  for (unsigned i = 0; i < free_count && committed_bytes > keep; i++) {
    if (free_superslabs[i].dirty) {
      released += free_superslabs[i].dirty;
      superslab_decommit(&free_superslabs[i]);
    }
  }
  unsigned decommitted = free_count - committed_count;
  if (keep == 0 && decommitted > config.superslab_reserve) {
    /* The decommitted ones are the oldest: unmap those past the reserve. */
    unsigned unmap = decommitted - config.superslab_reserve;
    for (unsigned i = 0; i < unmap; i++)
      unmap_region(free_superslabs[i].base, HAK_SUPERSLAB_SIZE);
    free_count -= unmap;
    memmove(&free_superslabs[0], &free_superslabs[unmap],
            free_count * sizeof free_superslabs[0]);
  }
  pthread_mutex_unlock(&os_lock);
  return released;
}

struct hak_os_cache_info hak_os_cache_info(void) {
  pthread_mutex_lock(&os_lock);
  struct hak_os_cache_info info = {committed_count,
                                   free_count - committed_count, huge_count,
                                   huge_bytes, committed_bytes};
  pthread_mutex_unlock(&os_lock);
  return info;
}

/* The guarded pool's lock is never held while os_lock is taken: either
 * order is safe; it goes first. */
void hak_os_fork_prepare(void) {
  hak_os_guard_fork_prepare();
  pthread_mutex_lock(&os_lock);
}
void hak_os_fork_parent(void) {
  pthread_mutex_unlock(&os_lock);
  hak_os_guard_fork_parent();
}
/* The child unlocks what its (only) thread locked before fork: re-creating
 * a held mutex is undefined behaviour. */
void hak_os_fork_child(void) {
  pthread_mutex_unlock(&os_lock);
  hak_os_guard_fork_parent();
}

/* ---- messages and process state -------------------------------------- */

static bool write_all(int fd, const char *s, size_t n) {
  while (n) {
    ssize_t w = write(fd, s, n);
    if (w <= 0) {
      if (w < 0 && errno == EINTR)
        continue;
      return false;
    }
    s += w;
    n -= (size_t)w;
  }
  return true;
}

void hak_os_write_stderr(const char *s, size_t n) { (void)write_all(2, s, n); }

bool hak_os_append_file(const char *path, const char *s, size_t n) {
  /* O_APPEND: reports of one process follow each other (signal reports,
   * then the one at exit), and a file left by an earlier run is kept. */
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0)
    return false;
  bool ok = write_all(fd, s, n);
  close(fd);
  return ok;
}

long hak_os_pid(void) { return (long)getpid(); }

void hak_os_abort(void) { abort(); }

bool hak_os_on_signal(int sig, void (*handler)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  return sigaction(sig, &sa, NULL) == 0;
}

/* A "Key:   N kB" field of /proc/self/status, in bytes (0 if unreadable).
 * VmHWM rather than getrusage's ru_maxrss for the peak: Linux carries
 * ru_maxrss across execve, so a program started by a big parent (a Python
 * script) would report the parent's peak. */
static size_t status_bytes(const char *key) {
  int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  char buf[4096];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return 0;
  buf[n] = 0;
  const char *s = strstr(buf, key);
  if (!s)
    return 0;
  s += strlen(key);
  while (*s == ' ' || *s == '\t')
    s++;
  size_t kb = 0;
  while (*s >= '0' && *s <= '9')
    kb = kb * 10 + (size_t)(*s++ - '0');
  return kb * 1024;
}

size_t hak_os_rss_current(void) { return status_bytes("VmRSS:"); }
size_t hak_os_rss_peak(void) { return status_bytes("VmHWM:"); }
