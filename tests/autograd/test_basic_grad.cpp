// Gradchecks of the differentiable elementwise, matmul and view ops (float64 central differences).
#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

TEST_CASE("gradcheck: every unary op, contiguous and strided") {
  const UnaryOp ops[] = {UnaryOp::Neg,  UnaryOp::Exp,  UnaryOp::Log,    UnaryOp::Sqrt,       UnaryOp::Rsqrt,
                         UnaryOp::Sigmoid, UnaryOp::Silu, UnaryOp::Tanh, UnaryOp::Relu,      UnaryOp::Abs,
                         UnaryOp::Square, UnaryOp::Reciprocal, UnaryOp::Sin, UnaryOp::Cos};
  for (UnaryOp op : ops) {
    INFO(unary_op_name(op));
    // Positive inputs away from 0 keep log/sqrt in domain and relu/abs away from their kink.
    Tensor x = rand_t({4, 3}, 0.3, 2.0);
    check_gradcheck(unary_op_name(op), [op](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::unary(op, in[0])}; },
                    {leaf(x)});
    if (op == UnaryOp::Relu || op == UnaryOp::Abs) {
      Tensor neg = rand_t({3, 4}, -2.0, -0.3).transpose(0, 1);
      check_gradcheck(unary_op_name(op), [op](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::unary(op, in[0])}; },
                      {leaf(neg)});
    }
  }
}

TEST_CASE("gradcheck: binary ops with broadcasting and strided inputs") {
  const BinaryOp ops[] = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div,
                          BinaryOp::Pow, BinaryOp::Maximum, BinaryOp::Minimum};
  const std::vector<std::pair<Shape, Shape>> shapes = {{{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{2, 1, 4}, {3, 1}}, {{}, {2, 2}}};
  for (BinaryOp op : ops) {
    for (auto& [sa, sb] : shapes) {
      INFO(binary_op_name(op) << " " << shape_str(sa) << " " << shape_str(sb));
      Tensor a = rand_t(sa, 0.5, 1.5), b = rand_t(sb, 0.5, 1.5);
      check_gradcheck(binary_op_name(op),
                      [op](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::binary(op, in[0], in[1])}; },
                      {leaf(a), leaf(b)});
    }
  }
  Tensor at = rand_t({4, 3}, 0.5, 1.5).transpose(0, 1);  // non-contiguous leaf
  check_gradcheck("mul strided", [](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::mul(in[0], in[1])}; },
                  {leaf(at), leaf(rand_t({3, 4}, 0.5, 1.5))});
  // Only one input requires grad.
  check_gradcheck("div const", [](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::div(in[0], in[1])}; },
                  {leaf(rand_t({3}, 0.5, 1.5)), rand_t({3}, 0.5, 1.5)});
}

TEST_CASE("gradcheck: scalar forms, clamp, where, masked_fill") {
  Tensor x = rand_t({5}, -2, 2);
  check_gradcheck("scalar ops", [](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{ag::pow(ag::add(ag::mul(ag::sub(ag::div(in[0], 4.0), 1.0), -2.0), 5.0), 1.5)};
  }, {leaf(x)});
  // clamp: keep inputs away from the bounds.
  Tensor xc = from_vector<double>({-1.7, -0.9, -0.2, 0.3, 0.8, 1.6}, {6});
  check_gradcheck("clamp", [](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::clamp(in[0], -1.0, 1.0)}; },
                  {leaf(xc)});
  Tensor cond = compare(CompareOp::Gt, rand_t({3, 4}, 0, 1), scalar_tensor(0.5, DType::Float64));
  check_gradcheck("where", [cond](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::where(cond, in[0], in[1])}; },
                  {leaf(randn_t({3, 4})), leaf(randn_t({4}))});
  check_gradcheck("masked_fill",
                  [cond](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::masked_fill(in[0], cond, 3.0)}; },
                  {leaf(randn_t({3, 4}))});
}

TEST_CASE("gradcheck: matmul for every transpose, batched with broadcasting, strided") {
  for (Trans ta : {Trans::No, Trans::Yes}) {
    for (Trans tb : {Trans::No, Trans::Yes}) {
      INFO("ta=" << (ta == Trans::Yes) << " tb=" << (tb == Trans::Yes));
      Tensor a = randn_t(ta == Trans::Yes ? Shape{2, 4, 3} : Shape{2, 3, 4});
      Tensor b = randn_t(tb == Trans::Yes ? Shape{5, 4} : Shape{4, 5});
      check_gradcheck("matmul", [ta, tb](const std::vector<Tensor>& in) {
        return std::vector<Tensor>{ag::matmul(in[0], in[1], ta, tb)};
      }, {leaf(a), leaf(b)});
    }
  }
  Tensor a = randn_t({3, 1, 2, 4}), b = randn_t({2, 4, 3});
  check_gradcheck("matmul broadcast", [](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::matmul(in[0], in[1])}; },
                  {leaf(a), leaf(b)});
  Tensor at = randn_t({4, 3}).transpose(0, 1);
  check_gradcheck("matmul strided", [](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::matmul(in[0], in[1])}; },
                  {leaf(at), leaf(randn_t({4, 2}))});
}

TEST_CASE("gradcheck: views and casts") {
  Tensor x = randn_t({2, 3, 4});
  auto run = [&](const char* name, std::function<Tensor(const Tensor&)> f) {
    check_gradcheck(name, [f](const std::vector<Tensor>& in) { return std::vector<Tensor>{f(in[0])}; }, {leaf(x)});
  };
  run("reshape", [](const Tensor& t) { return ag::reshape(t, {4, 6}); });
  run("flatten", [](const Tensor& t) { return ag::flatten(t, 1); });
  run("transpose", [](const Tensor& t) { return ag::transpose(t, 0, 2); });
  run("permute", [](const Tensor& t) { return ag::permute(t, {2, 0, 1}); });
  run("expand", [](const Tensor& t) { return ag::expand(ag::unsqueeze(t, 0), {3, 2, 3, 4}); });
  run("slice", [](const Tensor& t) { return ag::slice(t, 2, 1, 4, 2); });
  run("narrow", [](const Tensor& t) { return ag::narrow(t, 1, 1, 2); });
  run("select", [](const Tensor& t) { return ag::select(t, 1, -1); });
  run("squeeze", [](const Tensor& t) { return ag::squeeze(ag::slice(t, 0, 0, 1), 0); });
  run("contiguous", [](const Tensor& t) { return ag::contiguous(ag::transpose(t, 1, 2)); });
  run("view", [](const Tensor& t) { return ag::view(t, {6, 4}); });
}

TEST_CASE("cast: the gradient is cast back to the input dtype") {
  // Finite differences through float32 would measure float32 rounding, so this checks the values directly.
  Tensor x = leaf(from_vector<double>({0.5, -1.25, 3.0}, {3}));
  Tensor y = ag::mul(ag::to(x, DType::Float32), from_vector<float>({2, 4, 8}, {3}));
  ag::backward(y, from_vector<float>({1, 1, 0.5}, {3}));
  CHECK(ag::grad(x).dtype() == DType::Float64);
  CHECK(ag::grad(x).to_vector<double>() == std::vector<double>{2, 4, 4});
}

TEST_CASE("gradcheck: empty and size-1 dims, expanded matmul operands") {
  auto bin = [](BinaryOp op) {
    return [op](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::binary(op, in[0], in[1])}; };
  };
  check_gradcheck("add empty", bin(BinaryOp::Add), {leaf(randn_t({0, 3})), leaf(randn_t({3}))});
  check_gradcheck("mul size-1", bin(BinaryOp::Mul), {leaf(randn_t({1, 1})), leaf(randn_t({4, 1}))});
  auto mm = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::matmul(in[0], in[1])}; };
  check_gradcheck("matmul K=0", mm, {leaf(randn_t({2, 0})), leaf(randn_t({0, 3}))});
  check_gradcheck("matmul M=0", mm, {leaf(randn_t({0, 4})), leaf(randn_t({4, 2}))});
  check_gradcheck("matmul 1x1", mm, {leaf(randn_t({1, 1})), leaf(randn_t({1, 1}))});
  check_gradcheck("matmul expanded row", [](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{ag::matmul(ag::expand(in[0], {4, 3}), in[1])};
  }, {leaf(randn_t({1, 3})), leaf(randn_t({3, 2}))});
  check_gradcheck("exp empty", [](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::exp(in[0])}; },
                  {leaf(randn_t({2, 0, 3}))});
}

TEST_CASE("backward with an expanded upstream gradient") {
  Tensor x = leaf(randn_t({3, 4})), w = leaf(randn_t({4, 2}));
  Tensor y = ag::matmul(x, w);
  ag::backward(y, ones({1, 2}, DType::Float64).expand({3, 2}));
  // dx = 1·wᵀ for every row: each row of dx is the row sums of w.
  std::vector<double> wv = w.to_vector<double>(), gx = ag::grad(x).to_vector<double>();
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t k = 0; k < 4; ++k) CHECK(gx[i * 4 + k] == doctest::Approx(wv[k * 2] + wv[k * 2 + 1]));
}

TEST_CASE("gradcheck: linear with and without bias, leading dims and strided x") {
  check_gradcheck("linear", [](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::linear(in[0], in[1], in[2])}; },
                  {leaf(randn_t({2, 3, 5})), leaf(randn_t({4, 5})), leaf(randn_t({4}))});
  check_gradcheck("linear no bias", [](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::linear(in[0], in[1])}; },
                  {leaf(randn_t({5, 3}).transpose(0, 1)), leaf(randn_t({2, 5}))});
}
