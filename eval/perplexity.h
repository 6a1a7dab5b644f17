#pragma once
// `hydra-eval perplexity`: the next-token loss of a trained checkpoint on a data file.
//
// The data is cut into consecutive windows of seq_len + 1 tokens that overlap by one token (stride seq_len), so
// every token after the first is predicted exactly once, from the tokens before it in its window; a shorter tail
// window (≥ 2 tokens) is included. Reported: the mean cross-entropy per predicted token (nats), the perplexity
// exp(mean), bits per token, and for byte-level text bits per byte (= bits per token).
#include <cstdint>
#include <optional>
#include <string>

namespace hydra::eval {

struct PerplexityOptions {
  std::string checkpoint;      // a run folder (its newest valid checkpoint) or a checkpoints/step-N folder
  std::string data;            // text or token file
  std::string format = "auto";  // auto (the checkpoint config's data.format) | text | tokens
  std::string token_dtype;     // uint16 | uint32; empty: the checkpoint config's
  int64_t seq_len = 0;         // 0: the checkpoint config's data.seq_len
  int64_t batch_size = 8;
  int64_t max_tokens = 0;      // evaluate only the first N tokens (0 = all)
  std::string device = "auto";
};

struct PerplexityResult {
  std::string checkpoint_dir;  // the step folder used
  int64_t step = 0;            // its training step
  int64_t tokens = 0;          // predicted tokens
  int64_t seq_len = 0;
  double mean_loss = 0, perplexity = 0, bits_per_token = 0;
  std::optional<double> bits_per_byte;  // byte-level text only
  std::string device;
};

PerplexityResult run_perplexity(const PerplexityOptions& opts);

}  // namespace hydra::eval
