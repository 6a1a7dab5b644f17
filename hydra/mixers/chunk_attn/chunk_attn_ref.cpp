// float64 references of top-k chunk attention (tests only; SPEC §2.11, contract in chunk_attn.h).
//   chunk_route_ref: brute force, every score by a plain float64 loop, then topk rounds of "take the highest
//     remaining score, the lowest j on ties".
//   chunk_attn_ref / chunk_attn_ref_lse: the dense [B, H, T, S] logits scale·q·kᵀ, plus the bias of each selected
//     chunk spread over its keys (ag::gather from [bias | 0] with a constant slot map), masked to the routed set
//     with −∞, then softmax·v (or logsumexp). Composed of ag:: primitives, so gradients come from the engine.
#include <cmath>
#include <limits>
#include <vector>

#include "autograd/autograd.h"
#include "hydra/mixers/chunk_attn/chunk_attn.h"
#include "tensor/dispatch.h"

namespace hydra {

namespace {

Tensor as_f64(const Tensor& t) { return t.dtype() == DType::Float64 ? t : ag::to(t, DType::Float64); }

// The masked float64 logits [B, H, T, S] of the routed attention (bias included).
Tensor routed_logits(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& idx, const Tensor& bias,
                     int64_t chunk, double scale, const char* op) {
  for (const auto& [t, name] : {std::pair{q, "q"}, std::pair{k, "k"}, std::pair{v, "v"}}) {
    check_defined(t, op, name);
    check_floating(t, op);
    check_rank(t, 4, op, name);
  }
  check_defined(idx, op, "idx");
  check_dtype(idx, DType::Int64, op, "idx");
  check_rank(idx, 4, op, "idx");
  HYDRA_CHECK(chunk >= 1, "{}: chunk must be >= 1, got {}", op, chunk);
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), S = k.size(1), topk = idx.size(3);
  HYDRA_CHECK(k.size(0) == B && k.size(2) == H && k.size(3) == q.size(3) && v.size(0) == B && v.size(1) == S &&
                  v.size(2) == H && T <= S && idx.shape() == Shape({B, T, H, topk}),
              "{}: inconsistent shapes q {}, k {}, v {}, idx {}", op, shape_str(q.shape()), shape_str(k.shape()),
              shape_str(v.shape()), shape_str(idx.shape()));
  if (bias.defined())
    HYDRA_CHECK(bias.shape() == Shape({B, T, H, topk}), "{}: bias shape {} (expected {})", op, shape_str(bias.shape()),
                shape_str(Shape({B, T, H, topk})));
  check_chunk_idx(idx, S, chunk, op);

  // Visibility and bias slot of every (b, h, t, m): slot i for a key of the i-th selected chunk, topk otherwise.
  const std::vector<int64_t> iv = idx.contiguous().to_vector<int64_t>();
  std::vector<int32_t> hidden(static_cast<std::size_t>(B * H * T * S), 1);
  std::vector<int64_t> slot(static_cast<std::size_t>(B * H * T * S), topk);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t) {
        const int64_t p = S - T + t, c = p / chunk, base = ((b * H + h) * T + t) * S;
        for (int64_t m = c * chunk; m <= p; ++m) hidden[base + m] = 0;  // own chunk, causal
        for (int64_t i = 0; i < topk; ++i) {
          const int64_t j = iv[((b * T + t) * H + h) * topk + i];
          if (j < 0) continue;
          for (int64_t m = j * chunk; m < (j + 1) * chunk; ++m) {
            hidden[base + m] = 0;
            slot[base + m] = i;
          }
        }
      }
  const Shape bhts{B, H, T, S};
  Tensor hidden_t = from_vector<int32_t>(hidden, bhts, DType::Bool);
  Tensor slot_t = from_vector<int64_t>(slot, bhts);

  Tensor qh = ag::permute(as_f64(q), {0, 2, 1, 3});  // [B, H, T, K]
  Tensor kh = ag::permute(as_f64(k), {0, 2, 1, 3});  // [B, H, S, K]
  Tensor logits = ag::mul(ag::matmul(qh, kh, Trans::No, Trans::Yes), scale);
  if (bias.defined()) {
    Tensor bh = ag::permute(as_f64(bias), {0, 2, 1, 3});  // [B, H, T, topk]
    Tensor ext = ag::concat({bh, zeros({B, H, T, 1}, DType::Float64)}, 3);
    logits = ag::add(logits, ag::gather(ext, 3, slot_t));
  }
  return ag::masked_fill(logits, hidden_t, -std::numeric_limits<double>::infinity());
}

}  // namespace

Tensor chunk_route_ref(const Tensor& q0, const Tensor& summaries, int64_t chunk, int64_t topk, int64_t total_len) {
  const char* op = "chunk_route_ref";
  check_rank(q0, 4, op, "q0");
  check_rank(summaries, 4, op, "summaries");
  HYDRA_CHECK(chunk >= 1 && topk >= 0, "{}: chunk = {} (>= 1), topk = {} (>= 0)", op, chunk, topk);
  const int64_t B = q0.size(0), T = q0.size(1), H = q0.size(2), K = q0.size(3), n_c = summaries.size(1);
  HYDRA_CHECK(summaries.shape() == Shape({B, n_c, H, K}) && total_len >= T, "{}: q0 {}, summaries {}, total_len {}",
              op, shape_str(q0.shape()), shape_str(summaries.shape()), total_len);
  const std::vector<double> qv = q0.contiguous().to_vector<double>(), rv = summaries.contiguous().to_vector<double>();
  std::vector<int64_t> out(static_cast<std::size_t>(B * T * H * topk), -1);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t p = total_len - T + t, n_cand = std::min(p / chunk, n_c);
        std::vector<double> s(static_cast<std::size_t>(n_cand));
        for (int64_t j = 0; j < n_cand; ++j) {
          double acc = 0.0;
          const double* qr = qv.data() + ((b * T + t) * H + h) * K;
          const double* rj = rv.data() + ((b * n_c + j) * H + h) * K;
          for (int64_t i = 0; i < K; ++i) acc += qr[i] * rj[i];
          s[j] = acc;
        }
        std::vector<bool> taken(static_cast<std::size_t>(n_cand), false);
        for (int64_t i = 0; i < std::min(topk, n_cand); ++i) {
          int64_t best = -1;
          for (int64_t j = 0; j < n_cand; ++j)
            if (!taken[j] && (best < 0 || s[j] > s[best])) best = j;  // strict >: the lowest j wins a tie
          taken[best] = true;
          out[((b * T + t) * H + h) * topk + i] = best;
        }
      }
  return from_vector<int64_t>(out, {B, T, H, topk});
}

Tensor chunk_attn_ref(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& idx, const Tensor& bias,
                      int64_t chunk, double scale) {
  Tensor logits = routed_logits(q, k, v, idx, bias, chunk, scale, "chunk_attn_ref");
  Tensor vh = ag::permute(as_f64(v), {0, 2, 1, 3});                  // [B, H, S, V]
  Tensor oh = ag::matmul(ag::softmax(logits, -1), vh);              // [B, H, T, V]
  return ag::contiguous(ag::permute(oh, {0, 2, 1, 3}));             // [B, T, H, V]
}

Tensor chunk_attn_ref_lse(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& idx, const Tensor& bias,
                          int64_t chunk, double scale) {
  return ag::logsumexp(routed_logits(q, k, v, idx, bias, chunk, scale, "chunk_attn_ref_lse"), -1);  // [B, H, T]
}

}  // namespace hydra
