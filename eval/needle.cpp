// Needle-in-a-haystack generators, readout positions and depth buckets (needle.h, SPEC §8.2, §8.3).
#include "eval/needle.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "tensor/check.h"

namespace hydra::eval {

namespace {

// ⌊x·n⌋ for a uniform x in [0, 1), kept below n against rounding: a uniform draw from {0, …, n−1}.
int64_t pick(double x, int64_t n) { return std::min<int64_t>(static_cast<int64_t>(x * static_cast<double>(n)), n - 1); }

}  // namespace

int64_t NeedleConfig::filler_size() const {
  return static_cast<int64_t>(std::floor(static_cast<double>(vocab_size) * filler_frac));
}

int64_t NeedleConfig::max_slot() const {
  // floor division (N − 4 may be negative for a config that validate() rejects)
  const int64_t a = seq_len - 4;
  return (a >= 0 ? a / 4 : -((-a + 3) / 4)) - num_needles;
}

void NeedleConfig::validate() const {
  HYDRA_CHECK(num_needles >= 1, "needle: num_needles must be ≥ 1, got {}", num_needles);
  HYDRA_CHECK(std::isfinite(filler_frac) && filler_frac > 0 && filler_frac < 1,
              "needle: filler_frac must be in (0, 1), got {}", filler_frac);
  const int64_t f = filler_size();
  HYDRA_CHECK(f >= 1, "needle: vocab_size {} with filler_frac {} gives no filler tokens (f = ⌊V·filler_frac⌋ = 0)",
              vocab_size, filler_frac);
  HYDRA_CHECK(vocab_size - 3 > f + 4,
              "needle: vocab_size {} is too small for filler_frac {}: needs V−3 > f+4 with f = ⌊V·filler_frac⌋ = {} "
              "(content range [f, V−3) of at least 5 tokens)",
              vocab_size, filler_frac, f);
  HYDRA_CHECK(seq_len >= 8 * num_needles + 4,
              "needle: seq_len {} is too short for num_needles = {} (needs m = ⌊(N−4)/4⌋ − K ≥ K, i.e. N ≥ 8K+4 = {})",
              seq_len, num_needles, 8 * num_needles + 4);
  if (depth_fraction) {
    HYDRA_CHECK(std::isfinite(*depth_fraction) && *depth_fraction >= 0 && *depth_fraction <= 1,
                "needle: depth_fraction must be in [0, 1], got {}", *depth_fraction);
  }
}

NeedleBatch make_needle_batch(const NeedleConfig& cfg, int64_t batch, Generator& gen) {
  cfg.validate();
  HYDRA_CHECK(batch >= 1, "needle: batch must be ≥ 1, got {}", batch);
  const int64_t V = cfg.vocab_size, N = cfg.seq_len, K = cfg.num_needles, f = cfg.filler_size(), m = cfg.max_slot();
  const int64_t content = V - 3 - f;  // content tokens f .. V−4
  // Uniform draws per row, consumed in this order: K (slots), 1 (queried needle), K (keys), K (values),
  // N−4 (filler of positions 0..N−5; the trailer overwrites the rest).
  const int64_t per_row = 3 * K + 1 + (N - 4);
  const std::vector<double> u = rand({batch, per_row}, gen, DType::Float64).to_vector<double>();
  std::vector<int64_t> ids(static_cast<size_t>(batch * N)), labels(static_cast<size_t>(batch * N), -100);
  std::vector<int64_t> depth(static_cast<size_t>(batch));
  std::vector<int64_t> pool;
  for (int64_t b = 0; b < batch; ++b) {
    const double* ub = u.data() + b * per_row;
    const double* u_slot = ub;
    const int64_t queried = pick(ub[K], K);
    const double* u_key = ub + K + 1;
    const double* u_val = u_key + K;
    const double* u_fill = u_val + K;

    // K distinct slots from 0..m: the prefix of a partial Fisher–Yates shuffle of the pool.
    std::vector<int64_t> slots(static_cast<size_t>(K));
    if (!cfg.depth_fraction) {
      pool.resize(static_cast<size_t>(m + 1));
      std::iota(pool.begin(), pool.end(), 0);
      for (int64_t i = 0; i < K; ++i) std::swap(pool[i], pool[i + pick(u_slot[i], m + 1 - i)]);
      std::copy(pool.begin(), pool.begin() + K, slots.begin());
    } else {
      // The queried needle at round(depth_fraction·m); the others distinct from the remaining m slots.
      const int64_t fixed = std::llround(*cfg.depth_fraction * static_cast<double>(m));
      pool.clear();
      for (int64_t s = 0; s <= m; ++s)
        if (s != fixed) pool.push_back(s);
      for (int64_t i = 0; i < K - 1; ++i) std::swap(pool[i], pool[i + pick(u_slot[i], m - i)]);
      for (int64_t i = 0, j = 0; i < K; ++i) slots[i] = i == queried ? fixed : pool[j++];
    }

    int64_t* row = ids.data() + b * N;
    for (int64_t t = 0; t < N - 4; ++t) row[t] = pick(u_fill[t], f);
    std::vector<int64_t> keys(static_cast<size_t>(K)), vals(static_cast<size_t>(K));
    for (int64_t i = 0; i < K; ++i) {
      keys[i] = f + pick(u_key[i], content);
      vals[i] = f + pick(u_val[i], content);
      const int64_t s = 4 * slots[i];
      row[s] = cfg.key_mark(), row[s + 1] = keys[i], row[s + 2] = cfg.val_mark(), row[s + 3] = vals[i];
    }
    const int64_t q = N - 4;
    row[q] = cfg.query_mark(), row[q + 1] = keys[queried], row[q + 2] = cfg.val_mark(), row[q + 3] = vals[queried];
    labels[b * N + N - 2] = vals[queried];
    depth[b] = 4 * slots[queried];
  }
  return {from_vector(ids, {batch, N}), from_vector(labels, {batch, N}), std::move(depth)};
}

NeedleBatch make_needle_script_batch(int64_t vocab, int64_t seq_len, int64_t batch, Generator& gen) {
  HYDRA_CHECK(vocab >= 4, "needle script: vocab must be ≥ 4, got {}", vocab);
  HYDRA_CHECK(seq_len >= 6, "needle script: seq_len must be ≥ 6 (pos ~ U{{1..N−5}}), got {}", seq_len);
  HYDRA_CHECK(batch >= 1, "needle script: batch must be ≥ 1, got {}", batch);
  const int64_t V = vocab, N = seq_len, key = V - 2;
  // Per row: 1 (pos), 1 (value), N (filler; four positions are overwritten).
  const int64_t per_row = N + 2;
  const std::vector<double> u = rand({batch, per_row}, gen, DType::Float64).to_vector<double>();
  std::vector<int64_t> ids(static_cast<size_t>(batch * N)), labels(static_cast<size_t>(batch * N), -100);
  std::vector<int64_t> depth(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    const double* ub = u.data() + b * per_row;
    const int64_t pos = 1 + pick(ub[0], N - 5);
    const int64_t value = pick(ub[1], V - 2);
    int64_t* row = ids.data() + b * N;
    for (int64_t t = 0; t < N; ++t) row[t] = pick(ub[2 + t], V - 2);
    row[pos] = key, row[pos + 1] = value, row[N - 2] = key, row[N - 1] = value;
    labels[b * N + N - 2] = value;
    depth[b] = pos;
  }
  return {from_vector(ids, {batch, N}), from_vector(labels, {batch, N}), std::move(depth)};
}

int64_t needle_readout_position(int64_t seq_len, NeedleReadout readout) {
  HYDRA_CHECK(seq_len >= 3, "needle_readout_position: seq_len must be ≥ 3, got {}", seq_len);
  return readout == NeedleReadout::Reference ? seq_len - 3 : seq_len - 2;
}

const char* needle_readout_name(NeedleReadout readout) {
  return readout == NeedleReadout::Reference ? "reference" : "corrected";
}

int needle_depth_bucket(double depth_over_n) {
  HYDRA_CHECK(std::isfinite(depth_over_n) && depth_over_n >= 0,
              "needle_depth_bucket: the relative depth must be finite and ≥ 0, got {}", depth_over_n);
  return static_cast<int>(std::min(std::floor(depth_over_n / 0.25), 3.0));
}

const char* depth_bucket_name(int bucket) {
  static const char* const kNames[4] = {"acc_depth_0_25", "acc_depth_25_50", "acc_depth_50_75", "acc_depth_75_100"};
  HYDRA_CHECK(bucket >= 0 && bucket < 4, "depth_bucket_name: bucket must be in 0..3, got {}", bucket);
  return kNames[bucket];
}

}  // namespace hydra::eval
