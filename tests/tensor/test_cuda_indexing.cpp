// gpu-labelled: the indexing ops on CUDA (concat, stack, index_select, gather, index_add, scatter_add(_),
// embedding and its backward) against the CPU ops on the same inputs: bit-exact for the data-movement ops, within
// the dtype's tolerance of the CPU float64 result for the accumulating ones. Also: odd sizes, negative dims,
// non-contiguous inputs, int32 and int64 indices, determinism of the accumulating ops across runs, out-of-range
// errors that read like the CPU's, and the ag:: gradients on CUDA against CPU float64. Outputs are poisoned by the
// allocator (see gpu_available), so an element a kernel forgets to write is NaN (or -1) and fails.
#include <cstring>

#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

namespace {

const Device kGpu("cuda:0");
const DType kIndexDTypes[] = {DType::Int32, DType::Int64};
const DType kAllDTypes[] = {DType::Float32, DType::Float64, DType::BFloat16, DType::Int32, DType::Int64, DType::Bool};
const DType kNumericDTypes[] = {DType::Float32, DType::Float64, DType::BFloat16, DType::Int32, DType::Int64};

// Random CPU values of any dtype: normal for floating types, integers in [-100, 100) or {false, true} otherwise.
Tensor rand_of(const Shape& shape, DType dt) {
  if (is_floating(dt)) return randn_t(shape, dt);
  if (dt == DType::Bool) return rand_t(shape, 0.0, 2.0 - 1e-9).to(DType::Int64).to(DType::Bool);
  return rand_t(shape, -100.0, 100.0).to(DType::Int64).to(dt);
}

// Random indices in [0, n) of the given dtype (CPU).
Tensor rand_idx(const Shape& shape, int64_t n, DType dt) {
  return rand_t(shape, 0.0, static_cast<double>(n) - 1e-9, DType::Float64).to(DType::Int64).to(dt);
}

// The raw bytes of t in row-major order (moved to the CPU first).
std::vector<unsigned char> bytes_of(const Tensor& t) {
  const Tensor c = t.to(kCPU).contiguous();
  std::vector<unsigned char> b(static_cast<std::size_t>(c.numel()) * c.element_size());
  if (!b.empty()) std::memcpy(b.data(), c.raw_data(), b.size());
  return b;
}

// CHECKs that the CUDA result equals the CPU result bit for bit (same shape, dtype and bytes).
void check_same_bits(const Tensor& gpu, const Tensor& cpu, const std::string& what) {
  INFO(what);
  REQUIRE(gpu.is_cuda());
  CHECK(gpu.shape() == cpu.shape());
  CHECK(gpu.dtype() == cpu.dtype());
  CHECK(bytes_of(gpu) == bytes_of(cpu));
}

// The float64 (or, for integer dtypes, same-dtype) CPU reference input.
Tensor ref_in(const Tensor& gpu) {
  const Tensor h = gpu.to(kCPU);
  return is_floating(h.dtype()) ? h.to(DType::Float64) : h;
}

// Accumulating op result on CUDA vs the CPU reference: check_close for floating dtypes, exact for integers.
void check_accum(const Tensor& gpu, const Tensor& ref, DType dt, const std::string& what) {
  INFO(what);
  REQUIRE(gpu.is_cuda());
  REQUIRE(gpu.shape() == ref.shape());
  if (is_floating(dt)) {
    check_close(gpu.to(kCPU), ref, tolerance_for(dt), what);
  } else {
    CHECK(gpu.to(kCPU).to_vector<int64_t>() == ref.to_vector<int64_t>());
  }
}

// The message of the exception f throws, without the trailing " [file:line]" (empty when nothing is thrown).
std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    std::string m = e.what();
    const auto pos = m.rfind(" [");
    return pos == std::string::npos ? m : m.substr(0, pos);
  }
  return "";
}

}  // namespace

TEST_SUITE("gpu") {  // built into test_tensor_gpu (tests/CMakeLists.txt), ctest label gpu
  TEST_CASE("cuda concat and stack match the CPU bit for bit for every dtype with strided and empty pieces") {
    if (!gpu_available()) return;
    for (DType dt : kAllDTypes) {
      INFO(dtype_name(dt));
      const Tensor a = rand_of({3, 5, 7}, dt).to(kGpu);
      const Tensor b = rand_of({3, 7, 2}, dt).to(kGpu).transpose(1, 2);  // (3, 2, 7), not contiguous
      const Tensor c = rand_of({3, 0, 7}, dt).to(kGpu);                   // empty piece
      const Tensor d = rand_of({3, 1, 13}, dt).to(kGpu).slice(2, 0, 13, 2);  // (3, 1, 7), step 2
      const std::vector<Tensor> g = {a, b, c, d};
      std::vector<Tensor> h;
      for (const Tensor& t : g) h.push_back(t.to(kCPU));
      check_same_bits(concat(g, 1), concat(h, 1), "concat dim 1");
      check_same_bits(concat(g, -2), concat(h, -2), "concat dim -2");
      // Odd sizes along the last dim.
      const Tensor e = rand_of({33, 65}, dt).to(kGpu), f = rand_of({33, 1}, dt).to(kGpu);
      const Tensor et = rand_of({31, 33}, dt).to(kGpu).transpose(0, 1);  // (33, 31) strided
      check_same_bits(concat({e, f, et}, -1), concat({e.to(kCPU), f.to(kCPU), et.to(kCPU)}, -1), "concat dim -1");
      check_same_bits(concat({e}, 0), concat({e.to(kCPU)}, 0), "concat of one piece");
      // stack = unsqueeze + concat, at a negative dim and at the front.
      const Tensor s0 = rand_of({4, 9}, dt).to(kGpu), s1 = rand_of({9, 4}, dt).to(kGpu).transpose(0, 1);
      check_same_bits(stack({s0, s1, s0}, -1), stack({s0.to(kCPU), s1.to(kCPU), s0.to(kCPU)}, -1), "stack dim -1");
      check_same_bits(stack({s0, s1}, 0), stack({s0.to(kCPU), s1.to(kCPU)}, 0), "stack dim 0");
    }
  }

  TEST_CASE("cuda index_select matches the CPU bit for bit: dtypes and int32 and int64 indices and strided inputs") {
    if (!gpu_available()) return;
    for (DType dt : kAllDTypes) {
      for (DType it : kIndexDTypes) {
        INFO(dtype_name(dt) << " idx " << dtype_name(it));
        const Tensor x = rand_of({7, 13, 5}, dt).to(kGpu);
        const Tensor xp = rand_of({5, 7, 13}, dt).to(kGpu).permute({1, 2, 0});  // (7, 13, 5), not contiguous
        for (int64_t dim : {0, 1, 2, -1, -3}) {
          INFO("dim " << dim);
          const int64_t n = x.size(dim);
          const Tensor idx = rand_idx({19}, n, it).to(kGpu);  // 19 > n for every dim: repeats
          check_same_bits(index_select(x, dim, idx), index_select(x.to(kCPU), dim, idx.to(kCPU)), "contiguous x");
          check_same_bits(index_select(xp, dim, idx), index_select(xp.to(kCPU), dim, idx.to(kCPU)), "permuted x");
          const Tensor idx_s = rand_idx({40}, n, it).to(kGpu).slice(0, 1, 40, 3);  // strided 1-D index
          check_same_bits(index_select(x, dim, idx_s), index_select(x.to(kCPU), dim, idx_s.to(kCPU)), "strided idx");
          const Tensor none = zeros({0}, it, kGpu);
          check_same_bits(index_select(x, dim, none), index_select(x.to(kCPU), dim, none.to(kCPU)), "empty idx");
        }
      }
    }
    // A larger odd case: (1031, 257) float32 rows picked along dim 0 and columns along dim -1.
    const Tensor big = randn_t({1031, 257}, DType::Float32).to(kGpu);
    const Tensor rows = rand_idx({777}, 1031, DType::Int64).to(kGpu), cols = rand_idx({300}, 257, DType::Int32).to(kGpu);
    check_same_bits(index_select(big, 0, rows), index_select(big.to(kCPU), 0, rows.to(kCPU)), "big rows");
    check_same_bits(index_select(big, -1, cols), index_select(big.to(kCPU), -1, cols.to(kCPU)), "big cols");
  }

  TEST_CASE("cuda gather matches the CPU bit for bit: dtypes and index dtypes and negative dims and strided idx") {
    if (!gpu_available()) return;
    for (DType dt : kAllDTypes) {
      for (DType it : kIndexDTypes) {
        INFO(dtype_name(dt) << " idx " << dtype_name(it));
        const Tensor x = rand_of({6, 11, 9}, dt).to(kGpu);
        const Tensor xt = rand_of({9, 11, 6}, dt).to(kGpu).transpose(0, 2);  // (6, 11, 9) strided
        for (int64_t dim : {0, 1, 2, -1, -2}) {
          INFO("dim " << dim);
          const int64_t d = dim < 0 ? dim + 3 : dim;
          Shape is = {5, 10, 7};  // smaller than x in the other dims
          is[d] = 13;             // larger than x along dim
          const Tensor idx = rand_idx(is, x.size(d), it).to(kGpu);
          check_same_bits(gather(x, dim, idx), gather(x.to(kCPU), dim, idx.to(kCPU)), "contiguous");
          check_same_bits(gather(xt, dim, idx), gather(xt.to(kCPU), dim, idx.to(kCPU)), "strided x");
          // A transposed index tensor of the same shape.
          Shape ts = is;
          std::swap(ts[0], ts[2]);
          const Tensor idx_t = rand_idx(ts, x.size(d), it).to(kGpu).transpose(0, 2);
          REQUIRE(idx_t.shape() == is);
          check_same_bits(gather(xt, dim, idx_t), gather(xt.to(kCPU), dim, idx_t.to(kCPU)), "strided idx");
        }
      }
    }
    // The cross-entropy pattern: logits (B*T, V) gathered at one target per row.
    const Tensor logits = randn_t({513, 1000}, DType::BFloat16).to(kGpu);
    const Tensor tgt = rand_idx({513, 1}, 1000, DType::Int64).to(kGpu);
    check_same_bits(gather(logits, -1, tgt), gather(logits.to(kCPU), -1, tgt.to(kCPU)), "logits gather");
  }

  TEST_CASE("cuda scatter_add and scatter_add_ match float64 with repeated indices and are bit-identical across runs") {
    if (!gpu_available()) return;
    for (DType dt : kNumericDTypes) {
      for (DType it : kIndexDTypes) {
        for (int64_t dim : {0, 1, 2, -1, -2}) {
          INFO(dtype_name(dt) << " idx " << dtype_name(it) << " dim " << dim);
          const int64_t d = dim < 0 ? dim + 3 : dim;
          const Shape bs = {6, 9, 5};
          Shape is = {5, 8, 4};
          is[d] = 23;  // many contributions per destination along dim
          Shape ss = is;
          ss[0] += 1;
          ss[2] += 2;  // src larger than idx: the extra elements are ignored
          const Tensor base = rand_of(bs, dt).to(kGpu), src = rand_of(ss, dt).to(kGpu);
          const Tensor idx = rand_idx(is, bs[d], it).to(kGpu);
          const Tensor y = scatter_add(base, dim, idx, src);
          const Tensor ref = scatter_add(ref_in(base), dim, idx.to(kCPU), ref_in(src));
          check_accum(y, ref, dt, "scatter_add");
          CHECK(bytes_of(scatter_add(base, dim, idx, src)) == bytes_of(y));  // deterministic
          // In place on a strided destination, with a strided src and idx.
          Tensor dst = rand_of({bs[2], bs[1], bs[0]}, dt).to(kGpu).transpose(0, 2);
          const Tensor dst_ref = ref_in(dst);
          const Tensor src_t = rand_of({ss[2], ss[1], ss[0]}, dt).to(kGpu).transpose(0, 2);
          const Tensor idx_t = rand_idx({is[2], is[1], is[0]}, bs[d], it).to(kGpu).transpose(0, 2);
          scatter_add_(dst, dim, idx_t, src_t);
          check_accum(dst, scatter_add(dst_ref, dim, idx_t.to(kCPU), ref_in(src_t)), dt, "scatter_add_ strided");
        }
      }
    }
    // A large float32 case with heavy repetition (all 4096 contributions of a column into 3 rows), run twice.
    const Tensor base = zeros({3, 64}, DType::Float32, kGpu), src = randn_t({4096, 64}, DType::Float32).to(kGpu);
    const Tensor idx = rand_idx({4096, 64}, 3, DType::Int64).to(kGpu);
    const Tensor y1 = scatter_add(base, 0, idx, src), y2 = scatter_add(base, 0, idx, src);
    CHECK(bytes_of(y1) == bytes_of(y2));
    check_close(y1.to(kCPU), scatter_add(ref_in(base), 0, idx.to(kCPU), ref_in(src)), kTolF32, "heavy repetition");
    // Empty idx leaves base unchanged.
    const Tensor b0 = randn_t({4, 4}, DType::Float32).to(kGpu);
    check_same_bits(scatter_add(b0, 1, zeros({4, 0}, DType::Int64, kGpu), zeros({4, 0}, DType::Float32, kGpu)),
                    b0.to(kCPU), "empty idx");
  }

  TEST_CASE("cuda index_add matches float64 with repeated indices for every numeric dtype and is deterministic") {
    if (!gpu_available()) return;
    for (DType dt : kNumericDTypes) {
      for (DType it : kIndexDTypes) {
        for (int64_t dim : {0, 1, -1}) {
          INFO(dtype_name(dt) << " idx " << dtype_name(it) << " dim " << dim);
          const Tensor x = rand_of({10, 7}, dt).to(kGpu);
          const int64_t d = dim < 0 ? dim + 2 : dim;
          const Tensor idx = rand_idx({25}, x.size(d), it).to(kGpu);
          Shape ss = x.shape();
          ss[d] = 25;
          const Tensor src = rand_of({ss[1], ss[0]}, dt).to(kGpu).transpose(0, 1);  // strided src
          const Tensor y = index_add(x, dim, idx, src);
          check_accum(y, index_add(ref_in(x), dim, idx.to(kCPU), ref_in(src)), dt, "index_add");
          CHECK(bytes_of(index_add(x, dim, idx, src)) == bytes_of(y));
        }
      }
    }
  }

  TEST_CASE("cuda embedding matches the CPU bit for bit on a 32000 x 64 table with 4096 repeated ids") {
    if (!gpu_available()) return;
    const int64_t V = 32000, C = 64;
    for (DType dt : {DType::Float32, DType::BFloat16, DType::Float64}) {
      for (DType it : kIndexDTypes) {
        INFO(dtype_name(dt) << " ids " << dtype_name(it));
        const Tensor w = randn_t({V, C}, dt).to(kGpu);
        // Half of the ids from a small range (many repeats), half from the whole table.
        const Tensor ids = concat({rand_idx({4, 512}, 200, it), rand_idx({4, 512}, V, it)}, 1).to(kGpu);  // (4, 1024)
        check_same_bits(embedding(w, ids), embedding(w.to(kCPU), ids.to(kCPU)), "contiguous");
        const Tensor ids_t = ids.transpose(0, 1);  // (1024, 4) strided ids
        check_same_bits(embedding(w, ids_t), embedding(w.to(kCPU), ids_t.to(kCPU)), "strided ids");
      }
    }
    // A strided table with an odd width, and 1-D / single ids.
    const Tensor wt = randn_t({33, 1001}, DType::Float32).to(kGpu).transpose(0, 1);  // (1001, 33)
    const Tensor ids = rand_idx({77}, 1001, DType::Int32).to(kGpu);
    check_same_bits(embedding(wt, ids), embedding(wt.to(kCPU), ids.to(kCPU)), "strided table");
    const Tensor one = from_vector<int64_t>({1000}, {1}, kGpu);
    check_same_bits(embedding(wt, one), embedding(wt.to(kCPU), one.to(kCPU)), "single id");
    const Tensor none = zeros({2, 0}, DType::Int64, kGpu);
    CHECK(embedding(wt, none).shape() == Shape{2, 0, 33});
  }

  TEST_CASE("cuda embedding_backward matches float64 and the CPU bits and is deterministic with a zero padding row") {
    if (!gpu_available()) return;
    const int64_t V = 32000, C = 64;
    for (DType dt : {DType::Float32, DType::BFloat16, DType::Float64}) {
      for (DType it : kIndexDTypes) {
        for (int64_t pad : {int64_t(-1), int64_t(3)}) {
          INFO(dtype_name(dt) << " ids " << dtype_name(it) << " pad " << pad);
          // 4096 ids, most from [0, 50) (pad 3 among them), the rest from the whole table.
          const Tensor ids = concat({rand_idx({2, 1536}, 50, it), rand_idx({2, 512}, V, it)}, 1).to(kGpu);
          const Tensor g = randn_t({2, 2048, C}, dt).to(kGpu);
          const Tensor dw = embedding_backward(g, ids, V, pad);
          REQUIRE(dw.shape() == Shape{V, C});
          check_close(dw.to(kCPU), embedding_backward(ref_in(g), ids.to(kCPU), V, pad), tolerance_for(dt), "vs f64");
          // Same algorithm as the CPU (float64 sums in increasing position, rounded once): the same bits.
          check_same_bits(dw, embedding_backward(g.to(kCPU), ids.to(kCPU), V, pad), "vs CPU same dtype");
          CHECK(bytes_of(embedding_backward(g, ids, V, pad)) == bytes_of(dw));  // deterministic
          if (pad >= 0) CHECK(dw.to(kCPU).select(0, pad).to_vector<double>() == std::vector<double>(C, 0.0));
        }
      }
    }
    // Strided grad and ids, odd width; no ids at all gives zeros.
    const int64_t N = 301, C2 = 37, V2 = 50;
    const Tensor g = randn_t({C2, N}, DType::Float32).to(kGpu).transpose(0, 1);  // (N, C2) strided
    const Tensor ids = rand_idx({2 * N}, V2, DType::Int32).to(kGpu).slice(0, 0, 2 * N, 2);
    check_same_bits(embedding_backward(g, ids, V2, 7), embedding_backward(g.to(kCPU), ids.to(kCPU), V2, 7), "strided");
    const Tensor dz = embedding_backward(zeros({2, 0, 5}, DType::Float32, kGpu), zeros({2, 0}, DType::Int64, kGpu), 4);
    CHECK(dz.to(kCPU).to_vector<double>() == std::vector<double>(20, 0.0));
  }

  TEST_CASE("cuda out-of-range indices throw the CPU message naming the op and value and position and range") {
    if (!gpu_available()) return;
    const Tensor x = randn_t({4, 5}, DType::Float32);
    const Tensor xg = x.to(kGpu);
    // Each case runs on the CPU and on CUDA; the CUDA message must contain the fragments and equal the CPU one.
    auto both = [&](const std::function<void(const Device&)>& f, const std::vector<std::string>& fragments) {
      check_throws_with([&] { f(kGpu); }, fragments);
      CHECK(message_of([&] { f(kGpu); }) == message_of([&] { f(kCPU); }));
    };
    both([&](const Device& d) { index_select(x.to(d), 1, from_vector<int64_t>({0, 7, 1}, {3}, d)); },
         {"index_select", "value 7", "flat position 1", "[0, 5)", "[4, 5]"});
    both([&](const Device& d) { gather(x.to(d), 0, from_vector<int32_t>({0, 1, -1, 2}, {2, 2}, d)); },
         {"gather", "value -1", "flat position 2", "[0, 4)"});
    both([&](const Device& d) { scatter_add(x.to(d), 1, from_vector<int64_t>({5}, {1, 1}, d), randn_t({1, 1}, DType::Float32).to(d)); },
         {"scatter_add", "value 5", "flat position 0", "[0, 5)"});
    both([&](const Device& d) {
           Tensor dst = x.to(d).clone();
           scatter_add_(dst, -1, from_vector<int64_t>({1, 9}, {1, 2}, d), randn_t({1, 2}, DType::Float32).to(d));
         },
         {"scatter_add_", "value 9", "flat position 1", "[0, 5)"});
    both([&](const Device& d) { index_add(x.to(d), 0, from_vector<int64_t>({4}, {1}, d), randn_t({1, 5}, DType::Float32).to(d)); },
         {"index_add", "value 4", "[0, 4)"});
    const Tensor w = randn_t({10, 3}, DType::Float32);
    both([&](const Device& d) { embedding(w.to(d), from_vector<int64_t>({1, 2, 3, 10}, {2, 2}, d)); },
         {"embedding", "value 10", "flat position 3", "[0, 10)", "10 rows"});
    both([&](const Device& d) { embedding(w.to(d), from_vector<int32_t>({-2147483647 - 1}, {1}, d)); },
         {"embedding", "value -2147483648", "flat position 0", "[0, 10)"});
    both([&](const Device& d) {
           embedding_backward(randn_t({2, 3}, DType::Float32).to(d), from_vector<int64_t>({1, -4}, {2}, d), 10, -1);
         },
         {"embedding_backward", "value -4", "flat position 1", "[0, 10)"});
    // Strided idx: the first bad position is counted in row-major order, not in memory order. The transposed
    // view t has t[0][1] = 8 (memory position 2) before t[1][0] = 6 (memory position 1) in row-major order.
    both([&](const Device& d) {
           const Tensor t = from_vector<int64_t>({0, 6, 8, 1}, {2, 2}, d).transpose(0, 1);
           gather(randn_t({2, 5}, DType::Float32).to(d), 1, t);
         },
         {"gather", "value 8", "flat position 1", "[0, 5)"});
    // Several bad values far apart in a large index: the smallest position is reported.
    both([&](const Device& d) {
           std::vector<int64_t> v(100000, 1);
           v[99999] = -1;
           v[54321] = 12;
           v[77777] = 13;
           embedding(w.to(d), from_vector<int64_t>(v, {100000}, d));
         },
         {"embedding", "value 12", "flat position 54321", "[0, 10)"});
    // Nothing was written: an in-place scatter with a bad index leaves dst unchanged.
    Tensor dst = xg.clone();
    const std::vector<unsigned char> before = bytes_of(dst);
    CHECK_THROWS(scatter_add_(dst, 1, from_vector<int64_t>({0, 5}, {1, 2}, kGpu), randn_t({1, 2}, DType::Float32).to(kGpu)));
    CHECK(bytes_of(dst) == before);
  }

  TEST_CASE("cuda ag indexing ops give the CPU float64 gradients") {
    if (!gpu_available()) return;
    for (DType it : kIndexDTypes) {
      INFO("idx " << dtype_name(it));
      const DType dt = DType::Float32;
      // A float32 CUDA leaf and its float64 CPU twin (same rounded values).
      auto gpu_leaf = [&](const Shape& s) {
        Tensor t = randn_t(s, dt).to(kGpu);
        ag::set_requires_grad(t);
        return t;
      };
      auto cpu_twin = [](const Tensor& g) { return leaf(g.to(kCPU).to(DType::Float64)); };
      auto check_grad = [](const Tensor& gpu, const Tensor& cpu, const std::string& what) {
        REQUIRE(ag::grad(gpu).defined());
        CHECK(ag::grad(gpu).is_cuda());
        check_close(ag::grad(gpu).to(kCPU), ag::grad(cpu), kTolF32, what);
      };

      // embedding with a padding row; 4096 ids with repeats into a 32000 x 64 table.
      {
        const Tensor w = gpu_leaf({32000, 64}), w64 = cpu_twin(w);
        const Tensor ids = concat({rand_idx({4, 768}, 100, it), rand_idx({4, 256}, 32000, it)}, 1).to(kGpu);
        const Tensor up = randn_t({4, 1024, 64}, dt).to(kGpu);
        ag::backward(ag::embedding(w, ids, 5), up);
        ag::backward(ag::embedding(w64, ids.to(kCPU), 5), ref_in(up));
        check_grad(w, w64, "embedding");
        CHECK(ag::grad(w).to(kCPU).select(0, 5).to_vector<double>() == std::vector<double>(64, 0.0));
      }
      // index_select (backward: index_add) along a negative dim.
      {
        const Tensor x = gpu_leaf({9, 31}), x64 = cpu_twin(x);
        const Tensor idx = rand_idx({50}, 31, it).to(kGpu);
        const Tensor up = randn_t({9, 50}, dt).to(kGpu);
        ag::backward(ag::index_select(x, -1, idx), up);
        ag::backward(ag::index_select(x64, -1, idx.to(kCPU)), ref_in(up));
        check_grad(x, x64, "index_select");
      }
      // gather (backward: scatter_add), the cross-entropy pattern.
      {
        const Tensor x = gpu_leaf({65, 129}), x64 = cpu_twin(x);
        const Tensor idx = rand_idx({65, 3}, 129, it).to(kGpu);
        const Tensor up = randn_t({65, 3}, dt).to(kGpu);
        ag::backward(ag::gather(x, -1, idx), up);
        ag::backward(ag::gather(x64, -1, idx.to(kCPU)), ref_in(up));
        check_grad(x, x64, "gather");
      }
      // scatter_add: grads of base and of src (src larger than idx: zero outside idx's region).
      {
        const Tensor base = gpu_leaf({7, 6}), src = gpu_leaf({12, 8});
        const Tensor base64 = cpu_twin(base), src64 = cpu_twin(src);
        const Tensor idx = rand_idx({11, 6}, 7, it).to(kGpu);
        const Tensor up = randn_t({7, 6}, dt).to(kGpu);
        ag::backward(ag::scatter_add(base, 0, idx, src), up);
        ag::backward(ag::scatter_add(base64, 0, idx.to(kCPU), src64), ref_in(up));
        check_grad(base, base64, "scatter_add base");
        check_grad(src, src64, "scatter_add src");
      }
      // concat / stack / split / chunk.
      {
        const Tensor a = gpu_leaf({3, 4}), b = gpu_leaf({3, 7});
        const Tensor a64 = cpu_twin(a), b64 = cpu_twin(b);
        const Tensor up = randn_t({3, 11}, dt).to(kGpu);
        ag::backward(ag::concat({a, b}, -1), up);
        ag::backward(ag::concat({a64, b64}, -1), ref_in(up));
        check_grad(a, a64, "concat a");
        check_grad(b, b64, "concat b");
        const Tensor s = gpu_leaf({5, 3}), s64 = cpu_twin(s);
        const Tensor ups = randn_t({5, 2, 3}, dt).to(kGpu);
        ag::backward(ag::stack({s, s}, 1), ups);
        ag::backward(ag::stack({s64, s64}, 1), ref_in(ups));
        check_grad(s, s64, "stack");
        const Tensor c = gpu_leaf({10, 3}), c64 = cpu_twin(c);
        const std::vector<Tensor> pc = ag::chunk(c, 3, 0), pc64 = ag::chunk(c64, 3, 0);
        const Tensor upc = randn_t(pc[1].shape(), dt).to(kGpu);
        ag::backward(pc[1], upc);
        ag::backward(pc64[1], ref_in(upc));
        check_grad(c, c64, "chunk");
      }
    }
  }
}
