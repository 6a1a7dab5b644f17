// nn::Module (named parameters, sharing, dtype moves, state dicts) and the generic layers.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/autograd.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "tests/test_util.h"

using namespace hydra;
using hydra::test::check_throws_with;

namespace {

struct Pair : nn::Module {
  explicit Pair(Generator& gen) : a(3, 4, true, gen), b(4, 2, false, gen) {
    register_module("a", &a);
    register_module("b", &b);
  }
  nn::Linear a, b;
};

struct Outer : nn::Module {
  explicit Outer(Generator& gen) : norm(4, 1e-5) {
    items.push_back(std::make_unique<Pair>(gen));
    items.push_back(std::make_unique<Pair>(gen));
    register_module("items", &items);
    register_module("norm", &norm);
    shared = items[0].a.weight;  // a tied tensor registered twice counts once
    register_parameter("shared", &shared);
  }
  nn::ModuleList<Pair> items;
  nn::RMSNorm norm;
  Tensor shared;
};

}  // namespace

TEST_CASE("Module names parameters hierarchically in registration order and counts shared tensors once") {
  Generator gen(1);
  Outer m(gen);
  std::vector<std::string> names;
  for (auto& [n, t] : m.named_parameters()) names.push_back(n);
  // A module's own parameters come before its children's (as in PyTorch), so the tie is listed as "shared".
  CHECK(names == std::vector<std::string>{"shared", "items.0.a.bias", "items.0.b.weight", "items.1.a.weight",
                                          "items.1.a.bias", "items.1.b.weight", "norm.weight"});
  CHECK(m.num_parameters() == 2 * (12 + 4 + 8) + 4);
  CHECK(&m.submodule("items.1.b") == &m.items[1].b);
  check_throws_with([&] { m.submodule("items.2"); }, {"no child '2'", "items.2", "children: 0, 1"});
  for (const Tensor& p : m.parameters()) CHECK(ag::requires_grad(p));
}

TEST_CASE("Module to(dtype) keeps ties and parameters stay leaves requiring grad") {
  Generator gen(2);
  Outer m(gen);
  m.to(DType::Float64);
  CHECK(m.dtype() == DType::Float64);
  CHECK(m.shared.is_same(m.items[0].a.weight));
  for (const Tensor& p : m.parameters()) {
    CHECK(p.dtype() == DType::Float64);
    CHECK(ag::requires_grad(p));
    CHECK(ag::is_leaf(p));
  }
  m.train(false);
  CHECK_FALSE(m.items[1].b.is_training());
}

TEST_CASE("Linear SwiGLU and RMSNorm compute the SPEC formulas") {
  Generator gen(3);
  nn::SwiGLU mlp(5, 7, gen);
  mlp.to(DType::Float64);
  const Tensor x = hydra::test::randn_t({2, 3, 5});
  const Tensor y = mlp.forward(x);
  // Reference: [g | a] = x W_fusedᵀ with g the first F rows; out = (SiLU(g) ⊙ a) W_downᵀ.
  const Tensor ga = hydra::linear(x, mlp.w_fused.weight.detach());
  const Tensor g = ga.slice(2, 0, 7), a = ga.slice(2, 7, 14);
  const Tensor ref = hydra::linear(hydra::mul(hydra::mul(g, hydra::sigmoid(g)), a), mlp.w_down.weight.detach());
  hydra::test::check_close(y, ref, hydra::test::kTolF64, "swiglu");
  check_throws_with([&] { mlp.w_fused.forward(hydra::test::randn_t({2, 4})); }, {"Linear", "[2, 4]", "(..., 5)"});
  CHECK(mlp.w_fused.weight.shape() == Shape{14, 5});
  CHECK(mlp.w_down.weight.shape() == Shape{5, 7});
}

TEST_CASE("ShortConv step equals forward token by token and the cache holds raw inputs") {
  Generator gen(4);
  for (int64_t K : {1, 2, 4}) {
    nn::ShortConv conv(6, K, gen);
    conv.to(DType::Float64);
    CHECK(conv.conv.weight.shape() == Shape{6, 1, K});
    const Tensor x = hydra::test::randn_t({2, 7, 6});
    ag::NoGradGuard g;
    const nn::ShortConv::Output full = conv.forward(x);
    Tensor cache;
    for (int64_t t = 0; t < 7; ++t) {
      const nn::ShortConv::Output s = conv.step(x.select(1, t).contiguous(), cache);
      hydra::test::check_close(s.y, full.y.select(1, t).contiguous(), hydra::test::kTolF64, "conv step");
      cache = s.new_cache;
    }
    if (K > 1) {
      hydra::test::check_close(cache, full.new_cache, hydra::test::kTolF64, "conv cache");
      // The cache is the raw input of the last K−1 tokens, channel-major.
      hydra::test::check_close(cache, x.slice(1, 7 - (K - 1), 7).transpose(1, 2).contiguous(), hydra::test::kTolF64,
                               "raw inputs");
    } else {
      CHECK_FALSE(cache.defined());
    }
  }
}

TEST_CASE("Embedding padding row gets no gradient through the lookup") {
  Generator gen(5);
  nn::Embedding emb(6, 3, 2, gen);
  const Tensor ids = from_vector<int64_t>({2, 1, 2, 5}, {4});
  ag::backward(ag::sum(emb.forward(ids)));
  const std::vector<double> g = ag::grad(emb.weight).to_vector<double>();
  for (int j = 0; j < 3; ++j) {
    CHECK(g[2 * 3 + j] == 0.0);
    CHECK(g[1 * 3 + j] == 1.0);
    CHECK(g[5 * 3 + j] == 1.0);
  }
  // The pad row is looked up like any other (not zero).
  CHECK(hydra::max(hydra::abs(emb.forward(from_vector<int64_t>({2}, {1})))).item() > 0.0);
}
