// Gated delta rule (hydra/mixers/gated_delta/gated_delta.h): the chunkwise CPU forward and backward against the
// float64 token-by-token reference (gradients through ag::backward of the composed reference), step against
// forward, split calls against one call, gradcheck of ag::gated_delta, and the argument errors.
#include <cmath>
#include <string>
#include <vector>

#include "hydra/mixers/gated_delta/gated_delta.h"
#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

namespace {

struct Shape5 {
  int64_t B, T, H, K, V;
};

// One set of inputs. Keys are unit vectors (as after the mixer's l2 normalisation), so that β‖k‖² ≤ 1 and the
// recurrence stays bounded over long sequences; q, v and the initial state are standard normal.
struct Inputs {
  Tensor q, k, v, alpha, beta, s0;  // s0 may be undefined

  Inputs cast(DType t) const {
    return {q.to(t), k.to(t), v.to(t), alpha.to(t), beta.to(t), s0.defined() ? s0.to(t) : Tensor()};
  }
  Inputs upcast() const { return {host64(q), host64(k), host64(v), host64(alpha), host64(beta), host64(s0)}; }
};

Inputs make_inputs(Shape5 s, bool with_state, double a_lo = 0.5, double a_hi = 1.0, double b_lo = 0.05,
                   double b_hi = 1.0) {
  Inputs in;
  in.q = randn_t({s.B, s.T, s.H, s.K});
  in.k = l2_normalize_forward(randn_t({s.B, s.T, s.H, s.K})).y;
  in.v = randn_t({s.B, s.T, s.H, s.V});
  in.alpha = rand_t({s.B, s.T, s.H}, a_lo, a_hi);
  in.beta = rand_t({s.B, s.T, s.H}, b_lo, b_hi);
  if (with_state) in.s0 = randn_t({s.B, s.H, s.V, s.K});
  return in;
}

std::string describe(Shape5 s, int64_t chunk, bool with_state) {
  return fmt::format("B={} T={} H={} K={} V={} chunk={} state={}", s.B, s.T, s.H, s.K, s.V, chunk, with_state);
}

// Reference gradients: ag::backward through gated_delta_ref (float64), upstream dO and (when defined) dS.
// Returns {dq, dk, dv, dalpha, dbeta, ds0} (ds0 undefined without an initial state).
std::vector<Tensor> ref_grads(const Inputs& in64, const Tensor& dO, const Tensor& dS) {
  std::vector<Tensor> leaves{leaf(in64.q), leaf(in64.k), leaf(in64.v), leaf(in64.alpha), leaf(in64.beta),
                             in64.s0.defined() ? leaf(in64.s0) : Tensor()};
  GatedDeltaOutput r = gated_delta_ref(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4], leaves[5]);
  std::vector<Tensor> roots{r.o}, grads{dO};
  if (dS.defined()) {
    roots.push_back(r.final_state);
    grads.push_back(dS);
  }
  ag::backward(roots, grads);
  std::vector<Tensor> g;
  for (const Tensor& l : leaves) g.push_back(l.defined() ? ag::grad(l) : Tensor());
  return g;
}

const char* const kGradNames[6] = {"dq", "dk", "dv", "dalpha", "dbeta", "dinitial_state"};

std::vector<Tensor> as_list(const GatedDeltaGrads& g) {
  return {g.dq, g.dk, g.dv, g.dalpha, g.dbeta, g.dinitial_state};
}

void check_grads(const std::vector<Tensor>& got, const std::vector<Tensor>& ref, Tolerance tol,
                 const std::string& what) {
  REQUIRE(got.size() == ref.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO(what << " " << kGradNames[i]);
    REQUIRE(got[i].defined() == ref[i].defined());
    if (ref[i].defined()) check_close(got[i], ref[i], tol, what + " " + kGradNames[i]);
  }
}

// Forward of the chunkwise kernel in `dtype` against the float64 reference on the same (rounded) inputs.
void check_forward(const Inputs& in64, int64_t chunk, DType dtype, const std::string& what) {
  const Inputs in = in64.cast(dtype);
  const Inputs up = in.upcast();
  GatedDeltaOutput ref = gated_delta_ref(up.q, up.k, up.v, up.alpha, up.beta, up.s0);
  GatedDeltaOutput got = gated_delta_forward(in.q, in.k, in.v, in.alpha, in.beta, in.s0, chunk);
  REQUIRE(got.o.dtype() == dtype);
  REQUIRE(got.final_state.dtype() == dtype);
  const Tolerance tol = tolerance_for(dtype);
  check_close(got.o, ref.o, tol, what + " o");
  check_close(got.final_state, ref.final_state, tol, what + " final_state");
}

// Backward of the chunkwise kernel in `dtype` against autograd through the reference (same rounded inputs and
// upstream gradients). With_dS false passes an undefined final-state gradient.
void check_backward(const Inputs& in64, int64_t chunk, DType dtype, bool with_dS, const std::string& what) {
  const Inputs in = in64.cast(dtype);
  const Inputs up = in.upcast();
  const Shape5 s{in.q.size(0), in.q.size(1), in.q.size(2), in.q.size(3), in.v.size(3)};
  const Tensor dO = randn_t({s.B, s.T, s.H, s.V}, dtype);
  const Tensor dS = with_dS ? randn_t({s.B, s.H, s.V, s.K}, dtype) : Tensor();
  const std::vector<Tensor> ref = ref_grads(up, host64(dO), host64(dS));
  GatedDeltaGrads got = gated_delta_backward(dO, dS, in.q, in.k, in.v, in.alpha, in.beta, in.s0, chunk);
  for (const Tensor& g : as_list(got))
    if (g.defined()) REQUIRE(g.dtype() == dtype);
  check_grads(as_list(got), ref, tolerance_for(dtype), what);
}

// Shapes and chunk lengths for the forward/backward parity tests. The one-token case has several heads: with
// B = H = 1 its dq is one scalar (do·u, a sum over V terms) times k, so a float32 rounding of a cancelling sum
// would decide the whole tensor's relative error (the B = H = 1, T = 1 case runs in float64 below).
const std::vector<std::pair<Shape5, int64_t>> kCases = {
    {{2, 1, 3, 3, 4}, 4},      // T = 1, chunk > T
    {{2, 37, 3, 5, 3}, 8},     // T not a multiple of the chunk, K ≠ V
    {{1, 12, 2, 4, 6}, 1},     // chunk = 1
    {{2, 9, 1, 6, 5}, 32},     // chunk > T
    {{1, 130, 2, 16, 16}, 64}, // the default chunk, T = 2·64 + 2
    {{2, 24, 3, 16, 16}, 8},   // T a multiple of the chunk
};

}  // namespace

TEST_CASE("gated_delta forward matches the token recurrence") {
  for (const auto& [s, chunk] : kCases) {
    for (bool with_state : {false, true}) {
      const Inputs in = make_inputs(s, with_state);
      for (DType dt : {DType::Float64, DType::Float32}) {
        const std::string what = describe(s, chunk, with_state) + " " + std::string(dtype_name(dt));
        INFO(what);
        check_forward(in, chunk, dt, what);
      }
    }
  }
}

TEST_CASE("gated_delta backward matches autograd through the reference") {
  for (const auto& [s, chunk] : kCases) {
    for (bool with_state : {false, true}) {
      const Inputs in = make_inputs(s, with_state);
      for (bool with_dS : {false, true}) {
        for (DType dt : {DType::Float64, DType::Float32}) {
          const std::string what =
              describe(s, chunk, with_state) + " dS=" + (with_dS ? "yes " : "no ") + std::string(dtype_name(dt));
          INFO(what);
          check_backward(in, chunk, dt, with_dS, what);
        }
      }
    }
  }
}

TEST_CASE("gated_delta one token with one head in float64") {
  const Shape5 s{1, 1, 1, 3, 4};
  for (bool with_state : {false, true}) {
    const Inputs in = make_inputs(s, with_state);
    for (int64_t chunk : {1, 64}) {
      const std::string what = describe(s, chunk, with_state);
      INFO(what);
      check_forward(in, chunk, DType::Float64, what);
      check_backward(in, chunk, DType::Float64, true, what);
      check_backward(in, chunk, DType::Float64, false, what);
    }
  }
}

TEST_CASE("gated_delta results do not depend on the chunk length") {
  const Shape5 s{1, 50, 2, 7, 5};
  const Inputs in = make_inputs(s, true);
  const Tensor dO = randn_t({s.B, s.T, s.H, s.V}), dS = randn_t({s.B, s.H, s.V, s.K});
  GatedDeltaOutput base = gated_delta_forward(in.q, in.k, in.v, in.alpha, in.beta, in.s0, 1);
  GatedDeltaGrads gbase = gated_delta_backward(dO, dS, in.q, in.k, in.v, in.alpha, in.beta, in.s0, 1);
  for (int64_t chunk : {2, 3, 7, 16, 49, 50, 64, 1000}) {
    INFO("chunk " << chunk);
    GatedDeltaOutput o = gated_delta_forward(in.q, in.k, in.v, in.alpha, in.beta, in.s0, chunk);
    check_close(o.o, base.o, kTolF64, "o");
    check_close(o.final_state, base.final_state, kTolF64, "final_state");
    GatedDeltaGrads g = gated_delta_backward(dO, dS, in.q, in.k, in.v, in.alpha, in.beta, in.s0, chunk);
    check_grads(as_list(g), as_list(gbase), kTolF64, "chunk " + std::to_string(chunk));
  }
}

TEST_CASE("gated_delta alpha near 0 and near 1") {
  const Shape5 s{2, 29, 2, 5, 4};
  const int64_t chunk = 8;
  SUBCASE("alpha around 1e-8") {
    const Inputs in = make_inputs(s, true, 0.5e-8, 2e-8);
    check_forward(in, chunk, DType::Float64, "alpha~1e-8 f64");
    check_forward(in, chunk, DType::Float32, "alpha~1e-8 f32");
    check_backward(in, chunk, DType::Float64, true, "alpha~1e-8 f64");
    check_backward(in, chunk, DType::Float32, true, "alpha~1e-8 f32");
  }
  SUBCASE("alpha just below 1") {
    const Inputs in = make_inputs(s, true, 1.0 - 1e-6, 1.0);
    check_forward(in, chunk, DType::Float64, "alpha~1 f64");
    check_forward(in, chunk, DType::Float32, "alpha~1 f32");
    check_backward(in, chunk, DType::Float64, true, "alpha~1 f64");
    check_backward(in, chunk, DType::Float32, true, "alpha~1 f32");
  }
  SUBCASE("alpha mixing 0 and 1e-8 and 0.5 and 1") {
    // Exact zeros, tiny values and ones in one chunk: the running products underflow to (or are) zero, and the
    // gradient of alpha must still be that of the recurrence (no division by alpha anywhere).
    Inputs in = make_inputs(s, true);
    std::vector<double> a = in.alpha.to_vector<double>();
    const double choices[4] = {0.0, 1e-8, 0.5, 1.0};
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = choices[static_cast<std::size_t>(a[i] * 1e6) % 4];
    in.alpha = from_vector(a, in.alpha.shape());
    check_forward(in, chunk, DType::Float64, "mixed alpha f64");
    check_forward(in, chunk, DType::Float32, "mixed alpha f32");
    check_backward(in, chunk, DType::Float64, true, "mixed alpha f64");
    check_backward(in, chunk, DType::Float32, true, "mixed alpha f32");
  }
}

TEST_CASE("gated_delta non-contiguous inputs") {
  const Shape5 s{2, 19, 3, 4, 6};
  const Inputs in = make_inputs(s, true);
  // The same values through permuted views: q and k stored [B, T, K, H], v [B, H, T, V], the state [B, H, K, V].
  Inputs nc = in;
  nc.q = in.q.permute({0, 1, 3, 2}).contiguous().permute({0, 1, 3, 2});
  nc.k = in.k.permute({0, 1, 3, 2}).contiguous().permute({0, 1, 3, 2});
  nc.v = in.v.permute({0, 2, 1, 3}).contiguous().permute({0, 2, 1, 3});
  nc.s0 = in.s0.transpose(2, 3).contiguous().transpose(2, 3);
  REQUIRE(!nc.q.is_contiguous());
  REQUIRE(!nc.v.is_contiguous());
  REQUIRE(!nc.s0.is_contiguous());
  GatedDeltaOutput a = gated_delta_forward(in.q, in.k, in.v, in.alpha, in.beta, in.s0, 5);
  GatedDeltaOutput b = gated_delta_forward(nc.q, nc.k, nc.v, nc.alpha, nc.beta, nc.s0, 5);
  check_close(b.o, a.o, kTolF64, "o");
  check_close(b.final_state, a.final_state, kTolF64, "final_state");
  const Tensor dO = randn_t({s.B, s.T, s.H, s.V}).transpose(1, 2).contiguous().transpose(1, 2);
  REQUIRE(!dO.is_contiguous());
  GatedDeltaGrads ga = gated_delta_backward(dO.contiguous(), Tensor(), in.q, in.k, in.v, in.alpha, in.beta, in.s0, 5);
  GatedDeltaGrads gb = gated_delta_backward(dO, Tensor(), nc.q, nc.k, nc.v, nc.alpha, nc.beta, nc.s0, 5);
  check_grads(as_list(gb), as_list(ga), kTolF64, "non-contiguous");
}

TEST_CASE("gated_delta step token by token equals forward") {
  for (DType dt : {DType::Float64, DType::Float32}) {
    for (bool with_state : {false, true}) {
      const Shape5 s{2, 21, 3, 5, 3};
      const Inputs in = make_inputs(s, with_state).cast(dt);
      INFO(dtype_name(dt) << " state=" << with_state);
      GatedDeltaOutput full = gated_delta_forward(in.q, in.k, in.v, in.alpha, in.beta, in.s0, 8);
      Tensor S = in.s0;
      std::vector<Tensor> outs;
      for (int64_t t = 0; t < s.T; ++t) {
        GatedDeltaOutput st = gated_delta_step(in.q.select(1, t), in.k.select(1, t), in.v.select(1, t),
                                               in.alpha.select(1, t), in.beta.select(1, t), S);
        REQUIRE(st.o.shape() == (Shape{s.B, s.H, s.V}));
        REQUIRE(st.final_state.shape() == (Shape{s.B, s.H, s.V, s.K}));
        outs.push_back(st.o);
        S = st.final_state;
      }
      const Tensor o_steps = stack(outs, 1);
      const Tolerance tol = tolerance_for(dt);
      check_close(host64(o_steps), host64(full.o), tol, "step o vs forward o");
      check_close(host64(S), host64(full.final_state), tol, "step state vs forward state");
      // And against the float64 reference.
      const Inputs up = in.upcast();
      GatedDeltaOutput ref = gated_delta_ref(up.q, up.k, up.v, up.alpha, up.beta, up.s0);
      check_close(o_steps, ref.o, tol, "step o vs reference");
      check_close(S, ref.final_state, tol, "step state vs reference");
    }
  }
}

TEST_CASE("gated_delta forward split into two calls equals one call") {
  const Shape5 s{2, 45, 2, 6, 4};
  for (bool with_state : {false, true}) {
    for (int64_t split : {1, 13, 16, 44}) {
      INFO("state=" << with_state << " split at " << split);
      const Inputs in = make_inputs(s, with_state);
      const int64_t chunk = 16;
      GatedDeltaOutput one = gated_delta_forward(in.q, in.k, in.v, in.alpha, in.beta, in.s0, chunk);
      auto part = [&](const Tensor& x, int64_t t0, int64_t len) { return x.narrow(1, t0, len); };
      const int64_t n2 = s.T - split;
      GatedDeltaOutput first = gated_delta_forward(part(in.q, 0, split), part(in.k, 0, split),
                                                   part(in.v, 0, split), part(in.alpha, 0, split),
                                                   part(in.beta, 0, split), in.s0, chunk);
      GatedDeltaOutput second = gated_delta_forward(part(in.q, split, n2), part(in.k, split, n2),
                                                    part(in.v, split, n2), part(in.alpha, split, n2),
                                                    part(in.beta, split, n2), first.final_state, chunk);
      check_close(concat({first.o, second.o}, 1), one.o, kTolF64, "o");
      check_close(second.final_state, one.final_state, kTolF64, "final_state");
    }
  }
}

TEST_CASE("gated_delta gradients through a carried state equal one call") {
  // Training through chunked prefill: two ag::gated_delta calls chained by the state give the gradients of one.
  const Shape5 s{1, 23, 2, 4, 3};
  const Inputs in = make_inputs(s, true);
  const Tensor dO = randn_t({s.B, s.T, s.H, s.V}), dS = randn_t({s.B, s.H, s.V, s.K});
  auto run = [&](bool split) {
    std::vector<Tensor> l{leaf(in.q), leaf(in.k), leaf(in.v), leaf(in.alpha), leaf(in.beta), leaf(in.s0)};
    Tensor o, S;
    if (!split) {
      GatedDeltaOutput r = ag::gated_delta(l[0], l[1], l[2], l[3], l[4], l[5], 4);
      o = r.o;
      S = r.final_state;
    } else {
      auto p = [&](const Tensor& x, int64_t t0, int64_t n) { return ag::narrow(x, 1, t0, n); };
      GatedDeltaOutput a = ag::gated_delta(p(l[0], 0, 10), p(l[1], 0, 10), p(l[2], 0, 10), p(l[3], 0, 10),
                                           p(l[4], 0, 10), l[5], 4);
      GatedDeltaOutput b = ag::gated_delta(p(l[0], 10, 13), p(l[1], 10, 13), p(l[2], 10, 13), p(l[3], 10, 13),
                                           p(l[4], 10, 13), a.final_state, 4);
      o = ag::concat({a.o, b.o}, 1);
      S = b.final_state;
    }
    ag::backward({o, S}, {dO, dS});
    std::vector<Tensor> g;
    for (const Tensor& x : l) g.push_back(ag::grad(x));
    return g;
  };
  check_grads(run(true), run(false), kTolF64, "split vs one call");
}

TEST_CASE("gated_delta gradcheck") {
  struct Case {
    Shape5 s;
    int64_t chunk;
  };
  for (const Case& c : {Case{{1, 7, 2, 3, 4}, 3}, Case{{2, 5, 1, 2, 3}, 1}, Case{{1, 4, 3, 3, 2}, 8}}) {
    INFO(describe(c.s, c.chunk, true));
    const Shape5 s = c.s;
    const std::vector<Tensor> inputs{leaf(randn_t({s.B, s.T, s.H, s.K})),   leaf(randn_t({s.B, s.T, s.H, s.K})),
                                     leaf(randn_t({s.B, s.T, s.H, s.V})),   leaf(rand_t({s.B, s.T, s.H}, 0.3, 0.99)),
                                     leaf(rand_t({s.B, s.T, s.H}, 0.1, 0.9)), leaf(randn_t({s.B, s.H, s.V, s.K}))};
    const int64_t chunk = c.chunk;
    check_gradcheck(
        "gated_delta",
        [chunk](const std::vector<Tensor>& x) -> std::vector<Tensor> {
          GatedDeltaOutput r = ag::gated_delta(x[0], x[1], x[2], x[3], x[4], x[5], chunk);
          return {r.o, r.final_state};
        },
        inputs);
  }
}

TEST_CASE("gated_delta records gradients only where asked") {
  const Shape5 s{1, 6, 2, 3, 2};
  const Inputs in = make_inputs(s, true);
  SUBCASE("no input requires grad") {
    GatedDeltaOutput r = ag::gated_delta(in.q, in.k, in.v, in.alpha, in.beta, in.s0, 4);
    CHECK(!ag::requires_grad(r.o));
    CHECK(!ag::requires_grad(r.final_state));
  }
  SUBCASE("only v and alpha require grad and only o reaches the loss") {
    const Tensor v = leaf(in.v), a = leaf(in.alpha);
    GatedDeltaOutput r = ag::gated_delta(in.q, in.k, v, a, in.beta, Tensor(), 4);
    const Tensor dO = randn_t({s.B, s.T, s.H, s.V});
    ag::backward(r.o, dO);
    Inputs nos = in;
    nos.s0 = Tensor();
    const std::vector<Tensor> ref = ref_grads(nos, dO, Tensor());
    check_close(ag::grad(v), ref[2], kTolF64, "dv");
    check_close(ag::grad(a), ref[3], kTolF64, "dalpha");
  }
}

TEST_CASE("gated_delta with zero tokens") {
  const Shape5 s{2, 0, 2, 3, 4};
  const Inputs in = make_inputs(s, true);
  GatedDeltaOutput r = gated_delta_forward(in.q, in.k, in.v, in.alpha, in.beta, in.s0, 64);
  CHECK(r.o.shape() == (Shape{2, 0, 2, 4}));
  check_close(r.final_state, in.s0, kTolF64, "final_state");
  GatedDeltaGrads g = gated_delta_backward(r.o, in.s0, in.q, in.k, in.v, in.alpha, in.beta, in.s0, 64);
  check_close(g.dinitial_state, in.s0, kTolF64, "dinitial_state");
}

TEST_CASE("gated_delta rejects bad inputs") {
  const Shape5 s{2, 5, 3, 4, 6};
  const Inputs in = make_inputs(s, true);
  const Tensor q = in.q, k = in.k, v = in.v, a = in.alpha, b = in.beta, s0 = in.s0;
  auto fwd = [&](const Tensor& q_, const Tensor& k_, const Tensor& v_, const Tensor& a_, const Tensor& b_,
                 const Tensor& s_, int64_t chunk = 4) {
    return [=] { gated_delta_forward(q_, k_, v_, a_, b_, s_, chunk); };
  };
  const std::string op = "gated_delta_forward";
  check_throws_with(fwd(q.select(0, 0), k, v, a, b, s0), {op, "'q'", "rank 4", "[5, 3, 4]"});
  check_throws_with(fwd(q, k.select(0, 0), v, a, b, s0), {op, "'k'", "rank 4"});
  check_throws_with(fwd(q, k.narrow(1, 0, 4), v, a, b, s0), {op, "'k'", "[2, 5, 3, 4]", "[2, 4, 3, 4]"});
  check_throws_with(fwd(q, randn_t({2, 5, 3, 5}), v, a, b, s0), {op, "'k'", "[2, 5, 3, 4]", "[2, 5, 3, 5]"});
  check_throws_with(fwd(q, k, v.narrow(2, 0, 2), a, b, s0), {op, "'v'", "[2, 5, 2, 6]"});
  check_throws_with(fwd(q, k, v.narrow(0, 0, 1), a, b, s0), {op, "'v'", "[1, 5, 3, 6]"});
  check_throws_with(fwd(q, k, v, a.narrow(2, 0, 2), b, s0), {op, "'alpha'", "[2, 5, 3]", "[2, 5, 2]"});
  check_throws_with(fwd(q, k, v, a, b.select(2, 0), s0), {op, "'beta'", "[2, 5, 3]", "[2, 5]"});
  check_throws_with(fwd(q, k, v, a, b, s0.transpose(2, 3)), {op, "'initial_state'", "[2, 3, 6, 4]", "[2, 3, 4, 6]"});
  check_throws_with(fwd(q, k, v, a, b, s0, 0), {op, "'chunk'", ">= 1", "got 0"});
  check_throws_with(fwd(q.to(DType::Int64), k, v, a, b, s0), {op, "'q'", "float32 or float64", "int64"});
  check_throws_with(fwd(q, k, v, a.to(DType::Int32), b, s0), {op, "'alpha'", "float32 or float64", "int32"});
  check_throws_with(fwd(q.to(DType::BFloat16), k.to(DType::BFloat16), v.to(DType::BFloat16), a.to(DType::BFloat16),
                        b.to(DType::BFloat16), s0.to(DType::BFloat16)),
                    {op, "'q'", "float32 or float64", "bfloat16"});
  check_throws_with(fwd(q, k.to(DType::Float32), v, a, b, s0), {op, "'k'", "float32", "float64"});
  check_throws_with(fwd(q, k, v, a, b, s0.to(DType::Float32)), {op, "'initial_state'", "float32", "float64"});
  check_throws_with(fwd(q, k, v, Tensor(), b, s0), {op, "'alpha'", "undefined"});

  const std::string bop = "gated_delta_backward";
  const Tensor dO = randn_t({2, 5, 3, 6});
  check_throws_with([&] { gated_delta_backward(dO.narrow(1, 0, 4), Tensor(), q, k, v, a, b, s0, 4); },
                    {bop, "'do'", "[2, 5, 3, 6]", "[2, 4, 3, 6]"});
  check_throws_with([&] { gated_delta_backward(dO, s0.transpose(2, 3), q, k, v, a, b, s0, 4); },
                    {bop, "'dfinal_state'", "[2, 3, 6, 4]"});
  check_throws_with([&] { gated_delta_backward(dO.to(DType::Float32), Tensor(), q, k, v, a, b, s0, 4); },
                    {bop, "'do'", "float32"});
  check_throws_with([&] { gated_delta_backward(dO, Tensor(), q, k, v, a, b, s0, -3); }, {bop, "'chunk'", "got -3"});

  const std::string sop = "gated_delta_step";
  const Tensor q1 = q.select(1, 0), k1 = k.select(1, 0), v1 = v.select(1, 0), a1 = a.select(1, 0),
               b1 = b.select(1, 0);
  check_throws_with([&] { gated_delta_step(q, k1, v1, a1, b1, s0); }, {sop, "'q'", "rank 3"});
  check_throws_with([&] { gated_delta_step(q1, k1.narrow(2, 0, 3), v1, a1, b1, s0); }, {sop, "'k'", "[2, 3, 3]"});
  check_throws_with([&] { gated_delta_step(q1, k1, v1, a, b1, s0); }, {sop, "'alpha'", "[2, 3]", "[2, 5, 3]"});
  check_throws_with([&] { gated_delta_step(q1, k1, v1, a1, b1, s0.transpose(2, 3)); },
                    {sop, "'state'", "[2, 3, 6, 4]"});
  check_throws_with([&] { gated_delta_step(q1, k1, v1.to(DType::Float32), a1, b1, s0); }, {sop, "'v'", "float32"});

  // The differentiable op reports through the forward's checks.
  check_throws_with([&] { ag::gated_delta(q, k, v, a, b, s0, 0); }, {op, "'chunk'"});
}
