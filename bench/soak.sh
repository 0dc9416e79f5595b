#!/usr/bin/env bash
# Soak test: DURATION seconds (10 minutes) of mixed traffic against
# keycard's bench_server with a short idle timeout and a frequent
# background purge, so that sessions keep expiring and being purged while
# the load runs. Measures stability, not speed.
#
#   bench/soak.sh                          # SQLite, 600 s in 20 s chunks
#   DURATION=120 bench/soak.sh             # a quick one
#   STORE=postgres bench/soak.sh           # on a fresh PostgreSQL database
#   SKIP_BUILD=1 bench/soak.sh             # reuse the release binaries
#
# Builds (release; SKIP_BUILD=1 to reuse) bench_server with the default
# features and the three stores (KEYCARD_FEATURES)
# into bench/target/keycard, and bench/loadgen, as run.sh does. Starts
# bench_server on a fresh store with --idle-timeout IDLE_TIMEOUT and
# --purge-interval PURGE_INTERVAL, then runs the load generator's `mixed`
# scenario (90 % reads, 10 % increments) in consecutive CHUNK-second runs.
# Every run has CLIENTS new virtual users, so every chunk leaves CLIENTS
# sessions behind that expire IDLE_TIMEOUT seconds later and are then
# purged. After each chunk it samples the server's VmRSS and VmHWM
# (/proc/PID/status), the chunk's errors, p50/p99 and req/s (the load
# generator's JSON line), the server's CPU use, the rows of the sessions
# table and how many of them are past the idle timeout (awaiting the
# purge), and the purges the server logged. With DRAIN=1 it then stops the
# traffic and waits until the purge has emptied the table.
#
# Output: a Markdown table (one row per sample) and a summary on stdout
# (also bench/results/soak.md), every chunk's JSON line in
# bench/results/soak.jsonl. Exit status 1 if any request failed, RSS grew
# by more than MAX_RSS_GROWTH % from the end of warm-up (the first sample at
# or after RSS_WARMUP seconds) to the end, the rows exceeded their bound
# CLIENTS * (ceil((IDLE_TIMEOUT + PURGE_INTERVAL) / CHUNK) + 1), or (DRAIN=1)
# the table did not empty; 2 for bad settings.
#
# Traffic stays on 127.0.0.1 (the load generator refuses anything else,
# and PG_URL must name a loopback host); every step has a time limit; the
# server is stopped and the store dropped on exit.
#
# Environment (defaults in brackets):
#   DURATION [600]  CHUNK [20]  CLIENTS [32]  RSS_WARMUP [60]
#   IDLE_TIMEOUT [60]  PURGE_INTERVAL [30]  MAX_RSS_GROWTH [10]  DRAIN [1]
#   STORE [sqlite]  (or postgres)
#   PG_URL [postgres://postgres@127.0.0.1:5432/test]  (an existing database
#          to connect to; the soak uses a fresh database $BENCH_DB beside it)
#   BENCH_DB [keycard_soak]  (dropped and re-created; never `test`)
#   SERVER_CPU [0]  LOAD_CPU [1]  SKIP_BUILD [0]
set -euo pipefail

# keycard is built as an application builds it: its default features and
# the stores bench_server serves, none of the optional extras.
KEYCARD_FEATURES=${KEYCARD_FEATURES:-"sqlite postgres mysql"}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
RESULTS="$BENCH/results"

DURATION=${DURATION:-600}
CHUNK=${CHUNK:-20}
CLIENTS=${CLIENTS:-32}
RSS_WARMUP=${RSS_WARMUP:-60}
IDLE_TIMEOUT=${IDLE_TIMEOUT:-60}
PURGE_INTERVAL=${PURGE_INTERVAL:-30}
MAX_RSS_GROWTH=${MAX_RSS_GROWTH:-10}
DRAIN=${DRAIN:-1}
STORE=${STORE:-sqlite}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
BENCH_DB=${BENCH_DB:-keycard_soak}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}

log() { echo "soak.sh: $*" >&2; }
die() { log "$*"; exit 2; }

for knob in DURATION CHUNK CLIENTS RSS_WARMUP IDLE_TIMEOUT PURGE_INTERVAL MAX_RSS_GROWTH; do
    [[ "${!knob}" =~ ^[1-9][0-9]*$ ]] || die "$knob must be a positive integer"
done
((CHUNK >= 3)) || die "CHUNK must be at least 3 seconds"
((CLIENTS <= 32)) || die "CLIENTS must be at most 32"
((DURATION <= 86400)) || die "DURATION must be at most a day"
((DURATION >= CHUNK)) || die "DURATION must be at least one CHUNK"
case "$STORE" in
    sqlite | postgres) ;;
    *) die "STORE must be sqlite or postgres" ;;
esac
if [[ "$STORE" == postgres ]]; then
    [[ "$BENCH_DB" =~ ^[a-z_][a-z0-9_]*$ ]] || die "BENCH_DB must be a plain lower-case identifier"
    [[ "$BENCH_DB" != test ]] || die "BENCH_DB must not be the shared 'test' database"
    [[ "$PG_URL" =~ ^postgres(ql)?://([^@/]*@)?(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?/ ]] ||
        die "PG_URL must name a loopback host (127.0.0.1, localhost or [::1])"
    command -v psql >/dev/null || die "STORE=postgres needs psql"
fi

KEYCARD_BIN="$BENCH/target/keycard/release/examples/bench_server"
LOADGEN_BIN="$BENCH/loadgen/target/release/loadgen"

# ---------------------------------------------------------------- build
# What bench_server is built from: HEAD, "+dirty" if the files that go
# into it differ from HEAD at build time (as run.sh reports it).
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
    log "building (release) keycard at $BUILD_COMMIT"
    (cd "$ROOT" && CARGO_TARGET_DIR="$BENCH/target/keycard" \
        timeout 3600 cargo build --release --features "$KEYCARD_FEATURES" --example bench_server)
    CARGO_TARGET_DIR="$BENCH/loadgen/target" \
        timeout 3600 cargo build --release --manifest-path "$BENCH/loadgen/Cargo.toml"
fi
for bin in "$KEYCARD_BIN" "$LOADGEN_BIN"; do
    [[ -x "$bin" ]] || { log "missing $bin (run without SKIP_BUILD=1)"; exit 1; }
done

# ---------------------------------------------------------------- store
pg_admin() { # SQL...
    local sql
    for sql in "$@"; do
        PGCONNECT_TIMEOUT=5 PGOPTIONS="--client-min-messages=warning" \
            timeout 30 psql -X -q -v ON_ERROR_STOP=1 "$PG_URL" -c "$sql" >/dev/null || return 1
    done
}
pg_bench_url() { echo "${PG_URL%/*}/$BENCH_DB"; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/keycard-soak.XXXXXX")
SERVER_PID=""
STORE_READY=0
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
    if [[ "$STORE" == postgres && "$STORE_READY" == 1 ]]; then
        pg_admin "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

case "$STORE" in
    sqlite)
        DB_FILE="$WORK/sessions.db"
        STORE_URL="sqlite:$DB_FILE"
        ;;
    postgres)
        pg_admin "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" "CREATE DATABASE $BENCH_DB" ||
            { log "could not make a fresh database $BENCH_DB beside $PG_URL"; exit 1; }
        STORE_READY=1
        STORE_URL=$(pg_bench_url)
        ;;
esac

# "ROWS IDLE": the sessions table's rows, and how many of them were last
# used more than IDLE_TIMEOUT seconds ago (expired, awaiting the purge);
# "? ?" if the count failed.
count_rows() {
    local out=""
    case "$STORE" in
        sqlite)
            local sql="SELECT count(*), coalesce(sum(last_activity < (CAST(strftime('%s','now') AS INTEGER) - $IDLE_TIMEOUT) * 1000000), 0) FROM keycard_sessions"
            if command -v sqlite3 >/dev/null; then
                out=$(timeout 20 sqlite3 -separator ' ' -cmd '.timeout 10000' "$DB_FILE" "$sql" 2>/dev/null) || out=""
            else
                out=$(timeout 20 python3 -c '
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
print(*db.execute(sys.argv[2]).fetchone())
' "$DB_FILE" "$sql" 2>/dev/null) || out=""
            fi
            ;;
        postgres)
            out=$(PGCONNECT_TIMEOUT=5 timeout 20 psql -X -q -A -t -F ' ' "$STORE_URL" -c \
                "SELECT count(*), count(*) FILTER (WHERE last_activity < now() - interval '$IDLE_TIMEOUT seconds') FROM keycard_sessions" \
                2>/dev/null) || out=""
            ;;
    esac
    [[ "$out" =~ ^[0-9]+\ [0-9]+$ ]] && echo "$out" || echo "? ?"
}

# ---------------------------------------------------------------- server
: >"$WORK/server.out"
# Only the purge task's own lines at info level: how often it ran, how
# many rows it took.
RUST_LOG="warn,keycard::layer::purge=info" NO_COLOR=1 \
    taskset -c "$SERVER_CPU" "$KEYCARD_BIN" --addr 127.0.0.1:0 --store "$STORE_URL" \
    --insecure-cookies --idle-timeout "$IDLE_TIMEOUT" --purge-interval "$PURGE_INTERVAL" \
    >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
SERVER_URL=""
for _ in $(seq 300); do # 30 s
    line=$(head -n 1 "$WORK/server.out")
    if [[ "$line" == "bench_server listening on http://127.0.0.1:"* ]]; then
        SERVER_URL=${line#bench_server listening on }
        break
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
if [[ -z "$SERVER_URL" ]]; then
    log "bench_server did not start on $STORE_URL:"
    tail -n 5 "$WORK/server.err" >&2 || true
    exit 1
fi

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo ""; }
status_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo ""; }
# "RUNS ROWS": the purges that deleted something so far, and their rows.
purges() {
    sed 's/\x1b\[[0-9;]*m//g' "$WORK/server.err" |
        awk '/expired sessions purged/ { n++; if (match($0, /purged=[0-9]+/)) s += substr($0, RSTART + 7, RLENGTH - 7) }
             END { print n + 0, s + 0 }'
}

# Samples: elapsed rss_kb hwm_kb rps p50_us p99_us errors rows idle cpu_pct purge_runs purged phase
SAMPLES="$WORK/samples.tsv"
: >"$SAMPLES"
mkdir -p "$RESULTS"
JSONL="$RESULTS/soak.jsonl"
: >"$JSONL"
sample() { # elapsed rps p50 p99 errors cpu_pct phase
    local rows purged
    rows=$(count_rows)
    purged=$(purges)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" \
        "$(status_kb VmRSS)" "$(status_kb VmHWM)" "$2" "$3" "$4" "$5" \
        ${rows} "$6" ${purged} "$7" >>"$SAMPLES"
}

# ---------------------------------------------------------------- traffic
log "bench_server (pid $SERVER_PID) on $STORE at $SERVER_URL: idle timeout ${IDLE_TIMEOUT}s, purge every ${PURGE_INTERVAL}s"
log "mixed traffic, $CLIENTS clients, ${DURATION}s in ${CHUNK}s chunks"
chunks=$(((DURATION + CHUNK - 1) / CHUNK))
lg_duration=$((CHUNK - 1)) # after 1 s of the load generator's own warm-up
started=$(date +%s.%N)
elapsed() { awk -v t0="$started" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.0f", t1 - t0 }'; }
sample 0 - - - 0 - start
server_died=0
for i in $(seq "$chunks"); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        log "bench_server died"
        server_died=1
        break
    fi
    ticks0=$(cpu_ticks "$SERVER_PID")
    wall0=$(date +%s.%N)
    line=$(timeout $((CHUNK + 60)) taskset -c "$LOAD_CPU" "$LOADGEN_BIN" \
        --url "$SERVER_URL" --scenario mixed --clients "$CLIENTS" \
        --duration "$lg_duration" --warmup 1 2>"$WORK/loadgen.err") || {
        log "chunk $i: loadgen failed: $(tail -n 3 "$WORK/loadgen.err")"
        line=""
    }
    wall1=$(date +%s.%N)
    ticks1=$(cpu_ticks "$SERVER_PID")
    cpu_pct=$(awk -v a="$ticks0" -v b="$ticks1" -v t0="$wall0" -v t1="$wall1" -v hz="$CLK_TCK" \
        'BEGIN { if (a == "" || b == "" || t1 <= t0) print "-"; else printf "%.0f", 100 * (b - a) / hz / (t1 - t0) }')
    if [[ "$line" == "{"*"}" ]]; then
        echo "${line%\}},\"chunk\":$i,\"store\":\"$STORE\"}" >>"$JSONL"
        field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" <<<"$line"; }
        sample "$(elapsed)" "$(field rps)" "$(field p50_us)" "$(field p99_us)" "$(field errors)" "$cpu_pct" run
        errs=$(field errors)
        if [[ "$errs" != 0 ]]; then
            log "chunk $i: $errs errors: $(sed -n 's/.*"error_samples":\(\[.*\]\).*/\1/p' <<<"$line")"
        fi
    else
        # A chunk without a result counts as one error.
        sample "$(elapsed)" - - - 1 "$cpu_pct" run
    fi
done
traffic_end=$(elapsed)

# ---------------------------------------------------------------- drain
# No more traffic: the last chunk's sessions expire IDLE_TIMEOUT seconds
# after their last request and go at the next purge.
drained="-"
if [[ "$DRAIN" == 1 && "$server_died" == 0 ]]; then
    limit=$((IDLE_TIMEOUT + 2 * PURGE_INTERVAL + 15))
    log "traffic stopped; waiting up to ${limit}s for the purge to empty the table"
    waited=0
    while ((waited < limit)); do
        sleep 5
        waited=$((waited + 5))
        read -r rows _ <<<"$(count_rows)"
        if [[ "$rows" == 0 ]]; then
            drained=$waited
            break
        fi
    done
    sample "$(elapsed)" - - - 0 - drain
    if [[ "$drained" == - ]]; then
        drained="not empty after ${limit}s"
    fi
fi
kill -0 "$SERVER_PID" 2>/dev/null || server_died=1

# ---------------------------------------------------------------- report
rows_bound=$((CLIENTS * ((IDLE_TIMEOUT + PURGE_INTERVAL + CHUNK - 1) / CHUNK + 1)))
command_line="${SOAK_COMMAND:-bench/soak.sh}"
{
    echo "Soak: \`$command_line\` — $STORE, mixed scenario, $CLIENTS clients, ${DURATION}s in ${CHUNK}s chunks,"
    echo "\`--idle-timeout $IDLE_TIMEOUT --purge-interval $PURGE_INTERVAL\`; built from $BUILD_COMMIT; $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    awk -F '\t' '
        function mib(kb) { return kb == "" ? "-" : sprintf("%.1f", kb / 1024) }
        function ms(us) { return us == "-" ? "-" : sprintf("%.2f", us / 1000) }
        BEGIN {
            print "| elapsed s | VmRSS MiB | VmHWM MiB | req/s | p50 ms | p99 ms | errors | rows | rows past idle | server CPU % | purges (rows) |"
            print "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        }
        {
            label = $1; if ($13 == "drain") label = $1 " (drained)"; if ($13 == "start") label = "0 (start)"
            printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s (%s) |\n",
                label, mib($2), mib($3), ($4 == "-" ? "-" : sprintf("%.0f", $4)), ms($5), ms($6), $7, $8, $9, $10, $11, $12
        }' "$SAMPLES"
    echo
} >"$WORK/report.md"

# Summary figures, over the traffic samples.
read -r base_at base_rss end_rss max_rss end_hwm errors worst_p99 max_rows end_rows purge_runs purged rps_sum <<<"$(
    awk -F '\t' -v warm="$RSS_WARMUP" '
        $13 == "run" {
            if (base == "" && $1 >= warm) { base = $2; base_at = $1 }
            if (base != "" && $2 > maxr) maxr = $2
            endr = $2; endh = $3
            errors += $7
            if ($6 != "-" && $6 > p99) p99 = $6
            if ($8 != "?" && $8 > rows) rows = $8
            endrows = $8; runs = $11; purged = $12
            if ($4 != "-") req += $4 * 1
        }
        END {
            printf "%s %s %s %s %s %d %d %d %s %d %d %d\n", (base_at == "" ? "-" : base_at), (base == "" ? 0 : base),
                (endr == "" ? 0 : endr), maxr + 0, (endh == "" ? 0 : endh), errors, p99, rows, (endrows == "" ? "?" : endrows), runs, purged, req
        }' "$SAMPLES"
)"
growth=$(awk -v a="$base_rss" -v b="$end_rss" 'BEGIN { if (a > 0) printf "%.1f", 100 * (b - a) / a; else print "nan" }')
max_growth=$(awk -v a="$base_rss" -v b="$max_rss" 'BEGIN { if (a > 0) printf "%.1f", 100 * (b - a) / a; else print "nan" }')
mean_rps=$(awk -v s="$rps_sum" -v n="$chunks" 'BEGIN { printf "%.0f", s / n }')
failures=()
((errors == 0)) || failures+=("$errors errors")
[[ "$server_died" == 0 ]] || failures+=("the server died")
awk -v g="$growth" -v m="$MAX_RSS_GROWTH" 'BEGIN { exit !(g != "nan" && g <= m) }' ||
    failures+=("RSS grew ${growth} % (> ${MAX_RSS_GROWTH} %)")
((max_rows <= rows_bound)) || failures+=("rows reached $max_rows (bound $rows_bound)")
if [[ "$DRAIN" == 1 && ! "$drained" =~ ^[0-9]+$ ]]; then
    failures+=("the table did not empty after the traffic ($drained)")
fi
{
    echo "Summary:"
    echo
    echo "- RSS (VmRSS): $(awk -v k="$base_rss" 'BEGIN { printf "%.1f", k / 1024 }') MiB at ${base_at} s (end of warm-up) → $(awk -v k="$end_rss" 'BEGIN { printf "%.1f", k / 1024 }') MiB at ${traffic_end} s: **${growth} %** (limit ${MAX_RSS_GROWTH} %); highest after warm-up ${max_growth} %; peak (VmHWM) $(awk -v k="$end_hwm" 'BEGIN { printf "%.1f", k / 1024 }') MiB"
    echo "- errors: **$errors** over $chunks chunks$([[ "$server_died" == 1 ]] && echo ", the server died")"
    echo "- worst chunk p99: **$(awk -v u="$worst_p99" 'BEGIN { printf "%.2f", u / 1000 }') ms**; mean $mean_rps req/s"
    echo "- rows: max **$max_rows** (bound $rows_bound = $CLIENTS × (⌈($IDLE_TIMEOUT + $PURGE_INTERVAL) / $CHUNK⌉ + 1)), $end_rows at the end of the traffic; $((chunks * CLIENTS)) sessions created, $purged purged in $purge_runs purges$([[ "$DRAIN" == 1 ]] && echo "; table empty ${drained} s after the traffic stopped")"
    if ((${#failures[@]} == 0)); then
        echo "- verdict: **pass**"
    else
        echo "- verdict: **FAIL**: $(IFS=';'; echo "${failures[*]}")"
    fi
} >>"$WORK/report.md"
cp "$WORK/report.md" "$RESULTS/soak.md"
cat "$WORK/report.md"
((${#failures[@]} == 0)) || exit 1
