// Linked when the build has no CUDA backend: no CUDA tensor can exist there, so these are unreachable in
// practice; each still says what happened.
#include "hydra/mixers/window_attn/window_attn_cuda.h"

#include "tensor/check.h"

namespace hydra {

namespace {
[[noreturn]] void no_cuda(const char* op) {
  HYDRA_CHECK_ENV(false, "{}: built without CUDA (configured without nvcc or with HYDRA_CUDA=OFF)", op);
}
}  // namespace

void window_attn_forward_cuda(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t,
                              double) {
  no_cuda("window_attn_forward");
}

void window_attn_backward_cuda(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                               const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t, double) {
  no_cuda("window_attn_backward");
}

}  // namespace hydra
