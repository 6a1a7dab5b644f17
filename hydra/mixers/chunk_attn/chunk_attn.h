#pragma once
// Top-k chunk attention (SPEC §2.11): the routing and the sparse exact attention of the retrieval mixer.
//
// Positions are absolute. Chunk c holds positions c·N .. c·N+N−1 (N = chunk size, SPEC retrieval_chunk_size).
// Layout (time-major):
//   q [B, T, H, K]   k [B, S, H, K]   v [B, S, H, V]   o [B, T, H, V]   lse [B, H, T]
// The key/value rows cover absolute positions 0 .. S−1 (in streaming: [bank | buffer | new]); query t is at
// absolute position p = S − T + t.
//
// Routing (chunk_route): summaries r [B, n_c, H, K] (one routing vector per complete chunk j < n_c, already
// mapped by the learned summary matrix if any), routing queries q0 [B, T, H, K]. For query t at position p:
//   candidates j < min(c(p), n_c), score s_{t,j} = q0_t · r_j (accumulated in float64 on CPU, no scale),
//   selected = the topk highest scores, ties to the lower j; fewer when fewer candidates exist.
// Result idx [B, T, H, topk] int64: the selected chunk ids in descending score order, then −1 padding.
// Cost O(T · n_c · K) per head. Not differentiable (SPEC §2.11.5).
//
// Attention (chunk_attn_forward): query t attends to
//   A_t = { all positions of chunk j : j in idx[t], j ≥ 0 }  ∪  { c(p)·N .. p }   (own chunk, causal)
//   logit_{t,m} = scale · q_t·k_m  (+ bias[t, i] for every m in the i-th selected chunk, when bias is given)
//   o_t = Σ_{m∈A_t} softmax(logit)_m v_m;  lse_t = log Σ exp(logit).
// The idx entries must be distinct complete chunks before c(p) (checked; an invalid entry throws naming it).
// bias [B, T, H, topk] (optional, same dtype as q) is the straight-through term of the learned summary
// (SPEC §2.11.7): the model passes ρ − stopgrad(ρ), whose value is 0, and receives
//   dbias[t, i] = Σ_{m in chunk idx[t,i]} dlogit_{t,m}.
// Time O(T·(topk+1)·N·K), memory O(T·topk) besides inputs and outputs; never a T×S matrix.
// Backward recomputes probabilities from q, k and lse (D_t = do_t·o_t; dlogit = P ⊙ (dP − D)).
//
// Dtypes: float32 or float64, one dtype for q, k, v, bias (and q0, summaries); lse in that dtype; idx int64.
// CPU (CUDA with the GPU issue). Non-contiguous inputs are copied to contiguous first.
// Sizes: chunk ≥ 1, topk ≥ 0 (topk = 0: idx [B, T, H, 0], only the own chunk is attended), T ≤ S.
//
// Algorithms (chunk_attn_cpu.cpp):
//   chunk_route: tasks over (b, h, block of 64 queries); the candidate summaries are widened to float64 once
//     per task, each query scores its candidates (fixed 4-lane float64 dot products, so identical summaries
//     give identical scores) and std::partial_sort picks the topk.
//   forward: one task per (b, h, t); one online-softmax step per attended chunk (the selected ones in idx
//     order, then the own chunk's causal part), with float-typed GEMVs over the chunk's strided key rows.
//   backward: one task per (b, h) with t looped inside, so the dk/dv rows of (b, h) have one writer (no races,
//     results independent of the thread count); parallelism is B·H.
// chunk_attn_ref (chunk_attn_ref.cpp): dense attention with the routed mask in float64, tests only.
#include <cstdint>

#include "tensor/tensor_core.h"

namespace hydra {

Tensor chunk_route(const Tensor& q0, const Tensor& summaries, int64_t chunk, int64_t topk, int64_t total_len);
// total_len = S (the absolute position of query t is total_len − T + t).

struct ChunkAttnOutput {
  Tensor o;    // [B, T, H, V]
  Tensor lse;  // [B, H, T]
};

struct ChunkAttnGrads {
  Tensor dq;     // [B, T, H, K]
  Tensor dk;     // [B, S, H, K]
  Tensor dv;     // [B, S, H, V]
  Tensor dbias;  // [B, T, H, topk]; undefined when bias was undefined
};

ChunkAttnOutput chunk_attn_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& idx,
                                   const Tensor& bias, int64_t chunk, double scale);
ChunkAttnGrads chunk_attn_backward(const Tensor& do_, const Tensor& q, const Tensor& k, const Tensor& v,
                                   const Tensor& idx, const Tensor& bias, const Tensor& o, const Tensor& lse,
                                   int64_t chunk, double scale);

// Checks idx [B, T, H, topk] int64 against the attention contract for S key rows: every entry is −1 (padding)
// or a chunk j with 0 ≤ j < c(p) (complete and before the query's own chunk), and the non-negative entries of
// one (b, t, h) row are distinct. Throws std::invalid_argument naming `op`, b, t, h, the slot i and the value.
// (Shape and dtype are checked by the callers.) Used by chunk_attn_forward/_backward and chunk_attn_ref.
void check_chunk_idx(const Tensor& idx, int64_t S, int64_t chunk, const char* op);

// float64 references (tests only): routing by brute force, attention with a dense T×S routed mask. The
// attention references are compositions of ag:: primitives, so with inputs that require grad the autograd
// engine gives reference gradients for q, k, v and bias. chunk_attn_ref_lse returns lse [B, H, T] (float64).
Tensor chunk_route_ref(const Tensor& q0, const Tensor& summaries, int64_t chunk, int64_t topk, int64_t total_len);
Tensor chunk_attn_ref(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& idx, const Tensor& bias,
                      int64_t chunk, double scale);
Tensor chunk_attn_ref_lse(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& idx, const Tensor& bias,
                          int64_t chunk, double scale);

namespace ag {
// Differentiable chunk attention: gradients reach q, k, v and bias (idx is a constant). Saves q, k, v, idx, o,
// lse and bias (when defined: its value enters the recomputed probabilities).
Tensor chunk_attn(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& idx, const Tensor& bias,
                  int64_t chunk, double scale);
}  // namespace ag

}  // namespace hydra
