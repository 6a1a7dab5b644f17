// gpu-labelled: the reduction family on CUDA (sum, mean, norm, max/min/argmax/argmin, softmax, log_softmax,
// logsumexp, cumsum, topk and the raw backward helpers) against the CPU ops run on the float64 upcast of the same
// inputs (the CPU ops are checked against plain loops in test_reduce.cpp). Odd sizes, long rows and long reduced
// dims (which take the chunked / transposed paths), first / middle / last dims, keepdim both ways, strided inputs,
// ties and NaN; then the differentiable ag:: versions' gradients against CPU float64. Outputs are poisoned by the
// allocator (see gpu_available), so an unwritten element is NaN and fails.
#include <cmath>
#include <functional>
#include <limits>

#include "autograd/functions/reduce.h"
#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

namespace {
const Device kGpu("cuda:0");
const DType kFloatTypes[] = {DType::Float32, DType::BFloat16, DType::Float64};

// f on the CUDA tensor, brought back, against f on the float64 CPU upcast.
void check_vs_cpu(const std::function<Tensor(const Tensor&)>& f, const Tensor& x_gpu, const std::string& what) {
  const Tensor y = f(x_gpu);
  CHECK(y.device().is_cuda());
  check_close(y.to(kCPU), f(host64(x_gpu)), tolerance_for(x_gpu.dtype()), what);
}

// Values and indices of a ValuesIndices op: indices must match exactly; values within tolerance (exact in
// practice: they are copies of input elements).
void check_vi_vs_cpu(const std::function<ValuesIndices(const Tensor&)>& f, const Tensor& x_gpu,
                     const std::string& what) {
  const ValuesIndices r = f(x_gpu), ref = f(host64(x_gpu));
  INFO(what);
  REQUIRE(r.indices.shape() == ref.indices.shape());
  CHECK(r.indices.dtype() == DType::Int64);
  CHECK(r.indices.to(kCPU).to_vector<int64_t>() == ref.indices.to_vector<int64_t>());
  if (r.values.numel() > 0) check_close(r.values.to(kCPU), ref.values, tolerance_for(x_gpu.dtype()), what);
  CHECK(r.values.shape() == ref.values.shape());
}

// Small non-negative integers (many ties), as dtype dt, on the GPU.
Tensor ties_gpu(const Shape& s, DType dt, int64_t range = 4) {
  return rand_t(s, 0.0, static_cast<double>(range), DType::Float64).to(DType::Int64).to(dt).to(kGpu);
}

std::string dims_str(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (int64_t d : dims) s += std::to_string(d) + " ";
  return s + "]";
}
}  // namespace

TEST_SUITE("gpu") {  // built into test_tensor_gpu (tests/CMakeLists.txt), ctest label gpu
  TEST_CASE("cuda sum mean and norm over first middle last and all dims with keepdim both ways") {
    if (!gpu_available()) return;
    const std::vector<std::vector<int64_t>> dim_sets = {{0}, {1}, {2}, {-1}, {0, 2}, {1, 2}, {}};
    for (DType dt : kFloatTypes) {
      // Mean 1, not 0: the relative error of a sum is bounded by eps · Σ|x| / |Σx|, so zero-mean inputs make the
      // full reduction (one output, |Σx| ~ √3855 with a fair chance of landing near 0) fail a relative tolerance
      // for reasons that are not errors. A float32 run hit this once (|Σx| small, 1e-5 relative).
      const Tensor x = add(randn_t({3, 257, 5}), 1.0).to(dt).to(kGpu);
      const Tensor xt = x.transpose(0, 2);  // (5, 257, 3), strided
      for (const Tensor& in : {x, xt}) {
        for (const auto& dims : dim_sets) {
          for (bool keep : {false, true}) {
            const std::string what = std::string(dtype_name(dt)) + " " + shape_str(in.shape()) +
                                     (in.is_contiguous() ? "" : " strided") + " dims " + dims_str(dims) +
                                     " keepdim " + std::to_string(keep);
            check_vs_cpu([&](const Tensor& t) { return sum(t, dims, keep); }, in, "sum " + what);
            check_vs_cpu([&](const Tensor& t) { return mean(t, dims, keep); }, in, "mean " + what);
            check_vs_cpu([&](const Tensor& t) { return norm(t, 1.0, dims, keep); }, in, "norm1 " + what);
            check_vs_cpu([&](const Tensor& t) { return norm(t, 2.0, dims, keep); }, in, "norm2 " + what);
          }
        }
      }
      // One element, a 0-d tensor, size-1 dims.
      const Tensor one = randn_t({1}, dt).to(kGpu), zero_d = randn_t({}, dt).to(kGpu);
      check_vs_cpu([](const Tensor& t) { return sum(t); }, one, "sum of one element");
      check_vs_cpu([](const Tensor& t) { return mean(t, {0}, true); }, one, "mean of one element");
      check_vs_cpu([](const Tensor& t) { return sum(t); }, zero_d, "sum of a 0-d tensor");
      check_vs_cpu([](const Tensor& t) { return norm(t); }, zero_d, "norm of a 0-d tensor");
      check_vs_cpu([](const Tensor& t) { return sum(t, {1}); }, randn_t({7, 1, 3}, dt).to(kGpu), "size-1 dim");
    }
  }

  TEST_CASE("cuda sum mean and norm over long rows and long reduced dims") {
    if (!gpu_available()) return;
    for (DType dt : kFloatTypes) {
      const std::string d(dtype_name(dt));
      // One long row: the chunked two-pass path. Mean 1 for a well-conditioned sum (see the case above).
      const Tensor v = add(randn_t({65537}), 1.0).to(dt).to(kGpu);
      check_vs_cpu([](const Tensor& t) { return sum(t); }, v, d + " sum 65537");
      check_vs_cpu([](const Tensor& t) { return mean(t); }, v, d + " mean 65537");
      check_vs_cpu([](const Tensor& t) { return norm(t, 2.0); }, v, d + " norm2 65537");
      check_vs_cpu([](const Tensor& t) { return norm(t, 1.0); }, v, d + " norm1 65537");
      const Tensor rows = add(randn_t({3, 100003}), 1.0).to(dt).to(kGpu);
      check_vs_cpu([](const Tensor& t) { return sum(t, {1}); }, rows, d + " sum 3 long rows");
      check_vs_cpu([](const Tensor& t) { return mean(t, {1}, true); }, rows, d + " mean 3 long rows");
      const Tensor tall = randn_t({65537, 3}, dt).to(kGpu);  // a long reduction over the first dim
      check_vs_cpu([](const Tensor& t) { return sum(t, {0}); }, tall, d + " sum over dim 0 of 65537");
      check_vs_cpu([](const Tensor& t) { return norm(t, 2.0, {0}, true); }, tall, d + " norm over dim 0 of 65537");
      const Tensor wide = randn_t({300, 32000}, dt).to(kGpu);  // many long rows: one block per row
      check_vs_cpu([](const Tensor& t) { return sum(t, {1}); }, wide, d + " sum 300x32000");
      check_vs_cpu([](const Tensor& t) { return mean(t, {0}); }, wide, d + " mean over dim 0 of 300x32000");
    }
  }

  TEST_CASE("cuda integer sums are exact and empty reductions give zero or NaN") {
    if (!gpu_available()) return;
    for (DType dt : {DType::Int32, DType::Int64}) {
      const Tensor x = rand_t({5, 70001}, -1000.0, 1000.0, DType::Float64).to(dt).to(kGpu);
      const Tensor s = sum(x, {1});
      CHECK(s.dtype() == dt);
      CHECK(s.to(kCPU).to_vector<int64_t>() == sum(x.to(kCPU), {1}).to_vector<int64_t>());
      CHECK(sum(x).to(kCPU).to_vector<int64_t>() == sum(x.to(kCPU)).to_vector<int64_t>());
      CHECK(sum(x.transpose(0, 1), {0}, true).to(kCPU).to_vector<int64_t>() ==
            sum(x.to(kCPU).transpose(0, 1), {0}, true).to_vector<int64_t>());
    }
    const Tensor e = zeros({3, 0}, DType::Float32, kGpu);
    CHECK(sum(e, {1}).to(kCPU).to_vector<float>() == std::vector<float>(3, 0.0f));
    for (float m : mean(e, {1}).to(kCPU).to_vector<float>()) CHECK(std::isnan(m));
    CHECK(sum(zeros({0, 4}, DType::Float32, kGpu), {0}).to(kCPU).to_vector<float>() == std::vector<float>(4, 0.0f));
    CHECK(sum(zeros({0, 4}, DType::Float32, kGpu), {1}).numel() == 0);
  }

  TEST_CASE("cuda max min argmax and argmin along any dim match CPU including ties and NaN") {
    if (!gpu_available()) return;
    auto all_four = [](const Tensor& x, int64_t dim, bool keep, const std::string& what) {
      check_vi_vs_cpu([&](const Tensor& t) { return max(t, dim, keep); }, x, "max " + what);
      check_vi_vs_cpu([&](const Tensor& t) { return min(t, dim, keep); }, x, "min " + what);
      const Tensor am = argmax(x, dim, keep), an = argmin(x, dim, keep);
      CHECK(am.to(kCPU).to_vector<int64_t>() == argmax(host64(x), dim, keep).to_vector<int64_t>());
      CHECK(an.to(kCPU).to_vector<int64_t>() == argmin(host64(x), dim, keep).to_vector<int64_t>());
    };
    for (DType dt : {DType::Float32, DType::BFloat16, DType::Float64, DType::Int32, DType::Int64}) {
      const std::string d(dtype_name(dt));
      // Random values (distinct) and small integers (ties) through the row, column and transposed paths.
      const Tensor rnd = is_floating(dt) ? randn_t({3, 257, 5}, dt).to(kGpu) : ties_gpu({3, 257, 5}, dt, 1000000);
      const Tensor tie = ties_gpu({3, 257, 5}, dt);
      for (const Tensor& x : {rnd, tie, rnd.transpose(0, 1)}) {
        for (int64_t dim : {0, 1, 2, -1}) {
          for (bool keep : {false, true}) {
            all_four(x, dim, keep, d + " " + shape_str(x.shape()) + " dim " + std::to_string(dim) + " keepdim " +
                                       std::to_string(keep));
          }
        }
      }
      const Tensor long_row = ties_gpu({2, 65537}, dt, 50);        // block per row
      const Tensor long_col = ties_gpu({65537, 3}, dt, 50);        // few lines, long dim: transposed path
      const Tensor mid = ties_gpu({4, 50, 300}, dt, 50);           // one thread per line
      const Tensor vocab = ties_gpu({5, 32000}, dt, 1000);
      all_four(long_row, 1, false, d + " 2x65537");
      all_four(long_col, 0, true, d + " 65537x3 dim 0");
      all_four(mid, 1, false, d + " 4x50x300 dim 1");
      all_four(vocab, -1, false, d + " 5x32000");
      all_four(ties_gpu({1}, dt), 0, false, d + " one element");
      // Global forms.
      for (const Tensor& x : {rnd, tie, long_row}) {
        CHECK(max(x).to(kCPU).item() == max(host64(x)).item());
        CHECK(min(x).to(kCPU).item() == min(host64(x)).item());
        CHECK(argmax(x).to(kCPU).item() == argmax(host64(x)).item());
        CHECK(argmin(x).to(kCPU).item() == argmin(host64(x)).item());
      }
    }
    // All-equal rows pick index 0; NaN wins for both max and min, the first NaN on several.
    const Tensor same = full({4, 300}, 2.5, DType::Float32, kGpu);
    CHECK(argmax(same, 1).to(kCPU).to_vector<int64_t>() == std::vector<int64_t>(4, 0));
    CHECK(argmin(same, 1).to(kCPU).to_vector<int64_t>() == std::vector<int64_t>(4, 0));
    const double nan = std::numeric_limits<double>::quiet_NaN();
    for (int64_t n : {5, 1000}) {
      std::vector<double> v(static_cast<std::size_t>(2 * n));
      for (int64_t i = 0; i < 2 * n; ++i) v[i] = std::sin(0.37 * static_cast<double>(i));
      v[3] = nan;
      v[n - 1] = nan;
      v[n + 2] = nan;
      const Tensor x = from_vector(v, {2, n}, DType::Float32, kGpu);
      for (bool want_max : {true, false}) {
        const ValuesIndices r = want_max ? max(x, 1) : min(x, 1);
        CHECK(r.indices.to(kCPU).to_vector<int64_t>() == std::vector<int64_t>{3, 2});
        for (float f : r.values.to(kCPU).to_vector<float>()) CHECK(std::isnan(f));
      }
      CHECK(argmax(x.transpose(0, 1), 0).to(kCPU).to_vector<int64_t>() == std::vector<int64_t>{3, 2});
      CHECK(argmax(x).to(kCPU).item() == 3.0);
    }
  }

  TEST_CASE("cuda softmax log_softmax and logsumexp along first middle and last dims") {
    if (!gpu_available()) return;
    for (DType dt : kFloatTypes) {
      const std::string d(dtype_name(dt));
      // Mean 1, not 0: the relative error of a sum is bounded by eps · Σ|x| / |Σx|, so zero-mean inputs make the
      // full reduction (one output, |Σx| ~ √3855 with a fair chance of landing near 0) fail a relative tolerance
      // for reasons that are not errors. A float32 run hit this once (|Σx| small, 1e-5 relative).
      const Tensor x = add(randn_t({3, 257, 5}), 1.0).to(dt).to(kGpu);
      for (const Tensor& in : {x, x.transpose(0, 2)}) {
        for (int64_t dim : {0, 1, 2, -1}) {
          const std::string what = d + " " + shape_str(in.shape()) + " dim " + std::to_string(dim);
          check_vs_cpu([&](const Tensor& t) { return softmax(t, dim); }, in, "softmax " + what);
          check_vs_cpu([&](const Tensor& t) { return log_softmax(t, dim); }, in, "log_softmax " + what);
          for (bool keep : {false, true})
            check_vs_cpu([&](const Tensor& t) { return logsumexp(t, dim, keep); }, in, "logsumexp " + what);
        }
      }
      // Long rows of magnitude 1e3 (stability), a long first dim (transposed path), a middle dim (thread per line).
      const Tensor big = mul(randn_t({4, 32000}, dt), 1000.0).to(dt).to(kGpu);
      const Tensor tall = randn_t({65537, 3}, dt).to(kGpu);
      const Tensor mid = randn_t({4, 50, 300}, dt).to(kGpu);
      const Tensor few = randn_t({1, 3}, dt).to(kGpu);
      for (auto& [name, in, dim] : std::vector<std::tuple<std::string, Tensor, int64_t>>{
               {"4x32000 x1e3", big, 1}, {"65537x3 dim 0", tall, 0}, {"4x50x300 dim 1", mid, 1}, {"1x3", few, 1}}) {
        check_vs_cpu([&](const Tensor& t) { return softmax(t, dim); }, in, d + " softmax " + name);
        check_vs_cpu([&](const Tensor& t) { return log_softmax(t, dim); }, in, d + " log_softmax " + name);
        check_vs_cpu([&](const Tensor& t) { return logsumexp(t, dim); }, in, d + " logsumexp " + name);
      }
    }
    // An all −inf row: logsumexp −inf, softmax NaN; a row with one finite value: softmax one-hot.
    const double inf = std::numeric_limits<double>::infinity();
    const Tensor x = from_vector<double>({-inf, -inf, -inf, -inf, 1.5, -inf}, {2, 3}, DType::Float32, kGpu);
    const std::vector<float> lse = logsumexp(x, 1).to(kCPU).to_vector<float>();
    CHECK(std::isinf(lse[0]));
    CHECK(lse[0] < 0);
    CHECK(lse[1] == doctest::Approx(1.5));
    const std::vector<float> sm = softmax(x, 1).to(kCPU).to_vector<float>();
    for (int i = 0; i < 3; ++i) CHECK(std::isnan(sm[i]));
    CHECK(sm[3] == 0.0f);
    CHECK(sm[4] == 1.0f);
    CHECK(sm[5] == 0.0f);
    const Tensor lse_empty = logsumexp(zeros({3, 0}, DType::Float32, kGpu), 1);
    for (float v : lse_empty.to(kCPU).to_vector<float>()) CHECK((std::isinf(v) && v < 0));
  }

  TEST_CASE("cuda cumsum and cumsum_backward along any dim with long lines and exact integers") {
    if (!gpu_available()) return;
    for (DType dt : kFloatTypes) {
      const std::string d(dtype_name(dt));
      // Mean 1, not 0: the relative error of a sum is bounded by eps · Σ|x| / |Σx|, so zero-mean inputs make the
      // full reduction (one output, |Σx| ~ √3855 with a fair chance of landing near 0) fail a relative tolerance
      // for reasons that are not errors. A float32 run hit this once (|Σx| small, 1e-5 relative).
      const Tensor x = add(randn_t({3, 257, 5}), 1.0).to(dt).to(kGpu);
      for (const Tensor& in : {x, x.transpose(0, 1)}) {
        for (int64_t dim : {0, 1, 2, -1}) {
          const std::string what = d + " " + shape_str(in.shape()) + " dim " + std::to_string(dim);
          check_vs_cpu([&](const Tensor& t) { return cumsum(t, dim); }, in, "cumsum " + what);
          check_vs_cpu([&](const Tensor& t) { return cumsum_backward(t, dim); }, in, "cumsum_backward " + what);
        }
      }
      for (auto& [name, in, dim] : std::vector<std::tuple<std::string, Tensor, int64_t>>{
               {"2x65537", randn_t({2, 65537}, dt).to(kGpu), 1},
               {"65537x3 dim 0", randn_t({65537, 3}, dt).to(kGpu), 0},
               {"4x50x300 dim 1", randn_t({4, 50, 300}, dt).to(kGpu), 1},
               {"1", randn_t({1}, dt).to(kGpu), 0},
               {"0-d", randn_t({}, dt).to(kGpu), 0}}) {
        check_vs_cpu([&](const Tensor& t) { return cumsum(t, dim); }, in, d + " cumsum " + name);
        check_vs_cpu([&](const Tensor& t) { return cumsum_backward(t, dim); }, in, d + " cumsum_backward " + name);
      }
    }
    for (DType dt : {DType::Int32, DType::Int64}) {
      for (auto [shape, dim] : std::vector<std::pair<Shape, int64_t>>{
               {{3, 257, 5}, 1}, {{3, 257, 5}, 2}, {{2, 65537}, 1}, {{65537, 3}, 0}, {{4, 50, 300}, 1}}) {
        INFO(dtype_name(dt) << " " << shape_str(shape) << " dim " << dim);
        const Tensor x = rand_t(shape, -100.0, 100.0, DType::Float64).to(dt).to(kGpu);
        CHECK(cumsum(x, dim).to(kCPU).to_vector<int64_t>() == cumsum(x.to(kCPU), dim).to_vector<int64_t>());
        CHECK(cumsum_backward(x, dim).to(kCPU).to_vector<int64_t>() ==
              cumsum_backward(x.to(kCPU), dim).to_vector<int64_t>());
      }
    }
    CHECK(cumsum(zeros({3, 0}, DType::Float32, kGpu), 1).numel() == 0);
  }

  TEST_CASE("cuda topk sorted with ties and NaN for k from 0 to the row length") {
    if (!gpu_available()) return;
    for (DType dt : {DType::Float32, DType::BFloat16, DType::Float64, DType::Int32, DType::Int64}) {
      const std::string d(dtype_name(dt));
      // Shared-memory sort (P ≤ 2048) and the global-scratch sort (n = 3000, 32000).
      for (Shape s : {Shape{4, 7}, Shape{1}, Shape{3, 257}, Shape{2, 3, 64}, Shape{2, 3000}, Shape{3, 32000}}) {
        const int64_t n = s.back();
        const Tensor rnd = is_floating(dt) ? randn_t(s, dt).to(kGpu) : ties_gpu(s, dt, 1000000);
        const Tensor tie = ties_gpu(s, dt, 5);
        for (const Tensor& x : {rnd, tie}) {
          for (int64_t k : {int64_t{0}, int64_t{1}, std::min<int64_t>(5, n), n}) {
            for (bool largest : {true, false}) {
              check_vi_vs_cpu([&](const Tensor& t) { return topk(t, k, largest); }, x,
                              d + " " + shape_str(s) + " k " + std::to_string(k) + " largest " +
                                  std::to_string(largest));
            }
          }
        }
      }
      // A strided input (the last dim is not contiguous).
      const Tensor base = ties_gpu({9, 6}, dt, 3);
      check_vi_vs_cpu([](const Tensor& t) { return topk(t, 4, true); }, base.transpose(0, 1), d + " strided");
    }
    const Tensor xi = from_vector<int64_t>({4, 1, 4, 2, 1, 4}, {1, 6}, kGpu);
    const ValuesIndices r = topk(xi, 4);
    CHECK(r.values.to(kCPU).to_vector<int64_t>() == std::vector<int64_t>{4, 4, 4, 2});
    CHECK(r.indices.to(kCPU).to_vector<int64_t>() == std::vector<int64_t>{0, 2, 5, 3});
    const ValuesIndices s = topk(xi, 3, false);
    CHECK(s.values.to(kCPU).to_vector<int64_t>() == std::vector<int64_t>{1, 1, 2});
    CHECK(s.indices.to(kCPU).to_vector<int64_t>() == std::vector<int64_t>{1, 4, 3});
    // NaN ranks above every number: first for largest, last for smallest.
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const Tensor xn = from_vector<double>({1.0, nan, 3.0, nan, -2.0}, {1, 5}, DType::Float32, kGpu);
    const ValuesIndices tl = topk(xn, 5, true), ts = topk(xn, 5, false);
    CHECK(tl.indices.to(kCPU).to_vector<int64_t>() == std::vector<int64_t>{1, 3, 2, 0, 4});
    CHECK(ts.indices.to(kCPU).to_vector<int64_t>() == std::vector<int64_t>{4, 0, 2, 1, 3});
    const Tensor e = topk(zeros({3, 0}, DType::Float32, kGpu), 0).values;
    CHECK(e.shape() == Shape{3, 0});
  }

  TEST_CASE("cuda max_backward and topk_backward scatter gradients like the CPU") {
    if (!gpu_available()) return;
    for (DType dt : kFloatTypes) {
      const std::string d(dtype_name(dt));
      // Mean 1, not 0: the relative error of a sum is bounded by eps · Σ|x| / |Σx|, so zero-mean inputs make the
      // full reduction (one output, |Σx| ~ √3855 with a fair chance of landing near 0) fail a relative tolerance
      // for reasons that are not errors. A float32 run hit this once (|Σx| small, 1e-5 relative).
      const Tensor x = add(randn_t({3, 257, 5}), 1.0).to(dt).to(kGpu);
      for (int64_t dim : {0, 1, 2}) {
        for (bool keep : {false, true}) {
          INFO(d << " dim " << dim << " keepdim " << keep);
          const ValuesIndices m = max(x, dim, keep);
          const Tensor g = randn_t(m.values.shape(), dt).to(kGpu);
          const Tensor gx = max_backward(g, m.indices, x.shape(), dim, keep);
          check_close(gx.to(kCPU), max_backward(host64(g), m.indices.to(kCPU), x.shape(), dim, keep),
                      tolerance_for(dt), "max_backward");
        }
      }
      for (Shape s : {Shape{4, 7}, Shape{3, 32000}}) {
        const Tensor xs = randn_t(s, dt).to(kGpu);
        for (int64_t k : {int64_t{1}, int64_t{5}, s.back()}) {
          INFO(d << " " << shape_str(s) << " k " << k);
          const ValuesIndices t = topk(xs, k);
          Shape gs = s;
          gs.back() = k;
          const Tensor g = randn_t(gs, dt).to(kGpu);
          check_close(topk_backward(g, t.indices, s).to(kCPU), topk_backward(host64(g), t.indices.to(kCPU), s),
                      tolerance_for(dt), "topk_backward");
        }
      }
    }
    // 0-d x, and an index out of range is an error naming the op.
    const Tensor g0 = scalar_tensor(2.0, DType::Float32, kGpu);
    CHECK(max_backward(g0, zeros({}, DType::Int64, kGpu), {}, 0, false).to(kCPU).item() == 2.0);
    const Tensor bad = from_vector<int64_t>({0, 9}, {2, 1}, kGpu);
    check_throws_with([&] { topk_backward(ones({2, 1}, DType::Float32, kGpu), bad, {2, 4}); },
                      {"topk_backward", "out of range"});
  }

  TEST_CASE("cuda autograd reductions give the float64 CPU gradients") {
    if (!gpu_available()) return;
    using Fn = std::function<Tensor(const Tensor&)>;
    const std::vector<std::pair<std::string, Fn>> ops = {
        {"sum dim 1", [](const Tensor& t) { return ag::sum(t, {1}); }},
        {"sum all", [](const Tensor& t) { return ag::sum(t); }},
        {"mean dims 0 2 keepdim", [](const Tensor& t) { return ag::mean(t, {0, 2}, true); }},
        {"max dim 1", [](const Tensor& t) { return ag::max(t, 1).values; }},
        {"min dim 0 keepdim", [](const Tensor& t) { return ag::min(t, 0, true).values; }},
        {"max all", [](const Tensor& t) { return ag::max(t); }},
        {"norm p2 dim 1", [](const Tensor& t) { return ag::norm(t, 2.0, {1}); }},
        {"norm p1 all", [](const Tensor& t) { return ag::norm(t, 1.0); }},
        {"softmax dim -1", [](const Tensor& t) { return ag::softmax(t, -1); }},
        {"softmax dim 1", [](const Tensor& t) { return ag::softmax(t, 1); }},
        {"log_softmax dim 1", [](const Tensor& t) { return ag::log_softmax(t, 1); }},
        {"logsumexp dim 0", [](const Tensor& t) { return ag::logsumexp(t, 0); }},
        {"cumsum dim 1", [](const Tensor& t) { return ag::cumsum(t, 1); }},
        {"topk k 3", [](const Tensor& t) { return ag::topk(t, 3).values; }},
        {"topk smallest k 5", [](const Tensor& t) { return ag::topk(t, 5, false).values; }},
    };
    for (DType dt : {DType::Float32, DType::Float64}) {
      for (const auto& [name, f] : ops) {
        INFO(name << " " << dtype_name(dt));
        const Tensor x0 = randn_t({4, 37, 5}, dt);
        Tensor xg = x0.to(kGpu).detach();
        ag::set_requires_grad(xg);
        Tensor xc = leaf(x0.to(DType::Float64));
        const Tensor yg = f(xg), yc = f(xc);
        REQUIRE(yg.shape() == yc.shape());
        check_close(yg.to(kCPU), yc.detach(), tolerance_for(dt), "forward");
        const Tensor up = randn_t(yc.shape(), DType::Float64);
        ag::backward(yg, up.to(dt).to(kGpu));
        ag::backward(yc, up.to(dt).to(DType::Float64));
        const Tensor gg = ag::grad(xg), gc = ag::grad(xc);
        REQUIRE(gg.defined());
        REQUIRE(gc.defined());
        CHECK(gg.device().is_cuda());
        check_close(gg.to(kCPU), gc, tolerance_for(dt), "grad");
      }
    }
  }
}
