#pragma once
// Needle-in-a-haystack data (SPEC §8.2 library version, §8.3 script version), the readout positions and the
// depth buckets.
//
// Library version (§8.2), per row of N tokens with V = vocab_size, K = num_needles, f = ⌊V·filler_frac⌋:
//   tokens: filler [0, f); content keys/values [f, V−3); markers KEY_MARK = V−1, VAL_MARK = V−2, QUERY_MARK = V−3.
//   * the row is iid uniform filler;
//   * m = ⌊(N−4)/4⌋ − K; K distinct slots from 0..m (uniform); needle i starts at 4·slot_i and is
//     [KEY_MARK, key_i, VAL_MARK, value_i], keys and values iid uniform over the content range (keys may collide);
//   * one needle, uniform, is queried: trailer at q = N−4 is [QUERY_MARK, key, VAL_MARK, value];
//   * the only label: label[N−2] = value (the logits at the trailer's VAL_MARK predict the value);
//   * depth = absolute start (4·slot) of the queried needle.
//   Extension for length × depth sweeps (not in the reference): with depth_fraction set, the queried needle takes
//   slot round(depth_fraction·m) (start ≈ depth_fraction·N) and the other K−1 needles take distinct uniform slots
//   among the remaining m.
// The reference evaluation reads the prediction from the logits at N−3 (one position early, SPEC §10 item 9);
// NeedleReadout::Corrected reads N−2. Reports must say which one was used (needle_readout_name).
//
// Script version (§8.3): KEY = V−2; filler iid in [0, V−2); pos ~ U{1..N−5}; value ~ U[0, V−2);
// x[pos] = KEY, x[pos+1] = value, x[N−2] = KEY, x[N−1] = value; label[N−2] = value only; depth = pos.
//
// Generators are deterministic for a Generator state (float64 uniforms consumed in a fixed order per row).
#include <cstdint>
#include <optional>
#include <vector>

#include "tensor/random.h"
#include "tensor/tensor_core.h"

namespace hydra::eval {

struct NeedleConfig {
  int64_t vocab_size = 8192;             // V
  int64_t seq_len = 8192;                // N
  int64_t num_needles = 1;               // K
  double filler_frac = 0.5;              // f = ⌊V·filler_frac⌋ filler tokens
  std::optional<double> depth_fraction;  // in [0, 1]: fixes the queried needle's slot (extension, see above)

  int64_t filler_size() const;     // f
  int64_t max_slot() const;        // m = ⌊(N−4)/4⌋ − K (slots are 0..m)
  int64_t key_mark() const { return vocab_size - 1; }
  int64_t val_mark() const { return vocab_size - 2; }
  int64_t query_mark() const { return vocab_size - 3; }
  // Throws std::invalid_argument naming the field and value: K ≥ 1; f ≥ 1 (0 < filler_frac < 1);
  // V−3 > f+4; N ≥ 8K + 4 (i.e. m ≥ K); depth_fraction finite and in [0, 1].
  void validate() const;
};

struct NeedleBatch {
  Tensor input_ids;            // (B, N) int64
  Tensor labels;               // (B, N) int64, −100 except label[N−2]
  std::vector<int64_t> depth;  // (B): absolute start of the queried needle (script version: pos)
};

// SPEC §8.2 batch (validates cfg; batch ≥ 1).
NeedleBatch make_needle_batch(const NeedleConfig& cfg, int64_t batch, Generator& gen);

// SPEC §8.3 batch: vocab ≥ 4, seq_len ≥ 6, batch ≥ 1.
NeedleBatch make_needle_script_batch(int64_t vocab, int64_t seq_len, int64_t batch, Generator& gen);

// Which logits the prediction is read from.
enum class NeedleReadout {
  Reference,  // logits at N−3: the reference's off-by-one (they predict the VAL_MARK slot), SPEC §10 item 9
  Corrected,  // logits at N−2 (the default): they predict the value
};
// N−3 (Reference) or N−2 (Corrected); N ≥ 3.
int64_t needle_readout_position(int64_t seq_len, NeedleReadout readout);
// "reference" or "corrected".
const char* needle_readout_name(NeedleReadout readout);

// Depth bucket of SPEC §8.2/§8.4: min(⌊x/0.25⌋, 3) for x = depth/N (needle) or fact start/N_h (QA), x ≥ 0.
int needle_depth_bucket(double depth_over_n);
// The metric name of a bucket 0..3: "acc_depth_0_25", "acc_depth_25_50", "acc_depth_50_75", "acc_depth_75_100".
const char* depth_bucket_name(int bucket);

}  // namespace hydra::eval
