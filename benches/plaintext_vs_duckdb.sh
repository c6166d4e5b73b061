#!/usr/bin/env bash
# Symbiont's plaintext pipeline against DuckDB, side by side, same file,
# same query: over 1M generated patient rows (CSV), per diagnosis (9 keys)
# a count and the sum of cost_cents over patients aged 65 or more
# (benches/plaintext_1m.symbi). Prints the median wall times of
# RUNS runs each and the ratio. Target: Symbiont <= 2x DuckDB.
#
#   benches/plaintext_vs_duckdb.sh [ROWS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-1000000}"
runs="${2:-7}"
target="${CARGO_TARGET_DIR:-target}"

python3 -c "import duckdb" 2>/dev/null || pip install --quiet duckdb
cargo build --release --quiet
data="$target/bench-data/patients_${rows}_seed42.csv"
if [ ! -f "$data" ]; then
    mkdir -p "$(dirname "$data")"
    "$target/release/symbi" datasets generate patients --rows "$rows" --seed 42 --out "$data"
fi

# The jobs' audit trail (part of every run, and of its time) goes here.
export XDG_STATE_HOME="$target/bench-data/xdg-state" XDG_DATA_HOME="$target/bench-data/xdg-data"

python3 - "$target/release/symbi" "$data" "$runs" <<'PY'
import statistics, sys
sys.path.insert(0, "benches")
from plaintext_duckdb import DuckDb, VERSION, time_symbi

symbi, data, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
duck = DuckDb(data)

# One warm-up each (page cache, lazy initialization), then interleaved runs.
_, ours = time_symbi(symbi, data)
_, theirs = duck.time()
ours_sorted = sorted(ours, key=lambda r: r["diagnosis"].encode())
theirs_sorted = sorted(theirs, key=lambda r: r["diagnosis"].encode())
if ours_sorted != theirs_sorted:
    sys.exit(f"results differ:\nsymbiont {ours_sorted}\nduckdb   {theirs_sorted}")

s_times, d_times = [], []
for _ in range(runs):
    s_times.append(time_symbi(symbi, data)[0])
    d_times.append(duck.time()[0])
s, d = statistics.median(s_times), statistics.median(d_times)
print(f"rows: {sum(r['patients'] for r in ours)}, groups: {len(ours)}, results identical")
print(f"symbiont (symbi run, 2 workers, whole process incl. audit) median {s*1000:8.1f} ms  runs {[round(x*1000) for x in s_times]}")
print(f"duckdb {VERSION} (in-process, 2 threads)       median {d*1000:8.1f} ms  runs {[round(x*1000) for x in d_times]}")
print(f"ratio symbiont / duckdb: {s/d:.2f} (target <= 2.00: {'met' if s/d <= 2 else 'NOT met'})")
PY
