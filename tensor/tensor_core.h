#pragma once
// Tensor: a cheap handle (shared_ptr) to a TensorImpl = {Storage, shape, strides, offset, dtype, device}.
//
// Views share the Storage and get their own TensorImpl: view/reshape of contiguous tensors, slice/select along a
// dim, transpose/permute, expand (stride 0), squeeze/unsqueeze, split/chunk pieces. Everything else makes new
// storage. reshape() of a non-contiguous tensor copies; view() refuses instead. contiguous() is explicit and
// returns *this when already contiguous. Kernels accept strided inputs (each op's header says when it copies).
//
// Nothing here records gradients: Tensor methods and the free functions of tensor/ are raw. The autograd
// layer stores its per-tensor record in the opaque AutogradMeta slot and provides the differentiable ops
// (namespace hydra::ag).
#include <fmt/format.h>

#include <memory>
#include <string>
#include <vector>

#include "tensor/check.h"
#include "tensor/device.h"
#include "tensor/dtype.h"
#include "tensor/shape.h"
#include "tensor/storage.h"

namespace hydra {

struct AutogradMeta;  // defined by autograd/; tensor/ only carries the pointer

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;  // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::Float32;
  std::shared_ptr<AutogradMeta> autograd;
};

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor; most calls on it throw
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t d) const;     // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t offset() const { return impl().offset; }
  int64_t numel() const { return shape_numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  bool is_cpu() const { return device().is_cpu(); }
  bool is_cuda() const { return device().is_cuda(); }
  bool is_contiguous() const;
  bool has_expanded_dims() const;    // some dim of size > 1 has stride 0 (a broadcast view)
  std::size_t element_size() const { return dtype_size(dtype()); }
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }

  // Pointer to the first element (storage start + offset). data<T>() checks T against the dtype.
  void* raw_data() const;
  template <typename T> T* data() const {
    HYDRA_CHECK(dtype_of<T>::value == dtype(), "Tensor::data<{}>() called on a {} tensor",
                dtype_name(dtype_of<T>::value), dtype_name(dtype()));
    return static_cast<T*>(raw_data());
  }

  // ---- views (share storage) ----
  Tensor view(const Shape& shape) const;      // contiguous tensors only; one dim may be -1
  Tensor reshape(const Shape& shape) const;   // view when contiguous, else a contiguous copy
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;  // python-style clamped bounds
  Tensor select(int64_t dim, int64_t index) const;  // removes dim
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor expand(const Shape& shape) const;    // -1 keeps a dim; new leading dims allowed
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;          // dim must have size 1
  Tensor detach() const;                      // same storage and view, no autograd record
  Tensor alias() const { return detach(); }

  // ---- copies ----
  Tensor contiguous() const;                  // *this when already contiguous
  Tensor clone() const;                       // always a fresh contiguous copy
  Tensor to(DType dtype) const;               // cast (a copy unless dtype is unchanged)
  Tensor to(const Device& device) const;      // *this when already there

  // ---- in place (raw; the optimizer and kernels use these, never autograd) ----
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }
  Tensor& copy_(const Tensor& src);           // src broadcast to this shape, cast to this dtype

  // ---- values ----
  double item() const;                        // one-element tensors only
  template <typename T> std::vector<T> to_vector() const;  // cast to T, row-major order
  std::string str(int64_t max_per_dim = 6) const;  // shape, dtype, device and a few values

  bool is_same(const Tensor& other) const { return impl_ == other.impl_; }
  // Same storage but not the very same view (same offset, shape and strides): an in-place op from `other`
  // into this tensor could then read elements it has already written, so callers copy `other` first.
  bool may_overlap(const Tensor& other) const;
  TensorImpl& impl() const {
    HYDRA_CHECK(impl_ != nullptr, "operation on an undefined Tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  const std::shared_ptr<AutogradMeta>& autograd_meta() const { return impl().autograd; }
  void set_autograd_meta(std::shared_ptr<AutogradMeta> m) const { impl().autograd = std::move(m); }

 private:
  Tensor make_view(Shape shape, Shape strides, int64_t offset) const;
  std::shared_ptr<TensorImpl> impl_;
};

// ---- creation ----
Tensor empty(const Shape& shape, DType dtype = DType::Float32, const Device& device = kCPU);
Tensor zeros(const Shape& shape, DType dtype = DType::Float32, const Device& device = kCPU);
Tensor ones(const Shape& shape, DType dtype = DType::Float32, const Device& device = kCPU);
Tensor full(const Shape& shape, double value, DType dtype = DType::Float32, const Device& device = kCPU);
Tensor scalar_tensor(double value, DType dtype = DType::Float32, const Device& device = kCPU);  // 0-d
Tensor arange(double start, double end, double step = 1.0, DType dtype = DType::Int64, const Device& device = kCPU);
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
// From host values (row-major). Values are converted to dtype (default: T's own dtype).
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, const Device& device = kCPU);
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, DType dtype, const Device& device = kCPU);

}  // namespace hydra

template <>
struct fmt::formatter<hydra::Tensor> : fmt::formatter<std::string> {
  auto format(const hydra::Tensor& t, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(t.defined() ? t.str() : std::string("Tensor(undefined)"), ctx);
  }
};
