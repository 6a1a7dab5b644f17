// Reduction kernels: sum / mean / norm over rows, max / min with indices, softmax / log_softmax / logsumexp,
// cumsum (and its reverse, the cumsum backward), topk, and the scatter-add behind max_backward / topk_backward.
//
// Layouts (the dispatch functions in tensor/ops/reduce.cpp hand over contiguous inputs):
//   rows   x (outer, inner):     out[o] = R_{i<inner} f(x[o, i])            (sum, mean, Σ|x|, sqrt Σ x²)
//   lines  x (outer, n, inner):  line l = o*inner + j is x[o, :, j]          (max/min, softmax family, cumsum)
//   topk   x (rows, n):          the k best of each row, sorted, with int64 indices
// Math, per line of n values v_i:
//   max/min   (v*, i*) = best (NaN beats every number; equal values: lowest i)
//   softmax   m = max_i v_i (NaNs skipped; m := 0 when not finite), s = Σ exp(v_i − m);
//             softmax_i = exp(v_i − m)/s, log_softmax_i = v_i − (m + log s), logsumexp = m + log s
//   cumsum    y_i = Σ_{j≤i} v_j (reverse: Σ_{j≥i} v_j)
//   topk      a total order "a before b" = better value, or same value (both NaN) and lower index
//
// Thread mapping:
//   - rows with inner = 1 lines ("row kernels"): a group of kGroup threads per row, a warp (32) for rows of at
//     most kWarpRowMax elements, else the whole 256-thread block; loads are coalesced (lane i reads i, i+kGroup..),
//     each thread accumulates its own elements, then a butterfly warp shuffle plus an 8-slot shared-memory step
//     gives every thread of the group the same total. No atomics: results are deterministic.
//   - sum/mean/norm over few (< 264) but long (> 32768) rows: each row is cut into chunks, one group per chunk
//     writes a partial (accumulator type) and a second launch reduces the partials of each row.
//   - lines with inner > 1 ("column kernels"): one thread per line walks the n strided elements in order;
//     adjacent threads read adjacent j, so loads are coalesced. When there are few lines (< 4096) but n ≥ 1024,
//     the input is first transposed to (outer, inner, n) and the row kernels run instead.
//   - cumsum rows: tiles of kGroup elements, an inclusive shuffle scan per warp, warp totals through shared
//     memory, a running carry across tiles.
//   - topk: one block per row, a bitonic sort of (value, index) pairs under the total order above, padded to
//     P = next power of two ≥ n; in shared memory when P ≤ 2048, else in a global scratch buffer (rows in
//     batches bounded to 256 MiB). The first k sorted entries are written.
//   - scatter-add: one thread per line (o, j) adds its k gradients in order (the CPU loop); out-of-range indices
//     are skipped and reported through a 2-element flag the host reads back.
// Accumulation: float32 and bfloat16 accumulate in float32 in the tree-shaped row kernels (float64 inputs in
// float64, integers in int64). Sequential walks (column kernels, the cumsum carry) accumulate in float64 for every
// floating dtype: a sequential float32 sum over a 65537-long line drifts past the float32 tolerance.
// Softmax family over rows longer than kWarpRowMax (inner = 1): softmax_long_kernel, one block (≤ 512 threads) per
//   row, 16-byte packs when n and the pointers allow, an online (max, sum) in one read of the row (kept in shared
//   memory when ≤ 64 KiB), then one write pass: x read once from DRAM and y written once.
// FLOPs and bytes per call: one to three reads of x (long softmax rows: one) and one write of
// the output; FLOPs are O(numel) (a few per element; topk O(numel · log² P) comparisons).
// Reference: the CPU kernels of tensor/ops/reduce.cpp run in float64 (tests/tensor/test_cuda_reduce.cpp).
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "tensor/cuda/common.cuh"
#include "tensor/cuda/reduce_ops.h"
#include "tensor/dispatch.h"

namespace hydra::cuda {
namespace {

constexpr int kThreads = 256;           // block size of the row / column kernels
constexpr int kWarps = kThreads / 32;
constexpr int64_t kWarpRowMax = 256;    // rows of at most this many elements get a warp, longer ones a block
constexpr int64_t kFewLines = 4096;     // fewer lines than this (with n ≥ kTransposeMinN): transpose to rows
constexpr int64_t kTransposeMinN = 1024;
constexpr int kTopkSharedMaxP = 2048;   // padded row length sorted in shared memory
constexpr int kTopkGlobalThreads = 1024;
constexpr std::size_t kTopkScratchBytes = std::size_t{256} << 20;

// ---------------------------------------------------------------------------------------------------------
// element types

template <typename T>
constexpr bool kIsFloat = std::is_floating_point_v<compute_t<T>>;

// Accumulator of the tree-shaped kernels: float for float32/bfloat16, double for float64, int64 for integers.
template <typename T>
using acc_t = std::conditional_t<std::is_same_v<compute_t<T>, double>, double,
                                 std::conditional_t<kIsFloat<T>, float, int64_t>>;
// Accumulator of sequential walks: double for every floating type, int64 for integers.
template <typename T>
using wide_t = std::conditional_t<kIsFloat<T>, double, int64_t>;

template <typename A, typename T>
__device__ __forceinline__ A ld(const T& v) {
  return static_cast<A>(static_cast<compute_t<T>>(v));
}

template <typename T, typename A>
__device__ __forceinline__ T to_out(A v) {
  if constexpr (std::is_same_v<T, BFloat16>) return BFloat16(static_cast<float>(v));
  else return static_cast<T>(v);
}

template <typename V>
__device__ __forceinline__ bool is_nan_v(V v) {
  if constexpr (std::is_floating_point_v<V>) return isnan(v);
  else return false;
}

template <typename A>
__device__ __forceinline__ A exp_a(A v) {
  if constexpr (std::is_same_v<A, float>) return expf(v);
  else return ::exp(v);
}
template <typename A>
__device__ __forceinline__ A log_a(A v) {
  if constexpr (std::is_same_v<A, float>) return logf(v);
  else return ::log(v);
}

template <typename V>
__device__ __forceinline__ V shfl_xor(V v, int mask) {
  if constexpr (std::is_same_v<V, int64_t>)
    return static_cast<int64_t>(__shfl_xor_sync(0xffffffffu, static_cast<long long>(v), mask));
  else return __shfl_xor_sync(0xffffffffu, v, mask);
}
template <typename V>
__device__ __forceinline__ V shfl_idx(V v, int src) {
  if constexpr (std::is_same_v<V, int64_t>)
    return static_cast<int64_t>(__shfl_sync(0xffffffffu, static_cast<long long>(v), src));
  else return __shfl_sync(0xffffffffu, v, src);
}
template <typename V>
__device__ __forceinline__ V shfl_up(V v, int delta) {
  if constexpr (std::is_same_v<V, int64_t>)
    return static_cast<int64_t>(__shfl_up_sync(0xffffffffu, static_cast<long long>(v), delta));
  else return __shfl_up_sync(0xffffffffu, v, delta);
}

struct SumOp {
  template <typename V>
  __device__ V operator()(V a, V b) const { return a + b; }
};
// Max that skips NaN (a NaN operand loses), like the CPU's std::max(m, v) starting from −inf.
struct MaxOp {
  template <typename V>
  __device__ V operator()(V a, V b) const { return b > a ? b : a; }
};

// Reduces v over a group of kGroup threads (32: the warp; kThreads: the block) and returns the total to every
// thread of the group. The butterfly makes every lane compute the same value (the ops are commutative).
// kGroup == kThreads: every thread of the block must call it (it synchronizes); smem has kWarps slots.
template <int kGroup, typename V, typename Op>
__device__ __forceinline__ V group_reduce(V v, Op op, V* smem) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v = op(v, shfl_xor(v, m));
  if constexpr (kGroup == 32) {
    return v;
  } else {
    static_assert(kGroup == kThreads, "group is a warp or the block");
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) smem[warp] = v;
    __syncthreads();
    V t = smem[0];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) t = op(t, smem[w]);
    __syncthreads();  // smem may be reused by the next call
    return t;
  }
}

// max/min candidates: value and index; index < 0 marks "no element yet".
template <bool kMax, typename C>
__device__ __forceinline__ bool beats(C av, int64_t ai, C bv, int64_t bi) {
  if (bi < 0) return ai >= 0;
  if (ai < 0) return false;
  const bool an = is_nan_v(av), bn = is_nan_v(bv);
  if (an != bn) return an;
  if (!an && av != bv) return kMax ? av > bv : av < bv;
  return ai < bi;
}

template <int kGroup, bool kMax, typename C>
__device__ __forceinline__ void group_best(C& v, int64_t& i, C* sv, int64_t* si) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) {
    const C ov = shfl_xor(v, m);
    const int64_t oi = shfl_xor(i, m);
    if (beats<kMax>(ov, oi, v, i)) {
      v = ov;
      i = oi;
    }
  }
  if constexpr (kGroup == kThreads) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) {
      sv[warp] = v;
      si[warp] = i;
    }
    __syncthreads();
    v = sv[0];
    i = si[0];
#pragma unroll
    for (int w = 1; w < kWarps; ++w)
      if (beats<kMax>(sv[w], si[w], v, i)) {
        v = sv[w];
        i = si[w];
      }
    __syncthreads();
  }
}

// ---- row-reduction element maps and finishers ----
enum class MapKind { Id, Abs, Square };
enum class FinKind { Cast, Divide, Sqrt };

template <typename A, MapKind kMap>
struct Map {
  template <typename In>
  __device__ __forceinline__ A operator()(const In& x) const {
    const A v = ld<A>(x);
    if constexpr (kMap == MapKind::Abs) return v < A(0) ? -v : v;
    else if constexpr (kMap == MapKind::Square) return v * v;
    else return v;
  }
};

template <typename Out, typename A>
struct Finish {
  FinKind kind;
  A count;  // Divide: the number of elements of a row
  __device__ __forceinline__ Out operator()(A a) const {
    if constexpr (std::is_floating_point_v<A>) {
      if (kind == FinKind::Divide) a = a / count;  // 0/0 = NaN for an empty mean
      else if (kind == FinKind::Sqrt) a = sqrt(a);
    }
    return to_out<Out>(a);
  }
};

// ---------------------------------------------------------------------------------------------------------
// kernels

// Segment s (one row chunk): row s / chunks, elements [c*chunk, min(inner, (c+1)*chunk)) of it, c = s % chunks.
// out[s] = fin(Σ map(x)). kGroup threads per segment, kThreads / kGroup segments per block, grid-stride over s.
template <int kGroup, typename In, typename A, typename Out, typename M, typename F>
__global__ void __launch_bounds__(kThreads) reduce_segments_kernel(const In* __restrict__ x, Out* __restrict__ out,
                                                                   int64_t nseg, int64_t inner, int64_t chunk,
                                                                   int64_t chunks, M map, F fin) {
  __shared__ A smem[kWarps];
  constexpr int kPerBlock = kThreads / kGroup;
  const int g = threadIdx.x / kGroup, lane = threadIdx.x % kGroup;
  for (int64_t s = blockIdx.x * int64_t(kPerBlock) + g; s < nseg; s += int64_t(gridDim.x) * kPerBlock) {
    const int64_t row = s / chunks, c = s % chunks;
    const int64_t begin = c * chunk, end = min(inner, begin + chunk);
    const In* p = x + row * inner;
    A acc = A(0);
    for (int64_t i = begin + lane; i < end; i += kGroup) acc += map(p[i]);
    acc = group_reduce<kGroup>(acc, SumOp{}, smem);
    if (lane == 0) out[s] = fin(acc);
  }
}

// Max/min of each contiguous row of n (> 0) elements; values may be null.
template <int kGroup, bool kMax, typename T>
__global__ void __launch_bounds__(kThreads) extreme_rows_kernel(const T* __restrict__ x, T* __restrict__ values,
                                                                int64_t* __restrict__ indices, int64_t rows,
                                                                int64_t n) {
  using C = compute_t<T>;
  __shared__ C sv[kWarps];
  __shared__ int64_t si[kWarps];
  constexpr int kPerBlock = kThreads / kGroup;
  const int g = threadIdx.x / kGroup, lane = threadIdx.x % kGroup;
  for (int64_t r = blockIdx.x * int64_t(kPerBlock) + g; r < rows; r += int64_t(gridDim.x) * kPerBlock) {
    const T* p = x + r * n;
    C best = C(0);
    int64_t best_i = -1;
    for (int64_t i = lane; i < n; i += kGroup) {  // increasing i: a later equal value never wins
      const C v = static_cast<C>(p[i]);
      if (beats<kMax>(v, i, best, best_i)) {
        best = v;
        best_i = i;
      }
    }
    group_best<kGroup, kMax>(best, best_i, sv, si);
    if (lane == 0) {
      if (values) values[r] = p[best_i];
      indices[r] = best_i;
    }
  }
}

// One thread per line of the (outer, n, inner) layout: the CPU's sequential scan.
template <bool kMax, typename T>
__global__ void extreme_cols_kernel(const T* __restrict__ x, T* __restrict__ values, int64_t* __restrict__ indices,
                                    int64_t lines, int64_t n, int64_t inner) {
  using C = compute_t<T>;
  for (int64_t l = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; l < lines; l += int64_t(gridDim.x) * blockDim.x) {
    const T* line = x + (l / inner) * n * inner + (l % inner);
    C best = static_cast<C>(line[0]);
    int64_t best_i = 0;
    for (int64_t i = 1; i < n && !is_nan_v(best); ++i) {
      const C v = static_cast<C>(line[i * inner]);
      if (is_nan_v(v) || (kMax ? v > best : v < best)) {
        best = v;
        best_i = i;
      }
    }
    if (values) values[l] = line[best_i * inner];
    indices[l] = best_i;
  }
}

// Softmax family over contiguous rows of n elements. LogSumExp writes y[r]; the others y[r*n + i].
template <int kGroup, typename T>
__global__ void __launch_bounds__(kThreads) softmax_rows_kernel(const T* __restrict__ x, T* __restrict__ y,
                                                                int64_t rows, int64_t n, SoftmaxKind kind) {
  using A = acc_t<T>;
  __shared__ A smem[kWarps];
  constexpr int kPerBlock = kThreads / kGroup;
  const int g = threadIdx.x / kGroup, lane = threadIdx.x % kGroup;
  for (int64_t r = blockIdx.x * int64_t(kPerBlock) + g; r < rows; r += int64_t(gridDim.x) * kPerBlock) {
    const T* p = x + r * n;
    A m = -std::numeric_limits<A>::infinity();
    for (int64_t i = lane; i < n; i += kGroup) m = MaxOp{}(m, ld<A>(p[i]));
    m = group_reduce<kGroup>(m, MaxOp{}, smem);
    if (!isfinite(m)) m = A(0);
    A s = A(0);
    for (int64_t i = lane; i < n; i += kGroup) s += exp_a(ld<A>(p[i]) - m);
    s = group_reduce<kGroup>(s, SumOp{}, smem);
    switch (kind) {
      case SoftmaxKind::Softmax:
        for (int64_t i = lane; i < n; i += kGroup) y[r * n + i] = to_out<T>(exp_a(ld<A>(p[i]) - m) / s);
        break;
      case SoftmaxKind::LogSoftmax: {
        const A shift = m + log_a(s);
        for (int64_t i = lane; i < n; i += kGroup) y[r * n + i] = to_out<T>(ld<A>(p[i]) - shift);
        break;
      }
      case SoftmaxKind::LogSumExp:
        if (lane == 0) y[r] = to_out<T>(m + log_a(s));
        break;
    }
  }
}

// ---- long softmax rows (n > kWarpRowMax, inner = 1): one block per row, 16-byte packs ----
constexpr int kLongMaxThreads = 512;
constexpr int kLongBatch = 4;                        // packs loaded per thread before any is used (float64: 1)
template <typename T>
constexpr int kLongBatchOf = std::is_same_v<T, double> ? 1 : kLongBatch;
constexpr int64_t kSoftmaxCacheBytes = 64 * 1024;    // a row up to this size stays in shared memory

template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) SmPack {
  T v[VEC];
};

// exp(d) for d = v − ref ≤ 0 (or +inf, NaN): float via ex2.approx (≈ 2 ulp), double via exp.
__device__ __forceinline__ float exp_fast(float d) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(d * 1.4426950408889634f));
  return r;
}
__device__ __forceinline__ double exp_fast(double d) { return ::exp(d); }

template <typename A>
__device__ __forceinline__ A clamp_ref(A m) {  // the reference of the exps: a finite stand-in for m = +inf
  return m < std::numeric_limits<A>::max() ? m : std::numeric_limits<A>::max();
}

// Merges the online state (m2, s2) into (m, s), s = Σ exp(v − clamp_ref(m)); m = −inf means "no finite-or-+inf
// value yet" (s is then 0, or NaN when a NaN was seen). Symmetric, so the butterfly gives every lane the same value.
template <typename A>
__device__ __forceinline__ void sm_merge(A& m, A& s, A m2, A s2) {
  const A c = m2 > m ? m2 : m;
  if (c == -std::numeric_limits<A>::infinity()) {
    s = s + s2;
    return;
  }
  const A cr = clamp_ref(c);
  s = s * exp_fast(clamp_ref(m) - cr) + s2 * exp_fast(clamp_ref(m2) - cr);
  m = c;
}

template <typename A>
__device__ __forceinline__ void block_sm_merge(A& m, A& s, A* shm, A* shs) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) sm_merge(m, s, shfl_xor(m, o), shfl_xor(s, o));
  __syncthreads();
  if (lane == 0) {
    shm[wid] = m;
    shs[wid] = s;
  }
  __syncthreads();
  m = lane < nw ? shm[lane] : -std::numeric_limits<A>::infinity();
  s = lane < nw ? shs[lane] : A(0);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) sm_merge(m, s, shfl_xor(m, o), shfl_xor(s, o));
}

// Same math as softmax_rows_kernel (m = max, NaNs skipped, m := 0 when not finite; s = Σ exp(v − m)), computed as
// an online (max, sum) in one read of the row, which is kept in shared memory when `cache` (each thread reads back
// only the packs it stored: no barrier needed), then one write pass. Per thread: batches of kLongBatch packs.
template <typename T, int VEC>
__global__ void __launch_bounds__(kLongMaxThreads) softmax_long_kernel(const T* __restrict__ x, T* __restrict__ y,
                                                                       int64_t rows, int64_t n, SoftmaxKind kind,
                                                                       bool cache) {
  using A = acc_t<T>;
  using P = SmPack<T, VEC>;
  constexpr A kNinf = -std::numeric_limits<A>::infinity();
  __shared__ A shm[32], shs[32];
  extern __shared__ __align__(16) unsigned char sm_cache_raw[];
  P* cx = reinterpret_cast<P*>(sm_cache_raw);
  const int64_t nv = n / VEC;
  const int bs = blockDim.x;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const P* xr = reinterpret_cast<const P*>(x + r * n);
    A m = kNinf, s = A(0);
    for (int64_t i0 = threadIdx.x; i0 < nv; i0 += int64_t(kLongBatchOf<T>) * bs) {
      A z[kLongBatchOf<T>][VEC];
#pragma unroll
      for (int j = 0; j < kLongBatchOf<T>; ++j) {
        const int64_t i = i0 + int64_t(j) * bs;
        if (i < nv) {
          const P p = xr[i];
          if (cache) cx[i] = p;
#pragma unroll
          for (int k = 0; k < VEC; ++k) z[j][k] = ld<A>(p.v[k]);
        } else {
#pragma unroll
          for (int k = 0; k < VEC; ++k) z[j][k] = kNinf;
        }
      }
      A pm = kNinf;
#pragma unroll
      for (int j = 0; j < kLongBatchOf<T>; ++j)
#pragma unroll
        for (int k = 0; k < VEC; ++k) pm = MaxOp{}(pm, z[j][k]);
      if (pm > m) {
        if (m != kNinf) s = s * exp_fast(clamp_ref(m) - clamp_ref(pm));
        m = pm;
      }
      if (m == kNinf) {  // only −inf and NaN so far: NaNs still poison s
#pragma unroll
        for (int j = 0; j < kLongBatchOf<T>; ++j)
#pragma unroll
          for (int k = 0; k < VEC; ++k)
            if (is_nan_v(z[j][k])) s = z[j][k];
      } else {
        const A ref = clamp_ref(m);
#pragma unroll
        for (int j = 0; j < kLongBatchOf<T>; ++j)
#pragma unroll
          for (int k = 0; k < VEC; ++k) s += exp_fast(z[j][k] - ref);
      }
    }
    block_sm_merge(m, s, shm, shs);
    if (!isfinite(m)) m = A(0);  // s is then inf (a +inf value), 0 (all −inf) or NaN, as Σ exp(v − 0) is
    if (kind == SoftmaxKind::LogSumExp) {
      if (threadIdx.x == 0) y[r] = to_out<T>(m + log_a(s));
      continue;
    }
    P* yr = reinterpret_cast<P*>(y + r * n);
    if (kind == SoftmaxKind::Softmax) {
      const A inv = A(1) / s;
      for (int64_t i = threadIdx.x; i < nv; i += bs) {
        const P p = cache ? cx[i] : xr[i];
        P o;
#pragma unroll
        for (int k = 0; k < VEC; ++k) o.v[k] = to_out<T>(exp_fast(ld<A>(p.v[k]) - m) * inv);
        yr[i] = o;
      }
    } else {
      const A shift = m + log_a(s);
      for (int64_t i = threadIdx.x; i < nv; i += bs) {
        const P p = cache ? cx[i] : xr[i];
        P o;
#pragma unroll
        for (int k = 0; k < VEC; ++k) o.v[k] = to_out<T>(ld<A>(p.v[k]) - shift);
        yr[i] = o;
      }
    }
  }
}

// One thread per line, float64 accumulation: the CPU loop.
template <typename T>
__global__ void softmax_cols_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t lines, int64_t n,
                                    int64_t inner, SoftmaxKind kind) {
  for (int64_t l = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; l < lines; l += int64_t(gridDim.x) * blockDim.x) {
    const int64_t base = (l / inner) * n * inner + (l % inner);
    const T* line = x + base;
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < n; ++i) m = MaxOp{}(m, ld<double>(line[i * inner]));
    if (!isfinite(m)) m = 0.0;
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += ::exp(ld<double>(line[i * inner]) - m);
    switch (kind) {
      case SoftmaxKind::Softmax:
        for (int64_t i = 0; i < n; ++i) y[base + i * inner] = to_out<T>(::exp(ld<double>(line[i * inner]) - m) / s);
        break;
      case SoftmaxKind::LogSoftmax: {
        const double shift = m + ::log(s);
        for (int64_t i = 0; i < n; ++i) y[base + i * inner] = to_out<T>(ld<double>(line[i * inner]) - shift);
        break;
      }
      case SoftmaxKind::LogSumExp: y[l] = to_out<T>(m + ::log(s)); break;
    }
  }
}

// Inclusive scan of contiguous rows of n elements (reverse: from the end), kGroup threads per row, in tiles of
// kGroup elements with a running carry. Accumulates in wide_t<T>.
template <int kGroup, typename T>
__global__ void __launch_bounds__(kThreads) scan_rows_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows,
                                                             int64_t n, bool reverse) {
  using W = wide_t<T>;
  __shared__ W warp_tot[kWarps];
  constexpr int kPerBlock = kThreads / kGroup;
  const int g = threadIdx.x / kGroup, lane = threadIdx.x % kGroup;
  const int wl = threadIdx.x % 32;            // lane in the warp
  const int wg = (threadIdx.x % kGroup) / 32;  // warp index inside the group
  for (int64_t r = blockIdx.x * int64_t(kPerBlock) + g; r < rows; r += int64_t(gridDim.x) * kPerBlock) {
    const T* p = x + r * n;
    T* q = y + r * n;
    W carry = W(0);
    for (int64_t base = 0; base < n; base += kGroup) {
      const int64_t t = base + lane;  // position in scan order
      const int64_t i = reverse ? n - 1 - t : t;
      W v = t < n ? ld<W>(p[i]) : W(0);
#pragma unroll
      for (int d = 1; d < 32; d <<= 1) {
        const W o = shfl_up(v, d);
        if (wl >= d) v += o;
      }
      W tile_total;
      if constexpr (kGroup == 32) {
        tile_total = shfl_idx(v, 31);
      } else {
        if (wl == 31) warp_tot[wg] = v;
        __syncthreads();
        W before = W(0);
        tile_total = W(0);
#pragma unroll
        for (int w = 0; w < kWarps; ++w) {
          if (w < wg) before += warp_tot[w];
          tile_total += warp_tot[w];
        }
        v += before;
        __syncthreads();  // warp_tot is rewritten by the next tile
      }
      if (t < n) q[i] = to_out<T>(carry + v);
      carry += tile_total;
    }
  }
}

// One thread per line of (outer, n, inner), the CPU loop.
template <typename T>
__global__ void scan_cols_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t lines, int64_t n, int64_t inner,
                                 bool reverse) {
  using W = wide_t<T>;
  for (int64_t l = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; l < lines; l += int64_t(gridDim.x) * blockDim.x) {
    const int64_t base = (l / inner) * n * inner + (l % inner);
    W acc = W(0);
    for (int64_t t = 0; t < n; ++t) {
      const int64_t i = reverse ? n - 1 - t : t;
      acc += ld<W>(x[base + i * inner]);
      y[base + i * inner] = to_out<T>(acc);
    }
  }
}

// topk: "entry a goes before entry b". Entries with index ≥ n are padding and go last.
template <typename C>
__device__ __forceinline__ bool topk_before(C va, int32_t ia, C vb, int32_t ib, int32_t n, bool largest) {
  const bool ea = ia >= n, eb = ib >= n;
  if (ea || eb) return ea == eb ? ia < ib : eb;
  const bool na = is_nan_v(va), nb = is_nan_v(vb);
  if (na != nb) return largest ? na : nb;  // largest: NaN first; smallest: NaN last
  if (!na && va != vb) return largest ? va > vb : va < vb;
  return ia < ib;
}

// One block per row r = row0 + blockIdx.x: bitonic sort of P (power of two ≥ n) entries, then the first k out.
// keys/idx in dynamic shared memory (scratch_keys == nullptr) or in scratch rows blockIdx.x of P entries.
template <typename T>
__global__ void __launch_bounds__(kTopkGlobalThreads)
    topk_sort_kernel(const T* __restrict__ x, T* __restrict__ values, int64_t* __restrict__ indices, int64_t row0,
                     int32_t n, int64_t k, int32_t P, bool largest, compute_t<T>* scratch_keys, int32_t* scratch_idx) {
  using C = compute_t<T>;
  extern __shared__ __align__(16) unsigned char topk_smem[];
  C* keys;
  int32_t* idx;
  if (scratch_keys) {
    keys = scratch_keys + int64_t(blockIdx.x) * P;
    idx = scratch_idx + int64_t(blockIdx.x) * P;
  } else {
    keys = reinterpret_cast<C*>(topk_smem);
    idx = reinterpret_cast<int32_t*>(topk_smem + std::size_t(P) * sizeof(C));
  }
  const int64_t r = row0 + blockIdx.x;
  const T* p = x + r * int64_t(n);
  for (int32_t i = threadIdx.x; i < P; i += blockDim.x) {
    idx[i] = i;
    keys[i] = i < n ? static_cast<C>(p[i]) : C(0);
  }
  __syncthreads();
  for (int32_t size = 2; size <= P; size <<= 1) {
    for (int32_t stride = size / 2; stride > 0; stride >>= 1) {
      for (int32_t t = threadIdx.x; t < P / 2; t += blockDim.x) {
        const int32_t i = 2 * stride * (t / stride) + (t % stride), j = i + stride;
        const bool ascending = (i & size) == 0;  // this sub-sequence sorts "before" first
        const C ki = keys[i], kj = keys[j];
        const int32_t ii = idx[i], ij = idx[j];
        if (topk_before(kj, ij, ki, ii, n, largest) == ascending) {
          keys[i] = kj;
          keys[j] = ki;
          idx[i] = ij;
          idx[j] = ii;
        }
      }
      __syncthreads();
    }
  }
  for (int64_t j = threadIdx.x; j < k; j += blockDim.x) {
    const int32_t s = idx[j];
    values[r * k + j] = p[s];
    indices[r * k + j] = s;
  }
}

// out (outer, n, inner) += g (outer, k, inner) along the middle axis by idx; one thread per line (o, j).
template <typename T>
__global__ void scatter_add_lines_kernel(const T* __restrict__ g, const int64_t* __restrict__ idx, T* __restrict__ out,
                                         int64_t lines, int64_t k, int64_t n, int64_t inner, int64_t* bad) {
  for (int64_t l = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; l < lines; l += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = l / inner, j = l % inner;
    for (int64_t t = 0; t < k; ++t) {
      const int64_t src = o * k * inner + t * inner + j;
      const int64_t ix = idx[src];
      if (ix < 0 || ix >= n) {  // every writer stores 1; any offending value will do for the message
        bad[0] = 1;
        bad[1] = ix;
        continue;
      }
      T& dst = out[o * n * inner + ix * inner + j];
      dst = to_out<T>(ld<wide_t<T>>(dst) + ld<wide_t<T>>(g[src]));
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// launch helpers

unsigned blocks_for_groups(int64_t groups, int per_block) {
  const int64_t b = (groups + per_block - 1) / per_block;
  return static_cast<unsigned>(b < 1 ? 1 : (b > (int64_t{1} << 20) ? (int64_t{1} << 20) : b));
}

// nseg segments of a (rows, inner) input split into `chunks` chunks of `chunk` elements per row.
template <typename In, typename A, typename Out, typename M, typename F>
void launch_reduce_segments(const In* x, Out* out, int64_t nseg, int64_t inner, int64_t chunk, int64_t chunks, M map,
                            F fin, cudaStream_t s) {
  HYDRA_CHECK(nseg > 0 && chunks > 0 && nseg % chunks == 0, "reduce: bad segment plan (nseg {}, chunks {})", nseg,
              chunks);
  if (std::min(chunk, inner) <= kWarpRowMax) {
    reduce_segments_kernel<32, In, A, Out><<<blocks_for_groups(nseg, kThreads / 32), kThreads, 0, s>>>(
        x, out, nseg, inner, chunk, chunks, map, fin);
  } else {
    reduce_segments_kernel<kThreads, In, A, Out><<<blocks_for_groups(nseg, 1), kThreads, 0, s>>>(
        x, out, nseg, inner, chunk, chunks, map, fin);
  }
  HYDRA_CUDA_CHECK_LAUNCH("reduce");
}

template <typename T, MapKind kMap>
void reduce_rows_typed(const Tensor& x, const Tensor& out, int64_t outer, int64_t inner, FinKind fin_kind) {
  using A = acc_t<T>;
  if (outer == 0) return;
  DeviceGuard guard(out.device().index);
  cudaStream_t s = stream_of(out);
  const T* xp = static_cast<const T*>(x.raw_data());
  T* op = static_cast<T*>(out.raw_data());
  const Finish<T, A> fin{fin_kind, static_cast<A>(inner)};
  // Few long rows: split each into chunks so that about 1024 groups run, then reduce the partials.
  int64_t chunks = 1, chunk = inner;
  if (outer < 264 && inner > 32768) {
    const int64_t want = (1024 + outer - 1) / outer;
    chunk = std::max<int64_t>(4096, (inner + want - 1) / want);
    chunks = (inner + chunk - 1) / chunk;
  }
  if (chunks == 1) {
    launch_reduce_segments<T, A, T>(xp, op, outer, inner, inner, 1, Map<A, kMap>{}, fin, s);
    return;
  }
  Tensor part = empty({outer * chunks}, dtype_of<A>::value, out.device());
  A* pp = static_cast<A*>(part.raw_data());
  launch_reduce_segments<T, A, A>(xp, pp, outer * chunks, inner, chunk, chunks, Map<A, kMap>{},
                                  Finish<A, A>{FinKind::Cast, A(0)}, s);
  launch_reduce_segments<A, A, T>(pp, op, outer, chunks, chunks, 1, Map<A, MapKind::Id>{}, fin, s);
}

// Lines (outer, n, inner) with inner > 1 and few of them: the (outer, inner, n) contiguous transpose.
bool use_transpose(int64_t outer, int64_t n, int64_t inner) {
  return inner > 1 && outer * inner < kFewLines && n >= kTransposeMinN;
}
Tensor transposed_rows(const Tensor& x, int64_t outer, int64_t n, int64_t inner) {
  return x.view({outer, n, inner}).transpose(1, 2).contiguous();
}

template <typename T>
void launch_extreme_rows(const T* x, T* values, int64_t* indices, int64_t rows, int64_t n, bool want_max,
                         cudaStream_t s) {
  const bool warp = n <= kWarpRowMax;
  const unsigned grid = blocks_for_groups(rows, warp ? kThreads / 32 : 1);
  if (warp) {
    if (want_max) extreme_rows_kernel<32, true, T><<<grid, kThreads, 0, s>>>(x, values, indices, rows, n);
    else extreme_rows_kernel<32, false, T><<<grid, kThreads, 0, s>>>(x, values, indices, rows, n);
  } else {
    if (want_max) extreme_rows_kernel<kThreads, true, T><<<grid, kThreads, 0, s>>>(x, values, indices, rows, n);
    else extreme_rows_kernel<kThreads, false, T><<<grid, kThreads, 0, s>>>(x, values, indices, rows, n);
  }
  HYDRA_CUDA_CHECK_LAUNCH("max/min");
}

template <typename T>
void launch_softmax_rows(const T* x, T* y, int64_t rows, int64_t n, SoftmaxKind kind, cudaStream_t s) {
  if (n <= kWarpRowMax) {
    softmax_rows_kernel<32, T><<<blocks_for_groups(rows, kThreads / 32), kThreads, 0, s>>>(x, y, rows, n, kind);
    HYDRA_CUDA_CHECK_LAUNCH("softmax");
    return;
  }
  constexpr int kV = static_cast<int>(16 / sizeof(T));
  const bool lse = kind == SoftmaxKind::LogSumExp;
  const auto al = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  const bool vec = n % kV == 0 && al(x) && (lse || al(y));
  const auto go = [&]<int VEC>() {
    const int64_t packs = n / VEC;
    const int64_t want = (packs + kLongBatchOf<T> - 1) / kLongBatchOf<T>;
    const int threads = static_cast<int>(std::clamp<int64_t>((want + 31) / 32 * 32, 32, kLongMaxThreads));
    const int64_t bytes = n * static_cast<int64_t>(sizeof(T));
    const bool cache = !lse && bytes <= kSoftmaxCacheBytes;
    const std::size_t smem = cache ? static_cast<std::size_t>(bytes) : 0;
    if (smem > 48 * 1024)
      HYDRA_CUDA_CHECK(cudaFuncSetAttribute(softmax_long_kernel<T, VEC>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(kSoftmaxCacheBytes)));
    softmax_long_kernel<T, VEC><<<blocks_for_groups(rows, 1), threads, smem, s>>>(x, y, rows, n, kind, cache);
  };
  if (vec) go.template operator()<kV>();
  else go.template operator()<1>();
  HYDRA_CUDA_CHECK_LAUNCH("softmax");
}

template <typename T>
void launch_scan_rows(const T* x, T* y, int64_t rows, int64_t n, bool reverse, cudaStream_t s) {
  if (n <= kWarpRowMax) {
    scan_rows_kernel<32, T><<<blocks_for_groups(rows, kThreads / 32), kThreads, 0, s>>>(x, y, rows, n, reverse);
  } else {
    scan_rows_kernel<kThreads, T><<<blocks_for_groups(rows, 1), kThreads, 0, s>>>(x, y, rows, n, reverse);
  }
  HYDRA_CUDA_CHECK_LAUNCH("cumsum");
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// entry points

void reduce_rows(const Tensor& x, const Tensor& out, int64_t outer, int64_t inner, RowReduce mode) {
  HYDRA_CHECK(x.is_contiguous() && out.is_contiguous() && x.numel() == outer * inner && out.numel() == outer,
              "reduce_rows (CUDA): expected a contiguous ({}, {}) input and {} outputs, got shapes {} and {}", outer,
              inner, outer, shape_str(x.shape()), shape_str(out.shape()));
  dispatch_numeric(x.dtype(), "reduce", [&]<typename T>() {
    switch (mode) {
      case RowReduce::Sum: reduce_rows_typed<T, MapKind::Id>(x, out, outer, inner, FinKind::Cast); break;
      case RowReduce::Mean: reduce_rows_typed<T, MapKind::Id>(x, out, outer, inner, FinKind::Divide); break;
      case RowReduce::SumAbs: reduce_rows_typed<T, MapKind::Abs>(x, out, outer, inner, FinKind::Cast); break;
      case RowReduce::SqrtSumSquares:
        reduce_rows_typed<T, MapKind::Square>(x, out, outer, inner, FinKind::Sqrt);
        break;
    }
  });
}

void extreme_lines(const Tensor& x, const Tensor& values, const Tensor& indices, int64_t outer, int64_t n,
                   int64_t inner, bool want_max) {
  const int64_t lines = outer * inner;
  HYDRA_CHECK(x.is_contiguous() && n > 0 && x.numel() == lines * n && indices.numel() == lines &&
                  indices.dtype() == DType::Int64 && (!values.defined() || values.numel() == lines),
              "max/min (CUDA): expected a contiguous ({}, {}, {}) input, got shape {}", outer, n, inner,
              shape_str(x.shape()));
  if (lines == 0) return;
  dispatch_numeric(x.dtype(), "max/min", [&]<typename T>() {
    DeviceGuard guard(x.device().index);
    cudaStream_t s = stream_of(x);
    T* vp = values.defined() ? static_cast<T*>(values.raw_data()) : nullptr;
    int64_t* ip = static_cast<int64_t*>(indices.raw_data());
    if (inner == 1) {
      launch_extreme_rows<T>(static_cast<const T*>(x.raw_data()), vp, ip, lines, n, want_max, s);
    } else if (use_transpose(outer, n, inner)) {
      const Tensor xt = transposed_rows(x, outer, n, inner);  // rows in line order
      launch_extreme_rows<T>(static_cast<const T*>(xt.raw_data()), vp, ip, lines, n, want_max, s);
    } else {
      const T* xp = static_cast<const T*>(x.raw_data());
      const unsigned grid = grid_for(lines, kThreads);
      if (want_max) extreme_cols_kernel<true, T><<<grid, kThreads, 0, s>>>(xp, vp, ip, lines, n, inner);
      else extreme_cols_kernel<false, T><<<grid, kThreads, 0, s>>>(xp, vp, ip, lines, n, inner);
      HYDRA_CUDA_CHECK_LAUNCH("max/min");
    }
  });
}

void softmax_lines(const Tensor& x, const Tensor& y, int64_t outer, int64_t n, int64_t inner, SoftmaxKind mode) {
  const int64_t lines = outer * inner;
  const bool lse = mode == SoftmaxKind::LogSumExp;
  HYDRA_CHECK(x.is_contiguous() && y.is_contiguous() && x.numel() == lines * n &&
                  y.numel() == (lse ? lines : lines * n),
              "softmax (CUDA): expected a contiguous ({}, {}, {}) input, got shapes {} and {}", outer, n, inner,
              shape_str(x.shape()), shape_str(y.shape()));
  if (y.numel() == 0) return;  // n == 0 reaches the kernels only for logsumexp: m := 0, s = 0, so −inf
  dispatch_floating(x.dtype(), "softmax", [&]<typename T>() {
    DeviceGuard guard(x.device().index);
    cudaStream_t s = stream_of(x);
    T* yp = static_cast<T*>(y.raw_data());
    if (inner == 1) {
      launch_softmax_rows<T>(static_cast<const T*>(x.raw_data()), yp, lines, n, mode, s);
    } else if (use_transpose(outer, n, inner)) {
      const Tensor xt = transposed_rows(x, outer, n, inner);
      if (lse) {
        launch_softmax_rows<T>(static_cast<const T*>(xt.raw_data()), yp, lines, n, mode, s);
      } else {
        Tensor yt = empty({outer, inner, n}, x.dtype(), x.device());
        launch_softmax_rows<T>(static_cast<const T*>(xt.raw_data()), static_cast<T*>(yt.raw_data()), lines, n, mode,
                               s);
        Tensor yv = y.view({outer, n, inner});
        yv.copy_(yt.transpose(1, 2));
      }
    } else {
      softmax_cols_kernel<T><<<grid_for(lines, kThreads), kThreads, 0, s>>>(static_cast<const T*>(x.raw_data()), yp,
                                                                            lines, n, inner, mode);
      HYDRA_CUDA_CHECK_LAUNCH("softmax");
    }
  });
}

void cumsum_lines(const Tensor& x, const Tensor& y, int64_t outer, int64_t n, int64_t inner, bool reverse) {
  const int64_t lines = outer * inner;
  HYDRA_CHECK(x.is_contiguous() && y.is_contiguous() && x.numel() == lines * n && y.numel() == lines * n,
              "cumsum (CUDA): expected contiguous ({}, {}, {}) input and output, got shapes {} and {}", outer, n,
              inner, shape_str(x.shape()), shape_str(y.shape()));
  if (y.numel() == 0) return;
  dispatch_numeric(x.dtype(), "cumsum", [&]<typename T>() {
    DeviceGuard guard(x.device().index);
    cudaStream_t s = stream_of(x);
    T* yp = static_cast<T*>(y.raw_data());
    if (inner == 1) {
      launch_scan_rows<T>(static_cast<const T*>(x.raw_data()), yp, lines, n, reverse, s);
    } else if (use_transpose(outer, n, inner)) {
      const Tensor xt = transposed_rows(x, outer, n, inner);
      Tensor yt = empty({outer, inner, n}, x.dtype(), x.device());
      launch_scan_rows<T>(static_cast<const T*>(xt.raw_data()), static_cast<T*>(yt.raw_data()), lines, n, reverse, s);
      Tensor yv = y.view({outer, n, inner});
      yv.copy_(yt.transpose(1, 2));
    } else {
      scan_cols_kernel<T><<<grid_for(lines, kThreads), kThreads, 0, s>>>(static_cast<const T*>(x.raw_data()), yp,
                                                                         lines, n, inner, reverse);
      HYDRA_CUDA_CHECK_LAUNCH("cumsum");
    }
  });
}

void topk_rows(const Tensor& x, const Tensor& values, const Tensor& indices, int64_t rows, int64_t n, int64_t k,
               bool largest) {
  HYDRA_CHECK(x.is_contiguous() && x.numel() == rows * n && values.numel() == rows * k &&
                  indices.numel() == rows * k && indices.dtype() == DType::Int64 && k >= 0 && k <= n,
              "topk (CUDA): expected a contiguous ({}, {}) input and ({}, {}) outputs, got shapes {}, {}, {}", rows, n,
              rows, k, shape_str(x.shape()), shape_str(values.shape()), shape_str(indices.shape()));
  HYDRA_CHECK(n <= (int64_t{1} << 30), "topk (CUDA): rows of {} elements are longer than the supported 2^30", n);
  if (rows == 0 || k == 0) return;
  dispatch_numeric(x.dtype(), "topk", [&]<typename T>() {
    using C = compute_t<T>;
    DeviceGuard guard(x.device().index);
    cudaStream_t s = stream_of(x);
    const T* xp = static_cast<const T*>(x.raw_data());
    T* vp = static_cast<T*>(values.raw_data());
    int64_t* ip = static_cast<int64_t*>(indices.raw_data());
    int32_t P = 1;
    while (P < n) P <<= 1;
    const int64_t kMaxGrid = int64_t{1} << 20;
    if (P <= kTopkSharedMaxP) {
      const std::size_t smem = std::size_t(P) * (sizeof(C) + sizeof(int32_t));
      const int threads = std::max(32, std::min(kThreads, P / 2));
      for (int64_t r0 = 0; r0 < rows; r0 += kMaxGrid) {
        const int64_t nb = std::min(kMaxGrid, rows - r0);
        topk_sort_kernel<T><<<static_cast<unsigned>(nb), threads, smem, s>>>(
            xp, vp, ip, r0, static_cast<int32_t>(n), k, P, largest, nullptr, nullptr);
        HYDRA_CUDA_CHECK_LAUNCH("topk");
      }
    } else {
      const std::size_t per_row = std::size_t(P) * (sizeof(C) + sizeof(int32_t));
      const int64_t batch = std::min<int64_t>(rows, std::max<int64_t>(1, kTopkScratchBytes / per_row));
      Tensor skeys = empty({batch * P}, dtype_of<C>::value, x.device());
      Tensor sidx = empty({batch * P}, DType::Int32, x.device());
      for (int64_t r0 = 0; r0 < rows; r0 += batch) {
        const int64_t nb = std::min(batch, rows - r0);
        topk_sort_kernel<T><<<static_cast<unsigned>(nb), kTopkGlobalThreads, 0, s>>>(
            xp, vp, ip, r0, static_cast<int32_t>(n), k, P, largest, static_cast<C*>(skeys.raw_data()),
            static_cast<int32_t*>(sidx.raw_data()));
        HYDRA_CUDA_CHECK_LAUNCH("topk");
      }
    }
  });
}

bool scatter_add_lines(const Tensor& g, const Tensor& idx, const Tensor& out, int64_t outer, int64_t k, int64_t n,
                       int64_t inner, int64_t* bad_index) {
  const int64_t lines = outer * inner;
  HYDRA_CHECK(g.is_contiguous() && idx.is_contiguous() && out.is_contiguous() && g.numel() == lines * k &&
                  idx.numel() == lines * k && out.numel() == lines * n && idx.dtype() == DType::Int64,
              "scatter (CUDA): expected contiguous ({}, {}, {}) grad/indices and a ({}, {}, {}) output, got shapes "
              "{}, {}, {}",
              outer, k, inner, outer, n, inner, shape_str(g.shape()), shape_str(idx.shape()), shape_str(out.shape()));
  if (lines == 0 || k == 0) return true;
  Tensor bad = zeros({2}, DType::Int64, out.device());
  dispatch_floating(g.dtype(), "scatter", [&]<typename T>() {
    DeviceGuard guard(out.device().index);
    scatter_add_lines_kernel<T><<<grid_for(lines, kThreads), kThreads, 0, stream_of(out)>>>(
        static_cast<const T*>(g.raw_data()), static_cast<const int64_t*>(idx.raw_data()),
        static_cast<T*>(out.raw_data()), lines, k, n, inner, static_cast<int64_t*>(bad.raw_data()));
    HYDRA_CUDA_CHECK_LAUNCH("scatter");
  });
  const std::vector<int64_t> h = bad.to(kCPU).to_vector<int64_t>();  // waits for the kernel
  if (h[0] == 0) return true;
  if (bad_index) *bad_index = h[1];
  return false;
}

}  // namespace hydra::cuda
