#pragma once
// The shared device/dtype checks and the dtype switch that every op's single dispatch function uses
// (STYLE.md §4). A dtype switch calls f.template operator()<T>() for the tensor's element type T, or throws
// naming the op and the dtypes it accepts.
#include "tensor/tensor_core.h"

namespace hydra {

void check_defined(const Tensor& t, const char* op, const char* arg);
void check_same_device(const Tensor& a, const Tensor& b, const char* op);
void check_same_dtype(const Tensor& a, const Tensor& b, const char* op);
void check_floating(const Tensor& t, const char* op);
void check_dtype(const Tensor& t, DType want, const char* op, const char* arg);
void check_index_dtype(const Tensor& t, const char* op, const char* arg);  // int32 or int64
void check_rank(const Tensor& t, int64_t rank, const char* op, const char* arg);

// Thrown from the CUDA branch of a dispatch function whose CUDA kernel does not exist in this build.
[[noreturn]] void cuda_kernel_missing(const char* op);

template <typename F>
decltype(auto) dispatch_floating(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::Float32: return f.template operator()<float>();
    case DType::Float64: return f.template operator()<double>();
    case DType::BFloat16: return f.template operator()<BFloat16>();
    default: break;
  }
  HYDRA_CHECK(false, "{}: dtype {} not supported (expected float32, float64 or bfloat16)", op, dtype_name(t));
}

template <typename F>
decltype(auto) dispatch_numeric(DType t, const char* op, F&& f) {  // floating + int32/int64
  switch (t) {
    case DType::Float32: return f.template operator()<float>();
    case DType::Float64: return f.template operator()<double>();
    case DType::BFloat16: return f.template operator()<BFloat16>();
    case DType::Int32: return f.template operator()<int32_t>();
    case DType::Int64: return f.template operator()<int64_t>();
    default: break;
  }
  HYDRA_CHECK(false, "{}: dtype {} not supported (expected float32, float64, bfloat16, int32 or int64)", op,
              dtype_name(t));
}

template <typename F>
decltype(auto) dispatch_all(DType t, const char* op, F&& f) {  // every dtype, bool included
  if (t == DType::Bool) return f.template operator()<bool>();
  return dispatch_numeric(t, op, std::forward<F>(f));
}

template <typename F>
decltype(auto) dispatch_index(DType t, const char* op, F&& f) {  // index tensors
  switch (t) {
    case DType::Int32: return f.template operator()<int32_t>();
    case DType::Int64: return f.template operator()<int64_t>();
    default: break;
  }
  HYDRA_CHECK(false, "{}: index dtype {} not supported (expected int32 or int64)", op, dtype_name(t));
}

}  // namespace hydra
