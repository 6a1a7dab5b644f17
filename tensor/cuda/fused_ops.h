#pragma once
// CUDA entry points of the fused hot-path ops (tensor/ops/fused.h), called only from the CUDA branch of each op's
// dispatch function in tensor/ops/fused.cpp, which has already validated the arguments, made the inputs contiguous
// and allocated the outputs (contiguous, on the inputs' device). Host-only header: no CUDA types.
// Built without CUDA, tensor/cuda/fused_ops_stub.cpp defines each one to throw. Kernels: tensor/cuda/fused_cuda.cu.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tensor/ops/fused.h"
#include "tensor/tensor_core.h"

namespace hydra::cuda {

// RMSNorm: x (N·D contiguous), w (D) -> y (x's shape; x's dtype, or bfloat16 for a float32 x), rstd (N, stat
// dtype). Backward: gy in x's dtype, or bfloat16 for a float32 x.
void rms_norm_forward(const Tensor& x, const Tensor& w, const Tensor& y, const Tensor& rstd, double eps);
// -> dx (x's shape), dw (D). dw is deterministic (per-chunk partial column sums, then a fixed-order reduction).
void rms_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dx,
                       const Tensor& dw);

// Cross-entropy forward: logits (N·V contiguous), targets (N, int32/int64) -> loss (0-d), lse (N), stat dtype.
// The targets are checked on the device without stopping the host: the first row whose target is neither
// ignore_index nor in [0, V) is handed to cuda::defer_device_check (backend.h) with bad_target_message(row, value),
// so the error is raised by the next synchronisation of the device. When a target is bad the outputs are
// unspecified.
void cross_entropy_forward(const Tensor& logits, const Tensor& targets, const Tensor& loss, const Tensor& lse,
                           int64_t ignore_index, std::function<std::string(int64_t, int64_t)> bad_target_message);
// dlogits (N·V). gloss (one element, any floating dtype, on the device) is read by the kernel: no host sync.
// n_valid is counted on the device. Targets are not re-validated (forward did it): a row whose target is out of
// range is treated like an ignored row's one-hot (no index is read out of bounds), it is not reported.
void cross_entropy_backward(const Tensor& gloss, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                            const Tensor& dlogits, int64_t ignore_index);

// L2 normalisation over the last dim: x (N·D) -> y, norm (N, stat dtype); backward gy, y, norm -> dx.
void l2_normalize_forward(const Tensor& x, const Tensor& y, const Tensor& norm, double eps);
void l2_normalize_backward(const Tensor& gy, const Tensor& y, const Tensor& norm, const Tensor& dx, double eps);

// Rotary embedding of x (..., T, D) contiguous into y: sign = +1 rotates by θ (forward), −1 by −θ (backward).
void rotary(const Tensor& x, const Tensor& y, int64_t position_offset, double base, double sign);

// Causal depthwise conv1d (shapes in tensor/ops/fused.h). bias / cache / new_cache may be undefined (or empty).
void causal_conv1d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& cache, const Tensor& y,
                           const Tensor& new_cache);
// g_new_cache, dbias, dcache may be undefined. dw/dbias are deterministic (partial sums, fixed-order reduction).
void causal_conv1d_backward(const Tensor& gy, const Tensor& g_new_cache, const Tensor& x, const Tensor& w,
                            const Tensor& cache, const Tensor& dx, const Tensor& dw, const Tensor& dbias,
                            const Tensor& dcache);

// SwiGLU gating (tensor/ops/fused.h) of contiguous u (..., 2F) into y (..., F); backward into du (..., 2F).
void swiglu_forward(const Tensor& u, const Tensor& y);
void swiglu_backward(const Tensor& gy, const Tensor& u, const Tensor& du);

// sum_of_squares / scale_ (tensor/ops/fused.h) over a checked, non-empty list on one CUDA device; `out` is a 0-d
// float64 tensor there.
void sum_of_squares(const std::vector<Tensor>& ts, const Tensor& out);
void scale_(const std::vector<Tensor>& ts, double c);
// out = x + y: x and out float32, y bfloat16, all contiguous with one shape.
void add_cast(const Tensor& x, const Tensor& y, const Tensor& out);

// One fused AdamW step (tensor/ops/fused.h), all operands contiguous and checked by the caller.
void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, const AdamWCoefs& c);

}  // namespace hydra::cuda
