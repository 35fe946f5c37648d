#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs, with apt-get, whatever hakmem's build, tests and benchmarks need
# and this Debian machine lacks.  Idempotent: with everything present it
# installs nothing and touches no package list.
set -euo pipefail

# Required: compiler, cmake, cmocka.  The rest enables optional parts
# (benchmarks against mimalloc, tcmalloc and jemalloc, Google Benchmark, charts,
# syscall cross-checks, the real-program tests with Python's own test
# suite, fuzzing with clang's libFuzzer, valgrind).
packages=(
  build-essential cmake ninja-build pkg-config libcmocka-dev
  libmimalloc-dev libtcmalloc-minimal4 libjemalloc2 libbenchmark-dev
  gnuplot-nox time strace python3 sqlite3 git
  libpython3.11-testsuite clang libclang-rt-14-dev valgrind
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
