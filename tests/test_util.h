#pragma once
// Helpers shared by the test suites: the per-run seed, random inputs, comparisons against float64 references
// with the SPEC §0.1 tolerances, gradcheck wrappers and exception-message checks.
#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "tensor/tensor.h"
#include "tests/tolerance.h"

namespace hydra::test {

// The run's base seed: HYDRA_TEST_SEED if set, else from the clock. Printed once at start (test_main.cpp).
uint64_t base_seed();
// A generator for one test: base seed mixed with a per-call counter, so each call draws fresh values.
Generator fresh_generator();
// Random tensors (CPU). randn_f64 draws in float64; `like` forms cast to a dtype.
Tensor randn_t(const Shape& shape, DType dtype = DType::Float64);
Tensor rand_t(const Shape& shape, double lo, double hi, DType dtype = DType::Float64);
// Tolerance for a kernel of dtype `t` compared with a float64 reference.
Tolerance tolerance_for(DType t);

struct CompareResult {
  double rel_rms = 0, max_abs_rel = 0;
  bool ok = true;
  std::string msg;
};
// y against the float64 reference r (shapes must match; y is cast to float64).
CompareResult compare(const Tensor& y, const Tensor& r, Tolerance tol);
// CHECKs compare(y, r, tol).ok with the numbers in the failure message.
void check_close(const Tensor& y, const Tensor& r, Tolerance tol, const std::string& what = "");
void check_close(const Tensor& y, const Tensor& r, const std::string& what = "");  // tolerance from y's dtype

// Runs ag::gradcheck with the SPEC tolerances and a fresh seed; CHECKs the result, printing the report.
void check_gradcheck(const std::string& op, const ag::GradFn& fn, const std::vector<Tensor>& inputs);
// The CPU copy of a (possibly CUDA) tensor, floating dtypes upcast to float64, others unchanged; undefined stays
// undefined. The reference side of GPU-vs-CPU comparisons.
Tensor host64(const Tensor& t);
// A float64 leaf requiring grad.
Tensor leaf(const Tensor& t);

// GPU tests: true when a CUDA device is usable. Otherwise prints a skip message and returns false, unless
// HYDRA_REQUIRE_CUDA=1, which makes "no device" a test failure (GPU CI machines set it). When true, the CUDA
// allocator's poison mode is on for the rest of the test run.
bool gpu_available();

// The path of a file in tests/data (found from this source file's location, so tests run from any directory).
std::string test_data_path(const std::string& file);

// Runs f, REQUIREs that it throws, and CHECKs that the message contains every fragment.
void check_throws_with(const std::function<void()>& f, const std::vector<std::string>& fragments);

}  // namespace hydra::test
