// gpu-labelled: the indexing ops on CUDA (concat, stack, index_select, gather, index_add, scatter_add(_),
// embedding and its backward) against the CPU ops on the same inputs: bit-exact for the data-movement ops, within
// the dtype's tolerance of the CPU float64 result for the accumulating ones. Also: odd sizes, negative dims,
// non-contiguous inputs, int32 and int64 indices, determinism of the accumulating ops across runs, out-of-range
// errors that read like the CPU's and are raised at the next synchronisation of the device (the index checks are
// deferred, so a valid forward and backward never waits for the device), memory safety and a usable device after
// a bad index, and the ag:: gradients on CUDA against CPU float64. Outputs are poisoned by the allocator (see
// gpu_available), so an element a kernel forgets to write is NaN (or -1) and fails.
#include <chrono>
#include <cstring>
#include <limits>

#include "tensor/cuda/backend.h"
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

// The message of the error that the next synchronisation of cuda:0 raises after f ("" when none). On CUDA the
// index checks are deferred, so f itself must not throw: that is CHECKed too.
std::string deferred_error_of(const std::function<void()>& f) {
  cuda::synchronize(0);  // nothing pending from earlier work
  try {
    f();
  } catch (const std::exception& e) {
    FAIL_CHECK("the op threw at once instead of at the next synchronisation: " << e.what());
    try {
      cuda::synchronize(0);
    } catch (const std::exception&) {
    }
    return "";
  }
  try {
    cuda::synchronize(0);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

// CHECKs that the next synchronisation of cuda:0 throws std::invalid_argument (clearing the pending verdicts).
void check_sync_throws(const std::string& what) {
  INFO(what);
  CHECK_THROWS_AS(cuda::synchronize(0), std::invalid_argument);
}

// Runs f with an out-of-range index where the op may report an earlier bad index of the same sequence at once
// (a later deferred check raises a landed earlier one); then the next synchronisation must throw as well, since
// f's own checks are still pending. Nothing may crash.
void check_bad_sequence(const std::function<void()>& f, const std::string& what) {
  INFO(what);
  cuda::synchronize(0);
  try {
    f();
  } catch (const std::exception&) {  // an earlier deferred error of the sequence, raised at a later check
  }
  check_sync_throws(what);
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

  TEST_CASE("cuda out-of-range indices are raised at the next synchronisation with the CPU message") {
    if (!gpu_available()) return;
    const Tensor x = randn_t({4, 5}, DType::Float32);
    const Tensor xg = x.to(kGpu);
    // Each case runs on the CPU (throws at once) and on CUDA (the op returns; the next cuda::synchronize throws
    // std::invalid_argument). The CUDA message must contain the fragments and equal the CPU one (whose trailing
    // " [file:line]" message_of drops; the deferred message has none).
    auto both = [&](const std::function<void(const Device&)>& f, const std::vector<std::string>& fragments) {
      const std::string gpu = deferred_error_of([&] { f(kGpu); });
      REQUIRE_MESSAGE(!gpu.empty(), "no error was raised at the synchronisation");
      for (const std::string& fr : fragments) CHECK_MESSAGE(gpu.find(fr) != std::string::npos, gpu << " lacks " << fr);
      CHECK(gpu == message_of([&] { f(kCPU); }));
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
    // Extreme values of both index dtypes are reported exactly.
    both([&](const Device& d) {
           embedding(w.to(d), from_vector<int64_t>({3, std::numeric_limits<int64_t>::max()}, {2}, d));
         },
         {"embedding", "value 9223372036854775807", "flat position 1"});
    both([&](const Device& d) {
           index_select(x.to(d), 0, from_vector<int64_t>({std::numeric_limits<int64_t>::min(), 0}, {2}, d));
         },
         {"index_select", "value -9223372036854775808", "flat position 0", "[0, 4)"});

    // Other synchronisation points raise it too: to(cpu) of the result, item(), and a later deferred check once
    // the earlier verdict has landed.
    cuda::synchronize(0);
    {
      const Tensor y = index_select(xg, 1, from_vector<int64_t>({2, 5}, {2}, kGpu));
      check_throws_with([&] { (void)y.to(kCPU); }, {"index_select", "value 5", "flat position 1", "[0, 5)"});
    }
    {
      const Tensor y = gather(xg, 1, from_vector<int32_t>({0, 1, 2, 3, 4, -3, 0, 0}, {4, 2}, kGpu));
      check_throws_with([&] { (void)sum(y).item(); }, {"gather", "value -3", "flat position 5", "[0, 5)"});
    }
    {
      const Tensor y = embedding(xg, from_vector<int64_t>({4}, {1}, kGpu));  // x as a 4-row table: 4 is bad
      // Wait for the compute stream through an event (which raises nothing), so the verdict has landed when the
      // next index op defers its own check: that op raises the earlier error.
      const Tensor ok = from_vector<int64_t>({0, 1}, {2}, kGpu);
      cuda::Event drained(0, /*timing=*/false);
      drained.record(cuda::compute_stream(0));
      drained.synchronize();
      check_throws_with([&] { (void)index_select(xg, 0, ok); }, {"embedding", "value 4", "flat position 0", "[0, 4)"});
      cuda::synchronize(0);  // the later (valid) check passes: nothing left to raise
    }
    cuda::synchronize(0);
  }

  TEST_CASE("cuda ops with a bad index stay memory safe and the device stays usable afterwards") {
    if (!gpu_available()) return;
    for (DType it : kIndexDTypes) {
      INFO("idx " << dtype_name(it));
      const Tensor x = randn_t({6, 7}, DType::Float32);
      const Tensor xg = x.to(kGpu);
      cuda::synchronize(0);
      // gather / index_select / embedding: in-range positions are gathered, out-of-range ones read 0.
      {
        const Tensor idx = from_vector<int64_t>({0, 6, 2, -1, 5, 1000000, 3, 1}, {2, 4}, kCPU).to(it);
        const Tensor y = gather(xg, 0, idx.to(kGpu));
        check_sync_throws("gather");
        const std::vector<double> got = y.to(kCPU).to_vector<double>();
        const std::vector<int64_t> iv = idx.to_vector<int64_t>();
        for (int64_t p = 0; p < 8; ++p) {
          const int64_t r = iv[p], c = p % 4;
          const double want = r >= 0 && r < 6 ? x.to(DType::Float64).to_vector<double>()[r * 7 + c] : 0.0;
          CHECK_MESSAGE(got[p] == want, "gather position " << p);
        }
        const Tensor rows = from_vector<int64_t>({1, -7, 6, 4}, {4}, kCPU).to(it);
        const Tensor s = index_select(xg, 0, rows.to(kGpu));
        check_sync_throws("index_select");
        const Tensor e = embedding(xg, rows.to(kGpu));
        check_sync_throws("embedding");
        for (const Tensor& t : {s, e}) {
          const Tensor h = t.to(kCPU);
          check_same_bits(t.select(0, 0), x.select(0, 1), "row 0 in range");
          check_same_bits(t.select(0, 3), x.select(0, 4), "row 3 in range");
          CHECK(h.select(0, 1).to_vector<double>() == std::vector<double>(7, 0.0));
          CHECK(h.select(0, 2).to_vector<double>() == std::vector<double>(7, 0.0));
        }
      }
      // scatter_add / index_add / embedding_backward: out-of-range positions are skipped; the in-range ones
      // still add up (compared with the CPU op on the in-range positions only).
      {
        const Tensor idx = from_vector<int64_t>({0, 9, 2, -2, 5, 1, 1, 6}, {8}, kCPU).to(it);
        const Tensor src = randn_t({8, 7}, DType::Float32);
        const Tensor y = index_add(xg, 0, idx.to(kGpu), src.to(kGpu));
        check_sync_throws("index_add");
        const Tensor keep = from_vector<int64_t>({0, 2, 4, 5, 6}, {5}, kCPU);
        const Tensor ref = index_add(x.to(DType::Float64), 0, index_select(idx, 0, keep),
                                     index_select(src, 0, keep).to(DType::Float64));
        check_close(y.to(kCPU), ref, kTolF32, "index_add skips the bad positions");
        const Tensor sidx = from_vector<int64_t>({3, -1, 7, 2, 0, 6, 5, 5, 1, 2, 3, 4, 0, 0}, {2, 7}, kCPU).to(it);
        const Tensor ssrc = randn_t({2, 7}, DType::Float32);
        const Tensor z = scatter_add(xg, 0, sidx.to(kGpu), ssrc.to(kGpu));
        check_sync_throws("scatter_add");
        // Reference: the bad positions redirected to row 0 with a zero source.
        const Tensor bad = from_vector<int64_t>({0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}, {2, 7}, kCPU);
        const Tensor sidx_ok = where(bad.to(DType::Bool), zeros({2, 7}, DType::Int64), sidx.to(DType::Int64));
        const Tensor ssrc_ok = where(bad.to(DType::Bool), zeros({2, 7}, DType::Float64), ssrc.to(DType::Float64));
        check_close(z.to(kCPU), scatter_add(x.to(DType::Float64), 0, sidx_ok, ssrc_ok), kTolF32,
                    "scatter_add skips the bad positions");
        const Tensor ids = from_vector<int64_t>({2, 11, 2, -5, 0}, {5}, kCPU).to(it);
        const Tensor g = randn_t({5, 3}, DType::Float32);
        const Tensor dw = embedding_backward(g.to(kGpu), ids.to(kGpu), 4, -1);
        check_sync_throws("embedding_backward");
        const Tensor ekeep = from_vector<int64_t>({0, 2, 4}, {3}, kCPU);
        check_same_bits(dw, embedding_backward(index_select(g, 0, ekeep), index_select(ids, 0, ekeep), 4, -1),
                        "embedding_backward skips the bad positions");
      }
      // The device is usable: valid ops right after give the CPU results, and nothing is left to raise.
      const Tensor good = rand_idx({9}, 6, it);
      check_same_bits(index_select(xg, 0, good.to(kGpu)), index_select(x, 0, good), "index_select after errors");
      check_same_bits(embedding(xg, good.to(kGpu)), embedding(x, good), "embedding after errors");
      const Tensor g9 = randn_t({9, 7}, DType::Float32);
      check_same_bits(embedding_backward(g9.to(kGpu), good.to(kGpu), 6, 2), embedding_backward(g9, good, 6, 2),
                      "embedding_backward after errors");
      CHECK_NOTHROW(cuda::synchronize(0));
    }
  }

  TEST_CASE("cuda embedding and index_select and gather forward and backward do not wait for the device") {
    if (!gpu_available()) return;
    const DType dt = DType::Float32;
    auto gpu_leaf = [&](const Shape& s) {
      Tensor t = randn_t(s, dt).to(kGpu);
      ag::set_requires_grad(t);
      return t;
    };
    const Tensor w = gpu_leaf({1000, 64}), x = gpu_leaf({33, 65}), xg = gpu_leaf({65, 129});
    const Tensor ids = rand_idx({4, 256}, 1000, DType::Int64).to(kGpu);
    const Tensor idx = rand_idx({40}, 65, DType::Int32).to(kGpu);
    const Tensor gidx = rand_idx({65, 3}, 129, DType::Int64).to(kGpu);
    const Tensor up_w = randn_t({4, 256, 64}, dt).to(kGpu), up_x = randn_t({33, 40}, dt).to(kGpu);
    const Tensor up_g = randn_t({65, 3}, dt).to(kGpu);
    auto step = [&] {
      ag::backward(ag::embedding(w, ids, 3), up_w);
      ag::backward(ag::index_select(x, 1, idx), up_x);
      ag::backward(ag::gather(xg, -1, gidx), up_g);
    };
    step();  // warm-up: the caching allocator's first cudaMalloc calls may synchronise
    cuda::synchronize(0);
    const Tensor dw1 = ag::grad(w).to(kCPU);
    step();  // a second warm-up: the gradient accumulation path
    cuda::synchronize(0);
    // Delay the compute stream by 300 ms: a host synchronisation inside the ops would wait for it, so the host-side
    // time of the calls stays far below 300 ms only without one.
    cuda::enqueue_delay(cuda::compute_stream(0), 300);
    const auto t0 = std::chrono::steady_clock::now();
    step();
    const double host_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    cuda::synchronize(0);
    CHECK_MESSAGE(host_ms < 150.0, "forward+backward waited for the device: " << host_ms << " ms on the host");
    // Each step accumulated the same gradient again.
    check_close(ag::grad(w).to(kCPU).to(DType::Float64), mul(dw1.to(DType::Float64), 3.0), kTolF32, "dw thrice");
  }

  TEST_CASE("index check cuda sanitizer case") {
    // Bad indices of every kind through every index-consuming CUDA kernel (run under compute-sanitizer memcheck:
    // it must stay clean); each error is raised at the next synchronisation.
    if (!gpu_available()) return;
    const int64_t kMax = std::numeric_limits<int64_t>::max(), kMin = std::numeric_limits<int64_t>::min();
    const Tensor x = randn_t({5, 3}, DType::Float32).to(kGpu);
    const Tensor bad64 = from_vector<int64_t>({1, kMax, -1, 5, kMin, 4}, {6}, kGpu);
    const Tensor bad32 = from_vector<int32_t>({-2147483647 - 1, 2147483647, 0, 5}, {4}, kGpu);
    for (const Tensor& bad : {bad64, bad32}) {
      INFO("idx " << dtype_name(bad.dtype()));
      const int64_t n = bad.numel();
      check_bad_sequence([&] { (void)embedding(x, bad); }, "embedding");
      check_bad_sequence([&] { (void)embedding(x, bad.view({2, n / 2})); }, "embedding 2-d ids");
      check_bad_sequence([&] { (void)index_select(x, 0, bad); }, "index_select dim 0");
      check_bad_sequence([&] { (void)index_select(x, 1, bad); }, "index_select dim 1");
      check_bad_sequence([&] { (void)gather(x, 0, bad.view({n, 1})); }, "gather dim 0");
      check_bad_sequence([&] { (void)gather(x.transpose(0, 1), 1, bad.view({1, n})); }, "gather strided x");
      check_bad_sequence([&] { (void)index_add(x, 0, bad, randn_t({n, 3}, DType::Float32).to(kGpu)); }, "index_add");
      check_bad_sequence([&] { (void)index_add(x.to(DType::BFloat16), 1, bad, randn_t({5, n}, DType::BFloat16).to(kGpu)); },
                         "index_add bfloat16");
      check_bad_sequence([&] { (void)scatter_add(x, 0, bad.view({n, 1}), randn_t({n, 1}, DType::Float32).to(kGpu)); },
                         "scatter_add");
      check_bad_sequence(
          [&] {
            Tensor dst = x.clone();
            scatter_add_(dst, 1, bad.view({1, n}), randn_t({1, n}, DType::Float32).to(kGpu));
          },
          "scatter_add_");
      check_bad_sequence([&] { (void)embedding_backward(randn_t({n, 3}, DType::Float32).to(kGpu), bad, 5, 1); },
                         "embedding_backward");
      // Through autograd: the backward of embedding / index_select / gather with the same bad indices.
      Tensor w = x.clone();
      ag::set_requires_grad(w);
      check_bad_sequence([&] { ag::backward(ag::embedding(w, bad), randn_t({n, 3}, DType::Float32).to(kGpu)); },
                         "ag embedding");
      check_bad_sequence([&] { ag::backward(ag::index_select(w, 0, bad), randn_t({n, 3}, DType::Float32).to(kGpu)); },
                         "ag index_select");
      check_bad_sequence(
          [&] { ag::backward(ag::gather(w, 0, bad.view({n, 1})), randn_t({n, 1}, DType::Float32).to(kGpu)); },
          "ag gather");
    }
    // Afterwards the device works.
    const Tensor ok = from_vector<int64_t>({4, 0, 2}, {3}, kGpu);
    check_same_bits(embedding(x, ok), embedding(x.to(kCPU), ok.to(kCPU)), "embedding after the errors");
    CHECK_NOTHROW(cuda::synchronize(0));
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
