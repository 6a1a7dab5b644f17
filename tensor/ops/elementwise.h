#pragma once
// Elementwise ops with NumPy broadcasting. Inputs may be strided views (any strides, stride-0 broadcast
// included); outputs are fresh contiguous tensors. Binary ops need equal dtypes (no implicit promotion:
// cast with .to(dtype)); a double scalar operand is converted to the tensor's dtype.
// Floating ops accept float32, float64 and bfloat16 (computed in float32); add/sub/mul/neg/abs/clamp/relu
// and comparisons also accept int32/int64. Comparisons return bool tensors.
#include "tensor/tensor_core.h"

namespace hydra {

enum class UnaryOp { Neg, Exp, Log, Sqrt, Rsqrt, Sigmoid, Silu, Tanh, Relu, Abs, Square, Reciprocal, Sin, Cos };
enum class BinaryOp { Add, Sub, Mul, Div, Pow, Maximum, Minimum };
enum class CompareOp { Eq, Ne, Lt, Le, Gt, Ge };

const char* unary_op_name(UnaryOp op);
const char* binary_op_name(BinaryOp op);

Tensor unary(UnaryOp op, const Tensor& x);
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);
Tensor compare(CompareOp op, const Tensor& a, const Tensor& b);
// The gradient of y = op(x) in one pass: grad · op'(x), for the ops whose derivative is a function of x
// (Silu, Sigmoid); computed in compute_t (float for bfloat16) and rounded once. grad and x: same shape, dtype and
// device (floating). Other ops are refused with their name.
Tensor unary_backward(UnaryOp op, const Tensor& grad, const Tensor& x);

inline Tensor neg(const Tensor& x) { return unary(UnaryOp::Neg, x); }
inline Tensor exp(const Tensor& x) { return unary(UnaryOp::Exp, x); }
inline Tensor log(const Tensor& x) { return unary(UnaryOp::Log, x); }
inline Tensor sqrt(const Tensor& x) { return unary(UnaryOp::Sqrt, x); }
inline Tensor rsqrt(const Tensor& x) { return unary(UnaryOp::Rsqrt, x); }
inline Tensor sigmoid(const Tensor& x) { return unary(UnaryOp::Sigmoid, x); }
inline Tensor silu(const Tensor& x) { return unary(UnaryOp::Silu, x); }
inline Tensor tanh(const Tensor& x) { return unary(UnaryOp::Tanh, x); }
inline Tensor relu(const Tensor& x) { return unary(UnaryOp::Relu, x); }
inline Tensor abs(const Tensor& x) { return unary(UnaryOp::Abs, x); }
inline Tensor square(const Tensor& x) { return unary(UnaryOp::Square, x); }
inline Tensor reciprocal(const Tensor& x) { return unary(UnaryOp::Reciprocal, x); }
inline Tensor sin(const Tensor& x) { return unary(UnaryOp::Sin, x); }
inline Tensor cos(const Tensor& x) { return unary(UnaryOp::Cos, x); }

inline Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Add, a, b); }
inline Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Sub, a, b); }
inline Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Mul, a, b); }
inline Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Div, a, b); }
inline Tensor pow(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Pow, a, b); }
inline Tensor maximum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Maximum, a, b); }
inline Tensor minimum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Minimum, a, b); }
// Tensor-scalar forms: the scalar becomes a 0-d tensor of x's dtype and device.
Tensor add(const Tensor& x, double s);
Tensor sub(const Tensor& x, double s);
Tensor mul(const Tensor& x, double s);
Tensor div(const Tensor& x, double s);
Tensor pow(const Tensor& x, double exponent);
Tensor clamp(const Tensor& x, double lo, double hi);  // lo may be -inf, hi +inf

// cond ? a : b, all three broadcast together; cond must be bool.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);  // mask broadcast to x's shape

// In place on `dst` (raw, for optimizers and kernels): dst = dst (op) src, src broadcast to dst's shape.
Tensor& binary_(BinaryOp op, Tensor& dst, const Tensor& src);
inline Tensor& add_(Tensor& dst, const Tensor& src) { return binary_(BinaryOp::Add, dst, src); }
inline Tensor& mul_(Tensor& dst, const Tensor& src) { return binary_(BinaryOp::Mul, dst, src); }
Tensor& add_(Tensor& dst, const Tensor& src, double alpha);   // dst += alpha * src
Tensor& mul_(Tensor& dst, double s);

}  // namespace hydra
