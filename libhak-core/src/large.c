/* large.c - blocks above the mid tier: one block per region.
 *
 * A block that fits in a superslab with its header takes a whole superslab
 * from libhak-os's cache (a "large" region: no system call once the cache is
 * warm, and only the touched pages are resident); a bigger one gets a huge
 * region of its own.  The header sits at the region's start, so free finds
 * it with the same mask as every other block, and the block starts `offset`
 * bytes in (a page, or the requested alignment).
 *
 * Alignments of a superslab or more would put the block on a superslab
 * boundary, where its header would have to be; those few blocks are kept in
 * a table instead (free recognises them by that very alignment).
 */
#include "core_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>

struct large_header {
  struct hak_region region; /* size = bytes mapped */
  size_t offset;            /* block start - region start */
  size_t usable;            /* bytes the block may use */
  size_t dirty;             /* large: bytes from the region start that may be
                               non-zero, this block's or a previous user's */
  bool guarded;             /* a no-access page follows the usable bytes */
};

/* HAKMEM_GUARD_PAGES: an overflow past a large block's last page faults at
 * once instead of running into whatever follows. */
static void guard_set(struct large_header *h) {
  h->guarded = hak_config.guard_pages;
  if (h->guarded)
    hak_os_protect((char *)h + h->offset + h->usable, HAK_PAGE_SIZE, false);
}

static void guard_clear(struct large_header *h) {
  if (h->guarded)
    hak_os_protect((char *)h + h->offset + h->usable, HAK_PAGE_SIZE, true);
  h->guarded = false;
}

/* Blocks in use and their usable bytes (mallinfo).  Large allocations
 * take the caches' lock anyway: an atomic add costs nothing here. */
static size_t live_blocks, live_bytes;

static void count_live(size_t bytes, bool add) {
  if (add) {
    __atomic_add_fetch(&live_blocks, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&live_bytes, bytes, __ATOMIC_RELAXED);
  } else {
    __atomic_sub_fetch(&live_blocks, 1, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&live_bytes, bytes, __ATOMIC_RELAXED);
  }
}

void hak_large_usage(size_t *blocks, size_t *bytes) {
  *blocks = __atomic_load_n(&live_blocks, __ATOMIC_RELAXED);
  *bytes = __atomic_load_n(&live_bytes, __ATOMIC_RELAXED);
}

static size_t guard_size(void) { return hak_config.guard_pages ? HAK_PAGE_SIZE : 0; }

static inline struct large_header *header_of(const void *p) {
  return (struct large_header *)hak_region_of(p);
}

static size_t page_round(size_t n) {
  return (n + HAK_PAGE_SIZE - 1) & ~(HAK_PAGE_SIZE - 1);
}

/* ---- over-aligned blocks -------------------------------------------- */

struct overaligned {
  void *block, *base;
  size_t mapped, usable;
};
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct overaligned *table; /* grown by doubling, from libhak-os */
static size_t table_len, table_cap, table_mapped;

static bool table_add(struct overaligned e) {
  if (table_len == table_cap) {
    size_t cap = table_cap ? table_cap * 2 : 256;
    size_t mapped;
    bool zeroed;
    struct overaligned *t =
        hak_os_huge_alloc(cap * sizeof *t, &mapped, &zeroed);
    if (!t)
      return false;
    for (size_t i = 0; i < table_len; i++)
      t[i] = table[i];
    if (table)
      hak_os_huge_free(table, table_mapped);
    table = t;
    table_cap = mapped / sizeof *t;
    table_mapped = mapped;
  }
  table[table_len++] = e;
  return true;
}

static struct overaligned *table_find(const void *p) {
  for (size_t i = 0; i < table_len; i++)
    if (table[i].block == p)
      return &table[i];
  return NULL;
}

bool hak_large_is_overaligned(const void *p) {
  pthread_mutex_lock(&table_lock);
  bool found = table_find(p) != NULL;
  pthread_mutex_unlock(&table_lock);
  return found;
}

static void *malloc_overaligned(size_t size, size_t align, bool *zeroed) {
  if (size > SIZE_MAX - align) {
    errno = ENOMEM;
    return NULL;
  }
  size_t mapped;
  char *base = hak_os_huge_alloc(size + align, &mapped, zeroed);
  if (!base)
    return NULL;
  char *block = (char *)(((uintptr_t)base + align - 1) & ~(uintptr_t)(align - 1));
  struct overaligned e = {block, base, mapped, mapped - (size_t)(block - base)};
  pthread_mutex_lock(&table_lock);
  bool ok = table_add(e);
  pthread_mutex_unlock(&table_lock);
  if (!ok) {
    hak_os_huge_free(base, mapped);
    errno = ENOMEM;
    return NULL;
  }
  count_live(e.usable, true);
  return block;
}

/* ---- large and huge blocks --------------------------------------------- */

/* A block of size bytes; *nonzero receives how many bytes from its start
 * may be non-zero (0: all zero), so that calloc clears only those. */
static void *large_malloc(size_t size, size_t align, size_t *nonzero) {
  *nonzero = 0;
  if (size > PTRDIFF_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  bool zeroed = false; /* not set when the mapping fails */
  if (align >= HAK_SUPERSLAB_SIZE) {
    void *p = malloc_overaligned(size, align, &zeroed);
    *nonzero = zeroed ? 0 : size;
    return p;
  }
  size_t offset = align > HAK_PAGE_SIZE ? align : HAK_PAGE_SIZE;
  size_t need = offset + page_round(size) + guard_size();
  struct large_header *h;
  size_t mapped;
  if (need <= HAK_SUPERSLAB_SIZE) {
    /* A superslab from the cache keeps its pages for the purge delay; only
     * the part its last user wrote may be non-zero. */
    size_t dirty;
    h = hak_os_superslab_alloc_dirty(&dirty);
    mapped = HAK_SUPERSLAB_SIZE;
    if (!h)
      return NULL;
    hak_os_set_kind(h, HAK_REGION_LARGE);
    *nonzero = dirty > offset ? dirty - offset : 0;
    h->dirty = dirty > need ? dirty : need;
  } else {
    h = hak_os_huge_alloc(need, &mapped, &zeroed);
    if (!h)
      return NULL;
    hak_os_set_kind(h, HAK_REGION_HUGE);
    *nonzero = zeroed ? 0 : size;
  }
  h->region.size = mapped;
  h->offset = offset;
  h->usable = need - offset - guard_size();
  guard_set(h);
  count_live(h->usable, true);
  HAK_STAT_PATH(LARGE_MALLOC, 1);
  return (char *)h + offset;
}

void *hak_large_malloc(size_t size, size_t align, bool *zeroed) {
  size_t nonzero;
  void *p = large_malloc(size, align, &nonzero);
  *zeroed = nonzero == 0;
  return p;
}

void *hak_large_calloc(size_t size) {
  size_t nonzero;
  void *p = large_malloc(size, 0, &nonzero);
  if (p && nonzero)
    (void)hak_os_zero(p, nonzero < size ? nonzero : size);
  return p;
}

void hak_large_free(void *p) {
  if (((uintptr_t)p & HAK_SUPERSLAB_MASK) == 0) {
    pthread_mutex_lock(&table_lock);
    struct overaligned *e = table_find(p);
    if (!e) {
      pthread_mutex_unlock(&table_lock);
      hak_misuse("free", "invalid pointer", p);
    }
    struct overaligned copy = *e;
    *e = table[--table_len];
    pthread_mutex_unlock(&table_lock);
    count_live(copy.usable, false);
    hak_os_huge_free(copy.base, copy.mapped);
    return;
  }
  struct large_header *h = header_of(p);
  if (HAK_GATE_CHECK_BLOCK_START && (char *)h + h->offset != (char *)p)
    hak_misuse("free", "invalid pointer (not the start of a block)", p);
  HAK_STAT_PATH(LARGE_FREE, 1);
  count_live(h->usable, false);
  guard_clear(h);
  if (hak_os_kind_of(h) == HAK_REGION_LARGE)
    hak_os_superslab_free_dirty(h, h->dirty);
  else
    hak_os_huge_free(h, h->region.size);
}

size_t hak_large_usable_size(const void *p) {
  if (((uintptr_t)p & HAK_SUPERSLAB_MASK) == 0) {
    pthread_mutex_lock(&table_lock);
    struct overaligned *e = table_find(p);
    size_t n = e ? e->usable : 0;
    pthread_mutex_unlock(&table_lock);
    return n;
  }
  return header_of(p)->usable;
}

bool hak_large_resize(void *p, size_t size) {
  if (((uintptr_t)p & HAK_SUPERSLAB_MASK) == 0)
    return false;
  struct large_header *h = header_of(p);
  size_t need = page_round(size);
  if (size > PTRDIFF_MAX)
    return false;
  size_t guard = h->guarded ? HAK_PAGE_SIZE : 0;
  if (hak_os_kind_of(h) == HAK_REGION_LARGE) {
    /* The whole superslab is ours: growing or shrinking is bookkeeping. */
    if (h->offset + need + guard > HAK_SUPERSLAB_SIZE)
      return false;
    guard_clear(h);
    count_live(h->usable, false);
    h->usable = need;
    count_live(h->usable, true);
    if (h->offset + need > h->dirty)
      h->dirty = h->offset + need;
    guard_set(h);
    return true;
  }
  size_t mapped;
  bool had_guard = h->guarded;
  guard_clear(h);
  if (!hak_os_huge_resize(h, h->region.size, h->offset + need + guard, &mapped)) {
    if (had_guard)
      guard_set(h);
    return false;
  }
  h->region.size = mapped;
  count_live(h->usable, false);
  h->usable = mapped - h->offset - guard;
  count_live(h->usable, true);
  guard_set(h);
  return true;
}

void hak_large_fork_prepare(void) { pthread_mutex_lock(&table_lock); }
void hak_large_fork_parent(void) { pthread_mutex_unlock(&table_lock); }
