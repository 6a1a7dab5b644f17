// Indexing ops (concat, stack, split, chunk, index_select, index_add, gather, scatter_add, embedding and its
// backward): forward against plain float64 loops, strided inputs, int32/int64 indices, repeated indices,
// determinism across thread counts, and error messages.
#include <cstring>

#include <omp.h>

#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

namespace {

const DType kIndexDTypes[] = {DType::Int32, DType::Int64};

// Row-major coordinates of a flat position, and back.
std::vector<int64_t> unravel(int64_t flat, const Shape& s) {
  std::vector<int64_t> c(s.size());
  for (int64_t d = static_cast<int64_t>(s.size()) - 1; d >= 0; --d) {
    c[d] = flat % s[d];
    flat /= s[d];
  }
  return c;
}
int64_t ravel(const std::vector<int64_t>& c, const Shape& s) {
  int64_t f = 0;
  for (std::size_t d = 0; d < s.size(); ++d) f = f * s[d] + c[d];
  return f;
}

// Random indices in [0, n) of the given dtype.
Tensor rand_idx(const Shape& shape, int64_t n, DType dt) {
  return rand_t(shape, 0.0, static_cast<double>(n) - 1e-9, DType::Float64).to(DType::Int64).to(dt);
}

std::vector<double> vals(const Tensor& t) { return t.contiguous().to_vector<double>(); }

// The reference loops below read inputs through vals(), which is row-major whatever the strides.
Tensor ref_gather(const Tensor& x, int64_t dim, const Tensor& idx) {
  const std::vector<double> xv = vals(x), iv = vals(idx);
  std::vector<double> out(iv.size());
  for (int64_t p = 0; p < static_cast<int64_t>(iv.size()); ++p) {
    std::vector<int64_t> c = unravel(p, idx.shape());
    c[dim] = static_cast<int64_t>(iv[p]);
    out[p] = xv[ravel(c, x.shape())];
  }
  return from_vector(out, idx.shape());
}

Tensor ref_scatter_add(const Tensor& base, int64_t dim, const Tensor& idx, const Tensor& src) {
  std::vector<double> out = vals(base);
  const std::vector<double> iv = vals(idx), sv = vals(src);
  for (int64_t p = 0; p < static_cast<int64_t>(iv.size()); ++p) {
    std::vector<int64_t> c = unravel(p, idx.shape());
    const double s = sv[ravel(c, src.shape())];
    c[dim] = static_cast<int64_t>(iv[p]);
    out[ravel(c, base.shape())] += s;
  }
  return from_vector(out, base.shape());
}

Tensor ref_index_select(const Tensor& x, int64_t dim, const Tensor& idx) {
  const std::vector<double> xv = vals(x), iv = vals(idx);
  Shape s = x.shape();
  s[dim] = static_cast<int64_t>(iv.size());
  std::vector<double> out(shape_numel(s));
  for (int64_t p = 0; p < static_cast<int64_t>(out.size()); ++p) {
    std::vector<int64_t> c = unravel(p, s);
    c[dim] = static_cast<int64_t>(iv[c[dim]]);
    out[p] = xv[ravel(c, x.shape())];
  }
  return from_vector(out, s);
}

// Exact comparison (copies and selections must not change any value).
void check_equal(const Tensor& y, const Tensor& r) {
  REQUIRE(y.shape() == r.shape());
  CHECK(vals(y) == vals(r));
}

}  // namespace

TEST_CASE("indexing: concat matches a plain loop for several dtypes, negative dims, strided and empty pieces") {
  for (DType dt : {DType::Float64, DType::Float32, DType::BFloat16, DType::Int64}) {
    INFO(dtype_name(dt));
    Tensor a = rand_t({3, 2, 5}, -4, 4, dt);
    Tensor b = rand_t({3, 5, 4}, -4, 4, dt).transpose(1, 2);  // (3, 4, 5), strided
    Tensor c = empty({3, 0, 5}, dt);                          // empty piece
    Tensor d = rand_t({3, 10, 5}, -4, 4, dt).slice(1, 1, 10, 3);  // (3, 3, 5), step-3 slice
    Tensor y = concat({a, b, c, d}, -2);
    REQUIRE(y.shape() == Shape{3, 9, 5});
    CHECK(y.dtype() == dt);
    const std::vector<double> av = vals(a), bv = vals(b), dv = vals(d);
    std::vector<double> r(3 * 9 * 5);
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 9; ++j)
        for (int64_t k = 0; k < 5; ++k) {
          double v = j < 2 ? av[(i * 2 + j) * 5 + k] : j < 6 ? bv[(i * 4 + j - 2) * 5 + k] : dv[(i * 3 + j - 6) * 5 + k];
          r[(i * 9 + j) * 5 + k] = v;
        }
    check_equal(y, from_vector(r, {3, 9, 5}));
    // Along the last dim too, with a single piece.
    check_equal(concat({b}, 2), b);
  }
}

TEST_CASE("indexing: stack adds a new dim") {
  Tensor a = randn_t({2, 3}), b = randn_t({3, 2}).transpose(0, 1), c = randn_t({2, 3});
  Tensor y = stack({a, b, c}, -1);
  REQUIRE(y.shape() == Shape{2, 3, 3});
  const std::vector<double> av = vals(a), bv = vals(b), cv = vals(c);
  std::vector<double> r;
  for (int64_t i = 0; i < 6; ++i) {
    r.push_back(av[i]);
    r.push_back(bv[i]);
    r.push_back(cv[i]);
  }
  check_equal(y, from_vector(r, {2, 3, 3}));
  check_equal(stack({a, b}, 0), concat({a.unsqueeze(0), b.unsqueeze(0)}, 0));
}

TEST_CASE("indexing: split and chunk return views of the right sizes, empty pieces included") {
  Tensor x = randn_t({4, 7});
  std::vector<Tensor> p = split(x, {2, 0, 5}, -1);
  REQUIRE(p.size() == 3);
  CHECK(p[0].shape() == Shape{4, 2});
  CHECK(p[1].shape() == Shape{4, 0});
  CHECK(p[2].shape() == Shape{4, 5});
  check_equal(p[2], x.slice(1, 2, 7));
  check_equal(concat(p, 1), x);
  // Views: writing through a piece changes x.
  CHECK(p[2].storage() == x.storage());
  p[2].fill_(3.0);
  CHECK(x.select(0, 3).select(0, 6).item() == 3.0);

  // Split of a strided view along dim 0.
  Tensor xt = randn_t({6, 5}).transpose(0, 1);  // (5, 6)
  std::vector<Tensor> q = split(xt, {1, 4}, 0);
  check_equal(q[1], xt.slice(0, 1, 5));

  auto sizes = [](const std::vector<Tensor>& ps, int64_t d) {
    std::vector<int64_t> s;
    for (const Tensor& t : ps) s.push_back(t.size(d));
    return s;
  };
  CHECK(sizes(chunk(x, 3, 1), 1) == std::vector<int64_t>{3, 3, 1});
  CHECK(sizes(chunk(randn_t({6}), 4, 0), 0) == std::vector<int64_t>{2, 2, 2});
  CHECK(sizes(chunk(x, 1, 0), 0) == std::vector<int64_t>{4});
  CHECK(sizes(chunk(x, 10, 0), 0) == std::vector<int64_t>{1, 1, 1, 1});
  CHECK(sizes(chunk(randn_t({0, 3}), 3, 0), 0) == std::vector<int64_t>{0, 0, 0});
  check_equal(concat(chunk(x, 3, -1), -1), x);
}

TEST_CASE("indexing: index_select matches a loop for dtypes, dims, strided x, int32/int64 and repeated indices") {
  for (DType dt : {DType::Float64, DType::Float32, DType::BFloat16, DType::Int64}) {
    for (DType it : kIndexDTypes) {
      INFO(dtype_name(dt) << " idx " << dtype_name(it));
      Tensor x = rand_t({5, 6, 7}, -4, 4, dt).permute({2, 0, 1});  // (7, 5, 6), strided
      for (int64_t dim : {0, 1, -1}) {
        INFO("dim " << dim);
        const int64_t wd = dim < 0 ? dim + 3 : dim;
        const int64_t n = x.size(wd);
        Tensor idx = from_vector<int64_t>({n - 1, 0, 2, 2, n - 1, 1, 0, 2, 2}, {9}).to(it);  // repeats
        check_equal(index_select(x, dim, idx), ref_index_select(x, wd, idx));
        // A strided 1-D index (every other element) and an empty index.
        Tensor idx_s = rand_idx({12}, n, it).slice(0, 0, 12, 2);
        check_equal(index_select(x, dim, idx_s), ref_index_select(x, wd, idx_s));
        CHECK(index_select(x, dim, empty({0}, it)).size(wd) == 0);
      }
    }
  }
}

TEST_CASE("indexing: index_add accumulates repeated indices") {
  for (DType dt : {DType::Float64, DType::Float32, DType::BFloat16, DType::Int64}) {
    for (DType it : kIndexDTypes) {
      INFO(dtype_name(dt) << " idx " << dtype_name(it));
      Tensor x = rand_t({4, 6}, -3, 3, dt).transpose(0, 1);  // (6, 4), strided
      Tensor idx = from_vector<int64_t>({3, 1, 3, 3, 0}, {5}).to(it);
      for (int64_t dim : {0, -1}) {
        INFO("dim " << dim);
        const int64_t wd = dim < 0 ? 1 : 0;
        Shape ss = x.shape();
        ss[wd] = 5;
        Tensor src = rand_t({ss[1], ss[0]}, -3, 3, dt).transpose(0, 1);  // strided
        // Reference: out = x; out[.., idx[k], ..] += src[.., k, ..].
        std::vector<double> r = vals(x);
        const std::vector<double> sv = vals(src), iv = vals(idx);
        for (int64_t p = 0; p < src.numel(); ++p) {
          std::vector<int64_t> c = unravel(p, ss);
          c[wd] = static_cast<int64_t>(iv[c[wd]]);
          r[ravel(c, x.shape())] += sv[p];
        }
        check_close(index_add(x, dim, idx, src), from_vector(r, x.shape()));
      }
    }
  }
}

TEST_CASE("indexing: gather matches a loop (PyTorch semantics) for dtypes, strided x and idx, negative dims") {
  for (DType dt : {DType::Float64, DType::Float32, DType::BFloat16, DType::Int64, DType::Bool}) {
    for (DType it : kIndexDTypes) {
      INFO(dtype_name(dt) << " idx " << dtype_name(it));
      Tensor x = rand_t({5, 6, 4}, -3, 3, dt).transpose(0, 2);  // (4, 6, 5), strided
      // dim 1: idx may be longer than x along dim, and smaller in the others.
      Tensor idx = rand_idx({3, 9, 5}, 6, it);
      check_equal(gather(x, 1, idx), ref_gather(x, 1, idx));
      // dim -1 with a transposed index.
      Tensor idx_t = rand_idx({2, 6, 4}, 5, it).transpose(0, 2);  // (4, 6, 2)
      check_equal(gather(x, -1, idx_t), ref_gather(x, 2, idx_t));
      // dim 0 with size-1 dims and an empty index.
      Tensor idx0 = rand_idx({7, 1, 5}, 4, it);
      check_equal(gather(x, 0, idx0), ref_gather(x, 0, idx0));
      CHECK(gather(x, 0, empty({0, 6, 5}, it)).shape() == Shape{0, 6, 5});
    }
  }
}

TEST_CASE("indexing: scatter_add and scatter_add_ accumulate repeated indices like a loop") {
  for (DType dt : {DType::Float64, DType::Float32, DType::BFloat16, DType::Int64}) {
    for (DType it : kIndexDTypes) {
      INFO(dtype_name(dt) << " idx " << dtype_name(it));
      // dim 0: idx (6, 5) into base (4, 7): many repeats; src (7, 6) larger than idx (extra elements unused).
      Tensor base = rand_t({7, 4}, -3, 3, dt).transpose(0, 1);  // (4, 7), strided
      Tensor idx = rand_idx({6, 5}, 4, it);
      Tensor src = rand_t({7, 6}, -3, 3, dt);
      Tensor r = ref_scatter_add(base, 0, idx, src);
      Tensor y = scatter_add(base, 0, idx, src);
      check_close(y, r);
      // dim -1 with a strided index and strided src.
      Tensor idx2 = rand_idx({5, 3}, 7, it).transpose(0, 1);  // (3, 5)
      Tensor src2 = rand_t({6, 4}, -3, 3, dt).transpose(0, 1);   // (4, 6)
      check_close(scatter_add(base, -1, idx2, src2), ref_scatter_add(base, 1, idx2, src2));
      // In place into a strided destination: writes through to the underlying storage.
      Tensor storage = rand_t({7, 4}, -3, 3, dt);
      Tensor dst = storage.transpose(0, 1);
      Tensor r2 = ref_scatter_add(dst, 0, idx, src);
      Tensor& ret = scatter_add_(dst, 0, idx, src);
      CHECK(ret.is_same(dst));
      check_close(storage.transpose(0, 1), r2);
    }
  }
}

TEST_CASE("indexing: embedding forward and backward match loops, padding row gets no gradient") {
  const int64_t V = 11, C = 7;
  for (DType dt : {DType::Float64, DType::Float32, DType::BFloat16}) {
    for (DType it : kIndexDTypes) {
      INFO(dtype_name(dt) << " ids " << dtype_name(it));
      Tensor w = rand_t({C, V}, -2, 2, dt).transpose(0, 1);  // (V, C), strided
      Tensor ids = rand_idx({5, 3}, V, it).transpose(0, 1);  // (3, 5), strided
      ids.select(0, 0).select(0, 0).fill_(2.0);             // make the pad id (2) and repeats certain
      ids.select(0, 1).select(0, 3).fill_(2.0);
      ids.select(0, 2).select(0, 4).fill_(5.0);
      ids.select(0, 0).select(0, 1).fill_(5.0);
      Tensor y = embedding(w, ids);
      REQUIRE(y.shape() == Shape{3, 5, C});
      const std::vector<double> wv = vals(w), iv = vals(ids);
      std::vector<double> r;
      for (double id : iv)
        for (int64_t c = 0; c < C; ++c) r.push_back(wv[static_cast<int64_t>(id) * C + c]);
      check_equal(y, from_vector(r, {3, 5, C}));  // the pad row is looked up like any other

      Tensor g = randn_t({C, 5, 3}, dt).permute({2, 1, 0});  // (3, 5, C), strided
      const std::vector<double> gv = vals(g);
      for (int64_t pad : {int64_t{-1}, int64_t{2}}) {
        INFO("padding_idx " << pad);
        std::vector<double> rg(V * C, 0.0);
        for (int64_t p = 0; p < static_cast<int64_t>(iv.size()); ++p) {
          const int64_t id = static_cast<int64_t>(iv[p]);
          if (id == pad) continue;
          for (int64_t c = 0; c < C; ++c) rg[id * C + c] += gv[p * C + c];
        }
        Tensor dw = embedding_backward(g, ids, V, pad);
        REQUIRE(dw.shape() == Shape{V, C});
        CHECK(dw.dtype() == dt);
        check_close(dw, from_vector(rg, {V, C}));
        if (pad >= 0) CHECK(vals(dw.select(0, pad)) == std::vector<double>(C, 0.0));
      }
      // No ids at all: an empty lookup and an all-zero gradient.
      Tensor no_ids = empty({2, 0}, it);
      CHECK(embedding(w, no_ids).shape() == Shape{2, 0, C});
      CHECK(vals(embedding_backward(empty({2, 0, C}, dt), no_ids, V, 2)) == std::vector<double>(V * C, 0.0));
    }
  }
}

TEST_CASE("indexing: embedding_backward is bit-identical for 1 and several threads") {
  const int64_t V = 50, C = 33, N = 20000;
  Tensor ids = rand_idx({N / 100, 100}, V, DType::Int64);
  Tensor g = randn_t({N / 100, 100, C}, DType::Float32);
  const int prev = omp_get_max_threads();
  omp_set_num_threads(1);
  std::vector<float> one = embedding_backward(g, ids, V, 3).to_vector<float>();
  omp_set_num_threads(4);
  std::vector<float> many = embedding_backward(g, ids, V, 3).to_vector<float>();
  omp_set_num_threads(prev);
  REQUIRE(one.size() == many.size());
  CHECK(std::memcmp(one.data(), many.data(), one.size() * sizeof(float)) == 0);
  // The documented order (float64 sum in increasing position, rounded once) gives exactly these bits.
  const std::vector<double> iv = vals(ids), gv = vals(g);
  std::vector<double> acc(V * C, 0.0);
  for (int64_t p = 0; p < N; ++p)
    if (iv[p] != 3)
      for (int64_t c = 0; c < C; ++c) acc[static_cast<int64_t>(iv[p]) * C + c] += gv[p * C + c];
  std::vector<float> ref(acc.begin(), acc.end());
  CHECK(std::memcmp(one.data(), ref.data(), ref.size() * sizeof(float)) == 0);
}

TEST_CASE("indexing: out-of-range indices throw naming the value, its position and the valid range") {
  Tensor x = randn_t({4, 5});
  check_throws_with([&] { index_select(x, 1, from_vector<int64_t>({0, 7, 1}, {3})); },
                    {"index_select", "value 7", "flat position 1", "[0, 5)", "[4, 5]"});
  check_throws_with([&] { gather(x, 0, from_vector<int32_t>({0, 1, -1, 2}, {2, 2})); },
                    {"gather", "value -1", "flat position 2", "[0, 4)"});
  check_throws_with([&] { scatter_add(x, 1, from_vector<int64_t>({5}, {1, 1}), randn_t({1, 1})); },
                    {"scatter_add", "value 5", "flat position 0", "[0, 5)"});
  check_throws_with([&] { index_add(x, 0, from_vector<int64_t>({4}, {1}), randn_t({1, 5})); },
                    {"index_add", "value 4", "[0, 4)"});
  Tensor w = randn_t({10, 3});
  check_throws_with([&] { embedding(w, from_vector<int64_t>({1, 2, 3, 10}, {2, 2})); },
                    {"embedding", "value 10", "flat position 3", "[0, 10)", "10 rows"});
  check_throws_with([&] { embedding_backward(randn_t({2, 3}), from_vector<int64_t>({1, -4}, {2}), 10, -1); },
                    {"embedding_backward", "value -4", "flat position 1", "[0, 10)"});
  check_throws_with([&] { embedding_backward(randn_t({2, 3}), from_vector<int64_t>({1, 4}, {2}), 10, 10); },
                    {"padding_idx 10", "[0, 10)"});
}

TEST_CASE("indexing: concat rejects mismatched shapes naming the position and both shapes") {
  check_throws_with([] { concat({randn_t({2, 3}), randn_t({5, 3}), randn_t({3, 4})}, 0); },
                    {"concat", "tensor 2", "[3, 4]", "[2, 3]", "dim 0"});
  check_throws_with([] { concat({randn_t({2, 3}), randn_t({2, 3}, DType::Float32)}, 0); },
                    {"concat", "tensor 1", "float32", "float64"});
  check_throws_with([] { concat({randn_t({2, 3}), randn_t({2, 3, 1})}, 0); }, {"concat", "tensor 1", "[2, 3, 1]"});
  check_throws_with([] { concat({}, 0); }, {"concat", "empty list"});
  check_throws_with([] { stack({randn_t({2, 3}), randn_t({3, 2})}, 0); }, {"stack", "tensor 1", "[3, 2]", "[2, 3]"});
  check_throws_with([] { gather(randn_t({2, 3}), 1, zeros({3, 3}, DType::Int64)); },
                    {"gather", "[3, 3]", "[2, 3]", "dim 0"});
}

TEST_CASE("indexing: a non-integer index dtype is rejected") {
  Tensor x = randn_t({4, 5});
  check_throws_with([&] { index_select(x, 0, zeros({2}, DType::Float32)); }, {"index_select", "int32 or int64", "float32"});
  check_throws_with([&] { gather(x, 0, zeros({2, 2}, DType::Float64)); }, {"gather", "int32 or int64", "float64"});
  check_throws_with([&] { scatter_add(x, 0, zeros({2, 2}, DType::Bool), x); }, {"scatter_add", "int32 or int64", "bool"});
  check_throws_with([&] { embedding(x, zeros({3}, DType::Float32)); }, {"embedding", "int32 or int64"});
}

TEST_CASE("indexing: a bad dim is rejected") {
  Tensor x = randn_t({4, 5});
  check_throws_with([&] { concat({x, x}, 2); }, {"concat", "dim 2 out of range", "rank 2"});
  check_throws_with([&] { gather(x, -3, zeros({4, 5}, DType::Int64)); }, {"gather", "dim -3 out of range"});
  check_throws_with([&] { index_select(x, 5, zeros({1}, DType::Int64)); }, {"index_select", "dim 5 out of range"});
  check_throws_with([&] { split(x, {5}, 2); }, {"split", "dim 2 out of range"});
  check_throws_with([&] { chunk(x, 2, -3); }, {"chunk", "dim -3 out of range"});
  check_throws_with([&] { stack({x}, 3); }, {"stack", "dim 3 out of range"});
}

TEST_CASE("indexing: split sizes must sum to the dim size") {
  Tensor x = randn_t({4, 6});
  check_throws_with([&] { split(x, {2, 3}, 1); }, {"split", "[2, 3]", "sum to 5", "size 6", "[4, 6]"});
  check_throws_with([&] { split(x, {5, -1}, 0); }, {"split", "size -1 at position 1", "negative"});
  check_throws_with([&] { chunk(x, 0, 0); }, {"chunk", "must be >= 1"});
}
