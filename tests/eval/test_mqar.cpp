// eval/mqar.h: the SPEC §8.1 layout, labels, key/value spaces, determinism, errors and the scoring rule.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <set>

#include "eval/mqar.h"
#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::eval;
using hydra::test::check_throws_with;

TEST_CASE("mqar batches follow the SPEC layout: distinct keys values in their space queries and labels") {
  MqarConfig c;
  c.vocab_size = 64, c.num_kv_pairs = 8, c.num_queries = 12, c.seq_len = 50;
  Generator gen(hydra::test::base_seed());
  const MqarBatch m = make_mqar_batch(c, 5, gen);
  REQUIRE(m.input_ids.shape() == Shape{5, 50});
  const std::vector<int64_t> ids = m.input_ids.to_vector<int64_t>(), lab = m.labels.to_vector<int64_t>();
  for (int64_t b = 0; b < 5; ++b) {
    const int64_t* r = ids.data() + b * 50;
    const int64_t* l = lab.data() + b * 50;
    std::set<int64_t> keys;
    std::map<int64_t, int64_t> value_of;
    for (int64_t i = 0; i < 8; ++i) {
      CHECK(r[2 * i] >= 0);
      CHECK(r[2 * i] < 32);
      CHECK(r[2 * i + 1] >= 32);
      CHECK(r[2 * i + 1] < 64);
      keys.insert(r[2 * i]);
      value_of[r[2 * i]] = r[2 * i + 1];
    }
    CHECK(keys.size() == 8);  // distinct
    int labelled = 0;
    for (int64_t t = 0; t < 50; ++t) labelled += l[t] != -100;
    CHECK(labelled == 12);
    for (int64_t j = 0; j < 12; ++j) {
      const int64_t k = r[16 + 2 * j];
      REQUIRE(value_of.count(k));
      CHECK(r[16 + 2 * j + 1] == value_of[k]);
      CHECK(l[16 + 2 * j] == value_of[k]);
      CHECK(l[16 + 2 * j + 1] == -100);
    }
    for (int64_t t = 40; t < 50; ++t) CHECK(r[t] == 0);  // padding
  }
  // deterministic for a generator state; different for another
  Generator g1(7), g2(7), g3(8);
  CHECK(make_mqar_batch(c, 3, g1).input_ids.to_vector<int64_t>() == make_mqar_batch(c, 3, g2).input_ids.to_vector<int64_t>());
  CHECK(make_mqar_batch(c, 3, g3).input_ids.to_vector<int64_t>() != make_mqar_batch(c, 3, g1).input_ids.to_vector<int64_t>());
}

TEST_CASE("mqar rejects configs it cannot lay out") {
  Generator gen(1);
  MqarConfig c;
  c.vocab_size = 64, c.num_kv_pairs = 8, c.num_queries = 8, c.seq_len = 31;
  check_throws_with([&] { make_mqar_batch(c, 1, gen); }, {"seq_len 31", "2(P+Q) = 32"});
  c.seq_len.reset();
  c.vocab_size = 10;
  check_throws_with([&] { make_mqar_batch(c, 1, gen); }, {"key space of 5", "num_kv_pairs = 8"});
}

TEST_CASE("mqar scoring counts answer positions only and matches the cross-entropy by hand") {
  // B = 1, N = 4, V = 3; labels at positions 1 and 3 (3 is the last position: excluded by the 0..N−2 rule)
  const Tensor logits = from_vector<double>({0, 0, 0, 1, 2, 0, 0, 0, 0, 5, 0, 0}, {1, 4, 3});
  const Tensor labels = from_vector<int64_t>({-100, 1, -100, 0}, {1, 4});
  const MqarScore s = score_mqar(logits, labels);
  CHECK(s.count == 1);
  CHECK(s.correct == 1);
  CHECK(s.loss_sum == doctest::Approx(std::log(std::exp(1.0) + std::exp(2.0) + 1.0) - 2.0));
}
