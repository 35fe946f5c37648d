/* SPDX-License-Identifier: MIT */
/* test_malloc_ext.c - glibc's malloc extensions answered by hakmem, under
 * LD_PRELOAD of libhakmem.so: mallinfo2 and mallinfo follow the program's
 * blocks, malloc_trim gives a freed burst back, malloc_info writes glibc's
 * XML layout, mallopt answers as documented (docs/CONFIG.md), malloc_stats
 * prints hakmem's report, and glibc's __libc_malloc names are hakmem's.
 *
 * A plain program (no cmocka, which allocates between the measurements):
 * each check prints what failed, and the exit status says whether any did.
 * It first makes sure that it runs on hakmem, so that it cannot pass on
 * glibc's answers.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_child.h"

/* glibc's, exported for programs that want "the real malloc". */
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);
extern void __libc_free(void *p);

static int failures;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);          \
      fprintf(stderr, __VA_ARGS__);                                            \
      fputc('\n', stderr);                                                     \
      failures++;                                                              \
    }                                                                          \
  } while (0)

#define MiB ((size_t)1 << 20)

/* Resident set size from /proc/self/statm, read without stdio (which
 * would allocate between the measurements). */
static size_t rss_bytes(void) {
  char buf[128];
  int fd = open("/proc/self/statm", O_RDONLY);
  if (fd < 0)
    return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return 0;
  buf[n] = 0;
  unsigned long size, resident;
  if (sscanf(buf, "%lu %lu", &size, &resident) != 2)
    return 0;
  return resident * (size_t)sysconf(_SC_PAGESIZE);
}

static size_t in_use(void) {
  struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd; /* glibc counts mmapped chunks apart */
}

/* ---- on hakmem ------------------------------------------------------------
 */

static bool on_hakmem(void) {
  /* hakmem's tiny class of 100 bytes holds 112; glibc's chunk 104 or 120. */
  void *p = malloc(100);
  size_t u = malloc_usable_size(p);
  free(p);
  CHECK(u == 112,
        "malloc_usable_size(malloc(100)) = %zu: not hakmem "
        "(run with LD_PRELOAD=libhakmem.so)",
        u);
  return u == 112;
}

/* ---- mallinfo2, mallinfo ------------------------------------------------- */

enum { BLOCKS = 3000 };
static void *blocks[BLOCKS];
static size_t block_usable[BLOCKS];

static size_t size_of(unsigned i) {
  /* Every tier: tiny, mid, large (a superslab), huge (a region each). */
  static const size_t sizes[] = {24, 200, 1000, 3000, 50000, 200000};
  if (i % 500 == 7)
    return i % 1000 == 7 ? 6 * MiB : MiB;
  return sizes[i % 6];
}

static void test_mallinfo2(void) {
  size_t before = in_use();
  size_t requested = 0, usable = 0, large = 0;
  for (unsigned i = 0; i < BLOCKS; i++) {
    size_t n = size_of(i);
    blocks[i] = malloc(n);
    memset(blocks[i], 1, n);
    block_usable[i] = malloc_usable_size(blocks[i]);
    requested += n;
    usable += block_usable[i];
    large += n > 256 * 1024;
  }
  struct mallinfo2 m = mallinfo2();
  size_t grown = m.uordblks + m.hblkhd - before;
  /* The program's count, at the blocks' sizes: what it asked for, rounded
   * up to the size classes; a little more for the calling thread's lists
   * being taken from the slabs in batches is not allowed, as they are
   * walked. */
  CHECK(grown >= requested && grown <= usable + 64 * 1024,
        "in use grew by %zu for %zu blocks of %zu bytes (%zu usable)", grown,
        (size_t)BLOCKS, requested, usable);
  CHECK(m.hblks >= large, "hblks %zu < %zu blocks above 256 KiB", m.hblks,
        large);
  CHECK(m.arena >= m.uordblks + m.hblkhd, "arena (mapped) %zu < in use %zu",
        m.arena, m.uordblks + m.hblkhd);
  CHECK(m.usmblks >= m.arena, "usmblks (peak mapped) %zu < arena %zu",
        m.usmblks, m.arena);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  struct mallinfo old = mallinfo(); /* deprecated, still called */
#pragma GCC diagnostic pop
  CHECK((size_t)old.uordblks + (size_t)old.hblkhd == m.uordblks + m.hblkhd,
        "mallinfo says %d + %d in use, mallinfo2 %zu", old.uordblks, old.hblkhd,
        m.uordblks + m.hblkhd);

  /* Half of them freed: in use shrinks by their sizes. */
  size_t freed = 0;
  for (unsigned i = 0; i < BLOCKS; i += 2) {
    freed += block_usable[i];
    free(blocks[i]);
  }
  size_t now = in_use();
  CHECK(now + freed >= before + grown - 64 * 1024 &&
            now + freed <= before + grown + 64 * 1024,
        "freed %zu bytes: in use went from %zu to %zu", freed, before + grown,
        now);
  struct mallinfo2 after_half = mallinfo2();
  CHECK(after_half.fordblks >= freed / 2,
        "fordblks %zu after freeing %zu (kept for the purge delay)",
        after_half.fordblks, freed);
  for (unsigned i = 1; i < BLOCKS; i += 2)
    free(blocks[i]);
  now = in_use();
  CHECK(now <= before + 64 * 1024 && now + 64 * 1024 >= before,
        "all freed: in use %zu, %zu before", now, before);
}

/* ---- malloc_trim ----------------------------------------------------------
 */

enum { BURST = 4000 };
static void *burst[BURST];

/* 96 MiB in mid blocks (16 KiB to 256 KiB) and 16 MiB in tiny ones, every
 * page written, then all freed. */
static void burst_and_free(void) {
  for (unsigned i = 0; i < BURST; i++) {
    size_t n = i % 4 == 0 ? (16 + (i * 37) % 240) * 1024 : 512 + i % 400;
    if (i % 4 == 0)
      n = n * 96 * MiB / (1000 * 136 * 1024) + 16 * 1024; /* ~96 MiB in all */
    burst[i] = malloc(n);
    if (burst[i])
      memset(burst[i], 7, n);
  }
  for (unsigned i = 0; i < BURST; i++)
    free(burst[i]);
}

static void test_malloc_trim(void) {
  malloc_trim(0);
  size_t base = rss_bytes();
  burst_and_free();
  size_t freed = rss_bytes();
  int r = malloc_trim(0);
  size_t trimmed = rss_bytes();
  fprintf(stderr,
          "malloc_trim: RSS %zu KiB before the burst, %zu after it "
          "was freed, %zu after malloc_trim(0) = %d\n",
          base >> 10, freed >> 10, trimmed >> 10, r);
  CHECK(trimmed <= base + 24 * MiB,
        "RSS %zu KiB after malloc_trim, %zu KiB before the burst",
        trimmed >> 10, base >> 10);
  if (freed > base + 32 * MiB) {
    /* The caches still held the burst (the purge delay had not passed). */
    CHECK(r == 1, "malloc_trim returned %d with %zu KiB held", r,
          (freed - base) >> 10);
    CHECK(trimmed + 16 * MiB <= freed,
          "RSS %zu KiB after malloc_trim, %zu KiB before it", trimmed >> 10,
          freed >> 10);
  }
  /* Nothing left to give back. */
  r = malloc_trim(0);
  CHECK(r == 0, "a second malloc_trim(0) returned %d", r);

  /* With a pad, what fits in it stays. */
  burst_and_free();
  size_t held = mallinfo2().fordblks;
  r = malloc_trim(held + 64 * MiB);
  CHECK(r == 0, "malloc_trim(%zu) with %zu free returned %d", held + 64 * MiB,
        held, r);
  malloc_trim(0);
}

/* ---- mallopt ----------------------------------------------------------------
 */

static void test_mallopt(void) {
  CHECK(mallopt(M_TRIM_THRESHOLD, -1) == 0, "M_TRIM_THRESHOLD -1");
  CHECK(mallopt(M_MMAP_THRESHOLD, 1 << 20) == 0, "M_MMAP_THRESHOLD");
  CHECK(mallopt(M_TOP_PAD, 1 << 20) == 0, "M_TOP_PAD");
  CHECK(mallopt(M_MMAP_MAX, 0) == 0, "M_MMAP_MAX");
  CHECK(mallopt(M_ARENA_MAX, 2) == 0, "M_ARENA_MAX");
  CHECK(mallopt(M_ARENA_TEST, 2) == 0, "M_ARENA_TEST");
  CHECK(mallopt(M_PERTURB, 0x55) == 0, "M_PERTURB");
  CHECK(mallopt(M_CHECK_ACTION, 3) == 0, "M_CHECK_ACTION");
  CHECK(mallopt(M_MXFAST, 64) == 0, "M_MXFAST");
  CHECK(mallopt(12345, 1) == 0, "an unknown option");
  /* M_TRIM_THRESHOLD 0: nothing free stays resident, so a freed burst
   * leaves RSS at once, without malloc_trim. */
  CHECK(mallopt(M_TRIM_THRESHOLD, 0) == 1, "M_TRIM_THRESHOLD 0");
  malloc_trim(0);
  size_t base = rss_bytes();
  burst_and_free();
  size_t freed = rss_bytes();
  CHECK(freed <= base + 24 * MiB,
        "M_TRIM_THRESHOLD 0: RSS %zu KiB after a freed burst, %zu before",
        freed >> 10, base >> 10);
  CHECK(mallopt(M_TRIM_THRESHOLD, 128 << 20) == 1, "M_TRIM_THRESHOLD 128 MiB");
}

/* ---- malloc_info, malloc_stats ---------------------------------------- */

static void test_malloc_info(void) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  CHECK(f != NULL, "open_memstream: %d", errno);
  if (!f)
    return;
  char *keep = malloc(8 * MiB); /* one block of its own region */
  memset(keep, 1, 8 * MiB);
  CHECK(malloc_info(0, f) == 0, "malloc_info(0) failed");
  fclose(f);
  /* Well-formed as glibc writes it: one element a line, every element
   * closed, the root and one heap. */
  CHECK(strncmp(text, "<malloc version=\"1\">\n", 21) == 0, "starts: %.40s",
        text);
  CHECK(len > 9 && strcmp(text + len - 10, "</malloc>\n") == 0, "ends: %s",
        text + (len > 20 ? len - 20 : 0));
  unsigned open = 0, lines = 0;
  for (char *line = text; *line; lines++) {
    char *end = strchr(line, '\n');
    CHECK(end && line[0] == '<' && end[-1] == '>', "line %u: %.60s", lines,
          line);
    if (!end)
      break;
    if (line[1] == '/')
      open--;
    else if (end[-2] != '/')
      open++;
    line = end + 1;
  }
  CHECK(open == 0, "%u elements not closed", open);
  CHECK(strstr(text, "<heap nr=\"0\">") && strstr(text, "</heap>") &&
            strstr(text, "<sizes>") && strstr(text, "</sizes>"),
        "glibc's elements missing: %s", text);
  size_t mapped = 0, mmap_count = 0;
  const char *sys = strstr(text, "<system type=\"current\" size=\"");
  CHECK(sys &&
            sscanf(sys, "<system type=\"current\" size=\"%zu\"", &mapped) == 1,
        "no current size");
  const char *mm = strstr(text, "<total type=\"mmap\" count=\"");
  CHECK(mm &&
            sscanf(mm, "<total type=\"mmap\" count=\"%zu\"", &mmap_count) == 1,
        "no mmap total");
  struct mallinfo2 m = mallinfo2();
  CHECK(mapped >= 8 * MiB && mapped <= m.usmblks,
        "malloc_info says %zu mapped; mallinfo2 %zu (peak %zu)", mapped,
        m.arena, m.usmblks);
  CHECK(mmap_count >= 1, "the 8 MiB block is not among the mmap total");
  free(keep);
  free(text);
  errno = 0;
  f = fopen("/dev/null", "w");
  CHECK(malloc_info(1, f) == -1 && errno == EINVAL,
        "malloc_info(1) must fail with EINVAL (errno %d)", errno);
  fclose(f);
}

static int print_stats(void *arg) {
  (void)arg;
  malloc_stats();
  return 0;
}

static void test_malloc_stats(void) {
  struct child_opts o = {.alarm = 20, .capture_stderr = true};
  struct child_end e;
  child_run(print_stats, NULL, &o, &e);
  CHECK(child_ok(&e) && strstr(e.err, "hakmem") != NULL,
        "malloc_stats wrote: \"%s\"", e.err);
}

/* ---- __libc_malloc and the rest ------------------------------------------ */

static void test_libc_names(void) {
  void *p = __libc_malloc(100);
  CHECK(malloc_usable_size(p) == 112, "__libc_malloc is not hakmem's");
  p = __libc_realloc(p, 3000);
  CHECK(malloc_usable_size(p) == 3072, "__libc_realloc is not hakmem's: %zu",
        malloc_usable_size(p));
  free(p);
  char *z = __libc_calloc(10, 10);
  CHECK(z && z[99] == 0 && malloc_usable_size(z) == 112, "__libc_calloc");
  __libc_free(z);
  void *a = __libc_memalign(4096, 100);
  CHECK(a && ((uintptr_t)a & 4095) == 0, "__libc_memalign");
  free(a);
}

int main(void) {
  if (!on_hakmem())
    return 1;
  test_mallinfo2();
  test_malloc_trim();
  test_mallopt();
  test_malloc_info();
  test_malloc_stats();
  test_libc_names();
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("all malloc extension checks passed\n");
  return 0;
}
