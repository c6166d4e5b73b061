#!/usr/bin/env bash
# Attested records per second for a sum over 1,000,000 records, side by
# side in one run:
#
# (a) the naive construction — per value a width-3 Poseidon hash chaining
#     the commitment and a 32-bit range check — proved once on NAIVE
#     records (default 1,000) and extrapolated linearly;
# (b) Symbiont's lane-sum circuit: 1,000,000 records committed and
#     proved in chunks of 12,276, one after another (memory bounded by one
#     chunk), timed whole, with its peak memory;
#     criterion's median of one chunk alone and of one verification.
#
# and (c) `symbi verify` of the clinic_costs bundle (one proof of the
# general circuit, the signed commitment, the audit checkpoint and
# inclusion proofs): the whole process, median of 20 runs.
#
# Targets: (b) >= 5,000 records/s and >= 50x (a); verification <= 5 ms
# per proof and <= 50 ms per bundle.
#
#   benches/attestation.sh [NAIVE]
set -euo pipefail
cd "$(dirname "$0")/.."
naive="${1:-1000}"
target="${CARGO_TARGET_DIR:-target}"
out="$target/bench-data"
mkdir -p "$out"

echo "--- cargo bench --bench attestation (one chunk of 12,276 records; one verification)"
cargo bench --quiet --bench attestation -- --noplot 2>/dev/null | grep -E "^attestation|time:|thrpt:" || true

echo "--- naive construction on $naive records, then 1,000,000 records in chunks"
SYMBI_BENCH_ATTEST="$naive" SYMBI_BENCH_OUT="$out/attestation.json" \
    cargo bench --quiet --bench attestation 2>&1 | grep -E "^(naive|symbiont)" || true

echo "--- symbi verify of the clinic_costs bundle, 20 runs"
cargo build --quiet --release --locked --bin symbi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
XDG_DATA_HOME="$work/data" XDG_STATE_HOME="$work/state" "$target/release/symbi" run \
    examples/clinic_costs.symbi --input patients=examples/data/patients.csv \
    --bundle "$work/clinic.bundle.json" >/dev/null 2>"$work/run.err" || { cat "$work/run.err"; exit 1; }
python3 - "$target/release/symbi" "$work/clinic.bundle.json" > "$out/verify_bundle.json" <<'PY'
import json, subprocess, sys, time
times = []
for _ in range(20):
    t = time.perf_counter()
    subprocess.run([sys.argv[1], "verify", sys.argv[2]], check=True, stdout=subprocess.DEVNULL)
    times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({"median_s": times[len(times) // 2], "min_s": times[0]}))
PY

python3 - "$target/criterion/attestation" "$out/attestation.json" "$out/verify_bundle.json" <<'PY'
import json, sys
base, r = sys.argv[1], json.load(open(sys.argv[2]))
bundle = json.load(open(sys.argv[3]))
med = lambda name: json.load(open(f"{base}/{name}/new/estimates.json"))["median"]["point_estimate"] / 1e9
chunk, verify = med("commit_prove_chunk"), med("verify")
naive_rate = r["naive_records"] / r["naive_s"]
ours_rate = r["records"] / r["commit_prove_s"]
print(f"(a) naive: {r['naive_records']:,} records, {r['naive_constraints']:,} constraints ({r['naive_constraints']/r['naive_records']:.0f} per record), commit+prove {r['naive_s']:.2f} s = {naive_rate:,.0f} records/s -> {r['records']/naive_rate:,.0f} s for {r['records']:,}")
print(f"(b) symbiont: {r['records']:,} records in {r['chunks']} chunks of {r['chunk_records']:,}, commit+prove {r['commit_prove_s']:.1f} s = {ours_rate:,.0f} records/s (target >= 5,000); {ours_rate/naive_rate:.1f}x the naive construction (target >= 50x)")
print(f"    one chunk (criterion median): {chunk:.3f} s = {r['chunk_records']/chunk:,.0f} records/s")
print(f"verification: {verify*1e3:.2f} ms per proof (median; target <= 5 ms); all {r['chunks']} chunk proofs {r['verify_all_s']*1e3:.0f} ms")
print(f"bundle: symbi verify of clinic_costs' bundle, whole process: {bundle['median_s']*1e3:.1f} ms median (min {bundle['min_s']*1e3:.1f} ms; target <= 50 ms)")
what = "1M records, chunk by chunk" if r["peak_reset"] else "whole process, naive proof included"
print(f"prover peak memory ({what}): {r['peak_rss_bytes']/2**20:,.0f} MiB; the naive proof of {r['naive_records']:,} records: {r['naive_peak_rss_bytes']/2**20:,.0f} MiB")
PY
