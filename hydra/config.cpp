// HydraConfig: defaults, derived fields, validation, summary, JSON and YAML forms (see config.h, SPEC §1).
#include "hydra/config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>

#include "hydra/config_yaml.h"
#include "tensor/check.h"

namespace hydra {

// ---- layer types --------------------------------------------------------------------------------

namespace {
constexpr const char* kLayerTypesAllowed = "deltanet, swa, retrieval";
}

const char* layer_type_name(LayerType t) {
  switch (t) {
    case LayerType::DeltaNet: return "deltanet";
    case LayerType::Swa: return "swa";
    case LayerType::Retrieval: return "retrieval";
  }
  return "?";
}

LayerType parse_layer_type(std::string_view name) {
  if (name == "deltanet") return LayerType::DeltaNet;
  if (name == "swa") return LayerType::Swa;
  if (name == "retrieval") return LayerType::Retrieval;
  HYDRA_CHECK(false, "unknown layer type '{}' (allowed: {})", name, kLayerTypesAllowed);
  return LayerType::DeltaNet;  // unreachable
}

// ---- validation ---------------------------------------------------------------------------------

namespace {

// One failed rule: the message names every field involved and its value; `fields` lists them, most relevant
// first, so that a YAML loader can point at the line of the first one the file sets.
struct Problem {
  std::vector<std::string> fields;
  std::string msg;
};

std::string fmt_double(double v) { return fmt::format("{}", v); }

std::optional<Problem> find_problem(const HydraConfig& c) {
  auto bad = [](std::vector<std::string> fields, std::string msg) {
    return std::optional<Problem>(Problem{std::move(fields), std::move(msg)});
  };
  auto at_least = [&](const char* f, int64_t v, int64_t lo) -> std::optional<Problem> {
    if (v >= lo) return std::nullopt;
    return bad({f}, fmt::format("{} = {} must be >= {}", f, v, lo));
  };
  if (auto p = at_least("vocab_size", c.vocab_size, 1)) return p;
  if (c.pad_token_id < 0 || c.pad_token_id >= c.vocab_size)
    return bad({"pad_token_id", "vocab_size"}, fmt::format("pad_token_id = {} must be in [0, vocab_size = {})",
                                                           c.pad_token_id, c.vocab_size));
  if (auto p = at_least("d_model", c.d_model, 1)) return p;
  if (auto p = at_least("n_layers", c.n_layers, 1)) return p;
  if (auto p = at_least("n_heads", c.n_heads, 1)) return p;
  if (c.head_dim) {
    if (auto p = at_least("head_dim", *c.head_dim, 1)) return p;
  } else if (c.d_model % c.n_heads != 0) {
    return bad({"n_heads", "d_model", "head_dim"},
               fmt::format("d_model = {} is not divisible by n_heads = {} while head_dim is null (set head_dim "
                           "or choose n_heads dividing d_model)",
                           c.d_model, c.n_heads));
  }
  if (!(std::isfinite(c.mlp_mult) && c.mlp_mult > 0))
    return bad({"mlp_mult"}, fmt::format("mlp_mult = {} must be a finite number > 0", fmt_double(c.mlp_mult)));
  if (auto p = at_least("mlp_multiple_of", c.mlp_multiple_of, 1)) return p;
  if (std::trunc(static_cast<double>(c.d_model) * c.mlp_mult) < 1)
    return bad({"mlp_mult", "d_model"}, fmt::format("d_model = {} times mlp_mult = {} leaves no SwiGLU hidden unit",
                                                    c.d_model, fmt_double(c.mlp_mult)));
  if (auto p = at_least("dn_short_conv_kernel", c.dn_short_conv_kernel, 1)) return p;
  if (auto p = at_least("dn_chunk_size", c.dn_chunk_size, 1)) return p;
  if (auto p = at_least("swa_window", c.swa_window, 1)) return p;
  if (!(std::isfinite(c.swa_rope_base) && c.swa_rope_base > 0))
    return bad({"swa_rope_base"},
               fmt::format("swa_rope_base = {} must be a finite number > 0", fmt_double(c.swa_rope_base)));
  if (c.swa_every < 1)
    return bad({"swa_every"}, fmt::format("swa_every = {} must be >= 1 (use a value above n_layers to place no "
                                          "SWA layer)",
                                          c.swa_every));
  if (c.layer_types && static_cast<int64_t>(c.layer_types->size()) != c.n_layers)
    return bad({"layer_types", "n_layers"}, fmt::format("layer_types has {} entries but n_layers = {}",
                                                        c.layer_types->size(), c.n_layers));
  if (!(std::isfinite(c.rms_eps) && c.rms_eps >= 0))
    return bad({"rms_eps"}, fmt::format("rms_eps = {} must be a finite number >= 0", fmt_double(c.rms_eps)));
  if (!(std::isfinite(c.initializer_range) && c.initializer_range >= 0))
    return bad({"initializer_range"}, fmt::format("initializer_range = {} must be a finite number >= 0",
                                                  fmt_double(c.initializer_range)));
  if (auto p = at_least("retrieval_every", c.retrieval_every, 0)) return p;
  if (auto p = at_least("retrieval_chunk_size", c.retrieval_chunk_size, 1)) return p;
  if (auto p = at_least("retrieval_top_k", c.retrieval_top_k, 1)) return p;
  if (auto p = at_least("mtp_depth", c.mtp_depth, 0)) return p;
  if (!(std::isfinite(c.mtp_loss_weight) && c.mtp_loss_weight >= 0))
    return bad({"mtp_loss_weight"},
               fmt::format("mtp_loss_weight = {} must be a finite number >= 0", fmt_double(c.mtp_loss_weight)));
  if (c.arch != "hydra" && c.arch != "transformer")
    return bad({"arch"}, fmt::format("arch = '{}' is not one of: hydra, transformer", c.arch));
  // RoPE (SWA and retrieval layers) rotates pairs of channels: D must be even where such a layer exists.
  const int64_t D = c.head_dim ? *c.head_dim : c.d_model / c.n_heads;
  if (D % 2 != 0) {
    for (int64_t i = 0; i < c.n_layers; ++i) {
      LayerType t;
      if (c.layer_types) {
        t = (*c.layer_types)[i];
      } else {
        const int64_t p = i + 1;
        t = p % c.swa_every == 0                               ? LayerType::Swa
            : c.retrieval_every > 0 && p % c.retrieval_every == 0 ? LayerType::Retrieval
                                                                  : LayerType::DeltaNet;
      }
      if (t != LayerType::DeltaNet) {
        std::vector<std::string> fields = {"head_dim"};
        if (!c.head_dim) fields = {"n_heads", "d_model"};
        fields.push_back(c.layer_types ? "layer_types" : (t == LayerType::Swa ? "swa_every" : "retrieval_every"));
        return bad(fields, fmt::format("head dim D = {} is odd but layer {} is '{}' (RoPE needs an even head dim)",
                                       D, i, layer_type_name(t)));
      }
    }
  }
  return std::nullopt;
}

}  // namespace

void HydraConfig::validate() const {
  const auto p = find_problem(*this);
  HYDRA_CHECK(!p, "invalid HydraConfig: {}", p->msg);
}

int64_t HydraConfig::resolved_head_dim() const {
  validate();
  return head_dim ? *head_dim : d_model / n_heads;
}

int64_t HydraConfig::inner_dim() const { return n_heads * resolved_head_dim(); }

std::vector<LayerType> HydraConfig::resolved_layer_types() const {
  validate();
  if (layer_types) return *layer_types;
  std::vector<LayerType> out;
  out.reserve(static_cast<size_t>(n_layers));
  for (int64_t i = 0; i < n_layers; ++i) {
    const int64_t p = i + 1;
    if (p % swa_every == 0)
      out.push_back(LayerType::Swa);
    else if (retrieval_every > 0 && p % retrieval_every == 0)
      out.push_back(LayerType::Retrieval);
    else
      out.push_back(LayerType::DeltaNet);
  }
  return out;
}

int64_t HydraConfig::mlp_hidden_dim() const {
  validate();
  // The product in IEEE double, truncated toward zero, then rounded up to a multiple of m (SPEC §1.3).
  const auto base = static_cast<int64_t>(std::trunc(static_cast<double>(d_model) * mlp_mult));
  const int64_t m = mlp_multiple_of;
  return m * ((base + m - 1) / m);
}

namespace {
int64_t count_type(const HydraConfig& c, LayerType t) {
  const auto types = c.resolved_layer_types();
  return static_cast<int64_t>(std::count(types.begin(), types.end(), t));
}
}  // namespace

int64_t HydraConfig::n_swa_layers() const { return count_type(*this, LayerType::Swa); }
int64_t HydraConfig::n_dn_layers() const { return count_type(*this, LayerType::DeltaNet); }
int64_t HydraConfig::n_retrieval_layers() const { return count_type(*this, LayerType::Retrieval); }

HydraConfig HydraConfig::resolved() const {
  HydraConfig out = *this;
  out.head_dim = resolved_head_dim();
  out.layer_types = resolved_layer_types();
  return out;
}

std::string HydraConfig::summary() const {
  const auto types = resolved_layer_types();
  auto count = [&](LayerType t) { return std::count(types.begin(), types.end(), t); };
  std::string s = fmt::format("HydraConfig(d_model={}, n_layers={}, heads={}x{}, DN={}, SWA={} @ window={}", d_model,
                              n_layers, n_heads, resolved_head_dim(), count(LayerType::DeltaNet),
                              count(LayerType::Swa), swa_window);
  if (const auto n_ret = count(LayerType::Retrieval); n_ret > 0)
    s += fmt::format(", RET={} @ chunk={} top_k={}", n_ret, retrieval_chunk_size, retrieval_top_k);
  if (mtp_depth > 0) s += fmt::format(", MTP={}", mtp_depth);
  s += ")";
  return s;
}

std::string HydraConfig::layer_list() const {
  if (arch == "transformer") return fmt::format("{} × attention (full causal)", n_layers);
  std::string s;
  for (LayerType t : resolved_layer_types()) s += (s.empty() ? "" : ",") + std::string(layer_type_name(t));
  return s;
}

// ---- field table: one typed reader per field, shared by YAML, JSON and overrides ----------------

namespace {

using namespace yaml;

void read(const YAML::Node& n, const Where& w, std::optional<std::vector<LayerType>>& out) {
  if (n.IsNull()) {
    out.reset();
    return;
  }
  if (!n.IsSequence()) type_error(w, "a list of layer types (deltanet, swa, retrieval) or null", n);
  std::vector<LayerType> types;
  for (size_t i = 0; i < n.size(); ++i) {
    const YAML::Node e = n[i];
    // Overrides have no lines; in a file an entry on its own line is reported there.
    const std::optional<int> eline = w.line ? (line_of(e) ? line_of(e) : w.line) : std::nullopt;
    const Where we{w.source, fmt::format("{}[{}]", w.key, i), eline};
    if (!e.IsScalar()) type_error(we, "a layer type (deltanet, swa, retrieval)", e);
    const std::string& s = e.Scalar();
    if (s == "deltanet") {
      types.push_back(LayerType::DeltaNet);
    } else if (s == "swa") {
      types.push_back(LayerType::Swa);
    } else if (s == "retrieval") {
      types.push_back(LayerType::Retrieval);
    } else {
      HYDRA_CHECK(false, "{}: unknown layer type '{}' at index {} (allowed: {})", we.prefix(), s, i,
                  kLayerTypesAllowed);
    }
  }
  out = std::move(types);
}

using Reader = std::function<void(HydraConfig&, const YAML::Node&, const Where&)>;
struct Field {
  std::string name;
  Reader read;
};

template <class T>
Field field(const char* name, T HydraConfig::*m) {
  return Field{name, [m](HydraConfig& c, const YAML::Node& n, const Where& w) { read(n, w, c.*m); }};
}

const std::vector<Field>& fields() {
  static const std::vector<Field> kFields = {
      field("vocab_size", &HydraConfig::vocab_size),
      field("pad_token_id", &HydraConfig::pad_token_id),
      field("d_model", &HydraConfig::d_model),
      field("n_layers", &HydraConfig::n_layers),
      field("n_heads", &HydraConfig::n_heads),
      field("head_dim", &HydraConfig::head_dim),
      field("mlp_mult", &HydraConfig::mlp_mult),
      field("mlp_multiple_of", &HydraConfig::mlp_multiple_of),
      field("dn_short_conv_kernel", &HydraConfig::dn_short_conv_kernel),
      field("dn_use_gate", &HydraConfig::dn_use_gate),
      field("dn_chunk_size", &HydraConfig::dn_chunk_size),
      field("dn_norm_qk", &HydraConfig::dn_norm_qk),
      field("swa_window", &HydraConfig::swa_window),
      field("swa_rope_base", &HydraConfig::swa_rope_base),
      field("layer_types", &HydraConfig::layer_types),
      field("swa_every", &HydraConfig::swa_every),
      field("rms_eps", &HydraConfig::rms_eps),
      field("tie_embeddings", &HydraConfig::tie_embeddings),
      field("initializer_range", &HydraConfig::initializer_range),
      field("max_position_embeddings", &HydraConfig::max_position_embeddings),
      field("retrieval_every", &HydraConfig::retrieval_every),
      field("retrieval_chunk_size", &HydraConfig::retrieval_chunk_size),
      field("retrieval_top_k", &HydraConfig::retrieval_top_k),
      field("retrieval_learned_summary", &HydraConfig::retrieval_learned_summary),
      field("mtp_depth", &HydraConfig::mtp_depth),
      field("mtp_loss_weight", &HydraConfig::mtp_loss_weight),
      field("arch", &HydraConfig::arch),
  };
  return kFields;
}

const Field* find_field(std::string_view name) {
  for (const auto& f : fields())
    if (f.name == name) return &f;
  return nullptr;
}

std::string closest_field(std::string_view name) {
  const Field* best = nullptr;
  size_t best_d = 0;
  for (const auto& f : fields()) {
    const size_t d = edit_distance(name, f.name);
    if (!best || d < best_d) {
      best = &f;
      best_d = d;
    }
  }
  return best->name;
}

[[noreturn]] void unknown_key(const std::string& source, std::optional<int> line, const std::string& prefix,
                              const std::string& key) {
  const std::string where = line ? fmt::format("{}:{}", source, *line) : source;
  HYDRA_CHECK(false, "{}: unknown key '{}{}' (did you mean '{}{}'?)", where, prefix, key, prefix,
              closest_field(key));
}

// Reads every key of a mapping into a default config and validates it, pointing a failed rule at the line of
// the first involved field that the mapping sets. `prefix` is the dotted path of the section ("model." or "").
HydraConfig parse_section(const YAML::Node& map, const std::string& source, const std::string& prefix) {
  HydraConfig cfg;
  std::map<std::string, std::optional<int>> lines;
  if (map.IsNull()) return cfg;
  if (!map.IsMap()) {
    const auto l = line_of(map);
    const std::string name = prefix.empty() ? std::string("top level") : prefix.substr(0, prefix.size() - 1);
    HYDRA_CHECK(false, "{}: {} must be a mapping of HydraConfig fields, found {}",
                l ? fmt::format("{}:{}", source, *l) : source, name, describe(map));
  }
  for (auto it = map.begin(); it != map.end(); ++it) {
    const YAML::Node k = it->first;  // by value: the iterator yields a temporary
    const YAML::Node v = it->second;  // by value: the iterator yields a temporary
    const auto kline = line_of(k);
    if (!k.IsScalar()) {
      HYDRA_CHECK(false, "{}: expected a field name as key, found {}",
                  kline ? fmt::format("{}:{}", source, *kline) : source, describe(k));
    }
    const std::string key = k.Scalar();
    const Field* f = find_field(key);
    if (!f) unknown_key(source, kline, prefix, key);
    HYDRA_CHECK(!lines.count(key), "{}: key '{}{}' appears twice (first at line {})",
                kline ? fmt::format("{}:{}", source, *kline) : source, prefix, key,
                lines[key] ? fmt::format("{}", *lines[key]) : std::string("?"));
    lines[key] = kline;
    f->read(cfg, v, Where{source, prefix + key, kline ? kline : line_of(v)});
  }
  if (const auto p = find_problem(cfg)) {
    for (const auto& name : p->fields) {
      if (auto it = lines.find(name); it != lines.end()) {
        const Where w{source, prefix + name, it->second};
        HYDRA_CHECK(false, "{}: {}", w.prefix(), p->msg);
      }
    }
    HYDRA_CHECK(false, "{}: invalid {}: {}", source, prefix.empty() ? "config" : prefix.substr(0, prefix.size() - 1),
                p->msg);
  }
  return cfg;
}

// ---- JSON writing (Python json.dumps(indent=2) layout) ---------------------------------------------

// Python's repr of a finite double: shortest round-trip digits, fixed notation for exponents in [-5, 16),
// otherwise d.ddde±XX; fixed notation always has a fractional part ("10000.0").
std::string py_float_repr(double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  std::string s(buf, r.ptr);
  std::string sign;
  if (!s.empty() && s.front() == '-') {
    sign = "-";
    s.erase(0, 1);
  }
  const size_t e = s.find('e');
  std::string mant = s.substr(0, e);
  const int exp = std::stoi(s.substr(e + 1));
  std::string digits;
  for (char ch : mant)
    if (ch != '.') digits.push_back(ch);
  if (exp < -4 || exp >= 16) {
    std::string out = sign + digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    return out + fmt::format("e{}{:02d}", exp < 0 ? '-' : '+', std::abs(exp));
  }
  if (exp >= 0) {
    const size_t int_len = static_cast<size_t>(exp) + 1;
    if (digits.size() <= int_len) return sign + digits + std::string(int_len - digits.size(), '0') + ".0";
    return sign + digits.substr(0, int_len) + "." + digits.substr(int_len);
  }
  return sign + "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20)
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(ch));
        else
          out.push_back(ch);
    }
  }
  return out + "\"";
}

std::string json_value(int64_t v) { return fmt::format("{}", v); }
std::string json_value(double v) { return py_float_repr(v); }
std::string json_value(bool v) { return v ? "true" : "false"; }
std::string json_value(const std::string& v) { return json_string(v); }
std::string json_value(const std::optional<int64_t>& v) { return v ? json_value(*v) : "null"; }
std::string json_value(const std::optional<std::vector<LayerType>>& v) {
  if (!v) return "null";
  if (v->empty()) return "[]";
  std::string out = "[\n";
  for (size_t i = 0; i < v->size(); ++i)
    out += fmt::format("    \"{}\"{}\n", layer_type_name((*v)[i]), i + 1 < v->size() ? "," : "");
  return out + "  ]";
}

}  // namespace

const std::vector<std::string>& HydraConfig::field_names() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> n;
    for (const auto& f : fields()) n.push_back(f.name);
    return n;
  }();
  return kNames;
}

std::string HydraConfig::to_json() const {
  const HydraConfig c = resolved();
  std::vector<std::pair<std::string, std::string>> kv = {
      {"vocab_size", json_value(c.vocab_size)},
      {"pad_token_id", json_value(c.pad_token_id)},
      {"d_model", json_value(c.d_model)},
      {"n_layers", json_value(c.n_layers)},
      {"n_heads", json_value(c.n_heads)},
      {"head_dim", json_value(c.head_dim)},
      {"mlp_mult", json_value(c.mlp_mult)},
      {"mlp_multiple_of", json_value(c.mlp_multiple_of)},
      {"dn_short_conv_kernel", json_value(c.dn_short_conv_kernel)},
      {"dn_use_gate", json_value(c.dn_use_gate)},
      {"dn_chunk_size", json_value(c.dn_chunk_size)},
      {"dn_norm_qk", json_value(c.dn_norm_qk)},
      {"swa_window", json_value(c.swa_window)},
      {"swa_rope_base", json_value(c.swa_rope_base)},
      {"layer_types", json_value(c.layer_types)},
      {"swa_every", json_value(c.swa_every)},
      {"rms_eps", json_value(c.rms_eps)},
      {"tie_embeddings", json_value(c.tie_embeddings)},
      {"initializer_range", json_value(c.initializer_range)},
      {"max_position_embeddings", json_value(c.max_position_embeddings)},
      {"retrieval_every", json_value(c.retrieval_every)},
      {"retrieval_chunk_size", json_value(c.retrieval_chunk_size)},
      {"retrieval_top_k", json_value(c.retrieval_top_k)},
      {"retrieval_learned_summary", json_value(c.retrieval_learned_summary)},
      {"mtp_depth", json_value(c.mtp_depth)},
      {"mtp_loss_weight", json_value(c.mtp_loss_weight)},
  };
  if (c.arch != "hydra") kv.emplace_back("arch", json_value(c.arch));
  std::string out = "{\n";
  for (size_t i = 0; i < kv.size(); ++i)
    out += fmt::format("  \"{}\": {}{}\n", kv[i].first, kv[i].second, i + 1 < kv.size() ? "," : "");
  return out + "}";
}

HydraConfig HydraConfig::from_json(const std::string& text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    HYDRA_CHECK(false, "{}:{}: unparsable JSON: {}", source, e.mark.line + 1, e.msg);
  }
  HYDRA_CHECK(root.IsMap(), "{}: expected a JSON object of HydraConfig fields, found {}", source, describe(root));
  return parse_section(root, source, "");
}

// ---- YAML files and overrides ----------------------------------------------------------------------

HydraConfig parse_model_config(const YAML::Node& model, const std::string& file) {
  return parse_section(model, file, "model.");
}

HydraConfig load_model_config(const std::string& path) {
  std::error_code ec;
  HYDRA_CHECK_ENV(std::filesystem::is_regular_file(path, ec), "config file '{}' does not exist or is not a file",
                  path);
  std::ifstream in(path);
  HYDRA_CHECK_ENV(in.good(), "cannot open config file '{}'", path);
  YAML::Node root;
  try {
    root = YAML::Load(in);
  } catch (const YAML::Exception& e) {
    HYDRA_CHECK(false, "{}:{}: unparsable YAML: {}", path, e.mark.line + 1, e.msg);
  }
  HYDRA_CHECK(root.IsMap(), "{}: expected a mapping with a 'model:' section at the top level, found {}", path,
              describe(root));
  const YAML::Node model = root["model"];
  HYDRA_CHECK(model.IsDefined(), "{}: no 'model:' section (the HydraConfig fields go under 'model:')", path);
  return parse_model_config(model, path);
}

void apply_override(HydraConfig& cfg, const std::string& key, const std::string& value) {
  const std::string source = "command-line override";
  std::string name = key;
  if (name.rfind("model.", 0) == 0) name = name.substr(6);
  const Field* f = find_field(name);
  if (!f) {
    HYDRA_CHECK(false, "{} '{}={}': unknown key 'model.{}' (did you mean 'model.{}'?)", source, key, value, name,
                closest_field(name));
  }
  YAML::Node node;
  try {
    node = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    HYDRA_CHECK(false, "{} '{}={}': model.{}: unparsable value: {}", source, key, value, name, e.msg);
  }
  f->read(cfg, node, Where{fmt::format("{} '{}={}'", source, key, value), "model." + name, std::nullopt});
}

void apply_overrides(HydraConfig& cfg, const std::vector<std::string>& assignments) {
  for (const auto& a : assignments) {
    const size_t eq = a.find('=');
    HYDRA_CHECK(eq != std::string::npos && eq > 0, "command-line override '{}' is not of the form key=value", a);
    apply_override(cfg, a.substr(0, eq), a.substr(eq + 1));
  }
  cfg.validate();
}

}  // namespace hydra
