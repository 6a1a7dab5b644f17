// Elementwise kernels: copy/cast, fill, unary, binary, compare, where, random fill.
//
// Every kernel is a grid-stride loop over the output's elements (row-major linear index i). Three layouts, decided
// once per launch:
//  * all operands contiguous: 16-byte packs (8 bf16, 4 float, 2 double elements per load and store) when the
//    pointers are aligned; the unaligned remainder goes through a 4-elements-per-thread kernel;
//  * "rows": every operand is rows × cols with unit column stride, element (r, c) at p[offset(r) + c], offset(r)
//    from up to 3 outer dims with their own strides — a last-dim slice (the thirds of a fused projection), a
//    head transpose (B, T, H, D) ↔ (B, H, T, D), a row broadcast (stride 0) or contiguous; packs when cols, every
//    outer stride and every base pointer allow them, else one element per thread. The index math is 32-bit with
//    divisions by multiply-high (fast_div.h), so tensors of 2^31 elements or more take the general path; the
//    outer-dim loop is unrolled over its fixed bound (see Outer::offset: no per-thread local-memory copy);
//  * anything else: geom_offset over the operand's collapsed geometry, one element per thread.
// A strided output (copy_ into a view) takes the rows or the geometry path the same way.
// Math runs in compute_t<T> (float for bfloat16) through the same host/device functors as the CPU kernels.
// Bytes moved per call: each input read once plus the output written once (the benchmark counts this).
// Reference: the CPU kernels, which tests compare against the float64 loops.
#include "tensor/cuda/common.cuh"
#include "tensor/cuda/fast_div.h"
#include "tensor/cuda/ops.h"
#include "tensor/dispatch.h"
#include "tensor/ops/elementwise_functors.h"

namespace hydra::cuda {
namespace {

constexpr int kThreads = 256;

// An input operand as the kernels see it.
template <typename T>
struct In {
  const T* p;
  Geom g;
  bool contiguous;
  __device__ __forceinline__ T operator[](int64_t i) const { return contiguous ? p[i] : p[geom_offset(g, i)]; }
};

template <typename T>
In<T> make_in(const Tensor& t, const char* op) {
  const bool c = t.is_contiguous();
  return In<T>{static_cast<const T*>(t.raw_data()), c ? Geom{} : make_geom(t, op), c};
}

template <typename TO, typename TI, typename F>
__global__ void map1_kernel(TO* out, In<TI> a, int64_t n, F f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = f(a[i]);
}

template <typename TO, typename TA, typename TB, typename F>
__global__ void map2_kernel(TO* out, In<TA> a, In<TB> b, int64_t n, F f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = f(a[i], b[i]);
}

// Contiguous fast path: 4 consecutive elements per thread and iteration. No __restrict__: in-place ops
// (binary_) pass the same buffer as input and output.
template <typename TO, typename TA, typename TB, typename F>
__global__ void map2_contig_kernel(TO* out, const TA* a, const TB* b, int64_t n,
                                   F f) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x * 4;
  for (int64_t base = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) * 4; base < n; base += stride) {
    if (base + 3 < n) {
      TA x0 = a[base], x1 = a[base + 1], x2 = a[base + 2], x3 = a[base + 3];
      TB y0 = b[base], y1 = b[base + 1], y2 = b[base + 2], y3 = b[base + 3];
      out[base] = f(x0, y0);
      out[base + 1] = f(x1, y1);
      out[base + 2] = f(x2, y2);
      out[base + 3] = f(x3, y3);
    } else {
      for (int64_t i = base; i < n; ++i) out[i] = f(a[i], b[i]);
    }
  }
}

template <typename TO, typename TI, typename F>
__global__ void map1_contig_kernel(TO* out, const TI* a, int64_t n, F f) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x * 4;
  for (int64_t base = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) * 4; base < n; base += stride) {
    if (base + 3 < n) {
      TI x0 = a[base], x1 = a[base + 1], x2 = a[base + 2], x3 = a[base + 3];
      out[base] = f(x0);
      out[base + 1] = f(x1);
      out[base + 2] = f(x2);
      out[base + 3] = f(x3);
    } else {
      for (int64_t i = base; i < n; ++i) out[i] = f(a[i]);
    }
  }
}

// 16-byte packs: N elements of the widest operand type per load/store (8 bf16, 4 float, 2 double).
template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};
template <typename A, typename B, typename C = A>
constexpr int pack_width() {
  constexpr std::size_t w = sizeof(A) > sizeof(B) ? (sizeof(A) > sizeof(C) ? sizeof(A) : sizeof(C))
                                                  : (sizeof(B) > sizeof(C) ? sizeof(B) : sizeof(C));
  return static_cast<int>(16 / w);
}
inline bool aligned_to(const void* p, std::size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

template <int N, typename TO, typename TI, typename F>
__global__ void map1_pack_kernel(TO* out, const TI* a, int64_t npacks, F f) {
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < npacks; p += int64_t(gridDim.x) * blockDim.x) {
    const Pack<TI, N> x = reinterpret_cast<const Pack<TI, N>*>(a)[p];
    Pack<TO, N> y;
#pragma unroll
    for (int j = 0; j < N; ++j) y.v[j] = f(x.v[j]);
    reinterpret_cast<Pack<TO, N>*>(out)[p] = y;
  }
}

template <int N, typename TO, typename TA, typename TB, typename F>
__global__ void map2_pack_kernel(TO* out, const TA* a, const TB* b, int64_t npacks, F f) {
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < npacks; p += int64_t(gridDim.x) * blockDim.x) {
    const Pack<TA, N> x = reinterpret_cast<const Pack<TA, N>*>(a)[p];
    const Pack<TB, N> z = reinterpret_cast<const Pack<TB, N>*>(b)[p];
    Pack<TO, N> y;
#pragma unroll
    for (int j = 0; j < N; ++j) y.v[j] = f(x.v[j], z.v[j]);
    reinterpret_cast<Pack<TO, N>*>(out)[p] = y;
  }
}

// Row r's offset in an operand: up to kMaxOuter outer dims (row-major over r), each with its own stride. Row indices
// are below 2^31 (the rows layout is refused otherwise), so the divisions are FastDiv's multiply-highs.
constexpr int kMaxOuter = 3;
struct Outer {
  int n = 0;
  FastDiv size[kMaxOuter] = {};
  int64_t stride[kMaxOuter] = {};
  // The loop is unrolled over the fixed bound so that every array index is a constant: indexing a kernel parameter
  // with a run-time index makes the compiler copy the whole struct into per-thread local memory, whose traffic
  // (~150 bytes per thread, written back through L2 to DRAM) held these copies at a fifth of the copy bandwidth.
  __device__ __forceinline__ int64_t offset(uint32_t r) const {
    int64_t off = 0;
#pragma unroll
    for (int d = kMaxOuter - 1; d >= 1; --d) {
      if (d < n) {
        const uint32_t q = size[d].div(r);
        off += static_cast<int64_t>(size[d].mod(r, q)) * stride[d];
        r = q;
      }
    }
    return off + static_cast<int64_t>(r) * stride[0];  // r < size[0] here
  }
};

// An operand as rows × cols with unit column stride: element (r, c) at p[outer.offset(r) + c].
template <typename T>
struct Rows {
  T* p;
  Outer outer;
};

// Grid-stride over n = rows·pcols < 2^31 packs of N elements (pcols = cols / N); N = 1 is the element-wise form.
template <int N, typename TO, typename TI, typename F>
__global__ void map1_rows_kernel(Rows<TO> out, Rows<const TI> a, uint32_t n, FastDiv pcols, F f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint32_t p = static_cast<uint32_t>(i), r = pcols.div(p), c = pcols.mod(p, r) * N;
    const Pack<TI, N> x = *reinterpret_cast<const Pack<TI, N>*>(a.p + a.outer.offset(r) + c);
    Pack<TO, N> y;
#pragma unroll
    for (int j = 0; j < N; ++j) y.v[j] = f(x.v[j]);
    *reinterpret_cast<Pack<TO, N>*>(out.p + out.outer.offset(r) + c) = y;
  }
}

template <int N, typename TO, typename TA, typename TB, typename F>
__global__ void map2_rows_kernel(Rows<TO> out, Rows<const TA> a, Rows<const TB> b, uint32_t n, FastDiv pcols, F f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint32_t p = static_cast<uint32_t>(i), r = pcols.div(p), c = pcols.mod(p, r) * N;
    const Pack<TA, N> x = *reinterpret_cast<const Pack<TA, N>*>(a.p + a.outer.offset(r) + c);
    const Pack<TB, N> z = *reinterpret_cast<const Pack<TB, N>*>(b.p + b.outer.offset(r) + c);
    Pack<TO, N> y;
#pragma unroll
    for (int j = 0; j < N; ++j) y.v[j] = f(x.v[j], z.v[j]);
    *reinterpret_cast<Pack<TO, N>*>(out.p + out.outer.offset(r) + c) = y;
  }
}

// The rows layout shared by every operand (see the file comment): cols = the innermost collapsed dim of the strided
// operands (unit stride, the same length for all), their other dims (≤ kMaxOuter) as Outer; contiguous operands
// get one outer dim of stride cols. False when some operand does not fit, every operand is contiguous, or there are
// 2^31 elements or more (the 32-bit index math).
bool rows_layout(std::initializer_list<const Tensor*> ts, int64_t& rows, int64_t& cols, Outer* outer,
                 const char* op) {
  const int64_t n = (*ts.begin())->numel();
  if (n >= kFastDivLimit) return false;
  cols = 0;
  int i = 0;
  for (const Tensor* t : ts) {
    outer[i].n = 0;  // contiguous: set once cols is known
    if (!t->is_contiguous()) {
      const Geom g = make_geom(*t, op);
      if (g.ndim == 0 || (g.ndim == 1 && g.stride[0] == 1)) {  // contiguous up to size-1 dims
        ++i;
        continue;
      }
      const int last = g.ndim - 1;
      if (g.stride[last] != 1 || last > kMaxOuter || (cols != 0 && cols != g.size[last])) return false;
      cols = g.size[last];
      outer[i].n = last;
      for (int d = 0; d < last; ++d) outer[i].size[d] = FastDiv(g.size[d]), outer[i].stride[d] = g.stride[d];
    }
    ++i;
  }
  if (cols == 0) return false;
  rows = n / cols;
  for (int j = 0; j < i; ++j) {
    if (outer[j].n == 0) outer[j].n = 1, outer[j].size[0] = FastDiv(rows), outer[j].stride[0] = cols;
  }
  return true;
}

// Pack width N for the rows layout: when cols, every outer stride and every base pointer allow it.
template <int N>
bool rows_packable(int64_t cols, std::initializer_list<std::pair<const void*, std::size_t>> ptr_elem,
                   const Outer* outer) {
  if (cols % N != 0) return false;
  int i = 0;
  for (const auto& [p, esize] : ptr_elem) {
    if (!aligned_to(p, esize * N)) return false;
    for (int d = 0; d < outer[i].n; ++d)
      if (outer[i].stride[d] % N != 0) return false;
    ++i;
  }
  return true;
}

// The rows layout (file comment) for out = f(a); false when the operands do not fit it. `out` may be strided.
template <typename TO, typename TI, typename F>
bool launch_map1_rows(const Tensor& out, const Tensor& a, F f, const char* op, cudaStream_t s) {
  int64_t rows = 0, cols = 0;
  Outer g[2];
  if (!rows_layout({&out, &a}, rows, cols, g, op)) return false;
  const Rows<TO> o{static_cast<TO*>(out.raw_data()), g[0]};
  const Rows<const TI> x{static_cast<const TI*>(a.raw_data()), g[1]};
  constexpr int N = pack_width<TO, TI>();
  if (rows_packable<N>(cols, {{o.p, sizeof(TO)}, {x.p, sizeof(TI)}}, g)) {
    const auto n = static_cast<uint32_t>(rows * (cols / N));
    map1_rows_kernel<N, TO, TI><<<grid_for(n, kThreads), kThreads, 0, s>>>(o, x, n, FastDiv(cols / N), f);
  } else {
    const auto n = static_cast<uint32_t>(rows * cols);
    map1_rows_kernel<1, TO, TI><<<grid_for(n, kThreads), kThreads, 0, s>>>(o, x, n, FastDiv(cols), f);
  }
  return true;
}

template <typename TO, typename TA, typename TB, typename F>
bool launch_map2_rows(const Tensor& out, const Tensor& a, const Tensor& b, F f, const char* op, cudaStream_t s) {
  int64_t rows = 0, cols = 0;
  Outer g[3];
  if (!rows_layout({&out, &a, &b}, rows, cols, g, op)) return false;
  const Rows<TO> o{static_cast<TO*>(out.raw_data()), g[0]};
  const Rows<const TA> x{static_cast<const TA*>(a.raw_data()), g[1]};
  const Rows<const TB> z{static_cast<const TB*>(b.raw_data()), g[2]};
  constexpr int N = pack_width<TO, TA, TB>();
  if (rows_packable<N>(cols, {{o.p, sizeof(TO)}, {x.p, sizeof(TA)}, {z.p, sizeof(TB)}}, g)) {
    const auto n = static_cast<uint32_t>(rows * (cols / N));
    map2_rows_kernel<N, TO, TA, TB><<<grid_for(n, kThreads), kThreads, 0, s>>>(o, x, z, n, FastDiv(cols / N), f);
  } else {
    const auto n = static_cast<uint32_t>(rows * cols);
    map2_rows_kernel<1, TO, TA, TB><<<grid_for(n, kThreads), kThreads, 0, s>>>(o, x, z, n, FastDiv(cols), f);
  }
  return true;
}

template <typename TO, typename TI, typename F>
void launch_map1(const Tensor& out, const Tensor& a, F f, const char* op) {
  const int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard guard(out.device().index);
  cudaStream_t s = stream_of(out);
  TO* o = static_cast<TO*>(out.raw_data());
  if (a.is_contiguous()) {
    const TI* pa = static_cast<const TI*>(a.raw_data());
    constexpr int N = pack_width<TO, TI>();
    int64_t done = 0;
    if (aligned_to(o, sizeof(TO) * N) && aligned_to(pa, sizeof(TI) * N) && n >= N) {
      const int64_t npacks = n / N;
      map1_pack_kernel<N, TO, TI><<<grid_for(npacks, kThreads), kThreads, 0, s>>>(o, pa, npacks, f);
      done = npacks * N;
    }
    if (done < n)
      map1_contig_kernel<TO, TI><<<grid_for(n - done, kThreads, 4), kThreads, 0, s>>>(o + done, pa + done, n - done, f);
  } else if (!launch_map1_rows<TO, TI>(out, a, f, op, s)) {
    map1_kernel<TO, TI><<<grid_for(n, kThreads), kThreads, 0, s>>>(o, make_in<TI>(a, op), n, f);
  }
  HYDRA_CUDA_CHECK_LAUNCH("elementwise");
}

template <typename TO, typename TA, typename TB, typename F>
void launch_map2(const Tensor& out, const Tensor& a, const Tensor& b, F f, const char* op) {
  const int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard guard(out.device().index);
  cudaStream_t s = stream_of(out);
  TO* o = static_cast<TO*>(out.raw_data());
  if (a.is_contiguous() && b.is_contiguous()) {
    const TA* pa = static_cast<const TA*>(a.raw_data());
    const TB* pb = static_cast<const TB*>(b.raw_data());
    constexpr int N = pack_width<TO, TA, TB>();
    int64_t done = 0;
    if (aligned_to(o, sizeof(TO) * N) && aligned_to(pa, sizeof(TA) * N) && aligned_to(pb, sizeof(TB) * N) && n >= N) {
      const int64_t npacks = n / N;
      map2_pack_kernel<N, TO, TA, TB><<<grid_for(npacks, kThreads), kThreads, 0, s>>>(o, pa, pb, npacks, f);
      done = npacks * N;
    }
    if (done < n)
      map2_contig_kernel<TO, TA, TB><<<grid_for(n - done, kThreads, 4), kThreads, 0, s>>>(o + done, pa + done,
                                                                                        pb + done, n - done, f);
  } else if (!launch_map2_rows<TO, TA, TB>(out, a, b, f, op, s)) {
    map2_kernel<TO, TA, TB><<<grid_for(n, kThreads), kThreads, 0, s>>>(o, make_in<TA>(a, op), make_in<TB>(b, op), n,
                                                                      f);
  }
  HYDRA_CUDA_CHECK_LAUNCH("elementwise");
}

template <typename D, typename S>
struct Convert {
  __device__ D operator()(S v) const { return convert_value<D>(v); }
};

// dst strided (not contiguous): element i of the row-major order goes to geom_offset(gd, i).
template <typename D, typename S>
__global__ void copy_strided_kernel(D* dst, Geom gd, In<S> src, int64_t n) {
  const Convert<D, S> conv;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[geom_offset(gd, i)] = conv(src[i]);
}

template <typename T>
__global__ void fill_kernel(T* dst, Geom gd, bool contiguous, T v, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[contiguous ? i : geom_offset(gd, i)] = v;
}

template <typename T>
__global__ void where_kernel(T* out, In<bool> c, In<T> a, In<T> b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = c[i] ? a[i] : b[i];
}

template <typename T>
__global__ void random_kernel(T* out, int64_t n, philox::Stream s, philox::DistParams p) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const double v = philox::sample(s, p, i);
    if constexpr (std::is_same_v<T, BFloat16>) {
      out[i] = BFloat16(static_cast<float>(v));
    } else {
      out[i] = static_cast<T>(v);
    }
  }
}

}  // namespace

void copy(const Tensor& dst, const Tensor& src) {
  const Tensor s = src.expand(dst.shape());
  dispatch_all(dst.dtype(), "copy_", [&]<typename D>() {
    dispatch_all(s.dtype(), "copy_", [&]<typename S>() {
      if (dst.is_contiguous()) {
        launch_map1<D, S>(dst, s, Convert<D, S>{}, "copy_");
        return;
      }
      const int64_t n = dst.numel();
      if (n == 0) return;
      DeviceGuard guard(dst.device().index);
      if (launch_map1_rows<D, S>(dst, s, Convert<D, S>{}, "copy_", stream_of(dst))) {
        HYDRA_CUDA_CHECK_LAUNCH("copy_");
        return;
      }
      copy_strided_kernel<D, S><<<grid_for(n, kThreads), kThreads, 0, stream_of(dst)>>>(
          static_cast<D*>(dst.raw_data()), make_geom(dst, "copy_"), make_in<S>(s, "copy_"), n);
      HYDRA_CUDA_CHECK_LAUNCH("copy_");
    });
  });
}

void fill(const Tensor& dst, double value) {
  dispatch_all(dst.dtype(), "fill_", [&]<typename T>() {
    Tensor v = empty({}, dst.dtype(), kCPU);
    v.fill_(value);  // the value rounded to T exactly as on the CPU
    const T tv = *static_cast<const T*>(v.raw_data());
    const int64_t n = dst.numel();
    if (n == 0) return;
    DeviceGuard guard(dst.device().index);
    fill_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream_of(dst)>>>(
        static_cast<T*>(dst.raw_data()), dst.is_contiguous() ? Geom{} : make_geom(dst, "fill_"), dst.is_contiguous(),
        tv, n);
    HYDRA_CUDA_CHECK_LAUNCH("fill_");
  });
}

void random_fill(const Tensor& t, uint64_t seed, uint64_t offset, const philox::DistParams& p) {
  dispatch_numeric(t.dtype(), "random", [&]<typename T>() {
    const int64_t n = t.numel();
    if (n == 0) return;
    DeviceGuard guard(t.device().index);
    random_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream_of(t)>>>(static_cast<T*>(t.raw_data()), n,
                                                                          philox::Stream{seed, offset}, p);
    HYDRA_CUDA_CHECK_LAUNCH("random");
  });
}

void unary(UnaryOp op, const Tensor& x, const Tensor& out) {
  dispatch_numeric(x.dtype(), unary_op_name(op), [&]<typename T>() {
    with_unary_functor<T>(op, [&](auto f) { launch_map1<T, T>(out, x, f, unary_op_name(op)); });
  });
}

void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_numeric(a.dtype(), binary_op_name(op), [&]<typename T>() {
    with_binary_functor<T>(op, [&](auto f) { launch_map2<T, T, T>(out, a, b, f, binary_op_name(op)); });
  });
}

void unary_backward(UnaryOp op, const Tensor& grad, const Tensor& x, const Tensor& out) {
  dispatch_floating(x.dtype(), "unary_backward", [&]<typename T>() {
    with_unary_grad_functor<T>(op, [&](auto f) { launch_map2<T, T, T>(out, grad, x, f, "unary_backward"); });
  });
}

void compare(CompareOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_all(a.dtype(), "compare", [&]<typename T>() {
    with_compare_functor<T>(op, [&](auto f) { launch_map2<bool, T, T>(out, a, b, f, "compare"); });
  });
}

void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_all(a.dtype(), "where", [&]<typename T>() {
    const int64_t n = out.numel();
    if (n == 0) return;
    DeviceGuard guard(out.device().index);
    where_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream_of(out)>>>(
        static_cast<T*>(out.raw_data()), make_in<bool>(cond, "where"), make_in<T>(a, "where"), make_in<T>(b, "where"),
        n);
    HYDRA_CUDA_CHECK_LAUNCH("where");
  });
}

}  // namespace hydra::cuda
