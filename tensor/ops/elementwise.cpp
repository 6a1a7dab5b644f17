// Elementwise ops: the dispatch functions (one per family) and their CPU kernels. Functors are host/device so
// the CUDA backend reuses them unchanged (tensor/ops/elementwise_functors.h).
#include "tensor/ops/elementwise.h"

#include <initializer_list>

#include "tensor/cpu/loops.h"
#include "tensor/cpu/sigmoid_vec.h"
#include "tensor/cuda/ops.h"
#include "tensor/dispatch.h"
#include "tensor/ops/elementwise_functors.h"

namespace hydra {

const char* unary_op_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg: return "neg";
    case UnaryOp::Exp: return "exp";
    case UnaryOp::Log: return "log";
    case UnaryOp::Sqrt: return "sqrt";
    case UnaryOp::Rsqrt: return "rsqrt";
    case UnaryOp::Sigmoid: return "sigmoid";
    case UnaryOp::Silu: return "silu";
    case UnaryOp::Tanh: return "tanh";
    case UnaryOp::Relu: return "relu";
    case UnaryOp::Abs: return "abs";
    case UnaryOp::Square: return "square";
    case UnaryOp::Reciprocal: return "reciprocal";
    case UnaryOp::Sin: return "sin";
    case UnaryOp::Cos: return "cos";
  }
  return "unary";
}

const char* binary_op_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return "add";
    case BinaryOp::Sub: return "sub";
    case BinaryOp::Mul: return "mul";
    case BinaryOp::Div: return "div";
    case BinaryOp::Pow: return "pow";
    case BinaryOp::Maximum: return "maximum";
    case BinaryOp::Minimum: return "minimum";
  }
  return "binary";
}

namespace {

bool int_ok(UnaryOp op) {
  return op == UnaryOp::Neg || op == UnaryOp::Relu || op == UnaryOp::Abs || op == UnaryOp::Square;
}
bool int_ok(BinaryOp op) { return op != BinaryOp::Pow && op != BinaryOp::Div; }

// out[i] = f(in[i]) over one broadcast shape, for any strides.
template <typename TO, typename TI, typename F>
void map1_cpu(const Tensor& out, const Tensor& in, F f) {
  cpu::for_each_row<2>(out.shape(), {out.strides(), in.strides()},
                       {static_cast<char*>(out.raw_data()), static_cast<char*>(in.raw_data())},
                       {int64_t(sizeof(TO)), int64_t(sizeof(TI))},
                       [&](std::array<char*, 2> p, int64_t n, std::array<int64_t, 2> st) {
                         TO* o = reinterpret_cast<TO*>(p[0]);
                         const TI* a = reinterpret_cast<const TI*>(p[1]);
                         if (st[0] == 1 && st[1] == 1) {
#pragma omp simd  // lets GCC if-convert selects inside a functor and vectorise
                           for (int64_t k = 0; k < n; ++k) o[k] = f(a[k]);
                         } else {
                           for (int64_t k = 0; k < n; ++k) o[k * st[0]] = f(a[k * st[1]]);
                         }
                       });
}

template <typename TO, typename TA, typename TB, typename F>
void map2_cpu(const Tensor& out, const Tensor& a, const Tensor& b, F f) {
  cpu::for_each_row<3>(
      out.shape(), {out.strides(), a.strides(), b.strides()},
      {static_cast<char*>(out.raw_data()), static_cast<char*>(a.raw_data()), static_cast<char*>(b.raw_data())},
      {int64_t(sizeof(TO)), int64_t(sizeof(TA)), int64_t(sizeof(TB))},
      [&](std::array<char*, 3> p, int64_t n, std::array<int64_t, 3> st) {
        TO* o = reinterpret_cast<TO*>(p[0]);
        const TA* x = reinterpret_cast<const TA*>(p[1]);
        const TB* y = reinterpret_cast<const TB*>(p[2]);
        if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
#pragma omp simd
          for (int64_t k = 0; k < n; ++k) o[k] = f(x[k], y[k]);
        } else if (st[0] == 1 && st[1] == 1 && st[2] == 0) {
          const TB yv = y[0];
          for (int64_t k = 0; k < n; ++k) o[k] = f(x[k], yv);
        } else {
          for (int64_t k = 0; k < n; ++k) o[k * st[0]] = f(x[k * st[1]], y[k * st[2]]);
        }
      });
}

// The sigmoid family on contiguous float32 takes the vectorised loops of tensor/cpu/sigmoid_vec.h.
bool sigmoid_fast_path(UnaryOp op, std::initializer_list<const Tensor*> ts) {
  if (op != UnaryOp::Silu && op != UnaryOp::Sigmoid) return false;
  for (const Tensor* t : ts)
    if (t->dtype() != DType::Float32 || !t->is_contiguous() || t->numel() != (*ts.begin())->numel()) return false;
  return true;
}

void unary_cpu(UnaryOp op, const Tensor& x, const Tensor& out) {
  if (sigmoid_fast_path(op, {&out, &x})) {
    const float* xp = x.data<float>();
    float* op_ = out.data<float>();
    cpu::parallel_for(x.numel(), 8, [&](int64_t b, int64_t e) {
      if (op == UnaryOp::Silu) {
        cpu::silu_f32(xp + b, op_ + b, e - b);
      } else {
        cpu::sigmoid_f32(xp + b, op_ + b, e - b);
      }
    });
    return;
  }
  dispatch_numeric(x.dtype(), unary_op_name(op), [&]<typename T>() {
    with_unary_functor<T>(op, [&](auto f) { map1_cpu<T, T>(out, x, f); });
  });
}

void binary_cpu(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_numeric(a.dtype(), binary_op_name(op), [&]<typename T>() {
    with_binary_functor<T>(op, [&](auto f) { map2_cpu<T, T, T>(out, a, b, f); });
  });
}

void unary_backward_cpu(UnaryOp op, const Tensor& g, const Tensor& x, const Tensor& out) {
  if (sigmoid_fast_path(op, {&out, &g, &x})) {
    const float *gp = g.data<float>(), *xp = x.data<float>();
    float* op_ = out.data<float>();
    cpu::parallel_for(x.numel(), 8, [&](int64_t b, int64_t e) {
      if (op == UnaryOp::Silu) {
        cpu::sigmoid_family_grad_f32<false>(gp + b, xp + b, op_ + b, e - b);
      } else {
        cpu::sigmoid_family_grad_f32<true>(gp + b, xp + b, op_ + b, e - b);
      }
    });
    return;
  }
  dispatch_floating(x.dtype(), "unary_backward", [&]<typename T>() {
    with_unary_grad_functor<T>(op, [&](auto f) { map2_cpu<T, T, T>(out, g, x, f); });
  });
}

void compare_cpu(CompareOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_all(a.dtype(), "compare", [&]<typename T>() {
    with_compare_functor<T>(op, [&](auto f) { map2_cpu<bool, T, T>(out, a, b, f); });
  });
}

void where_cpu(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_all(a.dtype(), "where", [&]<typename T>() {
    cpu::for_each_row<4>(out.shape(), {out.strides(), c.strides(), a.strides(), b.strides()},
                         {static_cast<char*>(out.raw_data()), static_cast<char*>(c.raw_data()),
                          static_cast<char*>(a.raw_data()), static_cast<char*>(b.raw_data())},
                         {int64_t(sizeof(T)), 1, int64_t(sizeof(T)), int64_t(sizeof(T))},
                         [](std::array<char*, 4> p, int64_t n, std::array<int64_t, 4> st) {
                           T* o = reinterpret_cast<T*>(p[0]);
                           const bool* m = reinterpret_cast<const bool*>(p[1]);
                           const T* x = reinterpret_cast<const T*>(p[2]);
                           const T* y = reinterpret_cast<const T*>(p[3]);
                           for (int64_t k = 0; k < n; ++k) o[k * st[0]] = m[k * st[1]] ? x[k * st[2]] : y[k * st[3]];
                         });
  });
}

}  // namespace

Tensor unary(UnaryOp op, const Tensor& x) {
  const char* name = unary_op_name(op);
  check_defined(x, name, "x");
  HYDRA_CHECK(is_floating(x.dtype()) || (is_integral(x.dtype()) && int_ok(op)),
              "{}: dtype {} not supported (shape {})", name, dtype_name(x.dtype()), shape_str(x.shape()));
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  switch (x.device().type) {
    case DeviceType::CPU: unary_cpu(op, x, out); break;
    case DeviceType::CUDA: cuda::unary(op, x, out); break;
  }
  return out;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_op_name(op);
  check_defined(a, name, "a");
  check_defined(b, name, "b");
  check_same_device(a, b, name);
  check_same_dtype(a, b, name);
  HYDRA_CHECK(is_floating(a.dtype()) || (is_integral(a.dtype()) && int_ok(op)),
              "{}: dtype {} not supported (shapes {} and {})", name, dtype_name(a.dtype()), shape_str(a.shape()),
              shape_str(b.shape()));
  const Shape s = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = empty(s, a.dtype(), a.device());
  switch (a.device().type) {
    case DeviceType::CPU: binary_cpu(op, a.expand(s), b.expand(s), out); break;
    case DeviceType::CUDA: cuda::binary(op, a.expand(s), b.expand(s), out); break;
  }
  return out;
}

Tensor unary_backward(UnaryOp op, const Tensor& grad, const Tensor& x) {
  check_defined(grad, "unary_backward", "grad");
  check_defined(x, "unary_backward", "x");
  check_same_device(grad, x, "unary_backward");
  check_same_dtype(grad, x, "unary_backward");
  HYDRA_CHECK(is_floating(x.dtype()), "unary_backward ({}): dtype {} not supported (shape {})", unary_op_name(op),
              dtype_name(x.dtype()), shape_str(x.shape()));
  HYDRA_CHECK(grad.shape() == x.shape(), "unary_backward ({}): grad shape {} does not match x shape {}",
              unary_op_name(op), shape_str(grad.shape()), shape_str(x.shape()));
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  switch (x.device().type) {
    case DeviceType::CPU: unary_backward_cpu(op, grad, x, out); break;
    case DeviceType::CUDA: cuda::unary_backward(op, grad, x, out); break;
  }
  return out;
}

Tensor compare(CompareOp op, const Tensor& a, const Tensor& b) {
  check_defined(a, "compare", "a");
  check_defined(b, "compare", "b");
  check_same_device(a, b, "compare");
  check_same_dtype(a, b, "compare");
  const Shape s = broadcast_shapes(a.shape(), b.shape(), "compare");
  Tensor out = empty(s, DType::Bool, a.device());
  switch (a.device().type) {
    case DeviceType::CPU: compare_cpu(op, a.expand(s), b.expand(s), out); break;
    case DeviceType::CUDA: cuda::compare(op, a.expand(s), b.expand(s), out); break;
  }
  return out;
}

Tensor add(const Tensor& x, double s) { return add(x, scalar_tensor(s, x.dtype(), x.device())); }
Tensor sub(const Tensor& x, double s) { return sub(x, scalar_tensor(s, x.dtype(), x.device())); }
Tensor mul(const Tensor& x, double s) { return mul(x, scalar_tensor(s, x.dtype(), x.device())); }
Tensor div(const Tensor& x, double s) { return div(x, scalar_tensor(s, x.dtype(), x.device())); }
Tensor pow(const Tensor& x, double e) { return pow(x, scalar_tensor(e, x.dtype(), x.device())); }

Tensor clamp(const Tensor& x, double lo, double hi) {
  HYDRA_CHECK(lo <= hi, "clamp: lower bound {} above upper bound {}", lo, hi);
  Tensor out = x;
  if (lo > -INFINITY) out = maximum(out, scalar_tensor(lo, x.dtype(), x.device()));
  if (hi < INFINITY) out = minimum(out, scalar_tensor(hi, x.dtype(), x.device()));
  return out.is_same(x) ? x.clone() : out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_defined(cond, "where", "cond");
  check_dtype(cond, DType::Bool, "where", "cond");
  check_same_device(cond, a, "where");
  check_same_device(a, b, "where");
  check_same_dtype(a, b, "where");
  const Shape s = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor out = empty(s, a.dtype(), a.device());
  switch (a.device().type) {
    case DeviceType::CPU: where_cpu(cond.expand(s), a.expand(s), b.expand(s), out); break;
    case DeviceType::CUDA: cuda::where(cond.expand(s), a.expand(s), b.expand(s), out); break;
  }
  return out;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  check_defined(mask, "masked_fill", "mask");
  HYDRA_CHECK(broadcast_shapes(x.shape(), mask.shape(), "masked_fill") == x.shape(),
              "masked_fill: mask of shape {} does not broadcast to the input shape {}", shape_str(mask.shape()),
              shape_str(x.shape()));
  return where(mask, scalar_tensor(value, x.dtype(), x.device()), x);
}

Tensor& binary_(BinaryOp op, Tensor& dst, const Tensor& src_in) {
  const char* name = binary_op_name(op);
  const Tensor src = dst.may_overlap(src_in) ? src_in.clone() : src_in;  // e.g. x[1:] += x[:-1]
  check_same_device(dst, src, name);
  check_same_dtype(dst, src, name);
  HYDRA_CHECK(broadcast_shapes(dst.shape(), src.shape(), name) == dst.shape(),
              "{}_: source of shape {} does not broadcast to the destination shape {}", name, shape_str(src.shape()),
              shape_str(dst.shape()));
  HYDRA_CHECK(!dst.has_expanded_dims(), "{}_: destination of shape {} has broadcast (stride-0) dims", name,
              shape_str(dst.shape()));
  switch (dst.device().type) {
    case DeviceType::CPU: binary_cpu(op, dst, src.expand(dst.shape()), dst); break;
    case DeviceType::CUDA: cuda::binary(op, dst, src.expand(dst.shape()), dst); break;
  }
  return dst;
}

Tensor& add_(Tensor& dst, const Tensor& src, double alpha) {
  if (alpha == 1.0) return add_(dst, src);
  return add_(dst, mul(src, alpha));
}

Tensor& mul_(Tensor& dst, double s) { return mul_(dst, scalar_tensor(s, dst.dtype(), dst.device())); }

}  // namespace hydra
