#pragma once
// Hybrid Muon + AdamW, SPEC §7.5 (the reference's "muon" optimizer path).
//
// Routing of each named trainable parameter (route_hybrid):
//   Muon          if ndim ≥ 2 and the lower-cased name contains none of "embed", "lm_head", "wte";
//   AdamW no-decay else if ndim ≤ 1 or the name ends in ".bias";
//   AdamW decay    otherwise (embed.weight — decayed here, unlike SPEC §7.3 — and an untied lm_head).
// In HydraLM: Muon ← qkv_proj, ab_proj.weight, short_conv.conv.weight (flattened to (3I, K), lr factor
// √(3I/K)), gate_proj, o_proj, w_fused, w_down, summary_proj, mtp_heads.*.proj; no-decay ← norms, biases.
//
// step() runs Muon, then AdamW. set_lr_factor(f) scales every group of both (the scheduler's one factor).
// The Muon group gets muon_lr / muon_momentum / muon_weight_decay (nesterov, 5 NS steps, adjust_lr); the AdamW
// groups "decay" (adamw_weight_decay) and "no_decay" (wd 0) get adamw_lr / betas / eps.
//
// State dict: the Muon state with every key prefixed "muon." and the AdamW state prefixed "adamw." (the
// reference's {"muon": ..., "adamw": ...}), e.g. "muon.blocks.0.mlp.w_down.weight.momentum_buffer",
// "adamw.embed.weight.exp_avg", "muon._step", "adamw._step". step_count() is the hybrid's own count of step()
// calls, equal to both parts' counts.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn/module.h"
#include "optim/adamw.h"
#include "optim/muon.h"
#include "optim/optimizer.h"

namespace hydra::optim {

enum class HybridRoute { Muon, AdamWDecay, AdamWNoDecay };
const char* hybrid_route_name(HybridRoute r);  // "muon", "adamw_decay", "adamw_no_decay"

// SPEC §7.5 rule for one parameter.
HybridRoute route_hybrid(const std::string& name, const Tensor& param);

// (name, route) for every named parameter, in order (for the training log and tests).
std::vector<std::pair<std::string, HybridRoute>> hybrid_routes(const nn::NamedTensors& params);

struct HybridOptions {
  double muon_lr = 5e-3;
  double muon_momentum = 0.95;
  double muon_weight_decay = 0.0;
  bool muon_nesterov = true;
  int64_t muon_ns_steps = 5;
  double adamw_lr = 3e-4;
  double adamw_beta1 = 0.9;
  double adamw_beta2 = 0.95;
  double adamw_weight_decay = 0.1;
  double adamw_eps = 1e-8;
};

class HybridMuonAdamW final : public Optimizer {
 public:
  HybridMuonAdamW(const nn::NamedTensors& params, const HybridOptions& opts);

  void step() override;  // Muon, then AdamW
  void zero_grad() override;
  void set_lr_factor(double f) override;
  double lr_factor() const override { return muon_->lr_factor(); }
  int64_t step_count() const override { return step_count_; }
  StateDict state_dict() const override;
  void load_state_dict(const StateDict& state) override;

  Muon& muon() { return *muon_; }
  AdamW& adamw() { return *adamw_; }
  const Muon& muon() const { return *muon_; }
  const AdamW& adamw() const { return *adamw_; }
  // Where each parameter went, in the order given to the constructor.
  const std::vector<std::pair<std::string, HybridRoute>>& routes() const { return routes_; }

 private:
  std::vector<std::pair<std::string, HybridRoute>> routes_;
  std::unique_ptr<Muon> muon_;
  std::unique_ptr<AdamW> adamw_;
  int64_t step_count_ = 0;
};

}  // namespace hydra::optim
