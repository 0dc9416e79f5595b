#!/usr/bin/env bash
# Instructions a request costs the server, counted by Valgrind (callgrind):
# a measure that, unlike req/s or CPU time, hardly moves with what else
# the machine is doing, so that differences of 1–2 % can be seen.
#
#   bench/instructions.sh BIN SCENARIO [LABEL]
#   ENV="KC_X=1" bench/instructions.sh BIN read with-x
#
# Starts the server BIN (a bench_server of keycard or tower-sessions, e.g.
# bench/target/bin/keycard-sqlite, built by run.sh) under callgrind on a
# fresh SQLite file, waits until it answers, runs the load generator's
# SCENARIO for $WARMUP s, zeroes the counters, runs it again with $CLIENTS
# clients for $DURATION s, dumps the counters and
# prints one line: the requests served and the user-space instructions
# per request (the kernel's share, sockets and files, is not counted).
# With TOP=N, also the N functions of the server with the most
# instructions including their callees, per request.
#
# Valgrind runs the server's threads one at a time and some 50× slower,
# so the load is light (a few thousand requests a second) and batching
# meets fewer concurrent requests than at full speed: compare variants
# with each other under this script, not with run.sh's figures.
#
# Needs Valgrind (Debian: apt-get install valgrind).
#
# Environment: DURATION [5]  WARMUP [3]  CLIENTS [8]  TOP [0]  ENV [none]  PORT [3991]
#   SERVER_FLAGS [--insecure-cookies]  LOAD_CPU [1]
set -euo pipefail
BIN=$1
SCENARIO=$2
LABEL=${3:-$(basename "$BIN")}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-3}
CLIENTS=${CLIENTS:-8}
TOP=${TOP:-0}
PORT=${PORT:-3991}
LOAD_CPU=${LOAD_CPU:-1}
SERVER_FLAGS=${SERVER_FLAGS:---insecure-cookies}
BENCH="$(cd "$(dirname "$0")" && pwd)"
for tool in valgrind callgrind_control callgrind_annotate; do
    command -v "$tool" >/dev/null || { echo "instructions.sh: $tool not found (apt-get install valgrind)" >&2; exit 1; }
done
LOADGEN="$BENCH/loadgen/target/release/loadgen"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/instructions.XXXXXX")
# shellcheck disable=SC2086
env ${ENV:-} valgrind --tool=callgrind --callgrind-out-file="$WORK/out.%p" \
    "$BIN" --addr "127.0.0.1:$PORT" --store "sqlite://$WORK/sessions.db" \
    $SERVER_FLAGS >"$WORK/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; [[ -n "${KEEP:-}" ]] && cp "$WORK"/out.*.1 "$KEEP"; rm -rf "$WORK"' EXIT
for _ in $(seq 300); do
    curl -sf -o /dev/null "http://127.0.0.1:$PORT/anon" && break
    sleep 0.1
done
# Warm up first, so that the pool's connections are open and have their
# statements prepared, as in a server that has been up a while.
taskset -c "$LOAD_CPU" "$LOADGEN" --url "http://127.0.0.1:$PORT" --scenario "$SCENARIO" \
    --clients "$CLIENTS" --duration "$WARMUP" --warmup 0 >/dev/null
callgrind_control -z "$server" >/dev/null 2>&1
line=$(taskset -c "$LOAD_CPU" "$LOADGEN" --url "http://127.0.0.1:$PORT" --scenario "$SCENARIO" \
    --clients "$CLIENTS" --duration "$DURATION" --warmup 0)
callgrind_control -d "$server" >/dev/null 2>&1
# The dump is written by the server's next scheduled thread: wait for it.
for _ in $(seq 100); do
    dump=$(ls "$WORK"/out.*.1 2>/dev/null || true)
    [[ -n "$dump" && -s "$dump" ]] && break
    sleep 0.1
done
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
{ read -r requests; read -r summary; } < <(python3 - "$LABEL" "$SCENARIO" "$line" "$total" <<'PY'
import json, sys
label, scenario, line, total = sys.argv[1:]
run = json.loads(line)
# Every request the load generator sent, answered or not, cost the server.
requests = run["requests"] + run["errors"]
print(requests)
print(f"{label} {scenario}: {requests} requests, errors {run['errors']}, "
      f"{int(total) / requests:,.0f} instructions a request")
PY
)
echo "$summary"
if [[ "$TOP" -gt 0 ]]; then
    callgrind_annotate --inclusive=yes "$dump" 2>/dev/null |
        awk -v n="$TOP" -v r="$requests" '
            /file:function/ { on = 1; next }
            on && NF >= 2 && $1 ~ /^[0-9,]+$/ {
                ir = $1; gsub(",", "", ir); $1 = ""; $2 = ""
                printf "%10.0f  %s\n", ir / r, substr($0, 3)
                if (++shown >= n) exit
            }'
fi
