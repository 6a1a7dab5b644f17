#pragma once
// Multi-fact long-context QA data (SPEC §8.4, module retrieval_qa).
//
// Per row of N tokens with V = vocab_size, K = num_facts, Q = num_queries, f = ⌊V·filler_frac⌋; tokens and markers
// as SPEC §8.2 (filler [0, f), content [f, V−3), KEY_MARK = V−1, VAL_MARK = V−2, QUERY_MARK = V−3):
//   * haystack [0, N_h), N_h = N − 4Q, iid uniform filler;
//   * K distinct keys (uniform without replacement from the content range), values iid uniform over it;
//   * K distinct slots from 0..⌊N_h/4⌋−1 (uniform); fact i starts at 4·slot_i: [KEY_MARK, key_i, VAL_MARK, value_i];
//   * Q distinct facts (uniform, random order); query j occupies q_j = N_h + 4j .. q_j+3 =
//     [QUERY_MARK, key, VAL_MARK, value];
//   * labels: −100 except label[q_j + 2] = value (the logits at the query's VAL_MARK predict the answer);
//   * depth of query j = start of its fact / N_h; bucket = needle_depth_bucket(depth) (eval/needle.h).
// Deterministic for a Generator state.
#include <cstdint>
#include <vector>

#include "eval/needle.h"
#include "tensor/random.h"
#include "tensor/tensor_core.h"

namespace hydra::eval {

struct QaConfig {
  int64_t vocab_size = 8192;  // V
  int64_t seq_len = 16384;    // N
  int64_t num_facts = 32;     // K
  int64_t num_queries = 8;    // Q
  double filler_frac = 0.5;   // f = ⌊V·filler_frac⌋ filler tokens

  int64_t filler_size() const;                                 // f
  int64_t haystack_len() const { return seq_len - 4 * num_queries; }  // N_h
  int64_t key_mark() const { return vocab_size - 1; }
  int64_t val_mark() const { return vocab_size - 2; }
  int64_t query_mark() const { return vocab_size - 3; }
  // Throws std::invalid_argument naming the field and value: K ≥ 1, 1 ≤ Q ≤ K, f ≥ 1 (0 < filler_frac < 1),
  // V−3 > f+4, V−3−f ≥ K (distinct keys), ⌊N_h/4⌋ ≥ K slots (i.e. N ≥ 4(K+Q)).
  void validate() const;
};

struct QaBatch {
  Tensor input_ids;           // (B, N) int64
  Tensor labels;              // (B, N) int64, −100 except the Q answer positions q_j + 2
  std::vector<double> depth;  // (B·Q) row-major (row b, query j): start of the queried fact / N_h, in [0, 1)
};

// SPEC §8.4 batch (validates cfg; batch ≥ 1).
QaBatch make_qa_batch(const QaConfig& cfg, int64_t batch, Generator& gen);

// The labelled positions q_j + 2 = N_h + 4j + 2, j = 0..Q−1 (the same in every row), ascending.
std::vector<int64_t> qa_label_positions(const QaConfig& cfg);

// The depth bucket of a query (SPEC §8.4): needle_depth_bucket(depth).
inline int qa_depth_bucket(double depth) { return needle_depth_bucket(depth); }

}  // namespace hydra::eval
