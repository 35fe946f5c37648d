/* SPDX-License-Identifier: MIT */
// test_new.cpp - C++'s operator new and delete on hakmem: every form, the
// standard's semantics, and the checks of the checked builds.
//
// Built twice (test/cxx/CMakeLists.txt):
//  cxx_new          linked with hakmem::cxx, the static archive of the
//                   operators (every preset);
//  cxx_new_preload  linked with nothing of hakmem's, run with libhakmem.so
//                   in LD_PRELOAD (not in sanitizer builds: an instrumented
//                   library cannot be preloaded).
// Either way the program first makes sure that the operators it calls are
// hakmem's.  Plain checks with an exit status (no cmocka: it is C); the
// cases that must end the process run in forked children (test_child.h).
#include <sys/resource.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <malloc.h>
#include <map>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "test_child.h"

// The C allocator the operators share their blocks with: the C library's
// names under LD_PRELOAD; hakmem's own in the static link, where malloc is
// still the C library's.
#ifdef HAK_TEST_PRELOAD
#define c_malloc std::malloc
#define c_calloc std::calloc
#define c_realloc std::realloc
#define c_free std::free
#else
#include "hakmem.h"
#define c_malloc hak_malloc
#define c_calloc hak_calloc
#define c_realloc hak_realloc
#define c_free hak_free
#endif
#ifndef HAK_TEST_CHECKS
#error                                                                         \
    "HAK_TEST_CHECKS: 1 where the build checks (standard, observe), 0 in fast"
#endif

static int failures;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
      std::fprintf(stderr, __VA_ARGS__);                                       \
      std::fputc('\n', stderr);                                                \
      failures++;                                                              \
    }                                                                          \
  } while (0)

// Sizes no allocator can give: the new forms must throw (or give nullptr).
static volatile std::size_t impossible = SIZE_MAX / 2;

// Hides where a pointer came from, so that the compiler does not warn
// about the mismatched new and delete that the test makes on purpose.
template <class T> static T *launder(T *p) {
  T *volatile q = p;
  return q;
}

static bool aligned_to(const void *p, std::size_t a) {
  return (reinterpret_cast<std::uintptr_t>(p) & (a - 1)) == 0;
}

static void fill(void *p, std::size_t n, unsigned char v) {
  std::memset(p, v, n);
}

static bool filled(const void *p, std::size_t n, unsigned char v) {
  const unsigned char *c = static_cast<const unsigned char *>(p);
  for (std::size_t i = 0; i < n; i++)
    if (c[i] != v)
      return false;
  return true;
}

// ---- the operators are hakmem's ---------------------------------------------

static void test_operators_are_hakmem() {
#ifdef HAK_TEST_PRELOAD
  // The definition the program binds operator new to lives in libhakmem.so.
  const char *names[] = {"_Znwm", "_ZdlPvm", "_ZnwmSt11align_val_t",
                         "_ZdaPvmSt11align_val_t"};
  for (const char *name : names) {
    void *sym = dlsym(RTLD_DEFAULT, name);
    Dl_info info;
    CHECK(sym && dladdr(sym, &info) && info.dli_fname &&
              std::strstr(info.dli_fname, "libhakmem"),
          "%s comes from %s, not libhakmem.so", name,
          sym && dladdr(sym, &info) ? info.dli_fname : "nowhere");
  }
#else
  // A block of new is one of hakmem's: its usable size is its class's.
  void *p = ::operator new(100);
  CHECK(hak_usable_size(p) == 112, "usable size %zu, not 112",
        hak_usable_size(p));
  ::operator delete(p, 100);
#endif
}

// ---- every form -------------------------------------------------------------

struct Counted {
  static int live;
  char bytes[40];
  Counted() { live++; }
  ~Counted() { live--; }
};
int Counted::live;

struct alignas(64) Wide {
  char bytes[200];
};

static void test_forms() {
  const std::size_t sizes[] = {0,    1,    15,   16,     100,    1000,
                               1024, 1025, 5000, 262144, 262145, 5u << 20};
  for (std::size_t n : sizes) {
    void *a = ::operator new(n);
    void *b = ::operator new[](n);
    void *c = ::operator new(n, std::nothrow);
    void *d = ::operator new[](n, std::nothrow);
    CHECK(a && b && c && d, "new of %zu gave NULL", n);
    CHECK(aligned_to(a, 16) && aligned_to(b, 16) && aligned_to(c, 16) &&
              aligned_to(d, 16),
          "new of %zu not 16-aligned", n);
    fill(a, n, 1);
    fill(b, n, 2);
    fill(c, n, 3);
    fill(d, n, 4);
    CHECK(filled(a, n, 1) && filled(b, n, 2) && filled(c, n, 3) &&
              filled(d, n, 4),
          "blocks of %zu overlap", n);
    // Each delete form, plain, sized and nothrow.
    ::operator delete(a, n);
    ::operator delete[](b, n);
    ::operator delete(c, std::nothrow);
    ::operator delete[](d, std::nothrow);
    a = ::operator new(n);
    b = ::operator new[](n);
    ::operator delete(a);
    ::operator delete[](b);
  }
  // Aligned: every power of two, 1 B to 8 MiB, each form.
  for (std::size_t al = 1; al <= (8u << 20); al *= 2) {
    const std::size_t asizes[] = {1, al / 2 + 1, al, 3 * al + 5, 1000};
    for (std::size_t n : asizes) {
      std::align_val_t a{al};
      void *p = ::operator new(n, a);
      void *q = ::operator new[](n, a);
      void *r = ::operator new(n, a, std::nothrow);
      void *s = ::operator new[](n, a, std::nothrow);
      CHECK(p && q && r && s, "aligned new (%zu, %zu) gave NULL", n, al);
      CHECK(aligned_to(p, al) && aligned_to(q, al) && aligned_to(r, al) &&
                aligned_to(s, al),
            "aligned new (%zu, %zu) misaligned: %p %p %p %p", n, al, p, q, r,
            s);
      fill(p, n, 5);
      fill(q, n, 6);
      CHECK(filled(p, n, 5) && filled(q, n, 6), "aligned blocks overlap");
      ::operator delete(p, n, a);
      ::operator delete[](q, n, a);
      ::operator delete(r, a, std::nothrow);
      ::operator delete[](s, a, std::nothrow);
      p = ::operator new(n, a);
      q = ::operator new[](n, a);
      ::operator delete(p, a);
      ::operator delete[](q, a);
    }
  }
  // What the compiler emits for new-expressions and delete-expressions:
  // sized delete of a class, delete[] of an array with a count cookie,
  // aligned new of an over-aligned type.
  Counted *one = new Counted;
  Counted *many = new Counted[37];
  CHECK(Counted::live == 38, "%d objects live", Counted::live);
  delete one;
  delete[] many;
  CHECK(Counted::live == 0, "%d objects live", Counted::live);
  Wide *w = new Wide;
  Wide *ws = new Wide[9];
  CHECK(aligned_to(w, 64) && aligned_to(ws, 64), "over-aligned new: %p %p",
        static_cast<void *>(w), static_cast<void *>(ws));
  delete w;
  delete[] ws;
  // The null pointer, to every delete.
  ::operator delete(nullptr);
  ::operator delete(nullptr, 16);
  ::operator delete[](nullptr, 16);
  ::operator delete (nullptr, std::align_val_t{64});
  ::operator delete (nullptr, 16, std::align_val_t{64});
  ::operator delete[](nullptr, 16, std::align_val_t{64});
}

// ---- containers and threads -------------------------------------------------

static void test_containers_and_threads() {
  std::vector<std::thread> threads;
  std::vector<std::vector<std::string> *> out(4);
  for (int t = 0; t < 4; t++)
    threads.emplace_back([t, &out] {
      std::map<int, std::string> m;
      auto *v = new std::vector<std::string>;
      for (int i = 0; i < 20000; i++) {
        m[i % 997] = std::string(static_cast<std::size_t>(i % 300), 'a' + t);
        if (i % 10 == 0)
          v->push_back(m[i % 997] + "!");
      }
      out[t] = v; // deleted by the main thread: remote sized deletes
    });
  for (auto &th : threads)
    th.join();
  for (int t = 0; t < 4; t++) {
    CHECK(out[t]->size() == 2000, "thread %d: %zu strings", t, out[t]->size());
    bool ok = true;
    for (const std::string &s : *out[t])
      ok = ok && s.back() == '!' &&
           (s.size() == 1 || s[0] == static_cast<char>('a' + t));
    CHECK(ok, "thread %d: strings changed", t);
    delete out[t];
  }
}

// ---- sized delete: the block is reused at once
// -------------------------------

static void test_sized_delete_reuse() {
  // A block freed by sized delete goes back to its class's list, so the
  // next new of that size gets it again (the tiny front's lists are LIFO).
  for (std::size_t n = 1; n <= 1024; n += 7) {
    void *p = ::operator new(n);
    std::uintptr_t freed = reinterpret_cast<std::uintptr_t>(p);
    ::operator delete(p, n);
    void *q = ::operator new(n);
    CHECK(reinterpret_cast<std::uintptr_t>(q) == freed,
          "size %zu: sized delete of %#lx, then new gave %p", n,
          static_cast<unsigned long>(freed), q);
    ::operator delete(q, n);
  }
  // And the memory stays bounded over many rounds (nothing leaks).
  for (int r = 0; r < 200000; r++) {
    std::size_t n = 1 + static_cast<std::size_t>(r * 131) % 4000;
    char *p = static_cast<char *>(::operator new(n));
    p[0] = p[n - 1] = 7;
    ::operator delete(p, n);
  }
}

// ---- failure: bad_alloc, nothrow, new_handler
// --------------------------------

static void test_bad_alloc() {
  bool caught = false;
  try {
    void *p = ::operator new(impossible);
    CHECK(false, "new of %zu gave %p", impossible, p);
  } catch (const std::bad_alloc &) {
    caught = true;
  }
  CHECK(caught, "no std::bad_alloc from new");
  caught = false;
  try {
    char *p = new char[impossible];
    CHECK(false, "new[] of %zu gave %p", impossible, static_cast<void *>(p));
  } catch (const std::bad_alloc &) {
    caught = true;
  }
  CHECK(caught, "no std::bad_alloc from new[]");
  caught = false;
  try {
    void *p = ::operator new (impossible, std::align_val_t{4096});
    CHECK(false, "aligned new of %zu gave %p", impossible, p);
  } catch (const std::bad_alloc &) {
    caught = true;
  }
  CHECK(caught, "no std::bad_alloc from aligned new");
  CHECK(::operator new(impossible, std::nothrow) == nullptr, "nothrow new");
  CHECK(::operator new[](impossible, std::nothrow) == nullptr, "nothrow new[]");
  CHECK(::operator new (impossible, std::align_val_t{64}, std::nothrow) ==
            nullptr,
        "aligned nothrow new");
  CHECK(::operator new[](impossible, std::align_val_t{64}, std::nothrow) ==
            nullptr,
        "aligned nothrow new[]");
}

static int handler_calls;

// Gives up after two calls: uninstalls itself, so that new throws.
static void handler_giving_up() {
  if (++handler_calls == 2)
    std::set_new_handler(nullptr);
}

static void handler_throwing() {
  handler_calls++;
  throw std::bad_alloc();
}

static void test_new_handler_loop() {
  handler_calls = 0;
  std::set_new_handler(handler_giving_up);
  bool caught = false;
  try {
    void *p = ::operator new(impossible);
    CHECK(false, "new gave %p", p);
  } catch (const std::bad_alloc &) {
    caught = true;
  }
  CHECK(caught && handler_calls == 2,
        "handler called %d times (2 expected), then bad_alloc: %d",
        handler_calls, caught);
  // A handler that throws: the plain form passes the throw on, the nothrow
  // forms turn it into nullptr.
  handler_calls = 0;
  std::set_new_handler(handler_throwing);
  CHECK(::operator new(impossible, std::nothrow) == nullptr,
        "nothrow new with a throwing handler");
  CHECK(::operator new (impossible, std::align_val_t{256}, std::nothrow) ==
            nullptr,
        "aligned nothrow new with a throwing handler");
  CHECK(handler_calls == 2, "handler called %d times (2 expected)",
        handler_calls);
  caught = false;
  try {
    void *p = ::operator new (impossible, std::align_val_t{256});
    CHECK(false, "aligned new gave %p", p);
  } catch (const std::bad_alloc &) {
    caught = true;
  }
  CHECK(caught, "the handler's throw did not reach the caller");
  std::set_new_handler(nullptr);
}

// In a child: the address space is limited so that a big block cannot be
// mapped; the handler lifts the limit, and new then succeeds.
static const std::size_t big = std::size_t(512) << 20;
static struct rlimit saved_limit;

static void handler_lifting_limit() {
  handler_calls++;
  setrlimit(RLIMIT_AS, &saved_limit);
}

static std::size_t vm_size() {
  FILE *f = std::fopen("/proc/self/statm", "r");
  unsigned long pages = 0;
  if (f) {
    if (std::fscanf(f, "%lu", &pages) != 1)
      pages = 0;
    std::fclose(f);
  }
  return pages * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

static int handler_then_success(void *arg) {
  bool aligned = arg != nullptr;
  handler_calls = 0;
  if (getrlimit(RLIMIT_AS, &saved_limit) != 0)
    return 2;
  struct rlimit low = saved_limit;
  low.rlim_cur = vm_size() + (std::size_t(64) << 20);
  if (setrlimit(RLIMIT_AS, &low) != 0)
    return 3;
  std::set_new_handler(handler_lifting_limit);
  char *p;
  try {
    p = static_cast<char *>(
        aligned ? ::operator new (big, std::align_val_t{1 << 16})
                : ::operator new(big));
  } catch (const std::bad_alloc &) {
    return 4; // the handler was not given a chance to help
  }
  if (handler_calls != 1)
    return 5;
  if (aligned && !aligned_to(p, 1 << 16))
    return 6;
  p[0] = p[big - 1] = 1;
  ::operator delete(p);
  return 0;
}

static void test_new_handler_succeeds() {
  // Under valgrind (the valgrind preset runs every test in memcheck) the
  // address-space limit would bound valgrind's own mappings too.
  const char *preload = std::getenv("LD_PRELOAD");
  if (preload && std::strstr(preload, "vgpreload")) {
    std::printf("new_handler with RLIMIT_AS: skipped under valgrind\n");
    return;
  }
  for (int aligned = 0; aligned < 2; aligned++) {
    child_opts o{};
    o.alarm = 60;
    o.capture_stderr = true;
    child_end e;
    child_run(handler_then_success, aligned ? &e : nullptr, &o, &e);
    char how[160];
    CHECK(child_ok(&e),
          "%s new with a handler that makes room: the child %s (1 ok: 4 "
          "bad_alloc, 5 handler calls); stderr: %s",
          aligned ? "aligned" : "plain", child_end_text(&e, how, sizeof how),
          e.err);
  }
}

// ---- malloc and delete mixed (undefined, but common in old code) -----------

static void test_mixing() {
  for (std::size_t n : {8u, 100u, 1024u, 4000u, 300000u}) {
    // malloc'd, deleted as the type it was malloc'd for (sized delete).
    char *p = launder(static_cast<char *>(c_malloc(n)));
    fill(p, n, 9);
    ::operator delete(p, n);
    // new'd, freed.
    p = launder(static_cast<char *>(::operator new(n)));
    fill(p, n, 9);
    c_free(p);
    // malloc'd, delete[] of a type without a destructor (no size).
    p = launder(static_cast<char *>(c_malloc(n)));
    delete[] p;
    // calloc'd and realloc'd, then deleted without a size.
    p = static_cast<char *>(c_calloc(1, n / 2 + 1));
    p = launder(static_cast<char *>(c_realloc(p, n)));
    ::operator delete(p);
  }
}

// ---- misuse in the checked builds ------------------------------------------

struct misuse_case {
  void (*fn)();
  const char *problem;
};

static int misuse_child(void *arg) {
  static_cast<misuse_case *>(arg)->fn();
  static const char msg[] = "misuse went unnoticed\n";
  if (write(2, msg, sizeof msg - 1) < 0)
    return 98;
  return 99;
}

// The child writes "at <address>" before the misuse; hakmem's message that
// follows must name the problem and that address.
static void expect_abort(misuse_case m) {
  child_opts o{};
  o.alarm = 20;
  o.capture_stderr = true;
  o.no_core = true;
  child_end e;
  child_run(misuse_child, &m, &o, &e);
  char how[160];
  CHECK(e.how == CHILD_KILLED && e.code == SIGABRT,
        "\"%s\": the child %s, not SIGABRT; stderr: %s", m.problem,
        child_end_text(&e, how, sizeof how), e.err);
  const char *report = std::strstr(e.err, "hakmem");
  CHECK(report != nullptr, "no \"hakmem\" in: %s", e.err);
  CHECK(report && std::strstr(report, m.problem) != nullptr,
        "the message does not say \"%s\": %s", m.problem, e.err);
  char where[64] = "";
  if (std::strncmp(e.err, "at ", 3) == 0)
    std::sscanf(e.err + 3, "%63s", where);
  CHECK(where[0] && report && std::strstr(report, where),
        "the message does not name the address \"%s\": %s", where, e.err);
}

// Each misuse prints "at <address>" first, so that the parent can look for
// the address in hakmem's message.
static void say_at(const void *p) {
  char line[64];
  int n = std::snprintf(line, sizeof line, "at %p\n", p);
  if (write(2, line, static_cast<std::size_t>(n)) < 0)
    std::abort();
}

static void misuse_size_tiny() {
  void *p = ::operator new(100);
  say_at(p);
  ::operator delete(p, 500); // another tiny class
}
static void misuse_size_tier() {
  void *p = ::operator new(5000);
  say_at(p);
  ::operator delete(p, 16); // the fast build would take it for tiny
}
static void misuse_size_mid() {
  void *p = ::operator new(20000);
  say_at(p);
  ::operator delete(p, 9000);
}
static void misuse_size_large() {
  void *p = ::operator new(1 << 20);
  say_at(p);
  ::operator delete(p, 2 << 20);
}
static void misuse_size_array() {
  void *p = ::operator new[](3000);
  say_at(p);
  ::operator delete[](p, 30000);
}
static void misuse_size_aligned() {
  void *p = ::operator new (64, std::align_val_t{64});
  say_at(p);
  ::operator delete (p, 4000, std::align_val_t{64});
}
static void misuse_delete_of_array() {
  Counted *c = launder(new Counted[5]);
  say_at(c);
  delete c; // should be delete[]: the count cookie precedes the array
}
static void misuse_double_delete() {
  void *p = ::operator new(48);
  void *again = launder(p);
  say_at(p);
  ::operator delete(p, 48);
  ::operator delete(again, 48);
}

static void test_misuse() {
  if (!HAK_TEST_CHECKS) {
    std::printf("misuse: skipped (the fast build does not check)\n");
    return;
  }
  expect_abort({misuse_size_tiny, "new/delete size mismatch"});
  expect_abort({misuse_size_tier, "new/delete size mismatch"});
  expect_abort({misuse_size_mid, "new/delete size mismatch"});
  expect_abort({misuse_size_large, "new/delete size mismatch"});
  expect_abort({misuse_size_array, "new/delete size mismatch"});
  expect_abort({misuse_size_aligned, "new/delete size mismatch"});
  expect_abort({misuse_delete_of_array, "freed with delete (use delete[])"});
  expect_abort({misuse_double_delete, "double free"});
}

int main() {
  test_operators_are_hakmem();
  test_forms();
  test_containers_and_threads();
  test_sized_delete_reuse();
  test_bad_alloc();
  test_new_handler_loop();
  test_new_handler_succeeds();
  test_mixing();
  test_misuse();
  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("all operator new/delete checks passed\n");
  return 0;
}
