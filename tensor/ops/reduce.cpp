#include "tensor/ops/reduce.h"

#include <algorithm>

#include "tensor/cpu/loops.h"
#include "tensor/dispatch.h"

namespace hydra {
namespace {

// Reduces the trailing `inner` elements of each of `outer` contiguous rows: out[o] = Σ_i x[o*inner + i].
template <typename T>
void sum_rows_cpu(const T* x, T* out, int64_t outer, int64_t inner) {
  using Acc = std::conditional_t<std::is_integral_v<T> || std::is_same_v<T, bool>, int64_t, double>;
  cpu::parallel_for(outer, inner, [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o) {
      Acc acc = 0;
      const T* row = x + o * inner;
      for (int64_t i = 0; i < inner; ++i) acc += static_cast<Acc>(static_cast<compute_t<T>>(row[i]));
      out[o] = static_cast<T>(static_cast<compute_t<T>>(acc));
    }
  });
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  check_defined(x, "sum", "x");
  HYDRA_CHECK(x.dtype() != DType::Bool, "sum: bool tensors are not summed; cast to int64 first");
  const int64_t nd = x.dim();
  std::vector<bool> red(nd, dims_in.empty());
  for (int64_t d : dims_in) {
    int64_t w = wrap_dim(d, nd, "sum");
    HYDRA_CHECK(!red[w], "sum: dim {} listed twice", w);
    red[w] = true;
  }
  // Permute to (kept..., reduced...) and make contiguous; then every output is one contiguous row.
  std::vector<int64_t> perm;
  Shape out_shape, kept_shape;
  int64_t inner = 1;
  for (int64_t d = 0; d < nd; ++d)
    if (!red[d]) {
      perm.push_back(d);
      kept_shape.push_back(x.size(d));
    }
  for (int64_t d = 0; d < nd; ++d)
    if (red[d]) {
      perm.push_back(d);
      inner *= x.size(d);
    }
  for (int64_t d = 0; d < nd; ++d)
    if (!red[d]) out_shape.push_back(x.size(d));
    else if (keepdim) out_shape.push_back(1);
  Tensor out = empty(out_shape, x.dtype(), x.device());
  switch (x.device().type) {
    case DeviceType::CPU: {
      Tensor xp = x.permute(perm).contiguous();
      dispatch_numeric(x.dtype(), "sum", [&]<typename T>() {
        sum_rows_cpu<T>(static_cast<const T*>(xp.raw_data()), static_cast<T*>(out.raw_data()),
                        shape_numel(kept_shape), inner);
      });
      break;
    }
    case DeviceType::CUDA: cuda_kernel_missing("sum");
  }
  return out;
}

Tensor sum(const Tensor& x) { return sum(x, {}, false); }

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  HYDRA_CHECK(broadcast_shapes(shape, x.shape(), "sum_to") == x.shape(),
              "sum_to: shape {} does not broadcast to {}", shape_str(shape), shape_str(x.shape()));
  const int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (d < lead || (shape[d - lead] == 1 && x.size(d) != 1)) dims.push_back(d);
  Tensor s = dims.empty() ? x : sum(x, dims, /*keepdim=*/true);
  if (lead > 0) s = s.reshape(shape);
  return s.shape() == shape ? s : s.reshape(shape);
}

}  // namespace hydra
