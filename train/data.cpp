#include "train/data.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "tensor/check.h"

namespace hydra::train {

constexpr int32_t kLlmcMagic = 20240520;
constexpr int64_t kLlmcHeaderBytes = 256 * 4;

struct TokenSource::Mapping {
  std::string owned;
  void* addr = nullptr;
  std::size_t len = 0;
  ~Mapping() {
    if (addr) munmap(addr, len);
  }
};

TokenDType parse_token_dtype(const std::string& name) {
  if (name == "uint16") return TokenDType::UInt16;
  if (name == "uint32") return TokenDType::UInt32;
  throw std::invalid_argument(fmt::format("token dtype '{}' is not supported (expected uint16 or uint32)", name));
}

TokenSource TokenSource::from_bytes(std::string bytes, const std::string& name) {
  TokenSource s;
  s.map_ = std::make_shared<Mapping>();
  s.map_->owned = std::move(bytes);
  s.data_ = reinterpret_cast<const unsigned char*>(s.map_->owned.data());
  s.n_ = static_cast<int64_t>(s.map_->owned.size());
  s.path_ = name;
  s.format_ = "text";
  return s;
}

TokenSource TokenSource::from_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot open the text file ({})", path, std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  return from_bytes(ss.str(), path);
}

TokenSource TokenSource::from_token_file(const std::string& path, TokenDType dtype) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw std::runtime_error(fmt::format("{}: cannot open the token file ({})", path, std::strerror(errno)));
  struct stat st{};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw std::runtime_error(fmt::format("{}: cannot stat the token file ({})", path, std::strerror(errno)));
  }
  const int64_t size = static_cast<int64_t>(st.st_size);
  TokenSource s;
  s.map_ = std::make_shared<Mapping>();
  s.path_ = path;
  if (size > 0) {
    void* addr = ::mmap(nullptr, static_cast<std::size_t>(size), PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (addr == MAP_FAILED) throw std::runtime_error(fmt::format("{}: mmap failed ({})", path, std::strerror(errno)));
    s.map_->addr = addr;
    s.map_->len = static_cast<std::size_t>(size);
  } else {
    ::close(fd);
    throw std::runtime_error(fmt::format("{}: the token file is empty", path));
  }
  const auto* bytes = static_cast<const unsigned char*>(s.map_->addr);
  int32_t header[3] = {0, 0, 0};
  if (size >= kLlmcHeaderBytes) std::memcpy(header, bytes, sizeof(header));
  if (size >= kLlmcHeaderBytes && header[0] == kLlmcMagic) {
    HYDRA_CHECK_ENV(header[1] == 1, "{}: llm.c token file version {} is not supported (expected 1)", path, header[1]);
    const int64_t ntok = header[2];
    HYDRA_CHECK_ENV(ntok >= 0 && size == kLlmcHeaderBytes + 2 * ntok,
                    "{}: llm.c token file of {} bytes, but its header announces {} uint16 tokens ({} bytes expected)",
                    path, size, ntok, kLlmcHeaderBytes + 2 * ntok);
    s.data_ = bytes + kLlmcHeaderBytes;
    s.data_offset_ = kLlmcHeaderBytes;
    s.width_ = 2;
    s.n_ = ntok;
    s.format_ = "llm.c";
    return s;
  }
  s.width_ = dtype == TokenDType::UInt16 ? 2 : 4;
  HYDRA_CHECK_ENV(size % s.width_ == 0, "{}: {} bytes is not a whole number of {} tokens ({} bytes each)", path, size,
                  dtype == TokenDType::UInt16 ? "uint16" : "uint32", s.width_);
  s.data_ = bytes;
  s.n_ = size / s.width_;
  s.format_ = dtype == TokenDType::UInt16 ? "uint16" : "uint32";
  return s;
}

int64_t TokenSource::at(int64_t i) const {
  const unsigned char* p = data_ + i * width_;
  if (width_ == 1) return p[0];
  if (width_ == 2) return static_cast<int64_t>(p[0]) | (static_cast<int64_t>(p[1]) << 8);
  return static_cast<int64_t>(p[0]) | (static_cast<int64_t>(p[1]) << 8) | (static_cast<int64_t>(p[2]) << 16) |
         (static_cast<int64_t>(p[3]) << 24);
}

std::pair<Split, Split> train_val_split(const TokenSource& src, double val_fraction, int64_t seq_len) {
  HYDRA_CHECK(val_fraction >= 0 && val_fraction < 1, "{}: validation fraction {} outside [0, 1)", src.path(),
              val_fraction);
  const int64_t n = src.size(), window = seq_len + 1;
  int64_t n_val = 0;
  if (val_fraction > 0)
    n_val = std::max<int64_t>(window, static_cast<int64_t>(static_cast<double>(n) * val_fraction));
  const Split train{0, n - n_val}, val{n - n_val, n};
  HYDRA_CHECK(train.end - train.begin >= window,
              "{}: {} tokens leave {} for training after the validation split ({}), fewer than one window of "
              "seq_len + 1 = {}",
              src.path(), n, train.end - train.begin, n_val, window);
  return {train, val};
}

WindowSampler::WindowSampler(std::shared_ptr<const TokenSource> src, Split split, int64_t seq_len, int64_t vocab,
                             uint64_t seed)
    : src_(std::move(src)), split_(split), seq_len_(seq_len), vocab_(vocab), gen_(seed) {
  HYDRA_CHECK(seq_len >= 1 && vocab >= 1, "WindowSampler: need seq_len ≥ 1 and vocab ≥ 1, got {} and {}", seq_len,
              vocab);
  HYDRA_CHECK(split.begin >= 0 && split.end <= src_->size() && split.end - split.begin >= seq_len + 1,
              "{}: split [{}, {}) of {} tokens is shorter than one window of seq_len + 1 = {}", src_->path(),
              split.begin, split.end, src_->size(), seq_len + 1);
}

void WindowSampler::fill(int64_t start, int64_t* out) const {
  for (int64_t j = 0; j <= seq_len_; ++j) {
    const int64_t id = src_->at(start + j);
    if (id >= vocab_)
      throw std::invalid_argument(fmt::format("{}: token id {} at byte offset {} (token {}) is ≥ vocab_size {}",
                                              src_->path(), id, src_->byte_offset(start + j), start + j, vocab_));
    out[j] = id;
  }
}

Tensor WindowSampler::window(int64_t start) const {
  HYDRA_CHECK(start >= split_.begin && start + seq_len_ + 1 <= split_.end,
              "WindowSampler::window: start {} outside the split [{}, {}) for windows of {}", start, split_.begin,
              split_.end, seq_len_ + 1);
  std::vector<int64_t> ids(static_cast<std::size_t>(seq_len_ + 1));
  fill(start, ids.data());
  return from_vector(ids, {1, seq_len_ + 1});
}

Tensor WindowSampler::next_batch(int64_t batch) {
  HYDRA_CHECK(batch >= 1, "WindowSampler::next_batch: batch must be ≥ 1, got {}", batch);
  const int64_t starts = split_.end - split_.begin - seq_len_;  // valid window starts
  const std::vector<int64_t> r = randint(0, starts, {batch}, gen_).to_vector<int64_t>();
  std::vector<int64_t> ids(static_cast<std::size_t>(batch * (seq_len_ + 1)));
  for (int64_t b = 0; b < batch; ++b) fill(split_.begin + r[static_cast<std::size_t>(b)], ids.data() + b * (seq_len_ + 1));
  return from_vector(ids, {batch, seq_len_ + 1});
}

}  // namespace hydra::train
