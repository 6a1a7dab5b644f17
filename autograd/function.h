#pragma once
// FunctionNode: the node type of nearly every differentiable op. The op's backward is a lambda written right
// after its forward; it captures exactly what backward reads (detached aliases), and release_saved() drops the
// lambda and with it everything captured. Backward runs raw tensor/ ops (no double backward).
#include <functional>

#include "autograd/node.h"

namespace hydra::ag {

struct FunctionNode final : Node {
  using Fn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grad_outputs, const Node& self)>;
  FunctionNode(const char* name, Fn fn) : name_(name), fn_(std::move(fn)) {}
  const char* name() const override { return name_; }
  std::vector<Tensor> backward(const std::vector<Tensor>& g) override { return fn_(g, *this); }
  void release_saved() override { fn_ = nullptr; }

 private:
  const char* name_;
  Fn fn_;
};

// Records `outs` as made from `inputs` by op `name` with backward `fn` (call only when any_requires_grad).
inline void record(const char* name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outs,
                   FunctionNode::Fn fn) {
  connect(std::make_shared<FunctionNode>(name, std::move(fn)), inputs, outs);
}

}  // namespace hydra::ag
