// eval/report.h: JSON dump layout, numbers, escapes, order and in-place replacement; strict parsing with byte
// offsets; SVG charts (well-formed, one rect per cell or bar, printed values, escaped text, size errors); markdown.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "eval/report.h"
#include "tests/test_util.h"

using namespace hydra::eval;
using hydra::test::check_throws_with;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + what.size())) ++n;
  return n;
}

// Minimal XML well-formedness: balanced, properly nested tags; no '<' or stray '&' in text or attributes.
// Returns "" when fine, else what is wrong.
std::string xml_problem(const std::string& s) {
  std::vector<std::string> open;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == '&') {
      bool ok = false;
      for (const char* e : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"})
        ok |= s.compare(i, std::char_traits<char>::length(e), e) == 0;
      if (!ok) return "stray '&' at " + std::to_string(i);
      ++i;
      continue;
    }
    if (s[i] == '>') return "stray '>' at " + std::to_string(i);
    if (s[i] != '<') {
      ++i;
      continue;
    }
    const size_t end = s.find('>', i);
    if (end == std::string::npos) return "unclosed tag at " + std::to_string(i);
    const std::string tag = s.substr(i + 1, end - i - 1);
    if (tag.find('<') != std::string::npos) return "'<' inside tag at " + std::to_string(i);
    if (count(tag, "\"") % 2 != 0) return "unbalanced quotes in tag at " + std::to_string(i);
    for (size_t a = tag.find('&'); a != std::string::npos; a = tag.find('&', a + 1)) {
      bool ok = false;
      for (const char* e : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"})
        ok |= tag.compare(a, std::char_traits<char>::length(e), e) == 0;
      if (!ok) return "stray '&' in tag at " + std::to_string(i);
    }
    if (tag.rfind("/", 0) == 0) {
      const std::string name = tag.substr(1);
      if (open.empty() || open.back() != name) return "unexpected </" + name + "> at " + std::to_string(i);
      open.pop_back();
    } else if (tag.back() != '/') {
      open.push_back(tag.substr(0, tag.find_first_of(" \n")));
    }
    i = end + 1;
  }
  return open.empty() ? "" : "unclosed <" + open.back() + ">";
}

void check_svg_document(const std::string& svg) {
  CHECK(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
  REQUIRE(svg.size() > 7);
  CHECK(svg.substr(svg.size() - 7) == "</svg>\n");
  CHECK(count(svg, "<svg") == 1);
  CHECK(svg.find("fill=\"white\"") != std::string::npos);
  CHECK(svg.find("font-family=\"sans-serif\"") != std::string::npos);
  CHECK(svg.find("nan") == std::string::npos);
  CHECK(svg.find("inf") == std::string::npos);
  INFO(svg);
  CHECK(xml_problem(svg) == "");
}

}  // namespace

// ---- JSON -------------------------------------------------------------------------------------------------

TEST_CASE("json dump: integers without decimals, shortest doubles, escapes, nesting, order and NaN as null") {
  Json j = Json::object();
  j["int"] = 3;
  j["neg"] = int64_t{-12};
  j["size"] = size_t{7};
  j["zero"] = 0.0;
  j["point_one"] = 0.1;
  j["two_and_half"] = 2.5;
  j["tiny"] = 1e-7;
  j["big"] = 1e20;
  j["third"] = 1.0 / 3.0;
  j["yes"] = true;
  j["none"] = nullptr;
  j["nan"] = kNaN;
  j["inf"] = -std::numeric_limits<double>::infinity();
  j["text"] = "q\"b\\s/\n\t\x01\x1f\u00e9\U0001F600";
  j["list"].push_back(1);
  j["list"].push_back("two");
  j["list"].push_back(Json::array());
  j["list"].push_back(Json::object());
  j["nested"]["a"]["b"] = std::string("deep");
  const std::string expect =
      "{\n"
      "  \"int\": 3,\n"
      "  \"neg\": -12,\n"
      "  \"size\": 7,\n"
      "  \"zero\": 0,\n"
      "  \"point_one\": 0.1,\n"
      "  \"two_and_half\": 2.5,\n"
      "  \"tiny\": 1e-07,\n"
      "  \"big\": 1e+20,\n"
      "  \"third\": 0.3333333333333333,\n"
      "  \"yes\": true,\n"
      "  \"none\": null,\n"
      "  \"nan\": null,\n"
      "  \"inf\": null,\n"
      "  \"text\": \"q\\\"b\\\\s/\\n\\t\\u0001\\u001f\u00e9\U0001F600\",\n"
      "  \"list\": [\n"
      "    1,\n"
      "    \"two\",\n"
      "    [],\n"
      "    {}\n"
      "  ],\n"
      "  \"nested\": {\n"
      "    \"a\": {\n"
      "      \"b\": \"deep\"\n"
      "    }\n"
      "  }\n"
      "}";
  CHECK(j.dump() == expect);
  CHECK(j.dump(4).find("\n            \"b\": \"deep\"\n        }") != std::string::npos);
  CHECK(Json(kNaN).dump() == "null");
  CHECK(Json(std::numeric_limits<double>::infinity()).dump(0) == "null");

  Json small = Json::object();
  small["a"] = 1;
  small["b"].push_back(1.5);
  small["b"].push_back(false);
  small["c"] = Json::object();
  CHECK(small.dump(0) == "{\"a\": 1, \"b\": [1.5, false], \"c\": {}}");
  CHECK(Json::array().dump() == "[]");
  CHECK(Json("x").dump() == "\"x\"");
  CHECK(Json(-0.0).dump() == "0");
  CHECK(Json(9007199254740991.0).dump() == "9007199254740991");
  CHECK(Json(int64_t{-9007199254740992}).as_number() == -9007199254740992.0);
}

TEST_CASE("json objects keep insertion order and replace an existing key in place") {
  Json j;
  j["z"] = 1;
  j["a"] = 2;
  j["m"] = 3;
  j["a"] = "replaced";
  CHECK(j.keys() == std::vector<std::string>{"z", "a", "m"});
  CHECK(j.size() == 3);
  CHECK(j.at("a").as_string() == "replaced");
  CHECK(j.dump(0) == "{\"z\": 1, \"a\": \"replaced\", \"m\": 3}");
  CHECK(j.contains("m"));
  CHECK_FALSE(j.contains("q"));
  j.at("z") = Json::array();
  CHECK(j.at("z").is_array());
  CHECK(j.keys().front() == "z");
}

TEST_CASE("json numbers print as the shortest string that reads back to the same double") {
  const uint64_t seed = hydra::test::base_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  std::vector<double> vals = {0.1, 0.2 + 0.1, 1e-300, 5e-324, 1.7976931348623157e308, -2.5e-5, 123456.789,
                              9007199254740992.0, 9007199254740994.0, 1e15 + 0.5};
  std::uniform_real_distribution<double> u(-1, 1);
  std::uniform_int_distribution<int> e(-30, 30);
  for (int i = 0; i < 200; ++i) vals.push_back(u(rng) * std::pow(10.0, e(rng)));
  for (const double v : vals) {
    const std::string s = Json(v).dump();
    INFO(s);
    CHECK(Json::parse(s).as_number() == v);
    if (v != std::trunc(v) || std::fabs(v) >= 9007199254740992.0) CHECK(s == fmt::format("{}", v));
  }
}

TEST_CASE("json parse reads back a dump: dump, parse, dump is identical") {
  Json j = Json::object();
  j["model"]["d_model"] = 256;
  j["model"]["mixers"].push_back("gdn");
  j["model"]["mixers"].push_back("swa");
  j["lr"] = 3e-4;
  j["ok"] = false;
  j["none"] = Json();
  j["text"] = "tab\tquote\" backslash\\ ctrl\x02 utf8 \u00fc\u4e2d\U0001F600";
  j["matrix"] = Json::array();
  for (int r = 0; r < 3; ++r) {
    Json row = Json::array();
    for (int c = 0; c < 4; ++c) row.push_back(r * 0.25 + c);
    j["matrix"].push_back(row);
  }
  for (const int indent : {2, 0, 3}) {
    const std::string once = j.dump(indent);
    const Json back = Json::parse(once);
    CHECK(back == j);
    CHECK(back.dump(indent) == once);
    CHECK(back.dump() == j.dump());
  }
  const Json p = Json::parse(" {\"s\": \"\\u00e9\\ud83d\\ude00\\/\\b\\f\\r\", \"n\": -0.5e+2, \"e\": 1E2,\n"
                             "\"a\": [ ], \"o\": { }, \"t\": true}\r\n");
  CHECK(p.at("s").as_string() == "\u00e9\U0001F600/\b\f\r");
  CHECK(p.at("n").as_number() == -50.0);
  CHECK(p.at("e").as_int64() == 100);
  CHECK(p.at("a").size() == 0);
  CHECK(p.at("o").size() == 0);
  CHECK(p.at("t").as_bool());
  CHECK(p.keys() == std::vector<std::string>{"s", "n", "e", "a", "o", "t"});
  CHECK(Json::parse("7").as_number() == 7);
  CHECK(Json::parse("null").is_null());
}

TEST_CASE("json parse errors name the byte offset and what was expected") {
  struct Bad {
    std::string text, where, what;
  };
  const std::vector<Bad> bad = {
      {"", "byte offset 0 ", "expected a value"},
      {"{\"a\": 1,}", "byte offset 8 ", "expected a string key, got '}'"},
      {"[1, 2,]", "byte offset 6 ", "expected a value"},
      {"[1, 2", "byte offset 5 ", "expected ',' or ']' in an array, got end of input"},
      {"{\"a\" 1}", "byte offset 5 ", "expected ':' after an object key"},
      {"{\"a\": 1 \"b\": 2}", "byte offset 8 ", "expected ',' or '}' in an object"},
      {"01", "byte offset 0 ", "leading zero"},
      {"-", "byte offset 1 ", "expected a digit"},
      {"1.", "byte offset 2 ", "expected a digit after '.'"},
      {"1e", "byte offset 2 ", "expected a digit in the exponent"},
      {".5", "byte offset 0 ", "expected a value"},
      {"1e400", "byte offset 0 ", "out of the range of a double"},
      {"\"abc", "byte offset 0 ", "unterminated string"},
      {"\"a\x01\"", "byte offset 2 ", "unescaped control character 0x01"},
      {"\"\\x\"", "byte offset 1 ", "invalid escape '\\x'"},
      {"\"\\u12g4\"", "byte offset 5 ", "hex digits"},
      {"\"\\ud800\"", "byte offset 1 ", "high surrogate"},
      {"\"\\udc00\"", "byte offset 1 ", "lone low surrogate"},
      {"\"\xff\"", "byte offset 1 ", "invalid UTF-8 lead byte 0xff"},
      {"\"\xc3(\"", "byte offset 2 ", "invalid UTF-8 continuation byte"},
      {"\"\xed\xa0\x80\"", "byte offset 2 ", "invalid UTF-8 continuation byte"},  // encoded surrogate
      {"\"\xc0\xaf\"", "byte offset 1 ", "invalid UTF-8 lead byte 0xc0"},          // overlong '/'
      {"nul", "byte offset 0 ", "expected 'null'"},
      {"True", "byte offset 0 ", "expected a value"},
      {"[1] x", "byte offset 4 ", "unexpected 'x' after the JSON value"},
      {"{\"a\": 1, \"a\": 2}", "byte offset 9 ", "duplicate key \"a\""},
      {"// c\n1", "byte offset 0 ", "expected a value"},
      {"{\n  \"a\" 1}", "line 2, column 7", "expected ':'"},
      {std::string(600, '['), "byte offset 513 ", "nesting deeper than 512"},
  };
  for (const Bad& b : bad) {
    INFO("text: " << b.text);
    check_throws_with([&] { Json::parse(b.text); }, {"Json::parse", b.where, b.what});
    CHECK_THROWS_AS(Json::parse(b.text), std::invalid_argument);
  }
}

TEST_CASE("json accessors throw on the wrong type, a missing key or an index out of range") {
  Json j = Json::object();
  j["name"] = "x";
  j["n"] = 2.5;
  j["list"].push_back(1);
  check_throws_with([&] { (void)j.at("name").as_number(); }, {"Json::as_number", "expected a number, got string"});
  check_throws_with([&] { (void)j.at("n").as_string(); }, {"Json::as_string", "got number"});
  check_throws_with([&] { (void)j.at("n").as_bool(); }, {"Json::as_bool", "got number"});
  check_throws_with([&] { (void)j.at("n").as_int64(); }, {"Json::as_int64", "2.5"});
  check_throws_with([&] { (void)j.at("missing"); }, {"no key \"missing\"", "name, n, list"});
  check_throws_with([&] { (void)j.at("list").at(1); }, {"index 1", "size 1"});
  check_throws_with([&] { (void)j.at(0); }, {"Json::at(0)", "expected an array, got object"});
  check_throws_with([&] { j.push_back(1); }, {"Json::push_back", "expected an array, got object"});
  check_throws_with([&] { j.at("n")["k"] = 1; }, {"Json::operator[](\"k\")", "expected an object, got number"});
  check_throws_with([&] { (void)j.at("name").size(); }, {"Json::size", "got string"});
  check_throws_with([&] { Json big(int64_t{1} << 60); }, {"2^53", "1152921504606846976"});
  check_throws_with([&] { Json big(uint64_t{1} << 54); }, {"2^53"});
  CHECK(j.at("list").at(0).as_int64() == 1);
  CHECK(j.at("list").elements().size() == 1);
  CHECK(j.items().size() == 3);
  CHECK(Json(true).type_name() == std::string("bool"));
  CHECK(Json(1) != Json("1"));
  CHECK(Json(1) == Json(1.0));
}

// ---- SVG ----------------------------------------------------------------------------------------------------

TEST_CASE("heatmap svg: one cell rect per value, printed values, NaN as a dash, colour scale and escaped text") {
  const std::vector<std::string> rows = {"1K", "4K", "16K"}, cols = {"0%", "25%", "50%", "75%"};
  const std::vector<std::vector<double>> v = {
      {0.0, 0.5, 1.0, 0.97}, {0.25, kNaN, 0.333, 0.75}, {1.0, 1.0, 0.999, 0.004}};
  const std::string svg = heatmap_svg("needle <recall> & \"depth\"", rows, cols, v, "context <len>", "depth & %");
  check_svg_document(svg);
  CHECK(count(svg, "<rect class=\"cell\"") == 12);
  CHECK(count(svg, "<rect") == 12 + 3);  // + background, legend bar, "not run" swatch
  for (const char* s : {">0.50<", ">0.97<", ">0.25<", ">0.33<", ">0.75<"})
    CHECK_MESSAGE(count(svg, s) == 1, s);
  CHECK(count(svg, ">1.00<") == 4);  // three 1.0 and 0.999
  CHECK(count(svg, ">0.00<") == 2);  // 0.0 and 0.004
  CHECK(count(svg, ">\u2013<") == 1);
  CHECK(svg.find("needle &lt;recall&gt; &amp; &quot;depth&quot;") != std::string::npos);
  CHECK(svg.find("context &lt;len&gt;") != std::string::npos);
  CHECK(svg.find("depth &amp; %") != std::string::npos);
  CHECK(svg.find("fill=\"#d7191c\"") != std::string::npos);  // 0: red
  CHECK(svg.find("fill=\"#ffffbf\"") != std::string::npos);  // 0.5: yellow
  CHECK(svg.find("fill=\"#1a9641\"") != std::string::npos);  // 1: green
  CHECK(svg.find("url(#rdylgn)") != std::string::npos);
  for (const auto& l : rows) CHECK(svg.find(">" + l + "<") != std::string::npos);
  for (const auto& l : cols) CHECK(svg.find(">" + l + "<") != std::string::npos);

  // Without NaN there is no "not run" swatch; a single cell works; long labels rotate.
  const std::string one = heatmap_svg("t", {"only row"}, {"a very long column label indeed"}, {{0.4}}, "r", "c");
  check_svg_document(one);
  CHECK(count(one, "<rect class=\"cell\"") == 1);
  CHECK(count(one, "<rect") == 3);
  CHECK(one.find("rotate(-35") != std::string::npos);
  CHECK(heatmap_svg("empty", {}, {}, {}, "r", "c").find("no data") != std::string::npos);
}

TEST_CASE("heatmap svg rejects mismatched sizes and values outside [0, 1]") {
  check_throws_with([] { heatmap_svg("t", {"a", "b"}, {"x"}, {{0.1}, {0.2}, {0.3}}, "r", "c"); },
                    {"heatmap_svg", "2 row labels", "3 rows of values"});
  check_throws_with([] { heatmap_svg("t", {"a", "b"}, {"x", "y"}, {{0.1, 0.2}, {0.3}}, "r", "c"); },
                    {"heatmap_svg", "row 1 ('b') has 1 values", "2 column labels"});
  check_throws_with([] { heatmap_svg("t", {"a"}, {"x", "y"}, {{0.1, 1.5}}, "r", "c"); },
                    {"heatmap_svg", "1.5", "row 0 ('a'), column 1 ('y')", "outside [0, 1]"});
  check_throws_with(
      [] { heatmap_svg("t", {"a"}, {"x"}, {{std::numeric_limits<double>::infinity()}}, "r", "c"); },
      {"heatmap_svg", "outside [0, 1]"});
}

TEST_CASE("bar chart svg: one bar per value with its label, fixed or automatic y axis") {
  const std::vector<std::string> labels = {"gdn", "swa<4>", "hybrid", "skipped"};
  const std::string svg = bar_chart_svg("mqar & co", labels, {0.75, 0.5, 0.973, kNaN}, "accuracy", 1.0);
  check_svg_document(svg);
  CHECK(count(svg, "<rect class=\"bar\"") == 3);
  for (const char* s : {">0.75<", ">0.5<", ">0.973<", ">\u2013<", ">swa&lt;4&gt;<", "mqar &amp; co", ">accuracy<"})
    CHECK_MESSAGE(svg.find(s) != std::string::npos, s);
  for (const char* t : {">0.0<", ">0.2<", ">0.4<", ">0.6<", ">0.8<", ">1.0<"})
    CHECK_MESSAGE(svg.find(t) != std::string::npos, t);

  const std::string autos = bar_chart_svg("auto", {"a", "b"}, {3.2, 17.0}, "ms", 0);
  check_svg_document(autos);
  CHECK(autos.find(">20<") != std::string::npos);  // round top above 17
  CHECK(autos.find(">17<") != std::string::npos);
  const std::string neg = bar_chart_svg("neg", {"a", "b"}, {-0.5, 1.0}, "delta", 0);
  check_svg_document(neg);
  CHECK(neg.find(">-0.5<") != std::string::npos);
  CHECK(count(neg, "<rect class=\"bar\"") == 2);
  CHECK(bar_chart_svg("none", {}, {}, "y", 1).find("no data") != std::string::npos);

  check_throws_with([] { bar_chart_svg("t", {"a", "b"}, {0.1}, "y", 1); },
                    {"bar_chart_svg", "2 labels but 1 values"});
  check_throws_with([] { bar_chart_svg("t", {"a"}, {1.2}, "y", 1); }, {"bar_chart_svg", "1.2", "'a'", "y_max 1"});
  check_throws_with([] { bar_chart_svg("t", {"a"}, {std::numeric_limits<double>::infinity()}, "y", 1); },
                    {"bar_chart_svg", "not finite"});
}

TEST_CASE("grouped bar chart svg: series by groups with a legend") {
  const std::vector<std::string> groups = {"Q1", "Q2", "Q3", "Q4"}, series = {"with retrieval", "without"};
  const std::vector<std::vector<double>> v = {{0.9, 0.8, 0.85, 0.7}, {0.4, kNaN, 0.3, 0.2}};
  const std::string svg = grouped_bar_chart_svg("by depth", groups, series, v, "accuracy", 1.0);
  check_svg_document(svg);
  CHECK(count(svg, "<rect class=\"bar\"") == 7);
  CHECK(count(svg, "<rect class=\"legend\"") == 2);
  for (const char* s : {">with retrieval<", ">without<", ">Q1<", ">Q4<", ">0.85<", ">0.3<", ">\u2013<"})
    CHECK_MESSAGE(svg.find(s) != std::string::npos, s);
  CHECK(svg.find("fill=\"#1f77b4\"") != std::string::npos);
  CHECK(svg.find("fill=\"#ff7f0e\"") != std::string::npos);

  check_throws_with([&] { grouped_bar_chart_svg("t", groups, {"one"}, v, "y", 1); },
                    {"grouped_bar_chart_svg", "1 series names but 2 rows of values"});
  check_throws_with([&] { grouped_bar_chart_svg("t", groups, series, {{0.1, 0.2, 0.3, 0.4}, {0.1}}, "y", 1); },
                    {"grouped_bar_chart_svg", "series 1 ('without') has 1 values but there are 4 groups"});
  check_throws_with([&] { grouped_bar_chart_svg("t", {"g"}, {"s"}, {{2.0}}, "y", 1); },
                    {"grouped_bar_chart_svg", "above y_max", "series 's'"});
}

TEST_CASE("line chart svg: one polyline per series, NaN gaps, legend and size errors") {
  const std::vector<std::string> names = {"gdn", "hybrid & swa"};
  const std::vector<std::vector<std::pair<double, double>>> pts = {
      {{0, 0.1}, {500, 0.4}, {1000, 0.8}},
      {{0, 0.05}, {500, kNaN}, {1000, 0.6}, {1500, 0.9}, {2000, 0.95}},
  };
  const std::string svg = line_chart_svg("accuracy <vs> step", "step", "accuracy", names, pts, 1.0);
  check_svg_document(svg);
  CHECK(count(svg, "<polyline class=\"series\"") == 2);  // series 2: the lone first point makes no line
  CHECK(count(svg, "<circle") == 7);
  for (const char* s : {">gdn<", ">hybrid &amp; swa<", "accuracy &lt;vs&gt; step", ">step<", ">2000<", ">1.0<"})
    CHECK_MESSAGE(svg.find(s) != std::string::npos, s);
  CHECK(svg.find("stroke=\"#1f77b4\"") != std::string::npos);
  CHECK(svg.find("stroke=\"#ff7f0e\"") != std::string::npos);

  // More than 10 series: colours repeat dashed.
  std::vector<std::string> many;
  std::vector<std::vector<std::pair<double, double>>> many_pts;
  for (int s = 0; s < 12; ++s) {
    many.push_back(fmt::format("s{}", s));
    many_pts.push_back({{0.0, s * 1.0}, {1.0, s + 0.5}});
  }
  const std::string m = line_chart_svg("many", "x", "y", many, many_pts);
  check_svg_document(m);
  CHECK(count(m, "<polyline class=\"series\"") == 12);
  CHECK(count(m, "stroke-dasharray") == 4);  // polyline + legend line for each of series 10 and 11
  CHECK(line_chart_svg("none", "x", "y", {"a"}, {{}}).find("no data") != std::string::npos);

  check_throws_with([&] { line_chart_svg("t", "x", "y", {"a"}, pts); },
                    {"line_chart_svg", "1 series names but 2 point lists"});
  check_throws_with([] { line_chart_svg("t", "x", "y", {"a"}, {{{kNaN, 1.0}}}); },
                    {"line_chart_svg", "point 0 of series 0 ('a')", "x must be finite"});
  check_throws_with([] { line_chart_svg("t", "x", "y", {"a"}, {{{1.0, 2.0}}}, 1.0); },
                    {"line_chart_svg", "above y_max"});
}

// ---- markdown -----------------------------------------------------------------------------------------------

TEST_CASE("markdown table: exact layout, '|' escaped, rows checked against the header") {
  CHECK(markdown_table({"model", "acc|best"}, {{"gdn", "0.97"}, {"a|b", "line\nbreak"}, {"", "x"}}) ==
        "| model | acc\\|best |\n"
        "| --- | --- |\n"
        "| gdn | 0.97 |\n"
        "| a\\|b | line break |\n"
        "|  | x |\n");
  CHECK(markdown_table({"only"}, {}) == "| only |\n| --- |\n");
  check_throws_with([] { markdown_table({"a", "b"}, {{"1", "2"}, {"3"}}); },
                    {"markdown_table", "row 1 has 1 cells but the header has 2"});
  check_throws_with([] { markdown_table({}, {}); }, {"markdown_table", "no columns"});
}
