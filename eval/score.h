#pragma once
// `hydra-eval score`: run a HydraLM on given token ids and report its logits and next-token loss. This is how a
// user checks a converted checkpoint against the PyTorch reference (SPEC §4 names, golden files).
#include <cstdint>
#include <string>

#include "hydra/model.h"

namespace hydra::eval {

struct ScoreOptions {
  std::string config;   // YAML with a `model:` section (SPEC §1 field names)
  std::string weights;  // safetensors with every parameter of SPEC §4 (extra tensors, e.g. golden data, ignored)
  std::string input;    // safetensors holding `input_ids`, int64 (B, N), N ≥ 2
  std::string out;      // safetensors receiving `logits` float32 (B, N, V) and `loss` float32 ()
  std::string device = "auto";  // auto | cpu | cuda
};

struct ScoreResult {
  Tensor logits;  // float32 (B, N, V), CPU
  double loss = 0;
  std::string device;  // where it ran
};

// Loads, runs and writes (atomically). Errors name the file, the tensor and what was expected.
ScoreResult run_score(const ScoreOptions& opts);


}  // namespace hydra::eval
