// Marks the nn layer's library (hydra_nn); see nn/README.md.
namespace hydra::layer_nn {
const char* name() { return "nn"; }
}  // namespace hydra::layer_nn
