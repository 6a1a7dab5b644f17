// Differentiable fused ops: raw forward, then a node whose backward calls the raw fused backward.
#include "autograd/functions/fused.h"

#include "autograd/function.h"

namespace hydra::ag {

Tensor rms_norm(const Tensor& x, const Tensor& w, double eps, std::optional<DType> out_dtype) {
  RmsNormOutput out = hydra::rms_norm_forward(x, w, eps, out_dtype);
  if (!any_requires_grad({x, w})) return out.y;
  const Tensor xs = x.detach(), ws = w.detach(), rs = out.rstd;  // rstd is internal: no autograd record
  record("rms_norm", {x, w}, {out.y},
         [xs, ws, rs](const std::vector<Tensor>& g, const Node& self) -> std::vector<Tensor> {
           RmsNormGrads gr = hydra::rms_norm_backward(g[0], xs, ws, rs);
           return {self.needs_input_grad(0) ? gr.dx : Tensor(), self.needs_input_grad(1) ? gr.dw : Tensor()};
         });
  return out.y;
}

Tensor add_cast(const Tensor& x, const Tensor& y) {
  Tensor out = hydra::add_cast(x, y);
  if (!any_requires_grad({x, y})) return out;
  const DType yt = y.dtype();
  record("add_cast", {x, y}, {out}, [yt](const std::vector<Tensor>& g, const Node& self) -> std::vector<Tensor> {
    return {self.needs_input_grad(0) ? g[0] : Tensor(),
            self.needs_input_grad(1) ? (g[0].dtype() == yt ? g[0] : g[0].to(yt)) : Tensor()};
  });
  return out;
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  CrossEntropyOutput out = hydra::cross_entropy_forward(logits, targets, ignore_index);
  if (!any_requires_grad({logits})) return out.loss;
  const Tensor ls = logits.detach(), ts = targets.detach(), lse = out.lse;
  record("cross_entropy", {logits}, {out.loss},
         [ls, ts, lse, ignore_index](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
           return {hydra::cross_entropy_backward(g[0], ls, ts, lse, ignore_index)};
         });
  return out.loss;
}

Tensor l2_normalize(const Tensor& x, double eps) {
  L2NormalizeOutput out = hydra::l2_normalize_forward(x, eps);
  if (!any_requires_grad({x})) return out.y;
  const Tensor ys = out.y.detach(), ns = out.norm;
  record("l2_normalize", {x}, {out.y}, [ys, ns, eps](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    return {hydra::l2_normalize_backward(g[0], ys, ns, eps)};
  });
  return out.y;
}

Tensor rotary(const Tensor& x, int64_t position_offset, double base) {
  Tensor y = hydra::rotary_forward(x, position_offset, base);
  if (!any_requires_grad({x})) return y;
  record("rotary", {x}, {y}, [position_offset, base](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    return {hydra::rotary_backward(g[0], position_offset, base)};
  });
  return y;
}

Tensor swiglu(const Tensor& u) {
  Tensor y = hydra::swiglu_forward(u);
  if (!any_requires_grad({u})) return y;
  const Tensor us = u.detach();
  record("swiglu", {u}, {y}, [us](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    return {hydra::swiglu_backward(g[0], us)};
  });
  return y;
}

CausalConv1dOutput causal_conv1d(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& cache) {
  CausalConv1dOutput out = hydra::causal_conv1d_forward(x, w, bias, cache);
  if (!any_requires_grad({x, w, bias, cache})) return out;
  const Tensor xs = x.detach(), ws = w.detach();
  const Tensor cs = cache.defined() ? cache.detach() : Tensor();
  const bool has_bias = bias.defined();
  std::vector<Tensor> outs{out.y};
  if (out.new_cache.defined()) outs.push_back(out.new_cache);
  record("causal_conv1d", {x, w, bias, cache}, outs,
         [xs, ws, cs, has_bias](const std::vector<Tensor>& g, const Node& self) -> std::vector<Tensor> {
           const Tensor gnc = g.size() > 1 ? g[1] : Tensor();
           CausalConv1dGrads gr = hydra::causal_conv1d_backward(g[0], gnc, xs, ws, cs, has_bias);
           if (!gr.dcache.defined() && cs.defined()) gr.dcache = zeros_like(cs);  // K = 1: an empty (B, C, 0) cache
           return {self.needs_input_grad(0) ? gr.dx : Tensor(), self.needs_input_grad(1) ? gr.dw : Tensor(),
                   self.needs_input_grad(2) ? gr.dbias : Tensor(), self.needs_input_grad(3) ? gr.dcache : Tensor()};
         });
  return out;
}

}  // namespace hydra::ag
