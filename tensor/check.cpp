#include "tensor/check.h"

namespace hydra::detail {

static std::string where(const char* file, int line) {
  std::string f(file);
  // Print the path from the repository's top-level folder on, not the build machine's absolute path.
  for (const char* top : {"/tensor/", "/autograd/", "/nn/", "/optim/", "/hydra/", "/train/", "/eval/", "/apps/",
                          "/bench/", "/tests/"}) {
    auto pos = f.rfind(top);
    if (pos != std::string::npos) return fmt::format("{}:{}", f.substr(pos + 1), line);
  }
  return fmt::format("{}:{}", f, line);
}

void throw_invalid(const std::string& msg, const char* file, int line) {
  throw std::invalid_argument(fmt::format("{} [{}]", msg, where(file, line)));
}
void throw_runtime(const std::string& msg, const char* file, int line) {
  throw std::runtime_error(fmt::format("{} [{}]", msg, where(file, line)));
}

}  // namespace hydra::detail
