// Top-k chunk attention: the dispatch functions (argument checks, contiguous copies, the device and dtype switch)
// and the CPU kernels of the routing, the forward and the backward (math and layout in chunk_attn.h, SPEC §2.11).
// The CUDA kernels are in chunk_attn_cuda.cu (entry points in chunk_attn_cuda.h).
#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "hydra/mixers/chunk_attn/chunk_attn.h"
#include "hydra/mixers/chunk_attn/chunk_attn_cuda.h"
#include "tensor/cpu/loops.h"
#include "tensor/dispatch.h"

namespace hydra {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using Rows = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;  // n rows of one head, stride H·K
template <typename T>
using RowsMut = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;
template <typename T>
using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
template <typename T>
using VecMap = Eigen::Map<const Vec<T>>;
template <typename T>
using VecMut = Eigen::Map<Vec<T>>;

// float32 or float64 only (the kernels have no bfloat16 path).
template <typename F>
decltype(auto) dispatch_f32_f64(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::Float32: return f.template operator()<float>();
    case DType::Float64: return f.template operator()<double>();
    default: break;
  }
  HYDRA_CHECK(false, "{}: dtype {} not supported (expected float32 or float64)", op, dtype_name(t));
}

// CPU: float32 or float64; CUDA: float32 or bfloat16.
void check_float_arg(const Tensor& t, const char* op, const char* arg) {
  check_defined(t, op, arg);
  if (t.is_cuda()) {
    HYDRA_CHECK(t.dtype() == DType::Float32 || t.dtype() == DType::BFloat16,
                "{}: '{}' is on {} and must be float32 or bfloat16 there (the CUDA kernels' dtypes), got {} with "
                "shape {}", op, arg, t.device(), dtype_name(t.dtype()), shape_str(t.shape()));
  } else {
    HYDRA_CHECK(t.dtype() == DType::Float32 || t.dtype() == DType::Float64,
                "{}: '{}' must be float32 or float64, got {} with shape {}", op, arg, dtype_name(t.dtype()),
                shape_str(t.shape()));
  }
  check_rank(t, 4, op, arg);
}

// The messages of an invalid idx entry, shared by check_chunk_idx (CPU) and the deferred device check (CUDA).
std::string idx_negative_message(const char* op, int64_t b, int64_t t, int64_t h, int64_t i, int64_t j) {
  return fmt::format("{}: idx[b={}, t={}, h={}, i={}] = {} is negative (only -1 marks padding)", op, b, t, h, i, j);
}
std::string idx_range_message(const char* op, int64_t b, int64_t t, int64_t h, int64_t i, int64_t j, int64_t p,
                              int64_t c, int64_t chunk) {
  return fmt::format("{}: idx[b={}, t={}, h={}, i={}] = {} is not a complete chunk before the query's own chunk "
                     "(query position p = {}, own chunk c(p) = {}, chunk = {}; expected -1 or 0 <= j < {})",
                     op, b, t, h, i, j, p, c, chunk, c);
}
std::string idx_repeat_message(const char* op, int64_t b, int64_t t, int64_t h, int64_t second, int64_t j,
                               int64_t first) {
  return fmt::format("{}: idx[b={}, t={}, h={}, i={}] = {} repeats idx[b={}, t={}, h={}, i={}] (the selected "
                     "chunks of one query must be distinct)", op, b, t, h, second, j, b, t, h, first);
}

// The message of chunk_idx_check_cuda's verdict (code, value) on idx [B, T, H, topk] (see chunk_attn_cuda.h).
std::function<std::string(int64_t, int64_t)> idx_device_message(const char* op, const Tensor& idx, int64_t S,
                                                                 int64_t chunk) {
  const int64_t T = idx.size(1), H = idx.size(2), topk = idx.size(3);
  return [op = std::string(op), T, H, topk, S, chunk](int64_t code, int64_t value) {
    const int64_t e = code / topk, first = code % topk, i = e % topk, row = e / topk;
    const int64_t h = row % H, t = (row / H) % T, b = row / (H * T), p = S - T + t, c = p / chunk;
    if (value < 0) return idx_negative_message(op.c_str(), b, t, h, i, value);
    if (value >= c) return idx_range_message(op.c_str(), b, t, h, i, value, p, c, chunk);
    return idx_repeat_message(op.c_str(), b, t, h, i, value, first);
  };
}

void check_same(const Tensor& a, const Tensor& ref, const char* op, const char* arg, const char* ref_arg) {
  HYDRA_CHECK(a.dtype() == ref.dtype(), "{}: '{}' has dtype {} but '{}' has dtype {} (one dtype expected)", op, arg,
              dtype_name(a.dtype()), ref_arg, dtype_name(ref.dtype()));
  HYDRA_CHECK(a.device() == ref.device(), "{}: '{}' is on {} but '{}' is on {}", op, arg, a.device(), ref_arg,
              ref.device());
}

void check_shape(const Tensor& t, const Shape& want, const char* op, const char* arg, const char* layout) {
  HYDRA_CHECK(t.shape() == want, "{}: '{}' must have shape {} = {}, got {}", op, arg, layout, shape_str(want),
              shape_str(t.shape()));
}

struct Dims {
  int64_t B, T, S, H, K, V, topk, N;
};

// Checks q, k, v, idx, bias and the sizes of an attention call; returns the dims.
Dims check_attn_args(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& idx, const Tensor& bias,
                     int64_t chunk, const char* op) {
  check_float_arg(q, op, "q");
  check_float_arg(k, op, "k");
  check_float_arg(v, op, "v");
  check_same(k, q, op, "k", "q");
  check_same(v, q, op, "v", "q");
  HYDRA_CHECK(chunk >= 1, "{}: chunk must be >= 1, got {}", op, chunk);
  Dims d{};
  d.B = q.size(0);
  d.T = q.size(1);
  d.H = q.size(2);
  d.K = q.size(3);
  d.S = k.size(1);
  d.V = v.size(3);
  d.N = chunk;
  check_shape(k, {d.B, d.S, d.H, d.K}, op, "k", "[B, S, H, K]");
  check_shape(v, {d.B, d.S, d.H, d.V}, op, "v", "[B, S, H, V]");
  HYDRA_CHECK(d.T <= d.S, "{}: q has T = {} query rows but k/v have only S = {} rows (expected T <= S: query t sits "
              "at position S - T + t); q shape {}, k shape {}", op, d.T, d.S, shape_str(q.shape()),
              shape_str(k.shape()));
  check_defined(idx, op, "idx");
  check_dtype(idx, DType::Int64, op, "idx");
  check_rank(idx, 4, op, "idx");
  d.topk = idx.size(3);
  check_shape(idx, {d.B, d.T, d.H, d.topk}, op, "idx", "[B, T, H, topk]");
  HYDRA_CHECK(idx.device() == q.device(), "{}: 'idx' is on {} but 'q' is on {}", op, idx.device(), q.device());
  if (bias.defined()) {
    check_rank(bias, 4, op, "bias");
    check_same(bias, q, op, "bias", "q");
    check_shape(bias, {d.B, d.T, d.H, d.topk}, op, "bias", "[B, T, H, topk] (topk = idx.size(3))");
  }
  return d;
}

// ---------------------------------------------------------------------------------------------------------
// Routing

// Σ a_i b_i in four fixed lanes: the result depends only on the values, never on the addresses, so identical
// summaries score identically (ties are then broken by j alone).
inline double dot4(const double* a, const double* b, int64_t n) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; ++i) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

constexpr int64_t kRouteQueryBlock = 64;

template <typename T>
void chunk_route_kernel(const T* q0, const T* r, int64_t* idx, int64_t B, int64_t T_, int64_t H, int64_t K,
                        int64_t n_c, int64_t N, int64_t topk, int64_t S) {
  const int64_t n_blocks = (T_ + kRouteQueryBlock - 1) / kRouteQueryBlock;
  const int64_t tasks = B * H * n_blocks;
  const int64_t cost = kRouteQueryBlock * (std::min(n_c, S / N) * (K + 4) + topk + K);
  cpu::parallel_for(tasks, cost, [&](int64_t task0, int64_t task1) {
    std::vector<double> rd, qd(static_cast<std::size_t>(K)), score;
    std::vector<int64_t> order;
    for (int64_t task = task0; task < task1; ++task) {
      const int64_t blk = task % n_blocks, h = (task / n_blocks) % H, b = task / (n_blocks * H);
      const int64_t t0 = blk * kRouteQueryBlock, t1 = std::min(T_, t0 + kRouteQueryBlock);
      // Candidates of the last query of the block bound those of every query in it.
      const int64_t n_max = std::min((S - T_ + t1 - 1) / N, n_c);
      rd.resize(static_cast<std::size_t>(n_max * K));
      for (int64_t j = 0; j < n_max; ++j) {
        const T* rj = r + ((b * n_c + j) * H + h) * K;
        for (int64_t i = 0; i < K; ++i) rd[j * K + i] = static_cast<double>(rj[i]);
      }
      score.resize(static_cast<std::size_t>(n_max));
      order.resize(static_cast<std::size_t>(n_max));
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t row = (b * T_ + t) * H + h;
        const T* qr = q0 + row * K;
        for (int64_t i = 0; i < K; ++i) qd[i] = static_cast<double>(qr[i]);
        const int64_t n_cand = std::min((S - T_ + t) / N, n_c);
        for (int64_t j = 0; j < n_cand; ++j) {
          score[j] = dot4(qd.data(), rd.data() + j * K, K);
          order[j] = j;
        }
        const int64_t n_sel = std::min(topk, n_cand);
        // Descending score, ties to the lower j (a strict total order, so the selection is unique).
        std::partial_sort(order.begin(), order.begin() + n_sel, order.begin() + n_cand, [&](int64_t a, int64_t c) {
          return score[a] > score[c] || (score[a] == score[c] && a < c);
        });
        int64_t* out = idx + row * topk;
        for (int64_t i = 0; i < topk; ++i) out[i] = i < n_sel ? order[i] : -1;
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------------------
// Attention forward: one task per (b, h, t) row; per attended chunk one online-softmax step.

template <typename T>
void chunk_attn_fwd_kernel(const T* q, const T* k, const T* v, const int64_t* idx, const T* bias, T* o, T* lse,
                           const Dims& d, double scale) {
  const int64_t rows = d.B * d.H * d.T;
  const int64_t cost = (d.topk + 1) * d.N * (2 * d.K + 2 * d.V + 8);
  const int64_t ks = d.H * d.K, vs = d.H * d.V;  // row strides of k and v
  const T sc = static_cast<T>(scale);
  cpu::parallel_for(rows, cost, [&](int64_t r0, int64_t r1) {
    Vec<T> s(d.N), acc(d.V);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t t = r % d.T, h = (r / d.T) % d.H, b = r / (d.T * d.H);
      const int64_t row = (b * d.T + t) * d.H + h;  // the (b, t, h) row of q, o, idx and bias
      const VecMap<T> qv(q + row * d.K, d.K);
      const int64_t p = d.S - d.T + t, c = p / d.N;
      double m = kNegInf, l = 0.0;  // running max and running sum of exp(logit − m)
      acc.setZero();
      // Keys m0 .. m0+n−1 of one chunk, logits shifted by `add` (the bias of a selected chunk).
      auto step = [&](int64_t m0, int64_t n, T add) {
        const Rows<T> kb(k + ((b * d.S + m0) * d.H + h) * d.K, n, d.K, Eigen::OuterStride<>(ks));
        const Rows<T> vb(v + ((b * d.S + m0) * d.H + h) * d.V, n, d.V, Eigen::OuterStride<>(vs));
        auto sb = s.head(n);
        sb.noalias() = kb * qv;
        sb = (sb.array() * sc + add).matrix();
        const double m_new = std::max(m, static_cast<double>(sb.maxCoeff()));
        const double alpha = m == kNegInf ? 0.0 : std::exp(m - m_new);
        sb = (sb.array() - static_cast<T>(m_new)).exp().matrix();
        l = l * alpha + static_cast<double>(sb.sum());
        acc *= static_cast<T>(alpha);
        acc.noalias() += vb.transpose() * sb;
        m = m_new;
      };
      const int64_t* ir = idx + row * d.topk;
      for (int64_t i = 0; i < d.topk; ++i) {
        if (ir[i] < 0) continue;
        step(ir[i] * d.N, d.N, bias ? bias[row * d.topk + i] : T(0));
      }
      step(c * d.N, p - c * d.N + 1, T(0));  // own chunk, causal: c·N .. p
      VecMut<T>(o + row * d.V, d.V) = acc * static_cast<T>(1.0 / l);
      lse[(b * d.H + h) * d.T + t] = static_cast<T>(m + std::log(l));
    }
  });
}

// ---------------------------------------------------------------------------------------------------------
// Attention backward: one task per (b, h), queries in order, so each dk/dv row has a single writer.
//   P = exp(logit − lse), dP = do·v, dlogit = P ⊙ (dP − D), D = do·o
//   dq += scale · dlogit·k,  dk += scale · dlogit · q,  dv += P · do,  dbias[t, i] = Σ_chunk dlogit

template <typename T>
void chunk_attn_bwd_kernel(const T* dout, const T* q, const T* k, const T* v, const int64_t* idx, const T* bias,
                           const T* o, const T* lse, T* dq, T* dk, T* dv, T* dbias, const Dims& d, double scale) {
  const int64_t cost = d.T * (d.topk + 1) * d.N * (4 * d.K + 4 * d.V + 8);
  const int64_t ks = d.H * d.K, vs = d.H * d.V;
  const T sc = static_cast<T>(scale);
  cpu::parallel_for(d.B * d.H, cost, [&](int64_t bh0, int64_t bh1) {
    Vec<T> s(d.N), dp(d.N);
    for (int64_t bh = bh0; bh < bh1; ++bh) {
      const int64_t b = bh / d.H, h = bh % d.H;
      for (int64_t t = 0; t < d.T; ++t) {
        const int64_t row = (b * d.T + t) * d.H + h;
        const VecMap<T> qv(q + row * d.K, d.K);
        const VecMap<T> dov(dout + row * d.V, d.V);
        const T D = dov.dot(VecMap<T>(o + row * d.V, d.V));
        const T lt = lse[(b * d.H + h) * d.T + t];
        VecMut<T> dqv(dq + row * d.K, d.K);
        const int64_t p = d.S - d.T + t, c = p / d.N;
        auto step = [&](int64_t m0, int64_t n, T add) -> T {
          const int64_t k_off = ((b * d.S + m0) * d.H + h) * d.K, v_off = ((b * d.S + m0) * d.H + h) * d.V;
          const Rows<T> kb(k + k_off, n, d.K, Eigen::OuterStride<>(ks));
          const Rows<T> vb(v + v_off, n, d.V, Eigen::OuterStride<>(vs));
          RowsMut<T> dkb(dk + k_off, n, d.K, Eigen::OuterStride<>(ks));
          RowsMut<T> dvb(dv + v_off, n, d.V, Eigen::OuterStride<>(vs));
          auto pb = s.head(n);
          auto db = dp.head(n);
          pb.noalias() = kb * qv;
          pb = (pb.array() * sc + (add - lt)).exp().matrix();  // P
          db.noalias() = vb * dov;                              // dP
          dvb.noalias() += pb * dov.transpose();
          db = (pb.array() * (db.array() - D)).matrix();  // dlogit
          dqv.noalias() += sc * (kb.transpose() * db);
          dkb.noalias() += (sc * db) * qv.transpose();
          return db.sum();
        };
        const int64_t* ir = idx + row * d.topk;
        for (int64_t i = 0; i < d.topk; ++i) {
          if (ir[i] < 0) continue;
          const T g = step(ir[i] * d.N, d.N, bias ? bias[row * d.topk + i] : T(0));
          if (dbias) dbias[row * d.topk + i] = g;
        }
        step(c * d.N, p - c * d.N + 1, T(0));
      }
    }
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Public functions

void check_chunk_idx(const Tensor& idx, int64_t S, int64_t chunk, const char* op) {
  const Tensor ic = idx.to(kCPU).contiguous();  // a CUDA idx is copied (this function synchronises)
  const int64_t B = ic.size(0), T = ic.size(1), H = ic.size(2), topk = ic.size(3);
  const int64_t* ip = ic.data<int64_t>();
  std::vector<int64_t> seen;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      const int64_t p = S - T + t, c = p / chunk;
      for (int64_t h = 0; h < H; ++h) {
        const int64_t* row = ip + ((b * T + t) * H + h) * topk;
        seen.clear();
        for (int64_t i = 0; i < topk; ++i) {
          const int64_t j = row[i];
          if (j == -1) continue;
          HYDRA_CHECK(j >= 0, "{}", idx_negative_message(op, b, t, h, i, j));
          HYDRA_CHECK(j < c, "{}", idx_range_message(op, b, t, h, i, j, p, c, chunk));
          seen.push_back(j);
        }
        std::sort(seen.begin(), seen.end());
        const auto dup = std::adjacent_find(seen.begin(), seen.end());
        if (dup != seen.end()) {
          int64_t first = -1, second = -1;
          for (int64_t i = 0; i < topk; ++i) {
            if (row[i] != *dup) continue;
            (first < 0 ? first : second) = i;
            if (second >= 0) break;
          }
          HYDRA_CHECK(false, "{}", idx_repeat_message(op, b, t, h, second, *dup, first));
        }
      }
    }
  }
}

Tensor chunk_route(const Tensor& q0, const Tensor& summaries, int64_t chunk, int64_t topk, int64_t total_len) {
  const char* op = "chunk_route";
  check_float_arg(q0, op, "q0");
  check_float_arg(summaries, op, "summaries");
  check_same(summaries, q0, op, "summaries", "q0");
  HYDRA_CHECK(chunk >= 1, "{}: chunk must be >= 1, got {}", op, chunk);
  HYDRA_CHECK(topk >= 0, "{}: topk must be >= 0, got {}", op, topk);
  const int64_t B = q0.size(0), T = q0.size(1), H = q0.size(2), K = q0.size(3), n_c = summaries.size(1);
  check_shape(summaries, {B, n_c, H, K}, op, "summaries", "[B, n_c, H, K]");
  HYDRA_CHECK(total_len >= T, "{}: total_len = {} is smaller than the number of queries T = {} (query t sits at "
              "position total_len - T + t); q0 shape {}", op, total_len, T, shape_str(q0.shape()));
  const Tensor qc = q0.contiguous(), rc = summaries.contiguous();
  Tensor idx = empty({B, T, H, topk}, DType::Int64, q0.device());
  if (q0.is_cuda()) {
    chunk_route_cuda(qc, rc, idx, chunk, total_len);
    return idx;
  }
  dispatch_f32_f64(q0.dtype(), op, [&]<typename F>() {
    chunk_route_kernel<F>(qc.data<F>(), rc.data<F>(), idx.data<int64_t>(), B, T, H, K, n_c, chunk, topk, total_len);
  });
  return idx;
}

ChunkAttnOutput chunk_attn_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& idx,
                                   const Tensor& bias, int64_t chunk, double scale) {
  const char* op = "chunk_attn_forward";
  const Dims d = check_attn_args(q, k, v, idx, bias, chunk, op);
  const Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous(), ic = idx.contiguous();
  const Tensor bc = bias.defined() ? bias.contiguous() : Tensor();
  if (q.is_cuda()) {
    // idx is checked on the device; a bad entry is raised by the next synchronisation (cuda::defer_device_check).
    ChunkAttnOutput out{empty({d.B, d.T, d.H, d.V}, q.dtype(), q.device()),
                        empty({d.B, d.H, d.T}, DType::Float32, q.device())};
    chunk_idx_check_cuda(ic, d.S, d.N, idx_device_message(op, ic, d.S, d.N));
    chunk_attn_forward_cuda(qc, kc, vc, ic, bc, out.o, out.lse, d.N, scale);
    return out;
  }
  check_chunk_idx(idx, d.S, d.N, op);
  ChunkAttnOutput out{empty({d.B, d.T, d.H, d.V}, q.dtype()), empty({d.B, d.H, d.T}, q.dtype())};
  dispatch_f32_f64(q.dtype(), op, [&]<typename F>() {
    chunk_attn_fwd_kernel<F>(qc.data<F>(), kc.data<F>(), vc.data<F>(), ic.data<int64_t>(),
                             bc.defined() ? bc.data<F>() : nullptr, out.o.data<F>(), out.lse.data<F>(), d, scale);
  });
  return out;
}

ChunkAttnGrads chunk_attn_backward(const Tensor& do_, const Tensor& q, const Tensor& k, const Tensor& v,
                                   const Tensor& idx, const Tensor& bias, const Tensor& o, const Tensor& lse,
                                   int64_t chunk, double scale) {
  const char* op = "chunk_attn_backward";
  const Dims d = check_attn_args(q, k, v, idx, bias, chunk, op);
  check_defined(do_, op, "do");
  check_defined(o, op, "o");
  check_defined(lse, op, "lse");
  check_same(do_, q, op, "do", "q");
  check_same(o, q, op, "o", "q");
  if (q.is_cuda()) {  // lse is float32 on CUDA whatever q's dtype
    HYDRA_CHECK(lse.dtype() == DType::Float32, "{}: 'lse' must be float32 on CUDA (as chunk_attn_forward makes it), "
                "got {}", op, dtype_name(lse.dtype()));
    HYDRA_CHECK(lse.device() == q.device(), "{}: 'lse' is on {} but 'q' is on {}", op, lse.device(), q.device());
  } else {
    check_same(lse, q, op, "lse", "q");
  }
  check_shape(do_, {d.B, d.T, d.H, d.V}, op, "do", "[B, T, H, V]");
  check_shape(o, {d.B, d.T, d.H, d.V}, op, "o", "[B, T, H, V]");
  check_shape(lse, {d.B, d.H, d.T}, op, "lse", "[B, H, T]");
  const Tensor dc = do_.contiguous(), qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  const Tensor ic = idx.contiguous(), oc = o.contiguous(), lc = lse.contiguous();
  const Tensor bc = bias.defined() ? bias.contiguous() : Tensor();
  if (q.is_cuda()) {
    // Every element of the gradients is written by the kernels (no zero fill needed).
    ChunkAttnGrads g;
    g.dq = empty(q.shape(), q.dtype(), q.device());
    g.dk = empty(k.shape(), q.dtype(), q.device());
    g.dv = empty(v.shape(), q.dtype(), q.device());
    if (bias.defined()) g.dbias = empty(bias.shape(), q.dtype(), q.device());
    chunk_idx_check_cuda(ic, d.S, d.N, idx_device_message(op, ic, d.S, d.N));
    chunk_attn_backward_cuda(dc, qc, kc, vc, ic, bc, oc, lc, g.dq, g.dk, g.dv, g.dbias, d.N, scale);
    return g;
  }
  check_chunk_idx(idx, d.S, d.N, op);
  ChunkAttnGrads g;
  g.dq = zeros(q.shape(), q.dtype());
  g.dk = zeros(k.shape(), q.dtype());
  g.dv = zeros(v.shape(), q.dtype());
  if (bias.defined()) g.dbias = zeros(bias.shape(), q.dtype());
  dispatch_f32_f64(q.dtype(), op, [&]<typename F>() {
    chunk_attn_bwd_kernel<F>(dc.data<F>(), qc.data<F>(), kc.data<F>(), vc.data<F>(), ic.data<int64_t>(),
                             bc.defined() ? bc.data<F>() : nullptr, oc.data<F>(), lc.data<F>(), g.dq.data<F>(),
                             g.dk.data<F>(), g.dv.data<F>(), g.dbias.defined() ? g.dbias.data<F>() : nullptr, d,
                             scale);
  });
  return g;
}

}  // namespace hydra
