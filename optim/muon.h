#pragma once
// Muon, SPEC §7.4: momentum SGD whose update is orthogonalised by a Newton–Schulz iteration.
//
// For each parameter p (ndim ≥ 2) of a group with a gradient g, with the group's current lr = base lr ×
// lr_factor, momentum μ:
//   buf ← μ·buf + g                       (buf starts at 0, state_dtype(p), on p's device)
//   U   ← g + μ·buf   (nesterov)   |   U ← buf   (otherwise)
//   U2  ← U viewed as (rows = shape[0], cols = product of the remaining dims)   (a 3-D conv weight (3I, 1, K)
//         becomes (3I, K))
//   O   ← NS(U2) reshaped back to p's shape
//   η   ← lr · sqrt(max(1, rows / max(1, cols)))   (adjust_lr; else η = lr)
//   p   ← p·(1 − η·wd)   (only if wd ≠ 0)
//   p   ← p − η·O
// NS(G) (newton_schulz): X = G in float32 (for every parameter dtype, as REF); if rows > cols, X ← Xᵀ;
// X ← X / (‖X‖_F + 1e-7); ns_steps times: A = X·Xᵀ, M = b·A + c·A·A, X ← a·X + M·X with
// (a, b, c) = (3.4445, −4.7750, 2.0315); transpose back; cast to G's dtype. The result has (roughly) the singular
// vectors of G with singular values pushed into about [0.7, 1.2] (the quintic does not converge to exactly 1).
//
// Parameters with ndim < 2 are rejected when the optimizer is built (std::invalid_argument naming the
// parameter and its shape); parameters without a gradient are skipped.
//
// State dict (see optim/optimizer.h): per parameter "<name>.momentum_buffer" (the parameter's shape), plus
// "_step" (number of step() calls).
#include <cstdint>
#include <string>
#include <vector>

#include "nn/module.h"
#include "optim/optimizer.h"

namespace hydra::optim {

inline constexpr double kNsA = 3.4445, kNsB = -4.7750, kNsC = 2.0315;

struct MuonGroup {
  std::string name;          // for messages and logs
  nn::NamedTensors params;   // (SPEC §4 name, leaf parameter with ndim ≥ 2); names unique over the optimizer
  double lr = 5e-3;          // base lr (scaled by the optimizer's lr factor)
  double momentum = 0.95;
  bool nesterov = true;
  int64_t ns_steps = 5;
  double weight_decay = 0.0;
  bool adjust_lr = true;
};

// The Newton–Schulz orthogonalisation NS(G) above, for a 2-D G (any floating dtype, any device). The result has
// G's shape and dtype.
Tensor newton_schulz(const Tensor& G, int64_t steps = 5);

// The lr multiplier for a parameter of `shape`: sqrt(max(1, rows / max(1, cols))), rows = shape[0],
// cols = product of the remaining dims (ndim ≥ 2 required).
double muon_lr_scale(const Shape& shape);

class Muon final : public Optimizer {
 public:
  // Checks: lr ≥ 0, 0 ≤ momentum < 1, ns_steps ≥ 0, wd ≥ 0; parameters defined, floating, ndim ≥ 2; names unique.
  explicit Muon(std::vector<MuonGroup> groups);

  void step() override;
  void zero_grad() override;
  void set_lr_factor(double f) override { lr_factor_ = f; }
  double lr_factor() const override { return lr_factor_; }
  int64_t step_count() const override { return step_count_; }
  StateDict state_dict() const override;
  void load_state_dict(const StateDict& state) override;

  const std::vector<MuonGroup>& groups() const { return groups_; }
  void set_base_lr(std::size_t group, double lr);
  double current_lr(std::size_t group) const;  // base lr × lr factor (before the adjust_lr multiplier)

 private:
  std::vector<MuonGroup> groups_;
  std::vector<std::vector<Tensor>> buf_;  // [group][param] momentum buffers
  double lr_factor_ = 1.0;
  int64_t step_count_ = 0;
};

}  // namespace hydra::optim
