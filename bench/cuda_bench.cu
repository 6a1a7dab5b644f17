// hydra-bench, CUDA section. Every figure is measured against a reference in the same run:
//   * GEMM through hydra::matmul vs cuBLASLt called directly here (same layouts, heuristic's top algorithm,
//     preallocated output): the difference is our wrapper's overhead (target < 3%).
//   * bandwidth-bound ops (elementwise, RMSNorm, softmax, cross-entropy): GB/s of the bytes each op must move
//     (every input read once, every output written once) vs a device-to-device copy (target >= 80%).
//   * the caching allocator: 100k alloc/free pairs of mixed sizes.
// Times: CUDA events around each call on the library's compute stream, warm-up first, median of many runs; the
// GEMM comparison alternates ours and cuBLASLt in A/B pairs.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "bench/cuda_bench.h"
#include "tensor/cuda/backend.h"
#include "tensor/tensor.h"

namespace hydra::bench {
namespace {

const Device kGpu("cuda:0");

#define BENCH_CHECK(x)                                                                        \
  do {                                                                                        \
    auto r_ = (x);                                                                            \
    if (static_cast<int>(r_) != 0) throw std::runtime_error(std::string("failed: ") + #x);    \
  } while (0)

// Median / min of `reps` timed calls (ms), after `warmup` untimed ones, events on the compute stream.
struct Timing {
  double median_ms, min_ms;
};
// GPU time per call in steady state: blocks of kTimeBlock back-to-back calls between two events, median over the
// blocks. Back-to-back calls keep the device busy while the host prepares the next call, as in a training step;
// an op that synchronises with the host inside (cross-entropy forward reads its target check back) still pays
// for that, since the device idles during the round trip.
constexpr int kTimeBlock = 10;
Timing time_gpu(int warmup, int reps, const std::function<void()>& f) {
  cuda::StreamHandle s = cuda::compute_stream(0);
  for (int i = 0; i < warmup; ++i) f();
  cuda::synchronize(0);
  std::vector<double> ms;
  cuda::Event a(0), b(0);
  for (int i = 0; i < reps; ++i) {
    a.record(s);
    for (int k = 0; k < kTimeBlock; ++k) f();
    b.record(s);
    b.synchronize();
    ms.push_back(a.elapsed_ms(b) / kTimeBlock);
  }
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms.front()};
}

// Row-major C (M×N) = op(A)·op(B) with cuBLASLt called directly (the reference for our wrapper).
struct DirectGemm {
  cublasLtHandle_t lt = nullptr;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo{};
  void* ws = nullptr;
  size_t ws_bytes = size_t{32} << 20;
  cudaStream_t stream = nullptr;

  // A is (M,K) or (K,M) when ta; B is (K,N) or (N,K) when tb; all row-major contiguous bf16.
  DirectGemm(int64_t M, int64_t N, int64_t K, bool ta, bool tb) {
    stream = static_cast<cudaStream_t>(cuda::compute_stream(0).ptr);
    BENCH_CHECK(cublasLtCreate(&lt));
    BENCH_CHECK(cudaMalloc(&ws, ws_bytes));
    BENCH_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    // Column-major Cᵀ (N×M) = op(B)ᵀ (N×K) · op(A)ᵀ (K×M).
    cublasOperation_t opa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    BENCH_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
    BENCH_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
    BENCH_CHECK(tb ? cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, K, N, K) : cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, N, K, N));
    BENCH_CHECK(ta ? cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, M, K, M) : cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, K, M, K));
    BENCH_CHECK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, N, M, N));
    cublasLtMatmulPreference_t pref;
    BENCH_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    BENCH_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                     sizeof(ws_bytes)));
    cublasLtMatmulHeuristicResult_t res{};
    int found = 0;
    BENCH_CHECK(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, lc, lc, pref, 1, &res, &found));
    if (found == 0) throw std::runtime_error("cuBLASLt: no algorithm");
    algo = res.algo;
    cublasLtMatmulPreferenceDestroy(pref);
  }
  void run(const void* a, const void* b, void* c) {
    float one = 1.f, zero = 0.f;
    BENCH_CHECK(cublasLtMatmul(lt, desc, &one, b, la, a, lb, &zero, c, lc, c, lc, &algo, ws, ws_bytes, stream));
  }
  ~DirectGemm() {
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(desc);
    cudaFree(ws);
    cublasLtDestroy(lt);
  }
};

void gemm_row(const char* name, int64_t M, int64_t N, int64_t K, bool ta, bool tb, int reps) {
  Generator g(11);
  Tensor a = randn(ta ? Shape{K, M} : Shape{M, K}, g, DType::BFloat16, kGpu);
  Tensor b = randn(tb ? Shape{N, K} : Shape{K, N}, g, DType::BFloat16, kGpu);
  Tensor c = empty({M, N}, DType::BFloat16, kGpu);
  DirectGemm ref(M, N, K, ta, tb);
  const Trans tra = ta ? Trans::Yes : Trans::No, trb = tb ? Trans::Yes : Trans::No;
  // GPU time per call in steady state: blocks of kBlock back-to-back calls between two events, the order of the
  // two blocks alternating every repetition so that neither always follows a synchronisation (whose launch
  // latency would land inside its timed region). Host time per call is measured separately below.
  constexpr int kBlock = 10;
  cuda::StreamHandle s = cuda::compute_stream(0);
  auto run_ref = [&] { ref.run(a.raw_data(), b.raw_data(), c.raw_data()); };
  auto run_ours = [&] { (void)matmul(a, b, tra, trb); };
  for (int i = 0; i < 3; ++i) run_ref(), run_ours();
  std::vector<double> ours_ms, ref_all;
  cuda::Event e0(0), e1(0), e2(0);
  for (int i = 0; i < reps; ++i) {
    const bool ref_first = i % 2 == 0;
    e0.record(s);
    for (int k = 0; k < kBlock; ++k) ref_first ? run_ref() : run_ours();
    e1.record(s);
    for (int k = 0; k < kBlock; ++k) ref_first ? run_ours() : run_ref();
    e2.record(s);
    e2.synchronize();
    const double first = e0.elapsed_ms(e1) / kBlock, second = e1.elapsed_ms(e2) / kBlock;
    ref_all.push_back(ref_first ? first : second);
    ours_ms.push_back(ref_first ? second : first);
  }
  std::sort(ours_ms.begin(), ours_ms.end());
  std::sort(ref_all.begin(), ref_all.end());
  const Timing t_ours{ours_ms[ours_ms.size() / 2], ours_ms.front()};
  const double ref_ms = ref_all[ref_all.size() / 2];
  // Host time per call (enqueue only), 200 calls each, then drain.
  auto host_us = [&](const std::function<void()>& f) {
    cuda::synchronize(0);
    auto t0 = std::chrono::steady_clock::now();
    for (int k = 0; k < 200; ++k) f();
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / 200;
    cuda::synchronize(0);
    return us;
  };
  const double host_ref = host_us(run_ref), host_ours = host_us(run_ours);
  const double flop = 2.0 * M * N * K;
  fmt::print("| {} | {}x{}x{} | {:.4f} | {:.4f} | {:.0f} | {:.0f} | {:+.1f}% | {:.1f} / {:.1f} |\n", name, M, N, K,
             t_ours.median_ms, ref_ms, flop / t_ours.median_ms / 1e9, flop / ref_ms / 1e9,
             100.0 * (t_ours.median_ms / ref_ms - 1.0), host_ours, host_ref);
}

void bw_row(const char* name, double bytes, double copy_gbs, int reps, const std::function<void()>& f) {
  try {
    Timing t = time_gpu(3, reps, f);
    const double gbs = bytes / t.median_ms / 1e6;
    fmt::print("| {} | {:.3f} | {:.0f} | {:.0f}% |\n", name, t.median_ms, gbs, 100.0 * gbs / copy_gbs);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    fmt::print("| {} | n/a | n/a | {} |\n", name, msg.substr(0, 80));
  }
}

constexpr int64_t kCopyElems = int64_t{64} << 20;  // float32 elements of the copy-bandwidth buffer (256 MiB)

}  // namespace

CopyBandwidth measure_copy_bandwidth(int reps) {
  const int64_t n = kCopyElems;
  Tensor src = zeros({n}, DType::Float32, kGpu), dst = empty({n}, DType::Float32, kGpu);
  cudaStream_t s = static_cast<cudaStream_t>(cuda::compute_stream(0).ptr);
  const Timing tc = time_gpu(3, reps, [&] {
    BENCH_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), n * 4, cudaMemcpyDeviceToDevice, s));
  });
  const double bytes = 2.0 * n * 4;
  return {tc.median_ms, bytes, bytes / tc.median_ms / 1e6};
}

bool run_cuda_bench(bool quick) {
  if (cuda::device_count() == 0) {
    fmt::print("CUDA section skipped: no CUDA device ({})\n", cuda::runtime_version());
    return false;
  }
  const int reps = quick ? 10 : 50;
  fmt::print("\n## CUDA: {} — {}\n\n", cuda::device_name(0), cuda::runtime_version());
  fmt::print("| GEMM bf16 (fp32 accumulate) | M x N x K | hydra::matmul ms/call | cuBLASLt direct ms/call | hydra TFLOP/s "
             "| cuBLASLt TFLOP/s | overhead | host us/call hydra / direct |\n|---|---|---|---|---|---|---|---|\n");
  gemm_row("square", 8192, 8192, 8192, false, false, quick ? 5 : 20);
  gemm_row("qkv proj: x·Wᵀ", 16384, 2304, 768, false, true, reps);
  gemm_row("dX = dY·W", 16384, 768, 2304, false, false, reps);
  gemm_row("dW = dYᵀ·X", 2304, 768, 16384, true, false, reps);
  gemm_row("MLP up: x·Wᵀ", 16384, 4096, 768, false, true, reps);
  fmt::print("\nFLOPs = 2·M·N·K; ms/call = median over repetitions of a block of 10 back-to-back calls timed with events\n"
             "(block order alternates); overhead = hydra / cuBLASLt − 1 (target < 3%). Host us/call: enqueue cost of one\n"
             "call (wrapper + cuBLASLt) against cuBLASLt alone.\n\n");

  // Device-to-device copy: the bandwidth ceiling.
  const int64_t n = kCopyElems;  // 64M elements
  const CopyBandwidth copy = measure_copy_bandwidth(reps);
  const double copy_gbs = copy.gbs;
  fmt::print("| bandwidth-bound op | ms | GB/s | vs D2D copy |\n|---|---|---|---|\n");
  fmt::print("| D2D copy {} MiB (reference) | {:.3f} | {:.0f} | 100% |\n", kCopyElems * 4 >> 20, copy.ms,
             copy_gbs);
  Generator g(5);
  Tensor src = randn({n}, g, DType::Float32, kGpu), dst = empty({n}, DType::Float32, kGpu);
  Tensor b32 = randn({n}, g, DType::Float32, kGpu);
  Tensor a16 = src.to(DType::BFloat16), b16 = b32.to(DType::BFloat16);
  bw_row("add f32 (64M)", 3.0 * n * 4, copy_gbs, reps, [&] { (void)add(src, b32); });
  bw_row("add bf16 (64M)", 3.0 * n * 2, copy_gbs, reps, [&] { (void)add(a16, b16); });
  bw_row("silu bf16 (64M)", 2.0 * n * 2, copy_gbs, reps, [&] { (void)silu(a16); });
  bw_row("add_ in place f32", 3.0 * n * 4, copy_gbs, reps, [&] { add_(dst, b32); });
  bw_row("cast f32 -> bf16", 1.0 * n * 4 + n * 2, copy_gbs, reps, [&] { (void)src.to(DType::BFloat16); });
  {
    // Strided copies of the model's shapes (8 × 2048 tokens, 12 heads of 64): a third of a fused q/k/v projection
    // to contiguous and back into a slice, and the head transpose (B, T, H, D) -> (B, H, T, D).
    const int64_t bt = 16384, d = 768;
    Tensor qkv = randn({bt, 3 * d}, g, DType::BFloat16, kGpu), part = randn({bt, d}, g, DType::BFloat16, kGpu);
    const double bytes = 2.0 * bt * d * 2;
    bw_row("copy bf16 contiguous 16384x768", bytes, copy_gbs, reps, [&] { (void)part.clone(); });
    bw_row("copy bf16 slice [:, 768:1536] of 16384x2304 -> contiguous", bytes, copy_gbs, reps,
           [&] { (void)qkv.slice(1, d, 2 * d).contiguous(); });
    bw_row("copy bf16 contiguous -> slice of 16384x2304", bytes, copy_gbs, reps,
           [&] { qkv.slice(1, d, 2 * d).copy_(part); });
    const Tensor heads = part.view({8, 2048, 12, 64});
    bw_row("copy bf16 head transpose (8,2048,12,64) -> (8,12,2048,64)", bytes, copy_gbs, reps,
           [&] { (void)heads.transpose(1, 2).contiguous(); });
    Tensor part32 = part.to(DType::Float32), qkv32 = qkv.to(DType::Float32);
    bw_row("copy f32 slice [:, 768:1536] of 16384x2304 -> contiguous", 2.0 * bytes, copy_gbs, reps,
           [&] { (void)qkv32.slice(1, d, 2 * d).contiguous(); });
  }
  {
    const int64_t rows = 32768, d = 768;
    Tensor x = randn({rows, d}, g, DType::BFloat16, kGpu), w = ones({d}, DType::BFloat16, kGpu);
    bw_row("RMSNorm fwd bf16 32768x768", 2.0 * rows * d * 2, copy_gbs, reps, [&] { (void)rms_norm_forward(x, w, 1e-5); });
    Tensor x32 = x.to(DType::Float32), w32 = w.to(DType::Float32);
    bw_row("RMSNorm fwd f32 32768x768", 2.0 * rows * d * 4, copy_gbs, reps, [&] { (void)rms_norm_forward(x32, w32, 1e-5); });
    const RmsNormOutput fo = rms_norm_forward(x, w, 1e-5);
    Tensor gy = randn({rows, d}, g, DType::BFloat16, kGpu);
    bw_row("RMSNorm bwd bf16 32768x768 (dx, dw)", 3.0 * rows * d * 2, copy_gbs, reps,
           [&] { (void)rms_norm_backward(gy, x, w, fo.rstd); });
  }
  {
    const int64_t rows = 4096, v = 32000;
    Tensor x = randn({rows, v}, g, DType::BFloat16, kGpu);
    bw_row("softmax bf16 4096x32000", 2.0 * rows * v * 2, copy_gbs, reps, [&] { (void)softmax(x, -1); });
    Tensor t = randint(0, v, {rows}, g, DType::Int64, kGpu);
    bw_row("cross-entropy fwd bf16 4096x32000", 1.0 * rows * v * 2, copy_gbs, reps,
           [&] { (void)cross_entropy_forward(x, t); });
    Tensor x32 = x.to(DType::Float32);
    bw_row("cross-entropy fwd f32 4096x32000", 1.0 * rows * v * 4, copy_gbs, reps,
           [&] { (void)cross_entropy_forward(x32, t); });
    const CrossEntropyOutput ce = cross_entropy_forward(x, t);
    Tensor gl = ones({}, DType::Float32, kGpu);
    bw_row("cross-entropy bwd bf16 4096x32000", 2.0 * rows * v * 2, copy_gbs, reps,
           [&] { (void)cross_entropy_backward(gl, x, t, ce.lse); });
  }
  fmt::print("\nBytes: each input read once + each output written once (elementwise 3·n or 2·n elements; RMSNorm and\n"
             "softmax read x and write y; RMSNorm backward reads gy and x and writes dx; cross-entropy forward reads the logits\n"
             "once, its backward reads them and writes dlogits). Target: >= 80% of the copy.\n"
             "ms = GPU time per call, median over blocks of 10 back-to-back calls between two events.\n\n");

  // Allocator: 100k alloc/free pairs over mixed sizes (log-spaced 256 B .. 64 MiB), after one warm-up pass.
  std::vector<int64_t> sizes;
  for (int i = 0; i < 19; ++i) sizes.push_back(int64_t{64} << i);  // float32 elements: 256 B .. 64 MiB
  auto pass = [&](int pairs) {
    for (int i = 0; i < pairs; ++i) {
      Tensor t = empty({sizes[(i * 7) % sizes.size()]}, DType::Float32, kGpu);
    }
  };
  pass(1000);
  const auto mallocs0 = cuda::memory_stats(0).num_device_mallocs;
  auto t0 = std::chrono::steady_clock::now();
  pass(100000);
  const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("| allocator | 100k alloc/free pairs | {:.0f} ms total | {:.2f} us per pair | {} cudaMalloc calls |\n",
             us / 1000, us / 100000, cuda::memory_stats(0).num_device_mallocs - mallocs0);
  return true;
}

}  // namespace hydra::bench
