// gpu-labelled: windowed causal attention on CUDA (hydra/mixers/window_attn/window_attn_cuda.cu), float32 and
// bfloat16, forward and backward, against the float64 dense reference window_attn_ref on the CPU computed from the
// float64 upcast of the same inputs (for bf16: the inputs are drawn, rounded to bf16, and that is upcast). Reference
// gradients come from the autograd engine through the reference with the same upstream do; lse is checked against a
// float64 log-sum-exp by plain loops. Outputs are poisoned by the allocator (see gpu_available), so an unwritten
// element is NaN and fails.
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "hydra/mixers/window_attn/window_attn.h"
#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

namespace {

const Device kGpu("cuda:0");
constexpr DType kDts[] = {DType::Float32, DType::BFloat16};

struct Case {
  int64_t B, T, P, H, K, V, W;  // S = T + P
};

std::string case_str(const Case& c, DType dt) {
  return fmt::format("B={} T={} P={} H={} K={} V={} W={} {}", c.B, c.T, c.P, c.H, c.K, c.V, c.W, dtype_name(dt));
}

// Inputs drawn in float64, rounded to dt, on the GPU; the reference uses host64 of these.
struct Inputs {
  Tensor q, k, v, gout;
};

Inputs make_inputs(const Case& c, DType dt) {
  const int64_t S = c.T + c.P;
  return {randn_t({c.B, c.T, c.H, c.K}, dt).to(kGpu), randn_t({c.B, S, c.H, c.K}, dt).to(kGpu),
          randn_t({c.B, S, c.H, c.V}, dt).to(kGpu), randn_t({c.B, c.T, c.H, c.V}, dt).to(kGpu)};
}

double default_scale(int64_t K) { return 1.0 / std::sqrt(static_cast<double>(K)); }

struct RefResult {
  Tensor o, dq, dk, dv;
};

// The float64 reference output and, through the autograd engine, the gradients of Σ <o, gout>.
RefResult reference(const Inputs& in, int64_t window, double scale) {
  const Tensor q = leaf(host64(in.q)), k = leaf(host64(in.k)), v = leaf(host64(in.v));
  const Tensor o = window_attn_ref(q, k, v, window, scale);
  ag::backward(o, host64(in.gout));
  return {o.detach(), ag::grad(q), ag::grad(k), ag::grad(v)};
}

// lse by plain loops over the visible keys (float64): lse[b, h, t] = log Σ_m exp(scale · q_t·k_m).
Tensor reference_lse(const Tensor& q_in, const Tensor& k_in, int64_t window, double scale) {
  const Tensor q = host64(q_in).contiguous(), k = host64(k_in).contiguous();
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), K = q.size(3), S = k.size(1), P = S - T;
  const std::vector<double> qv = q.to_vector<double>(), kv = k.to_vector<double>();
  std::vector<double> out(static_cast<std::size_t>(B * H * T));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t) {
        std::vector<double> s;
        for (int64_t m = 0; m < S; ++m) {
          if (!(P + t - window < m && m <= P + t)) continue;
          double dot = 0;
          for (int64_t e = 0; e < K; ++e) dot += qv[((b * T + t) * H + h) * K + e] * kv[((b * S + m) * H + h) * K + e];
          s.push_back(scale * dot);
        }
        double mx = -std::numeric_limits<double>::infinity(), sum = 0;
        for (double x : s) mx = std::max(mx, x);
        for (double x : s) sum += std::exp(x - mx);
        out[(b * H + h) * T + t] = mx + std::log(sum);
      }
  return from_vector(out, {B, H, T});
}

// Rows [from, to) of dim 1 of t are all exactly zero.
bool rows_zero(const Tensor& t, int64_t from, int64_t to) {
  for (double x : host64(t).slice(1, from, to).contiguous().to_vector<double>())
    if (x != 0.0) return false;
  return true;
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const std::vector<double> x = host64(a).contiguous().to_vector<double>();
  const std::vector<double> y = host64(b).contiguous().to_vector<double>();
  for (std::size_t i = 0; i < x.size(); ++i)
    if (!(x[i] == y[i])) return false;
  return true;
}

// The CUDA forward and backward against the reference for one case and dtype; also the output dtypes and devices,
// and (P ≥ W) the exact zeros of the cache rows no query sees.
void check_case(const Case& c, DType dt) {
  INFO(case_str(c, dt));
  const Tolerance tol = tolerance_for(dt);
  const double scale = default_scale(c.K);
  const Inputs in = make_inputs(c, dt);
  const WindowAttnOutput out = window_attn_forward(in.q, in.k, in.v, c.W, scale);
  REQUIRE(out.o.is_cuda());
  REQUIRE(out.o.dtype() == dt);
  REQUIRE(out.lse.dtype() == DType::Float32);
  REQUIRE(out.o.shape() == Shape{c.B, c.T, c.H, c.V});
  REQUIRE(out.lse.shape() == Shape{c.B, c.H, c.T});
  const WindowAttnGrads g = window_attn_backward(in.gout, in.q, in.k, in.v, out.o, out.lse, c.W, scale);
  REQUIRE(g.dq.dtype() == dt);
  REQUIRE(g.dk.dtype() == dt);
  REQUIRE(g.dv.dtype() == dt);
  REQUIRE(g.dk.is_cuda());
  const RefResult r = reference(in, c.W, scale);
  check_close(host64(out.o), r.o, tol, "o");
  check_close(host64(out.lse), reference_lse(in.q, in.k, c.W, scale), tol, "lse");
  check_close(host64(g.dq), r.dq, tol, "dq");
  check_close(host64(g.dk), r.dk, tol, "dk");
  check_close(host64(g.dv), r.dv, tol, "dv");
  if (c.P >= c.W) {
    const int64_t hidden = c.P - c.W + 1;  // key rows 0..P−W are seen by no query
    CHECK(rows_zero(g.dk, 0, hidden));
    CHECK(rows_zero(g.dv, 0, hidden));
  }
}

}  // namespace

TEST_SUITE("gpu") {  // built into test_hydra_gpu (tests/CMakeLists.txt), ctest label gpu
  TEST_CASE("cuda window_attn matches the float64 reference (head dims 1 16 20 64 128 and K unlike V)") {
    if (!gpu_available()) return;
    const std::vector<Case> cases = {
        {1, 1, 0, 3, 16, 16, 4},       // one token, no cache, B = 1
        {2, 1, 5, 3, 20, 20, 8},       // one token, cache P = 5 < W
        {1, 1, 12, 3, 16, 20, 8},      // one token, cache P > W, K != V
        {2, 37, 0, 3, 16, 16, 8},      // T not a multiple of the tile, W = 8
        {1, 37, 0, 3, 20, 20, 8},      // the golden model's head dim
        {1, 200, 0, 3, 64, 64, 64},    // several query tiles, W = one tile, not tile multiples
        {2, 70, 0, 3, 20, 20, 100},    // window >= S: full causal
        {2, 40, 5, 3, 64, 64, 16},     // cache P = 5
        {1, 45, 90, 3, 16, 16, 10},    // cache P > W: a whole key tile no query sees (zero dk, dv)
        {2, 33, 7, 3, 128, 128, 40},   // K = V = 128 (32-row tiles), window spanning two key tiles
        {1, 50, 3, 3, 128, 64, 20},    // K != V in the 128 variant
        {2, 29, 4, 3, 48, 20, 12},     // K != V in the 64 variant
        {1, 130, 20, 2, 64, 128, 1000},  // full causal with a cache, V = 128
        {1, 66, 0, 3, 1, 1, 5},        // head dims 1
    };
    for (DType dt : kDts)
      for (const Case& c : cases) check_case(c, dt);
  }

  TEST_CASE("cuda window_attn results are deterministic run to run") {
    if (!gpu_available()) return;
    const Case c{2, 150, 30, 3, 64, 64, 48};
    const double scale = default_scale(c.K);
    for (DType dt : kDts) {
      INFO(case_str(c, dt));
      const Inputs in = make_inputs(c, dt);
      const WindowAttnOutput a = window_attn_forward(in.q, in.k, in.v, c.W, scale);
      const WindowAttnOutput b = window_attn_forward(in.q, in.k, in.v, c.W, scale);
      CHECK(bitwise_equal(a.o, b.o));
      CHECK(bitwise_equal(a.lse, b.lse));
      const WindowAttnGrads ga = window_attn_backward(in.gout, in.q, in.k, in.v, a.o, a.lse, c.W, scale);
      const WindowAttnGrads gb = window_attn_backward(in.gout, in.q, in.k, in.v, a.o, a.lse, c.W, scale);
      CHECK(bitwise_equal(ga.dq, gb.dq));
      CHECK(bitwise_equal(ga.dk, gb.dk));
      CHECK(bitwise_equal(ga.dv, gb.dv));
    }
  }

  TEST_CASE("cuda window_attn window at least S gives the same result as window S") {
    if (!gpu_available()) return;
    const Case c{2, 20, 6, 2, 16, 16, 26};  // S = 26
    const double scale = default_scale(c.K);
    for (DType dt : kDts) {
      INFO(dtype_name(dt));
      const Inputs in = make_inputs(c, dt);
      const WindowAttnOutput a = window_attn_forward(in.q, in.k, in.v, 26, scale);
      for (int64_t w : {int64_t(27), int64_t(100000), std::numeric_limits<int64_t>::max()}) {
        INFO("window " << w);
        const WindowAttnOutput b = window_attn_forward(in.q, in.k, in.v, w, scale);
        CHECK(bitwise_equal(a.o, b.o));
        CHECK(bitwise_equal(a.lse, b.lse));
      }
    }
  }

  TEST_CASE("cuda window_attn non-contiguous inputs") {
    if (!gpu_available()) return;
    // q, k, v as [B, H, T|S, ·] tensors permuted to the [B, T|S, H, ·] layout (strided views on the GPU).
    const int64_t B = 2, T = 21, P = 3, S = T + P, H = 3, K = 20, V = 16, W = 7;
    const double scale = default_scale(K);
    for (DType dt : kDts) {
      INFO(dtype_name(dt));
      const Tensor q = randn_t({B, H, T, K}, dt).to(kGpu).permute({0, 2, 1, 3});
      const Tensor k = randn_t({B, H, S, K}, dt).to(kGpu).permute({0, 2, 1, 3});
      const Tensor v = randn_t({B, H, S, V}, dt).to(kGpu).permute({0, 2, 1, 3});
      const Tensor gout = randn_t({B, H, T, V}, dt).to(kGpu).permute({0, 2, 1, 3});
      REQUIRE_FALSE(q.is_contiguous());
      const WindowAttnOutput a = window_attn_forward(q, k, v, W, scale);
      const WindowAttnOutput b = window_attn_forward(q.contiguous(), k.contiguous(), v.contiguous(), W, scale);
      CHECK(bitwise_equal(a.o, b.o));
      CHECK(bitwise_equal(a.lse, b.lse));
      const WindowAttnGrads ga = window_attn_backward(gout, q, k, v, a.o, a.lse, W, scale);
      const WindowAttnGrads gb = window_attn_backward(gout.contiguous(), q.contiguous(), k.contiguous(),
                                                      v.contiguous(), b.o, b.lse, W, scale);
      CHECK(bitwise_equal(ga.dq, gb.dq));
      CHECK(bitwise_equal(ga.dk, gb.dk));
      CHECK(bitwise_equal(ga.dv, gb.dv));
      check_close(host64(a.o), window_attn_ref(host64(q), host64(k), host64(v), W, scale), tolerance_for(dt),
                  "o vs reference");
    }
  }

  TEST_CASE("cuda window_attn ag op end to end") {
    if (!gpu_available()) return;
    const Case c{2, 45, 6, 3, 20, 20, 12};
    const double scale = default_scale(c.K);
    for (DType dt : kDts) {
      INFO(case_str(c, dt));
      const Tolerance tol = tolerance_for(dt);
      const Inputs in = make_inputs(c, dt);
      const RefResult r = reference(in, c.W, scale);
      const Tensor q = in.q.detach(), k = in.k.detach(), v = in.v.detach();
      ag::set_requires_grad(q);
      ag::set_requires_grad(k);
      ag::set_requires_grad(v);
      const Tensor o = ag::window_attn(q, k, v, c.W, scale);
      REQUIRE(ag::requires_grad(o));
      REQUIRE(o.is_cuda());
      check_close(host64(o), r.o, tol, "o");
      ag::backward(o, in.gout);
      REQUIRE(ag::grad(q).is_cuda());
      REQUIRE(ag::grad(q).dtype() == dt);
      check_close(host64(ag::grad(q)), r.dq, tol, "dq");
      check_close(host64(ag::grad(k)), r.dk, tol, "dk");
      check_close(host64(ag::grad(v)), r.dv, tol, "dv");
      // Only v requires grad.
      const Tensor v2 = in.v.detach();
      ag::set_requires_grad(v2);
      ag::backward(ag::window_attn(in.q, in.k, v2, c.W, scale), in.gout);
      check_close(host64(ag::grad(v2)), r.dv, tol, "dv alone");
    }
  }

  TEST_CASE("cuda window_attn zero new tokens gives zero cache gradients") {
    if (!gpu_available()) return;
    for (DType dt : kDts) {
      INFO(dtype_name(dt));
      const Tensor q = randn_t({2, 0, 2, 16}, dt).to(kGpu), k = randn_t({2, 3, 2, 16}, dt).to(kGpu);
      const Tensor v = randn_t({2, 3, 2, 20}, dt).to(kGpu);
      const WindowAttnOutput out = window_attn_forward(q, k, v, 2, 0.25);
      CHECK(out.o.shape() == Shape{2, 0, 2, 20});
      CHECK(out.lse.shape() == Shape{2, 2, 0});
      const WindowAttnGrads g =
          window_attn_backward(randn_t({2, 0, 2, 20}, dt).to(kGpu), q, k, v, out.o, out.lse, 2, 0.25);
      CHECK(g.dq.shape() == q.shape());
      CHECK(rows_zero(g.dk, 0, 3));
      CHECK(rows_zero(g.dv, 0, 3));
    }
  }

  TEST_CASE("cuda window_attn errors for float64 and head dims above 128") {
    if (!gpu_available()) return;
    const auto fwd = [](const Tensor& q, const Tensor& k, const Tensor& v) {
      return [=] { window_attn_forward(q, k, v, 4, 0.5); };
    };
    // float64 on CUDA: std::invalid_argument naming the op, the argument, the dtype and the supported set.
    const Tensor q64 = randn_t({1, 5, 2, 16}).to(kGpu), k64 = randn_t({1, 5, 2, 16}).to(kGpu);
    const Tensor v64 = randn_t({1, 5, 2, 16}).to(kGpu);
    CHECK_THROWS_AS(fwd(q64, k64, v64)(), std::invalid_argument);
    check_throws_with(fwd(q64, k64, v64),
                      {"window_attn_forward", "'q'", "float64", "float32 or bfloat16", "[1, 5, 2, 16]"});
    check_throws_with([&] { ag::window_attn(q64, k64, v64, 4, 0.5); }, {"window_attn_forward", "float64"});
    // K = 129 and V = 129.
    const Tensor q = randn_t({1, 5, 2, 129}, DType::Float32).to(kGpu);
    const Tensor k = randn_t({1, 5, 2, 129}, DType::Float32).to(kGpu);
    const Tensor v = randn_t({1, 5, 2, 16}, DType::Float32).to(kGpu);
    CHECK_THROWS_AS(fwd(q, k, v)(), std::invalid_argument);
    check_throws_with(fwd(q, k, v), {"window_attn_forward", "K = 129", "1 to 128"});
    const Tensor q16 = randn_t({1, 5, 2, 16}, DType::BFloat16).to(kGpu);
    const Tensor k16 = randn_t({1, 5, 2, 16}, DType::BFloat16).to(kGpu);
    const Tensor v129 = randn_t({1, 5, 2, 129}, DType::BFloat16).to(kGpu);
    check_throws_with(fwd(q16, k16, v129), {"window_attn_forward", "V = 129", "1 to 128"});
    // The backward checks the same, and wants lse in float32 on CUDA.
    const Tensor gout = randn_t({1, 5, 2, 16}, DType::Float32).to(kGpu);
    const Tensor lse = zeros({1, 2, 5}, DType::Float32, kGpu);
    check_throws_with([&] { window_attn_backward(gout, q, k, v, gout, lse, 4, 0.5); },
                      {"window_attn_backward", "K = 129", "1 to 128"});
    const Tensor qf = randn_t({1, 5, 2, 16}, DType::Float32).to(kGpu);
    const Tensor kf = randn_t({1, 5, 2, 16}, DType::Float32).to(kGpu);
    const WindowAttnOutput out = window_attn_forward(qf, kf, v, 4, 0.5);
    check_throws_with([&] { window_attn_backward(gout, qf, kf, v, out.o, out.lse.to(DType::BFloat16), 4, 0.5); },
                      {"window_attn_backward", "'lse' on CUDA must be float32", "bfloat16"});
  }

  TEST_CASE("window attn cuda sanitizer case") {
    // Small sizes for compute-sanitizer (memcheck, racecheck, synccheck, initcheck): every kernel of both dtypes and
    // all three head-dim variants once, with a cache, a partial query tile and an unseen cache row.
    if (!gpu_available()) return;
    const std::vector<Case> cases = {
        {1, 37, 5, 2, 20, 16, 4},   // D = 32 variant, 64-row tiles
        {1, 9, 3, 1, 48, 40, 4},    // D = 64 variant
        {1, 35, 6, 1, 100, 128, 5},  // D = 128 variant, 32-row tiles
    };
    for (DType dt : kDts)
      for (const Case& c : cases) check_case(c, dt);
  }
}
