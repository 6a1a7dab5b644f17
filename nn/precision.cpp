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

std::optional<DType> compute_cast_of(const Tensor& x) {
  if (!t_compute || !x.defined() || !is_floating(x.dtype()) || x.dtype() == *t_compute) return std::nullopt;
  return t_compute;
}

Tensor to_compute(const Tensor& x) {
  const std::optional<DType> t = compute_cast_of(x);
  return t ? ag::to(x, *t) : x;
}

Tensor add_residual(const Tensor& x, const Tensor& y) {
  return x.dtype() == y.dtype() ? ag::add(x, y) : ag::add_cast(x, y);
}

Tensor to_dtype_of(const Tensor& x, const Tensor& ref) {
  if (!x.defined() || x.dtype() == ref.dtype()) return x;
  return ag::to(x, ref.dtype());
}

}  // namespace hydra::nn
