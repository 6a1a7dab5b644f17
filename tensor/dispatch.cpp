#include "tensor/dispatch.h"

namespace hydra {

void check_defined(const Tensor& t, const char* op, const char* arg) {
  HYDRA_CHECK(t.defined(), "{}: argument '{}' is an undefined tensor", op, arg);
}

void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  HYDRA_CHECK(a.device() == b.device(), "{}: tensors on different devices ({} with shape {} vs {} with shape {})", op,
              a.device(), shape_str(a.shape()), b.device(), shape_str(b.shape()));
}

void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  HYDRA_CHECK(a.dtype() == b.dtype(),
              "{}: dtype mismatch ({} with shape {} vs {} with shape {}); cast one side with .to(dtype)", op,
              dtype_name(a.dtype()), shape_str(a.shape()), dtype_name(b.dtype()), shape_str(b.shape()));
}

void check_floating(const Tensor& t, const char* op) {
  HYDRA_CHECK(is_floating(t.dtype()), "{}: expected a floating-point tensor, got {} with shape {}", op,
              dtype_name(t.dtype()), shape_str(t.shape()));
}

void check_dtype(const Tensor& t, DType want, const char* op, const char* arg) {
  HYDRA_CHECK(t.dtype() == want, "{}: '{}' must be {}, got {} with shape {}", op, arg, dtype_name(want),
              dtype_name(t.dtype()), shape_str(t.shape()));
}

void check_index_dtype(const Tensor& t, const char* op, const char* arg) {
  HYDRA_CHECK(t.dtype() == DType::Int32 || t.dtype() == DType::Int64,
              "{}: '{}' must be an int32 or int64 index tensor, got {} with shape {}", op, arg, dtype_name(t.dtype()),
              shape_str(t.shape()));
}

void check_rank(const Tensor& t, int64_t rank, const char* op, const char* arg) {
  HYDRA_CHECK(t.dim() == rank, "{}: '{}' must have rank {}, got shape {}", op, arg, rank, shape_str(t.shape()));
}

void cuda_kernel_missing(const char* op) {
  HYDRA_CHECK_ENV(false, "{}: no CUDA kernel for this op in this build (the CUDA backend fills these in)", op);
}

}  // namespace hydra
