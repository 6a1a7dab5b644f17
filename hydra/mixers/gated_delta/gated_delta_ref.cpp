// Gated delta rule, float64 token-by-token reference (tests only; contract in gated_delta.h).
//
// The recurrence of SPEC §2.7 step 5, one token at a time, written as a composition of differentiable ag::
// primitives (select, matmul, mul, sub, stack). With grad mode on and inputs that require grad, ag::backward
// through the result gives the reference gradients for q, k, v, alpha, beta and the initial state: an independent
// check on the hand-written chunkwise backward of gated_delta_cpu.cpp. Inputs of another floating dtype are cast
// to float64 (ag::to, so gradients flow back in the input's dtype); the outputs are float64.
// Cost: O(T) small ops per call and a graph of O(T) nodes: slow on purpose.
#include <vector>

#include "autograd/autograd.h"
#include "hydra/mixers/gated_delta/gated_delta.h"
#include "tensor/tensor.h"

namespace hydra {

GatedDeltaOutput gated_delta_ref(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& alpha,
                                 const Tensor& beta, const Tensor& initial_state) {
  const char* op = "gated_delta_ref";
  check_defined(q, op, "q");
  check_defined(k, op, "k");
  check_defined(v, op, "v");
  check_defined(alpha, op, "alpha");
  check_defined(beta, op, "beta");
  check_rank(q, 4, op, "q");
  check_rank(k, 4, op, "k");
  check_rank(v, 4, op, "v");
  check_rank(alpha, 3, op, "alpha");
  check_rank(beta, 3, op, "beta");
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), K = q.size(3), V = v.size(3);
  HYDRA_CHECK(k.shape() == q.shape(), "{}: k must be [B, T, H, K] = {} like q, got {}", op, shape_str(q.shape()),
              shape_str(k.shape()));
  HYDRA_CHECK(v.shape() == (Shape{B, T, H, V}), "{}: v must be [B, T, H, V] with B, T, H = {}, {}, {}, got {}", op, B,
              T, H, shape_str(v.shape()));
  HYDRA_CHECK(alpha.shape() == (Shape{B, T, H}) && beta.shape() == (Shape{B, T, H}),
              "{}: alpha and beta must be [B, T, H] = {}, got {} and {}", op, shape_str(Shape{B, T, H}),
              shape_str(alpha.shape()), shape_str(beta.shape()));
  if (initial_state.defined()) {
    HYDRA_CHECK(initial_state.shape() == (Shape{B, H, V, K}), "{}: initial_state must be [B, H, V, K] = {}, got {}",
                op, shape_str(Shape{B, H, V, K}), shape_str(initial_state.shape()));
  }

  const DType f64 = DType::Float64;
  const Tensor q64 = ag::to(q, f64), k64 = ag::to(k, f64), v64 = ag::to(v, f64);
  const Tensor a64 = ag::to(alpha, f64), b64 = ag::to(beta, f64);
  Tensor S = initial_state.defined() ? ag::to(initial_state, f64) : zeros({B, H, V, K}, f64, q.device());

  std::vector<Tensor> outs;
  outs.reserve(static_cast<std::size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    const Tensor qt = ag::unsqueeze(ag::select(q64, 1, t), -1);  // [B, H, K, 1]
    const Tensor kt = ag::unsqueeze(ag::select(k64, 1, t), -1);  // [B, H, K, 1]
    const Tensor vt = ag::select(v64, 1, t);                     // [B, H, V]
    const Tensor at = ag::unsqueeze(ag::select(a64, 1, t), -1);  // [B, H, 1]
    const Tensor bt = ag::unsqueeze(ag::select(b64, 1, t), -1);  // [B, H, 1]
    // u_t = β_t (v_t − α_t S_{t−1} k_t)
    const Tensor Sk = ag::squeeze(ag::matmul(S, kt), -1);                        // [B, H, V]
    const Tensor u = ag::mul(bt, ag::sub(vt, ag::mul(at, Sk)));                  // [B, H, V]
    // S_t = α_t S_{t−1} + u_t k_tᵀ
    S = ag::add(ag::mul(ag::unsqueeze(at, -1), S), ag::matmul(ag::unsqueeze(u, -1), kt, Trans::No, Trans::Yes));
    // o_t = S_t q_t
    outs.push_back(ag::squeeze(ag::matmul(S, qt), -1));  // [B, H, V]
  }
  Tensor o = T > 0 ? ag::stack(outs, 1) : zeros({B, 0, H, V}, f64, q.device());
  return {o, S};
}

}  // namespace hydra
