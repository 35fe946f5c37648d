/* SPDX-License-Identifier: MIT */
/* stress_exhaustion.c - running out of address space for real.
 *
 * Each case runs in a forked child that lowers its RLIMIT_AS to what it
 * already uses plus HEADROOM, then allocates (one tier, or all of them, on
 * one thread or four) until the kernel refuses.  Asserted, in the child:
 *  - the refusal is NULL with errno ENOMEM, and comes (the limit is real);
 *  - once exhausted, every entry point that needs new memory refuses too:
 *    malloc and calloc of the size again, large and huge blocks, aligned
 *    allocation (posix_memalign returns ENOMEM and leaves errno alone), and
 *    realloc to a bigger tier (NULL, ENOMEM, the old block intact);
 *  - every block handed out before the refusal still holds its pattern;
 *  - after half the blocks are freed, as many can be allocated again, and
 *    after all are freed, blocks of every tier can be allocated and used;
 *  - after large (or huge) blocks filled the limit and were all freed, a
 *    block of most of the headroom can be allocated: the regions hakmem
 *    keeps in its caches (80 MiB of superslabs, 64 MiB of huge regions by
 *    default) go back to the kernel when it refuses a mapping.
 * The child reports on stderr and through its exit status; the parent
 * asserts status 0.  (test/api/test_oom does the same through libhak-os's
 * failure hook; this is the kernel's own limit.)
 *
 * Short mode: ~2 s in the release builds; the long mode repeats the mixed
 * cases with other seeds.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "stress.h"
#include "test_child.h"

#define HEADROOM ((size_t)192 * MiB)
#define MAX_BLOCKS (1u << 20)

struct block {
  char *p;
  size_t size;
};

/* Tracking arrays live in static storage, mapped before the limit is set
 * (the C library's malloc would run out too). */
static struct block blocks[MAX_BLOCKS];

/* ---- child side ---------------------------------------------------------- */

static char child_msg[400];
static int child_fail(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int child_fail(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(child_msg, sizeof child_msg, fmt, ap);
  va_end(ap);
  /* write(2): stdio would allocate, with no memory left. */
  size_t n = strlen(child_msg);
  child_msg[n++] = '\n';
  if (write(2, child_msg, n) < 0)
    code = 99;
  return code;
}

static size_t vm_size(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long pages = 0;
  if (f) {
    if (fscanf(f, "%lu", &pages) != 1)
      pages = 0;
    fclose(f);
  }
  return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

static int limit_address_space(size_t headroom) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_AS, &rl) != 0)
    return child_fail(2, "getrlimit: %d", errno);
  size_t vm = vm_size();
  if (vm == 0)
    return child_fail(2, "cannot read /proc/self/statm");
  rl.rlim_cur = vm + headroom;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max)
    rl.rlim_cur = rl.rlim_max;
  if (setrlimit(RLIMIT_AS, &rl) != 0)
    return child_fail(2, "setrlimit: %d", errno);
  return 0;
}

/* Fills a block: its first and last 64 bytes, and the first 64 of each
 * page, with a pattern of its index (cheap enough for a million blocks). */
static void mark(char *p, size_t n, uint32_t i) {
  for (size_t off = 0; off < n; off += 4096)
    for (size_t k = off; k < n && k < off + 64; k++)
      p[k] = (char)pattern_byte(i, k);
  for (size_t k = n > 64 ? n - 64 : 0; k < n; k++)
    p[k] = (char)pattern_byte(i, k);
}

static bool marked(const char *p, size_t n, uint32_t i) {
  for (size_t off = 0; off < n; off += 4096)
    for (size_t k = off; k < n && k < off + 64; k++)
      if (p[k] != (char)pattern_byte(i, k))
        return false;
  for (size_t k = n > 64 ? n - 64 : 0; k < n; k++)
    if (p[k] != (char)pattern_byte(i, k))
      return false;
  return true;
}

typedef size_t (*size_fn)(uint64_t *rng);

static size_t tiny_sizes(uint64_t *rng) { return 100 + rng_below(rng, 925); }
static size_t mid_sizes(uint64_t *rng) {
  unsigned shift = 10 + (unsigned)rng_below(rng, 8);
  size_t lo = (size_t)1 << shift;
  size_t n = lo + 1 + rng_below(rng, lo);
  return n > MID_MAX ? MID_MAX : n;
}
static size_t large_sizes(uint64_t *rng) {
  return MID_MAX + 1 + rng_below(rng, SUPERSLAB - PAGE - MID_MAX);
}
static size_t huge_sizes(uint64_t *rng) {
  return SUPERSLAB + rng_below(rng, 20 * MiB);
}
static size_t mixed_sizes(uint64_t *rng) {
  unsigned r = (unsigned)rng_below(rng, 100);
  return r < 60 ? tiny_sizes(rng)
         : r < 90 ? mid_sizes(rng)
         : r < 98 ? large_sizes(rng)
                  : huge_sizes(rng);
}

/* One allocation through a varying entry point. */
static char *allocate(uint64_t *rng, size_t n, bool mixed_entry) {
  if (!mixed_entry)
    return hak_malloc(n);
  switch (rng_below(rng, 4)) {
  case 0:
    return hak_calloc(n, 1);
  case 1: {
    void *p = NULL;
    int r = hak_posix_memalign(&p, 64, n);
    if (r != 0)
      errno = r; /* it returns the error and leaves errno alone */
    return r == 0 ? p : NULL;
  }
  case 2:
    return hak_realloc(NULL, n);
  default:
    return hak_malloc(n);
  }
}

/* Allocates into blocks[from..] until the first NULL; returns the count
 * (or MAX_BLOCKS + 1 if the limit never bit). */
static size_t refused_size; /* the size of the allocation refused */
static unsigned fill_until_refused(unsigned from, size_fn sizes, uint64_t *rng,
                                   bool mixed_entry, int *err) {
  unsigned i = from;
  for (; i < MAX_BLOCKS; i++) {
    size_t n = sizes(rng);
    errno = 0;
    char *p = allocate(rng, n, mixed_entry);
    if (p == NULL) {
      *err = errno;
      refused_size = n;
      return i - from;
    }
    mark(p, n, i);
    blocks[i] = (struct block){p, n};
  }
  return MAX_BLOCKS + 1;
}

/* Everything that needs memory the process no longer has refuses: the size
 * refused again, and blocks that need a new region.  Tiny and mid
 * exhaustion end when a superslab (4 MiB, mapped with 4 MiB of slack to
 * align it) cannot be mapped, so every region refuses; large and huge
 * exhaustion end at a size S that no free pages of the large tier's arenas
 * could hold, and only blocks of S or more surely refuse (a smaller one may
 * still fit in what an arena has left). */
static int check_refusals(size_t exhausted_size) {
  errno = 0;
  void *again = hak_malloc(exhausted_size);
  if (again != NULL || errno != ENOMEM)
    return child_fail(20, "malloc(%zu) again: %p, errno %d (not NULL, ENOMEM)",
                      exhausted_size, again, errno);
  size_t fresh[] = {MID_MAX + 1, SUPERSLAB - PAGE, 8 * MiB, 64 * MiB};
  if (exhausted_size > MID_MAX) {
    fresh[0] = fresh[1] = exhausted_size;
    fresh[2] = exhausted_size * 2;
  }
  for (size_t i = 0; i < sizeof fresh / sizeof fresh[0]; i++) {
    errno = 0;
    void *p = hak_malloc(fresh[i]);
    if (p != NULL || errno != ENOMEM)
      return child_fail(21, "malloc(%zu) when exhausted: %p, errno %d (not "
                        "NULL, ENOMEM)", fresh[i], p, errno);
    errno = 0;
    p = hak_calloc(fresh[i] / 8 + 1, 8);
    if (p != NULL || errno != ENOMEM)
      return child_fail(22, "calloc(%zu, 8) when exhausted: %p, errno %d (not "
                        "NULL, ENOMEM)", fresh[i] / 8 + 1, p, errno);
    void *q = (void *)&q;
    errno = 1234;
    int r = hak_posix_memalign(&q, 4096, fresh[i]);
    if (r != ENOMEM || errno != 1234 || q != (void *)&q)
      return child_fail(23, "posix_memalign(4096, %zu) when exhausted: %d, "
                        "errno %d", fresh[i], r, errno);
    errno = 0;
    p = hak_aligned_alloc(8 * MiB, fresh[i]);
    if (p != NULL || errno != ENOMEM)
      return child_fail(24, "aligned_alloc(8 MiB, %zu) when exhausted: %p, "
                        "errno %d (not NULL, ENOMEM)", fresh[i], p, errno);
  }
  /* realloc of a live block to a size that needs a new region. */
  char *p = blocks[0].p;
  size_t big = exhausted_size > 40 * MiB ? exhausted_size : 40 * MiB;
  errno = 0;
  void *q = hak_realloc(p, big);
  if (q != NULL || errno != ENOMEM)
    return child_fail(25, "realloc(%p, %zu) when exhausted: %p, errno %d (not "
                      "NULL, ENOMEM)", (void *)p, big, q, errno);
  if (!marked(p, blocks[0].size, 0))
    return child_fail(26, "realloc refused, but block 0 changed");
  return 0;
}

static int check_all(unsigned count) {
  for (unsigned i = 0; i < count; i++)
    if (blocks[i].p && !marked(blocks[i].p, blocks[i].size, i))
      return child_fail(30, "block %u (%p, %zu bytes) changed", i,
                        (void *)blocks[i].p, blocks[i].size);
  return 0;
}

/* After everything is freed: blocks of every tier. */
static int check_recovered(void) {
  const size_t sizes[] = {1,           100,     1000,   5000, 100 * KiB,
                          MID_MAX + 1, 2 * MiB, 6 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    char *p = hak_malloc(sizes[i]);
    if (p == NULL)
      return child_fail(40, "after freeing everything, malloc(%zu) fails "
                        "(errno %d)", sizes[i], errno);
    mark(p, sizes[i], (uint32_t)i);
    if (!marked(p, sizes[i], (uint32_t)i))
      return child_fail(41, "after recovery, a block of %zu bytes does not "
                        "keep its contents", sizes[i]);
    hak_free(p);
  }
  return 0;
}

struct single_case {
  const char *name;
  size_fn sizes;
  bool mixed_entry;
};

static const struct single_case single_cases[] = {
    {"tiny", tiny_sizes, false},   {"mid", mid_sizes, false},
    {"large", large_sizes, false}, {"huge", huge_sizes, false},
    {"mixed tiers and entry points", mixed_sizes, true},
};

static int child_single(const struct single_case *c, uint64_t seed,
                        unsigned *out_count) {
  uint64_t rng = seed;
  /* Warm up: the tiers' lazy set-up (and the registry) before the limit. */
  hak_free(hak_malloc(10));
  hak_free(hak_malloc(5000));
  hak_free(hak_malloc(MiB));
  int st = limit_address_space(HEADROOM);
  if (st)
    return st;
  int err = 0;
  unsigned count = fill_until_refused(0, c->sizes, &rng, c->mixed_entry, &err);
  *out_count = count;
  if (count > MAX_BLOCKS)
    return child_fail(10, "%u blocks and the limit never refused", MAX_BLOCKS);
  if (count == 0)
    return child_fail(11, "the first allocation already failed");
  if (err != ENOMEM)
    return child_fail(12, "refused after %u blocks with errno %d, not ENOMEM",
                      count, err);
  if ((st = check_refusals(refused_size)) ||
      (st = check_all(count)))
    return st;
  /* Free every other block; that much can be taken again. */
  unsigned freed = 0;
  for (unsigned i = 0; i < count; i += 2) {
    hak_free(blocks[i].p);
    blocks[i].p = NULL;
    freed++;
  }
  unsigned again = 0;
  for (unsigned i = 0; i < count; i += 2) {
    char *p = hak_malloc(blocks[i].size); /* the size it had */
    if (p == NULL)
      break;
    blocks[i].p = p;
    mark(p, blocks[i].size, i);
    again++;
  }
  /* The last block or two may not fit: a new region is mapped with room to
   * align it, and freed superslabs may sit in the (mapped) cache. */
  if (again + 2 < freed && again * 10 < freed * 9)
    return child_fail(13, "freed %u of %u blocks, then only %u could be "
                      "allocated again", freed, count, again);
  if ((st = check_all(count)))
    return st;
  for (unsigned i = 0; i < count; i++) {
    hak_free(blocks[i].p);
    blocks[i].p = NULL;
  }
  return check_recovered();
}

/* ---- freed memory kept in caches is given back when the kernel refuses ---- */

/* The program fills the address space with large (or huge) blocks and
 * frees them all: hakmem then keeps up to 20 superslabs (80 MiB: 4 warm,
 * 16 decommitted but mapped) or 64 MiB of huge regions in its caches.  A
 * block bigger than what is left beside the caches must still be granted:
 * the program holds nothing, so the allocator has to give cached regions
 * back to the kernel and map again rather than answer ENOMEM (glibc grants
 * it: its freed mmap chunks are unmapped at once). */
static int child_cache_release(size_fn sizes, unsigned *out_count) {
  uint64_t rng = 0xcac4e;
  hak_free(hak_malloc(10));
  int st = limit_address_space(HEADROOM);
  if (st)
    return st;
  int err = 0;
  unsigned count = fill_until_refused(0, sizes, &rng, false, &err);
  *out_count = count;
  if (count == 0 || count > MAX_BLOCKS || err != ENOMEM)
    return child_fail(60, "filling: %u blocks, errno %d", count, err);
  for (unsigned i = 0; i < count; i++) {
    if (!marked(blocks[i].p, blocks[i].size, i))
      return child_fail(61, "block %u changed", i);
    hak_free(blocks[i].p);
    blocks[i].p = NULL;
  }
  size_t big = HEADROOM - 48 * MiB;
  char *p = hak_malloc(big);
  if (p == NULL)
    return child_fail(62, "every block freed, then malloc(%zu MiB) fails with "
                      "errno %d: the freed regions stay mapped in hakmem's "
                      "caches when the kernel refuses a mapping", big >> 20,
                      errno);
  mark(p, big, 7);
  if (!marked(p, big, 7))
    return child_fail(63, "the big block does not keep its contents");
  hak_free(p);
  return check_recovered();
}

/* ---- four threads exhausting together, freeing each other's blocks ------- */

#define THREADS 4
static pthread_barrier_t barrier;
struct thread_arg {
  unsigned index, first, count;
  int err;
  int status;
};
static struct thread_arg targs[THREADS];
#define PER_THREAD (MAX_BLOCKS / THREADS)

static void *exhaust_thread(void *arg) {
  struct thread_arg *a = arg;
  uint64_t rng = 0xe4a + a->index;
  pthread_barrier_wait(&barrier); /* the limit is set */
  a->first = a->index * PER_THREAD;
  unsigned n = 0;
  for (; n < PER_THREAD; n++) {
    size_t size = mixed_sizes(&rng);
    char *p = hak_malloc(size);
    if (p == NULL) {
      a->err = errno;
      break;
    }
    mark(p, size, a->first + n);
    blocks[a->first + n] = (struct block){p, size};
  }
  a->count = n;
  pthread_barrier_wait(&barrier); /* all exhausted */
  /* Check and free the next thread's blocks (remote frees). */
  struct thread_arg *b = &targs[(a->index + 1) % THREADS];
  for (unsigned i = 0; i < b->count; i++) {
    struct block *bl = &blocks[b->first + i];
    if (!marked(bl->p, bl->size, b->first + i)) {
      a->status = 30;
      break;
    }
    hak_free(bl->p);
    bl->p = NULL;
  }
  pthread_barrier_wait(&barrier); /* all freed */
  /* Allocate again, a little, and check. */
  for (unsigned i = 0; i < 2000 && !a->status; i++) {
    size_t size = mixed_sizes(&rng) % (64 * KiB) + 1;
    char *p = hak_malloc(size);
    if (p == NULL) {
      a->status = 31;
      break;
    }
    mark(p, size, i);
    if (!marked(p, size, i))
      a->status = 32;
    hak_free(p);
  }
  return NULL;
}

static int child_threads(unsigned *out_count) {
  pthread_barrier_init(&barrier, NULL, THREADS + 1);
  pthread_t th[THREADS];
  for (unsigned i = 0; i < THREADS; i++) {
    targs[i] = (struct thread_arg){.index = i};
    if (pthread_create(&th[i], NULL, exhaust_thread, &targs[i]))
      return child_fail(50, "pthread_create");
  }
  int st = limit_address_space(HEADROOM);
  pthread_barrier_wait(&barrier);
  if (st)
    return st;
  pthread_barrier_wait(&barrier);
  unsigned total = 0;
  for (unsigned i = 0; i < THREADS; i++) {
    total += targs[i].count;
    if (targs[i].count == PER_THREAD)
      return child_fail(51, "thread %u: the limit never refused", i);
  }
  *out_count = total;
  /* At least one thread hit the limit; whoever did saw ENOMEM. */
  for (unsigned i = 0; i < THREADS; i++)
    if (targs[i].err != ENOMEM)
      return child_fail(52, "thread %u refused with errno %d", i, targs[i].err);
  pthread_barrier_wait(&barrier);
  for (unsigned i = 0; i < THREADS; i++)
    pthread_join(th[i], NULL);
  for (unsigned i = 0; i < THREADS; i++)
    if (targs[i].status)
      return child_fail(targs[i].status, "thread %u: status %d (30: a block "
                        "changed, 31: no memory after freeing, 32: contents)",
                        i, targs[i].status);
  return check_recovered();
}

/* ---- parent side ------------------------------------------------------------ */

/* The child's block count, in a page shared with the parent (mapped by
 * main, before any child lowers its limit). */
static unsigned *child_count;

struct body_call {
  int (*body)(void *arg, unsigned *count);
  void *arg;
};

static int call_body(void *arg) {
  struct body_call *b = arg;
  return b->body(b->arg, child_count);
}

static unsigned run_child(const char *name, int (*body)(void *, unsigned *),
                          void *arg) {
  struct body_call call = {body, arg};
  *child_count = 0;
  struct child_end end;
  child_run(call_body, &call, &(struct child_opts){.alarm = 120}, &end);
  if (!child_ok(&end)) {
    char how[160];
    fail_msg("%s: the child %s (its message is above)", name,
             child_end_text(&end, how, sizeof how));
  }
  return *child_count;
}

static uint64_t case_seed;
static int single_body(void *arg, unsigned *count) {
  return child_single(arg, case_seed, count);
}
static int threads_body(void *arg, unsigned *count) {
  (void)arg;
  return child_threads(count);
}

static void run_single(unsigned i) {
  const struct single_case *c = &single_cases[i];
  case_seed = 0xa5a5 + i;
  double t = stress_now();
  unsigned n = run_child(c->name, single_body, (void *)c);
  print_message("exhaustion, %s: refused after %u blocks (%.2f s)\n", c->name,
                n, stress_now() - t);
}

static void test_tiny(void **s) { (void)s; run_single(0); }
static void test_mid(void **s) { (void)s; run_single(1); }
static void test_large(void **s) { (void)s; run_single(2); }
static void test_huge(void **s) { (void)s; run_single(3); }

static void test_mixed(void **s) {
  (void)s;
  run_single(4);
  if (stress_long_mode) {
    double end = stress_now() + stress_seconds;
    for (uint64_t k = 1; stress_now() < end; k++) {
      case_seed = 0xbeef + k;
      run_child("mixed (long mode)", single_body, (void *)&single_cases[4]);
    }
  }
}

static int cache_large_body(void *arg, unsigned *count) {
  (void)arg;
  return child_cache_release(large_sizes, count);
}
static int cache_huge_body(void *arg, unsigned *count) {
  (void)arg;
  return child_cache_release(huge_sizes, count);
}

static void test_cached_superslabs_released(void **s) {
  (void)s;
  unsigned n = run_child("cached superslabs", cache_large_body, NULL);
  print_message("exhaustion: %u large blocks freed, then a block of %zu MiB\n",
                n, (HEADROOM - 48 * MiB) >> 20);
}

static void test_cached_huge_regions_released(void **s) {
  (void)s;
  unsigned n = run_child("cached huge regions", cache_huge_body, NULL);
  print_message("exhaustion: %u huge blocks freed, then a block of %zu MiB\n",
                n, (HEADROOM - 48 * MiB) >> 20);
}

static void test_threads(void **s) {
  (void)s;
  unsigned n = run_child("four threads", threads_body, NULL);
  print_message("exhaustion, four threads: refused after %u blocks in all\n", n);
}

int main(int argc, char **argv) {
  stress_parse_mode(argc, argv);
  child_count = mmap(NULL, sizeof *child_count, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (child_count == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tiny),  cmocka_unit_test(test_mid),
      cmocka_unit_test(test_large), cmocka_unit_test(test_huge),
      cmocka_unit_test(test_mixed), cmocka_unit_test(test_threads),
      cmocka_unit_test(test_cached_superslabs_released),
      cmocka_unit_test(test_cached_huge_regions_released),
  };
  return cmocka_run_group_tests_name("stress_exhaustion", tests, NULL, NULL);
}
