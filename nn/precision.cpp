// The mixed-precision policy (precision.h).
#include "nn/precision.h"

#include "autograd/autograd.h"

namespace hydra::nn {

namespace {
thread_local std::optional<DType> t_compute;
}  // namespace

std::optional<DType> compute_dtype() { return t_compute; }

ComputeDTypeGuard::ComputeDTypeGuard(std::optional<DType> dtype) : prev_(t_compute) { t_compute = dtype; }
ComputeDTypeGuard::~ComputeDTypeGuard() { t_compute = prev_; }

Tensor to_compute(const Tensor& x) {
  if (!t_compute || !x.defined() || !is_floating(x.dtype()) || x.dtype() == *t_compute) return x;
  return ag::to(x, *t_compute);
}

Tensor to_dtype_of(const Tensor& x, const Tensor& ref) {
  if (!x.defined() || x.dtype() == ref.dtype()) return x;
  return ag::to(x, ref.dtype());
}

}  // namespace hydra::nn
