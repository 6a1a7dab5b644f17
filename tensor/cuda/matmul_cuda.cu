// matmul on CUDA through cuBLASLt: C = op(A)·op(B), row-major tensors, any batch shape.
//
// cuBLASLt is column-major, so the row-major product C (M×N) is computed as its column-major transpose
// Cᵀ = op(B)ᵀ·op(A)ᵀ: B's memory becomes cuBLASLt's A operand and A's memory its B operand, each with the
// transpose flag that matches its strides (a matrix with unit stride along either of its dims is read in
// place). Batches are one strided-batched call when the batch offsets of A and B are linear in one flattened
// batch index (stride 0 for broadcast dims included), otherwise one call per batch.
// dtypes: float32 (exact float32 compute, TF32 only when set_allow_tf32(true)), bfloat16 in/out with float32
// accumulation, float64. Plans (descriptors, layouts and the heuristic's algorithm) are cached per shape key
// so a steady-state training step makes no heuristic queries. FLOPs: 2·batch·M·N·K.
#include <map>
#include <mutex>
#include <tuple>

#include "tensor/cuda/common.cuh"
#include "tensor/cuda/ops.h"
#include "tensor/dispatch.h"
#include "tensor/ops/matmul_layout.h"

namespace hydra::cuda {
namespace {

// cuBLASLt's view of Eᵀ for an effective operand E (R×C): either layout (C×R, ld = rs) untransposed when
// E's columns are unit-stride, or layout (R×C, ld = cs) transposed when its rows are.
struct LtOperand {
  cublasOperation_t op;
  uint64_t rows, cols;
  int64_t ld;
};

bool lt_operand(const MatView& e, LtOperand& out) {
  if (e.cs == 1 && e.rs >= e.cols) {
    out = {CUBLAS_OP_N, static_cast<uint64_t>(e.cols), static_cast<uint64_t>(e.rows), std::max<int64_t>(e.rs, 1)};
    return true;
  }
  if (e.rs == 1 && e.cs >= e.rows) {
    out = {CUBLAS_OP_T, static_cast<uint64_t>(e.rows), static_cast<uint64_t>(e.cols), std::max<int64_t>(e.cs, 1)};
    return true;
  }
  return false;
}

int alignment_of(const void* p) {
  const auto v = reinterpret_cast<uintptr_t>(p);
  int a = 256;
  while (a > 1 && v % a != 0) a /= 2;
  return a;
}

bool g_allow_tf32 = false;

struct PlanKey {
  int device;
  DType dtype;
  int opa, opb;
  uint64_t ar, ac, br, bc, m, n;
  int64_t lda, ldb, ldc, batch, sa, sb, sc;
  int ala, alb, alc;
  bool tf32;
  bool bias;
  auto tie() const {
    return std::tie(device, dtype, opa, opb, ar, ac, br, bc, m, n, lda, ldb, ldc, batch, sa, sb, sc, ala, alb, alc,
                    tf32, bias);
  }
  bool operator<(const PlanKey& o) const { return tie() < o.tie(); }
};

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

std::mutex g_plan_mu;
std::map<PlanKey, Plan> g_plans;

template <typename What>
const Plan& get_plan(const PlanKey& k, const What& what_fn) {
  std::lock_guard<std::mutex> lock(g_plan_mu);
  auto it = g_plans.find(k);
  if (it != g_plans.end()) return it->second;
  const std::string what = what_fn();
  Plan p;
  cudaDataType_t dt;
  cublasComputeType_t ct;
  cudaDataType_t scale;
  switch (k.dtype) {
    case DType::Float32:
      dt = CUDA_R_32F;
      ct = k.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
      scale = CUDA_R_32F;
      break;
    case DType::BFloat16:
      dt = CUDA_R_16BF;
      ct = CUBLAS_COMPUTE_32F;
      scale = CUDA_R_32F;
      break;
    default:
      dt = CUDA_R_64F;
      ct = CUBLAS_COMPUTE_64F;
      scale = CUDA_R_64F;
      break;
  }
  HYDRA_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, ct, scale), what);
  cublasOperation_t opa = static_cast<cublasOperation_t>(k.opa), opb = static_cast<cublasOperation_t>(k.opb);
  HYDRA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)), what);
  HYDRA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)), what);
  if (k.bias) {
    // Column-major D (N×M) = our Cᵀ: a bias over D's rows is a bias over our columns, broadcast down the rows.
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    HYDRA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)), what);
  }
  HYDRA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.la, dt, k.ar, k.ac, k.lda), what);
  HYDRA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.lb, dt, k.br, k.bc, k.ldb), what);
  HYDRA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.lc, dt, k.m, k.n, k.ldc), what);
  if (k.batch > 1) {
    const int32_t count = static_cast<int32_t>(k.batch);
    for (auto [layout, stride] : {std::pair{p.la, k.sa}, std::pair{p.lb, k.sb}, std::pair{p.lc, k.sc}}) {
      HYDRA_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count,
                                                          sizeof(count)), what);
      HYDRA_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                          &stride, sizeof(stride)), what);
    }
  }
  DeviceContext& ctx = context(k.device);
  cublasLtMatmulPreference_t pref = nullptr;
  HYDRA_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref), what);
  const uint64_t ws = ctx.workspace_bytes;
  HYDRA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                          sizeof(ws)), what);
  const uint32_t al[3] = {static_cast<uint32_t>(k.ala), static_cast<uint32_t>(k.alb), static_cast<uint32_t>(k.alc)};
  HYDRA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0],
                                                          sizeof(uint32_t)), what);
  HYDRA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1],
                                                          sizeof(uint32_t)), what);
  HYDRA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2],
                                                          sizeof(uint32_t)), what);
  HYDRA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al[2],
                                                          sizeof(uint32_t)), what);
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  HYDRA_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(ctx.lt, p.desc, p.la, p.lb, p.lc, p.lc, pref, 1, &res, &found),
                     what);
  cublasLtMatmulPreferenceDestroy(pref);
  HYDRA_CHECK_ENV(found > 0, "matmul: cuBLASLt found no algorithm for {}", what);
  p.algo = res.algo;
  return g_plans.emplace(k, p).first->second;
}

}  // namespace

void matmul(const Tensor& a_in, const Tensor& b_in, Trans ta, Trans tb, const Tensor& out, const Tensor& bias_in) {
  // The epilogue reads a contiguous, 16-byte aligned bias of out's dtype; anything else is added afterwards.
  const bool fused_bias = bias_in.defined() && bias_in.is_contiguous() && bias_in.dtype() == out.dtype() &&
                          alignment_of(bias_in.raw_data()) >= 16;
  Tensor a = a_in, b = b_in;
  LtOperand oa{}, ob{};
  // cuBLASLt operand A = our B (as op(B)ᵀ), operand B = our A (as op(A)ᵀ).
  if (!lt_operand(matrix_view(b, tb), oa)) b = b.contiguous();
  if (!lt_operand(matrix_view(a, ta), ob)) a = a.contiguous();
  const MatView ea = matrix_view(a, ta), eb = matrix_view(b, tb);
  lt_operand(eb, oa);
  lt_operand(ea, ob);
  const int64_t M = ea.rows, K = ea.cols, N = eb.cols;
  const int64_t nb = out.dim() - 2;
  const Shape batch(out.shape().begin(), out.shape().begin() + nb);
  const int64_t nbatch = shape_numel(batch);
  // The error context is only formatted when a call fails (building it per call costs more than the lookup).
  auto what = [&] {
    return HYDRA_FORMAT("matmul m={} n={} k={} batch={} trans_a={} trans_b={} dtype={}", M, N, K, nbatch,
                        ta == Trans::Yes, tb == Trans::Yes, dtype_name(out.dtype()));
  };
  if (out.numel() == 0) return;
  DeviceGuard guard(out.device().index);
  if (K == 0) {
    Tensor o = out;
    o.zero_();
    if (bias_in.defined()) add_(o, bias_in.to(out.dtype()));
    return;
  }
  // Batch offsets: linear in the flattened batch index when the (broadcast) batch strides collapse to one.
  auto linear_stride = [&](const Tensor& t, int64_t& stride) {
    stride = 0;
    int64_t expect = -1;
    for (int64_t d = nb - 1; d >= 0; --d) {
      if (batch[d] == 1) continue;
      const int64_t s = t.stride(d);
      if (expect < 0) {
        stride = s;
        expect = s * batch[d];
      } else {
        if (s != expect && !(s == 0 && stride == 0)) return false;
        expect = s * batch[d];
      }
    }
    return true;
  };
  int64_t sa = 0, sb = 0;
  const bool one_call = nbatch == 1 || (linear_stride(a, sa) && linear_stride(b, sb));
  const std::size_t es = dtype_size(out.dtype());
  DeviceContext& ctx = context(out.device().index);
  auto run = [&](const char* pa, const char* pb, char* pc, int64_t count) {
    PlanKey k{out.device().index, out.dtype(), static_cast<int>(oa.op), static_cast<int>(ob.op), oa.rows, oa.cols,
              ob.rows, ob.cols, static_cast<uint64_t>(N), static_cast<uint64_t>(M), oa.ld, ob.ld, N, count,
              sb, sa, M * N, alignment_of(pb), alignment_of(pa), alignment_of(pc),
              out.dtype() == DType::Float32 && g_allow_tf32, fused_bias};
    const Plan& p = get_plan(k, what);
    if (fused_bias) {
      const void* bp = bias_in.raw_data();
      HYDRA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof(bp)),
                         what());
    }
    float one_f = 1.f, zero_f = 0.f;
    double one_d = 1.0, zero_d = 0.0;
    const bool dbl = out.dtype() == DType::Float64;
    HYDRA_CUBLAS_CHECK(cublasLtMatmul(ctx.lt, p.desc, dbl ? static_cast<const void*>(&one_d) : &one_f, pb, p.la, pa,
                                      p.lb, dbl ? static_cast<const void*>(&zero_d) : &zero_f, pc, p.lc, pc, p.lc,
                                      &p.algo, ctx.workspace, ctx.workspace_bytes, ctx.stream),
                       what());
  };
  const char* pa = static_cast<const char*>(a.raw_data());
  const char* pb = static_cast<const char*>(b.raw_data());
  char* pc = static_cast<char*>(out.raw_data());
  auto unfused_bias = [&] {
    if (bias_in.defined() && !fused_bias) {
      Tensor o = out;
      add_(o, bias_in.to(out.dtype()));
    }
  };
  if (one_call) {
    run(pa, pb, pc, nbatch);
    unfused_bias();
    return;
  }
  for (int64_t i = 0; i < nbatch; ++i) {
    int64_t oa_off = 0, ob_off = 0, rem = i;
    for (int64_t d = nb - 1; d >= 0; --d) {
      const int64_t idx = rem % batch[d];
      rem /= batch[d];
      oa_off += idx * a.stride(d);
      ob_off += idx * b.stride(d);
    }
    run(pa + oa_off * es, pb + ob_off * es, pc + i * M * N * es, 1);
  }
  unfused_bias();
}

void set_allow_tf32(bool allow) { g_allow_tf32 = allow; }
bool allow_tf32() { return g_allow_tf32; }

}  // namespace hydra::cuda
