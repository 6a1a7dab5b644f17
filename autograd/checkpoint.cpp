// Activation recomputation (checkpoint.h).
#include "autograd/checkpoint.h"

#include "autograd/function.h"
#include "autograd/node.h"

namespace hydra::ag {

std::vector<Tensor> checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs) {
  if (!grad_enabled()) return fn(inputs);
  std::vector<Tensor> saved;
  for (const Tensor& x : inputs) saved.push_back(x.defined() ? x.detach() : x);
  std::vector<Tensor> outs;
  {
    NoGradGuard no_grad;
    outs = fn(saved);
  }
  for (Tensor& o : outs) o = o.detach();  // fresh handles carry the record
  // The node is recorded even when no input requires grad: the tensors fn reads (parameters) may.
  record("checkpoint", inputs, outs, [fn, saved](const std::vector<Tensor>& g, const Node& self) -> std::vector<Tensor> {
    EnableGradGuard enable;
    std::vector<Tensor> leaves;
    for (std::size_t i = 0; i < saved.size(); ++i) {
      Tensor x = saved[i].defined() ? saved[i].detach() : saved[i];
      if (x.defined() && is_floating(x.dtype()) && self.needs_input_grad(i)) set_requires_grad(x);
      leaves.push_back(x);
    }
    const std::vector<Tensor> re = fn(leaves);
    std::vector<Tensor> roots, grads;
    for (std::size_t i = 0; i < re.size() && i < g.size(); ++i)
      if (re[i].defined() && requires_grad(re[i])) roots.push_back(re[i]), grads.push_back(g[i]);
    if (!roots.empty()) backward(roots, grads);
    std::vector<Tensor> gin(self.next.size());
    for (std::size_t i = 0; i < gin.size(); ++i)
      if (self.needs_input_grad(i)) gin[i] = grad(leaves[i]);
    return gin;
  });
  return outs;
}

}  // namespace hydra::ag
