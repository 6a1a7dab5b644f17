#!/usr/bin/env bash
# The evaluation issue's device runs (one GPU): builds with CUDA, then runs the requested tasks with their configs,
# each into OUT/<task> (results.json, results.md, plots, run folders) with its log and wall time.
#   scripts/eval-device.sh OUT mqar needle qa
set -euo pipefail
OUT=${1:?usage: scripts/eval-device.sh OUT task...}
shift
BUILD=${BUILD:-build-device}
cmake -S . -B "$BUILD" -G Ninja -DHYDRA_CUDA=ON -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$BUILD" -j16 --target hydra-eval hydra-train > /dev/null
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for task in "$@"; do
  mkdir -p "$OUT/$task"
  start=$(date +%s)
  "$BUILD/bin/hydra-eval" "$task" --config "configs/$task.yaml" --out "$OUT/$task" \
    > "$OUT/$task/log.txt" 2>&1 || { echo "$task failed:"; tail -20 "$OUT/$task/log.txt"; exit 1; }
  echo "== $task: $(( $(date +%s) - start )) s"
  sed -n '/^| /,$p' "$OUT/$task/log.txt"
done
