// HydraLM and its mixers (SPEC §2, §3, §5). The mixer kernels live in hydra/mixers/<op>/.
#include "hydra/model.h"

#include <cmath>
#include <stdexcept>

#include "autograd/autograd.h"
#include "autograd/profile.h"
#include "hydra/stack.h"
#include "nn/precision.h"
#include "hydra/mixers/chunk_attn/chunk_attn.h"
#include "hydra/mixers/gated_delta/gated_delta.h"
#include "hydra/mixers/window_attn/window_attn.h"
#include "tensor/check.h"
#include "tensor/cuda/backend.h"
#include "tensor/ops/indexing.h"
#include "tensor/ops/reduce.h"

namespace hydra {
namespace {

// (B, T, I) -> (B, T, H, D) (a copy when x is a non-contiguous slice).
Tensor heads(const Tensor& x, int64_t H, int64_t D) { return ag::reshape(x, {x.size(0), x.size(1), H, D}); }

void check_mixer_input(const Tensor& x, int64_t d, const char* who) {
  HYDRA_CHECK(x.defined() && x.dim() == 3 && x.size(2) == d && x.size(1) >= 1,
              "{}: input has shape {}, expected (B, T ≥ 1, {})", who, x.defined() ? shape_str(x.shape()) : "undefined",
              d);
}

// Concatenation along time of the defined, non-empty pieces (at least one is non-empty).
Tensor cat_time(std::initializer_list<Tensor> parts) {
  std::vector<Tensor> xs;
  for (const Tensor& t : parts)
    if (t.defined() && t.size(1) > 0) xs.push_back(t);
  return xs.size() == 1 ? xs[0] : ag::concat(xs, 1);
}

// The rows [a, b) along time as a state tensor: detached contiguous copies when no graph is being built.
Tensor keep_rows(const Tensor& x, int64_t a, int64_t b) {
  Tensor r = ag::slice(x, 1, a, b);
  return ag::grad_enabled() ? r : r.contiguous();
}

// One token through a mixer whose forward handles T = 1 with its state exactly (the attention mixers): x (B, d).
MixerOutput step_through_forward(const Mixer& m, const char* who, const Tensor& x, const LayerState& st) {
  HYDRA_CHECK(x.dim() == 2, "{}: input has shape {}, expected (B, d)", who, shape_str(x.shape()));
  ag::NoGradGuard no_grad;
  MixerOutput out = m.forward(x.unsqueeze(1), st);
  out.y = out.y.squeeze(1);
  return out;
}

// The identity matrix with w's shape (square), dtype and device.
Tensor eye_like(const Tensor& w) {
  const int64_t n = w.size(0);
  std::vector<double> v(static_cast<std::size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i * n + i)] = 1.0;
  return from_vector(v, {n, n}, w.dtype(), w.device());
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Gated DeltaNet (SPEC §2.7)

GatedDeltaNet::GatedDeltaNet(const HydraConfig& cfg, Generator& gen)
    : qkv_proj(cfg.d_model, 3 * cfg.inner_dim(), false, gen),
      ab_proj(cfg.d_model, 2 * cfg.n_heads, true, gen),
      short_conv(3 * cfg.inner_dim(), cfg.dn_short_conv_kernel, gen),
      gate_proj(cfg.dn_use_gate ? std::make_unique<nn::Linear>(cfg.d_model, cfg.inner_dim(), false, gen) : nullptr),
      o_proj(cfg.inner_dim(), cfg.d_model, false, gen),
      H_(cfg.n_heads),
      D_(cfg.resolved_head_dim()),
      chunk_(cfg.dn_chunk_size),
      norm_qk_(cfg.dn_norm_qk) {
  // SPEC §3 step 1 (a stand-alone module keeps it; HydraLM's init overwrites it with 0).
  ab_proj.bias.detach().narrow(0, 0, H_).fill_(std::log(49.0));
  register_module("qkv_proj", &qkv_proj);
  register_module("ab_proj", &ab_proj);
  register_module("short_conv", &short_conv);
  if (gate_proj) register_module("gate_proj", gate_proj.get());
  register_module("o_proj", &o_proj);
}

Tensor GatedDeltaNet::gate_logits(const Tensor& x) const {
  const nn::ComputeDTypeGuard params_dtype(std::nullopt);
  return ab_proj.forward(nn::to_dtype_of(x, ab_proj.weight));
}

MixerOutput GatedDeltaNet::forward(const Tensor& x, const LayerState& st) const {
  check_mixer_input(x, qkv_proj.in_features(), "GatedDeltaNet");
  const int64_t I = H_ * D_;
  const nn::ShortConv::Output conv = short_conv.forward(qkv_proj.forward(x), st.conv_cache);
  const std::vector<Tensor> qkv = ag::split(conv.y, {I, I, I}, -1);
  Tensor q = heads(qkv[0], H_, D_), k = heads(qkv[1], H_, D_), v = heads(qkv[2], H_, D_);
  if (norm_qk_) q = ag::l2_normalize(q), k = ag::l2_normalize(k);
  // The gates, their projection included, are computed and kept in the parameters' dtype (float32 under bf16 mixed
  // precision, nn/precision.h): the decay products over a chunk are sensitive to rounding.
  const std::vector<Tensor> ab = ag::split(ag::sigmoid(gate_logits(x)), {H_, H_}, -1);
  const GatedDeltaOutput r = ag::gated_delta(q, k, v, ag::contiguous(ab[0]), ag::contiguous(ab[1]), st.S, chunk_);
  Tensor o = ag::reshape(r.o, {x.size(0), x.size(1), I});
  if (gate_proj) o = ag::mul(o, ag::silu(gate_proj->forward(x)));
  MixerOutput out{o_proj.forward(o), {}};
  out.state.S = r.final_state;
  out.state.conv_cache = conv.new_cache;
  out.state.pos = st.pos + x.size(1);
  return out;
}

MixerOutput GatedDeltaNet::step(const Tensor& x, const LayerState& st) const {
  HYDRA_CHECK(x.dim() == 2 && x.size(1) == qkv_proj.in_features(), "GatedDeltaNet::step: input has shape {}, expected (B, {})",
              shape_str(x.shape()), qkv_proj.in_features());
  ag::NoGradGuard no_grad;
  const int64_t B = x.size(0), I = H_ * D_;
  const nn::ShortConv::Output conv = short_conv.step(qkv_proj.forward(x), st.conv_cache);
  const std::vector<Tensor> qkv = hydra::split(conv.y, {I, I, I}, -1);
  Tensor q = qkv[0].reshape({B, H_, D_}), k = qkv[1].reshape({B, H_, D_}), v = qkv[2].reshape({B, H_, D_});
  if (norm_qk_) q = ag::l2_normalize(q), k = ag::l2_normalize(k);
  const std::vector<Tensor> ab = hydra::split(ag::sigmoid(gate_logits(x)), {H_, H_}, -1);
  const GatedDeltaOutput r = gated_delta_step(q, k, v, ab[0].contiguous(), ab[1].contiguous(), st.S);
  Tensor o = r.o.reshape({B, I});
  if (gate_proj) o = ag::mul(o, ag::silu(gate_proj->forward(x)));
  MixerOutput out{o_proj.forward(o), {}};
  out.state.S = r.final_state;
  out.state.conv_cache = conv.new_cache;
  out.state.pos = st.pos + 1;
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Sliding-window attention (SPEC §2.10)

SlidingWindowAttention::SlidingWindowAttention(const HydraConfig& cfg, Generator& gen)
    : qkv_proj(cfg.d_model, 3 * cfg.inner_dim(), false, gen),
      o_proj(cfg.inner_dim(), cfg.d_model, false, gen),
      H_(cfg.n_heads),
      D_(cfg.resolved_head_dim()),
      window_(cfg.swa_window),
      rope_base_(cfg.swa_rope_base) {
  HYDRA_CHECK(D_ % 2 == 0, "SlidingWindowAttention: RoPE needs an even head_dim, got {}", D_);
  register_module("qkv_proj", &qkv_proj);
  register_module("o_proj", &o_proj);
}

MixerOutput SlidingWindowAttention::forward(const Tensor& x, const LayerState& st) const {
  check_mixer_input(x, qkv_proj.in_features(), "SlidingWindowAttention");
  const int64_t B = x.size(0), T = x.size(1), I = H_ * D_;
  const std::vector<Tensor> qkv = ag::split(qkv_proj.forward(x), {I, I, I}, -1);
  const Tensor q = nn::apply_rotary(heads(qkv[0], H_, D_), st.pos, rope_base_);
  const Tensor k = nn::apply_rotary(heads(qkv[1], H_, D_), st.pos, rope_base_);
  const Tensor keys = cat_time({st.k_cache, k}), vals = cat_time({st.v_cache, heads(qkv[2], H_, D_)});
  const Tensor o = ag::window_attn(q, keys, vals, window_, 1.0 / std::sqrt(static_cast<double>(D_)));
  MixerOutput out{o_proj.forward(ag::reshape(o, {B, T, I})), {}};
  const int64_t S = keys.size(1), keep = std::min(window_, S);
  out.state.k_cache = keep_rows(keys, S - keep, S);
  out.state.v_cache = keep_rows(vals, S - keep, S);
  out.state.pos = st.pos + T;
  return out;
}

MixerOutput SlidingWindowAttention::step(const Tensor& x, const LayerState& st) const {
  return step_through_forward(*this, "SlidingWindowAttention::step", x, st);
}

// ---------------------------------------------------------------------------------------------------------
// Retrieval attention (SPEC §2.11, state §5.4)

RetrievalAttention::RetrievalAttention(const HydraConfig& cfg, Generator& gen)
    : qkv_proj(cfg.d_model, 3 * cfg.inner_dim(), false, gen),
      o_proj(cfg.inner_dim(), cfg.d_model, false, gen),
      summary_proj(cfg.retrieval_learned_summary
                       ? std::make_unique<nn::Linear>(cfg.resolved_head_dim(), cfg.resolved_head_dim(), false, gen)
                       : nullptr),
      H_(cfg.n_heads),
      D_(cfg.resolved_head_dim()),
      chunk_(cfg.retrieval_chunk_size),
      topk_(cfg.retrieval_top_k),
      rope_base_(cfg.swa_rope_base) {
  HYDRA_CHECK(D_ % 2 == 0, "RetrievalAttention: RoPE needs an even head_dim, got {}", D_);
  register_module("qkv_proj", &qkv_proj);
  register_module("o_proj", &o_proj);
  if (summary_proj) {
    summary_proj->weight.detach().copy_(eye_like(summary_proj->weight));
    register_module("summary_proj", summary_proj.get());
  }
}

MixerOutput RetrievalAttention::forward(const Tensor& x, const LayerState& st) const {
  check_mixer_input(x, qkv_proj.in_features(), "RetrievalAttention");
  const int64_t B = x.size(0), T = x.size(1), I = H_ * D_, C = chunk_;
  const int64_t pos = st.pos, S = pos + T, n_total = S / C;
  const std::vector<Tensor> qkv = ag::split(qkv_proj.forward(x), {I, I, I}, -1);
  const Tensor q0 = heads(qkv[0], H_, D_), k0 = heads(qkv[1], H_, D_), v = heads(qkv[2], H_, D_);
  const Tensor q = nn::apply_rotary(q0, pos, rope_base_), k = nn::apply_rotary(k0, pos, rope_base_);
  const Tensor keys = cat_time({st.bank_k, st.buf_k, k}), vals = cat_time({st.bank_v, st.buf_v, v});

  // Chunk summaries (means of pre-RoPE keys) of every complete chunk, and the running sum of the in-flight one.
  // Routing is not differentiated (SPEC §2.11.5).
  Tensor summaries, buf_ksum;
  {
    ag::NoGradGuard no_grad;
    const Tensor k0d = k0.detach();
    const DType sum_dtype = x.dtype() == DType::Float64 ? DType::Float64 : DType::Float32;
    const int64_t n_old = st.bank_sum.defined() ? st.bank_sum.size(1) : 0;
    HYDRA_CHECK(n_old == pos / C, "RetrievalAttention: state holds {} chunk summaries at pos {} (chunk {}), expected {}",
                n_old, pos, C, pos / C);
    Tensor running = st.buf_ksum.defined() ? st.buf_ksum.to(sum_dtype) : zeros({B, H_, D_}, sum_dtype, x.device());
    std::vector<Tensor> sums;
    if (st.bank_sum.defined()) sums.push_back(st.bank_sum);
    int64_t t0 = 0;  // local index of the first token of the chunk being filled
    for (int64_t j = n_old; j < n_total; ++j) {
      const int64_t t1 = (j + 1) * C - pos;  // one past its last token
      running = hydra::add(running, hydra::sum(k0d.slice(1, t0, t1).to(sum_dtype), {1}));
      sums.push_back(hydra::div(running, static_cast<double>(C)).to(x.dtype()).unsqueeze(1));
      running = zeros({B, H_, D_}, sum_dtype, x.device());
      t0 = t1;
    }
    if (t0 < T) running = hydra::add(running, hydra::sum(k0d.slice(1, t0, T).to(sum_dtype), {1}));
    buf_ksum = running;
    summaries = sums.empty() ? zeros({B, 0, H_, D_}, x.dtype(), x.device())
                             : (sums.size() == 1 ? sums[0] : hydra::concat(sums, 1));
  }
  Tensor route_vectors = summaries;
  if (summary_proj) {
    ag::NoGradGuard no_grad;
    route_vectors = hydra::linear(summaries, summary_proj->weight.detach().to(summaries.dtype()));
  }
  const Tensor idx = chunk_route(q0.detach(), route_vectors, C, topk_, S);

  // Learned summary: the straight-through logit term ρ − stopgrad(ρ) (value 0), the only path to W_s.
  Tensor bias;
  if (summary_proj && ag::grad_enabled() && ag::requires_grad(summary_proj->weight) && summaries.size(1) > 0 &&
      topk_ > 0) {
    const int64_t nc = summaries.size(1);
    const Tensor mapped =
        ag::reshape(ag::linear(summaries, nn::to_dtype_of(summary_proj->weight, summaries)), {B * nc * H_, D_});
    // Flat row of chunk idx[b, t, h, i] in `mapped`: b·nc·H + max(idx, 0)·H + h (−1 padding reads row 0; the
    // kernel ignores those slots). Built with device ops, so the GPU path does not wait for the routing.
    const Tensor b_off = hydra::mul(arange(0, static_cast<double>(B), 1, DType::Int64, x.device()).reshape({B, 1, 1, 1}),
                                    static_cast<double>(nc * H_));
    const Tensor h_off = arange(0, static_cast<double>(H_), 1, DType::Int64, x.device()).reshape({1, 1, H_, 1});
    const Tensor rows = hydra::add(hydra::add(hydra::mul(hydra::clamp(idx, 0, static_cast<double>(nc - 1)), static_cast<double>(H_)), b_off),
                                   h_off)
                            .reshape({B * T * H_ * topk_});
    const Tensor g = ag::reshape(ag::index_select(mapped, 0, rows),
                                 {B, T, H_, topk_, D_});
    const Tensor rho = ag::sum(ag::mul(g, q0.detach().unsqueeze(3)), {4});
    bias = ag::sub(rho, rho.detach());
  }
  const Tensor o = ag::chunk_attn(q, keys, vals, idx, bias, C, 1.0 / std::sqrt(static_cast<double>(D_)));
  MixerOutput out{o_proj.forward(ag::reshape(o, {B, T, I})), {}};
  out.state.bank_k = keep_rows(keys, 0, n_total * C);
  out.state.bank_v = keep_rows(vals, 0, n_total * C);
  out.state.buf_k = keep_rows(keys, n_total * C, S);
  out.state.buf_v = keep_rows(vals, n_total * C, S);
  out.state.bank_sum = summaries;
  out.state.buf_ksum = buf_ksum;
  out.state.pos = S;
  return out;
}

MixerOutput RetrievalAttention::step(const Tensor& x, const LayerState& st) const {
  return step_through_forward(*this, "RetrievalAttention::step", x, st);
}

// ---------------------------------------------------------------------------------------------------------
// Block, MTP head, HydraLM

namespace {
std::unique_ptr<Mixer> make_mixer(const HydraConfig& cfg, LayerType type, Generator& gen) {
  switch (type) {
    case LayerType::DeltaNet: return std::make_unique<GatedDeltaNet>(cfg, gen);
    case LayerType::Swa: return std::make_unique<SlidingWindowAttention>(cfg, gen);
    case LayerType::Retrieval: return std::make_unique<RetrievalAttention>(cfg, gen);
  }
  throw std::invalid_argument(fmt::format("unknown layer type {}", static_cast<int>(type)));
}
}  // namespace

HydraBlock::HydraBlock(const HydraConfig& cfg, LayerType type, Generator& gen)
    : norm1(cfg.d_model, cfg.rms_eps),
      mixer(make_mixer(cfg, type, gen)),
      norm2(cfg.d_model, cfg.rms_eps),
      mlp(cfg.d_model, cfg.mlp_hidden_dim(), gen),
      profile_name_(fmt::format("forward: {} mixer (norms included)", layer_type_name(type))) {
  register_module("norm1", &norm1);
  register_module("mixer", mixer.get());
  register_module("norm2", &norm2);
  register_module("mlp", &mlp);
}

MixerOutput HydraBlock::forward(const Tensor& x, const LayerState& state) const {
  MixerOutput m;
  {
    ag::profile::Scope scope(profile_name_);
    m = mixer->forward(norm1.forward(x), state);
  }
  // The residual stream keeps x's dtype (float32 under bf16 mixed precision): sublayer outputs are added back in
  // that dtype (nn::add_residual).
  const Tensor u = nn::add_residual(x, m.y);
  ag::profile::Scope scope("forward: mlp (norms included)");
  m.y = nn::add_residual(u, mlp.forward(norm2.forward(u)));
  return m;
}

MixerOutput HydraBlock::step(const Tensor& x, const LayerState& state) const {
  MixerOutput m = mixer->step(norm1.forward(x), state);
  const Tensor u = nn::add_residual(x, m.y);
  m.y = nn::add_residual(u, mlp.forward(norm2.forward(u)));
  return m;
}

MtpHead::MtpHead(const HydraConfig& cfg, Generator& gen)
    : norm(cfg.d_model, cfg.rms_eps), proj(cfg.d_model, cfg.d_model, false, gen) {
  register_module("norm", &norm);
  register_module("proj", &proj);
}

namespace {
HydraConfig checked_hydra_config(const HydraConfig& cfg) {
  HydraConfig r = cfg.resolved();
  HYDRA_CHECK(r.arch == "hydra", "HydraLM: config has arch '{}'; HydraLM builds arch 'hydra' only", r.arch);
  return r;
}
}  // namespace

HydraLM::HydraLM(const HydraConfig& cfg, uint64_t seed)
    : cfg_(checked_hydra_config(cfg)),
      gen_(seed),
      embed(cfg_.vocab_size, cfg_.d_model, cfg_.pad_token_id, gen_),
      norm_f(cfg_.d_model, cfg_.rms_eps) {
  HYDRA_CHECK(cfg_.pad_token_id >= -1 && cfg_.pad_token_id < cfg_.vocab_size,
              "HydraLM: pad_token_id {} outside [0, vocab_size {})", cfg_.pad_token_id, cfg_.vocab_size);
  register_module("embed", &embed);
  for (LayerType t : cfg_.resolved_layer_types()) blocks.push_back(std::make_unique<HydraBlock>(cfg_, t, gen_));
  register_module("blocks", &blocks);
  register_module("norm_f", &norm_f);
  if (!cfg_.tie_embeddings) {
    lm_head = std::make_unique<nn::Linear>(cfg_.d_model, cfg_.vocab_size, false, gen_);
    register_module("lm_head", lm_head.get());
  }
  for (int64_t j = 0; j < cfg_.mtp_depth; ++j) mtp_heads.push_back(std::make_unique<MtpHead>(cfg_, gen_));
  if (cfg_.mtp_depth > 0) register_module("mtp_heads", &mtp_heads);
  init_weights(seed);
}

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

void HydraLM::set_compute_dtype(std::optional<DType> t) {
  HYDRA_CHECK(!t || *t == DType::BFloat16 || *t == DType::Float32,
              "HydraLM::set_compute_dtype: supported are bfloat16 (mixed precision) or float32, got {}",
              t ? dtype_name(*t) : "none");
  compute_dtype_ = t;
}

void HydraLM::set_recompute(bool on) { recompute_ = on; }

void HydraLM::init_weights(uint64_t seed) {
  // SPEC §3: Linear weights N(0, σ₀), biases 0; embeddings N(0, σ₀); o_proj / w_down / untied lm_head
  // N(0, σ₀/√(2L)); conv keeps its U(±1/√K) default; norms 1; MTP proj N(0, σ₀); summary_proj identity.
  Generator gen(seed);
  const double s0 = cfg_.initializer_range, s_deep = s0 / std::sqrt(2.0 * static_cast<double>(cfg_.n_layers));
  ag::NoGradGuard no_grad;
  apply_to_parameters([&](const std::string& name, Tensor& p) {
    Tensor w = p.detach();
    const double bound = 1.0 / std::sqrt(static_cast<double>(cfg_.dn_short_conv_kernel));
    if (ends_with(name, "short_conv.conv.weight") || ends_with(name, "short_conv.conv.bias")) {
      uniform_(w, -bound, bound, gen);
    } else if (ends_with(name, "norm1.weight") || ends_with(name, "norm2.weight") || ends_with(name, "norm.weight") ||
               name == "norm_f.weight") {
      w.fill_(1.0);
    } else if (ends_with(name, ".bias")) {
      w.fill_(0.0);
    } else if (ends_with(name, "summary_proj.weight")) {
      w.copy_(eye_like(w));
    } else if (ends_with(name, "o_proj.weight") || ends_with(name, "w_down.weight") || name == "lm_head.weight") {
      normal_(w, 0.0, s_deep, gen);
    } else {
      normal_(w, 0.0, s0, gen);
    }
  });
}

int64_t HydraLM::num_parameters(bool exclude_embedding) const {
  return Module::num_parameters() - (exclude_embedding ? cfg_.vocab_size * cfg_.d_model : 0);
}

ForwardResult HydraLM::forward(const Tensor& ids, const ForwardOptions& opts) const {
  return forward(ids, ModelState{}, opts);
}

ForwardResult HydraLM::forward(const Tensor& ids, const ModelState& state, const ForwardOptions& opts) const {
  detail::check_ids_and_state(ids, state, blocks.size(), "HydraLM::forward", /*step=*/false);
  const nn::ComputeDTypeGuard precision(compute_dtype_);
  const Tensor ids_dev = ids.to(device());
  Tensor x;
  {
    ag::profile::Scope scope("forward: embedding");
    x = embed.forward(ids_dev);
  }
  ForwardResult out;
  x = detail::run_blocks(blocks, x, state, recompute_, compute_dtype_, out.state);
  ag::profile::Scope scope("forward: final norm + LM head (+ MTP)");
  const Tensor h = norm_f.forward(x);
  if (opts.compute_logits) out.logits = ag::linear(h, nn::to_compute(lm_head_weight()));
  if (opts.return_hidden || !opts.compute_logits) out.hidden = h;
  if (opts.compute_mtp && cfg_.mtp_depth > 0) out.mtp_aux_loss = mtp_loss(h, ids_dev, opts.mtp_labels);
  return out;
}

Tensor HydraLM::mtp_loss(const Tensor& h, const Tensor& ids, const Tensor& labels) const {
  const Tensor target = labels.defined() ? labels.to(DType::Int64).to(h.device()) : ids.to(DType::Int64);
  HYDRA_CHECK(target.shape() == ids.shape(), "HydraLM: mtp_labels have shape {}, expected {}", shape_str(target.shape()),
              shape_str(ids.shape()));
  const int64_t T = h.size(1);
  Tensor total;
  int64_t n_valid_depths = 0;
  // Only explicit labels can hold the ignore index: reading them costs a host round trip, the default (the input
  // ids as targets) does not.
  const std::vector<int64_t> tv = labels.defined() ? target.to(kCPU).to_vector<int64_t>() : std::vector<int64_t>{};
  for (int64_t dp = 1; dp <= cfg_.mtp_depth; ++dp) {
    const int64_t n = T - 1 - dp;  // positions t with t + 1 + d′ < T
    if (n <= 0) continue;
    const Tensor tgt = target.slice(1, 1 + dp, T);
    bool any = !labels.defined();
    for (int64_t b = 0; b < target.size(0) && !any; ++b)
      for (int64_t t = 1 + dp; t < T && !any; ++t) any = tv[static_cast<std::size_t>(b * T + t)] != kDefaultIgnoreIndex;
    if (!any) continue;  // SPEC §2.12: depths with no valid position are skipped
    const MtpHead& head = mtp_heads[dp - 1];
    const Tensor lg =
        ag::linear(head.proj.forward(head.norm.forward(ag::slice(h, 1, 0, n))), nn::to_compute(lm_head_weight()));
    const Tensor ce = ag::cross_entropy(lg, tgt);
    total = total.defined() ? ag::add(total, ce) : ce;
    ++n_valid_depths;
  }
  if (n_valid_depths == 0) return zeros({}, h.dtype() == DType::Float64 ? DType::Float64 : DType::Float32, h.device());
  return ag::mul(total, cfg_.mtp_loss_weight / static_cast<double>(n_valid_depths));
}

StepResult HydraLM::step(const Tensor& ids, const ModelState& state) const {
  detail::check_ids_and_state(ids, state, blocks.size(), "HydraLM::step", /*step=*/true);
  ag::NoGradGuard no_grad;
  const nn::ComputeDTypeGuard precision(compute_dtype_);
  StepResult out;
  const Tensor x = detail::run_blocks(blocks, embed.forward(ids.to(device())), state, false, compute_dtype_, out.state,
                                      /*step=*/true);
  out.logits = ag::linear(norm_f.forward(x), nn::to_compute(lm_head_weight()));
  return out;
}

Tensor lm_loss(const Tensor& logits, const Tensor& ids) {
  HYDRA_CHECK(logits.dim() == 3 && ids.dim() == 2 && logits.size(0) == ids.size(0) && logits.size(1) == ids.size(1),
              "lm_loss: logits {} and ids {} must be (B, T, V) and (B, T)", shape_str(logits.shape()),
              shape_str(ids.shape()));
  HYDRA_CHECK(ids.size(1) >= 2, "lm_loss: need at least 2 tokens per row, got {}", ids.size(1));
  // Targets ids[:, 1:] with the last position ignored: the cross-entropy runs on the full contiguous logits (a
  // sliced view would be copied to contiguous in the forward and again in the backward, and its gradient scattered
  // back into a zero tensor of the full size: four logits-sized passes, ~13 ms per step at 8 x 2048 x 32000).
  const int64_t T = ids.size(1);
  const Tensor d = ids.to(logits.device());
  const Tensor last = full({ids.size(0), 1}, static_cast<double>(kDefaultIgnoreIndex), d.dtype(), d.device());
  return ag::cross_entropy(logits, concat({d.slice(1, 1, T), last}, 1));
}

std::string resolve_model_device(const std::string& requested, const std::string& what) {
  if (requested == "cpu") return "cpu";
  const bool usable = cuda::is_built() && cuda::device_count() > 0;
  if (requested == "auto") return usable ? "cuda" : "cpu";
  if (requested == "cuda") {
    HYDRA_CHECK(cuda::is_built(), "{} cuda: this binary was built without CUDA (configure with -DHYDRA_CUDA=ON on "
                "a machine with nvcc); use cpu or auto", what);
    HYDRA_CHECK(usable, "{} cuda: no usable CUDA device ({}); use cpu or auto", what, cuda::runtime_version());
    return "cuda";
  }
  throw std::invalid_argument(fmt::format("{}: unknown value '{}', expected auto, cpu or cuda", what, requested));
}

}  // namespace hydra
