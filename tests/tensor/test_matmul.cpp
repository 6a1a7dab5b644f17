// matmul: every transpose combination, batched with broadcasting, strided views, dtypes, errors.
#include <omp.h>

#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

namespace {

// Plain triple loop in float64 on op(a)·op(b) with broadcasting batch dims.
Tensor ref_matmul(const Tensor& a, const Tensor& b, Trans ta, Trans tb) {
  Tensor A = (ta == Trans::Yes ? a.transpose(-1, -2) : a).to(DType::Float64);
  Tensor B = (tb == Trans::Yes ? b.transpose(-1, -2) : b).to(DType::Float64);
  Shape ba(A.shape().begin(), A.shape().end() - 2), bb(B.shape().begin(), B.shape().end() - 2);
  Shape batch = broadcast_shapes(ba, bb, "ref");
  const int64_t M = A.size(-2), K = A.size(-1), N = B.size(-1);
  Shape sa = batch, sb = batch;
  sa.insert(sa.end(), {M, K});
  sb.insert(sb.end(), {K, N});
  std::vector<double> va = A.expand(sa).contiguous().to_vector<double>();
  std::vector<double> vb = B.expand(sb).contiguous().to_vector<double>();
  const int64_t nb = shape_numel(batch);
  std::vector<double> out(nb * M * N, 0.0);
  for (int64_t z = 0; z < nb; ++z)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += va[z * M * K + i * K + k] * vb[z * K * N + k * N + j];
        out[z * M * N + i * N + j] = s;
      }
  Shape so = batch;
  so.insert(so.end(), {M, N});
  return from_vector(out, so);
}

}  // namespace

TEST_CASE("matmul matches a float64 triple loop for all transposes and dtypes") {
  for (DType dt : {DType::Float64, DType::Float32, DType::BFloat16}) {
    for (Trans ta : {Trans::No, Trans::Yes}) {
      for (Trans tb : {Trans::No, Trans::Yes}) {
        for (auto [M, K, N] : std::vector<std::array<int64_t, 3>>{{1, 1, 1}, {5, 7, 3}, {33, 65, 17}, {1, 64, 9}}) {
          INFO(dtype_name(dt) << " ta=" << (ta == Trans::Yes) << " tb=" << (tb == Trans::Yes) << " M=" << M
                              << " K=" << K << " N=" << N);
          Tensor a = randn_t(ta == Trans::Yes ? Shape{K, M} : Shape{M, K}, dt);
          Tensor b = randn_t(tb == Trans::Yes ? Shape{N, K} : Shape{K, N}, dt);
          check_close(matmul(a, b, ta, tb), ref_matmul(a, b, ta, tb));
        }
      }
    }
  }
}

TEST_CASE("batched matmul broadcasts batch dims and reads strided views") {
  Tensor a = randn_t({3, 1, 4, 6}), b = randn_t({5, 6, 2});
  check_close(matmul(a, b), ref_matmul(a, b, Trans::No, Trans::No), "broadcast batch");
  Tensor x = randn_t({2, 9, 5});  // (B, T, C) @ W^T with W (N, C)
  Tensor w = randn_t({4, 5});
  check_close(matmul(x, w, Trans::No, Trans::Yes), ref_matmul(x, w, Trans::No, Trans::Yes), "x W^T");
  Tensor big = randn_t({6, 10, 8});
  Tensor sl = big.slice(1, 1, 9, 2).transpose(1, 2);  // neither row- nor column-major: copied first
  Tensor other = randn_t({6, 4, 3});
  check_close(matmul(sl, other), ref_matmul(sl, other, Trans::No, Trans::No), "sliced view");
  Tensor tview = randn_t({7, 5}).transpose(0, 1);  // column-major, read in place
  Tensor rhs = randn_t({7, 3});
  check_close(matmul(tview, rhs), ref_matmul(tview, rhs, Trans::No, Trans::No), "transposed view");
  Tensor empty_k = matmul(zeros({3, 0}), zeros({0, 4}));
  CHECK(empty_k.to_vector<float>() == std::vector<float>(12, 0.0f));
  CHECK(matmul(zeros({0, 3}), zeros({3, 4})).shape() == Shape{0, 4});
}

TEST_CASE("matmul errors name the shapes and transposes") {
  check_throws_with([] { matmul(zeros({2, 3}), zeros({4, 5})); }, {"matmul", "[2, 3]", "[4, 5]", "K=3", "K=4"});
  check_throws_with([] { matmul(zeros({3}), zeros({3, 1})); }, {"matmul", "rank >= 2"});
  check_throws_with([] { matmul(zeros({2, 3}), zeros({3, 2}, DType::Float64)); }, {"matmul", "float32", "float64"});
  check_throws_with([] { matmul(zeros({2, 2, 3}), zeros({3, 3, 2})); }, {"matmul", "broadcast"});
  check_throws_with([] { matmul(zeros({2, 3}, DType::Int64), zeros({3, 2}, DType::Int64)); }, {"matmul", "int64"});
}

TEST_CASE("matmul with broadcast (stride-0) matrices and single-row strided views") {
  Tensor row = from_vector<double>({1, 2, 3}, {1, 3}).expand({4, 3});  // every row the same, rs = 0
  Tensor w = randn_t({3, 2});
  check_close(matmul(row, w), ref_matmul(row, w, Trans::No, Trans::No), "expanded rows");
  Tensor col = randn_t({3, 1}).expand({3, 5});  // cs = 0
  check_close(matmul(w.transpose(0, 1), col), ref_matmul(w.transpose(0, 1), col, Trans::No, Trans::No), "expanded cols");
  Tensor wide = randn_t({6, 4});
  Tensor one_row = wide.slice(0, 2, 3).transpose(0, 1).transpose(0, 1);  // (1, 4) view with offset
  Tensor strided_row = randn_t({4, 6}).slice(1, 0, 6, 3).transpose(0, 1).slice(0, 0, 1);  // (1, 4), cs = 6
  Tensor rhs = randn_t({4, 3});
  check_close(matmul(one_row, rhs), ref_matmul(one_row, rhs, Trans::No, Trans::No), "one row");
  check_close(matmul(strided_row, rhs), ref_matmul(strided_row, rhs, Trans::No, Trans::No), "strided row");
  check_close(matmul(rhs, strided_row, Trans::Yes, Trans::Yes), ref_matmul(rhs, strided_row, Trans::Yes, Trans::Yes),
              "transposed strided row");
}

TEST_CASE("linear computes x·wᵀ + bias for any leading dims") {
  for (DType dt : {DType::Float64, DType::Float32, DType::BFloat16}) {
    INFO(dtype_name(dt));
    Tensor x = randn_t({2, 5, 7}, dt), w = randn_t({4, 7}, dt), b = randn_t({4}, dt);
    Tensor ref = add(ref_matmul(x.reshape({10, 7}), w, Trans::No, Trans::Yes), b.to(DType::Float64)).reshape({2, 5, 4});
    check_close(linear(x, w, b), ref, "with bias");
    check_close(linear(x.transpose(0, 1), w).transpose(0, 1),
                ref_matmul(x.reshape({10, 7}), w, Trans::No, Trans::Yes).reshape({2, 5, 4}), "strided x, no bias");
  }
  check_throws_with([] { linear(zeros({3, 5}), zeros({4, 6})); }, {"linear", "[3, 5]", "[4, 6]"});
  check_throws_with([] { linear(zeros({3, 5}), zeros({4, 5}), zeros({3})); }, {"linear", "bias", "[3]"});
}

TEST_CASE("CPU matmul gives the same bits for any thread count (K long enough to be blocked)") {
  // K = 1100 > Eigen's reduction block for a 32 KiB L1 (288 floats, 144 doubles), so partial sums are rounded at
  // block edges; the output is split by rows (M > N), by columns (N > M), and both odd sizes leave partial panels.
  Generator g(7);
  const int keep = omp_get_max_threads();
  for (DType dt : {DType::Float32, DType::Float64}) {
    for (const auto& [M, N] : {std::pair<int64_t, int64_t>{203, 61}, std::pair<int64_t, int64_t>{45, 230}}) {
      for (Trans ta : {Trans::No, Trans::Yes}) {
        const int64_t K = 1100;
        const Tensor a = ta == Trans::Yes ? randn({K, M}, g, dt) : randn({M, K}, g, dt);
        const Tensor b = randn({K, N}, g, dt);
        omp_set_num_threads(1);
        const Tensor one = matmul(a, b, ta, Trans::No);
        const std::vector<double> bits = one.to_vector<double>();  // exact for float32 and float64
        for (int threads : {2, 3, 5}) {
          INFO(dtype_name(dt), " M=", M, " N=", N, " trans_a=", ta == Trans::Yes, " threads=", threads);
          omp_set_num_threads(threads);
          CHECK(matmul(a, b, ta, Trans::No).to_vector<double>() == bits);
        }
        check_close(one, ref_matmul(a, b, ta, Trans::No), tolerance_for(dt), "product");
      }
    }
  }
  omp_set_num_threads(keep);
}
