#include "tensor/device.h"

#include <charconv>

#include "tensor/check.h"

namespace hydra {

Device::Device(std::string_view spec) {
  if (spec == "cpu") {
    type = DeviceType::CPU;
    index = 0;
    return;
  }
  if (spec == "cuda") {
    type = DeviceType::CUDA;
    index = 0;
    return;
  }
  if (spec.substr(0, 5) == "cuda:") {
    auto digits = spec.substr(5);
    int i = -1;
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), i);
    if (ec == std::errc() && p == digits.data() + digits.size() && !digits.empty() && i >= 0) {
      type = DeviceType::CUDA;
      index = i;
      return;
    }
  }
  HYDRA_CHECK(false, "unknown device '{}': expected 'cpu', 'cuda' or 'cuda:N' with N >= 0", spec);
}

std::string Device::str() const { return is_cpu() ? "cpu" : fmt::format("cuda:{}", index); }

}  // namespace hydra
