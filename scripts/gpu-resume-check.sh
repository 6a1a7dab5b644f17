#!/usr/bin/env bash
# Exact resume on the GPU: the tiny config trained 20 steps straight, and 10 steps + resume to 20, must give the
# same losses at steps 11-20 within 1e-6 relative (the training issue's GPU criterion). Prints the worst difference.
# Usage: scripts/gpu-resume-check.sh [build dir]   (default build-device)
set -euo pipefail
B=${1:-build-device}
T=$(mktemp -d)
common=(train.device=cuda train.steps=20 train.log_every=1 train.progress=false eval.every=0 checkpoint.every=5)
"$B/bin/hydra-train" "${common[@]}" train.run_dir="$T/a" > "$T/a.log"
"$B/bin/hydra-train" "${common[@]}" train.run_dir="$T/b" train.stop_after=10 > "$T/b1.log"
"$B/bin/hydra-train" "${common[@]}" train.run_dir="$T/b" train.resume=true > "$T/b2.log"
python3 - "$T/a/metrics.jsonl" "$T/b/metrics.jsonl" <<'PY'
import json, sys
a = {r["step"]: r["loss"] for r in map(json.loads, open(sys.argv[1]))}
b = {r["step"]: r["loss"] for r in map(json.loads, open(sys.argv[2]))}
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in range(11, 21))
print(f"GPU resume: steps 11-20, worst relative loss difference {worst:.3e} (limit 1e-6)")
sys.exit(0 if worst <= 1e-6 else 1)
PY
