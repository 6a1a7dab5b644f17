#pragma once
// HYDRA_CHECK(cond, fmt, args...): the one checking macro (STYLE.md §6). Formats the message with fmt,
// appends file:line and throws std::invalid_argument (caller mistakes). HYDRA_CHECK_ENV throws
// std::runtime_error instead (files, devices, the environment).
#include <fmt/format.h>
#include <stdexcept>
#include <string>
#include <string_view>

namespace hydra::detail {
[[noreturn]] void throw_invalid(const std::string& msg, const char* file, int line);
[[noreturn]] void throw_runtime(const std::string& msg, const char* file, int line);
template <typename... Args>
std::string format_runtime(std::string_view f, const Args&... args) {
  return fmt::vformat(f, fmt::make_format_args(args...));
}
}  // namespace hydra::detail

// HYDRA_FORMAT: fmt::format with the format string checked at compile time, except under nvcc, whose front
// end cannot evaluate fmt's consteval checks; there the same string is formatted at run time.
#if defined(__CUDACC__)
#define HYDRA_FORMAT(...) ::hydra::detail::format_runtime(__VA_ARGS__)
#else
#define HYDRA_FORMAT(...) fmt::format(__VA_ARGS__)
#endif

#define HYDRA_CHECK(cond, ...)                                                                      \
  do {                                                                                              \
    if (!(cond)) ::hydra::detail::throw_invalid(HYDRA_FORMAT(__VA_ARGS__), __FILE__, __LINE__);      \
  } while (0)

#define HYDRA_CHECK_ENV(cond, ...)                                                                  \
  do {                                                                                              \
    if (!(cond)) ::hydra::detail::throw_runtime(HYDRA_FORMAT(__VA_ARGS__), __FILE__, __LINE__);      \
  } while (0)
