#pragma once
// Learning-rate schedule (SPEC §7.6) and gradient clipping (SPEC §7.7).
//
// Warmup + cosine factor f(s), s = number of scheduler steps taken so far (0 for the first optimiser step):
//   s <  warmup:  f = s / max(1, warmup)
//   s ≥ warmup:   prog = min(1, (s − warmup) / max(1, steps − warmup))
//                 f = ρ + (1 − ρ)·½·(1 + cos(π·prog)),   ρ = min_lr / lr
// So the first optimiser step uses lr 0 (moments and momentum buffers are still updated), and f = ρ from
// s = steps on. Every group's lr = its base lr × f (Optimizer::set_lr_factor).
//
// clip_grad_norm: total = sqrt(Σ_p ‖grad_p‖²) over the unique parameters (a tensor listed twice counts once;
// parameters without a gradient contribute nothing); if max_norm / (total + 1e-6) < 1, every gradient is
// multiplied in place by that ratio. Returns total (the norm before clipping), as a double. Each ‖grad_p‖ is
// computed on the gradient's device (float64 accumulation on the CPU) and the sum of squares in double.
#include <cstdint>
#include <vector>

#include "optim/optimizer.h"
#include "tensor/tensor_core.h"

namespace hydra::optim {

// f(s) above. Requires warmup ≥ 0, steps ≥ 0, lr > 0, min_lr ≥ 0, s ≥ 0.
double warmup_cosine_factor(int64_t s, int64_t warmup, int64_t steps, double lr, double min_lr);

// The scheduler object of the training loop: factor() is f(s) for the steps taken so far; step() advances s
// and applies the new factor to the optimizer. Construction applies f(0) (so the first optimiser step runs with
// lr 0). Its checkpoint state is s (the reference's "sched").
class WarmupCosineSchedule {
 public:
  WarmupCosineSchedule(Optimizer& opt, int64_t warmup, int64_t steps, double lr, double min_lr);
  double factor() const;
  void step();                  // s += 1, then the optimizer's lr factor = f(s)
  int64_t steps_taken() const { return s_; }
  void set_steps_taken(int64_t s);  // for checkpoint resume; re-applies f(s)

 private:
  Optimizer* opt_;
  int64_t warmup_, steps_;
  double lr_, min_lr_;
  int64_t s_ = 0;
};

// Gradient clipping of SPEC §7.7 (see above). max_norm > 0.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace hydra::optim
