/* SPDX-License-Identifier: MIT */
// clang-format off
/* bench_threads.c - the thread shapes of TARGETS.md: how servers and
 * pipelines use an allocator from many threads.  One program, built per
 * allocator like bench_random_mixed; the first argument picks the shape.
 *
 *   bench_threads_<alloc> SHAPE [THREADS [ITERS [SEED]]] [--OPTION=N]...
 *
 * SHAPE         THREADS are             ITERS counts (default)
 * prodcons-pair     producers + consumers   blocks per producer (4000000)
 * prodcons-shared   producers + consumers   blocks per producer (4000000)
 * server            workers (lanes)         replacements per lane (1000000)
 * xthread           threads                 ops per thread (2000000)
 * fs-active         threads                 objects per thread (1000000)
 * fs-passive        threads                 objects per thread (1000000)
 * churn             threads alive at once   threads started in all (4000)
 *
 * Options: --min=N and --max=N (block sizes of prodcons, server and
 * xthread; prodcons-* names its measurement -fixed when they are equal,
 * -mixed otherwise), --ws=N (live slots per
 * worker), --life=N (server: replacements before a worker hands its slots
 * on), --remote-pct=N (xthread), --writes=N (fs-*: writes per object),
 * --blocks=N (churn: blocks per thread), --wait-ms=N (the wait past the
 * purge delay before the memory left behind is read).  See docs/BENCHMARKS.md
 * for the program shape each stands for.
 *
 * Every run prints one line
 *   Throughput = <ops/s> ops/s allocator=<name> workload=<shape...>
 *   threads=<T> ... peak_rss_kb=<K> start_rss_kb=<S> joined_rss_kb=<J>
 *   end_rss_kb=<E> left_kb=<E-S> minor_faults=<F> cpu_s=<C> seconds=<W>
 *   thp=<mode> ...
 * Ops are allocator calls (malloc and free), except in fs-*: objects.  The
 * time runs from the start of the first thread to the join of the last;
 * cpu_s is the process's CPU time over the same span (on a loaded machine
 * ops per CPU second moves less than ops per second).  start_rss_kb is read
 * before the measured threads start, after the main thread made the same few
 * calls that it makes at the end and one thread made them and exited, and
 * after the same wait as the end's: the C library's thread code is then
 * resident at both ends.  The benchmark's own arrays and thread stacks are
 * mapped by itself and unmapped before the end, so that the memory left
 * behind is the allocator's alone.  joined_rss_kb once all have been joined and
 * every block freed, end_rss_kb after the main thread waited --wait-ms
 * (past every allocator's purge delay) and made a few allocator calls, as a
 * program that goes on would, twice: allocators that give memory back only
 * from their own calls get the chance to.  The fs-* shapes also print
 * shared_lines=<L>: the 64-byte lines that objects of two different threads
 * occupied while both threads were running (0: no false sharing).
 */
// clang-format on
#include "bench_alloc.h"
#include "bench_harness.h"

#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define CACHE_LINE 64
#define RING_SIZE 1024  /* entries of a producer/consumer queue */
#define DRAIN_EVERY 32  /* xthread: ops between two looks at the inbox */
#define INBOX_LIMIT 512 /* xthread: blocks an inbox may hold */
#define STACK_SIZE (256 * 1024)
#define GUARD_SIZE 4096

/* ---- options ------------------------------------------------------------ */

static struct {
  const char *shape;
  uint64_t threads, iters, seed;
  uint64_t min, max, ws, life, remote_pct, writes, blocks, wait_ms;
} opt;

/* The benchmark's own memory (its arrays, queues and thread stacks) comes
 * from mmap and goes back with munmap, so that no allocator, the measured
 * one or glibc's, holds any of it: the figures of memory left behind are
 * the allocator's alone.  A 64-byte header keeps the mapping's length. */
static void *own_alloc(size_t size) {
  size_t len = size + CACHE_LINE;
  char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
  if (p == MAP_FAILED)
    bench_die("cannot map %zu bytes for the benchmark's own arrays", len);
  *(size_t *)p = len;
  return p + CACHE_LINE; /* zeroed, aligned to a line */
}

static void own_free(void *p) {
  if (p) {
    char *base = (char *)p - CACHE_LINE;
    munmap(base, *(size_t *)base);
  }
}

/* Threads run on stacks of their own, reused and unmapped after the run:
 * glibc would keep the stacks of joined threads cached and resident. */
struct thread {
  pthread_t id;
  void *stack;
};
static pthread_mutex_t stack_lock = PTHREAD_MUTEX_INITIALIZER;
static void *stack_free; /* a list through each free stack's lowest word */

static void start_thread(struct thread *t, void *(*fn)(void *), void *arg) {
  pthread_mutex_lock(&stack_lock);
  char *s = stack_free;
  if (s)
    stack_free = *(void **)s;
  pthread_mutex_unlock(&stack_lock);
  if (!s) { /* a guard page below the stack, as glibc's have */
    s = mmap(NULL, STACK_SIZE + GUARD_SIZE, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (s == MAP_FAILED || mprotect(s, GUARD_SIZE, PROT_NONE) != 0)
      bench_die("cannot map a thread stack");
    s += GUARD_SIZE;
  }
  t->stack = s;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstack(&attr, s, STACK_SIZE);
  if (pthread_create(&t->id, &attr, fn, arg) != 0)
    bench_die("pthread_create failed");
  pthread_attr_destroy(&attr);
}

static void join_thread(struct thread *t) {
  pthread_join(t->id, NULL);
  pthread_mutex_lock(&stack_lock);
  *(void **)t->stack = stack_free;
  stack_free = t->stack;
  pthread_mutex_unlock(&stack_lock);
}

/* Once every thread has been joined. */
static void unmap_stacks(void) {
  while (stack_free) {
    char *s = stack_free;
    stack_free = *(void **)s;
    munmap(s - GUARD_SIZE, STACK_SIZE + GUARD_SIZE);
  }
}

/* A distinct fixed stream per thread (or lane, or generation). */
static uint64_t stream_seed(uint64_t i) {
  return bench_seed(opt.seed + i * 0xD1B54A32D192ED03ull);
}

/* The size drawn from [min, max] with 32 random bits. */
static inline uint64_t draw_size(uint32_t bits, uint64_t min, uint64_t max) {
  return min + bench_below(bits, max - min + 1);
}

static inline char *xmalloc(uint64_t size) {
  char *p = bench_malloc(size);
  if (__builtin_expect(p == NULL, 0))
    bench_die("malloc(%" PRIu64 ") failed", size);
  /* The first and the last byte: a program fills what it asks for, and a
   * big block's last page is then resident too. */
  p[0] = (char)size;
  p[size - 1] = (char)size;
  return p;
}

static void *xcalloc(size_t n, size_t size) {
  if (size && n > SIZE_MAX / size)
    bench_die("the benchmark's own arrays are too large");
  return own_alloc(n * size);
}

static uint64_t ops_total; /* every shape adds its ops here */

/* ---- producer/consumer -------------------------------------------------- */
/* P producers allocate blocks and hand them to C consumers, which read and
 * free them.  prodcons-pair: one bounded single-producer single-consumer
 * queue per producer (producer i feeds consumer i mod C); prodcons-shared:
 * one bounded multi-producer multi-consumer queue for all.  Blocks are of
 * sizes MIN..MAX (64 B by default; 8..512 for the mixed measurement). */

/* Where a thread that cannot go on (a full queue, an empty one) sleeps
 * until another rings, as a pipeline's threads block on a condition: on
 * two cores, threads that spun with sched_yield made runs of one binary
 * differ 3-8x by where the scheduler put them.  A waiter spins a little
 * first; the ringer pays a fence and one load unless someone sleeps. */
struct bell {
  _Atomic uint32_t rings;
  _Atomic uint32_t sleepers;
};

#define SPINS 256     /* polls before sleeping */
#define RING_EVERY 32 /* entries between two rings of the other side */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static void bell_ring(struct bell *b) {
  /* Orders the caller's progress before the load of sleepers; the waiter
   * orders its count before its check of that progress. */
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&b->sleepers, memory_order_relaxed)) {
    atomic_fetch_add_explicit(&b->rings, 1, memory_order_relaxed);
    syscall(SYS_futex, &b->rings, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
  }
}

/* Returns once ready(arg) holds. */
static void bell_wait(struct bell *b, bool (*ready)(void *), void *arg) {
  for (int i = 0; i < SPINS; i++) {
    if (ready(arg))
      return;
    cpu_relax();
  }
  for (;;) {
    uint32_t seen = atomic_load_explicit(&b->rings, memory_order_relaxed);
    atomic_fetch_add_explicit(&b->sleepers, 1, memory_order_seq_cst);
    bool go = ready(arg);
    if (!go)
      syscall(SYS_futex, &b->rings, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
    atomic_fetch_sub_explicit(&b->sleepers, 1, memory_order_relaxed);
    if (go || ready(arg))
      return;
  }
}

struct ring {
  alignas(CACHE_LINE) _Atomic uint64_t tail; /* the producer's */
  alignas(CACHE_LINE) _Atomic uint64_t head; /* the consumer's */
  struct bell space; /* rung by the consumer when it has taken entries */
  alignas(CACHE_LINE) void *entry[RING_SIZE];
};

/* The shared queue: a bounded array of cells whose sequence numbers tell
 * producers and consumers whose turn a cell is (Vyukov's bounded MPMC
 * queue). */
struct cell {
  _Atomic uint64_t seq;
  void *p;
};
static struct {
  alignas(CACHE_LINE) _Atomic uint64_t tail;
  alignas(CACHE_LINE) _Atomic uint64_t head;
  alignas(CACHE_LINE) struct bell space; /* rung by consumers */
  alignas(CACHE_LINE) struct bell items; /* rung by producers */
  alignas(CACHE_LINE) struct cell cell[RING_SIZE];
} shared_q;

static bool shared_push(void *p) {
  uint64_t pos = atomic_load_explicit(&shared_q.tail, memory_order_relaxed);
  for (;;) {
    struct cell *c = &shared_q.cell[pos & (RING_SIZE - 1)];
    uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
    int64_t d = (int64_t)(seq - pos);
    if (d == 0) {
      if (atomic_compare_exchange_weak_explicit(&shared_q.tail, &pos, pos + 1,
                                                memory_order_relaxed,
                                                memory_order_relaxed)) {
        c->p = p;
        atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
        return true;
      }
    } else if (d < 0) {
      return false; /* full */
    } else {
      pos = atomic_load_explicit(&shared_q.tail, memory_order_relaxed);
    }
  }
}

static void *shared_pop(void) {
  uint64_t pos = atomic_load_explicit(&shared_q.head, memory_order_relaxed);
  for (;;) {
    struct cell *c = &shared_q.cell[pos & (RING_SIZE - 1)];
    uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
    int64_t d = (int64_t)(seq - (pos + 1));
    if (d == 0) {
      if (atomic_compare_exchange_weak_explicit(&shared_q.head, &pos, pos + 1,
                                                memory_order_relaxed,
                                                memory_order_relaxed)) {
        void *p = c->p;
        atomic_store_explicit(&c->seq, pos + RING_SIZE, memory_order_release);
        return p;
      }
    } else if (d < 0) {
      return NULL; /* empty */
    } else {
      pos = atomic_load_explicit(&shared_q.head, memory_order_relaxed);
    }
  }
}

struct pc {
  alignas(CACHE_LINE) struct ring ring; /* producer i's queue (pair) */
  struct bell work; /* consumer c's: rung by its producers (pair) */
  uint64_t index, seed, sum;
  struct thread thread;
};
static struct pc *pcs;
static uint64_t producers, consumers;
static bool pc_shared;
static atomic_uint_fast64_t producers_done;

static bool ring_has_space(void *arg) {
  struct ring *r = arg;
  return atomic_load_explicit(&r->tail, memory_order_relaxed) -
             atomic_load_explicit(&r->head, memory_order_acquire) <
         RING_SIZE;
}

/* The shared queue's next cell to push to is free (or taken by another
 * producer already: then there is a next one to try), or to pop from is
 * filled.  A cell, not the indices: a thread preempted between claiming a
 * cell and filling or emptying it leaves the indices moved and the cell
 * not ready, and the others then sleep rather than spin while it waits for
 * a core. */
static bool shared_has_space(void *arg) {
  (void)arg;
  uint64_t pos = atomic_load_explicit(&shared_q.tail, memory_order_relaxed);
  struct cell *c = &shared_q.cell[pos & (RING_SIZE - 1)];
  return (int64_t)(atomic_load_explicit(&c->seq, memory_order_acquire) - pos) >=
         0;
}

static bool shared_has_item(void) {
  uint64_t pos = atomic_load_explicit(&shared_q.head, memory_order_relaxed);
  struct cell *c = &shared_q.cell[pos & (RING_SIZE - 1)];
  return (int64_t)(atomic_load_explicit(&c->seq, memory_order_acquire) -
                   (pos + 1)) >= 0;
}

/* Consumer w has something to do: a block waiting, or nothing more to come. */
static bool has_work(void *arg) {
  const struct pc *w = arg;
  if (atomic_load_explicit(&producers_done, memory_order_acquire) == producers)
    return true;
  if (pc_shared)
    return shared_has_item();
  for (uint64_t i = w->index; i < producers; i += consumers)
    if (atomic_load_explicit(&pcs[i].ring.tail, memory_order_relaxed) !=
        atomic_load_explicit(&pcs[i].ring.head, memory_order_relaxed))
      return true;
  return false;
}

static void *producer(void *arg) {
  struct pc *w = arg;
  struct pc *cons = pcs + producers;
  struct bell *work =
      pc_shared ? &shared_q.items : &cons[w->index % consumers].work;
  uint64_t x = w->seed, sum = 0, tail = 0, head_seen = 0;
  for (uint64_t i = 0; i < opt.iters; i++) {
    uint64_t size = draw_size((uint32_t)bench_next(&x), opt.min, opt.max);
    char *p = xmalloc(size);
    sum += (unsigned char)p[0];
    if (pc_shared) {
      while (!shared_push(p)) {
        bell_ring(work); /* before sleeping: the consumers may be asleep */
        bell_wait(&shared_q.space, shared_has_space, NULL);
      }
    } else {
      while (tail - head_seen >= RING_SIZE) {
        head_seen = atomic_load_explicit(&w->ring.head, memory_order_acquire);
        if (tail - head_seen >= RING_SIZE) {
          bell_ring(work);
          bell_wait(&w->ring.space, ring_has_space, &w->ring);
        }
      }
      w->ring.entry[tail & (RING_SIZE - 1)] = p;
      atomic_store_explicit(&w->ring.tail, ++tail, memory_order_release);
    }
    if (i % RING_EVERY == 0)
      bell_ring(work);
  }
  w->sum = sum;
  atomic_fetch_add_explicit(&producers_done, 1, memory_order_release);
  /* Every consumer may be waiting for this. */
  if (pc_shared)
    bell_ring(&shared_q.items);
  else
    for (uint64_t c = 0; c < consumers; c++)
      bell_ring(&cons[c].work);
  return NULL;
}

/* Frees what is waiting in producer ring r; returns how many. */
static uint64_t consume_ring(struct ring *r, uint64_t *sum) {
  uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
  uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
  for (uint64_t h = head; h != tail; h++) {
    char *p = r->entry[h & (RING_SIZE - 1)];
    *sum += (unsigned char)p[0];
    bench_free(p);
  }
  atomic_store_explicit(&r->head, tail, memory_order_release);
  if (tail != head)
    bell_ring(&r->space);
  return tail - head;
}

static void *consumer(void *arg) {
  struct pc *w = arg; /* consumer c uses pcs[c]'s sum field */
  uint64_t sum = 0;
  for (;;) {
    /* Producers push nothing after they count themselves done (release),
     * so one more sweep after seeing them all done (acquire) empties every
     * queue for good. */
    bool last = atomic_load_explicit(&producers_done, memory_order_acquire) ==
                producers;
    uint64_t got = 0;
    if (pc_shared) {
      for (char *p; (p = shared_pop());) {
        sum += (unsigned char)p[0];
        bench_free(p);
        if (++got % RING_EVERY == 0)
          bell_ring(&shared_q.space);
      }
      if (got)
        bell_ring(&shared_q.space);
    } else {
      for (uint64_t i = w->index; i < producers; i += consumers)
        got += consume_ring(&pcs[i].ring, &sum);
    }
    if (last)
      break;
    if (!got)
      bell_wait(pc_shared ? &shared_q.items : &w->work, has_work, w);
  }
  w->sum = sum; /* read by main after the join */
  return NULL;
}

static const char *prodcons(void) {
  if (opt.threads < 2)
    bench_die("prodcons needs THREADS >= 2 (producers + consumers)");
  pc_shared = strcmp(opt.shape, "prodcons-shared") == 0;
  producers = opt.threads - opt.threads / 2;
  consumers = opt.threads / 2;
  for (uint64_t i = 0; i < RING_SIZE; i++)
    atomic_store(&shared_q.cell[i].seq, i);
  pcs = xcalloc(2 * producers, sizeof *pcs);
  struct pc *cons = pcs + producers;
  for (uint64_t i = 0; i < producers; i++) {
    pcs[i].index = i;
    pcs[i].seed = stream_seed(i);
  }
  for (uint64_t c = 0; c < consumers; c++)
    cons[c].index = c;
  return NULL;
}

static void prodcons_run(void) {
  struct pc *cons = pcs + producers;
  for (uint64_t c = 0; c < consumers; c++)
    start_thread(&cons[c].thread, consumer, &cons[c]);
  for (uint64_t i = 0; i < producers; i++)
    start_thread(&pcs[i].thread, producer, &pcs[i]);
  uint64_t made = 0, eaten = 0;
  for (uint64_t i = 0; i < producers; i++) {
    join_thread(&pcs[i].thread);
    made += pcs[i].sum;
  }
  for (uint64_t c = 0; c < consumers; c++) {
    join_thread(&cons[c].thread);
    eaten += cons[c].sum;
  }
  /* Every block reached a consumer intact. */
  if (made != eaten)
    bench_die("prodcons: blocks lost or corrupted (%" PRIu64 " vs %" PRIu64 ")",
              made, eaten);
  ops_total = 2 * producers * opt.iters;
  own_free(pcs);
}

/* ---- server ------------------------------------------------------------- */
/* T lanes, each a worker thread holding WS live blocks of 8..MAX bytes and
 * replacing random ones (free the old, allocate a new one).  After LIFE
 * replacements the worker starts its successor, hands it the slots and
 * exits; the successor frees those blocks as it replaces them, long after
 * the thread that allocated them is gone. */

struct lane {
  void **slot;
  uint64_t rng, left, generations, ops;
  struct thread cur;  /* the running worker; its stack set before it starts */
  struct thread prev; /* the predecessor, joined by its successor */
  bool has_prev;
  _Atomic bool done;
  struct thread last; /* the lane's final thread, joined by main */
};
static struct lane *lanes;

static void *server_worker(void *arg) {
  struct lane *l = arg;
  if (l->has_prev)
    join_thread(&l->prev); /* the predecessor is gone, all of it */
  uint64_t n = l->left < opt.life ? l->left : opt.life;
  uint64_t x = l->rng, ws = opt.ws, max = opt.max;
  uint64_t min = opt.min, ops = n;
  void **slot = l->slot;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t r = bench_next(&x);
    uint64_t k = bench_below((uint32_t)(r >> 32), ws);
    if (slot[k]) {
      bench_free(slot[k]);
      ops++;
    }
    slot[k] = xmalloc(draw_size((uint32_t)r, min, max));
  }
  l->ops += ops;
  l->rng = x;
  l->left -= n;
  l->generations++;
  if (l->left) {
    l->prev = (struct thread){pthread_self(), l->cur.stack};
    l->has_prev = true;
    start_thread(&l->cur, server_worker, l); /* l is the successor's now */
    return NULL;
  }
  for (uint64_t k = 0; k < ws; k++)
    if (slot[k]) {
      bench_free(slot[k]);
      l->ops++;
    }
  l->last = (struct thread){pthread_self(), l->cur.stack};
  atomic_store_explicit(&l->done, true, memory_order_release);
  return NULL;
}

static const char *server(void) {
  lanes = xcalloc(opt.threads, sizeof *lanes);
  for (uint64_t t = 0; t < opt.threads; t++) {
    lanes[t].slot = xcalloc(opt.ws, sizeof(void *));
    lanes[t].rng = stream_seed(t);
    lanes[t].left = opt.iters;
  }
  return NULL;
}

static char server_fields[64];

static void server_run(void) {
  for (uint64_t t = 0; t < opt.threads; t++) {
    start_thread(&lanes[t].cur, server_worker, &lanes[t]);
  }
  uint64_t generations = 0, ops = 0;
  for (uint64_t t = 0; t < opt.threads; t++) {
    /* The lane's last thread is known only once it has finished. */
    while (!atomic_load_explicit(&lanes[t].done, memory_order_acquire))
      usleep(1000);
    join_thread(&lanes[t].last);
    generations += lanes[t].generations;
    ops += lanes[t].ops;
    own_free(lanes[t].slot);
  }
  own_free(lanes);
  ops_total = ops;
  snprintf(server_fields, sizeof server_fields,
           "workers=%" PRIu64 " life=%" PRIu64, generations, opt.life);
}

/* ---- random cross-thread ------------------------------------------------ */
/* T threads each run the Mixed loop on WS slots with sizes 16..MAX; when an
 * op empties a slot, with probability REMOTE_PCT % the block goes to a
 * random other thread's inbox (a lock-free stack linked through the blocks
 * themselves) instead of being freed; each thread frees what its inbox
 * holds every DRAIN_EVERY ops.  An inbox holds at most INBOX_LIMIT blocks:
 * a sender facing a full one frees its own inbox and yields until there is
 * room, as a program's queues push back; without that, a receiver that is
 * not scheduled lets the others pile up blocks, and peak RSS measures the
 * scheduler. */

struct xt {
  alignas(CACHE_LINE) _Atomic(void *) inbox;
  _Atomic uint64_t queued; /* about how many blocks the inbox holds */
  alignas(CACHE_LINE) uint64_t seed, sent, ops;
  struct thread thread;
};
static struct xt *xts;
static atomic_uint xt_finished;

static inline uint64_t xt_drain(struct xt *w) {
  if (!atomic_load_explicit(&w->inbox, memory_order_relaxed))
    return 0;
  void *p = atomic_exchange_explicit(&w->inbox, NULL, memory_order_acquire);
  uint64_t n = 0;
  while (p) {
    void *next = *(void **)p;
    bench_free(p);
    p = next;
    n++;
  }
  atomic_fetch_sub_explicit(&w->queued, n, memory_order_relaxed);
  return n;
}

static void *xthread_worker(void *arg) {
  struct xt *w = arg;
  uint64_t t = (uint64_t)(w - xts), T = opt.threads, ws = opt.ws;
  void **slot = xcalloc(ws, sizeof *slot);
  uint64_t x = w->seed, sent = 0, ops = 0;
  uint64_t cut = T > 1 ? (opt.remote_pct << 32) / 100 : 0;
  for (uint64_t i = 0; i < opt.iters; i++) {
    uint64_t r = bench_next(&x);
    uint64_t k = bench_below((uint32_t)(r >> 32), ws);
    void *p = slot[k];
    if (p) {
      slot[k] = NULL;
      if ((uint32_t)r < cut) {
        /* A second draw picks the receiver among the others. */
        uint64_t u = bench_below((uint32_t)bench_next(&x), T - 1);
        struct xt *to = &xts[u >= t ? u + 1 : u];
        while (atomic_load_explicit(&to->queued, memory_order_relaxed) >=
               INBOX_LIMIT) {
          ops += xt_drain(w);
          sched_yield();
        }
        void *head = atomic_load_explicit(&to->inbox, memory_order_relaxed);
        do
          *(void **)p = head;
        while (!atomic_compare_exchange_weak_explicit(
            &to->inbox, &head, p, memory_order_release, memory_order_relaxed));
        atomic_fetch_add_explicit(&to->queued, 1, memory_order_relaxed);
        sent++;
      } else {
        bench_free(p);
        ops++;
      }
    } else {
      slot[k] = xmalloc(draw_size((uint32_t)r, opt.min, opt.max));
      ops++;
    }
    if (i % DRAIN_EVERY == 0)
      ops += xt_drain(w);
  }
  atomic_fetch_add_explicit(&xt_finished, 1, memory_order_release);
  while (atomic_load_explicit(&xt_finished, memory_order_acquire) < T) {
    ops += xt_drain(w);
    sched_yield();
  }
  ops += xt_drain(w);
  for (uint64_t k = 0; k < ws; k++)
    if (slot[k]) {
      bench_free(slot[k]);
      ops++;
    }
  own_free(slot);
  w->sent = sent;
  w->ops = ops;
  return NULL;
}

static const char *xthread(void) {
  xts = xcalloc(opt.threads, sizeof *xts);
  for (uint64_t t = 0; t < opt.threads; t++)
    xts[t].seed = stream_seed(t);
  return NULL;
}

static char xthread_fields[64];

static void xthread_run(void) {
  for (uint64_t t = 0; t < opt.threads; t++)
    start_thread(&xts[t].thread, xthread_worker, &xts[t]);
  uint64_t ops = 0, sent = 0;
  for (uint64_t t = 0; t < opt.threads; t++) {
    join_thread(&xts[t].thread);
    ops += xts[t].ops;
    sent += xts[t].sent;
  }
  own_free(xts);
  ops_total = ops;
  snprintf(xthread_fields, sizeof xthread_fields, "remote_frees=%" PRIu64,
           sent);
}

/* ---- false sharing ------------------------------------------------------ */
/* Each thread allocates an 8-byte object, writes it WRITES times, frees it,
 * ITERS times.  fs-passive: first the main thread allocates one object per
 * worker, back to back, and each worker starts by freeing its own (an
 * allocator that hands a freed block to the freeing thread then gives the
 * worker memory on the line of another worker's object).  Every thread
 * records the lines its objects occupied; any line in two threads' records
 * is reported: a line that two threads' live objects shared. */

#define OBJECT_SIZE 8
#define LINE_SET 4096 /* lines one thread may record (a power of two) */

struct fs {
  alignas(CACHE_LINE) void *given; /* fs-passive: the object from main */
  uint64_t seed, lines, overflow;
  uint64_t *line; /* open addressing, 0 = empty */
  struct thread thread;
};
static struct fs *fss;
/* All workers record their lines between the two barriers: none has exited
 * yet, so none of its memory can have passed to another thread, and the
 * lines in two threads' records were used by both at the same time. */
static pthread_barrier_t fs_start, fs_end;

static void record_line(struct fs *w, uintptr_t line) {
  uint64_t key = line + 1;                          /* never 0 */
  uint64_t h = (key * 0x9E3779B97F4A7C15ull) >> 52; /* 12 bits */
  for (uint64_t i = 0; i < LINE_SET; i++) {
    uint64_t *e = &w->line[(h + i) & (LINE_SET - 1)];
    if (*e == key)
      return;
    if (*e == 0) {
      if (w->lines < LINE_SET / 2) { /* keep the table sparse */
        *e = key;
        w->lines++;
      } else {
        w->overflow++;
      }
      return;
    }
  }
}

static bool has_line(const struct fs *w, uint64_t key) {
  uint64_t h = (key * 0x9E3779B97F4A7C15ull) >> 52;
  for (uint64_t i = 0; i < LINE_SET; i++) {
    uint64_t e = w->line[(h + i) & (LINE_SET - 1)];
    if (e == key)
      return true;
    if (e == 0)
      return false;
  }
  return false;
}

static void *fs_worker(void *arg) {
  struct fs *w = arg;
  if (w->given)
    bench_free(w->given);
  pthread_barrier_wait(&fs_start);
  uintptr_t last = 0;
  uint64_t writes = opt.writes;
  for (uint64_t i = 0; i < opt.iters; i++) {
    volatile uint64_t *p = bench_malloc(OBJECT_SIZE);
    if (!p)
      bench_die("malloc failed");
    if ((uintptr_t)p != last) { /* malloc/free loops reuse one block */
      last = (uintptr_t)p;
      record_line(w, last / CACHE_LINE);
      record_line(w, (last + OBJECT_SIZE - 1) / CACHE_LINE);
    }
    for (uint64_t j = 0; j < writes; j++)
      *p += j;
    bench_free((void *)p);
  }
  pthread_barrier_wait(&fs_end);
  return NULL;
}

static const char *false_sharing(void) {
  fss = xcalloc(opt.threads, sizeof *fss);
  for (uint64_t t = 0; t < opt.threads; t++)
    fss[t].line = xcalloc(LINE_SET, sizeof(uint64_t));
  pthread_barrier_init(&fs_start, NULL, (unsigned)opt.threads);
  pthread_barrier_init(&fs_end, NULL, (unsigned)opt.threads);
  return NULL;
}

static char fs_fields[96];

static void false_sharing_run(void) {
  bool passive = strcmp(opt.shape, "fs-passive") == 0;
  if (passive) /* back to back, as one thread sets up work for others */
    for (uint64_t t = 0; t < opt.threads; t++)
      fss[t].given = xmalloc(OBJECT_SIZE);
  for (uint64_t t = 0; t < opt.threads; t++)
    start_thread(&fss[t].thread, fs_worker, &fss[t]);
  for (uint64_t t = 0; t < opt.threads; t++)
    join_thread(&fss[t].thread);
  uint64_t shared = 0, overflow = 0;
  for (uint64_t t = 0; t < opt.threads; t++) {
    overflow += fss[t].overflow;
    for (uint64_t i = 0; i < LINE_SET; i++) {
      uint64_t key = fss[t].line[i];
      if (!key)
        continue;
      for (uint64_t u = t + 1; u < opt.threads; u++)
        if (has_line(&fss[u], key)) {
          shared++;
          break;
        }
    }
  }
  for (uint64_t t = 0; t < opt.threads; t++)
    own_free(fss[t].line);
  own_free(fss);
  pthread_barrier_destroy(&fs_start);
  pthread_barrier_destroy(&fs_end);
  ops_total = opt.threads * opt.iters;
  snprintf(fs_fields, sizeof fs_fields,
           "shared_lines=%" PRIu64 " lines_unrecorded=%" PRIu64
           " writes=%" PRIu64,
           shared, overflow, opt.writes);
}

/* ---- thread churn ------------------------------------------------------- */
/* ITERS short-lived threads, THREADS at a time.  Each frees the blocks an
 * earlier thread left in the stash, allocates BLOCKS blocks (7 in 8 of
 * 8..1024 B, 1 in 8 of 1..16 KiB), frees all but every tenth, puts those in
 * the stash and exits. */

static pthread_mutex_t stash_lock = PTHREAD_MUTEX_INITIALIZER;
static void **stash;
static uint64_t stash_n, stash_cap;
static atomic_uint_fast64_t churn_ops, churn_seq;

/* Frees the blocks in the stash when called, taken a chunk at a time so
 * that no block is freed under the lock.  The stash's array stays: mapping
 * and unmapping one per thread cost every thread a TLB shootdown. */
static void stash_free_all(uint64_t *ops) {
  enum { CHUNK = 256 };
  void *chunk[CHUNK];
  pthread_mutex_lock(&stash_lock);
  uint64_t left = stash_n; /* later blocks are for later threads */
  pthread_mutex_unlock(&stash_lock);
  while (left) {
    pthread_mutex_lock(&stash_lock);
    uint64_t k = left < CHUNK ? left : CHUNK;
    if (k > stash_n) /* another thread took some at the same time */
      k = left = stash_n;
    stash_n -= k;
    memcpy(chunk, stash + stash_n, k * sizeof *chunk);
    pthread_mutex_unlock(&stash_lock);
    for (uint64_t i = 0; i < k; i++)
      bench_free(chunk[i]);
    left -= k;
    *ops += k;
  }
}

static void *churn_worker(void *arg) {
  (void)arg;
  uint64_t ops = 0, n = opt.blocks;
  uint64_t x = stream_seed(atomic_fetch_add(&churn_seq, 1));
  stash_free_all(&ops);
  void **held = bench_malloc(n * sizeof *held);
  void **keep = bench_malloc((n / 10 + 1) * sizeof *keep);
  if (!held || !keep)
    bench_die("malloc failed");
  for (uint64_t i = 0; i < n; i++) {
    uint64_t r = bench_next(&x);
    uint64_t size = (r >> 61) == 0 ? draw_size((uint32_t)r, 1024, 16384)
                                   : draw_size((uint32_t)r, 8, 1024);
    held[i] = xmalloc(size);
  }
  uint64_t kept = 0;
  for (uint64_t i = 0; i < n; i++) {
    if (i % 10 == 9)
      keep[kept++] = held[i];
    else
      bench_free(held[i]);
  }
  bench_free(held);
  ops += n + 2 + (n - kept) + 2; /* mallocs, then frees (keep's below) */
  pthread_mutex_lock(&stash_lock);
  if (stash_n + kept > stash_cap) {
    stash_cap = 2 * (stash_n + kept);
    void **grown = xcalloc(stash_cap, sizeof *stash);
    if (stash)
      memcpy(grown, stash, stash_n * sizeof *stash);
    own_free(stash);
    stash = grown;
  }
  memcpy(stash + stash_n, keep, kept * sizeof *keep);
  stash_n += kept;
  pthread_mutex_unlock(&stash_lock);
  bench_free(keep);
  atomic_fetch_add(&churn_ops, ops);
  return NULL;
}

static const char *churn(void) { return NULL; }

static void churn_run(void) {
  uint64_t at_once = opt.threads;
  struct thread *t = xcalloc(at_once, sizeof *t);
  for (uint64_t i = 0; i < opt.iters; i++) {
    uint64_t k = i % at_once;
    if (i >= at_once)
      join_thread(&t[k]);
    start_thread(&t[k], churn_worker, NULL);
  }
  for (uint64_t i = 0; i < at_once && i < opt.iters; i++)
    join_thread(&t[i]);
  own_free(t);
  uint64_t ops = atomic_load(&churn_ops);
  stash_free_all(&ops); /* the last threads' blocks, freed by main */
  own_free(stash);
  stash = NULL;
  stash_cap = 0;
  ops_total = ops;
}

/* ---- main --------------------------------------------------------------- */

struct shape {
  const char *name;
  uint64_t iters, min, max, ws;
  const char *(*setup)(void);
  void (*run)(void);
  const char *fields; /* extra result fields, filled by run */
};

static const struct shape shapes[] = {
    {"prodcons-pair", 4000000, 64, 64, 0, prodcons, prodcons_run, ""},
    {"prodcons-shared", 4000000, 64, 64, 0, prodcons, prodcons_run, ""},
    {"server", 1000000, 8, 1024, 1000, server, server_run, server_fields},
    {"xthread", 2000000, 16, 16384, 400, xthread, xthread_run, xthread_fields},
    {"fs-active", 1000000, 0, 0, 0, false_sharing, false_sharing_run,
     fs_fields},
    {"fs-passive", 1000000, 0, 0, 0, false_sharing, false_sharing_run,
     fs_fields},
    {"churn", 4000, 0, 0, 0, churn, churn_run, ""},
};

/* The main thread's calls after the wait: a few blocks of every tier. */
static void main_thread_calls(void) {
  enum { N = 256 };
  void *p[N];
  uint64_t x = stream_seed(999);
  for (int i = 0; i < N; i++)
    p[i] = xmalloc(draw_size((uint32_t)bench_next(&x), 8, 16384));
  for (int i = 0; i < N; i++)
    bench_free(p[i]);
}

/* Waits past the purge delay and makes the main thread's calls, twice: an
 * allocator that gives memory back only from its own calls gets the chance
 * to. */
static void settle(void) {
  for (int round = 0; round < 2; round++) {
    usleep((useconds_t)(opt.wait_ms * 1000));
    main_thread_calls();
  }
}

static void *warm_up(void *arg) {
  (void)arg;
  main_thread_calls();
  return NULL;
}

/* The kernel's transparent huge page mode: with "always", the first touch
 * of a 2 MiB-aligned range can make 2 MiB resident at once, so RSS figures
 * are comparable only within one mode. */
static const char *thp_mode(void) {
  static char buf[128];
  if (bench_read_proc("/sys/kernel/mm/transparent_hugepage/enabled", buf,
                      sizeof buf) <= 0)
    return "unknown";
  char *open = strchr(buf, '['), *close = open ? strchr(open, ']') : NULL;
  if (!close)
    return "unknown";
  *close = 0;
  return open + 1;
}

static double cpu_seconds(struct rusage *ru) {
  getrusage(RUSAGE_SELF, ru);
  return (double)ru->ru_utime.tv_sec + (double)ru->ru_utime.tv_usec * 1e-6 +
         (double)ru->ru_stime.tv_sec + (double)ru->ru_stime.tv_usec * 1e-6;
}

static _Noreturn void usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s SHAPE [THREADS [ITERS [SEED]]] [--max=N] [--ws=N] "
          "[--life=N] [--remote-pct=N] [--writes=N] [--blocks=N] "
          "[--wait-ms=N]\nshapes:",
          argv0);
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
    fprintf(stderr, " %s", shapes[i].name);
  fputc('\n', stderr);
  exit(2);
}

int main(int argc, char **argv) {
  if (argc < 2)
    usage(argv[0]);
  const struct shape *sh = NULL;
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
    if (strcmp(argv[1], shapes[i].name) == 0)
      sh = &shapes[i];
  if (!sh)
    usage(argv[0]);
  opt.shape = sh->name;
  opt.threads = 2;
  opt.iters = sh->iters;
  opt.seed = BENCH_DEFAULT_SEED;
  opt.min = sh->min;
  opt.max = sh->max;
  opt.ws = sh->ws;
  opt.life = 20000;
  opt.remote_pct = 50;
  opt.writes = 1000;
  opt.blocks = 2000;
  opt.wait_ms = 200;
  static const char *const what[] = {"THREADS", "ITERS", "SEED"};
  uint64_t *pos[] = {&opt.threads, &opt.iters, &opt.seed};
  int npos = 0;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "--", 2) != 0) {
      if (npos == 3)
        usage(argv[0]);
      *pos[npos] = bench_parse_count(a, what[npos]);
      npos++;
      continue;
    }
    static const struct {
      const char *name;
      uint64_t *v;
    } named[] = {{"min", &opt.min},
                 {"max", &opt.max},
                 {"ws", &opt.ws},
                 {"life", &opt.life},
                 {"remote-pct", &opt.remote_pct},
                 {"writes", &opt.writes},
                 {"blocks", &opt.blocks},
                 {"wait-ms", &opt.wait_ms}};
    const char *eq = strchr(a, '=');
    size_t len = eq ? (size_t)(eq - a - 2) : 0;
    size_t j = 0;
    for (; j < sizeof named / sizeof *named; j++)
      if (eq && strlen(named[j].name) == len &&
          strncmp(a + 2, named[j].name, len) == 0)
        break;
    if (j == sizeof named / sizeof *named)
      usage(argv[0]);
    *named[j].v = bench_parse_count(eq + 1, named[j].name);
  }
  if (opt.threads < 1 || opt.threads > 1024 || opt.iters < 1 ||
      opt.remote_pct > 100 || opt.life < 1 || opt.blocks < 1 ||
      (sh->ws && opt.ws < 1) ||
      (sh->max && (opt.min < 8 || opt.max < opt.min || opt.max > 1 << 26)))
    bench_die("need 1 <= THREADS <= 1024, ITERS >= 1, 8 <= MIN <= MAX, "
              "WS >= 1, LIFE >= 1, BLOCKS >= 1, REMOTE_PCT <= 100");

  sh->setup();
  /* The main thread's own calls before the start, so that what they keep
   * is in the baseline as well as in the end figure; then one thread that
   * makes them and exits, so that the C library's code for starting and
   * ending threads is resident before the start as after the end. */
  main_thread_calls();
  struct thread warm;
  start_thread(&warm, warm_up, NULL);
  join_thread(&warm);
  unmap_stacks();
  settle(); /* what that thread left is gone before the start, as at the end */
  long start_rss = bench_rss_kb();
  struct rusage ru0, ru1;
  double cpu0 = cpu_seconds(&ru0);
  double t0 = bench_now();
  sh->run();
  double secs = bench_now() - t0;
  unmap_stacks();
  double cpu = cpu_seconds(&ru1) - cpu0;
  long faults = ru1.ru_minflt - ru0.ru_minflt;
  long joined_rss = bench_rss_kb();
  settle();
  long end_rss = bench_rss_kb();

  char workload[64], head[256], tail[512];
  if (strncmp(sh->name, "prodcons", 8) == 0)
    snprintf(workload, sizeof workload, "%s-%s", sh->name,
             opt.min == opt.max ? "fixed" : "mixed");
  else if (sh->max && (opt.min != sh->min || opt.max != sh->max))
    snprintf(workload, sizeof workload, "%s-%" PRIu64 "-%" PRIu64, sh->name,
             opt.min, opt.max);
  else
    snprintf(workload, sizeof workload, "%s", sh->name);
  snprintf(head, sizeof head,
           "workload=%s threads=%" PRIu64 " iters=%" PRIu64 " ops=%" PRIu64,
           workload, opt.threads, opt.iters, ops_total);
  snprintf(tail, sizeof tail,
           "start_rss_kb=%ld joined_rss_kb=%ld end_rss_kb=%ld left_kb=%ld "
           "minor_faults=%ld cpu_s=%.6f ops_per_cpu_s=%.0f seconds=%.6f "
           "thp=%s seed=%" PRIu64 " min=%" PRIu64 " max=%" PRIu64 " ws=%" PRIu64
           "%s%s",
           start_rss, joined_rss, end_rss, end_rss - start_rss, faults, cpu,
           cpu > 0 ? (double)ops_total / cpu : 0, secs, thp_mode(), opt.seed,
           opt.min, opt.max, opt.ws, *sh->fields ? " " : "", sh->fields);
  bench_report(secs > 0 ? (double)ops_total / secs : 0, BENCH_ALLOC_NAME, head,
               tail);
  return 0;
}
