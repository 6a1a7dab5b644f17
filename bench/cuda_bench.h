#pragma once
// The CUDA section of hydra-bench (bench/cuda_bench.cu; a stub without CUDA). Prints its tables to stdout.
namespace hydra::bench {
// Returns false (printing why) when the build or machine has no CUDA device.
bool run_cuda_bench(bool quick);

// Device-to-device copy bandwidth of cuda:0, the bandwidth ceiling both GPU sections compare against:
// cudaMemcpyAsync of a 256 MiB buffer on the compute stream, GPU time per copy = median over `reps` blocks of 10
// back-to-back copies between two events; bytes = 2 × the buffer (read + write). Defined in cuda_bench.cu: CUDA
// builds only (the stub build never calls it).
struct CopyBandwidth {
  double ms;     // per copy
  double bytes;  // read + written per copy
  double gbs;    // bytes / ms
};
CopyBandwidth measure_copy_bandwidth(int reps);
}  // namespace hydra::bench
