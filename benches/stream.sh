#!/usr/bin/env bash
# symbi stream against symbi run, side by side in one run (release build):
#
# (a) sustained records/s: ROWS generated patients (default 1,000,000)
#     through `symbi stream examples/clinic_costs.symbi` (three lanes) from
#     standard input in epochs of 100,000, against `symbi run` over the
#     same file; target: the stream >= 50 % of the batch rate;
# (c) against the naive way: EPOCHS (default 100) epochs of EPOCH_ROWS
#     (default 2,000) records, the stream's whole run against re-running
#     the batch job over every record so far at each epoch (the sum of
#     those runs); target: >= 10x faster. The last values must agree.
#
# (d) backpressure: BIG (default 10,000,000) generated patients piped
#     from `symbi datasets generate` straight into `symbi stream` as fast
#     as the generator writes them (epochs of 1,000,000): every record
#     counted, and the stream's peak resident memory (target < 512 MiB).
#
# Each process's peak resident memory is reported too.
#
#   benches/stream.sh [ROWS] [EPOCHS] [EPOCH_ROWS] [BIG]
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-1000000}"
epochs="${2:-100}"
epoch_rows="${3:-2000}"
big="${4:-10000000}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --quiet --release --locked --bin symbi --bin symbi-sandbox-init
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export XDG_DATA_HOME="$work/data" XDG_STATE_HOME="$work/state"
"$target/release/symbi" datasets generate patients --rows "$rows" --seed 42 --out "$work/all.csv" >/dev/null
python3 - "$target/release/symbi" "$work" "$rows" "$epochs" "$epoch_rows" "$big" <<'PY'
import json, resource, subprocess, sys, time
symbi, work, rows, epochs, epoch_rows, big = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
prog = "examples/clinic_costs.symbi"

def timed(args, stdin=None):
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    out = subprocess.run(args, stdin=stdin, capture_output=True, check=True)
    s = time.perf_counter() - t
    return s, out.stdout, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss

def value_of(batch):
    batch = json.loads(batch)
    batch.pop("_meta")
    return batch.pop("value") if list(batch) == ["value"] else batch

# The keystore and keys are made by a first small run, not timed.
subprocess.run([symbi, "run", prog, "--input", "patients=examples/data/patients.csv"], capture_output=True, check=True)

batch_s, batch_out, _ = timed([symbi, "run", prog, "--input", f"patients={work}/all.csv"])
with open(f"{work}/all.csv", "rb") as f:
    stream_s, stream_out, peak = timed([symbi, "stream", prog, "--input", "patients=-", "--input-format", "csv", "--epoch", "100000"], stdin=f)
last = json.loads(stream_out.splitlines()[-1])
assert last["records"] == rows, last["records"]
assert last["value"] == value_of(batch_out), "the stream's last value is not the batch job's"
b, s = rows / batch_s, rows / stream_s
print(f"(a) {rows:,} records, clinic_costs: symbi run {batch_s:.2f} s = {b:,.0f} records/s; symbi stream (epochs of 100,000) {stream_s:.2f} s = {s:,.0f} records/s: {s / b:.0%} of the batch rate (target >= 50 %); peak resident {peak / 1024:,.0f} MiB")

n = epochs * epoch_rows
with open(f"{work}/all.csv", "rb") as f:
    lines = f.read().split(b"\n")
header, body = lines[0], lines[1:n + 1]
with open(f"{work}/stream.csv", "wb") as f:
    f.write(b"\n".join([header] + body) + b"\n")
with open(f"{work}/stream.csv", "rb") as f:
    stream_s, stream_out, _ = timed([symbi, "stream", prog, "--input", "patients=-", "--input-format", "csv", "--epoch", str(epoch_rows)], stdin=f)
outs = stream_out.splitlines()
assert len(outs) == epochs, len(outs)
naive_s = 0.0
for e in range(epochs):
    with open(f"{work}/prefix.csv", "wb") as f:
        f.write(b"\n".join([header] + body[:(e + 1) * epoch_rows]) + b"\n")
    s, out, _ = timed([symbi, "run", prog, "--input", f"patients={work}/prefix.csv"])
    naive_s += s
assert json.loads(outs[-1])["value"] == value_of(out), "the last values differ"
print(f"(c) {epochs} epochs of {epoch_rows:,} records: symbi stream {stream_s:.1f} s; re-running symbi run over every record so far at each epoch {naive_s:.1f} s: {naive_s / stream_s:.1f}x (target >= 10x)")

# (d): the generator's pipe straight into the stream, whose own peak
# resident memory GNU time reports.
t = time.perf_counter()
gen = subprocess.Popen([symbi, "datasets", "generate", "patients", "--rows", str(big), "--seed", "3"], stdout=subprocess.PIPE)
stream = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", f"{work}/rss", symbi, "stream", prog, "--input", "patients=-", "--input-format", "csv", "--epoch", "1000000"], stdin=gen.stdout, capture_output=True, check=True)
gen.stdout.close()
gen.wait()
s = time.perf_counter() - t
peak_kib = int(open(f"{work}/rss").read().split()[-1])
last = json.loads(stream.stdout.splitlines()[-1])
assert last["records"] == big, last["records"]
print(f"(d) {big:,} generated records piped into symbi stream (epochs of 1,000,000): {s:.1f} s = {big / s:,.0f} records/s, all {last['records']:,} counted; the stream's peak resident {peak_kib / 1024:,.0f} MiB (target < 512 MiB)")
PY
