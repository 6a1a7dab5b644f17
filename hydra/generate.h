#pragma once
// Generation (SPEC §6.1) with the sampling procedure of SPEC §6.2.
//
// sample_token on one row of logits:
//   temperature ≤ 0 → argmax (the first index among ties; top-k/top-p ignored); else ℓ ← ℓ / temperature;
//   top_k > 0: κ = min(top_k, V), τ = the κ-th largest ℓ, ℓ_i = −∞ where ℓ_i < τ (ties at τ kept);
//   0 < top_p < 1: sort ℓ descending, π = softmax, exclusive prefix sums c_i = Σ_{j<i} π_j, drop entries with
//   c_i > top_p (so the first token crossing top_p, and always the top token, are kept);
//   probs = softmax(ℓ); one categorical draw from a uniform of `gen` (inverse CDF, in float64).
// generate: one forward over the prompt (with state), then up to max_new_tokens × (sample, append, step). With an
// EOS id, rows that have emitted it keep emitting it, and generation stops once every row has.
#include <cstdint>
#include <optional>
#include <vector>

#include "hydra/lm.h"
#include "tensor/random.h"

namespace hydra {

struct SamplingOptions {
  double temperature = 1.0;
  int64_t top_k = 0;   // 0: off
  double top_p = 1.0;  // outside (0, 1): off
};

int64_t sample_token(const std::vector<double>& logits, const SamplingOptions& opts, Generator& gen);

struct GenerateOptions {
  int64_t max_new_tokens = 256;
  SamplingOptions sampling;
  std::optional<int64_t> eos_token_id;
  uint64_t seed = 0;  // the sampler's generator
};

// prompt (B, N0 ≥ 1) int64 → (B, N0 + T) int64 on the CPU, T ≤ max_new_tokens. Runs without recording gradients.
Tensor generate(const LanguageModel& model, const Tensor& prompt, const GenerateOptions& opts);

}  // namespace hydra
