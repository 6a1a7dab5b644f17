#pragma once
// Gated delta rule (SPEC §2.7 step 5, §2.8): the recurrence at the heart of the Gated DeltaNet mixer.
//
// Layout (time-major, as the projections produce it; no transposes needed by the caller):
//   q, k  [B, T, H, K]     v [B, T, H, V]     alpha, beta [B, T, H]     state [B, H, V, K] (row = value dim)
// Per (b, h), with S₀ = initial state (zeros when undefined):
//   u_t = beta_t · (v_t − alpha_t · S_{t−1} k_t)
//   S_t = alpha_t · S_{t−1} + u_t k_tᵀ
//   o_t = S_t q_t                                  (no 1/√K scaling)
// Outputs o [B, T, H, V] and the final state S_T [B, H, V, K].
//
// Dtypes: float32 or float64, all inputs one dtype, CPU (the CUDA kernel arrives with the GPU issue; dispatch
// lives in gated_delta_forward/backward). The state is carried in the input dtype. Inputs must be contiguous
// (the dispatch functions copy non-contiguous ones).
//
// Algorithms:
//  * gated_delta_forward/backward (gated_delta_cpu.cpp): chunkwise parallel, chunk length `chunk` (SPEC
//    dn_chunk_size; T need not be a multiple of it). The math is the exact recurrence; the chunking changes only
//    the summation order. Per chunk: the WY/UT form, a unit lower-triangular system for the chunk's u_t solved by
//    forward substitution, with the decay products Π α built as running products (no logs, no clamp, no division,
//    so α may be tiny or 0). Backward is chunkwise too (the adjoint of the chunk computation, triangular solve
//    included): it recomputes the per-chunk start states from the saved inputs (T/chunk states per head being
//    processed, never one per token) and walks the chunks in reverse. Time O(T·(chunk·(K + V) + V·K)) per head.
//    Arithmetic is in the input dtype. T = 0 is allowed (the final state is then the initial one).
//  * gated_delta_step: one token (decode), the recurrence applied once.
//  * gated_delta_ref (gated_delta_ref.cpp): the token-by-token recurrence in float64, for tests only. It is a
//    composition of ag:: primitives: with inputs that require grad, ag::backward through it gives reference
//    gradients (inputs of another floating dtype are cast to float64 and get their gradient in their own dtype).
//
// Gradients: q, k, v, alpha, beta and the initial state, from upstream gradients of o and (optionally) of the
// final state. The gradient of alpha is that of the exact recurrence (no clamp).
#include <cstdint>

#include "tensor/tensor_core.h"

namespace hydra {

struct GatedDeltaOutput {
  Tensor o;            // [B, T, H, V]
  Tensor final_state;  // [B, H, V, K]
};

struct GatedDeltaGrads {
  Tensor dq, dk, dv;      // like q, k, v
  Tensor dalpha, dbeta;   // [B, T, H]
  Tensor dinitial_state;  // [B, H, V, K]; undefined when initial_state was undefined
};

GatedDeltaOutput gated_delta_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& alpha,
                                     const Tensor& beta, const Tensor& initial_state, int64_t chunk);
// do_ [B, T, H, V]; dfinal_state [B, H, V, K] or undefined (zeros).
GatedDeltaGrads gated_delta_backward(const Tensor& do_, const Tensor& dfinal_state, const Tensor& q,
                                     const Tensor& k, const Tensor& v, const Tensor& alpha, const Tensor& beta,
                                     const Tensor& initial_state, int64_t chunk);

// One token: q, k [B, H, K], v [B, H, V], alpha, beta [B, H], state [B, H, V, K] or undefined.
// Returns o [B, H, V] and the new state. No gradients (decode only).
GatedDeltaOutput gated_delta_step(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& alpha,
                                  const Tensor& beta, const Tensor& state);

// float64 token-by-token reference (tests only). Same I/O as gated_delta_forward.
GatedDeltaOutput gated_delta_ref(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& alpha,
                                 const Tensor& beta, const Tensor& initial_state);

namespace ag {
// Differentiable gated delta rule: gradients reach q, k, v, alpha, beta and initial_state (when they require grad);
// both outputs are differentiable. Saves the inputs (not the per-token states: backward recomputes them).
GatedDeltaOutput gated_delta(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& alpha,
                             const Tensor& beta, const Tensor& initial_state, int64_t chunk);
}  // namespace ag

}  // namespace hydra
