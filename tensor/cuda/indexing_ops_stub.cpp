// Linked when the build has no CUDA backend. No CUDA tensor can be made in such a build (the allocator
// refuses), so these are unreachable in practice; each still says what happened.
#include "tensor/check.h"
#include "tensor/cuda/indexing_ops.h"

namespace hydra::cuda {

namespace {
[[noreturn]] void no_cuda(const char* op) {
  HYDRA_CHECK_ENV(false, "{}: this build has no CUDA backend (configured without nvcc or with HYDRA_CUDA=OFF)", op);
}
}  // namespace

void defer_index_check(const Tensor&, int64_t, std::function<std::string(int64_t, int64_t)>) {
  no_cuda("index check");
}
void concat(const std::vector<Tensor>&, int64_t, const Tensor&) { no_cuda("concat"); }
void gather(const Tensor&, int64_t, const Tensor&, const Tensor&) { no_cuda("gather"); }
void scatter_add(const Tensor&, int64_t, const Tensor&, const Tensor&) { no_cuda("scatter_add"); }
void embedding_backward(const Tensor&, const Tensor&, int64_t, int64_t, const Tensor&) {
  no_cuda("embedding_backward");
}

}  // namespace hydra::cuda
