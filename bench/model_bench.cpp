// hydra-bench model (see model_bench.h). Timing: steady_clock around each call after a warm-up call, median of
// the timed calls (min and max shown). Inputs are random; for the delta rule q and k are L2-normalised and
// alpha, beta drawn in (0.5, 1) and (0, 1) as the model would produce them.
#include "bench/model_bench.h"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <vector>

#include "autograd/autograd.h"
#include "hydra/mixers/chunk_attn/chunk_attn.h"
#include "hydra/mixers/gated_delta/gated_delta.h"
#include "hydra/mixers/window_attn/window_attn.h"
#include "hydra/model.h"

namespace hydra::bench {
namespace {

struct Timing {
  double min_ms, median_ms, max_ms;
};

Timing time_ms(int reps, const std::function<void()>& f) {
  f();  // warm-up
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return {ms.front(), ms[ms.size() / 2], ms.back()};
}

std::string cell(const Timing& t) { return fmt::format("{:.2f} [{:.2f}..{:.2f}]", t.median_ms, t.min_ms, t.max_ms); }

// Least-squares slope of log(ms) against log(T).
double loglog_slope(const std::vector<double>& T, const std::vector<double>& ms) {
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  const double n = static_cast<double>(T.size());
  for (std::size_t i = 0; i < T.size(); ++i) {
    const double x = std::log(T[i]), y = std::log(ms[i]);
    sx += x, sy += y, sxx += x * x, sxy += x * y;
  }
  return (n * sxy - sx * sy) / (n * sxx - sx * sx);
}

void bench_model(const char* name, const HydraConfig& cfg, int64_t B, int64_t T, int reps) {
  HydraLM m(cfg, 1);
  Generator gen(2);
  const Tensor ids = randint(0, cfg.vocab_size, {B, T}, gen);
  double loss = 0;
  const Timing fb = time_ms(reps, [&] {
    m.zero_grad();
    const Tensor l = lm_loss(m.forward(ids).logits, ids);
    ag::backward(l);
    loss = l.item();
  });
  const Timing f = time_ms(reps, [&] {
    ag::NoGradGuard g;
    loss = m.forward(ids).logits.numel();
  });
  fmt::print("| {} | {} | {}x{} | {} | {:.0f} | {} | {:.0f} |\n", name, cfg.summary(), B, T,
             m.num_parameters(), 0.0 + B * T / (fb.median_ms / 1e3), cell(fb), B * T / (f.median_ms / 1e3));
}

struct KernelRow {
  std::vector<double> T, fwd, bwd;
};

void print_kernel_rows(const char* name, const KernelRow& r, const std::vector<Timing>& fwd,
                       const std::vector<Timing>& bwd) {
  for (std::size_t i = 0; i < r.T.size(); ++i)
    fmt::print("| {} | {} | {} | {} |\n", name, r.T[i], cell(fwd[i]), cell(bwd[i]));
  fmt::print("| {} | log-log slope | {:.2f} | {:.2f} |\n", name, loglog_slope(r.T, r.fwd), loglog_slope(r.T, r.bwd));
}

void bench_kernels(bool quick) {
  const int64_t B = 1, H = 4, D = 64, W = 128, C = 64, topk = 4, chunk = 64;
  const std::vector<int64_t> lengths = quick ? std::vector<int64_t>{512, 1024, 2048}
                                             : std::vector<int64_t>{512, 1024, 2048, 4096, 8192};
  const int reps = quick ? 3 : 5;
  fmt::print("| kernel (B={}, H={}, D={}, float32) | T | forward ms | backward ms |\n|---|---|---|---|\n", B, H, D);
  KernelRow dr, wa, ca;
  std::vector<Timing> drf, drb, waf, wab, caf, cab;
  for (const int64_t T : lengths) {
    Generator g(static_cast<uint64_t>(T));
    const Tensor q = l2_normalize_forward(randn({B, T, H, D}, g)).y, k = l2_normalize_forward(randn({B, T, H, D}, g)).y;
    const Tensor v = randn({B, T, H, D}, g), dout = randn({B, T, H, D}, g);
    const Tensor alpha = add(mul(rand({B, T, H}, g), 0.5), 0.5), beta = rand({B, T, H}, g);
    GatedDeltaOutput o;
    drf.push_back(time_ms(reps, [&] { o = gated_delta_forward(q, k, v, alpha, beta, Tensor(), chunk); }));
    drb.push_back(time_ms(reps, [&] { gated_delta_backward(dout, Tensor(), q, k, v, alpha, beta, Tensor(), chunk); }));
    dr.T.push_back(static_cast<double>(T)), dr.fwd.push_back(drf.back().median_ms), dr.bwd.push_back(drb.back().median_ms);

    const double scale = 1.0 / std::sqrt(static_cast<double>(D));
    WindowAttnOutput wo;
    waf.push_back(time_ms(reps, [&] { wo = window_attn_forward(q, k, v, W, scale); }));
    wab.push_back(time_ms(reps, [&] { window_attn_backward(dout, q, k, v, wo.o, wo.lse, W, scale); }));
    wa.T.push_back(static_cast<double>(T)), wa.fwd.push_back(waf.back().median_ms), wa.bwd.push_back(wab.back().median_ms);

    // Routing included in the forward time (summaries = chunk means of k).
    const int64_t nc = T / C;
    const Tensor sums = mean(k.slice(1, 0, nc * C).reshape({B, nc, C, H, D}), {2});
    Tensor idx;
    ChunkAttnOutput co;
    caf.push_back(time_ms(reps, [&] {
      idx = chunk_route(q, sums, C, topk, T);
      co = chunk_attn_forward(q, k, v, idx, Tensor(), C, scale);
    }));
    cab.push_back(time_ms(reps, [&] { chunk_attn_backward(dout, q, k, v, idx, Tensor(), co.o, co.lse, C, scale); }));
    ca.T.push_back(static_cast<double>(T)), ca.fwd.push_back(caf.back().median_ms), ca.bwd.push_back(cab.back().median_ms);
  }
  print_kernel_rows(fmt::format("gated delta rule (chunk {})", chunk).c_str(), dr, drf, drb);
  print_kernel_rows(fmt::format("windowed attention (W {})", W).c_str(), wa, waf, wab);
  print_kernel_rows(fmt::format("top-k chunk attention + routing (C {}, k {})", C, topk).c_str(), ca, caf, cab);
  fmt::print(
      "\nSlope = least-squares d log(ms) / d log(T): 1 means time linear in T. The delta rule is O(T·(C·D + D²)) and\n"
      "windowed attention O(T·W·D), so both should be ≈ 1. Chunk attention is O(T·(k+1)·C·D) for the attention plus\n"
      "O(T²·D/C) for routing, so its slope rises above 1 once routing dominates (SPEC §2.11.9).\n\n");
}

}  // namespace

int run_model_bench(bool quick) {
  fmt::print("hydra-bench model (CPU): {} OpenMP threads{}\n\n", omp_get_max_threads(), quick ? ", quick mode" : "");
  fmt::print("| model | config | B x T | params | fwd+bwd tok/s | fwd+bwd ms median [min..max] | fwd-only tok/s |\n"
             "|---|---|---|---|---|---|---|\n");
  HydraConfig tiny;  // SPEC §9.1 paired_claim_config
  tiny.vocab_size = 257, tiny.d_model = 64, tiny.n_layers = 4, tiny.n_heads = 4, tiny.swa_window = 32;
  tiny.dn_chunk_size = 16, tiny.swa_every = 2;
  bench_model("tiny (SPEC §9.1)", tiny, 8, 256, quick ? 3 : 5);
  HydraConfig d256;
  d256.vocab_size = 257, d256.d_model = 256, d256.n_layers = 4, d256.n_heads = 4, d256.swa_every = 2;
  d256.swa_window = 128;
  bench_model("d256 L4", d256, 1, 1024, quick ? 2 : 3);
  fmt::print("\ntok/s = B·T / median time; fwd+bwd includes the loss and zeroing the gradients.\n\n");
  bench_kernels(quick);
  return 0;
}

}  // namespace hydra::bench
