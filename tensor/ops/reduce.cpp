#include "tensor/ops/reduce.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <type_traits>

#include "tensor/cpu/loops.h"
#include "tensor/cuda/reduce_ops.h"
#include "tensor/dispatch.h"

namespace hydra {
namespace {

// ---------------------------------------------------------------------------------------------------------
// element conversions: floating values go through float64, integers through int64

template <typename T>
constexpr bool kIsFloat = std::is_floating_point_v<compute_t<T>>;

template <typename T>
using acc_t = std::conditional_t<kIsFloat<T>, double, int64_t>;

template <typename T>
acc_t<T> to_acc(T v) {
  return static_cast<acc_t<T>>(static_cast<compute_t<T>>(v));
}

// float64 -> bfloat16 rounded once (to nearest even): go through float with round-to-odd (truncate, then set
// the lowest mantissa bit when inexact), so the float -> bfloat16 step cannot double-round.
BFloat16 bf16_from_double(double v) {
  float f = static_cast<float>(v);
  if (std::isfinite(f) && static_cast<double>(f) != v) {
    if (std::abs(static_cast<double>(f)) > std::abs(v)) f = std::nextafter(f, 0.0f);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u |= 1u;
    std::memcpy(&f, &u, 4);
  }
  return BFloat16(f);
}

template <typename T>
T from_acc(acc_t<T> v) {
  if constexpr (std::is_same_v<T, BFloat16>) return bf16_from_double(v);
  else return static_cast<T>(v);
}

// NaN test on a computed value (float/double/integer).
template <typename V>
bool is_nan(V v) {
  if constexpr (std::is_floating_point_v<V>) return std::isnan(v);
  else return false;
}

// ---------------------------------------------------------------------------------------------------------
// shared validation and geometry

// Wraps `dim` for x, naming the op and x's full shape when it is out of range. A 0-d x accepts 0 and -1.
int64_t wrap_dim_of(const Tensor& x, int64_t dim, const char* op) {
  const int64_t nd = x.dim();
  const int64_t lo = nd == 0 ? -1 : -nd, hi = nd == 0 ? 0 : nd - 1;
  HYDRA_CHECK(dim >= lo && dim <= hi, "{}: dim {} out of range for a tensor of shape {} (expected {}..{})", op, dim,
              shape_str(x.shape()), lo, hi);
  return dim < 0 ? dim + std::max<int64_t>(nd, 1) : dim;
}

// A multi-dim reduction seen as `outer` contiguous rows of `inner` elements: x permuted to (kept..., reduced...)
// and made contiguous, so out[o] reduces xp[o*inner .. o*inner + inner).
struct RowPlan {
  Tensor xp;
  int64_t outer = 1;
  int64_t inner = 1;
  Shape out_shape;
};

RowPlan plan_rows(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, const char* op) {
  const int64_t nd = x.dim();
  std::vector<bool> red(nd, dims.empty());
  for (int64_t d : dims) {
    const int64_t w = wrap_dim_of(x, d, op);
    if (nd == 0) continue;  // a 0-d tensor has nothing to reduce over
    HYDRA_CHECK(!red[w], "{}: dim {} listed twice in dims for a tensor of shape {}", op, w, shape_str(x.shape()));
    red[w] = true;
  }
  RowPlan p;
  std::vector<int64_t> perm;
  for (int64_t d = 0; d < nd; ++d)
    if (!red[d]) {
      perm.push_back(d);
      p.outer *= x.size(d);
    }
  for (int64_t d = 0; d < nd; ++d)
    if (red[d]) {
      perm.push_back(d);
      p.inner *= x.size(d);
    }
  for (int64_t d = 0; d < nd; ++d)
    if (!red[d]) p.out_shape.push_back(x.size(d));
    else if (keepdim) p.out_shape.push_back(1);
  p.xp = x.permute(perm).contiguous();
  return p;
}

// A single-dim op seen as lines: the contiguous x is (outer, n, inner) with `dim` as the middle axis, and line
// l = o*inner + j holds the n elements x[o*n*inner + i*inner + j], i = 0..n-1 (stride `inner`).
struct LinePlan {
  Tensor xc;
  int64_t dim = 0;
  int64_t outer = 1;
  int64_t n = 1;
  int64_t inner = 1;
};

LinePlan plan_lines(const Tensor& x, int64_t dim, const char* op) {
  LinePlan p;
  p.dim = wrap_dim_of(x, dim, op);
  p.xc = x.contiguous();
  if (x.dim() == 0) return p;
  for (int64_t d = 0; d < p.dim; ++d) p.outer *= x.size(d);
  p.n = x.size(p.dim);
  for (int64_t d = p.dim + 1; d < x.dim(); ++d) p.inner *= x.size(d);
  return p;
}

// x's shape with `dim` reduced (kept as 1 or removed). A 0-d x stays 0-d.
Shape reduced_shape(const Shape& s, int64_t dim, bool keepdim) {
  Shape out = s;
  if (out.empty()) return out;
  if (keepdim) out[dim] = 1;
  else out.erase(out.begin() + dim);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// CPU kernels

enum class RowMode { Sum, Mean, SumAbs, SqrtSumSquares };

// out[o] = reduction of the `inner` contiguous elements of row o.
template <typename T>
void reduce_rows_cpu(const T* x, T* out, int64_t outer, int64_t inner, RowMode mode) {
  cpu::parallel_for(outer, std::max<int64_t>(inner, 1), [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o) {
      const T* row = x + o * inner;
      acc_t<T> acc = 0;
      if constexpr (kIsFloat<T>) {
        switch (mode) {
          case RowMode::Sum:
          case RowMode::Mean:
            for (int64_t i = 0; i < inner; ++i) acc += to_acc(row[i]);
            if (mode == RowMode::Mean) acc /= static_cast<double>(inner);  // 0/0 = NaN for an empty mean
            break;
          case RowMode::SumAbs:
            for (int64_t i = 0; i < inner; ++i) acc += std::abs(to_acc(row[i]));
            break;
          case RowMode::SqrtSumSquares:
            for (int64_t i = 0; i < inner; ++i) acc += to_acc(row[i]) * to_acc(row[i]);
            acc = std::sqrt(acc);
            break;
        }
      } else {
        for (int64_t i = 0; i < inner; ++i) acc += to_acc(row[i]);  // integers: only Sum reaches here
      }
      out[o] = from_acc<T>(acc);
    }
  });
}

// Max (want_max) or min of each line with the index of its first occurrence; a NaN wins and stops the scan.
// `values` may be null (argmax/argmin).
template <typename T>
void extreme_lines_cpu(const T* x, T* values, int64_t* indices, int64_t outer, int64_t n, int64_t inner,
                       bool want_max) {
  cpu::parallel_for(outer * inner, n, [&](int64_t b, int64_t e) {
    for (int64_t l = b; l < e; ++l) {
      const T* line = x + (l / inner) * n * inner + (l % inner);
      compute_t<T> best = static_cast<compute_t<T>>(line[0]);
      int64_t best_i = 0;
      for (int64_t i = 1; i < n && !is_nan(best); ++i) {
        const compute_t<T> v = static_cast<compute_t<T>>(line[i * inner]);
        if (is_nan(v) || (want_max ? v > best : v < best)) {
          best = v;
          best_i = i;
        }
      }
      if (values) values[l] = line[best_i * inner];
      indices[l] = best_i;
    }
  });
}

enum class SoftmaxMode { Softmax, LogSoftmax, LogSumExp };

// Per line: m = max, s = Σ exp(x − m) (float64), then softmax / log_softmax (n outputs per line, same layout as
// x) or logsumexp (one output per line, at index l). A row whose max is ±inf or NaN shifts by 0 instead, so an
// all −inf row gives logsumexp −inf (and softmax 0/0 = NaN).
template <typename T>
void softmax_lines_cpu(const T* x, T* y, int64_t outer, int64_t n, int64_t inner, SoftmaxMode mode) {
  cpu::parallel_for(outer * inner, 3 * std::max<int64_t>(n, 1), [&](int64_t b, int64_t e) {
    for (int64_t l = b; l < e; ++l) {
      const int64_t base = (l / inner) * n * inner + (l % inner);
      const T* line = x + base;
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t i = 0; i < n; ++i) m = std::max(m, to_acc(line[i * inner]));
      if (!std::isfinite(m)) m = 0.0;
      double s = 0.0;
      for (int64_t i = 0; i < n; ++i) s += std::exp(to_acc(line[i * inner]) - m);
      switch (mode) {
        case SoftmaxMode::Softmax:
          for (int64_t i = 0; i < n; ++i) y[base + i * inner] = from_acc<T>(std::exp(to_acc(line[i * inner]) - m) / s);
          break;
        case SoftmaxMode::LogSoftmax: {
          const double shift = m + std::log(s);
          for (int64_t i = 0; i < n; ++i) y[base + i * inner] = from_acc<T>(to_acc(line[i * inner]) - shift);
          break;
        }
        case SoftmaxMode::LogSumExp: y[l] = from_acc<T>(m + std::log(s)); break;
      }
    }
  });
}

enum class ScanDir { Forward, Reverse };

// Inclusive prefix sums of each line (Reverse: suffix sums), accumulated in float64 / int64.
template <typename T>
void cumsum_lines_cpu(const T* x, T* y, int64_t outer, int64_t n, int64_t inner, ScanDir dir) {
  cpu::parallel_for(outer * inner, std::max<int64_t>(n, 1), [&](int64_t b, int64_t e) {
    for (int64_t l = b; l < e; ++l) {
      const int64_t base = (l / inner) * n * inner + (l % inner);
      acc_t<T> acc = 0;
      for (int64_t t = 0; t < n; ++t) {
        const int64_t i = dir == ScanDir::Forward ? t : n - 1 - t;
        acc += to_acc(x[base + i * inner]);
        y[base + i * inner] = from_acc<T>(acc);
      }
    }
  });
}

// Top k of each contiguous row of n elements, sorted; ties by lower index. NaN ranks above every number.
template <typename T>
void topk_rows_cpu(const T* x, T* values, int64_t* indices, int64_t rows, int64_t n, int64_t k, bool largest) {
  cpu::parallel_for(rows, std::max<int64_t>(n, 1) * 4, [&](int64_t b, int64_t e) {
    std::vector<int64_t> order(n);
    for (int64_t r = b; r < e; ++r) {
      const T* row = x + r * n;
      std::iota(order.begin(), order.end(), int64_t{0});
      // "a ranks before b": strictly better value, or equal values (neither better) and a lower index.
      auto better = [&](int64_t i, int64_t j) {
        const compute_t<T> a = static_cast<compute_t<T>>(row[i]), c = static_cast<compute_t<T>>(row[j]);
        const bool na = is_nan(a), nc = is_nan(c);
        if (na || nc) return largest ? (na && !nc) : (!na && nc);
        return largest ? a > c : a < c;
      };
      std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t i, int64_t j) {
        if (better(i, j)) return true;
        if (better(j, i)) return false;
        return i < j;
      });
      for (int64_t j = 0; j < k; ++j) {
        values[r * k + j] = row[order[j]];
        indices[r * k + j] = order[j];
      }
    }
  });
}

// out (outer, n, inner) += g (outer, k, inner) scattered along the middle axis by idx (outer, k, inner).
// Each line (o, j) of out is written by one iteration only, so lines run in parallel.
template <typename T>
void scatter_lines_cpu(const T* g, const int64_t* idx, T* out, int64_t outer, int64_t k, int64_t n, int64_t inner) {
  cpu::parallel_for(outer * inner, std::max<int64_t>(k, 1), [&](int64_t b, int64_t e) {
    for (int64_t l = b; l < e; ++l) {
      const int64_t o = l / inner, j = l % inner;
      for (int64_t t = 0; t < k; ++t) {
        const int64_t src = o * k * inner + t * inner + j;
        T& dst = out[o * n * inner + idx[src] * inner + j];
        dst = from_acc<T>(to_acc(dst) + to_acc(g[src]));
      }
    }
  });
}

// The shared body of max_backward and topk_backward: zeros of x_shape plus g scattered along `dim` by idx.
Tensor scatter_along_dim(const Tensor& g, const Tensor& idx, const Shape& x_shape, int64_t dim, const char* op) {
  check_defined(g, op, "grad");
  check_defined(idx, op, "indices");
  check_floating(g, op);
  check_dtype(idx, DType::Int64, op, "indices");
  check_same_device(g, idx, op);
  HYDRA_CHECK(g.shape() == idx.shape(), "{}: grad shape {} and indices shape {} differ", op, shape_str(g.shape()),
              shape_str(idx.shape()));
  HYDRA_CHECK(static_cast<int64_t>(x_shape.size()) == g.dim(), "{}: grad shape {} does not match x shape {}", op,
              shape_str(g.shape()), shape_str(x_shape));
  for (int64_t d = 0; d < g.dim(); ++d)
    HYDRA_CHECK(d == dim || g.size(d) == x_shape[d], "{}: grad shape {} does not match x shape {} outside dim {}", op,
                shape_str(g.shape()), shape_str(x_shape), dim);
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= x_shape[d];
  for (int64_t d = dim + 1; d < g.dim(); ++d) inner *= x_shape[d];
  const int64_t n = x_shape[dim], k = g.size(dim);
  Tensor gc = g.contiguous(), ic = idx.contiguous();
  Tensor out = zeros(x_shape, g.dtype(), g.device());
  switch (g.device().type) {
    case DeviceType::CPU: {
      const int64_t* ip = ic.data<int64_t>();
      for (int64_t i = 0; i < ic.numel(); ++i)
        HYDRA_CHECK(ip[i] >= 0 && ip[i] < n, "{}: index {} out of range for dim {} of size {} (x shape {})", op, ip[i],
                    dim, n, shape_str(x_shape));
      dispatch_floating(g.dtype(), op, [&]<typename T>() {
        scatter_lines_cpu<T>(static_cast<const T*>(gc.raw_data()), ip, static_cast<T*>(out.raw_data()), outer, k, n,
                             inner);
      });
      break;
    }
    case DeviceType::CUDA: {
      int64_t bad = 0;
      HYDRA_CHECK(cuda::scatter_add_lines(gc, ic, out, outer, k, n, inner, &bad),
                  "{}: index {} out of range for dim {} of size {} (x shape {})", op, bad, dim, n,
                  shape_str(x_shape));
      break;
    }
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// sum, mean, norm

namespace {
// The one body behind sum / mean / norm (each public op validates its dtype first).
Tensor reduce_rows(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, RowMode mode, const char* op) {
  RowPlan p = plan_rows(x, dims, keepdim, op);
  Tensor out = empty(p.out_shape, x.dtype(), x.device());
  switch (x.device().type) {
    case DeviceType::CPU:
      dispatch_numeric(x.dtype(), op, [&]<typename T>() {
        reduce_rows_cpu<T>(static_cast<const T*>(p.xp.raw_data()), static_cast<T*>(out.raw_data()), p.outer, p.inner,
                           mode);
      });
      break;
    case DeviceType::CUDA: {
      cuda::RowReduce m = cuda::RowReduce::Sum;
      switch (mode) {
        case RowMode::Sum: m = cuda::RowReduce::Sum; break;
        case RowMode::Mean: m = cuda::RowReduce::Mean; break;
        case RowMode::SumAbs: m = cuda::RowReduce::SumAbs; break;
        case RowMode::SqrtSumSquares: m = cuda::RowReduce::SqrtSumSquares; break;
      }
      cuda::reduce_rows(p.xp, out, p.outer, p.inner, m);
      break;
    }
  }
  return out;
}
}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_defined(x, "sum", "x");
  HYDRA_CHECK(x.dtype() != DType::Bool, "sum: bool tensors are not summed (shape {}); cast to int64 first",
              shape_str(x.shape()));
  return reduce_rows(x, dims, keepdim, RowMode::Sum, "sum");
}

Tensor sum(const Tensor& x) { return sum(x, {}, false); }

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  HYDRA_CHECK(broadcast_shapes(shape, x.shape(), "sum_to") == x.shape(),
              "sum_to: shape {} does not broadcast to {}", shape_str(shape), shape_str(x.shape()));
  const int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (d < lead || (shape[d - lead] == 1 && x.size(d) != 1)) dims.push_back(d);
  Tensor s = dims.empty() ? x : sum(x, dims, /*keepdim=*/true);
  return s.shape() == shape ? s : s.reshape(shape);
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_defined(x, "mean", "x");
  check_floating(x, "mean");
  return reduce_rows(x, dims, keepdim, RowMode::Mean, "mean");
}

Tensor mean(const Tensor& x) { return mean(x, {}, false); }

Tensor norm(const Tensor& x, double p, const std::vector<int64_t>& dims, bool keepdim) {
  check_defined(x, "norm", "x");
  check_floating(x, "norm");
  HYDRA_CHECK(p == 1.0 || p == 2.0, "norm: p = {} is not supported (supported p: 1, 2); x shape {}", p,
              shape_str(x.shape()));
  return reduce_rows(x, dims, keepdim, p == 1.0 ? RowMode::SumAbs : RowMode::SqrtSumSquares, "norm");
}

Tensor norm(const Tensor& x, double p) { return norm(x, p, {}, false); }

// ---------------------------------------------------------------------------------------------------------
// max, min, argmax, argmin

namespace {
// values (if want_values) and indices of the max/min along dim.
ValuesIndices extreme(const Tensor& x, int64_t dim, bool keepdim, bool want_max, bool want_values, const char* op) {
  check_defined(x, op, "x");
  LinePlan p = plan_lines(x, dim, op);
  HYDRA_CHECK(p.n > 0, "{}: cannot reduce over dim {} of size 0 (x shape {})", op, p.dim, shape_str(x.shape()));
  const Shape out_shape = reduced_shape(x.shape(), p.dim, keepdim);
  ValuesIndices r;
  if (want_values) r.values = empty(out_shape, x.dtype(), x.device());
  r.indices = empty(out_shape, DType::Int64, x.device());
  switch (x.device().type) {
    case DeviceType::CPU:
      dispatch_numeric(x.dtype(), op, [&]<typename T>() {
        extreme_lines_cpu<T>(static_cast<const T*>(p.xc.raw_data()),
                             want_values ? static_cast<T*>(r.values.raw_data()) : nullptr,
                             r.indices.data<int64_t>(), p.outer, p.n, p.inner, want_max);
      });
      break;
    case DeviceType::CUDA:
      cuda::extreme_lines(p.xc, r.values, r.indices, p.outer, p.n, p.inner, want_max);
      break;
  }
  return r;
}

Tensor flat(const Tensor& x, const char* op) {
  check_defined(x, op, "x");
  HYDRA_CHECK(x.numel() > 0, "{}: x is empty (shape {}); the global {} needs at least one element", op,
              shape_str(x.shape()), op);
  return x.reshape({-1});
}
}  // namespace

ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim) { return extreme(x, dim, keepdim, true, true, "max"); }
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim) { return extreme(x, dim, keepdim, false, true, "min"); }
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  return extreme(x, dim, keepdim, true, false, "argmax").indices;
}
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) {
  return extreme(x, dim, keepdim, false, false, "argmin").indices;
}
Tensor max(const Tensor& x) { return extreme(flat(x, "max"), 0, false, true, true, "max").values; }
Tensor min(const Tensor& x) { return extreme(flat(x, "min"), 0, false, false, true, "min").values; }
Tensor argmax(const Tensor& x) { return extreme(flat(x, "argmax"), 0, false, true, false, "argmax").indices; }
Tensor argmin(const Tensor& x) { return extreme(flat(x, "argmin"), 0, false, false, false, "argmin").indices; }

// ---------------------------------------------------------------------------------------------------------
// softmax, log_softmax, logsumexp

namespace {
Tensor softmax_family(const Tensor& x, int64_t dim, bool keepdim, SoftmaxMode mode, const char* op) {
  check_defined(x, op, "x");
  check_floating(x, op);
  LinePlan p = plan_lines(x, dim, op);
  const Shape out_shape = mode == SoftmaxMode::LogSumExp ? reduced_shape(x.shape(), p.dim, keepdim) : x.shape();
  Tensor y = empty(out_shape, x.dtype(), x.device());
  switch (x.device().type) {
    case DeviceType::CPU:
      dispatch_floating(x.dtype(), op, [&]<typename T>() {
        softmax_lines_cpu<T>(static_cast<const T*>(p.xc.raw_data()), static_cast<T*>(y.raw_data()), p.outer, p.n,
                             p.inner, mode);
      });
      break;
    case DeviceType::CUDA: {
      cuda::SoftmaxKind k = cuda::SoftmaxKind::Softmax;
      switch (mode) {
        case SoftmaxMode::Softmax: k = cuda::SoftmaxKind::Softmax; break;
        case SoftmaxMode::LogSoftmax: k = cuda::SoftmaxKind::LogSoftmax; break;
        case SoftmaxMode::LogSumExp: k = cuda::SoftmaxKind::LogSumExp; break;
      }
      cuda::softmax_lines(p.xc, y, p.outer, p.n, p.inner, k);
      break;
    }
  }
  return y;
}
}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_family(x, dim, false, SoftmaxMode::Softmax, "softmax"); }
Tensor log_softmax(const Tensor& x, int64_t dim) {
  return softmax_family(x, dim, false, SoftmaxMode::LogSoftmax, "log_softmax");
}
Tensor logsumexp(const Tensor& x, int64_t dim, bool keepdim) {
  return softmax_family(x, dim, keepdim, SoftmaxMode::LogSumExp, "logsumexp");
}

// ---------------------------------------------------------------------------------------------------------
// cumsum

namespace {
Tensor scan(const Tensor& x, int64_t dim, ScanDir dir, const char* op) {
  check_defined(x, op, "x");
  LinePlan p = plan_lines(x, dim, op);
  Tensor y = empty(x.shape(), x.dtype(), x.device());
  switch (x.device().type) {
    case DeviceType::CPU:
      dispatch_numeric(x.dtype(), op, [&]<typename T>() {
        cumsum_lines_cpu<T>(static_cast<const T*>(p.xc.raw_data()), static_cast<T*>(y.raw_data()), p.outer, p.n,
                            p.inner, dir);
      });
      break;
    case DeviceType::CUDA: cuda::cumsum_lines(p.xc, y, p.outer, p.n, p.inner, dir == ScanDir::Reverse); break;
  }
  return y;
}
}  // namespace

Tensor cumsum(const Tensor& x, int64_t dim) { return scan(x, dim, ScanDir::Forward, "cumsum"); }
Tensor cumsum_backward(const Tensor& grad, int64_t dim) { return scan(grad, dim, ScanDir::Reverse, "cumsum_backward"); }

// ---------------------------------------------------------------------------------------------------------
// topk

ValuesIndices topk(const Tensor& x, int64_t k, bool largest) {
  check_defined(x, "topk", "x");
  HYDRA_CHECK(x.dim() >= 1, "topk: x must have at least one dim, got shape {}", shape_str(x.shape()));
  const int64_t n = x.size(-1);
  HYDRA_CHECK(k >= 0 && k <= n, "topk: k = {} out of range for last dim of size {} (x shape {}); expected 0..{}", k, n,
              shape_str(x.shape()), n);
  Shape out_shape = x.shape();
  out_shape.back() = k;
  ValuesIndices r{empty(out_shape, x.dtype(), x.device()), empty(out_shape, DType::Int64, x.device())};
  Tensor xc = x.contiguous();
  switch (x.device().type) {
    case DeviceType::CPU:
      dispatch_numeric(x.dtype(), "topk", [&]<typename T>() {
        topk_rows_cpu<T>(static_cast<const T*>(xc.raw_data()), static_cast<T*>(r.values.raw_data()),
                         r.indices.data<int64_t>(), n == 0 ? 0 : x.numel() / n, n, k, largest);
      });
      break;
    case DeviceType::CUDA:
      cuda::topk_rows(xc, r.values, r.indices, n == 0 ? 0 : x.numel() / n, n, k, largest);
      break;
  }
  return r;
}

// ---------------------------------------------------------------------------------------------------------
// backward helpers

Tensor max_backward(const Tensor& grad_values, const Tensor& indices, const Shape& x_shape, int64_t dim,
                    bool keepdim) {
  check_defined(grad_values, "max_backward", "grad_values");
  if (x_shape.empty()) {  // 0-d x: its only element was selected
    return scatter_along_dim(grad_values.reshape({1}), indices.reshape({1}), {1}, 0, "max_backward").reshape({});
  }
  const int64_t nd = static_cast<int64_t>(x_shape.size());
  HYDRA_CHECK(dim >= -nd && dim < nd, "max_backward: dim {} out of range for x shape {}", dim, shape_str(x_shape));
  const int64_t d = dim < 0 ? dim + nd : dim;
  Tensor g = keepdim ? grad_values : grad_values.unsqueeze(d);
  Tensor i = keepdim ? indices : indices.unsqueeze(d);
  return scatter_along_dim(g, i, x_shape, d, "max_backward");
}

Tensor topk_backward(const Tensor& grad_values, const Tensor& indices, const Shape& x_shape) {
  HYDRA_CHECK(!x_shape.empty(), "topk_backward: x shape must have at least one dim");
  return scatter_along_dim(grad_values, indices, x_shape, static_cast<int64_t>(x_shape.size()) - 1, "topk_backward");
}

}  // namespace hydra
