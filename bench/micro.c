/* SPDX-License-Identifier: MIT */
/* micro.c - microbenchmarks of single allocator calls, run by Google
 * Benchmark through gbench.h, built once per allocator like the other
 * benchmark programs.
 *
 *   micro_<alloc> [--benchmark_filter=REGEX] [--benchmark_min_time=S] ...
 *
 * Names are <allocator>/<call>/<size or alignment>; the time shown is per op
 * (one allocator call; the pair benchmarks count malloc and free as two ops,
 * as Mixed does).  Each turn of a benchmark's loop is a batch of ops (32
 * pairs, 64 held blocks, one realloc chain, 64 Mixed ops), so that the call
 * into the C++ library is a small part of the time per op.
 */
#include "bench_alloc.h"
#include "bench_harness.h"
#include "gbench.h"

#define PAIRS_PER_BATCH 32
#define HELD 64 /* blocks held by the batch benchmarks */

/* Keeps the compiler from dropping a block that is only written. */
static inline void escape(void *p) {
  __asm__ volatile("" : : "r"(p) : "memory");
}

static void *checked(gb_state *st, void *p) {
  if (!p)
    gb_skip_with_error(st, "allocation failed");
  return p;
}

/* malloc then free of one size, over and over: the thread-local fast path. */
static void malloc_free(gb_state *st, int64_t size) {
  while (gb_keep_running_batch(st, 2 * PAIRS_PER_BATCH)) {
    for (int i = 0; i < PAIRS_PER_BATCH; i++) {
      char *p = checked(st, bench_malloc((size_t)size));
      if (!p)
        return;
      p[0] = 1;
      escape(p);
      bench_free(p);
    }
  }
}

/* HELD mallocs then HELD frees: the free lists grow and shrink. */
static void malloc_batch(gb_state *st, int64_t size) {
  void *held[HELD];
  while (gb_keep_running_batch(st, 2 * HELD)) {
    for (int i = 0; i < HELD; i++) {
      char *p = checked(st, bench_malloc((size_t)size));
      if (!p)
        return;
      p[0] = 1;
      held[i] = p;
    }
    escape(held);
    for (int i = 0; i < HELD; i++)
      bench_free(held[i]);
  }
}

static void calloc_free(gb_state *st, int64_t size) {
  while (gb_keep_running_batch(st, 2 * PAIRS_PER_BATCH)) {
    for (int i = 0; i < PAIRS_PER_BATCH; i++) {
      char *p = checked(st, bench_calloc(1, (size_t)size));
      if (!p)
        return;
      escape(p);
      bench_free(p);
    }
  }
}

/* 64-byte blocks at a given alignment. */
static void memalign_free(gb_state *st, int64_t align) {
  while (gb_keep_running_batch(st, 2 * PAIRS_PER_BATCH)) {
    for (int i = 0; i < PAIRS_PER_BATCH; i++) {
      void *p;
      if (bench_posix_memalign(&p, (size_t)align, 64) != 0) {
        gb_skip_with_error(st, "posix_memalign failed");
        return;
      }
      escape(p);
      bench_free(p);
    }
  }
}

/* malloc(16) doubled by realloc up to size, then freed: one batch is one
 * chain, and every call is an op. */
static void realloc_chain(gb_state *st, int64_t size) {
  int64_t calls = 2;
  for (int64_t n = 16; n < size; n *= 2)
    calls++;
  while (gb_keep_running_batch(st, calls)) {
    char *p = checked(st, bench_malloc(16));
    if (!p)
      return;
    for (int64_t n = 32; n <= size; n *= 2) {
      p = checked(st, bench_realloc(p, (size_t)n));
      if (!p)
        return;
      p[n - 1] = 1;
    }
    escape(p);
    bench_free(p);
  }
}

/* The Mixed loop (16..1024 B, 400 slots) in batches of 64 ops. */
static void mixed(gb_state *st, int64_t unused) {
  (void)unused;
  enum { WS = 400, BATCH = 64 };
  static void *slot[WS];
  uint64_t x = BENCH_DEFAULT_SEED;
  while (gb_keep_running_batch(st, BATCH)) {
    for (int i = 0; i < BATCH; i++) {
      uint64_t r = bench_next(&x);
      uint64_t k = bench_below((uint32_t)(r >> 32), WS);
      if (slot[k]) {
        bench_free(slot[k]);
        slot[k] = NULL;
      } else {
        size_t size = 16 + bench_below((uint32_t)r, 1024 - 16 + 1);
        char *p = checked(st, bench_malloc(size));
        if (!p)
          return;
        p[0] = 1;
        slot[k] = p;
      }
    }
  }
  for (int k = 0; k < WS; k++) {
    bench_free(slot[k]);
    slot[k] = NULL;
  }
}

int main(int argc, char **argv) {
  static const int64_t sizes[] = {16, 64, 256, 1024, 4096, 65536, 1 << 20};
  static const int64_t small[] = {16, 256, 1024};
  static const int64_t aligns[] = {64, 4096};
  static const int64_t chains[] = {1024, 65536};
  const int nsizes = sizeof sizes / sizeof *sizes;
  char name[128];
#define REGISTER(call, fn, args, n)                                            \
  snprintf(name, sizeof name, "%s/%s", BENCH_ALLOC_NAME, call);                \
  gb_register(name, fn, args, n)
  REGISTER("malloc_free", malloc_free, sizes, nsizes);
  REGISTER("malloc_batch64", malloc_batch, small, 3);
  REGISTER("calloc_free", calloc_free, sizes, nsizes);
  REGISTER("memalign_free", memalign_free, aligns, 2);
  REGISTER("realloc_chain", realloc_chain, chains, 2);
  REGISTER("mixed", mixed, NULL, 0);
#undef REGISTER
  return gb_main(argc, argv);
}
