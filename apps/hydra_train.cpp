// hydra-train: trains a HydraLM from a YAML config (training issue). See `hydra-train --help` and the README.
//
//   hydra-train                                  train the embedded default config (configs/tiny.yaml)
//   hydra-train --config F [section.key=value …]  train config F with command-line overrides
//   hydra-train --config F --print-config        print the resolved config and exit
//
// Exit status: 0 when the run finished, stopped after train.stop_after steps, or was interrupted by SIGINT/SIGTERM
// (the current step completes and a checkpoint is written); 1 for a bad config, data or checkpoint (the message
// names the file/key); 3 when the loss or the gradient norm became non-finite (the last good checkpoint is kept).
#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <time.h>
#include <unistd.h>

#include "eval/task_data.h"
#include "train/config.h"
#include "train/trainer.h"
#include "train_default_config.h"  // kDefaultConfig (configs/tiny.yaml at build time), kDefaultConfigDir

namespace {

std::atomic<bool> g_stop{false};
std::atomic<int> g_signals{0};

std::atomic<long long> g_first_signal_ns{0};

long long monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // async-signal-safe
  return static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

extern "C" void on_signal(int sig) {
  const long long now = monotonic_ns();
  if (g_signals.fetch_add(1) >= 1) {
    // A second signal stops at once, unless it is the same event delivered twice: `timeout` signals the child
    // and then its whole process group within the same instant.
    if (now - g_first_signal_ns.load() < 1000000000LL) return;
    _exit(128 + sig);
  }
  g_first_signal_ns = now;
  g_stop = true;
  const char msg[] = "\nhydra-train: signal received; finishing the current step and writing a checkpoint "
                     "(send it again to exit at once)\n";
  [[maybe_unused]] auto n = write(STDERR_FILENO, msg, sizeof msg - 1);
}

void usage(std::FILE* f) {
  fmt::print(f,
             "usage: hydra-train [--config FILE] [section.key=value ...] [--print-config]\n"
             "\n"
             "Trains a HydraLM. Without --config it trains the embedded default config (configs/tiny.yaml: a small\n"
             "model on the shipped tinyshakespeare text). Overrides after the config use the keys below, e.g.\n"
             "  hydra-train --config configs/tiny.yaml train.steps=200 optim.name=muon model.n_layers=6\n"
             "Paths in a config are relative to the config file; paths in overrides to the current folder.\n"
             "\n"
             "options:\n"
             "  --config FILE     the YAML config (sections model, data, optim, train, eval, checkpoint, and the\n"
             "                    task sections mqar, needle, qa for data.source mqar | needle | qa)\n"
             "  --print-config    print the fully resolved config and exit\n"
             "  --help            this text\n"
             "  --keys-markdown   print the key table as Markdown (the README's table) and exit\n"
             "\n"
             "Stopping: SIGINT/SIGTERM finish the current step, write a checkpoint and exit 0; resume with\n"
             "train.resume=true (and the same train.run_dir). train.stop_after=N stops after N steps of this run.\n"
             "\n"
             "keys (key, type, default, meaning):\n{}",
             hydra::train::key_table_text());
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  bool print_config = false;
  std::vector<std::string> overrides;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    } else if (a == "--keys-markdown") {
      fmt::print("{}", hydra::train::key_table_markdown());
      return 0;
    } else if (a == "--config") {
      if (i + 1 >= argc) {
        fmt::print(stderr, "hydra-train: --config needs a file\n");
        return 1;
      }
      config_path = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      config_path = a.substr(9);
    } else if (a == "--print-config") {
      print_config = true;
    } else if (a.rfind("--", 0) == 0 || a.find('=') == std::string::npos) {
      fmt::print(stderr, "hydra-train: unknown argument '{}' (see hydra-train --help)\n", a);
      return 1;
    } else {
      overrides.push_back(a);
    }
  }
  try {
    const hydra::train::TrainConfig cfg =
        config_path.empty()
            ? hydra::train::parse_train_config(kDefaultConfig, "tiny.yaml (embedded default)", kDefaultConfigDir,
                                               overrides)
            : hydra::train::load_train_config(config_path, overrides);
    if (print_config) {
      std::cout << cfg.to_yaml();
      return 0;
    }
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    const auto res = hydra::train::run_training(cfg, std::cout, &g_stop, hydra::eval::task_data_factory());
    return res.reason == hydra::train::StopReason::NonFinite ? 3 : 0;
  } catch (const std::exception& e) {
    std::cout.flush();
    fmt::print(stderr, "hydra-train: error: {}\n", e.what());
    return 1;
  }
}
