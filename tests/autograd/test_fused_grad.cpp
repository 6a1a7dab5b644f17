// Fused ops' hand-written backwards (autograd/functions/fused.h): gradcheck in float64, the fused gradient against
// the gradient of the same op composed from primitive ag ops, the float32/bfloat16 backward kernels against the
// float64 ones on the same (rounded) inputs, and the special cases (ignored rows, the l2 clamp, no-grad inputs).
#include <cmath>
#include <vector>

#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

namespace {

// Gradients of Σ <fn(inputs)[0], v> with respect to every input, through the autograd engine. Inputs are fresh
// float64 leaves copied from `values` (undefined values stay undefined and get no gradient).
std::vector<Tensor> grads_of(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                             const std::vector<Tensor>& values, const Tensor& v) {
  std::vector<Tensor> leaves;
  for (const Tensor& t : values) leaves.push_back(t.defined() ? leaf(t.clone()) : Tensor());
  Tensor out = fn(leaves);
  ag::backward(out, v);
  std::vector<Tensor> gs;
  for (const Tensor& l : leaves) gs.push_back(l.defined() ? ag::grad(l) : Tensor());
  return gs;
}

// Compares two gradient lists element by element with the float64 tolerance.
void check_same_grads(const std::vector<Tensor>& fused, const std::vector<Tensor>& ref, const char* what) {
  REQUIRE(fused.size() == ref.size());
  for (std::size_t i = 0; i < fused.size(); ++i) {
    if (!ref[i].defined()) continue;
    INFO(what << " input " << i);
    REQUIRE(fused[i].defined());
    check_close(fused[i], ref[i], kTolF64, what);
  }
}

// ---- the ops composed from primitives (float64 references for the fused backwards) ----

Tensor composed_rms_norm(const Tensor& x, const Tensor& w, double eps) {
  Tensor r = ag::rsqrt(ag::add(ag::mean(ag::square(x), {-1}, true), eps));
  return ag::mul(ag::mul(x, r), w);
}

// logsumexp written as c + log Σ exp(x − c) with a constant per-row shift c; the picked logit via a one-hot mask.
Tensor composed_cross_entropy(const Tensor& logits, const std::vector<int64_t>& targets, int64_t ignore_index) {
  const int64_t V = logits.size(-1), N = logits.numel() / V;
  std::vector<double> xv = logits.contiguous().to_vector<double>(), shift(N), onehot(N * V, 0.0), valid(N, 0.0);
  int64_t n_valid = 0;
  for (int64_t r = 0; r < N; ++r) {
    shift[r] = xv[r * V];
    for (int64_t v = 1; v < V; ++v) shift[r] = std::max(shift[r], xv[r * V + v]);
    if (targets[r] == ignore_index) continue;
    onehot[r * V + targets[r]] = 1.0;
    valid[r] = 1.0;
    ++n_valid;
  }
  Tensor x2 = ag::reshape(logits, {N, V});
  Tensor c = from_vector(shift, {N, 1});
  Tensor lse = ag::add(ag::log(ag::sum(ag::exp(ag::sub(x2, c)), {-1}, true)), c);  // (N, 1)
  Tensor picked = ag::sum(ag::mul(x2, from_vector(onehot, {N, V})), {-1}, true);
  Tensor per_row = ag::mul(ag::sub(lse, picked), from_vector(valid, {N, 1}));
  return ag::div(ag::sum(per_row), static_cast<double>(std::max<int64_t>(n_valid, 1)));
}

Tensor composed_l2_normalize(const Tensor& x, double eps) {
  Tensor norm = ag::sqrt(ag::sum(ag::square(x), {-1}, true));
  return ag::div(x, ag::maximum(norm, scalar_tensor(eps, DType::Float64)));
}

// x·cos + rotate_half(x)·sin with rotate_half as a constant (D, D) matrix; float64 angles, float32 inv_freq.
Tensor composed_rotary(const Tensor& x, int64_t offset, double base) {
  const int64_t T = x.size(-2), D = x.size(-1), H = D / 2;
  std::vector<double> cs(T * D), sn(T * D), rot(D * D, 0.0);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < H; ++i) {
      const float inv_freq =
          1.0f / std::pow(static_cast<float>(base), static_cast<float>(2 * i) / static_cast<float>(D));
      const double th = static_cast<double>(offset + t) * inv_freq;
      cs[t * D + i] = cs[t * D + i + H] = std::cos(th);
      sn[t * D + i] = sn[t * D + i + H] = std::sin(th);
    }
  }
  for (int64_t i = 0; i < H; ++i) {
    rot[(i + H) * D + i] = -1.0;  // out_i     = −x_{i+H}
    rot[i * D + i + H] = 1.0;     // out_{i+H} =  x_i
  }
  Tensor half = ag::matmul(x, from_vector(rot, {D, D}));
  return ag::add(ag::mul(x, from_vector(cs, {T, D})), ag::mul(half, from_vector(sn, {T, D})));
}

// y[:, t, :] = bias + Σ_j xp[:, t + j, :] ⊙ w[:, j] with xp = [cacheᵀ | x] along time.
Tensor composed_causal_conv1d(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& cache) {
  const int64_t T = x.size(1), K = w.size(1);
  Tensor xp = cache.defined() ? ag::concat({ag::transpose(cache, 1, 2), x}, 1) : x;
  if (!cache.defined() && K > 1) xp = ag::concat({zeros({x.size(0), K - 1, x.size(2)}, DType::Float64), x}, 1);
  Tensor y;
  for (int64_t j = 0; j < K; ++j) {
    Tensor term = ag::mul(ag::narrow(xp, 1, j, T), ag::select(w, 1, j));
    y = y.defined() ? ag::add(y, term) : term;
  }
  return bias.defined() ? ag::add(y, bias) : y;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// gradcheck

TEST_CASE("gradcheck rms_norm (x and w, D = 1, strided x)") {
  const double eps = 1e-5;
  auto fn = [eps](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::rms_norm(in[0], in[1], eps)}; };
  check_gradcheck("rms_norm", fn, {leaf(randn_t({3, 7})), leaf(rand_t({7}, 0.5, 1.5))});
  check_gradcheck("rms_norm D=1", fn, {leaf(randn_t({2, 3, 1})), leaf(rand_t({1}, 0.5, 1.5))});
  check_gradcheck("rms_norm strided", fn, {leaf(randn_t({6, 4}).transpose(0, 1)), leaf(rand_t({6}, 0.5, 1.5))});
}

// The mixed-precision forms (nn/precision.h): rms_norm rounding its output to another dtype, and add_cast adding a
// lower-precision y into x's dtype. Their gradients equal those of the op followed or preceded by ag::to, exactly:
// x's gradient in x's dtype, y's (or gy's) in its own.
TEST_CASE("rms_norm with out_dtype and add_cast give the gradients of the composition with ag::to") {
  const double eps = 1e-5;
  const Tensor xv = randn_t({4, 9}), wv = rand_t({9}, 0.5, 1.5), yv = randn_t({4, 9}, DType::Float32);
  const Tensor v32 = randn_t({4, 9}, DType::Float32), v64 = randn_t({4, 9});
  {
    const Tensor x1 = leaf(xv.clone()), w1 = leaf(wv.clone()), x2 = leaf(xv.clone()), w2 = leaf(wv.clone());
    const Tensor fused = ag::rms_norm(x1, w1, eps, DType::Float32);
    const Tensor comp = ag::to(ag::rms_norm(x2, w2, eps), DType::Float32);
    REQUIRE(fused.dtype() == DType::Float32);
    CHECK(fused.to_vector<double>() == comp.to_vector<double>());
    ag::backward(fused, v32);
    ag::backward(comp, v32);
    CHECK(ag::grad(x1).dtype() == DType::Float64);
    CHECK(ag::grad(x1).to_vector<double>() == ag::grad(x2).to_vector<double>());
    CHECK(ag::grad(w1).to_vector<double>() == ag::grad(w2).to_vector<double>());
  }
  {
    const Tensor x1 = leaf(xv.clone()), x2 = leaf(xv.clone());
    const Tensor y1 = yv.clone(), y2 = yv.clone();  // float32 leaves (leaf() would make them float64)
    ag::set_requires_grad(y1);
    ag::set_requires_grad(y2);
    const Tensor fused = ag::add_cast(x1, y1);
    const Tensor comp = ag::add(x2, ag::to(y2, DType::Float64));
    CHECK(fused.to_vector<double>() == comp.to_vector<double>());
    ag::backward(fused, v64);
    ag::backward(comp, v64);
    CHECK(ag::grad(y1).dtype() == DType::Float32);
    CHECK(ag::grad(x1).to_vector<double>() == ag::grad(x2).to_vector<double>());
    CHECK(ag::grad(y1).to_vector<double>() == ag::grad(y2).to_vector<double>());
  }
  auto fn = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::add_cast(in[0], in[1])}; };
  check_gradcheck("add_cast", fn, {leaf(randn_t({3, 5})), leaf(randn_t({3, 5}))});
}

TEST_CASE("gradcheck cross_entropy (ignored rows, (..., V) logits, int32 targets, V = 1)") {
  auto with_targets = [](Tensor targets, int64_t ignore) {
    return [targets, ignore](const std::vector<Tensor>& in) {
      return std::vector<Tensor>{ag::cross_entropy(in[0], targets, ignore)};
    };
  };
  check_gradcheck("cross_entropy", with_targets(from_vector<int64_t>({0, -100, 5, 2, 3}, {5}), -100),
                  {leaf(randn_t({5, 6}))});
  check_gradcheck("cross_entropy 3-d int32", with_targets(from_vector<int32_t>({3, 0, 1, 1, 3, 2}, {2, 3}), 1),
                  {leaf(randn_t({2, 3, 4}))});
  check_gradcheck("cross_entropy V=1", with_targets(from_vector<int64_t>({0, 0}, {2}), -100), {leaf(randn_t({2, 1}))});
  check_gradcheck("cross_entropy all ignored", with_targets(from_vector<int64_t>({-100, -100}, {2}), -100),
                  {leaf(randn_t({2, 3}))});
}

TEST_CASE("gradcheck l2_normalize") {
  auto fn = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::l2_normalize(in[0])}; };
  check_gradcheck("l2_normalize", fn, {leaf(randn_t({4, 5}))});
  check_gradcheck("l2_normalize D=1", fn, {leaf(rand_t({3, 1}, 0.5, 2.0))});
  check_gradcheck("l2_normalize strided", fn, {leaf(randn_t({5, 3}).transpose(0, 1))});
}

TEST_CASE("gradcheck rotary (offset, T = 1, 4-d)") {
  auto at = [](int64_t offset) {
    return [offset](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::rotary(in[0], offset, 10000.0)}; };
  };
  check_gradcheck("rotary", at(0), {leaf(randn_t({2, 3, 4, 6}))});
  check_gradcheck("rotary offset 1000 T=1", at(1000), {leaf(randn_t({3, 1, 8}))});
  check_gradcheck("rotary strided", at(17), {leaf(randn_t({2, 5, 3, 4}).transpose(1, 2))});
}

TEST_CASE("gradcheck causal_conv1d (x, w, bias, cache, both outputs, K = 1, K > T)") {
  auto fn = [](const std::vector<Tensor>& in) {
    CausalConv1dOutput o = ag::causal_conv1d(in[0], in[1], in[2], in[3]);
    std::vector<Tensor> outs{o.y};
    if (o.new_cache.defined()) outs.push_back(o.new_cache);
    return outs;
  };
  check_gradcheck("causal_conv1d", fn,
                  {leaf(randn_t({2, 5, 3})), leaf(randn_t({3, 4})), leaf(randn_t({3})), leaf(randn_t({2, 3, 3}))});
  check_gradcheck("causal_conv1d K>T", fn,
                  {leaf(randn_t({1, 2, 2})), leaf(randn_t({2, 5})), leaf(randn_t({2})), leaf(randn_t({1, 2, 4}))});
  check_gradcheck("causal_conv1d K=1", fn,
                  {leaf(randn_t({2, 3, 4})), leaf(randn_t({4, 1})), leaf(randn_t({4})), Tensor()});
  check_gradcheck("causal_conv1d no bias no cache", fn,
                  {leaf(randn_t({2, 6, 3})), leaf(randn_t({3, 3})), Tensor(), Tensor()});
  check_gradcheck(
      "causal_conv1d strided x", fn,
      {leaf(randn_t({2, 3, 4}).transpose(1, 2)), leaf(randn_t({3, 2})), Tensor(), leaf(randn_t({2, 3, 1}))});
}

// ---------------------------------------------------------------------------------------------------------
// fused backward vs the composition of primitives

TEST_CASE("swiglu equals silu(g) * a of the halves, forward and gradient (gradcheck, strided, F = 1)") {
  auto fn = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::swiglu(in[0])}; };
  auto composed = [](const std::vector<Tensor>& in) {
    const std::vector<Tensor> ga = ag::chunk(in[0], 2, -1);
    return std::vector<Tensor>{ag::mul(ag::silu(ga[0]), ga[1])};
  };
  for (const Tensor& u : {randn_t({3, 5, 14}), randn_t({2, 2}), randn_t({8, 6}).transpose(0, 1)}) {
    INFO(shape_str(u.shape()));
    check_gradcheck("swiglu", fn, {leaf(mul(u, 3.0))});
    const Tensor x = leaf(mul(u, 3.0)), xr = leaf(mul(u, 3.0));
    const Tensor y = fn({x})[0], yr = composed({xr})[0];
    check_close(y, yr, kTolF64, "forward");
    const Tensor gy = randn_t(y.shape());
    ag::backward(ag::sum(ag::mul(y, gy)));
    ag::backward(ag::sum(ag::mul(yr, gy)));
    check_close(ag::grad(x), ag::grad(xr), kTolF64, "gradient");
  }
  for (DType dt : {DType::Float32, DType::BFloat16}) {  // within the dtype tolerance of the float64 computation
    const Tensor u = randn_t({4, 10}, dt);
    check_close(swiglu_forward(u).to(DType::Float64), swiglu_forward(u.to(DType::Float64)), tolerance_for(dt),
                std::string(dtype_name(dt)));
  }
  CHECK_THROWS_WITH(swiglu_forward(randn_t({2, 3})), doctest::Contains("even last dim"));
}

TEST_CASE("fused backwards equal the gradients of their primitive compositions (float64)") {
  SUBCASE("rms_norm") {
    Tensor x = randn_t({4, 3, 9}), w = rand_t({9}, 0.5, 1.5), v = randn_t({4, 3, 9});
    auto fused = grads_of([](auto& in) { return ag::rms_norm(in[0], in[1], 1e-6); }, {x, w}, v);
    auto ref = grads_of([](auto& in) { return composed_rms_norm(in[0], in[1], 1e-6); }, {x, w}, v);
    check_same_grads(fused, ref, "rms_norm");
  }
  SUBCASE("cross_entropy") {
    std::vector<int64_t> tv = {4, -100, 0, 9, 9, 2, -100};
    Tensor logits = mul(randn_t({7, 10}), 4.0), v = scalar_tensor(1.7, DType::Float64);
    Tensor targets = from_vector(tv, {7});
    auto fused = grads_of([&](auto& in) { return ag::cross_entropy(in[0], targets); }, {logits}, v);
    auto ref = grads_of([&](auto& in) { return composed_cross_entropy(in[0], tv, -100); }, {logits}, v);
    check_same_grads(fused, ref, "cross_entropy");
  }
  SUBCASE("l2_normalize") {
    Tensor x = randn_t({5, 7}), v = randn_t({5, 7});
    auto fused = grads_of([](auto& in) { return ag::l2_normalize(in[0]); }, {x}, v);
    auto ref = grads_of([](auto& in) { return composed_l2_normalize(in[0], 1e-12); }, {x}, v);
    check_same_grads(fused, ref, "l2_normalize");
  }
  SUBCASE("rotary") {
    Tensor x = randn_t({2, 3, 5, 8}), v = randn_t({2, 3, 5, 8});
    auto fused = grads_of([](auto& in) { return ag::rotary(in[0], 1000, 10000.0); }, {x}, v);
    auto ref = grads_of([](auto& in) { return composed_rotary(in[0], 1000, 10000.0); }, {x}, v);
    check_same_grads(fused, ref, "rotary");
    // Forward too: the composition is an independent spelling of SPEC §2.9.
    check_close(rotary_forward(x, 1000, 10000.0), composed_rotary(x, 1000, 10000.0), kTolF64, "rotary forward");
  }
  SUBCASE("causal_conv1d") {
    Tensor x = randn_t({2, 6, 3}), w = randn_t({3, 4}), b = randn_t({3}), c = randn_t({2, 3, 3}),
           v = randn_t({2, 6, 3});
    auto fused = grads_of([](auto& in) { return ag::causal_conv1d(in[0], in[1], in[2], in[3]).y; }, {x, w, b, c}, v);
    auto ref = grads_of([](auto& in) { return composed_causal_conv1d(in[0], in[1], in[2], in[3]); }, {x, w, b, c}, v);
    check_same_grads(fused, ref, "causal_conv1d");
    auto fused_nc = grads_of([](auto& in) { return ag::causal_conv1d(in[0], in[1], in[2], in[3]).y; },
                             {x, w, Tensor(), Tensor()}, v);
    auto ref_nc = grads_of([](auto& in) { return composed_causal_conv1d(in[0], in[1], in[2], in[3]); },
                           {x, w, Tensor(), Tensor()}, v);
    check_same_grads(fused_nc, ref_nc, "causal_conv1d without bias/cache");
  }
}

// ---------------------------------------------------------------------------------------------------------
// float32 / bfloat16 backward kernels against the float64 kernels (gradchecked above) on the same inputs

TEST_CASE("fused backward kernels: float32 and bfloat16 match float64 on the same rounded inputs") {
  for (DType dt : {DType::Float32, DType::BFloat16}) {
    INFO(dtype_name(dt));
    const Tolerance tol = tolerance_for(dt);
    {  // rms_norm
      // Large enough that rows and dw columns run in parallel (cpu::kParallelGrain).
      Tensor x = randn_t({300, 130}, dt), w = rand_t({130}, 0.5, 1.5, dt), gy = randn_t({300, 130}, dt);
      RmsNormOutput o = rms_norm_forward(x, w, 1e-6);
      RmsNormGrads g = rms_norm_backward(gy, x, w, o.rstd);
      Tensor x64 = x.to(DType::Float64), w64 = w.to(DType::Float64);
      RmsNormGrads r = rms_norm_backward(gy.to(DType::Float64), x64, w64, rms_norm_forward(x64, w64, 1e-6).rstd);
      check_close(g.dx, r.dx, tol, "rms_norm dx");
      check_close(g.dw, r.dw, tol, "rms_norm dw");
    }
    {  // cross_entropy, V large
      Tensor logits = mul(randn_t({3, 5000}), 2.0).to(dt);
      Tensor targets = from_vector<int64_t>({17, -100, 4999}, {3});
      Tensor gl = scalar_tensor(0.75, dt == DType::Float64 ? DType::Float64 : DType::Float32);
      CrossEntropyOutput o = cross_entropy_forward(logits, targets);
      Tensor d = cross_entropy_backward(gl, logits, targets, o.lse);
      Tensor l64 = logits.to(DType::Float64);
      Tensor r = cross_entropy_backward(scalar_tensor(0.75, DType::Float64), l64, targets,
                                        cross_entropy_forward(l64, targets).lse);
      check_close(d, r, tol, "cross_entropy dlogits");
    }
    {  // l2_normalize
      Tensor x = randn_t({4, 19}, dt), gy = randn_t({4, 19}, dt);
      L2NormalizeOutput o = l2_normalize_forward(x);
      L2NormalizeOutput o64 = l2_normalize_forward(x.to(DType::Float64));
      check_close(l2_normalize_backward(gy, o.y, o.norm), l2_normalize_backward(gy.to(DType::Float64), o64.y, o64.norm),
                  tol, "l2_normalize dx");
    }
    {  // rotary
      Tensor gy = randn_t({2, 7, 10}, dt);
      check_close(rotary_backward(gy, 300, 10000.0), rotary_backward(gy.to(DType::Float64), 300, 10000.0), tol,
                  "rotary dx");
    }
    {  // causal_conv1d
      Tensor x = randn_t({2, 200, 40}, dt), w = randn_t({40, 3}, dt), c = randn_t({2, 40, 2}, dt);
      Tensor gy = randn_t({2, 200, 40}, dt), gnc = randn_t({2, 40, 2}, dt);
      CausalConv1dGrads g = causal_conv1d_backward(gy, gnc, x, w, c, true);
      CausalConv1dGrads r = causal_conv1d_backward(gy.to(DType::Float64), gnc.to(DType::Float64), x.to(DType::Float64),
                                                   w.to(DType::Float64), c.to(DType::Float64), true);
      check_close(g.dx, r.dx, tol, "conv dx");
      check_close(g.dw, r.dw, tol, "conv dw");
      check_close(g.dbias, r.dbias, tol, "conv dbias");
      check_close(g.dcache, r.dcache, tol, "conv dcache");
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// special cases

TEST_CASE("cross_entropy backward: ignored rows get zero gradient, all-ignored gives zero loss and grad") {
  Tensor logits = leaf(randn_t({4, 5}));
  Tensor loss = ag::cross_entropy(logits, from_vector<int64_t>({1, -100, 3, -100}, {4}));
  ag::backward(loss);
  std::vector<double> g = ag::grad(logits).to_vector<double>();
  for (int64_t v = 0; v < 5; ++v) {
    CHECK(g[1 * 5 + v] == 0.0);
    CHECK(g[3 * 5 + v] == 0.0);
  }
  // Non-ignored rows sum to zero (softmax − one-hot).
  double row0 = 0;
  for (int64_t v = 0; v < 5; ++v) row0 += g[v];
  CHECK(std::abs(row0) < 1e-12);

  Tensor l2 = leaf(randn_t({2, 3}));
  Tensor loss2 = ag::cross_entropy(l2, from_vector<int64_t>({-100, -100}, {2}));
  CHECK(loss2.item() == 0.0);
  ag::backward(loss2);
  for (double v : ag::grad(l2).to_vector<double>()) CHECK(v == 0.0);
}

TEST_CASE("l2_normalize backward below eps is g / eps") {
  const double eps = 0.5;
  Tensor x = leaf(from_vector<double>({0.03, -0.04, 3.0, 4.0}, {2, 2}));  // row norms 0.05 (< eps) and 5
  Tensor y = ag::l2_normalize(x, eps);
  Tensor v = from_vector<double>({1.0, -2.0, 0.5, 0.25}, {2, 2});
  ag::backward(y, v);
  std::vector<double> g = ag::grad(x).to_vector<double>();
  CHECK(g[0] == doctest::Approx(2.0));
  CHECK(g[1] == doctest::Approx(-4.0));
  // Row 1: (v − y <v, y>) / 5 with y = (0.6, 0.8): <v, y> = 0.5, so ((0.5 − 0.3) / 5, (0.25 − 0.4) / 5).
  CHECK(g[2] == doctest::Approx(0.04));
  CHECK(g[3] == doctest::Approx(-0.03));
}

TEST_CASE("fused ops record nothing without grad and skip gradients nobody asked for") {
  Tensor x = randn_t({2, 4, 3}), w = randn_t({3, 2}), c = leaf(randn_t({2, 3, 1}));
  CausalConv1dOutput plain = ag::causal_conv1d(x, w);
  CHECK_FALSE(ag::requires_grad(plain.y));
  CHECK(ag::grad_fn(plain.y) == nullptr);
  // Only the cache requires grad: the gradient reaches it; x and w (not leaves requiring grad) get none.
  CausalConv1dOutput o = ag::causal_conv1d(x, w, Tensor(), c);
  CHECK(ag::requires_grad(o.y));
  ag::backward(o.y, ones_like(o.y));
  REQUIRE(ag::grad(c).defined());
  CHECK(ag::grad(c).shape() == Shape{2, 3, 1});
  {
    ag::NoGradGuard ng;
    CHECK_FALSE(ag::requires_grad(ag::rms_norm(leaf(randn_t({2, 3})), leaf(randn_t({3})), 1e-6)));
  }
  // Backward of rms_norm with only w requiring grad leaves x's gradient untouched.
  Tensor xl = randn_t({3, 4}), wl = leaf(rand_t({4}, 0.5, 1.5));
  ag::backward(ag::rms_norm(xl, wl, 1e-6), randn_t({3, 4}));
  CHECK(ag::grad(wl).defined());
}
