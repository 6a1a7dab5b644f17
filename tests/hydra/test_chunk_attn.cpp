// Top-k chunk attention (hydra/mixers/chunk_attn/chunk_attn.h, SPEC §2.11): routing against the brute-force
// float64 reference on scores that are exact (integer-valued inputs) or well separated; the attention kernel and
// its hand-written backward against the dense float64 reference (gradients from the autograd engine) with routing
// indices fixed and shared by both sides (SPEC §0.1); full causal attention when every earlier chunk is selected;
// gradcheck of ag::chunk_attn; bad arguments.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "hydra/mixers/chunk_attn/chunk_attn.h"
#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

namespace {

// A std::mt19937_64 for the integer draws of one test (idx subsets), derived from the run's seed.
std::mt19937_64 fresh_rng() {
  static uint64_t counter = 0;
  return std::mt19937_64(base_seed() ^ (0xD1B54A32D192ED03ull * ++counter));
}

struct Case {
  int64_t B, T, S, H, K, V, N, topk;
  const char* what;
};

// Random valid routing indices: for each (b, t, h) a random ordered subset of min(topk, c(p)) distinct earlier
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

// Integer-valued tensors in [-3, 3]: every score is an exact integer in float32 and float64 alike.
Tensor small_ints(const Shape& shape) {
  std::mt19937_64 rng = fresh_rng();
  std::vector<double> v(static_cast<std::size_t>(shape_numel(shape)));
  for (double& x : v) x = static_cast<double>(static_cast<int64_t>(rng() % 7) - 3);
  return from_vector<double>(v, shape);
}

std::string case_str(const Case& c) {
  return fmt::format("{}: B={} T={} S={} H={} K={} V={} N={} topk={}", c.what, c.B, c.T, c.S, c.H, c.K, c.V, c.N,
                     c.topk);
}

// The kernel (forward, lse, backward, and ag::chunk_attn in float64) against the dense float64 reference with
// engine gradients, for one dtype, with or without a (small, nonzero) bias.
void check_attn_against_ref(const Case& c, DType dt, bool with_bias, bool holes = false) {
  INFO(case_str(c) << " dtype " << dtype_name(dt) << " bias " << with_bias << " holes " << holes);
  // Inputs rounded to dt first, so both sides see the same values.
  const Tensor q = randn_t({c.B, c.T, c.H, c.K}, dt).to(DType::Float64);
  const Tensor k = randn_t({c.B, c.S, c.H, c.K}, dt).to(DType::Float64);
  const Tensor v = randn_t({c.B, c.S, c.H, c.V}, dt).to(DType::Float64);
  const Tensor bias = with_bias ? rand_t({c.B, c.T, c.H, c.topk}, -0.5, 0.5, dt).to(DType::Float64) : Tensor();
  const Tensor dout = randn_t({c.B, c.T, c.H, c.V}, dt).to(DType::Float64);
  const Tensor idx = random_idx(c, holes);
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.K));

  // Reference and its gradients through the autograd engine.
  const Tensor ql = leaf(q.clone()), kl = leaf(k.clone()), vl = leaf(v.clone());
  const Tensor bl = with_bias ? leaf(bias.clone()) : Tensor();
  const Tensor o_ref = chunk_attn_ref(ql, kl, vl, idx, bl, c.N, scale);
  ag::backward(o_ref, dout);
  const Tensor lse_ref = chunk_attn_ref_lse(q, k, v, idx, bias, c.N, scale);

  // The raw kernels in dt.
  const Tensor qd = q.to(dt), kd = k.to(dt), vd = v.to(dt), bd = with_bias ? bias.to(dt) : Tensor();
  const ChunkAttnOutput out = chunk_attn_forward(qd, kd, vd, idx, bd, c.N, scale);
  REQUIRE(out.o.dtype() == dt);
  REQUIRE(out.lse.dtype() == dt);
  check_close(out.o, o_ref.detach(), "o");
  check_close(out.lse, lse_ref, "lse");
  const ChunkAttnGrads g = chunk_attn_backward(dout.to(dt), qd, kd, vd, idx, bd, out.o, out.lse, c.N, scale);
  check_close(g.dq, ag::grad(ql), "dq");
  check_close(g.dk, ag::grad(kl), "dk");
  check_close(g.dv, ag::grad(vl), "dv");
  if (with_bias) {
    REQUIRE(g.dbias.defined());
    check_close(g.dbias, ag::grad(bl), "dbias");
  } else {
    CHECK(!g.dbias.defined());
  }

  // The differentiable op in float64 gives the same gradients.
  if (dt == DType::Float64) {
    const Tensor q2 = leaf(q.clone()), k2 = leaf(k.clone()), v2 = leaf(v.clone());
    const Tensor b2 = with_bias ? leaf(bias.clone()) : Tensor();
    const Tensor o2 = ag::chunk_attn(q2, k2, v2, idx, b2, c.N, scale);
    check_close(o2, o_ref.detach(), "ag o");
    ag::backward(o2, dout);
    check_close(ag::grad(q2), ag::grad(ql), "ag dq");
    check_close(ag::grad(k2), ag::grad(kl), "ag dk");
    check_close(ag::grad(v2), ag::grad(vl), "ag dv");
    if (with_bias) check_close(ag::grad(b2), ag::grad(bl), "ag dbias");
  }
}

// Dense causal attention (every earlier position visible), float64, from primitives.
Tensor causal_attn(const Tensor& q, const Tensor& k, const Tensor& v, double scale) {
  const int64_t T = q.size(1), S = k.size(1);
  std::vector<int32_t> hidden(static_cast<std::size_t>(T * S), 0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t m = S - T + t + 1; m < S; ++m) hidden[t * S + m] = 1;
  const Tensor mask = from_vector<int32_t>(hidden, {T, S}, DType::Bool);
  Tensor logits = ag::mul(ag::matmul(ag::permute(q, {0, 2, 1, 3}), ag::permute(k, {0, 2, 1, 3}), Trans::No,
                                     Trans::Yes),
                          scale);
  logits = ag::masked_fill(logits, mask, -std::numeric_limits<double>::infinity());
  Tensor o = ag::matmul(ag::softmax(logits, -1), ag::permute(v, {0, 2, 1, 3}));
  return ag::contiguous(ag::permute(o, {0, 2, 1, 3}));
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Routing

TEST_CASE("chunk_route matches the brute-force reference (exact integer scores)") {
  struct RouteCase {
    int64_t B, T, H, K, n_c, N, topk, S;
    const char* what;
  };
  const std::vector<RouteCase> cases = {
      {2, 37, 3, 5, 9, 4, 3, 37, "parallel forward, S not a multiple of the chunk"},
      {1, 1, 2, 16, 62, 16, 4, 1000, "decode T = 1, S large"},
      {2, 10, 2, 6, 5, 4, 3, 50, "streaming, n_c below the earlier chunks of the last queries"},
      {1, 70, 1, 4, 17, 4, 5, 70, "more than one query block"},
      {2, 12, 2, 3, 3, 8, 0, 30, "topk = 0"},
      {1, 20, 3, 4, 2, 8, 6, 20, "fewer earlier chunks than topk"},
      {1, 9, 2, 3, 9, 1, 3, 9, "chunk size 1"},
      {2, 5, 1, 4, 0, 8, 2, 5, "queries inside chunk 0, no summaries"},
      {1, 3, 2, 8, 12, 4, 3, 10, "n_c above c(p)"},
  };
  for (const RouteCase& c : cases) {
    for (DType dt : {DType::Float64, DType::Float32}) {
      INFO(c.what << " dtype " << dtype_name(dt));
      const Tensor q0 = small_ints({c.B, c.T, c.H, c.K});
      const Tensor r = small_ints({c.B, c.n_c, c.H, c.K});
      const Tensor idx = chunk_route(q0.to(dt), r.to(dt), c.N, c.topk, c.S);
      const Tensor ref = chunk_route_ref(q0, r, c.N, c.topk, c.S);
      REQUIRE(idx.dtype() == DType::Int64);
      REQUIRE(idx.shape() == Shape({c.B, c.T, c.H, c.topk}));
      CHECK(idx.to_vector<int64_t>() == ref.to_vector<int64_t>());
      // Every query gets min(topk, min(c(p), n_c)) chunks, then padding.
      const std::vector<int64_t> iv = idx.to_vector<int64_t>();
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t t = 0; t < c.T; ++t)
          for (int64_t h = 0; h < c.H; ++h) {
            const int64_t n_cand = std::min((c.S - c.T + t) / c.N, c.n_c), want = std::min(c.topk, n_cand);
            for (int64_t i = 0; i < c.topk; ++i) {
              const int64_t j = iv[((b * c.T + t) * c.H + h) * c.topk + i];
              if (i < want) {
                CHECK((j >= 0 && j < n_cand));
              } else {
                CHECK(j == -1);
              }
            }
          }
    }
  }
}

TEST_CASE("chunk_route on well-separated real scores picks the highest in descending order") {
  // r_j = a_j · u with the a_j a shuffled set of multiples of 0.25 and q0·u >= 0.5: scores differ by >= 0.125.
  const int64_t B = 2, T = 24, H = 2, K = 7, N = 3, S = 40, n_c = 13, topk = 4;
  std::mt19937_64 rng = fresh_rng();
  const Tensor u = randn_t({K});
  const std::vector<double> uv = u.to_vector<double>();
  const double un2 = std::inner_product(uv.begin(), uv.end(), uv.begin(), 0.0);
  std::vector<double> a(static_cast<std::size_t>(n_c));
  for (int64_t j = 0; j < n_c; ++j) a[j] = 0.25 * static_cast<double>(j) - 1.5;
  std::vector<double> rv(static_cast<std::size_t>(B * n_c * H * K));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      std::shuffle(a.begin(), a.end(), rng);
      for (int64_t j = 0; j < n_c; ++j)
        for (int64_t i = 0; i < K; ++i) rv[((b * n_c + j) * H + h) * K + i] = a[j] * uv[i];
    }
  // q0 = random, shifted along u so that q0·u = ±s with s in [0.5, 2].
  std::vector<double> qv = randn_t({B, T, H, K}).to_vector<double>();
  const std::vector<double> coef = rand_t({B * T * H}, 0.5, 2.0).to_vector<double>();
  for (int64_t r = 0; r < B * T * H; ++r) {
    double* qr = qv.data() + r * K;
    const double d = std::inner_product(qr, qr + K, uv.begin(), 0.0);  // q0·u becomes s
    const double s = (r % 2 == 0 ? 1.0 : -1.0) * coef[r];
    for (int64_t i = 0; i < K; ++i) qr[i] += (s - d) * uv[i] / un2;
  }
  const Tensor q0 = from_vector<double>(qv, {B, T, H, K}), r = from_vector<double>(rv, {B, n_c, H, K});
  const Tensor ref = chunk_route_ref(q0, r, N, topk, S);
  for (DType dt : {DType::Float64, DType::Float32}) {
    INFO("dtype " << dtype_name(dt));
    CHECK(chunk_route(q0.to(dt), r.to(dt), N, topk, S).to_vector<int64_t>() == ref.to_vector<int64_t>());
  }
  // The reference itself orders by descending score.
  const std::vector<int64_t> iv = ref.to_vector<int64_t>();
  for (int64_t row = 0; row < B * T * H; ++row) {
    const int64_t b = row / (T * H), h = row % H;
    for (int64_t i = 0; i + 1 < topk; ++i) {
      const int64_t j0 = iv[row * topk + i], j1 = iv[row * topk + i + 1];
      if (j1 < 0) break;
      const double s0 = std::inner_product(qv.begin() + row * K, qv.begin() + row * K + K,
                                           rv.begin() + ((b * n_c + j0) * H + h) * K, 0.0);
      const double s1 = std::inner_product(qv.begin() + row * K, qv.begin() + row * K + K,
                                           rv.begin() + ((b * n_c + j1) * H + h) * K, 0.0);
      CHECK(s0 > s1 + 0.1);
    }
  }
}

TEST_CASE("chunk_route ties go to the lower chunk index") {
  const int64_t B = 1, T = 4, H = 2, K = 5, N = 2, S = 24, n_c = 10;  // c(p) >= 10: every j < n_c is a candidate
  for (DType dt : {DType::Float64, DType::Float32}) {
    INFO("dtype " << dtype_name(dt));
    // All summaries identical: the first topk candidates in index order.
    const Tensor row = randn_t({1, 1, 1, K});
    const Tensor same = row.expand({B, n_c, H, K}).contiguous();
    const Tensor q0 = randn_t({B, T, H, K});
    const Tensor idx = chunk_route(q0.to(dt), same.to(dt), N, 3, S);
    const std::vector<int64_t> iv = idx.to_vector<int64_t>();
    for (int64_t r = 0; r < B * T * H; ++r) {
      CHECK(iv[r * 3 + 0] == 0);
      CHECK(iv[r * 3 + 1] == 1);
      CHECK(iv[r * 3 + 2] == 2);
    }
    CHECK(iv == chunk_route_ref(q0.to(dt), same.to(dt), N, 3, S).to_vector<int64_t>());
    // Integer scores: chunks 6 and 2 tie for first (score 10), 4 and 8 tie for second (score 5), the rest 0.
    std::vector<double> rv(static_cast<std::size_t>(B * n_c * H * K), 0.0);
    std::vector<double> qv(static_cast<std::size_t>(B * T * H * K), 0.0);
    for (int64_t h = 0; h < H; ++h) {
      rv[(6 * H + h) * K] = rv[(2 * H + h) * K] = 2.0;
      rv[(4 * H + h) * K] = rv[(8 * H + h) * K] = 1.0;
      for (int64_t t = 0; t < T; ++t) qv[(t * H + h) * K] = 5.0;
    }
    const Tensor idx2 =
        chunk_route(from_vector<double>(qv, {B, T, H, K}, dt), from_vector<double>(rv, {B, n_c, H, K}, dt), N, 5, S);
    const std::vector<int64_t> iv2 = idx2.to_vector<int64_t>();
    for (int64_t r = 0; r < B * T * H; ++r)
      CHECK(std::vector<int64_t>(iv2.begin() + r * 5, iv2.begin() + r * 5 + 5) == std::vector<int64_t>{2, 6, 4, 8, 0});
  }
}

// ---------------------------------------------------------------------------------------------------------
// Attention

TEST_CASE("chunk_attn forward and backward match the dense float64 reference (fixed idx) in float64 and float32") {
  const std::vector<Case> cases = {
      {2, 37, 37, 3, 8, 6, 4, 3, "S not a multiple of the chunk, K != V"},
      {1, 1, 203, 2, 16, 12, 16, 4, "decode T = 1, S large"},
      {2, 13, 50, 2, 6, 10, 8, 2, "streaming S > T, queries mid-chunk"},
      {1, 9, 9, 1, 4, 3, 1, 3, "chunk size 1"},
      {1, 5, 5, 2, 4, 4, 8, 2, "queries inside chunk 0"},
      {2, 20, 20, 1, 5, 7, 4, 0, "topk = 0"},
      {1, 20, 23, 3, 4, 5, 8, 6, "fewer earlier chunks than topk"},
      {2, 64, 64, 2, 32, 32, 8, 3, "longer, float32 accumulation"},
  };
  for (const Case& c : cases)
    for (DType dt : {DType::Float64, DType::Float32})
      for (bool with_bias : {false, true}) check_attn_against_ref(c, dt, with_bias);
}

TEST_CASE("chunk_attn with -1 padding between selected chunks") {
  const Case c{2, 30, 41, 2, 5, 4, 4, 5, "holes"};
  for (DType dt : {DType::Float64, DType::Float32}) check_attn_against_ref(c, dt, true, true);
}

TEST_CASE("chunk_attn with every earlier chunk selected equals full causal attention") {
  const int64_t B = 2, T = 21, S = 30, H = 2, K = 6, V = 5, N = 4;
  const double scale = 0.4;
  // Routing with topk >= the number of earlier chunks selects them all (in score order).
  const Tensor q0 = randn_t({B, T, H, K});
  const Tensor sums = randn_t({B, S / N, H, K});
  const Tensor idx = chunk_route(q0, sums, N, 8, S);
  const Tensor q = randn_t({B, T, H, K}), k = randn_t({B, S, H, K}), v = randn_t({B, S, H, V});
  const Tensor dout = randn_t({B, T, H, V});
  const Tensor ql = leaf(q.clone()), kl = leaf(k.clone()), vl = leaf(v.clone());
  const Tensor o_ref = causal_attn(ql, kl, vl, scale);
  ag::backward(o_ref, dout);
  for (DType dt : {DType::Float64, DType::Float32}) {
    INFO("dtype " << dtype_name(dt));
    const Tensor qd = q.to(dt), kd = k.to(dt), vd = v.to(dt);
    const ChunkAttnOutput out = chunk_attn_forward(qd, kd, vd, idx, Tensor(), N, scale);
    // The float32 side rounds its inputs: compare against a reference on the rounded inputs.
    const Tensor q64 = qd.to(DType::Float64), k64 = kd.to(DType::Float64), v64 = vd.to(DType::Float64);
    check_close(out.o, causal_attn(q64, k64, v64, scale), "o");
    if (dt == DType::Float64) {
      check_close(out.o, o_ref.detach(), "o");
      const ChunkAttnGrads g = chunk_attn_backward(dout, qd, kd, vd, idx, Tensor(), out.o, out.lse, N, scale);
      check_close(g.dq, ag::grad(ql), "dq");
      check_close(g.dk, ag::grad(kl), "dk");
      check_close(g.dv, ag::grad(vl), "dv");
    }
  }
  // And the dense routed reference agrees.
  check_close(chunk_attn_ref(q, k, v, idx, Tensor(), N, scale), o_ref.detach(), kTolF64, "ref");
}

TEST_CASE("chunk_attn accepts strided inputs") {
  const int64_t B = 2, T = 11, S = 14, H = 3, K = 4, V = 5, N = 3, topk = 2;
  const Case c{B, T, S, H, K, V, N, topk, "strided"};
  const Tensor idx = random_idx(c);
  const Tensor q = randn_t({B, H, T, K}).permute({0, 2, 1, 3});  // [B, T, H, K] view
  const Tensor k = randn_t({B, S, H, 2 * K}).slice(3, 0, 2 * K, 2);
  const Tensor v = randn_t({B, H, S, V}).permute({0, 2, 1, 3});
  const Tensor bias = rand_t({B, T, topk, H}, -0.5, 0.5).transpose(2, 3);
  REQUIRE(!q.is_contiguous());
  const ChunkAttnOutput a = chunk_attn_forward(q, k, v, idx, bias, N, 0.5);
  const ChunkAttnOutput b = chunk_attn_forward(q.contiguous(), k.contiguous(), v.contiguous(), idx,
                                               bias.contiguous(), N, 0.5);
  CHECK(a.o.to_vector<double>() == b.o.to_vector<double>());
  check_close(a.o, chunk_attn_ref(q, k, v, idx, bias, N, 0.5), "o");
}

TEST_CASE("ag::chunk_attn gradcheck in float64 (q k v bias and fixed idx)") {
  const std::vector<Case> cases = {
      {2, 6, 9, 2, 3, 2, 2, 2, "streaming, bias"},
      {1, 7, 7, 1, 2, 3, 1, 3, "chunk size 1"},
      {1, 5, 8, 2, 3, 3, 3, 0, "topk = 0"},
  };
  for (const Case& c : cases) {
    INFO(case_str(c));
    const Tensor idx = random_idx(c);
    const double scale = 0.7;
    const Tensor q = leaf(randn_t({c.B, c.T, c.H, c.K})), k = leaf(randn_t({c.B, c.S, c.H, c.K}));
    const Tensor v = leaf(randn_t({c.B, c.S, c.H, c.V}));
    const Tensor bias = leaf(rand_t({c.B, c.T, c.H, c.topk}, -0.3, 0.3));
    check_gradcheck(
        "chunk_attn",
        [&](const std::vector<Tensor>& in) {
          return std::vector<Tensor>{ag::chunk_attn(in[0], in[1], in[2], idx, in[3], c.N, scale)};
        },
        {q, k, v, bias});
    check_gradcheck(
        "chunk_attn (no bias)",
        [&](const std::vector<Tensor>& in) {
          return std::vector<Tensor>{ag::chunk_attn(in[0], in[1], in[2], idx, Tensor(), c.N, scale)};
        },
        {q, k, v});
  }
}

TEST_CASE("ag::chunk_attn computes only the gradients asked for") {
  const Case c{1, 6, 10, 2, 3, 4, 3, 2, "partial grads"};
  const Tensor idx = random_idx(c);
  const Tensor q = randn_t({1, 6, 2, 3}), v = randn_t({1, 10, 2, 4}), bias = randn_t({1, 6, 2, 2});
  const Tensor k = leaf(randn_t({1, 10, 2, 3}));
  const Tensor o = ag::chunk_attn(q, k, v, idx, bias, c.N, 0.5);
  ag::backward(o, randn_t({1, 6, 2, 4}));
  CHECK(ag::grad(k).defined());
  CHECK(ag::grad(k).shape() == k.shape());
  // No input requires grad: no node.
  CHECK(ag::grad_fn(ag::chunk_attn(q, k.detach(), v, idx, bias, c.N, 0.5)) == nullptr);
}

// ---------------------------------------------------------------------------------------------------------
// Bad arguments

TEST_CASE("chunk_attn and chunk_route reject bad arguments with messages naming the values") {
  const int64_t B = 1, T = 6, S = 10, H = 2, K = 3, V = 4, N = 4;
  const Tensor q = randn_t({B, T, H, K}), k = randn_t({B, S, H, K}), v = randn_t({B, S, H, V});
  // Query t is at p = 4 + t: t = 0..3 in chunk 1, t = 4, 5 in chunk 2.
  auto idx_with = [&](int64_t t, int64_t h, std::vector<int64_t> row) {
    std::vector<int64_t> all(static_cast<std::size_t>(B * T * H * 2), -1);
    for (std::size_t i = 0; i < row.size(); ++i) all[(t * H + h) * 2 + i] = row[i];
    return from_vector<int64_t>(all, {B, T, H, 2});
  };
  const char* fwd = "chunk_attn_forward";
  // Valid: chunk 0 for t = 0, chunks 1 and 0 for t = 5.
  CHECK_NOTHROW(chunk_attn_forward(q, k, v, idx_with(5, 1, {1, 0}), Tensor(), N, 1.0));
  // Own chunk, future chunk, a chunk beyond S, duplicates, negative values other than -1.
  check_throws_with([&] { chunk_attn_forward(q, k, v, idx_with(0, 1, {1, -1}), Tensor(), N, 1.0); },
                    {fwd, "idx[b=0, t=0, h=1, i=0] = 1", "c(p) = 1", "p = 4"});
  check_throws_with([&] { chunk_attn_forward(q, k, v, idx_with(2, 0, {0, 2}), Tensor(), N, 1.0); },
                    {fwd, "idx[b=0, t=2, h=0, i=1] = 2", "0 <= j < 1"});
  check_throws_with([&] { chunk_attn_forward(q, k, v, idx_with(5, 0, {7, -1}), Tensor(), N, 1.0); },
                    {fwd, "idx[b=0, t=5, h=0, i=0] = 7"});
  check_throws_with([&] { chunk_attn_forward(q, k, v, idx_with(5, 1, {1, 1}), Tensor(), N, 1.0); },
                    {fwd, "idx[b=0, t=5, h=1, i=1] = 1 repeats idx[b=0, t=5, h=1, i=0]"});
  check_throws_with([&] { chunk_attn_forward(q, k, v, idx_with(3, 0, {-2, -1}), Tensor(), N, 1.0); },
                    {fwd, "idx[b=0, t=3, h=0, i=0] = -2", "negative"});
  const Tensor ok_idx = idx_with(5, 1, {1, 0});
  // The backward and the reference check idx the same way.
  check_throws_with(
      [&] {
        chunk_attn_backward(randn_t({B, T, H, V}), q, k, v, idx_with(0, 0, {1, -1}), Tensor(), randn_t({B, T, H, V}),
                            randn_t({B, H, T}), N, 1.0);
      },
      {"chunk_attn_backward", "idx[b=0, t=0, h=0, i=0] = 1"});
  check_throws_with([&] { chunk_attn_ref(q, k, v, idx_with(0, 0, {1, -1}), Tensor(), N, 1.0); },
                    {"chunk_attn_ref", "idx[b=0, t=0, h=0, i=0] = 1"});
  // Ranks and shapes.
  check_throws_with([&] { chunk_attn_forward(randn_t({T, H, K}), k, v, ok_idx, Tensor(), N, 1.0); },
                    {fwd, "'q' must have rank 4", "[6, 2, 3]"});
  check_throws_with([&] { chunk_attn_forward(q, randn_t({B, S, H, K + 1}), v, ok_idx, Tensor(), N, 1.0); },
                    {fwd, "'k'", "[B, S, H, K]", "[1, 10, 2, 3]", "[1, 10, 2, 4]"});
  check_throws_with([&] { chunk_attn_forward(q, k, randn_t({B, S - 1, H, V}), ok_idx, Tensor(), N, 1.0); },
                    {fwd, "'v'", "[1, 10, 2, 4]", "[1, 9, 2, 4]"});
  check_throws_with([&] { chunk_attn_forward(q, k, v, ok_idx.slice(1, 0, 5), Tensor(), N, 1.0); },
                    {fwd, "'idx'", "[B, T, H, topk]", "[1, 5, 2, 2]"});
  check_throws_with([&] { chunk_attn_forward(q, k, v, ok_idx, randn_t({B, T, H, 3}), N, 1.0); },
                    {fwd, "'bias'", "[1, 6, 2, 2]", "[1, 6, 2, 3]"});
  check_throws_with([&] { chunk_attn_forward(randn_t({B, 11, H, K}), k, v, ok_idx, Tensor(), N, 1.0); },
                    {fwd, "T = 11", "S = 10"});
  check_throws_with(
      [&] {
        chunk_attn_backward(randn_t({B, T, H, V}), q, k, v, ok_idx, Tensor(), randn_t({B, T, H, V}),
                            randn_t({B, T, H}), N, 1.0);
      },
      {"chunk_attn_backward", "'lse'", "[B, H, T]", "[1, 2, 6]", "[1, 6, 2]"});
  // Sizes.
  check_throws_with([&] { chunk_attn_forward(q, k, v, ok_idx, Tensor(), 0, 1.0); }, {fwd, "chunk must be >= 1, got 0"});
  check_throws_with([&] { chunk_route(q, randn_t({B, 2, H, K}), 0, 2, S); },
                    {"chunk_route", "chunk must be >= 1, got 0"});
  check_throws_with([&] { chunk_route(q, randn_t({B, 2, H, K}), N, -1, S); },
                    {"chunk_route", "topk must be >= 0, got -1"});
  check_throws_with([&] { chunk_route(q, randn_t({B, 2, H, K}), N, 2, 5); },
                    {"chunk_route", "total_len = 5", "T = 6"});
  check_throws_with([&] { chunk_route(q, randn_t({B, 2, H + 1, K}), N, 2, S); },
                    {"chunk_route", "'summaries'", "[B, n_c, H, K]", "[1, 2, 2, 3]", "[1, 2, 3, 3]"});
  check_throws_with([&] { chunk_route(q, randn_t({2, H, K}), N, 2, S); },
                    {"chunk_route", "'summaries' must have rank 4"});
  // Dtypes.
  check_throws_with([&] { chunk_attn_forward(q.to(DType::BFloat16), k, v, ok_idx, Tensor(), N, 1.0); },
                    {fwd, "'q' must be float32 or float64", "bfloat16"});
  check_throws_with([&] { chunk_attn_forward(q, k.to(DType::Float32), v, ok_idx, Tensor(), N, 1.0); },
                    {fwd, "'k' has dtype float32", "'q' has dtype float64"});
  check_throws_with([&] { chunk_attn_forward(q, k, v, ok_idx.to(DType::Int32), Tensor(), N, 1.0); },
                    {fwd, "'idx' must be int64", "int32"});
  check_throws_with(
      [&] { chunk_attn_forward(q, k, v, ok_idx, randn_t({B, T, H, 2}, DType::Float32), N, 1.0); },
      {fwd, "'bias' has dtype float32"});
  check_throws_with([&] { chunk_route(q.to(DType::Int64), randn_t({B, 2, H, K}), N, 2, S); },
                    {"chunk_route", "'q0' must be float32 or float64", "int64"});
  check_throws_with([&] { chunk_route(q, randn_t({B, 2, H, K}, DType::Float32), N, 2, S); },
                    {"chunk_route", "'summaries' has dtype float32"});
  check_throws_with([&] { chunk_attn_forward(Tensor(), k, v, ok_idx, Tensor(), N, 1.0); }, {fwd, "'q'", "undefined"});
}
