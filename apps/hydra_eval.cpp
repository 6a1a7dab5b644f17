// hydra-eval: evaluation entry point. Subcommands ("tasks"):
//   score   --config CONFIG.yaml --weights W.safetensors --input IDS.safetensors --out OUT.safetensors
//           [--device auto|cpu|cuda]
//           Runs HydraLM on `input_ids` (int64 B×N) and writes `logits` (float32 B×N×V) and `loss` (mean next-token
//           cross-entropy of logits[:, :-1] against input_ids[:, 1:]); prints the loss.
//   perplexity --checkpoint DIR --data FILE [--format auto|text|tokens] [--token-dtype uint16|uint32]
//           [--seq-len N] [--batch B] [--max-tokens N] [--device auto|cpu|cuda]
//           Mean next-token loss, perplexity and bits per token/byte of a hydra-train checkpoint on a data file.
//   generate --checkpoint DIR --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P]
//           [--seed S] [--device auto|cpu|cuda]
//           Continues a text prompt with a byte-level checkpoint (SPEC §6.1 / §6.2 sampling) and prints the text.
//   mqar | needle | qa  --config FILE [section.key=value ...] [--out DIR]     train each variant, then evaluate
//                       --checkpoint DIR [--config FILE] [overrides] [--out DIR] evaluate a trained model
//           The synthetic tasks of SPEC §8 (eval/tasks.h): a Markdown table on stdout; results.json, results.md and
//           SVG plots in --out (default runs/<task>-<date-time>).
#include <fmt/format.h>

#include <cstring>
#include <exception>
#include <functional>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "eval/perplexity.h"
#include "eval/tasks.h"
#include "hydra/generate.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "eval/score.h"

namespace {

struct Task {
  const char* summary;
  std::function<int(const std::vector<std::string>&)> run;
};

// --flag value pairs into a map; unknown flags are errors listing the known ones.
std::map<std::string, std::string> parse_flags(const std::string& task, const std::vector<std::string>& args,
                                               const std::vector<std::string>& known) {
  std::map<std::string, std::string> out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    bool ok = false;
    for (const auto& k : known) ok = ok || a == k;
    if (!ok) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      throw std::invalid_argument(fmt::format("hydra-eval {}: unknown argument '{}' (known: {})", task, a, list));
    }
    if (i + 1 >= args.size()) throw std::invalid_argument(fmt::format("hydra-eval {}: {} needs a value", task, a));
    out[a] = args[++i];
  }
  return out;
}

int run_score(const std::vector<std::string>& args) {
  const auto f = parse_flags("score", args, {"--config", "--weights", "--input", "--out", "--device"});
  hydra::eval::ScoreOptions o;
  auto get = [&](const char* k) { return f.count(k) ? f.at(k) : std::string(); };
  o.config = get("--config"), o.weights = get("--weights"), o.input = get("--input"), o.out = get("--out");
  if (f.count("--device")) o.device = f.at("--device");
  const hydra::eval::ScoreResult r = hydra::eval::run_score(o);
  fmt::print("device: {}\nlogits: [{}, {}, {}] float32 -> {}\nloss: {:.8f}\n", r.device, r.logits.size(0),
             r.logits.size(1), r.logits.size(2), o.out, r.loss);
  return 0;
}

int64_t int_flag(const std::map<std::string, std::string>& f, const char* k, int64_t fallback) {
  if (!f.count(k)) return fallback;
  try {
    std::size_t used = 0;
    const int64_t v = std::stoll(f.at(k), &used);
    if (used == f.at(k).size()) return v;
  } catch (const std::exception&) {
  }
  throw std::invalid_argument(fmt::format("{}: expected an integer, got '{}'", k, f.at(k)));
}

int run_perplexity(const std::vector<std::string>& args) {
  const auto f = parse_flags("perplexity", args, {"--checkpoint", "--data", "--format", "--token-dtype", "--seq-len",
                                                  "--batch", "--max-tokens", "--device"});
  hydra::eval::PerplexityOptions o;
  auto get = [&](const char* k, const std::string& d) { return f.count(k) ? f.at(k) : d; };
  o.checkpoint = get("--checkpoint", ""), o.data = get("--data", ""), o.format = get("--format", "auto");
  o.token_dtype = get("--token-dtype", ""), o.device = get("--device", "auto");
  o.seq_len = int_flag(f, "--seq-len", 0), o.batch_size = int_flag(f, "--batch", 8);
  o.max_tokens = int_flag(f, "--max-tokens", 0);
  const hydra::eval::PerplexityResult r = hydra::eval::run_perplexity(o);
  fmt::print("| checkpoint | step | data | tokens | seq_len | device | mean loss (nats) | perplexity | bits/token | "
             "bits/byte |\n|---|---|---|---|---|---|---|---|---|---|\n");
  fmt::print("| {} | {} | {} | {} | {} | {} | {:.6f} | {:.4f} | {:.6f} | {} |\n", r.checkpoint_dir, r.step, o.data,
             r.tokens, r.seq_len, r.device, r.mean_loss, r.perplexity, r.bits_per_token,
             r.bits_per_byte ? fmt::format("{:.6f}", *r.bits_per_byte) : std::string("-"));
  return 0;
}

double double_flag(const std::map<std::string, std::string>& f, const char* k, double fallback) {
  if (!f.count(k)) return fallback;
  try {
    std::size_t used = 0;
    const double v = std::stod(f.at(k), &used);
    if (used == f.at(k).size()) return v;
  } catch (const std::exception&) {
  }
  throw std::invalid_argument(fmt::format("{}: expected a number, got '{}'", k, f.at(k)));
}

int run_generate(const std::vector<std::string>& args) {
  const auto f = parse_flags("generate", args, {"--checkpoint", "--prompt", "--max-new-tokens", "--temperature",
                                                "--top-k", "--top-p", "--seed", "--device"});
  if (!f.count("--checkpoint") || !f.count("--prompt"))
    throw std::invalid_argument("hydra-eval generate: --checkpoint and --prompt are required");
  const std::string dir = f.at("--checkpoint");
  const hydra::train::Checkpoint ck = hydra::train::resolve_checkpoint(dir);
  const hydra::train::LoadedModel loaded =
      hydra::train::load_checkpoint_model(ck, f.count("--device") ? f.at("--device") : "auto", "--device");
  const auto& cfg = loaded.config;
  if (cfg.data.format != "text")
    throw std::invalid_argument(fmt::format("hydra-eval generate: {} was trained on token ids (data.format {}); a text "
                                            "prompt needs a byte-level (data.format text) checkpoint", ck.dir,
                                            cfg.data.format));
  const std::string prompt = f.at("--prompt");
  if (prompt.empty()) throw std::invalid_argument("hydra-eval generate: --prompt must not be empty");
  std::vector<int64_t> ids;
  for (unsigned char ch : prompt) ids.push_back(ch);
  hydra::GenerateOptions o;
  o.max_new_tokens = int_flag(f, "--max-new-tokens", 256);
  o.sampling.temperature = double_flag(f, "--temperature", 1.0);
  o.sampling.top_k = int_flag(f, "--top-k", 0);
  o.sampling.top_p = double_flag(f, "--top-p", 1.0);
  o.seed = static_cast<uint64_t>(int_flag(f, "--seed", 0));
  const hydra::Tensor out =
      hydra::generate(*loaded.model, hydra::from_vector(ids, {1, static_cast<int64_t>(ids.size())}), o);
  std::string text;
  for (int64_t v : out.to_vector<int64_t>()) text += static_cast<char>(v);
  fmt::print("{}\n", text);
  return 0;
}

// mqar | needle | qa: --config, --checkpoint, --out take a value; `section.key=value` arguments are overrides.
std::function<int(const std::vector<std::string>&)> synthetic_task(const std::string& name) {
  return [name](const std::vector<std::string>& args) {
    hydra::eval::TaskRunOptions o;
    o.task = name;
    o.command = "hydra-eval " + name;
    for (const auto& a : args) o.command += " " + a;
    for (std::size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= args.size()) throw std::invalid_argument(fmt::format("hydra-eval {}: {} needs a value", name, a));
        return args[++i];
      };
      if (a == "--config") o.config = value();
      else if (a == "--checkpoint") o.checkpoint = value();
      else if (a == "--out") o.out = value();
      else if (a.rfind("--", 0) != 0 && a.find('=') != std::string::npos) o.overrides.push_back(a);
      else
        throw std::invalid_argument(fmt::format("hydra-eval {}: unknown argument '{}' (known: --config FILE, "
                                                "--checkpoint DIR, --out DIR, section.key=value overrides)",
                                                name, a));
    }
    const hydra::eval::TaskRunResult r = hydra::eval::run_task(o, std::cout);
    std::cout.flush();
    fmt::print("\n{}\naccuracy ({}): {:.4f}\nwrote {}/results.json, results.md and the plots\n", r.markdown,
               r.results.at("headline_variant").as_string(), r.results.at("accuracy").as_number(), r.out_dir);
    return 0;
  };
}

const std::map<std::string, Task>& tasks() {
  static const std::map<std::string, Task> t = {
      {"score", {"logits and next-token loss of a HydraLM on given ids (checkpoint parity check)", run_score}},
      {"perplexity", {"mean loss, perplexity and bits per byte of a hydra-train checkpoint on a data file",
                      run_perplexity}},
      {"generate", {"continue a text prompt with a byte-level hydra-train checkpoint (SPEC §6 sampling)",
                    run_generate}},
      {"mqar", {"multi-query associative recall (SPEC §8.1): train variants and evaluate, or evaluate a checkpoint",
                synthetic_task("mqar")}},
      {"needle", {"needle in a haystack (SPEC §8.2): length × depth heatmap through chunked prefill",
                  synthetic_task("needle")}},
      {"qa", {"multi-fact long-context QA (SPEC §8.4): accuracy by depth quartile", synthetic_task("qa")}},
  };
  return t;
}

void print_usage() {
  fmt::print("usage: hydra-eval <task> [options]\n       hydra-eval --list\n\ntasks:\n");
  for (const auto& [name, task] : tasks()) fmt::print("  {:<10} {}\n", name, task.summary);
  fmt::print(
      "\nscore options: --config CONFIG.yaml --weights W.safetensors --input IDS.safetensors --out OUT.safetensors\n"
      "               [--device auto|cpu|cuda]\n"
      "perplexity options: --checkpoint RUN_OR_STEP_DIR --data FILE [--format auto|text|tokens]\n"
      "               [--token-dtype uint16|uint32] [--seq-len N] [--batch B] [--max-tokens N] [--device auto|cpu|cuda]\n"
      "generate options: --checkpoint RUN_OR_STEP_DIR --prompt TEXT [--max-new-tokens N] [--temperature T]\n"
      "               [--top-k K] [--top-p P] [--seed S] [--device auto|cpu|cuda]\n"
      "mqar / needle / qa options: --config FILE [section.key=value ...] [--out DIR]   (train, then evaluate)\n"
      "               --checkpoint RUN_OR_STEP_DIR [--config FILE] [section.key=value ...] [--out DIR]\n"
      "               The config uses hydra-train's keys (hydra-train --help) plus the task sections; e.g.\n"
      "               hydra-eval mqar --config configs/mqar-cpu.yaml eval.variants=[hybrid,transformer]\n");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
      print_usage();
      return argc < 2 ? 2 : 0;
    }
    const std::string name = argv[1];
    if (name == "--list") {
      for (const auto& [n, t] : tasks()) fmt::print("{}\n", n);
      return 0;
    }
    const auto it = tasks().find(name);
    if (it == tasks().end()) {
      std::string known;
      for (const auto& [n, t] : tasks()) known += (known.empty() ? "" : ", ") + n;
      fmt::print(stderr, "hydra-eval: unknown task '{}' (known tasks: {})\n", name, known);
      return 2;
    }
    return it->second.run(std::vector<std::string>(argv + 2, argv + argc));
  } catch (const std::exception& e) {
    fmt::print(stderr, "hydra-eval: error: {}\n", e.what());
    return 1;
  }
}
