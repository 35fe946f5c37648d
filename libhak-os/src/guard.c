/* SPDX-License-Identifier: MIT */
/* guard.c - the guarded pool: sampled blocks between inaccessible pages,
 * the fault handler that reports a touch of those pages, and the canary
 * check at free.
 *
 * Layout (hak_os.h): slot i is a guard page then `area` bytes of block
 * pages; one more guard page ends the pool.  The whole reservation is
 * PROT_NONE and never counts towards memory: an allocation makes the pages
 * its block covers accessible, its free gives them back to the kernel and
 * makes them inaccessible again in one call (a fixed PROT_NONE mapping over
 * them).  The pool's superslab units are HAK_REGION_GUARDED in the region
 * map, so free and realloc find a guarded block by the byte they read
 * anyway, and the tiny fast path, which tests for HAK_REGION_TINY, never
 * sees one.
 *
 * Slots wait in one FIFO ring: every slot starts in it, allocation takes the
 * oldest, free appends.  A freed slot keeps its block's address, size and
 * stacks until it is taken again, for the report of a use after free.
 *
 * Everything here is a sampled slow path: one mutex guards the ring and the
 * slots' states.  The fault handler takes no lock (it may interrupt a
 * holder): it reads the slots as they are, which is enough to describe a
 * block that stays live or quarantined while the program faults on it.
 */
#include "hak_os.h"

#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#if HAK_GATE_GUARD

#define STACK_DEPTH 16

enum slot_state {
  SLOT_UNUSED = 0, /* never handed out */
  SLOT_LIVE,       /* a block in use */
  SLOT_RELEASING,  /* being freed (a second free of it is a double free) */
  SLOT_FREED,      /* quarantined: inaccessible, waiting in the ring */
};

struct slot {
  char *block;
  size_t size;
  uint8_t state; /* enum slot_state; atomic for the fault handler */
  bool right;    /* against the right guard */
  uint8_t alloc_depth, free_depth;
  void *alloc_stack[STACK_DEPTH];
  void *free_stack[STACK_DEPTH];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
  char *base;        /* first slot's guard page; NULL until reserved */
  size_t bytes;      /* of the reservation, whole superslab units */
  size_t area;       /* block bytes of a slot (whole pages) */
  size_t stride;     /* area plus its guard page */
  unsigned nslots;   /* from the configuration */
  size_t max;        /* the largest block guarded */
  bool failed;       /* the reservation was refused: never tried again */
  struct slot *slot; /* nslots entries */
  unsigned *ring;    /* slot indices, oldest first from `head` */
  unsigned head, count, live;
  uint64_t rng; /* which side: xorshift under the lock */
} pool;

unsigned hak_os_guard_rate;
__thread unsigned hak_os_guard_countdown
    __attribute__((tls_model("initial-exec")));
/* Set while this thread runs the pool's code: a malloc that backtrace() or
 * the kernel's answer makes meanwhile is not guarded (no recursion). */
static __thread bool busy __attribute__((tls_model("initial-exec")));

static struct sigaction old_segv, old_bus;

/* ---- sampling ------------------------------------------------------------ */

/* The countdown ran out (or was never set in this thread).  A thread's first
 * countdown is random in [1, rate], so that threads that make only a few
 * slow allocations are not all sampled on their first. */
bool hak_os_guard_sample_slow(void) {
  unsigned rate = __atomic_load_n(&hak_os_guard_rate, __ATOMIC_RELAXED);
  if (busy || rate == 0)
    return false;
  if (hak_os_guard_countdown == 0 && rate > 1) {
    uint64_t x = (uintptr_t)&x ^ hak_os_clock_ms() ^ 0x9e3779b97f4a7c15ull;
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 29;
    hak_os_guard_countdown = 1 + (unsigned)(x % rate);
    if (hak_os_guard_countdown > 1) {
      hak_os_guard_countdown--;
      return false;
    }
  }
  hak_os_guard_countdown = rate;
  return true;
}

/* ---- the pool ------------------------------------------------------------ */

static size_t page_floor(uintptr_t a) { return a & ~(HAK_PAGE_SIZE - 1); }
static size_t page_ceil(uintptr_t a) {
  return (a + HAK_PAGE_SIZE - 1) & ~(HAK_PAGE_SIZE - 1);
}

static char *area_of(unsigned i) {
  return pool.base + (size_t)i * pool.stride + HAK_PAGE_SIZE;
}

/* Maps size bytes of address space, PROT_NONE or read-write. */
static void *map_anon(size_t size, bool access) {
  HAK_STAT_SYS(SYS_MMAP, 1);
  void *p = mmap(NULL, size, access ? PROT_READ | PROT_WRITE : PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static void unmap(void *p, size_t size) {
  if (size == 0)
    return;
  HAK_STAT_SYS(SYS_MUNMAP, 1);
  munmap(p, size);
}

/* Reserves the pool, aligned to superslab units so that the region map
 * names it alone.  Called with the lock held, once. */
static bool reserve_locked(void) {
  if (pool.base)
    return true;
  if (pool.failed)
    return false;
  pool.failed = true; /* until it succeeds */
  pool.area = page_ceil(pool.max ? pool.max : 1);
  pool.stride = pool.area + HAK_PAGE_SIZE;
  size_t need = (size_t)pool.nslots * pool.stride + HAK_PAGE_SIZE;
  pool.bytes = (need + HAK_SUPERSLAB_MASK) & ~HAK_SUPERSLAB_MASK;
  size_t meta = (size_t)pool.nslots * (sizeof(struct slot) + sizeof(unsigned));
  char *m = map_anon(meta, true);
  if (!m)
    return false;
  char *raw = map_anon(pool.bytes + HAK_SUPERSLAB_SIZE, false);
  if (!raw) {
    unmap(m, meta);
    return false;
  }
  char *base = (char *)(((uintptr_t)raw + HAK_SUPERSLAB_MASK) &
                        ~(uintptr_t)HAK_SUPERSLAB_MASK);
  unmap(raw, (size_t)(base - raw));
  unmap(base + pool.bytes, (size_t)(raw + HAK_SUPERSLAB_SIZE - base));
  if (!hak_os_map_reserve(base, pool.bytes)) {
    unmap(base, pool.bytes);
    unmap(m, meta);
    return false;
  }
  pool.slot = (struct slot *)m;
  pool.ring = (unsigned *)(m + (size_t)pool.nslots * sizeof(struct slot));
  for (unsigned i = 0; i < pool.nslots; i++)
    pool.ring[i] = i;
  pool.head = 0;
  pool.count = pool.nslots;
  pool.rng = (uintptr_t)base ^ 0x2545f4914f6cdd1dull;
  for (size_t off = 0; off < pool.bytes; off += HAK_SUPERSLAB_SIZE)
    hak_os_set_kind(base + off, HAK_REGION_GUARDED);
  __atomic_store_n(&pool.base, base, __ATOMIC_RELEASE);
  pool.failed = false;
  return true;
}

/* The canary byte at address a: never zero (a memset to zero shows), and
 * varying with the address (a copy of it from elsewhere does not match). */
static uint8_t canary_at(const char *a) {
  return (uint8_t)(0x80 | ((uintptr_t)a * 0x9dU >> 3));
}

static void canary_fill(char *from, char *to) {
  for (char *a = from; a < to; a++)
    *(uint8_t *)a = canary_at(a);
}

/* The first damaged byte of [from, to), or NULL. */
static char *canary_find(char *from, char *to) {
  for (char *a = from; a < to; a++)
    if (*(uint8_t *)a != canary_at(a))
      return a;
  return NULL;
}

/* The accessible pages of a live slot's block: [*lo, *hi). */
static void block_pages(unsigned i, const struct slot *s, char **lo,
                        char **hi) {
  char *area = area_of(i);
  if (s->right) {
    *lo = (char *)page_floor((uintptr_t)s->block);
    *hi = area + pool.area;
  } else {
    *lo = area;
    *hi = (char *)page_ceil((uintptr_t)s->block + s->size);
  }
}

static unsigned capture(void **stack) {
  int n = backtrace(stack, STACK_DEPTH);
  return n > 0 ? (unsigned)n : 0;
}

void *hak_os_guard_alloc(size_t size, size_t align) {
  if (busy || size > pool.max || align > HAK_PAGE_SIZE)
    return NULL;
  if (align < 16)
    align = 16;
  size_t span = (size + align - 1) & ~(align - 1);
  busy = true;
  pthread_mutex_lock(&lock);
  if (!reserve_locked() || pool.count == 0 || span > pool.area) {
    pthread_mutex_unlock(&lock);
    busy = false;
    return NULL;
  }
  unsigned i = pool.ring[pool.head];
  pool.head = (pool.head + 1) % pool.nslots;
  pool.count--;
  pool.live++;
  pool.rng ^= pool.rng << 13;
  pool.rng ^= pool.rng >> 7;
  pool.rng ^= pool.rng << 17;
  /* A 0-byte block sits at its slot's start with no page made accessible:
   * any access to it faults. */
  bool right = size > 0 && (pool.rng & 1);
  pthread_mutex_unlock(&lock);

  struct slot *s = &pool.slot[i];
  char *area = area_of(i);
  s->right = right;
  s->size = size;
  s->block = right ? area + pool.area - span : area;
  char *lo, *hi;
  block_pages(i, s, &lo, &hi);
  if (hi > lo && mprotect(lo, (size_t)(hi - lo), PROT_READ | PROT_WRITE)) {
    /* The kernel refused (out of map entries or memory): the slot goes
     * back untouched, the caller takes a plain block. */
    pthread_mutex_lock(&lock);
    pool.head = (pool.head + pool.nslots - 1) % pool.nslots;
    pool.ring[pool.head] = i;
    pool.count++;
    pool.live--;
    pthread_mutex_unlock(&lock);
    busy = false;
    return NULL;
  }
  canary_fill(lo, s->block);
  canary_fill(s->block + size, hi);
  s->alloc_depth = (uint8_t)capture(s->alloc_stack);
  s->free_depth = 0;
  __atomic_store_n(&s->state, SLOT_LIVE, __ATOMIC_RELEASE);
  busy = false;
  return s->block;
}

/* The slot whose block area holds p, or -1 (a guard page, or outside). */
static long slot_of(const void *p) {
  char *base = __atomic_load_n(&pool.base, __ATOMIC_ACQUIRE);
  if (!base || (const char *)p < base ||
      (const char *)p >= base + (size_t)pool.nslots * pool.stride)
    return -1;
  size_t off = (size_t)((const char *)p - base);
  if (off % pool.stride < HAK_PAGE_SIZE)
    return -1;
  return (long)(off / pool.stride);
}

/* ---- reports ------------------------------------------------------------- */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  char msg[320];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n > 0)
    hak_os_write_stderr(msg,
                        (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
}

static void print_stack(const char *what, void *const *stack, unsigned n) {
  say("hakmem: %s:\n", what);
  if (n == 0)
    say("    (no stack recorded)\n");
  else
    backtrace_symbols_fd(stack, (int)n, 2);
}

/* Where a lies against block [b, b + size), in words. */
static void describe(char *out, size_t n, const char *a, const struct slot *s,
                     bool was_freed) {
  const char *b = s->block, *end = s->block + s->size;
  const char *freed = was_freed ? "freed " : "";
  size_t d = a < b      ? (size_t)(b - a)
             : a >= end ? (size_t)(a - end)
                        : (size_t)(a - b);
  const char *rel = a < b      ? "before the start of"
                    : a >= end ? "past the end of"
                               : "into";
  snprintf(out, n, "%zu byte%s %s a %s%zu-byte block at %p", d,
           d == 1 ? "" : "s", rel, freed, s->size, (const void *)b);
}

/* The report: kind (access), address, where, block; then the stacks. */
static void report(const char *kind, const char *access, const char *a,
                   const struct slot *s, bool freed) {
  char where[160];
  describe(where, sizeof where, a, s, freed);
  if (access)
    say("hakmem: %s (%s) at %p: %s\n", kind, access, (const void *)a, where);
  else
    say("hakmem: %s at %p: %s\n", kind, (const void *)a, where);
  print_stack("the block was allocated at", s->alloc_stack, s->alloc_depth);
  if (freed)
    print_stack("and freed at", s->free_stack, s->free_depth);
}

/* The slot a fault at a (in the pool) is about: the block nearest to a of
 * the slot whose area holds a, or of the two around the guard page that
 * does; NULL if neither ever held a block. */
static struct slot *slot_near(const char *a) {
  size_t off = (size_t)(a - pool.base);
  size_t i = off / pool.stride;
  long cand[2] = {-1, -1};
  if (off % pool.stride < HAK_PAGE_SIZE) {
    cand[0] = (long)i - 1; /* its area ends at this guard */
    cand[1] = (long)i;     /* its area starts after it */
  } else {
    cand[0] = (long)i;
  }
  struct slot *best = NULL;
  size_t best_d = SIZE_MAX;
  for (int k = 0; k < 2; k++) {
    if (cand[k] < 0 || cand[k] >= (long)pool.nslots)
      continue;
    struct slot *s = &pool.slot[cand[k]];
    if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) == SLOT_UNUSED)
      continue;
    const char *b = s->block, *e = s->block + s->size;
    size_t d = a < b ? (size_t)(b - a) : a >= e ? (size_t)(a - e) : 0;
    if (d < best_d) {
      best = s;
      best_d = d;
    }
  }
  return best;
}

static void restore_default(int sig) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, NULL);
}

/* A fault that is not the pool's goes to the handler installed before
 * hakmem's; with none (or SIG_IGN, which the kernel does not honour for a
 * fault either), the default action kills the process. */
static void chain(int sig, siginfo_t *si, void *uc) {
  const struct sigaction *old = sig == SIGBUS ? &old_bus : &old_segv;
  if (old->sa_flags & SA_SIGINFO) {
    old->sa_sigaction(sig, si, uc);
    return;
  }
  if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
    old->sa_handler(sig);
    return;
  }
  restore_default(sig);
  if (si->si_code <= 0)
    raise(sig); /* sent, not a fault: returning would not repeat it */
  /* A fault: returning runs the instruction again, which now kills. */
}

static void on_fault(int sig, siginfo_t *si, void *uc) {
  const char *a = si->si_addr;
  const char *base = __atomic_load_n(&pool.base, __ATOMIC_ACQUIRE);
  if (si->si_code <= 0 || !base || a < base || a >= base + pool.bytes) {
    chain(sig, si, uc);
    return;
  }
  const char *access = "access";
#if defined(__x86_64__)
  /* The page-fault error code: bit 1 set for a write. */
  access =
      ((ucontext_t *)uc)->uc_mcontext.gregs[REG_ERR] & 2 ? "write" : "read";
#endif
  struct slot *s = slot_near(a);
  if (!s) {
    say("hakmem: invalid %s at %p: in the guarded pool, near no block\n",
        access, (const void *)a);
  } else {
    uint8_t state = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
    const char *kind = state != SLOT_LIVE ? "use after free"
                       : a < s->block     ? "buffer underflow"
                                          : "buffer overflow";
    report(kind, access, a, s, state != SLOT_LIVE);
  }
  /* Die by the signal itself: with the default action restored, returning
   * runs the faulting instruction again. */
  restore_default(sig);
}

/* ---- free ---------------------------------------------------------------- */

static __attribute__((noreturn)) void misuse(const char *func, const char *what,
                                             const void *p) {
  say("hakmem: %s(): %s: %p\n", func, what, p);
  hak_os_abort();
}

/* The live slot of block p, or a misuse report.  With take, it becomes
 * SLOT_RELEASING (its free has begun). */
static struct slot *live_slot(const void *p, const char *func, bool take,
                              long *index) {
  long i = slot_of(p);
  if (i < 0)
    misuse(func, "invalid pointer (not a guarded block)", p);
  struct slot *s = &pool.slot[i];
  pthread_mutex_lock(&lock);
  uint8_t state = s->state;
  bool start = s->block == p;
  if (state == SLOT_LIVE && start && take)
    s->state = SLOT_RELEASING;
  pthread_mutex_unlock(&lock);
  if (state != SLOT_LIVE || !start) {
    if (start && (state == SLOT_RELEASING || state == SLOT_FREED))
      misuse(func, "double free (of a guarded block)", p);
    misuse(func, "invalid pointer (not the start of a guarded block)", p);
  }
  *index = i;
  return s;
}

void hak_os_guard_free(void *p, const char *func) {
  long i;
  struct slot *s = live_slot(p, func, true, &i);
  bool was_busy = busy;
  busy = true;
  char *lo, *hi;
  block_pages((unsigned)i, s, &lo, &hi);
  char *bad = canary_find(lo, s->block);
  if (!bad)
    bad = canary_find(s->block + s->size, hi);
  if (bad) {
    void *here[STACK_DEPTH];
    unsigned n = capture(here);
    report(bad < s->block ? "buffer underflow (canary damaged, found at free)"
                          : "buffer overflow (canary damaged, found at free)",
           NULL, bad, s, false);
    print_stack("found by the free at", here, n);
    hak_os_abort();
  }
  s->free_depth = (uint8_t)capture(s->free_stack);
  if (hi > lo) {
    /* One call gives the pages back and makes them inaccessible: a fresh
     * PROT_NONE mapping in their place.  If the kernel refuses, they are
     * at least made inaccessible. */
    HAK_STAT_SYS(SYS_MMAP, 1);
    if (mmap(lo, (size_t)(hi - lo), PROT_NONE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1,
             0) == MAP_FAILED)
      mprotect(lo, (size_t)(hi - lo), PROT_NONE);
  }
  pthread_mutex_lock(&lock);
  __atomic_store_n(&s->state, SLOT_FREED, __ATOMIC_RELEASE);
  pool.ring[(pool.head + pool.count) % pool.nslots] = (unsigned)i;
  pool.count++;
  pool.live--;
  pthread_mutex_unlock(&lock);
  busy = was_busy;
}

size_t hak_os_guard_usable_size(const void *p, const char *func) {
  long i;
  return live_slot(p, func, false, &i)->size;
}

int hak_os_guard_side(const void *p) {
  long i = slot_of(p);
  if (i < 0)
    return 0;
  const struct slot *s = &pool.slot[i];
  if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SLOT_LIVE ||
      s->block != p)
    return 0;
  return s->right ? 2 : 1;
}

struct hak_os_guard_info hak_os_guard_info(void) {
  pthread_mutex_lock(&lock);
  struct hak_os_guard_info info = {pool.base ? pool.nslots : 0, pool.live,
                                   pool.base ? pool.area : 0};
  pthread_mutex_unlock(&lock);
  return info;
}

/* ---- configuration and fork -------------------------------------------- */

void hak_os_guard_configure(const struct hak_os_guard_config *cfg) {
  if (pool.base || cfg->sample == 0 || cfg->slots == 0)
    return; /* off, or already running: the pool's shape is fixed */
  pool.nslots = cfg->slots;
  pool.max = cfg->max;
  /* backtrace() loads the unwinder on its first call, which allocates:
   * done now, with sampling still off, so that a sampled allocation never
   * recurses into the pool. */
  void *warm[2];
  busy = true;
  (void)backtrace(warm, 2);
  busy = false;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &old_segv);
  sigaction(SIGBUS, &sa, &old_bus);
  __atomic_store_n(&hak_os_guard_rate, cfg->sample, __ATOMIC_RELEASE);
}

void hak_os_guard_fork_prepare(void) { pthread_mutex_lock(&lock); }
/* Parent and child alike: the child's only thread is the one that locked. */
void hak_os_guard_fork_parent(void) { pthread_mutex_unlock(&lock); }

#else /* the fast build: no pool */

unsigned hak_os_guard_rate;
__thread unsigned hak_os_guard_countdown
    __attribute__((tls_model("initial-exec")));
bool hak_os_guard_sample_slow(void) { return false; }
void hak_os_guard_configure(const struct hak_os_guard_config *cfg) {
  (void)cfg;
}
void *hak_os_guard_alloc(size_t size, size_t align) {
  (void)size;
  (void)align;
  return NULL;
}
void hak_os_guard_free(void *p, const char *func) {
  (void)func;
  (void)p;
  hak_os_abort(); /* unreachable: no region is ever GUARDED */
}
size_t hak_os_guard_usable_size(const void *p, const char *func) {
  (void)p;
  (void)func;
  hak_os_abort();
}
int hak_os_guard_side(const void *p) {
  (void)p;
  return 0;
}
struct hak_os_guard_info hak_os_guard_info(void) {
  return (struct hak_os_guard_info){0, 0, 0};
}
void hak_os_guard_fork_prepare(void) {}
void hak_os_guard_fork_parent(void) {}

#endif
