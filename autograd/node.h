#pragma once
// The autograd record. A tensor that takes part in autograd carries an AutogradMeta (in tensor/'s opaque slot):
// requires_grad, the node that produced it (grad_fn, output_nr) or, for a leaf, its accumulated .grad.
//
// A Node is one recorded op: `next` holds one Edge per input (the producing node and which of its outputs the
// input was; a null node when that input needs no gradient), `outputs` the shape/dtype/device of each output.
// backward() receives one gradient per output (zeros where none arrived) and returns one per input (undefined
// where not needed). Nodes save only what backward reads, always as detached aliases (never an output's own
// handle, which would make a cycle through its grad_fn), and drop it in release_saved().
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor_core.h"

namespace hydra {

namespace ag {
struct Node;
}

struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;                              // leaves: the accumulated gradient (undefined until the first backward)
  std::shared_ptr<ag::Node> grad_fn;        // non-leaves: the node that made this tensor
  int output_nr = 0;                        // which output of grad_fn
  std::weak_ptr<ag::Node> grad_accumulator;  // leaves: the AccumulateGrad node, shared by all graphs using it
};

namespace ag {

struct Edge {
  std::shared_ptr<Node> node;  // null: this input does not need a gradient
  int input_nr = 0;            // the output of `node` that the gradient is for
};

struct OutputInfo {
  Shape shape;
  DType dtype;
  Device device;
};

struct Node {
  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  Node(Node&&) = delete;
  Node& operator=(Node&&) = delete;
  virtual ~Node();  // tears down long chains iteratively (no recursion through shared_ptr destructors)

  virtual const char* name() const = 0;
  virtual std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs) = 0;
  virtual void release_saved() {}

  bool needs_input_grad(std::size_t i) const { return i < next.size() && next[i].node != nullptr; }

  std::vector<Edge> next;
  std::vector<OutputInfo> outputs;
  bool released = false;
};

// The sink node of a leaf: adds the incoming gradient into the leaf's .grad (checking shape, dtype, device).
struct AccumulateGrad final : Node {
  explicit AccumulateGrad(std::shared_ptr<AutogradMeta> leaf) : leaf(std::move(leaf)) {}
  const char* name() const override { return "AccumulateGrad"; }
  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs) override;
  std::shared_ptr<AutogradMeta> leaf;
};

// ---- gradient mode (thread-local) ----
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};
class EnableGradGuard {
 public:
  EnableGradGuard();
  ~EnableGradGuard();
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool prev_;
};

// ---- per-tensor autograd state ----
// Marks a leaf as requiring a gradient (throws for a non-leaf; non-floating tensors cannot require grad).
const Tensor& set_requires_grad(const Tensor& t, bool value = true);
bool requires_grad(const Tensor& t);
bool is_leaf(const Tensor& t);                   // no grad_fn
Tensor grad(const Tensor& t);                    // a leaf's accumulated gradient (undefined before backward)
void set_grad(const Tensor& t, const Tensor& g);  // replaces (or, with an undefined g, clears) it
void zero_grad(const Tensor& t);                 // clears it
std::shared_ptr<Node> grad_fn(const Tensor& t);

// ---- recording (used by the differentiable ops) ----
// True when grad mode is on and some input requires grad: only then is a node recorded.
bool any_requires_grad(std::initializer_list<Tensor> inputs);
bool any_requires_grad(const std::vector<Tensor>& inputs);
Edge gradient_edge(const Tensor& t);
// Sets node->next from the inputs, appends each output's info to node->outputs and makes the outputs point at
// the node. Outputs must be fresh tensors (or fresh views) without autograd records.
void connect(const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outs);

// ---- the engine ----
// Runs the graph above `roots` once in reverse topological order. `grads` holds one upstream gradient per
// root (may be empty for a one-element root, meaning 1). Gradients accumulate into the leaves' .grad.
// Unless retain_graph, every node's saved tensors are freed afterwards and a second backward through the same
// nodes throws.
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads = {}, bool retain_graph = false);
void backward(const Tensor& root, const Tensor& grad = Tensor(), bool retain_graph = false);

}  // namespace ag
}  // namespace hydra
