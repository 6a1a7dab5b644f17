#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "tests/test_util.h"

int main(int argc, char** argv) {
  doctest::Context ctx(argc, argv);
  std::printf("[hydra tests] HYDRA_TEST_SEED=%llu (set it to replay this run)\n",
              static_cast<unsigned long long>(hydra::test::base_seed()));
  return ctx.run();
}
