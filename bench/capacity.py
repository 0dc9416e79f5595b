#!/usr/bin/env python3
"""What one PostgreSQL core carries: the database's CPU time per request.

The machine has two cores, so this measures cost, not scale. For each case
it starts keycard's bench_server on a fresh PostgreSQL database (pinned to
SERVER_CPU), drives it with the load generator (pinned to LOAD_CPU), and
reads, over the measured run:

* the app server's CPU time (``/proc/PID/stat``),
* PostgreSQL's CPU time: its backends serving the bench database (found by
  the database name PostgreSQL puts in each backend's process title) plus
  its background processes (WAL writer, checkpointer, background writer,
  autovacuum), which work for every database but are idle otherwise,

and prints, per case, requests/s, app and database CPU in microseconds per
request, requests per database core-second (1e6 / database µs), and how
many app servers (one core each, at the measured app cost) one database
core keeps busy. The cases:

* ``read``, ``write``, ``login``, ``relogin``: keycard's defaults;
* ``read --cache``, ``write --cache``: with ``CachedStore`` and change
  notifications (the trigger, ``pg_notify``, the listener): the difference
  in database µs per write is what NOTIFY costs;
* ``two servers``: two bench_servers against one database, half the
  clients each (both on SERVER_CPU), to check that the database's cost per
  request does not grow with the number of app servers.

Usage::

    bench/capacity.py               # after bench/run.sh has built the binaries
    DURATION=5 CASES="read,write" bench/capacity.py
    FROM=bench/results/capacity.jsonl bench/capacity.py   # the table again

Environment: PG_URL [postgres://postgres@127.0.0.1:5432/test], BENCH_DB
[keycard_capacity], DURATION [5], WARMUP [1], CLIENTS [32], ROUNDS [3],
SERVER_CPU [0], LOAD_CPU [1], CASES (comma-separated; default: all), FROM
(print the table from an earlier run's JSON lines instead of running).

Output: a Markdown table on stdout (medians over ROUNDS), every run as one
JSON line in bench/results/capacity.jsonl.
"""

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
KEYCARD_BIN = os.environ.get(
    "KEYCARD_BIN", os.path.join(BENCH, "target/bin/keycard-postgres")
)
LOADGEN_BIN = os.path.join(BENCH, "loadgen/target/release/loadgen")

PG_URL = os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432/test")
BENCH_DB = os.environ.get("BENCH_DB", "keycard_capacity")
DURATION = float(os.environ.get("DURATION", "5"))
WARMUP = float(os.environ.get("WARMUP", "1"))
CLIENTS = int(os.environ.get("CLIENTS", "32"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
SERVER_CPU = os.environ.get("SERVER_CPU", "0")
LOAD_CPU = os.environ.get("LOAD_CPU", "1")
HZ = os.sysconf("SC_CLK_TCK")

# name -> (scenario, server flags, number of servers)
ALL_CASES = {
    "read": ("read", [], 1),
    "write": ("write", [], 1),
    "login": ("login", [], 1),
    "relogin": ("relogin", [], 1),
    "read --cache": ("read", ["--cache"], 1),
    "write --cache": ("write", ["--cache"], 1),
    "read, two servers": ("read", [], 2),
    "write, two servers": ("write", [], 2),
}

if not re.fullmatch(r"[a-z_][a-z0-9_]*", BENCH_DB) or BENCH_DB == "test":
    sys.exit("capacity.py: BENCH_DB must be a plain identifier other than 'test'")


def psql(sql):
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", PG_URL, "-c", sql],
        check=True,
        timeout=60,
        env={**os.environ, "PGOPTIONS": "--client-min-messages=warning"},
        stdout=subprocess.DEVNULL,
    )


def fresh_db():
    psql(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    psql(f"CREATE DATABASE {BENCH_DB}")


def ticks(pid):
    """A process's user + system CPU time so far, in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def postgres_ticks():
    """CPU ticks of PostgreSQL's background processes and of its backends
    on the bench database, by pid (other databases' backends left out:
    other people's tests share this server)."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if comm != "postgres" and not title.startswith("postgres:"):
            continue
        backend = re.match(r"postgres: \S+: \S+ (\S+) ", title)
        if backend and backend.group(1) != BENCH_DB:
            continue
        t = ticks(pid)
        if t is not None:
            out[pid] = t
    return out


def start_server(flags, url):
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, KEYCARD_BIN, "--addr", "127.0.0.1:0", "--store", url,
         "--insecure-cookies", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline()
    prefix = "bench_server listening on "
    if not line.startswith(prefix):
        proc.kill()
        raise RuntimeError(f"bench_server did not start: {line!r}")
    return proc, line[len(prefix):].strip()


def stop(proc):
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_case(name):
    scenario, flags, servers = ALL_CASES[name]
    fresh_db()
    url = PG_URL.rsplit("/", 1)[0] + "/" + BENCH_DB
    procs = [start_server(flags, url) for _ in range(servers)]
    try:
        # Warm-up apart, so that the counters cover the measured part only.
        if WARMUP > 0:
            warm = [
                subprocess.Popen(
                    ["taskset", "-c", LOAD_CPU, LOADGEN_BIN, "--url", u, "--scenario", scenario,
                     "--clients", str(CLIENTS // servers), "--duration", str(WARMUP),
                     "--warmup", "0"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for _, u in procs
            ]
            for w in warm:
                w.wait(timeout=WARMUP + 60)
        app0 = [ticks(p.pid) for p, _ in procs]
        pg0 = postgres_ticks()
        wall0 = time.monotonic()
        loads = [
            subprocess.Popen(
                ["taskset", "-c", LOAD_CPU, LOADGEN_BIN, "--url", u, "--scenario", scenario,
                 "--clients", str(CLIENTS // servers), "--duration", str(DURATION),
                 "--warmup", "0"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            for _, u in procs
        ]
        reports = [json.loads(l.communicate(timeout=DURATION + 60)[0]) for l in loads]
        wall = time.monotonic() - wall0
        app1 = [ticks(p.pid) for p, _ in procs]
        pg1 = postgres_ticks()
    finally:
        for p, _ in procs:
            stop(p)
        psql(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    requests = sum(r["requests"] for r in reports)
    errors = sum(r["errors"] for r in reports)
    # Backends that exited meanwhile are missing from pg1: count what the
    # ones present at both ends used (the pools keep theirs open).
    pg = sum(pg1[pid] - pg0[pid] for pid in pg1 if pid in pg0)
    app = sum(b - a for a, b in zip(app0, app1))
    return {
        "case": name,
        "scenario": scenario,
        "servers": servers,
        "requests": requests,
        "errors": errors,
        "seconds": wall,
        "rps": requests / wall,
        "app_us_per_req": 1e6 * app / HZ / requests if requests else None,
        "pg_us_per_req": 1e6 * pg / HZ / requests if requests else None,
        "pg_cpu_pct": 100 * pg / HZ / wall,
    }


def main():
    for binary in (KEYCARD_BIN, LOADGEN_BIN):
        if not os.access(binary, os.X_OK):
            sys.exit(f"capacity.py: missing {binary} (build with bench/run.sh first)")
    cases = os.environ.get("CASES")
    names = [c.strip() for c in cases.split(",")] if cases else list(ALL_CASES)
    runs = []
    if os.environ.get("FROM"):
        # The table again from an earlier run's lines.
        with open(os.environ["FROM"]) as f:
            runs = [json.loads(line) for line in f if line.strip()]
        names = [n for n in names if any(r["case"] == n for r in runs)]
    else:
        os.makedirs(os.path.join(BENCH, "results"), exist_ok=True)
        with open(os.path.join(BENCH, "results", "capacity.jsonl"), "w") as log:
            for rnd in range(ROUNDS):
                for name in names:
                    print(f"capacity.py: {name}, round {rnd + 1}", file=sys.stderr)
                    run = run_case(name)
                    log.write(json.dumps(run) + "\n")
                    log.flush()
                    runs.append(run)
    print("| case | req/s | app CPU µs/req | PostgreSQL CPU µs/req | PostgreSQL CPU % of a core"
          " | req/s per PostgreSQL core | app servers per PostgreSQL core | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        mine = [r for r in runs if r["case"] == name]
        med = lambda k: statistics.median(r[k] for r in mine if r[k] is not None)  # noqa: E731
        pg_us, app_us = med("pg_us_per_req"), med("app_us_per_req")
        # A cached read may cost the database nothing at all.
        per_core = f"{1e6 / pg_us:,.0f}" if pg_us > 0 else "unbounded"
        servers = f"{app_us / pg_us:.1f}" if pg_us > 0 else "unbounded"
        print(f"| {name} | {med('rps'):,.0f} | {app_us:.1f} | {pg_us:.1f} | {med('pg_cpu_pct'):.0f} |"
              f" {per_core} | {servers} | {sum(r['errors'] for r in mine)} |")


if __name__ == "__main__":
    main()
