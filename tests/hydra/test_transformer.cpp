// The dense Transformer baseline (SPEC §8.5): parameter names, shapes and count (SPEC §4 "Dense baseline names"),
// checkpoint listing of the tied head, logits against a float64 reference written out with loops, streaming
// (chunked prefill and step) against the full forward, a float64 gradcheck, the init rules (SPEC §3 rules 2, 3, 6),
// make_language_model and per-block recomputation.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <vector>

#include "autograd/autograd.h"
#include "hydra/lm.h"
#include "hydra/model.h"
#include "hydra/transformer.h"
#include "nn/safetensors.h"
#include "tests/test_util.h"

using namespace hydra;
using hydra::test::check_close;
using hydra::test::check_throws_with;

namespace {

HydraConfig spec_config() {  // SPEC §8.5's paired claim config: 230,016 parameters
  HydraConfig c;
  c.arch = "transformer";
  c.vocab_size = 257, c.d_model = 64, c.n_layers = 4, c.n_heads = 4;
  return c;
}

// Small enough for loops and gradcheck: d 16, H 2 (D 8), F 48.
HydraConfig small_config() {
  HydraConfig c;
  c.arch = "transformer";
  c.vocab_size = 37, c.d_model = 16, c.n_layers = 2, c.n_heads = 2, c.mlp_multiple_of = 8;
  c.swa_rope_base = 500.0;  // low base: the rotation varies visibly over a few positions
  return c;
}

double max_abs(const Tensor& t) { return t.numel() ? hydra::max(hydra::abs(t.to(DType::Float64))).item() : 0.0; }
double max_abs_diff(const Tensor& a, const Tensor& b) {
  return max_abs(hydra::sub(a.to(DType::Float64), b.to(DType::Float64)));
}

// Moves every parameter off its init (norms away from 1, larger weights) so that every part of the network matters.
void perturb(DenseTransformer& m, uint64_t seed, double scale = 0.3) {
  Generator gen(seed);
  ag::NoGradGuard g;
  m.apply_to_parameters([&](const std::string&, Tensor& p) {
    Tensor w = p.detach();
    w.copy_(hydra::add(w, hydra::mul(randn(w.shape(), gen, w.dtype()), scale)));
  });
}

std::vector<double> values(const Tensor& t) { return t.detach().to(DType::Float64).to_vector<double>(); }

// SPEC §8.5 written out with loops in float64 from the model's parameters: embedding, per block RMSNorm, qkv
// projection, RoPE (SPEC §2.9: float32 inv_freq, half-split pairs, absolute position t), causal softmax attention
// scaled 1/√D, o_proj, residual, RMSNorm, SwiGLU (gate rows first), residual; final RMSNorm and the head.
Tensor reference_logits(const DenseTransformer& m, const Tensor& ids) {
  const HydraConfig& c = m.config();
  const int64_t B = ids.size(0), T = ids.size(1), V = c.vocab_size, d = c.d_model, H = c.n_heads;
  const int64_t D = c.resolved_head_dim(), I = H * D, F = c.mlp_hidden_dim();
  const double eps = c.rms_eps;
  const std::vector<int64_t> tok = ids.to_vector<int64_t>();
  const auto sd = m.state_dict();
  const std::vector<double> E = values(sd.at("embed.weight"));
  const std::vector<double> head = values(c.tie_embeddings ? sd.at("embed.weight") : sd.at("lm_head.weight"));

  auto rms = [&](const double* x, const std::vector<double>& w, double* y) {
    double ms = 0;
    for (int64_t i = 0; i < d; ++i) ms += x[i] * x[i];
    const double r = 1.0 / std::sqrt(ms / static_cast<double>(d) + eps);
    for (int64_t i = 0; i < d; ++i) y[i] = x[i] * r * w[static_cast<std::size_t>(i)];
  };
  // y (out) = W (out, in) · x (in)
  auto matvec = [](const std::vector<double>& W, const double* x, int64_t out, int64_t in, double* y) {
    for (int64_t o = 0; o < out; ++o) {
      double s = 0;
      for (int64_t i = 0; i < in; ++i) s += W[static_cast<std::size_t>(o * in + i)] * x[i];
      y[o] = s;
    }
  };
  auto rope = [&](double* v, int64_t p) {  // one head vector of D values at absolute position p
    for (int64_t i = 0; i < D / 2; ++i) {
      const float inv_freq = 1.0f / std::pow(static_cast<float>(c.swa_rope_base), static_cast<float>(2 * i) /
                                                                                       static_cast<float>(D));
      const double th = static_cast<double>(p) * static_cast<double>(inv_freq);
      const double a = v[i], b = v[i + D / 2];
      v[i] = a * std::cos(th) - b * std::sin(th);
      v[i + D / 2] = b * std::cos(th) + a * std::sin(th);
    }
  };

  std::vector<double> x(static_cast<std::size_t>(B * T * d));
  for (int64_t bt = 0; bt < B * T; ++bt)
    for (int64_t i = 0; i < d; ++i) x[bt * d + i] = E[static_cast<std::size_t>(tok[bt] * d + i)];

  std::vector<double> h(d), qkv(3 * I), o(I), y(d), gf(2 * F), a(F);
  std::vector<double> q(B * T * I), k(B * T * I), v(B * T * I);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "blocks." + std::to_string(l) + ".";
    const auto w_an = values(sd.at(p + "attn_norm.weight")), w_qkv = values(sd.at(p + "attn.qkv_proj.weight"));
    const auto w_o = values(sd.at(p + "attn.o_proj.weight")), w_mn = values(sd.at(p + "mlp_norm.weight"));
    const auto w_f = values(sd.at(p + "mlp.w_fused.weight")), w_d = values(sd.at(p + "mlp.w_down.weight"));
    // Attention.
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) {
        const int64_t bt = b * T + t;
        rms(&x[bt * d], w_an, h.data());
        matvec(w_qkv, h.data(), 3 * I, d, qkv.data());
        for (int64_t e = 0; e < I; ++e) {
          q[bt * I + e] = qkv[e];
          k[bt * I + e] = qkv[I + e];
          v[bt * I + e] = qkv[2 * I + e];
        }
        for (int64_t hh = 0; hh < H; ++hh) {
          rope(&q[bt * I + hh * D], t);
          rope(&k[bt * I + hh * D], t);
        }
      }
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t hh = 0; hh < H; ++hh) {
          std::vector<double> s(static_cast<std::size_t>(t + 1));
          double mx = -INFINITY;
          for (int64_t j = 0; j <= t; ++j) {
            double dot = 0;
            for (int64_t e = 0; e < D; ++e) dot += q[(b * T + t) * I + hh * D + e] * k[(b * T + j) * I + hh * D + e];
            s[j] = dot / std::sqrt(static_cast<double>(D));
            mx = std::max(mx, s[j]);
          }
          double z = 0;
          for (int64_t j = 0; j <= t; ++j) z += (s[j] = std::exp(s[j] - mx));
          for (int64_t e = 0; e < D; ++e) {
            double acc = 0;
            for (int64_t j = 0; j <= t; ++j) acc += s[j] / z * v[(b * T + j) * I + hh * D + e];
            o[hh * D + e] = acc;
          }
        }
        matvec(w_o, o.data(), d, I, y.data());
        for (int64_t i = 0; i < d; ++i) x[(b * T + t) * d + i] += y[i];
      }
    // SwiGLU.
    for (int64_t bt = 0; bt < B * T; ++bt) {
      rms(&x[bt * d], w_mn, h.data());
      matvec(w_f, h.data(), 2 * F, d, gf.data());
      for (int64_t f = 0; f < F; ++f) a[f] = gf[f] / (1.0 + std::exp(-gf[f])) * gf[F + f];
      matvec(w_d, a.data(), d, F, y.data());
      for (int64_t i = 0; i < d; ++i) x[bt * d + i] += y[i];
    }
  }
  const auto w_n = values(sd.at("norm.weight"));
  std::vector<double> logits(static_cast<std::size_t>(B * T * V));
  for (int64_t bt = 0; bt < B * T; ++bt) {
    rms(&x[bt * d], w_n, h.data());
    matvec(head, h.data(), V, d, &logits[bt * V]);
  }
  return from_vector(logits, {B, T, V}, DType::Float64);
}

Tensor concat_time(const std::vector<Tensor>& parts) { return parts.size() == 1 ? parts[0] : hydra::concat(parts, 1); }

}  // namespace

TEST_CASE("DenseTransformer parameter names shapes and order follow SPEC section 4 dense baseline names") {
  const DenseTransformer m(spec_config());
  CHECK(m.arch() == "transformer");
  CHECK(m.config().arch == "transformer");
  CHECK(m.num_parameters() == 230016);
  CHECK(m.num_parameters(true) == 230016 - 257 * 64);
  CHECK(m.embed.padding_idx() == -1);  // no padding row
  const nn::NamedTensors ps = m.named_parameters();
  std::vector<std::pair<std::string, Shape>> want = {{"embed.weight", {257, 64}}};
  for (int i = 0; i < 4; ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".";
    want.push_back({p + "attn_norm.weight", {64}});
    want.push_back({p + "attn.qkv_proj.weight", {192, 64}});
    want.push_back({p + "attn.o_proj.weight", {64, 64}});
    want.push_back({p + "mlp_norm.weight", {64}});
    want.push_back({p + "mlp.w_fused.weight", {384, 64}});
    want.push_back({p + "mlp.w_down.weight", {64, 192}});
  }
  want.push_back({"norm.weight", {64}});
  REQUIRE(ps.size() == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("entry " << i);
    CHECK(ps[i].first == want[i].first);
    CHECK(ps[i].second.shape() == want[i].second);
  }
  // Tied: the checkpoint lists the embedding a second time as lm_head.weight, the same storage.
  const auto ck = m.checkpoint_tensors();
  CHECK(ck.size() == want.size() + 1);
  REQUIRE(ck.count("lm_head.weight") == 1);
  CHECK(ck.at("lm_head.weight").raw_data() == m.embed.weight.raw_data());
  CHECK(ck.at("lm_head.weight").shape() == Shape{257, 64});
  CHECK(m.lm_head_weight().is_same(m.embed.weight));
  CHECK(m.state_dict().count("lm_head.weight") == 0);

  // Untied: lm_head.weight is a parameter of its own, last.
  HydraConfig c = spec_config();
  c.tie_embeddings = false;
  const DenseTransformer u(c);
  const nn::NamedTensors pu = u.named_parameters();
  CHECK(pu.back().first == "lm_head.weight");
  CHECK(pu.back().second.shape() == Shape{257, 64});
  CHECK(pu[pu.size() - 2].first == "norm.weight");
  CHECK(u.num_parameters() == 230016 + 257 * 64);
  CHECK(u.num_parameters(true) == 230016);
  CHECK(u.checkpoint_tensors().size() == pu.size());
  CHECK(u.lm_head_weight().is_same(u.lm_head->weight));
}

TEST_CASE("DenseTransformer checkpoint round trip with and without the tied lm_head.weight and bad tensors") {
  HydraConfig c = small_config();
  const DenseTransformer a(c, 1);
  Generator gen(hydra::test::base_seed());
  const Tensor ids = randint(0, c.vocab_size, {2, 9}, gen);
  ag::NoGradGuard no_grad;
  const Tensor want = a.forward(ids).logits;
  {  // through a safetensors file, both keys present
    DenseTransformer b(c, 2);
    CHECK(max_abs_diff(b.forward(ids).logits, want) > 0.0);
    const std::string path =
        (std::filesystem::temp_directory_path() / "hydra_test_transformer_roundtrip.safetensors").string();
    save_safetensors(path, a.checkpoint_tensors());
    const auto loaded = load_safetensors(path);
    CHECK(loaded.count("lm_head.weight") == 1);
    b.load_checkpoint_tensors(loaded, path);
    CHECK(max_abs_diff(b.forward(ids).logits, want) == 0.0);
    std::filesystem::remove(path);
  }
  {  // without lm_head.weight (Module::state_dict form)
    DenseTransformer b(c, 3);
    b.load_checkpoint_tensors(a.state_dict(), "a.state_dict");
    CHECK(max_abs_diff(b.forward(ids).logits, want) == 0.0);
  }
  {  // a tied lm_head.weight of the wrong shape: an error naming the file and the tensor, nothing loaded
    DenseTransformer b(c, 4);
    const Tensor before = b.embed.weight.clone();
    auto bad = a.checkpoint_tensors();
    bad["lm_head.weight"] = zeros({36, 16});
    check_throws_with([&] { b.load_checkpoint_tensors(bad, "run/model.safetensors"); },
                      {"run/model.safetensors", "lm_head.weight", "[36, 16]", "[37, 16]"});
    CHECK(max_abs_diff(b.embed.weight, before) == 0.0);
    // Other problems are load_state_dict's: named with the file.
    auto missing = a.checkpoint_tensors();
    missing.erase("blocks.1.attn.o_proj.weight");
    missing["blocks.0.mlp.w_down.weight"] = zeros({16, 47});
    check_throws_with([&] { b.load_checkpoint_tensors(missing, "ck.safetensors"); },
                      {"ck.safetensors", "missing tensor 'blocks.1.attn.o_proj.weight'",
                       "'blocks.0.mlp.w_down.weight' has shape [16, 47], expected [16, 48]"});
  }
  {  // untied: lm_head.weight is required, and round trips
    c.tie_embeddings = false;
    const DenseTransformer ua(c, 5);
    DenseTransformer ub(c, 6);
    auto sd = ua.checkpoint_tensors();
    ub.load_checkpoint_tensors(sd, "untied");
    CHECK(max_abs_diff(ub.forward(ids).logits, ua.forward(ids).logits) == 0.0);
    sd.erase("lm_head.weight");
    check_throws_with([&] { ub.load_checkpoint_tensors(sd, "untied.safetensors"); },
                      {"untied.safetensors", "missing tensor 'lm_head.weight'"});
  }
}

TEST_CASE("DenseTransformer logits equal a float64 loop reference of SPEC section 8.5") {
  struct Case {
    const char* name;
    bool tie;
    std::optional<int64_t> head_dim;
    int64_t n_heads, T;
  };
  // T = 1, T not a multiple of any tile, T across the CPU kernel's 32-query / 64-key tiles; an untied head; an
  // explicit head_dim with I = H·D ≠ d.
  const std::vector<Case> cases = {{"tied T=1", true, std::nullopt, 2, 1},
                                   {"tied T=13", true, std::nullopt, 2, 13},
                                   {"tied T=70", true, std::nullopt, 2, 70},
                                   {"untied T=13", false, std::nullopt, 2, 13},
                                   {"untied head_dim 6, 3 heads, T=37", false, 6, 3, 37}};
  for (const Case& cs : cases) {
    CAPTURE(cs.name);
    HydraConfig c = small_config();
    c.tie_embeddings = cs.tie, c.head_dim = cs.head_dim, c.n_heads = cs.n_heads;
    DenseTransformer m(c, 7);
    m.to(DType::Float64);
    perturb(m, hydra::test::base_seed());
    Generator gen(hydra::test::base_seed() + 1);
    const Tensor ids = randint(0, c.vocab_size, {2, cs.T}, gen);
    ag::NoGradGuard no_grad;
    const Tensor logits = m.forward(ids).logits;
    CHECK(logits.dtype() == DType::Float64);
    check_close(logits, reference_logits(m, ids), hydra::test::kTolF64, cs.name);
  }
}

TEST_CASE("DenseTransformer forward options: hidden without logits, return_hidden, MTP ignored") {
  HydraConfig c = small_config();
  DenseTransformer m(c, 8);
  m.to(DType::Float64);
  perturb(m, hydra::test::base_seed());
  Generator gen(hydra::test::base_seed() + 2);
  const Tensor ids = randint(0, c.vocab_size, {2, 11}, gen);
  ag::NoGradGuard no_grad;
  const ForwardResult full = m.forward(ids);
  CHECK_FALSE(full.hidden.defined());
  CHECK_FALSE(full.mtp_aux_loss.defined());
  ForwardOptions opts;
  opts.compute_logits = false;
  opts.compute_mtp = true;  // no MTP heads: ignored
  const ForwardResult r = m.forward(ids, opts);
  CHECK_FALSE(r.logits.defined());
  CHECK_FALSE(r.mtp_aux_loss.defined());
  REQUIRE(r.hidden.defined());
  CHECK(r.hidden.shape() == Shape{2, 11, 16});
  check_close(hydra::linear(r.hidden, m.lm_head_weight()), full.logits, hydra::test::kTolF64, "hidden · Eᵀ");
  opts.compute_logits = true, opts.return_hidden = true;
  const ForwardResult both = m.forward(ids, opts);
  CHECK(max_abs_diff(both.logits, full.logits) == 0.0);
  CHECK(max_abs_diff(both.hidden, r.hidden) == 0.0);
  REQUIRE(full.state.size() == 2);
  CHECK(full.state[0].pos == 11);
  CHECK(full.state[0].k_cache.shape() == Shape{2, 11, 2, 8});  // the whole KV cache, keys after RoPE
}

TEST_CASE("DenseTransformer streaming: chunked prefill and step equal the full forward") {
  for (const DType dtype : {DType::Float64, DType::Float32}) {
    CAPTURE(dtype_name(dtype));
    HydraConfig c = small_config();
    DenseTransformer m(c, 9);
    m.to(dtype);
    perturb(m, hydra::test::base_seed() + 3);
    const hydra::test::Tolerance tol = dtype == DType::Float64 ? hydra::test::Tolerance{1e-12, 1e-9}
                                                               : hydra::test::tolerance_for(dtype);
    for (const std::vector<int64_t>& pieces : {std::vector<int64_t>{5, 1, 7}, std::vector<int64_t>{33, 1, 36}}) {
      int64_t N = 0;
      for (int64_t p : pieces) N += p;
      CAPTURE(N);
      Generator gen(hydra::test::base_seed() + 4 + N);
      const Tensor ids = randint(0, c.vocab_size, {2, N}, gen);
      ag::NoGradGuard no_grad;
      const Tensor full = m.forward(ids).logits;
      // (a) chunked prefill carrying the state.
      ModelState st;
      std::vector<Tensor> outs;
      int64_t t = 0;
      for (int64_t len : pieces) {
        ForwardResult r = m.forward(ids.slice(1, t, t + len), st);
        outs.push_back(r.logits);
        st = std::move(r.state);
        t += len;
      }
      check_close(concat_time(outs), full.to(DType::Float64), tol, "chunked prefill");
      REQUIRE(st.size() == 2);
      CHECK(st[1].pos == N);
      CHECK(st[1].k_cache.shape() == Shape{2, N, 2, 8});
      CHECK(st[1].v_cache.shape() == Shape{2, N, 2, 8});
      // (b) prefill of the first piece, then step() token by token.
      ForwardResult r = m.forward(ids.slice(1, 0, pieces[0]), ModelState{});
      std::vector<Tensor> steps{r.logits};
      st = std::move(r.state);
      for (int64_t s = pieces[0]; s < N; ++s) {
        StepResult sr = m.step(ids.select(1, s).contiguous(), st);
        steps.push_back(sr.logits.unsqueeze(1));
        st = std::move(sr.state);
      }
      check_close(concat_time(steps), full.to(DType::Float64), tol, "prefill + step");
      // (c) step from a fresh state for every token.
      ModelState s0;
      std::vector<Tensor> only_steps;
      for (int64_t s = 0; s < N; ++s) {
        StepResult sr = m.step(ids.select(1, s).contiguous(), s0);
        only_steps.push_back(sr.logits.unsqueeze(1));
        s0 = std::move(sr.state);
      }
      check_close(concat_time(only_steps), full.to(DType::Float64), tol, "step only");
    }
  }
}

TEST_CASE("DenseTransformer gradcheck in float64, untied head, pad token in the input") {
  HydraConfig c;
  c.arch = "transformer";
  c.vocab_size = 11, c.d_model = 8, c.n_heads = 2, c.n_layers = 2, c.mlp_multiple_of = 4, c.tie_embeddings = false;
  c.swa_rope_base = 100.0;
  DenseTransformer m(c, 3);
  m.to(DType::Float64);
  perturb(m, hydra::test::base_seed());
  // Token 0 (= pad_token_id) included: the baseline has no padding row, so its lookup sends gradient like any
  // other (a finite difference sees it).
  const Tensor ids = from_vector<int64_t>({0, 3, 7, 0, 10, 2, 5, 1, 0, 9, 4, 6}, {2, 6});
  hydra::test::check_gradcheck(
      "DenseTransformer loss",
      [&](const std::vector<Tensor>& xs) {
        // gradcheck hands in its own leaves (aliases of the parameters): install them in the model.
        std::size_t i = 0;
        m.apply_to_parameters([&](const std::string&, Tensor& p) { p = xs.at(i++); });
        return std::vector<Tensor>{lm_loss(m.forward(ids).logits, ids)};
      },
      m.parameters());
  // The pad row of the (untied) embedding receives gradient through the lookup.
  m.zero_grad();
  ag::backward(lm_loss(m.forward(ids).logits, ids));
  CHECK(max_abs(ag::grad(m.embed.weight).select(0, 0)) > 0.0);
}

TEST_CASE("DenseTransformer init: SPEC section 3 rules 2 3 6 without depth scaling, reproducible per seed") {
  HydraConfig c = spec_config();
  c.n_layers = 8, c.tie_embeddings = false;
  const DenseTransformer a(c, 7), b(c, 7), other(c, 8);
  const auto sa = a.state_dict(), sb = b.state_dict(), so = other.state_dict();
  for (const auto& [n, t] : sa) {
    INFO(n);
    CHECK(max_abs_diff(t, sb.at(n)) == 0.0);
  }
  CHECK(max_abs_diff(sa.at("embed.weight"), so.at("embed.weight")) > 0.0);
  CHECK(max_abs_diff(sa.at("blocks.3.attn.o_proj.weight"), so.at("blocks.3.attn.o_proj.weight")) > 0.0);
  auto std_of = [](const Tensor& t) { return std::sqrt(hydra::mean(hydra::square(t.to(DType::Float64))).item()); };
  const double s0 = 0.02;
  // Every matrix N(0, σ₀): o_proj, w_down and the untied head too (HydraLM would use σ₀/√(2L) = 0.005 there).
  for (const char* n : {"embed.weight", "blocks.0.attn.qkv_proj.weight", "blocks.0.attn.o_proj.weight",
                        "blocks.7.attn.o_proj.weight", "blocks.0.mlp.w_fused.weight", "blocks.5.mlp.w_down.weight",
                        "lm_head.weight"}) {
    INFO(n);
    CHECK(std_of(sa.at(n)) == doctest::Approx(s0).epsilon(0.06));
    CHECK(std::abs(hydra::mean(sa.at(n).to(DType::Float64)).item()) < 0.002);
  }
  // All rows of the embedding are drawn, pad row (id 0) included.
  CHECK(std_of(sa.at("embed.weight").select(0, 0)) == doctest::Approx(s0).epsilon(0.5));
  for (const char* n : {"blocks.0.attn_norm.weight", "blocks.7.mlp_norm.weight", "norm.weight"}) {
    INFO(n);
    CHECK(max_abs(hydra::sub(sa.at(n), 1.0)) == 0.0);
  }
  // init_weights(seed) re-draws exactly what construction with that seed drew.
  DenseTransformer re(c, 99);
  re.init_weights(7);
  for (const auto& [n, t] : re.state_dict()) {
    INFO(n);
    CHECK(max_abs_diff(t, sa.at(n)) == 0.0);
  }
}

TEST_CASE("make_language_model builds the transformer and bad configs and inputs are named errors") {
  const std::unique_ptr<LanguageModel> m = make_language_model(spec_config(), 3);
  REQUIRE(m);
  CHECK(m->arch() == "transformer");
  CHECK(dynamic_cast<DenseTransformer*>(m.get()) != nullptr);
  CHECK(m->num_parameters() == 230016);
  const DenseTransformer direct(spec_config(), 3);
  CHECK(max_abs_diff(m->state_dict().at("blocks.2.attn.qkv_proj.weight"),
                     direct.state_dict().at("blocks.2.attn.qkv_proj.weight")) == 0.0);
  HydraConfig h = spec_config();
  h.arch = "hydra";
  CHECK(make_language_model(h, 3)->arch() == "hydra");

  HydraConfig bad = spec_config();
  bad.mtp_depth = 2;
  check_throws_with([&] { make_language_model(bad); }, {"model.mtp_depth", "no MTP heads"});
  check_throws_with([&] { DenseTransformer x(h); }, {"DenseTransformer", "'hydra'", "'transformer'"});
  HydraConfig odd = spec_config();
  odd.n_layers = 2, odd.head_dim = 5;  // (validation only checks hydra's SWA layers: none with 2 layers)
  check_throws_with([&] { DenseTransformer x(odd); }, {"RoPE", "even head dim", "D = 5"});

  HydraConfig c = small_config();
  const DenseTransformer s(c);
  check_throws_with([&] { s.forward(from_vector<int64_t>({1, 2, 37}, {1, 3})); }, {"37", "out of range"});
  check_throws_with([&] { s.forward(from_vector<int64_t>({1, 2}, {2})); }, {"input_ids", "(B, T"});
  check_throws_with([&] { s.step(from_vector<int64_t>({1, 2}, {1, 2}), {}); }, {"step", "(B,)"});
  check_throws_with([&] { s.forward(from_vector<int64_t>({1, 2}, {1, 2}), ModelState(3)); },
                    {"state has 3 layer entries", "2 layers"});
  DenseTransformer t(c);
  check_throws_with([&] { t.set_compute_dtype(DType::Float64); }, {"set_compute_dtype", "bfloat16"});
  t.set_compute_dtype(DType::Float32);
  CHECK(t.compute_dtype() == DType::Float32);
}

TEST_CASE("DenseTransformer per-block recomputation gives bitwise the gradients of the recorded forward") {
  HydraConfig c = small_config();
  c.n_layers = 3, c.tie_embeddings = false;
  DenseTransformer a(c, 5), b(c, 5);
  CHECK_FALSE(b.recompute());
  b.set_recompute(true);
  CHECK(b.recompute());
  Generator gen(hydra::test::base_seed());
  const Tensor ids = randint(0, c.vocab_size, {2, 37}, gen);
  const ForwardResult ra = a.forward(ids), rb = b.forward(ids);
  CHECK(max_abs_diff(ra.logits, rb.logits) == 0.0);
  ag::backward(lm_loss(ra.logits, ids));
  ag::backward(lm_loss(rb.logits, ids));
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (std::size_t i = 0; i < pa.size(); ++i) {
    CAPTURE(pa[i].first);
    REQUIRE(ag::grad(pa[i].second).defined());
    REQUIRE(ag::grad(pb[i].second).defined());
    CHECK(max_abs_diff(ag::grad(pa[i].second), ag::grad(pb[i].second)) == 0.0);
  }
  REQUIRE(ra.state.size() == rb.state.size());
  CHECK(max_abs_diff(ra.state[2].k_cache, rb.state[2].k_cache) == 0.0);
  CHECK(rb.state[2].pos == 37);
}
