#pragma once
// The CUDA kernels' entry points, called only from the CUDA branch of each op's dispatch function (which has
// already validated arguments and allocated outputs on the right device). Host-only header: no CUDA types.
// Built without CUDA, tensor/cuda/ops_stub.cpp defines each one to throw (no CUDA tensor can exist there).
// Grouped by op family, in the order of tensor/ops/*.h.
#include <cstdint>

#include "tensor/ops/elementwise.h"
#include "tensor/ops/matmul.h"
#include "tensor/philox.h"
#include "tensor/tensor_core.h"

namespace hydra::cuda {

// ---- tensor core: copies, casts, fill (dst and src on the same device, src expanded to dst's shape) ----
void copy(const Tensor& dst, const Tensor& src);
void fill(const Tensor& dst, double value);

// ---- random: element i of a contiguous t = philox::sample(stream(seed, offset), p, i) ----
void random_fill(const Tensor& t, uint64_t seed, uint64_t offset, const philox::DistParams& p);

// ---- elementwise (inputs already expanded to out's shape; out contiguous) ----
void unary(UnaryOp op, const Tensor& x, const Tensor& out);
void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out);
void unary_backward(UnaryOp op, const Tensor& grad, const Tensor& x, const Tensor& out);
void compare(CompareOp op, const Tensor& a, const Tensor& b, const Tensor& out);
void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out);

// ---- matmul through cuBLASLt: out (batch..., M, N) contiguous; a, b expanded to the batch shape; an optional
// bias (N), same dtype, is added by the epilogue (out[..., m, n] += bias[n]) ----
void matmul(const Tensor& a, const Tensor& b, Trans ta, Trans tb, const Tensor& out, const Tensor& bias = Tensor());

}  // namespace hydra::cuda

namespace hydra::cuda {
// float32 GEMMs may use TF32 tensor cores only after set_allow_tf32(true) (default false: exact float32).
void set_allow_tf32(bool allow);
bool allow_tf32();
}  // namespace hydra::cuda
