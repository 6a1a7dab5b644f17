#include "tensor/random.h"

#include <cmath>
#include <numbers>

#include "tensor/cpu/loops.h"
#include "tensor/dispatch.h"

namespace hydra {

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  constexpr uint32_t kMulA = 0xD2511F53u, kMulB = 0xCD9E8D57u;
  constexpr uint32_t kWeylA = 0x9E3779B9u, kWeylB = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t pa = static_cast<uint64_t>(kMulA) * c[0];
    const uint64_t pb = static_cast<uint64_t>(kMulB) * c[2];
    const uint32_t hi_a = static_cast<uint32_t>(pa >> 32), lo_a = static_cast<uint32_t>(pa);
    const uint32_t hi_b = static_cast<uint32_t>(pb >> 32), lo_b = static_cast<uint32_t>(pb);
    c = {hi_b ^ c[1] ^ k[0], lo_b, hi_a ^ c[3] ^ k[1], lo_a};
    k[0] += kWeylA;
    k[1] += kWeylB;
  }
  return c;
}

namespace {

// Word i of the stream that starts at block `offset`.
struct Stream {
  uint64_t seed, offset;
  std::array<uint32_t, 4> block(uint64_t b) const {
    const uint64_t n = offset + b;
    return philox4x32({static_cast<uint32_t>(n), static_cast<uint32_t>(n >> 32), 0u, 0u},
                      {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
  }
  uint32_t word(uint64_t i) const { return block(i / 4)[i % 4]; }
};

double uniform24(uint32_t w) { return static_cast<double>(w >> 8) * 0x1.0p-24; }
double uniform53(uint32_t a, uint32_t b) {
  return (static_cast<double>(a >> 5) * 67108864.0 + static_cast<double>(b >> 6)) * 0x1.0p-53;
}

// Fills a contiguous CPU tensor: value(i, stream) for each element, in parallel over blocks of elements.
template <typename T, typename F>
void fill_elements(Tensor& t, const Stream& s, F value) {
  T* p = t.data<T>();
  cpu::parallel_for(t.numel(), 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      if constexpr (std::is_same_v<T, BFloat16>) {
        p[i] = BFloat16(static_cast<float>(value(i, s)));
      } else {
        p[i] = static_cast<T>(value(i, s));
      }
    }
  });
}

Tensor make_host(const Shape& shape, DType dtype, const Device& device, const char* op) {
  if (!device.is_cpu()) cuda_kernel_missing(op);
  return empty(shape, dtype, kCPU);
}

}  // namespace

Tensor random_bits(Generator& gen, int64_t n, const Device& device) {
  HYDRA_CHECK(n >= 0, "random_bits: negative count {}", n);
  Stream s{gen.seed(), gen.advance((n + 3) / 4)};
  Tensor t = make_host({n}, DType::Int64, device, "random_bits");
  fill_elements<int64_t>(t, s, [](int64_t i, const Stream& st) { return static_cast<int64_t>(st.word(i)); });
  return t;
}

Tensor& uniform_(Tensor& t, double low, double high, Generator& gen) {
  check_floating(t, "uniform_");
  HYDRA_CHECK(t.is_contiguous(), "uniform_: tensor of shape {} must be contiguous", shape_str(t.shape()));
  if (!t.is_cpu()) cuda_kernel_missing("uniform_");
  const bool wide = t.dtype() == DType::Float64;
  Stream s{gen.seed(), gen.advance((t.numel() * (wide ? 2 : 1) + 3) / 4)};
  dispatch_floating(t.dtype(), "uniform_", [&]<typename T>() {
    fill_elements<T>(t, s, [&](int64_t i, const Stream& st) {
      const double u = wide ? uniform53(st.word(2 * i), st.word(2 * i + 1)) : uniform24(st.word(i));
      return low + (high - low) * u;
    });
  });
  return t;
}

Tensor& normal_(Tensor& t, double mean, double std, Generator& gen) {
  check_floating(t, "normal_");
  HYDRA_CHECK(t.is_contiguous(), "normal_: tensor of shape {} must be contiguous", shape_str(t.shape()));
  if (!t.is_cpu()) cuda_kernel_missing("normal_");
  const int64_t pairs = (t.numel() + 1) / 2;
  Stream s{gen.seed(), gen.advance((2 * pairs + 3) / 4)};
  dispatch_floating(t.dtype(), "normal_", [&]<typename T>() {
    fill_elements<T>(t, s, [&](int64_t i, const Stream& st) {
      const int64_t j = i / 2;
      const double u1 = 1.0 - uniform24(st.word(2 * j));
      const double u2 = uniform24(st.word(2 * j + 1));
      const double r = std::sqrt(-2.0 * std::log(u1));
      const double a = 2.0 * std::numbers::pi * u2;
      return mean + std * r * (i % 2 == 0 ? std::cos(a) : std::sin(a));
    });
  });
  return t;
}

Tensor rand(const Shape& shape, Generator& gen, DType dtype, const Device& device) {
  Tensor t = make_host(shape, dtype, device, "rand");
  return uniform_(t, 0.0, 1.0, gen);
}

Tensor randn(const Shape& shape, Generator& gen, DType dtype, const Device& device) {
  Tensor t = make_host(shape, dtype, device, "randn");
  return normal_(t, 0.0, 1.0, gen);
}

Tensor randint(int64_t low, int64_t high, const Shape& shape, Generator& gen, DType dtype, const Device& device) {
  HYDRA_CHECK(high > low, "randint: empty range [{}, {})", low, high);
  HYDRA_CHECK(high - low <= (int64_t{1} << 32), "randint: range [{}, {}) wider than 2^32 is not supported", low, high);
  HYDRA_CHECK(dtype == DType::Int32 || dtype == DType::Int64, "randint: dtype must be int32 or int64, got {}",
              dtype_name(dtype));
  Tensor t = make_host(shape, dtype, device, "randint");
  Stream s{gen.seed(), gen.advance((t.numel() + 3) / 4)};
  const uint64_t range = static_cast<uint64_t>(high - low);
  dispatch_index(dtype, "randint", [&]<typename T>() {
    fill_elements<T>(t, s, [&](int64_t i, const Stream& st) {
      return low + static_cast<int64_t>((static_cast<uint64_t>(st.word(i)) * range) >> 32);
    });
  });
  return t;
}

}  // namespace hydra
