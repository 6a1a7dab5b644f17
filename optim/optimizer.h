#pragma once
// Common pieces of the optimizers (SPEC §7.3–§7.5): the Optimizer interface, state dtype rule and the
// checkpoint-state helpers.
//
// Contract shared by every optimizer in optim/:
// - Parameters are leaf tensors (nn::Module members) given with their SPEC §4 names. step() reads each
//   parameter's gradient through ag::grad(p) (parameters without a gradient are skipped: no state change, no
//   update) and updates the parameter in place through p.detach(), with the raw ops of tensor/ops, on the
//   parameter's own device. No autograd is recorded. Gradients are never modified by step().
// - Optimizer state (AdamW moments, Muon momentum buffers) lives on the parameter's device in float32, or in
//   float64 for float64 parameters (state_dtype). It is created (zeros, step 0) when the optimizer is built, so
//   an exported state always holds every entry.
// - Learning rates: every group has a base lr; the lr used by step() is base lr × lr_factor(), where the factor
//   (default 1) is set by the scheduler (SPEC §7.6) through set_lr_factor().
// - State export: state_dict() returns tensors keyed "<param name>.<slot>" (copies, so later steps do not change
//   an exported state) plus the optimizer's step count under kStepKey as a 0-d int64 tensor.
//   load_state_dict() needs exactly the entries state_dict() would return (same names, shapes); any missing,
//   unexpected or mismatched entry is one std::invalid_argument listing every problem, and nothing is loaded.
//   Loaded tensors may be of another dtype or device (cast on copy). Base lrs and the lr factor are not part of
//   the state (they come from the config and the scheduler).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "nn/module.h"
#include "tensor/tensor_core.h"

namespace hydra::optim {

using StateDict = std::map<std::string, Tensor>;

// Key of the optimizer's step count (number of step() calls) in a state dict; no parameter name starts with '_'.
inline constexpr const char* kStepKey = "_step";

// Optimizer state dtype for a parameter: Float64 for Float64 parameters, Float32 otherwise.
DType state_dtype(const Tensor& param);

class Optimizer {
 public:
  Optimizer() = default;
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual void step() = 0;
  // Clears the gradient of every parameter.
  virtual void zero_grad() = 0;
  // The scheduler's factor f: every group's lr becomes base lr × f.
  virtual void set_lr_factor(double f) = 0;
  virtual double lr_factor() const = 0;
  // Number of step() calls so far (restored by load_state_dict).
  virtual int64_t step_count() const = 0;
  virtual StateDict state_dict() const = 0;
  virtual void load_state_dict(const StateDict& state) = 0;
};

namespace detail {
// The parameter's gradient cast to the state dtype (undefined when the parameter has none).
Tensor grad_in_state_dtype(const Tensor& param);
// p ← p − alpha·u (u in the state dtype), in place on the parameter's storage; casts u to the parameter's dtype.
void add_update(const Tensor& param, const Tensor& u, double alpha);
// p ← p·s in place.
void scale_param(const Tensor& param, double s);
// Checks one state entry for load: present, same shape; records a problem otherwise.
void check_entry(const StateDict& state, const std::string& key, const Shape& want, std::vector<std::string>& problems);
// Checks that every key of state is in `expected`; records the others as unexpected.
void check_unexpected(const StateDict& state, const std::vector<std::string>& expected,
                      std::vector<std::string>& problems);
// Throws std::invalid_argument listing the problems (if any), prefixed by `who`.
void throw_if_problems(const std::string& who, const std::vector<std::string>& problems);
// Step count entry: 0-d int64 tensor / its value (checked to be a one-element tensor).
Tensor step_tensor(int64_t step);
int64_t step_value(const Tensor& t);
}  // namespace detail

}  // namespace hydra::optim
