// MQAR generator and scoring (mqar.h, SPEC §8.1).
#include "eval/mqar.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "tensor/check.h"

namespace hydra::eval {

void MqarConfig::validate() const {
  HYDRA_CHECK(num_kv_pairs >= 1, "mqar: num_kv_pairs must be ≥ 1, got {}", num_kv_pairs);
  HYDRA_CHECK(num_queries >= 1, "mqar: num_queries must be ≥ 1, got {}", num_queries);
  HYDRA_CHECK(vocab_size / 2 >= num_kv_pairs,
              "mqar: vocab_size {} gives a key space of {} keys, fewer than num_kv_pairs = {} distinct keys",
              vocab_size, vocab_size / 2, num_kv_pairs);
  HYDRA_CHECK(resolved_seq_len() >= 2 * (num_kv_pairs + num_queries),
              "mqar: seq_len {} is too short for {} pairs and {} queries (needs ≥ 2(P+Q) = {})", resolved_seq_len(),
              num_kv_pairs, num_queries, 2 * (num_kv_pairs + num_queries));
}

MqarBatch make_mqar_batch(const MqarConfig& cfg, int64_t batch, Generator& gen) {
  cfg.validate();
  HYDRA_CHECK(batch >= 1, "mqar: batch must be ≥ 1, got {}", batch);
  const int64_t P = cfg.num_kv_pairs, Q = cfg.num_queries, N = cfg.resolved_seq_len();
  const int64_t K = cfg.vocab_size / 2, Vs = cfg.vocab_size - K;  // key space size, value space size
  // Uniform draws in [0, 1) in float64, consumed in a fixed order: per row P (permutation), P (values), Q (queries).
  const std::vector<double> u = rand({batch, 2 * P + Q}, gen, DType::Float64).to_vector<double>();
  auto pick = [](double x, int64_t n) { return std::min<int64_t>(static_cast<int64_t>(x * static_cast<double>(n)), n - 1); };
  std::vector<int64_t> ids(static_cast<size_t>(batch * N), 0), labels(static_cast<size_t>(batch * N), -100);
  std::vector<int64_t> perm(static_cast<size_t>(K));
  for (int64_t b = 0; b < batch; ++b) {
    const double* ub = u.data() + b * (2 * P + Q);
    std::iota(perm.begin(), perm.end(), 0);
    for (int64_t i = 0; i < P; ++i) std::swap(perm[i], perm[i + pick(ub[i], K - i)]);  // partial Fisher–Yates
    std::vector<int64_t> vals(static_cast<size_t>(P));
    for (int64_t i = 0; i < P; ++i) vals[i] = K + pick(ub[P + i], Vs);
    int64_t* row = ids.data() + b * N;
    int64_t* lab = labels.data() + b * N;
    for (int64_t i = 0; i < P; ++i) row[2 * i] = perm[i], row[2 * i + 1] = vals[i];
    for (int64_t j = 0; j < Q; ++j) {
      const int64_t k = pick(ub[2 * P + j], P);
      row[2 * P + 2 * j] = perm[k];
      row[2 * P + 2 * j + 1] = vals[k];
      lab[2 * P + 2 * j] = vals[k];
    }
  }
  return {from_vector(ids, {batch, N}), from_vector(labels, {batch, N})};
}

MqarScore score_mqar(const Tensor& logits, const Tensor& labels) {
  HYDRA_CHECK(logits.dim() == 3 && labels.dim() == 2 && logits.size(0) == labels.size(0) &&
                  logits.size(1) == labels.size(1),
              "score_mqar: logits {} and labels {} do not match (expected (B, N, V) and (B, N))",
              shape_str(logits.shape()), shape_str(labels.shape()));
  const int64_t B = logits.size(0), N = logits.size(1), V = logits.size(2);
  const std::vector<double> lg = logits.to(kCPU).to(DType::Float64).contiguous().to_vector<double>();
  const std::vector<int64_t> lb = labels.to(kCPU).contiguous().to_vector<int64_t>();
  MqarScore s;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t + 1 < N; ++t) {
      const int64_t y = lb[b * N + t];
      if (y == -100) continue;
      HYDRA_CHECK(y >= 0 && y < V, "score_mqar: label {} at ({}, {}) outside the vocabulary of {}", y, b, t, V);
      const double* row = lg.data() + (b * N + t) * V;
      const double mx = *std::max_element(row, row + V);
      double z = 0;
      for (int64_t v = 0; v < V; ++v) z += std::exp(row[v] - mx);
      s.loss_sum += std::log(z) + mx - row[y];
      s.correct += (std::max_element(row, row + V) - row) == y ? 1 : 0;
      s.count += 1;
    }
  return s;
}

}  // namespace hydra::eval
