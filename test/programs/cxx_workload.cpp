/* SPDX-License-Identifier: MIT */
// cxx_workload.cpp - a C++ program that allocates the way C++ programs do:
// operator new and delete of every size (and aligned new), standard
// containers growing and shrinking, strings, shared pointers, exceptions
// (their objects are allocated too), string streams, and threads that hand
// objects to each other.  run_program.sh compiles it with g++ running
// under LD_PRELOAD=libhakmem.so (so the compiler's own allocation pattern
// runs on hakmem as well), then runs it; everything it prints is
// deterministic and compared with a run without hakmem.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

uint64_t mix(uint64_t x) {
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 29;
  return x;
}

// FNV-1a over a string, so outputs are short and exact.
uint64_t digest(const std::string &s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s)
    h = (h ^ c) * 1099511628211ull;
  return h;
}

struct Node {
  std::string name;
  std::vector<int> values;
  std::map<std::string, std::shared_ptr<Node>> children;
};

std::shared_ptr<Node> build_tree(int depth, uint64_t seed) {
  auto n = std::make_shared<Node>();
  n->name = "node-" + std::to_string(seed % 100000);
  for (int i = 0; i < static_cast<int>(seed % 40); i++)
    n->values.push_back(static_cast<int>(mix(seed + i) % 1000));
  if (depth > 0)
    for (int i = 0; i < 4; i++)
      n->children["c" + std::to_string(i)] = build_tree(depth - 1, mix(seed * 7 + i));
  return n;
}

uint64_t walk(const Node &n) {
  uint64_t h = digest(n.name);
  for (int v : n.values)
    h = mix(h + static_cast<uint64_t>(v));
  for (const auto &kv : n.children)
    h = mix(h ^ digest(kv.first) ^ walk(*kv.second));
  return h;
}

void containers() {
  std::unordered_map<std::string, std::vector<std::string>> index;
  std::deque<std::string> queue;
  std::list<std::vector<char>> blobs;
  std::set<uint64_t> seen;
  uint64_t x = 12345;
  for (int i = 0; i < 60000; i++) {
    x = mix(x + static_cast<uint64_t>(i));
    std::string key = "k" + std::to_string(x % 5000);
    index[key].push_back(std::string(x % 300, static_cast<char>('a' + x % 26)));
    queue.push_back(key + "/" + std::to_string(i));
    if (queue.size() > 1000)
      queue.pop_front();
    if (x % 7 == 0)
      blobs.emplace_back(static_cast<size_t>(x % 70000), static_cast<char>(i));
    if (blobs.size() > 50)
      blobs.pop_front();
    seen.insert(x % 100000);
    if (x % 11 == 0)
      index.erase("k" + std::to_string((x >> 8) % 5000));
  }
  uint64_t h = 0;
  std::vector<std::string> keys;
  for (const auto &kv : index)
    keys.push_back(kv.first);
  std::sort(keys.begin(), keys.end());
  for (const auto &k : keys)
    for (const auto &s : index[k])
      h = mix(h ^ digest(k) ^ digest(s));
  for (const auto &s : queue)
    h = mix(h ^ digest(s));
  for (const auto &b : blobs)
    h = mix(h + b.size() + (b.empty() ? 0 : static_cast<unsigned char>(b[0])));
  std::printf("containers: %zu keys, %zu seen, digest %016llx\n", keys.size(),
              seen.size(), static_cast<unsigned long long>(h));
}

void strings_and_streams() {
  std::ostringstream text;
  for (int i = 0; i < 3000; i++)
    text << "id=" << i << " name=user" << (i * 37 % 1000) << " mail=u" << i
         << "@example.org score=" << (i * 7919 % 10007) << "\n";
  std::string all = text.str();
  // Parse it back: words, key=value pairs, grouped by name.
  std::istringstream in(all);
  std::map<std::string, std::vector<std::string>> by_name;
  std::string line;
  uint64_t h = 0;
  size_t fields = 0;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string word, name, rest;
    while (words >> word) {
      size_t eq = word.find('=');
      std::string key = word.substr(0, eq), value = word.substr(eq + 1);
      if (key == "name")
        name = value;
      else
        rest += value + ";";
      h = mix(h ^ digest(key) ^ digest(value));
      fields++;
    }
    by_name[name].push_back(rest);
  }
  // Replace every "user" by "U", growing and shrinking strings.
  std::string replaced = all;
  for (size_t pos = 0; (pos = replaced.find("user", pos)) != std::string::npos;)
    replaced.replace(pos, 4, "U");
  std::printf("strings: %zu fields, %zu names, digest %016llx, replaced %016llx\n",
              fields, by_name.size(), static_cast<unsigned long long>(h),
              static_cast<unsigned long long>(digest(replaced)));
}

struct alignas(64) Line {
  char bytes[64];
};
struct alignas(4096) Page {
  char bytes[4096];
};

void aligned_new() {
  std::vector<std::unique_ptr<Line>> lines;
  std::vector<std::unique_ptr<Page>> pages;
  size_t misaligned = 0;
  for (int i = 0; i < 5000; i++) {
    lines.push_back(std::make_unique<Line>());
    lines.back()->bytes[i % 64] = static_cast<char>(i);
    misaligned += reinterpret_cast<uintptr_t>(lines.back().get()) % 64 != 0;
    if (i % 10 == 0) {
      pages.push_back(std::make_unique<Page>());
      pages.back()->bytes[i % 4096] = 1;
      misaligned += reinterpret_cast<uintptr_t>(pages.back().get()) % 4096 != 0;
    }
    if (i % 3 == 0 && !lines.empty())
      lines.erase(lines.begin() + static_cast<long>(mix(i) % lines.size()));
  }
  // Arrays of every size through operator new[] and sized delete.
  uint64_t h = 0;
  for (size_t n = 1; n < (1u << 22); n = n * 3 / 2 + 1) {
    char *a = new char[n];
    a[0] = static_cast<char>(n);
    a[n - 1] = static_cast<char>(n >> 3);
    h = mix(h + static_cast<unsigned char>(a[0]) + static_cast<unsigned char>(a[n - 1]));
    delete[] a;
  }
  std::printf("aligned new: %zu lines, %zu pages, %zu misaligned; arrays %016llx\n",
              lines.size(), pages.size(), misaligned,
              static_cast<unsigned long long>(h));
}

void exceptions() {
  int caught = 0;
  uint64_t h = 0;
  for (int i = 0; i < 20000; i++) {
    try {
      if (i % 3 == 0)
        throw std::runtime_error("error number " + std::to_string(i) +
                                 std::string(static_cast<size_t>(i % 500), 'x'));
      if (i % 3 == 1)
        throw std::vector<int>(static_cast<size_t>(i % 1000), i);
      std::vector<int> v;
      v.at(static_cast<size_t>(i)); // out_of_range
    } catch (const std::runtime_error &e) {
      h = mix(h ^ digest(e.what()));
      caught++;
    } catch (const std::vector<int> &v) {
      h = mix(h + v.size());
      caught++;
    } catch (const std::out_of_range &) {
      caught++;
    }
  }
  std::printf("exceptions: %d caught, digest %016llx\n", caught,
              static_cast<unsigned long long>(h));
}

// Producer threads allocate objects; consumer threads check and free them.
void threads() {
  struct Msg {
    uint64_t id;
    std::string payload;
    std::vector<uint64_t> data;
  };
  std::mutex m;
  std::condition_variable cv;
  std::deque<std::unique_ptr<Msg>> q;
  bool done = false;
  std::atomic<uint64_t> sum{0}, bad{0};
  const int producers = 4, per = 20000;
  std::vector<std::thread> cons, prods;
  for (int c = 0; c < 4; c++)
    cons.emplace_back([&] {
      for (;;) {
        std::unique_ptr<Msg> msg;
        {
          std::unique_lock<std::mutex> lock(m);
          cv.wait(lock, [&] { return !q.empty() || done; });
          if (q.empty())
            return;
          msg = std::move(q.front());
          q.pop_front();
        }
        uint64_t expect = mix(msg->id);
        if (msg->payload.size() != msg->id % 200 || msg->data.size() != msg->id % 50 ||
            (!msg->data.empty() && msg->data.back() != expect))
          bad++;
        sum += msg->id;
      }
    });
  for (int p = 0; p < producers; p++)
    prods.emplace_back([&, p] {
      for (int i = 0; i < per; i++) {
        auto msg = std::make_unique<Msg>();
        msg->id = static_cast<uint64_t>(p) * per + static_cast<uint64_t>(i);
        msg->payload.assign(msg->id % 200, 'p');
        msg->data.assign(msg->id % 50, mix(msg->id));
        std::lock_guard<std::mutex> lock(m);
        q.push_back(std::move(msg));
        cv.notify_one();
      }
    });
  for (auto &t : prods)
    t.join();
  {
    std::lock_guard<std::mutex> lock(m);
    done = true;
  }
  cv.notify_all();
  for (auto &t : cons)
    t.join();
  std::printf("threads: %d messages, sum %llu, %llu bad\n", producers * per,
              static_cast<unsigned long long>(sum.load()),
              static_cast<unsigned long long>(bad.load()));
}

} // namespace

int main() {
  auto tree = build_tree(6, 42);
  std::printf("tree: digest %016llx\n", static_cast<unsigned long long>(walk(*tree)));
  tree.reset();
  containers();
  strings_and_streams();
  aligned_new();
  exceptions();
  threads();
  return 0;
}
