// hydra/generate.h: the SPEC §6.2 sampling rules and SPEC §6.1 generation (greedy = argmax of the full forward).
#include <doctest/doctest.h>

#include <cmath>
#include <map>

#include "hydra/generate.h"
#include "hydra/model.h"
#include "tests/test_util.h"

using namespace hydra;

TEST_CASE("sampling: temperature 0 is the argmax with ties to the first index") {
  Generator gen(1);
  SamplingOptions o;
  o.temperature = 0;
  o.top_k = 1;  // ignored
  CHECK(sample_token({0.5, 2.0, 2.0, -1.0}, o, gen) == 1);
  o.temperature = -1;
  CHECK(sample_token({3.0, 2.0}, o, gen) == 0);
}

TEST_CASE("sampling: top-k keeps the k largest and the ties at the k-th") {
  Generator gen(hydra::test::base_seed());
  SamplingOptions o;
  o.top_k = 2;
  std::map<int64_t, int> seen;
  for (int i = 0; i < 2000; ++i) seen[sample_token({1.0, 3.0, 2.0, 2.0, 0.0}, o, gen)]++;
  // τ = 2.0: indices 1, 2, 3 survive (the tie at τ is kept), 0 and 4 never appear
  CHECK(seen.count(0) == 0);
  CHECK(seen.count(4) == 0);
  CHECK(seen[1] > seen[2]);
  CHECK(seen[2] > 300);
  CHECK(seen[3] > 300);
}

TEST_CASE("sampling: top-p drops tokens whose exclusive prefix mass exceeds p and keeps the top token") {
  Generator gen(hydra::test::base_seed());
  // probabilities 0.5 0.3 0.2: exclusive prefix sums 0 0.5 0.8
  const std::vector<double> l = {std::log(0.5), std::log(0.3), std::log(0.2)};
  SamplingOptions o;
  o.top_p = 0.6;  // keeps 0 and 1 (c = 0.5 ≤ 0.6), drops 2 (c = 0.8)
  std::map<int64_t, int> seen;
  for (int i = 0; i < 4000; ++i) seen[sample_token(l, o, gen)]++;
  CHECK(seen.count(2) == 0);
  CHECK(std::abs(seen[0] / 4000.0 - 0.625) < 0.04);  // 0.5 / 0.8
  o.top_p = 1e-9;  // only the top token
  for (int i = 0; i < 100; ++i) CHECK(sample_token(l, o, gen) == 0);
}

TEST_CASE("sampling: plain sampling follows softmax of the logits over the temperature") {
  Generator gen(hydra::test::base_seed());
  const std::vector<double> l = {0.0, 1.0, 2.0};
  SamplingOptions o;
  o.temperature = 2.0;
  const int n = 20000;
  std::vector<int> c(3, 0);
  for (int i = 0; i < n; ++i) c[sample_token(l, o, gen)]++;
  const double z = 1 + std::exp(0.5) + std::exp(1.0);
  for (int i = 0; i < 3; ++i) {
    const double p = std::exp(l[i] / 2.0) / z;
    CHECK(std::abs(c[i] / static_cast<double>(n) - p) < 5 * std::sqrt(p * (1 - p) / n));  // 5 standard errors
  }
}

TEST_CASE("generate: greedy tokens are the argmax of a full forward over the sequence so far and EOS stops rows") {
  HydraConfig c;
  c.vocab_size = 50, c.d_model = 32, c.n_heads = 2, c.n_layers = 3;
  c.layer_types = std::vector<LayerType>{LayerType::DeltaNet, LayerType::Swa, LayerType::Retrieval};
  c.swa_window = 4, c.dn_chunk_size = 4, c.retrieval_chunk_size = 3, c.retrieval_top_k = 1;
  HydraLM m(c, 9);
  Generator g(hydra::test::base_seed());
  const Tensor prompt = randint(1, 50, {2, 5}, g);
  GenerateOptions o;
  o.max_new_tokens = 8;
  o.sampling.temperature = 0;
  const Tensor out = generate(m, prompt, o);
  REQUIRE(out.size(1) == 13);
  const std::vector<int64_t> ov = out.to_vector<int64_t>();
  ag::NoGradGuard no_grad;
  for (int64_t n = 5; n < 13; ++n) {
    const Tensor logits = m.forward(out.slice(1, 0, n).contiguous()).logits;
    for (int64_t b = 0; b < 2; ++b) {
      const std::vector<double> row = logits.select(0, b).select(0, n - 1).to(DType::Float64).to_vector<double>();
      CHECK(ov[b * 13 + n] == std::max_element(row.begin(), row.end()) - row.begin());
    }
  }
  // EOS: with the first greedy token of row 0 as EOS, row 0 keeps emitting it; the run stops when all rows have.
  o.eos_token_id = ov[5];
  const Tensor e = generate(m, prompt, o);
  const std::vector<int64_t> ev = e.to_vector<int64_t>();
  const int64_t N = e.size(1);
  for (int64_t n = 5; n < N; ++n) CHECK(ev[n] == ov[5]);
  // sampling is reproducible for a seed
  o.eos_token_id.reset();
  o.sampling.temperature = 1.0;
  o.seed = 77;
  CHECK(generate(m, prompt, o).to_vector<int64_t>() == generate(m, prompt, o).to_vector<int64_t>());
}
