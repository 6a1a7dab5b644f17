#pragma once
// Streaming state of HydraLM (SPEC §5): one LayerState per layer, in layer order. A default-constructed state is
// "fresh" (zeros / empty caches, pos = 0). States are plain values: copying one copies tensor handles (the
// tensors are never modified in place, so a copy is a snapshot).
//
// Layout note: the attention caches are stored time-major, (B, rows, H, D), the layout the kernels read, where
// SPEC §5 writes (B, H, rows, D). Contents and sizes are the same; states are not part of checkpoints.
#include <cstdint>
#include <string>
#include <vector>

#include "hydra/config.h"
#include "tensor/tensor_core.h"

namespace hydra {

struct LayerState {
  // Gated DeltaNet (SPEC §5.2).
  Tensor S;           // (B, H, D, D), [value dim, key dim]
  Tensor conv_cache;  // (B, 3I, K−1) raw qkv_proj outputs, oldest first; undefined when K = 1
  // Sliding-window attention (SPEC §5.3).
  Tensor k_cache, v_cache;  // (B, W′, H, D), keys after RoPE, W′ = min(pos, W)
  // Retrieval (SPEC §5.4).
  Tensor bank_k, bank_v;  // (B, n_c·C, H, D) committed chunks, keys after RoPE
  Tensor bank_sum;        // (B, n_c, H, D) per-chunk mean of pre-RoPE keys
  Tensor buf_k, buf_v;    // (B, L_b, H, D) the in-flight chunk, L_b = pos − n_c·C
  Tensor buf_ksum;        // (B, H, D) running sum of pre-RoPE keys of the in-flight chunk (float32, or float64
                          // for a float64 model)
  int64_t pos = 0;        // absolute index of the next token (SWA, retrieval; also kept for DeltaNet)

  // SPEC §5.5: Σ numel × element size over the tensors (pos not counted).
  int64_t bytes() const;
};

using ModelState = std::vector<LayerState>;

int64_t state_bytes(const ModelState& state);

}  // namespace hydra
