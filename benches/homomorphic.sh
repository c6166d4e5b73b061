#!/usr/bin/env bash
# An encrypted SUM of 100,000 32-bit values, side by side in one run:
#
# (a) the naive construction with tfhe's integer API: `FheUint32` `+` in a
#     loop, and `iter().sum()`, each timed once on NAIVE values (default
#     1,000) and extrapolated linearly to 100,000 (both are n - 1
#     additions); also the integer API's cost of one encrypted comparison
#     (`ge` against a constant) and one `max`, and the programmable path's
#     seconds per record (a counted comparison, a filtered max);
# (b) Symbiont's additive path end to end: encrypt under the public key
#     (both cores), add the lists, reduce, decrypt — criterion's median of
#     `additive/sum_100k`.
#
# Targets: (b) >= 100,000 values/s on 2 cores and >= 1,000x faster than (a).
# Also reported: ciphertext bytes per stored value for each.
#
#   benches/homomorphic.sh [NAIVE]      (NAIVE=1000 takes about 6 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
naive="${1:-1000}"
target="${CARGO_TARGET_DIR:-target}"
out="$target/bench-data"
mkdir -p "$out"

echo "--- cargo bench --bench homomorphic (additive path, 100,000 values)"
cargo bench --quiet --bench homomorphic -- --noplot additive 2>/dev/null | grep -E "^additive|time:|thrpt:" || true

echo "--- naive FheUint32 sum over $naive values (tfhe integer API, 2 cores)"
SYMBI_BENCH_NAIVE="$naive" SYMBI_BENCH_OUT="$out/homomorphic_naive.json" \
    cargo bench --quiet --bench homomorphic 2>&1 | grep -E "^naive" || true

python3 - "$target/criterion/additive/sum_100k/new/estimates.json" "$out/homomorphic_naive.json" <<'PY'
import json, sys
est = json.load(open(sys.argv[1]))
naive = json.load(open(sys.argv[2]))
values = 100_000
additive = est["median"]["point_estimate"] / 1e9
scale = (values - 1) / (naive["n"] - 1)
loop, total = naive["plus_loop_s"] * scale, naive["iter_sum_s"] * scale
print(f"(b) additive path, encrypt+add+reduce+decrypt of {values:,}: {additive:.3f} s median = {values/additive:,.0f} values/s (target >= 100,000)")
print(f"(a) naive `+` loop: {naive['plus_loop_s']:.1f} s for {naive['n']:,} -> {loop:,.0f} s for {values:,} ({values/loop:.2f} values/s): additive path {loop/additive:,.0f}x faster")
print(f"(a) naive iter().sum(): {naive['iter_sum_s']:.1f} s for {naive['n']:,} -> {total:,.0f} s for {values:,}: additive path {total/additive:,.0f}x faster (target >= 1,000x)")
print(f"integer API: FheUint32 ge against a constant {naive['ge_s_median']:.3f} s, max of two {naive['max_s_median']:.3f} s (median of 5, 2 cores)")
p = naive["programmable"]
print(f"programmable path over {p['records']} stored records (FheInt64): count(x >= c) {p['compare_count_s_per_record']:.3f} s per record (= per comparison), filtered max {p['filtered_max_s_per_record']:.3f} s per record")
print(f"bytes per stored value: additive path 64 (a sum's four residues, 16 each); programmable path {p['bytes_per_stored_value']:,.0f} (FheInt64 in a compact list); a compressed FheUint32 {naive['fhe_uint32_compressed_bytes']:,}")
PY
