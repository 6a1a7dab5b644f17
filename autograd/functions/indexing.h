#pragma once
// Differentiable indexing ops (namespace hydra::ag). Each records a node only when grad mode is on and a
// floating input requires grad; otherwise it is exactly the raw tensor/ op. Semantics, shapes, dtypes and errors
// are those of tensor/ops/indexing.h. Index tensors are never differentiated: backward captures them (detached)
// and they are not graph inputs.
//
// Backward rules (what each node saves):
//   concat:       dx_i = the i-th piece of g along dim                     (saves the piece sizes)
//   split/chunk:  one ag::narrow per piece (the pieces stay views)
//   stack:        ag::unsqueeze + ag::concat
//   index_select: dx = index_add(zeros(x), dim, idx, g)                    (saves idx, x's shape)
//   gather:       dx = scatter_add(zeros(x), dim, idx, g)                  (saves idx, x's shape)
//   scatter_add:  dbase = g;  dsrc = gather(g, dim, idx) in idx's region of src, zero elsewhere  (saves idx)
//   embedding:    dweight = embedding_backward(g, ids, V, padding_idx)     (saves ids; deterministic)
#include <cstdint>
#include <vector>

#include "tensor/ops/indexing.h"
#include "tensor/tensor_core.h"

namespace hydra::ag {

Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
std::vector<Tensor> chunk(const Tensor& x, int64_t n, int64_t dim);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& idx);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& idx);
Tensor scatter_add(const Tensor& base, int64_t dim, const Tensor& idx, const Tensor& src);
// weight (V, C), ids any shape -> ids.shape + [C]. Positions whose id equals padding_idx send no gradient to
// weight (SPEC §2.2); the lookup itself still returns the stored row. padding_idx = -1: none.
Tensor embedding(const Tensor& weight, const Tensor& ids, int64_t padding_idx = -1);

}  // namespace hydra::ag
