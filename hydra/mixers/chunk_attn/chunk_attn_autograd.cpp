// Differentiable top-k chunk attention: the raw forward, then one node whose backward is chunk_attn_backward.
// idx is a constant of the node (never a graph input); bias is an input when defined.
#include "autograd/function.h"
#include "hydra/mixers/chunk_attn/chunk_attn.h"

namespace hydra::ag {

Tensor chunk_attn(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& idx, const Tensor& bias,
                  int64_t chunk, double scale) {
  ChunkAttnOutput out = hydra::chunk_attn_forward(q, k, v, idx, bias, chunk, scale);
  if (!any_requires_grad({q, k, v, bias})) return out.o;
  const Tensor qs = q.detach(), ks = k.detach(), vs = v.detach(), is = idx.detach();
  const Tensor bs = bias.defined() ? bias.detach() : Tensor();
  const Tensor os = out.o.detach(), lse = out.lse;  // lse is internal: no autograd record
  record("chunk_attn", {q, k, v, bias}, {out.o},
         [qs, ks, vs, is, bs, os, lse, chunk, scale](const std::vector<Tensor>& g,
                                                     const Node& self) -> std::vector<Tensor> {
           ChunkAttnGrads gr = hydra::chunk_attn_backward(g[0], qs, ks, vs, is, bs, os, lse, chunk, scale);
           return {self.needs_input_grad(0) ? gr.dq : Tensor(), self.needs_input_grad(1) ? gr.dk : Tensor(),
                   self.needs_input_grad(2) ? gr.dv : Tensor(), self.needs_input_grad(3) ? gr.dbias : Tensor()};
         });
  return out.o;
}

}  // namespace hydra::ag
