/* SPDX-License-Identifier: MIT */
/* detached_threads.c - a plain C program (linked with the C library's
 * malloc, run with and without LD_PRELOAD=libhakmem.so by run_program.sh)
 * whose threads are detached, as Python's are.
 *
 * A detached thread releases its own stack at the very end of its life,
 * after its thread-specific-data destructors have run; when glibc's stack
 * cache is over its bound, it frees the cached stacks of other dead threads
 * there, thread descriptors and DTVs included, with free() -- hakmem's free
 * under LD_PRELOAD, called on a thread whose exit handlers are done.  Every
 * thread also allocates and frees blocks of all tiers, checks them, and
 * hands some to the next thread.  The output is deterministic.
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCHES 150
#define PER_BATCH 16

static sem_t done;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char *passed[PER_BATCH];
static size_t passed_size[PER_BATCH];
static unsigned long bad, checked;

static void *work(void *arg) {
  uintptr_t id = (uintptr_t)arg;
  uint64_t x = id * 0x9e3779b97f4a7c15ull + 1;
  char *mine[32];
  size_t sizes[32];
  for (int i = 0; i < 32; i++) {
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ull;
    sizes[i] = i % 8 == 7 ? 300000 + x % 100000 : i % 3 == 2 ? 2000 + x % 60000 : 1 + x % 1000;
    mine[i] = malloc(sizes[i]);
    if (!mine[i])
      abort();
    memset(mine[i], (int)(id + (uintptr_t)i) & 0xff, sizes[i]);
  }
  unsigned long my_bad = 0;
  for (int i = 0; i < 32; i++) {
    if (mine[i][0] != (char)(id + (uintptr_t)i) || mine[i][sizes[i] - 1] != (char)(id + (uintptr_t)i))
      my_bad++;
    if (i != 5)
      free(mine[i]);
  }
  /* One block goes to the thread of the next batch in the same slot. */
  unsigned slot = (unsigned)(id % PER_BATCH);
  pthread_mutex_lock(&lock);
  if (passed[slot]) {
    char *p = passed[slot];
    if (p[0] != p[passed_size[slot] - 1])
      my_bad++;
    free(p);
    checked++;
  }
  passed[slot] = mine[5];
  passed_size[slot] = sizes[5];
  mine[5][sizes[5] - 1] = mine[5][0];
  bad += my_bad;
  pthread_mutex_unlock(&lock);
  sem_post(&done);
  return NULL;
}

int main(void) {
  sem_init(&done, 0, 0);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  unsigned long started = 0;
  for (int b = 0; b < BATCHES; b++) {
    for (int t = 0; t < PER_BATCH; t++) {
      pthread_t th;
      if (pthread_create(&th, &attr, work, (void *)(uintptr_t)(b * PER_BATCH + t)) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        return 1;
      }
      started++;
    }
    for (int t = 0; t < PER_BATCH; t++)
      sem_wait(&done);
  }
  for (int s = 0; s < PER_BATCH; s++)
    free(passed[s]);
  printf("detached threads: %lu started, %lu blocks passed on and checked, "
         "%lu bad\n", started, checked, bad);
  return bad != 0;
}
