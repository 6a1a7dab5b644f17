// Tensor core: creation, views (which share storage), copies, casts, printing, item, and error messages.
#include <cmath>

#include "tensor/cuda/backend.h"
#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

TEST_CASE("creation: empty, zeros, ones, full, arange, from_vector, scalar") {
  for (DType dt : {DType::Float32, DType::Float64, DType::BFloat16, DType::Int32, DType::Int64}) {
    INFO(dtype_name(dt));
    Tensor z = zeros({2, 3}, dt);
    CHECK(z.shape() == Shape{2, 3});
    CHECK(z.dtype() == dt);
    CHECK(z.is_contiguous());
    CHECK(z.to_vector<double>() == std::vector<double>(6, 0.0));
    CHECK(ones({4}, dt).to_vector<double>() == std::vector<double>(4, 1.0));
    CHECK(full({2}, 3.0, dt).to_vector<double>() == std::vector<double>{3.0, 3.0});
  }
  CHECK(arange(0, 5).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(arange(1, 2, 0.25, DType::Float64).to_vector<double>() == std::vector<double>{1, 1.25, 1.5, 1.75});
  CHECK(arange(5, 0, -2).to_vector<int64_t>() == std::vector<int64_t>{5, 3, 1});
  CHECK(arange(3, 3).numel() == 0);
  Tensor s = scalar_tensor(2.5, DType::Float64);
  CHECK(s.dim() == 0);
  CHECK(s.numel() == 1);
  CHECK(s.item() == 2.5);
  Tensor e = empty({0, 4});
  CHECK(e.numel() == 0);
  Tensor f = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(f.to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5, 6});
  CHECK(from_vector<float>({1.5f, 2.5f}, {2}, DType::Float64).dtype() == DType::Float64);
  check_throws_with([] { from_vector<float>({1, 2, 3}, {2, 2}); }, {"from_vector", "3 values", "[2, 2]"});
  check_throws_with([] { empty({2, -1}); }, {"negative", "[2, -1]"});
}

TEST_CASE("views share storage: view, reshape, slice, select, narrow, transpose, permute, expand, (un)squeeze") {
  Tensor x = arange(0, 24, 1, DType::Float64).view({2, 3, 4});
  auto same_storage = [&](const Tensor& v) { return v.storage() == x.storage(); };
  CHECK(same_storage(x.view({6, 4})));
  CHECK(same_storage(x.reshape({4, 6})));
  CHECK(same_storage(x.slice(2, 1, 3)));
  CHECK(same_storage(x.select(1, 2)));
  CHECK(same_storage(x.transpose(0, 2)));
  CHECK(same_storage(x.permute({2, 0, 1})));
  CHECK(same_storage(x.unsqueeze(1)));
  CHECK(same_storage(x.select(0, 1).unsqueeze(0).squeeze(0)));
  // Values through the views, against index arithmetic on arange (value = 12 i + 4 j + k).
  CHECK(x.slice(2, 1, 4, 2).to_vector<double>() == std::vector<double>{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23});
  CHECK(x.select(1, 2).to_vector<double>() == std::vector<double>{8, 9, 10, 11, 20, 21, 22, 23});
  CHECK(x.select(-1, -1).to_vector<double>() == std::vector<double>{3, 7, 11, 15, 19, 23});
  CHECK(x.narrow(0, 1, 1).shape() == Shape{1, 3, 4});
  Tensor t = x.transpose(0, 2);  // (4, 3, 2): t[k][j][i] = 12 i + 4 j + k
  CHECK(t.shape() == Shape{4, 3, 2});
  CHECK_FALSE(t.is_contiguous());
  CHECK(t.contiguous().to_vector<double>()[1] == 12.0);
  CHECK(t.contiguous().is_contiguous());
  Tensor p = x.permute({1, 2, 0});  // p[j][k][i]
  CHECK(p.contiguous().to_vector<double>()[0 * 8 + 1 * 2 + 1] == 13.0);
  Tensor ex = from_vector<double>({1, 2, 3}, {3, 1}).expand({2, 3, 4});
  CHECK(ex.has_expanded_dims());
  CHECK(ex.contiguous().to_vector<double>()[4 * 3 + 4 * 2 + 3] == 3.0);
  CHECK(x.flatten().shape() == Shape{24});
  CHECK(x.flatten(1).shape() == Shape{2, 12});
  CHECK(x.reshape({-1, 4}).shape() == Shape{6, 4});
  // Writing through a view writes the base.
  Tensor v = x.select(0, 0).select(0, 0);
  v.fill_(-1.0);
  CHECK(x.to_vector<double>()[3] == -1.0);
  CHECK(x.to_vector<double>()[4] == 4.0);
}

TEST_CASE("reshape of a non-contiguous tensor copies, view refuses") {
  Tensor x = arange(0, 6, 1, DType::Float32).view({2, 3}).transpose(0, 1);
  Tensor r = x.reshape({6});
  CHECK(r.storage() != x.storage());
  CHECK(r.to_vector<float>() == std::vector<float>{0, 3, 1, 4, 2, 5});
  check_throws_with([&] { x.view({6}); }, {"view", "not contiguous", "reshape"});
}

TEST_CASE("view errors name the op and the shapes") {
  Tensor x = zeros({2, 3});
  check_throws_with([&] { x.view({4, 2}); }, {"view", "[2, 3]", "[4, 2]"});
  check_throws_with([&] { x.transpose(0, 2); }, {"transpose", "dim 2", "rank 2"});
  check_throws_with([&] { x.select(1, 3); }, {"select", "index 3", "size 3"});
  check_throws_with([&] { x.expand({4, 3}); }, {"expand", "[2, 3]", "[4, 3]"});
  check_throws_with([&] { x.squeeze(0); }, {"squeeze", "size 2"});
  check_throws_with([&] { x.permute({0, 0}); }, {"permute", "repeated"});
  check_throws_with([&] { x.narrow(1, 2, 2); }, {"narrow", "size 3"});
  check_throws_with([&] { x.item(); }, {"item", "[2, 3]"});
}

TEST_CASE("copies and casts between all dtypes round-trip exactly where representable") {
  Tensor src = from_vector<double>({-3, -1, 0, 1, 2, 100}, {2, 3});
  for (DType dt : {DType::Float32, DType::Float64, DType::BFloat16, DType::Int32, DType::Int64}) {
    INFO(dtype_name(dt));
    Tensor c = src.to(dt);
    CHECK(c.dtype() == dt);
    CHECK(c.to(DType::Float64).to_vector<double>() == src.to_vector<double>());
  }
  CHECK(src.to(DType::Bool).to(DType::Int64).to_vector<int64_t>() == std::vector<int64_t>{1, 1, 0, 1, 1, 1});
  // float -> int truncates toward zero; bfloat16 rounds to nearest even.
  CHECK(from_vector<double>({-1.7, 2.9}, {2}).to(DType::Int64).to_vector<int64_t>() == std::vector<int64_t>{-1, 2});
  CHECK(from_vector<float>({1.00390625f}, {1}).to(DType::BFloat16).to_vector<float>()[0] == 1.0f);    // tie -> even
  CHECK(from_vector<float>({1.01171875f}, {1}).to(DType::BFloat16).to_vector<float>()[0] == 1.015625f);  // tie -> even
  CHECK(std::isnan(from_vector<float>({NAN}, {1}).to(DType::BFloat16).to_vector<float>()[0]));
  // copy_ broadcasts and casts into a strided destination.
  Tensor dst = zeros({3, 4}, DType::Float64).transpose(0, 1);
  dst.copy_(from_vector<float>({1, 2, 3}, {3}));
  CHECK(dst.contiguous().to_vector<double>() == std::vector<double>{1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3});
  check_throws_with([&] { dst.copy_(zeros({2})); }, {"copy_", "[2]", "[4, 3]"});
  CHECK(dst.clone().storage() != dst.storage());
}

TEST_CASE("printing shows shape, dtype, device and elided values") {
  Tensor x = arange(0, 100, 1, DType::Float32).view({10, 10});
  std::string s = fmt::format("{}", x);
  CHECK(s.find("shape=[10, 10]") != std::string::npos);
  CHECK(s.find("dtype=float32") != std::string::npos);
  CHECK(s.find("device=cpu") != std::string::npos);
  CHECK(s.find("...") != std::string::npos);
  CHECK(s.find("99") != std::string::npos);
  CHECK(fmt::format("{}", scalar_tensor(7, DType::Int64)).find("values=7") != std::string::npos);
  CHECK(fmt::format("{}", Tensor()) == "Tensor(undefined)");
}

TEST_CASE("devices parse and an unusable CUDA device is a clear error") {
  CHECK(Device("cpu").is_cpu());
  CHECK(Device("cuda:3").index == 3);
  CHECK(Device("cuda").is_cuda());
  check_throws_with([] { Device("gpu0"); }, {"unknown device", "gpu0"});
  check_throws_with([] { Device("cuda:x"); }, {"unknown device"});
  // Whatever the build and machine, a tensor on a device that does not exist is an exception naming it.
  const int n = cuda::device_count();
  const std::string missing = fmt::format("cuda:{}", n);
  check_throws_with([&] { zeros({2}, DType::Float32, Device(missing)); }, {missing});
  check_throws_with([&] { zeros({2}).to(Device(missing)); }, {missing});
  CHECK(dtype_from_name("bf16") == DType::BFloat16);
  check_throws_with([] { dtype_from_name("float16"); }, {"unknown dtype", "float16"});
}

TEST_CASE("undefined tensors and dtype mismatches give clear errors") {
  Tensor u;
  check_throws_with([&] { (void)u.shape(); }, {"undefined Tensor"});
  Tensor f = zeros({2}, DType::Float32);
  check_throws_with([&] { (void)f.data<double>(); }, {"data<float64>", "float32"});
}
