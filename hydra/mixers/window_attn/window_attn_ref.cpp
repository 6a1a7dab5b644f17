// Windowed causal attention, the float64 dense reference (tests only): the T×S logits of every (b, h) with the
// invisible keys set to −∞, a softmax over keys, then the product with v. Composed of ag:: primitives, so float64
// leaves get their reference gradients from the autograd engine (an independent check of the hand-written
// backward in window_attn_cpu.cpp).
#include <limits>
#include <vector>

#include "autograd/functions/basic.h"
#include "autograd/functions/reduce.h"
#include "hydra/mixers/window_attn/window_attn.h"

namespace hydra {

Tensor window_attn_ref(const Tensor& q, const Tensor& k, const Tensor& v, int64_t window, double scale) {
  const WindowAttnDims d = window_attn_check_args("window_attn_ref", q, k, v, window);
  // [B, T|S, H, ·] -> [B, H, T|S, ·], float64.
  const Tensor qh = ag::permute(ag::to(q, DType::Float64), {0, 2, 1, 3});
  const Tensor kh = ag::permute(ag::to(k, DType::Float64), {0, 2, 1, 3});
  const Tensor vh = ag::permute(ag::to(v, DType::Float64), {0, 2, 1, 3});
  // mask[t, m] = true where query t does NOT see key m:  visible iff P + t − W < m ≤ P + t.
  std::vector<int64_t> hidden(static_cast<std::size_t>(d.T * d.S));
  for (int64_t t = 0; t < d.T; ++t)
    for (int64_t m = 0; m < d.S; ++m) hidden[t * d.S + m] = !(d.P + t - window < m && m <= d.P + t);
  const Tensor mask = from_vector(hidden, {d.T, d.S}, DType::Bool, q.device());
  const Tensor logits = ag::mul(ag::matmul(qh, kh, Trans::No, Trans::Yes), scale);  // [B, H, T, S]
  const Tensor p = ag::softmax(ag::masked_fill(logits, mask, -std::numeric_limits<double>::infinity()), -1);
  return ag::contiguous(ag::permute(ag::matmul(p, vh), {0, 2, 1, 3}));  // [B, T, H, V]
}

}  // namespace hydra
