#include "autograd/node.h"

#include <unordered_map>
#include <unordered_set>

#include "autograd/profile.h"
#include "tensor/ops/elementwise.h"

namespace hydra::ag {

// ---------------------------------------------------------------------------------------------------------
// teardown: a graph built by a token-by-token loop is thousands of nodes deep; destroying it through nested
// shared_ptr destructors would overflow the stack. Each destructor hands the children it solely owns to a
// thread-local list, and only the outermost destructor drains that list.

Node::~Node() {
  thread_local std::vector<std::shared_ptr<Node>> pending;
  thread_local bool draining = false;
  for (Edge& e : next)
    if (e.node && e.node.use_count() == 1) pending.push_back(std::move(e.node));
  if (draining) return;
  draining = true;
  while (!pending.empty()) {
    std::shared_ptr<Node> n = std::move(pending.back());
    pending.pop_back();
    n.reset();  // may push more onto `pending`
  }
  draining = false;
}

std::vector<Tensor> AccumulateGrad::backward(const std::vector<Tensor>& grad_outputs) {
  const Tensor& g = grad_outputs.at(0);
  const OutputInfo& want = outputs.at(0);
  HYDRA_CHECK(g.shape() == want.shape && g.dtype() == want.dtype && g.device() == want.device,
              "backward: gradient {} {} on {} does not match the leaf tensor {} {} on {}", dtype_name(g.dtype()),
              shape_str(g.shape()), g.device(), dtype_name(want.dtype), shape_str(want.shape), want.device);
  if (!leaf->grad.defined()) {
    // The engine drops grad_outputs after this call. When nothing else refers to g's buffer (this handle and its
    // storage are referenced once, no autograd record) and g spans the whole buffer, the leaf takes g as is: one
    // copy of every parameter gradient less per backward. Otherwise a fresh copy, so that a later in-place
    // accumulation into leaf->grad cannot write into a tensor someone else holds.
    const bool sole = g.impl_ptr().use_count() == 1 && g.storage().use_count() == 1 && !g.autograd_meta() &&
                      g.offset() == 0 && g.is_contiguous() &&
                      g.storage()->nbytes() == static_cast<std::size_t>(g.numel()) * g.element_size();
    leaf->grad = sole ? g : g.contiguous().is_same(g) ? g.clone() : g.contiguous();
  } else {
    add_(leaf->grad, g);
  }
  return {};
}

// ---------------------------------------------------------------------------------------------------------
// grad mode

namespace {
thread_local bool g_grad_enabled = true;
}
bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = prev_; }
EnableGradGuard::EnableGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = true; }
EnableGradGuard::~EnableGradGuard() { g_grad_enabled = prev_; }

// ---------------------------------------------------------------------------------------------------------
// per-tensor state

const Tensor& set_requires_grad(const Tensor& t, bool value) {
  HYDRA_CHECK(t.defined(), "set_requires_grad: undefined tensor");
  auto meta = t.autograd_meta();
  HYDRA_CHECK(!meta || !meta->grad_fn, "set_requires_grad: only leaf tensors can be marked; this {} tensor was "
              "produced by {} (detach() it first)", shape_str(t.shape()), meta ? meta->grad_fn->name() : "");
  if (value)
    HYDRA_CHECK(is_floating(t.dtype()), "set_requires_grad: only floating tensors can require grad (got {} {})",
                dtype_name(t.dtype()), shape_str(t.shape()));
  if (!meta) {
    if (!value) return t;
    meta = std::make_shared<AutogradMeta>();
    t.set_autograd_meta(meta);
  }
  meta->requires_grad = value;
  return t;
}

bool requires_grad(const Tensor& t) {
  return t.defined() && t.autograd_meta() && t.autograd_meta()->requires_grad;
}
bool is_leaf(const Tensor& t) { return !t.autograd_meta() || !t.autograd_meta()->grad_fn; }

Tensor grad(const Tensor& t) {
  auto& m = t.autograd_meta();
  return m ? m->grad : Tensor();
}

void set_grad(const Tensor& t, const Tensor& g) {
  auto m = t.autograd_meta();
  HYDRA_CHECK(m, "set_grad: tensor {} takes no part in autograd", shape_str(t.shape()));
  if (g.defined())
    HYDRA_CHECK(g.shape() == t.shape() && g.dtype() == t.dtype() && g.device() == t.device(),
                "set_grad: gradient {} {} does not match tensor {} {}", dtype_name(g.dtype()), shape_str(g.shape()),
                dtype_name(t.dtype()), shape_str(t.shape()));
  m->grad = g;
}

void zero_grad(const Tensor& t) {
  if (auto& m = t.autograd_meta()) m->grad = Tensor();
}

std::shared_ptr<Node> grad_fn(const Tensor& t) {
  auto& m = t.autograd_meta();
  return m ? m->grad_fn : nullptr;
}

// ---------------------------------------------------------------------------------------------------------
// recording

bool any_requires_grad(std::initializer_list<Tensor> inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (requires_grad(t)) return true;
  return false;
}
bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (requires_grad(t)) return true;
  return false;
}

Edge gradient_edge(const Tensor& t) {
  if (!requires_grad(t)) return {};
  const auto& m = t.autograd_meta();
  if (m->grad_fn) return {m->grad_fn, m->output_nr};
  std::shared_ptr<Node> acc = m->grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(m);
    acc->outputs.push_back({t.shape(), t.dtype(), t.device()});
    m->grad_accumulator = acc;
  }
  return {acc, 0};
}

void connect(const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outs) {
  node->next.clear();
  for (const Tensor& t : inputs) node->next.push_back(gradient_edge(t));
  for (std::size_t i = 0; i < outs.size(); ++i) {
    const Tensor& o = outs[i];
    node->outputs.push_back({o.shape(), o.dtype(), o.device()});
    auto meta = std::make_shared<AutogradMeta>();
    meta->requires_grad = true;
    meta->grad_fn = node;
    meta->output_nr = static_cast<int>(i);
    o.set_autograd_meta(std::move(meta));
  }
}

// ---------------------------------------------------------------------------------------------------------
// engine

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph) {
  HYDRA_CHECK(grads.empty() || grads.size() == roots.size(), "backward: {} roots but {} gradients", roots.size(),
              grads.size());
  // Seed gradients per (node, output).
  std::unordered_map<Node*, std::vector<Tensor>> buffer;
  std::unordered_map<Node*, std::shared_ptr<Node>> keep;  // holds nodes alive while the engine runs
  auto deposit = [&](const Edge& e, const Tensor& g) {
    auto& slot = buffer[e.node.get()];
    if (slot.empty()) slot.resize(e.node->outputs.size());
    const OutputInfo& info = e.node->outputs.at(e.input_nr);
    HYDRA_CHECK(g.shape() == info.shape && g.dtype() == info.dtype && g.device() == info.device,
                "backward: node {} produced a gradient {} {} on {} for an input of {} {} on {}", e.node->name(),
                dtype_name(g.dtype()), shape_str(g.shape()), g.device(), dtype_name(info.dtype),
                shape_str(info.shape), info.device);
    Tensor& s = slot[e.input_nr];
    s = s.defined() ? add(s, g) : g;
  };
  std::vector<std::shared_ptr<Node>> starts;
  for (std::size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    HYDRA_CHECK(requires_grad(r), "backward: root {} (shape {}) does not require grad; nothing to differentiate", i,
                shape_str(r.shape()));
    Tensor g = grads.empty() ? Tensor() : grads[i];
    if (!g.defined()) {
      HYDRA_CHECK(r.numel() == 1, "backward: root {} has shape {}; give its upstream gradient explicitly", i,
                  shape_str(r.shape()));
      g = ones(r.shape(), r.dtype(), r.device());
    }
    Edge e = gradient_edge(r);
    deposit(e, g);
    starts.push_back(e.node);
  }
  // Dependencies: how many edges from nodes of this graph point at each node (iterative DFS).
  std::unordered_map<Node*, int> deps;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack;
  for (auto& s : starts) {
    keep[s.get()] = s;
    if (seen.insert(s.get()).second) stack.push_back(s.get());
  }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next) {
      if (!e.node) continue;
      deps[e.node.get()] += 1;
      if (seen.insert(e.node.get()).second) {
        keep[e.node.get()] = e.node;
        stack.push_back(e.node.get());
      }
    }
  }
  std::vector<Node*> ready;
  for (Node* n : seen)
    if (deps[n] == 0) ready.push_back(n);
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    HYDRA_CHECK(!n->released, "backward: node {} was already run and its saved tensors freed; pass retain_graph=true "
                "to the first backward to run it twice", n->name());
    std::vector<Tensor> gout = std::move(buffer[n]);
    buffer.erase(n);
    gout.resize(n->outputs.size());
    for (std::size_t i = 0; i < gout.size(); ++i)
      if (!gout[i].defined()) gout[i] = zeros(n->outputs[i].shape, n->outputs[i].dtype, n->outputs[i].device);
    const double t0 = profile::enabled() ? profile::now_seconds() : -1;
    std::vector<Tensor> gin = n->backward(gout);
    if (t0 >= 0) profile::add(std::string("backward: ") + n->name(), profile::now_seconds() - t0);
    if (!dynamic_cast<AccumulateGrad*>(n)) {
      HYDRA_CHECK(gin.size() == n->next.size(), "backward: node {} returned {} gradients for {} inputs", n->name(),
                  gin.size(), n->next.size());
      if (!retain_graph) {
        n->release_saved();
        n->released = true;
      }
    }
    for (std::size_t i = 0; i < n->next.size(); ++i) {
      const Edge& e = n->next[i];
      if (!e.node) continue;
      if (gin[i].defined()) deposit(e, gin[i]);
      if (--deps[e.node.get()] == 0) ready.push_back(e.node.get());
    }
  }
}

void backward(const Tensor& root, const Tensor& grad, bool retain_graph) {
  backward(std::vector<Tensor>{root}, grad.defined() ? std::vector<Tensor>{grad} : std::vector<Tensor>{},
           retain_graph);
}

}  // namespace hydra::ag
