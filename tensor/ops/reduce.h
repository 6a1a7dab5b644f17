#pragma once
// Reductions and scans: sum, mean, max/min/argmax/argmin, norm, softmax, log_softmax, logsumexp, cumsum, topk,
// plus the raw backward helpers their autograd wrappers use.
//
// Common rules:
// - Inputs may be strided views (they are made contiguous internally); outputs are fresh contiguous tensors.
// - Dims may be negative. A 0-d input behaves as a one-element tensor whose only dim is 0 (or -1).
// - keepdim keeps each reduced dim as a size-1 dim; otherwise it is removed.
// - Floating inputs (float32, float64, bfloat16) accumulate in float64 on the CPU and the result is rounded to
//   the input dtype at the end. Integer sums and cumsums accumulate in int64 (results keep the input dtype).
// - Index outputs (max/min/argmax/argmin/topk) are int64. Ties pick the lowest index. A NaN counts as larger
//   than every number (so max/argmax/topk-largest return it; min/argmin propagate it too).
#include <cstdint>
#include <vector>

#include "tensor/tensor_core.h"

namespace hydra {

// Values and their int64 positions along the reduced dim (max, min, topk).
struct ValuesIndices {
  Tensor values;
  Tensor indices;
};

// ---- sums and means ----
// Sum over `dims` (each may be negative; empty = all dims). Numeric dtypes. Summing over a size-0 dim gives 0.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor sum(const Tensor& x);  // all elements, 0-d result
// Sums a broadcast result back to `shape` (the inverse of expand): used by the backward of broadcasting ops.
Tensor sum_to(const Tensor& x, const Shape& shape);
// Mean over `dims` (empty = all dims). Floating dtypes only. The mean over zero elements is NaN.
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);  // all elements, 0-d result

// ---- extrema ----
// Largest value along `dim` and its index (first on ties). Numeric dtypes; the dim must not be empty.
ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor max(const Tensor& x);  // largest element, 0-d result; x must not be empty
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor min(const Tensor& x);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  // int64
Tensor argmax(const Tensor& x);  // flat (row-major) index of the largest element, 0-d int64
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmin(const Tensor& x);

// ---- norms ----
// p-norm over `dims` (empty = all dims): p = 2 gives sqrt(Σ x²), p = 1 gives Σ |x|. Other p throw. Floating only.
Tensor norm(const Tensor& x, double p, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor norm(const Tensor& x, double p = 2.0);  // over all elements, 0-d result

// ---- softmax family (floating only; numerically stable: the row max is subtracted first) ----
// softmax(x)_i = exp(x_i − m) / Σ_j exp(x_j − m), m = max_j x_j, along `dim`. Same shape as x.
Tensor softmax(const Tensor& x, int64_t dim = -1);
// log_softmax(x)_i = x_i − m − log Σ_j exp(x_j − m). Same shape as x.
Tensor log_softmax(const Tensor& x, int64_t dim = -1);
// logsumexp(x) = m + log Σ_j exp(x_j − m) along `dim`; −inf over an empty dim or an all −inf row.
Tensor logsumexp(const Tensor& x, int64_t dim, bool keepdim = false);

// ---- scans ----
// Inclusive prefix sum along `dim`: y_i = Σ_{j ≤ i} x_j. Numeric dtypes; same shape as x.
Tensor cumsum(const Tensor& x, int64_t dim);

// ---- top-k ----
// The k largest (largest = true) or smallest values along the LAST dim, sorted (descending, or ascending for
// smallest), with their int64 indices; equal values keep the lower index first. Output shape [..., k], k in
// [0, size(-1)]. Numeric dtypes; x needs at least one dim. Deterministic.
ValuesIndices topk(const Tensor& x, int64_t k, bool largest = true);

// ---- backward helpers (raw; used by the autograd layer) ----
// Gradient of max/min along `dim`: zeros of x_shape with grad_values[...] added at the position indices[...]
// names along `dim`. grad_values and indices have the reduced shape (with or without the kept dim, per keepdim).
Tensor max_backward(const Tensor& grad_values, const Tensor& indices, const Shape& x_shape, int64_t dim,
                    bool keepdim);
// Gradient of topk values: zeros of x_shape with grad_values[..., j] added at [..., indices[..., j]].
Tensor topk_backward(const Tensor& grad_values, const Tensor& indices, const Shape& x_shape);
// Gradient of cumsum: the reverse inclusive prefix sum along `dim`, g_i = Σ_{j ≥ i} grad_j.
Tensor cumsum_backward(const Tensor& grad, int64_t dim);

}  // namespace hydra
