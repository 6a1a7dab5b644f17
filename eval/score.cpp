#include "eval/score.h"

#include <fmt/format.h>

#include <stdexcept>

#include "autograd/autograd.h"
#include "nn/safetensors.h"
#include "tensor/check.h"
#include "tensor/cuda/backend.h"

namespace hydra::eval {

ScoreResult run_score(const ScoreOptions& opts) {
  for (const auto& [flag, value] : {std::pair{"--config", opts.config}, {"--weights", opts.weights},
                                    {"--input", opts.input}, {"--out", opts.out}})
    HYDRA_CHECK(!value.empty(), "hydra-eval score: {} is required", flag);
  const std::string device = hydra::resolve_model_device(opts.device, "--device");
  const HydraConfig cfg = load_model_config(opts.config);
  HydraLM model(cfg);
  model.load_state_dict(load_safetensors(opts.weights), opts.weights, /*allow_unexpected=*/true);

  const std::map<std::string, Tensor> input = load_safetensors(opts.input);
  const auto it = input.find("input_ids");
  if (it == input.end()) {
    std::string names;
    for (const auto& [n, t] : input) names += (names.empty() ? "" : ", ") + n;
    throw std::invalid_argument(fmt::format("{}: no tensor 'input_ids' (the file holds: {})", opts.input,
                                            names.empty() ? "nothing" : names));
  }
  const Tensor ids = it->second;
  HYDRA_CHECK(ids.dtype() == DType::Int64 && ids.dim() == 2 && ids.size(1) >= 2,
              "{}: 'input_ids' is {} {}, expected int64 (B, N) with N ≥ 2", opts.input, dtype_name(ids.dtype()),
              shape_str(ids.shape()));

  ag::NoGradGuard no_grad;
  const Tensor logits = model.forward(ids).logits.to(DType::Float32);
  const Tensor loss = lm_loss(logits, ids).to(DType::Float32);
  save_safetensors(opts.out, {{"logits", logits.to(kCPU)}, {"loss", loss.to(kCPU)}});
  return {logits.to(kCPU), loss.item(), device};
}

}  // namespace hydra::eval
