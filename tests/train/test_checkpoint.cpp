// train/checkpoint.h: SHA-256, atomic step folders, keep-K, verification and fallback to an older checkpoint.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "tests/test_util.h"
#include "train/checkpoint.h"

using namespace hydra;
using namespace hydra::train;
using hydra::test::check_throws_with;
namespace fs = std::filesystem;

namespace {

std::string fresh_dir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("hydra_test_ckpt_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

Checkpoint make(int64_t step) {
  Checkpoint c;
  c.model["w"] = hydra::test::randn_t({3, 4}, DType::Float32);
  c.optimizer["w.exp_avg"] = hydra::test::randn_t({3, 4}, DType::Float32);
  c.state.step = step;
  c.state.data_seed = 0xFFFFFFFFFFFFFFF1ull;  // above int64: must survive JSON
  c.state.data_offset = 12345;
  c.state.schedule_steps = step;
  c.state.tokens = 99;
  c.config_yaml = "train:\n  steps: 5\n";
  return c;
}

void flip_byte(const std::string& path, std::streamoff at) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(at);
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  f.seekp(at);
  f.write(&c, 1);
}

}  // namespace

TEST_CASE("sha256 matches the FIPS 180-4 test vectors") {
  CHECK(sha256_hex("", 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc", 3) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  CHECK(sha256_hex(two.data(), two.size()) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string million(1000000, 'a');
  CHECK(sha256_hex(million.data(), million.size()) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("checkpoint: write then read gives the same tensors and state and keeps the newest K") {
  const std::string run = fresh_dir("roundtrip");
  for (int64_t s : {2, 4, 6, 8}) write_checkpoint(run, make(s), 2);
  const auto list = list_checkpoints(run);
  REQUIRE(list.size() == 2);
  CHECK(list[0].first == 8);
  CHECK(list[1].first == 6);
  const Checkpoint c = make(10);
  const std::string dir = write_checkpoint(run, c, 2);
  const Checkpoint back = read_checkpoint(dir);
  CHECK(back.state.step == 10);
  CHECK(back.state.data_seed == c.state.data_seed);
  CHECK(back.state.data_offset == 12345);
  CHECK(back.config_yaml == c.config_yaml);
  CHECK(back.model.at("w").to_vector<float>() == c.model.at("w").to_vector<float>());
  CHECK(back.optimizer.at("w.exp_avg").to_vector<float>() == c.optimizer.at("w.exp_avg").to_vector<float>());
  CHECK(list_checkpoints(run).size() == 2);
}

TEST_CASE("checkpoint: a corrupt or incomplete folder is refused and the previous one is used") {
  const std::string run = fresh_dir("corrupt");
  write_checkpoint(run, make(1), 3);
  const std::string newest = write_checkpoint(run, make(2), 3);
  flip_byte(newest + "/model.safetensors", 100);
  check_throws_with([&] { read_checkpoint(newest); }, {newest, "model.safetensors is corrupt", "SHA-256"});
  Checkpoint got;
  std::vector<std::string> warnings;
  REQUIRE(load_latest_checkpoint(run, got, warnings));
  CHECK(got.state.step == 1);
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].find("step 2") != std::string::npos);
  // a folder without SHA256SUMS (a write that never finished) is never loaded
  fs::remove(newest + "/SHA256SUMS");
  check_throws_with([&] { read_checkpoint(newest); }, {"no SHA256SUMS"});
  // leftovers of an interrupted write are not step folders
  fs::create_directories(run + "/checkpoints/.tmp-step-9-123");
  CHECK(list_checkpoints(run).front().first == 2);
  write_checkpoint(run, make(3), 3);
  CHECK(!fs::exists(run + "/checkpoints/.tmp-step-9-123"));
  check_throws_with([&] { read_checkpoint(run + "/checkpoints/step-77"); }, {"step-77", "does not exist"});
}
