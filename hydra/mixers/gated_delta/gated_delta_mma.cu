// Gated delta rule, bfloat16 forward and backward on tensor cores (mma.sync m16n8k16 through tensor/cuda/mma.cuh;
// declared in gated_delta_mma.h, called by gated_delta_forward_cuda / gated_delta_backward_cuda for bfloat16 q, k, v).
// The math, the chunk form and its adjoint are those of gated_delta_cuda.cu's header comment, here with chunk length
// C = 64:
//   per chunk (start state S₀, D_{t,s} = Π_{r=s+1..t} α_r, γ_t = Π_{r≤t} α_r, d_s = D_{C−1,s}):
//   A_{t,s} = β_t D_{t,s} k_t·k_s (s < t),  T = (I + A)⁻¹,  Wk = T diag(βγ) K,  Uv = T diag(β) V
//   U = Uv − Wk S₀ᵀ,  S_end = γ_{C−1} S₀ + Uᵀ diag(d) K,  O = diag(γ) Q S₀ᵀ + (QKᵀ ∘ D) U  (D masked to s ≤ t).
// Tokens past T are padded with k = v = q = do = 0, α = 1, β = 0 (they change nothing), and the head dims are padded
// with zeros to D ∈ {32, 64, 128} (D ≥ max(K, V)), so every tile is full.
//
// Chunk-parallel kernels: one block per (chunk, b·h), 4 warps; warp w owns rows 16w..16w+15 of the chunk (tokens)
// and keeps its matrix products in registers. Sequential kernels: one block per (32 value rows of the state, b·h),
// 8 warps, walking the chunks with the tiles of the next kStages − 1 chunks in flight (cp.async ring); the fp32 state
// (or state gradient) tile, 32 × D, lives in the MMA accumulators.
// Forward:
//   prep   the decays (running products: no logs, no division, α may be 0), A = β∘D∘(K Kᵀ) (MMA), T = (I + A)⁻¹ in
//          fp32 (the four 16×16 diagonal blocks by forward substitution, then the off-diagonal blocks by block
//          diagonals, T_ij = −T_ii Σ_m A_im T_mj, on tf32 MMAs), then Wk and Uv (MMA with T·diag(βγ), T·diag(β)
//          rounded to bf16 as the A operand) → bf16 scratch w, u; d_s and γ_t → fp32 scratch dl; optionally T (bf16).
//   state  per chunk: S₀ as bf16 to the chunk-start scratch h (and to shared memory as the B operand of
//          U = Uv − Wk S₀ᵀ), U written over Uv (bf16), S ← γ_{C−1} S + (diag(d) U)ᵀ K.
//   out    P = (Q Kᵀ) ∘ D masked (MMA, registers), then O = γ ∘ (Q S₀ᵀ) + P U (MMA; P rounded to bf16 in registers,
//          the flash-attention P·V form), o in bf16.
// Backward (recomputes prep, with T, and the state pass):
//   du_intra   dU_intra = ((Q Kᵀ) ∘ D)ᵀ dO.
//   state_bwd  reverse over the chunks: dS (the chunk's end-state gradient) as bf16 to the scratch dhs,
//              dU = dU_intra + diag(d) K dSᵀ (written over dU_intra), dS ← γ_{C−1} dS + (diag(γ) dO)ᵀ Q − dUᵀ Wk;
//              the last dS is dinitial_state.
//   grads_qk   the terms through dO and dS: dq, dk₁ (fp32 scratch), the first part of dα.
//   grads_w    the terms through dW = Tᵀ dU: dv, dk = dk₁ + …, dβ, the second part of dα (dα is linear in the decay
//              adjoint; each part runs its own Horner pass, without division by α).
// Precision: q, k, v, do enter the products exactly; T·diag(·), Wk, Uv, U, the chunk states and state gradients, dU,
// dW and the masked score matrices are rounded to bf16 as MMA operands; every accumulation and the carried state are
// fp32. (Against the float64 reference this is well inside the bf16 tolerance of SPEC §0.1;
// tests/hydra/test_cuda_gated_delta.cpp.) No atomics: every output element has one writer (deterministic).
//
// Forward work per chunk and head (multiply-adds, C = 64, causal triangles halved): prep C²·D/2 (A) + C²·D (Wk, Uv;
// causal k-steps skipped) + ~C³/6 (T); state 2·C·D² over all value rows; out C²·D/2 + C·D² + C²·D/2. Bytes per token
// and head: prep reads k, v and writes w, u (4·D·2); state reads w, k and the U slice, writes U and (per chunk) the
// bf16 state; out reads q, k, U, the chunk state, writes o. Timings and profiles: bench/NOTES.md.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "hydra/mixers/gated_delta/gated_delta_mma.h"
#include "tensor/check.h"
#include "tensor/cuda/common.cuh"
#include "tensor/cuda/mma.cuh"

namespace hydra {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kC = 64;                      // chunk length (tokens)
constexpr int kWarps = 4, kThreads = 32 * kWarps;
constexpr int kBV = 32;                     // value rows of the state per state-pass block
constexpr int kLdC = kC + 8;                // row stride of fp32 C×C matrices (fragment reads: ≤ 2-way conflicts)
constexpr int kLdU = kBV + 8;               // row stride of bf16 C×kBV tiles
constexpr int kDl = 2 * kC;                 // per chunk in the dl scratch: d_s (s < C), then γ_t (t < C)
constexpr int kStages = 3;                  // chunk tiles in flight in the sequential kernels (cp.async ring)
constexpr int kSeqThreads = 256;            // the sequential kernels: 8 warps share each chunk step's work

// Warp roles in the sequential kernels (8 warps, a 32-row state tile of D columns):
//  * the C × 32 products (U, resp. dU): warp w computes tokens 16·(w mod 4).. and value columns 16·(w / 4)..;
//  * the 32 × D state update: kUpdWarps<D> warps, warp w rows 16·(w mod 2).., columns (w / 2)·cols.. with
//    cols = kUpdCols<D> (D = 32: only 4 warps, so that each keeps whole 16-column pairs).
template <int D>
constexpr int kUpdWarps = D >= 64 ? 8 : 4;
template <int D>
constexpr int kUpdCols = D / (kUpdWarps<D> / 2);
static_assert(kC == 16 * kWarps, "one 16-row m-tile per warp");

template <int D_>
struct Cfg {
  static constexpr int D = D_;
  static constexpr int LD = D + 8;  // bf16 elements per shared row of a C×D or D×D tile (16-byte multiple)
  static constexpr int KS = D / 16; // k-steps over the head dim
  static constexpr int ND = D / 8;  // n-tiles over the head dim
};

struct Dims {
  int64_t B, T, H, K, V, BH, NC;
  bool vk, vv;  // q/k rows (K % 8 == 0), v rows (V % 8 == 0): 16-byte copies
};

// Element offset of token 0 of head (b, h) in a [B, T, H, X] tensor (tokens are H·X apart).
__device__ __forceinline__ int64_t head_base(int64_t b, int64_t h, const Dims& d, int64_t X) {
  return (b * d.T * d.H + h) * X;
}

// The chunk and head of a chunk-parallel block (grid NC·BH, block id = bh·NC + c): chunk c of head bh = (b, h),
// tokens t0 .. t0 + L − 1, first scratch row row0, first gate index a0 (of token t0 in a [B, T, H] tensor).
struct ChunkPos {
  int64_t c, bh, b, h, t0, row0, a0;
  int L;
};
__device__ __forceinline__ ChunkPos chunk_pos(const Dims& d) {
  ChunkPos p;
  p.c = blockIdx.x % d.NC;
  p.bh = blockIdx.x / d.NC;
  p.b = p.bh / d.H;
  p.h = p.bh % d.H;
  p.t0 = p.c * kC;
  p.row0 = (p.bh * d.NC + p.c) * kC;
  p.a0 = (p.b * d.T + p.t0) * d.H + p.h;
  p.L = static_cast<int>(std::min<int64_t>(kC, d.T - p.t0));
  return p;
}

// The chunk's C tokens of a [B, T, H, X] tensor into the shared tile dst (D columns; zeros past T and X).
template <int D>
__device__ __forceinline__ void load_tokens(bf16* dst, const bf16* __restrict__ src, int64_t X, bool vec,
                                            const ChunkPos& p, const Dims& d) {
  cuda::load_rows<D, kC, kThreads>(dst, src + head_base(p.b, p.h, d, X), d.H * X, p.t0, d.T, X, vec);
}

// al[t] = α of token t0 + t (1 past the sequence), gam[t] = Π_{r ≤ t} al[r] and dm[t·kLdC + s] = Π_{r=s+1..t} al[r]
// for s ≤ t (the upper triangle is not written). Every thread calls it; it ends with a barrier.
__device__ __forceinline__ void build_decays(const float* __restrict__ alpha, int64_t a0, int64_t H, int L, float* al,
                                             float* gam, float* dm) {
  const int tid = threadIdx.x;
  if (tid < kC) al[tid] = tid < L ? alpha[a0 + tid * H] : 1.f;
  __syncthreads();
  // Fixed trip counts, fully unrolled: the loads of al[] pipeline and only the multiplications chain.
  if (tid < kC) {
    float p = 1.f;
    dm[tid * kLdC + tid] = 1.f;
#pragma unroll
    for (int t = 1; t < kC; ++t)
      if (t > tid) {
        p *= al[t];
        dm[t * kLdC + tid] = p;
      }
  } else if (tid == kC) {
    float p = 1.f;
#pragma unroll
    for (int t = 0; t < kC; ++t) {
      p *= al[t];
      gam[t] = p;
    }
  }
  __syncthreads();
}

// The A fragment (rows r0.., k-step at column k0) of M(t, s) = s ≤ t ? m[t][s]·f[s] : 0, m fp32 with row stride kLdC.
__device__ __forceinline__ void frag_lower(uint32_t (&a)[4], const float* m, const float* f, int r0, int k0) {
  const int lane = threadIdx.x & 31, t0 = r0 + (lane >> 2), s0 = k0 + (lane & 3) * 2;
  auto at = [&](int t, int s) { return s <= t ? m[t * kLdC + s] * f[s] : 0.f; };
  a[0] = cuda::pack_bf16(at(t0, s0), at(t0, s0 + 1));
  a[1] = cuda::pack_bf16(at(t0 + 8, s0), at(t0 + 8, s0 + 1));
  a[2] = cuda::pack_bf16(at(t0, s0 + 8), at(t0, s0 + 9));
  a[3] = cuda::pack_bf16(at(t0 + 8, s0 + 8), at(t0 + 8, s0 + 9));
}

template <int N>
__device__ __forceinline__ void zero(float (&acc)[N][4]) {
#pragma unroll
  for (int n = 0; n < N; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
}

// Writes a warp's accumulator rows r0 + g (+8) of n-tiles 0..N−1 as bf16 to dst (row stride ld, column offset col0).
template <int N>
__device__ __forceinline__ void store_frag_bf16(bf16* dst, int64_t ld, int r0, int col0, const float (&acc)[N][4]) {
  const int lane = threadIdx.x & 31, g = lane >> 2, c2 = (lane & 3) * 2;
#pragma unroll
  for (int n = 0; n < N; ++n)
#pragma unroll
    for (int half = 0; half < 2; ++half)
      *reinterpret_cast<__nv_bfloat162*>(dst + (r0 + g + 8 * half) * ld + col0 + 8 * n + c2) =
          __floats2bfloat162_rn(acc[n][2 * half], acc[n][2 * half + 1]);
}

// Writes the warp's accumulator rows r0 + g and r0 + g + 8 (times mul0, mul1) as bf16 rows of a tensor whose row r
// starts at dst + r·stride; rows ≥ L and columns ≥ width are skipped. Even width and stride: 4-byte pair stores (the
// callers' row starts are then even); otherwise element by element.
template <int N>
__device__ __forceinline__ void store_rows_bf16(bf16* dst, int64_t stride, int r0, int L, int64_t width,
                                                const float (&acc)[N][4], float mul0 = 1.f, float mul1 = 1.f) {
  const int lane = threadIdx.x & 31, g = lane >> 2, c2 = (lane & 3) * 2;
  const bool pairs = width % 2 == 0 && stride % 2 == 0;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int t = r0 + g + 8 * half;
    if (t >= L) continue;
    const float mul = half ? mul1 : mul0;
    bf16* row = dst + t * stride;
#pragma unroll
    for (int n = 0; n < N; ++n) {
      const int col = 8 * n + c2;
      const float x0 = mul * acc[n][2 * half], x1 = mul * acc[n][2 * half + 1];
      if (col + 1 < width && pairs) {
        *reinterpret_cast<__nv_bfloat162*>(row + col) = __floats2bfloat162_rn(x0, x1);
      } else {
        if (col < width) row[col] = __float2bfloat16_rn(x0);
        if (col + 1 < width) row[col + 1] = __float2bfloat16_rn(x1);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// prep: decays, T = (I + A)⁻¹, Wk, Uv (one block per chunk and head)

template <int D>
struct PrepSmem {
  bf16 *k, *v;
  float *dm, *am, *x, *al, *gam, *be, *fw;
  template <typename B>
  __host__ __device__ static PrepSmem carve(B base, std::size_t* bytes = nullptr) {
    cuda::Carver<B> c{base};
    PrepSmem s;
    s.k = c.template take<bf16>(kC * Cfg<D>::LD);
    s.v = c.template take<bf16>(kC * Cfg<D>::LD);
    s.dm = c.template take<float>(kC * kLdC);  // decays, then T
    s.am = c.template take<float>(kC * kLdC);  // A
    s.x = c.template take<float>(3 * 256);     // block products of the inversion
    s.al = c.template take<float>(kC);
    s.gam = c.template take<float>(kC);
    s.be = c.template take<float>(kC);
    s.fw = c.template take<float>(kC);  // β_s γ_s
    if (bytes) *bytes = c.off;
    return s;
  }
};

// T = (I + A)⁻¹ (unit lower triangular, 64×64 fp32, row stride kLdC) from A (strictly lower; zeros elsewhere).
// Diagonal 16×16 blocks: forward substitution in fp32, one thread per column. Then block diagonal d = 1, 2, 3:
// X = Σ_{m=j}^{i−1} A_im T_mj (one contiguous range of 16·(i − j) columns), T_ij = −T_ii X, both products on tensor
// cores with tf32 operands (T is rounded to bf16 as the operand of Wk and Uv anyway). Ends with a barrier.
__device__ __forceinline__ void invert_unit_lower(const float* am, float* tm, float* x) {
  const int tid = threadIdx.x;
  if (tid < kC) {  // column j of its diagonal block, in registers (unrolled: static indices, pipelined loads)
    const int j = tid, lo = j & ~15, jj = j - lo;
    float col[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      float s = i == jj ? 1.f : 0.f;
      if (i > jj) {
        const float* arow = am + (lo + i) * kLdC + lo;
        s = -arow[jj];
#pragma unroll
        for (int m = 0; m < i; ++m)
          if (m > jj) s = fmaf(-arow[m], col[m], s);
      }
      col[i] = s;
    }
#pragma unroll
    for (int i = 0; i < 16; ++i) tm[(lo + i) * kLdC + j] = col[i];
  }
  __syncthreads();
  // Off-diagonal blocks on tensor cores (tf32 operands, fp32 accumulators), one warp per block pair (i, j): the
  // pairs of one block diagonal are independent, the diagonals in sequence.
  const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, c = lane & 3;
#pragma unroll 1
  for (int dd = 1; dd < 4; ++dd) {
    if (warp < 4 - dd) {
      const int i = dd + warp, j = warp;
      float acc[2][4] = {};
      // X = Σ_{q ∈ [16j, 16i)} A[16i + ·][q] T[q][16j + ·]  (k-steps of 8)
      for (int q0 = 16 * j; q0 < 16 * i; q0 += 8) {
        const float* ar = am + (16 * i + g) * kLdC + q0 + c;
        const uint32_t a[4] = {cuda::to_tf32(ar[0]), cuda::to_tf32(ar[8 * kLdC]), cuda::to_tf32(ar[4]),
                               cuda::to_tf32(ar[8 * kLdC + 4])};
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
          const float* tc = tm + (q0 + c) * kLdC + 16 * j + 8 * nt + g;
          cuda::mma_1688_tf32(acc[nt], a, cuda::to_tf32(tc[0]), cuda::to_tf32(tc[4 * kLdC]));
        }
      }
      float* xw = x + warp * 256;  // X of the pair, 16 × 16 row-major
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
        xw[g * 16 + 8 * nt + 2 * c] = acc[nt][0];
        xw[g * 16 + 8 * nt + 2 * c + 1] = acc[nt][1];
        xw[(g + 8) * 16 + 8 * nt + 2 * c] = acc[nt][2];
        xw[(g + 8) * 16 + 8 * nt + 2 * c + 1] = acc[nt][3];
      }
      __syncwarp();
      // T_ij = −T_ii X
      float out[2][4] = {};
#pragma unroll
      for (int k0 = 0; k0 < 16; k0 += 8) {
        const float* tr = tm + (16 * i + g) * kLdC + 16 * i + k0 + c;
        const uint32_t a[4] = {cuda::to_tf32(tr[0]), cuda::to_tf32(tr[8 * kLdC]), cuda::to_tf32(tr[4]),
                               cuda::to_tf32(tr[8 * kLdC + 4])};
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
          cuda::mma_1688_tf32(out[nt], a, cuda::to_tf32(xw[(k0 + c) * 16 + 8 * nt + g]),
                              cuda::to_tf32(xw[(k0 + c + 4) * 16 + 8 * nt + g]));
      }
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
        float* o = tm + (16 * i + g) * kLdC + 16 * j + 8 * nt + 2 * c;
        o[0] = -out[nt][0];
        o[1] = -out[nt][1];
        o[8 * kLdC] = -out[nt][2];
        o[8 * kLdC + 1] = -out[nt][3];
      }
    }
    __syncthreads();
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads) prep_kernel(const bf16* __restrict__ k, const bf16* __restrict__ v,
                                                        const float* __restrict__ alpha,
                                                        const float* __restrict__ beta, bf16* __restrict__ w,
                                                        bf16* __restrict__ u, float* __restrict__ dl,
                                                        bf16* __restrict__ t_out, Dims d) {
  using C = Cfg<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  const PrepSmem<D> sm = PrepSmem<D>::carve(smem);
  const ChunkPos pos = chunk_pos(d);
  const int64_t c = pos.c, bh = pos.bh, row0 = pos.row0;
  const int L = pos.L;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, c2 = (lane & 3) * 2;
  load_tokens<D>(sm.k, k, d.K, d.vk, pos, d);
  load_tokens<D>(sm.v, v, d.V, d.vv, pos, d);
  cuda::cp_async_commit();
  const int64_t a0 = pos.a0;
  if (tid < kC) sm.be[tid] = tid < L ? beta[a0 + tid * d.H] : 0.f;
  build_decays(alpha, a0, d.H, L, sm.al, sm.gam, sm.dm);
  float* dlc = dl + (bh * d.NC + c) * kDl;
  if (tid < kC) {
    dlc[tid] = sm.dm[(kC - 1) * kLdC + tid];
    dlc[kC + tid] = sm.gam[tid];
    sm.fw[tid] = sm.be[tid] * sm.gam[tid];
  }
  cuda::cp_async_wait<0>();
  __syncthreads();

  const int r0 = 16 * warp;
  {  // A = β_t D_{t,s} k_t·k_s for s < t (the warp's rows; columns past its last row are zeros)
    float acc[kC / 8][4];
#pragma unroll
    for (int n = 0; n < kC / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < C::KS; ++ks) {
      uint32_t a[4];
      cuda::load_a(a, sm.k + r0 * C::LD, C::LD, 16 * ks);
#pragma unroll
      for (int nn = 0; nn < kC / 16; ++nn) {
        if (nn > warp) break;
        uint32_t bb[4];
        cuda::load_b_nk(bb, sm.k, C::LD, 16 * nn, 16 * ks);
        cuda::mma_16816(acc[2 * nn], a, bb[0], bb[1]);
        cuda::mma_16816(acc[2 * nn + 1], a, bb[2], bb[3]);
      }
    }
#pragma unroll
    for (int n = 0; n < kC / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int t = r0 + g + 8 * (e >> 1), s = 8 * n + c2 + (e & 1);
        sm.am[t * kLdC + s] = s < t ? sm.be[t] * sm.dm[t * kLdC + s] * acc[n][e] : 0.f;
      }
  }
  __syncthreads();  // A complete; the decays are dead (T overwrites them)
  invert_unit_lower(sm.am, sm.dm, sm.x);

  // Wk = (T diag(βγ)) K and Uv = (T diag(β)) V for the warp's rows (k-steps past the diagonal are zero).
  float wk[C::ND][4], uv[C::ND][4];
#pragma unroll
  for (int n = 0; n < C::ND; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) wk[n][e] = uv[n][e] = 0.f;
#pragma unroll
  for (int ks = 0; ks < kC / 16; ++ks) {
    if (ks > warp) break;
    uint32_t aw[4], au[4];
    frag_lower(aw, sm.dm, sm.fw, r0, 16 * ks);
    frag_lower(au, sm.dm, sm.be, r0, 16 * ks);
#pragma unroll
    for (int dn = 0; dn < D / 16; ++dn) {
      uint32_t bk[4], bv[4];
      cuda::load_b_kn(bk, sm.k, C::LD, 16 * dn, 16 * ks);
      cuda::load_b_kn(bv, sm.v, C::LD, 16 * dn, 16 * ks);
      cuda::mma_16816(wk[2 * dn], aw, bk[0], bk[1]);
      cuda::mma_16816(wk[2 * dn + 1], aw, bk[2], bk[3]);
      cuda::mma_16816(uv[2 * dn], au, bv[0], bv[1]);
      cuda::mma_16816(uv[2 * dn + 1], au, bv[2], bv[3]);
    }
  }
  store_frag_bf16(w + row0 * D, D, r0, 0, wk);
  store_frag_bf16(u + row0 * D, D, r0, 0, uv);
  if (t_out != nullptr) {  // T in bf16 (the backward's dW = Tᵀ dU), [t][s], zeros above the diagonal
    bf16* tc = t_out + row0 * kC;
    for (int e = tid; e < kC * kC; e += kThreads) {
      const int t = e / kC, s = e - t * kC;
      tc[e] = __float2bfloat16_rn(s <= t ? sm.dm[t * kLdC + s] : 0.f);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// The two sequential kernels' shared pieces (state forward, state backward): a warp's 32 × D state tile in MMA
// accumulators, rows j0 + mrow + g (+8) and columns kcol + 8n + c2 (+1) of head bh.

// st = the warp's part of src ([BH, V, K] float32; zeros outside V × K, or everywhere when src is null).
template <int NS>
__device__ __forceinline__ void state_load(float (&st)[NS][4], const float* __restrict__ src, int64_t bh, int j0,
                                           int mrow, int kcol, const Dims& d) {
  const int lane = threadIdx.x & 31, g = lane >> 2, c2 = (lane & 3) * 2;
#pragma unroll
  for (int n = 0; n < NS; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t j = j0 + mrow + g + 8 * (e >> 1), key = kcol + 8 * n + c2 + (e & 1);
      st[n][e] = (src != nullptr && j < d.V && key < d.K) ? src[(bh * d.V + j) * d.K + key] : 0.f;
    }
}

// The warp's part of dst ([BH, V, K] float32) = st, inside V × K.
template <int NS>
__device__ __forceinline__ void state_store(const float (&st)[NS][4], float* __restrict__ dst, int64_t bh, int j0,
                                            int mrow, int kcol, const Dims& d) {
  const int lane = threadIdx.x & 31, g = lane >> 2, c2 = (lane & 3) * 2;
#pragma unroll
  for (int n = 0; n < NS; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t j = j0 + mrow + g + 8 * (e >> 1), key = kcol + 8 * n + c2 + (e & 1);
      if (j < d.V && key < d.K) dst[(bh * d.V + j) * d.K + key] = st[n][e];
    }
}

// acc = X Sᵀ for tokens tw.. of the C × D tile x and value rows jw..jw+15 of the bf16 state tile s (both row stride
// D + 8): the C × 32 products of the sequential kernels (U = Uv − Wk S₀ᵀ, dU = … + K dSᵀ).
template <int D>
__device__ __forceinline__ void tokens_by_state(float (&acc)[2][4], const bf16* x, const bf16* s, int tw, int jw) {
  zero(acc);
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
    uint32_t a[4], bb[4];
    cuda::load_a(a, x + tw * Cfg<D>::LD, Cfg<D>::LD, 16 * ks);
    cuda::load_b_nk(bb, s, Cfg<D>::LD, jw, 16 * ks);
    cuda::mma_16816(acc[0], a, bb[0], bb[1]);
    cuda::mma_16816(acc[1], a, bb[2], bb[3]);
  }
}

// st += Aᵀ B over the C tokens: A = at [token][value row] (row stride kLdU), B = b [token][key] (row stride D + 8):
// the state updates S += (diag(d) U)ᵀ K, dS += (diag(γ) dO)ᵀ Q and dS += (−dU)ᵀ Wk.
template <int D, int NS>
__device__ __forceinline__ void state_accumulate(float (&st)[NS][4], const bf16* at, const bf16* b, int mrow,
                                                 int kcol) {
#pragma unroll
  for (int ks = 0; ks < kC / 16; ++ks) {
    uint32_t a[4];
    cuda::load_a_t(a, at, kLdU, mrow, 16 * ks);
#pragma unroll
    for (int nn = 0; nn < NS / 2; ++nn) {
      uint32_t bb[4];
      cuda::load_b_kn(bb, b, Cfg<D>::LD, kcol + 16 * nn, 16 * ks);
      cuda::mma_16816(st[2 * nn], a, bb[0], bb[1]);
      cuda::mma_16816(st[2 * nn + 1], a, bb[2], bb[3]);
    }
  }
}

// The cp.async ring's start: chunks 0..kStages − 2 of the walk (load(i, buffer i)), one commit group each (empty past
// the end), so that cp_async_wait<kStages − 2> at step i always means "step i's chunk has landed".
template <class F>
__device__ __forceinline__ void ring_start(int64_t steps, F&& load) {
  for (int i = 0; i < kStages - 1; ++i) {
    if (i < steps) load(i, i);
    cuda::cp_async_commit();
  }
}

// ---------------------------------------------------------------------------------------------------------
// state: the sequential pass over the chunks (one block per 32 value rows of the state and head)

template <int D>
struct StateSmem {
  // kStages buffers of the chunk tiles, buffer i through wb(i), kb(i), ub(i), dlb(i) (an array of pointers indexed
  // at run time would live in local memory).
  bf16 *w, *k, *u;
  float* dl;
    bf16 *s, *ud;
  template <typename B>
  __host__ __device__ static StateSmem carve(B base, std::size_t* bytes = nullptr) {
    cuda::Carver<B> c{base};
    StateSmem s;
    s.w = c.template take<bf16>(kStages * kC * Cfg<D>::LD);
    s.k = c.template take<bf16>(kStages * kC * Cfg<D>::LD);
    s.u = c.template take<bf16>(kStages * kC * kLdU);
    s.dl = c.template take<float>(kStages * kDl);
    s.s = c.template take<bf16>(kBV * Cfg<D>::LD);  // the state tile as a bf16 operand [value row][key]
    s.ud = c.template take<bf16>(kC * kLdU);        // diag(d) U, [token][value row]
    if (bytes) *bytes = c.off;
    return s;
  }
  __device__ bf16* wb(int i) const { return w + i * kC * Cfg<D>::LD; }
  __device__ bf16* kb(int i) const { return k + i * kC * Cfg<D>::LD; }
  __device__ bf16* ub(int i) const { return u + i * kC * kLdU; }
  __device__ float* dlb(int i) const { return dl + i * kDl; }
};

template <int D>
__global__ void __launch_bounds__(kSeqThreads) state_kernel(const bf16* __restrict__ k, const bf16* __restrict__ w,
                                                            bf16* __restrict__ u, const float* __restrict__ dl,
                                                            const float* __restrict__ s0, bf16* __restrict__ hs,
                                                            float* __restrict__ s_final, Dims d) {
  using C = Cfg<D>;
  constexpr int NS = kUpdCols<D> / 8;  // n-tiles of the warp's state columns
  extern __shared__ __align__(128) unsigned char smem[];
  const StateSmem<D> sm = StateSmem<D>::carve(smem);
  const int64_t nvt = D / kBV, jt = blockIdx.x % nvt, bh = blockIdx.x / nvt, b = bh / d.H, h = bh % d.H;
  const int j0 = static_cast<int>(jt) * kBV;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, c2 = (lane & 3) * 2;
  const int mrow = 16 * (warp & 1), kcol = (warp >> 1) * kUpdCols<D>;  // the warp's state rows, first key column
  const bool upd = warp < kUpdWarps<D>;
  const int tw = 16 * (warp & 3), jw = 16 * (warp >> 2);  // the warp's tokens and value columns in U
  const bf16* kb = k + head_base(b, h, d, d.K);
  const int64_t srow0 = bh * d.NC * kC;  // first scratch row of the head

  auto load_chunk = [&](int64_t c, int buf) {
    cuda::load_rows<D, kC, kSeqThreads>(sm.wb(buf), w + (srow0 + c * kC) * D, D, 0, kC, D, true);
    cuda::load_rows<D, kC, kSeqThreads>(sm.kb(buf), kb, d.H * d.K, c * kC, d.T, d.K, d.vk);
    cuda::load_rows<kBV, kC, kSeqThreads>(sm.ub(buf), u + (srow0 + c * kC) * D + j0, D, 0, kC, kBV, true);
    if (tid < kDl / 4) cuda::cp_async_16(sm.dlb(buf) + 4 * tid, dl + (bh * d.NC + c) * kDl + 4 * tid, 16);
  };

  float st[NS][4];  // the warp's part of the state (update warps only)
  state_load(st, upd ? s0 : nullptr, bh, j0, mrow, kcol, d);
  // A ring of kStages buffers: chunk c in buffer c % kStages, loaded kStages − 1 chunks ahead.
  ring_start(d.NC, load_chunk);
  int buf = 0;  // c % kStages, kept incrementally (a 64-bit modulo per step costs ~15 instructions)
  for (int64_t c = 0; c < d.NC; ++c, buf = buf + 1 == kStages ? 0 : buf + 1) {
    // S₀ of the chunk: bf16 operand in shared memory and the chunk-start scratch.
    bf16* hc = hs + ((bh * d.NC + c) * D + j0) * D;
    if (upd) {
      store_frag_bf16(sm.s, C::LD, mrow, kcol, st);
      store_frag_bf16(hc, D, mrow, kcol, st);
    }
    cuda::cp_async_wait<kStages - 2>();
    __syncthreads();  // the chunk's tiles and S₀ are visible; chunk c − 1's buffer is free
    if (c + kStages - 1 < d.NC) load_chunk(c + kStages - 1, buf == 0 ? kStages - 1 : buf - 1);
    cuda::cp_async_commit();

    // U = Uv − Wk S₀ᵀ for the warp's 16 tokens and 16 value rows.
    {
      float acc[2][4];
      tokens_by_state<D>(acc, sm.wb(buf), sm.s, tw, jw);
      const float* dlc = sm.dlb(buf);
      bf16* uc = u + (srow0 + c * kC) * D + j0;
#pragma unroll
      for (int n = 0; n < 2; ++n)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int t = tw + g + 8 * half, j = jw + 8 * n + c2;
          const float2 uv = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(sm.ub(buf) + t * kLdU + j));
          const float x0 = uv.x - acc[n][2 * half], x1 = uv.y - acc[n][2 * half + 1];
          *reinterpret_cast<__nv_bfloat162*>(uc + t * D + j) = __floats2bfloat162_rn(x0, x1);
          *reinterpret_cast<__nv_bfloat162*>(sm.ud + t * kLdU + j) = __floats2bfloat162_rn(dlc[t] * x0, dlc[t] * x1);
        }
    }
    __syncthreads();  // diag(d) U visible

    // S ← γ_{C−1} S + (diag(d) U)ᵀ K.
    if (upd) {
      const float gl = sm.dlb(buf)[2 * kC - 1];  // γ_{C−1}
#pragma unroll
      for (int n = 0; n < NS; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) st[n][e] *= gl;
      state_accumulate<D>(st, sm.ud, sm.kb(buf), mrow, kcol);
    }
  }
  if (upd && s_final != nullptr) state_store(st, s_final, bh, j0, mrow, kcol, d);
}

// ---------------------------------------------------------------------------------------------------------
// out: O = γ ∘ (Q S₀ᵀ) + ((Q Kᵀ) ∘ D) U (one block per chunk and head)

template <int D>
struct OutSmem {
  bf16 *q, *k, *u, *h;
  float *dm, *al, *gam;
  template <typename B>
  __host__ __device__ static OutSmem carve(B base, std::size_t* bytes = nullptr) {
    cuda::Carver<B> c{base};
    OutSmem s;
    s.q = c.template take<bf16>(kC * Cfg<D>::LD);
    s.k = c.template take<bf16>(kC * Cfg<D>::LD);
    s.u = c.template take<bf16>(kC * Cfg<D>::LD);
    s.h = c.template take<bf16>(D * Cfg<D>::LD);
    s.dm = c.template take<float>(kC * kLdC);
    s.al = c.template take<float>(kC);
    s.gam = c.template take<float>(kC);
    if (bytes) *bytes = c.off;
    return s;
  }
};

template <int D>
__global__ void __launch_bounds__(kThreads) out_kernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                                                       const bf16* __restrict__ u, const bf16* __restrict__ hs,
                                                       const float* __restrict__ alpha, bf16* __restrict__ o,
                                                       Dims d) {
  using C = Cfg<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  const OutSmem<D> sm = OutSmem<D>::carve(smem);
  const ChunkPos pos = chunk_pos(d);
  const int64_t c = pos.c, bh = pos.bh, b = pos.b, h = pos.h, t0 = pos.t0, row0 = pos.row0;
  const int L = pos.L;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, c2 = (lane & 3) * 2;
  load_tokens<D>(sm.q, q, d.K, d.vk, pos, d);
  load_tokens<D>(sm.k, k, d.K, d.vk, pos, d);
  cuda::load_rows<D, kC, kThreads>(sm.u, u + row0 * D, D, 0, kC, D, true);
  cuda::load_rows<D, D, kThreads>(sm.h, hs + (bh * d.NC + c) * D * D, D, 0, D, D, true);
  cuda::cp_async_commit();
  build_decays(alpha, pos.a0, d.H, L, sm.al, sm.gam, sm.dm);
  cuda::cp_async_wait<0>();
  __syncthreads();

  const int r0 = 16 * warp;
  uint32_t qa[C::KS][4];
#pragma unroll
  for (int ks = 0; ks < C::KS; ++ks) cuda::load_a(qa[ks], sm.q + r0 * C::LD, C::LD, 16 * ks);
  // P = (Q Kᵀ) ∘ D for the warp's rows, keys up to its last row.
  float p[kC / 8][4];
#pragma unroll
  for (int n = 0; n < kC / 8; ++n) p[n][0] = p[n][1] = p[n][2] = p[n][3] = 0.f;
#pragma unroll
  for (int ks = 0; ks < C::KS; ++ks)
#pragma unroll
    for (int nn = 0; nn < kC / 16; ++nn) {
      if (nn > warp) break;
      uint32_t bb[4];
      cuda::load_b_nk(bb, sm.k, C::LD, 16 * nn, 16 * ks);
      cuda::mma_16816(p[2 * nn], qa[ks], bb[0], bb[1]);
      cuda::mma_16816(p[2 * nn + 1], qa[ks], bb[2], bb[3]);
    }
#pragma unroll
  for (int n = 0; n < kC / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int t = r0 + g + 8 * (e >> 1), s = 8 * n + c2 + (e & 1);
      p[n][e] = s <= t ? p[n][e] * sm.dm[t * kLdC + s] : 0.f;
    }
  // O = γ ∘ (Q S₀ᵀ): B(key, j) = S₀[j][key].
  float acc[C::ND][4];
#pragma unroll
  for (int n = 0; n < C::ND; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
#pragma unroll
  for (int ks = 0; ks < C::KS; ++ks)
#pragma unroll
    for (int dn = 0; dn < D / 16; ++dn) {
      uint32_t bb[4];
      cuda::load_b_nk(bb, sm.h, C::LD, 16 * dn, 16 * ks);
      cuda::mma_16816(acc[2 * dn], qa[ks], bb[0], bb[1]);
      cuda::mma_16816(acc[2 * dn + 1], qa[ks], bb[2], bb[3]);
    }
  const float g0 = sm.gam[r0 + g], g1 = sm.gam[r0 + g + 8];
#pragma unroll
  for (int n = 0; n < C::ND; ++n) {
    acc[n][0] *= g0;
    acc[n][1] *= g0;
    acc[n][2] *= g1;
    acc[n][3] *= g1;
  }
  // O += P U.
#pragma unroll
  for (int ks = 0; ks < kC / 16; ++ks) {
    if (ks > warp) break;
    uint32_t a[4];
    cuda::pack_a_from_c(a, p[2 * ks], p[2 * ks + 1]);
#pragma unroll
    for (int dn = 0; dn < D / 16; ++dn) {
      uint32_t bb[4];
      cuda::load_b_kn(bb, sm.u, C::LD, 16 * dn, 16 * ks);
      cuda::mma_16816(acc[2 * dn], a, bb[0], bb[1]);
      cuda::mma_16816(acc[2 * dn + 1], a, bb[2], bb[3]);
    }
  }
  store_rows_bf16(o + head_base(b, h, d, d.V) + t0 * d.H * d.V, d.H * d.V, r0, L, d.V, acc);
}

// ---------------------------------------------------------------------------------------------------------
// backward (gated_delta_cuda.cu's header comment has the adjoint formulas; here C = 64 and the same operand
// precision as the forward: every product has bf16 operands and fp32 accumulators)

// acc[2·np + {0,1}] += A · B for the warp's 16 rows, A fragments a[ks] for k-steps ks in [ks0, ks1), n-tile pairs
// np < np1 (16 columns each): KN: B(k, n) = y[k][n] (load_b_kn), else B(k, n) = y[n][k] (load_b_nk).
template <bool KN, int KS, int N>
__device__ __forceinline__ void gemm_regs_a(float (&acc)[N][4], const uint32_t (&a)[KS][4], const bf16* y, int ld,
                                            int ks0 = 0, int ks1 = KS, int np0 = 0, int np1 = N / 2) {
  constexpr int NP = N / 2;
#pragma unroll
  for (int ks = 0; ks < KS; ++ks) {
    if (ks < ks0 || ks >= ks1) continue;
#pragma unroll
    for (int np = 0; np < NP; ++np) {
      if (np < np0 || np >= np1) continue;
      uint32_t b[4];
      if constexpr (KN) {
        cuda::load_b_kn(b, y, ld, 16 * np, 16 * ks);
      } else {
        cuda::load_b_nk(b, y, ld, 16 * np, 16 * ks);
      }
      cuda::mma_16816(acc[2 * np], a[ks], b[0], b[1]);
      cuda::mma_16816(acc[2 * np + 1], a[ks], b[2], b[3]);
    }
  }
}

// The warp's 16 rows of x (row stride ld) as A fragments of KS k-steps.
template <int KS>
__device__ __forceinline__ void load_a_all(uint32_t (&a)[KS][4], const bf16* x, int ld) {
#pragma unroll
  for (int ks = 0; ks < KS; ++ks) cuda::load_a(a[ks], x, ld, 16 * ks);
}

// Row t's dot with y over the warp's accumulator columns: Σ_n acc[n](row) · y[row][8n + c2 (+1)], summed over the 4
// lanes of the row (returns it to all four). half 0: row g, half 1: row g + 8.
template <int N>
__device__ __forceinline__ float row_dot(const float (&acc)[N][4], int half, const bf16* yrow) {
  const int c2 = (threadIdx.x & 3) * 2;
  float s = 0.f;
#pragma unroll
  for (int n = 0; n < N; ++n) {
    const float2 y = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(yrow + 8 * n + c2));
    s = fmaf(acc[n][2 * half], y.x, fmaf(acc[n][2 * half + 1], y.y, s));
  }
  s += __shfl_xor_sync(0xffffffffu, s, 1);
  s += __shfl_xor_sync(0xffffffffu, s, 2);
  return s;
}

// dα from the chunk's decay adjoint (one part of it; the parts add): dd[t·kLdC + s] = ∂ℓ/∂D_{t,s} (s < t, the rest
// ignored) and dm1[t] = ∂ℓ/∂γ_t. Horner, no division by α: Y_{t,0} = dm1[t], Y_{t,r} = dd[t][r−1] + α_{r−1} Y_{t,r−1},
// dα_r = Σ_{t ≥ r} D_{t,r} Y_{t,r} (dd is overwritten with Y, dm1 with partial sums). Written (add: += into) dalpha
// for r < L. Every thread calls it; it starts and ends with a barrier.
__device__ __forceinline__ void horner_dalpha(float* dd, float* dm1, const float* dm, const float* al, int L,
                                              float* __restrict__ dalpha, int64_t a0, int64_t H, bool add) {
  const int tid = threadIdx.x;
  __syncthreads();
  if (tid < kC) {  // row t in registers (16-byte accesses; a thread per row would hit one bank 8 times per word)
    const int t = tid;
    float row[kC];
#pragma unroll
    for (int r = 0; r < kC; r += 4) {
      const float4 x = *reinterpret_cast<const float4*>(dd + t * kLdC + r);
      row[r] = x.x;
      row[r + 1] = x.y;
      row[r + 2] = x.z;
      row[r + 3] = x.w;
    }
    float y = dm1[t], prev = 0.f;
#pragma unroll
    for (int r = 0; r < kC; ++r) {  // row[r] ← Y_{t,r} (r ≤ t), 0 beyond
      if (r > 0) y = fmaf(al[r - 1], y, prev);
      prev = row[r];
      row[r] = r <= t ? y : 0.f;
    }
#pragma unroll
    for (int r = 0; r < kC; r += 4)
      *reinterpret_cast<float4*>(dd + t * kLdC + r) = make_float4(row[r], row[r + 1], row[r + 2], row[r + 3]);
  }
  __syncthreads();
  // dα_r = Σ_{t ≥ r} D_{t,r} Y_{t,r}: the column split between two threads (odd / even t), partials through dm1.
  const int r = tid % kC, half = tid / kC;
  float s = 0.f;
  if (half < 2)
    for (int t = r + half; t < kC; t += 2) s = fmaf(dm[t * kLdC + r], dd[t * kLdC + r], s);
  if (half == 1) dm1[r] = s;
  __syncthreads();
  if (half == 0 && r < L) {
    s += dm1[r];
    float* p = dalpha + a0 + r * H;
    *p = add ? *p + s : s;
  }
  __syncthreads();
}

// du_intra: dU_intra = ((Q Kᵀ) ∘ D)ᵀ dO, one block per (chunk, b·h); warp w owns rows s = 16w.. of dU.
template <int D>
struct DuSmem {
  bf16 *q, *k, *g;
  float *dm, *al, *gam;
  template <typename B>
  __host__ __device__ static DuSmem carve(B base, std::size_t* bytes = nullptr) {
    cuda::Carver<B> c{base};
    DuSmem s;
    s.q = c.template take<bf16>(kC * Cfg<D>::LD);
    s.k = c.template take<bf16>(kC * Cfg<D>::LD);
    s.g = c.template take<bf16>(kC * Cfg<D>::LD);  // dO
    s.dm = c.template take<float>(kC * kLdC);
    s.al = c.template take<float>(kC);
    s.gam = c.template take<float>(kC);
    if (bytes) *bytes = c.off;
    return s;
  }
};

template <int D>
__global__ void __launch_bounds__(kThreads) du_intra_kernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                                                            const bf16* __restrict__ dout,
                                                            const float* __restrict__ alpha, bf16* __restrict__ du,
                                                            Dims d) {
  using C = Cfg<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  const DuSmem<D> sm = DuSmem<D>::carve(smem);
  const ChunkPos pos = chunk_pos(d);
  const int64_t c = pos.c, bh = pos.bh;
  const int L = pos.L;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, c2 = (lane & 3) * 2;
  load_tokens<D>(sm.q, q, d.K, d.vk, pos, d);
  load_tokens<D>(sm.k, k, d.K, d.vk, pos, d);
  load_tokens<D>(sm.g, dout, d.V, d.vv, pos, d);
  cuda::cp_async_commit();
  build_decays(alpha, pos.a0, d.H, L, sm.al, sm.gam, sm.dm);
  cuda::cp_async_wait<0>();
  __syncthreads();
  const int r0 = 16 * warp;
  // Pᵀ[s][t] = (k_s·q_t) D_{t,s} for t ≥ s (n-tiles of t from the warp's own rows on).
  uint32_t ka[C::KS][4];
  load_a_all(ka, sm.k + r0 * C::LD, C::LD);
  float pt[kC / 8][4];
  zero(pt);
  gemm_regs_a<false>(pt, ka, sm.q, C::LD, 0, C::KS, warp, kC / 16);
#pragma unroll
  for (int n = 0; n < kC / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int s = r0 + g + 8 * (e >> 1), t = 8 * n + c2 + (e & 1);
      pt[n][e] = t >= s ? pt[n][e] * sm.dm[t * kLdC + s] : 0.f;
    }
  uint32_t pa[kC / 16][4];
#pragma unroll
  for (int ks = 0; ks < kC / 16; ++ks) cuda::pack_a_from_c(pa[ks], pt[2 * ks], pt[2 * ks + 1]);
  float acc[C::ND][4];
  zero(acc);
  gemm_regs_a<true>(acc, pa, sm.g, C::LD, warp, kC / 16);
  store_frag_bf16(du + (bh * d.NC + c) * kC * D, D, r0, 0, acc);
}

// state_bwd: the reverse pass over the chunks, one block per (32 value rows, b·h). The state gradient tile dS (fp32,
// 32 × D) lives in the MMA accumulators as the forward's state does. Per chunk (reverse): dS (the gradient of the
// chunk's end state) → bf16 scratch dhs and shared memory; dU = dU_intra + diag(d) K dSᵀ (written over dU_intra);
// dS ← γ_{C−1} dS + (diag(γ) dO)ᵀ Q − dUᵀ Wk. At the end dS is the initial state's gradient.
template <int D>
struct StateBwdSmem {
  bf16 *w, *k, *q, *g, *du;  // kStages buffers each (buffer i through the accessors)
  float* dl;
  bf16 *s, *gg, *dun;
  template <typename B>
  __host__ __device__ static StateBwdSmem carve(B base, std::size_t* bytes = nullptr) {
    cuda::Carver<B> c{base};
    StateBwdSmem s;
    s.w = c.template take<bf16>(kStages * kC * Cfg<D>::LD);
    s.k = c.template take<bf16>(kStages * kC * Cfg<D>::LD);
    s.q = c.template take<bf16>(kStages * kC * Cfg<D>::LD);
    s.g = c.template take<bf16>(kStages * kC * kLdU);   // dO, the block's 32 value columns
    s.du = c.template take<bf16>(kStages * kC * kLdU);  // dU_intra, the block's 32 columns
    s.dl = c.template take<float>(kStages * kDl);
    s.s = c.template take<bf16>(kBV * Cfg<D>::LD);  // dS as a bf16 operand [value row][key]
    s.gg = c.template take<bf16>(kC * kLdU);        // diag(γ) dO  [token][value row]
    s.dun = c.template take<bf16>(kC * kLdU);       // −dU        [token][value row]
    if (bytes) *bytes = c.off;
    return s;
  }
  __device__ bf16* wb(int i) const { return w + i * kC * Cfg<D>::LD; }
  __device__ bf16* kb(int i) const { return k + i * kC * Cfg<D>::LD; }
  __device__ bf16* qb(int i) const { return q + i * kC * Cfg<D>::LD; }
  __device__ bf16* gb(int i) const { return g + i * kC * kLdU; }
  __device__ bf16* dub(int i) const { return du + i * kC * kLdU; }
  __device__ float* dlb(int i) const { return dl + i * kDl; }
};

template <int D>
__global__ void __launch_bounds__(kSeqThreads) state_bwd_kernel(const bf16* __restrict__ q,
                                                                const bf16* __restrict__ k,
                                                                const bf16* __restrict__ dout,
                                                                const bf16* __restrict__ w, bf16* __restrict__ du,
                                                                const float* __restrict__ dl,
                                                                const float* __restrict__ ds_final,
                                                                bf16* __restrict__ dhs, float* __restrict__ ds0,
                                                                Dims d) {
  using C = Cfg<D>;
  constexpr int NS = kUpdCols<D> / 8;
  extern __shared__ __align__(128) unsigned char smem[];
  const StateBwdSmem<D> sm = StateBwdSmem<D>::carve(smem);
  const int64_t nvt = D / kBV, jt = blockIdx.x % nvt, bh = blockIdx.x / nvt, b = bh / d.H, h = bh % d.H;
  const int j0 = static_cast<int>(jt) * kBV;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, c2 = (lane & 3) * 2;
  const int mrow = 16 * (warp & 1), kcol = (warp >> 1) * kUpdCols<D>;
  const bool upd = warp < kUpdWarps<D>;
  const int tw = 16 * (warp & 3), jw = 16 * (warp >> 2);  // the warp's tokens and value columns in dU
  const bf16* kh = k + head_base(b, h, d, d.K);
  const bf16* qh = q + head_base(b, h, d, d.K);
  const bf16* gh = dout + head_base(b, h, d, d.V) + j0;
  const int64_t srow0 = bh * d.NC * kC;
  const int64_t vw = std::min<int64_t>(kBV, d.V - j0);  // valid value columns of the block (may be ≤ 0: padding)

  auto load_chunk = [&](int64_t c, int buf) {
    cuda::load_rows<D, kC, kSeqThreads>(sm.wb(buf), w + (srow0 + c * kC) * D, D, 0, kC, D, true);
    cuda::load_rows<D, kC, kSeqThreads>(sm.kb(buf), kh, d.H * d.K, c * kC, d.T, d.K, d.vk);
    cuda::load_rows<D, kC, kSeqThreads>(sm.qb(buf), qh, d.H * d.K, c * kC, d.T, d.K, d.vk);
    cuda::load_rows<kBV, kC, kSeqThreads>(sm.gb(buf), gh, d.H * d.V, c * kC, d.T, vw, d.vv);
    cuda::load_rows<kBV, kC, kSeqThreads>(sm.dub(buf), du + (srow0 + c * kC) * D + j0, D, 0, kC, kBV, true);
    if (tid < kDl / 4) cuda::cp_async_16(sm.dlb(buf) + 4 * tid, dl + (bh * d.NC + c) * kDl + 4 * tid, 16);
  };

  float st[NS][4];  // the warp's part of dS (update warps only)
  state_load(st, upd ? ds_final : nullptr, bh, j0, mrow, kcol, d);
  // The forward pass's ring, walked in reverse: step it handles chunk NC − 1 − it.
  ring_start(d.NC, [&](int64_t it, int buf) { load_chunk(d.NC - 1 - it, buf); });
  int buf = 0;  // it % kStages, kept incrementally
  for (int64_t c = d.NC - 1, it = 0; c >= 0; --c, ++it, buf = buf + 1 == kStages ? 0 : buf + 1) {
    if (upd) {
      store_frag_bf16(sm.s, C::LD, mrow, kcol, st);
      store_frag_bf16(dhs + ((bh * d.NC + c) * D + j0) * D, D, mrow, kcol, st);
    }
    cuda::cp_async_wait<kStages - 2>();
    __syncthreads();
    if (c - (kStages - 1) >= 0) load_chunk(c - (kStages - 1), buf == 0 ? kStages - 1 : buf - 1);
    cuda::cp_async_commit();
    const float* dlc = sm.dlb(buf);
    {  // dU = dU_intra + diag(d) K dSᵀ for the warp's 16 tokens and 16 value rows; −dU and diag(γ) dO to shared.
      float acc[2][4];
      tokens_by_state<D>(acc, sm.kb(buf), sm.s, tw, jw);
      bf16* duc = du + (srow0 + c * kC) * D + j0;
#pragma unroll
      for (int n = 0; n < 2; ++n)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int t = tw + g + 8 * half, j = jw + 8 * n + c2;
          const float2 di = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(sm.dub(buf) + t * kLdU + j));
          const float2 go = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(sm.gb(buf) + t * kLdU + j));
          const float x0 = fmaf(dlc[t], acc[n][2 * half], di.x), x1 = fmaf(dlc[t], acc[n][2 * half + 1], di.y);
          *reinterpret_cast<__nv_bfloat162*>(duc + t * D + j) = __floats2bfloat162_rn(x0, x1);
          *reinterpret_cast<__nv_bfloat162*>(sm.dun + t * kLdU + j) = __floats2bfloat162_rn(-x0, -x1);
          const float gt = dlc[kC + t];
          *reinterpret_cast<__nv_bfloat162*>(sm.gg + t * kLdU + j) = __floats2bfloat162_rn(gt * go.x, gt * go.y);
        }
    }
    __syncthreads();
    if (upd) {
      const float gl = dlc[2 * kC - 1];
#pragma unroll
      for (int n = 0; n < NS; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) st[n][e] *= gl;
      state_accumulate<D>(st, sm.gg, sm.qb(buf), mrow, kcol);
      state_accumulate<D>(st, sm.dun, sm.wb(buf), mrow, kcol);
    }
  }
  if (upd && ds0 != nullptr) state_store(st, ds0, bh, j0, mrow, kcol, d);
}

// grads_qk: the terms of the chunk's adjoint that use dO (X = dO S₀, G1 = dO Uᵀ) and dS (Z = U dS):
//   dq = diag(γ) X + (G1∘D) K (final);  dk₁ = (G1∘D)ᵀ Q + diag(d) Z (fp32 scratch, completed by grads_w);
//   ∂D_{t,s} = G1_{t,s} q_t·k_s (s < t), ∂γ_t = q_t·X_t, ∂d_s += k_s·Z_s, ∂γ_{C−1} += <dS, S₀> → dα (written).
template <int D>
struct GradsQkSmem {
  bf16 *q, *k, *g, *u, *h, *ds, *gd;
  float *dm, *dd, *al, *gam, *dm1, *kz, *red;
  template <typename B>
  __host__ __device__ static GradsQkSmem carve(B base, std::size_t* bytes = nullptr) {
    cuda::Carver<B> c{base};
    GradsQkSmem s;
    s.q = c.template take<bf16>(kC * Cfg<D>::LD);
    s.k = c.template take<bf16>(kC * Cfg<D>::LD);
    s.g = c.template take<bf16>(kC * Cfg<D>::LD);
    s.u = c.template take<bf16>(kC * Cfg<D>::LD);
    s.h = c.template take<bf16>(D * Cfg<D>::LD);
    s.ds = c.template take<bf16>(D * Cfg<D>::LD);
    s.gd = c.template take<bf16>(kC * (kC + 8));  // G1∘D [t][s]
    s.dm = c.template take<float>(kC * kLdC);
    s.dd = c.template take<float>(kC * kLdC);
    s.al = c.template take<float>(kC);
    s.gam = c.template take<float>(kC);
    s.dm1 = c.template take<float>(kC);
    s.kz = c.template take<float>(kC);
    s.red = c.template take<float>(kWarps);
    if (bytes) *bytes = c.off;
    return s;
  }
};

template <int D>
__global__ void __launch_bounds__(kThreads) grads_qk_kernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                                                            const bf16* __restrict__ dout, const bf16* __restrict__ u,
                                                            const bf16* __restrict__ hs, const bf16* __restrict__ dhs,
                                                            const float* __restrict__ alpha, bf16* __restrict__ dq,
                                                            float* __restrict__ dk1, float* __restrict__ dalpha,
                                                            Dims d) {
  using C = Cfg<D>;
  constexpr int LDG = kC + 8;
  extern __shared__ __align__(128) unsigned char smem[];
  const GradsQkSmem<D> sm = GradsQkSmem<D>::carve(smem);
  const ChunkPos pos = chunk_pos(d);
  const int64_t c = pos.c, bh = pos.bh, b = pos.b, h = pos.h, t0 = pos.t0, row0 = pos.row0;
  const int L = pos.L;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, c2 = (lane & 3) * 2;
  load_tokens<D>(sm.q, q, d.K, d.vk, pos, d);
  load_tokens<D>(sm.k, k, d.K, d.vk, pos, d);
  load_tokens<D>(sm.g, dout, d.V, d.vv, pos, d);
  cuda::load_rows<D, kC, kThreads>(sm.u, u + row0 * D, D, 0, kC, D, true);
  cuda::load_rows<D, D, kThreads>(sm.h, hs + (bh * d.NC + c) * D * D, D, 0, D, D, true);
  cuda::load_rows<D, D, kThreads>(sm.ds, dhs + (bh * d.NC + c) * D * D, D, 0, D, D, true);
  cuda::cp_async_commit();
  const int64_t a0 = pos.a0;
  build_decays(alpha, a0, d.H, L, sm.al, sm.gam, sm.dm);
  cuda::cp_async_wait<0>();
  __syncthreads();
  const int r0 = 16 * warp;
  const float gam0 = sm.gam[r0 + g], gam1 = sm.gam[r0 + g + 8];
  const float dl0 = sm.dm[(kC - 1) * kLdC + r0 + g], dl1 = sm.dm[(kC - 1) * kLdC + r0 + g + 8];

  float dqa[C::ND][4], dka[C::ND][4];
  {  // X = dO S₀ → dq = γ∘X, ∂γ_t = q_t·X_t
    uint32_t ga[C::KS][4];
    load_a_all(ga, sm.g + r0 * C::LD, C::LD);
    zero(dqa);
    gemm_regs_a<true>(dqa, ga, sm.h, C::LD);
    const float x0 = row_dot(dqa, 0, sm.q + (r0 + g) * C::LD), x1 = row_dot(dqa, 1, sm.q + (r0 + g + 8) * C::LD);
    if ((lane & 3) == 0) {
      sm.dm1[r0 + g] = x0;
      sm.dm1[r0 + g + 8] = x1;
    }
#pragma unroll
    for (int n = 0; n < C::ND; ++n) {
      dqa[n][0] *= gam0;
      dqa[n][1] *= gam0;
      dqa[n][2] *= gam1;
      dqa[n][3] *= gam1;
    }
    // G1 = dO Uᵀ and Q Kᵀ (s ≤ t): ∂D = G1·(QKᵀ), G1∘D → registers (dq) and shared memory (dk).
    float g1[kC / 8][4], qk[kC / 8][4];
    zero(g1);
    zero(qk);
    gemm_regs_a<false>(g1, ga, sm.u, C::LD, 0, C::KS, 0, warp + 1);
    uint32_t qa[C::KS][4];
    load_a_all(qa, sm.q + r0 * C::LD, C::LD);
    gemm_regs_a<false>(qk, qa, sm.k, C::LD, 0, C::KS, 0, warp + 1);
#pragma unroll
    for (int n = 0; n < kC / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int t = r0 + g + 8 * (e >> 1), s = 8 * n + c2 + (e & 1);
        sm.dd[t * kLdC + s] = s < t ? g1[n][e] * qk[n][e] : 0.f;
        g1[n][e] = s <= t ? g1[n][e] * sm.dm[t * kLdC + s] : 0.f;
      }
    store_frag_bf16(sm.gd, LDG, r0, 0, g1);
    uint32_t pa[kC / 16][4];
#pragma unroll
    for (int ks = 0; ks < kC / 16; ++ks) cuda::pack_a_from_c(pa[ks], g1[2 * ks], g1[2 * ks + 1]);
    gemm_regs_a<true>(dqa, pa, sm.k, C::LD, 0, warp + 1);
  }
  {  // Z = U dS → dk₁ = diag(d) Z, ∂d_s = k_s·Z_s
    uint32_t ua[C::KS][4];
    load_a_all(ua, sm.u + r0 * C::LD, C::LD);
    zero(dka);
    gemm_regs_a<true>(dka, ua, sm.ds, C::LD);
    const float z0 = row_dot(dka, 0, sm.k + (r0 + g) * C::LD), z1 = row_dot(dka, 1, sm.k + (r0 + g + 8) * C::LD);
    if ((lane & 3) == 0) {
      sm.kz[r0 + g] = z0;
      sm.kz[r0 + g + 8] = z1;
    }
#pragma unroll
    for (int n = 0; n < C::ND; ++n) {
      dka[n][0] *= dl0;
      dka[n][1] *= dl0;
      dka[n][2] *= dl1;
      dka[n][3] *= dl1;
    }
  }
  {  // <dS, S₀> over the padded D × D tiles (padding is zero)
    float s = 0.f;
    for (int e = tid; e < D * D / 2; e += kThreads) {
      const int r = (2 * e) / D, col = (2 * e) % D;
      const float2 x = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(sm.ds + r * C::LD + col));
      const float2 y = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(sm.h + r * C::LD + col));
      s = fmaf(x.x, y.x, fmaf(x.y, y.y, s));
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) sm.red[warp] = s;
  }
  __syncthreads();  // G1∘D, ∂D, ∂γ, k·Z, the partial sums visible
  {  // dk₁ += (G1∘D)ᵀ Q: rows s of the warp, t ≥ s
    uint32_t a[kC / 16][4];
#pragma unroll
    for (int ks = 0; ks < kC / 16; ++ks)
      if (ks >= warp) cuda::load_a_t(a[ks], sm.gd, LDG, r0, 16 * ks);
    gemm_regs_a<true>(dka, a, sm.q, C::LD, warp, kC / 16);
  }
  // dk₁ (fp32 scratch, all rows and columns) and dq (bf16, rows < L, columns < K).
  float* dkb = dk1 + row0 * D;
#pragma unroll
  for (int half = 0; half < 2; ++half)
#pragma unroll
    for (int n = 0; n < C::ND; ++n)
      *reinterpret_cast<float2*>(dkb + (r0 + g + 8 * half) * D + 8 * n + c2) =
          make_float2(dka[n][2 * half], dka[n][2 * half + 1]);
  store_rows_bf16(dq + head_base(b, h, d, d.K) + t0 * d.H * d.K, d.H * d.K, r0, L, d.K, dqa);
  // The end-of-chunk terms, then dα (first part: written).
  if (tid < kC) sm.dd[(kC - 1) * kLdC + tid] += sm.kz[tid];
  if (tid == kC) sm.dm1[kC - 1] += (sm.red[0] + sm.red[1]) + (sm.red[2] + sm.red[3]);
  horner_dalpha(sm.dd, sm.dm1, sm.dm, sm.al, L, dalpha, a0, d.H, false);
}

// grads_w: the terms through dW = Tᵀ dU (the WY form's adjoint):
//   dv = diag(β) dW;  Y = dW S₀, G2 = dW Uᵀ, M_{t,s} = −G2_{t,s} β_t D_{t,s} (s < t);
//   dk = dk₁ − diag(βγ) Y + (M + Mᵀ) K (final);  dβ_t = dW_t·v_t − γ_t k_t·Y_t − Σ_{s<t} G2_{t,s} D_{t,s} k_t·k_s;
//   ∂D_{t,s} = −G2_{t,s} β_t k_t·k_s (s < t), ∂γ_t = −β_t k_t·Y_t → dα (added to grads_qk's part).
template <int D>
struct GradsWSmem {
  bf16 *t, *du, *v, *u, *k, *h;
  float *dm, *dd, *mm, *al, *gam, *be, *dm1;
  template <typename B>
  __host__ __device__ static GradsWSmem carve(B base, std::size_t* bytes = nullptr) {
    cuda::Carver<B> c{base};
    GradsWSmem s;
    s.t = c.template take<bf16>(kC * (kC + 8));
    s.du = c.template take<bf16>(kC * Cfg<D>::LD);
    s.v = c.template take<bf16>(kC * Cfg<D>::LD);
    s.u = c.template take<bf16>(kC * Cfg<D>::LD);
    s.k = c.template take<bf16>(kC * Cfg<D>::LD);
    s.h = c.template take<bf16>(D * Cfg<D>::LD);
    s.dm = c.template take<float>(kC * kLdC);
    s.dd = c.template take<float>(kC * kLdC);
    s.mm = c.template take<float>(kC * kLdC);
    s.al = c.template take<float>(kC);
    s.gam = c.template take<float>(kC);
    s.be = c.template take<float>(kC);
    s.dm1 = c.template take<float>(kC);
    if (bytes) *bytes = c.off;
    return s;
  }
};

template <int D>
__global__ void __launch_bounds__(kThreads) grads_w_kernel(const bf16* __restrict__ k, const bf16* __restrict__ v,
                                                           const bf16* __restrict__ tm, const bf16* __restrict__ du,
                                                           const bf16* __restrict__ u, const bf16* __restrict__ hs,
                                                           const float* __restrict__ alpha,
                                                           const float* __restrict__ beta,
                                                           const float* __restrict__ dk1, bf16* __restrict__ dk,
                                                           bf16* __restrict__ dv, float* __restrict__ dalpha,
                                                           float* __restrict__ dbeta, Dims d) {
  using C = Cfg<D>;
  constexpr int LDT = kC + 8;
  extern __shared__ __align__(128) unsigned char smem[];
  const GradsWSmem<D> sm = GradsWSmem<D>::carve(smem);
  const ChunkPos pos = chunk_pos(d);
  const int64_t c = pos.c, bh = pos.bh, b = pos.b, h = pos.h, t0 = pos.t0, row0 = pos.row0;
  const int L = pos.L;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, c2 = (lane & 3) * 2;
  cuda::load_rows<kC, kC, kThreads>(sm.t, tm + row0 * kC, kC, 0, kC, kC, true);
  cuda::load_rows<D, kC, kThreads>(sm.du, du + row0 * D, D, 0, kC, D, true);
  load_tokens<D>(sm.v, v, d.V, d.vv, pos, d);
  cuda::load_rows<D, kC, kThreads>(sm.u, u + row0 * D, D, 0, kC, D, true);
  load_tokens<D>(sm.k, k, d.K, d.vk, pos, d);
  cuda::load_rows<D, D, kThreads>(sm.h, hs + (bh * d.NC + c) * D * D, D, 0, D, D, true);
  cuda::cp_async_commit();
  const int64_t a0 = pos.a0;
  if (tid < kC) sm.be[tid] = tid < L ? beta[a0 + tid * d.H] : 0.f;
  build_decays(alpha, a0, d.H, L, sm.al, sm.gam, sm.dm);
  cuda::cp_async_wait<0>();
  __syncthreads();
  const int r0 = 16 * warp;
  const int ta = r0 + g, tb = r0 + g + 8;
  const float be0 = sm.be[ta], be1 = sm.be[tb], gam0 = sm.gam[ta], gam1 = sm.gam[tb];

  // dW = Tᵀ dU for the warp's rows t (T[s][t] ≠ 0 for s ≥ t).
  float dw[C::ND][4];
  zero(dw);
  {
    uint32_t a[kC / 16][4];
#pragma unroll
    for (int ks = 0; ks < kC / 16; ++ks)
      if (ks >= warp) cuda::load_a_t(a[ks], sm.t, LDT, r0, 16 * ks);
    gemm_regs_a<true>(dw, a, sm.du, C::LD, warp, kC / 16);
  }
  float db0 = row_dot(dw, 0, sm.v + ta * C::LD), db1 = row_dot(dw, 1, sm.v + tb * C::LD);  // dW_t·v_t
  store_rows_bf16(dv + head_base(b, h, d, d.V) + t0 * d.H * d.V, d.H * d.V, r0, L, d.V, dw, be0, be1);  // β∘dW
  uint32_t wa[C::KS][4];  // dW as the A operand (k = value index)
#pragma unroll
  for (int ks = 0; ks < C::KS; ++ks) cuda::pack_a_from_c(wa[ks], dw[2 * ks], dw[2 * ks + 1]);

  float dka[C::ND][4];
  {  // Y = dW S₀: dk −= βγ∘Y, dβ −= γ k·Y, ∂γ = −β k·Y
    zero(dka);
    gemm_regs_a<true>(dka, wa, sm.h, C::LD);
    const float y0 = row_dot(dka, 0, sm.k + ta * C::LD), y1 = row_dot(dka, 1, sm.k + tb * C::LD);
    db0 -= gam0 * y0;
    db1 -= gam1 * y1;
    if ((lane & 3) == 0) {
      sm.dm1[ta] = -be0 * y0;
      sm.dm1[tb] = -be1 * y1;
    }
    const float m0 = -be0 * gam0, m1 = -be1 * gam1;
#pragma unroll
    for (int n = 0; n < C::ND; ++n) {
      dka[n][0] *= m0;
      dka[n][1] *= m0;
      dka[n][2] *= m1;
      dka[n][3] *= m1;
    }
  }
  {  // G2 = dW Uᵀ and K Kᵀ for s < t
    float g2[kC / 8][4], kk[kC / 8][4];
    zero(g2);
    zero(kk);
    gemm_regs_a<false>(g2, wa, sm.u, C::LD, 0, C::KS, 0, warp + 1);
    uint32_t ka[C::KS][4];
    load_a_all(ka, sm.k + r0 * C::LD, C::LD);
    gemm_regs_a<false>(kk, ka, sm.k, C::LD, 0, C::KS, 0, warp + 1);
    float s0 = 0.f, s1 = 0.f;
#pragma unroll
    for (int n = 0; n < kC / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int t = r0 + g + 8 * (e >> 1), s = 8 * n + c2 + (e & 1);
        const bool lower = s < t;
        const float bt = (e >> 1) ? be1 : be0;
        const float gd = lower ? g2[n][e] * sm.dm[t * kLdC + s] : 0.f;
        const float x = gd * kk[n][e];
        if (e >> 1) {
          s1 += x;
        } else {
          s0 += x;
        }
        sm.dd[t * kLdC + s] = lower ? -g2[n][e] * bt * kk[n][e] : 0.f;
        sm.mm[t * kLdC + s] = -bt * gd;
      }
    s0 += __shfl_xor_sync(0xffffffffu, s0, 1);
    s0 += __shfl_xor_sync(0xffffffffu, s0, 2);
    s1 += __shfl_xor_sync(0xffffffffu, s1, 1);
    s1 += __shfl_xor_sync(0xffffffffu, s1, 2);
    db0 -= s0;
    db1 -= s1;
  }
  if ((lane & 3) == 0) {
    if (ta < L) dbeta[a0 + ta * d.H] = db0;
    if (tb < L) dbeta[a0 + tb * d.H] = db1;
  }
  __syncthreads();  // M complete
  {  // dk += (M + Mᵀ) K
    uint32_t a[kC / 16][4];
#pragma unroll
    for (int ks = 0; ks < kC / 16; ++ks) {
      const int s0 = 16 * ks + c2;
      auto at = [&](int t, int s) { return sm.mm[t * kLdC + s] + sm.mm[s * kLdC + t]; };
      a[ks][0] = cuda::pack_bf16(at(ta, s0), at(ta, s0 + 1));
      a[ks][1] = cuda::pack_bf16(at(tb, s0), at(tb, s0 + 1));
      a[ks][2] = cuda::pack_bf16(at(ta, s0 + 8), at(ta, s0 + 9));
      a[ks][3] = cuda::pack_bf16(at(tb, s0 + 8), at(tb, s0 + 9));
    }
    gemm_regs_a<true>(dka, a, sm.k, C::LD);
  }
  {  // dk = dk₁ + the above (bf16, rows < L, columns < K)
    const float* dkb1 = dk1 + row0 * D;
#pragma unroll
    for (int half = 0; half < 2; ++half)
#pragma unroll
      for (int n = 0; n < C::ND; ++n) {
        const float2 p = *reinterpret_cast<const float2*>(dkb1 + (r0 + g + 8 * half) * D + 8 * n + c2);
        dka[n][2 * half] += p.x;
        dka[n][2 * half + 1] += p.y;
      }
    store_rows_bf16(dk + head_base(b, h, d, d.K) + t0 * d.H * d.K, d.H * d.K, r0, L, d.K, dka);
  }
  horner_dalpha(sm.dd, sm.dm1, sm.dm, sm.al, L, dalpha, a0, d.H, true);
}

// ---------------------------------------------------------------------------------------------------------
// host

const bf16* bf(const Tensor& t) { return reinterpret_cast<const bf16*>(t.data<BFloat16>()); }
bf16* bf_mut(const Tensor& t) { return reinterpret_cast<bf16*>(t.data<BFloat16>()); }
bool rows16(const Tensor& t, int64_t X) {
  return X % 8 == 0 && reinterpret_cast<uintptr_t>(t.data<BFloat16>()) % 16 == 0;
}

// The forward's state stages, shared by forward and backward: prep (w, u = Uv, dl and, when with_t, T) and the state
// pass (U over Uv, the chunk-start states hs, the final state into s_final when given).
struct StateScratch {
  Tensor w, u, dl, hs, tm;
};
template <int D>
StateScratch run_state_stages(const char* op, const Tensor& k, const Tensor& v, const Tensor& alpha,
                              const Tensor& beta, const Tensor& s0, float* s_final, bool with_t, const Dims& d) {
  const Device dev = k.device();
  cudaStream_t s = cuda::stream_of(k);
  const int64_t rows = d.NC * kC;
  StateScratch sc{empty({d.BH, rows, D}, DType::BFloat16, dev), empty({d.BH, rows, D}, DType::BFloat16, dev),
                  empty({d.BH, d.NC, kDl}, DType::Float32, dev), empty({d.BH, d.NC, D, D}, DType::BFloat16, dev),
                  with_t ? empty({d.BH, rows, kC}, DType::BFloat16, dev) : Tensor()};
  std::size_t bytes = 0;
  PrepSmem<D>::carve(uintptr_t{0}, &bytes);
  cuda::launch_kernel(op, "gated_delta prep_kernel (bf16)", prep_kernel<D>, d.NC * d.BH, kThreads, bytes, dev.index,
                      s, bf(k), bf(v), alpha.data<float>(), beta.data<float>(), bf_mut(sc.w), bf_mut(sc.u),
                      sc.dl.data<float>(), with_t ? bf_mut(sc.tm) : nullptr, d);
  StateSmem<D>::carve(uintptr_t{0}, &bytes);
  cuda::launch_kernel(op, "gated_delta state_kernel (bf16)", state_kernel<D>, (D / kBV) * d.BH, kSeqThreads, bytes,
                      dev.index, s, bf(k), bf(sc.w), bf_mut(sc.u), sc.dl.data<float>(),
                      s0.defined() ? s0.data<float>() : nullptr, bf_mut(sc.hs), s_final, d);
  return sc;
}

template <int D>
void forward_d(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& alpha, const Tensor& beta,
               const Tensor& s0, GatedDeltaOutput& out, const Dims& d) {
  const char* op = "gated_delta_forward";
  const StateScratch sc =
      run_state_stages<D>(op, k, v, alpha, beta, s0, out.final_state.data<float>(), /*with_t=*/false, d);
  std::size_t bytes = 0;
  OutSmem<D>::carve(uintptr_t{0}, &bytes);
  cuda::launch_kernel(op, "gated_delta out_kernel (bf16)", out_kernel<D>, d.NC * d.BH, kThreads, bytes,
                      q.device().index, cuda::stream_of(q), bf(q), bf(k), bf(sc.u), bf(sc.hs), alpha.data<float>(),
                      bf_mut(out.o), d);
}

// gr: dq, dk, dv, dalpha, dbeta allocated; dinitial_state allocated when s0 is defined.
template <int D>
void backward_d(const Tensor& dout, const Tensor& ds_final, const Tensor& q, const Tensor& k, const Tensor& v,
                const Tensor& alpha, const Tensor& beta, const Tensor& s0, GatedDeltaGrads& gr, const Dims& d) {
  const char* op = "gated_delta_backward";
  const Device dev = q.device();
  cudaStream_t s = cuda::stream_of(q);
  const int64_t rows = d.NC * kC;
  // Recompute the forward's stages (with T), then the state gradients in reverse, then the gradients.
  const StateScratch sc = run_state_stages<D>(op, k, v, alpha, beta, s0, nullptr, /*with_t=*/true, d);
  const Tensor du = empty({d.BH, rows, D}, DType::BFloat16, dev);
  const Tensor dhs = empty({d.BH, d.NC, D, D}, DType::BFloat16, dev);
  const Tensor dk1 = empty({d.BH, rows, D}, DType::Float32, dev);
  const float* a32 = alpha.data<float>();
  std::size_t bytes = 0;
  DuSmem<D>::carve(uintptr_t{0}, &bytes);
  cuda::launch_kernel(op, "gated_delta du_intra_kernel (bf16)", du_intra_kernel<D>, d.NC * d.BH, kThreads, bytes,
                      dev.index, s, bf(q), bf(k), bf(dout), a32, bf_mut(du), d);
  StateBwdSmem<D>::carve(uintptr_t{0}, &bytes);
  cuda::launch_kernel(op, "gated_delta state_bwd_kernel (bf16)", state_bwd_kernel<D>, (D / kBV) * d.BH, kSeqThreads,
                      bytes, dev.index, s, bf(q), bf(k), bf(dout), bf(sc.w), bf_mut(du), sc.dl.data<float>(),
                      ds_final.defined() ? ds_final.data<float>() : nullptr, bf_mut(dhs),
                      gr.dinitial_state.defined() ? gr.dinitial_state.data<float>() : nullptr, d);
  GradsQkSmem<D>::carve(uintptr_t{0}, &bytes);
  cuda::launch_kernel(op, "gated_delta grads_qk_kernel (bf16)", grads_qk_kernel<D>, d.NC * d.BH, kThreads, bytes,
                      dev.index, s, bf(q), bf(k), bf(dout), bf(sc.u), bf(sc.hs), bf(dhs), a32, bf_mut(gr.dq),
                      dk1.data<float>(), gr.dalpha.data<float>(), d);
  GradsWSmem<D>::carve(uintptr_t{0}, &bytes);
  cuda::launch_kernel(op, "gated_delta grads_w_kernel (bf16)", grads_w_kernel<D>, d.NC * d.BH, kThreads, bytes,
                      dev.index, s, bf(k), bf(v), bf(sc.tm), bf(du), bf(sc.u), bf(sc.hs), a32, beta.data<float>(),
                      dk1.data<float>(), bf_mut(gr.dk), bf_mut(gr.dv), gr.dalpha.data<float>(),
                      gr.dbeta.data<float>(), d);
}

// f.template operator()<D>() with D ∈ {32, 64, 128} the padded head dim for max(K, V).
template <typename F>
void with_head_dim(const Dims& d, F&& f) {
  const int64_t m = std::max(d.K, d.V);
  if (m <= 32) {
    f.template operator()<32>();
  } else if (m <= 64) {
    f.template operator()<64>();
  } else {
    f.template operator()<128>();
  }
}

Dims make_dims(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& dout) {
  Dims d{};
  d.B = q.size(0);
  d.T = q.size(1);
  d.H = q.size(2);
  d.K = q.size(3);
  d.V = v.size(3);
  d.BH = d.B * d.H;
  d.NC = (d.T + kC - 1) / kC;
  d.vk = rows16(q, d.K) && rows16(k, d.K);
  d.vv = rows16(v, d.V) && (!dout.defined() || rows16(dout, d.V));
  return d;
}

}  // namespace

GatedDeltaGrads gated_delta_backward_mma(const Tensor& dout, const Tensor& dfinal_state, const Tensor& q,
                                         const Tensor& k, const Tensor& v, const Tensor& alpha, const Tensor& beta,
                                         const Tensor& initial_state) {
  const Device dev = q.device();
  cuda::DeviceGuard guard(dev.index);
  const Dims d = make_dims(q, k, v, dout);
  GatedDeltaGrads g{empty(q.shape(), DType::BFloat16, dev),
                    empty(k.shape(), DType::BFloat16, dev),
                    empty(v.shape(), DType::BFloat16, dev),
                    empty(alpha.shape(), DType::Float32, dev),
                    empty(beta.shape(), DType::Float32, dev),
                    initial_state.defined() ? empty(initial_state.shape(), DType::Float32, dev) : Tensor()};
  if (d.BH == 0) return g;
  with_head_dim(d, [&]<int D>() { backward_d<D>(dout, dfinal_state, q, k, v, alpha, beta, initial_state, g, d); });
  return g;
}

GatedDeltaOutput gated_delta_forward_mma(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& alpha,
                                         const Tensor& beta, const Tensor& initial_state) {
  const Device dev = q.device();
  cuda::DeviceGuard guard(dev.index);
  const Dims d = make_dims(q, k, v, Tensor());
  GatedDeltaOutput out{empty({d.B, d.T, d.H, d.V}, DType::BFloat16, dev),
                       empty({d.B, d.H, d.V, d.K}, DType::Float32, dev)};
  if (d.BH == 0) return out;  // (T = 0: no chunks; the state pass still writes the final state = the initial one)
  with_head_dim(d, [&]<int D>() { forward_d<D>(q, k, v, alpha, beta, initial_state, out, d); });
  return out;
}

}  // namespace hydra
