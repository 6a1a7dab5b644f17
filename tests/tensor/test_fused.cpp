// Fused ops (tensor/ops/fused.h): forwards against plain float64 loops written from SPEC, for float64, float32 and
// bfloat16 (the bf16 reference uses the bf16-rounded inputs), odd sizes, non-contiguous inputs and the error
// messages. Backwards are checked in tests/autograd/test_fused_grad.cpp.
#include <cmath>
#include <vector>

#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

namespace {

const DType kFloatTypes[] = {DType::Float64, DType::Float32, DType::BFloat16};

// ---- float64 references (plain loops over row-major values) ----

// SPEC §2.4: y = x / sqrt(mean x² + eps) * w, per row of length D. Also returns rstd per row.
std::vector<double> ref_rms_norm(const std::vector<double>& x, const std::vector<double>& w, int64_t D, double eps,
                                 std::vector<double>* rstd) {
  std::vector<double> y(x.size());
  const int64_t N = static_cast<int64_t>(x.size()) / D;
  for (int64_t r = 0; r < N; ++r) {
    double ms = 0;
    for (int64_t d = 0; d < D; ++d) ms += x[r * D + d] * x[r * D + d];
    ms /= static_cast<double>(D);
    const double rs = 1.0 / std::sqrt(ms + eps);
    if (rstd) rstd->push_back(rs);
    for (int64_t d = 0; d < D; ++d) y[r * D + d] = x[r * D + d] * rs * w[d];
  }
  return y;
}

// Two-pass log-softmax cross-entropy, mean over non-ignored rows (0 when none).
double ref_cross_entropy(const std::vector<double>& logits, const std::vector<int64_t>& targets, int64_t V,
                         int64_t ignore_index, std::vector<double>* lse) {
  const int64_t N = static_cast<int64_t>(targets.size());
  double total = 0;
  int64_t n_valid = 0;
  for (int64_t r = 0; r < N; ++r) {
    double m = logits[r * V];
    for (int64_t v = 1; v < V; ++v) m = std::max(m, logits[r * V + v]);
    double s = 0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(logits[r * V + v] - m);
    const double l = m + std::log(s);
    if (lse) lse->push_back(l);
    if (targets[r] == ignore_index) continue;
    total += l - logits[r * V + targets[r]];
    ++n_valid;
  }
  return n_valid ? total / static_cast<double>(n_valid) : 0.0;
}

std::vector<double> ref_l2_normalize(const std::vector<double>& x, int64_t D, double eps) {
  std::vector<double> y(x.size());
  const int64_t N = D ? static_cast<int64_t>(x.size()) / D : 0;
  for (int64_t r = 0; r < N; ++r) {
    double ss = 0;
    for (int64_t d = 0; d < D; ++d) ss += x[r * D + d] * x[r * D + d];
    const double den = std::max(std::sqrt(ss), eps);
    for (int64_t d = 0; d < D; ++d) y[r * D + d] = x[r * D + d] / den;
  }
  return y;
}

// SPEC §2.9, rows of (..., T, D) in row-major order. inv_freq in float32; for float32/bf16 the angle and cos/sin in
// float32 (cos/sin then rounded to bf16 for bf16 inputs); for float64 the angle and cos/sin in float64.
std::vector<double> ref_rotary(const std::vector<double>& x, int64_t T, int64_t D, int64_t offset, double base,
                               DType dt) {
  std::vector<double> y(x.size());
  const int64_t H = D / 2, rows = static_cast<int64_t>(x.size()) / D;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t p = offset + r % T;
    for (int64_t i = 0; i < H; ++i) {
      const float inv_freq =
          1.0f / std::pow(static_cast<float>(base), static_cast<float>(2 * i) / static_cast<float>(D));
      double c, s;
      if (dt == DType::Float64) {
        c = std::cos(static_cast<double>(p) * inv_freq);
        s = std::sin(static_cast<double>(p) * inv_freq);
      } else {
        const float th = static_cast<float>(p) * inv_freq;
        c = std::cos(th);
        s = std::sin(th);
        if (dt == DType::BFloat16) {
          c = static_cast<float>(BFloat16(static_cast<float>(c)));
          s = static_cast<float>(BFloat16(static_cast<float>(s)));
        }
      }
      const double a = x[r * D + i], b = x[r * D + i + H];
      y[r * D + i] = a * c - b * s;
      y[r * D + i + H] = b * c + a * s;
    }
  }
  return y;
}

// SPEC §2.6 without SiLU: builds xp = [cache | x] per (b, c) explicitly. x (B,T,C), w (C,K), cache (B,C,K-1).
struct ConvRef {
  std::vector<double> y, new_cache;
};
ConvRef ref_causal_conv1d(const std::vector<double>& x, const std::vector<double>& w, const std::vector<double>& bias,
                          const std::vector<double>& cache, int64_t B, int64_t T, int64_t C, int64_t K) {
  ConvRef out{std::vector<double>(B * T * C), std::vector<double>(B * C * (K - 1))};
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t c = 0; c < C; ++c) {
      std::vector<double> xp;
      for (int64_t s = 0; s < K - 1; ++s) xp.push_back(cache.empty() ? 0.0 : cache[(b * C + c) * (K - 1) + s]);
      for (int64_t t = 0; t < T; ++t) xp.push_back(x[(b * T + t) * C + c]);
      for (int64_t t = 0; t < T; ++t) {
        double acc = bias.empty() ? 0.0 : bias[c];
        for (int64_t j = 0; j < K; ++j) acc += w[c * K + j] * xp[t + j];
        out.y[(b * T + t) * C + c] = acc;
      }
      for (int64_t m = 0; m < K - 1; ++m) out.new_cache[(b * C + c) * (K - 1) + m] = xp[T + m];
    }
  }
  return out;
}

Tensor f64(const std::vector<double>& v, const Shape& s) { return from_vector(v, s); }

}  // namespace

TEST_CASE("rms_norm_forward matches float64 loops (dtypes, D = 1, strided x)") {
  const double eps = 1e-6;
  const std::vector<Shape> shapes = {{3, 5, 7}, {4, 1}, {2, 67}, {1, 1}, {0, 5}, {64, 600}};
  for (DType dt : kFloatTypes) {
    for (const Shape& s : shapes) {
      INFO(dtype_name(dt) << " x " << shape_str(s));
      const int64_t D = s.back();
      Tensor x = randn_t(s, dt), w = rand_t({D}, 0.5, 1.5, dt);
      std::vector<double> rstd;
      std::vector<double> y = ref_rms_norm(x.to_vector<double>(), w.to_vector<double>(), D, eps, &rstd);
      RmsNormOutput out = rms_norm_forward(x, w, eps);
      CHECK(out.y.dtype() == dt);
      CHECK(out.rstd.dtype() == (dt == DType::Float64 ? DType::Float64 : DType::Float32));
      Shape lead(s.begin(), s.end() - 1);
      check_close(out.y, f64(y, s), "y");
      check_close(out.rstd, f64(rstd, lead), tolerance_for(dt == DType::Float64 ? dt : DType::Float32), "rstd");
    }
    // Non-contiguous x: a transposed (D, N) buffer.
    INFO(dtype_name(dt) << " transposed");
    Tensor xt = randn_t({9, 4}, dt).transpose(0, 1);  // (4, 9), strides (1, 4)
    Tensor w = rand_t({9}, 0.5, 1.5, dt);
    std::vector<double> y = ref_rms_norm(xt.contiguous().to_vector<double>(), w.to_vector<double>(), 9, eps, nullptr);
    check_close(rms_norm_forward(xt, w, eps).y, f64(y, {4, 9}), "transposed x");
  }
}

// out_dtype rounds y after the usual computation; a gradient in another dtype is widened first. On the CPU both are
// the op plus a cast, so the results equal the composition exactly; the CUDA kernels are held to the same equality
// in test_cuda_fused.cpp.
TEST_CASE("rms_norm with another output dtype and gradient dtype equals the op plus casts") {
  const double eps = 1e-6;
  const Tensor x = randn_t({5, 33}, DType::Float64), w = rand_t({33}, 0.5, 1.5, DType::Float64);
  for (DType ot : {DType::Float32, DType::BFloat16, DType::Float64}) {
    INFO(dtype_name(ot));
    const RmsNormOutput o = rms_norm_forward(x, w, eps, ot);
    const RmsNormOutput r = rms_norm_forward(x, w, eps);
    CHECK(o.y.dtype() == ot);
    CHECK(o.y.to_vector<double>() == r.y.to(ot).to_vector<double>());
    const Tensor gy = randn_t({5, 33}, ot);
    const RmsNormGrads g = rms_norm_backward(gy, x, w, r.rstd);
    const RmsNormGrads gr = rms_norm_backward(gy.to(DType::Float64), x, w, r.rstd);
    CHECK(g.dx.dtype() == DType::Float64);
    CHECK(g.dx.to_vector<double>() == gr.dx.to_vector<double>());
    CHECK(g.dw.to_vector<double>() == gr.dw.to_vector<double>());
  }
  check_throws_with([&] { rms_norm_forward(x, w, eps, DType::Int64); }, {"rms_norm_forward", "out_dtype"});
}

TEST_CASE("add_cast is x + y in x's dtype, and rejects shape mismatches") {
  const Tensor x = randn_t({4, 6}, DType::Float32), y = randn_t({4, 6}, DType::BFloat16);
  const Tensor out = add_cast(x, y);
  CHECK(out.dtype() == DType::Float32);
  CHECK(out.to_vector<double>() == add(x, y.to(DType::Float32)).to_vector<double>());
  const Tensor x64 = randn_t({4, 6}, DType::Float64);
  CHECK(add_cast(x64, y).to_vector<double>() == add(x64, y.to(DType::Float64)).to_vector<double>());
  CHECK(add_cast(x, x).to_vector<double>() == add(x, x).to_vector<double>());
  check_throws_with([&] { add_cast(x, randn_t({4, 5}, DType::BFloat16)); }, {"add_cast", "[4, 6]", "[4, 5]"});
}

TEST_CASE("cross_entropy_forward matches float64 loops (V = 1, V = 32000, ignore_index, int32/int64)") {
  struct Case {
    Shape logits;
    int64_t ignore_every;  // every k-th row ignored (0: none)
  };
  const std::vector<Case> cases = {{{5, 1}, 0}, {{3, 32000}, 0}, {{6, 13}, 3}, {{2, 3, 11}, 2}, {{1, 7}, 0}};
  for (DType dt : kFloatTypes) {
    for (DType it : {DType::Int64, DType::Int32}) {
      for (const Case& cs : cases) {
        INFO(dtype_name(dt) << " targets " << dtype_name(it) << " logits " << shape_str(cs.logits));
        const int64_t V = cs.logits.back();
        Tensor logits = mul(randn_t(cs.logits, DType::Float64), 3.0).to(dt);
        Shape lead(cs.logits.begin(), cs.logits.end() - 1);
        const int64_t N = shape_numel(lead);
        std::vector<int64_t> tv;
        Generator g = fresh_generator();
        std::vector<int64_t> draws = randint(0, V, {N}, g).to_vector<int64_t>();
        for (int64_t r = 0; r < N; ++r) tv.push_back(cs.ignore_every && r % cs.ignore_every == 1 ? -100 : draws[r]);
        Tensor targets = from_vector(tv, lead, it);
        std::vector<double> lse;
        const double loss = ref_cross_entropy(logits.to_vector<double>(), tv, V, -100, &lse);
        CrossEntropyOutput out = cross_entropy_forward(logits, targets);
        CHECK(out.loss.dim() == 0);
        CHECK(out.loss.dtype() == (dt == DType::Float64 ? DType::Float64 : DType::Float32));
        // The loss and lse are float32 or better even for bf16 logits: the float32 tolerance applies.
        const Tolerance tol = tolerance_for(dt == DType::Float64 ? dt : DType::Float32);
        check_close(out.loss, scalar_tensor(loss, DType::Float64), tol, "loss");
        check_close(out.lse, f64(lse, lead), tol, "lse");
      }
    }
  }
}

TEST_CASE("cross_entropy_forward: custom ignore_index, all rows ignored, strided logits") {
  Tensor logits = randn_t({4, 6});
  Tensor targets = from_vector<int64_t>({2, 7, 0, 7}, {4});
  std::vector<int64_t> tv = {2, 7, 0, 7};
  const double loss = ref_cross_entropy(logits.to_vector<double>(), tv, 6, 7, nullptr);
  check_close(cross_entropy_forward(logits, targets, 7).loss, scalar_tensor(loss, DType::Float64), "ignore_index 7");

  Tensor all_ignored = from_vector<int64_t>({-100, -100, -100, -100}, {4});
  CHECK(cross_entropy_forward(logits, all_ignored).loss.item() == 0.0);

  Tensor lt = randn_t({6, 4}).transpose(0, 1);  // (4, 6) non-contiguous
  Tensor t2 = from_vector<int64_t>({5, 0, 3, 1}, {4});
  std::vector<double> lse;
  const double l2 = ref_cross_entropy(lt.contiguous().to_vector<double>(), {5, 0, 3, 1}, 6, -100, &lse);
  CrossEntropyOutput out = cross_entropy_forward(lt, t2);
  check_close(out.loss, scalar_tensor(l2, DType::Float64), "strided logits");
  check_close(out.lse, f64(lse, {4}), "strided lse");
}

TEST_CASE("l2_normalize_forward matches float64 loops (zero row, D = 1, strided)") {
  for (DType dt : kFloatTypes) {
    for (const Shape& s : std::vector<Shape>{{3, 8}, {2, 3, 1}, {5, 33}}) {
      INFO(dtype_name(dt) << " x " << shape_str(s));
      Tensor x = randn_t(s, dt);
      check_close(l2_normalize_forward(x).y, f64(ref_l2_normalize(x.to_vector<double>(), s.back(), 1e-12), s));
    }
    INFO(dtype_name(dt) << " zero and tiny rows");
    std::vector<double> xv = {0, 0, 0, 1e-14, -2e-14, 0, 3, 4, 0};
    Tensor x = from_vector(xv, {3, 3}, dt);
    L2NormalizeOutput out = l2_normalize_forward(x);
    std::vector<double> y = ref_l2_normalize(x.to_vector<double>(), 3, 1e-12);
    check_close(out.y, f64(y, {3, 3}), "zero/tiny rows");
    CHECK(out.norm.to_vector<double>()[0] == 0.0);
    Tensor xt = randn_t({7, 5}, dt).transpose(0, 1);
    check_close(l2_normalize_forward(xt, 1e-6).y,
                f64(ref_l2_normalize(xt.contiguous().to_vector<double>(), 7, 1e-6), {5, 7}), "transposed");
  }
}

TEST_CASE("rotary_forward matches SPEC 2.9 loops (T = 1, offset 1000, D = 2, strided)") {
  struct Case {
    Shape s;
    int64_t offset;
    double base;
  };
  const std::vector<Case> cases = {
      {{2, 3, 5, 8}, 0, 10000.0},     {{4, 1, 6}, 1000, 10000.0},    {{3, 2}, 7, 500.0},
      {{1, 2, 9, 64}, 1000, 10000.0}, {{4, 128, 64}, 1000, 10000.0}, {{17, 10}, 123456, 10000.0}};
  for (DType dt : kFloatTypes) {
    for (const Case& c : cases) {
      INFO(dtype_name(dt) << " x " << shape_str(c.s) << " offset " << c.offset);
      Tensor x = randn_t(c.s, dt);
      const int64_t T = c.s[c.s.size() - 2], D = c.s.back();
      std::vector<double> y = ref_rotary(x.to_vector<double>(), T, D, c.offset, c.base, dt);
      check_close(rotary_forward(x, c.offset, c.base), f64(y, c.s));
    }
    // The usual call site: (B, T, H, D) viewed as (B, H, T, D), non-contiguous.
    INFO(dtype_name(dt) << " permuted (B, H, T, D) view");
    Tensor x = randn_t({2, 5, 3, 6}, dt).transpose(1, 2);
    std::vector<double> y = ref_rotary(x.contiguous().to_vector<double>(), 5, 6, 11, 10000.0, dt);
    check_close(rotary_forward(x, 11, 10000.0), f64(y, {2, 3, 5, 6}));
  }
}

TEST_CASE("causal_conv1d_forward matches SPEC 2.6 loops (K = 1, K > T, T = 1, cache, bias, strided)") {
  struct Case {
    int64_t B, T, C, K;
    bool bias, cache;
  };
  const std::vector<Case> cases = {{2, 7, 5, 4, true, true},   {2, 7, 5, 4, false, false}, {1, 1, 3, 4, true, true},
                                   {2, 2, 3, 5, true, true},   {3, 4, 2, 1, true, false},  {1, 6, 33, 3, false, true},
                                   {2, 1, 4, 1, false, false}, {2, 100, 64, 4, true, true}};
  for (DType dt : kFloatTypes) {
    for (const Case& c : cases) {
      INFO(dtype_name(dt) << " B T C K = " << c.B << " " << c.T << " " << c.C << " " << c.K << " bias " << c.bias
                          << " cache " << c.cache);
      Tensor x = randn_t({c.B, c.T, c.C}, dt), w = randn_t({c.C, c.K}, dt);
      Tensor bias = c.bias ? randn_t({c.C}, dt) : Tensor();
      Tensor cache = c.cache && c.K > 1 ? randn_t({c.B, c.C, c.K - 1}, dt) : Tensor();
      ConvRef r =
          ref_causal_conv1d(x.to_vector<double>(), w.to_vector<double>(),
                            bias.defined() ? bias.to_vector<double>() : std::vector<double>(),
                            cache.defined() ? cache.to_vector<double>() : std::vector<double>(), c.B, c.T, c.C, c.K);
      CausalConv1dOutput out = causal_conv1d_forward(x, w, bias, cache);
      check_close(out.y, f64(r.y, {c.B, c.T, c.C}), "y");
      if (c.K == 1) {
        CHECK_FALSE(out.new_cache.defined());
      } else {
        // The new cache holds raw inputs: exact copies.
        check_close(out.new_cache, f64(r.new_cache, {c.B, c.C, c.K - 1}), kTolF64, "new_cache");
      }
    }
  }
}

TEST_CASE("causal_conv1d_forward: streaming in chunks with the cache equals one pass, strided x") {
  const int64_t B = 2, T = 9, C = 4, K = 4;
  Tensor x = randn_t({B, T, C}), w = randn_t({C, K}), bias = randn_t({C});
  CausalConv1dOutput full = causal_conv1d_forward(x, w, bias, Tensor());
  Tensor cache;
  int64_t t0 = 0;
  for (int64_t len : {2, 1, 4, 2}) {
    INFO("chunk at " << t0 << " length " << len);
    CausalConv1dOutput part = causal_conv1d_forward(x.narrow(1, t0, len), w, bias, cache);
    check_close(part.y, full.y.narrow(1, t0, len).contiguous(), "chunk y");
    cache = part.new_cache;
    t0 += len;
  }
  check_close(cache, full.new_cache, "final cache");

  Tensor xt = randn_t({B, C, T}).transpose(1, 2);  // (B, T, C), channel-major storage
  ConvRef r = ref_causal_conv1d(xt.contiguous().to_vector<double>(), w.to_vector<double>(), bias.to_vector<double>(),
                                {}, B, T, C, K);
  check_close(causal_conv1d_forward(xt, w, bias, Tensor()).y, f64(r.y, {B, T, C}), "strided x");
}

TEST_CASE("fused ops reject bad arguments with messages naming the values") {
  // Cross-entropy: an out-of-range target names its value, its row and V.
  Tensor logits = randn_t({3, 5});
  check_throws_with(
      [&] {
        cross_entropy_forward(logits, from_vector<int64_t>({1, 5, 0}, {3}));
      },
      {"cross_entropy_forward", "target 5", "row 1", "V = 5"});
  check_throws_with(
      [&] {
        cross_entropy_forward(logits, from_vector<int32_t>({1, 0, -3}, {3}));
      },
      {"target -3", "row 2", "V = 5"});
  check_throws_with(
      [&] {
        cross_entropy_forward(logits, from_vector<int64_t>({1, 0}, {2}));
      },
      {"targets must have shape", "[3]", "[2]"});
  // Rotary: odd D.
  check_throws_with([&] { rotary_forward(randn_t({2, 4, 7}), 0, 10000.0); }, {"rotary_forward", "D = 7", "even"});
  // Conv: shape mismatches name both shapes.
  check_throws_with(
      [&] {
        causal_conv1d_forward(randn_t({2, 5, 3}), randn_t({4, 3}), Tensor(), Tensor());
      },
      {"causal_conv1d_forward", "[4, 3]", "[2, 5, 3]"});
  check_throws_with(
      [&] {
        causal_conv1d_forward(randn_t({2, 5, 3}), randn_t({3, 4}), Tensor(), randn_t({2, 3, 2}));
      },
      {"cache", "[2, 3, 3]", "[2, 3, 2]"});
  // RMSNorm: weight shape mismatch.
  check_throws_with(
      [&] {
        rms_norm_forward(randn_t({2, 6}), randn_t({5}), 1e-6);
      },
      {"rms_norm_forward", "weight", "[6]", "[5]", "[2, 6]"});
  // Dtype mismatch.
  check_throws_with(
      [&] {
        rms_norm_forward(randn_t({2, 6}), randn_t({6}, DType::Float32), 1e-6);
      },
      {"rms_norm_forward", "dtype"});
}

TEST_CASE("cross_entropy_forward with masked (-inf) logits, the first column included") {
  const double inf = std::numeric_limits<double>::infinity();
  Tensor logits = from_vector<double>({-inf, 1.0, 2.0, 0.5, -inf, 3.0}, {2, 3});
  Tensor targets = from_vector<int64_t>({2, 0}, {2});
  auto out = cross_entropy_forward(logits, targets);
  const double lse0 = std::log(std::exp(1.0) + std::exp(2.0)), lse1 = std::log(std::exp(0.5) + std::exp(3.0));
  CHECK(out.lse.to_vector<double>()[0] == doctest::Approx(lse0).epsilon(1e-12));
  CHECK(out.lse.to_vector<double>()[1] == doctest::Approx(lse1).epsilon(1e-12));
  CHECK(out.loss.item() == doctest::Approx(((lse0 - 2.0) + (lse1 - 0.5)) / 2).epsilon(1e-12));
  Tensor g = cross_entropy_backward(scalar_tensor(1.0, DType::Float64), logits, targets, out.lse);
  for (double v : g.to_vector<double>()) CHECK(std::isfinite(v));
  CHECK(g.to_vector<double>()[0] == 0.0);  // a masked logit gets no gradient
}

TEST_CASE("sum_of_squares and scale_ over a tensor list match float64 loops (mixed dtypes, empty, many tensors)") {
  // 45 tensors: more than one CUDA launch list (40), several dtype runs, an empty tensor and sizes around the
  // kernel's 8192-element block.
  std::vector<Tensor> ts;
  const int64_t sizes[] = {1, 0, 7, 8191, 8192, 8193, 20000, 3};
  for (int i = 0; i < 45; ++i) ts.push_back(randn_t({sizes[i % 8]}, kFloatTypes[(i / 4) % 3]));
  double want = 0;
  for (const Tensor& t : ts)
    for (double x : t.to(DType::Float64).to_vector<double>()) want += x * x;
  const Tensor got = sum_of_squares(ts);
  CHECK(got.dtype() == DType::Float64);
  CHECK(got.dim() == 0);
  CHECK(got.item() == doctest::Approx(want).epsilon(1e-6));
  CHECK(sum_of_squares({}).item() == 0.0);

  std::vector<std::vector<double>> before;
  for (const Tensor& t : ts) before.push_back(t.to(DType::Float64).to_vector<double>());
  scale_(ts, 0.37);
  for (std::size_t i = 0; i < ts.size(); ++i) {
    const std::vector<double> after = ts[i].to(DType::Float64).to_vector<double>();
    for (std::size_t j = 0; j < after.size(); ++j) {
      INFO("tensor " << i << " element " << j);
      CHECK(after[j] == doctest::Approx(before[i][j] * 0.37).epsilon(ts[i].dtype() == DType::BFloat16 ? 1e-2 : 1e-6));
    }
  }
  CHECK_THROWS_WITH_AS(sum_of_squares({randn_t({4}), randn_t({4, 4}).transpose(0, 1)}),
                       doctest::Contains("must be contiguous"), std::exception);
}
