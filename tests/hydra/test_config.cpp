// HydraConfig (SPEC §1): defaults, derived fields, schedules, summary, JSON round trip, YAML loading,
// every error class and command-line overrides.
#include "hydra/config.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

namespace {

namespace fs = std::filesystem;

// A per-process scratch folder: ctest may run several test cases of this binary at once.
fs::path scratch_dir() {
  const fs::path dir = fs::temp_directory_path() / ("hydra_test_config_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

std::string write_yaml(const std::string& name, const std::string& text) {
  const fs::path p = scratch_dir() / name;
  std::ofstream out(p);
  out << text;
  return p.string();
}

// Loads `text` as a config file and checks the error message contains every fragment.
void check_yaml_error(const std::string& name, const std::string& text, std::vector<std::string> fragments) {
  const std::string path = write_yaml(name, text);
  fragments.insert(fragments.begin(), path);
  check_throws_with([&] { load_model_config(path); }, fragments);
  fs::remove(path);
}

using LT = LayerType;
constexpr LT DN = LT::DeltaNet, SW = LT::Swa, RT = LT::Retrieval;

std::vector<int64_t> indices_of(const std::vector<LT>& types, LT t) {
  std::vector<int64_t> out;
  for (size_t i = 0; i < types.size(); ++i)
    if (types[i] == t) out.push_back(static_cast<int64_t>(i));
  return out;
}

}  // namespace

TEST_CASE("HydraConfig defaults match SPEC 1.1 in serialisation order") {
  const HydraConfig c;
  CHECK(c.vocab_size == 32000);
  CHECK(c.pad_token_id == 0);
  CHECK(c.d_model == 768);
  CHECK(c.n_layers == 12);
  CHECK(c.n_heads == 12);
  CHECK(!c.head_dim.has_value());
  CHECK(c.mlp_mult == 2.6666666666666665);
  CHECK(c.mlp_mult == 8.0 / 3.0);
  CHECK(c.mlp_multiple_of == 64);
  CHECK(c.dn_short_conv_kernel == 4);
  CHECK(c.dn_use_gate);
  CHECK(c.dn_chunk_size == 64);
  CHECK(c.dn_norm_qk);
  CHECK(c.swa_window == 512);
  CHECK(c.swa_rope_base == 10000.0);
  CHECK(!c.layer_types.has_value());
  CHECK(c.swa_every == 4);
  CHECK(c.rms_eps == 1e-5);
  CHECK(c.tie_embeddings);
  CHECK(c.initializer_range == 0.02);
  CHECK(c.max_position_embeddings == 1048576);
  CHECK(c.retrieval_every == 0);
  CHECK(c.retrieval_chunk_size == 128);
  CHECK(c.retrieval_top_k == 8);
  CHECK(!c.retrieval_learned_summary);
  CHECK(c.mtp_depth == 0);
  CHECK(c.mtp_loss_weight == 0.1);
  CHECK(c.arch == "hydra");
  const std::vector<std::string> order = {
      "vocab_size", "pad_token_id", "d_model", "n_layers", "n_heads", "head_dim", "mlp_mult", "mlp_multiple_of",
      "dn_short_conv_kernel", "dn_use_gate", "dn_chunk_size", "dn_norm_qk", "swa_window", "swa_rope_base",
      "layer_types", "swa_every", "rms_eps", "tie_embeddings", "initializer_range", "max_position_embeddings",
      "retrieval_every", "retrieval_chunk_size", "retrieval_top_k", "retrieval_learned_summary", "mtp_depth",
      "mtp_loss_weight", "arch"};
  CHECK(HydraConfig::field_names() == order);
  CHECK_NOTHROW(c.validate());
}

TEST_CASE("default config derives D 64, I 768, F 2048 and SWA at every fourth layer") {
  const HydraConfig c;
  CHECK(c.resolved_head_dim() == 64);
  CHECK(c.inner_dim() == 768);
  CHECK(c.mlp_hidden_dim() == 2048);
  const auto t = c.resolved_layer_types();
  REQUIRE(t.size() == 12);
  CHECK(indices_of(t, SW) == std::vector<int64_t>{3, 7, 11});
  CHECK(c.n_swa_layers() == 3);
  CHECK(c.n_dn_layers() == 9);
  CHECK(c.n_retrieval_layers() == 0);
  const HydraConfig r = c.resolved();
  CHECK(r.head_dim == 64);
  CHECK(r.layer_types == t);
}

TEST_CASE("explicit head_dim keeps its value so I may differ from d_model") {
  HydraConfig c;
  c.d_model = 40;
  c.n_heads = 3;
  c.head_dim = 20;  // 40 % 3 != 0 is fine when head_dim is given
  CHECK(c.resolved_head_dim() == 20);
  CHECK(c.inner_dim() == 60);
}

TEST_CASE("SwiGLU width F follows SPEC 1.3 for d 64 to 4096") {
  const std::vector<std::pair<int64_t, int64_t>> cases = {{64, 192},   {128, 384},   {256, 704},  {512, 1408},
                                                           {768, 2048}, {1024, 2752}, {4096, 10944}};
  for (const auto& [d, F] : cases) {
    HydraConfig c;
    c.d_model = d;
    c.n_heads = 1;
    INFO("d_model " << d);
    CHECK(c.mlp_hidden_dim() == F);
  }
  // The product is truncated before rounding up: 3 * 1.5 = 4.5 -> 4 -> multiple of 4 is 4 (not 8).
  HydraConfig c;
  c.d_model = 3;
  c.n_heads = 1;
  c.mlp_mult = 1.5;
  c.mlp_multiple_of = 4;
  c.swa_every = 99;  // D = 3 is odd: no RoPE layer allowed
  CHECK(c.mlp_hidden_dim() == 4);
  c.mlp_multiple_of = 1;
  CHECK(c.mlp_hidden_dim() == 4);
}

TEST_CASE("layer schedules of the SPEC 1.2 examples") {
  SUBCASE("L 20 swa_every 4 retrieval_every 3") {
    HydraConfig c;
    c.n_layers = 20;
    c.swa_every = 4;
    c.retrieval_every = 3;
    const auto t = c.resolved_layer_types();
    CHECK(indices_of(t, SW) == std::vector<int64_t>{3, 7, 11, 15, 19});
    CHECK(indices_of(t, RT) == std::vector<int64_t>{2, 5, 8, 14, 17});
    CHECK(c.n_dn_layers() == 10);
    CHECK(c.n_swa_layers() == 5);
    CHECK(c.n_retrieval_layers() == 5);
  }
  SUBCASE("L 4 swa_every 2 with and without retrieval_every 3") {
    HydraConfig c;
    c.n_layers = 4;
    c.swa_every = 2;
    CHECK(c.resolved_layer_types() == std::vector<LT>{DN, SW, DN, SW});
    c.retrieval_every = 3;
    CHECK(c.resolved_layer_types() == std::vector<LT>{DN, SW, RT, SW});
  }
  SUBCASE("swa_every above n_layers places no SWA layer") {
    HydraConfig c;
    c.swa_every = 99;
    CHECK(c.n_dn_layers() == 12);
    CHECK(c.n_swa_layers() == 0);
  }
  SUBCASE("manual layer_types are used verbatim") {
    HydraConfig c;
    c.n_layers = 3;
    c.swa_every = 1;  // ignored for placement
    c.retrieval_every = 2;
    c.layer_types = std::vector<LT>{RT, DN, DN};
    CHECK(c.resolved_layer_types() == std::vector<LT>{RT, DN, DN});
    CHECK(c.n_retrieval_layers() == 1);
    CHECK(c.n_swa_layers() == 0);
    CHECK(c.n_dn_layers() == 2);
  }
  CHECK(std::string(layer_type_name(DN)) == "deltanet");
  CHECK(std::string(layer_type_name(SW)) == "swa");
  CHECK(std::string(layer_type_name(RT)) == "retrieval");
  CHECK(parse_layer_type("retrieval") == RT);
  check_throws_with([] { parse_layer_type("mamba"); }, {"mamba", "deltanet, swa, retrieval"});
}

TEST_CASE("summary strings are exact") {
  HydraConfig c;
  CHECK(c.summary() == "HydraConfig(d_model=768, n_layers=12, heads=12x64, DN=9, SWA=3 @ window=512)");
  c.n_layers = 20;
  c.retrieval_every = 3;
  CHECK(c.summary() ==
        "HydraConfig(d_model=768, n_layers=20, heads=12x64, DN=10, SWA=5 @ window=512, RET=5 @ chunk=128 top_k=8)");
  c.mtp_depth = 2;
  CHECK(c.summary() == "HydraConfig(d_model=768, n_layers=20, heads=12x64, DN=10, SWA=5 @ window=512, RET=5 @ "
                       "chunk=128 top_k=8, MTP=2)");
  c.retrieval_every = 0;
  CHECK(c.summary() == "HydraConfig(d_model=768, n_layers=20, heads=12x64, DN=15, SWA=5 @ window=512, MTP=2)");
  HydraConfig e;
  e.d_model = 40;
  e.n_heads = 2;
  e.head_dim = 20;
  e.n_layers = 3;
  e.swa_every = 2;
  e.swa_window = 9;
  CHECK(e.summary() == "HydraConfig(d_model=40, n_layers=3, heads=2x20, DN=2, SWA=1 @ window=9)");
}

TEST_CASE("golden yaml files load with their fields") {
  {
    const HydraConfig c = load_model_config(hydra::test::test_data_path("golden_tiny.yaml"));
    HydraConfig want;
    want.vocab_size = 97;
    want.d_model = 64;
    want.n_layers = 4;
    want.n_heads = 4;
    want.head_dim = 16;
    want.swa_every = 2;
    want.swa_window = 24;
    want.dn_chunk_size = 16;
    CHECK(c == want);
    CHECK(c.resolved_layer_types() == std::vector<LT>{DN, SW, DN, SW});
    CHECK(c.tie_embeddings);
    CHECK(c.dn_use_gate);
    CHECK(c.dn_short_conv_kernel == 4);
    CHECK(c.mlp_hidden_dim() == 192);
  }
  {
    const HydraConfig c = load_model_config(hydra::test::test_data_path("golden_b.yaml"));
    HydraConfig want;
    want.vocab_size = 89;
    want.d_model = 40;
    want.n_layers = 3;
    want.n_heads = 2;
    want.head_dim = 20;
    want.swa_every = 2;
    want.swa_window = 9;
    want.dn_chunk_size = 7;
    want.dn_short_conv_kernel = 3;
    want.dn_use_gate = false;
    want.tie_embeddings = false;
    CHECK(c == want);
    CHECK(c.resolved_layer_types() == std::vector<LT>{DN, SW, DN});
    CHECK(c.inner_dim() == 40);
    CHECK(c.mlp_hidden_dim() == 128);  // trunc(40 * 8/3) = 106 -> 128
  }
}

TEST_CASE("yaml accepts every field type including layer_types, null head_dim, floats from ints and arch") {
  const std::string path = write_yaml("all_types.yaml",
                                      "train:\n"
                                      "  lr: 0.001\n"
                                      "model:\n"
                                      "  d_model: 96\n"
                                      "  n_heads: 4\n"
                                      "  head_dim: null\n"
                                      "  n_layers: 3\n"
                                      "  layer_types: [retrieval, swa, deltanet]\n"
                                      "  mlp_mult: 3\n"
                                      "  rms_eps: 1.0e-6\n"
                                      "  swa_rope_base: 500000\n"
                                      "  dn_norm_qk: false\n"
                                      "  retrieval_learned_summary: true\n"
                                      "  mtp_depth: 2\n"
                                      "  mtp_loss_weight: 0.25\n"
                                      "  arch: transformer\n");
  const HydraConfig c = load_model_config(path);
  CHECK(c.d_model == 96);
  CHECK(c.resolved_head_dim() == 24);
  CHECK(c.layer_types == std::vector<LT>{RT, SW, DN});
  CHECK(c.mlp_mult == 3.0);
  CHECK(c.rms_eps == 1e-6);
  CHECK(c.swa_rope_base == 500000.0);
  CHECK(!c.dn_norm_qk);
  CHECK(c.retrieval_learned_summary);
  CHECK(c.mtp_depth == 2);
  CHECK(c.mtp_loss_weight == 0.25);
  CHECK(c.arch == "transformer");
  // An empty model section means every default.
  CHECK(load_model_config(write_yaml("empty_model.yaml", "model:\n")) == HydraConfig{});
}

TEST_CASE("parse_model_config reads a model node of another config file") {
  const YAML::Node root = YAML::Load("run:\n  model:\n    n_layers: 2\n    swa_every: 2\n");
  const HydraConfig c = parse_model_config(root["run"]["model"], "train.yaml");
  CHECK(c.n_layers == 2);
  CHECK(c.resolved_layer_types() == std::vector<LT>{DN, SW});
  const YAML::Node bad = YAML::Load("model:\n  n_layerz: 2\n");
  check_throws_with([&] { parse_model_config(bad["model"], "train.yaml"); },
                    {"train.yaml:2", "model.n_layerz", "model.n_layers"});
}

TEST_CASE("to_json writes python json layout and from_json round trips") {
  const HydraConfig c;
  const std::string js = c.to_json();
  CHECK(js.rfind("{\n  \"vocab_size\": 32000,\n  \"pad_token_id\": 0,\n", 0) == 0);
  CHECK(js.find("  \"head_dim\": 64,\n") != std::string::npos);
  CHECK(js.find("  \"mlp_mult\": 2.6666666666666665,\n") != std::string::npos);
  CHECK(js.find("  \"swa_rope_base\": 10000.0,\n") != std::string::npos);
  CHECK(js.find("  \"rms_eps\": 1e-05,\n") != std::string::npos);
  CHECK(js.find("  \"initializer_range\": 0.02,\n") != std::string::npos);
  CHECK(js.find("  \"dn_use_gate\": true,\n") != std::string::npos);
  CHECK(js.find("  \"retrieval_learned_summary\": false,\n") != std::string::npos);
  CHECK(js.find("  \"layer_types\": [\n    \"deltanet\",\n    \"deltanet\",\n    \"deltanet\",\n    \"swa\",\n") !=
        std::string::npos);
  CHECK(js.find("    \"swa\"\n  ],\n  \"swa_every\": 4,\n") != std::string::npos);
  CHECK(js.size() >= 2);
  CHECK(js.substr(js.size() - 26) == "  \"mtp_loss_weight\": 0.1\n}");
  CHECK(js.find("arch") == std::string::npos);
  // Keys appear in serialisation order.
  size_t pos = 0;
  for (const auto& name : HydraConfig::field_names()) {
    if (name == "arch") continue;
    const size_t at = js.find("\"" + name + "\":");
    INFO(name);
    REQUIRE(at != std::string::npos);
    CHECK(at >= pos);
    pos = at;
  }
  const HydraConfig back = HydraConfig::from_json(js);
  CHECK(back == c.resolved());
  CHECK(back.to_json() == js);

  HydraConfig x;
  x.vocab_size = 1000;
  x.d_model = 48;
  x.n_heads = 3;
  x.n_layers = 7;
  x.retrieval_every = 2;
  x.swa_every = 3;
  x.rms_eps = 1.5e-7;
  x.initializer_range = 0.0001;
  x.swa_rope_base = 1e20;
  x.mlp_mult = 3.5;
  x.mtp_depth = 1;
  x.mtp_loss_weight = 0.3;
  x.retrieval_learned_summary = true;
  x.arch = "transformer";
  const std::string xs = x.to_json();
  CHECK(xs.find("\"rms_eps\": 1.5e-07,") != std::string::npos);
  CHECK(xs.find("\"initializer_range\": 0.0001,") != std::string::npos);
  CHECK(xs.find("\"swa_rope_base\": 1e+20,") != std::string::npos);
  CHECK(xs.find("\"mtp_loss_weight\": 0.3,\n  \"arch\": \"transformer\"\n}") != std::string::npos);
  const HydraConfig xb = HydraConfig::from_json(xs);
  CHECK(xb == x.resolved());
  CHECK(xb.resolved_layer_types() == x.resolved_layer_types());
  CHECK(xb.to_json() == xs);

  check_throws_with([] { HydraConfig::from_json("{\"n_layer\": 3}", "ckpt/hydra_config.json"); },
                    {"ckpt/hydra_config.json", "'n_layer'", "'n_layers'"});
  check_throws_with([] { HydraConfig::from_json("{\"n_layers\": 3.5}"); },
                    {"hydra_config.json", "n_layers", "expected an integer", "3.5"});
}

TEST_CASE("missing and unparsable yaml files name the file") {
  const std::string missing = (scratch_dir() / "no_such_config.yaml").string();
  check_throws_with([&] { load_model_config(missing); }, {missing, "does not exist"});
  CHECK_THROWS_AS(load_model_config(missing), std::runtime_error);
  check_yaml_error("unparsable.yaml", "model:\n  n_layers: [1, 2\n  d_model: 3\n", {"unparsable YAML"});
  check_yaml_error("not_a_map.yaml", "- 1\n- 2\n", {"'model:' section"});
  check_yaml_error("no_model.yaml", "train:\n  lr: 0.1\n", {"no 'model:' section"});
  check_yaml_error("model_list.yaml", "model:\n  - 1\n", {"model must be a mapping", "a list"});
}

TEST_CASE("unknown key names the file the dotted key the line and the closest valid key") {
  check_yaml_error("unknown.yaml", "model:\n  d_model: 64\n  n_head: 4\n",
                   {":3:", "unknown key 'model.n_head'", "did you mean 'model.n_heads'"});
  check_yaml_error("unknown2.yaml", "model:\n  swa_windw: 64\n", {":2:", "'model.swa_windw'", "'model.swa_window'"});
  check_yaml_error("duplicate.yaml", "model:\n  n_layers: 4\n  n_layers: 5\n", {"model.n_layers", "twice"});
}

TEST_CASE("wrong types name the key the expected type the value found and the line") {
  check_yaml_error("t1.yaml", "model:\n  vocab_size: 100\n  n_layers: 1.5\n",
                   {":3:", "model.n_layers", "expected an integer", "'1.5'"});
  check_yaml_error("t2.yaml", "model:\n  n_layers: abc\n", {":2:", "model.n_layers", "expected an integer", "'abc'"});
  check_yaml_error("t3.yaml", "model:\n  n_heads: \"4\"\n", {"model.n_heads", "expected an integer", "string \"4\""});
  check_yaml_error("t4.yaml", "model:\n  dn_use_gate: yes\n", {":2:", "model.dn_use_gate", "true or false", "'yes'"});
  check_yaml_error("t5.yaml", "model:\n  dn_use_gate: 1\n", {"model.dn_use_gate", "boolean", "'1'"});
  check_yaml_error("t6.yaml", "model:\n  mlp_mult: fast\n", {"model.mlp_mult", "number", "'fast'"});
  check_yaml_error("t7.yaml", "model:\n  head_dim: [16]\n", {"model.head_dim", "integer or null", "a list"});
  check_yaml_error("t8.yaml", "model:\n  layer_types: swa\n", {"model.layer_types", "list of layer types", "'swa'"});
  check_yaml_error("t9.yaml", "model:\n  n_layers:\n", {":2:", "model.n_layers", "expected an integer", "null"});
  check_yaml_error("t10.yaml", "model:\n  swa_window: {a: 1}\n", {"model.swa_window", "a mapping"});
  check_yaml_error("t11.yaml", "model:\n  arch: [hydra]\n", {"model.arch", "expected a string"});
}

TEST_CASE("invalid values and combinations name the key the value and the line") {
  check_yaml_error("v1.yaml", "model:\n  d_model: 64\n  n_heads: 0\n", {":3:", "model.n_heads", "n_heads = 0"});
  check_yaml_error("v2.yaml", "model:\n  n_heads: -2\n", {"model.n_heads", "-2"});
  check_yaml_error("v3.yaml", "model:\n  d_model: 770\n  n_heads: 12\n",
                   {":3:", "model.n_heads", "d_model = 770", "not divisible by n_heads = 12", "head_dim is null"});
  check_yaml_error("v4.yaml", "model:\n  n_layers: 4\n  layer_types: [deltanet, swa]\n",
                   {":3:", "model.layer_types", "2 entries", "n_layers = 4"});
  check_yaml_error("v5.yaml", "model:\n  n_layers: 3\n  layer_types:\n    - deltanet\n    - mamba\n    - swa\n",
                   {":5:", "model.layer_types[1]", "unknown layer type 'mamba'", "index 1",
                    "deltanet, swa, retrieval"});
  check_yaml_error("v6.yaml", "model:\n  swa_every: 0\n", {":2:", "model.swa_every", "swa_every = 0", ">= 1"});
  check_yaml_error("v7.yaml", "model:\n  d_model: 60\n  n_heads: 4\n  n_layers: 4\n",
                   {":3:", "model.n_heads", "D = 15 is odd", "layer 3", "'swa'"});
  check_yaml_error("v8.yaml", "model:\n  head_dim: 15\n  n_layers: 2\n  retrieval_every: 2\n  swa_every: 9\n",
                   {":2:", "model.head_dim", "D = 15", "layer 1", "'retrieval'"});
  check_yaml_error("v9.yaml", "model:\n  retrieval_every: -1\n", {"model.retrieval_every", "-1"});
  check_yaml_error("v10.yaml", "model:\n  retrieval_chunk_size: 0\n", {"model.retrieval_chunk_size", "= 0"});
  check_yaml_error("v11.yaml", "model:\n  retrieval_top_k: 0\n", {"model.retrieval_top_k", "= 0"});
  check_yaml_error("v12.yaml", "model:\n  mtp_depth: -1\n", {":2:", "model.mtp_depth", "-1"});
  check_yaml_error("v13.yaml", "model:\n  mtp_loss_weight: -0.5\n", {"model.mtp_loss_weight", "-0.5"});
  check_yaml_error("v14.yaml", "model:\n  swa_window: 0\n", {"model.swa_window", "swa_window = 0"});
  check_yaml_error("v15.yaml", "model:\n  dn_chunk_size: -3\n", {"model.dn_chunk_size", "-3"});
  check_yaml_error("v16.yaml", "model:\n  arch: mamba\n", {":2:", "model.arch", "'mamba'", "hydra, transformer"});
  check_yaml_error("v17.yaml", "model:\n  vocab_size: 10\n  pad_token_id: 10\n",
                   {":3:", "model.pad_token_id", "pad_token_id = 10"});
  // Odd D is fine when every layer is DeltaNet.
  const HydraConfig ok = load_model_config(write_yaml("odd_dn.yaml", "model:\n  head_dim: 15\n  swa_every: 99\n"));
  CHECK(ok.resolved_head_dim() == 15);
}

TEST_CASE("validate rejects invalid programmatic configs with std::invalid_argument") {
  HydraConfig c;
  c.n_heads = 0;
  CHECK_THROWS_AS(c.validate(), std::invalid_argument);
  check_throws_with([&] { c.validate(); }, {"invalid HydraConfig", "n_heads = 0"});
  check_throws_with([&] { (void)c.summary(); }, {"n_heads = 0"});
  HydraConfig d;
  d.layer_types = std::vector<LT>{DN};
  check_throws_with([&] { (void)d.resolved_layer_types(); }, {"layer_types has 1 entries", "n_layers = 12"});
  HydraConfig e;
  e.swa_every = -1;
  check_throws_with([&] { e.validate(); }, {"swa_every = -1"});
  HydraConfig f;
  f.d_model = 26;
  f.n_heads = 2;
  check_throws_with([&] { f.validate(); }, {"D = 13 is odd", "layer 3"});
  HydraConfig g;
  g.mlp_mult = 0;
  check_throws_with([&] { g.validate(); }, {"mlp_mult = 0"});
}

TEST_CASE("command-line overrides go through the same type checks") {
  HydraConfig c;
  apply_override(c, "n_layers", "6");
  CHECK(c.n_layers == 6);
  apply_override(c, "model.swa_window", "128");
  CHECK(c.swa_window == 128);
  apply_override(c, "head_dim", "32");
  CHECK(c.head_dim == 32);
  apply_override(c, "head_dim", "null");
  CHECK(!c.head_dim);
  apply_override(c, "dn_use_gate", "false");
  CHECK(!c.dn_use_gate);
  apply_override(c, "rms_eps", "1e-6");
  CHECK(c.rms_eps == 1e-6);
  apply_override(c, "arch", "transformer");
  CHECK(c.arch == "transformer");
  apply_override(c, "model.layer_types", "[deltanet, swa, deltanet, retrieval, swa, deltanet]");
  CHECK(c.resolved_layer_types() == std::vector<LT>{DN, SW, DN, RT, SW, DN});
  check_throws_with([&] { apply_override(c, "n_layers", "abc"); },
                    {"n_layers=abc", "model.n_layers", "expected an integer", "'abc'"});
  check_throws_with([&] { apply_override(c, "model.n_layers", "2.5"); }, {"expected an integer", "'2.5'"});
  check_throws_with([&] { apply_override(c, "n_layer", "6"); },
                    {"unknown key 'model.n_layer'", "did you mean 'model.n_layers'"});
  check_throws_with([&] { apply_override(c, "layer_types", "[deltanet, bogus]"); },
                    {"model.layer_types[1]", "'bogus'", "deltanet, swa, retrieval"});
  CHECK(c.n_layers == 6);  // failed overrides leave the value alone

  HydraConfig d;
  apply_overrides(d, {"model.d_model=256", "n_heads=4", "n_layers=2"});
  CHECK(d.resolved_head_dim() == 64);
  CHECK(d.n_layers == 2);
  HydraConfig e;
  check_throws_with([&] { apply_overrides(e, {"d_model=100"}); }, {"d_model = 100", "n_heads = 12"});
  check_throws_with([&] { apply_overrides(e, {"n_layers"}); }, {"'n_layers'", "key=value"});
}
