#include "autograd/functions/basic.h"

#include "autograd/function.h"
#include "tensor/ops/reduce.h"

namespace hydra::ag {

// ---------------------------------------------------------------------------------------------------------
// elementwise

Tensor unary(UnaryOp op, const Tensor& x) {
  Tensor y = hydra::unary(op, x);
  if (!any_requires_grad({x})) return y;
  const Tensor xs = x.detach(), ys = y.detach();
  record(unary_op_name(op), {x}, {y}, [op, xs, ys](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    const Tensor& go = g[0];
    switch (op) {
      case UnaryOp::Neg: return {hydra::neg(go)};
      case UnaryOp::Exp: return {hydra::mul(go, ys)};
      case UnaryOp::Log: return {hydra::div(go, xs)};
      case UnaryOp::Sqrt: return {hydra::div(hydra::mul(go, 0.5), ys)};
      case UnaryOp::Rsqrt: return {hydra::mul(go, hydra::mul(hydra::pow(ys, 3.0), -0.5))};
      case UnaryOp::Sigmoid: return {hydra::mul(go, hydra::mul(ys, hydra::sub(scalar_tensor(1.0, ys.dtype(), ys.device()), ys)))};
      case UnaryOp::Silu: return {hydra::unary_backward(UnaryOp::Silu, go, xs)};  // one fused pass
      case UnaryOp::Tanh: return {hydra::mul(go, hydra::sub(scalar_tensor(1.0, ys.dtype(), ys.device()), hydra::square(ys)))};
      case UnaryOp::Relu:
        return {hydra::where(hydra::compare(CompareOp::Gt, xs, scalar_tensor(0.0, xs.dtype(), xs.device())), go,
                             scalar_tensor(0.0, go.dtype(), go.device()))};
      case UnaryOp::Abs: {
        Tensor zero = scalar_tensor(0.0, xs.dtype(), xs.device());
        Tensor sign = hydra::sub(hydra::compare(CompareOp::Gt, xs, zero).to(xs.dtype()),
                                 hydra::compare(CompareOp::Lt, xs, zero).to(xs.dtype()));
        return {hydra::mul(go, sign)};
      }
      case UnaryOp::Square: return {hydra::mul(go, hydra::mul(xs, 2.0))};
      case UnaryOp::Reciprocal: return {hydra::neg(hydra::mul(go, hydra::square(ys)))};
      case UnaryOp::Sin: return {hydra::mul(go, hydra::cos(xs))};
      case UnaryOp::Cos: return {hydra::neg(hydra::mul(go, hydra::sin(xs)))};
    }
    HYDRA_CHECK(false, "{}: no backward", unary_op_name(op));
  });
  return y;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  Tensor y = hydra::binary(op, a, b);
  if (!any_requires_grad({a, b})) return y;
  const Tensor as = a.detach(), bs = b.detach(), ys = y.detach();
  record(binary_op_name(op), {a, b}, {y},
         [op, as, bs, ys](const std::vector<Tensor>& g, const Node& self) -> std::vector<Tensor> {
           const Tensor& go = g[0];
           const bool na = self.needs_input_grad(0), nb = self.needs_input_grad(1);
           Tensor ga, gb;
           switch (op) {
             case BinaryOp::Add:
               ga = go;
               gb = go;
               break;
             case BinaryOp::Sub:
               ga = go;
               if (nb) gb = hydra::neg(go);
               break;
             case BinaryOp::Mul:
               if (na) ga = hydra::mul(go, bs);
               if (nb) gb = hydra::mul(go, as);
               break;
             case BinaryOp::Div:
               if (na) ga = hydra::div(go, bs);
               if (nb) gb = hydra::neg(hydra::div(hydra::mul(go, ys), bs));
               break;
             case BinaryOp::Pow:
               if (na) ga = hydra::mul(go, hydra::mul(bs, hydra::pow(as, hydra::sub(bs, 1.0))));
               if (nb) gb = hydra::mul(go, hydra::mul(ys, hydra::log(as)));
               break;
             case BinaryOp::Maximum:
             case BinaryOp::Minimum: {
               // The chosen side gets the gradient; on ties each side gets half.
               const CompareOp wins = op == BinaryOp::Maximum ? CompareOp::Gt : CompareOp::Lt;
               Tensor half = hydra::mul(go, 0.5);
               Tensor zero = scalar_tensor(0.0, go.dtype(), go.device());
               Tensor tie = hydra::compare(CompareOp::Eq, as, bs);
               if (na) ga = hydra::where(hydra::compare(wins, as, bs), go, hydra::where(tie, half, zero));
               if (nb) gb = hydra::where(hydra::compare(wins, bs, as), go, hydra::where(tie, half, zero));
               break;
             }
           }
           return {na ? sum_to(ga, as.shape()) : Tensor(), nb ? sum_to(gb, bs.shape()) : Tensor()};
         });
  return y;
}

Tensor add(const Tensor& x, double s) { return ag::add(x, scalar_tensor(s, x.dtype(), x.device())); }
Tensor sub(const Tensor& x, double s) { return ag::sub(x, scalar_tensor(s, x.dtype(), x.device())); }
Tensor mul(const Tensor& x, double s) { return ag::mul(x, scalar_tensor(s, x.dtype(), x.device())); }
Tensor div(const Tensor& x, double s) { return ag::div(x, scalar_tensor(s, x.dtype(), x.device())); }
Tensor pow(const Tensor& x, double e) { return ag::pow(x, scalar_tensor(e, x.dtype(), x.device())); }

Tensor clamp(const Tensor& x, double lo, double hi) {
  Tensor y = hydra::clamp(x, lo, hi);
  if (!any_requires_grad({x})) return y;
  const Tensor xs = x.detach();
  record("clamp", {x}, {y}, [xs, lo, hi](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    Tensor inside = hydra::mul(hydra::compare(CompareOp::Ge, xs, scalar_tensor(lo, xs.dtype(), xs.device())).to(xs.dtype()),
                               hydra::compare(CompareOp::Le, xs, scalar_tensor(hi, xs.dtype(), xs.device())).to(xs.dtype()));
    return {hydra::mul(g[0], inside)};
  });
  return y;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Tensor y = hydra::where(cond, a, b);
  if (!any_requires_grad({a, b})) return y;
  const Tensor cs = cond.detach();
  const Shape sa = a.shape(), sb = b.shape();
  record("where", {a, b}, {y}, [cs, sa, sb](const std::vector<Tensor>& g, const Node& self) -> std::vector<Tensor> {
    Tensor zero = scalar_tensor(0.0, g[0].dtype(), g[0].device());
    Tensor ga = self.needs_input_grad(0) ? sum_to(hydra::where(cs, g[0], zero), sa) : Tensor();
    Tensor gb = self.needs_input_grad(1) ? sum_to(hydra::where(cs, zero, g[0]), sb) : Tensor();
    return {ga, gb};
  });
  return y;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  Tensor y = hydra::masked_fill(x, mask, value);
  if (!any_requires_grad({x})) return y;
  const Tensor ms = mask.detach();
  record("masked_fill", {x}, {y}, [ms](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    return {hydra::masked_fill(g[0], ms, 0.0)};
  });
  return y;
}

// ---------------------------------------------------------------------------------------------------------
// matmul: C = op(A)·op(B);  dop(A) = dC·op(B)ᵀ, dop(B) = op(A)ᵀ·dC, transposed back when the input was.

Tensor matmul(const Tensor& a, const Tensor& b, Trans ta, Trans tb) {
  Tensor y = hydra::matmul(a, b, ta, tb);
  if (!any_requires_grad({a, b})) return y;
  const Tensor as = a.detach(), bs = b.detach();
  record("matmul", {a, b}, {y}, [as, bs, ta, tb](const std::vector<Tensor>& g, const Node& self) -> std::vector<Tensor> {
    const Tensor& gc = g[0];
    const Trans flip_a = ta == Trans::Yes ? Trans::No : Trans::Yes;
    const Trans flip_b = tb == Trans::Yes ? Trans::No : Trans::Yes;
    Tensor ga, gb;
    if (self.needs_input_grad(0))
      ga = sum_to(ta == Trans::No ? hydra::matmul(gc, bs, Trans::No, flip_b) : hydra::matmul(bs, gc, tb, Trans::Yes),
                  as.shape());
    if (self.needs_input_grad(1))
      gb = sum_to(tb == Trans::No ? hydra::matmul(as, gc, flip_a, Trans::No) : hydra::matmul(gc, as, Trans::Yes, ta),
                  bs.shape());
    return {ga, gb};
  });
  return y;
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  Tensor y = hydra::linear(x, w, bias);
  if (!any_requires_grad({x, w, bias})) return y;
  const Tensor xs = x.detach(), ws = w.detach();
  std::vector<Tensor> inputs = {x, w};
  if (bias.defined()) inputs.push_back(bias);
  record("linear", inputs, {y}, [xs, ws](const std::vector<Tensor>& g, const Node& self) -> std::vector<Tensor> {
    const int64_t in = ws.size(1), out = ws.size(0);
    const Tensor g2 = g[0].reshape({-1, out});
    std::vector<Tensor> grads(self.next.size());
    if (self.needs_input_grad(0)) grads[0] = hydra::matmul(g2, ws).view(xs.shape());
    if (self.needs_input_grad(1)) grads[1] = hydra::matmul(g2, xs.reshape({-1, in}), Trans::Yes, Trans::No);
    if (grads.size() > 2 && self.needs_input_grad(2)) grads[2] = hydra::sum(g2, {0});
    return grads;
  });
  return y;
}

// ---------------------------------------------------------------------------------------------------------
// views

namespace {
// Backward of an op that reads a sub-block of x: the gradient scattered into zeros of x's shape.
Tensor scatter_back(const Shape& shape, DType dtype, const Device& dev, const Tensor& g,
                    const std::function<Tensor(const Tensor&)>& take) {
  Tensor z = zeros(shape, dtype, dev);
  take(z).copy_(g);
  return z;
}
}  // namespace

Tensor reshape(const Tensor& x, const Shape& shape) {
  Tensor y = x.reshape(shape);
  if (y.is_same(x)) y = x.detach();  // a fresh handle carries the new record
  if (!any_requires_grad({x})) return y;
  const Shape sx = x.shape();
  record("reshape", {x}, {y}, [sx](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    return {g[0].reshape(sx)};
  });
  return y;
}

Tensor view(const Tensor& x, const Shape& shape) {
  x.view(shape);  // validates: view never copies
  return ag::reshape(x, shape);
}

Tensor flatten(const Tensor& x, int64_t start, int64_t end) { return ag::reshape(x, x.flatten(start, end).shape()); }

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  Tensor y = x.transpose(d0, d1);
  if (!any_requires_grad({x})) return y;
  record("transpose", {x}, {y}, [d0, d1](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    return {g[0].transpose(d0, d1)};
  });
  return y;
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  Tensor y = x.permute(dims);
  if (!any_requires_grad({x})) return y;
  std::vector<int64_t> inv(dims.size());
  for (std::size_t i = 0; i < dims.size(); ++i) inv[wrap_dim(dims[i], x.shape(), "permute")] = static_cast<int64_t>(i);
  record("permute", {x}, {y}, [inv](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    return {g[0].permute(inv)};
  });
  return y;
}

Tensor expand(const Tensor& x, const Shape& shape) {
  Tensor y = x.expand(shape);
  if (!any_requires_grad({x})) return y;
  const Shape sx = x.shape();
  record("expand", {x}, {y}, [sx](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    return {sum_to(g[0], sx)};
  });
  return y;
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  Tensor y = x.slice(dim, start, end, step);
  if (!any_requires_grad({x})) return y;
  const Shape sx = x.shape();
  const DType dt = x.dtype();
  const Device dev = x.device();
  record("slice", {x}, {y}, [=](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    return {scatter_back(sx, dt, dev, g[0], [&](const Tensor& z) { return z.slice(dim, start, end, step); })};
  });
  return y;
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  x.narrow(dim, start, length);  // validates the range
  return ag::slice(x, dim, start, start + length);
}

Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  Tensor y = x.select(dim, index);
  if (!any_requires_grad({x})) return y;
  const Shape sx = x.shape();
  const DType dt = x.dtype();
  const Device dev = x.device();
  record("select", {x}, {y}, [=](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    return {scatter_back(sx, dt, dev, g[0], [&](const Tensor& z) { return z.select(dim, index); })};
  });
  return y;
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  Tensor y = x.unsqueeze(dim);
  if (!any_requires_grad({x})) return y;
  const Shape sx = x.shape();
  record("unsqueeze", {x}, {y}, [sx](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    return {g[0].reshape(sx)};
  });
  return y;
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  Tensor y = x.squeeze(dim);
  if (!any_requires_grad({x})) return y;
  const Shape sx = x.shape();
  record("squeeze", {x}, {y}, [sx](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    return {g[0].reshape(sx)};
  });
  return y;
}

Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  Tensor y = x.contiguous();
  if (!any_requires_grad({x})) return y;
  record("contiguous", {x}, {y}, [](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    return {g[0]};
  });
  return y;
}

Tensor to(const Tensor& x, DType dtype) {
  if (dtype == x.dtype()) return x;
  Tensor y = x.to(dtype);
  if (!any_requires_grad({x})) return y;
  const DType from = x.dtype();
  record("to", {x}, {y}, [from](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    return {g[0].to(from)};
  });
  return y;
}

}  // namespace hydra::ag
