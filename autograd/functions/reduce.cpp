#include "autograd/functions/reduce.h"

#include <algorithm>

#include "autograd/function.h"
#include "tensor/ops/elementwise.h"

namespace hydra::ag {
namespace {

// x's shape with every reduced dim (empty dims = all) set to 1: the keepdim shape of the result.
Shape keep_shape(const Shape& x_shape, const std::vector<int64_t>& dims, const char* op) {
  const int64_t nd = static_cast<int64_t>(x_shape.size());
  Shape k = x_shape;
  if (dims.empty()) std::fill(k.begin(), k.end(), 1);
  for (int64_t d : dims)
    if (nd > 0) k[wrap_dim(d, nd, op)] = 1;
  return k;
}

// g (the reduced result's gradient) reshaped to the keepdim shape, so it broadcasts against x.
Tensor as_keepdim(const Tensor& g, const Shape& kshape) { return g.reshape(kshape); }

// sign(x) as x's dtype: 1, 0 or -1.
Tensor sign_of(const Tensor& x) {
  Tensor zero = scalar_tensor(0.0, x.dtype(), x.device());
  return hydra::sub(hydra::compare(CompareOp::Gt, x, zero).to(x.dtype()),
                    hydra::compare(CompareOp::Lt, x, zero).to(x.dtype()));
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// sum, mean

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor y = hydra::sum(x, dims, keepdim);
  if (!any_requires_grad({x})) return y;
  const Shape xs = x.shape(), ks = keep_shape(x.shape(), dims, "sum");
  record("sum", {x}, {y}, [xs, ks](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    return {as_keepdim(g[0], ks).expand(xs).contiguous()};
  });
  return y;
}

Tensor sum(const Tensor& x) { return ag::sum(x, {}, false); }

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor y = hydra::mean(x, dims, keepdim);
  if (!any_requires_grad({x})) return y;
  const Shape xs = x.shape(), ks = keep_shape(x.shape(), dims, "mean");
  const int64_t count = shape_numel(ks) == 0 ? 0 : x.numel() / shape_numel(ks);
  record("mean", {x}, {y}, [xs, ks, count](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    Tensor gx = as_keepdim(g[0], ks).expand(xs).contiguous();
    return {count == 0 ? gx : hydra::mul(gx, 1.0 / static_cast<double>(count))};  // count 0: x is empty
  });
  return y;
}

Tensor mean(const Tensor& x) { return ag::mean(x, {}, false); }

// ---------------------------------------------------------------------------------------------------------
// max, min

namespace {
ValuesIndices extreme(const Tensor& x, int64_t dim, bool keepdim, bool want_max) {
  ValuesIndices r = want_max ? hydra::max(x, dim, keepdim) : hydra::min(x, dim, keepdim);
  if (!any_requires_grad({x})) return r;
  const Shape xs = x.shape();
  const Tensor is = r.indices.detach();
  record(want_max ? "max" : "min", {x}, {r.values},
         [xs, is, dim, keepdim](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
           return {hydra::max_backward(g[0], is, xs, dim, keepdim)};
         });
  return r;
}

Tensor extreme_all(const Tensor& x, bool want_max) {
  Tensor y = want_max ? hydra::max(x) : hydra::min(x);
  if (!any_requires_grad({x})) return y;
  const Shape xs = x.shape();
  const Tensor flat_index = (want_max ? hydra::argmax(x) : hydra::argmin(x)).reshape({1});
  record(want_max ? "max" : "min", {x}, {y},
         [xs, flat_index](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
           return {hydra::max_backward(g[0].reshape({1}), flat_index, {shape_numel(xs)}, 0, true).reshape(xs)};
         });
  return y;
}
}  // namespace

ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim) { return extreme(x, dim, keepdim, true); }
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim) { return extreme(x, dim, keepdim, false); }
Tensor max(const Tensor& x) { return extreme_all(x, true); }
Tensor min(const Tensor& x) { return extreme_all(x, false); }

// ---------------------------------------------------------------------------------------------------------
// norm

Tensor norm(const Tensor& x, double p, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor y = hydra::norm(x, p, dims, keepdim);
  if (!any_requires_grad({x})) return y;
  const Shape ks = keep_shape(x.shape(), dims, "norm");
  const Tensor xs = x.detach(), ys = y.detach();
  record("norm", {x}, {y}, [xs, ys, ks, p](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    Tensor gk = as_keepdim(g[0], ks);
    if (p == 1.0) return {hydra::mul(sign_of(xs), gk)};
    // p = 2: dx = g·x/‖x‖, taken as 0 where ‖x‖ = 0 (the subgradient at the kink).
    Tensor nk = as_keepdim(ys, ks);
    Tensor zero = scalar_tensor(0.0, nk.dtype(), nk.device());
    Tensor scale = hydra::where(hydra::compare(CompareOp::Eq, nk, zero), zero, hydra::div(gk, nk));
    return {hydra::mul(xs, scale)};
  });
  return y;
}

Tensor norm(const Tensor& x, double p) { return ag::norm(x, p, {}, false); }

// ---------------------------------------------------------------------------------------------------------
// softmax, log_softmax, logsumexp

Tensor softmax(const Tensor& x, int64_t dim) {
  Tensor y = hydra::softmax(x, dim);
  if (!any_requires_grad({x})) return y;
  const Tensor ys = y.detach();
  record("softmax", {x}, {y}, [ys, dim](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    Tensor dot = hydra::sum(hydra::mul(g[0], ys), {dim}, /*keepdim=*/true);
    return {hydra::mul(ys, hydra::sub(g[0], dot))};
  });
  return y;
}

Tensor log_softmax(const Tensor& x, int64_t dim) {
  Tensor y = hydra::log_softmax(x, dim);
  if (!any_requires_grad({x})) return y;
  const Tensor ys = y.detach();
  record("log_softmax", {x}, {y}, [ys, dim](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    Tensor gsum = hydra::sum(g[0], {dim}, /*keepdim=*/true);
    return {hydra::sub(g[0], hydra::mul(hydra::exp(ys), gsum))};
  });
  return y;
}

Tensor logsumexp(const Tensor& x, int64_t dim, bool keepdim) {
  Tensor y = hydra::logsumexp(x, dim, keepdim);
  if (!any_requires_grad({x})) return y;
  const Shape ks = keep_shape(x.shape(), {dim}, "logsumexp");
  const Tensor xs = x.detach(), ys = y.detach();
  record("logsumexp", {x}, {y}, [xs, ys, ks](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    Tensor p = hydra::exp(hydra::sub(xs, as_keepdim(ys, ks)));
    return {hydra::mul(p, as_keepdim(g[0], ks))};
  });
  return y;
}

// ---------------------------------------------------------------------------------------------------------
// cumsum

Tensor cumsum(const Tensor& x, int64_t dim) {
  Tensor y = hydra::cumsum(x, dim);
  if (!any_requires_grad({x})) return y;
  record("cumsum", {x}, {y}, [dim](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    return {hydra::cumsum_backward(g[0], dim)};
  });
  return y;
}

// ---------------------------------------------------------------------------------------------------------
// topk

ValuesIndices topk(const Tensor& x, int64_t k, bool largest) {
  ValuesIndices r = hydra::topk(x, k, largest);
  if (!any_requires_grad({x})) return r;
  const Shape xs = x.shape();
  const Tensor is = r.indices.detach();
  record("topk", {x}, {r.values}, [xs, is](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    return {hydra::topk_backward(g[0], is, xs)};
  });
  return r;
}

}  // namespace hydra::ag
