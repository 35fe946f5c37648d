/* SPDX-License-Identifier: MIT */
/* bench_harness.h - what every benchmark program shares apart from the
 * allocator: the random generator, the clock, peak RSS, argument parsing and
 * the result line.
 *
 * Nothing here is called inside a timed loop except bench_next(), which is a
 * few register operations; the rest runs before or after timing.
 */
#ifndef BENCH_HARNESS_H
#define BENCH_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* The default seed of every program; any fixed non-zero value would do. */
#define BENCH_DEFAULT_SEED 0x9E3779B97F4A7C15ull

/* xorshift64 (Marsaglia 13/7/17): one 64-bit number per call for the cost of
 * six register operations, so the generator is a small part of an op. */
static inline uint64_t bench_next(uint64_t *state) {
  uint64_t x = *state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *state = x;
  return x;
}

/* xorshift64 has a fixed point at zero. */
static inline uint64_t bench_seed(uint64_t seed) {
  return seed ? seed : BENCH_DEFAULT_SEED;
}

/* A number in [0, n) from 32 random bits, by multiply and shift: no
 * division in the loop, and uniform enough for n far below 2^32. */
static inline uint64_t bench_below(uint32_t bits, uint64_t n) {
  return ((uint64_t)bits * n) >> 32;
}

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Reads a whole small /proc file with read(2), so that it does not allocate
 * (which would disturb the allocator under test); returns its length. */
static inline ssize_t bench_read_proc(const char *path, char *buf, size_t n) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t len = 0, r;
  while (len < (ssize_t)n - 1 &&
         (r = read(fd, buf + len, n - 1 - (size_t)len)) > 0)
    len += r;
  close(fd);
  buf[len > 0 ? len : 0] = 0;
  return len;
}

/* Peak resident set size of the process so far, in KiB: VmHWM of
 * /proc/self/status.  Not getrusage's ru_maxrss, which Linux carries across
 * execve: a benchmark started by a big process (python's subprocess forks
 * it first) would report the parent's size. */
static inline long bench_peak_rss_kb(void) {
  char buf[4096];
  if (bench_read_proc("/proc/self/status", buf, sizeof buf) > 0) {
    const char *p = strstr(buf, "VmHWM:");
    if (p)
      return strtol(p + 6, NULL, 10);
  }
  struct rusage ru;
  return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
}

/* Current resident set size in KiB, from /proc/self/statm (second field,
 * in pages).  Uses read(2) so that sampling does not allocate. */
static inline long bench_rss_kb(void) {
  char buf[128];
  if (bench_read_proc("/proc/self/statm", buf, sizeof buf) <= 0)
    return -1;
  char *p = buf;
  strtol(p, &p, 10); /* total program size; resident pages follow */
  return strtol(p, NULL, 10) * (sysconf(_SC_PAGESIZE) / 1024);
}

__attribute__((noreturn)) static inline void bench_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("bench: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

/* A count given as an integer or in scientific notation ("2e8"). */
static inline uint64_t bench_parse_count(const char *s, const char *what) {
  char *end;
  errno = 0;
  if (strpbrk(s, "eE.")) {
    double d = strtod(s, &end);
    if (*s && !*end && !errno && d >= 0 && d < 1.8e19 &&
        d == (double)(uint64_t)d)
      return (uint64_t)d;
  } else {
    unsigned long long v = strtoull(s, &end, 0);
    if (*s && *s != '-' && !*end && !errno)
      return v;
  }
  bench_die("%s: not a non-negative integer: '%s'", what, s);
}

/* The file name of the library in LD_PRELOAD, or NULL: the plain (libc)
 * binary reports which malloc the dynamic linker actually bound. */
static inline const char *bench_preload_name(void) {
  const char *p = getenv("LD_PRELOAD");
  if (!p || !*p)
    return NULL;
  const char *slash = strrchr(p, '/');
  return slash ? slash + 1 : p;
}

/* Minor page faults of the process so far (getrusage).  On a virtual
 * machine one costs microseconds, so every result line reports them. */
static inline long bench_minflt(void) {
  struct rusage ru;
  return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_minflt : 0;
}

/* Where the next result line starts counting faults: the previous result
 * line, process start, or the last bench_fault_mark() (a program calls it
 * just before a timed loop whose faults alone it wants reported). */
static long bench_fault_base;
static inline void bench_fault_mark(void) { bench_fault_base = bench_minflt(); }

/* The result line every program prints, one per measurement:
 *   Throughput = <ops/s> ops/s allocator=<name> <head> peak_rss_kb=<K>
 *   minflt=<F> <tail>
 * head and tail are space-separated key=value fields; tail may be "".
 * minflt: minor faults since the mark above. */
static inline void bench_report(double ops_per_s, const char *allocator,
                                const char *head, const char *tail) {
  const char *preload = bench_preload_name();
  long faults = bench_minflt();
  printf("Throughput = %.0f ops/s allocator=%s %s peak_rss_kb=%ld minflt=%ld"
         "%s%s%s%s\n",
         ops_per_s, allocator, head, bench_peak_rss_kb(),
         faults - bench_fault_base, *tail ? " " : "", tail,
         preload ? " preload=" : "", preload ? preload : "");
  fflush(stdout);
  bench_fault_base = bench_minflt();
}

#endif
