#!/usr/bin/env bash
# Load benchmark: keycard vs bare axum vs tower-sessions, on SQLite,
# PostgreSQL and MySQL, over loopback HTTP.
#
#   bench/run.sh                       # everything, 5 s per run after 2 s warm-up
#   DURATION=3 WARMUP=1 bench/run.sh   # shorter
#
# Builds (release, once; SKIP_BUILD=1 to reuse), as an application builds
# them: for each store, keycard's bench_server example with keycard's
# default features plus that store (no `qr`, no `test-client`, no other
# store's driver) and tower-sessions' server with that store alone, copied
# to bench/target/bin/{keycard,tower-sessions}-STORE (BUILD_PER_STORE=0:
# one build of each for all stores, with KEYCARD_FEATURES / TS_FEATURES);
# and the standalone crates bench/loadgen and bench/bare_axum into their
# own target/ folders.
#
# Each run starts a server on a fresh database, pinned to one core
# (taskset -c $SERVER_CPU), drives it with the load generator pinned to the
# other (taskset -c $LOAD_CPU), reads the server's peak RSS (VmHWM) at the
# end and stops it. Servers are interleaved per scenario (keycard, bare,
# tower-sessions, keycard, ... when ROUNDS > 1). Traffic stays on 127.0.0.1
# and every step has a time limit.
#
# Output: a Markdown table on stdout (also bench/results/latest.md), every
# run's JSON line in bench/results/runs.jsonl, the aggregate in
# bench/results/latest.json, and the ratio chart bench/results/ratios.png
# (CHART=0 to skip it).
#
# Environment (defaults in brackets):
#   DURATION [5]  WARMUP [2]  CLIENTS [32]  ROUNDS [1]
#   STORES ["sqlite postgres mysql"]
#   SCENARIOS ["anon read write mixed login relogin race"]
#   SERVERS ["keycard bare tower-sessions"]  (also: keycard-alone, keycard
#          with --no-batching; keycard-nocache, with --no-read-cache; keycard-base, keycard's bench_server built
#          from the commit BASE_REV; keycard-poolN / tower-sessions-poolN,
#          SQLite with a pool of N connections (--sqlite-pool N);
#          keycard-arenaN, keycard with MALLOC_ARENA_MAX=N; keycard-noedge,
#          with KC_NOEDGE=1 for bench/experiments/edge-checks-off.diff; each
#          reported in a table of its own against keycard from the same rounds)
#   BASE_REV  (the commit keycard-base is built from, e.g. 58577c4: a
#          before/after comparison inside one interleaved run)
#   PG_URL [postgres://postgres@127.0.0.1:5432/test]   (an existing database to
#          connect to; each run uses a fresh database $BENCH_DB beside it)
#   MYSQL_URL [mysql://root@127.0.0.1:3306/test]       (likewise)
#   BENCH_DB [keycard_bench]  (dropped and re-created before every run)
#   TS_ALWAYS_SAVE [1]  (tower-sessions' sliding expiry: save on every request)
#   BUILD_PER_STORE [1]  (0: one build for every store, with
#          KEYCARD_FEATURES ["sqlite postgres mysql"] and TS_FEATURES [the same])
#   SERVER_CPU [0]  LOAD_CPU [1]  SKIP_BUILD [0]  CHART [1]
#   RACE_INCR [100]  (race: increments per connection, 8 connections; the
#          default race lasts well under a second, 1000 gives steadier rates)
set -euo pipefail

# With BUILD_PER_STORE=0: the features of the one build of each server.
KEYCARD_FEATURES=${KEYCARD_FEATURES:-"sqlite postgres mysql"}
TS_FEATURES=${TS_FEATURES:-"sqlite postgres mysql"}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
RESULTS="$BENCH/results"

DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
CLIENTS=${CLIENTS:-32}
ROUNDS=${ROUNDS:-1}
STORES=${STORES:-"sqlite postgres mysql"}
SCENARIOS=${SCENARIOS:-"anon read write mixed login relogin race"}
RACE_INCR=${RACE_INCR:-100}
SERVERS=${SERVERS:-"keycard bare tower-sessions"}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
MYSQL_URL=${MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
BENCH_DB=${BENCH_DB:-keycard_bench}
TS_ALWAYS_SAVE=${TS_ALWAYS_SAVE:-1}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
CHART=${CHART:-1}

if ! [[ "$BENCH_DB" =~ ^[a-z_][a-z0-9_]*$ ]]; then
    echo "run.sh: BENCH_DB must be a plain lower-case identifier" >&2
    exit 2
fi
if [[ "$BENCH_DB" == "test" ]]; then
    echo "run.sh: BENCH_DB must not be the shared 'test' database" >&2
    exit 2
fi

# One target folder for every feature set: cargo keeps each set's
# artifacts apart, so switching between them rebuilds only what differs.
KEYCARD_TARGET="$BENCH/target/keycard"
TS_TARGET="$BENCH/tower_sessions_server/target"
# The servers' binaries, copied here after each build: one per store
# (BUILD_PER_STORE=1, the default: as an application builds them, with the
# one store it uses), or one for all stores ("all": KEYCARD_FEATURES and
# TS_FEATURES for every store).
BIN_DIR="$BENCH/target/bin"
BUILD_PER_STORE=${BUILD_PER_STORE:-1}
built_for() { # store -> the build's name
    if [[ "$BUILD_PER_STORE" == 1 ]]; then echo "$1"; else echo all; fi
}
keycard_bin() { echo "$BIN_DIR/keycard-$(built_for "$1")"; }
base_bin() { echo "$BIN_DIR/keycard-base-$(built_for "$1")"; }
ts_bin() { echo "$BIN_DIR/tower-sessions-$(built_for "$1")"; }
builds() { # the builds STORES needs: "name keycard-features ts-features" lines
    if [[ "$BUILD_PER_STORE" == 1 ]]; then
        for store in $STORES; do echo "$store $store $store"; done
    else
        echo "all ${KEYCARD_FEATURES// /,} ${TS_FEATURES// /,}"
    fi
}
BASE_REV=${BASE_REV:-}
wants_base=0
[[ " $SERVERS " == *" keycard-base "* ]] && wants_base=1
if [[ "$wants_base" == 1 && -z "$BASE_REV" ]]; then
    echo "run.sh: SERVERS has keycard-base: set BASE_REV to the commit to build it from" >&2
    exit 2
fi
BARE_BIN="$BENCH/bare_axum/target/release/bare_axum"
LOADGEN_BIN="$BENCH/loadgen/target/release/loadgen"

log() { echo "run.sh: $*" >&2; }

# ---------------------------------------------------------------- build
# What keycard's bench_server is built from: HEAD, "+dirty" if the files
# that go into it differ from HEAD at build time.
commit_now() {
    local commit dirty
    commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) || { echo unknown; return; }
    dirty=$(git -C "$ROOT" status --porcelain --untracked-files=all -- \
        src examples migrations Cargo.toml Cargo.lock 2>/dev/null)
    echo "$commit${dirty:++dirty}"
}
BUILD_COMMIT="$(commit_now), binaries prebuilt (SKIP_BUILD=1)"
if [[ "$SKIP_BUILD" != 1 ]]; then
    BUILD_COMMIT=$(commit_now)
    mkdir -p "$BIN_DIR"
    if [[ "$wants_base" == 1 ]]; then
        # Built first in the same target dir (the dependencies are shared),
        # then the binaries are copied aside before the work tree's builds.
        # keycard's own artifacts are cleaned before each build: cargo names
        # them alike wherever the sources are, and judges them fresh by file
        # times, which `git archive` sets to the commit's, so without the
        # clean a build can silently reuse the other tree's binary (the base
        # then measures the work tree, or the reverse).
        base_src=$(mktemp -d "${TMPDIR:-/tmp}/keycard-base.XXXXXX")
        git -C "$ROOT" archive "$BASE_REV" | tar -x -C "$base_src"
        while read -r name features _; do
            log "building (release) keycard-base at $(git -C "$ROOT" rev-parse --short "$BASE_REV") ($features)"
            (cd "$base_src" && CARGO_TARGET_DIR="$KEYCARD_TARGET" cargo clean --release -p keycard &&
                CARGO_TARGET_DIR="$KEYCARD_TARGET" \
                cargo build --release --features "$features" --example bench_server)
            cp "$KEYCARD_TARGET/release/examples/bench_server" "$BIN_DIR/keycard-base-$name"
        done < <(builds)
        rm -rf "$base_src"
        BUILD_COMMIT="$BUILD_COMMIT; keycard-base at $(git -C "$ROOT" rev-parse --short "$BASE_REV")"
    fi
    while read -r name features ts_features; do
        log "building (release) keycard at $BUILD_COMMIT ($features)"
        (cd "$ROOT" && CARGO_TARGET_DIR="$KEYCARD_TARGET" cargo clean --release -p keycard &&
            CARGO_TARGET_DIR="$KEYCARD_TARGET" \
            cargo build --release --features "$features" --example bench_server)
        cp "$KEYCARD_TARGET/release/examples/bench_server" "$BIN_DIR/keycard-$name"
        if [[ "$wants_base" == 1 ]] && cmp -s "$BIN_DIR/keycard-$name" "$BIN_DIR/keycard-base-$name"; then
            log "warning: keycard and keycard-base are the same binary ($name)"
        fi
        log "building (release) tower-sessions ($ts_features)"
        CARGO_TARGET_DIR="$TS_TARGET" cargo build --release --no-default-features \
            --features "$ts_features" --manifest-path "$BENCH/tower_sessions_server/Cargo.toml"
        cp "$TS_TARGET/release/tower_sessions_server" "$BIN_DIR/tower-sessions-$name"
    done < <(builds)
    for crate in loadgen bare_axum; do
        CARGO_TARGET_DIR="$BENCH/$crate/target" \
            cargo build --release --manifest-path "$BENCH/$crate/Cargo.toml"
    done
fi
bins=("$BARE_BIN" "$LOADGEN_BIN")
for store in $STORES; do
    bins+=("$(keycard_bin "$store")" "$(ts_bin "$store")")
    [[ "$wants_base" == 1 ]] && bins+=("$(base_bin "$store")")
done
for bin in "${bins[@]}"; do
    [[ -x "$bin" ]] || { log "missing $bin (run without SKIP_BUILD=1)"; exit 1; }
done

# ---------------------------------------------------------------- databases
# URL pieces: scheme://user[:password]@host[:port]/db
url_re='^([a-z]+)://([^:@/]+)(:([^@/]*))?@([^:/]+)(:([0-9]+))?/([^?]*)'

pg_admin() { # SQL...
    local sql
    for sql in "$@"; do
        PGCONNECT_TIMEOUT=5 PGOPTIONS="--client-min-messages=warning" timeout 30 psql -X -q -v ON_ERROR_STOP=1 "$PG_URL" -c "$sql" >/dev/null ||
            return 1
    done
}

mysql_admin() { # SQL
    [[ "$MYSQL_URL" =~ $url_re ]] || { log "MYSQL_URL not understood"; return 1; }
    local user=${BASH_REMATCH[2]} pass=${BASH_REMATCH[4]} host=${BASH_REMATCH[5]}
    local port=${BASH_REMATCH[7]:-3306} db=${BASH_REMATCH[8]}
    MYSQL_PWD="$pass" timeout 30 mysql --connect-timeout=5 -h "$host" -P "$port" \
        -u "$user" "$db" -e "$1"
}

# The URL of the fresh bench database beside the admin one.
pg_bench_url() { echo "${PG_URL%/*}/$BENCH_DB"; }
mysql_bench_url() { echo "${MYSQL_URL%/*}/$BENCH_DB"; }

store_available() { # store
    case "$1" in
        sqlite) return 0 ;;
        postgres) command -v psql >/dev/null && pg_admin "select 1" 2>/dev/null ;;
        mysql) command -v mysql >/dev/null && mysql_admin "select 1" >/dev/null 2>&1 ;;
        *) return 1 ;;
    esac
}

SQLITE_DIR=""
STORE_URL=""
fresh_store() { # store -> sets STORE_URL to a new, empty database
    case "$1" in
        sqlite)
            SQLITE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/keycard-bench.XXXXXX") || return 1
            STORE_URL="sqlite:$SQLITE_DIR/sessions.db"
            ;;
        postgres)
            pg_admin "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" "CREATE DATABASE $BENCH_DB" ||
                return 1
            STORE_URL=$(pg_bench_url)
            ;;
        mysql)
            mysql_admin "DROP DATABASE IF EXISTS $BENCH_DB; CREATE DATABASE $BENCH_DB" || return 1
            STORE_URL=$(mysql_bench_url)
            ;;
    esac
}

drop_store() { # store
    case "$1" in
        sqlite) [[ -n "$SQLITE_DIR" ]] && rm -rf "$SQLITE_DIR"; SQLITE_DIR="" ;;
        postgres) pg_admin "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" || true ;;
        mysql) mysql_admin "DROP DATABASE IF EXISTS $BENCH_DB" || true ;;
    esac
}

# ---------------------------------------------------------------- servers
SERVER_PID=""
stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -INT "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
cleanup() {
    stop_server
    [[ -n "$SQLITE_DIR" ]] && rm -rf "$SQLITE_DIR"
    [[ -n "${WORK:-}" ]] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

WORK=$(mktemp -d "${TMPDIR:-/tmp}/keycard-bench-logs.XXXXXX")

start_server() { # server store_url -> sets SERVER_PID, SERVER_URL
    local server=$1 store_url=$2 bin extra=() envs=()
    case "$server" in
        keycard-pool*)
            bin=$(keycard_bin "$store")
            extra+=(--sqlite-pool "${server#keycard-pool}")
            ;;
        keycard-arena*)
            # glibc's limit on malloc arenas (one a thread by default).
            bin=$(keycard_bin "$store")
            envs+=("MALLOC_ARENA_MAX=${server#keycard-arena}")
            ;;
        keycard-noedge)
            # Only with bench/experiments/edge-checks-off.diff applied.
            bin=$(keycard_bin "$store")
            envs+=("KC_NOEDGE=1")
            ;;
        keycard)
            bin=$(keycard_bin "$store")
            [[ "${KEYCARD_CACHE:-0}" == 1 ]] && extra+=(--cache)
            ;;
        keycard-nocache)
            bin=$(keycard_bin "$store")
            extra+=(--no-read-cache)
            ;;
        keycard-alone)
            bin=$(keycard_bin "$store")
            extra+=(--no-batching)
            [[ "${KEYCARD_CACHE:-0}" == 1 ]] && extra+=(--cache)
            ;;
        keycard-base)
            bin=$(base_bin "$store")
            [[ "${KEYCARD_CACHE:-0}" == 1 ]] && extra+=(--cache)
            ;;
        bare) bin=$BARE_BIN ;;
        tower-sessions | tower-sessions-pool*)
            bin=$(ts_bin "$store")
            [[ "$TS_ALWAYS_SAVE" == 1 ]] && extra+=(--always-save)
            [[ "$server" == tower-sessions-pool* ]] &&
                extra+=(--sqlite-pool "${server#tower-sessions-pool}")
            ;;
    esac
    : >"$WORK/server.out"
    env "${envs[@]}" taskset -c "$SERVER_CPU" "$bin" --addr 127.0.0.1:0 --store "$store_url" \
        --insecure-cookies "${extra[@]}" >"$WORK/server.out" 2>"$WORK/server.err" &
    SERVER_PID=$!
    SERVER_URL=""
    local line
    for _ in $(seq 300); do # 30 s
        line=$(head -n 1 "$WORK/server.out")
        if [[ "$line" == "bench_server listening on http://127.0.0.1:"* ]]; then
            SERVER_URL=${line#bench_server listening on }
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "$server did not start on $store_url:"
    tail -n 5 "$WORK/server.err" >&2 || true
    stop_server
    return 1
}

# The server's user + system CPU time so far, in clock ticks.
CLK_TCK=$(getconf CLK_TCK)
busy_ticks() { # all cores' non-idle time so far, in clock ticks
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}
cpu_ticks() { # pid
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || true
}

# ---------------------------------------------------------------- runs
mkdir -p "$RESULTS"
RUNS="$RESULTS/runs.jsonl"
: >"$RUNS"
started=$(date +%s)
limit=$(awk -v w="$WARMUP" -v d="$DURATION" 'BEGIN { printf "%d", w + d + 90 }')

for store in $STORES; do
    if ! store_available "$store"; then
        log "skipping $store: not reachable"
        continue
    fi
    for scenario in $SCENARIOS; do
        for round in $(seq "$ROUNDS"); do
            for server in $SERVERS; do
                if ! fresh_store "$store"; then
                    log "could not make a fresh $store database"
                    continue
                fi
                if ! start_server "$server" "$STORE_URL"; then
                    drop_store "$store"
                    continue
                fi
                log "$store $scenario round $round: $server"
                ticks0=$(cpu_ticks "$SERVER_PID")
                busy0=$(busy_ticks)
                wall0=$(date +%s.%N)
                line=$(timeout "$limit" taskset -c "$LOAD_CPU" "$LOADGEN_BIN" \
                    --url "$SERVER_URL" --scenario "$scenario" --clients "$CLIENTS" \
                    --duration "$DURATION" --warmup "$WARMUP" --race-incr "$RACE_INCR" \
                    2>"$WORK/loadgen.err") || {
                    log "loadgen failed: $(tail -n 3 "$WORK/loadgen.err")"
                    line=""
                }
                wall1=$(date +%s.%N)
                ticks1=$(cpu_ticks "$SERVER_PID")
                busy1=$(busy_ticks)
                cpu_pct=$(awk -v a="$ticks0" -v b="$ticks1" -v t0="$wall0" -v t1="$wall1" -v hz="$CLK_TCK" \
                    'BEGIN { if (a == "" || b == "" || t1 <= t0) print "null"; else printf "%.1f", 100 * (b - a) / hz / (t1 - t0) }')
                # Everything else that ran meanwhile (the database server,
                # other people's builds), in % of one core.
                lg_pct=$(sed -n 's/.*"loadgen_cpu_pct":\([0-9.]*\).*/\1/p' <<<"$line")
                other_pct=$(awk -v s0="$ticks0" -v s1="$ticks1" -v b0="$busy0" -v b1="$busy1" -v lg="$lg_pct" \
                    -v t0="$wall0" -v t1="$wall1" -v hz="$CLK_TCK" \
                    'BEGIN { if (s0 == "" || s1 == "" || lg == "" || t1 <= t0) { print "null"; exit }
                             v = 100 * ((b1 - b0) - (s1 - s0)) / hz / (t1 - t0) - lg
                             printf "%.1f", (v < 0 ? 0 : v) }')
                rss_kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo null)
                stop_server
                drop_store "$store"
                if [[ "$line" == "{"*"}" ]]; then
                    echo "${line%\}},\"server\":\"$server\",\"store\":\"$store\",\"round\":$round,\"rss_kb\":${rss_kb:-null},\"server_cpu_pct\":$cpu_pct,\"other_cpu_pct\":$other_pct}" >>"$RUNS"
                fi
            done
        done
    done
done
elapsed=$(($(date +%s) - started))
log "runs took ${elapsed}s"

# ---------------------------------------------------------------- report
python3 "$BENCH/report.py" --runs "$RUNS" --out "$RESULTS/latest.json" \
    --command "${BENCH_COMMAND:-DURATION=$DURATION WARMUP=$WARMUP CLIENTS=$CLIENTS ROUNDS=$ROUNDS RACE_INCR=$RACE_INCR bench/run.sh}" \
    --duration "$DURATION" --warmup "$WARMUP" --clients "$CLIENTS" --rounds "$ROUNDS" \
    --ts-always-save "$TS_ALWAYS_SAVE" --race-incr "$RACE_INCR" \
    --elapsed "$elapsed" --commit "$BUILD_COMMIT" | tee "$RESULTS/latest.md"

if [[ "$CHART" == 1 ]]; then
    python3 "$BENCH/chart.py" "$RESULTS/latest.json" "$RESULTS/ratios.png" ||
        log "chart failed (the table above stands)"
fi
