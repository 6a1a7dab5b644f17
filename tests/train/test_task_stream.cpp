// Training on synthetic task streams (data.source mqar | needle | qa, eval/task_data.h): exact resume, the
// generator state, the loss on the labelled positions only, validation accuracy, and errors naming the keys.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <stdexcept>

#include "eval/mqar.h"
#include "eval/prefill.h"
#include "eval/task_data.h"
#include "hydra/lm.h"
#include "tensor/ops/indexing.h"
#include "tests/test_util.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

using namespace hydra;
using namespace hydra::train;
namespace fs = std::filesystem;

namespace {

std::string fresh_dir(const std::string& name) {
  // Per process: ctest runs the test cases as parallel processes.
  const fs::path p =
      fs::temp_directory_path() / ("hydra_test_task_stream_" + std::to_string(getpid())) / name;
  fs::remove_all(p);
  return p.string();
}

// A tiny model on a task stream: vocab 64, d 32, two blocks (deltanet, swa).
TrainConfig tiny_task(const std::string& source, const std::string& run_dir,
                      const std::vector<std::string>& extra = {}) {
  const std::string text = R"(model:
  vocab_size: 64
  d_model: 32
  n_layers: 2
  n_heads: 2
  swa_every: 2
  swa_window: 8
  dn_chunk_size: 8
data:
  seq_len: 32
mqar:
  num_kv_pairs: 4
  num_queries: 4
needle:
  num_needles: 2
qa:
  num_facts: 4
  num_queries: 2
optim:
  name: adamw
  lr: 1.0e-2
  min_lr: 1.0e-3
  warmup_steps: 2
train:
  steps: 8
  batch_size: 2
  seed: 3
  device: cpu
  log_every: 1
  progress: false
  threads: 1
eval:
  every: 2
  batches: 2
checkpoint:
  every: 0
  keep: 2
)";
  std::vector<std::string> ov = {"data.source=" + source, "train.run_dir=" + run_dir};
  ov.insert(ov.end(), extra.begin(), extra.end());
  return parse_train_config(text, "task-stream-test.yaml", "/", ov);
}

TrainResult run(const TrainConfig& c, std::string* log_text = nullptr) {
  std::ostringstream log;
  TrainResult r = run_training(c, log, nullptr, eval::task_data_factory());
  if (log_text) *log_text = log.str();
  return r;
}

// Runs f, REQUIREs a std::invalid_argument, CHECKs that its message holds every fragment.
void check_invalid_argument(const std::function<void()>& f, const std::vector<std::string>& fragments) {
  std::string msg;
  bool thrown = false;
  try {
    f();
  } catch (const std::invalid_argument& e) {
    thrown = true;
    msg = e.what();
  } catch (const std::exception& e) {
    FAIL("expected std::invalid_argument, got another exception: " << e.what());
  }
  REQUIRE_MESSAGE(thrown, "no std::invalid_argument thrown");
  for (const auto& frag : fragments) CHECK_MESSAGE(msg.find(frag) != std::string::npos, "'" << frag << "' not in: " << msg);
}

void check_resume_exact(const std::string& source, const std::vector<std::string>& extra) {
  CAPTURE(source);
  const TrainResult straight = run(tiny_task(source, fresh_dir(source + "_straight"), extra));
  REQUIRE(straight.reason == StopReason::Finished);
  REQUIRE(straight.history.size() == 8);

  const std::string dir = fresh_dir(source + "_resumed");
  std::vector<std::string> a = extra, b = extra;
  a.push_back("train.stop_after=4");
  b.push_back("train.resume=true");
  const TrainResult first = run(tiny_task(source, dir, a));
  CHECK(first.reason == StopReason::StopAfter);
  REQUIRE(first.history.size() == 4);
  const TrainResult second = run(tiny_task(source, dir, b));
  CHECK(second.reason == StopReason::Finished);
  CHECK(second.first_step == 5);
  REQUIRE(second.history.size() == 4);
  for (size_t i = 0; i < 4; ++i) {
    CAPTURE(i);
    CHECK(first.history[i].loss == straight.history[i].loss);
    CHECK(second.history[i].step == straight.history[4 + i].step);
    CHECK(second.history[i].loss == straight.history[4 + i].loss);  // bitwise
    CHECK(second.history[i].grad_norm == straight.history[4 + i].grad_norm);
    CHECK(second.history[i].lr == straight.history[4 + i].lr);
    CHECK(second.history[i].val_loss == straight.history[4 + i].val_loss);
    CHECK(second.history[i].val_accuracy == straight.history[4 + i].val_accuracy);
  }
  // the run learned something (not every step's loss equal, all finite)
  for (const auto& h : straight.history) CHECK(std::isfinite(h.loss));
  CHECK(straight.history[0].loss != straight.history[7].loss);
}

}  // namespace

TEST_CASE("task stream: mqar stop_after then resume reproduces the uninterrupted run bit for bit") {
  check_resume_exact("mqar", {});
}

TEST_CASE("task stream: needle with variable training lengths resumes bit for bit") {
  check_resume_exact("needle", {"needle.train_lengths=[32, 48]"});
}

TEST_CASE("task stream: qa resumes bit for bit") { check_resume_exact("qa", {"data.seq_len=48"}); }

TEST_CASE("task stream: qa with variable training lengths resumes bit for bit") {
  check_resume_exact("qa", {"qa.train_lengths=[32, 48]"});
}

TEST_CASE("task stream: the needle source draws both lengths and set_state restores the stream") {
  const TrainConfig cfg = tiny_task("needle", fresh_dir("needle_state"), {"needle.train_lengths=[32, 48]"});
  train::TaskData td = eval::task_data_factory()(cfg, 1234);
  REQUIRE(td.train);
  CHECK(td.validation.size() == 2);
  for (const auto& v : td.validation) {
    CHECK(v.labels.defined());
    CHECK(v.input_ids.size(0) == 2);
  }
  for (int i = 0; i < 3; ++i) td.train->next(2);
  const uint64_t seed = td.train->seed(), offset = td.train->offset();
  std::vector<train::Batch> after;
  std::set<int64_t> lengths;
  for (int i = 0; i < 12; ++i) {
    after.push_back(td.train->next(2));
    const train::Batch& b = after.back();
    const int64_t N = b.input_ids.size(1);
    lengths.insert(N);
    REQUIRE(b.positions.size() == 1);
    CHECK(b.positions[0] == N - 2);
    CHECK(b.labels.size(1) == N);
  }
  CHECK(lengths == std::set<int64_t>{32, 48});  // P(one length missing in 12 draws) = 2^-11

  train::TaskData td2 = eval::task_data_factory()(cfg, 999);  // another seed, then the saved state
  td2.train->set_state(seed, offset);
  for (const auto& b : after) {
    const train::Batch c = td2.train->next(2);
    REQUIRE(c.input_ids.shape() == b.input_ids.shape());
    CHECK(c.input_ids.to_vector<int64_t>() == b.input_ids.to_vector<int64_t>());
    CHECK(c.labels.to_vector<int64_t>() == b.labels.to_vector<int64_t>());
    CHECK(c.positions == b.positions);
  }
}

// qa.train_lengths: each batch one of the lengths, its labels at that length's query positions (SPEC §8.4:
// label[N_h + 4j + 2] with N_h = N − 4Q), and each label the value token right after its position.
TEST_CASE("task stream: the qa source draws every training length with that length's label positions") {
  const TrainConfig cfg = tiny_task("qa", fresh_dir("qa_lengths"), {"qa.train_lengths=[24, 40, 64]"});
  train::TaskData td = eval::task_data_factory()(cfg, 77);
  REQUIRE(td.train);
  CHECK(td.description.find("lengths [24, 40, 64]") != std::string::npos);
  std::set<int64_t> lengths;
  for (int i = 0; i < 24; ++i) {
    const train::Batch b = td.train->next(3);
    const int64_t N = b.input_ids.size(1), Q = cfg.qa.num_queries;
    lengths.insert(N);
    CHECK(b.labels.size(1) == N);
    std::vector<int64_t> want;
    for (int64_t j = 0; j < Q; ++j) want.push_back(N - 4 * Q + 4 * j + 2);
    CHECK(b.positions == want);
    const std::vector<int64_t> ids = b.input_ids.to_vector<int64_t>(), lab = b.labels.to_vector<int64_t>();
    int64_t labelled = 0;
    for (int64_t r = 0; r < 3; ++r)
      for (int64_t t = 0; t < N; ++t) {
        const int64_t l = lab[static_cast<size_t>(r * N + t)];
        if (l == -100) continue;
        ++labelled;
        CHECK(std::find(want.begin(), want.end(), t) != want.end());
        CHECK(l == ids[static_cast<size_t>(r * N + t + 1)]);
      }
    CHECK(labelled == 3 * Q);
  }
  CHECK(lengths == std::set<int64_t>{24, 40, 64});  // P(a length missing in 24 draws) < 3·(2/3)^24 ≈ 2e-4
}

// A qa training length too short for the facts names qa.train_lengths and the length.
TEST_CASE("task stream: a qa training length too short names qa.train_lengths") {
  // K = 4 facts need ⌊N_h/4⌋ ≥ 4 slots with N_h = N − 4Q = N − 8: N = 20 gives 3
  const TrainConfig cfg = tiny_task("qa", fresh_dir("bad_qa_len"), {"qa.train_lengths=[32, 20]"});
  check_invalid_argument([&] { run(cfg); }, {"qa.num_facts", "20", "qa.train_lengths"});
}

TEST_CASE("task stream: a task source without a TaskDataFactory is an error naming data.source") {
  const TrainConfig cfg = tiny_task("mqar", fresh_dir("nofactory"));
  std::ostringstream log;
  hydra::test::check_throws_with([&] { run_training(cfg, log); }, {"data.source", "mqar"});
  CHECK(!fs::exists(fs::path(cfg.train.run_dir) / "checkpoints"));
}

TEST_CASE("task stream: validation loss and accuracy are the CE and argmax accuracy at the labelled positions") {
  // Step 1 runs with lr 0 (warmup), so the validation after step 1 sees the initial model; recompute it by hand
  // from the documented validation batches (seed train.seed + 9999) with a full forward.
  const std::string dir = fresh_dir("valacc");
  const TrainConfig cfg = tiny_task("mqar", dir, {"eval.every=1", "train.steps=2"});
  const TrainResult r = run(cfg);
  REQUIRE(r.history.size() == 2);
  CHECK(r.history[0].lr == 0.0);
  for (const auto& h : r.history) {
    REQUIRE(h.val_loss >= 0);
    CHECK(h.val_accuracy >= 0.0);
    CHECK(h.val_accuracy <= 1.0);
  }

  const eval::MqarConfig m = eval::mqar_config(cfg);
  const std::vector<int64_t> pos = eval::mqar_label_positions(m);
  CHECK(pos == std::vector<int64_t>{8, 10, 12, 14});
  const auto model = make_language_model(cfg.model, static_cast<uint64_t>(cfg.train.seed));
  ag::NoGradGuard no_grad;
  Generator vgen(eval::task_eval_seed(cfg));
  const Tensor pidx = from_vector(pos, {static_cast<int64_t>(pos.size())});
  double loss = 0, correct = 0, count = 0, full_loss = 0;
  for (int64_t b = 0; b < cfg.eval.batches; ++b) {
    const eval::MqarBatch mb = eval::make_mqar_batch(m, cfg.train.batch_size, vgen);
    const Tensor logits = model->forward(mb.input_ids).logits;
    const eval::PositionScore s =
        eval::score_positions(index_select(logits, 1, pidx), index_select(mb.labels, 1, pidx));
    CHECK(s.count == static_cast<double>(cfg.train.batch_size * m.num_queries));
    loss += s.loss_sum / s.count;
    correct += s.correct, count += s.count;
    full_loss += lm_loss(logits, mb.input_ids).item();
  }
  loss /= static_cast<double>(cfg.eval.batches);
  full_loss /= static_cast<double>(cfg.eval.batches);
  CHECK(r.history[0].val_loss == doctest::Approx(loss).epsilon(1e-5));
  CHECK(r.history[0].val_accuracy == doctest::Approx(correct / count).epsilon(1e-12));
  // not the next-token loss over every position (padding zeros after the queries are easy to learn, keys are not)
  CHECK(std::abs(full_loss - loss) > 1e-3);

  // metrics.jsonl carries val_accuracy
  std::ifstream in(dir + "/metrics.jsonl");
  std::string line;
  int with_acc = 0;
  while (std::getline(in, line)) with_acc += line.find("\"val_accuracy\": ") != std::string::npos;
  CHECK(with_acc == 2);
}

TEST_CASE("task stream: the first training loss is the CE at the labelled positions of the first batch") {
  // grad_accum 1: the logged loss of step 1 is the CE of the first batch on the initial model. The batch is the
  // first draw of the factory's stream; the trainer seeds it with train.seed ^ 0x9E3779B97F4A7C15 (trainer.cpp).
  const TrainConfig cfg = tiny_task("mqar", fresh_dir("firstloss"), {"train.steps=1"});
  const TrainResult r = run(cfg);
  REQUIRE(r.history.size() == 1);
  const uint64_t data_seed = static_cast<uint64_t>(cfg.train.seed) ^ 0x9E3779B97F4A7C15ull;
  train::TaskData td = eval::task_data_factory()(cfg, data_seed);
  const train::Batch b = td.train->next(cfg.train.batch_size);
  const auto model = make_language_model(cfg.model, static_cast<uint64_t>(cfg.train.seed));
  ag::NoGradGuard no_grad;
  const Tensor pidx = from_vector(b.positions, {static_cast<int64_t>(b.positions.size())});
  const eval::PositionScore s = eval::score_positions(index_select(model->forward(b.input_ids).logits, 1, pidx),
                                                      index_select(b.labels, 1, pidx));
  CHECK(r.history[0].loss == doctest::Approx(s.loss_sum / s.count).epsilon(1e-5));
}

TEST_CASE("task stream: settings the task cannot satisfy are std::invalid_argument naming the keys") {
  // mqar: 2(P + Q) = 2(16 + 4) = 40 > data.seq_len 32
  {
    const TrainConfig cfg = tiny_task("mqar", fresh_dir("bad_mqar"), {"mqar.num_kv_pairs=16"});
    check_invalid_argument([&] { eval::mqar_config(cfg); }, {"mqar.num_kv_pairs", "data.seq_len"});
    check_invalid_argument([&] { run(cfg); }, {"mqar.num_kv_pairs", "data.seq_len"});
    CHECK(!fs::exists(fs::path(cfg.train.run_dir) / "checkpoints"));
  }
  // mqar: more pairs than keys (⌊V/2⌋ = 4 < P = 8), with a long enough sequence
  {
    const TrainConfig cfg =
        tiny_task("mqar", fresh_dir("bad_mqar_vocab"), {"model.vocab_size=8", "mqar.num_kv_pairs=8",
                                                        "data.seq_len=64"});
    check_invalid_argument([&] { run(cfg); }, {"mqar.num_kv_pairs", "model.vocab_size"});
  }
  // needle: vocabulary 8 with filler 4 leaves no content tokens (V−3 > f+4 fails)
  {
    const TrainConfig cfg = tiny_task("needle", fresh_dir("bad_needle"), {"model.vocab_size=8"});
    check_invalid_argument([&] { run(cfg); }, {"model.vocab_size", "needle"});
  }
  // qa: Q > K
  {
    const TrainConfig cfg = tiny_task("qa", fresh_dir("bad_qa"), {"qa.num_queries=5", "data.seq_len=64"});
    check_invalid_argument([&] { eval::qa_config(cfg); }, {"qa.num_queries", "qa.num_facts", "5"});
    check_invalid_argument([&] { run(cfg); }, {"qa.num_queries", "qa.num_facts", "5"});
  }
}

// needle_config's error names the key the length came from (needle.train_lengths, needle.lengths or data.seq_len).
TEST_CASE("task stream: a needle training length too short names needle.train_lengths") {
  // N ≥ 8K + 4 = 20 with K = 2
  const TrainConfig cfg = tiny_task("needle", fresh_dir("bad_needle_len"), {"needle.train_lengths=[32, 16]"});
  check_invalid_argument([&] { run(cfg); }, {"needle.num_needles", "16", "needle.train_lengths"});
}
