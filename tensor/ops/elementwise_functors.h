#pragma once
// Scalar functors of the elementwise ops, usable on host and device (HYDRA_HD). Arithmetic runs in
// compute_t<T> (float for bfloat16). with_*_functor<T>(op, k) calls k(functor) for the op: one switch here,
// shared by the CPU kernels and, later, the CUDA kernels.
#include <cmath>

#include "tensor/dtype.h"
#include "tensor/ops/elementwise.h"

namespace hydra {

template <typename T, typename F>
struct Lift1 {  // applies F in compute_t<T> and rounds back to T
  F f;
  HYDRA_HD T operator()(T x) const { return T(f(static_cast<compute_t<T>>(x))); }
};
template <typename T, typename F>
struct Lift2 {
  F f;
  HYDRA_HD T operator()(T a, T b) const { return T(f(static_cast<compute_t<T>>(a), static_cast<compute_t<T>>(b))); }
};

template <typename T, typename K>
void with_unary_functor(UnaryOp op, K&& k) {
  using C = compute_t<T>;
  auto lift = [&](auto f) { k(Lift1<T, decltype(f)>{f}); };
  switch (op) {
    case UnaryOp::Neg: return lift([] HYDRA_HD(C x) -> C { return -x; });
    case UnaryOp::Abs: return lift([] HYDRA_HD(C x) -> C { return x < C(0) ? -x : x; });
    case UnaryOp::Relu: return lift([] HYDRA_HD(C x) -> C { return x > C(0) ? x : C(0); });
    case UnaryOp::Square: return lift([] HYDRA_HD(C x) -> C { return x * x; });
    default: break;
  }
  if constexpr (std::is_floating_point_v<C>) {
    switch (op) {
      case UnaryOp::Exp: return lift([] HYDRA_HD(C x) -> C { return std::exp(x); });
      case UnaryOp::Log: return lift([] HYDRA_HD(C x) -> C { return std::log(x); });
      case UnaryOp::Sqrt: return lift([] HYDRA_HD(C x) -> C { return std::sqrt(x); });
      case UnaryOp::Rsqrt: return lift([] HYDRA_HD(C x) -> C { return C(1) / std::sqrt(x); });
      case UnaryOp::Sigmoid: return lift([] HYDRA_HD(C x) -> C { return C(1) / (C(1) + std::exp(-x)); });
      case UnaryOp::Silu: return lift([] HYDRA_HD(C x) -> C { return x / (C(1) + std::exp(-x)); });
      case UnaryOp::Tanh: return lift([] HYDRA_HD(C x) -> C { return std::tanh(x); });
      case UnaryOp::Reciprocal: return lift([] HYDRA_HD(C x) -> C { return C(1) / x; });
      case UnaryOp::Sin: return lift([] HYDRA_HD(C x) -> C { return std::sin(x); });
      case UnaryOp::Cos: return lift([] HYDRA_HD(C x) -> C { return std::cos(x); });
      default: break;
    }
  }
  HYDRA_CHECK(false, "{}: not defined for dtype {}", unary_op_name(op), dtype_name(dtype_of<T>::value));
}

template <typename T, typename K>
void with_binary_functor(BinaryOp op, K&& k) {
  using C = compute_t<T>;
  auto lift = [&](auto f) { k(Lift2<T, decltype(f)>{f}); };
  switch (op) {
    case BinaryOp::Add: return lift([] HYDRA_HD(C a, C b) -> C { return a + b; });
    case BinaryOp::Sub: return lift([] HYDRA_HD(C a, C b) -> C { return a - b; });
    case BinaryOp::Mul: return lift([] HYDRA_HD(C a, C b) -> C { return a * b; });
    case BinaryOp::Maximum: return lift([] HYDRA_HD(C a, C b) -> C { return (a > b || a != a) ? a : b; });
    case BinaryOp::Minimum: return lift([] HYDRA_HD(C a, C b) -> C { return (a < b || a != a) ? a : b; });
    default: break;
  }
  if constexpr (std::is_floating_point_v<C>) {
    switch (op) {
      case BinaryOp::Div: return lift([] HYDRA_HD(C a, C b) -> C { return a / b; });
      case BinaryOp::Pow: return lift([] HYDRA_HD(C a, C b) -> C { return std::pow(a, b); });
      default: break;
    }
  }
  HYDRA_CHECK(false, "{}: not defined for dtype {}", binary_op_name(op), dtype_name(dtype_of<T>::value));
}

template <typename T, typename K>
void with_compare_functor(CompareOp op, K&& k) {
  using C = compute_t<T>;
  auto cmp = [&](auto f) {
    k([f] HYDRA_HD(T a, T b) -> bool { return f(static_cast<C>(a), static_cast<C>(b)); });
  };
  switch (op) {
    case CompareOp::Eq: return cmp([] HYDRA_HD(C a, C b) { return a == b; });
    case CompareOp::Ne: return cmp([] HYDRA_HD(C a, C b) { return a != b; });
    case CompareOp::Lt: return cmp([] HYDRA_HD(C a, C b) { return a < b; });
    case CompareOp::Le: return cmp([] HYDRA_HD(C a, C b) { return a <= b; });
    case CompareOp::Gt: return cmp([] HYDRA_HD(C a, C b) { return a > b; });
    case CompareOp::Ge: return cmp([] HYDRA_HD(C a, C b) { return a >= b; });
  }
}

}  // namespace hydra
