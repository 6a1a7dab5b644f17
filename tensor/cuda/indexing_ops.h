#pragma once
// The CUDA entry points of the indexing ops (tensor/ops/indexing.h), called only from the CUDA branch of each op's
// dispatch function in tensor/ops/indexing.cpp, which has already checked shapes, dtypes and devices, wrapped
// `dim`, validated the index values (through first_bad_index) and allocated the outputs on the right device.
// Host-only header: no CUDA types. Built without CUDA, tensor/cuda/indexing_ops_stub.cpp defines each one to throw.
// Kernels and their design: tensor/cuda/indexing_cuda.cu.
#include <cstdint>
#include <vector>

#include "tensor/tensor_core.h"

namespace hydra::cuda {

// The smallest flat (row-major) position of idx (int32/int64, any strides, on a CUDA device) whose value lies
// outside [0, n), or -1 when every value is in range; *value receives the bad value. Synchronizes the stream.
int64_t first_bad_index(const Tensor& idx, int64_t n, int64_t* value);

// out (fresh, contiguous) = the xs joined along dim: one strided copy per non-empty piece into out.narrow(dim, ..).
void concat(const std::vector<Tensor>& xs, int64_t dim, const Tensor& out);

// out[p] = x[p with p[dim] replaced by idx[p]]. out and idx have one shape (idx may be a stride-0 broadcast view:
// index_select and embedding pass one); x has their rank. Every dtype; idx int32/int64; any strides.
void gather(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& out);

// In place: for each position p of idx, dst[p with p[dim] replaced by idx[p]] += src[p], the additions into each
// element in increasing p[dim] (deterministic, bit-identical to the CPU kernel). dst has no broadcast dims;
// numeric dtypes; bfloat16 accumulates in float32 and is rounded once.
void scatter_add(const Tensor& dst, int64_t dim, const Tensor& idx, const Tensor& src);

// out (V, C) contiguous: out[v] = Σ_{p: ids[p] = v} grad[p] in increasing flat position p, accumulated in float64;
// zero for rows without positions and for v == padding_idx (-1: none). grad is ids.shape + [C].
void embedding_backward(const Tensor& grad, const Tensor& ids, int64_t num_rows, int64_t padding_idx,
                        const Tensor& out);

}  // namespace hydra::cuda
