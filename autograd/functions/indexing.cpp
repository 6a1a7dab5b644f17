#include "autograd/functions/indexing.h"

#include "autograd/function.h"
#include "autograd/functions/basic.h"

namespace hydra::ag {

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  Tensor y = hydra::concat(xs, dim);
  if (!any_requires_grad(xs)) return y;
  const int64_t d = wrap_dim(dim, y.shape(), "concat");
  std::vector<int64_t> sizes;
  sizes.reserve(xs.size());
  for (const Tensor& x : xs) sizes.push_back(x.size(d));
  record("concat", xs, {y}, [sizes, d](const std::vector<Tensor>& g, const Node& self) -> std::vector<Tensor> {
    std::vector<Tensor> pieces = hydra::split(g[0], sizes, d);
    for (std::size_t i = 0; i < pieces.size(); ++i)
      if (!self.needs_input_grad(i)) pieces[i] = Tensor();
    return pieces;
  });
  return y;
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  Tensor y = hydra::stack(xs, dim);  // validates the list and the shapes
  if (!any_requires_grad(xs)) return y;
  const int64_t d = wrap_dim(dim, xs[0].dim() + 1, "stack");
  record("stack", xs, {y}, [d](const std::vector<Tensor>& g, const Node& self) -> std::vector<Tensor> {
    std::vector<Tensor> pieces(self.next.size());
    for (std::size_t i = 0; i < pieces.size(); ++i)
      if (self.needs_input_grad(i)) pieces[i] = g[0].select(d, static_cast<int64_t>(i)).contiguous();
    return pieces;
  });
  return y;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  std::vector<Tensor> pieces = hydra::split(x, sizes, dim);  // validates
  if (!any_requires_grad({x})) return pieces;
  const int64_t d = wrap_dim(dim, x.shape(), "split");
  // One node for all pieces: backward concatenates the piece gradients (the engine gives zeros for pieces that
  // received none), so the cost is one pass over x rather than one zero-filled copy of x per piece.
  for (Tensor& p : pieces) p = p.detach();  // fresh handles to carry the record
  record("split", {x}, pieces, [d](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    return {hydra::concat(g, d)};
  });
  return pieces;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t n, int64_t dim) {
  std::vector<Tensor> pieces = hydra::chunk(x, n, dim);  // validates and picks the sizes
  if (!any_requires_grad({x})) return pieces;
  const int64_t d = wrap_dim(dim, x.shape(), "chunk");
  std::vector<int64_t> sizes;
  for (const Tensor& p : pieces) sizes.push_back(p.size(d));
  return ag::split(x, sizes, d);
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& idx) {
  Tensor y = hydra::index_select(x, dim, idx);
  if (!any_requires_grad({x})) return y;
  const Tensor is = idx.detach();
  const Shape sx = x.shape();
  record("index_select", {x}, {y}, [is, sx, dim](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    return {hydra::index_add(zeros(sx, g[0].dtype(), g[0].device()), dim, is, g[0])};
  });
  return y;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& idx) {
  Tensor y = hydra::gather(x, dim, idx);
  if (!any_requires_grad({x})) return y;
  const Tensor is = idx.detach();
  const Shape sx = x.shape();
  record("gather", {x}, {y}, [is, sx, dim](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    return {hydra::scatter_add(zeros(sx, g[0].dtype(), g[0].device()), dim, is, g[0])};
  });
  return y;
}

Tensor scatter_add(const Tensor& base, int64_t dim, const Tensor& idx, const Tensor& src) {
  Tensor y = hydra::scatter_add(base, dim, idx, src);
  if (!any_requires_grad({base, src})) return y;
  const Tensor is = idx.detach();
  const Shape ss = src.shape();
  record("scatter_add", {base, src}, {y},
         [is, ss, dim](const std::vector<Tensor>& g, const Node& self) -> std::vector<Tensor> {
           Tensor gb, gs;
           if (self.needs_input_grad(0)) gb = g[0];
           if (self.needs_input_grad(1)) {
             gs = hydra::gather(g[0], dim, is);
             if (gs.shape() != ss) {  // src elements outside idx's shape were not used: zero gradient there
               Tensor full_gs = zeros(ss, gs.dtype(), gs.device());
               Tensor region = full_gs;
               for (int64_t d = 0; d < is.dim(); ++d) region = region.narrow(d, 0, is.size(d));
               region.copy_(gs);
               gs = full_gs;
             }
           }
           return {gb, gs};
         });
  return y;
}

Tensor embedding(const Tensor& weight, const Tensor& ids, int64_t padding_idx) {
  Tensor y = hydra::embedding(weight, ids);  // validates weight and ids
  const int64_t V = weight.size(0);
  HYDRA_CHECK(padding_idx == -1 || (padding_idx >= 0 && padding_idx < V),
              "embedding: padding_idx {} out of range; expected -1 (none) or a row in [0, {}) (weight shape {})",
              padding_idx, V, shape_str(weight.shape()));
  if (!any_requires_grad({weight})) return y;
  const Tensor is = ids.detach();
  record("embedding", {weight}, {y}, [is, V, padding_idx](const std::vector<Tensor>& g, const Node&) -> std::vector<Tensor> {
    return {hydra::embedding_backward(g[0], is, V, padding_idx)};
  });
  return y;
}

}  // namespace hydra::ag
