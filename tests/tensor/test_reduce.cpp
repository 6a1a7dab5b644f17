// Reductions and scans: forward against plain float64 loops (sum, mean, norm, max/min/argmax, softmax family,
// cumsum, topk) over dtypes, dim sets, keepdim, negative dims, strided views, empty dims, and the error messages.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>

#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

namespace {

// The elements of x split into the groups a reduction over `dims` (empty = all) combines: members[o] holds the
// row-major flat indices of x that land in output element o, in increasing order. Index arithmetic by hand.
struct Groups {
  Shape out_shape;
  std::vector<std::vector<int64_t>> members;
  std::vector<double> xv;  // x's values, row-major, as float64
};

Groups group_by(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const int64_t nd = x.dim();
  std::vector<bool> red(nd, dims.empty());
  for (int64_t d : dims) red[d < 0 ? d + nd : d] = true;
  Groups g;
  Shape kept;  // sizes of the kept dims, in order
  for (int64_t d = 0; d < nd; ++d) {
    if (!red[d]) {
      g.out_shape.push_back(x.size(d));
      kept.push_back(x.size(d));
    } else if (keepdim) {
      g.out_shape.push_back(1);
    }
  }
  int64_t n_out = 1;
  for (int64_t s : kept) n_out *= s;
  g.members.resize(n_out);
  g.xv = x.to_vector<double>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    // Decompose i into a multi-index (last dim fastest), then rebuild the output flat index from the kept dims.
    std::vector<int64_t> idx(nd);
    int64_t rem = i;
    for (int64_t d = nd - 1; d >= 0; --d) {
      idx[d] = rem % x.size(d);
      rem /= x.size(d);
    }
    int64_t o = 0;
    for (int64_t d = 0; d < nd; ++d)
      if (!red[d]) o = o * x.size(d) + idx[d];
    g.members[o].push_back(i);
  }
  return g;
}

// A reduction reference: out[o] = f(values of group o).
Tensor ref_reduce(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim,
                  const std::function<double(const std::vector<double>&)>& f) {
  Groups g = group_by(x, dims, keepdim);
  std::vector<double> out;
  for (const auto& m : g.members) {
    std::vector<double> v;
    for (int64_t i : m) v.push_back(g.xv[i]);
    out.push_back(f(v));
  }
  return from_vector(out, g.out_shape);
}

// A line reference along one dim: each line's values (in dim order) mapped to as many outputs, same shape as x.
using LineFn = std::function<std::vector<double>(const std::vector<double>&)>;
Tensor ref_along(const Tensor& x, int64_t dim, const LineFn& f) {
  Groups g = group_by(x, {dim}, false);
  std::vector<double> out(g.xv.size());
  for (const auto& m : g.members) {
    std::vector<double> v;
    for (int64_t i : m) v.push_back(g.xv[i]);
    std::vector<double> r = f(v);
    for (std::size_t j = 0; j < m.size(); ++j) out[m[j]] = r[j];
  }
  return from_vector(out, x.shape());
}

double ref_sum(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); }
double ref_mean(const std::vector<double>& v) { return ref_sum(v) / static_cast<double>(v.size()); }
double ref_norm1(const std::vector<double>& v) {
  double s = 0;
  for (double a : v) s += std::abs(a);
  return s;
}
double ref_norm2(const std::vector<double>& v) {
  double s = 0;
  for (double a : v) s += a * a;
  return std::sqrt(s);
}
double ref_lse(const std::vector<double>& v) {
  double m = *std::max_element(v.begin(), v.end()), s = 0;
  for (double a : v) s += std::exp(a - m);
  return m + std::log(s);
}
std::vector<double> ref_softmax(const std::vector<double>& v) {
  double l = ref_lse(v);
  std::vector<double> r;
  for (double a : v) r.push_back(std::exp(a - l));
  return r;
}
std::vector<double> ref_log_softmax(const std::vector<double>& v) {
  double l = ref_lse(v);
  std::vector<double> r;
  for (double a : v) r.push_back(a - l);
  return r;
}
std::vector<double> ref_cumsum(const std::vector<double>& v) {
  std::vector<double> r;
  double s = 0;
  for (double a : v) r.push_back(s += a);
  return r;
}
// Position of the first max (or min) in v.
double ref_argext(const std::vector<double>& v, bool want_max) {
  std::size_t b = 0;
  for (std::size_t i = 1; i < v.size(); ++i)
    if (want_max ? v[i] > v[b] : v[i] < v[b]) b = i;
  return static_cast<double>(b);
}

const DType kFloatTypes[] = {DType::Float64, DType::Float32, DType::BFloat16};

// Inputs of logical shape [7, 5, 3] in three layouts: contiguous, a permuted view and a strided slice view.
std::vector<std::pair<std::string, Tensor>> inputs_753(DType dt) {
  return {{"contiguous", randn_t({7, 5, 3}, dt)},
          {"permuted view", randn_t({3, 5, 7}, dt).permute({2, 1, 0})},
          {"sliced view", randn_t({14, 5, 4}, dt).slice(0, 0, 14, 2).slice(2, 1, 4)}};
}

const std::vector<std::vector<int64_t>> kDimSets = {{}, {0}, {1}, {-1}, {0, 2}, {-3, -2}, {0, 1, 2}};

}  // namespace

TEST_CASE("sum and mean over dim sets match float64 loops, every dtype and layout") {
  for (DType dt : kFloatTypes)
    for (auto& [layout, x] : inputs_753(dt))
      for (const auto& dims : kDimSets)
        for (bool keepdim : {false, true}) {
          INFO(dtype_name(dt) << " " << layout << " dims " << shape_str(dims) << " keepdim " << keepdim);
          check_close(sum(x, dims, keepdim), ref_reduce(x, dims, keepdim, ref_sum), "sum");
          check_close(mean(x, dims, keepdim), ref_reduce(x, dims, keepdim, ref_mean), "mean");
        }
  Tensor x = randn_t({4, 6}, DType::Float32);
  CHECK(sum(x).dim() == 0);
  CHECK(mean(x).dim() == 0);
  check_close(sum(x), ref_reduce(x, {}, false, ref_sum), "global sum");
  check_close(mean(x), ref_reduce(x, {}, false, ref_mean), "global mean");
}

TEST_CASE("sum over an empty dim is zero, size-1 dims, 0-d inputs and integer sums are exact") {
  Tensor e = zeros({3, 0, 2}, DType::Float32);
  Tensor s = sum(e, {1});
  CHECK(s.shape() == Shape{3, 2});
  CHECK(s.to_vector<double>() == std::vector<double>(6, 0.0));
  CHECK(sum(e).item() == 0.0);
  CHECK(sum(e, {0}).shape() == Shape{0, 2});
  CHECK(std::isnan(mean(e).item()));

  Tensor one = randn_t({1, 5, 1});
  check_close(sum(one, {0, 2}), ref_reduce(one, {0, 2}, false, ref_sum));
  check_close(mean(one, {-1}, true), ref_reduce(one, {-1}, true, ref_mean));

  Tensor sc = scalar_tensor(2.5, DType::Float64);
  CHECK(sum(sc).item() == 2.5);
  CHECK(sum(sc, {0}).dim() == 0);

  Tensor xi = from_vector<int64_t>({1, -2, 3, 4000000000LL, 5, 6}, {2, 3});
  CHECK(sum(xi, {1}).to_vector<int64_t>() == std::vector<int64_t>{2, 4000000011LL});
  CHECK(sum(xi).item() == 4000000013.0);
  Tensor x32 = from_vector<int32_t>({1, 2, 3, 4}, {2, 2});
  CHECK(sum(x32, {0}).to_vector<int32_t>() == std::vector<int32_t>{4, 6});
  CHECK(sum(x32, {0}).dtype() == DType::Int32);

  // bfloat16 results are rounded once from float64: 1 + 2^-8 + 2^-30 rounds up to 1 + 2^-7. (Going through
  // float32 first would land exactly on the tie 1 + 2^-8 and round to even, giving 1.)
  Tensor xb = from_vector<double>({1.0, std::ldexp(1.0, -8), std::ldexp(1.0, -30)}, {3}, DType::BFloat16);
  CHECK(sum(xb).item() == 1.0 + std::ldexp(1.0, -7));
  CHECK(cumsum(xb, 0).to_vector<double>()[2] == 1.0 + std::ldexp(1.0, -7));
}

TEST_CASE("norm p=1 and p=2 over dim sets match float64 loops") {
  for (DType dt : kFloatTypes)
    for (auto& [layout, x] : inputs_753(dt))
      for (const auto& dims : kDimSets)
        for (bool keepdim : {false, true}) {
          INFO(dtype_name(dt) << " " << layout << " dims " << shape_str(dims) << " keepdim " << keepdim);
          check_close(norm(x, 2.0, dims, keepdim), ref_reduce(x, dims, keepdim, ref_norm2), "norm2");
          check_close(norm(x, 1.0, dims, keepdim), ref_reduce(x, dims, keepdim, ref_norm1), "norm1");
        }
  Tensor x = randn_t({6, 5});
  check_close(norm(x), ref_reduce(x, {}, false, ref_norm2), "global norm2");
  check_close(norm(x, 1.0), ref_reduce(x, {}, false, ref_norm1), "global norm1");
  CHECK(norm(zeros({0, 3}, DType::Float64), 2.0, {0}).to_vector<double>() == std::vector<double>(3, 0.0));
}

TEST_CASE("max, min, argmax and argmin along a dim match float64 loops") {
  for (DType dt : kFloatTypes)
    for (auto& [layout, x] : inputs_753(dt))
      for (int64_t dim : {0, 1, 2, -1, -3})
        for (bool keepdim : {false, true}) {
          INFO(dtype_name(dt) << " " << layout << " dim " << dim << " keepdim " << keepdim);
          auto vmax = [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); };
          auto vmin = [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); };
          ValuesIndices mx = max(x, dim, keepdim), mn = min(x, dim, keepdim);
          check_close(mx.values, ref_reduce(x, {dim}, keepdim, vmax), "max values");
          check_close(mn.values, ref_reduce(x, {dim}, keepdim, vmin), "min values");
          CHECK(mx.values.dtype() == dt);
          CHECK(mx.indices.dtype() == DType::Int64);
          auto amax = [](const std::vector<double>& v) { return ref_argext(v, true); };
          auto amin = [](const std::vector<double>& v) { return ref_argext(v, false); };
          Tensor rmax = ref_reduce(x, {dim}, keepdim, amax), rmin = ref_reduce(x, {dim}, keepdim, amin);
          CHECK(mx.indices.to_vector<double>() == rmax.to_vector<double>());
          CHECK(mn.indices.to_vector<double>() == rmin.to_vector<double>());
          CHECK(argmax(x, dim, keepdim).to_vector<double>() == rmax.to_vector<double>());
          CHECK(argmin(x, dim, keepdim).to_vector<double>() == rmin.to_vector<double>());
          CHECK(argmax(x, dim, keepdim).shape() == rmax.shape());
        }
}

TEST_CASE("max and argmax pick the first index on ties, integers, global forms") {
  Tensor xi = from_vector<int64_t>({3, 7, 7, 1, 2, 2, 9, 2, 5, 5, 5, 5}, {3, 4});
  ValuesIndices r = max(xi, 1);
  CHECK(r.values.to_vector<int64_t>() == std::vector<int64_t>{7, 9, 5});
  CHECK(r.indices.to_vector<int64_t>() == std::vector<int64_t>{1, 2, 0});
  CHECK(min(xi, 1).indices.to_vector<int64_t>() == std::vector<int64_t>{3, 0, 0});
  CHECK(argmax(xi, 0).to_vector<int64_t>() == std::vector<int64_t>{2, 0, 1, 2});
  CHECK(argmax(xi).item() == 6.0);
  CHECK(argmax(xi).dim() == 0);
  CHECK(max(xi).item() == 9.0);
  CHECK(min(xi).item() == 1.0);
  CHECK(argmin(xi).item() == 3.0);

  // Global argmax is a flat row-major index of the logical (viewed) tensor.
  Tensor x = randn_t({5, 6});
  Tensor xt = x.transpose(0, 1);
  std::vector<double> v = xt.to_vector<double>();
  CHECK(argmax(xt).item() == ref_argext(v, true));
  CHECK(max(xt).item() == *std::max_element(v.begin(), v.end()));

  // NaN wins max (the first NaN).
  Tensor xn = from_vector<double>({1.0, NAN, 3.0, NAN}, {4});
  CHECK(argmax(xn).item() == 1.0);
  CHECK(std::isnan(max(xn).item()));

  // Size-1 dims and 0-d inputs.
  Tensor s1 = randn_t({4, 1});
  CHECK(max(s1, 1).indices.to_vector<int64_t>() == std::vector<int64_t>(4, 0));
  Tensor sc = scalar_tensor(-1.5, DType::Float32);
  CHECK(max(sc, 0).values.item() == -1.5);
  CHECK(max(sc, -1, true).values.dim() == 0);
}

TEST_CASE("softmax, log_softmax and logsumexp match float64 loops along any dim") {
  for (DType dt : kFloatTypes)
    for (auto& [layout, x] : inputs_753(dt))
      for (int64_t dim : {0, 1, 2, -1, -2}) {
        INFO(dtype_name(dt) << " " << layout << " dim " << dim);
        check_close(softmax(x, dim), ref_along(x, dim, ref_softmax), "softmax");
        check_close(log_softmax(x, dim), ref_along(x, dim, ref_log_softmax), "log_softmax");
        for (bool keepdim : {false, true})
          check_close(logsumexp(x, dim, keepdim), ref_reduce(x, {dim}, keepdim, ref_lse), "logsumexp");
      }
  Tensor x = randn_t({3, 4});
  check_close(softmax(x), ref_along(x, -1, ref_softmax), "default dim");
  // Empty dim: logsumexp is -inf; size-1 dim: softmax is 1, log_softmax 0.
  Tensor e = zeros({2, 0}, DType::Float64);
  std::vector<double> lse = logsumexp(e, 1).to_vector<double>();
  CHECK(lse.size() == 2);
  CHECK((std::isinf(lse[0]) && lse[0] < 0));
  CHECK(softmax(e, 1).shape() == Shape{2, 0});
  Tensor s1 = randn_t({3, 1});
  CHECK(softmax(s1, 1).to_vector<double>() == std::vector<double>(3, 1.0));
  CHECK(log_softmax(s1, 1).to_vector<double>() == std::vector<double>(3, 0.0));
  // A row of all -inf: logsumexp -inf (no NaN).
  Tensor ninf = full({2, 3}, -std::numeric_limits<double>::infinity(), DType::Float64);
  CHECK(std::isinf(logsumexp(ninf, 1).to_vector<double>()[0]));
}

TEST_CASE("softmax family is stable on a long last dim with inputs of magnitude 1e3") {
  for (DType dt : kFloatTypes) {
    INFO(dtype_name(dt));
    Tensor x = mul(randn_t({4, 1000}), 1000.0).to(dt);  // exp(x) alone would overflow
    Tensor y = softmax(x), ly = log_softmax(x), l = logsumexp(x, -1);
    for (double v : y.to_vector<double>()) REQUIRE(std::isfinite(v));
    for (double v : ly.to_vector<double>()) REQUIRE(!std::isnan(v));
    for (double v : l.to_vector<double>()) REQUIRE(std::isfinite(v));
    check_close(y, ref_along(x, -1, ref_softmax), "softmax");
    check_close(l, ref_reduce(x, {-1}, false, ref_lse), "logsumexp");
    // log_softmax is compared where it is finite in float64 (every entry: the shift keeps it so).
    check_close(ly, ref_along(x, -1, ref_log_softmax), "log_softmax");
    check_close(sum(y.to(DType::Float64), {1}), ones({4}, DType::Float64), kTolBF16, "rows sum to 1");
  }
}

TEST_CASE("cumsum along any dim matches float64 loops, integers are exact") {
  for (DType dt : kFloatTypes)
    for (auto& [layout, x] : inputs_753(dt))
      for (int64_t dim : {0, 1, 2, -1, -3}) {
        INFO(dtype_name(dt) << " " << layout << " dim " << dim);
        check_close(cumsum(x, dim), ref_along(x, dim, ref_cumsum));
      }
  Tensor xi = from_vector<int32_t>({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(cumsum(xi, 1).to_vector<int32_t>() == std::vector<int32_t>{1, 3, 6, 4, 9, 15});
  CHECK(cumsum(xi, 0).to_vector<int32_t>() == std::vector<int32_t>{1, 2, 3, 5, 7, 9});
  CHECK(cumsum(zeros({3, 0}), 1).shape() == Shape{3, 0});
  Tensor g = from_vector<double>({1, 2, 3, 4}, {4});
  CHECK(cumsum_backward(g, 0).to_vector<double>() == std::vector<double>{10, 9, 7, 4});
}

TEST_CASE("topk along the last dim: sorted, ties to the lower index, largest and smallest") {
  for (DType dt : kFloatTypes)
    for (auto& [layout, x] : inputs_753(dt))
      for (int64_t k : {0, 1, 2, 3})
        for (bool largest : {true, false}) {
          INFO(dtype_name(dt) << " " << layout << " k " << k << " largest " << largest);
          ValuesIndices r = topk(x, k, largest);
          Shape want = x.shape();
          want.back() = k;
          REQUIRE(r.values.shape() == want);
          REQUIRE(r.indices.shape() == want);
          // Reference: a stable sort of each row's positions by value.
          Groups g = group_by(x, {-1}, false);
          std::vector<double> rv, ri;
          for (const auto& m : g.members) {
            std::vector<int64_t> pos(m.size());
            std::iota(pos.begin(), pos.end(), 0);
            std::stable_sort(pos.begin(), pos.end(), [&](int64_t a, int64_t b) {
              return largest ? g.xv[m[a]] > g.xv[m[b]] : g.xv[m[a]] < g.xv[m[b]];
            });
            for (int64_t j = 0; j < k; ++j) {
              rv.push_back(g.xv[m[pos[j]]]);
              ri.push_back(static_cast<double>(pos[j]));
            }
          }
          if (k > 0) check_close(r.values, from_vector(rv, want));
          CHECK(r.indices.to_vector<double>() == ri);
        }
  Tensor xi = from_vector<int64_t>({4, 1, 4, 2, 1, 4}, {1, 6});
  ValuesIndices r = topk(xi, 4);
  CHECK(r.values.to_vector<int64_t>() == std::vector<int64_t>{4, 4, 4, 2});
  CHECK(r.indices.to_vector<int64_t>() == std::vector<int64_t>{0, 2, 5, 3});
  ValuesIndices s = topk(xi, 3, false);
  CHECK(s.values.to_vector<int64_t>() == std::vector<int64_t>{1, 1, 2});
  CHECK(s.indices.to_vector<int64_t>() == std::vector<int64_t>{1, 4, 3});
  // Full sort of a longer row, and k = size.
  Tensor x = randn_t({2, 257}, DType::Float32);
  ValuesIndices f = topk(x, 257);
  std::vector<float> fv = f.values.to_vector<float>();
  CHECK(std::is_sorted(fv.begin(), fv.begin() + 257, std::greater<float>()));
  CHECK(std::is_sorted(fv.begin() + 257, fv.end(), std::greater<float>()));
  // Backward helper scatters to the indices.
  Tensor gb = topk_backward(ones({1, 4}, DType::Float64), r.indices, {1, 6});
  CHECK(gb.to_vector<double>() == std::vector<double>{1, 0, 1, 1, 0, 1});
}

TEST_CASE("reduce errors name the op and the offending shape or value") {
  Tensor x = randn_t({3, 4}, DType::Float32);
  check_throws_with([&] { sum(x, {2}); }, {"sum", "dim 2", "[3, 4]"});
  check_throws_with([&] { sum(x, {1, -1}); }, {"sum", "twice"});
  check_throws_with([&] { mean(x, {-3}); }, {"mean", "[3, 4]"});
  check_throws_with([&] { max(x, 5); }, {"max", "dim 5", "[3, 4]"});
  check_throws_with([&] { argmax(x, -3); }, {"argmax", "[3, 4]"});
  check_throws_with([&] { softmax(x, 2); }, {"softmax", "[3, 4]"});
  check_throws_with([&] { log_softmax(x, -4); }, {"log_softmax", "[3, 4]"});
  check_throws_with([&] { logsumexp(x, 3); }, {"logsumexp", "[3, 4]"});
  check_throws_with([&] { cumsum(x, 2); }, {"cumsum", "[3, 4]"});
  check_throws_with([&] { topk(x, 5); }, {"topk", "k = 5", "size 4"});
  check_throws_with([&] { topk(x, -1); }, {"topk", "k = -1"});
  check_throws_with([&] { topk(scalar_tensor(1.0), 1); }, {"topk", "at least one dim"});
  check_throws_with([&] { norm(x, 3.0); }, {"norm", "p = 3", "supported"});
  check_throws_with([&] { max(zeros({2, 0}), 1); }, {"max", "size 0", "[2, 0]"});
  check_throws_with([&] { max(zeros({0})); }, {"max", "empty", "[0]"});
  Tensor xi = from_vector<int64_t>({1, 2}, {2});
  check_throws_with([&] { mean(xi); }, {"mean", "int64"});
  check_throws_with([&] { softmax(xi); }, {"softmax", "int64"});
  check_throws_with([&] { norm(xi); }, {"norm", "int64"});
  check_throws_with([&] { sum(compare(CompareOp::Gt, x, x)); }, {"sum", "bool"});
  check_throws_with([&] { max(compare(CompareOp::Gt, x, x), 0); }, {"max", "bool"});
}
