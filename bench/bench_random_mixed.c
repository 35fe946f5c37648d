/* SPDX-License-Identifier: MIT */
/* bench_random_mixed.c - the Mixed benchmark of TARGETS.md.
 *
 *   bench_random_mixed_<alloc> [ITERS [WS [MIN [MAX [SEED]]]]]
 *                              [--warmup=N] [--syscalls]
 *
 * Defaults: 20000000 400 16 1024 and a fixed seed.  Prints one line:
 *   Throughput = <ops/s> ops/s allocator=<name> iters=<N> ws=<WS>
 *   peak_rss_kb=<K> min=.. max=.. seed=.. bytes=.. seconds=..
 * bytes= is the total requested, identical for every allocator given the
 * same arguments (a check that all binaries ran the same ops).
 *
 * --warmup=N runs N ops of the same loop before the timed ones (not timed,
 * not counted).  --syscalls (hakmem builds only) takes a counter snapshot
 * after the warm-up and another after the timed ops and prints the system
 * calls made in between on a line of its own:
 *   Syscalls mmap=.. munmap=.. madvise=.. mremap=.. total=.. ops=.. variant=..
 * The fast build keeps no counters and says counters=none.
 */
#include "bench_alloc.h"
#include "bench_mixed.h"

#include <inttypes.h>

#define SYSCALL_COUNTERS(X) X(mmap) X(munmap) X(madvise) X(mremap)

struct syscalls {
#define FIELD(name) uint64_t name;
  SYSCALL_COUNTERS(FIELD)
#undef FIELD
  int counted; /* 0 when the build keeps no system-call counters */
};

/* Reads "sys.<name>":<n> from the JSON report of hak_stats_report. */
static uint64_t json_counter(const char *json, const char *name) {
  char key[64];
  snprintf(key, sizeof key, "\"sys.%s\":", name);
  const char *p = strstr(json, key);
  return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

static struct syscalls take_syscalls(void) {
  static char json[1 << 16];
  struct syscalls s = {0};
  if (bench_stats_report(json, sizeof json) == 0)
    return s;
#define READ(name) s.name = json_counter(json, #name);
  SYSCALL_COUNTERS(READ)
#undef READ
  s.counted = strstr(json, "\"variant\":\"fast\"") == NULL;
  return s;
}

static void print_syscalls(struct syscalls a, struct syscalls b, uint64_t ops,
                           uint64_t warmup) {
  if (!BENCH_HAS_STATS)
    bench_die("--syscalls needs a hakmem build (this is %s)", BENCH_ALLOC_NAME);
  if (!a.counted) {
    printf("Syscalls counters=none ops=%" PRIu64 " warmup=%" PRIu64
           " allocator=%s (this build keeps no system-call counters; use the "
           "standard or observe build, or strace)\n",
           ops, warmup, BENCH_ALLOC_NAME);
    return;
  }
  uint64_t total = 0;
  printf("Syscalls");
#define PRINT(name)                                                            \
  printf(" " #name "=%" PRIu64, b.name - a.name);                              \
  total += b.name - a.name;
  SYSCALL_COUNTERS(PRINT)
#undef PRINT
  printf(" total=%" PRIu64 " ops=%" PRIu64 " warmup=%" PRIu64 " allocator=%s\n",
         total, ops, warmup, BENCH_ALLOC_NAME);
}

int main(int argc, char **argv) {
  uint64_t arg[5] = {20000000, 400, 16, 1024, BENCH_DEFAULT_SEED};
  static const char *const what[5] = {"ITERS", "WS", "MIN", "MAX", "SEED"};
  uint64_t warmup = 0;
  int syscalls = 0, nargs = 0;
  for (int i = 1; i < argc; i++) {
    if (!strncmp(argv[i], "--warmup=", 9))
      warmup = bench_parse_count(argv[i] + 9, "--warmup");
    else if (!strcmp(argv[i], "--syscalls"))
      syscalls = 1;
    else if (argv[i][0] == '-' || nargs == 5)
      bench_die("usage: %s [ITERS [WS [MIN [MAX [SEED]]]]] [--warmup=N] "
                "[--syscalls]",
                argv[0]);
    else {
      arg[nargs] = bench_parse_count(argv[i], what[nargs]);
      nargs++;
    }
  }
  if (syscalls && !BENCH_HAS_STATS)
    bench_die("--syscalls needs a hakmem build (this is %s)", BENCH_ALLOC_NAME);

  struct mixed m;
  mixed_init(&m, arg[1], arg[2], arg[3], arg[4]);
  mixed_run(&m, warmup);
  uint64_t warm_bytes = m.bytes;
  struct syscalls before = {0}, after = {0};
  if (syscalls)
    before = take_syscalls();

  double t0 = bench_now();
  mixed_run(&m, arg[0]);
  double t1 = bench_now();

  if (syscalls) {
    after = take_syscalls();
    print_syscalls(before, after, arg[0], warmup);
  }
  uint64_t bytes = m.bytes - warm_bytes;
  mixed_finish(&m);

  double secs = t1 - t0;
  char head[96], tail[192];
  snprintf(head, sizeof head, "iters=%" PRIu64 " ws=%" PRIu64, arg[0], arg[1]);
  snprintf(tail, sizeof tail,
           "min=%" PRIu64 " max=%" PRIu64 " seed=%" PRIu64 " warmup=%" PRIu64
           " bytes=%" PRIu64 " seconds=%.6f",
           arg[2], arg[3], arg[4], warmup, bytes, secs);
  bench_report(secs > 0 ? (double)arg[0] / secs : 0, BENCH_ALLOC_NAME, head,
               tail);
  return 0;
}
