/* SPDX-License-Identifier: MIT */
/* classes.c - the tiny size classes.
 *
 * 48 classes: every 16 bytes up to 512 (16, 32, ..., 512), then every 32
 * bytes up to 1024 (544, 576, ..., 1024).  Each class keeps at least one
 * partly used page per thread, so fewer classes mean less resident memory
 * at small working sets; above 512 bytes a 32-byte step wastes at most 6 %
 * of a block.  Measured on Mixed against 64 classes of 16 bytes:
 * peak RSS 2236 -> 2072 KiB at WS 400 (mimalloc 2192) and 16044 -> 15012
 * KiB at WS 40000 (mimalloc 14604), the same speed (docs/BENCHMARKS.md).
 */
#include "tiny_internal.h"

_Static_assert(HAK_TINY_MAX / 16 == 64, "one entry per 16-byte step");

#define STEPS_OF_16(a) a, a + 1, a + 2, a + 3, a + 4, a + 5, a + 6, a + 7
#define PAIRS_OF_32(a) a, a, a + 1, a + 1, a + 2, a + 2, a + 3, a + 3

const uint8_t hak_tiny_class_of[HAK_TINY_MAX / 16] = {
    STEPS_OF_16(0),  STEPS_OF_16(8),  STEPS_OF_16(16), STEPS_OF_16(24),
    PAIRS_OF_32(32), PAIRS_OF_32(36), PAIRS_OF_32(40), PAIRS_OF_32(44),
};

#define SIZES_16(a)                                                            \
  16 * (a + 1), 16 * (a + 2), 16 * (a + 3), 16 * (a + 4), 16 * (a + 5),        \
      16 * (a + 6), 16 * (a + 7), 16 * (a + 8)
#define SIZES_32(a)                                                            \
  512 + 32 * (a + 1), 512 + 32 * (a + 2), 512 + 32 * (a + 3), 512 + 32 * (a + 4)

const uint32_t hak_tiny_class_sizes[HAK_TINY_CLASSES] = {
    SIZES_16(0), SIZES_16(8), SIZES_16(16), SIZES_16(24),
    SIZES_32(0), SIZES_32(4), SIZES_32(8),  SIZES_32(12),
};
