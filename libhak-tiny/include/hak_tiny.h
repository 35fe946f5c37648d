/* SPDX-License-Identifier: MIT */
/* hak_tiny.h - libhak-tiny: the tiny front, blocks of 1 to 1024 bytes.
 *
 * 48 size classes: every 16 bytes up to 512, every 32 bytes up to 1024
 * (classes.c says why).  The class of a size n is a byte table indexed by
 * (n - 1) / 16: no branch, no loop.  Worst-case internal waste: 15 bytes
 * per block up to 512, 31 above (under 6 %).
 *
 * Blocks live in 64 KiB slabs carved from 4 MiB superslabs (libhak-os).  Each
 * thread has a heap in thread-local storage (initial-exec, so no
 * __tls_get_addr even in the shared library) holding, per class, a free list
 * and the slab it comes from.  malloc pops that list; free by the owning
 * thread pushes onto it.  Everything else is out of line.
 *
 * The fast paths are inline here so that libhak-core compiles them into
 * hak_malloc and hak_free directly.
 */
#ifndef HAK_TINY_H
#define HAK_TINY_H

#include "hak_os.h"
#include "hak_stats.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HAK_TINY_MAX 1024
#define HAK_TINY_CLASSES 48
#define HAK_TINY_SLAB_SHIFT 16 /* 64 KiB slabs */
#define HAK_TINY_SLAB_SIZE ((size_t)1 << HAK_TINY_SLAB_SHIFT)
#define HAK_TINY_SLABS (HAK_SUPERSLAB_SIZE / HAK_TINY_SLAB_SIZE)

/* Slab owners that are not heaps.  Heap ids start at 1, and 0 is the id of a
 * thread whose heap is not yet set up, so neither ever matches a slab. */
#define HAK_TINY_OWNER_NONE UINT64_MAX /* slab free in its superslab */
#define HAK_TINY_OWNER_ABANDONED (UINT64_MAX - 1) /* its thread exited */
/* The owner word is the slab's whole state:
 *   id                a heap's current slab of its class (fast free: onto
 *                     the class's list);
 *   id | IDLE         one of its partial slabs (fast free: onto the slab's
 *                     own list);
 *   id | IDLE | FULL  one of its full slabs (slow free: moves it to the
 *                     partial queue, so that refill finds it);
 *   NONE, ABANDONED   free in its superslab, or left by an exited thread
 *                     (both have IDLE and FULL set, so never match). */
#define HAK_TINY_OWNER_IDLE ((uint64_t)1 << 62)
#define HAK_TINY_OWNER_FULL ((uint64_t)1 << 61)

/* Per-slab metadata: one cache line, in the superslab header. */
struct hak_tiny_slab {
  uint64_t owner; /* heap id and state (above); read by every free */
  uint32_t cls;
  uint32_t block_size;
  void *free;         /* local free list while the slab is not current */
  void *remote;       /* frees from other threads (atomic push, swap-all) */
  uint32_t used;      /* blocks out of the slab: live, or in remote list */
  uint32_t carved;    /* bytes carved so far from the slab's start */
  uint64_t div_check; /* floor((2^64 - 1) / block_size) + 1 (see below) */
  struct hak_tiny_slab *next, *prev; /* in a heap's or the abandoned list */
} __attribute__((aligned(64)));

/* A superslab as the tiny front lays it out: header and slab table in slab
 * 0 (whose blocks are never used), slabs 1..63 for blocks. */
struct hak_tiny_superslab {
  struct hak_os_slabset_superslab slabset; /* free and dirty slabs (slab.c) */
  struct hak_tiny_slab slabs[HAK_TINY_SLABS] __attribute__((aligned(64)));
  uint64_t dirty_since_ms[HAK_TINY_SLABS]; /* the slab set's */
};

/* A heap's hot part is the first 7 cache lines: one list head per class,
 * then the two words every free reads. */
struct hak_tiny_heap {
  void *free[HAK_TINY_CLASSES]; /* blocks to hand out, all from cur[cls] */
  uint64_t id;                  /* 0 until set up */
  uint64_t key; /* hak_tiny_secret, copied here so that the checked fast
                   paths read it %fs-relative, next to `id` */
  /* Cold: the slab each class allocates from, and the other slabs. */
  struct hak_tiny_slab *cur[HAK_TINY_CLASSES];
  /* Slabs with free blocks, a queue: a slab that gains a free block joins at
   * the tail and refill takes the head, so a slab waits and gathers frees
   * before it is taken (taken at once, it would give one block and be full
   * again). */
  struct hak_tiny_slab *partial[HAK_TINY_CLASSES];
  struct hak_tiny_slab *partial_tail[HAK_TINY_CLASSES];
  struct hak_tiny_slab *full[HAK_TINY_CLASSES]; /* without */
  int exited;
};

extern __thread struct hak_tiny_heap hak_tiny_heap
    __attribute__((tls_model("initial-exec")));

/* Sets up what every heap shares (the secret, the thread-exit key).  Runs
 * once; called by the first heap and by libhak-core's start-up, so that the
 * secret is fixed before any tier encodes a free-list link with it. */
HAK_INTERNAL void hak_tiny_init(void);

/* Out-of-line paths.  Refill is given the size asked for (1..1024) and
 * finds its class again: n is still in the register it came in, so the
 * fast path keeps nothing alive for the call.  When the guard sampler picks
 * the allocation (hak_os_guard_sample), refill returns a guarded block of
 * exactly n bytes instead, leaving the class's list empty, so that the next
 * malloc of the class comes back here. */
HAK_INTERNAL void *hak_tiny_refill(size_t n);
HAK_INTERNAL void hak_tiny_free_slow(void *p, struct hak_tiny_slab *s);
HAK_INTERNAL void hak_tiny_slab_emptied(struct hak_tiny_slab *s);
HAK_INTERNAL __attribute__((noreturn)) void
hak_tiny_bad_free(const void *p, struct hak_tiny_slab *s);

/* A freed block's link was overwritten: report and abort. */
HAK_INTERNAL __attribute__((noreturn)) void hak_tiny_corrupt(const void *p);

/* Per-process secret the checked builds encode free-list links with and
 * mark freed blocks with.  Its top bit is set, so it is never a pointer. */
HAK_INTERNAL extern uint64_t hak_tiny_secret;

/* Class of each 16-byte step of the size, (n - 1) >> 4: one byte load from
 * a line that stays hot.  Block sizes in hak_tiny_class_sizes. */
HAK_INTERNAL extern const uint8_t hak_tiny_class_of[HAK_TINY_MAX / 16];
HAK_INTERNAL extern const uint32_t hak_tiny_class_sizes[HAK_TINY_CLASSES];

static inline unsigned hak_tiny_class(size_t n) {
  return hak_tiny_class_of[(n - 1) >> 4];
}
static inline size_t hak_tiny_class_size(unsigned cls) {
  return hak_tiny_class_sizes[cls];
}

/* Free-list links.  Checked builds store a link as next ^ p ^ key (key: the
 * secret), so a heap overflow into a freed block cannot plant a pointer of
 * its choosing.  Every list holds blocks of one slab only, so a link is NULL
 * or a block of p's own 64 KiB slab: word ^ key is `next ^ p`, below 2^16,
 * or p itself for NULL; anything else was overwritten. */
static inline void hak_tiny_link_set(void *p, void *next, uint64_t key) {
  uintptr_t v = (uintptr_t)next;
  if (HAK_GATE_ENCODE_LINKS)
    v ^= key ^ (uintptr_t)p;
  *(uintptr_t *)p = v;
}

static inline void *hak_tiny_link_get(const void *p, uint64_t key) {
  uintptr_t v = *(const uintptr_t *)p;
  if (!HAK_GATE_ENCODE_LINKS)
    return (void *)v;
  uintptr_t t = v ^ key; /* next ^ p */
  if (HAK_UNLIKELY(t >= HAK_TINY_SLAB_SIZE && t != (uintptr_t)p))
    hak_tiny_corrupt(p);
  return (void *)(t ^ (uintptr_t)p);
}

/* The freed-block marker (checked builds): a freed block's second word holds
 * the key, and malloc clears it.  A free that finds it is a double free; a
 * program cannot store it by accident, as it does not know it. */
static inline void hak_tiny_mark_freed(void *p, uint64_t key) {
  if (HAK_GATE_CHECK_DOUBLE_FREE)
    ((uint64_t *)p)[1] = key;
}
static inline void hak_tiny_mark_live(void *p) {
  if (HAK_GATE_CHECK_DOUBLE_FREE)
    ((uint64_t *)p)[1] = 0;
}

/* The same, with the process-wide secret, for the slow paths. */
static inline void hak_tiny_set_next(void *p, void *next) {
  hak_tiny_link_set(p, next, hak_tiny_secret);
}
static inline void *hak_tiny_next(const void *p) {
  return hak_tiny_link_get(p, hak_tiny_secret);
}

/* malloc of 1 <= n <= HAK_TINY_MAX bytes.  The list head is named through
 * the TLS variable each time rather than through a pointer, so the compiler
 * addresses it %fs-relative instead of materialising the thread pointer. */
static inline void *hak_tiny_malloc(size_t n) {
  size_t cls = hak_tiny_class(n); /* size_t: no zero-extension to index */
  void *p = hak_tiny_heap.free[cls];
  if (HAK_UNLIKELY(p == NULL))
    return hak_tiny_refill(n);
  hak_tiny_heap.free[cls] = hak_tiny_link_get(p, hak_tiny_heap.key);
  hak_tiny_mark_live(p);
  HAK_STAT_PATH(TINY_MALLOC, 1);
  HAK_STAT_CLASS_MALLOC(cls);
  return p;
}

/* The slab metadata of a tiny block: the slab's index, taken from the
 * pointer's bits already scaled by the 64-byte entry size. */
static inline struct hak_tiny_slab *hak_tiny_slab_of(const void *p) {
  uintptr_t ss = (uintptr_t)hak_region_of(p);
  uintptr_t scaled = ((uintptr_t)p >> (HAK_TINY_SLAB_SHIFT - 6)) &
                     ((uintptr_t)(HAK_TINY_SLABS - 1) << 6);
  _Static_assert(sizeof(struct hak_tiny_slab) == 64, "slab entry is one line");
  return (struct hak_tiny_slab *)(ss +
                                  offsetof(struct hak_tiny_superslab, slabs) +
                                  scaled);
}

/* Whether p is the start of a carved block of slab s (checked builds).  An
 * offset below 2^32 is a multiple of the block size d exactly when
 * off * c < c (mod 2^64), c = floor((2^64 - 1) / d) + 1 (Lemire, Kaser and
 * Kurz, "Faster remainder by direct computation"): one multiply. */
static inline bool hak_tiny_is_block_start(const struct hak_tiny_slab *s,
                                           const void *p) {
  uint64_t off = (uintptr_t)p & (HAK_TINY_SLAB_SIZE - 1);
  /* carved grows under the owner while any thread may free: relaxed. */
  return off * s->div_check < s->div_check &&
         off < __atomic_load_n(&s->carved, __ATOMIC_RELAXED);
}

/* Whether freeing p into slab s is misuse (checked builds): a pointer that
 * is not a block this slab handed out (interior, slab 0, a free slab), or a
 * double free.  The marker is read only once p is known to be a block start
 * (so never past the end of a superslab); without that check, 16-byte
 * aligned. */
static inline bool hak_tiny_bad_free_of(const struct hak_tiny_slab *s,
                                        const void *p, uint64_t key) {
  if (HAK_GATE_CHECK_BLOCK_START && !hak_tiny_is_block_start(s, p))
    return true;
  if (HAK_GATE_CHECK_DOUBLE_FREE) {
    uintptr_t at = HAK_GATE_CHECK_BLOCK_START ? (uintptr_t)p
                                              : (uintptr_t)p & ~(uintptr_t)15;
    return ((const uint64_t *)at)[1] == key;
  }
  return false;
}

/* free of a block in a tiny region.  The owner word alone routes it:
 *  - the heap's id: the slab is this thread's current slab of its class,
 *    the block goes onto the class's list;
 *  - id | IDLE: one of its partial slabs, the block goes onto the slab's own
 *    list (inline too: at large working sets this is as common);
 *  - anything else (another thread, full, abandoned, free): the slow path.
 * Either way the owner test comes first, so the checks read a valid class
 * and the heap's key is set. */
static inline void hak_tiny_free(void *p) {
  struct hak_tiny_slab *s = hak_tiny_slab_of(p);
  uint64_t owner = __atomic_load_n(&s->owner, __ATOMIC_RELAXED);
  uint64_t id = hak_tiny_heap.id;
  uint64_t key = hak_tiny_heap.key; /* once: the stores below may alias */
  unsigned cls = s->cls; /* read now: the slab may be released below */
  if (HAK_LIKELY(owner == id)) {
    if (HAK_UNLIKELY(hak_tiny_bad_free_of(s, p, key)))
      goto slow;
    hak_tiny_mark_freed(p, key);
    hak_tiny_link_set(p, hak_tiny_heap.free[cls], key);
    hak_tiny_heap.free[cls] = p;
  } else if (owner == (id | HAK_TINY_OWNER_IDLE)) {
    if (HAK_UNLIKELY(hak_tiny_bad_free_of(s, p, key)))
      goto slow;
    hak_tiny_mark_freed(p, key);
    hak_tiny_link_set(p, s->free, key);
    s->free = p;
    if (HAK_UNLIKELY(--s->used == 0))
      hak_tiny_slab_emptied(s);
  } else {
    goto slow;
  }
  HAK_STAT_PATH(TINY_FREE_LOCAL, 1);
  HAK_STAT_CLASS_FREE(cls);
  return;
slow:
  /* Everything else, misuse included: the slow path checks again and
   * reports.  A tail call, so the fast path sets up no stack frame. */
  hak_tiny_free_slow(p, s);
}

HAK_INTERNAL size_t hak_tiny_usable_size(const void *p);

/* Thread exit (also called by the pthread key destructor): hands the
 * heap's slabs over so that other threads adopt them. */
HAK_INTERNAL void hak_tiny_thread_exit(void);

/* Gives back what is due: the front's dirty slabs and libhak-os's caches
 * whose purge delay ran out by `now` (hak_os_clock_ms).  Run on slow paths
 * that take no slab (refills, thread exit; libhak-core's mid refill), so
 * that memory freed by threads that have exited goes back while the
 * remaining threads keep calling.  Two relaxed loads when nothing is due. */
HAK_INTERNAL void hak_tiny_purge_due(uint64_t now);

/* Fork: hold the front's locks across fork(); the parent and the child
 * both release them with hak_tiny_fork_parent. */
HAK_INTERNAL void hak_tiny_fork_prepare(void);
HAK_INTERNAL void hak_tiny_fork_parent(void);

/* Configuration, set once at start-up. */
struct hak_tiny_config {
  unsigned dirty_slab_limit; /* free slabs that may stay resident at most */
  unsigned purge_delay_ms;   /* a free slab unused this long is decommitted */
  bool audit_lists; /* checked builds: walk a slab's free list when it is
                       taken, every link and freed marker (HAKMEM_CHECKS=2) */
};
HAK_INTERNAL void hak_tiny_configure(const struct hak_tiny_config *cfg);

/* Occupancy, for tests. */
struct hak_tiny_info {
  unsigned superslabs; /* superslabs held by the tiny front */
  unsigned slabs_in_use;
  unsigned slabs_abandoned;
  unsigned slabs_dirty; /* free, pages still resident */
};
HAK_INTERNAL struct hak_tiny_info hak_tiny_info(void);

/* Blocks of the tiny front, summed at query time from the slabs' metadata
 * (mallinfo, the report: nothing is counted on the fast paths).  live: out
 * of the slabs; free: carved but not out (on a slab's free list or the
 * calling thread's list).  Exact for the calling thread (its own lists are
 * walked); another thread's current slab counts every block it carved as
 * live, and a block freed by another thread counts as live until its owner
 * collects it.  Approximate while other threads run.  in_use and free:
 * the same in bytes, free also counting the free slabs whose pages are
 * kept (dirty).  committed: bytes of the tier's superslabs that may be
 * resident (headers, slabs in use counted whole, dirty free slabs), and the
 * most at once so far; mapped: its superslabs' bytes. */
struct hak_tiny_usage {
  size_t in_use;
  size_t free;
  size_t dirty_bytes;
  size_t mapped, committed, committed_peak;
  size_t live_blocks[HAK_TINY_CLASSES];
  size_t free_blocks[HAK_TINY_CLASSES];
};
HAK_INTERNAL void hak_tiny_usage(struct hak_tiny_usage *u);

/* Decommits the free slabs kept for the purge delay now (malloc_trim);
 * returns the bytes given back. */
HAK_INTERNAL size_t hak_tiny_trim(void);

#endif
