/* SPDX-License-Identifier: MIT */
/* heap.c - the per-thread heap: refilling a class, frees that are not the
 * plain local push, and handing slabs over when a thread ends.
 *
 * Accounting: a slab's `used` counts blocks that are out of its hands: held
 * by the program, or sitting in its remote list.  While a slab is current,
 * its free blocks are on the bin's list and `used` is not maintained; when
 * it stops being current the bin list is empty (or is given back first), so
 * `used` is simply every carved block minus those on its own free list.
 */
#include "tiny_internal.h"

#include <pthread.h>
#include <stdio.h>

__thread struct hak_tiny_heap hak_tiny_heap
    __attribute__((tls_model("initial-exec")));

uint64_t hak_tiny_secret = 0x9e3779b97f4a7c15ull;

static uint64_t next_heap_id = 1;
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

static void on_thread_exit(void *arg) {
  (void)arg;
  HAK_VG_QUIET_BEGIN(); /* walks the links inside freed blocks */
  hak_tiny_thread_exit();
  HAK_VG_QUIET_END();
}

static void make_exit_key(void) {
  pthread_key_create(&exit_key, on_thread_exit);
  /* The secret only needs to be unknown to the program; the address of a
   * stack variable and the clock of the first thread are enough for a
   * marker that a program cannot forge by accident. */
  uint64_t x = (uintptr_t)&x;
#if defined(__x86_64__)
  x ^= (uint64_t)__builtin_ia32_rdtsc();
#endif
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ull;
  hak_tiny_secret ^= x ^ (x >> 29);
  hak_tiny_secret |= (uint64_t)1 << 63; /* see hak_tiny_link_get */
}

void hak_tiny_init(void) { pthread_once(&exit_key_once, make_exit_key); }

static HAK_COLD void heap_init(struct hak_tiny_heap *h) {
  hak_tiny_init();
  h->id = __atomic_fetch_add(&next_heap_id, 1, __ATOMIC_RELAXED);
  h->key = hak_tiny_secret;
  h->exited = 0;
  /* Last: pthread_setspecific may allocate, and that allocation must find
   * the heap ready. */
  pthread_setspecific(exit_key, h);
}

/* Takes the slab's remote list whole (NULL: none). */
static void *take_remote(struct hak_tiny_slab *s) {
  if (!__atomic_load_n(&s->remote, __ATOMIC_RELAXED))
    return NULL;
  return __atomic_exchange_n(&s->remote, NULL, __ATOMIC_ACQUIRE);
}

static __attribute__((unused)) unsigned list_length(void *list) {
  unsigned n = 0;
  for (void *p = list; p; p = hak_tiny_next(p))
    n++;
  return n;
}

unsigned hak_tiny_slab_collect(struct hak_tiny_slab *s) {
  void *list = take_remote(s);
  if (!list)
    return 0;
  unsigned n = 1;
  void *last = list;
  for (void *q; (q = hak_tiny_next(last)); n++)
    last = q;
  hak_tiny_set_next(last, s->free);
  s->free = list;
  s->used -= n;
  HAK_STAT_PATH(TINY_REMOTE_COLLECTED, n);
  return n;
}

/* Carves the next run of blocks of the current slab onto the class's list:
 * the blocks that start in the page holding the next uncarved byte.  Only a
 * block's first word is written (its link), so a carve touches one page,
 * and a class's pages become resident only as it grows. */
static void *carve(struct hak_tiny_heap *h, struct hak_tiny_slab *s) {
  uint32_t bs = s->block_size;
  uint32_t page_end = (s->carved | (uint32_t)(HAK_PAGE_SIZE - 1)) + 1;
  uint32_t n = (page_end - s->carved + bs - 1) / bs;
  uint32_t left = (uint32_t)(HAK_TINY_SLAB_SIZE - s->carved) / bs;
  if (n > left)
    n = left;
  char *first = hak_tiny_slab_start(s) + s->carved;
  char *p = first;
  for (uint32_t i = 1; i < n; i++, p += bs)
    hak_tiny_set_next(p, p + bs);
  hak_tiny_set_next(p, NULL);
  __atomic_store_n(&s->carved, s->carved + n * bs, __ATOMIC_RELAXED);
  h->free[s->cls] = hak_tiny_next(first);
  hak_tiny_mark_live(first); /* reused memory may hold an old marker */
  return first;
}

/* HAKMEM_CHECKS=2: before a slab's free list is handed to the heap, every
 * block on it must still look freed: a valid link (hak_tiny_next checks
 * it), a block start, the freed marker in place (a write after free into
 * the second word is caught here, which the per-call checks do not see),
 * and as many blocks as the slab's count says (a cycle or a lost tail). */
static HAK_COLD void audit_free_list(const struct hak_tiny_slab *s) {
  uint32_t expect = tiny_slab_carved_blocks(s) - s->used;
  uint32_t n = 0;
  for (void *p = s->free; p; p = hak_tiny_next(p)) {
    if (++n > expect || !hak_tiny_is_block_start(s, p) ||
        (HAK_GATE_CHECK_DOUBLE_FREE &&
         ((const uint64_t *)p)[1] != hak_tiny_secret))
      hak_tiny_corrupt(p);
  }
  if (n != expect)
    hak_tiny_corrupt(s->free);
}

/* Makes s the current slab of its class, taking its free list. */
static void make_current(struct hak_tiny_heap *h, struct hak_tiny_slab *s) {
  if (HAK_GATE_CHECKS && HAK_UNLIKELY(hak_tiny_audit_lists) && s->free)
    audit_free_list(s);
  __atomic_store_n(&s->owner, h->id, __ATOMIC_RELAXED);
  h->cur[s->cls] = s;
  h->free[s->cls] = s->free;
  s->free = NULL;
}

/* An idle slab gained a free block: refill may take it. */
static void make_partial(struct hak_tiny_heap *h, struct hak_tiny_slab *s) {
  __atomic_store_n(&s->owner, h->id | HAK_TINY_OWNER_IDLE, __ATOMIC_RELAXED);
  partial_append(h, s);
}

/* The current slab has nothing left: it becomes full (its blocks are all
 * out).  Called with the bin list empty. */
static void retire_current(struct hak_tiny_heap *h, unsigned cls) {
  struct hak_tiny_slab *s = h->cur[cls];
  h->cur[cls] = NULL;
  __atomic_store_n(&s->owner, h->id | HAK_TINY_OWNER_IDLE | HAK_TINY_OWNER_FULL,
                   __ATOMIC_RELAXED);
  s->used = tiny_slab_carved_blocks(s);
  slab_list_push(&h->full[cls], s);
}

/* Moves a full slab's remote frees to its free list; it becomes partial,
 * or is released if nothing in it is in use any more.  Returns whether the
 * slab was released. */
static bool drain_remote(struct hak_tiny_heap *h, struct hak_tiny_slab *s) {
  if (!hak_tiny_slab_collect(s))
    return false;
  slab_list_remove(&h->full[s->cls], s);
  if (s->used == 0) {
    hak_tiny_slab_release(s);
    return true;
  }
  make_partial(h, s);
  return false;
}

static inline void *pop(struct hak_tiny_heap *h, unsigned cls) {
  void *p = h->free[cls];
  h->free[cls] = hak_tiny_next(p);
  hak_tiny_mark_live(p);
  return p;
}

HAK_COLD void *hak_tiny_refill(size_t n) {
  unsigned cls = hak_tiny_class(n);
  struct hak_tiny_heap *h = &hak_tiny_heap;
  if (HAK_UNLIKELY(h->id == 0))
    heap_init(h);
  /* Sampling is taken here, where the fast path has already been left: a
   * sampled allocation costs no list, and sampling off costs one load. */
  if (HAK_UNLIKELY(hak_os_guard_sample())) {
    void *g = hak_os_guard_alloc(n, 16);
    if (g)
      return g;
  }
  HAK_STAT_PATH(TINY_REFILL, 1);
  HAK_STAT_PATH(TINY_MALLOC, 1);
  HAK_STAT_CLASS_MALLOC(cls);

  struct hak_tiny_slab *s = h->cur[cls];
  if (s) {
    /* 1. Blocks other threads gave back to the current slab: the list is
     *    not walked (a current slab keeps no count), so each block's line
     *    comes over when malloc hands it out, not all at once here. */
    void *list = take_remote(s);
    if (list) {
      HAK_STAT_PATH(TINY_REMOTE_COLLECTED, list_length(list));
      h->free[cls] = list;
      return pop(h, cls);
    }
    /* 2. Blocks not carved yet. */
    if (tiny_slab_can_carve(s))
      return carve(h, s);
    retire_current(h, cls);
  }
  /* The class changes slab: a slow path that may take none from the slab
   * set, so the delayed purge is looked at here too (a thread whose slabs
   * keep it going would otherwise never give back what others freed). */
  hak_tiny_purge_due(hak_os_clock_ms());
  /* 3. A slab of ours with free blocks. */
  if (h->partial[cls]) {
    s = h->partial[cls];
    partial_remove(h, s);
    make_current(h, s);
    return pop(h, cls);
  }
  /* 4. Full slabs that other threads have freed into (a bounded look, so a
   *    large heap does not scan all of them on every refill). */
  s = h->full[cls];
  for (int i = 0; s && i < 8; i++) {
    struct hak_tiny_slab *next = s->next;
    drain_remote(h, s);
    s = next;
  }
  if (h->partial[cls]) {
    s = h->partial[cls];
    partial_remove(h, s);
    make_current(h, s);
    return pop(h, cls);
  }
  /* 5. A slab left behind by a thread that ended. */
  s = hak_tiny_slab_adopt(cls, h->id);
  if (!s)
    s = hak_tiny_slab_new(cls, h->id); /* 6. A new slab. */
  if (!s)
    return NULL; /* errno is ENOMEM, from libhak-os */
  make_current(h, s);
  if (h->free[cls])
    return pop(h, cls);
  return carve(h, s);
}

/* A free the fast path does not take: into another thread's slab (or an
 * abandoned one), or the first free into one of our full slabs. */
HAK_COLD void hak_tiny_free_slow(void *p, struct hak_tiny_slab *s) {
  struct hak_tiny_heap *h = &hak_tiny_heap;
  uint64_t owner = __atomic_load_n(&s->owner, __ATOMIC_RELAXED);
  if (HAK_UNLIKELY(hak_tiny_bad_free_of(s, p, hak_tiny_secret)))
    hak_tiny_bad_free(p, s);
  hak_tiny_mark_freed(p, hak_tiny_secret);
  if ((owner & ~(HAK_TINY_OWNER_IDLE | HAK_TINY_OWNER_FULL)) != h->id) {
    /* Remote: push onto the slab's list.  Only its owner takes from it, and
     * it takes the whole list at once, so a plain CAS push has no ABA. */
    void *head = __atomic_load_n(&s->remote, __ATOMIC_RELAXED);
    do {
      hak_tiny_set_next(p, head);
    } while (!__atomic_compare_exchange_n(&s->remote, &head, p, true,
                                          __ATOMIC_RELEASE, __ATOMIC_RELAXED));
    HAK_STAT_PATH(TINY_FREE_REMOTE, 1);
    HAK_STAT_CLASS_FREE(s->cls);
    return;
  }
  HAK_STAT_PATH(TINY_FREE_LOCAL, 1);
  HAK_STAT_CLASS_FREE(s->cls);
  /* One of our full slabs: it has a block to give now. */
  hak_tiny_set_next(p, s->free);
  s->free = p;
  slab_list_remove(&h->full[s->cls], s);
  if (--s->used == 0) {
    hak_tiny_slab_release(s);
    return;
  }
  make_partial(h, s);
}

/* The fast free left an idle (partial) slab with no block out. */
HAK_COLD void hak_tiny_slab_emptied(struct hak_tiny_slab *s) {
  struct hak_tiny_heap *h = &hak_tiny_heap;
  partial_remove(h, s);
  hak_tiny_slab_release(s);
}

HAK_COLD void hak_tiny_bad_free(const void *p, struct hak_tiny_slab *s) {
  char msg[160];
  const char *what;
  uint64_t owner = __atomic_load_n(&s->owner, __ATOMIC_RELAXED);
  if (owner == HAK_TINY_OWNER_NONE ||
      __atomic_load_n(&s->carved, __ATOMIC_RELAXED) == 0)
    what = "invalid pointer (not a block hakmem handed out)";
  else if (!hak_tiny_is_block_start(s, p))
    what = "invalid pointer (not the start of a block)";
  else
    what = "double free";
  int n = snprintf(msg, sizeof msg, "hakmem: free(): %s: %p\n", what, p);
  hak_os_write_stderr(msg, n > 0 ? (size_t)n : 0);
  hak_os_abort();
}

HAK_COLD void hak_tiny_corrupt(const void *p) {
  char msg[160];
  int n = snprintf(msg, sizeof msg,
                   "hakmem: malloc(): corrupted free list (a freed block was "
                   "overwritten): %p\n",
                   p);
  hak_os_write_stderr(msg, n > 0 ? (size_t)n : 0);
  hak_os_abort();
}

size_t hak_tiny_usable_size(const void *p) {
  return hak_tiny_slab_of(p)->block_size;
}

/* Gives every slab of the heap back: empty ones to their superslab, the
 * others to the abandoned lists, from which later threads adopt them. */
static void hand_over(struct hak_tiny_slab *s) {
  hak_tiny_slab_collect(s);
  s->next = s->prev = NULL;
  if (s->used == 0)
    hak_tiny_slab_release(s);
  else
    hak_tiny_slab_abandon(s);
}

void hak_tiny_thread_exit(void) {
  struct hak_tiny_heap *h = &hak_tiny_heap;
  if (h->id == 0)
    return;
  for (unsigned cls = 0; cls < HAK_TINY_CLASSES; cls++) {
    if (h->cur[cls]) {
      /* The bin's blocks go back to the slab's own list. */
      struct hak_tiny_slab *s = h->cur[cls];
      unsigned n = 0;
      void *last = NULL;
      for (void *q = h->free[cls]; q; q = hak_tiny_next(q)) {
        n++;
        last = q;
      }
      if (last) {
        hak_tiny_set_next(last, s->free);
        s->free = h->free[cls];
      }
      s->used = tiny_slab_carved_blocks(s) - n;
      h->cur[cls] = NULL;
      h->free[cls] = NULL;
      hand_over(s);
    }
    while (h->partial[cls]) {
      struct hak_tiny_slab *s = h->partial[cls];
      partial_remove(h, s);
      hand_over(s);
    }
    while (h->full[cls]) {
      struct hak_tiny_slab *s = h->full[cls];
      slab_list_remove(&h->full[cls], s);
      hand_over(s);
    }
  }
  /* A later malloc on this thread (another destructor) sets up afresh. */
  h->id = 0;
  h->exited = 1;
  /* Slabs that earlier exits left behind may be empty by now (this thread
   * may have freed their last blocks), and what is dirty may be due. */
  hak_tiny_abandoned_sweep();
  hak_tiny_purge_due(hak_os_clock_ms());
}
