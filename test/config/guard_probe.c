/* SPDX-License-Identifier: MIT */
/* guard_probe.c - writes one byte past the usable end of a large block.
 * With HAKMEM_GUARD_PAGES=1 (standard and observe builds) the write must
 * fault; without it the byte lands in the region's slack and the program
 * exits 0. */
#include <stdio.h>
#include <string.h>

#include "hakmem.h"

int main(void) {
  char *p = hak_malloc(300000);
  size_t usable = hak_usable_size(p);
  memset(p, 1, usable);
  p = hak_realloc(p, 900000); /* the guard follows the block when it grows */
  usable = hak_usable_size(p);
  memset(p, 2, usable);
  /* Through a volatile pointer: the compiler (and UBSan's object-size
   * check) must not know which block this is. */
  char *volatile q = p;
  q[usable] = 3;
  hak_free(p);
  puts("no fault");
  return 0;
}
