/* SPDX-License-Identifier: MIT */
/* test_os.c - libhak-os: superslabs, huge regions, caches, registry,
 * decommit, counters and injected mapping failures.
 *
 * Every test starts from empty caches and a configuration it states, and
 * leaves the caches empty, so that the tests do not depend on their order
 * (the zero-size tests come last: a failure there can leave a stale
 * registry bit).
 * The system-call counters are asserted where they exist
 * (HAK_GATE_COUNT_SYSCALLS: standard and observe); the fast build asserts
 * that the snapshot stays all zeros and checks reuse by address instead.
 */
#include "hak_os.h"
#include "hak_stats.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_child.h"

#define SS HAK_SUPERSLAB_SIZE
#define PAGE HAK_PAGE_SIZE
#define MiB ((size_t)1 << 20)

static struct hak_os_config default_config;

/* ---- helpers -------------------------------------------------------------- */

static uint64_t stat_get(enum hak_stat id) {
  struct hak_stats_snapshot s;
  hak_stats_snapshot(&s);
  return s.count[id];
}

/* Counters at a point in time; delta() reads one of them against now. */
struct counters {
  struct hak_stats_snapshot s;
};
static struct counters mark(void) {
  struct counters c;
  hak_stats_snapshot(&c.s);
  return c;
}
static uint64_t delta(const struct counters *c, enum hak_stat id) {
  return stat_get(id) - c->s.count[id];
}

/* Mappings made for regions: a region in a range of address space that had
 * none maps a leaf of the region map too (os.map_leaves). */
static uint64_t mmaps(const struct counters *c) {
  return delta(c, HAK_STAT_SYS_MMAP) - delta(c, HAK_STAT_OS_MAP_LEAVES);
}

/* A purge delay no test outlives: nothing is purged for being old, so a
 * test sees the bounds alone, however loaded the machine. */
#define NEVER 3600000u

static void configure_delay(unsigned cache, unsigned reserve, size_t huge_bytes,
                            unsigned delay_ms) {
  struct hak_os_config cfg = default_config;
  cfg.superslab_cache = cache;
  cfg.superslab_reserve = reserve;
  cfg.huge_cache_bytes = huge_bytes;
  cfg.purge_delay_ms = delay_ms;
  cfg.transparent_huge_pages = false;
  hak_os_configure(&cfg);
}

static void configure(unsigned cache, unsigned reserve, size_t huge_bytes) {
  configure_delay(cache, reserve, huge_bytes, NEVER);
}

/* Sleeps past a purge delay of delay_ms, however coarse the clock. */
static void wait_past(unsigned delay_ms) {
  uint64_t start = hak_os_clock_ms();
  while (hak_os_clock_ms() < start + delay_ms + 2)
    usleep(1000);
}

static void assert_cache(unsigned committed, unsigned decommitted,
                         unsigned huge_regions, size_t huge_bytes) {
  struct hak_os_cache_info i = hak_os_cache_info();
  assert_int_equal(i.superslabs_committed, committed);
  assert_int_equal(i.superslabs_decommitted, decommitted);
  assert_int_equal(i.huge_regions, huge_regions);
  assert_int_equal(i.huge_bytes, huge_bytes);
}

/* Whether [p, p + n) is mapped at all (mincore fails with ENOMEM on a hole). */
static int is_mapped(const void *p, size_t n) {
  size_t pages = (n + PAGE - 1) / PAGE;
  unsigned char *vec = malloc(pages);
  assert_non_null(vec);
  int r = mincore((void *)p, n, vec);
  int e = errno;
  free(vec);
  if (r == 0)
    return 1;
  assert_int_equal(e, ENOMEM);
  return 0;
}

/* Any range, aligned or not (some start at ss + 1): read a word at a time
 * through memcpy, then the bytes after the last whole word. */
static int all_zero(const void *p, size_t n) {
  const unsigned char *c = p;
  size_t i = 0;
  for (; i + sizeof(uint64_t) <= n; i += sizeof(uint64_t)) {
    uint64_t w;
    memcpy(&w, c + i, sizeof w);
    if (w)
      return 0;
  }
  for (; i < n; i++)
    if (c[i])
      return 0;
  return 1;
}

/* Writes the first and last word of every page, so that the whole range is
 * proven writable (a fault would end the test). */
static void touch_pages(void *p, size_t n, uint64_t v) {
  for (size_t off = 0; off < n; off += PAGE) {
    *(volatile uint64_t *)((char *)p + off) = v;
    *(volatile uint64_t *)((char *)p + off + PAGE - sizeof(uint64_t)) = v;
  }
}

static int pages_hold(const void *p, size_t n, uint64_t v) {
  for (size_t off = 0; off < n; off += PAGE) {
    if (*(const volatile uint64_t *)((const char *)p + off) != v ||
        *(const volatile uint64_t *)((const char *)p + off + PAGE - sizeof(uint64_t)) != v)
      return 0;
  }
  return 1;
}

static int setup(void **state) {
  (void)state;
  hak_os_fail_next_mappings(0);
  hak_os_release_caches();
  configure(2, 16, 64 * MiB);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  hak_os_fail_next_mappings(0);
  hak_os_release_caches();
  hak_os_configure(&default_config);
  return 0;
}

/* ---- superslabs ------------------------------------------------------------ */

static void test_superslab_aligned_writable_zeroed(void **state) {
  (void)state;
  void *ss[3];
  for (int i = 0; i < 3; i++) {
    bool zeroed = false;
    ss[i] = hak_os_superslab_alloc(&zeroed);
    assert_non_null(ss[i]);
    assert_int_equal((uintptr_t)ss[i] % SS, 0);
    assert_true(zeroed); /* caches are empty: fresh from the kernel */
    assert_true(all_zero(ss[i], SS));
    assert_ptr_equal(hak_region_of((char *)ss[i] + SS - 1), ss[i]);
    assert_ptr_equal(hak_region_of((char *)ss[i] + SS / 2), ss[i]);
    memset(ss[i], 0x5A, SS); /* writable over its whole size */
    for (int j = 0; j < i; j++) /* disjoint from the others */
      assert_true((char *)ss[i] + SS <= (char *)ss[j] ||
                  (char *)ss[j] + SS <= (char *)ss[i]);
  }
  for (int i = 0; i < 3; i++) {
    const unsigned char *b = ss[i];
    assert_int_equal(b[0], 0x5A);
    assert_int_equal(b[SS - 1], 0x5A);
  }
  for (int i = 0; i < 3; i++)
    hak_os_superslab_free(ss[i]);
}

static void test_registry(void **state) {
  (void)state;
  configure(1, 0, 0);
  bool zeroed;
  char *ss = hak_os_superslab_alloc(&zeroed);
  assert_non_null(ss);
  assert_true(hak_os_is_region(ss));
  /* Interior pointers are not region bases. */
  assert_false(hak_os_is_region(ss + 1));
  assert_false(hak_os_is_region(ss + 16));
  assert_false(hak_os_is_region(ss + PAGE));
  assert_false(hak_os_is_region(ss + SS / 2));
  assert_false(hak_os_is_region(ss + SS - 1));
  /* Foreign pointers. */
  int local = 0;
  static int global_var;
  void *heap = malloc(64);
  assert_non_null(heap);
  assert_false(hak_os_is_region(NULL));
  assert_false(hak_os_is_region(&local));
  assert_false(hak_os_is_region(&global_var));
  assert_false(hak_os_is_region(heap));
  assert_false(hak_os_is_region((void *)(uintptr_t)-1));
  assert_false(hak_os_is_region((void *)((uintptr_t)1 << 62)));
  free(heap);
  /* A superslab-aligned mapping hakmem did not make. */
  char *raw = mmap(NULL, 2 * SS, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(raw != MAP_FAILED);
  char *aligned = (char *)(((uintptr_t)raw + SS - 1) & ~(uintptr_t)(SS - 1));
  assert_false(hak_os_is_region(aligned));
  munmap(raw, 2 * SS);

  /* Cached (committed) regions stay mapped, hence registered. */
  hak_os_superslab_free(ss);
  assert_cache(1, 0, 0, 0);
  assert_true(hak_os_is_region(ss));
  assert_true(is_mapped(ss, SS));

  /* Two free regions and room for one's pages: the older is decommitted,
   * still mapped; once the delay runs out and there is no reserve, it is
   * unmapped (delay 0: at once). */
  char *a = hak_os_superslab_alloc(&zeroed);
  char *b = hak_os_superslab_alloc(&zeroed);
  assert_ptr_equal(a, ss);
  assert_non_null(b);
  assert_true(hak_os_is_region(b));
  hak_os_superslab_free(a);
  hak_os_superslab_free(b);
  assert_cache(1, 1, 0, 0);
  assert_true(hak_os_is_region(a));
  assert_true(hak_os_is_region(b));
  configure_delay(1, 0, 0, 0);
  assert_cache(0, 0, 0, 0);
  assert_false(hak_os_is_region(a));
  assert_false(is_mapped(a, SS));
  assert_false(hak_os_is_region(b));
  assert_false(is_mapped(b, SS));
  configure(1, 0, 0);
  a = hak_os_superslab_alloc(&zeroed);
  assert_non_null(a);
  hak_os_superslab_free(a);
  assert_cache(1, 0, 0, 0);

  /* Released caches unregister their regions. */
  hak_os_release_caches();
  assert_cache(0, 0, 0, 0);
  assert_false(hak_os_is_region(a));
  assert_false(is_mapped(a, SS));

  /* Huge regions: the base only, and no longer once unmapped. */
  size_t mapped;
  char *h = hak_os_huge_alloc(3 * SS, &mapped, &zeroed);
  assert_non_null(h);
  assert_true(hak_os_is_region(h));
  assert_false(hak_os_is_region(h + SS));
  assert_false(hak_os_is_region(h + 2 * SS));
  hak_os_huge_free(h, mapped); /* huge cache of 0 bytes: unmapped */
  assert_cache(0, 0, 0, 0);
  assert_false(hak_os_is_region(h));
  assert_false(is_mapped(h, mapped));
}

/* The region map's two levels: a range's leaf exists once a region there
 * needs it, and a pointer anywhere else reads HAK_REGION_NONE.  Units far
 * from any mapping stand in for regions (the map only records kinds). */
static void test_region_map_levels(void **state) {
  (void)state;
  const uintptr_t range = (uintptr_t)SS << HAK_OS_MAP_LEAF_SHIFT; /* 16 GiB */
  char *far = (char *)(range * 3);        /* a range nothing maps */
  char *last = (char *)(range * 8191);    /* the top entry's last range */
  char *edge = (char *)(range * 200) - SS; /* the last unit of a range */
  assert_int_equal(hak_os_kind_checked(far), HAK_REGION_NONE);
  hak_os_set_kind(far, HAK_REGION_NONE); /* no leaf: nothing to clear */

  struct counters c = mark();
  assert_true(hak_os_map_reserve(far, SS));
  if (HAK_GATE_COUNT_SYSCALLS) {
    assert_int_equal(delta(&c, HAK_STAT_OS_MAP_LEAVES), 1);
    assert_int_equal(delta(&c, HAK_STAT_SYS_MMAP), 1);
  }
  hak_os_set_kind(far, HAK_REGION_TINY);
  assert_int_equal(hak_os_kind_checked(far), HAK_REGION_TINY);
  assert_int_equal(hak_os_kind_of(far), HAK_REGION_TINY);
  assert_int_equal(hak_os_kind_checked(far + SS), HAK_REGION_NONE);
  assert_int_equal(hak_os_kind_checked(far - SS), HAK_REGION_NONE);
  assert_int_equal(hak_os_kind_checked(far + range), HAK_REGION_NONE);
  assert_true(hak_os_is_region(far));
  assert_false(hak_os_is_region(far + SS / 2));

  /* A region across two ranges: both leaves. */
  assert_true(hak_os_map_reserve(edge, 2 * SS));
  hak_os_set_kind(edge, HAK_REGION_LARGE);
  hak_os_set_kind(edge + SS, HAK_REGION_LARGE_TAIL);
  assert_int_equal(hak_os_kind_of(edge), HAK_REGION_LARGE);
  assert_int_equal(hak_os_kind_of(edge + SS), HAK_REGION_LARGE_TAIL);
  assert_int_equal(hak_os_kind_checked(edge + 2 * SS), HAK_REGION_NONE);

  /* The map's last unit, and one past it (beyond 2^47). */
  assert_true(hak_os_map_reserve(last + range - SS, SS));
  hak_os_set_kind(last + range - SS, HAK_REGION_MID);
  assert_int_equal(hak_os_kind_checked(last + range - SS), HAK_REGION_MID);
  assert_int_equal(hak_os_kind_checked(last + range), HAK_REGION_NONE);
  assert_true(hak_os_map_reserve(last + range, SS)); /* nothing to map */

  /* Reserving again maps nothing and keeps what the leaf holds. */
  c = mark();
  assert_true(hak_os_map_reserve(far, 3 * SS));
  if (HAK_GATE_COUNT_SYSCALLS)
    assert_int_equal(delta(&c, HAK_STAT_SYS_MMAP), 0);
  assert_int_equal(hak_os_kind_checked(far), HAK_REGION_TINY);

  hak_os_set_kind(far, HAK_REGION_NONE);
  hak_os_set_kind(edge, HAK_REGION_NONE);
  hak_os_set_kind(edge + SS, HAK_REGION_NONE);
  hak_os_set_kind(last + range - SS, HAK_REGION_NONE);
  assert_false(hak_os_is_region(far));
  assert_int_equal(hak_os_kind_checked(edge), HAK_REGION_NONE);
}

static void test_superslab_warm_reuse(void **state) {
  (void)state;
  configure(2, 0, 0);
  bool zeroed;
  void *a = hak_os_superslab_alloc(&zeroed);
  assert_non_null(a);
  assert_true(zeroed);
  memset(a, 0xC3, SS);
  hak_os_superslab_free(a);
  assert_cache(1, 0, 0, 0);

  struct counters c = mark();
  void *b = hak_os_superslab_alloc(&zeroed);
  assert_ptr_equal(b, a);
  assert_false(zeroed); /* it kept its pages: not known to be zero */
  assert_cache(0, 0, 0, 0);
  assert_true(hak_os_is_region(b));
  if (HAK_GATE_COUNT_SYSCALLS) {
    assert_int_equal(delta(&c, HAK_STAT_SYS_MMAP), 0);
    assert_int_equal(delta(&c, HAK_STAT_SYS_MADVISE), 0);
    assert_int_equal(delta(&c, HAK_STAT_OS_SUPERSLAB_REUSED), 1);
    assert_int_equal(delta(&c, HAK_STAT_OS_SUPERSLAB_NEW), 0);
  }

  /* A steady working set of two superslabs makes no system call. */
  void *d = hak_os_superslab_alloc(&zeroed);
  assert_non_null(d);
  c = mark();
  for (int i = 0; i < 200; i++) {
    hak_os_superslab_free(b);
    hak_os_superslab_free(d);
    void *x = hak_os_superslab_alloc(&zeroed);
    assert_false(zeroed);
    void *y = hak_os_superslab_alloc(&zeroed);
    assert_false(zeroed);
    /* LIFO: the last one freed comes back first. */
    assert_ptr_equal(x, d);
    assert_ptr_equal(y, b);
  }
  if (HAK_GATE_COUNT_SYSCALLS) {
    assert_int_equal(delta(&c, HAK_STAT_SYS_MMAP), 0);
    assert_int_equal(delta(&c, HAK_STAT_SYS_MUNMAP), 0);
    assert_int_equal(delta(&c, HAK_STAT_SYS_MADVISE), 0);
    assert_int_equal(delta(&c, HAK_STAT_OS_SUPERSLAB_REUSED), 400);
    assert_int_equal(delta(&c, HAK_STAT_OS_SUPERSLAB_RELEASED), 400);
  }
  hak_os_superslab_free(b);
  hak_os_superslab_free(d);
}

static void test_superslab_cold_reuse(void **state) {
  (void)state;
  configure(0, 4, 0);
  bool zeroed;
  unsigned char *a = hak_os_superslab_alloc(&zeroed);
  assert_non_null(a);
  memset(a, 0xAB, SS);

  struct counters c = mark();
  hak_os_superslab_free(a);
  assert_cache(0, 1, 0, 0);
  assert_true(hak_os_is_region(a)); /* still mapped, decommitted */
  if (HAK_GATE_COUNT_SYSCALLS) {
    assert_int_equal(delta(&c, HAK_STAT_SYS_MADVISE), 1);
    assert_int_equal(delta(&c, HAK_STAT_OS_BYTES_DECOMMITTED), SS);
    assert_int_equal(delta(&c, HAK_STAT_SYS_MUNMAP), 0);
  }

  c = mark();
  unsigned char *b = hak_os_superslab_alloc(&zeroed);
  assert_ptr_equal(b, a);
  assert_true(zeroed); /* decommitted: every byte reads zero */
  assert_true(all_zero(b, SS));
  assert_cache(0, 0, 0, 0);
  if (HAK_GATE_COUNT_SYSCALLS) {
    assert_int_equal(delta(&c, HAK_STAT_SYS_MMAP), 0);
    assert_int_equal(delta(&c, HAK_STAT_OS_SUPERSLAB_REUSED), 1);
  }
  hak_os_superslab_free(b);
}

/* Free superslabs keep their pages up to the bound (in superslabs' worth
 * of bytes), the older ones decommitted; allocation takes the most recently
 * freed first.  Once the delay has run out, the reserve keeps the newest
 * decommitted ones mapped and the rest are unmapped. */
static void test_superslab_cache_bounds(void **state) {
  (void)state;
  configure(2, 3, 0);
  bool zeroed;
  void *ss[7];
  for (int i = 0; i < 7; i++) {
    ss[i] = hak_os_superslab_alloc(&zeroed);
    assert_non_null(ss[i]);
    assert_true(zeroed);
  }
  struct counters c = mark();
  for (int i = 0; i < 7; i++)
    hak_os_superslab_free(ss[i]);
  assert_cache(2, 5, 0, 0);
  for (int i = 0; i < 7; i++)
    assert_true(hak_os_is_region(ss[i]));
  if (HAK_GATE_COUNT_SYSCALLS) {
    assert_int_equal(delta(&c, HAK_STAT_SYS_MADVISE), 5);
    assert_int_equal(delta(&c, HAK_STAT_SYS_MUNMAP), 0);
    assert_int_equal(delta(&c, HAK_STAT_OS_SUPERSLAB_RELEASED), 7);
  }

  /* Newest first: the committed ones, not zeroed, then the others. */
  c = mark();
  for (int i = 6; i >= 0; i--) {
    void *p = hak_os_superslab_alloc(&zeroed);
    assert_ptr_equal(p, ss[i]);
    assert_int_equal(zeroed, i < 5);
  }
  assert_cache(0, 0, 0, 0);
  if (HAK_GATE_COUNT_SYSCALLS)
    assert_int_equal(delta(&c, HAK_STAT_SYS_MMAP), 0);
  /* Then a new mapping. */
  void *n = hak_os_superslab_alloc(&zeroed);
  assert_non_null(n);
  assert_true(zeroed);
  if (HAK_GATE_COUNT_SYSCALLS)
    assert_int_equal(mmaps(&c), 1);
  hak_os_superslab_free(n);
  for (int i = 0; i < 7; i++)
    hak_os_superslab_free(ss[i]);
  assert_cache(2, 6, 0, 0);

  /* The delay runs out (0): the reserve keeps the three most recently
   * freed, decommitted; the five older are unmapped without a decommit. */
  c = mark();
  configure_delay(2, 3, 0, 0);
  assert_cache(0, 3, 0, 0);
  assert_false(hak_os_is_region(n));
  for (int i = 0; i < 4; i++)
    assert_false(hak_os_is_region(ss[i]));
  for (int i = 4; i < 7; i++)
    assert_true(hak_os_is_region(ss[i]));
  if (HAK_GATE_COUNT_SYSCALLS) {
    assert_int_equal(delta(&c, HAK_STAT_SYS_MUNMAP), 5);
    assert_int_equal(delta(&c, HAK_STAT_SYS_MADVISE), 2);
  }

  /* Releasing the caches unmaps and unregisters everything. */
  hak_os_release_caches();
  assert_cache(0, 0, 0, 0);
  for (int i = 0; i < 7; i++) {
    assert_false(hak_os_is_region(ss[i]));
    assert_false(is_mapped(ss[i], SS));
  }
}

/* The delayed purge: free superslabs and huge regions keep their pages
 * while the delay runs, and are given back once it has run out and this
 * layer is entered again. */
static void test_purge_delay(void **state) {
  (void)state;
  const unsigned delay = 20;
  configure_delay(8, 2, 64 * MiB, delay);
  bool zeroed;
  unsigned char *ss[4];
  for (int i = 0; i < 4; i++) {
    ss[i] = hak_os_superslab_alloc(&zeroed);
    assert_non_null(ss[i]);
    memset(ss[i], 0x5C, SS);
  }
  size_t mapped;
  char *h = hak_os_huge_alloc(6 * MiB, &mapped, &zeroed);
  assert_non_null(h);
  struct counters c = mark();
  for (int i = 0; i < 4; i++)
    hak_os_superslab_free(ss[i]);
  hak_os_huge_free(h, mapped);
  assert_cache(4, 0, 1, mapped);
  if (HAK_GATE_COUNT_SYSCALLS) {
    assert_int_equal(delta(&c, HAK_STAT_SYS_MADVISE), 0);
    assert_int_equal(delta(&c, HAK_STAT_SYS_MUNMAP), 0);
  }
  size_t rss = hak_os_rss_current();

  wait_past(delay);
  hak_os_purge();
  /* Decommitted, the two most recent kept as the reserve; the huge region
   * unmapped. */
  assert_cache(0, 2, 0, 0);
  assert_false(hak_os_is_region(ss[0]));
  assert_false(hak_os_is_region(ss[1]));
  assert_true(hak_os_is_region(ss[2]));
  assert_true(hak_os_is_region(ss[3]));
  assert_false(hak_os_is_region(h));
  /* 22 MiB given back. Measured before any read: on some kernels a read of
   * a decommitted page allocates a real page. */
  assert_true(hak_os_rss_current() + 12 * MiB <= rss);
  assert_true(all_zero(ss[3], SS));
  if (HAK_GATE_COUNT_SYSCALLS) {
    assert_int_equal(delta(&c, HAK_STAT_SYS_MADVISE), 2);
    assert_int_equal(delta(&c, HAK_STAT_SYS_MUNMAP), 3);
  }
  hak_os_release_caches();
}

/* A user that says how far it wrote: only that part counts against the
 * bound, and only that part is decommitted. */
static void test_superslab_dirty_extent(void **state) {
  (void)state;
  configure(1, 4, 0); /* room for one superslab's worth of pages */
  size_t dirty = 77;
  char *ss[5];
  for (int i = 0; i < 5; i++) {
    ss[i] = hak_os_superslab_alloc_dirty(&dirty);
    assert_non_null(ss[i]);
    assert_int_equal(dirty, 0); /* fresh */
  }
  /* Four of 1 MiB fit in the bound (the extent is rounded to pages). */
  for (int i = 0; i < 4; i++)
    hak_os_superslab_free_dirty(ss[i], MiB - 100);
  assert_cache(4, 0, 0, 0);
  /* One more byte-page over it: the oldest is decommitted. */
  struct counters c = mark();
  hak_os_superslab_free_dirty(ss[4], 1);
  assert_cache(4, 1, 0, 0);
  if (HAK_GATE_COUNT_SYSCALLS) {
    assert_int_equal(delta(&c, HAK_STAT_SYS_MADVISE), 1);
    assert_int_equal(delta(&c, HAK_STAT_OS_BYTES_DECOMMITTED), MiB);
  }
  /* The extent comes back with the superslab: a page for the last one,
   * 1 MiB for the others, 0 for the decommitted one. */
  char *p = hak_os_superslab_alloc_dirty(&dirty);
  assert_ptr_equal(p, ss[4]);
  assert_int_equal(dirty, PAGE);
  p = hak_os_superslab_alloc_dirty(&dirty);
  assert_ptr_equal(p, ss[3]);
  assert_int_equal(dirty, MiB);
  for (int i = 2; i >= 0; i--) {
    p = hak_os_superslab_alloc_dirty(&dirty);
    assert_ptr_equal(p, ss[i]);
    assert_int_equal(dirty, i == 0 ? 0 : MiB);
  }
  for (int i = 0; i < 5; i++)
    hak_os_superslab_free(ss[i]);
}

/* ---- decommit ---------------------------------------------------------------- */

static void test_decommit_reads_zero(void **state) {
  (void)state;
  bool zeroed;
  unsigned char *ss = hak_os_superslab_alloc(&zeroed);
  assert_non_null(ss);
  memset(ss, 0x77, SS);

  /* A range in the middle: exactly its pages read zero after. */
  struct counters c = mark();
  hak_os_decommit(ss + 4 * PAGE, 8 * PAGE);
  if (HAK_GATE_COUNT_SYSCALLS) {
    assert_int_equal(delta(&c, HAK_STAT_SYS_MADVISE), 1);
    assert_int_equal(delta(&c, HAK_STAT_OS_BYTES_DECOMMITTED), 8 * PAGE);
  }
  assert_int_equal(ss[4 * PAGE - 1], 0x77);
  assert_true(all_zero(ss + 4 * PAGE, 8 * PAGE));
  assert_int_equal(ss[12 * PAGE], 0x77);
  assert_int_equal(ss[SS - 1], 0x77);

  /* Zero bytes: no system call. */
  c = mark();
  hak_os_decommit(ss, 0);
  if (HAK_GATE_COUNT_SYSCALLS)
    assert_int_equal(delta(&c, HAK_STAT_SYS_MADVISE), 0);
  assert_int_equal(ss[0], 0x77);

  /* The whole superslab, then reuse: a write commits again. */
  hak_os_decommit(ss, SS);
  assert_true(all_zero(ss, SS));
  memset(ss, 0x11, SS);
  assert_int_equal(ss[0], 0x11);
  assert_int_equal(ss[SS - 1], 0x11);
  hak_os_superslab_free(ss);
}

static void test_decommit_drops_rss(void **state) {
  (void)state;
  const size_t n = 64 * MiB;
  const size_t slack = 16 * MiB;
  size_t mapped;
  bool zeroed;
  unsigned char *h = hak_os_huge_alloc(n, &mapped, &zeroed);
  assert_non_null(h);
  assert_int_equal(mapped, n);
  size_t before = hak_os_rss_current();
  assert_true(before > 0);
  memset(h, 0x3C, n);
  size_t committed = hak_os_rss_current();
  assert_true(committed >= before + n - slack);
  hak_os_decommit(h, n);
  size_t after = hak_os_rss_current();
  assert_true(after + n - slack <= committed);
  /* The peak remembers the committed high-water mark. */
  assert_true(hak_os_rss_peak() + slack >= committed);
  /* What was given back reads as zero. Nothing is asserted of the RSS
   * after the read: the kernel may map its zero page or allocate a fresh
   * page for each read fault, and either is allowed. */
  assert_true(all_zero(h, n));
  hak_os_huge_free(h, mapped);
  hak_os_release_caches();
}

/* Pages of [p, p + n) that are resident. */
static size_t resident_pages(const void *p, size_t n) {
  unsigned char vec[1024];
  size_t pages = n / PAGE, count = 0;
  assert_true(pages <= sizeof vec);
  assert_int_equal(mincore((void *)p, n, vec), 0);
  for (size_t i = 0; i < pages; i++)
    count += vec[i] & 1;
  return count;
}

/* hak_os_zero clears like memset, writes only the resident pages, and
 * leaves the untouched ones untouched. */
static void test_zero(void **state) {
  (void)state;
  bool zeroed;
  unsigned char *ss = hak_os_superslab_alloc(&zeroed);
  assert_non_null(ss);
  hak_os_decommit(ss, SS);

  /* Below the probe size: a plain clear, no system call. */
  memset(ss, 0x77, PAGE);
  struct counters c = mark();
  hak_os_zero(ss + 1, 1000);
  assert_int_equal(ss[0], 0x77);
  assert_true(all_zero(ss + 1, 1000));
  assert_int_equal(ss[1001], 0x77);
  if (HAK_GATE_COUNT_SYSCALLS)
    assert_int_equal(delta(&c, HAK_STAT_SYS_MINCORE), 0);

  /* 200 pages from an unaligned start: pages 0-9 and 50 written (and 1-9 of
   * the next run), the rest never touched. */
  unsigned char *r = ss + 2 * PAGE;
  const size_t pages = 200, n = pages * PAGE - 300;
  memset(r - PAGE, 0x55, 11 * PAGE);
  memset(r + 50 * PAGE, 0x66, PAGE);
  memset(r + 100 * PAGE + 7, 0x44, 9 * PAGE);
  r[pages * PAGE - 300] = 0x33; /* just past the range */
  c = mark();
  hak_os_zero(r + 100, n - 100);
  /* The written pages, the head page and the tail page; not the others
   * (counted before reading them: a read maps the kernel's zero page). */
  assert_true(resident_pages(r, pages * PAGE) <= 10 + 1 + 10 + 2);
  assert_int_equal(r[99], 0x55);
  assert_true(all_zero(r + 100, n - 100));
  assert_int_equal(r[n], 0x33);
  if (HAK_GATE_COUNT_SYSCALLS) {
    assert_int_equal(delta(&c, HAK_STAT_SYS_MINCORE), 1);
    assert_true(delta(&c, HAK_STAT_SYS_MADVISE) >= 1);
  }

  /* Written everywhere, then cleared twice: the second time the hint
   * spares the probe, and the result is the same. */
  memset(r, 0x22, pages * PAGE);
  hak_os_zero(r, pages * PAGE);
  assert_true(all_zero(r, pages * PAGE));
  assert_int_equal(resident_pages(r, pages * PAGE), pages);
  memset(r, 0x23, pages * PAGE);
  c = mark();
  hak_os_zero(r, pages * PAGE);
  assert_true(all_zero(r, pages * PAGE));
  if (HAK_GATE_COUNT_SYSCALLS)
    assert_int_equal(delta(&c, HAK_STAT_SYS_MINCORE), 0);

  /* A hint gone stale (the pages given back since) still clears right. */
  memset(r, 0x24, pages * PAGE);
  hak_os_decommit(r + PAGE, PAGE);
  hak_os_zero(r, pages * PAGE);
  assert_true(all_zero(r, pages * PAGE));

  /* More than one probe's worth (1 MiB) with a written page at the seam. */
  hak_os_decommit(ss, SS);
  memset(ss + 255 * PAGE, 0x12, 2 * PAGE);
  memset(ss + SS - PAGE, 0x13, PAGE);
  hak_os_zero(ss, SS);
  assert_int_equal(resident_pages(ss, 1024 * PAGE), 3);
  assert_true(all_zero(ss, SS));
  hak_os_superslab_free(ss);
}

/* ---- huge regions -------------------------------------------------------------- */

static void test_huge_rounding_alignment(void **state) {
  (void)state;
  configure(2, 16, 0); /* no huge cache: every free unmaps */
  static const size_t sizes[] = {1, PAGE - 1, PAGE, PAGE + 1, SS - 1, SS,
                                 SS + 1, 5 * MiB + 123, 9 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    size_t want = (sizes[i] + PAGE - 1) / PAGE * PAGE;
    size_t mapped = 0;
    bool zeroed = false;
    char *h = hak_os_huge_alloc(sizes[i], &mapped, &zeroed);
    assert_non_null(h);
    assert_int_equal(mapped, want);
    assert_int_equal((uintptr_t)h % SS, 0);
    assert_true(zeroed);
    assert_true(hak_os_is_region(h));
    assert_true(all_zero(h, mapped));
    touch_pages(h, mapped, 0x1234 + i);
    assert_true(pages_hold(h, mapped, 0x1234 + i));
    /* Nothing beyond the rounded size is mapped as part of it. */
    assert_false(is_mapped(h + mapped, PAGE));
    hak_os_huge_free(h, mapped);
    assert_false(is_mapped(h, mapped));
  }
}

static void test_huge_impossible_size(void **state) {
  (void)state;
  size_t mapped = 77;
  bool zeroed;
  errno = 0;
  assert_null(hak_os_huge_alloc(SIZE_MAX, &mapped, &zeroed));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(hak_os_huge_alloc(SIZE_MAX - PAGE + 2, &mapped, &zeroed));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(hak_os_huge_alloc(((size_t)1 << 46) + 1, &mapped, &zeroed));
  assert_int_equal(errno, ENOMEM);
}

/* Zero sizes: whatever they return, the registry must tell the truth (a
 * registered base is mapped), and a region keeps at least its header page,
 * which every free writes.  Last in the list: a failure here can leave a
 * stale registry bit behind. */
static void test_huge_alloc_zero(void **state) {
  (void)state;
  configure(2, 16, 0);
  size_t mapped = 77;
  bool zeroed;
  errno = 0;
  char *p = hak_os_huge_alloc(0, &mapped, &zeroed);
  if (!p) {
    assert_int_equal(errno, ENOMEM);
    return;
  }
  assert_true(hak_os_is_region(p));
  if (!is_mapped(p, PAGE))
    fail_msg("hak_os_huge_alloc(0) = %p, registered but not mapped "
             "(mapped = %zu): its free would write to an unmapped page",
             (void *)p, mapped);
  assert_true(mapped >= PAGE);
  hak_os_huge_free(p, mapped);
  assert_false(hak_os_is_region(p));
}

static void test_huge_resize_to_zero(void **state) {
  (void)state;
  configure(2, 16, 0);
  size_t mapped, m2 = 77;
  bool zeroed;
  char *h = hak_os_huge_alloc(2 * PAGE, &mapped, &zeroed);
  assert_non_null(h);
  if (hak_os_huge_resize(h, mapped, 0, &m2)) {
    if (!is_mapped(h, PAGE))
      fail_msg("hak_os_huge_resize(h, %zu, 0) unmapped the whole region, "
               "which stays registered (new_mapped = %zu)", mapped, m2);
    assert_true(m2 >= PAGE);
    mapped = m2;
  }
  assert_true(hak_os_is_region(h));
  assert_true(is_mapped(h, mapped));
  hak_os_huge_free(h, mapped);
  assert_false(hak_os_is_region(h));
}

/* Reserves [p, p + n) if nothing is mapped there; returns whether it did. */
static int reserve_fixed(void *p, size_t n) {
  void *r = mmap(p, n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                 -1, 0);
  if (r == MAP_FAILED)
    return 0;
  if (r != p) { /* old kernels ignore the flag: treat as a hint */
    munmap(r, n);
    return 0;
  }
  return 1;
}

static void test_huge_resize(void **state) {
  (void)state;
  configure(2, 16, 0);
  size_t mapped, m2;
  bool zeroed;
  char *h = hak_os_huge_alloc(8 * MiB, &mapped, &zeroed);
  assert_non_null(h);
  assert_int_equal(mapped, 8 * MiB);
  touch_pages(h, mapped, 0xAA);

  /* Same size (after rounding): true, unchanged. */
  assert_true(hak_os_huge_resize(h, mapped, 8 * MiB - 100, &m2));
  assert_int_equal(m2, 8 * MiB);

  /* Shrink in place: the tail is unmapped, the head keeps its contents. */
  struct counters c = mark();
  assert_true(hak_os_huge_resize(h, mapped, 4 * MiB + 1, &m2));
  assert_int_equal(m2, 4 * MiB + PAGE);
  assert_true(pages_hold(h, m2, 0xAA));
  assert_false(is_mapped(h + m2, 8 * MiB - m2));
  assert_true(hak_os_is_region(h));
  if (HAK_GATE_COUNT_SYSCALLS) {
    assert_int_equal(delta(&c, HAK_STAT_SYS_MUNMAP), 1);
    assert_int_equal(delta(&c, HAK_STAT_OS_BYTES_UNMAPPED), 8 * MiB - m2);
  }
  mapped = m2;

  /* Grow where nothing is mapped after the region (the tail just given
   * back): in place. */
  if (reserve_fixed(h + mapped, 8 * MiB - mapped)) {
    munmap(h + mapped, 8 * MiB - mapped);
    c = mark();
    assert_true(hak_os_huge_resize(h, mapped, 8 * MiB, &m2));
    assert_int_equal(m2, 8 * MiB);
    assert_true(pages_hold(h, mapped, 0xAA)); /* old part kept */
    assert_true(all_zero(h + mapped, m2 - mapped)); /* new part zero */
    touch_pages(h, m2, 0xBB);
    if (HAK_GATE_COUNT_SYSCALLS) {
      assert_int_equal(delta(&c, HAK_STAT_SYS_MREMAP), 1);
      assert_int_equal(delta(&c, HAK_STAT_OS_BYTES_MAPPED), m2 - mapped);
    }
    mapped = m2;
  } else {
    print_message("note: address space after the region is taken, "
                  "in-place growth not exercised\n");
  }

  /* Grow into a taken range: false, and the region is left as it was. */
  if (reserve_fixed(h + mapped, PAGE)) {
    m2 = 12345;
    touch_pages(h, mapped, 0xCC);
    errno = 0;
    assert_false(hak_os_huge_resize(h, mapped, mapped + 2 * PAGE, &m2));
    assert_int_equal(errno, 0); /* a probe: the caller moves the region */
    assert_true(pages_hold(h, mapped, 0xCC));
    assert_true(is_mapped(h, mapped));
    munmap(h + mapped, PAGE);
  }
  hak_os_huge_free(h, mapped);
  assert_false(is_mapped(h, mapped));
}

static void test_huge_cache_reuse(void **state) {
  (void)state;
  configure(2, 16, 64 * MiB);
  size_t mapped;
  bool zeroed;
  char *a = hak_os_huge_alloc(8 * MiB, &mapped, &zeroed);
  assert_non_null(a);
  assert_true(zeroed);
  size_t a_mapped = mapped;
  memset(a, 0x42, a_mapped);
  hak_os_huge_free(a, a_mapped);
  assert_cache(0, 0, 1, 8 * MiB);
  assert_true(hak_os_is_region(a)); /* cached: still mapped */

  /* Within 2x: the cached region comes back, whole, not zeroed. */
  struct counters c = mark();
  char *b = hak_os_huge_alloc(6 * MiB, &mapped, &zeroed);
  assert_ptr_equal(b, a);
  assert_int_equal(mapped, 8 * MiB);
  assert_false(zeroed);
  assert_cache(0, 0, 0, 0);
  if (HAK_GATE_COUNT_SYSCALLS) {
    assert_int_equal(delta(&c, HAK_STAT_SYS_MMAP), 0);
    assert_int_equal(delta(&c, HAK_STAT_OS_HUGE_REUSED), 1);
    assert_int_equal(delta(&c, HAK_STAT_OS_HUGE_NEW), 0);
  }
  hak_os_huge_free(b, mapped);

  /* Exactly half the cached size still fits. */
  b = hak_os_huge_alloc(4 * MiB, &mapped, &zeroed);
  assert_ptr_equal(b, a);
  assert_int_equal(mapped, 8 * MiB);
  hak_os_huge_free(b, mapped);

  /* Less than half: a new mapping; the cached region stays cached. */
  c = mark();
  char *s = hak_os_huge_alloc(4 * MiB - PAGE, &mapped, &zeroed);
  assert_non_null(s);
  assert_true(s != a);
  assert_int_equal(mapped, 4 * MiB - PAGE);
  assert_true(zeroed);
  assert_cache(0, 0, 1, 8 * MiB);
  if (HAK_GATE_COUNT_SYSCALLS) {
    assert_int_equal(mmaps(&c), 1);
    assert_int_equal(delta(&c, HAK_STAT_OS_HUGE_NEW), 1);
  }
  size_t s_mapped = mapped;

  /* Bigger than the cached region: a new mapping. */
  char *l = hak_os_huge_alloc(8 * MiB + 1, &mapped, &zeroed);
  assert_non_null(l);
  assert_true(l != a);
  assert_int_equal(mapped, 8 * MiB + PAGE);
  assert_true(zeroed);
  size_t l_mapped = mapped;
  assert_cache(0, 0, 1, 8 * MiB);

  /* Best fit: of 8 MiB + 4 KiB and 8 MiB (and 4 MiB - 4 KiB, too small),
   * a request of 7 MiB takes the 8 MiB one. */
  hak_os_huge_free(l, l_mapped);
  hak_os_huge_free(s, s_mapped);
  assert_cache(0, 0, 3, 8 * MiB + 8 * MiB + PAGE + 4 * MiB - PAGE);
  b = hak_os_huge_alloc(7 * MiB, &mapped, &zeroed);
  assert_ptr_equal(b, a);
  assert_int_equal(mapped, 8 * MiB);
  b = hak_os_huge_alloc(7 * MiB, &mapped, &zeroed);
  assert_ptr_equal(b, l);
  assert_int_equal(mapped, 8 * MiB + PAGE);
  b = hak_os_huge_alloc(2 * MiB, &mapped, &zeroed);
  assert_ptr_equal(b, s);
  assert_cache(0, 0, 0, 0);
  hak_os_huge_free(a, 8 * MiB);
  hak_os_huge_free(l, l_mapped);
  hak_os_huge_free(s, s_mapped);
}

static void test_huge_cache_bounds(void **state) {
  (void)state;
  configure(2, 16, 16 * MiB);
  size_t ma, mb, mc, md;
  bool zeroed;
  char *a = hak_os_huge_alloc(8 * MiB, &ma, &zeroed);
  char *b = hak_os_huge_alloc(8 * MiB, &mb, &zeroed);
  char *c = hak_os_huge_alloc(4 * MiB, &mc, &zeroed);
  char *d = hak_os_huge_alloc(32 * MiB, &md, &zeroed);
  assert_non_null(a);
  assert_non_null(b);
  assert_non_null(c);
  assert_non_null(d);
  hak_os_huge_free(a, ma);
  hak_os_huge_free(b, mb);
  assert_cache(0, 0, 2, 16 * MiB);
  /* Over the byte bound: the oldest entry is unmapped to make room. */
  hak_os_huge_free(c, mc);
  assert_cache(0, 0, 2, 12 * MiB);
  assert_false(hak_os_is_region(a));
  assert_false(is_mapped(a, ma));
  assert_true(hak_os_is_region(b));
  assert_true(hak_os_is_region(c));
  /* Bigger than the whole cache: unmapped at once, the cache untouched. */
  hak_os_huge_free(d, md);
  assert_cache(0, 0, 2, 12 * MiB);
  assert_false(hak_os_is_region(d));
  assert_false(is_mapped(d, md));
  hak_os_release_caches();
  assert_cache(0, 0, 0, 0);
  assert_false(hak_os_is_region(b));
  assert_false(hak_os_is_region(c));

  /* The number of cached regions is bounded too (bytes allowing). */
  configure(2, 16, 1024 * MiB);
  enum { N = 40 };
  char *r[N];
  size_t m[N];
  for (int i = 0; i < N; i++) {
    r[i] = hak_os_huge_alloc(PAGE, &m[i], &zeroed);
    assert_non_null(r[i]);
  }
  for (int i = 0; i < N; i++)
    hak_os_huge_free(r[i], m[i]);
  struct hak_os_cache_info info = hak_os_cache_info();
  assert_true(info.huge_regions >= 1);
  assert_true(info.huge_regions < N);
  assert_int_equal(info.huge_bytes, info.huge_regions * PAGE);
  /* The newest ones are kept, the oldest unmapped. */
  assert_true(hak_os_is_region(r[N - 1]));
  assert_false(hak_os_is_region(r[0]));
  hak_os_release_caches();
  for (int i = 0; i < N; i++)
    assert_false(hak_os_is_region(r[i]));
}

/* ---- counters -------------------------------------------------------------------- */

static void test_syscall_counters(void **state) {
  (void)state;
  configure_delay(0, 0, 0, 0); /* nothing kept */
  struct hak_stats_snapshot before;
  hak_stats_snapshot(&before);
  struct counters c = {before};

  bool zeroed;
  void *ss = hak_os_superslab_alloc(&zeroed);
  assert_non_null(ss);
  if (HAK_GATE_COUNT_SYSCALLS) {
    /* One over-sized mapping, trimmed at one or both ends. */
    assert_int_equal(mmaps(&c), 1);
    assert_int_equal(delta(&c, HAK_STAT_OS_BYTES_MAPPED), 2 * SS);
    assert_in_range(delta(&c, HAK_STAT_SYS_MUNMAP), 1, 2);
    assert_int_equal(delta(&c, HAK_STAT_OS_BYTES_UNMAPPED), SS);
    assert_int_equal(delta(&c, HAK_STAT_OS_SUPERSLAB_NEW), 1);
  }
  c = mark();
  hak_os_superslab_free(ss); /* no cache: unmapped */
  if (HAK_GATE_COUNT_SYSCALLS) {
    assert_int_equal(delta(&c, HAK_STAT_SYS_MUNMAP), 1);
    assert_int_equal(delta(&c, HAK_STAT_OS_BYTES_UNMAPPED), SS);
    assert_int_equal(delta(&c, HAK_STAT_OS_SUPERSLAB_RELEASED), 1);
    assert_int_equal(delta(&c, HAK_STAT_SYS_MADVISE), 0);
  }

  /* Transparent huge pages: one madvise per new superslab. */
  struct hak_os_config cfg = default_config;
  cfg.superslab_cache = 0;
  cfg.superslab_reserve = 0;
  cfg.huge_cache_bytes = 0;
  cfg.purge_delay_ms = 0;
  cfg.transparent_huge_pages = true;
  hak_os_configure(&cfg);
  c = mark();
  ss = hak_os_superslab_alloc(&zeroed);
  assert_non_null(ss);
  if (HAK_GATE_COUNT_SYSCALLS)
    assert_int_equal(delta(&c, HAK_STAT_SYS_MADVISE), 1);
  hak_os_superslab_free(ss);
  configure_delay(0, 0, 0, 0); /* nothing kept */

  c = mark();
  size_t mapped;
  char *h = hak_os_huge_alloc(2 * SS + PAGE, &mapped, &zeroed);
  assert_non_null(h);
  if (HAK_GATE_COUNT_SYSCALLS) {
    assert_int_equal(mmaps(&c), 1);
    assert_int_equal(delta(&c, HAK_STAT_OS_BYTES_MAPPED), 3 * SS + PAGE);
    assert_int_equal(delta(&c, HAK_STAT_OS_BYTES_UNMAPPED), SS);
    assert_int_equal(delta(&c, HAK_STAT_OS_HUGE_NEW), 1);
  }
  c = mark();
  hak_os_huge_free(h, mapped);
  if (HAK_GATE_COUNT_SYSCALLS) {
    assert_int_equal(delta(&c, HAK_STAT_SYS_MUNMAP), 1);
    assert_int_equal(delta(&c, HAK_STAT_OS_BYTES_UNMAPPED), mapped);
  }

  if (!HAK_GATE_COUNT_SYSCALLS && !HAK_GATE_COUNT_PATHS) {
    /* The fast build keeps no counters: the snapshot is all zeros. */
    struct hak_stats_snapshot s;
    memset(&s, 0xFF, sizeof s);
    hak_stats_snapshot(&s);
    struct hak_stats_snapshot zero;
    memset(&zero, 0, sizeof zero);
    assert_memory_equal(&s, &zero, sizeof s);
  }
}

/* ---- injected failures ------------------------------------------------------------ */

static void test_injected_failure(void **state) {
  (void)state;
  configure(2, 16, 64 * MiB);
  bool zeroed;
  size_t mapped = 99;

  struct counters c = mark();
  hak_os_fail_next_mappings(1);
  errno = 0;
  assert_null(hak_os_superslab_alloc(&zeroed));
  assert_int_equal(errno, ENOMEM);
  if (HAK_GATE_COUNT_SYSCALLS) {
    assert_int_equal(delta(&c, HAK_STAT_SYS_MMAP), 0);
    assert_int_equal(delta(&c, HAK_STAT_OS_SUPERSLAB_NEW), 0);
  }
  void *ss = hak_os_superslab_alloc(&zeroed);
  assert_non_null(ss);
  assert_true(zeroed);

  hak_os_fail_next_mappings(1);
  errno = 0;
  assert_null(hak_os_huge_alloc(5 * MiB, &mapped, &zeroed));
  assert_int_equal(errno, ENOMEM);
  char *h = hak_os_huge_alloc(5 * MiB, &mapped, &zeroed);
  assert_non_null(h);
  assert_int_equal(mapped, 5 * MiB);

  /* n failures, then success. */
  hak_os_fail_next_mappings(2);
  errno = 0;
  assert_null(hak_os_superslab_alloc(&zeroed));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(hak_os_huge_alloc(PAGE, &mapped, &zeroed));
  assert_int_equal(errno, ENOMEM);
  void *ss2 = hak_os_superslab_alloc(&zeroed);
  assert_non_null(ss2);

  /* Reuse from a cache is not a mapping: it succeeds, and the failure
   * waits for the next mapping. */
  hak_os_superslab_free(ss2);
  hak_os_huge_free(h, 5 * MiB);
  hak_os_fail_next_mappings(1);
  void *w = hak_os_superslab_alloc(&zeroed);
  assert_ptr_equal(w, ss2);
  char *h2 = hak_os_huge_alloc(4 * MiB, &mapped, &zeroed);
  assert_ptr_equal(h2, h);
  errno = 0;
  assert_null(hak_os_superslab_alloc(&zeroed));
  assert_int_equal(errno, ENOMEM);

  hak_os_superslab_free(ss);
  hak_os_superslab_free(w);
  hak_os_huge_free(h2, mapped);
}

/* A bound above the number of cache slots is clamped: the extra frees are
 * unmapped instead of overflowing the cache. */
static void test_configure_clamps(void **state) {
  (void)state;
  configure(100000, 100000, 0);
  enum { N = HAK_OS_SUPERSLAB_SLOTS + 40 };
  static void *ss[N];
  bool zeroed;
  for (int i = 0; i < N; i++) {
    ss[i] = hak_os_superslab_alloc(&zeroed);
    assert_non_null(ss[i]);
  }
  for (int i = 0; i < N; i++)
    hak_os_superslab_free(ss[i]);
  struct hak_os_cache_info info = hak_os_cache_info();
  assert_true(info.superslabs_committed >= 2);
  assert_true(info.superslabs_committed < N);
  assert_true(info.superslabs_decommitted < N);
  unsigned kept = info.superslabs_committed + info.superslabs_decommitted;
  assert_true(kept < N);
  unsigned registered = 0;
  for (int i = 0; i < N; i++)
    registered += hak_os_is_region(ss[i]);
  assert_int_equal(registered, kept);
  /* Everything kept comes back, each region once. */
  for (unsigned i = 0; i < kept; i++) {
    void *p = hak_os_superslab_alloc(&zeroed);
    assert_true(hak_os_is_region(p));
    assert_int_equal(hak_os_kind_of(p), HAK_REGION_CACHED);
    hak_os_set_kind(p, HAK_REGION_MID);
  }
  assert_cache(0, 0, 0, 0);
  for (int i = 0; i < N; i++)
    if (hak_os_is_region(ss[i])) {
      assert_int_equal(hak_os_kind_of(ss[i]), HAK_REGION_MID);
      hak_os_superslab_free(ss[i]);
    }
}

/* Threads taking and returning superslabs and huge regions at once: no
 * region is ever handed to two holders. */
#define THREADS 4
#define ROUNDS 300
static void *worker(void *arg) {
  uintptr_t id = (uintptr_t)arg;
  unsigned seed = (unsigned)id * 2654435761u;
  for (int r = 0; r < ROUNDS; r++) {
    bool zeroed;
    size_t mapped = 0;
    void *held[3] = {0};
    size_t held_mapped[3] = {0};
    int n = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 3;
    for (int i = 0; i < n; i++) {
      if (i == 2) {
        held[i] = hak_os_huge_alloc(SS + PAGE, &mapped, &zeroed);
        held_mapped[i] = mapped;
      } else {
        held[i] = hak_os_superslab_alloc(&zeroed);
      }
      if (!held[i] || !hak_os_is_region(held[i]))
        return (void *)1;
      uint64_t *w = held[i];
      w[1] = id;
      w[2] = (uint64_t)r;
      w[SS / 8 - 1] = id;
    }
    for (int i = 0; i < n; i++) {
      const uint64_t *w = held[i];
      if (w[1] != id || w[2] != (uint64_t)r || w[SS / 8 - 1] != id)
        return (void *)2; /* someone else holds it too */
    }
    for (int i = 0; i < n; i++) {
      if (i == 2)
        hak_os_huge_free(held[i], held_mapped[i]);
      else
        hak_os_superslab_free(held[i]);
    }
  }
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  configure(3, 2, 8 * MiB);
  struct counters c = mark();
  pthread_t t[THREADS];
  for (uintptr_t i = 0; i < THREADS; i++)
    assert_int_equal(pthread_create(&t[i], NULL, worker, (void *)(i + 1)), 0);
  for (int i = 0; i < THREADS; i++) {
    void *ret;
    assert_int_equal(pthread_join(t[i], &ret), 0);
    assert_null(ret);
  }
  if (HAK_GATE_COUNT_SYSCALLS) {
    /* Counted by the threads, which have exited; every region taken was
     * either new or reused, and every one was released. */
    uint64_t taken = delta(&c, HAK_STAT_OS_SUPERSLAB_NEW) +
                     delta(&c, HAK_STAT_OS_SUPERSLAB_REUSED);
    assert_int_equal(taken, delta(&c, HAK_STAT_OS_SUPERSLAB_RELEASED));
    assert_true(taken >= THREADS * ROUNDS);
  }
}

/* fork while another thread could hold the lock: the child's lock works. */
static int fork_child(void *arg) {
  (void)arg;
  bool zeroed;
  void *ss = hak_os_superslab_alloc(&zeroed);
  if (!ss || !hak_os_is_region(ss))
    return 3;
  hak_os_superslab_free(ss);
  return 0;
}

static void test_fork(void **state) {
  (void)state;
  /* The alarm: a dead lock ends the child instead of hanging it. */
  const struct child_opts opts = {.alarm = 10,
                                  .prepare = hak_os_fork_prepare,
                                  .parent = hak_os_fork_parent,
                                  .child = hak_os_fork_child};
  struct child_end end;
  child_run(fork_child, NULL, &opts, &end);
  assert_int_equal(end.how, CHILD_EXITED);
  assert_int_equal(end.code, 0);
  bool zeroed;
  void *ss = hak_os_superslab_alloc(&zeroed);
  assert_non_null(ss);
  hak_os_superslab_free(ss);
}

/* The permissions /proc/self/maps shows for the mapping holding p ("rw-p"),
 * or "" if none does. */
static void perms_of(const void *p, char out[5]) {
  out[0] = 0;
  FILE *f = fopen("/proc/self/maps", "r");
  assert_non_null(f);
  char line[512];
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    char perms[5];
    if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) == 3 &&
        (uintptr_t)p >= lo && (uintptr_t)p < hi) {
      memcpy(out, perms, 5);
      break;
    }
  }
  fclose(f);
}

static void test_protect(void **state) {
  (void)state;
  bool zeroed;
  char *ss = hak_os_superslab_alloc(&zeroed);
  assert_non_null(ss);
  memset(ss, 0x6B, 8 * PAGE);
  char perms[5];
  perms_of(ss + 2 * PAGE, perms);
  assert_string_equal(perms, "rw-p");

  hak_os_protect(ss + 2 * PAGE, 3 * PAGE, false);
  perms_of(ss + 2 * PAGE, perms);
  assert_string_equal(perms, "---p");
  perms_of(ss + 4 * PAGE, perms);
  assert_string_equal(perms, "---p");
  perms_of(ss + PAGE, perms); /* only the range asked for */
  assert_string_equal(perms, "rw-p");
  perms_of(ss + 5 * PAGE, perms);
  assert_string_equal(perms, "rw-p");
  assert_true(hak_os_is_region(ss));

  /* Access again: the contents were kept. */
  hak_os_protect(ss + 2 * PAGE, 3 * PAGE, true);
  perms_of(ss + 3 * PAGE, perms);
  assert_string_equal(perms, "rw-p");
  const unsigned char *b = (const unsigned char *)ss;
  for (size_t i = 0; i < 8 * PAGE; i++)
    if (b[i] != 0x6B)
      fail_msg("byte %zu changed to %#x", i, b[i]);
  hak_os_superslab_free(ss);
}

/* Messages go to descriptor 2 whole, whatever their length. */
static void test_write_stderr(void **state) {
  (void)state;
  char path[] = "/tmp/hak_test_os_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  int saved = dup(2);
  assert_true(saved >= 0);
  static char msg[100000];
  for (size_t i = 0; i < sizeof msg; i++)
    msg[i] = (char)('a' + i % 26);
  assert_int_equal(dup2(fd, 2), 2);
  hak_os_write_stderr(msg, sizeof msg);
  hak_os_write_stderr("", 0);
  assert_int_equal(dup2(saved, 2), 2);
  close(saved);
  static char back[sizeof msg + 1];
  assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
  size_t got = 0;
  for (;;) {
    ssize_t r = read(fd, back + got, sizeof back - got);
    assert_true(r >= 0);
    if (r == 0)
      break;
    got += (size_t)r;
  }
  close(fd);
  assert_int_equal(got, sizeof msg);
  assert_memory_equal(back, msg, sizeof msg);
}

/* The purge helpers the tiers share: runs of a mask, expiry by time. */
static void test_purge_helpers(void **state) {
  (void)state;
  struct {
    uint64_t mask;
    unsigned runs[4][2]; /* first, len */
    int n;
  } cases[] = {
      {0, {{0}}, 0},
      {1, {{0, 1}}, 1},
      {(uint64_t)1 << 63, {{63, 1}}, 1},
      {UINT64_MAX, {{0, 64}}, 1},
      {UINT64_MAX << 1, {{1, 63}}, 1},
      {0xF0F1, {{0, 1}, {4, 4}, {12, 4}}, 3},
      {0x6, {{1, 2}}, 1},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    uint64_t m = cases[c].mask;
    unsigned first, len;
    int n = 0;
    while (hak_os_next_run(&m, &first, &len)) {
      assert_true(n < cases[c].n);
      assert_int_equal(first, cases[c].runs[n][0]);
      assert_int_equal(len, cases[c].runs[n][1]);
      n++;
    }
    assert_int_equal(n, cases[c].n);
    assert_int_equal(m, 0);
  }
  uint64_t since[64] = {0};
  since[1] = 100; /* due 110: expired at 110 */
  since[2] = 105; /* due 115 */
  since[5] = 90;  /* due 100 */
  since[7] = 200; /* not dirty: ignored */
  uint64_t next = UINT64_MAX;
  uint64_t dirty = (1u << 1) | (1u << 2) | (1u << 5);
  assert_int_equal(hak_os_expired(dirty, since, 110, 10, &next),
                   (1u << 1) | (1u << 5));
  assert_int_equal(next, 115);
  next = UINT64_MAX;
  assert_int_equal(hak_os_expired(dirty, since, 99, 10, &next), 0);
  assert_int_equal(next, 100);
}

/* A slab set over a tier of 8 slabs of 512 KiB whose header takes the
 * first 64 KiB of slab 0 (as the mid tier lays it out), with callbacks
 * that record what the set tells the tier. */
struct toy_superslab {
  struct hak_os_slabset_superslab slabset;
  uint64_t dirty_since_ms[8];
};
static size_t toy_adopted_dirty = SIZE_MAX;
static uint64_t toy_decommitted; /* bit i: slab i was decommitted */
static size_t toy_resident[8];   /* bytes of each slab written */

static void toy_adopted(struct hak_os_slabset_superslab *ss, size_t dirty) {
  (void)ss;
  toy_adopted_dirty = dirty;
}
static void toy_slabs_decommitted(struct hak_os_slabset_superslab *ss,
                                  unsigned first, unsigned n) {
  (void)ss;
  for (unsigned i = first; i < first + n; i++) {
    toy_decommitted |= (uint64_t)1 << i;
    toy_resident[i] = 0;
  }
}
static size_t toy_resident_bytes(const struct hak_os_slabset_superslab *ss,
                                 unsigned i) {
  (void)ss;
  return toy_resident[i];
}

static struct hak_os_slabset toy_set = {
    .kind = HAK_REGION_MID,
    .slab_shift = 19,
    .slab_count = 8,
    .header = 64 << 10,
    .since_offset = offsetof(struct toy_superslab, dirty_since_ms),
    .adopted = toy_adopted,
    .decommitted = toy_slabs_decommitted,
    .resident_bytes = toy_resident_bytes,
    HAK_OS_SLABSET_STATE_INIT,
};

static unsigned toy_take(struct hak_os_slabset_superslab *expect_ss) {
  unsigned i = 99;
  struct hak_os_slabset_superslab *ss = hak_os_slabset_take(&toy_set, &i);
  assert_ptr_equal(ss, expect_ss);
  assert_true(i < 8);
  return i;
}

static void toy_release(struct hak_os_slabset_superslab *ss, unsigned i,
                        size_t written) {
  toy_resident[i] = written;
  hak_os_slabset_release(&toy_set, ss, i, written != 0, 1);
}

static void test_slabset(void **state) {
  (void)state;
  const size_t slab = (size_t)1 << 19;
  hak_os_slabset_configure(&toy_set, 2, NEVER);
  /* A new superslab: the tier sets it up, slabs go lowest first. */
  unsigned first = 99;
  struct hak_os_slabset_superslab *ss = hak_os_slabset_take(&toy_set, &first);
  assert_non_null(ss);
  assert_int_equal(first, 0);
  assert_int_equal(toy_adopted_dirty, 0);
  assert_int_equal(hak_os_kind_of(ss), HAK_REGION_MID);
  assert_int_equal(toy_take(ss), 1);
  assert_int_equal(toy_take(ss), 2);
  assert_int_equal(toy_take(ss), 3);
  assert_int_equal(hak_os_slabset_info(&toy_set).slabs_in_use, 4);

  /* A written slab keeps its pages and is taken again before untouched
   * ones; an untouched one is simply free. */
  toy_release(ss, 2, 100 << 10);
  assert_int_equal(hak_os_slabset_info(&toy_set).slabs_dirty, 1);
  assert_int_equal(toy_take(ss), 2);
  assert_int_equal(hak_os_slabset_info(&toy_set).slabs_dirty, 0);
  toy_release(ss, 3, 0);
  assert_int_equal(hak_os_slabset_info(&toy_set).slabs_dirty, 0);
  assert_int_equal(toy_take(ss), 3);

  /* Past the limit (2), the slab released goes at once. */
  toy_release(ss, 1, slab);
  toy_release(ss, 2, 100 << 10);
  assert_int_equal(toy_decommitted, 0);
  toy_release(ss, 3, slab);
  assert_int_equal(toy_decommitted, (uint64_t)1 << 3);
  assert_int_equal(hak_os_slabset_info(&toy_set).slabs_dirty, 2);

  /* The last slab takes the superslab back to the cache, with the extent
   * that may be resident: up to what slab 2 wrote (slab 3 was
   * decommitted, slab 0 was not written past the header). */
  toy_release(ss, 0, 0);
  struct hak_os_slabset_info info = hak_os_slabset_info(&toy_set);
  assert_int_equal(info.superslabs, 0);
  assert_int_equal(info.slabs_in_use, 0);
  assert_int_equal(info.slabs_dirty, 0);
  assert_int_equal(hak_os_cache_info().superslabs_committed, 1);
  size_t dirty;
  void *again = hak_os_superslab_alloc_dirty(&dirty);
  assert_ptr_equal(again, ss);
  assert_int_equal(dirty, 2 * slab + (100 << 10));

  /* Taken back with that extent: the slabs below it are dirty (limit
   * allowing), and a short delay later the next take decommits them, the
   * adjacent ones with one call. */
  hak_os_superslab_free_dirty(again, dirty);
  hak_os_slabset_configure(&toy_set, 8, 5);
  toy_decommitted = 0;
  assert_ptr_equal(hak_os_slabset_take(&toy_set, &first), ss);
  assert_int_equal(toy_adopted_dirty, dirty);
  assert_int_equal(first, 0); /* dirty first, lowest first */
  assert_int_equal(hak_os_slabset_info(&toy_set).slabs_dirty, 2);
  uint64_t madvise = stat_get(HAK_STAT_SYS_MADVISE);
  wait_past(5);
  assert_int_equal(toy_take(ss), 1); /* no longer dirty: still the lowest */
  assert_int_equal(toy_decommitted, 0x6);
  assert_int_equal(hak_os_slabset_info(&toy_set).slabs_dirty, 0);
  if (HAK_GATE_COUNT_SYSCALLS)
    assert_int_equal(stat_get(HAK_STAT_SYS_MADVISE) - madvise, 1);
  toy_release(ss, 1, 0);
  toy_release(ss, 0, 0);
  assert_int_equal(hak_os_slabset_info(&toy_set).superslabs, 0);
}

int main(void) {
  /* The residency checks count 4 KiB pages. With THP "always" the kernel
   * may back a first touch with a 2 MiB page, so the process opts out:
   * the tests then hold whatever the system's THP mode. */
  prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
  default_config = hak_os_default_config();
  /* Warm-up: the registry is mapped by the first allocation; doing it here
   * keeps that one-time mapping out of the counted deltas. */
  bool zeroed;
  hak_os_superslab_free(hak_os_superslab_alloc(&zeroed));
  hak_os_release_caches();

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_superslab_aligned_writable_zeroed),
      T(test_registry),
      T(test_region_map_levels),
      T(test_superslab_warm_reuse),
      T(test_superslab_cold_reuse),
      T(test_superslab_cache_bounds),
      T(test_purge_delay),
      T(test_purge_helpers),
      T(test_slabset),
      T(test_superslab_dirty_extent),
      T(test_decommit_reads_zero),
      T(test_decommit_drops_rss),
      T(test_zero),
      T(test_huge_rounding_alignment),
      T(test_huge_impossible_size),
      T(test_huge_resize),
      T(test_huge_cache_reuse),
      T(test_huge_cache_bounds),
      T(test_syscall_counters),
      T(test_injected_failure),
      T(test_configure_clamps),
      T(test_threads),
      T(test_fork),
      T(test_write_stderr),
      T(test_protect),
      T(test_huge_alloc_zero),
      T(test_huge_resize_to_zero),
  };
  return cmocka_run_group_tests_name("os", tests, NULL, NULL);
}
