#pragma once
// The layout of one matmul operand after its transpose flag, shared by the CPU (Eigen) and CUDA (cuBLASLt)
// paths: element (r, c) of op(t)'s last two dims is at r·rs + c·cs (elements). Dims of size 1 get a canonical
// stride so that a single row or column reads as row- or column-major.
#include "tensor/ops/matmul.h"

namespace hydra {

struct MatView {
  int64_t rows, cols, rs, cs;
};

inline MatView matrix_view(const Tensor& t, Trans tr) {
  const int64_t n = t.dim();
  MatView v{t.size(n - 2), t.size(n - 1), t.stride(n - 2), t.stride(n - 1)};
  if (tr == Trans::Yes) v = {v.cols, v.rows, v.cs, v.rs};
  if (v.cols == 1) v.cs = 1;
  if (v.rows == 1) v.rs = v.cs == 1 ? v.cols : 1;
  return v;
}

}  // namespace hydra
