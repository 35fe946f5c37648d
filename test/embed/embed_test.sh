#!/bin/sh
# SPDX-License-Identifier: MIT
# embed_test.sh <subdirectory|fetchcontent> - hakmem built from source inside
# a parent project (test/embed/parent), as add_subdirectory and FetchContent
# users do:
#   - configures with a C compiler only (CXX points nowhere)
#     and no build type, and without hakmem's test or benchmark targets;
#   - hakmem's own sources are still compiled with -O2;
#   - the parent's `all` builds no hakmem test or benchmark program;
#   - the parent's install installs nothing of hakmem;
#   - the static and shared programs run.
# Environment: HAK_CMAKE, HAK_SOURCE_DIR, HAK_WORK, HAK_CC, HAK_GENERATOR,
# HAK_MAKE_PROGRAM, HAK_SAN_FLAGS.
set -eu
mode=${1:?usage: embed_test.sh subdirectory|fetchcontent}
W=$HAK_WORK/$mode
B=$W/build
SAN=${HAK_SAN_FLAGS:-}

fail() {
  echo "FAIL ($mode): $*" >&2
  exit 1
}

rm -rf "$W"
mkdir -p "$W"
# CXX names no compiler: hakmem must configure and build with C alone.
env -u CMAKE_BUILD_TYPE CXX=/nonexistent/c++ "$HAK_CMAKE" -S "$HAK_SOURCE_DIR/test/embed/parent" -B "$B" \
  -G "$HAK_GENERATOR" ${HAK_MAKE_PROGRAM:+"-DCMAKE_MAKE_PROGRAM=$HAK_MAKE_PROGRAM"} \
  "-DCMAKE_C_COMPILER=$HAK_CC" \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON "-DHAK_EMBED_MODE=$mode" \
  "-DHAK_SOURCE_DIR=$HAK_SOURCE_DIR" \
  "-DCMAKE_C_FLAGS=$SAN" "-DCMAKE_EXE_LINKER_FLAGS=$SAN" "-DCMAKE_SHARED_LINKER_FLAGS=$SAN" \
  >"$W/configure.log" 2>&1 ||
  { cat "$W/configure.log"; fail "configuring the parent project"; }
! grep -q "^cmocka_DIR\|^CMOCKA_" "$B/CMakeCache.txt" || fail "cmocka was looked for: the tests are on"

cmds=$B/compile_commands.json
[ -f "$cmds" ] || fail "no compile_commands.json"
grep -q 'libhak-core/src/api\.c' "$cmds" || fail "api.c is not compiled"
# Every hakmem library source is compiled with -O2 (no build type given).
if grep '"command"' "$cmds" | grep -E -- '-c [^"]*/libhak-[^"]*"' | grep -v -- '-O2' | grep -q .; then
  fail "a hakmem source is compiled without -O2"
fi

"$HAK_CMAKE" --build "$B" -j 2 >"$W/build.log" 2>&1 ||
  { cat "$W/build.log"; fail "building the parent project"; }
progs=$(find "$B" -type f -perm -u+x \( -name 'test_*' -o -name 'api_*' -o -name 'bench_*' \) | head -5)
[ -z "$progs" ] || fail "the parent's all built hakmem's programs: $progs"

"$HAK_CMAKE" --install "$B" --prefix "$W/prefix" >"$W/install.log" 2>&1 ||
  { cat "$W/install.log"; fail "installing the parent project"; }
[ -z "$(find "$W/prefix" -type f 2>/dev/null | head -1)" ] ||
  fail "the parent's install installed hakmem's files: $(find "$W/prefix" -type f | head -3)"

"$B/parent_static" || fail "parent_static failed"
"$B/parent_shared" || fail "parent_shared failed"
echo "hakmem embedded with $mode: built with -O2, C only, no tests, nothing installed"
