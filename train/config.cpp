// The training config: key table, readers with range checks, overrides, resolved YAML and diffs (config.h).
#include "train/config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "hydra/config_yaml.h"
#include "tensor/check.h"

namespace hydra::train {

namespace {

using yaml::Where;
namespace fs = std::filesystem;

// ---- value formatting (YAML that reads back to the same value) -------------------------------------------
std::string yaml_value(int64_t v) { return fmt::format("{}", v); }
std::string yaml_value(bool v) { return v ? "true" : "false"; }
std::string yaml_value(double v) {
  std::string s = fmt::format("{}", v);  // shortest round-trip digits
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}
std::string yaml_value(const std::string& v) {
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}
template <class T>
std::string yaml_value(const std::vector<T>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + yaml_value(v[i]);
  return s + "]";
}

// ---- the non-model keys ----------------------------------------------------------------------------------
struct Ctx {
  std::string base_dir;  // relative paths resolve against it
};

using Reader = std::function<void(TrainConfig&, const YAML::Node&, const Where&, const Ctx&)>;
using Writer = std::function<std::string(const TrainConfig&)>;
struct Field {
  std::string section, name, type, doc;
  Reader read;
  Writer write;
  std::string key() const { return section + "." + name; }
};

[[noreturn]] void range_error(const Where& w, const std::string& value, const std::string& expected) {
  HYDRA_CHECK(false, "{}: invalid value {} (expected {})", w.prefix(), value, expected);
}

template <class S, class T>
Field make_field(const char* section, const char* name, const char* type, S TrainConfig::*sec, T S::*member,
                 std::function<std::optional<std::string>(const T&)> check, const char* doc) {
  Field f;
  f.section = section;
  f.name = name;
  f.type = type;
  f.doc = doc;
  f.read = [sec, member, check](TrainConfig& c, const YAML::Node& n, const Where& w, const Ctx&) {
    T v{};
    yaml::read(n, w, v);
    if (check)
      if (auto expected = check(v)) range_error(w, yaml_value(v), *expected);
    (c.*sec).*member = v;
  };
  f.write = [sec, member](const TrainConfig& c) { return yaml_value((c.*sec).*member); };
  return f;
}

// A path: relative ones resolve against the context's base folder.
template <class S>
Field path_field(const char* section, const char* name, S TrainConfig::*sec, std::string S::*member,
                 const char* doc, bool allow_empty = false) {
  Field f;
  f.section = section;
  f.name = name;
  f.type = "path";
  f.doc = doc;
  f.read = [sec, member, allow_empty](TrainConfig& c, const YAML::Node& n, const Where& w, const Ctx& ctx) {
    std::string v;
    yaml::read(n, w, v);
    if (v.empty() && allow_empty) {
      (c.*sec).*member = v;
      return;
    }
    if (v.empty()) range_error(w, "\"\"", "a non-empty path");
    fs::path p(v);
    if (p.is_relative()) p = fs::path(ctx.base_dir) / p;
    (c.*sec).*member = p.lexically_normal().string();
  };
  f.write = [sec, member](const TrainConfig& c) { return yaml_value((c.*sec).*member); };
  return f;
}

std::function<std::optional<std::string>(const int64_t&)> at_least(int64_t lo) {
  return [lo](const int64_t& v) -> std::optional<std::string> {
    if (v >= lo) return std::nullopt;
    return fmt::format("an integer ≥ {}", lo);
  };
}
std::function<std::optional<std::string>(const double&)> in_range(double lo, double hi, bool hi_open,
                                                                  bool lo_open = false) {
  return [=](const double& v) -> std::optional<std::string> {
    const bool ok = (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
    if (ok) return std::nullopt;
    if (std::isinf(hi)) return fmt::format("a number {} {}", lo_open ? ">" : "≥", lo);
    return fmt::format("a number in {}{}, {}{}", lo_open ? "(" : "[", lo, hi, hi_open ? ")" : "]");
  };
}
std::function<std::optional<std::string>(const std::string&)> one_of(std::vector<std::string> allowed) {
  return [allowed](const std::string& v) -> std::optional<std::string> {
    for (const auto& a : allowed)
      if (v == a) return std::nullopt;
    std::string s;
    for (const auto& a : allowed) s += (s.empty() ? "" : " | ") + a;
    return "one of " + s;
  };
}

constexpr double kInf = std::numeric_limits<double>::infinity();

// Every element of a list passes `check`.
template <class T>
std::function<std::optional<std::string>(const std::vector<T>&)> each(
    std::function<std::optional<std::string>(const T&)> check) {
  return [check](const std::vector<T>& v) -> std::optional<std::string> {
    for (const T& x : v)
      if (auto e = check(x)) return "a list whose every element is " + *e;
    return std::nullopt;
  };
}

const std::vector<Field>& fields() {
  using TC = TrainConfig;
  static const std::vector<Field> kFields = {
      // data
      make_field<DataConfig, std::string>("data", "source", "file | mqar | needle | qa", &TC::data,
                                          &DataConfig::source, one_of({"file", "mqar", "needle", "qa"}),
                                          "file = windows of data.path; mqar / needle / qa = a synthetic task "
                                          "stream (SPEC §8) set by that section, loss on its labelled positions"),
      path_field("data", "path", &TC::data, &DataConfig::path,
                 "training data file (data.source file): text (bytes) or token ids; relative to the config file",
                 /*allow_empty=*/true),
      make_field<DataConfig, std::string>("data", "format", "text | tokens", &TC::data, &DataConfig::format,
                                          one_of({"text", "tokens"}),
                                          "text = every byte is a token (vocab 256); tokens = a token-id file "
                                          "(raw ids, or llm.c's format, recognised by its magic)"),
      make_field<DataConfig, std::string>("data", "token_dtype", "uint16 | uint32", &TC::data,
                                          &DataConfig::token_dtype, one_of({"uint16", "uint32"}),
                                          "width of raw token ids (little-endian); llm.c files are uint16"),
      make_field<DataConfig, int64_t>("data", "seq_len", "int", &TC::data, &DataConfig::seq_len, at_least(1),
                                      "tokens per training sequence (windows of seq_len + 1 are drawn)"),
      make_field<DataConfig, double>("data", "val_fraction", "float", &TC::data, &DataConfig::val_fraction,
                                     in_range(0, 0.5, false),
                                     "tail fraction of the data held out for validation (0 = none)"),
      // optim
      make_field<OptimConfig, std::string>("optim", "name", "adamw | muon", &TC::optim, &OptimConfig::name,
                                           one_of({"adamw", "muon"}),
                                           "adamw (SPEC §7.3), or muon = Muon for 2-D hidden matrices + AdamW "
                                           "for the rest (SPEC §7.5)"),
      make_field<OptimConfig, double>("optim", "lr", "float", &TC::optim, &OptimConfig::lr,
                                      in_range(0, kInf, true, true), "peak AdamW learning rate"),
      make_field<OptimConfig, double>("optim", "min_lr", "float", &TC::optim, &OptimConfig::min_lr,
                                      in_range(0, kInf, true), "final learning rate of the cosine decay"),
      make_field<OptimConfig, int64_t>("optim", "warmup_steps", "int", &TC::optim, &OptimConfig::warmup_steps,
                                       at_least(0), "linear warmup steps (the first step uses lr 0)"),
      make_field<OptimConfig, double>("optim", "weight_decay", "float", &TC::optim, &OptimConfig::weight_decay,
                                      in_range(0, kInf, true), "AdamW decoupled weight decay"),
      make_field<OptimConfig, double>("optim", "beta1", "float", &TC::optim, &OptimConfig::beta1,
                                      in_range(0, 1, true), "AdamW β1"),
      make_field<OptimConfig, double>("optim", "beta2", "float", &TC::optim, &OptimConfig::beta2,
                                      in_range(0, 1, true), "AdamW β2"),
      make_field<OptimConfig, double>("optim", "eps", "float", &TC::optim, &OptimConfig::eps,
                                      in_range(0, kInf, true), "AdamW ε"),
      make_field<OptimConfig, double>("optim", "grad_clip", "float", &TC::optim, &OptimConfig::grad_clip,
                                      in_range(0, kInf, true), "global gradient-norm clip (0 = off)"),
      make_field<OptimConfig, double>("optim", "muon_lr", "float", &TC::optim, &OptimConfig::muon_lr,
                                      in_range(0, kInf, true, true), "Muon learning rate (optim.name = muon)"),
      make_field<OptimConfig, double>("optim", "muon_momentum", "float", &TC::optim, &OptimConfig::muon_momentum,
                                      in_range(0, 1, true), "Muon momentum (Nesterov)"),
      // train
      make_field<TrainSection, int64_t>("train", "steps", "int", &TC::train, &TrainSection::steps, at_least(1),
                                        "total optimizer steps of the run; also the length of the LR schedule"),
      make_field<TrainSection, int64_t>("train", "stop_after", "int", &TC::train, &TrainSection::stop_after,
                                        at_least(0),
                                        "stop this invocation after this many optimizer steps (0 = no limit); "
                                        "the schedule still follows train.steps"),
      make_field<TrainSection, int64_t>("train", "batch_size", "int", &TC::train, &TrainSection::batch_size,
                                        at_least(1), "sequences per micro-batch"),
      make_field<TrainSection, int64_t>("train", "grad_accum", "int", &TC::train, &TrainSection::grad_accum,
                                        at_least(1), "micro-batches per optimizer step (gradients summed)"),
      make_field<TrainSection, int64_t>("train", "seed", "int", &TC::train, &TrainSection::seed, at_least(0),
                                        "seed of the model initialisation and the data order"),
      make_field<TrainSection, std::string>("train", "device", "auto | cpu | cuda", &TC::train,
                                            &TrainSection::device, one_of({"auto", "cpu", "cuda"}),
                                            "where to train (auto = cuda when usable)"),
      path_field("train", "run_dir", &TC::train, &TrainSection::run_dir,
                 "run folder: metrics.jsonl, loss.svg, config.yaml, checkpoints/; relative to the config file; "
                 "empty = a new runs/<config name>-<date-time> in the current folder",
                 /*allow_empty=*/true),
      make_field<TrainSection, bool>("train", "resume", "bool", &TC::train, &TrainSection::resume, nullptr,
                                     "continue from the newest valid checkpoint in run_dir"),
      path_field("train", "init_from", &TC::train, &TrainSection::init_from,
                 "start from this checkpoint's model weights (a step folder, or a run folder: its newest valid "
                 "checkpoint), e.g. a run on shorter sequences; optimizer, schedule and data start fresh; the "
                 "model config must build the same tensors; relative to the config file; empty = random init",
                 /*allow_empty=*/true),
      make_field<TrainSection, int64_t>("train", "log_every", "int", &TC::train, &TrainSection::log_every,
                                        at_least(1), "log a line and a metrics.jsonl record every N steps"),
      make_field<TrainSection, std::string>("train", "precision", "auto | bf16 | fp32", &TC::train,
                                            &TrainSection::precision, one_of({"auto", "bf16", "fp32"}),
                                            "mixed precision: auto = bf16 on a GPU (nn/precision.h), fp32 on the CPU"),
      make_field<TrainSection, bool>("train", "recompute", "bool", &TC::train, &TrainSection::recompute, nullptr,
                                     "recompute each block's activations in backward (less memory)"),
      make_field<TrainSection, bool>("train", "progress", "bool", &TC::train, &TrainSection::progress, nullptr,
                                     "draw a progress bar when stderr is a terminal"),
      make_field<TrainSection, bool>("train", "profile", "bool", &TC::train, &TrainSection::profile, nullptr,
                                     "print a per-layer time profile at the end"),
      make_field<TrainSection, int64_t>("train", "threads", "int", &TC::train, &TrainSection::threads,
                                        at_least(0), "CPU threads (0 = all cores)"),
      // eval
      make_field<EvalSection, int64_t>("eval", "every", "int", &TC::eval, &EvalSection::every, at_least(0),
                                       "validation loss every N steps (0 = only at the end)"),
      make_field<EvalSection, int64_t>("eval", "batches", "int", &TC::eval, &EvalSection::batches, at_least(1),
                                       "validation batches (fixed windows spread over the held-out tail, or fixed "
                                       "task batches)"),
      make_field<EvalSection, int64_t>("eval", "seed", "int", &TC::eval, &EvalSection::seed, at_least(0),
                                       "hydra-eval: seed of the evaluation batches"),
      make_field<EvalSection, std::vector<std::string>>(
          "eval", "variants", "list of strings", &TC::eval, &EvalSection::variants,
          each<std::string>(one_of(variant_names())),
          "hydra-eval: models trained and evaluated side by side (hybrid, pure_dn, all_swa, transformer, "
          "retrieval, no_retrieval); [] = the config's model"),
      make_field<EvalSection, int64_t>("eval", "prefill_chunk", "int", &TC::eval, &EvalSection::prefill_chunk,
                                       at_least(1), "hydra-eval: tokens per chunk of the streaming evaluation"),
      // checkpoint
      make_field<CheckpointSection, int64_t>("checkpoint", "every", "int", &TC::checkpoint,
                                             &CheckpointSection::every, at_least(0),
                                             "write a checkpoint every N steps (0 = only at the end)"),
      make_field<CheckpointSection, int64_t>("checkpoint", "keep", "int", &TC::checkpoint,
                                             &CheckpointSection::keep, at_least(1),
                                             "keep the newest K checkpoints"),
      // mqar (SPEC §8.1)
      make_field<MqarSection, int64_t>("mqar", "num_kv_pairs", "int", &TC::mqar, &MqarSection::num_kv_pairs,
                                       at_least(1), "key-value pairs P per sequence"),
      make_field<MqarSection, int64_t>("mqar", "num_queries", "int", &TC::mqar, &MqarSection::num_queries,
                                       at_least(1), "queries Q per sequence (keys drawn with replacement)"),
      make_field<MqarSection, int64_t>("mqar", "eval_batches", "int", &TC::mqar, &MqarSection::eval_batches,
                                       at_least(1), "final evaluation batches"),
      make_field<MqarSection, int64_t>("mqar", "eval_batch_size", "int", &TC::mqar, &MqarSection::eval_batch_size,
                                       at_least(1), "sequences per evaluation batch"),
      // needle (SPEC §8.2)
      make_field<NeedleSection, int64_t>("needle", "num_needles", "int", &TC::needle, &NeedleSection::num_needles,
                                         at_least(1), "needles K per sequence (one of them is queried)"),
      make_field<NeedleSection, double>("needle", "filler_frac", "float", &TC::needle, &NeedleSection::filler_frac,
                                        in_range(0, 1, true, true), "fraction of the vocabulary used as filler"),
      make_field<NeedleSection, std::vector<int64_t>>("needle", "train_lengths", "list of ints", &TC::needle,
                                                      &NeedleSection::train_lengths, each<int64_t>(at_least(8)),
                                                      "training lengths, one drawn per step ([] = data.seq_len)"),
      make_field<NeedleSection, std::vector<int64_t>>("needle", "lengths", "list of ints", &TC::needle,
                                                      &NeedleSection::lengths, each<int64_t>(at_least(8)),
                                                      "evaluation lengths of the heatmap ([] = data.seq_len)"),
      make_field<NeedleSection, std::vector<double>>("needle", "depths", "list of floats", &TC::needle,
                                                     &NeedleSection::depths, each<double>(in_range(0, 1, false)),
                                                     "depth fractions of the heatmap (queried needle placed there)"),
      make_field<NeedleSection, std::string>("needle", "readout", "corrected | reference", &TC::needle,
                                             &NeedleSection::readout, one_of({"corrected", "reference"}),
                                             "corrected = logits at N−2 predict the value; reference = N−3, the "
                                             "PyTorch reference's reading (SPEC §10)"),
      make_field<NeedleSection, int64_t>("needle", "eval_batches", "int", &TC::needle, &NeedleSection::eval_batches,
                                         at_least(1), "evaluation batches per heatmap cell"),
      make_field<NeedleSection, int64_t>("needle", "eval_batch_size", "int", &TC::needle,
                                         &NeedleSection::eval_batch_size, at_least(1),
                                         "sequences per evaluation batch"),
      // qa (SPEC §8.4)
      make_field<QaSection, int64_t>("qa", "num_facts", "int", &TC::qa, &QaSection::num_facts, at_least(1),
                                     "facts K in the haystack (distinct keys)"),
      make_field<QaSection, int64_t>("qa", "num_queries", "int", &TC::qa, &QaSection::num_queries, at_least(1),
                                     "trailing queries Q (distinct facts, Q ≤ K)"),
      make_field<QaSection, double>("qa", "filler_frac", "float", &TC::qa, &QaSection::filler_frac,
                                    in_range(0, 1, true, true), "fraction of the vocabulary used as filler"),
      make_field<QaSection, std::vector<int64_t>>("qa", "train_lengths", "list of ints", &TC::qa,
                                                  &QaSection::train_lengths, each<int64_t>(at_least(8)),
                                                  "training lengths, one drawn per step ([] = data.seq_len)"),
      make_field<QaSection, int64_t>("qa", "eval_batches", "int", &TC::qa, &QaSection::eval_batches, at_least(1),
                                     "evaluation batches"),
      make_field<QaSection, int64_t>("qa", "eval_batch_size", "int", &TC::qa, &QaSection::eval_batch_size,
                                     at_least(1), "sequences per evaluation batch"),
  };
  return kFields;
}

const char* const kSections[] = {"model", "data", "optim", "train", "eval", "checkpoint", "mqar", "needle", "qa"};

const Field* find_field(const std::string& section, const std::string& name) {
  for (const auto& f : fields())
    if (f.section == section && f.name == name) return &f;
  return nullptr;
}

std::string closest_key(const std::string& dotted) {
  std::string best;
  size_t best_d = SIZE_MAX;
  for (const auto& k : key_table()) {
    const size_t d = yaml::edit_distance(dotted, k.key);
    if (d < best_d) {
      best_d = d;
      best = k.key;
    }
  }
  return best;
}

bool is_section(const std::string& s) {
  for (const char* sec : kSections)
    if (s == sec) return true;
  return false;
}

std::string where_at(const std::string& source, std::optional<int> line) {
  return line ? fmt::format("{}:{}", source, *line) : source;
}

// Cross-section rules, checked after the file and after the overrides.
void check_cross(const TrainConfig& c, const std::string& source) {
  if (c.data.source != "file") return;  // the task's own generator checks its settings against the model
  HYDRA_CHECK(!c.data.path.empty(), "{}: data.path is not set (the training data file)", source);
  if (c.data.format == "text")
    HYDRA_CHECK(c.model.vocab_size >= 256,
                "{}: data.format is text (byte ids 0..255) but model.vocab_size is {}; it must be at least 256",
                source, c.model.vocab_size);
}

// The resolved model section as (key, YAML value) pairs, in SPEC order.
std::vector<std::pair<std::string, std::string>> model_values(const HydraConfig& m) {
  const YAML::Node j = YAML::Load(m.resolved().to_json());
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& name : HydraConfig::field_names()) {
    const YAML::Node v = j[name];
    if (!v.IsDefined()) {  // "arch" is absent from the JSON when it is "hydra"
      out.emplace_back(name, yaml_value(m.arch));
      continue;
    }
    if (v.IsSequence()) {
      std::string s = "[";
      for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i].Scalar();
      out.emplace_back(name, s + "]");
    } else if (v.IsNull()) {
      out.emplace_back(name, "null");
    } else if (name == "arch") {
      out.emplace_back(name, yaml_value(v.Scalar()));
    } else {
      out.emplace_back(name, v.Scalar());
    }
  }
  return out;
}

// (dotted key, YAML value) of every key, in table order.
std::vector<std::pair<std::string, std::string>> flatten(const TrainConfig& c) {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& [k, v] : model_values(c.model)) out.emplace_back("model." + k, v);
  for (const auto& f : fields()) out.emplace_back(f.key(), f.write(c));
  return out;
}

const char* model_doc(const std::string& name) {
  static const std::map<std::string, const char*> kDocs = {
      {"vocab_size", "vocabulary size V"},
      {"pad_token_id", "padding id: sends no gradient through the embedding lookup (its row is drawn at init like any other, SPEC §2.2)"},
      {"d_model", "model width d"},
      {"n_layers", "number of blocks"},
      {"n_heads", "heads per mixer"},
      {"head_dim", "head dimension (null = d_model / n_heads)"},
      {"mlp_mult", "SwiGLU width multiplier"},
      {"mlp_multiple_of", "SwiGLU width rounded up to a multiple of this"},
      {"dn_short_conv_kernel", "Gated DeltaNet short-convolution width"},
      {"dn_use_gate", "Gated DeltaNet output gate"},
      {"dn_chunk_size", "Gated DeltaNet chunk length of the chunkwise kernel"},
      {"dn_norm_qk", "L2-normalise q and k in Gated DeltaNet"},
      {"swa_window", "sliding-window attention window W"},
      {"swa_rope_base", "RoPE base of sliding-window attention"},
      {"layer_types", "explicit mixer per block [deltanet|swa|retrieval, ...] (null = from swa_every / retrieval_every)"},
      {"swa_every", "every k-th block is sliding-window attention"},
      {"rms_eps", "RMSNorm ε"},
      {"tie_embeddings", "share the embedding and LM head"},
      {"initializer_range", "init standard deviation σ₀"},
      {"max_position_embeddings", "informational, not enforced"},
      {"retrieval_every", "every k-th block is retrieval attention (0 = none)"},
      {"retrieval_chunk_size", "retrieval chunk size"},
      {"retrieval_top_k", "chunks retrieved per token"},
      {"retrieval_learned_summary", "learned chunk-summary projection"},
      {"mtp_depth", "multi-token-prediction heads (0 = off)"},
      {"mtp_loss_weight", "weight of the MTP auxiliary loss"},
      {"arch", "hydra | transformer (the dense baseline)"},
  };
  auto it = kDocs.find(name);
  return it == kDocs.end() ? "" : it->second;
}

}  // namespace

// ---- key table --------------------------------------------------------------------------------------------

const std::vector<KeyInfo>& key_table() {
  static const std::vector<KeyInfo> kTable = [] {
    std::vector<KeyInfo> t;
    const HydraConfig defaults;
    const TrainConfig tdef;
    const YAML::Node j = YAML::Load(defaults.to_json());
    for (const auto& name : HydraConfig::field_names()) {
      std::string type = "int";
      std::string fallback;
      if (name == "arch") {
        type = "string";
        fallback = "hydra";
      } else {
        const YAML::Node v = j[name];
        fallback = v.IsSequence() ? "null" : v.Scalar();
        if (name == "head_dim") fallback = "null";
        if (name == "layer_types") type = "list or null";
        else if (name == "head_dim") type = "int or null";
        else if (fallback == "true" || fallback == "false") type = "bool";
        else if (fallback.find_first_of(".e") != std::string::npos) type = "float";
      }
      t.push_back({"model." + name, type, fallback, model_doc(name)});
    }
    for (const auto& f : fields()) {
      std::string fallback = f.write(tdef);
      if (f.key() == "data.path" && fallback == "\"\"") fallback = "(required for source file)";
      t.push_back({f.key(), f.type, fallback, f.doc});
    }
    return t;
  }();
  return kTable;
}

std::string key_table_markdown() {
  std::string s = "| key | type | default | meaning |\n|---|---|---|---|\n";
  auto esc = [](std::string v) {  // a '|' inside a cell would split it
    for (size_t p = v.find('|'); p != std::string::npos; p = v.find('|', p + 2)) v.replace(p, 1, "\\|");
    return v;
  };
  for (const auto& k : key_table())
    s += fmt::format("| `{}` | {} | `{}` | {} |\n", k.key, esc(k.type), k.fallback, esc(k.doc));
  return s;
}

std::string key_table_text() {
  std::string s;
  for (const auto& k : key_table())
    s += fmt::format("  {:<32} {:<18} {:<14} {}\n", k.key, k.type, k.fallback, k.doc);
  return s;
}

// ---- parsing ----------------------------------------------------------------------------------------------

TrainConfig parse_train_config(const std::string& text, const std::string& source, const std::string& base_dir,
                               const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    HYDRA_CHECK(false, "{}:{}: unparsable YAML: {}", source, e.mark.line + 1, e.msg);
  }
  HYDRA_CHECK(root.IsMap(), "{}: expected a mapping of sections (model, data, optim, train, eval, checkpoint, mqar, needle, qa) "
              "at the top level, found {}", source, yaml::describe(root));
  TrainConfig cfg;
  cfg.source = source;
  const Ctx file_ctx{base_dir};
  std::set<std::string> seen_sections;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const YAML::Node k = it->first;
    const YAML::Node v = it->second;
    const auto kline = yaml::line_of(k);
    HYDRA_CHECK(k.IsScalar(), "{}: expected a section name as key, found {}", where_at(source, kline),
                yaml::describe(k));
    const std::string sec = k.Scalar();
    if (!is_section(sec)) {
      HYDRA_CHECK(false, "{}: unknown section '{}' (sections: model, data, optim, train, eval, checkpoint, mqar, needle, qa)",
                  where_at(source, kline), sec);
    }
    HYDRA_CHECK(seen_sections.insert(sec).second, "{}: section '{}' appears twice", where_at(source, kline), sec);
    if (sec == "model") {
      cfg.model = parse_model_config(v, source);
      continue;
    }
    if (v.IsNull()) continue;
    HYDRA_CHECK(v.IsMap(), "{}: section '{}' must be a mapping of keys, found {}", where_at(source, kline), sec,
                yaml::describe(v));
    std::set<std::string> seen;
    for (auto jt = v.begin(); jt != v.end(); ++jt) {
      const YAML::Node fk = jt->first;
      const YAML::Node fv = jt->second;
      const auto fline = yaml::line_of(fk);
      HYDRA_CHECK(fk.IsScalar(), "{}: expected a key name, found {}", where_at(source, fline), yaml::describe(fk));
      const std::string name = fk.Scalar();
      const std::string dotted = sec + "." + name;
      const Field* f = find_field(sec, name);
      if (!f) {
        HYDRA_CHECK(false, "{}: unknown key '{}' (did you mean '{}'?)", where_at(source, fline), dotted,
                    closest_key(dotted));
      }
      HYDRA_CHECK(seen.insert(name).second, "{}: key '{}' appears twice", where_at(source, fline), dotted);
      f->read(cfg, fv, Where{source, dotted, fline}, file_ctx);
    }
  }
  // Overrides: same readers; model keys through the model's own override path.
  const Ctx cli_ctx{fs::current_path().string()};
  bool model_overridden = false;
  for (const auto& a : overrides) {
    const size_t eq = a.find('=');
    HYDRA_CHECK(eq != std::string::npos && eq > 0, "command-line override '{}' is not of the form section.key=value",
                a);
    const std::string key = a.substr(0, eq), value = a.substr(eq + 1);
    const size_t dot = key.find('.');
    const std::string sec = dot == std::string::npos ? "" : key.substr(0, dot);
    const std::string name = dot == std::string::npos ? key : key.substr(dot + 1);
    if (sec == "model") {
      apply_override(cfg.model, key, value);
      model_overridden = true;
      continue;
    }
    const Field* f = is_section(sec) ? find_field(sec, name) : nullptr;
    if (!f) {
      HYDRA_CHECK(false, "command-line override '{}': unknown key '{}' (did you mean '{}'?)", a, key,
                  closest_key(key));
    }
    YAML::Node node;
    try {
      node = YAML::Load(value);
    } catch (const YAML::Exception& e) {
      HYDRA_CHECK(false, "command-line override '{}': {}: unparsable value: {}", a, key, e.msg);
    }
    f->read(cfg, node, Where{fmt::format("command-line override '{}'", a), key, std::nullopt}, cli_ctx);
  }
  if (model_overridden) {
    try {
      cfg.model.validate();
    } catch (const std::invalid_argument& e) {
      HYDRA_CHECK(false, "{} (after the command-line overrides): {}", source, e.what());
    }
  }
  check_cross(cfg, overrides.empty() ? source : source + " (after the command-line overrides)");
  return cfg;
}

TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  HYDRA_CHECK_ENV(fs::is_regular_file(path, ec), "config file '{}' does not exist or is not a file", path);
  std::ifstream in(path);
  HYDRA_CHECK_ENV(in.good(), "cannot open config file '{}'", path);
  std::stringstream ss;
  ss << in.rdbuf();
  const fs::path abs = fs::absolute(path);
  return parse_train_config(ss.str(), path, abs.parent_path().string(), overrides);
}

// ---- resolved form, diffs ---------------------------------------------------------------------------------

std::string TrainConfig::to_yaml() const {
  std::string s = fmt::format("# HydraLM training config, fully resolved (from {})\n", source);
  std::string section;
  for (const auto& [key, value] : flatten(*this)) {
    const size_t dot = key.find('.');
    const std::string sec = key.substr(0, dot);
    if (sec != section) {
      s += sec + ":\n";
      section = sec;
    }
    s += fmt::format("  {}: {}\n", key.substr(dot + 1), value);
  }
  return s;
}

bool key_may_change_on_resume(const std::string& k) {
  return k == "train.stop_after" || k == "train.log_every" || k == "train.resume" || k == "train.run_dir" ||
         k == "train.progress" || k == "train.profile" || k.rfind("checkpoint.", 0) == 0 ||
         k.rfind("eval.", 0) == 0 || k.find(".eval_") != std::string::npos || k == "needle.lengths" ||
         k == "needle.depths" || k == "needle.readout";
}

const std::vector<std::string>& variant_names() {
  static const std::vector<std::string> kNames = {"hybrid",    "pure_dn",   "all_swa",
                                                  "transformer", "retrieval", "no_retrieval"};
  return kNames;
}

HydraConfig variant_model(const HydraConfig& base, const std::string& variant) {
  HydraConfig m = base;
  std::vector<LayerType> types = base.resolved_layer_types();
  if (variant == "hybrid") return m;
  if (variant == "transformer") {
    m.arch = "transformer";
    return m;
  }
  m.arch = "hydra";
  if (variant == "pure_dn") {
    for (auto& t : types) t = LayerType::DeltaNet;
  } else if (variant == "all_swa") {
    for (auto& t : types) t = LayerType::Swa;
  } else if (variant == "no_retrieval") {
    for (auto& t : types)
      if (t == LayerType::Retrieval) t = LayerType::DeltaNet;
  } else if (variant == "retrieval") {
    bool any = false;
    for (auto t : types) any = any || t == LayerType::Retrieval;
    if (!any)
      for (size_t i = 0; i < types.size(); ++i)
        if ((i + 1) % 3 == 0 && types[i] != LayerType::Swa) types[i] = LayerType::Retrieval;
  } else {
    std::string known;
    for (const auto& n : variant_names()) known += (known.empty() ? "" : ", ") + n;
    HYDRA_CHECK(false, "eval.variants: unknown variant '{}' (known: {})", variant, known);
  }
  m.layer_types = types;
  m.validate();
  return m;
}

std::vector<std::string> config_diff(const TrainConfig& before, const TrainConfig& after, bool only_forbidden) {
  const auto a = flatten(before), b = flatten(after);
  std::vector<std::string> out;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].second == b[i].second) continue;
    if (only_forbidden && key_may_change_on_resume(a[i].first)) continue;
    out.push_back(fmt::format("{}: {} -> {}", a[i].first, a[i].second, b[i].second));
  }
  return out;
}

}  // namespace hydra::train
