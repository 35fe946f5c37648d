#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the whole ctest suite of each preset several times in a row while two
# CPU-bound processes keep both cores busy, and reports every test that
# failed even once.  Tests must not depend on an idle machine, on timing, or
# on how the kernel accounts for pages; this is how that is checked.
#
# Usage: scripts/flaky.sh [preset...]          (default: fast standard observe debug)
#   HAK_FLAKY_ROUNDS  runs of each suite (5)
#   HAK_FLAKY_THP     transparent-huge-page modes to cycle through, for example
#                     "always madvise never"; needs a writable
#                     /sys/kernel/mm/transparent_hugepage/enabled (root).  The
#                     mode found at the start is restored at the end.
# Exit status 0 only when every run of every suite passed.  The ctest output
# of every failed round is kept in build/flaky-logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(fast standard observe debug)
rounds=${HAK_FLAKY_ROUNDS:-5}
thp_file=/sys/kernel/mm/transparent_hugepage/enabled
thp_now() { sed -n 's/.*\[\(.*\)\].*/\1/p' "$thp_file" 2>/dev/null || echo unknown; }
thp_start=$(thp_now)
modes=(${HAK_FLAKY_THP:-$thp_start})

burners=()
cleanup() {
  for b in "${burners[@]}"; do kill "$b" 2>/dev/null || true; done
  if [ "$(thp_now)" != "$thp_start" ]; then echo "$thp_start" >"$thp_file"; fi
}
trap cleanup EXIT

for p in "${presets[@]}"; do
  cmake --preset "$p" >/dev/null
  cmake --build --preset "$p"
done

for b in 1 2; do
  (while :; do :; done) &
  burners+=($!)
done

log=$(mktemp)
keep_dir=build/flaky-logs
mkdir -p "$keep_dir"
echo "kernel $(uname -r), $(nproc) cores, THP modes: ${modes[*]}, $rounds rounds, 2 busy loops"
for mode in "${modes[@]}"; do
  if [ "$mode" != "$(thp_now)" ]; then
    echo "$mode" >"$thp_file" || { echo "cannot set THP mode $mode" >&2; exit 2; }
  fi
  for p in "${presets[@]}"; do
    for r in $(seq 1 "$rounds"); do
      failed=build/$p/Testing/Temporary/LastTestsFailed.log
      rm -f "$failed"
      if ctest --preset "$p" --output-on-failure >"$log.out" 2>&1; then
        echo "THP $mode, $p, round $r: passed"
      else
        echo "THP $mode, $p, round $r: FAILED"
        [ -f "$failed" ] && sed "s/^/  $p (THP $mode): /" "$failed" | tee -a "$log"
        # The whole output is kept: a timeout and an assertion look alike
        # in the list of failed tests.
        keep="$keep_dir/$p-thp-$mode-round-$r.log"
        cp "$log.out" "$keep"
        grep -E '\*\*\*|^\[  (ERROR|FAILED) |error' "$log.out" | head -20 || true
        echo "  (whole output: $keep)"
      fi
    done
  done
done

if [ -s "$log" ]; then
  echo "=== tests that failed at least once:"
  sort "$log" | uniq -c
  exit 1
fi
echo "=== no failure: ${presets[*]}, $rounds rounds, THP ${modes[*]}"
