#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Sets up, then builds and runs the whole test suite in every preset:
# fast, standard, observe and debug (AddressSanitizer + UBSan).
# Usage: scripts/test.sh [preset...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(fast standard observe debug)
for p in "${presets[@]}"; do
  echo "=== preset $p"
  cmake --preset "$p"
  cmake --build --preset "$p"
  ctest --preset "$p"
done
echo "=== all presets passed: ${presets[*]}"
