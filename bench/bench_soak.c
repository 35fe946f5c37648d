/* SPDX-License-Identifier: MIT */
/* bench_soak.c - the long run: Mixed at a fixed working set for a given
 * time, sampling throughput and resident memory at fixed intervals.
 *
 *   bench_soak_<alloc> [SECONDS [INTERVAL [WS [MIN [MAX [SEED]]]]]]
 *
 * Defaults: 600 s, a sample every 5 s, WS 400, 16..1024 B, a fixed seed.
 * Intervals may be fractions ("0.5").  One line per sample:
 *   Sample t=<s since start> ops=<ops in interval> ops_per_s=<..> rss_kb=<..>
 * then the usual result line for the whole run.  Throughput counts only the
 * time spent in the loop (the clock is read between chunks of ops, the RSS
 * between samples); RSS is the current resident size (/proc/self/statm), not
 * the peak, so that growth over time shows.  bench/run_soak turns the
 * samples into drift figures, a CSV file and a plot.
 */
#include "bench_alloc.h"
#include "bench_mixed.h"

#include <inttypes.h>

#define CHUNK (1u << 18) /* ops between two reads of the clock */

static double parse_seconds(const char *s, const char *what) {
  char *end;
  double d = strtod(s, &end);
  if (!*s || *end || !(d > 0) || d > 1e7)
    bench_die("%s: not a positive number of seconds: '%s'", what, s);
  return d;
}

int main(int argc, char **argv) {
  if (argc > 7)
    bench_die("usage: %s [SECONDS [INTERVAL [WS [MIN [MAX [SEED]]]]]]",
              argv[0]);
  double duration = argc > 1 ? parse_seconds(argv[1], "SECONDS") : 600;
  double interval = argc > 2 ? parse_seconds(argv[2], "INTERVAL") : 5;
  uint64_t ws = argc > 3 ? bench_parse_count(argv[3], "WS") : 400;
  uint64_t min = argc > 4 ? bench_parse_count(argv[4], "MIN") : 16;
  uint64_t max = argc > 5 ? bench_parse_count(argv[5], "MAX") : 1024;
  uint64_t seed =
      argc > 6 ? bench_parse_count(argv[6], "SEED") : BENCH_DEFAULT_SEED;

  struct mixed m;
  mixed_init(&m, ws, min, max, seed);
  double start = bench_now(), next = start + interval, end = start + duration;
  double busy = 0, window_busy = 0; /* seconds inside mixed_run */
  uint64_t ops = 0, window_ops = 0, samples = 0;
  for (;;) {
    double t0 = bench_now();
    mixed_run(&m, CHUNK);
    double t1 = bench_now();
    busy += t1 - t0;
    window_busy += t1 - t0;
    ops += CHUNK;
    window_ops += CHUNK;
    if (t1 >= next || t1 >= end) {
      printf("Sample t=%.3f ops=%" PRIu64 " ops_per_s=%.0f rss_kb=%ld\n",
             t1 - start, window_ops,
             window_busy > 0 ? (double)window_ops / window_busy : 0,
             bench_rss_kb());
      fflush(stdout);
      samples++;
      window_ops = 0;
      window_busy = 0;
      while (next <= t1)
        next += interval;
    }
    if (t1 >= end)
      break;
  }
  mixed_finish(&m);

  char head[96], tail[160];
  snprintf(head, sizeof head, "iters=%" PRIu64 " ws=%" PRIu64, ops, ws);
  snprintf(tail, sizeof tail,
           "min=%" PRIu64 " max=%" PRIu64 " duration=%.1f interval=%.3f "
           "samples=%" PRIu64 " seconds=%.6f",
           min, max, duration, interval, samples, busy);
  bench_report(busy > 0 ? (double)ops / busy : 0, BENCH_ALLOC_NAME, head, tail);
  return 0;
}
