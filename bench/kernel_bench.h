#pragma once
// `hydra-bench kernels` (bench/kernel_bench.cu; a stub without CUDA): the three HydraLM mixer kernels (gated delta
// rule, windowed attention, top-k chunk attention with its routing) on cuda:0, forward and forward+backward, in
// bfloat16 and float32, at the two shapes of the performance issue; achieved TFLOP/s and GB/s from stated FLOP and
// byte counts, the roofline floor (peak bf16 tensor-core FLOP/s, device-to-device copy bandwidth measured in the same
// run) and the allocator's peak memory. Prints its table to stdout.
#include <string>

namespace hydra::bench {
struct KernelBenchOptions {
  bool quick = false;  // small shapes, short timing
  std::string only;    // comma-separated subset of gated_delta,window_attn,chunk_attn (empty: all)
  std::string json;    // also write the timed rows here (bench/peers/compare.py joins them with the peers')
};
// Returns false (printing why) when the build or machine has no CUDA device.
bool run_kernel_bench(const KernelBenchOptions& opt);
}  // namespace hydra::bench
