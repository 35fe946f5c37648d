# SPDX-License-Identifier: MIT
"""check_report - the JSON report of report_dump parses and has the layout
docs/STATS.md describes.

    python3 check_report.py VARIANT REPORT_DUMP
"""

import json
import subprocess
import sys


def main():
    variant, program = sys.argv[1], sys.argv[2]
    out = subprocess.run([program], check=True, capture_output=True,
                         text=True, env={"HAKMEM_STATS": "0"}).stdout
    r = json.loads(out)  # one object, nothing after it
    assert set(r) == {"header", "tiers", "os", "counters"}, r.keys()
    h = r["header"]
    assert h["variant"] == variant, h
    assert h["version"].count(".") == 2, h
    assert isinstance(h["pid"], int) and h["pid"] > 0, h
    assert h["program"] == "report_dump", h
    tiers = r["tiers"]
    assert set(tiers) == {"tiny", "mid", "large"}, tiers.keys()
    keys = {"live_blocks", "live_bytes", "free_blocks", "free_bytes",
            "cached_bytes", "mapped", "committed", "committed_peak"}
    for name, t in tiers.items():
        assert keys <= set(t), (name, t.keys())
        assert t["committed_peak"] >= t["committed"], (name, t)
        if name == "large":
            assert "classes" not in t
            continue
        live = 0
        for c in t["classes"]:
            assert c["block_size"] > 0, c
            assert c["live_bytes"] == c["live_blocks"] * c["block_size"], c
            assert c["free_bytes"] == c["free_blocks"] * c["block_size"], c
            assert ("mallocs" in c) == (variant == "observe" and name == "tiny")
            live += c["live_blocks"]
        assert live == t["live_blocks"], (name, live, t["live_blocks"])
    c48 = [c for c in tiers["tiny"]["classes"] if c["block_size"] == 48]
    assert c48 and c48[0]["live_blocks"] >= 600, c48
    assert tiers["large"]["live_blocks"] >= 6, tiers["large"]
    os_ = r["os"]
    assert os_["rss_peak"] >= os_["rss"] > 0, os_
    assert os_["mapped_peak"] >= os_["mapped"] > 0, os_
    counters = r["counters"]
    assert ("sys.mmap" in counters) == (variant != "fast"), counters
    assert ("tiny.malloc" in counters) == (variant == "observe"), counters
    print("report ok: %d tiny classes, %d mid classes shown" % (
        len(tiers["tiny"]["classes"]), len(tiers["mid"]["classes"])))


if __name__ == "__main__":
    main()
