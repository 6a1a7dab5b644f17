// eval/needle.h: the SPEC §8.2 layout (markers, filler and content ranges, K distinct slots, the trailer, the one
// label), the depth bookkeeping, depth_fraction placement, determinism, errors, readout positions and buckets, and
// the SPEC §8.3 script layout.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <set>
#include <vector>

#include "eval/needle.h"
#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::eval;
using hydra::test::check_throws_with;

namespace {

struct RowView {
  const int64_t* ids;
  const int64_t* labels;
};

// Checks one SPEC §8.2 row and returns the needle starts (ascending).
std::vector<int64_t> check_needle_row(const NeedleConfig& c, RowView r, int64_t depth) {
  const int64_t V = c.vocab_size, N = c.seq_len, f = c.filler_size();
  const int64_t KEY = V - 1, VAL = V - 2, QRY = V - 3;
  auto is_content = [&](int64_t t) { return t >= f && t < V - 3; };
  std::vector<int64_t> starts;
  for (int64_t t = 0; t < N - 4;) {
    if (r.ids[t] == KEY) {
      starts.push_back(t);
      CHECK(t % 4 == 0);
      CHECK(t / 4 <= c.max_slot());
      CHECK(is_content(r.ids[t + 1]));
      CHECK(r.ids[t + 2] == VAL);
      CHECK(is_content(r.ids[t + 3]));
      t += 4;
    } else {
      CHECK(r.ids[t] >= 0);  // filler
      CHECK(r.ids[t] < f);
      ++t;
    }
  }
  CHECK(static_cast<int64_t>(starts.size()) == c.num_needles);  // K distinct slots (needles cannot overlap)
  // trailer
  CHECK(r.ids[N - 4] == QRY);
  CHECK(is_content(r.ids[N - 3]));
  CHECK(r.ids[N - 2] == VAL);
  CHECK(is_content(r.ids[N - 1]));
  // the one label: the value, at N−2
  for (int64_t t = 0; t < N; ++t) CHECK(r.labels[t] == (t == N - 2 ? r.ids[N - 1] : -100));
  // depth = the start of the queried needle: a needle start whose key and value are the trailer's
  REQUIRE(std::find(starts.begin(), starts.end(), depth) != starts.end());
  CHECK(r.ids[depth + 1] == r.ids[N - 3]);
  CHECK(r.ids[depth + 3] == r.ids[N - 1]);
  return starts;
}

}  // namespace

TEST_CASE("needle batches follow the SPEC 8.2 layout with K distinct slots and the depth of the queried needle") {
  NeedleConfig c;
  c.vocab_size = 64, c.seq_len = 102, c.num_needles = 3;  // f = 32, content [32, 61), m = ⌊98/4⌋ − 3 = 21
  REQUIRE(c.filler_size() == 32);
  REQUIRE(c.max_slot() == 21);
  Generator gen(hydra::test::base_seed());
  const int64_t B = 40;
  const NeedleBatch nb = make_needle_batch(c, B, gen);
  REQUIRE(nb.input_ids.shape() == Shape{B, 102});
  REQUIRE(nb.labels.shape() == Shape{B, 102});
  REQUIRE(nb.input_ids.dtype() == DType::Int64);
  REQUIRE(nb.depth.size() == static_cast<size_t>(B));
  const std::vector<int64_t> ids = nb.input_ids.to_vector<int64_t>(), lab = nb.labels.to_vector<int64_t>();
  std::set<int64_t> queried_rank;  // which needle (by position) was queried: must not always be the same one
  for (int64_t b = 0; b < B; ++b) {
    INFO("row " << b);
    const std::vector<int64_t> starts = check_needle_row(c, {ids.data() + b * 102, lab.data() + b * 102}, nb.depth[b]);
    queried_rank.insert(std::find(starts.begin(), starts.end(), nb.depth[b]) - starts.begin());
  }
  CHECK(queried_rank.size() >= 2);  // P(all 40 the same) = 3·3^-40

  // Uniform slots over 0..m, endpoints included: K = 1, N = 28 gives m = 5.
  NeedleConfig s;
  s.vocab_size = 64, s.seq_len = 28, s.num_needles = 1;
  REQUIRE(s.max_slot() == 5);
  const NeedleBatch sb = make_needle_batch(s, 300, gen);
  std::set<int64_t> seen(sb.depth.begin(), sb.depth.end());
  CHECK(seen == std::set<int64_t>{0, 4, 8, 12, 16, 20});
}

TEST_CASE("needle depth_fraction places the queried needle at slot round(depth_fraction times m)") {
  NeedleConfig c;
  c.vocab_size = 64, c.seq_len = 102, c.num_needles = 3;
  const int64_t m = c.max_slot();
  Generator gen(hydra::test::base_seed() + 1);
  for (double df : {0.0, 1.0, 0.5, 0.3}) {
    INFO("depth_fraction " << df);
    c.depth_fraction = df;
    const NeedleBatch nb = make_needle_batch(c, 12, gen);
    const std::vector<int64_t> ids = nb.input_ids.to_vector<int64_t>(), lab = nb.labels.to_vector<int64_t>();
    for (int64_t b = 0; b < 12; ++b) {
      CHECK(nb.depth[b] == 4 * std::llround(df * static_cast<double>(m)));
      check_needle_row(c, {ids.data() + b * 102, lab.data() + b * 102}, nb.depth[b]);
    }
    if (df == 0.0) CHECK(nb.depth[0] == 0);
    if (df == 1.0) CHECK(nb.depth[0] == 4 * m);
  }
  // The default size: depth ≈ depth_fraction·N.
  NeedleConfig d;
  d.depth_fraction = 0.5;
  const NeedleBatch nb = make_needle_batch(d, 1, gen);
  CHECK(std::abs(static_cast<double>(nb.depth[0]) / 8192.0 - 0.5) < 0.01);
}

TEST_CASE("needle batches are deterministic for a generator state") {
  NeedleConfig c;
  c.vocab_size = 100, c.seq_len = 77, c.num_needles = 2;
  Generator g1(7), g2(7), g3(8);
  const NeedleBatch a = make_needle_batch(c, 3, g1), b = make_needle_batch(c, 3, g2), d = make_needle_batch(c, 3, g3);
  CHECK(a.input_ids.to_vector<int64_t>() == b.input_ids.to_vector<int64_t>());
  CHECK(a.labels.to_vector<int64_t>() == b.labels.to_vector<int64_t>());
  CHECK(a.depth == b.depth);
  CHECK(a.input_ids.to_vector<int64_t>() != d.input_ids.to_vector<int64_t>());
  // the generator advances: the next batch differs
  CHECK(make_needle_batch(c, 3, g1).input_ids.to_vector<int64_t>() != a.input_ids.to_vector<int64_t>());
}

TEST_CASE("needle rejects configs it cannot lay out") {
  Generator gen(1);
  NeedleConfig c;
  c.vocab_size = 12;  // f = 6: V−3 = 9 is not > f+4 = 10
  check_throws_with([&] { make_needle_batch(c, 1, gen); }, {"vocab_size 12", "V−3 > f+4", "f = ⌊V·filler_frac⌋ = 6"});
  c.vocab_size = 64, c.num_needles = 2, c.seq_len = 19;
  check_throws_with([&] { make_needle_batch(c, 1, gen); }, {"seq_len 19", "num_needles = 2", "8K+4 = 20"});
  c.seq_len = 20;  // m = 4 − 2 = 2 ≥ K: the shortest valid length
  CHECK_NOTHROW(make_needle_batch(c, 1, gen));
  c.num_needles = 0;
  check_throws_with([&] { make_needle_batch(c, 1, gen); }, {"num_needles must be ≥ 1, got 0"});
  c.num_needles = 1;
  for (double bad : {1.5, -0.1, std::numeric_limits<double>::quiet_NaN()}) {
    c.depth_fraction = bad;
    check_throws_with([&] { make_needle_batch(c, 1, gen); }, {"depth_fraction must be in [0, 1]"});
  }
  c.depth_fraction.reset();
  c.filler_frac = 0;
  check_throws_with([&] { make_needle_batch(c, 1, gen); }, {"filler_frac must be in (0, 1), got 0"});
  c.filler_frac = 0.5;
  check_throws_with([&] { make_needle_batch(c, 0, gen); }, {"batch must be ≥ 1, got 0"});
}

TEST_CASE("needle readout positions, names and depth buckets") {
  CHECK(needle_readout_position(8192, NeedleReadout::Reference) == 8189);
  CHECK(needle_readout_position(8192, NeedleReadout::Corrected) == 8190);
  CHECK(std::string(needle_readout_name(NeedleReadout::Reference)) == "reference");
  CHECK(std::string(needle_readout_name(NeedleReadout::Corrected)) == "corrected");
  check_throws_with([] { needle_readout_position(2, NeedleReadout::Corrected); }, {"seq_len must be ≥ 3, got 2"});
  CHECK(needle_depth_bucket(0.0) == 0);
  CHECK(needle_depth_bucket(0.2499) == 0);
  CHECK(needle_depth_bucket(0.25) == 1);
  CHECK(needle_depth_bucket(0.5) == 2);
  CHECK(needle_depth_bucket(0.74) == 2);
  CHECK(needle_depth_bucket(0.75) == 3);
  CHECK(needle_depth_bucket(0.999) == 3);
  CHECK(needle_depth_bucket(1.0) == 3);
  CHECK(needle_depth_bucket(7.0) == 3);
  check_throws_with([] { needle_depth_bucket(-0.1); }, {"needle_depth_bucket", "-0.1"});
  CHECK(std::string(depth_bucket_name(0)) == "acc_depth_0_25");
  CHECK(std::string(depth_bucket_name(3)) == "acc_depth_75_100");
  check_throws_with([] { depth_bucket_name(4); }, {"bucket must be in 0..3, got 4"});
}

TEST_CASE("needle script batches follow the SPEC 8.3 layout") {
  const int64_t V = 16, N = 40, KEY = V - 2, B = 30;
  Generator gen(hydra::test::base_seed() + 2);
  const NeedleBatch nb = make_needle_script_batch(V, N, B, gen);
  REQUIRE(nb.input_ids.shape() == Shape{B, N});
  REQUIRE(nb.depth.size() == static_cast<size_t>(B));
  const std::vector<int64_t> ids = nb.input_ids.to_vector<int64_t>(), lab = nb.labels.to_vector<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    INFO("row " << b);
    const int64_t* r = ids.data() + b * N;
    const int64_t* l = lab.data() + b * N;
    const int64_t pos = nb.depth[b];
    CHECK(pos >= 1);
    CHECK(pos <= N - 5);
    CHECK(r[pos] == KEY);
    CHECK(r[N - 2] == KEY);
    CHECK(r[pos + 1] == r[N - 1]);
    CHECK(r[N - 1] >= 0);
    CHECK(r[N - 1] < V - 2);
    for (int64_t t = 0; t < N; ++t) {
      if (t != pos && t != N - 2) {
        CHECK(r[t] >= 0);
        CHECK(r[t] < V - 2);  // filler and values never use V−2 or V−1
      }
      CHECK(l[t] == (t == N - 2 ? r[N - 1] : -100));
    }
  }
  // pos ~ U{1..N−5}, endpoints included: N = 8 gives {1, 2, 3}
  const NeedleBatch small = make_needle_script_batch(4, 8, 100, gen);
  CHECK(std::set<int64_t>(small.depth.begin(), small.depth.end()) == std::set<int64_t>{1, 2, 3});
  // deterministic
  Generator g1(3), g2(3);
  CHECK(make_needle_script_batch(V, N, 2, g1).input_ids.to_vector<int64_t>() ==
        make_needle_script_batch(V, N, 2, g2).input_ids.to_vector<int64_t>());
  check_throws_with([&] { make_needle_script_batch(3, N, 1, gen); }, {"vocab must be ≥ 4, got 3"});
  check_throws_with([&] { make_needle_script_batch(V, 5, 1, gen); }, {"seq_len must be ≥ 6", "got 5"});
}
