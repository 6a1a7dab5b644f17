// Linked when the build has no CUDA backend: no CUDA tensor can exist there, so these are unreachable in
// practice; each still says what happened.
#include "hydra/mixers/chunk_attn/chunk_attn_cuda.h"

#include "tensor/check.h"

namespace hydra {

namespace {
[[noreturn]] void no_cuda(const char* op) {
  HYDRA_CHECK_ENV(false, "{}: built without CUDA (configured without nvcc or with HYDRA_CUDA=OFF)", op);
}
}  // namespace

void chunk_route_cuda(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t) { no_cuda("chunk_route"); }

void chunk_idx_check_cuda(const Tensor&, int64_t, int64_t, std::function<std::string(int64_t, int64_t)>) {
  no_cuda("chunk_idx_check");
}

void chunk_attn_forward_cuda(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                             const Tensor&, int64_t, double) {
  no_cuda("chunk_attn_forward");
}

void chunk_attn_backward_cuda(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                              const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                              int64_t, double) {
  no_cuda("chunk_attn_backward");
}

}  // namespace hydra
