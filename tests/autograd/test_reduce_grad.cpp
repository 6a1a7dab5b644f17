// Differentiable reductions: gradcheck (float64 central differences) of sum, mean, max/min, norm, softmax,
// log_softmax, logsumexp, cumsum and topk over dims, keepdim and non-contiguous leaves; graph connectivity of the
// index outputs.
#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

namespace {

using Fn1 = std::function<Tensor(const Tensor&)>;

// gradcheck of a one-input, one-output op on a contiguous [4, 5, 3] leaf and on non-contiguous leaves.
void gradcheck_layouts(const std::string& name, const Fn1& f) {
  auto fn = [f](const std::vector<Tensor>& in) -> std::vector<Tensor> { return {f(in[0])}; };
  {
    INFO(name << " contiguous [4, 5, 3]");
    check_gradcheck(name, fn, {leaf(randn_t({4, 5, 3}))});
  }
  {
    INFO(name << " permuted view [4, 5, 3]");
    check_gradcheck(name, fn, {leaf(randn_t({3, 5, 4}).permute({2, 1, 0}))});
  }
}

// gradcheck on a [4, 5] non-contiguous (transposed) leaf.
void gradcheck_transposed(const std::string& name, const Fn1& f) {
  auto fn = [f](const std::vector<Tensor>& in) -> std::vector<Tensor> { return {f(in[0])}; };
  INFO(name << " transposed [4, 5]");
  check_gradcheck(name, fn, {leaf(randn_t({5, 4}).transpose(0, 1))});
}

}  // namespace

TEST_CASE("sum and mean gradients over dim sets and keepdim") {
  const std::vector<std::vector<int64_t>> dim_sets = {{}, {0}, {-1}, {0, 2}, {1}};
  for (const auto& dims : dim_sets)
    for (bool keepdim : {false, true}) {
      INFO("dims " << shape_str(dims) << " keepdim " << keepdim);
      gradcheck_layouts("sum", [dims, keepdim](const Tensor& x) { return ag::sum(x, dims, keepdim); });
      gradcheck_layouts("mean", [dims, keepdim](const Tensor& x) { return ag::mean(x, dims, keepdim); });
    }
  gradcheck_transposed("sum", [](const Tensor& x) { return ag::sum(x); });
  gradcheck_transposed("mean", [](const Tensor& x) { return ag::mean(x); });
}

TEST_CASE("max and min gradients flow to the selected index only") {
  for (int64_t dim : {0, 1, -1})
    for (bool keepdim : {false, true}) {
      INFO("dim " << dim << " keepdim " << keepdim);
      gradcheck_layouts("max", [dim, keepdim](const Tensor& x) { return ag::max(x, dim, keepdim).values; });
      gradcheck_layouts("min", [dim, keepdim](const Tensor& x) { return ag::min(x, dim, keepdim).values; });
    }
  gradcheck_transposed("max global", [](const Tensor& x) { return ag::max(x); });
  gradcheck_transposed("min global", [](const Tensor& x) { return ag::min(x); });

  // The selected entries get the upstream gradient; indices are a plain tensor.
  Tensor x = leaf(from_vector<double>({1, 5, 2, 7, 3, 0}, {2, 3}));
  ValuesIndices r = ag::max(x, 1);
  CHECK(ag::requires_grad(r.values));
  CHECK(!ag::requires_grad(r.indices));
  ag::backward(ag::sum(r.values));
  CHECK(ag::grad(x).to_vector<double>() == std::vector<double>{0, 1, 0, 1, 0, 0});
}

TEST_CASE("norm gradients for p = 2 and p = 1") {
  for (double p : {2.0, 1.0}) {
    for (const std::vector<int64_t>& dims : {std::vector<int64_t>{}, {1}, {0, -1}})
      for (bool keepdim : {false, true}) {
        INFO("p " << p << " dims " << shape_str(dims) << " keepdim " << keepdim);
        gradcheck_layouts("norm", [p, dims, keepdim](const Tensor& x) { return ag::norm(x, p, dims, keepdim); });
      }
    gradcheck_transposed("norm global", [p](const Tensor& x) { return ag::norm(x, p); });
  }
  // The gradient of the 2-norm at 0 is taken as 0 (no NaN).
  Tensor z = leaf(zeros({3}, DType::Float64));
  ag::backward(ag::norm(z));
  CHECK(ag::grad(z).to_vector<double>() == std::vector<double>(3, 0.0));
}

TEST_CASE("softmax, log_softmax and logsumexp gradients along any dim") {
  for (int64_t dim : {0, 1, -1}) {
    INFO("dim " << dim);
    gradcheck_layouts("softmax", [dim](const Tensor& x) { return ag::softmax(x, dim); });
    gradcheck_layouts("log_softmax", [dim](const Tensor& x) { return ag::log_softmax(x, dim); });
    for (bool keepdim : {false, true}) {
      INFO("keepdim " << keepdim);
      gradcheck_layouts("logsumexp", [dim, keepdim](const Tensor& x) { return ag::logsumexp(x, dim, keepdim); });
    }
  }
  gradcheck_transposed("softmax", [](const Tensor& x) { return ag::softmax(x); });
  gradcheck_transposed("log_softmax", [](const Tensor& x) { return ag::log_softmax(x); });
  gradcheck_transposed("logsumexp", [](const Tensor& x) { return ag::logsumexp(x, -1); });
}

TEST_CASE("cumsum gradient is the reverse cumsum") {
  for (int64_t dim : {0, 1, 2, -1}) {
    INFO("dim " << dim);
    gradcheck_layouts("cumsum", [dim](const Tensor& x) { return ag::cumsum(x, dim); });
  }
  gradcheck_transposed("cumsum", [](const Tensor& x) { return ag::cumsum(x, 0); });
}

TEST_CASE("topk gradient is scattered to the selected indices") {
  for (int64_t k : {1, 3})
    for (bool largest : {true, false}) {
      INFO("k " << k << " largest " << largest);
      gradcheck_layouts("topk", [k, largest](const Tensor& x) { return ag::topk(x, k, largest).values; });
      gradcheck_transposed("topk", [k, largest](const Tensor& x) { return ag::topk(x, k, largest).values; });
    }
  Tensor x = leaf(from_vector<double>({0.5, 3, -1, 2, 9, 4}, {6}));
  ValuesIndices r = ag::topk(x, 2);
  CHECK(!ag::requires_grad(r.indices));
  ag::backward(r.values, from_vector<double>({10, 20}, {2}));
  CHECK(ag::grad(x).to_vector<double>() == std::vector<double>{0, 0, 0, 0, 10, 20});
}

TEST_CASE("reductions record nothing without requires_grad or under no_grad") {
  Tensor x = randn_t({3, 4});
  CHECK(!ag::requires_grad(ag::sum(x, {1})));
  Tensor l = leaf(randn_t({3, 4}));
  {
    ag::NoGradGuard guard;
    CHECK(!ag::requires_grad(ag::softmax(l)));
    CHECK(!ag::requires_grad(ag::topk(l, 2).values));
  }
  CHECK(ag::requires_grad(ag::softmax(l)));
  CHECK(ag::requires_grad(ag::cumsum(l, 0)));
}
