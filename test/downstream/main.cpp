/* SPDX-License-Identifier: MIT */
// main.cpp - hakmem.h from C++: the declarations have C linkage, so a C++
// program links against the C library (test/install).
#include <hakmem.h>

#include <cstdio>
#include <cstring>

int main() {
  char *p = static_cast<char *>(hak_malloc(100));
  if (!p || hak_usable_size(p) < 100)
    return 1;
  std::memset(p, 'x', 100);
  p = static_cast<char *>(hak_realloc(p, 10000));
  if (!p || p[99] != 'x')
    return 1;
  hak_free(p);
  std::puts("downstream (c++): ok");
  return 0;
}
