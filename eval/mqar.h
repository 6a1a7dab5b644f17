#pragma once
// MQAR (multi-query associative recall), SPEC §8.1: the data generator and the answer-position metric.
//
// Per sequence: key space [0, ⌊V/2⌋), value space [⌊V/2⌋, V) (disjoint); P distinct keys (the prefix of a uniform
// random permutation of the key space) with P values drawn uniformly from the value space (repeats allowed).
// Layout: positions 2i, 2i+1 = key_i, value_i (i < P); then for each query j < Q a key index drawn uniformly with
// replacement, positions 2P+2j, 2P+2j+1 = key, its value; the rest up to seq_len is token 0.
// Labels: −100 everywhere except label[2P+2j] = the value of query j (the model reads the key, predicts the value).
// Deterministic for a Generator state.
#include <cstdint>
#include <optional>

#include "tensor/random.h"
#include "tensor/tensor_core.h"

namespace hydra::eval {

struct MqarConfig {
  int64_t vocab_size = 8192;
  int64_t num_kv_pairs = 64;          // P
  int64_t num_queries = 64;           // Q
  std::optional<int64_t> seq_len;     // null: 2(P + Q); must be ≥ 2(P + Q)
  int64_t resolved_seq_len() const { return seq_len ? *seq_len : 2 * (num_kv_pairs + num_queries); }
  // Throws std::invalid_argument naming the field and value (P ≥ 1, Q ≥ 1, ⌊V/2⌋ ≥ P, seq_len ≥ 2(P + Q)).
  void validate() const;
};

struct MqarBatch {
  Tensor input_ids;  // (B, N) int64
  Tensor labels;     // (B, N) int64, −100 except the Q answer positions per row
};

MqarBatch make_mqar_batch(const MqarConfig& cfg, int64_t batch, Generator& gen);

struct MqarScore {
  double correct = 0;  // answer positions whose argmax equals the label
  double count = 0;    // answer positions
  double loss_sum = 0;  // summed cross-entropy over them (nats)
};
// logits (B, N, V) against labels (B, N): only positions 0..N−2 and labels ≠ −100 count (SPEC §8.1).
MqarScore score_mqar(const Tensor& logits, const Tensor& labels);

}  // namespace hydra::eval
