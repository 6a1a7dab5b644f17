#pragma once
// CUDA entry points of the gated delta rule (contract in gated_delta.h), called only from the CUDA branch of the
// dispatch functions in gated_delta_cpu.cpp, which have already checked shapes, dtypes and devices and made every
// input contiguous. Host-only header: no CUDA types. Kernels: gated_delta_cuda.cu; a build without CUDA links
// gated_delta_cuda_stub.cpp instead, whose entry points throw.
//
// q, k, v (and do) float32 or bfloat16 (one dtype); alpha, beta, initial_state / state and dfinal_state float32 or
// q's dtype. Each function allocates its outputs on q's device: o in q's dtype, the (final) state float32, the
// gradients in the dtype of their input. Throws std::invalid_argument when K or V is outside 1..128.
#include "hydra/mixers/gated_delta/gated_delta.h"

namespace hydra {

GatedDeltaOutput gated_delta_forward_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& alpha,
                                          const Tensor& beta, const Tensor& initial_state);
GatedDeltaGrads gated_delta_backward_cuda(const Tensor& do_, const Tensor& dfinal_state, const Tensor& q,
                                          const Tensor& k, const Tensor& v, const Tensor& alpha, const Tensor& beta,
                                          const Tensor& initial_state);
GatedDeltaOutput gated_delta_step_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& alpha,
                                       const Tensor& beta, const Tensor& state);

}  // namespace hydra
