/* os.c - regions from the kernel, their caches, and the region map.
 *
 * Everything here is a slow path: it runs when a tier needs a new superslab
 * or a huge block, never per malloc.  One lock guards the caches; the
 * region map is read without it.
 */
#include "hak_os.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define CACHE_SLOTS 64 /* upper bound of either superslab cache */
#define HUGE_SLOTS 16

static pthread_mutex_t os_lock = PTHREAD_MUTEX_INITIALIZER;

static struct hak_os_config config = {
    .superslab_cache = 2,
    .superslab_reserve = 16,
    .huge_cache_bytes = (size_t)64 << 20,
    .transparent_huge_pages = false,
};

/* Free superslabs: `warm` keep their pages, `cold` were decommitted. */
static void *warm[CACHE_SLOTS];
static unsigned warm_count;
static void *cold[CACHE_SLOTS];
static unsigned cold_count;

struct huge_slot {
  void *base;
  size_t mapped;
};
static struct huge_slot huge_cache[HUGE_SLOTS];
static unsigned huge_count;
static size_t huge_bytes;

static unsigned fail_mappings; /* test hook */

struct hak_os_config hak_os_default_config(void) { return config; }

void hak_os_configure(const struct hak_os_config *cfg) {
  pthread_mutex_lock(&os_lock);
  config = *cfg;
  if (config.superslab_cache > CACHE_SLOTS)
    config.superslab_cache = CACHE_SLOTS;
  if (config.superslab_reserve > CACHE_SLOTS)
    config.superslab_reserve = CACHE_SLOTS;
  pthread_mutex_unlock(&os_lock);
}

void hak_os_fail_next_mappings(unsigned n) {
  __atomic_store_n(&fail_mappings, n, __ATOMIC_RELAXED);
}

/* ---- system calls, each counted -------------------------------------- */

static void *sys_mmap(size_t size) {
  HAK_STAT_SYS(SYS_MMAP, 1);
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    errno = ENOMEM;
    return NULL;
  }
  HAK_STAT_SYS(OS_BYTES_MAPPED, size);
  return p;
}

static void sys_munmap(void *p, size_t size) {
  if (size == 0)
    return;
  HAK_STAT_SYS(SYS_MUNMAP, 1);
  HAK_STAT_SYS(OS_BYTES_UNMAPPED, size);
  munmap(p, size);
}

void hak_os_decommit(void *p, size_t n) {
  if (n == 0)
    return;
  /* MADV_DONTNEED, not MADV_FREE: the pages leave the resident set at once
   * (MADV_FREE keeps them counted until the kernel is under pressure, which
   * makes RSS lie), and they read as zero afterwards, which lets calloc skip
   * zeroing a decommitted region. */
  HAK_STAT_SYS(SYS_MADVISE, 1);
  HAK_STAT_SYS(OS_BYTES_DECOMMITTED, n);
  madvise(p, n, MADV_DONTNEED);
}

void hak_os_protect(void *p, size_t n, bool access) {
  mprotect(p, n, access ? PROT_READ | PROT_WRITE : PROT_NONE);
}

/* ---- the region map: one byte per superslab-sized unit ----------------- */

/* 32 MiB of zero-initialised .bss: the kernel backs only the pages written,
 * and one page covers 16 GiB of address space, so a process pays a page or
 * two; a lazily mapped table would cost a pointer load on every free. */
uint8_t hak_os_region_map[HAK_OS_MAP_UNITS];

static void map_set(const void *base, enum hak_region_kind kind) {
  size_t unit = (uintptr_t)base >> HAK_SUPERSLAB_SHIFT;
  if (unit < HAK_OS_MAP_UNITS)
    __atomic_store_n(&hak_os_region_map[unit], (uint8_t)kind, __ATOMIC_RELEASE);
}

void hak_os_set_kind(void *region, enum hak_region_kind kind) { map_set(region, kind); }

/* ---- aligned mappings ------------------------------------------------- */

/* Maps `size` bytes aligned to HAK_SUPERSLAB_SIZE: over-reserve by one
 * alignment unit, then trim the ends.  Called with os_lock held. */
static void unmap_region(void *base, size_t size);

/* Unmaps every cached region; returns whether there was any.  Called with
 * os_lock held. */
static bool release_caches_locked(void) {
  bool any = warm_count || cold_count || huge_count;
  while (warm_count)
    unmap_region(warm[--warm_count], HAK_SUPERSLAB_SIZE);
  while (cold_count)
    unmap_region(cold[--cold_count], HAK_SUPERSLAB_SIZE);
  while (huge_count) {
    huge_count--;
    unmap_region(huge_cache[huge_count].base, huge_cache[huge_count].mapped);
  }
  huge_bytes = 0;
  return any;
}

static void *map_aligned(size_t size) {
  if (HAK_UNLIKELY(__atomic_load_n(&fail_mappings, __ATOMIC_RELAXED))) {
    __atomic_fetch_sub(&fail_mappings, 1, __ATOMIC_RELAXED);
    errno = ENOMEM;
    return NULL;
  }
  size_t over = size + HAK_SUPERSLAB_SIZE;
  char *p = sys_mmap(over);
  /* Refused (address space or a limit exhausted): what the caches hold is
   * the program's to have back before it is told there is no memory. */
  if (!p && release_caches_locked())
    p = sys_mmap(over);
  if (!p)
    return NULL;
  uintptr_t a = ((uintptr_t)p + HAK_SUPERSLAB_MASK) & ~(uintptr_t)HAK_SUPERSLAB_MASK;
  size_t head = a - (uintptr_t)p;
  sys_munmap(p, head);
  sys_munmap((char *)a + size, over - head - size);
  if (config.transparent_huge_pages) {
    HAK_STAT_SYS(SYS_MADVISE, 1);
    madvise((void *)a, size, MADV_HUGEPAGE);
  }
  map_set((void *)a, HAK_REGION_CACHED);
  return (void *)a;
}

static void unmap_region(void *base, size_t size) {
  map_set(base, HAK_REGION_NONE);
  sys_munmap(base, size);
}

/* ---- superslabs ------------------------------------------------------- */

void *hak_os_superslab_alloc(bool *zeroed) {
  void *ss;
  pthread_mutex_lock(&os_lock);
  if (warm_count) {
    ss = warm[--warm_count];
    *zeroed = false;
    HAK_STAT_SYS(OS_SUPERSLAB_REUSED, 1);
  } else if (cold_count) {
    ss = cold[--cold_count];
    *zeroed = true;
    HAK_STAT_SYS(OS_SUPERSLAB_REUSED, 1);
  } else {
    ss = map_aligned(HAK_SUPERSLAB_SIZE);
    *zeroed = true;
    if (ss)
      HAK_STAT_SYS(OS_SUPERSLAB_NEW, 1);
  }
  pthread_mutex_unlock(&os_lock);
  if (ss)
    HAK_VG_FRESH(ss, HAK_SUPERSLAB_SIZE);
  return ss;
}

void hak_os_superslab_free(void *ss) {
  /* A late free into a cached region is recognised by its kind. */
  map_set(ss, HAK_REGION_CACHED);
  pthread_mutex_lock(&os_lock);
  HAK_STAT_SYS(OS_SUPERSLAB_RELEASED, 1);
  if (warm_count < config.superslab_cache) {
    warm[warm_count++] = ss;
  } else if (cold_count < config.superslab_reserve) {
    hak_os_decommit(ss, HAK_SUPERSLAB_SIZE);
    cold[cold_count++] = ss;
  } else {
    unmap_region(ss, HAK_SUPERSLAB_SIZE);
  }
  pthread_mutex_unlock(&os_lock);
}

/* ---- huge regions ------------------------------------------------------ */

static size_t page_round(size_t n) {
  return (n + HAK_PAGE_SIZE - 1) & ~(HAK_PAGE_SIZE - 1);
}

void *hak_os_huge_alloc(size_t size, size_t *mapped, bool *zeroed) {
  if (size > ((size_t)1 << 46)) { /* more than the address space */
    errno = ENOMEM;
    return NULL;
  }
  size = page_round(size ? size : 1); /* a region is never empty */
  pthread_mutex_lock(&os_lock);
  /* Best fit among cached regions no more than twice the size, so that a
   * small request does not pin a big region. */
  int best = -1;
  for (unsigned i = 0; i < huge_count; i++) {
    size_t m = huge_cache[i].mapped;
    if (m >= size && m / 2 <= size &&
        (best < 0 || m < huge_cache[best].mapped))
      best = (int)i;
  }
  void *base;
  if (best >= 0) {
    base = huge_cache[best].base;
    *mapped = huge_cache[best].mapped;
    huge_bytes -= *mapped;
    huge_cache[best] = huge_cache[--huge_count];
    *zeroed = false;
    HAK_STAT_SYS(OS_HUGE_REUSED, 1);
  } else {
    base = map_aligned(size);
    *mapped = size;
    *zeroed = true;
    if (base)
      HAK_STAT_SYS(OS_HUGE_NEW, 1);
  }
  pthread_mutex_unlock(&os_lock);
  if (base)
    HAK_VG_FRESH(base, *mapped);
  return base;
}

void hak_os_huge_free(void *base, size_t mapped) {
  map_set(base, HAK_REGION_CACHED);
  pthread_mutex_lock(&os_lock);
  if (mapped <= config.huge_cache_bytes) {
    /* Make room by evicting the oldest entries. */
    while (huge_count && (huge_count == HUGE_SLOTS ||
                          huge_bytes + mapped > config.huge_cache_bytes)) {
      unmap_region(huge_cache[0].base, huge_cache[0].mapped);
      huge_bytes -= huge_cache[0].mapped;
      for (unsigned i = 1; i < huge_count; i++)
        huge_cache[i - 1] = huge_cache[i];
      huge_count--;
    }
    huge_cache[huge_count++] = (struct huge_slot){base, mapped};
    huge_bytes += mapped;
  } else {
    unmap_region(base, mapped);
  }
  pthread_mutex_unlock(&os_lock);
}

bool hak_os_huge_resize(void *base, size_t mapped, size_t new_size,
                        size_t *new_mapped) {
  new_size = page_round(new_size ? new_size : 1);
  if (new_size == mapped) {
    *new_mapped = mapped;
    return true;
  }
  if (new_size < mapped) {
    sys_munmap((char *)base + new_size, mapped - new_size);
    *new_mapped = new_size;
    return true;
  }
  /* Grow in place only: moving would break the alignment that lets a
   * pointer find its header. */
  HAK_STAT_SYS(SYS_MREMAP, 1);
  void *p = mremap(base, mapped, new_size, 0);
  if (p == MAP_FAILED)
    return false;
  HAK_STAT_SYS(OS_BYTES_MAPPED, new_size - mapped);
  *new_mapped = new_size;
  return true;
}

void hak_os_release_caches(void) {
  pthread_mutex_lock(&os_lock);
  release_caches_locked();
  pthread_mutex_unlock(&os_lock);
}

struct hak_os_cache_info hak_os_cache_info(void) {
  pthread_mutex_lock(&os_lock);
  struct hak_os_cache_info info = {warm_count, cold_count, huge_count,
                                   huge_bytes};
  pthread_mutex_unlock(&os_lock);
  return info;
}

void hak_os_fork_prepare(void) { pthread_mutex_lock(&os_lock); }
void hak_os_fork_parent(void) { pthread_mutex_unlock(&os_lock); }
/* The child unlocks what its (only) thread locked before fork: re-creating
 * a held mutex is undefined behaviour. */
void hak_os_fork_child(void) { pthread_mutex_unlock(&os_lock); }

/* ---- messages and process state -------------------------------------- */

void hak_os_write_stderr(const char *s, size_t n) {
  while (n) {
    ssize_t w = write(2, s, n);
    if (w <= 0) {
      if (w < 0 && errno == EINTR)
        continue;
      return;
    }
    s += w;
    n -= (size_t)w;
  }
}

void hak_os_abort(void) { abort(); }

bool hak_os_on_signal(int sig, void (*handler)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  return sigaction(sig, &sa, NULL) == 0;
}

/* A "Key:   N kB" field of /proc/self/status, in bytes (0 if unreadable).
 * VmHWM rather than getrusage's ru_maxrss for the peak: Linux carries
 * ru_maxrss across execve, so a program started by a big parent (a Python
 * script) would report the parent's peak. */
static size_t status_bytes(const char *key) {
  int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  char buf[4096];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return 0;
  buf[n] = 0;
  const char *s = strstr(buf, key);
  if (!s)
    return 0;
  s += strlen(key);
  while (*s == ' ' || *s == '\t')
    s++;
  size_t kb = 0;
  while (*s >= '0' && *s <= '9')
    kb = kb * 10 + (size_t)(*s++ - '0');
  return kb * 1024;
}

size_t hak_os_rss_current(void) { return status_bytes("VmRSS:"); }
size_t hak_os_rss_peak(void) { return status_bytes("VmHWM:"); }
