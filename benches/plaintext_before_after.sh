#!/usr/bin/env bash
# The plaintext pipeline of benches/plaintext_vs_duckdb.sh, timed for two
# builds of symbi in the same run: REV (built in a temporary git worktree)
# and the working tree, interleaved with DuckDB on the same file and query,
# so that a change to the engine can be shown not to slow it down. Prints
# each one's median wall time, the ratios to DuckDB, and new / old. Wall
# times on this shared 2-core host move by 5-10 % between runs, so it also
# counts the instructions each build executes for the same job over
# 200,000 rows on one worker (valgrind's callgrind: the same count for the
# same binary and input, whatever else the machine does).
#
#   benches/plaintext_before_after.sh REV [ROWS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
rev="${1:?usage: benches/plaintext_before_after.sh REV [ROWS] [RUNS]}"
rows="${2:-1000000}"
runs="${3:-7}"
target="${CARGO_TARGET_DIR:-$PWD/target}"

python3 -c "import duckdb" 2>/dev/null || pip install --quiet duckdb
work="$(mktemp -d)"
trap 'git worktree remove --force "$work/old" 2>/dev/null || true; rm -rf "$work"' EXIT
# REV's binary is built once and kept by its commit id; both builds share
# the target directory's dependencies.
commit="$(git rev-parse --verify "$rev^{commit}")"
old="$target/bench-bins/symbi-$commit"
if [ ! -x "$old" ]; then
    git worktree add --quiet --detach "$work/old" "$commit"
    (cd "$work/old" && CARGO_TARGET_DIR="$target" cargo build --release --quiet --bin symbi)
    mkdir -p "$(dirname "$old")"
    cp "$target/release/symbi" "$old"
fi
# REV's build left its crates' artifacts newer than the working tree's
# sources, which cargo would then take as fresh: touch them first.
find . -path ./target -prune -o -name '*.rs' -print0 | xargs -0 touch
CARGO_TARGET_DIR="$target" cargo build --release --quiet --bin symbi
cp "$target/release/symbi" "$work/symbi-new"

data="$target/bench-data/patients_${rows}_seed42.csv"
if [ ! -f "$data" ]; then
    mkdir -p "$(dirname "$data")"
    "$work/symbi-new" datasets generate patients --rows "$rows" --seed 42 --out "$data"
fi
export XDG_STATE_HOME="$work/xdg-state" XDG_DATA_HOME="$work/xdg-data"

python3 - "$old" "$work/symbi-new" "$data" "$runs" "$rev" <<'PY'
import statistics, sys
sys.path.insert(0, "benches")
from plaintext_duckdb import DuckDb, VERSION, time_symbi

old, new, data, runs, rev = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
duck = DuckDb(data)

def symbi(binary):
    return time_symbi(binary, data)

def duckdb_time():
    return duck.time()[0]

# Warm-up (page cache), and the two builds must agree.
_, a = symbi(old)
_, b = symbi(new)
duckdb_time()
if a != b:
    sys.exit(f"the builds disagree:\n{rev}: {a}\nnew: {b}")
times = {"old": [], "new": [], "duckdb": []}
for _ in range(runs):
    times["old"].append(symbi(old)[0])
    times["new"].append(symbi(new)[0])
    times["duckdb"].append(duckdb_time())
med = {k: statistics.median(v) for k, v in times.items()}
print(f"rows {sum(r['patients'] for r in b)}, results identical in both builds")
for k, label in [("old", f"symbi at {rev}"), ("new", "symbi, working tree"), ("duckdb", f"duckdb {VERSION}")]:
    print(f"{label:28} median {med[k]*1000:8.1f} ms  runs {[round(x*1000) for x in times[k]]}")
print(f"vs duckdb: old {med['old']/med['duckdb']:.2f}x, new {med['new']/med['duckdb']:.2f}x; new / old {med['new']/med['old']:.3f}")
PY

if command -v valgrind >/dev/null; then
    small="$target/bench-data/patients_200000_seed42.csv"
    [ -f "$small" ] || "$work/symbi-new" datasets generate patients --rows 200000 --seed 42 --out "$small"
    count() {
        valgrind --tool=callgrind --callgrind-out-file=/dev/null "$1" run benches/plaintext_1m.symbi \
            --input "patients=$small" --format json --workers 1 2>&1 >/dev/null |
            sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
    }
    a="$(count "$old")"
    b="$(count "$work/symbi-new")"
    python3 -c "import sys; a, b = int(sys.argv[1]), int(sys.argv[2]); print(f'instructions over 200,000 rows, 1 worker: {sys.argv[3]} {a:,}, working tree {b:,}; new / old {b/a:.4f}')" "$a" "$b" "$rev"
fi
