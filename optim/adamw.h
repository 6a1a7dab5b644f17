#pragma once
// AdamW with decoupled weight decay, SPEC §7.3 (the reference's torch.optim.AdamW, non-amsgrad, non-fused).
//
// For each parameter p of a group with a gradient g, with the group's current lr = base lr × lr_factor and the
// parameter's own step count t (1 for its first update; PyTorch keeps t per parameter, so a parameter that had
// no gradient on some steps counts fewer):
//   p ← p·(1 − lr·wd)                                  (skipped when wd = 0, where it is the identity)
//   m ← β1·m + (1−β1)·g ;   v ← β2·v + (1−β2)·g²
//   p ← p − (lr / (1−β1ᵗ)) · m / ( sqrt(v)/sqrt(1−β2ᵗ) + eps )
// m and v start at 0, in state_dtype(p) (float32, float64 for float64 parameters), on p's device. The update is
// computed in the state dtype and added to p in place. Parameters without a gradient are skipped entirely.
//
// State dict (see optim/optimizer.h): per parameter "<name>.exp_avg" (m), "<name>.exp_avg_sq" (v), both of the
// parameter's shape, and "<name>.step" (0-d int64, t); plus "_step" (number of step() calls).
//
// Grouping (SPEC §7.3, the default "adamw" path): adamw_param_groups() splits named parameters into
// "decay" (ndim ≥ 2, name not ending in ".bias", name not containing "embed"; this includes the 3-D conv
// weight and an untied lm_head) and "no_decay" (norm weights, biases, embed.weight).
#include <cstdint>
#include <string>
#include <vector>

#include "nn/module.h"
#include "optim/optimizer.h"

namespace hydra::optim {

struct AdamWGroup {
  std::string name;          // for messages and logs ("decay", "no_decay", ...)
  nn::NamedTensors params;   // (SPEC §4 name, leaf parameter); names must be unique over the optimizer
  double lr = 3e-4;          // base lr (scaled by the optimizer's lr factor)
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

struct AdamWOptions {
  double lr = 3e-4;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

// SPEC §7.3 decay rule: ndim ≥ 2, name not ending in ".bias", not containing "embed" (case-sensitive, as REF).
bool adamw_decays(const std::string& name, const Tensor& param);

// The two SPEC §7.3 groups, in this order: "decay" (wd = opts.weight_decay) and "no_decay" (wd = 0); both with
// opts' lr, betas and eps. Parameter order within a group follows `params`. Empty groups are kept.
std::vector<AdamWGroup> adamw_param_groups(const nn::NamedTensors& params, const AdamWOptions& opts);

class AdamW final : public Optimizer {
 public:
  // Checks: every group's hyper-parameters (lr ≥ 0, 0 ≤ β < 1, eps ≥ 0, wd ≥ 0), parameters defined, floating,
  // names unique over all groups. Creates the zero state.
  explicit AdamW(std::vector<AdamWGroup> groups);

  void step() override;
  void zero_grad() override;
  void set_lr_factor(double f) override { lr_factor_ = f; }
  double lr_factor() const override { return lr_factor_; }
  int64_t step_count() const override { return step_count_; }
  StateDict state_dict() const override;
  void load_state_dict(const StateDict& state) override;

  const std::vector<AdamWGroup>& groups() const { return groups_; }
  // Base lr of group i (the scheduler leaves it alone; set_lr_factor scales it).
  void set_base_lr(std::size_t group, double lr);
  // The lr step() uses now for group i: base lr × lr factor.
  double current_lr(std::size_t group) const;

 private:
  struct ParamState {
    Tensor exp_avg, exp_avg_sq;
    int64_t step = 0;
  };
  std::vector<AdamWGroup> groups_;
  std::vector<std::vector<ParamState>> state_;  // [group][param]
  double lr_factor_ = 1.0;
  int64_t step_count_ = 0;
};

}  // namespace hydra::optim
