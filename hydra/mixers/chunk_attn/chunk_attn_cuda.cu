// Top-k chunk attention on CUDA: the fused routing, the sparse flash-style forward and its backward, and the
// device-side check of the routing indices. Math, layouts and the GPU contract: chunk_attn.h (SPEC §2.11). All
// operands arrive contiguous (the dispatch in chunk_attn_cpu.cpp copies strided views first). T = float or
// bfloat16 storage; every score, probability, softmax statistic and accumulator is float32 (FFMA, no TF32, no
// tensor cores: a SIMT implementation; bf16 is converted to float on load and rounded once on store).
//
// Shapes: q/q0 [B, T, H, K], k [B, S, H, K], v [B, S, H, V], summaries [B, n_c, H, K], idx/bias [B, T, H, topk],
// o [B, T, H, V], lse [B, H, T] (float32). Query t sits at position p = S − T + t, own chunk c = ⌊p/N⌋.
// Head dims: K, V in 1..128 through three compile-time widths DP = 32, 64, 128 (the smallest ≥ max(K, V), dims
// beyond K / V masked); lane l of a warp owns dims l, l + 32, .. (< DP).
//
// Key enumeration of one query (forward and dq kernels): a flat index u over
//   [0, topk·N):           slot i = ⌊u/N⌋, key m = idx[t, i]·N + u mod N, logit += bias[t, i];
//                          skipped when idx[t, i] is −1 or invalid (so a bad index never reads out of range)
//   [topk·N, topk·N + L):  the own chunk's causal part, key m = c·N + (u − topk·N), L = p − c·N + 1.
// processed in tiles of 32 keys (lane = key of the tile), so chunk sizes below 32 pack several chunks per tile.
//
// Kernels and thread mapping
//   chunk_route_kernel: one warp per (b, t, h) row, 4 warps per block. Candidate summaries j < min(c, n_c) in
//     tiles of 32 (lane = candidate); the 32 dot products of a tile are computed with coalesced row reads (lane =
//     dim, 32 partial sums per lane) and a transpose-reduce butterfly (31 shuffles; every key's total is the same
//     xor-tree over the lanes, so identical summaries give bitwise identical scores wherever they sit). The
//     running top-k (score, j) list is kept sorted in shared memory (double-buffered, per warp). A tile merges
//     only when some candidate beats the current k-th; each entering candidate's new rank is (list entries better
//     than it) + (entering candidates better than it), each list entry's is its old rank + (entering candidates
//     better than it): a strict total order (score descending, then j ascending; NaN scores rank as −inf), so the
//     ranks are a permutation and the new list is written without conflicts. Never a T × n_c matrix in memory.
//   chunk_attn_fwd_kernel: one warp per (b, t, h) row, 4 warps per block. Per tile: scores by the same
//     transpose-reduce, then one online-softmax step (tile max by xor butterfly, running max m and sum l rescaled
//     by exp(m_old − m_new)), then o += p·v with v rows read coalesced (lane = dim, p broadcast by shuffle).
//     lse = m + log l (float32), o = acc / l.
//   chunk_attn_bwd_dq_kernel: one warp per row. D = do·o (saved to scratch for the dk/dv kernel), then per tile:
//     s and dP = do·v_m by transpose-reduce, P = exp(s − lse), dlogit = P (dP − D); dq += dlogit·k_m (lane = dim);
//     dbias[t, i] = Σ_m dlogit by a segmented warp reduction (slots are contiguous runs of u) into a per-warp
//     float32 shared-memory row (topk entries), written once at the end. No atomics.
//   chunk_list_fill_kernel: one warp per (b, h). Inverse routing lists: for each chunk j the entries (t, i) with
//     idx[t, i] = j (valid entries only), in increasing t. Pass 1 counts per chunk, pass 2 an exclusive scan,
//     pass 3 places the entries in order: 32 entries at a time, __match_any_sync groups equal chunks, the group
//     leader bumps the chunk's cursor; only this warp touches its (b, h) scratch, ordered by __syncwarp. Stable and
//     deterministic, O(T·topk) per (b, h).
//   chunk_attn_bwd_dkdv_kernel: gather scheme, no atomics: one block per (b, h, tile of ≤ 32 keys inside one
//     chunk j), DP/16 warps. Thread (warp w, lane l) owns key m0 + l and dims [16w, 16w + 16) of dk and dv
//     (registers), holding k_m and v_m's slice in registers. Queries that see the tile: the own chunk's queries
//     with p ≥ key (causal mask) and the inverse list of chunk j (bias added). They are processed in batches of
//     QB = 64/W: q and do rows staged in shared memory, per-slice partial dot products of s and dP combined across
//     the W warps through shared memory in a fixed order, then P, dlogit and dk += dlogit·q, dv += P·do. Every
//     dk/dv row has exactly one writer (keys no query sees get zeros): race-free and deterministic.
//   chunk_idx_check_kernel / chunk_idx_report_kernel: one thread per (b, t, h) row applies check_chunk_idx's rules
//     (range first, in slot order; then the smallest repeated chunk); the first bad row (atomicMax on
//     ULLONG_MAX − row) is re-examined by one thread, which writes {code, value} for cuda::defer_device_check
//     (code = (row·topk + slot)·topk + first slot of a repeat). No host synchronisation.
//
// FLOPs and bytes per call (P = Σ over queries of attended keys ≤ B·T·H·(topk + 1)·N; s = sizeof(T)):
//   chunk_route    2·B·T·H·min(c, n_c)·K FLOPs; reads q0 once and each candidate row per query (L1/L2 hits).
//   forward        2·P·(K + V) FLOPs; reads q, idx, bias once, k and v rows of the attended keys (P·(K+V)·s from
//                  L1/L2, the chunks' K+V rows from DRAM), writes o and lse (4 B).
//   backward       dq kernel 2·P·(2K + V), dk/dv kernel 4·P·(K + V) FLOPs; reads q, do, o, k, v, idx, bias, lse and
//                  the inverse lists (4 B per entry), writes dq, dk, dv, dbias and 4 B of D per row.
//
// Reference: tests/hydra/test_cuda_chunk_attn.cpp compares against chunk_route_ref / chunk_attn_ref(_lse) in float64
// on the same (bf16-rounded) inputs, with gradients from the autograd engine.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <utility>

#include "hydra/mixers/chunk_attn/chunk_attn_cuda.h"
#include "tensor/check.h"
#include "tensor/cuda/backend.h"
#include "tensor/cuda/common.cuh"

namespace hydra {

namespace {

// ---------------------------------------------------------------------------------------------------------
// device helpers

constexpr unsigned kFull = 0xffffffffu;
constexpr int kWarps = 4;            // warps per block of the row kernels (route, forward, dq)
constexpr int kRowThreads = kWarps * 32;
constexpr int64_t kMaxHeadDim = 128;
constexpr int64_t kMaxTopk = 512;    // shared-memory lists of the routing and dbias rows of the dq kernel
constexpr int kCheckThreads = 256;

struct Dims {
  int64_t B, T, S, H, K, V, N, topk;
};

template <typename T>
__device__ __forceinline__ float ld(const T* p) {
  return static_cast<float>(*p);
}
template <typename T>
__device__ __forceinline__ void st(T* p, float v) {
  *p = T(v);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}

// One step of the transpose-reduce: lanes with bit O set keep the upper half of their O·2 live values.
template <int O>
__device__ __forceinline__ void transpose_step(float (&a)[32], int lane) {
  const bool upper = (lane & O) != 0;
#pragma unroll
  for (int i = 0; i < O; ++i) {
    const float send = upper ? a[i] : a[i + O];
    const float keep = upper ? a[i + O] : a[i];
    a[i] = keep + __shfl_xor_sync(kFull, send, O);
  }
}
// a[kk] = this lane's partial sum of key kk (32 keys): returns the full sum of key `lane`. Every key's total is
// the same xor-tree over the 32 lanes' partials (float addition is commutative), independent of kk.
__device__ __forceinline__ float transpose_reduce(float (&a)[32], int lane) {
  transpose_step<16>(a, lane);
  transpose_step<8>(a, lane);
  transpose_step<4>(a, lane);
  transpose_step<2>(a, lane);
  transpose_step<1>(a, lane);
  return a[0];
}

// Partial dot products of a register row (dims lane + 32r) with the 32 rows of a tile (row kk at base + m_kk·stride,
// m_kk = shfl(m, kk); rows whose bit in `mask` is clear are skipped and give 0). Then the transpose-reduce.
template <typename T, int R>
__device__ __forceinline__ float tile_dots(const float (&x)[R], const T* base, int64_t stride, int64_t m,
                                           unsigned mask, int64_t D, int lane) {
  float part[32];
#pragma unroll
  for (int kk = 0; kk < 32; ++kk) {
    part[kk] = 0.f;
    const int64_t mk = __shfl_sync(kFull, m, kk);
    if ((mask >> kk) & 1u) {
      const T* row = base + mk * stride;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t d = lane + 32 * r;
        if (d < D) part[kk] = fmaf(x[r], ld(row + d), part[kk]);
      }
    }
  }
  return transpose_reduce(part, lane);
}

// acc[r] += Σ_kk w_kk · row_kk[lane + 32r] over the tile's rows with a set mask bit (w_kk = shfl(w, kk)).
template <typename T, int R>
__device__ __forceinline__ void tile_axpy(float (&acc)[R], const T* base, int64_t stride, int64_t m, float w,
                                          unsigned mask, int64_t D, int lane) {
#pragma unroll
  for (int kk = 0; kk < 32; ++kk) {
    const int64_t mk = __shfl_sync(kFull, m, kk);
    const float wk = __shfl_sync(kFull, w, kk);
    if ((mask >> kk) & 1u) {
      const T* row = base + mk * stride;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t d = lane + 32 * r;
        if (d < D) acc[r] = fmaf(wk, ld(row + d), acc[r]);
      }
    }
  }
}

template <typename T, int R>
__device__ __forceinline__ void load_row(float (&x)[R], const T* row, int64_t D, int lane) {
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t d = lane + 32 * r;
    x[r] = d < D ? ld(row + d) : 0.f;
  }
}

// The key behind flat index u of one query (see the file comment).
struct KeyRef {
  int64_t m;   // key position (0 when invalid)
  float add;   // bias of its slot (0 for the own chunk or without bias)
  int slot;    // selected slot i, −1 for the own chunk and beyond
  bool valid;
};
template <typename T>
__device__ __forceinline__ KeyRef key_of(int64_t u, const int64_t* irow, const T* brow, int64_t N, int64_t c,
                                         int64_t sel_len, int64_t own_len) {
  KeyRef r{0, 0.f, -1, false};
  if (u < sel_len) {
    const int64_t slot = u / N, j = irow[slot];
    r.slot = static_cast<int>(slot);
    if (j >= 0 && j < c) {  // invalid entries are reported by the idx check and skipped here
      r.valid = true;
      r.m = j * N + (u - slot * N);
      if (brow != nullptr) r.add = ld(brow + slot);
    }
  } else if (u - sel_len < own_len) {
    r.valid = true;
    r.m = c * N + (u - sel_len);
  }
  return r;
}

// Strict total order of routing candidates: higher score first, then lower j.
__device__ __forceinline__ bool better(float sa, int ja, float sb, int jb) {
  return sa > sb || (sa == sb && ja < jb);
}

// check_chunk_idx's verdict on one (b, t, h) row: the first out-of-range slot (in slot order), else the smallest
// repeated chunk with its first and second slots. Returns false when the row is valid.
__device__ bool idx_row_verdict(const int64_t* row, int64_t topk, int64_t c, int64_t& slot, int64_t& value,
                                int64_t& first) {
  for (int64_t i = 0; i < topk; ++i) {
    const int64_t j = row[i];
    if (j == -1) continue;
    if (j < 0 || j >= c) {
      slot = i;
      value = j;
      first = 0;
      return true;
    }
  }
  int64_t best = LLONG_MAX;
  for (int64_t a = 0; a < topk; ++a) {
    const int64_t ja = row[a];
    if (ja < 0 || ja >= best) continue;
    for (int64_t b = a + 1; b < topk; ++b)
      if (row[b] == ja) {
        best = ja;
        break;
      }
  }
  if (best == LLONG_MAX) return false;
  first = -1;
  for (int64_t i = 0; i < topk; ++i) {
    if (row[i] != best) continue;
    if (first < 0) {
      first = i;
    } else {
      slot = i;
      break;
    }
  }
  value = best;
  return true;
}

// ---------------------------------------------------------------------------------------------------------
// kernels

// Routing: one warp per (b, t, h) row. Dynamic shared memory: kWarps × 2 × topk floats, then as many ints.
template <typename T, int DP>
__global__ void __launch_bounds__(kRowThreads)
    chunk_route_kernel(const T* __restrict__ q0, const T* __restrict__ r, int64_t* __restrict__ idx, int64_t B,
                       int64_t T_, int64_t H, int64_t K, int64_t n_c, int64_t N, int64_t topk, int64_t S) {
  constexpr int R = DP / 32;
  extern __shared__ float route_smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (row >= B * T_ * H) return;
  float* sc = route_smem + warp * 2 * topk;                                         // [2][topk] scores
  int* js = reinterpret_cast<int*>(route_smem + kWarps * 2 * topk) + warp * 2 * topk;  // [2][topk] chunk ids
  const int64_t h = row % H, t = (row / H) % T_, b = row / (H * T_);
  const int64_t p = S - T_ + t, n_cand = min(p / N, n_c);
  float qr[R];
  load_row<T, R>(qr, q0 + row * K, K, lane);
  const T* rbase = r + (b * n_c * H + h) * K;  // summary j at rbase + j·H·K
  const int itopk = static_cast<int>(topk);
  int L = 0, buf = 0;
  for (int64_t j0 = 0; j0 < n_cand; j0 += 32) {
    const int jl = static_cast<int>(j0) + lane;
    const bool valid = jl < n_cand;
    const unsigned mask = __ballot_sync(kFull, valid);
    float score = tile_dots<T, R>(qr, rbase, H * K, valid ? jl : 0, mask, K, lane);
    if (!(score == score)) score = -INFINITY;  // NaN ranks lowest (a total order keeps the ranks a permutation)
    const float* osc = sc + buf * itopk;
    const int* oj = js + buf * itopk;
    float* nsc = sc + (buf ^ 1) * itopk;
    int* nj = js + (buf ^ 1) * itopk;
    const bool enter = valid && (L < itopk || better(score, jl, osc[itopk - 1], oj[itopk - 1]));
    const unsigned emask = __ballot_sync(kFull, enter);
    if (emask == 0) continue;
    // Entering candidates: rank among the list, plus among the other entering candidates.
    int rank = 0;
    for (int e = 0; e < L; ++e) rank += better(osc[e], oj[e], score, jl) ? 1 : 0;
#pragma unroll
    for (int kk = 0; kk < 32; ++kk) {
      const float s2 = __shfl_sync(kFull, score, kk);
      if (((emask >> kk) & 1u) && better(s2, static_cast<int>(j0) + kk, score, jl)) ++rank;
    }
    if (enter && rank < itopk) {
      nsc[rank] = score;
      nj[rank] = jl;
    }
    // List entries: old rank plus the entering candidates better than them.
    for (int e0 = 0; e0 < L; e0 += 32) {
      const int e = e0 + lane;
      const bool have = e < L;
      const float se = have ? osc[e] : 0.f;
      const int je = have ? oj[e] : 0;
      int re = e;
#pragma unroll
      for (int kk = 0; kk < 32; ++kk) {
        const float s2 = __shfl_sync(kFull, score, kk);
        if (((emask >> kk) & 1u) && better(s2, static_cast<int>(j0) + kk, se, je)) ++re;
      }
      if (have && re < itopk) {
        nsc[re] = se;
        nj[re] = je;
      }
    }
    L = min(itopk, L + __popc(emask));
    buf ^= 1;
    __syncwarp();
  }
  __syncwarp();
  const int* fj = js + buf * itopk;
  for (int i = lane; i < itopk; i += 32) idx[row * topk + i] = i < L ? fj[i] : -1;
}

// Forward: one warp per (b, t, h) row.
template <typename T, int DP>
__global__ void __launch_bounds__(kRowThreads)
    chunk_attn_fwd_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                          const int64_t* __restrict__ idx, const T* __restrict__ bias, T* __restrict__ o,
                          float* __restrict__ lse, Dims d, float scale) {
  constexpr int R = DP / 32;
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (row >= d.B * d.T * d.H) return;
  const int64_t h = row % d.H, t = (row / d.H) % d.T, b = row / (d.H * d.T);
  const int64_t p = d.S - d.T + t, c = p / d.N, own_len = p - c * d.N + 1, sel_len = d.topk * d.N;
  const int64_t total = sel_len + own_len;
  float qr[R], acc[R];
  load_row<T, R>(qr, q + row * d.K, d.K, lane);
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.f;
  const int64_t* irow = idx + row * d.topk;
  const T* brow = bias != nullptr ? bias + row * d.topk : nullptr;
  const T* kbase = k + b * d.S * d.H * d.K + h * d.K;
  const T* vbase = v + b * d.S * d.H * d.V + h * d.V;
  float m_run = -INFINITY, l_run = 0.f;
  for (int64_t u0 = 0; u0 < total; u0 += 32) {
    const KeyRef key = key_of(u0 + lane, irow, brow, d.N, c, sel_len, own_len);
    const unsigned mask = __ballot_sync(kFull, key.valid);
    if (mask == 0) continue;
    float s = tile_dots<T, R>(qr, kbase, d.H * d.K, key.m, mask, d.K, lane);
    s = key.valid ? s * scale + key.add : -INFINITY;
    const float m_new = fmaxf(m_run, warp_max(s));
    if (m_new == -INFINITY) continue;  // nothing finite yet (warp-uniform)
    const float alpha = expf(m_run - m_new);
    const float pr = key.valid ? expf(s - m_new) : 0.f;
    l_run = l_run * alpha + warp_sum(pr);
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] *= alpha;
    tile_axpy<T, R>(acc, vbase, d.H * d.V, key.m, pr, mask, d.V, lane);
    m_run = m_new;
  }
  const float inv = 1.f / l_run;  // l ≥ exp(0) > 0: the query's own position is always attended
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t dd = lane + 32 * r;
    if (dd < d.V) st(o + row * d.V + dd, acc[r] * inv);
  }
  if (lane == 0) lse[(b * d.H + h) * d.T + t] = m_run + logf(l_run);
}

// Backward, query side: dq, dbias and D = do·o. One warp per row. With kBias, dynamic shared memory holds
// kWarps × topk floats (the dbias rows being summed).
template <typename T, int DP, bool kBias>
__global__ void __launch_bounds__(kRowThreads)
    chunk_attn_bwd_dq_kernel(const T* __restrict__ dout, const T* __restrict__ q, const T* __restrict__ k,
                             const T* __restrict__ v, const int64_t* __restrict__ idx, const T* __restrict__ bias,
                             const T* __restrict__ o, const float* __restrict__ lse, T* __restrict__ dq,
                             T* __restrict__ dbias, float* __restrict__ Dbuf, Dims d, float scale) {
  constexpr int R = DP / 32;
  extern __shared__ float dq_smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (row >= d.B * d.T * d.H) return;
  const int64_t h = row % d.H, t = (row / d.H) % d.T, b = row / (d.H * d.T);
  const int64_t p = d.S - d.T + t, c = p / d.N, own_len = p - c * d.N + 1, sel_len = d.topk * d.N;
  const int64_t total = sel_len + own_len;
  float qr[R], dor[R], orow[R], dqa[R];
  load_row<T, R>(qr, q + row * d.K, d.K, lane);
  load_row<T, R>(dor, dout + row * d.V, d.V, lane);
  load_row<T, R>(orow, o + row * d.V, d.V, lane);
  float dsum = 0.f;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    dsum = fmaf(dor[r], orow[r], dsum);
    dqa[r] = 0.f;
  }
  const float D = warp_sum(dsum);
  const int64_t lrow = (b * d.H + h) * d.T + t;
  const float lse_t = lse[lrow];
  float* dbs = dq_smem + warp * d.topk;
  if constexpr (kBias) {
    for (int64_t i = lane; i < d.topk; i += 32) dbs[i] = 0.f;
    __syncwarp();
  }
  const int64_t* irow = idx + row * d.topk;
  const T* brow = kBias ? bias + row * d.topk : nullptr;
  const T* kbase = k + b * d.S * d.H * d.K + h * d.K;
  const T* vbase = v + b * d.S * d.H * d.V + h * d.V;
  for (int64_t u0 = 0; u0 < total; u0 += 32) {
    const KeyRef key = key_of(u0 + lane, irow, brow, d.N, c, sel_len, own_len);
    const unsigned mask = __ballot_sync(kFull, key.valid);
    if (mask == 0) continue;
    const float s = tile_dots<T, R>(qr, kbase, d.H * d.K, key.m, mask, d.K, lane);
    const float dp = tile_dots<T, R>(dor, vbase, d.H * d.V, key.m, mask, d.V, lane);
    const float P = key.valid ? expf(s * scale + key.add - lse_t) : 0.f;
    const float ds = P * (dp - D);
    if constexpr (kBias) {
      // Segmented suffix sums over the runs of equal slots (contiguous in u): the first lane of each run ends
      // with the run's total, which it adds to the slot's accumulator (one writer per slot per tile).
      float x = ds;
      const int sg = key.slot;
#pragma unroll
      for (int off = 1; off < 32; off <<= 1) {
        const float y = __shfl_down_sync(kFull, x, off);
        const int sg2 = __shfl_down_sync(kFull, sg, off);
        if (lane + off < 32 && sg2 == sg) x += y;
      }
      const int prev = __shfl_up_sync(kFull, sg, 1);
      if (sg >= 0 && (lane == 0 || prev != sg)) dbs[sg] += x;
      __syncwarp();
    }
    tile_axpy<T, R>(dqa, kbase, d.H * d.K, key.m, ds, mask, d.K, lane);
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t dd = lane + 32 * r;
    if (dd < d.K) st(dq + row * d.K + dd, dqa[r] * scale);
  }
  if (lane == 0) Dbuf[lrow] = D;
  if constexpr (kBias) {
    __syncwarp();
    for (int64_t i = lane; i < d.topk; i += 32) st(dbias + row * d.topk + i, dbs[i]);
  }
}

// Inverse routing lists of one (b, h) (one warp per block): offsets[j] .. offsets[j+1] index list[], whose entries
// t·topk + i are the valid selections of chunk j in increasing t. cursor: n_kc ints of scratch.
__global__ void __launch_bounds__(32)
    chunk_list_fill_kernel(const int64_t* __restrict__ idx, int* __restrict__ cursor, int* __restrict__ offsets,
                           int* __restrict__ list, Dims d, int64_t n_kc) {
  const int lane = threadIdx.x;
  const int64_t bh = blockIdx.x, b = bh / d.H, h = bh % d.H;
  int* cur = cursor + bh * n_kc;
  int* off = offsets + bh * (n_kc + 1);
  int* lst = list + bh * d.T * d.topk;
  const int64_t n_e = d.T * d.topk;
  for (int64_t j = lane; j < n_kc; j += 32) cur[j] = 0;
  __syncwarp();
  // The valid chunk of entry e (t-major), or −1.
  auto chunk_of = [&](int64_t e) -> int64_t {
    if (e >= n_e) return -1;
    const int64_t t = e / d.topk, i = e - t * d.topk;
    const int64_t j = idx[((b * d.T + t) * d.H + h) * d.topk + i];
    const int64_t c = (d.S - d.T + t) / d.N;
    return (j >= 0 && j < c) ? j : -1;
  };
  // Pass 1: counts.
  for (int64_t e0 = 0; e0 < n_e; e0 += 32) {
    const int64_t j = chunk_of(e0 + lane);
    const unsigned peers = __match_any_sync(kFull, static_cast<long long>(j));
    if (j >= 0 && lane == __ffs(peers) - 1) cur[j] += __popc(peers);
    __syncwarp();
  }
  // Pass 2: exclusive scan; the cursors start at the offsets.
  int carry = 0;
  for (int64_t j0 = 0; j0 < n_kc; j0 += 32) {
    const int64_t j = j0 + lane;
    const int x = j < n_kc ? cur[j] : 0;
    int incl = x;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int y = __shfl_up_sync(kFull, incl, o);
      if (lane >= o) incl += y;
    }
    if (j < n_kc) {
      off[j] = carry + incl - x;
      cur[j] = carry + incl - x;
    }
    carry += __shfl_sync(kFull, incl, 31);
  }
  if (lane == 0) off[n_kc] = carry;
  __syncwarp();
  // Pass 3: placement, in entry order within each chunk.
  for (int64_t e0 = 0; e0 < n_e; e0 += 32) {
    const int64_t e = e0 + lane;
    const int64_t j = chunk_of(e);
    const unsigned peers = __match_any_sync(kFull, static_cast<long long>(j));
    const int leader = __ffs(peers) - 1;
    int base = 0;
    if (j >= 0 && lane == leader) base = cur[j];
    base = __shfl_sync(kFull, base, leader);
    if (j >= 0) {
      lst[base + __popc(peers & ((1u << lane) - 1u))] = static_cast<int>(e);
      if (lane == leader) cur[j] = base + __popc(peers);
    }
    __syncwarp();
  }
}

// Backward, key side: dk and dv of one tile of ≤ 32 keys inside chunk j, W = DP/16 warps (see the file comment).
template <typename T, int DP>
__global__ void __launch_bounds__(DP * 2)
    chunk_attn_bwd_dkdv_kernel(const T* __restrict__ dout, const T* __restrict__ q, const T* __restrict__ k,
                               const T* __restrict__ v, const T* __restrict__ bias, const float* __restrict__ lse,
                               const float* __restrict__ Dbuf, const int* __restrict__ offsets,
                               const int* __restrict__ list, T* __restrict__ dk, T* __restrict__ dv, Dims d,
                               int64_t n_kc, int64_t tpc, float scale) {
  constexpr int W = DP / 16;     // warps; warp w owns dims [16w, 16w + 16)
  constexpr int SL = 16;
  constexpr int QB = 64 / W;     // queries per batch
  constexpr int NT = W * 32;
  __shared__ float q_s[QB][DP];
  __shared__ float do_s[QB][DP];
  __shared__ float red_s[QB][W][32];
  __shared__ float red_p[QB][W][32];
  __shared__ int64_t trow_s[QB];
  __shared__ int64_t lim_s[QB];
  __shared__ float add_s[QB];
  __shared__ float lse_s[QB];
  __shared__ float D_s[QB];

  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int64_t blk = blockIdx.x;
  const int64_t a = blk % tpc, j = (blk / tpc) % n_kc, bh = blk / (tpc * n_kc);
  const int64_t b = bh / d.H, h = bh % d.H;
  const int64_t m0 = j * d.N + 32 * a;
  const int64_t m1 = min(min(m0 + 32, (j + 1) * d.N), d.S);
  if (m0 >= m1) return;  // the tail tiles of a partial last chunk (whole block)
  const int64_t nk = m1 - m0;
  const int64_t m = m0 + lane;
  const bool key_ok = lane < nk;

  float kr[SL], vr[SL], dka[SL], dva[SL];
#pragma unroll
  for (int i = 0; i < SL; ++i) {
    const int64_t dd = SL * w + i;
    kr[i] = key_ok && dd < d.K ? ld(k + ((b * d.S + m) * d.H + h) * d.K + dd) : 0.f;
    vr[i] = key_ok && dd < d.V ? ld(v + ((b * d.S + m) * d.H + h) * d.V + dd) : 0.f;
    dka[i] = 0.f;
    dva[i] = 0.f;
  }

  // Queries: the own chunk's (positions p in chunk j with p ≥ m0, causal), then chunk j's inverse list.
  const int64_t q0pos = d.S - d.T;  // position of query 0
  const int64_t p_lo = max(max(j * d.N, q0pos), m0), p_hi = min((j + 1) * d.N, d.S);  // [p_lo, p_hi)
  const int64_t n_own = p_hi > p_lo ? p_hi - p_lo : 0;
  const int* off = offsets + bh * (n_kc + 1);
  const int64_t l0 = off[j], n_list = off[j + 1] - l0;
  const int* lst = list + bh * d.T * d.topk + l0;
  const int64_t total = n_own + n_list;

  for (int64_t base = 0; base < total; base += QB) {
    const int64_t nb = min(static_cast<int64_t>(QB), total - base);
    if (tid < QB) {
      const int64_t u = base + tid;
      int64_t trow = -1, lim = -1;
      float add = 0.f, lt = 0.f, Dt = 0.f;
      if (tid < nb) {
        int64_t t;
        if (u < n_own) {
          t = p_lo + u - q0pos;
          lim = p_lo + u;  // keys m ≤ p
        } else {
          const int64_t e = lst[u - n_own];
          t = e / d.topk;
          const int64_t i = e - t * d.topk;
          lim = LLONG_MAX;  // a selected chunk is entirely visible
          if (bias != nullptr) add = ld(bias + ((b * d.T + t) * d.H + h) * d.topk + i);
        }
        trow = (b * d.T + t) * d.H + h;
        const int64_t lrow = (b * d.H + h) * d.T + t;
        lt = lse[lrow];
        Dt = Dbuf[lrow];
      }
      trow_s[tid] = trow;
      lim_s[tid] = lim;
      add_s[tid] = add;
      lse_s[tid] = lt;
      D_s[tid] = Dt;
    }
    __syncthreads();
    for (int e = tid; e < QB * DP; e += NT) {
      const int qq = e / DP, dd = e % DP;
      const int64_t trow = trow_s[qq];
      q_s[qq][dd] = trow >= 0 && dd < d.K ? ld(q + trow * d.K + dd) : 0.f;
      do_s[qq][dd] = trow >= 0 && dd < d.V ? ld(dout + trow * d.V + dd) : 0.f;
    }
    __syncthreads();
    for (int qq = 0; qq < nb; ++qq) {
      float ps = 0.f, pd = 0.f;
#pragma unroll
      for (int i = 0; i < SL; ++i) {
        ps = fmaf(q_s[qq][SL * w + i], kr[i], ps);
        pd = fmaf(do_s[qq][SL * w + i], vr[i], pd);
      }
      red_s[qq][w][lane] = ps;
      red_p[qq][w][lane] = pd;
    }
    __syncthreads();
    for (int qq = 0; qq < nb; ++qq) {
      float s = 0.f, dp = 0.f;
#pragma unroll
      for (int ww = 0; ww < W; ++ww) {
        s += red_s[qq][ww][lane];
        dp += red_p[qq][ww][lane];
      }
      const bool vis = key_ok && m <= lim_s[qq];
      const float P = vis ? expf(s * scale + add_s[qq] - lse_s[qq]) : 0.f;
      const float ds = P * (dp - D_s[qq]);
#pragma unroll
      for (int i = 0; i < SL; ++i) {
        dka[i] = fmaf(ds, q_s[qq][SL * w + i], dka[i]);
        dva[i] = fmaf(P, do_s[qq][SL * w + i], dva[i]);
      }
    }
    __syncthreads();  // the next batch overwrites the staged rows and partials
  }
  if (!key_ok) return;
#pragma unroll
  for (int i = 0; i < SL; ++i) {
    const int64_t dd = SL * w + i;
    if (dd < d.K) st(dk + ((b * d.S + m) * d.H + h) * d.K + dd, dka[i] * scale);
    if (dd < d.V) st(dv + ((b * d.S + m) * d.H + h) * d.V + dd, dva[i]);
  }
}

// idx check, pass 1: the first bad (b, t, h) row, as ULLONG_MAX − row in *worst (0 = none; starts at 0).
__global__ void chunk_idx_check_kernel(const int64_t* __restrict__ idx, int64_t rows, int64_t T_, int64_t H,
                                       int64_t topk, int64_t S, int64_t N, unsigned long long* __restrict__ worst) {
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; row < rows;
       row += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = (row / H) % T_, c = (S - T_ + t) / N;
    int64_t slot = 0, value = 0, first = 0;
    if (idx_row_verdict(idx + row * topk, topk, c, slot, value, first))
      atomicMax(worst, ULLONG_MAX - static_cast<unsigned long long>(row));
  }
}

// idx check, pass 2 (one thread): info = {code, value} of the first bad row, or {−1, 0}.
__global__ void chunk_idx_report_kernel(const int64_t* __restrict__ idx, int64_t T_, int64_t H, int64_t topk,
                                        int64_t S, int64_t N, const unsigned long long* __restrict__ worst,
                                        long long* __restrict__ info) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  const unsigned long long w = *worst;
  if (w == 0) {
    info[0] = -1;
    info[1] = 0;
    return;
  }
  const int64_t row = static_cast<int64_t>(ULLONG_MAX - w);
  const int64_t t = (row / H) % T_, c = (S - T_ + t) / N;
  int64_t slot = 0, value = 0, first = 0;
  idx_row_verdict(idx + row * topk, topk, c, slot, value, first);
  info[0] = (row * topk + slot) * topk + first;
  info[1] = value;
}

// ---------------------------------------------------------------------------------------------------------
// launch helpers

// Calls f.template operator()<T>() for the storage type of dtype dt (float32 or bfloat16).
template <typename F>
void with_dtype(DType dt, const char* op, const char* arg, F&& f) {
  switch (dt) {
    case DType::Float32: f.template operator()<float>(); return;
    case DType::BFloat16: f.template operator()<BFloat16>(); return;
    default: break;
  }
  HYDRA_CHECK(false, "{}: '{}' has dtype {}; the CUDA kernels support float32 and bfloat16", op, arg,
              dtype_name(dt));
}

// Calls f.template operator()<DP>() for the smallest width DP in {32, 64, 128} holding D dims (1 ≤ D ≤ 128).
template <typename F>
void with_width(int64_t D, F&& f) {
  if (D <= 32) {
    f.template operator()<32>();
  } else if (D <= 64) {
    f.template operator()<64>();
  } else {
    f.template operator()<128>();
  }
}

void check_head_dim(int64_t D, const char* op, const char* what, const Tensor& t, const char* arg) {
  HYDRA_CHECK(D >= 1 && D <= kMaxHeadDim,
              "{}: head dim {} = {} is not supported on CUDA (supported: 1 to {}); '{}' shape {}", op, what, D,
              kMaxHeadDim, arg, shape_str(t.shape()));
}

void check_contiguous(const Tensor& t, const char* op, const char* arg) {
  HYDRA_CHECK(!t.defined() || t.is_contiguous(), "{} (cuda): '{}' must be contiguous, shape {}", op, arg,
              shape_str(t.shape()));
}

void check_topk_limit(int64_t topk, const char* op, const char* what) {
  HYDRA_CHECK(topk <= kMaxTopk, "{}: topk = {} is not supported on CUDA {} (supported: topk <= {})", op, topk, what,
              kMaxTopk);
}

unsigned row_blocks(int64_t rows, const char* op) {
  const int64_t blocks = (rows + kWarps - 1) / kWarps;
  HYDRA_CHECK(blocks <= INT_MAX, "{}: {} query rows are too many for one launch", op, rows);
  return static_cast<unsigned>(blocks);
}

Dims attn_dims(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& idx, int64_t chunk) {
  return Dims{q.size(0), q.size(1), k.size(1), q.size(2), q.size(3), v.size(3), chunk, idx.size(3)};
}

template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.raw_data()) : nullptr;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// entry points

void chunk_route_cuda(const Tensor& q0, const Tensor& summaries, const Tensor& idx, int64_t chunk, int64_t total_len) {
  const char* op = "chunk_route";
  check_contiguous(q0, op, "q0");
  check_contiguous(summaries, op, "summaries");
  check_contiguous(idx, op, "idx");
  const int64_t B = q0.size(0), Tq = q0.size(1), H = q0.size(2), K = q0.size(3), n_c = summaries.size(1);
  const int64_t topk = idx.size(3);
  check_head_dim(K, op, "K", q0, "q0");
  check_topk_limit(topk, op, "routing");
  HYDRA_CHECK(n_c <= INT_MAX, "{}: n_c = {} summaries are too many for the CUDA kernel", op, n_c);
  const int64_t rows = B * Tq * H;
  if (rows == 0 || topk == 0) return;
  cuda::DeviceGuard guard(q0.device().index);
  cudaStream_t s = cuda::stream_of(q0);
  const std::size_t smem = static_cast<std::size_t>(kWarps) * 2 * topk * (sizeof(float) + sizeof(int));
  with_dtype(q0.dtype(), op, "q0", [&]<typename T>() {
    with_width(K, [&]<int DP>() {
      chunk_route_kernel<T, DP><<<row_blocks(rows, op), kRowThreads, smem, s>>>(
          static_cast<const T*>(q0.raw_data()), ptr_or_null<T>(summaries), static_cast<int64_t*>(idx.raw_data()), B,
          Tq, H, K, n_c, chunk, topk, total_len);
    });
  });
  HYDRA_CUDA_CHECK_LAUNCH("chunk_route");
}

void chunk_idx_check_cuda(const Tensor& idx, int64_t S, int64_t chunk,
                          std::function<std::string(int64_t, int64_t)> message) {
  check_contiguous(idx, "chunk_idx_check", "idx");
  const int64_t Tq = idx.size(1), H = idx.size(2), topk = idx.size(3), rows = idx.size(0) * Tq * H;
  if (rows == 0 || topk == 0) return;
  cuda::DeviceGuard guard(idx.device().index);
  cudaStream_t s = cuda::stream_of(idx);
  Tensor worst = zeros({1}, DType::Int64, idx.device());
  Tensor info = empty({2}, DType::Int64, idx.device());
  const int64_t want = (rows + kCheckThreads - 1) / kCheckThreads;
  const unsigned blocks = static_cast<unsigned>(want < 4096 ? want : 4096);  // grid-stride beyond
  chunk_idx_check_kernel<<<blocks, kCheckThreads, 0, s>>>(static_cast<const int64_t*>(idx.raw_data()), rows, Tq, H,
                                                          topk, S, chunk,
                                                          static_cast<unsigned long long*>(worst.raw_data()));
  HYDRA_CUDA_CHECK_LAUNCH("chunk_idx_check");
  chunk_idx_report_kernel<<<1, 1, 0, s>>>(static_cast<const int64_t*>(idx.raw_data()), Tq, H, topk, S, chunk,
                                          static_cast<const unsigned long long*>(worst.raw_data()),
                                          static_cast<long long*>(info.raw_data()));
  HYDRA_CUDA_CHECK_LAUNCH("chunk_idx_check (report)");
  cuda::defer_device_check(idx.device().index, info.raw_data(), std::move(message));
}

void chunk_attn_forward_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& idx, const Tensor& bias,
                             const Tensor& o, const Tensor& lse, int64_t chunk, double scale) {
  const char* op = "chunk_attn_forward";
  for (const auto& [t, name] : {std::pair{&q, "q"}, std::pair{&k, "k"}, std::pair{&v, "v"}, std::pair{&idx, "idx"},
                                std::pair{&bias, "bias"}, std::pair{&o, "o"}, std::pair{&lse, "lse"}})
    check_contiguous(*t, op, name);
  const Dims d = attn_dims(q, k, v, idx, chunk);
  check_head_dim(d.K, op, "K", q, "q");
  check_head_dim(d.V, op, "V", v, "v");
  HYDRA_CHECK(lse.dtype() == DType::Float32, "{} (cuda): lse must be float32, got {}", op, dtype_name(lse.dtype()));
  const int64_t rows = d.B * d.T * d.H;
  if (rows == 0) return;
  cuda::DeviceGuard guard(q.device().index);
  cudaStream_t s = cuda::stream_of(q);
  const float sc = static_cast<float>(scale);
  with_dtype(q.dtype(), op, "q", [&]<typename T>() {
    with_width(std::max(d.K, d.V), [&]<int DP>() {
      chunk_attn_fwd_kernel<T, DP><<<row_blocks(rows, op), kRowThreads, 0, s>>>(
          static_cast<const T*>(q.raw_data()), static_cast<const T*>(k.raw_data()),
          static_cast<const T*>(v.raw_data()), ptr_or_null<int64_t>(idx), ptr_or_null<T>(bias),
          static_cast<T*>(o.raw_data()), static_cast<float*>(lse.raw_data()), d, sc);
    });
  });
  HYDRA_CUDA_CHECK_LAUNCH("chunk_attn_forward");
}

void chunk_attn_backward_cuda(const Tensor& do_, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& idx,
                              const Tensor& bias, const Tensor& o, const Tensor& lse, const Tensor& dq,
                              const Tensor& dk, const Tensor& dv, const Tensor& dbias, int64_t chunk, double scale) {
  const char* op = "chunk_attn_backward";
  for (const auto& [t, name] :
       {std::pair{&do_, "do"}, std::pair{&q, "q"}, std::pair{&k, "k"}, std::pair{&v, "v"}, std::pair{&idx, "idx"},
        std::pair{&bias, "bias"}, std::pair{&o, "o"}, std::pair{&lse, "lse"}, std::pair{&dq, "dq"},
        std::pair{&dk, "dk"}, std::pair{&dv, "dv"}, std::pair{&dbias, "dbias"}})
    check_contiguous(*t, op, name);
  const Dims d = attn_dims(q, k, v, idx, chunk);
  check_head_dim(d.K, op, "K", q, "q");
  check_head_dim(d.V, op, "V", v, "v");
  HYDRA_CHECK(lse.dtype() == DType::Float32, "{} (cuda): lse must be float32, got {}", op, dtype_name(lse.dtype()));
  HYDRA_CHECK(bias.defined() == dbias.defined(), "{} (cuda): dbias must be given exactly when bias is", op);
  if (bias.defined()) check_topk_limit(d.topk, op, "with a bias (dbias rows are summed in shared memory)");
  HYDRA_CHECK(d.T * d.topk <= INT_MAX, "{}: T * topk = {} is too large for the CUDA kernel's int32 routing lists",
              op, d.T * d.topk);
  const int64_t rows = d.B * d.T * d.H, BH = d.B * d.H;
  if (BH == 0 || d.S == 0) return;
  const int64_t n_kc = (d.S + d.N - 1) / d.N;  // chunks holding keys (the last may be partial)
  const int64_t tpc = (d.N + 31) / 32;          // key tiles per chunk
  HYDRA_CHECK(BH * n_kc * tpc <= INT_MAX && BH <= INT_MAX, "{}: B·H·S = {} keys are too many for one launch", op,
              BH * d.S);
  cuda::DeviceGuard guard(q.device().index);
  cudaStream_t s = cuda::stream_of(q);
  const Device dev = q.device();
  const float sc = static_cast<float>(scale);
  Tensor Dbuf = empty({std::max<int64_t>(rows, 1)}, DType::Float32, dev);
  Tensor cursor = empty({BH * n_kc}, DType::Int32, dev);
  Tensor offsets = empty({BH * (n_kc + 1)}, DType::Int32, dev);
  Tensor list = empty({std::max<int64_t>(BH * d.T * d.topk, 1)}, DType::Int32, dev);
  with_dtype(q.dtype(), op, "q", [&]<typename T>() {
    with_width(std::max(d.K, d.V), [&]<int DP>() {
      if (rows > 0) {
        const T* dop = static_cast<const T*>(do_.raw_data());
        const T* qp = static_cast<const T*>(q.raw_data());
        const T* kp = static_cast<const T*>(k.raw_data());
        const T* vp = static_cast<const T*>(v.raw_data());
        const T* op_ = static_cast<const T*>(o.raw_data());
        const float* lp = static_cast<const float*>(lse.raw_data());
        if (bias.defined()) {
          const std::size_t smem = static_cast<std::size_t>(kWarps) * d.topk * sizeof(float);
          chunk_attn_bwd_dq_kernel<T, DP, true><<<row_blocks(rows, op), kRowThreads, smem, s>>>(
              dop, qp, kp, vp, ptr_or_null<int64_t>(idx), ptr_or_null<T>(bias), op_, lp,
              static_cast<T*>(dq.raw_data()), static_cast<T*>(dbias.raw_data()), static_cast<float*>(Dbuf.raw_data()),
              d, sc);
        } else {
          chunk_attn_bwd_dq_kernel<T, DP, false><<<row_blocks(rows, op), kRowThreads, 0, s>>>(
              dop, qp, kp, vp, ptr_or_null<int64_t>(idx), nullptr, op_, lp, static_cast<T*>(dq.raw_data()), nullptr,
              static_cast<float*>(Dbuf.raw_data()), d, sc);
        }
        HYDRA_CUDA_CHECK_LAUNCH("chunk_attn_backward (dq)");
      }
      chunk_list_fill_kernel<<<static_cast<unsigned>(BH), 32, 0, s>>>(
          ptr_or_null<int64_t>(idx), static_cast<int*>(cursor.raw_data()), static_cast<int*>(offsets.raw_data()),
          static_cast<int*>(list.raw_data()), d, n_kc);
      HYDRA_CUDA_CHECK_LAUNCH("chunk_attn_backward (inverse lists)");
      chunk_attn_bwd_dkdv_kernel<T, DP><<<static_cast<unsigned>(BH * n_kc * tpc), DP * 2, 0, s>>>(
          static_cast<const T*>(do_.raw_data()), static_cast<const T*>(q.raw_data()),
          static_cast<const T*>(k.raw_data()), static_cast<const T*>(v.raw_data()), ptr_or_null<T>(bias),
          static_cast<const float*>(lse.raw_data()), static_cast<const float*>(Dbuf.raw_data()),
          static_cast<const int*>(offsets.raw_data()), static_cast<const int*>(list.raw_data()),
          static_cast<T*>(dk.raw_data()), static_cast<T*>(dv.raw_data()), d, n_kc, tpc, sc);
      HYDRA_CUDA_CHECK_LAUNCH("chunk_attn_backward (dk dv)");
    });
  });
}

}  // namespace hydra
