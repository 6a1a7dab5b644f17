#pragma once
// The CUDA section of hydra-bench (bench/cuda_bench.cu; a stub without CUDA). Prints its tables to stdout.
namespace hydra::bench {
// Returns false (printing why) when the build or machine has no CUDA device.
bool run_cuda_bench(bool quick);
}  // namespace hydra::bench
