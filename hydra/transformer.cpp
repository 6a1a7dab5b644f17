// The dense Transformer baseline (SPEC §8.5); the contract is in transformer.h. The attention is the
// sliding-window mixer with a window no sequence reaches (full causal attention), so its kernels, RoPE, KV cache
// and streaming rules are HydraLM's SWA ones.
#include "hydra/transformer.h"

#include <cmath>
#include <stdexcept>

#include "autograd/autograd.h"
#include "autograd/profile.h"
#include "hydra/stack.h"
#include "nn/precision.h"
#include "tensor/check.h"

namespace hydra {
namespace {

HydraConfig checked_transformer_config(const HydraConfig& cfg) {
  HydraConfig r = cfg.resolved();
  HYDRA_CHECK(r.arch == "transformer",
              "DenseTransformer: config has model.arch '{}'; DenseTransformer builds arch 'transformer' only", r.arch);
  HYDRA_CHECK(r.mtp_depth == 0,
              "DenseTransformer: model.mtp_depth = {}, but the dense transformer (arch transformer) has no MTP heads; "
              "set model.mtp_depth to 0",
              r.mtp_depth);
  const int64_t D = r.resolved_head_dim();
  HYDRA_CHECK(D % 2 == 0,
              "DenseTransformer: RoPE needs an even head dim, got D = {} (model.head_dim, or model.d_model {} / "
              "model.n_heads {})",
              D, r.d_model, r.n_heads);
  return r;
}

// The attention's config: the model's with a window no sequence reaches (full causal attention).
HydraConfig full_attention_config(const HydraConfig& cfg) {
  HydraConfig r = cfg;
  r.swa_window = DenseTransformer::kFullAttentionWindow;
  return r;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Block

TransformerBlock::TransformerBlock(const HydraConfig& attn_cfg, Generator& gen)
    : attn_norm(attn_cfg.d_model, attn_cfg.rms_eps),
      attn(attn_cfg, gen),
      mlp_norm(attn_cfg.d_model, attn_cfg.rms_eps),
      mlp(attn_cfg.d_model, attn_cfg.mlp_hidden_dim(), gen) {
  register_module("attn_norm", &attn_norm);
  register_module("attn", &attn);
  register_module("mlp_norm", &mlp_norm);
  register_module("mlp", &mlp);
}

MixerOutput TransformerBlock::forward(const Tensor& x, const LayerState& state) const {
  MixerOutput m;
  {
    ag::profile::Scope scope("forward: attention (norms included)");
    m = attn.forward(attn_norm.forward(x), state);
  }
  // The residual stream keeps x's dtype (float32 under bf16 mixed precision): sublayer outputs are cast back.
  const Tensor u = nn::add_residual(x, m.y);
  ag::profile::Scope scope("forward: mlp (norms included)");
  m.y = nn::add_residual(u, mlp.forward(mlp_norm.forward(u)));
  return m;
}

MixerOutput TransformerBlock::step(const Tensor& x, const LayerState& state) const {
  MixerOutput m = attn.step(attn_norm.forward(x), state);
  const Tensor u = nn::add_residual(x, m.y);
  m.y = nn::add_residual(u, mlp.forward(mlp_norm.forward(u)));
  return m;
}

// ---------------------------------------------------------------------------------------------------------
// Model

DenseTransformer::DenseTransformer(const HydraConfig& cfg, uint64_t seed)
    : cfg_(checked_transformer_config(cfg)),
      gen_(seed),
      embed(cfg_.vocab_size, cfg_.d_model, /*padding_idx=*/-1, gen_),  // SPEC §8.5: no padding row
      norm(cfg_.d_model, cfg_.rms_eps) {
  register_module("embed", &embed);
  const HydraConfig attn_cfg = full_attention_config(cfg_);
  for (int64_t i = 0; i < cfg_.n_layers; ++i) blocks.push_back(std::make_unique<TransformerBlock>(attn_cfg, gen_));
  register_module("blocks", &blocks);
  register_module("norm", &norm);
  if (!cfg_.tie_embeddings) {
    lm_head = std::make_unique<nn::Linear>(cfg_.d_model, cfg_.vocab_size, false, gen_);
    register_module("lm_head", lm_head.get());
  }
  init_weights(seed);
}

void DenseTransformer::init_weights(uint64_t seed) {
  // SPEC §3 rules 2, 3, 6 (§8.5): every Linear weight N(0, σ₀) (o_proj, w_down and an untied lm_head included: no
  // depth scaling), the embedding N(0, σ₀) on every row, RMSNorm weights 1. There are no biases.
  Generator gen(seed);
  const double s0 = cfg_.initializer_range;
  ag::NoGradGuard no_grad;
  apply_to_parameters([&](const std::string& name, Tensor& p) {
    Tensor w = p.detach();
    if (ends_with(name, "norm.weight")) {  // attn_norm, mlp_norm, norm
      w.fill_(1.0);
    } else {
      normal_(w, 0.0, s0, gen);
    }
  });
}

int64_t DenseTransformer::num_parameters(bool exclude_embedding) const {
  return Module::num_parameters() - (exclude_embedding ? cfg_.vocab_size * cfg_.d_model : 0);
}

void DenseTransformer::set_compute_dtype(std::optional<DType> t) {
  HYDRA_CHECK(!t || *t == DType::BFloat16 || *t == DType::Float32,
              "DenseTransformer::set_compute_dtype: supported are bfloat16 (mixed precision) or float32, got {}",
              t ? dtype_name(*t) : "none");
  compute_dtype_ = t;
}

std::map<std::string, Tensor> DenseTransformer::checkpoint_tensors() const {
  std::map<std::string, Tensor> sd = state_dict();
  if (cfg_.tie_embeddings) sd["lm_head.weight"] = sd.at("embed.weight");
  return sd;
}

void DenseTransformer::load_checkpoint_tensors(const std::map<std::string, Tensor>& tensors, const std::string& what) {
  if (!cfg_.tie_embeddings) {
    load_state_dict(tensors, what);
    return;
  }
  const auto it = tensors.find("lm_head.weight");
  if (it == tensors.end()) {
    load_state_dict(tensors, what);
    return;
  }
  const Shape want{cfg_.vocab_size, cfg_.d_model};
  HYDRA_CHECK(it->second.defined() && it->second.shape() == want,
              "{}: tensor 'lm_head.weight' has shape {}, expected {} (tie_embeddings is true: it is embed.weight "
              "listed a second time)",
              what, it->second.defined() ? shape_str(it->second.shape()) : "undefined", shape_str(want));
  std::map<std::string, Tensor> rest = tensors;
  rest.erase("lm_head.weight");
  load_state_dict(rest, what);
}

ForwardResult DenseTransformer::forward(const Tensor& ids, const ForwardOptions& opts) const {
  return forward(ids, ModelState{}, opts);
}

ForwardResult DenseTransformer::forward(const Tensor& ids, const ModelState& state, const ForwardOptions& opts) const {
  detail::check_ids_and_state(ids, state, blocks.size(), "DenseTransformer::forward", /*step=*/false);
  const nn::ComputeDTypeGuard precision(compute_dtype_);
  const Tensor ids_dev = ids.to(device());
  Tensor x;
  {
    ag::profile::Scope scope("forward: embedding");
    x = embed.forward(ids_dev);
  }
  ForwardResult out;
  x = detail::run_blocks(blocks, x, state, recompute_, compute_dtype_, out.state);
  ag::profile::Scope scope("forward: final norm + LM head");
  const Tensor h = norm.forward(x);
  if (opts.compute_logits) out.logits = ag::linear(h, nn::to_compute(lm_head_weight()));
  if (opts.return_hidden || !opts.compute_logits) out.hidden = h;
  return out;
}

StepResult DenseTransformer::step(const Tensor& ids, const ModelState& state) const {
  detail::check_ids_and_state(ids, state, blocks.size(), "DenseTransformer::step", /*step=*/true);
  ag::NoGradGuard no_grad;
  const nn::ComputeDTypeGuard precision(compute_dtype_);
  StepResult out;
  const Tensor x = detail::run_blocks(blocks, embed.forward(ids.to(device())), state, false, compute_dtype_, out.state,
                                      /*step=*/true);
  out.logits = ag::linear(norm.forward(x), nn::to_compute(lm_head_weight()));
  return out;
}

}  // namespace hydra
