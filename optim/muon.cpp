#include "optim/muon.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "autograd/node.h"
#include "tensor/check.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/matmul.h"
#include "tensor/ops/reduce.h"

namespace hydra::optim {

namespace {
// (rows, cols) of the 2-D view Muon orthogonalises.
std::pair<int64_t, int64_t> rows_cols(const Shape& shape) {
  int64_t cols = 1;
  for (std::size_t i = 1; i < shape.size(); ++i) cols *= shape[i];
  return {shape.at(0), cols};
}
}  // namespace

Tensor newton_schulz(const Tensor& G, int64_t steps) {
  HYDRA_CHECK(G.defined() && G.dim() == 2, "newton_schulz: expected a 2-D tensor, got {}",
              G.defined() ? shape_str(G.shape()) : std::string("an undefined tensor"));
  HYDRA_CHECK(is_floating(G.dtype()), "newton_schulz: expected a floating dtype, got {}", dtype_name(G.dtype()));
  Tensor X = G.to(DType::Float32);
  const bool transposed = G.size(0) > G.size(1);
  if (transposed) X = X.transpose(0, 1);
  X = div(X, add(norm(X), 1e-7));
  for (int64_t i = 0; i < steps; ++i) {
    const Tensor A = matmul(X, X, Trans::No, Trans::Yes);
    const Tensor M = add(mul(A, kNsB), mul(matmul(A, A), kNsC));
    X = add(mul(X, kNsA), matmul(M, X));
  }
  if (transposed) X = X.transpose(0, 1).contiguous();
  return X.to(G.dtype());
}

double muon_lr_scale(const Shape& shape) {
  HYDRA_CHECK(shape.size() >= 2, "muon_lr_scale: expected ndim >= 2, got shape {}", shape_str(shape));
  const auto [rows, cols] = rows_cols(shape);
  return std::sqrt(std::max(1.0, static_cast<double>(rows) / static_cast<double>(std::max<int64_t>(1, cols))));
}

Muon::Muon(std::vector<MuonGroup> groups) : groups_(std::move(groups)) {
  std::set<std::string> seen;
  for (const auto& g : groups_) {
    HYDRA_CHECK(g.lr >= 0 && g.momentum >= 0 && g.momentum < 1 && g.ns_steps >= 0 && g.weight_decay >= 0,
                "Muon: group '{}' has invalid hyper-parameters (lr {}, momentum {}, ns_steps {}, weight_decay {}); "
                "expected lr >= 0, 0 <= momentum < 1, ns_steps >= 0, weight_decay >= 0",
                g.name, g.lr, g.momentum, g.ns_steps, g.weight_decay);
    std::vector<Tensor> bufs;
    for (const auto& [name, p] : g.params) {
      HYDRA_CHECK(p.defined(), "Muon: parameter '{}' (group '{}') is undefined", name, g.name);
      HYDRA_CHECK(is_floating(p.dtype()), "Muon: parameter '{}' has dtype {}, expected a floating dtype", name,
                  dtype_name(p.dtype()));
      HYDRA_CHECK(p.dim() >= 2,
                  "Muon: parameter '{}' has shape {} (ndim {}); Muon needs ndim >= 2 (route it to AdamW)", name,
                  shape_str(p.shape()), p.dim());
      HYDRA_CHECK(seen.insert(name).second, "Muon: parameter name '{}' appears twice", name);
      bufs.push_back(zeros(p.shape(), state_dtype(p), p.device()));
    }
    buf_.push_back(std::move(bufs));
  }
}

void Muon::set_base_lr(std::size_t group, double lr) {
  HYDRA_CHECK(group < groups_.size() && lr >= 0, "Muon::set_base_lr: group {} of {} with lr {}", group,
              groups_.size(), lr);
  groups_[group].lr = lr;
}

double Muon::current_lr(std::size_t group) const { return groups_.at(group).lr * lr_factor_; }

void Muon::step() {
  for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
    const MuonGroup& grp = groups_[gi];
    const double lr = current_lr(gi);
    for (std::size_t pi = 0; pi < grp.params.size(); ++pi) {
      const Tensor& p = grp.params[pi].second;
      const Tensor g = detail::grad_in_state_dtype(p);
      if (!g.defined()) continue;
      Tensor& buf = buf_[gi][pi];
      mul_(buf, grp.momentum);
      add_(buf, g);
      const Tensor U = grp.nesterov ? add(g, mul(buf, grp.momentum)) : buf;
      const auto [rows, cols] = rows_cols(p.shape());
      const Tensor O = newton_schulz(U.reshape({rows, cols}), grp.ns_steps).reshape(p.shape());
      const double eta = grp.adjust_lr ? lr * muon_lr_scale(p.shape()) : lr;
      if (grp.weight_decay != 0.0) detail::scale_param(p, 1.0 - eta * grp.weight_decay);
      detail::add_update(p, O, -eta);
    }
  }
  ++step_count_;
}

void Muon::zero_grad() {
  for (const auto& g : groups_)
    for (const auto& [name, p] : g.params) ag::zero_grad(p);
}

StateDict Muon::state_dict() const {
  StateDict out;
  for (std::size_t gi = 0; gi < groups_.size(); ++gi)
    for (std::size_t pi = 0; pi < groups_[gi].params.size(); ++pi)
      out[groups_[gi].params[pi].first + ".momentum_buffer"] = buf_[gi][pi].clone();
  out[kStepKey] = detail::step_tensor(step_count_);
  return out;
}

void Muon::load_state_dict(const StateDict& state) {
  std::vector<std::string> problems, expected{kStepKey};
  detail::check_entry(state, kStepKey, Shape{}, problems);
  for (const auto& g : groups_) {
    for (const auto& [name, p] : g.params) {
      detail::check_entry(state, name + ".momentum_buffer", p.shape(), problems);
      expected.push_back(name + ".momentum_buffer");
    }
  }
  detail::check_unexpected(state, expected, problems);
  detail::throw_if_problems("Muon", problems);
  for (std::size_t gi = 0; gi < groups_.size(); ++gi)
    for (std::size_t pi = 0; pi < groups_[gi].params.size(); ++pi)
      buf_[gi][pi].copy_(state.at(groups_[gi].params[pi].first + ".momentum_buffer"));
  step_count_ = detail::step_value(state.at(kStepKey));
}

}  // namespace hydra::optim
