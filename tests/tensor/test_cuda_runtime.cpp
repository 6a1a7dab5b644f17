// gpu-labelled: the CUDA runtime, the caching allocator, host<->device copies, casts, fill, printing, the
// Philox stream on the device. Each test skips (with a message) without a CUDA device; HYDRA_REQUIRE_CUDA=1
// turns that into a failure.
#include "tensor/cuda/backend.h"
#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

namespace {
const Device kGpu("cuda:0");
}

TEST_SUITE("gpu") {  // built into test_tensor_gpu (tests/CMakeLists.txt), ctest label gpu
  TEST_CASE("cuda runtime: devices are visible and described by name") {
    if (!gpu_available()) return;
    const int n = cuda::device_count();
    CHECK(cuda::is_built());
    for (int i = 0; i < n; ++i) {
      std::string name = cuda::device_name(i);
      INFO("cuda:" << i << " " << name);
      CHECK(name.find("sm_") != std::string::npos);
    }
    check_throws_with([&] { cuda::device_name(n); }, {"no such device"});
    check_throws_with([&] { zeros({2}, DType::Float32, Device(DeviceType::CUDA, n)); }, {"cuda:", "no such device"});
  }

  TEST_CASE("cuda allocator: steady-state reuse, statistics and the out-of-memory message") {
    if (!gpu_available()) return;
    cuda::synchronize(0);
    auto step = [] {
      std::vector<Tensor> live;
      for (int64_t n : {1, 1000, 4096, 1 << 20, 3 << 20, 12345})
        live.push_back(empty({n}, DType::Float32, kGpu));
      live.push_back(empty({77, 3}, DType::BFloat16, kGpu));
    };
    step();  // warm the cache
    const cuda::MemoryStats before = cuda::memory_stats(0);
    for (int i = 0; i < 50; ++i) step();
    const cuda::MemoryStats after = cuda::memory_stats(0);
    CHECK(after.num_device_mallocs == before.num_device_mallocs);
    CHECK(after.num_allocations == before.num_allocations + 50 * 7);
    CHECK(after.num_cache_hits == before.num_cache_hits + 50 * 7);
    CHECK(after.in_use_bytes == before.in_use_bytes);
    {
      Tensor big = empty({64 << 20}, DType::Float32, kGpu);  // 256 MiB
      const cuda::MemoryStats s = cuda::memory_stats(0);
      CHECK(s.in_use_bytes >= after.in_use_bytes + (std::size_t{256} << 20));
      CHECK(s.peak_in_use_bytes >= s.in_use_bytes);
      CHECK(s.reserved_bytes >= s.in_use_bytes);
    }
    CHECK(cuda::memory_stats(0).in_use_bytes == after.in_use_bytes);
    cuda::empty_cache(0);
    CHECK(cuda::memory_stats(0).reserved_bytes == cuda::memory_stats(0).in_use_bytes);
    check_throws_with([] { empty({int64_t{1} << 50}, DType::Float32, kGpu); },
                      {"out of memory", "cuda:0", "requested", "in use", "reserved"});
  }

  TEST_CASE("cuda copies: host round trips for every dtype, large staged copies, strided sources and targets") {
    if (!gpu_available()) return;
    for (DType dt : {DType::Float32, DType::Float64, DType::BFloat16, DType::Int32, DType::Int64}) {
      INFO(dtype_name(dt));
      Tensor h = mul(randn_t({37, 11}), 50.0).to(dt);
      Tensor d = h.to(kGpu);
      CHECK(d.device() == kGpu);
      CHECK(d.to(kCPU).to_vector<double>() == h.to_vector<double>());
      // Strided source on the device, cast on the device.
      Tensor t = d.transpose(0, 1).to(DType::Float64);
      CHECK(t.to(kCPU).to_vector<double>() == h.transpose(0, 1).contiguous().to_vector<double>());
    }
    // Above the staging threshold (4 MiB): 3M float32 + an odd tail.
    Tensor big = randn_t({3 * 1024 * 1024 + 7}, DType::Float32);
    CHECK(big.to(kGpu).to(kCPU).to_vector<float>() == big.to_vector<float>());
    // Host strided/broadcast source into a device tensor, and a device tensor into a strided device view.
    Tensor dst = zeros({4, 5}, DType::Float32, kGpu);
    dst.copy_(from_vector<float>({1, 2, 3, 4, 5}, {5}));
    CHECK(dst.select(0, 3).to(kCPU).to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5});
    Tensor dview = zeros({5, 4}, DType::Float64, kGpu).transpose(0, 1);  // (4, 5) strided
    dview.copy_(dst);
    CHECK(dview.to(kCPU).contiguous().to_vector<double>() == dst.to(kCPU).to(DType::Float64).to_vector<double>());
    dview.fill_(2.5);
    CHECK(dview.to(kCPU).to_vector<double>() == std::vector<double>(20, 2.5));
    CHECK(full({3}, 7, DType::Int64, kGpu).to(kCPU).to_vector<int64_t>() == std::vector<int64_t>{7, 7, 7});
    CHECK(from_vector<float>({1.5f}, {1}, kGpu).item() == 1.5);
    std::string s = fmt::format("{}", arange(0, 4, 1, DType::Float32, kGpu));
    CHECK(s.find("device=cuda:0") != std::string::npos);
    CHECK(s.find("values=[0, 1, 2, 3]") != std::string::npos);
  }

  TEST_CASE("cuda philox: raw words identical to the CPU, uniforms bit-identical, normals equal to rounding") {
    if (!gpu_available()) return;
    const uint64_t seed = base_seed();
    INFO("seed " << seed);
    Generator gc(seed), gg(seed);
    CHECK(random_bits(gc, 100003).to_vector<int64_t>() == random_bits(gg, 100003, kGpu).to(kCPU).to_vector<int64_t>());
    for (DType dt : {DType::Float32, DType::Float64, DType::BFloat16}) {
      INFO(dtype_name(dt));
      CHECK(rand({1001}, gc, dt).to_vector<double>() == rand({1001}, gg, dt, kGpu).to(kCPU).to_vector<double>());
      std::vector<double> a = randn({4097}, gc, dt).to_vector<double>();
      std::vector<double> b = randn({4097}, gg, dt, kGpu).to(kCPU).to_vector<double>();
      double worst = 0;
      for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
      // float64 math on both sides: equal to a few ulps; rounded to the dtype, at most one unit in its last place.
      CHECK(worst <= (dt == DType::Float64 ? 1e-13 : dt == DType::Float32 ? 1e-6 : 4e-2));
    }
    CHECK(randint(-5, 9, {999}, gc).to_vector<int64_t>() == randint(-5, 9, {999}, gg, DType::Int64, kGpu).to(kCPU).to_vector<int64_t>());
    CHECK(gc.offset() == gg.offset());
  }

  TEST_CASE("cuda allocator: a block used on another stream is reused only after that stream's work") {
    if (!gpu_available()) return;
    cuda::StreamHandle side = cuda::create_stream(0);
    const int64_t n = 3 << 20;  // 12 MiB of float32: its own size class
    void* first = nullptr;
    {
      Tensor t = empty({n}, DType::Float32, kGpu);
      first = t.raw_data();
      cuda::enqueue_delay(side, 300);  // work "on" the side stream that outlives t's handle
      cuda::record_stream(t, side);
    }
    CHECK(cuda::num_pending_frees(0) == 1);
    {
      Tensor u = empty({n}, DType::Float32, kGpu);  // must not get the block the side stream still uses
      CHECK(u.raw_data() != first);
    }
    cuda::StreamHandle s = side;
    cuda::Event done(0, false);
    done.record(s);
    CHECK_FALSE(done.done());  // the 300 ms delay is still ahead of it
    done.synchronize();
    CHECK(done.done());
    CHECK(cuda::num_pending_frees(0) == 0);
    bool reused = false;
    std::vector<Tensor> keep;
    for (int i = 0; i < 4 && !reused; ++i) {  // now the block is back in the pool
      keep.push_back(empty({n}, DType::Float32, kGpu));
      reused = keep.back().raw_data() == first;
    }
    CHECK(reused);
    keep.clear();
    cuda::synchronize(0);
    cuda::destroy_stream(side);
  }

  TEST_CASE("cuda errors: mixing devices names both devices and shapes") {
    if (!gpu_available()) return;
    Tensor a = zeros({2, 3}, DType::Float32, kGpu), b = zeros({2, 3});
    check_throws_with([&] { add(a, b); }, {"add", "cuda:0", "cpu", "[2, 3]"});
    check_throws_with([&] { matmul(a, b.transpose(0, 1)); }, {"matmul", "cuda:0", "cpu"});
  }
}
