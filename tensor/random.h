#pragma once
// Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11), the same generator cuRAND and PyTorch use
// for their counter-based streams.
//
// The stream for a Generator is a pure function of (seed, offset): the i-th 32-bit word drawn by a call is
// word (i mod 4) of philox(key = seed, counter = offset + i / 4), with the 128-bit counter's low 64 bits
// holding the block number. A call consumes ceil(words / 4) blocks and advances the offset by that, so every
// element is computed independently of the others: identical on every device and for every thread count.
//
// Derived values (per element i of the output):
//   uniform float32/bfloat16:  (w_i >> 8) * 2^-24                     in [0, 1), 24 random bits
//   uniform float64:           ((w_2i >> 5) * 2^26 + (w_2i+1 >> 6)) * 2^-53   in [0, 1)
//   normal: Box-Muller on the pair (u1, u2) = uniforms from words 2j and 2j+1, j = i / 2, with u1 replaced
//           by 1 - u1 (so it is in (0, 1]); element 2j gets r·cos(2πu2), element 2j+1 gets r·sin(2πu2),
//           r = sqrt(-2 ln u1). Computed in float64, then rounded to the output dtype.
//   randint in [low, high): low + floor(w_i · (high − low) / 2^32)  (range ≤ 2^32; bias ≤ range/2^32)
// The raw words are exact integers, so they agree bit for bit everywhere; derived floats agree to rounding.
#include <array>
#include <cstdint>

#include "tensor/tensor_core.h"

namespace hydra {

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }  // in 128-bit blocks
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed, offset_ = offset; }
  // Reserves `blocks` Philox blocks and returns the first block's offset.
  uint64_t advance(uint64_t blocks) {
    uint64_t o = offset_;
    offset_ += blocks;
    return o;
  }

 private:
  uint64_t seed_ = 0;
  uint64_t offset_ = 0;
};

// The raw stream: `n` words starting at block `offset` (word i = word i%4 of block offset + i/4).
Tensor random_bits(Generator& gen, int64_t n, const Device& device = kCPU);  // int64 tensor holding uint32 values
Tensor rand(const Shape& shape, Generator& gen, DType dtype = DType::Float32, const Device& device = kCPU);
Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::Float32, const Device& device = kCPU);
Tensor randint(int64_t low, int64_t high, const Shape& shape, Generator& gen, DType dtype = DType::Int64,
               const Device& device = kCPU);
// uniform in [low, high) and normal(mean, std), in place
Tensor& uniform_(Tensor& t, double low, double high, Generator& gen);
Tensor& normal_(Tensor& t, double mean, double std, Generator& gen);

}  // namespace hydra
