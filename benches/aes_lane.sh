#!/usr/bin/env bash
# The AES-256-GCM lane side by side with OpenSSL, in one run:
#
# 1. `openssl speed -evp aes-256-gcm` (encrypt and decrypt, 16 KiB, one
#    core): the baseline.
# 2. `cargo bench --bench aes_lane`: seal+open of a 16 KiB message for both
#    implementations (ring, RustCrypto aes-gcm), and the lane's whole
#    per-batch work (encode, seal, open into a locked buffer, decode, wipe)
#    on 1,024 patient records; one thread.
# 3. The confidential-only pipeline over ROWS generated rows
#    (benches/confidential_1m.symbi) with each implementation, next to the
#    same aggregates over public records (benches/plaintext_1m.symbi):
#    median wall time of RUNS runs, records/s. Two workers.
#
# Target: the AES path >= 50% of OpenSSL's single-core GB/s (encrypt and
# decrypt together, i.e. their harmonic mean rate).
#
#   benches/aes_lane.sh [ROWS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-1000000}"
runs="${2:-5}"
target="${CARGO_TARGET_DIR:-target}"
out="$target/bench-data"
mkdir -p "$out"

echo "--- openssl speed -evp aes-256-gcm (16 KiB, one core)"
enc=$(openssl speed -evp aes-256-gcm -seconds 3 -bytes 16384 2>/dev/null | awk '/^AES-256-GCM/ {sub("k","",$2); print $2*1000}')
dec=$(openssl speed -evp aes-256-gcm -decrypt -seconds 3 -bytes 16384 2>/dev/null | awk '/^AES-256-GCM/ {sub("k","",$2); print $2*1000}')
python3 - "$enc" "$dec" "$out/openssl.json" <<'PY'
import json, sys
enc, dec = float(sys.argv[1]), float(sys.argv[2])
both = 2 / (1 / enc + 1 / dec)
print(f"openssl: encrypt {enc/1e9:.2f} GB/s, decrypt {dec/1e9:.2f} GB/s, encrypt+decrypt {both/1e9:.2f} GB/s")
json.dump({"encrypt": enc, "decrypt": dec, "both": both}, open(sys.argv[3], "w"))
PY

echo "--- cargo bench --bench aes_lane (one thread)"
cargo bench --quiet --bench aes_lane -- --noplot 2>/dev/null | grep -E "^(aead|batch)|thrpt" || true

cargo build --release --quiet
data="$out/patients_${rows}_seed42.csv"
if [ ! -f "$data" ]; then
    "$target/release/symbi" datasets generate patients --rows "$rows" --seed 42 --out "$data"
fi
# The jobs' audit trail and keystore (part of every run) go here.
export XDG_STATE_HOME="$out/xdg-state" XDG_DATA_HOME="$out/xdg-data"

echo "--- pipelines over $rows rows, 2 workers, median of $runs"
python3 - "$target/release/symbi" "$data" "$runs" "$out/openssl.json" "$target/criterion" <<'PY'
import json, statistics, subprocess, sys, time
symbi, data, runs, openssl, criterion = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]

def run(program, *extra):
    cmd = [symbi, "run", program, "--input", f"patients={data}", "--workers", "2", *extra]
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True).stdout
    return time.perf_counter() - t, json.loads(out)

cases = {
    "plaintext (public lane)": ("benches/plaintext_1m.symbi",),
    "confidential, ring": ("benches/confidential_1m.symbi", "--aes-backend", "ring"),
    "confidential, aes-gcm": ("benches/confidential_1m.symbi", "--aes-backend", "aes-gcm"),
}
results = {}
for name, args in cases.items():
    run(*args)  # warm-up: page cache, keystore creation
times = {name: [] for name in cases}
for _ in range(runs):
    for name, args in cases.items():
        t, out = run(*args)
        times[name].append(t)
        results[name] = out
assert results["confidential, ring"]["value"] == results["plaintext (public lane)"]["value"]
assert results["confidential, aes-gcm"]["value"] == results["plaintext (public lane)"]["value"]
lanes = results["confidential, ring"]["_meta"]["lanes"]
assert lanes["aes_gcm"] > 0 and lanes["plaintext"] == 0, lanes
rows = results["plaintext (public lane)"]["_meta"]["rows"]
base = statistics.median(times["plaintext (public lane)"])
for name in cases:
    m = statistics.median(times[name])
    print(f"{name:26s} median {m*1000:8.1f} ms  {rows/m/1e6:5.2f} M records/s  {m/base:4.2f}x plaintext")

ssl = json.load(open(openssl))["both"]
print("--- AES path vs openssl (encrypt+decrypt, one core)")
for group in ["aead_16k", "batch_1024"]:
    for backend in ["ring", "aes-gcm"]:
        try:
            est = json.load(open(f"{criterion}/{group}/{backend}/new/estimates.json"))
            bench = json.load(open(f"{criterion}/{group}/{backend}/new/benchmark.json"))
        except FileNotFoundError:
            continue
        seconds = est["median"]["point_estimate"] / 1e9
        gbps = bench["throughput"]["Bytes"] / seconds / 1e9
        print(f"{group:10s} {backend:8s} {gbps:6.2f} GB/s  {gbps*1e9/ssl*100:5.1f}% of openssl ({ssl/1e9:.2f} GB/s)")
PY
