#include "tensor/tensor_core.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "tensor/cpu/loops.h"
#include "tensor/cuda/ops.h"
#include "tensor/dispatch.h"

namespace hydra {

// ---------------------------------------------------------------------------------------------------------
// metadata

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, shape(), "Tensor::size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d, shape(), "Tensor::stride")]; }

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;  // nothing to lay out
  int64_t expect = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expect) return false;
    expect *= shape()[i];
  }
  return true;
}

bool Tensor::has_expanded_dims() const {
  for (int64_t i = 0; i < dim(); ++i)
    if (shape()[i] > 1 && strides()[i] == 0) return true;
  return false;
}

bool Tensor::may_overlap(const Tensor& o) const {
  if (storage() != o.storage() || numel() == 0 || o.numel() == 0) return false;
  return !(offset() == o.offset() && shape() == o.shape() && strides() == o.strides());
}

void* Tensor::raw_data() const {
  auto* base = static_cast<char*>(impl().storage->data());
  return base ? base + offset() * static_cast<int64_t>(element_size()) : nullptr;
}

// ---------------------------------------------------------------------------------------------------------
// views

Tensor Tensor::make_view(Shape shape, Shape strides, int64_t offset) const {
  auto v = std::make_shared<TensorImpl>();
  v->storage = impl().storage;
  v->shape = std::move(shape);
  v->strides = std::move(strides);
  v->offset = offset;
  v->dtype = dtype();
  return Tensor(std::move(v));
}

static Shape infer_shape(const Shape& want, int64_t numel, const char* op, const Shape& from) {
  Shape out = want;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      HYDRA_CHECK(infer < 0, "{}: only one dim may be -1 in {}", op, shape_str(want));
      infer = static_cast<int64_t>(i);
    } else {
      HYDRA_CHECK(out[i] >= 0, "{}: negative size in {}", op, shape_str(want));
      known *= out[i];
    }
  }
  if (infer >= 0) {
    HYDRA_CHECK(known > 0 && numel % known == 0, "{}: cannot reshape a tensor of shape {} ({} elements) to {}", op,
                shape_str(from), numel, shape_str(want));
    out[infer] = numel / known;
  }
  HYDRA_CHECK(shape_numel(out) == numel, "{}: cannot reshape a tensor of shape {} ({} elements) to {} ({} elements)",
              op, shape_str(from), numel, shape_str(out), shape_numel(out));
  return out;
}

Tensor Tensor::view(const Shape& want) const {
  Shape s = infer_shape(want, numel(), "view", shape());
  HYDRA_CHECK(is_contiguous(), "view: tensor of shape {} with strides {} is not contiguous; use reshape() (copies) or "
              "contiguous() first", shape_str(shape()), shape_str(strides()));
  return make_view(s, contiguous_strides(s), offset());
}

Tensor Tensor::reshape(const Shape& want) const {
  if (is_contiguous()) return view(want);
  return contiguous().view(want);
}

Tensor Tensor::flatten(int64_t start, int64_t end) const {
  if (dim() == 0) return reshape({1});
  start = wrap_dim(start, shape(), "flatten");
  end = wrap_dim(end, shape(), "flatten");
  HYDRA_CHECK(start <= end, "flatten: start dim {} after end dim {}", start, end);
  Shape s(shape().begin(), shape().begin() + start);
  int64_t m = 1;
  for (int64_t i = start; i <= end; ++i) m *= shape()[i];
  s.push_back(m);
  s.insert(s.end(), shape().begin() + end + 1, shape().end());
  return reshape(s);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = wrap_dim(d, shape(), "slice");
  HYDRA_CHECK(step >= 1, "slice: step must be >= 1, got {}", step);
  const int64_t n = shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = shape(), st = strides();
  s[d] = (end - start + step - 1) / step;
  st[d] = strides()[d] * step;
  return make_view(s, st, offset() + start * strides()[d]);
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim(d, shape(), "narrow");
  HYDRA_CHECK(start >= 0 && length >= 0 && start + length <= shape()[d],
              "narrow: [{}, {}) out of range for dim {} of size {} (shape {})", start, start + length, d, shape()[d],
              shape_str(shape()));
  return slice(d, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d, shape(), "select");
  const int64_t n = shape()[d];
  HYDRA_CHECK(index >= -n && index < n, "select: index {} out of range for dim {} of size {} (shape {})", index, d,
              n, shape_str(shape()));
  if (index < 0) index += n;
  Shape s = shape(), st = strides();
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  return make_view(s, st, offset() + index * strides()[d]);
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  d0 = wrap_dim(d0, shape(), "transpose");
  d1 = wrap_dim(d1, shape(), "transpose");
  Shape s = shape(), st = strides();
  std::swap(s[d0], s[d1]);
  std::swap(st[d0], st[d1]);
  return make_view(s, st, offset());
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  HYDRA_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute: got {} dims for a tensor of shape {}",
              dims.size(), shape_str(shape()));
  Shape s(dims.size()), st(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], shape(), "permute");
    HYDRA_CHECK(!seen[d], "permute: dim {} repeated in the permutation", d);
    seen[d] = true;
    s[i] = shape()[d];
    st[i] = strides()[d];
  }
  return make_view(s, st, offset());
}

Tensor Tensor::expand(const Shape& want) const {
  HYDRA_CHECK(want.size() >= shape().size(), "expand: cannot expand shape {} to fewer dims {}", shape_str(shape()),
              shape_str(want));
  const size_t lead = want.size() - shape().size();
  Shape s(want.size()), st(want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    if (i < lead) {
      HYDRA_CHECK(want[i] >= 0, "expand: new leading dim {} must be given (got {})", i, want[i]);
      s[i] = want[i];
      st[i] = 0;
      continue;
    }
    int64_t have = shape()[i - lead];
    int64_t w = want[i] == -1 ? have : want[i];
    HYDRA_CHECK(w == have || have == 1, "expand: cannot expand shape {} to {} (dim {} is {}, not 1)",
                shape_str(shape()), shape_str(want), i, have);
    s[i] = w;
    st[i] = (w == have) ? strides()[i - lead] : 0;
  }
  return make_view(s, st, offset());
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape s = shape(), st = strides();
  int64_t stride = d < dim() ? strides()[d] * shape()[d] : 1;
  s.insert(s.begin() + d, 1);
  st.insert(st.begin() + d, stride);
  return make_view(s, st, offset());
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d, shape(), "squeeze");
  HYDRA_CHECK(shape()[d] == 1, "squeeze: dim {} has size {}, not 1 (shape {})", d, shape()[d], shape_str(shape()));
  Shape s = shape(), st = strides();
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  return make_view(s, st, offset());
}

Tensor Tensor::detach() const { return make_view(shape(), strides(), offset()); }

// ---------------------------------------------------------------------------------------------------------
// copies and casts

namespace {

void copy_cpu(const Tensor& dst, const Tensor& src) {
  const Tensor s = src.expand(dst.shape());
  dispatch_all(dst.dtype(), "copy_", [&]<typename D>() {
    dispatch_all(s.dtype(), "copy_", [&]<typename S>() {
      cpu::for_each_row<2>(dst.shape(), {dst.strides(), s.strides()},
                           {static_cast<char*>(dst.raw_data()), static_cast<char*>(s.raw_data())},
                           {int64_t(sizeof(D)), int64_t(sizeof(S))},
                           [](std::array<char*, 2> p, int64_t n, std::array<int64_t, 2> st) {
                             D* o = reinterpret_cast<D*>(p[0]);
                             const S* i = reinterpret_cast<const S*>(p[1]);
                             if (st[0] == 1 && st[1] == 1) {
                               if constexpr (std::is_same_v<D, S>) {
                                 std::memcpy(o, i, n * sizeof(D));
                               } else {
                                 for (int64_t k = 0; k < n; ++k) o[k] = convert_value<D>(i[k]);
                               }
                             } else {
                               for (int64_t k = 0; k < n; ++k) o[k * st[0]] = convert_value<D>(i[k * st[1]]);
                             }
                           });
    });
  });
}

}  // namespace

Tensor& Tensor::copy_(const Tensor& src) {
  check_defined(src, "copy_", "src");
  HYDRA_CHECK(!has_expanded_dims(), "copy_: destination of shape {} has broadcast (stride-0) dims; writing to it "
              "would alias elements", shape_str(shape()));
  HYDRA_CHECK(broadcast_shapes(shape(), src.shape(), "copy_") == shape(),
              "copy_: source of shape {} does not broadcast to the destination shape {}", shape_str(src.shape()),
              shape_str(shape()));
  if (device() == src.device()) {
    const Tensor from = may_overlap(src) ? src.clone() : src;  // e.g. z.copy_(z.transpose(0, 1))
    switch (device().type) {
      case DeviceType::CPU: copy_cpu(*this, from); break;
      case DeviceType::CUDA: cuda::copy(*this, from); break;
    }
    return *this;
  }
  // Between devices: cast on the source side, move the bytes contiguously, then place them on this side.
  const Tensor staged = src.to(dtype()).expand(shape()).contiguous();
  const bool direct = is_contiguous() && src.shape() == shape();
  Tensor landing = direct ? *this : empty(shape(), dtype(), device());
  const std::size_t nbytes = numel() * element_size();
  if (device().is_cpu()) {
    allocator_for(staged.device()).copy_to_host(landing.raw_data(), staged.raw_data(), nbytes);
  } else if (staged.device().is_cpu()) {
    allocator_for(device()).copy_from_host(landing.raw_data(), staged.raw_data(), nbytes);
  } else {
    // cuda:i -> cuda:j goes through the host (peer copies come with the distributed work).
    copy_(staged.to(kCPU));
    return *this;
  }
  if (!direct) copy_(landing);
  return *this;
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(DType t) const {
  if (t == dtype()) return *this;
  Tensor out = empty(shape(), t, device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(const Device& d) const {
  if (d == device()) return *this;
  Tensor out = empty(shape(), dtype(), d);
  out.copy_(*this);
  return out;
}

Tensor& Tensor::fill_(double value) {
  HYDRA_CHECK(!has_expanded_dims(), "fill_: tensor of shape {} has broadcast (stride-0) dims", shape_str(shape()));
  if (device().is_cuda()) {
    cuda::fill(*this, value);
    return *this;
  }
  dispatch_all(dtype(), "fill_", [&]<typename T>() {
    const T v = convert_value<T>(value);
    cpu::for_each_row<1>(shape(), {strides()}, {static_cast<char*>(raw_data())}, {int64_t(sizeof(T))},
                         [&](std::array<char*, 1> p, int64_t n, std::array<int64_t, 1> st) {
                           T* o = reinterpret_cast<T*>(p[0]);
                           for (int64_t k = 0; k < n; ++k) o[k * st[0]] = v;
                         });
  });
  return *this;
}

// ---------------------------------------------------------------------------------------------------------
// values and printing

double Tensor::item() const {
  HYDRA_CHECK(numel() == 1, "item: tensor of shape {} has {} elements, expected exactly 1", shape_str(shape()),
              numel());
  Tensor host = to(kCPU).to(DType::Float64).contiguous();
  return *host.data<double>();
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor host = to(kCPU).to(dtype_of<T>::value).contiguous();
  std::vector<T> out(numel());
  if (!out.empty()) std::memcpy(out.data(), host.raw_data(), out.size() * sizeof(T));
  return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<BFloat16> Tensor::to_vector<BFloat16>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;

std::string Tensor::str(int64_t max_per_dim) const {
  std::string head = fmt::format("Tensor(shape={}, dtype={}, device={}", shape_str(shape()), dtype_name(dtype()),
                                 device());
  if (!device().is_cpu()) {  // values come through a host copy; the header names the real device
    std::string host = to(kCPU).str(max_per_dim);
    return head + host.substr(host.find(", values="));
  }
  std::string body;
  std::vector<double> vals = to_vector<double>();
  auto fmt_val = [&](double v) {
    if (!is_floating(dtype())) return fmt::format("{}", static_cast<int64_t>(v));
    return fmt::format("{:.5g}", v);
  };
  Shape cs = contiguous_strides(shape());
  auto print = [&](auto&& self, int64_t d, int64_t base) -> std::string {
    if (dim() == 0) return fmt_val(vals[0]);
    std::string s = "[";
    const int64_t n = shape()[d];
    for (int64_t i = 0; i < n; ++i) {
      if (n > max_per_dim && i == max_per_dim / 2) {
        s += "..., ";
        i = n - max_per_dim / 2 - 1;
        continue;
      }
      s += d + 1 == dim() ? fmt_val(vals[base + i * cs[d]]) : self(self, d + 1, base + i * cs[d]);
      if (i + 1 < n) s += ", ";
    }
    return s + "]";
  };
  body = numel() == 0 ? "[]" : print(print, 0, 0);
  return head + ", values=" + body + ")";
}

// ---------------------------------------------------------------------------------------------------------
// creation

Tensor empty(const Shape& shape, DType dtype, const Device& device) {
  for (int64_t d : shape) HYDRA_CHECK(d >= 0, "empty: negative dim in shape {}", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor full(const Shape& shape, double value, DType dtype, const Device& device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}
Tensor zeros(const Shape& shape, DType dtype, const Device& device) { return full(shape, 0.0, dtype, device); }
Tensor ones(const Shape& shape, DType dtype, const Device& device) { return full(shape, 1.0, dtype, device); }
Tensor scalar_tensor(double value, DType dtype, const Device& device) { return full({}, value, dtype, device); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.dtype(), t.device()); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype(), t.device()); }

Tensor arange(double start, double end, double step, DType dtype, const Device& device) {
  HYDRA_CHECK(step != 0.0, "arange: step must be non-zero");
  const double span = (end - start) / step;
  const int64_t n = span > 0 ? static_cast<int64_t>(std::ceil(span)) : 0;
  Tensor host = empty({n}, DType::Float64);
  double* p = host.data<double>();
  for (int64_t i = 0; i < n; ++i) p[i] = start + static_cast<double>(i) * step;
  return host.to(dtype).to(device);
}

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, DType dtype, const Device& device) {
  HYDRA_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
              "from_vector: {} values given for shape {} ({} elements)", values.size(), shape_str(shape),
              shape_numel(shape));
  Tensor host = empty(shape, dtype_of<T>::value);
  if (!values.empty()) std::memcpy(host.raw_data(), values.data(), values.size() * sizeof(T));
  return host.to(dtype).to(device);
}
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, const Device& device) {
  return from_vector(values, shape, dtype_of<T>::value, device);
}
#define HYDRA_INSTANTIATE_FROM_VECTOR(T)                                                        \
  template Tensor from_vector<T>(const std::vector<T>&, const Shape&, DType, const Device&);   \
  template Tensor from_vector<T>(const std::vector<T>&, const Shape&, const Device&);
HYDRA_INSTANTIATE_FROM_VECTOR(float)
HYDRA_INSTANTIATE_FROM_VECTOR(double)
HYDRA_INSTANTIATE_FROM_VECTOR(BFloat16)
HYDRA_INSTANTIATE_FROM_VECTOR(int32_t)
HYDRA_INSTANTIATE_FROM_VECTOR(int64_t)
#undef HYDRA_INSTANTIATE_FROM_VECTOR

}  // namespace hydra
