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
# Filtered aggregates — a count and a sum behind `age >= 65`,
# clinic_costs' attested statement — in the same run: (d) FILTERED
# (default 50,000) generated records committed and proved by the general
# circuit (before), by the interval circuit with 32-bit ages and with ages
# declared in 0..=150, and by the run circuit (declared ages: what `symbi
# run` picks for them); (e) whole `symbi run --bundle` jobs over
# FILTERED generated patients (benches/seniors.symbi and
# benches/seniors_ranged.symbi, keys set up beforehand), and `symbi
# verify` of their bundles. Target: >= 5,000 records/s.
#
#   benches/attestation.sh [NAIVE] [FILTERED]
set -euo pipefail
cd "$(dirname "$0")/.."
naive="${1:-1000}"
filtered="${2:-50000}"
target="${CARGO_TARGET_DIR:-target}"
out="$target/bench-data"
mkdir -p "$out"

echo "--- cargo bench --bench attestation (one chunk of 12,276 records; one verification)"
cargo bench --quiet --bench attestation -- --noplot 2>/dev/null | grep -E "^attestation|time:|thrpt:" || true

echo "--- naive construction on $naive records, then 1,000,000 records in chunks"
SYMBI_BENCH_ATTEST="$naive" SYMBI_BENCH_OUT="$out/attestation.json" \
    cargo bench --quiet --bench attestation 2>&1 | grep -E "^(naive|symbiont)" || true

echo "--- filtered aggregates over $filtered records: general circuit, interval circuit (32-bit and declared ages), run circuit"
SYMBI_BENCH_FILTERED="$filtered" SYMBI_BENCH_OUT="$out/filtered.json" \
    cargo bench --quiet --bench attestation 2>&1 | grep -E "^(General|Intervals|Runs)" || true

echo "--- symbi verify of the clinic_costs bundle, 20 runs"
cargo build --quiet --release --locked --bin symbi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
XDG_DATA_HOME="$work/data" XDG_STATE_HOME="$work/state" "$target/release/symbi" run \
    examples/clinic_costs.symbi --input patients=examples/data/patients.csv \
    --bundle "$work/clinic.bundle.json" >/dev/null 2>"$work/run.err" || { cat "$work/run.err"; exit 1; }
python3 - "$target/release/symbi" "$work/clinic.bundle.json" "$work/data/symbiont/audit_ed25519.pub" > "$out/verify_bundle.json" <<'PY'
import json, subprocess, sys, time
times = []
for _ in range(20):
    t = time.perf_counter()
    subprocess.run([sys.argv[1], "verify", sys.argv[2], "--key", sys.argv[3]], check=True, stdout=subprocess.DEVNULL)
    times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({"median_s": times[len(times) // 2], "min_s": times[0]}))
PY

echo "--- whole symbi run --bundle over $filtered generated patients (every record public)"
"$target/release/symbi" datasets generate patients --rows "$filtered" --seed 42 --out "$work/patients.csv" >/dev/null
python3 - "$target/release/symbi" "$work" > "$out/filtered_jobs.json" <<'PY'
import json, os, subprocess, sys, time
symbi, work = sys.argv[1], sys.argv[2]
env = dict(os.environ, XDG_DATA_HOME=f"{work}/data", XDG_STATE_HOME=f"{work}/state")
report = {}
for name in ["seniors", "seniors_ranged"]:
    run = [symbi, "run", f"benches/{name}.symbi", "--input", f"patients={work}/patients.csv",
           "--bundle", f"{work}/{name}.bundle.json"]
    # The first run sets up the shape's keys; the second is timed.
    subprocess.run(run, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t = time.perf_counter()
    subprocess.run(run, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_s = time.perf_counter() - t
    t = time.perf_counter()
    verify = [symbi, "verify", f"{work}/{name}.bundle.json",
              "--key", f"{work}/data/symbiont/audit_ed25519.pub"]
    subprocess.run(verify, check=True, env=env, stdout=subprocess.DEVNULL)
    verify_s = time.perf_counter() - t
    bundle = json.load(open(f"{work}/{name}.bundle.json"))
    report[name] = {"run_s": run_s, "verify_s": verify_s,
                    "records": bundle["dataset"]["records"],
                    "chunk_records": bundle["dataset"]["chunk_records"]}
print(json.dumps(report))
PY

python3 - "$target/criterion/attestation" "$out/attestation.json" "$out/verify_bundle.json" "$out/filtered.json" "$out/filtered_jobs.json" <<'PY'
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
filtered, jobs = json.load(open(sys.argv[4])), json.load(open(sys.argv[5]))
before = filtered[0]["records"] / filtered[0]["commit_prove_s"]
print("(d) filtered aggregates (count and sum behind age >= 65), commit+prove; target >= 5,000 records/s:")
for f in filtered:
    rate = f["records"] / f["commit_prove_s"]
    ages = "declared 0..=150 (8 bits)" if f["widths"] else "32-bit"
    print(f"    {f['circuit']:9} ages {ages:25} chunks of {f['chunk_records']:,}: {f['records']:,} records in {f['commit_prove_s']:.1f} s = {rate:,.0f} records/s ({rate/before:.2f}x the general circuit); setup {f['setup_s']:.1f} s, verify all {f['verify_all_s']*1e3:.0f} ms")
for name in ["filtered_chunk_general", "filtered_chunk_intervals", "filtered_chunk_intervals_ranged", "filtered_chunk_runs"]:
    print(f"    one chunk, {name} (criterion median): {med(name):.3f} s")
for name, j in jobs.items():
    print(f"(e) symbi run --bundle benches/{name}.symbi, {j['records']:,} patients (chunks of {j['chunk_records']:,}), keys cached: {j['run_s']:.1f} s = {j['records']/j['run_s']:,.0f} records/s; symbi verify {j['verify_s']*1e3:.0f} ms")
PY
