// Synthetic task streams for training (task_data.h).
#include "eval/task_data.h"

#include <fmt/format.h>

#include <stdexcept>

#include "tensor/check.h"

namespace hydra::eval {

namespace {

// Runs a generator config's validate() and re-throws its error with the config keys that feed it.
template <class F>
void checked(const train::TrainConfig& cfg, const char* keys, F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(fmt::format("{}: task {} with {}: {}", cfg.source, cfg.data.source, keys, e.what()));
  }
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
  td.description = fmt::format("{}; validation {} fixed batches (seed {})", desc, cfg.eval.batches,
                               task_eval_seed(cfg));
  return td;
}

// The training lengths of a task with a per-step length list (`lengths` empty: data.seq_len only), and the key
// they came from for errors.
std::pair<std::vector<int64_t>, const char*> train_lengths(const train::TrainConfig& cfg,
                                                           const std::vector<int64_t>& lengths, const char* key) {
  if (lengths.empty()) return {{cfg.data.seq_len}, "data.seq_len"};
  return {lengths, key};
}

// One of n choices, uniform; a draw from the batch generator keeps the stream resumable. No draw when n = 1.
size_t draw_choice(size_t n, Generator& g) {
  if (n <= 1) return 0;
  const double u = rand({1}, g, DType::Float64).item();
  return std::min(n - 1, static_cast<size_t>(u * static_cast<double>(n)));
}

std::string join_lengths(const std::vector<int64_t>& lengths) {
  std::string ls;
  for (int64_t L : lengths) ls += (ls.empty() ? "" : ", ") + std::to_string(L);
  return ls;
}

}  // namespace

MqarConfig mqar_config(const train::TrainConfig& cfg) {
  MqarConfig m;
  m.vocab_size = cfg.model.vocab_size;
  m.num_kv_pairs = cfg.mqar.num_kv_pairs;
  m.num_queries = cfg.mqar.num_queries;
  m.seq_len = cfg.data.seq_len;
  checked(cfg, "model.vocab_size, mqar.num_kv_pairs, mqar.num_queries, data.seq_len", [&] { m.validate(); });
  return m;
}

NeedleConfig needle_config(const train::TrainConfig& cfg, int64_t seq_len, const char* length_key,
                           std::optional<double> depth) {
  NeedleConfig n;
  n.vocab_size = cfg.model.vocab_size;
  n.seq_len = seq_len;
  n.num_needles = cfg.needle.num_needles;
  n.filler_frac = cfg.needle.filler_frac;
  n.depth_fraction = depth;
  const std::string keys = fmt::format("model.vocab_size, needle.num_needles, needle.filler_frac and {} = {}",
                                       length_key, seq_len);
  checked(cfg, keys.c_str(), [&] { n.validate(); });
  return n;
}

QaConfig qa_config(const train::TrainConfig& cfg, std::optional<int64_t> seq_len, const char* length_key) {
  QaConfig q;
  q.vocab_size = cfg.model.vocab_size;
  q.seq_len = seq_len.value_or(cfg.data.seq_len);
  q.num_facts = cfg.qa.num_facts;
  q.num_queries = cfg.qa.num_queries;
  q.filler_frac = cfg.qa.filler_frac;
  const std::string keys = fmt::format("model.vocab_size, qa.num_facts, qa.num_queries, qa.filler_frac and {} = {}",
                                       length_key, q.seq_len);
  checked(cfg, keys.c_str(), [&] { q.validate(); });
  return q;
}

std::vector<int64_t> mqar_label_positions(const MqarConfig& m) {
  std::vector<int64_t> pos;
  for (int64_t j = 0; j < m.num_queries; ++j) pos.push_back(2 * m.num_kv_pairs + 2 * j);
  return pos;
}

uint64_t task_eval_seed(const train::TrainConfig& cfg) { return static_cast<uint64_t>(cfg.train.seed) + 9999; }

train::TaskDataFactory task_data_factory() {
  return [](const train::TrainConfig& cfg, uint64_t data_seed) -> train::TaskData {
    if (cfg.data.source == "mqar") {
      const MqarConfig m = mqar_config(cfg);
      const std::vector<int64_t> pos = mqar_label_positions(m);
      return make_task_data(
          cfg, data_seed,
          [m, pos](int64_t b, Generator& g) {
            MqarBatch mb = make_mqar_batch(m, b, g);
            return train::Batch{mb.input_ids, mb.labels, pos};
          },
          fmt::format("MQAR stream (SPEC §8.1): vocab {}, P {} pairs, Q {} queries, length {}", m.vocab_size,
                      m.num_kv_pairs, m.num_queries, m.resolved_seq_len()));
    }
    if (cfg.data.source == "needle") {
      const auto [lengths, key] = train_lengths(cfg, cfg.needle.train_lengths, "needle.train_lengths");
      std::vector<NeedleConfig> ncs;
      for (int64_t L : lengths) ncs.push_back(needle_config(cfg, L, key));
      return make_task_data(
          cfg, data_seed,
          [ncs](int64_t b, Generator& g) {
            const size_t i = draw_choice(ncs.size(), g);  // one length per batch
            NeedleBatch nb = make_needle_batch(ncs[i], b, g);
            const int64_t N = ncs[i].seq_len;
            return train::Batch{nb.input_ids, nb.labels, {N - 2}};
          },
          fmt::format("needle stream (SPEC §8.2): vocab {}, {} needle(s), filler fraction {}, lengths [{}], label "
                      "at N−2",
                      cfg.model.vocab_size, cfg.needle.num_needles, cfg.needle.filler_frac, join_lengths(lengths)));
    }
    if (cfg.data.source == "qa") {
      const auto [lengths, key] = train_lengths(cfg, cfg.qa.train_lengths, "qa.train_lengths");
      std::vector<QaConfig> qcs;
      std::vector<std::vector<int64_t>> poss;
      for (int64_t L : lengths) {
        qcs.push_back(qa_config(cfg, L, key));
        poss.push_back(qa_label_positions(qcs.back()));
      }
      return make_task_data(
          cfg, data_seed,
          [qcs, poss](int64_t b, Generator& g) {
            const size_t i = draw_choice(qcs.size(), g);  // one length per batch
            QaBatch qb = make_qa_batch(qcs[i], b, g);
            return train::Batch{qb.input_ids, qb.labels, poss[i]};
          },
          fmt::format("multi-fact QA stream (SPEC §8.4): vocab {}, {} facts, {} queries, filler fraction {}, lengths "
                      "[{}]",
                      cfg.model.vocab_size, cfg.qa.num_facts, cfg.qa.num_queries, cfg.qa.filler_frac,
                      join_lengths(lengths)));
    }
    HYDRA_CHECK(false, "{}: data.source '{}' has no task generator (known: mqar, needle, qa)", cfg.source,
                cfg.data.source);
  };
}

}  // namespace hydra::eval
