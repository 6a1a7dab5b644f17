// gpu-labelled: top-k chunk attention on CUDA (hydra/mixers/chunk_attn/chunk_attn.h, GPU contract there) against the
// float64 references chunk_route_ref, chunk_attn_ref and chunk_attn_ref_lse, computed on the CPU from host64() of
// the very inputs the GPU gets (bf16 inputs are rounded first, so both sides see the same values). Reference
// gradients come from the autograd engine through chunk_attn_ref. Routing is compared exactly on scores that are
// exact (integer-valued inputs, ties included) or separated by far more than float32 rounding; the attention is
// compared with the routing indices fixed and shared by both sides. Outputs are poisoned by the allocator (see
// gpu_available), so an element a kernel forgets to write is NaN and fails its comparison.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "hydra/mixers/chunk_attn/chunk_attn.h"
#include "tensor/cuda/backend.h"
#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

namespace {

const Device kGpu("cuda:0");
constexpr DType kDts[] = {DType::Float32, DType::BFloat16};

// A std::mt19937_64 for the integer draws of one test, derived from the run's seed.
std::mt19937_64 fresh_rng() {
  static uint64_t counter = 0;
  return std::mt19937_64(base_seed() ^ (0x9E3779B97F4A7C15ull * ++counter));
}

struct Case {
  int64_t B, T, S, H, K, V, N, topk;
  const char* what;
};

std::string case_str(const Case& c) {
  return fmt::format("{}: B={} T={} S={} H={} K={} V={} N={} topk={}", c.what, c.B, c.T, c.S, c.H, c.K, c.V, c.N,
                     c.topk);
}

// Random valid routing indices (CPU): for each (b, t, h) a random ordered subset of min(topk, c(p)) distinct earlier
// chunks, then -1 padding. With holes = true some selected slots are replaced by -1 (padding in the middle).
Tensor random_idx(const Case& c, bool holes = false) {
  std::mt19937_64 rng = fresh_rng();
  std::vector<int64_t> out(static_cast<std::size_t>(c.B * c.T * c.H * c.topk), -1);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t h = 0; h < c.H; ++h) {
        const int64_t own = (c.S - c.T + t) / c.N;
        std::vector<int64_t> js(static_cast<std::size_t>(own));
        std::iota(js.begin(), js.end(), 0);
        std::shuffle(js.begin(), js.end(), rng);
        const int64_t n = std::min(c.topk, own);
        for (int64_t i = 0; i < n; ++i) {
          const bool hole = holes && (rng() % 3 == 0);
          out[((b * c.T + t) * c.H + h) * c.topk + i] = hole ? -1 : js[i];
        }
      }
  return from_vector<int64_t>(out, {c.B, c.T, c.H, c.topk});
}

// Integer-valued tensors in [-3, 3] (CPU, float64): exact in bf16, and every dot product of K <= 128 of them is an
// exact integer in float32.
Tensor small_ints(const Shape& shape) {
  std::mt19937_64 rng = fresh_rng();
  std::vector<double> v(static_cast<std::size_t>(shape_numel(shape)));
  for (double& x : v) x = static_cast<double>(static_cast<int64_t>(rng() % 7) - 3);
  return from_vector<double>(v, shape);
}

struct RouteCase {
  int64_t B, T, H, K, n_c, N, topk, S;
  const char* what;
};

const std::vector<RouteCase>& route_cases() {
  static const std::vector<RouteCase> cases = {
      {2, 37, 3, 16, 9, 4, 3, 37, "parallel forward, S not a multiple of the chunk, K = 16"},
      {1, 1, 3, 64, 62, 16, 4, 1000, "decode T = 1, S large, K = 64"},
      {2, 10, 3, 20, 5, 7, 3, 50, "streaming S > T, chunk 7, n_c below the earlier chunks, K = 20"},
      {1, 50, 3, 128, 90, 4, 6, 400, "more than 32 candidates (several tiles), K = 128"},
      {1, 8, 3, 16, 100, 4, 40, 420, "topk 40 above a warp's width"},
      {2, 12, 3, 16, 3, 8, 0, 30, "topk = 0"},
      {1, 20, 3, 20, 2, 7, 6, 20, "fewer earlier chunks than topk"},
      {2, 5, 3, 16, 0, 8, 2, 5, "queries inside chunk 0, no summaries"},
      {1, 30, 3, 64, 40, 64, 3, 2600, "chunk 64"},
      {2, 9, 3, 33, 12, 4, 3, 10, "n_c above c(p), K = 33"},
  };
  return cases;
}

// idx on the GPU against the reference, plus the structure (min(topk, candidates) chunks, then -1).
void check_route(const RouteCase& c, const Tensor& q0, const Tensor& r) {
  const Tensor idx = chunk_route(q0.to(kGpu), r.to(kGpu), c.N, c.topk, c.S);
  REQUIRE(idx.is_cuda());
  REQUIRE(idx.dtype() == DType::Int64);
  REQUIRE(idx.shape() == Shape({c.B, c.T, c.H, c.topk}));
  const std::vector<int64_t> got = idx.to(kCPU).to_vector<int64_t>();
  const std::vector<int64_t> want = chunk_route_ref(host64(q0), host64(r), c.N, c.topk, c.S).to_vector<int64_t>();
  CHECK(got == want);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t h = 0; h < c.H; ++h) {
        const int64_t n_cand = std::min((c.S - c.T + t) / c.N, c.n_c), n_sel = std::min(c.topk, n_cand);
        for (int64_t i = 0; i < c.topk; ++i) {
          const int64_t j = got[((b * c.T + t) * c.H + h) * c.topk + i];
          if (i < n_sel) {
            CHECK((j >= 0 && j < n_cand));
          } else {
            CHECK(j == -1);
          }
        }
      }
}

// Inputs on the GPU (rounded to dt on the CPU first) and the float64 reference of the same values.
struct AttnInputs {
  Tensor q, k, v, bias, dout;  // dt, on the GPU
  Tensor idx;                  // int64, CPU
};

AttnInputs make_inputs(const Case& c, DType dt, bool with_bias, bool holes) {
  AttnInputs in;
  in.q = randn_t({c.B, c.T, c.H, c.K}, dt).to(kGpu);
  in.k = randn_t({c.B, c.S, c.H, c.K}, dt).to(kGpu);
  in.v = randn_t({c.B, c.S, c.H, c.V}, dt).to(kGpu);
  in.bias = with_bias ? rand_t({c.B, c.T, c.H, c.topk}, -0.5, 0.5, dt).to(kGpu) : Tensor();
  in.dout = randn_t({c.B, c.T, c.H, c.V}, dt).to(kGpu);
  in.idx = random_idx(c, holes);
  return in;
}

// Reference o, lse and gradients (float64, CPU) of inputs `in`.
struct AttnRef {
  Tensor o, lse, dq, dk, dv, dbias;
};

AttnRef reference(const Case& c, const AttnInputs& in, double scale) {
  const Tensor ql = leaf(host64(in.q)), kl = leaf(host64(in.k)), vl = leaf(host64(in.v));
  const Tensor bl = in.bias.defined() ? leaf(host64(in.bias)) : Tensor();
  const Tensor o = chunk_attn_ref(ql, kl, vl, in.idx, bl, c.N, scale);
  ag::backward(o, host64(in.dout));
  AttnRef r;
  r.o = o.detach();
  r.lse = chunk_attn_ref_lse(host64(in.q), host64(in.k), host64(in.v), in.idx, host64(in.bias), c.N, scale);
  r.dq = ag::grad(ql);
  r.dk = ag::grad(kl);
  r.dv = ag::grad(vl);
  if (bl.defined()) r.dbias = ag::grad(bl);
  return r;
}

// The raw CUDA forward and backward against the reference.
void check_attn(const Case& c, DType dt, bool with_bias, bool holes = false) {
  INFO(case_str(c) << " dtype " << dtype_name(dt) << " bias " << with_bias << " holes " << holes);
  const AttnInputs in = make_inputs(c, dt, with_bias, holes);
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.K));
  const AttnRef ref = reference(c, in, scale);
  const Tolerance tol = tolerance_for(dt);
  const Tensor idx = in.idx.to(kGpu);

  const ChunkAttnOutput out = chunk_attn_forward(in.q, in.k, in.v, idx, in.bias, c.N, scale);
  REQUIRE(out.o.is_cuda());
  REQUIRE(out.o.dtype() == dt);
  REQUIRE(out.lse.dtype() == DType::Float32);  // float32 on CUDA whatever q's dtype
  REQUIRE(out.lse.shape() == Shape({c.B, c.H, c.T}));
  check_close(host64(out.o), ref.o, tol, "o");
  check_close(host64(out.lse), ref.lse, kTolF32, "lse (float32 arithmetic on the same inputs)");

  const ChunkAttnGrads g = chunk_attn_backward(in.dout, in.q, in.k, in.v, idx, in.bias, out.o, out.lse, c.N, scale);
  for (const Tensor* t : {&g.dq, &g.dk, &g.dv}) {
    REQUIRE(t->is_cuda());
    REQUIRE(t->dtype() == dt);
  }
  check_close(host64(g.dq), ref.dq, tol, "dq");
  check_close(host64(g.dk), ref.dk, tol, "dk");
  check_close(host64(g.dv), ref.dv, tol, "dv");
  if (with_bias) {
    REQUIRE(g.dbias.defined());
    REQUIRE(g.dbias.dtype() == dt);
    check_close(host64(g.dbias), ref.dbias, tol, "dbias");
  } else {
    CHECK(!g.dbias.defined());
  }
}

// An idx [1, 6, 2, 2] for T = 6, S = 10, N = 4 (t = 0..3 in chunk 1, t = 4, 5 in chunk 2), all -1 but one row.
Tensor idx_with(int64_t t, int64_t h, const std::vector<int64_t>& row) {
  std::vector<int64_t> all(static_cast<std::size_t>(6 * 2 * 2), -1);
  for (std::size_t i = 0; i < row.size(); ++i) all[static_cast<std::size_t>((t * 2 + h) * 2) + i] = row[i];
  return from_vector<int64_t>(all, {1, 6, 2, 2});
}

}  // namespace

TEST_SUITE("gpu") {  // built into test_hydra_gpu (tests/CMakeLists.txt), ctest label gpu

  TEST_CASE("cuda chunk_route matches the reference exactly on integer scores with ties") {
    if (!test::gpu_available()) return;
    for (const RouteCase& c : route_cases()) {
      for (DType dt : kDts) {
        INFO(c.what << " dtype " << dtype_name(dt));
        check_route(c, small_ints({c.B, c.T, c.H, c.K}).to(dt), small_ints({c.B, c.n_c, c.H, c.K}).to(dt));
      }
    }
  }

  TEST_CASE("cuda chunk_route matches the reference on well-separated real scores") {
    if (!test::gpu_available()) return;
    // Per (b, h): u in {-1, 1}^K and r_j = a_j u with the a_j a shuffled set of multiples of 0.25 (exact in bf16);
    // q0 random, shifted along u so that q0·u = ±s with s in [2, 4]. After rounding q0 to the dtype |q0·u| stays
    // above 1 (checked), so distinct scores differ by >= 0.25: far above float32 rounding.
    for (const RouteCase& c : route_cases()) {
      for (DType dt : kDts) {
        INFO(c.what << " dtype " << dtype_name(dt));
        std::mt19937_64 rng = fresh_rng();
        std::vector<double> uv(static_cast<std::size_t>(c.B * c.H * c.K));
        for (double& x : uv) x = (rng() % 2 == 0) ? 1.0 : -1.0;
        std::vector<double> rv(static_cast<std::size_t>(c.B * c.n_c * c.H * c.K));
        std::vector<double> a(static_cast<std::size_t>(c.n_c));
        for (int64_t b = 0; b < c.B; ++b)
          for (int64_t h = 0; h < c.H; ++h) {
            for (int64_t j = 0; j < c.n_c; ++j) a[j] = 0.25 * static_cast<double>(j - c.n_c / 2);
            std::shuffle(a.begin(), a.end(), rng);
            const double* u = uv.data() + (b * c.H + h) * c.K;
            for (int64_t j = 0; j < c.n_c; ++j)
              for (int64_t i = 0; i < c.K; ++i) rv[((b * c.n_c + j) * c.H + h) * c.K + i] = a[j] * u[i];
          }
        std::vector<double> qv = randn_t({c.B, c.T, c.H, c.K}).to_vector<double>();
        const std::vector<double> coef = rand_t({std::max<int64_t>(c.B * c.T * c.H, 1)}, 2.0, 4.0).to_vector<double>();
        for (int64_t row = 0; row < c.B * c.T * c.H; ++row) {
          const int64_t b = row / (c.T * c.H), h = row % c.H;
          const double* u = uv.data() + (b * c.H + h) * c.K;
          double* qr = qv.data() + row * c.K;
          const double d = std::inner_product(qr, qr + c.K, u, 0.0);
          const double s = (row % 2 == 0 ? 1.0 : -1.0) * coef[row];
          for (int64_t i = 0; i < c.K; ++i) qr[i] += (s - d) * u[i] / static_cast<double>(c.K);
        }
        const Tensor q0 = from_vector<double>(qv, {c.B, c.T, c.H, c.K}).to(dt);
        const Tensor r = from_vector<double>(rv, {c.B, c.n_c, c.H, c.K}).to(dt);
        // The premise, on the rounded values.
        const std::vector<double> qr64 = host64(q0).to_vector<double>();
        for (int64_t row = 0; row < c.B * c.T * c.H; ++row) {
          const int64_t b = row / (c.T * c.H), h = row % c.H;
          const double d = std::inner_product(qr64.begin() + row * c.K, qr64.begin() + (row + 1) * c.K,
                                              uv.begin() + (b * c.H + h) * c.K, 0.0);
          REQUIRE(std::abs(d) > 1.0);
        }
        check_route(c, q0, r);
      }
    }
  }

  TEST_CASE("cuda chunk_route ties go to the lower chunk index") {
    if (!test::gpu_available()) return;
    const int64_t B = 1, T = 4, H = 3, K = 20, N = 2, S = 100, n_c = 45;  // c(p) >= 48: every j < n_c is a candidate
    for (DType dt : kDts) {
      INFO("dtype " << dtype_name(dt));
      // All summaries identical (over two candidate tiles): the first topk candidates in index order.
      const Tensor same = randn_t({1, 1, 1, K}).expand({B, n_c, H, K}).contiguous().to(dt);
      const Tensor q0 = randn_t({B, T, H, K}, dt);
      const std::vector<int64_t> iv = chunk_route(q0.to(kGpu), same.to(kGpu), N, 5, S).to(kCPU).to_vector<int64_t>();
      for (int64_t r = 0; r < B * T * H; ++r)
        CHECK(std::vector<int64_t>(iv.begin() + r * 5, iv.begin() + r * 5 + 5) ==
              std::vector<int64_t>{0, 1, 2, 3, 4});
    }
  }

  TEST_CASE("cuda chunk_attn forward and backward match the float64 reference (fixed idx)") {
    if (!test::gpu_available()) return;
    const std::vector<Case> cases = {
        {2, 37, 37, 3, 16, 16, 4, 3, "T not a multiple of the chunk, K = V = 16"},
        {1, 1, 203, 3, 64, 64, 16, 4, "decode T = 1, S large, K = V = 64"},
        {2, 13, 50, 3, 20, 20, 7, 2, "streaming S > T, chunk 7, K = V = 20"},
        {1, 40, 45, 3, 128, 128, 16, 3, "K = V = 128"},
        {2, 20, 23, 3, 20, 16, 4, 8, "fewer earlier chunks than topk"},
        {1, 21, 21, 3, 16, 20, 4, 0, "topk = 0"},
        {2, 150, 170, 3, 64, 64, 64, 2, "chunk 64, partial last chunk"},
        {1, 70, 90, 3, 100, 36, 7, 5, "K != V across widths"},
        {2, 5, 5, 3, 16, 16, 8, 2, "queries inside chunk 0"},
        {1, 33, 40, 3, 33, 65, 1, 4, "chunk size 1, K = 33, V = 65"},
    };
    for (const Case& c : cases)
      for (DType dt : kDts)
        for (bool with_bias : {false, true}) check_attn(c, dt, with_bias);
  }

  TEST_CASE("cuda chunk_attn with -1 padding between selected chunks") {
    if (!test::gpu_available()) return;
    const Case c{2, 30, 41, 3, 20, 20, 4, 5, "holes"};
    for (DType dt : kDts) check_attn(c, dt, true, true);
  }

  TEST_CASE("cuda chunk_attn accepts strided inputs and its backward is deterministic") {
    if (!test::gpu_available()) return;
    const Case c{2, 11, 14, 3, 16, 20, 3, 2, "strided"};
    const Tensor idx = random_idx(c).to(kGpu);
    const Tensor q = randn_t({c.B, c.H, c.T, c.K}, DType::Float32).to(kGpu).permute({0, 2, 1, 3});
    const Tensor k = randn_t({c.B, c.S, c.H, 2 * c.K}, DType::Float32).to(kGpu).slice(3, 0, 2 * c.K, 2);
    const Tensor v = randn_t({c.B, c.H, c.S, c.V}, DType::Float32).to(kGpu).permute({0, 2, 1, 3});
    const Tensor bias = rand_t({c.B, c.T, c.topk, c.H}, -0.5, 0.5, DType::Float32).to(kGpu).transpose(2, 3);
    REQUIRE(!q.is_contiguous());
    const ChunkAttnOutput a = chunk_attn_forward(q, k, v, idx, bias, c.N, 0.5);
    const ChunkAttnOutput b = chunk_attn_forward(q.contiguous(), k.contiguous(), v.contiguous(), idx,
                                                 bias.contiguous(), c.N, 0.5);
    CHECK(a.o.to(kCPU).to_vector<double>() == b.o.to(kCPU).to_vector<double>());
    check_close(host64(a.o), chunk_attn_ref(host64(q), host64(k), host64(v), idx.to(kCPU), host64(bias), c.N, 0.5),
                kTolF32, "o");
    // Two backward calls give bitwise identical gradients (no float atomics).
    const Tensor dout = randn_t({c.B, c.T, c.H, c.V}, DType::Float32).to(kGpu);
    const ChunkAttnGrads g1 = chunk_attn_backward(dout, q, k, v, idx, bias, a.o, a.lse, c.N, 0.5);
    const ChunkAttnGrads g2 = chunk_attn_backward(dout, q, k, v, idx, bias, a.o, a.lse, c.N, 0.5);
    CHECK(g1.dq.to(kCPU).to_vector<double>() == g2.dq.to(kCPU).to_vector<double>());
    CHECK(g1.dk.to(kCPU).to_vector<double>() == g2.dk.to(kCPU).to_vector<double>());
    CHECK(g1.dv.to(kCPU).to_vector<double>() == g2.dv.to(kCPU).to_vector<double>());
    CHECK(g1.dbias.to(kCPU).to_vector<double>() == g2.dbias.to(kCPU).to_vector<double>());
  }

  TEST_CASE("cuda ag::chunk_attn gives the reference gradients") {
    if (!test::gpu_available()) return;
    const Case c{2, 19, 30, 3, 20, 16, 4, 3, "ag"};
    for (DType dt : kDts) {
      for (bool with_bias : {false, true}) {
        INFO("dtype " << dtype_name(dt) << " bias " << with_bias);
        const AttnInputs in = make_inputs(c, dt, with_bias, false);
        const double scale = 0.3;
        const AttnRef ref = reference(c, in, scale);
        const Tensor q = in.q.clone(), k = in.k.clone(), v = in.v.clone();
        const Tensor bias = with_bias ? in.bias.clone() : Tensor();
        for (const Tensor* t : {&q, &k, &v, &bias})
          if (t->defined()) ag::set_requires_grad(*t);
        const Tensor o = ag::chunk_attn(q, k, v, in.idx.to(kGpu), bias, c.N, scale);
        REQUIRE(o.is_cuda());
        check_close(host64(o), ref.o, tolerance_for(dt), "ag o");
        ag::backward(o, in.dout);
        REQUIRE(ag::grad(q).is_cuda());
        check_close(host64(ag::grad(q)), ref.dq, tolerance_for(dt), "ag dq");
        check_close(host64(ag::grad(k)), ref.dk, tolerance_for(dt), "ag dk");
        check_close(host64(ag::grad(v)), ref.dv, tolerance_for(dt), "ag dv");
        if (with_bias) check_close(host64(ag::grad(bias)), ref.dbias, tolerance_for(dt), "ag dbias");
      }
    }
  }

  TEST_CASE("cuda chunk_attn and chunk_route reject float64 and head dims above 128") {
    if (!test::gpu_available()) return;
    const int64_t B = 1, T = 6, S = 10, H = 2, N = 4;
    const Tensor idx = idx_with(5, 1, {1, 0}).to(kGpu);
    auto t = [&](const Shape& s, DType dt) { return randn_t(s, dt).to(kGpu); };
    const char* fwd = "chunk_attn_forward";
    check_throws_with([&] { chunk_attn_forward(t({B, T, H, 8}, DType::Float64), t({B, S, H, 8}, DType::Float64),
                                               t({B, S, H, 8}, DType::Float64), idx, Tensor(), N, 1.0); },
                      {fwd, "'q'", "float64", "float32 or bfloat16"});
    check_throws_with([&] { chunk_route(t({B, T, H, 8}, DType::Float64), t({B, 2, H, 8}, DType::Float64), N, 2, S); },
                      {"chunk_route", "'q0'", "float64", "float32 or bfloat16"});
    check_throws_with(
        [&] {
          chunk_attn_backward(t({B, T, H, 8}, DType::Float64), t({B, T, H, 8}, DType::Float64),
                              t({B, S, H, 8}, DType::Float64), t({B, S, H, 8}, DType::Float64), idx, Tensor(),
                              t({B, T, H, 8}, DType::Float64), t({B, H, T}, DType::Float32), N, 1.0);
        },
        {"chunk_attn_backward", "float64", "float32 or bfloat16"});
    const DType f = DType::Float32;
    check_throws_with([&] { chunk_attn_forward(t({B, T, H, 129}, f), t({B, S, H, 129}, f), t({B, S, H, 8}, f), idx,
                                               Tensor(), N, 1.0); },
                      {fwd, "K = 129", "1 to 128"});
    check_throws_with([&] { chunk_attn_forward(t({B, T, H, 8}, f), t({B, S, H, 8}, f), t({B, S, H, 129}, f), idx,
                                               Tensor(), N, 1.0); },
                      {fwd, "V = 129", "1 to 128"});
    check_throws_with([&] { chunk_route(t({B, T, H, 129}, f), t({B, 2, H, 129}, f), N, 2, S); },
                      {"chunk_route", "K = 129", "1 to 128"});
    check_throws_with(
        [&] {
          chunk_attn_backward(t({B, T, H, 8}, f), t({B, T, H, 129}, f), t({B, S, H, 129}, f), t({B, S, H, 8}, f), idx,
                              Tensor(), t({B, T, H, 8}, f), t({B, H, T}, f), N, 1.0);
        },
        {"chunk_attn_backward", "K = 129", "1 to 128"});
    // The CUDA lse is float32 whatever q's dtype; a bf16 lse is refused.
    const DType bf = DType::BFloat16;
    check_throws_with(
        [&] {
          chunk_attn_backward(t({B, T, H, 8}, bf), t({B, T, H, 8}, bf), t({B, S, H, 8}, bf), t({B, S, H, 8}, bf), idx,
                              Tensor(), t({B, T, H, 8}, bf), t({B, H, T}, bf), N, 1.0);
        },
        {"chunk_attn_backward", "'lse' must be float32 on CUDA", "bfloat16"});
    // Nothing was left pending.
    CHECK_NOTHROW(cuda::synchronize(0));
  }

  TEST_CASE("cuda chunk_attn reports an invalid idx entry at the next synchronisation") {
    if (!test::gpu_available()) return;
    const int64_t B = 1, T = 6, S = 10, H = 2, K = 3, V = 4, N = 4;
    const Tensor q = randn_t({B, T, H, K}, DType::Float32).to(kGpu), k = randn_t({B, S, H, K}, DType::Float32).to(kGpu);
    const Tensor v = randn_t({B, S, H, V}, DType::Float32).to(kGpu);
    const Tensor qc = q.to(kCPU), kc = k.to(kCPU), vc = v.to(kCPU);
    const char* fwd = "chunk_attn_forward";
    // The CPU's message for the same idx (the GPU's carries the same content).
    auto cpu_message = [&](const Tensor& idx) {
      try {
        chunk_attn_forward(qc, kc, vc, idx, Tensor(), N, 1.0);
      } catch (const std::invalid_argument& e) {
        return std::string(e.what());
      }
      return std::string("(no error on the CPU)");
    };
    struct Bad {
      Tensor idx;
      std::vector<std::string> fragments;
    };
    const std::vector<Bad> bad = {
        {idx_with(0, 1, {1, -1}), {fwd, "idx[b=0, t=0, h=1, i=0] = 1", "c(p) = 1", "p = 4"}},
        {idx_with(2, 0, {0, 2}), {fwd, "idx[b=0, t=2, h=0, i=1] = 2", "0 <= j < 1"}},
        {idx_with(5, 0, {7, -1}), {fwd, "idx[b=0, t=5, h=0, i=0] = 7"}},
        {idx_with(5, 0, {int64_t{1} << 40, -1}), {fwd, "idx[b=0, t=5, h=0, i=0] = 1099511627776"}},
        {idx_with(5, 1, {1, 1}), {fwd, "idx[b=0, t=5, h=1, i=1] = 1 repeats idx[b=0, t=5, h=1, i=0]"}},
        {idx_with(3, 0, {-2, -1}), {fwd, "idx[b=0, t=3, h=0, i=0] = -2", "negative"}},
    };
    for (const Bad& e : bad) {
      // The CPU's message body (before its " [file:line]" suffix) is the GPU's message.
      const std::string cpu = cpu_message(e.idx);
      INFO("CPU message: " << cpu);
      std::vector<std::string> frags = e.fragments;
      frags.push_back(cpu.substr(0, cpu.rfind(" [")));
      check_throws_with(
          [&] {
            (void)chunk_attn_forward(q, k, v, e.idx.to(kGpu), Tensor(), N, 1.0);
            cuda::synchronize(0);
          },
          frags);
    }
    // Two bad rows: the first in (b, t, h) order is named.
    {
      std::vector<int64_t> all(static_cast<std::size_t>(T * H * 2), -1);
      all[(5 * H + 1) * 2] = 9;  // t = 5, h = 1
      all[(4 * H + 0) * 2 + 1] = 3;  // t = 4, h = 0, i = 1 (c(p) = 2)
      const Tensor two = from_vector<int64_t>(all, {B, T, H, 2}).to(kGpu);
      check_throws_with(
          [&] {
            (void)chunk_attn_forward(q, k, v, two, Tensor(), N, 1.0);
            cuda::synchronize(0);
          },
          {fwd, "idx[b=0, t=4, h=0, i=1] = 3"});
    }
    // The backward checks too, and a copy to the CPU also raises the verdict.
    const Tensor good = idx_with(5, 1, {1, 0}).to(kGpu);
    const ChunkAttnOutput out = chunk_attn_forward(q, k, v, good, Tensor(), N, 1.0);
    check_throws_with(
        [&] {
          const ChunkAttnGrads g = chunk_attn_backward(randn_t({B, T, H, V}, DType::Float32).to(kGpu), q, k, v,
                                                       idx_with(0, 0, {1, -1}).to(kGpu), Tensor(), out.o, out.lse, N,
                                                       1.0);
          (void)g.dq.to(kCPU);
        },
        {"chunk_attn_backward", "idx[b=0, t=0, h=0, i=0] = 1"});
    // Reported once: the device is clean afterwards, and valid indices raise nothing.
    CHECK_NOTHROW(cuda::synchronize(0));
    const ChunkAttnOutput ok = chunk_attn_forward(q, k, v, good, Tensor(), N, 1.0);
    CHECK_NOTHROW(cuda::synchronize(0));
    check_close(host64(ok.o), chunk_attn_ref(host64(q), host64(k), host64(v), good.to(kCPU), Tensor(), N, 1.0),
                kTolF32, "o after the errors");
  }

  TEST_CASE("chunk attn cuda sanitizer case") {
    // Small sizes for compute-sanitizer (memcheck, racecheck, initcheck, synccheck): every kernel once per width
    // class, both dtypes, with and without bias, then one invalid idx through forward and backward (the kernels
    // must skip it without touching memory out of range).
    if (!test::gpu_available()) return;
    const std::vector<Case> cases = {
        {1, 9, 13, 2, 20, 16, 4, 2, "sanitizer, width 32"},
        {2, 7, 40, 1, 40, 72, 7, 3, "sanitizer, width 128, streaming"},
    };
    for (const Case& c : cases) {
      for (DType dt : kDts) {
        INFO(case_str(c) << " dtype " << dtype_name(dt));
        const int64_t n_c = c.S / c.N;
        const Tensor q0 = small_ints({c.B, c.T, c.H, c.K}).to(dt), r = small_ints({c.B, n_c, c.H, c.K}).to(dt);
        const RouteCase rc{c.B, c.T, c.H, c.K, n_c, c.N, c.topk, c.S, c.what};
        check_route(rc, q0, r);
        check_attn(c, dt, true);
        check_attn(c, dt, false);
      }
    }
    const Case c = cases[0];
    std::vector<int64_t> iv = random_idx(c).to_vector<int64_t>();
    iv[(8 * c.H + 1) * c.topk] = int64_t{1} << 40;  // t = 8, h = 1, i = 0
    const Tensor idx = from_vector<int64_t>(iv, {c.B, c.T, c.H, c.topk}).to(kGpu);
    const AttnInputs in = make_inputs(c, DType::Float32, true, false);
    check_throws_with(
        [&] {
          (void)chunk_attn_forward(in.q, in.k, in.v, idx, in.bias, c.N, 0.5);
          cuda::synchronize(0);
        },
        {"chunk_attn_forward", "idx[b=0, t=8, h=1, i=0] = 1099511627776"});
    const ChunkAttnOutput out = chunk_attn_forward(in.q, in.k, in.v, in.idx.to(kGpu), in.bias, c.N, 0.5);
    check_throws_with(
        [&] {
          (void)chunk_attn_backward(in.dout, in.q, in.k, in.v, idx, in.bias, out.o, out.lse, c.N, 0.5);
          cuda::synchronize(0);
        },
        {"chunk_attn_backward", "idx[b=0, t=8, h=1, i=0] = 1099511627776"});
    CHECK_NOTHROW(cuda::synchronize(0));
  }

}  // TEST_SUITE("gpu")
