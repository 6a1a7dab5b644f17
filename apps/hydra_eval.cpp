// hydra-eval: evaluation entry point. Subcommands ("tasks"):
//   score   --config CONFIG.yaml --weights W.safetensors --input IDS.safetensors --out OUT.safetensors
//           [--device auto|cpu|cuda]
//           Runs HydraLM on `input_ids` (int64 B×N) and writes `logits` (float32 B×N×V) and `loss` (mean next-token
//           cross-entropy of logits[:, :-1] against input_ids[:, 1:]); prints the loss.
// The evaluation issue adds the synthetic tasks (MQAR, needle, multi-fact QA) here.
#include <fmt/format.h>

#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <string>
#include <vector>

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

const std::map<std::string, Task>& tasks() {
  static const std::map<std::string, Task> t = {
      {"score", {"logits and next-token loss of a HydraLM on given ids (checkpoint parity check)", run_score}},
  };
  return t;
}

void print_usage() {
  fmt::print("usage: hydra-eval <task> [options]\n       hydra-eval --list\n\ntasks:\n");
  for (const auto& [name, task] : tasks()) fmt::print("  {:<10} {}\n", name, task.summary);
  fmt::print(
      "\nscore options: --config CONFIG.yaml --weights W.safetensors --input IDS.safetensors --out OUT.safetensors\n"
      "               [--device auto|cpu|cuda]\n");
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
