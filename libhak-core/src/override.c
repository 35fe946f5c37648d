/* override.c - the C library's malloc family, built into libhakmem.so only.
 *
 * Loading the shared library with LD_PRELOAD (or linking it) makes these the
 * process's malloc, free and the rest; C++'s operator new and delete reach
 * them through libstdc++.  The library is linked with -Bsymbolic, so each
 * of these is a direct jump to the hak_ function, not a PLT call.
 */
#include "hakmem.h"

#include <stddef.h>

#define EXPORT __attribute__((visibility("default")))

EXPORT void *malloc(size_t size) { return hak_malloc(size); }
EXPORT void free(void *p) { hak_free(p); }
EXPORT void *calloc(size_t n, size_t size) { return hak_calloc(n, size); }
EXPORT void *realloc(void *p, size_t size) { return hak_realloc(p, size); }
EXPORT void *reallocarray(void *p, size_t n, size_t size) {
  return hak_reallocarray(p, n, size);
}
EXPORT int posix_memalign(void **out, size_t align, size_t size) {
  return hak_posix_memalign(out, align, size);
}
EXPORT void *aligned_alloc(size_t align, size_t size) {
  return hak_aligned_alloc(align, size);
}
EXPORT void *memalign(size_t align, size_t size) {
  return hak_memalign(align, size);
}
EXPORT void *valloc(size_t size) { return hak_valloc(size); }
EXPORT void *pvalloc(size_t size) { return hak_pvalloc(size); }
EXPORT size_t malloc_usable_size(void *p) { return hak_usable_size(p); }
EXPORT void free_sized(void *p, size_t size) { hak_free_sized(p, size); }
/* glibc's historical alias, still called by some old binaries. */
EXPORT void cfree(void *p) { hak_free(p); }
