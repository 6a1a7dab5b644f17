// `hydra-eval perplexity` (perplexity.h).
#include "eval/perplexity.h"

#include <fmt/format.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "autograd/autograd.h"
#include "hydra/lm.h"
#include "tensor/check.h"
#include "tensor/ops/indexing.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/data.h"

namespace hydra::eval {

PerplexityResult run_perplexity(const PerplexityOptions& o) {
  HYDRA_CHECK(!o.checkpoint.empty(), "hydra-eval perplexity: --checkpoint is required (a run folder or a step folder)");
  HYDRA_CHECK(!o.data.empty(), "hydra-eval perplexity: --data is required (a text or token file)");
  HYDRA_CHECK(o.batch_size >= 1 && o.seq_len >= 0 && o.max_tokens >= 0,
              "hydra-eval perplexity: --batch must be ≥ 1, --seq-len and --max-tokens ≥ 0");
  const train::Checkpoint ck = train::resolve_checkpoint(o.checkpoint);
  const train::LoadedModel loaded = train::load_checkpoint_model(ck, o.device, "--device");
  const train::TrainConfig& cfg = loaded.config;
  const LanguageModel& model = *loaded.model;

  PerplexityResult r;
  r.checkpoint_dir = ck.dir;
  r.step = ck.state.step;
  r.device = loaded.device;
  r.seq_len = o.seq_len > 0 ? o.seq_len : cfg.data.seq_len;
  const std::string format = o.format == "auto" ? cfg.data.format : o.format;
  HYDRA_CHECK(format == "text" || format == "tokens", "--format: unknown value '{}', expected auto, text or tokens",
              format);
  const std::string tdt = o.token_dtype.empty() ? cfg.data.token_dtype : o.token_dtype;
  auto src = std::make_shared<train::TokenSource>(format == "text" ? train::TokenSource::from_text_file(o.data)
                                                                   : train::TokenSource::from_token_file(
                                                                         o.data, train::parse_token_dtype(tdt)));
  const int64_t n = o.max_tokens > 0 ? std::min(o.max_tokens, src->size()) : src->size();
  HYDRA_CHECK(n >= 2, "{}: {} tokens; at least 2 are needed to predict one", o.data, n);


  // Windows [s, s + L] for s = 0, L, 2L, ... (the last one shorter); every id is checked against the vocabulary.
  const int64_t L = r.seq_len;
  ag::NoGradGuard no_grad;
  double total = 0;
  int64_t counted = 0;
  std::vector<Tensor> rows;
  auto flush = [&]() {
    if (rows.empty()) return;
    const Tensor ids = concat(rows, 0);
    const double mean = lm_loss(model.forward(ids).logits, ids).item();
    const int64_t preds = ids.size(0) * (ids.size(1) - 1);
    total += mean * static_cast<double>(preds);
    counted += preds;
    rows.clear();
  };
  for (int64_t s = 0; s + 1 < n; s += L) {
    const int64_t len = std::min(L + 1, n - s);
    if (len != L + 1) flush();  // the shorter tail goes alone
    std::vector<int64_t> ids(static_cast<size_t>(len));
    for (int64_t i = 0; i < len; ++i) ids[static_cast<size_t>(i)] = src->at(s + i);
    for (int64_t i = 0; i < len; ++i)
      HYDRA_CHECK(ids[static_cast<size_t>(i)] < cfg.model.vocab_size,
                  "{}: token id {} at byte offset {} is outside the model's vocabulary ({})", o.data,
                  ids[static_cast<size_t>(i)], src->byte_offset(s + i), cfg.model.vocab_size);
    rows.push_back(from_vector(ids, {1, len}));
    if (static_cast<int64_t>(rows.size()) == o.batch_size || len != L + 1) flush();
  }
  flush();
  r.tokens = counted;
  r.mean_loss = total / static_cast<double>(counted);
  r.perplexity = std::exp(r.mean_loss);
  r.bits_per_token = r.mean_loss / std::numbers::ln2;
  if (format == "text") r.bits_per_byte = r.bits_per_token;
  return r;
}

}  // namespace hydra::eval
