/* SPDX-License-Identifier: MIT */
/* syscall_probe.c - makes a known number of huge allocations (argument 1)
 * and prints hakmem's own system-call counters, for comparison with
 * strace's count of the same run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hakmem.h"

static unsigned long long field(const char *json, const char *name) {
  char key[64];
  snprintf(key, sizeof key, "\"%s\":", name);
  const char *p = strstr(json, key);
  return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 0;
  for (int i = 0; i < n; i++) {
    /* Alternate tiers: a huge block (its own mapping), a burst of tiny and
     * mid blocks (superslabs), then everything freed. */
    char *p = hak_malloc((size_t)(80 + i) << 20);
    p[0] = 1;
    void *small[2000];
    for (int k = 0; k < 2000; k++)
      small[k] = hak_malloc((size_t)(k * 97 % 20000) + 1);
    for (int k = 0; k < 2000; k++)
      hak_free(small[k]);
    hak_free(p);
  }
  static char json[1 << 16];
  hak_stats_report(json, sizeof json, 1);
  printf("mmap=%llu munmap=%llu madvise=%llu mremap=%llu\n",
         field(json, "sys.mmap"), field(json, "sys.munmap"),
         field(json, "sys.madvise"), field(json, "sys.mremap"));
  return 0;
}
