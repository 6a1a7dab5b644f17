#pragma once
// Scalar functors of the elementwise ops, usable on host and device (HYDRA_HD). Each is a named struct (nvcc
// does not allow device lambdas in the places these are made). Arithmetic runs in compute_t<T> (float for
// bfloat16): Lift1/Lift2/LiftCmp convert in and out. with_*_functor<T>(op, k) calls k(functor) for the op:
// one switch, shared by the CPU kernels and the CUDA kernels.
#include <cmath>
#include <type_traits>

#include "tensor/dtype.h"
#include "tensor/ops/elementwise.h"

namespace hydra {

namespace fn {
// clang-format off
struct Neg { template <class C> HYDRA_HD C operator()(C x) const { return -x; } };
struct Abs { template <class C> HYDRA_HD C operator()(C x) const { return x < C(0) ? -x : x; } };
struct Relu { template <class C> HYDRA_HD C operator()(C x) const { return x > C(0) ? x : C(0); } };
struct Square { template <class C> HYDRA_HD C operator()(C x) const { return x * x; } };
struct Exp { template <class C> HYDRA_HD C operator()(C x) const { return std::exp(x); } };
struct Log { template <class C> HYDRA_HD C operator()(C x) const { return std::log(x); } };
struct Sqrt { template <class C> HYDRA_HD C operator()(C x) const { return std::sqrt(x); } };
struct Rsqrt { template <class C> HYDRA_HD C operator()(C x) const { return C(1) / std::sqrt(x); } };
struct Sigmoid { template <class C> HYDRA_HD C operator()(C x) const { return C(1) / (C(1) + std::exp(-x)); } };
struct Silu { template <class C> HYDRA_HD C operator()(C x) const { return x / (C(1) + std::exp(-x)); } };
struct Tanh { template <class C> HYDRA_HD C operator()(C x) const { return std::tanh(x); } };
struct Reciprocal { template <class C> HYDRA_HD C operator()(C x) const { return C(1) / x; } };
struct Sin { template <class C> HYDRA_HD C operator()(C x) const { return std::sin(x); } };
struct Cos { template <class C> HYDRA_HD C operator()(C x) const { return std::cos(x); } };

// grad · op'(x) (unary_backward), with s = sigmoid(x) = 1 / (1 + e), e = exp(−x): silu' = s·(1 + x·(1 − s)),
// sigmoid' = s·(1 − s). 1 − s is taken as e·s for x ≥ 0, where 1 − s would cancel (x = 5 loses 1e-5 of relative
// accuracy in float), and directly for x < 0, where e may overflow.
struct OneMinusSigmoid { template <class C> HYDRA_HD C operator()(C x, C e, C s) const { return x >= C(0) ? e * s : C(1) - s; } };
struct SiluGrad { template <class C> HYDRA_HD C operator()(C g, C x) const { const C e = std::exp(-x), s = C(1) / (C(1) + e); return g * s * (C(1) + x * OneMinusSigmoid{}(x, e, s)); } };
struct SigmoidGrad { template <class C> HYDRA_HD C operator()(C g, C x) const { const C e = std::exp(-x), s = C(1) / (C(1) + e); return g * s * OneMinusSigmoid{}(x, e, s); } };

struct Add { template <class C> HYDRA_HD C operator()(C a, C b) const { return a + b; } };
struct Sub { template <class C> HYDRA_HD C operator()(C a, C b) const { return a - b; } };
struct Mul { template <class C> HYDRA_HD C operator()(C a, C b) const { return a * b; } };
struct Div { template <class C> HYDRA_HD C operator()(C a, C b) const { return a / b; } };
struct Pow { template <class C> HYDRA_HD C operator()(C a, C b) const { return std::pow(a, b); } };
// NaN propagates: a NaN on either side wins.
struct Maximum { template <class C> HYDRA_HD C operator()(C a, C b) const { return (a > b || a != a) ? a : b; } };
struct Minimum { template <class C> HYDRA_HD C operator()(C a, C b) const { return (a < b || a != a) ? a : b; } };

struct Eq { template <class C> HYDRA_HD bool operator()(C a, C b) const { return a == b; } };
struct Ne { template <class C> HYDRA_HD bool operator()(C a, C b) const { return a != b; } };
struct Lt { template <class C> HYDRA_HD bool operator()(C a, C b) const { return a < b; } };
struct Le { template <class C> HYDRA_HD bool operator()(C a, C b) const { return a <= b; } };
struct Gt { template <class C> HYDRA_HD bool operator()(C a, C b) const { return a > b; } };
struct Ge { template <class C> HYDRA_HD bool operator()(C a, C b) const { return a >= b; } };
// clang-format on
}  // namespace fn

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
template <typename T, typename F>
struct LiftCmp {  // compares in compute_t<T>
  F f;
  HYDRA_HD bool operator()(T a, T b) const { return f(static_cast<compute_t<T>>(a), static_cast<compute_t<T>>(b)); }
};

template <typename T, typename K>
void with_unary_functor(UnaryOp op, K&& k) {
  switch (op) {
    case UnaryOp::Neg: return k(Lift1<T, fn::Neg>{});
    case UnaryOp::Abs: return k(Lift1<T, fn::Abs>{});
    case UnaryOp::Relu: return k(Lift1<T, fn::Relu>{});
    case UnaryOp::Square: return k(Lift1<T, fn::Square>{});
    default: break;
  }
  if constexpr (std::is_floating_point_v<compute_t<T>>) {
    switch (op) {
      case UnaryOp::Exp: return k(Lift1<T, fn::Exp>{});
      case UnaryOp::Log: return k(Lift1<T, fn::Log>{});
      case UnaryOp::Sqrt: return k(Lift1<T, fn::Sqrt>{});
      case UnaryOp::Rsqrt: return k(Lift1<T, fn::Rsqrt>{});
      case UnaryOp::Sigmoid: return k(Lift1<T, fn::Sigmoid>{});
      case UnaryOp::Silu: return k(Lift1<T, fn::Silu>{});
      case UnaryOp::Tanh: return k(Lift1<T, fn::Tanh>{});
      case UnaryOp::Reciprocal: return k(Lift1<T, fn::Reciprocal>{});
      case UnaryOp::Sin: return k(Lift1<T, fn::Sin>{});
      case UnaryOp::Cos: return k(Lift1<T, fn::Cos>{});
      default: break;
    }
  }
  HYDRA_CHECK(false, "{}: not defined for dtype {}", unary_op_name(op), dtype_name(dtype_of<T>::value));
}

template <typename T, typename K>
void with_binary_functor(BinaryOp op, K&& k) {
  switch (op) {
    case BinaryOp::Add: return k(Lift2<T, fn::Add>{});
    case BinaryOp::Sub: return k(Lift2<T, fn::Sub>{});
    case BinaryOp::Mul: return k(Lift2<T, fn::Mul>{});
    case BinaryOp::Maximum: return k(Lift2<T, fn::Maximum>{});
    case BinaryOp::Minimum: return k(Lift2<T, fn::Minimum>{});
    default: break;
  }
  if constexpr (std::is_floating_point_v<compute_t<T>>) {
    switch (op) {
      case BinaryOp::Div: return k(Lift2<T, fn::Div>{});
      case BinaryOp::Pow: return k(Lift2<T, fn::Pow>{});
      default: break;
    }
  }
  HYDRA_CHECK(false, "{}: not defined for dtype {}", binary_op_name(op), dtype_name(dtype_of<T>::value));
}

// k(functor of (grad, x)) for unary_backward; floating T only.
template <typename T, typename K>
void with_unary_grad_functor(UnaryOp op, K&& k) {
  if constexpr (std::is_floating_point_v<compute_t<T>>) {
    switch (op) {
      case UnaryOp::Silu: return k(Lift2<T, fn::SiluGrad>{});
      case UnaryOp::Sigmoid: return k(Lift2<T, fn::SigmoidGrad>{});
      default: break;
    }
  }
  HYDRA_CHECK(false, "unary_backward: no fused gradient for {} (dtype {}); supported: silu, sigmoid",
              unary_op_name(op), dtype_name(dtype_of<T>::value));
}

template <typename T, typename K>
void with_compare_functor(CompareOp op, K&& k) {
  switch (op) {
    case CompareOp::Eq: return k(LiftCmp<T, fn::Eq>{});
    case CompareOp::Ne: return k(LiftCmp<T, fn::Ne>{});
    case CompareOp::Lt: return k(LiftCmp<T, fn::Lt>{});
    case CompareOp::Le: return k(LiftCmp<T, fn::Le>{});
    case CompareOp::Gt: return k(LiftCmp<T, fn::Gt>{});
    case CompareOp::Ge: return k(LiftCmp<T, fn::Ge>{});
  }
}

}  // namespace hydra
