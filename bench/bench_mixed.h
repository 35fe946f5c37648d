/* SPDX-License-Identifier: MIT */
/* bench_mixed.h - the random-slot loop of the Mixed benchmark
 * (TARGETS.md), shared by bench_random_mixed, the mid and large workloads and
 * the soak, so that they all run the same structure.
 *
 * One op: draw r; slot k from the high 32 bits of r; if slot k holds a block,
 * free it and empty the slot, else allocate a block whose size is drawn
 * uniformly from [min, max] with the low 32 bits of r, write its first byte
 * and store it.  Include bench_alloc.h first.
 */
#ifndef BENCH_MIXED_H
#define BENCH_MIXED_H

#include "bench_harness.h"

#include <stdint.h>
#include <stdlib.h>

struct mixed {
  void **slot;    /* ws slots, NULL when empty */
  uint64_t ws;    /* number of slots */
  uint64_t rng;   /* xorshift64 state, carried across calls */
  uint64_t min;   /* smallest size */
  uint64_t span;  /* max - min + 1 */
  uint64_t bytes; /* bytes requested so far: the same for every allocator
                   * given the same arguments, so runs can be compared */
};

/* The slot array comes from calloc outside any timed region; under
 * LD_PRELOAD that is the measured allocator, which is harmless. */
static inline void mixed_init(struct mixed *m, uint64_t ws, uint64_t min,
                              uint64_t max, uint64_t seed) {
  if (ws == 0 || min == 0 || max < min || max - min >= UINT32_MAX)
    bench_die(
        "need WS >= 1 and 1 <= MIN <= MAX (got ws=%llu min=%llu max=%llu)",
        (unsigned long long)ws, (unsigned long long)min,
        (unsigned long long)max);
  m->slot = calloc(ws, sizeof *m->slot);
  if (!m->slot)
    bench_die("cannot allocate %llu slots", (unsigned long long)ws);
  m->ws = ws;
  m->rng = bench_seed(seed);
  m->min = min;
  m->span = max - min + 1;
  m->bytes = 0;
}

/* The timed part.  State lives in locals so that the loop keeps it in
 * registers; no call but the allocator's is made. */
static inline void mixed_run(struct mixed *m, uint64_t iters) {
  void **slot = m->slot;
  uint64_t ws = m->ws, min = m->min, span = m->span;
  uint64_t x = m->rng, bytes = 0;
  for (uint64_t i = 0; i < iters; i++) {
    uint64_t r = bench_next(&x);
    uint64_t k = bench_below((uint32_t)(r >> 32), ws);
    void *p = slot[k];
    if (p) {
      bench_free(p);
      slot[k] = NULL;
    } else {
      uint64_t size = min + bench_below((uint32_t)r, span);
      char *q = bench_malloc(size);
      if (__builtin_expect(q == NULL, 0))
        bench_die("malloc(%llu) failed", (unsigned long long)size);
      q[0] = (char)size;
      slot[k] = q;
      bytes += size;
    }
  }
  m->rng = x;
  m->bytes += bytes;
}

/* Frees what is left: not timed. */
static inline void mixed_finish(struct mixed *m) {
  for (uint64_t k = 0; k < m->ws; k++)
    bench_free(m->slot[k]);
  free(m->slot);
  m->slot = NULL;
}

#endif
