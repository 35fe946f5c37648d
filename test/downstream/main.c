/* SPDX-License-Identifier: MIT */
/* main.c - a program that uses an installed hakmem (test/install).
 *
 * Built three ways against the installed tree: CMake with hakmem::hakmem
 * (static), CMake with hakmem::shared, and a plain compiler command with the
 * flags pkg-config gives.  EXPECT_SHARED says which library the hak_*
 * functions must come from, checked with dladdr: 1 = libhakmem.so, 0 = the
 * executable itself (static archive).  Exits non-zero on the first failure.
 */
#define _GNU_SOURCE
#include <hakmem.h>

#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#ifndef EXPECT_SHARED
#error "EXPECT_SHARED must be 0 (static archive) or 1 (libhakmem.so)"
#endif

static int failures;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                              \
    }                                                                          \
  } while (0)

static int holds(const unsigned char *p, size_t n, unsigned char v) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != v)
      return 0;
  return 1;
}

int main(void) {
#ifdef EXPECT_VERSION_MAJOR
  /* The header and the package describe the same version. */
  CHECK(HAKMEM_VERSION_MAJOR == EXPECT_VERSION_MAJOR);
  CHECK(HAKMEM_VERSION_MINOR == EXPECT_VERSION_MINOR);
#endif
  /* The library linked is the one the header describes. */
  CHECK(hak_version() == HAKMEM_VERSION);

  /* Where the API comes from. */
  Dl_info info;
  void *(*fn)(size_t) = hak_malloc;
  void *sym;
  memcpy(&sym, &fn, sizeof sym);
  CHECK(dladdr(sym, &info) != 0);
  if (failures == 0) {
    const char *obj = info.dli_fname ? info.dli_fname : "";
    int in_shared = strstr(obj, "libhakmem.so") != NULL;
    if (in_shared != EXPECT_SHARED)
      fprintf(stderr, "hak_malloc comes from %s\n", obj);
    CHECK(in_shared == EXPECT_SHARED);
  }

  /* malloc, usable size, alignment. */
  static const size_t sizes[] = {1, 16, 100, 1024, 1025, 4000, 70000, 300000,
                                 5u << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    unsigned char *p = hak_malloc(sizes[i]);
    CHECK(p != NULL);
    if (!p)
      continue;
    CHECK((uintptr_t)p % 16 == 0);
    CHECK(hak_usable_size(p) >= sizes[i]);
    memset(p, 0x5A, sizes[i]);
    CHECK(holds(p, sizes[i], 0x5A));
    hak_free(p);
  }

  /* realloc keeps the contents across tiers, both ways. */
  unsigned char *p = hak_realloc(NULL, 40);
  CHECK(p != NULL);
  if (p) {
    memset(p, 0x11, 40);
    size_t prev = 40;
    static const size_t steps[] = {1000, 50000, 3u << 20, 2000, 24};
    for (size_t i = 0; i < sizeof steps / sizeof *steps && p; i++) {
      size_t keep = prev < steps[i] ? prev : steps[i];
      unsigned char *q = hak_realloc(p, steps[i]);
      CHECK(q != NULL);
      if (!q)
        break;
      CHECK(holds(q, keep, 0x11));
      CHECK(hak_usable_size(q) >= steps[i]);
      memset(q, 0x11, steps[i]);
      p = q;
      prev = steps[i];
    }
    /* realloc(p, 0) frees p and returns NULL, as glibc does. */
    CHECK(hak_realloc(p, 0) == NULL);
  }

  /* calloc zeroes; malloc(0) is a unique pointer; free(NULL) is a no-op. */
  unsigned *z = hak_calloc(1000, sizeof *z);
  CHECK(z != NULL);
  if (z) {
    for (int i = 0; i < 1000; i++)
      CHECK(z[i] == 0);
    hak_free(z);
  }
  void *a = hak_malloc(0), *b = hak_malloc(0);
  CHECK(a != NULL && b != NULL && a != b);
  hak_free(a);
  hak_free(b);
  hak_free(NULL);
  CHECK(hak_usable_size(NULL) == 0);

  /* An impossible size: NULL and ENOMEM. */
  volatile size_t huge = SIZE_MAX - 4096; /* hidden from alloc_size checks */
  errno = 0;
  CHECK(hak_malloc(huge) == NULL);
  CHECK(errno == ENOMEM);

  /* Many live blocks at once, all distinct and intact. */
  enum { N = 2000 };
  static unsigned char *blocks[N];
  for (int i = 0; i < N; i++) {
    blocks[i] = hak_malloc((size_t)(i % 300) + 1);
    CHECK(blocks[i] != NULL);
    if (blocks[i])
      memset(blocks[i], i & 0xFF, (size_t)(i % 300) + 1);
  }
  for (int i = 0; i < N; i++) {
    if (blocks[i])
      CHECK(holds(blocks[i], (size_t)(i % 300) + 1, (unsigned char)(i & 0xFF)));
    hak_free(blocks[i]);
  }

  /* The report is reachable through the public API. */
  static char report[1 << 15];
  size_t n = hak_stats_report(report, sizeof report, 1);
  CHECK(n > 0 && n < sizeof report);
  CHECK(report[0] == '{');
  /* It tells the size it needs, as snprintf does, and never cuts JSON. */
  size_t need = hak_stats_report(NULL, 0, 1);
  CHECK(need > 0 && need < sizeof report);
  char small[8];
  CHECK(hak_stats_report(small, sizeof small, 1) >= sizeof small);
  CHECK(small[0] == 0);
  CHECK(hak_stats_report(small, sizeof small, 0) >= sizeof small);
  CHECK(strlen(small) == sizeof small - 1);

  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("downstream (%s): ok\n", EXPECT_SHARED ? "shared" : "static");
  return 0;
}
