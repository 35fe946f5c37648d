#!/bin/sh
# SPDX-License-Identifier: MIT
# run_program.sh - runs an ordinary program twice, without and with
# libhakmem.so preloaded, and compares what it prints.
#
# Usage: run_program.sh <mode> <path to libhakmem.so> <work dir>
#   modes: python, sqlite, git, perl (workloads of their own);
#          python_suite (a slice of Python's regression suite, from Debian's
#          libpython3.11-testsuite); cxx (g++ compiles cxx_workload.cpp, then
#          the program runs: the compiler and the program both on hakmem);
#          detached_threads <program> (detached_threads.c, built by CMake and
#          given as a fourth argument)
#
# Exit status: 0 when both runs succeed with the same standard output; 1 when
# the preloaded run fails, crashes, reports misuse or prints something else;
# 77 (ctest's SKIP_RETURN_CODE) when the program is not installed.
set -u

mode=${1:?mode: python, sqlite, git, perl, python_suite or cxx}
lib=${2:?path to libhakmem.so}
work=${3:?work directory}
program=${4:-}
here=$(cd "$(dirname "$0")" && pwd)

fail() {
  echo "FAIL ($mode): $*" >&2
  exit 1
}

[ -f "$lib" ] || fail "no library at $lib (build the hakmem_shared target)"
lib=$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib") # the runs cd elsewhere

# The program, by absolute path: Debian's python3 rather than whatever a
# version manager put first on PATH.
find_program() {
  for p in "$@"; do
    case $p in
    /*) [ -x "$p" ] && { echo "$p"; return 0; } ;;
    *) command -v "$p" 2>/dev/null && return 0 ;;
    esac
  done
  return 1
}
case $mode in
python | python_suite) prog=$(find_program /usr/bin/python3 python3) ;;
cxx) prog=$(find_program /usr/bin/g++ g++) ;;
detached_threads) prog=$(find_program "${program:?the program to run}") ;;
sqlite) prog=$(find_program /usr/bin/sqlite3 sqlite3) ;;
git) prog=$(find_program /usr/bin/git git) ;;
perl) prog=$(find_program /usr/bin/perl perl) ;;
*) fail "unknown mode '$mode'" ;;
esac
if [ -z "${prog:-}" ]; then
  echo "SKIP ($mode): the program is not installed"
  exit 77
fi

# Python's regression suite: the tests of the built-in types, text and
# threads (what allocates most, in every size), run by regrtest with two
# worker processes (which inherit LD_PRELOAD).
PY_TESTS="test_dict test_list test_set test_unicode test_json test_re test_threading"
if [ "$mode" = python_suite ]; then
  # shellcheck disable=SC2086
  if ! "$prog" -c "import test.support, test.libregrtest; import $(echo $PY_TESTS | sed 's/test_/test.test_/g; s/ /, /g')" 2>/dev/null; then
    echo "SKIP ($mode): Python's test suite is not installed (apt-get install libpython3.11-testsuite)"
    exit 77
  fi
fi

rm -rf "$work"
mkdir -p "$work" || fail "cannot create $work"

# Make sure the library really is preloaded: ld.so only warns (and goes on
# without it) when it cannot load a preloaded object.
cat_maps=$(LD_PRELOAD="$lib" /bin/cat /proc/self/maps 2>"$work/preload.err")
case $cat_maps in
*"$(basename "$lib")"* | *libhakmem*) ;;
*) fail "LD_PRELOAD=$lib did not load the library: $(cat "$work/preload.err")" ;;
esac

# One run of the workload in directory $1 (fresh); stdout to $1/out, stderr
# to $1/err; returns the program's exit status.
workload() {
  dir=$1
  mkdir -p "$dir"
  case $mode in
  python)
    # PYTHONMALLOC=malloc sends every object through malloc (not only those
    # above pymalloc's 512 bytes); the hash seed makes the run repeatable.
    (cd "$dir" && env -u PYTHONPATH -u PYTHONHOME -u PYTHONSTARTUP \
      PYTHONMALLOC=malloc PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1 \
      "$prog" -s "$here/alloc_heavy.py" >out 2>err)
    ;;
  sqlite)
    (cd "$dir" && "$prog" -batch scratch.db <"$here/workload.sql" >out 2>err)
    ;;
  git)
    (cd "$dir" && git_workload >out 2>err)
    ;;
  perl)
    (cd "$dir" && env -u PERL5LIB -u PERL5OPT LC_ALL=C \
      "$prog" "$here/alloc_heavy.pl" >out 2>err)
    ;;
  python_suite)
    # The comparison is of each test's result (regrtest's log has timings).
    # shellcheck disable=SC2086
    # --default-signal: a background job of sh starts with SIGINT ignored,
    # which fails test_threading's interrupt_main tests.
    (cd "$dir" && env --default-signal=INT,QUIT \
      -u PYTHONPATH -u PYTHONHOME -u PYTHONSTARTUP \
      PYTHONMALLOC=malloc PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1 \
      TMPDIR="$dir" "$prog" -s -m test -j2 --timeout 600 $PY_TESTS >log 2>err
    st=$?
    grep -oE '\] test_[a-z0-9_]+ [a-z][a-z ]*[a-z]' log | sed 's/^\] //' | sort >out
    grep -E '^Tests result: ' log >>out
    exit $st)
    ;;
  detached_threads)
    (cd "$dir" && "$prog" >out 2>err)
    ;;
  cxx)
    # g++ (driver, cc1plus, as, ld) compiles the program: the assembly it
    # writes must not depend on the allocator; then the program runs.
    (cd "$dir" && "$prog" -std=c++17 -O2 -pthread -frandom-seed=hakmem \
      -S "$here/cxx_workload.cpp" -o prog.s 2>err &&
      "$prog" -pthread prog.s -o prog 2>>err &&
      ./prog >prog.out 2>>err &&
      { echo "assembly: $(wc -l <prog.s) lines, md5 $(md5sum <prog.s | cut -d' ' -f1)"
        cat prog.out; } >out)
    ;;
  esac
}

git_workload() {
  # No user or system configuration, fixed identities and dates, one thread
  # for packing (so the pack, and its size, is the same every time).
  export HOME="$PWD" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
  export GIT_AUTHOR_NAME="Hak Test" GIT_AUTHOR_EMAIL="hak@example.invalid"
  export GIT_COMMITTER_NAME="Hak Test" GIT_COMMITTER_EMAIL="hak@example.invalid"
  export TZ=UTC LC_ALL=C
  g() { "$prog" -c pack.threads=1 -c core.autocrlf=false -c gc.auto=0 "$@"; }
  g init -q -b main repo || return 1
  cd repo || return 1
  i=1
  while [ $i -le 12 ]; do
    GIT_AUTHOR_DATE="2024-01-$(printf %02d $i)T12:00:00Z"
    GIT_COMMITTER_DATE="$GIT_AUTHOR_DATE"
    export GIT_AUTHOR_DATE GIT_COMMITTER_DATE
    mkdir -p "dir$((i % 3))"
    # Files of a few bytes to a few hundred kilobytes, some changed every
    # commit (deltas for gc to find).
    seq 1 $((i * 3000)) >"dir$((i % 3))/numbers$i.txt"
    seq $i 7 40000 | sed "s/^/line $i /" >common.txt
    awk -v n=$i 'BEGIN { for (k = 0; k < 2000 * n; k++) printf "%d %s\n", k, (k * n) % 9973 }' >"data.txt"
    g add -A || return 1
    g commit -q -m "commit $i: $(wc -l <common.txt) lines" || return 1
    if [ $i -eq 6 ]; then
      g mv dir0 renamed || return 1
      g commit -q -m "rename dir0" || return 1
    fi
    i=$((i + 1))
  done
  g log --format=%H
  g log --stat --format='%s' -3 | cat
  g diff --stat HEAD~5 HEAD
  g grep -c "line 7 " HEAD -- common.txt
  g gc -q --aggressive || return 1
  g count-objects -v
  g fsck --no-progress 2>&1
  g rev-list --all --objects | wc -l
}

# The plain run; the Python suite's (mostly waiting in test_threading) runs
# at the same time as the preloaded one.
if [ "$mode" = python_suite ]; then
  (workload "$work/plain"; echo $? >"$work/plain.status") &
  plain_pid=$!
else
  workload "$work/plain"
  plain_status=$?
fi
wait_plain() {
  if [ "$mode" = python_suite ]; then
    wait "$plain_pid"
    plain_status=$(cat "$work/plain.status")
  fi
}
if [ "$mode" != python_suite ]; then
  [ "$plain_status" -eq 0 ] || {
    sed 's/^/  plain stderr: /' "$work/plain/err" | tail -20 >&2
    fail "the program fails without hakmem too (status $plain_status): not testable here"
  }
fi

# The preloaded run: statistics off (the observe build prints a report at
# exit otherwise), everything else at its defaults.
(
  export LD_PRELOAD="$lib" HAKMEM_STATS=0
  workload "$work/hakmem"
)
status=$?
if [ "$mode" = python_suite ]; then
  wait_plain
  [ "$plain_status" -eq 0 ] || {
    sed 's/^/  plain: /' "$work/plain/out" >&2
    tail -20 "$work/plain/log" | sed 's/^/  plain log: /' >&2
    fail "the suite fails without hakmem too (status $plain_status): not testable here"
  }
fi
if [ $status -ne 0 ]; then
  [ -f "$work/hakmem/log" ] && tail -30 "$work/hakmem/log" | sed 's/^/  log: /' >&2
  sed 's/^/  stderr: /' "$work/hakmem/err" | tail -30 >&2
  if [ $status -gt 128 ]; then
    fail "crashed under hakmem: signal $((status - 128))"
  fi
  fail "exit status $status under hakmem (0 without it)"
fi
if grep -q '^hakmem: ' "$work/hakmem/err"; then
  grep '^hakmem: ' "$work/hakmem/err" | head -5 >&2
  fail "hakmem reported a problem"
fi
if ! cmp -s "$work/plain/out" "$work/hakmem/out"; then
  diff -u "$work/plain/out" "$work/hakmem/out" | head -40 >&2
  fail "the output differs under hakmem"
fi
echo "OK ($mode): $(wc -l <"$work/hakmem/out") lines of output identical with and without $lib"
tail -3 "$work/hakmem/out"
rm -rf "$work"
exit 0
