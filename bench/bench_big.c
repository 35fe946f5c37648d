/* SPDX-License-Identifier: MIT */
/* bench_big.c - big blocks: the workloads where page faults decide (TARGETS.md,
 * "Big blocks"), built per allocator like bench_random_mixed.
 *
 *   bench_big_<alloc> blocks MIN MAX LIVE ITERS [SEED]
 *   bench_big_<alloc> mt [THREADS [OPS [WS [ROUNDS [SEED]]]]]
 *                                              (4 200000 500 4)
 *   bench_big_<alloc> aspace [LIMIT]           (256M)
 *   bench_big_<alloc> rewrite MIN MAX LIVE ITERS [SEED]
 *
 * blocks: LIVE blocks of sizes drawn uniformly from [MIN, MAX] (bytes; a K,
 * M or G suffix multiplies by 2^10, 2^20, 2^30), each written whole with
 * memset.  Each iteration frees a random one (after checking its first and
 * last byte) and puts a new block of a new size in its place, written whole:
 * an image, audio or decompression buffer used and dropped.  One op is one
 * iteration (a free and a malloc).  Only the iterations are timed, and
 * minflt= counts their minor page faults alone.
 *
 * rewrite: blocks, with every new block written a second time, and the
 * two writes timed apart: first_write_s (page faults and whatever the
 * machine does on a first touch) against rewrite_s (the same bytes,
 * resident), so that what a fault costs on this machine, for this
 * allocator's memory, is (first_write_s - rewrite_s) / minflt.  Not a
 * workload of run_compare: the second write is not the program's.
 *
 * mt: THREADS threads, each ROUNDS times in a row: a thread adopts up to WS
 * live blocks that earlier threads left, runs OPS / ROUNDS ops on its WS
 * slots and exits, leaving its live blocks to the next ones.  Sizes are
 * mostly tiny, as in real programs: 86 % up to 1 KiB, 12.5 % up to 256 KiB,
 * 1.4 % up to 4 MiB, 0.1 % up to 16 MiB.  An op on an empty slot allocates
 * (or, one time in four, adopts a block another thread handed over); on a
 * full one, 15 % of ops realloc it to a new size, the others free it, or
 * one time in four hand it over to whichever thread comes next.  Every
 * block is written whole with a tag byte, and every byte a page apart (and
 * the last) is checked before each realloc and free: a block corrupted by
 * the allocator stops the run.  Ops of all threads over the wall time;
 * rss_end_kb is the resident set after everything is freed.
 *
 * aspace: address space per block.  For blocks of 300 KB, 1 MiB and 2 MiB,
 * a child process allocates 64 blocks and reports how much VmSize grew per
 * block, then sets RLIMIT_AS to LIMIT (as containers and batch systems do)
 * and counts how many more blocks it gets before malloc fails.  Prints one
 * line per size:
 *   Aspace size=<B> vmsize_per_block=<bytes> blocks_under_limit=<N>
 *   limit=<bytes> allocator=<name>
 * (the count includes the 64; what the process had mapped before counts
 * against the limit too, the allocator's own tables included).
 *
 * Transparent huge pages change what a fault is (one per 2 MiB instead of
 * per 4 KiB), and the system's setting may change between runs; with
 * BENCH_THP=off in the environment the process opts out of them
 * (prctl PR_SET_THP_DISABLE), so that fault counts compare across runs and
 * allocators.  Every result line says which applied (thp=).
 */
#include "bench_alloc.h"
#include "bench_harness.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/wait.h>

/* "off" when this process opted out of transparent huge pages, else the
 * system's mode (always, madvise, never) or "unknown". */
static char thp_mode[16] = "unknown";

static void thp_setup(void) {
  const char *want = getenv("BENCH_THP");
  if (want && !strcmp(want, "off")) {
    if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0)
      bench_die("prctl(PR_SET_THP_DISABLE) failed");
    strcpy(thp_mode, "off");
    return;
  }
  char buf[128];
  if (bench_read_proc("/sys/kernel/mm/transparent_hugepage/enabled", buf,
                      sizeof buf) > 0) {
    char *a = strchr(buf, '['), *b = a ? strchr(a, ']') : NULL;
    if (b && (size_t)(b - a - 1) < sizeof thp_mode) {
      memcpy(thp_mode, a + 1, (size_t)(b - a - 1));
      thp_mode[b - a - 1] = 0;
    }
  }
}

static uint64_t parse_size(const char *s, const char *what) {
  char buf[64];
  size_t n = strlen(s);
  if (n == 0 || n >= sizeof buf)
    bench_die("%s: bad size '%s'", what, s);
  uint64_t mul = 1;
  switch (s[n - 1]) {
  case 'k':
  case 'K':
    mul = 1ull << 10;
    break;
  case 'm':
  case 'M':
    mul = 1ull << 20;
    break;
  case 'g':
  case 'G':
    mul = 1ull << 30;
    break;
  default:
    break;
  }
  memcpy(buf, s, n + 1);
  if (mul != 1)
    buf[n - 1] = 0;
  return bench_parse_count(buf, what) * mul;
}

static void *xmalloc(size_t n) {
  void *p = bench_malloc(n);
  if (!p)
    bench_die("malloc(%zu) failed", n);
  return p;
}

/* ---- blocks ---------------------------------------------------------- */

static void blocks_mode(uint64_t min, uint64_t max, uint64_t live,
                        uint64_t iters, uint64_t seed, bool rewrite) {
  if (live == 0 || min == 0 || max < min || max - min >= UINT32_MAX)
    bench_die("need LIVE >= 1 and 1 <= MIN <= MAX < MIN + 2^32");
  struct slot {
    unsigned char *p;
    size_t size;
  } *slot = calloc(live, sizeof *slot);
  if (!slot)
    bench_die("cannot allocate the slots");
  uint64_t x = bench_seed(seed), bytes = 0, span = max - min + 1;
  double first_s = 0, again_s = 0; /* rewrite's */
  for (uint64_t k = 0; k < live; k++) {
    size_t size = min + bench_below((uint32_t)bench_next(&x), span);
    slot[k].p = xmalloc(size);
    slot[k].size = size;
    memset(slot[k].p, (int)(k + 1), size);
  }
  bench_fault_mark();
  double t0 = bench_now();
  for (uint64_t i = 0; i < iters; i++) {
    uint64_t r = bench_next(&x);
    uint64_t k = bench_below((uint32_t)(r >> 32), live);
    struct slot *s = &slot[k];
    unsigned char tag = s->p[0];
    if (s->p[s->size - 1] != tag)
      bench_die("block of %zu bytes changed while live", s->size);
    bench_free(s->p);
    size_t size = min + bench_below((uint32_t)r, span);
    s->p = xmalloc(size);
    s->size = size;
    double w0 = rewrite ? bench_now() : 0;
    memset(s->p, (unsigned char)(tag + 1), size);
    if (rewrite) {
      double w1 = bench_now();
      memset(s->p, (unsigned char)(tag + 2), size);
      memset(s->p, (unsigned char)(tag + 1), size);
      first_s += w1 - w0;
      again_s += (bench_now() - w1) / 2;
    }
    bytes += size;
  }
  double t1 = bench_now();
  char head[192], tail[160];
  snprintf(head, sizeof head,
           "workload=%s min=%" PRIu64 " max=%" PRIu64 " live=%" PRIu64
           " iters=%" PRIu64 " ops=%" PRIu64 " bytes=%" PRIu64,
           rewrite ? "big-rewrite" : "big", min, max, live, iters, iters,
           bytes);
  if (rewrite)
    snprintf(tail, sizeof tail,
             "thp=%s seconds=%.6f first_write_s=%.6f rewrite_s=%.6f", thp_mode,
             t1 - t0, first_s, again_s);
  else
    snprintf(tail, sizeof tail, "thp=%s seconds=%.6f", thp_mode, t1 - t0);
  bench_report(t1 > t0 ? (double)iters / (t1 - t0) : 0, BENCH_ALLOC_NAME, head,
               tail);
  for (uint64_t k = 0; k < live; k++)
    bench_free(slot[k].p);
  free(slot);
}

/* ---- mt -------------------------------------------------------------- */

struct block {
  unsigned char *p;
  size_t size;
};

/* The blocks handed over between threads and left by threads that ended:
 * one mutex, taken on a quarter of the frees and allocations at most. */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct block *pool;
static size_t pool_len, pool_cap;

static void pool_put(struct block b) {
  pthread_mutex_lock(&pool_lock);
  if (pool_len == pool_cap) {
    /* Grown outside the measured allocator's hot path would be nicer, but
     * any allocator pays the same here. */
    size_t cap = pool_cap ? pool_cap * 2 : 4096;
    struct block *n = realloc(pool, cap * sizeof *n);
    if (!n)
      bench_die("cannot grow the pool");
    pool = n;
    pool_cap = cap;
  }
  pool[pool_len++] = b;
  pthread_mutex_unlock(&pool_lock);
}

static bool pool_take(struct block *b) {
  pthread_mutex_lock(&pool_lock);
  bool ok = pool_len > 0;
  if (ok)
    *b = pool[--pool_len];
  pthread_mutex_unlock(&pool_lock);
  return ok;
}

static size_t draw_size(uint64_t r) {
  uint32_t u = (uint32_t)(r % 1000), v = (uint32_t)(r >> 32);
  if (u < 860)
    return 1 + bench_below(v, 1024);
  if (u < 985)
    return 1024 + 1 + bench_below(v, (256 << 10) - 1024);
  if (u < 999)
    return (256 << 10) + 1 + bench_below(v, (4 << 20) - (256 << 10));
  return (4 << 20) + 1 + bench_below(v, (16 << 20) - (4 << 20));
}

/* A block's tag is its first byte; the rest of it holds the same value. */
static void check(const struct block *b) {
  unsigned char tag = b->p[0];
  for (size_t i = 4096; i < b->size; i += 4096)
    if (b->p[i] != tag)
      bench_die("block %p of %zu bytes: byte %zu changed", (void *)b->p,
                b->size, i);
  if (b->p[b->size - 1] != tag)
    bench_die("block %p of %zu bytes: last byte changed", (void *)b->p,
              b->size);
}

struct worker {
  pthread_t thread;
  uint64_t seed, ops, ws;
  uint64_t done, reallocs, handed;
};

static void *worker_main(void *arg) {
  struct worker *w = arg;
  struct block *slot = calloc(w->ws, sizeof *slot);
  if (!slot)
    bench_die("cannot allocate the slots");
  uint64_t x = bench_seed(w->seed);
  for (uint64_t k = 0; k < w->ws && pool_take(&slot[k]); k++)
    check(&slot[k]);
  for (uint64_t i = 0; i < w->ops; i++) {
    uint64_t r = bench_next(&x);
    uint64_t k = bench_below((uint32_t)(r >> 32), w->ws);
    struct block *b = &slot[k];
    uint32_t act = (uint32_t)r % 100;
    if (!b->p) {
      if (act < 25 && pool_take(b)) {
        check(b);
        continue;
      }
      b->size = draw_size(bench_next(&x));
      b->p = xmalloc(b->size);
      memset(b->p, (unsigned char)r | 1, b->size);
    } else if (act < 15) {
      check(b);
      size_t size = draw_size(bench_next(&x));
      unsigned char tag = b->p[0];
      unsigned char *p = bench_realloc(b->p, size);
      if (!p)
        bench_die("realloc(%zu) failed", size);
      if (size > b->size)
        memset(p + b->size, tag, size - b->size);
      b->p = p;
      b->size = size;
      check(b);
      w->reallocs++;
    } else {
      check(b);
      if (act < 15 + 85 / 4) {
        pool_put(*b);
        w->handed++;
      } else {
        bench_free(b->p);
      }
      b->p = NULL;
    }
  }
  for (uint64_t k = 0; k < w->ws; k++)
    if (slot[k].p)
      pool_put(slot[k]); /* the next threads adopt them */
  free(slot);
  w->done = w->ops;
  return NULL;
}

static void mt_mode(uint64_t threads, uint64_t ops, uint64_t ws,
                    uint64_t rounds, uint64_t seed) {
  if (threads == 0 || ws == 0 || rounds == 0)
    bench_die("need THREADS, WS and ROUNDS >= 1");
  struct worker *w = calloc(threads, sizeof *w);
  if (!w)
    bench_die("cannot allocate the workers");
  uint64_t total = 0, reallocs = 0, handed = 0, x = bench_seed(seed);
  bench_fault_mark();
  double t0 = bench_now();
  for (uint64_t round = 0; round < rounds; round++) {
    for (uint64_t t = 0; t < threads; t++) {
      w[t] = (struct worker){
          .seed = bench_next(&x), .ops = ops / rounds, .ws = ws};
      if (pthread_create(&w[t].thread, NULL, worker_main, &w[t]))
        bench_die("pthread_create failed");
    }
    for (uint64_t t = 0; t < threads; t++) {
      pthread_join(w[t].thread, NULL);
      total += w[t].done;
      reallocs += w[t].reallocs;
      handed += w[t].handed;
    }
  }
  struct block b;
  while (pool_take(&b)) {
    check(&b);
    bench_free(b.p);
  }
  double t1 = bench_now();
  free(pool);
  pool = NULL;
  pool_cap = 0;
  char head[192], tail[160];
  snprintf(head, sizeof head,
           "workload=bigmt threads=%" PRIu64 " ops=%" PRIu64 " ws=%" PRIu64
           " rounds=%" PRIu64,
           threads, total, ws, rounds);
  snprintf(tail, sizeof tail,
           "reallocs=%" PRIu64 " handed=%" PRIu64
           " rss_end_kb=%ld thp=%s seconds=%.6f",
           reallocs, handed, bench_rss_kb(), thp_mode, t1 - t0);
  bench_report(t1 > t0 ? (double)total / (t1 - t0) : 0, BENCH_ALLOC_NAME, head,
               tail);
  free(w);
}

/* ---- aspace -------------------------------------------------------------- */

static size_t vmsize(void) {
  char buf[4096];
  if (bench_read_proc("/proc/self/status", buf, sizeof buf) <= 0)
    return 0;
  const char *p = strstr(buf, "VmSize:");
  return p ? (size_t)strtoull(p + 7, NULL, 10) * 1024 : 0;
}

static void aspace_child(size_t size, uint64_t limit, int fd) {
  enum { FIRST = 64 };
  size_t before = vmsize();
  for (int i = 0; i < FIRST; i++) {
    char *p = bench_malloc(size);
    if (!p)
      _exit(3);
    p[0] = p[size - 1] = 1;
  }
  size_t per_block = (vmsize() - before) / FIRST;
  struct rlimit rl = {limit, limit};
  if (setrlimit(RLIMIT_AS, &rl) != 0)
    _exit(4);
  uint64_t n = FIRST;
  for (;;) {
    char *p = bench_malloc(size);
    if (!p)
      break;
    p[0] = p[size - 1] = 1;
    n++;
  }
  char line[256];
  int len = snprintf(
      line, sizeof line,
      "Aspace size=%zu vmsize_per_block=%zu blocks_under_limit=%" PRIu64
      " limit=%" PRIu64 " allocator=%s\n",
      size, per_block, n, limit, BENCH_ALLOC_NAME);
  if (write(fd, line, (size_t)len) != len)
    _exit(5);
  _exit(0);
}

static void aspace_mode(uint64_t limit) {
  static const size_t sizes[] = {300000, 1 << 20, 2 << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
      bench_die("fork failed");
    if (pid == 0)
      aspace_child(sizes[i], limit, 1);
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
      bench_die("aspace child for %zu bytes failed", sizes[i]);
  }
}

static _Noreturn void usage(const char *prog) {
  bench_die("usage: %s blocks|rewrite MIN MAX LIVE ITERS [SEED] | mt "
            "[THREADS [OPS [WS [ROUNDS [SEED]]]]] | aspace [LIMIT]",
            prog);
}

int main(int argc, char **argv) {
  if (argc < 2)
    usage(argv[0]);
  int n = argc - 2;
  char **a = argv + 2;
  thp_setup();
  bool rewrite = !strcmp(argv[1], "rewrite");
  if ((rewrite || !strcmp(argv[1], "blocks")) && (n == 4 || n == 5)) {
    blocks_mode(
        parse_size(a[0], "MIN"), parse_size(a[1], "MAX"),
        bench_parse_count(a[2], "LIVE"), bench_parse_count(a[3], "ITERS"),
        n > 4 ? bench_parse_count(a[4], "SEED") : BENCH_DEFAULT_SEED, rewrite);
  } else if (!strcmp(argv[1], "mt") && n <= 5) {
    mt_mode(n > 0 ? bench_parse_count(a[0], "THREADS") : 4,
            n > 1 ? bench_parse_count(a[1], "OPS") : 200000,
            n > 2 ? bench_parse_count(a[2], "WS") : 500,
            n > 3 ? bench_parse_count(a[3], "ROUNDS") : 4,
            n > 4 ? bench_parse_count(a[4], "SEED") : BENCH_DEFAULT_SEED);
  } else if (!strcmp(argv[1], "aspace") && n <= 1) {
    aspace_mode(n > 0 ? parse_size(a[0], "LIMIT") : 256ull << 20);
  } else {
    usage(argv[0]);
  }
  return 0;
}
