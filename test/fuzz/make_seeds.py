#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""make_seeds.py - writes structured seed inputs for fuzz_alloc.c.

The committed corpus (test/fuzz/corpus) is these seeds merged with what
libFuzzer found from them (fuzz_alloc -merge=1 keeps the inputs that add
coverage).  To rebuild it:

    test/fuzz/make_seeds.py /tmp/seeds
    test/fuzz/run_fuzz.sh build/fuzz 600          # grows build/fuzz/corpus-new
    mkdir /tmp/merged && build/fuzz/fuzz_alloc -merge=1 /tmp/merged \\
        /tmp/seeds build/fuzz/corpus-new test/fuzz/corpus
    rm test/fuzz/corpus/* && cp /tmp/merged/* test/fuzz/corpus/

The encoding is fuzz_alloc.c's: an operation byte (op % 17), a slot byte,
then the operation's arguments; a size is a kind byte (% 10: small, tiny,
tiny/mid boundary, mid, mid/large boundary, large, large/huge boundary, a
mid class boundary, huge) and a 16-bit little-endian word.
"""
import os
import random
import sys

MALLOC, CALLOC, REALLOC, FREE, FREE_SIZED, ALIGNED, VALLOC, REALLOCARRAY = 0, 2, 3, 5, 6, 7, 8, 9
USABLE, HAND_OVER, HELPER_ALLOC, HELPER_RESTART, CHECK_ALL, IMPOSSIBLE, MALLOC0 = 10, 11, 12, 13, 14, 15, 16
REALLOC_TO_ZERO = 3 + 34  # op % 17 == 3 with bit 5 set


def size(kind, word):
    return bytes([kind, word & 255, (word >> 8) & 255])


def op(code, slot, *args):
    return bytes([code, slot]) + b"".join(args)


def seeds():
    out = {}
    # Every size kind, allocated, reallocated through every other kind, freed.
    for kind in range(10):
        prog = b""
        for w in (0, 1, 17, 255, 4096, 65535):
            prog += op(MALLOC, w % 32, size(kind, w))
        for k2 in range(10):
            prog += op(REALLOC, 1, size(k2, 777 * k2))
        prog += op(REALLOC_TO_ZERO, 1) + op(CHECK_ALL, 0)
        out[f"sizes-{kind}"] = prog
    # calloc and reallocarray with every count.
    prog = b""
    for c in range(8):
        prog += op(CALLOC, c, size(c % 10, 1000 * c + 7), bytes([c]))
        prog += op(REALLOCARRAY, c, size((c + 3) % 10, 333 * c), bytes([c * 37 % 256]))
    out["calloc-reallocarray"] = prog + op(CHECK_ALL, 0)
    # The aligned allocators at every alignment, valid or not.
    for how in range(3):
        prog = b""
        for a in list(range(25)) + list(range(200, 211)):
            prog += op(ALIGNED, a % 32, bytes([how, a]), size(a % 10, a * 1111))
        out[f"aligned-{how}"] = prog + op(CHECK_ALL, 0)
    prog = b""
    for kind in range(10):
        prog += op(VALLOC, kind, size(kind, 4095 + kind)) + op(VALLOC + 68, kind + 10, size(kind, kind))
    out["valloc-pvalloc"] = prog
    # The helper thread: blocks it allocates, blocks handed to it, restarts.
    prog = b""
    for i in range(64):
        prog += op(HELPER_ALLOC, i % 32, size(i % 10, i * 97))
        if i % 3 == 0:
            prog += op(HAND_OVER, (i * 7) % 32)
        if i % 16 == 15:
            prog += op(HELPER_RESTART, 0)
        prog += op(MALLOC, (i * 5) % 32, size((i + 1) % 10, i * 13))
        prog += op(HAND_OVER, (i * 5) % 32)
    out["helper"] = prog + op(CHECK_ALL, 0)
    # Impossible sizes through every entry point.
    out["impossible"] = b"".join(op(MALLOC, 0, size(1, 100)) + op(IMPOSSIBLE, 0, bytes([w]))
                                 for w in range(30))
    # Usable sizes, free_sized, malloc(0).
    prog = b""
    for i in range(32):
        prog += op(MALLOC, i, size(i % 10, i * 211)) + op(USABLE, i)
        prog += op(MALLOC0, (i + 16) % 32)
    for i in range(32):
        prog += op(FREE_SIZED if i % 2 else FREE, i)
    out["usable-free"] = prog
    # Random programs of every length.
    rng = random.Random(1234)
    for n in range(24):
        out[f"random-{n}"] = bytes(rng.randrange(256) for _ in range(64 << (n % 5)))
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_seeds.py <output directory>")
    os.makedirs(sys.argv[1], exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(sys.argv[1], name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
