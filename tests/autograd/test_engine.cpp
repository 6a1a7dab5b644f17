// The autograd engine: accumulation, fan-out, multiple roots, retain_graph, no-grad, detach, deep graphs,
// gradient checks on shapes, and the errors a user can hit.
#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

TEST_CASE("backward from a scalar accumulates into leaves, fan-out sums") {
  Tensor x = leaf(from_vector<double>({1, 2, 3}, {3}));
  // y = sum(x * x + x), written with fan-out of x into both terms: dy/dx = 2x + 1.
  Tensor t = ag::add(ag::mul(x, x), x);
  Tensor y = ag::matmul(ag::reshape(t, {1, 3}), ones({3, 1}, DType::Float64));
  ag::backward(ag::reshape(y, {}));
  CHECK(ag::grad(x).to_vector<double>() == std::vector<double>{3, 5, 7});
  // A second graph accumulates (+=) into the same .grad.
  Tensor z = ag::mul(x, 2.0);
  ag::backward(z, ones({3}, DType::Float64));
  CHECK(ag::grad(x).to_vector<double>() == std::vector<double>{5, 7, 9});
  ag::zero_grad(x);
  CHECK_FALSE(ag::grad(x).defined());
}

TEST_CASE("a leaf's gradient never shares its buffer with another leaf's or with a tensor the caller holds") {
  // add passes its upstream gradient to both inputs as the same tensor; a leaf may take a gradient buffer only when
  // nothing else refers to it, so accumulating into one leaf's .grad must leave the other's and the caller's alone.
  Tensor x = leaf(from_vector<double>({1, 2, 3}, {3})), w = leaf(from_vector<double>({4, 5, 6}, {3}));
  const Tensor up = from_vector<double>({1, 10, 100}, {3});
  ag::backward(ag::add(x, w), up);
  CHECK(ag::grad(x).to_vector<double>() == std::vector<double>{1, 10, 100});
  CHECK(ag::grad(w).to_vector<double>() == std::vector<double>{1, 10, 100});
  CHECK(ag::grad(x).storage() != ag::grad(w).storage());
  CHECK(ag::grad(x).storage() != up.storage());
  CHECK(ag::grad(w).storage() != up.storage());
  ag::backward(ag::mul(x, 2.0), ones({3}, DType::Float64));  // accumulates into x.grad only
  CHECK(ag::grad(x).to_vector<double>() == std::vector<double>{3, 12, 102});
  CHECK(ag::grad(w).to_vector<double>() == std::vector<double>{1, 10, 100});
  CHECK(up.to_vector<double>() == std::vector<double>{1, 10, 100});
  // A leaf fed directly by the root's explicit gradient takes a copy of it.
  Tensor z = leaf(from_vector<double>({7, 8}, {2}));
  const Tensor gz = from_vector<double>({1, 2}, {2});
  ag::backward(z, gz);
  CHECK(ag::grad(z).storage() != gz.storage());
}

TEST_CASE("multiple roots, explicit upstream gradients and inputs that need no grad") {
  Tensor a = leaf(from_vector<double>({1, 2}, {2}));
  Tensor c = from_vector<double>({10, 20}, {2});  // constant: no grad
  Tensor u = ag::mul(a, c), v = ag::exp(a);
  ag::backward({u, v}, {from_vector<double>({1, 1}, {2}), from_vector<double>({2, 0}, {2})});
  std::vector<double> g = ag::grad(a).to_vector<double>();
  CHECK(g[0] == doctest::Approx(10 + 2 * std::exp(1.0)));
  CHECK(g[1] == doctest::Approx(20));
  CHECK_FALSE(ag::requires_grad(c));
  CHECK_FALSE(ag::grad(c).defined());
}

TEST_CASE("retain_graph: a second backward without it is an error naming the node") {
  Tensor x = leaf(from_vector<double>({1, 2}, {2}));
  Tensor y = ag::exp(x);
  ag::backward(y, ones({2}, DType::Float64), /*retain_graph=*/true);
  ag::backward(y, ones({2}, DType::Float64));  // allowed once more, then freed
  CHECK(ag::grad(x).to_vector<double>()[0] == doctest::Approx(2 * std::exp(1.0)));
  check_throws_with([&] { ag::backward(y, ones({2}, DType::Float64)); }, {"backward", "exp", "retain_graph"});
}

TEST_CASE("NoGradGuard records nothing, detach cuts the graph") {
  Tensor x = leaf(from_vector<double>({1, 2}, {2}));
  {
    ag::NoGradGuard guard;
    CHECK_FALSE(ag::grad_enabled());
    Tensor y = ag::mul(x, x);
    CHECK_FALSE(ag::requires_grad(y));
  }
  CHECK(ag::grad_enabled());
  Tensor d = x.detach();
  CHECK_FALSE(ag::requires_grad(d));
  CHECK(d.storage() == x.storage());
  Tensor y = ag::mul(ag::mul(x, 3.0), ag::exp(d));  // d is a constant
  ag::backward(y, ones({2}, DType::Float64));
  CHECK(ag::grad(x).to_vector<double>()[1] == doctest::Approx(3 * std::exp(2.0)));
}

TEST_CASE("deep graphs (100k nodes) run backward and tear down without recursion") {
  Tensor x = leaf(from_vector<double>({0.5}, {1}));
  Tensor h = x;
  for (int i = 0; i < 100000; ++i) h = ag::add(h, 1e-6);
  ag::backward(h, ones({1}, DType::Float64));
  CHECK(ag::grad(x).to_vector<double>()[0] == 1.0);
  Tensor y = x;
  for (int i = 0; i < 200000; ++i) y = ag::mul(y, 1.0);
  y = Tensor();  // destroying a 200k-deep graph must not overflow the stack
  CHECK(true);
}

TEST_CASE("gradient shape, dtype and device are checked when accumulating") {
  Tensor x = leaf(from_vector<double>({1, 2, 3}, {3}));
  Tensor y = ag::mul(x, 2.0);
  check_throws_with([&] { ag::backward(y, ones({2}, DType::Float64)); }, {"backward", "[2]", "[3]"});
  Tensor z = ag::mul(x, 2.0);
  check_throws_with([&] { ag::backward(z, ones({3}, DType::Float32)); }, {"backward", "float32", "float64"});
  check_throws_with([&] { ag::backward(ag::mul(x, 2.0)); }, {"backward", "[3]", "upstream gradient"});
  check_throws_with([&] { ag::backward(from_vector<double>({1}, {1})); }, {"backward", "does not require grad"});
  check_throws_with([&] { ag::set_requires_grad(zeros({2}, DType::Int64)); }, {"floating", "int64"});
  check_throws_with([&] { ag::set_requires_grad(ag::mul(x, 1.0)); }, {"leaf", "mul"});
  check_throws_with([&] { ag::set_grad(x, zeros({4}, DType::Float64)); }, {"set_grad", "[4]", "[3]"});
}

TEST_CASE("gradcheck catches a wrong backward and reports the worst element") {
  // A deliberately wrong op: forward x^2, backward 3x. gradcheck must fail and name it.
  auto wrong = [](const std::vector<Tensor>& in) -> std::vector<Tensor> {
    Tensor y = hydra::square(in[0]);
    if (ag::any_requires_grad({in[0]})) {
      Tensor xs = in[0].detach();
      ag::record("wrong_square", {in[0]}, {y}, [xs](const std::vector<Tensor>& g, const ag::Node&) {
        return std::vector<Tensor>{hydra::mul(g[0], hydra::mul(xs, 3.0))};
      });
    }
    return {y};
  };
  ag::GradcheckOptions opts;
  opts.seed = base_seed();
  ag::GradcheckResult r = ag::gradcheck("wrong_square", wrong, {leaf(rand_t({4}, 0.5, 1.5))}, opts);
  CHECK_FALSE(r.ok);
  CHECK(r.report.find("wrong_square") != std::string::npos);
  CHECK(r.report.find("analytic") != std::string::npos);
  CHECK(r.worst_ratio > 1.0);
  Tensor expanded = zeros({1}, DType::Float64).expand({3});
  ag::set_requires_grad(expanded);
  check_throws_with([&] { ag::gradcheck("x", wrong, {expanded}); }, {"gradcheck", "broadcast"});
}

TEST_CASE("checkpoint recomputes in backward and gives the gradients of the recorded function") {
  const Tensor x0 = hydra::test::randn_t({3, 4}), w0 = hydra::test::randn_t({4, 5});
  auto f = [](const Tensor& x, const Tensor& w) { return ag::mul(ag::tanh(ag::matmul(x, w)), ag::sum(ag::square(x))); };
  // direct
  const Tensor xa = hydra::test::leaf(x0), wa = hydra::test::leaf(w0);
  ag::backward(ag::sum(f(xa, wa)));
  // checkpointed: w is read from the closure (like a module parameter), x is an input
  const Tensor xb = hydra::test::leaf(x0), wb = hydra::test::leaf(w0);
  int calls = 0;
  const std::vector<Tensor> y = ag::checkpoint(
      [&](const std::vector<Tensor>& xs) {
        ++calls;
        return std::vector<Tensor>{f(xs[0], wb)};
      },
      {xb});
  CHECK(calls == 1);
  CHECK(ag::requires_grad(y[0]));
  ag::backward(ag::sum(y[0]));
  CHECK(calls == 2);  // recomputed once in backward
  CHECK(hydra::max(hydra::abs(hydra::sub(ag::grad(xa), ag::grad(xb)))).item() == 0.0);
  CHECK(hydra::max(hydra::abs(hydra::sub(ag::grad(wa), ag::grad(wb)))).item() == 0.0);
  // under no-grad it is just the function
  ag::NoGradGuard no_grad;
  CHECK(!ag::requires_grad(ag::checkpoint([&](const std::vector<Tensor>& xs) { return std::vector<Tensor>{f(xs[0], wb)}; },
                                          {xb})[0]));
}
