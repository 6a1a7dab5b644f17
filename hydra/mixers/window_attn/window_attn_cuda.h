#pragma once
// CUDA entry points of windowed causal attention (math, shapes and the GPU contract in window_attn.h), called only
// from the CUDA branch of the dispatch functions in window_attn_cpu.cpp, which has already run
// window_attn_check_args, made the inputs contiguous and allocated the outputs (contiguous, on q's device: o and
// the gradients in q's dtype, lse float32). Host-only header: no CUDA types. Kernels: window_attn_cuda.cu; built
// without CUDA, window_attn_cuda_stub.cpp defines each entry point to throw "built without CUDA".
//
// Both check what only the kernels know: the dtype (float32 or bfloat16) and the head dims (K and V in 1..128),
// throwing std::invalid_argument naming the op, the argument, the value and the supported set.
#include <cstdint>

#include "tensor/tensor_core.h"

namespace hydra {

// q [B, T, H, K], k [B, S, H, K], v [B, S, H, V] -> o [B, T, H, V] (q's dtype), lse [B, H, T] (float32).
void window_attn_forward_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                              int64_t window, double scale);

// do_, o [B, T, H, V] (q's dtype) and lse [B, H, T] (float32, from window_attn_forward_cuda) -> dq, dk, dv (q's
// dtype, every element written; cache rows no query sees get zeros).
void window_attn_backward_cuda(const Tensor& do_, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                               const Tensor& lse, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                               int64_t window, double scale);

}  // namespace hydra
