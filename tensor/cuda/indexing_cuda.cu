// Indexing kernels: gather (which also serves index_select and the embedding lookup), scatter_add (which also
// serves index_add), the embedding backward, and the index-range check that the dispatch functions enqueue first.
// concat has no kernel of its own: one strided copy (hydra::cuda::copy) per piece into a narrow() of the output.
//
// Math and shapes (r = rank <= kMaxDims; `dim` already wrapped into [0, r); n = the size of the indexed dim):
//   gather:      out[p] = x[p with p[dim] := idx[p]]              out and idx: one shape S; x: rank r.
//                index_select and embedding pass idx as a stride-0 broadcast of their 1-D index over S.
//   scatter_add: for each q in idx's shape with dim collapsed to 1, for j = 0 .. J-1 in order (J = idx.size(dim)):
//                  dst[q with q[dim] := idx[q, j]] += src[q, j]
//                bfloat16: runs on float32 copies of dst and src, rounded once at the end (as on the CPU).
//   embedding_backward: dweight (V, C), dweight[v, c] = Σ_{p : ids[p] = v} grad[p, c] in increasing flat position p,
//                accumulated in float64 (as on the CPU); zero for rows with no position and for v == padding_idx.
//   index check: info = {the smallest flat (row-major) position of idx whose value lies outside [0, n) or -1, that
//                value}, handed to defer_device_check: the host never waits for it.
//
// Bounds safety: the index check's verdict arrives after the op has been launched, so the kernels never trust an
// index value: gather writes 0 where idx[p] is outside [0, n), scatter_add skips such a position, and the
// embedding backward sorts such a position past every row (key V) so no row sums it. The results of a call with a
// bad index are unspecified (the deferred error reports it); no memory outside the operands is touched.
//
// Thread mapping:
//   gather: one thread per output element, grid-stride in row-major order (writes to the contiguous out coalesce;
//     reads of x coalesce whenever x's last dim is contiguous and not the indexed dim).
//   scatter_add: one thread per q. A thread owns every destination element with q's non-dim coordinates, so no two
//     threads write one element (no atomics), and each element receives its additions in increasing j: the CPU's
//     order, hence bit-identical results to the CPU kernel and between runs. Parallelism is numel(idx) / J threads.
//   embedding_backward, all on the device (no host round trip): (1) one thread per position p writes the sort key
//     (ids[p], or V when out of range) and the value p; (2) cub::DeviceRadixSort::SortPairs over the low
//     bit_width(V) bits, which is stable, so each row's positions stay in increasing order (the CPU's counting-sort
//     order); (3) one thread per row v in [0, V] binary-searches the sorted keys for start[v], the first key >= v;
//     (4) one block per row v (grid-stride over rows), threads over c: each thread sums its column over
//     order[start[v] .. start[v+1]) in order in float64 and writes it once. Every output element is written
//     exactly once, by one thread, in a fixed order: deterministic and bit-identical to the CPU.
//   index check: one thread per index element; an out-of-range one does atomicMin of its flat position into
//     info[0] (preset to all ones, which is -1 as an int64: none found); then one thread reads the value at
//     info[0] into info[1]. The 16 bytes go to pinned host memory asynchronously (defer_device_check).
//
// Bytes moved per call: gather reads idx and out.numel() elements of x, writes out. scatter_add reads idx, the
//   J-slices of src and read-modify-writes the touched dst elements. embedding_backward reads grad (N, C) once,
//   writes (V, C), plus the sort of N (key, position) pairs of 8 + 8 bytes (a few passes over 32·N bytes) and
//   8·(V + 1) bytes of row starts. The index check reads idx once and writes 16 bytes.
//
// Reference: the CPU kernels of tensor/ops/indexing.cpp; tests/tensor/test_cuda_indexing.cpp compares with them
// (bit-exact for the data movement ops and the embedding backward) and with their float64 results (the
// accumulating ops), and checks that a bad index is raised at the next synchronisation without a memory fault.
#include <algorithm>
#include <cub/device/device_radix_sort.cuh>
#include <type_traits>
#include <utility>
#include <vector>

#include "tensor/check.h"
#include "tensor/cuda/common.cuh"
#include "tensor/cuda/indexing_ops.h"
#include "tensor/cuda/ops.h"
#include "tensor/dispatch.h"

namespace hydra::cuda {
namespace {

constexpr int kThreads = 256;

// Shapes and strides of a gather: out, idx and x walked together over out's shape; x's coordinate along `dim`
// comes from the index value instead of the position.
struct GatherGeom {
  int ndim = 0;
  int dim = 0;
  int64_t n = 0;  // x.size(dim): the valid index range is [0, n)
  int64_t size[kMaxDims] = {};
  int64_t out_stride[kMaxDims] = {};
  int64_t idx_stride[kMaxDims] = {};
  int64_t x_stride[kMaxDims] = {};  // x_stride[dim] multiplies the index value
};

// Shapes and strides of a scatter_add: size is idx's shape with size[dim] = 1 (the q positions); the dim strides
// step j along dst (by index value), idx and src (by position).
struct ScatterGeom {
  int ndim = 0;
  int dim = 0;
  int64_t J = 0;
  int64_t n = 0;  // dst.size(dim): the valid index range is [0, n)
  int64_t size[kMaxDims] = {};
  int64_t dst_stride[kMaxDims] = {};
  int64_t idx_stride[kMaxDims] = {};
  int64_t src_stride[kMaxDims] = {};
};

// Number of low bits that hold every value in [0, v] (v >= 1).
int bit_width(int64_t v) {
  int b = 1;
  while (b < 63 && (v >> b) != 0) ++b;
  return b;
}

// ---------------------------------------------------------------------------------------------------------
// kernels

// info (2 × int64) arrives preset to all ones: info[0] = ~0 (-1 as an int64) means no bad position yet.
template <typename I>
__global__ void index_check_kernel(const I* idx, Geom g, bool contiguous, int64_t numel, int64_t n,
                                   unsigned long long* info) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < numel; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t v = static_cast<int64_t>(idx[contiguous ? i : geom_offset(g, i)]);
    if (v < 0 || v >= n) atomicMin(info, static_cast<unsigned long long>(i));
  }
}

// One thread: info[1] = the value at the smallest bad position info[0], when there is one.
template <typename I>
__global__ void index_check_value_kernel(const I* idx, Geom g, bool contiguous, long long* info) {
  const long long p = info[0];
  if (p >= 0) info[1] = static_cast<long long>(idx[contiguous ? p : geom_offset(g, p)]);
}

template <typename T, typename I>
__global__ void gather_fwd_kernel(T* out, const I* idx, const T* x, GatherGeom g, int64_t numel) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < numel; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rem = i, o = 0, k = 0, xo = 0;
    for (int d = g.ndim - 1; d >= 0; --d) {
      const int64_t c = rem % g.size[d];
      rem /= g.size[d];
      o += c * g.out_stride[d];
      k += c * g.idx_stride[d];
      if (d != g.dim) xo += c * g.x_stride[d];
    }
    const int64_t v = static_cast<int64_t>(idx[k]);
    out[o] = (v >= 0 && v < g.n) ? x[xo + v * g.x_stride[g.dim]] : T{};  // out of range: 0 (reported deferred)
  }
}

template <typename T, typename I>
__global__ void scatter_add_fwd_kernel(T* dst, const I* idx, const T* src, ScatterGeom g, int64_t num_q) {
  const int64_t ds = g.dst_stride[g.dim], is = g.idx_stride[g.dim], ss = g.src_stride[g.dim];
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < num_q; q += int64_t(gridDim.x) * blockDim.x) {
    int64_t rem = q, o = 0, k = 0, s = 0;
    for (int d = g.ndim - 1; d >= 0; --d) {  // size[dim] == 1: the coordinate along dim is 0
      const int64_t c = rem % g.size[d];
      rem /= g.size[d];
      o += c * g.dst_stride[d];
      k += c * g.idx_stride[d];
      s += c * g.src_stride[d];
    }
    for (int64_t j = 0; j < g.J; ++j) {
      const int64_t v = static_cast<int64_t>(idx[k + j * is]);
      if (v < 0 || v >= g.n) continue;  // out of range: skipped (reported deferred)
      T* p = dst + o + v * ds;
      *p = static_cast<T>(*p + src[s + j * ss]);
    }
  }
}

// keys[p] = ids[p] when it lies in [0, V), else V (sorted after every row, so no row sums it); pos[p] = p.
template <typename I>
__global__ void embedding_sort_keys_kernel(const I* ids, Geom g, bool contiguous, int64_t N, int64_t V,
                                           unsigned long long* keys, long long* pos) {
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < N; p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t v = static_cast<int64_t>(ids[contiguous ? p : geom_offset(g, p)]);
    keys[p] = static_cast<unsigned long long>(v >= 0 && v < V ? v : V);
    pos[p] = p;
  }
}

// start[v] = the first index of the sorted keys (N of them) whose key is >= v, for v in [0, V]: row v's positions
// are order[start[v] .. start[v+1]), and start[V] counts the in-range ids.
__global__ void embedding_row_start_kernel(const unsigned long long* keys, int64_t N, int64_t V, long long* start) {
  for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v <= V; v += int64_t(gridDim.x) * blockDim.x) {
    int64_t lo = 0, hi = N;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (keys[mid] < static_cast<unsigned long long>(v)) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    start[v] = lo;
  }
}

// grad (N, C) contiguous; start (V + 1) and order (N): row v's positions are order[start[v] .. start[v+1]) in
// increasing order. out (V, C) contiguous.
template <typename T>
__global__ void embedding_bwd_kernel(const T* grad, const long long* start, const long long* order, int64_t V,
                                     int64_t C, int64_t pad, T* out) {
  for (int64_t v = blockIdx.x; v < V; v += gridDim.x) {
    const int64_t b = start[v], e = v == pad ? start[v] : start[v + 1];
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      double acc = 0.0;
      for (int64_t q = b; q < e; ++q) acc += static_cast<double>(static_cast<compute_t<T>>(grad[order[q] * C + c]));
      out[v * C + c] = static_cast<T>(static_cast<compute_t<T>>(acc));
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// launch helpers

template <typename I>
void launch_index_check(const Tensor& idx, int64_t n, std::function<std::string(int64_t, int64_t)> message) {
  const int64_t numel = idx.numel();
  if (numel == 0) return;
  const bool contiguous = idx.is_contiguous();
  const Geom g = contiguous ? Geom{} : make_geom(idx, "index check");
  DeviceGuard guard(idx.device().index);
  cudaStream_t s = stream_of(idx);
  // {first bad position or -1, its value}; freed at return, which is safe: the caching allocator hands the block
  // out again only to work queued after the copy that defer_device_check enqueues on this stream.
  Tensor info = empty({2}, DType::Int64, idx.device());
  HYDRA_CUDA_CHECK(cudaMemsetAsync(info.raw_data(), 0xFF, 2 * sizeof(long long), s));  // all ones: -1, none found
  const I* ip = static_cast<const I*>(idx.raw_data());
  index_check_kernel<I><<<grid_for(numel, kThreads), kThreads, 0, s>>>(
      ip, g, contiguous, numel, n, static_cast<unsigned long long*>(info.raw_data()));
  HYDRA_CUDA_CHECK_LAUNCH("index check");
  index_check_value_kernel<I><<<1, 1, 0, s>>>(ip, g, contiguous, static_cast<long long*>(info.raw_data()));
  HYDRA_CUDA_CHECK_LAUNCH("index check (value)");
  defer_device_check(idx.device().index, info.raw_data(), std::move(message));
}

template <typename T, typename I>
void launch_gather_fwd(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& out) {
  const int64_t numel = out.numel();
  if (numel == 0) return;
  HYDRA_CHECK(out.dim() <= kMaxDims, "gather: CUDA kernels take tensors of rank <= {}, got shape {}", kMaxDims,
              shape_str(out.shape()));
  HYDRA_CHECK(idx.shape() == out.shape() && x.dim() == out.dim() && dim >= 0 && dim < out.dim(),
              "gather (CUDA): internal shape mismatch: x {}, idx {}, out {}, dim {}", shape_str(x.shape()),
              shape_str(idx.shape()), shape_str(out.shape()), dim);
  HYDRA_CHECK(x.device() == out.device() && idx.device() == out.device(),
              "gather (CUDA): x on {}, idx on {}, out on {} must share one device", x.device(), idx.device(),
              out.device());
  GatherGeom g;
  g.ndim = static_cast<int>(out.dim());
  g.dim = static_cast<int>(dim);
  g.n = x.size(dim);
  for (int d = 0; d < g.ndim; ++d) {
    HYDRA_CHECK(d == g.dim || out.size(d) <= x.size(d),
                "gather (CUDA): internal shape mismatch: out {} exceeds x {} in dim {}", shape_str(out.shape()),
                shape_str(x.shape()), d);
    g.size[d] = out.size(d);
    g.out_stride[d] = out.stride(d);
    g.idx_stride[d] = idx.stride(d);
    g.x_stride[d] = x.stride(d);
  }
  DeviceGuard guard(out.device().index);
  gather_fwd_kernel<T, I><<<grid_for(numel, kThreads), kThreads, 0, stream_of(out)>>>(
      static_cast<T*>(out.raw_data()), static_cast<const I*>(idx.raw_data()), static_cast<const T*>(x.raw_data()), g,
      numel);
  HYDRA_CUDA_CHECK_LAUNCH("gather");
}

template <typename T, typename I>
void launch_scatter_add_fwd(const Tensor& dst, int64_t dim, const Tensor& idx, const Tensor& src) {
  if (idx.numel() == 0) return;
  HYDRA_CHECK(idx.dim() <= kMaxDims, "scatter_add: CUDA kernels take tensors of rank <= {}, got idx shape {}",
              kMaxDims, shape_str(idx.shape()));
  HYDRA_CHECK(dst.dim() == idx.dim() && src.dim() == idx.dim() && dim >= 0 && dim < idx.dim(),
              "scatter_add (CUDA): internal rank mismatch: dst {}, idx {}, src {}, dim {}", shape_str(dst.shape()),
              shape_str(idx.shape()), shape_str(src.shape()), dim);
  HYDRA_CHECK(!dst.has_expanded_dims(), "scatter_add (CUDA): destination of shape {} has broadcast (stride-0) dims",
              shape_str(dst.shape()));
  HYDRA_CHECK(dst.device() == idx.device() && dst.device() == src.device(),
              "scatter_add (CUDA): dst on {}, idx on {}, src on {} must share one device", dst.device(), idx.device(),
              src.device());
  ScatterGeom g;
  g.ndim = static_cast<int>(idx.dim());
  g.dim = static_cast<int>(dim);
  g.J = idx.size(dim);
  g.n = dst.size(dim);
  int64_t num_q = 1;
  for (int d = 0; d < g.ndim; ++d) {
    HYDRA_CHECK(idx.size(d) <= src.size(d) && (d == g.dim || idx.size(d) <= dst.size(d)),
                "scatter_add (CUDA): internal shape mismatch: idx {} exceeds src {} or dst {} in dim {}",
                shape_str(idx.shape()), shape_str(src.shape()), shape_str(dst.shape()), d);
    g.size[d] = d == g.dim ? 1 : idx.size(d);
    num_q *= g.size[d];
    g.dst_stride[d] = dst.stride(d);
    g.idx_stride[d] = idx.stride(d);
    g.src_stride[d] = src.stride(d);
  }
  DeviceGuard guard(dst.device().index);
  scatter_add_fwd_kernel<T, I><<<grid_for(num_q, kThreads), kThreads, 0, stream_of(dst)>>>(
      static_cast<T*>(dst.raw_data()), static_cast<const I*>(idx.raw_data()), static_cast<const T*>(src.raw_data()), g,
      num_q);
  HYDRA_CUDA_CHECK_LAUNCH("scatter_add");
}

// The row order of the embedding backward: order (N) = the positions p sorted stably by ids[p] (out-of-range ids
// last), start (V + 1) = where each row's run begins in order. Everything stays on the device.
template <typename I>
void launch_embedding_row_order(const Tensor& ids, int64_t V, const Tensor& order, const Tensor& start) {
  const int64_t N = ids.numel();
  const bool contiguous = ids.is_contiguous();
  const Geom g = contiguous ? Geom{} : make_geom(ids, "embedding_backward");
  const Device dev = order.device();
  cudaStream_t s = stream_of(order);
  Tensor keys_in = empty({N}, DType::Int64, dev), keys = empty({N}, DType::Int64, dev);
  Tensor pos_in = empty({N}, DType::Int64, dev);
  auto* kin = static_cast<unsigned long long*>(keys_in.raw_data());
  auto* kout = static_cast<unsigned long long*>(keys.raw_data());
  auto* pin = static_cast<long long*>(pos_in.raw_data());
  auto* pout = static_cast<long long*>(order.raw_data());
  embedding_sort_keys_kernel<I><<<grid_for(N, kThreads), kThreads, 0, s>>>(
      static_cast<const I*>(ids.raw_data()), g, contiguous, N, V, kin, pin);
  HYDRA_CUDA_CHECK_LAUNCH("embedding_backward (sort keys)");
  // Keys lie in [0, V]: only their low bit_width(V) bits take part in the (stable) radix sort.
  const int end_bit = bit_width(V);
  std::size_t temp_bytes = 0;
  HYDRA_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, kin, kout, pin, pout, N, 0, end_bit, s));
  Tensor temp = empty({static_cast<int64_t>((temp_bytes + 7) / 8) + 1}, DType::Int64, dev);
  HYDRA_CUDA_CHECK(
      cub::DeviceRadixSort::SortPairs(temp.raw_data(), temp_bytes, kin, kout, pin, pout, N, 0, end_bit, s));
  embedding_row_start_kernel<<<grid_for(V + 1, kThreads), kThreads, 0, s>>>(
      kout, N, V, static_cast<long long*>(start.raw_data()));
  HYDRA_CUDA_CHECK_LAUNCH("embedding_backward (row starts)");
}

template <typename T>
void launch_embedding_bwd(const Tensor& grad, const Tensor& start, const Tensor& order, int64_t V, int64_t C,
                          int64_t pad, const Tensor& out) {
  HYDRA_CHECK(grad.is_contiguous() && grad.dim() == 2 && grad.size(1) == C && out.is_contiguous() &&
                  out.dim() == 2 && out.size(0) == V && out.size(1) == C && start.numel() == V + 1 &&
                  order.numel() == grad.size(0),
              "embedding_backward (CUDA): internal layout mismatch: grad {}, out {}, V {}, C {}",
              shape_str(grad.shape()), shape_str(out.shape()), V, C);
  if (V == 0 || C == 0) return;
  const int threads = static_cast<int>(std::min<int64_t>(kThreads, (C + 31) / 32 * 32));
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(V, int64_t(65535) * 16));
  DeviceGuard guard(out.device().index);
  embedding_bwd_kernel<T><<<blocks, threads, 0, stream_of(out)>>>(
      static_cast<const T*>(grad.raw_data()), static_cast<const long long*>(start.raw_data()),
      static_cast<const long long*>(order.raw_data()), V, C, pad, static_cast<T*>(out.raw_data()));
  HYDRA_CUDA_CHECK_LAUNCH("embedding_backward");
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// entry points

void defer_index_check(const Tensor& idx, int64_t n, std::function<std::string(int64_t, int64_t)> message) {
  dispatch_index(idx.dtype(), "index check",
                 [&]<typename I>() { launch_index_check<I>(idx, n, std::move(message)); });
}

void concat(const std::vector<Tensor>& xs, int64_t dim, const Tensor& out) {
  int64_t off = 0;
  for (const Tensor& x : xs) {
    const int64_t n = x.size(dim);
    if (n > 0 && x.numel() > 0) ::hydra::cuda::copy(out.narrow(dim, off, n), x);
    off += n;
  }
}

void gather(const Tensor& x, int64_t dim, const Tensor& idx, const Tensor& out) {
  dispatch_all(x.dtype(), "gather", [&]<typename T>() {
    dispatch_index(idx.dtype(), "gather", [&]<typename I>() { launch_gather_fwd<T, I>(x, dim, idx, out); });
  });
}

void scatter_add(const Tensor& dst, int64_t dim, const Tensor& idx, const Tensor& src) {
  if (idx.numel() == 0) return;
  dispatch_numeric(dst.dtype(), "scatter_add", [&]<typename T>() {
    dispatch_index(idx.dtype(), "scatter_add", [&]<typename I>() {
      if constexpr (std::is_same_v<T, BFloat16>) {
        // Accumulate in float32 and round once, as the CPU kernel does.
        Tensor acc = dst.to(DType::Float32);
        launch_scatter_add_fwd<float, I>(acc, dim, idx, src.to(DType::Float32));
        ::hydra::cuda::copy(dst, acc);
      } else {
        launch_scatter_add_fwd<T, I>(dst, dim, idx, src);
      }
    });
  });
}

void embedding_backward(const Tensor& grad, const Tensor& ids, int64_t num_rows, int64_t padding_idx,
                        const Tensor& out) {
  const int64_t N = ids.numel(), V = num_rows, C = out.size(1);
  if (out.numel() == 0) return;
  if (N == 0) {  // no lookups: no gradient
    ::hydra::cuda::fill(out, 0.0);
    return;
  }
  HYDRA_CHECK(ids.device() == out.device() && grad.device() == out.device(),
              "embedding_backward (CUDA): grad on {}, ids on {}, out on {} must share one device", grad.device(),
              ids.device(), out.device());
  DeviceGuard guard(out.device().index);
  const Tensor order = empty({N}, DType::Int64, out.device()), start = empty({V + 1}, DType::Int64, out.device());
  dispatch_index(ids.dtype(), "embedding_backward",
                 [&]<typename I>() { launch_embedding_row_order<I>(ids, V, order, start); });
  const Tensor g = grad.reshape({N, C}).contiguous();
  dispatch_floating(grad.dtype(), "embedding_backward", [&]<typename T>() {
    launch_embedding_bwd<T>(g, start, order, V, C, padding_idx, out);
  });
}

}  // namespace hydra::cuda
