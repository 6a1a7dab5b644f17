#pragma once
// Matrix products. a is (..., M, K) — or (..., K, M) with Trans::Yes — and b is (..., K, N) — or (..., N, K)
// with Trans::Yes; the batch dims (...) broadcast (either side may have none). The result is a contiguous
// (..., M, N) tensor. float32 and float64 run through Eigen's GEMM; bfloat16 inputs are widened to float32,
// multiplied with float32 accumulation and rounded back. Strided inputs whose matrices have a unit stride in
// either of their last two dims (row- or column-major slices, e.g. transposed views) are read in place; other
// layouts are copied to contiguous first.
// Broadcast (stride-0) matrices are copied first.
// Determinism: on the CPU, Eigen splits large products between threads by the thread count, so the last bits
// of a large product may differ between runs with different OMP_NUM_THREADS (the same thread count gives the
// same result). Every other CPU op gives identical results for any thread count.
// FLOPs: 2·batch·M·N·K.
#include "tensor/tensor_core.h"

namespace hydra {

enum class Trans { No, Yes };

Tensor matmul(const Tensor& a, const Tensor& b, Trans ta = Trans::No, Trans tb = Trans::No);

// linear(x, w, bias) = x·wᵀ + bias: x (..., in), w (out, in), optional bias (out) -> (..., out), the layout of a
// Linear layer. On CUDA the bias is added by the GEMM's epilogue (cuBLASLt EPILOGUE_BIAS, one pass); on the CPU
// it is a matmul and a broadcast add. Contiguous x is flattened to one (rows, in) GEMM.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias = Tensor());

}  // namespace hydra
