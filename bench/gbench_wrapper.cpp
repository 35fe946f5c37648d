/* SPDX-License-Identifier: MIT */
// gbench_wrapper.cpp - implements gbench.h on top of Google Benchmark.
// A gb_state is a benchmark::State; the cast is the whole interface.
#include "gbench.h"

#include <benchmark/benchmark.h>

namespace {
benchmark::State &unwrap(gb_state *s) {
  return *reinterpret_cast<benchmark::State *>(s);
}
gb_state *wrap(benchmark::State &s) { return reinterpret_cast<gb_state *>(&s); }
} // namespace

extern "C" void gb_register(const char *name, gb_fn fn, const int64_t *args,
                            int nargs) {
  benchmark::internal::Benchmark *b =
      benchmark::RegisterBenchmark(name, [fn, nargs](benchmark::State &s) {
        fn(wrap(s), nargs > 0 ? s.range(0) : 0);
        s.SetItemsProcessed(static_cast<int64_t>(s.iterations()));
      });
  for (int i = 0; i < nargs; i++)
    b->Arg(args[i]);
}

extern "C" int gb_keep_running(gb_state *s) { return unwrap(s).KeepRunning(); }

extern "C" int gb_keep_running_batch(gb_state *s, int64_t batch) {
  return unwrap(s).KeepRunningBatch(batch);
}

extern "C" void gb_pause_timing(gb_state *s) { unwrap(s).PauseTiming(); }
extern "C" void gb_resume_timing(gb_state *s) { unwrap(s).ResumeTiming(); }

extern "C" void gb_skip_with_error(gb_state *s, const char *message) {
  unwrap(s).SkipWithError(message);
}

extern "C" int gb_main(int argc, char **argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv))
    return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
