// Gated delta rule: the dispatch functions (gated_delta_forward / _backward / _step: argument checks, contiguous
// copies, device switch: CUDA tensors go to the entry points of gated_delta_cuda.h) and the chunkwise-parallel CPU
// kernels. Contract and shapes in gated_delta.h.
//
// Notation, per (b, h) and per chunk of L ≤ N tokens (N = `chunk`) with local index t = 0..L−1 and start state
// S₀ (V×K; rows = value dim):
//   D_{t,s} = Π_{r=s+1..t} α_r      for −1 ≤ s ≤ t   (D_{t,t} = 1; γ_t = D_{t,−1} = Π_{r≤t} α_r)
// Unrolling S_t = α_t S_{t−1} + u_t k_tᵀ inside the chunk gives
//   S_t = γ_t S₀ + Σ_{s≤t} D_{t,s} u_s k_sᵀ
// and therefore, with a_t = S₀ k_t, b_t = S₀ q_t (V-vectors):
//   u_t + β_t Σ_{s<t} D_{t,s} (k_t·k_s) u_s = β_t (v_t − γ_t a_t)        a unit lower-triangular L×L system
//                                                                        (I + M) U = W, solved by forward
//                                                                        substitution (the WY/UT form)
//   o_t   = γ_t b_t + Σ_{s≤t} D_{t,s} (q_t·k_s) u_s
//   S_end = γ_{L−1} S₀ + Σ_s D_{L−1,s} u_s k_sᵀ
// D is built as running products (no logs, no division, no clamp): α may be tiny or zero; products that
// underflow to zero are the exact limit of terms far below the others. This is the exact recurrence: only the
// order of summation differs.
//
// Cost per chunk: O(L²·(K + V)) for the Gram matrices, the solve and the intra-chunk output, O(L·V·K) for
// S₀k, S₀q and the state update: O(T·(N·K + V·K)) per head. Memory: the state and O(N·(N + K + V)) buffers.
//
// Backward (chunkwise, no per-token states): one forward pass over the chunks stores only each chunk's start
// state (T/N states of V×K per head, per thread), then the chunks are walked in reverse carrying dS = ∂ℓ/∂S_end.
// For one chunk, with ū_s the total gradient reaching u_s and dD the gradient of each D entry:
//   S_end:    dD_{L−1,−1} += <dS, S₀>;  ū_s += D_{L−1,s} dS k_s;  dD_{L−1,s} += u_s·(dS k_s);
//             dk_s += D_{L−1,s} dSᵀ u_s
//   o:        dD_{t,−1} += do_t·b_t;  dq_t += γ_t S₀ᵀ do_t;  for s ≤ t with c = do_t·u_s:
//             ū_s += D_{t,s} (q_t·k_s) do_t;  dD_{t,s} += c (q_t·k_s);  dq_t += c D_{t,s} k_s;  dk_s += c D_{t,s} q_t
//   solve:    (I + M)ᵀ W̄ = Ū by back substitution (w̄_t = ū_t − Σ_{t'>t} M_{t',t} w̄_{t'}); then for s < t with
//             m = −w̄_t·u_s (the gradient of M_{t,s} = β_t D_{t,s} k_t·k_s):
//             dβ_t += m D_{t,s} (k_t·k_s);  dD_{t,s} += m β_t (k_t·k_s);
//             dk_t += m β_t D_{t,s} k_s;  dk_s += m β_t D_{t,s} k_t
//   W:        with e_t = v_t − γ_t a_t:  dβ_t += w̄_t·e_t;  dv_t = β_t w̄_t;  dD_{t,−1} −= β_t w̄_t·a_t;
//             dk_t −= β_t γ_t S₀ᵀ w̄_t
//   dS₀ = γ_{L−1} dS + Σ_t γ_t (do_t q_tᵀ − β_t w̄_t k_tᵀ)           (becomes dS of the previous chunk)
//   α:        ∂D_{t,s}/∂α_r = D_{t,r} D_{r−1,s} for s < r ≤ t, so dα_r = Σ_{t≥r} D_{t,r} Y_{t,r} with
//             Y_{t,r} = Σ_{s=−1}^{r−1} dD_{t,s} D_{r−1,s}, built by Y_{t,0} = dD_{t,−1},
//             Y_{t,r} = dD_{t,r−1} + α_{r−1} Y_{t,r−1}  (Horner: no division by α, O(L²) per chunk).
// Every step is a sum of products (no division), so α → 0 is handled exactly.
//
// Parallelism: one (b, h) per task (cpu::parallel_for); each task's outputs are written by that task alone, in a
// fixed order, so results do not depend on the thread count. The O(L·K·V) and O(L²·V) terms above are written as
// Eigen products over the chunk's rows (U = (I + M)⁻¹W and W̄ = (I + M)⁻ᵀŪ are triangular solves).
// Arithmetic is in the input dtype (float32 inputs accumulate in float32).
#include <algorithm>
#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "hydra/mixers/gated_delta/gated_delta.h"
#include "hydra/mixers/gated_delta/gated_delta_cuda.h"
#include "tensor/cpu/loops.h"
#include "tensor/dispatch.h"

namespace hydra {

namespace {

// ---------------------------------------------------------------------------------------------------------
// Argument checks

struct GdnDims {
  int64_t B, T, H, K, V;
};

// Which dtype rule an operand follows. CPU: every operand float32 or float64, all of q's dtype. CUDA: data
// operands (q, k, v, do) float32 or bfloat16, all of q's dtype; gates and states (alpha, beta, the initial state,
// dfinal_state) float32 or q's dtype.
enum class Operand { Data, GateOrState };

// Defined, of a dtype the device supports for this operand, on the device of `ref` (q).
void check_operand(const char* op, const Tensor& t, const char* arg, const Tensor& ref,
                   Operand kind = Operand::Data) {
  check_defined(t, op, arg);
  HYDRA_CHECK(t.device() == ref.device(), "{}: '{}' is on {} but 'q' is on {}", op, arg, t.device(), ref.device());
  if (ref.is_cuda()) {
    HYDRA_CHECK(t.dtype() == DType::Float32 || t.dtype() == DType::BFloat16,
                "{}: '{}' has dtype {} with shape {}, not supported on CUDA (supported: float32, bfloat16)", op, arg,
                dtype_name(t.dtype()), shape_str(t.shape()));
    if (kind == Operand::Data) {
      HYDRA_CHECK(t.dtype() == ref.dtype(),
                  "{}: '{}' has dtype {} but 'q' has {} (q, k, v and do must share one dtype; cast with .to(dtype))",
                  op, arg, dtype_name(t.dtype()), dtype_name(ref.dtype()));
    } else {
      HYDRA_CHECK(t.dtype() == DType::Float32 || t.dtype() == ref.dtype(),
                  "{}: '{}' has dtype {} but must be float32 or q's dtype {} on CUDA", op, arg, dtype_name(t.dtype()),
                  dtype_name(ref.dtype()));
    }
  } else {
    HYDRA_CHECK(t.dtype() == DType::Float32 || t.dtype() == DType::Float64,
                "{}: '{}' must be float32 or float64, got {} with shape {}", op, arg, dtype_name(t.dtype()),
                shape_str(t.shape()));
    HYDRA_CHECK(t.dtype() == ref.dtype(),
                "{}: '{}' has dtype {} but 'q' has {} (all inputs must share one dtype; cast with .to(dtype))", op,
                arg, dtype_name(t.dtype()), dtype_name(ref.dtype()));
  }
}

// Sequence form: q, k [B, T, H, K], v [B, T, H, V], alpha, beta [B, T, H], state [B, H, V, K] or undefined.
GdnDims check_seq_args(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& alpha,
                       const Tensor& beta, const Tensor& state) {
  check_operand(op, q, "q", q);
  check_operand(op, k, "k", q);
  check_operand(op, v, "v", q);
  check_operand(op, alpha, "alpha", q, Operand::GateOrState);
  check_operand(op, beta, "beta", q, Operand::GateOrState);
  if (state.defined()) check_operand(op, state, "initial_state", q, Operand::GateOrState);
  HYDRA_CHECK(q.dim() == 4, "{}: 'q' must have rank 4 [B, T, H, K], got shape {}", op, shape_str(q.shape()));
  const GdnDims d{q.size(0), q.size(1), q.size(2), q.size(3), v.dim() == 4 ? v.size(3) : -1};
  HYDRA_CHECK(k.dim() == 4, "{}: 'k' must have rank 4 [B, T, H, K], got shape {}", op, shape_str(k.shape()));
  HYDRA_CHECK(k.shape() == q.shape(), "{}: 'k' must have the shape of 'q' [B, T, H, K] = {}, got {}", op,
              shape_str(q.shape()), shape_str(k.shape()));
  HYDRA_CHECK(v.dim() == 4, "{}: 'v' must have rank 4 [B, T, H, V], got shape {}", op, shape_str(v.shape()));
  HYDRA_CHECK(v.size(0) == d.B && v.size(1) == d.T && v.size(2) == d.H,
              "{}: 'v' must be [B, T, H, V] with B, T, H = {}, {}, {} (from q {}), got {}", op, d.B, d.T, d.H,
              shape_str(q.shape()), shape_str(v.shape()));
  const Shape bth{d.B, d.T, d.H};
  HYDRA_CHECK(alpha.shape() == bth, "{}: 'alpha' must be [B, T, H] = {} (from q {}), got {}", op, shape_str(bth),
              shape_str(q.shape()), shape_str(alpha.shape()));
  HYDRA_CHECK(beta.shape() == bth, "{}: 'beta' must be [B, T, H] = {} (from q {}), got {}", op, shape_str(bth),
              shape_str(q.shape()), shape_str(beta.shape()));
  if (state.defined()) {
    const Shape want{d.B, d.H, d.V, d.K};
    HYDRA_CHECK(state.shape() == want, "{}: 'initial_state' must be [B, H, V, K] = {} (from q {} and v {}), got {}",
                op, shape_str(want), shape_str(q.shape()), shape_str(v.shape()), shape_str(state.shape()));
  }
  return d;
}

void check_chunk(const char* op, int64_t chunk) {
  HYDRA_CHECK(chunk >= 1, "{}: 'chunk' must be >= 1, got {}", op, chunk);
}

Tensor contiguous_or_undefined(const Tensor& t) { return t.defined() ? t.contiguous() : Tensor(); }

// The dtype switch of this op: check_operand has already refused every dtype but float32 and float64.
template <typename F>
void dispatch_f32_f64(DType t, F&& f) {
  if (t == DType::Float64) {
    f.template operator()<double>();
  } else {
    f.template operator()<float>();
  }
}

// ---------------------------------------------------------------------------------------------------------
// One (b, h) head's view of the global tensors, and the per-task chunk buffers.
//
// Every O(L·K·V) and O(L²·V) term is an Eigen product on row-major blocks (the chunk's rows of one head are strided
// views into the [B, T, H, ·] tensors, stride H·K or H·V); the O(L²) bookkeeping (D, the masks, the Horner pass) is
// plain loops. Eigen's GEMM sums in an order fixed by the shapes, so results do not depend on the thread count.

template <typename A>
using RowMat = Eigen::Matrix<A, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename A>
using Rows = Eigen::Map<const RowMat<A>, 0, Eigen::OuterStride<>>;
template <typename A>
using RowsMut = Eigen::Map<RowMat<A>, 0, Eigen::OuterStride<>>;
template <typename A>
using StateView = Eigen::Map<const RowMat<A>>;  // V×K, contiguous
template <typename A>
using StateMut = Eigen::Map<RowMat<A>>;

template <typename A>
struct HeadPtrs {
  // Token t of head h in batch b: q/k at ((b·T + t)·H + h)·K, v/o at ((b·T + t)·H + h)·V, α/β at (b·T + t)·H + h.
  const A *q, *k, *v, *alpha, *beta;
  int64_t b, h;
  GdnDims d;
  int64_t qk_off(int64_t t) const { return ((b * d.T + t) * d.H + h) * d.K; }
  int64_t v_off(int64_t t) const { return ((b * d.T + t) * d.H + h) * d.V; }
  int64_t g_off(int64_t t) const { return (b * d.T + t) * d.H + h; }
  int64_t state_off() const { return (b * d.H + h) * d.V * d.K; }
  // L rows from token t0 of a [B, T, H, K] (qk) or [B, T, H, V] (v) tensor.
  Rows<A> qk_rows(const A* base, int64_t t0, int64_t L) const {
    return Rows<A>(base + qk_off(t0), L, d.K, Eigen::OuterStride<>(d.H * d.K));
  }
  Rows<A> v_rows(const A* base, int64_t t0, int64_t L) const {
    return Rows<A>(base + v_off(t0), L, d.V, Eigen::OuterStride<>(d.H * d.V));
  }
  RowsMut<A> qk_rows_mut(A* base, int64_t t0, int64_t L) const {
    return RowsMut<A>(base + qk_off(t0), L, d.K, Eigen::OuterStride<>(d.H * d.K));
  }
  RowsMut<A> v_rows_mut(A* base, int64_t t0, int64_t L) const {
    return RowsMut<A>(base + v_off(t0), L, d.V, Eigen::OuterStride<>(d.H * d.V));
  }
};

// Buffers for one chunk of up to N tokens (allocated once per task, reused for every chunk and head); the first L
// rows (and columns) are the current chunk's.
template <typename A>
struct ChunkBuffers {
  std::vector<A> al, be, gam;  // α_t, β_t, γ_t = D_{t,−1}
  RowMat<A> dec;               // N×N: D_{t,s} for s ≤ t, 0 above the diagonal
  RowMat<A> kk;                // N×N: k_t·k_s
  RowMat<A> sys;               // N×N: M_{t,s} = β_t D_{t,s} (k_t·k_s) below the diagonal (the system is I + M)
  RowMat<A> pm;                // N×N: P_{t,s} = D_{t,s} (q_t·k_s) for s ≤ t, 0 above
  RowMat<A> qk;                // N×N: q_t·k_s
  RowMat<A> sk, sq, u, tmp;    // N×V: a_t = S₀ k_t, b_t = S₀ q_t, u_t, scratch

  ChunkBuffers(int64_t N, int64_t V)
      : al(N), be(N), gam(N), dec(RowMat<A>::Zero(N, N)), kk(N, N), sys(RowMat<A>::Zero(N, N)),
        pm(RowMat<A>::Zero(N, N)), qk(N, N), sk(N, V), sq(N, V), u(N, V), tmp(N, V) {}
};

// The chunk's intra-chunk quantities (tokens t0..t0+L−1) from its start state S0 (V×K): α, β, D, γ, k_t·k_s,
// a_t = S₀k_t, the system and U by forward substitution; with `outputs`, also q_t·k_s, P and b_t = S₀q_t.
template <typename A>
void chunk_solve(const HeadPtrs<A>& p, int64_t t0, int64_t L, const StateView<A>& S0, ChunkBuffers<A>& c,
                 bool outputs) {
  for (int64_t t = 0; t < L; ++t) {
    c.al[t] = p.alpha[p.g_off(t0 + t)];
    c.be[t] = p.beta[p.g_off(t0 + t)];
  }
  // D_{t,s} = D_{t,s+1} · α_{s+1}, from D_{t,t} = 1 down to s = 0; γ_t = D_{t,0} · α_0.
  for (int64_t t = 0; t < L; ++t) {
    c.dec(t, t) = A(1);
    for (int64_t s = t - 1; s >= 0; --s) c.dec(t, s) = c.dec(t, s + 1) * c.al[s + 1];
    for (int64_t s = t + 1; s < L; ++s) c.dec(t, s) = A(0);
    c.gam[t] = c.dec(t, 0) * c.al[0];
  }
  const Rows<A> kc = p.qk_rows(p.k, t0, L), vc = p.v_rows(p.v, t0, L);
  auto kk = c.kk.topLeftCorner(L, L);
  kk.noalias() = kc * kc.transpose();
  auto sk = c.sk.topRows(L);
  sk.noalias() = kc * S0.transpose();
  // (I + M) U = W:  u_t = β_t (v_t − γ_t a_t) − Σ_{s<t} β_t D_{t,s} (k_t·k_s) u_s
  auto u = c.u.topRows(L);
  for (int64_t t = 0; t < L; ++t) {
    u.row(t) = c.be[t] * (vc.row(t) - c.gam[t] * sk.row(t));
    for (int64_t s = 0; s < t; ++s) c.sys(t, s) = c.be[t] * c.dec(t, s) * kk(t, s);
  }
  c.sys.topLeftCorner(L, L).template triangularView<Eigen::UnitLower>().solveInPlace(u);
  if (outputs) {
    const Rows<A> qc = p.qk_rows(p.q, t0, L);
    auto qk = c.qk.topLeftCorner(L, L);
    qk.noalias() = qc * kc.transpose();
    for (int64_t t = 0; t < L; ++t) {
      for (int64_t s = 0; s <= t; ++s) c.pm(t, s) = c.dec(t, s) * qk(t, s);
      for (int64_t s = t + 1; s < L; ++s) c.pm(t, s) = A(0);
    }
    c.sq.topRows(L).noalias() = qc * S0.transpose();
  }
}

// S ← γ_{L−1} S + Σ_s D_{L−1,s} u_s k_sᵀ
template <typename A>
void chunk_update_state(const HeadPtrs<A>& p, int64_t t0, int64_t L, ChunkBuffers<A>& c, StateMut<A>& S) {
  auto du = c.tmp.topRows(L);
  for (int64_t s = 0; s < L; ++s) du.row(s) = c.dec(L - 1, s) * c.u.row(s);
  S *= c.gam[L - 1];
  S.noalias() += du.transpose() * p.qk_rows(p.k, t0, L);
}

// ---------------------------------------------------------------------------------------------------------
// Forward

template <typename T>
void gated_delta_fwd_kernel(const T* q, const T* k, const T* v, const T* alpha, const T* beta, const T* s0, T* o,
                            T* s_final, GdnDims d, int64_t chunk) {
  const int64_t N = std::min(chunk, std::max<int64_t>(d.T, 1));
  const int64_t cost = d.T * (N * (d.K + d.V) + d.V * d.K) + d.V * d.K;
  cpu::parallel_for(d.B * d.H, cost, [&](int64_t i0, int64_t i1) {
    ChunkBuffers<T> c(N, d.V);
    for (int64_t bh = i0; bh < i1; ++bh) {
      const HeadPtrs<T> p{q, k, v, alpha, beta, bh / d.H, bh % d.H, d};
      StateMut<T> S(s_final + p.state_off(), d.V, d.K);  // the running state lives in the output
      if (s0) {
        S = StateView<T>(s0 + p.state_off(), d.V, d.K);
      } else {
        S.setZero();
      }
      for (int64_t t0 = 0; t0 < d.T; t0 += N) {
        const int64_t L = std::min(N, d.T - t0);
        chunk_solve(p, t0, L, StateView<T>(S.data(), d.V, d.K), c, /*outputs=*/true);
        // o_t = γ_t b_t + Σ_{s≤t} D_{t,s} (q_t·k_s) u_s
        RowsMut<T> out = p.v_rows_mut(o, t0, L);
        out.noalias() = c.pm.topLeftCorner(L, L) * c.u.topRows(L);
        for (int64_t t = 0; t < L; ++t) out.row(t) += c.gam[t] * c.sq.row(t);
        chunk_update_state(p, t0, L, c, S);
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------------------
// Backward

template <typename T>
void gated_delta_bwd_kernel(const T* dout, const T* dfinal, const T* q, const T* k, const T* v, const T* alpha,
                            const T* beta, const T* s0, T* dq, T* dk, T* dv, T* dalpha, T* dbeta, T* ds0, GdnDims d,
                            int64_t chunk) {
  using A = T;
  const int64_t N = std::min(chunk, std::max<int64_t>(d.T, 1));
  const int64_t n_chunks = (d.T + N - 1) / N;
  const int64_t VK = d.V * d.K, K = d.K, V = d.V;
  const int64_t cost = 3 * d.T * (N * (d.K + d.V) + d.V * d.K) + d.V * d.K;
  cpu::parallel_for(d.B * d.H, cost, [&](int64_t i0, int64_t i1) {
    ChunkBuffers<A> c(N, V);
    std::vector<A> starts(std::max<int64_t>(n_chunks, 1) * VK);  // each chunk's start state (T = 0: s0)
    RowMat<A> dS(V, K), dS0(V, K);
    RowMat<A> ub(N, V), wb(N, V), gdo(N, V), bgw(N, V);  // ū, w̄, γ_t do_t, β_t γ_t w̄_t
    RowMat<A> dDm(RowMat<A>::Zero(N, N)), cm(N, N), cd(RowMat<A>::Zero(N, N)), em(RowMat<A>::Zero(N, N));
    std::vector<A> dDg(N), gal(N), gbe(N);  // dD_{t,−1}, dα, dβ
    for (int64_t bh = i0; bh < i1; ++bh) {
      const HeadPtrs<T> p{q, k, v, alpha, beta, bh / d.H, bh % d.H, d};
      const int64_t soff = p.state_off();
      // Pass 1: the start state of every chunk.
      {
        StateMut<A> S(starts.data(), V, K);
        if (s0) {
          S = StateView<A>(s0 + soff, V, K);
        } else {
          S.setZero();
        }
        for (int64_t ci = 0; ci + 1 < n_chunks; ++ci) {  // the final state is not needed
          const int64_t t0 = ci * N;
          StateMut<A> next(starts.data() + (ci + 1) * VK, V, K);
          next = StateView<A>(starts.data() + ci * VK, V, K);
          chunk_solve(p, t0, N, StateView<A>(next.data(), V, K), c, /*outputs=*/false);
          chunk_update_state(p, t0, N, c, next);
        }
      }
      // Pass 2: chunks in reverse, carrying dS = ∂ℓ/∂(chunk end state).
      if (dfinal) {
        dS = StateView<A>(dfinal + soff, V, K);
      } else {
        dS.setZero();
      }
      for (int64_t ci = n_chunks - 1; ci >= 0; --ci) {
        const int64_t t0 = ci * N, L = std::min(N, d.T - t0);
        const StateView<A> S0(starts.data() + ci * VK, V, K);
        chunk_solve(p, t0, L, S0, c, /*outputs=*/true);
        const Rows<A> kc = p.qk_rows(k, t0, L), qc = p.qk_rows(q, t0, L), vc = p.v_rows(v, t0, L);
        const Rows<A> dO = p.v_rows(dout, t0, L);
        RowsMut<A> gq = p.qk_rows_mut(dq, t0, L), gk = p.qk_rows_mut(dk, t0, L);
        auto u = c.u.topRows(L);
        auto ubL = ub.topRows(L), wbL = wb.topRows(L);
        auto dD = dDm.topLeftCorner(L, L);
        dD.setZero();
        std::fill(dDg.begin(), dDg.end(), A(0));
        std::fill(gbe.begin(), gbe.end(), A(0));

        // S_end = γ_{L−1} S₀ + Σ_s D_{L−1,s} u_s k_sᵀ:  y_s = dS k_s;  ū_s = D_{L−1,s} y_s;
        // dD_{L−1,s} = u_s·y_s;  dk_s = D_{L−1,s} dSᵀ u_s
        dDg[L - 1] += dS.cwiseProduct(S0).sum();
        auto y = c.tmp.topRows(L);
        y.noalias() = kc * dS.transpose();
        auto du = gdo.topRows(L);  // scratch here: D_{L−1,s} u_s
        for (int64_t s = 0; s < L; ++s) {
          const A w = c.dec(L - 1, s);
          dD(L - 1, s) += u.row(s).dot(y.row(s));
          ubL.row(s) = w * y.row(s);
          du.row(s) = w * u.row(s);
        }
        gk.noalias() = du * dS;
        // o_t = γ_t b_t + Σ_{s≤t} P_{t,s} u_s:  dD_{t,−1} += do_t·b_t;  ū += Pᵀ dO;  with C = dO Uᵀ:
        // dD_{t,s} += C_{t,s} (q_t·k_s);  dq = (C∘D) K;  dk += (C∘D)ᵀ Q
        auto C = cm.topLeftCorner(L, L);
        C.noalias() = dO * u.transpose();
        ubL.noalias() += c.pm.topLeftCorner(L, L).transpose() * dO;
        auto CD = cd.topLeftCorner(L, L);
        for (int64_t t = 0; t < L; ++t) {
          dDg[t] += dO.row(t).dot(c.sq.row(t));
          for (int64_t s = 0; s <= t; ++s) {
            dD(t, s) += C(t, s) * c.qk(t, s);
            CD(t, s) = C(t, s) * c.dec(t, s);
          }
        }
        gq.noalias() = CD * kc;
        gk.noalias() += CD.transpose() * qc;
        // (I + M)ᵀ W̄ = Ū by back substitution.
        wbL = ubL;
        c.sys.topLeftCorner(L, L).transpose().template triangularView<Eigen::UnitUpper>().solveInPlace(wbL);
        // M_{t,s} = β_t D_{t,s} (k_t·k_s), s < t, with m = −w̄_t·u_s:  dβ_t += m D_{t,s} (k_t·k_s);
        // dD_{t,s} += m β_t (k_t·k_s);  dk += E K + Eᵀ K with E_{t,s} = m β_t D_{t,s}
        auto Mg = cm.topLeftCorner(L, L);
        Mg.noalias() = wbL * u.transpose();
        auto E = em.topLeftCorner(L, L);
        for (int64_t t = 0; t < L; ++t) {
          const A bt = c.be[t];
          for (int64_t s = 0; s < t; ++s) {
            const A m = -Mg(t, s), Dts = c.dec(t, s), G = c.kk(t, s);
            gbe[t] += m * Dts * G;
            dD(t, s) += m * bt * G;
            E(t, s) = m * bt * Dts;
          }
        }
        gk.noalias() += E * kc;
        gk.noalias() += E.transpose() * kc;
        // W_t = β_t (v_t − γ_t a_t):  dβ_t += w̄_t·(v_t − γ_t a_t);  dv_t = β_t w̄_t;  dD_{t,−1} −= β_t w̄_t·a_t
        RowsMut<A> gv = p.v_rows_mut(dv, t0, L);
        auto gdoL = gdo.topRows(L), bgwL = bgw.topRows(L);
        for (int64_t t = 0; t < L; ++t) {
          const A bt = c.be[t], g = c.gam[t];
          const A wa = wbL.row(t).dot(c.sk.row(t));
          gbe[t] += wbL.row(t).dot(vc.row(t)) - g * wa;
          dDg[t] -= bt * wa;
          gv.row(t) = bt * wbL.row(t);
          gdoL.row(t) = g * dO.row(t);
          bgwL.row(t) = bt * g * wbL.row(t);
        }
        // dq_t += γ_t S₀ᵀ do_t;  dk_t −= β_t γ_t S₀ᵀ w̄_t
        gq.noalias() += gdoL * S0;
        gk.noalias() -= bgwL * S0;
        // dS₀ = γ_{L−1} dS + Σ_t γ_t (do_t q_tᵀ − β_t w̄_t k_tᵀ)  (the dS of the previous chunk)
        dS0 = c.gam[L - 1] * dS;
        dS0.noalias() += gdoL.transpose() * qc;
        dS0.noalias() -= bgwL.transpose() * kc;
        dS.swap(dS0);
        // dα_r = Σ_{t≥r} D_{t,r} Y_{t,r};  Y_{t,0} = dD_{t,−1},  Y_{t,r} = dD_{t,r−1} + α_{r−1} Y_{t,r−1}
        std::fill(gal.begin(), gal.end(), A(0));
        for (int64_t t = 0; t < L; ++t) {
          A Yv = dDg[t];
          gal[0] += c.dec(t, 0) * Yv;
          for (int64_t r = 1; r <= t; ++r) {
            Yv = dD(t, r - 1) + c.al[r - 1] * Yv;
            gal[r] += c.dec(t, r) * Yv;
          }
        }
        for (int64_t t = 0; t < L; ++t) {
          dalpha[p.g_off(t0 + t)] = gal[t];
          dbeta[p.g_off(t0 + t)] = gbe[t];
        }
      }
      if (ds0) StateMut<A>(ds0 + soff, V, K) = dS;
    }
  });
}
// ---------------------------------------------------------------------------------------------------------
// Step (one token)

template <typename T>
void gated_delta_step_kernel(const T* q, const T* k, const T* v, const T* alpha, const T* beta, const T* s0, T* o,
                             T* s_new, int64_t BH, int64_t K, int64_t V) {
  using A = T;
  cpu::parallel_for(BH, 3 * V * K, [&](int64_t i0, int64_t i1) {
    for (int64_t bh = i0; bh < i1; ++bh) {
      const T* qh = q + bh * K;
      const T* kh = k + bh * K;
      const A a = static_cast<A>(alpha[bh]), b = static_cast<A>(beta[bh]);
      for (int64_t j = 0; j < V; ++j) {
        A* Sj = s_new + (bh * V + j) * K;
        // u_j = β (v_j − α (S k)_j);  S_j ← α S_j + u_j k;  o_j = S_j · q
        A sk = 0;
        for (int64_t i = 0; i < K; ++i) {
          Sj[i] = s0 ? s0[(bh * V + j) * K + i] : A(0);
          sk += Sj[i] * kh[i];
        }
        const A u = b * (static_cast<A>(v[bh * V + j]) - a * sk);
        A oj = 0;
        for (int64_t i = 0; i < K; ++i) {
          Sj[i] = a * Sj[i] + u * kh[i];
          oj += Sj[i] * qh[i];
        }
        o[bh * V + j] = oj;
      }
    }
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Dispatch

GatedDeltaOutput gated_delta_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& alpha,
                                     const Tensor& beta, const Tensor& initial_state, int64_t chunk) {
  const char* op = "gated_delta_forward";
  const GdnDims d = check_seq_args(op, q, k, v, alpha, beta, initial_state);
  check_chunk(op, chunk);
  const Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  const Tensor ac = alpha.contiguous(), bc = beta.contiguous(), sc = contiguous_or_undefined(initial_state);
  if (q.is_cuda()) return gated_delta_forward_cuda(qc, kc, vc, ac, bc, sc);  // the `chunk` is the kernel's own
  GatedDeltaOutput out{empty({d.B, d.T, d.H, d.V}, q.dtype(), q.device()),
                       empty({d.B, d.H, d.V, d.K}, q.dtype(), q.device())};
  dispatch_f32_f64(q.dtype(), [&]<typename T>() {
    gated_delta_fwd_kernel<T>(qc.data<T>(), kc.data<T>(), vc.data<T>(), ac.data<T>(), bc.data<T>(),
                              sc.defined() ? sc.data<T>() : nullptr, out.o.data<T>(),
                              out.final_state.data<T>(), d, chunk);
  });
  return out;
}

GatedDeltaGrads gated_delta_backward(const Tensor& do_, const Tensor& dfinal_state, const Tensor& q,
                                     const Tensor& k, const Tensor& v, const Tensor& alpha, const Tensor& beta,
                                     const Tensor& initial_state, int64_t chunk) {
  const char* op = "gated_delta_backward";
  const GdnDims d = check_seq_args(op, q, k, v, alpha, beta, initial_state);
  check_chunk(op, chunk);
  check_operand(op, do_, "do", q);
  HYDRA_CHECK(do_.shape() == (Shape{d.B, d.T, d.H, d.V}), "{}: 'do' must be [B, T, H, V] = {} like the output, got {}",
              op, shape_str(Shape{d.B, d.T, d.H, d.V}), shape_str(do_.shape()));
  if (dfinal_state.defined()) {
    check_operand(op, dfinal_state, "dfinal_state", q, Operand::GateOrState);
    HYDRA_CHECK(dfinal_state.shape() == (Shape{d.B, d.H, d.V, d.K}),
                "{}: 'dfinal_state' must be [B, H, V, K] = {} like the final state, got {}", op,
                shape_str(Shape{d.B, d.H, d.V, d.K}), shape_str(dfinal_state.shape()));
  }
  const Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  const Tensor ac = alpha.contiguous(), bc = beta.contiguous(), sc = contiguous_or_undefined(initial_state);
  const Tensor gc = do_.contiguous(), gfc = contiguous_or_undefined(dfinal_state);
  if (q.is_cuda()) return gated_delta_backward_cuda(gc, gfc, qc, kc, vc, ac, bc, sc);
  GatedDeltaGrads g{empty(q.shape(), q.dtype(), q.device()),
                    empty(k.shape(), q.dtype(), q.device()),
                    empty(v.shape(), q.dtype(), q.device()),
                    empty(alpha.shape(), q.dtype(), q.device()),
                    empty(beta.shape(), q.dtype(), q.device()),
                    initial_state.defined() ? empty(initial_state.shape(), q.dtype(), q.device()) : Tensor()};
  dispatch_f32_f64(q.dtype(), [&]<typename T>() {
    gated_delta_bwd_kernel<T>(gc.data<T>(), gfc.defined() ? gfc.data<T>() : nullptr, qc.data<T>(),
                              kc.data<T>(), vc.data<T>(), ac.data<T>(), bc.data<T>(),
                              sc.defined() ? sc.data<T>() : nullptr, g.dq.data<T>(), g.dk.data<T>(),
                              g.dv.data<T>(), g.dalpha.data<T>(), g.dbeta.data<T>(),
                              g.dinitial_state.defined() ? g.dinitial_state.data<T>() : nullptr, d, chunk);
  });
  return g;
}

GatedDeltaOutput gated_delta_step(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& alpha,
                                  const Tensor& beta, const Tensor& state) {
  const char* op = "gated_delta_step";
  check_operand(op, q, "q", q);
  check_operand(op, k, "k", q);
  check_operand(op, v, "v", q);
  check_operand(op, alpha, "alpha", q, Operand::GateOrState);
  check_operand(op, beta, "beta", q, Operand::GateOrState);
  if (state.defined()) check_operand(op, state, "state", q, Operand::GateOrState);
  HYDRA_CHECK(q.dim() == 3, "{}: 'q' must have rank 3 [B, H, K], got shape {}", op, shape_str(q.shape()));
  HYDRA_CHECK(k.shape() == q.shape(), "{}: 'k' must have the shape of 'q' [B, H, K] = {}, got {}", op,
              shape_str(q.shape()), shape_str(k.shape()));
  const int64_t B = q.size(0), H = q.size(1), K = q.size(2);
  HYDRA_CHECK(v.dim() == 3 && v.size(0) == B && v.size(1) == H,
              "{}: 'v' must be [B, H, V] with B, H = {}, {} (from q {}), got {}", op, B, H, shape_str(q.shape()),
              shape_str(v.shape()));
  const int64_t V = v.size(2);
  HYDRA_CHECK(alpha.shape() == (Shape{B, H}), "{}: 'alpha' must be [B, H] = {}, got {}", op, shape_str(Shape{B, H}),
              shape_str(alpha.shape()));
  HYDRA_CHECK(beta.shape() == (Shape{B, H}), "{}: 'beta' must be [B, H] = {}, got {}", op, shape_str(Shape{B, H}),
              shape_str(beta.shape()));
  if (state.defined()) {
    HYDRA_CHECK(state.shape() == (Shape{B, H, V, K}), "{}: 'state' must be [B, H, V, K] = {}, got {}", op,
                shape_str(Shape{B, H, V, K}), shape_str(state.shape()));
  }
  const Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  const Tensor ac = alpha.contiguous(), bc = beta.contiguous(), sc = contiguous_or_undefined(state);
  if (q.is_cuda()) return gated_delta_step_cuda(qc, kc, vc, ac, bc, sc);
  GatedDeltaOutput out{empty({B, H, V}, q.dtype(), q.device()), empty({B, H, V, K}, q.dtype(), q.device())};
  dispatch_f32_f64(q.dtype(), [&]<typename T>() {
    gated_delta_step_kernel<T>(qc.data<T>(), kc.data<T>(), vc.data<T>(), ac.data<T>(), bc.data<T>(),
                               sc.defined() ? sc.data<T>() : nullptr, out.o.data<T>(),
                               out.final_state.data<T>(), B * H, K, V);
  });
  return out;
}

}  // namespace hydra
