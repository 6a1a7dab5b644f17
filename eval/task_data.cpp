// Synthetic task streams for training (task_data.h).
#include "eval/task_data.h"

#include <fmt/format.h>

#include <stdexcept>

#include "eval/mqar.h"
#include "tensor/check.h"

namespace hydra::eval {

namespace {

// Re-throws a generator's validation error with the config keys that feed it.
template <class F>
auto checked(const train::TrainConfig& cfg, const char* keys, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(fmt::format("{}: data.source {} with {}: {}", cfg.source, cfg.data.source, keys,
                                            e.what()));
  }
}

MqarConfig mqar_config(const train::TrainConfig& cfg) {
  MqarConfig m;
  m.vocab_size = cfg.model.vocab_size;
  m.num_kv_pairs = cfg.mqar.num_kv_pairs;
  m.num_queries = cfg.mqar.num_queries;
  m.seq_len = cfg.data.seq_len;
  checked(cfg, "model.vocab_size, mqar.num_kv_pairs, mqar.num_queries, data.seq_len", [&] { m.validate(); });
  return m;
}

train::Batch mqar_batch(const MqarConfig& m, int64_t batch, Generator& gen) {
  const MqarBatch b = make_mqar_batch(m, batch, gen);
  std::vector<int64_t> pos;
  for (int64_t j = 0; j < m.num_queries; ++j) pos.push_back(2 * m.num_kv_pairs + 2 * j);
  return {b.input_ids, b.labels, pos};
}

// A stream of batches from `make(batch, gen)`.
template <class Make>
class GeneratedSource : public train::BatchSource {
 public:
  GeneratedSource(Make make, uint64_t seed) : make_(std::move(make)), gen_(seed) {}
  train::Batch next(int64_t batch) override { return make_(batch, gen_); }
  uint64_t seed() const override { return gen_.seed(); }
  uint64_t offset() const override { return gen_.offset(); }
  void set_state(uint64_t seed, uint64_t offset) override { gen_.set_state(seed, offset); }

 private:
  Make make_;
  Generator gen_;
};

template <class Make>
train::TaskData make_task_data(const train::TrainConfig& cfg, uint64_t data_seed, Make make, std::string desc) {
  train::TaskData td;
  Generator vgen(task_eval_seed(cfg));
  for (int64_t i = 0; i < cfg.eval.batches; ++i) td.validation.push_back(make(cfg.train.batch_size, vgen));
  td.train = std::make_unique<GeneratedSource<Make>>(std::move(make), data_seed);
  td.description = std::move(desc);
  return td;
}

}  // namespace

uint64_t task_eval_seed(const train::TrainConfig& cfg) { return static_cast<uint64_t>(cfg.train.seed) + 9999; }

train::TaskDataFactory task_data_factory() {
  return [](const train::TrainConfig& cfg, uint64_t data_seed) -> train::TaskData {
    if (cfg.data.source == "mqar") {
      const MqarConfig m = mqar_config(cfg);
      return make_task_data(
          cfg, data_seed, [m](int64_t b, Generator& g) { return mqar_batch(m, b, g); },
          fmt::format("MQAR stream (SPEC §8.1): vocab {}, P {} pairs, Q {} queries, length {}; validation {} fixed "
                      "batches (seed {})",
                      m.vocab_size, m.num_kv_pairs, m.num_queries, m.resolved_seq_len(), cfg.eval.batches,
                      task_eval_seed(cfg)));
    }
    HYDRA_CHECK(false, "{}: data.source '{}' has no task generator (known: mqar, needle, qa)", cfg.source,
                cfg.data.source);
  };
}

}  // namespace hydra::eval
