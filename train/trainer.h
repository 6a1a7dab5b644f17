#pragma once
// The training loop (training issue; SPEC §7.2 step sequence).
//
// One optimizer step ("step" = optimizer steps completed, the first being step 1):
//   zero grads → grad_accum × (draw a batch of windows, forward, loss = CE (+ MTP aux) / grad_accum, backward)
//   → global-norm clip → [stop here if the loss or the norm is not finite] → optimizer step → schedule step
//   → log / validate / checkpoint as configured.
// The logged loss is the sum of the scaled micro-batch losses (SPEC §7.2).
//
// Run folder (train.run_dir): config.yaml (the resolved config), metrics.jsonl (one JSON object per logged step:
// step, loss, lr, grad_norm, tokens_per_s, ms_per_step, elapsed_s, and val_loss when computed), loss.svg (written
// at the end of every invocation), checkpoints/step-N/ (checkpoint.h).
//
// Resume (train.resume = true): the newest checkpoint that verifies is loaded (corrupt newer ones are reported and
// skipped); its config must equal the current one except for the keys key_may_change_on_resume() allows, else
// the error lists the differences. Model, optimizer state, schedule and the data stream continue exactly: on the
// CPU a resumed run reproduces the uninterrupted run's losses bit for bit.
// Without resume, a run folder that already holds checkpoints is an error (nothing is overwritten).
//
// Stops: after train.steps; after train.stop_after steps of this invocation (a checkpoint is written); when
// `stop_flag` becomes true (SIGINT/SIGTERM in hydra-train: the current step finishes, a checkpoint is written);
// on a non-finite loss or gradient norm (the step is not applied, no checkpoint is written, so the last good
// one stays the newest).
#include <atomic>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "hydra/lm.h"
#include "train/config.h"
#include "train/data.h"

namespace hydra::train {

struct StepRecord {
  int64_t step = 0;
  double loss = 0;
  double lr = 0;          // the AdamW base lr × schedule factor used by this step
  double grad_norm = 0;   // before clipping
  double tokens_per_s = 0;
  double ms_per_step = 0;
  double val_loss = -1;   // < 0: not computed at this step
  double val_accuracy = -1;  // task streams: argmax accuracy on the validation batches' labels (< 0: none)
};

enum class StopReason { Finished, StopAfter, Signal, NonFinite };
const char* stop_reason_name(StopReason r);

struct TrainResult {
  int64_t first_step = 0;  // the first step this invocation ran
  int64_t last_step = 0;   // steps completed when it returned
  StopReason reason = StopReason::Finished;
  std::vector<StepRecord> history;  // every step this invocation ran (logged or not)
  std::string message;              // one line on why it stopped
  std::string last_checkpoint;      // folder of the newest checkpoint written (empty: none)
  std::string run_dir;
};

// The data of a synthetic-task run (data.source mqar | needle | qa): the training stream and fixed validation
// batches. The generators live in eval/ (above this layer), so the caller supplies them: hydra-train and
// hydra-eval pass eval::task_data_factory().
struct TaskData {
  std::unique_ptr<BatchSource> train;
  std::vector<Batch> validation;
  std::string description;  // one line for the start-up summary
};
using TaskDataFactory = std::function<TaskData(const TrainConfig& cfg, uint64_t data_seed)>;

// Runs one invocation of the training described by `cfg`. Progress and the start-up summary go to `log`.
// Throws for bad data, an unusable device or an inconsistent resume (with messages naming the file/key).
// An empty train.run_dir becomes runs/<config file stem>-<YYYYmmdd-HHMMSS> under the current folder (then
// train.resume is an error: there is nothing to resume). TrainResult::run_dir says which folder was used.
TrainResult run_training(TrainConfig cfg, std::ostream& log, const std::atomic<bool>* stop_flag = nullptr,
                         const TaskDataFactory& task_data = {});

// The next-token loss of a batch of rows ids (B, L + 1) int64: positions 0..L−1 predict tokens 1..L (mean
// cross-entropy), plus the MTP aux loss when fwd.compute_mtp and the model has MTP heads. The value of
// lm_loss(model.forward(ids).logits, ids), but the model runs on the first L tokens only (the logits of the last
// one would predict nothing, and a length like 2048 keeps the chunked kernels free of a partial chunk); with MTP
// the whole row goes in, since the heads' targets reach token L.
Tensor next_token_loss(const LanguageModel& model, const Tensor& ids, const ForwardOptions& fwd = {});

// The loss-curve plot of a metrics.jsonl file as a standalone SVG document (train loss line, val loss markers).
std::string loss_curve_svg(const std::string& metrics_jsonl_text, const std::string& title);

}  // namespace hydra::train
