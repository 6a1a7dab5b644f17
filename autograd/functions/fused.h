#pragma once
// Differentiable fused hot-path ops (namespace hydra::ag). Each runs the raw forward of tensor/ops/fused.h and,
// when grad mode is on and an input requires grad, records one node whose backward is the raw fused backward
// (hand-written; the composition of primitive ops is its reference in the tests). Shapes, dtypes and the math are
// documented in tensor/ops/fused.h. Only the floating inputs listed in each comment receive gradients.
#include <cstdint>
#include <optional>

#include "tensor/ops/fused.h"
#include "tensor/tensor_core.h"

namespace hydra::ag {

// y = x · rsqrt(mean(x²) + eps) ⊙ w over the last dim, rounded to out_dtype (default x's dtype). Gradients: x, w
// (in x's dtype; the incoming gradient has out_dtype). Saves x, w and the per-row rstd.
Tensor rms_norm(const Tensor& x, const Tensor& w, double eps, std::optional<DType> out_dtype = std::nullopt);

// x + y with y converted to x's dtype (the mixed-precision residual add). Gradients: x (the incoming gradient
// itself) and y (the incoming gradient converted to y's dtype). Saves nothing.
Tensor add_cast(const Tensor& x, const Tensor& y);

// Mean cross-entropy over rows whose target is not ignore_index (0-d; float32 for float32/bfloat16 logits).
// Gradient: logits (targets are int32/int64 and never differentiable). Saves logits, targets and lse.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = kDefaultIgnoreIndex);

// y = x / max(‖x‖₂, eps) over the last dim. Gradient: x. Saves y and the per-row norm.
Tensor l2_normalize(const Tensor& x, double eps = kDefaultL2Eps);

// Rotary embedding of x (..., T, D) at positions position_offset + t (SPEC §2.9). Gradient: x. Saves nothing.
Tensor rotary(const Tensor& x, int64_t position_offset, double base);
// SwiGLU gating of the fused projection u = [g | a] (tensor/ops/fused.h): silu(g) ⊙ a.
Tensor swiglu(const Tensor& u);

// Causal depthwise conv1d (no SiLU): returns {y (B, T, C), new_cache (B, C, K−1), undefined when K = 1}.
// Gradients: x, w, bias and cache (each when defined and requiring grad); both outputs are differentiable
// (a gradient reaching new_cache flows back to x and cache). Saves x, w and cache.
CausalConv1dOutput causal_conv1d(const Tensor& x, const Tensor& w, const Tensor& bias = Tensor(),
                                 const Tensor& cache = Tensor());

}  // namespace hydra::ag
