/* SPDX-License-Identifier: MIT */
/* large.c - blocks above the mid tier: page runs in arenas, reused across
 * sizes.
 *
 * A block of more than 256 KiB is a run of whole pages (a "span") in an
 * arena: a mapping aligned to HAK_SUPERSLAB_SIZE whose first pages hold the
 * arena's header, the rest its spans, each one either a live block or free.
 * Standard arenas are one superslab (4 MiB, taken from libhak-os's cache,
 * so tiny and mid superslabs that kept their pages serve big blocks too)
 * and hold several blocks up to 4 MiB - 4 KiB, opened by blocks whose size
 * packs them well; other blocks get an arena of their own size, so that a
 * block reserves about its own size of address space.  Free spans are split for
 * any later block that fits, and adjacent free spans join, so freed memory
 * serves requests of other sizes with the pages it already has: writing a
 * resident page costs nothing, writing a fresh one a page fault.  Every span
 * boundary and state is a bit in the header's bitmaps (no per-block header in
 * the block's pages: a decommitted span stays untouched), and so is whether
 * each page may be non-zero (dirty), which calloc and the purge read.
 *
 * A request that no free span fits grows a wholly free arena (mremap) or
 * maps a new one.  Resident free pages stay where they are: moving other
 * arenas' free pages into the new span (mremap) was measured and dropped
 * (docs/BENCHMARKS.md, "Big blocks: the sitting of 4 Dec 2026"): the holes
 * it left faulted in again when later blocks landed there.
 *
 * Retention: free pages keep their contents for arena_delay() (100 purge
 * delays) after the last free into their arena, and the dirty free pages
 * of all arenas are bounded by retain_limit() (32 MiB plus half the peak of
 * the live bytes, at most HAKMEM_HUGE_CACHE_MB); past either, the pages are
 * decommitted, and an arena left wholly free goes back to libhak-os (a
 * standard one to its superslab cache, decommitted; a big one unmapped).
 * When the kernel refuses a mapping, to this tier or any other
 * (hak_os_set_reclaim), the wholly free arenas go back first.  One lock
 * guards the tier: a big block costs at least a fault-free memset of
 * 256 KiB, which dwarfs it.
 *
 * free finds the arena from the region map: the unit of a block's address
 * is the arena's first (HAK_REGION_LARGE, header at its start) or a later
 * one (HAK_REGION_LARGE_TAIL: the nearest LARGE unit below is the start).
 */
#include "core_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define PAGE HAK_PAGE_SIZE
#define PAGE_SHIFT 12
#define SS_PAGES (HAK_SUPERSLAB_SIZE / PAGE)
/* Alignments from 2^36 up are refused outright (as glibc does): honouring
 * one would reserve the whole alignment of address space. */
#define ALIGN_LIMIT ((size_t)1 << 36)
#define SIZE_LIMIT ((size_t)1 << 46) /* more than the address space */
/* The retention bound's floor (bytes of dirty free pages always allowed). */
#define RETAIN_FLOOR ((size_t)32 << 20)
/* realloc moves pages with mremap from this size on, copies below. */
#define MOVE_MIN ((size_t)1 << 20)

struct arena {
  struct hak_region region;    /* size = bytes mapped */
  struct arena *next, *prev;   /* arenas with free pages */
  struct arena *dnext, *dprev; /* arenas with dirty free pages, by freed_ms */
  bool in_free_list, in_dirty_list;
  bool standard;     /* one superslab from libhak-os's superslab cache */
  uint64_t freed_ms; /* the last free into this arena */
  size_t pages;      /* mapped pages, the header's included */
  size_t first;      /* pages of the header: spans start here */
  size_t free_pages, dirty_pages; /* free, and free and maybe non-zero */
  size_t blocks;                  /* live blocks */
  size_t words;                   /* 64-bit words per bitmap */
  /* Four bitmaps of `words` words, bit i for page i: a span starts at i;
   * the span starting at i is a live block; page i may be non-zero (read
   * for free pages only: a live block's pages are all taken as dirty when
   * it is freed); the live block at i has a no-access page at its end. */
  uint64_t bits[];
};
enum { START, USED, DIRTY, GUARD };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct arena *with_free;               /* arenas with free pages */
static struct arena *dirty_head, *dirty_tail; /* oldest free first */
static size_t dirty_bytes, live_bytes, peak_live_bytes;
static size_t live_blocks; /* mallinfo's count (hak_large_usage) */
/* For the report: bytes of the arenas mapped, of their headers, and the
 * most of live + dirty + header bytes at once (moved where live bytes
 * grow: a free turns live pages into dirty ones). */
static size_t arena_bytes, header_bytes, committed_peak;

static size_t committed_now(void) {
  return live_bytes + dirty_bytes + header_bytes;
}
static void note_committed(void) {
  if (committed_now() > committed_peak)
    committed_peak = committed_now();
}
static uint64_t next_due_ms = UINT64_MAX; /* earliest an arena's delay ends */

/* ---- bitmaps --------------------------------------------------------- */

static inline uint64_t *map_of(struct arena *a, int which) {
  return a->bits + (size_t)which * a->words;
}
static inline bool bit(const uint64_t *m, size_t i) {
  return (m[i >> 6] >> (i & 63)) & 1;
}
static inline void bit_set(uint64_t *m, size_t i) {
  m[i >> 6] |= (uint64_t)1 << (i & 63);
}
static inline void bit_clear(uint64_t *m, size_t i) {
  m[i >> 6] &= ~((uint64_t)1 << (i & 63));
}

/* The mask of bits [i, i + n) within word w (bits of other words cut). */
static inline uint64_t word_mask(size_t w, size_t i, size_t n) {
  size_t lo = w * 64, hi = lo + 64;
  size_t a = i > lo ? i : lo, b = i + n < hi ? i + n : hi;
  if (a >= b)
    return 0;
  uint64_t m = b - a == 64 ? ~(uint64_t)0 : (((uint64_t)1 << (b - a)) - 1);
  return m << (a - lo);
}

static void range_set(uint64_t *m, size_t i, size_t n, bool on) {
  for (size_t w = i >> 6; n && w <= (i + n - 1) >> 6; w++) {
    uint64_t mask = word_mask(w, i, n);
    m[w] = on ? m[w] | mask : m[w] & ~mask;
  }
}

static size_t range_count(const uint64_t *m, size_t i, size_t n) {
  size_t c = 0;
  for (size_t w = i >> 6; n && w <= (i + n - 1) >> 6; w++)
    c += (size_t)__builtin_popcountll(m[w] & word_mask(w, i, n));
  return c;
}

/* The first set bit at or after i, or limit. */
static size_t next_set(const uint64_t *m, size_t i, size_t limit) {
  if (i >= limit)
    return limit;
  size_t w = i >> 6;
  uint64_t x = m[w] & (~(uint64_t)0 << (i & 63));
  while (!x) {
    if (++w >= (limit + 63) >> 6)
      return limit;
    x = m[w];
  }
  size_t r = w * 64 + (size_t)__builtin_ctzll(x);
  return r < limit ? r : limit;
}

/* The last set bit at or before i (bit `first` of START is always set). */
static size_t prev_set(const uint64_t *m, size_t i) {
  size_t w = i >> 6;
  uint64_t x = m[w] & (i % 64 == 63 ? ~(uint64_t)0
                                    : (((uint64_t)1 << ((i & 63) + 1)) - 1));
  while (!x)
    x = m[--w];
  return w * 64 + 63 - (size_t)__builtin_clzll(x);
}

static inline size_t span_end(struct arena *a, size_t i) {
  return next_set(map_of(a, START), i + 1, a->pages);
}

static inline char *page_addr(struct arena *a, size_t i) {
  return (char *)a + (i << PAGE_SHIFT);
}

/* ---- lists and accounting --------------------------------------------- */

static void free_list_update(struct arena *a) {
  bool want = a->free_pages != 0;
  if (want == a->in_free_list)
    return;
  if (want) {
    a->prev = NULL;
    a->next = with_free;
    if (with_free)
      with_free->prev = a;
    with_free = a;
  } else {
    if (a->prev)
      a->prev->next = a->next;
    else
      with_free = a->next;
    if (a->next)
      a->next->prev = a->prev;
  }
  a->in_free_list = want;
}

static void dirty_unlink(struct arena *a) {
  if (!a->in_dirty_list)
    return;
  if (a->dprev)
    a->dprev->dnext = a->dnext;
  else
    dirty_head = a->dnext;
  if (a->dnext)
    a->dnext->dprev = a->dprev;
  else
    dirty_tail = a->dprev;
  a->in_dirty_list = false;
}

static uint64_t arena_delay(const struct arena *a);

/* Pages were just freed into a: it becomes the most recent of the list. */
static void dirty_touch(struct arena *a, uint64_t now) {
  dirty_unlink(a);
  a->freed_ms = now;
  a->dnext = NULL;
  a->dprev = dirty_tail;
  if (dirty_tail)
    dirty_tail->dnext = a;
  else
    dirty_head = a;
  dirty_tail = a;
  a->in_dirty_list = true;
  uint64_t due = now + arena_delay(a);
  if (due < next_due_ms)
    next_due_ms = due;
}

static size_t retain_limit(void) {
  size_t limit = RETAIN_FLOOR + peak_live_bytes / 2;
  size_t cap = hak_config.huge_cache_mb << 20;
  return limit < cap ? limit : cap;
}

/* ---- arenas ------------------------------------------------------------ */

static size_t header_pages(size_t pages) {
  size_t words = (pages + 63) / 64;
  size_t bytes = sizeof(struct arena) + 4 * words * sizeof(uint64_t);
  return (bytes + PAGE - 1) / PAGE;
}

/* Marks the units of an arena for free's routing (kind) or clears them. */
static void set_units(struct arena *a, bool on) {
  size_t units = (a->region.size + HAK_SUPERSLAB_SIZE - 1) / HAK_SUPERSLAB_SIZE;
  if (on)
    hak_os_set_kind(a, HAK_REGION_LARGE);
  for (size_t u = 1; u < units; u++)
    hak_os_set_kind((char *)a + u * HAK_SUPERSLAB_SIZE,
                    on ? HAK_REGION_LARGE_TAIL : HAK_REGION_NONE);
}

/* Sets up the header of a mapping of `pages` pages whose first `dirty`
 * bytes may be non-zero: one free span after the header. */
static struct arena *arena_init(void *base, size_t pages, size_t dirty,
                                bool standard) {
  struct arena *a = base;
  size_t first = header_pages(pages);
  size_t words = (pages + 63) / 64;
  /* Only what may be non-zero is cleared: a fresh mapping's bitmaps are. */
  size_t header = sizeof *a + 4 * words * sizeof(uint64_t);
  memset(a, 0, header < dirty ? header : dirty < sizeof *a ? sizeof *a : dirty);
  a->region.size = pages * PAGE;
  arena_bytes += pages * PAGE;
  header_bytes += first * PAGE;
  a->standard = standard;
  a->pages = pages;
  a->first = first;
  a->words = words;
  a->free_pages = pages - first;
  bit_set(map_of(a, START), first);
  size_t dirty_pages = (dirty + PAGE - 1) / PAGE;
  if (dirty_pages > pages)
    dirty_pages = pages;
  set_units(a, true);
  free_list_update(a);
  if (dirty_pages > first) {
    /* Pages a previous user wrote: reused first, purged like any. */
    range_set(map_of(a, DIRTY), first, dirty_pages - first, true);
    a->dirty_pages = dirty_pages - first;
    dirty_bytes += a->dirty_pages * PAGE;
    dirty_touch(a, hak_os_clock_ms());
  }
  return a;
}

/* How far from its start a's pages may be non-zero (for the cache). */
static size_t dirty_extent(struct arena *a) {
  uint64_t *d = map_of(a, DIRTY);
  for (size_t w = a->words; w-- > 0;)
    if (d[w])
      return (w * 64 + 64 - (size_t)__builtin_clzll(d[w])) * PAGE;
  return a->first * PAGE;
}

/* A wholly free arena goes back to libhak-os. */
static void arena_release(struct arena *a) {
  arena_bytes -= a->region.size;
  header_bytes -= a->first * PAGE;
  dirty_bytes -= a->dirty_pages * PAGE;
  dirty_unlink(a);
  a->free_pages = 0;
  free_list_update(a);
  set_units(a, false);
  if (a->standard)
    hak_os_superslab_free_dirty(a, dirty_extent(a));
  else
    hak_os_huge_free(a, a->region.size);
}

static void arena_decommit(struct arena *a);

/* A wholly free arena whose delay ran out (or over the bound) goes back
 * without its pages: a standard one decommitted first, as the superslab
 * cache would only keep them for another delay; a big one is unmapped. */
static void arena_release_clean(struct arena *a) {
  if (a->standard)
    arena_decommit(a);
  arena_release(a);
}

/* Gives back the dirty free pages of a (runs of them, one madvise each). */
static void arena_decommit(struct arena *a) {
  uint64_t *used = map_of(a, USED), *dirty = map_of(a, DIRTY);
  for (size_t i = a->first; i < a->pages && a->dirty_pages;) {
    size_t e = span_end(a, i);
    if (!bit(used, i)) {
      for (size_t j = next_set(dirty, i, e); j < e;) {
        size_t k = j;
        while (k < e && bit(dirty, k))
          k++;
        hak_os_decommit(page_addr(a, j), (k - j) * PAGE);
        range_set(dirty, j, k - j, false);
        a->dirty_pages -= k - j;
        dirty_bytes -= (k - j) * PAGE;
        j = next_set(dirty, k, e);
      }
    }
    i = e;
  }
  dirty_unlink(a);
}

/* The oldest arena with dirty free pages gives them back (and, wholly
 * free, itself). */
static void purge_oldest(void) {
  struct arena *a = dirty_head;
  if (a->blocks == 0)
    arena_release_clean(a);
  else
    arena_decommit(a);
}

/* How long an arena's free pages are kept after the last free into it:
 * 100 purge delays (a second by default).  A program that writes a block
 * whole between two calls spends time in proportion to its size, and with
 * the tiers' 10 ms a loaded machine gave every freed block back before the
 * program came back for it: then each iteration faults every page, takes
 * longer still, and nothing is ever reused (the vicious circle the big-block
 * benchmark showed, 2337 faults per 15 MiB block).  A free span also waits
 * for a request small enough to take it, which with random sizes takes tens
 * of requests.  The bound (retain_limit) is what keeps memory in check
 * meanwhile. */
#define DELAY_FACTOR 100
static uint64_t arena_delay(const struct arena *a) {
  (void)a;
  return (uint64_t)hak_config.purge_delay_ms * DELAY_FACTOR;
}

/* What outlived its delay is given back (a scan of the arenas with dirty
 * pages, only once the earliest is due); then the bound, oldest first. */
static void purge(uint64_t now) {
  if (now >= next_due_ms) {
    uint64_t next = UINT64_MAX;
    for (struct arena *a = dirty_head, *n; a; a = n) {
      n = a->dnext;
      uint64_t due = a->freed_ms + arena_delay(a);
      if (now >= due) {
        if (a->blocks == 0)
          arena_release_clean(a);
        else
          arena_decommit(a);
      } else if (due < next) {
        next = due;
      }
    }
    next_due_ms = next;
    if (!dirty_head)
      peak_live_bytes = live_bytes; /* the bound follows the program down */
  }
  size_t limit = retain_limit();
  while (dirty_head && dirty_bytes > limit)
    purge_oldest();
}

/* ---- spans --------------------------------------------------------------- */

/* Where a block of n pages aligned to align would start in the free span
 * [i, e) of a, or e if it does not fit. */
static size_t fit(struct arena *a, size_t i, size_t e, size_t n, size_t align) {
  uintptr_t at = (uintptr_t)page_addr(a, i);
  uintptr_t aligned = (at + align - 1) & ~(uintptr_t)(align - 1);
  size_t s = i + ((aligned - at) >> PAGE_SHIFT);
  return s < e && e - s >= n ? s : e;
}

/* Takes pages [s, s + n) of the free span [i, e) for a live block. */
static void span_take(struct arena *a, size_t i, size_t e, size_t s, size_t n) {
  uint64_t *start = map_of(a, START);
  if (s > i)
    bit_set(start, s); /* [i, s) stays free */
  if (s + n < e)
    bit_set(start, s + n); /* and so does [s + n, e) */
  bit_set(map_of(a, USED), s);
  size_t d = range_count(map_of(a, DIRTY), s, n);
  a->dirty_pages -= d;
  dirty_bytes -= d * PAGE;
  a->free_pages -= n;
  a->blocks++;
  live_blocks++;
  live_bytes += n * PAGE;
  if (live_bytes > peak_live_bytes)
    peak_live_bytes = live_bytes;
  note_committed();
  free_list_update(a);
}

/* Pages [i, e) of a, a live block's or its tail, become free (and dirty),
 * joined with free neighbours. */
static void span_give(struct arena *a, size_t i, size_t e) {
  uint64_t *start = map_of(a, START), *used = map_of(a, USED);
  /* A live block's dirty bits are stale: all its pages count as dirty. */
  range_set(map_of(a, DIRTY), i, e - i, true);
  a->dirty_pages += e - i;
  dirty_bytes += (e - i) * PAGE;
  a->free_pages += e - i;
  live_bytes -= (e - i) * PAGE;
  bit_set(start, i);
  bit_clear(used, i);
  if (e < a->pages && !bit(used, e))
    bit_clear(start, e);
  if (i > a->first && !bit(used, prev_set(start, i - 1)))
    bit_clear(start, i);
  free_list_update(a);
}

/* The best free span for n pages: the one that would reuse the most dirty
 * pages, then the smallest.  Returns its arena (and span, start) or NULL. */
static struct arena *find_span(size_t n, size_t align, size_t *span,
                               size_t *span_e, size_t *at) {
  struct arena *best = NULL;
  size_t best_dirty = 0, best_len = SIZE_MAX;
  for (struct arena *a = with_free; a; a = a->next) {
    if (a->free_pages < n)
      continue;
    uint64_t *used = map_of(a, USED);
    for (size_t i = a->first; i < a->pages;) {
      size_t e = span_end(a, i);
      if (!bit(used, i) && e - i >= n) {
        size_t s = fit(a, i, e, n, align);
        if (s < e) {
          size_t d = range_count(map_of(a, DIRTY), s, n);
          if (d > best_dirty || (d == best_dirty && e - i < best_len)) {
            best = a, best_dirty = d, best_len = e - i;
            *span = i, *span_e = e, *at = s;
            if (d == n && e - i == n)
              return best; /* cannot do better */
          }
        }
      }
      i = e;
    }
  }
  return best;
}

/* ---- the block from a span ----------------------------------------------- */

/* Dirty runs of a block, for calloc: cleared outside the lock. */
enum { ZERO_RUNS = 16 };
struct zero_runs {
  unsigned n;
  struct {
    char *p;
    size_t len;
  } run[ZERO_RUNS];
};

/* The runs of pages of [s, s + n) that may be non-zero, as addresses;
 * past ZERO_RUNS the rest is one run (clearing more is only slower). */
static void collect_dirty(struct arena *a, size_t s, size_t n,
                          struct zero_runs *z) {
  uint64_t *dirty = map_of(a, DIRTY);
  z->n = 0;
  size_t e = s + n;
  for (size_t j = next_set(dirty, s, e); j < e;) {
    size_t k = j;
    while (k < e && bit(dirty, k))
      k++;
    if (z->n == ZERO_RUNS) {
      z->run[ZERO_RUNS - 1].len =
          (size_t)(page_addr(a, e) - z->run[ZERO_RUNS - 1].p);
      return;
    }
    z->run[z->n].p = page_addr(a, j);
    z->run[z->n].len = (k - j) * PAGE;
    z->n++;
    j = next_set(dirty, k, e);
  }
}

/* Whether n pages aligned to align fit in a standard arena. */
static bool fits_standard(size_t n, size_t align) {
  size_t ap = align / PAGE;
  size_t s = (header_pages(SS_PAGES) + ap - 1) / ap * ap;
  return s < SS_PAGES && n <= SS_PAGES - s;
}

/* Gives every wholly free arena back (lock held); whether there was any. */
static bool release_free_arenas(void) {
  bool any = false;
  for (struct arena *a = dirty_head, *next; a; a = next) {
    next = a->dnext;
    if (a->blocks == 0) {
      arena_release(a);
      any = true;
    }
  }
  return any;
}

/* Whether a new block of n pages should open a standard arena: only if
 * blocks of its size fill at least four fifths of one (300 KB blocks: 13,
 * 95 %), so that a block reserves little more than its own size of address
 * space.  Others (1 MiB: 3 would fit, 75 %) get an arena of their own size,
 * whose pages later serve any size just the same. */
static bool packs_standard(size_t n, size_t align) {
  if (!fits_standard(n, align))
    return false;
  size_t k = (SS_PAGES - header_pages(SS_PAGES)) / n;
  return k * n * 5 >= SS_PAGES * 4 || align > PAGE;
}

static struct arena *arena_map(size_t n, size_t align) {
  if (packs_standard(n, align)) {
    size_t dirty;
    void *ss = hak_os_superslab_alloc_dirty(&dirty);
    return ss ? arena_init(ss, SS_PAGES, dirty, true) : NULL;
  }
  size_t pages = n + (align > PAGE ? align / PAGE : 0);
  pages += header_pages(pages + header_pages(pages));
  size_t mapped;
  bool zeroed;
  void *base = hak_os_huge_alloc(pages * PAGE, &mapped, &zeroed);
  if (!base)
    return NULL;
  return arena_init(base, mapped / PAGE, zeroed ? 0 : mapped, false);
}

/* A new arena with room for n pages aligned to align: a standard one
 * (from the superslab cache, resident pages first) if they fit, else one
 * of their size (and the alignment's, as slack).  When the kernel refuses
 * (address space or RLIMIT_AS exhausted), the wholly free arenas kept are
 * the program's to have back first, as libhak-os does with its caches. */
static struct arena *arena_new(size_t n, size_t align) {
  struct arena *a = arena_map(n, align);
  if (!a && release_free_arenas())
    a = arena_map(n, align);
  return a;
}

/* A wholly free, dirty arena too small for n pages grows to fit them, its
 * resident pages moved with it (mremap): fewer pages to fault in than in
 * a new arena.  NULL when there is none. */
static struct arena *arena_grow_free(size_t n) {
  struct arena *best = NULL;
  for (struct arena *a = dirty_head; a; a = a->dnext)
    if (a->blocks == 0 && (!best || a->dirty_pages > best->dirty_pages))
      best = a;
  if (!best)
    return NULL;
  struct arena *a = best;
  size_t pages = n + header_pages(n + header_pages(n));
  if (pages <= a->pages)
    return NULL; /* it would have fitted: alignment */
  size_t old = a->region.size, mapped;
  set_units(a, false);
  void *base = a;
  if (!hak_os_huge_resize(a, old, pages * PAGE, &mapped)) {
    base = hak_os_huge_move(a, old, pages * PAGE, &mapped);
    if (!base) {
      set_units(a, true);
      return NULL;
    }
  }
  a = base;
  /* The lists point at the old address: unlink with the old pointers'
   * neighbours, then relink at the new one. */
  struct arena *dp = a->dprev, *dn = a->dnext, *fp = a->prev, *fn = a->next;
  if (a->in_dirty_list) {
    if (dp)
      dp->dnext = a;
    else
      dirty_head = a;
    if (dn)
      dn->dprev = a;
    else
      dirty_tail = a;
  }
  if (a->in_free_list) {
    if (fp)
      fp->next = a;
    else
      with_free = a;
    if (fn)
      fn->prev = a;
  }
  /* The header grows with the arena: rebuild it as one free span whose
   * old pages stay dirty (the old header's pages are dirty too). */
  size_t old_pages = a->pages;
  arena_bytes -= old_pages * PAGE; /* arena_init counts the new size */
  header_bytes -= a->first * PAGE;
  dirty_bytes -= a->dirty_pages * PAGE;
  dirty_unlink(a);
  a->free_pages = 0;
  free_list_update(a);
  return arena_init(a, mapped / PAGE, old_pages * PAGE, false);
}

/* ---- large and huge blocks --------------------------------------------- */

static size_t guard_pages(void) { return hak_config.guard_pages ? 1 : 0; }

/* A block of size bytes aligned to align; z receives the runs that may be
 * non-zero (for calloc), or NULL. */
static void *big_malloc(size_t size, size_t align, struct zero_runs *z) {
  if (size > SIZE_LIMIT || align >= ALIGN_LIMIT) {
    errno = ENOMEM;
    return NULL;
  }
  if (align < PAGE)
    align = PAGE;
  size_t n = (size + PAGE - 1) / PAGE, guard = guard_pages();
  if (n == 0)
    n = 1;
  pthread_mutex_lock(&lock);
  purge(hak_os_clock_ms());
  size_t i, e, s;
  struct arena *a = find_span(n + guard, align, &i, &e, &s);
  if (!a) {
    a = align <= PAGE ? arena_grow_free(n + guard) : NULL;
    if (!a)
      a = arena_new(n + guard, align);
    if (!a) {
      pthread_mutex_unlock(&lock);
      errno = ENOMEM;
      return NULL;
    }
    i = a->first;
    e = a->pages;
    s = fit(a, i, e, n + guard, align);
    if (s == e) { /* cannot happen: arena_new left room */
      pthread_mutex_unlock(&lock);
      errno = ENOMEM;
      return NULL;
    }
  }
  span_take(a, i, e, s, n + guard);
  if (z)
    collect_dirty(a, s, n, z);
  if (guard) {
    bit_set(map_of(a, GUARD), s);
    hak_os_protect(page_addr(a, s + n), PAGE, false);
  }
  pthread_mutex_unlock(&lock);
  HAK_STAT_PATH(LARGE_MALLOC, 1);
  return page_addr(a, s);
}

/* Every big allocation is a slow path: the sampler is asked here (a block
 * above HAKMEM_GUARD_MAX, or aligned past a page, is not guarded and comes
 * from the arenas). */
static void *guarded(size_t size, size_t align) {
  if (HAK_UNLIKELY(hak_os_guard_sample()))
    return hak_os_guard_alloc(size, align);
  return NULL;
}

void *hak_large_malloc(size_t size, size_t align, bool *zeroed) {
  void *g = guarded(size, align);
  if (g) {
    *zeroed = true;
    return g;
  }
  struct zero_runs z;
  void *p = big_malloc(size, align, &z);
  *zeroed = p && z.n == 0;
  return p;
}

void *hak_large_calloc(size_t size) {
  void *g = guarded(size, 16); /* against the guard, not page-aligned */
  if (g)
    return g; /* all zero */
  struct zero_runs z;
  char *p = big_malloc(size, PAGE, &z);
  if (!p)
    return NULL;
  for (unsigned r = 0; r < z.n; r++) {
    size_t off = (size_t)(z.run[r].p - p);
    if (off >= size)
      break;
    size_t len = z.run[r].len < size - off ? z.run[r].len : size - off;
    (void)hak_os_zero(z.run[r].p, len);
  }
  return p;
}

/* The arena of a block address (NULL: none); no lock needed, the map is
 * read as free reads it. */
static struct arena *arena_of(const void *p) {
  uintptr_t u = (uintptr_t)p >> HAK_SUPERSLAB_SHIFT;
  if (u >= HAK_OS_MAP_UNITS)
    return NULL;
  while (u && hak_os_kind_of((void *)(u << HAK_SUPERSLAB_SHIFT)) ==
                  HAK_REGION_LARGE_TAIL)
    u--;
  if (hak_os_kind_of((void *)(u << HAK_SUPERSLAB_SHIFT)) != HAK_REGION_LARGE)
    return NULL;
  return (struct arena *)(u << HAK_SUPERSLAB_SHIFT);
}

/* The first page of the live block p, checked in the checked builds
 * (called with the lock held); misuse is reported as func's. */
static size_t block_page(struct arena *a, const void *p, const char *func) {
  size_t i = (size_t)((const char *)p - (const char *)a) >> PAGE_SHIFT;
  if (HAK_GATE_CHECK_BLOCK_START) {
    if (!a || ((uintptr_t)p & (PAGE - 1)) || i < a->first || i >= a->pages ||
        !bit(map_of(a, START), i)) {
      pthread_mutex_unlock(&lock);
      hak_misuse(func, "invalid pointer (not the start of a block)", p);
    }
    if (!bit(map_of(a, USED), i)) {
      pthread_mutex_unlock(&lock);
      hak_misuse(func, "invalid pointer or double free (block not in use)", p);
    }
  }
  return i;
}

/* Usable pages of the live block at page i (its guard page excluded). */
static size_t block_pages(struct arena *a, size_t i) {
  return span_end(a, i) - i - (bit(map_of(a, GUARD), i) ? 1 : 0);
}

static void guard_clear(struct arena *a, size_t i) {
  if (bit(map_of(a, GUARD), i)) {
    hak_os_protect(page_addr(a, span_end(a, i) - 1), PAGE, true);
    bit_clear(map_of(a, GUARD), i);
  }
}

/* Frees the live block at page i of a (lock held). */
static void block_free(struct arena *a, size_t i) {
  guard_clear(a, i);
  span_give(a, i, span_end(a, i));
  a->blocks--;
  live_blocks--;
  dirty_touch(a, hak_os_clock_ms());
}

void hak_large_free(void *p) {
  struct arena *a = arena_of(p);
  if (HAK_GATE_CHECK_BLOCK_START && !a)
    hak_misuse("free", "invalid pointer (not the start of a block)", p);
  pthread_mutex_lock(&lock);
  size_t i = block_page(a, p, "free");
  HAK_STAT_PATH(LARGE_FREE, 1);
  block_free(a, i);
  purge(hak_os_clock_ms());
  pthread_mutex_unlock(&lock);
}

size_t hak_large_usable_size(const void *p, const char *func) {
  struct arena *a = arena_of(p);
  if (HAK_GATE_CHECK_BLOCK_START && !a)
    hak_misuse(func, "invalid pointer (not the start of a block)", p);
  pthread_mutex_lock(&lock);
  size_t n = block_pages(a, block_page(a, p, func)) * PAGE;
  pthread_mutex_unlock(&lock);
  return n;
}

/* Grows or shrinks the block at page i of a to n usable pages where it
 * stands (lock held): a shrunk tail becomes a free span, growth takes the
 * free span that follows.  False when it cannot. */
static bool resize_in_place(struct arena *a, size_t i, size_t n) {
  size_t e = span_end(a, i);
  size_t guard = bit(map_of(a, GUARD), i) ? 1 : 0;
  size_t want = i + n + guard;
  if (want == e)
    return true;
  if (want > e) {
    if (e >= a->pages || bit(map_of(a, USED), e))
      return false;
    size_t fe = span_end(a, e);
    if (want > fe)
      return false;
    guard_clear(a, i);
    /* The free span [e, fe) gives its first pages: they join the block. */
    uint64_t *start = map_of(a, START);
    bit_clear(start, e);
    if (want < fe)
      bit_set(start, want);
    size_t d = range_count(map_of(a, DIRTY), e, want - e);
    a->dirty_pages -= d;
    dirty_bytes -= d * PAGE;
    a->free_pages -= want - e;
    live_bytes += (want - e) * PAGE;
    if (live_bytes > peak_live_bytes)
      peak_live_bytes = live_bytes;
    note_committed();
    free_list_update(a);
  } else {
    guard_clear(a, i);
    span_give(a, want, e);
    bit_set(map_of(a, START), want); /* span_give may have joined it to i */
    bit_set(map_of(a, USED), i);
    dirty_touch(a, hak_os_clock_ms());
  }
  if (guard) {
    bit_set(map_of(a, GUARD), i);
    hak_os_protect(page_addr(a, i + n), PAGE, false);
  }
  return true;
}

/* The block at page i of a (no guard page) moves to a new arena of its
 * own of n > SS_PAGES pages, its pages carried over by mremap (lock held):
 * nothing is copied and nothing the block wrote faults again.  NULL when
 * refused. */
static void *move_block(struct arena *a, size_t i, size_t n) {
  size_t old = block_pages(a, i);
  struct arena *b = arena_new(n, PAGE);
  if (!b)
    return NULL;
  if (!hak_os_move_pages(page_addr(a, i), old * PAGE, page_addr(b, b->first))) {
    arena_release(b);
    return NULL;
  }
  span_take(b, b->first, b->pages, b->first, n);
  /* The old pages read as zero now: not dirty. */
  guard_clear(a, i);
  size_t e = span_end(a, i);
  span_give(a, i, e);
  range_set(map_of(a, DIRTY), i, old, false);
  a->dirty_pages -= old;
  dirty_bytes -= old * PAGE;
  a->blocks--;
  live_blocks--;
  dirty_touch(a, hak_os_clock_ms());
  return page_addr(b, b->first);
}

void *hak_large_realloc(void *p, size_t size) {
  if (size > SIZE_LIMIT) {
    errno = ENOMEM;
    return NULL;
  }
  struct arena *a = arena_of(p);
  if (HAK_GATE_CHECK_BLOCK_START && !a)
    hak_misuse("realloc", "invalid pointer (not the start of a block)", p);
  size_t n = (size + PAGE - 1) / PAGE;
  pthread_mutex_lock(&lock);
  size_t i = block_page(a, p, "realloc");
  size_t old = block_pages(a, i);
  void *q = NULL;
  if (resize_in_place(a, i, n)) {
    q = p;
  } else if (old * PAGE >= MOVE_MIN && !bit(map_of(a, GUARD), i) &&
             !fits_standard(n, PAGE)) {
    /* Growing past a standard arena: the pages move into an arena of
     * their own.  Smaller blocks are copied, into resident pages where
     * some are free. */
    q = move_block(a, i, n);
  }
  purge(hak_os_clock_ms());
  pthread_mutex_unlock(&lock);
  if (q)
    return q;
  /* Small, guarded, or the kernel refused a move: a copy. */
  q = big_malloc(size, PAGE, NULL);
  if (!q)
    return NULL;
  memcpy(q, p, (old < n ? old : n) * PAGE);
  hak_large_free(p);
  return q;
}

/* ---- inspection and fork --------------------------------------------------
 */

struct hak_large_info hak_large_info(void) {
  pthread_mutex_lock(&lock);
  struct hak_large_info info = {0, 0, dirty_bytes, live_bytes, retain_limit()};
  for (struct arena *a = with_free; a; a = a->next)
    info.arenas_with_free++;
  for (struct arena *a = dirty_head; a; a = a->dnext)
    info.arenas_dirty++;
  pthread_mutex_unlock(&lock);
  return info;
}

void hak_large_usage(size_t *blocks, size_t *bytes) {
  pthread_mutex_lock(&lock);
  *blocks = live_blocks;
  *bytes = live_bytes;
  pthread_mutex_unlock(&lock);
}

struct hak_large_memory hak_large_memory(void) {
  pthread_mutex_lock(&lock);
  struct hak_large_memory m = {arena_bytes, committed_now(), committed_peak};
  pthread_mutex_unlock(&lock);
  if (m.committed_peak < m.committed)
    m.committed_peak = m.committed; /* arenas set up with dirty pages */
  return m;
}

bool hak_large_reclaim(void) {
  /* Called by libhak-os when the kernel refuses a mapping, for any tier;
   * the large tier itself asks while holding its lock, and has already
   * released its arenas then. */
  if (pthread_mutex_trylock(&lock) != 0)
    return false;
  bool any = release_free_arenas();
  pthread_mutex_unlock(&lock);
  return any;
}

void hak_large_release(void) {
  pthread_mutex_lock(&lock);
  release_free_arenas();
  pthread_mutex_unlock(&lock);
}

void hak_large_purge(void) {
  pthread_mutex_lock(&lock);
  next_due_ms = 0; /* the delay may have changed (tests): look at every arena */
  purge(hak_os_clock_ms());
  pthread_mutex_unlock(&lock);
}

void hak_large_fork_prepare(void) { pthread_mutex_lock(&lock); }
void hak_large_fork_parent(void) { pthread_mutex_unlock(&lock); }
