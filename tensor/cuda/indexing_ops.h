#pragma once
// The CUDA entry points of the indexing ops (tensor/ops/indexing.h), called only from the CUDA branch of each op's
// dispatch function in tensor/ops/indexing.cpp, which has already checked shapes, dtypes and devices, wrapped
// `dim`, enqueued the index-value check (defer_index_check) and allocated the outputs on the right device.
//
// Index values are checked asynchronously: defer_index_check enqueues the check and hands its verdict to
// cuda::defer_device_check (backend.h), so the host never waits for it and an out-of-range index is raised as
// std::invalid_argument at the next host synchronisation of the device (synchronize(), item(), to(cpu), or a later
// deferred check), naming the op, the value and its flat position. The op itself is launched before the verdict is
// known, so every kernel below is bounds-safe for any index value: gather writes 0 for an out-of-range index,
// scatter_add and embedding_backward skip it. The results of such a call are unspecified; memory stays safe.
// Host-only header: no CUDA types. Built without CUDA, tensor/cuda/indexing_ops_stub.cpp defines each one to throw.
// Kernels and their design: tensor/cuda/indexing_cuda.cu.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor_core.h"

namespace hydra::cuda {

// Enqueues the range check of idx (int32/int64, any strides, on a CUDA device) against [0, n) on the compute
// stream and defers its verdict: {the smallest flat (row-major) position whose value lies outside [0, n) or -1,
// that value}. When a position is bad, message(position, value) becomes the text of the std::invalid_argument
// raised at the next synchronisation of the device. Never waits for the device; an empty idx enqueues nothing.
// May throw an earlier deferred error of the device (after enqueueing this check, see defer_device_check).
void defer_index_check(const Tensor& idx, int64_t n, std::function<std::string(int64_t, int64_t)> message);

// out (fresh, contiguous) = the xs joined along dim: one strided copy per non-empty piece into out.narrow(dim, ..).
void concat(const std::vector<Tensor>& xs, int64_t dim, const Tensor& out);

// out[p] = x[p with p[dim] replaced by idx[p]]. out and idx have one shape (idx may be a stride-0 broadcast view:
// index_select and embedding pass one); x has their rank. Every dtype; idx int32/int64; any strides.
// out[p] = 0 where idx[p] lies outside [0, x.size(dim)).
void gather(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& out);

// In place: for each position p of idx, dst[p with p[dim] replaced by idx[p]] += src[p], the additions into each
// element in increasing p[dim] (deterministic, bit-identical to the CPU kernel). dst has no broadcast dims;
// numeric dtypes; bfloat16 accumulates in float32 and is rounded once. Positions whose index lies outside
// [0, dst.size(dim)) are skipped.
void scatter_add(const Tensor& dst, int64_t dim, const Tensor& idx, const Tensor& src);

// out (V, C) contiguous: out[v] = Σ_{p: ids[p] = v} grad[p] in increasing flat position p, accumulated in float64;
// zero for rows without positions and for v == padding_idx (-1: none). grad is ids.shape + [C]. Positions whose id
// lies outside [0, num_rows) are skipped. Runs entirely on the device (no host round trip).
void embedding_backward(const Tensor& grad, const Tensor& ids, int64_t num_rows, int64_t padding_idx,
                        const Tensor& out);

}  // namespace hydra::cuda
