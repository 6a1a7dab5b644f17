#include "optim/optimizer.h"

#include <algorithm>
#include <stdexcept>

#include "autograd/node.h"
#include "tensor/check.h"
#include "tensor/ops/elementwise.h"

namespace hydra::optim {

DType state_dtype(const Tensor& param) {
  return param.dtype() == DType::Float64 ? DType::Float64 : DType::Float32;
}

namespace detail {

Tensor grad_in_state_dtype(const Tensor& param) {
  Tensor g = ag::grad(param);
  if (!g.defined()) return g;
  return g.to(state_dtype(param));
}

void add_update(const Tensor& param, const Tensor& u, double alpha) {
  Tensor p = param.detach();
  if (p.dtype() == u.dtype()) {
    add_(p, u, alpha);
  } else {
    // Low-precision parameter: update a state-dtype copy, round once.
    Tensor wide = p.to(u.dtype());
    add_(wide, u, alpha);
    p.copy_(wide);
  }
}

void scale_param(const Tensor& param, double s) {
  Tensor p = param.detach();
  if (p.dtype() == DType::Float32 || p.dtype() == DType::Float64) {
    mul_(p, s);
  } else {
    Tensor wide = p.to(DType::Float32);
    mul_(wide, s);
    p.copy_(wide);
  }
}

void check_entry(const StateDict& state, const std::string& key, const Shape& want,
                 std::vector<std::string>& problems) {
  auto it = state.find(key);
  if (it == state.end()) {
    problems.push_back(fmt::format("missing entry '{}'", key));
    return;
  }
  if (!it->second.defined()) {
    problems.push_back(fmt::format("entry '{}' is an undefined tensor", key));
    return;
  }
  if (it->second.shape() != want) {
    problems.push_back(fmt::format("entry '{}' has shape {}, expected {}", key, shape_str(it->second.shape()),
                                   shape_str(want)));
  }
}

void check_unexpected(const StateDict& state, const std::vector<std::string>& expected,
                      std::vector<std::string>& problems) {
  for (const auto& [k, v] : state) {
    if (std::find(expected.begin(), expected.end(), k) == expected.end()) {
      problems.push_back(fmt::format("unexpected entry '{}'", k));
    }
  }
}

void throw_if_problems(const std::string& who, const std::vector<std::string>& problems) {
  if (problems.empty()) return;
  std::string msg = who + ": cannot load the optimizer state:";
  for (const auto& p : problems) msg += "\n  " + p;
  throw std::invalid_argument(msg);
}

Tensor step_tensor(int64_t step) { return scalar_tensor(static_cast<double>(step), DType::Int64); }

int64_t step_value(const Tensor& t) {
  HYDRA_CHECK(t.numel() == 1, "optimizer state: a step count must be one element, got shape {}",
              shape_str(t.shape()));
  return static_cast<int64_t>(t.item());
}

}  // namespace detail
}  // namespace hydra::optim
