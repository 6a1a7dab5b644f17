// gpu-labelled: the gated delta rule on CUDA (gated_delta_cuda.cu, gated_delta_mma.cu): forward, backward and
// step against the float64 token-by-token reference gated_delta_ref, computed on the CPU from host64() of the very
// inputs the GPU saw (for bfloat16: the rounded values, upcast); reference gradients by ag::backward through the
// reference with the same upstream gradients. float32 runs the SIMT fp32 kernels (chunk 32), bfloat16 the
// tensor-core kernels of gated_delta_mma.cu (chunk 64; also over long sequences, T = 4096). Also ag::gated_delta end to end on CUDA with mixed dtypes, T = 0,
// non-contiguous inputs, and the CUDA argument errors. Outputs are poisoned by the allocator (see gpu_available),
// so an element a kernel forgets to write is NaN and fails its comparison.
#include <cmath>
#include <string>
#include <vector>

#include "hydra/mixers/gated_delta/gated_delta.h"
#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

namespace {

const Device kGpu("cuda:0");

struct Shape5 {
  int64_t B, T, H, K, V;
};

std::string describe(Shape5 s) { return fmt::format("B={} T={} H={} K={} V={}", s.B, s.T, s.H, s.K, s.V); }

enum class Gates {
  Near1,       // alpha uniform in (0.8, 1): long memory, the model's regime
  WithZeros,   // alpha uniform in (0, 1) with exact zeros at every 5th (b, t, h) entry from the 4th on
  VeryLong,    // alpha uniform in (0.99, 1): a token's trace lasts hundreds of tokens, across many chunks
};

// One set of inputs, float64 on the CPU (s0 may be undefined). Keys are unit vectors like after the mixer's L2
// normalisation (so β‖k‖² ≤ 1 keeps the recurrence bounded); q, v and the state are standard normal.
struct Inputs {
  Tensor q, k, v, alpha, beta, s0;
};

Inputs make_inputs(Shape5 s, bool with_state, Gates gates = Gates::Near1) {
  Inputs in;
  in.q = randn_t({s.B, s.T, s.H, s.K});
  in.k = l2_normalize_forward(randn_t({s.B, s.T, s.H, s.K})).y;
  in.v = randn_t({s.B, s.T, s.H, s.V});
  if (gates == Gates::Near1) {
    in.alpha = rand_t({s.B, s.T, s.H}, 0.8, 1.0);
  } else if (gates == Gates::VeryLong) {
    in.alpha = rand_t({s.B, s.T, s.H}, 0.99, 1.0);
  } else {
    std::vector<double> a = rand_t({s.B, s.T, s.H}, 0.0, 1.0).to_vector<double>();
    for (std::size_t i = 3; i < a.size(); i += 5) a[i] = 0.0;
    in.alpha = from_vector(a, {s.B, s.T, s.H});
  }
  in.beta = rand_t({s.B, s.T, s.H}, 0.0, 1.0);
  if (with_state) in.s0 = randn_t({s.B, s.H, s.V, s.K});
  return in;
}

// The GPU inputs: q, k, v in `dt`; alpha, beta and the initial state in `gate_dt`.
Inputs to_gpu(const Inputs& in, DType dt, DType gate_dt = DType::Float32) {
  return {in.q.to(dt).to(kGpu),         in.k.to(dt).to(kGpu),          in.v.to(dt).to(kGpu),
          in.alpha.to(gate_dt).to(kGpu), in.beta.to(gate_dt).to(kGpu),
          in.s0.defined() ? in.s0.to(gate_dt).to(kGpu) : Tensor()};
}

// The reference's inputs: float64 CPU copies of exactly what the GPU saw.
Inputs upcast(const Inputs& g) {
  return {host64(g.q), host64(g.k), host64(g.v), host64(g.alpha), host64(g.beta), host64(g.s0)};
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

// Each gradient: defined exactly when the reference's is, in the dtype of its input, close to the reference.
void check_grads(const std::vector<Tensor>& got, const std::vector<Tensor>& ref, const Inputs& g, Tolerance tol,
                 const std::string& what) {
  REQUIRE(got.size() == 6);
  const Tensor inputs[6] = {g.q, g.k, g.v, g.alpha, g.beta, g.s0};
  for (std::size_t i = 0; i < 6; ++i) {
    INFO(what << " " << kGradNames[i]);
    REQUIRE(got[i].defined() == ref[i].defined());
    if (!ref[i].defined()) continue;
    CHECK(got[i].dtype() == inputs[i].dtype());
    CHECK(got[i].device() == inputs[i].device());
    check_close(host64(got[i]), ref[i], tol, what + " " + kGradNames[i]);
  }
}

// Forward of the CUDA kernel (q, k, v in `dt`, float32 gates and state) against the reference, then backward with
// and without a final-state gradient.
void check_parity(const Inputs& in64, DType dt, const std::string& what, DType gate_dt = DType::Float32) {
  const Inputs g = to_gpu(in64, dt, gate_dt);
  const Inputs up = upcast(g);
  const Tolerance tol = tolerance_for(dt);
  const int64_t B = g.q.size(0), T = g.q.size(1), H = g.q.size(2), K = g.q.size(3), V = g.v.size(3);
  GatedDeltaOutput ref = gated_delta_ref(up.q, up.k, up.v, up.alpha, up.beta, up.s0);
  GatedDeltaOutput got = gated_delta_forward(g.q, g.k, g.v, g.alpha, g.beta, g.s0, 64);
  REQUIRE(got.o.dtype() == dt);
  REQUIRE(got.final_state.dtype() == DType::Float32);
  REQUIRE(got.o.device() == kGpu);
  check_close(host64(got.o), ref.o, tol, what + " o");
  check_close(host64(got.final_state), ref.final_state, tol, what + " final_state");
  for (bool with_dS : {false, true}) {
    const std::string w = what + (with_dS ? " dS=yes" : " dS=no");
    INFO(w);
    const Tensor dO = randn_t({B, T, H, V}, dt).to(kGpu);
    const Tensor dS = with_dS ? randn_t({B, H, V, K}, DType::Float32).to(kGpu) : Tensor();
    const std::vector<Tensor> rg = ref_grads(up, host64(dO), host64(dS));
    GatedDeltaGrads gg = gated_delta_backward(dO, dS, g.q, g.k, g.v, g.alpha, g.beta, g.s0, 64);
    check_grads(as_list(gg), rg, g, tol, w);
  }
}

// Shapes of the parity test: T = 1, T below the kernel's chunk (32) and below 64, T not a multiple of 32 or 64,
// T ≈ 300, B = 1, K = V = 16, 20, 64, 128, K ≠ V, head dims that are not multiples of 32. The one-token case has
// several heads: with B = H = 1 its dq would be one cancelling scalar (do·u) times k.
const std::vector<Shape5> kShapes = {
    {2, 1, 3, 16, 16},   {1, 20, 2, 16, 20},  {2, 37, 2, 20, 20},  {1, 130, 2, 64, 64},
    {1, 300, 2, 64, 64}, {1, 70, 1, 128, 128}, {1, 45, 3, 7, 100}, {1, 50, 1, 128, 33},
};

}  // namespace

TEST_SUITE("gpu") {  // built into test_hydra_gpu (tests/CMakeLists.txt), ctest label gpu
  TEST_CASE("gated delta cuda forward and backward match the float64 reference") {
    if (!gpu_available()) return;
    for (const Shape5& s : kShapes) {
      for (bool with_state : {false, true}) {
        const Inputs in = make_inputs(s, with_state);
        for (DType dt : {DType::Float32, DType::BFloat16}) {
          const std::string what =
              describe(s) + " state=" + (with_state ? "yes " : "no ") + std::string(dtype_name(dt));
          INFO(what);
          check_parity(in, dt, what);
        }
      }
    }
  }

  TEST_CASE("gated delta cuda alpha in (0 1) with exact zeros") {
    if (!gpu_available()) return;
    for (const Shape5& s : {Shape5{1, 70, 2, 20, 36}, Shape5{2, 33, 1, 64, 64}}) {
      const Inputs in = make_inputs(s, true, Gates::WithZeros);
      for (DType dt : {DType::Float32, DType::BFloat16}) {
        const std::string what = describe(s) + " alpha with zeros " + std::string(dtype_name(dt));
        INFO(what);
        check_parity(in, dt, what);
      }
    }
  }

  TEST_CASE("gated delta cuda bfloat16 long sequences") {
    // The bfloat16 (tensor-core) path over many chunks, where the fp32 state is carried through hundreds of chunk
    // updates whose products take it as a bf16 operand: T = 4096 (128 chunks of the kernel) with K = V = 64,
    // in the model's gate regime and with alpha near 1 (long memory); and K = V = 128 (the largest shared-memory
    // layouts, four V tiles) over 1024 tokens. Forward, final state and every gradient against the reference.
    if (!gpu_available()) return;
    const struct {
      Shape5 s;
      Gates gates;
      const char* name;
    } cases[] = {{{1, 4096, 2, 64, 64}, Gates::Near1, "alpha in (0.8 1)"},
                 {{1, 4096, 2, 64, 64}, Gates::VeryLong, "alpha in (0.99 1)"},
                 {{1, 1024, 1, 128, 128}, Gates::VeryLong, "alpha in (0.99 1)"}};
    for (const auto& cs : cases) {
      const std::string what = describe(cs.s) + " " + cs.name + " bfloat16";
      INFO(what);
      check_parity(make_inputs(cs.s, true, cs.gates), DType::BFloat16, what);
    }
  }

  TEST_CASE("gated delta cuda bfloat16 gates and state") {
    // Gates and initial state in q's dtype (bfloat16) instead of float32: accepted, gradients in bfloat16.
    if (!gpu_available()) return;
    const Shape5 s{2, 41, 2, 20, 24};
    const Inputs in = make_inputs(s, true);
    check_parity(in, DType::BFloat16, describe(s) + " all bfloat16", DType::BFloat16);
  }

  TEST_CASE("gated delta cuda step matches one step of the reference") {
    if (!gpu_available()) return;
    for (const Shape5& s : {Shape5{2, 1, 3, 20, 12}, Shape5{1, 1, 2, 64, 64}, Shape5{1, 1, 2, 128, 128}}) {
      for (bool with_state : {false, true}) {
        const Inputs in = make_inputs(s, with_state);
        for (DType dt : {DType::Float32, DType::BFloat16}) {
          const std::string what =
              describe(s) + " state=" + (with_state ? "yes " : "no ") + std::string(dtype_name(dt));
          INFO(what);
          const Inputs g = to_gpu(in, dt);
          const Inputs up = upcast(g);
          GatedDeltaOutput ref = gated_delta_ref(up.q, up.k, up.v, up.alpha, up.beta, up.s0);
          GatedDeltaOutput st = gated_delta_step(g.q.select(1, 0), g.k.select(1, 0), g.v.select(1, 0),
                                                 g.alpha.select(1, 0), g.beta.select(1, 0), g.s0);
          REQUIRE(st.o.shape() == (Shape{s.B, s.H, s.V}));
          REQUIRE(st.o.dtype() == dt);
          REQUIRE(st.final_state.shape() == (Shape{s.B, s.H, s.V, s.K}));
          REQUIRE(st.final_state.dtype() == DType::Float32);
          const Tolerance tol = tolerance_for(dt);
          check_close(host64(st.o), ref.o.select(1, 0), tol, what + " step o");
          check_close(host64(st.final_state), ref.final_state, tol, what + " step state");
        }
      }
    }
  }

  TEST_CASE("gated delta cuda steps token by token equal the cuda forward") {
    if (!gpu_available()) return;
    const Shape5 s{2, 21, 3, 20, 12};
    for (DType dt : {DType::Float32, DType::BFloat16}) {
      INFO(dtype_name(dt));
      const Inputs g = to_gpu(make_inputs(s, true), dt);
      GatedDeltaOutput full = gated_delta_forward(g.q, g.k, g.v, g.alpha, g.beta, g.s0, 64);
      Tensor S = g.s0;
      std::vector<Tensor> outs;
      for (int64_t t = 0; t < s.T; ++t) {
        GatedDeltaOutput st = gated_delta_step(g.q.select(1, t), g.k.select(1, t), g.v.select(1, t),
                                               g.alpha.select(1, t), g.beta.select(1, t), S);
        outs.push_back(host64(st.o));
        S = st.final_state;
      }
      const Tolerance tol = tolerance_for(dt);
      check_close(stack(outs, 1), host64(full.o), tol, "steps o vs forward o");
      check_close(host64(S), host64(full.final_state), tol, "steps state vs forward state");
    }
  }

  TEST_CASE("gated delta cuda autograd end to end with mixed dtypes") {
    // ag::gated_delta on CUDA: bfloat16 q, k, v with float32 gates and a float32 initial state (the model's case),
    // and all float32; with both outputs reaching the loss, and with only o reaching it.
    if (!gpu_available()) return;
    const Shape5 s{2, 45, 2, 20, 16};
    for (DType dt : {DType::BFloat16, DType::Float32}) {
      for (bool state_in_loss : {true, false}) {
        const std::string what = std::string(dtype_name(dt)) + (state_in_loss ? " o and state" : " o only");
        INFO(what);
        const Inputs g = to_gpu(make_inputs(s, true), dt);
        std::vector<Tensor> l{g.q.detach(), g.k.detach(), g.v.detach(), g.alpha.detach(), g.beta.detach(),
                              g.s0.detach()};
        for (const Tensor& x : l) ag::set_requires_grad(x);
        GatedDeltaOutput r = ag::gated_delta(l[0], l[1], l[2], l[3], l[4], l[5], 64);
        REQUIRE(ag::requires_grad(r.o));
        REQUIRE(ag::requires_grad(r.final_state));
        const Tensor dO = randn_t({s.B, s.T, s.H, s.V}, dt).to(kGpu);
        const Tensor dS = state_in_loss ? randn_t({s.B, s.H, s.V, s.K}, DType::Float32).to(kGpu) : Tensor();
        if (state_in_loss) {
          ag::backward({r.o, r.final_state}, {dO, dS});
        } else {
          ag::backward(r.o, dO);
        }
        std::vector<Tensor> got;
        for (const Tensor& x : l) got.push_back(ag::grad(x));
        const Inputs up = upcast(g);
        check_grads(got, ref_grads(up, host64(dO), host64(dS)), g, tolerance_for(dt), what);
      }
    }
  }

  TEST_CASE("gated delta cuda with zero tokens") {
    if (!gpu_available()) return;
    const Shape5 s{2, 0, 2, 20, 12};
    const Inputs g = to_gpu(make_inputs(s, true), DType::Float32);
    GatedDeltaOutput r = gated_delta_forward(g.q, g.k, g.v, g.alpha, g.beta, g.s0, 64);
    CHECK(r.o.shape() == (Shape{2, 0, 2, 12}));
    check_close(host64(r.final_state), host64(g.s0), kTolF32, "final_state");
    GatedDeltaOutput r0 = gated_delta_forward(g.q, g.k, g.v, g.alpha, g.beta, Tensor(), 64);
    check_close(host64(r0.final_state), zeros({2, 2, 12, 20}, DType::Float64), kTolF32, "final_state without s0");
    const Tensor dS = randn_t({2, 2, 12, 20}, DType::Float32).to(kGpu);
    GatedDeltaGrads gr = gated_delta_backward(r.o, dS, g.q, g.k, g.v, g.alpha, g.beta, g.s0, 64);
    CHECK(gr.dq.shape() == g.q.shape());
    CHECK(gr.dalpha.shape() == g.alpha.shape());
    check_close(host64(gr.dinitial_state), host64(dS), kTolF32, "dinitial_state");
  }

  TEST_CASE("gated delta cuda non-contiguous inputs") {
    if (!gpu_available()) return;
    const Shape5 s{2, 19, 3, 20, 24};
    const Inputs g = to_gpu(make_inputs(s, true), DType::Float32);
    // The same values through permuted views: q and k stored [B, T, K, H], v [B, H, T, V], the state [B, H, K, V].
    Inputs nc = g;
    nc.q = g.q.permute({0, 1, 3, 2}).contiguous().permute({0, 1, 3, 2});
    nc.k = g.k.permute({0, 1, 3, 2}).contiguous().permute({0, 1, 3, 2});
    nc.v = g.v.permute({0, 2, 1, 3}).contiguous().permute({0, 2, 1, 3});
    nc.s0 = g.s0.transpose(2, 3).contiguous().transpose(2, 3);
    REQUIRE(!nc.q.is_contiguous());
    REQUIRE(!nc.v.is_contiguous());
    REQUIRE(!nc.s0.is_contiguous());
    GatedDeltaOutput a = gated_delta_forward(g.q, g.k, g.v, g.alpha, g.beta, g.s0, 64);
    GatedDeltaOutput b = gated_delta_forward(nc.q, nc.k, nc.v, nc.alpha, nc.beta, nc.s0, 64);
    check_close(host64(b.o), host64(a.o), kTolF32, "o");
    check_close(host64(b.final_state), host64(a.final_state), kTolF32, "final_state");
    const Tensor dO =
        randn_t({s.B, s.T, s.H, s.V}, DType::Float32).to(kGpu).transpose(1, 2).contiguous().transpose(1, 2);
    REQUIRE(!dO.is_contiguous());
    GatedDeltaGrads ga = gated_delta_backward(dO.contiguous(), Tensor(), g.q, g.k, g.v, g.alpha, g.beta, g.s0, 64);
    GatedDeltaGrads gb = gated_delta_backward(dO, Tensor(), nc.q, nc.k, nc.v, nc.alpha, nc.beta, nc.s0, 64);
    const std::vector<Tensor> la = as_list(ga), lb = as_list(gb);
    for (std::size_t i = 0; i < 6; ++i) {
      INFO(kGradNames[i]);
      check_close(host64(lb[i]), host64(la[i]), kTolF32, kGradNames[i]);
    }
  }

  TEST_CASE("gated delta cuda rejects float64 and head dims above 128") {
    if (!gpu_available()) return;
    const std::string op = "gated_delta_forward", bop = "gated_delta_backward", sop = "gated_delta_step";
    {
      const Inputs in = make_inputs({1, 5, 2, 8, 8}, true);
      const Inputs g64 = to_gpu(in, DType::Float64, DType::Float64);
      check_throws_with([&] { gated_delta_forward(g64.q, g64.k, g64.v, g64.alpha, g64.beta, g64.s0, 64); },
                        {op, "'q'", "float64", "float32", "bfloat16", "CUDA"});
      const Inputs g = to_gpu(in, DType::Float32);
      const Tensor a64 = g.alpha.to(DType::Float64);
      check_throws_with([&] { gated_delta_forward(g.q, g.k, g.v, a64, g.beta, g.s0, 64); },
                        {op, "'alpha'", "float64", "float32", "bfloat16"});
      const Tensor abf = g.alpha.to(DType::BFloat16);  // q is float32: gates must be float32
      check_throws_with([&] { gated_delta_forward(g.q, g.k, g.v, abf, g.beta, g.s0, 64); },
                        {op, "'alpha'", "bfloat16", "float32"});
      const Tensor kbf = g.k.to(DType::BFloat16);
      check_throws_with([&] { gated_delta_forward(g.q, kbf, g.v, g.alpha, g.beta, g.s0, 64); },
                        {op, "'k'", "bfloat16", "float32"});
      const Tensor dO64 = randn_t({1, 5, 2, 8}).to(kGpu);
      check_throws_with([&] { gated_delta_backward(dO64, Tensor(), g.q, g.k, g.v, g.alpha, g.beta, g.s0, 64); },
                        {bop, "'do'", "float64"});
      check_throws_with([&] {
        gated_delta_step(g64.q.select(1, 0), g64.k.select(1, 0), g64.v.select(1, 0), g64.alpha.select(1, 0),
                         g64.beta.select(1, 0), g64.s0);
      }, {sop, "'q'", "float64", "float32", "bfloat16"});
    }
    for (const Shape5& s : {Shape5{1, 5, 2, 129, 8}, Shape5{1, 5, 2, 8, 129}}) {
      INFO(describe(s));
      const Inputs g = to_gpu(make_inputs(s, true), DType::Float32);
      const std::string dim = s.K == 129 ? "K = 129" : "V = 129";
      check_throws_with([&] { gated_delta_forward(g.q, g.k, g.v, g.alpha, g.beta, g.s0, 64); },
                        {op, dim, "1 to 128"});
      const Tensor dO = randn_t({s.B, s.T, s.H, s.V}, DType::Float32).to(kGpu);
      check_throws_with([&] { gated_delta_backward(dO, Tensor(), g.q, g.k, g.v, g.alpha, g.beta, g.s0, 64); },
                        {bop, dim, "1 to 128"});
      check_throws_with([&] {
        gated_delta_step(g.q.select(1, 0), g.k.select(1, 0), g.v.select(1, 0), g.alpha.select(1, 0),
                         g.beta.select(1, 0), g.s0);
      }, {sop, dim, "1 to 128"});
    }
  }

  TEST_CASE("gated delta cuda sanitizer case") {
    // Small sizes covering every kernel once per dtype (forward, backward with both optional inputs, step), for
    // compute-sanitizer memcheck / racecheck / initcheck / synccheck runs: -tc "gated delta cuda sanitizer case".
    // bfloat16 runs the tensor-core path; the second shape has KP = 64, three V tiles and a partial last chunk.
    if (!gpu_available()) return;
    for (const Shape5& s : {Shape5{1, 40, 2, 20, 12}, Shape5{1, 70, 1, 36, 72}}) {
      const Inputs in = make_inputs(s, true);
      for (DType dt : {DType::Float32, DType::BFloat16}) {
        const std::string what = describe(s) + " " + std::string(dtype_name(dt));
        INFO(what);
        check_parity(in, dt, what);
        const Inputs g = to_gpu(in, dt);
        const Inputs up = upcast(g);
        GatedDeltaOutput ref = gated_delta_ref(up.q.narrow(1, 0, 1), up.k.narrow(1, 0, 1), up.v.narrow(1, 0, 1),
                                               up.alpha.narrow(1, 0, 1), up.beta.narrow(1, 0, 1), up.s0);
        GatedDeltaOutput st = gated_delta_step(g.q.select(1, 0), g.k.select(1, 0), g.v.select(1, 0),
                                               g.alpha.select(1, 0), g.beta.select(1, 0), g.s0);
        check_close(host64(st.o), ref.o.select(1, 0), tolerance_for(dt), what + " step o");
        check_close(host64(st.final_state), ref.final_state, tolerance_for(dt), what + " step state");
      }
    }
  }
}
