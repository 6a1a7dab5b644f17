// Indexing ops: the dispatch functions (one per op) and their CPU kernels.
//
// The CPU kernels reduce every op to two strided loops over for_each_row:
//   gather:      out[p] = x_base(p)[idx[p] * x.stride(dim)]        (x_base: x with a stride-0 `dim`)
//   scatter_add: for each non-dim position q, for j = 0..J-1 in order: dst_base(q)[idx[q, j] * dst.stride(dim)]
//                += src[q, j]
// index_select / index_add / embedding are these with the 1-D index broadcast (a stride-0 view) to the full shape.
// A scatter thread owns all of the dim positions of its non-dim coordinates, so no two threads write one element
// and the summation order is fixed.
#include "tensor/ops/indexing.h"

#include <algorithm>
#include <string>

#include "tensor/cpu/loops.h"
#include "tensor/cuda/indexing_ops.h"
#include "tensor/dispatch.h"

namespace hydra {
namespace {

std::string sizes_str(const std::vector<int64_t>& v) { return shape_str(v); }

// The message of an out-of-range index value: one text for the CPU check and the deferred CUDA one.
std::string bad_index_message(const std::string& op, const std::string& idx_name, int64_t value, int64_t pos,
                              const std::string& shape, int64_t n, const std::string& what) {
  return fmt::format("{}: {} value {} at flat position {} ({} has shape {}) is out of range; valid range is [0, {}) "
                     "for {}", op, idx_name, value, pos, idx_name, shape, n, what);
}

// Checks that every value of idx lies in [0, n); a bad one is reported naming the op, the value, its flat
// (row-major) position (the smallest bad one) and the range.
// CPU: scans sequentially and throws at once, before the op writes anything.
// CUDA: the scan runs on the device and its verdict is deferred (cuda::defer_index_check): the same message is
// raised as std::invalid_argument at the next synchronisation of the device, and the op is launched meanwhile
// (its kernels are bounds-safe for any index value; the results of such a call are unspecified).
void check_index_values(const Tensor& idx, int64_t n, const char* op, const char* idx_name, const std::string& what) {
  if (idx.is_cuda()) {
    cuda::defer_index_check(idx, n,
                            [op = std::string(op), name = std::string(idx_name), shape = shape_str(idx.shape()), n,
                             what](int64_t pos, int64_t value) {
                              return bad_index_message(op, name, value, pos, shape, n, what);
                            });
    return;
  }
  const Tensor c = idx.contiguous();
  dispatch_index(idx.dtype(), op, [&]<typename I>() {
    const I* p = static_cast<const I*>(c.raw_data());
    const int64_t numel = c.numel();
    for (int64_t i = 0; i < numel; ++i) {
      const int64_t v = static_cast<int64_t>(p[i]);
      HYDRA_CHECK(v >= 0 && v < n, "{}", bad_index_message(op, idx_name, v, i, shape_str(idx.shape()), n, what));
    }
  });
}

// A 1-D index of length shape[dim] seen as a tensor of `shape` (stride 0 in every other dim).
Tensor broadcast_index(const Tensor& idx, int64_t dim, const Shape& shape) {
  Tensor t = idx;
  for (int64_t d = 0; d < dim; ++d) t = t.unsqueeze(0);
  for (int64_t d = dim + 1; d < static_cast<int64_t>(shape.size()); ++d) t = t.unsqueeze(-1);
  return t.expand(shape);
}

// t narrowed to `shape` in every dim but `dim`, and to one element along `dim`.
Tensor base_view(const Tensor& t, int64_t dim, const Shape& shape) {
  Tensor v = t;
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d)
    if (d != dim) v = v.narrow(d, 0, shape[d]);
  return v.narrow(dim, 0, 1);
}

// out[p] = x[p with p[dim] replaced by idx[p]]; out and idx share a shape (idx may be a broadcast view).
void gather_cpu(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& out) {
  if (out.numel() == 0) return;
  const Shape& shape = out.shape();
  const Tensor xb = base_view(x, dim, shape).expand(shape);  // stride 0 along dim: the row start
  const int64_t xs = x.stride(dim);
  dispatch_all(x.dtype(), "gather", [&]<typename T>() {
    dispatch_index(idx.dtype(), "gather", [&]<typename I>() {
      cpu::for_each_row<3>(
          shape, {out.strides(), idx.strides(), xb.strides()},
          {static_cast<char*>(out.raw_data()), static_cast<char*>(idx.raw_data()), static_cast<char*>(xb.raw_data())},
          {int64_t(sizeof(T)), int64_t(sizeof(I)), int64_t(sizeof(T))},
          [xs](std::array<char*, 3> p, int64_t n, std::array<int64_t, 3> st) {
            T* o = reinterpret_cast<T*>(p[0]);
            const I* ip = reinterpret_cast<const I*>(p[1]);
            const T* xp = reinterpret_cast<const T*>(p[2]);
            if (st[1] == 0) {  // one index for the whole row (index_select / embedding): copy one strided row
              const T* row = xp + static_cast<int64_t>(ip[0]) * xs;
              for (int64_t k = 0; k < n; ++k) o[k * st[0]] = row[k * st[2]];
            } else {
              for (int64_t k = 0; k < n; ++k) o[k * st[0]] = xp[static_cast<int64_t>(ip[k * st[1]]) * xs + k * st[2]];
            }
          });
    });
  });
}

// dst[q, idx[q, j]] += src[q, j] over idx's shape, j along dim in increasing order (q: the other coordinates).
template <typename T>
void scatter_add_into(const Tensor& dst, int64_t dim, const Tensor& idx, const Tensor& src) {
  const Shape& shape = idx.shape();
  Shape outer = shape;
  outer[dim] = 1;
  const int64_t J = shape[dim];
  const Tensor dv = base_view(dst, dim, shape), sv = base_view(src, dim, shape), iv = idx.narrow(dim, 0, 1);
  const int64_t ds = dst.stride(dim), ss = src.stride(dim), is = idx.stride(dim);
  dispatch_index(idx.dtype(), "scatter_add", [&]<typename I>() {
    cpu::for_each_row<3>(
        outer, {dv.strides(), iv.strides(), sv.strides()},
        {static_cast<char*>(dv.raw_data()), static_cast<char*>(iv.raw_data()), static_cast<char*>(sv.raw_data())},
        {int64_t(sizeof(T)), int64_t(sizeof(I)), int64_t(sizeof(T))},
        [=](std::array<char*, 3> p, int64_t n, std::array<int64_t, 3> st) {
          for (int64_t k = 0; k < n; ++k) {
            T* o = reinterpret_cast<T*>(p[0]) + k * st[0];
            const I* ip = reinterpret_cast<const I*>(p[1]) + k * st[1];
            const T* sp = reinterpret_cast<const T*>(p[2]) + k * st[2];
            for (int64_t j = 0; j < J; ++j) o[static_cast<int64_t>(ip[j * is]) * ds] += sp[j * ss];
          }
        });
  });
}

void scatter_add_cpu(const Tensor& dst, int64_t dim, const Tensor& idx, const Tensor& src) {
  if (idx.numel() == 0) return;
  dispatch_numeric(dst.dtype(), "scatter_add", [&]<typename T>() {
    if constexpr (std::is_same_v<T, BFloat16>) {
      // Accumulate in float32 and round once, instead of rounding to bfloat16 after every addition.
      Tensor acc = dst.to(DType::Float32);
      scatter_add_into<float>(acc, dim, idx, src.to(DType::Float32));
      Tensor(dst).copy_(acc);
    } else {
      scatter_add_into<T>(dst, dim, idx, src);
    }
  });
}

void concat_cpu(const std::vector<Tensor>& xs, int64_t dim, const Tensor& out) {
  int64_t off = 0;
  for (const Tensor& x : xs) {
    const int64_t n = x.size(dim);
    if (n > 0 && x.numel() > 0) out.narrow(dim, off, n).copy_(x);
    off += n;
  }
}

// dweight[v] = Σ_{p: ids[p] = v, v != pad} grad[p], in increasing p. ids are a contiguous 1-D int tensor of N
// in-range values, grad is contiguous (N, C), out is (V, C).
template <typename T, typename I>
void embedding_backward_cpu_impl(const T* grad, const I* ids, int64_t N, int64_t C, int64_t V, int64_t pad, T* out) {
  // Counting sort of the positions by id (sequential, so each row's list is in increasing position order).
  std::vector<int64_t> start(V + 1, 0), order(N);
  for (int64_t p = 0; p < N; ++p) ++start[static_cast<int64_t>(ids[p]) + 1];
  for (int64_t v = 0; v < V; ++v) start[v + 1] += start[v];
  std::vector<int64_t> next(start.begin(), start.end() - 1);
  for (int64_t p = 0; p < N; ++p) order[next[static_cast<int64_t>(ids[p])]++] = p;

  // Each output row is owned by one thread and summed in the fixed order above.
  const int64_t cost = C * std::max<int64_t>(1, N / std::max<int64_t>(1, V));
  cpu::parallel_for(V, cost, [&](int64_t b, int64_t e) {
    std::vector<double> acc(C);
    for (int64_t v = b; v < e; ++v) {
      T* row = out + v * C;
      if (v == pad || start[v] == start[v + 1]) {
        std::fill(row, row + C, T(0.0f));
        continue;
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t q = start[v]; q < start[v + 1]; ++q) {
        const T* g = grad + order[q] * C;
        for (int64_t c = 0; c < C; ++c) acc[c] += static_cast<double>(static_cast<compute_t<T>>(g[c]));
      }
      for (int64_t c = 0; c < C; ++c) row[c] = static_cast<T>(static_cast<compute_t<T>>(acc[c]));
    }
  });
}

void embedding_backward_cpu(const Tensor& grad, const Tensor& ids, int64_t V, int64_t pad, const Tensor& out) {
  check_index_values(ids, V, "embedding_backward", "ids", fmt::format("an embedding of {} rows", V));
  const int64_t N = ids.numel(), C = out.size(1);
  if (N == 0) {  // no lookups: no gradient (and reshape() of a shape with a 0 in the middle would refuse)
    Tensor(out).fill_(0.0);
    return;
  }
  const Tensor g = grad.reshape({N, C}).contiguous(), flat = ids.reshape({N}).contiguous();
  dispatch_floating(grad.dtype(), "embedding_backward", [&]<typename T>() {
    dispatch_index(ids.dtype(), "embedding_backward", [&]<typename I>() {
      embedding_backward_cpu_impl<T, I>(static_cast<const T*>(g.raw_data()), static_cast<const I*>(flat.raw_data()),
                                        N, C, V, pad, static_cast<T*>(out.raw_data()));
    });
  });
}

// Shape/dtype/device checks shared by scatter_add and scatter_add_.
void check_scatter_args(const Tensor& base, int64_t& dim, const Tensor& idx, const Tensor& src, const char* op) {
  check_defined(base, op, "base");
  check_defined(idx, op, "idx");
  check_defined(src, op, "src");
  check_same_device(base, idx, op);
  check_same_device(base, src, op);
  check_same_dtype(base, src, op);
  check_index_dtype(idx, op, "idx");
  HYDRA_CHECK(base.dtype() != DType::Bool, "{}: bool tensors cannot be accumulated (base shape {})", op,
              shape_str(base.shape()));
  HYDRA_CHECK(base.dim() >= 1, "{}: base must have rank >= 1, got shape {}", op, shape_str(base.shape()));
  dim = wrap_dim(dim, base.shape(), op);
  HYDRA_CHECK(idx.dim() == base.dim() && src.dim() == base.dim(),
              "{}: base {}, idx {} and src {} must have the same rank", op, shape_str(base.shape()),
              shape_str(idx.shape()), shape_str(src.shape()));
  for (int64_t d = 0; d < base.dim(); ++d) {
    HYDRA_CHECK(idx.size(d) <= src.size(d), "{}: idx shape {} exceeds src shape {} in dim {} ({} > {})", op,
                shape_str(idx.shape()), shape_str(src.shape()), d, idx.size(d), src.size(d));
    HYDRA_CHECK(d == dim || idx.size(d) <= base.size(d),
                "{}: idx shape {} exceeds base shape {} in dim {} ({} > {}; only dim {} may be larger)", op,
                shape_str(idx.shape()), shape_str(base.shape()), d, idx.size(d), base.size(d), dim);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// concat / stack / split / chunk

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  HYDRA_CHECK(!xs.empty(), "concat: expected at least one tensor, got an empty list");
  for (std::size_t i = 0; i < xs.size(); ++i)
    HYDRA_CHECK(xs[i].defined(), "concat: tensor {} of {} is undefined", i, xs.size());
  const Tensor& x0 = xs[0];
  HYDRA_CHECK(x0.dim() >= 1, "concat: tensors must have rank >= 1, got shape {} at position 0", shape_str(x0.shape()));
  dim = wrap_dim(dim, x0.shape(), "concat");
  Shape out_shape = x0.shape();
  out_shape[dim] = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    HYDRA_CHECK(x.dtype() == x0.dtype(), "concat: tensor {} has dtype {} (shape {}) but tensor 0 has dtype {} (shape {})",
                i, dtype_name(x.dtype()), shape_str(x.shape()), dtype_name(x0.dtype()), shape_str(x0.shape()));
    HYDRA_CHECK(x.device() == x0.device(), "concat: tensor {} is on {} but tensor 0 is on {}", i, x.device(),
                x0.device());
    bool ok = x.dim() == x0.dim();
    for (int64_t d = 0; ok && d < x0.dim(); ++d) ok = d == dim || x.size(d) == x0.size(d);
    HYDRA_CHECK(ok, "concat: tensor {} has shape {} but tensor 0 has shape {}; sizes must match in every dim except "
                "dim {}", i, shape_str(x.shape()), shape_str(x0.shape()), dim);
    out_shape[dim] += x.size(dim);
  }
  Tensor out = empty(out_shape, x0.dtype(), x0.device());
  switch (x0.device().type) {
    case DeviceType::CPU: concat_cpu(xs, dim, out); break;
    case DeviceType::CUDA: cuda::concat(xs, dim, out); break;
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  HYDRA_CHECK(!xs.empty(), "stack: expected at least one tensor, got an empty list");
  for (std::size_t i = 0; i < xs.size(); ++i) {
    HYDRA_CHECK(xs[i].defined(), "stack: tensor {} of {} is undefined", i, xs.size());
    HYDRA_CHECK(xs[i].shape() == xs[0].shape(), "stack: tensor {} has shape {} but tensor 0 has shape {}; all shapes "
                "must be equal", i, shape_str(xs[i].shape()), shape_str(xs[0].shape()));
  }
  dim = wrap_dim(dim, xs[0].dim() + 1, "stack");
  std::vector<Tensor> us;
  us.reserve(xs.size());
  for (const Tensor& x : xs) us.push_back(x.unsqueeze(dim));
  return concat(us, dim);
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  check_defined(x, "split", "x");
  HYDRA_CHECK(x.dim() >= 1, "split: x must have rank >= 1, got shape {}", shape_str(x.shape()));
  dim = wrap_dim(dim, x.shape(), "split");
  int64_t total = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    HYDRA_CHECK(sizes[i] >= 0, "split: size {} at position {} is negative (sizes {})", sizes[i], i, sizes_str(sizes));
    total += sizes[i];
  }
  HYDRA_CHECK(total == x.size(dim), "split: sizes {} sum to {} but dim {} of x (shape {}) has size {}",
              sizes_str(sizes), total, dim, shape_str(x.shape()), x.size(dim));
  std::vector<Tensor> out;
  out.reserve(sizes.size());
  int64_t off = 0;
  for (int64_t s : sizes) {
    out.push_back(x.narrow(dim, off, s));
    off += s;
  }
  return out;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t n, int64_t dim) {
  check_defined(x, "chunk", "x");
  HYDRA_CHECK(n >= 1, "chunk: number of chunks must be >= 1, got {} (x shape {})", n, shape_str(x.shape()));
  HYDRA_CHECK(x.dim() >= 1, "chunk: x must have rank >= 1, got shape {}", shape_str(x.shape()));
  dim = wrap_dim(dim, x.shape(), "chunk");
  const int64_t S = x.size(dim);
  std::vector<int64_t> sizes;
  if (S == 0) {
    sizes.assign(n, 0);
  } else {
    const int64_t step = (S + n - 1) / n;
    for (int64_t off = 0; off < S; off += step) sizes.push_back(std::min(step, S - off));
  }
  return split(x, sizes, dim);
}

// ---------------------------------------------------------------------------------------------------------
// index_select / index_add / gather / scatter_add

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& idx) {
  check_defined(x, "index_select", "x");
  check_defined(idx, "index_select", "idx");
  check_same_device(x, idx, "index_select");
  check_index_dtype(idx, "index_select", "idx");
  check_rank(idx, 1, "index_select", "idx");
  HYDRA_CHECK(x.dim() >= 1, "index_select: x must have rank >= 1, got shape {}", shape_str(x.shape()));
  dim = wrap_dim(dim, x.shape(), "index_select");
  Shape out_shape = x.shape();
  out_shape[dim] = idx.numel();
  Tensor out = empty(out_shape, x.dtype(), x.device());
  switch (x.device().type) {
    case DeviceType::CPU:
      check_index_values(idx, x.size(dim), "index_select", "idx",
                         fmt::format("dim {} of x with shape {}", dim, shape_str(x.shape())));
      gather_cpu(x, dim, broadcast_index(idx, dim, out_shape), out);
      break;
    case DeviceType::CUDA:
      check_index_values(idx, x.size(dim), "index_select", "idx",
                         fmt::format("dim {} of x with shape {}", dim, shape_str(x.shape())));
      cuda::gather(x, dim, broadcast_index(idx, dim, out_shape), out);
      break;
  }
  return out;
}

Tensor index_add(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& src) {
  check_defined(x, "index_add", "x");
  check_defined(idx, "index_add", "idx");
  check_defined(src, "index_add", "src");
  check_same_device(x, idx, "index_add");
  check_same_device(x, src, "index_add");
  check_same_dtype(x, src, "index_add");
  check_index_dtype(idx, "index_add", "idx");
  check_rank(idx, 1, "index_add", "idx");
  HYDRA_CHECK(x.dtype() != DType::Bool, "index_add: bool tensors cannot be accumulated (x shape {})",
              shape_str(x.shape()));
  HYDRA_CHECK(x.dim() >= 1, "index_add: x must have rank >= 1, got shape {}", shape_str(x.shape()));
  dim = wrap_dim(dim, x.shape(), "index_add");
  Shape want = x.shape();
  want[dim] = idx.numel();
  HYDRA_CHECK(src.shape() == want, "index_add: src has shape {} but expected {} (x shape {} with dim {} replaced by "
              "idx length {})", shape_str(src.shape()), shape_str(want), shape_str(x.shape()), dim, idx.numel());
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  switch (x.device().type) {
    case DeviceType::CPU:
      check_index_values(idx, x.size(dim), "index_add", "idx",
                         fmt::format("dim {} of x with shape {}", dim, shape_str(x.shape())));
      out.copy_(x);
      scatter_add_cpu(out, dim, broadcast_index(idx, dim, want), src);
      break;
    case DeviceType::CUDA:
      check_index_values(idx, x.size(dim), "index_add", "idx",
                         fmt::format("dim {} of x with shape {}", dim, shape_str(x.shape())));
      out.copy_(x);
      cuda::scatter_add(out, dim, broadcast_index(idx, dim, want), src);
      break;
  }
  return out;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& idx) {
  check_defined(x, "gather", "x");
  check_defined(idx, "gather", "idx");
  check_same_device(x, idx, "gather");
  check_index_dtype(idx, "gather", "idx");
  HYDRA_CHECK(x.dim() >= 1, "gather: x must have rank >= 1, got shape {}", shape_str(x.shape()));
  dim = wrap_dim(dim, x.shape(), "gather");
  HYDRA_CHECK(idx.dim() == x.dim(), "gather: idx shape {} must have the rank of x shape {}", shape_str(idx.shape()),
              shape_str(x.shape()));
  for (int64_t d = 0; d < x.dim(); ++d)
    HYDRA_CHECK(d == dim || idx.size(d) <= x.size(d),
                "gather: idx shape {} exceeds x shape {} in dim {} ({} > {}; only dim {} may be larger)",
                shape_str(idx.shape()), shape_str(x.shape()), d, idx.size(d), x.size(d), dim);
  Tensor out = empty(idx.shape(), x.dtype(), x.device());
  switch (x.device().type) {
    case DeviceType::CPU:
      check_index_values(idx, x.size(dim), "gather", "idx",
                         fmt::format("dim {} of x with shape {}", dim, shape_str(x.shape())));
      gather_cpu(x, dim, idx, out);
      break;
    case DeviceType::CUDA:
      check_index_values(idx, x.size(dim), "gather", "idx",
                         fmt::format("dim {} of x with shape {}", dim, shape_str(x.shape())));
      cuda::gather(x, dim, idx, out);
      break;
  }
  return out;
}

Tensor scatter_add(const Tensor& base, int64_t dim, const Tensor& idx, const Tensor& src) {
  check_scatter_args(base, dim, idx, src, "scatter_add");
  Tensor out = empty(base.shape(), base.dtype(), base.device());
  switch (base.device().type) {
    case DeviceType::CPU:
      check_index_values(idx, base.size(dim), "scatter_add", "idx",
                         fmt::format("dim {} of base with shape {}", dim, shape_str(base.shape())));
      out.copy_(base);
      scatter_add_cpu(out, dim, idx, src);
      break;
    case DeviceType::CUDA:
      check_index_values(idx, base.size(dim), "scatter_add", "idx",
                         fmt::format("dim {} of base with shape {}", dim, shape_str(base.shape())));
      out.copy_(base);
      cuda::scatter_add(out, dim, idx, src);
      break;
  }
  return out;
}

Tensor& scatter_add_(Tensor& dst, int64_t dim, const Tensor& idx, const Tensor& src) {
  check_scatter_args(dst, dim, idx, src, "scatter_add_");
  HYDRA_CHECK(!dst.has_expanded_dims(), "scatter_add_: destination of shape {} has broadcast (stride-0) dims; writing "
              "to it would alias elements", shape_str(dst.shape()));
  switch (dst.device().type) {
    case DeviceType::CPU:
      check_index_values(idx, dst.size(dim), "scatter_add_", "idx",
                         fmt::format("dim {} of dst with shape {}", dim, shape_str(dst.shape())));
      scatter_add_cpu(dst, dim, idx, src);
      break;
    case DeviceType::CUDA:
      check_index_values(idx, dst.size(dim), "scatter_add_", "idx",
                         fmt::format("dim {} of dst with shape {}", dim, shape_str(dst.shape())));
      cuda::scatter_add(dst, dim, idx, src);
      break;
  }
  return dst;
}

// ---------------------------------------------------------------------------------------------------------
// embedding

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  check_defined(weight, "embedding", "weight");
  check_defined(ids, "embedding", "ids");
  check_same_device(weight, ids, "embedding");
  check_index_dtype(ids, "embedding", "ids");
  check_rank(weight, 2, "embedding", "weight");
  const int64_t V = weight.size(0), C = weight.size(1), N = ids.numel();
  Shape out_shape = ids.shape();
  out_shape.push_back(C);
  Tensor out = empty(out_shape, weight.dtype(), weight.device());
  switch (weight.device().type) {
    case DeviceType::CPU:
      check_index_values(ids, V, "embedding", "ids",
                         fmt::format("a weight of {} rows (shape {})", V, shape_str(weight.shape())));
      if (N > 0) gather_cpu(weight, 0, broadcast_index(ids.reshape({N}), 0, {N, C}), out.view({N, C}));
      break;
    case DeviceType::CUDA:
      check_index_values(ids, V, "embedding", "ids",
                         fmt::format("a weight of {} rows (shape {})", V, shape_str(weight.shape())));
      if (N > 0) cuda::gather(weight, 0, broadcast_index(ids.reshape({N}), 0, {N, C}), out.view({N, C}));
      break;
  }
  return out;
}

Tensor embedding_backward(const Tensor& grad, const Tensor& ids, int64_t num_rows, int64_t padding_idx) {
  check_defined(grad, "embedding_backward", "grad");
  check_defined(ids, "embedding_backward", "ids");
  check_same_device(grad, ids, "embedding_backward");
  check_index_dtype(ids, "embedding_backward", "ids");
  check_floating(grad, "embedding_backward");
  HYDRA_CHECK(num_rows >= 0, "embedding_backward: num_rows must be >= 0, got {}", num_rows);
  HYDRA_CHECK(padding_idx == -1 || (padding_idx >= 0 && padding_idx < num_rows),
              "embedding_backward: padding_idx {} out of range; expected -1 (none) or a row in [0, {})", padding_idx,
              num_rows);
  bool ok = grad.dim() == ids.dim() + 1;
  for (int64_t d = 0; ok && d < ids.dim(); ++d) ok = grad.size(d) == ids.size(d);
  HYDRA_CHECK(ok, "embedding_backward: grad shape {} must be ids shape {} plus a trailing embedding dim",
              shape_str(grad.shape()), shape_str(ids.shape()));
  const int64_t C = grad.size(-1);
  Tensor out = empty({num_rows, C}, grad.dtype(), grad.device());
  switch (grad.device().type) {
    case DeviceType::CPU: embedding_backward_cpu(grad, ids, num_rows, padding_idx, out); break;
    case DeviceType::CUDA:
      check_index_values(ids, num_rows, "embedding_backward", "ids", fmt::format("an embedding of {} rows", num_rows));
      cuda::embedding_backward(grad, ids, num_rows, padding_idx, out);
      break;
  }
  return out;
}

}  // namespace hydra
