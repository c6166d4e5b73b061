#!/usr/bin/env bash
# Peak memory of `clinic_costs` over generated patients at two sizes: the
# sealed batches stream to the sandboxed stage while the dataflow runs,
# so memory should stay flat as the input grows (target: the larger run's
# peak at most 1.5x the smaller's, for 10x the rows).
#
# Each run is `/usr/bin/time -f %M` over `symbi run` (2 workers, default
# stage limits): the peak resident set of the largest process of the job,
# the job's own or a stage's (the sandboxes are its descendants).
#
#   benches/stream_memory.sh [SMALL_ROWS] [LARGE_ROWS]
set -euo pipefail
cd "$(dirname "$0")/.."
small="${1:-1000000}"
large="${2:-10000000}"
target="${CARGO_TARGET_DIR:-target}"
out="$target/bench-data"
mkdir -p "$out"
cargo build --release --quiet
symbi="$target/release/symbi"
# The jobs' audit trail and keystore go here.
export XDG_STATE_HOME="$out/xdg-state" XDG_DATA_HOME="$out/xdg-data"

declare -A peak
for rows in "$small" "$large"; do
    data="$out/patients_${rows}_seed42.csv"
    [ -f "$data" ] || "$symbi" datasets generate patients --rows "$rows" --seed 42 --out "$data"
    /usr/bin/time -o "$out/time.txt" -f "%M %e" "$symbi" run examples/clinic_costs.symbi \
        --input "patients=$data" --workers 2 >"$out/clinic_costs_$rows.json"
    read -r kib secs <"$out/time.txt"
    peak[$rows]=$kib
    echo "clinic_costs over $rows rows: peak RSS $((kib / 1024)) MiB, $secs s"
done
python3 -c "import sys; print(f'ratio: {int(sys.argv[2]) / int(sys.argv[1]):.2f}x the peak for {int(sys.argv[4]) // int(sys.argv[3])}x the rows (target <= 1.5x)')" \
    "${peak[$small]}" "${peak[$large]}" "$small" "$large"
