#pragma once
// The mixed-precision policy (SPEC §7.7 "bf16 autocast"), in one place. The model's code asks these functions
// which dtype to compute in; nothing else decides.
//
// With the compute dtype unset (the default) every op runs in the parameters' dtype (float32 or float64): nothing
// is cast. With bf16 set (ComputeDTypeGuard, entered by HydraLM::forward when its mixed precision is bf16):
//   * parameters stay float32 ("master weights"); their gradients and the optimizer state are float32;
//   * Linear casts its input, weight and bias to bf16 (differentiable casts: the weight gradient is cast back to
//     float32) and runs the GEMM in bf16 with float32 accumulation (cuBLASLt); its output is bf16;
//   * RMSNorm computes on its float32 input with float32 statistics and weight, and hands its output on in bf16
//     (rounded in the same pass: compute_cast_of);
//   * the embedding lookup and the residual stream stay float32: each block adds its sublayers' bf16 outputs back
//     in float32 (add_residual);
//   * inside the mixers, activations (q, k, v, the short convolution) are bf16; the gated-delta gates α, β (their
//     projection ab_proj included) and its state are float32; the attention kernels keep softmax statistics and the LSE in float32; RoPE and
//     L2-normalisation compute in float32 internally;
//   * the logits are bf16; cross-entropy computes in float32 and the loss is float32.
// bf16 needs the CUDA kernels (the CPU mixer kernels take float32/float64 only).
#include <optional>

#include "tensor/tensor_core.h"

namespace hydra::nn {

// The dtype floating activations are computed in; nullopt = the parameters' dtype (no casts).
std::optional<DType> compute_dtype();

// Sets the compute dtype for its lifetime (thread-local), restoring the previous one after.
class ComputeDTypeGuard {
 public:
  explicit ComputeDTypeGuard(std::optional<DType> dtype);
  ~ComputeDTypeGuard();
  ComputeDTypeGuard(const ComputeDTypeGuard&) = delete;
  ComputeDTypeGuard& operator=(const ComputeDTypeGuard&) = delete;

 private:
  std::optional<DType> prev_;
};

// x cast (differentiably) to the compute dtype when one is set and x is a floating tensor of another dtype;
// x itself otherwise (also when undefined).
Tensor to_compute(const Tensor& x);
// The dtype to_compute(x) would cast x to; nullopt when it would return x itself. For ops that round their
// output to the compute dtype in the same pass (RMSNorm).
std::optional<DType> compute_cast_of(const Tensor& x);
// The residual add x + y with y in x's dtype: y's gradient goes back in y's dtype. One pass when the dtypes differ
// (ag::add_cast), the plain add when they agree.
Tensor add_residual(const Tensor& x, const Tensor& y);
// x cast (differentiably) to ref's dtype when they differ.
Tensor to_dtype_of(const Tensor& x, const Tensor& ref);

}  // namespace hydra::nn
