#!/bin/sh
# SPDX-License-Identifier: MIT
# run_fuzz.sh - builds fuzz_alloc with clang's libFuzzer (a build of its own:
# test/fuzz/standalone, hakmem instrumented for coverage, ASan + UBSan) and
# fuzzes for a bounded time, starting from the committed corpus.
#
# Usage: run_fuzz.sh [build dir] [seconds] [variant]
#   build dir  default build/fuzz in the source tree
#   seconds  default $HAK_FUZZ_SECONDS, else 20 (CI); e.g. 600 for a long run
#   variant  hakmem's build variant: standard (default) or fast or observe
# Environment: HAK_FUZZ_CC / HAK_FUZZ_CXX (default clang / clang++),
#   HAK_FUZZ_SECONDS.
#
# Exit status: 0 when no input made the target abort; 1 on a crash (the
# input is saved as <build dir>/crash-<sha1>: replay it with
# `<build dir>/fuzz_alloc <file>` or the preset's test/fuzz/fuzz_replay); 77
# (ctest's SKIP_RETURN_CODE) when clang or its libFuzzer runtime is missing
# (Debian: apt-get install clang libclang-rt-14-dev).
# New inputs libFuzzer finds go to <build dir>/corpus-new, not to the
# committed corpus; to add them: fuzz_alloc -merge=1 test/fuzz/corpus <dir>.
set -u

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build/fuzz}
seconds=${2:-${HAK_FUZZ_SECONDS:-20}}
variant=${3:-standard}
cc=${HAK_FUZZ_CC:-clang}
cxx=${HAK_FUZZ_CXX:-clang++}

skip() {
  echo "SKIP (fuzz): $*"
  exit 77
}
fail() {
  echo "FAIL (fuzz): $*" >&2
  exit 1
}

command -v "$cc" >/dev/null 2>&1 || skip "no $cc (apt-get install clang)"
command -v "$cxx" >/dev/null 2>&1 || skip "no $cxx (apt-get install clang)"
mkdir -p "$build" || fail "cannot create $build"
probe="$build/probe"
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' >"$probe.c"
"$cc" -fsanitize=fuzzer,address,undefined "$probe.c" -o "$probe" >"$probe.log" 2>&1 ||
  skip "$cc cannot link a libFuzzer target (apt-get install libclang-rt-14-dev): $(tail -1 "$probe.log")"

echo "=== configure and build (clang, libFuzzer + ASan + UBSan, variant $variant)"
generator=
[ -f "$build/CMakeCache.txt" ] || ! command -v ninja >/dev/null 2>&1 || generator="-G Ninja"
# shellcheck disable=SC2086
cmake -S "$here/standalone" -B "$build" $generator \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHAKMEM_VARIANT="$variant" \
  >"$build/configure.log" 2>&1 || { tail -20 "$build/configure.log"; fail "configure"; }
cmake --build "$build" -j2 >"$build/build.log" 2>&1 || { tail -30 "$build/build.log"; fail "build"; }

echo "=== fuzz for $seconds s from $here/corpus ($(find "$here/corpus" -type f | wc -l) inputs)"
mkdir -p "$build/corpus-new"
rm -f "$build"/crash-* "$build"/timeout-* "$build"/oom-* "$build"/leak-*
"$build/fuzz_alloc" -max_total_time="$seconds" -rss_limit_mb=3072 -timeout=60 \
  -artifact_prefix="$build/" -print_final_stats=1 \
  "$build/corpus-new" "$here/corpus" >"$build/fuzz.log" 2>&1
status=$?
grep -E '^(INFO: seed corpus|#[0-9]+[[:space:]]+(INITED|DONE))|stat::number_of_executed_units|stat::peak_rss_mb|stat::new_units_added' "$build/fuzz.log"
if [ $status -ne 0 ]; then
  grep -E 'fuzz_alloc: |ERROR: |SUMMARY: |runtime error' "$build/fuzz.log" | head -20 >&2
  find "$build" -maxdepth 1 \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' \) |
    sed 's/^/  input saved: /' >&2
  fail "libFuzzer stopped with status $status (log: $build/fuzz.log)"
fi
echo "OK (fuzz): $seconds s without a wrong answer or a changed byte"
exit 0
