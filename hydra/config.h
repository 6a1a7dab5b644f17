#pragma once
// HydraConfig (SPEC §1): the model's fields with their defaults, the derived fields (head dim D, inner width
// I = H·D, layer schedule, SwiGLU width F, layer counts), validation (SPEC §1.4), summary() (§1.5), the JSON
// form written as hydra_config.json, and the `model:` section of a YAML config file (STYLE.md §10).
//
// Errors: std::invalid_argument for every config mistake (unknown key, wrong type, invalid value or
// combination), with the key, the value and, when the config came from a file, `file:line`;
// std::runtime_error when a file cannot be read.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace YAML {
class Node;
}

namespace hydra {

// The mixer of one block (SPEC §1.2). Names in configs and JSON: "deltanet", "swa", "retrieval".
enum class LayerType { DeltaNet, Swa, Retrieval };

const char* layer_type_name(LayerType t);
// Throws std::invalid_argument naming the value and the allowed set.
LayerType parse_layer_type(std::string_view name);

struct HydraConfig {
  // ---- SPEC §1.1 fields, in serialisation order ----
  int64_t vocab_size = 32000;
  int64_t pad_token_id = 0;
  int64_t d_model = 768;
  int64_t n_layers = 12;
  int64_t n_heads = 12;
  std::optional<int64_t> head_dim;  // null: d_model / n_heads
  double mlp_mult = 2.6666666666666665;  // 8/3 as an IEEE double
  int64_t mlp_multiple_of = 64;
  int64_t dn_short_conv_kernel = 4;
  bool dn_use_gate = true;
  int64_t dn_chunk_size = 64;
  bool dn_norm_qk = true;
  int64_t swa_window = 512;
  double swa_rope_base = 10000.0;
  std::optional<std::vector<LayerType>> layer_types;  // null: derived from swa_every / retrieval_every
  int64_t swa_every = 4;
  double rms_eps = 1e-5;
  bool tie_embeddings = true;
  double initializer_range = 0.02;
  int64_t max_position_embeddings = 1048576;  // informational, never enforced
  int64_t retrieval_every = 0;                // [DEF-0.3] 0 = no automatic retrieval layers
  int64_t retrieval_chunk_size = 128;         // [DEF-0.3]
  int64_t retrieval_top_k = 8;                // [DEF-0.3]
  bool retrieval_learned_summary = false;     // [DEF-0.3]
  int64_t mtp_depth = 0;                      // [DEF-0.3] 0 = no MTP heads
  double mtp_loss_weight = 0.1;               // [DEF-0.3]
  // ---- not a SPEC §1 field: which model the config builds (the dense baseline of SPEC §8.5 for
  // "transformer"). Only "hydra" and "transformer" are valid.
  std::string arch = "hydra";

  // The names of the SPEC §1.1 fields in serialisation order, then "arch".
  static const std::vector<std::string>& field_names();

  // Throws std::invalid_argument naming the field and its value when a rule of SPEC §1.4 (REF and DEF-0.3)
  // or a positivity rule (sizes, window, chunks, eps ≥ 0 …) fails. The derived getters below call it.
  void validate() const;

  // ---- derived fields (SPEC §1.2, §1.3); each validates first ----
  int64_t resolved_head_dim() const;  // D
  int64_t inner_dim() const;          // I = H·D
  // The given layer_types, or the 0.3.0 placement rule: 1-based p, "swa" if p % swa_every == 0, else
  // "retrieval" if retrieval_every > 0 and p % retrieval_every == 0, else "deltanet".
  std::vector<LayerType> resolved_layer_types() const;
  // F = m·ceil(trunc(d·mlp_mult) / m), m = mlp_multiple_of, the product in IEEE double truncated toward 0.
  int64_t mlp_hidden_dim() const;
  int64_t n_swa_layers() const;
  int64_t n_dn_layers() const;
  int64_t n_retrieval_layers() const;
  // A validated copy with head_dim and layer_types filled in (what to_json writes).
  HydraConfig resolved() const;

  // SPEC §1.5, no trailing newline.
  std::string summary() const;
  // The block list, e.g. "deltanet,swa,deltanet,swa" (arch transformer: "4 × attention (full causal)").
  std::string layer_list() const;

  // All SPEC §1.1 fields in order as a JSON object, indent 2 (Python json.dumps layout and float repr),
  // head_dim and layer_types resolved. "arch" is appended only when it is not "hydra", so a HydraLM config
  // stays loadable by the PyTorch reference.
  std::string to_json() const;
  // Reads what to_json writes (or the reference's hydra_config.json); missing keys keep their defaults,
  // unknown keys and wrong types are errors naming `source`. The result is validated.
  static HydraConfig from_json(const std::string& text, const std::string& source = "hydra_config.json");

  bool operator==(const HydraConfig&) const = default;
};

// Reads the `model:` section of the YAML file at `path` (other top-level sections are left to their owners).
// A missing/unreadable file is a std::runtime_error naming it; unparsable YAML, a missing `model:` section,
// unknown keys, wrong types and invalid values are std::invalid_argument naming the file, the dotted key
// (`model.n_heads`), the value and the line. The result is validated.
HydraConfig load_model_config(const std::string& path);

// Parses a `model:` mapping node (for config files of other sections, e.g. training). `file` is used in
// messages. Unknown keys suggest the closest valid key. The result is validated.
HydraConfig parse_model_config(const YAML::Node& model, const std::string& file);

// A command-line override `key=value` (key with or without the "model." prefix); the value is read as YAML
// (e.g. `n_layers=6`, `head_dim=null`, `layer_types=[deltanet,swa]`) and goes through the same type checks as
// the file. Does not validate cross-field rules: call validate() after the last override, or use
// apply_overrides.
void apply_override(HydraConfig& cfg, const std::string& key, const std::string& value);
// Applies each "key=value" assignment in order, then validates.
void apply_overrides(HydraConfig& cfg, const std::vector<std::string>& assignments);

}  // namespace hydra
