#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <atomic>
#include <cstdio>
#include <cstring>

#include "tests/test_util.h"

namespace {

std::atomic<int> g_cases_started{0};

// Counts the test cases that start, and prints the run's seed before the first one (not when only listing, so
// ctest's test discovery sees doctest's output alone).
struct SeedListener : doctest::IReporter {
  explicit SeedListener(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData&) override {
    if (g_cases_started++ == 0)
      std::printf("[hydra tests] HYDRA_TEST_SEED=%llu (set it to replay this run)\n",
                  static_cast<unsigned long long>(hydra::test::base_seed()));
  }
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};

}  // namespace

DOCTEST_REGISTER_LISTENER("hydra_seed", 1, SeedListener);

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i)
    if (std::strstr(argv[i], "list") || std::strcmp(argv[i], "-ltc") == 0 || std::strcmp(argv[i], "-lts") == 0)
      listing = true;
  doctest::Context ctx(argc, argv);
  const int rc = ctx.run();
  if (ctx.shouldExit() || listing) return rc;
  if (g_cases_started == 0) {
    // A filter that matches nothing must not pass silently (e.g. a ctest entry whose name was mangled).
    std::fprintf(stderr, "[hydra tests] no test case matched the filters: failing instead of passing vacuously\n");
    return 1;
  }
  return rc;
}
