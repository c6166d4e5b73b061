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
import json, statistics, subprocess, sys, time
import duckdb

symbi, data, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
cmd = [symbi, "run", "benches/plaintext_1m.symbi", "--input", f"patients={data}",
       "--format", "json", "--workers", "2"]

def time_symbi():
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True).stdout
    return time.perf_counter() - t, json.loads(out)["value"]

con = duckdb.connect()
con.execute("SET threads TO 2")
query = f"""
SELECT diagnosis, count(*) AS patients,
       coalesce(sum(cost_cents) FILTER (WHERE age >= 65), 0) AS senior_cost_cents
FROM read_csv('{data}', header = true, columns = {{
    'patient_id': 'VARCHAR', 'name': 'VARCHAR', 'ssn': 'VARCHAR', 'email': 'VARCHAR',
    'age': 'BIGINT', 'sex': 'VARCHAR', 'zip': 'VARCHAR', 'diagnosis': 'VARCHAR',
    'cost_cents': 'BIGINT', 'visits': 'BIGINT'}})
GROUP BY diagnosis ORDER BY diagnosis"""

def time_duckdb():
    t = time.perf_counter()
    rows = con.execute(query).fetchall()
    return time.perf_counter() - t, [
        {"diagnosis": d, "patients": n, "senior_cost_cents": int(s)} for d, n, s in rows]

# One warm-up each (page cache, lazy initialization), then interleaved runs.
_, ours = time_symbi()
_, theirs = time_duckdb()
ours_sorted = sorted(ours, key=lambda r: r["diagnosis"].encode())
theirs_sorted = sorted(theirs, key=lambda r: r["diagnosis"].encode())
if ours_sorted != theirs_sorted:
    sys.exit(f"results differ:\nsymbiont {ours_sorted}\nduckdb   {theirs_sorted}")

s_times, d_times = [], []
for _ in range(runs):
    s_times.append(time_symbi()[0])
    d_times.append(time_duckdb()[0])
s, d = statistics.median(s_times), statistics.median(d_times)
print(f"rows: {sum(r['patients'] for r in ours)}, groups: {len(ours)}, results identical")
print(f"symbiont (symbi run, 2 workers, whole process incl. audit) median {s*1000:8.1f} ms  runs {[round(x*1000) for x in s_times]}")
print(f"duckdb {duckdb.__version__} (in-process, 2 threads)       median {d*1000:8.1f} ms  runs {[round(x*1000) for x in d_times]}")
print(f"ratio symbiont / duckdb: {s/d:.2f} (target <= 2.00: {'met' if s/d <= 2 else 'NOT met'})")
PY
