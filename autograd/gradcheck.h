#pragma once
// gradcheck: compares an op's hand-written backward with central finite differences, in float64 on the CPU.
//
// For fn(inputs) -> outputs, a random upstream gradient v_j (normal, from opts.seed) is drawn for every floating
// output, and L = Σ_j <out_j, v_j>. The analytic gradient of L comes from ag::backward; the numeric one perturbs
// each element of each checked input by ±eps. An element passes when |analytic − numeric| ≤ atol + rtol·|numeric|
// (SPEC §0.1). Also checked: a zero upstream gives zero gradients, and a second backward over the same graph
// (retain_graph) gives identical gradients.
//
// Inputs that require grad (ag::requires_grad) are checked; the others (index tensors, masks) are held fixed.
// Checked inputs must be float64 CPU tensors without broadcast (stride-0) dims; non-contiguous views are fine
// and are perturbed in place through their strides.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor_core.h"

namespace hydra::ag {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  uint64_t seed = 0;
  bool check_zero_upstream = true;
  bool check_backward_twice = true;
};

struct GradcheckResult {
  bool ok = true;
  std::string report;  // on failure: the op, input, index, analytic and numeric value of the worst element
  double worst_ratio = 0.0;  // max over elements of |a − n| / (atol + rtol·|n|); ≤ 1 passes
};

using GradFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

GradcheckResult gradcheck(const std::string& op, const GradFn& fn, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& opts = {});

}  // namespace hydra::ag
