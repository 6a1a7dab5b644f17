// gpu-labelled: the CUDA runtime queries. Skips (passing, with a message) when this build or machine has no
// CUDA device, unless HYDRA_REQUIRE_CUDA=1, which turns "no device" into a failure on GPU machines.
#include <cstdlib>

#include "tensor/cuda/backend.h"
#include "tests/test_util.h"

using namespace hydra;

TEST_SUITE("gpu") {
  TEST_CASE("cuda runtime: devices are visible and described by name") {
    const bool required = std::getenv("HYDRA_REQUIRE_CUDA") && std::string(std::getenv("HYDRA_REQUIRE_CUDA")) == "1";
    const int n = cuda::device_count();
    if (n == 0) {
      REQUIRE_MESSAGE(!required, "HYDRA_REQUIRE_CUDA=1 but no CUDA device is visible (" << cuda::runtime_version()
                                                                                          << ")");
      MESSAGE("SKIPPED: no CUDA device (" << cuda::runtime_version() << ")");
      return;
    }
    CHECK(cuda::is_built());
    for (int i = 0; i < n; ++i) {
      std::string name = cuda::device_name(i);
      INFO("cuda:" << i << " " << name);
      CHECK(name.find("sm_") != std::string::npos);
    }
    hydra::test::check_throws_with([&] { cuda::device_name(n); }, {"no such device"});
  }
}
