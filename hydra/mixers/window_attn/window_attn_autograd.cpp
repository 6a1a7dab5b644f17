// Differentiable windowed attention: the raw forward, then one node whose backward calls the raw backward
// (window_attn.h). The node saves q, k, v, o and lse (detached aliases; lse is float32 on CUDA and is handed back to
// the backward as the forward returned it).
#include "autograd/function.h"
#include "hydra/mixers/window_attn/window_attn.h"

namespace hydra::ag {

Tensor window_attn(const Tensor& q, const Tensor& k, const Tensor& v, int64_t window, double scale) {
  WindowAttnOutput out = hydra::window_attn_forward(q, k, v, window, scale);
  if (!ag::any_requires_grad({q, k, v})) return out.o;
  const Tensor qs = q.detach(), ks = k.detach(), vs = v.detach(), os = out.o.detach(), lse = out.lse;
  ag::record("window_attn", {q, k, v}, {out.o},
             [qs, ks, vs, os, lse, window, scale](const std::vector<Tensor>& g, const Node& self) -> std::vector<Tensor> {
               // The backward kernel produces all three gradients in its two passes; unneeded ones are dropped.
               WindowAttnGrads gr = hydra::window_attn_backward(g[0], qs, ks, vs, os, lse, window, scale);
               return {self.needs_input_grad(0) ? gr.dq : Tensor(), self.needs_input_grad(1) ? gr.dk : Tensor(),
                       self.needs_input_grad(2) ? gr.dv : Tensor()};
             });
  return out.o;
}

}  // namespace hydra::ag
