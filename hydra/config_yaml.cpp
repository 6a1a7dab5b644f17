// Typed YAML readers shared by the config files' sections (see config_yaml.h).
#include "hydra/config_yaml.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <vector>

#include "tensor/check.h"

namespace hydra::yaml {

std::string Where::prefix() const {
  return line ? fmt::format("{}:{}: {}", source, *line, key) : fmt::format("{}: {}", source, key);
}

std::optional<int> line_of(const YAML::Node& n) {
  const auto m = n.Mark();
  if (m.is_null()) return std::nullopt;
  return m.line + 1;
}

bool is_quoted(const YAML::Node& n) { return n.Tag() == "!"; }

std::string describe(const YAML::Node& n) {
  if (!n.IsDefined() || n.IsNull()) return "null";
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  if (is_quoted(n)) return fmt::format("the string \"{}\"", n.Scalar());
  return fmt::format("'{}'", n.Scalar());
}

[[noreturn]] void type_error(const Where& w, const char* expected, const YAML::Node& n) {
  HYDRA_CHECK(false, "{}: expected {}, found {}", w.prefix(), expected, describe(n));
}

void read(const YAML::Node& n, const Where& w, int64_t& out) {
  if (!n.IsScalar() || is_quoted(n)) type_error(w, "an integer", n);
  std::string_view s = n.Scalar();
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  int64_t v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size()) type_error(w, "an integer", n);
  out = v;
}

void read(const YAML::Node& n, const Where& w, double& out) {
  if (!n.IsScalar() || is_quoted(n)) type_error(w, "a number", n);
  std::string_view s = n.Scalar();
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  double v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size() || !std::isfinite(v))
    type_error(w, "a finite number", n);
  out = v;
}

void read(const YAML::Node& n, const Where& w, bool& out) {
  if (n.IsScalar() && !is_quoted(n) && n.Scalar() == "true") {
    out = true;
  } else if (n.IsScalar() && !is_quoted(n) && n.Scalar() == "false") {
    out = false;
  } else {
    type_error(w, "a boolean (true or false)", n);
  }
}

void read(const YAML::Node& n, const Where& w, std::string& out) {
  if (!n.IsScalar()) type_error(w, "a string", n);
  out = n.Scalar();
}

void read(const YAML::Node& n, const Where& w, std::optional<int64_t>& out) {
  if (n.IsNull()) {
    out.reset();
    return;
  }
  if (!n.IsScalar() || is_quoted(n)) type_error(w, "an integer or null", n);
  int64_t v = 0;
  read(n, w, v);
  out = v;
}

// A YAML sequence of T (a flow list [a, b] or a block list); each element read (and named "key[i]") like a scalar.
template <class T>
void read_list(const YAML::Node& n, const Where& w, std::vector<T>& out, const char* expected) {
  if (!n.IsSequence()) type_error(w, expected, n);
  std::vector<T> v(n.size());
  for (size_t i = 0; i < n.size(); ++i) {
    Where wi = w;
    wi.key = fmt::format("{}[{}]", w.key, i);
    if (const auto l = line_of(n[i])) wi.line = l;
    read(n[i], wi, v[i]);
  }
  out = std::move(v);
}

void read(const YAML::Node& n, const Where& w, std::vector<int64_t>& out) {
  read_list(n, w, out, "a list of integers");
}
void read(const YAML::Node& n, const Where& w, std::vector<double>& out) { read_list(n, w, out, "a list of numbers"); }
void read(const YAML::Node& n, const Where& w, std::vector<std::string>& out) {
  read_list(n, w, out, "a list of strings");
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace hydra::yaml
