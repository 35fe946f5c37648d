/* SPDX-License-Identifier: MIT */
/* gbench.h - a C interface to Google Benchmark (gbench_wrapper.cpp), so that
 * the microbenchmarks are written in C like the rest of the project.
 *
 * A benchmark is a function that loops while gb_keep_running_batch() is true,
 * doing exactly `batch` ops per turn; the library times the loop and reports
 * time per op.  Batches keep the call into C++ out of the per-op cost.
 */
#ifndef GBENCH_H
#define GBENCH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gb_state gb_state;
/* arg is the instance's argument (0 when registered without one). */
typedef void (*gb_fn)(gb_state *state, int64_t arg);

/* Registers fn under name once per value of args (name/<arg>), or once
 * without an argument when nargs is 0. */
void gb_register(const char *name, gb_fn fn, const int64_t *args, int nargs);
/* True while the library wants another op (one call per op: simplest, but
 * the call is part of the time measured). */
int gb_keep_running(gb_state *state);
/* True while the library wants another batch of `batch` ops. */
int gb_keep_running_batch(gb_state *state, int64_t batch);
/* Stops and restarts the clock around work that is not the measured ops. */
void gb_pause_timing(gb_state *state);
void gb_resume_timing(gb_state *state);
/* Fails the benchmark with a message instead of reporting a time. */
void gb_skip_with_error(gb_state *state, const char *message);
/* Parses --benchmark_* options, runs the registered benchmarks, returns the
 * process exit status. */
int gb_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
