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
// fixed order, so results do not depend on the thread count. Inner loops run over the contiguous K or V dim.
// Arithmetic is in the input dtype (float32 inputs accumulate in float32).
#include <algorithm>
#include <cstdint>
#include <vector>

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
// Small dense helpers (contiguous inner loops)

// `omp simd reduction` lets the compiler vectorise the sum without -ffast-math; the order is fixed at compile time
// (the vector width), so results stay reproducible.
template <typename A>
A dot(const A* x, const A* y, int64_t n) {
  A s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += x[i] * y[i];
  return s;
}

template <typename A>
void axpy(A* y, A a, const A* x, int64_t n) {  // y += a·x
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// ---------------------------------------------------------------------------------------------------------
// One (b, h) head's view of the global tensors and the per-task chunk buffers.

template <typename T>
struct HeadPtrs {
  // Token t of head h in batch b: q/k at ((b·T + t)·H + h)·K, v/o at ((b·T + t)·H + h)·V, α/β at (b·T + t)·H + h.
  const T *q, *k, *v, *alpha, *beta;
  int64_t b, h;
  GdnDims d;
  int64_t qk_off(int64_t t) const { return ((b * d.T + t) * d.H + h) * d.K; }
  int64_t v_off(int64_t t) const { return ((b * d.T + t) * d.H + h) * d.V; }
  int64_t g_off(int64_t t) const { return (b * d.T + t) * d.H + h; }
  int64_t state_off() const { return (b * d.H + h) * d.V * d.K; }
};

// Buffers for one chunk of up to N tokens (allocated once per task, reused for every chunk and head).
template <typename A>
struct ChunkBuffers {
  int64_t N, K, V;
  std::vector<A> q, k, v;   // N×K, N×K, N×V (the chunk's tokens, gathered contiguous)
  std::vector<A> al, be;    // N
  std::vector<A> dec;       // N×(N+1): D_{t,s} at t·(N+1) + s + 1, −1 ≤ s ≤ t
  std::vector<A> kk, qk;    // N×N: k_t·k_s (s < t), q_t·k_s (s ≤ t)
  std::vector<A> sk, sq;    // N×V: a_t = S₀ k_t, b_t = S₀ q_t
  std::vector<A> u;         // N×V

  ChunkBuffers(int64_t N_, int64_t K_, int64_t V_)
      : N(N_), K(K_), V(V_), q(N * K), k(N * K), v(N * V), al(N), be(N), dec(N * (N + 1)), kk(N * N), qk(N * N),
        sk(N * V), sq(N * V), u(N * V) {}
  A D(int64_t t, int64_t s) const { return dec[t * (N + 1) + s + 1]; }
};

template <typename T, typename A>
void load_chunk(const HeadPtrs<T>& p, int64_t t0, int64_t L, ChunkBuffers<A>& c) {
  const int64_t K = p.d.K, V = p.d.V;
  for (int64_t t = 0; t < L; ++t) {
    const T* qs = p.q + p.qk_off(t0 + t);
    const T* ks = p.k + p.qk_off(t0 + t);
    const T* vs = p.v + p.v_off(t0 + t);
    for (int64_t i = 0; i < K; ++i) c.q[t * K + i] = static_cast<A>(qs[i]);
    for (int64_t i = 0; i < K; ++i) c.k[t * K + i] = static_cast<A>(ks[i]);
    for (int64_t j = 0; j < V; ++j) c.v[t * V + j] = static_cast<A>(vs[j]);
    c.al[t] = static_cast<A>(p.alpha[p.g_off(t0 + t)]);
    c.be[t] = static_cast<A>(p.beta[p.g_off(t0 + t)]);
  }
}

// The chunk's intra-chunk quantities from its start state S0 (V×K): D, k_t·k_s, a_t = S₀k_t and U by forward
// substitution; with `outputs`, also q_t·k_s and b_t = S₀q_t.
template <typename A>
void chunk_solve(ChunkBuffers<A>& c, int64_t L, const A* S0, bool outputs) {
  const int64_t N = c.N, K = c.K, V = c.V;
  // D_{t,s} = D_{t,s+1} · α_{s+1}, from D_{t,t} = 1 down to s = −1.
  for (int64_t t = 0; t < L; ++t) {
    A* row = c.dec.data() + t * (N + 1);
    row[t + 1] = A(1);
    for (int64_t s = t - 1; s >= -1; --s) row[s + 1] = row[s + 2] * c.al[s + 1];
  }
  for (int64_t t = 0; t < L; ++t) {
    const A* kt = c.k.data() + t * K;
    for (int64_t s = 0; s < t; ++s) c.kk[t * N + s] = dot(kt, c.k.data() + s * K, K);
    if (outputs) {
      const A* qt = c.q.data() + t * K;
      for (int64_t s = 0; s <= t; ++s) c.qk[t * N + s] = dot(qt, c.k.data() + s * K, K);
    }
  }
  for (int64_t t = 0; t < L; ++t) {
    const A* kt = c.k.data() + t * K;
    const A* qt = c.q.data() + t * K;
    for (int64_t j = 0; j < V; ++j) {
      c.sk[t * V + j] = dot(S0 + j * K, kt, K);
      if (outputs) c.sq[t * V + j] = dot(S0 + j * K, qt, K);
    }
  }
  // u_t = β_t (v_t − γ_t a_t) − Σ_{s<t} β_t D_{t,s} (k_t·k_s) u_s
  for (int64_t t = 0; t < L; ++t) {
    A* ut = c.u.data() + t * V;
    const A g = c.D(t, -1), bt = c.be[t];
    for (int64_t j = 0; j < V; ++j) ut[j] = bt * (c.v[t * V + j] - g * c.sk[t * V + j]);
    for (int64_t s = 0; s < t; ++s) axpy(ut, -bt * c.D(t, s) * c.kk[t * N + s], c.u.data() + s * V, V);
  }
}

// S ← γ_{L−1} S + Σ_s D_{L−1,s} u_s k_sᵀ  (row by row: each row of the new S reads only its own old row).
template <typename A>
void chunk_update_state(const ChunkBuffers<A>& c, int64_t L, A* S) {
  const int64_t K = c.K, V = c.V;
  const A g = c.D(L - 1, -1);
  for (int64_t j = 0; j < V; ++j) {
    A* Sj = S + j * K;
    for (int64_t i = 0; i < K; ++i) Sj[i] *= g;
    for (int64_t s = 0; s < L; ++s) axpy(Sj, c.D(L - 1, s) * c.u[s * V + j], c.k.data() + s * K, K);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Forward

template <typename T>
void gated_delta_fwd_kernel(const T* q, const T* k, const T* v, const T* alpha, const T* beta, const T* s0, T* o,
                            T* s_final, GdnDims d, int64_t chunk) {
  using A = T;
  const int64_t N = std::min(chunk, std::max<int64_t>(d.T, 1));
  const int64_t cost = d.T * (N * (d.K + d.V) + d.V * d.K) + d.V * d.K;
  cpu::parallel_for(d.B * d.H, cost, [&](int64_t i0, int64_t i1) {
    ChunkBuffers<A> c(N, d.K, d.V);
    std::vector<A> S(d.V * d.K);
    for (int64_t bh = i0; bh < i1; ++bh) {
      const HeadPtrs<T> p{q, k, v, alpha, beta, bh / d.H, bh % d.H, d};
      const int64_t soff = p.state_off();
      for (int64_t i = 0; i < d.V * d.K; ++i) S[i] = s0 ? static_cast<A>(s0[soff + i]) : A(0);
      for (int64_t t0 = 0; t0 < d.T; t0 += N) {
        const int64_t L = std::min(N, d.T - t0);
        load_chunk(p, t0, L, c);
        chunk_solve(c, L, S.data(), /*outputs=*/true);
        // o_t = γ_t b_t + Σ_{s≤t} D_{t,s} (q_t·k_s) u_s
        std::vector<A>& ot = c.sq;  // b_t is read once per element: accumulate o_t in place
        for (int64_t t = 0; t < L; ++t) {
          A* orow = ot.data() + t * d.V;
          const A g = c.D(t, -1);
          for (int64_t j = 0; j < d.V; ++j) orow[j] *= g;
          for (int64_t s = 0; s <= t; ++s) axpy(orow, c.D(t, s) * c.qk[t * N + s], c.u.data() + s * d.V, d.V);
          T* dst = o + p.v_off(t0 + t);
          for (int64_t j = 0; j < d.V; ++j) dst[j] = static_cast<T>(orow[j]);
        }
        chunk_update_state(c, L, S.data());
      }
      for (int64_t i = 0; i < d.V * d.K; ++i) s_final[soff + i] = static_cast<T>(S[i]);
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
    ChunkBuffers<A> c(N, K, V);
    std::vector<A> starts(n_chunks * VK);  // the start state of every chunk of the current head
    std::vector<A> S(VK), dS(VK), dS0(VK);
    std::vector<A> dO(N * V), ub(N * V), wb(N * V), dA(N * (N + 1)), gq(N * K), gk(N * K), gal(N), gbe(N), y(V);
    for (int64_t bh = i0; bh < i1; ++bh) {
      const HeadPtrs<T> p{q, k, v, alpha, beta, bh / d.H, bh % d.H, d};
      const int64_t soff = p.state_off();
      // Pass 1: the start state of every chunk.
      for (int64_t i = 0; i < VK; ++i) S[i] = s0 ? static_cast<A>(s0[soff + i]) : A(0);
      for (int64_t ci = 0; ci < n_chunks; ++ci) {
        const int64_t t0 = ci * N, L = std::min(N, d.T - t0);
        std::copy(S.begin(), S.end(), starts.begin() + ci * VK);
        if (ci + 1 == n_chunks) break;  // the final state is not needed
        load_chunk(p, t0, L, c);
        chunk_solve(c, L, S.data(), /*outputs=*/false);
        chunk_update_state(c, L, S.data());
      }
      // Pass 2: chunks in reverse, carrying dS = ∂ℓ/∂(chunk end state).
      for (int64_t i = 0; i < VK; ++i) dS[i] = dfinal ? static_cast<A>(dfinal[soff + i]) : A(0);
      for (int64_t ci = n_chunks - 1; ci >= 0; --ci) {
        const int64_t t0 = ci * N, L = std::min(N, d.T - t0);
        const A* S0 = starts.data() + ci * VK;
        load_chunk(p, t0, L, c);
        chunk_solve(c, L, S0, /*outputs=*/true);
        for (int64_t t = 0; t < L; ++t) {
          const T* src = dout + p.v_off(t0 + t);
          for (int64_t j = 0; j < V; ++j) dO[t * V + j] = static_cast<A>(src[j]);
        }
        std::fill(ub.begin(), ub.end(), A(0));
        std::fill(dA.begin(), dA.end(), A(0));
        std::fill(gq.begin(), gq.end(), A(0));
        std::fill(gk.begin(), gk.end(), A(0));
        std::fill(gal.begin(), gal.end(), A(0));
        std::fill(gbe.begin(), gbe.end(), A(0));
        auto dD = [&](int64_t t, int64_t s) -> A& { return dA[t * (N + 1) + s + 1]; };
        const A* kb = c.k.data();
        const A* qb = c.q.data();
        const A* ubuf = c.u.data();

        // S_end = γ_{L−1} S₀ + Σ_s D_{L−1,s} u_s k_sᵀ
        dD(L - 1, -1) += dot(dS.data(), S0, VK);
        for (int64_t s = 0; s < L; ++s) {
          const A w = c.D(L - 1, s);
          A* gks = gk.data() + s * K;
          for (int64_t j = 0; j < V; ++j) {
            const A* dSj = dS.data() + j * K;
            y[j] = dot(dSj, kb + s * K, K);                // (dS k_s)_j
            axpy(gks, w * ubuf[s * V + j], dSj, K);        // dk_s += D dSᵀ u_s
          }
          axpy(ub.data() + s * V, w, y.data(), V);         // ū_s += D dS k_s
          dD(L - 1, s) += dot(ubuf + s * V, y.data(), V);
        }
        // o_t = γ_t b_t + Σ_{s≤t} D_{t,s} (q_t·k_s) u_s
        for (int64_t t = 0; t < L; ++t) {
          const A* dOt = dO.data() + t * V;
          dD(t, -1) += dot(dOt, c.sq.data() + t * V, V);
          for (int64_t s = 0; s <= t; ++s) {
            const A Dts = c.D(t, s), Pts = c.qk[t * N + s];
            const A cts = dot(dOt, ubuf + s * V, V);
            axpy(ub.data() + s * V, Dts * Pts, dOt, V);
            dD(t, s) += cts * Pts;
            axpy(gq.data() + t * K, cts * Dts, kb + s * K, K);
            axpy(gk.data() + s * K, cts * Dts, qb + t * K, K);
          }
        }
        // (I + M)ᵀ W̄ = Ū, M_{t,s} = β_t D_{t,s} (k_t·k_s) for s < t: back substitution.
        for (int64_t t = L - 1; t >= 0; --t) {
          A* wt = wb.data() + t * V;
          std::copy(ub.begin() + t * V, ub.begin() + (t + 1) * V, wt);
          for (int64_t tp = t + 1; tp < L; ++tp)
            axpy(wt, -c.be[tp] * c.D(tp, t) * c.kk[tp * N + t], wb.data() + tp * V, V);
        }
        for (int64_t t = 0; t < L; ++t) {
          const A* wt = wb.data() + t * V;
          const A bt = c.be[t];
          for (int64_t s = 0; s < t; ++s) {
            const A m = -dot(wt, ubuf + s * V, V);  // ∂ℓ/∂M_{t,s}
            const A Dts = c.D(t, s), Gts = c.kk[t * N + s];
            gbe[t] += m * Dts * Gts;
            dD(t, s) += m * bt * Gts;
            const A gG = m * bt * Dts;
            axpy(gk.data() + t * K, gG, kb + s * K, K);
            axpy(gk.data() + s * K, gG, kb + t * K, K);
          }
          // W_t = β_t (v_t − γ_t a_t)
          const A g = c.D(t, -1);
          A we = 0, wa = 0;
          for (int64_t j = 0; j < V; ++j) {
            we += wt[j] * (c.v[t * V + j] - g * c.sk[t * V + j]);
            wa += wt[j] * c.sk[t * V + j];
          }
          gbe[t] += we;
          dD(t, -1) -= bt * wa;
          T* dvt = dv + p.v_off(t0 + t);
          for (int64_t j = 0; j < V; ++j) dvt[j] = static_cast<T>(bt * wt[j]);
          // dq_t += γ_t S₀ᵀ do_t;  dk_t −= β_t γ_t S₀ᵀ w̄_t
          const A* dOt = dO.data() + t * V;
          for (int64_t j = 0; j < V; ++j) {
            axpy(gq.data() + t * K, g * dOt[j], S0 + j * K, K);
            axpy(gk.data() + t * K, -bt * g * wt[j], S0 + j * K, K);
          }
        }
        // dS₀ = γ_{L−1} dS + Σ_t γ_t (do_t q_tᵀ − β_t w̄_t k_tᵀ)
        const A gL = c.D(L - 1, -1);
        for (int64_t j = 0; j < V; ++j) {
          A* row = dS0.data() + j * K;
          const A* dSj = dS.data() + j * K;
          for (int64_t i = 0; i < K; ++i) row[i] = gL * dSj[i];
          for (int64_t t = 0; t < L; ++t) {
            const A g = c.D(t, -1);
            axpy(row, g * dO[t * V + j], qb + t * K, K);
            axpy(row, -c.be[t] * g * wb[t * V + j], kb + t * K, K);
          }
        }
        std::swap(dS, dS0);
        // dα_r = Σ_{t≥r} D_{t,r} Y_{t,r};  Y_{t,0} = dD_{t,−1},  Y_{t,r} = dD_{t,r−1} + α_{r−1} Y_{t,r−1}
        for (int64_t t = 0; t < L; ++t) {
          A Y = dD(t, -1);
          gal[0] += c.D(t, 0) * Y;
          for (int64_t r = 1; r <= t; ++r) {
            Y = dD(t, r - 1) + c.al[r - 1] * Y;
            gal[r] += c.D(t, r) * Y;
          }
        }
        for (int64_t t = 0; t < L; ++t) {
          T* dqt = dq + p.qk_off(t0 + t);
          T* dkt = dk + p.qk_off(t0 + t);
          for (int64_t i = 0; i < K; ++i) dqt[i] = static_cast<T>(gq[t * K + i]);
          for (int64_t i = 0; i < K; ++i) dkt[i] = static_cast<T>(gk[t * K + i]);
          dalpha[p.g_off(t0 + t)] = static_cast<T>(gal[t]);
          dbeta[p.g_off(t0 + t)] = static_cast<T>(gbe[t]);
        }
      }
      if (ds0) {
        for (int64_t i = 0; i < VK; ++i) ds0[soff + i] = static_cast<T>(dS[i]);
      }
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
