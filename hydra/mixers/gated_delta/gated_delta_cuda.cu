// Gated delta rule on CUDA: chunkwise forward, chunkwise backward and the one-token step (contract and shapes in
// gated_delta.h; the entry points are declared in gated_delta_cuda.h and called only from the dispatch functions
// of gated_delta_cpu.cpp, which have checked the arguments and made every input contiguous).
//
// Dtypes: the chunkwise kernels of this file run float32 q, k, v (fp32 SIMT, chunk length 32). bfloat16 q, k, v go
// to gated_delta_mma.cu (tensor cores, chunk length 64): gated_delta_forward_cuda and gated_delta_backward_cuda hand
// them over before anything here is launched. The one-token step kernel serves both dtypes.
//
// Math (per head (b, h); state S is V×K, rows = value index):
//   u_t = β_t (v_t − α_t S_{t−1} k_t),   S_t = α_t S_{t−1} + u_t k_tᵀ,   o_t = S_t q_t.
// Chunkwise form, chunk length C = kC = 32 (the `chunk` argument of the public API is not used on CUDA: the math
// is the exact recurrence and the chunk length only changes the order of summation). Per chunk of tokens
// t = 0..C−1 with start state S₀ and D_{t,s} = Π_{r=s+1..t} α_r (D_{t,t} = 1, γ_t = D_{t,−1}):
//   A_{t,s} = β_t D_{t,s} (k_t·k_s) (s < t),   T = (I + A)⁻¹ (unit lower triangular, forward substitution)
//   Wk = T diag(β γ) K,   Uv = T diag(β) V          (state-independent: all chunks in parallel)
//   U = Uv − Wk S₀ᵀ                                  (the WY/UT form of the chunk's u_t; sequential over chunks)
//   S_end = γ_{C−1} S₀ + Uᵀ diag(D_{C−1,·}) K
//   O = diag(γ) Q S₀ᵀ + (QKᵀ ∘ D) U                  (D masked to s ≤ t)
// A chunk that runs past T is padded with tokens q = k = v = do = 0, α = 1, β = 0: such tokens change nothing
// (causality: they come after every real token of the chunk; u = 0 for them; α = 1 keeps D_{C−1,s} = D_{L−1,s}),
// so every chunk is computed at full size C without length checks. K and V are padded with zeros to KP, VP =
// multiples of 32 (any K, V in 1..128); padded key columns and value rows of every state stay exactly zero.
// The decay products D are running products (no logs, no division, no clamp): α may be 0 or tiny.
//
// Backward (adjoint of the chunk form; dO = ∂ℓ/∂O, dS = ∂ℓ/∂S_end of the chunk):
//   dU  = (QKᵀ ∘ D)ᵀ dO + diag(D_{C−1,·}) K dSᵀ
//   dS₀ = γ_{C−1} dS + dOᵀ diag(γ) Q − dUᵀ Wk          (the carried state gradient; sequential, reverse)
//   dW = Tᵀ dU (the gradient of (I + A) U = W, W_t = β_t (v_t − γ_t S₀ k_t));  dv_t = β_t dW_t
//   G1_{t,s} = dO_t·u_s,  G2_{t,s} = dW_t·u_s,  X = dO S₀,  Y = dW S₀,  Z = U dS   (contractions over V)
//   dq = diag(γ) X + (G1∘D) K
//   dk = (G1∘D)ᵀ Q + diag(D_{C−1,·}) Z − diag(βγ) Y + (M + Mᵀ) K,   M_{t,s} = −G2_{t,s} β_t D_{t,s} (s < t)
//   dβ_t = dW_t·v_t − γ_t k_t·Y_t − Σ_{s<t} G2_{t,s} D_{t,s} (k_t·k_s)
//   dD_{t,s} = G1_{t,s}(q_t·k_s) − [s<t] G2_{t,s} β_t (k_t·k_s) + [t = C−1] k_s·Z_s        (0 ≤ s ≤ t)
//   dD_{t,−1} = q_t·X_t − β_t k_t·Y_t + [t = C−1] <dS, S₀>
//   dα_r = Σ_{t≥r} D_{t,r} Y_{t,r},  Y_{t,0} = dD_{t,−1},  Y_{t,r} = dD_{t,r−1} + α_{r−1} Y_{t,r−1}   (Horner; no
//   division by α).  The same derivation, written per token, is in gated_delta_cpu.cpp.
// Backward recomputes the chunk-start states from the saved inputs (ag::gated_delta saves only the inputs): it
// re-runs the two forward stages below (prep and state), keeping every chunk-start state in a scratch tensor.
//
// Kernels (every block has kThreads = 256 threads = 8 warps); the chunkwise ones are templates on the input dtype
// but are launched for float32 only:
//   gated_delta_prep_kernel      one block per (chunk, b·h): D, A, T = (I + A)⁻¹ (lanes of warp 0 = columns of T,
//                                forward substitution), Wk and Uv (and T for backward) to fp32 scratch.
//   gated_delta_state_fwd_kernel one block per (32-row tile of V, b·h), sequential over chunks: the state tile
//                                (32 × KP, fp32) stays in shared memory; per chunk it is stored to the
//                                chunk-start scratch, then U = Uv − Wk S₀ᵀ (written over Uv) and the update.
//                                Rows of S evolve independently, hence the V tiling.
//   gated_delta_out_kernel       one block per (chunk, b·h): QKᵀ∘D once, then per V tile O = γ∘(Q S₀ᵀ) + (QKᵀ∘D)U.
//   gated_delta_du_intra_kernel  one block per (chunk, b·h): (QKᵀ∘D)ᵀ dO into the dU scratch.
//   gated_delta_state_bwd_kernel one block per (V tile, b·h), chunks in reverse: dS tile in shared memory; per
//                                chunk stores dS (the chunk's end-state gradient), completes dU, updates dS;
//                                writes dinitial_state at the end.
//   gated_delta_grads_kernel     one block per (chunk, b·h), all of K and V (V walked in 32-wide tiles): dv, the
//                                contractions over V into shared accumulators, then dq, dk, dα, dβ.
//   gated_delta_step_kernel      16 lanes per state row (b·h, j), one row per 16 lanes, the row in registers
//                                (16-byte accesses): S_j·k, u_j, the new row, o_j (sums over the 16 lanes). float32 and bfloat16 q, k, v.
// There are no atomics: every output element has one writer, so results are deterministic run to run. The chunk
// length is C = 32 (one warp lane per token of a chunk; the state tiles are 32 value rows).
//
// Matrix products: SIMT, true fp32 FFMA (no TF32, no tensor cores). Every matrix lives in shared memory as fp32
// with a row stride of (columns + 1) (row- and column-wise walks bank-conflict free); a product is a block-wide loop
// over 2×2 register tiles (for_each_tile / mm_acc): thread i takes tiles i, i + 256, ...; tile (mi, ni) covers rows
// {mi, mi + M/2} and columns {ni, ni + N/2}. The forward substitution for T (32 sequential steps), the decay
// products, the Horner sums for dα and the per-token dots (dβ, q·X, k·Y, k·Z, dW·v, <dS, S₀>) are SIMT loops of
// their own.
//
// Work per chunk and head (multiply-adds; ×2 for FLOPs), C = 32:
//   forward   C·(3C·KP + 2C·VP + 3·KP·VP) + C³/6
//   backward  C·(8C·KP + 5C·VP + 8·KP·VP) + C³/6     (includes the recomputation of the forward stages)
// Bytes per chunk and head: forward reads k three times (prep, state, out), q and v once (C·(4K + V)·4), writes o
// (C·V·4) and moves fp32 scratch: Wk (C·KP, written + read), Uv/U (C·VP, written, read + written, read), the
// chunk-start state (VP·KP, written + read). Backward moves about 4× the forward's scratch plus the inputs and
// gradients. Scratch memory: forward 4·BH·NC·(C·(KP + VP) + VP·KP) bytes; backward adds C·C, C·VP and VP·KP floats
// per chunk and head. Shared memory per block (KP = VP = 128): up to ~163 KB (grads).
//
// Reference: gated_delta_ref (float64 token loop; gradients by autograd through it):
// tests/hydra/test_cuda_gated_delta.cpp.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <type_traits>

#include "hydra/mixers/gated_delta/gated_delta_cuda.h"
#include "hydra/mixers/gated_delta/gated_delta_mma.h"
#include "tensor/check.h"
#include "tensor/cuda/common.cuh"
#include "tensor/dispatch.h"

namespace hydra {

namespace {

constexpr int kC = 32;             // chunk length (tokens)
constexpr int kBV = 32;            // value rows per state tile
constexpr int kThreads = 256;      // threads per block, every kernel
constexpr int kWarps = kThreads / 32;
constexpr int kLdC = kC + 1;       // row stride of C×C (and C×(C+1)) matrices in shared memory
constexpr int kLdBV = kBV + 1;     // row stride of C×kBV tiles
constexpr int kMaxHeadDim = 128;   // K and V: 1..kMaxHeadDim

static_assert(kC == 32 && kBV == 32, "the kernels map one warp lane to one token / value row of a tile");
static_assert(kThreads >= kC + 1 + 32, "build_decay needs kC + 1 threads; the prep kernel needs more than a warp");

struct Dims {
  int64_t B, T, H, K, V;
  int64_t BH, NC;  // B·H, number of chunks ⌈T / C⌉
  int KP, VP;      // K, V rounded up to a multiple of 32
};

// Shared-memory layout: offsets (in floats) computed by the same function on the host (size) and device (carve).
struct SmemPlan {
  int off = 0;
  HYDRA_HD int take(int n) {  // n floats
    const int o = off;
    off += n;
    return o;
  }
};

// ---------------------------------------------------------------------------------------------------------
// Device helpers

template <typename T>
__device__ __forceinline__ float to_f(T x) {
  return static_cast<float>(x);
}
template <typename T>
__device__ __forceinline__ T from_f(float x) {
  if constexpr (std::is_same_v<T, BFloat16>) {
    return BFloat16(x);
  } else {
    return x;
  }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block, returned to every thread. Every thread must call it; red: 32 floats of shared memory.
__device__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) red[w] = v;
  __syncthreads();
  v = lane < nw ? red[lane] : 0.f;
  return warp_sum(v);
}

// Element offset of token t of head (b, h) in a [B, T, H, Dd] tensor, and in a [B, T, H] tensor.
__device__ __forceinline__ int64_t tok_off(const Dims& d, int64_t b, int64_t h, int64_t t, int64_t Dd) {
  return ((b * d.T + t) * d.H + h) * Dd;
}
__device__ __forceinline__ int64_t gate_off(const Dims& d, int64_t b, int64_t h, int64_t t) {
  return (b * d.T + t) * d.H + h;
}
// Row of token t of chunk c of head bh in the per-token scratch tensors [BH, NC·C, ·].
__device__ __forceinline__ int64_t scratch_row(const Dims& d, int64_t bh, int64_t c, int t) {
  return (bh * d.NC + c) * kC + t;
}
// First element of the (VP × KP) chunk-start state (or state gradient) of chunk c of head bh.
__device__ __forceinline__ int64_t state_base(const Dims& d, int64_t bh, int64_t c) {
  return (bh * d.NC + c) * static_cast<int64_t>(d.VP) * d.KP;
}

// The chunk's C tokens from t0 of a [B, T, H, Dd] tensor, columns col0 .. col0 + ncols − 1, into
// dst[t·ld + c] (fp32); zero past T or past Dd.
template <typename T>
__device__ void load_tokens(float* dst, int ld, const T* __restrict__ src, int64_t Dd, const Dims& d, int64_t b,
                            int64_t h, int64_t t0, int col0, int ncols) {
  for (int idx = threadIdx.x; idx < kC * ncols; idx += blockDim.x) {
    const int t = idx / ncols, c = idx - t * ncols;
    const int64_t tg = t0 + t, j = col0 + c;
    dst[t * ld + c] = (tg < d.T && j < Dd) ? to_f(src[tok_off(d, b, h, tg, Dd) + j]) : 0.f;
  }
}

// rows × ncols of a row-major fp32 matrix (leading dim src_ld) into shared memory (leading dim ld), and back.
__device__ void load_tile(float* dst, int ld, const float* __restrict__ src, int64_t src_ld, int rows, int ncols) {
  for (int idx = threadIdx.x; idx < rows * ncols; idx += blockDim.x) {
    const int r = idx / ncols, c = idx - r * ncols;
    dst[r * ld + c] = src[r * src_ld + c];
  }
}
__device__ void store_tile(float* __restrict__ dst, int64_t dst_ld, const float* src, int ld, int rows, int ncols) {
  for (int idx = threadIdx.x; idx < rows * ncols; idx += blockDim.x) {
    const int r = idx / ncols, c = idx - r * ncols;
    dst[r * dst_ld + c] = src[r * ld + c];
  }
}

// α (1 past T) and, when `be` is given, β (0 past T) of the chunk's tokens.
__device__ void load_gates(float* al, float* be, const float* __restrict__ alpha, const float* __restrict__ beta,
                           const Dims& d, int64_t b, int64_t h, int64_t t0) {
  for (int t = threadIdx.x; t < kC; t += blockDim.x) {
    const int64_t tg = t0 + t;
    const bool ok = tg < d.T;
    al[t] = ok ? alpha[gate_off(d, b, h, tg)] : 1.f;
    if (be) be[t] = ok ? beta[gate_off(d, b, h, tg)] : 0.f;
  }
}

// Dm[t·kLdC + s + 1] = D_{t,s} = Π_{r=s+1..t} α_r for −1 ≤ s ≤ t (column 0 holds γ_t), 0 for s > t: the decay
// with the causal mask built in. Thread c = s + 1 (c ≤ C) walks its column as a running product.
__device__ void build_decay(float* Dm, const float* al) {
  const int col = threadIdx.x;
  if (col <= kC) {
    const int s = col - 1;
    float p = 1.f;
    for (int t = 0; t < kC; ++t) {
      if (t > s) p *= al[t];
      Dm[t * kLdC + col] = t >= s ? p : 0.f;
    }
  }
}

// dl[s] = D_{C−1,s} = Π_{r>s} α_r for s < C and dl[C] = γ_{C−1}: a suffix product, by one thread.
__device__ __forceinline__ void suffix_decay(float* dl, const float* al) {
  float p = 1.f;
  for (int s = kC - 1; s >= 0; --s) {
    dl[s] = p;
    p *= al[s];
  }
  dl[kC] = p;
}

// The 2×2 register tiles of an M×N output (M, N even) over the block: tile id = mi·(N/2) + ni goes to thread
// id mod blockDim; it covers rows {mi, mi + M/2} and columns {ni, ni + N/2}. f(m0, m1, n0, n1).
template <typename F>
__device__ __forceinline__ void for_each_tile(int M, int N, F&& f) {
  const int Mh = M >> 1, Nh = N >> 1;
  for (int id = threadIdx.x; id < Mh * Nh; id += blockDim.x) {
    const int mi = id / Nh, ni = id - mi * Nh;
    f(mi, mi + Mh, ni, ni + Nh);
  }
}

// c[r][q] += Σ_{k<Kc} a(m_r, k) · b(k, n_q)  (fp32 FFMA).
template <typename FA, typename FB>
__device__ __forceinline__ void mm_acc(float (&c)[2][2], int m0, int m1, int n0, int n1, int Kc, FA&& a, FB&& b) {
#pragma unroll 4
  for (int k = 0; k < Kc; ++k) {
    const float a0 = a(m0, k), a1 = a(m1, k), b0 = b(k, n0), b1 = b(k, n1);
    c[0][0] = fmaf(a0, b0, c[0][0]);
    c[0][1] = fmaf(a0, b1, c[0][1]);
    c[1][0] = fmaf(a1, b0, c[1][0]);
    c[1][1] = fmaf(a1, b1, c[1][1]);
  }
}

// Calls f(m, n, r, q) for the four elements of a tile.
template <typename F>
__device__ __forceinline__ void tile_elems(int m0, int m1, int n0, int n1, F&& f) {
  f(m0, n0, 0, 0);
  f(m0, n1, 0, 1);
  f(m1, n0, 1, 0);
  f(m1, n1, 1, 1);
}

// ---------------------------------------------------------------------------------------------------------
// Shared-memory layouts (one function per kernel, used by the kernel and by its launcher)

// Every matrix is fp32 with an odd row stride (KP + 1, VP + 1, kLdC or kLdBV): row- and column-wise walks are
// bank-conflict free.
struct PrepSmem {
  int ks, vs, al, be, Dm, Am, Tm;
  int total;
};
HYDRA_HD inline PrepSmem prep_smem(int KP, int VP) {
  SmemPlan p;
  PrepSmem s{};
  s.ks = p.take(kC * (KP + 1));
  s.vs = p.take(kC * (VP + 1));
  s.al = p.take(kC);
  s.be = p.take(kC);
  s.Dm = p.take(kC * kLdC);
  s.Am = p.take(kC * kLdC);
  s.Tm = p.take(kC * kLdC);
  s.total = p.off;
  return s;
}

struct StateFwdSmem {
  int S, wk, kd, us, al, dl;
  int total;
};
HYDRA_HD inline StateFwdSmem state_fwd_smem(int KP) {
  SmemPlan p;
  StateFwdSmem s{};
  s.S = p.take(kBV * (KP + 1));
  s.wk = p.take(kC * (KP + 1));
  s.kd = p.take(kC * (KP + 1));
  s.us = p.take(kC * kLdBV);
  s.al = p.take(kC);
  s.dl = p.take(kC + 1);
  s.total = p.off;
  return s;
}

struct OutSmem {
  int qs, ks, Dm, P, Ss, us, al;
  int total;
};
HYDRA_HD inline OutSmem out_smem(int KP) {
  SmemPlan p;
  OutSmem s{};
  s.qs = p.take(kC * (KP + 1));
  s.ks = p.take(kC * (KP + 1));
  s.Dm = p.take(kC * kLdC);
  s.P = p.take(kC * kLdC);
  s.Ss = p.take(kBV * (KP + 1));
  s.us = p.take(kC * kLdBV);
  s.al = p.take(kC);
  s.total = p.off;
  return s;
}

struct DuIntraSmem {
  int qs, ks, Dm, P, dos, al;
  int total;
};
HYDRA_HD inline DuIntraSmem du_intra_smem(int KP, int VP) {
  SmemPlan p;
  DuIntraSmem s{};
  s.qs = p.take(kC * (KP + 1));
  s.ks = p.take(kC * (KP + 1));
  s.Dm = p.take(kC * kLdC);
  s.P = p.take(kC * kLdC);
  s.dos = p.take(kC * (VP + 1));
  s.al = p.take(kC);
  s.total = p.off;
  return s;
}

struct StateBwdSmem {
  int dS, wk, ks, qg, dos, dus, al, gam, dl;
  int total;
};
HYDRA_HD inline StateBwdSmem state_bwd_smem(int KP) {
  SmemPlan p;
  StateBwdSmem s{};
  s.dS = p.take(kBV * (KP + 1));
  s.wk = p.take(kC * (KP + 1));
  s.ks = p.take(kC * (KP + 1));
  s.qg = p.take(kC * (KP + 1));
  s.dos = p.take(kC * kLdBV);
  s.dus = p.take(kC * kLdBV);
  s.al = p.take(kC);
  s.gam = p.take(kC);
  s.dl = p.take(kC + 1);
  s.total = p.off;
  return s;
}

struct GradsSmem {
  int qs, ks, X, Y, Z;                  // C × (KP + 1)
  int Dm, Tm, G1, G2, QK, KK, dD;       // C × (C + 1)
  int dot, ut, dut, dwt;                // C × (kBV + 1): the current V tile of dO, U, dU, dW
  int s0t, dst;                         // kBV × (KP + 1): the current V tile of S₀ and dS
  int al, be, dbv, qx, ky, kz, red;     // vectors
  int total;
};
HYDRA_HD inline GradsSmem grads_smem(int KP) {
  SmemPlan p;
  GradsSmem s{};
  s.qs = p.take(kC * (KP + 1));
  s.ks = p.take(kC * (KP + 1));
  s.X = p.take(kC * (KP + 1));
  s.Y = p.take(kC * (KP + 1));
  s.Z = p.take(kC * (KP + 1));
  s.Dm = p.take(kC * kLdC);
  s.Tm = p.take(kC * kLdC);
  s.G1 = p.take(kC * kLdC);
  s.G2 = p.take(kC * kLdC);
  s.QK = p.take(kC * kLdC);
  s.KK = p.take(kC * kLdC);
  s.dD = p.take(kC * kLdC);
  s.dot = p.take(kC * kLdBV);
  s.ut = p.take(kC * kLdBV);
  s.dut = p.take(kC * kLdBV);
  s.dwt = p.take(kC * kLdBV);
  s.s0t = p.take(kBV * (KP + 1));
  s.dst = p.take(kBV * (KP + 1));
  s.al = p.take(kC);
  s.be = p.take(kC);
  s.dbv = p.take(kC);
  s.qx = p.take(kC);
  s.ky = p.take(kC);
  s.kz = p.take(kC);
  s.red = p.take(32);
  s.total = p.off;
  return s;
}

// ---------------------------------------------------------------------------------------------------------
// Kernels

// Per (chunk, b·h): T = (I + A)⁻¹, Wk = T diag(βγ) K, Uv = T diag(β) V (and T itself when tinv is given).
// Grid: NC·BH blocks, block id = bh·NC + chunk.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gated_delta_prep_kernel(const T* __restrict__ k, const T* __restrict__ v, const float* __restrict__ alpha,
                            const float* __restrict__ beta, float* __restrict__ wk, float* __restrict__ uv,
                            float* __restrict__ tinv, Dims d) {
  extern __shared__ __align__(128) float smem[];
  const PrepSmem L = prep_smem(d.KP, d.VP);
  float* ks = smem + L.ks;  // k, scaled in place by βγ later
  float* vs = smem + L.vs;  // v, scaled in place by β later
  float* al = smem + L.al;
  float* be = smem + L.be;
  float* Dm = smem + L.Dm;
  float* Am = smem + L.Am;
  float* Tm = smem + L.Tm;
  const int KP = d.KP, VP = d.VP, ldk = KP + 1, ldv = VP + 1;
  const int64_t c = blockIdx.x % d.NC, bh = blockIdx.x / d.NC, b = bh / d.H, h = bh % d.H, t0 = c * kC;
  const int64_t row0 = scratch_row(d, bh, c, 0);

  load_tokens(ks, ldk, k, d.K, d, b, h, t0, 0, KP);
  load_tokens(vs, ldv, v, d.V, d, b, h, t0, 0, VP);
  load_gates(al, be, alpha, beta, d, b, h, t0);
  __syncthreads();
  build_decay(Dm, al);
  __syncthreads();
  // A_{t,s} = β_t D_{t,s} (k_t·k_s) for s < t, else 0.
  for_each_tile(kC, kC, [&](int m0, int m1, int n0, int n1) {
    float acc[2][2] = {};
    mm_acc(acc, m0, m1, n0, n1, KP, [&](int m, int i) { return ks[m * ldk + i]; },
           [&](int i, int n) { return ks[n * ldk + i]; });
    tile_elems(m0, m1, n0, n1, [&](int t, int s, int r, int q) {
      Am[t * kLdC + s] = s < t ? be[t] * Dm[t * kLdC + s + 1] * acc[r][q] : 0.f;
    });
  });
  __syncthreads();
  if (threadIdx.x < kC) {
    // T = (I + A)⁻¹ column by column (lane = column): T_{t,c} = δ_{tc} − Σ_{s<t} A_{t,s} T_{s,c}. Each lane reads
    // only the column it writes; A is read as a broadcast.
    const int col = threadIdx.x;
    for (int t = 0; t < kC; ++t) {
      float x = t == col ? 1.f : 0.f;
      for (int s = 0; s < t; ++s) x = fmaf(-Am[t * kLdC + s], Tm[s * kLdC + col], x);
      Tm[t * kLdC + col] = t >= col ? x : 0.f;
    }
  } else {
    // Meanwhile the other warps scale the rows: K ← diag(βγ) K, V ← diag(β) V (A has been built from K already).
    const int n = blockDim.x - kC;
    for (int idx = threadIdx.x - kC; idx < kC * KP; idx += n) {
      const int t = idx / KP, i = idx - t * KP;
      ks[t * ldk + i] *= be[t] * Dm[t * kLdC];
    }
    for (int idx = threadIdx.x - kC; idx < kC * VP; idx += n) {
      const int t = idx / VP, j = idx - t * VP;
      vs[t * ldv + j] *= be[t];
    }
  }
  __syncthreads();
  for_each_tile(kC, KP, [&](int m0, int m1, int n0, int n1) {
    float acc[2][2] = {};
    mm_acc(acc, m0, m1, n0, n1, kC, [&](int t, int s) { return Tm[t * kLdC + s]; },
           [&](int s, int i) { return ks[s * ldk + i]; });
    tile_elems(m0, m1, n0, n1, [&](int t, int i, int r, int q) { wk[(row0 + t) * KP + i] = acc[r][q]; });
  });
  for_each_tile(kC, VP, [&](int m0, int m1, int n0, int n1) {
    float acc[2][2] = {};
    mm_acc(acc, m0, m1, n0, n1, kC, [&](int t, int s) { return Tm[t * kLdC + s]; },
           [&](int s, int j) { return vs[s * ldv + j]; });
    tile_elems(m0, m1, n0, n1, [&](int t, int j, int r, int q) { uv[(row0 + t) * VP + j] = acc[r][q]; });
  });
  if (tinv) store_tile(tinv + (bh * d.NC + c) * kC * kC, kC, Tm, kLdC, kC, kC);
}

// Per (V tile, b·h), sequential over chunks: stores each chunk-start state tile, turns Uv into U (in place) and
// carries the state. Grid: (VP/kBV)·BH blocks, block id = bh·(VP/kBV) + tile. s0 / s_final may be null.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gated_delta_state_fwd_kernel(const T* __restrict__ k, const float* __restrict__ alpha,
                                 const float* __restrict__ wk, float* __restrict__ u, const float* __restrict__ s0,
                                 float* __restrict__ states, float* __restrict__ s_final, Dims d) {
  extern __shared__ __align__(128) float smem[];
  const StateFwdSmem L = state_fwd_smem(d.KP);
  float* S = smem + L.S;
  float* wks = smem + L.wk;
  float* kd = smem + L.kd;
  float* us = smem + L.us;
  float* al = smem + L.al;
  float* dl = smem + L.dl;
  const int KP = d.KP, VP = d.VP, ldk = KP + 1;
  const int nvt = VP / kBV;
  const int64_t bh = blockIdx.x / nvt, b = bh / d.H, h = bh % d.H;
  const int v0 = static_cast<int>(blockIdx.x % nvt) * kBV;

  for (int idx = threadIdx.x; idx < kBV * KP; idx += blockDim.x) {
    const int j = idx / KP, i = idx - j * KP;
    const int64_t vj = v0 + j;
    S[j * ldk + i] = (s0 && vj < d.V && i < d.K) ? s0[(bh * d.V + vj) * d.K + i] : 0.f;
  }
  __syncthreads();
  for (int64_t c = 0; c < d.NC; ++c) {
    const int64_t t0 = c * kC, row0 = scratch_row(d, bh, c, 0);
    store_tile(states + state_base(d, bh, c) + static_cast<int64_t>(v0) * KP, KP, S, ldk, kBV, KP);
    load_tile(wks, ldk, wk + row0 * KP, KP, kC, KP);
    load_tokens(kd, ldk, k, d.K, d, b, h, t0, 0, KP);
    load_tile(us, kLdBV, u + row0 * VP + v0, VP, kC, kBV);
    load_gates(al, nullptr, alpha, nullptr, d, b, h, t0);
    __syncthreads();
    if (threadIdx.x == 0) suffix_decay(dl, al);
    __syncthreads();
    // U = Uv − Wk S₀ᵀ (written back over Uv), and the decayed keys kd_s = D_{C−1,s} k_s (disjoint buffers).
    for_each_tile(kC, kBV, [&](int m0, int m1, int n0, int n1) {
      float acc[2][2] = {};
      mm_acc(acc, m0, m1, n0, n1, KP, [&](int t, int i) { return wks[t * ldk + i]; },
             [&](int i, int j) { return S[j * ldk + i]; });
      tile_elems(m0, m1, n0, n1, [&](int t, int j, int r, int q) {
        const float x = us[t * kLdBV + j] - acc[r][q];
        us[t * kLdBV + j] = x;
        u[(row0 + t) * VP + v0 + j] = x;
      });
    });
    for (int idx = threadIdx.x; idx < kC * KP; idx += blockDim.x) {
      const int s = idx / KP, i = idx - s * KP;
      kd[s * ldk + i] *= dl[s];
    }
    __syncthreads();
    // S ← γ_{C−1} S + Uᵀ kd (each thread updates only the elements of its own tiles).
    const float gl = dl[kC];
    for_each_tile(kBV, KP, [&](int m0, int m1, int n0, int n1) {
      float acc[2][2] = {};
      mm_acc(acc, m0, m1, n0, n1, kC, [&](int j, int s) { return us[s * kLdBV + j]; },
             [&](int s, int i) { return kd[s * ldk + i]; });
      tile_elems(m0, m1, n0, n1,
                 [&](int j, int i, int r, int q) { S[j * ldk + i] = fmaf(gl, S[j * ldk + i], acc[r][q]); });
    });
    __syncthreads();
  }
  if (s_final) {
    for (int idx = threadIdx.x; idx < kBV * KP; idx += blockDim.x) {
      const int j = idx / KP, i = idx - j * KP;
      const int64_t vj = v0 + j;
      if (vj < d.V && i < d.K) s_final[(bh * d.V + vj) * d.K + i] = S[j * ldk + i];
    }
  }
}

// Per (chunk, b·h): O = diag(γ) Q S₀ᵀ + (QKᵀ ∘ D) U, V walked in kBV-wide tiles. Grid: NC·BH, id = bh·NC + chunk.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gated_delta_out_kernel(const T* __restrict__ q, const T* __restrict__ k, const float* __restrict__ alpha,
                           const float* __restrict__ u, const float* __restrict__ states, T* __restrict__ o, Dims d) {
  extern __shared__ __align__(128) float smem[];
  const OutSmem L = out_smem(d.KP);
  float* qs = smem + L.qs;
  float* ks = smem + L.ks;
  float* Dm = smem + L.Dm;
  float* P = smem + L.P;
  float* Ss = smem + L.Ss;
  float* us = smem + L.us;
  float* al = smem + L.al;
  const int KP = d.KP, VP = d.VP, ldk = KP + 1;
  const int64_t c = blockIdx.x % d.NC, bh = blockIdx.x / d.NC, b = bh / d.H, h = bh % d.H, t0 = c * kC;
  const int64_t row0 = scratch_row(d, bh, c, 0);

  load_tokens(qs, ldk, q, d.K, d, b, h, t0, 0, KP);
  load_tokens(ks, ldk, k, d.K, d, b, h, t0, 0, KP);
  load_gates(al, nullptr, alpha, nullptr, d, b, h, t0);
  __syncthreads();
  build_decay(Dm, al);
  __syncthreads();
  for_each_tile(kC, kC, [&](int m0, int m1, int n0, int n1) {
    float acc[2][2] = {};
    mm_acc(acc, m0, m1, n0, n1, KP, [&](int t, int i) { return qs[t * ldk + i]; },
           [&](int i, int s) { return ks[s * ldk + i]; });
    tile_elems(m0, m1, n0, n1,
               [&](int t, int s, int r, int qq) { P[t * kLdC + s] = acc[r][qq] * Dm[t * kLdC + s + 1]; });
  });
  for (int v0 = 0; v0 < VP; v0 += kBV) {
    __syncthreads();  // P complete (first tile); Ss / us free again (later tiles)
    load_tile(Ss, ldk, states + state_base(d, bh, c) + static_cast<int64_t>(v0) * KP, KP, kBV, KP);
    load_tile(us, kLdBV, u + row0 * VP + v0, VP, kC, kBV);
    __syncthreads();
    for_each_tile(kC, kBV, [&](int m0, int m1, int n0, int n1) {
      float acc[2][2] = {};
      mm_acc(acc, m0, m1, n0, n1, KP, [&](int t, int i) { return qs[t * ldk + i]; },
             [&](int i, int j) { return Ss[j * ldk + i]; });
      const float g0 = Dm[m0 * kLdC], g1 = Dm[m1 * kLdC];
      acc[0][0] *= g0;
      acc[0][1] *= g0;
      acc[1][0] *= g1;
      acc[1][1] *= g1;
      mm_acc(acc, m0, m1, n0, n1, kC, [&](int t, int s) { return P[t * kLdC + s]; },
             [&](int s, int j) { return us[s * kLdBV + j]; });
      tile_elems(m0, m1, n0, n1, [&](int t, int j, int r, int qq) {
        const int64_t tg = t0 + t, vj = v0 + j;
        if (tg < d.T && vj < d.V) o[tok_off(d, b, h, tg, d.V) + vj] = from_f<T>(acc[r][qq]);
      });
    });
  }
}

// Per (chunk, b·h): dU_intra = (QKᵀ ∘ D)ᵀ dO into du. Grid: NC·BH, id = bh·NC + chunk.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gated_delta_du_intra_kernel(const T* __restrict__ q, const T* __restrict__ k, const float* __restrict__ alpha,
                                const T* __restrict__ dout, float* __restrict__ du, Dims d) {
  extern __shared__ __align__(128) float smem[];
  const DuIntraSmem L = du_intra_smem(d.KP, d.VP);
  float* qs = smem + L.qs;
  float* ks = smem + L.ks;
  float* Dm = smem + L.Dm;
  float* P = smem + L.P;
  float* dos = smem + L.dos;
  float* al = smem + L.al;
  const int KP = d.KP, VP = d.VP, ldk = KP + 1, ldv = VP + 1;
  const int64_t c = blockIdx.x % d.NC, bh = blockIdx.x / d.NC, b = bh / d.H, h = bh % d.H, t0 = c * kC;
  const int64_t row0 = scratch_row(d, bh, c, 0);

  load_tokens(qs, ldk, q, d.K, d, b, h, t0, 0, KP);
  load_tokens(ks, ldk, k, d.K, d, b, h, t0, 0, KP);
  load_tokens(dos, ldv, dout, d.V, d, b, h, t0, 0, VP);
  load_gates(al, nullptr, alpha, nullptr, d, b, h, t0);
  __syncthreads();
  build_decay(Dm, al);
  __syncthreads();
  for_each_tile(kC, kC, [&](int m0, int m1, int n0, int n1) {
    float acc[2][2] = {};
    mm_acc(acc, m0, m1, n0, n1, KP, [&](int t, int i) { return qs[t * ldk + i]; },
           [&](int i, int s) { return ks[s * ldk + i]; });
    tile_elems(m0, m1, n0, n1,
               [&](int t, int s, int r, int qq) { P[t * kLdC + s] = acc[r][qq] * Dm[t * kLdC + s + 1]; });
  });
  __syncthreads();
  for_each_tile(kC, VP, [&](int m0, int m1, int n0, int n1) {
    float acc[2][2] = {};
    mm_acc(acc, m0, m1, n0, n1, kC, [&](int s, int t) { return P[t * kLdC + s]; },
           [&](int t, int j) { return dos[t * ldv + j]; });
    tile_elems(m0, m1, n0, n1, [&](int s, int j, int r, int qq) { du[(row0 + s) * VP + j] = acc[r][qq]; });
  });
}

// Per (V tile, b·h), chunks in reverse: dS (the gradient of the current chunk's end state) is stored to dstates,
// dU = dU_intra + diag(D_{C−1,·}) K dSᵀ completed in du, then dS ← γ_{C−1} dS + dOᵀ diag(γ) Q − dUᵀ Wk. At the end
// dS is the gradient of the initial state (written to ds0 when given). dfinal / ds0 may be null.
// Grid: (VP/kBV)·BH, id = bh·(VP/kBV) + tile.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gated_delta_state_bwd_kernel(const T* __restrict__ q, const T* __restrict__ k, const float* __restrict__ alpha,
                                 const T* __restrict__ dout, const float* __restrict__ wk, float* __restrict__ du,
                                 const float* __restrict__ dfinal, float* __restrict__ dstates,
                                 float* __restrict__ ds0, Dims d) {
  extern __shared__ __align__(128) float smem[];
  const StateBwdSmem L = state_bwd_smem(d.KP);
  float* dS = smem + L.dS;
  float* wks = smem + L.wk;
  float* ks = smem + L.ks;
  float* qg = smem + L.qg;
  float* dos = smem + L.dos;
  float* dus = smem + L.dus;
  float* al = smem + L.al;
  float* gam = smem + L.gam;
  float* dl = smem + L.dl;
  const int KP = d.KP, VP = d.VP, ldk = KP + 1;
  const int nvt = VP / kBV;
  const int64_t bh = blockIdx.x / nvt, b = bh / d.H, h = bh % d.H;
  const int v0 = static_cast<int>(blockIdx.x % nvt) * kBV;

  for (int idx = threadIdx.x; idx < kBV * KP; idx += blockDim.x) {
    const int j = idx / KP, i = idx - j * KP;
    const int64_t vj = v0 + j;
    dS[j * ldk + i] = (dfinal && vj < d.V && i < d.K) ? dfinal[(bh * d.V + vj) * d.K + i] : 0.f;
  }
  __syncthreads();
  for (int64_t c = d.NC - 1; c >= 0; --c) {
    const int64_t t0 = c * kC, row0 = scratch_row(d, bh, c, 0);
    store_tile(dstates + state_base(d, bh, c) + static_cast<int64_t>(v0) * KP, KP, dS, ldk, kBV, KP);
    load_tile(wks, ldk, wk + row0 * KP, KP, kC, KP);
    load_tokens(ks, ldk, k, d.K, d, b, h, t0, 0, KP);
    load_tokens(qg, ldk, q, d.K, d, b, h, t0, 0, KP);
    load_tokens(dos, kLdBV, dout, d.V, d, b, h, t0, v0, kBV);
    load_tile(dus, kLdBV, du + row0 * VP + v0, VP, kC, kBV);
    load_gates(al, nullptr, alpha, nullptr, d, b, h, t0);
    __syncthreads();
    if (threadIdx.x == 0) suffix_decay(dl, al);
    if (threadIdx.x == 32) {  // another warp: the prefix products γ_t
      float p = 1.f;
      for (int t = 0; t < kC; ++t) {
        p *= al[t];
        gam[t] = p;
      }
    }
    __syncthreads();
    // dU = dU_intra + D_{C−1,s} (k_s · dS_j), and qg_t = γ_t q_t (disjoint buffers).
    for_each_tile(kC, kBV, [&](int m0, int m1, int n0, int n1) {
      float acc[2][2] = {};
      mm_acc(acc, m0, m1, n0, n1, KP, [&](int s, int i) { return ks[s * ldk + i]; },
             [&](int i, int j) { return dS[j * ldk + i]; });
      tile_elems(m0, m1, n0, n1, [&](int s, int j, int r, int qq) {
        const float x = fmaf(dl[s], acc[r][qq], dus[s * kLdBV + j]);
        dus[s * kLdBV + j] = x;
        du[(row0 + s) * VP + v0 + j] = x;
      });
    });
    for (int idx = threadIdx.x; idx < kC * KP; idx += blockDim.x) {
      const int t = idx / KP, i = idx - t * KP;
      qg[t * ldk + i] *= gam[t];
    }
    __syncthreads();
    // dS ← γ_{C−1} dS + dOᵀ (γ∘Q) − dUᵀ Wk (each thread updates only the elements of its own tiles).
    const float gl = dl[kC];
    for_each_tile(kBV, KP, [&](int m0, int m1, int n0, int n1) {
      float pos[2][2] = {}, neg[2][2] = {};
      mm_acc(pos, m0, m1, n0, n1, kC, [&](int j, int t) { return dos[t * kLdBV + j]; },
             [&](int t, int i) { return qg[t * ldk + i]; });
      mm_acc(neg, m0, m1, n0, n1, kC, [&](int j, int t) { return dus[t * kLdBV + j]; },
             [&](int t, int i) { return wks[t * ldk + i]; });
      tile_elems(m0, m1, n0, n1, [&](int j, int i, int r, int qq) {
        dS[j * ldk + i] = fmaf(gl, dS[j * ldk + i], pos[r][qq] - neg[r][qq]);
      });
    });
    __syncthreads();
  }
  if (ds0) {
    for (int idx = threadIdx.x; idx < kBV * KP; idx += blockDim.x) {
      const int j = idx / KP, i = idx - j * KP;
      const int64_t vj = v0 + j;
      if (vj < d.V && i < d.K) ds0[(bh * d.V + vj) * d.K + i] = dS[j * ldk + i];
    }
  }
}

// Per (chunk, b·h): every input gradient of the chunk from its start state S₀, end-state gradient dS, U and dU
// (formulas in the header comment). dq, dk, dv in the input dtype; dalpha, dbeta fp32. Grid: NC·BH, id = bh·NC + c.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gated_delta_grads_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                             const float* __restrict__ alpha, const float* __restrict__ beta,
                             const T* __restrict__ dout, const float* __restrict__ u, const float* __restrict__ du,
                             const float* __restrict__ tinv, const float* __restrict__ states,
                             const float* __restrict__ dstates, T* __restrict__ dq, T* __restrict__ dk,
                             T* __restrict__ dv, float* __restrict__ dalpha, float* __restrict__ dbeta, Dims d) {
  extern __shared__ __align__(128) float smem[];
  const GradsSmem L = grads_smem(d.KP);
  float* qs = smem + L.qs;
  float* ks = smem + L.ks;
  float* X = smem + L.X;
  float* Y = smem + L.Y;
  float* Z = smem + L.Z;
  float* Dm = smem + L.Dm;
  float* Tm = smem + L.Tm;
  float* G1 = smem + L.G1;
  float* G2 = smem + L.G2;
  float* QK = smem + L.QK;  // q_t·k_s; later (G1 ∘ D)
  float* KK = smem + L.KK;  // k_t·k_s; later M + Mᵀ
  float* dD = smem + L.dD;  // dD_{t,s} at [t][s + 1]; later the Horner sums Y_{t,r} at [t][r]
  float* dot = smem + L.dot;
  float* ut = smem + L.ut;
  float* dut = smem + L.dut;
  float* dwt = smem + L.dwt;
  float* s0t = smem + L.s0t;
  float* dst = smem + L.dst;
  float* al = smem + L.al;
  float* be = smem + L.be;
  float* dbv = smem + L.dbv;
  float* qx = smem + L.qx;
  float* ky = smem + L.ky;
  float* kz = smem + L.kz;
  float* red = smem + L.red;
  const int KP = d.KP, VP = d.VP, ldk = KP + 1;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t c = blockIdx.x % d.NC, bh = blockIdx.x / d.NC, b = bh / d.H, h = bh % d.H, t0 = c * kC;
  const int64_t row0 = scratch_row(d, bh, c, 0);
  const float* S0g = states + state_base(d, bh, c);
  const float* dSg = dstates + state_base(d, bh, c);
  const float* Tg = tinv + (bh * d.NC + c) * kC * kC;

  // Phase 0: the chunk's q, k, gates and T; zero the accumulators.
  load_tokens(qs, ldk, q, d.K, d, b, h, t0, 0, KP);
  load_tokens(ks, ldk, k, d.K, d, b, h, t0, 0, KP);
  load_tile(Tm, kLdC, Tg, kC, kC, kC);
  load_gates(al, be, alpha, beta, d, b, h, t0);
  for (int idx = threadIdx.x; idx < kC * ldk; idx += blockDim.x) {
    X[idx] = 0.f;
    Y[idx] = 0.f;
    Z[idx] = 0.f;
  }
  for (int idx = threadIdx.x; idx < kC * kLdC; idx += blockDim.x) {
    G1[idx] = 0.f;
    G2[idx] = 0.f;
  }
  for (int t = threadIdx.x; t < kC; t += blockDim.x) dbv[t] = 0.f;
  __syncthreads();
  // Phase 1: D; q_t·k_s and k_t·k_s.
  build_decay(Dm, al);
  for_each_tile(kC, kC, [&](int m0, int m1, int n0, int n1) {
    float aq[2][2] = {}, ak[2][2] = {};
    mm_acc(aq, m0, m1, n0, n1, KP, [&](int t, int i) { return qs[t * ldk + i]; },
           [&](int i, int s) { return ks[s * ldk + i]; });
    mm_acc(ak, m0, m1, n0, n1, KP, [&](int t, int i) { return ks[t * ldk + i]; },
           [&](int i, int s) { return ks[s * ldk + i]; });
    tile_elems(m0, m1, n0, n1, [&](int t, int s, int r, int qq) {
      QK[t * kLdC + s] = aq[r][qq];
      KK[t * kLdC + s] = ak[r][qq];
    });
  });
  // Phase 2: the value dim in kBV-wide tiles.
  float sdot = 0.f;  // this thread's part of <dS, S₀>
  for (int v0 = 0; v0 < VP; v0 += kBV) {
    __syncthreads();  // phase 1 done (first tile); the tile buffers are free again (later tiles)
    load_tokens(dot, kLdBV, dout, d.V, d, b, h, t0, v0, kBV);
    load_tile(ut, kLdBV, u + row0 * VP + v0, VP, kC, kBV);
    load_tile(dut, kLdBV, du + row0 * VP + v0, VP, kC, kBV);
    for (int idx = threadIdx.x; idx < kBV * KP; idx += blockDim.x) {
      const int j = idx / KP, i = idx - j * KP;
      const int64_t g = static_cast<int64_t>(v0 + j) * KP + i;
      const float s0v = S0g[g], dsv = dSg[g];
      s0t[j * ldk + i] = s0v;
      dst[j * ldk + i] = dsv;
      sdot = fmaf(s0v, dsv, sdot);
    }
    __syncthreads();
    // dW = Tᵀ dU;  dv = β dW.
    for_each_tile(kC, kBV, [&](int m0, int m1, int n0, int n1) {
      float acc[2][2] = {};
      mm_acc(acc, m0, m1, n0, n1, kC, [&](int t, int tp) { return Tm[tp * kLdC + t]; },
             [&](int tp, int j) { return dut[tp * kLdBV + j]; });
      tile_elems(m0, m1, n0, n1, [&](int t, int j, int r, int qq) {
        dwt[t * kLdBV + j] = acc[r][qq];
        const int64_t tg = t0 + t, vj = v0 + j;
        if (tg < d.T && vj < d.V) dv[tok_off(d, b, h, tg, d.V) + vj] = from_f<T>(be[t] * acc[r][qq]);
      });
    });
    __syncthreads();
    // Contractions over this V tile, each into its own accumulator (one writer per element).
    for_each_tile(kC, kC, [&](int m0, int m1, int n0, int n1) {
      float g1[2][2] = {}, g2[2][2] = {};
      mm_acc(g1, m0, m1, n0, n1, kBV, [&](int t, int j) { return dot[t * kLdBV + j]; },
             [&](int j, int s) { return ut[s * kLdBV + j]; });
      mm_acc(g2, m0, m1, n0, n1, kBV, [&](int t, int j) { return dwt[t * kLdBV + j]; },
             [&](int j, int s) { return ut[s * kLdBV + j]; });
      tile_elems(m0, m1, n0, n1, [&](int t, int s, int r, int qq) {
        G1[t * kLdC + s] += g1[r][qq];
        G2[t * kLdC + s] += g2[r][qq];
      });
    });
    for_each_tile(kC, KP, [&](int m0, int m1, int n0, int n1) {
      float ax[2][2] = {}, ay[2][2] = {}, az[2][2] = {};
      mm_acc(ax, m0, m1, n0, n1, kBV, [&](int t, int j) { return dot[t * kLdBV + j]; },
             [&](int j, int i) { return s0t[j * ldk + i]; });
      mm_acc(ay, m0, m1, n0, n1, kBV, [&](int t, int j) { return dwt[t * kLdBV + j]; },
             [&](int j, int i) { return s0t[j * ldk + i]; });
      mm_acc(az, m0, m1, n0, n1, kBV, [&](int t, int j) { return ut[t * kLdBV + j]; },
             [&](int j, int i) { return dst[j * ldk + i]; });
      tile_elems(m0, m1, n0, n1, [&](int t, int i, int r, int qq) {
        X[t * ldk + i] += ax[r][qq];
        Y[t * ldk + i] += ay[r][qq];
        Z[t * ldk + i] += az[r][qq];
      });
    });
    // dbv_t += dW_t · v_t over the tile: warp per token, lane per value column (reads dwt only).
    for (int t = warp; t < kC; t += kWarps) {
      const int64_t tg = t0 + t, vj = v0 + lane;
      const float vv = (tg < d.T && vj < d.V) ? to_f(v[tok_off(d, b, h, tg, d.V) + vj]) : 0.f;
      const float x = warp_sum(dwt[t * kLdBV + lane] * vv);
      if (lane == 0) dbv[t] += x;
    }
  }
  // Phase 3 (block_sum starts with a barrier: the accumulators are complete): <dS, S₀> and the per-token dots.
  const float sd = block_sum(sdot, red);
  for (int t = warp; t < kC; t += kWarps) {
    float a = 0.f, bb = 0.f, cc = 0.f;
    for (int i = lane; i < KP; i += 32) {
      const float kv = ks[t * ldk + i];
      a = fmaf(qs[t * ldk + i], X[t * ldk + i], a);
      bb = fmaf(kv, Y[t * ldk + i], bb);
      cc = fmaf(kv, Z[t * ldk + i], cc);
    }
    a = warp_sum(a);
    bb = warp_sum(bb);
    cc = warp_sum(cc);
    if (lane == 0) {
      qx[t] = a;
      ky[t] = bb;
      kz[t] = cc;
    }
  }
  __syncthreads();
  // Phase 4: dD and dβ.
  for (int idx = threadIdx.x; idx < kC * kLdC; idx += blockDim.x) {
    const int t = idx / kLdC, col = idx - t * kLdC, s = col - 1;
    float x;
    if (col == 0) {
      x = qx[t] - be[t] * ky[t] + (t == kC - 1 ? sd : 0.f);
    } else {
      x = s <= t ? G1[t * kLdC + s] * QK[t * kLdC + s] : 0.f;
      if (s < t) x -= G2[t * kLdC + s] * be[t] * KK[t * kLdC + s];
      if (t == kC - 1) x += kz[s];
    }
    dD[idx] = x;
  }
  if (threadIdx.x < kC) {
    const int t = threadIdx.x;
    float x = dbv[t] - Dm[t * kLdC] * ky[t];
    for (int s = 0; s < t; ++s) x -= G2[t * kLdC + s] * Dm[t * kLdC + s + 1] * KK[t * kLdC + s];
    if (t0 + t < d.T) dbeta[gate_off(d, b, h, t0 + t)] = x;
  }
  __syncthreads();
  // Phase 5: Horner sums in place over dD (thread t owns row t); G1∘D and M + Mᵀ into QK and KK.
  if (threadIdx.x < kC) {
    const int t = threadIdx.x;
    float y = dD[t * kLdC];  // Y_{t,0} = dD_{t,−1}
    for (int r = 1; r < kC; ++r) {
      y = fmaf(al[r - 1], y, dD[t * kLdC + r]);  // Y_{t,r} = dD_{t,r−1} + α_{r−1} Y_{t,r−1}; dD_{t,r−1} at [t][r]
      dD[t * kLdC + r] = y;
    }
  }
  for (int idx = threadIdx.x; idx < kC * kC; idx += blockDim.x) {
    const int t = idx / kC, s = idx - t * kC;
    const float gd = G1[t * kLdC + s] * Dm[t * kLdC + s + 1];
    const float mts = s < t ? -G2[t * kLdC + s] * be[t] * Dm[t * kLdC + s + 1] : 0.f;
    const float mst = t < s ? -G2[s * kLdC + t] * be[s] * Dm[s * kLdC + t + 1] : 0.f;
    QK[t * kLdC + s] = gd;
    KK[t * kLdC + s] = mts + mst;
  }
  __syncthreads();
  // Phase 6: dα, dq, dk.
  if (threadIdx.x < kC) {
    const int r = threadIdx.x;
    float x = 0.f;
    for (int t = r; t < kC; ++t) x = fmaf(Dm[t * kLdC + r + 1], dD[t * kLdC + r], x);
    if (t0 + r < d.T) dalpha[gate_off(d, b, h, t0 + r)] = x;
  }
  for_each_tile(kC, KP, [&](int m0, int m1, int n0, int n1) {
    float aq[2][2] = {}, ak[2][2] = {};
    mm_acc(aq, m0, m1, n0, n1, kC, [&](int t, int s) { return QK[t * kLdC + s]; },
           [&](int s, int i) { return ks[s * ldk + i]; });
    mm_acc(ak, m0, m1, n0, n1, kC, [&](int s, int t) { return QK[t * kLdC + s]; },
           [&](int t, int i) { return qs[t * ldk + i]; });
    mm_acc(ak, m0, m1, n0, n1, kC, [&](int s, int uu) { return KK[s * kLdC + uu]; },
           [&](int uu, int i) { return ks[uu * ldk + i]; });
    tile_elems(m0, m1, n0, n1, [&](int t, int i, int r, int qq) {
      const int64_t tg = t0 + t;
      if (tg < d.T && i < d.K) {
        const float g = Dm[t * kLdC];
        const float xq = fmaf(g, X[t * ldk + i], aq[r][qq]);
        const float xk = ak[r][qq] + Dm[(kC - 1) * kLdC + t + 1] * Z[t * ldk + i] - be[t] * g * Y[t * ldk + i];
        dq[tok_off(d, b, h, tg, d.K) + i] = from_f<T>(xq);
        dk[tok_off(d, b, h, tg, d.K) + i] = from_f<T>(xk);
      }
    });
  });
}

// Four consecutive elements as floats, one 16-byte (float32) or 8-byte (bfloat16) load (p aligned to that).
__device__ __forceinline__ void load4(float* out, const float* p) {
  const float4 x = *reinterpret_cast<const float4*>(p);
  out[0] = x.x;
  out[1] = x.y;
  out[2] = x.z;
  out[3] = x.w;
}
__device__ __forceinline__ void load4(float* out, const BFloat16* p) {
  const uint2 x = *reinterpret_cast<const uint2*>(p);
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&x.x));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&x.y));
  out[0] = a.x;
  out[1] = a.y;
  out[2] = b.x;
  out[3] = b.y;
}

// Elements 64m + 4l + c (m < M, c < 4) of a row of K ≤ 64·M values into out[4m + c] (zeros past K or when !ok):
// 4-wide vector loads when vec.
template <int M, typename T>
__device__ __forceinline__ void load_row(float (&out)[4 * M], const T* row, int l, int64_t K, bool ok, bool vec) {
#pragma unroll
  for (int m = 0; m < M; ++m) {
    const int64_t i0 = 64 * m + 4 * l;
    if (vec && ok && i0 < K) {
      load4(out + 4 * m, row + i0);
    } else {
#pragma unroll
      for (int c = 0; c < 4; ++c) out[4 * m + c] = ok && i0 + c < K ? to_f(row[i0 + c]) : 0.f;
    }
  }
}

// One token (s0 may be null: zero state). 16 lanes (a half warp) per state row, kStepRowsPerGroup rows per half
// warp: the rows (K ≤ 128 floats each) are read into registers first, all of them before any arithmetic, 4
// consecutive elements per lane and group of 64 (16-byte loads and stores when K % 4 == 0); S_j·k and the new row's
// ·q are sums over the 16 lanes (4 xor shuffles). q and k are read once per thread. A block covers kStepRows rows of
// one head; group i takes rows i, i + kStepGroups, … of them. M = 1 for K ≤ 64, 2 for K ≤ 128: each lane holds 4·M
// elements of a row. Measured at H = 12, K = V = 64 (bench/NOTES.md): 1 row per half warp and M = 1 reach 79-86% of
// the copy bandwidth from B = 1 to 64; 4 rows (80 registers, two waves of blocks at B = 64) reached 60-76%.
constexpr int kStepLanes = 16, kStepGroups = kThreads / kStepLanes, kStepRowsPerGroup = 1;
constexpr int kStepRows = kStepGroups * kStepRowsPerGroup;
template <typename T, int M>
__global__ void __launch_bounds__(kThreads)
    gated_delta_step_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                            const float* __restrict__ alpha, const float* __restrict__ beta,
                            const float* __restrict__ s0, T* __restrict__ o, float* __restrict__ s_new, int64_t K,
                            int64_t V, bool vec) {
  constexpr int R = kStepRowsPerGroup;
  const int64_t nb = (V + kStepRows - 1) / kStepRows;
  const int64_t bh = blockIdx.x / nb;
  const int64_t j0 = (blockIdx.x % nb) * kStepRows + threadIdx.x / kStepLanes;
  const int l = threadIdx.x % kStepLanes;
  const float a = alpha[bh], be = beta[bh];
  constexpr int E = 4 * M;
  float kr[E], qr[E], sr[R][E], vr[R];
  load_row<M>(kr, k + bh * K, l, K, true, vec);
  load_row<M>(qr, q + bh * K, l, K, true, vec);
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t j = j0 + r * kStepGroups;
    const bool ok = j < V;
    load_row<M>(sr[r], s0 ? s0 + (bh * V + j) * K : s0, l, K, ok && s0 != nullptr, vec);
    vr[r] = ok ? to_f(v[bh * V + j]) : 0.f;
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t j = j0 + r * kStepGroups;
    float sk = 0.f;
#pragma unroll
    for (int e = 0; e < E; ++e) sk = fmaf(sr[r][e], kr[e], sk);
#pragma unroll
    for (int off = kStepLanes / 2; off > 0; off >>= 1) sk += __shfl_xor_sync(0xffffffffu, sk, off);
    const float uj = be * (vr[r] - a * sk);  // u_j = β (v_j − α (S k)_j)
    float oj = 0.f;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      sr[r][e] = fmaf(a, sr[r][e], uj * kr[e]);  // S_j ← α S_j + u_j k
      oj = fmaf(sr[r][e], qr[e], oj);
    }
#pragma unroll
    for (int off = kStepLanes / 2; off > 0; off >>= 1) oj += __shfl_xor_sync(0xffffffffu, oj, off);
    if (j >= V) continue;  // (after the shuffles, which every lane takes part in)
    float* Nj = s_new + (bh * V + j) * K;
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const int64_t i0 = 64 * m + 4 * l;
      if (vec && i0 < K) {
        *reinterpret_cast<float4*>(Nj + i0) =
            make_float4(sr[r][4 * m], sr[r][4 * m + 1], sr[r][4 * m + 2], sr[r][4 * m + 3]);
      } else {
#pragma unroll
        for (int c = 0; c < 4; ++c)
          if (i0 + c < K) Nj[i0 + c] = sr[r][4 * m + c];
      }
    }
    if (l == 0) o[bh * V + j] = from_f<T>(oj);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Launch helpers

int round32(int64_t x) { return static_cast<int>((x + 31) / 32 * 32); }

void check_head_dims(const char* op, int64_t K, int64_t V) {
  HYDRA_CHECK(K >= 1 && K <= kMaxHeadDim,
              "{}: key head dim K = {} (last dim of 'q' and 'k') is not supported by the CUDA kernel (supported: 1 to "
              "{})",
              op, K, kMaxHeadDim);
  HYDRA_CHECK(V >= 1 && V <= kMaxHeadDim,
              "{}: value head dim V = {} (last dim of 'v') is not supported by the CUDA kernel (supported: 1 to {})",
              op, V, kMaxHeadDim);
}

Dims make_dims(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V) {
  Dims d{};
  d.B = B;
  d.T = T;
  d.H = H;
  d.K = K;
  d.V = V;
  d.BH = B * H;
  d.NC = (T + kC - 1) / kC;
  d.KP = round32(K);
  d.VP = round32(V);
  return d;
}

Tensor as_f32(const Tensor& t) { return !t.defined() || t.dtype() == DType::Float32 ? t : t.to(DType::Float32); }

template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}
template <typename T>
T* mut_ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// Launches `kernel` with `blocks` blocks of kThreads and `floats` floats of dynamic shared memory on `stream`.
template <typename... P, typename... A>
void launch(const char* op, const char* name, void (*kernel)(P...), int64_t blocks, int floats, int device,
            cudaStream_t stream, A... args) {
  cuda::launch_kernel(op, name, kernel, blocks, kThreads, static_cast<std::size_t>(floats) * sizeof(float), device,
                      stream, args...);
}

// The dtype switch of the step entry point (float32 or bfloat16 q, k, v): the dispatch has already refused
// everything else.
template <typename F>
void dispatch_qkv(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::Float32: f.template operator()<float>(); return;
    case DType::BFloat16: f.template operator()<BFloat16>(); return;
    default: break;
  }
  HYDRA_CHECK(false, "{}: dtype {} not supported on CUDA (supported: float32, bfloat16)", op, dtype_name(t));
}

// The chunkwise entry points run their own kernels for float32 q, k, v only (bfloat16 has gone to
// gated_delta_mma.cu before this check; the dispatch has already refused every other dtype).
void check_chunk_dtype(DType t, const char* op) {
  HYDRA_CHECK(t == DType::Float32, "{}: dtype {} not supported on CUDA (supported: float32, bfloat16)", op,
              dtype_name(t));
}

// Scratch of the chunk stages (all fp32): Wk [BH, NC·C, KP], Uv → U [BH, NC·C, VP], chunk-start states
// [BH, NC, VP, KP].
struct FwdScratch {
  Tensor wk, u, states;
};
FwdScratch make_fwd_scratch(const Dims& d, const Device& dev) {
  return {empty({d.BH, d.NC * kC, d.KP}, DType::Float32, dev), empty({d.BH, d.NC * kC, d.VP}, DType::Float32, dev),
          empty({d.BH, d.NC, d.VP, d.KP}, DType::Float32, dev)};
}

// The two state stages shared by forward and backward: prep (Wk, Uv, optionally T) and the state pass.
void run_prep_and_states(const char* op, const Tensor& k, const Tensor& v, const Tensor& a32, const Tensor& b32,
                         const Tensor& s32, const FwdScratch& sc, const Tensor& tinv, const Tensor& s_final,
                         const Dims& d, int dev, cudaStream_t s) {
  launch(op, "gated_delta_prep_kernel", gated_delta_prep_kernel<float>, d.NC * d.BH, prep_smem(d.KP, d.VP).total,
         dev, s, k.data<float>(), v.data<float>(), a32.data<float>(), b32.data<float>(), sc.wk.data<float>(),
         sc.u.data<float>(), mut_ptr_or_null<float>(tinv), d);
  launch(op, "gated_delta_state_fwd_kernel", gated_delta_state_fwd_kernel<float>, (d.VP / kBV) * d.BH,
         state_fwd_smem(d.KP).total, dev, s, k.data<float>(), a32.data<float>(), sc.wk.data<float>(),
         sc.u.data<float>(), ptr_or_null<float>(s32), sc.states.data<float>(), mut_ptr_or_null<float>(s_final), d);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Entry points

GatedDeltaOutput gated_delta_forward_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& alpha,
                                          const Tensor& beta, const Tensor& initial_state) {
  const char* op = "gated_delta_forward";
  check_head_dims(op, q.size(3), v.size(3));
  const Device dev = q.device();
  cuda::DeviceGuard guard(dev.index);
  if (q.dtype() == DType::BFloat16)  // tensor-core kernels with chunk 64 (gated_delta_mma.cu)
    return gated_delta_forward_mma(q, k, v, as_f32(alpha), as_f32(beta), as_f32(initial_state));
  check_chunk_dtype(q.dtype(), op);
  const Dims d = make_dims(q.size(0), q.size(1), q.size(2), q.size(3), v.size(3));
  GatedDeltaOutput out{empty({d.B, d.T, d.H, d.V}, q.dtype(), dev), empty({d.B, d.H, d.V, d.K}, DType::Float32, dev)};
  if (d.BH == 0) return out;
  const Tensor a32 = as_f32(alpha), b32 = as_f32(beta), s32 = as_f32(initial_state);
  const FwdScratch sc = make_fwd_scratch(d, dev);
  cudaStream_t s = cuda::stream_of(q);
  run_prep_and_states(op, k, v, a32, b32, s32, sc, Tensor(), out.final_state, d, dev.index, s);
  launch(op, "gated_delta_out_kernel", gated_delta_out_kernel<float>, d.NC * d.BH, out_smem(d.KP).total, dev.index, s,
         q.data<float>(), k.data<float>(), a32.data<float>(), sc.u.data<float>(), sc.states.data<float>(),
         out.o.data<float>(), d);
  return out;
}

GatedDeltaGrads gated_delta_backward_cuda(const Tensor& do_, const Tensor& dfinal_state, const Tensor& q,
                                          const Tensor& k, const Tensor& v, const Tensor& alpha, const Tensor& beta,
                                          const Tensor& initial_state) {
  const char* op = "gated_delta_backward";
  check_head_dims(op, q.size(3), v.size(3));
  const Device dev = q.device();
  cuda::DeviceGuard guard(dev.index);
  if (q.dtype() == DType::BFloat16) {  // tensor-core kernels with chunk 64 (gated_delta_mma.cu)
    GatedDeltaGrads g = gated_delta_backward_mma(do_, as_f32(dfinal_state), q, k, v, as_f32(alpha), as_f32(beta),
                                                 as_f32(initial_state));
    if (alpha.dtype() != DType::Float32) g.dalpha = g.dalpha.to(alpha.dtype());
    if (beta.dtype() != DType::Float32) g.dbeta = g.dbeta.to(beta.dtype());
    if (g.dinitial_state.defined() && initial_state.dtype() != DType::Float32)
      g.dinitial_state = g.dinitial_state.to(initial_state.dtype());
    return g;
  }
  check_chunk_dtype(q.dtype(), op);
  const Dims d = make_dims(q.size(0), q.size(1), q.size(2), q.size(3), v.size(3));
  GatedDeltaGrads g{empty(q.shape(), q.dtype(), dev),
                    empty(k.shape(), q.dtype(), dev),
                    empty(v.shape(), q.dtype(), dev),
                    Tensor(),
                    Tensor(),
                    Tensor()};
  Tensor da32 = empty(alpha.shape(), DType::Float32, dev), db32 = empty(beta.shape(), DType::Float32, dev);
  Tensor ds32 = initial_state.defined() ? empty(initial_state.shape(), DType::Float32, dev) : Tensor();
  if (d.BH > 0) {
    const Tensor a32 = as_f32(alpha), b32 = as_f32(beta), s32 = as_f32(initial_state), gf32 = as_f32(dfinal_state);
    const FwdScratch sc = make_fwd_scratch(d, dev);
    const Tensor tinv = empty({d.BH, d.NC, kC, kC}, DType::Float32, dev);
    const Tensor dstates = empty({d.BH, d.NC, d.VP, d.KP}, DType::Float32, dev);
    const Tensor du = empty({d.BH, d.NC * kC, d.VP}, DType::Float32, dev);
    cudaStream_t s = cuda::stream_of(q);
    // Recompute Wk, U, T and the chunk-start states, then walk the chunks in reverse for the state gradients.
    run_prep_and_states(op, k, v, a32, b32, s32, sc, tinv, Tensor(), d, dev.index, s);
    launch(op, "gated_delta_du_intra_kernel", gated_delta_du_intra_kernel<float>, d.NC * d.BH,
           du_intra_smem(d.KP, d.VP).total, dev.index, s, q.data<float>(), k.data<float>(), a32.data<float>(),
           do_.data<float>(), du.data<float>(), d);
    launch(op, "gated_delta_state_bwd_kernel", gated_delta_state_bwd_kernel<float>, (d.VP / kBV) * d.BH,
           state_bwd_smem(d.KP).total, dev.index, s, q.data<float>(), k.data<float>(), a32.data<float>(),
           do_.data<float>(), sc.wk.data<float>(), du.data<float>(), ptr_or_null<float>(gf32), dstates.data<float>(),
           mut_ptr_or_null<float>(ds32), d);
    launch(op, "gated_delta_grads_kernel", gated_delta_grads_kernel<float>, d.NC * d.BH, grads_smem(d.KP).total,
           dev.index, s, q.data<float>(), k.data<float>(), v.data<float>(), a32.data<float>(), b32.data<float>(),
           do_.data<float>(), sc.u.data<float>(), du.data<float>(), tinv.data<float>(), sc.states.data<float>(),
           dstates.data<float>(), g.dq.data<float>(), g.dk.data<float>(), g.dv.data<float>(), da32.data<float>(),
           db32.data<float>(), d);
  }
  // Gradients in each input's own dtype.
  g.dalpha = alpha.dtype() == DType::Float32 ? da32 : da32.to(alpha.dtype());
  g.dbeta = beta.dtype() == DType::Float32 ? db32 : db32.to(beta.dtype());
  if (ds32.defined())
    g.dinitial_state = initial_state.dtype() == DType::Float32 ? ds32 : ds32.to(initial_state.dtype());
  return g;
}

GatedDeltaOutput gated_delta_step_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& alpha,
                                       const Tensor& beta, const Tensor& state) {
  const char* op = "gated_delta_step";
  const int64_t B = q.size(0), H = q.size(1), K = q.size(2), V = v.size(2);
  check_head_dims(op, K, V);
  const Device dev = q.device();
  cuda::DeviceGuard guard(dev.index);
  GatedDeltaOutput out{empty({B, H, V}, q.dtype(), dev), empty({B, H, V, K}, DType::Float32, dev)};
  const int64_t BH = B * H;
  if (BH == 0) return out;
  const Tensor a32 = as_f32(alpha), b32 = as_f32(beta), s32 = as_f32(state);
  cudaStream_t s = cuda::stream_of(q);
  // 16-byte state rows: K % 4 == 0 and 16-byte aligned bases (fresh allocations are).
  auto aligned = [](const Tensor& t, int bytes) { return reinterpret_cast<uintptr_t>(t.raw_data()) % bytes == 0; };
  const int qk_bytes = 4 * static_cast<int>(dtype_size(q.dtype()));  // 4 elements of q, k per load
  const bool vec = K % 4 == 0 && (!s32.defined() || aligned(s32, 16)) && aligned(out.final_state, 16) &&
                   aligned(q, qk_bytes) && aligned(k, qk_bytes);
  const int64_t blocks = BH * ((V + kStepRows - 1) / kStepRows);
  dispatch_qkv(q.dtype(), op, [&]<typename T>() {
    auto go = [&](auto kernel) {
      launch(op, "gated_delta_step_kernel", kernel, blocks, 0, dev.index, s, q.data<T>(), k.data<T>(), v.data<T>(),
             a32.data<float>(), b32.data<float>(), ptr_or_null<float>(s32), out.o.data<T>(),
             out.final_state.data<float>(), K, V, vec);
    };
    if (K <= 64) {
      go(gated_delta_step_kernel<T, 1>);
    } else {
      go(gated_delta_step_kernel<T, 2>);
    }
  });
  return out;
}

}  // namespace hydra
