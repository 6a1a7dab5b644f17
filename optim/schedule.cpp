#include "optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "autograd/node.h"
#include "tensor/check.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/fused.h"
#include "tensor/ops/reduce.h"

namespace hydra::optim {

double warmup_cosine_factor(int64_t s, int64_t warmup, int64_t steps, double lr, double min_lr) {
  HYDRA_CHECK(warmup >= 0 && steps >= 0 && lr > 0 && min_lr >= 0 && s >= 0,
              "warmup_cosine_factor: invalid arguments (s {}, warmup {}, steps {}, lr {}, min_lr {}); expected "
              "s >= 0, warmup >= 0, steps >= 0, lr > 0, min_lr >= 0",
              s, warmup, steps, lr, min_lr);
  if (s < warmup) return static_cast<double>(s) / static_cast<double>(std::max<int64_t>(1, warmup));
  const double prog = std::min(1.0, static_cast<double>(s - warmup) /
                                        static_cast<double>(std::max<int64_t>(1, steps - warmup)));
  const double rho = min_lr / lr;
  return rho + (1.0 - rho) * 0.5 * (1.0 + std::cos(std::numbers::pi * prog));
}

WarmupCosineSchedule::WarmupCosineSchedule(Optimizer& opt, int64_t warmup, int64_t steps, double lr,
                                           double min_lr)
    : opt_(&opt), warmup_(warmup), steps_(steps), lr_(lr), min_lr_(min_lr) {
  opt_->set_lr_factor(factor());
}

double WarmupCosineSchedule::factor() const { return warmup_cosine_factor(s_, warmup_, steps_, lr_, min_lr_); }

void WarmupCosineSchedule::step() {
  ++s_;
  opt_->set_lr_factor(factor());
}

void WarmupCosineSchedule::set_steps_taken(int64_t s) {
  HYDRA_CHECK(s >= 0, "WarmupCosineSchedule: steps taken must be >= 0, got {}", s);
  s_ = s;
  opt_->set_lr_factor(factor());
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  HYDRA_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be > 0, got {}", max_norm);
  std::vector<Tensor> unique;
  for (const auto& p : params) {
    if (std::none_of(unique.begin(), unique.end(), [&](const Tensor& q) { return q.is_same(p); }))
      unique.push_back(p);
  }
  // Contiguous gradients (the usual case): one sum_of_squares per device over the whole list (a few launches, float64
  // block sums in a fixed order) and one scale_ when clipping, so the step costs one device sync, not several
  // launches per parameter. Any other gradient: its own norm.
  std::vector<Tensor> grads;
  std::vector<std::vector<Tensor>> by_device;
  double sumsq = 0;
  for (const auto& p : unique) {
    Tensor g = ag::grad(p);
    if (!g.defined()) continue;
    grads.push_back(g);
    if (!g.is_contiguous()) {
      const double n = norm(g).to(DType::Float64).item();
      sumsq += n * n;
      continue;
    }
    auto it = std::find_if(by_device.begin(), by_device.end(),
                           [&](const std::vector<Tensor>& l) { return l.front().device() == g.device(); });
    if (it == by_device.end()) {
      by_device.push_back({g});
    } else {
      it->push_back(g);
    }
  }
  for (const auto& list : by_device) sumsq += sum_of_squares(list).item();
  const double total = std::sqrt(sumsq);
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0) {
    for (const auto& list : by_device) scale_(list, coef);
    for (auto& g : grads)
      if (!g.is_contiguous()) mul_(g, coef);
  }
  return total;
}

}  // namespace hydra::optim
