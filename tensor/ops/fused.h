#pragma once
// Fused hot-path ops: RMSNorm, cross-entropy from logits, L2 normalisation, rotary embedding, the causal
// depthwise conv1d, SwiGLU gating, and the AdamW parameter update. Each differentiable op has a raw forward and a raw backward
// (both plain tensor -> tensor functions, no graph); the differentiable wrappers live in autograd/functions/fused.h.
//
// Common rules:
//  * Floating inputs are float32, float64 or bfloat16 and must share one dtype and device. The CPU kernels
//    accumulate in float64 (results are rounded once to the output dtype).
//  * Non-contiguous inputs are accepted: the dispatch function copies them to contiguous first.
//  * Outputs are fresh contiguous tensors. "stat dtype" below means float32 for float32/bfloat16 inputs and
//    float64 for float64 inputs (per-row statistics saved for backward).
//  * Shape letters: N rows (all leading dims flattened), D the normalised/rotated dim, V vocabulary, B batch,
//    T time, C channels, K conv kernel width.
#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "tensor/dtype.h"
#include "tensor/tensor_core.h"

namespace hydra {

// ---------------------------------------------------------------------------------------------------------
// RMSNorm over the last dim (SPEC §2.4).
//   x (..., D), w (D):  rstd = 1 / sqrt(mean_j x_j² + eps)   (per row, accumulated in float64)
//                       n    = x · rstd, rounded to x's dtype   (the normalised value is cast back, SPEC §2.4)
//                       y    = n ⊙ w                            (..., D), x's dtype
//   rstd has shape x.shape[:-1] and the stat dtype.
//   out_dtype (default x's dtype): y is rounded to it after being computed as above (mixed precision: float32 x and
//   w, bfloat16 y), the same values as a separate cast of y, without the float32 y in memory.
// Backward needs x, w and rstd (saved from forward):
//   dn = gy ⊙ w;  dx = rstd · (dn − n · mean_j(dn_j n_j));  dw = Σ_rows gy ⊙ n
// (the rounding of n is treated as the identity in backward). gy may have another floating dtype than x (the
// forward's out_dtype); it is widened exactly. dx and dw have x's dtype.
struct RmsNormOutput {
  Tensor y;
  Tensor rstd;
};
struct RmsNormGrads {
  Tensor dx;
  Tensor dw;
};
RmsNormOutput rms_norm_forward(const Tensor& x, const Tensor& w, double eps,
                               std::optional<DType> out_dtype = std::nullopt);
RmsNormGrads rms_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& rstd);

// ---------------------------------------------------------------------------------------------------------
// Cross-entropy from logits, mean over the rows whose target is not ignore_index.
//   logits (..., V) seen as (N, V); targets int32/int64 with shape logits.shape[:-1] (N).
//   lse_r  = log Σ_v exp(logits[r, v])   one online pass per row (running max, rescaled running sum); no
//            second (N, V) tensor is allocated.
//   loss   = (1 / n_valid) Σ_{r valid} (lse_r − logits[r, t_r])       0-d, stat dtype
//   A target must be ignore_index or in [0, V); anything else throws std::invalid_argument naming the value, its
//   row and V. On CUDA the targets are checked on the device without stopping the host, and the error is raised
//   by the next synchronisation of the device (cuda::synchronize, item(), a copy to the CPU; tensor/cuda/backend.h).
//   When every row is ignored (n_valid = 0) the loss is 0 and backward returns an all-zero gradient
//   (PyTorch would return NaN; a zero keeps an all-padding micro-batch harmless).
//   lse has shape logits.shape[:-1] and the stat dtype; it is computed for ignored rows too.
// Backward needs logits, targets and lse (saved from forward) and the upstream gradient gloss (one element):
//   dlogits[r, v] = (exp(logits[r, v] − lse_r) − [v = t_r]) · gloss / n_valid,  zero rows where t_r is ignored.
struct CrossEntropyOutput {
  Tensor loss;
  Tensor lse;
};
inline constexpr int64_t kDefaultIgnoreIndex = -100;
CrossEntropyOutput cross_entropy_forward(const Tensor& logits, const Tensor& targets,
                                         int64_t ignore_index = kDefaultIgnoreIndex);
Tensor cross_entropy_backward(const Tensor& gloss, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                              int64_t ignore_index = kDefaultIgnoreIndex);

// ---------------------------------------------------------------------------------------------------------
// L2 normalisation along the last dim (SPEC §0 l2n, eps = 1e-12 there).
//   x (..., D):  norm = ‖x‖₂ per row (float64 accumulation), y = x / max(norm, eps)    (..., D), x's dtype
//   norm has shape x.shape[:-1] and the stat dtype.
// Backward needs y and norm (saved from forward):
//   norm > eps:  dx = (g − y · <g, y>) / norm;      norm ≤ eps:  dx = g / eps  (the clamp is a constant there).
inline constexpr double kDefaultL2Eps = 1e-12;
struct L2NormalizeOutput {
  Tensor y;
  Tensor norm;
};
L2NormalizeOutput l2_normalize_forward(const Tensor& x, double eps = kDefaultL2Eps);
Tensor l2_normalize_backward(const Tensor& gy, const Tensor& y, const Tensor& norm, double eps = kDefaultL2Eps);

// ---------------------------------------------------------------------------------------------------------
// Rotary position embedding (SPEC §2.9), half-split pairing: dim i pairs with i + D/2.
//   x (..., T, D), D even:  p_t = position_offset + t,  inv_freq_i = 1 / base^(2i/D)  (i < D/2),
//                           θ_{t,i} = p_t · inv_freq_i
//   y_i       = x_i cos θ − x_{i+D/2} sin θ
//   y_{i+D/2} = x_{i+D/2} cos θ + x_i sin θ
// Precision: inv_freq is always computed in float32 (SPEC). For float32/bfloat16 inputs p, θ, cos and sin are
// float32 too, and for bfloat16 cos/sin are then rounded to bfloat16 (SPEC: "cast to the activation dtype").
// For float64 inputs the float32 inv_freq is widened and p, θ, cos, sin are computed in float64 (so the op stays
// exact to float64 rounding for gradcheck and fp64 parity tests).
// Backward needs nothing saved (only the offset and base): it is the rotation by −θ,
//   dx_i = g_i cos θ + g_{i+D/2} sin θ,   dx_{i+D/2} = g_{i+D/2} cos θ − g_i sin θ.
Tensor rotary_forward(const Tensor& x, int64_t position_offset, double base);
Tensor rotary_backward(const Tensor& gy, int64_t position_offset, double base);

// ---------------------------------------------------------------------------------------------------------
// Causal depthwise conv1d (SPEC §2.6 without the SiLU, which is a separate op).
//   x (B, T, C), w (C, K), bias (C) or undefined, cache (B, C, K−1) or undefined (= zeros).
//   xp[b, c, s] = cache[b, c, s] for s < K−1, x[b, s−K+1, c] otherwise   (s = 0 .. K−2+T)
//   y[b, t, c]  = bias[c] + Σ_{j<K} w[c, j] · xp[b, c, t + j]            (B, T, C)
//   new_cache   = xp[:, :, T .. T+K−2]                                    (B, C, K−1); undefined when K = 1
// (w[c, K−1] multiplies the current token.) For K = 1 the cache may be undefined or have shape (B, C, 0).
// Backward needs x, w and cache (saved from forward; bias only as "present or not"). g_new_cache may be
// undefined (treated as zeros):
//   dxp[b, c, s] = Σ_j w[c, j] · gy[b, s − j, c] (0 ≤ s − j < T)  + g_new_cache[b, c, s − T] (s ≥ T)
//   dx = dxp[.., K−1 ..] transposed to (B, T, C);  dcache = dxp[.., .. K−2]
//   dw[c, j] = Σ_{b,t} gy[b, t, c] · xp[b, c, t + j];  dbias[c] = Σ_{b,t} gy[b, t, c]
// dbias is undefined when has_bias is false, dcache is undefined when K = 1.
struct CausalConv1dOutput {
  Tensor y;
  Tensor new_cache;
};
struct CausalConv1dGrads {
  Tensor dx;
  Tensor dw;
  Tensor dbias;
  Tensor dcache;
};
CausalConv1dOutput causal_conv1d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& cache);
CausalConv1dGrads causal_conv1d_backward(const Tensor& gy, const Tensor& g_new_cache, const Tensor& x, const Tensor& w,
                                         const Tensor& cache, bool has_bias);

// ---------------------------------------------------------------------------------------------------------
// SwiGLU gating (SPEC §2.5) on the fused projection u = [g | a] (..., 2F), g the first F columns:
//   y = silu(g) ⊙ a                                  (..., F), computed in float (double for float64 inputs) on
//                                                    both devices, as the elementwise silu, and rounded once
// Backward: du = [gy ⊙ a ⊙ silu'(g) | gy ⊙ silu(g)]  (..., 2F), silu'(x) = σ(x)(1 + x(1 − σ(x))).
Tensor swiglu_forward(const Tensor& u);
Tensor swiglu_backward(const Tensor& gy, const Tensor& u);

// ---------------------------------------------------------------------------------------------------------
// Gradient clipping over a list of tensors (all on one device, floating, contiguous; dtypes may differ), in a few
// launches for the whole list instead of several per tensor (optim::clip_grad_norm):
//   sum_of_squares(ts) -> 0-d float64 on the tensors' device (CPU for an empty list): Σ_t Σ_i t_i². Each element
//     is squared in compute_t; blocks of elements are summed in float64 and the block sums are added in a fixed
//     order, so the result does not depend on timing.
//   scale_(ts, c): t ← t · c for every tensor, c rounded to compute_t (as mul_ by a scalar).
Tensor sum_of_squares(const std::vector<Tensor>& ts);
void scale_(const std::vector<Tensor>& ts, double c);

// ---------------------------------------------------------------------------------------------------------
// Residual add across dtypes: x + y with y converted to x's dtype first (x, y floating, same shape and device),
// a fresh contiguous tensor of x's dtype. The same values as add(x, y.to(x.dtype())); on CUDA a float32 x with a
// bfloat16 y is one pass (the mixed-precision residual stream adding a sublayer's bfloat16 output).
Tensor add_cast(const Tensor& x, const Tensor& y);

// ---------------------------------------------------------------------------------------------------------
// One AdamW step on one parameter, in place (SPEC §7.3; the optimizer in optim/adamw.cpp calls this):
//   p ← p · (1 − lr·wd);  m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²;
//   p ← p − (lr / bc1) · m / (sqrt(v) / bc2_sqrt + eps)          bc1 = 1 − β1^t, bc2_sqrt = sqrt(1 − β2^t)
// p and g: one floating dtype (float32, float64, bfloat16), same shape and device; m and v: the state dtype
// (float64 for float64 parameters, else float32). All contiguous. The math runs in the state dtype and a bfloat16
// parameter is rounded once, at the end. One pass over p, g, m, v (CPU and CUDA run adamw_element below).
struct AdamWCoefs {
  double decay = 1;  // 1 − lr·wd
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double step_size = 0;  // lr / bc1
  double bc2_sqrt = 1;
};
void adamw_step_(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, const AdamWCoefs& c);

// The per-element update of adamw_step_ in accumulation type A (shared by the CPU and the CUDA kernel).
template <typename A>
struct AdamWElem {
  A decay, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, step_size, bc2_sqrt;
  explicit AdamWElem(const AdamWCoefs& c)
      : decay(static_cast<A>(c.decay)), beta1(static_cast<A>(c.beta1)), one_minus_beta1(static_cast<A>(1 - c.beta1)),
        beta2(static_cast<A>(c.beta2)), one_minus_beta2(static_cast<A>(1 - c.beta2)), eps(static_cast<A>(c.eps)),
        step_size(static_cast<A>(c.step_size)), bc2_sqrt(static_cast<A>(c.bc2_sqrt)) {}
  HYDRA_HD void operator()(A& p, A g, A& m, A& v) const {
    m = m * beta1 + one_minus_beta1 * g;
    v = v * beta2 + one_minus_beta2 * (g * g);
    p = p * decay - step_size * (m / (std::sqrt(v) / bc2_sqrt + eps));
  }
};

}  // namespace hydra
