/* SPDX-License-Identifier: MIT */
/* report_dump.c - prints the JSON report of a process holding blocks of
 * every tier, for check_report.py (the report must parse as JSON). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hakmem.h"

int main(int argc, char **argv) {
  int json = argc < 2 || strcmp(argv[1], "text") != 0;
  static void *p[1000];
  for (int i = 0; i < 1000; i++)
    p[i] = hak_malloc(i < 900 ? 48 : i < 990 ? 3000 : (size_t)1 << 20);
  for (int i = 0; i < 1000; i += 3)
    hak_free(p[i]);
  size_t need = hak_stats_report(NULL, 0, json);
  char *buf = malloc(need + 4096);
  if (!buf)
    return 1;
  size_t n = hak_stats_report(buf, need + 4096, json);
  if (n >= need + 4096)
    return 2;
  fputs(buf, stdout);
  free(buf);
  return 0;
}
