#pragma once
// Element types. bfloat16 is stored as its 16 raw bits and computed in float32; every other type computes
// in itself (float64 in double). Bool is one byte (0 or 1) and is what comparisons produce.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#if defined(__CUDACC__)
#define HYDRA_HD __host__ __device__
#else
#define HYDRA_HD
#endif

namespace hydra {

enum class DType : uint8_t { Float32, Float64, BFloat16, Int32, Int64, Bool };

// bfloat16: the top 16 bits of an IEEE float32. Conversion from float rounds to nearest even; NaN stays NaN.
struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  HYDRA_HD BFloat16(float f) : bits(from_float(f)) {}  // NOLINT: implicit on purpose, like a float type
  HYDRA_HD operator float() const { return to_float(bits); }

  HYDRA_HD static uint16_t from_float(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(u >> 16);
  }
  HYDRA_HD static float to_float(uint16_t b) {
    uint32_t u = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

std::size_t dtype_size(DType t);
std::string_view dtype_name(DType t);     // "float32", "float64", "bfloat16", "int32", "int64", "bool"
DType dtype_from_name(std::string_view name);  // throws with the list of known names
bool is_floating(DType t);
bool is_integral(DType t);                // int32, int64 (not bool)

template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::Float32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::Float64; };
template <> struct dtype_of<BFloat16> { static constexpr DType value = DType::BFloat16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::Int32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::Int64; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::Bool; };

// The type arithmetic is done in: float for bfloat16, the type itself otherwise.
template <typename T> struct compute_type { using type = T; };
template <> struct compute_type<BFloat16> { using type = float; };
template <typename T> using compute_t = typename compute_type<T>::type;

// Converts one element between dtypes: through compute_t of the source, then rounded to the destination (bf16
// round-to-nearest-even; to bool: non-zero). The one conversion used by the CPU and CUDA copy/cast kernels.
template <typename D, typename S>
HYDRA_HD inline D convert_value(S v) {
  if constexpr (std::is_same_v<D, bool>) {
    return static_cast<compute_t<S>>(v) != compute_t<S>(0);
  } else if constexpr (std::is_same_v<D, BFloat16>) {
    return BFloat16(static_cast<float>(static_cast<compute_t<S>>(v)));
  } else {
    return static_cast<D>(static_cast<compute_t<S>>(v));
  }
}

}  // namespace hydra
