# SPDX-License-Identifier: MIT
"""Unit test of benchstats on inputs whose statistics are known by hand."""

import math
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchout  # noqa: E402
import benchstats  # noqa: E402


class StatsTest(unittest.TestCase):
    # The textbook example: mean 5, population sd 2, sample sd sqrt(32/7).
    DATA = [2, 4, 4, 4, 5, 5, 7, 9]

    def test_summary(self):
        s = benchstats.summarize(self.DATA)
        self.assertEqual(s["n"], 8)
        self.assertEqual(s["mean"], 5)
        self.assertEqual(s["median"], 4.5)
        self.assertEqual(s["min"], 2)
        self.assertEqual(s["max"], 9)
        self.assertAlmostEqual(s["stdev"], math.sqrt(32 / 7))
        self.assertAlmostEqual(s["cv"], math.sqrt(32 / 7) / 5)

    def test_odd_median_and_order(self):
        self.assertEqual(benchstats.median([9, 1, 5]), 5)

    def test_single_value(self):
        s = benchstats.summarize([3.0])
        self.assertEqual(s["stdev"], 0)
        self.assertEqual(s["cv"], 0)
        self.assertEqual(s["median"], 3.0)

    def test_constant(self):
        self.assertEqual(benchstats.cv([7, 7, 7, 7]), 0)

    def test_empty(self):
        with self.assertRaises(ValueError):
            benchstats.mean([])
        with self.assertRaises(ValueError):
            benchstats.median([])

    def test_ratio(self):
        self.assertEqual(benchstats.ratio(120, 100), 1.2)
        self.assertIsNone(benchstats.ratio(1, 0))
        self.assertIsNone(benchstats.ratio(None, 1))

    def test_drift(self):
        self.assertAlmostEqual(benchstats.drift([100, 100], [101, 101]), 0.01)
        self.assertAlmostEqual(benchstats.drift([100], [98]), -0.02)


class ParseTest(unittest.TestCase):
    def test_result_line(self):
        r = benchout.parse_result(
            "Throughput = 123456789 ops/s allocator=hakmem-fast iters=20000000"
            " ws=400 peak_rss_kb=2204 min=16 preload=libhakmem.so")
        self.assertEqual(r["ops_per_s"], 123456789)
        self.assertEqual(r["allocator"], "hakmem-fast")
        self.assertEqual(r["ws"], "400")
        self.assertEqual(r["peak_rss_kb"], "2204")
        self.assertEqual(r["preload"], "libhakmem.so")

    def test_other_lines(self):
        self.assertIsNone(benchout.parse_result("Sample t=1.0 ops=5"))
        self.assertIsNone(benchout.parse_result("Throughput = x ops/s"))

    def test_measurement_key(self):
        r = benchout.parse_result(
            "Throughput = 5 ops/s allocator=libc workload=sizes size=64 batch=1"
            " ops=10 peak_rss_kb=1 seconds=0.1")
        self.assertEqual(benchout.measurement_key(r, "sizes"),
                         "sizes size=64 batch=1")
        r = benchout.parse_result(
            "Throughput = 5 ops/s allocator=libc iters=10 ws=4 peak_rss_kb=1")
        self.assertEqual(benchout.measurement_key(r, "mixed"), "mixed")


if __name__ == "__main__":
    unittest.main()
