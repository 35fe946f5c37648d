/* SPDX-License-Identifier: MIT */
/* mid.c - the mid tier: blocks of 1 KiB to 256 KiB.
 *
 * 32 classes, four per doubling (1280, 1536, 1792, 2048, 2560, ...), so the
 * worst internal waste is 25 %.  Blocks come from 1 MiB slabs, four to a
 * superslab.  Each thread keeps a short free list per class (bounded in
 * bytes); misses and overflows go to the class's shared slabs under the
 * class's lock, a batch at a time.  A block freed by another thread simply
 * joins that thread's list: the slabs are shared, so no ownership is needed.
 */
#include "core_internal.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

/* Blocks a slab holds at most: 1 MiB of the smallest class, 1280 bytes. */
#define MID_MAX_BLOCKS (HAK_MID_SLAB_SIZE / 1280 + 1)
#define MID_MAP_WORDS ((MID_MAX_BLOCKS + 63) / 64)

struct mid_slab {
  /* Read by every free and take, written when the slab changes class:
   * kept off the line that takes and puts write under the lock, which
   * another core holds in turn (the free path's one read of the slab, its
   * class, missed there: 21 % of hak_mid_free's samples in server 8
   * threads up to 16 KiB). */
  char *start;
  uint32_t capacity;
  uint32_t block_size;
  uint32_t div_magic; /* ceil(2^32 / block_size) */
  uint16_t cls;
  uint16_t in_use;
  uint32_t touched; /* bytes from the slab's base that may be non-zero (the
                       rest is untouched since mapped or decommitted) */
  /* Written by every take and put, under the class lock. */
  uint32_t nfree __attribute__((aligned(64))); /* bits of free_map */
  uint32_t used; /* blocks out of the slab (live or in thread caches) */
  uint32_t carved;
  /* trim_slab's: the most blocks out since its last look, and how many
   * looks in a row found the slab less than half used. */
  uint32_t used_peak;
  uint32_t sparse_looks;
  /* Takes and puts so far, and purge_holes's: the count it last saw, the
   * looks in a row that found it unchanged. */
  uint32_t changes;
  uint32_t seen_changes;
  uint32_t idle_looks;
  struct mid_slab *next, *prev; /* in the class's list */
  /* Bit i: block i, below `carved`, is back in the slab.  A map rather than
   * a list through the blocks, so that blocks are handed out lowest address
   * first: the blocks in use gather at the slab's start, whatever order
   * they were freed in, and what lies above them can be given back
   * (trim_slab).  Putting a block back writes nothing into it. */
  uint64_t free_map[MID_MAP_WORDS];
  /* Bit i: page i of the slab was cleared by calloc (or found resident by
   * hak_os_zero) since the slab's pages were last given back, so it is
   * resident.  Kept across the slab's classes; only a hint (a page may have
   * been swapped out since), read and set without the lock. */
  uint64_t resident[HAK_MID_SLAB_SIZE / HAK_PAGE_SIZE / 64];
} __attribute__((aligned(64)));

struct mid_superslab {
  struct hak_os_slabset_superslab slabset; /* free and dirty slabs */
  struct mid_slab slabs[HAK_MID_SLABS];
  uint64_t dirty_since_ms[HAK_MID_SLABS]; /* the slab set's */
};

struct mid_class {
  pthread_mutex_t lock;
  struct mid_slab *slabs; /* slabs with a block to give (free or uncarved) */
  /* The one slab with no block out that the class keeps (in `slabs`), so
   * that a class bouncing between zero and a few blocks does not take and
   * release a slab each time; given back when it has stayed empty for the
   * purge delay.  Read without the lock by purge_due: atomics. */
  struct mid_slab *kept;
  uint64_t kept_since_ms;
} __attribute__((aligned(64)));

static struct mid_class classes[HAK_MID_CLASSES];
static pthread_once_t classes_once = PTHREAD_ONCE_INIT;

struct mid_cache {
  void *head;
  uint32_t count;
  uint32_t limit;
};

static __thread struct mid_cache tcache[HAK_MID_CLASSES]
    __attribute__((tls_model("initial-exec")));

static void classes_init(void) {
  for (int i = 0; i < HAK_MID_CLASSES; i++)
    pthread_mutex_init(&classes[i].lock, NULL);
}

static inline unsigned mid_class(size_t n) {
  size_t m = n - 1;
  unsigned k = 63u - (unsigned)__builtin_clzll(m); /* floor(log2(n - 1)) */
  return (k - 10) * 4 + (unsigned)(m >> (k - 2)) - 4;
}

static inline size_t mid_class_size(unsigned cls) {
  unsigned k = cls / 4 + 10;
  return (size_t)(cls % 4 + 5) << (k - 2);
}

static inline struct mid_slab *slab_of(const void *p) {
  struct mid_superslab *ss = (struct mid_superslab *)hak_region_of(p);
  return &ss->slabs[((uintptr_t)p & HAK_SUPERSLAB_MASK) >> HAK_MID_SLAB_SHIFT];
}

/* A slab's first byte: slabs are aligned to their size (slab 0's blocks
 * start past the header). */
static inline char *slab_base(const struct mid_slab *s) {
  return (char *)((uintptr_t)s->start & ~(HAK_MID_SLAB_SIZE - 1));
}

/* Bytes from the slab's first byte to the end of its carved blocks. */
static inline size_t carved_end(const struct mid_slab *s) {
  return (size_t)(s->start - slab_base(s)) + (size_t)s->carved * s->block_size;
}

static inline uint64_t freed_mark(const void *p) {
  return hak_tiny_secret ^ (uintptr_t)p ^ 0x5a5a;
}

/* Free-list links, encoded in checked builds as in the tiny front; a
 * decoded link must lead to another block of a mid region. */
static inline void set_next(void *p, void *next) {
  uintptr_t v = (uintptr_t)next;
  if (HAK_GATE_ENCODE_LINKS)
    v ^= hak_tiny_secret ^ (uintptr_t)p;
  *(uintptr_t *)p = v;
}

static HAK_COLD void corrupt(const void *p) {
  hak_misuse("malloc", "corrupted free list (a freed block was overwritten)",
             p);
}

static inline void *next_of(const void *p) {
  uintptr_t v = *(const uintptr_t *)p;
  if (HAK_GATE_ENCODE_LINKS) {
    v ^= hak_tiny_secret ^ (uintptr_t)p;
    if (v && ((v & 15) || ((uintptr_t)v & HAK_SUPERSLAB_MASK) == 0 ||
              hak_os_kind_checked((void *)v) != HAK_REGION_MID))
      corrupt(p);
  }
  return (void *)v;
}

/* ---- slabs ------------------------------------------------------------ */

/* A superslab just taken from libhak-os: its slabs are free, and touched
 * as far as the extent it comes with. */
static void superslab_adopted(struct hak_os_slabset_superslab *set_ss,
                              size_t dirty) {
  struct mid_superslab *ss = (struct mid_superslab *)set_ss;
  memset(ss->slabs, 0, sizeof ss->slabs);
  if (dirty < HAK_MID_HEADER)
    dirty = HAK_MID_HEADER; /* just written */
  for (unsigned i = 0; i < HAK_MID_SLABS; i++) {
    size_t base = (size_t)i * HAK_MID_SLAB_SIZE;
    size_t n = dirty > base ? dirty - base : 0;
    ss->slabs[i].touched =
        (uint32_t)(n < HAK_MID_SLAB_SIZE ? n : HAK_MID_SLAB_SIZE);
  }
}

/* Decommitted pages read as zero: calloc need not clear them (slab 0's
 * header stays). */
static void slabs_decommitted(struct hak_os_slabset_superslab *set_ss,
                              unsigned first, unsigned n) {
  struct mid_superslab *ss = (struct mid_superslab *)set_ss;
  for (unsigned i = first; i < first + n; i++) {
    ss->slabs[i].touched = i == 0 ? (uint32_t)HAK_MID_HEADER : 0;
    memset(ss->slabs[i].resident, 0, sizeof ss->slabs[i].resident);
  }
}

static size_t slab_resident_bytes(const struct hak_os_slabset_superslab *set_ss,
                                  unsigned i) {
  return ((const struct mid_superslab *)set_ss)->slabs[i].touched;
}

/* The free slabs of the mid tier's superslabs (libhak-os keeps the
 * bookkeeping).  Free slabs keep their pages ("dirty") for the purge delay,
 * so that a batch of blocks freed and allocated again makes no system call
 * and no page fault; after it they are decommitted.  At most 64 of them
 * (64 MiB) stay resident whatever the delay, so that a burst cannot leave
 * more behind. */
static struct hak_os_slabset slabset = {
    .kind = HAK_REGION_MID,
    .slab_shift = HAK_MID_SLAB_SHIFT,
    .slab_count = HAK_MID_SLABS,
    .header = HAK_MID_HEADER,
    .since_offset = offsetof(struct mid_superslab, dirty_since_ms),
    .adopted = superslab_adopted,
    .decommitted = slabs_decommitted,
    .resident_bytes = slab_resident_bytes,
    .dirty_limit = 64,
    .purge_delay_ms = 10,
    HAK_OS_SLABSET_STATE_INIT,
};

void hak_mid_configure(unsigned purge_delay_ms, unsigned dirty_limit) {
  hak_os_slabset_configure(&slabset, dirty_limit, purge_delay_ms);
}

static struct mid_slab *slab_new(unsigned cls) {
  unsigned idx;
  struct mid_superslab *ss =
      (struct mid_superslab *)hak_os_slabset_take(&slabset, &idx);
  if (!ss)
    return NULL;
  struct mid_slab *s = &ss->slabs[idx];
  size_t bs = mid_class_size(cls);
  size_t begin = idx == 0 ? HAK_MID_HEADER : 0;
  s->start = (char *)ss + idx * HAK_MID_SLAB_SIZE + begin;
  s->nfree = 0;
  memset(s->free_map, 0, sizeof s->free_map);
  s->used = 0;
  __atomic_store_n(&s->carved, 0, __ATOMIC_RELAXED);
  s->capacity = (uint32_t)((HAK_MID_SLAB_SIZE - begin) / bs);
  s->block_size = (uint32_t)bs;
  s->div_magic = (uint32_t)((((uint64_t)1 << 32) + bs - 1) / bs);
  s->cls = (uint16_t)cls;
  __atomic_store_n(&s->in_use, 1, __ATOMIC_RELAXED);
  s->next = s->prev = NULL;
  return s;
}

/* A free slab of the big classes keeps its pages for 100 purge delays (a
 * second by default), as the large tier's free pages do, and for the same
 * reason: a program that writes such blocks whole spends time in proportion
 * to their size between two calls, and under load the 10 ms delay gave the
 * slab back before the program came back for it, so that every block
 * faulted its pages in again.  bench_big 64K-256K, 20 live, 20000
 * iterations, standard build on the loaded 2-core VM, three interleaved
 * runs: 15 178-17 414 faults and 1.7-4.9 s with one delay, 2 967-3 402
 * faults and 0.59-0.86 s with 100.  Below 64 KiB (a slab of 16 blocks or
 * more) one delay stays: with 100 for every class the memory left after
 * threads exit grew (bench_threads xthread end RSS 9.0 -> 11.5 MB, server
 * 8 B..16 KiB 10.7 -> 13.8 MB) and the faults did not move. */
#define BIG_CLASS (64 << 10)
#define BIG_CLASS_DELAYS 100

/* Gives an empty slab back; the whole superslab goes back to libhak-os,
 * whose cache applies the same delay to it, when all its slabs are free,
 * with the extent that may be resident (the `touched` marks): the next
 * user knows the rest reads zero and costs no clearing. */
static void slab_release(struct mid_slab *s) {
  struct mid_superslab *ss = (struct mid_superslab *)hak_region_of(s);
  unsigned idx = (unsigned)(s - ss->slabs);
  /* Read without the lock by the checked free: relaxed atomics. */
  __atomic_store_n(&s->in_use, 0, __ATOMIC_RELAXED);
  size_t end = carved_end(s);
  if (end > s->touched)
    s->touched = (uint32_t)end;
  __atomic_store_n(&s->carved, 0, __ATOMIC_RELAXED);
  /* Touched: a slab gives blocks as soon as it is taken. */
  hak_os_slabset_release(&slabset, &ss->slabset, idx, true,
                         s->block_size >= BIG_CLASS ? BIG_CLASS_DELAYS : 1);
}

static void list_push(struct mid_class *c, struct mid_slab *s) {
  s->prev = NULL;
  s->next = c->slabs;
  if (c->slabs)
    c->slabs->prev = s;
  c->slabs = s;
}

static void list_remove(struct mid_class *c, struct mid_slab *s) {
  if (s->prev)
    s->prev->next = s->next;
  else
    c->slabs = s->next;
  if (s->next)
    s->next->prev = s->prev;
  s->next = s->prev = NULL;
}

static bool slab_has_block(const struct mid_slab *s) {
  return s->nfree || s->carved < s->capacity;
}

static inline uint32_t block_index(const struct mid_slab *s, const void *p) {
  /* Exact for offsets below 2^20 (the slab size). */
  uint64_t off = (uint64_t)((const char *)p - s->start);
  return (uint32_t)((off * s->div_magic) >> 32);
}

/* Returns one block to its slab; called with the class lock held. */
static void slab_put(struct mid_class *c, void *p) {
  struct mid_slab *s = slab_of(p);
  bool had = slab_has_block(s);
  uint32_t i = block_index(s, p);
  uint64_t bit = (uint64_t)1 << (i % 64);
  if (HAK_GATE_CHECKS && HAK_UNLIKELY(s->free_map[i / 64] & bit))
    hak_misuse("free", "double free", p);
  s->free_map[i / 64] |= bit;
  s->nfree++;
  s->changes++;
  if (!had)
    list_push(c, s);
  if (--s->used == 0) {
    if (c->kept) {
      list_remove(c, s);
      slab_release(s);
    } else {
      c->kept_since_ms = hak_os_clock_ms();
      __atomic_store_n(&c->kept, s, __ATOMIC_RELAXED);
    }
  }
}

/* Gives back the class's kept empty slab if it has stayed empty since
 * `before` (UINT64_MAX: whatever its age); the class lock held. */
static bool release_kept(struct mid_class *c, uint64_t before) {
  struct mid_slab *s = c->kept;
  if (!s || c->kept_since_ms > before)
    return false;
  __atomic_store_n(&c->kept, NULL, __ATOMIC_RELAXED);
  list_remove(c, s);
  slab_release(s);
  return true;
}

/* Takes up to n blocks of class cls onto a list; returns how many.
 * *head_fresh: whether the list's first block is fresh, carved from pages
 * untouched since they were mapped or decommitted (it reads zero but for
 * its link).  Only that block's freshness is kept: the others wait in the
 * thread's list, where a bit per block would cost the malloc fast path. */
static unsigned take_blocks(unsigned cls, unsigned n, void **list,
                            bool *head_fresh) {
  struct mid_class *c = &classes[cls];
  unsigned got = 0;
  void *head = NULL;
  pthread_mutex_lock(&c->lock);
  while (got < n) {
    struct mid_slab *s = c->slabs;
    if (!s) {
      s = slab_new(cls);
      if (!s)
        break;
      list_push(c, s);
    }
    if (s == c->kept)
      __atomic_store_n(&c->kept, NULL, __ATOMIC_RELAXED);
    char *base = slab_base(s);
    unsigned w = 0;
    while (got < n && slab_has_block(s)) {
      uint32_t i;
      bool fresh = false;
      if (s->nfree) { /* the lowest block put back: below any uncarved */
        while (!s->free_map[w])
          w++;
        i = w * 64 + (uint32_t)__builtin_ctzll(s->free_map[w]);
        s->free_map[w] &= s->free_map[w] - 1;
        s->nfree--;
      } else {
        i = s->carved;
        __atomic_store_n(&s->carved, i + 1, __ATOMIC_RELAXED);
        fresh =
            (size_t)(s->start - base) + (size_t)i * s->block_size >= s->touched;
      }
      void *p = s->start + (size_t)i * s->block_size;
      if (++s->used > s->used_peak)
        s->used_peak = s->used;
      set_next(p, head);
      *head_fresh = fresh;
      head = p;
      got++;
    }
    s->changes++;
    if (!slab_has_block(s))
      list_remove(c, s);
  }
  pthread_mutex_unlock(&c->lock);
  *list = head;
  return got;
}

static void put_blocks(unsigned cls, void *list) {
  struct mid_class *c = &classes[cls];
  pthread_mutex_lock(&c->lock);
  while (list) {
    void *next = next_of(list);
    slab_put(c, list);
    list = next;
  }
  pthread_mutex_unlock(&c->lock);
}

/* ---- allocation ------------------------------------------------------- */

/* Set once the thread's lists were flushed at exit: frees from later
 * destructors then go straight back to the slabs, or they would be lost. */
static __thread bool exited __attribute__((tls_model("initial-exec")));

static uint32_t cache_limit(unsigned cls) {
  if (exited)
    return 0;
  size_t n = (hak_config.mid_cache_kb << 10) / mid_class_size(cls);
  return n < 1 ? 1 : n > 64 ? 64 : (uint32_t)n;
}

/* The delayed purge of every tier below, from the mid tier's slow paths
 * that take no slab: a thread whose calls are served by its lists and
 * partly used slabs would otherwise keep, for as long as it runs, the
 * pages that threads which have exited gave back. */
static uint64_t kept_checked_ms; /* when purge_due last looked at them */

/* The blocks in use gather at a slab's start (free_map), but its pages
 * stay resident as far as its carving once reached: after a burst, by
 * threads that have exited for instance, a few blocks in use keep a whole
 * slab's pages.  So a slab that stayed less than half in use for a whole
 * purge delay (100 in the big classes, as their free slabs) is trimmed:
 * carving is set back to just past its last block in use, and the pages
 * above are given back.  The class lock held; from purge_due, once per
 * delay. */
#define TRIM_SLACK ((size_t)64 << 10) /* less is not worth a system call */

static void trim_slab(struct mid_slab *s) {
  uint32_t peak = s->used_peak;
  s->used_peak = s->used;
  char *base = slab_base(s);
  size_t begin = (size_t)(s->start - base), bs = s->block_size;
  size_t reach = carved_end(s);
  if (s->touched > reach)
    reach = s->touched;
  if (s->used == 0 || (size_t)peak * bs * 2 > reach - begin ||
      reach < begin + 2 * TRIM_SLACK) {
    s->sparse_looks = 0; /* the kept slab is release_kept's */
    return;
  }
  if (++s->sparse_looks < (bs >= BIG_CLASS ? BIG_CLASS_DELAYS : 1))
    return;
  uint32_t top = s->carved; /* one past the last block in use */
  while (top && (s->free_map[(top - 1) / 64] >> ((top - 1) % 64) & 1)) {
    top--;
    s->free_map[top / 64] &= ~((uint64_t)1 << (top % 64));
    s->nfree--;
  }
  /* The blocks above `top` were written: carving them again must not take
   * them for fresh. */
  s->touched = (uint32_t)reach;
  __atomic_store_n(&s->carved, top, __ATOMIC_RELAXED);
  size_t end =
      (begin + top * bs + HAK_PAGE_SIZE - 1) & ~(size_t)(HAK_PAGE_SIZE - 1);
  if (end + TRIM_SLACK > reach)
    return;
  hak_os_decommit(base + end, reach - end);
  s->touched = (uint32_t)end;
  size_t pg = end / HAK_PAGE_SIZE; /* the resident hints from there on */
  for (size_t w = pg / 64; w < sizeof s->resident / sizeof *s->resident; w++)
    __atomic_fetch_and(&s->resident[w],
                       w == pg / 64 ? ~(~(uint64_t)0 << (pg % 64)) : 0,
                       __ATOMIC_RELAXED);
}

/* The resident hints of pages [first, end) of a slab are cleared. */
static void forget_resident(struct mid_slab *s, size_t first, size_t end) {
  for (size_t pg = first; pg < end; pg++)
    if (__atomic_load_n(&s->resident[pg / 64], __ATOMIC_RELAXED) >> (pg % 64) &
        1)
      __atomic_fetch_and(&s->resident[pg / 64], ~((uint64_t)1 << (pg % 64)),
                         __ATOMIC_RELAXED);
}

/* Gives back the pages that lie wholly inside runs of blocks back in the
 * slab, and returns their bytes.  trim_slab gives back only what lies above
 * the last block in use; this gives back the holes below it too, where
 * blocks that a thread left behind sit between blocks still in use (a
 * server's connections that outlive their thread, the last blocks of a
 * pool's exited threads).  The blocks stay in the free map: one taken from
 * a page given back faults it in again, zeroed, as a block carved afresh
 * would.  The class lock held. */
static size_t give_back_holes(struct mid_slab *s) {
  char *base = slab_base(s);
  size_t begin = (size_t)(s->start - base), bs = s->block_size, bytes = 0;
  uint32_t carved = s->carved;
  for (uint32_t i = 0; i < carved;) {
    if (!(s->free_map[i / 64] >> (i % 64) & 1)) {
      i++;
      continue;
    }
    uint32_t j = i + 1;
    while (j < carved && (s->free_map[j / 64] >> (j % 64) & 1))
      j++;
    size_t lo =
        (begin + i * bs + HAK_PAGE_SIZE - 1) & ~(size_t)(HAK_PAGE_SIZE - 1);
    size_t hi = (begin + j * bs) & ~(size_t)(HAK_PAGE_SIZE - 1);
    if (j == carved) { /* the last run: up to what may have been written */
      size_t reach = s->touched > begin + j * bs ? s->touched : begin + j * bs;
      hi = (reach + HAK_PAGE_SIZE - 1) & ~(size_t)(HAK_PAGE_SIZE - 1);
    }
    if (hi > lo) {
      hak_os_decommit(base + lo, hi - lo);
      forget_resident(s, lo / HAK_PAGE_SIZE, hi / HAK_PAGE_SIZE);
      bytes += hi - lo;
      if (j == carved) /* all from lo on reads zero */
        s->touched = (uint32_t)lo;
    }
    i = j;
  }
  return bytes;
}

/* The holes of a slab in use go back once nobody took or put a block of it
 * for a purge delay (100 in the big classes, as their free slabs), once per
 * quiet spell: the pages are gone after the first time.  An empty slab is
 * release_kept's or the slab set's.  From purge_due, once per delay. */
static void purge_holes(struct mid_slab *s) {
  if (s->changes != s->seen_changes) {
    s->seen_changes = s->changes;
    s->idle_looks = 0;
    return;
  }
  if (s->nfree && s->used &&
      ++s->idle_looks == (s->block_size >= BIG_CLASS ? BIG_CLASS_DELAYS : 1))
    give_back_holes(s);
}

/* The slabs of a class that trim_slab looks at per delay: the head of its
 * list, which blocks are taken from, and so where a burst's slabs end up;
 * and those that purge_holes looks at (a bound on the work done under the
 * class lock). */
#define TRIM_LOOKS 4
#define PURGE_LOOKS 64

static void purge_due(void) {
  uint64_t now = hak_os_clock_ms();
  unsigned delay = slabset.purge_delay_ms;
  /* The classes' kept empty slabs and sparse slabs, once per delay; a class
   * whose lock is busy is in use and is left for the next look. */
  if (now - __atomic_load_n(&kept_checked_ms, __ATOMIC_RELAXED) >= delay) {
    __atomic_store_n(&kept_checked_ms, now, __ATOMIC_RELAXED);
    pthread_once(&classes_once, classes_init);
    for (unsigned cls = 0; cls < HAK_MID_CLASSES; cls++) {
      struct mid_class *c = &classes[cls];
      if (pthread_mutex_trylock(&c->lock) == 0) {
        release_kept(c, now - delay);
        struct mid_slab *s = c->slabs;
        for (int i = 0; s && i < PURGE_LOOKS; i++, s = s->next) {
          if (i < TRIM_LOOKS)
            trim_slab(s);
          purge_holes(s);
        }
        pthread_mutex_unlock(&c->lock);
      }
    }
  }
  hak_os_slabset_purge(&slabset, now);
  hak_tiny_purge_due(now);
}

/* Refills of this thread; every 8th looks at the purge (the clock costs a
 * tenth of a refill, and a purge late by a few refills changes nothing). */
static __thread unsigned refills __attribute__((tls_model("initial-exec")));

/* size: what was asked for, for a guarded block (hak_os_guard_sample picks
 * this allocation): returned instead of a refill, the list left empty so
 * that the next malloc of the class comes back here. */
static HAK_COLD void *refill(unsigned cls, size_t size, bool *fresh) {
  if (HAK_UNLIKELY(hak_os_guard_sample())) {
    void *g = hak_os_guard_alloc(size, 16);
    if (g) {
      *fresh = true; /* all zero */
      return g;
    }
  }
  pthread_once(&classes_once, classes_init);
  if (++refills % 8 == 0)
    purge_due();
  struct mid_cache *t = &tcache[cls];
  if (!t->limit)
    t->limit = cache_limit(cls);
  void *list;
  unsigned n =
      take_blocks(cls, t->limit > 1 ? (t->limit + 1) / 2 : 1, &list, fresh);
  if (!n) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = list;
  t->head = next_of(list);
  t->count = n - 1;
  return p;
}

/* *fresh: whether the block is known to read zero past its first two words
 * (the link and the freed marker). */
static inline void *malloc_class(unsigned cls, size_t size, bool *fresh) {
  struct mid_cache *t = &tcache[cls];
  void *p = t->head;
  *fresh = false;
  if (HAK_UNLIKELY(!p)) {
    p = refill(cls, size, fresh);
    if (!p)
      return NULL;
  } else {
    t->head = next_of(p);
    t->count--;
  }
  if (HAK_GATE_CHECK_DOUBLE_FREE)
    ((uint64_t *)p)[1] = 0;
  HAK_STAT_PATH(MID_MALLOC, 1);
  return p;
}

/* The miss of hak_mid_malloc, out of line and given the size alone (in the
 * register it came in), so that the fast path keeps nothing alive for it:
 * the refill needs the size for a guarded block. */
static HAK_COLD void *mid_malloc_miss(size_t size) {
  bool fresh;
  return malloc_class(mid_class(size), size, &fresh);
}

void *hak_mid_malloc(size_t size) {
  unsigned cls = mid_class(size);
  if (HAK_UNLIKELY(!tcache[cls].head))
    return mid_malloc_miss(size);
  bool fresh;
  return malloc_class(cls, size, &fresh);
}

/* Whether every page of block [p, p + n) is marked in its slab's
 * `resident` map; with set, marks them instead. */
static bool resident_pages(const void *p, size_t n, bool set) {
  uint64_t *map = slab_of(p)->resident;
  size_t first = ((uintptr_t)p & (HAK_MID_SLAB_SIZE - 1)) / HAK_PAGE_SIZE;
  size_t last =
      (((uintptr_t)p + n - 1) & (HAK_MID_SLAB_SIZE - 1)) / HAK_PAGE_SIZE;
  for (size_t w = first / 64; w <= last / 64; w++) {
    uint64_t bits = ~(uint64_t)0;
    if (w == first / 64)
      bits &= ~(uint64_t)0 << (first % 64);
    if (w == last / 64 && last % 64 != 63)
      bits &= ((uint64_t)1 << (last % 64 + 1)) - 1;
    if (set) {
      if ((__atomic_load_n(&map[w], __ATOMIC_RELAXED) & bits) != bits)
        __atomic_fetch_or(&map[w], bits, __ATOMIC_RELAXED);
    } else if ((__atomic_load_n(&map[w], __ATOMIC_RELAXED) & bits) != bits) {
      return false;
    }
  }
  return true;
}

void *hak_mid_calloc(size_t size) {
  bool fresh;
  void *p = malloc_class(mid_class(size), size, &fresh);
  if (!p)
    return NULL;
  /* A fresh block was written only where its links go. */
  if (fresh) {
    memset(p, 0, 2 * sizeof(uint64_t));
    return p;
  }
  /* A big block may hold pages nobody wrote, which hak_os_zero leaves
   * untouched, at the price of asking the kernel; pages that calloc
   * cleared before (in this class or another) are resident and need no
   * asking. */
  if (size < HAK_OS_ZERO_PROBE || resident_pages(p, size, false))
    memset(p, 0, size);
  else if (!hak_os_zero(p, size))
    return p;
  resident_pages(p, size, true);
  return p;
}

void *hak_mid_malloc_aligned(size_t size, size_t align, bool *fits) {
  /* Slabs start 64 KiB-aligned, so a block is aligned to the largest power
   * of two dividing its class size: find the first class that is a
   * multiple of align. */
  size_t n = (size + align - 1) & ~(align - 1);
  *fits = false;
  if (align > HAK_MID_SLAB_SIZE / 16 || n > HAK_MID_MAX)
    return NULL;
  for (unsigned cls = mid_class(n <= HAK_TINY_MAX ? HAK_TINY_MAX + 1 : n);
       cls < HAK_MID_CLASSES; cls++) {
    if ((mid_class_size(cls) & (align - 1)) == 0) {
      *fits = true;
      bool fresh;
      return malloc_class(cls, n, &fresh);
    }
  }
  return NULL;
}

static HAK_COLD void bad_free(const void *p, const char *what) {
  hak_misuse("free", what, p);
}

void hak_mid_free(void *p) {
  struct mid_slab *s = slab_of(p);
  if (HAK_GATE_CHECK_BLOCK_START) {
    uintptr_t off = (uintptr_t)((char *)p - s->start);
    uint32_t idx = block_index(s, p);
    if (!__atomic_load_n(&s->in_use, __ATOMIC_RELAXED) ||
        (char *)p < s->start || off >= HAK_MID_SLAB_SIZE ||
        (size_t)idx * s->block_size != off ||
        idx >= __atomic_load_n(&s->carved, __ATOMIC_RELAXED))
      bad_free(p, "invalid pointer (not the start of a block)");
  }
  if (HAK_GATE_CHECK_DOUBLE_FREE) {
    if (((uint64_t *)p)[1] == freed_mark(p))
      bad_free(p, "double free");
    ((uint64_t *)p)[1] = freed_mark(p);
  }
  HAK_STAT_PATH(MID_FREE, 1);
  unsigned cls = s->cls;
  struct mid_cache *t = &tcache[cls];
  set_next(p, t->head);
  t->head = p;
  if (HAK_UNLIKELY(++t->count > t->limit)) {
    if (!t->limit) /* first use of this class on this thread */
      t->limit = cache_limit(cls);
    if (t->count > t->limit) {
      /* Give back the older half of the list. */
      uint32_t keep = t->limit / 2;
      void *q = t->head;
      for (uint32_t i = 1; i < keep; i++)
        q = next_of(q);
      void *rest = keep ? next_of(q) : t->head;
      if (keep)
        set_next(q, NULL);
      else
        t->head = NULL;
      t->count = keep;
      pthread_once(&classes_once, classes_init);
      put_blocks(cls, rest);
    }
  }
}

size_t hak_mid_usable_size(const void *p) { return slab_of(p)->block_size; }

size_t hak_mid_good_size(size_t size) {
  return mid_class_size(mid_class(size));
}

size_t hak_mid_block_offset(const void *p) {
  const struct mid_slab *s = slab_of(p);
  if (!__atomic_load_n(&s->in_use, __ATOMIC_RELAXED) ||
      (const char *)p < s->start)
    return SIZE_MAX;
  size_t off = (size_t)((const char *)p - s->start);
  if (off >=
      (size_t)__atomic_load_n(&s->carved, __ATOMIC_RELAXED) * s->block_size)
    return SIZE_MAX;
  return off % s->block_size;
}

bool hak_mid_is_freed(const void *p) {
  return ((const uint64_t *)p)[1] == freed_mark(p);
}

unsigned hak_mid_dirty_slabs(void) {
  return hak_os_slabset_info(&slabset).slabs_dirty;
}

/* The calling thread's lists go back to their slabs. */
static void flush_thread_lists(void) {
  for (unsigned cls = 0; cls < HAK_MID_CLASSES; cls++) {
    struct mid_cache *t = &tcache[cls];
    if (t->head) {
      pthread_once(&classes_once, classes_init);
      put_blocks(cls, t->head);
    }
    t->head = NULL;
    t->count = 0;
  }
}

void hak_mid_thread_exit(void) {
  exited = true;
  flush_thread_lists();
  for (unsigned cls = 0; cls < HAK_MID_CLASSES; cls++)
    tcache[cls].limit = 0;
  purge_due();
}

/* One superslab's part of hak_mid_usage (the set's lock held). */
static void usage_of_superslab(void *arg,
                               struct hak_os_slabset_superslab *set_ss,
                               uint64_t slabs) {
  struct hak_mid_usage *u = arg;
  struct mid_superslab *ss = (struct mid_superslab *)set_ss;
  for (; slabs; slabs &= slabs - 1) {
    const struct mid_slab *s = &ss->slabs[__builtin_ctzll(slabs)];
    size_t carved = __atomic_load_n(&s->carved, __ATOMIC_RELAXED);
    size_t used = __atomic_load_n(&s->used, __ATOMIC_RELAXED);
    if (used > carved)
      used = carved;
    u->in_use += used * s->block_size;
    u->free += (carved - used) * s->block_size;
    u->live_blocks[s->cls] += used;
    u->free_blocks[s->cls] += carved - used;
  }
}

void hak_mid_usage(struct hak_mid_usage *u) {
  memset(u, 0, sizeof *u);
  hak_os_slabset_walk(&slabset, usage_of_superslab, u);
  /* The calling thread's lists hold blocks the slabs count as out. */
  for (unsigned cls = 0; cls < HAK_MID_CLASSES; cls++) {
    size_t n = tcache[cls].count;
    n = n < u->live_blocks[cls] ? n : u->live_blocks[cls];
    u->live_blocks[cls] -= n;
    u->free_blocks[cls] += n;
    u->in_use -= n * mid_class_size(cls);
    u->free += n * mid_class_size(cls);
  }
  struct hak_os_slabset_info set = hak_os_slabset_info(&slabset);
  u->dirty_bytes = (size_t)set.slabs_dirty * HAK_MID_SLAB_SIZE;
  u->free += u->dirty_bytes;
  u->mapped = (size_t)set.superslabs * HAK_SUPERSLAB_SIZE;
  u->committed = set.committed;
  u->committed_peak = set.committed_peak;
}

size_t hak_mid_class_size(unsigned cls) { return mid_class_size(cls); }

void hak_mid_purge(void) { purge_due(); }

size_t hak_mid_trim(void) {
  /* The calling thread's lists go back to their slabs first, and the
   * classes' kept empty slabs to the slab set, so that all are free to
   * give back. */
  flush_thread_lists();
  pthread_once(&classes_once, classes_init);
  size_t bytes = 0;
  for (unsigned cls = 0; cls < HAK_MID_CLASSES; cls++) {
    struct mid_class *c = &classes[cls];
    pthread_mutex_lock(&c->lock);
    release_kept(c, UINT64_MAX);
    for (struct mid_slab *s = c->slabs; s; s = s->next)
      if (s->used)
        bytes += give_back_holes(s);
    pthread_mutex_unlock(&c->lock);
  }
  return bytes + hak_os_slabset_purge_all(&slabset);
}

bool hak_mid_keeps_empty_slab(size_t size) {
  return __atomic_load_n(&classes[mid_class(size)].kept, __ATOMIC_RELAXED);
}

void hak_mid_fork_prepare(void) {
  pthread_once(&classes_once, classes_init);
  for (int i = 0; i < HAK_MID_CLASSES; i++)
    pthread_mutex_lock(&classes[i].lock);
  pthread_mutex_lock(&slabset.lock);
}

void hak_mid_fork_parent(void) {
  pthread_mutex_unlock(&slabset.lock);
  for (int i = HAK_MID_CLASSES - 1; i >= 0; i--)
    pthread_mutex_unlock(&classes[i].lock);
}
