#pragma once
// Module: the base of every layer. A module owns its parameters as Tensor members and registers them (and its
// child modules) by name, so that named_parameters() yields the hierarchical names of SPEC §4
// ("blocks.3.mixer.qkv_proj.weight") in registration order. Checkpoints, optimizer groups and shard maps key on
// those names, never on positions.
//
// Registration stores pointers to the members, so modules are neither copyable nor movable; build them in place
// (children as members, or std::unique_ptr for lists and polymorphic children).
//
// A parameter is a leaf tensor with requires_grad set. Replacing one (to(dtype), to(device), load) assigns a new
// leaf to the member, so modules always read their parameters through the member.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor_core.h"

namespace hydra::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  Module(Module&&) = delete;
  Module& operator=(Module&&) = delete;

  // Every parameter of this module and its descendants, depth-first in registration order, with dotted names
  // relative to this module. A tensor registered twice (shared) is listed once, under its first name.
  NamedTensors named_parameters() const;
  std::vector<Tensor> parameters() const;
  // Number of elements over the unique parameters (SPEC §2.1 num_parameters).
  int64_t num_parameters() const;
  // Direct children in registration order.
  const std::vector<std::pair<std::string, Module*>>& children() const { return children_; }
  // The module at a dotted path ("blocks.3.mixer"); throws naming the path and the known children.
  Module& submodule(const std::string& path);

  // Calls f(name, param) for every unique parameter; f may replace the tensor (it is the member itself).
  void apply_to_parameters(const std::function<void(const std::string&, Tensor&)>& f);
  // Casts / moves every parameter (new leaves requiring grad; gradients are dropped).
  void to(DType dtype);
  void to(const Device& device);
  DType dtype() const;    // of the first parameter (Float32 when there is none)
  Device device() const;  // likewise (cpu when none)

  // Train / eval mode (HydraLM computes identically in both, SPEC §2.1; kept for layers that differ).
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // name -> tensor (detached aliases of the parameters, no copy).
  std::map<std::string, Tensor> state_dict() const;
  // Copies tensors into the parameters. Every parameter must be present with the right shape; unexpected names
  // are errors unless allow_unexpected. One error lists every problem; nothing is copied on failure. The source
  // may be another dtype or device (cast on copy). `what` names the source in messages (e.g. a file path).
  void load_state_dict(const std::map<std::string, Tensor>& tensors, const std::string& what = "state dict",
                       bool allow_unexpected = false);
  // Clears the gradient of every parameter.
  void zero_grad();

 protected:
  // Registers a parameter member (it becomes a leaf requiring grad) / a child module member.
  void register_parameter(const std::string& name, Tensor* param);
  void register_module(const std::string& name, Module* child);

 private:
  void collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor*>>& out) const;
  std::vector<std::pair<std::string, Tensor*>> unique_parameter_slots() const;

  std::vector<std::pair<std::string, Tensor*>> params_;
  std::vector<std::pair<std::string, Module*>> children_;
  bool training_ = true;
};

// An ordered list of child modules named "0", "1", ... (the reference's nn.ModuleList).
template <class M>
class ModuleList : public Module {
 public:
  M& push_back(std::unique_ptr<M> m) {
    items_.push_back(std::move(m));
    register_module(std::to_string(items_.size() - 1), items_.back().get());
    return *items_.back();
  }
  int64_t size() const { return static_cast<int64_t>(items_.size()); }
  M& operator[](int64_t i) const { return *items_.at(static_cast<std::size_t>(i)); }

 private:
  std::vector<std::unique_ptr<M>> items_;
};

}  // namespace hydra::nn
