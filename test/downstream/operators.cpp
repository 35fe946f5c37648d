/* SPDX-License-Identifier: MIT */
// operators.cpp - a C++ program linked with hakmem::cxx (test/install): its
// operator new and delete are hakmem's, so hakmem knows their blocks.
#include <hakmem.h>

#include <cstdio>
#include <new>
#include <string>
#include <vector>

int main() {
  char *p = new char[100];
  // hakmem's tiny class of 100 bytes holds 112 (glibc's would not be one
  // of hakmem's blocks at all).
  if (hak_usable_size(p) != 112)
    return 1;
  delete[] p;
  std::vector<std::string> v(1000, std::string(50, 'x'));
  bool caught = false;
  try {
    void *q = ::operator new(static_cast<std::size_t>(-1) / 2);
    ::operator delete(q);
  } catch (const std::bad_alloc &) {
    caught = true;
  }
  if (!caught || v[999].size() != 50)
    return 1;
  std::puts("downstream (c++ operators): ok");
  return 0;
}
