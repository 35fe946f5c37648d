#!/bin/sh
# run_program.sh - runs an ordinary program twice, without and with
# libhakmem.so preloaded, and compares what it prints.
#
# Usage: run_program.sh <python|sqlite|git|perl> <path to libhakmem.so> <work dir>
#
# Exit status: 0 when both runs succeed with the same standard output; 1 when
# the preloaded run fails, crashes, reports misuse or prints something else;
# 77 (ctest's SKIP_RETURN_CODE) when the program is not installed.
set -u

mode=${1:?mode: python, sqlite, git or perl}
lib=${2:?path to libhakmem.so}
work=${3:?work directory}
here=$(cd "$(dirname "$0")" && pwd)

fail() {
  echo "FAIL ($mode): $*" >&2
  exit 1
}

[ -f "$lib" ] || fail "no library at $lib (build the hakmem_shared target)"

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
python) prog=$(find_program /usr/bin/python3 python3) ;;
sqlite) prog=$(find_program /usr/bin/sqlite3 sqlite3) ;;
git) prog=$(find_program /usr/bin/git git) ;;
perl) prog=$(find_program /usr/bin/perl perl) ;;
*) fail "unknown mode '$mode'" ;;
esac
if [ -z "${prog:-}" ]; then
  echo "SKIP ($mode): the program is not installed"
  exit 77
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

workload "$work/plain"
plain_status=$?
[ $plain_status -eq 0 ] || {
  sed 's/^/  plain stderr: /' "$work/plain/err" | tail -20 >&2
  fail "the program fails without hakmem too (status $plain_status): not testable here"
}

# The preloaded run: statistics off (the observe build prints a report at
# exit otherwise), everything else at its defaults.
(
  export LD_PRELOAD="$lib" HAKMEM_STATS=0
  workload "$work/hakmem"
)
status=$?
if [ $status -ne 0 ]; then
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
