// Differentiable gated delta rule (ag::gated_delta): the raw chunkwise forward, then one node whose backward is
// the hand-written chunkwise backward (gated_delta_cpu.cpp, or gated_delta_cuda.cu for CUDA tensors). The node
// saves the six inputs (detached aliases) and the chunk length; backward recomputes the per-chunk start states from
// them, so no per-token state is kept. Mixed dtypes on CUDA (bfloat16 q, k, v with float32 gates and state) need
// nothing special here: the final state is float32 there, so its incoming gradient g[1] is float32 too, and
// gated_delta_backward returns each gradient in its input's dtype. Its reference is the composed token loop of
// gated_delta_ref.cpp.
#include "autograd/function.h"
#include "hydra/mixers/gated_delta/gated_delta.h"

namespace hydra::ag {

GatedDeltaOutput gated_delta(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& alpha,
                             const Tensor& beta, const Tensor& initial_state, int64_t chunk) {
  GatedDeltaOutput out = hydra::gated_delta_forward(q, k, v, alpha, beta, initial_state, chunk);
  if (!any_requires_grad({q, k, v, alpha, beta, initial_state})) return out;
  const Tensor qs = q.detach(), ks = k.detach(), vs = v.detach(), as = alpha.detach(), bs = beta.detach();
  const Tensor ss = initial_state.defined() ? initial_state.detach() : Tensor();
  record("gated_delta", {q, k, v, alpha, beta, initial_state}, {out.o, out.final_state},
         [qs, ks, vs, as, bs, ss, chunk](const std::vector<Tensor>& g, const Node& self) -> std::vector<Tensor> {
           // g[1] (the final state's gradient) is zeros when the final state did not reach the loss.
           GatedDeltaGrads gr = hydra::gated_delta_backward(g[0], g[1], qs, ks, vs, as, bs, ss, chunk);
           auto keep = [&](std::size_t i, const Tensor& t) { return self.needs_input_grad(i) ? t : Tensor(); };
           return {keep(0, gr.dq),     keep(1, gr.dk),     keep(2, gr.dv),
                   keep(3, gr.dalpha), keep(4, gr.dbeta), keep(5, gr.dinitial_state)};
         });
  return out;
}

}  // namespace hydra::ag
