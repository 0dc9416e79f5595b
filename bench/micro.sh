#!/usr/bin/env bash
# Criterion micro-benchmarks of keycard's per-request fixed costs
# (benches/fixed_costs.rs), then their medians as a Markdown table.
#
#   bench/micro.sh                    # the work tree; 1 s warm-up, 3 s measurement each
#   REV=602aa59 bench/micro.sh        # a commit, exported with git archive to a temp dir
#   MEASURE=5 WARM=3 bench/micro.sh   # criterion's defaults
#
# Builds into bench/target/keycard, beside bench/run.sh's keycard build, so
# the dependencies are compiled once for both.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WARM=${WARM:-1}
MEASURE=${MEASURE:-3}
REV=${REV:-}
export CARGO_TARGET_DIR="$ROOT/bench/target/keycard"
SRC=$ROOT
if [[ -n "$REV" ]]; then
    SRC=$(mktemp -d "${TMPDIR:-/tmp}/keycard-micro.XXXXXX")
    trap 'rm -rf "$SRC"' EXIT
    git -C "$ROOT" archive "$REV" | tar -x -C "$SRC"
    echo "micro.sh: keycard at $(git -C "$ROOT" rev-parse --short "$REV")" >&2
else
    dirty=$(git -C "$ROOT" status --porcelain --untracked-files=all -- src benches Cargo.toml Cargo.lock)
    echo "micro.sh: keycard at $(git -C "$ROOT" rev-parse --short HEAD)${dirty:++dirty}" >&2
fi
# Criterion keeps its history under the target dir: start from none, so
# that what is printed is this run only.
rm -rf "$CARGO_TARGET_DIR/criterion"
(cd "$SRC" && cargo bench --all-features --bench fixed_costs -- \
    --warm-up-time "$WARM" --measurement-time "$MEASURE" "$@") >&2
python3 "$ROOT/bench/criterion_medians.py" "$CARGO_TARGET_DIR/criterion"
