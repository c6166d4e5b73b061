#!/usr/bin/env bash
# Sandbox start latency, median of RUNS, measured as the whole wall time
# of `symbi sandbox run --tier 1 -- true` (root prepared, cgroups made,
# namespaces, mounts, Landlock, seccomp, exec, exit, cleanup): an upper
# bound on start-to-first-instruction. Beside it, in the same run: a bare
# process start of busybox `true`, and util-linux `unshare` with the same
# namespaces. The same for tier 2 (gVisor, runsc on the ptrace platform).
# Targets (issue 8): tier 1 <= 20 ms, tier 2 <= 250 ms. Needs root.
#
#   benches/sandbox_start.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet
python3 - "$target/release/symbi" "$runs" <<'PY'
import statistics, subprocess, sys, time
symbi, runs = sys.argv[1], int(sys.argv[2])
cases = {
    "bare process (busybox true)": ["busybox", "true"],
    "unshare -Urpnmiuf (namespaces only)": ["unshare", "-Urpnmiuf", "busybox", "true"],
    "symbi sandbox run --tier 1": [symbi, "sandbox", "run", "--tier", "1", "--", "true"],
    "symbi sandbox run --tier 2": [symbi, "sandbox", "run", "--tier", "2", "--", "true"],
    "symbi sandbox run --tier 3 (TCG)": [symbi, "sandbox", "run", "--tier", "3", "--", "true"],
}
times = {k: [] for k in cases}
for _ in range(2):
    for cmd in cases.values():
        subprocess.run(cmd, check=True)
for _ in range(runs):
    for name, cmd in cases.items():
        t = time.perf_counter()
        subprocess.run(cmd, check=True)
        times[name].append(time.perf_counter() - t)
base = statistics.median(times["bare process (busybox true)"])
for name, ts in times.items():
    m = statistics.median(ts)
    print(f"{name:38s} median {m*1000:8.2f} ms  ({m/base:6.1f}x bare)")
PY
