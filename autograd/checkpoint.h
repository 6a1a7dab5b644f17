#pragma once
// Activation recomputation ("gradient checkpointing"): trade compute for memory.
//
// checkpoint(fn, inputs) runs fn(inputs) without recording a graph, so none of fn's intermediate activations are
// kept; only `inputs` are saved. Its outputs are differentiable: in backward, fn is run again with recording on
// fresh leaves that alias the saved inputs, and the incoming gradients are propagated through that recomputed
// graph by a nested backward. Gradients reach `inputs` through the node, and every other tensor fn reads that
// requires grad (e.g. module parameters) receives its gradient into its .grad during that nested backward.
// fn must be deterministic (the same inputs give the same outputs and graph) — then the gradients are exactly
// those of running fn recorded. Without grad mode (or when nothing fn touches requires grad) it is just fn(inputs).
// The outputs must be fresh tensors of fn (not views of the inputs).
#include <functional>
#include <vector>

#include "tensor/tensor_core.h"

namespace hydra::ag {

using CheckpointFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;
std::vector<Tensor> checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs);

}  // namespace hydra::ag
