#!/usr/bin/env bash
# Audit log throughput, one core (taskset), side by side: appends with the
# log's batched signing (a signed, fsynced checkpoint every 1024 entries),
# appends with a signature per entry, and offline verification.
# Target: >= 50,000 appends/s with signing.
set -euo pipefail
cd "$(dirname "$0")/.."
taskset -c 0 cargo bench --bench audit -- --noplot "$@" >&2
dir="${CARGO_TARGET_DIR:-target}/criterion/audit"
python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
n = 10_000
print(f"{'what':<28}{'median ms / 10k':>16}{'entries/s':>12}")
rate = {}
for name in ("append_batched_signing", "append_signing_each_entry", "verify"):
    ms = json.load(open(f"{d}/{name}/new/estimates.json"))["median"]["point_estimate"] / 1e6
    rate[name] = n / (ms / 1e3)
    print(f"{name:<28}{ms:>16.1f}{rate[name]:>12,.0f}")
r = rate["append_batched_signing"]
print(f"batched vs per-entry signing: {r / rate['append_signing_each_entry']:.1f}x; "
      f"target >= 50,000 appends/s: {'met' if r >= 50_000 else 'NOT met'} ({r:,.0f})")
PY
