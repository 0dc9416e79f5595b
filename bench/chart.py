#!/usr/bin/env python3
"""Draws the throughput ratios of one bench/run.sh run as a PNG.

    python3 bench/chart.py bench/results/latest.json bench/results/ratios.png

One panel per store; for each scenario two bars: keycard / bare axum and
keycard / tower-sessions (req/s over req/s, from the same run). The race
scenario is left out: it is a fixed batch of 800 increments whose point is
lost updates, which the title of each panel reports instead.

Needs matplotlib; installs it with pip (user site) when it is missing.
"""

import json
import subprocess
import sys


def ensure_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("chart.py: installing matplotlib with pip", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"],
                       check=True, timeout=600)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    source, target = sys.argv[1], sys.argv[2]
    with open(source) as f:
        data = json.load(f)
    rows = [r for r in data["summary"] if r["scenario"] != "race"]
    stores = []
    for r in rows:
        if r["store"] not in stores:
            stores.append(r["store"])
    if not stores:
        print("chart.py: nothing to draw", file=sys.stderr)
        return 1
    lost = {r["store"]: (r["servers"].get("keycard") or {}).get("lost_updates")
            for r in data["summary"] if r["scenario"] == "race"}
    lost_ts = {r["store"]: (r["servers"].get("tower-sessions") or {}).get("lost_updates")
               for r in data["summary"] if r["scenario"] == "race"}

    plt = ensure_matplotlib()
    fig, axes = plt.subplots(len(stores), 1, figsize=(9, 3.2 * len(stores)), squeeze=False)
    width = 0.38
    for ax, store in zip(axes[:, 0], stores):
        mine = [r for r in rows if r["store"] == store]
        names = [r["scenario"] for r in mine]
        xs = list(range(len(mine)))
        series = [
            ("keycard / bare axum", "keycard_over_bare", "#4c72b0", -width / 2),
            ("keycard / tower-sessions", "keycard_over_tower_sessions", "#dd8452", width / 2),
        ]
        for label, key, color, shift in series:
            values = [r[key] for r in mine]
            bars = ax.bar([x + shift for x in xs], [v or 0 for v in values], width,
                          label=label, color=color)
            for bar, v in zip(bars, values):
                if v is not None:
                    ax.annotate(f"{v:.2f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                ha="center", va="bottom", fontsize=8)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(xs)
        ax.set_xticklabels(names)
        ax.set_ylabel("req/s ratio")
        title = f"{store}"
        if lost.get(store) is not None:
            title += f" — race lost updates: keycard {lost[store]}"
            if lost_ts.get(store) is not None:
                title += f", tower-sessions {lost_ts[store]}"
        ax.set_title(title, fontsize=10)
        ax.margins(y=0.15)
    meta = data.get("meta", {})
    fig.suptitle(f"keycard throughput ratios ({meta.get('duration_s'):g} s runs, "
                 f"{meta.get('clients')} clients, {meta.get('rounds')} round(s), "
                 f"commit {meta.get('commit')})", fontsize=11)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=2, fontsize=9,
               bbox_to_anchor=(0.5, 1 - 0.35 / fig.get_figheight()))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / fig.get_figheight()))
    fig.savefig(target, dpi=110)
    print(f"chart.py: wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
