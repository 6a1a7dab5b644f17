// Marks the optim layer's library (hydra_optim); see optim/README.md.
namespace hydra::layer_optim {
const char* name() { return "optim"; }
}  // namespace hydra::layer_optim
