#include "nn/module.h"

#include <fmt/format.h>

#include <set>
#include <stdexcept>

#include "autograd/node.h"
#include "tensor/check.h"

namespace hydra::nn {

void Module::register_parameter(const std::string& name, Tensor* param) {
  HYDRA_CHECK(param && param->defined(), "Module::register_parameter: parameter '{}' is undefined", name);
  for (const auto& [n, p] : params_) HYDRA_CHECK(n != name, "Module::register_parameter: '{}' registered twice", name);
  ag::set_requires_grad(*param, true);
  params_.emplace_back(name, param);
}

void Module::register_module(const std::string& name, Module* child) {
  HYDRA_CHECK(child != nullptr, "Module::register_module: child '{}' is null", name);
  for (const auto& [n, c] : children_) HYDRA_CHECK(n != name, "Module::register_module: '{}' registered twice", name);
  children_.emplace_back(name, child);
}

void Module::collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor*>>& out) const {
  for (const auto& [n, p] : params_) out.emplace_back(prefix + n, p);
  for (const auto& [n, c] : children_) c->collect(prefix + n + ".", out);
}

std::vector<std::pair<std::string, Tensor*>> Module::unique_parameter_slots() const {
  std::vector<std::pair<std::string, Tensor*>> all, unique;
  collect("", all);
  std::set<const TensorImpl*> seen;
  for (auto& e : all)
    if (seen.insert(e.second->impl_ptr().get()).second) unique.push_back(e);
  return unique;
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  for (auto& [n, p] : unique_parameter_slots()) out.emplace_back(n, *p);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, p] : unique_parameter_slots()) out.push_back(*p);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, p] : unique_parameter_slots()) n += p->numel();
  return n;
}

Module& Module::submodule(const std::string& path) {
  Module* m = this;
  std::size_t start = 0;
  while (start <= path.size()) {
    const std::size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    Module* next = nullptr;
    std::string known;
    for (const auto& [n, c] : m->children_) {
      if (n == part) next = c;
      known += (known.empty() ? "" : ", ") + n;
    }
    HYDRA_CHECK(next != nullptr, "Module::submodule: no child '{}' in path '{}' (children: {})", part, path,
                known.empty() ? "none" : known);
    m = next;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return *m;
}

void Module::apply_to_parameters(const std::function<void(const std::string&, Tensor&)>& f) {
  // Shared (tied) tensors: apply once, then point every alias slot at the result.
  std::vector<std::pair<std::string, Tensor*>> all;
  collect("", all);
  std::map<const TensorImpl*, Tensor> done;
  for (auto& [name, slot] : all) {
    const TensorImpl* key = slot->impl_ptr().get();
    auto it = done.find(key);
    if (it != done.end()) {
      *slot = it->second;
      continue;
    }
    f(name, *slot);
    done.emplace(key, *slot);
  }
}

void Module::to(DType dtype) {
  apply_to_parameters([&](const std::string&, Tensor& p) {
    if (p.dtype() == dtype) return;
    p = p.detach().to(dtype);
    ag::set_requires_grad(p, true);
  });
}

void Module::to(const Device& device) {
  apply_to_parameters([&](const std::string&, Tensor& p) {
    if (p.device() == device) return;
    p = p.detach().to(device);
    ag::set_requires_grad(p, true);
  });
}

DType Module::dtype() const {
  const auto ps = unique_parameter_slots();
  return ps.empty() ? DType::Float32 : ps.front().second->dtype();
}

Device Module::device() const {
  const auto ps = unique_parameter_slots();
  return ps.empty() ? kCPU : ps.front().second->device();
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, c] : children_) c->train(on);
}

std::map<std::string, Tensor> Module::state_dict() const {
  std::map<std::string, Tensor> out;
  for (auto& [n, p] : unique_parameter_slots()) out.emplace(n, p->detach());
  return out;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& tensors, const std::string& what,
                             bool allow_unexpected) {
  const auto slots = unique_parameter_slots();
  std::vector<std::string> problems;
  std::set<std::string> expected;
  for (const auto& [name, slot] : slots) {
    expected.insert(name);
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      problems.push_back(fmt::format("missing tensor '{}' (expected shape {})", name, shape_str(slot->shape())));
      continue;
    }
    if (it->second.shape() != slot->shape())
      problems.push_back(fmt::format("tensor '{}' has shape {}, expected {}", name, shape_str(it->second.shape()),
                                     shape_str(slot->shape())));
    else if (!is_floating(it->second.dtype()))
      problems.push_back(fmt::format("tensor '{}' has dtype {}, expected a floating dtype", name,
                                     dtype_name(it->second.dtype())));
  }
  if (!allow_unexpected)
    for (const auto& [name, t] : tensors)
      if (!expected.count(name)) problems.push_back(fmt::format("unexpected tensor '{}'", name));
  if (!problems.empty()) {
    std::string msg = fmt::format("{}: {} problem(s) loading the model weights:", what, problems.size());
    for (const auto& p : problems) msg += "\n  " + p;
    throw std::invalid_argument(msg);
  }
  for (const auto& [name, slot] : slots) slot->detach().copy_(tensors.at(name));
}

void Module::zero_grad() {
  for (auto& [n, p] : unique_parameter_slots()) ag::zero_grad(*p);
}

}  // namespace hydra::nn
