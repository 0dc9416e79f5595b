#!/usr/bin/env python3
"""Prints the median times of the criterion benchmarks (benches/fixed_costs.rs)
as a Markdown table, from criterion's estimates.json files. Standard library only.

    python3 bench/criterion_medians.py bench/target/keycard/criterion
"""

import glob
import json
import os
import sys


def fmt(ns):
    if ns >= 1000:
        return f"{ns / 1000:.2f} µs"
    return f"{ns:.1f} ns"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "bench/target/keycard/criterion"
    rows = {}
    for path in sorted(glob.glob(os.path.join(root, "*", "*", "new", "estimates.json"))):
        group, bench = path.split(os.sep)[-4:-2]
        with open(path) as f:
            median = json.load(f)["median"]
        ci = median["confidence_interval"]
        rows[f"{group}/{bench}"] = (median["point_estimate"], ci["lower_bound"], ci["upper_bound"])
    if not rows:
        print(f"criterion_medians.py: no estimates under {root}", file=sys.stderr)
        return 1
    print("| benchmark | median | 95 % CI of the median |")
    print("|---|---|---|")
    for name, (m, lo, hi) in rows.items():
        print(f"| `{name}` | {fmt(m)} | {fmt(lo)} – {fmt(hi)} |")
    base = rows.get("layer/router_without_layer")
    if base:
        print()
        for name in ("layer/router_with_layer_no_cookie", "layer/router_with_layer_untouched_session"):
            if name in rows:
                print(f"- `{name}` − `layer/router_without_layer` = "
                      f"{fmt(rows[name][0] - base[0])} of layer overhead per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
