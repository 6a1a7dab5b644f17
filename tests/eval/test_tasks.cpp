// eval/tasks.h: hydra-eval mqar | needle | qa — train-and-evaluate runs with variants, checkpoint evaluation,
// results.json / results.md / plots, error messages, and the accuracy of an untrained model.
#include <doctest/doctest.h>

#include <cmath>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>

#include "eval/report.h"
#include "eval/tasks.h"
#include "hydra/lm.h"
#include "tests/test_util.h"
#include "train/checkpoint.h"
#include "train/config.h"

using namespace hydra;
using hydra::eval::Json;
using hydra::test::check_throws_with;
namespace fs = std::filesystem;

namespace {

// Per process: ctest runs every test case as its own process, in parallel, and several cases train into folders.
fs::path test_root() { return fs::temp_directory_path() / ("hydra_test_tasks_" + std::to_string(getpid())); }

std::string fresh_dir(const std::string& name) {
  const fs::path p = test_root() / name;
  fs::remove_all(p);
  return p.string();
}

std::string write_file(const std::string& name, const std::string& text) {
  fs::create_directories(test_root());
  const fs::path p = test_root() / name;
  std::ofstream(p) << text;
  return p.string();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The model and training settings shared by the task configs: vocab 64, d 32, blocks (deltanet, swa).
std::string base_yaml(int64_t n_layers = 2, int64_t steps = 2) {
  return R"(model:
  vocab_size: 64
  d_model: 32
  n_layers: )" + std::to_string(n_layers) + R"(
  n_heads: 2
  swa_every: 2
  swa_window: 8
  dn_chunk_size: 8
  retrieval_chunk_size: 16
  retrieval_top_k: 2
optim:
  name: adamw
  lr: 1.0e-2
  min_lr: 1.0e-3
  warmup_steps: 1
train:
  steps: )" + std::to_string(steps) + R"(
  batch_size: 2
  seed: 1
  device: cpu
  log_every: 1
  progress: false
  threads: 1
checkpoint:
  every: 0
  keep: 1
)";
}

std::string mqar_yaml() {
  return base_yaml(2, 3) + R"(data:
  seq_len: 32
mqar:
  num_kv_pairs: 4
  num_queries: 4
  eval_batches: 2
  eval_batch_size: 3
eval:
  every: 2
  batches: 1
  seed: 5
  variants: [hybrid, transformer]
)";
}

eval::TaskRunResult run_quiet(const eval::TaskRunOptions& o, std::string* log_text = nullptr) {
  std::ostringstream log;
  eval::TaskRunResult r = eval::run_task(o, log);
  if (log_text) *log_text = log.str();
  return r;
}

// The mqar train-and-evaluate run shared by several tests (run once per process).
struct MqarRun {
  std::string config;
  std::string out;
  eval::TaskRunResult result;
};
const MqarRun& mqar_run() {
  static const MqarRun run = [] {
    MqarRun r;
    r.config = write_file("mqar-tiny.yaml", mqar_yaml());
    r.out = fresh_dir("mqar_out");
    eval::TaskRunOptions o;
    o.task = "mqar";
    o.config = r.config;
    o.out = r.out;
    o.command = "hydra-eval mqar --config mqar-tiny.yaml";
    r.result = run_quiet(o);
    return r;
  }();
  return run;
}

std::string flat(const Json& j) { return j.dump(0); }

}  // namespace

TEST_CASE("hydra-eval mqar: train and evaluate two variants, results.json, table and plots") {
  const MqarRun& run = mqar_run();
  const fs::path out(run.out);
  CHECK(run.result.out_dir == fs::absolute(out).lexically_normal().string());
  REQUIRE(fs::exists(out / "results.json"));
  const Json r = Json::parse(read_file((out / "results.json").string()));
  CHECK(r == run.result.results);
  CHECK(r.at("task").as_string() == "mqar");
  CHECK(r.at("mode").as_string() == "train_and_evaluate");
  CHECK(r.at("headline_variant").as_string() == "hybrid");
  CHECK(r.at("device").as_string() == "cpu");
  CHECK(r.at("command").as_string() == "hydra-eval mqar --config mqar-tiny.yaml");
  CHECK(r.at("config").as_string().find("source: \"mqar\"") != std::string::npos);
  const Json& vs = r.at("variants");
  REQUIRE(vs.keys() == std::vector<std::string>{"hybrid", "transformer"});
  CHECK(r.at("accuracy").as_number() == vs.at("hybrid").at("final_accuracy").as_number());

  const train::TrainConfig cfg = train::load_train_config(run.config, {"data.source=mqar"});
  for (const std::string name : {"hybrid", "transformer"}) {
    CAPTURE(name);
    const Json& v = vs.at(name);
    CHECK(v.at("arch").as_string() == (name == std::string("hybrid") ? "hydra" : "transformer"));
    const auto model = make_language_model(train::variant_model(cfg.model, name), 0);
    CHECK(v.at("params").as_int64() == model->num_parameters());
    CHECK(v.at("steps").as_int64() == 3);
    // validation at steps 2 and 3 (eval.every 2, and the last step)
    const Json& h = v.at("history");
    REQUIRE(h.size() == 2);
    CHECK(h.at(0).at("step").as_int64() == 2);
    CHECK(h.at(1).at("step").as_int64() == 3);
    for (size_t i = 0; i < h.size(); ++i) {
      const double a = h.at(i).at("eval_accuracy").as_number();
      CHECK(a >= 0.0);
      CHECK(a <= 1.0);
      CHECK(std::isfinite(h.at(i).at("eval_loss").as_number()));
    }
    const Json& m = v.at("metrics");
    const double acc = m.at("mqar_accuracy").as_number();
    CHECK(acc >= 0.0);
    CHECK(acc <= 1.0);
    CHECK(m.at("accuracy").as_number() == acc);
    CHECK(v.at("final_accuracy").as_number() == acc);
    CHECK(m.at("answer_positions").as_int64() == 2 * 3 * 4);  // eval_batches · eval_batch_size · Q
    CHECK(m.at("sequences").as_int64() == 6);
    CHECK(m.at("seq_len").as_int64() == 32);
    CHECK(std::isfinite(m.at("mqar_loss").as_number()));
    // the variant's run folder: checkpoint, metrics, config
    const auto cks = train::list_checkpoints((out / name).string());
    REQUIRE(cks.size() == 1);
    CHECK(cks.front().first == 3);
    CHECK(fs::exists(out / name / "metrics.jsonl"));
    CHECK(fs::exists(out / name / "config.yaml"));
  }
  CHECK(fs::exists(out / "mqar_accuracy.svg"));
  CHECK(fs::exists(out / "mqar_curves.svg"));
  CHECK(read_file((out / "mqar_accuracy.svg").string()).rfind("<svg", 0) == 0);
  const Json& plots = r.at("plots");
  REQUIRE(plots.size() == 2);
  CHECK(plots.at(0).as_string() == "mqar_accuracy.svg");
  REQUIRE(fs::exists(out / "results.md"));
  const std::string md = read_file((out / "results.md").string());
  CHECK(md.find("hybrid") != std::string::npos);
  CHECK(md.find("transformer") != std::string::npos);
  CHECK(md.find(run.result.markdown) != std::string::npos);
  CHECK(run.result.markdown.find("| variant |") != std::string::npos);
}

TEST_CASE("hydra-eval mqar: evaluating a variant's checkpoint gives the train-and-evaluate accuracy exactly") {
  const MqarRun& run = mqar_run();
  const Json& trained = run.result.results.at("variants").at("hybrid").at("metrics");
  eval::TaskRunOptions o;
  o.task = "mqar";
  o.checkpoint = (fs::path(run.out) / "hybrid").string();  // a run folder: its newest checkpoint
  o.out = fresh_dir("mqar_ckpt_eval");
  const eval::TaskRunResult r = run_quiet(o);
  CHECK(r.results.at("mode").as_string() == "evaluate_checkpoint");
  CHECK(r.results.at("headline_variant").as_string() == "checkpoint");
  const Json& m = r.results.at("variants").at("checkpoint").at("metrics");
  CHECK(m.at("checkpoint_step").as_int64() == 3);
  CHECK(m.at("mqar_accuracy").as_number() == trained.at("mqar_accuracy").as_number());
  CHECK(m.at("mqar_loss").as_number() == trained.at("mqar_loss").as_number());
  CHECK(m.at("answer_positions").as_int64() == trained.at("answer_positions").as_int64());
  CHECK(r.results.at("accuracy").as_number() == trained.at("accuracy").as_number());
  CHECK(r.results.at("variants").at("checkpoint").at("params").as_int64() ==
        run.result.results.at("variants").at("hybrid").at("params").as_int64());
  CHECK(fs::exists(fs::path(o.out) / "results.json"));
  CHECK(fs::exists(fs::path(o.out) / "mqar_accuracy.svg"));
  // the same with the task settings from --config: same numbers
  o.config = run.config;
  o.out = fresh_dir("mqar_ckpt_eval_cfg");
  const eval::TaskRunResult r2 = run_quiet(o);
  CHECK(r2.results.at("accuracy").as_number() == trained.at("accuracy").as_number());
  CHECK(r2.results.at("variants").at("checkpoint").at("metrics").at("mqar_loss").as_number() ==
        trained.at("mqar_loss").as_number());
  // the transformer variant's checkpoint (its KV-cache prefill) repeats its numbers too
  o.config.clear();
  o.checkpoint = (fs::path(run.out) / "transformer").string();
  o.out = fresh_dir("mqar_ckpt_eval_tf");
  const Json& trained_tf = run.result.results.at("variants").at("transformer").at("metrics");
  const eval::TaskRunResult rt = run_quiet(o);
  CHECK(rt.results.at("variants").at("checkpoint").at("arch").as_string() == "transformer");
  CHECK(rt.results.at("accuracy").as_number() == trained_tf.at("accuracy").as_number());
  CHECK(rt.results.at("variants").at("checkpoint").at("metrics").at("mqar_loss").as_number() ==
        trained_tf.at("mqar_loss").as_number());
  o.checkpoint = (fs::path(run.out) / "hybrid").string();
  o.config = run.config;
  // a different eval.seed draws other batches (the loss changes)
  o.overrides = {"eval.seed=6"};
  o.out = fresh_dir("mqar_ckpt_eval_seed");
  const eval::TaskRunResult r3 = run_quiet(o);
  CHECK(r3.results.at("variants").at("checkpoint").at("metrics").at("mqar_loss").as_number() !=
        trained.at("mqar_loss").as_number());
}

TEST_CASE("hydra-eval needle: heatmap, random-depth protocol and the readout") {
  const std::string cfg = write_file("needle-tiny.yaml", base_yaml() + R"(data:
  seq_len: 32
needle:
  num_needles: 1
  lengths: [40, 64]
  depths: [0, 1]
  eval_batches: 1
  eval_batch_size: 4
eval:
  every: 0
  batches: 1
)");
  eval::TaskRunOptions o;
  o.task = "needle";
  o.config = cfg;
    o.out = fresh_dir("needle_out");
  const eval::TaskRunResult r = run_quiet(o);
  const Json j = Json::parse(read_file((fs::path(o.out) / "results.json").string()));
  CHECK(j.at("headline_variant").as_string() == "hybrid");
  CHECK(j.at("readout").as_string().find("corrected") != std::string::npos);
  const Json& m = j.at("variants").at("hybrid").at("metrics");
  CHECK(m.at("readout").as_string().find("corrected") != std::string::npos);
  CHECK(flat(m.at("lengths")) == "[40, 64]");
  CHECK(flat(m.at("depths")) == "[0, 1]");
  const Json& heat = m.at("heatmap");
  REQUIRE(heat.size() == 2);
  double sum = 0;
  for (size_t i = 0; i < 2; ++i) {
    REQUIRE(heat.at(i).size() == 2);
    for (size_t d = 0; d < 2; ++d) {
      const double a = heat.at(i).at(d).as_number();
      CHECK(a >= 0.0);
      CHECK(a <= 1.0);
      sum += a;
    }
  }
  CHECK(m.at("accuracy").as_number() == doctest::Approx(sum / 4).epsilon(1e-12));  // equal cell sizes
  CHECK(m.at("sequences_per_cell").as_int64() == 4);
  const Json& rd = m.at("random_depth");
  REQUIRE(rd.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    CHECK(rd.at(i).at("length").as_int64() == (i == 0 ? 40 : 64));
    CHECK(rd.at(i).at("sequences").as_int64() == 4);
    for (const char* k : {"accuracy", "acc_depth_0_25", "acc_depth_25_50", "acc_depth_50_75", "acc_depth_75_100"}) {
      CAPTURE(k);
      REQUIRE(rd.at(i).contains(k));
      CHECK(rd.at(i).at(k).as_number() >= 0.0);
      CHECK(rd.at(i).at(k).as_number() <= 1.0);
    }
  }
  CHECK(fs::exists(fs::path(o.out) / "needle_hybrid.svg"));
  CHECK(r.markdown.find("depth 0") != std::string::npos);
  CHECK(r.markdown.find("corrected") != std::string::npos);

  // the reference's reading (N−3), evaluated from the checkpoint without training again
  eval::TaskRunOptions e;
  e.task = "needle";
  e.checkpoint = (fs::path(o.out) / "hybrid").string();
  e.overrides = {"needle.readout=reference"};
  e.out = fresh_dir("needle_ref");
  const eval::TaskRunResult rr = run_quiet(e);
  CHECK(rr.results.at("readout").as_string().find("reference") != std::string::npos);
  CHECK(rr.results.at("readout").as_string().find("corrected") == std::string::npos);
  CHECK(fs::exists(fs::path(e.out) / "needle_checkpoint.svg"));
  // and the corrected reading from the checkpoint repeats the trained run's heatmap
  e.overrides = {};
  e.out = fresh_dir("needle_corr");
  const eval::TaskRunResult rc = run_quiet(e);
  CHECK(rc.results.at("variants").at("checkpoint").at("metrics").at("heatmap") == heat);
}

TEST_CASE("hydra-eval qa: retrieval and no_retrieval variants, per-depth accuracy") {
  const std::string cfg = write_file("qa-tiny.yaml", base_yaml(3) + R"(data:
  seq_len: 128
qa:
  num_facts: 8
  num_queries: 4
  eval_batches: 2
  eval_batch_size: 2
eval:
  every: 0
  batches: 1
  variants: [retrieval, no_retrieval]
)");
  eval::TaskRunOptions o;
  o.task = "qa";
  o.config = cfg;
    o.out = fresh_dir("qa_out");
  const eval::TaskRunResult r = run_quiet(o);
  const Json j = Json::parse(read_file((fs::path(o.out) / "results.json").string()));
  CHECK(j.at("headline_variant").as_string() == "retrieval");  // no hybrid: the first variant
  const Json& vs = j.at("variants");
  REQUIRE(vs.keys() == std::vector<std::string>{"retrieval", "no_retrieval"});
  CHECK(j.at("accuracy").as_number() == vs.at("retrieval").at("final_accuracy").as_number());
  CHECK(vs.at("retrieval").at("layers").as_string().find("retrieval") != std::string::npos);
  CHECK(vs.at("retrieval").at("layers").as_string() == "deltanet,swa,retrieval");
  CHECK(vs.at("no_retrieval").at("layers").as_string().find("retrieval") == std::string::npos);
  CHECK(vs.at("retrieval").at("params").as_int64() != vs.at("no_retrieval").at("params").as_int64());
  for (const std::string name : {"retrieval", "no_retrieval"}) {
    CAPTURE(name);
    const Json& m = vs.at(name).at("metrics");
    CHECK(m.at("n_queries").as_int64() == 16);
    CHECK(m.at("seq_len").as_int64() == 128);
    int64_t n = 0;
    for (const char* k : {"acc_depth_0_25", "acc_depth_25_50", "acc_depth_50_75", "acc_depth_75_100"}) {
      CAPTURE(k);
      REQUIRE(m.contains(k));
      CHECK(m.at(k).as_number() >= 0.0);
      CHECK(m.at(k).as_number() <= 1.0);
      n += m.at(std::string("n_") + k).as_int64();
    }
    CHECK(n == 16);  // every query falls in one bucket
    CHECK(m.at("accuracy").as_number() >= 0.0);
    CHECK(m.at("accuracy").as_number() <= 1.0);
    CHECK(std::isfinite(m.at("loss").as_number()));
    CHECK(!train::list_checkpoints((fs::path(o.out) / name).string()).empty());
  }
  CHECK(fs::exists(fs::path(o.out) / "qa_depth.svg"));
  CHECK(r.markdown.find("no_retrieval") != std::string::npos);
}

TEST_CASE("hydra-eval tasks: errors name what is wrong and nothing is overwritten") {
  eval::TaskRunOptions o;
  o.task = "nosuchtask";
  o.config = "x.yaml";
  o.out = fresh_dir("err_unknown");
  check_throws_with([&] { run_quiet(o); }, {"unknown task 'nosuchtask'", "mqar", "needle", "qa"});

  o = {};
  o.task = "mqar";
  o.out = fresh_dir("err_neither");
  check_throws_with([&] { run_quiet(o); }, {"--config", "--checkpoint"});

  const MqarRun& run = mqar_run();
  o = {};
  o.task = "mqar";
  o.config = run.config;
  o.overrides = {"train.run_dir=" + fresh_dir("err_rundir_run")};
  o.out = fresh_dir("err_rundir");
  check_throws_with([&] { run_quiet(o); }, {"train.run_dir", "--out"});
  CHECK(!fs::exists(fs::path(o.out) / "hybrid"));

  // a checkpoint evaluated with a config of another vocabulary
  o = {};
  o.task = "mqar";
  o.checkpoint = (fs::path(run.out) / "hybrid").string();
  o.config = write_file("mqar-vocab128.yaml", mqar_yaml());
  o.overrides = {"model.vocab_size=128"};
  o.out = fresh_dir("err_vocab");
  check_throws_with([&] { run_quiet(o); }, {"model.vocab_size", "64", "128"});

  // a second run into the same --out: the folder already holds results
  const fs::path ck_dir = fs::path(train::list_checkpoints((fs::path(run.out) / "hybrid").string()).front().second);
  const auto ck_time = fs::last_write_time(ck_dir / "model.safetensors");
  const std::string results_before = read_file((fs::path(run.out) / "results.json").string());
  const std::string model_before = read_file((ck_dir / "model.safetensors").string());
  o = {};
  o.task = "mqar";
  o.config = run.config;
  o.out = run.out;
  check_throws_with([&] { run_quiet(o); }, {"already holds results", "nothing is overwritten"});
  CHECK(read_file((fs::path(run.out) / "results.json").string()) == results_before);
  CHECK(read_file((ck_dir / "model.safetensors").string()) == model_before);
  CHECK(fs::last_write_time(ck_dir / "model.safetensors") == ck_time);
  CHECK(train::list_checkpoints((fs::path(run.out) / "hybrid").string()).size() == 1);
  CHECK(train::list_checkpoints((fs::path(run.out) / "transformer").string()).size() == 1);

  // evaluate_task with an unknown task
  const train::TrainConfig cfg = train::load_train_config(run.config, {"data.source=mqar"});
  const auto model = make_language_model(cfg.model, 0);
  check_throws_with([&] { eval::evaluate_task("nope", *model, cfg); }, {"unknown task 'nope'"});
}

TEST_CASE("hydra-eval mqar: an untrained model scores near chance with a near-uniform loss") {
  const train::TrainConfig cfg = train::parse_train_config(mqar_yaml(), "mqar-untrained.yaml", "/",
                                                           {"data.source=mqar", "mqar.eval_batches=4",
                                                            "mqar.eval_batch_size=4"});
  const auto model = make_language_model(cfg.model, 11);
  const Json m = eval::evaluate_task("mqar", *model, cfg);
  CHECK(m.at("answer_positions").as_int64() == 4 * 4 * 4);
  CHECK(m.at("sequences").as_int64() == 16);
  const double acc = m.at("accuracy").as_number();
  CHECK(acc == m.at("mqar_accuracy").as_number());
  CHECK(acc < 0.2);
  const double V = 64;
  CHECK(std::abs(m.at("mqar_loss").as_number() - std::log(V / 2)) < 1.0);
  CHECK(m.at("mqar_loss").as_number() < std::log(V) + 0.3);  // tied embeddings, small init: near uniform
  // deterministic: the same batches again
  CHECK(eval::evaluate_task("mqar", *model, cfg) == m);
  // the chunked prefill (chunks of 12, carrying the state) gives the same scores
  train::TrainConfig chunked = cfg;
  chunked.eval.prefill_chunk = 12;
  const Json mc = eval::evaluate_task("mqar", *model, chunked);
  CHECK(mc.at("accuracy").as_number() == acc);
  CHECK(mc.at("mqar_loss").as_number() == doctest::Approx(m.at("mqar_loss").as_number()).epsilon(1e-5));
  // the transformer baseline too
  const auto tf = make_language_model(train::variant_model(cfg.model, "transformer"), 11);
  const Json mt = eval::evaluate_task("mqar", *tf, cfg);
  CHECK(mt.at("accuracy").as_number() < 0.2);
  CHECK(std::abs(mt.at("mqar_loss").as_number() - std::log(V / 2)) < 1.0);
}

// An evaluation length of needle.lengths too short for the needles is an error naming needle.lengths.
TEST_CASE("hydra-eval needle: a too short needle.lengths entry is an error naming needle.lengths") {
  const train::TrainConfig cfg = train::parse_train_config(
      base_yaml() + "data:\n  seq_len: 32\nneedle:\n  num_needles: 2\n  lengths: [32, 16]\n", "needle-short.yaml",
      "/", {"data.source=needle"});
  const auto model = make_language_model(cfg.model, 0);
  check_throws_with([&] { eval::evaluate_task("needle", *model, cfg); },
                    {"needle.num_needles", "16", "needle.lengths"});
}
