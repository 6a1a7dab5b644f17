#pragma once
// Training checkpoints: run_dir/checkpoints/step-N/ holding
//   model.safetensors      the model's parameters under their SPEC §4 names (float32 master weights)
//   optimizer.safetensors  the optimizer state dict (optim/optimizer.h), e.g. "adamw.embed.weight.exp_avg"
//   trainer_state.json     step, tokens seen, the data sampler's (seed, offset), the schedule's step count
//   config.yaml            the fully resolved training config of the run
//   SHA256SUMS             one line per file above, in `sha256sum` format (so `sha256sum -c SHA256SUMS` works)
//
// Writing is atomic: everything goes to a hidden temporary folder beside the target (files fsync'ed), which is
// renamed to step-N only when complete; the parent folder is then fsync'ed. A crash leaves at most a hidden
// ".tmp-step-N-*" folder, which is never loaded (and is removed by the next write).
// Loading verifies every file's checksum before reading it; a missing or corrupt file throws
// std::runtime_error naming the folder, the file and what is wrong.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hydra/lm.h"
#include "tensor/tensor_core.h"
#include "train/config.h"

namespace hydra::train {

struct TrainerState {
  int64_t step = 0;             // optimizer steps completed
  int64_t tokens = 0;           // training tokens consumed
  uint64_t data_seed = 0;       // the training sampler's generator
  uint64_t data_offset = 0;
  int64_t schedule_steps = 0;   // scheduler steps taken
  double elapsed_s = 0;         // training wall time so far (over all invocations)
  std::string to_json() const;
  static TrainerState from_json(const std::string& text, const std::string& source);
};

struct Checkpoint {
  std::map<std::string, Tensor> model;
  std::map<std::string, Tensor> optimizer;
  TrainerState state;
  std::string config_yaml;
  std::string dir;
};

// Whole-file text I/O for the run folder. write_text_file_atomic writes a temporary file beside `path`, fsyncs it
// and renames it over `path` (a reader sees the old or the new content, never a mix). Errors name the file.
std::string read_text_file(const std::string& path);
void write_text_file_atomic(const std::string& path, const std::string& text);

// SHA-256 of a file's bytes / of a string, as 64 lowercase hex digits.
std::string sha256_file(const std::string& path);
std::string sha256_hex(const void* data, size_t n);

// Writes run_dir/checkpoints/step-<state.step>/ atomically (replacing an existing folder of that step), then
// deletes the oldest step folders beyond `keep`. Returns the folder's path.
std::string write_checkpoint(const std::string& run_dir, const Checkpoint& ck, int64_t keep);

// Step folders present in run_dir/checkpoints, newest (highest step) first.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& run_dir);

// Reads and verifies one step folder (throws std::runtime_error naming the problem).
Checkpoint read_checkpoint(const std::string& dir);

// The newest checkpoint that verifies. Corrupt newer ones are reported through `warnings` (one line each) and
// skipped. Returns false when none is valid (or none exists).
bool load_latest_checkpoint(const std::string& run_dir, Checkpoint& out, std::vector<std::string>& warnings);

// A checkpoint named on a command line: a step folder (it has SHA256SUMS) is read as is; any other folder is taken
// as a run folder and its newest valid checkpoint is used. Errors name `path` (and the skipped checkpoints).
Checkpoint resolve_checkpoint(const std::string& path);

struct LoadedModel {
  std::unique_ptr<LanguageModel> model;
  TrainConfig config;  // the checkpoint's config.yaml
  std::string device;  // "cpu" or "cuda"
};
// The model of a checkpoint, ready for evaluation: built from the checkpoint's config (its model.arch), weights
// loaded (errors name the file and every missing or mis-shaped tensor), moved to `device` (auto | cpu | cuda;
// `what` names the setting in messages), the bf16 policy on a GPU unless the run trained in fp32, eval mode.
LoadedModel load_checkpoint_model(const Checkpoint& ck, const std::string& device, const std::string& what);

}  // namespace hydra::train
