/* SPDX-License-Identifier: MIT */
/* slab.c - carving 64 KiB slabs out of superslabs, and handing slabs of
 * exited threads to the threads that come after.
 *
 * Both run on slow paths (a heap needs a new slab, a slab became empty, a
 * thread ended) under one lock per purpose.  Lock order: abandoned_lock,
 * then the slab set's lock, then libhak-os's lock.
 */
#include "tiny_internal.h"

#include <string.h>

#include <pthread.h>

/* A superslab just taken from libhak-os: its slabs are free. */
static void superslab_adopted(struct hak_os_slabset_superslab *set_ss,
                              size_t dirty) {
  struct hak_tiny_superslab *ss = (struct hak_tiny_superslab *)set_ss;
  if (dirty) {
    /* A reused superslab: reset the header; slab metadata is rewritten
     * as each slab is taken. */
    for (unsigned i = 0; i < HAK_TINY_SLABS; i++)
      ss->slabs[i] = (struct hak_tiny_slab){.owner = HAK_TINY_OWNER_NONE};
  } else {
    for (unsigned i = 0; i < HAK_TINY_SLABS; i++)
      ss->slabs[i].owner = HAK_TINY_OWNER_NONE;
  }
}

/* The slab set's part of the header fits its first line: the slab table
 * that hak_tiny_slab_of indexes starts at the second. */
_Static_assert(offsetof(struct hak_tiny_superslab, slabs) == 64,
               "slab table in the header's second line");

/* The free slabs of the tiny front's superslabs (libhak-os keeps the
 * bookkeeping).  Free slabs keep their pages ("dirty") for the purge
 * delay, so that a batch freed and allocated again makes no system call;
 * the limit caps what a burst leaves resident within one delay (1024:
 * 64 MiB). */
static struct hak_os_slabset slabset = {
    .kind = HAK_REGION_TINY,
    .slab_shift = HAK_TINY_SLAB_SHIFT,
    .slab_count = HAK_TINY_SLABS,
    .header = HAK_TINY_SLAB_SIZE, /* slab 0 holds the header */
    .since_offset = offsetof(struct hak_tiny_superslab, dirty_since_ms),
    .adopted = superslab_adopted,
    .dirty_limit = 1024,
    .purge_delay_ms = 10,
    HAK_OS_SLABSET_STATE_INIT,
};
bool hak_tiny_audit_lists;

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

void hak_tiny_configure(const struct hak_tiny_config *cfg) {
  hak_os_slabset_configure(&slabset, cfg->dirty_slab_limit,
                           cfg->purge_delay_ms);
  hak_tiny_audit_lists = HAK_GATE_CHECKS && cfg->audit_lists;
}

char *hak_tiny_slab_start(const struct hak_tiny_slab *s) {
  struct hak_tiny_superslab *ss = (struct hak_tiny_superslab *)hak_region_of(s);
  return (char *)ss + (size_t)(s - ss->slabs) * HAK_TINY_SLAB_SIZE;
}

struct hak_tiny_slab *hak_tiny_slab_new(unsigned cls, uint64_t owner) {
  unsigned idx;
  struct hak_tiny_superslab *ss =
      (struct hak_tiny_superslab *)hak_os_slabset_take(&slabset, &idx);
  if (!ss)
    return NULL;
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
void hak_tiny_slab_release(struct hak_tiny_slab *s) {
  struct hak_tiny_superslab *ss = (struct hak_tiny_superslab *)hak_region_of(s);
  __atomic_store_n(&s->owner, HAK_TINY_OWNER_NONE, __ATOMIC_RELEASE);
  bool touched = s->carved != 0;
  /* Every later free into it fails the block-start check. */
  __atomic_store_n(&s->carved, 0, __ATOMIC_RELAXED);
  s->free = NULL;
  HAK_STAT_PATH(TINY_SLAB_RELEASED, 1);
  hak_os_slabset_release(&slabset, &ss->slabset, (unsigned)(s - ss->slabs),
                         touched, 1);
}

void hak_tiny_slab_abandon(struct hak_tiny_slab *s) {
  pthread_mutex_lock(&abandoned_lock);
  __atomic_store_n(&s->owner, HAK_TINY_OWNER_ABANDONED, __ATOMIC_RELEASE);
  slab_list_push(&abandoned[s->cls], s);
  note_abandoned(s->cls);
  __atomic_store_n(&abandoned_count, abandoned_count + 1, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&abandoned_lock);
}

/* Releases s, an abandoned slab of class cls, if all its blocks have come
 * back (freed by other threads after its own ended); abandoned_lock held. */
static bool release_if_empty(unsigned cls, struct hak_tiny_slab *s) {
  hak_tiny_slab_collect(s);
  if (s->used != 0)
    return false;
  slab_list_remove(&abandoned[cls], s);
  __atomic_store_n(&abandoned_count, abandoned_count - 1, __ATOMIC_RELAXED);
  hak_tiny_slab_release(s);
  return true;
}

/* Takes an abandoned slab of class cls that has a block to give, releasing
 * the ones found empty on the way.  Returns the slab owned by `owner`, its
 * free list holding every free block, or NULL. */
struct hak_tiny_slab *hak_tiny_slab_adopt(unsigned cls, uint64_t owner) {
  if (!__atomic_load_n(&abandoned_any[cls], __ATOMIC_RELAXED))
    return NULL;
  pthread_mutex_lock(&abandoned_lock);
  struct hak_tiny_slab *s = abandoned[cls];
  while (s) {
    struct hak_tiny_slab *next = s->next;
    if (!release_if_empty(cls, s) && (s->free || tiny_slab_can_carve(s))) {
      slab_list_remove(&abandoned[cls], s);
      __atomic_store_n(&abandoned_count, abandoned_count - 1, __ATOMIC_RELAXED);
      note_abandoned(cls);
      __atomic_store_n(&s->owner, owner, __ATOMIC_RELEASE);
      pthread_mutex_unlock(&abandoned_lock);
      HAK_STAT_PATH(TINY_SLAB_ADOPTED, 1);
      return s;
    }
    s = next;
  }
  note_abandoned(cls);
  pthread_mutex_unlock(&abandoned_lock);
  return NULL;
}

static void sweep_locked(void) {
  for (unsigned cls = 0; cls < HAK_TINY_CLASSES; cls++) {
    for (struct hak_tiny_slab *s = abandoned[cls], *next; s; s = next) {
      next = s->next;
      release_if_empty(cls, s);
    }
    note_abandoned(cls);
  }
}

/* Releases every abandoned slab whose blocks have all come back.  Adoption
 * releases the ones it meets, but only for a class some thread still needs
 * a slab of: without this, a slab whose last block was freed remotely
 * stays resident for good. */
void hak_tiny_abandoned_sweep(void) {
  pthread_mutex_lock(&abandoned_lock);
  sweep_locked();
  pthread_mutex_unlock(&abandoned_lock);
}

struct hak_tiny_info hak_tiny_info(void) {
  struct hak_tiny_info info;
  pthread_mutex_lock(&abandoned_lock);
  info.slabs_abandoned = abandoned_count;
  struct hak_os_slabset_info set = hak_os_slabset_info(&slabset);
  info.superslabs = set.superslabs;
  info.slabs_in_use = set.slabs_in_use;
  info.slabs_dirty = set.slabs_dirty;
  pthread_mutex_unlock(&abandoned_lock);
  return info;
}

/* When the abandoned lists were last swept by hak_tiny_purge_due. */
static uint64_t swept_ms;

/* Besides the slab set's delayed purge, the abandoned lists are swept once
 * per purge delay: a server whose threads come and go, and whose remaining
 * threads free the blocks the others left, would otherwise keep those
 * slabs until some thread exits (thread exit sweeps too).  A sweep that
 * would wait for the lock is skipped: another thread holds it for an
 * adoption or a sweep of its own. */
void hak_tiny_purge_due(uint64_t now) {
  if (__atomic_load_n(&abandoned_count, __ATOMIC_RELAXED) &&
      now - __atomic_load_n(&swept_ms, __ATOMIC_RELAXED) >=
          slabset.purge_delay_ms &&
      pthread_mutex_trylock(&abandoned_lock) == 0) {
    __atomic_store_n(&swept_ms, now, __ATOMIC_RELAXED);
    sweep_locked();
    pthread_mutex_unlock(&abandoned_lock);
  }
  hak_os_slabset_purge(&slabset, now);
  hak_os_purge_due(now);
}

/* One superslab's part of hak_tiny_usage (the set's lock held, so no slab
 * of it is taken or released meanwhile). */
static void usage_of_superslab(void *arg,
                               struct hak_os_slabset_superslab *set_ss,
                               uint64_t slabs) {
  struct hak_tiny_usage *u = arg;
  struct hak_tiny_superslab *ss = (struct hak_tiny_superslab *)set_ss;
  const struct hak_tiny_heap *h = &hak_tiny_heap;
  for (; slabs; slabs &= slabs - 1) {
    const struct hak_tiny_slab *s = &ss->slabs[__builtin_ctzll(slabs)];
    uint64_t owner = __atomic_load_n(&s->owner, __ATOMIC_RELAXED);
    size_t bs = s->block_size;
    size_t carved = __atomic_load_n(&s->carved, __ATOMIC_RELAXED) / bs;
    size_t live;
    if (h->id && owner == h->id) {
      /* Our current slab: its free blocks are on our list of the class. */
      live = carved;
      for (void *p = h->free[s->cls]; p && live; p = hak_tiny_next(p))
        live--;
    } else if ((owner & HAK_TINY_OWNER_IDLE) || owner == HAK_TINY_OWNER_NONE) {
      /* Partial, full or abandoned: `used` is kept. */
      live = __atomic_load_n(&s->used, __ATOMIC_RELAXED);
      if (live > carved)
        live = carved; /* read while its owner changes it */
    } else {
      live = carved; /* another thread's current slab */
    }
    u->in_use += live * bs;
    u->free += (carved - live) * bs;
    u->live_blocks[s->cls] += live;
    u->free_blocks[s->cls] += carved - live;
  }
}

void hak_tiny_usage(struct hak_tiny_usage *u) {
  memset(u, 0, sizeof *u);
  hak_os_slabset_walk(&slabset, usage_of_superslab, u);
  struct hak_os_slabset_info set = hak_os_slabset_info(&slabset);
  u->dirty_bytes = (size_t)set.slabs_dirty * HAK_TINY_SLAB_SIZE;
  u->free += u->dirty_bytes;
  u->mapped = (size_t)set.superslabs * HAK_SUPERSLAB_SIZE;
  u->committed = set.committed;
  u->committed_peak = set.committed_peak;
}

size_t hak_tiny_trim(void) { return hak_os_slabset_purge_all(&slabset); }

void hak_tiny_fork_prepare(void) {
  pthread_mutex_lock(&abandoned_lock);
  pthread_mutex_lock(&slabset.lock);
}

void hak_tiny_fork_parent(void) {
  pthread_mutex_unlock(&slabset.lock);
  pthread_mutex_unlock(&abandoned_lock);
}
