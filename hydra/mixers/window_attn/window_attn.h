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
// Dtypes, CPU: float32 or float64, one dtype for q, k, v; o, lse and the gradients in that dtype.
//
// GPU contract (window_attn_cuda.cu):
//   * q, k, v float32 or bfloat16 (one dtype); anything else (float64 included) throws std::invalid_argument naming
//     the op, the argument, the dtype and the supported set. Products and sums are accumulated in float32 and the
//     softmax statistics are float32. o and the gradients are in q's dtype; lse is float32 whatever q's dtype, and
//     the backward takes that float32 lse. float32 inputs are computed in true fp32 (FFMA, no TF32); bfloat16
//     inputs use tensor cores (mma.sync bf16 m16n8k16, fp32 accumulation, scores and accumulators in registers)
//     for Q·Kᵀ, P·V, dO·Vᵀ, dS·K, Pᵀ·dO and dSᵀ·Q, with the probabilities and dS rounded to bf16 as GEMM operands.
//   * Head dims K and V each from 1 to 128 (compile-time variants 32/64/128, the unused tail zero-padded); others
//     throw naming the op, the head dim and the supported range.
//   * Flash-style tiles in shared memory with an online softmax, O(T·W) work; key tiles outside a query tile's window
//     are never read. Backward: one kernel over query tiles for dq, one over key tiles for dk, dv (all S rows), plus a
//     small D = do·o kernel; no atomics, every output element written once: deterministic run to run. No host
//     synchronisation; kernels run on the device's compute stream; scratch through the caching allocator.
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

// Calling rules (window_attn_cpu.cpp): window ≥ 1 (a window ≥ S is full causal attention); scale finite;
// non-contiguous inputs are copied to contiguous; outputs are fresh contiguous tensors; results do not depend on the
// thread count. Backward takes do_ [B, T, H, V] (the gradient of o) and the o and lse that forward returned for the
// same q, k, v, window and scale, all of q's dtype and device; it always computes all three gradients, and cache
// rows that no query sees (m ≤ P − W) get zero dk, dv. On CUDA lse is float32 (see the GPU contract above).
WindowAttnOutput window_attn_forward(const Tensor& q, const Tensor& k, const Tensor& v, int64_t window,
                                     double scale);
WindowAttnGrads window_attn_backward(const Tensor& do_, const Tensor& q, const Tensor& k, const Tensor& v,
                                     const Tensor& o, const Tensor& lse, int64_t window, double scale);

// float64 dense reference (tests only): builds the T×S masked logits. Composed of ag:: primitives (per-(b, h)
// batched matmul, masked_fill with −∞, softmax, matmul), so float64 leaves get reference gradients from the
// autograd engine. Inputs of either accepted dtype are cast to float64 (the cast is differentiable).
Tensor window_attn_ref(const Tensor& q, const Tensor& k, const Tensor& v, int64_t window, double scale);

// The sizes of one call. Checked by window_attn_check_args, shared by the forward, the backward and the reference:
// q, k, v defined, on one device, of one dtype (float32 or float64 on the CPU, float32 or bfloat16 on CUDA), of
// rank 4 with matching B, H and K, v's S equal to k's, S ≥ T, window ≥ 1. Errors name the op, the argument and the
// shapes expected and got.
struct WindowAttnDims {
  int64_t B, T, S, H, K, V;
  int64_t P;  // S − T cache rows
};
WindowAttnDims window_attn_check_args(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                                      int64_t window);

namespace ag {
// Differentiable windowed attention: gradients reach q, k and v. Saves q, k, v, o and lse.
Tensor window_attn(const Tensor& q, const Tensor& k, const Tensor& v, int64_t window, double scale);
}  // namespace ag

}  // namespace hydra
