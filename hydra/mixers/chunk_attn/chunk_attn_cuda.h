#pragma once
// CUDA entry points of top-k chunk attention (math, shapes and the GPU contract in chunk_attn.h), called only from
// the CUDA branch of the dispatch functions in chunk_attn_cpu.cpp, which has already checked the arguments (shapes,
// devices, one dtype among float32 / bfloat16), made the inputs contiguous and allocated the outputs (contiguous, on
// q's device: idx int64, o and the gradients in q's dtype, lse float32). Host-only header: no CUDA types. Kernels:
// chunk_attn_cuda.cu; built without CUDA, chunk_attn_cuda_stub.cpp defines each entry point to throw "built without
// CUDA".
//
// The entry points check what only the kernels know, throwing std::invalid_argument naming the op, the value and
// the supported set: the head dims (K and V in 1..128) and topk (≤ 512 for the routing and for a backward with
// bias, whose per-row lists live in shared memory). None of them synchronises the host.
#include <cstdint>
#include <functional>
#include <string>

#include "tensor/tensor_core.h"

namespace hydra {

// q0 [B, T, H, K], summaries [B, n_c, H, K] -> idx [B, T, H, topk] (every element written).
void chunk_route_cuda(const Tensor& q0, const Tensor& summaries, const Tensor& idx, int64_t chunk, int64_t total_len);

// Checks idx [B, T, H, topk] against check_chunk_idx's rules (S key rows) on the device and hands the verdict to
// cuda::defer_device_check: the next synchronisation of the device raises message(code, value) for the first bad
// (b, t, h) row, where code = (((b·T + t)·H + h)·topk + i)·topk + i_first: i is the offending slot, i_first the
// first slot of a repeated chunk (0 for an out-of-range entry; a repeat is an entry with 0 <= value < c(p)).
void chunk_idx_check_cuda(const Tensor& idx, int64_t S, int64_t chunk,
                          std::function<std::string(int64_t, int64_t)> message);

// q [B, T, H, K], k [B, S, H, K], v [B, S, H, V], idx [B, T, H, topk], bias (same shape, or undefined)
// -> o [B, T, H, V] (q's dtype), lse [B, H, T] (float32). Invalid idx entries are skipped (never read out of range).
void chunk_attn_forward_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& idx, const Tensor& bias,
                             const Tensor& o, const Tensor& lse, int64_t chunk, double scale);

// do_, o [B, T, H, V] (q's dtype), lse [B, H, T] (float32, from chunk_attn_forward_cuda) -> dq, dk, dv (q's dtype,
// every element written; keys no query attends get zeros) and dbias (defined exactly when bias is).
void chunk_attn_backward_cuda(const Tensor& do_, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& idx,
                              const Tensor& bias, const Tensor& o, const Tensor& lse, const Tensor& dq,
                              const Tensor& dk, const Tensor& dv, const Tensor& dbias, int64_t chunk, double scale);

}  // namespace hydra
