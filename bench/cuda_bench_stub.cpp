#include <fmt/format.h>

#include "bench/cuda_bench.h"

namespace hydra::bench {
bool run_cuda_bench(bool) {
  fmt::print("CUDA section skipped: this build has no CUDA backend\n");
  return false;
}
}  // namespace hydra::bench
