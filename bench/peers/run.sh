#!/usr/bin/env bash
# Issue 8's benchmark in one run on the GPU machine: our kernels (hydra-bench kernels) and the PyTorch peers
# (peers.py) back to back on the same device, then one joined table (compare.py).
# Usage: bench/peers/run.sh BUILD_DIR OUT_DIR [--quick] [--only KERNELS]
#   needs python3 with torch + triton and fla-core (+ einops) importable (scripts/device-check.sh carries them).
set -euo pipefail
build=$1 out=$2
shift 2
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
"$build/bin/hydra-bench" kernels --json "$out/ours.json" "$@" | tee "$out/ours.md"
python3 "$here/peers.py" --json "$out/peers.json" "$@" 2>&1 | tee "$out/peers.log"
python3 "$here/compare.py" "$out/ours.json" "$out/peers.json" | tee "$out/compare.md"
