/* SPDX-License-Identifier: MIT */
/* cxx_entry.h - what C++'s operator new and delete (new.cpp) call in
 * api.c: malloc and free with the operators' contracts, and the one thing
 * api.c asks of new.cpp, the failure path (new_handler, std::bad_alloc).
 *
 * C only on both sides of the call: api.c stays a C file that needs no C++
 * runtime, and new.cpp includes nothing of hakmem's C internals. */
#ifndef HAK_CXX_ENTRY_H
#define HAK_CXX_ENTRY_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HAK_CXX_INTERNAL __attribute__((visibility("hidden")))
/* What never throws, said so to C++: a noexcept operator that calls it
 * then needs no exception table (nor the C++ runtime's personality). */
#ifdef __cplusplus
#define HAK_CXX_NOEXCEPT noexcept
#else
#define HAK_CXX_NOEXCEPT
#endif

/* operator new's allocation: never NULL.  On failure they return what
 * hak_new_failed returns (which loops over the new_handler and throws, or
 * gives NULL for the nothrow forms).  align: any power of two (the
 * std::align_val_t forms); another value fails as exhaustion does. */
HAK_CXX_INTERNAL void *hak_new(size_t size);
HAK_CXX_INTERNAL void *hak_new_nothrow(size_t size) HAK_CXX_NOEXCEPT;
HAK_CXX_INTERNAL void *hak_new_aligned(size_t size, size_t align);
HAK_CXX_INTERNAL void *hak_new_aligned_nothrow(size_t size,
                                               size_t align) HAK_CXX_NOEXCEPT;

/* Sized delete: size is what was given to new (align: to aligned new, or 0).
 * The fast build trusts it (a size of a tiny class goes straight to the
 * tiny front); the checked builds compare it with the block and abort on a
 * mismatch.  array: the delete[] forms (for the message). */
HAK_CXX_INTERNAL void hak_delete_sized(void *p, size_t size) HAK_CXX_NOEXCEPT;
HAK_CXX_INTERNAL void hak_delete_array_sized(void *p,
                                             size_t size) HAK_CXX_NOEXCEPT;
HAK_CXX_INTERNAL void hak_delete_aligned(void *p, size_t size, size_t align,
                                         bool array) HAK_CXX_NOEXCEPT;

/* new.cpp: called when the allocation failed.  Calls the installed
 * new_handler and tries again, as long as there is one; without one,
 * throws std::bad_alloc, or returns NULL when nothrow.  Weak in api.c, so
 * that a C program linking the static library needs no C++ runtime (it
 * never reaches it: only new.cpp's operators call hak_new). */
HAK_CXX_INTERNAL void *hak_new_failed(size_t size, size_t align, bool nothrow);

/* libhak-os's (hak_os.h, which C++ does not include): the message and the
 * abort of the one failure new.cpp reports itself. */
HAK_CXX_INTERNAL void hak_os_write_stderr(const char *s,
                                          size_t n) HAK_CXX_NOEXCEPT;
HAK_CXX_INTERNAL __attribute__((noreturn)) void
hak_os_abort(void) HAK_CXX_NOEXCEPT;

#ifdef __cplusplus
}
#endif
#endif
