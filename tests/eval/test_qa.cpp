// eval/qa.h: the SPEC §8.4 layout (haystack, K facts with distinct keys in distinct slots, Q queries of distinct
// facts in random order), the labels at q_j + 2, the depths and buckets, determinism and errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include "eval/qa.h"
#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::eval;
using hydra::test::check_throws_with;

namespace {

// Checks every row of a batch against SPEC §8.4; returns, per row, the fact index (by position) of each query.
std::vector<std::vector<int64_t>> check_qa_batch(const QaConfig& c, const QaBatch& qb, int64_t B) {
  const int64_t V = c.vocab_size, N = c.seq_len, K = c.num_facts, Q = c.num_queries, f = c.filler_size();
  const int64_t Nh = c.haystack_len();
  const int64_t KEY = V - 1, VAL = V - 2, QRY = V - 3;
  REQUIRE(qb.input_ids.shape() == Shape{B, N});
  REQUIRE(qb.labels.shape() == Shape{B, N});
  REQUIRE(qb.depth.size() == static_cast<size_t>(B * Q));
  const std::vector<int64_t> label_pos = qa_label_positions(c);
  REQUIRE(label_pos.size() == static_cast<size_t>(Q));
  auto is_content = [&](int64_t t) { return t >= f && t < V - 3; };
  const std::vector<int64_t> ids = qb.input_ids.to_vector<int64_t>(), lab = qb.labels.to_vector<int64_t>();
  std::vector<std::vector<int64_t>> ranks;
  for (int64_t b = 0; b < B; ++b) {
    INFO("row " << b);
    const int64_t* r = ids.data() + b * N;
    const int64_t* l = lab.data() + b * N;
    std::map<int64_t, int64_t> start_of, value_of;  // by key
    std::vector<int64_t> starts;
    for (int64_t t = 0; t < Nh;) {
      if (r[t] == KEY) {
        CHECK(t % 4 == 0);
        CHECK(t + 3 < Nh);
        CHECK(is_content(r[t + 1]));
        CHECK(r[t + 2] == VAL);
        CHECK(is_content(r[t + 3]));
        CHECK(start_of.count(r[t + 1]) == 0);  // distinct keys
        start_of[r[t + 1]] = t, value_of[r[t + 1]] = r[t + 3];
        starts.push_back(t);
        t += 4;
      } else {
        CHECK(r[t] >= 0);  // filler
        CHECK(r[t] < f);
        ++t;
      }
    }
    CHECK(static_cast<int64_t>(starts.size()) == K);  // K facts in distinct slots
    std::set<int64_t> asked;
    std::vector<int64_t> row_ranks;
    for (int64_t j = 0; j < Q; ++j) {
      const int64_t q = Nh + 4 * j;
      CHECK(label_pos[j] == q + 2);
      CHECK(r[q] == QRY);
      CHECK(r[q + 2] == VAL);
      const int64_t key = r[q + 1];
      REQUIRE(start_of.count(key) == 1);
      CHECK(r[q + 3] == value_of[key]);
      CHECK(l[q + 2] == value_of[key]);
      asked.insert(key);
      const double depth = qb.depth[b * Q + j];
      CHECK(depth == static_cast<double>(start_of[key]) / static_cast<double>(Nh));
      CHECK(depth >= 0);
      CHECK(depth < 1);
      CHECK(qa_depth_bucket(depth) == std::min(static_cast<int>(depth / 0.25), 3));
      row_ranks.push_back(std::find(starts.begin(), starts.end(), start_of[key]) - starts.begin());
    }
    CHECK(static_cast<int64_t>(asked.size()) == Q);  // Q distinct facts
    int64_t labelled = 0;
    for (int64_t t = 0; t < N; ++t) labelled += l[t] != -100;
    CHECK(labelled == Q);
    ranks.push_back(row_ranks);
  }
  return ranks;
}

}  // namespace

TEST_CASE("qa batches follow the SPEC 8.4 layout: distinct keys and slots, distinct queried facts, labels, depths") {
  QaConfig c;
  c.vocab_size = 64, c.seq_len = 200, c.num_facts = 6, c.num_queries = 4;  // f = 32, N_h = 184, 46 slots
  REQUIRE(c.haystack_len() == 184);
  Generator gen(hydra::test::base_seed());
  const int64_t B = 50;
  const QaBatch qb = make_qa_batch(c, B, gen);
  const auto ranks = check_qa_batch(c, qb, B);
  // random query order: the first query does not always ask an earlier fact than the second (P = 2^-50)
  bool some_later = false;
  for (const auto& r : ranks) some_later |= r[0] > r[1];
  CHECK(some_later);
  // depths cover more than one bucket
  std::set<int> buckets;
  for (double d : qb.depth) buckets.insert(qa_depth_bucket(d));
  CHECK(buckets.size() >= 3);
}

TEST_CASE("qa fills every key and every slot when the config leaves no room") {
  Generator gen(hydra::test::base_seed() + 1);
  SUBCASE("every content token is a key") {
    QaConfig c;  // content [32, 61): 29 tokens = K
    c.vocab_size = 64, c.num_facts = 29, c.num_queries = 29, c.seq_len = 4 * 58;
    check_qa_batch(c, make_qa_batch(c, 3, gen), 3);
  }
  SUBCASE("every slot is a fact") {
    QaConfig c;  // N_h = 24: 6 slots = K
    c.vocab_size = 64, c.num_facts = 6, c.num_queries = 2, c.seq_len = 32;
    const QaBatch qb = make_qa_batch(c, 3, gen);
    check_qa_batch(c, qb, 3);
    const std::vector<int64_t> ids = qb.input_ids.to_vector<int64_t>();
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t t = 0; t < 24; t += 4) CHECK(ids[b * 32 + t] == 63);
  }
}

TEST_CASE("qa batches are deterministic for a generator state") {
  QaConfig c;
  c.vocab_size = 80, c.seq_len = 150, c.num_facts = 5, c.num_queries = 3;
  Generator g1(11), g2(11), g3(12);
  const QaBatch a = make_qa_batch(c, 2, g1), b = make_qa_batch(c, 2, g2), d = make_qa_batch(c, 2, g3);
  CHECK(a.input_ids.to_vector<int64_t>() == b.input_ids.to_vector<int64_t>());
  CHECK(a.labels.to_vector<int64_t>() == b.labels.to_vector<int64_t>());
  CHECK(a.depth == b.depth);
  CHECK(a.input_ids.to_vector<int64_t>() != d.input_ids.to_vector<int64_t>());
  CHECK(qa_label_positions(c) == std::vector<int64_t>{140, 144, 148});
}

TEST_CASE("qa rejects configs it cannot lay out") {
  Generator gen(1);
  QaConfig c;
  c.vocab_size = 64, c.seq_len = 200, c.num_facts = 4, c.num_queries = 5;
  check_throws_with([&] { make_qa_batch(c, 1, gen); }, {"num_queries = 5 exceeds num_facts = 4"});
  c.num_queries = 2, c.num_facts = 30;  // content 29
  check_throws_with([&] { make_qa_batch(c, 1, gen); }, {"content range", "29 tokens", "num_facts = 30"});
  c.num_facts = 6, c.seq_len = 31;  // needs 4(K+Q) = 32
  check_throws_with([&] { make_qa_batch(c, 1, gen); }, {"seq_len 31", "4(K+Q) = 32"});
  c.seq_len = 200, c.vocab_size = 12;
  check_throws_with([&] { make_qa_batch(c, 1, gen); }, {"vocab_size 12", "V−3 > f+4"});
  c.vocab_size = 64, c.filler_frac = 1.0;
  check_throws_with([&] { make_qa_batch(c, 1, gen); }, {"filler_frac must be in (0, 1), got 1"});
  c.filler_frac = 0.5, c.num_queries = 0;
  check_throws_with([&] { qa_label_positions(c); }, {"num_queries must be ≥ 1, got 0"});
  c.num_queries = 2;
  check_throws_with([&] { make_qa_batch(c, 0, gen); }, {"batch must be ≥ 1, got 0"});
}
