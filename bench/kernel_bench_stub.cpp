#include <fmt/format.h>

#include "bench/kernel_bench.h"

namespace hydra::bench {
bool run_kernel_bench(const KernelBenchOptions&) {
  fmt::print("kernels section skipped: this build has no CUDA backend (configure with -DHYDRA_CUDA=ON)\n");
  return false;
}
}  // namespace hydra::bench
