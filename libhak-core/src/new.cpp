/* SPDX-License-Identifier: MIT */
// new.cpp - C++'s replaceable global operator new and delete, on hakmem.
//
// Every form of C++17 and C++20: new and new[], each plain, nothrow,
// std::align_val_t and aligned nothrow; delete and delete[], each plain,
// sized, aligned, sized and aligned, and the nothrow ones placement new
// calls on a constructor's exception.  Each is one jump into api.c
// (cxx_entry.h), where the fast paths are inline; only the failure path
// lives here, because only it needs C++: the new_handler loop, and
// std::bad_alloc.
//
// Built into libhakmem.so (LD_PRELOAD or linking it replaces libstdc++'s
// operators) and into the static archive hakmem_cxx (hakmem::cxx), apart
// from the C archive, whose exported symbols all start with hak_.
//
// No libstdc++ in the C libraries: the few symbols of the C++ runtime used
// here are weak references (below), so libhakmem.so needs libstdc++ no more
// than the program does.  In a C++ program they resolve to libstdc++, which
// is loaded by the time anything calls operator new; a C program never
// calls it.
#include "cxx_entry.h"

#include <cstddef>
#include <dlfcn.h>
#include <new>

#include "hakmem.h"

// The C++ runtime, weakly: std::get_new_handler and std::__throw_bad_alloc
// (which throws std::bad_alloc from libstdc++, the owner of its type
// information).  Declared again under names of ours, so that the compiler
// knows that they may be absent.
extern "C" {
std::new_handler hak_cxx_get_new_handler() noexcept
    __asm__("_ZSt15get_new_handlerv") __attribute__((weak));
[[noreturn]] void hak_cxx_throw_bad_alloc() __asm__("_ZSt17__throw_bad_allocv")
    __attribute__((weak));
}

#define HAK_CXX_EXPORT __attribute__((visibility("default")))

namespace {

[[noreturn]] void out_of_memory_without_runtime() {
  // Only a C++ program calls operator new, and it brings libstdc++; one
  // linked without it (-nostdlib++) has no std::bad_alloc to throw.
  static const char msg[] =
      "hakmem: operator new(): out of memory, and no C++ runtime to throw "
      "std::bad_alloc\n";
  hak_os_write_stderr(msg, sizeof msg - 1);
  hak_os_abort();
}

using nothrow_new = void *(*)(std::size_t, const std::nothrow_t &) noexcept;
using nothrow_new_aligned = void *(*)(std::size_t, std::align_val_t,
                                      const std::nothrow_t &) noexcept;

// libstdc++'s own definition of an operator, or nullptr when the program
// has no libstdc++.so (a static libstdc++).  Asked of libstdc++ by name,
// not as "the next definition": a sanitizer runtime may come between.
void *libstdcxx_symbol(const char *name) noexcept {
  void *lib = dlopen("libstdc++.so.6", RTLD_NOW | RTLD_NOLOAD);
  if (lib == nullptr)
    return nullptr;
  void *sym = dlsym(lib, name);
  dlclose(lib); // only our reference: the program's keeps it loaded
  return sym;
}

// A nothrow form with a new_handler installed.  The handler may throw
// std::bad_alloc, which the nothrow form must turn into nullptr; catching
// it here would tie libhakmem.so to the C++ runtime (a catch needs its
// personality routine, whatever the program).  libstdc++'s own nothrow
// operator is exactly that catch around a call of the plain operator new,
// which is ours.  Without libstdc++.so, nullptr at once, without the
// handler.
void *nothrow_with_handler(std::size_t size, std::size_t align) noexcept {
  if (align) {
    auto next = reinterpret_cast<nothrow_new_aligned>(
        libstdcxx_symbol("_ZnwmSt11align_val_tRKSt9nothrow_t"));
    return next ? next(size, std::align_val_t(align), std::nothrow_t{})
                : nullptr;
  }
  auto next =
      reinterpret_cast<nothrow_new>(libstdcxx_symbol("_ZnwmRKSt9nothrow_t"));
  return next ? next(size, std::nothrow_t{}) : nullptr;
}

} // namespace

// The standard's loop ([new.delete.single]): while the allocation fails,
// call the new_handler if there is one, else throw std::bad_alloc (the
// nothrow forms: return nullptr).
extern "C" void *hak_new_failed(std::size_t size, std::size_t align,
                                bool nothrow) {
  for (;;) {
    std::new_handler handler =
        hak_cxx_get_new_handler ? hak_cxx_get_new_handler() : nullptr;
    if (handler == nullptr) {
      if (nothrow)
        return nullptr;
      if (!hak_cxx_throw_bad_alloc)
        out_of_memory_without_runtime();
      hak_cxx_throw_bad_alloc();
    }
    if (nothrow)
      return nothrow_with_handler(size, align);
    handler();
    if (void *p = align ? hak_aligned_alloc(align, size) : hak_malloc(size))
      return p;
  }
}

// ---- new ------------------------------------------------------------------

HAK_CXX_EXPORT void *operator new(std::size_t n) { return hak_new(n); }
HAK_CXX_EXPORT void *operator new[](std::size_t n) { return hak_new(n); }
HAK_CXX_EXPORT void *operator new(std::size_t n,
                                  const std::nothrow_t &) noexcept {
  return hak_new_nothrow(n);
}
HAK_CXX_EXPORT void *operator new[](std::size_t n,
                                    const std::nothrow_t &) noexcept {
  return hak_new_nothrow(n);
}
HAK_CXX_EXPORT void *operator new(std::size_t n, std::align_val_t a) {
  return hak_new_aligned(n, static_cast<std::size_t>(a));
}
HAK_CXX_EXPORT void *operator new[](std::size_t n, std::align_val_t a) {
  return hak_new_aligned(n, static_cast<std::size_t>(a));
}
HAK_CXX_EXPORT void *operator new(std::size_t n, std::align_val_t a,
                                  const std::nothrow_t &) noexcept {
  return hak_new_aligned_nothrow(n, static_cast<std::size_t>(a));
}
HAK_CXX_EXPORT void *operator new[](std::size_t n, std::align_val_t a,
                                    const std::nothrow_t &) noexcept {
  return hak_new_aligned_nothrow(n, static_cast<std::size_t>(a));
}

// ---- delete ---------------------------------------------------------------
// Without a size, delete is free: the block's region says where it goes.

HAK_CXX_EXPORT void operator delete(void *p) noexcept { hak_free(p); }
HAK_CXX_EXPORT void operator delete[](void *p) noexcept { hak_free(p); }
HAK_CXX_EXPORT void operator delete(void *p, const std::nothrow_t &) noexcept {
  hak_free(p);
}
HAK_CXX_EXPORT void operator delete[](void *p,
                                      const std::nothrow_t &) noexcept {
  hak_free(p);
}
HAK_CXX_EXPORT void operator delete(void *p, std::size_t n) noexcept {
  hak_delete_sized(p, n);
}
HAK_CXX_EXPORT void operator delete[](void *p, std::size_t n) noexcept {
  hak_delete_array_sized(p, n);
}
HAK_CXX_EXPORT void operator delete(void *p, std::align_val_t) noexcept {
  hak_free(p);
}
HAK_CXX_EXPORT void operator delete[](void *p, std::align_val_t) noexcept {
  hak_free(p);
}
HAK_CXX_EXPORT void operator delete(void *p, std::align_val_t,
                                    const std::nothrow_t &) noexcept {
  hak_free(p);
}
HAK_CXX_EXPORT void operator delete[](void *p, std::align_val_t,
                                      const std::nothrow_t &) noexcept {
  hak_free(p);
}
HAK_CXX_EXPORT void operator delete(void *p, std::size_t n,
                                    std::align_val_t a) noexcept {
  hak_delete_aligned(p, n, static_cast<std::size_t>(a), false);
}
HAK_CXX_EXPORT void operator delete[](void *p, std::size_t n,
                                      std::align_val_t a) noexcept {
  hak_delete_aligned(p, n, static_cast<std::size_t>(a), true);
}
