#pragma once
// The CUDA backend's host-side interface. Host-only code includes this header (no CUDA headers here).
// Built with CUDA (HYDRA_CUDA=AUTO with nvcc, or ON): tensor/cuda/runtime.cu; built without: runtime_stub.cpp,
// whose functions throw "built without CUDA" (device_count() returns 0 there).
#include <string>

#include "tensor/storage.h"

namespace hydra::cuda {

bool is_built();                 // whether this binary contains the CUDA backend
int device_count();              // 0 without a driver or GPU (never throws)
std::string device_name(int index);
std::string runtime_version();   // e.g. "CUDA runtime 13.0, driver 13.0" or why it is unavailable
Allocator& allocator(int index);  // the device's allocator; throws naming the device when unavailable

}  // namespace hydra::cuda
