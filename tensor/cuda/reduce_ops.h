#pragma once
// CUDA entry points of the reduction family (tensor/ops/reduce.h), called only from the CUDA branch of the
// dispatch functions in tensor/ops/reduce.cpp, which have already validated arguments, made the input
// contiguous and allocated the outputs (contiguous, on the input's device). Host-only header: no CUDA types.
// Built without CUDA, tensor/cuda/reduce_ops_stub.cpp defines each one to throw.
//
// Layouts, as in reduce.cpp:
// - rows:  x is (outer, inner) contiguous; out[o] reduces x[o*inner .. o*inner + inner).
// - lines: x is (outer, n, inner) contiguous; line l = o*inner + j holds x[o*n*inner + i*inner + j], i < n.
#include <cstdint>

#include "tensor/tensor_core.h"

namespace hydra::cuda {

enum class RowReduce { Sum, Mean, SumAbs, SqrtSumSquares };
enum class SoftmaxKind { Softmax, LogSoftmax, LogSumExp };

// out[o] = Σ / mean / Σ|x| / sqrt(Σ x²) of row o. Numeric dtypes for Sum, floating for the rest. out: outer elems.
void reduce_rows(const Tensor& x, const Tensor& out, int64_t outer, int64_t inner, RowReduce mode);

// Max (want_max) or min of each line and the index of its first occurrence (NaN wins, first NaN on several).
// values may be undefined (argmax/argmin); indices int64. Both have outer*inner elements (line order). n > 0.
void extreme_lines(const Tensor& x, const Tensor& values, const Tensor& indices, int64_t outer, int64_t n,
                   int64_t inner, bool want_max);

// softmax / log_softmax (y has x's layout) or logsumexp (y has outer*inner elements, line order). Floating.
void softmax_lines(const Tensor& x, const Tensor& y, int64_t outer, int64_t n, int64_t inner, SoftmaxKind mode);

// Inclusive prefix sums of each line (reverse: suffix sums); y has x's layout. Numeric dtypes.
void cumsum_lines(const Tensor& x, const Tensor& y, int64_t outer, int64_t n, int64_t inner, bool reverse);

// The k best of each contiguous row of n elements, sorted best first (largest: descending, else ascending;
// NaN ranks above every number; ties by lower index). values (x's dtype) and indices (int64) are (rows, k).
void topk_rows(const Tensor& x, const Tensor& values, const Tensor& indices, int64_t rows, int64_t n, int64_t k,
               bool largest);

// out (outer, n, inner), already zero, += g (outer, k, inner) scattered along the middle axis by idx (int64, same
// layout as g). Floating g/out. Returns false, with one offending index in *bad_index, when some index is outside
// [0, n) (those entries are skipped); waits for the device to read that verdict.
bool scatter_add_lines(const Tensor& g, const Tensor& idx, const Tensor& out, int64_t outer, int64_t k, int64_t n,
                       int64_t inner, int64_t* bad_index);

}  // namespace hydra::cuda
