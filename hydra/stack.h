#pragma once
// What HydraLM and the dense baseline share in their forward: the checks of the token ids and the streaming state,
// and the residual stack run block by block (each block: (x, its LayerState) -> MixerOutput), with per-block
// activation recomputation when asked (autograd/checkpoint.h) and the state after each block collected.
#include <fmt/format.h>

#include <memory>
#include <optional>

#include "autograd/autograd.h"
#include "autograd/checkpoint.h"
#include "hydra/lm.h"
#include "hydra/model.h"
#include "nn/precision.h"
#include "tensor/check.h"

namespace hydra::detail {

// ids must be int64/int32 (B, T ≥ 1) for a forward, (B,) for a step; a non-empty state has one entry per layer.
inline void check_ids_and_state(const Tensor& ids, const ModelState& state, int64_t n_layers, const char* what,
                                bool step) {
  const bool ok = ids.defined() && (ids.dtype() == DType::Int64 || ids.dtype() == DType::Int32) &&
                  (step ? ids.dim() == 1 : ids.dim() == 2 && ids.size(1) >= 1);
  HYDRA_CHECK(ok, "{}: {} must be an int64 {} tensor, got {}", what, step ? "ids" : "input_ids",
              step ? "(B,)" : "(B, T ≥ 1)",
              ids.defined() ? fmt::format("{} {}", dtype_name(ids.dtype()), shape_str(ids.shape())) : "undefined");
  HYDRA_CHECK(state.empty() || static_cast<int64_t>(state.size()) == n_layers,
              "{}: state has {} layer entries, the model has {} layers", what, state.size(), n_layers);
}

// Runs x through every block from `state` (empty = fresh), writing the new state into `out`. With `recompute` and
// a graph being recorded, only each block's input is kept and backward re-runs the block under the precision policy
// `dt` (the incoming state's tensors are then constants). `step` calls Block::step (one token, no graph).
template <class Block>
Tensor run_blocks(const nn::ModuleList<Block>& blocks, Tensor x, const ModelState& state, bool recompute,
                  std::optional<DType> dt, ModelState& out, bool step = false) {
  out.resize(static_cast<std::size_t>(blocks.size()));
  for (int64_t i = 0; i < blocks.size(); ++i) {
    const auto k = static_cast<std::size_t>(i);
    const LayerState st_in = state.empty() ? LayerState{} : state[k];
    if (!step && recompute && ag::grad_enabled()) {
      auto st_out = std::make_shared<LayerState>();
      const Block* blk = &blocks[i];
      x = ag::checkpoint(
          [blk, st_in, st_out, dt](const std::vector<Tensor>& xs) {
            const nn::ComputeDTypeGuard precision(dt);
            MixerOutput m = blk->forward(xs[0], st_in);
            *st_out = std::move(m.state);
            return std::vector<Tensor>{m.y};
          },
          {x})[0];
      out[k] = *st_out;
      continue;
    }
    MixerOutput m = step ? blocks[i].step(x, st_in) : blocks[i].forward(x, st_in);
    x = m.y;
    out[k] = std::move(m.state);
  }
  return x;
}

}  // namespace hydra::detail
