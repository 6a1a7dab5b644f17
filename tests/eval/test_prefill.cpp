// eval/prefill.h: logits_at over chunks of any size equals the full forward's logits at the requested positions
// (a float64 HydraLM with DeltaNet, SWA and retrieval layers), its argument errors, and the position scorer
// against cross-entropy and argmax by hand.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "autograd/autograd.h"
#include "eval/prefill.h"
#include "hydra/model.h"
#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::eval;
using hydra::test::check_throws_with;

namespace {

// All three mixer types, with windows and chunks that straddle the prefill chunk boundaries.
HydraConfig mixed_config() {
  HydraConfig c;
  c.vocab_size = 64, c.d_model = 32, c.n_layers = 3, c.n_heads = 2;
  c.layer_types = std::vector<LayerType>{LayerType::DeltaNet, LayerType::Swa, LayerType::Retrieval};
  c.swa_window = 5, c.dn_chunk_size = 4, c.retrieval_chunk_size = 3, c.retrieval_top_k = 2;
  c.dn_short_conv_kernel = 3;
  return c;
}

// Perturbs the weights so that norms and biases matter (init has them at 1 and 0) and logits are not tiny.
void perturb(HydraLM& m, uint64_t seed) {
  Generator gen(seed);
  ag::NoGradGuard g;
  m.apply_to_parameters([&](const std::string&, Tensor& p) {
    Tensor w = p.detach();
    w.copy_(hydra::add(w, hydra::mul(randn(w.shape(), gen, w.dtype()), 0.2)));
  });
}

Tensor rows_at(const Tensor& logits, const std::vector<int64_t>& positions) {
  return hydra::index_select(logits, 1, from_vector(positions, {static_cast<int64_t>(positions.size())}));
}

}  // namespace

TEST_CASE("logits_at over chunks equals the full forward at the requested positions") {
  const HydraConfig cfg = mixed_config();
  HydraLM m(cfg, 3);
  m.to(DType::Float64);
  perturb(m, hydra::test::base_seed());
  Generator gen(hydra::test::base_seed() + 5);
  const int64_t B = 2, N = 23;
  const Tensor ids = randint(0, cfg.vocab_size, {B, N}, gen);
  Tensor full;
  {
    ag::NoGradGuard no_grad;
    full = m.forward(ids).logits;
  }
  for (const std::vector<int64_t>& positions :
       {std::vector<int64_t>{0, 4, 5, 11, 20}, std::vector<int64_t>{3, 3, 22}, std::vector<int64_t>{21}}) {
    const Tensor expected = rows_at(full, positions);
    for (int64_t chunk : {1, 7, 23, 100}) {
      INFO("chunk " << chunk << ", " << positions.size() << " positions, last " << positions.back());
      const Tensor got = logits_at(m, ids, positions, chunk);
      REQUIRE(got.shape() == Shape{B, static_cast<int64_t>(positions.size()), cfg.vocab_size});
      CHECK(got.dtype() == DType::Float64);
      CHECK(got.is_cpu());
      hydra::test::check_close(got, expected, hydra::test::kTolF64, "logits_at vs forward");
    }
  }
  CHECK(logits_at(m, ids, {}, 4).shape() == Shape{B, 0, cfg.vocab_size});
}

TEST_CASE("logits_at of a float32 model returns float32 and matches its full forward") {
  const HydraConfig cfg = mixed_config();
  HydraLM m(cfg, 4);
  perturb(m, hydra::test::base_seed() + 1);
  Generator gen(hydra::test::base_seed() + 6);
  const Tensor ids = randint(0, cfg.vocab_size, {1, 17}, gen);
  Tensor full;
  {
    ag::NoGradGuard no_grad;
    full = m.forward(ids).logits;
  }
  const std::vector<int64_t> positions{2, 9, 16};
  const Tensor got = logits_at(m, ids, positions, 5);
  CHECK(got.dtype() == DType::Float32);
  hydra::test::check_close(got, hydra::test::host64(rows_at(full, positions)), hydra::test::kTolF32, "float32");
}

TEST_CASE("logits_at rejects bad positions, chunks and ids") {
  const HydraConfig cfg = mixed_config();
  HydraLM m(cfg, 1);
  const Tensor ids = zeros({2, 10}, DType::Int64);
  check_throws_with([&] { logits_at(m, ids, {1, 2}, 0); }, {"logits_at", "chunk must be ≥ 1, got 0"});
  check_throws_with([&] { logits_at(m, ids, {1, 10}, 4); }, {"positions[1] = 10", "[0, N = 10)"});
  check_throws_with([&] { logits_at(m, ids, {-1}, 4); }, {"positions[0] = -1"});
  check_throws_with([&] { logits_at(m, ids, {5, 3}, 4); }, {"sorted ascending", "positions[1] = 3 < positions[0] = 5"});
  check_throws_with([&] { logits_at(m, zeros({10}, DType::Int64), {1}, 4); }, {"(B ≥ 1, N ≥ 1)", "[10]"});
}

TEST_CASE("score_positions and correct_flags match cross-entropy and argmax by hand") {
  // (B, n, V) = (2, 2, 3): (0,0) correct; (0,1) skipped; (1,0) wrong; (1,1) a tie, first maximum wins: correct.
  const Tensor logits = from_vector<double>({1, 2, 0, 0, 0, 0, 3, 1, 2, 0.5, 0.5, 0}, {2, 2, 3});
  const Tensor targets = from_vector<int64_t>({1, -100, 2, 0}, {2, 2});
  const PositionScore s = score_positions(logits, targets);
  CHECK(s.count == 3);
  CHECK(s.correct == 2);
  const double e = std::exp(1.0);
  const double expected = (std::log(e + e * e + 1) - 2) + (std::log(e * e * e + e + e * e) - 2) +
                          (std::log(2 * std::exp(0.5) + 1) - 0.5);
  CHECK(s.loss_sum == doctest::Approx(expected).epsilon(1e-12));
  CHECK(correct_flags(logits, targets) == std::vector<int>{1, -1, 0, 1});
  // float32 logits are accepted (scored in float64)
  const PositionScore s32 = score_positions(logits.to(DType::Float32), targets);
  CHECK(s32.correct == 2);
  CHECK(s32.loss_sum == doctest::Approx(expected).epsilon(1e-6));

  check_throws_with([&] { score_positions(logits, from_vector<int64_t>({1, 3, 0, 0}, {2, 2})); },
                    {"score_positions", "target 3 at (0, 1)", "[0, 3)"});
  check_throws_with([&] { correct_flags(logits, from_vector<int64_t>({1, 1, 1}, {1, 3})); },
                    {"correct_flags", "[2, 2, 3]", "[1, 3]"});
}
