#pragma once
// Philox4x32-10 and the derived values of the random stream (random.h documents the stream). Host/device
// inline functions: the CPU and CUDA generators call exactly this code, so raw words match bit for bit.
#include <cmath>
#include <cstdint>

#include "tensor/dtype.h"

namespace hydra::philox {

struct Block {
  uint32_t w[4];
};

HYDRA_HD inline Block philox4x32(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kMulA = 0xD2511F53u, kMulB = 0xCD9E8D57u;
  constexpr uint32_t kWeylA = 0x9E3779B9u, kWeylB = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t pa = static_cast<uint64_t>(kMulA) * c0;
    const uint64_t pb = static_cast<uint64_t>(kMulB) * c2;
    const uint32_t hi_a = static_cast<uint32_t>(pa >> 32), lo_a = static_cast<uint32_t>(pa);
    const uint32_t hi_b = static_cast<uint32_t>(pb >> 32), lo_b = static_cast<uint32_t>(pb);
    const uint32_t n0 = hi_b ^ c1 ^ k0, n2 = hi_a ^ c3 ^ k1;
    c0 = n0;
    c1 = lo_b;
    c2 = n2;
    c3 = lo_a;
    k0 += kWeylA;
    k1 += kWeylB;
  }
  return Block{{c0, c1, c2, c3}};
}

// The stream of a generator call: word i is word i % 4 of philox(counter = offset + i / 4, key = seed).
struct Stream {
  uint64_t seed, offset;
  HYDRA_HD Block block(uint64_t b) const {
    const uint64_t n = offset + b;
    return philox4x32(static_cast<uint32_t>(n), static_cast<uint32_t>(n >> 32), 0u, 0u, static_cast<uint32_t>(seed),
                      static_cast<uint32_t>(seed >> 32));
  }
  HYDRA_HD uint32_t word(uint64_t i) const { return block(i / 4).w[i % 4]; }
};

// Uniform in [0, 1) from 24 bits of one word (exact in float32 and float64).
HYDRA_HD inline double uniform24(uint32_t w) { return static_cast<double>(w >> 8) * (1.0 / 16777216.0); }
// Uniform in [0, 1) from 53 bits of two words (float64 outputs).
HYDRA_HD inline double uniform53(uint32_t a, uint32_t b) {
  return (static_cast<double>(a >> 5) * 67108864.0 + static_cast<double>(b >> 6)) * (1.0 / 9007199254740992.0);
}

}  // namespace hydra::philox

namespace hydra::philox {

// What one element of a generator call is: the raw word, a uniform, a normal, or an integer in a range.
enum class Dist : uint8_t { Bits, Uniform, Normal, RandInt };
struct DistParams {
  Dist dist = Dist::Uniform;
  double a = 0.0, b = 1.0;  // uniform: [a, b); normal: mean a, std b
  bool wide = false;        // uniform float64 outputs: 53 bits from two words per element
  int64_t low = 0;          // randint: low + floor(w · range / 2^32)
  uint64_t range = 1;
};

// Number of 128-bit blocks a call over n elements consumes.
HYDRA_HD inline uint64_t blocks_for(const DistParams& p, int64_t n) {
  uint64_t words = static_cast<uint64_t>(n);
  if (p.dist == Dist::Uniform && p.wide) words = 2 * words;
  if (p.dist == Dist::Normal) words = 2 * ((words + 1) / 2);
  return (words + 3) / 4;
}

// Element i of a call, as a double (exact for Bits and RandInt).
HYDRA_HD inline double sample(const Stream& s, const DistParams& p, int64_t i) {
  switch (p.dist) {
    case Dist::Bits: return static_cast<double>(s.word(i));
    case Dist::Uniform: {
      const double u = p.wide ? uniform53(s.word(2 * i), s.word(2 * i + 1)) : uniform24(s.word(i));
      return p.a + (p.b - p.a) * u;
    }
    case Dist::Normal: {
      // Box-Muller on the pair of uniforms (words 2j, 2j+1), j = i / 2; even i takes cos, odd i sin.
      const int64_t j = i / 2;
      const double u1 = 1.0 - uniform24(s.word(2 * j));
      const double u2 = uniform24(s.word(2 * j + 1));
      const double r = ::sqrt(-2.0 * ::log(u1));
      const double ang = 6.283185307179586476925 * u2;
      return p.a + p.b * r * (i % 2 == 0 ? ::cos(ang) : ::sin(ang));
    }
    case Dist::RandInt:
      return static_cast<double>(p.low + static_cast<int64_t>((static_cast<uint64_t>(s.word(i)) * p.range) >> 32));
  }
  return 0.0;
}

}  // namespace hydra::philox
