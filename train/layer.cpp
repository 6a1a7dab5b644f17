// Marks the train layer's library (hydra_train); see train/README.md.
namespace hydra::layer_train {
const char* name() { return "train"; }
}  // namespace hydra::layer_train
