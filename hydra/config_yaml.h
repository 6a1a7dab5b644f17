#pragma once
// Typed readers of YAML values for config files (hydra/config.cpp's `model:` section and the training sections
// of train/config.cpp): one reader per C++ type, each refusing what is not exactly of that type (a quoted "12"
// is not an integer, "yes" is not a boolean) with a message naming where the value came from, the dotted key,
// what was expected and what was found.
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hydra::yaml {

// Where a value came from, for messages: "file:line: section.key" or "command-line override '...': section.key".
struct Where {
  std::string source;
  std::string key;          // dotted path, e.g. "model.n_layers"
  std::optional<int> line;  // 1-based

  std::string prefix() const;
};

std::optional<int> line_of(const YAML::Node& n);  // 1-based line of a node read from a file
bool is_quoted(const YAML::Node& n);
std::string describe(const YAML::Node& n);  // what a node holds, for messages: 'abc', the string "abc", a list …
[[noreturn]] void type_error(const Where& w, const char* expected, const YAML::Node& n);

void read(const YAML::Node& n, const Where& w, int64_t& out);
void read(const YAML::Node& n, const Where& w, double& out);  // finite only
void read(const YAML::Node& n, const Where& w, bool& out);    // true | false
void read(const YAML::Node& n, const Where& w, std::string& out);
void read(const YAML::Node& n, const Where& w, std::optional<int64_t>& out);  // integer or null
// Lists ([a, b, c] or a block list); messages name the element as key[i].
void read(const YAML::Node& n, const Where& w, std::vector<int64_t>& out);
void read(const YAML::Node& n, const Where& w, std::vector<double>& out);
void read(const YAML::Node& n, const Where& w, std::vector<std::string>& out);

// Levenshtein distance (for "did you mean" suggestions).
size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace hydra::yaml
