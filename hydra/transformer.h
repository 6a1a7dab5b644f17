#pragma once
// The dense Transformer baseline (SPEC §8.5), built from the same HydraConfig as HydraLM (arch "transformer"):
//
//   x = Embed(ids)                                   embed (V, d), no padding row
//   x ← x + Attn(RMSNorm_attn(x))                    L blocks, pre-norm
//   x ← x + SwiGLU(RMSNorm_mlp(x))
//   h = RMSNorm(x);  logits = h·Eᵀ                   E = embed.weight (tied) or lm_head.weight
//
// Attn: qkv_proj (3I, d) split in thirds, per-head views, RoPE (SPEC §2.9, base swa_rope_base, absolute positions),
// full causal softmax attention scaled 1/√D, o_proj (d, I); no biases. SwiGLU and F as SPEC §2.5.
// Parameter names (SPEC §4 "Dense baseline names"), in this order: embed.weight, blocks.{i}.attn_norm.weight,
// blocks.{i}.attn.qkv_proj.weight, blocks.{i}.attn.o_proj.weight, blocks.{i}.mlp_norm.weight,
// blocks.{i}.mlp.w_fused.weight, blocks.{i}.mlp.w_down.weight, norm.weight, and lm_head.weight when untied.
// Init: SPEC §3 rules 2, 3, 6 only (every Linear N(0, σ₀), the embedding N(0, σ₀) on all rows, norms 1; no depth
// scaling).
//
// Attention reuses the sliding-window attention mixer (SlidingWindowAttention, hydra/model.h) with the window
// kFullAttentionWindow: a window W ≥ the key count S is exactly full causal attention, and the window kernels
// (CPU and CUDA, hydra/mixers/window_attn/) clamp W to S before any index arithmetic, so the work is O(T·S), not
// O(W), and nothing overflows. The same mixer gives streaming: its state keeps min(W, S) = all key/value rows, so
// the state of a layer is the whole KV cache (it grows with the length — the baseline's cost, SPEC §5's O(1) does
// not hold here). Streaming state: one LayerState per block with k_cache, v_cache (B, S, H, D) (keys after RoPE)
// and pos.
//
// Computation runs in the parameters' dtype and device (float32 by default; to(Float64) for exactness tests), or
// under the bf16 mixed-precision policy (nn/precision.h) exactly as HydraLM. Every forward is differentiable;
// step() is inference only. There are no MTP heads: ForwardOptions::compute_mtp and mtp_labels are ignored, and a
// config with mtp_depth > 0 is an error.
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "hydra/config.h"
#include "hydra/lm.h"
#include "hydra/model.h"
#include "hydra/state.h"
#include "nn/layers.h"
#include "nn/module.h"

namespace hydra {

// Pre-norm block: u = x + attn(attn_norm(x)); y = u + mlp(mlp_norm(u)).
class TransformerBlock : public nn::Module {
 public:
  // attn_cfg: the model's config with swa_window = DenseTransformer::kFullAttentionWindow.
  TransformerBlock(const HydraConfig& attn_cfg, Generator& gen);
  // x (B, T, d) from `state` (fresh = default LayerState); y (B, T, d) and the state after.
  MixerOutput forward(const Tensor& x, const LayerState& state) const;
  // One token x (B, d) (inference; no gradients).
  MixerOutput step(const Tensor& x, const LayerState& state) const;

  nn::RMSNorm attn_norm;
  SlidingWindowAttention attn;
  nn::RMSNorm mlp_norm;
  nn::SwiGLU mlp;
};

class DenseTransformer : public LanguageModel {
  // Declared first: the members below are built from them.
  HydraConfig cfg_;
  Generator gen_;

 public:
  // The attention window that makes the sliding-window mixer full causal attention: any W ≥ the number of keys
  // is exact. 2^31 − 1 keys is beyond any cache that fits in memory, and the value stays in int32 range for any
  // code that narrows it; the kernels clamp it to S anyway.
  static constexpr int64_t kFullAttentionWindow = std::numeric_limits<int32_t>::max();

  // Builds the model and initialises it (SPEC §8.5 / §3 rules 2, 3, 6) from `seed` (reproducible). The config must
  // have arch "transformer", mtp_depth 0 and an even head dim (RoPE).
  explicit DenseTransformer(const HydraConfig& cfg, uint64_t seed = 0);

  const HydraConfig& config() const override { return cfg_; }
  std::string arch() const override { return "transformer"; }
  ForwardResult forward(const Tensor& ids, const ForwardOptions& opts = {}) const override;
  ForwardResult forward(const Tensor& ids, const ModelState& state, const ForwardOptions& opts = {}) const override;
  StepResult step(const Tensor& ids, const ModelState& state) const override;

  const Tensor& lm_head_weight() const override { return cfg_.tie_embeddings ? embed.weight : lm_head->weight; }
  int64_t num_parameters(bool exclude_embedding = false) const override;
  void init_weights(uint64_t seed) override;

  void set_compute_dtype(std::optional<DType> t) override;
  std::optional<DType> compute_dtype() const override { return compute_dtype_; }
  // Per-block activation recomputation, as HydraLM::set_recompute.
  void set_recompute(bool on) override { recompute_ = on; }
  bool recompute() const override { return recompute_; }

  // The PyTorch reference's state dict: with tied embeddings it lists the embedding a second time as
  // "lm_head.weight" (the same tensor).
  std::map<std::string, Tensor> checkpoint_tensors() const override;
  // Accepts tied checkpoints with or without "lm_head.weight" (when present it must be (V, d); its values are not
  // read, embed.weight is the tied matrix); otherwise as load_state_dict (errors name `what` and the tensor).
  void load_checkpoint_tensors(const std::map<std::string, Tensor>& tensors, const std::string& what) override;

  nn::Embedding embed;
  nn::ModuleList<TransformerBlock> blocks;
  nn::RMSNorm norm;
  std::unique_ptr<nn::Linear> lm_head;  // only when untied

 private:
  std::optional<DType> compute_dtype_;
  bool recompute_ = false;
};

}  // namespace hydra
