#include "tests/test_util.h"

#include <filesystem>

#include "tensor/cuda/backend.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>

namespace hydra::test {

uint64_t base_seed() {
  static const uint64_t seed = [] {
    if (const char* s = std::getenv("HYDRA_TEST_SEED")) return static_cast<uint64_t>(std::strtoull(s, nullptr, 10));
    return static_cast<uint64_t>(std::chrono::high_resolution_clock::now().time_since_epoch().count());
  }();
  return seed;
}

Generator fresh_generator() {
  static std::atomic<uint64_t> counter{0};
  const uint64_t k = counter++;
  return Generator(base_seed() ^ (0x9E3779B97F4A7C15ull * (k + 1)));
}

Tensor randn_t(const Shape& shape, DType dtype) {
  Generator g = fresh_generator();
  return randn(shape, g, DType::Float64).to(dtype);
}

Tensor rand_t(const Shape& shape, double lo, double hi, DType dtype) {
  Generator g = fresh_generator();
  Tensor t = empty(shape, DType::Float64);
  uniform_(t, lo, hi, g);
  return t.to(dtype);
}

Tolerance tolerance_for(DType t) {
  switch (t) {
    case DType::Float64: return kTolF64;
    case DType::Float32: return kTolF32;
    case DType::BFloat16: return kTolBF16;
    default: return {0.0, 0.0};  // integers: exact
  }
}

CompareResult compare(const Tensor& y, const Tensor& r, Tolerance tol) {
  CompareResult res;
  if (y.shape() != r.shape()) {
    res.ok = false;
    res.msg = fmt::format("shape {} vs reference {}", shape_str(y.shape()), shape_str(r.shape()));
    return res;
  }
  std::vector<double> a = y.to_vector<double>(), b = r.to_vector<double>();
  double num = 0, den = 0, maxd = 0, maxr = 0;
  bool finite = true;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) != std::isnan(b[i])) finite = false;
    const double d = (std::isnan(a[i]) && std::isnan(b[i])) ? 0.0 : a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
    maxd = std::max(maxd, std::abs(d));
    maxr = std::max(maxr, std::abs(b[i]));
  }
  res.rel_rms = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  res.max_abs_rel = maxr > 0 ? maxd / maxr : maxd;
  res.ok = finite && std::isfinite(res.rel_rms) && res.rel_rms <= tol.rel_rms && res.max_abs_rel <= tol.max_abs_rel;
  res.msg = fmt::format("rel_rms {:.3g} (≤ {:.1g}), max_abs/max|r| {:.3g} (≤ {:.1g}){}", res.rel_rms, tol.rel_rms,
                        res.max_abs_rel, tol.max_abs_rel, finite ? "" : ", NaN pattern differs");
  return res;
}

void check_close(const Tensor& y, const Tensor& r, Tolerance tol, const std::string& what) {
  CompareResult c = compare(y, r, tol);
  INFO(what << ": " << c.msg << " [seed " << base_seed() << "]");
  CHECK(c.ok);
}

void check_close(const Tensor& y, const Tensor& r, const std::string& what) {
  check_close(y, r, tolerance_for(y.dtype()), what);
}

void check_gradcheck(const std::string& op, const ag::GradFn& fn, const std::vector<Tensor>& inputs) {
  ag::GradcheckOptions opts;
  opts.eps = kGradcheckEps;
  opts.atol = kGradcheckAtol;
  opts.rtol = kGradcheckRtol;
  opts.seed = fresh_generator().seed();
  ag::GradcheckResult r = ag::gradcheck(op, fn, inputs, opts);
  INFO("gradcheck " << op << " [seed " << base_seed() << "]: worst ratio " << r.worst_ratio << "\n" << r.report);
  CHECK(r.ok);
}

Tensor host64(const Tensor& t) {
  if (!t.defined()) return t;
  Tensor h = t.to(kCPU);
  return is_floating(h.dtype()) ? h.to(DType::Float64) : h;
}

Tensor leaf(const Tensor& t) {
  Tensor l = t.to(DType::Float64).detach();
  if (l.is_same(t)) l = t.detach();
  ag::set_requires_grad(l);
  return l;
}

bool gpu_available() {
  const char* req = std::getenv("HYDRA_REQUIRE_CUDA");
  const bool required = req && std::string(req) == "1";
  if (cuda::device_count() == 0) {
    REQUIRE_MESSAGE(!required, "HYDRA_REQUIRE_CUDA=1 but no CUDA device is usable (" << cuda::runtime_version() << ")");
    MESSAGE("SKIPPED: no CUDA device (" << cuda::runtime_version() << ")");
    return false;
  }
  cuda::set_poison_allocations(true);
  return true;
}

void check_throws_with(const std::function<void()>& f, const std::vector<std::string>& fragments) {
  std::string msg;
  bool threw = false;
  try {
    f();
  } catch (const std::exception& e) {
    threw = true;
    msg = e.what();
  }
  REQUIRE_MESSAGE(threw, "expected an exception containing: " << (fragments.empty() ? "" : fragments[0]));
  for (const auto& frag : fragments) {
    INFO("message: " << msg);
    CHECK(msg.find(frag) != std::string::npos);
  }
}

}  // namespace hydra::test

namespace hydra::test {
std::string test_data_path(const std::string& file) {
  return (std::filesystem::path(HYDRA_TEST_DATA_DIR) / file).string();
}
}  // namespace hydra::test
