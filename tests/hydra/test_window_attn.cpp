// Windowed causal attention (hydra/mixers/window_attn): the tiled CPU kernel against the float64 dense reference
// (outputs, lse and every input gradient; reference gradients from the autograd engine through the reference) in
// float64 and float32, the window/cache edge cases, the streaming property, gradcheck of ag::window_attn,
// non-contiguous inputs, thread-count independence and the argument errors.
#include "hydra/mixers/window_attn/window_attn.h"

#include <omp.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

namespace {

struct Case {
  int64_t B, T, P, H, K, V, W;  // S = T + P
};

std::string case_str(const Case& c, DType dt) {
  return fmt::format("B={} T={} P={} H={} K={} V={} W={} {}", c.B, c.T, c.P, c.H, c.K, c.V, c.W, dtype_name(dt));
}

struct Inputs {
  Tensor q, k, v, gout;
};

Inputs make_inputs(const Case& c, DType dt) {
  const int64_t S = c.T + c.P;
  return {randn_t({c.B, c.T, c.H, c.K}, dt), randn_t({c.B, S, c.H, c.K}, dt), randn_t({c.B, S, c.H, c.V}, dt),
          randn_t({c.B, c.T, c.H, c.V}, dt)};
}

double default_scale(int64_t K) { return 1.0 / std::sqrt(static_cast<double>(K)); }

struct RefResult {
  Tensor o, dq, dk, dv;
};

// The float64 reference output and, through the autograd engine, the gradients of Σ <o, gout>.
RefResult reference(const Inputs& in, int64_t window, double scale) {
  const Tensor q = leaf(in.q), k = leaf(in.k), v = leaf(in.v);
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

// Kernel forward and backward against the reference for one case and dtype.
void check_case(const Case& c, DType dt) {
  INFO(case_str(c, dt));
  const double scale = default_scale(c.K);
  const Inputs in = make_inputs(c, dt);
  const WindowAttnOutput out = window_attn_forward(in.q, in.k, in.v, c.W, scale);
  const WindowAttnGrads g = window_attn_backward(in.gout, in.q, in.k, in.v, out.o, out.lse, c.W, scale);
  const RefResult r = reference(in, c.W, scale);
  REQUIRE(out.o.dtype() == dt);
  REQUIRE(out.lse.dtype() == dt);
  REQUIRE(out.lse.shape() == Shape{c.B, c.H, c.T});
  check_close(out.o, r.o, "o");
  check_close(out.lse, reference_lse(in.q, in.k, c.W, scale), "lse");
  check_close(g.dq, r.dq, "dq");
  check_close(g.dk, r.dk, "dk");
  check_close(g.dv, r.dv, "dv");
}

// Rows [from, to) of dim 1 of t are all exactly zero.
bool rows_zero(const Tensor& t, int64_t from, int64_t to) {
  for (double x : t.slice(1, from, to).contiguous().to_vector<double>())
    if (x != 0.0) return false;
  return true;
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return false;
  const std::vector<double> x = a.contiguous().to_vector<double>(), y = b.contiguous().to_vector<double>();
  for (std::size_t i = 0; i < x.size(); ++i)
    if (!(x[i] == y[i])) return false;
  return true;
}

}  // namespace

TEST_CASE("window_attn kernel matches the float64 reference") {
  const std::vector<Case> cases = {
      {2, 37, 0, 3, 6, 5, 8},     // T not a multiple of the 32-row query tile, K != V
      {1, 70, 0, 2, 16, 16, 100},  // window >= S (full causal), several query and key tiles
      {2, 45, 0, 1, 6, 5, 1},     // window 1: only itself
      {1, 1, 0, 2, 6, 5, 4},      // one token, no cache
      {2, 1, 5, 2, 6, 5, 8},      // one token, cache P < W
      {1, 1, 8, 1, 6, 5, 8},      // one token, cache P = W
      {1, 1, 12, 3, 6, 5, 8},     // one token, cache P > W
      {2, 20, 3, 2, 6, 5, 7},     // cache P < W
      {1, 33, 7, 3, 16, 16, 7},   // cache P = W
      {2, 40, 90, 2, 6, 5, 10},   // cache P > W: rows 0..P-W never seen; S spans three key tiles
      {1, 100, 30, 2, 8, 8, 70},  // a window spanning more than one key tile, with a cache
  };
  for (const Case& c : cases)
    for (DType dt : {DType::Float64, DType::Float32}) check_case(c, dt);
}

TEST_CASE("window_attn window at least S is plain softmax attention for one token") {
  // T = 1 with a cache: with window >= S the query sees every key, so the result is an unmasked softmax attention,
  // composed here from primitives without any mask (an independent check of the window rule).
  const int64_t B = 2, P = 9, S = P + 1, H = 2, K = 6, V = 5;
  const double scale = default_scale(K);
  const Tensor q = randn_t({B, 1, H, K}), k = randn_t({B, S, H, K}), v = randn_t({B, S, H, V});
  const Tensor qh = q.permute({0, 2, 1, 3}), kh = k.permute({0, 2, 1, 3}), vh = v.permute({0, 2, 1, 3});
  const Tensor want = matmul(softmax(mul(matmul(qh, kh, Trans::No, Trans::Yes), scale), -1), vh).permute({0, 2, 1, 3});
  const Tensor o_s = window_attn_forward(q, k, v, S, scale).o;
  check_close(o_s, want, kTolF64, "window = S");
  // Any larger window gives bit-identical results (the window is clamped to S).
  for (int64_t w : {S + 1, S + 1000, std::numeric_limits<int64_t>::max()}) {
    INFO("window " << w);
    CHECK(bitwise_equal(window_attn_forward(q, k, v, w, scale).o, o_s));
  }
  // One row less than S and the first cache row drops out: no longer equal.
  CHECK(compare(window_attn_forward(q, k, v, S - 1, scale).o, want, kTolF64).ok == false);
}

TEST_CASE("window_attn window 1 copies v and passes do to dv") {
  const int64_t B = 2, T = 35, P = 4, S = T + P, H = 2, K = 6, V = 5;
  for (DType dt : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dt));
    const Tensor q = randn_t({B, T, H, K}, dt), k = randn_t({B, S, H, K}, dt), v = randn_t({B, S, H, V}, dt);
    const Tensor gout = randn_t({B, T, H, V}, dt);
    const WindowAttnOutput out = window_attn_forward(q, k, v, 1, default_scale(K));
    check_close(out.o, host64(v.slice(1, P, S)), "o = v of the own row");
    const WindowAttnGrads g = window_attn_backward(gout, q, k, v, out.o, out.lse, 1, default_scale(K));
    // p = 1 for the own key: ds = p (do·v − do·o) = 0, so dq and dk vanish and dv of the new rows is do.
    CHECK(compare(g.dq, zeros(q.shape(), DType::Float64), {1e-6, 1e-6}).ok);
    CHECK(compare(g.dk, zeros(k.shape(), DType::Float64), {1e-6, 1e-6}).ok);
    check_close(g.dv.slice(1, P, S), host64(gout), "dv = do");
    CHECK(rows_zero(g.dv, 0, P));
  }
}

TEST_CASE("window_attn cache rows outside the window are ignored") {
  // P >= W: cache rows m <= P - W are seen by no query. Changing them leaves o unchanged and their gradients are
  // exactly zero; the rows after them do receive gradient.
  const int64_t B = 2, T = 6, H = 2, K = 6, V = 5, W = 4;
  const double scale = default_scale(K);
  for (int64_t P : {W, W + 5}) {
    INFO("P = " << P);
    const int64_t S = T + P, hidden = P - W + 1;
    const Tensor q = randn_t({B, T, H, K}), k = randn_t({B, S, H, K}), v = randn_t({B, S, H, V});
    const Tensor gout = randn_t({B, T, H, V});
    const WindowAttnOutput out = window_attn_forward(q, k, v, W, scale);
    Tensor k2 = k.clone(), v2 = v.clone();
    k2.slice(1, 0, hidden).copy_(randn_t({B, hidden, H, K}));
    v2.slice(1, 0, hidden).copy_(randn_t({B, hidden, H, V}));
    CHECK(bitwise_equal(window_attn_forward(q, k2, v2, W, scale).o, out.o));
    const WindowAttnGrads g = window_attn_backward(gout, q, k, v, out.o, out.lse, W, scale);
    CHECK(rows_zero(g.dk, 0, hidden));
    CHECK(rows_zero(g.dv, 0, hidden));
    CHECK_FALSE(rows_zero(g.dk, hidden, hidden + 1));
    CHECK_FALSE(rows_zero(g.dv, hidden, hidden + 1));
  }
}

TEST_CASE("window_attn streaming in pieces equals one call") {
  // A sequence fed in pieces, each call with the cache [last min(W, W' + N) rows of the previous keys/values]
  // (SPEC §2.10), gives the same outputs as one call on the whole sequence.
  const int64_t B = 2, H = 2, K = 6, V = 5, W = 6;
  const double scale = default_scale(K);
  const std::vector<std::vector<int64_t>> splits = {{3, 27}, {6, 24}, {17, 13}, {5, 1, 1, 9, 14}, {1, 1, 1, 27}};
  for (DType dt : {DType::Float64, DType::Float32}) {
    const int64_t N = 30;
    const Tensor q = randn_t({B, N, H, K}, dt), k = randn_t({B, N, H, K}, dt), v = randn_t({B, N, H, V}, dt);
    const Tensor whole = window_attn_forward(q, k, v, W, scale).o;
    check_close(whole, window_attn_ref(q, k, v, W, scale), "one call vs reference");
    for (const auto& split : splits) {
      INFO(dtype_name(dt) << " split of " << split.size() << " pieces, first " << split[0]);
      Tensor k_cache = k.slice(1, 0, 0), v_cache = v.slice(1, 0, 0);
      int64_t pos = 0;
      for (int64_t n : split) {
        const Tensor kk = concat({k_cache, k.slice(1, pos, pos + n)}, 1);
        const Tensor vv = concat({v_cache, v.slice(1, pos, pos + n)}, 1);
        const Tensor o = window_attn_forward(q.slice(1, pos, pos + n), kk, vv, W, scale).o;
        INFO("piece at " << pos << " of " << n << " tokens, cache " << k_cache.size(1));
        // Only the summation order differs (the tiles fall differently), so float64 agrees to its rounding.
        check_close(o, host64(whole.slice(1, pos, pos + n)), tolerance_for(dt), "piece vs one call");
        const int64_t keep = std::min(W, kk.size(1));
        k_cache = kk.slice(1, kk.size(1) - keep, kk.size(1));
        v_cache = vv.slice(1, vv.size(1) - keep, vv.size(1));
        pos += n;
      }
      CHECK(pos == N);
    }
  }
}

TEST_CASE("window_attn gradcheck of the ag op in float64") {
  const std::vector<Case> cases = {
      {1, 5, 0, 2, 3, 2, 3},  // no cache
      {2, 4, 3, 1, 3, 4, 3},  // cache P = W
      {1, 3, 4, 2, 2, 3, 2},  // cache P > W
      {1, 4, 2, 1, 3, 3, 9},  // window >= S
  };
  for (const Case& c : cases) {
    INFO(case_str(c, DType::Float64));
    const double scale = default_scale(c.K);
    const Inputs in = make_inputs(c, DType::Float64);
    const int64_t W = c.W;
    check_gradcheck(
        "window_attn",
        [W, scale](const std::vector<Tensor>& x) { return std::vector<Tensor>{ag::window_attn(x[0], x[1], x[2], W, scale)}; },
        {leaf(in.q), leaf(in.k), leaf(in.v)});
  }
}

TEST_CASE("window_attn ag op gives the reference gradients and only the requested ones") {
  const Case c{2, 9, 3, 2, 6, 5, 4};
  const double scale = default_scale(c.K);
  const Inputs in = make_inputs(c, DType::Float64);
  const RefResult r = reference(in, c.W, scale);
  const Tensor q = leaf(in.q), k = leaf(in.k), v = leaf(in.v);
  const Tensor o = ag::window_attn(q, k, v, c.W, scale);
  REQUIRE(ag::requires_grad(o));
  check_close(o, r.o, "o");
  ag::backward(o, in.gout);
  check_close(ag::grad(q), r.dq, "dq");
  check_close(ag::grad(k), r.dk, "dk");
  check_close(ag::grad(v), r.dv, "dv");
  // Only k requires grad (q and v are plain tensors): the node still gives k its gradient.
  const Tensor k2 = leaf(in.k);
  const Tensor o2 = ag::window_attn(in.q, k2, in.v, c.W, scale);
  ag::backward(o2, in.gout);
  check_close(ag::grad(k2), r.dk, "dk alone");
  // No input requires grad: no node.
  CHECK_FALSE(ag::requires_grad(ag::window_attn(in.q, in.k, in.v, c.W, scale)));
}

TEST_CASE("window_attn non-contiguous inputs") {
  // q, k, v as [B, H, T|S, ·] tensors permuted to the [B, T|S, H, ·] layout (strided views).
  const int64_t B = 2, T = 11, P = 3, S = T + P, H = 3, K = 6, V = 5, W = 5;
  const double scale = default_scale(K);
  const Tensor q = randn_t({B, H, T, K}).permute({0, 2, 1, 3}), k = randn_t({B, H, S, K}).permute({0, 2, 1, 3});
  const Tensor v = randn_t({B, H, S, V}).permute({0, 2, 1, 3}), gout = randn_t({B, H, T, V}).permute({0, 2, 1, 3});
  REQUIRE_FALSE(q.is_contiguous());
  const WindowAttnOutput a = window_attn_forward(q, k, v, W, scale);
  const WindowAttnOutput b = window_attn_forward(q.contiguous(), k.contiguous(), v.contiguous(), W, scale);
  CHECK(bitwise_equal(a.o, b.o));
  CHECK(bitwise_equal(a.lse, b.lse));
  const WindowAttnGrads ga = window_attn_backward(gout, q, k, v, a.o, a.lse, W, scale);
  const WindowAttnGrads gb = window_attn_backward(gout.contiguous(), q.contiguous(), k.contiguous(), v.contiguous(),
                                                  b.o, b.lse, W, scale);
  CHECK(bitwise_equal(ga.dq, gb.dq));
  CHECK(bitwise_equal(ga.dk, gb.dk));
  CHECK(bitwise_equal(ga.dv, gb.dv));
  check_close(a.o, window_attn_ref(q, k, v, W, scale), "o vs reference");
}

TEST_CASE("window_attn results do not depend on the thread count") {
  // Large enough that parallel_for splits the tiles between threads.
  const Case c{2, 80, 20, 3, 16, 16, 40};
  const double scale = default_scale(c.K);
  const Inputs in = make_inputs(c, DType::Float32);
  const int prev = omp_get_max_threads();
  std::vector<WindowAttnOutput> outs;
  std::vector<WindowAttnGrads> grads;
  for (int threads : {1, 3}) {
    omp_set_num_threads(threads);
    outs.push_back(window_attn_forward(in.q, in.k, in.v, c.W, scale));
    grads.push_back(window_attn_backward(in.gout, in.q, in.k, in.v, outs.back().o, outs.back().lse, c.W, scale));
  }
  omp_set_num_threads(prev);
  CHECK(bitwise_equal(outs[0].o, outs[1].o));
  CHECK(bitwise_equal(outs[0].lse, outs[1].lse));
  CHECK(bitwise_equal(grads[0].dq, grads[1].dq));
  CHECK(bitwise_equal(grads[0].dk, grads[1].dk));
  CHECK(bitwise_equal(grads[0].dv, grads[1].dv));
}

TEST_CASE("window_attn zero new tokens") {
  // T = 0 with a cache: an empty output, and zero gradients for every cache row.
  const Tensor q = randn_t({2, 0, 2, 4}), k = randn_t({2, 3, 2, 4}), v = randn_t({2, 3, 2, 5});
  const WindowAttnOutput out = window_attn_forward(q, k, v, 2, 0.5);
  CHECK(out.o.shape() == Shape{2, 0, 2, 5});
  CHECK(out.lse.shape() == Shape{2, 2, 0});
  const WindowAttnGrads g = window_attn_backward(randn_t({2, 0, 2, 5}), q, k, v, out.o, out.lse, 2, 0.5);
  CHECK(g.dq.shape() == q.shape());
  CHECK(rows_zero(g.dk, 0, 3));
  CHECK(rows_zero(g.dv, 0, 3));
}

TEST_CASE("window_attn bad inputs name the op the argument and the shapes") {
  const Tensor q = randn_t({2, 5, 3, 4}), k = randn_t({2, 7, 3, 4}), v = randn_t({2, 7, 3, 6});
  const auto fwd = [](const Tensor& a, const Tensor& b, const Tensor& c, int64_t w) {
    return [=] { window_attn_forward(a, b, c, w, 0.5); };
  };
  check_throws_with(fwd(randn_t({2, 5, 12}), k, v, 3),
                    {"window_attn_forward", "'q' must be [B, T, H, K] (rank 4)", "[2, 5, 12]"});
  check_throws_with(fwd(q, randn_t({2, 7, 3, 4, 1}), v, 3),
                    {"window_attn_forward", "'k' must be [B, S, H, K] (rank 4)", "[2, 7, 3, 4, 1]"});
  check_throws_with(fwd(q, k, randn_t({7, 3, 6}), 3), {"window_attn_forward", "'v' must be [B, S, H, V]", "[7, 3, 6]"});
  check_throws_with(fwd(q, randn_t({2, 4, 3, 4}), randn_t({2, 4, 3, 6}), 3),
                    {"window_attn_forward", "S >= T", "S = 4 < T = 5", "[2, 5, 3, 4]", "[2, 4, 3, 4]"});
  check_throws_with(fwd(q, randn_t({1, 7, 3, 4}), v, 3),
                    {"window_attn_forward", "'k'", "B = 2, H = 3, K = 4", "[1, 7, 3, 4]"});
  check_throws_with(fwd(q, randn_t({2, 7, 2, 4}), v, 3), {"'k'", "H = 3", "[2, 7, 2, 4]"});
  check_throws_with(fwd(q, randn_t({2, 7, 3, 5}), v, 3), {"'k'", "K = 4", "[2, 7, 3, 5]"});
  check_throws_with(fwd(q, k, randn_t({2, 7, 1, 6}), 3), {"window_attn_forward", "'v'", "H = 3", "[2, 7, 1, 6]"});
  check_throws_with(fwd(q, k, randn_t({2, 8, 3, 6}), 3), {"'v'", "S = 7", "[2, 8, 3, 6]"});
  check_throws_with(fwd(q, k, v, 0), {"window_attn_forward", "window must be >= 1, got 0"});
  check_throws_with(fwd(q, k, v, -3), {"window must be >= 1, got -3"});
  check_throws_with(fwd(q.to(DType::Int64), k, v, 3),
                    {"window_attn_forward", "'q' must be float32 or float64", "int64", "[2, 5, 3, 4]"});
  check_throws_with(fwd(q, k, v.to(DType::Int32), 3), {"'v' must be float32 or float64", "int32"});
  check_throws_with(fwd(q.to(DType::BFloat16), k.to(DType::BFloat16), v.to(DType::BFloat16), 3),
                    {"'q' must be float32 or float64", "bfloat16"});
  check_throws_with(fwd(q, k.to(DType::Float32), v, 3),
                    {"window_attn_forward", "share one dtype", "q float64, k float32, v float64"});
  check_throws_with(fwd(Tensor(), k, v, 3), {"window_attn_forward", "'q' is an undefined tensor"});
  check_throws_with([&] { window_attn_forward(q, k, v, 3, std::nan("")); }, {"window_attn_forward", "scale"});
  // The ag op and the reference run the same checks under their own names.
  check_throws_with([&] { ag::window_attn(leaf(q), k, randn_t({2, 6, 3, 6}), 3, 0.5); },
                    {"window_attn_forward", "'v'", "S = 7", "[2, 6, 3, 6]"});
  check_throws_with([&] { window_attn_ref(q, randn_t({2, 4, 3, 4}), randn_t({2, 4, 3, 6}), 3, 0.5); },
                    {"window_attn_ref", "S = 4 < T = 5"});
}

TEST_CASE("window_attn backward bad inputs") {
  const Tensor q = randn_t({2, 5, 3, 4}), k = randn_t({2, 7, 3, 4}), v = randn_t({2, 7, 3, 6});
  const WindowAttnOutput out = window_attn_forward(q, k, v, 3, 0.5);
  const Tensor gout = randn_t({2, 5, 3, 6});
  const auto bwd = [&](const Tensor& g, const Tensor& o, const Tensor& lse) {
    return [=] { window_attn_backward(g, q, k, v, o, lse, 3, 0.5); };
  };
  check_throws_with(bwd(randn_t({2, 5, 3, 4}), out.o, out.lse),
                    {"window_attn_backward", "'do_' must be [B, T, H, V] = [2, 5, 3, 6]", "[2, 5, 3, 4]"});
  check_throws_with(bwd(gout.to(DType::Float32), out.o, out.lse),
                    {"window_attn_backward", "'do_' must have q's dtype float64", "float32"});
  check_throws_with(bwd(gout, out.o.slice(1, 0, 4), out.lse), {"'o' must be [B, T, H, V]", "[2, 4, 3, 6]"});
  check_throws_with(bwd(gout, out.o, out.lse.transpose(1, 2)),
                    {"window_attn_backward", "'lse' must be [B, H, T] = [2, 3, 5]", "[2, 5, 3]"});
  check_throws_with(bwd(gout, out.o, Tensor()), {"window_attn_backward", "'lse' is an undefined tensor"});
  check_throws_with([&] { window_attn_backward(gout, q, k, v, out.o, out.lse, 0, 0.5); },
                    {"window_attn_backward", "window must be >= 1"});
}
