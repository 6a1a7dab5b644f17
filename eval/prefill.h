#pragma once
// Chunked prefill with logits only where they are scored, and the scoring of those positions.
//
// The long-context tasks (needle, SPEC §8.2; multi-fact QA, §8.4) score a handful of positions in sequences of
// 8k–16k+ tokens. A full forward materialises (B, N, V) logits (16k × 8192 float32 = 512 MiB per row) and all of
// the activations of N tokens at once. logits_at instead runs the model over consecutive chunks of `chunk` tokens,
// carrying the streaming state (SPEC §5), skips the LM head (ForwardOptions::compute_logits = false), and
// multiplies only the final-hidden rows at the requested positions by the LM head: peak memory is one chunk's
// activations plus the model's state, whatever N is. Chunks after the last requested position are not run
// (the model is causal).
#include <cstdint>
#include <vector>

#include "hydra/lm.h"
#include "tensor/tensor_core.h"

namespace hydra::eval {

// ids (B, N) int64 on any device (moved to the model's); positions ascending (repeats allowed), each in [0, N),
// the same for every row; chunk ≥ 1. Returns (B, P, V) on the CPU, P = positions.size(), float32 (float64 for a
// float64 model, so exactness tests keep their precision): row (b, k) = the logits at position positions[k] of
// row b, equal (up to summation order) to the full forward's logits[b, positions[k]]. Runs without recording
// gradients, in the model's compute dtype (bf16 logits are returned as float32). Errors (std::invalid_argument):
// ids not 2-D, a position outside [0, N) or out of order, chunk < 1. P = 0 returns an empty (B, 0, V) tensor
// without running the model.
Tensor logits_at(const LanguageModel& model, const Tensor& ids, const std::vector<int64_t>& positions, int64_t chunk);

struct PositionScore {
  double correct = 0;   // items whose argmax (first maximum on ties) equals the target
  double count = 0;     // items with a target (≠ −100)
  double loss_sum = 0;  // summed cross-entropy over them (nats)
};

// logits (B, n, V) (any floating dtype and device) against targets (B, n) int64, −100 = skip; every other target
// must be in [0, V).
PositionScore score_positions(const Tensor& logits, const Tensor& targets);

// Per item, row-major (b, k) → index b·n + k: 1 if argmax = target, 0 if not, −1 where the target is −100.
// For per-depth-bucket accuracies. Same argument rules as score_positions.
std::vector<int> correct_flags(const Tensor& logits, const Tensor& targets);

}  // namespace hydra::eval
