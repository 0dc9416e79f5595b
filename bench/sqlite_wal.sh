#!/usr/bin/env bash
# The SQLite write-ahead log under a steady load, and after it.
#
#   bench/sqlite_wal.sh BIN SCENARIO [LABEL]
#
# Starts the server BIN (a bench_server of keycard or tower-sessions, e.g.
# bench/target/bin/keycard-sqlite, built by run.sh) on a fresh SQLite file
# on core $SERVER_CPU, runs the load generator's SCENARIO on core $LOAD_CPU
# for $DURATION s after $WARMUP s, and prints one line: req/s, p99, errors,
# the server's CPU time per request, the size of the -wal file when the
# load ends, and its size after a quiet second and $AFTER more sign-ins
# (what SQLite leaves on disk once the log can start over).
#
# Environment: DURATION [6]  WARMUP [2]  CLIENTS [32]  AFTER [3]
#   SERVER_CPU [0]  LOAD_CPU [1]  PORT [3990]  SERVER_FLAGS [--insecure-cookies]
set -euo pipefail
BIN=$1
SCENARIO=$2
LABEL=${3:-$(basename "$BIN")}
DURATION=${DURATION:-6}
WARMUP=${WARMUP:-2}
CLIENTS=${CLIENTS:-32}
AFTER=${AFTER:-3}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT=${PORT:-3990}
SERVER_FLAGS=${SERVER_FLAGS:---insecure-cookies}
BENCH="$(cd "$(dirname "$0")" && pwd)"
LOADGEN="$BENCH/loadgen/target/release/loadgen"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sqlite-wal.XXXXXX")
DB="$WORK/sessions.db"
# shellcheck disable=SC2086
taskset -c "$SERVER_CPU" "$BIN" --addr "127.0.0.1:$PORT" --store "sqlite://$DB" \
    $SERVER_FLAGS >"$WORK/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do
    curl -sf -o /dev/null "http://127.0.0.1:$PORT/anon" && break
    sleep 0.1
done
ticks0=$(awk '{print $14 + $15}' "/proc/$server/stat")
line=$(taskset -c "$LOAD_CPU" "$LOADGEN" --url "http://127.0.0.1:$PORT" --scenario "$SCENARIO" \
    --clients "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP")
ticks1=$(awk '{print $14 + $15}' "/proc/$server/stat")
wal_end=$(stat -c %s "$DB-wal")
sleep 1
for i in $(seq "$AFTER"); do
    curl -sf -o /dev/null -X POST "http://127.0.0.1:$PORT/login/after$i"
done
wal_after=$(stat -c %s "$DB-wal")
python3 - "$LABEL" "$SCENARIO" "$line" "$((ticks1 - ticks0))" "$wal_end" "$wal_after" \
    "$(getconf CLK_TCK)" "$DURATION" "$WARMUP" <<'PY'
import json, sys
label, scenario, line, ticks, wal_end, wal_after, hz, duration, warmup = sys.argv[1:]
run = json.loads(line)
# The server's CPU over warm-up and measurement, per request of both.
seconds = float(duration) + float(warmup)
cpu_us = int(ticks) / int(hz) * 1e6 / (run["rps"] * seconds) if run["rps"] else 0
mib = lambda b: int(b) / 2**20
print(f"{label} {scenario}: {run['rps']:,.0f} req/s, p99 {run['p99_us'] / 1000:.1f} ms, "
      f"errors {run['errors']}, ~{cpu_us:.0f} µs server CPU/req, "
      f"wal at the end {mib(wal_end):.1f} MiB, after {mib(wal_after):.1f} MiB")
PY
