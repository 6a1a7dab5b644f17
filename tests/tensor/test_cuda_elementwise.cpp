// gpu-labelled: elementwise ops and matmul on CUDA against float64 references (the CPU float64 kernels, which
// the CPU tests check against plain loops), odd sizes, broadcasting and strided inputs. Outputs are poisoned by
// the allocator (see gpu_available), so an unwritten element is NaN and fails.
#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;

namespace {
const Device kGpu("cuda:0");

// The float64 CPU result of f on the float64 upcast of the (possibly bf16-rounded) inputs.
Tensor ref64(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& gpu_inputs) {
  std::vector<Tensor> h;
  for (const Tensor& t : gpu_inputs) h.push_back(host64(t));
  return f(h);
}
}  // namespace

TEST_SUITE("gpu") {  // built into test_tensor_gpu (tests/CMakeLists.txt), ctest label gpu
  TEST_CASE("cuda unary ops match float64 for every floating dtype, contiguous, strided and odd sizes") {
    if (!gpu_available()) return;
    const UnaryOp ops[] = {UnaryOp::Neg, UnaryOp::Exp, UnaryOp::Log, UnaryOp::Sqrt, UnaryOp::Rsqrt,
                           UnaryOp::Sigmoid, UnaryOp::Silu, UnaryOp::Tanh, UnaryOp::Relu, UnaryOp::Abs,
                           UnaryOp::Square, UnaryOp::Reciprocal, UnaryOp::Sin, UnaryOp::Cos};
    for (UnaryOp op : ops) {
      for (DType dt : {DType::Float32, DType::BFloat16, DType::Float64}) {
        for (Shape s : {Shape{1}, Shape{3, 5}, Shape{257, 1031}}) {
          INFO(unary_op_name(op) << " " << dtype_name(dt) << " " << shape_str(s));
          Tensor x = rand_t(s, 0.2, 2.0, dt).to(kGpu);
          auto f = [op](const std::vector<Tensor>& in) { return unary(op, in[0]); };
          check_close(unary(op, x).to(kCPU), ref64(f, {x}), tolerance_for(dt));
          if (s.size() == 2) {
            Tensor xt = x.transpose(0, 1);
            check_close(unary(op, xt).to(kCPU), ref64(f, {xt}), tolerance_for(dt), "strided");
          }
        }
      }
    }
  }

  TEST_CASE("cuda unary_backward of silu and sigmoid matches float64 on odd sizes and strided inputs") {
    if (!gpu_available()) return;
    for (UnaryOp op : {UnaryOp::Silu, UnaryOp::Sigmoid}) {
      for (DType dt : {DType::Float32, DType::BFloat16, DType::Float64}) {
        for (Shape s : {Shape{1}, Shape{3, 5}, Shape{257, 1031}}) {
          INFO(unary_op_name(op) << " " << dtype_name(dt) << " " << shape_str(s));
          std::vector<double> x0 = mul(randn_t(s), 3.0).to_vector<double>();
          for (double& v : x0) v += (v > -1.7 && v < -0.9) ? 2.5 : 0.0;  // away from the root of silu' (−1.278)
          Tensor x = from_vector(x0, s).to(dt).to(kGpu), g = randn_t(s).to(dt).to(kGpu);
          auto f = [op](const std::vector<Tensor>& in) { return unary_backward(op, in[0], in[1]); };
          check_close(unary_backward(op, g, x).to(kCPU), ref64(f, {g, x}), tolerance_for(dt));
          if (s.size() == 2) {
            Tensor gt = g.transpose(0, 1), xt = x.transpose(0, 1);
            check_close(unary_backward(op, gt, xt).to(kCPU), ref64(f, {gt, xt}), tolerance_for(dt), "strided");
          }
        }
      }
    }
  }

  TEST_CASE("cuda binary ops, comparisons, where: broadcasting and strided inputs") {
    if (!gpu_available()) return;
    const BinaryOp ops[] = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div,
                            BinaryOp::Pow, BinaryOp::Maximum, BinaryOp::Minimum};
    const std::vector<std::pair<Shape, Shape>> shapes = {
        {{1}, {1}}, {{1000003}, {1000003}}, {{33, 65}, {65}}, {{5, 1, 7}, {3, 1}}, {{}, {4, 4}}};
    for (BinaryOp op : ops) {
      for (DType dt : {DType::Float32, DType::BFloat16, DType::Float64}) {
        for (auto& [sa, sb] : shapes) {
          INFO(binary_op_name(op) << " " << dtype_name(dt) << " " << shape_str(sa) << " " << shape_str(sb));
          Tensor a = rand_t(sa, 0.5, 2.0, dt).to(kGpu), b = rand_t(sb, -1.5, 1.5, dt).to(kGpu);
          auto f = [op](const std::vector<Tensor>& in) { return binary(op, in[0], in[1]); };
          check_close(binary(op, a, b).to(kCPU), ref64(f, {a, b}), tolerance_for(dt));
        }
      }
    }
    Tensor a = randn_t({40, 30}, DType::Float32).to(kGpu), b = randn_t({30, 40}, DType::Float32).to(kGpu);
    Tensor bt = b.transpose(0, 1);
    check_close(mul(a, bt).to(kCPU), ref64([](const std::vector<Tensor>& in) { return mul(in[0], in[1]); }, {a, bt}),
                kTolF32, "strided operand");
    Tensor gt = compare(CompareOp::Gt, a, bt);
    CHECK(gt.to(kCPU).to_vector<int64_t>() == compare(CompareOp::Gt, a.to(kCPU), bt.to(kCPU)).to_vector<int64_t>());
    Tensor w = where(gt, a, scalar_tensor(-1.0, DType::Float32, kGpu));
    CHECK(w.to(kCPU).to_vector<float>() ==
          where(gt.to(kCPU), a.to(kCPU), scalar_tensor(-1.0, DType::Float32)).to_vector<float>());
    Tensor ia = from_vector<int64_t>({1, -2, 3}, {3}, kGpu), ib = from_vector<int64_t>({4, 5, -6}, {3}, kGpu);
    CHECK(mul(ia, ib).to(kCPU).to_vector<int64_t>() == std::vector<int64_t>{4, -10, -18});
    Tensor acc = zeros({3, 4}, DType::Float32, kGpu);
    add_(acc, from_vector<float>({1, 2, 3, 4}, {4}, kGpu), 2.0);
    CHECK(acc.to(kCPU).select(0, 2).to_vector<float>() == std::vector<float>{2, 4, 6, 8});
  }

  TEST_CASE("cuda elementwise rows layout: last-dim slices, head transposes, strided copy_ targets, odd widths") {
    if (!gpu_available()) return;
    for (DType dt : {DType::Float32, DType::BFloat16, DType::Float64}) {
      for (int64_t D : {64, 5}) {  // packs / one element per thread
        INFO(dtype_name(dt) << " D=" << D);
        const int64_t B = 2, T = 9, H = 3, I = H * D;
        const Tensor fused = randn_t({B, T, 3 * I}, dt).to(kGpu);
        const Tensor a = fused.slice(-1, I, 2 * I), b = fused.slice(-1, 2 * I, 3 * I);  // (B, T, I), row stride 3I
        const Tensor odd = fused.slice(-1, 1, I + 1);                                     // misaligned start
        const Tensor heads = randn_t({B, T, H, D}, dt).to(kGpu).transpose(1, 2);           // (B, H, T, D) view
        const Tensor heads2 = a.reshape({B, T, H, D}).transpose(1, 2);                    // slice, then transpose
        auto f_mul = [](const std::vector<Tensor>& in) { return mul(in[0], in[1]); };
        auto f_silu = [](const std::vector<Tensor>& in) { return unary(UnaryOp::Silu, in[0]); };
        check_close(mul(a, b).to(kCPU), ref64(f_mul, {a, b}), tolerance_for(dt), "slice * slice");
        check_close(mul(odd, b).to(kCPU), ref64(f_mul, {odd, b}), tolerance_for(dt), "misaligned slice");
        check_close(unary(UnaryOp::Silu, a).to(kCPU), ref64(f_silu, {a}), tolerance_for(dt), "silu(slice)");
        check_close(unary(UnaryOp::Silu, heads).to(kCPU), ref64(f_silu, {heads}), tolerance_for(dt), "transpose");
        check_close(mul(heads, heads2).to(kCPU), ref64(f_mul, {heads, heads2}), tolerance_for(dt), "two layouts");
        check_close(heads.contiguous().to(kCPU), host64(heads), tolerance_for(dt), "contiguous()");
        const Tensor bias = randn_t({I}, dt).to(kGpu);
        check_close(add(a, bias).to(kCPU), ref64([](const std::vector<Tensor>& in) { return add(in[0], in[1]); },
                                                 {a, bias}),
                    tolerance_for(dt), "row broadcast");
        Tensor dst = zeros({B, T, 2, H, D}, dt, kGpu);
        dst.select(2, 1).copy_(heads.transpose(1, 2));  // strided target, transposed source
        Tensor want = zeros({B, T, 2, H, D}, DType::Float64);
        want.select(2, 1).copy_(host64(heads).transpose(1, 2));
        check_close(dst.to(kCPU), want, tolerance_for(dt), "copy_ into a slice");
        // five outer dims after collapsing: more than the rows layout takes, the general path
        const Tensor deep = randn_t({2, 3, 2, 3, 2, D}, dt).to(kGpu).permute({4, 3, 2, 1, 0, 5});
        check_close(unary(UnaryOp::Neg, deep).to(kCPU),
                    ref64([](const std::vector<Tensor>& in) { return unary(UnaryOp::Neg, in[0]); }, {deep}),
                    tolerance_for(dt), "deep permute");
      }
    }
  }

  TEST_CASE("cuda matmul (cuBLASLt): transposes, batches with broadcasting, strided views, dtypes, model shapes") {
    if (!gpu_available()) return;
    for (DType dt : {DType::Float32, DType::BFloat16, DType::Float64}) {
      for (Trans ta : {Trans::No, Trans::Yes}) {
        for (Trans tb : {Trans::No, Trans::Yes}) {
          for (auto [M, K, N] : std::vector<std::array<int64_t, 3>>{{1, 1, 1}, {7, 13, 5}, {129, 67, 255}}) {
            INFO(dtype_name(dt) << " ta=" << (ta == Trans::Yes) << " tb=" << (tb == Trans::Yes) << " " << M << "x"
                                << K << "x" << N);
            Tensor a = randn_t(ta == Trans::Yes ? Shape{K, M} : Shape{M, K}, dt).to(kGpu);
            Tensor b = randn_t(tb == Trans::Yes ? Shape{N, K} : Shape{K, N}, dt).to(kGpu);
            auto f = [ta, tb](const std::vector<Tensor>& in) { return matmul(in[0], in[1], ta, tb); };
            check_close(matmul(a, b, ta, tb).to(kCPU), ref64(f, {a, b}), tolerance_for(dt));
          }
        }
      }
    }
    auto f = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); };
    Tensor a = randn_t({3, 1, 9, 6}, DType::Float32).to(kGpu), b = randn_t({5, 6, 4}, DType::Float32).to(kGpu);
    check_close(matmul(a, b).to(kCPU), ref64(f, {a, b}), kTolF32, "broadcast batch");
    Tensor big = randn_t({4, 10, 8}, DType::Float32).to(kGpu);
    Tensor sl = big.slice(1, 1, 9, 2).transpose(1, 2);  // neither row- nor column-major
    Tensor rhs = randn_t({4, 4, 3}, DType::Float32).to(kGpu);
    check_close(matmul(sl, rhs).to(kCPU), ref64(f, {sl, rhs}), kTolF32, "strided");
    Tensor off = randn_t({65, 33}, DType::BFloat16).to(kGpu).slice(0, 1, 65);  // offset pointer (alignment 2 bytes)
    Tensor w = randn_t({33, 17}, DType::BFloat16).to(kGpu);
    check_close(matmul(off, w).to(kCPU), ref64(f, {off, w}), kTolBF16, "misaligned offset");
    // A model shape: (B·T, C) x (3C, C)^T in bf16.
    Tensor x = randn_t({512, 768}, DType::BFloat16).to(kGpu), wq = mul(randn_t({2304, 768}), 0.05).to(DType::BFloat16).to(kGpu);
    auto g = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1], Trans::No, Trans::Yes); };
    check_close(matmul(x, wq, Trans::No, Trans::Yes).to(kCPU), ref64(g, {x, wq}), kTolBF16, "model shape");
    CHECK(matmul(zeros({3, 0}, DType::Float32, kGpu), zeros({0, 2}, DType::Float32, kGpu)).to(kCPU).to_vector<float>() ==
          std::vector<float>(6, 0.0f));
  }
}

TEST_SUITE("gpu") {
  TEST_CASE("cuda linear: bias fused in the cuBLASLt epilogue and the unaligned-bias fallback") {
    if (!gpu_available()) return;
    for (DType dt : {DType::Float32, DType::BFloat16}) {
      INFO(dtype_name(dt));
      Tensor x = randn_t({3, 37, 48}, dt).to(kGpu), w = randn_t({40, 48}, dt).to(kGpu);
      Tensor bias_full = randn_t({41}, dt).to(kGpu);
      for (bool aligned : {true, false}) {
        Tensor b = aligned ? bias_full.slice(0, 0, 40) : bias_full.slice(0, 1, 41);  // offset 1: not 16-byte aligned
        auto f = [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); };
        check_close(linear(x, w, b).to(kCPU), ref64(f, {x, w, b}), tolerance_for(dt), aligned ? "aligned" : "unaligned");
      }
    }
    // Autograd through linear on the GPU against float64 CPU gradients.
    Tensor xh = randn_t({6, 8}), wh = randn_t({5, 8}), bh = randn_t({5}), gh = randn_t({6, 5});
    auto grads = [&](const Device& dev, DType dt) {
      Tensor x = xh.to(dt).to(dev), w = wh.to(dt).to(dev), b = bh.to(dt).to(dev);
      ag::set_requires_grad(x), ag::set_requires_grad(w), ag::set_requires_grad(b);
      ag::backward(ag::linear(x, w, b), gh.to(dt).to(dev));
      return std::vector<Tensor>{ag::grad(x).to(kCPU), ag::grad(w).to(kCPU), ag::grad(b).to(kCPU)};
    };
    std::vector<Tensor> g = grads(kGpu, DType::Float32), r = grads(kCPU, DType::Float64);
    for (int i = 0; i < 3; ++i) check_close(g[i], r[i], kTolF32, "grad");
  }
}
