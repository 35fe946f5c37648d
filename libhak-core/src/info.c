/* SPDX-License-Identifier: MIT */
/* info.c - what hakmem holds, and the C library's malloc extensions built
 * on it: malloc_trim, mallinfo2, mallinfo, malloc_stats, malloc_info and
 * mallopt (exported by libhakmem.so; hak_ names in both products).
 *
 * Nothing here runs on a hot path, and nothing is counted on one: the
 * bytes in use are summed when asked, from the slabs' metadata (tiny, mid)
 * and the large tier's count of its blocks. */
#include "core_internal.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>

void hak_memory_info(struct hak_memory_info *info) {
  hak_ensure_init();
  VG_ENTER(); /* walks the calling thread's lists */
  struct hak_tiny_usage tiny = hak_tiny_usage();
  struct hak_mid_usage mid = hak_mid_usage();
  VG_LEAVE();
  size_t large_blocks, large_bytes;
  hak_large_usage(&large_blocks, &large_bytes);
  struct hak_large_info large = hak_large_info();
  struct hak_os_cache_info cache = hak_os_cache_info();
  *info = (struct hak_memory_info){
      .in_use = tiny.in_use + mid.in_use + large_bytes,
      .free = tiny.free + mid.free + large.dirty_bytes +
              cache.superslab_committed_bytes + cache.huge_bytes,
      .mapped = hak_os_mapped_bytes(),
      .mapped_peak = hak_os_mapped_peak(),
      .large_blocks = large_blocks,
      .large_bytes = large_bytes,
  };
}

int hak_trim(size_t pad) {
  hak_ensure_init();
  size_t released = 0;
  /* The free slabs the tiers keep for the purge delay first (they may be
   * all there is), then the free superslabs and huge regions, oldest
   * first, down to pad. */
  size_t slabs = (size_t)hak_tiny_info().slabs_dirty * HAK_TINY_SLAB_SIZE +
                 (size_t)hak_mid_dirty_slabs() * HAK_MID_SLAB_SIZE;
  VG_ENTER();
  if (slabs > pad || pad == 0) {
    released += hak_tiny_trim() + hak_mid_trim();
    slabs = 0;
  }
  VG_LEAVE();
  /* The big-block arenas with no live block go back whole (their free
   * pages are kept for a while otherwise, docs/ARCHITECTURE.md). */
  size_t large_dirty = hak_large_info().dirty_bytes;
  hak_large_release();
  size_t large_left = hak_large_info().dirty_bytes;
  released += large_dirty - (large_left < large_dirty ? large_left : large_dirty);
  released += hak_os_trim(pad - slabs);
  return released != 0;
}

static size_t slabs_within(int bytes, size_t slab, size_t most) {
  size_t n = (size_t)bytes / slab;
  return n < most ? n : most;
}

int hak_mallopt(int param, int value) {
  hak_ensure_init();
  switch (param) {
  case M_TRIM_THRESHOLD:
    /* Free memory above this stays resident no longer than the purge
     * delay: the bounds of the free superslabs and the free tiny and mid
     * slabs that keep their pages within it (HAKMEM_SUPERSLAB_CACHE,
     * HAKMEM_TINY_DIRTY_SLABS, and the mid tier's 64), each set to it. */
    if (value < 0)
      return 0;
    hak_config.superslab_cache = (unsigned)((size_t)value / HAK_SUPERSLAB_SIZE);
    hak_config.tiny_dirty_slabs =
        (unsigned)slabs_within(value, HAK_TINY_SLAB_SIZE, 4096);
    hak_config.mid_dirty_slabs =
        (unsigned)slabs_within(value, HAK_MID_SLAB_SIZE, 4096);
    hak_config_apply();
    return 1;
  default:
    /* M_MMAP_THRESHOLD (the tiers' bounds are fixed: every block above
     * 4 MiB - 4 KiB has a mapping of its own), M_TOP_PAD, M_MMAP_MAX,
     * M_ARENA_*, M_PERTURB, M_CHECK_ACTION, M_MXFAST: no hakmem meaning. */
    return 0;
  }
}

/* ---- the C library's names (libhakmem.so only) -------------------------- */
#ifdef HAK_OVERRIDE
#define HAK_EXPORT __attribute__((visibility("default")))

HAK_EXPORT int malloc_trim(size_t pad) { return hak_trim(pad); }

/* glibc's fields, as far as they have a hakmem meaning: arena, the bytes
 * mapped; uordblks, in use; fordblks, free in the caches; hblks and hblkhd,
 * the blocks above the mid tier (a region each, as glibc's mmapped chunks)
 * and their bytes, which glibc counts outside uordblks, and so does this;
 * usmblks, the most mapped at once (glibc: 0).  The rest: 0. */
HAK_EXPORT struct mallinfo2 mallinfo2(void) {
  struct hak_memory_info i;
  hak_memory_info(&i);
  return (struct mallinfo2){.arena = i.mapped,
                            .hblks = i.large_blocks,
                            .hblkhd = i.large_bytes,
                            .usmblks = i.mapped_peak,
                            .uordblks = i.in_use - i.large_bytes,
                            .fordblks = i.free};
}

static int clamp(size_t x) { return x > INT_MAX ? INT_MAX : (int)x; }

HAK_EXPORT struct mallinfo mallinfo(void) {
  struct mallinfo2 m = mallinfo2();
  return (struct mallinfo){.arena = clamp(m.arena),
                           .hblks = clamp(m.hblks),
                           .hblkhd = clamp(m.hblkhd),
                           .usmblks = clamp(m.usmblks),
                           .uordblks = clamp(m.uordblks),
                           .fordblks = clamp(m.fordblks)};
}

HAK_EXPORT void malloc_stats(void) { hak_stats_print(); }

/* glibc's element layout: one heap (hakmem has no arenas), the free bytes
 * as the "rest" total, the large blocks as "mmap", the mapped bytes as
 * system and address space.  No <sizes> entries: hakmem's free blocks are
 * not kept in bins that a histogram would describe. */
HAK_EXPORT int malloc_info(int options, FILE *fp) {
  if (options != 0) {
    errno = EINVAL;
    return -1;
  }
  struct hak_memory_info i;
  hak_memory_info(&i);
  fprintf(fp,
          "<malloc version=\"1\">\n"
          "<heap nr=\"0\">\n"
          "<sizes>\n"
          "</sizes>\n"
          "<total type=\"fast\" count=\"0\" size=\"0\"/>\n"
          "<total type=\"rest\" count=\"0\" size=\"%zu\"/>\n"
          "<system type=\"current\" size=\"%zu\"/>\n"
          "<system type=\"max\" size=\"%zu\"/>\n"
          "<aspace type=\"total\" size=\"%zu\"/>\n"
          "<aspace type=\"mprotect\" size=\"%zu\"/>\n"
          "</heap>\n"
          "<total type=\"fast\" count=\"0\" size=\"0\"/>\n"
          "<total type=\"rest\" count=\"0\" size=\"%zu\"/>\n"
          "<total type=\"mmap\" count=\"%zu\" size=\"%zu\"/>\n"
          "<system type=\"current\" size=\"%zu\"/>\n"
          "<system type=\"max\" size=\"%zu\"/>\n"
          "<aspace type=\"total\" size=\"%zu\"/>\n"
          "<aspace type=\"mprotect\" size=\"%zu\"/>\n"
          "</malloc>\n",
          i.free, i.mapped, i.mapped_peak, i.mapped, i.mapped, i.free,
          i.large_blocks, i.large_bytes, i.mapped, i.mapped_peak, i.mapped,
          i.mapped);
  return 0;
}

HAK_EXPORT int mallopt(int param, int value) {
  return hak_mallopt(param, value);
}
#endif
