#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Sets up, builds the fast and standard presets and runs the main comparison:
# Mixed 16-1024 B, hakmem against glibc and mimalloc, 10 interleaved runs.
# Extra arguments go to bench/run_compare (e.g. --runs 5, --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
for p in fast standard; do
  cmake --preset "$p" >/dev/null
  cmake --build --preset "$p"
done
exec python3 bench/run_compare "$@"
