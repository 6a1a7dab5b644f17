// Linked when the build has no CUDA backend: the fused ops' CUDA entry points throw (no CUDA tensor can exist in
// such a build, so these are unreachable in practice; each still says what happened).
#include "tensor/check.h"
#include "tensor/cuda/fused_ops.h"

namespace hydra::cuda {

namespace {
[[noreturn]] void no_cuda(const char* op) {
  HYDRA_CHECK_ENV(false, "{}: this build has no CUDA backend (configured without nvcc or with HYDRA_CUDA=OFF)", op);
}
}  // namespace

void rms_norm_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, double) {
  no_cuda("rms_norm_forward");
}
void rms_norm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  no_cuda("rms_norm_backward");
}
void cross_entropy_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t,
                           std::function<std::string(int64_t, int64_t)>) {
  no_cuda("cross_entropy_forward");
}
void cross_entropy_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t) {
  no_cuda("cross_entropy_backward");
}
void l2_normalize_forward(const Tensor&, const Tensor&, const Tensor&, double) { no_cuda("l2_normalize_forward"); }
void l2_normalize_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, double) {
  no_cuda("l2_normalize_backward");
}
void rotary(const Tensor&, const Tensor&, int64_t, double, double) { no_cuda("rotary"); }
void causal_conv1d_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  no_cuda("causal_conv1d_forward");
}
void causal_conv1d_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                            const Tensor&, const Tensor&, const Tensor&) {
  no_cuda("causal_conv1d_backward");
}

void swiglu_forward(const Tensor&, const Tensor&) { no_cuda("swiglu_forward"); }
void swiglu_backward(const Tensor&, const Tensor&, const Tensor&) { no_cuda("swiglu_backward"); }
void sum_of_squares(const std::vector<Tensor>&, const Tensor&) { no_cuda("sum_of_squares"); }
void scale_(const std::vector<Tensor>&, double) { no_cuda("scale_"); }
void add_cast(const Tensor&, const Tensor&, const Tensor&) { no_cuda("add_cast"); }
void adamw_step(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const AdamWCoefs&) {
  no_cuda("adamw_step");
}

}  // namespace hydra::cuda
