#!/usr/bin/env python3
"""Turns bench/run.sh's runs (one JSON line each) into bench/results/latest.json
and prints the Markdown table and the targets check. Standard library only.

    python3 bench/report.py --runs bench/results/runs.jsonl --out bench/results/latest.json
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

SERVERS = ["keycard", "bare", "tower-sessions"]
SCENARIOS = ["anon", "read", "write", "mixed", "login", "relogin", "race"]
STORES = ["sqlite", "postgres", "mysql"]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def aggregate(runs):
    """(store, scenario, server) -> the medians over rounds."""
    groups = {}
    for run in runs:
        groups.setdefault((run["store"], run["scenario"], run["server"]), []).append(run)
    out = {}
    for key, group in groups.items():
        lost = [r.get("lost_updates") for r in group if r.get("lost_updates") is not None]
        out[key] = {
            "rounds": len(group),
            "rps": median([r["rps"] for r in group]),
            "iter_per_s": median([r.get("iter_per_s") for r in group]),
            "p50_us": median([r["p50_us"] for r in group]),
            "p99_us": median([r["p99_us"] for r in group]),
            "rss_kb": max((r["rss_kb"] for r in group if r.get("rss_kb") is not None), default=None),
            "errors": sum(r["errors"] for r in group),
            "error_samples": [s for r in group for s in r.get("error_samples", [])][:3],
            "lost_updates": max(lost) if lost else None,
            "server_cpu_pct": median([r.get("server_cpu_pct") for r in group]),
            "loadgen_cpu_pct": median([r.get("loadgen_cpu_pct") for r in group]),
            "other_cpu_pct": median([r.get("other_cpu_pct") for r in group]),
            # Server CPU time per request, in µs: what a request costs the
            # server whatever limited the rate (the load generator, the
            # database, other processes).
            "cpu_us_per_req": median([
                r["server_cpu_pct"] / 100 / r["rps"] * 1e6
                for r in group
                if r.get("server_cpu_pct") is not None and r["rps"] and r["scenario"] != "race"
            ]),
            "rps_min": min(r["rps"] for r in group),
            "rps_max": max(r["rps"] for r in group),
        }
    return out


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_num(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def fmt_ratio(v):
    return "–" if v is None else f"{v:.2f}×"


def fmt_mib(kb):
    return "–" if kb is None else f"{kb / 1024:.1f}"


def variant_table(agg):
    """keycard variants (servers outside SERVERS, e.g. keycard-alone) next
    to keycard from the same rounds, or "" when the run had none."""
    lines = []
    for (store, scenario, server), cell in sorted(agg.items()):
        if server in SERVERS:
            continue
        kc = agg.get((store, scenario, "keycard")) or {}
        ts = agg.get((store, scenario, "tower-sessions")) or {}
        lines.append(
            f"| {store} | {scenario} | {server} | {fmt_num(cell['rps'])} | {fmt_num(kc.get('rps'))} "
            f"| {fmt_ratio(ratio(kc.get('rps'), cell['rps']))} "
            f"| {fmt_ratio(ratio(cell['rps'], ts.get('rps')))} "
            f"| {fmt_num(cell['cpu_us_per_req'], 1)} / {fmt_num(kc.get('cpu_us_per_req'), 1)} "
            f"| {fmt_num(cell['p50_us'])} / {fmt_num(cell['p99_us'])} "
            f"| {fmt_mib(cell.get('rss_kb'))} / {fmt_mib(kc.get('rss_kb'))} | {cell['errors']} |")
    if not lines:
        return ""
    head = ("| store | scenario | variant | variant req/s | keycard req/s | keycard/variant "
            "| variant/t-s | server CPU µs/req variant / keycard | p50/p99 µs variant "
            "| peak RSS MiB variant / keycard | errors |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|")
    return head + "\n" + "\n".join(lines)


def summary_rows(agg):
    rows = []
    stores = [s for s in STORES if any(k[0] == s for k in agg)]
    for store in stores:
        for scenario in SCENARIOS:
            cells = {srv: agg.get((store, scenario, srv)) for srv in SERVERS}
            if not any(cells.values()):
                continue
            kc, bare, ts = (cells[s] or {} for s in SERVERS)
            rows.append({
                "store": store,
                "scenario": scenario,
                "servers": {s: cells[s] for s in SERVERS if cells[s]},
                "keycard_over_bare": ratio(kc.get("rps"), bare.get("rps")),
                "keycard_over_tower_sessions": ratio(kc.get("rps"), ts.get("rps")),
            })
    return rows


def table(rows):
    head = ("| store | scenario | keycard req/s | bare req/s | tower-sessions req/s "
            "| keycard/bare | keycard/t-s "
            "| p50/p99 µs keycard | p50/p99 µs bare | p50/p99 µs t-s "
            "| server CPU µs/req k / b / t-s | peak RSS MiB k / b / t-s | server CPU % k / b / t-s | loadgen CPU % k / b / t-s | other CPU % k / b / t-s "
            "| errors k / b / t-s | lost updates k / b / t-s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        s = row["servers"]

        def get(server, field):
            return (s.get(server) or {}).get(field)

        def lat(server):
            if server not in s:
                return "–"
            return f"{fmt_num(get(server, 'p50_us'))} / {fmt_num(get(server, 'p99_us'))}"

        def triple(field, f):
            return " / ".join(f(get(srv, field)) if srv in s else "–" for srv in SERVERS)

        lines.append("| " + " | ".join([
            row["store"],
            row["scenario"],
            fmt_num(get("keycard", "rps")),
            fmt_num(get("bare", "rps")),
            fmt_num(get("tower-sessions", "rps")),
            fmt_ratio(row["keycard_over_bare"]),
            fmt_ratio(row["keycard_over_tower_sessions"]),
            lat("keycard"),
            lat("bare"),
            lat("tower-sessions"),
            triple("cpu_us_per_req", lambda v: fmt_num(v, 1)),
            triple("rss_kb", fmt_mib),
            triple("server_cpu_pct", lambda v: fmt_num(v)),
            triple("loadgen_cpu_pct", lambda v: fmt_num(v)),
            triple("other_cpu_pct", lambda v: fmt_num(v)),
            triple("errors", lambda v: fmt_num(v)),
            triple("lost_updates", lambda v: "–" if v is None else str(v)) if row["scenario"] == "race" else "–",
        ]) + " |")
    return "\n".join(lines)


def targets(rows, agg):
    """The issue's targets, each with the measured figure and met / not met."""
    by = {(r["store"], r["scenario"]): r for r in rows}
    out = []

    def add(target, measured, met):
        out.append({"target": target, "measured": measured,
                    "status": {True: "met", False: "not met", None: "not measured"}[met]})

    anon = [(st, by[(st, "anon")]["keycard_over_bare"]) for st in STORES
            if (st, "anon") in by and by[(st, "anon")]["keycard_over_bare"] is not None]
    add("anon ≥ 0.97× bare axum",
        ", ".join(f"{st} {v:.2f}×" for st, v in anon) or "–",
        all(v >= 0.97 for _, v in anon) if anon else None)

    read = by.get(("sqlite", "read"), {}).get("keycard_over_tower_sessions")
    add("read on SQLite ≥ 2× tower-sessions with sliding expiry (always_save)",
        fmt_ratio(read), None if read is None else read >= 2.0)

    # The default configuration: SQLite's store caches by itself.
    read_bare = by.get(("sqlite", "read"), {}).get("keycard_over_bare")
    add("read in the default configuration on SQLite ≥ 0.6× bare axum",
        fmt_ratio(read_bare), None if read_bare is None else read_bare >= 0.6)

    for scenario in ("read", "write"):
        mysql = by.get(("mysql", scenario), {}).get("keycard_over_tower_sessions")
        add(f"{scenario} on MySQL ≥ 2× tower-sessions",
            fmt_ratio(mysql), None if mysql is None else mysql >= 2.0)

    for scenario in ("write", "login", "relogin"):
        vals = [(st, by[(st, scenario)]["keycard_over_tower_sessions"]) for st in STORES
                if (st, scenario) in by and by[(st, scenario)]["keycard_over_tower_sessions"] is not None]
        add(f"{scenario} ≥ 1.5× tower-sessions on the same store",
            ", ".join(f"{st} {v:.2f}×" for st, v in vals) or "–",
            all(v >= 1.5 for _, v in vals) if vals else None)

    race = [(st, by[(st, "race")]["keycard_over_tower_sessions"]) for st in STORES
            if (st, "race") in by and by[(st, "race")]["keycard_over_tower_sessions"] is not None]
    add("race: correct increments/s ≥ 1× tower-sessions' raw rate (which loses some)",
        ", ".join(f"{st} {v:.2f}×" for st, v in race) or "–",
        all(v >= 1.0 for _, v in race) if race else None)

    lost = [(st, agg[(st, "race", "keycard")]["lost_updates"]) for st in STORES
            if (st, "race", "keycard") in agg]
    add("race: 0 lost updates through the atomic update API on every store",
        ", ".join(f"{st} {v}" for st, v in lost) or "–",
        all(v == 0 for _, v in lost) if lost else None)

    rss = []
    for st in STORES:
        kc = [v["rss_kb"] for (s, _, srv), v in agg.items() if s == st and srv == "keycard" and v["rss_kb"]]
        ts = [v["rss_kb"] for (s, _, srv), v in agg.items() if s == st and srv == "tower-sessions" and v["rss_kb"]]
        if kc and ts:
            rss.append((st, max(kc), max(ts)))
    add("peak RSS no higher than tower-sessions' (highest over the scenarios)",
        ", ".join(f"{st} {k / 1024:.1f} vs {t / 1024:.1f} MiB" for st, k, t in rss) or "–",
        all(k <= t for _, k, t in rss) if rss else None)
    return out


def git_commit():
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        commit = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", help="run.sh's runs.jsonl")
    parser.add_argument("--from", dest="source",
                        help="an earlier latest.json: report its runs again with its meta")
    parser.add_argument("--out", required=True)
    parser.add_argument("--command", default="bench/run.sh")
    parser.add_argument("--duration", type=float)
    parser.add_argument("--warmup", type=float)
    parser.add_argument("--clients", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--ts-always-save", default="1")
    parser.add_argument("--race-incr", type=int, default=100,
                        help="race: increments per connection (8 connections)")
    parser.add_argument("--elapsed", type=int)
    parser.add_argument("--commit", help="what keycard was built from (default: HEAD now)")
    args = parser.parse_args()

    runs = []
    meta = None
    if args.source:
        with open(args.source) as f:
            earlier = json.load(f)
        runs, meta = earlier["runs"], earlier["meta"]
    elif args.runs:
        with open(args.runs) as f:
            for line in f:
                line = line.strip()
                if line:
                    runs.append(json.loads(line))
    else:
        parser.error("give --runs or --from")
    if not runs:
        print("report.py: no runs to report", file=sys.stderr)
        return 1
    agg = aggregate(runs)
    rows = summary_rows(agg)
    goals = targets(rows, agg)
    meta = meta or {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": args.command,
        "commit": args.commit or git_commit(),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "clients": args.clients,
        "rounds": args.rounds,
        "tower_sessions_always_save": args.ts_always_save == "1",
        "race_incr": args.race_incr,
        "elapsed_s": args.elapsed,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "kernel": platform.release(),
    }
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "summary": rows, "targets": goals, "runs": runs}, f, indent=1)
        f.write("\n")

    print(f"Command: `{meta['command']}` (keycard built at {meta['commit']}; {meta['date']}; "
          f"{meta['elapsed_s']} s of runs)")
    print()
    print(f"{meta['duration_s']:g} s measured after {meta['warmup_s']:g} s warm-up per run, "
          f"{meta['clients']} clients, {meta['rounds']} round(s) (medians), race = 8 × {meta.get('race_incr', 100)} increments; "
          f"tower-sessions with always_save = {str(meta['tower_sessions_always_save']).lower()}.")
    print()
    print(table(rows))
    print()
    errors = [(k, v["error_samples"]) for k, v in sorted(agg.items()) if v["errors"]]
    if errors:
        print("Errors seen (first samples):")
        for (store, scenario, server), samples in errors:
            print(f"- {server} {store} {scenario}: {'; '.join(samples)}")
        print()
    variants = variant_table(agg)
    if variants:
        print(variants)
        print()
    print("| target | measured | status |")
    print("|---|---|---|")
    for goal in goals:
        print(f"| {goal['target']} | {goal['measured']} | {goal['status']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
