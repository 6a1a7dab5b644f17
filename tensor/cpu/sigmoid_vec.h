#pragma once
// The sigmoid family over contiguous float arrays, vectorised with Eigen's packet exp (Cephes' expf polynomial,
// ≤ 2 ulp; NaN propagates). The float32 CPU paths of silu, sigmoid, their gradients and swiglu use these instead
// of a libm call per element, which kept those loops scalar. The formulas are those of fn::Silu, fn::SiluGrad and
// fn::SigmoidGrad (tensor/ops/elementwise_functors.h), s = σ(x) = 1/(1 + exp(−x)), except that 1 − s is computed as
// σ(−x) = 1/(1 + exp(x)) (no cancellation for x ≥ 0, no select: Eigen 3.4's select and comparisons are scalar).
//
// Every element goes through Eigen's packet code, never its scalar fallback (which calls libm and rounds
// differently): work is copied in tiles of up to kSigmoidTile elements into aligned buffers padded with zeros to a
// multiple of every packet width. So an element's result does not depend on its address or on where a thread's
// range starts, and results do not depend on the thread count.
#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

namespace hydra::cpu {

constexpr int64_t kSigmoidTile = 256;

namespace detail {
constexpr int64_t kPad = 16;  // floats: a multiple of the SSE, AVX and AVX-512 packet widths
using ArrayF = Eigen::Array<float, Eigen::Dynamic, 1>;
using TileF = Eigen::Array<float, Eigen::Dynamic, 1, 0, kSigmoidTile, 1>;  // on the stack, aligned
using TileMap = Eigen::Map<ArrayF, Eigen::Aligned64>;
struct alignas(64) Tile {
  float v[kSigmoidTile];
};

// For each tile: copies the NIn inputs into padded aligned buffers, calls f(in maps, out maps) and copies the
// NOut outputs back.
template <std::size_t NIn, std::size_t NOut, typename F>
inline void tiled(int64_t n, std::array<const float*, NIn> in, std::array<float*, NOut> out, F&& f) {
  Tile ti[NIn], to[NOut];
  for (int64_t i = 0; i < n; i += kSigmoidTile) {
    const int64_t len = std::min(kSigmoidTile, n - i), padded = (len + kPad - 1) / kPad * kPad;
    std::array<TileMap, NIn> X = [&]<std::size_t... k>(std::index_sequence<k...>) {
      return std::array<TileMap, NIn>{TileMap(ti[k].v, padded)...};
    }(std::make_index_sequence<NIn>{});
    std::array<TileMap, NOut> Y = [&]<std::size_t... k>(std::index_sequence<k...>) {
      return std::array<TileMap, NOut>{TileMap(to[k].v, padded)...};
    }(std::make_index_sequence<NOut>{});
    for (std::size_t k = 0; k < NIn; ++k) {
      std::copy(in[k] + i, in[k] + i + len, ti[k].v);
      std::fill(ti[k].v + len, ti[k].v + padded, 0.0f);
    }
    f(X, Y);
    for (std::size_t k = 0; k < NOut; ++k) std::copy(to[k].v, to[k].v + len, out[k] + i);
  }
}
}  // namespace detail

// y = x·σ(x)
inline void silu_f32(const float* x, float* y, int64_t n) {
  detail::tiled<1, 1>(n, {x}, {y}, [](auto& X, auto& Y) { Y[0] = X[0] / (1.0f + (-X[0]).exp()); });
}

// y = σ(x)
inline void sigmoid_f32(const float* x, float* y, int64_t n) {
  detail::tiled<1, 1>(n, {x}, {y}, [](auto& X, auto& Y) {
    Y[0] = 1.0f / (1.0f + (-X[0]).exp());
  });
}

// out = g·silu'(x) = g·s·(1 + x·(1 − s)), or with Sigmoid, g·σ'(x) = g·s·(1 − s)
template <bool Sigmoid>
inline void sigmoid_family_grad_f32(const float* g, const float* x, float* out, int64_t n) {
  detail::tiled<2, 1>(n, {g, x}, {out}, [](auto& In, auto& Y) {
    const auto &G = In[0], &X = In[1];
    const detail::TileF s = 1.0f / (1.0f + (-X).exp());
    const detail::TileF oms = 1.0f / (1.0f + X.exp());  // 1 − s
    if constexpr (Sigmoid) {
      Y[0] = G * s * oms;
    } else {
      Y[0] = G * s * (1.0f + X * oms);
    }
  });
}

// SwiGLU on one row: y = silu(g)·a
inline void swiglu_row_f32(const float* g, const float* a, float* y, int64_t n) {
  detail::tiled<2, 1>(n, {g, a}, {y}, [](auto& In, auto& Y) { Y[0] = In[0] / (1.0f + (-In[0]).exp()) * In[1]; });
}

// Its gradient on one row: dg = gy·a·silu'(g), da = gy·silu(g)
inline void swiglu_grad_row_f32(const float* gy, const float* g, const float* a, float* dg, float* da, int64_t n) {
  detail::tiled<3, 2>(n, {gy, g, a}, {dg, da}, [](auto& In, auto& Y) {
    const auto &GY = In[0], &Gt = In[1], &A = In[2];
    const detail::TileF s = 1.0f / (1.0f + (-Gt).exp());
    const detail::TileF oms = 1.0f / (1.0f + Gt.exp());
    Y[0] = GY * A * s * (1.0f + Gt * oms);
    Y[1] = GY * Gt * s;
  });
}

}  // namespace hydra::cpu
