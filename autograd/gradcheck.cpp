#include "autograd/gradcheck.h"

#include <cmath>

#include "autograd/node.h"
#include "tensor/random.h"

namespace hydra::ag {
namespace {

// Storage offsets (elements, from the tensor's data pointer) of every element in row-major order.
std::vector<int64_t> element_offsets(const Tensor& t) {
  std::vector<int64_t> offs(t.numel());
  std::vector<int64_t> idx(t.dim(), 0);
  for (int64_t i = 0; i < t.numel(); ++i) {
    int64_t o = 0;
    for (int64_t d = 0; d < t.dim(); ++d) o += idx[d] * t.stride(d);
    offs[i] = o;
    for (int64_t d = t.dim() - 1; d >= 0; --d) {
      if (++idx[d] < t.size(d)) break;
      idx[d] = 0;
    }
  }
  return offs;
}

double dot(const Tensor& a, const Tensor& v) {
  std::vector<double> x = a.to_vector<double>(), y = v.to_vector<double>();
  double s = 0;
  for (std::size_t i = 0; i < x.size(); ++i) s += x[i] * y[i];
  return s;
}

std::vector<Tensor> fresh_leaves(const std::vector<Tensor>& inputs, const std::vector<bool>& checked) {
  std::vector<Tensor> out;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    Tensor t = inputs[i].defined() ? inputs[i].detach() : Tensor();
    if (checked[i]) set_requires_grad(t);
    out.push_back(t);
  }
  return out;
}

}  // namespace

GradcheckResult gradcheck(const std::string& op, const GradFn& fn, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& opts) {
  std::vector<bool> checked(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    checked[i] = requires_grad(inputs[i]);
    if (!checked[i]) continue;
    const Tensor& t = inputs[i];
    HYDRA_CHECK(t.dtype() == DType::Float64 && t.is_cpu(), "gradcheck({}): input {} must be a float64 CPU tensor, "
                "got {} on {}", op, i, dtype_name(t.dtype()), t.device());
    HYDRA_CHECK(!t.has_expanded_dims(), "gradcheck({}): input {} of shape {} has broadcast (stride-0) dims; "
                "finite differences would perturb several elements at once", op, i, shape_str(t.shape()));
  }
  // Upstream gradients, one per floating output.
  std::vector<Tensor> leaves = fresh_leaves(inputs, checked);
  std::vector<Tensor> outs = fn(leaves);
  Generator gen(opts.seed);
  std::vector<Tensor> roots, ups;
  for (const Tensor& o : outs) {
    if (!o.defined() || !is_floating(o.dtype())) continue;
    HYDRA_CHECK(requires_grad(o), "gradcheck({}): an output of shape {} does not require grad (is the op recorded?)",
                op, shape_str(o.shape()));
    roots.push_back(o);
    ups.push_back(randn(o.shape(), gen, o.dtype()));
  }
  HYDRA_CHECK(!roots.empty(), "gradcheck({}): the function returned no floating output", op);
  backward(roots, ups, /*retain_graph=*/opts.check_backward_twice);

  GradcheckResult res;
  std::vector<Tensor> analytic(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i)
    if (checked[i]) analytic[i] = grad(leaves[i]).defined() ? grad(leaves[i]) : zeros_like(leaves[i]);

  if (opts.check_backward_twice) {
    for (std::size_t i = 0; i < inputs.size(); ++i)
      if (checked[i]) zero_grad(leaves[i]);
    backward(roots, ups, false);
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      if (!checked[i]) continue;
      Tensor again = grad(leaves[i]).defined() ? grad(leaves[i]) : zeros_like(leaves[i]);
      if (again.to_vector<double>() != analytic[i].to_vector<double>()) {
        res.ok = false;
        res.report += fmt::format("{}: a second backward gave different gradients for input {}\n", op, i);
      }
    }
  }

  // Numeric gradients.
  NoGradGuard no_grad;
  auto loss = [&](const std::vector<Tensor>& xs) {
    std::vector<Tensor> o = fn(xs);
    double s = 0;
    std::size_t k = 0;
    for (const Tensor& t : o) {
      if (!t.defined() || !is_floating(t.dtype())) continue;
      s += dot(t, ups[k++]);
    }
    return s;
  };
  std::vector<Tensor> work;
  for (const Tensor& t : inputs) work.push_back(t.defined() ? t.detach() : Tensor());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (!checked[i]) continue;
    Tensor x = work[i];
    double* base = x.data<double>();
    const std::vector<int64_t> offs = element_offsets(x);
    const std::vector<double> an = analytic[i].contiguous().to_vector<double>();
    for (int64_t e = 0; e < x.numel(); ++e) {
      double& v = base[offs[e]];
      const double keep = v;
      v = keep + opts.eps;
      const double lp = loss(work);
      v = keep - opts.eps;
      const double lm = loss(work);
      v = keep;
      const double num = (lp - lm) / (2 * opts.eps);
      const double err = std::abs(an[e] - num);
      const double ratio = err / (opts.atol + opts.rtol * std::abs(num));
      if (!std::isfinite(an[e]) || !std::isfinite(num) || ratio > res.worst_ratio) {
        res.worst_ratio = std::isfinite(ratio) ? ratio : INFINITY;
        if (res.worst_ratio > 1.0) {
          res.ok = false;
          res.report = fmt::format("{}: input {} (shape {}) element {}: analytic {:.10g} vs numeric {:.10g} "
                                   "(|diff| {:.3g} > {:.1g} + {:.1g}·|numeric|)\n",
                                   op, i, shape_str(x.shape()), e, an[e], num, err, opts.atol, opts.rtol) +
                       res.report;
        }
      }
    }
  }

  if (opts.check_zero_upstream) {
    EnableGradGuard with_grad;
    std::vector<Tensor> zl = fresh_leaves(inputs, checked);
    std::vector<Tensor> zo = fn(zl);
    std::vector<Tensor> zr, zu;
    for (const Tensor& o : zo)
      if (o.defined() && is_floating(o.dtype())) {
        zr.push_back(o);
        zu.push_back(zeros_like(o));
      }
    backward(zr, zu, false);
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      if (!checked[i] || !grad(zl[i]).defined()) continue;
      for (double v : grad(zl[i]).to_vector<double>())
        if (v != 0.0) {
          res.ok = false;
          res.report += fmt::format("{}: a zero upstream gradient gave a non-zero gradient ({}) for input {}\n", op, v,
                                    i);
          break;
        }
    }
  }
  return res;
}

}  // namespace hydra::ag
