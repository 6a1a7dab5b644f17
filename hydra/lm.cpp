// make_language_model (lm.h): the model a config's arch names.
#include "hydra/lm.h"

#include <fmt/format.h>

#include <stdexcept>

#include "hydra/model.h"
#include "hydra/transformer.h"

namespace hydra {

std::unique_ptr<LanguageModel> make_language_model(const HydraConfig& cfg, uint64_t seed) {
  cfg.validate();
  if (cfg.arch == "hydra") return std::make_unique<HydraLM>(cfg, seed);
  if (cfg.arch == "transformer") return std::make_unique<DenseTransformer>(cfg, seed);
  throw std::invalid_argument(fmt::format("model.arch: unknown architecture '{}' (known: hydra, transformer)", cfg.arch));
}

}  // namespace hydra
