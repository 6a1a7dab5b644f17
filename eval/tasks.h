#pragma once
// hydra-eval's synthetic tasks (SPEC §8): MQAR, needle-in-a-haystack, multi-fact long-context QA.
//
// Two ways to run a task:
//  * train and evaluate (--config F [overrides]): for each model variant of eval.variants (default: the config's
//    model), a fresh model is trained on the task's stream by train::run_training (data.source = the task; the run
//    folder is OUT/<variant>, with its metrics, loss curve and checkpoint), then its final checkpoint is reloaded
//    and evaluated on held-out batches drawn from eval.seed;
//  * evaluate a trained model (--checkpoint DIR): the checkpoint's model and config (task settings from --config
//    when given, then the overrides).
//
// Evaluations (every forward goes through eval::logits_at: chunked prefill carrying the streaming state, logits only
// at the scored positions, so memory does not grow with the length for HydraLM):
//  * mqar: accuracy and mean CE on the answer positions, mqar.eval_batches × mqar.eval_batch_size sequences;
//  * needle: for every length of needle.lengths × depth of needle.depths, the queried needle placed at that depth,
//    accuracy over needle.eval_batches × needle.eval_batch_size sequences (one heatmap cell), read at N−2
//    (corrected) or N−3 (the reference's reading), per needle.readout; plus per length the SPEC §8.2 protocol
//    with random depths: accuracy overall and per depth quartile;
//  * qa: accuracy over all queries and per depth quartile of the queried fact.
//
// Output in OUT (--out, default runs/<task>-<date-time>): results.json (every number, the resolved config, the
// command, a top-level "accuracy" = the headline variant's overall accuracy: "hybrid" when run, else the first),
// results.md (the table printed on stdout) and SVG plots: mqar_accuracy.svg + mqar_curves.svg, needle_<variant>.svg
// heatmaps, qa_depth.svg.
#include <atomic>
#include <iosfwd>
#include <string>
#include <vector>

#include "eval/report.h"
#include "hydra/lm.h"
#include "train/config.h"

namespace hydra::eval {

const std::vector<std::string>& task_names();  // mqar, needle, qa

struct TaskRunOptions {
  std::string task;                    // one of task_names()
  std::string config;                  // --config
  std::vector<std::string> overrides;  // section.key=value
  std::string checkpoint;              // --checkpoint (evaluate instead of training)
  std::string out;                     // --out (empty: runs/<task>-<date-time>)
  std::string command;                 // the command line, recorded in results.json
};

struct TaskRunResult {
  Json results;          // what results.json holds
  std::string markdown;  // the table printed on stdout
  std::string out_dir;
};

TaskRunResult run_task(const TaskRunOptions& opts, std::ostream& log);

// The evaluation of one model on `task` with the settings of `cfg` (task sections, eval.seed, eval.prefill_chunk,
// data.seq_len); a JSON object of metrics with "accuracy" among them.
Json evaluate_task(const std::string& task, const LanguageModel& model, const train::TrainConfig& cfg);

}  // namespace hydra::eval
