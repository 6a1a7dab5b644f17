#include "optim/adamw.h"

#include <cmath>
#include <set>

#include "autograd/node.h"
#include "tensor/check.h"
#include "tensor/ops/fused.h"

namespace hydra::optim {

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

bool adamw_decays(const std::string& name, const Tensor& param) {
  return param.dim() >= 2 && !ends_with(name, ".bias") && name.find("embed") == std::string::npos;
}

std::vector<AdamWGroup> adamw_param_groups(const nn::NamedTensors& params, const AdamWOptions& opts) {
  AdamWGroup decay{"decay", {}, opts.lr, opts.beta1, opts.beta2, opts.eps, opts.weight_decay};
  AdamWGroup no_decay{"no_decay", {}, opts.lr, opts.beta1, opts.beta2, opts.eps, 0.0};
  for (const auto& [name, p] : params) (adamw_decays(name, p) ? decay : no_decay).params.emplace_back(name, p);
  return {std::move(decay), std::move(no_decay)};
}

AdamW::AdamW(std::vector<AdamWGroup> groups) : groups_(std::move(groups)) {
  std::set<std::string> seen;
  for (const auto& g : groups_) {
    HYDRA_CHECK(g.lr >= 0 && g.beta1 >= 0 && g.beta1 < 1 && g.beta2 >= 0 && g.beta2 < 1 && g.eps >= 0 &&
                    g.weight_decay >= 0,
                "AdamW: group '{}' has invalid hyper-parameters (lr {}, betas ({}, {}), eps {}, weight_decay {}); "
                "expected lr >= 0, 0 <= beta < 1, eps >= 0, weight_decay >= 0",
                g.name, g.lr, g.beta1, g.beta2, g.eps, g.weight_decay);
    std::vector<ParamState> st;
    for (const auto& [name, p] : g.params) {
      HYDRA_CHECK(p.defined(), "AdamW: parameter '{}' (group '{}') is undefined", name, g.name);
      HYDRA_CHECK(is_floating(p.dtype()), "AdamW: parameter '{}' has dtype {}, expected a floating dtype", name,
                  dtype_name(p.dtype()));
      HYDRA_CHECK(seen.insert(name).second, "AdamW: parameter name '{}' appears twice", name);
      const DType sdt = state_dtype(p);
      st.push_back({zeros(p.shape(), sdt, p.device()), zeros(p.shape(), sdt, p.device()), 0});
    }
    state_.push_back(std::move(st));
  }
}

void AdamW::set_base_lr(std::size_t group, double lr) {
  HYDRA_CHECK(group < groups_.size() && lr >= 0, "AdamW::set_base_lr: group {} of {} with lr {}", group,
              groups_.size(), lr);
  groups_[group].lr = lr;
}

double AdamW::current_lr(std::size_t group) const { return groups_.at(group).lr * lr_factor_; }

void AdamW::step() {
  for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
    const AdamWGroup& grp = groups_[gi];
    const double lr = current_lr(gi);
    for (std::size_t pi = 0; pi < grp.params.size(); ++pi) {
      const Tensor& p = grp.params[pi].second;
      const Tensor g = ag::grad(p);
      if (!g.defined()) continue;
      ParamState& s = state_[gi][pi];
      s.step += 1;
      const double t = static_cast<double>(s.step);
      AdamWCoefs c;
      c.decay = 1.0 - lr * grp.weight_decay;
      c.beta1 = grp.beta1;
      c.beta2 = grp.beta2;
      c.eps = grp.eps;
      c.step_size = lr / (1.0 - std::pow(grp.beta1, t));
      c.bc2_sqrt = std::sqrt(1.0 - std::pow(grp.beta2, t));
      // one fused pass over p, g, m, v (tensor/ops/fused.h); the gradient in the parameter's dtype
      adamw_step_(p.detach(), g.to(p.dtype()).contiguous(), s.exp_avg, s.exp_avg_sq, c);
    }
  }
  ++step_count_;
}

void AdamW::zero_grad() {
  for (const auto& g : groups_)
    for (const auto& [name, p] : g.params) ag::zero_grad(p);
}

StateDict AdamW::state_dict() const {
  StateDict out;
  for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
    for (std::size_t pi = 0; pi < groups_[gi].params.size(); ++pi) {
      const std::string& name = groups_[gi].params[pi].first;
      const ParamState& s = state_[gi][pi];
      out[name + ".exp_avg"] = s.exp_avg.clone();
      out[name + ".exp_avg_sq"] = s.exp_avg_sq.clone();
      out[name + ".step"] = detail::step_tensor(s.step);
    }
  }
  out[kStepKey] = detail::step_tensor(step_count_);
  return out;
}

void AdamW::load_state_dict(const StateDict& state) {
  std::vector<std::string> problems, expected{kStepKey};
  detail::check_entry(state, kStepKey, Shape{}, problems);
  for (const auto& g : groups_) {
    for (const auto& [name, p] : g.params) {
      for (const char* slot : {".exp_avg", ".exp_avg_sq"}) {
        detail::check_entry(state, name + slot, p.shape(), problems);
        expected.push_back(name + slot);
      }
      detail::check_entry(state, name + ".step", Shape{}, problems);
      expected.push_back(name + ".step");
    }
  }
  detail::check_unexpected(state, expected, problems);
  detail::throw_if_problems("AdamW", problems);
  for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
    for (std::size_t pi = 0; pi < groups_[gi].params.size(); ++pi) {
      const std::string& name = groups_[gi].params[pi].first;
      ParamState& s = state_[gi][pi];
      s.exp_avg.copy_(state.at(name + ".exp_avg").to(s.exp_avg.device()));
      s.exp_avg_sq.copy_(state.at(name + ".exp_avg_sq").to(s.exp_avg_sq.device()));
      s.step = detail::step_value(state.at(name + ".step"));
    }
  }
  step_count_ = detail::step_value(state.at(kStepKey));
}

}  // namespace hydra::optim
