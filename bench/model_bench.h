#pragma once
// `hydra-bench model`: HydraLM on the CPU (forward+backward tokens/s) and the three mixer kernels' forward and
// backward times against sequence length, with the log-log slope (1 = linear in T).
namespace hydra::bench {
int run_model_bench(bool quick);
}
