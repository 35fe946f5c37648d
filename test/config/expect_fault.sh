#!/bin/sh
# SPDX-License-Identifier: MIT
# expect_fault.sh 1|0 program: with 1, the program must die (by a signal, or
# by the sanitizer's report of one) without printing "no fault"; with 0 it
# must run to the end.
expect=$1
shift
out=$("$@" 2>&1)
rc=$?
echo "$out" | tail -3
echo "exit status $rc"
if [ "$expect" = 1 ]; then
  [ $rc -ne 0 ] && ! echo "$out" | grep -q "no fault"
else
  [ $rc -eq 0 ] && echo "$out" | grep -q "no fault"
fi
