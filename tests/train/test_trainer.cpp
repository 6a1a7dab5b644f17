// train/trainer.h: exact resume, resume checks, corrupt-checkpoint fallback, NaN stop, stop flag, run folder.
#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/test_util.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/reduce.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

using namespace hydra;
using namespace hydra::train;
using hydra::test::check_throws_with;
namespace fs = std::filesystem;

namespace {

// A tiny model on a small generated text, fast enough for many short runs.
std::string corpus_path() {
  const fs::path p = fs::temp_directory_path() / "hydra_test_trainer_corpus.txt";
  if (!fs::exists(p)) {
    std::ofstream out(p);
    for (int i = 0; i < 400; ++i) out << "To be, or not to be: line " << i * 7919 % 1000 << " of the play.\n";
  }
  return p.string();
}

std::string fresh_dir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("hydra_test_trainer_" + name);
  fs::remove_all(p);
  return p.string();
}

TrainConfig tiny(const std::string& run_dir, const std::vector<std::string>& extra = {}) {
  const std::string text = R"(model:
  vocab_size: 256
  d_model: 32
  n_layers: 2
  n_heads: 2
  swa_every: 2
  swa_window: 8
  dn_chunk_size: 8
data:
  format: text
  seq_len: 24
  val_fraction: 0.1
optim:
  name: adamw
  lr: 1.0e-2
  min_lr: 1.0e-3
  warmup_steps: 3
train:
  steps: 20
  batch_size: 2
  grad_accum: 2
  seed: 5
  device: cpu
  log_every: 1
  progress: false
eval:
  every: 5
  batches: 1
checkpoint:
  every: 5
  keep: 3
)";
  std::vector<std::string> ov = {"data.path=" + corpus_path(), "train.run_dir=" + run_dir};
  ov.insert(ov.end(), extra.begin(), extra.end());
  return parse_train_config(text, "tiny-test.yaml", "/", ov);
}

TrainResult run(const TrainConfig& c, std::string* log_text = nullptr, const std::atomic<bool>* stop = nullptr) {
  std::ostringstream log;
  TrainResult r = run_training(c, log, stop);
  if (log_text) *log_text = log.str();
  return r;
}

}  // namespace

TEST_CASE("trainer: stop_after then resume gives bitwise the losses of the uninterrupted run") {
  for (const char* opt : {"adamw", "muon"}) {
    CAPTURE(opt);
    const std::string o = std::string("optim.name=") + opt;
    const TrainResult straight = run(tiny(fresh_dir("straight"), {o}));
    REQUIRE(straight.history.size() == 20);
    CHECK(straight.reason == StopReason::Finished);

    const std::string dir = fresh_dir("resumed");
    const TrainResult first = run(tiny(dir, {o, "train.stop_after=10"}));
    CHECK(first.reason == StopReason::StopAfter);
    REQUIRE(first.history.size() == 10);
    const TrainResult second = run(tiny(dir, {o, "train.resume=true", "train.log_every=3"}));
    CHECK(second.first_step == 11);
    REQUIRE(second.history.size() == 10);
    for (size_t i = 0; i < 10; ++i) {
      CHECK(first.history[i].loss == straight.history[i].loss);
      CHECK(second.history[i].step == straight.history[10 + i].step);
      CHECK(second.history[i].loss == straight.history[10 + i].loss);  // bitwise
      CHECK(second.history[i].grad_norm == straight.history[10 + i].grad_norm);
      CHECK(second.history[i].lr == straight.history[10 + i].lr);
    }
    // the loss went down, and the first step ran with lr 0 (SPEC §7.6)
    CHECK(straight.history[0].lr == 0.0);
    CHECK(straight.history[19].loss < straight.history[0].loss);
    // metrics.jsonl holds steps 1..20 once each after the resume
    std::ifstream m(dir + "/metrics.jsonl");
    std::string line;
    int64_t n = 0, last = 0;
    while (std::getline(m, line)) {
      ++n;
      CHECK(line.find("\"tokens_per_s\"") != std::string::npos);
      last = std::stoll(line.substr(line.find("\"step\": ") + 8));
    }
    CHECK(last == 20);
    CHECK(n >= 10 + 4);  // every step of the first part, every third (and eval/last steps) of the second
    CHECK(fs::exists(dir + "/loss.svg"));
    CHECK(fs::exists(dir + "/config.yaml"));
  }
}

TEST_CASE("trainer: resume refuses a changed config and a fresh run refuses a used run folder") {
  const std::string dir = fresh_dir("refuse");
  run(tiny(dir, {"train.stop_after=5"}));
  check_throws_with([&] { run(tiny(dir, {"train.resume=true", "optim.lr=0.02"})); },
                    {"must not change on resume", "optim.lr: 0.01 -> 0.02"});
  check_throws_with([&] { run(tiny(dir)); }, {"already holds checkpoints", "step-5", "train.resume=true"});
  // resuming a finished run does nothing
  run(tiny(dir, {"train.resume=true"}));
  const TrainResult again = run(tiny(dir, {"train.resume=true"}));
  CHECK(again.history.empty());
  CHECK(again.message.find("nothing to do") != std::string::npos);
}

TEST_CASE("trainer: a corrupt newest checkpoint is reported and the previous one resumed") {
  const std::string dir = fresh_dir("corrupt");
  const TrainResult a = run(tiny(dir, {"train.stop_after=10"}));  // checkpoints at 5 and 10
  REQUIRE(list_checkpoints(dir).size() == 2);
  {
    std::fstream f(dir + "/checkpoints/step-10/optimizer.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    f.put('\x7f');
  }
  std::string log;
  const TrainResult b = run(tiny(dir, {"train.resume=true", "train.stop_after=5"}), &log);
  CHECK(log.find("skipping checkpoint step 10") != std::string::npos);
  CHECK(log.find("optimizer.safetensors is corrupt") != std::string::npos);
  CHECK(b.first_step == 6);
  REQUIRE(b.history.size() == 5);
  for (size_t i = 0; i < 5; ++i) CHECK(b.history[i].loss == a.history[5 + i].loss);
}

TEST_CASE("trainer: a non-finite loss stops the run and keeps the last good checkpoint") {
  const std::string dir = fresh_dir("nan");
  std::string log;
  const TrainResult r =
      run(tiny(dir, {"optim.lr=1e30", "optim.min_lr=1e30", "optim.warmup_steps=0", "checkpoint.every=1"}), &log);
  CHECK(r.reason == StopReason::NonFinite);
  CHECK(r.message.find("step ") != std::string::npos);
  CHECK(r.message.find("last good checkpoint") != std::string::npos);
  const auto cks = list_checkpoints(dir);
  REQUIRE(!cks.empty());
  CHECK(cks.front().first == r.last_step);
  CHECK(r.last_step < 20);
  Checkpoint ok = read_checkpoint(cks.front().second);  // verifies
  CHECK(ok.state.step == r.last_step);
}

TEST_CASE("trainer: the stop flag finishes the step and writes a checkpoint") {
  const std::string dir = fresh_dir("signal");
  std::atomic<bool> stop{true};
  const TrainResult r = run(tiny(dir), nullptr, &stop);
  CHECK(r.reason == StopReason::Signal);
  CHECK(r.history.size() == 1);
  REQUIRE(list_checkpoints(dir).size() == 1);
  CHECK(list_checkpoints(dir).front().first == 1);
}

TEST_CASE("trainer: the loss-curve SVG has the train line and the validation points") {
  const std::string svg = loss_curve_svg(
      "{\"step\": 1, \"loss\": 5.5}\n{\"step\": 2, \"loss\": 4.0, \"val_loss\": 4.2}\n{\"step\": 3, \"loss\": null}\n",
      "a <title>");
  CHECK(svg.rfind("<svg", 0) == 0);
  CHECK(svg.find("<polyline") != std::string::npos);
  CHECK(svg.find("<circle") != std::string::npos);
  CHECK(svg.find("a &lt;title&gt;") != std::string::npos);
}

TEST_CASE("trainer: init_from starts from another run's weights with a fresh optimizer, and refuses a different model") {
  const std::string src = fresh_dir("init_src");
  const TrainResult a = run(tiny(src));
  REQUIRE(a.reason == StopReason::Finished);
  // The first step of a warmup schedule has lr 0, so a one-step run keeps the weights it started from: its
  // checkpoint must hold exactly the source run's final weights (and a model key that builds no tensor may change).
  const std::string dst = fresh_dir("init_dst");
  std::string log;
  const TrainResult b = run(tiny(dst, {"train.init_from=" + src, "train.steps=1", "model.dn_chunk_size=4"}), &log);
  REQUIRE(b.reason == StopReason::Finished);
  CHECK(b.first_step == 1);
  CHECK(b.history[0].lr == 0.0);
  CHECK(log.find("init from") != std::string::npos);
  CHECK(log.find("step-20") != std::string::npos);
  CHECK(log.find("model.dn_chunk_size: 8 -> 4") != std::string::npos);
  const Checkpoint from = read_checkpoint(src + "/checkpoints/step-20");
  const Checkpoint to = read_checkpoint(dst + "/checkpoints/step-1");
  REQUIRE(from.model.size() == to.model.size());
  for (const auto& [name, t] : from.model) {
    CAPTURE(name);
    REQUIRE(to.model.count(name) == 1);
    CHECK(max(abs(sub(test::host64(t), test::host64(to.model.at(name))))).item() == 0.0);
  }
  // A fresh model would start elsewhere: the same one-step run without init_from differs from the source weights.
  const TrainResult c = run(tiny(fresh_dir("init_none"), {"train.steps=1"}));
  CHECK(c.history[0].loss != b.history[0].loss);

  check_throws_with([&] { run(tiny(fresh_dir("init_bad1"), {"train.init_from=" + src, "model.d_model=16"})); },
                    {"train.init_from", "do not fit", "embed.weight", "[256, 32]", "[256, 16]"});
  check_throws_with([&] { run(tiny(fresh_dir("init_bad2"), {"train.init_from=" + src, "model.swa_every=1"})); },
                    {"train.init_from", "deltanet,swa", "swa,swa", "must agree"});
  check_throws_with([&] { run(tiny(fresh_dir("init_bad3"), {"train.init_from=" + src + "/nothing"})); },
                    {"train.init_from", "does not exist"});
}

TEST_CASE("trainer: next_token_loss runs the model on L of the L + 1 tokens and equals lm_loss of the whole row") {
  // Odd lengths (a partial DeltaNet chunk either way), with and without MTP (which takes the whole row), float64.
  for (int mtp : {0, 2}) {
    HydraConfig c;
    c.vocab_size = 50, c.d_model = 16, c.n_layers = 2, c.n_heads = 2, c.swa_every = 2, c.swa_window = 4;
    c.dn_chunk_size = 4, c.mtp_depth = mtp;
    const auto model = make_language_model(c, 3);
    model->to(DType::Float64);
    Generator gen(hydra::test::base_seed() + static_cast<uint64_t>(mtp));
    for (int64_t T : {2, 9, 14}) {
      CAPTURE(mtp);
      CAPTURE(T);
      const Tensor ids = randint(0, c.vocab_size, {3, T}, gen);
      ForwardOptions fwd;
      fwd.compute_mtp = mtp > 0;
      const ForwardResult full = model->forward(ids, fwd);
      Tensor want = lm_loss(full.logits, ids);
      if (full.mtp_aux_loss.defined()) want = add(want, full.mtp_aux_loss);
      const Tensor got = next_token_loss(*model, ids, fwd);
      CHECK(got.item() == doctest::Approx(want.item()).epsilon(1e-12));
    }
  }
  hydra::test::check_throws_with([] {
    HydraConfig c;
    c.vocab_size = 50, c.d_model = 16, c.n_layers = 2, c.n_heads = 2, c.swa_every = 2, c.swa_window = 4;
    const auto model = make_language_model(c, 3);
    next_token_loss(*model, zeros({2, 1}, DType::Int64));
  }, {"next_token_loss", "[2, 1]"});
}
