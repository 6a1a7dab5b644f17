// Newton–Schulz (SPEC §7.4) against an SVD-based reference. With G = U Σ Vᵀ, every iteration
// X ← aX + (bA + cA²)X, A = XXᵀ, maps X = U s Vᵀ to U p(s) Vᵀ with p(s) = a·s + b·s³ + c·s⁵ applied to each
// singular value. So after normalising by ‖G‖_F + 1e-7, five steps give exactly U·diag(p⁵(σ / (‖G‖_F + 1e-7)))·Vᵀ:
// the known result of 5 quintic steps (singular values pushed into roughly [0.7, 1.2], not exactly 1), which the
// float32 iteration must reproduce to float32 accuracy.
#include <doctest/doctest.h>

#include <Eigen/Dense>
#include <cmath>

#include "optim/muon.h"
#include "tests/test_util.h"

using namespace hydra;

TEST_CASE("newton_schulz equals the SVD form U p5(sigma) V^T of five quintic steps") {
  for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{32, 16}, {16, 32}, {24, 24}, {7, 3}}) {
    const Tensor g = hydra::test::randn_t({rows, cols}, DType::Float64);
    const Tensor x = optim::newton_schulz(g.to(DType::Float32), 5).to(DType::Float64);
    const std::vector<double> gv = g.to_vector<double>();
    Eigen::MatrixXd G(rows, cols);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) G(i, j) = gv[static_cast<std::size_t>(i * cols + j)];
    Eigen::JacobiSVD<Eigen::MatrixXd> svd(G, Eigen::ComputeThinU | Eigen::ComputeThinV);
    const double fro = G.norm() + 1e-7;
    Eigen::VectorXd s = svd.singularValues() / fro;
    for (int k = 0; k < 5; ++k)
      for (Eigen::Index i = 0; i < s.size(); ++i) {
        const double v = s(i);
        s(i) = 3.4445 * v - 4.7750 * v * v * v + 2.0315 * v * v * v * v * v;
      }
    const Eigen::MatrixXd ref = svd.matrixU() * s.asDiagonal() * svd.matrixV().transpose();
    std::vector<double> rv(static_cast<std::size_t>(rows * cols));
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) rv[static_cast<std::size_t>(i * cols + j)] = ref(i, j);
    INFO(rows << "x" << cols << ", singular values after 5 steps: " << s.minCoeff() << " .. " << s.maxCoeff());
    hydra::test::check_close(x, from_vector(rv, {rows, cols}, DType::Float64), hydra::test::kTolF32, "NS vs SVD");
  }
}
