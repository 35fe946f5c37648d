#!/usr/bin/env bash
# The slower checks, kept out of the CI command: ThreadSanitizer on the
# threaded tests (preset tsan) and the whole cmocka suite under valgrind's
# memcheck (preset valgrind), plus the bounded fuzzing run when present.
# Usage: scripts/test-extra.sh [tsan] [valgrind] [fuzz]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(tsan valgrind fuzz)
for s in "${steps[@]}"; do
  echo "=== $s"
  case "$s" in
    tsan | valgrind)
      cmake --preset "$s"
      cmake --build --preset "$s"
      ctest --preset "$s"
      ;;
    fuzz)
      if [ -x test/fuzz/run_fuzz.sh ]; then
        test/fuzz/run_fuzz.sh
      else
        echo "no fuzzing target yet (test/fuzz/run_fuzz.sh)"
      fi
      ;;
    *)
      echo "unknown step $s (tsan, valgrind, fuzz)" >&2
      exit 2
      ;;
  esac
done
echo "=== extra checks passed: ${steps[*]}"
