// Fused hot-path ops: one dispatch function per forward/backward and their CPU kernels (math and shapes in
// tensor/ops/fused.h). CPU kernels run rows in parallel with cpu::parallel_for and accumulate in float64; every
// output element (and every column sum such as dw) is produced by exactly one thread in a fixed order, so results
// do not depend on the thread count.
#include "tensor/ops/fused.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "tensor/cpu/loops.h"
#include "tensor/cpu/sigmoid_vec.h"
#include "tensor/cuda/fused_ops.h"
#include "tensor/dispatch.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/elementwise_functors.h"

namespace hydra {

namespace {

// Per-row statistics (rstd, lse, norm) are float32 for float32/bfloat16 inputs and float64 for float64.
DType stat_dtype(DType t) { return t == DType::Float64 ? DType::Float64 : DType::Float32; }
template <typename T>
using stat_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
T from_double(double v) {
  return static_cast<T>(static_cast<compute_t<T>>(v));
}
template <typename T>
double to_double(T v) {
  return static_cast<double>(static_cast<compute_t<T>>(v));
}

Shape leading_shape(const Tensor& t) {  // t.shape[:-1]
  return Shape(t.shape().begin(), t.shape().end() - 1);
}

// ---------------------------------------------------------------------------------------------------------
// RMSNorm

template <typename T>
void rms_norm_fwd_kernel(const T* x, const T* w, T* y, stat_t<T>* rstd, int64_t N, int64_t D, double eps) {
  using CT = compute_t<T>;
  cpu::parallel_for(N, D, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * D;
      double ss = 0.0;
      for (int64_t d = 0; d < D; ++d) {
        const double v = to_double(xr[d]);
        ss += v * v;
      }
      const stat_t<T> rs = static_cast<stat_t<T>>(1.0 / std::sqrt(ss / static_cast<double>(D) + eps));
      rstd[r] = rs;
      T* yr = y + r * D;
      for (int64_t d = 0; d < D; ++d) {
        const T n = static_cast<T>(static_cast<CT>(xr[d]) * static_cast<CT>(rs));  // normalised value, x's dtype
        yr[d] = static_cast<T>(static_cast<CT>(n) * static_cast<CT>(w[d]));
      }
    }
  });
}

template <typename T>
void rms_norm_bwd_kernel(const T* gy, const T* x, const T* w, const stat_t<T>* rstd, T* dx, T* dw, int64_t N,
                         int64_t D) {
  // dx: one row per task.
  cpu::parallel_for(N, 3 * D, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * D;
      const T* gr = gy + r * D;
      const double rs = static_cast<double>(rstd[r]);
      double dot = 0.0;  // Σ_j dn_j n_j
      for (int64_t d = 0; d < D; ++d) dot += to_double(gr[d]) * to_double(w[d]) * to_double(xr[d]) * rs;
      const double mean = dot / static_cast<double>(D);
      T* dxr = dx + r * D;
      for (int64_t d = 0; d < D; ++d) {
        const double dn = to_double(gr[d]) * to_double(w[d]);
        const double n = to_double(xr[d]) * rs;
        dxr[d] = from_double<T>(rs * (dn - n * mean));
      }
    }
  });
  // dw: one block of columns per task, rows summed in order.
  cpu::parallel_for(D, N, [&](int64_t d0, int64_t d1) {
    std::vector<double> acc(static_cast<std::size_t>(d1 - d0), 0.0);
    for (int64_t r = 0; r < N; ++r) {
      const double rs = static_cast<double>(rstd[r]);
      const T* xr = x + r * D;
      const T* gr = gy + r * D;
      for (int64_t d = d0; d < d1; ++d) acc[d - d0] += to_double(gr[d]) * to_double(xr[d]) * rs;
    }
    for (int64_t d = d0; d < d1; ++d) dw[d] = from_double<T>(acc[d - d0]);
  });
}

void rms_norm_forward_cpu(const Tensor& x, const Tensor& w, const Tensor& y, const Tensor& rstd, int64_t N, int64_t D,
                          double eps) {
  dispatch_floating(x.dtype(), "rms_norm_forward", [&]<typename T>() {
    rms_norm_fwd_kernel<T>(x.data<T>(), w.data<T>(), y.data<T>(), rstd.data<stat_t<T>>(), N, D, eps);
  });
}

void rms_norm_backward_cpu(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dx,
                           const Tensor& dw, int64_t N, int64_t D) {
  dispatch_floating(x.dtype(), "rms_norm_backward", [&]<typename T>() {
    rms_norm_bwd_kernel<T>(gy.data<T>(), x.data<T>(), w.data<T>(), rstd.data<stat_t<T>>(), dx.data<T>(), dw.data<T>(),
                           N, D);
  });
}

// ---------------------------------------------------------------------------------------------------------
// Cross-entropy

// Checks every target (ignore_index or in [0, V)) serially, before any parallel kernel runs, and returns the
// number of non-ignored rows.
int64_t count_valid_targets(const Tensor& targets, int64_t N, int64_t V, int64_t ignore_index, const char* op,
                            const Shape& logits_shape) {
  return dispatch_index(targets.dtype(), op, [&]<typename I>() -> int64_t {
    const I* t = targets.data<I>();
    int64_t n_valid = 0;
    for (int64_t r = 0; r < N; ++r) {
      const int64_t v = static_cast<int64_t>(t[r]);
      if (v == ignore_index) continue;
      HYDRA_CHECK(v >= 0 && v < V,
                  "{}: target {} at row {} is out of range for V = {} (expected ignore_index {} or a class in "
                  "[0, {})); logits shape {}",
                  op, v, r, V, ignore_index, V, shape_str(logits_shape));
      ++n_valid;
    }
    return n_valid;
  });
}

template <typename T, typename I>
void cross_entropy_fwd_kernel(const T* logits, const I* targets, stat_t<T>* lse, double* row_loss, int64_t N, int64_t V,
                              int64_t ignore_index) {
  cpu::parallel_for(N, 4 * V, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = logits + r * V;
      // Online log-sum-exp: m is the running max, s = Σ exp(x − m) rescaled whenever m grows.
      double m = -std::numeric_limits<double>::infinity(), s = 0.0;
      for (int64_t v = 0; v < V; ++v) {
        const double z = to_double(xr[v]);
        if (z == -std::numeric_limits<double>::infinity()) continue;  // masked logit: adds exp(-inf) = 0
        if (z > m) {
          s = s * std::exp(m - z) + 1.0;
          m = z;
        } else {
          s += std::exp(z - m);
        }
      }
      const double l = m + std::log(s);
      lse[r] = static_cast<stat_t<T>>(l);
      const int64_t t = static_cast<int64_t>(targets[r]);
      row_loss[r] = t == ignore_index ? 0.0 : l - to_double(xr[t]);
    }
  });
}

template <typename T, typename I>
void cross_entropy_bwd_kernel(const T* logits, const I* targets, const stat_t<T>* lse, T* dlogits, int64_t N, int64_t V,
                              int64_t ignore_index, double scale) {
  cpu::parallel_for(N, 2 * V, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = logits + r * V;
      T* dr = dlogits + r * V;
      const int64_t t = static_cast<int64_t>(targets[r]);
      if (t == ignore_index || scale == 0.0) {
        for (int64_t v = 0; v < V; ++v) dr[v] = from_double<T>(0.0);
        continue;
      }
      const double l = static_cast<double>(lse[r]);
      for (int64_t v = 0; v < V; ++v) {
        const double p = std::exp(to_double(xr[v]) - l);
        dr[v] = from_double<T>((p - (v == t ? 1.0 : 0.0)) * scale);
      }
    }
  });
}

void cross_entropy_forward_cpu(const Tensor& logits, const Tensor& targets, const Tensor& loss, const Tensor& lse,
                               int64_t N, int64_t V, int64_t ignore_index, int64_t n_valid) {
  std::vector<double> row_loss(static_cast<std::size_t>(N), 0.0);
  dispatch_floating(logits.dtype(), "cross_entropy_forward", [&]<typename T>() {
    dispatch_index(targets.dtype(), "cross_entropy_forward", [&]<typename I>() {
      cross_entropy_fwd_kernel<T, I>(logits.data<T>(), targets.data<I>(), lse.data<stat_t<T>>(), row_loss.data(), N, V,
                                     ignore_index);
    });
    double total = 0.0;  // summed in row order: independent of the thread count
    for (double v : row_loss) total += v;
    loss.data<stat_t<T>>()[0] = static_cast<stat_t<T>>(n_valid > 0 ? total / static_cast<double>(n_valid) : 0.0);
  });
}

void cross_entropy_backward_cpu(const Tensor& gloss, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                                const Tensor& dlogits, int64_t N, int64_t V, int64_t ignore_index, int64_t n_valid) {
  const double scale = n_valid > 0 ? gloss.item() / static_cast<double>(n_valid) : 0.0;
  dispatch_floating(logits.dtype(), "cross_entropy_backward", [&]<typename T>() {
    dispatch_index(targets.dtype(), "cross_entropy_backward", [&]<typename I>() {
      cross_entropy_bwd_kernel<T, I>(logits.data<T>(), targets.data<I>(), lse.data<stat_t<T>>(), dlogits.data<T>(), N,
                                     V, ignore_index, scale);
    });
  });
}

// ---------------------------------------------------------------------------------------------------------
// L2 normalisation

template <typename T>
void l2_normalize_fwd_kernel(const T* x, T* y, stat_t<T>* norm, int64_t N, int64_t D, double eps) {
  cpu::parallel_for(N, 2 * D, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * D;
      double ss = 0.0;
      for (int64_t d = 0; d < D; ++d) {
        const double v = to_double(xr[d]);
        ss += v * v;
      }
      const double nrm = std::sqrt(ss);
      norm[r] = static_cast<stat_t<T>>(nrm);
      const double inv = 1.0 / std::max(nrm, eps);
      T* yr = y + r * D;
      for (int64_t d = 0; d < D; ++d) yr[d] = from_double<T>(to_double(xr[d]) * inv);
    }
  });
}

template <typename T>
void l2_normalize_bwd_kernel(const T* gy, const T* y, const stat_t<T>* norm, T* dx, int64_t N, int64_t D, double eps) {
  cpu::parallel_for(N, 2 * D, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* gr = gy + r * D;
      const T* yr = y + r * D;
      T* dr = dx + r * D;
      const double nrm = static_cast<double>(norm[r]);
      if (nrm > eps) {
        double dot = 0.0;
        for (int64_t d = 0; d < D; ++d) dot += to_double(gr[d]) * to_double(yr[d]);
        for (int64_t d = 0; d < D; ++d) dr[d] = from_double<T>((to_double(gr[d]) - to_double(yr[d]) * dot) / nrm);
      } else {
        for (int64_t d = 0; d < D; ++d) dr[d] = from_double<T>(to_double(gr[d]) / eps);
      }
    }
  });
}

void l2_normalize_forward_cpu(const Tensor& x, const Tensor& y, const Tensor& norm, int64_t N, int64_t D, double eps) {
  dispatch_floating(x.dtype(), "l2_normalize_forward", [&]<typename T>() {
    l2_normalize_fwd_kernel<T>(x.data<T>(), y.data<T>(), norm.data<stat_t<T>>(), N, D, eps);
  });
}

void l2_normalize_backward_cpu(const Tensor& gy, const Tensor& y, const Tensor& norm, const Tensor& dx, int64_t N,
                               int64_t D, double eps) {
  dispatch_floating(y.dtype(), "l2_normalize_backward", [&]<typename T>() {
    l2_normalize_bwd_kernel<T>(gy.data<T>(), y.data<T>(), norm.data<stat_t<T>>(), dx.data<T>(), N, D, eps);
  });
}

// ---------------------------------------------------------------------------------------------------------
// Rotary embedding

// cos/sin tables (T, D/2) holding exactly the values the kernel multiplies by (precision rules in fused.h).
template <typename T>
void rotary_tables(int64_t T_len, int64_t D, int64_t position_offset, double base, std::vector<double>& cos_t,
                   std::vector<double>& sin_t) {
  const int64_t H = D / 2;
  cos_t.resize(static_cast<std::size_t>(T_len * H));
  sin_t.resize(static_cast<std::size_t>(T_len * H));
  for (int64_t i = 0; i < H; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(D);
    const float inv_freq = 1.0f / std::pow(static_cast<float>(base), exponent);  // float32, as SPEC §2.9 says
    for (int64_t t = 0; t < T_len; ++t) {
      double c, s;
      if constexpr (std::is_same_v<T, double>) {
        const double theta = static_cast<double>(position_offset + t) * static_cast<double>(inv_freq);
        c = std::cos(theta);
        s = std::sin(theta);
      } else {
        const float theta = static_cast<float>(position_offset + t) * inv_freq;
        // cos/sin in float32, then rounded to the activation dtype (a no-op for float32).
        c = to_double(static_cast<T>(std::cos(theta)));
        s = to_double(static_cast<T>(std::sin(theta)));
      }
      cos_t[t * H + i] = c;
      sin_t[t * H + i] = s;
    }
  }
}

// sign = +1: rotation by θ (forward); sign = −1: rotation by −θ (backward).
template <typename T>
void rotary_kernel(const T* x, T* y, int64_t rows, int64_t T_len, int64_t D, const std::vector<double>& cos_t,
                   const std::vector<double>& sin_t, double sign) {
  const int64_t H = D / 2;
  cpu::parallel_for(rows, 2 * D, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t t = r % T_len;
      const T* xr = x + r * D;
      T* yr = y + r * D;
      const double* c = cos_t.data() + t * H;
      const double* s = sin_t.data() + t * H;
      for (int64_t i = 0; i < H; ++i) {
        const double a = to_double(xr[i]), b = to_double(xr[i + H]);
        const double si = sign * s[i];
        yr[i] = from_double<T>(a * c[i] - b * si);
        yr[i + H] = from_double<T>(b * c[i] + a * si);
      }
    }
  });
}

void rotary_cpu(const Tensor& x, const Tensor& y, int64_t position_offset, double base, double sign, const char* op) {
  const int64_t D = x.size(-1), T_len = x.size(-2);
  const int64_t rows = D > 0 ? x.numel() / D : 0;
  dispatch_floating(x.dtype(), op, [&]<typename T>() {
    std::vector<double> cos_t, sin_t;
    rotary_tables<T>(T_len, D, position_offset, base, cos_t, sin_t);
    rotary_kernel<T>(x.data<T>(), y.data<T>(), rows, T_len, D, cos_t, sin_t, sign);
  });
}

// ---------------------------------------------------------------------------------------------------------
// Causal depthwise conv1d

struct ConvDims {
  int64_t B, T, C, K;
};

// xp[b, c, s]: the cache for s < K−1 (zeros without a cache), x[b, s−K+1, c] after.
template <typename T>
double conv_xp(const T* x, const T* cache, const ConvDims& d, int64_t b, int64_t c, int64_t s) {
  const int64_t Km1 = d.K - 1;
  if (s < Km1) return cache ? to_double(cache[(b * d.C + c) * Km1 + s]) : 0.0;
  return to_double(x[(b * d.T + (s - Km1)) * d.C + c]);
}

// The kernels below walk rows (b, s) of xp and keep the channel loop innermost and contiguous (x, y, gy are [B, T, C]),
// so it vectorises; accumulation in double, per channel in a fixed order (j, then (b, t)) as before.

// w [C, K] transposed to wt[j·C + c] in double.
template <typename T>
std::vector<double> conv_weight_t(const T* w, const ConvDims& d) {
  std::vector<double> wt(static_cast<std::size_t>(d.K * d.C));
  for (int64_t c = 0; c < d.C; ++c)
    for (int64_t j = 0; j < d.K; ++j) wt[j * d.C + c] = to_double(w[c * d.K + j]);
  return wt;
}

// Channels [c0, c1) of row s of xp for batch b into row[c0..c1): x[b, s − K + 1, :] for s ≥ K − 1, else the cache
// column s (zeros without a cache).
template <typename T>
void conv_xp_row(const T* x, const T* cache, const ConvDims& d, int64_t b, int64_t s, double* row, int64_t c0,
                 int64_t c1) {
  const int64_t Km1 = d.K - 1;
  if (s >= Km1) {
    const T* xr = x + (b * d.T + (s - Km1)) * d.C;
    for (int64_t c = c0; c < c1; ++c) row[c] = to_double(xr[c]);
  } else {
    for (int64_t c = c0; c < c1; ++c) row[c] = cache ? to_double(cache[(b * d.C + c) * Km1 + s]) : 0.0;
  }
}

template <typename T>
void causal_conv1d_fwd_kernel(const T* x, const T* w, const T* bias, const T* cache, T* y, T* new_cache,
                              const ConvDims& d) {
  const int64_t Km1 = d.K - 1, C = d.C;
  const std::vector<double> wt = conv_weight_t(w, d);
  cpu::parallel_for(d.B * d.T, d.C * d.K, [&](int64_t r0, int64_t r1) {
    std::vector<double> acc(static_cast<std::size_t>(C)), xr(static_cast<std::size_t>(C));
    for (int64_t bt = r0; bt < r1; ++bt) {
      const int64_t b = bt / d.T, t = bt % d.T;
      for (int64_t c = 0; c < C; ++c) acc[c] = bias ? to_double(bias[c]) : 0.0;
      for (int64_t j = 0; j < d.K; ++j) {
        conv_xp_row(x, cache, d, b, t + j, xr.data(), 0, C);
        const double* wj = wt.data() + j * C;
        for (int64_t c = 0; c < C; ++c) acc[c] += wj[c] * xr[c];
      }
      T* yr = y + bt * C;
      for (int64_t c = 0; c < C; ++c) yr[c] = from_double<T>(acc[c]);
    }
  });
  if (new_cache) {
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t c = 0; c < d.C; ++c)
        for (int64_t m = 0; m < Km1; ++m)
          new_cache[(b * d.C + c) * Km1 + m] = from_double<T>(conv_xp(x, cache, d, b, c, d.T + m));
  }
}

template <typename T>
void causal_conv1d_bwd_kernel(const T* gy, const T* gnc, const T* x, const T* w, const T* cache, T* dx, T* dw, T* dbias,
                              T* dcache, const ConvDims& d) {
  const int64_t Km1 = d.K - 1, C = d.C;
  const std::vector<double> wt = conv_weight_t(w, d);
  // dxp[b, s, :] = Σ_j w[:, j] gy[b, s − j, :] (0 ≤ s − j < T) + gnc[b, :, s − T] (s ≥ T), into out[0..C).
  auto dxp_row = [&](int64_t b, int64_t s, double* out) {
    for (int64_t c = 0; c < C; ++c) out[c] = 0.0;
    for (int64_t j = 0; j < d.K; ++j) {
      const int64_t tt = s - j;
      if (tt < 0 || tt >= d.T) continue;
      const T* gr = gy + (b * d.T + tt) * C;
      const double* wj = wt.data() + j * C;
      for (int64_t c = 0; c < C; ++c) out[c] += wj[c] * to_double(gr[c]);
    }
    if (gnc && s >= d.T)
      for (int64_t c = 0; c < C; ++c) out[c] += to_double(gnc[(b * C + c) * Km1 + (s - d.T)]);
  };
  cpu::parallel_for(d.B * d.T, d.C * d.K, [&](int64_t r0, int64_t r1) {
    std::vector<double> row(static_cast<std::size_t>(C));
    for (int64_t bt = r0; bt < r1; ++bt) {
      const int64_t b = bt / d.T, t = bt % d.T;
      dxp_row(b, t + Km1, row.data());
      for (int64_t c = 0; c < C; ++c) dx[bt * C + c] = from_double<T>(row[c]);
    }
  });
  if (dcache) {
    std::vector<double> row(static_cast<std::size_t>(C));
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t s = 0; s < Km1; ++s) {
        dxp_row(b, s, row.data());
        for (int64_t c = 0; c < C; ++c) dcache[(b * C + c) * Km1 + s] = from_double<T>(row[c]);
      }
  }
  // dw, dbias: one block of channels per task, (b, t) summed in order.
  cpu::parallel_for(d.C, d.B * d.T * d.K, [&](int64_t c0, int64_t c1) {
    const int64_t nc = c1 - c0;
    std::vector<double> aw(static_cast<std::size_t>(nc * d.K), 0.0), ab(static_cast<std::size_t>(nc), 0.0);
    std::vector<double> xr(static_cast<std::size_t>(C));
    for (int64_t b = 0; b < d.B; ++b) {
      for (int64_t t = 0; t < d.T; ++t) {
        const T* gr = gy + (b * d.T + t) * C;
        for (int64_t c = c0; c < c1; ++c) ab[c - c0] += to_double(gr[c]);
        for (int64_t j = 0; j < d.K; ++j) {
          conv_xp_row(x, cache, d, b, t + j, xr.data(), c0, c1);
          double* awj = aw.data() + j * nc;
          for (int64_t c = c0; c < c1; ++c) awj[c - c0] += to_double(gr[c]) * xr[c];
        }
      }
    }
    for (int64_t c = c0; c < c1; ++c) {
      for (int64_t j = 0; j < d.K; ++j) dw[c * d.K + j] = from_double<T>(aw[j * nc + (c - c0)]);
      if (dbias) dbias[c] = from_double<T>(ab[c - c0]);
    }
  });
}

template <typename T>
T* data_or_null(const Tensor& t) {
  return t.defined() && t.numel() > 0 ? t.data<T>() : nullptr;
}

void causal_conv1d_forward_cpu(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& cache,
                               const Tensor& y, const Tensor& new_cache, const ConvDims& d) {
  dispatch_floating(x.dtype(), "causal_conv1d_forward", [&]<typename T>() {
    causal_conv1d_fwd_kernel<T>(x.data<T>(), w.data<T>(), data_or_null<T>(bias), data_or_null<T>(cache), y.data<T>(),
                                data_or_null<T>(new_cache), d);
  });
}

void causal_conv1d_backward_cpu(const Tensor& gy, const Tensor& gnc, const Tensor& x, const Tensor& w,
                                const Tensor& cache, const CausalConv1dGrads& g, const ConvDims& d) {
  dispatch_floating(x.dtype(), "causal_conv1d_backward", [&]<typename T>() {
    causal_conv1d_bwd_kernel<T>(gy.data<T>(), data_or_null<T>(gnc), x.data<T>(), w.data<T>(), data_or_null<T>(cache),
                                g.dx.data<T>(), g.dw.data<T>(), data_or_null<T>(g.dbias), data_or_null<T>(g.dcache), d);
  });
}

// Shared argument checks of the conv forward and backward; returns the dims.
ConvDims check_conv_args(const char* op, const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& cache) {
  check_defined(x, op, "x");
  check_defined(w, op, "w");
  check_floating(x, op);
  check_same_dtype(x, w, op);
  check_same_device(x, w, op);
  HYDRA_CHECK(x.dim() == 3, "{}: x must be (B, T, C), got shape {}", op, shape_str(x.shape()));
  HYDRA_CHECK(w.dim() == 2 && w.size(0) == x.size(2) && w.size(1) >= 1,
              "{}: w must be (C, K) with C = x.shape[2] and K >= 1; got w shape {} for x shape {}", op,
              shape_str(w.shape()), shape_str(x.shape()));
  const ConvDims d{x.size(0), x.size(1), x.size(2), w.size(1)};
  if (bias.defined()) {
    check_same_dtype(x, bias, op);
    check_same_device(x, bias, op);
    HYDRA_CHECK(bias.dim() == 1 && bias.size(0) == d.C, "{}: bias must be (C) = [{}], got shape {} (x shape {})", op,
                d.C, shape_str(bias.shape()), shape_str(x.shape()));
  }
  if (cache.defined()) {
    check_same_dtype(x, cache, op);
    check_same_device(x, cache, op);
    HYDRA_CHECK(cache.shape() == (Shape{d.B, d.C, d.K - 1}),
                "{}: cache must be (B, C, K-1) = {}, got shape {} (x shape {}, w shape {})", op,
                shape_str(Shape{d.B, d.C, d.K - 1}), shape_str(cache.shape()), shape_str(x.shape()),
                shape_str(w.shape()));
  }
  return d;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// dispatch

RmsNormOutput rms_norm_forward(const Tensor& x, const Tensor& w, double eps, std::optional<DType> out_dtype) {
  const char* op = "rms_norm_forward";
  check_defined(x, op, "x");
  check_defined(w, op, "w");
  check_floating(x, op);
  check_same_dtype(x, w, op);
  check_same_device(x, w, op);
  HYDRA_CHECK(x.dim() >= 1 && x.size(-1) >= 1, "{}: x must be (..., D) with D >= 1, got shape {}", op,
              shape_str(x.shape()));
  HYDRA_CHECK(w.dim() == 1 && w.size(0) == x.size(-1), "{}: weight must be (D) = [{}], got shape {} (x shape {})", op,
              x.size(-1), shape_str(w.shape()), shape_str(x.shape()));
  HYDRA_CHECK(eps >= 0.0, "{}: eps must be >= 0, got {}", op, eps);
  const DType ot = out_dtype.value_or(x.dtype());
  HYDRA_CHECK(is_floating(ot), "{}: out_dtype must be floating, got {}", op, dtype_name(ot));
  const Tensor xc = x.contiguous(), wc = w.contiguous();
  const int64_t D = x.size(-1), N = x.numel() / D;
  // Fused into the kernel: float32 → bfloat16 on CUDA. Any other pair: y in x's dtype, then a cast.
  const bool fused_cast = ot == x.dtype() || (x.device().type == DeviceType::CUDA && x.dtype() == DType::Float32 &&
                                              ot == DType::BFloat16);
  RmsNormOutput out{empty(x.shape(), fused_cast ? ot : x.dtype(), x.device()),
                    empty(leading_shape(x), stat_dtype(x.dtype()), x.device())};
  switch (x.device().type) {
    case DeviceType::CPU:
      rms_norm_forward_cpu(xc, wc, out.y, out.rstd, N, D, eps);
      break;
    case DeviceType::CUDA:
      cuda::rms_norm_forward(xc, wc, out.y, out.rstd, eps);
      break;
  }
  if (!fused_cast) out.y = out.y.to(ot);
  return out;
}

RmsNormGrads rms_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& rstd) {
  const char* op = "rms_norm_backward";
  check_defined(gy, op, "gy");
  check_defined(x, op, "x");
  check_defined(w, op, "w");
  check_defined(rstd, op, "rstd");
  check_floating(x, op);
  check_floating(gy, op);
  check_same_dtype(x, w, op);
  check_same_device(x, gy, op);
  check_same_device(x, w, op);
  check_same_device(x, rstd, op);
  HYDRA_CHECK(x.dim() >= 1 && x.size(-1) >= 1, "{}: x must be (..., D) with D >= 1, got shape {}", op,
              shape_str(x.shape()));
  HYDRA_CHECK(gy.shape() == x.shape(), "{}: gy shape {} differs from x shape {}", op, shape_str(gy.shape()),
              shape_str(x.shape()));
  HYDRA_CHECK(w.dim() == 1 && w.size(0) == x.size(-1), "{}: weight must be (D) = [{}], got shape {} (x shape {})", op,
              x.size(-1), shape_str(w.shape()), shape_str(x.shape()));
  HYDRA_CHECK(rstd.shape() == leading_shape(x) && rstd.dtype() == stat_dtype(x.dtype()),
              "{}: rstd must be {} {} (from rms_norm_forward), got {} {} (x shape {})", op,
              dtype_name(stat_dtype(x.dtype())), shape_str(leading_shape(x)), dtype_name(rstd.dtype()),
              shape_str(rstd.shape()), shape_str(x.shape()));
  // gy in another dtype: widened inside the CUDA kernel for bfloat16 → float32, converted first otherwise.
  const bool widen_in_kernel = gy.dtype() == x.dtype() || (x.device().type == DeviceType::CUDA &&
                                                          x.dtype() == DType::Float32 &&
                                                          gy.dtype() == DType::BFloat16);
  const Tensor gc = widen_in_kernel ? gy.contiguous() : gy.to(x.dtype()).contiguous(), xc = x.contiguous(),
               wc = w.contiguous(), rc = rstd.contiguous();
  const int64_t D = x.size(-1), N = x.numel() / D;
  RmsNormGrads g{empty(x.shape(), x.dtype(), x.device()), empty(w.shape(), w.dtype(), w.device())};
  switch (x.device().type) {
    case DeviceType::CPU:
      rms_norm_backward_cpu(gc, xc, wc, rc, g.dx, g.dw, N, D);
      break;
    case DeviceType::CUDA:
      cuda::rms_norm_backward(gc, xc, wc, rc, g.dx, g.dw);
      break;
  }
  return g;
}

namespace {
// Shared argument checks of the cross-entropy forward and backward.
void check_ce_args(const char* op, const Tensor& logits, const Tensor& targets) {
  check_defined(logits, op, "logits");
  check_defined(targets, op, "targets");
  check_floating(logits, op);
  check_index_dtype(targets, op, "targets");
  check_same_device(logits, targets, op);
  HYDRA_CHECK(logits.dim() >= 1 && logits.size(-1) >= 1, "{}: logits must be (..., V) with V >= 1, got shape {}", op,
              shape_str(logits.shape()));
  HYDRA_CHECK(targets.shape() == leading_shape(logits),
              "{}: targets must have shape logits.shape[:-1] = {}, got {} (logits shape {})", op,
              shape_str(leading_shape(logits)), shape_str(targets.shape()), shape_str(logits.shape()));
}
}  // namespace

CrossEntropyOutput cross_entropy_forward(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  const char* op = "cross_entropy_forward";
  check_ce_args(op, logits, targets);
  const Tensor lc = logits.contiguous(), tc = targets.contiguous();
  const int64_t V = logits.size(-1), N = logits.numel() / V;
  const DType sd = stat_dtype(logits.dtype());
  CrossEntropyOutput out{empty({}, sd, logits.device()), empty(leading_shape(logits), sd, logits.device())};
  switch (logits.device().type) {
    case DeviceType::CPU: {
      const int64_t n_valid = count_valid_targets(tc, N, V, ignore_index, op, logits.shape());
      cross_entropy_forward_cpu(lc, tc, out.loss, out.lse, N, V, ignore_index, n_valid);
      break;
    }
    case DeviceType::CUDA: {
      // The targets are checked on the device and the verdict is raised at the next synchronisation of the
      // device (cuda::defer_device_check): same message as the CPU path, no host stop per call.
      cuda::cross_entropy_forward(lc, tc, out.loss, out.lse, ignore_index,
                                  [op = std::string(op), V, ignore_index, shape = shape_str(logits.shape())](
                                      int64_t row, int64_t value) {
                                    return fmt::format(
                                        "{}: target {} at row {} is out of range for V = {} (expected ignore_index {} "
                                        "or a class in [0, {})); logits shape {}",
                                        op, value, row, V, ignore_index, V, shape);
                                  });
      break;
    }
  }
  return out;
}

Tensor cross_entropy_backward(const Tensor& gloss, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                              int64_t ignore_index) {
  const char* op = "cross_entropy_backward";
  check_ce_args(op, logits, targets);
  check_defined(gloss, op, "gloss");
  check_defined(lse, op, "lse");
  check_floating(gloss, op);
  check_same_device(logits, gloss, op);
  check_same_device(logits, lse, op);
  HYDRA_CHECK(gloss.numel() == 1, "{}: gloss must have one element, got shape {}", op, shape_str(gloss.shape()));
  HYDRA_CHECK(lse.shape() == leading_shape(logits) && lse.dtype() == stat_dtype(logits.dtype()),
              "{}: lse must be {} {} (from cross_entropy_forward), got {} {} (logits shape {})", op,
              dtype_name(stat_dtype(logits.dtype())), shape_str(leading_shape(logits)), dtype_name(lse.dtype()),
              shape_str(lse.shape()), shape_str(logits.shape()));
  const Tensor lc = logits.contiguous(), tc = targets.contiguous(), sc = lse.contiguous();
  const int64_t V = logits.size(-1), N = logits.numel() / V;
  Tensor dlogits = empty(logits.shape(), logits.dtype(), logits.device());
  switch (logits.device().type) {
    case DeviceType::CPU: {
      const int64_t n_valid = count_valid_targets(tc, N, V, ignore_index, op, logits.shape());
      cross_entropy_backward_cpu(gloss, lc, tc, sc, dlogits, N, V, ignore_index, n_valid);
      break;
    }
    case DeviceType::CUDA:
      // gloss stays on the device (no host sync); n_valid is counted there. The targets were checked by forward.
      cuda::cross_entropy_backward(gloss, lc, tc, sc, dlogits, ignore_index);
      break;
  }
  return dlogits;
}

L2NormalizeOutput l2_normalize_forward(const Tensor& x, double eps) {
  const char* op = "l2_normalize_forward";
  check_defined(x, op, "x");
  check_floating(x, op);
  HYDRA_CHECK(x.dim() >= 1, "{}: x must be (..., D), got a 0-d tensor", op);
  HYDRA_CHECK(eps > 0.0, "{}: eps must be > 0, got {}", op, eps);
  const Tensor xc = x.contiguous();
  const int64_t D = x.size(-1), N = D > 0 ? x.numel() / D : 0;
  L2NormalizeOutput out{empty(x.shape(), x.dtype(), x.device()),
                        zeros(leading_shape(x), stat_dtype(x.dtype()), x.device())};
  switch (x.device().type) {
    case DeviceType::CPU:
      l2_normalize_forward_cpu(xc, out.y, out.norm, N, D, eps);
      break;
    case DeviceType::CUDA:
      cuda::l2_normalize_forward(xc, out.y, out.norm, eps);
      break;
  }
  return out;
}

Tensor l2_normalize_backward(const Tensor& gy, const Tensor& y, const Tensor& norm, double eps) {
  const char* op = "l2_normalize_backward";
  check_defined(gy, op, "gy");
  check_defined(y, op, "y");
  check_defined(norm, op, "norm");
  check_floating(y, op);
  check_same_dtype(y, gy, op);
  check_same_device(y, gy, op);
  check_same_device(y, norm, op);
  HYDRA_CHECK(y.dim() >= 1, "{}: y must be (..., D), got a 0-d tensor", op);
  HYDRA_CHECK(eps > 0.0, "{}: eps must be > 0, got {}", op, eps);
  HYDRA_CHECK(gy.shape() == y.shape(), "{}: gy shape {} differs from y shape {}", op, shape_str(gy.shape()),
              shape_str(y.shape()));
  HYDRA_CHECK(norm.shape() == leading_shape(y) && norm.dtype() == stat_dtype(y.dtype()),
              "{}: norm must be {} {} (from l2_normalize_forward), got {} {} (y shape {})", op,
              dtype_name(stat_dtype(y.dtype())), shape_str(leading_shape(y)), dtype_name(norm.dtype()),
              shape_str(norm.shape()), shape_str(y.shape()));
  const Tensor gc = gy.contiguous(), yc = y.contiguous(), nc = norm.contiguous();
  const int64_t D = y.size(-1), N = D > 0 ? y.numel() / D : 0;
  Tensor dx = empty(y.shape(), y.dtype(), y.device());
  switch (y.device().type) {
    case DeviceType::CPU:
      l2_normalize_backward_cpu(gc, yc, nc, dx, N, D, eps);
      break;
    case DeviceType::CUDA:
      cuda::l2_normalize_backward(gc, yc, nc, dx, eps);
      break;
  }
  return dx;
}

namespace {
void check_rotary_args(const char* op, const Tensor& x, double base) {
  check_defined(x, op, "x");
  check_floating(x, op);
  HYDRA_CHECK(x.dim() >= 2, "{}: x must be (..., T, D), got shape {}", op, shape_str(x.shape()));
  HYDRA_CHECK(x.size(-1) % 2 == 0, "{}: the last dim D = {} must be even (half-split pairing), x shape {}", op,
              x.size(-1), shape_str(x.shape()));
  HYDRA_CHECK(base > 0.0, "{}: base must be > 0, got {}", op, base);
}
}  // namespace

Tensor rotary_forward(const Tensor& x, int64_t position_offset, double base) {
  const char* op = "rotary_forward";
  check_rotary_args(op, x, base);
  const Tensor xc = x.contiguous();
  Tensor y = empty(x.shape(), x.dtype(), x.device());
  switch (x.device().type) {
    case DeviceType::CPU:
      rotary_cpu(xc, y, position_offset, base, +1.0, op);
      break;
    case DeviceType::CUDA:
      cuda::rotary(xc, y, position_offset, base, +1.0);
      break;
  }
  return y;
}

Tensor rotary_backward(const Tensor& gy, int64_t position_offset, double base) {
  const char* op = "rotary_backward";
  check_rotary_args(op, gy, base);
  const Tensor gc = gy.contiguous();
  Tensor dx = empty(gy.shape(), gy.dtype(), gy.device());
  switch (gy.device().type) {
    case DeviceType::CPU:
      rotary_cpu(gc, dx, position_offset, base, -1.0, op);
      break;
    case DeviceType::CUDA:
      cuda::rotary(gc, dx, position_offset, base, -1.0);
      break;
  }
  return dx;
}

CausalConv1dOutput causal_conv1d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& cache) {
  const char* op = "causal_conv1d_forward";
  const ConvDims d = check_conv_args(op, x, w, bias, cache);
  const Tensor xc = x.contiguous(), wc = w.contiguous();
  const Tensor bc = bias.defined() ? bias.contiguous() : Tensor();
  const Tensor cc = cache.defined() ? cache.contiguous() : Tensor();
  CausalConv1dOutput out{empty(x.shape(), x.dtype(), x.device()),
                         d.K > 1 ? empty({d.B, d.C, d.K - 1}, x.dtype(), x.device()) : Tensor()};
  switch (x.device().type) {
    case DeviceType::CPU:
      causal_conv1d_forward_cpu(xc, wc, bc, cc, out.y, out.new_cache, d);
      break;
    case DeviceType::CUDA:
      cuda::causal_conv1d_forward(xc, wc, bc, cc, out.y, out.new_cache);
      break;
  }
  return out;
}

CausalConv1dGrads causal_conv1d_backward(const Tensor& gy, const Tensor& g_new_cache, const Tensor& x, const Tensor& w,
                                         const Tensor& cache, bool has_bias) {
  const char* op = "causal_conv1d_backward";
  const ConvDims d = check_conv_args(op, x, w, Tensor(), cache);
  check_defined(gy, op, "gy");
  check_same_dtype(x, gy, op);
  check_same_device(x, gy, op);
  HYDRA_CHECK(gy.shape() == x.shape(), "{}: gy shape {} differs from x shape {}", op, shape_str(gy.shape()),
              shape_str(x.shape()));
  if (g_new_cache.defined()) {
    check_same_dtype(x, g_new_cache, op);
    check_same_device(x, g_new_cache, op);
    HYDRA_CHECK(g_new_cache.shape() == (Shape{d.B, d.C, d.K - 1}),
                "{}: g_new_cache must be (B, C, K-1) = {}, got shape {}", op, shape_str(Shape{d.B, d.C, d.K - 1}),
                shape_str(g_new_cache.shape()));
  }
  const Tensor gc = gy.contiguous(), xc = x.contiguous(), wc = w.contiguous();
  const Tensor gnc = g_new_cache.defined() ? g_new_cache.contiguous() : Tensor();
  const Tensor cc = cache.defined() ? cache.contiguous() : Tensor();
  CausalConv1dGrads g{empty(x.shape(), x.dtype(), x.device()), empty(w.shape(), w.dtype(), w.device()),
                      has_bias ? empty({d.C}, x.dtype(), x.device()) : Tensor(),
                      d.K > 1 ? empty({d.B, d.C, d.K - 1}, x.dtype(), x.device()) : Tensor()};
  switch (x.device().type) {
    case DeviceType::CPU:
      causal_conv1d_backward_cpu(gc, gnc, xc, wc, cc, g, d);
      break;
    case DeviceType::CUDA:
      cuda::causal_conv1d_backward(gc, gnc, xc, wc, cc, g.dx, g.dw, g.dbias, g.dcache);
      break;
  }
  return g;
}

namespace {
int64_t check_swiglu_args(const char* op, const Tensor& u) {
  check_defined(u, op, "u");
  check_floating(u, op);
  HYDRA_CHECK(u.dim() >= 1 && u.size(-1) % 2 == 0, "{}: u must be (..., 2F) with an even last dim, got shape {}", op,
              shape_str(u.shape()));
  return u.size(-1) / 2;
}
}  // namespace

Tensor swiglu_forward(const Tensor& u) {
  const char* op = "swiglu_forward";
  const int64_t F = check_swiglu_args(op, u);
  Shape ys = u.shape();
  ys.back() = F;
  Tensor y = empty(ys, u.dtype(), u.device());
  const Tensor uc = u.contiguous();
  switch (u.device().type) {
    case DeviceType::CPU:
      dispatch_floating(u.dtype(), op, [&]<typename T>() {
        using A = stat_t<T>;  // float (double for float64), as the elementwise silu: exp dominates this loop
        const T* up = uc.data<T>();
        T* yp = y.data<T>();
        const int64_t N = F > 0 ? y.numel() / F : 0;
        cpu::parallel_for(N, 2 * F, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) {
            if constexpr (std::is_same_v<T, float>) {  // vectorised exp (tensor/cpu/sigmoid_vec.h)
              cpu::swiglu_row_f32(up + r * 2 * F, up + r * 2 * F + F, yp + r * F, F);
              continue;
            }
            for (int64_t j = 0; j < F; ++j) {
              const A g = static_cast<A>(up[r * 2 * F + j]), a = static_cast<A>(up[r * 2 * F + F + j]);
              yp[r * F + j] = static_cast<T>(fn::Silu{}(g) * a);
            }
          }
        });
      });
      break;
    case DeviceType::CUDA:
      cuda::swiglu_forward(uc, y);
      break;
  }
  return y;
}

Tensor swiglu_backward(const Tensor& gy, const Tensor& u) {
  const char* op = "swiglu_backward";
  const int64_t F = check_swiglu_args(op, u);
  check_defined(gy, op, "gy");
  check_same_dtype(u, gy, op);
  check_same_device(u, gy, op);
  Shape ys = u.shape();
  ys.back() = F;
  HYDRA_CHECK(gy.shape() == ys, "{}: gy shape {} differs from the output shape {} of u {}", op, shape_str(gy.shape()),
              shape_str(ys), shape_str(u.shape()));
  Tensor du = empty(u.shape(), u.dtype(), u.device());
  const Tensor uc = u.contiguous(), gc = gy.contiguous();
  switch (u.device().type) {
    case DeviceType::CPU:
      dispatch_floating(u.dtype(), op, [&]<typename T>() {
        using A = stat_t<T>;
        const T* up = uc.data<T>();
        const T* gp = gc.data<T>();
        T* dp = du.data<T>();
        const int64_t N = F > 0 ? gy.numel() / F : 0;
        cpu::parallel_for(N, 3 * F, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) {
            if constexpr (std::is_same_v<T, float>) {
              cpu::swiglu_grad_row_f32(gp + r * F, up + r * 2 * F, up + r * 2 * F + F, dp + r * 2 * F,
                                       dp + r * 2 * F + F, F);
              continue;
            }
            for (int64_t j = 0; j < F; ++j) {
              const A g = static_cast<A>(up[r * 2 * F + j]), a = static_cast<A>(up[r * 2 * F + F + j]);
              const A gv = static_cast<A>(gp[r * F + j]);
              dp[r * 2 * F + j] = static_cast<T>(fn::SiluGrad{}(gv * a, g));
              dp[r * 2 * F + F + j] = static_cast<T>(gv * fn::Silu{}(g));
            }
          }
        });
      });
      break;
    case DeviceType::CUDA:
      cuda::swiglu_backward(gc, uc, du);
      break;
  }
  return du;
}

namespace {
void check_tensor_list(const char* op, const std::vector<Tensor>& ts) {
  for (std::size_t i = 0; i < ts.size(); ++i) {
    const Tensor& t = ts[i];
    HYDRA_CHECK(t.defined(), "{}: tensor {} of the list is undefined", op, i);
    check_floating(t, op);
    check_same_device(ts[0], t, op);
    HYDRA_CHECK(t.is_contiguous(), "{}: tensor {} of the list (shape {}) must be contiguous", op, i,
                shape_str(t.shape()));
  }
}
}  // namespace

Tensor add_cast(const Tensor& x, const Tensor& y) {
  const char* op = "add_cast";
  check_defined(x, op, "x");
  check_defined(y, op, "y");
  check_floating(x, op);
  check_floating(y, op);
  check_same_device(x, y, op);
  HYDRA_CHECK(x.shape() == y.shape(), "{}: x shape {} differs from y shape {}", op, shape_str(x.shape()),
              shape_str(y.shape()));
  if (x.device().type == DeviceType::CUDA && x.dtype() == DType::Float32 && y.dtype() == DType::BFloat16) {
    const Tensor xc = x.contiguous(), yc = y.contiguous();
    Tensor out = empty(x.shape(), x.dtype(), x.device());
    cuda::add_cast(xc, yc, out);
    return out;
  }
  return add(x, y.dtype() == x.dtype() ? y : y.to(x.dtype()));
}

Tensor sum_of_squares(const std::vector<Tensor>& ts) {
  const char* op = "sum_of_squares";
  check_tensor_list(op, ts);
  const Device dev = ts.empty() ? Device{} : ts[0].device();
  Tensor out = empty({}, DType::Float64, dev);
  if (ts.empty()) {
    out.data<double>()[0] = 0.0;
    return out;
  }
  switch (dev.type) {
    case DeviceType::CPU: {
      double total = 0;
      for (const Tensor& t : ts) {
        dispatch_floating(t.dtype(), op, [&]<typename T>() {
          const T* p = t.data<T>();
          double acc = 0;
          for (int64_t i = 0, n = t.numel(); i < n; ++i) {
            const auto x = static_cast<compute_t<T>>(p[i]);
            acc += static_cast<double>(x * x);
          }
          total += acc;
        });
      }
      out.data<double>()[0] = total;
      break;
    }
    case DeviceType::CUDA:
      cuda::sum_of_squares(ts, out);
      break;
  }
  return out;
}

void scale_(const std::vector<Tensor>& ts, double c) {
  const char* op = "scale_";
  check_tensor_list(op, ts);
  if (ts.empty()) return;
  switch (ts[0].device().type) {
    case DeviceType::CPU:
      for (const Tensor& t : ts) {
        dispatch_floating(t.dtype(), op, [&]<typename T>() {
          using C = compute_t<T>;
          T* p = t.data<T>();
          const C cc = static_cast<C>(c);
          for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = static_cast<T>(static_cast<C>(p[i]) * cc);
        });
      }
      break;
    case DeviceType::CUDA:
      cuda::scale_(ts, c);
      break;
  }
}

void adamw_step_(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, const AdamWCoefs& c) {
  const char* op = "adamw_step_";
  check_defined(p, op, "param");
  check_defined(g, op, "grad");
  check_floating(p, op);
  check_same_dtype(p, g, op);
  const DType sd = stat_dtype(p.dtype());
  for (const Tensor* t : {&g, &m, &v}) {
    check_same_device(p, *t, op);
    HYDRA_CHECK(t->shape() == p.shape(), "{}: grad/state shape {} differs from the parameter's {}", op,
                shape_str(t->shape()), shape_str(p.shape()));
  }
  HYDRA_CHECK(m.dtype() == sd && v.dtype() == sd, "{}: the moments must be {} for a {} parameter, got {} and {}", op,
              dtype_name(sd), dtype_name(p.dtype()), dtype_name(m.dtype()), dtype_name(v.dtype()));
  HYDRA_CHECK(p.is_contiguous() && g.is_contiguous() && m.is_contiguous() && v.is_contiguous(),
              "{}: parameter, grad and moments must be contiguous (parameter shape {})", op, shape_str(p.shape()));
  switch (p.device().type) {
    case DeviceType::CPU:
      dispatch_floating(p.dtype(), op, [&]<typename T>() {
        using A = stat_t<T>;
        const AdamWElem<A> f(c);
        T* pp = p.data<T>();
        const T* gp = g.data<T>();
        A* mp = m.data<A>();
        A* vp = v.data<A>();
        for (int64_t i = 0, n = p.numel(); i < n; ++i) {
          A pv = static_cast<A>(pp[i]);
          f(pv, static_cast<A>(gp[i]), mp[i], vp[i]);
          pp[i] = static_cast<T>(pv);
        }
      });
      break;
    case DeviceType::CUDA:
      cuda::adamw_step(p, g, m, v, c);
      break;
  }
}

}  // namespace hydra
