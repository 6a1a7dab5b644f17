// Multi-fact long-context QA generator (qa.h, SPEC §8.4).
#include "eval/qa.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "tensor/check.h"

namespace hydra::eval {

namespace {

// ⌊x·n⌋ for a uniform x in [0, 1), kept below n against rounding: a uniform draw from {0, …, n−1}.
int64_t pick(double x, int64_t n) { return std::min<int64_t>(static_cast<int64_t>(x * static_cast<double>(n)), n - 1); }

// The first k entries of a partial Fisher–Yates shuffle of 0..n−1 driven by u[0..k): k distinct values, uniform.
void distinct_prefix(std::vector<int64_t>& pool, int64_t n, int64_t k, const double* u) {
  pool.resize(static_cast<size_t>(n));
  std::iota(pool.begin(), pool.end(), 0);
  for (int64_t i = 0; i < k; ++i) std::swap(pool[i], pool[i + pick(u[i], n - i)]);
}

}  // namespace

int64_t QaConfig::filler_size() const {
  return static_cast<int64_t>(std::floor(static_cast<double>(vocab_size) * filler_frac));
}

void QaConfig::validate() const {
  HYDRA_CHECK(num_facts >= 1, "qa: num_facts must be ≥ 1, got {}", num_facts);
  HYDRA_CHECK(num_queries >= 1, "qa: num_queries must be ≥ 1, got {}", num_queries);
  HYDRA_CHECK(num_queries <= num_facts, "qa: num_queries = {} exceeds num_facts = {} (queries ask distinct facts)",
              num_queries, num_facts);
  HYDRA_CHECK(std::isfinite(filler_frac) && filler_frac > 0 && filler_frac < 1,
              "qa: filler_frac must be in (0, 1), got {}", filler_frac);
  const int64_t f = filler_size();
  HYDRA_CHECK(f >= 1, "qa: vocab_size {} with filler_frac {} gives no filler tokens (f = ⌊V·filler_frac⌋ = 0)",
              vocab_size, filler_frac);
  HYDRA_CHECK(vocab_size - 3 > f + 4,
              "qa: vocab_size {} is too small for filler_frac {}: needs V−3 > f+4 with f = ⌊V·filler_frac⌋ = {}",
              vocab_size, filler_frac, f);
  HYDRA_CHECK(vocab_size - 3 - f >= num_facts,
              "qa: vocab_size {} with filler_frac {} has a content range [f, V−3) of {} tokens, fewer than "
              "num_facts = {} distinct keys",
              vocab_size, filler_frac, vocab_size - 3 - f, num_facts);
  HYDRA_CHECK(seq_len >= 4 * (num_facts + num_queries),
              "qa: seq_len {} is too short for num_facts = {} and num_queries = {} (needs ⌊N_h/4⌋ ≥ K slots with "
              "N_h = N−4Q, i.e. N ≥ 4(K+Q) = {})",
              seq_len, num_facts, num_queries, 4 * (num_facts + num_queries));
}

QaBatch make_qa_batch(const QaConfig& cfg, int64_t batch, Generator& gen) {
  cfg.validate();
  HYDRA_CHECK(batch >= 1, "qa: batch must be ≥ 1, got {}", batch);
  const int64_t N = cfg.seq_len, K = cfg.num_facts, Q = cfg.num_queries, f = cfg.filler_size();
  const int64_t Nh = cfg.haystack_len(), n_slots = Nh / 4, content = cfg.vocab_size - 3 - f;
  // Uniform draws per row, consumed in this order: K (keys), K (values), K (slots), Q (queried facts),
  // N_h (filler).
  const int64_t per_row = 3 * K + Q + Nh;
  const std::vector<double> u = rand({batch, per_row}, gen, DType::Float64).to_vector<double>();
  std::vector<int64_t> ids(static_cast<size_t>(batch * N)), labels(static_cast<size_t>(batch * N), -100);
  std::vector<double> depth(static_cast<size_t>(batch * Q));
  std::vector<int64_t> keys, slots, facts;
  for (int64_t b = 0; b < batch; ++b) {
    const double* u_key = u.data() + b * per_row;
    const double* u_val = u_key + K;
    const double* u_slot = u_val + K;
    const double* u_fact = u_slot + K;
    const double* u_fill = u_fact + Q;
    distinct_prefix(keys, content, K, u_key);  // key i = f + keys[i]
    distinct_prefix(slots, n_slots, K, u_slot);
    distinct_prefix(facts, K, Q, u_fact);      // query j asks fact facts[j]
    std::vector<int64_t> vals(static_cast<size_t>(K));
    for (int64_t i = 0; i < K; ++i) vals[i] = f + pick(u_val[i], content);

    int64_t* row = ids.data() + b * N;
    int64_t* lab = labels.data() + b * N;
    for (int64_t t = 0; t < Nh; ++t) row[t] = pick(u_fill[t], f);
    for (int64_t i = 0; i < K; ++i) {
      const int64_t s = 4 * slots[i];
      row[s] = cfg.key_mark(), row[s + 1] = f + keys[i], row[s + 2] = cfg.val_mark(), row[s + 3] = vals[i];
    }
    for (int64_t j = 0; j < Q; ++j) {
      const int64_t i = facts[j], q = Nh + 4 * j;
      row[q] = cfg.query_mark(), row[q + 1] = f + keys[i], row[q + 2] = cfg.val_mark(), row[q + 3] = vals[i];
      lab[q + 2] = vals[i];
      depth[b * Q + j] = static_cast<double>(4 * slots[i]) / static_cast<double>(Nh);
    }
  }
  return {from_vector(ids, {batch, N}), from_vector(labels, {batch, N}), std::move(depth)};
}

std::vector<int64_t> qa_label_positions(const QaConfig& cfg) {
  cfg.validate();
  std::vector<int64_t> p(static_cast<size_t>(cfg.num_queries));
  for (int64_t j = 0; j < cfg.num_queries; ++j) p[j] = cfg.haystack_len() + 4 * j + 2;
  return p;
}

}  // namespace hydra::eval
