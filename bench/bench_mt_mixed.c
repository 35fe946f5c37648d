/* SPDX-License-Identifier: MIT */
/* bench_mt_mixed.c - Mixed with several threads and cross-thread frees.
 *
 *   bench_mt_mixed_<alloc> [THREADS [ITERS [WS [MIN [MAX [REMOTE_PCT
 * [SEED]]]]]]]
 *
 * Defaults: 2 threads, 10000000 ops per thread, WS 400, 16..1024 B, 0 %
 * remote, a fixed seed.  Each thread runs the Mixed loop on its own WS slots.
 * When an op empties a slot, with probability REMOTE_PCT % the block is not
 * freed by its owner but handed to the next thread (i+1 mod THREADS) through
 * a single-producer single-consumer ring; the receiver frees it.  So the
 * frees measured are local, remote, or a mix.
 *
 * Ops are those of every thread (THREADS x ITERS); the time is from the
 * first thread's start to the last thread's end, after every handed-over
 * block has been freed.  Prints:
 *   Throughput = <ops/s> ops/s allocator=<name> threads=<T> iters=<N> ws=<WS>
 *   remote_pct=<X> peak_rss_kb=<K> remote_frees=<R> ...
 */
#include "bench_alloc.h"
#include "bench_harness.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>

#define RING_SIZE 4096 /* entries, a power of two */
#define DRAIN_EVERY 32 /* ops between two looks at the inbound ring */
#define CACHE_LINE 64

/* Single producer (the previous thread), single consumer (the owner).  head
 * and tail sit on their own cache lines so that the two sides do not share
 * one; each side keeps a private copy of the other's index and reloads it
 * only when the ring looks full or empty. */
struct ring {
  alignas(CACHE_LINE) _Atomic uint64_t tail; /* written by the producer */
  alignas(CACHE_LINE) _Atomic uint64_t head; /* written by the consumer */
  alignas(CACHE_LINE) void *entry[RING_SIZE];
};

struct worker {
  alignas(CACHE_LINE) struct ring in; /* blocks handed to this thread */
  struct ring *out;                   /* the next thread's ring */
  uint64_t head_seen;                 /* producer's copy of out->head */
  uint64_t tail_seen;                 /* consumer's copy of in.tail */
  uint64_t seed, iters, ws, min, span, remote_pct;
  uint64_t remote_frees, bytes;
  double start, end;
  pthread_t thread;
};

static atomic_int finished; /* threads past their last op */
static int nthreads;
static pthread_barrier_t start_line;

/* Frees everything waiting in the inbound ring. */
static inline void drain(struct worker *w) {
  struct ring *in = &w->in;
  uint64_t head = atomic_load_explicit(&in->head, memory_order_relaxed);
  uint64_t tail = atomic_load_explicit(&in->tail, memory_order_acquire);
  if (head == tail)
    return;
  for (; head != tail; head++)
    bench_free(in->entry[head & (RING_SIZE - 1)]);
  atomic_store_explicit(&in->head, head, memory_order_release);
}

/* Hands p to the next thread; while its ring is full, keeps freeing what
 * this thread receives, so that a cycle of full rings always drains, and
 * yields the CPU: with more threads than free CPUs the receiver may be
 * waiting for this one's time slice. */
static inline void hand_over(struct worker *w, void *p) {
  struct ring *out = w->out;
  uint64_t tail = atomic_load_explicit(&out->tail, memory_order_relaxed);
  while (tail - w->head_seen >= RING_SIZE) {
    w->head_seen = atomic_load_explicit(&out->head, memory_order_acquire);
    if (tail - w->head_seen >= RING_SIZE) {
      drain(w);
      sched_yield();
    }
  }
  out->entry[tail & (RING_SIZE - 1)] = p;
  atomic_store_explicit(&out->tail, tail + 1, memory_order_release);
}

static void *run(void *arg) {
  struct worker *w = arg;
  void **slot = calloc(w->ws, sizeof *slot);
  if (!slot)
    bench_die("cannot allocate %" PRIu64 " slots", w->ws);
  uint64_t x = bench_seed(w->seed), ws = w->ws, min = w->min, span = w->span;
  /* REMOTE_PCT % of 2^32, compared with 32 random bits. */
  uint64_t remote_cut = (w->remote_pct << 32) / 100;
  uint64_t remote = 0, bytes = 0;

  pthread_barrier_wait(&start_line);
  w->start = bench_now();
  for (uint64_t i = 0; i < w->iters; i++) {
    uint64_t r = bench_next(&x);
    uint64_t k = bench_below((uint32_t)(r >> 32), ws);
    void *p = slot[k];
    if (p) {
      slot[k] = NULL;
      if ((uint32_t)r < remote_cut) {
        hand_over(w, p);
        remote++;
      } else {
        bench_free(p);
      }
    } else {
      uint64_t size = min + bench_below((uint32_t)r, span);
      char *q = bench_malloc(size);
      if (__builtin_expect(q == NULL, 0))
        bench_die("malloc(%" PRIu64 ") failed", size);
      q[0] = (char)size;
      slot[k] = q;
      bytes += size;
    }
    if (i % DRAIN_EVERY == 0)
      drain(w);
  }
  /* The producers of this ring push nothing after they count themselves
   * finished (release), so one drain after seeing all finished (acquire)
   * empties it for good. */
  atomic_fetch_add_explicit(&finished, 1, memory_order_release);
  while (atomic_load_explicit(&finished, memory_order_acquire) < nthreads) {
    drain(w);
    sched_yield();
  }
  drain(w);
  w->end = bench_now();

  for (uint64_t k = 0; k < ws; k++)
    bench_free(slot[k]);
  free(slot);
  w->remote_frees = remote;
  w->bytes = bytes;
  return NULL;
}

int main(int argc, char **argv) {
  uint64_t arg[7] = {2, 10000000, 400, 16, 1024, 0, BENCH_DEFAULT_SEED};
  static const char *const what[7] = {"THREADS", "ITERS",      "WS",  "MIN",
                                      "MAX",     "REMOTE_PCT", "SEED"};
  if (argc > 8)
    bench_die(
        "usage: %s [THREADS [ITERS [WS [MIN [MAX [REMOTE_PCT [SEED]]]]]]]",
        argv[0]);
  for (int i = 1; i < argc; i++)
    arg[i - 1] = bench_parse_count(argv[i], what[i - 1]);
  uint64_t threads = arg[0], ws = arg[2], min = arg[3], max = arg[4];
  if (threads < 1 || threads > 1024 || ws < 1 || min < 1 || max < min ||
      max - min >= UINT32_MAX || arg[5] > 100)
    bench_die("need 1 <= THREADS <= 1024, WS >= 1, 1 <= MIN <= MAX, "
              "REMOTE_PCT <= 100");

  nthreads = (int)threads;
  struct worker *w = aligned_alloc(CACHE_LINE, threads * sizeof *w);
  if (!w)
    bench_die("cannot allocate %" PRIu64 " workers", threads);
  memset(w, 0, threads * sizeof *w);
  pthread_barrier_init(&start_line, NULL, (unsigned)threads);
  for (uint64_t t = 0; t < threads; t++) {
    w[t].out = &w[(t + 1) % threads].in;
    /* Distinct, fixed streams per thread. */
    w[t].seed = arg[6] + t * 0xD1B54A32D192ED03ull;
    w[t].iters = arg[1];
    w[t].ws = ws;
    w[t].min = min;
    w[t].span = max - min + 1;
    w[t].remote_pct = arg[5];
  }
  for (uint64_t t = 0; t < threads; t++)
    if (pthread_create(&w[t].thread, NULL, run, &w[t]) != 0)
      bench_die("pthread_create failed");
  double start = 0, end = 0;
  uint64_t remote = 0, bytes = 0;
  for (uint64_t t = 0; t < threads; t++) {
    pthread_join(w[t].thread, NULL);
    if (t == 0 || w[t].start < start)
      start = w[t].start;
    if (w[t].end > end)
      end = w[t].end;
    remote += w[t].remote_frees;
    bytes += w[t].bytes;
  }
  pthread_barrier_destroy(&start_line);
  free(w);

  double secs = end - start;
  uint64_t ops = threads * arg[1];
  char head[160], tail[192];
  snprintf(head, sizeof head,
           "threads=%" PRIu64 " iters=%" PRIu64 " ws=%" PRIu64
           " remote_pct=%" PRIu64,
           threads, arg[1], ws, arg[5]);
  snprintf(tail, sizeof tail,
           "remote_frees=%" PRIu64 " min=%" PRIu64 " max=%" PRIu64
           " seed=%" PRIu64 " bytes=%" PRIu64 " seconds=%.6f",
           remote, min, max, arg[6], bytes, secs);
  bench_report(secs > 0 ? (double)ops / secs : 0, BENCH_ALLOC_NAME, head, tail);
  return 0;
}
