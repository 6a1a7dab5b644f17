#pragma once
// Result files and plots for the evaluation reports: a small ordered JSON value (results.json, resolved configs),
// standalone SVG charts in the style of train::loss_curve_svg (white background, sans-serif, framed axes with
// ticks), and GitHub-flavoured markdown tables.
//
// Every function checks its input sizes and throws std::invalid_argument naming the function and the sizes that
// disagree. The SVG functions return a complete document ("<svg ...>" ... "</svg>\n"); titles and labels are
// XML-escaped. NaN means "not run" wherever a value can be missing: it is drawn as a grey cell or as no bar/point
// and printed as "–".
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace hydra::eval {

// ---- JSON -------------------------------------------------------------------------------------------------

// A JSON value: null, bool, number (a double), string, array, or object with insertion-ordered keys.
//
// Numbers: integral values with |v| < 2^53 print without a decimal point ("3", "-12"); others print as fmt "{}"
// (the shortest string that reads back to the same double: "0.1", "1e-07"); NaN and ±inf print as null.
// Constructing from an integer with |v| > 2^53 throws (a double cannot hold it exactly; store it as a string).
// Strings are bytes: '"', '\\' and control characters are escaped, UTF-8 passes through unchanged.
// Objects: operator[] appends a missing key at the end; setting an existing key replaces its value in place.
// operator[] on a null value first turns it into an empty object, push_back on null into an empty array (so
// j["a"]["b"] = 1 works); on any other type they throw. Accessors throw std::invalid_argument on a type mismatch
// or a missing key / out-of-range index, naming the expected and actual type, the key or index.
class Json {
 public:
  enum class Type { Null, Bool, Number, String, Array, Object };
  using Array = std::vector<Json>;
  using Object = std::vector<std::pair<std::string, Json>>;

  Json() = default;  // null
  Json(std::nullptr_t) {}
  Json(bool b) : type_(Type::Bool), bool_(b) {}
  Json(double v) : type_(Type::Number), num_(v) {}
  Json(float v) : Json(static_cast<double>(v)) {}
  Json(int v) : Json(static_cast<int64_t>(v)) {}
  Json(long v);
  Json(long long v);
  Json(unsigned v) : Json(static_cast<int64_t>(v)) {}
  Json(unsigned long v);
  Json(unsigned long long v);
  Json(const char* s);
  Json(char* s) : Json(static_cast<const char*>(s)) {}
  Json(std::string s) : type_(Type::String), str_(std::move(s)) {}
  template <typename T>
  Json(T*) = delete;  // no pointer -> bool conversion

  static Json object();
  static Json array();
  // Strict RFC 8259 JSON (no comments, no trailing commas, no leading zeros, valid UTF-8, no duplicate keys,
  // nothing after the value but whitespace). Errors throw std::invalid_argument naming the byte offset (and
  // line:column) and what was expected.
  static Json parse(const std::string& text);

  Type type() const { return type_; }
  const char* type_name() const;
  bool is_null() const { return type_ == Type::Null; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_number() const { return type_ == Type::Number; }
  bool is_string() const { return type_ == Type::String; }
  bool is_array() const { return type_ == Type::Array; }
  bool is_object() const { return type_ == Type::Object; }

  bool as_bool() const;
  double as_number() const;
  int64_t as_int64() const;  // the number, which must be integral with |v| ≤ 2^53
  const std::string& as_string() const;

  // Objects.
  Json& operator[](const std::string& key);  // creates (appends) a missing key with a null value
  const Json& at(const std::string& key) const;
  Json& at(const std::string& key);
  bool contains(const std::string& key) const;  // throws if this is not an object
  std::vector<std::string> keys() const;        // in insertion order
  const Object& items() const;
  // Arrays.
  void push_back(Json v);
  const Json& at(size_t index) const;
  Json& at(size_t index);
  const Array& elements() const;
  // Element count of an array or object (throws for other types).
  size_t size() const;

  // indent > 0: one member or element per line, nested levels indented by `indent` spaces (Python's
  // json.dumps(indent=...) layout; empty containers print as [] and {}). indent ≤ 0: one line, separators ", "
  // and ": " (the metrics.jsonl style). No trailing newline. Deterministic: same value, same bytes.
  std::string dump(int indent = 2) const;

  // Same type and value; objects compare keys in order. Numbers compare as doubles (NaN ≠ NaN).
  friend bool operator==(const Json& a, const Json& b);

 private:
  void dump_to(std::string& out, int indent, int depth) const;
  Type type_ = Type::Null;
  bool bool_ = false;
  double num_ = 0;
  std::string str_;
  Array arr_;
  Object obj_;
};

// ---- SVG plots --------------------------------------------------------------------------------------------

// One cell per (row, col) coloured on a red (0) → yellow (0.5) → green (1) scale (ColorBrewer RdYlGn) with its
// value printed ("0.97"; "–" on a grey cell for NaN), row labels on the left, column labels below, a colour legend
// bar on the right. values is rows × cols with each value in [0, 1] or NaN. Each cell is a
// <rect class="cell" ...>. Empty input gives a "no data" plot.
std::string heatmap_svg(const std::string& title, const std::vector<std::string>& row_labels,
                        const std::vector<std::string>& col_labels, const std::vector<std::vector<double>>& values,
                        const std::string& row_axis, const std::string& col_axis);

// One bar per label with its value printed above it. y_max > 0 fixes the top of the y axis (every value must be
// ≤ y_max); y_max ≤ 0 picks a round top above the largest value. The axis starts at 0 (or below, for negative
// values). NaN draws no bar and prints "–".
std::string bar_chart_svg(const std::string& title, const std::vector<std::string>& labels,
                          const std::vector<double>& values, const std::string& y_axis, double y_max);

// For each group (x category) one bar per series, side by side, in the series' colour, with a legend. values is
// series × groups. y_max as in bar_chart_svg. Values are printed above the bars when the bars are wide enough.
std::string grouped_bar_chart_svg(const std::string& title, const std::vector<std::string>& groups,
                                  const std::vector<std::string>& series,
                                  const std::vector<std::vector<double>>& values, const std::string& y_axis,
                                  double y_max);

// One polyline with point markers per series (distinct colours; past 10 series the colours repeat dashed), with a
// legend. points[s] are series s's (x, y) points, drawn in the given order; x must be finite, a NaN y leaves a
// gap. y_max > 0 fixes the y axis to [min(0, smallest y), y_max]; y_max ≤ 0 fits the y axis to the data.
std::string line_chart_svg(const std::string& title, const std::string& x_label, const std::string& y_label,
                           const std::vector<std::string>& series,
                           const std::vector<std::vector<std::pair<double, double>>>& points, double y_max = 0);

// ---- markdown ---------------------------------------------------------------------------------------------

// A GitHub-flavoured markdown table, one line per row, each ending in '\n':
//   | a | b |\n| --- | --- |\n| 1 | 2 |\n
// '|' in a cell becomes "\|" and a line break becomes a space. Every row must have header.size() cells.
std::string markdown_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);

// XML-escapes &, <, >, " and ' (for SVG text and attribute values).
std::string xml_escape(const std::string& s);

}  // namespace hydra::eval
