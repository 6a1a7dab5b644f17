#pragma once
// Windowed causal softmax attention (SPEC §2.10): the kernel of the sliding-window attention mixer.
//
// Layout (time-major):  q [B, T, H, K]   k [B, S, H, K]   v [B, S, H, V]   o [B, T, H, V]   lse [B, H, T]
// with S ≥ T: the key/value rows are [cache | new], where the first P = S − T rows come from earlier calls and
// query t sits at key index P + t. Query t sees key m iff
//        P + t − W < m ≤ P + t                                  (W = window ≥ 1)
//   o_t = Σ_m softmax_m(scale · q_t·k_m) v_m,   lse_t = log Σ_m exp(scale · q_t·k_m)   over the visible m.
// RoPE is applied by the caller (keys in the cache are stored rotated). scale is usually 1/√K.
//
// Dtypes: float32 or float64, one dtype for q, k, v; lse in the same dtype. CPU (CUDA with the GPU issue).
//
// Algorithm (window_attn_cpu.cpp): tiled over queries and keys with an online softmax (running max and sum);
// key tiles entirely outside a query tile's window are never visited, so time is O(T·W·K) and extra memory
// O(tile²), never a T×S matrix. Backward recomputes the probabilities from q, k and the saved lse
// (flash-attention style: D_t = Σ do_t·o_t; dS = P ⊙ (dP − D)).
// window_attn_ref (window_attn_ref.cpp): dense masked softmax in float64, tests only.
#include <cstdint>

#include "tensor/tensor_core.h"

namespace hydra {

struct WindowAttnOutput {
  Tensor o;    // [B, T, H, V]
  Tensor lse;  // [B, H, T]  (saved for backward)
};

struct WindowAttnGrads {
  Tensor dq;  // [B, T, H, K]
  Tensor dk;  // [B, S, H, K]  (rows of the cache included)
  Tensor dv;  // [B, S, H, V]
};

WindowAttnOutput window_attn_forward(const Tensor& q, const Tensor& k, const Tensor& v, int64_t window,
                                     double scale);
WindowAttnGrads window_attn_backward(const Tensor& do_, const Tensor& q, const Tensor& k, const Tensor& v,
                                     const Tensor& o, const Tensor& lse, int64_t window, double scale);

// float64 dense reference (tests only): builds the T×S masked logits.
Tensor window_attn_ref(const Tensor& q, const Tensor& k, const Tensor& v, int64_t window, double scale);

namespace ag {
// Differentiable windowed attention: gradients reach q, k and v. Saves q, k, v, o and lse.
Tensor window_attn(const Tensor& q, const Tensor& k, const Tensor& v, int64_t window, double scale);
}  // namespace ag

}  // namespace hydra
