// Gradients of the differentiable indexing ops: gradcheck in float64 (strided leaves included), repeated indices,
// and the embedding padding_idx rule of SPEC §2.2.
#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

namespace {

Tensor rand_idx(const Shape& shape, int64_t n, DType dt) {
  return rand_t(shape, 0.0, static_cast<double>(n) - 1e-9, DType::Float64).to(DType::Int64).to(dt);
}

}  // namespace

TEST_CASE("indexing grad: concat and stack") {
  Tensor a = leaf(randn_t({3, 2}));
  Tensor b = leaf(randn_t({4, 3}).transpose(0, 1));  // (3, 4), strided
  Tensor c = leaf(randn_t({3, 5}).slice(1, 0, 5, 2));  // (3, 3), step-2 slice
  check_gradcheck("concat", [](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::concat(in, -1)}; },
                  {a, b, c});
  // A piece that needs no gradient gets none, the others still do.
  Tensor fixed = randn_t({2, 2});
  check_gradcheck("concat_mixed",
                  [fixed](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::concat({in[0], fixed}, 0)}; },
                  {leaf(randn_t({2, 3}).slice(1, 0, 2))});
  Tensor d = leaf(randn_t({3, 2})), e = leaf(randn_t({2, 3}).transpose(0, 1));
  check_gradcheck("stack", [](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::stack(in, 1)}; },
                  {d, e});
}

TEST_CASE("indexing grad: split and chunk (views, empty pieces)") {
  Tensor x = leaf(randn_t({7, 4}).transpose(0, 1));  // (4, 7), strided
  // The empty piece is split off but not returned: gradcheck cannot draw an upstream gradient for a [4, 0] output
  // (Tensor::is_contiguous() reports fresh tensors with a 0 in their shape as non-contiguous).
  check_gradcheck("split",
                  [](const std::vector<Tensor>& in) {
                    std::vector<Tensor> p = ag::split(in[0], {2, 0, 5}, -1);
                    REQUIRE(p[1].shape() == Shape{4, 0});
                    return std::vector<Tensor>{p[0], p[2]};
                  },
                  {x});
  check_gradcheck("chunk", [](const std::vector<Tensor>& in) { return ag::chunk(in[0], 3, 1); }, {x});
  // Only some pieces used downstream: the unused ones contribute zero.
  check_gradcheck("split_partial",
                  [](const std::vector<Tensor>& in) {
                    std::vector<Tensor> p = ag::split(in[0], {1, 3}, 0);
                    return std::vector<Tensor>{ag::mul(p[1], p[1])};
                  },
                  {x});
}

TEST_CASE("indexing grad: index_select with repeated indices, int32 and int64") {
  for (DType it : {DType::Int32, DType::Int64}) {
    INFO(dtype_name(it));
    Tensor x = leaf(randn_t({5, 4}).transpose(0, 1));  // (4, 5), strided
    Tensor i0 = from_vector<int64_t>({3, 0, 3, 3, 1}, {5}).to(it);
    Tensor i1 = from_vector<int64_t>({4, 4, 0, 2}, {4}).to(it);
    check_gradcheck("index_select_dim0",
                    [i0](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::index_select(in[0], 0, i0)}; },
                    {x});
    check_gradcheck("index_select_dim-1",
                    [i1](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::index_select(in[0], -1, i1)}; },
                    {x});
  }
}

TEST_CASE("indexing grad: gather with repeated indices") {
  for (DType it : {DType::Int32, DType::Int64}) {
    INFO(dtype_name(it));
    Tensor x = leaf(randn_t({5, 3, 4}).permute({1, 2, 0}));  // (3, 4, 5), strided
    Tensor idx = rand_idx({2, 9, 3}, 4, it);                // longer than x along dim 1: repeats certain
    check_gradcheck("gather", [idx](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::gather(in[0], 1, idx)}; },
                    {x});
    Tensor idx_t = rand_idx({2, 4, 3}, 5, it).transpose(0, 2);  // (3, 4, 2), strided
    check_gradcheck("gather_last",
                    [idx_t](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::gather(in[0], -1, idx_t)}; },
                    {x});
  }
}

TEST_CASE("indexing grad: scatter_add (base and src, src larger than idx)") {
  for (DType it : {DType::Int32, DType::Int64}) {
    INFO(dtype_name(it));
    Tensor base = leaf(randn_t({5, 4}).transpose(0, 1));  // (4, 5), strided
    Tensor src = leaf(randn_t({7, 6}));
    Tensor idx = rand_idx({6, 5}, 4, it);                   // dim 0: many repeats
    check_gradcheck("scatter_add",
                    [idx](const std::vector<Tensor>& in) {
                      return std::vector<Tensor>{ag::scatter_add(in[0], 0, idx, in[1])};
                    },
                    {base, src});
    Tensor src2 = leaf(randn_t({6, 4}).transpose(0, 1));  // (4, 6), strided, same shape as idx2
    Tensor idx2 = rand_idx({4, 6}, 5, it);
    check_gradcheck("scatter_add_last",
                    [idx2](const std::vector<Tensor>& in) {
                      return std::vector<Tensor>{ag::scatter_add(in[0], -1, idx2, in[1])};
                    },
                    {base, src2});
  }
}

TEST_CASE("indexing grad: embedding, with and without padding_idx") {
  const int64_t V = 6, C = 5;
  for (DType it : {DType::Int32, DType::Int64}) {
    INFO(dtype_name(it));
    Tensor w = leaf(randn_t({C, V}).transpose(0, 1));  // (V, C), strided
    Tensor ids = from_vector<int64_t>({1, 4, 1, 0, 4, 4, 2, 5}, {2, 4}).to(it);
    check_gradcheck("embedding",
                    [ids](const std::vector<Tensor>& in) { return std::vector<Tensor>{ag::embedding(in[0], ids)}; },
                    {w});
    // With padding_idx = 4 the pad positions send no gradient; masking their outputs makes the finite-difference
    // gradient agree, so gradcheck covers every other row.
    Tensor mask = compare(CompareOp::Ne, ids.to(DType::Int64), scalar_tensor(4.0, DType::Int64))
                      .to(DType::Float64)
                      .unsqueeze(-1);
    check_gradcheck("embedding_padding",
                    [ids, mask](const std::vector<Tensor>& in) {
                      return std::vector<Tensor>{ag::mul(ag::embedding(in[0], ids, 4), mask)};
                    },
                    {w});
  }
}

TEST_CASE("indexing grad: the embedding pad row gets no gradient through the lookup but keeps its value") {
  const int64_t V = 5, C = 3, pad = 0;
  Tensor w = leaf(randn_t({V, C}));
  Tensor ids = from_vector<int64_t>({0, 2, 0, 3, 2}, {5});
  Tensor y = ag::embedding(w, ids, pad);
  CHECK(y.select(0, 0).to_vector<double>() == w.select(0, 0).to_vector<double>());  // stored row, not zeros
  ag::backward(y, ones({5, C}, DType::Float64));
  std::vector<double> g = ag::grad(w).to_vector<double>();
  const std::vector<double> want = {0, 0, 0, 0, 0, 0, 2, 2, 2, 1, 1, 1, 0, 0, 0};
  CHECK(g == want);
  // Gradient from another path (tied weights) still reaches the pad row.
  ag::zero_grad(w);
  Tensor z = ag::add(ag::embedding(w, ids, pad), ag::index_select(w, 0, ids));
  ag::backward(z, ones({5, C}, DType::Float64));
  g = ag::grad(w).to_vector<double>();
  const std::vector<double> want2 = {2, 2, 2, 0, 0, 0, 4, 4, 4, 2, 2, 2, 0, 0, 0};
  CHECK(g == want2);
  check_throws_with([&] { ag::embedding(w, ids, 5); }, {"embedding", "padding_idx 5", "[0, 5)"});
}
