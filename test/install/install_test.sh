#!/bin/sh
# SPDX-License-Identifier: MIT
# install_test.sh <step> - the installed tree works where it is moved to.
#
# Steps (ctest runs them in this order through fixtures):
#   build      (only for a tree of another layout) configure and build hakmem
#              from HAK_SOURCE_DIR into HAK_BUILD_DIR with
#              CMAKE_INSTALL_LIBDIR=HAK_LIBDIR and the variant and sanitizers
#              of the enclosing build (HAK_VARIANT, HAK_SANITIZE).
#   stage      cmake --install the build tree into <work>/stage, then MOVE it
#              to <work>/prefix; check the files, and that no installed
#              .cmake or .pc file names the build, source or staging path.
#   cmake      configure, build and run test/downstream against the moved
#              prefix (find_package(hakmem CONFIG), static, shared and C++).
#   deb        cpack the build tree (.deb and .tar.gz), install the .deb with
#              dpkg into a throwaway root and build test/downstream against it.
#   uninstall  install the build tree, then its uninstall target removes it all.
#   pkgconfig  compile test/downstream/main.c with the flags pkg-config gives
#              for the moved prefix: hakmem (static hak_* library, also with
#              --static) and hakmem-shared (libhakmem.so and its run path),
#              and run each without LD_LIBRARY_PATH.
# Environment (set by test/install/CMakeLists.txt): HAK_CMAKE, HAK_BUILD_DIR,
# HAK_SOURCE_DIR, HAK_WORK, HAK_LIBDIR, HAK_INCLUDEDIR, HAK_VERSION, HAK_CC,
# HAK_CXX, HAK_GENERATOR, HAK_MAKE_PROGRAM, HAK_SAN_FLAGS (the sanitizer
# flags of the hakmem build: a sanitized library needs them to link), and for
# the build step HAK_VARIANT and HAK_SANITIZE.
set -eu

step=${1:?usage: install_test.sh build|stage|cmake|pkgconfig}
W=$HAK_WORK
P=$W/prefix
LIB=$P/$HAK_LIBDIR
SAN=${HAK_SAN_FLAGS:-}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

case $step in
build)
  mkdir -p "$HAK_BUILD_DIR"
  "$HAK_CMAKE" -S "$HAK_SOURCE_DIR" -B "$HAK_BUILD_DIR" -G "$HAK_GENERATOR" \
    ${HAK_MAKE_PROGRAM:+"-DCMAKE_MAKE_PROGRAM=$HAK_MAKE_PROGRAM"} \
    "-DCMAKE_C_COMPILER=$HAK_CC" "-DCMAKE_CXX_COMPILER=$HAK_CXX" \
    -DCMAKE_BUILD_TYPE=Release "-DCMAKE_INSTALL_LIBDIR=$HAK_LIBDIR" \
    "-DHAKMEM_VARIANT=$HAK_VARIANT" "-DHAKMEM_SANITIZE=${HAK_SANITIZE:-}" \
    -DHAKMEM_BUILD_TESTS=OFF -DHAKMEM_BUILD_BENCH=OFF \
    >"$HAK_BUILD_DIR.configure.log" 2>&1 ||
    { cat "$HAK_BUILD_DIR.configure.log"; fail "configuring hakmem with CMAKE_INSTALL_LIBDIR=$HAK_LIBDIR"; }
  "$HAK_CMAKE" --build "$HAK_BUILD_DIR" -j 2 --target hakmem hakmem_cxx hakmem_shared \
    >"$HAK_BUILD_DIR.build.log" 2>&1 ||
    { cat "$HAK_BUILD_DIR.build.log"; fail "building hakmem"; }
  echo "built hakmem with CMAKE_INSTALL_LIBDIR=$HAK_LIBDIR"
  ;;

stage)
  rm -rf "$W"
  mkdir -p "$W"
  "$HAK_CMAKE" --install "$HAK_BUILD_DIR" --prefix "$W/stage" >"$W/install.log" 2>&1 ||
    { cat "$W/install.log"; fail "cmake --install"; }
  mv "$W/stage" "$P"
  [ ! -e "$W/stage" ] || fail "the staging directory is still there"

  for f in "$HAK_INCLUDEDIR/hakmem/hakmem.h" "$HAK_LIBDIR/libhakmem.a" \
      "$HAK_LIBDIR/libhakmem_cxx.a" \
      "$HAK_LIBDIR/libhakmem.so" "$HAK_LIBDIR/libhakmem.so.$HAK_VERSION" \
      "$HAK_LIBDIR/cmake/hakmem/hakmemConfig.cmake" \
      "$HAK_LIBDIR/cmake/hakmem/hakmemConfigVersion.cmake" \
      "$HAK_LIBDIR/cmake/hakmem/hakmemTargets.cmake" \
      "$HAK_LIBDIR/pkgconfig/hakmem.pc" "$HAK_LIBDIR/pkgconfig/hakmem-shared.pc"; do
    [ -e "$P/$f" ] || fail "not installed: $f"
  done
  # Only the public header: the layers' headers are internal.
  internal=$(find "$P" -name 'hak_*.h' -o -name '*_internal.h')
  [ -z "$internal" ] || fail "internal headers installed: $internal"

  # Relocatable: no installed CMake or pkg-config file names a path of this
  # machine's build (symlinked and real spellings both).
  paths="$HAK_BUILD_DIR $HAK_SOURCE_DIR $W/stage"
  for d in $HAK_BUILD_DIR $HAK_SOURCE_DIR; do
    paths="$paths $(cd "$d" && pwd -P)"
  done
  files=$(find "$P" -name '*.cmake' -o -name '*.pc')
  [ -n "$files" ] || fail "no .cmake or .pc file found"
  for path in $paths; do
    # shellcheck disable=SC2086
    hits=$(grep -lF "$path" $files || true)
    [ -z "$hits" ] || fail "installed files name $path (not relocatable): $hits"
  done
  if command -v readelf >/dev/null 2>&1; then
    rp=$(readelf -d "$LIB/libhakmem.so" | grep -E 'RPATH|RUNPATH' || true)
    [ -z "$rp" ] || fail "libhakmem.so keeps a run path: $rp"
  fi
  echo "installed and moved to $P: relocatable"
  ;;

cmake)
  [ -d "$P" ] || fail "no installed tree at $P (run the stage step first)"
  B=$W/downstream-build
  rm -rf "$B"
  env -u LD_LIBRARY_PATH "$HAK_CMAKE" -S "$HAK_SOURCE_DIR/test/downstream" -B "$B" \
    -G "$HAK_GENERATOR" ${HAK_MAKE_PROGRAM:+"-DCMAKE_MAKE_PROGRAM=$HAK_MAKE_PROGRAM"} \
    "-DCMAKE_C_COMPILER=$HAK_CC" "-DCMAKE_CXX_COMPILER=$HAK_CXX" \
    -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=$P" \
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF \
    "-DCMAKE_C_FLAGS=$SAN" "-DCMAKE_CXX_FLAGS=$SAN" "-DCMAKE_EXE_LINKER_FLAGS=$SAN" \
    >"$W/downstream-configure.log" 2>&1 ||
    { cat "$W/downstream-configure.log"; fail "configuring test/downstream"; }
  found=$(sed -n 's/^hakmem_DIR:[A-Z]*=//p' "$B/CMakeCache.txt")
  [ "$found" = "$LIB/cmake/hakmem" ] ||
    fail "find_package found hakmem in '$found', not in the moved prefix $LIB/cmake/hakmem"
  "$HAK_CMAKE" --build "$B" -j 2 >"$W/downstream-build.log" 2>&1 ||
    { cat "$W/downstream-build.log"; fail "building test/downstream"; }
  for exe in downstream_static downstream_shared downstream_cxx downstream_cxx_operators; do
    # No LD_LIBRARY_PATH: the shared one finds libhakmem.so by its run path.
    env -u LD_LIBRARY_PATH "$B/$exe" || fail "$exe failed (exit $?)"
  done
  ;;

pkgconfig)
  [ -d "$P" ] || fail "no installed tree at $P (run the stage step first)"
  command -v pkg-config >/dev/null 2>&1 || { echo "pkg-config not installed: skipped"; exit 77; }
  PKG_CONFIG_PATH=$LIB/pkgconfig
  export PKG_CONFIG_PATH
  pkg-config --exists --print-errors hakmem || fail "pkg-config does not find hakmem"
  v=$(pkg-config --modversion hakmem)
  [ "$v" = "$HAK_VERSION" ] || fail "pkg-config version $v, expected $HAK_VERSION"
  pc_prefix=$(pkg-config --variable=prefix hakmem)
  [ "$(cd "$pc_prefix" && pwd -P)" = "$(cd "$P" && pwd -P)" ] ||
    fail "hakmem.pc resolves its prefix to $pc_prefix, not $P"
  main=$HAK_SOURCE_DIR/test/downstream/main.c
  strict="-std=c11 -Wall -Wextra -Wpedantic -Werror"

  # hakmem.pc: the static archive, with a plain compiler command (and with
  # --static, which must give the same).
  for how in "" --static; do
    # shellcheck disable=SC2046,SC2086
    "$HAK_CC" $strict $SAN -DEXPECT_SHARED=0 "$main" -o "$W/pc_static" \
      $(pkg-config $how --cflags --libs hakmem) -ldl || fail "pkg-config $how hakmem build"
    env -u LD_LIBRARY_PATH "$W/pc_static" || fail "pc_static ($how) failed"
  done

  # hakmem-shared.pc: libhakmem.so, found at run time through the run path
  # the .pc file gives (no LD_LIBRARY_PATH).
  pkg-config --exists --print-errors hakmem-shared || fail "pkg-config does not find hakmem-shared"
  # shellcheck disable=SC2046,SC2086
  "$HAK_CC" $strict $SAN -DEXPECT_SHARED=1 "$main" -o "$W/pc_shared" \
    $(pkg-config --cflags --libs hakmem-shared) -ldl || fail "pkg-config shared build"
  env -u LD_LIBRARY_PATH "$W/pc_shared" || fail "pc_shared failed"
  ;;

deb)
  # The .deb and .tar.gz that cpack makes of this build tree: the .deb
  # installed with dpkg into a throwaway root (its own dpkg database), and
  # test/downstream built and run against what it installed.
  command -v dpkg >/dev/null 2>&1 || { echo "dpkg not installed: skipped"; exit 77; }
  rm -rf "$W"
  mkdir -p "$W"
  (cd "$HAK_BUILD_DIR" && "$HAK_CPACK" -G "DEB;TGZ" -B "$W/pkg") >"$W/cpack.log" 2>&1 ||
    { cat "$W/cpack.log"; fail "cpack"; }
  name=hakmem
  [ "$HAK_VARIANT" = standard ] || name=hakmem-$HAK_VARIANT
  deb=$W/pkg/${name}_${HAK_VERSION}_$(dpkg --print-architecture).deb
  tgz=$(ls "$W"/pkg/${name}-"$HAK_VERSION"-*.tar.gz 2>/dev/null | head -1)
  [ -f "$deb" ] || fail "no package $deb: $(ls "$W/pkg")"
  [ -n "$tgz" ] || fail "no .tar.gz in $W/pkg: $(ls "$W/pkg")"
  tar -tzf "$tgz" | grep -q "/lib/libhakmem.a$" || fail "$tgz holds no libhakmem.a"
  R=$W/root
  mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates"
  : >"$R/var/lib/dpkg/status"
  # --force-depends: the throwaway root's database knows no libc6.
  dpkg --root="$R" --force-not-root --force-script-chrootless --force-depends \
    --log=/dev/null -i "$deb" >"$W/dpkg.log" 2>&1 || { cat "$W/dpkg.log"; fail "dpkg -i $deb"; }
  dpkg --root="$R" -s "$name" | grep -q "^Version: $HAK_VERSION" ||
    fail "dpkg does not list $name $HAK_VERSION as installed"
  for f in usr/include/hakmem/hakmem.h usr/$HAK_LIBDIR/libhakmem.a \
      usr/$HAK_LIBDIR/libhakmem.so usr/$HAK_LIBDIR/cmake/hakmem/hakmemConfig.cmake \
      usr/share/doc/hakmem/LICENSE; do
    [ -e "$R/$f" ] || fail "the package did not install $f"
  done
  grep -q "set(hakmem_VARIANT \"$HAK_VARIANT\")" "$R/usr/$HAK_LIBDIR/cmake/hakmem/hakmemConfig.cmake" ||
    fail "the package config does not record the variant $HAK_VARIANT"
  B=$W/downstream-build
  env -u LD_LIBRARY_PATH "$HAK_CMAKE" -S "$HAK_SOURCE_DIR/test/downstream" -B "$B" \
    -G "$HAK_GENERATOR" ${HAK_MAKE_PROGRAM:+"-DCMAKE_MAKE_PROGRAM=$HAK_MAKE_PROGRAM"} \
    "-DCMAKE_C_COMPILER=$HAK_CC" "-DCMAKE_CXX_COMPILER=$HAK_CXX" \
    -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=$R/usr" \
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF \
    "-DCMAKE_C_FLAGS=$SAN" "-DCMAKE_CXX_FLAGS=$SAN" "-DCMAKE_EXE_LINKER_FLAGS=$SAN" \
    >"$W/downstream-configure.log" 2>&1 ||
    { cat "$W/downstream-configure.log"; fail "configuring test/downstream against the package"; }
  "$HAK_CMAKE" --build "$B" -j 2 >"$W/downstream-build.log" 2>&1 ||
    { cat "$W/downstream-build.log"; fail "building test/downstream against the package"; }
  for exe in downstream_static downstream_shared downstream_cxx; do
    env -u LD_LIBRARY_PATH "$B/$exe" || fail "$exe (against the package) failed (exit $?)"
  done
  echo "$deb installed with dpkg into $R; test/downstream built and ran against it"
  ;;

uninstall)
  # Install this tree, then the uninstall target removes every file again.
  rm -rf "$W"
  mkdir -p "$W"
  "$HAK_CMAKE" --install "$HAK_BUILD_DIR" --prefix "$W/prefix" >"$W/install.log" 2>&1 ||
    { cat "$W/install.log"; fail "cmake --install"; }
  [ -n "$(find "$W/prefix" -type f | head -1)" ] || fail "nothing installed"
  "$HAK_CMAKE" --build "$HAK_BUILD_DIR" --target uninstall >"$W/uninstall.log" 2>&1 ||
    { cat "$W/uninstall.log"; fail "the uninstall target"; }
  left=$(find "$W/prefix" \( -type f -o -type l \) | head -5)
  [ -z "$left" ] || fail "uninstall left files: $left"
  echo "uninstall removed every installed file"
  ;;

*)
  fail "unknown step $step"
  ;;
esac
