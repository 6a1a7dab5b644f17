// gpu-labelled: the fused hot-path ops (tensor/ops/fused.h) on CUDA, forward and backward, against the CPU op on the
// float64 upcast of the same inputs (the CPU ops are checked against plain loops in test_fused.cpp). Backward
// references take the CUDA forward's saved statistics (rstd, lse, norm, y) upcast, so each kernel is checked on its
// own. Rotary is compared with the CPU op in the same dtype: SPEC §2.9 makes θ's precision dtype-dependent (float32
// angles for float32/bf16), so a float64 reference differs by far more than rounding at large positions.
// Outputs are poisoned by the allocator (see gpu_available), so an unwritten element is NaN and fails.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "autograd/functions/fused.h"
#include "tensor/cuda/backend.h"
#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

namespace {
const Device kGpu("cuda:0");
constexpr DType kDts[] = {DType::Float32, DType::BFloat16, DType::Float64};

// x (N, D) as a non-contiguous view: the transpose of a contiguous (D, N) tensor.
Tensor strided_rows(int64_t N, int64_t D, DType dt) {
  return randn_t({D, N}, dt).to(kGpu).transpose(0, 1);
}

// Logits (N, V) with some masked (−inf) entries, column 0 included, never at the target.
Tensor masked_logits(int64_t N, int64_t V, const std::vector<int64_t>& targets, DType dt) {
  std::vector<double> v = mul(randn_t({N, V}), 3.0).to_vector<double>();
  for (int64_t r = 0; r < N; ++r)
    for (int64_t c = 0; c < V; c += (r % 3) + 2)
      if (c != targets[r]) v[r * V + c] = -std::numeric_limits<double>::infinity();
  return from_vector<double>(v, {N, V}).to(dt);
}

std::vector<int64_t> make_targets(int64_t N, int64_t V, int64_t every_ignored, int64_t ignore_index = -100) {
  std::vector<int64_t> t(N);
  for (int64_t r = 0; r < N; ++r) t[r] = (every_ignored > 0 && r % every_ignored == 1) ? ignore_index : (r * 7919) % V;
  return t;
}
}  // namespace

namespace {
// a and b (any device) hold the same values bit for bit; on failure, how many differ and by how much at most.
void check_bitwise(const Tensor& a, const Tensor& b, const char* what) {
  const std::vector<double> x = a.to(kCPU).to_vector<double>(), y = b.to(kCPU).to_vector<double>();
  REQUIRE(x.size() == y.size());
  std::size_t differ = 0;
  double worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i)
    if (!(x[i] == y[i]) && !(std::isnan(x[i]) && std::isnan(y[i]))) {
      ++differ;
      worst = std::max(worst, std::abs(x[i] - y[i]));
    }
  INFO(what << ": " << differ << " of " << x.size() << " elements differ, max |diff| " << worst);
  CHECK(differ == 0);
}

// For outputs that are an exact cancellation of two terms (D = 1 normalisations): the error must be small
// relative to the terms that cancel, max|y − r| ≤ tol.max_abs_rel · max|term|.
void check_cancelled(const Tensor& y, const Tensor& r, const Tensor& term, Tolerance tol, const char* what) {
  std::vector<double> a = y.to_vector<double>(), b = r.to_vector<double>(), t = term.to_vector<double>();
  double err = 0, scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i) err = std::max(err, std::abs(a[i] - b[i]));
  for (double v : t) scale = std::max(scale, std::abs(v));
  INFO(what << ": max|y - r| " << err << " vs " << tol.max_abs_rel << " x " << scale << " (cancelled terms)");
  CHECK(err <= tol.max_abs_rel * scale);
}
}  // namespace

TEST_SUITE("gpu") {  // built into test_tensor_gpu (tests/CMakeLists.txt), ctest label gpu
  TEST_CASE("cuda rms_norm forward and backward match float64 (D = 1 65 200 768 4096 and rows 1 to 257 and strided x)") {
    if (!gpu_available()) return;
    const double eps = 1e-5;
    const std::vector<Shape> shapes = {{3, 1}, {5, 65}, {2, 7, 768}, {33, 4096}, {1, 3}, {0, 8}, {257, 768}, {130, 200}};
    for (DType dt : kDts) {
      const Tolerance tol = tolerance_for(dt);
      for (const Shape& s : shapes) {
        for (bool strided : {false, true}) {
          if (strided && s.size() != 2) continue;
          INFO(dtype_name(dt) << " " << shape_str(s) << (strided ? " strided" : ""));
          const int64_t D = s.back();
          Tensor x = strided ? strided_rows(s[0], D, dt) : randn_t(s, dt).to(kGpu);
          Tensor w = rand_t({D}, 0.5, 1.5, dt).to(kGpu);
          Tensor gy = randn_t(s, dt).to(kGpu);
          RmsNormOutput o = rms_norm_forward(x, w, eps);
          RmsNormOutput r = rms_norm_forward(host64(x), host64(w), eps);
          check_close(o.y.to(kCPU), r.y, tol, "y");
          check_close(o.rstd.to(kCPU), r.rstd, tol, "rstd");
          CHECK(o.rstd.dtype() == (dt == DType::Float64 ? DType::Float64 : DType::Float32));
          RmsNormGrads g = rms_norm_backward(gy, x, w, o.rstd);
          RmsNormGrads rg = rms_norm_backward(host64(gy), host64(x), host64(w), host64(o.rstd));
          if (D == 1) {
            // dx = gy·w·rstd − x·rstd³·gy·w·x: two nearly equal terms whose exact difference is ~0, so relative
            // error is meaningless; the error is bounded against the size of the cancelled terms instead.
            check_cancelled(g.dx.to(kCPU), rg.dx, mul(mul(host64(gy), host64(w)), host64(o.rstd).unsqueeze(-1)), tol, "dx");
          } else {
            check_close(g.dx.to(kCPU), rg.dx, tol, "dx");
          }
          check_close(g.dw.to(kCPU), rg.dw, tol, "dw");
          // dw is deterministic: a second run is bitwise identical.
          RmsNormGrads g2 = rms_norm_backward(gy, x, w, o.rstd);
          CHECK(g2.dw.to(kCPU).to_vector<double>() == g.dw.to(kCPU).to_vector<double>());
        }
      }
    }
  }

  TEST_CASE("cuda cross_entropy forward and backward match float64 (V = 1 and 32000 with N = 64 and 1)") {
    if (!gpu_available()) return;
    struct Case {
      int64_t N, V, every_ignored;
    };
    const std::vector<Case> cases = {{64, 32000, 5}, {1, 32000, 0}, {7, 1, 3}, {13, 65, 4}, {9, 1031, 0}};
    for (DType dt : kDts) {
      const Tolerance tol = tolerance_for(dt);
      for (const Case& c : cases) {
        for (DType it : {DType::Int64, DType::Int32}) {
          INFO(dtype_name(dt) << " N=" << c.N << " V=" << c.V << " " << dtype_name(it));
          std::vector<int64_t> tv = make_targets(c.N, c.V, c.every_ignored);
          Tensor logits = mul(randn_t({c.N, c.V}), 2.0).to(dt).to(kGpu);
          Tensor targets = from_vector<int64_t>(tv, {c.N}).to(it).to(kGpu);
          CrossEntropyOutput o = cross_entropy_forward(logits, targets);
          CrossEntropyOutput r = cross_entropy_forward(host64(logits), host64(targets));
          check_close(o.loss.to(kCPU).reshape({1}), r.loss.reshape({1}), tol, "loss");
          check_close(o.lse.to(kCPU), r.lse, tol, "lse");
          Tensor gloss = scalar_tensor(0.75, DType::Float32, kGpu);
          Tensor d = cross_entropy_backward(gloss, logits, targets, o.lse);
          Tensor rd = cross_entropy_backward(host64(gloss), host64(logits), host64(targets), host64(o.lse));
          if (c.V == 1) {
            // softmax = one-hot = 1: the exact gradient is 0, a cancellation of two terms of size gloss/n_valid
            // (relative error against a ~0 reference is meaningless; see check_cancelled).
            check_cancelled(d.to(kCPU), rd, full({c.N, 1}, 0.75, DType::Float64), tol, "dlogits");
          } else {
            check_close(d.to(kCPU), rd, tol, "dlogits");
          }
        }
      }
    }
  }

  TEST_CASE("cuda cross_entropy with masked -inf logits and strided and 3-d logits") {
    if (!gpu_available()) return;
    for (DType dt : kDts) {
      const Tolerance tol = tolerance_for(dt);
      INFO(dtype_name(dt));
      const int64_t N = 17, V = 300;
      std::vector<int64_t> tv = make_targets(N, V, 4);
      Tensor logits = masked_logits(N, V, tv, dt).to(kGpu);
      Tensor targets = from_vector<int64_t>(tv, {N}, kGpu);
      CrossEntropyOutput o = cross_entropy_forward(logits, targets);
      CrossEntropyOutput r = cross_entropy_forward(host64(logits), host64(targets));
      check_close(o.loss.to(kCPU).reshape({1}), r.loss.reshape({1}), tol, "masked loss");
      check_close(o.lse.to(kCPU), r.lse, tol, "masked lse");
      Tensor gloss = scalar_tensor(1.0, dt, kGpu);
      check_close(cross_entropy_backward(gloss, logits, targets, o.lse).to(kCPU),
                  cross_entropy_backward(host64(gloss), host64(logits), host64(targets), host64(o.lse)), tol, "masked dlogits");
      // Strided (transposed) logits in a 3-d shape.
      Tensor lt = randn_t({V, 2, 5}, dt).to(kGpu).permute({1, 2, 0});
      std::vector<int64_t> t3 = make_targets(10, V, 3);
      Tensor tg = from_vector<int64_t>(t3, {2, 5}, kGpu);
      CrossEntropyOutput o3 = cross_entropy_forward(lt, tg);
      CrossEntropyOutput r3 = cross_entropy_forward(host64(lt), host64(tg));
      check_close(o3.loss.to(kCPU).reshape({1}), r3.loss.reshape({1}), tol, "strided loss");
      check_close(o3.lse.to(kCPU), r3.lse, tol, "strided lse");
      check_close(cross_entropy_backward(gloss, lt, tg, o3.lse).to(kCPU),
                  cross_entropy_backward(host64(gloss), host64(lt), host64(tg), host64(o3.lse)), tol, "strided dlogits");
    }
  }

  TEST_CASE("cuda cross_entropy: all rows ignored gives zero loss and gradient and bad targets throw") {
    if (!gpu_available()) return;
    Tensor logits = randn_t({4, 9}, DType::Float32).to(kGpu);
    Tensor ign = full({4}, -1.0, DType::Int64, kGpu);
    CrossEntropyOutput o = cross_entropy_forward(logits, ign, -1);
    CHECK(o.loss.item() == 0.0);
    Tensor d = cross_entropy_backward(scalar_tensor(1.0, DType::Float32, kGpu), logits, ign, o.lse, -1);
    for (float v : d.to(kCPU).to_vector<float>()) CHECK(v == 0.0f);
    check_close(o.lse.to(kCPU), cross_entropy_forward(host64(logits), host64(ign), -1).lse, kTolF32, "lse of ignored rows");
    // Bad targets are reported by the next synchronisation of the device (the forward does not stop the host).
    Tensor bad = from_vector<int64_t>({1, -100, 9, 12}, {4}, kGpu);
    check_throws_with([&] {
      cross_entropy_forward(logits, bad);
      cuda::synchronize(0);
    }, {"cross_entropy_forward", "target 9", "row 2", "V = 9"});
    Tensor neg = from_vector<int32_t>({1, -3, 0, 2}, {4}).to(kGpu);
    check_throws_with([&] { (void)cross_entropy_forward(logits, neg).loss.item(); }, {"target -3", "row 1", "V = 9"});
    // Reported once: the device is clean afterwards, and good targets raise nothing.
    cuda::synchronize(0);
    Tensor good = from_vector<int64_t>({1, -100, 8, 0}, {4}, kGpu);
    CHECK(std::isfinite(cross_entropy_forward(logits, good).loss.item()));
    // Many calls without a synchronisation (more than the pinned slots), one bad in the middle: raised once.
    int raised = 0;
    for (int i = 0; i < 600; ++i) {
      try {
        (void)cross_entropy_forward(logits, i == 300 ? bad : good);
      } catch (const std::invalid_argument& e) {
        ++raised;
        CHECK(std::string(e.what()).find("target 9") != std::string::npos);
      }
    }
    try {
      cuda::synchronize(0);
    } catch (const std::invalid_argument&) {
      ++raised;
    }
    CHECK(raised == 1);
  }

  TEST_CASE("cuda l2_normalize forward and backward match float64 (zero row and D = 1 65 768 and strided)") {
    if (!gpu_available()) return;
    const double eps = 1e-12;
    const std::vector<Shape> shapes = {{3, 1}, {6, 65}, {2, 4, 768}, {5, 4096}};
    for (DType dt : kDts) {
      const Tolerance tol = tolerance_for(dt);
      for (const Shape& s : shapes) {
        for (bool strided : {false, true}) {
          if (strided && s.size() != 2) continue;
          INFO(dtype_name(dt) << " " << shape_str(s) << (strided ? " strided" : ""));
          const int64_t D = s.back();
          Tensor x = strided ? strided_rows(s[0], D, dt) : randn_t(s, dt).to(kGpu);
          if (!strided && s.size() == 2 && s[0] > 2) x.select(0, 1).zero_();  // a zero row: the clamp path
          Tensor gy = randn_t(s, dt).to(kGpu);
          L2NormalizeOutput o = l2_normalize_forward(x, eps);
          L2NormalizeOutput r = l2_normalize_forward(host64(x), eps);
          check_close(o.y.to(kCPU), r.y, tol, "y");
          check_close(o.norm.to(kCPU), r.norm, tol, "norm");
          Tensor dx = l2_normalize_backward(gy, o.y, o.norm, eps);
          Tensor rdx = l2_normalize_backward(host64(gy), host64(o.y), host64(o.norm), eps);
          if (D == 1) {
            // dx = (gy − y·<gy, y>)/norm with y = ±1: the two terms cancel exactly (see check_cancelled).
            check_cancelled(dx.to(kCPU), rdx, div(host64(gy), maximum(host64(o.norm).unsqueeze(-1), scalar_tensor(eps, DType::Float64))),
                            tol, "dx");
          } else {
            check_close(dx.to(kCPU), rdx, tol, "dx");
          }
        }
      }
    }
    // The clamp with a large eps on every row.
    Tensor x = mul(randn_t({4, 65}, DType::Float32), 1e-3).to(kGpu), gy = randn_t({4, 65}, DType::Float32).to(kGpu);
    L2NormalizeOutput o = l2_normalize_forward(x, 1.0);
    check_close(o.y.to(kCPU), l2_normalize_forward(host64(x), 1.0).y, kTolF32, "clamped y");
    check_close(l2_normalize_backward(gy, o.y, o.norm, 1.0).to(kCPU),
                l2_normalize_backward(host64(gy), host64(o.y), host64(o.norm), 1.0), kTolF32, "clamped dx");
  }

  TEST_CASE("cuda rotary forward and backward match the cpu op (T = 1 and offsets up to 100000 and strided)") {
    if (!gpu_available()) return;
    const std::vector<Shape> shapes = {{1, 2}, {2, 5, 64}, {3, 7, 6}, {2, 3, 128, 128}, {4, 1, 16}};
    for (DType dt : kDts) {
      const Tolerance tol = tolerance_for(dt);
      for (const Shape& s : shapes) {
        for (int64_t off : {int64_t{0}, int64_t{37}, int64_t{100000}}) {
          INFO(dtype_name(dt) << " " << shape_str(s) << " offset " << off);
          Tensor x = randn_t(s, dt).to(kGpu);
          Tensor xc = x.to(kCPU);
          check_close(rotary_forward(x, off, 10000.0).to(kCPU).to(DType::Float64),
                      rotary_forward(xc, off, 10000.0).to(DType::Float64), tol, "forward");
          check_close(rotary_backward(x, off, 500000.0).to(kCPU).to(DType::Float64),
                      rotary_backward(xc, off, 500000.0).to(DType::Float64), tol, "backward");
          if (off == 37) {  // small positions: also against the float64 op
            check_close(rotary_forward(x, off, 10000.0).to(kCPU), rotary_forward(host64(x), off, 10000.0), tol,
                        "forward vs float64");
          }
        }
      }
      // Strided: (B, T, D) seen through a transpose of (T, B, D).
      Tensor xt = randn_t({9, 3, 32}, dt).to(kGpu).transpose(0, 1);
      check_close(rotary_forward(xt, 100000, 10000.0).to(kCPU).to(DType::Float64),
                  rotary_forward(xt.to(kCPU), 100000, 10000.0).to(DType::Float64), tol, "strided");
    }
  }

  TEST_CASE("cuda causal_conv1d forward and backward match float64 (K = 1 and K > T and T = 1 and strided)") {
    if (!gpu_available()) return;
    struct Case {
      int64_t B, T, C, K;
      bool bias, cache, gnc, strided;
    };
    const std::vector<Case> cases = {
        {2, 7, 5, 4, true, true, true, false},    {1, 1, 3, 1, false, false, false, false},
        {2, 2, 6, 5, true, true, true, false},    {2, 2, 6, 5, false, false, false, false},
        {3, 33, 64, 4, true, false, true, true},  {1, 1, 70, 4, true, true, false, false},
        {2, 129, 96, 4, false, true, true, true}, {1, 3, 2, 1, true, false, false, true},
        // the register-window tiles: K < window rows (3 of 4), the 8- and 16-row windows, several 128-token blocks
        {2, 300, 64, 3, true, true, true, false}, {1, 150, 40, 8, true, false, true, false},
        {2, 37, 16, 12, true, true, true, false}, {1, 260, 24, 6, false, true, true, false}};
    for (DType dt : kDts) {
      const Tolerance tol = tolerance_for(dt);
      for (const Case& c : cases) {
        INFO(dtype_name(dt) << " B=" << c.B << " T=" << c.T << " C=" << c.C << " K=" << c.K << " bias=" << c.bias
                            << " cache=" << c.cache << " gnc=" << c.gnc << " strided=" << c.strided);
        Tensor x = c.strided ? randn_t({c.B, c.C, c.T}, dt).to(kGpu).transpose(1, 2) : randn_t({c.B, c.T, c.C}, dt).to(kGpu);
        Tensor w = randn_t({c.C, c.K}, dt).to(kGpu);
        Tensor bias = c.bias ? randn_t({c.C}, dt).to(kGpu) : Tensor();
        Tensor cache = c.cache ? randn_t({c.B, c.C, c.K - 1}, dt).to(kGpu) : Tensor();
        CausalConv1dOutput o = causal_conv1d_forward(x, w, bias, cache);
        CausalConv1dOutput r = causal_conv1d_forward(host64(x), host64(w), host64(bias), host64(cache));
        check_close(o.y.to(kCPU), r.y, tol, "y");
        REQUIRE(o.new_cache.defined() == (c.K > 1));
        if (c.K > 1) check_close(o.new_cache.to(kCPU), r.new_cache, tol, "new_cache");
        Tensor gy = randn_t({c.B, c.T, c.C}, dt).to(kGpu);
        Tensor gnc = c.gnc && c.K > 1 ? randn_t({c.B, c.C, c.K - 1}, dt).to(kGpu) : Tensor();
        CausalConv1dGrads g = causal_conv1d_backward(gy, gnc, x, w, cache, c.bias);
        CausalConv1dGrads rg = causal_conv1d_backward(host64(gy), host64(gnc), host64(x), host64(w), host64(cache), c.bias);
        check_close(g.dx.to(kCPU), rg.dx, tol, "dx");
        check_close(g.dw.to(kCPU), rg.dw, tol, "dw");
        REQUIRE(g.dbias.defined() == c.bias);
        if (c.bias) check_close(g.dbias.to(kCPU), rg.dbias, tol, "dbias");
        REQUIRE(g.dcache.defined() == (c.K > 1));
        if (c.K > 1) check_close(g.dcache.to(kCPU), rg.dcache, tol, "dcache");
        CausalConv1dGrads g2 = causal_conv1d_backward(gy, gnc, x, w, cache, c.bias);
        CHECK(g2.dw.to(kCPU).to_vector<double>() == g.dw.to(kCPU).to_vector<double>());
      }
    }
    const Tensor x = randn_t({1, 4, 8}, DType::Float32).to(kGpu), w = randn_t({8, 17}, DType::Float32).to(kGpu);
    CHECK_THROWS_WITH(causal_conv1d_forward(x, w, Tensor(), Tensor()),
                      doctest::Contains("kernel size K = 17 exceeds the supported 16"));
  }

  TEST_CASE("cuda fused autograd wrappers give the float64 cpu gradients") {
    if (!gpu_available()) return;
    // Gradients of Σ <fn(inputs), v> through the engine: float32 CUDA leaves vs float64 CPU leaves.
    auto run = [](const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn,
                  const std::vector<Tensor>& values, const std::vector<Tensor>& vs, bool on_gpu) {
      std::vector<Tensor> leaves;
      for (const Tensor& t : values) {
        Tensor l = on_gpu ? t.to(DType::Float32).to(kGpu).detach() : t.to(DType::Float64).detach();
        if (l.is_same(t)) l = t.clone();
        ag::set_requires_grad(l);
        leaves.push_back(l);
      }
      std::vector<Tensor> outs = fn(leaves), grads;
      for (const Tensor& v : vs) grads.push_back(on_gpu ? v.to(outs[grads.size()].dtype()).to(kGpu) : v);
      ag::backward(outs, grads);
      std::vector<Tensor> gs;
      for (const Tensor& l : leaves) gs.push_back(host64(ag::grad(l)));
      return gs;
    };
    auto compare_all = [&](const char* what, const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn,
                           const std::vector<Tensor>& values, const std::vector<Tensor>& vs) {
      // Inputs rounded to float32 first, so both sides see the same values.
      std::vector<Tensor> v32;
      for (const Tensor& t : values) v32.push_back(t.to(DType::Float32).to(DType::Float64));
      std::vector<Tensor> g = run(fn, v32, vs, true), r = run(fn, v32, vs, false);
      for (std::size_t i = 0; i < g.size(); ++i) {
        INFO(what << " input " << i);
        REQUIRE(g[i].defined());
        check_close(g[i], r[i], kTolF32, what);
      }
    };
    compare_all(
        "rms_norm", [](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::rms_norm(in[0], in[1], 1e-5)}; },
        {randn_t({6, 65}), rand_t({65}, 0.5, 1.5)}, {randn_t({6, 65})});
    compare_all(
        "l2_normalize", [](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::l2_normalize(in[0])}; },
        {randn_t({5, 768})}, {randn_t({5, 768})});
    compare_all(
        "rotary", [](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::rotary(in[0], 3, 10000.0)}; },
        {randn_t({2, 5, 64})}, {randn_t({2, 5, 64})});
    compare_all(
        "causal_conv1d",
        [](const std::vector<Tensor>& in) {
          CausalConv1dOutput o = ag::causal_conv1d(in[0], in[1], in[2], in[3]);
          return std::vector<Tensor>{o.y, o.new_cache};
        },
        {randn_t({2, 9, 12}), randn_t({12, 4}), randn_t({12}), randn_t({2, 12, 3})},
        {randn_t({2, 9, 12}), randn_t({2, 12, 3})});
    // cross_entropy: targets fixed (not a leaf); the loss is 0-d.
    std::vector<int64_t> tv = make_targets(8, 1000, 3);
    Tensor tg = from_vector<int64_t>(tv, {8});
    compare_all(
        "cross_entropy",
        [tg](const std::vector<Tensor>& in) {
          return std::vector<Tensor>{ag::cross_entropy(in[0], in[0].is_cuda() ? tg.to(kGpu) : tg)};
        },
        {mul(randn_t({8, 1000}), 2.0)}, {scalar_tensor(1.5, DType::Float64)});
  }

  TEST_CASE("cuda swiglu forward and backward match float64 (F = 2048 packs, odd F, one row)") {
    if (!gpu_available()) return;
    for (DType dt : kDts) {
      for (Shape s : {Shape{2, 3, 4096}, Shape{5, 14}, Shape{1, 2}}) {
        INFO(dtype_name(dt) << " " << shape_str(s));
        const Tensor u = mul(randn_t(s, dt), 3.0).to(kGpu);
        Shape ys = s;
        ys.back() /= 2;
        const Tensor gy = randn_t(ys, dt).to(kGpu);
        check_close(swiglu_forward(u).to(kCPU), swiglu_forward(host64(u)), tolerance_for(dt), "y");
        check_close(swiglu_backward(gy, u).to(kCPU), swiglu_backward(host64(gy), host64(u)), tolerance_for(dt), "du");
      }
    }
  }

  TEST_CASE("cuda adamw_step_ matches the CPU update over several steps (packed and odd sizes, every dtype)") {
    if (!gpu_available()) return;
    for (DType dt : kDts) {
      const DType sd = dt == DType::Float64 ? DType::Float64 : DType::Float32;
      for (int64_t n : {1, 7, 64, 1000, 4099}) {
        INFO(dtype_name(dt) << " n=" << n);
        Tensor p = randn_t({n}, dt), m = zeros({n}, sd), v = zeros({n}, sd);
        Tensor pg = p.to(kGpu), mg = m.to(kGpu), vg = v.to(kGpu);
        for (int t = 1; t <= 3; ++t) {
          AdamWCoefs c;
          c.decay = 1.0 - 1e-2 * 0.1;
          c.beta1 = 0.9;
          c.beta2 = 0.95;
          c.eps = 1e-8;
          c.step_size = 1e-2 / (1.0 - std::pow(0.9, t));
          c.bc2_sqrt = std::sqrt(1.0 - std::pow(0.95, t));
          const Tensor g = randn_t({n}, dt);
          adamw_step_(p, g, m, v, c);
          adamw_step_(pg, g.to(kGpu), mg, vg, c);
        }
        const Tolerance tol = tolerance_for(dt);
        check_close(pg.to(kCPU).to(DType::Float64), p.to(DType::Float64), tol, "param");
        check_close(mg.to(kCPU).to(DType::Float64), m.to(DType::Float64), tolerance_for(sd), "exp_avg");
        check_close(vg.to(kCPU).to(DType::Float64), v.to(DType::Float64), tolerance_for(sd), "exp_avg_sq");
      }
    }
  }

  TEST_CASE("cuda sum_of_squares and scale_ match the CPU over a long mixed list (deterministic)") {
    if (!gpu_available()) return;
    std::vector<Tensor> cpu_ts, gpu_ts;
    const int64_t sizes[] = {1, 0, 7, 8191, 8192, 8193, 100000, 3};
    for (int i = 0; i < 90; ++i) {
      cpu_ts.push_back(randn_t({sizes[i % 8]}, kDts[(i / 5) % 3]));
      gpu_ts.push_back(cpu_ts.back().to(kGpu));
    }
    const double want = sum_of_squares(cpu_ts).item();
    const Tensor got = sum_of_squares(gpu_ts);
    CHECK(got.is_cuda());
    CHECK(got.item() == doctest::Approx(want).epsilon(1e-9));
    CHECK(sum_of_squares(gpu_ts).item() == got.item());  // bitwise the same on a second call
    scale_(cpu_ts, 0.61);
    scale_(gpu_ts, 0.61);
    for (std::size_t i = 0; i < cpu_ts.size(); ++i) {
      INFO("tensor " << i << " " << dtype_name(cpu_ts[i].dtype()));
      check_close(gpu_ts[i].to(kCPU).to(DType::Float64), cpu_ts[i].to(DType::Float64), tolerance_for(cpu_ts[i].dtype()),
                  "scaled");
    }
  }

  // Mixed precision (nn/precision.h): float32 x and w with a bfloat16 y, and the bfloat16 gradient coming back. The
  // fused forward gives exactly what the separate cast gives: y = rms_norm(x).to(bf16), bit for bit. The backward
  // of gy in bf16 is the backward of gy.to(float32) to the float32 tolerance: the kernel instantiated for a bf16 gy
  // may contract its multiply-adds into FMAs differently (measured on the H100: 42 of 325 dx elements 1 ulp apart,
  // max 2.4e-7, at D = 65; bitwise equal at the other shapes). Shapes take the warp-per-row kernels (D = 768, 65
  // unaligned) and the long-row block kernels (D = 4096, 3001 unaligned), plus one row and zero rows.
  TEST_CASE("cuda rms_norm with a bfloat16 output and gradient equals the float32 op plus casts") {
    if (!gpu_available()) return;
    const double eps = 1e-5;
    const std::vector<Shape> shapes = {{2, 7, 768}, {5, 65}, {33, 4096}, {3, 3001}, {1, 768}, {0, 768}};
    for (const Shape& s : shapes) {
      INFO(shape_str(s));
      const int64_t D = s.back();
      const Tensor x = randn_t(s, DType::Float32).to(kGpu), w = rand_t({D}, 0.5, 1.5, DType::Float32).to(kGpu);
      const Tensor gy = randn_t(s, DType::BFloat16).to(kGpu);
      const RmsNormOutput fused = rms_norm_forward(x, w, eps, DType::BFloat16);
      const RmsNormOutput plain = rms_norm_forward(x, w, eps);
      REQUIRE(fused.y.dtype() == DType::BFloat16);
      check_bitwise(fused.y, plain.y.to(DType::BFloat16), "y");
      check_bitwise(fused.rstd, plain.rstd, "rstd");
      const RmsNormGrads gf = rms_norm_backward(gy, x, w, plain.rstd);
      const RmsNormGrads gp = rms_norm_backward(gy.to(DType::Float32), x, w, plain.rstd);
      REQUIRE(gf.dx.dtype() == DType::Float32);
      check_close(gf.dx.to(kCPU), gp.dx.to(kCPU), tolerance_for(DType::Float32), "dx");
      check_close(gf.dw.to(kCPU), gp.dw.to(kCPU), tolerance_for(DType::Float32), "dw");
    }
  }

  // The residual add of a bfloat16 sublayer output into the float32 stream: one kernel, the same values as the cast
  // then the add; sizes that take the packed path, the odd tail path, and a misaligned view.
  TEST_CASE("cuda add_cast equals add of the cast, bit for bit (packed, odd size, misaligned, strided)") {
    if (!gpu_available()) return;
    for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{4}, int64_t{4099}, int64_t{1} << 20}) {
      INFO("n " << n);
      const Tensor x = randn_t({n}, DType::Float32).to(kGpu), y = randn_t({n}, DType::BFloat16).to(kGpu);
      const Tensor got = add_cast(x, y);
      REQUIRE(got.dtype() == DType::Float32);
      check_bitwise(got, add(x, y.to(DType::Float32)), "add_cast");
    }
    const Tensor xb = randn_t({4097}, DType::Float32).to(kGpu), yb = randn_t({4097}, DType::BFloat16).to(kGpu);
    const Tensor xs = xb.slice(0, 1, 4097), ys = yb.slice(0, 1, 4097);  // 4-byte / 2-byte offsets: no packs
    check_bitwise(add_cast(xs, ys), add(xs, ys.to(DType::Float32)), "add_cast misaligned");
    const Tensor xt = strided_rows(64, 48, DType::Float32), yt = strided_rows(64, 48, DType::BFloat16);
    check_bitwise(add_cast(xt, yt), add(xt, yt.to(DType::Float32)), "add_cast strided");
    check_throws_with([&] { add_cast(xb, randn_t({4096}, DType::BFloat16).to(kGpu)); }, {"add_cast", "4097", "4096"});
  }
}
