#pragma once
// The interface every trainable language model of this project offers (HydraLM, SPEC §2; the dense Transformer
// baseline, SPEC §8.5), so the trainer, the evaluation tasks, generation and perplexity run either one through the
// same code. make_language_model() builds the one a config's `arch` names.
//
// Streaming: forward(ids, state, opts) continues from a state returned by an earlier call (chunked prefill).
// HydraLM's state is O(1) in the length for DeltaNet layers (SPEC §5); the Transformer's is its whole key/value
// cache (it grows with the length: that is the baseline's cost, reported, not hidden).
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "hydra/config.h"
#include "hydra/state.h"
#include "nn/module.h"

namespace hydra {

struct ForwardOptions {
  bool compute_mtp = false;  // compute mtp_aux_loss (when mtp_depth > 0)
  Tensor mtp_labels;         // (B, T) int64 targets for MTP (−100 = ignore); undefined: the input ids
  bool return_hidden = false;
  // false: skip the LM head (logits stay undefined; hidden is returned). For evaluations that need logits at a
  // few positions only: gather those rows of `hidden` and multiply by lm_head_weight() (eval/prefill.h).
  bool compute_logits = true;
};

struct ForwardResult {
  Tensor logits;        // (B, T, V), unless compute_logits is false
  Tensor mtp_aux_loss;  // 0-d, defined only when compute_mtp and mtp_depth > 0
  Tensor hidden;        // (B, T, d) final-normed hidden, when return_hidden or !compute_logits
  ModelState state;     // the state after the call
};

struct StepResult {
  Tensor logits;  // (B, V)
  ModelState state;
};

class LanguageModel : public nn::Module {
 public:
  virtual const HydraConfig& config() const = 0;
  // "hydra" or "transformer" (the config's arch).
  virtual std::string arch() const = 0;

  // Full forward over ids (B, T) int64 from a fresh state.
  virtual ForwardResult forward(const Tensor& ids, const ForwardOptions& opts = {}) const = 0;
  // Chunked prefill: forward over ids starting from `state` (empty vector = fresh).
  virtual ForwardResult forward(const Tensor& ids, const ModelState& state, const ForwardOptions& opts = {}) const = 0;
  // One token per row, ids (B,) int64 (inference only: runs without recording gradients).
  virtual StepResult step(const Tensor& ids, const ModelState& state) const = 0;

  // The LM head matrix E (V, d): the embedding when tied, else the separate head.
  virtual const Tensor& lm_head_weight() const = 0;
  // Unique trainable parameters, optionally minus the V·d of the embedding.
  virtual int64_t num_parameters(bool exclude_embedding = false) const = 0;
  // Re-runs the model's initialisation (SPEC §3 rules) from `seed`.
  virtual void init_weights(uint64_t seed) = 0;

  // Mixed precision (nn/precision.h): BFloat16 = the bf16 policy (float32 master parameters, bf16 activations and
  // GEMM inputs); nullopt computes in the parameters' dtype. bf16 needs the model on a CUDA device.
  virtual void set_compute_dtype(std::optional<DType> t) = 0;
  virtual std::optional<DType> compute_dtype() const = 0;
  // Per-block activation recomputation (gradients unchanged).
  virtual void set_recompute(bool on) = 0;
  virtual bool recompute() const = 0;

  // The tensors a checkpoint stores, under the reference's names (SPEC §4), and their loader. The defaults are
  // Module::state_dict()/load_state_dict(); a model whose reference lists a tied tensor under two names
  // overrides them.
  virtual std::map<std::string, Tensor> checkpoint_tensors() const { return state_dict(); }
  virtual void load_checkpoint_tensors(const std::map<std::string, Tensor>& tensors, const std::string& what) {
    load_state_dict(tensors, what);
  }
};

// Builds the model `cfg.arch` names ("hydra": HydraLM, "transformer": the SPEC §8.5 baseline), initialised from
// `seed`. The config is validated; an unknown arch is an error naming it.
std::unique_ptr<LanguageModel> make_language_model(const HydraConfig& cfg, uint64_t seed = 0);

// Mean next-token cross-entropy of logits[:, :-1] against ids[:, 1:] (0-d float32, or float64 logits' dtype).
Tensor lm_loss(const Tensor& logits, const Tensor& ids);

}  // namespace hydra
