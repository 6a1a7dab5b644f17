#include "nn/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string_view>
#include <utility>

namespace hydra {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this reader/writer copies bytes as they are");

namespace {

namespace fs = std::filesystem;

// A header larger than this is refused before allocating it (the reference implementation uses the same bound).
constexpr uint64_t kMaxHeaderSize = 100ull * 1000 * 1000;
// Nesting deeper than this in the header is refused (a valid header nests three levels).
constexpr int kMaxJsonDepth = 64;

// File-content problems: std::runtime_error naming the file (STYLE §6).
[[noreturn]] void fail_file(const std::string& path, const std::string& what) {
  HYDRA_CHECK_ENV(false, "safetensors file '{}': {}", path, what);
  std::abort();  // unreachable: the check above always throws
}

[[noreturn]] void fail_tensor(const std::string& path, const std::string& name, const std::string& what) {
  fail_file(path, fmt::format("tensor '{}': {}", name, what));
}

// ---------------------------------------------------------------------------------------------------------------
// dtypes

struct DTypeCode {
  const char* code;
  bool supported;
  DType dtype;  // meaningful when supported
};

// Every dtype code of the safetensors format; the ones this tensor library has are supported.
constexpr DTypeCode kDTypeCodes[] = {
    {"F32", true, DType::Float32},   {"F64", true, DType::Float64},   {"BF16", true, DType::BFloat16},
    {"I32", true, DType::Int32},     {"I64", true, DType::Int64},     {"BOOL", true, DType::Bool},
    {"F16", false, DType::Float32},  {"I8", false, DType::Float32},   {"U8", false, DType::Float32},
    {"I16", false, DType::Float32},  {"U16", false, DType::Float32},  {"U32", false, DType::Float32},
    {"U64", false, DType::Float32},  {"F8_E4M3", false, DType::Float32}, {"F8_E5M2", false, DType::Float32},
    {"F8_E8M0", false, DType::Float32}, {"F4", false, DType::Float32}, {"F6_E2M3", false, DType::Float32},
    {"F6_E3M2", false, DType::Float32}, {"C64", false, DType::Float32},
};

const DTypeCode* find_code(std::string_view code) {
  for (const auto& c : kDTypeCodes)
    if (code == c.code) return &c;
  return nullptr;
}

std::string supported_codes() {
  std::string s;
  for (const auto& c : kDTypeCodes) {
    if (!c.supported) continue;
    if (!s.empty()) s += ", ";
    s += c.code;
  }
  return s;
}

// ---------------------------------------------------------------------------------------------------------------
// UTF-8

// Index of the first byte that does not start a well-formed UTF-8 sequence (overlong forms, surrogates and code
// points above U+10FFFF are ill-formed), or npos when `s` is valid.
std::size_t first_invalid_utf8(std::string_view s) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return i;
    }
    if (n - i < len) return i;
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (cc & 0x3F);
    }
    const bool overlong = (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string_view::npos;
}

void append_utf8(std::string& out, uint32_t cp) {
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

// ---------------------------------------------------------------------------------------------------------------
// A small strict JSON parser (RFC 8259): no comments, no trailing commas, no duplicate object keys, numbers kept as
// their literal text (the header's integers must be exact up to 2^64 - 1, beyond what a double holds).

struct Json {
  enum class Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool boolean = false;
  std::string text;  // a number's literal, or a string's decoded value
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;  // in file order
};

const char* kind_name(Json::Kind k) {
  switch (k) {
    case Json::Kind::Null: return "null";
    case Json::Kind::Bool: return "a boolean";
    case Json::Kind::Number: return "a number";
    case Json::Kind::String: return "a string";
    case Json::Kind::Array: return "an array";
    case Json::Kind::Object: return "an object";
  }
  return "?";
}

class JsonParser {
 public:
  JsonParser(std::string_view text, const std::string& path) : s_(text), path_(path) {}

  // The whole header: one object, then nothing but whitespace (the writer pads with spaces).
  Json parse_document() {
    skip_ws();
    if (pos_ >= s_.size() || s_[pos_] != '{') error("the header must be a JSON object starting with '{'");
    Json v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) error("unexpected content after the top-level object");
    return v;
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    fail_file(path_, fmt::format("malformed JSON header at byte {} of {}: {}", pos_, s_.size(), what));
  }

  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }

  void expect(char c) {
    if (pos_ >= s_.size()) error(fmt::format("expected '{}' but the header ended", c));
    if (s_[pos_] != c) error(fmt::format("expected '{}'", c));
    ++pos_;
  }

  Json parse_value(int depth) {
    if (depth > kMaxJsonDepth) error(fmt::format("nesting deeper than {} levels", kMaxJsonDepth));
    skip_ws();
    if (pos_ >= s_.size()) error("expected a value but the header ended");
    const char c = s_[pos_];
    if (c == '{') return parse_object(depth);
    if (c == '[') return parse_array(depth);
    if (c == '"') {
      Json v;
      v.kind = Json::Kind::String;
      v.text = parse_string();
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
    if (c == 't') return parse_literal("true", Json::Kind::Bool, true);
    if (c == 'f') return parse_literal("false", Json::Kind::Bool, false);
    if (c == 'n') return parse_literal("null", Json::Kind::Null, false);
    error("expected a value");
  }

  Json parse_literal(std::string_view word, Json::Kind kind, bool b) {
    if (s_.substr(pos_, word.size()) != word) error("invalid literal");
    pos_ += word.size();
    Json v;
    v.kind = kind;
    v.boolean = b;
    return v;
  }

  Json parse_object(int depth) {
    Json v;
    v.kind = Json::Kind::Object;
    expect('{');
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return v;
    }
    while (true) {
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != '"') error("expected a string key");
      const std::size_t key_pos = pos_;
      std::string key = parse_string();
      for (const auto& m : v.members) {
        if (m.first == key) {
          pos_ = key_pos;
          error(fmt::format("duplicate key \"{}\"", key));
        }
      }
      skip_ws();
      expect(':');
      Json value = parse_value(depth + 1);
      v.members.emplace_back(std::move(key), std::move(value));
      skip_ws();
      if (pos_ >= s_.size()) error("unterminated object");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == '}') {
        ++pos_;
        return v;
      }
      error("expected ',' or '}' in an object");
    }
  }

  Json parse_array(int depth) {
    Json v;
    v.kind = Json::Kind::Array;
    expect('[');
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return v;
    }
    while (true) {
      v.items.push_back(parse_value(depth + 1));
      skip_ws();
      if (pos_ >= s_.size()) error("unterminated array");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == ']') {
        ++pos_;
        return v;
      }
      error("expected ',' or ']' in an array");
    }
  }

  uint32_t parse_hex4() {
    if (s_.size() - pos_ < 4) error("truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<uint32_t>(c - 'A' + 10);
      else error("invalid hex digit in a \\u escape");
    }
    return v;
  }

  // The input was checked to be valid UTF-8 before parsing, so raw bytes >= 0x80 are copied through.
  std::string parse_string() {
    expect('"');
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) error("unterminated string");
      const char c = s_[pos_];
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20) error("control character inside a string");
      if (c != '\\') {
        out += c;
        ++pos_;
        continue;
      }
      ++pos_;
      if (pos_ >= s_.size()) error("unterminated escape");
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
          uint32_t cp = parse_hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) error("unpaired low surrogate in a \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.substr(pos_, 2) != "\\u") error("unpaired high surrogate in a \\u escape");
            pos_ += 2;
            const uint32_t lo = parse_hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) error("unpaired high surrogate in a \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: --pos_; error("invalid escape character");
      }
    }
  }

  Json parse_number() {
    const std::size_t start = pos_;
    auto digit = [&] { return pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9'; };
    if (s_[pos_] == '-') ++pos_;
    if (!digit()) error("invalid number");
    if (s_[pos_] == '0') {
      ++pos_;
      if (digit()) error("leading zero in a number");
    } else {
      while (digit()) ++pos_;
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      if (!digit()) error("invalid number: no digit after '.'");
      while (digit()) ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (!digit()) error("invalid number: no digit in the exponent");
      while (digit()) ++pos_;
    }
    Json v;
    v.kind = Json::Kind::Number;
    v.text = std::string(s_.substr(start, pos_ - start));
    return v;
  }

  std::string_view s_;
  const std::string& path_;
  std::size_t pos_ = 0;
};

// A JSON number that is a non-negative integer literal (no sign, fraction or exponent) fitting in `max`.
bool json_to_uint(const Json& v, uint64_t max, uint64_t& out) {
  if (v.kind != Json::Kind::Number || v.text.empty()) return false;
  uint64_t x = 0;
  for (char c : v.text) {
    if (c < '0' || c > '9') return false;
    const auto d = static_cast<uint64_t>(c - '0');
    if (x > (max - d) / 10) return false;
    x = x * 10 + d;
  }
  out = x;
  return true;
}

// ---------------------------------------------------------------------------------------------------------------
// header -> SafetensorsInfo

SafetensorsEntry parse_entry(const std::string& path, const std::string& name, const Json& v, uint64_t data_size) {
  if (v.kind != Json::Kind::Object)
    fail_tensor(path, name, fmt::format("header entry must be an object, got {}", kind_name(v.kind)));
  const Json* dtype = nullptr;
  const Json* shape = nullptr;
  const Json* offsets = nullptr;
  for (const auto& [key, value] : v.members) {
    if (key == "dtype") dtype = &value;
    else if (key == "shape") shape = &value;
    else if (key == "data_offsets") offsets = &value;
    else fail_tensor(path, name, fmt::format("unknown key \"{}\" in the header entry (expected dtype, shape, "
                                             "data_offsets)", key));
  }
  if (!dtype) fail_tensor(path, name, "header entry has no \"dtype\"");
  if (!shape) fail_tensor(path, name, "header entry has no \"shape\"");
  if (!offsets) fail_tensor(path, name, "header entry has no \"data_offsets\"");

  SafetensorsEntry e;
  e.name = name;
  if (dtype->kind != Json::Kind::String)
    fail_tensor(path, name, fmt::format("\"dtype\" must be a string, got {}", kind_name(dtype->kind)));
  const DTypeCode* code = find_code(dtype->text);
  if (!code)
    fail_tensor(path, name, fmt::format("unknown dtype \"{}\" (this reader supports {})", dtype->text,
                                        supported_codes()));
  if (!code->supported)
    fail_tensor(path, name, fmt::format("dtype \"{}\" is a safetensors dtype this library has no tensors for "
                                        "(supported: {})", dtype->text, supported_codes()));
  e.dtype = code->dtype;

  if (shape->kind != Json::Kind::Array)
    fail_tensor(path, name, fmt::format("\"shape\" must be an array, got {}", kind_name(shape->kind)));
  uint64_t numel = 1;
  bool numel_overflow = false;
  bool has_zero_dim = false;
  for (std::size_t i = 0; i < shape->items.size(); ++i) {
    uint64_t d = 0;
    if (!json_to_uint(shape->items[i], static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), d)) {
      const Json& item = shape->items[i];
      fail_tensor(path, name, fmt::format("shape[{}] must be a non-negative integer below 2^63, got {}{}", i,
                                          kind_name(item.kind),
                                          item.kind == Json::Kind::Number ? " " + item.text : std::string()));
    }
    e.shape.push_back(static_cast<int64_t>(d));
    if (d == 0) has_zero_dim = true;
    else if (numel > std::numeric_limits<uint64_t>::max() / d) numel_overflow = true;
    numel *= d;
  }
  if (has_zero_dim) {  // a zero dim makes any product of the others harmless
    numel = 0;
    numel_overflow = false;
  }

  if (offsets->kind != Json::Kind::Array || offsets->items.size() != 2)
    fail_tensor(path, name, "\"data_offsets\" must be an array of two integers [begin, end]");
  const uint64_t u64max = std::numeric_limits<uint64_t>::max();
  if (!json_to_uint(offsets->items[0], u64max, e.begin) || !json_to_uint(offsets->items[1], u64max, e.end))
    fail_tensor(path, name, "\"data_offsets\" must be two non-negative integers below 2^64");
  if (e.begin > e.end)
    fail_tensor(path, name, fmt::format("data_offsets [{}, {}] have begin > end", e.begin, e.end));

  const uint64_t esize = dtype_size(e.dtype);
  if (numel_overflow || (numel != 0 && numel > u64max / esize))
    fail_tensor(path, name, fmt::format("shape {} is too large to address", shape_str(e.shape)));
  const uint64_t nbytes = numel * esize;
  if (e.end - e.begin != nbytes)
    fail_tensor(path, name, fmt::format("data_offsets [{}, {}] span {} bytes but dtype {} x shape {} needs {} "
                                        "({} elements x {} bytes)", e.begin, e.end, e.end - e.begin, dtype->text,
                                        shape_str(e.shape), nbytes, numel, esize));
  if (e.end > data_size)
    fail_tensor(path, name, fmt::format("data_offsets [{}, {}] extend past the end of the data section ({} "
                                        "bytes; the file is truncated or corrupt)", e.begin, e.end, data_size));
  return e;
}

// Reads the length field and header from an open stream and validates them against the file size.
SafetensorsInfo parse_header(std::ifstream& in, const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) fail_file(path, "cannot open: the file does not exist");
  if (!fs::is_regular_file(st)) fail_file(path, "cannot open: not a regular file");
  const uint64_t file_size = fs::file_size(path, ec);
  if (ec) fail_file(path, fmt::format("cannot read the file size: {}", ec.message()));
  if (!in) fail_file(path, fmt::format("cannot open for reading: {}", std::strerror(errno)));

  if (file_size < 8)
    fail_file(path, fmt::format("the file is {} bytes, shorter than the 8-byte header length field (truncated or "
                                "not a safetensors file)", file_size));
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  if (in.gcount() != 8) fail_file(path, "could not read the 8-byte header length field");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];

  if (n > file_size - 8)
    fail_file(path, fmt::format("header length {} is larger than the {} bytes that follow the length field (file "
                                "size {}; truncated or not a safetensors file)", n, file_size - 8, file_size));
  if (n > kMaxHeaderSize)
    fail_file(path, fmt::format("header length {} exceeds the limit of {} bytes", n, kMaxHeaderSize));
  if (n < 2) fail_file(path, fmt::format("header length {} is too small for a JSON object", n));

  std::string header(n, '\0');
  in.read(header.data(), static_cast<std::streamsize>(n));
  if (static_cast<uint64_t>(in.gcount()) != n)
    fail_file(path, fmt::format("could read only {} of the {} header bytes", in.gcount(), n));
  if (header[0] != '{')
    fail_file(path, "the header does not start with '{' (not a safetensors file, or a corrupt length field)");
  if (const std::size_t bad = first_invalid_utf8(header); bad != std::string::npos)
    fail_file(path, fmt::format("the header is not valid UTF-8 (byte {} of {})", bad, n));

  const Json doc = JsonParser(header, path).parse_document();

  SafetensorsInfo info;
  info.path = path;
  info.header_size = n;
  info.data_size = file_size - 8 - n;
  for (const auto& [key, value] : doc.members) {
    if (key == "__metadata__") {
      if (value.kind != Json::Kind::Object)
        fail_file(path, fmt::format("\"__metadata__\" must be an object of strings, got {}", kind_name(value.kind)));
      for (const auto& [mk, mv] : value.members) {
        if (mv.kind != Json::Kind::String)
          fail_file(path, fmt::format("\"__metadata__\" value of \"{}\" must be a string, got {}", mk,
                                      kind_name(mv.kind)));
        info.metadata[mk] = mv.text;
      }
      continue;
    }
    info.tensors.push_back(parse_entry(path, key, value, info.data_size));
  }

  // The entries must tile the data section exactly: sorted by offset, each starts where the previous ended and the
  // last ends at the end of the file. Zero-byte entries sit anywhere on a boundary.
  std::vector<const SafetensorsEntry*> by_offset;
  by_offset.reserve(info.tensors.size());
  for (const auto& e : info.tensors) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const SafetensorsEntry* a, const SafetensorsEntry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t covered = 0;
  const SafetensorsEntry* prev = nullptr;
  for (const SafetensorsEntry* e : by_offset) {
    if (e->begin < covered)
      fail_tensor(path, e->name, fmt::format("data_offsets [{}, {}] overlap tensor '{}' at [{}, {}]", e->begin,
                                             e->end, prev->name, prev->begin, prev->end));
    if (e->begin > covered)
      fail_tensor(path, e->name, fmt::format("data_offsets [{}, {}] leave a gap of {} bytes after byte {} of the "
                                             "data section", e->begin, e->end, e->begin - covered, covered));
    covered = e->end;
    prev = e;
  }
  if (covered != info.data_size)
    fail_file(path, fmt::format("the data section is {} bytes but the tensors cover {} (trailing bytes: the file "
                                "is corrupt)", info.data_size, covered));

  std::sort(info.tensors.begin(), info.tensors.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) { return a.name < b.name; });
  return info;
}

// ---------------------------------------------------------------------------------------------------------------
// writing

void append_json_string(std::string& out, const std::string& s) {
  out += '"';
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (u < 0x20) out += fmt::format("\\u{:04x}", u);
    else out += c;
  }
  out += '"';
}

std::string errno_text() { return std::strerror(errno); }

// Owns the temporary file of an atomic write: closes and removes it unless release() was called.
class TempFile {
 public:
  TempFile(std::string tmp_path, const std::string& target) : path_(std::move(tmp_path)), target_(target) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0)
      fail_file(target_, fmt::format("cannot create the temporary file '{}' for writing: {}", path_, errno_text()));
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!released_) ::unlink(path_.c_str());
  }

  void write_all(const void* data, std::size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail_file(target_, fmt::format("writing the temporary file '{}' failed: {}", path_, errno_text()));
      }
      p += w;
      n -= static_cast<std::size_t>(w);
    }
  }

  // fsync, close, rename over the target, then fsync the directory so the rename itself is durable.
  void commit() {
    if (::fsync(fd_) != 0) fail_file(target_, fmt::format("fsync of '{}' failed: {}", path_, errno_text()));
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail_file(target_, fmt::format("closing '{}' failed: {}", path_, errno_text()));
    if (::rename(path_.c_str(), target_.c_str()) != 0)
      fail_file(target_, fmt::format("renaming the temporary file '{}' to the target failed: {}", path_,
                                     errno_text()));
    released_ = true;
    fs::path dir = fs::path(target_).parent_path();
    if (dir.empty()) dir = ".";
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) fail_file(target_, fmt::format("cannot open the directory to fsync it: {}", errno_text()));
    const int rc = ::fsync(dfd);
    const int err = errno;
    ::close(dfd);
    // Some file systems do not support fsync on directories (EINVAL); the data itself is already synced.
    if (rc != 0 && err != EINVAL)
      fail_file(target_, fmt::format("fsync of the directory failed: {}", std::strerror(err)));
  }

 private:
  std::string path_;
  const std::string& target_;
  int fd_ = -1;
  bool released_ = false;
};

std::string temp_name_for(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return fmt::format("{}.tmp.{}.{}", path, static_cast<long>(::getpid()), counter++);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// public API

const SafetensorsEntry* SafetensorsInfo::find(const std::string& name) const {
  const auto it = std::lower_bound(tensors.begin(), tensors.end(), name,
                                   [](const SafetensorsEntry& e, const std::string& n) { return e.name < n; });
  return it != tensors.end() && it->name == name ? &*it : nullptr;
}

std::vector<std::string> SafetensorsInfo::names() const {
  std::vector<std::string> out;
  out.reserve(tensors.size());
  for (const auto& e : tensors) out.push_back(e.name);
  return out;
}

std::string safetensors_dtype_code(DType t) {
  for (const auto& c : kDTypeCodes)
    if (c.supported && c.dtype == t) return c.code;
  HYDRA_CHECK(false, "safetensors: dtype {} has no safetensors code", dtype_name(t));
  return {};
}

DType dtype_from_safetensors_code(const std::string& code) {
  const DTypeCode* c = find_code(code);
  HYDRA_CHECK(c && c->supported, "safetensors: unknown or unsupported dtype code \"{}\" (supported: {})", code,
              supported_codes());
  return c->dtype;
}

SafetensorsInfo read_safetensors_header(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return parse_header(in, path);
}

std::map<std::string, Tensor> load_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const SafetensorsInfo info = parse_header(in, path);
  const uint64_t data_start = 8 + info.header_size;

  // Read in file order so the reads are sequential.
  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& e : info.tensors) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const SafetensorsEntry* a, const SafetensorsEntry* b) { return a->begin < b->begin; });

  std::map<std::string, Tensor> out;
  for (const SafetensorsEntry* e : by_offset) {
    Tensor t = empty(e->shape, e->dtype, kCPU);
    const uint64_t nbytes = e->end - e->begin;
    if (nbytes > 0) {
      in.seekg(static_cast<std::streamoff>(data_start + e->begin));
      in.read(static_cast<char*>(t.raw_data()), static_cast<std::streamsize>(nbytes));
      if (!in || static_cast<uint64_t>(in.gcount()) != nbytes)
        fail_tensor(path, e->name, fmt::format("could read only {} of its {} bytes (the file changed or is "
                                               "unreadable)", in.gcount() < 0 ? 0 : in.gcount(), nbytes));
    }
    if (e->dtype == DType::Bool) {
      const auto* b = static_cast<const unsigned char*>(t.raw_data());
      for (int64_t i = 0; i < t.numel(); ++i)
        if (b[i] > 1) fail_tensor(path, e->name, fmt::format("BOOL element {} has byte value {} (must be 0 or 1)",
                                                             i, static_cast<int>(b[i])));
    }
    out.emplace(e->name, std::move(t));
  }
  return out;
}

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Validate and stage everything before touching the file system.
  for (const auto& [k, v] : metadata) {
    HYDRA_CHECK(first_invalid_utf8(k) == std::string::npos && first_invalid_utf8(v) == std::string::npos,
                "save_safetensors '{}': metadata key or value \"{}\" is not valid UTF-8", path, k);
  }
  std::vector<std::pair<const std::string*, Tensor>> staged;  // std::map iterates in name order
  staged.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    HYDRA_CHECK(name != "__metadata__", "save_safetensors '{}': \"__metadata__\" is reserved and cannot name a "
                "tensor", path);
    HYDRA_CHECK(first_invalid_utf8(name) == std::string::npos,
                "save_safetensors '{}': tensor name \"{}\" is not valid UTF-8", path, name);
    HYDRA_CHECK(t.defined(), "save_safetensors '{}': tensor '{}' is undefined", path, name);
    staged.emplace_back(&name, t.detach().to(kCPU).contiguous());
  }

  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (const auto& [k, v] : metadata) {
      if (!first) header += ',';
      first = false;
      append_json_string(header, k);
      header += ':';
      append_json_string(header, v);
    }
    header += '}';
    first = false;
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : staged) {
    const uint64_t nbytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    if (!first) header += ',';
    first = false;
    append_json_string(header, *name);
    header += fmt::format(":{{\"dtype\":\"{}\",\"shape\":[", safetensors_dtype_code(t.dtype()));
    for (std::size_t i = 0; i < t.shape().size(); ++i) header += fmt::format("{}{}", i ? "," : "", t.shape()[i]);
    header += fmt::format("],\"data_offsets\":[{},{}]}}", offset, offset + nbytes);
    offset += nbytes;
  }
  header += '}';
  // Pad with spaces so the data starts 8-byte aligned (8 + N is a multiple of 8).
  while (header.size() % 8 != 0) header += ' ';
  HYDRA_CHECK(header.size() <= kMaxHeaderSize, "save_safetensors '{}': the header would be {} bytes, above the "
              "{}-byte limit readers enforce", path, header.size(), kMaxHeaderSize);

  TempFile tmp(temp_name_for(path), path);
  unsigned char len_bytes[8];
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i, n >>= 8) len_bytes[i] = static_cast<unsigned char>(n & 0xFF);
  tmp.write_all(len_bytes, 8);
  tmp.write_all(header.data(), header.size());
  for (const auto& [name, t] : staged) {
    const std::size_t nbytes = static_cast<std::size_t>(t.numel()) * t.element_size();
    if (nbytes > 0) tmp.write_all(t.raw_data(), nbytes);
  }
  tmp.commit();
}

void load_into(const std::map<std::string, Tensor>& loaded, const std::map<std::string, Tensor>& expected,
               const std::string& file, const LoadIntoOptions& options) {
  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& [name, dst] : expected) {
    HYDRA_CHECK(dst.defined(), "load_into '{}': the model's tensor '{}' is undefined", file, name);
    const auto it = loaded.find(name);
    if (it == loaded.end()) {
      if (!options.allow_missing) missing.push_back(name);
      continue;
    }
    const Tensor& src = it->second;
    const bool shape_ok = src.shape() == dst.shape();
    const bool dtype_ok = src.dtype() == dst.dtype() || options.allow_cast;
    if (!shape_ok || !dtype_ok)
      mismatched.push_back(fmt::format("{}: expected {} {}, found {} {}", name, shape_str(dst.shape()),
                                       dtype_name(dst.dtype()), shape_str(src.shape()), dtype_name(src.dtype())));
  }
  if (!options.allow_unexpected) {
    for (const auto& [name, src] : loaded)
      if (expected.find(name) == expected.end()) unexpected.push_back(name);
  }

  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::string msg = fmt::format("checkpoint '{}' does not match the model ({} missing, {} unexpected, {} "
                                  "shape/dtype mismatches):", file, missing.size(), unexpected.size(),
                                  mismatched.size());
    for (const auto& n : missing) msg += fmt::format("\n  missing: {}", n);
    for (const auto& n : unexpected) msg += fmt::format("\n  unexpected: {}", n);
    for (const auto& m : mismatched) msg += fmt::format("\n  mismatch: {}", m);
    HYDRA_CHECK_ENV(false, "{}", msg);
  }

  for (const auto& [name, dst] : expected) {
    const auto it = loaded.find(name);
    if (it == loaded.end()) continue;
    Tensor target = dst.detach();
    target.copy_(it->second);
  }
}

void load_safetensors_into(const std::string& path, const std::map<std::string, Tensor>& expected,
                           const LoadIntoOptions& options) {
  load_into(load_safetensors(path), expected, path, options);
}

}  // namespace hydra
