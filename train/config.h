#pragma once
// The training config (training issue): one YAML file with the sections `model`, `data`, `optim`, `train`,
// `eval` and `checkpoint`, one key table (key_table()) shared by hydra-train's --help, the README and hydra-eval.
//
// Rules:
//  * Every key has a type and a valid range. Unknown keys (with a "did you mean" suggestion), wrong types and
//    out-of-range values are std::invalid_argument naming the file, the line, the dotted key and the value. A
//    missing or unreadable file is std::runtime_error naming it; unparsable YAML names the file and line.
//  * Command-line overrides `section.key=value` (the value read as YAML) go through the same readers and checks,
//    after the file; their messages name the override.
//  * Paths inside a config (data.path, train.run_dir) are relative to the config file's folder; load_train_config
//    resolves them to absolute paths (overrides of paths resolve relative to the current directory).
//  * to_yaml() writes the fully resolved config (every key, defaults filled in, head_dim and layer_types of the
//    model resolved); reading it back gives the same config.
#include <cstdint>
#include <string>
#include <vector>

#include "hydra/config.h"

namespace hydra::train {

struct DataConfig {
  // file: windows of a text or token file (data.path); mqar | needle | qa: a synthetic task stream (SPEC §8)
  // with the settings of the mqar / needle / qa sections, trained with cross-entropy on the labelled positions.
  std::string source = "file";
  std::string path;                 // text or token file (relative to the config file)
  std::string format = "text";      // text (bytes, vocab 256) | tokens (token file; llm.c files recognised)
  std::string token_dtype = "uint16";  // uint16 | uint32 (raw token files; ignored for text and llm.c)
  int64_t seq_len = 256;
  double val_fraction = 0.05;       // the tail of the data used for validation (0 = none)
};

struct OptimConfig {
  std::string name = "adamw";  // adamw | muon (the SPEC §7.5 hybrid: Muon for 2-D hidden matrices, AdamW else)
  double lr = 3e-4;            // AdamW lr (SPEC §7.1)
  double min_lr = 3e-5;
  int64_t warmup_steps = 500;
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double grad_clip = 1.0;  // 0 = no clipping (the norm is still logged)
  double muon_lr = 5e-3;
  double muon_momentum = 0.95;
};

struct TrainSection {
  int64_t steps = 10000;     // total optimizer steps; the schedule's length
  int64_t stop_after = 0;    // stop this invocation after this many steps (0 = run to train.steps)
  int64_t batch_size = 8;    // sequences per micro-batch
  int64_t grad_accum = 1;    // micro-batches per optimizer step
  int64_t seed = 0;          // model init and data order
  std::string device = "auto";  // auto | cpu | cuda
  std::string run_dir;  // empty: runs/<config name>-<date-time> under the current folder
  bool resume = false;
  std::string init_from;  // a checkpoint (step or run folder) whose model weights start this run; fresh optimizer
  int64_t log_every = 50;
  std::string precision = "auto";  // auto | bf16 | fp32 (SPEC §7.7 mixed_precision; CPU: always fp32)
  bool recompute = false;          // per-block activation recomputation (SPEC grad_checkpoint)
  bool progress = true;            // a progress bar when stderr is a terminal
  bool profile = false;            // per-layer time profile printed at the end
  int64_t threads = 0;             // CPU threads (0 = OpenMP's default)
};

struct EvalSection {
  int64_t every = 1000;  // validation loss every N steps (0 = only at the end)
  int64_t batches = 8;   // validation batches of train.batch_size sequences, fixed windows
  int64_t seed = 0;      // seed of the evaluation batches of hydra-eval's tasks
  // hydra-eval: the models to train and evaluate side by side (names in variant_names()); empty = the config's
  // model alone.
  std::vector<std::string> variants;
  int64_t prefill_chunk = 4096;  // hydra-eval: tokens per chunk of the streaming evaluation forward
};

// Synthetic tasks (SPEC §8). Sequence lengths come from data.seq_len unless a task says otherwise.
struct MqarSection {  // SPEC §8.1
  int64_t num_kv_pairs = 64;
  int64_t num_queries = 64;
  int64_t eval_batches = 32;     // final evaluation: batches × eval_batch_size sequences
  int64_t eval_batch_size = 16;
};
struct NeedleSection {  // SPEC §8.2 (+ the length × depth sweep)
  int64_t num_needles = 1;
  double filler_frac = 0.5;
  std::vector<int64_t> train_lengths;  // training lengths drawn uniformly per step (empty: data.seq_len)
  std::vector<int64_t> lengths;        // evaluation lengths of the sweep (empty: data.seq_len)
  std::vector<double> depths = {0.0, 0.25, 0.5, 0.75, 1.0};  // depth fractions of the sweep
  std::string readout = "corrected";  // corrected (logits at N−2) | reference (N−3, the reference's reading)
  int64_t eval_batches = 8;
  int64_t eval_batch_size = 4;
};
struct QaSection {  // SPEC §8.4
  int64_t num_facts = 32;
  int64_t num_queries = 8;
  double filler_frac = 0.5;
  std::vector<int64_t> train_lengths;  // training lengths drawn uniformly per step (empty: data.seq_len)
  int64_t eval_batches = 8;
  int64_t eval_batch_size = 1;
};

struct CheckpointSection {
  int64_t every = 2000;  // 0 = only the final checkpoint
  int64_t keep = 3;      // keep the newest K step-N folders (≥ 1)
};

struct TrainConfig {
  HydraConfig model;
  DataConfig data;
  OptimConfig optim;
  TrainSection train;
  EvalSection eval;
  CheckpointSection checkpoint;
  MqarSection mqar;
  NeedleSection needle;
  QaSection qa;
  std::string source;  // the config file (or "<embedded tiny.yaml>") it was read from

  // The resolved YAML form (all sections, all keys). Paths are written as absolute paths.
  std::string to_yaml() const;
};

// One row of the key table.
struct KeyInfo {
  std::string key;      // dotted: "train.steps"
  std::string type;     // "int", "float", "bool", "string", "int or null", …
  std::string fallback;  // the default, as YAML
  std::string doc;
};
// Every key of every section (model keys included), in file order.
const std::vector<KeyInfo>& key_table();
// The key table as Markdown (README) or aligned text (--help).
std::string key_table_markdown();
std::string key_table_text();

// Reads `path`, then applies `overrides` ("section.key=value") and checks everything.
TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides = {});
// Parses YAML text; `source` names it in messages, `base_dir` resolves relative paths.
TrainConfig parse_train_config(const std::string& text, const std::string& source, const std::string& base_dir,
                               const std::vector<std::string>& overrides = {});

// The model variants hydra-eval can train side by side (eval.variants):
//   hybrid       the config's model as written
//   pure_dn      every block Gated DeltaNet            all_swa   every block sliding-window attention
//   transformer  the dense baseline (SPEC §8.5)        retrieval the config's layers with every 3rd block (1-based,
//   no_retrieval the config's layers, retrieval blocks               not SWA) retrieval attention, as the
//                replaced by Gated DeltaNet                          long-context QA script's --use-retrieval
const std::vector<std::string>& variant_names();
// The model of `variant` applied to `base` (layer_types written out explicitly). Unknown names are errors.
HydraConfig variant_model(const HydraConfig& base, const std::string& variant);

// Keys whose values may differ between a run and its resumption (the rest must match).
bool key_may_change_on_resume(const std::string& dotted_key);
// Differences between two resolved configs, one line per key ("train.lr: 0.001 -> 0.002"), in table order.
// With `only_forbidden`, keys that may change on resume are left out.
std::vector<std::string> config_diff(const TrainConfig& before, const TrainConfig& after, bool only_forbidden);

}  // namespace hydra::train
