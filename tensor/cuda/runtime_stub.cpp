// Linked when the build has no CUDA backend (HYDRA_CUDA=OFF or no nvcc): every entry point says so.
#include "tensor/check.h"
#include "tensor/cuda/backend.h"

namespace hydra::cuda {

bool is_built() { return false; }
int device_count() { return 0; }
std::string device_name(int index) {
  HYDRA_CHECK_ENV(false, "cuda:{}: this build has no CUDA backend (configured without nvcc or with HYDRA_CUDA=OFF)",
                  index);
}
std::string runtime_version() { return "built without CUDA"; }
Allocator& allocator(int index) {
  HYDRA_CHECK_ENV(false,
                  "cannot place a tensor on cuda:{}: this build has no CUDA backend (configured without nvcc or "
                  "with HYDRA_CUDA=OFF)",
                  index);
}

}  // namespace hydra::cuda
