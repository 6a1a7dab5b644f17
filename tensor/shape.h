#pragma once
// Shapes and strides are vectors of int64 (strides in elements, not bytes). Helpers shared by every op.
#include <cstdint>
#include <string>
#include <vector>

namespace hydra {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);
std::string shape_str(const Shape& s);  // "[2, 3, 4]"
// Wraps a possibly negative dim into [0, ndim); throws naming `op` and the tensor's rank when out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);
// The same for a dim of a tensor of `shape`; the message quotes the shape.
int64_t wrap_dim(int64_t dim, const Shape& shape, const char* op);
// NumPy broadcasting of two shapes; throws naming `op` and both shapes when they do not broadcast.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace hydra
