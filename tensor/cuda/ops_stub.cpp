// Linked when the build has no CUDA backend. No CUDA tensor can be made in such a build (the allocator
// refuses), so these are unreachable in practice; each still says what happened.
#include "tensor/cuda/ops.h"

#include "tensor/check.h"

namespace hydra::cuda {

namespace {
[[noreturn]] void no_cuda(const char* op) {
  HYDRA_CHECK_ENV(false, "{}: this build has no CUDA backend (configured without nvcc or with HYDRA_CUDA=OFF)", op);
}
}  // namespace

void copy(const Tensor&, const Tensor&) { no_cuda("copy"); }
void fill(const Tensor&, double) { no_cuda("fill"); }
void random_fill(const Tensor&, uint64_t, uint64_t, const philox::DistParams&) { no_cuda("random"); }
void unary(UnaryOp, const Tensor&, const Tensor&) { no_cuda("unary"); }
void binary(BinaryOp, const Tensor&, const Tensor&, const Tensor&) { no_cuda("binary"); }
void unary_backward(UnaryOp, const Tensor&, const Tensor&, const Tensor&) { no_cuda("unary_backward"); }
void compare(CompareOp, const Tensor&, const Tensor&, const Tensor&) { no_cuda("compare"); }
void where(const Tensor&, const Tensor&, const Tensor&, const Tensor&) { no_cuda("where"); }
void matmul(const Tensor&, const Tensor&, Trans, Trans, const Tensor&, const Tensor&) { no_cuda("matmul"); }

}  // namespace hydra::cuda

namespace hydra::cuda {
void set_allow_tf32(bool) {}
bool allow_tf32() { return false; }
}  // namespace hydra::cuda
