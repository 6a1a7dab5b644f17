// eval/report.h: the ordered JSON value with its strict parser, the SVG charts and markdown tables.
#include "eval/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <iterator>
#include <limits>
#include <unordered_set>

#include "tensor/check.h"

namespace hydra::eval {

namespace {

constexpr double kExact = 9007199254740992.0;  // 2^53: every integer of smaller magnitude is an exact double
constexpr long long kExactInt = 9007199254740992LL;

const char* type_name_of(Json::Type t) {
  switch (t) {
    case Json::Type::Null: return "null";
    case Json::Type::Bool: return "bool";
    case Json::Type::Number: return "number";
    case Json::Type::String: return "string";
    case Json::Type::Array: return "array";
    case Json::Type::Object: return "object";
  }
  return "?";
}

void dump_number(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
  } else if (v == std::trunc(v) && std::fabs(v) < kExact) {
    fmt::format_to(std::back_inserter(out), "{}", static_cast<int64_t>(v));
  } else {
    fmt::format_to(std::back_inserter(out), "{}", v);  // shortest string that reads back to v
  }
}

void dump_string(std::string& out, const std::string& s) {
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<unsigned>(c));
        else out += ch;
    }
  }
  out += '"';
}

void newline_indent(std::string& out, int indent, int depth) {
  out += '\n';
  out.append(static_cast<size_t>(indent) * depth, ' ');
}

// ---- strict parser ----

class Parser {
 public:
  explicit Parser(const std::string& s) : s_(s) {}

  Json parse_document() {
    skip_ws();
    Json v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected " + describe() + " after the JSON value");
    return v;
  }

 private:
  static constexpr int kMaxDepth = 512;

  [[noreturn]] void fail_at(size_t at, const std::string& msg) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && i < s_.size(); ++i) {
      if (s_[i] == '\n') ++line, col = 1;
      else ++col;
    }
    HYDRA_CHECK(false, "Json::parse: at byte offset {} (line {}, column {}): {}", at, line, col, msg);
    std::abort();  // unreachable
  }
  [[noreturn]] void fail(const std::string& msg) const { fail_at(pos_, msg); }

  std::string describe() const {
    if (pos_ >= s_.size()) return "end of input";
    const auto c = static_cast<unsigned char>(s_[pos_]);
    if (c >= 0x20 && c < 0x7f) return fmt::format("'{}'", static_cast<char>(c));
    return fmt::format("byte 0x{:02x}", static_cast<unsigned>(c));
  }

  bool at_end() const { return pos_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[pos_]; }

  void skip_ws() {
    while (!at_end() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }

  void expect(char c, const char* what) {
    if (peek() != c || at_end()) fail(fmt::format("expected {}, got {}", what, describe()));
    ++pos_;
  }

  Json parse_value(int depth) {
    if (depth > kMaxDepth) fail(fmt::format("nesting deeper than {} levels", kMaxDepth));
    if (at_end()) fail("expected a value, got end of input");
    switch (s_[pos_]) {
      case '{': return parse_object(depth);
      case '[': return parse_array(depth);
      case '"': return Json(parse_string());
      case 't': parse_literal("true"); return Json(true);
      case 'f': parse_literal("false"); return Json(false);
      case 'n': parse_literal("null"); return Json();
      default:
        if (s_[pos_] == '-' || (s_[pos_] >= '0' && s_[pos_] <= '9')) return Json(parse_number());
        fail("expected a value (object, array, string, number, true, false or null), got " + describe());
    }
  }

  void parse_literal(const std::string& word) {
    if (s_.compare(pos_, word.size(), word) != 0) fail(fmt::format("expected '{}'", word));
    pos_ += word.size();
  }

  Json parse_object(int depth) {
    ++pos_;  // '{'
    Json obj = Json::object();
    std::unordered_set<std::string> seen;
    skip_ws();
    if (peek() == '}' && !at_end()) {
      ++pos_;
      return obj;
    }
    while (true) {
      skip_ws();
      if (peek() != '"' || at_end()) fail("expected a string key, got " + describe());
      const size_t key_at = pos_;
      std::string key = parse_string();
      if (!seen.insert(key).second) {
        std::string shown;
        dump_string(shown, key);
        fail_at(key_at, "duplicate key " + shown + " in object");
      }
      skip_ws();
      expect(':', "':' after an object key");
      skip_ws();
      obj[key] = parse_value(depth + 1);
      skip_ws();
      if (peek() == ',' && !at_end()) {
        ++pos_;
        continue;
      }
      expect('}', "',' or '}' in an object");
      return obj;
    }
  }

  Json parse_array(int depth) {
    ++pos_;  // '['
    Json arr = Json::array();
    skip_ws();
    if (peek() == ']' && !at_end()) {
      ++pos_;
      return arr;
    }
    while (true) {
      skip_ws();
      arr.push_back(parse_value(depth + 1));
      skip_ws();
      if (peek() == ',' && !at_end()) {
        ++pos_;
        continue;
      }
      expect(']', "',' or ']' in an array");
      return arr;
    }
  }

  unsigned hex4() {
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      if (at_end()) fail("expected 4 hex digits after \\u, got end of input");
      const char c = s_[pos_];
      unsigned d;
      if (c >= '0' && c <= '9') d = c - '0';
      else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      else fail("expected 4 hex digits after \\u, got " + describe());
      v = v * 16 + d;
      ++pos_;
    }
    return v;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // One UTF-8 encoded code point starting at pos_ (lead byte ≥ 0x80): checked (no overlong forms, no
  // surrogates, ≤ U+10FFFF) and copied.
  void copy_utf8(std::string& out) {
    const size_t start = pos_;
    const auto b0 = static_cast<unsigned char>(s_[pos_]);
    int len;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b0 >= 0xC2 && b0 <= 0xDF) len = 2;
    else if (b0 >= 0xE0 && b0 <= 0xEF) len = 3, lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
    else if (b0 >= 0xF0 && b0 <= 0xF4) len = 4, lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
    else fail(fmt::format("invalid UTF-8 lead byte 0x{:02x} in string", static_cast<unsigned>(b0)));
    for (int i = 1; i < len; ++i) {
      if (start + i >= s_.size()) fail_at(start, "truncated UTF-8 sequence in string");
      const auto b = static_cast<unsigned char>(s_[start + i]);
      const unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
      if (b < l || b > h) fail_at(start + i, fmt::format("invalid UTF-8 continuation byte 0x{:02x} in string",
                                                         static_cast<unsigned>(b)));
    }
    out.append(s_, start, len);
    pos_ = start + len;
  }

  std::string parse_string() {
    const size_t open = pos_;
    ++pos_;  // '"'
    std::string out;
    while (true) {
      if (at_end()) fail_at(open, "unterminated string");
      const auto c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) fail(fmt::format("unescaped control character 0x{:02x} in string", static_cast<unsigned>(c)));
      if (c >= 0x80) {
        copy_utf8(out);
        continue;
      }
      if (c != '\\') {
        out += static_cast<char>(c);
        ++pos_;
        continue;
      }
      const size_t esc_at = pos_;
      ++pos_;
      if (at_end()) fail_at(open, "unterminated string");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) fail_at(esc_at, "lone low surrogate \\u escape in string");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.compare(pos_, 2, "\\u") != 0) fail_at(esc_at, "high surrogate \\u escape not followed by a low one");
            pos_ += 2;
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail_at(esc_at, "high surrogate \\u escape not followed by a low one");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: pos_ = esc_at; fail(fmt::format("invalid escape '\\{}' in string", e));
      }
    }
  }

  double parse_number() {
    const size_t start = pos_;
    auto digit = [&] { return !at_end() && s_[pos_] >= '0' && s_[pos_] <= '9'; };
    if (peek() == '-') ++pos_;
    if (!digit()) fail("expected a digit, got " + describe());
    if (s_[pos_] == '0') {
      ++pos_;
      if (digit()) fail_at(start, "number with a leading zero");
    } else {
      while (digit()) ++pos_;
    }
    if (peek() == '.' && !at_end()) {
      ++pos_;
      if (!digit()) fail("expected a digit after '.', got " + describe());
      while (digit()) ++pos_;
    }
    if (!at_end() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (!at_end() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (!digit()) fail("expected a digit in the exponent, got " + describe());
      while (digit()) ++pos_;
    }
    double v = 0;
    const auto r = std::from_chars(s_.data() + start, s_.data() + pos_, v);
    if (r.ec != std::errc() || r.ptr != s_.data() + pos_)
      fail_at(start, fmt::format("number {} is out of the range of a double", s_.substr(start, pos_ - start)));
    return v;
  }

  const std::string& s_;
  size_t pos_ = 0;
};

}  // namespace

// ---- Json -------------------------------------------------------------------------------------------------

Json::Json(long v) : Json(static_cast<long long>(v)) {}
Json::Json(long long v) : type_(Type::Number) {
  HYDRA_CHECK(v >= -kExactInt && v <= kExactInt,
              "Json: integer {} has magnitude above 2^53 and cannot be stored exactly as a JSON number; store it "
              "as a string",
              v);
  num_ = static_cast<double>(v);
}
Json::Json(unsigned long v) : Json(static_cast<unsigned long long>(v)) {}
Json::Json(unsigned long long v) : type_(Type::Number) {
  HYDRA_CHECK(v <= static_cast<unsigned long long>(kExactInt),
              "Json: integer {} is above 2^53 and cannot be stored exactly as a JSON number; store it as a string",
              v);
  num_ = static_cast<double>(v);
}
Json::Json(const char* s) : type_(Type::String) {
  HYDRA_CHECK(s != nullptr, "Json: constructed from a null const char*");
  str_ = s;
}

Json Json::object() {
  Json j;
  j.type_ = Type::Object;
  return j;
}
Json Json::array() {
  Json j;
  j.type_ = Type::Array;
  return j;
}
Json Json::parse(const std::string& text) { return Parser(text).parse_document(); }

const char* Json::type_name() const { return type_name_of(type_); }

bool Json::as_bool() const {
  HYDRA_CHECK(is_bool(), "Json::as_bool: expected a bool, got {}", type_name());
  return bool_;
}
double Json::as_number() const {
  HYDRA_CHECK(is_number(), "Json::as_number: expected a number, got {}", type_name());
  return num_;
}
int64_t Json::as_int64() const {
  HYDRA_CHECK(is_number(), "Json::as_int64: expected a number, got {}", type_name());
  HYDRA_CHECK(num_ == std::trunc(num_) && std::fabs(num_) <= kExact,
              "Json::as_int64: {} is not an integer of magnitude at most 2^53", num_);
  return static_cast<int64_t>(num_);
}
const std::string& Json::as_string() const {
  HYDRA_CHECK(is_string(), "Json::as_string: expected a string, got {}", type_name());
  return str_;
}

Json& Json::operator[](const std::string& key) {
  if (is_null()) type_ = Type::Object;
  HYDRA_CHECK(is_object(), "Json::operator[](\"{}\"): expected an object, got {}", key, type_name());
  for (auto& kv : obj_)
    if (kv.first == key) return kv.second;
  obj_.emplace_back(key, Json());
  return obj_.back().second;
}

const Json& Json::at(const std::string& key) const {
  HYDRA_CHECK(is_object(), "Json::at(\"{}\"): expected an object, got {}", key, type_name());
  for (const auto& kv : obj_)
    if (kv.first == key) return kv.second;
  std::string have;
  for (const auto& kv : obj_) have += (have.empty() ? "" : ", ") + kv.first;
  HYDRA_CHECK(false, "Json::at: no key \"{}\" in the object (keys: {})", key, have.empty() ? "none" : have);
  std::abort();  // unreachable
}
Json& Json::at(const std::string& key) { return const_cast<Json&>(static_cast<const Json&>(*this).at(key)); }

bool Json::contains(const std::string& key) const {
  HYDRA_CHECK(is_object(), "Json::contains(\"{}\"): expected an object, got {}", key, type_name());
  for (const auto& kv : obj_)
    if (kv.first == key) return true;
  return false;
}

std::vector<std::string> Json::keys() const {
  HYDRA_CHECK(is_object(), "Json::keys: expected an object, got {}", type_name());
  std::vector<std::string> k;
  k.reserve(obj_.size());
  for (const auto& kv : obj_) k.push_back(kv.first);
  return k;
}

const Json::Object& Json::items() const {
  HYDRA_CHECK(is_object(), "Json::items: expected an object, got {}", type_name());
  return obj_;
}

void Json::push_back(Json v) {
  if (is_null()) type_ = Type::Array;
  HYDRA_CHECK(is_array(), "Json::push_back: expected an array, got {}", type_name());
  arr_.push_back(std::move(v));
}

const Json& Json::at(size_t index) const {
  HYDRA_CHECK(is_array(), "Json::at({}): expected an array, got {}", index, type_name());
  HYDRA_CHECK(index < arr_.size(), "Json::at: index {} out of range for an array of size {}", index, arr_.size());
  return arr_[index];
}
Json& Json::at(size_t index) { return const_cast<Json&>(static_cast<const Json&>(*this).at(index)); }

const Json::Array& Json::elements() const {
  HYDRA_CHECK(is_array(), "Json::elements: expected an array, got {}", type_name());
  return arr_;
}

size_t Json::size() const {
  HYDRA_CHECK(is_array() || is_object(), "Json::size: expected an array or object, got {}", type_name());
  return is_array() ? arr_.size() : obj_.size();
}

std::string Json::dump(int indent) const {
  std::string out;
  dump_to(out, indent, 0);
  return out;
}

void Json::dump_to(std::string& out, int indent, int depth) const {
  switch (type_) {
    case Type::Null: out += "null"; return;
    case Type::Bool: out += bool_ ? "true" : "false"; return;
    case Type::Number: dump_number(out, num_); return;
    case Type::String: dump_string(out, str_); return;
    case Type::Array:
      if (arr_.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < arr_.size(); ++i) {
        if (i) out += indent > 0 ? "," : ", ";
        if (indent > 0) newline_indent(out, indent, depth + 1);
        arr_[i].dump_to(out, indent, depth + 1);
      }
      if (indent > 0) newline_indent(out, indent, depth);
      out += ']';
      return;
    case Type::Object:
      if (obj_.empty()) {
        out += "{}";
        return;
      }
      out += '{';
      for (size_t i = 0; i < obj_.size(); ++i) {
        if (i) out += indent > 0 ? "," : ", ";
        if (indent > 0) newline_indent(out, indent, depth + 1);
        dump_string(out, obj_[i].first);
        out += ": ";
        obj_[i].second.dump_to(out, indent, depth + 1);
      }
      if (indent > 0) newline_indent(out, indent, depth);
      out += '}';
      return;
  }
}

bool operator==(const Json& a, const Json& b) {
  if (a.type_ != b.type_) return false;
  switch (a.type_) {
    case Json::Type::Null: return true;
    case Json::Type::Bool: return a.bool_ == b.bool_;
    case Json::Type::Number: return a.num_ == b.num_;
    case Json::Type::String: return a.str_ == b.str_;
    case Json::Type::Array: return a.arr_ == b.arr_;
    case Json::Type::Object: return a.obj_ == b.obj_;
  }
  return false;
}

// ---- SVG helpers ------------------------------------------------------------------------------------------

std::string xml_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

// matplotlib's tab10: distinct series colours.
constexpr std::array<const char*, 10> kPalette = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
const char* const kDash = "\u2013";  // "–", printed for NaN (not run)

// Approximate rendered width of a label in px (sans-serif at `size` px): code points × 0.6 size.
double text_width(const std::string& s, double size = 12) {
  size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return 0.6 * size * static_cast<double>(n);
}

std::string svg_open(double W, double H, const std::string& title) {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0f}\" height=\"{:.0f}\" viewBox=\"0 0 {:.0f} {:.0f}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{:.1f}\" y=\"22\" text-anchor=\"middle\" font-size=\"13\">{}</text>\n",
      W, H, W, H, W / 2, xml_escape(title));
}

std::string no_data_svg(const std::string& title) {
  const double W = std::max(360.0, text_width(title, 13) + 40), H = 200;
  return svg_open(W, H, title) +
         fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">no data</text>\n</svg>\n", W / 2, H / 2);
}

// "0.973", "12.5", "1234"; "–" for NaN.
std::string value_label(double v) {
  if (std::isnan(v)) return kDash;
  if (std::fabs(v) >= 1000) return fmt::format("{:.0f}", v);
  return fmt::format("{:.3g}", v);
}

// A linear axis from lo to hi with ticks every `step` (a 1, 2, 2.5 or 5 × 10^k), labelled with `decimals`.
struct Axis {
  double lo, hi, step;
  int decimals;
  std::vector<double> ticks() const {
    std::vector<double> t;
    const double first = std::ceil(lo / step - 1e-9) * step;
    for (int i = 0; i < 1000; ++i) {
      const double v = first + i * step;
      if (v > hi + 1e-9 * step) break;
      t.push_back(v);
    }
    return t;
  }
  std::string label(double v) const {
    const double p = std::pow(10.0, decimals);
    double r = std::round(v * p) / p;
    if (r == 0) r = 0;  // no "-0"
    return fmt::format("{:.{}f}", r, decimals);
  }
};

double nice_step(double raw) {
  const double e = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / e;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * e;
}

int decimals_for(double step) {
  int d = 0;
  while (d < 10) {
    const double s = step * std::pow(10.0, d);
    if (std::fabs(s - std::round(s)) < 1e-6 * std::max(1.0, s)) break;
    ++d;
  }
  return d;
}

// Round bounds enclosing [lo, hi] (about 5 intervals).
Axis auto_axis(double lo, double hi) {
  if (!(hi > lo)) {
    const double d = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    lo -= d, hi += d;
  }
  const double step = nice_step((hi - lo) / 5);
  return {std::floor(lo / step + 1e-9) * step, std::ceil(hi / step - 1e-9) * step, step, decimals_for(step)};
}

// y axis of a bar chart: from min(0, smallest value) to y_max when y_max > 0, else to a round top.
Axis bar_axis(double vmin, double vmax, double y_max) {
  const double lo = std::min(0.0, vmin);
  if (y_max > 0) {
    const double step = nice_step((y_max - lo) / 5);
    return {lo < 0 ? std::floor(lo / step + 1e-9) * step : 0.0, y_max, step, decimals_for(step)};
  }
  double hi = std::max(0.0, vmax);
  if (hi <= lo) hi = lo + 1;  // all zero or all NaN: show [0, 1]
  return auto_axis(lo, hi);
}

// The framed plot area with horizontal grid lines, y tick labels and the rotated y-axis title.
std::string y_frame(double ml, double mt, double pw, double ph, const Axis& ax, const std::string& y_axis) {
  auto Y = [&](double y) { return mt + (ax.hi - y) / (ax.hi - ax.lo) * ph; };
  std::string svg;
  for (const double t : ax.ticks()) {
    svg += fmt::format("<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", ml,
                       ml + pw, Y(t), Y(t));
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", ml - 6, Y(t) + 4,
                       ax.label(t));
  }
  svg += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" "
                     "stroke=\"#444\"/>\n",
                     ml, mt, pw, ph);
  const double cy = mt + ph / 2;
  svg += fmt::format("<text x=\"16\" y=\"{:.1f}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1f})\">{}"
                     "</text>\n",
                     cy, cy, xml_escape(y_axis));
  return svg;
}

// Category labels under the x axis at the given centres; rotated by 35° when wider than a slot.
std::string x_category_labels(const std::vector<std::string>& labels, const std::vector<double>& centres,
                              double y, bool rotate) {
  std::string svg;
  for (size_t i = 0; i < labels.size(); ++i) {
    if (rotate)
      svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\" transform=\"rotate(-35 {:.1f} "
                         "{:.1f})\">{}</text>\n",
                         centres[i], y, centres[i], y, xml_escape(labels[i]));
    else
      svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", centres[i], y,
                         xml_escape(labels[i]));
  }
  return svg;
}

double max_text_width(const std::vector<std::string>& v, double size = 12) {
  double w = 0;
  for (const auto& s : v) w = std::max(w, text_width(s, size));
  return w;
}

// Checks bar values: finite or NaN, and ≤ y_max when y_max > 0. Returns the finite min and max (0, 0 if none).
std::pair<double, double> check_bar_values(const char* fn, const std::vector<double>& values,
                                           const std::vector<std::string>& names, double y_max,
                                           const std::string& series = "") {
  HYDRA_CHECK(!std::isinf(y_max), "{}: y_max is {}; pass a positive limit or ≤ 0 for automatic", fn, y_max);
  double lo = 0, hi = 0;
  bool any = false;
  for (size_t i = 0; i < values.size(); ++i) {
    const double v = values[i];
    if (std::isnan(v)) continue;
    HYDRA_CHECK(std::isfinite(v), "{}: value {} for '{}'{} is not finite (NaN marks a value not run)", fn, v,
                names[i], series);
    HYDRA_CHECK(!(y_max > 0) || v <= y_max, "{}: value {} for '{}'{} is above y_max {}", fn, v, names[i], series,
                y_max);
    lo = any ? std::min(lo, v) : v, hi = any ? std::max(hi, v) : v, any = true;
  }
  return {lo, hi};
}

// The value printed at a bar: above its top (below for negative values), or inside in white when the top is too
// close to the frame; "–" at the baseline for NaN.
std::string bar_value_text(double x, double v, double y_zero, double y_top, double frame_top, int size) {
  double y = y_zero - 4;
  const char* fill = "";
  if (!std::isnan(v)) {
    if (v < 0) y = y_top + size + 2;
    else if (y_top - frame_top < size + 3) y = y_top + size + 2, fill = " fill=\"white\"";
    else y = y_top - 4;
  }
  return fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"{}\"{}>{}</text>\n", x, y,
                     size, fill, value_label(v));
}

// ColorBrewer RdYlGn (5 classes), interpolated linearly in RGB.
constexpr std::array<std::array<int, 3>, 5> kRdYlGn = {
    {{215, 25, 28}, {253, 174, 97}, {255, 255, 191}, {166, 217, 106}, {26, 150, 65}}};

std::array<int, 3> rdylgn(double v) {
  const double x = std::clamp(v, 0.0, 1.0) * 4;
  const int i = std::min(3, static_cast<int>(x));
  const double f = x - i;
  std::array<int, 3> c{};
  for (int k = 0; k < 3; ++k)
    c[k] = static_cast<int>(std::lround(kRdYlGn[i][k] + f * (kRdYlGn[i + 1][k] - kRdYlGn[i][k])));
  return c;
}

std::string hex_colour(const std::array<int, 3>& c) { return fmt::format("#{:02x}{:02x}{:02x}", c[0], c[1], c[2]); }

}  // namespace

// ---- heatmap ----------------------------------------------------------------------------------------------

std::string heatmap_svg(const std::string& title, const std::vector<std::string>& row_labels,
                        const std::vector<std::string>& col_labels, const std::vector<std::vector<double>>& values,
                        const std::string& row_axis, const std::string& col_axis) {
  const size_t R = row_labels.size(), C = col_labels.size();
  HYDRA_CHECK(values.size() == R, "heatmap_svg: {} row labels but {} rows of values", R, values.size());
  for (size_t r = 0; r < R; ++r) {
    HYDRA_CHECK(values[r].size() == C, "heatmap_svg: row {} ('{}') has {} values but there are {} column labels",
                r, row_labels[r], values[r].size(), C);
    for (size_t c = 0; c < C; ++c) {
      const double v = values[r][c];
      HYDRA_CHECK(std::isnan(v) || (v >= 0 && v <= 1),
                  "heatmap_svg: value {} at row {} ('{}'), column {} ('{}') is outside [0, 1] (NaN marks a cell "
                  "not run)",
                  v, r, row_labels[r], c, col_labels[c]);
    }
  }
  if (R == 0 || C == 0) return no_data_svg(title);

  const double cw = std::clamp(640.0 / C, 44.0, 90.0), ch = std::clamp(360.0 / R, 26.0, 48.0);
  const double gw = cw * C, gh = ch * R;
  const double col_w = max_text_width(col_labels);
  const bool rotate = col_w > cw - 6;
  // Room for the row labels, and for the first rotated column label, which reaches left of its cell.
  const double ml = std::max(34 + max_text_width(row_labels) + 10, rotate ? 0.82 * col_w - cw / 2 + 10 : 0.0);
  const double mt = 44;
  const double label_h = rotate ? col_w * 0.58 + 14 : 18;  // sin 35° ≈ 0.57
  const double mb = label_h + 34;
  const double lx = ml + gw + 24, lw = 16, lh = std::max(gh, 100.0);
  const double W = std::max(lx + lw + 4 + text_width("\u2013 not run", 11) + 10, text_width(title, 13) + 40);
  const double H = mt + std::max(gh + mb, lh + 34);

  bool any_nan = false;
  for (const auto& row : values)
    for (const double v : row) any_nan |= std::isnan(v);

  std::string svg = svg_open(W, H, title);
  svg += "<defs><linearGradient id=\"rdylgn\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">";
  for (size_t k = 0; k < kRdYlGn.size(); ++k)
    svg += fmt::format("<stop offset=\"{}\" stop-color=\"{}\"/>", static_cast<double>(k) / 4, hex_colour(kRdYlGn[k]));
  svg += "</linearGradient></defs>\n";

  for (size_t r = 0; r < R; ++r) {
    const double y = mt + r * ch;
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", ml - 6, y + ch / 2 + 4,
                       xml_escape(row_labels[r]));
    for (size_t c = 0; c < C; ++c) {
      const double x = ml + c * cw, v = values[r][c];
      const bool nan = std::isnan(v);
      const std::array<int, 3> rgb = nan ? std::array<int, 3>{238, 238, 238} : rdylgn(v);
      const double lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
      svg += fmt::format("<rect class=\"cell\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" "
                         "fill=\"{}\" stroke=\"white\"/>\n",
                         x, y, cw, ch, hex_colour(rgb));
      svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" fill=\"{}\">{}</text>\n",
                         x + cw / 2, y + ch / 2 + 4, lum < 140 ? "white" : "#222",
                         nan ? std::string(kDash) : fmt::format("{:.2f}", v));
    }
  }
  std::vector<double> centres(C);
  for (size_t c = 0; c < C; ++c) centres[c] = ml + (c + 0.5) * cw;
  svg += x_category_labels(col_labels, centres, mt + gh + 16, rotate);
  svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", ml + gw / 2, H - 12,
                     xml_escape(col_axis));
  const double cy = mt + gh / 2;
  svg += fmt::format("<text x=\"16\" y=\"{:.1f}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1f})\">{}"
                     "</text>\n",
                     cy, cy, xml_escape(row_axis));

  // Colour legend: the gradient bar with 0, 0.5 and 1 marked; a grey swatch for "not run" when present.
  svg += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"url(#rdylgn)\" "
                     "stroke=\"#444\"/>\n",
                     lx, mt, lw, lh);
  for (const double t : {0.0, 0.5, 1.0}) {
    const double y = mt + (1 - t) * lh;
    svg += fmt::format("<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#444\"/>"
                       "<text x=\"{:.1f}\" y=\"{:.1f}\">{:.1f}</text>\n",
                       lx + lw, lx + lw + 4, y, y, lx + lw + 6, y + 4, t);
  }
  if (any_nan)
    svg += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"12\" fill=\"#eeeeee\" "
                       "stroke=\"#444\"/><text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\">{} not run</text>\n",
                       lx, mt + lh + 14, lw, lx + lw + 4, mt + lh + 24, kDash);
  return svg + "</svg>\n";
}

// ---- bar charts -------------------------------------------------------------------------------------------

std::string bar_chart_svg(const std::string& title, const std::vector<std::string>& labels,
                          const std::vector<double>& values, const std::string& y_axis, double y_max) {
  HYDRA_CHECK(labels.size() == values.size(), "bar_chart_svg: {} labels but {} values", labels.size(),
              values.size());
  const auto [vmin, vmax] = check_bar_values("bar_chart_svg", values, labels, y_max);
  const size_t n = labels.size();
  if (n == 0) return no_data_svg(title);

  const double slot0 = std::clamp(560.0 / n, 28.0, 90.0);
  const double lw = max_text_width(labels);
  const bool rotate = lw > slot0 - 6;
  const double ml = std::max(70.0, rotate ? 0.82 * lw - slot0 / 2 + 10 : 0.0), mr = 20, mt = 40;
  const double W = std::max({ml + slot0 * n + mr, 360.0, text_width(title, 13) + 40});
  const double pw = W - ml - mr, slot = pw / n, ph = 300;
  const double mb = rotate ? lw * 0.58 + 24 : 34;
  const double H = mt + ph + mb;
  const Axis ax = bar_axis(vmin, vmax, y_max);
  auto Y = [&](double y) { return mt + (ax.hi - y) / (ax.hi - ax.lo) * ph; };

  std::string svg = svg_open(W, H, title) + y_frame(ml, mt, pw, ph, ax, y_axis);
  std::vector<double> centres(n);
  const double bw = slot * 0.7;
  for (size_t i = 0; i < n; ++i) {
    centres[i] = ml + (i + 0.5) * slot;
    const double v = values[i];
    if (!std::isnan(v)) {
      const double y0 = Y(0), y1 = Y(v);
      svg += fmt::format("<rect class=\"bar\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" "
                         "fill=\"{}\"/>\n",
                         centres[i] - bw / 2, std::min(y0, y1), bw, std::fabs(y0 - y1), kPalette[0]);
    }
    svg += bar_value_text(centres[i], v, Y(0), Y(v), mt, 11);
  }
  if (ax.lo < 0)
    svg += fmt::format("<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#444\"/>\n", ml,
                       ml + pw, Y(0), Y(0));
  svg += x_category_labels(labels, centres, mt + ph + 16, rotate);
  return svg + "</svg>\n";
}

std::string grouped_bar_chart_svg(const std::string& title, const std::vector<std::string>& groups,
                                  const std::vector<std::string>& series,
                                  const std::vector<std::vector<double>>& values, const std::string& y_axis,
                                  double y_max) {
  const size_t G = groups.size(), S = series.size();
  HYDRA_CHECK(values.size() == S, "grouped_bar_chart_svg: {} series names but {} rows of values", S,
              values.size());
  double vmin = 0, vmax = 0;
  for (size_t s = 0; s < S; ++s) {
    HYDRA_CHECK(values[s].size() == G, "grouped_bar_chart_svg: series {} ('{}') has {} values but there are {} groups",
                s, series[s], values[s].size(), G);
    const auto [lo, hi] =
        check_bar_values("grouped_bar_chart_svg", values[s], groups, y_max, fmt::format(" in series '{}'", series[s]));
    vmin = std::min(vmin, lo), vmax = std::max(vmax, hi);
  }
  if (G == 0 || S == 0) return no_data_svg(title);

  const double legend_w = max_text_width(series) + 40;
  const double slot0 = std::max(24.0 * S + 12, std::min(560.0 / G, 200.0));
  const double lw = max_text_width(groups);
  const bool rotate = lw > slot0 - 6;
  const double ml = std::max(70.0, rotate ? 0.82 * lw - slot0 / 2 + 10 : 0.0), mt = 40, mr = 20 + legend_w;
  const double W = std::max({ml + slot0 * G + mr, 420.0, text_width(title, 13) + 40});
  const double pw = W - ml - mr, slot = pw / G, ph = 300;
  const double mb = rotate ? lw * 0.58 + 24 : 34;
  const double H = std::max(mt + ph + mb, mt + 20.0 * S + 20);
  const Axis ax = bar_axis(vmin, vmax, y_max);
  auto Y = [&](double y) { return mt + (ax.hi - y) / (ax.hi - ax.lo) * ph; };

  std::string svg = svg_open(W, H, title) + y_frame(ml, mt, pw, ph, ax, y_axis);
  const double bw = slot * 0.8 / S;
  const bool show_values = bw >= 26;
  std::vector<double> centres(G);
  for (size_t g = 0; g < G; ++g) {
    centres[g] = ml + (g + 0.5) * slot;
    for (size_t s = 0; s < S; ++s) {
      const double v = values[s][g], x = ml + g * slot + slot * 0.1 + s * bw;
      if (!std::isnan(v)) {
        const double y0 = Y(0), y1 = Y(v);
        svg += fmt::format("<rect class=\"bar\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" "
                           "fill=\"{}\"/>\n",
                           x, std::min(y0, y1), bw, std::fabs(y0 - y1), kPalette[s % kPalette.size()]);
      }
      if (show_values) {
        svg += bar_value_text(x + bw / 2, v, Y(0), Y(v), mt, 10);
      }
    }
  }
  if (ax.lo < 0)
    svg += fmt::format("<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#444\"/>\n", ml,
                       ml + pw, Y(0), Y(0));
  svg += x_category_labels(groups, centres, mt + ph + 16, rotate);
  const double lx = ml + pw + 14;
  for (size_t s = 0; s < S; ++s) {
    const double y = mt + 8 + 20.0 * s;
    svg += fmt::format("<rect class=\"legend\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"12\" height=\"12\" fill=\"{}\"/>"
                       "<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n",
                       lx, y, kPalette[s % kPalette.size()], lx + 18, y + 10, xml_escape(series[s]));
  }
  return svg + "</svg>\n";
}

// ---- line chart -------------------------------------------------------------------------------------------

std::string line_chart_svg(const std::string& title, const std::string& x_label, const std::string& y_label,
                           const std::vector<std::string>& series,
                           const std::vector<std::vector<std::pair<double, double>>>& points, double y_max) {
  const size_t S = series.size();
  HYDRA_CHECK(points.size() == S, "line_chart_svg: {} series names but {} point lists", S, points.size());
  HYDRA_CHECK(!std::isinf(y_max), "line_chart_svg: y_max is {}; pass a positive limit or ≤ 0 for automatic", y_max);
  double x0 = 0, x1 = 0, y0 = 0, y1 = 0;
  bool any_x = false, any_y = false;
  for (size_t s = 0; s < S; ++s)
    for (size_t i = 0; i < points[s].size(); ++i) {
      const auto [x, y] = points[s][i];
      HYDRA_CHECK(std::isfinite(x), "line_chart_svg: point {} of series {} ('{}') has x = {}; x must be finite", i,
                  s, series[s], x);
      HYDRA_CHECK(!std::isinf(y), "line_chart_svg: point {} of series {} ('{}') has y = {}; y must be finite or NaN",
                  i, s, series[s], y);
      HYDRA_CHECK(!(y_max > 0) || std::isnan(y) || y <= y_max,
                  "line_chart_svg: point {} of series {} ('{}') has y = {} above y_max {}", i, s, series[s], y, y_max);
      x0 = any_x ? std::min(x0, x) : x, x1 = any_x ? std::max(x1, x) : x, any_x = true;
      if (!std::isnan(y)) y0 = any_y ? std::min(y0, y) : y, y1 = any_y ? std::max(y1, y) : y, any_y = true;
    }
  if (!any_x) return no_data_svg(title);

  const double legend_w = max_text_width(series) + 44;
  const double ml = 70, mt = 40, mr = 20 + legend_w, mb = 50;
  const double W = std::max({760.0, text_width(title, 13) + 40}), H = std::max(420.0, mt + 20.0 * S + 20 + mb);
  const double pw = W - ml - mr, ph = H - mt - mb;
  Axis ay = auto_axis(any_y ? y0 : 0, any_y ? y1 : 1);
  if (y_max > 0) {
    const double lo = std::min(0.0, any_y ? y0 : 0.0), step = nice_step((y_max - lo) / 5);
    ay = {lo < 0 ? std::floor(lo / step + 1e-9) * step : 0.0, y_max, step, decimals_for(step)};
  }
  const Axis ax = auto_axis(x0, x1);
  auto X = [&](double x) { return ml + (x - ax.lo) / (ax.hi - ax.lo) * pw; };
  auto Y = [&](double y) { return mt + (ay.hi - y) / (ay.hi - ay.lo) * ph; };

  std::string svg = svg_open(W, H, title) + y_frame(ml, mt, pw, ph, ay, y_label);
  for (const double t : ax.ticks())
    svg += fmt::format("<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#444\"/>"
                       "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n",
                       X(t), X(t), mt + ph, mt + ph + 4, X(t), mt + ph + 18, ax.label(t));
  svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", ml + pw / 2, H - 12,
                     xml_escape(x_label));

  const double lx = ml + pw + 14;
  for (size_t s = 0; s < S; ++s) {
    const char* colour = kPalette[s % kPalette.size()];
    const std::string dash = s >= kPalette.size() ? " stroke-dasharray=\"6 3\"" : "";
    std::string seg;
    size_t seg_points = 0;
    auto flush = [&] {
      if (seg_points >= 2)
        svg += fmt::format("<polyline class=\"series\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"{} "
                           "points=\"{}\"/>\n",
                           colour, dash, seg.substr(0, seg.size() - 1));
      seg.clear(), seg_points = 0;
    };
    for (const auto& [x, y] : points[s]) {
      if (std::isnan(y)) {
        flush();
        continue;
      }
      seg += fmt::format("{:.1f},{:.1f} ", X(x), Y(y));
      ++seg_points;
      svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", X(x), Y(y), colour);
    }
    flush();
    const double y = mt + 14 + 20.0 * s;
    svg += fmt::format("<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" "
                       "stroke-width=\"2\"{}/><text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n",
                       lx, lx + 24, y, y, colour, dash, lx + 30, y + 4, xml_escape(series[s]));
  }
  return svg + "</svg>\n";
}

// ---- markdown ---------------------------------------------------------------------------------------------

std::string markdown_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  HYDRA_CHECK(!header.empty(), "markdown_table: the header has no columns");
  auto cell = [](const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      const char c = s[i];
      if (c == '|') out += "\\|";
      else if (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') continue;  // \r\n: one space, from the \n
      else if (c == '\n' || c == '\r') out += ' ';
      else out += c;
    }
    return out;
  };
  auto line = [&](const std::vector<std::string>& cells) {
    std::string l = "|";
    for (const auto& c : cells) {
      l += ' ';
      l += cell(c);
      l += " |";
    }
    return l + "\n";
  };
  std::string out = line(header) + "|";
  for (size_t i = 0; i < header.size(); ++i) out += " --- |";
  out += "\n";
  for (size_t r = 0; r < rows.size(); ++r) {
    HYDRA_CHECK(rows[r].size() == header.size(), "markdown_table: row {} has {} cells but the header has {}", r,
                rows[r].size(), header.size());
    out += line(rows[r]);
  }
  return out;
}

}  // namespace hydra::eval
