# SPDX-License-Identifier: MIT
"""benchout - reads the lines the benchmark programs print.

A result line is
    Throughput = <ops/s> ops/s allocator=<name> key=value ...
A sample line of the soak is
    Sample t=<s> ops=<n> ops_per_s=<x> rss_kb=<k>
and the system-call line of bench_random_mixed --syscalls is
    Syscalls mmap=<n> munmap=<n> ...
Fields are returned as strings, ops_per_s as a float.
"""

import re

RESULT_RE = re.compile(r"^Throughput = ([0-9]+(?:\.[0-9]+)?) ops/s(?: (.*))?$")

# Fields that name a measurement (what was run), as opposed to what was
# measured or how big the run was.
KEY_FIELDS = ("size", "batch", "align", "growth", "min", "max", "live",
              "memory", "threads", "remote_pct")


def parse_fields(text):
    """key=value pairs separated by spaces; words without '=' are ignored."""
    fields = {}
    for word in (text or "").split():
        key, eq, value = word.partition("=")
        if eq:
            fields[key] = value
    return fields


def parse_result(line):
    """The fields of a result line, or None for any other line."""
    m = RESULT_RE.match(line.strip())
    if not m:
        return None
    fields = parse_fields(m.group(2))
    fields["ops_per_s"] = float(m.group(1))
    return fields


def parse_results(text):
    return [r for r in map(parse_result, text.splitlines()) if r]


def parse_tagged(text, tag):
    """Fields of every line that starts with `tag ` (Sample, Syscalls)."""
    out = []
    for line in text.splitlines():
        if line.startswith(tag + " "):
            out.append(parse_fields(line[len(tag) + 1:]))
    return out


def measurement_key(result, workload):
    """What a result measured, e.g. 'sizes size=64 batch=1' or 'mixed':
    the workload and the fields that tell its measurements apart."""
    workload = result.get("workload", workload)
    # max tells realloc's chains apart, min and max the big-block rows;
    # elsewhere they are fixed parameters.
    ranged = {"realloc": ("max",), "big": ("min", "max")}.get(workload, ())
    parts = [workload] + ["%s=%s" % (k, result[k]) for k in KEY_FIELDS
                          if k in result and (k not in ("min", "max") or k in ranged)]
    return " ".join(parts)
