// Elementwise ops: forward against plain float64 loops, broadcasting, strided inputs, dtypes and errors.
#include <fmt/ranges.h>

#include <cmath>

#include <omp.h>

#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

namespace {

double ref_unary(UnaryOp op, double x) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return std::exp(x);
    case UnaryOp::Log: return std::log(x);
    case UnaryOp::Sqrt: return std::sqrt(x);
    case UnaryOp::Rsqrt: return 1.0 / std::sqrt(x);
    case UnaryOp::Sigmoid: return 1.0 / (1.0 + std::exp(-x));
    case UnaryOp::Silu: return x / (1.0 + std::exp(-x));
    case UnaryOp::Tanh: return std::tanh(x);
    case UnaryOp::Relu: return x > 0 ? x : 0.0;
    case UnaryOp::Abs: return std::abs(x);
    case UnaryOp::Square: return x * x;
    case UnaryOp::Reciprocal: return 1.0 / x;
    case UnaryOp::Sin: return std::sin(x);
    case UnaryOp::Cos: return std::cos(x);
  }
  return NAN;
}

double ref_binary(BinaryOp op, double a, double b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
    case BinaryOp::Pow: return std::pow(a, b);
    case BinaryOp::Maximum: return std::max(a, b);
    case BinaryOp::Minimum: return std::min(a, b);
  }
  return NAN;
}

// Plain-loop float64 reference of a broadcast binary op: index arithmetic written out by hand.
Tensor ref_binary_tensor(BinaryOp op, const Tensor& a, const Tensor& b) {
  Shape s = broadcast_shapes(a.shape(), b.shape(), "ref");
  std::vector<double> va = a.contiguous().to_vector<double>(), vb = b.contiguous().to_vector<double>();
  std::vector<double> out(shape_numel(s));
  const int64_t nd = static_cast<int64_t>(s.size());
  Shape sa_str = contiguous_strides(a.shape()), sb_str = contiguous_strides(b.shape());
  for (int64_t i = 0; i < static_cast<int64_t>(out.size()); ++i) {
    int64_t rem = i, ia = 0, ib = 0;
    for (int64_t d = nd - 1; d >= 0; --d) {
      int64_t idx = rem % s[d];
      rem /= s[d];
      int64_t da = d - (nd - a.dim()), db = d - (nd - b.dim());
      if (da >= 0 && a.size(da) != 1) ia += idx * sa_str[da];
      if (db >= 0 && b.size(db) != 1) ib += idx * sb_str[db];
    }
    out[i] = ref_binary(op, va[ia], vb[ib]);
  }
  return from_vector(out, s);
}

const UnaryOp kUnary[] = {UnaryOp::Neg,  UnaryOp::Exp,    UnaryOp::Log,  UnaryOp::Sqrt,       UnaryOp::Rsqrt,
                          UnaryOp::Sigmoid, UnaryOp::Silu, UnaryOp::Tanh, UnaryOp::Relu,      UnaryOp::Abs,
                          UnaryOp::Square, UnaryOp::Reciprocal, UnaryOp::Sin, UnaryOp::Cos};
const BinaryOp kBinary[] = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div,
                            BinaryOp::Pow, BinaryOp::Maximum, BinaryOp::Minimum};

bool positive_domain(UnaryOp op) {
  return op == UnaryOp::Log || op == UnaryOp::Sqrt || op == UnaryOp::Rsqrt || op == UnaryOp::Reciprocal;
}

}  // namespace

TEST_CASE("unary ops match float64 loops for every floating dtype, contiguous and strided") {
  for (UnaryOp op : kUnary) {
    for (DType dt : {DType::Float64, DType::Float32, DType::BFloat16}) {
      INFO(unary_op_name(op) << " " << dtype_name(dt));
      // Inputs away from kinks (relu/abs at 0) and inside the domain of log/sqrt.
      Tensor x = positive_domain(op) ? rand_t({7, 13}, 0.2, 3.0, dt) : rand_t({7, 13}, 0.1, 2.0, dt);
      Tensor sign = where(compare(CompareOp::Gt, rand_t({7, 13}, 0, 1), scalar_tensor(0.5, DType::Float64)),
                          ones({7, 13}, DType::Float64), full({7, 13}, -1.0, DType::Float64));
      if (!positive_domain(op)) x = mul(x, sign.to(dt));
      std::vector<double> xv = x.to_vector<double>(), rv;
      for (double v : xv) rv.push_back(ref_unary(op, v));
      Tensor r = from_vector(rv, x.shape());
      check_close(unary(op, x), r, "contiguous");
      Tensor xt = x.transpose(0, 1);  // strided view
      check_close(unary(op, xt), r.transpose(0, 1).contiguous(), "transposed view");
    }
  }
}

TEST_CASE("binary ops broadcast like NumPy and match float64 loops") {
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{5, 7}, {5, 7}}, {{5, 7}, {7}}, {{5, 1}, {1, 7}}, {{3, 1, 4}, {5, 1}}, {{}, {2, 3}}, {{1}, {1}}, {{0, 3}, {3}}};
  for (BinaryOp op : kBinary) {
    for (DType dt : {DType::Float64, DType::Float32, DType::BFloat16}) {
      for (auto& [sa, sb] : shapes) {
        INFO(binary_op_name(op) << " " << dtype_name(dt) << " " << shape_str(sa) << " x " << shape_str(sb));
        Tensor a = rand_t(sa, 0.5, 2.0, dt), b = rand_t(sb, -1.5, 1.5, dt);
        check_close(binary(op, a, b), ref_binary_tensor(op, a, b));
      }
    }
  }
}

TEST_CASE("integer elementwise ops are exact") {
  Tensor a = from_vector<int64_t>({1, -2, 3, 40}, {2, 2});
  Tensor b = from_vector<int64_t>({5, 6, -7, 8}, {2, 2});
  CHECK(add(a, b).to_vector<int64_t>() == std::vector<int64_t>{6, 4, -4, 48});
  CHECK(mul(a, b).to_vector<int64_t>() == std::vector<int64_t>{5, -12, -21, 320});
  CHECK(abs(a).to_vector<int64_t>() == std::vector<int64_t>{1, 2, 3, 40});
  INFO(compare(CompareOp::Lt, a, b).str() << " " << fmt::format("{}", fmt::join(compare(CompareOp::Lt, a, b).to_vector<int64_t>(), ",")));
  CHECK(compare(CompareOp::Lt, a, b).to_vector<int64_t>() == std::vector<int64_t>{1, 1, 0, 0});
  check_throws_with([&] { exp(a); }, {"exp", "int64"});
}

TEST_CASE("where, masked_fill and clamp") {
  Tensor x = rand_t({4, 6}, -2, 2);
  Tensor m = compare(CompareOp::Gt, x, scalar_tensor(0.0, DType::Float64));
  std::vector<double> xv = x.to_vector<double>(), w, mf, cl;
  for (double v : xv) {
    w.push_back(v > 0 ? v : -1.0);
    mf.push_back(v > 0 ? 7.0 : v);
    cl.push_back(std::min(std::max(v, -0.5), 0.75));
  }
  check_close(where(m, x, full({1}, -1.0, DType::Float64)), from_vector(w, {4, 6}));
  check_close(masked_fill(x, m, 7.0), from_vector(mf, {4, 6}));
  check_close(clamp(x, -0.5, 0.75), from_vector(cl, {4, 6}));
  check_throws_with([&] { where(x, x, x); }, {"where", "cond", "bool"});
}

TEST_CASE("in-place ops update the destination, broadcasting the source") {
  Tensor d = zeros({3, 4}, DType::Float32);
  Tensor s = from_vector<float>({1, 2, 3, 4}, {4});
  add_(d, s);
  add_(d, s, 2.0);
  CHECK(d.select(0, 2).to_vector<float>() == std::vector<float>{3, 6, 9, 12});
  mul_(d, 0.5);
  CHECK(d.select(0, 1).to_vector<float>() == std::vector<float>{1.5, 3, 4.5, 6});
  Tensor e = zeros({4}, DType::Float32);
  check_throws_with([&] { add_(e, zeros({3, 4}, DType::Float32)); }, {"add_", "[3, 4]", "[4]"});
}

TEST_CASE("elementwise errors name the op and both shapes/dtypes") {
  Tensor a = zeros({2, 3}), b = zeros({4, 3});
  check_throws_with([&] { add(a, b); }, {"add", "[2, 3]", "[4, 3]", "broadcast"});
  check_throws_with([&] { mul(a, zeros({2, 3}, DType::Float64)); }, {"mul", "float32", "float64"});
  check_throws_with([&] { sub(a, Tensor()); }, {"sub", "undefined"});
}

TEST_CASE("elementwise results do not depend on the thread count") {
  Tensor a = randn_t({300, 257}, DType::Float32), b = randn_t({257}, DType::Float32);
  const int keep = omp_get_max_threads();
  omp_set_num_threads(1);
  std::vector<float> one = silu(add(a, b)).to_vector<float>();
  omp_set_num_threads(std::max(2, keep));
  std::vector<float> many = silu(add(a, b)).to_vector<float>();
  omp_set_num_threads(keep);
  CHECK(one == many);
}
