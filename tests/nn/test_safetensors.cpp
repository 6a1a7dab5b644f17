// safetensors reader/writer: round trips, the reference's golden files, the byte layout, corrupt and truncated
// files, load_into's single error listing every mismatch, and atomic writes.
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include <fmt/ranges.h>

#include "nn/safetensors.h"
#include "tests/test_util.h"

namespace hydra {
namespace {

namespace fs = std::filesystem;
using test::check_throws_with;


// A fresh directory under the system temp dir, removed with its contents at scope exit.
struct TempDir {
  fs::path dir;
  TempDir() {
    static std::atomic<int> counter{0};
    dir = fs::temp_directory_path() /
          fmt::format("hydra_safetensors_test_{}_{}_{}", static_cast<long>(::getpid()), counter++,
                      test::base_seed() % 100000);
    fs::create_directories(dir);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string file(const std::string& name) const { return (dir / name).string(); }
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  REQUIRE(out);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out);
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i, v >>= 8) s[i] = static_cast<char>(v & 0xFF);
  return s;
}

// A file from a hand-written header (not padded) and data section.
std::string raw_file(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

std::string tensor_bytes(const Tensor& t) {
  const Tensor c = t.to(kCPU).contiguous();
  return std::string(static_cast<const char*>(c.raw_data()), static_cast<std::size_t>(c.numel()) * c.element_size());
}

void check_same_bits(const Tensor& got, const Tensor& want, const std::string& name) {
  INFO("tensor " << name);
  REQUIRE(got.defined());
  CHECK(got.dtype() == want.dtype());
  CHECK(shape_str(got.shape()) == shape_str(want.shape()));
  CHECK(got.is_cpu());
  CHECK(tensor_bytes(got) == tensor_bytes(want));
}

// Writes a file made of `header` and `data`, then requires loading it (and, when header_level, reading only the
// header) to throw with a message naming the file and containing every fragment.
void expect_corrupt(const TempDir& tmp, const std::string& header, const std::string& data,
                    const std::vector<std::string>& fragments, bool header_level = true) {
  const std::string path = tmp.file("corrupt.safetensors");
  write_bytes(path, raw_file(header, data));
  std::vector<std::string> frags = fragments;
  frags.push_back(path);
  INFO("header: " << header);
  check_throws_with([&] { load_safetensors(path); }, frags);
  if (header_level) check_throws_with([&] { read_safetensors_header(path); }, frags);
}

std::string f32_entry(const std::string& name, const std::string& shape, uint64_t b, uint64_t e) {
  return fmt::format("\"{}\":{{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[{},{}]}}", name, shape, b, e);
}

// A JSON object from "key":value members.
std::string obj(const std::vector<std::string>& members) { return fmt::format("{{{}}}", fmt::join(members, ",")); }

std::map<std::string, Tensor> small_tensors() {
  return {{"w", test::randn_t({3, 2}).to(DType::Float32)},
          {"ids", from_vector<int64_t>({1, 2, 3}, {3})},
          {"s", scalar_tensor(2.5, DType::BFloat16)}};
}

TEST_CASE("safetensors: round trip of f32, bf16, f64, i32, i64 and bool tensors with 0-d, empty shapes and metadata") {
  TempDir tmp;
  const std::map<std::string, Tensor> tensors = {
      {"f32", test::randn_t({3, 4}).to(DType::Float32)},
      {"f32.scalar", scalar_tensor(-3.25, DType::Float32)},
      {"f32.empty", empty({0, 3}, DType::Float32)},
      {"bf16", test::randn_t({5, 2}).to(DType::BFloat16)},
      {"bf16.scalar", scalar_tensor(1.5, DType::BFloat16)},
      {"f64", test::randn_t({2, 3, 2})},
      {"f64.scalar", scalar_tensor(std::nan(""), DType::Float64)},
      {"i32", from_vector<int32_t>({std::numeric_limits<int32_t>::min(), -1, 0, 7,
                                    std::numeric_limits<int32_t>::max()}, {5})},
      {"i64", from_vector<int64_t>({std::numeric_limits<int64_t>::min(), -5, 0, int64_t(1) << 40,
                                    std::numeric_limits<int64_t>::max(), 3}, {2, 3})},
      {"i64.scalar", scalar_tensor(42, DType::Int64)},
      {"i64.empty", empty({2, 0, 4}, DType::Int64)},
      {"bool", from_vector<int64_t>({0, 1, 1, 0}, {2, 2}, DType::Bool)},
      {"name with \"quotes\", a \\ backslash, a\nnewline and \xc3\xbc", from_vector<float>({1.f}, {1})},
  };
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"note", "quote \" backslash \\ tab \t newline \n u-umlaut \xc3\xbc"}, {"empty", ""}};
  const std::string path = tmp.file("rt.safetensors");
  save_safetensors(path, tensors, metadata);

  const auto loaded = load_safetensors(path);
  REQUIRE(loaded.size() == tensors.size());
  for (const auto& [name, t] : tensors) {
    REQUIRE_MESSAGE(loaded.count(name) == 1, "missing " << name);
    check_same_bits(loaded.at(name), t, name);
  }
  const SafetensorsInfo info = read_safetensors_header(path);
  CHECK(info.metadata == metadata);
  CHECK(info.tensors.size() == tensors.size());
  const SafetensorsEntry* e = info.find("i64.empty");
  REQUIRE(e != nullptr);
  CHECK(e->dtype == DType::Int64);
  CHECK(e->shape == Shape{2, 0, 4});
  CHECK(e->begin == e->end);
  CHECK(info.find("nope") == nullptr);

  // Without metadata there is no "__metadata__" entry, and an empty map round-trips to an empty file body.
  save_safetensors(path, {});
  CHECK(load_safetensors(path).empty());
  CHECK(read_safetensors_header(path).metadata.empty());
}

TEST_CASE("safetensors: non-contiguous views are saved as their values") {
  TempDir tmp;
  const Tensor base = test::randn_t({3, 4}).to(DType::Float32);
  const Tensor t = base.transpose(0, 1);
  const Tensor sliced = base.slice(1, 0, 4, 2);
  const std::string path = tmp.file("views.safetensors");
  save_safetensors(path, {{"t", t}, {"s", sliced}});
  const auto loaded = load_safetensors(path);
  check_same_bits(loaded.at("t"), t.contiguous(), "t");
  check_same_bits(loaded.at("s"), sliced.contiguous(), "s");
}

TEST_CASE("safetensors: the written bytes follow the format with a sorted, space padded header") {
  TempDir tmp;
  const std::string path = tmp.file("layout.safetensors");
  const Tensor b = from_vector<float>({1.f, 2.f, 3.f}, {3});
  const Tensor a = from_vector<int64_t>({-1, 5}, {2});
  save_safetensors(path, {{"b", b}, {"a", a}}, {{"k", "v"}});
  const std::string bytes = read_bytes(path);
  REQUIRE(bytes.size() >= 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  CHECK(n % 8 == 0);
  REQUIRE(8 + n + 16 + 12 == bytes.size());
  const std::string header = bytes.substr(8, n);
  CHECK(header.front() == '{');
  const std::string expected =
      "{\"__metadata__\":{\"k\":\"v\"},"
      "\"a\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[16,28]}}";
  CHECK(header.substr(0, expected.size()) == expected);
  CHECK(header.find_first_not_of(' ', expected.size()) == std::string::npos);  // padding is spaces only
  CHECK(bytes.substr(8 + n, 16) == tensor_bytes(a));
  CHECK(bytes.substr(8 + n + 16) == tensor_bytes(b));
  // Little-endian float32 1.0f = 00 00 80 3f.
  CHECK(bytes.substr(8 + n + 16, 4) == std::string("\x00\x00\x80\x3f", 4));
}

// Mean next-token cross-entropy of logits[:, :-1] against ids[:, 1:], in double.
double next_token_loss(const Tensor& logits, const Tensor& ids) {
  const int64_t B = logits.size(0), N = logits.size(1), V = logits.size(2);
  const auto lv = logits.to_vector<double>();
  const auto iv = ids.to_vector<int64_t>();
  double total = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t + 1 < N; ++t) {
      const double* row = &lv[(b * N + t) * V];
      double mx = row[0];
      for (int64_t v = 1; v < V; ++v) mx = std::max(mx, row[v]);
      double se = 0;
      for (int64_t v = 0; v < V; ++v) se += std::exp(row[v] - mx);
      total += mx + std::log(se) - row[iv[b * N + t + 1]];
    }
  }
  return total / static_cast<double>(B * (N - 1));
}

void check_golden(const std::string& file, int64_t n_tokens, int64_t vocab, int64_t d_model, int n_blocks,
                  bool tied) {
  const std::string path = hydra::test::test_data_path(file);
  INFO("golden file " << path);
  const auto g = load_safetensors(path);
  auto shape_of = [&](const std::string& name) {
    REQUIRE_MESSAGE(g.count(name) == 1, "missing " << name);
    return g.at(name).shape();
  };
  REQUIRE(g.count("input_ids") == 1);
  CHECK(g.at("input_ids").dtype() == DType::Int64);
  CHECK(shape_of("input_ids") == Shape{2, n_tokens});
  CHECK(g.at("logits").dtype() == DType::Float32);
  CHECK(shape_of("logits") == Shape{2, n_tokens, vocab});
  CHECK(g.at("loss").dtype() == DType::Float32);
  CHECK(shape_of("loss").empty());
  CHECK(shape_of("embed.weight") == Shape{vocab, d_model});
  CHECK(shape_of("grad.embed.weight") == Shape{vocab, d_model});
  CHECK(shape_of("blocks.0.norm1.weight") == Shape{d_model});
  CHECK(shape_of("grad.blocks.0.mixer.qkv_proj.weight") == Shape{3 * d_model, d_model});
  CHECK(shape_of(fmt::format("act.blocks.{}", n_blocks - 1)) == Shape{2, n_tokens, d_model});
  CHECK(g.count(fmt::format("act.blocks.{}", n_blocks)) == 0);
  CHECK(g.count("lm_head.weight") == (tied ? 0u : 1u));
  if (!tied) CHECK(shape_of("grad.lm_head.weight") == Shape{vocab, d_model});
  for (const auto& [name, t] : g) {
    INFO(name);
    CHECK(t.is_cpu());
    if (name != "input_ids") CHECK(t.dtype() == DType::Float32);
  }

  for (int64_t id : g.at("input_ids").to_vector<int64_t>()) {
    REQUIRE(id >= 0);
    REQUIRE(id < vocab);
  }
  const double loss = g.at("loss").item();
  CHECK(std::isfinite(loss));
  CHECK(loss > 0.0);
  // The stored loss is the cross-entropy of the stored logits: ties the decoded bytes of three tensors together.
  CHECK(std::abs(next_token_loss(g.at("logits"), g.at("input_ids")) - loss) < 1e-5);

  // The header alone gives the same names, dtypes and shapes.
  const SafetensorsInfo info = read_safetensors_header(path);
  CHECK(info.metadata.empty());
  REQUIRE(info.tensors.size() == g.size());
  for (const auto& e : info.tensors) {
    REQUIRE(g.count(e.name) == 1);
    CHECK(e.dtype == g.at(e.name).dtype());
    CHECK(e.shape == g.at(e.name).shape());
  }
}

TEST_CASE("safetensors: golden_tiny from the PyTorch reference loads with the documented names, dtypes and shapes") {
  check_golden("golden_tiny.safetensors", 80, 97, 64, 4, /*tied=*/true);
}

TEST_CASE("safetensors: golden_b from the PyTorch reference loads with the documented names, dtypes and shapes") {
  check_golden("golden_b.safetensors", 57, 89, 40, 3, /*tied=*/false);
}

TEST_CASE("safetensors: re-saving a golden file reproduces every tensor bit for bit") {
  TempDir tmp;
  const auto g = load_safetensors(hydra::test::test_data_path("golden_b.safetensors"));
  const std::string path = tmp.file("resaved.safetensors");
  save_safetensors(path, g);
  const auto again = load_safetensors(path);
  REQUIRE(again.size() == g.size());
  for (const auto& [name, t] : g) check_same_bits(again.at(name), t, name);
}

TEST_CASE("safetensors: every truncation of a small file is an error naming the file") {
  TempDir tmp;
  const std::string good = tmp.file("good.safetensors");
  save_safetensors(good, small_tensors(), {{"k", "v"}});
  const std::string bytes = read_bytes(good);
  const std::string path = tmp.file("cut.safetensors");
  for (std::size_t len = 0; len < bytes.size(); ++len) {
    INFO("truncated to " << len << " of " << bytes.size() << " bytes");
    write_bytes(path, bytes.substr(0, len));
    check_throws_with([&] { load_safetensors(path); }, {path});
  }
  write_bytes(path, bytes);
  CHECK(load_safetensors(path).size() == 3);
  // Extra bytes appended to a good file are corruption too.
  write_bytes(path, bytes + std::string(4, '\0'));
  check_throws_with([&] { load_safetensors(path); }, {path, "trailing"});
}

TEST_CASE("safetensors: a missing file or a header length beyond the file is an error naming the file") {
  TempDir tmp;
  check_throws_with([&] { load_safetensors(tmp.file("absent.safetensors")); },
                    {"absent.safetensors", "does not exist"});
  check_throws_with([&] { load_safetensors(tmp.dir.string()); }, {"not a regular file"});
  const std::string path = tmp.file("long.safetensors");
  const std::string header = "{}      ";
  write_bytes(path, le64(header.size() + 1) + header);
  check_throws_with([&] { load_safetensors(path); }, {path, "header length 9 is larger than the 8 bytes"});
  write_bytes(path, le64(std::numeric_limits<uint64_t>::max()) + header);
  check_throws_with([&] { load_safetensors(path); }, {path, "larger than"});
  write_bytes(path, le64(0));
  check_throws_with([&] { load_safetensors(path); }, {path, "too small"});
}

TEST_CASE("safetensors: malformed JSON headers are errors naming the file") {
  TempDir tmp;
  const std::string ok = f32_entry("a", "[1]", 0, 4);
  const std::string d4(4, '\0');
  expect_corrupt(tmp, "{not json at all}", "", {"malformed JSON"});
  expect_corrupt(tmp, "garbage!", "", {"does not start with '{'"});
  expect_corrupt(tmp, "[1,2,3]", "", {"does not start with '{'"});
  expect_corrupt(tmp, fmt::format("{{{},}}", ok), d4, {"malformed JSON", "expected a string key"});
  expect_corrupt(tmp, fmt::format("{{{}", ok), d4, {"malformed JSON", "unterminated object"});
  expect_corrupt(tmp, "{\"a", d4, {"malformed JSON", "unterminated string"});
  expect_corrupt(tmp, obj({ok, ok}), d4 + d4, {"duplicate key \"a\""});
  expect_corrupt(tmp, fmt::format("{{{}}} x", ok), d4, {"unexpected content after the top-level object"});
  expect_corrupt(tmp, fmt::format("{{{}}}{{}}", ok), d4, {"unexpected content after the top-level object"});
  expect_corrupt(tmp, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],}}", d4, {"malformed JSON"});
  expect_corrupt(tmp, "{\"a\":{\"dtype\":'F32',\"shape\":[1],\"data_offsets\":[0,4]}}", d4, {"malformed JSON"});
  expect_corrupt(tmp, "{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", d4, {"leading zero"});
  expect_corrupt(tmp, "{\"bad\\q\":1}", "", {"invalid escape"});
  expect_corrupt(tmp, "{\"\\ud800\":1}", "", {"unpaired high surrogate"});
  expect_corrupt(tmp, "{\"tab\there\":1}", "", {"control character"});
  expect_corrupt(tmp, "{\"\xff\xfe\":1}", "", {"not valid UTF-8"});
  expect_corrupt(tmp, "{\"\xc0\xaf\":1}", "", {"not valid UTF-8"});  // overlong '/'
  expect_corrupt(tmp, fmt::format("{{\"__metadata__\":{}{}}}", std::string(200, '['), std::string(200, ']')), "",
                 {"nesting deeper"});
  expect_corrupt(tmp, "{\"a\":tru}", "", {"invalid literal"});
  // Whitespace padding after the object is allowed (the writer pads with spaces), and \u escapes decode.
  const std::string path = tmp.file("padded.safetensors");
  write_bytes(path, raw_file(fmt::format("{{{}}}  \n\t ", f32_entry("\\u00fc\\ud83d\\ude00", "[1]", 0, 4)), d4));
  const auto loaded = load_safetensors(path);
  CHECK(loaded.count("\xc3\xbc\xf0\x9f\x98\x80") == 1);
}

TEST_CASE("safetensors: bad offsets (out of range, overlap, gap, size mismatch) are errors naming the tensor") {
  TempDir tmp;
  const std::string d4(4, '\0'), d8(8, '\0'), d12(12, '\0');
  expect_corrupt(tmp, obj({f32_entry("a", "[2]", 0, 8)}), d4,
                 {"tensor 'a'", "extend past the end of the data section (4 bytes"});
  expect_corrupt(tmp, obj({f32_entry("a", "[2]", 8, 16)}), d8, {"tensor 'a'", "extend past"});
  expect_corrupt(tmp, obj({f32_entry("a", "[2]", 8, 0)}), d8, {"tensor 'a'", "begin > end"});
  expect_corrupt(tmp, obj({f32_entry("a", "[2]", 0, 8), f32_entry("b", "[2]", 4, 12)}), d12,
                 {"tensor 'b'", "overlap tensor 'a'"});
  expect_corrupt(tmp, obj({f32_entry("a", "[2]", 0, 8), f32_entry("b", "[2]", 0, 8)}), d8,
                 {"overlap"});
  expect_corrupt(tmp, obj({f32_entry("a", "[1]", 0, 4), f32_entry("b", "[1]", 8, 12)}), d12,
                 {"tensor 'b'", "gap of 4 bytes"});
  expect_corrupt(tmp, obj({f32_entry("a", "[1]", 0, 4)}), d8, {"data section is 8 bytes but the tensors cover 4"});
  expect_corrupt(tmp, obj({f32_entry("a", "[3]", 0, 8)}), d8,
                 {"tensor 'a'", "span 8 bytes but dtype F32 x shape [3] needs 12"});
  expect_corrupt(tmp, "{\"a\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,8]}}", d8,
                 {"tensor 'a'", "dtype I64 x shape [2] needs 16"});
  expect_corrupt(tmp, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", d8,
                 {"tensor 'a'", "array of two integers"});
  expect_corrupt(tmp, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", d4,
                 {"tensor 'a'", "non-negative integers"});
  expect_corrupt(tmp, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551616]}}", d4,
                 {"tensor 'a'", "non-negative integers"});
  expect_corrupt(tmp, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", d4, {"tensor 'a'", "no \"data_offsets\""});
  expect_corrupt(tmp, "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", d4, {"tensor 'a'", "no \"dtype\""});
  expect_corrupt(tmp, "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", d4, {"tensor 'a'", "no \"shape\""});
  expect_corrupt(tmp, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", d4,
                 {"tensor 'a'", "unknown key \"x\""});
  expect_corrupt(tmp, "{\"a\":[1,2]}", d4, {"tensor 'a'", "must be an object"});
}

TEST_CASE("safetensors: unknown or unsupported dtypes and bad shapes are errors naming the tensor") {
  TempDir tmp;
  const std::string d4(4, '\0');
  expect_corrupt(tmp, "{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", d4,
                 {"tensor 'a'", "unknown dtype \"F33\"", "F32, F64, BF16, I32, I64, BOOL"});
  expect_corrupt(tmp, "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", d4,
                 {"tensor 'a'", "dtype \"F16\"", "no tensors for"});
  expect_corrupt(tmp, "{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", d4,
                 {"tensor 'a'", "\"dtype\" must be a string"});
  expect_corrupt(tmp, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", d4,
                 {"tensor 'a'", "shape[0] must be a non-negative integer", "-1"});
  expect_corrupt(tmp, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", d4,
                 {"tensor 'a'", "shape[0]", "1.0"});
  expect_corrupt(tmp, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,\"2\"],\"data_offsets\":[0,4]}}", d4,
                 {"tensor 'a'", "shape[1]", "a string"});
  expect_corrupt(tmp, "{\"a\":{\"dtype\":\"F32\",\"shape\":[9223372036854775808],\"data_offsets\":[0,4]}}", d4,
                 {"tensor 'a'", "shape[0]"});
  expect_corrupt(tmp, "{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", d4,
                 {"tensor 'a'", "\"shape\" must be an array"});
  expect_corrupt(tmp, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,4]}}",
                 d4, {"tensor 'a'", "too large"});
  expect_corrupt(tmp, "{\"a\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,4]}}", d4,
                 {"tensor 'a'", "too large"});
  // A zero dimension makes the other dims' product irrelevant.
  const std::string path = tmp.file("zero.safetensors");
  write_bytes(path,
              raw_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[0,9223372036854775807],\"data_offsets\":[0,0]}}", ""));
  CHECK(load_safetensors(path).at("a").numel() == 0);
  // BOOL bytes must be 0 or 1 (detected when the data is read).
  expect_corrupt(tmp, "{\"a\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]}}", std::string("\x01\x02", 2),
                 {"tensor 'a'", "byte value 2"}, /*header_level=*/false);
  // Metadata must be an object of strings.
  expect_corrupt(tmp, "{\"__metadata__\":{\"k\":1}}", "", {"\"__metadata__\" value of \"k\" must be a string"});
  expect_corrupt(tmp, "{\"__metadata__\":[]}", "", {"\"__metadata__\" must be an object"});
}

TEST_CASE("safetensors: corrupting any header byte is an error or a consistent load, never a crash") {
  TempDir tmp;
  const std::string good = tmp.file("good.safetensors");
  save_safetensors(good, small_tensors(), {{"k", "v"}});
  const std::string bytes = read_bytes(good);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  const std::string path = tmp.file("mutated.safetensors");
  const char replacements[] = {'\0', '"', '}', ']', '9', ',', '\\', ' ', '\xff', '-'};
  int threw = 0, loaded = 0;
  for (std::size_t pos = 0; pos < 8 + n; ++pos) {
    for (char r : replacements) {
      if (bytes[pos] == r) continue;
      std::string mutated = bytes;
      mutated[pos] = r;
      write_bytes(path, mutated);
      try {
        const auto m = load_safetensors(path);
        ++loaded;
        for (const auto& [name, t] : m) CHECK(t.defined());
      } catch (const std::exception& e) {
        ++threw;
        CHECK(std::string(e.what()).find(path) != std::string::npos);
      }
    }
  }
  CHECK(threw > 0);
  MESSAGE("mutations rejected: " << threw << ", loaded (e.g. a changed name or padding): " << loaded);
}

TEST_CASE("safetensors: load_into lists every missing, unexpected and mismatched tensor in one error") {
  const std::map<std::string, Tensor> model = {
      {"a", zeros({2, 3})}, {"b", zeros({4})}, {"c", zeros({5}, DType::Int64)}, {"d", zeros({2})},
      {"e", zeros({3})}};
  const std::map<std::string, Tensor> file = {
      {"a", ones({2, 3})},                      // fine
      {"b", ones({5})},                         // wrong shape
      {"c", ones({5})},                         // wrong dtype (float32 for int64)
      {"e", ones({3, 1}, DType::BFloat16)},     // both wrong
      {"x.extra", ones({1})}, {"y.extra", ones({1})}};
  check_throws_with([&] { load_into(file, model, "ckpt.safetensors"); },
                    {"ckpt.safetensors", "1 missing, 2 unexpected, 3 shape/dtype mismatches",
                     "missing: d", "unexpected: x.extra", "unexpected: y.extra",
                     "mismatch: b: expected [4] float32, found [5] float32",
                     "mismatch: c: expected [5] int64, found [5] float32",
                     "mismatch: e: expected [3] float32, found [3, 1] bfloat16"});
  // Nothing was copied: the check happens before any write.
  CHECK(model.at("a").to_vector<float>() == std::vector<float>(6, 0.f));

  // Relaxed options: extras ignored, missing kept, the dtype cast; the shape is never relaxed.
  LoadIntoOptions relaxed;
  relaxed.allow_cast = true;
  relaxed.allow_unexpected = true;
  relaxed.allow_missing = true;
  check_throws_with([&] { load_into(file, model, "ckpt.safetensors", relaxed); },
                    {"0 missing, 0 unexpected, 2 shape/dtype mismatches", "mismatch: b:", "mismatch: e:"});
  CHECK(model.at("a").to_vector<float>() == std::vector<float>(6, 0.f));
}

TEST_CASE("safetensors: load_into copies values into the model, casting only when asked") {
  TempDir tmp;
  const Tensor w = zeros({3, 2});
  const Tensor ids = zeros({3}, DType::Int64);
  const Tensor s = zeros({}, DType::BFloat16);
  const std::map<std::string, Tensor> model = {{"w", w}, {"ids", ids}, {"s", s}};
  const auto src = small_tensors();
  const std::string path = tmp.file("m.safetensors");
  save_safetensors(path, src);
  load_safetensors_into(path, model);
  check_same_bits(w, src.at("w"), "w");
  check_same_bits(ids, src.at("ids"), "ids");
  check_same_bits(s, src.at("s"), "s");

  // A float64 model refuses float32 data unless allow_cast is set.
  const Tensor w64 = zeros({3, 2}, DType::Float64);
  const std::map<std::string, Tensor> model64 = {{"w", w64}};
  LoadIntoOptions only_w;
  only_w.allow_unexpected = true;
  check_throws_with([&] { load_safetensors_into(path, model64, only_w); },
                    {path, "mismatch: w: expected [3, 2] float64, found [3, 2] float32"});
  only_w.allow_cast = true;
  load_safetensors_into(path, model64, only_w);
  CHECK(w64.to_vector<double>() == src.at("w").to_vector<double>());
}

TEST_CASE("safetensors: a successful save leaves no temporary file behind") {
  TempDir tmp;
  const std::string path = tmp.file("model.safetensors");
  save_safetensors(path, small_tensors());
  CHECK(tmp.entries() == std::vector<std::string>{"model.safetensors"});
  save_safetensors(path, small_tensors());  // overwrite in place
  CHECK(tmp.entries() == std::vector<std::string>{"model.safetensors"});
  CHECK(load_safetensors(path).size() == 3);
}

// Lowers the file-size limit so the next write fails part way (EFBIG, with SIGXFSZ ignored); restores both.
struct FileSizeLimit {
  rlimit old{};
  void (*old_handler)(int) = nullptr;
  explicit FileSizeLimit(rlim_t bytes) {
    REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
    old_handler = std::signal(SIGXFSZ, SIG_IGN);
    rlimit lim = old;
    lim.rlim_cur = bytes;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, old_handler);
  }
};

TEST_CASE("safetensors: a failed save leaves the previous file intact and removes its temporary file") {
  TempDir tmp;
  const std::string path = tmp.file("model.safetensors");
  const auto original = small_tensors();
  save_safetensors(path, original, {{"version", "1"}});
  const std::string before = read_bytes(path);

  // A tensor that cannot be saved: refused before anything is written.
  std::map<std::string, Tensor> bad = {{"ok", ones({2})}, {"undefined", Tensor()}};
  check_throws_with([&] { save_safetensors(path, bad); }, {path, "tensor 'undefined' is undefined"});
  CHECK(read_bytes(path) == before);
  CHECK(tmp.entries() == std::vector<std::string>{"model.safetensors"});
  check_throws_with([&] { save_safetensors(path, {{"__metadata__", ones({1})}}); }, {path, "reserved"});
  check_throws_with([&] { save_safetensors(path, {{"bad\xff", ones({1})}}); }, {path, "not valid UTF-8"});
  check_throws_with([&] { save_safetensors(path, {}, {{"k", "\xc0"}}); }, {path, "not valid UTF-8"});
  CHECK(read_bytes(path) == before);

  // A directory that does not exist: the temporary file cannot be created.
  const std::string nowhere = tmp.file("no_such_dir/model.safetensors");
  check_throws_with([&] { save_safetensors(nowhere, original); }, {nowhere, "cannot create the temporary file"});

  // A write that fails part way (the file-size limit is hit): the target keeps its old bytes, the temporary
  // file is removed.
  {
    FileSizeLimit limit(4096);
    const std::map<std::string, Tensor> big = {{"big", zeros({100000})}};
    check_throws_with([&] { save_safetensors(path, big); }, {path, "writing the temporary file"});
  }
  CHECK(read_bytes(path) == before);
  CHECK(tmp.entries() == std::vector<std::string>{"model.safetensors"});
  const auto reloaded = load_safetensors(path);
  for (const auto& [name, t] : original) check_same_bits(reloaded.at(name), t, name);
  CHECK(read_safetensors_header(path).metadata.at("version") == "1");
}

TEST_CASE("safetensors: dtype codes map both ways") {
  for (DType t : {DType::Float32, DType::Float64, DType::BFloat16, DType::Int32, DType::Int64, DType::Bool})
    CHECK(dtype_from_safetensors_code(safetensors_dtype_code(t)) == t);
  CHECK(safetensors_dtype_code(DType::BFloat16) == "BF16");
  check_throws_with([] { dtype_from_safetensors_code("F16"); }, {"F16"});
}

}  // namespace
}  // namespace hydra
