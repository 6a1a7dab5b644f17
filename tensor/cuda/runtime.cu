// CUDA runtime queries for the CUDA backend. Device tensors themselves (the caching allocator and the
// kernels) arrive with the CUDA-backend issue; until then allocator() refuses with a clear message.
#include <cuda_runtime.h>

#include "tensor/check.h"
#include "tensor/cuda/backend.h"

namespace hydra::cuda {

bool is_built() { return true; }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver / no device" error
    return 0;
  }
  return n;
}

std::string device_name(int index) {
  int n = device_count();
  HYDRA_CHECK_ENV(index >= 0 && index < n, "cuda:{}: no such device ({} CUDA device(s) visible)", index, n);
  cudaDeviceProp prop{};
  cudaError_t err = cudaGetDeviceProperties(&prop, index);
  HYDRA_CHECK_ENV(err == cudaSuccess, "cudaGetDeviceProperties(cuda:{}) failed: {}", index, cudaGetErrorString(err));
  return fmt::format("{} (sm_{}{}, {} SMs, {:.1f} GiB)", prop.name, prop.major, prop.minor, prop.multiProcessorCount,
                     prop.totalGlobalMem / double(1 << 30));
}

std::string runtime_version() {
  int rt = 0, drv = 0;
  cudaRuntimeGetVersion(&rt);
  if (cudaDriverGetVersion(&drv) != cudaSuccess) drv = 0;
  return fmt::format("CUDA runtime {}.{}, driver {}", rt / 1000, (rt % 1000) / 10,
                     drv ? fmt::format("{}.{}", drv / 1000, (drv % 1000) / 10) : std::string("none"));
}

Allocator& allocator(int index) {
  int n = device_count();
  HYDRA_CHECK_ENV(index >= 0 && index < n, "cannot place a tensor on cuda:{}: {} CUDA device(s) visible", index, n);
  HYDRA_CHECK_ENV(false,
                  "cannot place a tensor on cuda:{}: CUDA tensors are not implemented yet (the device allocator "
                  "and kernels come with the CUDA backend)",
                  index);
}

}  // namespace hydra::cuda
