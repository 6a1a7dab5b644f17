// Philox4x32-10 stream: known-answer vectors, independence from thread count, distribution sanity.
#include <omp.h>

#include <cmath>

#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

TEST_CASE("philox4x32-10 matches the published known-answer vectors") {
  // Known-answer tests of the Random123 distribution (kat_vectors), philox4x32 with 10 rounds.
  CHECK(philox4x32({0, 0, 0, 0}, {0, 0}) == std::array<uint32_t, 4>{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  CHECK(philox4x32({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu}) ==
        std::array<uint32_t, 4>{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  CHECK(philox4x32({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u}) ==
        std::array<uint32_t, 4>{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST_CASE("the raw stream is identical for every thread count and continues across calls") {
  const uint64_t seed = base_seed();
  INFO("seed " << seed);
  const int keep = omp_get_max_threads();
  std::vector<std::vector<int64_t>> runs;
  std::vector<std::vector<float>> normals;
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    Generator g(seed);
    runs.push_back(random_bits(g, 100003).to_vector<int64_t>());
    normals.push_back(randn({70001}, g).to_vector<float>());
  }
  omp_set_num_threads(keep);
  CHECK(runs[0] == runs[1]);
  CHECK(runs[0] == runs[2]);
  CHECK(normals[0] == normals[1]);
  CHECK(normals[0] == normals[2]);
  // Two calls of n and m words equal one call of n + m when n is a multiple of 4 (whole blocks).
  Generator a(seed), b(seed);
  std::vector<int64_t> first = random_bits(a, 8).to_vector<int64_t>(), second = random_bits(a, 4).to_vector<int64_t>();
  std::vector<int64_t> both = random_bits(b, 12).to_vector<int64_t>();
  first.insert(first.end(), second.begin(), second.end());
  CHECK(first == both);
  // Word i of a stream is word i % 4 of philox(counter = offset + i / 4, key = seed).
  auto blk = philox4x32({2, 0, 0, 0}, {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
  CHECK(static_cast<uint32_t>(both[9]) == blk[1]);
  // Different seeds differ.
  Generator c(seed + 1);
  CHECK(random_bits(c, 12).to_vector<int64_t>() != both);
}

TEST_CASE("uniform, normal and randint have the right ranges and moments") {
  Generator g = fresh_generator();
  for (DType dt : {DType::Float32, DType::Float64, DType::BFloat16}) {
    INFO(dtype_name(dt));
    std::vector<double> u = rand({200000}, g, dt).to_vector<double>();
    double mean = 0, mn = 1, mx = 0;
    for (double v : u) {
      mean += v;
      mn = std::min(mn, v);
      mx = std::max(mx, v);
    }
    mean /= u.size();
    CHECK(mn >= 0.0);
    CHECK(mx <= 1.0);  // bf16 may round values just below 1 up to 1
    CHECK(std::abs(mean - 0.5) < 0.01);
    std::vector<double> n = randn({200000}, g, dt).to_vector<double>();
    double m1 = 0, m2 = 0;
    for (double v : n) m1 += v, m2 += v * v;
    m1 /= n.size();
    m2 /= n.size();
    CHECK(std::abs(m1) < 0.01);
    CHECK(std::abs(m2 - 1.0) < 0.02);
  }
  std::vector<int64_t> r = randint(-3, 5, {100000}, g).to_vector<int64_t>();
  std::vector<int> hist(8, 0);
  int64_t out_of_range = 0;
  for (int64_t v : r) {
    if (v < -3 || v >= 5) {
      ++out_of_range;
      continue;
    }
    hist[v + 3]++;
  }
  CHECK(out_of_range == 0);
  for (int h : hist) CHECK(std::abs(h - 12500) < 600);
  check_throws_with([&] { randint(3, 3, {2}, g); }, {"randint", "empty range"});
  check_throws_with([&] { randn({2}, g, DType::Int64); }, {"normal_", "int64"});
}
