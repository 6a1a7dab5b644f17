// Marks the eval layer's library (hydra_eval); see eval/README.md.
namespace hydra::layer_eval {
const char* name() { return "eval"; }
}  // namespace hydra::layer_eval
