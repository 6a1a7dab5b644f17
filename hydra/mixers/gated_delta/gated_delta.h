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
// Devices and dtypes (the dispatch lives in gated_delta_forward / _backward / _step; any strides: the dispatch
// functions copy non-contiguous inputs):
//  * CPU: float32 or float64, all inputs (and do, dfinal_state) one dtype; arithmetic and the state in that dtype;
//    outputs and gradients in it too.
//  * CUDA (gated_delta_cuda.cu, gated_delta_mma.cu): q, k, v and do float32 or bfloat16 (one dtype); alpha, beta,
//    initial_state / state and dfinal_state float32 or q's dtype (the model passes float32 gates with bfloat16 q, k,
//    v). Accumulation and the state are float32 in both cases. float32 inputs run gated_delta_cuda.cu:
//    true fp32 FFMA everywhere (no TF32, no tensor cores), chunk length 32. bfloat16 inputs run
//    gated_delta_mma.cu: chunk length 64, mma.sync m16n8k16 tensor cores with bf16 operands and fp32 accumulators;
//    q, k, v, do enter the products exactly, the intermediate operands (T = (I + A)⁻¹ scaled by the gates, Wk, Uv,
//    U, the chunk-start states and state gradients, dU, dW, the masked score matrices) are rounded to bf16 as MMA
//    operands, and every accumulation and the carried state are fp32 (results well inside the bf16 tolerance of
//    SPEC §0.1). T's diagonal 16×16 blocks are solved in fp32 SIMT and its off-diagonal blocks use tf32 MMAs; the
//    decays, the Horner sums for dα and the per-token dots are fp32 SIMT; the one-token step is fp32 SIMT for both
//    dtypes (gated_delta_cuda.cu).
//    o is in q's dtype; the final state (forward and step) is float32; gradients come back in the dtype of their
//    input. float64 or any other dtype on CUDA throws std::invalid_argument naming the op, the argument, the dtype
//    and the supported set.
//    Head dims K and V: 1 to 128 each (padded with zeros inside the kernels: float32 to multiples of 32, bfloat16
//    to one D ∈ {32, 64, 128} ≥ max(K, V)), else std::invalid_argument naming the range. Any B and any T ≥ 0;
//    initial state and dfinal_state optional.
//  * Not fused (done by the model before / after the call, on every device): the L2 normalisation of q and k, the
//    computation of the gates alpha = σ(·) and beta = σ(·), and the output gate.
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
//    On CUDA the `chunk` argument is checked (≥ 1) but not used: the kernels use their own chunk length, 32 for
//    float32 and 64 for bfloat16 (again only the summation order changes). The CUDA backward recomputes the
//    chunk-start states (one per chunk per head, kept in a scratch tensor for the duration of the call) by
//    re-running the forward's state pass, then walks the chunks in reverse; see gated_delta_cuda.cu (float32) and
//    gated_delta_mma.cu (bfloat16) for the kernel design.
//  * gated_delta_step: one token (decode), the recurrence applied once (CUDA: 16 lanes per state row).
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
// both outputs are differentiable. Saves the inputs (not the per-token states: backward recomputes them). Works
// on CUDA with the mixed dtypes above (e.g. bfloat16 q, k, v with float32 gates and a float32 initial state).
GatedDeltaOutput gated_delta(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& alpha,
                             const Tensor& beta, const Tensor& initial_state, int64_t chunk);
}  // namespace ag

}  // namespace hydra
