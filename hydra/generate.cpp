// Generation and sampling (generate.h, SPEC §6.1–§6.2).
#include "hydra/generate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "autograd/autograd.h"
#include "tensor/check.h"
#include "tensor/ops/indexing.h"

namespace hydra {

int64_t sample_token(const std::vector<double>& logits, const SamplingOptions& o, Generator& gen) {
  const int64_t V = static_cast<int64_t>(logits.size());
  HYDRA_CHECK(V > 0, "sample_token: empty logits");
  if (o.temperature <= 0) return std::max_element(logits.begin(), logits.end()) - logits.begin();  // first max
  const double ninf = -std::numeric_limits<double>::infinity();
  std::vector<double> l(logits.size());
  for (int64_t i = 0; i < V; ++i) l[i] = logits[i] / o.temperature;
  if (o.top_k > 0) {
    const int64_t kappa = std::min(o.top_k, V);
    std::vector<double> sorted = l;
    std::nth_element(sorted.begin(), sorted.begin() + (kappa - 1), sorted.end(), std::greater<double>());
    const double tau = sorted[static_cast<size_t>(kappa - 1)];
    for (double& v : l)
      if (v < tau) v = ninf;
  }
  if (o.top_p > 0 && o.top_p < 1) {
    std::vector<int64_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return l[a] > l[b]; });
    const double mx = l[order[0]];
    double z = 0;
    for (int64_t i : order) z += std::exp(l[i] - mx);
    double c = 0;  // exclusive prefix sum of the sorted probabilities
    std::vector<bool> drop(static_cast<size_t>(V), false);
    for (int64_t i : order) {
      if (c > o.top_p) drop[i] = true;
      c += std::exp(l[i] - mx) / z;
    }
    for (int64_t i = 0; i < V; ++i)
      if (drop[i]) l[i] = ninf;
  }
  const double mx = *std::max_element(l.begin(), l.end());
  double z = 0;
  for (double v : l) z += std::exp(v - mx);
  const double u = rand({1}, gen, DType::Float64).item() * z;
  double acc = 0;
  int64_t last = 0;
  for (int64_t i = 0; i < V; ++i) {
    const double p = std::exp(l[i] - mx);
    if (p == 0) continue;
    acc += p;
    last = i;
    if (u < acc) return i;
  }
  return last;  // rounding at the very end of the CDF
}

Tensor generate(const LanguageModel& model, const Tensor& prompt, const GenerateOptions& o) {
  HYDRA_CHECK(prompt.defined() && prompt.dim() == 2 && prompt.size(1) >= 1 && prompt.dtype() == DType::Int64,
              "generate: the prompt must be an int64 (B, N0 ≥ 1) tensor, got {}",
              prompt.defined() ? shape_str(prompt.shape()) : "undefined");
  HYDRA_CHECK(o.max_new_tokens >= 0, "generate: max_new_tokens must be ≥ 0, got {}", o.max_new_tokens);
  ag::NoGradGuard no_grad;
  Generator gen(o.seed);
  const int64_t B = prompt.size(0), V = model.config().vocab_size;
  ForwardResult fr = model.forward(prompt);
  Tensor last = fr.logits.select(1, fr.logits.size(1) - 1);  // (B, V)
  ModelState state = std::move(fr.state);
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(B));
  const std::vector<int64_t> pv = prompt.to(kCPU).contiguous().to_vector<int64_t>();
  for (int64_t b = 0; b < B; ++b)
    out[b].assign(pv.begin() + b * prompt.size(1), pv.begin() + (b + 1) * prompt.size(1));
  std::vector<bool> finished(static_cast<size_t>(B), false);
  for (int64_t n = 0; n < o.max_new_tokens; ++n) {
    const std::vector<double> lv = last.to(kCPU).to(DType::Float64).contiguous().to_vector<double>();
    std::vector<int64_t> next(static_cast<size_t>(B));
    bool all_done = true;
    for (int64_t b = 0; b < B; ++b) {
      const std::vector<double> row(lv.begin() + b * V, lv.begin() + (b + 1) * V);
      int64_t t = sample_token(row, o.sampling, gen);
      if (o.eos_token_id && finished[b]) t = *o.eos_token_id;
      if (o.eos_token_id && t == *o.eos_token_id) finished[b] = true;
      all_done = all_done && finished[b];
      next[b] = t;
      out[b].push_back(t);
    }
    if (o.eos_token_id && all_done) break;
    if (n + 1 == o.max_new_tokens) break;  // no step after the last token
    StepResult sr = model.step(from_vector(next, {B}), state);
    last = sr.logits;
    state = std::move(sr.state);
  }
  const int64_t N = static_cast<int64_t>(out[0].size());
  std::vector<int64_t> flat;
  for (const auto& row : out) flat.insert(flat.end(), row.begin(), row.end());
  return from_vector(flat, {B, N});
}

}  // namespace hydra
