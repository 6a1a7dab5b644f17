#pragma once
// Differentiable elementwise, matmul and view ops (namespace hydra::ag). Each records a node only when grad
// mode is on and an input requires grad; otherwise it is exactly the raw tensor/ op. Semantics, shapes and
// dtypes are those of the raw ops (tensor/ops/elementwise.h, matmul.h, tensor_core.h).
#include "tensor/ops/elementwise.h"
#include "tensor/ops/matmul.h"
#include "tensor/tensor_core.h"

namespace hydra::ag {

Tensor unary(UnaryOp op, const Tensor& x);
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);

inline Tensor neg(const Tensor& x) { return ag::unary(UnaryOp::Neg, x); }
inline Tensor exp(const Tensor& x) { return ag::unary(UnaryOp::Exp, x); }
inline Tensor log(const Tensor& x) { return ag::unary(UnaryOp::Log, x); }
inline Tensor sqrt(const Tensor& x) { return ag::unary(UnaryOp::Sqrt, x); }
inline Tensor rsqrt(const Tensor& x) { return ag::unary(UnaryOp::Rsqrt, x); }
inline Tensor sigmoid(const Tensor& x) { return ag::unary(UnaryOp::Sigmoid, x); }
inline Tensor silu(const Tensor& x) { return ag::unary(UnaryOp::Silu, x); }
inline Tensor tanh(const Tensor& x) { return ag::unary(UnaryOp::Tanh, x); }
inline Tensor relu(const Tensor& x) { return ag::unary(UnaryOp::Relu, x); }
inline Tensor abs(const Tensor& x) { return ag::unary(UnaryOp::Abs, x); }
inline Tensor square(const Tensor& x) { return ag::unary(UnaryOp::Square, x); }
inline Tensor reciprocal(const Tensor& x) { return ag::unary(UnaryOp::Reciprocal, x); }
inline Tensor sin(const Tensor& x) { return ag::unary(UnaryOp::Sin, x); }
inline Tensor cos(const Tensor& x) { return ag::unary(UnaryOp::Cos, x); }

inline Tensor add(const Tensor& a, const Tensor& b) { return ag::binary(BinaryOp::Add, a, b); }
inline Tensor sub(const Tensor& a, const Tensor& b) { return ag::binary(BinaryOp::Sub, a, b); }
inline Tensor mul(const Tensor& a, const Tensor& b) { return ag::binary(BinaryOp::Mul, a, b); }
inline Tensor div(const Tensor& a, const Tensor& b) { return ag::binary(BinaryOp::Div, a, b); }
inline Tensor pow(const Tensor& a, const Tensor& b) { return ag::binary(BinaryOp::Pow, a, b); }
inline Tensor maximum(const Tensor& a, const Tensor& b) { return ag::binary(BinaryOp::Maximum, a, b); }
inline Tensor minimum(const Tensor& a, const Tensor& b) { return ag::binary(BinaryOp::Minimum, a, b); }
Tensor add(const Tensor& x, double s);
Tensor sub(const Tensor& x, double s);
Tensor mul(const Tensor& x, double s);
Tensor div(const Tensor& x, double s);
Tensor pow(const Tensor& x, double exponent);
Tensor clamp(const Tensor& x, double lo, double hi);  // gradient 1 inside [lo, hi], 0 outside
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);

Tensor matmul(const Tensor& a, const Tensor& b, Trans ta = Trans::No, Trans tb = Trans::No);
// x·wᵀ + bias (tensor/ops/matmul.h). Backward: dx = g·w, dw = gᵀ·x, dbias = Σ_rows g (rows = all leading dims).
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias = Tensor());

// Views and copies (the result shares storage where the raw op does).
Tensor reshape(const Tensor& x, const Shape& shape);
Tensor view(const Tensor& x, const Shape& shape);
Tensor flatten(const Tensor& x, int64_t start = 0, int64_t end = -1);
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor expand(const Tensor& x, const Shape& shape);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor select(const Tensor& x, int64_t dim, int64_t index);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor contiguous(const Tensor& x);
Tensor to(const Tensor& x, DType dtype);  // cast; the gradient is cast back

}  // namespace hydra::ag
