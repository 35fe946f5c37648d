/* SPDX-License-Identifier: MIT */
/* api.c - the public API: routing by size, and the C library's answers to
 * every edge case.
 *
 * Routing (docs/ARCHITECTURE.md):
 *   0 < size <= 1 KiB        tiny front (libhak-tiny), per-thread, lock-free
 *   1 KiB < size <= 256 KiB  mid tier (mid.c), per-thread lists + shared slabs
 *   larger                   large tier (large.c), one region per block
 * free needs no size: the region header at (p & ~(4 MiB - 1)) names the tier.
 */
#include "core_internal.h"
#include "cxx_entry.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* new.cpp's; weak, so that a C program linking the static library needs
 * no C++ runtime (only new.cpp's operators call hak_new, and they come
 * with it). */
#pragma weak hak_new_failed

int hak_initialized;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;

/* ---- start-up, thread exit, fork, exit ---------------------------------- */

static void on_thread_exit(void *arg) {
  (void)arg;
  VG_ENTER(); /* walks the links inside freed blocks */
  hak_mid_thread_exit();
  VG_LEAVE();
}

/* The buffer of printed reports (print_report). */
static pthread_mutex_t buf_lock = PTHREAD_MUTEX_INITIALIZER;

static void fork_prepare(void) {
  /* A report takes its buffer, then its figures, then the tiers' locks. */
  pthread_mutex_lock(&buf_lock);
  hak_report_fork_prepare();
  hak_large_fork_prepare();
  hak_mid_fork_prepare();
  hak_tiny_fork_prepare();
  hak_os_fork_prepare();
  hak_stats_fork_prepare();
}

static void fork_parent(void) {
  hak_stats_fork_parent();
  hak_os_fork_parent();
  hak_tiny_fork_parent();
  hak_mid_fork_parent();
  hak_large_fork_parent();
  hak_report_fork_parent();
  pthread_mutex_unlock(&buf_lock);
}

static void print_report(bool from_signal);

static void on_stats_signal(int sig) {
  (void)sig;
  print_report(true);
}

#define OS_CACHE_DELAYS 10 /* purge delays of libhak-os's cache (below) */

/* Hands the configuration to the layers (start-up, mallopt). */
void hak_config_apply(void) {
  struct hak_os_config os = hak_os_default_config();
  os.superslab_cache = hak_config.superslab_cache;
  os.superslab_reserve = hak_config.superslab_reserve;
  /* Freed big blocks stay in the large tier's arenas, which split and join
   * them (HAKMEM_HUGE_CACHE_MB bounds what it keeps); a second cache of
   * whole regions below it would only hold memory twice as long. */
  os.huge_cache_bytes = 0;
  /* A superslab that a tier gave back whole keeps its pages in libhak-os's
   * cache for ten delays: its slabs have already waited one in their tier,
   * and the threads that replace exited ones come back for it later than
   * that when they wait for a core (bench_threads churn, 8 threads on 2
   * cores, standard build, 3 runs each: 18-39 k faults with one delay,
   * 9-12 k with ten, and 1.2-1.3x the rate; the other shapes level). */
  os.purge_delay_ms = hak_config.purge_delay_ms * OS_CACHE_DELAYS;
  os.transparent_huge_pages = hak_config.thp;
  hak_os_configure(&os);
  hak_os_set_reclaim(hak_large_reclaim); /* free arenas, when memory runs out */
  struct hak_tiny_config tiny = {.dirty_slab_limit =
                                     hak_config.tiny_dirty_slabs,
                                 .purge_delay_ms = hak_config.purge_delay_ms,
                                 .audit_lists = hak_config.checks >= 2};
  hak_tiny_configure(&tiny);
  hak_mid_configure(hak_config.purge_delay_ms, hak_config.mid_dirty_slabs);
}

static void init_once_body(void) {
  hak_tiny_init(); /* the secret the mid tier's lists are encoded with */
  if (HAK_GATE_ENV_CONFIG)
    hak_config_load(&hak_config);
  hak_config_apply();
  pthread_key_create(&exit_key, on_thread_exit);
  /* The child's only thread is the one that took every lock in fork_prepare:
   * it releases them as the parent does (re-creating a held mutex would be
   * undefined behaviour). */
  pthread_atfork(fork_prepare, fork_parent, fork_parent);
  if (hak_config.stats_signal &&
      !hak_os_on_signal((int)hak_config.stats_signal, on_stats_signal)) {
    char msg[96];
    int n = snprintf(msg, sizeof msg,
                     "hakmem: cannot catch signal %zu (HAKMEM_STATS_SIGNAL); "
                     "no report on it\n",
                     hak_config.stats_signal);
    if (n > 0)
      hak_os_write_stderr(msg,
                          (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
  }
  if (hak_config.verbose) {
    /* HAKMEM_VERBOSE: one line with the configuration in force. */
    char msg[384];
    int n = snprintf(msg, sizeof msg,
                     "hakmem: build %s, stats=%d superslab_cache=%u "
                     "superslab_reserve=%u huge_cache_mb=%zu thp=%d "
                     "guard_pages=%d tiny_dirty_slabs=%u mid_cache_kb=%zu "
                     "purge_delay_ms=%u stats_signal=%zu checks=%u "
                     "guard_sample=%u guard_slots=%u guard_max=%zu\n",
                     HAK_BUILD_VARIANT == HAK_VARIANT_FAST       ? "fast"
                     : HAK_BUILD_VARIANT == HAK_VARIANT_STANDARD ? "standard"
                                                                 : "observe",
                     hak_config.stats, hak_config.superslab_cache,
                     hak_config.superslab_reserve, hak_config.huge_cache_mb,
                     hak_config.thp, hak_config.guard_pages,
                     hak_config.tiny_dirty_slabs, hak_config.mid_cache_kb,
                     hak_config.purge_delay_ms, hak_config.stats_signal,
                     hak_config.checks, hak_config.guard_sample,
                     hak_config.guard_slots, hak_config.guard_max);
    if (n > 0)
      hak_os_write_stderr(msg,
                          (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
  }
  __atomic_store_n(&hak_initialized, 1, __ATOMIC_RELEASE);
  /* Last, once hak_initialized is set: warming up backtrace() allocates,
   * and those allocations must not wait for this initialisation. */
  if (HAK_GATE_GUARD && hak_config.guard_sample) {
    struct hak_os_guard_config guard = {.sample = hak_config.guard_sample,
                                        .slots = hak_config.guard_slots,
                                        .max = hak_config.guard_max};
    hak_os_guard_configure(&guard);
  }
}

void hak_init(void) { pthread_once(&init_once, init_once_body); }

__attribute__((constructor)) static void hak_constructor(void) { hak_init(); }

__attribute__((destructor)) static void hak_destructor(void) {
  if (hak_config.stats != HAK_REPORT_OFF)
    hak_stats_print();
}

/* Marks the thread as using the mid tier, so its cache is flushed at exit.
 * pthread_setspecific may allocate: it is called after the block is taken. */
static __thread int mid_registered __attribute__((tls_model("initial-exec")));
static void register_thread(void) {
  if (HAK_UNLIKELY(!mid_registered)) {
    mid_registered = 1;
    hak_ensure_init();
    pthread_setspecific(exit_key, &mid_registered);
  }
}

/* ---- misuse -------------------------------------------------------------- */

void hak_misuse(const char *func, const char *what, const void *p) {
  char msg[192];
  int n = snprintf(msg, sizeof msg, "hakmem: %s(): %s: %p\n", func, what, p);
  hak_os_write_stderr(msg, n > 0 ? (size_t)n : 0);
  hak_os_abort();
}

/* ---- malloc ------------------------------------------------------------ */

static HAK_COLD void *malloc_slow(size_t size) {
  if (size == 0) {
    /* A sampled malloc(0) is a guarded block of 0 bytes: any access to it
     * faults. */
    void *g = hak_os_guard_sample() ? hak_os_guard_alloc(0, 16) : NULL;
    return g ? g : hak_tiny_malloc(1);
  }
  hak_ensure_init();
  if (size <= HAK_MID_MAX) {
    register_thread();
    return hak_mid_malloc(size);
  }
  bool zeroed;
  return hak_large_malloc(size, 0, &zeroed);
}

static inline __attribute__((always_inline)) void *malloc_impl(size_t size) {
  if (HAK_LIKELY(size - 1 < HAK_TINY_MAX)) /* 1..1024; 0 wraps */
    return hak_tiny_malloc(size);
  return malloc_slow(size);
}

/* ---- free ---------------------------------------------------------------- */

static HAK_COLD void free_other(void *p, enum hak_region_kind kind) {
  /* The mid tier first, by a compare: a switch of this many cases becomes
   * an indirect jump, which costs every mid free three instructions. */
  if (HAK_LIKELY(kind == HAK_REGION_MID)) {
    register_thread(); /* the block joins this thread's list */
    hak_mid_free(p);
    return;
  }
  if (p == NULL)
    return;
  switch (kind) {
  case HAK_REGION_TINY:
    hak_tiny_free(p);
    return;
  case HAK_REGION_LARGE:
  case HAK_REGION_LARGE_TAIL:
    hak_large_free(p);
    return;
  case HAK_REGION_GUARDED: /* a sampled block (never in the fast build) */
    hak_os_guard_free(p, "free");
    return;
  case HAK_REGION_NONE:
    hak_misuse("free", "invalid pointer (not from hakmem)", p);
  default:
    hak_misuse("free", "invalid pointer or double free (region not in use)", p);
  }
}

/* One byte of the region map routes the pointer.  The fast build trusts it
 * to be a user-space address; the others bound it first, so that any value
 * at all gets an answer. */
static inline __attribute__((always_inline)) enum hak_region_kind
kind_of(const void *p) {
  return HAK_GATE_CHECK_FOREIGN ? hak_os_kind_checked(p) : hak_os_kind_of(p);
}

static inline __attribute__((always_inline)) void free_impl(void *p) {
  enum hak_region_kind kind = kind_of(p);
  if (HAK_LIKELY(kind == HAK_REGION_TINY)) {
    hak_tiny_free(p);
    return;
  }
  free_other(p, kind);
}

/* ---- sizes --------------------------------------------------------------- */

static size_t usable_size(const void *p, const char *func) {
  switch (kind_of(p)) {
  case HAK_REGION_TINY:
    return hak_tiny_usable_size(p);
  case HAK_REGION_MID:
    return hak_mid_usable_size(p);
  case HAK_REGION_LARGE:
  case HAK_REGION_LARGE_TAIL:
    return hak_large_usable_size(p, func);
  case HAK_REGION_GUARDED:
    return hak_os_guard_usable_size(p, func);
  case HAK_REGION_NONE:
    hak_misuse(func, "invalid pointer (not from hakmem)", p);
  default:
    hak_misuse(func, "invalid pointer (region not in use)", p);
  }
}

size_t hak_usable_size(const void *p) {
  VG_ENTER(); /* headers may sit where freed blocks once were */
  size_t n = p ? usable_size(p, "malloc_usable_size") : 0;
  VG_LEAVE();
  return n;
}

/* ---- calloc -------------------------------------------------------------- */

static void *calloc_impl(size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  if (total > HAK_TINY_MAX) {
    /* Only the part of the block that may be non-zero is cleared. */
    hak_ensure_init();
    if (total > HAK_MID_MAX)
      return hak_large_calloc(total);
    register_thread();
    return hak_mid_calloc(total);
  }
  void *p = malloc_impl(total);
  if (p)
    memset(p, 0, total);
  return p;
}

/* Checked builds: how far p lies into the block that holds it (0: its
 * start), SIZE_MAX when that cannot be told (free then reports it). */
static size_t block_offset(const void *p, enum hak_region_kind kind) {
  if (kind == HAK_REGION_MID)
    return hak_mid_block_offset(p);
  if (kind != HAK_REGION_TINY)
    return SIZE_MAX;
  const struct hak_tiny_slab *s = hak_tiny_slab_of(p);
  size_t off = (uintptr_t)p & (HAK_TINY_SLAB_SIZE - 1);
  if (__atomic_load_n(&s->owner, __ATOMIC_RELAXED) == HAK_TINY_OWNER_NONE ||
      off >= __atomic_load_n(&s->carved, __ATOMIC_RELAXED))
    return SIZE_MAX;
  return off % s->block_size;
}

/* Checked builds: realloc of a tiny or mid block that is not live (freed,
 * or not a block's start) is realloc's misuse.  Unchecked, it would hand
 * the freed block back when the size still fits, or copy from it and then
 * report the free it makes as free's double free.  Large blocks are
 * checked by their own lookup (hak_large_usable_size). */
static void check_realloc(const void *p, enum hak_region_kind kind) {
  if (kind != HAK_REGION_TINY && kind != HAK_REGION_MID)
    return;
  if (HAK_GATE_CHECK_BLOCK_START && block_offset(p, kind) != 0)
    hak_misuse("realloc", "invalid pointer (not the start of a block)", p);
  bool freed = kind == HAK_REGION_TINY
                   ? ((const uint64_t *)p)[1] == hak_tiny_secret
                   : hak_mid_is_freed(p);
  if (HAK_GATE_CHECK_DOUBLE_FREE && freed)
    hak_misuse("realloc", "invalid pointer or double free (block freed)", p);
}

/* ---- realloc ------------------------------------------------------------- */

static void *realloc_impl(void *p, size_t size) {
  if (p == NULL) {
    void *q = malloc_impl(size);
    VG_ALLOC(q, 0);
    return q;
  }
  if (size == 0) { /* glibc: free and return NULL */
    VG_FREE(p);
    free_impl(p);
    return NULL;
  }
  size_t old = usable_size(p, "realloc");
  enum hak_region_kind kind = hak_os_kind_of(p);
  if (HAK_GATE_CHECKS)
    check_realloc(p, kind);
  bool large = kind == HAK_REGION_LARGE || kind == HAK_REGION_LARGE_TAIL;
  if (large) {
    if (size > HAK_MID_MAX) {
      /* In place, or pages moved rather than copied (large.c). */
      void *q = hak_large_realloc(p, size);
      if (q == p) {
        VG_RESIZE(p, old, hak_large_usable_size(p, "realloc"));
      } else if (q) {
        VG_FREE(p);
        VG_ALLOC(q, 0);
      }
      return q;
    }
  } else if (size <= old && size > old / 2 && kind != HAK_REGION_GUARDED) {
    return p; /* still fits its class and is not mostly wasted */
  }
  /* A guarded block always moves: its size is exact, so that the guard
   * stays right after the new end. */
  void *q = malloc_impl(size);
  if (!q)
    return NULL; /* errno ENOMEM; p is untouched */
  VG_ALLOC(q, 0);
  memcpy(q, p, size < old ? size : old);
  VG_FREE(p);
  free_impl(p);
  return q;
}

static void *reallocarray_impl(void *p, size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return realloc_impl(p, total);
}

/* ---- aligned allocation ----------------------------------------------------
 */

/* align is a power of two. */
static void *malloc_aligned(size_t align, size_t size) {
  if (align <= 16)
    return malloc_impl(size);
  if (size == 0)
    size = 1;
  if (size > PTRDIFF_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  /* Tiny blocks of a class that is a multiple of align are aligned to it
   * (slabs start at 64 KiB boundaries). */
  size_t rounded = (size + align - 1) & ~(align - 1);
  if (rounded <= HAK_TINY_MAX)
    return hak_tiny_malloc(rounded);
  hak_ensure_init();
  bool fits;
  if (rounded <= HAK_MID_MAX) {
    register_thread();
    void *p = hak_mid_malloc_aligned(size, align, &fits);
    if (fits)
      return p;
  }
  bool zeroed;
  return hak_large_malloc(size, align, &zeroed);
}

static bool power_of_two(size_t x) { return x && !(x & (x - 1)); }

static int posix_memalign_impl(void **out, size_t align, size_t size) {
  if (!power_of_two(align) || align % sizeof(void *))
    return EINVAL;
  int saved = errno;
  void *p = malloc_aligned(align, size);
  int e = errno;
  /* posix_memalign reports through its result and leaves errno as it was;
   * the tiers keep errno on success too (a refused in-place mremap was the
   * one that did not), but a tier's failure here is not the caller's. */
  errno = saved;
  if (!p)
    return e ? e : ENOMEM;
  *out = p;
  return 0;
}

static void *aligned_alloc_impl(size_t align, size_t size) {
  if (!power_of_two(align)) {
    errno = EINVAL;
    return NULL;
  }
  return malloc_aligned(align, size);
}

static void *memalign_impl(size_t align, size_t size) {
  /* As glibc: an alignment below 16 is no constraint, one that is not a
   * power of two is rounded up to the next, an impossible one is EINVAL. */
  if (align > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return NULL;
  }
  if (!power_of_two(align))
    align = align < 16 ? 16 : (size_t)1 << (64 - __builtin_clzll(align));
  return malloc_aligned(align, size);
}

static void *pvalloc_impl(size_t size) {
  if (size > SIZE_MAX - HAK_PAGE_SIZE) {
    errno = ENOMEM;
    return NULL;
  }
  size_t rounded = (size + HAK_PAGE_SIZE - 1) & ~(HAK_PAGE_SIZE - 1);
  return malloc_aligned(HAK_PAGE_SIZE, rounded ? rounded : HAK_PAGE_SIZE);
}

/* ---- the public functions --------------------------------------------------
 * Each is its _impl above; in a valgrind build (HAKMEM_VALGRIND) they also
 * tell memcheck where blocks begin and end, and silence it while hakmem's own
 * code touches freed blocks (their links and markers). */

HAK_HOT_ENTRY void *hak_malloc(size_t size) {
  VG_ENTER();
  void *p = malloc_impl(size);
  VG_ALLOC(p, 0);
  VG_LEAVE();
  return p;
}

HAK_HOT_ENTRY void hak_free(void *p) {
  VG_ENTER();
  VG_FREE(p);
  free_impl(p);
  VG_LEAVE();
}

void hak_free_sized(void *p, size_t size) {
  (void)size; /* the header knows; the size is not trusted */
  hak_free(p);
}

void *hak_calloc(size_t count, size_t size) {
  VG_ENTER();
  void *p = calloc_impl(count, size);
  VG_ALLOC(p, 1);
  VG_LEAVE();
  return p;
}

void *hak_realloc(void *p, size_t size) {
  VG_ENTER();
  void *q = realloc_impl(p, size);
  VG_LEAVE();
  return q;
}

void *hak_reallocarray(void *p, size_t count, size_t size) {
  VG_ENTER();
  void *q = reallocarray_impl(p, count, size);
  VG_LEAVE();
  return q;
}

int hak_posix_memalign(void **out, size_t align, size_t size) {
  VG_ENTER();
  int rc = posix_memalign_impl(out, align, size);
  if (rc == 0)
    VG_ALLOC(*out, 0);
  VG_LEAVE();
  return rc;
}

#define ALIGNED_ENTRY(call)                                                    \
  do {                                                                         \
    VG_ENTER();                                                                \
    void *p_ = (call);                                                         \
    VG_ALLOC(p_, 0);                                                           \
    VG_LEAVE();                                                                \
    return p_;                                                                 \
  } while (0)

void *hak_aligned_alloc(size_t align, size_t size) {
  ALIGNED_ENTRY(aligned_alloc_impl(align, size));
}
void *hak_memalign(size_t align, size_t size) {
  ALIGNED_ENTRY(memalign_impl(align, size));
}
void *hak_valloc(size_t size) {
  ALIGNED_ENTRY(malloc_aligned(HAK_PAGE_SIZE, size));
}
void *hak_pvalloc(size_t size) { ALIGNED_ENTRY(pvalloc_impl(size)); }

/* ---- C++'s operator new and delete (new.cpp) -------------------------------
 * new is malloc that never returns NULL: the failure goes to new.cpp, which
 * runs the new_handler loop and throws.  Sized delete knows the block's
 * size: in the fast build a tiny size sends the block to the tiny front
 * without the region map (operator new(n) of n <= 1 KiB always gives a tiny
 * block); the checked builds compare the size with the block instead. */

HAK_HOT_ENTRY void *hak_new(size_t size) {
  VG_ENTER();
  void *p = malloc_impl(size);
  VG_ALLOC(p, 0);
  VG_LEAVE();
  if (HAK_UNLIKELY(p == NULL))
    return hak_new_failed(size, 0, false);
  return p;
}

void *hak_new_nothrow(size_t size) {
  VG_ENTER();
  void *p = malloc_impl(size);
  VG_ALLOC(p, 0);
  VG_LEAVE();
  if (HAK_UNLIKELY(p == NULL))
    return hak_new_failed(size, 0, true);
  return p;
}

static void *new_aligned_impl(size_t size, size_t align) {
  if (!power_of_two(align)) { /* undefined for C++; refused as exhaustion */
    errno = EINVAL;
    return NULL;
  }
  VG_ENTER();
  void *p = malloc_aligned(align, size);
  VG_ALLOC(p, 0);
  VG_LEAVE();
  return p;
}

void *hak_new_aligned(size_t size, size_t align) {
  void *p = new_aligned_impl(size, align);
  if (HAK_UNLIKELY(p == NULL))
    return hak_new_failed(size, align, false);
  return p;
}

void *hak_new_aligned_nothrow(size_t size, size_t align) {
  void *p = new_aligned_impl(size, align);
  if (HAK_UNLIKELY(p == NULL))
    return hak_new_failed(size, align, true);
  return p;
}

static HAK_COLD __attribute__((noreturn)) void
delete_mismatch(const char *func, const void *p, size_t size, size_t align,
                size_t usable) {
  char msg[256];
  int n = snprintf(msg, sizeof msg,
                   "hakmem: %s(): new/delete size mismatch: %p: deleted with "
                   "size %zu (alignment %zu), but the block is of %zu bytes "
                   "(new gives that for another size)\n",
                   func, p, size, align ? align : 16, usable);
  hak_os_write_stderr(msg, n > 0 ? (size_t)n : 0);
  hak_os_abort();
}

/* What new(size) (align 0 or up to 16) or new(size, align) asked malloc
 * for: the size, rounded up to the alignment (size 0: 1).  SIZE_MAX when
 * that overflows (no such block exists). */
static inline size_t new_request(size_t size, size_t align) {
  size_t n = size ? size : 1;
  if (align <= 16)
    return n;
  size_t rounded = (n + align - 1) & ~(align - 1);
  return rounded < n ? SIZE_MAX : rounded;
}

/* Whether the mid or large block p (a block start, usable bytes) is one
 * that new(size) or new(size, align) hands out. */
static bool size_fits_block(enum hak_region_kind kind, size_t size,
                            size_t align, size_t usable) {
  size_t n = new_request(size, align);
  if (n <= HAK_TINY_MAX || size > usable)
    return false;
  if (align > 16)
    return true; /* the first class (or tier) that holds it aligned */
  if (kind == HAK_REGION_MID)
    return n <= HAK_MID_MAX && hak_mid_good_size(n) == usable;
  return n > HAK_MID_MAX;
}

/* A sized delete of a pointer that is not a block start: new[] of a type
 * with a destructor stores the count in front of the array, so delete (not
 * delete[]) hands back the array's address, one word into the block.
 * Anything else is free's to report. */
static HAK_COLD void
delete_not_block_start(const void *p, enum hak_region_kind kind, bool array) {
  if (!array && block_offset(p, kind) == sizeof(size_t))
    hak_misuse("operator delete",
               "pointer one word into a block: an array from new[] freed "
               "with delete (use delete[])",
               p);
}

/* The check of the tiers above tiny, out of line. */
static HAK_COLD void check_delete_other(void *p, enum hak_region_kind kind,
                                        size_t size, size_t align, bool array) {
  size_t usable;
  if (((uintptr_t)p & HAK_SUPERSLAB_MASK) == 0)
    return; /* over-aligned (the large tier's table): free checks it */
  switch (kind) {
  case HAK_REGION_MID:
    if (hak_mid_block_offset(p) != 0) {
      delete_not_block_start(p, kind, array);
      return;
    }
    usable = hak_mid_usable_size(p);
    break;
  case HAK_REGION_LARGE:
  case HAK_REGION_LARGE_TAIL:
    usable = hak_large_usable_size(p, array ? "operator delete[]"
                                            : "operator delete");
    break;
  default:
    return; /* not hakmem's, or cached: free reports it */
  }
  if (!size_fits_block(kind, size, align, usable))
    delete_mismatch(array ? "operator delete[]" : "operator delete", p, size,
                    align, usable);
}

/* The checked builds' sized delete: a size that is not the block's aborts
 * with both sizes named; a pointer that is no block start is left to
 * delete_not_block_start and free.  A tiny block costs what free's own
 * checks do: the block-start multiply, and the class of the size against
 * the slab's (the line free reads anyway).  Then the block is freed as
 * free would, without reading the region map again. */
static inline __attribute__((always_inline)) void
checked_delete(void *p, size_t size, size_t align, bool array) {
  enum hak_region_kind kind = hak_os_kind_checked(p);
  if (HAK_LIKELY(kind == HAK_REGION_TINY) &&
      ((uintptr_t)p & HAK_SUPERSLAB_MASK) != 0) {
    const struct hak_tiny_slab *s = hak_tiny_slab_of(p);
    if (HAK_LIKELY(hak_tiny_is_block_start(s, p))) {
      size_t n = new_request(size, align);
      if (HAK_UNLIKELY(n - 1 >= HAK_TINY_MAX || hak_tiny_class(n) != s->cls))
        delete_mismatch(array ? "operator delete[]" : "operator delete", p,
                        size, align, s->block_size);
    } else {
      delete_not_block_start(p, kind, array);
    }
    hak_tiny_free(p); /* reports what is left (a double free) */
    return;
  }
  if (p)
    check_delete_other(p, kind, size, align, array);
  free_other(p, kind);
}

static inline __attribute__((always_inline)) void
delete_impl(void *p, size_t size, size_t align, bool array) {
  VG_ENTER();
  VG_FREE(p);
  if (HAK_GATE_CHECK_DELETE_SIZE) {
    checked_delete(p, size, align, array);
    VG_LEAVE();
    return;
  }
  size_t n = size;
  if (align > 16) /* what new(size, align) rounded up to (size 0: 1) */
    n = ((size ? size : 1) + align - 1) & ~(align - 1);
  if (HAK_LIKELY(n - 1 < HAK_TINY_MAX && p != NULL)) /* size 0 wraps */
    hak_tiny_free(p);
  else
    free_impl(p);
  VG_LEAVE();
}

HAK_HOT_ENTRY void hak_delete_sized(void *p, size_t size) {
  delete_impl(p, size, 0, false);
}

void hak_delete_array_sized(void *p, size_t size) {
  delete_impl(p, size, 0, true);
}

void hak_delete_aligned(void *p, size_t size, size_t align, bool array) {
  delete_impl(p, size, align, array);
}

/* ---- the C library's names (libhakmem.so only) ----------------------------
 * Aliases, not wrappers: malloc is hak_malloc, one symbol. */
#ifdef HAK_OVERRIDE
#define HAK_EXPORT_AS(name) __attribute__((alias(#name), visibility("default")))
void *malloc(size_t size) __attribute__((malloc, alloc_size(1)))
HAK_EXPORT_AS(hak_malloc);
void free(void *p) HAK_EXPORT_AS(hak_free);
void *calloc(size_t count, size_t size)
    __attribute__((malloc, alloc_size(1, 2))) HAK_EXPORT_AS(hak_calloc);
void *realloc(void *p, size_t size) __attribute__((alloc_size(2)))
HAK_EXPORT_AS(hak_realloc);
void *reallocarray(void *p, size_t count, size_t size)
    HAK_EXPORT_AS(hak_reallocarray);
int posix_memalign(void **out, size_t align, size_t size)
    HAK_EXPORT_AS(hak_posix_memalign);
void *aligned_alloc(size_t align, size_t size)
    __attribute__((malloc, alloc_size(2))) HAK_EXPORT_AS(hak_aligned_alloc);
void *memalign(size_t align, size_t size) __attribute__((malloc, alloc_size(2)))
HAK_EXPORT_AS(hak_memalign);
void *valloc(size_t size) __attribute__((malloc)) HAK_EXPORT_AS(hak_valloc);
void *pvalloc(size_t size) __attribute__((malloc)) HAK_EXPORT_AS(hak_pvalloc);
size_t malloc_usable_size(void *p) HAK_EXPORT_AS(hak_usable_size);
void free_sized(void *p, size_t size) HAK_EXPORT_AS(hak_free_sized);
/* glibc's historical alias, still called by some old binaries. */
void cfree(void *p) HAK_EXPORT_AS(hak_free);
/* glibc's internal names, which it exports and which some programs call to
 * reach "the real malloc" (allocation hooks, wrappers of malloc that look
 * it up): under LD_PRELOAD they would otherwise hand out glibc's blocks,
 * which hakmem's free does not know. */
void *__libc_malloc(size_t size) __attribute__((malloc, alloc_size(1)))
HAK_EXPORT_AS(hak_malloc);
void __libc_free(void *p) HAK_EXPORT_AS(hak_free);
void *__libc_calloc(size_t count, size_t size)
    __attribute__((malloc, alloc_size(1, 2))) HAK_EXPORT_AS(hak_calloc);
void *__libc_realloc(void *p, size_t size) __attribute__((alloc_size(2)))
HAK_EXPORT_AS(hak_realloc);
void *__libc_memalign(size_t align, size_t size)
    __attribute__((malloc, alloc_size(2))) HAK_EXPORT_AS(hak_memalign);
void *__libc_valloc(size_t size) __attribute__((malloc))
HAK_EXPORT_AS(hak_valloc);
void *__libc_pvalloc(size_t size) __attribute__((malloc))
HAK_EXPORT_AS(hak_pvalloc);
#endif

/* ---- statistics --------------------------------------------------------- */

int hak_version(void) { return HAKMEM_VERSION; }

size_t hak_stats_report(char *buf, size_t size, int json) {
  hak_ensure_init();
  return hak_stats_report_to(buf, size, json, false);
}

/* The text of `path` with every %p replaced by the pid (%% is a %): one
 * file per process, when a command runs several. */
static bool expand_path(const char *path, char *out, size_t n) {
  size_t len = 0;
  for (const char *p = path; *p; p++) {
    char num[24];
    const char *add = p;
    size_t k = 1;
    if (p[0] == '%' && p[1] == 'p') {
      k = (size_t)snprintf(num, sizeof num, "%ld", hak_os_pid());
      add = num;
      p++;
    } else if (p[0] == '%' && p[1] == '%') {
      p++;
    }
    if (len + k >= n)
      return false;
    memcpy(out + len, add, k);
    len += k;
  }
  out[len] = 0;
  return true;
}

static void say_busy(void) {
  static const char busy[] = "hakmem: statistics busy, try again\n";
  hak_os_write_stderr(busy, sizeof busy - 1);
}

static void print_report(bool from_signal) {
  /* 32 KiB: the longest report (every class of both tiers, observe's
   * per-class counts) takes about half.  Held across fork (fork_prepare). */
  static char buf[32768];
  if (from_signal ? pthread_mutex_trylock(&buf_lock) != 0
                  : pthread_mutex_lock(&buf_lock) != 0) {
    say_busy();
    return;
  }
  size_t n = hak_stats_report_to(
      buf, sizeof buf, hak_config.stats == HAK_REPORT_JSON, from_signal);
  if (n == 0) {
    say_busy();
  } else {
    n = n < sizeof buf ? n : strlen(buf);
    char path[sizeof hak_config.stats_file + 32];
    if (!hak_config.stats_file[0]) {
      hak_os_write_stderr(buf, n);
    } else if (!expand_path(hak_config.stats_file, path, sizeof path) ||
               !hak_os_append_file(path, buf, n)) {
      static const char cannot[] =
          "hakmem: cannot write HAKMEM_STATS_FILE; the report follows\n";
      hak_os_write_stderr(cannot, sizeof cannot - 1);
      hak_os_write_stderr(buf, n);
    }
  }
  pthread_mutex_unlock(&buf_lock);
}

void hak_stats_print(void) {
  hak_ensure_init();
  print_report(false);
}
