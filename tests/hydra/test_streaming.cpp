// Streaming equivalence (SPEC §5.1): one parallel forward over N tokens equals chunked prefill in pieces of any
// sizes with the state threaded through, and prefill followed by token-by-token step(). Also the state sizes of
// SPEC §5.2–§5.4.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/autograd.h"
#include "hydra/model.h"
#include "tests/test_util.h"

using namespace hydra;

namespace {

// All three mixer types; windows and chunks that straddle the piece boundaries.
HydraConfig mixed_config() {
  HydraConfig c;
  c.vocab_size = 61, c.d_model = 32, c.n_layers = 4, c.n_heads = 2;
  c.layer_types = std::vector<LayerType>{LayerType::DeltaNet, LayerType::Swa, LayerType::Retrieval, LayerType::DeltaNet};
  c.swa_window = 5, c.dn_chunk_size = 4, c.retrieval_chunk_size = 3, c.retrieval_top_k = 2;
  c.dn_short_conv_kernel = 3;
  return c;
}

// Perturbs the weights so that norms and biases matter (init has them at 1 and 0).
void perturb(HydraLM& m, uint64_t seed) {
  Generator gen(seed);
  ag::NoGradGuard g;
  m.apply_to_parameters([&](const std::string&, Tensor& p) {
    Tensor w = p.detach();
    w.copy_(hydra::add(w, hydra::mul(randn(w.shape(), gen, w.dtype()), 0.2)));
  });
}

Tensor concat_time(const std::vector<Tensor>& parts) { return hydra::concat(parts, 1); }

double max_abs_diff(const Tensor& a, const Tensor& b) {
  return hydra::max(hydra::abs(hydra::sub(a.to(DType::Float64), b.to(DType::Float64)))).item();
}

void check_streaming(const HydraConfig& cfg, DType dtype, int64_t N, const std::vector<int64_t>& pieces) {
  HydraLM m(cfg, 5);
  m.to(dtype);
  perturb(m, hydra::test::base_seed());
  Generator gen(hydra::test::base_seed() + 17);
  const Tensor ids = randint(0, cfg.vocab_size, {2, N}, gen);
  ag::NoGradGuard no_grad;
  const Tensor full = m.forward(ids).logits;
  const hydra::test::Tolerance tol = dtype == DType::Float64 ? hydra::test::Tolerance{1e-12, 1e-9}
                                                             : hydra::test::tolerance_for(dtype);
  // (a) chunked prefill in the given pieces (cycled until N tokens are consumed).
  {
    ModelState st;
    std::vector<Tensor> outs;
    int64_t t = 0;
    for (std::size_t i = 0; t < N; ++i) {
      const int64_t len = std::min(pieces[i % pieces.size()], N - t);
      ForwardResult r = m.forward(ids.slice(1, t, t + len), st);
      outs.push_back(r.logits);
      st = std::move(r.state);
      t += len;
    }
    INFO("pieces, dtype " << dtype_name(dtype) << ", max |Δ| " << max_abs_diff(concat_time(outs), full));
    hydra::test::check_close(concat_time(outs), full.to(DType::Float64), tol, "chunked prefill");
    if (dtype == DType::Float64) CHECK(max_abs_diff(concat_time(outs), full) <= 1e-9);
  }
  // (b) prefill of pieces[0] tokens, then step() token by token.
  {
    const int64_t n0 = pieces[0];
    ForwardResult r = m.forward(ids.slice(1, 0, n0), ModelState{});
    std::vector<Tensor> outs{r.logits};
    ModelState st = std::move(r.state);
    for (int64_t t = n0; t < N; ++t) {
      StepResult s = m.step(ids.select(1, t).contiguous(), st);
      outs.push_back(s.logits.unsqueeze(1));
      st = std::move(s.state);
    }
    INFO("steps, dtype " << dtype_name(dtype) << ", max |Δ| " << max_abs_diff(concat_time(outs), full));
    hydra::test::check_close(concat_time(outs), full.to(DType::Float64), tol, "prefill + step");
    if (dtype == DType::Float64) CHECK(max_abs_diff(concat_time(outs), full) <= 1e-9);
  }
}

}  // namespace

TEST_CASE("streaming: chunked prefill and step equal one forward in float64 for all three mixers") {
  const HydraConfig c = mixed_config();
  check_streaming(c, DType::Float64, 23, {1, 3, 4, 5});
  check_streaming(c, DType::Float64, 23, {7, 2});
  check_streaming(c, DType::Float64, 23, {11});
  check_streaming(c, DType::Float64, 17, {1});
}

TEST_CASE("streaming: float32 within the SPEC tolerance") {
  check_streaming(mixed_config(), DType::Float32, 29, {6, 1, 9});
}

TEST_CASE("streaming: gated output off learned summary conv 1 window above the length and chunk 1") {
  HydraConfig c = mixed_config();
  c.dn_use_gate = false, c.dn_short_conv_kernel = 1, c.swa_window = 64, c.retrieval_chunk_size = 1,
  c.retrieval_top_k = 3, c.retrieval_learned_summary = true, c.dn_norm_qk = false, c.dn_chunk_size = 64;
  check_streaming(c, DType::Float64, 13, {2, 5});
  c.retrieval_top_k = 1, c.retrieval_chunk_size = 4, c.n_heads = 4, c.tie_embeddings = false;
  check_streaming(c, DType::Float64, 19, {3});
}

TEST_CASE("state sizes: DeltaNet and SWA constant in the stream length and retrieval grows by chunks") {
  HydraConfig c = mixed_config();
  HydraLM m(c, 1);
  ag::NoGradGuard no_grad;
  Generator gen(hydra::test::base_seed());
  const int64_t B = 2, I = 32, H = 2, D = 16, W = 5, C = 3, K = 3;
  auto run = [&](int64_t n) {
    ModelState st;
    for (int64_t t = 0; t < n; t += 4) st = m.forward(randint(0, 61, {B, std::min<int64_t>(4, n - t)}, gen), st).state;
    return st;
  };
  for (int64_t n : {8, 20, 41}) {
    const ModelState st = run(n);
    INFO("n = " << n);
    // DeltaNet: S (B,H,D,D) + conv cache (B,3I,K−1), float32.
    CHECK(st[0].bytes() == (B * H * D * D + B * 3 * I * (K - 1)) * 4);
    CHECK(st[3].bytes() == st[0].bytes());
    // SWA: k and v caches of min(n, W) rows.
    CHECK(st[1].bytes() == 2 * B * std::min(n, W) * H * D * 4);
    // Retrieval: bank rows n_c·C, buffer rows n − n_c·C, n_c summaries, running sum.
    const int64_t nc = n / C;
    CHECK(st[2].bytes() == (2 * B * n * H * D + B * nc * H * D + B * H * D) * 4);
    CHECK(st[2].pos == n);
    CHECK(state_bytes(st) == st[0].bytes() * 2 + st[1].bytes() + st[2].bytes());
  }
}
