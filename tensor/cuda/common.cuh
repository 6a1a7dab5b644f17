#pragma once
// Shared by the CUDA backend's .cu files only (never included by host-only code): the error macros, the
// per-device context (stream, cuBLASLt handle, workspace), strided-geometry helpers and launch helpers.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstddef>
#include <cstdint>

#include "tensor/check.h"
#include "tensor/cuda/backend.h"
#include "tensor/tensor_core.h"

namespace hydra::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* stmt, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t st, const char* stmt, const char* file, int line,
                                     const std::string& context);

}  // namespace hydra::cuda

// One checking macro per library (STYLE.md §5): the statement text, file:line and the device go into the message.
#define HYDRA_CUDA_CHECK(stmt)                                                                     \
  do {                                                                                             \
    cudaError_t hydra_err_ = (stmt);                                                               \
    if (hydra_err_ != cudaSuccess) ::hydra::cuda::throw_cuda_error(hydra_err_, #stmt, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: names the op whose launch failed.
#define HYDRA_CUDA_CHECK_LAUNCH(op_name)                                                              \
  do {                                                                                                \
    cudaError_t hydra_err_ = cudaGetLastError();                                                      \
    if (hydra_err_ != cudaSuccess) ::hydra::cuda::throw_cuda_error(hydra_err_, op_name " (kernel launch)", \
                                                                   __FILE__, __LINE__);             \
  } while (0)

#define HYDRA_CUBLAS_CHECK(stmt, context)                                                                  \
  do {                                                                                                     \
    cublasStatus_t hydra_st_ = (stmt);                                                                     \
    if (hydra_st_ != CUBLAS_STATUS_SUCCESS)                                                                \
      ::hydra::cuda::throw_cublas_error(hydra_st_, #stmt, __FILE__, __LINE__, (context));                  \
  } while (0)

namespace hydra::cuda {

// The context of one device, made on first use.
struct DeviceContext {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
};
DeviceContext& context(int device);
inline cudaStream_t stream_of(const Tensor& t) { return context(t.device().index).stream; }

// Strided geometry of an operand, for kernels that accept any view: element (i0, .., in) is at
// data + Σ idx_d · stride_d. Dims beyond kMaxDims are refused by the launcher.
constexpr int kMaxDims = 8;
struct Geom {
  int ndim = 0;
  int64_t size[kMaxDims] = {};
  int64_t stride[kMaxDims] = {};
};
// Geometry of `t` (already expanded to the shape it is read in), collapsed to the fewest dims with the same row-major
// order (size-1 dims dropped, mergeable neighbours merged). Throws naming `op` when rank > kMaxDims.
Geom make_geom(const Tensor& t, const char* op);
// Storage offset (elements) of the element at row-major linear index `i` of the geometry.
// Unrolled over kMaxDims so that every array index is a constant: a run-time index into a kernel parameter makes
// the compiler copy the whole Geom into per-thread local memory (see Outer::offset in elementwise_cuda.cu).
__host__ __device__ inline int64_t geom_offset(const Geom& g, int64_t i) {
  int64_t off = 0;
#pragma unroll
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d < g.ndim) {
      const int64_t s = g.size[d];
      off += (i % s) * g.stride[d];
      i /= s;
    }
  }
  return off;
}

// Grid for a grid-stride loop over n items with `threads` per block.
inline unsigned grid_for(int64_t n, int threads, int64_t per_thread = 1) {
  const int64_t blocks = (n + threads * per_thread - 1) / (threads * per_thread);
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65535 * 16 ? 65535 * 16 : blocks));
}

// Device-side element type of a dtype: __nv_bfloat16 is not used; BFloat16 (raw bits) converts on the fly.
template <typename T>
__device__ __forceinline__ compute_t<T> load_c(const T* p) {
  return static_cast<compute_t<T>>(*p);
}

// Carves a kernel's dynamic shared memory into 128-byte aligned arrays; with an integer base 0 it only measures (the
// host sizes a launch with the same sequence of take() calls that the kernel makes). In a kernel, pass the extern
// __shared__ array itself, not its address as an integer: the pointers then stay visibly shared, so the compiler
// emits shared loads and stores (LDS/STS) through them instead of generic ones with their address conversions.
template <typename B = uintptr_t>
struct Carver {
  B base;  // an integer (sizing on the host) or the kernel's shared array (so the compiler keeps shared addressing)
  std::size_t off = 0;
  template <typename X>
  __host__ __device__ X* take(std::size_t n) {
    off = (off + 127) / 128 * 128;
    X* p = reinterpret_cast<X*>(base + off);
    off += n * sizeof(X);
    return p;
  }
};

// Opts `kernel` into `bytes` of dynamic shared memory on `device` (needed above the 48 KiB default); remembers what
// it has set per (kernel, device), so repeated launches cost no driver calls. Throws naming `op` and `name` (an
// environment error) when the device allows less. Defined in runtime.cu.
void ensure_dynamic_smem(const void* kernel, std::size_t bytes, int device, const char* op, const char* name);

// kernel<<<blocks, threads, smem_bytes, stream>>>(args...) after checking the grid size and opting the kernel into
// smem_bytes of dynamic shared memory (ensure_dynamic_smem); the errors name `op` and the kernel `name`. Nothing
// happens for blocks == 0.
template <typename... P, typename... A>
void launch_kernel(const char* op, const char* name, void (*kernel)(P...), int64_t blocks, int threads,
                   std::size_t smem_bytes, int device, cudaStream_t stream, A... args) {
  if (blocks == 0) return;
  HYDRA_CHECK(blocks <= INT_MAX, "{}: {} needs {} blocks, more than the grid limit {}", op, name, blocks, INT_MAX);
  ensure_dynamic_smem(reinterpret_cast<const void*>(kernel), smem_bytes, device, op, name);
  kernel<<<static_cast<unsigned>(blocks), threads, smem_bytes, stream>>>(args...);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw_cuda_error(err, name, __FILE__, __LINE__);
}

}  // namespace hydra::cuda
