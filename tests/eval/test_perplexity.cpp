// eval/perplexity.h: the loss of a hydra-train checkpoint on a file, against the same windows evaluated by hand.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <sstream>

#include "eval/perplexity.h"
#include "hydra/model.h"
#include "tests/test_util.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

using namespace hydra;
using hydra::test::check_throws_with;
namespace fs = std::filesystem;

TEST_CASE("perplexity of a trained checkpoint equals the windows evaluated by hand") {
  const fs::path dir = fs::temp_directory_path() / "hydra_test_perplexity";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string text_path = (dir / "text.txt").string();
  {
    std::ofstream out(text_path);
    for (int i = 0; i < 60; ++i) out << "All the world's a stage, and all the men and women merely players " << i << ".\n";
  }
  const std::string cfg_text = R"(model:
  vocab_size: 256
  d_model: 32
  n_layers: 2
  n_heads: 2
  swa_every: 2
  swa_window: 8
  dn_chunk_size: 8
data:
  seq_len: 24
optim:
  lr: 1.0e-2
  warmup_steps: 2
train:
  steps: 6
  batch_size: 2
  device: cpu
  progress: false
eval:
  batches: 1
)";
  const train::TrainConfig cfg = train::parse_train_config(
      cfg_text, "ppl-test.yaml", "/", {"data.path=" + text_path, "train.run_dir=" + (dir / "run").string()});
  std::ostringstream log;
  train::run_training(cfg, log);

  eval::PerplexityOptions o;
  o.checkpoint = (dir / "run").string();  // a run folder: its newest checkpoint
  o.data = text_path;
  o.seq_len = 16;
  o.batch_size = 3;
  o.max_tokens = 200;  // 200 tokens: 12 full windows of 17 and a tail of 9 (199 predictions)
  o.device = "cpu";
  const eval::PerplexityResult r = eval::run_perplexity(o);
  CHECK(r.step == 6);
  CHECK(r.tokens == 199);
  REQUIRE(r.bits_per_byte.has_value());
  CHECK(*r.bits_per_byte == doctest::Approx(r.mean_loss / std::numbers::ln2).epsilon(1e-12));
  CHECK(r.perplexity == doctest::Approx(std::exp(r.mean_loss)).epsilon(1e-12));

  // By hand: the same model, windows [16k, 16k + 16], summed per-token losses.
  const train::Checkpoint ck = train::read_checkpoint(r.checkpoint_dir);
  HydraLM m(cfg.model);
  m.load_state_dict(ck.model, "model");
  ag::NoGradGuard no_grad;
  std::string bytes;
  {
    std::ifstream in(text_path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  double total = 0;
  int64_t preds = 0;
  for (int64_t s = 0; s + 1 < 200; s += 16) {
    const int64_t len = std::min<int64_t>(17, 200 - s);
    std::vector<int64_t> ids;
    for (int64_t i = 0; i < len; ++i) ids.push_back(static_cast<unsigned char>(bytes[static_cast<size_t>(s + i)]));
    const Tensor t = from_vector(ids, {1, len});
    total += lm_loss(m.forward(t).logits, t).item() * static_cast<double>(len - 1);
    preds += len - 1;
  }
  CHECK(preds == 199);
  CHECK(r.mean_loss == doctest::Approx(total / static_cast<double>(preds)).epsilon(1e-5));  // batching: fp32 sums

  // a step folder works too; errors name what is wrong
  o.checkpoint = r.checkpoint_dir;
  CHECK(eval::run_perplexity(o).mean_loss == doctest::Approx(r.mean_loss).epsilon(1e-12));
  o.checkpoint = (dir / "nothing").string();
  check_throws_with([&] { eval::run_perplexity(o); }, {"nothing", "does not exist"});
  o.checkpoint = r.checkpoint_dir;
  o.data = (dir / "missing.txt").string();
  check_throws_with([&] { eval::run_perplexity(o); }, {"missing.txt"});
}
