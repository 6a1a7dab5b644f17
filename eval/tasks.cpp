// hydra-eval's synthetic tasks: evaluation, train-and-evaluate runs, results.json, tables and plots (tasks.h).
#include "eval/tasks.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <ostream>

#include "autograd/autograd.h"
#include "eval/prefill.h"
#include "eval/task_data.h"
#include "tensor/check.h"
#include "tensor/ops/indexing.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace hydra::eval {

namespace fs = std::filesystem;

const std::vector<std::string>& task_names() {
  static const std::vector<std::string> kNames = {"mqar", "needle", "qa"};
  return kNames;
}

namespace {

Tensor positions_tensor(const std::vector<int64_t>& pos) {
  return from_vector(pos, {static_cast<int64_t>(pos.size())});
}

// Targets at `pos` of labels (B, N) → (B, |pos|).
Tensor targets_at(const Tensor& labels, const std::vector<int64_t>& pos) {
  return index_select(labels, 1, positions_tensor(pos));
}

std::string fmt_acc(double a) { return std::isfinite(a) ? fmt::format("{:.4f}", a) : std::string("–"); }

const char* kBucketLabels[4] = {"0–25%", "25–50%", "50–75%", "75–100%"};

// ---- evaluations --------------------------------------------------------------------------------------------

Json evaluate_mqar(const LanguageModel& model, const train::TrainConfig& cfg) {
  const MqarConfig m = mqar_config(cfg);
  const std::vector<int64_t> pos = mqar_label_positions(m);
  Generator gen(static_cast<uint64_t>(cfg.eval.seed));
  PositionScore tot;
  for (int64_t b = 0; b < cfg.mqar.eval_batches; ++b) {
    const MqarBatch mb = make_mqar_batch(m, cfg.mqar.eval_batch_size, gen);
    const PositionScore s =
        score_positions(logits_at(model, mb.input_ids, pos, cfg.eval.prefill_chunk), targets_at(mb.labels, pos));
    tot.correct += s.correct, tot.count += s.count, tot.loss_sum += s.loss_sum;
  }
  Json r = Json::object();
  r["accuracy"] = tot.correct / tot.count;
  r["mqar_accuracy"] = tot.correct / tot.count;
  r["mqar_loss"] = tot.loss_sum / tot.count;
  r["answer_positions"] = static_cast<int64_t>(tot.count);
  r["sequences"] = cfg.mqar.eval_batches * cfg.mqar.eval_batch_size;
  r["seq_len"] = m.resolved_seq_len();
  return r;
}

NeedleReadout needle_readout(const train::TrainConfig& cfg) {
  return cfg.needle.readout == "reference" ? NeedleReadout::Reference : NeedleReadout::Corrected;
}

std::string readout_text(NeedleReadout r) {
  return r == NeedleReadout::Reference ? "reference (logits at N−3, the PyTorch reference's reading, SPEC §10)"
                                       : "corrected (logits at N−2 predict the value)";
}

const char* needle_lengths_key(const train::TrainConfig& cfg) {
  return cfg.needle.lengths.empty() ? "data.seq_len" : "needle.lengths";
}

std::vector<int64_t> needle_lengths(const train::TrainConfig& cfg) {
  return cfg.needle.lengths.empty() ? std::vector<int64_t>{cfg.data.seq_len} : cfg.needle.lengths;
}

Json evaluate_needle(const LanguageModel& model, const train::TrainConfig& cfg) {
  const NeedleReadout readout = needle_readout(cfg);
  const int64_t B = cfg.needle.eval_batch_size, nb = cfg.needle.eval_batches;
  Json r = Json::object();
  Json heat = Json::array(), per_len = Json::array();
  double all_correct = 0, all_count = 0;
  for (int64_t L : needle_lengths(cfg)) {
    // One generator per length (seeded from eval.seed and the length), consumed cell by cell in order.
    Generator gen(static_cast<uint64_t>(cfg.eval.seed) * 1000003ull + static_cast<uint64_t>(L));
    const std::vector<int64_t> pos = {needle_readout_position(L, readout)};
    const std::vector<int64_t> label_pos = {L - 2};
    Json row = Json::array();
    for (double d : cfg.needle.depths) {
      const NeedleConfig nc = needle_config(cfg, L, needle_lengths_key(cfg), d);
      PositionScore s;
      for (int64_t b = 0; b < nb; ++b) {
        const NeedleBatch bt = make_needle_batch(nc, B, gen);
        const PositionScore x = score_positions(logits_at(model, bt.input_ids, pos, cfg.eval.prefill_chunk),
                                                targets_at(bt.labels, label_pos));
        s.correct += x.correct, s.count += x.count;
      }
      row.push_back(s.correct / s.count);
      all_correct += s.correct, all_count += s.count;
    }
    heat.push_back(row);
    // SPEC §8.2's protocol at this length: random depths, accuracy overall and per depth quartile.
    const NeedleConfig nc = needle_config(cfg, L, needle_lengths_key(cfg));
    double bc[4] = {0, 0, 0, 0}, bn[4] = {0, 0, 0, 0}, c = 0, n = 0;
    for (int64_t b = 0; b < nb; ++b) {
      const NeedleBatch bt = make_needle_batch(nc, B, gen);
      const std::vector<int> ok = correct_flags(logits_at(model, bt.input_ids, pos, cfg.eval.prefill_chunk),
                                                targets_at(bt.labels, label_pos));
      for (int64_t i = 0; i < B; ++i) {
        const int k = needle_depth_bucket(static_cast<double>(bt.depth[static_cast<size_t>(i)]) /
                                          static_cast<double>(L));
        bc[k] += ok[static_cast<size_t>(i)] == 1, bn[k] += 1;
        c += ok[static_cast<size_t>(i)] == 1, n += 1;
      }
    }
    Json pl = Json::object();
    pl["length"] = L;
    pl["accuracy"] = c / n;
    for (int k = 0; k < 4; ++k) pl[depth_bucket_name(k)] = bc[k] / std::max(bn[k], 1.0);
    pl["sequences"] = static_cast<int64_t>(n);
    per_len.push_back(pl);
  }
  r["accuracy"] = all_correct / all_count;
  r["readout"] = readout_text(readout);
  Json lens = Json::array(), deps = Json::array();
  for (int64_t L : needle_lengths(cfg)) lens.push_back(L);
  for (double d : cfg.needle.depths) deps.push_back(d);
  r["lengths"] = lens;
  r["depths"] = deps;
  r["heatmap"] = heat;  // [length][depth] accuracy
  r["sequences_per_cell"] = nb * B;
  r["random_depth"] = per_len;
  return r;
}

Json evaluate_qa(const LanguageModel& model, const train::TrainConfig& cfg) {
  const QaConfig q = qa_config(cfg);
  const std::vector<int64_t> pos = qa_label_positions(q);
  Generator gen(static_cast<uint64_t>(cfg.eval.seed));
  double bc[4] = {0, 0, 0, 0}, bn[4] = {0, 0, 0, 0}, c = 0, n = 0, loss = 0;
  for (int64_t b = 0; b < cfg.qa.eval_batches; ++b) {
    const QaBatch qb = make_qa_batch(q, cfg.qa.eval_batch_size, gen);
    const Tensor lg = logits_at(model, qb.input_ids, pos, cfg.eval.prefill_chunk);
    const Tensor tg = targets_at(qb.labels, pos);
    const std::vector<int> ok = correct_flags(lg, tg);
    loss += score_positions(lg, tg).loss_sum;
    for (size_t i = 0; i < ok.size(); ++i) {
      if (ok[i] < 0) continue;
      const int k = qa_depth_bucket(qb.depth[i]);
      bc[k] += ok[i], bn[k] += 1, c += ok[i], n += 1;
    }
  }
  Json r = Json::object();
  r["accuracy"] = c / n;
  for (int k = 0; k < 4; ++k) r[depth_bucket_name(k)] = bc[k] / std::max(bn[k], 1.0);
  for (int k = 0; k < 4; ++k) r[fmt::format("n_{}", depth_bucket_name(k))] = static_cast<int64_t>(bn[k]);
  r["n_queries"] = static_cast<int64_t>(n);
  r["loss"] = loss / n;
  r["seq_len"] = q.seq_len;
  return r;
}

// ---- run bookkeeping -----------------------------------------------------------------------------------------

std::string stamp() {
  const std::time_t now = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", std::localtime(&now));
  return buf;
}

struct VariantOutcome {
  std::string name;
  HydraConfig model;
  int64_t params = 0;
  double train_s = 0;
  int64_t steps = 0;
  Json history = Json::array();
  Json metrics;
};

Json variant_json(const VariantOutcome& v) {
  Json j = Json::object();
  j["arch"] = v.model.arch;
  j["layers"] = v.model.layer_list();
  j["params"] = v.params;
  if (v.steps > 0) {
    j["steps"] = v.steps;
    j["time_s"] = v.train_s;
    j["history"] = v.history;
  }
  j["metrics"] = v.metrics;
  j["final_accuracy"] = v.metrics.at("accuracy").as_number();
  return j;
}

std::string results_table(const std::string& task, const std::vector<VariantOutcome>& vs) {
  std::vector<std::vector<std::string>> rows;
  if (task == "mqar") {
    for (const auto& v : vs)
      rows.push_back({v.name, v.model.arch, v.model.layer_list(), std::to_string(v.params),
                      v.steps > 0 ? std::to_string(v.steps) : "–", v.steps > 0 ? fmt::format("{:.1f}", v.train_s) : "–",
                      fmt_acc(v.metrics.at("accuracy").as_number()),
                      fmt::format("{:.4f}", v.metrics.at("mqar_loss").as_number()),
                      std::to_string(v.metrics.at("answer_positions").as_int64())});
    return markdown_table({"variant", "arch", "layers", "params", "steps", "train s", "accuracy", "loss",
                           "answers"},
                          rows);
  }
  if (task == "qa") {
    for (const auto& v : vs) {
      std::vector<std::string> r = {v.name, v.model.layer_list(), std::to_string(v.params),
                                    v.steps > 0 ? std::to_string(v.steps) : "–",
                                    fmt_acc(v.metrics.at("accuracy").as_number())};
      for (int k = 0; k < 4; ++k) r.push_back(fmt_acc(v.metrics.at(depth_bucket_name(k)).as_number()));
      r.push_back(std::to_string(v.metrics.at("n_queries").as_int64()));
      rows.push_back(r);
    }
    return markdown_table({"variant", "layers", "params", "steps", "accuracy", "depth 0–25%", "25–50%", "50–75%",
                           "75–100%", "queries"},
                          rows);
  }
  // needle: one table per variant, rows = lengths, columns = depths, then the random-depth protocol.
  std::string out;
  for (const auto& v : vs) {
    const Json& m = v.metrics;
    out += fmt::format("**{}** ({}, {} params{}) — readout {}; overall {}\n\n", v.name, v.model.layer_list(),
                       v.params, v.steps > 0 ? fmt::format(", trained {} steps", v.steps) : "",
                       m.at("readout").as_string(), fmt_acc(m.at("accuracy").as_number()));
    std::vector<std::string> header = {"length"};
    for (size_t d = 0; d < m.at("depths").size(); ++d)
      header.push_back(fmt::format("depth {:g}", m.at("depths").at(d).as_number()));
    header.push_back("random depth");
    for (int k = 0; k < 4; ++k) header.push_back(kBucketLabels[k]);
    std::vector<std::vector<std::string>> t;
    for (size_t i = 0; i < m.at("lengths").size(); ++i) {
      std::vector<std::string> r = {std::to_string(m.at("lengths").at(i).as_int64())};
      for (size_t d = 0; d < m.at("depths").size(); ++d) r.push_back(fmt_acc(m.at("heatmap").at(i).at(d).as_number()));
      const Json& pl = m.at("random_depth").at(i);
      r.push_back(fmt_acc(pl.at("accuracy").as_number()));
      for (int k = 0; k < 4; ++k) r.push_back(fmt_acc(pl.at(depth_bucket_name(k)).as_number()));
      t.push_back(r);
    }
    out += markdown_table(header, t) + "\n";
  }
  return out;
}

// Writes the task's plots into `out`; returns their file names.
std::vector<std::string> write_plots(const std::string& task, const std::vector<VariantOutcome>& vs,
                                     const fs::path& out) {
  std::vector<std::string> files;
  auto put = [&](const std::string& name, const std::string& svg) {
    train::write_text_file_atomic((out / name).string(), svg);
    files.push_back(name);
  };
  std::vector<std::string> names;
  for (const auto& v : vs) names.push_back(v.name);
  if (task == "mqar") {
    std::vector<double> acc;
    for (const auto& v : vs) acc.push_back(v.metrics.at("accuracy").as_number());
    put("mqar_accuracy.svg", bar_chart_svg("MQAR accuracy on held-out batches", names, acc, "accuracy", 1.0));
    std::vector<std::vector<std::pair<double, double>>> pts;
    bool any = false;
    for (const auto& v : vs) {
      pts.emplace_back();
      for (size_t i = 0; i < v.history.size(); ++i) {
        const Json& h = v.history.at(i);
        if (h.contains("eval_accuracy")) {
          pts.back().emplace_back(h.at("step").as_number(), h.at("eval_accuracy").as_number());
          any = true;
        }
      }
    }
    if (any) put("mqar_curves.svg", line_chart_svg("MQAR validation accuracy during training", "step", "accuracy",
                                                   names, pts, 1.0));
  } else if (task == "needle") {
    for (const auto& v : vs) {
      const Json& m = v.metrics;
      std::vector<std::string> rl, cl;
      std::vector<std::vector<double>> vals;
      for (size_t i = 0; i < m.at("lengths").size(); ++i) {
        rl.push_back(std::to_string(m.at("lengths").at(i).as_int64()));
        vals.emplace_back();
        for (size_t d = 0; d < m.at("depths").size(); ++d) vals.back().push_back(m.at("heatmap").at(i).at(d).as_number());
      }
      for (size_t d = 0; d < m.at("depths").size(); ++d) cl.push_back(fmt::format("{:g}", m.at("depths").at(d).as_number()));
      put(fmt::format("needle_{}.svg", v.name),
          heatmap_svg(fmt::format("needle accuracy — {} ({})", v.name, m.at("readout").as_string()), rl, cl, vals,
                      "context length", "needle depth (fraction of the context)"));
    }
  } else {
    std::vector<std::string> groups(kBucketLabels, kBucketLabels + 4);
    std::vector<std::vector<double>> vals;
    for (const auto& v : vs) {
      vals.emplace_back();
      for (int k = 0; k < 4; ++k) vals.back().push_back(v.metrics.at(depth_bucket_name(k)).as_number());
    }
    put("qa_depth.svg", grouped_bar_chart_svg("multi-fact QA accuracy by depth of the fact", groups, names, vals,
                                              "accuracy", 1.0));
  }
  return files;
}

}  // namespace

Json evaluate_task(const std::string& task, const LanguageModel& model, const train::TrainConfig& cfg) {
  ag::NoGradGuard no_grad;
  if (task == "mqar") return evaluate_mqar(model, cfg);
  if (task == "needle") return evaluate_needle(model, cfg);
  if (task == "qa") return evaluate_qa(model, cfg);
  HYDRA_CHECK(false, "hydra-eval: unknown task '{}' (known: mqar, needle, qa)", task);
}

TaskRunResult run_task(const TaskRunOptions& o, std::ostream& log) {
  const auto& known = task_names();
  HYDRA_CHECK(std::find(known.begin(), known.end(), o.task) != known.end(),
              "hydra-eval: unknown task '{}' (known: mqar, needle, qa)", o.task);
  HYDRA_CHECK(!o.config.empty() || !o.checkpoint.empty(),
              "hydra-eval {}: give --config FILE (train, then evaluate) or --checkpoint DIR (evaluate a trained "
              "model)", o.task);
  TaskRunResult res;
  res.out_dir = o.out.empty() ? (fs::current_path() / "runs" / fmt::format("{}-{}", o.task, stamp())).string()
                              : fs::absolute(o.out).lexically_normal().string();
  const fs::path out(res.out_dir);
  std::error_code ec;
  HYDRA_CHECK(!fs::exists(out / "results.json", ec),
              "hydra-eval {}: '{}' already holds results (results.json); choose another --out (nothing is "
              "overwritten)", o.task, res.out_dir);

  std::vector<VariantOutcome> outcomes;
  train::TrainConfig base;
  std::string device;
  if (!o.checkpoint.empty()) {
    const train::Checkpoint ck = train::resolve_checkpoint(o.checkpoint);
    const train::TrainConfig ck_cfg = train::parse_train_config(ck.config_yaml, ck.dir + "/config.yaml", "/");
    std::vector<std::string> ov = o.overrides;
    ov.insert(ov.begin(), "data.source=" + o.task);
    base = o.config.empty() ? train::parse_train_config(ck.config_yaml, ck.dir + "/config.yaml", "/", ov)
                            : train::load_train_config(o.config, ov);
    if (!o.config.empty()) {
      HYDRA_CHECK(base.model.vocab_size == ck_cfg.model.vocab_size,
                  "hydra-eval {}: the checkpoint {} has model.vocab_size {}, the config {} has {}; the task's tokens "
                  "are drawn from the config's vocabulary, so they must agree",
                  o.task, ck.dir, ck_cfg.model.vocab_size, o.config, base.model.vocab_size);
      HYDRA_CHECK(base.model == ck_cfg.model || base.model.arch == ck_cfg.model.arch,
                  "hydra-eval {}: the checkpoint {} is a {} model, the config {} names arch {}", o.task, ck.dir,
                  ck_cfg.model.arch, o.config, base.model.arch);
    }
    fs::create_directories(out);
    // The checkpoint's own model is evaluated; only the task and evaluation settings come from the config.
    base.model = ck_cfg.model;
    const train::LoadedModel lm = train::load_checkpoint_model(ck, base.train.device, "train.device");
    device = lm.device;
    log << fmt::format("hydra-eval {}: evaluating {} (step {}) on {}\n", o.task, ck.dir, ck.state.step, device);
    VariantOutcome v;
    v.name = "checkpoint";
    v.model = ck_cfg.model;
    v.params = lm.model->num_parameters();
    v.metrics = evaluate_task(o.task, *lm.model, base);
    v.metrics["checkpoint"] = ck.dir;
    v.metrics["checkpoint_step"] = ck.state.step;
    outcomes.push_back(std::move(v));
  } else {
    std::vector<std::string> ov = o.overrides;
    ov.insert(ov.begin(), "data.source=" + o.task);
    base = train::load_train_config(o.config, ov);
    HYDRA_CHECK(base.train.run_dir.empty(),
                "hydra-eval {}: train.run_dir is set by hydra-eval (OUT/<variant>); remove it from the config or the "
                "overrides and use --out", o.task);
    fs::create_directories(out);
    std::vector<std::string> variants = base.eval.variants;
    if (variants.empty()) variants = {"hybrid"};
    for (const std::string& name : variants) {
      train::TrainConfig cfg = base;
      cfg.model = train::variant_model(base.model, name);
      cfg.train.run_dir = (out / name).string();
      cfg.train.progress = false;
      log << fmt::format("=== {} / variant {}: {} ===\n", o.task, name, cfg.model.layer_list());
      const auto t0 = std::chrono::steady_clock::now();
      const train::TrainResult tr = train::run_training(cfg, log, nullptr, task_data_factory());
      HYDRA_CHECK(tr.reason == train::StopReason::Finished,
                  "hydra-eval {}: training of variant {} did not finish ({}); nothing was evaluated", o.task, name,
                  tr.message);
      VariantOutcome v;
      v.name = name;
      v.model = cfg.model;
      v.steps = tr.last_step;
      for (const auto& h : tr.history) v.train_s += h.ms_per_step / 1e3;
      for (const auto& h : tr.history) {
        if (h.val_loss < 0) continue;
        Json row = Json::object();
        row["step"] = h.step;
        row["train_loss"] = h.loss;
        row["eval_loss"] = h.val_loss;
        if (h.val_accuracy >= 0) row["eval_accuracy"] = h.val_accuracy;
        row["lr"] = h.lr;
        v.history.push_back(row);
      }
      const train::LoadedModel lm =
          train::load_checkpoint_model(train::resolve_checkpoint(cfg.train.run_dir), cfg.train.device,
                                       "train.device");
      device = lm.device;
      v.params = lm.model->num_parameters();
      const auto te = std::chrono::steady_clock::now();
      v.metrics = evaluate_task(o.task, *lm.model, cfg);
      v.metrics["eval_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - te).count();
      log << fmt::format("variant {}: accuracy {} ({:.1f} s in all)\n", name,
                         fmt_acc(v.metrics.at("accuracy").as_number()),
                         std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      outcomes.push_back(std::move(v));
    }
  }

  // The headline: "hybrid" when it ran, else the first variant.
  size_t head = 0;
  for (size_t i = 0; i < outcomes.size(); ++i)
    if (outcomes[i].name == "hybrid") head = i;
  Json& r = res.results;
  r = Json::object();
  r["task"] = o.task;
  r["accuracy"] = outcomes[head].metrics.at("accuracy").as_number();
  r["headline_variant"] = outcomes[head].name;
  if (o.task == "needle") r["readout"] = outcomes[head].metrics.at("readout").as_string();
  r["command"] = o.command;
  r["device"] = device;
  r["mode"] = o.checkpoint.empty() ? "train_and_evaluate" : "evaluate_checkpoint";
  Json vj = Json::object();
  for (const auto& v : outcomes) vj[v.name] = variant_json(v);
  r["variants"] = vj;
  r["config"] = base.to_yaml();
  res.markdown = results_table(o.task, outcomes);
  const std::vector<std::string> plots = write_plots(o.task, outcomes, out);
  Json pj = Json::array();
  for (const auto& p : plots) pj.push_back(p);
  r["plots"] = pj;
  train::write_text_file_atomic((out / "results.json").string(), r.dump(2) + "\n");
  train::write_text_file_atomic((out / "results.md").string(),
                                fmt::format("# hydra-eval {}\n\n`{}`\n\n{}", o.task, o.command, res.markdown));
  return res;
}

}  // namespace hydra::eval
