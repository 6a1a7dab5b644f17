#include "tensor/dtype.h"

#include "tensor/check.h"

namespace hydra {

std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::BFloat16: return 2;
    case DType::Int32: return 4;
    case DType::Int64: return 8;
    case DType::Bool: return 1;
  }
  HYDRA_CHECK(false, "dtype_size: unknown dtype {}", static_cast<int>(t));
}

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::BFloat16: return "bfloat16";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::Bool: return "bool";
  }
  return "unknown";
}

DType dtype_from_name(std::string_view name) {
  for (DType t : {DType::Float32, DType::Float64, DType::BFloat16, DType::Int32, DType::Int64, DType::Bool})
    if (dtype_name(t) == name) return t;
  if (name == "bf16") return DType::BFloat16;
  if (name == "fp32") return DType::Float32;
  if (name == "fp64") return DType::Float64;
  HYDRA_CHECK(false, "unknown dtype '{}': expected one of float32, float64, bfloat16 (bf16), int32, int64, bool",
              name);
}

bool is_floating(DType t) { return t == DType::Float32 || t == DType::Float64 || t == DType::BFloat16; }
bool is_integral(DType t) { return t == DType::Int32 || t == DType::Int64; }

}  // namespace hydra
