// Windowed causal attention: the argument checks, the public dispatch functions and the CPU kernels (math, shapes
// and layout in window_attn.h). CUDA tensors go to window_attn_cuda.cu (window_attn_cuda.h) from the dispatch
// functions below, after the same checks, with contiguous inputs and outputs allocated here.
//
// Notation: query t (0..T−1) sits at key index P + t and sees keys [lo(t), hi(t)) with
//   lo(t) = max(0, P + t − W + 1),  hi(t) = P + t + 1          (W clamped to S: a larger window sees the same keys).
//
// Forward, one task per (b, h, query tile of kQueryTile rows): the key range that some query of the tile sees,
// [lo(t0), hi(t1 − 1)), at most W + kQueryTile − 1 keys, is walked in key tiles of kKeyTile rows; every query of
// the tile runs over its visible keys of the key tile (which stays in cache) with an online softmax (running max m,
// running sum l, rescaled accumulator of p·v). Keys outside a query's window are skipped (never computed, so there is
// nothing to mask). Then o_t = acc / l and lse_t = m + log l. Time O(B·H·T·W·(K + V)); extra memory per thread
// O(tile·(K + V)). Inner loops run over the contiguous head dim, keys in blocks of four (one load of the query row
// for four dot products, one load/store of the accumulator row for four p·v updates).
// FLOPs: forward 2·B·H·n·(K + V), backward 2·B·H·n·(4K + 3V) with both passes, n = Σ_t (visible keys of t) ≤ T·W.
//
// Backward (flash-attention style, nothing T×S is stored; probabilities are recomputed from q, k and lse):
//   p_tm = exp(scale·q_t·k_m − lse_t),  dp_tm = do_t·v_m,  D_t = do_t·o_t,  ds_tm = p_tm (dp_tm − D_t)
//   dq_t = scale Σ_m ds_tm k_m,   dk_m = scale Σ_t ds_tm q_t,   dv_m = Σ_t p_tm do_t
// Pass 1, one task per (b, h, query tile), writes dq (the same walk as forward). Pass 2, one task per
// (b, h, key tile), writes dk and dv: the queries that see a key of the tile [j0, j1) are
// t ∈ [max(0, j0 − P), min(T, j1 − P + W − 1)), each visiting only its visible keys of the tile. Every output row is
// written by exactly one task, so there are no races and the result does not depend on the thread count. The two
// passes recompute p and dp once each (about 1.4× the FLOPs of a single fused pass) to keep all of (b, h, tile)
// parallel without atomics. Cache rows that no query sees (m ≤ P − W) get zero gradients.
//
// Precision: float32 inputs are computed and accumulated in float32, float64 in float64.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "hydra/mixers/window_attn/window_attn.h"
#include "hydra/mixers/window_attn/window_attn_cuda.h"
#include "tensor/cpu/loops.h"
#include "tensor/dispatch.h"

namespace hydra {

namespace {

constexpr int64_t kQueryTile = 32;
constexpr int64_t kKeyTile = 64;

// The sizes of one call with the window clamped to S (window ≥ S is full causal attention), so that index
// arithmetic with W cannot overflow.
struct Dims {
  int64_t B, T, S, H, K, V, P, W;
};

Dims kernel_dims(const WindowAttnDims& d, int64_t window) {
  return {d.B, d.T, d.S, d.H, d.K, d.V, d.P, std::min(window, std::max<int64_t>(d.S, 1))};
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename T>
inline T dot(const T* __restrict a, const T* __restrict b, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// out[c] = a·b_c for the four rows b_c = b + c·stride: a is read once for four dot products.
template <typename T>
inline void dot4(const T* __restrict a, const T* __restrict b, int64_t stride, int64_t n, T* __restrict out) {
  const T *b0 = b, *b1 = b + stride, *b2 = b + 2 * stride, *b3 = b + 3 * stride;
  T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
  for (int64_t i = 0; i < n; ++i) {
    s0 += a[i] * b0[i];
    s1 += a[i] * b1[i];
    s2 += a[i] * b2[i];
    s3 += a[i] * b3[i];
  }
  out[0] = s0;
  out[1] = s1;
  out[2] = s2;
  out[3] = s3;
}

// out[j − j0] = a·b_j for the rows b_j = b + j·stride, j ∈ [j0, j1): blocks of four, then the rest one by one.
template <typename T>
inline void dot_rows(const T* a, const T* b, int64_t stride, int64_t n, int64_t j0, int64_t j1, T* out) {
  int64_t j = j0;
  for (; j + 4 <= j1; j += 4) dot4(a, b + j * stride, stride, n, out + (j - j0));
  for (; j < j1; ++j) out[j - j0] = dot(a, b + j * stride, n);
}

// y += a·x
template <typename T>
inline void axpy(T* __restrict y, T a, const T* __restrict x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// y += Σ_{j ∈ [j0, j1)} c[j − j0] · x_j for the rows x_j = x + j·stride: y is loaded and stored once per four rows.
template <typename T>
inline void axpy_rows(T* __restrict y, const T* c, const T* x, int64_t stride, int64_t n, int64_t j0, int64_t j1) {
  int64_t j = j0;
  for (; j + 4 <= j1; j += 4) {
    const T *x0 = x + j * stride, *x1 = x0 + stride, *x2 = x1 + stride, *x3 = x2 + stride;
    const T c0 = c[j - j0], c1 = c[j - j0 + 1], c2 = c[j - j0 + 2], c3 = c[j - j0 + 3];
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] += c0 * x0[i] + c1 * x1[i] + c2 * x2[i] + c3 * x3[i];
  }
  for (; j < j1; ++j) axpy(y, c[j - j0], x + j * stride, n);
}

// Element offsets of rows of one (b, h) in the [B, T|S, H, K|V] layouts and the [B, H, T] lse.
struct Rows {
  const Dims& d;
  int64_t b, h;
  int64_t q(int64_t t) const { return ((b * d.T + t) * d.H + h) * d.K; }   // q, dq
  int64_t k(int64_t m) const { return ((b * d.S + m) * d.H + h) * d.K; }   // k, dk
  int64_t v(int64_t m) const { return ((b * d.S + m) * d.H + h) * d.V; }   // v, dv
  int64_t o(int64_t t) const { return ((b * d.T + t) * d.H + h) * d.V; }   // o, do
  int64_t lse(int64_t t) const { return (b * d.H + h) * d.T + t; }        // lse, D
  int64_t k_stride() const { return d.H * d.K; }  // between consecutive rows of k (and q)
  int64_t v_stride() const { return d.H * d.V; }  // between consecutive rows of v (and o)
};

// Visible keys of query t: [key_lo(t), key_hi(t)).
inline int64_t key_lo(const Dims& d, int64_t t) { return std::max<int64_t>(0, d.P + t - d.W + 1); }
inline int64_t key_hi(const Dims& d, int64_t t) { return d.P + t + 1; }

// Estimated multiply-adds of one query-tile or key-tile task (for parallel_for's grain).
int64_t tile_cost(const Dims& d, int64_t tile, int64_t other_tile) {
  return tile * std::min(d.S, d.W + other_tile) * (d.K + d.V + 1);
}

// ---------------------------------------------------------------------------------------------------------
// Forward

template <typename T>
void window_attn_fwd_kernel(const T* q, const T* k, const T* v, T* o, T* lse, const Dims& d, T scale) {
  const int64_t n_qt = ceil_div(d.T, kQueryTile);
  cpu::parallel_for(d.B * d.H * n_qt, tile_cost(d, kQueryTile, kQueryTile), [&](int64_t task0, int64_t task1) {
    std::vector<T> m(kQueryTile), l(kQueryTile), acc(kQueryTile * d.V), s(kKeyTile);
    for (int64_t task = task0; task < task1; ++task) {
      const int64_t qt = task % n_qt, bh = task / n_qt;
      const Rows r{d, bh / d.H, bh % d.H};
      const int64_t t0 = qt * kQueryTile, t1 = std::min(d.T, t0 + kQueryTile);
      std::fill(m.begin(), m.end(), -std::numeric_limits<T>::infinity());
      std::fill(l.begin(), l.end(), T(0));
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t j0 = key_lo(d, t0); j0 < key_hi(d, t1 - 1); j0 += kKeyTile) {
        const int64_t j1 = std::min(key_hi(d, t1 - 1), j0 + kKeyTile);
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t jl = std::max(j0, key_lo(d, t)), jh = std::min(j1, key_hi(d, t));
          if (jl >= jh) continue;
          const int64_t i = t - t0;
          dot_rows(q + r.q(t), k + r.k(0), r.k_stride(), d.K, jl, jh, s.data());
          T mx = -std::numeric_limits<T>::infinity();
          for (int64_t j = 0; j < jh - jl; ++j) {
            s[j] *= scale;
            mx = std::max(mx, s[j]);
          }
          T* ar = acc.data() + i * d.V;
          const T m_new = std::max(m[i], mx);
          if (m_new > m[i]) {  // rescale what was summed under the old max (nothing yet when m = −∞)
            const T c = std::exp(m[i] - m_new);
            l[i] *= c;
            for (int64_t e = 0; e < d.V; ++e) ar[e] *= c;
            m[i] = m_new;
          }
          for (int64_t j = 0; j < jh - jl; ++j) {
            s[j] = std::exp(s[j] - m_new);  // p
            l[i] += s[j];
          }
          axpy_rows(ar, s.data(), v + r.v(0), r.v_stride(), d.V, jl, jh);
        }
      }
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t i = t - t0;
        const T inv = T(1) / l[i];
        T* orow = o + r.o(t);
        const T* ar = acc.data() + i * d.V;
        for (int64_t e = 0; e < d.V; ++e) orow[e] = ar[e] * inv;
        lse[r.lse(t)] = m[i] + std::log(l[i]);
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------------------
// Backward

template <typename T>
void window_attn_bwd_kernel(const T* gout, const T* q, const T* k, const T* v, const T* o, const T* lse, T* dq,
                            T* dk, T* dv, const Dims& d, T scale) {
  // D_t = do_t · o_t, one value per (b, h, t), laid out like lse.
  std::vector<T> D(static_cast<std::size_t>(d.B * d.H * d.T));
  cpu::parallel_for(d.B * d.H, d.T * d.V, [&](int64_t bh0, int64_t bh1) {
    for (int64_t bh = bh0; bh < bh1; ++bh) {
      const Rows r{d, bh / d.H, bh % d.H};
      for (int64_t t = 0; t < d.T; ++t) D[r.lse(t)] = dot(gout + r.o(t), o + r.o(t), d.V);
    }
  });

  // Pass 1: dq, one task per (b, h, query tile).
  const int64_t n_qt = ceil_div(d.T, kQueryTile);
  cpu::parallel_for(d.B * d.H * n_qt, 2 * tile_cost(d, kQueryTile, kQueryTile), [&](int64_t task0, int64_t task1) {
    std::vector<T> acc(kQueryTile * d.K), p(kKeyTile), ds(kKeyTile);
    for (int64_t task = task0; task < task1; ++task) {
      const int64_t qt = task % n_qt, bh = task / n_qt;
      const Rows r{d, bh / d.H, bh % d.H};
      const int64_t t0 = qt * kQueryTile, t1 = std::min(d.T, t0 + kQueryTile);
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t j0 = key_lo(d, t0); j0 < key_hi(d, t1 - 1); j0 += kKeyTile) {
        const int64_t j1 = std::min(key_hi(d, t1 - 1), j0 + kKeyTile);
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t jl = std::max(j0, key_lo(d, t)), jh = std::min(j1, key_hi(d, t));
          const T* qr = q + r.q(t);
          const T* gr = gout + r.o(t);
          const T L = lse[r.lse(t)], Dt = D[r.lse(t)];
          if (jl >= jh) continue;
          dot_rows(qr, k + r.k(0), r.k_stride(), d.K, jl, jh, p.data());   // q·k
          dot_rows(gr, v + r.v(0), r.v_stride(), d.V, jl, jh, ds.data());  // dp = do·v
          for (int64_t j = 0; j < jh - jl; ++j) {
            p[j] = std::exp(scale * p[j] - L);
            ds[j] = p[j] * (ds[j] - Dt);
          }
          axpy_rows(acc.data() + (t - t0) * d.K, ds.data(), k + r.k(0), r.k_stride(), d.K, jl, jh);
        }
      }
      for (int64_t t = t0; t < t1; ++t) {
        const T* ar = acc.data() + (t - t0) * d.K;
        T* dr = dq + r.q(t);
        for (int64_t e = 0; e < d.K; ++e) dr[e] = scale * ar[e];
      }
    }
  });

  // Pass 2: dk and dv, one task per (b, h, key tile over all S rows, cache rows included).
  const int64_t n_kt = ceil_div(d.S, kKeyTile);
  cpu::parallel_for(d.B * d.H * n_kt, 2 * tile_cost(d, kKeyTile, kKeyTile), [&](int64_t task0, int64_t task1) {
    std::vector<T> acc_k(kKeyTile * d.K), acc_v(kKeyTile * d.V), p(kKeyTile), ds(kKeyTile);
    for (int64_t task = task0; task < task1; ++task) {
      const int64_t kt = task % n_kt, bh = task / n_kt;
      const Rows r{d, bh / d.H, bh % d.H};
      const int64_t j0 = kt * kKeyTile, j1 = std::min(d.S, j0 + kKeyTile);
      std::fill(acc_k.begin(), acc_k.end(), T(0));
      std::fill(acc_v.begin(), acc_v.end(), T(0));
      // Queries that see some key of [j0, j1): P + t ≥ j0 and P + t − W + 1 ≤ j1 − 1.
      const int64_t tlo = std::max<int64_t>(0, j0 - d.P), thi = std::min(d.T, j1 - d.P + d.W - 1);
      for (int64_t t = tlo; t < thi; ++t) {
        const int64_t jl = std::max(j0, key_lo(d, t)), jh = std::min(j1, key_hi(d, t));
        const T* qr = q + r.q(t);
        const T* gr = gout + r.o(t);
        const T L = lse[r.lse(t)], Dt = D[r.lse(t)];
        if (jl >= jh) continue;
        dot_rows(qr, k + r.k(0), r.k_stride(), d.K, jl, jh, p.data());   // q·k
        dot_rows(gr, v + r.v(0), r.v_stride(), d.V, jl, jh, ds.data());  // dp = do·v
        for (int64_t j = jl; j < jh; ++j) {
          const T pj = std::exp(scale * p[j - jl] - L);
          const T dsj = pj * (ds[j - jl] - Dt);
          axpy(acc_v.data() + (j - j0) * d.V, pj, gr, d.V);
          axpy(acc_k.data() + (j - j0) * d.K, dsj, qr, d.K);
        }
      }
      for (int64_t j = j0; j < j1; ++j) {
        const T* ak = acc_k.data() + (j - j0) * d.K;
        const T* av = acc_v.data() + (j - j0) * d.V;
        T* dkr = dk + r.k(j);
        T* dvr = dv + r.v(j);
        for (int64_t e = 0; e < d.K; ++e) dkr[e] = scale * ak[e];
        for (int64_t e = 0; e < d.V; ++e) dvr[e] = av[e];
      }
    }
  });
}

// float32 and float64 only (the header's contract); bfloat16 would go through dispatch_floating, so refuse it here
// with the op's name.
template <typename F>
void dispatch_f32_f64(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::Float32: f.template operator()<float>(); return;
    case DType::Float64: f.template operator()<double>(); return;
    default: break;
  }
  HYDRA_CHECK(false, "{}: dtype {} not supported (expected float32 or float64)", op, dtype_name(t));
}

// The dtypes the kernels of t's device take: float32 or float64 on the CPU, float32 or bfloat16 on CUDA.
void check_dtype_for_device(const Tensor& t, const char* op, const char* arg) {
  if (t.is_cuda()) {
    HYDRA_CHECK(t.dtype() == DType::Float32 || t.dtype() == DType::BFloat16,
                "{}: '{}' on CUDA must be float32 or bfloat16, got {} with shape {}", op, arg, dtype_name(t.dtype()),
                shape_str(t.shape()));
  } else {
    HYDRA_CHECK(t.dtype() == DType::Float32 || t.dtype() == DType::Float64,
                "{}: '{}' must be float32 or float64, got {} with shape {}", op, arg, dtype_name(t.dtype()),
                shape_str(t.shape()));
  }
}

// An extra argument of the backward (do_, o, lse): defined, q's device, the expected shape, and q's dtype (lse on
// CUDA: float32, what the CUDA forward returns).
void check_like(const char* op, const char* arg, const Tensor& t, const Tensor& q, const Shape& want,
                const char* layout, bool is_lse = false) {
  check_defined(t, op, arg);
  if (is_lse && q.is_cuda()) {
    HYDRA_CHECK(t.dtype() == DType::Float32, "{}: '{}' on CUDA must be float32 (as forward returns it), got {} with "
                "shape {}", op, arg, dtype_name(t.dtype()), shape_str(t.shape()));
  } else {
    HYDRA_CHECK(t.dtype() == q.dtype(), "{}: '{}' must have q's dtype {}, got {} with shape {}", op, arg,
                dtype_name(q.dtype()), dtype_name(t.dtype()), shape_str(t.shape()));
  }
  HYDRA_CHECK(t.device() == q.device(), "{}: '{}' is on {} but q is on {}", op, arg, t.device(), q.device());
  HYDRA_CHECK(t.shape() == want, "{}: '{}' must be {} = {}, got shape {}", op, arg, layout, shape_str(want),
              shape_str(t.shape()));
}

}  // namespace

WindowAttnDims window_attn_check_args(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                                      int64_t window) {
  check_defined(q, op, "q");
  check_defined(k, op, "k");
  check_defined(v, op, "v");
  check_dtype_for_device(q, op, "q");
  check_dtype_for_device(k, op, "k");
  check_dtype_for_device(v, op, "v");
  HYDRA_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype(),
              "{}: q, k and v must share one dtype, got q {}, k {}, v {}", op, dtype_name(q.dtype()),
              dtype_name(k.dtype()), dtype_name(v.dtype()));
  HYDRA_CHECK(q.device() == k.device() && q.device() == v.device(),
              "{}: q, k and v must be on one device, got q on {}, k on {}, v on {}", op, q.device(), k.device(),
              v.device());
  HYDRA_CHECK(q.dim() == 4, "{}: 'q' must be [B, T, H, K] (rank 4), got shape {}", op, shape_str(q.shape()));
  HYDRA_CHECK(k.dim() == 4, "{}: 'k' must be [B, S, H, K] (rank 4), got shape {}", op, shape_str(k.shape()));
  HYDRA_CHECK(v.dim() == 4, "{}: 'v' must be [B, S, H, V] (rank 4), got shape {}", op, shape_str(v.shape()));
  WindowAttnDims d{q.size(0), q.size(1), k.size(1), q.size(2), q.size(3), v.size(3), k.size(1) - q.size(1)};
  HYDRA_CHECK(k.size(0) == d.B && k.size(2) == d.H && k.size(3) == d.K,
              "{}: 'k' must be [B, S, H, K] with B = {}, H = {}, K = {} from q {}, got shape {}", op, d.B, d.H, d.K,
              shape_str(q.shape()), shape_str(k.shape()));
  HYDRA_CHECK(v.size(0) == d.B && v.size(1) == d.S && v.size(2) == d.H,
              "{}: 'v' must be [B, S, H, V] with B = {}, S = {}, H = {} from q {} and k {}, got shape {}", op, d.B,
              d.S, d.H, shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()));
  HYDRA_CHECK(d.S >= d.T,
              "{}: k and v must have S >= T rows ([cache | new], S = T + cache rows), got S = {} < T = {} "
              "(q {}, k {})",
              op, d.S, d.T, shape_str(q.shape()), shape_str(k.shape()));
  HYDRA_CHECK(window >= 1, "{}: window must be >= 1, got {}", op, window);
  return d;
}

WindowAttnOutput window_attn_forward(const Tensor& q, const Tensor& k, const Tensor& v, int64_t window,
                                     double scale) {
  const char* op = "window_attn_forward";
  const WindowAttnDims wd = window_attn_check_args(op, q, k, v, window);
  HYDRA_CHECK(std::isfinite(scale), "{}: scale must be finite, got {}", op, scale);
  const Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  const Dims d = kernel_dims(wd, window);
  // lse: float32 on CUDA whatever q's dtype, q's dtype on the CPU.
  WindowAttnOutput out{empty({wd.B, wd.T, wd.H, wd.V}, q.dtype(), q.device()),
                       empty({wd.B, wd.H, wd.T}, q.is_cuda() ? DType::Float32 : q.dtype(), q.device())};
  if (q.is_cuda()) {
    window_attn_forward_cuda(qc, kc, vc, out.o, out.lse, d.W, scale);
    return out;
  }
  dispatch_f32_f64(q.dtype(), op, [&]<typename T>() {
    window_attn_fwd_kernel<T>(qc.data<T>(), kc.data<T>(), vc.data<T>(), out.o.data<T>(), out.lse.data<T>(), d,
                              static_cast<T>(scale));
  });
  return out;
}

WindowAttnGrads window_attn_backward(const Tensor& do_, const Tensor& q, const Tensor& k, const Tensor& v,
                                     const Tensor& o, const Tensor& lse, int64_t window, double scale) {
  const char* op = "window_attn_backward";
  const WindowAttnDims wd = window_attn_check_args(op, q, k, v, window);
  HYDRA_CHECK(std::isfinite(scale), "{}: scale must be finite, got {}", op, scale);
  check_like(op, "do_", do_, q, {wd.B, wd.T, wd.H, wd.V}, "[B, T, H, V]");
  check_like(op, "o", o, q, {wd.B, wd.T, wd.H, wd.V}, "[B, T, H, V]");
  check_like(op, "lse", lse, q, {wd.B, wd.H, wd.T}, "[B, H, T]", true);
  const Tensor gc = do_.contiguous(), qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  const Tensor oc = o.contiguous(), lc = lse.contiguous();
  WindowAttnGrads g{empty(q.shape(), q.dtype(), q.device()), empty(k.shape(), k.dtype(), k.device()),
                    empty(v.shape(), v.dtype(), v.device())};
  const Dims d = kernel_dims(wd, window);
  if (q.is_cuda()) {
    window_attn_backward_cuda(gc, qc, kc, vc, oc, lc, g.dq, g.dk, g.dv, d.W, scale);
    return g;
  }
  dispatch_f32_f64(q.dtype(), op, [&]<typename T>() {
    window_attn_bwd_kernel<T>(gc.data<T>(), qc.data<T>(), kc.data<T>(), vc.data<T>(), oc.data<T>(), lc.data<T>(),
                              g.dq.data<T>(), g.dk.data<T>(), g.dv.data<T>(), d, static_cast<T>(scale));
  });
  return g;
}

}  // namespace hydra
