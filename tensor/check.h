#pragma once
// HYDRA_CHECK(cond, fmt, args...): the one checking macro (STYLE.md §6). Formats the message with fmt,
// appends file:line and throws std::invalid_argument (caller mistakes). HYDRA_CHECK_ENV throws
// std::runtime_error instead (files, devices, the environment).
#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace hydra::detail {
[[noreturn]] void throw_invalid(const std::string& msg, const char* file, int line);
[[noreturn]] void throw_runtime(const std::string& msg, const char* file, int line);
}  // namespace hydra::detail

#define HYDRA_CHECK(cond, ...)                                                                      \
  do {                                                                                              \
    if (!(cond)) ::hydra::detail::throw_invalid(fmt::format(__VA_ARGS__), __FILE__, __LINE__);      \
  } while (0)

#define HYDRA_CHECK_ENV(cond, ...)                                                                  \
  do {                                                                                              \
    if (!(cond)) ::hydra::detail::throw_runtime(fmt::format(__VA_ARGS__), __FILE__, __LINE__);      \
  } while (0)
