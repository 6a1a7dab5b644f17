#include "tensor/ops/matmul.h"

// GCC 12 reports maybe-uninitialized inside Eigen's vector kernels (not our code).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Core>
#include <omp.h>

#include <algorithm>

#include "tensor/cpu/loops.h"
#include "tensor/cuda/ops.h"
#include "tensor/dispatch.h"
#include "tensor/ops/matmul_layout.h"

namespace hydra {
namespace {

// Eigen reads a matrix in place when one of its strides is 1 and the other is a real (non-zero, non-overlapping)
// leading dimension; broadcast (stride-0) matrices are copied first.
bool gemm_readable(const MatView& v) {
  return (v.cs == 1 && v.rs >= v.cols) || (v.rs == 1 && v.cs >= v.rows);
}

template <typename T>
using RowMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0,
                          Eigen::OuterStride<>>;
template <typename T>
using ColMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>, 0,
                          Eigen::OuterStride<>>;
template <typename T>
using OutMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

// CPU products give the same bits whatever the thread count and the cache sizes the CPU reports. Where Eigen rounds
// partial sums is set by its blocking of the reduction dimension (kc), which it derives from the L1 size it detects
// and, in its own multithreaded path, from the thread count. So Eigen runs single-threaded with a fixed L1 size
// (32 KiB; L2 and L3 as detected: they only shape the row/column blocking), and `product` splits the output across
// threads itself, at multiples of kPanel rows or columns, so that each element goes through the same micro-kernel
// path as in one call: its value then depends on K alone. (This runs once, before main.)
[[maybe_unused]] const bool kEigenConfigured = [] {
  Eigen::setNbThreads(1);
  Eigen::setCpuCacheSizes(32 * 1024, Eigen::l2CacheSize(), Eigen::l3CacheSize());
  return true;
}();
constexpr int64_t kPanel = 24;  // a multiple of Eigen's register panels (mr = 24 floats / 12 doubles, nr = 4)

// o = A·B, the output split across the OpenMP threads by rows or by columns (whichever is longer) when the product is
// big enough to pay for a parallel region; a call inside a parallel region runs on its own thread.
template <typename O, typename MA, typename MB>
void product(O& o, const MA& A, const MB& B) {
  const int64_t M = o.rows(), N = o.cols(), K = A.cols();
  const int64_t nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  const bool by_rows = M >= N;
  const int64_t len = by_rows ? M : N;
  const int64_t step = ((len + nt - 1) / nt + kPanel - 1) / kPanel * kPanel;
  const int64_t pieces = (len + step - 1) / step;
  if (pieces <= 1 || std::min(M, N) < kPanel || M * N * K < (int64_t{1} << 18)) {
    o.noalias() = A * B;
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < pieces; ++p) {
    const int64_t s = p * step, n = std::min(step, len - s);
    if (by_rows) {
      o.middleRows(s, n).noalias() = A.middleRows(s, n) * B;
    } else {
      o.middleCols(s, n).noalias() = A * B.middleCols(s, n);
    }
  }
}

template <typename T, typename F>
void with_map(const T* p, const MatView& v, F&& f) {
  if (v.cs == 1) {
    f(RowMap<T>(p, v.rows, v.cols, Eigen::OuterStride<>(std::max<int64_t>(v.rs, v.cols))));
  } else {
    f(ColMap<T>(p, v.rows, v.cols, Eigen::OuterStride<>(std::max<int64_t>(v.cs, v.rows))));
  }
}

// out (batch..., M, N) contiguous; a and b already expanded to the batch shape.
template <typename T>
void matmul_cpu(const Tensor& a, const Tensor& b, Trans ta, Trans tb, const Tensor& out) {
  const MatView va = matrix_view(a, ta), vb = matrix_view(b, tb);
  const int64_t M = va.rows, K = va.cols, N = vb.cols;
  const int64_t nb = a.dim() - 2;
  const Shape batch(out.shape().begin(), out.shape().begin() + nb);
  const int64_t nbatch = shape_numel(batch);
  const T* pa = static_cast<const T*>(a.raw_data());
  const T* pb = static_cast<const T*>(b.raw_data());
  T* po = static_cast<T*>(out.raw_data());
  auto one = [&](int64_t i) {
    int64_t oa = 0, ob = 0, rem = i;
    for (int64_t d = nb - 1; d >= 0; --d) {
      const int64_t idx = rem % batch[d];
      rem /= batch[d];
      oa += idx * a.strides()[d];
      ob += idx * b.strides()[d];
    }
    OutMap<T> o(po + i * M * N, M, N);
    if (K == 0) {
      o.setZero();
      return;
    }
    with_map(pa + oa, va, [&](const auto& A) { with_map(pb + ob, vb, [&](const auto& B) { product(o, A, B); }); });
  };
  if (nbatch > 1 && M * N * K <= (int64_t{1} << 21)) {
    // Many small products: one per thread.
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < nbatch; ++i) one(i);
  } else {
    for (int64_t i = 0; i < nbatch; ++i) one(i);  // each product split across the threads
  }
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in, Trans ta, Trans tb) {
  check_defined(a_in, "matmul", "a");
  check_defined(b_in, "matmul", "b");
  check_same_device(a_in, b_in, "matmul");
  check_same_dtype(a_in, b_in, "matmul");
  check_floating(a_in, "matmul");
  HYDRA_CHECK(a_in.dim() >= 2 && b_in.dim() >= 2, "matmul: inputs must have rank >= 2, got shapes {} and {}",
              shape_str(a_in.shape()), shape_str(b_in.shape()));
  Tensor a = a_in, b = b_in;
  const MatView va = matrix_view(a, ta), vb = matrix_view(b, tb);
  HYDRA_CHECK(va.cols == vb.rows,
              "matmul: inner dims differ: a {} (trans_a={}) gives K={}, b {} (trans_b={}) gives K={}",
              shape_str(a.shape()), ta == Trans::Yes, va.cols, shape_str(b.shape()), tb == Trans::Yes, vb.rows);
  // Broadcast the batch dims.
  const Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(ba, bb, "matmul (batch dims)");
  Shape sa = batch, sb = batch, so = batch;
  sa.insert(sa.end(), a.shape().end() - 2, a.shape().end());
  sb.insert(sb.end(), b.shape().end() - 2, b.shape().end());
  so.push_back(va.rows);
  so.push_back(vb.cols);
  a = a.expand(sa);
  b = b.expand(sb);
  if (!gemm_readable(matrix_view(a, ta))) a = a.contiguous();
  if (!gemm_readable(matrix_view(b, tb))) b = b.contiguous();
  Tensor out = empty(so, a.dtype(), a.device());
  switch (a.device().type) {
    case DeviceType::CPU:
      if (a.dtype() == DType::BFloat16) {
        Tensor o32 = empty(so, DType::Float32);
        matmul_cpu<float>(a.to(DType::Float32), b.to(DType::Float32), ta, tb, o32);
        out.copy_(o32);
      } else if (a.dtype() == DType::Float32) {
        matmul_cpu<float>(a, b, ta, tb, out);
      } else {
        matmul_cpu<double>(a, b, ta, tb, out);
      }
      break;
    case DeviceType::CUDA: cuda::matmul(a, b, ta, tb, out); break;
  }
  return out;
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  check_defined(x, "linear", "x");
  check_defined(w, "linear", "w");
  HYDRA_CHECK(x.dim() >= 1 && w.dim() == 2 && x.size(-1) == w.size(1),
              "linear: x {} and weight {} do not match: expected x (..., in) and weight (out, in)",
              shape_str(x.shape()), shape_str(w.shape()));
  if (bias.defined()) {
    check_same_device(w, bias, "linear");
    check_same_dtype(w, bias, "linear");
    HYDRA_CHECK(bias.dim() == 1 && bias.size(0) == w.size(0), "linear: bias {} does not match weight {} (expected [{}])",
                shape_str(bias.shape()), shape_str(w.shape()), w.size(0));
  }
  const int64_t in = w.size(1), out_features = w.size(0);
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  out_shape.push_back(out_features);
  const Tensor x2 = x.dim() == 2 ? x : x.reshape({-1, in});
  if (x.device().is_cuda() && bias.defined()) {
    check_same_device(x, w, "linear");
    check_same_dtype(x, w, "linear");
    check_floating(x, "linear");
    Tensor out = empty({x2.size(0), out_features}, x.dtype(), x.device());
    cuda::matmul(x2, w, Trans::No, Trans::Yes, out, bias);
    return out.view(out_shape);
  }
  Tensor out = matmul(x2, w, Trans::No, Trans::Yes);
  if (bias.defined()) add_(out, bias);
  return out.view(out_shape);
}

}  // namespace hydra
