/* SPDX-License-Identifier: MIT */
// bench_cxx.cpp - the C++ workload of TARGETS.md: standard containers as a
// program uses them, with the allocator behind operator new and delete.
//
//   bench_cxx_<alloc> [ITERS [WS [SEED]]]     (2000000 20000)
//
// Built once per allocator like the C benchmarks: bench_cxx_hakmem links
// hakmem::cxx (hakmem's operators, this tree's variant), bench_cxx_mimalloc
// links mimalloc (whose library replaces the operators), bench_cxx_libc
// leaves libstdc++'s operators, which call malloc: it is the plain binary
// of the LD_PRELOAD runs (libhakmem.so, libmimalloc.so.2 and
// libtcmalloc_minimal.so.4 all replace the operators themselves).
//
// One op is one container operation, drawn from a fixed-seed generator:
//   40 %  an index, std::unordered_map<std::string, std::vector<int>> of
//         about WS entries: a key (8 to 40 characters, most past the
//         short-string buffer) is erased if present, else inserted with a
//         vector of 0 to 24 ints pushed one by one (growth);
//   25 %  an ordered map, std::map<uint64_t, std::string>, the same churn
//         with values of 0 to 100 characters;
//   25 %  a log line: a std::string built by appending 2 to 8 pieces,
//         stored in a ring of 1000 (the oldest line is destroyed);
//   10 %  a buffer: a std::vector<int> grown by push_back to 16..2048
//         elements (64 B to 8 KiB, doubling), stored in a ring of 64 (the
//         oldest is destroyed).
// Lifetimes therefore range from one op (log lines that are overwritten
// soon, vectors' old storage) to the whole run (the index entries that
// stay).  Only the loop is timed; building the key pool before and the
// final destruction after are not.  It prints
//   Throughput = <ops/s> ops/s allocator=<name> workload=cxx iters=<N>
//   ws=<WS> peak_rss_kb=<K> seconds=<s> checksum=<x>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "bench_alloc.h"
#include "bench_harness.h"

namespace {

struct Rng {
  uint64_t state;
  uint32_t below(uint32_t n) {
    return static_cast<uint32_t>(
        bench_below(static_cast<uint32_t>(bench_next(&state) >> 32), n));
  }
};

std::string make_text(Rng &rng, size_t min, size_t max) {
  size_t n = min + rng.below(static_cast<uint32_t>(max - min + 1));
  std::string s(n, 'a');
  for (size_t i = 0; i < n; i += 7)
    s[i] = static_cast<char>('a' + rng.below(26));
  return s;
}

} // namespace

int main(int argc, char **argv) {
  uint64_t iters = argc > 1 ? bench_parse_count(argv[1], "ITERS") : 2000000;
  uint64_t ws = argc > 2 ? bench_parse_count(argv[2], "WS") : 20000;
  uint64_t seed =
      argc > 3 ? bench_parse_count(argv[3], "SEED") : BENCH_DEFAULT_SEED;
  if (ws == 0)
    bench_die("WS must be >= 1");
  Rng rng{bench_seed(seed)};

  // Twice as many keys as the index holds on average: each is in it about
  // half the time, so an index op inserts or erases with equal odds.
  std::vector<std::string> keys;
  keys.reserve(2 * ws);
  for (uint64_t i = 0; i < 2 * ws; i++)
    keys.push_back(make_text(rng, 8, 40));
  const char *pieces[] = {"GET /index.html ", "HTTP/1.1 200 OK",
                          " user=",           "session-0123456789abcdef",
                          " bytes=",          "1234",
                          " took ",           "17.5 ms\n"};

  auto *index = new std::unordered_map<std::string, std::vector<int>>;
  auto *ordered = new std::map<uint64_t, std::string>;
  auto *lines = new std::vector<std::string>(1000);
  auto *buffers = new std::vector<std::vector<int>>(64);
  size_t next_line = 0, next_buffer = 0;
  uint64_t checksum = 0;

  double t0 = bench_now();
  for (uint64_t op = 0; op < iters; op++) {
    uint32_t kind = rng.below(100);
    if (kind < 40) {
      const std::string &key = keys[rng.below(static_cast<uint32_t>(2 * ws))];
      auto it = index->find(key);
      if (it != index->end()) {
        checksum += it->second.size();
        index->erase(it);
      } else {
        std::vector<int> &v = (*index)[key];
        for (uint32_t i = 0, n = rng.below(25); i < n; i++)
          v.push_back(static_cast<int>(i));
      }
    } else if (kind < 65) {
      uint64_t k = rng.below(static_cast<uint32_t>(2 * ws));
      auto it = ordered->find(k);
      if (it != ordered->end()) {
        checksum += it->second.size();
        ordered->erase(it);
      } else {
        ordered->emplace(k, make_text(rng, 0, 100));
      }
    } else if (kind < 90) {
      std::string line;
      for (uint32_t i = 0, n = 2 + rng.below(7); i < n; i++)
        line += pieces[rng.below(8)];
      checksum += line.size();
      (*lines)[next_line] = std::move(line);
      next_line = (next_line + 1) % lines->size();
    } else {
      std::vector<int> v;
      for (uint32_t i = 0, n = 16 + rng.below(2033); i < n; i++)
        v.push_back(static_cast<int>(i));
      checksum += v.size();
      (*buffers)[next_buffer] = std::move(v);
      next_buffer = (next_buffer + 1) % buffers->size();
    }
  }
  double secs = bench_now() - t0;

  char head[160], tail[96];
  snprintf(head, sizeof head, "workload=cxx iters=%" PRIu64 " ws=%" PRIu64,
           iters, ws);
  snprintf(tail, sizeof tail, "seconds=%.6f checksum=%" PRIu64, secs, checksum);
  bench_report(secs > 0 ? static_cast<double>(iters) / secs : 0,
               BENCH_ALLOC_NAME, head, tail);
  delete buffers;
  delete lines;
  delete ordered;
  delete index;
  return 0;
}
