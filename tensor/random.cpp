#include "tensor/random.h"

#include "tensor/cpu/loops.h"
#include "tensor/cuda/ops.h"
#include "tensor/dispatch.h"
#include "tensor/philox.h"

namespace hydra {

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  const philox::Block b = philox::philox4x32(c[0], c[1], c[2], c[3], k[0], k[1]);
  return {b.w[0], b.w[1], b.w[2], b.w[3]};
}

namespace {

// Fills a contiguous CPU tensor with element i = sample(stream, params, i), in parallel over elements.
void random_fill_cpu(Tensor& t, const philox::Stream& s, const philox::DistParams& p) {
  dispatch_numeric(t.dtype(), "random", [&]<typename T>() {
    T* out = t.data<T>();
    cpu::parallel_for(t.numel(), 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const double v = philox::sample(s, p, i);
        if constexpr (std::is_same_v<T, BFloat16>) {
          out[i] = BFloat16(static_cast<float>(v));
        } else {
          out[i] = static_cast<T>(v);
        }
      }
    });
  });
}

// The one dispatch point of every generator call: reserves the blocks, then fills on the tensor's device.
Tensor& random_fill(Tensor& t, Generator& gen, const philox::DistParams& p, const char* op) {
  HYDRA_CHECK(t.is_contiguous(), "{}: tensor of shape {} must be contiguous", op, shape_str(t.shape()));
  const philox::Stream s{gen.seed(), gen.advance(philox::blocks_for(p, t.numel()))};
  switch (t.device().type) {
    case DeviceType::CPU: random_fill_cpu(t, s, p); break;
    case DeviceType::CUDA: cuda::random_fill(t, s.seed, s.offset, p); break;
  }
  return t;
}

}  // namespace

Tensor random_bits(Generator& gen, int64_t n, const Device& device) {
  HYDRA_CHECK(n >= 0, "random_bits: negative count {}", n);
  Tensor t = empty({n}, DType::Int64, device);
  philox::DistParams p;
  p.dist = philox::Dist::Bits;
  return random_fill(t, gen, p, "random_bits");
}

Tensor& uniform_(Tensor& t, double low, double high, Generator& gen) {
  check_floating(t, "uniform_");
  philox::DistParams p;
  p.dist = philox::Dist::Uniform;
  p.a = low;
  p.b = high;
  p.wide = t.dtype() == DType::Float64;
  return random_fill(t, gen, p, "uniform_");
}

Tensor& normal_(Tensor& t, double mean, double std, Generator& gen) {
  check_floating(t, "normal_");
  philox::DistParams p;
  p.dist = philox::Dist::Normal;
  p.a = mean;
  p.b = std;
  return random_fill(t, gen, p, "normal_");
}

Tensor rand(const Shape& shape, Generator& gen, DType dtype, const Device& device) {
  HYDRA_CHECK(is_floating(dtype), "uniform_: expected a floating dtype, got {}", dtype_name(dtype));
  Tensor t = empty(shape, dtype, device);
  return uniform_(t, 0.0, 1.0, gen);
}

Tensor randn(const Shape& shape, Generator& gen, DType dtype, const Device& device) {
  HYDRA_CHECK(is_floating(dtype), "normal_: expected a floating dtype, got {}", dtype_name(dtype));
  Tensor t = empty(shape, dtype, device);
  return normal_(t, 0.0, 1.0, gen);
}

Tensor randint(int64_t low, int64_t high, const Shape& shape, Generator& gen, DType dtype, const Device& device) {
  HYDRA_CHECK(high > low, "randint: empty range [{}, {})", low, high);
  HYDRA_CHECK(high - low <= (int64_t{1} << 32), "randint: range [{}, {}) wider than 2^32 is not supported", low, high);
  HYDRA_CHECK(dtype == DType::Int32 || dtype == DType::Int64, "randint: dtype must be int32 or int64, got {}",
              dtype_name(dtype));
  Tensor t = empty(shape, dtype, device);
  philox::DistParams p;
  p.dist = philox::Dist::RandInt;
  p.low = low;
  p.range = static_cast<uint64_t>(high - low);
  return random_fill(t, gen, p, "randint");
}

}  // namespace hydra
