#include "nn/layers.h"

#include <cmath>

#include "autograd/autograd.h"
#include "nn/precision.h"
#include "tensor/check.h"

namespace hydra::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool with_bias, Generator& gen) {
  HYDRA_CHECK(in_features > 0 && out_features > 0, "Linear: features must be positive, got in={} out={}",
              in_features, out_features);
  weight = hydra::mul(randn({out_features, in_features}, gen), 0.02);
  register_parameter("weight", &weight);
  if (with_bias) {
    bias = zeros({out_features});
    register_parameter("bias", &bias);
  }
}

void ShortConv::Conv::init(Tensor w, Tensor b) {
  weight = std::move(w);
  bias = std::move(b);
  register_parameter("weight", &weight);
  register_parameter("bias", &bias);
}

Tensor Linear::forward(const Tensor& x) const {
  HYDRA_CHECK(x.dim() >= 1 && x.size(-1) == in_features(), "Linear: input has shape {}, expected (..., {})",
              shape_str(x.shape()), in_features());
  return ag::linear(to_compute(x), to_compute(weight), to_compute(bias));
}

Embedding::Embedding(int64_t num, int64_t dim, int64_t padding_idx, Generator& gen) : padding_idx_(padding_idx) {
  HYDRA_CHECK(num > 0 && dim > 0, "Embedding: sizes must be positive, got num={} dim={}", num, dim);
  HYDRA_CHECK(padding_idx >= -1 && padding_idx < num, "Embedding: padding_idx {} outside [-1, {})", padding_idx, num);
  weight = hydra::mul(randn({num, dim}, gen), 0.02);
  register_parameter("weight", &weight);
}

Tensor Embedding::forward(const Tensor& ids) const { return ag::embedding(weight, ids, padding_idx_); }

RMSNorm::RMSNorm(int64_t dim, double eps) : eps_(eps) {
  HYDRA_CHECK(dim > 0 && eps > 0, "RMSNorm: need dim > 0 and eps > 0, got dim={} eps={}", dim, eps);
  weight = ones({dim});
  register_parameter("weight", &weight);
}

Tensor RMSNorm::forward(const Tensor& x) const {
  // Mixed precision: the statistics and the weight stay in the parameters' dtype; the output goes on in the compute
  // dtype (nn/precision.h).
  const Tensor xw = to_dtype_of(x, weight);
  return ag::rms_norm(xw, weight, eps_, compute_cast_of(xw));  // the cast to the compute dtype in the same pass
}

SwiGLU::SwiGLU(int64_t dim, int64_t hidden, Generator& gen)
    : w_fused(dim, 2 * hidden, false, gen), w_down(hidden, dim, false, gen), hidden_(hidden) {
  register_module("w_fused", &w_fused);
  register_module("w_down", &w_down);
}

Tensor SwiGLU::forward(const Tensor& x) const {
  return w_down.forward(ag::swiglu(w_fused.forward(x)));  // silu(g) ⊙ a of [g | a] in one fused op
}

ShortConv::ShortConv(int64_t channels, int64_t kernel, Generator& gen) : channels_(channels), kernel_(kernel) {
  HYDRA_CHECK(channels > 0 && kernel > 0, "ShortConv: need channels > 0 and kernel > 0, got {} and {}", channels,
              kernel);
  const double bound = 1.0 / std::sqrt(static_cast<double>(kernel));
  Tensor w = hydra::sub(hydra::mul(rand({channels, 1, kernel}, gen), 2 * bound), bound);
  Tensor b = hydra::sub(hydra::mul(rand({channels}, gen), 2 * bound), bound);
  conv.init(w, b);
  register_module("conv", &conv);
}

ShortConv::Output ShortConv::forward(const Tensor& x, const Tensor& cache) const {
  HYDRA_CHECK(x.dim() == 3 && x.size(2) == channels_, "ShortConv: input has shape {}, expected (B, T, {})",
              shape_str(x.shape()), channels_);
  const Tensor w = to_dtype_of(ag::view(conv.weight, {channels_, kernel_}), x);
  CausalConv1dOutput out = ag::causal_conv1d(x, w, to_dtype_of(conv.bias, x), to_dtype_of(cache, x));
  return {ag::silu(out.y), out.new_cache};
}

ShortConv::Output ShortConv::step(const Tensor& x, const Tensor& cache) const {
  HYDRA_CHECK(x.dim() == 2 && x.size(1) == channels_, "ShortConv::step: input has shape {}, expected (B, {})",
              shape_str(x.shape()), channels_);
  Output out = forward(ag::unsqueeze(x, 1), cache);
  out.y = ag::squeeze(out.y, 1);
  return out;
}

Tensor apply_rotary(const Tensor& x, int64_t pos0, double base) {
  HYDRA_CHECK(x.dim() == 4 && x.size(3) % 2 == 0, "apply_rotary: input has shape {}, expected (B, T, H, D) with even D",
              shape_str(x.shape()));
  // The rotary op rotates (..., T, D): view as (B, H, T, D) and back.
  return ag::transpose(ag::rotary(ag::transpose(x, 1, 2), pos0, base), 1, 2);
}

}  // namespace hydra::nn
