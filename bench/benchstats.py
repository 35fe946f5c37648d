# SPDX-License-Identifier: MIT
"""benchstats - the statistics the benchmark reports use.

Small on purpose: mean, median, min, max, sample standard deviation and
coefficient of variation of a list of throughputs, and ratios between two
summaries.  Standard library only, so the scripts run on any python3.
"""

import math


def mean(xs):
    if not xs:
        raise ValueError("mean of no values")
    return math.fsum(xs) / len(xs)


def median(xs):
    if not xs:
        raise ValueError("median of no values")
    s = sorted(xs)
    n = len(s)
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2


def stdev(xs):
    """Sample standard deviation (n - 1 in the denominator); 0 for one value."""
    if len(xs) < 2:
        return 0.0
    m = mean(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def cv(xs):
    """Coefficient of variation: sample standard deviation over the mean."""
    m = mean(xs)
    return stdev(xs) / m if m else 0.0


def summarize(xs):
    """Every statistic of xs in one dict."""
    return {
        "n": len(xs),
        "mean": mean(xs),
        "median": median(xs),
        "min": min(xs),
        "max": max(xs),
        "stdev": stdev(xs),
        "cv": cv(xs),
    }


def ratio(a, b):
    """a / b, or None when b is missing or zero."""
    if a is None or not b:
        return None
    return a / b


def drift(first, last):
    """Relative change from the mean of the first window to the mean of the
    last: +0.01 is one per cent up."""
    f = mean(first)
    return (mean(last) - f) / f if f else 0.0
