#pragma once
// HydraLM (SPEC §2): embedding, a pre-norm residual stack whose mixers are Gated DeltaNet, sliding-window
// attention or top-k chunk retrieval attention, SwiGLU MLPs, a final RMSNorm, a tied (or untied) LM head and
// optional multi-token-prediction heads. Parameter names and shapes are those of SPEC §4, so
// state_dict()/load_state_dict() interchange weights with the PyTorch reference.
//
// Computation runs in the parameters' dtype and device (float32 by default; to(Float64) for exactness tests).
// Every forward is differentiable; step() is inference only.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hydra/config.h"
#include "hydra/lm.h"
#include "hydra/state.h"
#include "nn/layers.h"
#include "nn/module.h"

namespace hydra {

struct MixerOutput {
  Tensor y;          // (B, T, d), or (B, d) from step
  LayerState state;  // the state after this call
};

// A token mixer: x̂ (B, T, d) -> (B, T, d) with a streaming state.
class Mixer : public nn::Module {
 public:
  virtual LayerType type() const = 0;
  // Forward over T ≥ 1 tokens starting from `state` (fresh = default LayerState).
  virtual MixerOutput forward(const Tensor& x, const LayerState& state) const = 0;
  // One token x (B, d) (inference; no gradients).
  virtual MixerOutput step(const Tensor& x, const LayerState& state) const = 0;
};

// Gated DeltaNet (SPEC §2.7): qkv_proj, ab_proj (with bias), short_conv, gate_proj (if dn_use_gate), o_proj.
class GatedDeltaNet : public Mixer {
 public:
  GatedDeltaNet(const HydraConfig& cfg, Generator& gen);
  LayerType type() const override { return LayerType::DeltaNet; }
  MixerOutput forward(const Tensor& x, const LayerState& state) const override;
  MixerOutput step(const Tensor& x, const LayerState& state) const override;

  nn::Linear qkv_proj, ab_proj;
  nn::ShortConv short_conv;
  std::unique_ptr<nn::Linear> gate_proj;  // null when dn_use_gate is false
  nn::Linear o_proj;

 private:
  Tensor gate_logits(const Tensor& x) const;  // ab_proj(x) in the parameters' dtype (SPEC §2.7 steps 3–4)
  int64_t H_, D_, chunk_;
  bool norm_qk_;
};

// Sliding-window attention (SPEC §2.10): qkv_proj, o_proj, RoPE on q and k, window W.
class SlidingWindowAttention : public Mixer {
 public:
  SlidingWindowAttention(const HydraConfig& cfg, Generator& gen);
  LayerType type() const override { return LayerType::Swa; }
  MixerOutput forward(const Tensor& x, const LayerState& state) const override;
  MixerOutput step(const Tensor& x, const LayerState& state) const override;

  nn::Linear qkv_proj, o_proj;

 private:
  int64_t H_, D_, window_;
  double rope_base_;
};

// Retrieval attention (SPEC §2.11): qkv_proj, o_proj and, with retrieval_learned_summary, summary_proj (D, D).
class RetrievalAttention : public Mixer {
 public:
  RetrievalAttention(const HydraConfig& cfg, Generator& gen);
  LayerType type() const override { return LayerType::Retrieval; }
  MixerOutput forward(const Tensor& x, const LayerState& state) const override;
  MixerOutput step(const Tensor& x, const LayerState& state) const override;

  nn::Linear qkv_proj, o_proj;
  std::unique_ptr<nn::Linear> summary_proj;  // null unless retrieval_learned_summary

 private:
  int64_t H_, D_, chunk_, topk_;
  double rope_base_;
};

// Pre-norm residual block (SPEC §2.3): u = x + mixer(norm1(x)); y = u + mlp(norm2(u)).
class HydraBlock : public nn::Module {
 public:
  HydraBlock(const HydraConfig& cfg, LayerType type, Generator& gen);
  MixerOutput forward(const Tensor& x, const LayerState& state) const;
  MixerOutput step(const Tensor& x, const LayerState& state) const;

  nn::RMSNorm norm1;
  std::unique_ptr<Mixer> mixer;
  nn::RMSNorm norm2;
  nn::SwiGLU mlp;

 private:
  std::string profile_name_;  // "forward: <type> mixer", for ag::profile
};

// MTP head d′ (SPEC §2.12): logits = proj(norm(h))·Eᵀ.
class MtpHead : public nn::Module {
 public:
  MtpHead(const HydraConfig& cfg, Generator& gen);
  nn::RMSNorm norm;
  nn::Linear proj;
};

class HydraLM : public LanguageModel {
  // Declared first: the members below are built from them.
  HydraConfig cfg_;
  Generator gen_;

 public:
  // Builds the model and initialises it per SPEC §3 from `seed` (reproducible).
  explicit HydraLM(const HydraConfig& cfg, uint64_t seed = 0);

  const HydraConfig& config() const override { return cfg_; }
  std::string arch() const override { return "hydra"; }
  // Full forward over ids (B, T) int64 from a fresh state.
  ForwardResult forward(const Tensor& ids, const ForwardOptions& opts = {}) const override;
  // Chunked prefill: forward over ids starting from `state` (empty vector = fresh).
  ForwardResult forward(const Tensor& ids, const ModelState& state, const ForwardOptions& opts = {}) const override;
  // One token per row, ids (B,) int64 (inference only: runs without recording gradients).
  StepResult step(const Tensor& ids, const ModelState& state) const override;

  // The LM head matrix E (V, d): embed.weight when tied, else lm_head.weight.
  const Tensor& lm_head_weight() const override { return cfg_.tie_embeddings ? embed.weight : lm_head->weight; }
  // SPEC §2.1: unique trainable parameters, optionally minus the V·d of the embedding.
  int64_t num_parameters(bool exclude_embedding = false) const override;

  // Re-runs the SPEC §3 initialisation.
  void init_weights(uint64_t seed) override;

  // Mixed precision (nn/precision.h): BFloat16 runs forward and step under the bf16 policy (float32 master
  // parameters, bf16 activations and GEMM inputs, float32 statistics, gates, state, residual stream and loss);
  // nullopt (the default) computes in the parameters' dtype. bf16 needs the model on a CUDA device.
  void set_compute_dtype(std::optional<DType> t) override;
  std::optional<DType> compute_dtype() const override { return compute_dtype_; }

  // Per-block activation recomputation (SPEC grad_checkpoint): when on and a graph is being recorded, forward keeps
  // only each block's input and backward re-runs the block; the gradients are the same as without it (the
  // mixers are deterministic). Gradients do not flow into an incoming streaming state in this mode (its tensors are
  // used as constants). Off by default.
  void set_recompute(bool on) override;
  bool recompute() const override { return recompute_; }

  nn::Embedding embed;
  nn::ModuleList<HydraBlock> blocks;
  nn::RMSNorm norm_f;
  std::unique_ptr<nn::Linear> lm_head;  // only when untied
  nn::ModuleList<MtpHead> mtp_heads;

 private:
  std::optional<DType> compute_dtype_;
  bool recompute_ = false;
  Tensor mtp_loss(const Tensor& hidden, const Tensor& ids, const Tensor& labels) const;
};

// The device ("cpu" or "cuda") that `requested` (auto | cpu | cuda) resolves to for a HydraLM in this build and on
// this machine; `what` names the setting in messages (e.g. "--device", "train.device").
std::string resolve_model_device(const std::string& requested, const std::string& what);

}  // namespace hydra
