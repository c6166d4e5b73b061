#!/usr/bin/env bash
# Runs the DSL front-end bench and prints medians side by side: the
# tree-sitter parse alone (the floor any front end on this grammar pays),
# parse to the AST, and parse + type check, against the 200 ms target.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench dsl_parse_check -- --noplot "$@" >&2
dir="${CARGO_TARGET_DIR:-target}/criterion/dsl_10k_lines"
python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
med = {n: json.load(open(f"{d}/{n}/new/estimates.json"))["median"]["point_estimate"] / 1e6
       for n in ("cst_only", "parse", "parse_and_check")}
target = 200.0
print(f"{'stage':<18}{'median ms':>12}{'x cst_only':>12}")
for n, ms in med.items():
    print(f"{n:<18}{ms:>12.2f}{ms / med['cst_only']:>12.2f}")
verdict = "meets" if med["parse_and_check"] < target else "MISSES"
print(f"parse_and_check {med['parse_and_check']:.2f} ms vs target {target:.0f} ms: "
      f"{med['parse_and_check'] / target:.2f} of the budget ({verdict} the target)")
PY
