// hydra-bench kernels: the three HydraLM mixer kernels on cuda:0, called through the library's dispatch functions
// (gated_delta_forward/_backward, window_attn_forward/_backward, chunk_route + chunk_attn_forward/_backward; this
// file holds no kernel of its own but the timing's hold_kernel).
//
// Configurations (model defaults): head dim D = K = V = 64, H = 12 heads, inputs bfloat16 and float32 (the gated
// delta gates alpha, beta are float32 in both, as the model passes them; alpha in (0.5, 1), beta in (0, 1), q and k
// L2-normalised), shapes (a) B = 8, T = 4096 and (b) B = 1, T = 32768 (--quick: B = 2, T = 1024 and B = 1, T = 2048).
//   * gated delta: no initial state, `chunk` argument 64 (SPEC dn_chunk_size; the CUDA kernels use their own chunk
//     length: 64 for the bfloat16 forward, 32 elsewhere); the FLOP count below uses C = 64 for every row;
//   * window attention: W = 512, S = T (no cache), scale 1/√D;
//   * chunk attention: chunk N = 128, top-k = 8 (SPEC retrieval_chunk_size / retrieval_top_k), S = T, no bias; idx
//     from chunk_route on random routing vectors (summaries [B, ⌊T/N⌋, H, K] ~ N(0, 1)), routing timed on its own row.
// Passes: "fwd" = one forward call; "fwd+bwd" = the forward then the backward with a random upstream gradient do
// (the backward takes the o and lse of that forward); "route" = chunk_route alone.
//
// Timing: CUDA events on the library's compute stream (cuda::compute_stream(0)). After two warm-up calls, n calls are
// enqueued back to back, behind a kernel that holds the device until the host has enqueued all of them, with an event
// between consecutive calls, so each call is timed on its own by the device alone (no launch gap or host work inside
// a sample; a row marked † is one where the hold did not cover the enqueueing); ms = median over the n
// calls (n from 7 to 50 so that a measurement takes ~1.5 s of GPU time; --quick: 5 to 20). Peak memory: one more
// call after the timing, between cuda::reset_peak_memory_stats and cuda::memory_stats: "peak MiB" is the allocator's
// peak of bytes in use during the call (inputs included), "+call MiB" that peak minus the bytes in use before it
// (outputs, scratch, gradients). A configuration that runs out of memory prints "OOM" in its row.
//
// FLOPs count the useful math (matrix products; 2 FLOPs per multiply-add; exp, scaling, masking not counted):
//   window attention, n_w = Σ_t min(t + 1, W) visible keys per (b, h):
//     fwd 2·B·H·n_w·(K + V)  (Q·Kᵀ, P·V);   bwd 2·B·H·n_w·(3K + 2V)  (Q·Kᵀ recomputed, dP = dO·Vᵀ, dV = Pᵀ·dO,
//     dQ = dS·K, dK = dSᵀ·Q; the FlashAttention convention, 2.5× the forward for K = V).
//   chunk attention, n_c = Σ_t (min(k, ⌊t/N⌋)·N + t mod N + 1) attended keys per (b, h) (the selected chunks plus
//     the own chunk's causal part; with S = T every query has min(k, ⌊t/N⌋) candidates):
//     fwd 2·B·H·n_c·(K + V);   bwd 2·B·H·n_c·(3K + 2V)  (as window attention);
//     route 2·B·H·K·Σ_t ⌊t/N⌋  (one dot product per candidate chunk; the top-k selection not counted).
//   gated delta rule, chunkwise form with C = 64 (SPEC dn_chunk_size, as fla's chunk_gated_delta_rule), per token
//   and head, in multiply-adds, the causal C×C products counted as triangles (C²/2), the triangular solve as C³/6
//   per chunk:
//     fwd  1.5·C·K + C·V + 3·K·V + C²/6:   K·Kᵀ (A), T·diag(βγ)·K (Wk), Q·Kᵀ: 3 × C²K/2;  T·diag(β)·V (Uv),
//          (QKᵀ∘D)·U: 2 × C²V/2;  U = Uv − Wk·S₀ᵀ, S_end += Uᵀ·diag(D)·K, Q·S₀ᵀ: 3 × C·K·V;  (I + A)⁻¹: C³/6.
//     bwd  3.5·C·K + 2.5·C·V + 8·K·V + C²/6:   recomputed K·Kᵀ, Wk, Q·Kᵀ, (G1∘D)·K, (G1∘D)ᵀ·Q: 5 × C²K/2,
//          (M + Mᵀ)·K: C²K;  recomputed Uv, (QKᵀ∘D)ᵀ·dO, Tᵀ·dU, G1 = dO·Uᵀ, G2 = dW·Uᵀ: 5 × C²V/2;  recomputed U and
//          S_end, K·dSᵀ, dOᵀ·Q, dUᵀ·Wk, X = dO·S₀, Y = dW·S₀, Z = U·dS: 8 × C·K·V;  recomputed (I + A)⁻¹: C³/6.
//     FLOPs = 2·B·T·H × that (C = 64, K = V = 64: fwd 46.4 kFLOP, bwd 116.1 kFLOP per token and head).
// Bytes are the roofline minimum: every input read once and every output written once, per call (e = 2 for
// bfloat16, 4 for float32; lse, alpha, beta, their gradients and the final state are float32; idx int64):
//   window / chunk attention fwd  e·B·T·H·(2K + 2V) + 4·B·H·T (+ 8·B·T·H·k for idx)    (q, k, v; o, lse)
//                            bwd  e·B·T·H·(4K + 4V) + 4·B·H·T (+ 8·B·T·H·k)            (q, k, v, o, do, lse; dq, dk, dv)
//   chunk route                   e·B·T·H·K + e·B·⌊T/N⌋·H·K + 8·B·T·H·k                 (q0, summaries; idx)
//   gated delta fwd               e·B·T·H·(2K + 2V) + 8·B·T·H + 4·B·H·V·K              (q, k, v, α, β; o, S_T)
//               bwd               e·B·T·H·(4K + 3V) + 16·B·T·H                          (q, k, v, do, α, β; dq, dk, dv, dα, dβ)
//   fwd+bwd = the sum of both calls' counts.
// Roofline floor of a row: max(FLOPs / peak dense bf16 tensor-core FLOP/s, bytes / D2D copy GB/s); the peak comes from
// the device's datasheet (H100 / H200 by name) or, for other devices, an estimate from SM count × clock × per-SM
// rate of its architecture; the copy bandwidth is measured at the start of the section (measure_copy_bandwidth,
// shared with the CUDA section). The float32 rows are held to the same bf16 tensor-core floor (the kernels compute
// in fp32 FFMA there, so the "% FFMA" column, against the fp32 non-tensor peak, is the fairer figure for them and for
// the SIMT kernels (gated delta, chunk attention) in bf16 too).
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/cuda_bench.h"
#include "bench/kernel_bench.h"
#include "hydra/mixers/chunk_attn/chunk_attn.h"
#include "hydra/mixers/gated_delta/gated_delta.h"
#include "hydra/mixers/window_attn/window_attn.h"
#include "tensor/cuda/backend.h"
#include "tensor/tensor.h"

namespace hydra::bench {
namespace {

const Device kGpu("cuda:0");

constexpr int64_t kWindow = 512;          // SPEC swa_window
constexpr int64_t kDnChunkArg = 64;       // SPEC dn_chunk_size (the CUDA kernels use their own C below)
constexpr int64_t kDnChunkFlops = 64;     // the C of the gated delta FLOP count (SPEC dn_chunk_size)
constexpr int64_t kRetChunk = 128;        // SPEC retrieval_chunk_size
constexpr int64_t kTopK = 8;              // SPEC retrieval_top_k

// Peak dense FLOP/s of cuda:0: bf16 tensor cores (fp32 accumulate) and fp32 FFMA (no tensor cores).
struct Peaks {
  double bf16_tc = 0, fp32_ffma = 0;
  std::string source;
};

Peaks device_peaks() {
  const std::string name = cuda::device_name(0);
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  // NVIDIA datasheets (dense, i.e. half the "with sparsity" figure; boost clock).
  if (has("H100") && has("PCIe")) return {756e12, 51.2e12, "H100 PCIe datasheet"};
  if ((has("H100") || has("H200")) && has("NVL")) return {835e12, 60e12, "H100/H200 NVL datasheet"};
  if (has("H100") || has("H200")) return {989.4e12, 66.9e12, "H100/H200 SXM datasheet"};
  // Other devices: SMs × max clock × per-SM rate of the architecture (an estimate; check the datasheet).
  int sms = 0, khz = 0, major = 0, minor = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, 0);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0);
  const double tc_per_clk = major >= 10 ? 8192 : major == 9 ? 4096 : (major == 8 && minor == 0) ? 2048 : 1024;
  const double ffma_per_clk = (major == 8 && minor == 0) || major < 8 ? 128 : 256;
  const double hz = khz * 1e3;
  return {sms * hz * tc_per_clk, sms * hz * ffma_per_clk,
          fmt::format("estimate: {} SMs × {:.2f} GHz, sm_{}{}", sms, hz / 1e9, major, minor)};
}

struct Ctx {
  Peaks peaks;
  double copy_gbs = 0;
  bool quick = false;
  std::vector<std::string> json_rows;  // one JSON object per timed row (--json)
};

// One configuration: batch, sequence, heads, head dim (K = V = D).
struct Shp {
  int64_t B, T, H, D;
};

// Keeps the device busy for `ns` nanoseconds of its global timer (one thread), so that the host can enqueue the
// timed calls behind it before the device reaches them.
__global__ void hold_kernel(unsigned long long ns) {
  unsigned long long t0 = 0, t = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
}

// Per-call GPU time: median (and min) over n back-to-back calls, an event between consecutive calls. The calls are
// enqueued behind hold_kernel, long enough for the host to enqueue all n of them first (twice the measured host
// time per call, plus 1 ms); so a sample is the device's time for the call, not the host's time to issue it, which
// for a call of a few microseconds (the decode step, a memcpy) is the larger. `device_only` says whether that held
// (the hold was still running when the last call had been enqueued; a call that synchronizes with the device
// defeats it); otherwise the samples may include host time.
struct CallTiming {
  double median_ms, min_ms;
  int n;
  bool device_only;
};

CallTiming time_calls(bool quick, const std::function<void()>& f) {
  using Clock = std::chrono::steady_clock;
  const cuda::StreamHandle s = cuda::compute_stream(0);
  f();  // warm-up: first-call allocations, lazy initialisation
  cuda::synchronize(0);
  double est_ms, host_ms;
  {
    cuda::Event a(0), b(0);
    f();  // lead-in so that the timed call does not start from an idle queue
    a.record(s);
    const auto h0 = Clock::now();
    f();
    host_ms = std::chrono::duration<double, std::milli>(Clock::now() - h0).count();
    b.record(s);
    b.synchronize();
    est_ms = a.elapsed_ms(b);
  }
  const double budget_ms = quick ? 100.0 : 1500.0;
  const int lo = quick ? 5 : 7, hi = quick ? 20 : 50;
  const int n = std::clamp(static_cast<int>(budget_ms / std::max(est_ms, 1e-3)), lo, hi);
  std::vector<std::unique_ptr<cuda::Event>> ev;
  for (int i = 0; i <= n; ++i) ev.push_back(std::make_unique<cuda::Event>(0));
  const double hold_ms = std::min(2.0 * n * host_ms + 1.0, 1000.0);
  hold_kernel<<<1, 1, 0, static_cast<cudaStream_t>(s.ptr)>>>(static_cast<unsigned long long>(hold_ms * 1e6));
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw std::runtime_error(std::string("hold_kernel: ") + cudaGetErrorString(err));
  ev[0]->record(s);
  for (int i = 0; i < n; ++i) {
    f();
    ev[i + 1]->record(s);
  }
  const bool device_only = !ev[0]->done();
  ev[n]->synchronize();
  std::vector<double> ms;
  for (int i = 0; i < n; ++i) ms.push_back(ev[i]->elapsed_ms(*ev[i + 1]));
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms.front(), n, device_only};
}

bool is_oom(const std::string& msg) { return msg.find("out of memory") != std::string::npos; }

// The cell for a failed configuration: "OOM", or the start of the error message (no table breaks).
std::string failure_cell(const std::exception& e) {
  std::string m = e.what();
  if (is_oom(m)) return "OOM";
  std::replace(m.begin(), m.end(), '|', '/');
  std::replace(m.begin(), m.end(), '\n', ' ');
  return "error: " + m.substr(0, 100);
}

// Drains the stream after a failure; a second error (the deferred one, a sticky one) is reported, not thrown.
void drain_after_failure() {
  try {
    cuda::synchronize(0);
  } catch (const std::exception& e) {
    fmt::print("  (after the failure: {})\n", std::string(e.what()).substr(0, 160));
  }
}

struct Work {
  double flop = 0, bytes = 0;
};
Work operator+(const Work& a, const Work& b) { return {a.flop + b.flop, a.bytes + b.bytes}; }

constexpr const char* kTableHead =
    "| kernel | dtype | B×T×H×D | pass | ms median [min] | GFLOP | TFLOP/s | % TC bf16 | % FFMA | MB moved | GB/s "
    "| floor ms FLOP / bytes | × floor | peak MiB | +call MiB |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";

// Times f (one pass of one configuration), measures its peak memory and prints the row.
// kernel_id and json_shape ("BxTxHxD") name the row in the --json output (bench/peers/compare.py joins on them).
void row(Ctx& c, const std::string& kernel, const char* kernel_id, const char* dtype, const Shp& s, const char* pass,
         const Work& w, const std::function<void()>& f) {
  const std::string shape = fmt::format("{}×{}×{}×{}", s.B, s.T, s.H, s.D);
  const std::string json_shape = fmt::format("{}x{}x{}x{}", s.B, s.T, s.H, s.D);
  const double flop_floor_ms = w.flop / c.peaks.bf16_tc * 1e3;
  const double byte_floor_ms = w.bytes / (c.copy_gbs * 1e9) * 1e3;
  const std::string head = fmt::format("| {} | {} | {} | {} |", kernel, dtype, shape, pass);
  try {
    const CallTiming t = time_calls(c.quick, f);
    const char* mark = t.device_only ? "" : "†";
    cuda::synchronize(0);
    const std::size_t before = cuda::memory_stats(0).in_use_bytes;
    cuda::reset_peak_memory_stats(0);
    f();
    cuda::synchronize(0);
    const std::size_t peak = cuda::memory_stats(0).peak_in_use_bytes;
    const double tflops = w.flop / t.median_ms / 1e9;
    const double floor_ms = std::max(flop_floor_ms, byte_floor_ms);
    c.json_rows.push_back(fmt::format(
        R"({{"kernel": "{}", "dtype": "{}", "shape": "{}", "pass": "{}", "ms": {:.6f}, "min_ms": {:.6f}, "gflop": {:.6f}, )"
        R"("mb": {:.6f}, "floor_ms": {:.6f}, "device_only": {}}})",
        kernel_id, dtype, json_shape, pass, t.median_ms, t.min_ms, w.flop / 1e9, w.bytes / 1e6, floor_ms,
        t.device_only));
    fmt::print("{} {:.3f}{} [{:.3f}] | {:.2f} | {:.1f} | {:.1f}% | {:.1f}% | {:.1f} | {:.0f} | {:.3f} / {:.3f} | {:.1f}× "
               "| {:.0f} | {:.0f} |\n",
               head, t.median_ms, mark, t.min_ms, w.flop / 1e9, tflops, 100.0 * tflops * 1e12 / c.peaks.bf16_tc,
               100.0 * tflops * 1e12 / c.peaks.fp32_ffma, w.bytes / 1e6, w.bytes / t.median_ms / 1e6, flop_floor_ms,
               byte_floor_ms, t.median_ms / floor_ms, peak / 1048576.0, (peak - std::min(peak, before)) / 1048576.0);
  } catch (const std::exception& e) {
    fmt::print("{} {} | {:.2f} | | | | {:.1f} | | {:.3f} / {:.3f} | | | |\n", head, failure_cell(e), w.flop / 1e9,
               w.bytes / 1e6, flop_floor_ms, byte_floor_ms);
    drain_after_failure();
  }
}

// A configuration whose inputs could not be made (e.g. OOM): one row saying so.
void setup_failed(const std::string& kernel, const char* dtype, const Shp& s, const std::exception& e) {
  const std::string shape = fmt::format("{}×{}×{}×{}", s.B, s.T, s.H, s.D);
  fmt::print("| {} | {} | {} | inputs | {} | | | | | | | | | | |\n", kernel, dtype, shape, failure_cell(e));
  drain_after_failure();
}

const char* short_dtype(DType dt) { return dt == DType::BFloat16 ? "bf16" : "fp32"; }

// ---- FLOP and byte counts (formulas in the header comment) ----

// Σ_t min(t + 1, W): keys visible to the T queries of one (b, h), S = T.
double window_pairs(int64_t T, int64_t W) {
  double n = 0;
  for (int64_t t = 0; t < T; ++t) n += static_cast<double>(std::min(t + 1, W));
  return n;
}

// Σ_t (min(k, ⌊t/N⌋)·N + t mod N + 1): keys attended by the T queries of one (b, h), S = T.
double chunk_pairs(int64_t T, int64_t N, int64_t k) {
  double n = 0;
  for (int64_t t = 0; t < T; ++t) n += static_cast<double>(std::min(k, t / N) * N + t % N + 1);
  return n;
}

// Σ_t ⌊t/N⌋: candidate chunks scored by the router for one (b, h).
double route_candidates(int64_t T, int64_t N) {
  double n = 0;
  for (int64_t t = 0; t < T; ++t) n += static_cast<double>(t / N);
  return n;
}

struct AttnWork {
  Work fwd, bwd;
};
// Window or chunk attention with `pairs` (query, key) pairs per (b, h); idx_k = top-k (0 for window attention).
AttnWork attn_work(const Shp& s, double pairs, double e, int64_t idx_k) {
  const double K = s.D, V = s.D, BH = static_cast<double>(s.B) * s.H, BTH = BH * s.T;
  const double idx_bytes = 8.0 * BTH * idx_k;
  AttnWork w;
  w.fwd.flop = 2 * BH * pairs * (K + V);
  w.bwd.flop = 2 * BH * pairs * (3 * K + 2 * V);
  w.fwd.bytes = e * BTH * (2 * K + 2 * V) + 4 * BTH + idx_bytes;
  w.bwd.bytes = e * BTH * (4 * K + 4 * V) + 4 * BTH + idx_bytes;
  return w;
}

// ---- the three kernels ----

void bench_gated_delta(Ctx& c, const Shp& s, DType dt) {
  const std::string kernel = std::string("gated delta");
  const int64_t B = s.B, T = s.T, kH = s.H, kD = s.D;
  const double K = kD, V = kD, C = kDnChunkFlops, BTH = static_cast<double>(B) * T * kH, e = dtype_size(dt);
  Work fwd, bwd;
  fwd.flop = 2 * BTH * (1.5 * C * K + C * V + 3 * K * V + C * C / 6);
  bwd.flop = 2 * BTH * (3.5 * C * K + 2.5 * C * V + 8 * K * V + C * C / 6);
  fwd.bytes = e * BTH * (2 * K + 2 * V) + 8 * BTH + 4.0 * B * kH * V * K;
  bwd.bytes = e * BTH * (4 * K + 3 * V) + 16 * BTH;
  Tensor q, k, v, alpha, beta, dout;
  try {
    Generator g(static_cast<uint64_t>(T * 3 + B));
    q = l2_normalize_forward(randn({B, T, kH, kD}, g, DType::Float32, kGpu)).y.to(dt);
    k = l2_normalize_forward(randn({B, T, kH, kD}, g, DType::Float32, kGpu)).y.to(dt);
    v = randn({B, T, kH, kD}, g, dt, kGpu);
    alpha = add(mul(rand({B, T, kH}, g, DType::Float32, kGpu), 0.5), 0.5);  // (0.5, 1)
    beta = rand({B, T, kH}, g, DType::Float32, kGpu);                       // (0, 1)
    dout = randn({B, T, kH, kD}, g, dt, kGpu);
  } catch (const std::exception& ex) {
    setup_failed(kernel, short_dtype(dt), s, ex);
    return;
  }
  row(c, kernel, "gated_delta", short_dtype(dt), s, "fwd", fwd,
      [&] { (void)gated_delta_forward(q, k, v, alpha, beta, Tensor(), kDnChunkArg); });
  row(c, kernel, "gated_delta", short_dtype(dt), s, "fwd+bwd", fwd + bwd, [&] {
    const GatedDeltaOutput o = gated_delta_forward(q, k, v, alpha, beta, Tensor(), kDnChunkArg);
    (void)o;
    (void)gated_delta_backward(dout, Tensor(), q, k, v, alpha, beta, Tensor(), kDnChunkArg);
  });
}

// Decode step of the gated delta rule (gated_delta_step: one token, bf16 q, k, v, float32 gates and state) at batch B,
// against a D2D copy of the same bytes in the same run: the step reads the float32 state and writes the new one
// (2·B·H·V·K·4 bytes, the q, k, v, o and gate bytes are < 1% of it and not counted), the copy reads and writes the
// state's bytes once (cudaMemcpyAsync on the compute stream). Both timed by time_calls. "% of copy" = copy ms / step
// ms; issue 8's target is ≥ 70%.
void bench_gated_delta_step(Ctx& c, int64_t B, int64_t H, int64_t D) {
  const std::string shape = fmt::format("{}×{}×{}×{}", B, 1, H, D);
  const double state_bytes = 2.0 * B * H * D * D * 4;
  try {
    Generator g(static_cast<uint64_t>(B * 11 + 3));
    const Tensor q = l2_normalize_forward(randn({B, H, D}, g, DType::Float32, kGpu)).y.to(DType::BFloat16);
    const Tensor k = l2_normalize_forward(randn({B, H, D}, g, DType::Float32, kGpu)).y.to(DType::BFloat16);
    const Tensor v = randn({B, H, D}, g, DType::BFloat16, kGpu);
    const Tensor alpha = add(mul(rand({B, H}, g, DType::Float32, kGpu), 0.5), 0.5);
    const Tensor beta = rand({B, H}, g, DType::Float32, kGpu);
    const Tensor state = randn({B, H, D, D}, g, DType::Float32, kGpu);
    const Tensor dst = empty({B, H, D, D}, DType::Float32, kGpu);
    const CallTiming ts = time_calls(c.quick, [&] { (void)gated_delta_step(q, k, v, alpha, beta, state); });
    const auto stream = static_cast<cudaStream_t>(cuda::compute_stream(0).ptr);
    const CallTiming tc = time_calls(c.quick, [&] {
      const cudaError_t err = cudaMemcpyAsync(dst.raw_data(), state.raw_data(), static_cast<std::size_t>(state_bytes / 2),
                                              cudaMemcpyDeviceToDevice, stream);
      if (err != cudaSuccess) throw std::runtime_error(std::string("cudaMemcpyAsync: ") + cudaGetErrorString(err));
    });
    const double frac = tc.median_ms / ts.median_ms;
    c.json_rows.push_back(fmt::format(
        R"({{"kernel": "gated_delta_step", "dtype": "bf16", "shape": "{}x1x{}x{}", "pass": "step", "ms": {:.6f}, )"
        R"("min_ms": {:.6f}, "copy_ms": {:.6f}, "mb": {:.6f}, "device_only": {}}})",
        B, H, D, ts.median_ms, ts.min_ms, tc.median_ms, state_bytes / 1e6, ts.device_only && tc.device_only));
    fmt::print("| gated delta step | {} | {:.2f} | {:.2f}{} [{:.2f}] | {:.2f}{} | {:.0f} | {:.0f} | {:.0f}% | {} |\n", shape,
               state_bytes / 2 / 1048576.0, ts.median_ms * 1e3, ts.device_only ? "" : "†", ts.min_ms * 1e3,
               tc.median_ms * 1e3, tc.device_only ? "" : "†",
               state_bytes / ts.median_ms / 1e6, state_bytes / tc.median_ms / 1e6, 100 * frac,
               frac >= 0.7 ? "yes" : "no");
  } catch (const std::exception& e) {
    fmt::print("| gated delta step | {} | | {} | | | | | |\n", shape, failure_cell(e));
    drain_after_failure();
  }
}

void bench_window_attn(Ctx& c, const Shp& s, DType dt) {
  const std::string kernel = fmt::format("window attn (W={})", kWindow);
  const int64_t B = s.B, T = s.T, kH = s.H, kD = s.D;
  const AttnWork w = attn_work(s, window_pairs(T, kWindow), static_cast<double>(dtype_size(dt)), 0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(kD));
  Tensor q, k, v, dout;
  try {
    Generator g(static_cast<uint64_t>(T * 5 + B));
    q = randn({B, T, kH, kD}, g, dt, kGpu);
    k = randn({B, T, kH, kD}, g, dt, kGpu);
    v = randn({B, T, kH, kD}, g, dt, kGpu);
    dout = randn({B, T, kH, kD}, g, dt, kGpu);
  } catch (const std::exception& ex) {
    setup_failed(kernel, short_dtype(dt), s, ex);
    return;
  }
  row(c, kernel, "window_attn", short_dtype(dt), s, "fwd", w.fwd, [&] { (void)window_attn_forward(q, k, v, kWindow, scale); });
  row(c, kernel, "window_attn", short_dtype(dt), s, "fwd+bwd", w.fwd + w.bwd, [&] {
    const WindowAttnOutput o = window_attn_forward(q, k, v, kWindow, scale);
    (void)window_attn_backward(dout, q, k, v, o.o, o.lse, kWindow, scale);
  });
}

void bench_chunk_attn(Ctx& c, const Shp& s, DType dt) {
  const std::string kernel = fmt::format("chunk attn (N={}, k={})", kRetChunk, kTopK);
  const int64_t B = s.B, T = s.T, kH = s.H, kD = s.D;
  const double e = static_cast<double>(dtype_size(dt));
  const AttnWork w = attn_work(s, chunk_pairs(T, kRetChunk, kTopK), e, kTopK);
  const int64_t n_chunks = T / kRetChunk;
  const double BTH = static_cast<double>(B) * T * kH;
  Work route;
  route.flop = 2.0 * B * kH * kD * route_candidates(T, kRetChunk);
  route.bytes = e * BTH * kD + e * B * n_chunks * kH * kD + 8 * BTH * kTopK;
  const double scale = 1.0 / std::sqrt(static_cast<double>(kD));
  Tensor q, k, v, dout, sums, idx;
  try {
    Generator g(static_cast<uint64_t>(T * 7 + B));
    q = randn({B, T, kH, kD}, g, dt, kGpu);
    k = randn({B, T, kH, kD}, g, dt, kGpu);
    v = randn({B, T, kH, kD}, g, dt, kGpu);
    dout = randn({B, T, kH, kD}, g, dt, kGpu);
    sums = randn({B, n_chunks, kH, kD}, g, dt, kGpu);  // random routing vectors, one per complete chunk
    idx = chunk_route(q, sums, kRetChunk, kTopK, T);
    cuda::synchronize(0);  // raises a deferred device-side error here rather than inside a timed row
  } catch (const std::exception& ex) {
    setup_failed(kernel, short_dtype(dt), s, ex);
    return;
  }
  row(c, kernel, "chunk_attn", short_dtype(dt), s, "route", route, [&] { (void)chunk_route(q, sums, kRetChunk, kTopK, T); });
  row(c, kernel, "chunk_attn", short_dtype(dt), s, "fwd", w.fwd,
      [&] { (void)chunk_attn_forward(q, k, v, idx, Tensor(), kRetChunk, scale); });
  row(c, kernel, "chunk_attn", short_dtype(dt), s, "fwd+bwd", w.fwd + w.bwd, [&] {
    const ChunkAttnOutput o = chunk_attn_forward(q, k, v, idx, Tensor(), kRetChunk, scale);
    (void)chunk_attn_backward(dout, q, k, v, idx, Tensor(), o.o, o.lse, kRetChunk, scale);
  });
}

}  // namespace

bool run_kernel_bench(const KernelBenchOptions& opt) {
  if (cuda::device_count() == 0) {
    fmt::print("kernels section skipped: no CUDA device ({})\n", cuda::runtime_version());
    return false;
  }
  const bool quick = opt.quick;
  Ctx c;
  c.quick = quick;
  c.peaks = device_peaks();
  const CopyBandwidth copy = measure_copy_bandwidth(quick ? 10 : 30);
  c.copy_gbs = copy.gbs;
  fmt::print("\n## Mixer kernels: {} — {}{}\n\n", cuda::device_name(0), cuda::runtime_version(),
             quick ? " (quick: small shapes)" : "");
  fmt::print("Peaks: bf16 dense tensor cores {:.1f} TFLOP/s, fp32 FFMA {:.1f} TFLOP/s ({}); D2D copy {:.0f} GB/s "
             "(measured now: {:.0f} MiB in {:.3f} ms, bytes read + written).\n\n",
             c.peaks.bf16_tc / 1e12, c.peaks.fp32_ffma / 1e12, c.peaks.source, c.copy_gbs,
             copy.bytes / 2 / 1048576.0, copy.ms);
  // Issue 8's shapes (the peers of bench/peers/peers.py time the same ones); float32 rows at the first shape only.
  const std::vector<Shp> gd = quick ? std::vector<Shp>{{2, 1024, 12, 64}}
                                    : std::vector<Shp>{{8, 4096, 12, 64}, {1, 32768, 12, 64}, {4, 4096, 16, 128}};
  const std::vector<Shp> wa = quick ? std::vector<Shp>{{2, 1024, 12, 64}}
                                    : std::vector<Shp>{{8, 4096, 12, 64}, {1, 32768, 12, 64}};
  const std::vector<Shp> ca = quick ? std::vector<Shp>{{1, 2048, 12, 64}}
                                    : std::vector<Shp>{{1, 16384, 12, 64}, {1, 65536, 12, 64}};
  const auto wanted = [&](const char* k) { return opt.only.empty() || opt.only.find(k) != std::string::npos; };
  fmt::print("{}", kTableHead);
  for (std::size_t i = 0; i < gd.size() && wanted("gated_delta"); ++i) {
    bench_gated_delta(c, gd[i], DType::BFloat16);
    if (i == 0) bench_gated_delta(c, gd[i], DType::Float32);
  }
  for (std::size_t i = 0; i < wa.size() && wanted("window_attn"); ++i) {
    bench_window_attn(c, wa[i], DType::BFloat16);
    if (i == 0) bench_window_attn(c, wa[i], DType::Float32);
  }
  for (std::size_t i = 0; i < ca.size() && wanted("chunk_attn"); ++i) {
    bench_chunk_attn(c, ca[i], DType::BFloat16);
    if (i == 0) bench_chunk_attn(c, ca[i], DType::Float32);
  }
  if (wanted("gated_delta") || wanted("decode")) {
    fmt::print("\n| decode step | B×T×H×D | state MiB | step µs median [min] | D2D copy µs (same bytes) | step GB/s "
               "(state read + write) | copy GB/s | % of copy | ≥ 70% |\n|---|---|---|---|---|---|---|---|---|\n");
    for (int64_t B : quick ? std::vector<int64_t>{1, 8} : std::vector<int64_t>{1, 8, 32, 64})
      bench_gated_delta_step(c, B, 12, 64);
  }
  if (!opt.json.empty()) {
    std::string out = fmt::format(R"({{"device": "{}", "copy_gbs": {:.3f}, "peak_bf16_tflops": {:.3f}, "rows": [)",
                                  cuda::device_name(0), c.copy_gbs, c.peaks.bf16_tc / 1e12);
    for (std::size_t i = 0; i < c.json_rows.size(); ++i) out += (i ? ",\n  " : "\n  ") + c.json_rows[i];
    out += "\n]}\n";
    std::FILE* f = std::fopen(opt.json.c_str(), "w");
    if (f == nullptr || std::fwrite(out.data(), 1, out.size(), f) != out.size() || std::fclose(f) != 0)
      throw std::runtime_error("hydra-bench: cannot write --json file '" + opt.json + "'");
  }
  fmt::print(
      "\nms = GPU time per call (CUDA events on the compute stream, median over back-to-back calls queued behind a hold"
      " kernel, min in brackets; † = the hold ended before the host had enqueued every call, so samples may include"
      " host time).\n"
      "FLOPs (useful matrix-product math, 2 per multiply-add; n_w = Σ_t min(t+1, W), n_c = Σ_t (min(k, ⌊t/N⌋)·N + t mod N"
      " + 1)):\n"
      "  window / chunk attn  fwd 2·B·H·n·(K+V), bwd 2·B·H·n·(3K+2V) (QKᵀ recomputed; 2.5× fwd for K = V);"
      " route 2·B·H·K·Σ_t ⌊t/N⌋\n"
      "  gated delta (C = {} = SPEC dn_chunk_size, per token and head, ×2 FLOPs)  fwd 1.5·C·K + C·V + 3·K·V + C²/6,"
      " bwd 3.5·C·K + 2.5·C·V + 8·K·V + C²/6\n"
      "    (causal C×C products as triangles; bwd recomputes the forward's chunk states; derivation in "
      "bench/kernel_bench.cu)\n"
      "Bytes (roofline minimum: inputs read once, outputs written once, per call; e = dtype bytes; lse, α, β, dα, dβ and"
      " the final state fp32):\n"
      "  attn fwd e·BTH·(2K+2V) + 4·BTH (+ 8·BTH·k idx), bwd e·BTH·(4K+4V) + 4·BTH (+ 8·BTH·k); route e·BTH·K + "
      "e·B·⌊T/N⌋·H·K + 8·BTH·k\n"
      "  gated delta fwd e·BTH·(2K+2V) + 8·BTH + 4·B·H·V·K, bwd e·BTH·(4K+3V) + 16·BTH;  fwd+bwd = sum of both calls.\n"
      "floor ms = FLOPs / bf16 tensor-core peak and bytes / D2D copy bandwidth; × floor = ms / the larger of the two.\n"
      "% TC bf16 and % FFMA: achieved FLOP/s against the bf16 tensor-core and the fp32 FFMA peak (gated delta and window"
      " attention use tensor cores for bf16 inputs only; the gated delta bf16 backward with split bf16 operands, i.e. 2-3"
      " MMAs per product; chunk attention is SIMT fp32 for both dtypes).\n"
      "peak MiB = allocator peak in use during one call (inputs included); +call MiB = that minus the bytes in use before"
      " it.\n\n",
      kDnChunkFlops);
  return true;
}

}  // namespace hydra::bench
