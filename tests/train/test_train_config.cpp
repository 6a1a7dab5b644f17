// train/config.h: the training config's schema (unknown keys, types, ranges, lines), overrides, paths, the resolved
// YAML round trip and the resume diff.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "tests/test_util.h"
#include "train/config.h"

using namespace hydra;
using namespace hydra::train;
using hydra::test::check_throws_with;
namespace fs = std::filesystem;

namespace {

const char* kBase = R"(model:
  vocab_size: 256
  d_model: 32
  n_layers: 2
  n_heads: 2
data:
  path: corpus.txt
  seq_len: 16
optim:
  name: adamw
  lr: 1.0e-3
train:
  steps: 20
  run_dir: runs/x
)";

TrainConfig parse(const std::string& text, const std::vector<std::string>& overrides = {}) {
  return parse_train_config(text, "cfg.yaml", "/base/dir", overrides);
}

}  // namespace

TEST_CASE("train config: values and defaults are read and relative paths resolve against the config folder") {
  const TrainConfig c = parse(kBase);
  CHECK(c.model.d_model == 32);
  CHECK(c.data.path == "/base/dir/corpus.txt");
  CHECK(c.train.run_dir == "/base/dir/runs/x");
  CHECK(c.train.steps == 20);
  CHECK(c.optim.lr == doctest::Approx(1e-3));
  CHECK(c.optim.beta2 == doctest::Approx(0.95));  // SPEC §7.1 default
  CHECK(c.checkpoint.keep == 3);
}

TEST_CASE("train config: unknown keys and sections name the file line and suggest the closest key") {
  check_throws_with([] { parse(std::string(kBase) + "eval:\n  evrey: 3\n"); },
                    {"cfg.yaml:16", "unknown key 'eval.evrey'", "did you mean 'eval.every'"});
  check_throws_with([] { parse(std::string(kBase) + "trian:\n  steps: 3\n"); }, {"cfg.yaml:15", "unknown section 'trian'"});
  check_throws_with([] { parse(std::string(kBase) + "checkpoint:\n  keep: 2\n  keep: 3\n"); }, {"appears twice"});
}

TEST_CASE("train config: wrong types and out-of-range values name the key the value and the line") {
  check_throws_with([] { parse(std::string(kBase) + "eval:\n  every: ten\n"); },
                    {"cfg.yaml:16: eval.every", "expected an integer", "'ten'"});
  check_throws_with([] { parse(std::string(kBase) + "checkpoint:\n  keep: 0\n"); },
                    {"cfg.yaml:16: checkpoint.keep", "invalid value 0", "≥ 1"});
  check_throws_with([] { parse(std::string(kBase) + "eval:\n  batches: \"4\"\n"); }, {"eval.batches", "the string \"4\""});
  check_throws_with([] { parse(std::string(kBase) + "checkpoint:\n  every: -1\n"); }, {"checkpoint.every", "-1"});
  std::string t = kBase;
  t.replace(t.find("name: adamw"), 11, "name: sgd");
  check_throws_with([&] { parse(t); }, {"cfg.yaml:10: optim.name", "sgd", "adamw | muon"});
  t = kBase;
  t.replace(t.find("lr: 1.0e-3"), 10, "lr: 0");
  check_throws_with([&] { parse(t); }, {"optim.lr", "invalid value 0"});
  // model keys go through the model's own checks, with lines
  t = kBase;
  t.replace(t.find("n_heads: 2"), 10, "n_heads: 3");
  check_throws_with([&] { parse(t); }, {"cfg.yaml", "n_heads"});
  // cross-section rule: byte text needs vocab ≥ 256
  t = kBase;
  t.replace(t.find("vocab_size: 256"), 15, "vocab_size: 100");
  check_throws_with([&] { parse(t); }, {"data.format is text", "model.vocab_size is 100"});
}

TEST_CASE("train config: missing unreadable and unparsable files name the file") {
  check_throws_with([] { load_train_config("/nonexistent/hydra.yaml"); }, {"/nonexistent/hydra.yaml", "does not exist"});
  check_throws_with([] { parse("model: [1, 2\n"); }, {"cfg.yaml", "unparsable YAML"});
  check_throws_with([] { parse("- a\n- b\n"); }, {"cfg.yaml", "expected a mapping of sections"});
}

TEST_CASE("train config: overrides go through the same checks and win over the file") {
  const TrainConfig c = parse(kBase, {"train.steps=50", "optim.name=muon", "model.n_layers=3", "data.seq_len=8"});
  CHECK(c.train.steps == 50);
  CHECK(c.optim.name == "muon");
  CHECK(c.model.n_layers == 3);
  CHECK(c.data.seq_len == 8);
  check_throws_with([] { parse(kBase, {"train.stpes=5"}); },
                    {"command-line override 'train.stpes=5'", "did you mean 'train.steps'"});
  check_throws_with([] { parse(kBase, {"train.steps=many"}); }, {"command-line override 'train.steps=many'", "integer"});
  check_throws_with([] { parse(kBase, {"train.steps=0"}); }, {"train.steps", "invalid value 0"});
  check_throws_with([] { parse(kBase, {"model.n_heads=3"}); }, {"after the command-line overrides", "n_heads"});
  check_throws_with([] { parse(kBase, {"steps"}); }, {"not of the form section.key=value"});
  // an override path is relative to the current folder
  const TrainConfig d = parse(kBase, {"data.path=other.txt"});
  CHECK(d.data.path == (fs::current_path() / "other.txt").lexically_normal().string());
}

TEST_CASE("train config: the resolved YAML reads back to the same config") {
  const TrainConfig c = parse(kBase, {"optim.lr=0.00123", "train.resume=true", "model.layer_types=[deltanet,swa]"});
  const std::string y = c.to_yaml();
  CHECK(y.find("head_dim: 16") != std::string::npos);  // resolved
  const TrainConfig back = parse_train_config(y, "resolved.yaml", "/elsewhere");
  CHECK(config_diff(c, back, false).empty());
  CHECK(back.to_yaml().substr(back.to_yaml().find('\n')) == y.substr(y.find('\n')));  // past the "from" comment
}

TEST_CASE("train config: the resume diff lists forbidden changes and ignores the allowed ones") {
  const TrainConfig a = parse(kBase);
  const TrainConfig b = parse(kBase, {"train.stop_after=5", "train.log_every=1", "checkpoint.keep=7", "eval.every=3"});
  CHECK(config_diff(a, b, true).empty());
  CHECK(config_diff(a, b, false).size() == 4);
  const TrainConfig c = parse(kBase, {"optim.lr=0.002", "model.d_model=64"});
  const auto d = config_diff(a, c, true);
  REQUIRE(d.size() == 3);
  CHECK(d[0] == "model.d_model: 32 -> 64");
  CHECK(d[1] == "model.head_dim: 16 -> 32");  // the resolved head dim follows d_model
  CHECK(d[2] == "optim.lr: 0.001 -> 0.002");
}

TEST_CASE("train config: the key table lists the required keys of every section") {
  for (const char* k : {"train.steps", "train.stop_after", "train.seed", "train.device", "train.run_dir", "train.resume",
                        "train.log_every", "checkpoint.every", "checkpoint.keep", "optim.name", "model.d_model",
                        "data.path", "eval.every"}) {
    bool found = false;
    for (const auto& row : key_table()) found = found || row.key == k;
    CHECK_MESSAGE(found, k);
  }
  CHECK(key_table_markdown().find("| `train.stop_after` | int |") != std::string::npos);
}

TEST_CASE("train config: the README's key table is the one the code has") {
  const std::string readme = hydra::test::test_data_path("../../README.md");
  std::ifstream in(readme);
  REQUIRE_MESSAGE(in.good(), readme);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK_MESSAGE(text.find(key_table_markdown()) != std::string::npos,
                "README.md's key table differs from key_table_markdown(); regenerate it");
}
