#include "tensor/shape.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "tensor/check.h"

namespace hydra {

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (int64_t i = static_cast<int64_t>(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= s[i] > 0 ? s[i] : 1;
  }
  return st;
}

std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t lo = ndim == 0 ? -1 : -ndim, hi = ndim == 0 ? 0 : ndim - 1;
  HYDRA_CHECK(dim >= lo && dim <= hi, "{}: dim {} out of range for a tensor of rank {} (expected {}..{})", op, dim,
              ndim, lo, hi);
  return dim < 0 ? dim + (ndim == 0 ? 1 : ndim) : dim;
}

int64_t wrap_dim(int64_t dim, const Shape& shape, const char* op) {
  const int64_t ndim = static_cast<int64_t>(shape.size());
  const int64_t lo = ndim == 0 ? -1 : -ndim, hi = ndim == 0 ? 0 : ndim - 1;
  HYDRA_CHECK(dim >= lo && dim <= hi, "{}: dim {} out of range for a tensor of shape {} (rank {}; expected {}..{})", op,
              dim, shape_str(shape), ndim, lo, hi);
  return dim < 0 ? dim + (ndim == 0 ? 1 : ndim) : dim;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    HYDRA_CHECK(da == db || da == 1 || db == 1, "{}: shapes {} and {} do not broadcast (dim {} is {} vs {})", op,
                shape_str(a), shape_str(b), i, da, db);
    out[i] = da == 1 ? db : da;
  }
  return out;
}

}  // namespace hydra
