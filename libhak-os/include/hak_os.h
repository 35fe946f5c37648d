/* SPDX-License-Identifier: MIT */
/* hak_os.h - libhak-os: the only layer of hakmem that makes system calls.
 *
 * It hands out "superslabs": regions of HAK_SUPERSLAB_SIZE bytes aligned to
 * their size, so that any pointer into the first HAK_SUPERSLAB_SIZE bytes of
 * a region finds the region's header with one mask.  It also hands out huge
 * regions (any multiple of the page size, aligned to HAK_SUPERSLAB_SIZE) for
 * blocks too large for a superslab.  Freed regions go to caches so that a
 * program at a steady working set makes no system call after warm-up; what
 * stays unused for the purge delay is decommitted and then returned, and
 * bounds cap what a burst can leave in the caches meanwhile.
 *
 * Memory is committed by touching it: regions are mapped read-write and the
 * kernel backs a page the first time it is written, so resident memory
 * follows what the tiers above actually use.
 *
 * Failure is a value: an allocation that the kernel refuses returns NULL with
 * errno set to ENOMEM.
 */
#ifndef HAK_OS_H
#define HAK_OS_H

#include "hak_stats.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HAK_SUPERSLAB_SHIFT 22 /* 4 MiB: 64 slabs of 64 KiB */
#define HAK_SUPERSLAB_SIZE ((size_t)1 << HAK_SUPERSLAB_SHIFT)
#define HAK_SUPERSLAB_MASK (HAK_SUPERSLAB_SIZE - 1)
#define HAK_PAGE_SIZE ((size_t)4096)

/* What a region holds.  The kind lives in the region map below, not in the
 * region: free reads one byte of a small, always-hot table instead of the
 * header line of the block's superslab, and a checked free learns from the
 * same byte that the pointer is hakmem's. */
enum hak_region_kind {
  HAK_REGION_NONE = 0,   /* not hakmem's */
  HAK_REGION_CACHED,     /* mapped by hakmem, held in a cache, no tier's */
  HAK_REGION_TINY,       /* slabs of the tiny front */
  HAK_REGION_MID,        /* slabs of the mid tier */
  HAK_REGION_LARGE,      /* the start of a big-block arena (its header) */
  HAK_REGION_LARGE_TAIL, /* a later unit of a big-block arena: the header
                            is at the nearest LARGE unit below */
  HAK_REGION_GUARDED,    /* the guarded pool (guard.c): sampled blocks
                            between inaccessible pages */
};

/* The header every region starts with; tiers extend it (first member). */
struct hak_region {
  size_t size; /* bytes mapped for this region */
};

/* The region header of any pointer into the first superslab of a region. */
static inline struct hak_region *hak_region_of(const void *p) {
  return (struct hak_region *)((uintptr_t)p & ~(uintptr_t)HAK_SUPERSLAB_MASK);
}

/* A superslab (HAK_SUPERSLAB_SIZE bytes, aligned).  *zeroed tells whether
 * every byte is known to be zero (fresh from the kernel or decommitted). */
HAK_INTERNAL void *hak_os_superslab_alloc(bool *zeroed);
HAK_INTERNAL void hak_os_superslab_free(void *ss);
/* The same for a user that knows how far it wrote (the large tier): *dirty
 * receives how many bytes from the start may be non-zero (0: all zero), and
 * free is told how many may be, so that the cache counts and decommits only
 * those. */
HAK_INTERNAL void *hak_os_superslab_alloc_dirty(size_t *dirty);
HAK_INTERNAL void hak_os_superslab_free_dirty(void *ss, size_t dirty);
/* A cached superslab whose pages are still resident, or NULL (never maps,
 * never makes a system call).  A tier left with only untouched slabs asks
 * for it first: writing an untouched page costs a page fault, writing a
 * resident one does not.  *dirty as for hak_os_superslab_alloc_dirty
 * (never 0). */
HAK_INTERNAL void *hak_os_superslab_alloc_resident(size_t *dirty);

/* A huge region of at least `size` bytes (rounded up to pages), aligned to
 * HAK_SUPERSLAB_SIZE.  *mapped receives the size actually mapped. */
HAK_INTERNAL void *hak_os_huge_alloc(size_t size, size_t *mapped, bool *zeroed);
HAK_INTERNAL void hak_os_huge_free(void *base, size_t mapped);
/* Grows or shrinks a huge region where it stands; false if it cannot. */
HAK_INTERNAL bool hak_os_huge_resize(void *base, size_t mapped, size_t new_size,
                                     size_t *new_mapped);
/* Grows a huge region to new_size by moving it (mremap): its pages go to a
 * new place aligned to HAK_SUPERSLAB_SIZE, resident ones stay resident and
 * keep their contents, nothing is copied; the old range is gone.  Returns
 * the new base, or NULL (errno ENOMEM) with the region untouched. */
HAK_INTERNAL void *hak_os_huge_move(void *base, size_t mapped, size_t new_size,
                                    size_t *new_mapped);
/* Moves the pages of [from, from + n) to [to, to + n), both inside regions
 * hakmem has mapped (mremap): what was at `to` is replaced, and `from` reads
 * as zero after (fresh pages mapped there again).  Page-aligned; false with
 * nothing changed if the kernel refuses. */
HAK_INTERNAL bool hak_os_move_pages(void *from, size_t n, void *to);

/* Gives the pages of [p, p + n) back to the kernel; they read as zero after
 * and are committed again by the next write.  p and n page-aligned. */
HAK_INTERNAL void hak_os_decommit(void *p, size_t n);

/* Clears [p, p + n) of committed, writable memory, as memset would.  From
 * HAK_OS_ZERO_PROBE bytes on, it asks the kernel which pages are resident
 * (mincore): it writes zeros only to those, and gives the others back with
 * MADV_DONTNEED, which makes never-touched pages read as zero without
 * faulting them in and discards swapped-out ones. */
#define HAK_OS_ZERO_PROBE ((size_t)128 << 10)
/* Returns whether every page of the range is resident afterwards (none was
 * found absent), which callers may remember to clear it with memset next
 * time. */
HAK_INTERNAL bool hak_os_zero(void *p, size_t n);

/* The region map: one byte per HAK_SUPERSLAB_SIZE unit of the 47-bit user
 * address space, the kind of the region that starts there (os.c).  Two
 * levels: a top table whose entries lead to leaves of HAK_OS_MAP_LEAF
 * units (16 GiB of address space each), a leaf mapped when a region first
 * lands in its range, the other entries leading to one leaf that reads
 * HAK_REGION_NONE.
 * Flat, the map was 32 MiB of .bss, which RLIMIT_AS counts in full. */
#define HAK_OS_MAP_UNITS ((size_t)1 << (47 - HAK_SUPERSLAB_SHIFT))
#define HAK_OS_MAP_LEAF_SHIFT 12
#define HAK_OS_MAP_LEAF ((size_t)1 << HAK_OS_MAP_LEAF_SHIFT)
#define HAK_OS_MAP_TOP (HAK_OS_MAP_UNITS >> HAK_OS_MAP_LEAF_SHIFT)
/* A top entry holds its leaf's address minus `none`'s: zero, as the whole
 * table is at start (.bss: no page of it is written or read in until a
 * region needs it), leads to `none`. */
struct hak_os_map {
  uint8_t none[HAK_OS_MAP_LEAF]; /* never written: HAK_REGION_NONE */
  uintptr_t top[HAK_OS_MAP_TOP];
};
HAK_INTERNAL extern struct hak_os_map hak_os_map;

/* The byte of one unit below HAK_OS_MAP_UNITS.  A leaf is published after
 * the kernel zeroed it and before any region in its range exists, so a
 * pointer hakmem handed out always finds its own leaf. */
static inline enum hak_region_kind hak_os_map_get(uintptr_t unit) {
  /* A plain load: an entry is written once, before any region of its range
   * exists, so whoever holds a pointer there reads it after the write (an
   * atomic load here costs free two instructions: GCC folds no offset into
   * it). */
  uintptr_t e = hak_os_map.top[unit >> HAK_OS_MAP_LEAF_SHIFT];
  /* An address sum, not an index of `none`: the leaf is elsewhere. */
  return (enum hak_region_kind)__atomic_load_n(
      (const uint8_t *)((uintptr_t)hak_os_map.none + e +
                        (unit & (HAK_OS_MAP_LEAF - 1))),
      __ATOMIC_RELAXED);
}

/* The kind of the region p's unit starts, for a pointer hakmem handed out
 * (below 2^47, as every user-space mapping is): two loads, the first of a
 * top entry that the program's few regions keep in cache. */
static inline enum hak_region_kind hak_os_kind_of(const void *p) {
  return hak_os_map_get((uintptr_t)p >> HAK_SUPERSLAB_SHIFT);
}

/* The same for any pointer at all: HAK_REGION_NONE beyond the map. */
static inline enum hak_region_kind hak_os_kind_checked(const void *p) {
  uintptr_t unit = (uintptr_t)p >> HAK_SUPERSLAB_SHIFT;
  if (HAK_UNLIKELY(unit >= HAK_OS_MAP_UNITS))
    return HAK_REGION_NONE;
  return hak_os_map_get(unit);
}

/* The owner tier names what a unit of a region it holds is (the region
 * stays hakmem's until libhak-os unmaps it; HAK_REGION_NONE for a unit the
 * region no longer covers). */
HAK_INTERNAL void hak_os_set_kind(void *unit, enum hak_region_kind kind);

/* libhak-os's own: maps the leaves of the region map that [base, base +
 * size) needs, before a region there is named; false (errno ENOMEM) when
 * the kernel refuses one. */
HAK_INTERNAL bool hak_os_map_reserve(const void *base, size_t size);

/* Makes [p, p + n) inaccessible (access == false) or read-write again. */
HAK_INTERNAL void hak_os_protect(void *p, size_t n, bool access);

/* Whether ss is the base of a region hakmem currently has mapped. */
static inline bool hak_os_is_region(const void *ss) {
  return ((uintptr_t)ss & HAK_SUPERSLAB_MASK) == 0 &&
         hak_os_kind_checked(ss) != HAK_REGION_NONE;
}

/* ---- the guarded pool (guard.c) -------------------------------------------
 *
 * Sampled allocations (HAKMEM_GUARD_SAMPLE) live in a pool of slots reserved
 * once, on the first sampled allocation: each slot is HAKMEM_GUARD_MAX bytes
 * of pages (rounded up) after an inaccessible guard page, and one more guard
 * page closes the pool.  A block sits against the right guard (its end,
 * rounded up to its alignment, is the slot's end) or against the left one
 * (its start is the slot's start), chosen per allocation; only the pages it
 * covers are accessible, and the bytes of them outside the block hold a
 * canary that free checks.  A freed slot's pages are given back and made
 * inaccessible, and the slot waits in a FIFO quarantine: slots are reused
 * oldest first, so a use after free faults until the pool comes round.
 * A fault in the pool is reported by a SIGSEGV/SIGBUS handler (kind, address,
 * offset, size, the allocation's and the free's stacks), which then lets the
 * process die by the signal.  Compiled out of the fast build (HAK_GATE_GUARD).
 */
struct hak_os_guard_config {
  unsigned sample; /* guard one sampled allocation in `sample`; 0: off */
  unsigned slots;  /* slots of the pool */
  size_t max;      /* the largest block guarded, in bytes */
};
/* Set once at start-up, after the rest of the configuration: warms up
 * backtrace() (which may allocate on its first call) and installs the fault
 * handler when sampling is on.  The pool itself is reserved lazily. */
HAK_INTERNAL void hak_os_guard_configure(const struct hak_os_guard_config *cfg);

/* The sampling rate in force (0: off) and the calling thread's countdown to
 * its next sampled allocation.  Only slow paths test them (the tiny and mid
 * refills, the large tier, malloc(0)), so sampling off costs the fast paths
 * nothing. */
HAK_INTERNAL extern unsigned hak_os_guard_rate;
extern __thread unsigned hak_os_guard_countdown
    __attribute__((tls_model("initial-exec")));
HAK_INTERNAL bool hak_os_guard_sample_slow(void);
/* Whether the caller's allocation is to be guarded: one relaxed load when
 * sampling is off, a decrement when it is on. */
static inline bool hak_os_guard_sample(void) {
  if (!HAK_GATE_GUARD ||
      HAK_LIKELY(__atomic_load_n(&hak_os_guard_rate, __ATOMIC_RELAXED) == 0))
    return false;
  if (HAK_LIKELY(hak_os_guard_countdown > 1)) {
    hak_os_guard_countdown--;
    return false;
  }
  return hak_os_guard_sample_slow();
}

/* A guarded block of `size` bytes (0 allowed) aligned to `align` (0 or a
 * power of two; 16 at least), all zero bytes; NULL when it cannot be guarded
 * (bigger than the slots, alignment above a page, pool full, or the kernel
 * refused): the caller then takes its tier's block, so sampling never fails
 * an allocation. */
HAK_INTERNAL void *hak_os_guard_alloc(size_t size, size_t align);
/* free of a pointer in a HAK_REGION_GUARDED region: checks the canary
 * (damage is reported as an overflow or underflow found at free, then
 * aborts), quarantines the slot.  A pointer that is not a live guarded
 * block's start aborts with func's misuse message (double free, invalid
 * pointer). */
HAK_INTERNAL void hak_os_guard_free(void *p, const char *func);
/* The size the guarded block p was allocated with (misuse aborts, as
 * free's). */
HAK_INTERNAL size_t hak_os_guard_usable_size(const void *p, const char *func);
/* Tests: 0 when p is not a live guarded block, 1 when it sits against the
 * left guard (an underflow faults), 2 against the right one (an overflow
 * past its 16-byte rounded end faults). */
HAK_INTERNAL int hak_os_guard_side(const void *p);
/* Occupancy, for tests. */
struct hak_os_guard_info {
  unsigned slots;    /* of the pool (0 until reserved) */
  unsigned live;     /* blocks in use */
  size_t slot_bytes; /* the largest block a slot holds */
};
HAK_INTERNAL struct hak_os_guard_info hak_os_guard_info(void);
HAK_INTERNAL void hak_os_guard_fork_prepare(void);
HAK_INTERNAL void hak_os_guard_fork_parent(void);

/* Most free superslabs and huge regions the caches can hold at all. */
#define HAK_OS_SUPERSLAB_SLOTS 512 /* 2 GiB of address space */
#define HAK_OS_HUGE_SLOTS 32

/* Bounds of the caches and the purge delay (from the configuration, set
 * once at start-up). */
struct hak_os_config {
  unsigned superslab_cache;   /* resident pages free superslabs may keep,
                                 in superslabs (x HAK_SUPERSLAB_SIZE bytes) */
  unsigned superslab_reserve; /* decommitted ones kept mapped after the delay */
  size_t huge_cache_bytes;    /* bytes of freed huge regions kept */
  unsigned purge_delay_ms;    /* free regions unused this long are given back */
  bool transparent_huge_pages; /* advise THP on superslabs */
};
HAK_INTERNAL void hak_os_configure(const struct hak_os_config *cfg);
/* A tier above that keeps free memory of its own (the large tier's arenas)
 * gives it back through fn when the kernel refuses a mapping, after this
 * layer's caches: called without this layer's lock, it returns whether it
 * gave anything back (then the mapping is tried once more). */
HAK_INTERNAL void hak_os_set_reclaim(bool (*fn)(void));
HAK_INTERNAL struct hak_os_config hak_os_default_config(void);

/* Milliseconds of a monotonic clock, read without a system call (vDSO);
 * for the purge delays of every layer, on slow paths only. */
HAK_INTERNAL uint64_t hak_os_clock_ms(void);

/* For the purge of free slabs (slab sets, below): of the slabs whose
 * bits are set in `dirty`, the ones freed (since[i]) at least `delay` ms
 * before `now`; *next_due is lowered to the earliest time one of the others
 * comes due. */
static inline uint64_t hak_os_expired(uint64_t dirty, const uint64_t *since,
                                      uint64_t now, uint64_t delay,
                                      uint64_t *next_due) {
  uint64_t expired = 0;
  for (; dirty; dirty &= dirty - 1) {
    unsigned i = (unsigned)__builtin_ctzll(dirty);
    uint64_t due = since[i] + delay;
    if (now >= due)
      expired |= (uint64_t)1 << i;
    else if (due < *next_due)
      *next_due = due;
  }
  return expired;
}

/* Takes the lowest run of set bits off *mask, bits [*first, *first + *len)
 * (adjacent slabs, decommitted with one call); false once *mask is empty. */
static inline bool hak_os_next_run(uint64_t *mask, unsigned *first,
                                   unsigned *len) {
  if (!*mask)
    return false;
  *first = (unsigned)__builtin_ctzll(*mask);
  uint64_t rest = ~(*mask >> *first); /* zero only if the run reaches bit 63 */
  *len = rest ? (unsigned)__builtin_ctzll(rest) : 64 - *first;
  *mask = *len == 64 ? 0 : *mask & ~((((uint64_t)1 << *len) - 1) << *first);
  return true;
}

/* ---- slab sets: the free slabs of a tier's superslabs --------------------
 *
 * The tiny and mid tiers split superslabs into equal slabs (64 x 64 KiB,
 * 4 x 1 MiB) and hand slabs to their blocks; a slab set keeps, for one
 * tier, which slabs are free and which of those still have resident pages
 * ("dirty"), takes superslabs from the caches and gives them back when all
 * their slabs are free.  Dirty slabs keep their pages for the purge delay,
 * so that a batch freed and allocated again makes no system call; at most
 * dirty_limit of them do whatever the delay (the backstop for bursts).
 * What the tier keeps per slab (its metadata, its lists) stays the tier's;
 * the set calls it back where that must change with the pages. */

/* The start of every superslab a slab set holds: a tier's superslab header
 * begins with it. */
struct hak_os_slabset_superslab {
  struct hak_region region;
  uint64_t free_slabs;  /* bit i: slab i is free */
  uint64_t dirty_slabs; /* bit i: free slab i still has resident pages */
  /* In the set's list of superslabs with a free slab: the next one, and
   * the pointer (the list's head or the previous one's next) to this one. */
  struct hak_os_slabset_superslab *next, **prev_next;
  /* In the set's list of all its superslabs (hak_os_slabset_walk). */
  struct hak_os_slabset_superslab *all_next, **all_prev_next;
};

struct hak_os_slabset {
  /* The tier's layout, fixed: slabs of 1 << slab_shift bytes, slab_count
   * (at most 64) to a superslab.  The first `header` bytes of slab 0 hold
   * the header (all of them: slab 0 is never handed out).  The header
   * keeps, at since_offset from the superslab's start, uint64_t
   * dirty_since_ms[slab_count] for the set: when each dirty slab was freed. */
  enum hak_region_kind kind;
  unsigned slab_shift;
  unsigned slab_count;
  size_t header;
  size_t since_offset;
  /* Sets up the tier's part of the header of a superslab just taken from
   * the caches, before any of its slabs is handed out (dirty: how many
   * bytes from its start may be non-zero, 0 for none). */
  void (*adopted)(struct hak_os_slabset_superslab *ss, size_t dirty);
  /* Slabs [first, first + n) of ss were decommitted; NULL: nothing to do. */
  void (*decommitted)(struct hak_os_slabset_superslab *ss, unsigned first,
                      unsigned n);
  /* How many bytes from free slab i's start may be non-zero, for the extent
   * a superslab is given back with; NULL: the whole slab. */
  size_t (*resident_bytes)(const struct hak_os_slabset_superslab *ss,
                           unsigned i);
  /* hak_os_slabset_configure. */
  unsigned dirty_limit;
  unsigned purge_delay_ms;
  /* Guards everything below, and the bits of the superslabs; the tier's
   * callbacks run with it held.  Lock order: this lock, then the caches'. */
  pthread_mutex_t lock;
  struct hak_os_slabset_superslab *with_free; /* superslabs with free slabs */
  struct hak_os_slabset_superslab *all;       /* every superslab of the set */
  unsigned superslabs, slabs_in_use, slabs_dirty;
  size_t committed_peak; /* the most hak_os_slabset_info's committed so far */
  /* Earliest a dirty slab is due; UINT64_MAX: none.  Written under the
   * lock, read without it by hak_os_slabset_purge (relaxed atomics). */
  uint64_t next_purge_ms;
};

/* The state part of a static slab set's initialiser. */
#define HAK_OS_SLABSET_STATE_INIT                                              \
  .lock = PTHREAD_MUTEX_INITIALIZER, .next_purge_ms = UINT64_MAX

HAK_INTERNAL void hak_os_slabset_configure(struct hak_os_slabset *set,
                                           unsigned dirty_limit,
                                           unsigned purge_delay_ms);

/* Takes a free slab: one whose pages are resident first (a dirty slab of
 * the set's, else a slab of a cached superslab that kept its pages), else
 * an untouched one, lowest index first.  Returns its superslab, and its
 * index in *slab, or NULL (errno ENOMEM).  Purges what is due first. */
HAK_INTERNAL struct hak_os_slabset_superslab *
hak_os_slabset_take(struct hak_os_slabset *set, unsigned *slab);

/* Gives slab `slab` of ss back; touched: whether its pages may be resident
 * (they are then kept for `delays` purge delays, or decommitted past the
 * limit).  The superslab goes back to the caches when all its slabs are
 * free. */
HAK_INTERNAL void hak_os_slabset_release(struct hak_os_slabset *set,
                                         struct hak_os_slabset_superslab *ss,
                                         unsigned slab, bool touched,
                                         unsigned delays);

/* Decommits the set's dirty slabs whose delay has run out (now: the
 * clock, hak_os_clock_ms).  Taking and releasing slabs do it anyway; the
 * tiers call this on other slow paths too, so that a thread whose calls no
 * longer take or release slabs (memory freed by threads that have exited)
 * still gives the pages back.  One relaxed load when nothing is due. */
HAK_INTERNAL void hak_os_slabset_purge(struct hak_os_slabset *set,
                                       uint64_t now);

/* Occupancy, for tests. */
struct hak_os_slabset_info {
  unsigned superslabs;
  unsigned slabs_in_use;
  unsigned slabs_dirty; /* free, pages still resident */
  /* Bytes that may be resident: headers, slabs in use counted whole, dirty
   * free slabs; and the most at once so far (it moves when a slab is
   * taken). */
  size_t committed, committed_peak;
};
HAK_INTERNAL struct hak_os_slabset_info
hak_os_slabset_info(struct hak_os_slabset *set);

/* Calls fn(arg, ss, slabs) for every superslab of the set, slabs: the bits
 * of its slabs in use, with the set's lock held (so fn must not take a slab
 * or give one back).  Slow: for queries (mallinfo), never on a hot path. */
HAK_INTERNAL void hak_os_slabset_walk(
    struct hak_os_slabset *set,
    void (*fn)(void *arg, struct hak_os_slabset_superslab *ss, uint64_t slabs),
    void *arg);

/* Decommits every dirty free slab of the set now, whatever the delay
 * (malloc_trim); returns the bytes given back. */
HAK_INTERNAL size_t hak_os_slabset_purge_all(struct hak_os_slabset *set);

/* Gives back what the caches hold beyond `keep` bytes of free resident
 * memory, oldest first: free superslabs are decommitted (past the reserve,
 * unmapped), free huge regions unmapped.  Returns the bytes given back. */
HAK_INTERNAL size_t hak_os_trim(size_t keep);

/* Bytes of address space hakmem has mapped now (regions in use and
 * cached), and at most so far. */
HAK_INTERNAL size_t hak_os_mapped_bytes(void);
HAK_INTERNAL size_t hak_os_mapped_peak(void);

/* Gives back the cached regions whose purge delay has run out.  Every
 * entry into this layer does it anyway; tests call it directly. */
HAK_INTERNAL void hak_os_purge(void);

/* The same, from the tiers' slow paths that do not enter this layer: one
 * relaxed load unless a delay has run out by now (hak_os_clock_ms). */
HAK_INTERNAL void hak_os_purge_due(uint64_t now);

/* Releases every cached region to the kernel (tests, trim). */
HAK_INTERNAL void hak_os_release_caches(void);

/* Fork safety: hold the layer's lock across fork. */
HAK_INTERNAL void hak_os_fork_prepare(void);
HAK_INTERNAL void hak_os_fork_parent(void);
HAK_INTERNAL void hak_os_fork_child(void);

/* Messages and fatal errors go straight to file descriptor 2 with write():
 * stdio could allocate, and hakmem may be the allocator it calls. */
HAK_INTERNAL void hak_os_write_stderr(const char *s, size_t n);
HAK_INTERNAL __attribute__((noreturn)) void hak_os_abort(void);

/* Runs handler when signal sig arrives (the statistics signal). */
HAK_INTERNAL bool hak_os_on_signal(int sig, void (*handler)(int));

/* The process id (the report's header; getpid is a system call). */
HAK_INTERNAL long hak_os_pid(void);
/* Appends s to the file at path (created 0644 if missing); false if it
 * cannot be opened or written (HAKMEM_STATS_FILE). */
HAK_INTERNAL bool hak_os_append_file(const char *path, const char *s, size_t n);

/* Resident set size of the process now and at its peak, in bytes. */
HAK_INTERNAL size_t hak_os_rss_current(void);
HAK_INTERNAL size_t hak_os_rss_peak(void);

/* Tests: the next n mappings fail as if the kernel were out of memory. */
HAK_INTERNAL void hak_os_fail_next_mappings(unsigned n);

/* Cache occupancy, for tests and reports. */
struct hak_os_cache_info {
  unsigned superslabs_committed;   /* free, pages kept */
  unsigned superslabs_decommitted; /* free, mapped, pages given back */
  unsigned huge_regions;
  size_t huge_bytes;
  size_t
      superslab_committed_bytes; /* of the free superslabs: may be resident */
};
HAK_INTERNAL struct hak_os_cache_info hak_os_cache_info(void);

#endif
