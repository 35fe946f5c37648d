#!/bin/sh
# SPDX-License-Identifier: MIT
# hakmem's system-call counters agree with strace: run the probe with 0 and
# with 12 rounds of allocations; the increase strace sees in each call must
# equal the increase hakmem counted (the baseline holds the loader's and the
# C library's own calls, which hakmem does not count).
set -eu
strace=$1 probe=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
count() { # $1 rounds -> "mmap munmap madvise mremap" from strace, and hakmem's
  "$strace" -f -qq -c -U calls,name -e trace=mmap,munmap,madvise,mremap \
    -o "$tmp/strace.$1" "$probe" "$1" > "$tmp/own.$1"
  for call in mmap munmap madvise mremap; do
    n=$(awk -v c="$call" '$2 == c { print $1 }' "$tmp/strace.$1")
    printf '%s ' "${n:-0}"
  done
  echo
}
set -- $(count 0); s0="$*"
set -- $(count 12); s1="$*"
own0=$(sed 's/[a-z]*=//g' "$tmp/own.0")
own1=$(sed 's/[a-z]*=//g' "$tmp/own.12")
echo "strace (0 rounds):  $s0   hakmem: $own0"
echo "strace (12 rounds): $s1   hakmem: $own1"
i=1
for call in mmap munmap madvise mremap; do
  a=$(echo "$s0" | cut -d' ' -f$i); b=$(echo "$s1" | cut -d' ' -f$i)
  c=$(echo "$own0" | cut -d' ' -f$i); d=$(echo "$own1" | cut -d' ' -f$i)
  if [ $((b - a)) -ne $((d - c)) ]; then
    echo "FAIL: $call: strace saw $((b - a)) more, hakmem counted $((d - c)) more"
    exit 1
  fi
  i=$((i + 1))
done
if [ $(( $(echo "$own1" | cut -d' ' -f1) - $(echo "$own0" | cut -d' ' -f1) )) -le 0 ]; then
  echo "FAIL: the probe made no mapping; the comparison proves nothing"
  exit 1
fi
echo "hakmem's counters match strace"
