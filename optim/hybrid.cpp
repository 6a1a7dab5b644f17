#include "optim/hybrid.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>

#include "tensor/check.h"

namespace hydra::optim {

const char* hybrid_route_name(HybridRoute r) {
  switch (r) {
    case HybridRoute::Muon: return "muon";
    case HybridRoute::AdamWDecay: return "adamw_decay";
    case HybridRoute::AdamWNoDecay: return "adamw_no_decay";
  }
  return "?";
}

HybridRoute route_hybrid(const std::string& name, const Tensor& param) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  const bool excluded = lower.find("embed") != std::string::npos || lower.find("lm_head") != std::string::npos ||
                        lower.find("wte") != std::string::npos;
  if (param.dim() >= 2 && !excluded) return HybridRoute::Muon;
  const bool bias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
  if (param.dim() <= 1 || bias) return HybridRoute::AdamWNoDecay;
  return HybridRoute::AdamWDecay;
}

std::vector<std::pair<std::string, HybridRoute>> hybrid_routes(const nn::NamedTensors& params) {
  std::vector<std::pair<std::string, HybridRoute>> out;
  for (const auto& [name, p] : params) out.emplace_back(name, route_hybrid(name, p));
  return out;
}

HybridMuonAdamW::HybridMuonAdamW(const nn::NamedTensors& params, const HybridOptions& opts)
    : routes_(hybrid_routes(params)) {
  MuonGroup mg{"muon", {}, opts.muon_lr, opts.muon_momentum, opts.muon_nesterov, opts.muon_ns_steps,
               opts.muon_weight_decay, true};
  AdamWGroup decay{"decay", {}, opts.adamw_lr, opts.adamw_beta1, opts.adamw_beta2, opts.adamw_eps,
                   opts.adamw_weight_decay};
  AdamWGroup no_decay{"no_decay", {}, opts.adamw_lr, opts.adamw_beta1, opts.adamw_beta2, opts.adamw_eps, 0.0};
  for (std::size_t i = 0; i < params.size(); ++i) {
    switch (routes_[i].second) {
      case HybridRoute::Muon: mg.params.push_back(params[i]); break;
      case HybridRoute::AdamWDecay: decay.params.push_back(params[i]); break;
      case HybridRoute::AdamWNoDecay: no_decay.params.push_back(params[i]); break;
    }
  }
  muon_ = std::make_unique<Muon>(std::vector<MuonGroup>{std::move(mg)});
  adamw_ = std::make_unique<AdamW>(std::vector<AdamWGroup>{std::move(decay), std::move(no_decay)});
}

void HybridMuonAdamW::step() {
  muon_->step();
  adamw_->step();
  ++step_count_;
}

void HybridMuonAdamW::zero_grad() {
  muon_->zero_grad();
  adamw_->zero_grad();
}

void HybridMuonAdamW::set_lr_factor(double f) {
  muon_->set_lr_factor(f);
  adamw_->set_lr_factor(f);
}

StateDict HybridMuonAdamW::state_dict() const {
  StateDict out;
  for (auto& [k, v] : muon_->state_dict()) out["muon." + k] = v;
  for (auto& [k, v] : adamw_->state_dict()) out["adamw." + k] = v;
  return out;
}

void HybridMuonAdamW::load_state_dict(const StateDict& state) {
  StateDict m, a;
  std::vector<std::string> problems;
  for (const auto& [k, v] : state) {
    if (k.rfind("muon.", 0) == 0) {
      m[k.substr(5)] = v;
    } else if (k.rfind("adamw.", 0) == 0) {
      a[k.substr(6)] = v;
    } else {
      problems.push_back(fmt::format("unexpected entry '{}' (keys start with 'muon.' or 'adamw.')", k));
    }
  }
  if (m.count(kStepKey) && a.count(kStepKey) && m.at(kStepKey).numel() == 1 && a.at(kStepKey).numel() == 1 &&
      detail::step_value(m.at(kStepKey)) != detail::step_value(a.at(kStepKey))) {
    problems.push_back(fmt::format("the step counts differ (muon._step {}, adamw._step {})",
                                   detail::step_value(m.at(kStepKey)), detail::step_value(a.at(kStepKey))));
  }
  detail::throw_if_problems("HybridMuonAdamW", problems);
  // AdamW may still reject its part after Muon loaded: then Muon's previous state is put back.
  const StateDict muon_backup = muon_->state_dict();
  muon_->load_state_dict(m);
  try {
    adamw_->load_state_dict(a);
  } catch (...) {
    muon_->load_state_dict(muon_backup);
    throw;
  }
  step_count_ = muon_->step_count();
}

}  // namespace hydra::optim
