# SPDX-License-Identifier: MIT
"""check_output - the smoke test of one benchmark run.

    python3 check_output.py [--min-results N] [--require KEY=VALUE]...
                            [--expect REGEX]... [--env NAME=VALUE]...
                            -- PROGRAM ARGS...

Runs the program and fails unless it exits with status 0, prints at least N
result lines (default 1), every line that starts with "Throughput" parses
with a positive ops/s, an allocator= and a peak_rss_kb= field, every result
line has each required KEY=VALUE, and the whole output matches each REGEX.
"""

import argparse
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchout  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--min-results", type=int, default=1)
    p.add_argument("--require", action="append", default=[])
    p.add_argument("--expect", action="append", default=[])
    p.add_argument("--env", action="append", default=[])
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("no command")
    env = dict(os.environ)
    for spec in args.env:
        name, _, value = spec.partition("=")
        env[name] = value
    proc = subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=300)
    out = proc.stdout
    problems = []
    if proc.returncode != 0:
        problems.append("exit status %d" % proc.returncode)
    results = []
    for line in out.splitlines():
        if not line.startswith("Throughput"):
            continue
        r = benchout.parse_result(line)
        if r is None:
            problems.append("unparsable result line: %s" % line)
            continue
        if not r["ops_per_s"] > 0:
            problems.append("no throughput: %s" % line)
        for field in ("allocator", "peak_rss_kb"):
            if field not in r:
                problems.append("no %s=: %s" % (field, line))
        for spec in args.require:
            key, _, value = spec.partition("=")
            if r.get(key) != value:
                problems.append("want %s, got %s=%s: %s" % (spec, key, r.get(key), line))
        results.append(r)
    if len(results) < args.min_results:
        problems.append("%d result lines, want at least %d" % (len(results),
                                                               args.min_results))
    for regex in args.expect:
        if not re.search(regex, out, re.MULTILINE):
            problems.append("output does not match /%s/" % regex)
    sys.stdout.write(out)
    sys.stderr.write(proc.stderr)
    if problems:
        print("FAILED: " + " ".join(command))
        for problem in problems:
            print("  " + problem)
        return 1
    print("ok: %d result lines" % len(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
