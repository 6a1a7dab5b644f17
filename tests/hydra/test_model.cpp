// HydraLM: parameter names and counts (SPEC §4), initialisation (SPEC §3), golden parity with the PyTorch
// reference, MTP, bad inputs.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "autograd/autograd.h"
#include "hydra/mixers/chunk_attn/chunk_attn.h"
#include "hydra/model.h"
#include "nn/safetensors.h"
#include "tests/test_util.h"

using namespace hydra;
using hydra::test::check_throws_with;
using hydra::test::test_data_path;

namespace {

HydraConfig spec4_config() {  // SPEC §4 "checked instance"
  HydraConfig c;
  c.vocab_size = 257, c.d_model = 64, c.n_layers = 4, c.n_heads = 4, c.swa_every = 2;
  return c;
}

double max_abs(const Tensor& t) { return t.numel() ? hydra::max(hydra::abs(t.to(DType::Float64))).item() : 0.0; }
double max_abs_diff(const Tensor& a, const Tensor& b) {
  return max_abs(hydra::sub(a.to(DType::Float64), b.to(DType::Float64)));
}

}  // namespace

TEST_CASE("HydraLM parameter names and shapes follow SPEC section 4") {
  const HydraLM m(spec4_config());
  const nn::NamedTensors ps = m.named_parameters();
  CHECK(ps.size() == 36);
  CHECK(m.num_parameters() == 241168);
  CHECK(m.num_parameters(true) == 241168 - 257 * 64);
  const std::vector<std::pair<std::string, Shape>> first = {
      {"embed.weight", {257, 64}},
      {"blocks.0.norm1.weight", {64}},
      {"blocks.0.mixer.qkv_proj.weight", {192, 64}},
      {"blocks.0.mixer.ab_proj.weight", {8, 64}},
      {"blocks.0.mixer.ab_proj.bias", {8}},
      {"blocks.0.mixer.short_conv.conv.weight", {192, 1, 4}},
      {"blocks.0.mixer.short_conv.conv.bias", {192}},
      {"blocks.0.mixer.gate_proj.weight", {64, 64}},
      {"blocks.0.mixer.o_proj.weight", {64, 64}},
      {"blocks.0.norm2.weight", {64}},
      {"blocks.0.mlp.w_fused.weight", {384, 64}},
      {"blocks.0.mlp.w_down.weight", {64, 192}},
      {"blocks.1.norm1.weight", {64}},
      {"blocks.1.mixer.qkv_proj.weight", {192, 64}},
      {"blocks.1.mixer.o_proj.weight", {64, 64}},
      {"blocks.1.norm2.weight", {64}},
  };
  for (std::size_t i = 0; i < first.size(); ++i) {
    INFO("entry " << i);
    CHECK(ps[i].first == first[i].first);
    CHECK(ps[i].second.shape() == first[i].second);
  }
  CHECK(ps.back().first == "norm_f.weight");
}

TEST_CASE("HydraLM untied head MTP heads and retrieval layers add the SPEC names") {
  HydraConfig c = spec4_config();
  c.tie_embeddings = false, c.mtp_depth = 2, c.n_layers = 5, c.retrieval_every = 3, c.retrieval_learned_summary = true;
  const HydraLM m(c);
  std::vector<std::string> names;
  for (auto& [n, t] : m.named_parameters()) names.push_back(n);
  const std::vector<std::string> tail = {"norm_f.weight", "lm_head.weight", "mtp_heads.0.norm.weight",
                                         "mtp_heads.0.proj.weight", "mtp_heads.1.norm.weight",
                                         "mtp_heads.1.proj.weight"};
  REQUIRE(names.size() > tail.size());
  for (std::size_t i = 0; i < tail.size(); ++i) CHECK(names[names.size() - tail.size() + i] == tail[i]);
  // Layer 2 (p = 3) is retrieval: qkv_proj, o_proj, summary_proj (D, D).
  const auto sd = m.state_dict();
  CHECK(sd.at("blocks.2.mixer.qkv_proj.weight").shape() == Shape{192, 64});
  CHECK(sd.at("blocks.2.mixer.o_proj.weight").shape() == Shape{64, 64});
  CHECK(sd.at("blocks.2.mixer.summary_proj.weight").shape() == Shape{16, 16});
  CHECK(sd.count("blocks.2.mixer.ab_proj.weight") == 0);
  CHECK(sd.at("lm_head.weight").shape() == Shape{257, 64});
  CHECK(m.num_parameters() == HydraLM(c, 3).num_parameters());
}

TEST_CASE("HydraLM init follows SPEC section 3 and is reproducible per seed") {
  HydraConfig c = spec4_config();
  c.n_layers = 8, c.retrieval_every = 3, c.retrieval_learned_summary = true, c.tie_embeddings = false;
  const HydraLM a(c, 7), b(c, 7), other(c, 8);
  const auto sa = a.state_dict(), sb = b.state_dict(), so = other.state_dict();
  for (const auto& [n, t] : sa) {
    INFO(n);
    CHECK(max_abs_diff(t, sb.at(n)) == 0.0);
  }
  CHECK(max_abs_diff(sa.at("embed.weight"), so.at("embed.weight")) > 0.0);
  auto std_of = [](const Tensor& t) {
    const Tensor d = t.to(DType::Float64);
    return std::sqrt(hydra::mean(hydra::square(d)).item());
  };
  const double s0 = 0.02, deep = 0.02 / std::sqrt(16.0);
  // Large matrices: the sample std is within a few percent of the target.
  CHECK(std_of(sa.at("embed.weight")) == doctest::Approx(s0).epsilon(0.05));
  CHECK(std_of(sa.at("blocks.0.mixer.qkv_proj.weight")) == doctest::Approx(s0).epsilon(0.05));
  CHECK(std_of(sa.at("blocks.0.mlp.w_fused.weight")) == doctest::Approx(s0).epsilon(0.05));
  CHECK(std_of(sa.at("blocks.0.mixer.o_proj.weight")) == doctest::Approx(deep).epsilon(0.08));
  CHECK(std_of(sa.at("blocks.1.mlp.w_down.weight")) == doctest::Approx(deep).epsilon(0.08));
  CHECK(std_of(sa.at("lm_head.weight")) == doctest::Approx(deep).epsilon(0.05));
  // ab_proj.bias is 0 in a model built from a config (SPEC §3 step 2 overwrites ln 49).
  CHECK(max_abs(sa.at("blocks.0.mixer.ab_proj.bias")) == 0.0);
  CHECK(max_abs(hydra::sub(sa.at("blocks.0.norm1.weight"), 1.0)) == 0.0);
  CHECK(max_abs(hydra::sub(sa.at("norm_f.weight"), 1.0)) == 0.0);
  const Tensor cw = sa.at("blocks.0.mixer.short_conv.conv.weight");
  CHECK(max_abs(cw) <= 0.5);
  CHECK(max_abs(cw) > 0.4);  // U(−0.5, 0.5) over 768 draws reaches beyond 0.4
  // The retrieval layer (p = 3) has summary_proj = identity.
  const Tensor ws = sa.at("blocks.2.mixer.summary_proj.weight");
  CHECK(ws.to_vector<double>()[0] == 1.0);
  CHECK(hydra::sum(ws).item() == 16.0);
  // A stand-alone GatedDeltaNet keeps ab_proj.bias[0:H] = ln 49 (SPEC §3 step 1).
  Generator gen(1);
  const GatedDeltaNet dn(spec4_config(), gen);
  const std::vector<double> bias = dn.ab_proj.bias.to_vector<double>();
  CHECK(bias[0] == doctest::Approx(std::log(49.0)));
  CHECK(bias[4] == 0.0);
}

namespace {

void golden_case(const std::string& name) {
  const HydraConfig cfg = load_model_config(test_data_path(name + ".yaml"));
  const std::map<std::string, Tensor> g = load_safetensors(test_data_path(name + ".safetensors"));
  HydraLM m(cfg);
  m.load_state_dict(g, name + ".safetensors", /*allow_unexpected=*/true);
  const Tensor ids = g.at("input_ids");
  ForwardResult r = m.forward(ids);
  // Block outputs first, to name the first diverging layer if any.
  const double logits_err = max_abs_diff(r.logits, g.at("logits"));
  INFO(name << ": max |Δlogits| = " << logits_err);
  CHECK(logits_err <= hydra::test::kGoldenLogitsMaxAbs);
  const Tensor loss = lm_loss(r.logits, ids);
  const double loss_err = std::abs(loss.item() - g.at("loss").item());
  INFO(name << ": |Δloss| = " << loss_err);
  CHECK(loss_err <= 1e-5);
  ag::backward(loss);
  int checked = 0;
  double worst = 0;
  std::string worst_name;
  for (const auto& [pname, p] : m.named_parameters()) {
    const Tensor want = g.at("grad." + pname), got = ag::grad(p);
    REQUIRE(got.defined());
    const double rel = max_abs_diff(got, want) / std::max(max_abs(want), 1e-30);
    INFO(name << ": gradient of " << pname << " relative error " << rel);
    CHECK(rel <= 1e-3);
    if (rel > worst) worst = rel, worst_name = pname;
    ++checked;
  }
  CHECK(checked == static_cast<int>(m.named_parameters().size()));
  // The achieved errors, for the record (ctest -V / doctest -s shows them).
  MESSAGE(name << ": max |Δlogits| " << logits_err << ", |Δloss| " << loss_err << ", worst gradient relative error "
               << worst << " (" << worst_name << ") over " << checked << " parameters");
}

}  // namespace

TEST_CASE("golden parity golden_tiny: logits loss and every gradient match the PyTorch reference") {
  golden_case("golden_tiny");
}

TEST_CASE("golden parity golden_b: untied head no gate conv 3 window and chunk below the length") {
  golden_case("golden_b");
}

TEST_CASE("golden block outputs match layer by layer") {
  for (const std::string name : {"golden_tiny", "golden_b"}) {
    const HydraConfig cfg = load_model_config(test_data_path(name + ".yaml"));
    const auto g = load_safetensors(test_data_path(name + ".safetensors"));
    HydraLM m(cfg);
    m.load_state_dict(g, name, true);
    ag::NoGradGuard no_grad;
    Tensor x = m.embed.forward(g.at("input_ids"));
    for (int64_t i = 0; i < m.blocks.size(); ++i) {
      x = m.blocks[i].forward(x, LayerState{}).y;
      const double err = max_abs_diff(x, g.at("act.blocks." + std::to_string(i)));
      INFO(name << " block " << i << " max |Δ| = " << err);
      CHECK(err <= 1e-4);
    }
  }
}

TEST_CASE("HydraLM loads its own state dict and a save-load round trip keeps the logits") {
  HydraConfig c = spec4_config();
  c.vocab_size = 40, c.tie_embeddings = false;
  const HydraLM a(c, 1);
  HydraLM b(c, 2);
  const std::string path = (std::filesystem::temp_directory_path() / "hydra_test_model_roundtrip.safetensors").string();
  save_safetensors(path, a.state_dict());
  b.load_state_dict(load_safetensors(path), path);
  const Tensor ids = from_vector<int64_t>({1, 5, 7, 39, 0, 3}, {2, 3});
  ag::NoGradGuard no_grad;
  CHECK(max_abs_diff(a.forward(ids).logits, b.forward(ids).logits) == 0.0);
  std::filesystem::remove(path);
}

TEST_CASE("load_state_dict lists every missing or mismatched tensor and loads nothing") {
  HydraLM m(spec4_config(), 1);
  auto sd = m.state_dict();
  const Tensor before = sd.at("embed.weight").clone();
  std::map<std::string, Tensor> bad;
  for (auto& [n, t] : sd) bad[n] = hydra::add(t, 1.0);
  bad.erase("blocks.1.mixer.qkv_proj.weight");
  bad["blocks.0.mixer.o_proj.weight"] = zeros({64, 63});
  bad["blocks.9.extra"] = zeros({1});
  check_throws_with([&] { m.load_state_dict(bad, "w.safetensors"); },
                    {"w.safetensors", "3 problem(s)", "missing tensor 'blocks.1.mixer.qkv_proj.weight'",
                     "'blocks.0.mixer.o_proj.weight' has shape [64, 63], expected [64, 64]",
                     "unexpected tensor 'blocks.9.extra'"});
  CHECK(max_abs_diff(m.state_dict().at("embed.weight"), before) == 0.0);
}

TEST_CASE("HydraLM rejects out-of-range token ids and bad input shapes") {
  HydraConfig c = spec4_config();
  c.vocab_size = 30;
  const HydraLM m(c);
  check_throws_with([&] { m.forward(from_vector<int64_t>({1, 2, 30}, {1, 3})); }, {"30", "out of range", "[0, 30)"});
  check_throws_with([&] { m.forward(from_vector<int64_t>({1, -1}, {1, 2})); }, {"-1", "out of range"});
  check_throws_with([&] { m.forward(from_vector<int64_t>({1, 2}, {2})); }, {"input_ids", "(B, T"});
  check_throws_with([&] { m.step(from_vector<int64_t>({1, 2}, {1, 2}), {}); }, {"step", "(B,)"});
  check_throws_with([&] { m.forward(from_vector<int64_t>({1, 2}, {1, 2}), ModelState(2)); },
                    {"state has 2 layer entries", "4 layers"});
}

TEST_CASE("MTP aux loss equals the mean cross-entropy of the heads times the weight") {
  HydraConfig c = spec4_config();
  c.vocab_size = 33, c.mtp_depth = 2, c.mtp_loss_weight = 0.25;
  HydraLM m(c, 4);
  m.to(DType::Float64);
  Generator gen(hydra::test::base_seed());
  const Tensor ids = randint(0, 33, {2, 9}, gen);
  ForwardOptions opts;
  opts.compute_mtp = true;
  opts.return_hidden = true;
  const ForwardResult r = m.forward(ids, opts);
  REQUIRE(r.mtp_aux_loss.defined());
  double want = 0;
  for (int64_t dp = 1; dp <= 2; ++dp) {
    const MtpHead& head = m.mtp_heads[dp - 1];
    const Tensor h = r.hidden.slice(1, 0, 9 - 1 - dp);
    const Tensor lg = hydra::linear(head.proj.forward(head.norm.forward(h)), m.embed.weight);
    want += hydra::cross_entropy_forward(lg, ids.slice(1, 1 + dp, 9)).loss.item();
  }
  want = 0.25 * want / 2;
  CHECK(r.mtp_aux_loss.item() == doctest::Approx(want).epsilon(1e-12));
  // The heads never change the logits.
  CHECK(max_abs_diff(r.logits, m.forward(ids).logits) == 0.0);
  // Labels with −100 everywhere for depth 2's targets: only depth 1 counts.
  std::vector<int64_t> lab = ids.to_vector<int64_t>();
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 3; t < 9; ++t) lab[b * 9 + t] = -100;
  opts.mtp_labels = from_vector(lab, {2, 9});
  const ForwardResult r2 = m.forward(ids, opts);
  // depth 1 targets t+2 ∈ [2, 9): only t+2 = 2 is valid; depth 2 targets [3, 9): all ignored -> skipped.
  const MtpHead& h1 = m.mtp_heads[0];
  const Tensor lg1 = hydra::linear(h1.proj.forward(h1.norm.forward(r.hidden.slice(1, 0, 7))), m.embed.weight);
  const double ce1 = hydra::cross_entropy_forward(lg1, opts.mtp_labels.slice(1, 2, 9)).loss.item();
  CHECK(r2.mtp_aux_loss.item() == doctest::Approx(0.25 * ce1).epsilon(1e-12));
  // Gradients reach the MTP parameters.
  ag::backward(r.mtp_aux_loss);
  CHECK(max_abs(ag::grad(m.mtp_heads[1].proj.weight)) > 0.0);
}

TEST_CASE("HydraLM gradcheck in float64 through all three mixers and the MTP head") {
  HydraConfig c;
  c.vocab_size = 11, c.d_model = 8, c.n_heads = 2, c.n_layers = 3, c.mtp_depth = 1, c.mtp_loss_weight = 0.5;
  c.layer_types = std::vector<LayerType>{LayerType::DeltaNet, LayerType::Swa, LayerType::Retrieval};
  c.swa_window = 3, c.dn_chunk_size = 4, c.dn_short_conv_kernel = 2;
  // Every earlier chunk is selected (top_k ≥ chunks), so routing has no discontinuity for the finite differences.
  c.retrieval_chunk_size = 2, c.retrieval_top_k = 8;
  HydraLM m(c, 3);
  m.to(DType::Float64);
  {  // move norms and biases off their init so they matter
    Generator gen(hydra::test::base_seed());
    ag::NoGradGuard g;
    m.apply_to_parameters([&](const std::string&, Tensor& p) {
      p.detach().copy_(hydra::add(p.detach(), hydra::mul(randn(p.shape(), gen, DType::Float64), 0.3)));
    });
  }
  Generator gen(hydra::test::base_seed() + 1);
  // No pad token (id 0) in the input: the pad row's lookup gradient is dropped by definition (SPEC §2.2), which a
  // finite difference would see.
  const Tensor ids = randint(1, 11, {1, 9}, gen);
  ForwardOptions opts;
  opts.compute_mtp = true;
  hydra::test::check_gradcheck(
      "HydraLM loss + mtp",
      [&](const std::vector<Tensor>& xs) {
        // gradcheck hands in its own leaves (aliases of the parameters): install them in the model.
        std::size_t i = 0;
        m.apply_to_parameters([&](const std::string&, Tensor& p) { p = xs.at(i++); });
        const ForwardResult r = m.forward(ids, opts);
        return std::vector<Tensor>{ag::add(lm_loss(r.logits, ids), r.mtp_aux_loss)};
      },
      m.parameters());
}

TEST_CASE("learned summary leaves the forward unchanged and gives summary_proj a gradient") {
  HydraConfig c;
  c.vocab_size = 23, c.d_model = 16, c.n_heads = 2, c.n_layers = 2;
  c.layer_types = std::vector<LayerType>{LayerType::Retrieval, LayerType::Retrieval};
  c.retrieval_chunk_size = 3, c.retrieval_top_k = 2;
  HydraLM plain(c, 9);
  c.retrieval_learned_summary = true;
  HydraLM learned(c, 9);
  auto weights = plain.state_dict();  // plus learned's own summary_proj (identity)
  for (const auto& [n, t] : learned.state_dict())
    if (n.find("summary_proj") != std::string::npos) weights[n] = t.clone();
  learned.load_state_dict(weights, "plain + identity summary_proj");
  Generator gen(hydra::test::base_seed());
  const Tensor ids = randint(0, 23, {2, 17}, gen);
  const Tensor a = plain.forward(ids).logits, b = learned.forward(ids).logits;
  CHECK(hydra::max(hydra::abs(hydra::sub(a, b))).item() == 0.0);
  ag::backward(lm_loss(b, ids));
  const Tensor gw = ag::grad(dynamic_cast<RetrievalAttention&>(*learned.blocks[0].mixer).summary_proj->weight);
  REQUIRE(gw.defined());
  CHECK(hydra::max(hydra::abs(gw)).item() > 0.0);
}

TEST_CASE("RetrievalAttention equals routing and attention written out from SPEC section 2.11") {
  for (const bool learned : {false, true}) {
    HydraConfig c;
    c.d_model = 12, c.n_heads = 2, c.head_dim = 6, c.retrieval_chunk_size = 4, c.retrieval_top_k = 2;
    c.retrieval_learned_summary = learned;
    Generator gen(hydra::test::base_seed() + (learned ? 1 : 0));
    RetrievalAttention ra(c, gen);
    ra.to(DType::Float64);
    if (learned) ra.summary_proj->weight.detach().copy_(hydra::test::randn_t({6, 6}));
    const int64_t B = 2, T = 23, H = 2, D = 6, C = 4;
    const Tensor x = hydra::test::randn_t({B, T, 12});
    ag::NoGradGuard no_grad;
    const Tensor y = ra.forward(x, LayerState{}).y;
    // Written out: projections, per-head views, RoPE at absolute positions, chunk means of pre-RoPE keys (mapped by
    // W_s when learned), per-token top-k routing with the pre-RoPE query, attention over selected + own chunk.
    const Tensor qkv = hydra::linear(x, ra.qkv_proj.weight.detach());
    const Tensor q0 = qkv.slice(2, 0, 12).contiguous().view({B, T, H, D});
    const Tensor k0 = qkv.slice(2, 12, 24).contiguous().view({B, T, H, D});
    const Tensor v = qkv.slice(2, 24, 36).contiguous().view({B, T, H, D});
    auto rope = [&](const Tensor& t) {
      return rotary_forward(t.transpose(1, 2).contiguous(), 0, c.swa_rope_base).transpose(1, 2).contiguous();
    };
    const int64_t nc = T / C;
    Tensor sums = zeros({B, nc, H, D}, DType::Float64);
    for (int64_t j = 0; j < nc; ++j)
      sums.select(1, j).copy_(hydra::div(hydra::sum(k0.slice(1, j * C, (j + 1) * C), {1}), static_cast<double>(C)));
    if (learned) sums = hydra::linear(sums, ra.summary_proj->weight.detach());
    const Tensor idx = chunk_route_ref(q0, sums, C, 2, T);
    const Tensor o = chunk_attn_ref(rope(q0), rope(k0), v, idx, Tensor(), C, 1.0 / std::sqrt(6.0));
    const Tensor ref = hydra::linear(o.reshape({B, T, 12}), ra.o_proj.weight.detach());
    hydra::test::check_close(y, ref, hydra::test::kTolF64, learned ? "learned summary" : "mean summary");
  }
}

TEST_CASE("logits do not depend on dn_chunk_size and a window at least the length is full causal attention") {
  HydraConfig c;
  c.vocab_size = 29, c.d_model = 16, c.n_heads = 2, c.n_layers = 3, c.swa_every = 99;  // all DeltaNet
  Generator gen(hydra::test::base_seed());
  const Tensor ids = randint(0, 29, {2, 19}, gen);
  ag::NoGradGuard no_grad;
  auto logits = [&](const HydraConfig& cfg) {
    HydraLM m(cfg, 11);
    m.to(DType::Float64);
    return m.forward(ids).logits;
  };
  c.dn_chunk_size = 64;
  const Tensor ref = logits(c);
  for (int64_t chunk : {1, 3, 7, 19, 20}) {
    c.dn_chunk_size = chunk;
    hydra::test::check_close(logits(c), ref, hydra::test::kTolF64, fmt::format("dn_chunk_size {}", chunk));
  }
  // All-SWA: window ≥ N equals any larger window; a window below N differs.
  c.swa_every = 1, c.swa_window = 19;
  const Tensor full = logits(c);
  c.swa_window = 1 << 20;
  hydra::test::check_close(logits(c), full, hydra::test::kTolF64, "window 2^20");
  c.swa_window = 5;
  CHECK(hydra::max(hydra::abs(hydra::sub(logits(c), full))).item() > 1e-6);
}

TEST_CASE("per-block recomputation gives bitwise the gradients of the recorded forward") {
  HydraConfig c;
  c.vocab_size = 61, c.d_model = 32, c.n_heads = 2, c.n_layers = 3, c.mtp_depth = 1;
  c.layer_types = std::vector<LayerType>{LayerType::DeltaNet, LayerType::Retrieval, LayerType::Swa};
  c.swa_window = 8, c.dn_chunk_size = 8, c.retrieval_chunk_size = 4, c.retrieval_top_k = 2;
  c.retrieval_learned_summary = true;
  HydraLM a(c, 5), b(c, 5);
  b.set_recompute(true);
  Generator gen(hydra::test::base_seed());
  const Tensor ids = randint(1, 61, {2, 37}, gen);
  ForwardOptions opts;
  opts.compute_mtp = true;
  const ForwardResult ra = a.forward(ids, opts), rb = b.forward(ids, opts);
  CHECK(max_abs_diff(ra.logits, rb.logits) == 0.0);
  ag::backward(ag::add(lm_loss(ra.logits, ids), ra.mtp_aux_loss));
  ag::backward(ag::add(lm_loss(rb.logits, ids), rb.mtp_aux_loss));
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    CAPTURE(pa[i].first);
    REQUIRE(ag::grad(pb[i].second).defined());
    CHECK(max_abs_diff(ag::grad(pa[i].second), ag::grad(pb[i].second)) == 0.0);
  }
  // the streaming state is the same too
  REQUIRE(ra.state.size() == rb.state.size());
  CHECK(max_abs_diff(ra.state[0].S, rb.state[0].S) == 0.0);
  // without grad mode it is a plain forward
  ag::NoGradGuard no_grad;
  CHECK(max_abs_diff(b.forward(ids).logits, ra.logits) == 0.0);
}
