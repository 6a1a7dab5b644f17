// Linked when the build has no CUDA backend: no CUDA tensor can exist there, so these are unreachable in
// practice; each still says what happened.
#include "tensor/cuda/reduce_ops.h"

#include "tensor/check.h"

namespace hydra::cuda {

namespace {
[[noreturn]] void no_cuda(const char* op) {
  HYDRA_CHECK_ENV(false, "{}: this build has no CUDA backend (configured without nvcc or with HYDRA_CUDA=OFF)", op);
}
}  // namespace

void reduce_rows(const Tensor&, const Tensor&, int64_t, int64_t, RowReduce) { no_cuda("reduce_rows"); }
void extreme_lines(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, int64_t, bool) {
  no_cuda("extreme_lines");
}
void softmax_lines(const Tensor&, const Tensor&, int64_t, int64_t, int64_t, SoftmaxKind) { no_cuda("softmax_lines"); }
void cumsum_lines(const Tensor&, const Tensor&, int64_t, int64_t, int64_t, bool) { no_cuda("cumsum_lines"); }
void topk_rows(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, int64_t, bool) { no_cuda("topk_rows"); }
bool scatter_add_lines(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, int64_t, int64_t, int64_t*) {
  no_cuda("scatter_add_lines");
}

}  // namespace hydra::cuda
