// Windowed causal attention on CUDA: the flash-style forward and the two-kernel backward (math, shapes and the GPU
// contract in window_attn.h; the CPU kernels of window_attn_cpu.cpp follow the same tiling). All inputs arrive
// contiguous; outputs are allocated by the dispatch in window_attn_cpu.cpp.
//
// Notation: query t (0..T−1) sits at key index P + t (P = S − T cache rows) and sees the keys
//   [lo(t), hi(t)),  lo(t) = max(0, P + t − W + 1),  hi(t) = P + t + 1     (W clamped to S).
//   forward:  s_tm = scale·q_t·k_m,  lse_t = log Σ_m exp(s_tm),  o_t = Σ_m exp(s_tm − lse_t) v_m
//   backward: p_tm = exp(s_tm − lse_t),  dp_tm = do_t·v_m,  D_t = do_t·o_t,  ds_tm = p_tm (dp_tm − D_t)
//             dq_t = scale Σ_m ds_tm k_m,   dk_m = scale Σ_t ds_tm q_t,   dv_m = Σ_t p_tm do_t
//
// Dtypes: float32 or bfloat16 (q, k, v, o, do and the gradients); every product is accumulated in float32 and
// the softmax statistics (running max, running sum, lse, D) are float32. lse is float32 whatever the dtype.
// Two implementations of the same tiling, one per dtype:
//   * bfloat16: namespace mma (further down): register-resident tensor-core kernels (mma.sync m16n8k16 through
//     tensor/cuda/mma.cuh; scores, probabilities and accumulators stay in registers; cp.async double buffering);
//     its own comment block describes it.
//   * float32: the shared-memory kernels described in the rest of this comment (true fp32 FFMA).
//
// Compile-time variants: the head dim is padded to D ∈ {32, 64, 128} (D ≥ max(K, V); one switch,
// dispatch_head_dim): the tiles hold D columns, the columns ≥ K (≥ V) are zero-filled on load, so the padded products
// are exact and the padded output columns are never written. Tile BT = 64 rows (queries and keys alike) for D ≤ 64,
// 32 for D = 128 (to keep shared memory ≤ ~135 KB); NT = 4·BT threads (8 or 4 warps) per block.
//
// Every block works on tiles in shared memory, in stages separated by __syncthreads (no stage reads what another
// thread of the same stage writes):
//   * loads: thread i copies elements i, i + NT, .. of a BT×D tile (row-major, consecutive threads on consecutive
//     columns: coalesced), zero outside the valid rows/columns;
//   * block GEMMs C[M×N] (+)= A[M×KD]·B[KD×N] with A, B in shared memory and C float32 in shared memory
//     (block_gemm): SIMT FFMA in true fp32 (no TF32), thread u computes the 4×4 micro-tiles u, u + NT, .. whose rows
//     are mt + (M/4)·i and columns nt + (N/4)·j;
//   * row statistics (online softmax): warp w handles rows w, w + NW, .., lanes over the columns, xor-butterfly
//     reductions (fixed order); elementwise stages: thread i handles elements i, i + NT, ...
//   The probabilities fed to the second GEMM stay float32 (written over the score tile in place). (The bf16 kernels
//   round them to bf16 as MMA operands, flash-attention practice; the sums l and D stay fp32.)
//
// Kernels:
//   window_attn_fwd_kernel: one block per (b, h, query tile [t0, t1)). Q tile loaded once; the keys some query of
//     the tile sees, [lo(t0), hi(t1 − 1)) (≤ W + BT − 1 keys), are walked in key tiles of BT rows (key tiles outside
//     the window are never touched: O(T·W) work). Per key tile: S = Q·Kᵀ; online softmax per row (invisible keys get
//     p = 0, running max m, sum l, factor α = exp(m_old − m_new)); O ← α·O; O += P·V. Then o = O/l, lse = m + log l.
//   window_attn_bwd_dot_kernel: D_t = do_t·o_t (float32 [B, H, T] scratch), one warp per (b, t, h).
//   window_attn_bwd_dq_kernel: one block per (b, h, query tile), the forward's key walk: S = Q·Kᵀ, dP = dO·Vᵀ,
//     dS = P ⊙ (dP − D) (P recomputed from lse), dQ += dS·K; dq = scale·dQ.
//   window_attn_bwd_dkdv_kernel: one block per (b, h, key tile [j0, j1) of all S rows): the queries that see a key
//     of the tile, t ∈ [max(0, j0 − P), min(T, j1 − P + W − 1)), in query tiles of BT: S = Q·Kᵀ, dP = dO·Vᵀ, P, dS
//     as above; dV += Pᵀ·dO, dK += dSᵀ·Q; dk = scale·dK, dv = dV (zero for the tiles no query sees).
//   The backward is deterministic: no atomics, every output element is written by exactly one thread of one block,
//   with a fixed summation order; the two kernels recompute P (about 1.4× the FLOPs of one fused pass).
//
// FLOPs (n = Σ_t visible keys of t ≤ T·W): forward 2·B·H·n·(K + V), backward 2·B·H·n·(4K + 3V) (both kernels);
// the kernels compute whole tiles, so the executed work is ≈ 2·B·H·T·(W + 2·BT)·(2D) forward and 3.5× that backward.
// Bytes (e = sizeof(T)): forward reads q, writes o once and lse (4 B·H·T); k, v are read ⌈(W + BT − 1)/BT⌉ times per
// query tile (≈ B·S·H·(K + V)·e·(1 + W/BT)); backward: dq pass like the forward plus do and D, dk/dv pass reads
// q, do, lse, D ≈ (1 + W/BT) times and k, v once; dq, dk, dv written once.
//
// Reference: tests/hydra/test_cuda_window_attn.cpp compares o, lse, dq, dk, dv with the float64 dense reference
// window_attn_ref (gradients from the autograd engine) on the float64 upcast of the same inputs.
#include <cuda_bf16.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "hydra/mixers/window_attn/window_attn_cuda.h"
#include "tensor/check.h"
#include "tensor/cuda/common.cuh"
#include "tensor/cuda/mma.cuh"

namespace hydra {
namespace {

// ---------------------------------------------------------------------------------------------------------
// device helpers

// The float32 (SIMT) kernels below: tiles and accumulators in float shared memory. (bfloat16 runs the register-
// resident tensor-core kernels of namespace mma further down.)
template <typename T>
using smem_t = float;

// The tile configuration of head-dim variant D (the padded head dim: columns of the Q, K, V, dO tiles).
template <int D>
struct TileCfg {
  static constexpr int BT = D <= 64 ? 64 : 32;  // rows of a query tile and of a key tile
  static constexpr int NT = 4 * BT;             // threads per block
  static constexpr int NW = NT / 32;            // warps per block
};

// Leading dims (elements) of the shared-memory tiles: odd strides (conflict-free column walks).
template <typename T, int D>
struct Ld {
  static constexpr int BT = TileCfg<D>::BT;
  static constexpr int E = D + 1;   // Q, K, V, dO tiles
  static constexpr int S = BT + 1;  // BT×BT tiles (scores, dP; the probabilities and dS overwrite them in place)
  static constexpr int O = D + 1;   // BT×D accumulators (O, dQ, dK, dV)
  static constexpr int P = S;
};

using cuda::Carver;

__device__ __forceinline__ void put(float* p, float v) { *p = v; }
__device__ __forceinline__ void put_elem(float* p, float x) { *p = x; }
__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(BFloat16 x) { return BFloat16::to_float(x.bits); }
template <typename T>
__device__ __forceinline__ T from_f(float v) {
  if constexpr (std::is_same_v<T, BFloat16>) {
    return BFloat16(v);
  } else {
    return v;
  }
}

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
__device__ __forceinline__ int64_t max64(int64_t a, int64_t b) { return a < b ? b : a; }

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// dst[r][c] (leading dim ld) = src[(r0 + r)·stride + c] for r0 + r < r1 and c < width, else 0; r < rows, c < D.
template <int D, int NT, typename T, typename E>
__device__ __forceinline__ void load_tile(E* dst, int ld, const T* __restrict__ src, int64_t stride, int64_t r0,
                                          int64_t r1, int rows, int64_t width) {
  for (int i = threadIdx.x; i < rows * D; i += NT) {
    const int r = i / D, c = i - r * D;
    const int64_t g = r0 + r;
    if (g < r1 && c < width) {
      put_elem(dst + r * ld + c, src[g * stride + c]);
    } else {
      put(dst + r * ld + c, 0.0f);
    }
  }
}

// C[M×N] = (accumulate ? C : 0) + A·B, all in shared memory, C float32 row-major with leading dim ldc;
//   A(m, k) = TA ? A[k·lda + m] : A[m·lda + k],   B(k, n) = TB ? B[n·ldb + k] : B[k·ldb + n].
// Every thread of the block calls it (no barrier inside: the caller separates stages): SIMT FFMA with 4×4 register
// micro-tiles.
template <typename E, int M, int N, int KD, bool TA, bool TB, int NT>
__device__ __forceinline__ void block_gemm(const E* A, int lda, const E* B, int ldb, float* C, int ldc,
                                           bool accumulate) {
  static_assert(M % 16 == 0 && N % 16 == 0 && KD % 16 == 0, "block_gemm: tile dims must be multiples of 16");
  {
    constexpr int RM = 4, RN = 4, TM = M / RM, TN = N / RN;
    for (int u = threadIdx.x; u < TM * TN; u += NT) {
      const int mt = u / TN, nt = u - mt * TN;
      float acc[RM][RN];
#pragma unroll
      for (int i = 0; i < RM; ++i)
#pragma unroll
        for (int j = 0; j < RN; ++j) acc[i][j] = accumulate ? C[(mt + TM * i) * ldc + nt + TN * j] : 0.0f;
#pragma unroll 4
      for (int k = 0; k < KD; ++k) {
        float a[RM], b[RN];
#pragma unroll
        for (int i = 0; i < RM; ++i) a[i] = TA ? A[k * lda + mt + TM * i] : A[(mt + TM * i) * lda + k];
#pragma unroll
        for (int j = 0; j < RN; ++j) b[j] = TB ? B[(nt + TN * j) * ldb + k] : B[k * ldb + nt + TN * j];
#pragma unroll
        for (int i = 0; i < RM; ++i)
#pragma unroll
          for (int j = 0; j < RN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
#pragma unroll
      for (int i = 0; i < RM; ++i)
#pragma unroll
        for (int j = 0; j < RN; ++j) C[(mt + TM * i) * ldc + nt + TN * j] = acc[i][j];
    }
  }
}

// The sizes of one call, W clamped to S.
struct Dims {
  int64_t B, T, S, H, K, V, P, W;
};

// Element offset of row 0 of head (b, h) in a [B, R, H, C] tensor; rows are H·C apart.
__device__ __forceinline__ int64_t head_base(int64_t b, int64_t h, int64_t R, int64_t H, int64_t C) {
  return (b * R * H + h) * C;
}

// ---------------------------------------------------------------------------------------------------------
// shared-memory layouts (the same code measures them on the host: Carver with base 0)

template <typename T, int D>
struct FwdSmem {
  using E = smem_t<T>;
  using L = Ld<T, D>;
  static constexpr int BT = TileCfg<D>::BT;
  E *q, *k, *v, *p;
  float *s, *o, *m, *l, *alpha;
  size_t bytes;
  template <typename B>  // an integer (sizing on the host) or the shared array (see Carver)
  __host__ __device__ explicit FwdSmem(B base) {
    Carver<B> c{base};
    q = c.template take<E>(BT * L::E);
    k = c.template take<E>(BT * L::E);
    v = c.template take<E>(BT * L::E);
    s = c.template take<float>(BT * L::S);
    p = s;  // the probabilities overwrite the scores in place
    o = c.template take<float>(BT * L::O);
    m = c.template take<float>(BT);
    l = c.template take<float>(BT);
    alpha = c.template take<float>(BT);
    bytes = c.off;
  }
};

template <typename T, int D>
struct BwdSmem {  // both backward kernels: x = Q (dq kernel) or K (dk/dv kernel) tiles etc., see the kernels
  using E = smem_t<T>;
  using L = Ld<T, D>;
  static constexpr int BT = TileCfg<D>::BT;
  E *q, *dout, *k, *v, *p, *ds;
  float *s, *dp, *acc1, *acc2, *lse, *dd;
  size_t bytes;
  // two_acc: the dk/dv kernel (two accumulators and a probability tile); the dq kernel needs one and no P tile.
  template <typename B>
  __host__ __device__ BwdSmem(B base, bool two_acc) {
    Carver<B> c{base};
    q = c.template take<E>(BT * L::E);
    dout = c.template take<E>(BT * L::E);
    k = c.template take<E>(BT * L::E);
    v = c.template take<E>(BT * L::E);
    s = c.template take<float>(BT * L::S);
    dp = c.template take<float>(BT * L::S);
    p = s;  // in place
    ds = dp;
    acc1 = c.template take<float>(BT * L::O);
    acc2 = two_acc ? c.template take<float>(BT * L::O) : nullptr;
    lse = c.template take<float>(BT);
    dd = c.template take<float>(BT);
    bytes = c.off;
  }
};

// ---------------------------------------------------------------------------------------------------------
// kernels

template <typename T>
struct FwdArgs {
  const T* q;
  const T* k;
  const T* v;
  T* o;
  float* lse;
  Dims d;
  int64_t n_qt;  // query tiles per (b, h)
  float scale;
};

template <typename T, int D>
__global__ void __launch_bounds__(TileCfg<D>::NT) window_attn_fwd_kernel(const FwdArgs<T> a) {
  using E = smem_t<T>;
  using L = Ld<T, D>;
  constexpr int BT = TileCfg<D>::BT, NT = TileCfg<D>::NT, NW = TileCfg<D>::NW;
  extern __shared__ __align__(128) unsigned char window_attn_smem[];
  const FwdSmem<T, D> sm(window_attn_smem);
  const Dims& d = a.d;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t bh = blockIdx.x / a.n_qt, qt = blockIdx.x - bh * a.n_qt;
  const int64_t b = bh / d.H, h = bh - b * d.H;
  const int64_t t0 = qt * BT, t1 = min64(d.T, t0 + BT);
  const T* qb = a.q + head_base(b, h, d.T, d.H, d.K);
  const T* kb = a.k + head_base(b, h, d.S, d.H, d.K);
  const T* vb = a.v + head_base(b, h, d.S, d.H, d.V);

  load_tile<D, NT>(sm.q, L::E, qb, d.H * d.K, t0, t1, BT, d.K);
  for (int i = threadIdx.x; i < BT * L::O; i += NT) sm.o[i] = 0.0f;
  for (int r = threadIdx.x; r < BT; r += NT) {
    sm.m[r] = -INFINITY;
    sm.l[r] = 0.0f;
  }
  __syncthreads();

  const int64_t jb = max64(0, d.P + t0 - d.W + 1), je = d.P + t1;  // [lo(t0), hi(t1 − 1))
  for (int64_t j0 = jb; j0 < je; j0 += BT) {
    const int64_t j1 = min64(je, j0 + BT);
    load_tile<D, NT>(sm.k, L::E, kb, d.H * d.K, j0, j1, BT, d.K);
    load_tile<D, NT>(sm.v, L::E, vb, d.H * d.V, j0, j1, BT, d.V);
    __syncthreads();
    block_gemm<E, BT, BT, D, false, true, NT>(sm.q, L::E, sm.k, L::E, sm.s, L::S, false);  // S = Q·Kᵀ
    __syncthreads();
    // Online softmax, one warp per row: p = exp(scale·s − m_new) for the visible keys, 0 for the others.
    for (int r = warp; r < BT; r += NW) {
      const int64_t t = t0 + r;
      const bool row_ok = t < t1;
      const int64_t lo = d.P + t - d.W + 1, hi = d.P + t + 1;
      float mx = -INFINITY;
      for (int c = lane; c < BT; c += 32) {
        const int64_t j = j0 + c;
        if (row_ok && j >= lo && j < hi && j < j1) mx = fmaxf(mx, a.scale * sm.s[r * L::S + c]);
      }
      mx = warp_max(mx);
      const float m_old = sm.m[r], m_new = fmaxf(m_old, mx);
      float sum = 0.0f;
      for (int c = lane; c < BT; c += 32) {
        const int64_t j = j0 + c;
        float p = 0.0f;
        if (row_ok && j >= lo && j < hi && j < j1) p = expf(a.scale * sm.s[r * L::S + c] - m_new);
        sum += p;
        put(sm.p + r * L::P + c, p);
      }
      sum = warp_sum(sum);
      __syncwarp();  // every lane has read m[r] before lane 0 overwrites it
      if (lane == 0) {
        // m_new = −∞: nothing visible yet (O and l are 0); m_old = −∞ < m_new: α = exp(−∞) = 0.
        const float alpha = m_new == -INFINITY ? 1.0f : expf(m_old - m_new);
        sm.alpha[r] = alpha;
        sm.l[r] = sm.l[r] * alpha + sum;
        sm.m[r] = m_new;
      }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < BT * D; i += NT) {
      const int r = i / D, c = i - r * D;
      sm.o[r * L::O + c] *= sm.alpha[r];
    }
    __syncthreads();
    block_gemm<E, BT, D, BT, false, false, NT>(sm.p, L::P, sm.v, L::E, sm.o, L::O, true);  // O += P·V
    __syncthreads();
  }

  T* ob = a.o + head_base(b, h, d.T, d.H, d.V);
  for (int i = threadIdx.x; i < BT * D; i += NT) {
    const int r = i / D, c = i - r * D;
    if (t0 + r < t1 && c < d.V) ob[(t0 + r) * d.H * d.V + c] = from_f<T>(sm.o[r * L::O + c] / sm.l[r]);
  }
  for (int r = threadIdx.x; r < BT; r += NT)
    if (t0 + r < t1) a.lse[bh * d.T + t0 + r] = sm.m[r] + logf(sm.l[r]);
}

// D_t = do_t·o_t into dd [B, H, T] (float32): one warp per row (b, t, h) of the [B, T, H, V] layout.
template <typename T>
__global__ void window_attn_bwd_dot_kernel(const T* __restrict__ dout, const T* __restrict__ o,
                                           float* __restrict__ dd, int64_t B, int64_t T_, int64_t H, int64_t V) {
  const int lane = threadIdx.x & 31;
  const int64_t rows = B * T_ * H, warps = int64_t(gridDim.x) * (blockDim.x >> 5);
  for (int64_t row = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); row < rows; row += warps) {
    float acc = 0.0f;
    for (int64_t c = lane; c < V; c += 32) acc += to_f(dout[row * V + c]) * to_f(o[row * V + c]);
    acc = warp_sum(acc);
    if (lane == 0) {
      const int64_t h = row % H, t = (row / H) % T_, b = row / (H * T_);
      dd[(b * H + h) * T_ + t] = acc;
    }
  }
}

template <typename T>
struct BwdArgs {
  const T* dout;
  const T* q;
  const T* k;
  const T* v;
  const float* lse;
  const float* dd;
  T* dq;
  T* dk;
  T* dv;
  Dims d;
  int64_t n_tiles;  // query tiles (dq kernel) or key tiles (dk/dv kernel) per (b, h)
  float scale;
};

// dS = P ⊙ (dP − D) for one BT×BT tile (query rows t = t_first + r, keys j = j0 + c, rows ≥ t_end invalid), from the
// scores S (s) and dP (dp); P written to p (unless p == nullptr), dS to ds. The invisible entries get 0.
template <typename T, int D, typename E>
__device__ __forceinline__ void probs_and_ds(const float* s, const float* dp, E* p, E* ds, const float* lse,
                                             const float* dd, const Dims& d, int64_t t_first, int64_t t_end,
                                             int64_t j0, int64_t j_end, float scale) {
  using L = Ld<T, D>;
  constexpr int BT = TileCfg<D>::BT, NT = TileCfg<D>::NT;
  for (int i = threadIdx.x; i < BT * BT; i += NT) {
    const int r = i / BT, c = i - r * BT;
    const int64_t t = t_first + r, j = j0 + c;
    const bool vis = t < t_end && j < j_end && j > d.P + t - d.W && j <= d.P + t;
    float pv = 0.0f, dsv = 0.0f;
    if (vis) {
      pv = expf(scale * s[r * L::S + c] - lse[r]);
      dsv = pv * (dp[r * L::S + c] - dd[r]);
    }
    if (p != nullptr) put(p + r * L::P + c, pv);  // float32: p aliases s (same element, read above)
    put(ds + r * L::P + c, dsv);                   // float32: ds aliases dp
  }
}

template <typename T, int D>
__global__ void __launch_bounds__(TileCfg<D>::NT) window_attn_bwd_dq_kernel(const BwdArgs<T> a) {
  using E = smem_t<T>;
  using L = Ld<T, D>;
  constexpr int BT = TileCfg<D>::BT, NT = TileCfg<D>::NT;
  extern __shared__ __align__(128) unsigned char window_attn_smem[];
  const BwdSmem<T, D> sm(window_attn_smem, false);
  const Dims& d = a.d;
  const int64_t bh = blockIdx.x / a.n_tiles, qt = blockIdx.x - bh * a.n_tiles;
  const int64_t b = bh / d.H, h = bh - b * d.H;
  const int64_t t0 = qt * BT, t1 = min64(d.T, t0 + BT);
  const T* kb = a.k + head_base(b, h, d.S, d.H, d.K);
  const T* vb = a.v + head_base(b, h, d.S, d.H, d.V);

  load_tile<D, NT>(sm.q, L::E, a.q + head_base(b, h, d.T, d.H, d.K), d.H * d.K, t0, t1, BT, d.K);
  load_tile<D, NT>(sm.dout, L::E, a.dout + head_base(b, h, d.T, d.H, d.V), d.H * d.V, t0, t1, BT, d.V);
  for (int r = threadIdx.x; r < BT; r += NT) {
    const bool ok = t0 + r < t1;
    sm.lse[r] = ok ? a.lse[bh * d.T + t0 + r] : 0.0f;
    sm.dd[r] = ok ? a.dd[bh * d.T + t0 + r] : 0.0f;
  }
  for (int i = threadIdx.x; i < BT * L::O; i += NT) sm.acc1[i] = 0.0f;
  __syncthreads();

  const int64_t jb = max64(0, d.P + t0 - d.W + 1), je = d.P + t1;
  for (int64_t j0 = jb; j0 < je; j0 += BT) {
    const int64_t j1 = min64(je, j0 + BT);
    load_tile<D, NT>(sm.k, L::E, kb, d.H * d.K, j0, j1, BT, d.K);
    load_tile<D, NT>(sm.v, L::E, vb, d.H * d.V, j0, j1, BT, d.V);
    __syncthreads();
    block_gemm<E, BT, BT, D, false, true, NT>(sm.q, L::E, sm.k, L::E, sm.s, L::S, false);      // S = Q·Kᵀ
    block_gemm<E, BT, BT, D, false, true, NT>(sm.dout, L::E, sm.v, L::E, sm.dp, L::S, false);  // dP = dO·Vᵀ
    __syncthreads();
    probs_and_ds<T, D>(sm.s, sm.dp, static_cast<E*>(nullptr), sm.ds, sm.lse, sm.dd, d, t0, t1, j0, j1, a.scale);
    __syncthreads();
    block_gemm<E, BT, D, BT, false, false, NT>(sm.ds, L::P, sm.k, L::E, sm.acc1, L::O, true);  // dQ += dS·K
    __syncthreads();
  }

  T* dqb = a.dq + head_base(b, h, d.T, d.H, d.K);
  for (int i = threadIdx.x; i < BT * D; i += NT) {
    const int r = i / D, c = i - r * D;
    if (t0 + r < t1 && c < d.K) dqb[(t0 + r) * d.H * d.K + c] = from_f<T>(a.scale * sm.acc1[r * L::O + c]);
  }
}

template <typename T, int D>
__global__ void __launch_bounds__(TileCfg<D>::NT) window_attn_bwd_dkdv_kernel(const BwdArgs<T> a) {
  using E = smem_t<T>;
  using L = Ld<T, D>;
  constexpr int BT = TileCfg<D>::BT, NT = TileCfg<D>::NT;
  extern __shared__ __align__(128) unsigned char window_attn_smem[];
  const BwdSmem<T, D> sm(window_attn_smem, true);
  float* dk_acc = sm.acc1;
  float* dv_acc = sm.acc2;
  const Dims& d = a.d;
  const int64_t bh = blockIdx.x / a.n_tiles, kt = blockIdx.x - bh * a.n_tiles;
  const int64_t b = bh / d.H, h = bh - b * d.H;
  const int64_t j0 = kt * BT, j1 = min64(d.S, j0 + BT);
  const T* qb = a.q + head_base(b, h, d.T, d.H, d.K);
  const T* gb = a.dout + head_base(b, h, d.T, d.H, d.V);

  load_tile<D, NT>(sm.k, L::E, a.k + head_base(b, h, d.S, d.H, d.K), d.H * d.K, j0, j1, BT, d.K);
  load_tile<D, NT>(sm.v, L::E, a.v + head_base(b, h, d.S, d.H, d.V), d.H * d.V, j0, j1, BT, d.V);
  for (int i = threadIdx.x; i < BT * L::O; i += NT) {
    dk_acc[i] = 0.0f;
    dv_acc[i] = 0.0f;
  }
  __syncthreads();

  // Queries that see some key of [j0, j1): P + t ≥ j0 and P + t − W + 1 ≤ j1 − 1.
  const int64_t tlo = max64(0, j0 - d.P), thi = min64(d.T, j1 - d.P + d.W - 1);
  for (int64_t i0 = tlo; i0 < thi; i0 += BT) {
    const int64_t i1 = min64(thi, i0 + BT);
    load_tile<D, NT>(sm.q, L::E, qb, d.H * d.K, i0, i1, BT, d.K);
    load_tile<D, NT>(sm.dout, L::E, gb, d.H * d.V, i0, i1, BT, d.V);
    for (int r = threadIdx.x; r < BT; r += NT) {
      const bool ok = i0 + r < i1;
      sm.lse[r] = ok ? a.lse[bh * d.T + i0 + r] : 0.0f;
      sm.dd[r] = ok ? a.dd[bh * d.T + i0 + r] : 0.0f;
    }
    __syncthreads();
    block_gemm<E, BT, BT, D, false, true, NT>(sm.q, L::E, sm.k, L::E, sm.s, L::S, false);      // S = Q·Kᵀ
    block_gemm<E, BT, BT, D, false, true, NT>(sm.dout, L::E, sm.v, L::E, sm.dp, L::S, false);  // dP = dO·Vᵀ
    __syncthreads();
    probs_and_ds<T, D>(sm.s, sm.dp, sm.p, sm.ds, sm.lse, sm.dd, d, i0, i1, j0, j1, a.scale);
    __syncthreads();
    block_gemm<E, BT, D, BT, true, false, NT>(sm.p, L::P, sm.dout, L::E, dv_acc, L::O, true);  // dV += Pᵀ·dO
    block_gemm<E, BT, D, BT, true, false, NT>(sm.ds, L::P, sm.q, L::E, dk_acc, L::O, true);    // dK += dSᵀ·Q
    __syncthreads();
  }

  T* dkb = a.dk + head_base(b, h, d.S, d.H, d.K);
  T* dvb = a.dv + head_base(b, h, d.S, d.H, d.V);
  for (int i = threadIdx.x; i < BT * D; i += NT) {
    const int r = i / D, c = i - r * D;
    if (j0 + r >= j1) continue;
    if (c < d.K) dkb[(j0 + r) * d.H * d.K + c] = from_f<T>(a.scale * dk_acc[r * L::O + c]);
    if (c < d.V) dvb[(j0 + r) * d.H * d.V + c] = from_f<T>(dv_acc[r * L::O + c]);
  }
}

// ---------------------------------------------------------------------------------------------------------
// bfloat16: register-resident tensor-core kernels (mma.sync m16n8k16, tensor/cuda/mma.cuh)
//
// Tiles of kMmaRows = 64 rows (queries or keys), 4 warps per block, warp w owning rows 16w..16w+15 of the block's
// own tile: every product is warp-local (the warp's 16 rows × the other side's 64-row tile), the score and
// probability tiles never leave registers (the accumulators of Q·Kᵀ become, rounded to bf16, the A operand of P·V),
// and the only shared-memory traffic is the operand tiles (row stride D + 8: conflict-free ldmatrix). The walked
// tiles (key tiles of the forward and dq kernels, query tiles of the dk/dv kernel) are double-buffered: cp.async
// copies tile i + 1 while tile i is multiplied. Key tiles start at multiples of 64 (absolute key index) and only
// tiles crossing a window edge, the diagonal or the end of the sequence evaluate the visibility mask. The softmax
// runs in the log2 domain (scores × scale·log2 e, exp2); lse is stored in natural log.
namespace mma {

using bf16 = __nv_bfloat16;
constexpr int kWarps = 4, kThreads = 32 * kWarps;
constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

// Tile shapes of one kernel: MT m-tiles of 16 rows per warp (the block's own tile has BR = 64·MT rows: queries for
// the forward and dq kernels, keys for the dk/dv kernel) and BC rows per walked tile (keys, resp. queries). Two
// m-tiles per warp use every B fragment loaded from shared memory twice (one ldmatrix.x4 per 4 MMAs): with one,
// the ldmatrix traffic alone would exceed the shared-memory bandwidth at the tensor cores' rate.
template <int D_, int MT_, int BC_>
struct Cfg {
  static constexpr int D = D_, MT = MT_, BC = BC_;
  static constexpr int BR = 16 * MT * kWarps;
  static constexpr int LD = D + 8;  // bf16 elements per shared row: 2·D + 16 bytes, a multiple of 16, not of 128
  static constexpr int NC = BC / 8;  // n-tiles of a score row
  static constexpr int ND = D / 8;   // n-tiles of an output row
};

// acc[m][n-tile] = X_w · Yᵀ for the warp's 16·MT rows of x (row-major, D columns) and the BC rows of y.
template <class C>
__device__ __forceinline__ void scores(float (&acc)[C::MT][C::NC][4], const bf16* x, const bf16* y) {
#pragma unroll
  for (int m = 0; m < C::MT; ++m)
#pragma unroll
    for (int j = 0; j < C::NC; ++j) acc[m][j][0] = acc[m][j][1] = acc[m][j][2] = acc[m][j][3] = 0.f;
#pragma unroll
  for (int ks = 0; ks < C::D / 16; ++ks) {
    uint32_t a[C::MT][4];
#pragma unroll
    for (int m = 0; m < C::MT; ++m) cuda::load_a(a[m], x + 16 * m * C::LD, C::LD, ks * 16);
#pragma unroll
    for (int nn = 0; nn < C::BC / 16; ++nn) {
      uint32_t b[4];
      cuda::load_b_nk(b, y, C::LD, nn * 16, ks * 16);
#pragma unroll
      for (int m = 0; m < C::MT; ++m) {
        cuda::mma_16816(acc[m][2 * nn], a[m], b[0], b[1]);
        cuda::mma_16816(acc[m][2 * nn + 1], a[m], b[2], b[3]);
      }
    }
  }
}

// out[m][n-tile of D columns] += P · Y for P the warp's (16·MT) × BC probabilities (fp32 accumulators, rounded to
// bf16) and y the BC × D tile (row-major, rows = the k index).
template <class C>
__device__ __forceinline__ void accumulate_pv(float (&out)[C::MT][C::ND][4], const float (&p)[C::MT][C::NC][4],
                                              const bf16* y) {
#pragma unroll
  for (int ks = 0; ks < C::BC / 16; ++ks) {
    uint32_t a[C::MT][4];
#pragma unroll
    for (int m = 0; m < C::MT; ++m) cuda::pack_a_from_c(a[m], p[m][2 * ks], p[m][2 * ks + 1]);
#pragma unroll
    for (int dn = 0; dn < C::D / 16; ++dn) {
      uint32_t b[4];
      cuda::load_b_kn(b, y, C::LD, dn * 16, ks * 16);
#pragma unroll
      for (int m = 0; m < C::MT; ++m) {
        cuda::mma_16816(out[m][2 * dn], a[m], b[0], b[1]);
        cuda::mma_16816(out[m][2 * dn + 1], a[m], b[2], b[3]);
      }
    }
  }
}

// Writes the warp's accumulator rows (× mul): accumulator row 16m + g + 8·half is row row0 + that of a head,
// columns < width, rows < r_end.
template <class C>
__device__ __forceinline__ void store_rows(BFloat16* dst, int64_t stride, int64_t row0, int64_t r_end, int64_t width,
                                           const float (&acc)[C::MT][C::ND][4], float mul) {
  const int lane = threadIdx.x & 31, g = lane >> 2, c2 = (lane & 3) * 2;
#pragma unroll
  for (int m = 0; m < C::MT; ++m)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t r = row0 + 16 * m + g + 8 * half;
      if (r >= r_end) continue;
      bf16* out = reinterpret_cast<bf16*>(dst) + r * stride;
#pragma unroll
      for (int j = 0; j < C::ND; ++j) {
        const int col = 8 * j + c2;
        const float x0 = mul * acc[m][j][2 * half], x1 = mul * acc[m][j][2 * half + 1];
        if (col + 1 < width && (reinterpret_cast<uintptr_t>(out + col) & 3) == 0) {
          *reinterpret_cast<__nv_bfloat162*>(out + col) = __floats2bfloat162_rn(x0, x1);
        } else if (col + 1 < width) {  // odd row stride: the pair is not 4-byte aligned
          out[col] = __float2bfloat16_rn(x0);
          out[col + 1] = __float2bfloat16_rn(x1);
        } else if (col < width) {
          out[col] = __float2bfloat16_rn(x0);
        }
      }
    }
}

struct Args {
  const bf16* q;
  const bf16* k;
  const bf16* v;
  const bf16* dout;
  const float* lse_in;
  const float* dd;
  bf16* o;
  float* lse;
  BFloat16* dq;
  BFloat16* dk;
  BFloat16* dv;
  Dims d;
  int64_t n_tiles;
  float scale;
  bool vec;  // K % 8 == 0 and V % 8 == 0 and 16-byte aligned bases: 16-byte copies
};

// 2^x in one MUFU instruction (flush-to-zero; 2^−∞ = 0). exp2f without -ftz adds range fix-ups on the integer pipe.
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// The visible key offsets of one query row against a key tile starting at j0: offset r (key j0 + r) is visible iff
// lo < r ≤ hi. pt = the row's own key index (P + t); int32 bounds clamped to [−1, n].
struct RowWindow {
  int lo, hi;
  __device__ __forceinline__ RowWindow(int64_t pt, int64_t W, int64_t j0, int n, bool row_ok) {
    lo = static_cast<int>(min64(max64(pt - W - j0, -1), n));
    hi = row_ok ? static_cast<int>(min64(max64(pt - j0, -1), n)) : -1;
  }
  __device__ __forceinline__ bool sees(int r) const { return r > lo && r <= hi; }
};

// Every (row t, key m) pair of a query-row range [t_lo, t_lo + nr) × key range [j_lo, j_lo + nc) visible (and the
// rows < t_end): such tiles skip the mask.
__device__ __forceinline__ bool all_visible(const Dims& d, int64_t t_lo, int nr, int64_t t_end, int64_t j_lo, int nc) {
  return j_lo + nc - 1 <= d.P + t_lo && j_lo >= d.P + t_lo + nr - d.W && t_lo + nr <= t_end;
}

// Forward: one block per (b, h, query tile of BR), key tiles of BC from a multiple of BC.
template <class C>
__global__ void __launch_bounds__(kThreads) fwd_kernel(const Args a) {
  constexpr int MT = C::MT, BC = C::BC, BR = C::BR, NC = C::NC, ND = C::ND;
  constexpr int QT = BR * C::LD, KT = BC * C::LD;  // tile sizes (elements)
  extern __shared__ __align__(128) unsigned char window_attn_mma_smem[];
  bf16* sq = reinterpret_cast<bf16*>(window_attn_mma_smem);
  bf16* sk = sq + QT;       // [2] tiles
  bf16* sv = sk + 2 * KT;   // [2] tiles
  const Dims& d = a.d;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c2 = (lane & 3) * 2;
  const int64_t bh = blockIdx.x / a.n_tiles, qt = blockIdx.x - bh * a.n_tiles;
  const int64_t b = bh / d.H, h = bh - b * d.H;
  const int64_t t0 = qt * BR, t1 = min64(d.T, t0 + BR);
  const int64_t qs = d.H * d.K, vs = d.H * d.V;
  const bf16* kb = a.k + head_base(b, h, d.S, d.H, d.K);
  const bf16* vb = a.v + head_base(b, h, d.S, d.H, d.V);
  const int64_t tw = t0 + 16 * MT * warp;  // the warp's first row

  const int64_t jlo = max64(0, d.P + t0 - d.W + 1), jhi = d.P + t1;
  const int64_t jstart = jlo / BC * BC;
  const int n_kt = static_cast<int>((jhi - jstart + BC - 1) / BC);

  cuda::load_rows<C::D, BR, kThreads>(sq, a.q + head_base(b, h, d.T, d.H, d.K), qs, t0, t1, d.K, a.vec);
  cuda::load_rows<C::D, BC, kThreads>(sk, kb, qs, jstart, jhi, d.K, a.vec);
  cuda::load_rows<C::D, BC, kThreads>(sv, vb, vs, jstart, jhi, d.V, a.vec);
  cuda::cp_async_commit();

  const float sl2 = a.scale * kLog2e;
  float o[MT][ND][4] = {};
  float m[MT][2], l[MT][2];
#pragma unroll
  for (int i = 0; i < MT; ++i) m[i][0] = m[i][1] = -INFINITY, l[i][0] = l[i][1] = 0.f;
  const bf16* qw = sq + 16 * MT * warp * C::LD;

  for (int it = 0; it < n_kt; ++it) {
    const int64_t j0 = jstart + int64_t(it) * BC;
    if (it + 1 < n_kt) {
      const int nb = (it + 1) & 1;
      cuda::load_rows<C::D, BC, kThreads>(sk + nb * KT, kb, qs, j0 + BC, jhi, d.K, a.vec);
      cuda::load_rows<C::D, BC, kThreads>(sv + nb * KT, vb, vs, j0 + BC, jhi, d.V, a.vec);
      cuda::cp_async_commit();
      cuda::cp_async_wait<1>();
    } else {
      cuda::cp_async_wait<0>();
    }
    __syncthreads();
    const bf16* kt = sk + (it & 1) * KT;
    const bf16* vt = sv + (it & 1) * KT;
    // Key tiles that no row of this warp sees (window edges of a wide query tile) are skipped by the warp.
    const bool none = j0 > d.P + tw + 16 * MT - 1 || j0 + BC - 1 <= d.P + tw - d.W;
    if (!none) {
      float s[MT][NC][4];
      scores<C>(s, qw, kt);
      const bool full = all_visible(d, tw, 16 * MT, d.T, j0, BC);
#pragma unroll
      for (int mi = 0; mi < MT; ++mi)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const RowWindow win(d.P + tw + 16 * mi + g + 8 * half, d.W, j0, BC, true);
          float mx = -INFINITY;
#pragma unroll
          for (int j = 0; j < NC; ++j)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              float x = s[mi][j][2 * half + e] * sl2;
              if (!full && !win.sees(8 * j + c2 + e)) x = -INFINITY;
              s[mi][j][2 * half + e] = x;
              mx = fmaxf(mx, x);
            }
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
          const float m_new = fmaxf(m[mi][half], mx);
          const float m_use = m_new == -INFINITY ? 0.f : m_new;  // nothing visible yet: O = l = 0 stay
          const float alpha = ex2(m[mi][half] - m_use);
          m[mi][half] = m_new;
          float sum = 0.f;
#pragma unroll
          for (int j = 0; j < NC; ++j)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const float p = ex2(s[mi][j][2 * half + e] - m_use);
              s[mi][j][2 * half + e] = p;
              sum += p;
            }
          l[mi][half] = l[mi][half] * alpha + sum;
#pragma unroll
          for (int j = 0; j < ND; ++j) {
            o[mi][j][2 * half] *= alpha;
            o[mi][j][2 * half + 1] *= alpha;
          }
        }
      accumulate_pv<C>(o, s, vt);
    }
    __syncthreads();  // the buffer of this tile is refilled by the next iteration's copy
  }

#pragma unroll
  for (int mi = 0; mi < MT; ++mi)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float& lr = l[mi][half];
      lr += __shfl_xor_sync(0xffffffffu, lr, 1);
      lr += __shfl_xor_sync(0xffffffffu, lr, 2);
      const float inv = 1.f / lr;
#pragma unroll
      for (int j = 0; j < ND; ++j) {
        o[mi][j][2 * half] *= inv;
        o[mi][j][2 * half + 1] *= inv;
      }
      const int64_t t = tw + 16 * mi + g + 8 * half;
      if ((lane & 3) == 0 && t < t1) a.lse[bh * d.T + t] = (m[mi][half] + log2f(lr)) * kLn2;
    }
  store_rows<C>(reinterpret_cast<BFloat16*>(a.o) + head_base(b, h, d.T, d.H, d.V), vs, tw, t1, d.V, o, 1.f);
}

// dq: one block per (b, h, query tile of BR), the forward's key walk; dS = P ⊙ (dP − D), dQ += dS·K.
template <class C>
__global__ void __launch_bounds__(kThreads) dq_kernel(const Args a) {
  constexpr int MT = C::MT, BC = C::BC, BR = C::BR, NC = C::NC, ND = C::ND;
  constexpr int QT = BR * C::LD, KT = BC * C::LD;
  extern __shared__ __align__(128) unsigned char window_attn_mma_smem[];
  bf16* sq = reinterpret_cast<bf16*>(window_attn_mma_smem);
  bf16* sdo = sq + QT;
  bf16* sk = sdo + QT;      // [2]
  bf16* sv = sk + 2 * KT;   // [2]
  const Dims& d = a.d;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c2 = (lane & 3) * 2;
  const int64_t bh = blockIdx.x / a.n_tiles, qt = blockIdx.x - bh * a.n_tiles;
  const int64_t b = bh / d.H, h = bh - b * d.H;
  const int64_t t0 = qt * BR, t1 = min64(d.T, t0 + BR);
  const int64_t qs = d.H * d.K, vs = d.H * d.V;
  const bf16* kb = a.k + head_base(b, h, d.S, d.H, d.K);
  const bf16* vb = a.v + head_base(b, h, d.S, d.H, d.V);
  const int64_t tw = t0 + 16 * MT * warp;

  const int64_t jlo = max64(0, d.P + t0 - d.W + 1), jhi = d.P + t1;
  const int64_t jstart = jlo / BC * BC;
  const int n_kt = static_cast<int>((jhi - jstart + BC - 1) / BC);

  cuda::load_rows<C::D, BR, kThreads>(sq, a.q + head_base(b, h, d.T, d.H, d.K), qs, t0, t1, d.K, a.vec);
  cuda::load_rows<C::D, BR, kThreads>(sdo, a.dout + head_base(b, h, d.T, d.H, d.V), vs, t0, t1, d.V, a.vec);
  cuda::load_rows<C::D, BC, kThreads>(sk, kb, qs, jstart, jhi, d.K, a.vec);
  cuda::load_rows<C::D, BC, kThreads>(sv, vb, vs, jstart, jhi, d.V, a.vec);
  cuda::cp_async_commit();

  const float sl2 = a.scale * kLog2e;
  float lse2[MT][2], dd[MT][2];
#pragma unroll
  for (int mi = 0; mi < MT; ++mi)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t t = tw + 16 * mi + g + 8 * half;
      lse2[mi][half] = t < t1 ? a.lse_in[bh * d.T + t] * kLog2e : 0.f;
      dd[mi][half] = t < t1 ? a.dd[bh * d.T + t] : 0.f;
    }
  float dq[MT][ND][4] = {};
  const bf16* qw = sq + 16 * MT * warp * C::LD;
  const bf16* dow = sdo + 16 * MT * warp * C::LD;

  for (int it = 0; it < n_kt; ++it) {
    const int64_t j0 = jstart + int64_t(it) * BC;
    if (it + 1 < n_kt) {
      const int nb = (it + 1) & 1;
      cuda::load_rows<C::D, BC, kThreads>(sk + nb * KT, kb, qs, j0 + BC, jhi, d.K, a.vec);
      cuda::load_rows<C::D, BC, kThreads>(sv + nb * KT, vb, vs, j0 + BC, jhi, d.V, a.vec);
      cuda::cp_async_commit();
      cuda::cp_async_wait<1>();
    } else {
      cuda::cp_async_wait<0>();
    }
    __syncthreads();
    const bf16* kt = sk + (it & 1) * KT;
    const bf16* vt = sv + (it & 1) * KT;
    const bool none = j0 > d.P + tw + 16 * MT - 1 || j0 + BC - 1 <= d.P + tw - d.W;
    if (!none) {
      float s[MT][NC][4], dp[MT][NC][4];
      scores<C>(s, qw, kt);
      scores<C>(dp, dow, vt);
      const bool full = all_visible(d, tw, 16 * MT, t1, j0, BC);
#pragma unroll
      for (int mi = 0; mi < MT; ++mi)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int64_t t = tw + 16 * mi + g + 8 * half;
          const RowWindow win(d.P + t, d.W, j0, BC, t < t1);
#pragma unroll
          for (int j = 0; j < NC; ++j)
#pragma unroll
          for (int e = 2 * half; e < 2 * half + 2; ++e) {
            const bool vis = full || win.sees(8 * j + c2 + (e & 1));
            const float p = vis ? ex2(s[mi][j][e] * sl2 - lse2[mi][half]) : 0.f;
            s[mi][j][e] = p * (dp[mi][j][e] - dd[mi][half]);  // dS
          }
        }
      accumulate_pv<C>(dq, s, kt);
    }
    __syncthreads();
  }
  store_rows<C>(a.dq + head_base(b, h, d.T, d.H, d.K), qs, tw, t1, d.K, dq, a.scale);
}

// dk, dv: one block per (b, h, key tile of BR of all S rows), walking the query tiles (BC rows) that see the tile;
// the warp's 16·MT keys are the rows of every product: Sᵀ = K·Qᵀ, dPᵀ = V·dOᵀ, dV += Pᵀ·dO, dK += dSᵀ·Q.
template <class C>
__global__ void __launch_bounds__(kThreads) dkdv_kernel(const Args a) {
  constexpr int MT = C::MT, BC = C::BC, BR = C::BR, NC = C::NC, ND = C::ND;
  constexpr int RT = BR * C::LD, CT = BC * C::LD;
  extern __shared__ __align__(128) unsigned char window_attn_mma_smem[];
  bf16* sk = reinterpret_cast<bf16*>(window_attn_mma_smem);
  bf16* sv = sk + RT;
  bf16* sq = sv + RT;        // [2]
  bf16* sdo = sq + 2 * CT;   // [2]
  float* slse = reinterpret_cast<float*>(sdo + 2 * CT);  // [2][BC], × log2 e
  float* sdd = slse + 2 * BC;                             // [2][BC]
  const Dims& d = a.d;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c2 = (lane & 3) * 2;
  const int64_t bh = blockIdx.x / a.n_tiles, kt = blockIdx.x - bh * a.n_tiles;
  const int64_t b = bh / d.H, h = bh - b * d.H;
  const int64_t j0 = kt * BR, j1 = min64(d.S, j0 + BR);
  const int64_t qs = d.H * d.K, vs = d.H * d.V;
  const bf16* qb = a.q + head_base(b, h, d.T, d.H, d.K);
  const bf16* gb = a.dout + head_base(b, h, d.T, d.H, d.V);
  const int64_t kw0 = j0 + 16 * MT * warp;  // the warp's first key

  // Queries that see some key of [j0, j1): P + t ≥ j0 and P + t − W + 1 ≤ j1 − 1.
  const int64_t tlo = max64(0, j0 - d.P), thi = min64(d.T, j1 - d.P + d.W - 1);
  const int n_qt = thi > tlo ? static_cast<int>((thi - tlo + BC - 1) / BC) : 0;

  auto load_q_tile = [&](int buf, int64_t i0) {
    cuda::load_rows<C::D, BC, kThreads>(sq + buf * CT, qb, qs, i0, thi, d.K, a.vec);
    cuda::load_rows<C::D, BC, kThreads>(sdo + buf * CT, gb, vs, i0, thi, d.V, a.vec);
    for (int r = threadIdx.x; r < BC; r += kThreads) {
      const int64_t t = i0 + r;
      slse[buf * BC + r] = t < thi ? a.lse_in[bh * d.T + t] * kLog2e : 0.f;
      sdd[buf * BC + r] = t < thi ? a.dd[bh * d.T + t] : 0.f;
    }
  };
  if (n_qt > 0) {  // else: no query sees these keys (cache rows before every window), dk = dv = 0
    cuda::load_rows<C::D, BR, kThreads>(sk, a.k + head_base(b, h, d.S, d.H, d.K), qs, j0, j1, d.K, a.vec);
    cuda::load_rows<C::D, BR, kThreads>(sv, a.v + head_base(b, h, d.S, d.H, d.V), vs, j0, j1, d.V, a.vec);
    load_q_tile(0, tlo);
    cuda::cp_async_commit();
  }

  const float sl2 = a.scale * kLog2e;
  float dk[MT][ND][4] = {}, dv[MT][ND][4] = {};
  const bf16* kw = sk + 16 * MT * warp * C::LD;
  const bf16* vw = sv + 16 * MT * warp * C::LD;

  for (int it = 0; it < n_qt; ++it) {
    const int64_t i0 = tlo + int64_t(it) * BC;
    if (it + 1 < n_qt) {
      load_q_tile((it + 1) & 1, i0 + BC);
      cuda::cp_async_commit();
      cuda::cp_async_wait<1>();
    } else {
      cuda::cp_async_wait<0>();
    }
    __syncthreads();
    const int buf = it & 1;
    const bf16* qt = sq + buf * CT;
    const bf16* dot = sdo + buf * CT;
    const float* lse2 = slse + buf * BC;
    const float* ddt = sdd + buf * BC;
    // Query tiles that see no key of this warp: skipped by the warp.
    const bool none = kw0 > d.P + i0 + BC - 1 || kw0 + 16 * MT - 1 <= d.P + i0 - d.W;
    if (!none) {
      float s[MT][NC][4], dp[MT][NC][4];
      scores<C>(s, kw, qt);    // Sᵀ: rows = keys, columns = queries
      scores<C>(dp, vw, dot);  // dPᵀ
      // Every (key, query) pair visible: the query rows [i0, i0 + BC) against the warp's keys.
      const bool full = kw0 + 16 * MT - 1 <= d.P + i0 && kw0 >= d.P + i0 + BC - d.W && i0 + BC <= thi &&
                        kw0 + 16 * MT <= j1;
#pragma unroll
      for (int mi = 0; mi < MT; ++mi)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          // Query columns c of this key row that see it: t = i0 + c with key ≤ P + t < key + W and t < thi.
          const int64_t key = kw0 + 16 * mi + g + 8 * half;
          const int c_lo = static_cast<int>(min64(max64(key - d.P - i0, 0), BC));
          const int c_hi = key < j1 ? static_cast<int>(min64(max64(min64(key - d.P + d.W, thi) - i0, 0), BC)) : 0;
#pragma unroll
          for (int j = 0; j < NC; ++j)
#pragma unroll
          for (int e = 2 * half; e < 2 * half + 2; ++e) {
            const int col = 8 * j + c2 + (e & 1);
            const bool vis = full || (col >= c_lo && col < c_hi);
            const float p = vis ? ex2(s[mi][j][e] * sl2 - lse2[col]) : 0.f;
            s[mi][j][e] = p;
            dp[mi][j][e] = p * (dp[mi][j][e] - ddt[col]);  // dSᵀ
          }
        }
      accumulate_pv<C>(dv, s, dot);
      accumulate_pv<C>(dk, dp, qt);
    }
    __syncthreads();
  }
  store_rows<C>(a.dk + head_base(b, h, d.S, d.H, d.K), qs, kw0, j1, d.K, dk, a.scale);
  store_rows<C>(a.dv + head_base(b, h, d.S, d.H, d.V), vs, kw0, j1, d.V, dv, 1.f);
}

// The tile configuration of all three kernels. Two m-tiles per warp (Cfg<64, 2, 64> forward, Cfg<64, 2, 32>
// backward; 223–255 registers) ran at the speed of one on the H100 (8×4096×12×64, W = 512: fwd+bwd 2.011 vs 1.987
// ms in one run; bench/NOTES.md), so the smaller register footprint stays.
template <int D>
using TileCfgMma = Cfg<D, 1, 64>;

template <class C>
constexpr size_t fwd_smem() {
  return (C::BR + 4 * C::BC) * C::LD * sizeof(bf16);
}
template <class C>
constexpr size_t dq_smem() {
  return (2 * C::BR + 4 * C::BC) * C::LD * sizeof(bf16);
}
template <class C>
constexpr size_t dkdv_smem() {
  return (2 * C::BR + 4 * C::BC) * C::LD * sizeof(bf16) + 4 * C::BC * sizeof(float);
}

}  // namespace mma

// ---------------------------------------------------------------------------------------------------------
// launch helpers

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

Dims make_dims(const Tensor& q, const Tensor& k, const Tensor& v, int64_t window) {
  const int64_t T = q.size(1), S = k.size(1);
  return {q.size(0), T, S, q.size(2), q.size(3), v.size(3), S - T, std::min(window, std::max<int64_t>(S, 1))};
}

// Opts the kernel into `bytes` of dynamic shared memory, naming the op when the device has less.
template <typename Kernel>
void set_smem(Kernel kernel, size_t bytes, const Tensor& q, const char* op, int D) {
  const std::string name = fmt::format("the head-dim-{} kernel", D);
  cuda::ensure_dynamic_smem(reinterpret_cast<const void*>(kernel), bytes, q.device().index, op, name.c_str());
}

unsigned grid_of(int64_t blocks, const char* op) {
  HYDRA_CHECK(blocks <= INT_MAX, "{}: {} thread blocks exceed the grid limit {} (B·H·tiles too large)", op, blocks,
              INT_MAX);
  return static_cast<unsigned>(blocks);
}

// ---- bfloat16 launchers (namespace mma) ----

const mma::bf16* bf(const Tensor& t) { return reinterpret_cast<const mma::bf16*>(t.data<BFloat16>()); }
bool aligned16(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data<BFloat16>()) % 16 == 0; }

template <class C>
void launch_fwd_mma_c(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                      const Dims& d, float scale) {
  constexpr int D = C::D;
  const int64_t n_qt = ceil_div(d.T, C::BR);
  if (d.B * d.H * n_qt == 0) return;
  const unsigned grid = grid_of(d.B * d.H * n_qt, "window_attn_forward");
  constexpr size_t smem = mma::fwd_smem<C>();
  set_smem(mma::fwd_kernel<C>, smem, q, "window_attn_forward", D);
  mma::Args a{};
  a.q = bf(q);
  a.k = bf(k);
  a.v = bf(v);
  a.o = reinterpret_cast<mma::bf16*>(o.data<BFloat16>());
  a.lse = lse.data<float>();
  a.d = d;
  a.n_tiles = n_qt;
  a.scale = scale;
  a.vec = d.K % 8 == 0 && d.V % 8 == 0 && aligned16(q) && aligned16(k) && aligned16(v);
  mma::fwd_kernel<C><<<grid, mma::kThreads, smem, cuda::stream_of(q)>>>(a);
  HYDRA_CUDA_CHECK_LAUNCH("window_attn_forward");
}

template <class CQ, class CK>
void launch_bwd_mma_c(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& lse,
                    const Tensor& dd, const Tensor& dq, const Tensor& dk, const Tensor& dv, const Dims& d,
                    float scale) {
  constexpr int D = CQ::D;
  const cudaStream_t stream = cuda::stream_of(q);
  mma::Args a{};
  a.q = bf(q);
  a.k = bf(k);
  a.v = bf(v);
  a.dout = bf(dout);
  a.lse_in = lse.data<float>();
  a.dd = dd.data<float>();
  a.dq = dq.data<BFloat16>();
  a.dk = dk.data<BFloat16>();
  a.dv = dv.data<BFloat16>();
  a.d = d;
  a.scale = scale;
  a.vec = d.K % 8 == 0 && d.V % 8 == 0 && aligned16(q) && aligned16(k) && aligned16(v) && aligned16(dout);
  const int64_t n_qt = ceil_div(d.T, CQ::BR);
  if (n_qt > 0) {
    const unsigned grid = grid_of(d.B * d.H * n_qt, "window_attn_backward");
    constexpr size_t smem = mma::dq_smem<CQ>();
    set_smem(mma::dq_kernel<CQ>, smem, q, "window_attn_backward", D);
    a.n_tiles = n_qt;
    mma::dq_kernel<CQ><<<grid, mma::kThreads, smem, stream>>>(a);
    HYDRA_CUDA_CHECK_LAUNCH("window_attn_backward (dq)");
  }
  const int64_t n_kt = ceil_div(d.S, CK::BR);
  const unsigned grid = grid_of(d.B * d.H * n_kt, "window_attn_backward");
  constexpr size_t smem = mma::dkdv_smem<CK>();
  set_smem(mma::dkdv_kernel<CK>, smem, q, "window_attn_backward", D);
  a.n_tiles = n_kt;
  mma::dkdv_kernel<CK><<<grid, mma::kThreads, smem, stream>>>(a);
  HYDRA_CUDA_CHECK_LAUNCH("window_attn_backward (dk, dv)");
}

template <typename T, int D>
void launch_fwd(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse, const Dims& d,
                float scale) {
  if constexpr (std::is_same_v<T, BFloat16>) {
    launch_fwd_mma_c<mma::TileCfgMma<D>>(q, k, v, o, lse, d, scale);
  } else {
    using Cfg = TileCfg<D>;
    const int64_t n_qt = ceil_div(d.T, Cfg::BT);
    if (d.B * d.H * n_qt == 0) return;
    const unsigned grid = grid_of(d.B * d.H * n_qt, "window_attn_forward");
    const size_t smem = FwdSmem<T, D>(0).bytes;
    set_smem(window_attn_fwd_kernel<T, D>, smem, q, "window_attn_forward", D);
    const FwdArgs<T> args{q.data<T>(), k.data<T>(), v.data<T>(), o.data<T>(), lse.data<float>(), d, n_qt, scale};
    window_attn_fwd_kernel<T, D><<<grid, Cfg::NT, smem, cuda::stream_of(q)>>>(args);
    HYDRA_CUDA_CHECK_LAUNCH("window_attn_forward");
  }
}

template <typename T, int D>
void launch_bwd(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                const Tensor& lse, const Tensor& dq, const Tensor& dk, const Tensor& dv, const Dims& d, float scale) {
  using Cfg = TileCfg<D>;
  if (d.B * d.H * d.S == 0) return;  // nothing to write (T ≤ S)
  const cudaStream_t stream = cuda::stream_of(q);
  // D_t = do_t·o_t (float32 scratch [B, H, T], every element written).
  const Tensor dd = empty({d.B, d.H, d.T}, DType::Float32, q.device());
  const int64_t rows = d.B * d.T * d.H;
  if (rows > 0) {
    constexpr int kDotThreads = 256;
    window_attn_bwd_dot_kernel<T><<<cuda::grid_for(rows, kDotThreads / 32), kDotThreads, 0, stream>>>(
        dout.data<T>(), o.data<T>(), dd.data<float>(), d.B, d.T, d.H, d.V);
    HYDRA_CUDA_CHECK_LAUNCH("window_attn_backward (D = do·o)");
  }
  if constexpr (std::is_same_v<T, BFloat16>) {
    launch_bwd_mma_c<mma::TileCfgMma<D>, mma::TileCfgMma<D>>(dout, q, k, v, lse, dd, dq, dk, dv, d, scale);
  } else {
    BwdArgs<T> args{dout.data<T>(), q.data<T>(), k.data<T>(), v.data<T>(), lse.data<float>(), dd.data<float>(),
                    dq.data<T>(),   dk.data<T>(), dv.data<T>(), d, 0, scale};
    const int64_t n_qt = ceil_div(d.T, Cfg::BT);
    if (n_qt > 0) {
      const unsigned grid = grid_of(d.B * d.H * n_qt, "window_attn_backward");
      const size_t smem = BwdSmem<T, D>(0, false).bytes;
      set_smem(window_attn_bwd_dq_kernel<T, D>, smem, q, "window_attn_backward", D);
      args.n_tiles = n_qt;
      window_attn_bwd_dq_kernel<T, D><<<grid, Cfg::NT, smem, stream>>>(args);
      HYDRA_CUDA_CHECK_LAUNCH("window_attn_backward (dq)");
    }
    const int64_t n_kt = ceil_div(d.S, Cfg::BT);
    const unsigned grid = grid_of(d.B * d.H * n_kt, "window_attn_backward");
    const size_t smem = BwdSmem<T, D>(0, true).bytes;
    set_smem(window_attn_bwd_dkdv_kernel<T, D>, smem, q, "window_attn_backward", D);
    args.n_tiles = n_kt;
    window_attn_bwd_dkdv_kernel<T, D><<<grid, Cfg::NT, smem, stream>>>(args);
    HYDRA_CUDA_CHECK_LAUNCH("window_attn_backward (dk, dv)");
  }
}

// The one switch over dtype and head-dim variant: f.template operator()<T, D>() with D ∈ {32, 64, 128} the smallest
// variant holding max(K, V). Throws naming the op, the argument, the value and the supported set.
template <typename F>
void dispatch_variant(const char* op, const Tensor& q, int64_t K, int64_t V, F&& f) {
  HYDRA_CHECK(q.dtype() == DType::Float32 || q.dtype() == DType::BFloat16,
              "{}: 'q' has dtype {}; on CUDA q, k and v must be float32 or bfloat16", op, dtype_name(q.dtype()));
  HYDRA_CHECK(K >= 1 && K <= 128, "{}: head dim K = {} (q {}) is not supported on CUDA (supported: 1 to 128)", op, K,
              shape_str(q.shape()));
  HYDRA_CHECK(V >= 1 && V <= 128, "{}: head dim V = {} (of 'v') is not supported on CUDA (supported: 1 to 128)", op,
              V);
  const int64_t m = std::max(K, V);
  const auto by_dim = [&]<typename T>() {
    if (m <= 32) {
      f.template operator()<T, 32>();
    } else if (m <= 64) {
      f.template operator()<T, 64>();
    } else {
      f.template operator()<T, 128>();
    }
  };
  if (q.dtype() == DType::Float32) {
    by_dim.template operator()<float>();
  } else {
    by_dim.template operator()<BFloat16>();
  }
}

}  // namespace

void window_attn_forward_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                              int64_t window, double scale) {
  const char* op = "window_attn_forward";
  cuda::DeviceGuard guard(q.device().index);
  const Dims d = make_dims(q, k, v, window);
  dispatch_variant(op, q, d.K, d.V, [&]<typename T, int D>() {
    launch_fwd<T, D>(q, k, v, o, lse, d, static_cast<float>(scale));
  });
}

void window_attn_backward_cuda(const Tensor& do_, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                               const Tensor& lse, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                               int64_t window, double scale) {
  const char* op = "window_attn_backward";
  cuda::DeviceGuard guard(q.device().index);
  const Dims d = make_dims(q, k, v, window);
  dispatch_variant(op, q, d.K, d.V, [&]<typename T, int D>() {
    launch_bwd<T, D>(do_, q, k, v, o, lse, dq, dk, dv, d, static_cast<float>(scale));
  });
}

}  // namespace hydra
