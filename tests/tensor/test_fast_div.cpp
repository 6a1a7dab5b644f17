// FastDiv (tensor/cuda/fast_div.h): ⌊n/d⌋ by multiply-high against the `/` operator, on the host (the device path is
// the same arithmetic with __umulhi; the CUDA elementwise tests exercise it through the rows layout).
#include <random>

#include "tensor/cuda/fast_div.h"
#include "tests/test_util.h"

using hydra::cuda::FastDiv;
using hydra::cuda::kFastDivLimit;

namespace {

void check_div(const FastDiv& f, uint32_t n) {
  const uint32_t q = f.div(n);
  if (q != n / f.d || f.mod(n, q) != n % f.d) {
    FAIL_CHECK("FastDiv(" << f.d << ").div(" << n << ") = " << q << ", expected " << n / f.d);
  }
}

}  // namespace

TEST_CASE("FastDiv: quotient and remainder equal integer division for divisors and dividends below 2^31") {
  const uint64_t seed = hydra::test::base_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  const uint32_t top = static_cast<uint32_t>(kFastDivLimit - 1);
  std::vector<uint32_t> divisors = {1, 2, 3, 5, 7, 64, 96, 768, 2049, 2304, 65535, 65536, 65537, top - 1, top};
  for (uint32_t s = 1; s < 31; ++s) {  // around every power of two
    divisors.push_back((1u << s) - 1), divisors.push_back(1u << s), divisors.push_back((1u << s) + 1);
  }
  for (int i = 0; i < 200; ++i) divisors.push_back(1 + static_cast<uint32_t>(rng() % top));
  for (int i = 0; i < 200; ++i) divisors.push_back(1 + static_cast<uint32_t>(rng() % 4096));
  for (uint32_t d : divisors) {
    const FastDiv f(d);
    // The dividends where a rounding error would first show: multiples of d and their neighbours, the ends.
    for (uint32_t n : {0u, 1u, d - 1, d, d + 1, top - 1, top}) check_div(f, n);
    for (uint64_t k = 1; k * d < static_cast<uint64_t>(top); k = k * 3 + 1) {
      const uint32_t n = static_cast<uint32_t>(k * d);
      check_div(f, n - 1), check_div(f, n);
      if (n < top) check_div(f, n + 1);
    }
    for (int i = 0; i < 2000; ++i) check_div(f, static_cast<uint32_t>(rng() % kFastDivLimit));
  }
  // Every dividend below 2^20 for small divisors, exhaustively.
  for (uint32_t d = 1; d <= 40; ++d) {
    const FastDiv f(d);
    for (uint32_t n = 0; n < (1u << 20); ++n) check_div(f, n);
  }
}

TEST_CASE("FastDiv: a divisor below 1 or from 2^31 up is refused") {
  CHECK_THROWS_WITH_AS(FastDiv{0}, doctest::Contains("[1, 2^31)"), std::invalid_argument);
  CHECK_THROWS_AS(FastDiv{kFastDivLimit}, std::invalid_argument);
  CHECK_NOTHROW(FastDiv{kFastDivLimit - 1});
}
