#pragma once
// A device is `cpu` or `cuda:N`. It is part of every tensor's type from the start; kernels for CUDA live
// behind the backend entry points of tensor/cuda/ (stubs that throw when the build has no CUDA backend).
#include <fmt/format.h>
#include <string>
#include <string_view>

namespace hydra {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;  // always 0 for the CPU

  Device() = default;
  Device(DeviceType t, int i = 0) : type(t), index(t == DeviceType::CPU ? 0 : i) {}  // NOLINT
  Device(std::string_view spec);   // NOLINT: "cpu", "cuda", "cuda:N"; throws on anything else
  Device(const char* spec) : Device(std::string_view(spec)) {}  // NOLINT

  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  std::string str() const;
  friend bool operator==(const Device& a, const Device& b) { return a.type == b.type && a.index == b.index; }
};

inline const Device kCPU{DeviceType::CPU, 0};

}  // namespace hydra

template <>
struct fmt::formatter<hydra::Device> : fmt::formatter<std::string> {
  auto format(const hydra::Device& d, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(d.str(), ctx);
  }
};
