// hydra-eval score (eval/score.h) on the golden files: logits and loss match the reference; bad files and
// missing tensors are clear errors.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "eval/score.h"
#include "nn/safetensors.h"
#include "tests/test_util.h"

using namespace hydra;
using hydra::test::check_throws_with;
using hydra::test::test_data_path;
namespace fs = std::filesystem;

namespace {
fs::path tmp(const std::string& name) { return fs::temp_directory_path() / ("hydra_test_score_" + name); }
}  // namespace

TEST_CASE("score reproduces the golden logits and loss and writes them") {
  for (const std::string name : {"golden_tiny", "golden_b"}) {
    eval::ScoreOptions o;
    o.config = test_data_path(name + ".yaml");
    o.weights = o.input = test_data_path(name + ".safetensors");  // the golden file holds both
    o.out = tmp(name + ".safetensors").string();
    o.device = "cpu";
    const eval::ScoreResult r = eval::run_score(o);
    const auto g = load_safetensors(o.input);
    const auto out = load_safetensors(o.out);
    REQUIRE(out.count("logits") == 1);
    REQUIRE(out.count("loss") == 1);
    CHECK(out.at("logits").dtype() == DType::Float32);
    CHECK(out.at("logits").shape() == g.at("logits").shape());
    CHECK(out.at("loss").dim() == 0);
    const double err = hydra::max(hydra::abs(hydra::sub(out.at("logits"), g.at("logits")))).item();
    INFO(name << " max |Δlogits| " << err);
    CHECK(err <= hydra::test::kGoldenLogitsMaxAbs);
    CHECK(std::abs(out.at("loss").item() - g.at("loss").item()) <= 1e-5);
    CHECK(r.loss == doctest::Approx(out.at("loss").item()));
    fs::remove(o.out);
  }
}

TEST_CASE("score errors name the file and the tensor") {
  eval::ScoreOptions o;
  o.config = test_data_path("golden_tiny.yaml");
  o.weights = o.input = test_data_path("golden_tiny.safetensors");
  o.out = tmp("err.safetensors").string();
  o.device = "cpu";
  // A weights file missing one tensor and with a wrong shape for another.
  auto g = load_safetensors(o.weights);
  g.erase("blocks.1.mixer.o_proj.weight");
  g["norm_f.weight"] = zeros({3});
  const std::string bad = tmp("bad_weights.safetensors").string();
  save_safetensors(bad, g);
  o.weights = bad;
  check_throws_with([&] { eval::run_score(o); },
                    {bad, "missing tensor 'blocks.1.mixer.o_proj.weight'", "'norm_f.weight' has shape [3]"});
  // A truncated (corrupt) weights file.
  {
    const auto size = fs::file_size(test_data_path("golden_tiny.safetensors"));
    std::ifstream in(test_data_path("golden_tiny.safetensors"), std::ios::binary);
    std::string bytes(size / 2, '\0');
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    std::ofstream(bad, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  check_throws_with([&] { eval::run_score(o); }, {bad});
  // Input without input_ids.
  o.weights = test_data_path("golden_tiny.safetensors");
  save_safetensors(bad, {{"ids", zeros({1, 3}, DType::Int64)}});
  o.input = bad;
  check_throws_with([&] { eval::run_score(o); }, {bad, "no tensor 'input_ids'", "ids"});
  save_safetensors(bad, {{"input_ids", zeros({1, 3})}});
  check_throws_with([&] { eval::run_score(o); }, {bad, "'input_ids' is float32", "expected int64"});
  // Out-of-range ids.
  save_safetensors(bad, {{"input_ids", from_vector<int64_t>({1, 2, 100000}, {1, 3})}});
  check_throws_with([&] { eval::run_score(o); }, {"100000", "out of range"});
  // Missing config file, unknown device.
  o.input = test_data_path("golden_tiny.safetensors");
  o.config = tmp("nope.yaml").string();
  check_throws_with([&] { eval::run_score(o); }, {"nope.yaml"});
  o.config = test_data_path("golden_tiny.yaml");
  o.device = "tpu";
  check_throws_with([&] { eval::run_score(o); }, {"--device", "tpu", "auto, cpu or cuda"});
  fs::remove(bad);
  CHECK_FALSE(fs::exists(o.out));
}
