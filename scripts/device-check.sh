#!/usr/bin/env bash
# Builds on a GPU machine and runs the gpu-labelled tests (HYDRA_REQUIRE_CUDA=1: no device is a failure), then
# the cpu-labelled rest. Usage: scripts/device-check.sh [build-dir]. Logs go to $OUT when set. BENCH=1 adds the CUDA
# benchmarks, SANITIZE=1 compute-sanitizer (memcheck, racecheck) over the GPU tensor tests and the mixer kernels'
# sanitizer cases.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-device}
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
cmake -S . -B "$build" -G Ninja -DHYDRA_CUDA=ON > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
cmake --build "$build" -j16 > "$out/build.log" 2>&1 || { grep -E "error|FAILED" -A5 "$out/build.log" | head -60; exit 1; }
export HYDRA_REQUIRE_CUDA=1
(cd "$build" && ctest -L gpu --output-on-failure -j4) > "$out/ctest-gpu.log" 2>&1; rc_gpu=$?
grep -E "tests passed|Failed|\*\*\*|ERROR|CHECK|logged" "$out/ctest-gpu.log" | head -60
(cd "$build" && ctest -L cpu --output-on-failure -j8) > "$out/ctest-all.log" 2>&1; rc_all=$?  # the rest
if [ "${SANITIZE:-0}" = 1 ]; then  # compute-sanitizer over the GPU tensor suite (memcheck, racecheck)
  # The allocator test provokes cudaMalloc failures on purpose (API errors, not memory errors): memcheck skips it.
  # racecheck skips the matmul/linear cases: cuBLAS's own GEMM kernels (nvjet_*) report warpgroup hazards that are
  # not ours to fix (and compute-sanitizer's kernel exclusion crashes on them).
  for tool in memcheck racecheck; do
    if [ "$tool" = memcheck ]; then filter=(-tce='*out-of-memory*'); else filter=(-tce='cuda matmul*,cuda linear*'); fi
    /usr/local/cuda/bin/compute-sanitizer --tool "$tool" --error-exitcode 9 "$build/bin/test_tensor_gpu" \
      "${filter[@]}" > "$out/sanitizer-$tool.log" 2>&1
    echo "compute-sanitizer $tool rc=$? $(grep -E 'ERROR SUMMARY|test cases' "$out/sanitizer-$tool.log" | tr '\n' ' ')"
  done
  # The mixer kernels: each has a small "<op> cuda sanitizer case".
  for tool in memcheck racecheck; do
    /usr/local/cuda/bin/compute-sanitizer --tool "$tool" --error-exitcode 9 "$build/bin/test_hydra_gpu" \
      -tc='*cuda sanitizer case' > "$out/sanitizer-mixers-$tool.log" 2>&1
    echo "compute-sanitizer mixers $tool rc=$? $(grep -E 'SUMMARY|test cases' "$out/sanitizer-mixers-$tool.log" | tr '\n' ' ')"
  done
fi
if [ "${BENCH:-0}" = 1 ]; then
  "$build/bin/hydra-bench" cuda > "$out/bench.md" 2>&1; cat "$out/bench.md"
  "$build/bin/hydra-bench" kernels > "$out/bench-kernels.md" 2>&1; cat "$out/bench-kernels.md"
fi
tail -3 "$out/ctest-all.log"
echo "gpu rc=$rc_gpu cpu rc=$rc_all"
