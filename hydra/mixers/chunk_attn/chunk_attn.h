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
// Dtypes (CPU): float32 or float64, one dtype for q, k, v, bias (and q0, summaries); lse in that dtype; idx int64.
// Non-contiguous inputs are copied to contiguous first (both devices).
// Sizes: chunk ≥ 1, topk ≥ 0 (topk = 0: idx [B, T, H, 0], only the own chunk is attended), T ≤ S.
//
// GPU contract (chunk_attn_cuda.cu; all operands on one device, kernels on its compute stream, no host sync):
//   * q, k, v, bias, do, o (and q0, summaries) are float32 or bfloat16, one dtype; idx int64. float64 on CUDA
//     throws std::invalid_argument naming the op, the argument, the dtype and the supported set.
//   * Arithmetic is float32 throughout (scores, routing dot products, softmax statistics, lse, accumulators):
//     true FFMA, no TF32. o and every gradient are in q's dtype; lse is float32 on CUDA whatever q's dtype
//     (chunk_attn_backward on CUDA requires a float32 lse).
//   * Head dims K, V in 1..128 (compile-time widths 32 / 64 / 128 with masking); outside: an error naming the range.
//     topk ≤ 512 for chunk_route and for a backward with bias (per-row lists in shared memory).
//   * No tensor cores: a SIMT implementation (warp per query row, lane per key of a 32-key tile for the dot
//     products, lane per dim for the value sums). bfloat16 inputs are widened to float on load.
//   * chunk_route: fused, one warp per (b, t, h); scores q0·r_j in float32 computed on the fly, the top-k kept
//     sorted in shared memory; never a T × n_c score matrix in memory. Descending score, ties to the lower j,
//     −1 padding, as on the CPU (which accumulates in float64: the two agree when scores are separated by more
//     than float32 rounding; identical summaries score identically on both, so exact ties behave alike).
//   * Attention: per query, online softmax over the selected chunks then the own chunk's causal part; cost
//     O(T·(topk+1)·N·(K+V)). Backward: dq and dbias per query (recomputing P from q, k and lse; D = do·o),
//     dk/dv by a gather over inverse routing lists built on the device (each key tile sums the queries of its own
//     chunk and the queries that selected its chunk, in increasing t): no float atomics, every dk/dv element has
//     one writer, results are run-to-run deterministic.
//   * idx is validated on the device by the rules of check_chunk_idx; the verdict goes through
//     cuda::defer_device_check, so the first bad entry (same message: op, b, t, h, slot, value) is raised as
//     std::invalid_argument by the next synchronisation of the device (synchronize(), item(), a copy to the
//     CPU). The kernels skip invalid entries (no out-of-range access); the outputs of that call are unspecified.
//
// Algorithms (CPU, chunk_attn_cpu.cpp):
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
  Tensor lse;  // [B, H, T]; float32 on CUDA, q's dtype on the CPU
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
// (Shape and dtype are checked by the callers.) Used by the CPU chunk_attn_forward/_backward and chunk_attn_ref;
// a CUDA idx is copied to the CPU (so this synchronises; the CUDA ops check on the device instead).
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
