#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The slower checks, kept out of the CI command: ThreadSanitizer on the
# threaded tests (preset tsan), the whole cmocka suite under valgrind's
# memcheck (preset valgrind), a longer fuzzing run, and the stress tests in
# their long mode, and the flaky check (every preset's suite 5 times under
# load: scripts/flaky.sh).
# Usage: scripts/test-extra.sh [tsan] [valgrind] [fuzz] [stress] [flaky]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(tsan valgrind fuzz stress)
for s in "${steps[@]}"; do
  echo "=== $s"
  case "$s" in
    tsan | valgrind)
      cmake --preset "$s"
      cmake --build --preset "$s"
      ctest --preset "$s"
      ;;
    fuzz)
      # libFuzzer from the committed corpus, HAK_FUZZ_SECONDS (300) long.
      test/fuzz/run_fuzz.sh build/fuzz "${HAK_FUZZ_SECONDS:-300}"
      ;;
    stress)
      # The stress tests in their long mode, HAK_STRESS_SECONDS (120) each.
      cmake --preset standard
      cmake --build --preset standard
      HAK_STRESS=long HAK_STRESS_SECONDS="${HAK_STRESS_SECONDS:-120}" \
        ctest --preset standard -L stress
      ;;
    flaky)
      scripts/flaky.sh
      ;;
    *)
      echo "unknown step $s (tsan, valgrind, fuzz, stress, flaky)" >&2
      exit 2
      ;;
  esac
done
echo "=== extra checks passed: ${steps[*]}"
