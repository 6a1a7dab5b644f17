#pragma once
// Differentiable reductions (namespace hydra::ag). Each records a node only when grad mode is on and x requires
// grad; otherwise it is exactly the raw op of tensor/ops/reduce.h, whose header gives shapes, dtypes and errors.
//
// Backward rules (g = upstream gradient, broadcast back over the reduced dims):
//   sum         dx = g
//   mean        dx = g / count
//   max / min   dx = g at the selected index (the first one on ties), 0 elsewhere; saves the indices only
//   norm p=2    dx = g · x / ‖x‖ (0 where ‖x‖ = 0);  p=1: dx = g · sign(x);  saves x and the norm
//   softmax     dx = y ⊙ (g − Σ g ⊙ y);                 saves y
//   log_softmax dx = g − exp(y) · Σ g;                   saves y
//   logsumexp   dx = g · exp(x − y);                     saves x and y
//   cumsum      dx = reverse cumsum of g;                saves nothing
//   topk        dx = g scattered to the selected indices; saves the indices
// The int64 indices of max/min/topk are plain tensors, not connected to the graph.
#include <vector>

#include "tensor/ops/reduce.h"
#include "tensor/tensor_core.h"

namespace hydra::ag {

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor sum(const Tensor& x);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);

ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim = false);  // values differentiable
Tensor max(const Tensor& x);
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor min(const Tensor& x);

Tensor norm(const Tensor& x, double p, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor norm(const Tensor& x, double p = 2.0);

Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);
Tensor logsumexp(const Tensor& x, int64_t dim, bool keepdim = false);

Tensor cumsum(const Tensor& x, int64_t dim);

ValuesIndices topk(const Tensor& x, int64_t k, bool largest = true);  // values differentiable

}  // namespace hydra::ag
