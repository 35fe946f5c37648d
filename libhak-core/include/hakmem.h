/* hakmem.h - the public API of hakmem, a general-purpose memory allocator.
 *
 * Every function behaves as its C library namesake without the prefix:
 *   - hak_malloc(0) returns a unique pointer that hak_free accepts;
 *   - hak_free(NULL) does nothing;
 *   - an impossible size or exhausted memory gives NULL with errno ENOMEM;
 *   - hak_realloc(p, 0) with p != NULL frees p and returns NULL, as glibc
 *     does; hak_realloc(NULL, n) is hak_malloc(n);
 *   - hak_posix_memalign returns EINVAL for an alignment that is not a power
 *     of two multiple of sizeof(void *), without touching errno;
 *     hak_aligned_alloc and hak_memalign give NULL with errno EINVAL for one
 *     that is not a power of two.
 * Blocks are 16-byte aligned.  Linking libhakmem.so (or loading it with
 * LD_PRELOAD) also makes malloc, free and the rest of the family these.
 */
#ifndef HAKMEM_H
#define HAKMEM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HAKMEM_API __attribute__((visibility("default")))
/* None of them throws: C++ callers need no exception table around them. */
#if defined(__cplusplus) && __cplusplus >= 201103L
#define HAKMEM_NOEXCEPT noexcept
#else
#define HAKMEM_NOEXCEPT
#endif
#define HAKMEM_VERSION_MAJOR 0
#define HAKMEM_VERSION_MINOR 1

HAKMEM_API void *hak_malloc(size_t size) HAKMEM_NOEXCEPT
    __attribute__((malloc, alloc_size(1)));
HAKMEM_API void hak_free(void *ptr) HAKMEM_NOEXCEPT;
/* Frees ptr, whose requested size the caller states (size may be any value
 * between the requested size and hak_usable_size(ptr)). */
HAKMEM_API void hak_free_sized(void *ptr, size_t size) HAKMEM_NOEXCEPT;
HAKMEM_API void *hak_calloc(size_t count, size_t size) HAKMEM_NOEXCEPT
    __attribute__((malloc, alloc_size(1, 2)));
HAKMEM_API void *hak_realloc(void *ptr, size_t size) HAKMEM_NOEXCEPT
    __attribute__((alloc_size(2)));
HAKMEM_API void *hak_reallocarray(void *ptr, size_t count,
                                  size_t size) HAKMEM_NOEXCEPT;
HAKMEM_API int hak_posix_memalign(void **out, size_t alignment,
                                  size_t size) HAKMEM_NOEXCEPT;
HAKMEM_API void *hak_aligned_alloc(size_t alignment,
                                   size_t size) HAKMEM_NOEXCEPT
    __attribute__((malloc, alloc_size(2)));
HAKMEM_API void *hak_memalign(size_t alignment, size_t size) HAKMEM_NOEXCEPT
    __attribute__((malloc, alloc_size(2)));
HAKMEM_API void *hak_valloc(size_t size) HAKMEM_NOEXCEPT
    __attribute__((malloc));
HAKMEM_API void *hak_pvalloc(size_t size) HAKMEM_NOEXCEPT
    __attribute__((malloc));
/* Bytes usable in the block at ptr (>= the size asked for); 0 for NULL. */
HAKMEM_API size_t hak_usable_size(const void *ptr) HAKMEM_NOEXCEPT;

/* Prints the statistics report to stderr now (text, or JSON when
 * HAKMEM_STATS=json).  Counters exist in the standard build (system calls)
 * and the observe build (every path); the fast build prints a note. */
HAKMEM_API void hak_stats_print(void) HAKMEM_NOEXCEPT;
/* Fills buf with the report (JSON when json != 0); returns its length. */
HAKMEM_API size_t hak_stats_report(char *buf, size_t size,
                                   int json) HAKMEM_NOEXCEPT;

#ifdef __cplusplus
}
#endif
#endif
