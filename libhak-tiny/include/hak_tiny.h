/* hak_tiny.h - libhak-tiny: the tiny front, blocks of 1 to 1024 bytes.
 *
 * 64 size classes, one every 16 bytes (16, 32, ..., 1024): class of a size
 * n is (n - 1) / 16, computed, no table and no loop.  Worst-case internal
 * waste is 15 bytes per block (a 17-byte request gets 32 bytes).
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
#define HAK_TINY_CLASSES 64
#define HAK_TINY_SLAB_SHIFT 16 /* 64 KiB slabs */
#define HAK_TINY_SLAB_SIZE ((size_t)1 << HAK_TINY_SLAB_SHIFT)
#define HAK_TINY_SLABS (HAK_SUPERSLAB_SIZE / HAK_TINY_SLAB_SIZE)

/* Slab owners that are not heaps.  Heap ids start at 1, and 0 is the id of a
 * thread whose heap is not yet set up, so neither ever matches a slab. */
#define HAK_TINY_OWNER_NONE UINT64_MAX      /* slab free in its superslab */
#define HAK_TINY_OWNER_ABANDONED (UINT64_MAX - 1) /* its thread exited */

/* Per-slab metadata: one cache line, in the superslab header. */
struct hak_tiny_slab {
  uint64_t owner;     /* heap id; read by every free, written on hand-over */
  uint16_t cls;
  uint16_t state;     /* enum in tiny_internal.h */
  uint32_t block_size;
  void *free;         /* local free list while the slab is not current */
  void *remote;       /* frees from other threads (atomic push, swap-all) */
  uint32_t used;      /* blocks out of the slab: live, or in remote list */
  uint32_t carved;    /* blocks carved so far from the slab's start */
  uint32_t capacity;  /* blocks that fit */
  uint32_t div_magic; /* ceil(2^32 / block_size): offset -> index */
  struct hak_tiny_slab *next, *prev; /* in a heap's or the abandoned list */
} __attribute__((aligned(64)));

/* A superslab as the tiny front lays it out: header and slab table in slab
 * 0 (whose blocks are never used), slabs 1..63 for blocks. */
struct hak_tiny_superslab {
  struct hak_region region;
  uint64_t free_slabs;  /* bit i: slab i is free */
  uint64_t dirty_slabs; /* bit i: free slab i still has resident pages */
  struct hak_tiny_superslab *next, *prev; /* superslabs with free slabs */
  struct hak_tiny_slab slabs[HAK_TINY_SLABS] __attribute__((aligned(64)));
  uint64_t dirty_since_ms[HAK_TINY_SLABS]; /* when dirty slab i was freed */
};

struct hak_tiny_bin {
  void *free;                /* blocks ready to hand out, all from `cur` */
  struct hak_tiny_slab *cur; /* the slab this class allocates from */
};

struct hak_tiny_heap {
  struct hak_tiny_bin bins[HAK_TINY_CLASSES]; /* hot: 1 KiB */
  uint64_t id;                                /* 0 until set up */
  /* Cold: slabs owned by this heap other than the current ones. */
  struct hak_tiny_slab *partial[HAK_TINY_CLASSES]; /* with free blocks */
  struct hak_tiny_slab *full[HAK_TINY_CLASSES];    /* without */
  int exited;
};

extern __thread struct hak_tiny_heap hak_tiny_heap
    __attribute__((tls_model("initial-exec")));

/* Sets up what every heap shares (the secret, the thread-exit key).  Runs
 * once; called by the first heap and by libhak-core's start-up, so that the
 * secret is fixed before any tier encodes a free-list link with it. */
HAK_INTERNAL void hak_tiny_init(void);

/* Out-of-line paths. */
HAK_INTERNAL void *hak_tiny_refill(unsigned cls);
HAK_INTERNAL void hak_tiny_free_slow(void *p, struct hak_tiny_slab *s);
HAK_INTERNAL __attribute__((noreturn)) void
hak_tiny_bad_free(const void *p, struct hak_tiny_slab *s);

/* A freed block's link was overwritten: report and abort. */
HAK_INTERNAL __attribute__((noreturn)) void hak_tiny_corrupt(const void *p);

/* Per-process secret mixed into the freed-block marker and list links. */
extern uint64_t hak_tiny_secret;

static inline unsigned hak_tiny_class(size_t n) { return (unsigned)((n - 1) >> 4); }
static inline size_t hak_tiny_class_size(unsigned cls) { return ((size_t)cls + 1) << 4; }

/* The marker a freed block carries in its second word (checked builds):
 * a free that finds it there is a double free. */
static inline uint64_t hak_tiny_freed_mark(const void *p) {
  return hak_tiny_secret ^ (uintptr_t)p;
}

/* Free-list links.  Checked builds store them encoded with the secret and
 * the block's own address, so a heap overflow that overwrites a freed block
 * cannot plant a pointer of its choosing; every list holds blocks of one
 * slab only, so a decoded link that leaves the slab is corruption. */
static inline void hak_tiny_set_next(void *p, void *next) {
  uintptr_t v = (uintptr_t)next;
  if (HAK_GATE_ENCODE_LINKS)
    v ^= hak_tiny_secret ^ (uintptr_t)p;
  *(uintptr_t *)p = v;
}

static inline void *hak_tiny_next(const void *p) {
  uintptr_t v = *(const uintptr_t *)p;
  if (HAK_GATE_ENCODE_LINKS) {
    v ^= hak_tiny_secret ^ (uintptr_t)p;
    if (HAK_UNLIKELY(v && ((v ^ (uintptr_t)p) >> HAK_TINY_SLAB_SHIFT)))
      hak_tiny_corrupt(p);
  }
  return (void *)v;
}

/* malloc of 1 <= n <= HAK_TINY_MAX bytes.  The bin is named through the TLS
 * variable each time rather than through a pointer, so the compiler
 * addresses it %fs-relative instead of materialising the thread pointer. */
static inline void *hak_tiny_malloc(size_t n) {
  unsigned cls = hak_tiny_class(n);
  void *p = hak_tiny_heap.bins[cls].free;
  if (HAK_UNLIKELY(p == NULL))
    return hak_tiny_refill(cls);
  hak_tiny_heap.bins[cls].free = hak_tiny_next(p);
  if (HAK_GATE_CHECK_DOUBLE_FREE)
    ((uint64_t *)p)[1] = 0; /* clear the freed marker */
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
  return (struct hak_tiny_slab *)(ss + offsetof(struct hak_tiny_superslab, slabs) + scaled);
}

/* Whether p is the start of a carved block of slab s (checked builds). */
static inline bool hak_tiny_is_block_start(const struct hak_tiny_slab *s,
                                           const void *p) {
  uint32_t off = (uint32_t)((uintptr_t)p & (HAK_TINY_SLAB_SIZE - 1));
  uint32_t idx = (uint32_t)(((uint64_t)off * s->div_magic) >> 32);
  /* carved grows under the owner while any thread may free: relaxed. */
  return idx * s->block_size == off &&
         idx < __atomic_load_n(&s->carved, __ATOMIC_RELAXED);
}

/* free of a block in a tiny region. */
static inline void hak_tiny_free(void *p) {
  struct hak_tiny_slab *s = hak_tiny_slab_of(p);
  /* A double free finds its own marker; a pointer into the middle of a
   * block, into slab 0 or into a free slab fails the block-start test. */
  if (HAK_UNLIKELY((HAK_GATE_CHECK_DOUBLE_FREE &&
                    ((uint64_t *)p)[1] == hak_tiny_freed_mark(p)) ||
                   (HAK_GATE_CHECK_BLOCK_START && !hak_tiny_is_block_start(s, p))))
    hak_tiny_bad_free(p, s);
  unsigned cls = s->cls;
  if (HAK_UNLIKELY(__atomic_load_n(&s->owner, __ATOMIC_RELAXED) != hak_tiny_heap.id ||
                   hak_tiny_heap.bins[cls].cur != s)) {
    hak_tiny_free_slow(p, s);
    return;
  }
  hak_tiny_set_next(p, hak_tiny_heap.bins[cls].free);
  if (HAK_GATE_CHECK_DOUBLE_FREE)
    ((uint64_t *)p)[1] = hak_tiny_freed_mark(p);
  hak_tiny_heap.bins[cls].free = p;
  HAK_STAT_PATH(TINY_FREE_LOCAL, 1);
  HAK_STAT_CLASS_FREE(cls);
}

HAK_INTERNAL size_t hak_tiny_usable_size(const void *p);

/* Thread exit (also called by the pthread key destructor): hands the
 * heap's slabs over so that other threads adopt them. */
HAK_INTERNAL void hak_tiny_thread_exit(void);

/* Fork: hold the front's locks across fork(); the parent and the child
 * both release them with hak_tiny_fork_parent. */
HAK_INTERNAL void hak_tiny_fork_prepare(void);
HAK_INTERNAL void hak_tiny_fork_parent(void);

/* Configuration, set once at start-up. */
struct hak_tiny_config {
  unsigned dirty_slab_limit; /* free slabs that may stay resident at most */
  unsigned purge_delay_ms;   /* a free slab unused this long is decommitted */
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

#endif
