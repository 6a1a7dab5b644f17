// Marks the hydra layer's library (hydra_model); see hydra/README.md.
namespace hydra::layer_hydra {
const char* name() { return "hydra"; }
}  // namespace hydra::layer_hydra
