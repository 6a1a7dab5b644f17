#pragma once
// Reductions. Floating inputs accumulate in float64 on the CPU (bfloat16/float32 results are rounded once at the
// end); integer sums accumulate in int64. Outputs are fresh contiguous tensors.
#include <vector>

#include "tensor/tensor_core.h"

namespace hydra {

// Sum over `dims` (each may be negative; empty = all dims). keepdim keeps them as size-1 dims.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor sum(const Tensor& x);  // all elements, 0-d result
// Sums a broadcast result back to `shape` (the inverse of expand): used by the backward of broadcasting ops.
Tensor sum_to(const Tensor& x, const Shape& shape);

}  // namespace hydra
