#pragma once
// Indexing ops: concatenation and splitting along a dim, index_select / gather / scatter_add along a dim, and the
// embedding lookup with its (deterministic) backward. Raw ops: nothing here records gradients (the
// differentiable forms are in autograd/functions/indexing.h).
//
// Conventions shared by every op:
// - `dim` may be negative (counts from the end); the tensors must have rank >= 1.
// - Inputs may be strided views (transposes, slices); outputs of the copying ops are fresh contiguous tensors.
//   split/chunk return views that share x's storage.
// - Index tensors are int32 or int64. Index values must lie in [0, n) where n is the size of the indexed dim;
//   negative values are not wrapped. A bad value throws std::invalid_argument naming the op, the value, its flat
//   (row-major) position in the index tensor (the smallest bad one) and the valid range.
//   On the CPU it throws from the op itself, before anything is written. On CUDA the check runs on the device and
//   is not waited for (no host synchronisation per call): the same error is raised at the next synchronisation
//   point of that device (cuda::synchronize, item(), to(cpu) or any device-to-host copy, or a later deferred
//   check). The op has then already run with the bad index; its kernels are memory-safe for any index value
//   (gathers read 0, scatters skip the position), but its results are unspecified.
// - gather/index_select/concat accept every dtype (bool included); scatter_add/index_add need a numeric dtype.
//   bfloat16 accumulation in scatter_add/index_add/embedding_backward is done in float32 (or float64) and
//   rounded once at the end.
// - Results do not depend on the OpenMP thread count: every output element is written by one thread, and the
//   accumulating ops add their contributions in a fixed order (increasing position along the indexed dim).
#include <cstdint>
#include <vector>

#include "tensor/tensor_core.h"

namespace hydra {

// ---- concatenation / splitting ----

// Joins `xs` along `dim`. All tensors: same dtype, device and rank, equal sizes in every dim but `dim`.
// Empty pieces (size 0 along dim) are allowed. out.size(dim) = Σ xs[i].size(dim).
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
// Joins equal-shape tensors along a new dim `dim` (in [-(rank+1), rank]): unsqueeze + concat.
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);
// Views of consecutive pieces of x along dim with the given sizes (each >= 0, summing to x.size(dim)).
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
// n >= 1 views of at most ceil(S/n) elements each along dim (S = x.size(dim)); the last may be smaller and, as in
// PyTorch, fewer than n pieces come back when S does not fill them (S=6, n=4 -> sizes 2,2,2). S=0 gives n empty
// pieces.
std::vector<Tensor> chunk(const Tensor& x, int64_t n, int64_t dim);

// ---- selection along a dim ----

// out has x's shape with out.size(dim) = idx.numel(); out[..., k, ...] = x[..., idx[k], ...]. idx is 1-D.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& idx);
// out = x, then out[..., idx[k], ...] += src[..., k, ...] for every k (repeated indices accumulate). idx 1-D;
// src has x's shape except src.size(dim) = idx.numel(). The backward of index_select.
Tensor index_add(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& src);
// PyTorch gather: out has idx's shape, out[i_0..i_{r-1}] = x[i_0.., idx[i_0..i_{r-1}] (at dim), ..i_{r-1}].
// idx has x's rank and idx.size(d) <= x.size(d) for d != dim.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& idx);
// PyTorch scatter_add: out = base, then for every position p of idx: out[p with p[dim] = idx[p]] += src[p].
// idx, src and base have one rank; idx.size(d) <= src.size(d) for all d and idx.size(d) <= base.size(d) for
// d != dim (src elements outside idx's shape are ignored). Same dtype for base and src.
Tensor scatter_add(const Tensor& base, int64_t dim, const Tensor& idx, const Tensor& src);
// In place on dst (which must not have broadcast dims); same contract as scatter_add.
Tensor& scatter_add_(Tensor& dst, int64_t dim, const Tensor& idx, const Tensor& src);

// ---- embedding (SPEC §2.2) ----

// weight (V, C), ids of any shape -> ids.shape + [C]; out[p, :] = weight[ids[p], :]. ids in [0, V).
Tensor embedding(const Tensor& weight, const Tensor& ids);
// grad (ids.shape + [C]) -> dweight (V, C) with dweight[v, :] = Σ_{p: ids[p] = v} grad[p, :], summed in increasing
// flat position p (bit-identical for any thread count; float64 accumulation for floating grads). Rows equal
// to padding_idx get zero (-1 = no padding row; else padding_idx in [0, V)). Output dtype = grad's dtype.
Tensor embedding_backward(const Tensor& grad, const Tensor& ids, int64_t num_rows, int64_t padding_idx = -1);

}  // namespace hydra
