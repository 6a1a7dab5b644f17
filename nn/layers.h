#pragma once
// Generic layers (SPEC §2.2–§2.6, §2.9). Parameter names are the reference's: Linear/Embedding/RMSNorm "weight"
// (+ Linear "bias"), SwiGLU "w_fused", "w_down", ShortConv "conv.weight" (C, 1, K) and "conv.bias" (C).
// Inputs are (..., features); every forward is differentiable (autograd ops) unless noted. Parameters start
// as float32 on the CPU with the framework default values documented per class; the model-level init of SPEC §3
// (hydra/) overwrites them.
#include <cstdint>

#include "nn/module.h"
#include "tensor/random.h"
#include "tensor/tensor_core.h"

namespace hydra::nn {

// y = x·Wᵀ (+ b). weight (out, in), bias (out) when with_bias. Default init: weight ~ N(0, 0.02), bias 0.
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool with_bias, Generator& gen);
  Tensor forward(const Tensor& x) const;
  int64_t in_features() const { return weight.size(1); }
  int64_t out_features() const { return weight.size(0); }
  Tensor weight, bias;
};

// Row lookup in weight (num, dim). Ids equal to padding_idx (≥ 0) send no gradient to the table (SPEC §2.2);
// ids outside [0, num) are an error naming the id and its position. Default init: N(0, 0.02).
class Embedding : public Module {
 public:
  Embedding(int64_t num, int64_t dim, int64_t padding_idx, Generator& gen);
  Tensor forward(const Tensor& ids) const;
  int64_t padding_idx() const { return padding_idx_; }
  Tensor weight;

 private:
  int64_t padding_idx_;
};

// y = x·rsqrt(mean x² + eps) ⊙ weight (SPEC §2.4); weight = ones.
class RMSNorm : public Module {
 public:
  RMSNorm(int64_t dim, double eps);
  Tensor forward(const Tensor& x) const;
  double eps() const { return eps_; }
  Tensor weight;

 private:
  double eps_;
};

// [g | a] = x·W_fusedᵀ, out = (SiLU(g) ⊙ a)·W_downᵀ (SPEC §2.5). w_fused (2F, d), w_down (d, F), no biases.
class SwiGLU : public Module {
 public:
  SwiGLU(int64_t dim, int64_t hidden, Generator& gen);
  Tensor forward(const Tensor& x) const;
  int64_t hidden() const { return hidden_; }
  Linear w_fused, w_down;

 private:
  int64_t hidden_;
};

// Depthwise causal conv1d followed by SiLU (SPEC §2.6). x (B, T, C); cache (B, C, K−1) of raw pre-activation
// inputs (undefined = zeros). Default init: weight, bias ~ U(−1/√K, 1/√K) (PyTorch's Conv1d default).
class ShortConv : public Module {
 public:
  ShortConv(int64_t channels, int64_t kernel, Generator& gen);
  struct Output {
    Tensor y;          // (B, T, C), after SiLU
    Tensor new_cache;  // (B, C, K−1); undefined when K = 1
  };
  Output forward(const Tensor& x, const Tensor& cache = Tensor()) const;
  // One token: x (B, C) -> y (B, C); same math as forward with T = 1.
  Output step(const Tensor& x, const Tensor& cache) const;
  int64_t kernel() const { return kernel_; }
  int64_t channels() const { return channels_; }

  // The conv1d submodule that holds "weight" (C, 1, K) and "bias" (C), named "conv" as in the reference.
  struct Conv : Module {
    void init(Tensor w, Tensor b);  // sets and registers weight and bias
    Tensor weight, bias;
  } conv;

 private:
  int64_t channels_, kernel_;
};

// Rotary embedding, half-split pairing (SPEC §2.9), on x (B, T, H, D) at absolute positions pos0 + t. Not a
// module: RoPE tables are not parameters. Differentiable.
Tensor apply_rotary(const Tensor& x, int64_t pos0, double base);

}  // namespace hydra::nn
