/* SPDX-License-Identifier: MIT */
/* stress_threads.c - many threads (far more than cores) allocating, filling,
 * passing blocks to each other and freeing them, while threads end and are
 * replaced and their blocks live on.
 *
 * POSITIONS positions each run a chain of threads: a thread does its
 * operations, hands the blocks it still holds to other positions'
 * mailboxes, starts its successor and ends; the successor joins it first,
 * so about POSITIONS threads run at any moment, each ending at its own
 * time.  An operation allocates (malloc, calloc, aligned, realloc(NULL)),
 * frees, reallocates, sends a block to another position, or receives: every
 * block received is checked, then freed, reallocated and kept, or sent on.
 * So most frees are of blocks another thread allocated, often one that has
 * ended (remote frees, abandoned slabs adopted by later threads, the mid
 * tier's lists flushed at thread exit, large regions freed elsewhere).
 *
 * Every block carries a pattern of its own (position dependent, see
 * test/common/test_pattern.h) that is checked in full (sparsely above
 * 16 KiB, plus the last 64 bytes) before it is freed, reallocated or passed
 * on, and calloc's zeroes are checked: two live blocks that overlap, a block
 * handed out twice, a lost realloc prefix or a stray write by the allocator
 * into a live block break a pattern, and the test fails with the block and
 * offset.
 *
 * Short mode (ctest): 24 positions x 6 generations, ~1-2 s in the release
 * builds (fewer generations under the sanitizers); long mode: 32 positions
 * for HAK_STRESS_SECONDS (60) seconds.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "stress.h"

#define MAX_POSITIONS 32
#define MAILCAP 96
#define LOCAL 48

struct item {
  char *p;
  size_t size;
  uint32_t seed;
  bool zeroed; /* from calloc, not yet filled: must read as zeroes */
};

struct mailbox {
  pthread_mutex_t lock;
  struct item items[MAILCAP];
  unsigned head, count;
};

struct position {
  struct mailbox box;
  unsigned index;
  unsigned generation;  /* of the thread running now */
  pthread_t prev;       /* the thread the new one must join */
  bool has_prev;
  /* Set by the last thread of the chain, under `done_lock`. */
  bool finished;
  pthread_t last;
  /* Per position, summed at the end. */
  unsigned long ops, allocs, frees, sent, received, reallocs, forwarded;
};

static struct position positions[MAX_POSITIONS];
static unsigned npositions, generations, ops_per_thread;
static double deadline; /* long mode: no new generation after this */
static uint32_t seed_counter;
static struct stress_errors errors = {PTHREAD_MUTEX_INITIALIZER, 0, {0}};
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static unsigned chains_done;
static unsigned long threads_started;

static uint32_t new_seed(void) {
  return __atomic_add_fetch(&seed_counter, 1, __ATOMIC_RELAXED);
}

/* ---- blocks ---------------------------------------------------------------- */

static size_t random_size(uint64_t *rng) {
  unsigned r = (unsigned)rng_below(rng, 10000);
  if (r < 30)
    return 0;
  if (r < 7000)
    return 1 + rng_below(rng, TINY_MAX);
  if (r < 9900) { /* mid, log-uniform over 1 KiB .. 256 KiB */
    unsigned shift = 10 + (unsigned)rng_below(rng, 8);
    size_t lo = (size_t)1 << shift;
    size_t n = lo + 1 + rng_below(rng, lo);
    return n > MID_MAX ? MID_MAX : n;
  }
  if (r < 9995)
    return MID_MAX + 1 + rng_below(rng, SUPERSLAB - MID_MAX); /* large */
  return SUPERSLAB + rng_below(rng, 4 * MiB);                  /* huge */
}

/* Checks a block's contents; false (and an error) if they are wrong. */
static bool check(const struct item *it, const char *when, unsigned pos) {
  if (it->zeroed) {
    size_t step = it->size <= FULL_BYTES ? 1 : 509;
    for (size_t k = 0; k < it->size; k += step)
      if (it->p[k] != 0) {
        stress_error(&errors, "position %u, %s: calloc block %p of %zu bytes: "
                     "byte %zu is 0x%02x", pos, when, (void *)it->p, it->size,
                     k, (unsigned char)it->p[k]);
        return false;
      }
    return true;
  }
  size_t bad = block_mismatch(it->p, it->size, it->size, it->seed);
  if (bad != it->size) {
    stress_error(&errors, "position %u, %s: block %p of %zu bytes (seed %u): "
                 "byte %zu changed", pos, when, (void *)it->p, it->size,
                 (unsigned)it->seed, bad);
    return false;
  }
  return true;
}

static bool new_block(struct item *it, uint64_t *rng, unsigned pos) {
  size_t n = random_size(rng);
  unsigned how = (unsigned)rng_below(rng, 20);
  char *p;
  it->zeroed = false;
  if (how < 14) {
    p = hak_malloc(n);
  } else if (how < 16) {
    p = hak_calloc(1, n);
    it->zeroed = true;
  } else if (how < 18) {
    size_t align = (size_t)1 << (3 + rng_below(rng, 14)); /* 8 .. 64 KiB */
    void *q = NULL;
    int r = hak_posix_memalign(&q, align, n);
    p = r == 0 ? q : NULL;
    if (p && ((uintptr_t)p & (align - 1)))
      stress_error(&errors, "position %u: posix_memalign(%zu, %zu) = %p, "
                   "misaligned", pos, align, n, (void *)p);
  } else if (how < 19) {
    size_t align = (size_t)1 << rng_below(rng, 13); /* 1 .. 4 KiB */
    p = hak_aligned_alloc(align, n);
    if (p && ((uintptr_t)p & (align - 1)))
      stress_error(&errors, "position %u: aligned_alloc(%zu, %zu) = %p, "
                   "misaligned", pos, align, n, (void *)p);
  } else {
    p = hak_realloc(NULL, n);
  }
  if (p == NULL) {
    stress_error(&errors, "position %u: allocation of %zu bytes failed "
                 "(errno %d)", pos, n, errno);
    it->p = NULL;
    return false;
  }
  if (((uintptr_t)p & 15) || hak_usable_size(p) < n) {
    stress_error(&errors, "position %u: block %p for %zu bytes: usable %zu, "
                 "alignment %zu", pos, (void *)p, n, hak_usable_size(p),
                 (size_t)((uintptr_t)p & 15));
  }
  it->p = p;
  it->size = n;
  it->seed = new_seed();
  /* Half of the calloc blocks are checked and filled now, the others stay
   * zeroed until they are next looked at (by this thread or another). */
  if (it->zeroed && rng_below(rng, 2)) {
    check(it, "fresh calloc", pos);
    it->zeroed = false;
  }
  if (!it->zeroed)
    block_fill(p, n, it->seed);
  return true;
}

static void free_block(struct item *it, uint64_t *rng, unsigned pos) {
  check(it, "before free", pos);
  if (rng_below(rng, 4) == 0)
    hak_free_sized(it->p, it->size);
  else
    hak_free(it->p);
  it->p = NULL;
}

/* realloc to a new random size; the common prefix must survive. */
static void realloc_block(struct item *it, uint64_t *rng, unsigned pos) {
  if (!check(it, "before realloc", pos)) {
    hak_free(it->p);
    it->p = NULL;
    return;
  }
  size_t m = random_size(rng);
  if (m == 0)
    m = 1; /* realloc(p, 0) frees: not what this step is for */
  char *q = hak_realloc(it->p, m);
  if (q == NULL) {
    stress_error(&errors, "position %u: realloc(%p, %zu) failed (errno %d)",
                 pos, (void *)it->p, m, errno);
    return; /* the old block is still the caller's */
  }
  size_t keep = it->size < m ? it->size : m;
  size_t bad;
  if (it->zeroed) {
    bad = keep;
    for (size_t k = 0; k < keep; k += keep <= FULL_BYTES ? 1 : 509)
      if (q[k] != 0) {
        bad = k;
        break;
      }
  } else {
    bad = block_mismatch(q, keep, it->size, it->seed);
  }
  if (bad != keep)
    stress_error(&errors, "position %u: realloc %zu -> %zu (%p -> %p) lost "
                 "byte %zu of the %zu kept", pos, it->size, m, (void *)it->p,
                 (void *)q, bad, keep);
  if (hak_usable_size(q) < m)
    stress_error(&errors, "position %u: realloc to %zu: usable size %zu", pos,
                 m, hak_usable_size(q));
  it->p = q;
  it->size = m;
  it->zeroed = false;
  it->seed = new_seed();
  block_fill(q, m, it->seed);
}

/* ---- mailboxes ------------------------------------------------------------- */

static bool send_to(unsigned to, struct item it) {
  struct mailbox *b = &positions[to].box;
  pthread_mutex_lock(&b->lock);
  bool ok = b->count < MAILCAP;
  if (ok) {
    b->items[(b->head + b->count) % MAILCAP] = it;
    b->count++;
  }
  pthread_mutex_unlock(&b->lock);
  return ok;
}

static unsigned receive(unsigned at, struct item *out, unsigned max) {
  struct mailbox *b = &positions[at].box;
  pthread_mutex_lock(&b->lock);
  unsigned n = 0;
  while (n < max && b->count) {
    out[n++] = b->items[b->head];
    b->head = (b->head + 1) % MAILCAP;
    b->count--;
  }
  pthread_mutex_unlock(&b->lock);
  return n;
}

static unsigned other_position(uint64_t *rng, unsigned self) {
  unsigned to = (unsigned)rng_below(rng, npositions - 1);
  return to >= self ? to + 1 : to;
}

/* ---- a thread of a position ---------------------------------------------- */

static void *worker(void *arg);

static void run_ops(struct position *ps, uint64_t *rng, struct item *local) {
  unsigned self = ps->index;
  for (unsigned op = 0; op < ops_per_thread; op++) {
    ps->ops++;
    unsigned r = (unsigned)rng_below(rng, 100);
    struct item *it = &local[rng_below(rng, LOCAL)];
    if (r < 35) { /* allocate (replacing what the slot held) */
      if (it->p) {
        free_block(it, rng, self);
        ps->frees++;
      }
      if (new_block(it, rng, self))
        ps->allocs++;
    } else if (r < 55) { /* send */
      if (it->p) {
        if (send_to(other_position(rng, self), *it)) {
          it->p = NULL;
          ps->sent++;
        }
      }
    } else if (r < 75) { /* receive: check, then free / keep / forward */
      struct item in[16];
      unsigned n = receive(self, in, 16);
      for (unsigned k = 0; k < n; k++) {
        ps->received++;
        struct item got = in[k];
        if (!check(&got, "received", self)) {
          hak_free(got.p);
          continue;
        }
        unsigned what = (unsigned)rng_below(rng, 8);
        struct item *slot = &local[rng_below(rng, LOCAL)];
        if (what < 4 || (what < 7 && slot->p)) {
          free_block(&got, rng, self);
          ps->frees++;
        } else if (what < 7) {
          realloc_block(&got, rng, self); /* another thread's block */
          ps->reallocs++;
          *slot = got;
        } else if (send_to(other_position(rng, self), got)) {
          ps->forwarded++;
        } else {
          free_block(&got, rng, self);
          ps->frees++;
        }
      }
    } else if (r < 92) { /* free */
      if (it->p) {
        free_block(it, rng, self);
        ps->frees++;
      }
    } else { /* realloc */
      if (it->p) {
        realloc_block(it, rng, self);
        ps->reallocs++;
      }
    }
  }
}

static void *worker(void *arg) {
  struct position *ps = arg;
  if (ps->has_prev) {
    int e = pthread_join(ps->prev, NULL);
    if (e)
      stress_error(&errors, "position %u: pthread_join: %d", ps->index, e);
  }
  unsigned gen = ps->generation;
  uint64_t rng = 0x5354524553530000ull ^ ((uint64_t)ps->index << 32) ^ gen;
  struct item local[LOCAL];
  memset(local, 0, sizeof local);
  run_ops(ps, &rng, local);

  /* Ending: what this thread still holds goes to other positions, to be
   * freed (or kept and reallocated) by threads that outlive this one. */
  for (unsigned i = 0; i < LOCAL; i++) {
    if (!local[i].p)
      continue;
    if (!send_to(other_position(&rng, ps->index), local[i])) {
      free_block(&local[i], &rng, ps->index);
      ps->frees++;
    } else {
      ps->sent++;
    }
  }

  bool more = stress_long_mode ? stress_now() < deadline
                               : gen + 1 < generations;
  if (more) {
    ps->generation = gen + 1;
    ps->prev = pthread_self();
    ps->has_prev = true;
    pthread_t next;
    int e = pthread_create(&next, NULL, worker, ps);
    if (e == 0) {
      __atomic_add_fetch(&threads_started, 1, __ATOMIC_RELAXED);
      return NULL; /* the successor joins this thread */
    }
    stress_error(&errors, "position %u: pthread_create: %d", ps->index, e);
  }
  pthread_mutex_lock(&done_lock);
  ps->finished = true;
  ps->last = pthread_self();
  chains_done++;
  pthread_cond_signal(&done_cond);
  pthread_mutex_unlock(&done_lock);
  return NULL;
}

static void test_many_threads_pass_blocks(void **state) {
  (void)state;
  npositions = stress_long_mode ? 32 : 24;
  generations = 6; /* the long mode runs until the deadline instead */
  ops_per_thread = stress_long_mode ? 6000 : 2000 / STRESS_SLOW;
  if (!stress_long_mode && STRESS_SLOW > 1)
    generations = 4;
  double start = stress_now();
  deadline = start + stress_seconds;

  for (unsigned i = 0; i < npositions; i++) {
    positions[i] = (struct position){.index = i};
    pthread_mutex_init(&positions[i].box.lock, NULL);
  }
  for (unsigned i = 0; i < npositions; i++) {
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, worker, &positions[i]), 0);
    __atomic_add_fetch(&threads_started, 1, __ATOMIC_RELAXED);
  }
  pthread_mutex_lock(&done_lock);
  while (chains_done < npositions)
    pthread_cond_wait(&done_cond, &done_lock);
  pthread_mutex_unlock(&done_lock);
  for (unsigned i = 0; i < npositions; i++)
    assert_int_equal(pthread_join(positions[i].last, NULL), 0);

  /* What is left in the mailboxes: check and free on the main thread. */
  unsigned long left = 0;
  for (unsigned i = 0; i < npositions; i++) {
    struct item in[MAILCAP];
    unsigned n = receive(i, in, MAILCAP);
    for (unsigned k = 0; k < n; k++) {
      check(&in[k], "left at the end", i);
      hak_free(in[k].p);
      left++;
    }
    pthread_mutex_destroy(&positions[i].box.lock);
  }
  unsigned long ops = 0, allocs = 0, frees = 0, sent = 0, received = 0,
                reallocs = 0, forwarded = 0;
  for (unsigned i = 0; i < npositions; i++) {
    ops += positions[i].ops;
    allocs += positions[i].allocs;
    frees += positions[i].frees;
    sent += positions[i].sent;
    received += positions[i].received;
    reallocs += positions[i].reallocs;
    forwarded += positions[i].forwarded;
  }
  print_message("stress_threads (%s): %u positions, %lu threads, %lu "
                "operations in %.1f s: %lu allocations, %lu frees, %lu "
                "reallocs, %lu blocks sent, %lu received (%lu forwarded), %lu "
                "freed at the end\n",
                stress_long_mode ? "long" : "short", npositions,
                threads_started, ops, stress_now() - start, allocs,
                frees + left, reallocs, sent + forwarded, received, forwarded,
                left);
  if (errors.count)
    fail_msg("%lu errors; first: %s", errors.count, errors.first);
  /* Every block allocated was freed exactly once (none lost in transit). */
  assert_int_equal(allocs, frees + left);
  assert_true(threads_started >= (unsigned long)npositions * 2);
}

int main(int argc, char **argv) {
  stress_parse_mode(argc, argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_many_threads_pass_blocks),
  };
  return cmocka_run_group_tests_name("stress_threads", tests, NULL, NULL);
}
