/* SPDX-License-Identifier: MIT */
/* fuzz_alloc.c - a libFuzzer target: the input is a program of allocator
 * calls, run against a shadow model of every block's contents.
 *
 * Each input is read as a sequence of operations on 32 slots: malloc,
 * calloc, realloc (to NULL, to 0, across tiers), free, free_sized,
 * posix_memalign / aligned_alloc / memalign with any alignment (valid or
 * not), valloc / pvalloc, reallocarray (overflowing or not), sizes that no
 * allocator can give, a helper thread that frees blocks handed to it (remote
 * frees, in parallel with the main thread's own work) or allocates blocks
 * the main thread keeps, and a restart of that helper (its slabs are handed
 * over while its blocks live on).  Sizes are drawn around the tier
 * boundaries (1 KiB, 256 KiB, 4 MiB - 4 KiB) as often as inside the tiers.
 *
 * The shadow model knows each live block's size and pattern seed (or that
 * it is calloc's and must be zero).  Every operation on a block checks its
 * contents first; realloc checks the kept prefix; every answer is checked
 * against what hakmem.h promises (NULL and ENOMEM for impossible sizes,
 * EINVAL for bad alignments with errno untouched by posix_memalign, the
 * alignment asked for, a usable size at least the size asked for, a unique
 * pointer for malloc(0)).  A wrong answer or a changed byte aborts with a
 * message, which libFuzzer reports as a crash and saves the input.  All
 * blocks are checked and freed at the end of each input, so inputs are
 * independent.
 *
 * Built two ways (test/fuzz/CMakeLists.txt): with clang's libFuzzer
 * (run_fuzz.sh), and with any compiler plus replay_main.c, which runs the
 * committed corpus as a regression test.
 */
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hakmem.h"
#include "test_pattern.h" /* test/common: tier limits, pattern_byte */

#define SLOTS 32
#define LIVE_LIMIT ((size_t)192 * MiB) /* beyond it, allocations are skipped */
#define FULL_BYTES ((size_t)16 * KiB)  /* bigger blocks are checked sparsely */

/* ---- reporting ------------------------------------------------------------ */

static unsigned long op_number;

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fuzz_alloc: operation %lu: ", op_number);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  abort();
}

/* ---- patterns ------------------------------------------------------------- */

/* The pattern is the tests' (pattern_byte); which bytes of a block of n
 * bytes are filled and checked is the target's own: all of them up to
 * FULL_BYTES; beyond, the first 64 of each page (of every 16th page above
 * 1 MiB: touching every page of huge blocks would cost most of the run
 * time) and the last 64.  Returns the one after i. */
static inline size_t next_checked(size_t i, size_t n) {
  i++;
  size_t step = n > MiB ? 16 * PAGE : PAGE;
  if (n <= FULL_BYTES || i >= n - 64 || (i & (step - 1)) < 64)
    return i;
  size_t next = (i | (step - 1)) + 1;
  return next < n - 64 ? next : n - 64;
}

static void fill(unsigned char *p, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; i = next_checked(i, n))
    p[i] = pattern_byte(seed, i);
}

/* First wrong byte among the first n of a block filled at `filled` bytes
 * (n <= filled: what a realloc kept), or n. */
static size_t mismatch(const unsigned char *p, size_t n, size_t filled,
                       uint32_t seed) {
  for (size_t i = 0; i < n; i = next_checked(i, filled))
    if (p[i] != pattern_byte(seed, i))
      return i;
  return n;
}

static size_t nonzero(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i = next_checked(i, n))
    if (p[i])
      return i;
  return n;
}

/* ---- the shadow model ---------------------------------------------------- */

struct slot {
  unsigned char *p;
  size_t size;
  uint32_t seed;
  bool zero; /* from calloc, not written since: must read as zeroes */
};

static struct slot slots[SLOTS];
static size_t live_bytes;
static uint32_t next_seed = 1;

static void check_slot(const struct slot *s, const char *when) {
  if (!s->p)
    return;
  if (s->zero) {
    size_t bad = nonzero(s->p, s->size);
    if (bad != s->size)
      die("%s: calloc block %p of %zu bytes: byte %zu is 0x%02x", when,
          (void *)s->p, s->size, bad, s->p[bad]);
    return;
  }
  size_t bad = mismatch(s->p, s->size, s->size, s->seed);
  if (bad != s->size)
    die("%s: block %p of %zu bytes: byte %zu is 0x%02x, not 0x%02x", when,
        (void *)s->p, s->size, bad, s->p[bad], pattern_byte(s->seed, bad));
}

/* A block handed out must not be one that another slot holds. */
static void check_unique(const void *p, const struct slot *s, const char *what) {
  for (unsigned i = 0; i < SLOTS; i++)
    if (slots[i].p == p && &slots[i] != s)
      die("%s = %p, which slot %u still holds", what, p, i);
}

/* A new block from an allocator: checks the common promises, takes it. */
static void take(struct slot *s, void *p, size_t n, size_t align, bool zero,
                 const char *what) {
  if (p == NULL)
    die("%s(%zu) returned NULL (errno %d)", what, n, errno);
  if ((uintptr_t)p & (align - 1))
    die("%s(%zu) = %p: not aligned to %zu", what, n, p, align);
  size_t u = hak_usable_size(p);
  if (u < n)
    die("%s(%zu) = %p: usable size %zu", what, n, p, u);
  check_unique(p, s, what);
  s->p = p;
  s->size = n;
  s->zero = zero;
  s->seed = next_seed++;
  live_bytes += n;
  if (zero) {
    check_slot(s, what);
    if (s->seed & 1) { /* half stay zero until they are next looked at */
      s->zero = false;
      fill(s->p, n, s->seed);
    }
  } else {
    fill(s->p, n, s->seed);
  }
}

static void drop(struct slot *s) {
  live_bytes -= s->size;
  s->p = NULL;
  s->size = 0;
}

/* ---- the input ----------------------------------------------------------- */

struct input {
  const uint8_t *d;
  size_t n;
};

static unsigned byte(struct input *in) {
  if (!in->n)
    return 0;
  in->n--;
  return *in->d++;
}

static unsigned word(struct input *in) { return byte(in) | byte(in) << 8; }

/* Sizes: near the boundaries as often as inside the tiers. */
static size_t size_of(struct input *in) {
  unsigned kind = byte(in) % 10;
  unsigned w = word(in);
  switch (kind) {
  case 0:
    return w % 33; /* 0 .. 32 */
  case 1:
  case 2:
    return 1 + w % TINY_MAX;
  case 3:
    return TINY_MAX - 16 + w % 33; /* tiny / mid */
  case 4:
    return TINY_MAX + 1 + (size_t)w * 4 % (MID_MAX - TINY_MAX);
  case 5:
    return MID_MAX - 32 + w % 65; /* mid / large */
  case 6:
    return MID_MAX + 1 + (size_t)w * 61 % (SUPERSLAB - MID_MAX);
  case 7:
    return SUPERSLAB - 2 * PAGE + w % (3 * PAGE); /* large / huge */
  case 8: /* a mid class boundary: 1280, 1536, ... 262144, +-1 */
  {
    unsigned cls = w % 32, k = cls / 4 + 10;
    size_t c = (size_t)(cls % 4 + 5) << (k - 2);
    return c - 1 + (w >> 5) % 3;
  }
  default:
    return SUPERSLAB + (size_t)w * 131 % (8 * MiB); /* huge */
  }
}

/* Alignments: every power of two to 16 MiB, and values that are not. */
static size_t align_of(struct input *in) {
  unsigned b = byte(in);
  if (b < 200)
    return (size_t)1 << (b % 25);
  static const size_t odd[] = {0,  3,   5,    12,  24,           48,
                               100, 4097, 65535, (size_t)1 << 63, SIZE_MAX};
  return odd[b % (sizeof odd / sizeof odd[0])];
}

static bool power_of_two(size_t x) { return x && !(x & (x - 1)); }

static bool room_for(size_t n) { return live_bytes + n <= LIVE_LIMIT; }

/* ---- the helper thread: remote frees and blocks of another thread -------- */

enum req_kind { REQ_FREE, REQ_ALLOC, REQ_STOP };
struct request {
  enum req_kind kind;
  struct slot block; /* REQ_FREE: what to check and free */
  size_t size;       /* REQ_ALLOC */
};

#define QCAP 16
static struct {
  pthread_mutex_t lock;
  pthread_cond_t more, done;
  struct request q[QCAP];
  unsigned head, count, busy;
  void *allocated; /* answer to REQ_ALLOC */
  bool running;
  pthread_t thread;
} helper = {.lock = PTHREAD_MUTEX_INITIALIZER,
            .more = PTHREAD_COND_INITIALIZER,
            .done = PTHREAD_COND_INITIALIZER};

static void *helper_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&helper.lock);
  for (;;) {
    while (helper.count == 0)
      pthread_cond_wait(&helper.more, &helper.lock);
    struct request r = helper.q[helper.head];
    helper.head = (helper.head + 1) % QCAP;
    helper.count--;
    helper.busy = 1;
    pthread_mutex_unlock(&helper.lock);
    void *answer = NULL;
    if (r.kind == REQ_FREE) {
      check_slot(&r.block, "freed by the helper thread");
      hak_free(r.block.p);
    } else if (r.kind == REQ_ALLOC) {
      answer = hak_malloc(r.size);
    }
    pthread_mutex_lock(&helper.lock);
    helper.busy = 0;
    if (r.kind == REQ_ALLOC)
      helper.allocated = answer;
    pthread_cond_broadcast(&helper.done);
    if (r.kind == REQ_STOP)
      break;
  }
  pthread_mutex_unlock(&helper.lock);
  return NULL;
}

static void helper_start(void) {
  if (helper.running)
    return;
  if (pthread_create(&helper.thread, NULL, helper_main, NULL))
    die("pthread_create failed");
  helper.running = true;
}

static void helper_send(struct request r) {
  helper_start();
  pthread_mutex_lock(&helper.lock);
  while (helper.count == QCAP)
    pthread_cond_wait(&helper.done, &helper.lock);
  helper.q[(helper.head + helper.count) % QCAP] = r;
  helper.count++;
  pthread_cond_signal(&helper.more);
  pthread_mutex_unlock(&helper.lock);
}

/* Waits until the helper has done everything sent to it. */
static void helper_drain(void) {
  if (!helper.running)
    return;
  pthread_mutex_lock(&helper.lock);
  while (helper.count || helper.busy)
    pthread_cond_wait(&helper.done, &helper.lock);
  pthread_mutex_unlock(&helper.lock);
}

static void *helper_alloc(size_t n) {
  helper_send((struct request){.kind = REQ_ALLOC, .size = n});
  helper_drain();
  return helper.allocated;
}

/* Ends the helper thread; the next request starts a new one. */
static void helper_restart(void) {
  if (!helper.running)
    return;
  helper_send((struct request){.kind = REQ_STOP});
  pthread_join(helper.thread, NULL);
  helper.running = false;
}

/* ---- operations ---------------------------------------------------------- */

static void op_free(struct slot *s, bool sized) {
  check_slot(s, "free");
  if (sized)
    hak_free_sized(s->p, s->size);
  else
    hak_free(s->p); /* free(NULL) when the slot is empty */
  if (s->p)
    drop(s);
}

static void op_realloc(struct slot *s, size_t n, bool array, unsigned count) {
  check_slot(s, "realloc");
  if (!room_for(n))
    return;
  void *q;
  if (array) {
    /* reallocarray(p, count, n / count): the same bytes, or an overflow. */
    size_t c = count ? count : 1, each = n / c;
    n = c * each;
    q = hak_reallocarray(s->p, c, each);
  } else {
    q = hak_realloc(s->p, n);
  }
  if (n == 0 && s->p) { /* realloc(p, 0): frees p, returns NULL */
    if (q != NULL)
      die("realloc(%p, 0) returned %p, not NULL", (void *)s->p, q);
    drop(s);
    return;
  }
  if (q == NULL)
    die("realloc(%p, %zu) returned NULL (errno %d)", (void *)s->p, n, errno);
  check_unique(q, s, "realloc");
  if ((uintptr_t)q & 15)
    die("realloc to %zu: %p is not 16-byte aligned", n, q);
  if (hak_usable_size(q) < n)
    die("realloc to %zu: usable size %zu", n, hak_usable_size(q));
  if (!s->p) { /* realloc(NULL, n) is malloc(n) */
    s->p = NULL;
    take(s, q, n, 16, false, "realloc(NULL)");
    return;
  }
  size_t keep = s->size < n ? s->size : n;
  size_t bad = s->zero ? nonzero(q, keep) : mismatch(q, keep, s->size, s->seed);
  if (bad != keep)
    die("realloc %zu -> %zu (%p -> %p): byte %zu of the %zu kept changed",
        s->size, n, (void *)s->p, q, bad, keep);
  live_bytes = live_bytes - s->size + n;
  s->p = q;
  s->size = n;
  s->zero = false;
  s->seed = next_seed++;
  fill(s->p, n, s->seed);
}

/* Alignments no block can have (beyond the address space): ENOMEM. */
#define ALIGN_IMPOSSIBLE ((size_t)1 << 47)

static void op_aligned(struct slot *s, unsigned how, size_t align, size_t n) {
  op_free(s, false);
  bool impossible = align >= ALIGN_IMPOSSIBLE && align <= SIZE_MAX / 2 + 1;
  if (!impossible && !room_for(n + (align < SUPERSLAB ? 0 : align)))
    return;
  if (how == 0) { /* posix_memalign */
    void *out = (void *)&out;
    errno = 4321;
    int r = hak_posix_memalign(&out, align, n);
    if (errno != 4321)
      die("posix_memalign(%zu, %zu) changed errno to %d", align, n, errno);
    bool valid = power_of_two(align) && align % sizeof(void *) == 0;
    if (!valid) {
      if (r != EINVAL || out != (void *)&out)
        die("posix_memalign(%zu, %zu) = %d, not EINVAL", align, n, r);
      return;
    }
    if (impossible) {
      if (r != ENOMEM || out != (void *)&out)
        die("posix_memalign(%zu, %zu) = %d, not ENOMEM", align, n, r);
      return;
    }
    if (r != 0)
      die("posix_memalign(%zu, %zu) = %d", align, n, r);
    take(s, out, n, align, false, "posix_memalign");
  } else if (how == 1) { /* aligned_alloc */
    errno = 0;
    void *p = hak_aligned_alloc(align, n);
    if (!power_of_two(align)) {
      if (p != NULL || errno != EINVAL)
        die("aligned_alloc(%zu, %zu) = %p, errno %d: not NULL, EINVAL", align,
            n, p, errno);
      return;
    }
    if (impossible) {
      if (p != NULL || errno != ENOMEM)
        die("aligned_alloc(%zu, %zu) = %p, errno %d: not NULL, ENOMEM", align,
            n, p, errno);
      return;
    }
    take(s, p, n, align, false, "aligned_alloc");
  } else { /* memalign: glibc's rules */
    errno = 0;
    void *p = hak_memalign(align, n);
    if (align > SIZE_MAX / 2 + 1) {
      if (p != NULL || errno != EINVAL)
        die("memalign(%zu, %zu) = %p, errno %d: not NULL, EINVAL", align, n,
            p, errno);
      return;
    }
    size_t a = align;
    if (!power_of_two(a))
      a = a < 16 ? 16 : (size_t)1 << (64 - __builtin_clzll(a));
    if (a >= ALIGN_IMPOSSIBLE) {
      if (p != NULL || errno != ENOMEM)
        die("memalign(%zu, %zu) = %p, errno %d: not NULL, ENOMEM", align, n,
            p, errno);
      return;
    }
    take(s, p, n, a < 16 ? 16 : a, false, "memalign");
  }
}

/* Sizes no allocator can give: NULL, ENOMEM, and nothing else changes. */
static void op_impossible(struct slot *s, unsigned which) {
  static const size_t huge[] = {SIZE_MAX, SIZE_MAX - PAGE, (size_t)PTRDIFF_MAX + 1,
                                (size_t)1 << 62, (size_t)1 << 48};
  size_t n = huge[which % 5];
  void *p;
  errno = 0;
  switch ((which / 5) % 6) {
  case 0:
    p = hak_malloc(n);
    break;
  case 1:
    p = hak_calloc(n / 2 + 1, 2 + which % 7); /* overflows */
    break;
  case 2:
    p = hak_calloc(1, n);
    break;
  case 3:
    p = hak_realloc(s->p, n);
    break;
  case 4:
    p = hak_reallocarray(s->p, n / 3 + 1, 5);
    break;
  default:
    p = hak_aligned_alloc(64, n);
    break;
  }
  if (p != NULL || errno != ENOMEM)
    die("an allocation of %zu bytes (case %u) = %p, errno %d: not NULL, ENOMEM",
        n, which, p, errno);
  check_slot(s, "after an impossible realloc"); /* the old block is intact */
}

static void run(struct input *in) {
  while (in->n) {
    op_number++;
    unsigned op = byte(in);
    struct slot *s = &slots[byte(in) % SLOTS];
    switch (op % 17) {
    case 0:
    case 1: { /* malloc */
      size_t n = size_of(in);
      op_free(s, false);
      if (room_for(n))
        take(s, hak_malloc(n), n, 16, false, "malloc");
      break;
    }
    case 2: { /* calloc */
      size_t n = size_of(in);
      unsigned c = 1 + byte(in) % 8;
      op_free(s, false);
      if (room_for(n))
        take(s, hak_calloc(c, n / c), n / c * c, 16, true, "calloc");
      break;
    }
    case 3:
    case 4: /* realloc, including to 0 and from NULL */
      op_realloc(s, op & 32 ? 0 : size_of(in), false, 0);
      break;
    case 5:
      op_free(s, false);
      break;
    case 6:
      op_free(s, true);
      break;
    case 7: { /* the aligned allocators */
      unsigned how = byte(in) % 3;
      size_t align = align_of(in);
      op_aligned(s, how, align, size_of(in));
      break;
    }
    case 8: { /* valloc, pvalloc */
      size_t n = size_of(in);
      op_free(s, false);
      if (!room_for(n + PAGE))
        break;
      if (op & 64) {
        take(s, hak_valloc(n), n, PAGE, false, "valloc");
      } else {
        void *p = hak_pvalloc(n);
        size_t rounded = n ? (n + PAGE - 1) & ~(PAGE - 1) : PAGE;
        take(s, p, rounded, PAGE, false, "pvalloc"); /* all of it usable */
      }
      break;
    }
    case 9: /* reallocarray */
      op_realloc(s, size_of(in), true, byte(in));
      break;
    case 10: { /* the whole usable size is the caller's */
      if (!s->p)
        break;
      check_slot(s, "usable size");
      size_t u = hak_usable_size(s->p);
      if (u < s->size)
        die("usable size of %p is %zu < %zu", (void *)s->p, u, s->size);
      if (u > 2 * s->size + 64 * KiB || !room_for(u - s->size))
        break; /* keep the checks cheap */
      live_bytes += u - s->size;
      s->size = u;
      s->zero = false;
      s->seed = next_seed++;
      fill(s->p, u, s->seed);
      break;
    }
    case 11: /* hand the block to the helper thread, which frees it */
      if (s->p) {
        check_slot(s, "handed over");
        helper_send((struct request){.kind = REQ_FREE, .block = *s});
        drop(s);
      }
      break;
    case 12: { /* the helper allocates, the main thread keeps the block */
      size_t n = size_of(in);
      op_free(s, false);
      if (room_for(n))
        take(s, helper_alloc(n), n, 16, false, "malloc on the helper");
      break;
    }
    case 13: /* the helper ends; a new one starts on the next request */
      helper_restart();
      break;
    case 14: /* check every block */
      for (unsigned i = 0; i < SLOTS; i++)
        check_slot(&slots[i], "full check");
      break;
    case 15:
      op_impossible(s, byte(in));
      break;
    default: /* malloc(0): unique, freeable */
      op_free(s, false);
      take(s, hak_malloc(0), 0, 16, false, "malloc(0)");
      break;
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct input in = {data, size};
  run(&in);
  helper_drain();
  for (unsigned i = 0; i < SLOTS; i++) {
    check_slot(&slots[i], "end of input");
    hak_free(slots[i].p);
    slots[i] = (struct slot){0};
  }
  live_bytes = 0;
  return 0;
}
