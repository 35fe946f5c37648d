/* SPDX-License-Identifier: MIT */
/* slabset.c - which slabs of a tier's superslabs are free, and which of
 * those keep their pages (hak_os.h, "slab sets").
 *
 * Runs on the tiers' slab slow paths (a slab taken or given back), under
 * the set's lock; the delayed purge rides on them, so nothing is checked
 * on the fast paths and no thread runs in the background.
 */
#include "hak_os.h"

static inline size_t slab_size(const struct hak_os_slabset *set) {
  return (size_t)1 << set->slab_shift;
}

/* The slabs that can be handed out: all, but slab 0 when the header fills
 * it. */
static inline uint64_t all_slabs(const struct hak_os_slabset *set) {
  uint64_t all = set->slab_count == 64 ? ~(uint64_t)0
                                       : ((uint64_t)1 << set->slab_count) - 1;
  return set->header >= slab_size(set) ? all & ~(uint64_t)1 : all;
}

static inline uint64_t *dirty_since(const struct hak_os_slabset *set,
                                    struct hak_os_slabset_superslab *ss) {
  return (uint64_t *)((char *)ss + set->since_offset);
}

/* The list of superslabs with a free slab: each links back to the pointer
 * that points to it, so that removal needs neither a search nor a case for
 * the head. */
static void list_push(struct hak_os_slabset *set,
                      struct hak_os_slabset_superslab *ss) {
  ss->next = set->with_free;
  if (ss->next)
    ss->next->prev_next = &ss->next;
  ss->prev_next = &set->with_free;
  set->with_free = ss;
}

static void list_remove(struct hak_os_slabset_superslab *ss) {
  *ss->prev_next = ss->next;
  if (ss->next)
    ss->next->prev_next = ss->prev_next;
  ss->next = NULL;
  ss->prev_next = NULL;
}

/* Gives back the pages of slabs [first, first + n) that blocks may use
 * (slab 0's start past the header). */
static void decommit_slabs(struct hak_os_slabset *set,
                           struct hak_os_slabset_superslab *ss, unsigned first,
                           unsigned n) {
  size_t begin = first == 0 ? set->header : 0;
  hak_os_decommit((char *)ss + ((size_t)first << set->slab_shift) + begin,
                  ((size_t)n << set->slab_shift) - begin);
  if (set->decommitted)
    set->decommitted(ss, first, n);
}

/* Marks slabs dirty, due for the purge `delays` purge delays from now (the
 * time stored is when the last of those delays starts). */
static void mark_dirty(struct hak_os_slabset *set,
                       struct hak_os_slabset_superslab *ss, uint64_t slabs,
                       uint64_t now, unsigned delays) {
  uint64_t *since = dirty_since(set, ss);
  uint64_t start = now + (uint64_t)(delays - 1) * set->purge_delay_ms;
  ss->dirty_slabs |= slabs;
  for (uint64_t d = slabs; d; d &= d - 1) {
    since[__builtin_ctzll(d)] = start;
    set->slabs_dirty++; /* no popcount: without -mpopcnt it is a call */
  }
  if (start + set->purge_delay_ms < set->next_purge_ms)
    __atomic_store_n(&set->next_purge_ms, start + set->purge_delay_ms,
                     __ATOMIC_RELAXED);
}

void hak_os_slabset_configure(struct hak_os_slabset *set, unsigned dirty_limit,
                              unsigned purge_delay_ms) {
  pthread_mutex_lock(&set->lock);
  set->dirty_limit = dirty_limit;
  set->purge_delay_ms = purge_delay_ms;
  /* Look again under the new delay. */
  __atomic_store_n(&set->next_purge_ms, 0, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&set->lock);
}

/* Decommits the dirty slabs that stayed free for the purge delay, adjacent
 * ones with one call.  Dirty slabs are free, so their superslabs are all
 * on the with_free list. */
static HAK_COLD void purge_expired_locked(struct hak_os_slabset *set,
                                          uint64_t now) {
  uint64_t next = UINT64_MAX;
  for (struct hak_os_slabset_superslab *ss = set->with_free; ss;
       ss = ss->next) {
    uint64_t expired = hak_os_expired(ss->dirty_slabs, dirty_since(set, ss),
                                      now, set->purge_delay_ms, &next);
    ss->dirty_slabs &= ~expired;
    set->slabs_dirty -= (unsigned)__builtin_popcountll(expired);
    for (unsigned first, len; hak_os_next_run(&expired, &first, &len);)
      decommit_slabs(set, ss, first, len);
  }
  __atomic_store_n(&set->next_purge_ms, next, __ATOMIC_RELAXED);
}

/* One compare on every slab taken or released, unless a delay ran out. */
static inline void purge_locked(struct hak_os_slabset *set, uint64_t now) {
  if (now >= set->next_purge_ms)
    purge_expired_locked(set, now);
}

/* Makes ss, just taken from the caches, one of the set's and puts it on
 * the list; dirty: how many bytes from its start may be non-zero. */
static void superslab_adopt(struct hak_os_slabset *set,
                            struct hak_os_slabset_superslab *ss, size_t dirty,
                            uint64_t now) {
  /* The tier's header first: a stray free that finds the kind must find
   * its slabs free. */
  set->adopted(ss, dirty);
  hak_os_set_kind(ss, set->kind);
  ss->region.size = HAK_SUPERSLAB_SIZE;
  ss->free_slabs = all_slabs(set);
  ss->dirty_slabs = 0;
  /* The slabs that start below the extent may be resident from its last
   * use: they are free slabs' pages, and the delay (or the limit) applies
   * to them too.  Those above it were never touched. */
  size_t n = (dirty + slab_size(set) - 1) >> set->slab_shift;
  uint64_t resident = n >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << n) - 1;
  resident &= ss->free_slabs;
  if (dirty <= set->header)
    resident &= ~(uint64_t)1; /* slab 0's blocks start past the header */
  if (resident) {
    if (set->slabs_dirty + (unsigned)__builtin_popcountll(resident) <=
        set->dirty_limit) {
      mark_dirty(set, ss, resident, now, 1);
    } else {
      for (unsigned first, len; hak_os_next_run(&resident, &first, &len);)
        decommit_slabs(set, ss, first, len);
    }
  }
  list_push(set, ss);
  ss->all_next = set->all;
  if (ss->all_next)
    ss->all_next->all_prev_next = &ss->all_next;
  ss->all_prev_next = &set->all;
  set->all = ss;
  set->superslabs++;
}

/* Bytes of the set's superslabs that may be resident: the headers, the
 * slabs in use (counted whole: an upper bound) and the dirty free slabs. */
static size_t committed_locked(const struct hak_os_slabset *set) {
  size_t header = (set->header + HAK_PAGE_SIZE - 1) & ~(HAK_PAGE_SIZE - 1);
  return ((size_t)(set->slabs_in_use + set->slabs_dirty) << set->slab_shift) +
         (size_t)set->superslabs * header;
}

/* The superslab to take a slab from, preferring resident pages: one of ours
 * with a dirty free slab, else a cached superslab that kept its pages (a
 * slab of ours that is free but not dirty was never touched or was
 * decommitted, and each of its pages would fault), else one of ours with
 * any free slab, else a new one.  Called with the lock held; may drop it. */
static struct hak_os_slabset_superslab *
superslab_for_slab(struct hak_os_slabset *set, uint64_t now) {
  if (set->slabs_dirty) {
    for (struct hak_os_slabset_superslab *ss = set->with_free; ss;
         ss = ss->next)
      if (ss->free_slabs & ss->dirty_slabs)
        return ss;
  }
  /* Lock order: the set's lock, then the caches'. */
  size_t dirty;
  struct hak_os_slabset_superslab *ss = hak_os_superslab_alloc_resident(&dirty);
  if (ss) {
    superslab_adopt(set, ss, dirty, now);
    return ss;
  }
  if (set->with_free)
    return set->with_free;
  pthread_mutex_unlock(&set->lock);
  ss = hak_os_superslab_alloc_dirty(&dirty);
  pthread_mutex_lock(&set->lock);
  if (ss)
    superslab_adopt(set, ss, dirty, now);
  return ss;
}

struct hak_os_slabset_superslab *hak_os_slabset_take(struct hak_os_slabset *set,
                                                     unsigned *slab) {
  uint64_t now = hak_os_clock_ms();
  pthread_mutex_lock(&set->lock);
  purge_locked(set, now);
  struct hak_os_slabset_superslab *ss = superslab_for_slab(set, now);
  if (!ss) {
    pthread_mutex_unlock(&set->lock);
    return NULL;
  }
  /* Prefer a slab whose pages are still resident. */
  uint64_t pick = ss->free_slabs & ss->dirty_slabs;
  unsigned idx = (unsigned)__builtin_ctzll(pick ? pick : ss->free_slabs);
  uint64_t bit = (uint64_t)1 << idx;
  if (ss->dirty_slabs & bit) {
    ss->dirty_slabs &= ~bit;
    set->slabs_dirty--;
  }
  ss->free_slabs &= ~bit;
  if (!ss->free_slabs)
    list_remove(ss);
  set->slabs_in_use++;
  /* The peak moves only when a slab is taken (a release turns a slab in
   * use into a dirty one, or decommits it). */
  size_t committed = committed_locked(set);
  if (committed > set->committed_peak)
    set->committed_peak = committed;
  pthread_mutex_unlock(&set->lock);
  *slab = idx;
  return ss;
}

/* How far from ss's start pages may be resident, given the free slabs
 * that may be: the end of the last of them that wrote anything, at least
 * the header. */
static size_t resident_extent(const struct hak_os_slabset *set,
                              const struct hak_os_slabset_superslab *ss,
                              uint64_t resident) {
  while (resident) {
    unsigned i = 63u - (unsigned)__builtin_clzll(resident);
    size_t n =
        set->resident_bytes ? set->resident_bytes(ss, i) : slab_size(set);
    if (n) {
      size_t end = ((size_t)i << set->slab_shift) + n;
      return end > set->header ? end : set->header;
    }
    resident &= ~((uint64_t)1 << i);
  }
  return set->header;
}

void hak_os_slabset_release(struct hak_os_slabset *set,
                            struct hak_os_slabset_superslab *ss, unsigned slab,
                            bool touched, unsigned delays) {
  uint64_t bit = (uint64_t)1 << slab;
  uint64_t now = hak_os_clock_ms();
  pthread_mutex_lock(&set->lock);
  purge_locked(set, now);
  set->slabs_in_use--;
  if (!ss->free_slabs)
    list_push(set, ss);
  ss->free_slabs |= bit;
  if (ss->free_slabs == all_slabs(set)) {
    /* The caches are told how far pages may be resident (slabs are taken
     * lowest first, so untouched ones gather at the end): whoever takes
     * the superslab next then knows the rest is zero and untouched, and
     * the caches apply the same delay to the resident part. */
    size_t extent =
        resident_extent(set, ss, ss->dirty_slabs | (touched ? bit : 0));
    set->slabs_dirty -= (unsigned)__builtin_popcountll(ss->dirty_slabs);
    ss->dirty_slabs = 0;
    list_remove(ss);
    *ss->all_prev_next = ss->all_next;
    if (ss->all_next)
      ss->all_next->all_prev_next = ss->all_prev_next;
    set->superslabs--;
    pthread_mutex_unlock(&set->lock);
    hak_os_superslab_free_dirty(ss, extent);
    return;
  }
  /* Keep the pages for the purge delay, so that slab churn makes no
   * system call while memory use still follows the working set; past the
   * limit (or with no delay), at once. */
  if (touched) {
    if (set->slabs_dirty < set->dirty_limit && set->purge_delay_ms)
      mark_dirty(set, ss, bit, now, delays ? delays : 1);
    else
      decommit_slabs(set, ss, slab, 1);
  }
  pthread_mutex_unlock(&set->lock);
}

void hak_os_slabset_purge(struct hak_os_slabset *set, uint64_t now) {
  if (now < __atomic_load_n(&set->next_purge_ms, __ATOMIC_RELAXED))
    return;
  pthread_mutex_lock(&set->lock);
  purge_locked(set, now);
  pthread_mutex_unlock(&set->lock);
}

struct hak_os_slabset_info hak_os_slabset_info(struct hak_os_slabset *set) {
  pthread_mutex_lock(&set->lock);
  struct hak_os_slabset_info info = {.superslabs = set->superslabs,
                                     .slabs_in_use = set->slabs_in_use,
                                     .slabs_dirty = set->slabs_dirty,
                                     .committed = committed_locked(set),
                                     .committed_peak = set->committed_peak};
  pthread_mutex_unlock(&set->lock);
  return info;
}

void hak_os_slabset_walk(struct hak_os_slabset *set,
                         void (*fn)(void *arg,
                                    struct hak_os_slabset_superslab *ss,
                                    uint64_t slabs),
                         void *arg) {
  pthread_mutex_lock(&set->lock);
  for (struct hak_os_slabset_superslab *ss = set->all; ss; ss = ss->all_next)
    fn(arg, ss, all_slabs(set) & ~ss->free_slabs);
  pthread_mutex_unlock(&set->lock);
}

size_t hak_os_slabset_purge_all(struct hak_os_slabset *set) {
  size_t bytes = 0;
  pthread_mutex_lock(&set->lock);
  for (struct hak_os_slabset_superslab *ss = set->with_free; ss;
       ss = ss->next) {
    uint64_t dirty = ss->dirty_slabs;
    ss->dirty_slabs = 0;
    set->slabs_dirty -= (unsigned)__builtin_popcountll(dirty);
    for (unsigned first, len; hak_os_next_run(&dirty, &first, &len);) {
      decommit_slabs(set, ss, first, len);
      bytes +=
          ((size_t)len << set->slab_shift) - (first == 0 ? set->header : 0);
    }
  }
  set->next_purge_ms = UINT64_MAX;
  pthread_mutex_unlock(&set->lock);
  return bytes;
}
