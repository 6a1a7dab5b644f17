// Chunked prefill with logits at selected positions, and their scoring (prefill.h).
#include "eval/prefill.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "autograd/autograd.h"
#include "nn/precision.h"
#include "tensor/check.h"
#include "tensor/tensor.h"

namespace hydra::eval {

Tensor logits_at(const LanguageModel& model, const Tensor& ids, const std::vector<int64_t>& positions, int64_t chunk) {
  HYDRA_CHECK(ids.defined() && ids.dim() == 2 && ids.size(0) >= 1 && ids.size(1) >= 1,
              "logits_at: ids must be a (B ≥ 1, N ≥ 1) tensor, got {}",
              ids.defined() ? shape_str(ids.shape()) : std::string("undefined"));
  HYDRA_CHECK(chunk >= 1, "logits_at: chunk must be ≥ 1, got {}", chunk);
  const int64_t B = ids.size(0), N = ids.size(1), P = static_cast<int64_t>(positions.size());
  const int64_t V = model.lm_head_weight().size(0);
  for (int64_t k = 0; k < P; ++k) {
    HYDRA_CHECK(positions[k] >= 0 && positions[k] < N, "logits_at: positions[{}] = {} is outside [0, N = {})", k,
                positions[k], N);
    HYDRA_CHECK(k == 0 || positions[k] >= positions[k - 1],
                "logits_at: positions must be sorted ascending, but positions[{}] = {} < positions[{}] = {}", k,
                positions[k], k - 1, positions[k - 1]);
  }
  if (P == 0) return zeros({B, 0, V}, model.dtype() == DType::Float64 ? DType::Float64 : DType::Float32);

  ag::NoGradGuard no_grad;
  const nn::ComputeDTypeGuard precision(model.compute_dtype());
  ForwardOptions opts;
  opts.compute_logits = false;
  const int64_t end = positions.back() + 1;  // the model is causal: later tokens are never needed
  ModelState state;
  std::vector<Tensor> parts;
  int64_t k = 0;  // next position to produce
  for (int64_t t0 = 0; t0 < end; t0 += chunk) {
    const int64_t t1 = std::min(t0 + chunk, end);
    ForwardResult r = model.forward(ids.slice(1, t0, t1), state, opts);
    state = std::move(r.state);
    std::vector<int64_t> local;  // positions inside [t0, t1), relative to t0
    while (k < P && positions[k] < t1) local.push_back(positions[k++] - t0);
    if (local.empty()) continue;
    HYDRA_CHECK(r.hidden.defined() && r.hidden.dim() == 3 && r.hidden.size(1) == t1 - t0,
                "logits_at: the model ({}) returned no (B, {}, d) hidden states with compute_logits = false",
                model.arch(), t1 - t0);
    const Tensor idx = from_vector(local, {static_cast<int64_t>(local.size())}, r.hidden.device());
    const Tensor rows = ag::index_select(r.hidden, 1, idx);                       // (B, n, d)
    const Tensor lg = ag::linear(rows, nn::to_compute(model.lm_head_weight()));  // (B, n, V)
    const Tensor host = lg.to(kCPU);
    parts.push_back(host.dtype() == DType::Float64 ? host : host.to(DType::Float32));
  }
  return concat(parts, 1);
}

namespace {

// Checks the arguments, then calls item(i, correct, loss) for every item i = b·n + k with a target and skip(i) for
// every item whose target is −100.
template <typename Item, typename Skip>
void for_each_scored(const Tensor& logits, const Tensor& targets, const char* op, Item item, Skip skip) {
  HYDRA_CHECK(logits.defined() && targets.defined() && logits.dim() == 3 && targets.dim() == 2 &&
                  logits.size(0) == targets.size(0) && logits.size(1) == targets.size(1),
              "{}: logits {} and targets {} do not match (expected (B, n, V) and (B, n))", op,
              logits.defined() ? shape_str(logits.shape()) : std::string("undefined"),
              targets.defined() ? shape_str(targets.shape()) : std::string("undefined"));
  HYDRA_CHECK(targets.dtype() == DType::Int64 || targets.dtype() == DType::Int32,
              "{}: targets must be int64 (or int32), got {}", op, dtype_name(targets.dtype()));
  const int64_t B = logits.size(0), n = logits.size(1), V = logits.size(2);
  HYDRA_CHECK(V >= 1, "{}: logits {} have an empty vocabulary axis", op, shape_str(logits.shape()));
  const std::vector<double> lg = logits.to(kCPU).to(DType::Float64).contiguous().to_vector<double>();
  const std::vector<int64_t> tg = targets.to(kCPU).contiguous().to_vector<int64_t>();
  for (int64_t i = 0; i < B * n; ++i) {
    const int64_t y = tg[i];
    if (y == -100) {
      skip(i);
      continue;
    }
    HYDRA_CHECK(y >= 0 && y < V, "{}: target {} at ({}, {}) is outside the vocabulary [0, {}) (and not −100)", op, y,
                i / n, i % n, V);
    const double* row = lg.data() + i * V;
    const double* best = std::max_element(row, row + V);  // first maximum on ties
    double z = 0;
    for (int64_t v = 0; v < V; ++v) z += std::exp(row[v] - *best);
    item(i, best - row == y, std::log(z) + *best - row[y]);
  }
}

}  // namespace

PositionScore score_positions(const Tensor& logits, const Tensor& targets) {
  PositionScore s;
  for_each_scored(
      logits, targets, "score_positions",
      [&](int64_t, bool correct, double loss) {
        s.correct += correct ? 1 : 0;
        s.count += 1;
        s.loss_sum += loss;
      },
      [](int64_t) {});
  return s;
}

std::vector<int> correct_flags(const Tensor& logits, const Tensor& targets) {
  std::vector<int> flags;
  if (logits.defined() && logits.dim() == 3) flags.resize(static_cast<size_t>(logits.size(0) * logits.size(1)));
  for_each_scored(
      logits, targets, "correct_flags", [&](int64_t i, bool correct, double) { flags[i] = correct ? 1 : 0; },
      [&](int64_t i) { flags[i] = -1; });
  return flags;
}

}  // namespace hydra::eval
