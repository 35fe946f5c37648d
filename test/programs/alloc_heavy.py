# SPDX-License-Identifier: MIT
# alloc_heavy.py - an allocation-heavy Python workload with a deterministic
# result, run by run_program.sh with and without libhakmem.so preloaded.
#
# It builds and tears down dicts, lists, sets, strings, bytes and bytearrays
# of every size (small objects, buffers of kilobytes, megabyte buffers that
# take hakmem's large and huge tiers), grows them by appending (realloc),
# round-trips JSON, and does the same on several threads at once.  Every
# result is folded into one SHA-256 checksum, printed with a few totals.
# Nothing depends on addresses, hash seeds, timing or thread scheduling.
import gc
import hashlib
import json
import sys
import threading
import zlib

digest = hashlib.sha256()


def fold(label, value):
    digest.update(label.encode())
    digest.update(repr(value).encode())


def strings(seed, count):
    out = []
    s = ""
    for i in range(count):
        s += chr(97 + (seed + i) % 26)  # grows by realloc
        if i % 97 == 0:
            out.append(s * (1 + i % 5))
        if len(s) > 3000:
            s = s[1500:]
    return out


def dicts(seed, count):
    d = {}
    for i in range(count):
        key = "k%d_%d" % (seed, i)
        d[key] = {"n": i, "sq": i * i, "s": key * (i % 7), "l": list(range(i % 13))}
        if i % 3 == 0:
            d.pop("k%d_%d" % (seed, i // 2), None)
    return d


def json_round_trip(obj):
    text = json.dumps(obj, sort_keys=True)
    back = json.loads(text)
    assert back == obj
    return len(text), hashlib.sha256(text.encode()).hexdigest()


def buffers(seed):
    total = 0
    chunks = []
    for i in range(200):
        size = ((seed * 7919 + i * 104729) % 300000) + 1  # up to ~300 KB
        b = bytearray(size)
        b[0] = i % 256
        b[-1] = (i * 3) % 256
        total += b[0] + b[-1]
        if i % 4 == 0:
            chunks.append(bytes(b[: size // 2]))
    big = bytearray()
    for i in range(40):
        big += bytes([i % 256]) * 150000  # grows to 6 MB by realloc
    total += sum(big[::4096])
    blob = b"".join(chunks)
    comp = zlib.compress(blob, 6)
    assert zlib.decompress(comp) == blob
    return total, len(blob), zlib.crc32(blob)


def work(seed):
    result = []
    st = strings(seed, 20000)
    result.append((len(st), sum(len(x) for x in st), hashlib.md5("".join(st).encode()).hexdigest()))
    d = dicts(seed, 15000)
    result.append(json_round_trip(d))
    lst = [[j] * (j % 50) for j in range(5000)]
    result.append(sum(map(len, lst)))
    lst.sort(key=lambda x: (-len(x), x[:1]))
    result.append(len(lst[0]))
    st2 = {("%x" % (i * 2654435761 % 2**32)) for i in range(30000)}
    result.append((len(st2), sum(int(x, 16) for x in st2) % 1000003))
    result.append(buffers(seed))
    del d, lst, st, st2
    gc.collect()
    return result


def main():
    single = work(1)
    fold("single", single)

    results = [None] * 4
    def run(i):
        results[i] = work(100 + i)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, r in enumerate(results):
        fold("thread%d" % i, r)

    # Objects made on one thread, dropped on another (frees across threads).
    shared = [dicts(7, 3000) for _ in range(3)]
    def drop(i):
        shared[i] = None
        gc.collect()
    threads = [threading.Thread(target=drop, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    print("single", single[0][0], single[1][0], single[2])
    print("threads", [r[1][0] for r in results])
    print("checksum", digest.hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main())
