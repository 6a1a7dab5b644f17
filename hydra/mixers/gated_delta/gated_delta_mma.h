#pragma once
// The bfloat16 tensor-core forward and backward of the gated delta rule (gated_delta_mma.cu), called only from
// gated_delta_forward_cuda / gated_delta_backward_cuda (gated_delta_cuda.cu) for bfloat16 q, k, v after they have
// checked the arguments and made every input contiguous. Host-only header.
//
// alpha, beta: float32 [B, T, H]; initial_state: float32 [B, H, V, K] or undefined. Returns o (bfloat16
// [B, T, H, V]) and the float32 final state [B, H, V, K], allocated on q's device.
#include "hydra/mixers/gated_delta/gated_delta.h"

namespace hydra {

GatedDeltaOutput gated_delta_forward_mma(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& alpha,
                                         const Tensor& beta, const Tensor& initial_state);

// The backward: do_ bfloat16 like q; dfinal_state float32 or undefined; alpha, beta, initial_state as above. dq, dk,
// dv bfloat16, dalpha, dbeta float32, dinitial_state float32 (undefined without an initial state).
GatedDeltaGrads gated_delta_backward_mma(const Tensor& do_, const Tensor& dfinal_state, const Tensor& q,
                                         const Tensor& k, const Tensor& v, const Tensor& alpha, const Tensor& beta,
                                         const Tensor& initial_state);

}  // namespace hydra
