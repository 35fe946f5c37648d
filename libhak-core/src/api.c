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

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

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

static void fork_prepare(void) {
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
}

static void print_report(bool from_signal);

static void on_stats_signal(int sig) {
  (void)sig;
  print_report(true);
}

static void init_once_body(void) {
  hak_tiny_init(); /* the secret the mid tier's lists are encoded with */
  if (HAK_GATE_ENV_CONFIG)
    hak_config_load(&hak_config);
  struct hak_os_config os = hak_os_default_config();
  os.superslab_cache = hak_config.superslab_cache;
  os.superslab_reserve = hak_config.superslab_reserve;
  os.huge_cache_bytes = hak_config.huge_cache_mb << 20;
  os.purge_delay_ms = hak_config.purge_delay_ms;
  os.transparent_huge_pages = hak_config.thp;
  hak_os_configure(&os);
  struct hak_tiny_config tiny = {.dirty_slab_limit =
                                     hak_config.tiny_dirty_slabs,
                                 .purge_delay_ms = hak_config.purge_delay_ms,
                                 .audit_lists = hak_config.checks >= 2};
  hak_tiny_configure(&tiny);
  hak_mid_configure(hak_config.purge_delay_ms);
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
    char msg[320];
    int n = snprintf(msg, sizeof msg,
                     "hakmem: build %s, stats=%d superslab_cache=%u "
                     "superslab_reserve=%u huge_cache_mb=%zu thp=%d "
                     "guard_pages=%d tiny_dirty_slabs=%u mid_cache_kb=%zu "
                     "purge_delay_ms=%u stats_signal=%zu checks=%u\n",
                     HAK_BUILD_VARIANT == HAK_VARIANT_FAST       ? "fast"
                     : HAK_BUILD_VARIANT == HAK_VARIANT_STANDARD ? "standard"
                                                                 : "observe",
                     hak_config.stats, hak_config.superslab_cache,
                     hak_config.superslab_reserve, hak_config.huge_cache_mb,
                     hak_config.thp, hak_config.guard_pages,
                     hak_config.tiny_dirty_slabs, hak_config.mid_cache_kb,
                     hak_config.purge_delay_ms, hak_config.stats_signal,
                     hak_config.checks);
    if (n > 0)
      hak_os_write_stderr(msg,
                          (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
  }
  __atomic_store_n(&hak_initialized, 1, __ATOMIC_RELEASE);
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
  if (size == 0)
    return hak_tiny_malloc(1);
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
  if (p == NULL)
    return;
  if (((uintptr_t)p & HAK_SUPERSLAB_MASK) == 0) { /* only over-aligned blocks */
    hak_large_free(p);
    return;
  }
  switch (kind) {
  case HAK_REGION_TINY:
    hak_tiny_free(p);
    return;
  case HAK_REGION_MID:
    register_thread(); /* the block joins this thread's list */
    hak_mid_free(p);
    return;
  case HAK_REGION_LARGE:
  case HAK_REGION_HUGE:
    hak_large_free(p);
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
  if (((uintptr_t)p & HAK_SUPERSLAB_MASK) == 0)
    return hak_large_usable_size(p);
  switch (kind_of(p)) {
  case HAK_REGION_TINY:
    return hak_tiny_usable_size(p);
  case HAK_REGION_MID:
    return hak_mid_usable_size(p);
  case HAK_REGION_LARGE:
  case HAK_REGION_HUGE:
    return hak_large_usable_size(p);
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
  bool large = ((uintptr_t)p & HAK_SUPERSLAB_MASK) == 0 ||
               kind == HAK_REGION_LARGE || kind == HAK_REGION_HUGE;
  if (large) {
    /* Keep the block if it is still at least half used; grow in place where
     * the region allows. */
    if (size > HAK_MID_MAX && (size > old || size >= old / 2) &&
        hak_large_resize(p, size)) {
      VG_RESIZE(p, old, hak_large_usable_size(p));
      return p;
    }
  } else if (size <= old && size > old / 2) {
    return p; /* still fits its class and is not mostly wasted */
  }
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
  if (!p) {
    int e = errno;
    errno = saved;
    return e ? e : ENOMEM;
  }
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
#endif

/* ---- statistics --------------------------------------------------------- */

int hak_version(void) { return HAKMEM_VERSION; }

size_t hak_stats_report(char *buf, size_t size, int json) {
  struct hak_stats_snapshot s;
  hak_stats_snapshot(&s);
  hak_stats_set_rss(hak_os_rss_current(), hak_os_rss_peak());
  return hak_stats_format(&s, json, buf, size);
}

static void print_report(bool from_signal) {
  char buf[8192];
  struct hak_stats_snapshot s;
  if (from_signal) {
    if (!hak_stats_try_snapshot(&s)) {
      static const char busy[] = "hakmem: statistics busy, try again\n";
      hak_os_write_stderr(busy, sizeof busy - 1);
      return;
    }
  } else {
    hak_stats_snapshot(&s);
  }
  hak_stats_set_rss(hak_os_rss_current(), hak_os_rss_peak());
  size_t n = hak_stats_format(&s, hak_config.stats == HAK_REPORT_JSON, buf,
                              sizeof buf);
  hak_os_write_stderr(buf, n < sizeof buf ? n : strlen(buf));
}

void hak_stats_print(void) { print_report(false); }
