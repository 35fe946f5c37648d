/* SPDX-License-Identifier: MIT */
/* test_mt_random.c - randomized operations from several threads on one
 * shared set of blocks, checked against a shadow model.
 *
 * A pool of slots, each with its own lock, holds blocks of every tier.
 * Threads pick slots at random and, holding the slot's lock, check the
 * block's contents and then free it, reallocate it or replace it, so nearly
 * every free and realloc is of a block another thread allocated (remote
 * frees into tiny slabs, mid blocks joining another thread's lists, large
 * regions released by another thread).  Threads also end and are replaced
 * while their blocks are still in the pool: their slabs are handed over,
 * freed into from outside, and adopted by later threads.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "api_test.h"

#define SLOTS 512
#define THREADS 4
#define GENERATIONS 6         /* each thread position is restarted this often */
#define OPS_PER_THREAD 12000  /* per generation */
#define FULL_LIMIT ((size_t)4 * KiB)

struct slot {
  pthread_mutex_t lock;
  char *p;
  size_t size;
  uint32_t seed;
};

static struct slot pool[SLOTS];
static uint32_t seed_counter;

struct worker {
  uint64_t rng;
  unsigned long ops, errors;
  char message[256];
};

static size_t worker_size(uint64_t *rng) {
  unsigned r = (unsigned)rng_below(rng, 1000);
  if (r < 650)
    return 1 + rng_below(rng, TINY_MAX);
  if (r < 980) {
    unsigned shift = 10 + (unsigned)rng_below(rng, 7); /* 1 KiB .. 128 KiB */
    size_t lo = (size_t)1 << shift;
    return lo + 1 + rng_below(rng, lo);
  }
  if (r < 997)
    return MID_MAX + 1 + rng_below(rng, 2 * MiB);
  return SUPERSLAB + rng_below(rng, 4 * MiB);
}

static void error(struct worker *w, const char *fmt, const void *p, size_t a,
                  size_t b) {
  if (w->errors++ == 0)
    snprintf(w->message, sizeof w->message, fmt, p, a, b);
}

static void one_op(struct worker *w) {
  struct slot *s = &pool[rng_below(&w->rng, SLOTS)];
  pthread_mutex_lock(&s->lock);
  if (s->p) {
    size_t bad =
        pattern_mismatch_block(s->p, s->size, s->size, s->seed, FULL_LIMIT);
    if (bad != s->size)
      error(w, "block %p of %zu bytes: byte %zu changed", s->p, s->size, bad);
  }
  unsigned r = (unsigned)rng_below(&w->rng, 10);
  if (!s->p || r < 3) {
    /* (Re)place the block. */
    if (s->p)
      hak_free(s->p);
    size_t n = worker_size(&w->rng);
    char *p = r == 0 ? hak_calloc(1, n) : hak_malloc(n);
    if (p == NULL) {
      error(w, "allocation %p of %zu bytes failed (errno %zu)", NULL, n,
            (size_t)errno);
      s->p = NULL;
    } else {
      if (r == 0)
        for (size_t k = 0; k < n; k += n <= FULL_LIMIT ? 1 : 509)
          if (p[k] != 0) {
            error(w, "calloc %p of %zu bytes: byte %zu not zero", p, n, k);
            break;
          }
      s->p = p;
      s->size = n;
      s->seed = __atomic_add_fetch(&seed_counter, 1, __ATOMIC_RELAXED);
      pattern_fill_block(p, n, s->seed, FULL_LIMIT);
    }
  } else if (r < 6) {
    size_t n = worker_size(&w->rng);
    char *q = hak_realloc(s->p, n);
    if (q == NULL) {
      error(w, "realloc %p to %zu bytes failed (errno %zu)", s->p, n,
            (size_t)errno);
    } else {
      size_t keep = s->size < n ? s->size : n;
      size_t bad =
          pattern_mismatch_block(q, keep, s->size, s->seed, FULL_LIMIT);
      if (bad != keep)
        error(w, "realloc to %p (%zu bytes): byte %zu of the prefix changed", q,
              n, bad);
      s->p = q;
      s->size = n;
      pattern_fill_block(q, n, s->seed, FULL_LIMIT);
    }
  } else if (r < 9) {
    hak_free(s->p);
    s->p = NULL;
  } /* else: only the check */
  pthread_mutex_unlock(&s->lock);
  w->ops++;
}

static void *worker_main(void *arg) {
  struct worker *w = arg;
  for (int i = 0; i < OPS_PER_THREAD; i++)
    one_op(w);
  return NULL;
}

static void test_shared_pool(void **state) {
  (void)state;
  for (int i = 0; i < SLOTS; i++) {
    pthread_mutex_init(&pool[i].lock, NULL);
    pool[i].p = NULL;
  }
  struct worker workers[THREADS];
  unsigned long total_ops = 0;
  for (int g = 0; g < GENERATIONS; g++) {
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) {
      workers[t] = (struct worker){.rng = 0xabcdef + (uint64_t)(g * THREADS + t)};
      assert_int_equal(pthread_create(&th[t], NULL, worker_main, &workers[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
      assert_int_equal(pthread_join(th[t], NULL), 0);
      if (workers[t].errors)
        fail_msg("generation %d, thread %d: %lu errors; first: %s", g, t,
                 workers[t].errors, workers[t].message);
      total_ops += workers[t].ops;
    }
    /* Between generations the main thread checks everything and frees a
     * third of the blocks (of threads that have ended). */
    for (int i = 0; i < SLOTS; i++) {
      struct slot *s = &pool[i];
      if (!s->p)
        continue;
      size_t bad =
          pattern_mismatch_block(s->p, s->size, s->size, s->seed, FULL_LIMIT);
      if (bad != s->size)
        fail_msg("after generation %d: slot %d (%p, %zu bytes): byte %zu changed",
                 g, i, (void *)s->p, s->size, bad);
      if (i % 3 == g % 3) {
        hak_free(s->p);
        s->p = NULL;
      }
    }
  }
  for (int i = 0; i < SLOTS; i++) {
    hak_free(pool[i].p);
    pool[i].p = NULL;
    pthread_mutex_destroy(&pool[i].lock);
  }
  print_message("shared pool: %lu operations on %d threads x %d generations\n",
                total_ops, THREADS, GENERATIONS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shared_pool),
  };
  return cmocka_run_group_tests_name("api_mt_random", tests, NULL, NULL);
}
