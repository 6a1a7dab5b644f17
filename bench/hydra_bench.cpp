// hydra-bench: CPU baselines of the tensor library, each measured against a reference in the same run.
//   * float32 GEMM through hydra::matmul vs the same product written directly with Eigen (wrapper overhead);
//   * elementwise throughput (GB/s of bytes read + written) vs memcpy of the same buffer size.
// Timing: steady_clock around each call, warm-up runs first, median of the timed runs (min and max shown).
// The CUDA section (bench/cuda_bench.cu) runs after the CPU one when a device is present.
// The kernels section (bench/kernel_bench.cu) times the three mixer kernels on the GPU (TFLOP/s, GB/s, roofline floor,
// peak memory); "all" runs it after the CUDA section when a device is present.
// The model section (bench/model_bench.cpp) times HydraLM and its mixer kernels on the CPU; "all" skips it.
// Usage: hydra-bench [cpu|cuda|kernels|model|all] [--quick] [--threads N] [--only KERNELS] [--json FILE]
//   (--only, --json: kernels section; bench/peers/run.sh pairs its --json rows with the PyTorch peers')
#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "bench/cuda_bench.h"
#include "bench/kernel_bench.h"
#include "bench/model_bench.h"
#include "tensor/tensor.h"

using namespace hydra;

namespace {

struct Stats {
  double min_ms, median_ms, max_ms;
};

Stats time_it(int warmup, int reps, const std::function<void()>& f) {
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return {ms.front(), ms[ms.size() / 2], ms.back()};
}

std::string fmt_stats(const Stats& s) { return fmt::format("{:.3f} [{:.3f}..{:.3f}]", s.median_ms, s.min_ms, s.max_ms); }

void bench_gemm(int64_t n, int reps) {
  Generator g(1);
  Tensor a = randn({n, n}, g), b = randn({n, n}, g);
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<const RowMat> ea(a.data<float>(), n, n), eb(b.data<float>(), n, n);
  RowMat ec(n, n);
  volatile float sink = 0;
  // A/B pairs: each repetition times Eigen then ours, so load and clock drift affect both alike.
  std::vector<double> te, to;
  auto ms_of = [](auto&& f) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  const int threads = omp_get_max_threads();
  for (int i = -1; i < reps; ++i) {
    const double e = ms_of([&] {
      Eigen::setNbThreads(threads);  // the raw reference with Eigen's own threading
      ec.noalias() = ea * eb;
      Eigen::setNbThreads(1);  // the library's setting: hydra::matmul splits the output itself (tensor/ops/matmul.cpp)
      sink = sink + ec(0, 0);
    });
    const double o = ms_of([&] {
      Tensor c = matmul(a, b);
      sink = sink + c.data<float>()[0];
    });
    if (i >= 0) te.push_back(e), to.push_back(o);  // i = -1 is the warm-up pair
  }
  std::sort(te.begin(), te.end());
  std::sort(to.begin(), to.end());
  const Stats eigen{te.front(), te[te.size() / 2], te.back()}, ours{to.front(), to[to.size() / 2], to.back()};
  const double flop = 2.0 * n * n * n;
  fmt::print("| GEMM f32 {0}x{0}x{0} | {1} | {2} | {3:.1f} | {4:.1f} | {5:+.1f}% |\n", n, fmt_stats(ours),
             fmt_stats(eigen), flop / ours.median_ms / 1e6, flop / eigen.median_ms / 1e6,
             100.0 * (ours.median_ms / eigen.median_ms - 1.0));
}

void bench_elementwise(int64_t n, int reps) {
  Generator g(2);
  Tensor a = randn({n}, g), b = randn({n}, g);
  Tensor dst = empty({n});
  volatile float sink = 0;
  const double bytes1 = 4.0 * n;
  Stats copy = time_it(2, reps, [&] {
    std::memcpy(dst.raw_data(), a.raw_data(), n * sizeof(float));
    sink = sink + dst.data<float>()[n - 1];
  });
  const double copy_gbs = 2 * bytes1 / copy.median_ms / 1e6;
  fmt::print("| memcpy {} MB (reference) | {} | {:.2f} | 1.00 |\n", n * 4 >> 20, fmt_stats(copy), copy_gbs);
  auto row = [&](const char* name, double bytes, const std::function<void()>& f) {
    Stats s = time_it(2, reps, f);
    const double gbs = bytes / s.median_ms / 1e6;
    fmt::print("| {} | {} | {:.2f} | {:.2f} |\n", name, fmt_stats(s), gbs, gbs / copy_gbs);
  };
  row("add(a, b) -> new", 3 * bytes1, [&] { sink = sink + add(a, b).data<float>()[0]; });
  row("add_(a, b) in place", 3 * bytes1, [&] { add_(dst, b); });
  row("mul(a, scalar) -> new", 2 * bytes1, [&] { sink = sink + mul(a, 1.0001).data<float>()[0]; });
  row("silu(a) -> new", 2 * bytes1, [&] { sink = sink + silu(a).data<float>()[0]; });
  row("exp(a) -> new", 2 * bytes1, [&] { sink = sink + exp(a).data<float>()[0]; });
  row("add(a, b^T) strided", 3 * bytes1, [&] {
    Tensor a2 = a.view({4096, n / 4096}), b2 = b.view({n / 4096, 4096}).transpose(0, 1);
    sink = sink + add(a2, b2).data<float>()[0];
  });
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string section = "all";
  hydra::bench::KernelBenchOptions kopt;
  int threads = omp_get_max_threads();
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "cpu" || arg == "cuda" || arg == "kernels" || arg == "model" || arg == "all") {
      section = arg;
    } else if (arg == "--quick") {
      quick = true;
    } else if (arg == "--threads" && i + 1 < argc) {
      threads = std::stoi(argv[++i]);
    } else if (arg == "--only" && i + 1 < argc) {
      kopt.only = argv[++i];
    } else if (arg == "--json" && i + 1 < argc) {
      kopt.json = argv[++i];
    } else {
      fmt::print(stderr,
                 "usage: hydra-bench [cpu|cuda|kernels|model|all] [--quick] [--threads N] [--only KERNELS] "
                 "[--json FILE]\nunknown argument '{}'\n",
                 arg);
      return 2;
    }
  }
  omp_set_num_threads(threads);  // CPU products split their outputs over these threads (tensor/ops/matmul.cpp)
  if (section == "cuda") return hydra::bench::run_cuda_bench(quick) ? 0 : 1;
  if (section == "model") return hydra::bench::run_model_bench(quick);
  kopt.quick = quick;
  if (section == "kernels") {  // without a device: a message and exit 0
    hydra::bench::run_kernel_bench(kopt);
    return 0;
  }
  fmt::print("hydra-bench (CPU): {} OpenMP threads, Eigen {}.{}.{} (the raw Eigen rows use Eigen's own threading on "
             "as many){}\n\n",
             threads, EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION, quick ? ", quick mode" : "");
  fmt::print("| GEMM | hydra::matmul ms median [min..max] | raw Eigen ms | hydra GFLOP/s | Eigen GFLOP/s | "
             "overhead |\n|---|---|---|---|---|---|\n");
  bench_gemm(1024, quick ? 3 : 10);
  bench_gemm(2048, quick ? 2 : 5);
  fmt::print("\nFLOPs = 2·n³. Overhead = hydra median / Eigen median − 1 (target < 10%).\n\n");
  const int64_t n = int64_t{1} << 24;  // 16M float32 = 64 MiB per operand
  fmt::print("| elementwise, {} float32 | ms median [min..max] | GB/s | vs memcpy |\n|---|---|---|---|\n", n);
  bench_elementwise(n, quick ? 5 : 20);
  fmt::print("\nGB/s counts bytes read + written (memcpy: 2·4n; binary ops: 3·4n; unary: 2·4n); the memcpy row is\n"
             "the machine's practical bandwidth ceiling for these access patterns.\n");
  if (section == "all" && hydra::bench::run_cuda_bench(quick)) hydra::bench::run_kernel_bench(kopt);
  return 0;
}
