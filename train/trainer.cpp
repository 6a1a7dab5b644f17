// The training loop, logging, metrics, plot and resume (trainer.h).
#include "train/trainer.h"

#include <fmt/format.h>
#include <omp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <ostream>
#include <sstream>
#include <tuple>

#include "autograd/autograd.h"
#include "autograd/profile.h"
#include "hydra/model.h"
#include "nn/precision.h"
#include "optim/optim.h"
#include "tensor/check.h"
#include "tensor/cuda/backend.h"
#include "tensor/ops/fused.h"
#include "tensor/ops/indexing.h"
#include "tensor/ops/reduce.h"
#include "train/checkpoint.h"
#include "train/data.h"

namespace hydra::train {

namespace fs = std::filesystem;

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::Finished: return "finished";
    case StopReason::StopAfter: return "stop_after";
    case StopReason::Signal: return "signal";
    case StopReason::NonFinite: return "non-finite";
  }
  return "?";
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string hms(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60);
  return fmt::format("{}:{:02}", t / 60, t % 60);
}

std::string human_count(double n) {
  if (n >= 1e9) return fmt::format("{:.2f}B", n / 1e9);
  if (n >= 1e6) return fmt::format("{:.2f}M", n / 1e6);
  if (n >= 1e3) return fmt::format("{:.1f}K", n / 1e3);
  return fmt::format("{:.0f}", n);
}

// JSON number: shortest round-trip digits; non-finite values as null.
std::string jnum(double v) { return std::isfinite(v) ? fmt::format("{}", v) : std::string("null"); }

std::string peak_memory(const Device& dev) {
  if (dev.is_cuda()) return fmt::format("{:.0f} MB", cuda::memory_stats(dev.index).peak_in_use_bytes / 1e6);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return fmt::format("{:.0f} MB RSS", ru.ru_maxrss / 1024.0);  // ru_maxrss is in KiB on Linux
}

// Parameters per top-level module, blocks grouped by mixer type.
std::string parameter_summary(const LanguageModel& model) {
  std::map<std::string, int64_t> by;
  std::vector<std::string> order;
  const bool dense = model.arch() == "transformer";
  const auto types = model.config().resolved_layer_types();
  auto block_type = [&](int64_t i) -> std::string {
    return dense ? std::string("transformer") : layer_type_name(types[static_cast<size_t>(i)]);
  };
  std::map<std::string, int64_t> block_counts;
  for (int64_t i = 0; i < model.config().n_layers; ++i) block_counts[block_type(i)] += 1;
  for (const auto& [name, p] : model.named_parameters()) {
    std::string key = name.substr(0, name.find('.'));
    if (key == "blocks") {
      const size_t a = name.find('.') + 1;
      const int64_t i = std::stoll(name.substr(a, name.find('.', a) - a));
      key = fmt::format("blocks[{}]", block_type(i));
    }
    if (!by.count(key)) order.push_back(key);
    by[key] += p.numel();
  }
  std::string s;
  for (const auto& k : order) {
    std::string label = k;
    if (k.rfind("blocks[", 0) == 0) {
      const std::string t = k.substr(7, k.size() - 8);
      label = fmt::format("{} block{} ×{}", t, "", block_counts[t]);
    }
    s += fmt::format("{}{} {}", s.empty() ? "" : ", ", label, human_count(static_cast<double>(by[k])));
  }
  return s;
}

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& cfg, const nn::NamedTensors& params,
                                                 std::string& description) {
  const OptimConfig& o = cfg.optim;
  if (o.name == "muon") {
    optim::HybridOptions h;
    h.muon_lr = o.muon_lr;
    h.muon_momentum = o.muon_momentum;
    h.muon_weight_decay = 0.0;
    h.adamw_lr = o.lr;
    h.adamw_beta1 = o.beta1;
    h.adamw_beta2 = o.beta2;
    h.adamw_weight_decay = o.weight_decay;
    h.adamw_eps = o.eps;
    auto opt = std::make_unique<optim::HybridMuonAdamW>(params, h);
    int64_t n_muon = 0, n_adamw = 0;
    for (const auto& [name, route] : opt->routes()) (route == optim::HybridRoute::Muon ? n_muon : n_adamw) += 1;
    description = fmt::format("muon hybrid (Muon lr {} μ {} on {} matrices; AdamW lr {} on {} tensors)", o.muon_lr,
                              o.muon_momentum, n_muon, o.lr, n_adamw);
    return opt;
  }
  optim::AdamWOptions a;
  a.lr = o.lr;
  a.beta1 = o.beta1;
  a.beta2 = o.beta2;
  a.eps = o.eps;
  a.weight_decay = o.weight_decay;
  auto groups = optim::adamw_param_groups(params, a);
  description = fmt::format("adamw (lr {}, betas ({}, {}), wd {} on {} tensors, none on {})", o.lr, o.beta1, o.beta2,
                            o.weight_decay, groups[0].params.size(), groups[1].params.size());
  return std::make_unique<optim::AdamW>(std::move(groups));
}

// Fixed validation windows: eval.batches × batch_size starts spread evenly over the validation split.
std::vector<Batch> validation_batches(const WindowSampler& val, const TrainConfig& cfg) {
  const int64_t L = cfg.data.seq_len, B = cfg.train.batch_size, n = cfg.eval.batches * B;
  const Split s = val.split();
  const int64_t span = s.end - s.begin - (L + 1);
  std::vector<Batch> out;
  for (int64_t b = 0; b < cfg.eval.batches; ++b) {
    std::vector<Tensor> rows;
    for (int64_t r = 0; r < B; ++r) {
      const int64_t i = b * B + r;
      const int64_t start = s.begin + (n > 1 ? span * i / (n - 1) : 0);
      rows.push_back(val.window(start).reshape({1, L + 1}));
    }
    out.push_back({concat(rows, 0), {}, {}});
  }
  return out;
}

struct BatchLoss {
  Tensor loss;    // 0-d: mean cross-entropy over the batch's targets (+ the MTP aux loss when asked)
  Tensor logits;  // task batches: (B, positions, V) logits at the listed positions
  Tensor targets;  // task batches: (B, positions) labels there
};

// Next-token loss of a file batch, or the loss on the labelled positions of a task batch (the LM head applied to
// those positions only).
BatchLoss batch_loss(const LanguageModel& model, const Batch& b, const ForwardOptions& fwd) {
  BatchLoss r;
  if (!b.labels.defined()) {
    r.loss = next_token_loss(model, b.input_ids, fwd);
    return r;
  }
  ForwardOptions opts = fwd;
  opts.compute_logits = false;
  const ForwardResult out = model.forward(b.input_ids, opts);
  ag::profile::Scope scope("forward: LM head at the labelled positions + loss");
  const Tensor pos = from_vector(b.positions, {static_cast<int64_t>(b.positions.size())}).to(out.hidden.device());
  {
    const nn::ComputeDTypeGuard precision(model.compute_dtype());
    r.logits = ag::linear(ag::index_select(out.hidden, 1, pos), nn::to_compute(model.lm_head_weight()));
  }
  r.targets = index_select(b.labels.to(out.hidden.device()), 1, pos);
  r.loss = ag::cross_entropy(r.logits, r.targets);
  if (out.mtp_aux_loss.defined()) r.loss = ag::add(r.loss, out.mtp_aux_loss);
  return r;
}

struct Validation {
  double loss = 0;
  double accuracy = -1;  // task batches only
};

Validation validate(const LanguageModel& model, const std::vector<Batch>& batches) {
  ag::NoGradGuard no_grad;
  Validation v;
  double correct = 0, count = 0;
  for (const Batch& b : batches) {
    const BatchLoss bl = batch_loss(model, b, {});
    v.loss += bl.loss.item();
    if (!bl.logits.defined()) continue;
    const Tensor pred = argmax(bl.logits, -1).to(kCPU).contiguous();
    const std::vector<int64_t> p = pred.to_vector<int64_t>(), t = bl.targets.to(kCPU).contiguous().to_vector<int64_t>();
    for (size_t i = 0; i < t.size(); ++i)
      if (t[i] != kDefaultIgnoreIndex) correct += p[i] == t[i], count += 1;
  }
  v.loss /= static_cast<double>(batches.size());
  if (count > 0) v.accuracy = correct / count;
  return v;
}

// Rewrites metrics.jsonl keeping only records of steps ≤ `upto` (resume), atomically.
void truncate_metrics(const fs::path& path, int64_t upto) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  std::istringstream in(read_text_file(path.string()));
  std::string line, kept;
  while (std::getline(in, line)) {
    const size_t p = line.find("\"step\":");
    if (p == std::string::npos) continue;
    if (std::stoll(line.substr(p + 7)) <= upto) kept += line + "\n";
  }
  write_text_file_atomic(path.string(), kept);
}

class ProgressBar {
 public:
  ProgressBar(bool on, int64_t total) : on_(on && isatty(STDERR_FILENO)), total_(total) {}
  void draw(int64_t step, double loss, double eta_s) {
    if (!on_) return;
    const int width = 30;
    const int filled = static_cast<int>(width * std::min<double>(1.0, static_cast<double>(step) / total_));
    fmt::print(stderr, "\r[{}{}] {}/{} loss {:.4f} eta {}\033[K", std::string(filled, '#'),
               std::string(width - filled, '.'), step, total_, loss, hms(eta_s));
    std::fflush(stderr);
  }
  void clear() {
    if (!on_) return;
    fmt::print(stderr, "\r\033[K");
    std::fflush(stderr);
  }

 private:
  bool on_;
  int64_t total_;
};

// train.init_from: loads a checkpoint's model weights into `model` (fresh optimizer, schedule and data). The
// architecture must match; every tensor must be present with the model's shape (load_checkpoint_tensors names
// what is missing or mis-shaped). Model keys that differ without changing a tensor (e.g. dn_chunk_size) are
// listed in the returned description.
std::string init_model_from(LanguageModel& model, const TrainConfig& cfg) {
  Checkpoint ck;
  try {
    ck = resolve_checkpoint(cfg.train.init_from);
  } catch (const std::exception& e) {
    HYDRA_CHECK_ENV(false, "train.init_from ({}): {}", cfg.source, e.what());
  }
  const TrainConfig old = parse_train_config(ck.config_yaml, ck.dir + "/config.yaml", "/");
  HYDRA_CHECK(old.model.arch == cfg.model.arch && old.model.layer_list() == cfg.model.layer_list(),
              "train.init_from ({}): the checkpoint {} holds a {} model with layers [{}]; this config builds a {} model "
              "with layers [{}]; they must agree",
              cfg.source, ck.dir, old.model.arch, old.model.layer_list(), cfg.model.arch, cfg.model.layer_list());
  try {
    model.load_checkpoint_tensors(ck.model, ck.dir + "/model.safetensors");
  } catch (const std::exception& e) {
    HYDRA_CHECK(false, "train.init_from ({}): the checkpoint's weights do not fit this config's model: {}", cfg.source,
                e.what());
  }
  std::string changed;
  for (const auto& d : config_diff(old, cfg, /*only_forbidden=*/false))
    if (d.rfind("model.", 0) == 0) changed += (changed.empty() ? "" : "; ") + d;
  return fmt::format("{} (step {}; model weights only: optimizer, schedule and data start fresh){}", ck.dir,
                     ck.state.step, changed.empty() ? "" : "; model keys changed: " + changed);
}

}  // namespace

Tensor next_token_loss(const LanguageModel& model, const Tensor& ids, const ForwardOptions& fwd) {
  HYDRA_CHECK(ids.dim() == 2 && ids.size(1) >= 2, "next_token_loss: ids must be (B, L + 1) with L ≥ 1, got shape {}",
              shape_str(ids.shape()));
  // The MTP heads read their targets from the ids the model sees, up to token L: then the whole row goes in, and
  // lm_loss ignores the last position.
  const bool whole_row = fwd.compute_mtp && model.config().mtp_depth > 0;
  const int64_t T = ids.size(1);
  const ForwardResult out = model.forward(whole_row ? ids : ids.slice(1, 0, T - 1).contiguous(), fwd);
  ag::profile::Scope scope("forward: loss");
  if (!whole_row) return ag::cross_entropy(out.logits, ids.slice(1, 1, T).contiguous().to(out.logits.device()));
  const Tensor loss = lm_loss(out.logits, ids);
  return out.mtp_aux_loss.defined() ? ag::add(loss, out.mtp_aux_loss) : loss;
}

// ---- the run ----------------------------------------------------------------------------------------------

TrainResult run_training(TrainConfig cfg, std::ostream& log, const std::atomic<bool>* stop_flag,
                         const TaskDataFactory& task_data) {
  const auto t_setup = Clock::now();
  if (cfg.train.run_dir.empty()) {
    HYDRA_CHECK(!cfg.train.resume, "{}: train.resume=true needs train.run_dir (the folder of the run to continue)",
                cfg.source);
    const std::time_t now = std::time(nullptr);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
    std::string stem = fs::path(cfg.source).stem().string();
    if (stem.empty() || stem.front() == '<') stem = "run";
    cfg.train.run_dir = (fs::current_path() / "runs" / fmt::format("{}-{}", stem, stamp)).string();
  }
  if (cfg.train.threads > 0) omp_set_num_threads(static_cast<int>(cfg.train.threads));
  const Device device(resolve_model_device(cfg.train.device, "train.device"));
  // Precision (nn/precision.h): bf16 mixed precision on a GPU (auto or bf16), float32 on the CPU (the CPU mixer
  // kernels have no bf16 path, so asking for bf16 there is an error, not a quiet fallback).
  HYDRA_CHECK(!(device.is_cpu() && cfg.train.precision == "bf16"),
              "train.precision: bf16 mixed precision needs a GPU (train.device resolved to cpu); use auto or fp32");
  const std::string precision = device.is_cpu() || cfg.train.precision == "fp32" ? "fp32" : "bf16";

  // Data: windows of a file, or a synthetic task stream from the caller's factory.
  const uint64_t seed = static_cast<uint64_t>(cfg.train.seed);
  const uint64_t data_seed = seed ^ 0x9E3779B97F4A7C15ull;
  std::unique_ptr<BatchSource> sampler;
  std::vector<Batch> val_batches;
  std::string data_desc;
  if (cfg.data.source == "file") {
    std::shared_ptr<TokenSource> src;
    try {
      src = std::make_shared<TokenSource>(cfg.data.format == "text"
                                              ? TokenSource::from_text_file(cfg.data.path)
                                              : TokenSource::from_token_file(cfg.data.path,
                                                                             parse_token_dtype(cfg.data.token_dtype)));
    } catch (const std::exception& e) {
      HYDRA_CHECK_ENV(false, "data.path ({}): {}", cfg.source, e.what());
    }
    Split train_split{0, src->size()}, val_split{};
    if (cfg.data.val_fraction > 0)
      std::tie(train_split, val_split) = train_val_split(*src, cfg.data.val_fraction, cfg.data.seq_len);
    HYDRA_CHECK(train_split.end - train_split.begin >= cfg.data.seq_len + 1,
                "{}: data.path '{}' has {} training tokens, fewer than one window of data.seq_len + 1 = {}",
                cfg.source, cfg.data.path, train_split.end - train_split.begin, cfg.data.seq_len + 1);
    sampler = std::make_unique<WindowSampler>(src, train_split, cfg.data.seq_len, cfg.model.vocab_size, data_seed);
    if (cfg.data.val_fraction > 0) {
      WindowSampler val(src, val_split, cfg.data.seq_len, cfg.model.vocab_size, data_seed);
      val_batches = validation_batches(val, cfg);
    }
    data_desc = fmt::format("{} ({}, {} tokens; train {}, validation {}), windows of {}+1", cfg.data.path,
                            src->format(), src->size(), train_split.end - train_split.begin,
                            val_split.end - val_split.begin, cfg.data.seq_len);
  } else {
    HYDRA_CHECK(static_cast<bool>(task_data),
                "{}: data.source {} is a synthetic task; its generators come with hydra-train and hydra-eval "
                "(eval::task_data_factory())", cfg.source, cfg.data.source);
    TaskData td = task_data(cfg, data_seed);
    sampler = std::move(td.train);
    val_batches = std::move(td.validation);
    data_desc = td.description;
  }
  const bool has_val = !val_batches.empty();

  // Model, optimizer, schedule.
  const std::unique_ptr<LanguageModel> model_ptr = make_language_model(cfg.model, seed);
  LanguageModel& model = *model_ptr;
  if (!device.is_cpu()) model.to(device);
  if (precision == "bf16") model.set_compute_dtype(DType::BFloat16);
  model.set_recompute(cfg.train.recompute);
  model.train();
  const nn::NamedTensors named = model.named_parameters();
  std::vector<Tensor> params;
  for (const auto& [n, p] : named) params.push_back(p);
  std::string opt_desc;
  std::unique_ptr<optim::Optimizer> opt = make_optimizer(cfg, named, opt_desc);
  optim::WarmupCosineSchedule sched(*opt, cfg.optim.warmup_steps, cfg.train.steps, cfg.optim.lr, cfg.optim.min_lr);

  // Run folder and resume.
  const fs::path run_dir(cfg.train.run_dir);
  fs::create_directories(run_dir);
  TrainerState st;
  st.data_seed = data_seed;
  std::vector<std::string> warnings;
  Checkpoint ck;
  const auto existing = list_checkpoints(cfg.train.run_dir);
  bool resumed = false;
  if (cfg.train.resume) {
    if (load_latest_checkpoint(cfg.train.run_dir, ck, warnings)) {
      const TrainConfig old = parse_train_config(ck.config_yaml, ck.dir + "/config.yaml", "/");
      const auto diff = config_diff(old, cfg, /*only_forbidden=*/true);
      if (!diff.empty()) {
        std::string lines;
        for (const auto& d : diff) lines += "\n  " + d;
        HYDRA_CHECK(false,
                    "train.resume: the config differs from the checkpoint's ({}/config.yaml) in keys that must not "
                    "change on resume (old -> new):{}\nOnly train.stop_after, train.log_every, train.progress, "
                    "train.profile, eval.* and checkpoint.* may change.",
                    ck.dir, lines);
      }
      model.load_checkpoint_tensors(ck.model, ck.dir + "/model.safetensors");
      opt->load_state_dict(ck.optimizer);
      st = ck.state;
      sched.set_steps_taken(st.schedule_steps);
      sampler->set_state(st.data_seed, st.data_offset);
      resumed = true;
    } else if (!existing.empty()) {
      std::string w;
      for (const auto& x : warnings) w += "\n  " + x;
      HYDRA_CHECK_ENV(false, "train.resume: no valid checkpoint in '{}/checkpoints':{}", cfg.train.run_dir, w);
    }
  } else {
    HYDRA_CHECK(existing.empty(),
                "train.run_dir '{}' already holds checkpoints (newest: step-{}); set train.resume=true to continue "
                "that run, or choose another train.run_dir",
                cfg.train.run_dir, existing.front().first);
  }
  std::string init_desc;
  if (!resumed && !cfg.train.init_from.empty()) init_desc = init_model_from(model, cfg);
  write_text_file_atomic((run_dir / "config.yaml").string(), cfg.to_yaml());
  const fs::path metrics_path = run_dir / "metrics.jsonl";
  if (resumed) {
    truncate_metrics(metrics_path, st.step);
  } else {
    std::ofstream(metrics_path, std::ios::trunc);
  }
  std::ofstream metrics(metrics_path, std::ios::app);
  HYDRA_CHECK_ENV(metrics.good(), "cannot write '{}'", metrics_path.string());

  // Start-up summary.
  const int64_t tokens_per_step = cfg.train.batch_size * cfg.train.grad_accum * cfg.data.seq_len;
  log << fmt::format("hydra-train: {}\n", cfg.source);
  log << fmt::format("  model       {}\n", cfg.model.summary());
  log << fmt::format("  parameters  {} total ({} without the embedding): {}\n",
                     human_count(static_cast<double>(model.num_parameters())),
                     human_count(static_cast<double>(model.num_parameters(true))), parameter_summary(model));
  log << fmt::format("  device      {}{}, precision {}\n", device.str(),
                     device.is_cpu() ? fmt::format(" ({} threads)", omp_get_max_threads())
                                     : fmt::format(" ({})", cuda::device_name(device.index)),
                     precision);
  log << fmt::format("  data        {}\n", data_desc);
  log << fmt::format("  batch       {} × {} micro-batches × {} tokens = {} tokens/step{}\n", cfg.train.batch_size,
                     cfg.train.grad_accum, cfg.data.seq_len, tokens_per_step,
                     cfg.train.recompute ? "; activations recomputed per block" : "");
  log << fmt::format("  optimizer   {}; warmup {} then cosine to {} over {} steps; clip {}\n", opt_desc,
                     cfg.optim.warmup_steps, cfg.optim.min_lr, cfg.train.steps, cfg.optim.grad_clip);
  log << fmt::format("  build       {} build, {}, CUDA {}, commit {}\n", HYDRA_BUILD_TYPE, HYDRA_CXX_ID,
                     HYDRA_CUDA_BUILT ? "on" : "off", HYDRA_GIT_COMMIT);
  log << fmt::format("  run dir     {}\n", cfg.train.run_dir);
  for (const auto& w : warnings) log << "  warning: " << w << "\n";
  if (resumed) log << fmt::format("  resumed     from {} (step {})\n", ck.dir, st.step);
  if (!init_desc.empty()) log << fmt::format("  init from   {}\n", init_desc);
  log << "--- resolved config (also in run_dir/config.yaml) ---\n" << cfg.to_yaml() << "---\n";
  log << fmt::format("setup took {:.1f} s\n", seconds_since(t_setup));
  log.flush();

  TrainResult res;
  res.run_dir = cfg.train.run_dir;
  res.first_step = st.step + 1;
  res.last_step = st.step;
  if (st.step >= cfg.train.steps) {
    res.message = fmt::format("nothing to do: the run already has {} of train.steps = {} steps", st.step,
                              cfg.train.steps);
    log << res.message << "\n";
    return res;
  }

  if (cfg.train.profile) {
    ag::profile::reset();
    ag::profile::set_enabled(true);
    if (device.is_cuda()) ag::profile::set_sync([idx = device.index] { cuda::synchronize(idx); });
  }
  ProgressBar bar(cfg.train.progress, cfg.train.steps);
  const double clip = cfg.optim.grad_clip > 0 ? cfg.optim.grad_clip : std::numeric_limits<double>::infinity();
  ForwardOptions fwd;
  fwd.compute_mtp = cfg.model.mtp_depth > 0;
  const double elapsed_before = st.elapsed_s;
  const auto t_run = Clock::now();
  double interval_s = 0;
  int64_t interval_steps = 0, run_steps = 0, interval_tokens = 0, run_tokens = 0;
  double run_step_s = 0;

  auto save = [&]() {
    Checkpoint out;
    out.model = model.checkpoint_tensors();
    out.optimizer = opt->state_dict();
    out.state = st;
    out.state.data_seed = sampler->seed();
    out.state.data_offset = sampler->offset();
    out.state.schedule_steps = sched.steps_taken();
    out.state.elapsed_s = elapsed_before + seconds_since(t_run);
    out.config_yaml = cfg.to_yaml();
    res.last_checkpoint = write_checkpoint(cfg.train.run_dir, out, cfg.checkpoint.keep);
  };

  while (true) {
    const auto t0 = Clock::now();
    const int64_t step = st.step + 1;
    const double lr_used = cfg.optim.lr * opt->lr_factor();
    opt->zero_grad();
    double loss_sum = 0;
    int64_t step_tokens = 0;  // predicted-from positions this step (task lengths may vary per step)
    for (int64_t micro = 0; micro < cfg.train.grad_accum; ++micro) {
      const Batch batch = sampler->next(cfg.train.batch_size);
      step_tokens += batch.input_ids.size(0) * (batch.input_ids.size(1) - (batch.labels.defined() ? 0 : 1));
      const Tensor loss = ag::mul(batch_loss(model, batch, fwd).loss, 1.0 / static_cast<double>(cfg.train.grad_accum));
      ag::backward(loss);
      loss_sum += loss.item();
    }
    double gnorm = 0;
    {
      ag::profile::Scope scope("optimizer: clip");
      gnorm = optim::clip_grad_norm(params, clip);
    }
    if (!std::isfinite(loss_sum) || !std::isfinite(gnorm)) {
      bar.clear();
      const auto cks = list_checkpoints(cfg.train.run_dir);
      res.reason = StopReason::NonFinite;
      res.message = fmt::format(
          "step {}: the loss is {} (gradient norm {}); stopping without applying this step. {}", step, loss_sum, gnorm,
          cks.empty() ? std::string("No checkpoint was written by this run.")
                      : fmt::format("The last good checkpoint is {}", cks.front().second));
      log << res.message << "\n";
      break;
    }
    {
      ag::profile::Scope scope("optimizer: step");
      opt->step();
    }
    sched.step();
    st.step = step;
    st.tokens += step_tokens;
    interval_tokens += step_tokens;
    run_tokens += step_tokens;
    const double step_s = seconds_since(t0);
    interval_s += step_s;
    interval_steps += 1;
    run_steps += 1;
    run_step_s += step_s;

    StepRecord rec;
    rec.step = step;
    rec.loss = loss_sum;
    rec.lr = lr_used;
    rec.grad_norm = gnorm;
    rec.ms_per_step = step_s * 1e3;
    rec.tokens_per_s = static_cast<double>(step_tokens) / step_s;

    const bool last = step >= cfg.train.steps;
    const bool stop_after = cfg.train.stop_after > 0 && run_steps >= cfg.train.stop_after;
    const bool signalled = stop_flag && stop_flag->load();
    if (has_val && ((cfg.eval.every > 0 && step % cfg.eval.every == 0) || last)) {
      ag::profile::Scope scope("validation");
      const Validation v = validate(model, val_batches);
      rec.val_loss = v.loss;
      rec.val_accuracy = v.accuracy;
    }
    const double eta = (cfg.train.steps - step) * (run_step_s / run_steps);
    if (step % cfg.train.log_every == 0 || last || rec.val_loss >= 0 || stop_after || signalled) {
      const double tps = static_cast<double>(interval_tokens) / interval_s;
      bar.clear();
      log << fmt::format("step {:>{}}/{} | loss {:.4f}{}{} | lr {:.3e} | gnorm {:.3f} | {} tok/s | {:.1f} ms/step | "
                         "elapsed {} | eta {} | peak mem {}\n",
                         step, fmt::format("{}", cfg.train.steps).size(), cfg.train.steps, loss_sum,
                         rec.val_loss >= 0 ? fmt::format(" | val {:.4f}", rec.val_loss) : "",
                         rec.val_accuracy >= 0 ? fmt::format(" | val acc {:.4f}", rec.val_accuracy) : "", lr_used, gnorm,
                         human_count(tps), interval_s * 1e3 / interval_steps,
                         hms(elapsed_before + seconds_since(t_run)), hms(eta), peak_memory(device));
      log.flush();
      metrics << fmt::format("{{\"step\": {}, \"loss\": {}, \"lr\": {}, \"grad_norm\": {}, \"tokens_per_s\": {}, "
                             "\"ms_per_step\": {}, \"elapsed_s\": {}{}{}}}\n",
                             step, jnum(loss_sum), jnum(lr_used), jnum(gnorm), jnum(tps),
                             jnum(interval_s * 1e3 / interval_steps), jnum(elapsed_before + seconds_since(t_run)),
                             rec.val_loss >= 0 ? fmt::format(", \"val_loss\": {}", jnum(rec.val_loss)) : "",
                             rec.val_accuracy >= 0 ? fmt::format(", \"val_accuracy\": {}", jnum(rec.val_accuracy))
                                                   : "");
      metrics.flush();
      interval_s = 0;
      interval_steps = 0;
      interval_tokens = 0;
    }
    bar.draw(step, loss_sum, eta);
    res.history.push_back(rec);
    res.last_step = step;

    const bool periodic = cfg.checkpoint.every > 0 && step % cfg.checkpoint.every == 0;
    if (periodic || last || stop_after || signalled) {
      ag::profile::Scope scope("checkpoint");
      save();
    }
    if (last) {
      res.reason = StopReason::Finished;
      res.message = fmt::format("finished: {} steps; final checkpoint {}", step, res.last_checkpoint);
      break;
    }
    if (signalled) {
      res.reason = StopReason::Signal;
      res.message = fmt::format("interrupted after step {}: checkpoint {} written; resume with train.resume=true",
                                step, res.last_checkpoint);
      break;
    }
    if (stop_after) {
      res.reason = StopReason::StopAfter;
      res.message = fmt::format("stopping after {} steps of this invocation (train.stop_after) at step {}/{}; "
                                "checkpoint {}; resume with train.resume=true",
                                run_steps, step, cfg.train.steps, res.last_checkpoint);
      break;
    }
  }
  bar.clear();
  metrics.close();
  log << res.message << "\n";
  if (run_steps > 0)
    log << fmt::format("this invocation: {} steps in {:.1f} s, {:.1f} ms/step, {} tok/s\n", run_steps, run_step_s,
                       run_step_s * 1e3 / run_steps, human_count(static_cast<double>(run_tokens) / run_step_s));

  write_text_file_atomic((run_dir / "loss.svg").string(),
                         loss_curve_svg(read_text_file(metrics_path.string()),
                                        fmt::format("{} — {}", cfg.source, cfg.model.summary())));
  log << fmt::format("wrote {}/metrics.jsonl and {}/loss.svg\n", cfg.train.run_dir, cfg.train.run_dir);

  if (cfg.train.profile) {
    ag::profile::set_enabled(false);
    ag::profile::set_sync(nullptr);
    const auto entries = ag::profile::entries();
    log << fmt::format("profile over {} steps ({:.1f} s of steps; forward scopes nest, backward is per autograd "
                       "node):\n",
                       run_steps, run_step_s);
    log << fmt::format("  {:<58} {:>8} {:>11} {:>9} {:>7}\n", "where", "calls", "total ms", "ms/step", "% step");
    for (const auto& e : entries)
      log << fmt::format("  {:<58} {:>8} {:>11.1f} {:>9.2f} {:>6.1f}%\n", e.name, e.calls, e.seconds * 1e3,
                         e.seconds * 1e3 / std::max<int64_t>(1, run_steps), 100.0 * e.seconds / run_step_s);
    log.flush();
  }
  return res;
}

// ---- loss-curve SVG ---------------------------------------------------------------------------------------

std::string loss_curve_svg(const std::string& text, const std::string& title) {
  struct Pt {
    double x, y;
  };
  std::vector<Pt> train, val;
  std::istringstream in(text);
  std::string line;
  auto field = [](const std::string& l, const char* key, double& out) {
    const std::string k = fmt::format("\"{}\": ", key);
    const size_t p = l.find(k);
    if (p == std::string::npos) return false;
    const std::string rest = l.substr(p + k.size());
    if (rest.rfind("null", 0) == 0) return false;
    out = std::stod(rest);
    return std::isfinite(out);
  };
  while (std::getline(in, line)) {
    double s = 0, l = 0, v = 0;
    if (!field(line, "step", s)) continue;
    if (field(line, "loss", l)) train.push_back({s, l});
    if (field(line, "val_loss", v)) val.push_back({s, v});
  }
  const double W = 760, H = 420, ml = 70, mr = 20, mt = 40, mb = 50;
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      W, H, W, H);
  std::string esc;
  for (char c : title) {
    if (c == '<') esc += "&lt;";
    else if (c == '>') esc += "&gt;";
    else if (c == '&') esc += "&amp;";
    else esc += c;
  }
  svg += fmt::format("<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"13\">{}</text>\n", W / 2, esc);
  if (train.empty()) return svg + "<text x=\"380\" y=\"210\" text-anchor=\"middle\">no data</text>\n</svg>\n";
  double x0 = train.front().x, x1 = train.front().x, y0 = train.front().y, y1 = train.front().y;
  for (const auto* pts : {&train, &val})
    for (const Pt& p : *pts) {
      x0 = std::min(x0, p.x), x1 = std::max(x1, p.x), y0 = std::min(y0, p.y), y1 = std::max(y1, p.y);
    }
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  const double pad = 0.05 * (y1 - y0);
  y0 -= pad, y1 += pad;
  auto X = [&](double x) { return ml + (x - x0) / (x1 - x0) * (W - ml - mr); };
  auto Y = [&](double y) { return mt + (y1 - y) / (y1 - y0) * (H - mt - mb); };
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n", ml, mt,
                     W - ml - mr, H - mt - mb);
  for (int i = 0; i <= 5; ++i) {
    const double yv = y0 + (y1 - y0) * i / 5, xv = x0 + (x1 - x0) * i / 5;
    svg += fmt::format("<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", ml,
                       W - mr, Y(yv), Y(yv));
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{:.3f}</text>\n", ml - 6, Y(yv) + 4, yv);
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{:.0f}</text>\n", X(xv), H - mb + 18,
                       xv);
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">step</text>\n", (ml + W - mr) / 2, H - 12);
  svg += fmt::format("<text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">loss</text>\n",
                     (mt + H - mb) / 2, (mt + H - mb) / 2);
  std::string pts;
  for (const Pt& p : train) pts += fmt::format("{:.1f},{:.1f} ", X(p.x), Y(p.y));
  svg += fmt::format("<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"{}\"/>\n", pts);
  for (const Pt& p : val)
    svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"#d62728\"/>\n", X(p.x), Y(p.y));
  svg += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#1f77b4\" stroke-width=\"2\"/>"
                     "<text x=\"{}\" y=\"{}\">train loss</text>\n",
                     W - mr - 150, W - mr - 125, mt + 14, mt + 14, W - mr - 120, mt + 18);
  if (!val.empty())
    svg += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"4\" fill=\"#d62728\"/><text x=\"{}\" y=\"{}\">validation "
                       "loss</text>\n",
                       W - mr - 138, mt + 32, W - mr - 120, mt + 36);
  return svg + "</svg>\n";
}

}  // namespace hydra::train
