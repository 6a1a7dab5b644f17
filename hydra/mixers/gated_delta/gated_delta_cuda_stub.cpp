// Linked when the build has no CUDA backend: the gated delta rule's CUDA entry points throw (no CUDA tensor can
// exist in such a build, so these are unreachable in practice; each still says what happened).
#include "hydra/mixers/gated_delta/gated_delta_cuda.h"
#include "tensor/check.h"

namespace hydra {

namespace {
[[noreturn]] void no_cuda(const char* op) {
  HYDRA_CHECK_ENV(false, "{}: this build has no CUDA backend (configured without nvcc or with HYDRA_CUDA=OFF)", op);
}
}  // namespace

GatedDeltaOutput gated_delta_forward_cuda(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                          const Tensor&) {
  no_cuda("gated_delta_forward");
}
GatedDeltaGrads gated_delta_backward_cuda(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                          const Tensor&, const Tensor&, const Tensor&) {
  no_cuda("gated_delta_backward");
}
GatedDeltaOutput gated_delta_step_cuda(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                       const Tensor&) {
  no_cuda("gated_delta_step");
}

}  // namespace hydra
