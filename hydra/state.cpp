#include "hydra/state.h"

namespace hydra {

int64_t LayerState::bytes() const {
  int64_t n = 0;
  for (const Tensor* t : {&S, &conv_cache, &k_cache, &v_cache, &bank_k, &bank_v, &bank_sum, &buf_k, &buf_v, &buf_ksum})
    if (t->defined()) n += t->numel() * static_cast<int64_t>(t->element_size());
  return n;
}

int64_t state_bytes(const ModelState& state) {
  int64_t n = 0;
  for (const LayerState& s : state) n += s.bytes();
  return n;
}

}  // namespace hydra
