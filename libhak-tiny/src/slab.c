/* slab.c - carving 64 KiB slabs out of superslabs, and handing slabs of
 * exited threads to the threads that come after.
 *
 * Both run on slow paths (a heap needs a new slab, a slab became empty, a
 * thread ended) under one lock per purpose.  Lock order: abandoned_lock,
 * then ss_lock, then libhak-os's lock.
 */
#include "tiny_internal.h"

#include <pthread.h>

static pthread_mutex_t ss_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hak_tiny_superslab
    *ss_with_free; /* superslabs with a free slab */
static unsigned ss_count, slabs_in_use, dirty_count;
bool tiny_audit_lists;
/* Free slabs keep their pages ("dirty") for the purge delay, so that a
 * batch freed and allocated again makes no system call; the limit caps what
 * a burst leaves resident within one delay (1024: 64 MiB). */
static unsigned dirty_limit = 1024;
static unsigned purge_delay_ms = 10;
/* The earliest a dirty slab's delay runs out; UINT64_MAX: none dirty. */
static uint64_t next_purge_ms = UINT64_MAX;

static pthread_mutex_t abandoned_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hak_tiny_slab *abandoned[HAK_TINY_CLASSES];
static unsigned abandoned_count;
/* Whether abandoned[cls] is non-empty: read without the lock by every
 * refill that would otherwise take it for nothing, so a separate atomic. */
static bool abandoned_any[HAK_TINY_CLASSES];

static void note_abandoned(unsigned cls) {
  __atomic_store_n(&abandoned_any[cls], abandoned[cls] != NULL,
                   __ATOMIC_RELAXED);
}

#define ALL_SLABS (~(uint64_t)1) /* slab 0 holds the header */

void hak_tiny_configure(const struct hak_tiny_config *cfg) {
  pthread_mutex_lock(&ss_lock);
  dirty_limit = cfg->dirty_slab_limit;
  purge_delay_ms = cfg->purge_delay_ms;
  tiny_audit_lists = HAK_GATE_CHECKS && cfg->audit_lists;
  next_purge_ms = 0; /* look again under the new delay */
  pthread_mutex_unlock(&ss_lock);
}

char *tiny_slab_start(const struct hak_tiny_slab *s) {
  struct hak_tiny_superslab *ss = (struct hak_tiny_superslab *)hak_region_of(s);
  return (char *)ss + (size_t)(s - ss->slabs) * HAK_TINY_SLAB_SIZE;
}

static void ss_list_remove(struct hak_tiny_superslab *ss) {
  if (ss->prev)
    ss->prev->next = ss->next;
  else
    ss_with_free = ss->next;
  if (ss->next)
    ss->next->prev = ss->prev;
  ss->next = ss->prev = NULL;
}

static void ss_list_push(struct hak_tiny_superslab *ss) {
  ss->prev = NULL;
  ss->next = ss_with_free;
  if (ss_with_free)
    ss_with_free->prev = ss;
  ss_with_free = ss;
}

/* Decommits the dirty slabs that stayed free for the purge delay, adjacent
 * ones with one call.  Called with ss_lock held on the slab slow paths; one
 * compare unless a delay has run out.  Dirty slabs are free, so their
 * superslabs are all on the ss_with_free list. */
static void purge_locked(uint64_t now) {
  if (now < next_purge_ms)
    return;
  uint64_t next = UINT64_MAX;
  for (struct hak_tiny_superslab *ss = ss_with_free; ss; ss = ss->next) {
    uint64_t expired = hak_os_expired(ss->dirty_slabs, ss->dirty_since_ms, now,
                                      purge_delay_ms, &next);
    ss->dirty_slabs &= ~expired;
    dirty_count -= (unsigned)__builtin_popcountll(expired);
    for (unsigned first, len; hak_os_next_run(&expired, &first, &len);)
      hak_os_decommit((char *)ss + (size_t)first * HAK_TINY_SLAB_SIZE,
                      (size_t)len * HAK_TINY_SLAB_SIZE);
  }
  next_purge_ms = next;
}

/* Makes ss, just taken from libhak-os, one of ours and puts it on the list;
 * dirty: how many bytes from its start may be non-zero (libhak-os).  Called
 * with ss_lock held. */
static void superslab_adopt(struct hak_tiny_superslab *ss, size_t dirty,
                            uint64_t now) {
  if (dirty) {
    /* A reused superslab: reset the header; slab metadata is rewritten
     * as each slab is taken. */
    for (unsigned i = 0; i < HAK_TINY_SLABS; i++)
      ss->slabs[i] = (struct hak_tiny_slab){.owner = HAK_TINY_OWNER_NONE};
  } else {
    for (unsigned i = 0; i < HAK_TINY_SLABS; i++)
      ss->slabs[i].owner = HAK_TINY_OWNER_NONE;
  }
  hak_os_set_kind(ss, HAK_REGION_TINY);
  ss->region.size = HAK_SUPERSLAB_SIZE;
  ss->free_slabs = ALL_SLABS;
  ss->dirty_slabs = 0;
  /* The slabs that start below the extent may be resident from its last
   * use: they are free slabs' pages, and the delay (or the limit) applies
   * to them too.  Those above it were never touched. */
  size_t n = (dirty + HAK_TINY_SLAB_SIZE - 1) / HAK_TINY_SLAB_SIZE;
  if (n > 1) {
    uint64_t slabs = ALL_SLABS;
    if (n < HAK_TINY_SLABS)
      slabs &= ((uint64_t)1 << n) - 1;
    if (dirty_count + n - 1 <= dirty_limit) {
      ss->dirty_slabs = slabs;
      for (unsigned i = 1; i < n; i++)
        ss->dirty_since_ms[i] = now;
      dirty_count += (unsigned)n - 1;
      if (now + purge_delay_ms < next_purge_ms)
        next_purge_ms = now + purge_delay_ms;
    } else {
      hak_os_decommit((char *)ss + HAK_TINY_SLAB_SIZE,
                      (n - 1) * HAK_TINY_SLAB_SIZE);
    }
  }
  ss_list_push(ss);
  ss_count++;
}

/* The superslab to take a slab from, preferring resident pages: one of ours
 * with a dirty free slab, else a cached superslab that kept its pages (a
 * slab of ours that is free but not dirty was never touched or was
 * decommitted, and each of its pages would fault), else one of ours with an
 * untouched slab, else a new one.  Called with ss_lock held; may drop it. */
static struct hak_tiny_superslab *superslab_for_slab(uint64_t now) {
  if (dirty_count) {
    for (struct hak_tiny_superslab *ss = ss_with_free; ss; ss = ss->next)
      if (ss->free_slabs & ss->dirty_slabs)
        return ss;
  }
  /* Lock order: ss_lock, then libhak-os's lock. */
  size_t dirty;
  struct hak_tiny_superslab *ss = hak_os_superslab_alloc_resident(&dirty);
  if (ss) {
    superslab_adopt(ss, dirty, now);
    return ss;
  }
  if (ss_with_free)
    return ss_with_free;
  pthread_mutex_unlock(&ss_lock);
  ss = hak_os_superslab_alloc_dirty(&dirty);
  pthread_mutex_lock(&ss_lock);
  if (ss)
    superslab_adopt(ss, dirty, now);
  return ss;
}

struct hak_tiny_slab *tiny_slab_new(unsigned cls, uint64_t owner) {
  uint64_t now = hak_os_clock_ms();
  pthread_mutex_lock(&ss_lock);
  purge_locked(now);
  struct hak_tiny_superslab *ss = superslab_for_slab(now);
  if (!ss) {
    pthread_mutex_unlock(&ss_lock);
    return NULL;
  }
  /* Prefer a slab whose pages are still resident. */
  uint64_t pick = ss->free_slabs & ss->dirty_slabs;
  unsigned idx = (unsigned)__builtin_ctzll(pick ? pick : ss->free_slabs);
  uint64_t bit = (uint64_t)1 << idx;
  if (ss->dirty_slabs & bit) {
    ss->dirty_slabs &= ~bit;
    dirty_count--;
  }
  ss->free_slabs &= ~bit;
  if (!ss->free_slabs)
    ss_list_remove(ss);
  slabs_in_use++;
  pthread_mutex_unlock(&ss_lock);

  struct hak_tiny_slab *s = &ss->slabs[idx];
  uint32_t bs = (uint32_t)hak_tiny_class_size(cls);
  s->cls = cls;
  s->block_size = bs;
  s->free = NULL;
  __atomic_store_n(&s->remote, NULL, __ATOMIC_RELAXED);
  s->used = 0;
  __atomic_store_n(&s->carved, 0, __ATOMIC_RELAXED);
  s->div_check = UINT64_MAX / bs + 1;
  s->next = s->prev = NULL;
  __atomic_store_n(&s->owner, owner, __ATOMIC_RELEASE);
  HAK_STAT_PATH(TINY_SLAB_NEW, 1);
  return s;
}

/* Returns an empty slab (no block out, none on any list) to its superslab,
 * and the superslab to libhak-os when all its slabs are free. */
void tiny_slab_release(struct hak_tiny_slab *s) {
  struct hak_tiny_superslab *ss = (struct hak_tiny_superslab *)hak_region_of(s);
  unsigned idx = (unsigned)(s - ss->slabs);
  uint64_t bit = (uint64_t)1 << idx;
  __atomic_store_n(&s->owner, HAK_TINY_OWNER_NONE, __ATOMIC_RELEASE);
  bool touched = s->carved != 0;
  /* Every later free into it fails the block-start check. */
  __atomic_store_n(&s->carved, 0, __ATOMIC_RELAXED);
  s->free = NULL;
  HAK_STAT_PATH(TINY_SLAB_RELEASED, 1);

  uint64_t now = hak_os_clock_ms();
  pthread_mutex_lock(&ss_lock);
  purge_locked(now);
  slabs_in_use--;
  if (!ss->free_slabs)
    ss_list_push(ss);
  ss->free_slabs |= bit;
  if (ss->free_slabs == ALL_SLABS) {
    /* libhak-os is told how far pages may be resident (slabs are taken
     * lowest first, so untouched ones gather at the end): whoever takes
     * the superslab next then knows the rest is zero and untouched. */
    uint64_t resident = ss->dirty_slabs | (touched ? bit : 0) | 1;
    size_t extent =
        (size_t)(64 - __builtin_clzll(resident)) * HAK_TINY_SLAB_SIZE;
    dirty_count -= (unsigned)__builtin_popcountll(ss->dirty_slabs);
    ss_list_remove(ss);
    ss_count--;
    pthread_mutex_unlock(&ss_lock);
    hak_os_superslab_free_dirty(ss, extent);
    return;
  }
  /* Keep the pages for the purge delay, so that slab churn makes no
   * system call while memory use still follows the working set; past the
   * limit (or with no delay), at once. */
  if (touched) {
    if (dirty_count < dirty_limit && purge_delay_ms) {
      ss->dirty_slabs |= bit;
      ss->dirty_since_ms[idx] = now;
      dirty_count++;
      if (now + purge_delay_ms < next_purge_ms)
        next_purge_ms = now + purge_delay_ms;
    } else {
      hak_os_decommit(tiny_slab_start(s), HAK_TINY_SLAB_SIZE);
    }
  }
  pthread_mutex_unlock(&ss_lock);
}

void tiny_slab_abandon(struct hak_tiny_slab *s) {
  pthread_mutex_lock(&abandoned_lock);
  __atomic_store_n(&s->owner, HAK_TINY_OWNER_ABANDONED, __ATOMIC_RELEASE);
  slab_list_push(&abandoned[s->cls], s);
  note_abandoned(s->cls);
  abandoned_count++;
  pthread_mutex_unlock(&abandoned_lock);
}

/* Takes an abandoned slab of class cls that has a block to give, releasing
 * the ones found empty on the way (their blocks were all freed remotely
 * after their thread ended).  Returns the slab owned by `owner`, its free
 * list holding every free block, or NULL. */
struct hak_tiny_slab *tiny_slab_adopt(unsigned cls, uint64_t owner) {
  if (!__atomic_load_n(&abandoned_any[cls], __ATOMIC_RELAXED))
    return NULL;
  pthread_mutex_lock(&abandoned_lock);
  struct hak_tiny_slab *s = abandoned[cls];
  while (s) {
    struct hak_tiny_slab *next = s->next;
    tiny_slab_collect(s);
    if (s->used == 0) {
      slab_list_remove(&abandoned[cls], s);
      note_abandoned(cls);
      abandoned_count--;
      tiny_slab_release(s);
    } else if (s->free || tiny_slab_can_carve(s)) {
      slab_list_remove(&abandoned[cls], s);
      note_abandoned(cls);
      abandoned_count--;
      __atomic_store_n(&s->owner, owner, __ATOMIC_RELEASE);
      pthread_mutex_unlock(&abandoned_lock);
      HAK_STAT_PATH(TINY_SLAB_ADOPTED, 1);
      return s;
    }
    s = next;
  }
  pthread_mutex_unlock(&abandoned_lock);
  return NULL;
}

struct hak_tiny_info hak_tiny_info(void) {
  struct hak_tiny_info info;
  pthread_mutex_lock(&abandoned_lock);
  info.slabs_abandoned = abandoned_count;
  pthread_mutex_lock(&ss_lock);
  info.superslabs = ss_count;
  info.slabs_in_use = slabs_in_use;
  info.slabs_dirty = dirty_count;
  pthread_mutex_unlock(&ss_lock);
  pthread_mutex_unlock(&abandoned_lock);
  return info;
}

void hak_tiny_fork_prepare(void) {
  pthread_mutex_lock(&abandoned_lock);
  pthread_mutex_lock(&ss_lock);
}

void hak_tiny_fork_parent(void) {
  pthread_mutex_unlock(&ss_lock);
  pthread_mutex_unlock(&abandoned_lock);
}
