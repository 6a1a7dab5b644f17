// Indexing kernels: gather (which also serves index_select and the embedding lookup), scatter_add (which also
// serves index_add), the embedding backward, and the index-range check that the dispatch functions run first.
// concat has no kernel of its own: one strided copy (hydra::cuda::copy) per piece into a narrow() of the output.
//
// Math and shapes (r = rank <= kMaxDims; `dim` already wrapped into [0, r); index values already validated):
//   gather:      out[p] = x[p with p[dim] := idx[p]]              out and idx: one shape S; x: rank r.
//                index_select and embedding pass idx as a stride-0 broadcast of their 1-D index over S.
//   scatter_add: for each q in idx's shape with dim collapsed to 1, for j = 0 .. J-1 in order (J = idx.size(dim)):
//                  dst[q with q[dim] := idx[q, j]] += src[q, j]
//                bfloat16: runs on float32 copies of dst and src, rounded once at the end (as on the CPU).
//   embedding_backward: dweight (V, C), dweight[v, c] = Σ_{p : ids[p] = v} grad[p, c] in increasing flat position p,
//                accumulated in float64 (as on the CPU); zero for rows with no position and for v == padding_idx.
//   index check: the smallest flat (row-major) position of idx whose value lies outside [0, n).
//
// Thread mapping:
//   gather: one thread per output element, grid-stride in row-major order (writes to the contiguous out coalesce;
//     reads of x coalesce whenever x's last dim is contiguous and not the indexed dim).
//   scatter_add: one thread per q. A thread owns every destination element with q's non-dim coordinates, so no two
//     threads write one element (no atomics), and each element receives its additions in increasing j: the CPU's
//     order, hence bit-identical results to the CPU kernel and between runs. Parallelism is numel(idx) / J threads.
//   embedding_backward: the flat ids come back to the host once, are counting-sorted by id there (sequential, so
//     each row's position list is increasing: the CPU's algorithm), and the row starts (V + 1) and the position
//     order (N) go to the device. Then one block per row v (grid-stride over rows), threads over c: each thread
//     sums its column over the row's positions in order in float64 and writes it once. Every output element is
//     written exactly once, by one thread, in a fixed order: deterministic and bit-identical to the CPU.
//   index check: one thread per index element; an out-of-range one does atomicMin of its flat position into one
//     word, which the host reads back (synchronizing the stream) together with the value at that position.
//
// Bytes moved per call: gather reads idx and out.numel() elements of x, writes out. scatter_add reads idx, the
//   J-slices of src and read-modify-writes the touched dst elements. embedding_backward reads grad (N, C) once,
//   writes (V, C), plus N ids down and (V + 1 + N) int64 up over PCIe. The index check reads idx once.
//
// Reference: the CPU kernels of tensor/ops/indexing.cpp; tests/tensor/test_cuda_indexing.cpp compares with them
// (bit-exact for the data movement ops) and with their float64 results (the accumulating ops).
#include <algorithm>
#include <type_traits>
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
  int64_t size[kMaxDims] = {};
  int64_t dst_stride[kMaxDims] = {};
  int64_t idx_stride[kMaxDims] = {};
  int64_t src_stride[kMaxDims] = {};
};

// Storage offset of flat position `pos` of t (row-major), on the host.
int64_t host_offset(const Tensor& t, int64_t pos, const char* op) {
  if (t.is_contiguous()) return pos;
  return geom_offset(make_geom(t, op), pos);
}

// ---------------------------------------------------------------------------------------------------------
// kernels

template <typename I>
__global__ void index_check_kernel(const I* idx, Geom g, bool contiguous, int64_t numel, int64_t n,
                                   unsigned long long* first_bad) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < numel; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t v = static_cast<int64_t>(idx[contiguous ? i : geom_offset(g, i)]);
    if (v < 0 || v >= n) atomicMin(first_bad, static_cast<unsigned long long>(i));
  }
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
    out[o] = x[xo + static_cast<int64_t>(idx[k]) * g.x_stride[g.dim]];
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
      T* p = dst + o + static_cast<int64_t>(idx[k + j * is]) * ds;
      *p = static_cast<T>(*p + src[s + j * ss]);
    }
  }
}

// grad (N, C) contiguous; start (V + 1) and order (N): row v's positions are order[start[v] .. start[v+1]) in
// increasing order. out (V, C) contiguous.
template <typename T>
__global__ void embedding_bwd_kernel(const T* grad, const int64_t* start, const int64_t* order, int64_t V, int64_t C,
                                     int64_t pad, T* out) {
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
int64_t launch_index_check(const Tensor& idx, int64_t n, int64_t* value) {
  const int64_t numel = idx.numel();
  if (numel == 0) return -1;
  const bool contiguous = idx.is_contiguous();
  const Geom g = contiguous ? Geom{} : make_geom(idx, "index check");
  DeviceGuard guard(idx.device().index);
  cudaStream_t s = stream_of(idx);
  Tensor flag = empty({1}, DType::Int64, idx.device());
  auto* first_bad = static_cast<unsigned long long*>(flag.raw_data());
  HYDRA_CUDA_CHECK(cudaMemsetAsync(first_bad, 0xFF, sizeof(unsigned long long), s));  // all ones: none found
  index_check_kernel<I><<<grid_for(numel, kThreads), kThreads, 0, s>>>(static_cast<const I*>(idx.raw_data()), g,
                                                                       contiguous, numel, n, first_bad);
  HYDRA_CUDA_CHECK_LAUNCH("index check");
  unsigned long long pos = 0;
  HYDRA_CUDA_CHECK(cudaMemcpyAsync(&pos, first_bad, sizeof pos, cudaMemcpyDeviceToHost, s));
  HYDRA_CUDA_CHECK(cudaStreamSynchronize(s));
  if (pos == ~0ull) return -1;
  const int64_t p = static_cast<int64_t>(pos);
  I v{};
  HYDRA_CUDA_CHECK(cudaMemcpyAsync(&v, static_cast<const I*>(idx.raw_data()) + host_offset(idx, p, "index check"),
                                   sizeof(I), cudaMemcpyDeviceToHost, s));
  HYDRA_CUDA_CHECK(cudaStreamSynchronize(s));
  *value = static_cast<int64_t>(v);
  return p;
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
  for (int d = 0; d < g.ndim; ++d) {
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
  int64_t num_q = 1;
  for (int d = 0; d < g.ndim; ++d) {
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
      static_cast<const T*>(grad.raw_data()), static_cast<const int64_t*>(start.raw_data()),
      static_cast<const int64_t*>(order.raw_data()), V, C, pad, static_cast<T*>(out.raw_data()));
  HYDRA_CUDA_CHECK_LAUNCH("embedding_backward");
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// entry points

int64_t first_bad_index(const Tensor& idx, int64_t n, int64_t* value) {
  return dispatch_index(idx.dtype(), "index check",
                        [&]<typename I>() { return launch_index_check<I>(idx, n, value); });
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
  // Counting sort of the positions by id on the host (sequential: each row's list is in increasing position).
  const std::vector<int64_t> h = ids.contiguous().to(kCPU).to_vector<int64_t>();
  std::vector<int64_t> start(V + 1, 0), order(N);
  for (int64_t p = 0; p < N; ++p) {
    HYDRA_CHECK(h[p] >= 0 && h[p] < V, "embedding_backward: ids value {} at flat position {} is out of range; valid "
                "range is [0, {})", h[p], p, V);  // the dispatch has validated already; guards the writes below
    ++start[h[p] + 1];
  }
  for (int64_t v = 0; v < V; ++v) start[v + 1] += start[v];
  std::vector<int64_t> next(start.begin(), start.end() - 1);
  for (int64_t p = 0; p < N; ++p) order[next[h[p]]++] = p;
  const Tensor start_d = from_vector<int64_t>(start, {V + 1}, out.device());
  const Tensor order_d = from_vector<int64_t>(order, {N}, out.device());
  const Tensor g = grad.reshape({N, C}).contiguous();
  dispatch_floating(grad.dtype(), "embedding_backward", [&]<typename T>() {
    launch_embedding_bwd<T>(g, start_d, order_d, V, C, padding_idx, out);
  });
}

}  // namespace hydra::cuda
