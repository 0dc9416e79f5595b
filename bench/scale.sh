#!/usr/bin/env bash
# The scale run (SQLite): do lookups stay flat with a million sessions in
# the store, and how slow does a read get while a million expired sessions
# are purged?
#
#   1. `seeded` reads (GET /whoami as a random existing session) on a store
#      of SMALL live sessions, then on one of BIG live sessions.
#   2. A store of BIG expired + SAMPLE live sessions: `seeded` reads for
#      PURGE_SECS without a purge, then again with `examples/admin purge`
#      started PURGE_AFTER seconds in; worst and p99 read latency of both,
#      and how long the purge took.
#
# Part 1 runs each store twice: with bench_server's defaults (30 min idle
# timeout, so a touch interval of 1 min: a session first read more than a
# minute after seeding is also renewed, one write), and with
# `--idle-timeout LOOKUP_IDLE` (default 86400 s: a 48 min touch interval),
# where every request is a pure lookup.
#
# Knobs (environment): BIG (1000000), SMALL (1000), SAMPLE (100000),
# LOOKUP_IDLE (86400),
# DURATION (10), WARMUP (2), PURGE_SECS (30), PURGE_AFTER (5), CLIENTS (32),
# SERVER_CPU (0), LOAD_CPU (1), SERVER_FLAGS (more bench_server flags, e.g.
# --no-read-cache: the database's lookups alone, which SQLite's read cache
# would otherwise hide for a store small enough to fit in it), PURGE_PART
# (1; 0 skips part 2). Traffic stays on 127.0.0.1.
set -euo pipefail

# keycard is built as an application builds it: its default features and
# the stores bench_server serves, none of the optional extras.
KEYCARD_FEATURES=${KEYCARD_FEATURES:-"sqlite postgres mysql"}

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
BIG=${BIG:-1000000}
SMALL=${SMALL:-1000}
SAMPLE=${SAMPLE:-100000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
PURGE_SECS=${PURGE_SECS:-30}
PURGE_AFTER=${PURGE_AFTER:-5}
CLIENTS=${CLIENTS:-32}
LOOKUP_IDLE=${LOOKUP_IDLE:-86400}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
read -r -a SERVER_FLAGS <<<"${SERVER_FLAGS:-}"
PURGE_PART=${PURGE_PART:-1}

log() { echo "scale.sh: $*" >&2; }

TARGET="$BENCH/target/keycard"
log "building (release) keycard at $(git -C "$ROOT" rev-parse --short HEAD)"
(cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" \
    cargo build --release --features "$KEYCARD_FEATURES" --example bench_server --example admin)
for crate in loadgen seed; do
    CARGO_TARGET_DIR="$BENCH/$crate/target" \
        cargo build --release --manifest-path "$BENCH/$crate/Cargo.toml"
done
SERVER="$TARGET/release/examples/bench_server"
ADMIN="$TARGET/release/examples/admin"
LOADGEN="$BENCH/loadgen/target/release/loadgen"
SEED="$BENCH/seed/target/release/seed"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/keycard-scale.XXXXXX")
SERVER_PID=""
stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
trap 'stop_server; rm -rf "$WORK"' EXIT

start_server() { # db [bench_server flags…] -> SERVER_URL
    : >"$WORK/server.out"
    local db=$1; shift
    taskset -c "$SERVER_CPU" "$SERVER" --addr 127.0.0.1:0 --store "sqlite:$db" \
        --insecure-cookies "${SERVER_FLAGS[@]}" "$@" >"$WORK/server.out" 2>"$WORK/server.err" &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        if grep -q "listening on" "$WORK/server.out"; then
            SERVER_URL=$(sed -n 's/^bench_server listening on //p' "$WORK/server.out")
            return
        fi
        sleep 0.1
    done
    log "bench_server did not start"; cat "$WORK/server.err" >&2; exit 1
}

seeded() { # duration label -> JSON line
    taskset -c "$LOAD_CPU" "$LOADGEN" --url "$SERVER_URL" --scenario seeded \
        --sessions "$WORK/sessions.txt" --clients "$CLIENTS" \
        --duration "$1" --warmup "$WARMUP"
}

field() { # json key
    python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2]))' "$1" "$2"
}

# ---- 1. lookups with SMALL and with BIG sessions in the store
declare -A RPS P50 P99 LRPS LP50 LP99
for size in "$SMALL" "$BIG"; do
    db="$WORK/flat-$size.db"
    sample=$(( size < SAMPLE ? size : SAMPLE ))
    log "seeding $size live sessions"
    "$SEED" --store "sqlite:$db" --live "$size" --expired 0 --sample "$sample" \
        --out "$WORK/sessions.txt" >&2
    # Pure lookups first (nothing written), then the defaults.
    start_server "$db" --idle-timeout "$LOOKUP_IDLE"
    result=$(seeded "$DURATION")
    stop_server
    LRPS[$size]=$(field "$result" rps)
    LP50[$size]=$(field "$result" p50_us)
    LP99[$size]=$(field "$result" p99_us)
    log "$size sessions, lookups only: $(field "$result" rps) req/s, errors $(field "$result" errors)"
    start_server "$db"
    result=$(seeded "$DURATION")
    stop_server
    echo "$result" >"$WORK/flat-$size.json"
    RPS[$size]=$(field "$result" rps)
    P50[$size]=$(field "$result" p50_us)
    P99[$size]=$(field "$result" p99_us)
    log "$size sessions, defaults: $(field "$result" rps) req/s, errors $(field "$result" errors)"
    rm -f "$db" "$db-wal" "$db-shm"
done

cat <<REPORT
Command: \`BIG=$BIG SMALL=$SMALL SAMPLE=$SAMPLE DURATION=$DURATION PURGE_SECS=$PURGE_SECS SERVER_FLAGS="${SERVER_FLAGS[*]}" PURGE_PART=$PURGE_PART bench/scale.sh\` (keycard $(git -C "$ROOT" rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%M:%SZ))

| sessions in the store | server | req/s | p50 µs | p99 µs |
|---|---|---|---|---|
| $SMALL | \`--idle-timeout $LOOKUP_IDLE\` (lookups only) | ${LRPS[$SMALL]} | ${LP50[$SMALL]} | ${LP99[$SMALL]} |
| $BIG | \`--idle-timeout $LOOKUP_IDLE\` (lookups only) | ${LRPS[$BIG]} | ${LP50[$BIG]} | ${LP99[$BIG]} |
| $SMALL | defaults (1 min touch interval) | ${RPS[$SMALL]} | ${P50[$SMALL]} | ${P99[$SMALL]} |
| $BIG | defaults (1 min touch interval) | ${RPS[$BIG]} | ${P50[$BIG]} | ${P99[$BIG]} |

$BIG / $SMALL throughput ratio: lookups only $(python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "${LRPS[$BIG]}" "${LRPS[$SMALL]}")×, defaults $(python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "${RPS[$BIG]}" "${RPS[$SMALL]}")×

REPORT

if [[ "$PURGE_PART" == 1 ]]; then
    # ---- 2. reads while BIG expired sessions are purged
    db="$WORK/purge.db"
    log "seeding $BIG expired + $SAMPLE live sessions"
    "$SEED" --store "sqlite:$db" --live "$SAMPLE" --expired "$BIG" --sample "$SAMPLE" \
        --out "$WORK/sessions.txt" >&2
    start_server "$db"
    quiet=$(seeded "$PURGE_SECS")
    seeded "$PURGE_SECS" >"$WORK/purging.json" &
    LOAD_PID=$!
    sleep "$(( WARMUP + PURGE_AFTER ))"
    purge_started=$(date +%s.%N)
    purged=$("$ADMIN" --store "sqlite:$db" purge)
    purge_seconds=$(python3 -c "import sys,time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$purge_started")
    wait "$LOAD_PID"
    purging=$(cat "$WORK/purging.json")
    stop_server
    cat <<REPORT

| $BIG expired + $SAMPLE live, ${PURGE_SECS} s of reads | req/s | p50 µs | p99 µs | worst µs | errors |
|---|---|---|---|---|---|
| no purge | $(field "$quiet" rps) | $(field "$quiet" p50_us) | $(field "$quiet" p99_us) | $(field "$quiet" max_us) | $(field "$quiet" errors) |
| purge running (\`admin purge\`: $purged in ${purge_seconds} s) | $(field "$purging" rps) | $(field "$purging" p50_us) | $(field "$purging" p99_us) | $(field "$purging" max_us) | $(field "$purging" errors) |
REPORT
fi
