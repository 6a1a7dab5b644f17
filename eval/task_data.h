#pragma once
// Synthetic tasks (SPEC §8) as training data: data.source mqar | needle | qa in a training config. The stream draws
// fresh batches from a Philox generator (resumable from its seed and offset like the file sampler); the loss is the
// cross-entropy on the labelled positions only. Validation uses eval.batches fixed batches drawn from the seed
// train.seed + 9999 (SPEC §8.1's held-out evaluation seed), so they never coincide with training batches.
//
//   mqar   SPEC §8.1: vocab = model.vocab_size, P = mqar.num_kv_pairs, Q = mqar.num_queries, length data.seq_len
//   needle SPEC §8.2: vocab = model.vocab_size, K = needle.num_needles, filler needle.filler_frac; each batch's
//          length is drawn uniformly from needle.train_lengths (or is data.seq_len); the label is the value at N−2
//   qa     SPEC §8.4: K = qa.num_facts, Q = qa.num_queries, filler qa.filler_frac; each batch's length is drawn
//          uniformly from qa.train_lengths (or is data.seq_len)
// A setting the task cannot satisfy (vocabulary too small, sequence too short) is an error naming the keys.
#include <optional>

#include "eval/mqar.h"
#include "eval/needle.h"
#include "eval/qa.h"
#include "train/trainer.h"

namespace hydra::eval {

// The factory hydra-train and hydra-eval pass to train::run_training.
train::TaskDataFactory task_data_factory();

// The generator settings of a training config (validated; errors name the config keys). needle_config takes the
// sequence length (training lengths vary) and an optional depth fraction (the heatmap's cells).
MqarConfig mqar_config(const train::TrainConfig& cfg);
// `length_key` names where seq_len came from (needle.train_lengths, needle.lengths or data.seq_len) in errors.
NeedleConfig needle_config(const train::TrainConfig& cfg, int64_t seq_len, const char* length_key,
                           std::optional<double> depth = {});
// qa_config takes the length from data.seq_len unless given (`length_key` names where it came from).
QaConfig qa_config(const train::TrainConfig& cfg, std::optional<int64_t> seq_len = {},
                   const char* length_key = "data.seq_len");
// The positions that carry labels, the same for every row.
std::vector<int64_t> mqar_label_positions(const MqarConfig& m);

// The validation/evaluation seed of a training config (train.seed + 9999).
uint64_t task_eval_seed(const train::TrainConfig& cfg);

}  // namespace hydra::eval
