// Fused hot-path kernels on CUDA: RMSNorm, cross-entropy from logits, L2 normalisation, rotary embedding and the
// causal depthwise conv1d, forward and backward. Math, shapes and dtypes: tensor/ops/fused.h (this file follows it
// exactly, incl. the stat dtypes, the rounding of RMSNorm's normalised value to x's dtype and rotary's float32
// inv_freq). All inputs arrive contiguous (the dispatch in tensor/ops/fused.cpp copies strided views first).
//
// Accumulation: A = float for float32/bfloat16, double for float64 (A is also the stat dtype).
//
// Row kernels (RMSNorm, L2 normalise, cross-entropy): one block per row (grid-stride over rows), 32..512 threads,
// each thread owning packs i = tid, tid + blockDim, ... of VEC elements. VEC = 16 bytes / sizeof(T) (8 bf16, 4 f32,
// 2 f64) when D % VEC == 0 and every base pointer is 16-byte aligned, else 1. Reductions: warp xor-butterfly, then
// one value per warp in shared memory, then a butterfly again: a fixed order for a fixed block size, so results are
// run-to-run deterministic. RMSNorm forward rows of ≤ 256 packs use one warp per row instead (registers, warp
// butterfly only). Rows that are read twice (the normalise pass after the sum of squares) are kept in
// dynamic shared memory when they fit (kRowCacheBytes); each thread reads back only the packs it stored itself, so
// no barrier is needed for the cache. Cross-entropy forward reads each logit once: an online log-sum-exp per thread
// (running max m, sum s rescaled when m grows, once per pack; −inf logits are skipped), then (m, s) pairs are merged
// across the block.
//
// Column sums (RMSNorm dw, conv dw/dbias): no float atomics. Pass 1: blocks of 32 columns × 16 row-lanes sum a
// fixed chunk of rows (the chunking depends only on N) into partial[chunk, column] (type A); pass 2: one thread per
// column adds the chunks in order. The result does not depend on the device or the run.
//
// Rotary: the cos/sin table (T, D/2) is built once per call by a small kernel (inv_freq computed on the host with
// the CPU path's exact float32 formula and uploaded, so θ = float(p)·inv_freq is bitwise the CPU's), then one
// thread per (row, VEC pairs) applies the rotation. Conv1d: a thread owns one pack of channels for a run of 16
// tokens and slides a register window over time, so each x (and gy) row is read once per run (+K−1 halo rows);
// the backward computes dx and the dw/dbias block partials in the same pass (column sums as above, chunk = block).
//
// Bytes moved per call (S = sizeof(T), s = sizeof(A); the benchmark divides by time for GB/s; N rows, D/V width):
//   rms_norm_forward      2·N·D·S + D·S + N·s                      (x read, y written, w, rstd)
//   rms_norm_backward     3·N·D·S + D·S + N·s + 2·C·D·s  for D ≤ 192 packs (one fused pass: gy, x read, dx written,
//                         C block partials of dw); longer rows 5·N·D·S + ... (dx pass: gy, x read, dx written; dw pass re-reads
//                                                                    gy, x; C ≤ 128 chunks of partials)
//   cross_entropy_forward N·V·S + N·(s + 8 + sizeof(I)) + tiny      (logits read once; lse, row losses, targets;
//                         the target check is read back asynchronously: cuda::defer_device_check)
//   cross_entropy_backward 2·N·V·S + N·(s + sizeof(I))              (logits read, dlogits written)
//   l2_normalize_forward  2·N·D·S + N·s;  backward 3·N·D·S + N·s
//   rotary                2·numel·S + T·D·s (table)
//   causal_conv1d_forward 2·B·T·C·S + C·K·S + C·S + 2·B·C·(K−1)·S
//   causal_conv1d_backward 3·B·T·C·S (gy, x read, dx written) + partials 4·(B·T/128)·(K+1)·C + small
// FLOPs are negligible (bandwidth-bound); cross-entropy does ~1 exp per logit in each direction.
//
// Reference: the CPU kernels of tensor/ops/fused.cpp; tests/tensor/test_cuda_fused.cpp compares each op, forward
// and backward, against the CPU op on the float64 upcast of the same inputs (rotary: the CPU op in the same dtype,
// since θ's precision is dtype-dependent by SPEC §2.9).
#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <vector>

#include "tensor/check.h"
#include "tensor/cuda/common.cuh"
#include "tensor/cuda/fused_ops.h"
#include "tensor/cuda/ops.h"
#include "tensor/dispatch.h"
#include "tensor/ops/elementwise_functors.h"

namespace hydra::cuda {
namespace {

// ---------------------------------------------------------------------------------------------------------
// device helpers

template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
constexpr int kVec = static_cast<int>(16 / sizeof(T));

constexpr int kMaxRowThreads = 512;
constexpr int64_t kRowCacheBytes = 40 * 1024;  // dynamic shared memory per block for cached rows
constexpr int kColTile = 32;                    // columns per block in the column-sum kernels
constexpr int kColLanes = 16;                   // row-lanes per block in the column-sum kernels
constexpr int64_t kMaxChunks = 128;             // row chunks of the column sums (partials: kMaxChunks × columns)
constexpr int64_t kMinRowsPerChunk = 32;
constexpr int kElemThreads = 256;
constexpr int kRmsWarpThreads = 256;              // block size of the warp-per-row RMSNorm forward
constexpr int kRmsWarpMaxNP = 8;                 // its packs per lane at most (rows of ≤ 256 packs)
constexpr int kCeBatch = 4;                     // packs per thread loaded together in cross-entropy forward
constexpr int kCeMinBlocks = 4;                 // float cross-entropy forward: 4 × 512 threads per SM (≤ 32 registers)

template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

template <typename T>
__device__ __forceinline__ acc_t<T> to_acc(T v) {
  return static_cast<acc_t<T>>(static_cast<compute_t<T>>(v));
}
template <typename T>
__device__ __forceinline__ T from_acc(acc_t<T> v) {
  if constexpr (std::is_same_v<T, BFloat16>) {
    return BFloat16(v);
  } else {
    return static_cast<T>(v);
  }
}

__device__ __forceinline__ float exp_a(float v) { return ::expf(v); }
__device__ __forceinline__ double exp_a(double v) { return ::exp(v); }
[[maybe_unused]] __device__ __forceinline__ float log_a(float v) { return ::logf(v); }
__device__ __forceinline__ double log_a(double v) { return ::log(v); }

// exp(d) for the sums of exponentials (d ≤ 0 mostly): float via ex2.approx (≈ 2 ulp, one MUFU op instead of
// expf's ~8 instructions), double via exp.
[[maybe_unused]] __device__ __forceinline__ float exp_fast(float d) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(d * 1.4426950408889634f));
  return r;
}
__device__ __forceinline__ double exp_fast(double d) { return ::exp(d); }

template <typename A>
__device__ __forceinline__ A neg_inf() {
  return -static_cast<A>(INFINITY);
}

struct SumOp {
  template <typename A>
  __device__ __forceinline__ A operator()(A a, A b) const {
    return a + b;
  }
};
struct MinOp {
  template <typename A>
  __device__ __forceinline__ A operator()(A a, A b) const {
    return b < a ? b : a;
  }
};

// xor butterfly: every lane ends with the same value (op is commutative, so both partners compute it bitwise alike).
template <typename A, typename Op>
__device__ __forceinline__ A warp_reduce(A v, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide reduction, result in every thread. blockDim.x must be a multiple of 32 (≤ 1024); every thread of the
// block must call it. sh: 32 elements of shared memory (reusable right after: the leading barrier protects it).
template <typename A, typename Op>
__device__ __forceinline__ A block_reduce(A v, A* sh, A identity, Op op) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_reduce(v, op);
  __syncthreads();
  if (lane == 0) sh[wid] = v;
  __syncthreads();
  v = lane < nw ? sh[lane] : identity;
  return warp_reduce(v, op);
}
template <typename A>
__device__ __forceinline__ A block_sum(A v, A* sh) {
  return block_reduce(v, sh, A(0), SumOp{});
}

// Merges the online log-sum-exp state (m2, s2) into (m, s): Σ exp(z − m) = s. Symmetric in its two operands.
template <typename A>
__device__ __forceinline__ void lse_merge(A& m, A& s, A m2, A s2) {
  if (m2 == neg_inf<A>()) return;
  if (m == neg_inf<A>()) {
    m = m2;
    s = s2;
  } else if (m2 > m) {
    s = s * exp_a(m - m2) + s2;
    m = m2;
  } else {
    s = s + s2 * exp_a(m2 - m);
  }
}

template <typename A>
__device__ __forceinline__ void warp_lse(A& m, A& s) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const A m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const A s2 = __shfl_xor_sync(0xffffffffu, s, o);
    lse_merge(m, s, m2, s2);
  }
}

template <typename A>
__device__ __forceinline__ void block_lse(A& m, A& s, A* shm, A* shs) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  warp_lse(m, s);
  __syncthreads();
  if (lane == 0) {
    shm[wid] = m;
    shs[wid] = s;
  }
  __syncthreads();
  m = lane < nw ? shm[lane] : neg_inf<A>();
  s = lane < nw ? shs[lane] : A(0);
  warp_lse(m, s);
}

// Dynamic shared memory of the row kernels (row caches), as an array of P.
template <typename P>
__device__ __forceinline__ P* row_cache() {
  extern __shared__ __align__(16) unsigned char fused_smem[];
  return reinterpret_cast<P*>(fused_smem);
}

// Σ x² over one row of Dv packs, summed over the block (every thread gets the total); with `cache` each thread
// also keeps the packs it read in the shared-memory row cache for the second pass. Shared by RMSNorm and L2.
template <typename T, int VEC>
__device__ __forceinline__ acc_t<T> row_sum_squares(const Pack<T, VEC>* xr, int64_t Dv, bool cache,
                                                    Pack<T, VEC>* cx, acc_t<T>* red) {
  acc_t<T> ss = 0;
  for (int64_t i = threadIdx.x; i < Dv; i += blockDim.x) {
    const Pack<T, VEC> p = xr[i];
    if (cache) cx[i] = p;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const acc_t<T> a = to_acc(p.v[k]);
      ss += a * a;
    }
  }
  return block_sum(ss, red);
}

// ---------------------------------------------------------------------------------------------------------
// kernels: RMSNorm

template <typename T, int VEC>
__global__ void rms_norm_fwd_kernel(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y,
                                    acc_t<T>* __restrict__ rstd, int64_t N, int64_t D, double eps, bool cache) {
  using A = acc_t<T>;
  using P = Pack<T, VEC>;
  __shared__ A red[32];
  P* cx = row_cache<P>();
  const int64_t Dv = D / VEC;
  const P* wp = reinterpret_cast<const P*>(w);
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const P* xr = reinterpret_cast<const P*>(x + r * D);
    const A ss = row_sum_squares<T, VEC>(xr, Dv, cache, cx, red);
    const A rs = static_cast<A>(1.0 / ::sqrt(static_cast<double>(ss) / static_cast<double>(D) + eps));
    if (threadIdx.x == 0) rstd[r] = rs;
    P* yr = reinterpret_cast<P*>(y + r * D);
    for (int64_t i = threadIdx.x; i < Dv; i += blockDim.x) {
      const P p = cache ? cx[i] : xr[i];
      const P q = wp[i];
      P o;
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const T n = from_acc<T>(to_acc(p.v[k]) * rs);  // the normalised value, rounded to x's dtype
        o.v[k] = from_acc<T>(to_acc(n) * to_acc(q.v[k]));
      }
      yr[i] = o;
    }
  }
}

// Short rows (D / VEC ≤ 32 · NP packs): one warp per row, kRmsWarpThreads / 32 rows per block (grid-stride), the
// row kept in registers (NP packs per lane, all loads issued first), a warp butterfly for the sum of squares: no
// block barriers, and each thread moves NP · 16 bytes per row instead of one pack. Same math as the block kernel.
// OT: y's dtype (T, or bfloat16 for a float32 x under mixed precision): y is computed in T as always, then
// rounded to OT, which is what a separate cast would give.
template <typename T, typename OT, int VEC, int NP>
__global__ void __launch_bounds__(kRmsWarpThreads, (NP <= 2 ? 2048 : NP == 3 ? 1536 : NP == 4 ? 1024 : 512) /
                                                       kRmsWarpThreads)
    rms_norm_fwd_warp_kernel(const T* __restrict__ x, const T* __restrict__ w, OT* __restrict__ y,
                             acc_t<T>* __restrict__ rstd, int64_t N, int64_t D, double eps) {
  using A = acc_t<T>;
  using P = Pack<T, VEC>;
  using PO = Pack<OT, VEC>;
  constexpr int kRows = kRmsWarpThreads / 32;
  const int lane = threadIdx.x & 31;
  const int64_t Dv = D / VEC;
  const P* wp = reinterpret_cast<const P*>(w);
  for (int64_t r = int64_t(blockIdx.x) * kRows + (threadIdx.x >> 5); r < N; r += int64_t(gridDim.x) * kRows) {
    const P* xr = reinterpret_cast<const P*>(x + r * D);
    P p[NP];
#pragma unroll
    for (int j = 0; j < NP; ++j)
      if (lane + 32 * j < Dv) p[j] = xr[lane + 32 * j];
    A ss = 0;
#pragma unroll
    for (int j = 0; j < NP; ++j)
      if (lane + 32 * j < Dv) {
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
          const A a = to_acc(p[j].v[k]);
          ss += a * a;
        }
      }
    ss = warp_reduce(ss, SumOp{});
    A rs;
    if constexpr (std::is_same_v<A, float>) {
      rs = 1.0f / ::sqrtf(ss / static_cast<float>(D) + static_cast<float>(eps));  // IEEE div/sqrt: no FP64 per row
    } else {
      rs = 1.0 / ::sqrt(ss / static_cast<double>(D) + eps);
    }
    if (lane == 0) rstd[r] = rs;
    PO* yr = reinterpret_cast<PO*>(y + r * D);
#pragma unroll
    for (int j = 0; j < NP; ++j)
      if (lane + 32 * j < Dv) {
        const P q = wp[lane + 32 * j];
        PO o;
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
          const T nv = from_acc<T>(to_acc(p[j].v[k]) * rs);  // the normalised value, rounded to x's dtype
          o.v[k] = from_acc<OT>(to_acc(from_acc<T>(to_acc(nv) * to_acc(q.v[k]))));
        }
        yr[lane + 32 * j] = o;
      }
  }
}

// dx = rstd · (dn − n · mean_j(dn_j n_j)),  dn = gy ⊙ w,  n = x · rstd.
template <typename T, int VEC>
__global__ void rms_norm_bwd_dx_kernel(const T* __restrict__ gy, const T* __restrict__ x, const T* __restrict__ w,
                                       const acc_t<T>* __restrict__ rstd, T* __restrict__ dx, int64_t N, int64_t D,
                                       bool cache) {
  using A = acc_t<T>;
  using P = Pack<T, VEC>;
  __shared__ A red[32];
  const int64_t Dv = D / VEC;
  P* cg = row_cache<P>();
  P* cx = cg + Dv;
  const P* wp = reinterpret_cast<const P*>(w);
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const P* gr = reinterpret_cast<const P*>(gy + r * D);
    const P* xr = reinterpret_cast<const P*>(x + r * D);
    const A rs = rstd[r];
    A dot = 0;
    for (int64_t i = threadIdx.x; i < Dv; i += blockDim.x) {
      const P g = gr[i], xv = xr[i], q = wp[i];
      if (cache) {
        cg[i] = g;
        cx[i] = xv;
      }
#pragma unroll
      for (int k = 0; k < VEC; ++k) dot += to_acc(g.v[k]) * to_acc(q.v[k]) * to_acc(xv.v[k]);
    }
    dot = block_sum(dot, red);
    const A mean = dot * rs / static_cast<A>(D);
    P* dr = reinterpret_cast<P*>(dx + r * D);
    for (int64_t i = threadIdx.x; i < Dv; i += blockDim.x) {
      const P g = cache ? cg[i] : gr[i];
      const P xv = cache ? cx[i] : xr[i];
      const P q = wp[i];
      P o;
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const A dn = to_acc(g.v[k]) * to_acc(q.v[k]);
        const A n = to_acc(xv.v[k]) * rs;
        o.v[k] = from_acc<T>(rs * (dn - n * mean));
      }
      dr[i] = o;
    }
  }
}

// Short rows (D / VEC ≤ 32 · NP packs): dx and the dw partial sums in one pass over gy and x. Block b owns rows
// [b·R, min(N, (b+1)·R)) (R = rows_per_block; one wave of resident blocks); warp w of the block takes rows r0 + w,
// r0 + w + 8, ... with the row in registers and a warp butterfly for Σ gy·w·x. Each warp accumulates dw in its own
// shared-memory slice, laid out [(j·VEC + k)·32 + lane] so that every lane only ever touches its own words (no
// barrier, no bank conflict). At the end the block adds the warps' slices in warp order (deterministic) into
// partial[b, :]; column_finalize_kernel sums the blocks in order. Bytes: gy and x read once, dx written once.
// Two blocks per SM: on an H100 at 32768×768 bf16 this reaches 81% of the copy, against 79% with the accumulators in
// registers; forcing 3 or 4 blocks per SM (which the shared-memory accumulators would allow) gave 70% and 61%.
// G: gy's dtype (T, or bfloat16 for a float32 x whose forward output was bfloat16; widened exactly).
template <typename T, typename G, int VEC, int NP>
__global__ void __launch_bounds__(kRmsWarpThreads, 2)
    rms_norm_bwd_warp_kernel(const G* __restrict__ gy, const T* __restrict__ x, const T* __restrict__ w,
                             const acc_t<T>* __restrict__ rstd, T* __restrict__ dx, acc_t<T>* __restrict__ partial,
                             int64_t N, int64_t D, int64_t rows_per_block) {
  using A = acc_t<T>;
  using P = Pack<T, VEC>;
  using PG = Pack<G, VEC>;
  constexpr int kWarps = kRmsWarpThreads / 32;
  constexpr int kSlice = 32 * NP * VEC;  // words per warp slice
  extern __shared__ __align__(16) unsigned char bwd_smem[];
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  A* acc = reinterpret_cast<A*>(bwd_smem) + wid * kSlice + lane;  // this lane's word k of pack j: acc[(j·VEC + k)·32]
  const int64_t Dv = D / VEC;
  const int64_t r0 = int64_t(blockIdx.x) * rows_per_block, r1 = min(N, r0 + rows_per_block);
  P wr[NP];
#pragma unroll
  for (int j = 0; j < NP; ++j) {
    if (lane + 32 * j < Dv) wr[j] = reinterpret_cast<const P*>(w)[lane + 32 * j];
#pragma unroll
    for (int k = 0; k < VEC; ++k) acc[(j * VEC + k) * 32] = 0;
  }
  for (int64_t r = r0 + wid; r < r1; r += kWarps) {
    const PG* gr = reinterpret_cast<const PG*>(gy + r * D);
    const P* xr = reinterpret_cast<const P*>(x + r * D);
    PG g[NP];
    P xv[NP];
#pragma unroll
    for (int j = 0; j < NP; ++j)
      if (lane + 32 * j < Dv) {
        g[j] = gr[lane + 32 * j];
        xv[j] = xr[lane + 32 * j];
      }
    const A rs = rstd[r];
    A dot = 0;
#pragma unroll
    for (int j = 0; j < NP; ++j)
      if (lane + 32 * j < Dv) {
#pragma unroll
        for (int k = 0; k < VEC; ++k) dot += to_acc(g[j].v[k]) * to_acc(wr[j].v[k]) * to_acc(xv[j].v[k]);
      }
    dot = warp_reduce(dot, SumOp{});
    const A mean = dot * rs / static_cast<A>(D);
    P* dr = reinterpret_cast<P*>(dx + r * D);
#pragma unroll
    for (int j = 0; j < NP; ++j)
      if (lane + 32 * j < Dv) {
        P o;
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
          const A gv = to_acc(g[j].v[k]), n = to_acc(xv[j].v[k]) * rs;
          o.v[k] = from_acc<T>(rs * (gv * to_acc(wr[j].v[k]) - n * mean));
          acc[(j * VEC + k) * 32] += gv * n;
        }
        dr[lane + 32 * j] = o;
      }
  }
  __syncthreads();
  const A* sh = reinterpret_cast<const A*>(bwd_smem);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    const int64_t pk = d / VEC, at = ((pk / 32) * VEC + d % VEC) * 32 + pk % 32;
    A t = sh[at];
#pragma unroll
    for (int k0 = 1; k0 < kWarps; ++k0) t += sh[k0 * kSlice + at];
    partial[int64_t(blockIdx.x) * D + d] = t;
  }
}

// partial[chunk, d] = Σ_{r in chunk} gy[r, d] · x[r, d] · rstd[r].  Block (kColTile, kColLanes), grid (⌈D/32⌉, chunks).
template <typename T>
__global__ void rms_norm_dw_partial_kernel(const T* __restrict__ gy, const T* __restrict__ x,
                                           const acc_t<T>* __restrict__ rstd, acc_t<T>* __restrict__ partial,
                                           int64_t N, int64_t D, int64_t rows_per_chunk) {
  using A = acc_t<T>;
  __shared__ A sh[kColLanes][kColTile + 1];
  const int64_t d = blockIdx.x * int64_t(kColTile) + threadIdx.x;
  const int64_t r0 = blockIdx.y * rows_per_chunk, r1 = min(N, r0 + rows_per_chunk);
  A acc = 0;
  if (d < D) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kColLanes)
      acc += to_acc(gy[r * D + d]) * to_acc(x[r * D + d]) * rstd[r];
  }
  sh[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && d < D) {
    A s = 0;
#pragma unroll
    for (int k = 0; k < kColLanes; ++k) s += sh[k][threadIdx.x];
    partial[blockIdx.y * D + d] = s;
  }
}

// out[d] = Σ_c partial[c, d] in a fixed order: lane-row y of the block sums the chunks c ≡ y (mod kColLanes) in
// increasing c, then the kColLanes sums are added in y order. Block (kColTile, kColLanes), grid ⌈D / kColTile⌉:
// the chunks are summed by kColLanes threads per column, so hundreds of chunks cost a few microseconds.
template <typename T>
__global__ void column_finalize_kernel(const acc_t<T>* __restrict__ partial, T* __restrict__ out, int64_t chunks,
                                       int64_t D) {
  using A = acc_t<T>;
  __shared__ A sh[kColLanes][kColTile + 1];
  const int64_t d = blockIdx.x * int64_t(kColTile) + threadIdx.x;
  A s = 0;
  if (d < D)
    for (int64_t c = threadIdx.y; c < chunks; c += kColLanes) s += partial[c * D + d];
  sh[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && d < D) {
    A t = 0;
#pragma unroll
    for (int k = 0; k < kColLanes; ++k) t += sh[k][threadIdx.x];
    out[d] = from_acc<T>(t);
  }
}

// ---------------------------------------------------------------------------------------------------------
// kernels: cross-entropy

// One online log-sum-exp pass per row; row_loss[r] = lse_r − logits[r, t_r] (0 for ignored or invalid targets).
template <typename T, typename I, int VEC>
__global__ void cross_entropy_fwd_kernel(const T* __restrict__ logits, const I* __restrict__ targets,
                                         acc_t<T>* __restrict__ lse, double* __restrict__ row_loss, int64_t N,
                                         int64_t V, int64_t ignore_index) {
  using A = acc_t<T>;
  using P = Pack<T, VEC>;
  __shared__ A shm[32], shs[32];
  const A ninf = neg_inf<A>();
  const int64_t Vv = V / VEC;
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const P* xr = reinterpret_cast<const P*>(logits + r * V);
    A m = ninf, s = 0;
    const int64_t bs = blockDim.x;
    for (int64_t i0 = threadIdx.x; i0 < Vv; i0 += kCeBatch * bs) {
      P pk[kCeBatch];  // all loads of the batch are issued before any is used
#pragma unroll
      for (int j = 0; j < kCeBatch; ++j)
        if (i0 + j * bs < Vv) pk[j] = xr[i0 + j * bs];
#pragma unroll
      for (int j = 0; j < kCeBatch; ++j) {
        if (i0 + j * bs >= Vv) break;
        A z[VEC];
        A pm = ninf;
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
          z[k] = to_acc(pk[j].v[k]);
          pm = z[k] > pm ? z[k] : pm;
        }
        if (pm == ninf) continue;  // every logit of the pack is masked
        if (pm > m) {
          s = m == ninf ? A(0) : s * exp_a(m - pm);
          m = pm;
        }
        // m is finite or +inf here, so a −inf logit adds exp(−inf) = 0 exactly (no test needed).
#pragma unroll
        for (int k = 0; k < VEC; ++k) s += exp_fast(z[k] - m);
      }
    }
    block_lse(m, s, shm, shs);
    if (threadIdx.x == 0) {
      const A l = m + log_a(s);
      lse[r] = l;
      const int64_t t = static_cast<int64_t>(targets[r]);
      const bool valid = t != ignore_index && t >= 0 && t < V;
      row_loss[r] = valid ? static_cast<double>(l) - static_cast<double>(to_acc(logits[r * V + t])) : 0.0;
    }
  }
}

// Float accumulators (float32 and bfloat16 logits): the same online log-sum-exp in base-2 units. M = running max of
// z·log2e, s = Σ 2^(z·log2e − M): per element one conversion (a shift for bf16), a share of the pack's max, one FFMA,
// one ex2 and one add; (M, s) is rescaled once per pack whose max grows. lse = (M + log2 s)·ln2 (the rounding of M
// cancels: the same M is in every exponent). B packs are loaded per thread before any is used; the target and its
// logit are loaded by thread 0 early, so their latency overlaps the row's loads and the block reduction.
__device__ __forceinline__ float ex2_approx(float v) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
  return r;
}

template <typename T, int VEC>
__device__ __forceinline__ void unpack_f32(const Pack<T, VEC>& p, float (&z)[VEC]) {
  if constexpr (std::is_same_v<T, BFloat16> && VEC % 2 == 0) {
    const uint32_t* u = reinterpret_cast<const uint32_t*>(p.v);
#pragma unroll
    for (int k = 0; k < VEC / 2; ++k) {
      z[2 * k] = __uint_as_float(u[k] << 16);
      z[2 * k + 1] = __uint_as_float(u[k] & 0xffff0000u);
    }
  } else {
#pragma unroll
    for (int k = 0; k < VEC; ++k) z[k] = to_acc(p.v[k]);
  }
}

// Asynchronous copy of Bytes (4 or 8, aligned) from global to shared memory, waited for by cp_async_wait_all in the
// same thread.
template <int Bytes>
__device__ __forceinline__ void cp_async_to_shared(void* smem, const void* gmem) {
  static_assert(Bytes == 4 || Bytes == 8 || Bytes == 16);
  const unsigned sa = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], %2;" ::"r"(sa), "l"(gmem), "n"(Bytes) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;" ::: "memory"); }

// Merges (M2, s2) into (M, s), both in base-2 units. Symmetric in its two operands.
__device__ __forceinline__ void lse2_merge(float& M, float& s, float M2, float s2) {
  if (M2 == -INFINITY) return;
  if (M == -INFINITY) {
    M = M2;
    s = s2;
  } else if (M2 > M) {
    s = s * ex2_approx(M - M2) + s2;
    M = M2;
  } else {
    s = s + s2 * ex2_approx(M2 - M);
  }
}

__device__ __forceinline__ void warp_lse2(float& M, float& s) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float M2 = __shfl_xor_sync(0xffffffffu, M, o);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    lse2_merge(M, s, M2, s2);
  }
}

template <typename T, typename I, int VEC, int B>
__global__ void __launch_bounds__(kMaxRowThreads, kCeMinBlocks) cross_entropy_fwd_f32_kernel(
    const T* __restrict__ logits, const I* __restrict__ targets, float* __restrict__ lse,
    double* __restrict__ row_loss, int64_t N, int64_t V, int64_t ignore_index) {
  using P = Pack<T, VEC>;
  constexpr float kLog2e = 1.4426950408889634f;
  __shared__ float shm[32], shs[32];
  __shared__ I sh_t;
  const int Vv = static_cast<int>(V / VEC);  // the host checks V / VEC < 2^31
  const int bs = blockDim.x, tid = threadIdx.x, lane = tid & 31, wid = tid >> 5, nw = bs >> 5;
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const P* xr = reinterpret_cast<const P*>(logits + r * V);
    // The target goes to shared memory asynchronously (no register held across the loop: ≤ 32 registers).
    if (tid == 0) cp_async_to_shared<sizeof(I)>(&sh_t, targets + r);
    float M = -INFINITY, s = 0.0f;
    for (int i0 = tid; i0 < Vv; i0 += B * bs) {
      P pk[B];  // all loads of the batch are issued before any is used
#pragma unroll
      for (int j = 0; j < B; ++j)
        if (i0 + j * bs < Vv) pk[j] = xr[i0 + j * bs];
#pragma unroll
      for (int j = 0; j < B; ++j) {
        if (i0 + j * bs >= Vv) break;
        float z[VEC];
        unpack_f32(pk[j], z);
        float pm = z[0];
#pragma unroll
        for (int k = 1; k < VEC; ++k) pm = fmaxf(pm, z[k]);  // NaNs ignored here, propagated by the sum below
        if (pm == -INFINITY) continue;                        // every logit of the pack is masked
        const float pM = pm * kLog2e;
        if (pM > M) {  // M = −inf: s is 0 (or NaN, kept: 0·NaN)
          s *= ex2_approx(M - pM);
          M = pM;
        }
        // M is finite or +inf here (or −inf with a NaN pack max: the sum turns NaN), so a −inf logit adds
        // ex2(−inf) = 0 exactly.
        const float nM = -M;
        float a0 = 0.0f, a1 = 0.0f;
#pragma unroll
        for (int k = 0; k < VEC; k += 2) {
          a0 += ex2_approx(fmaf(z[k], kLog2e, nM));
          if (k + 1 < VEC) a1 += ex2_approx(fmaf(z[k + 1], kLog2e, nM));
        }
        s += a0 + a1;
      }
    }
    bool valid = false;
    float zt = 0.0f;
    if (tid == 0) {
      cp_async_wait_all();  // landed long ago; only this thread reads sh_t
      const int64_t t = static_cast<int64_t>(sh_t);
      valid = t != ignore_index && t >= 0 && t < V;
      if (valid) zt = to_acc(logits[r * V + t]);  // in flight during the reduction
    }
    warp_lse2(M, s);
    if (nw > 1) {
      __syncthreads();  // shm/shs of the previous row are read
      if (lane == 0) {
        shm[wid] = M;
        shs[wid] = s;
      }
      __syncthreads();
      if (wid == 0) {
        M = lane < nw ? shm[lane] : -INFINITY;
        s = lane < nw ? shs[lane] : 0.0f;
        warp_lse2(M, s);
      }
    }
    if (tid == 0) {
      const float l = (M + ::log2f(s)) * 0.6931471805599453f;
      lse[r] = l;
      row_loss[r] = valid ? static_cast<double>(l) - static_cast<double>(zt) : 0.0;
    }
  }
}

// One block: loss = Σ_{valid} row_loss / n_valid (double, fixed order); info = {first bad row or −1, its value,
// n_valid}.
template <typename I, typename S>
__global__ void cross_entropy_finalize_kernel(const double* __restrict__ row_loss, const I* __restrict__ targets,
                                              S* __restrict__ loss, long long* __restrict__ info, int64_t N,
                                              int64_t V, int64_t ignore_index) {
  __shared__ double shd[32];
  __shared__ long long shl[32];
  double total = 0.0;
  long long count = 0, bad = LLONG_MAX;
  for (int64_t r = threadIdx.x; r < N; r += blockDim.x) {
    const int64_t t = static_cast<int64_t>(targets[r]);
    if (t == ignore_index) continue;
    if (t < 0 || t >= V) {
      bad = min(bad, static_cast<long long>(r));
      continue;
    }
    total += row_loss[r];
    ++count;
  }
  total = block_sum(total, shd);
  count = block_sum(count, shl);
  bad = block_reduce(bad, shl, LLONG_MAX, MinOp{});
  if (threadIdx.x == 0) {
    loss[0] = static_cast<S>(count > 0 ? total / static_cast<double>(count) : 0.0);
    info[0] = bad == LLONG_MAX ? -1 : bad;
    info[1] = bad == LLONG_MAX ? 0 : static_cast<long long>(targets[bad]);
    info[2] = count;
  }
}

// One block: n_valid = #rows whose target is not ignore_index and in [0, V).
template <typename I>
__global__ void cross_entropy_count_kernel(const I* __restrict__ targets, long long* __restrict__ n_valid, int64_t N,
                                           int64_t V, int64_t ignore_index) {
  __shared__ long long shl[32];
  long long count = 0;
  for (int64_t r = threadIdx.x; r < N; r += blockDim.x) {
    const int64_t t = static_cast<int64_t>(targets[r]);
    count += (t != ignore_index && t >= 0 && t < V) ? 1 : 0;
  }
  count = block_sum(count, shl);
  if (threadIdx.x == 0) *n_valid = count;
}

// dlogits[r, v] = (exp(logits[r, v] − lse_r) − [v = t_r]) · gloss / n_valid; zero rows for ignored targets.
template <typename T, typename I, int VEC>
__global__ void cross_entropy_bwd_kernel(const T* __restrict__ logits, const I* __restrict__ targets,
                                         const acc_t<T>* __restrict__ lse, const acc_t<T>* __restrict__ gloss,
                                         const long long* __restrict__ n_valid, T* __restrict__ dlogits, int64_t N,
                                         int64_t V, int64_t ignore_index) {
  using A = acc_t<T>;
  using P = Pack<T, VEC>;
  const long long nv = *n_valid;
  const A scale = nv > 0 ? static_cast<A>(static_cast<double>(*gloss) / static_cast<double>(nv)) : A(0);
  const int64_t Vv = V / VEC;
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const int64_t t = static_cast<int64_t>(targets[r]);
    const bool zero = t == ignore_index || scale == A(0);
    const P* xr = reinterpret_cast<const P*>(logits + r * V);
    P* dr = reinterpret_cast<P*>(dlogits + r * V);
    if (zero) {
      P o;
#pragma unroll
      for (int k = 0; k < VEC; ++k) o.v[k] = from_acc<T>(A(0));
      for (int64_t i = threadIdx.x; i < Vv; i += blockDim.x) dr[i] = o;
      continue;
    }
    const A l = lse[r];
    for (int64_t i = threadIdx.x; i < Vv; i += blockDim.x) {
      const P p = xr[i];
      P o;
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        A q = exp_a(to_acc(p.v[k]) - l);
        if (i * VEC + k == t) q -= A(1);
        o.v[k] = from_acc<T>(q * scale);
      }
      dr[i] = o;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// kernels: L2 normalisation

template <typename T, int VEC>
__global__ void l2_normalize_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, acc_t<T>* __restrict__ norm,
                                        int64_t N, int64_t D, double eps, bool cache) {
  using A = acc_t<T>;
  using P = Pack<T, VEC>;
  __shared__ A red[32];
  P* cx = row_cache<P>();
  const int64_t Dv = D / VEC;
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const P* xr = reinterpret_cast<const P*>(x + r * D);
    const A ss = row_sum_squares<T, VEC>(xr, Dv, cache, cx, red);
    const double nrm = ::sqrt(static_cast<double>(ss));
    if (threadIdx.x == 0) norm[r] = static_cast<A>(nrm);
    const A inv = static_cast<A>(1.0 / (nrm > eps ? nrm : eps));
    P* yr = reinterpret_cast<P*>(y + r * D);
    for (int64_t i = threadIdx.x; i < Dv; i += blockDim.x) {
      const P p = cache ? cx[i] : xr[i];
      P o;
#pragma unroll
      for (int k = 0; k < VEC; ++k) o.v[k] = from_acc<T>(to_acc(p.v[k]) * inv);
      yr[i] = o;
    }
  }
}

// norm > eps: dx = (g − y · <g, y>) / norm;  norm ≤ eps: dx = g / eps.
template <typename T, int VEC>
__global__ void l2_normalize_bwd_kernel(const T* __restrict__ gy, const T* __restrict__ y,
                                        const acc_t<T>* __restrict__ norm, T* __restrict__ dx, int64_t N, int64_t D,
                                        double eps, bool cache) {
  using A = acc_t<T>;
  using P = Pack<T, VEC>;
  __shared__ A red[32];
  const int64_t Dv = D / VEC;
  P* cg = row_cache<P>();
  P* cy = cg + Dv;
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const P* gr = reinterpret_cast<const P*>(gy + r * D);
    const P* yr = reinterpret_cast<const P*>(y + r * D);
    A dot = 0;
    for (int64_t i = threadIdx.x; i < Dv; i += blockDim.x) {
      const P g = gr[i], yv = yr[i];
      if (cache) {
        cg[i] = g;
        cy[i] = yv;
      }
#pragma unroll
      for (int k = 0; k < VEC; ++k) dot += to_acc(g.v[k]) * to_acc(yv.v[k]);
    }
    dot = block_sum(dot, red);
    const double nrm = static_cast<double>(norm[r]);
    const bool clamped = !(nrm > eps);
    const A inv = static_cast<A>(1.0 / (clamped ? eps : nrm));
    P* dr = reinterpret_cast<P*>(dx + r * D);
    for (int64_t i = threadIdx.x; i < Dv; i += blockDim.x) {
      const P g = cache ? cg[i] : gr[i];
      const P yv = cache ? cy[i] : yr[i];
      P o;
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const A gk = to_acc(g.v[k]);
        o.v[k] = from_acc<T>(clamped ? gk * inv : (gk - to_acc(yv.v[k]) * dot) * inv);
      }
      dr[i] = o;
    }
  }
}

// Short rows (≤ 32 packs, e.g. one 64-wide head vector in 8 packs): a group of G lanes per row (G a power of two
// ≥ the packs), 256 / G rows per block, one row per group (no grid stride, so every lane reaches the shuffles), sums
// by a butterfly inside the group. The same formulas as the block kernels above.
template <typename T, int VEC, int G>
__global__ void __launch_bounds__(256) l2_normalize_fwd_group_kernel(const T* __restrict__ x, T* __restrict__ y,
                                                                     acc_t<T>* __restrict__ norm, int64_t N,
                                                                     int64_t D, double eps) {
  using A = acc_t<T>;
  using P = Pack<T, VEC>;
  const int64_t r = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / G;
  const int lane = threadIdx.x % G;
  const bool live = r < N && lane < D / VEC;
  P p{};
  A ss = 0;
  if (live) {
    p = reinterpret_cast<const P*>(x + r * D)[lane];
#pragma unroll
    for (int k = 0; k < VEC; ++k) ss += to_acc(p.v[k]) * to_acc(p.v[k]);
  }
#pragma unroll
  for (int o = G / 2; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o, G);
  const double nrm = ::sqrt(static_cast<double>(ss));
  if (r < N && lane == 0) norm[r] = static_cast<A>(nrm);
  if (!live) return;
  const A inv = static_cast<A>(1.0 / (nrm > eps ? nrm : eps));
  P o;
#pragma unroll
  for (int k = 0; k < VEC; ++k) o.v[k] = from_acc<T>(to_acc(p.v[k]) * inv);
  reinterpret_cast<P*>(y + r * D)[lane] = o;
}

template <typename T, int VEC, int G>
__global__ void __launch_bounds__(256) l2_normalize_bwd_group_kernel(const T* __restrict__ gy,
                                                                     const T* __restrict__ y,
                                                                     const acc_t<T>* __restrict__ norm,
                                                                     T* __restrict__ dx, int64_t N, int64_t D,
                                                                     double eps) {
  using A = acc_t<T>;
  using P = Pack<T, VEC>;
  const int64_t r = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / G;
  const int lane = threadIdx.x % G;
  const bool live = r < N && lane < D / VEC;
  P g{}, yv{};
  A dot = 0;
  if (live) {
    g = reinterpret_cast<const P*>(gy + r * D)[lane];
    yv = reinterpret_cast<const P*>(y + r * D)[lane];
#pragma unroll
    for (int k = 0; k < VEC; ++k) dot += to_acc(g.v[k]) * to_acc(yv.v[k]);
  }
#pragma unroll
  for (int o = G / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o, G);
  if (!live) return;
  const double nrm = static_cast<double>(norm[r]);
  const bool clamped = !(nrm > eps);
  const A inv = static_cast<A>(1.0 / (clamped ? eps : nrm));
  P o;
#pragma unroll
  for (int k = 0; k < VEC; ++k) {
    const A gk = to_acc(g.v[k]);
    o.v[k] = from_acc<T>(clamped ? gk * inv : (gk - to_acc(yv.v[k]) * dot) * inv);
  }
  reinterpret_cast<P*>(dx + r * D)[lane] = o;
}

// ---------------------------------------------------------------------------------------------------------
// kernels: rotary

// cos_t/sin_t (T, H): exactly the values the CPU path multiplies by (fused.h precision rules).
template <typename T>
__global__ void rotary_table_kernel(const float* __restrict__ inv_freq, acc_t<T>* __restrict__ cos_t,
                                    acc_t<T>* __restrict__ sin_t, int64_t T_len, int64_t H, int64_t position_offset) {
  const int64_t n = T_len * H;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = idx / H, i = idx % H;
    if constexpr (std::is_same_v<T, double>) {
      const double theta = static_cast<double>(position_offset + t) * static_cast<double>(inv_freq[i]);
      cos_t[idx] = ::cos(theta);
      sin_t[idx] = ::sin(theta);
    } else {
      const float theta = __fmul_rn(static_cast<float>(position_offset + t), inv_freq[i]);
      const float c = ::cosf(theta), s = ::sinf(theta);
      cos_t[idx] = static_cast<float>(static_cast<compute_t<T>>(T(c)));  // rounded to the activation dtype
      sin_t[idx] = static_cast<float>(static_cast<compute_t<T>>(T(s)));
    }
  }
}

// y_i = x_i c − x_{i+H} s',  y_{i+H} = x_{i+H} c + x_i s'  with s' = sign · s. One thread per (row, VEC pairs).
template <typename T, int VEC>
__global__ void rotary_apply_kernel(const T* __restrict__ x, T* __restrict__ y, const acc_t<T>* __restrict__ cos_t,
                                    const acc_t<T>* __restrict__ sin_t, int64_t rows, int64_t T_len, int64_t H,
                                    acc_t<T> sign) {
  using A = acc_t<T>;
  using P = Pack<T, VEC>;
  const int64_t Hv = H / VEC, n = rows * Hv;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / Hv, iv = idx % Hv, t = r % T_len;
    const T* xr = x + r * 2 * H;
    T* yr = y + r * 2 * H;
    const P a = *reinterpret_cast<const P*>(xr + iv * VEC);
    const P b = *reinterpret_cast<const P*>(xr + H + iv * VEC);
    P oa, ob;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const int64_t ti = t * H + iv * VEC + k;
      const A c = cos_t[ti], s = sign * sin_t[ti];
      const A av = to_acc(a.v[k]), bv = to_acc(b.v[k]);
      oa.v[k] = from_acc<T>(av * c - bv * s);
      ob.v[k] = from_acc<T>(bv * c + av * s);
    }
    *reinterpret_cast<P*>(yr + iv * VEC) = oa;
    *reinterpret_cast<P*>(yr + H + iv * VEC) = ob;
  }
}

// ---------------------------------------------------------------------------------------------------------
// kernels: causal depthwise conv1d

struct ConvDims {
  int64_t B, T, C, K;
};

// xp[b, c, s]: cache[b, c, s] for s < K−1 (0 without a cache), x[b, s−K+1, c] after.
template <typename T>
__device__ __forceinline__ acc_t<T> conv_xp(const T* x, const T* cache, const ConvDims& d, int64_t b, int64_t c,
                                            int64_t s) {
  const int64_t Km1 = d.K - 1;
  if (s < Km1) return cache ? to_acc(cache[(b * d.C + c) * Km1 + s]) : acc_t<T>(0);
  return to_acc(x[(b * d.T + (s - Km1)) * d.C + c]);
}

// dxp[b, c, s] = Σ_j w[c, j] gy[b, s − j, c] (0 ≤ s − j < T) + gnc[b, c, s − T] (s ≥ T).
template <typename T>
__device__ __forceinline__ acc_t<T> conv_dxp(const T* gy, const T* gnc, const T* w, const ConvDims& d, int64_t b,
                                             int64_t c, int64_t s) {
  acc_t<T> acc = 0;
  for (int64_t j = 0; j < d.K; ++j) {
    const int64_t tt = s - j;
    if (tt >= 0 && tt < d.T) acc += to_acc(w[c * d.K + j]) * to_acc(gy[(b * d.T + tt) * d.C + c]);
  }
  if (gnc && s >= d.T) acc += to_acc(gnc[(b * d.C + c) * (d.K - 1) + (s - d.T)]);
  return acc;
}

// Forward and backward tile: a thread owns V channels (one pack) and a run of kConvRun consecutive tokens of one
// batch row; a block is kConvPacks channel packs (x, consecutive lanes read consecutive packs) × kConvRuns runs (y).
// The K taps sit in a KM-row register window (KM ≥ K, compile-time, so the window shifts by renaming); taps beyond
// K get weight 0, which keeps K a run-time value.
constexpr int kConvRun = 16;
constexpr int kConvPacks = 32;
constexpr int kConvRuns = 8;

template <typename T, int V>
__device__ __forceinline__ void load_pack(acc_t<T> (&out)[V], const T* p) {
  const Pack<T, V> v = *reinterpret_cast<const Pack<T, V>*>(p);
#pragma unroll
  for (int i = 0; i < V; ++i) out[i] = to_acc(v.v[i]);
}

// xp[b, s, c..c+V−1] (s < K−1: the cache, channel-major; else x row s − K + 1); zeros outside [0, K−1+T).
template <typename T, int V>
__device__ __forceinline__ void load_xp(acc_t<T> (&out)[V], const T* x, const T* cache, const ConvDims& d,
                                        int64_t b, int64_t c, int64_t s) {
  const int64_t Km1 = d.K - 1;
  if (s >= Km1 && s < Km1 + d.T) {
    load_pack<T, V>(out, x + (b * d.T + (s - Km1)) * d.C + c);
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) out[i] = (s >= 0 && s < Km1 && cache) ? to_acc(cache[(b * d.C + c + i) * Km1 + s]) : 0;
  }
}

// wr[i][v] = w[c + v, K − KM + i] (0 for i < KM − K): taps aligned to the newest row of a right-aligned window.
template <typename T, int V, int KM>
__device__ __forceinline__ void load_taps(acc_t<T> (&wr)[KM][V], const T* w, int64_t c, int64_t K) {
#pragma unroll
  for (int i = 0; i < KM; ++i)
#pragma unroll
    for (int v = 0; v < V; ++v) wr[i][v] = i >= KM - K ? to_acc(w[(c + v) * K + (K - KM + i)]) : acc_t<T>(0);
}

// y[b, t, c] = bias[c] + Σ_j w[c, j] xp[b, t + j, c]   (xp = [cache | x] along time).
template <typename T, int V, int KM>
__global__ void __launch_bounds__(kConvPacks * kConvRuns) conv_fwd_kernel(const T* __restrict__ x,
    const T* __restrict__ w, const T* __restrict__ bias, const T* __restrict__ cache, T* __restrict__ y, ConvDims d) {
  using A = acc_t<T>;
  const int64_t c = (blockIdx.x * int64_t(kConvPacks) + threadIdx.x) * V, b = blockIdx.z;
  const int64_t t0 = (blockIdx.y * int64_t(kConvRuns) + threadIdx.y) * kConvRun;
  if (c >= d.C || t0 >= d.T) return;
  A wr[KM][V], win[KM][V], bv[V];
  load_taps<T, V, KM>(wr, w, c, d.K);
#pragma unroll
  for (int v = 0; v < V; ++v) bv[v] = bias ? to_acc(bias[c + v]) : A(0);
  // window row i holds xp[t + K − KM + i] for output t; prefill rows 1..KM−1 for t = t0
#pragma unroll
  for (int i = 1; i < KM; ++i) load_xp<T, V>(win[i], x, cache, d, b, c, t0 + d.K - KM + i - 1);
#pragma unroll
  for (int r = 0; r < kConvRun; ++r) {
    const int64_t t = t0 + r;
    if (t >= d.T) break;
#pragma unroll
    for (int i = 0; i + 1 < KM; ++i)
#pragma unroll
      for (int v = 0; v < V; ++v) win[i][v] = win[i + 1][v];
    load_xp<T, V>(win[KM - 1], x, cache, d, b, c, t + d.K - 1);
    Pack<T, V> out;
#pragma unroll
    for (int v = 0; v < V; ++v) {
      A acc = bv[v];
#pragma unroll
      for (int i = 0; i < KM; ++i) acc += wr[i][v] * win[i][v];
      out.v[v] = from_acc<T>(acc);
    }
    *reinterpret_cast<Pack<T, V>*>(y + (b * d.T + t) * d.C + c) = out;
  }
}

// new_cache[b, c, m] = xp[b, c, T + m].
template <typename T>
__global__ void conv_new_cache_kernel(const T* __restrict__ x, const T* __restrict__ cache, T* __restrict__ nc,
                                      ConvDims d) {
  const int64_t Km1 = d.K - 1, n = d.B * d.C * Km1;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = idx % Km1, bc = idx / Km1, c = bc % d.C, b = bc / d.C;
    nc[idx] = from_acc<T>(conv_xp(x, cache, d, b, c, d.T + m));
  }
}

template <typename T>
__global__ void conv_bwd_dcache_kernel(const T* __restrict__ gy, const T* __restrict__ gnc, const T* __restrict__ w,
                                       T* __restrict__ dcache, ConvDims d) {
  const int64_t Km1 = d.K - 1, n = d.B * d.C * Km1;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t s = idx % Km1, bc = idx / Km1, c = bc % d.C, b = bc / d.C;
    dcache[idx] = from_acc<T>(conv_dxp(gy, gnc, w, d, b, c, s));
  }
}

// dx and the dw/dbias partials in one pass, tiled as the forward:
//   dx[b, t, c] = Σ_j w[c, j] gy[b, t + K − 1 − j, c] (rows < T) + gnc[b, c, t + K − 1 − T] (t + K − 1 ≥ T);
//   partial[chunk, j, c] = Σ_{t in the block's runs} gy[b, t, c] · (j < K ? xp[b, t + j, c] : 1), chunk =
//   b · gridDim.y + blockIdx.y, summed over the block's runs in run order through shared memory (deterministic).
// gy sits in a left-aligned window (row i = gy[t + i], tap weight w[K − 1 − i]); xp in the forward's window.
template <typename T, int V, int KM>
__global__ void __launch_bounds__(kConvPacks * kConvRuns) conv_bwd_kernel(const T* __restrict__ gy,
    const T* __restrict__ gnc, const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ cache,
    T* __restrict__ dx, acc_t<T>* __restrict__ partial, ConvDims d, int taps) {
  using A = acc_t<T>;
  __shared__ A red[kConvRuns][kConvPacks * V];
  const int64_t c = (blockIdx.x * int64_t(kConvPacks) + threadIdx.x) * V, b = blockIdx.z;
  const int64_t t0 = (blockIdx.y * int64_t(kConvRuns) + threadIdx.y) * kConvRun;
  const bool live = c < d.C && t0 < d.T;
  A acc[KM + 1][V] = {};  // acc[i]: Σ gy[t] xp-window row i; acc[KM]: Σ gy[t]
  if (live) {
    A wr[KM][V], wl[KM][V], xw[KM][V], gw[KM][V];
    load_taps<T, V, KM>(wr, w, c, d.K);
#pragma unroll
    for (int i = 0; i < KM; ++i)
#pragma unroll
      for (int v = 0; v < V; ++v) wl[i][v] = wr[KM - 1 - i][v];  // w[K − 1 − i], 0 for i ≥ K
    const auto load_gy = [&](A (&out)[V], int64_t u) {
      if (u < d.T) {
        load_pack<T, V>(out, gy + (b * d.T + u) * d.C + c);
      } else {
#pragma unroll
        for (int v = 0; v < V; ++v) out[v] = 0;
      }
    };
#pragma unroll
    for (int i = 1; i < KM; ++i) load_xp<T, V>(xw[i], x, cache, d, b, c, t0 + d.K - KM + i - 1);
#pragma unroll
    for (int i = 0; i + 1 < KM; ++i) load_gy(gw[i], t0 + i);
#pragma unroll
    for (int r = 0; r < kConvRun; ++r) {
      const int64_t t = t0 + r;
      if (t >= d.T) break;
#pragma unroll
      for (int i = 0; i + 1 < KM; ++i)
#pragma unroll
        for (int v = 0; v < V; ++v) xw[i][v] = xw[i + 1][v];
      load_xp<T, V>(xw[KM - 1], x, cache, d, b, c, t + d.K - 1);
      load_gy(gw[KM - 1], t + KM - 1);
      const int64_t tail = t + d.K - 1 - d.T;  // ≥ 0: x[t] also feeds new_cache[tail]
      Pack<T, V> out;
#pragma unroll
      for (int v = 0; v < V; ++v) {
        A g = 0;
#pragma unroll
        for (int i = 0; i < KM; ++i) g += wl[i][v] * gw[i][v];
        if (gnc && tail >= 0) g += to_acc(gnc[(b * d.C + c + v) * (d.K - 1) + tail]);
        out.v[v] = from_acc<T>(g);
#pragma unroll
        for (int i = 0; i < KM; ++i) acc[i][v] += gw[0][v] * xw[i][v];
        acc[KM][v] += gw[0][v];
      }
      *reinterpret_cast<Pack<T, V>*>(dx + (b * d.T + t) * d.C + c) = out;
#pragma unroll
      for (int i = 0; i + 1 < KM; ++i)
#pragma unroll
        for (int v = 0; v < V; ++v) gw[i][v] = gw[i + 1][v];
    }
  }
  // taps j < K are window rows KM − K + j; tap K (when taps > K) is the bias
  const int64_t chunk = b * gridDim.y + blockIdx.y;
  for (int j = 0; j < taps; ++j) {
    const int row = j < d.K ? static_cast<int>(KM - d.K + j) : KM;
#pragma unroll
    for (int v = 0; v < V; ++v) {
      A val = 0;
#pragma unroll
      for (int i = 0; i <= KM; ++i) val = i == row ? acc[i][v] : val;
      red[threadIdx.y][threadIdx.x * V + v] = val;
    }
    __syncthreads();
    if (threadIdx.y == 0) {
#pragma unroll
      for (int v = 0; v < V; ++v) {
        if (c + v >= d.C) break;
        A sum = 0;
#pragma unroll
        for (int y = 0; y < kConvRuns; ++y) sum += red[y][threadIdx.x * V + v];
        partial[(chunk * taps + j) * d.C + c + v] = sum;
      }
    }
    __syncthreads();
  }
}

// dw[c, j] / dbias[c] = Σ_chunk partial[chunk, j, c] in chunk order.
template <typename T>
__global__ void conv_dw_finalize_kernel(const acc_t<T>* __restrict__ partial, T* __restrict__ dw, T* __restrict__ dbias,
                                        int64_t chunks, int64_t taps, ConvDims d) {
  using A = acc_t<T>;
  const int64_t n = taps * d.C;
  for (int64_t m = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; m < n; m += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = m / d.C, c = m % d.C;
    A s = 0;
    for (int64_t ch = 0; ch < chunks; ++ch) s += partial[ch * n + m];
    if (j < d.K) {
      dw[c * d.K + j] = from_acc<T>(s);
    } else {
      dbias[c] = from_acc<T>(s);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// kernels: SwiGLU gating on u = [g | a] rows of 2F (packs of VEC columns; one row offset division per pack)

template <typename T, int VEC>
__global__ void swiglu_fwd_kernel(const T* __restrict__ u, T* __restrict__ y, int64_t N, int64_t F) {
  using A = acc_t<T>;
  const int64_t pf = F / VEC, n = N * pf;
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < n; p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = p / pf, j = (p - r * pf) * VEC;
    const Pack<T, VEC> g = *reinterpret_cast<const Pack<T, VEC>*>(u + r * 2 * F + j);
    const Pack<T, VEC> a = *reinterpret_cast<const Pack<T, VEC>*>(u + r * 2 * F + F + j);
    Pack<T, VEC> o;
#pragma unroll
    for (int k = 0; k < VEC; ++k) o.v[k] = from_acc<T>(fn::Silu{}(to_acc(g.v[k])) * to_acc(a.v[k]));
    *reinterpret_cast<Pack<T, VEC>*>(y + r * F + j) = o;
  }
}

template <typename T, int VEC>
__global__ void swiglu_bwd_kernel(const T* __restrict__ gy, const T* __restrict__ u, T* __restrict__ du, int64_t N,
                                  int64_t F) {
  using A = acc_t<T>;
  const int64_t pf = F / VEC, n = N * pf;
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < n; p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = p / pf, j = (p - r * pf) * VEC;
    const Pack<T, VEC> g = *reinterpret_cast<const Pack<T, VEC>*>(u + r * 2 * F + j);
    const Pack<T, VEC> a = *reinterpret_cast<const Pack<T, VEC>*>(u + r * 2 * F + F + j);
    const Pack<T, VEC> d = *reinterpret_cast<const Pack<T, VEC>*>(gy + r * F + j);
    Pack<T, VEC> dg, da;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const A gk = to_acc(g.v[k]), dk = to_acc(d.v[k]);
      dg.v[k] = from_acc<T>(fn::SiluGrad{}(dk * to_acc(a.v[k]), gk));
      da.v[k] = from_acc<T>(dk * fn::Silu{}(gk));
    }
    *reinterpret_cast<Pack<T, VEC>*>(du + r * 2 * F + j) = dg;
    *reinterpret_cast<Pack<T, VEC>*>(du + r * 2 * F + F + j) = da;
  }
}

// ---------------------------------------------------------------------------------------------------------
// kernels: AdamW update (one pass over p, g, m, v; packs of VEC parameters when everything is aligned)

template <typename T, int VEC>
__global__ void adamw_kernel(T* __restrict__ p, const T* __restrict__ g, acc_t<T>* __restrict__ m,
                             acc_t<T>* __restrict__ v, int64_t npacks, AdamWElem<acc_t<T>> f) {
  using A = acc_t<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < npacks; i += int64_t(gridDim.x) * blockDim.x) {
    Pack<T, VEC> pp = reinterpret_cast<Pack<T, VEC>*>(p)[i];
    const Pack<T, VEC> gp = reinterpret_cast<const Pack<T, VEC>*>(g)[i];
    Pack<A, VEC> mp = reinterpret_cast<Pack<A, VEC>*>(m)[i], vp = reinterpret_cast<Pack<A, VEC>*>(v)[i];
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      A pv = to_acc(pp.v[k]);
      f(pv, to_acc(gp.v[k]), mp.v[k], vp.v[k]);
      pp.v[k] = from_acc<T>(pv);
    }
    reinterpret_cast<Pack<T, VEC>*>(p)[i] = pp;
    reinterpret_cast<Pack<A, VEC>*>(m)[i] = mp;
    reinterpret_cast<Pack<A, VEC>*>(v)[i] = vp;
  }
}

// out = x + y with y widened to float32 (the mixed-precision residual add): packs of VEC elements.
template <int VEC>
__global__ void add_cast_kernel(const float* __restrict__ x, const BFloat16* __restrict__ y, float* __restrict__ out,
                                int64_t npacks) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < npacks; i += int64_t(gridDim.x) * blockDim.x) {
    Pack<float, VEC> a = reinterpret_cast<const Pack<float, VEC>*>(x)[i];
    const Pack<BFloat16, VEC> b = reinterpret_cast<const Pack<BFloat16, VEC>*>(y)[i];
#pragma unroll
    for (int k = 0; k < VEC; ++k) a.v[k] += to_acc(b.v[k]);
    reinterpret_cast<Pack<float, VEC>*>(out)[i] = a;
  }
}

// ---------------------------------------------------------------------------------------------------------
// launch helpers

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Whether the row kernels may use VEC-wide packs: width divisible and every base pointer 16-byte aligned.
template <typename T>
bool vec_ok(int64_t width, std::initializer_list<const void*> ptrs) {
  if (width % kVec<T> != 0) return false;
  for (const void* p : ptrs)
    if (!aligned16(p)) return false;
  return true;
}

// Calls f.template operator()<VEC>() with VEC = kVec<T> or 1.
template <typename T, typename F>
void with_vec(bool use_vec, F&& f) {
  if (use_vec) {
    f.template operator()<kVec<T>>();
  } else {
    f.template operator()<1>();
  }
}

// The group-per-row launch of short rows (packs ≤ 32): calls f.template operator()<G>(grid) with G lanes per row
// (8, 16 or 32) and one 256-thread block per 256 / G rows; false (nothing launched) for longer rows.
template <typename F>
bool with_row_group(int64_t N, int64_t packs, F&& f) {
  if (packs > 32 || N > (int64_t{1} << 31) / 32 * 8) return false;
  const auto go = [&]<int G>() { f.template operator()<G>(static_cast<unsigned>((N * G + 255) / 256)); };
  if (packs <= 8) {
    go.template operator()<8>();
  } else if (packs <= 16) {
    go.template operator()<16>();
  } else {
    go.template operator()<32>();
  }
  return true;
}

struct RowLaunch {
  unsigned grid;
  int threads;
  std::size_t smem;
  bool cache;
};
// One block per row (grid-stride beyond 2^22 rows); threads cover the packs of a row, a multiple of 32.
// n_cached rows of `width` elements of `elem` bytes go to shared memory when they fit.
RowLaunch row_launch(int64_t N, int64_t packs, int64_t width, std::size_t elem, int n_cached) {
  RowLaunch l{};
  l.grid = static_cast<unsigned>(std::min<int64_t>(N, int64_t{1} << 22));
  l.threads = static_cast<int>(std::clamp<int64_t>((packs + 31) / 32 * 32, 32, kMaxRowThreads));
  const int64_t bytes = static_cast<int64_t>(n_cached) * width * static_cast<int64_t>(elem);
  l.cache = n_cached > 0 && bytes <= kRowCacheBytes;
  l.smem = l.cache ? static_cast<std::size_t>(bytes) : 0;
  return l;
}

// Row chunks of the deterministic column sums: depends only on the row count.
int64_t col_chunks(int64_t rows) {
  return std::clamp<int64_t>((rows + kMinRowsPerChunk - 1) / kMinRowsPerChunk, 1, kMaxChunks);
}

// Blocks of Kernel (Threads per block, no dynamic shared memory) resident on the current device at once: SM count
// (cached per device) × blocks per SM (cached per kernel instantiation).
int sm_count() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices] = {};
  int dev = 0;
  HYDRA_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev < 0 || dev >= kMaxDevices) {
    int n = 0;
    HYDRA_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return std::max(n, 1);
  }
  int n = cache[dev].load(std::memory_order_relaxed);
  if (n == 0) {
    HYDRA_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    n = std::max(n, 1);
    cache[dev].store(n, std::memory_order_relaxed);
  }
  return n;
}

template <auto Kernel, int Threads, std::size_t Smem = 0>
int64_t resident_blocks() {
  static std::atomic<int> cached{0};  // blocks per SM: a property of the kernel and the (single) architecture
  int per_sm = cached.load(std::memory_order_relaxed);
  if (per_sm == 0) {
    HYDRA_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, Kernel, Threads, Smem));
    per_sm = std::max(per_sm, 1);
    cached.store(per_sm, std::memory_order_relaxed);
  }
  return static_cast<int64_t>(per_sm) * sm_count();
}

DType stat_dtype_of(DType t) { return t == DType::Float64 ? DType::Float64 : DType::Float32; }

template <typename T, typename OT>
void launch_rms_norm_forward(const Tensor& x, const Tensor& w, const Tensor& y, const Tensor& rstd, double eps) {
  using A = acc_t<T>;
  const int64_t D = x.size(-1), N = D > 0 ? x.numel() / D : 0;
  HYDRA_CHECK(x.is_contiguous() && w.is_contiguous() && y.is_contiguous() && rstd.is_contiguous(),
              "rms_norm_forward (cuda): operands must be contiguous (x shape {})", shape_str(x.shape()));
  if (N == 0) return;
  const bool v = vec_ok<T>(D, {x.raw_data(), w.raw_data(), y.raw_data()});
  cudaStream_t s = stream_of(x);
  with_vec<T>(v, [&]<int VEC>() {
    const int64_t packs = D / VEC;
    if (packs <= 32 * kRmsWarpMaxNP) {
      constexpr int64_t kRows = kRmsWarpThreads / 32;
      const auto go = [&]<int NP>() {
        // One block per kRows rows (not a persistent grid: the block scheduler evens out the last wave; measured on
        // an H100 at 32768×768, float32 89% → 95% of the copy, bfloat16 unchanged at 81–82%).
        const unsigned grid = static_cast<unsigned>(std::min<int64_t>((N + kRows - 1) / kRows, INT_MAX));
        rms_norm_fwd_warp_kernel<T, OT, VEC, NP><<<grid, kRmsWarpThreads, 0, s>>>(
            static_cast<const T*>(x.raw_data()), static_cast<const T*>(w.raw_data()), static_cast<OT*>(y.raw_data()),
            static_cast<A*>(rstd.raw_data()), N, D, eps);
      };
      // NP = the packs per lane rounded up to {1, 2, 3, 4, 6, 8}: no idle register packs (D = 768 bf16: 3).
      if (packs <= 32) go.template operator()<1>();
      else if (packs <= 64) go.template operator()<2>();
      else if (packs <= 96) go.template operator()<3>();
      else if (packs <= 128) go.template operator()<4>();
      else if (packs <= 192) go.template operator()<6>();
      else go.template operator()<8>();
      return;
    }
    // Long rows: the block kernel writes x's dtype; another output dtype goes through a temporary and a cast.
    const Tensor yt = std::is_same_v<T, OT> ? y : empty(y.shape(), x.dtype(), x.device());
    const RowLaunch l = row_launch(N, D / VEC, D, sizeof(T), 1);
    rms_norm_fwd_kernel<T, VEC><<<l.grid, l.threads, l.smem, s>>>(
        static_cast<const T*>(x.raw_data()), static_cast<const T*>(w.raw_data()), static_cast<T*>(yt.raw_data()),
        static_cast<A*>(rstd.raw_data()), N, D, eps, l.cache);
    if constexpr (!std::is_same_v<T, OT>) copy(y, yt);
  });
  HYDRA_CUDA_CHECK_LAUNCH("rms_norm_forward");
}

template <typename T, typename G>
void launch_rms_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dx,
                              const Tensor& dw) {
  using A = acc_t<T>;
  const int64_t D = x.size(-1), N = D > 0 ? x.numel() / D : 0;
  HYDRA_CHECK(gy.is_contiguous() && x.is_contiguous() && w.is_contiguous() && rstd.is_contiguous() &&
                  dx.is_contiguous() && dw.is_contiguous(),
              "rms_norm_backward (cuda): operands must be contiguous (x shape {})", shape_str(x.shape()));
  if (D == 0) return;
  cudaStream_t s = stream_of(x);
  if (N == 0) {  // dw = Σ over no rows
    fill(dw, 0.0);
    return;
  }
  const bool v = vec_ok<T>(D, {gy.raw_data(), x.raw_data(), w.raw_data(), dx.raw_data()});
  bool fused = false;
  with_vec<T>(v, [&]<int VEC>() {
    const int64_t packs = D / VEC;
    if (packs > 32 * 6) return;
    // One pass (rms_norm_bwd_warp_kernel). Persistent: one wave of resident blocks, each owning a contiguous range of
    // rows (a partial wave would leave most SMs idle at the end). The block count depends on N and on the device's
    // residency only, so dw is summed in the same order on every run on a given GPU model.
    fused = true;
    const auto go = [&]<int NP>() {
      constexpr auto kernel = rms_norm_bwd_warp_kernel<T, G, VEC, NP>;
      constexpr std::size_t smem = std::size_t{kRmsWarpThreads / 32} * 32 * NP * VEC * sizeof(A);  // ≤ 48 KiB
      const int64_t resident = resident_blocks<kernel, kRmsWarpThreads, smem>();
      const int64_t blocks = std::clamp<int64_t>((N + 7) / 8, 1, resident), rpb = (N + blocks - 1) / blocks;
      Tensor partial = empty({blocks, D}, stat_dtype_of(x.dtype()), x.device());
      kernel<<<static_cast<unsigned>(blocks), kRmsWarpThreads, smem, s>>>(
          static_cast<const G*>(gy.raw_data()), static_cast<const T*>(x.raw_data()),
          static_cast<const T*>(w.raw_data()), static_cast<const A*>(rstd.raw_data()), static_cast<T*>(dx.raw_data()),
          static_cast<A*>(partial.raw_data()), N, D, rpb);
      HYDRA_CUDA_CHECK_LAUNCH("rms_norm_backward (fused dx + dw partial)");
      column_finalize_kernel<T><<<static_cast<unsigned>((D + kColTile - 1) / kColTile), dim3(kColTile, kColLanes), 0, s>>>(
          static_cast<const A*>(partial.raw_data()), static_cast<T*>(dw.raw_data()), blocks, D);
    };
    if (packs <= 32) go.template operator()<1>();
    else if (packs <= 64) go.template operator()<2>();
    else if (packs <= 96) go.template operator()<3>();
    else if (packs <= 128) go.template operator()<4>();
    else go.template operator()<6>();
  });
  if (fused) {
    HYDRA_CUDA_CHECK_LAUNCH("rms_norm_backward (dw finalize)");
    return;
  }
  if constexpr (!std::is_same_v<T, G>) {  // long rows: the two-kernel path below takes gy in x's dtype
    Tensor gt = empty(gy.shape(), x.dtype(), x.device());
    copy(gt, gy);
    launch_rms_norm_backward<T, T>(gt, x, w, rstd, dx, dw);
    return;
  }
  with_vec<T>(v, [&]<int VEC>() {
    const RowLaunch l = row_launch(N, D / VEC, D, sizeof(T), 2);
    rms_norm_bwd_dx_kernel<T, VEC><<<l.grid, l.threads, l.smem, s>>>(
        static_cast<const T*>(gy.raw_data()), static_cast<const T*>(x.raw_data()), static_cast<const T*>(w.raw_data()),
        static_cast<const A*>(rstd.raw_data()), static_cast<T*>(dx.raw_data()), N, D, l.cache);
  });
  HYDRA_CUDA_CHECK_LAUNCH("rms_norm_backward (dx)");
  const int64_t chunks = col_chunks(N), rpc = (N + chunks - 1) / chunks;
  Tensor partial = empty({chunks, D}, stat_dtype_of(x.dtype()), x.device());
  const dim3 grid(static_cast<unsigned>((D + kColTile - 1) / kColTile), static_cast<unsigned>(chunks));
  rms_norm_dw_partial_kernel<T><<<grid, dim3(kColTile, kColLanes), 0, s>>>(
      static_cast<const T*>(gy.raw_data()), static_cast<const T*>(x.raw_data()), static_cast<const A*>(rstd.raw_data()),
      static_cast<A*>(partial.raw_data()), N, D, rpc);
  HYDRA_CUDA_CHECK_LAUNCH("rms_norm_backward (dw partial)");
  column_finalize_kernel<T><<<static_cast<unsigned>((D + kColTile - 1) / kColTile), dim3(kColTile, kColLanes), 0, s>>>(
      static_cast<const A*>(partial.raw_data()), static_cast<T*>(dw.raw_data()), chunks, D);
  HYDRA_CUDA_CHECK_LAUNCH("rms_norm_backward (dw finalize)");
}

template <typename T, typename I>
void launch_cross_entropy_forward(const Tensor& logits, const Tensor& targets, const Tensor& loss, const Tensor& lse,
                                  int64_t ignore_index, std::function<std::string(int64_t, int64_t)> bad_target_message) {
  using A = acc_t<T>;
  const int64_t V = logits.size(-1), N = V > 0 ? logits.numel() / V : 0;
  HYDRA_CHECK(logits.is_contiguous() && targets.is_contiguous() && lse.is_contiguous(),
              "cross_entropy_forward (cuda): operands must be contiguous (logits shape {})",
              shape_str(logits.shape()));
  HYDRA_CHECK(V >= 1, "cross_entropy_forward (cuda): V must be >= 1, logits shape {}", shape_str(logits.shape()));
  cudaStream_t s = stream_of(logits);
  Tensor row_loss = empty({std::max<int64_t>(N, 1)}, DType::Float64, logits.device());
  Tensor info = empty({3}, DType::Int64, logits.device());
  if (N > 0) {
    const bool v = vec_ok<T>(V, {logits.raw_data()});
    with_vec<T>(v, [&]<int VEC>() {
      const RowLaunch l = row_launch(N, V / VEC, V, sizeof(T), 0);
      if constexpr (std::is_same_v<A, float>) {
        HYDRA_CHECK(V / VEC <= INT_MAX, "cross_entropy_forward (cuda): V = {} too large", V);
        cross_entropy_fwd_f32_kernel<T, I, VEC, kCeBatch><<<l.grid, l.threads, 0, s>>>(
            static_cast<const T*>(logits.raw_data()), static_cast<const I*>(targets.raw_data()),
            static_cast<A*>(lse.raw_data()), static_cast<double*>(row_loss.raw_data()), N, V, ignore_index);
      } else {
        cross_entropy_fwd_kernel<T, I, VEC><<<l.grid, l.threads, 0, s>>>(
            static_cast<const T*>(logits.raw_data()), static_cast<const I*>(targets.raw_data()),
            static_cast<A*>(lse.raw_data()), static_cast<double*>(row_loss.raw_data()), N, V, ignore_index);
      }
    });
    HYDRA_CUDA_CHECK_LAUNCH("cross_entropy_forward");
  }
  cross_entropy_finalize_kernel<I, A><<<1, 1024, 0, s>>>(
      static_cast<const double*>(row_loss.raw_data()), static_cast<const I*>(targets.raw_data()),
      static_cast<A*>(loss.raw_data()), static_cast<long long*>(info.raw_data()), N, V, ignore_index);
  HYDRA_CUDA_CHECK_LAUNCH("cross_entropy_forward (mean)");
  // info = {first bad row or −1, its value, n_valid}: the verdict is read back without stopping the host.
  defer_device_check(logits.device().index, info.raw_data(), std::move(bad_target_message));
}

template <typename T, typename I>
void launch_cross_entropy_backward(const Tensor& gloss, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                                   const Tensor& dlogits, int64_t ignore_index) {
  using A = acc_t<T>;
  const int64_t V = logits.size(-1), N = V > 0 ? logits.numel() / V : 0;
  HYDRA_CHECK(logits.is_contiguous() && targets.is_contiguous() && lse.is_contiguous() && dlogits.is_contiguous(),
              "cross_entropy_backward (cuda): operands must be contiguous (logits shape {})",
              shape_str(logits.shape()));
  HYDRA_CHECK(gloss.numel() == 1, "cross_entropy_backward (cuda): gloss must have one element, got shape {}",
              shape_str(gloss.shape()));
  if (N == 0) return;
  cudaStream_t s = stream_of(logits);
  // gloss in the stat dtype, still on the device (a cast kernel at most: no host round trip).
  const Tensor g = gloss.contiguous().to(stat_dtype_of(logits.dtype()));
  Tensor n_valid = empty({1}, DType::Int64, logits.device());
  cross_entropy_count_kernel<I><<<1, 1024, 0, s>>>(static_cast<const I*>(targets.raw_data()),
                                                    static_cast<long long*>(n_valid.raw_data()), N, V, ignore_index);
  HYDRA_CUDA_CHECK_LAUNCH("cross_entropy_backward (count)");
  const bool v = vec_ok<T>(V, {logits.raw_data(), dlogits.raw_data()});
  with_vec<T>(v, [&]<int VEC>() {
    const RowLaunch l = row_launch(N, V / VEC, V, sizeof(T), 0);
    cross_entropy_bwd_kernel<T, I, VEC><<<l.grid, l.threads, 0, s>>>(
        static_cast<const T*>(logits.raw_data()), static_cast<const I*>(targets.raw_data()),
        static_cast<const A*>(lse.raw_data()), static_cast<const A*>(g.raw_data()),
        static_cast<const long long*>(n_valid.raw_data()), static_cast<T*>(dlogits.raw_data()), N, V, ignore_index);
  });
  HYDRA_CUDA_CHECK_LAUNCH("cross_entropy_backward");
}

template <typename T>
void launch_l2_normalize_forward(const Tensor& x, const Tensor& y, const Tensor& norm, double eps) {
  using A = acc_t<T>;
  const int64_t D = x.dim() > 0 ? x.size(-1) : 0, N = D > 0 ? x.numel() / D : 0;
  HYDRA_CHECK(x.is_contiguous() && y.is_contiguous() && norm.is_contiguous(),
              "l2_normalize_forward (cuda): operands must be contiguous (x shape {})", shape_str(x.shape()));
  if (N == 0) return;
  const bool v = vec_ok<T>(D, {x.raw_data(), y.raw_data()});
  cudaStream_t s = stream_of(x);
  if (v && with_row_group(N, D / kVec<T>, [&]<int G>(unsigned grid) {
        l2_normalize_fwd_group_kernel<T, kVec<T>, G><<<grid, 256, 0, s>>>(
            static_cast<const T*>(x.raw_data()), static_cast<T*>(y.raw_data()), static_cast<A*>(norm.raw_data()), N,
            D, eps);
      })) {
    HYDRA_CUDA_CHECK_LAUNCH("l2_normalize_forward");
    return;
  }
  with_vec<T>(v, [&]<int VEC>() {
    const RowLaunch l = row_launch(N, D / VEC, D, sizeof(T), 1);
    l2_normalize_fwd_kernel<T, VEC><<<l.grid, l.threads, l.smem, s>>>(static_cast<const T*>(x.raw_data()),
                                                                      static_cast<T*>(y.raw_data()),
                                                                      static_cast<A*>(norm.raw_data()), N, D, eps,
                                                                      l.cache);
  });
  HYDRA_CUDA_CHECK_LAUNCH("l2_normalize_forward");
}

template <typename T>
void launch_l2_normalize_backward(const Tensor& gy, const Tensor& y, const Tensor& norm, const Tensor& dx, double eps) {
  using A = acc_t<T>;
  const int64_t D = y.dim() > 0 ? y.size(-1) : 0, N = D > 0 ? y.numel() / D : 0;
  HYDRA_CHECK(gy.is_contiguous() && y.is_contiguous() && norm.is_contiguous() && dx.is_contiguous(),
              "l2_normalize_backward (cuda): operands must be contiguous (y shape {})", shape_str(y.shape()));
  if (N == 0) return;
  const bool v = vec_ok<T>(D, {gy.raw_data(), y.raw_data(), dx.raw_data()});
  cudaStream_t s = stream_of(y);
  if (v && with_row_group(N, D / kVec<T>, [&]<int G>(unsigned grid) {
        l2_normalize_bwd_group_kernel<T, kVec<T>, G><<<grid, 256, 0, s>>>(
            static_cast<const T*>(gy.raw_data()), static_cast<const T*>(y.raw_data()),
            static_cast<const A*>(norm.raw_data()), static_cast<T*>(dx.raw_data()), N, D, eps);
      })) {
    HYDRA_CUDA_CHECK_LAUNCH("l2_normalize_backward");
    return;
  }
  with_vec<T>(v, [&]<int VEC>() {
    const RowLaunch l = row_launch(N, D / VEC, D, sizeof(T), 2);
    l2_normalize_bwd_kernel<T, VEC><<<l.grid, l.threads, l.smem, s>>>(
        static_cast<const T*>(gy.raw_data()), static_cast<const T*>(y.raw_data()),
        static_cast<const A*>(norm.raw_data()), static_cast<T*>(dx.raw_data()), N, D, eps, l.cache);
  });
  HYDRA_CUDA_CHECK_LAUNCH("l2_normalize_backward");
}

template <typename T>
void launch_rotary(const Tensor& x, const Tensor& y, int64_t position_offset, double base, double sign) {
  using A = acc_t<T>;
  HYDRA_CHECK(x.dim() >= 2 && x.size(-1) % 2 == 0, "rotary (cuda): x must be (..., T, D) with D even, got shape {}",
              shape_str(x.shape()));
  HYDRA_CHECK(x.is_contiguous() && y.is_contiguous(), "rotary (cuda): operands must be contiguous (x shape {})",
              shape_str(x.shape()));
  const int64_t D = x.size(-1), T_len = x.size(-2), H = D / 2;
  const int64_t rows = D > 0 ? x.numel() / D : 0;
  if (rows == 0 || H == 0) return;
  // inv_freq exactly as the CPU path computes it (float32, SPEC §2.9), uploaded.
  std::vector<float> inv(static_cast<std::size_t>(H));
  for (int64_t i = 0; i < H; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(D);
    inv[static_cast<std::size_t>(i)] = 1.0f / std::pow(static_cast<float>(base), exponent);
  }
  const Tensor inv_d = from_vector<float>(inv, {H}, x.device());
  const DType sd = stat_dtype_of(x.dtype());
  Tensor cos_t = empty({T_len, H}, sd, x.device()), sin_t = empty({T_len, H}, sd, x.device());
  cudaStream_t s = stream_of(x);
  rotary_table_kernel<T><<<grid_for(T_len * H, kElemThreads), kElemThreads, 0, s>>>(
      static_cast<const float*>(inv_d.raw_data()), static_cast<A*>(cos_t.raw_data()),
      static_cast<A*>(sin_t.raw_data()), T_len, H, position_offset);
  HYDRA_CUDA_CHECK_LAUNCH("rotary (table)");
  const bool v = vec_ok<T>(H, {x.raw_data(), y.raw_data()});
  with_vec<T>(v, [&]<int VEC>() {
    const int64_t n = rows * (H / VEC);
    rotary_apply_kernel<T, VEC><<<grid_for(n, kElemThreads), kElemThreads, 0, s>>>(
        static_cast<const T*>(x.raw_data()), static_cast<T*>(y.raw_data()), static_cast<const A*>(cos_t.raw_data()),
        static_cast<const A*>(sin_t.raw_data()), rows, T_len, H, static_cast<A>(sign));
  });
  HYDRA_CUDA_CHECK_LAUNCH("rotary");
}

template <typename T>
const T* cptr_or_null(const Tensor& t) {
  return t.defined() && t.numel() > 0 ? static_cast<const T*>(t.raw_data()) : nullptr;
}
template <typename T>
T* ptr_or_null(const Tensor& t) {
  return t.defined() && t.numel() > 0 ? static_cast<T*>(t.raw_data()) : nullptr;
}

ConvDims conv_dims(const Tensor& x, const Tensor& w, const char* op) {
  HYDRA_CHECK(x.dim() == 3 && w.dim() == 2 && w.size(0) == x.size(2) && w.size(1) >= 1,
              "{} (cuda): x must be (B, T, C) and w (C, K), got x {} and w {}", op, shape_str(x.shape()),
              shape_str(w.shape()));
  return ConvDims{x.size(0), x.size(1), x.size(2), w.size(1)};
}

void check_contiguous_all(std::initializer_list<const Tensor*> ts, const char* op) {
  for (const Tensor* t : ts)
    HYDRA_CHECK(!t->defined() || t->is_contiguous(), "{} (cuda): operands must be contiguous, got shape {}", op,
                shape_str(t->shape()));
}

// Calls f.template operator()<V, KM>() with the conv tile for K taps: KM the window rows (4, 8 or 16), V channels
// per thread (a PackBytes-wide pack for KM = 4, narrower for longer windows to keep the windows in registers; 1 when
// C or a base pointer does not allow the pack). The backward holds two windows and the dw sums: 8-byte packs keep it
// at ~128 registers (16-byte packs: 223).
template <typename T, int PackBytes, typename F>
void with_conv_tile(const ConvDims& d, std::initializer_list<const void*> ptrs, const char* op, F&& f) {
  HYDRA_CHECK(d.K <= 16, "{} (cuda): kernel size K = {} exceeds the supported 16", op, d.K);
  const auto go = [&]<int KM>() {
    constexpr int V = std::max(1, static_cast<int>(PackBytes / sizeof(T)) * 4 / KM);
    bool pack = d.C % V == 0;
    for (const void* p : ptrs) pack = pack && (!p || reinterpret_cast<uintptr_t>(p) % (sizeof(T) * V) == 0);
    if (pack) {
      f.template operator()<V, KM>();
    } else {
      f.template operator()<1, KM>();
    }
  };
  if (d.K <= 4) {
    go.template operator()<4>();
  } else if (d.K <= 8) {
    go.template operator()<8>();
  } else {
    go.template operator()<16>();
  }
}

template <int V>
dim3 conv_grid(const ConvDims& d) {
  const int64_t packs = d.C / V, runs = (d.T + kConvRun - 1) / kConvRun;
  return dim3(static_cast<unsigned>((packs + kConvPacks - 1) / kConvPacks),
              static_cast<unsigned>((runs + kConvRuns - 1) / kConvRuns), static_cast<unsigned>(d.B));
}

template <typename T>
void launch_causal_conv1d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& cache,
                                  const Tensor& y, const Tensor& new_cache) {
  const ConvDims d = conv_dims(x, w, "causal_conv1d_forward");
  check_contiguous_all({&x, &w, &bias, &cache, &y, &new_cache}, "causal_conv1d_forward");
  cudaStream_t s = stream_of(x);
  const T* cp = d.K > 1 ? cptr_or_null<T>(cache) : nullptr;
  const T* xp = static_cast<const T*>(x.raw_data());
  T* yp = static_cast<T*>(y.raw_data());
  if (d.B * d.T * d.C > 0) {
    HYDRA_CHECK(d.B <= 65535, "causal_conv1d_forward (cuda): batch {} exceeds 65535", d.B);
    with_conv_tile<T, 16>(d, {xp, yp}, "causal_conv1d_forward", [&]<int V, int KM>() {
      conv_fwd_kernel<T, V, KM><<<conv_grid<V>(d), dim3(kConvPacks, kConvRuns), 0, s>>>(
          xp, static_cast<const T*>(w.raw_data()), cptr_or_null<T>(bias), cp, yp, d);
    });
    HYDRA_CUDA_CHECK_LAUNCH("causal_conv1d_forward");
  }
  T* ncp = ptr_or_null<T>(new_cache);
  const int64_t nn = d.B * d.C * (d.K - 1);
  if (ncp && nn > 0) {
    conv_new_cache_kernel<T><<<grid_for(nn, kElemThreads), kElemThreads, 0, s>>>(xp, cp, ncp, d);
    HYDRA_CUDA_CHECK_LAUNCH("causal_conv1d_forward (new_cache)");
  }
}

template <typename T>
void launch_causal_conv1d_backward(const Tensor& gy, const Tensor& gnc, const Tensor& x, const Tensor& w,
                                   const Tensor& cache, const Tensor& dx, const Tensor& dw, const Tensor& dbias,
                                   const Tensor& dcache) {
  using A = acc_t<T>;
  const ConvDims d = conv_dims(x, w, "causal_conv1d_backward");
  check_contiguous_all({&gy, &gnc, &x, &w, &cache, &dx, &dw, &dbias, &dcache}, "causal_conv1d_backward");
  cudaStream_t s = stream_of(x);
  const T* cp = d.K > 1 ? cptr_or_null<T>(cache) : nullptr;
  const T* gp = d.K > 1 ? cptr_or_null<T>(gnc) : nullptr;
  const T* wp = static_cast<const T*>(w.raw_data());
  const T* gyp = static_cast<const T*>(gy.raw_data());
  T* dcp = ptr_or_null<T>(dcache);
  const int64_t nc = d.B * d.C * (d.K - 1);
  if (dcp && nc > 0) {
    conv_bwd_dcache_kernel<T><<<grid_for(nc, kElemThreads), kElemThreads, 0, s>>>(gyp, gp, wp, dcp, d);
    HYDRA_CUDA_CHECK_LAUNCH("causal_conv1d_backward (dcache)");
  }
  if (d.C == 0) return;
  T* dbp = ptr_or_null<T>(dbias);
  const int taps = static_cast<int>(d.K) + (dbp ? 1 : 0);
  if (d.B * d.T == 0) {  // sums over no (b, t)
    fill(dw, 0.0);
    if (dbp) fill(dbias, 0.0);
    return;
  }
  HYDRA_CHECK(d.B <= 65535, "causal_conv1d_backward (cuda): batch {} exceeds 65535", d.B);
  const T* xp = static_cast<const T*>(x.raw_data());
  T* dxp = static_cast<T*>(dx.raw_data());
  with_conv_tile<T, 8>(d, {xp, gyp, dxp}, "causal_conv1d_backward", [&]<int V, int KM>() {
    const dim3 grid = conv_grid<V>(d);
    const int64_t chunks = int64_t(grid.y) * grid.z;
    Tensor partial = empty({chunks, taps, d.C}, stat_dtype_of(x.dtype()), x.device());
    conv_bwd_kernel<T, V, KM><<<grid, dim3(kConvPacks, kConvRuns), 0, s>>>(
        gyp, gp, xp, wp, cp, dxp, static_cast<A*>(partial.raw_data()), d, taps);
    HYDRA_CUDA_CHECK_LAUNCH("causal_conv1d_backward");
    conv_dw_finalize_kernel<T><<<grid_for(taps * d.C, kElemThreads), kElemThreads, 0, s>>>(
        static_cast<const A*>(partial.raw_data()), static_cast<T*>(dw.raw_data()), dbp, chunks, taps, d);
    HYDRA_CUDA_CHECK_LAUNCH("causal_conv1d_backward (dw finalize)");
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// entry points

void rms_norm_forward(const Tensor& x, const Tensor& w, const Tensor& y, const Tensor& rstd, double eps) {
  DeviceGuard guard(x.device().index);
  if (x.dtype() == DType::Float32 && y.dtype() == DType::BFloat16) {  // mixed precision: y in the compute dtype
    launch_rms_norm_forward<float, BFloat16>(x, w, y, rstd, eps);
    return;
  }
  HYDRA_CHECK(y.dtype() == x.dtype(),
              "rms_norm_forward (cuda): y dtype {} with x dtype {} (supported: x's dtype, or bfloat16 for float32 x)",
              dtype_name(y.dtype()), dtype_name(x.dtype()));
  dispatch_floating(x.dtype(), "rms_norm_forward",
                    [&]<typename T>() { launch_rms_norm_forward<T, T>(x, w, y, rstd, eps); });
}

void rms_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dx,
                       const Tensor& dw) {
  DeviceGuard guard(x.device().index);
  if (x.dtype() == DType::Float32 && gy.dtype() == DType::BFloat16) {
    launch_rms_norm_backward<float, BFloat16>(gy, x, w, rstd, dx, dw);
    return;
  }
  HYDRA_CHECK(gy.dtype() == x.dtype(),
              "rms_norm_backward (cuda): gy dtype {} with x dtype {} (supported: x's dtype, or bfloat16 for float32 x)",
              dtype_name(gy.dtype()), dtype_name(x.dtype()));
  dispatch_floating(x.dtype(), "rms_norm_backward",
                    [&]<typename T>() { launch_rms_norm_backward<T, T>(gy, x, w, rstd, dx, dw); });
}

void cross_entropy_forward(const Tensor& logits, const Tensor& targets, const Tensor& loss, const Tensor& lse,
                           int64_t ignore_index, std::function<std::string(int64_t, int64_t)> bad_target_message) {
  DeviceGuard guard(logits.device().index);
  dispatch_floating(logits.dtype(), "cross_entropy_forward", [&]<typename T>() {
    dispatch_index(targets.dtype(), "cross_entropy_forward", [&]<typename I>() {
      launch_cross_entropy_forward<T, I>(logits, targets, loss, lse, ignore_index, std::move(bad_target_message));
    });
  });
}

void cross_entropy_backward(const Tensor& gloss, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                            const Tensor& dlogits, int64_t ignore_index) {
  DeviceGuard guard(logits.device().index);
  dispatch_floating(logits.dtype(), "cross_entropy_backward", [&]<typename T>() {
    dispatch_index(targets.dtype(), "cross_entropy_backward", [&]<typename I>() {
      launch_cross_entropy_backward<T, I>(gloss, logits, targets, lse, dlogits, ignore_index);
    });
  });
}

void l2_normalize_forward(const Tensor& x, const Tensor& y, const Tensor& norm, double eps) {
  DeviceGuard guard(x.device().index);
  dispatch_floating(x.dtype(), "l2_normalize_forward",
                    [&]<typename T>() { launch_l2_normalize_forward<T>(x, y, norm, eps); });
}

void l2_normalize_backward(const Tensor& gy, const Tensor& y, const Tensor& norm, const Tensor& dx, double eps) {
  DeviceGuard guard(y.device().index);
  dispatch_floating(y.dtype(), "l2_normalize_backward",
                    [&]<typename T>() { launch_l2_normalize_backward<T>(gy, y, norm, dx, eps); });
}

void rotary(const Tensor& x, const Tensor& y, int64_t position_offset, double base, double sign) {
  DeviceGuard guard(x.device().index);
  dispatch_floating(x.dtype(), "rotary",
                    [&]<typename T>() { launch_rotary<T>(x, y, position_offset, base, sign); });
}

void causal_conv1d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& cache, const Tensor& y,
                           const Tensor& new_cache) {
  DeviceGuard guard(x.device().index);
  dispatch_floating(x.dtype(), "causal_conv1d_forward",
                    [&]<typename T>() { launch_causal_conv1d_forward<T>(x, w, bias, cache, y, new_cache); });
}

void causal_conv1d_backward(const Tensor& gy, const Tensor& g_new_cache, const Tensor& x, const Tensor& w,
                            const Tensor& cache, const Tensor& dx, const Tensor& dw, const Tensor& dbias,
                            const Tensor& dcache) {
  DeviceGuard guard(x.device().index);
  dispatch_floating(x.dtype(), "causal_conv1d_backward", [&]<typename T>() {
    launch_causal_conv1d_backward<T>(gy, g_new_cache, x, w, cache, dx, dw, dbias, dcache);
  });
}

void swiglu_forward(const Tensor& u, const Tensor& y) {
  DeviceGuard guard(u.device().index);
  const int64_t F = u.size(-1) / 2, N = F > 0 ? y.numel() / F : 0;
  if (N == 0) return;
  dispatch_floating(u.dtype(), "swiglu_forward", [&]<typename T>() {
    with_vec<T>(vec_ok<T>(F, {u.raw_data(), y.raw_data()}), [&]<int VEC>() {
      swiglu_fwd_kernel<T, VEC><<<grid_for(N * (F / VEC), kElemThreads), kElemThreads, 0, stream_of(u)>>>(
          static_cast<const T*>(u.raw_data()), static_cast<T*>(y.raw_data()), N, F);
    });
  });
  HYDRA_CUDA_CHECK_LAUNCH("swiglu_forward");
}

void swiglu_backward(const Tensor& gy, const Tensor& u, const Tensor& du) {
  DeviceGuard guard(u.device().index);
  const int64_t F = u.size(-1) / 2, N = F > 0 ? gy.numel() / F : 0;
  if (N == 0) return;
  dispatch_floating(u.dtype(), "swiglu_backward", [&]<typename T>() {
    with_vec<T>(vec_ok<T>(F, {gy.raw_data(), u.raw_data(), du.raw_data()}), [&]<int VEC>() {
      swiglu_bwd_kernel<T, VEC><<<grid_for(N * (F / VEC), kElemThreads), kElemThreads, 0, stream_of(u)>>>(
          static_cast<const T*>(gy.raw_data()), static_cast<const T*>(u.raw_data()), static_cast<T*>(du.raw_data()),
          N, F);
    });
  });
  HYDRA_CUDA_CHECK_LAUNCH("swiglu_backward");
}

// ---------------------------------------------------------------------------------------------------------
// Tensor lists (sum_of_squares, scale_): up to kListMax tensors of one dtype per launch, passed by value as a kernel
// parameter; block b works on elements [kListChunk·(b − block0[i]), +kListChunk) of the tensor i it falls in.

namespace {

constexpr int kListMax = 40;  // 40 · 24 bytes + 12: well inside the 4 KB kernel-parameter limit
constexpr int kListThreads = 256;
constexpr int64_t kListChunk = 8192;

struct TensorList {
  void* ptr[kListMax];
  int64_t n[kListMax];
  int64_t block0[kListMax + 1];  // first block of each tensor; block0[count] = the launch's block count
  int count;
};

__device__ __forceinline__ int list_find(const TensorList& L, int64_t b) {
  int i = 0;
  while (i + 1 < L.count && b >= L.block0[i + 1]) ++i;
  return i;
}

template <typename T>
__global__ void __launch_bounds__(kListThreads) sumsq_list_kernel(TensorList L, double* __restrict__ partial) {
  __shared__ double sh[32];
  const int64_t b = blockIdx.x;
  const int i = list_find(L, b);
  const T* p = static_cast<const T*>(L.ptr[i]);
  const int64_t begin = (b - L.block0[i]) * kListChunk, end = min(L.n[i], begin + kListChunk);
  using C = compute_t<T>;
  double acc = 0;  // as the CPU loop: each square in compute_t, summed in float64
  for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x) {
    const C x = static_cast<C>(p[e]);
    acc += static_cast<double>(x * x);
  }
  const double sum = block_sum(acc, sh);
  if (threadIdx.x == 0) partial[b] = sum;
}

// One block: out = Σ x in a fixed order (strided per thread, then the block tree).
__global__ void __launch_bounds__(1024) sum_f64_kernel(const double* __restrict__ x, int64_t n,
                                                       double* __restrict__ out) {
  __shared__ double sh[32];
  double acc = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += x[i];
  const double sum = block_sum(acc, sh);
  if (threadIdx.x == 0) *out = sum;
}

template <typename T>
__global__ void __launch_bounds__(kListThreads) scale_list_kernel(TensorList L, compute_t<T> c) {
  const int64_t b = blockIdx.x;
  const int i = list_find(L, b);
  T* p = static_cast<T*>(L.ptr[i]);
  const int64_t begin = (b - L.block0[i]) * kListChunk, end = min(L.n[i], begin + kListChunk);
  for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x)
    p[e] = static_cast<T>(static_cast<compute_t<T>>(p[e]) * c);
}

// Splits the non-empty tensors of ts into runs of one dtype and at most kListMax tensors; f(list, dtype) per run.
template <typename F>
void for_each_list(const std::vector<Tensor>& ts, F&& f) {
  TensorList L{};
  DType dt = DType::Float32;
  auto flush = [&] {
    if (L.count > 0) f(L, dt);
    L = TensorList{};
  };
  for (const Tensor& t : ts) {
    if (t.numel() == 0) continue;
    if (L.count == kListMax || (L.count > 0 && t.dtype() != dt)) flush();
    dt = t.dtype();
    L.ptr[L.count] = t.raw_data();
    L.n[L.count] = t.numel();
    L.block0[L.count + 1] = L.block0[L.count] + (t.numel() + kListChunk - 1) / kListChunk;
    ++L.count;
  }
  flush();
}

}  // namespace

void sum_of_squares(const std::vector<Tensor>& ts, const Tensor& out) {
  DeviceGuard guard(out.device().index);
  cudaStream_t s = stream_of(out);
  int64_t blocks = 0;
  for_each_list(ts, [&](const TensorList& L, DType) { blocks += L.block0[L.count]; });
  if (blocks == 0) {
    HYDRA_CUDA_CHECK(cudaMemsetAsync(out.raw_data(), 0, sizeof(double), s));
    return;
  }
  const Tensor partial = empty({blocks}, DType::Float64, out.device());
  double* pp = static_cast<double*>(partial.raw_data());
  int64_t at = 0;
  for_each_list(ts, [&](const TensorList& L, DType dt) {
    dispatch_floating(dt, "sum_of_squares", [&]<typename T>() {
      sumsq_list_kernel<T><<<static_cast<unsigned>(L.block0[L.count]), kListThreads, 0, s>>>(L, pp + at);
    });
    at += L.block0[L.count];
  });
  sum_f64_kernel<<<1, 1024, 0, s>>>(pp, blocks, static_cast<double*>(out.raw_data()));
  HYDRA_CUDA_CHECK_LAUNCH("sum_of_squares");
}

void scale_(const std::vector<Tensor>& ts, double c) {
  DeviceGuard guard(ts[0].device().index);
  cudaStream_t s = stream_of(ts[0]);
  for_each_list(ts, [&](const TensorList& L, DType dt) {
    dispatch_floating(dt, "scale_", [&]<typename T>() {
      scale_list_kernel<T><<<static_cast<unsigned>(L.block0[L.count]), kListThreads, 0, s>>>(
          L, static_cast<compute_t<T>>(c));
    });
  });
  HYDRA_CUDA_CHECK_LAUNCH("scale_");
}

void add_cast(const Tensor& x, const Tensor& y, const Tensor& out) {
  DeviceGuard guard(x.device().index);
  HYDRA_CHECK(x.dtype() == DType::Float32 && y.dtype() == DType::BFloat16 && out.dtype() == DType::Float32 &&
                  x.is_contiguous() && y.is_contiguous() && out.is_contiguous() && x.numel() == y.numel() &&
                  x.numel() == out.numel(),
              "add_cast (cuda): expects contiguous float32 x and out with a bfloat16 y of one size, got {} {}, {} {}",
              dtype_name(x.dtype()), shape_str(x.shape()), dtype_name(y.dtype()), shape_str(y.shape()));
  const int64_t n = x.numel();
  if (n == 0) return;
  cudaStream_t s = stream_of(x);
  const auto* xp = static_cast<const float*>(x.raw_data());
  const auto* yp = static_cast<const BFloat16*>(y.raw_data());
  auto* op = static_cast<float*>(out.raw_data());
  if (n % 4 == 0 && aligned16(xp) && aligned16(op) && reinterpret_cast<uintptr_t>(yp) % 8 == 0) {
    add_cast_kernel<4><<<grid_for(n / 4, kElemThreads), kElemThreads, 0, s>>>(xp, yp, op, n / 4);
  } else {
    add_cast_kernel<1><<<grid_for(n, kElemThreads), kElemThreads, 0, s>>>(xp, yp, op, n);
  }
  HYDRA_CUDA_CHECK_LAUNCH("add_cast");
}

void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, const AdamWCoefs& c) {
  DeviceGuard guard(p.device().index);
  const int64_t n = p.numel();
  if (n == 0) return;
  cudaStream_t s = stream_of(p);
  dispatch_floating(p.dtype(), "adamw_step_", [&]<typename T>() {
    using A = acc_t<T>;
    constexpr int V = 16 / sizeof(A);  // 4 floats (float32 and bfloat16 parameters), 2 doubles
    T* pp = static_cast<T*>(p.raw_data());
    const T* gp = static_cast<const T*>(g.raw_data());
    A* mp = static_cast<A*>(m.raw_data());
    A* vp = static_cast<A*>(v.raw_data());
    const AdamWElem<A> f(c);
    const bool vec = n % V == 0 && aligned16(mp) && aligned16(vp) &&
                     reinterpret_cast<uintptr_t>(pp) % (sizeof(T) * V) == 0 &&
                     reinterpret_cast<uintptr_t>(gp) % (sizeof(T) * V) == 0;
    if (vec) {
      adamw_kernel<T, V><<<grid_for(n / V, kElemThreads), kElemThreads, 0, s>>>(pp, gp, mp, vp, n / V, f);
    } else {
      adamw_kernel<T, 1><<<grid_for(n, kElemThreads), kElemThreads, 0, s>>>(pp, gp, mp, vp, n, f);
    }
  });
  HYDRA_CUDA_CHECK_LAUNCH("adamw_step_");
}

}  // namespace hydra::cuda
