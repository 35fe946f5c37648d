/* SPDX-License-Identifier: MIT */
/* test_threads.c - hakmem across threads.
 *
 *  - producer/consumer: blocks of every tier allocated on one thread,
 *    checked, reallocated and freed on another (remote frees), two pairs at
 *    once, many rounds: no corruption;
 *  - churn: 2000 short threads, each allocating a few hundred tiny and mid
 *    blocks, freeing some, leaving the rest to the main thread: RSS and the
 *    tiny front's slab count stay bounded (thread-exit hand-over, adoption
 *    and the mid tier's flush at thread exit work);
 *  - free-only threads: threads that never allocate, only free blocks that
 *    the main thread allocated: their frees are not lost (RSS bounded).
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "api_test.h"
#include "hak_os.h"
#include "hak_tiny.h"

/* ---- a bounded queue (mutex + condition variables) ---------------------- */

struct item {
  char *p;
  size_t size;
  uint32_t seed;
};

#define QCAP 64
struct queue {
  pthread_mutex_t lock;
  pthread_cond_t not_empty, not_full;
  struct item items[QCAP];
  unsigned head, count;
};

static void queue_init(struct queue *q) {
  pthread_mutex_init(&q->lock, NULL);
  pthread_cond_init(&q->not_empty, NULL);
  pthread_cond_init(&q->not_full, NULL);
  q->head = q->count = 0;
}

static void queue_destroy(struct queue *q) {
  pthread_mutex_destroy(&q->lock);
  pthread_cond_destroy(&q->not_empty);
  pthread_cond_destroy(&q->not_full);
}

static void queue_push(struct queue *q, struct item it) {
  pthread_mutex_lock(&q->lock);
  while (q->count == QCAP)
    pthread_cond_wait(&q->not_full, &q->lock);
  q->items[(q->head + q->count) % QCAP] = it;
  q->count++;
  pthread_cond_signal(&q->not_empty);
  pthread_mutex_unlock(&q->lock);
}

static struct item queue_pop(struct queue *q) {
  pthread_mutex_lock(&q->lock);
  while (q->count == 0)
    pthread_cond_wait(&q->not_empty, &q->lock);
  struct item it = q->items[q->head];
  q->head = (q->head + 1) % QCAP;
  q->count--;
  pthread_cond_signal(&q->not_full);
  pthread_mutex_unlock(&q->lock);
  return it;
}

/* ---- producer / consumer ------------------------------------------------ */

#define PC_ITEMS 30000

struct pc {
  struct queue q;
  uint64_t rng;
  unsigned errors;   /* written by the consumer */
  char message[256]; /* its first error */
};

static size_t mixed_size(uint64_t *rng) {
  unsigned r = (unsigned)rng_below(rng, 1000);
  if (r < 850)
    return 1 + rng_below(rng, TINY_MAX); /* tiny */
  if (r < 995)
    return TINY_MAX + 1 + rng_below(rng, 63 * KiB); /* mid, mostly small */
  if (r < 998)
    return 64 * KiB + rng_below(rng, MID_MAX - 64 * KiB + 1); /* big mid */
  return MID_MAX + 1 + rng_below(rng, 3 * MiB); /* large */
}

static void fill_any(void *p, size_t n, uint32_t seed) {
  if (n > MID_MAX)
    pattern_fill_sparse(p, n, seed);
  else
    pattern_fill(p, n, seed);
}

static size_t mismatch_any(const void *p, size_t n, uint32_t seed) {
  return n > MID_MAX ? pattern_mismatch_sparse(p, n, seed)
                     : pattern_mismatch(p, n, seed);
}

static void *producer(void *arg) {
  struct pc *pc = arg;
  for (uint32_t i = 1; i <= PC_ITEMS; i++) {
    size_t n = mixed_size(&pc->rng);
    char *p = hak_malloc(n);
    if (p == NULL) {
      queue_push(&pc->q, (struct item){NULL, n, i});
      continue;
    }
    fill_any(p, n, i);
    queue_push(&pc->q, (struct item){p, n, i});
  }
  queue_push(&pc->q, (struct item){NULL, 0, 0}); /* end */
  return NULL;
}

static void pc_error(struct pc *pc, const char *fmt, size_t a, size_t b,
                     const void *p) {
  if (pc->errors++ == 0)
    snprintf(pc->message, sizeof pc->message, fmt, a, b, p);
}

static void *consumer(void *arg) {
  struct pc *pc = arg;
  for (;;) {
    struct item it = queue_pop(&pc->q);
    if (it.seed == 0)
      break;
    if (it.p == NULL) {
      pc_error(pc, "producer: hak_malloc(%zu) failed (item %zu) %p", it.size,
               it.seed, NULL);
      continue;
    }
    size_t bad = mismatch_any(it.p, it.size, it.seed);
    if (bad != it.size) {
      pc_error(pc, "block of %zu bytes corrupt at offset %zu (%p)", it.size,
               bad, it.p);
      hak_free(it.p);
      continue;
    }
    if (hak_usable_size(it.p) < it.size)
      pc_error(pc, "usable size of a %zu-byte block is %zu (%p)", it.size,
               hak_usable_size(it.p), it.p);
    if (it.seed % 4 == 0) {
      /* realloc a block another thread allocated: it moves (or not) and
       * keeps its contents; the old one is freed remotely. */
      size_t m = it.size / 2 + 1;
      char *q = hak_realloc(it.p, m);
      size_t kept = q == NULL ? 0
                    : it.size > MID_MAX ? pattern_mismatch_sparse(q, m, it.seed)
                                        : pattern_mismatch(q, m, it.seed);
      if (kept != m)
        pc_error(pc, "realloc %zu -> %zu lost contents (%p)", it.size, m, q);
      hak_free(q);
    } else if (it.seed % 4 == 1) {
      hak_free_sized(it.p, it.size);
    } else {
      hak_free(it.p);
    }
  }
  return NULL;
}

static void test_producer_consumer(void **state) {
  (void)state;
  enum { PAIRS = 2 };
  struct pc pcs[PAIRS];
  pthread_t prod[PAIRS], cons[PAIRS];
  for (int i = 0; i < PAIRS; i++) {
    queue_init(&pcs[i].q);
    pcs[i].rng = 0x1234 + (uint64_t)i;
    pcs[i].errors = 0;
    pcs[i].message[0] = 0;
    assert_int_equal(pthread_create(&cons[i], NULL, consumer, &pcs[i]), 0);
    assert_int_equal(pthread_create(&prod[i], NULL, producer, &pcs[i]), 0);
  }
  for (int i = 0; i < PAIRS; i++) {
    assert_int_equal(pthread_join(prod[i], NULL), 0);
    assert_int_equal(pthread_join(cons[i], NULL), 0);
    queue_destroy(&pcs[i].q);
  }
  for (int i = 0; i < PAIRS; i++)
    if (pcs[i].errors)
      fail_msg("pair %d: %u errors; first: %s", i, pcs[i].errors, pcs[i].message);
}

/* The same in a ring: every thread allocates, sends to the next, and frees
 * what the previous sends it, so every slab gets remote frees while its
 * owner keeps allocating from it. */
#define RING 3
#define RING_ITEMS 20000
struct ring_node {
  struct queue *in, *out;
  uint64_t rng;
  unsigned errors;
  char message[256];
};

static void *ring_thread(void *arg) {
  struct ring_node *nd = arg;
  uint32_t sent = 0, received = 0;
  /* Send and receive alternately; the queue holds QCAP, so sending at most
   * QCAP ahead of receiving never blocks forever. */
  while (received < RING_ITEMS) {
    for (int k = 0; k < QCAP / 2 && sent < RING_ITEMS; k++) {
      size_t n = mixed_size(&nd->rng);
      if (n > MID_MAX)
        n = 1 + n % 1000; /* keep the ring fast: tiny and mid only */
      uint32_t seed = ++sent;
      char *p = hak_malloc(n);
      if (p == NULL) {
        if (nd->errors++ == 0)
          snprintf(nd->message, sizeof nd->message, "malloc(%zu) failed", n);
        n = 0;
      } else {
        pattern_fill(p, n, seed);
      }
      queue_push(nd->out, (struct item){p, n, seed});
    }
    for (int k = 0; k < QCAP / 2 && received < RING_ITEMS; k++) {
      struct item it = queue_pop(nd->in);
      received++;
      if (it.p == NULL)
        continue;
      size_t bad = pattern_mismatch(it.p, it.size, it.seed);
      if (bad != it.size && nd->errors++ == 0)
        snprintf(nd->message, sizeof nd->message,
                 "block %p of %zu bytes corrupt at %zu", (void *)it.p, it.size, bad);
      hak_free(it.p);
    }
  }
  return NULL;
}

static void test_ring_of_threads(void **state) {
  (void)state;
  struct queue qs[RING];
  struct ring_node nodes[RING];
  pthread_t th[RING];
  for (int i = 0; i < RING; i++)
    queue_init(&qs[i]);
  for (int i = 0; i < RING; i++) {
    nodes[i] = (struct ring_node){.in = &qs[i], .out = &qs[(i + 1) % RING],
                                  .rng = 99 + (uint64_t)i};
    assert_int_equal(pthread_create(&th[i], NULL, ring_thread, &nodes[i]), 0);
  }
  for (int i = 0; i < RING; i++)
    assert_int_equal(pthread_join(th[i], NULL), 0);
  for (int i = 0; i < RING; i++) {
    queue_destroy(&qs[i]);
    if (nodes[i].errors)
      fail_msg("thread %d: %u errors; first: %s", i, nodes[i].errors,
               nodes[i].message);
  }
}

/* ---- thread churn ------------------------------------------------------- */

#define CHURN_THREADS 2000
#define CHURN_BATCH 4 /* threads alive at once */
#define CHURN_TINY 300
#define CHURN_MID 30

struct churn {
  uint64_t rng;
  uint32_t seed;
  unsigned errors;
  char message[160];
  /* Blocks left for the main thread to free. */
  unsigned left;
  struct item leftovers[CHURN_TINY + CHURN_MID];
};

static void *churn_thread(void *arg) {
  struct churn *c = arg;
  struct item all[CHURN_TINY + CHURN_MID];
  unsigned n = 0;
  for (unsigned i = 0; i < CHURN_TINY + CHURN_MID; i++) {
    size_t size = i < CHURN_TINY ? 1 + rng_below(&c->rng, TINY_MAX)
                                 : TINY_MAX + 1 + rng_below(&c->rng, 16 * KiB);
    char *p = hak_malloc(size);
    if (p == NULL) {
      if (c->errors++ == 0)
        snprintf(c->message, sizeof c->message, "malloc(%zu) failed", size);
      continue;
    }
    uint32_t seed = c->seed + i;
    pattern_fill(p, size, seed);
    all[n++] = (struct item){p, size, seed};
  }
  /* Free about half here (checking them), leave the rest. */
  c->left = 0;
  for (unsigned i = 0; i < n; i++) {
    if (rng_below(&c->rng, 2)) {
      if (pattern_mismatch(all[i].p, all[i].size, all[i].seed) != all[i].size &&
          c->errors++ == 0)
        snprintf(c->message, sizeof c->message, "block of %zu corrupt",
                 all[i].size);
      hak_free(all[i].p);
    } else {
      c->leftovers[c->left++] = all[i];
    }
  }
  return NULL;
}

static void test_thread_churn_bounded(void **state) {
  (void)state;
  static struct churn ch[CHURN_BATCH];
  /* Peaks over threads 250..500 and over the last 500: the number of slabs
   * and pages in use swings with which classes the live threads use, so
   * peaks are compared, not single samples. */
  size_t rss_early = 0, rss_late = 0;
  unsigned slabs_early = 0, slabs_late = 0;
  uint64_t rng = 2024;
  for (int t = 0; t < CHURN_THREADS; t += CHURN_BATCH) {
    pthread_t th[CHURN_BATCH];
    for (int b = 0; b < CHURN_BATCH; b++) {
      ch[b].rng = rng_next(&rng);
      ch[b].seed = (uint32_t)(t + b) * 1000u;
      ch[b].errors = 0;
      ch[b].left = 0;
      assert_int_equal(pthread_create(&th[b], NULL, churn_thread, &ch[b]), 0);
    }
    /* Sampled while the batch runs, and again after it ended. */
    for (int phase = 0; phase < 2; phase++) {
      if (phase == 1) {
        for (int b = 0; b < CHURN_BATCH; b++) {
          assert_int_equal(pthread_join(th[b], NULL), 0);
          if (ch[b].errors)
            fail_msg("thread %d: %u errors; first: %s", t + b, ch[b].errors,
                     ch[b].message);
          /* The main thread frees what the ended thread left. */
          for (unsigned i = 0; i < ch[b].left; i++) {
            struct item *it = &ch[b].leftovers[i];
            size_t bad = pattern_mismatch(it->p, it->size, it->seed);
            if (bad != it->size)
              fail_msg("leftover of thread %d (%zu bytes) corrupt at %zu",
                       t + b, it->size, bad);
            hak_free(it->p);
          }
        }
      }
      int done = t + CHURN_BATCH;
      if (done > 250 && done <= 500) {
        size_t r = hak_os_rss_current();
        unsigned sl = hak_tiny_info().slabs_in_use;
        rss_early = r > rss_early ? r : rss_early;
        slabs_early = sl > slabs_early ? sl : slabs_early;
      } else if (done > CHURN_THREADS - 500) {
        size_t r = hak_os_rss_current();
        unsigned sl = hak_tiny_info().slabs_in_use;
        rss_late = r > rss_late ? r : rss_late;
        slabs_late = sl > slabs_late ? sl : slabs_late;
      }
    }
  }
  struct hak_tiny_info info = hak_tiny_info();
  print_message("churn: peak RSS over threads 250..500 %zu KiB, over the last "
                "500 %zu KiB; peak tiny slabs in use %u -> %u (abandoned at "
                "the end %u)\n",
                rss_early >> 10, rss_late >> 10, slabs_early, slabs_late,
                info.slabs_abandoned);
  assert_true(rss_early > 0);
  /* 1500 more threads, each leaving ~50 KiB to the main thread and holding
   * a few dozen slabs while it runs: a leak of what they leave or of their
   * heaps would be tens of MiB and thousands of slabs. */
  if (rss_late > rss_early + 48 * MiB)
    fail_msg("RSS grew from %zu KiB (peak, threads 250..500) to %zu KiB (peak, "
             "last 500)", rss_early >> 10, rss_late >> 10);
  if (slabs_late > slabs_early + 128)
    fail_msg("tiny slabs in use grew from %u (peak, threads 250..500) to %u "
             "(peak, last 500)", slabs_early, slabs_late);
}

/* ---- threads that only free ------------------------------------------- */

struct frees {
  struct item *blocks;
  unsigned count;
  unsigned errors;
};

static void *free_only_thread(void *arg) {
  struct frees *f = arg;
  for (unsigned i = 0; i < f->count; i++) {
    struct item *it = &f->blocks[i];
    if (pattern_mismatch(it->p, it->size, it->seed) != it->size)
      f->errors++;
    hak_free(it->p);
  }
  return NULL;
}

static void free_only_round(size_t size, unsigned count, unsigned threads,
                            const char *what) {
  struct item *blocks = calloc(count, sizeof *blocks);
  assert_non_null(blocks);
  size_t rss_first = 0, rss_peak = 0;
  for (unsigned t = 0; t < threads; t++) {
    for (unsigned i = 0; i < count; i++) {
      blocks[i].size = size;
      blocks[i].seed = t * count + i;
      blocks[i].p = hak_malloc(size);
      assert_non_null(blocks[i].p);
      pattern_fill(blocks[i].p, size, blocks[i].seed);
    }
    struct frees f = {blocks, count, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, free_only_thread, &f), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(f.errors, 0);
    size_t r = hak_os_rss_current();
    if (t == threads / 5)
      rss_first = r;
    else if (t > threads / 5 && r > rss_peak)
      rss_peak = r;
  }
  free(blocks);
  size_t total = (size_t)threads * count * size;
  print_message("free-only threads, %s: %u x %u blocks of %zu bytes (%zu MiB "
                "in all): RSS %zu KiB -> peak %zu KiB\n",
                what, threads, count, size, total >> 20, rss_first >> 10,
                rss_peak >> 10);
  /* The blocks are freed: the next round's mallocs must reuse them.  A
   * thread that keeps the blocks it freed (a per-thread cache never given
   * back) makes RSS grow by a share of `total`. */
  if (rss_peak > rss_first + 24 * MiB)
    fail_msg("%s: blocks freed by threads that never allocate are not reused: "
             "RSS %zu KiB -> %zu KiB after %u threads freed %zu MiB",
             what, rss_first >> 10, rss_peak >> 10, threads, total >> 20);
}

static void test_free_only_threads_tiny(void **state) {
  (void)state;
  free_only_round(512, 256, 400, "tiny");
}

static void test_free_only_threads_mid(void **state) {
  (void)state;
  /* 32 blocks of 4 KiB per thread: 128 KiB, the mid tier's per-class cache
   * bound. */
  free_only_round(4 * KiB, 32, 800, "mid 4 KiB");
}

static void test_free_only_threads_large(void **state) {
  (void)state;
  free_only_round(600 * KiB, 4, 200, "large");
}

/* ---- frees in thread-specific-data destructors ------------------------ */

/* Libraries keep per-thread buffers under pthread keys and free them in the
 * key's destructor.  Those destructors run at thread exit, possibly after
 * hakmem's own (keys made later run later): the blocks they free must still
 * go back to the allocator, not into a per-thread cache nobody will flush. */
#define TSD_BLOCKS 32
struct tsd_buffers {
  char *block[TSD_BLOCKS];
  size_t size;
};
static pthread_key_t tsd_key;
static unsigned tsd_bad;

static void tsd_destructor(void *arg) {
  struct tsd_buffers *b = arg;
  for (int i = 0; i < TSD_BLOCKS; i++) {
    if (b->block[i][0] != (char)i || b->block[i][b->size - 1] != (char)i)
      __atomic_fetch_add(&tsd_bad, 1, __ATOMIC_RELAXED);
    hak_free(b->block[i]);
  }
  free(b);
}

static void *tsd_thread(void *arg) {
  size_t size = *(const size_t *)arg;
  struct tsd_buffers *b = malloc(sizeof *b);
  if (b == NULL)
    return (void *)1;
  b->size = size;
  for (int i = 0; i < TSD_BLOCKS; i++) {
    b->block[i] = hak_malloc(size);
    if (b->block[i] == NULL)
      return (void *)1;
    memset(b->block[i], i, size);
  }
  pthread_setspecific(tsd_key, b);
  return NULL;
}

static void tsd_round(size_t size, unsigned threads, const char *what) {
  size_t rss_first = 0, rss_peak = 0;
  for (unsigned t = 0; t < threads; t++) {
    pthread_t th;
    void *ret;
    assert_int_equal(pthread_create(&th, NULL, tsd_thread, &size), 0);
    assert_int_equal(pthread_join(th, &ret), 0);
    assert_null(ret);
    size_t r = hak_os_rss_current();
    if (t == threads / 5)
      rss_first = r;
    else if (t > threads / 5 && r > rss_peak)
      rss_peak = r;
  }
  assert_int_equal(__atomic_load_n(&tsd_bad, __ATOMIC_RELAXED), 0);
  size_t total = (size_t)threads * TSD_BLOCKS * size;
  print_message("key destructors, %s: %u threads each freeing %d blocks of "
                "%zu bytes at exit (%zu MiB in all): RSS %zu KiB -> peak %zu KiB\n",
                what, threads, TSD_BLOCKS, size, total >> 20, rss_first >> 10,
                rss_peak >> 10);
  if (rss_peak > rss_first + 24 * MiB)
    fail_msg("%s: blocks freed by pthread key destructors at thread exit are "
             "not reused: RSS %zu KiB -> %zu KiB after %u threads freed %zu MiB",
             what, rss_first >> 10, rss_peak >> 10, threads, total >> 20);
}

static void test_free_in_key_destructor(void **state) {
  (void)state;
  /* The key is made after the allocator has started (its own keys exist),
   * so its destructor runs after the allocator's at thread exit. */
  hak_free(hak_malloc(5000));
  hak_free(hak_malloc(100));
  assert_int_equal(pthread_key_create(&tsd_key, tsd_destructor), 0);
  tsd_round(200, 400, "tiny");
  tsd_round(4 * KiB, 600, "mid 4 KiB");
  tsd_round(300 * KiB, 100, "large");
  pthread_key_delete(tsd_key);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_producer_consumer),
      cmocka_unit_test(test_ring_of_threads),
      cmocka_unit_test(test_thread_churn_bounded),
      cmocka_unit_test(test_free_only_threads_tiny),
      cmocka_unit_test(test_free_only_threads_mid),
      cmocka_unit_test(test_free_only_threads_large),
      cmocka_unit_test(test_free_in_key_destructor),
  };
  return cmocka_run_group_tests_name("api_threads", tests, NULL, NULL);
}
