// train/data.h: text and token-file sources (raw uint16/uint32, llm.c), splits, random windows, id checks.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "tests/test_util.h"
#include "train/data.h"

using namespace hydra;
using namespace hydra::train;
using hydra::test::check_throws_with;
namespace fs = std::filesystem;

namespace {

std::string tmp(const std::string& name) { return (fs::temp_directory_path() / ("hydra_test_data_" + name)).string(); }

template <typename T>
void write_raw(const std::string& path, const std::vector<T>& v, const std::vector<int32_t>& header = {}) {
  std::ofstream out(path, std::ios::binary);
  if (!header.empty()) out.write(reinterpret_cast<const char*>(header.data()), static_cast<std::streamsize>(header.size() * 4));
  out.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(T)));
}

std::vector<int32_t> llmc_header(int32_t ntok) {
  std::vector<int32_t> h(256, 0);
  h[0] = 20240520, h[1] = 1, h[2] = ntok;
  return h;
}

}  // namespace

TEST_CASE("token files: raw uint16 uint32 and the llm.c format read back the ids") {
  std::vector<uint16_t> a16(1000);
  std::vector<uint32_t> a32(1000);
  for (int i = 0; i < 1000; ++i) a16[i] = static_cast<uint16_t>((i * 37) % 65536), a32[i] = 70000u + 13u * i;
  write_raw(tmp("u16.bin"), a16);
  write_raw(tmp("u32.bin"), a32);
  write_raw(tmp("llmc.bin"), a16, llmc_header(1000));
  const TokenSource s16 = TokenSource::from_token_file(tmp("u16.bin"), TokenDType::UInt16);
  const TokenSource s32 = TokenSource::from_token_file(tmp("u32.bin"), TokenDType::UInt32);
  const TokenSource sl = TokenSource::from_token_file(tmp("llmc.bin"), TokenDType::UInt32);  // magic wins
  CHECK(s16.size() == 1000);
  CHECK(s32.size() == 1000);
  CHECK(sl.size() == 1000);
  CHECK(std::string(sl.format()) == "llm.c");
  for (int i : {0, 1, 500, 999}) {
    CHECK(s16.at(i) == a16[i]);
    CHECK(s32.at(i) == a32[i]);
    CHECK(sl.at(i) == a16[i]);
  }
  CHECK(sl.byte_offset(3) == 1024 + 6);
  for (auto n : {"u16.bin", "u32.bin", "llmc.bin"}) fs::remove(tmp(n));
}

TEST_CASE("token files: size mismatches and missing files are errors naming the file") {
  write_raw(tmp("odd.bin"), std::vector<uint8_t>{1, 2, 3});
  check_throws_with([] { TokenSource::from_token_file(tmp("odd.bin"), TokenDType::UInt16); },
                    {"odd.bin", "3 bytes", "uint16"});
  write_raw(tmp("bad_llmc.bin"), std::vector<uint16_t>(10, 1), llmc_header(11));
  check_throws_with([] { TokenSource::from_token_file(tmp("bad_llmc.bin"), TokenDType::UInt16); },
                    {"bad_llmc.bin", "llm.c", "11 uint16 tokens"});
  check_throws_with([] { TokenSource::from_token_file(tmp("none.bin"), TokenDType::UInt16); }, {"none.bin", "cannot open"});
  check_throws_with([] { TokenSource::from_text_file(tmp("none.txt")); }, {"none.txt", "cannot open"});
  check_throws_with([] { parse_token_dtype("int8"); }, {"int8", "uint16 or uint32"});
  fs::remove(tmp("odd.bin"));
  fs::remove(tmp("bad_llmc.bin"));
}

TEST_CASE("windows: random starts stay in the split and are reproducible from the generator state") {
  std::string text;
  for (int i = 0; i < 5000; ++i) text.push_back(static_cast<char>(i % 251));
  auto src = std::make_shared<TokenSource>(TokenSource::from_bytes(text, "mem"));
  const auto [train, val] = train_val_split(*src, 0.1, 16);
  CHECK(train.begin == 0);
  CHECK(train.end == 4500);
  CHECK(val.begin == 4500);
  CHECK(val.end == 5000);
  WindowSampler a(src, train, 16, 256, 7), b(src, train, 16, 256, 7), c(src, train, 16, 256, 8);
  const Tensor x = a.next_batch(32);
  CHECK(x.shape() == Shape{32, 17});
  CHECK(x.dtype() == DType::Int64);
  const std::vector<int64_t> xv = x.to_vector<int64_t>();
  for (int64_t r = 0; r < 32; ++r)
    for (int64_t j = 1; j < 17; ++j) CHECK(xv[r * 17 + j] == (xv[r * 17 + j - 1] + 1) % 251);  // consecutive bytes
  CHECK(xv == b.next_batch(32).to_vector<int64_t>());
  CHECK(xv != c.next_batch(32).to_vector<int64_t>());
  // Resuming from (seed, offset) continues the same stream.
  const uint64_t off = a.offset();
  const std::vector<int64_t> next = a.next_batch(8).to_vector<int64_t>();
  WindowSampler d(src, train, 16, 256, 123);
  d.set_state(7, off);
  CHECK(d.next_batch(8).to_vector<int64_t>() == next);
  // Validation windows come from the tail only: with ids = positions (a uint32 file) every start is ≥ 4500.
  std::vector<uint32_t> pos(5000);
  for (uint32_t i = 0; i < 5000; ++i) pos[i] = i;
  write_raw(tmp("pos.bin"), pos);
  auto psrc = std::make_shared<TokenSource>(TokenSource::from_token_file(tmp("pos.bin"), TokenDType::UInt32));
  WindowSampler v(psrc, val, 16, 5000, 1), t(psrc, train, 16, 5000, 1);
  int64_t min_val = 1 << 30, max_train_end = 0;
  for (int i = 0; i < 50; ++i) {
    const std::vector<int64_t> w = v.next_batch(4).to_vector<int64_t>(), u = t.next_batch(4).to_vector<int64_t>();
    for (int64_t r = 0; r < 4; ++r) {
      min_val = std::min(min_val, w[r * 17]);
      max_train_end = std::max(max_train_end, u[r * 17 + 16]);
      CHECK(w[r * 17 + 16] == w[r * 17] + 16);
    }
  }
  CHECK(min_val >= 4500);
  CHECK(max_train_end < 4500);
  fs::remove(tmp("pos.bin"));
  check_throws_with([&] { v.window(4400); }, {"start 4400", "[4500, 5000)"});
}

TEST_CASE("windows: an id at or above the vocabulary is an error naming the file and the byte offset") {
  std::vector<uint16_t> ids(300, 5);
  ids[123] = 1000;
  write_raw(tmp("vocab.bin"), ids);
  auto src = std::make_shared<TokenSource>(TokenSource::from_token_file(tmp("vocab.bin"), TokenDType::UInt16));
  WindowSampler s(src, {0, 300}, 299, 512, 1);
  check_throws_with([&] { s.next_batch(1); }, {"vocab.bin", "token id 1000", "byte offset 246", "vocab_size 512"});
  check_throws_with([&] { train_val_split(*src, 0.5, 200); }, {"vocab.bin", "fewer than one window"});
  fs::remove(tmp("vocab.bin"));
}

TEST_CASE("text source: the shipped tinyshakespeare loads as bytes") {
  const fs::path p = fs::path(hydra::test::test_data_path("")).parent_path().parent_path().parent_path() / "data" /
                     "tinyshakespeare.txt";
  const TokenSource s = TokenSource::from_text_file(p.string());
  CHECK(s.size() > 1000000);
  CHECK(s.at(0) == 'F');  // "First Citizen:"
}
