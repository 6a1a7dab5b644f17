// The dense Transformer baseline (SPEC §8.5) on the GPU: float32 logits, loss and every parameter gradient against
// the same model in float64 on the CPU; the bf16 mixed-precision policy against float32 on the CPU; chunked prefill
// and step on the GPU against the full forward; no host synchronisation inside a forward+backward.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <vector>

#include "hydra/transformer.h"
#include "tensor/cuda/backend.h"
#include "tests/test_util.h"

using namespace hydra;
using hydra::test::check_close;
using hydra::test::gpu_available;
using hydra::test::host64;

namespace {

// 77 tokens: not a multiple of any kernel tile (the CUDA window kernel tiles by 64 rows at D ≤ 64).
HydraConfig gpu_config(bool tie) {
  HydraConfig c;
  c.arch = "transformer";
  c.vocab_size = 97, c.d_model = 64, c.n_heads = 4, c.n_layers = 3, c.tie_embeddings = tie;
  return c;
}

// Moves every parameter off its init so norms and all matrices matter (same draws on both copies: by name order).
void perturb(DenseTransformer& m, uint64_t seed) {
  Generator gen(seed);
  ag::NoGradGuard g;
  m.apply_to_parameters([&](const std::string&, Tensor& p) {
    Tensor w = p.detach();
    const Tensor noise = hydra::mul(randn(w.shape(), gen, DType::Float64), 0.05);
    w.copy_(hydra::add(w, noise.to(w.dtype()).to(w.device())));
  });
}

}  // namespace

TEST_CASE("DenseTransformer float32 on the GPU matches float64 on the CPU: logits loss and every gradient") {
  if (!gpu_available()) return;
  const Device cuda("cuda:0");
  for (const bool tie : {true, false}) {
    CAPTURE(tie);
    const HydraConfig c = gpu_config(tie);
    DenseTransformer ref(c, 11), gpu(c, 11);
    perturb(ref, 5), perturb(gpu, 5);
    ref.to(DType::Float64);
    gpu.to(cuda);
    Generator gen(hydra::test::base_seed());
    const Tensor ids = randint(0, c.vocab_size, {2, 77}, gen);
    const ForwardResult rr = ref.forward(ids), rg = gpu.forward(ids);
    CHECK(rg.logits.device().is_cuda());
    CHECK(rg.logits.dtype() == DType::Float32);
    check_close(rg.logits, rr.logits, hydra::test::tolerance_for(DType::Float32), "logits");
    const Tensor lr = lm_loss(rr.logits, ids), lg = lm_loss(rg.logits, ids.to(cuda));
    CHECK(std::abs(lg.item() - lr.item()) <= 1e-5 * std::abs(lr.item()));
    ag::backward(lr);
    ag::backward(lg);
    const auto pr = ref.named_parameters(), pg = gpu.named_parameters();
    REQUIRE(pr.size() == pg.size());
    for (std::size_t i = 0; i < pr.size(); ++i) {
      CAPTURE(pr[i].first);
      const Tensor gr = ag::grad(pr[i].second), gg = ag::grad(pg[i].second);
      REQUIRE(gr.defined());
      REQUIRE(gg.defined());
      CHECK(gg.device().is_cuda());
      // Gradients pass through every layer: the TF32-level tolerance, as HydraLM's GPU test (float32 end to end
      // through ~20 kernels accumulates more than one kernel's rounding).
      check_close(gg, gr, hydra::test::kTolTF32, pr[i].first);
    }
  }
}

TEST_CASE("DenseTransformer bf16 mixed precision on the GPU against float32 on the CPU: logits loss and gradients") {
  if (!gpu_available()) return;
  const Device cuda("cuda:0");
  const HydraConfig c = gpu_config(true);
  DenseTransformer ref(c, 21), gpu(c, 21);
  perturb(ref, 6), perturb(gpu, 6);
  gpu.to(cuda);
  gpu.set_compute_dtype(DType::BFloat16);
  CHECK(gpu.compute_dtype() == DType::BFloat16);
  Generator gen(hydra::test::base_seed() + 7);
  const Tensor ids = randint(0, c.vocab_size, {2, 77}, gen);
  const ForwardResult rr = ref.forward(ids), rg = gpu.forward(ids);
  CHECK(rg.logits.dtype() == DType::BFloat16);
  check_close(rg.logits, rr.logits, hydra::test::tolerance_for(DType::BFloat16), "logits");
  const Tensor lr = lm_loss(rr.logits, ids), lg = lm_loss(rg.logits, ids.to(cuda));
  CHECK(lg.dtype() == DType::Float32);
  CHECK(std::abs(lg.item() - lr.item()) <= 1e-2 * std::abs(lr.item()));
  ag::backward(lr);
  ag::backward(lg);
  const auto pr = ref.named_parameters(), pg = gpu.named_parameters();
  REQUIRE(pr.size() == pg.size());
  for (std::size_t i = 0; i < pr.size(); ++i) {
    CAPTURE(pr[i].first);
    CHECK(pg[i].second.dtype() == DType::Float32);  // master weights
    const Tensor gg = ag::grad(pg[i].second);
    REQUIRE(gg.defined());
    CHECK(gg.dtype() == DType::Float32);
    check_close(gg, ag::grad(pr[i].second), hydra::test::kTolModelBF16Grad, pr[i].first);
  }
}

TEST_CASE("DenseTransformer streaming on the GPU: chunked prefill and step equal the full forward") {
  if (!gpu_available()) return;
  const Device cuda("cuda:0");
  const HydraConfig c = gpu_config(true);
  DenseTransformer m(c, 31);
  perturb(m, 8);
  m.to(cuda);
  Generator gen(hydra::test::base_seed() + 9);
  const std::vector<int64_t> pieces = {5, 1, 70, 3};  // 70: a piece across the 64-row tiles, with a cache before it
  int64_t N = 0;
  for (int64_t p : pieces) N += p;
  const Tensor ids = randint(0, c.vocab_size, {2, N}, gen).to(cuda);
  ag::NoGradGuard no_grad;
  const Tensor full = host64(m.forward(ids).logits);
  const auto tol = hydra::test::tolerance_for(DType::Float32);
  ModelState st;
  std::vector<Tensor> outs;
  int64_t t = 0;
  for (int64_t len : pieces) {
    ForwardResult r = m.forward(ids.slice(1, t, t + len), st);
    outs.push_back(host64(r.logits));
    st = std::move(r.state);
    t += len;
  }
  check_close(hydra::concat(outs, 1), full, tol, "chunked prefill");
  REQUIRE(st.size() == 3);
  CHECK(st[0].pos == N);
  CHECK(st[0].k_cache.device().is_cuda());
  CHECK(st[0].k_cache.shape() == Shape{2, N, 4, 16});
  // Prefill of 6 tokens, then step() to the end.
  ForwardResult r = m.forward(ids.slice(1, 0, 6), ModelState{});
  std::vector<Tensor> steps{host64(r.logits)};
  st = std::move(r.state);
  for (int64_t s = 6; s < N; ++s) {
    StepResult sr = m.step(ids.select(1, s).contiguous(), st);
    CHECK(sr.logits.device().is_cuda());
    steps.push_back(host64(sr.logits).unsqueeze(1));
    st = std::move(sr.state);
  }
  check_close(hydra::concat(steps, 1), full, tol, "prefill + step");
}

TEST_CASE("DenseTransformer forward and backward on the GPU make no host round trip besides reading the loss") {
  if (!gpu_available()) return;
  const Device cuda("cuda:0");
  HydraConfig c = gpu_config(false);
  c.d_model = 32, c.n_heads = 2;
  DenseTransformer m(c, 3);
  m.to(cuda);
  Generator gen(1);
  const Tensor ids = randint(0, c.vocab_size, {2, 64}, gen).to(cuda);
  {  // warm-up: the caching allocator's first cudaMalloc calls may synchronise
    ag::backward(lm_loss(m.forward(ids).logits, ids));
    m.zero_grad();
  }
  // Delay the compute stream by 300 ms: a host synchronisation inside forward/backward would wait for it.
  cuda::synchronize(0);
  cuda::enqueue_delay(cuda::compute_stream(0), 300);
  const auto t0 = std::chrono::steady_clock::now();
  ag::backward(lm_loss(m.forward(ids).logits, ids));
  const double host_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  cuda::synchronize(0);
  CHECK_MESSAGE(host_ms < 150.0, "forward+backward waited for the device: " << host_ms << " ms on the host");
}
