#pragma once
// Division by a divisor fixed at launch time without a division instruction: a multiply-high, an add and a shift.
// GPUs have no integer divide; a 64-bit `/` or `%` compiles to a subroutine of ~100 instructions. The rows layout of
// the elementwise kernels uses it for its per-pack index math. (It was written when the strided copies ran at a
// fifth of the copy bandwidth; that turned out to be local-memory traffic, see Outer::offset in
// elementwise_cuda.cu, not the divisions, so this is a saving in instructions, not the fix for that.)
//
// Method (Granlund and Montgomery, "Division by invariant integers using multiplication", 1994): for a divisor
// 1 ≤ d < 2³¹ let s = ⌈log₂ d⌉ and m = ⌊2³² (2ˢ − d) / d⌋ + 1 (< 2³² because 2ˢ < 2d). Then for 0 ≤ n < 2³¹,
// ⌊n / d⌋ = (mulhi(n, m) + n) >> s, where mulhi is the high 32 bits of the 64-bit product (the sum stays below
// 2³² since mulhi(n, m) ≤ n). Tested against `/` on the host over random and edge-case operands
// (tests/tensor/test_fast_div.cpp); the device path is the same arithmetic with __umulhi.
#include <cstdint>
#include <stdexcept>

#include "tensor/dtype.h"  // HYDRA_HD

namespace hydra::cuda {

struct FastDiv {
  uint32_t d = 1;  // the divisor
  uint32_t m = 1;  // the magic multiplier
  uint32_t s = 0;  // the shift, ⌈log₂ d⌉

  FastDiv() = default;
  explicit FastDiv(int64_t divisor) {
    if (divisor < 1 || divisor >= (int64_t{1} << 31))
      throw std::invalid_argument("FastDiv: the divisor must be in [1, 2^31)");
    d = static_cast<uint32_t>(divisor);
    while ((uint64_t{1} << s) < d) ++s;
    m = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << s) - d)) / d + 1);
  }

  // ⌊n / d⌋ for 0 ≤ n < 2³¹.
  HYDRA_HD inline uint32_t div(uint32_t n) const {
#if defined(__CUDA_ARCH__)
    const uint32_t hi = __umulhi(n, m);
#else
    const uint32_t hi = static_cast<uint32_t>((uint64_t{n} * m) >> 32);
#endif
    return (hi + n) >> s;
  }
  // n mod d, given q = div(n).
  HYDRA_HD inline uint32_t mod(uint32_t n, uint32_t q) const { return n - q * d; }
};

// Operands of a FastDiv: below 2³¹.
constexpr int64_t kFastDivLimit = int64_t{1} << 31;

}  // namespace hydra::cuda
