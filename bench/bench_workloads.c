/* SPDX-License-Identifier: MIT */
/* bench_workloads.c - the workloads of TARGETS.md other than Mixed, as modes
 * of one program built per allocator like bench_random_mixed.
 *
 *   bench_workloads_<alloc> sizes   [PAIRS [BATCH]]     (4000000 100)
 *   bench_workloads_<alloc> realloc [CHAINS]            (1000)
 *   bench_workloads_<alloc> calloc  [ROUNDS [BYTES]]    (20 4194304)
 *   bench_workloads_<alloc> aligned [ITERS [WS]]        (2000000 400)
 *   bench_workloads_<alloc> mid     [ITERS [WS [SEED]]] (2000000 400)
 *   bench_workloads_<alloc> large   [ITERS [WS [SEED]]] (20000 16)
 *
 * Every measurement prints one line
 *   Throughput = <ops/s> ops/s allocator=<name> workload=<mode> <fields>
 *   peak_rss_kb=<K> ...
 * where an op is one allocator call (malloc, free, realloc, calloc or
 * posix_memalign) as in Mixed, where each op is one malloc or one free.
 * The fields that are not numbers of the result (size=, batch=, align=,
 * growth=...) name the measurement.  Only the calls are timed; filling and
 * emptying arrays before and after is not.
 */
#include "bench_alloc.h"
#include "bench_mixed.h"

#include <inttypes.h>

static const char *mode_name;

static void report(uint64_t ops, double secs, const char *fields) {
  char head[256];
  snprintf(head, sizeof head, "workload=%s %s ops=%" PRIu64, mode_name, fields,
           ops);
  char tail[64];
  snprintf(tail, sizeof tail, "seconds=%.6f", secs);
  bench_report(secs > 0 ? (double)ops / secs : 0, BENCH_ALLOC_NAME, head, tail);
}

static void *xmalloc(size_t n) {
  char *p = bench_malloc(n);
  if (!p)
    bench_die("malloc(%zu) failed", n);
  p[0] = (char)n;
  return p;
}

/* ---- sizes: fixed-size pairs and batches, 1 B to 1 MiB ------------------- */

static const size_t sweep_sizes[] = {
    1,    8,     16,    24,    32,     48,     64,     96,     128,
    192,  256,   384,   512,   768,    1024,   1536,   2048,   4096,
    8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576};

static void sizes_mode(uint64_t pairs, uint64_t batch) {
  if (batch == 0)
    bench_die("BATCH must be >= 1");
  void **held = calloc(batch, sizeof *held);
  if (!held)
    bench_die("cannot allocate the batch array");
  for (size_t i = 0; i < sizeof sweep_sizes / sizeof *sweep_sizes; i++) {
    size_t size = sweep_sizes[i];
    /* Above 4 KiB fewer pairs, so that the big sizes (where some allocators
     * make system calls) do not dominate the run time. */
    uint64_t n = size <= 4096 ? pairs : pairs * 4096 / size;
    if (n < pairs / 256)
      n = pairs / 256;
    if (n == 0)
      n = 1;
    char fields[96];

    double t0 = bench_now();
    for (uint64_t j = 0; j < n; j++)
      bench_free(xmalloc(size));
    double t1 = bench_now();
    snprintf(fields, sizeof fields, "size=%zu batch=1", size);
    report(2 * n, t1 - t0, fields);

    uint64_t rounds = n / batch ? n / batch : 1;
    t0 = bench_now();
    for (uint64_t r = 0; r < rounds; r++) {
      for (uint64_t j = 0; j < batch; j++)
        held[j] = xmalloc(size);
      for (uint64_t j = 0; j < batch; j++)
        bench_free(held[j]);
    }
    t1 = bench_now();
    snprintf(fields, sizeof fields, "size=%zu batch=%" PRIu64, size, batch);
    report(2 * rounds * batch, t1 - t0, fields);
  }
  free(held);
}

/* ---- realloc: growth chains ---------------------------------------------- */

/* One chain: malloc(16), realloc up to max, writing the new last byte after
 * each step as a growing buffer would, then free.  Returns the calls made. */
static uint64_t grow_chain(size_t max, int geometric, size_t step) {
  size_t size = 16;
  char *p = xmalloc(size);
  uint64_t calls = 1;
  while (size < max) {
    size = geometric ? size + size / 2 : size + step;
    if (size > max)
      size = max;
    p = bench_realloc(p, size);
    if (!p)
      bench_die("realloc(%zu) failed", size);
    p[size - 1] = (char)size;
    calls++;
  }
  bench_free(p);
  return calls + 1;
}

static void realloc_mode(uint64_t chains) {
  struct {
    const char *growth;
    size_t max, step;
    uint64_t chains;
  } runs[] = {
      {"linear16", 1024, 16, chains * 100}, /* within the small classes */
      {"geometric", 65536, 0, chains * 10},
      {"geometric", 1048576, 0, chains},
  };
  for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
    uint64_t calls = 0;
    int geometric = runs[i].step == 0;
    double t0 = bench_now();
    for (uint64_t c = 0; c < runs[i].chains; c++)
      calls += grow_chain(runs[i].max, geometric, runs[i].step);
    double t1 = bench_now();
    char fields[128];
    snprintf(fields, sizeof fields, "growth=%s max=%zu chains=%" PRIu64,
             runs[i].growth, runs[i].max, runs[i].chains);
    report(calls, t1 - t0, fields);
  }
}

/* ---- calloc: fresh and reused memory ------------------------------------- */

static const size_t calloc_sizes[] = {64, 1024, 16384, 262144, 1048576};

/* Times count callocs of size; checks the first byte is zero (a reused block
 * had it set to 1 by the previous round) and sets it. */
static double calloc_round(void **held, uint64_t count, size_t size) {
  double t0 = bench_now();
  for (uint64_t j = 0; j < count; j++) {
    char *p = bench_calloc(1, size);
    if (!p)
      bench_die("calloc(1, %zu) failed", size);
    if (p[0] != 0)
      bench_die("calloc(1, %zu) returned memory that is not zero", size);
    p[0] = 1;
    held[j] = p;
  }
  double t1 = bench_now();
  for (uint64_t j = 0; j < count; j++)
    bench_free(held[j]);
  return t1 - t0;
}

static void calloc_mode(uint64_t rounds, uint64_t bytes) {
  for (size_t i = 0; i < sizeof calloc_sizes / sizeof *calloc_sizes; i++) {
    size_t size = calloc_sizes[i];
    /* A batch small enough that freed memory stays with the allocator
     * (most return big free ranges to the system), at least 16 blocks. */
    uint64_t count = bytes / size;
    if (count > 65536)
      count = 65536;
    if (count < 16)
      count = 16;
    void **held = calloc(count, sizeof *held);
    if (!held)
      bench_die("cannot allocate the block array");
    char fields[96];
    /* The first round of a size takes memory the process has not used for
     * that size yet: what "fresh" means here. */
    double secs = calloc_round(held, count, size);
    snprintf(fields, sizeof fields, "size=%zu memory=fresh", size);
    report(count, secs, fields);
    secs = 0;
    for (uint64_t r = 0; r < rounds; r++)
      secs += calloc_round(held, count, size);
    snprintf(fields, sizeof fields, "size=%zu memory=reused", size);
    report(count * rounds, secs, fields);
    free(held);
  }
}

/* ---- aligned: posix_memalign in the Mixed loop --------------------------- */

/* A misaligned result is counted and reported (misaligned=N) rather than
 * fatal: a peer allocator's bug (mimalloc 2.0.9 returns 128-byte aligned
 * blocks for posix_memalign(256, 256), its issue #700) should not stop the
 * comparison.  The smoke test requires misaligned=0 of hakmem. */
static void aligned_mode(uint64_t iters, uint64_t ws) {
  if (ws == 0)
    bench_die("WS must be >= 1");
  void **slot = calloc(ws, sizeof *slot);
  if (!slot)
    bench_die("cannot allocate the slots");
  for (size_t align = 16; align <= 4096; align *= 2) {
    uint64_t x = bench_seed(BENCH_DEFAULT_SEED), misaligned = 0;
    double t0 = bench_now();
    for (uint64_t i = 0; i < iters; i++) {
      uint64_t r = bench_next(&x);
      uint64_t k = bench_below((uint32_t)(r >> 32), ws);
      if (slot[k]) {
        bench_free(slot[k]);
        slot[k] = NULL;
      } else {
        size_t size = 16 + bench_below((uint32_t)r, 1024 - 16 + 1);
        void *p;
        if (bench_posix_memalign(&p, align, size) != 0)
          bench_die("posix_memalign(%zu, %zu) failed", align, size);
        misaligned += ((uintptr_t)p & (align - 1)) != 0;
        *(char *)p = (char)size;
        slot[k] = p;
      }
    }
    double t1 = bench_now();
    for (uint64_t k = 0; k < ws; k++) {
      bench_free(slot[k]);
      slot[k] = NULL;
    }
    if (misaligned)
      fprintf(stderr,
              "bench: %s: posix_memalign(%zu, ...) returned %" PRIu64
              " misaligned blocks\n",
              BENCH_ALLOC_NAME, align, misaligned);
    char fields[160];
    snprintf(fields, sizeof fields,
             "align=%zu min=16 max=1024 iters=%" PRIu64 " ws=%" PRIu64
             " misaligned=%" PRIu64,
             align, iters, ws, misaligned);
    report(iters, t1 - t0, fields);
  }
  free(slot);
}

/* ---- mid and large: the Mixed loop over bigger sizes --------------------- */

static void mixed_mode(uint64_t iters, uint64_t ws, uint64_t min, uint64_t max,
                       uint64_t seed) {
  struct mixed m;
  mixed_init(&m, ws, min, max, seed);
  double t0 = bench_now();
  mixed_run(&m, iters);
  double t1 = bench_now();
  mixed_finish(&m);
  char fields[160];
  snprintf(fields, sizeof fields,
           "min=%" PRIu64 " max=%" PRIu64 " iters=%" PRIu64 " ws=%" PRIu64
           " bytes=%" PRIu64,
           min, max, iters, ws, m.bytes);
  report(iters, t1 - t0, fields);
}

static _Noreturn void usage(const char *prog) {
  bench_die("usage: %s sizes [PAIRS [BATCH]] | realloc [CHAINS] | calloc "
            "[ROUNDS [BYTES]] | aligned [ITERS [WS]] | mid [ITERS [WS [SEED]]] "
            "| large [ITERS [WS [SEED]]]",
            prog);
}

int main(int argc, char **argv) {
  if (argc < 2)
    usage(argv[0]);
  mode_name = argv[1];
  uint64_t a[3];
  int n = argc - 2;
  if (n > 3)
    usage(argv[0]);
#define ARG(i, def, name)                                                      \
  (n > (i) ? bench_parse_count(argv[2 + (i)], name) : (def))
  if (!strcmp(mode_name, "sizes") && n <= 2) {
    sizes_mode(ARG(0, 4000000, "PAIRS"), ARG(1, 100, "BATCH"));
  } else if (!strcmp(mode_name, "realloc") && n <= 1) {
    realloc_mode(ARG(0, 1000, "CHAINS"));
  } else if (!strcmp(mode_name, "calloc") && n <= 2) {
    calloc_mode(ARG(0, 20, "ROUNDS"), ARG(1, 4194304, "BYTES"));
  } else if (!strcmp(mode_name, "aligned") && n <= 2) {
    aligned_mode(ARG(0, 2000000, "ITERS"), ARG(1, 400, "WS"));
  } else if (!strcmp(mode_name, "mid")) {
    a[0] = ARG(0, 2000000, "ITERS"), a[1] = ARG(1, 400, "WS"),
    a[2] = ARG(2, BENCH_DEFAULT_SEED, "SEED");
    mixed_mode(a[0], a[1], 1024, 262144, a[2]);
  } else if (!strcmp(mode_name, "large")) {
    a[0] = ARG(0, 20000, "ITERS"), a[1] = ARG(1, 16, "WS"),
    a[2] = ARG(2, BENCH_DEFAULT_SEED, "SEED");
    mixed_mode(a[0], a[1], 262144, 67108864, a[2]);
  } else {
    usage(argv[0]);
  }
#undef ARG
  return 0;
}
