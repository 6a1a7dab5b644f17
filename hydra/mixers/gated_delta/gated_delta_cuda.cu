// Gated delta rule on CUDA: chunkwise forward, chunkwise backward and the one-token step (contract and shapes in
// gated_delta.h; the entry points are declared in gated_delta_cuda.h and called only from the dispatch functions
// of gated_delta_cpu.cpp, which have checked the arguments and made every input contiguous).
//
// Math (per head (b, h); state S is V×K, rows = value index):
//   u_t = β_t (v_t − α_t S_{t−1} k_t),   S_t = α_t S_{t−1} + u_t k_tᵀ,   o_t = S_t q_t.
// Chunkwise form, chunk length C = kC = 32 (the `chunk` argument of the public API is not used on CUDA: the math
// is the exact recurrence and the chunk length only changes the order of summation). Per chunk of tokens
// t = 0..C−1 with start state S₀ and D_{t,s} = Π_{r=s+1..t} α_r (D_{t,t} = 1, γ_t = D_{t,−1}):
//   A_{t,s} = β_t D_{t,s} (k_t·k_s) (s < t),   T = (I + A)⁻¹ (unit lower triangular, forward substitution)
//   Wk = T diag(β γ) K,   Uv = T diag(β) V          (state-independent: all chunks in parallel)
//   U = Uv − Wk S₀ᵀ                                  (the WY/UT form of the chunk's u_t; sequential over chunks)
//   S_end = γ_{C−1} S₀ + Uᵀ diag(D_{C−1,·}) K
//   O = diag(γ) Q S₀ᵀ + (QKᵀ ∘ D) U                  (D masked to s ≤ t)
// A chunk that runs past T is padded with tokens q = k = v = do = 0, α = 1, β = 0: such tokens change nothing
// (causality: they come after every real token of the chunk; u = 0 for them; α = 1 keeps D_{C−1,s} = D_{L−1,s}),
// so every chunk is computed at full size C without length checks. K and V are padded with zeros to KP, VP =
// multiples of 32 (any K, V in 1..128); padded key columns and value rows of every state stay exactly zero.
// The decay products D are running products (no logs, no division, no clamp): α may be 0 or tiny.
//
// Backward (adjoint of the chunk form; dO = ∂ℓ/∂O, dS = ∂ℓ/∂S_end of the chunk):
//   dU  = (QKᵀ ∘ D)ᵀ dO + diag(D_{C−1,·}) K dSᵀ
//   dS₀ = γ_{C−1} dS + dOᵀ diag(γ) Q − dUᵀ Wk          (the carried state gradient; sequential, reverse)
//   dW = Tᵀ dU (the gradient of (I + A) U = W, W_t = β_t (v_t − γ_t S₀ k_t));  dv_t = β_t dW_t
//   G1_{t,s} = dO_t·u_s,  G2_{t,s} = dW_t·u_s,  X = dO S₀,  Y = dW S₀,  Z = U dS   (contractions over V)
//   dq = diag(γ) X + (G1∘D) K
//   dk = (G1∘D)ᵀ Q + diag(D_{C−1,·}) Z − diag(βγ) Y + (M + Mᵀ) K,   M_{t,s} = −G2_{t,s} β_t D_{t,s} (s < t)
//   dβ_t = dW_t·v_t − γ_t k_t·Y_t − Σ_{s<t} G2_{t,s} D_{t,s} (k_t·k_s)
//   dD_{t,s} = G1_{t,s}(q_t·k_s) − [s<t] G2_{t,s} β_t (k_t·k_s) + [t = C−1] k_s·Z_s        (0 ≤ s ≤ t)
//   dD_{t,−1} = q_t·X_t − β_t k_t·Y_t + [t = C−1] <dS, S₀>
//   dα_r = Σ_{t≥r} D_{t,r} Y_{t,r},  Y_{t,0} = dD_{t,−1},  Y_{t,r} = dD_{t,r−1} + α_{r−1} Y_{t,r−1}   (Horner; no
//   division by α).  The same derivation, written per token, is in gated_delta_cpu.cpp.
// Backward recomputes the chunk-start states from the saved inputs (ag::gated_delta saves only the inputs): it
// re-runs the two forward stages below (prep and state), keeping every chunk-start state in a scratch tensor.
//
// Kernels (every block has kThreads = 256 threads = 8 warps):
//   gated_delta_prep_kernel      one block per (chunk, b·h): D, A, T = (I + A)⁻¹ (lanes of warp 0 = columns of T,
//                                forward substitution), Wk and Uv (and T for backward) to fp32 scratch.
//   gated_delta_state_fwd_kernel one block per (32-row tile of V, b·h), sequential over chunks: the state tile
//                                (32 × KP, fp32) stays in shared memory; per chunk it is stored to the
//                                chunk-start scratch, then U = Uv − Wk S₀ᵀ (written over Uv) and the update.
//                                Rows of S evolve independently, hence the V tiling.
//   gated_delta_out_kernel       one block per (chunk, b·h): QKᵀ∘D once, then per V tile O = γ∘(Q S₀ᵀ) + (QKᵀ∘D)U.
//   gated_delta_du_intra_kernel  one block per (chunk, b·h): (QKᵀ∘D)ᵀ dO into the dU scratch.
//   gated_delta_state_bwd_kernel one block per (V tile, b·h), chunks in reverse: dS tile in shared memory; per
//                                chunk stores dS (the chunk's end-state gradient), completes dU, updates dS;
//                                writes dinitial_state at the end.
//   gated_delta_grads_kernel     one block per (chunk, b·h), all of K and V (V walked in 32-wide tiles): dv, the
//                                contractions over V into shared accumulators, then dq, dk, dα, dβ.
//   gated_delta_step_kernel      16 lanes per state row (b·h, j), the row in registers (16-byte accesses): S_j·k,
//                                u_j, the new row, o_j (sums over the 16 lanes).
// There are no atomics: every output element has one writer, so results are deterministic run to run. The chunk
// length is C = 32 for both input dtypes (32 = two 16-row MMA tiles; the state tiles are 32 value rows).
//
// Matrix products. Each kernel exists once; `if constexpr (kTensorCores<T>)` picks the product code inside it:
//  * float32 inputs: SIMT, true fp32 FFMA (no TF32, no tensor cores). Every matrix lives in shared memory as fp32
//    with a row stride of (columns + 1) (row- and column-wise walks bank-conflict free); a product is a block-wide
//    loop over 2×2 register tiles (for_each_tile / mm_acc): thread i takes tiles i, i + 256, ...; tile (mi, ni)
//    covers rows {mi, mi + M/2} and columns {ni, ni + N/2}.
//  * bfloat16 inputs: tensor cores, nvcuda::wmma m16n16k16 with bf16 operands and fp32 accumulators (mma_tiles):
//    warp w computes the 16×16 output tiles w, w + 8, ... (tile id = row tile · N/16 + column tile), optionally
//    starting from the fp32 matrix in shared memory (accumulation, e.g. the state update S ← γS + ...), stores the
//    tile to an fp32 row-major matrix (shared memory, or the fp32 scratch in global memory) and runs an elementwise
//    epilogue on it with the same warp (masking, decay, scaling, output conversion). Operands are staged in shared
//    memory as bf16 with a row stride of (columns + 8) (16-byte multiple, conflict-free ldmatrix rows); fp32
//    matrices that wmma loads or stores have a row stride of (columns + 4); every buffer is 32-byte aligned.
//    Transposed operands are the same buffers read col_major. Operand precision:
//      - q, k, v, dO are bf16 already: their bf16 copies are exact (Q Kᵀ, K Kᵀ are exact products, fp32 sums).
//      - every other operand is an fp32 quantity (T, Wk, U, dU, dW, P = QKᵀ∘D, G1∘D, M + Mᵀ, the state S₀ and the
//        state gradient dS, and q/dO rows scaled by decays): it is split into hi = bf16(x), lo = bf16(x − hi), and
//        the product uses hi·B + lo·B (one exact bf16 operand) or hi·hi + lo·hi + hi·lo (two split operands; the
//        dropped lo·lo term is ~2⁻¹⁸ relative). x = hi + lo holds to ~2⁻¹⁷ relative, so these products are accurate
//        to ~1e-5 relative, far inside the bf16 tolerance. kSplitOperands = false drops the lo terms (plain bf16
//        rounding of those operands, 1 MMA per product) -- faster, not the tested configuration.
//      - the states themselves (S, dS, the chunk-start scratch) and every accumulator stay fp32; only the MMA
//        operand copies of a state tile are bf16 (hi + lo).
//    Scalings by decays or gates that would sit between two products are folded into the operand being split
//    (Wk = (T diag(βγ)) K, Uv = (T diag β) V, S update with (diag(D_{C−1,·}) U)ᵀ K, dS update with (diag(γ) dO)ᵀ Q,
//    −Wk / −dU negated in the split) or applied in the epilogue (γ∘(Q S₀ᵀ), D_{C−1,s}·(K dSᵀ), the masks).
//    Stays SIMT in both paths: the forward substitution for T (32 sequential steps), the decay products, the
//    Horner sums for dα, the per-token dots (dβ, q·X, k·Y, k·Z, dW·v, <dS, S₀>) and the one-token step kernel.
//
// Work per chunk and head (multiply-adds; ×2 for FLOPs), C = 32:
//   forward   C·(3C·KP + 2C·VP + 3·KP·VP) + C³/6
//   backward  C·(8C·KP + 5C·VP + 8·KP·VP) + C³/6     (includes the recomputation of the forward stages)
// The C³/6 (substitution) is SIMT in both paths. With tensor cores (bf16 inputs) the split operands make the MMAs
// execute C·(4C·KP + 5C·VP + 7·KP·VP) forward and C·(12C·KP + 12C·VP + 20·KP·VP) backward multiply-adds (about
// 2.3× the useful work; half of it with kSplitOperands = false).
// Bytes per chunk and head (s = bytes of the input dtype): forward reads k three times (prep, state, out), q and v
// once (C·(4K + V)·s), writes o (C·V·s) and moves fp32 scratch: Wk (C·KP, written + read), Uv/U (C·VP, written,
// read + written, read), the chunk-start state (VP·KP, written + read). Backward moves about 4× the forward's
// scratch plus the inputs and gradients. Scratch memory: forward 4·BH·NC·(C·(KP + VP) + VP·KP) bytes; backward
// adds C·C, C·VP and VP·KP floats per chunk and head. Both paths move the same bytes (the scratch is fp32).
// Shared memory per block (KP = VP = 128): fp32 path up to ~163 KB (grads), bf16 path up to ~186 KB (grads).
//
// Reference: gated_delta_ref (float64 token loop; gradients by autograd through it):
// tests/hydra/test_cuda_gated_delta.cpp.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <climits>
#include <cstdint>
#include <type_traits>

#include "hydra/mixers/gated_delta/gated_delta_cuda.h"
#include "hydra/mixers/gated_delta/gated_delta_mma.h"
#include "tensor/check.h"
#include "tensor/cuda/common.cuh"
#include "tensor/dispatch.h"

namespace hydra {

namespace {

constexpr int kC = 32;             // chunk length (tokens)
constexpr int kBV = 32;            // value rows per state tile
constexpr int kThreads = 256;      // threads per block, every kernel
constexpr int kWarps = kThreads / 32;
constexpr int kLdC = kC + 1;       // row stride of C×C (and C×(C+1)) matrices in shared memory
constexpr int kLdBV = kBV + 1;     // row stride of C×kBV tiles
constexpr int kMaxHeadDim = 128;   // K and V: 1..kMaxHeadDim

static_assert(kC == 32 && kBV == 32, "the kernels map one warp lane to one token / value row of a tile");
static_assert(kThreads >= kC + 1 + 32, "build_decay needs kC + 1 threads; the prep kernel needs more than a warp");

// Tensor-core path (bfloat16 inputs). Row strides in elements: bf16 operand tiles (columns + 8: a multiple of 8
// elements = 16 bytes, as wmma requires; with columns a multiple of 32, 8 consecutive rows start in 8 distinct
// 16-byte bank groups, so fragment loads are conflict-free), fp32 matrices that wmma loads or stores (columns + 4: a
// multiple of 4 floats).
template <typename T>
constexpr bool kTensorCores = std::is_same_v<T, BFloat16>;
constexpr bool kSplitOperands = true;  // fp32 operands as hi + lo bf16 pairs (see the header comment)
constexpr int kLdCh = kC + 8;          // bf16 C×C and C×kBV operand tiles
constexpr int kLdCf = kC + 4;          // fp32 C×C and C×kBV matrices used by wmma
HYDRA_HD constexpr int ld_h(int cols) { return cols + 8; }  // bf16 operand rows of `cols` (KP or VP) elements
HYDRA_HD constexpr int ld_f(int cols) { return cols + 4; }  // fp32 wmma rows of `cols` (KP) elements
static_assert(kC % 16 == 0 && kBV % 16 == 0 && kLdCh % 8 == 0 && kLdCf % 4 == 0, "wmma tile shapes and strides");

struct Dims {
  int64_t B, T, H, K, V;
  int64_t BH, NC;  // B·H, number of chunks ⌈T / C⌉
  int KP, VP;      // K, V rounded up to a multiple of 32
};

// Shared-memory layout: offsets (in floats) computed by the same function on the host (size) and device (carve).
struct SmemPlan {
  int off = 0;
  HYDRA_HD int take(int n) {  // n floats
    const int o = off;
    off += n;
    return o;
  }
  HYDRA_HD int take_al(int n) {  // n floats, 32-byte aligned (wmma pointers)
    off = (off + 7) / 8 * 8;
    return take(n);
  }
  HYDRA_HD int take_bf(int n) { return take_al((n + 1) / 2); }  // n bf16 elements, 32-byte aligned
};

// ---------------------------------------------------------------------------------------------------------
// Device helpers

template <typename T>
__device__ __forceinline__ float to_f(T x) {
  return static_cast<float>(x);
}
template <typename T>
__device__ __forceinline__ T from_f(float x) {
  if constexpr (std::is_same_v<T, BFloat16>) {
    return BFloat16(x);
  } else {
    return x;
  }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block, returned to every thread. Every thread must call it; red: 32 floats of shared memory.
__device__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) red[w] = v;
  __syncthreads();
  v = lane < nw ? red[lane] : 0.f;
  return warp_sum(v);
}

// Element offset of token t of head (b, h) in a [B, T, H, Dd] tensor, and in a [B, T, H] tensor.
__device__ __forceinline__ int64_t tok_off(const Dims& d, int64_t b, int64_t h, int64_t t, int64_t Dd) {
  return ((b * d.T + t) * d.H + h) * Dd;
}
__device__ __forceinline__ int64_t gate_off(const Dims& d, int64_t b, int64_t h, int64_t t) {
  return (b * d.T + t) * d.H + h;
}
// Row of token t of chunk c of head bh in the per-token scratch tensors [BH, NC·C, ·].
__device__ __forceinline__ int64_t scratch_row(const Dims& d, int64_t bh, int64_t c, int t) {
  return (bh * d.NC + c) * kC + t;
}
// First element of the (VP × KP) chunk-start state (or state gradient) of chunk c of head bh.
__device__ __forceinline__ int64_t state_base(const Dims& d, int64_t bh, int64_t c) {
  return (bh * d.NC + c) * static_cast<int64_t>(d.VP) * d.KP;
}

using bf16 = __nv_bfloat16;

__device__ __forceinline__ void put(float* p, float x) { *p = x; }
__device__ __forceinline__ void put(bf16* p, float x) { *p = __float2bfloat16_rn(x); }
// x as the pair hi = bf16(x), lo = bf16(x − hi) (x − hi is exact in fp32; hi + lo = x to ~2⁻¹⁷ relative).
__device__ __forceinline__ void put_split(bf16* hi, bf16* lo, float x) {
  const bf16 h = __float2bfloat16_rn(x);
  *hi = h;
  *lo = __float2bfloat16_rn(x - __bfloat162float(h));
}
__device__ __forceinline__ bf16* as_bf16(float* p) { return reinterpret_cast<bf16*>(p); }

// The chunk's C tokens from t0 of a [B, T, H, Dd] tensor, columns col0 .. col0 + ncols − 1, into
// dst[t·ld + c] (fp32, or bf16: exact for bfloat16 inputs); zero past T or past Dd.
template <typename E, typename T>
__device__ void load_tokens(E* dst, int ld, const T* __restrict__ src, int64_t Dd, const Dims& d, int64_t b,
                            int64_t h, int64_t t0, int col0, int ncols) {
  for (int idx = threadIdx.x; idx < kC * ncols; idx += blockDim.x) {
    const int t = idx / ncols, c = idx - t * ncols;
    const int64_t tg = t0 + t, j = col0 + c;
    put(dst + t * ld + c, (tg < d.T && j < Dd) ? to_f(src[tok_off(d, b, h, tg, Dd) + j]) : 0.f);
  }
}

// hi/lo[r·ld + c] = the split of f(r, c) for r < rows, c < cols (a bf16 operand pair for mma_tiles).
template <typename F>
__device__ void split_tile(bf16* hi, bf16* lo, int ld, int rows, int cols, F&& f) {
  for (int idx = threadIdx.x; idx < rows * cols; idx += blockDim.x) {
    const int r = idx / cols, c = idx - r * cols;
    put_split(hi + r * ld + c, lo + r * ld + c, f(r, c));
  }
}

// rows × ncols of a row-major fp32 matrix (leading dim src_ld) into shared memory (leading dim ld), and back.
__device__ void load_tile(float* dst, int ld, const float* __restrict__ src, int64_t src_ld, int rows, int ncols) {
  for (int idx = threadIdx.x; idx < rows * ncols; idx += blockDim.x) {
    const int r = idx / ncols, c = idx - r * ncols;
    dst[r * ld + c] = src[r * src_ld + c];
  }
}
__device__ void store_tile(float* __restrict__ dst, int64_t dst_ld, const float* src, int ld, int rows, int ncols) {
  for (int idx = threadIdx.x; idx < rows * ncols; idx += blockDim.x) {
    const int r = idx / ncols, c = idx - r * ncols;
    dst[r * dst_ld + c] = src[r * ld + c];
  }
}

// α (1 past T) and, when `be` is given, β (0 past T) of the chunk's tokens.
__device__ void load_gates(float* al, float* be, const float* __restrict__ alpha, const float* __restrict__ beta,
                           const Dims& d, int64_t b, int64_t h, int64_t t0) {
  for (int t = threadIdx.x; t < kC; t += blockDim.x) {
    const int64_t tg = t0 + t;
    const bool ok = tg < d.T;
    al[t] = ok ? alpha[gate_off(d, b, h, tg)] : 1.f;
    if (be) be[t] = ok ? beta[gate_off(d, b, h, tg)] : 0.f;
  }
}

// Dm[t·kLdC + s + 1] = D_{t,s} = Π_{r=s+1..t} α_r for −1 ≤ s ≤ t (column 0 holds γ_t), 0 for s > t: the decay
// with the causal mask built in. Thread c = s + 1 (c ≤ C) walks its column as a running product.
__device__ void build_decay(float* Dm, const float* al) {
  const int col = threadIdx.x;
  if (col <= kC) {
    const int s = col - 1;
    float p = 1.f;
    for (int t = 0; t < kC; ++t) {
      if (t > s) p *= al[t];
      Dm[t * kLdC + col] = t >= s ? p : 0.f;
    }
  }
}

// dl[s] = D_{C−1,s} = Π_{r>s} α_r for s < C and dl[C] = γ_{C−1}: a suffix product, by one thread.
__device__ __forceinline__ void suffix_decay(float* dl, const float* al) {
  float p = 1.f;
  for (int s = kC - 1; s >= 0; --s) {
    dl[s] = p;
    p *= al[s];
  }
  dl[kC] = p;
}

// The 2×2 register tiles of an M×N output (M, N even) over the block: tile id = mi·(N/2) + ni goes to thread
// id mod blockDim; it covers rows {mi, mi + M/2} and columns {ni, ni + N/2}. f(m0, m1, n0, n1).
template <typename F>
__device__ __forceinline__ void for_each_tile(int M, int N, F&& f) {
  const int Mh = M >> 1, Nh = N >> 1;
  for (int id = threadIdx.x; id < Mh * Nh; id += blockDim.x) {
    const int mi = id / Nh, ni = id - mi * Nh;
    f(mi, mi + Mh, ni, ni + Nh);
  }
}

// c[r][q] += Σ_{k<Kc} a(m_r, k) · b(k, n_q)  (fp32 FFMA).
template <typename FA, typename FB>
__device__ __forceinline__ void mm_acc(float (&c)[2][2], int m0, int m1, int n0, int n1, int Kc, FA&& a, FB&& b) {
#pragma unroll 4
  for (int k = 0; k < Kc; ++k) {
    const float a0 = a(m0, k), a1 = a(m1, k), b0 = b(k, n0), b1 = b(k, n1);
    c[0][0] = fmaf(a0, b0, c[0][0]);
    c[0][1] = fmaf(a0, b1, c[0][1]);
    c[1][0] = fmaf(a1, b0, c[1][0]);
    c[1][1] = fmaf(a1, b1, c[1][1]);
  }
}

// Calls f(m, n, r, q) for the four elements of a tile.
template <typename F>
__device__ __forceinline__ void tile_elems(int m0, int m1, int n0, int n1, F&& f) {
  f(m0, n0, 0, 0);
  f(m0, n1, 0, 1);
  f(m1, n0, 1, 0);
  f(m1, n1, 1, 1);
}

// A bf16 MMA operand in shared memory: the matrix is hi + lo (lo null: hi alone, an exact bf16 input); ld in
// elements (a multiple of 8); the buffers are 32-byte aligned.
struct Opnd {
  const bf16* hi;
  const bf16* lo;
  int ld;
};
struct NoEpilogue {};  // mma_tiles without an epilogue (the tile is only stored)

// Tensor cores (bf16 inputs): out[M×N] = (init ? init_scale·out : 0) + A·B over Kc, then epi(m, n, out[m][n]) for
// every element; M, N, Kc multiples of 16. A(m, k) = TA ? a[k·ld + m] : a[m·ld + k] and B(k, n) = TB ? b[n·ld + k] :
// b[k·ld + n] (TA/TB: the operand is stored transposed, read col_major). out is fp32 row-major with leading dim ldo
// (a multiple of 4; 32-byte aligned), in shared or global memory. Warp w computes the 16×16 tiles w, w + 8, ...
// (tile id = (m0/16)·(N/16) + n0/16: the same warp gets the same tile in every call with the same M, N, so calls
// that reuse `out` need no block barrier between them), stores the tile and runs the epilogue on it with its own
// lanes (after __syncwarp; the epilogue may write the element it is given, in place). Every thread of the block
// calls it; there is no block barrier inside. Split operands: hi·B, lo·B, A·lo accumulate (small terms first).
template <bool TA, bool TB, typename Epi>
__device__ void mma_tiles(int M, int N, int Kc, Opnd a, Opnd b, float* out, int ldo, bool init, float init_scale,
                          Epi&& epi) {
  namespace wmma = nvcuda::wmma;
  using LA = std::conditional_t<TA, wmma::col_major, wmma::row_major>;
  using LB = std::conditional_t<TB, wmma::col_major, wmma::row_major>;
  using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, LA>;
  using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, LB>;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  const int ntn = N >> 4, ntiles = (M >> 4) * ntn;
  const bool a_lo = kSplitOperands && a.lo != nullptr, b_lo = kSplitOperands && b.lo != nullptr;
  __syncwarp();  // the warp converged before the first wmma (callers may have diverged in single-thread work)
  for (int id = warp; id < ntiles; id += nw) {  // warp-uniform
    const int mt = id / ntn;
    const int m0 = mt * 16, n0 = (id - mt * ntn) * 16;
    float* o = out + m0 * ldo + n0;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    if (init) {
      wmma::load_matrix_sync(acc, o, ldo, wmma::mem_row_major);
      for (int e = 0; e < acc.num_elements; ++e) acc.x[e] *= init_scale;
    } else {
      wmma::fill_fragment(acc, 0.f);
    }
    for (int k0 = 0; k0 < Kc; k0 += 16) {
      const int oa = TA ? k0 * a.ld + m0 : m0 * a.ld + k0;
      const int ob = TB ? n0 * b.ld + k0 : k0 * b.ld + n0;
      FragA fa;
      FragB fb;
      wmma::load_matrix_sync(fb, b.hi + ob, b.ld);
      if (a_lo) {
        FragA fl;
        wmma::load_matrix_sync(fl, a.lo + oa, a.ld);
        wmma::mma_sync(acc, fl, fb, acc);
      }
      wmma::load_matrix_sync(fa, a.hi + oa, a.ld);
      if (b_lo) {
        FragB fl;
        wmma::load_matrix_sync(fl, b.lo + ob, b.ld);
        wmma::mma_sync(acc, fa, fl, acc);
      }
      wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(o, acc, ldo, wmma::mem_row_major);
    __syncwarp();  // the tile is visible to every lane of the warp (epilogue; the next call on the same out)
    if constexpr (!std::is_same_v<std::decay_t<Epi>, NoEpilogue>) {
      for (int e = lane; e < 256; e += 32) {
        const int r = e >> 4, c = e & 15;
        epi(m0 + r, n0 + c, o[r * ldo + c]);
      }
      __syncwarp();
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Shared-memory layouts (one function per kernel, used by the kernel and by its launcher)

// fp32 path (TC = false): every matrix fp32 with row stride columns + 1. bf16 path (TC = true): the bf16 operand
// copies (…h / …l = hi / lo of a split fp32 quantity; ks, qs, vs, dos = exact bf16 inputs) and the fp32 matrices that
// wmma touches use the wmma strides (ld_h, kLdCh, ld_f, kLdCf), 32-byte aligned; elementwise-only matrices (D, T)
// keep kLdC. A field a path does not use stays 0.
struct PrepSmem {
  int ks, vs, al, be, Dm, Am, Tm;
  int twh, twl, tuh, tul;  // bf16 path: T diag(βγ) and T diag(β), split
  int total;
};
template <bool TC>
HYDRA_HD inline PrepSmem prep_smem(int KP, int VP) {
  SmemPlan p;
  PrepSmem s{};
  if constexpr (TC) {
    s.ks = p.take_bf(kC * ld_h(KP));
    s.vs = p.take_bf(kC * ld_h(VP));
    s.Am = p.take_al(kC * kLdCf);
    s.twh = p.take_bf(kC * kLdCh);
    s.twl = p.take_bf(kC * kLdCh);
    s.tuh = p.take_bf(kC * kLdCh);
    s.tul = p.take_bf(kC * kLdCh);
    s.Dm = p.take_al(kC * kLdC);
    s.Tm = p.take(kC * kLdC);
    s.al = p.take(kC);
    s.be = p.take(kC);
  } else {
    s.ks = p.take(kC * (KP + 1));
    s.vs = p.take(kC * (VP + 1));
    s.al = p.take(kC);
    s.be = p.take(kC);
    s.Dm = p.take(kC * kLdC);
    s.Am = p.take(kC * kLdC);
    s.Tm = p.take(kC * kLdC);
  }
  s.total = p.off;
  return s;
}

struct StateFwdSmem {
  int S, wk, kd, us, al, dl;
  int sh, sl, wl, uh, ul;  // bf16 path: S₀ split, −Wk split (wk = hi, wl = lo), (D_{C−1,·} ∘ U) split; kd = k (bf16)
  int total;
};
template <bool TC>
HYDRA_HD inline StateFwdSmem state_fwd_smem(int KP) {
  SmemPlan p;
  StateFwdSmem s{};
  if constexpr (TC) {
    s.S = p.take_al(kBV * ld_f(KP));
    s.sh = p.take_bf(kBV * ld_h(KP));
    s.sl = p.take_bf(kBV * ld_h(KP));
    s.wk = p.take_bf(kC * ld_h(KP));
    s.wl = p.take_bf(kC * ld_h(KP));
    s.kd = p.take_bf(kC * ld_h(KP));
    s.us = p.take_al(kC * kLdCf);
    s.uh = p.take_bf(kC * kLdCh);
    s.ul = p.take_bf(kC * kLdCh);
    s.al = p.take_al(kC);
    s.dl = p.take(kC + 1);
  } else {
    s.S = p.take(kBV * (KP + 1));
    s.wk = p.take(kC * (KP + 1));
    s.kd = p.take(kC * (KP + 1));
    s.us = p.take(kC * kLdBV);
    s.al = p.take(kC);
    s.dl = p.take(kC + 1);
  }
  s.total = p.off;
  return s;
}

struct OutSmem {
  int qs, ks, Dm, P, Ss, us, al;
  int ph, pl, sl, ul, os;  // bf16 path: P split, S₀ tile split (Ss = hi), U tile split (us = hi), the O tile (fp32)
  int total;
};
template <bool TC>
HYDRA_HD inline OutSmem out_smem(int KP) {
  SmemPlan p;
  OutSmem s{};
  if constexpr (TC) {
    s.qs = p.take_bf(kC * ld_h(KP));
    s.ks = p.take_bf(kC * ld_h(KP));
    s.P = p.take_al(kC * kLdCf);
    s.ph = p.take_bf(kC * kLdCh);
    s.pl = p.take_bf(kC * kLdCh);
    s.Ss = p.take_bf(kBV * ld_h(KP));
    s.sl = p.take_bf(kBV * ld_h(KP));
    s.us = p.take_bf(kC * kLdCh);
    s.ul = p.take_bf(kC * kLdCh);
    s.os = p.take_al(kC * kLdCf);
    s.Dm = p.take_al(kC * kLdC);
    s.al = p.take(kC);
  } else {
    s.qs = p.take(kC * (KP + 1));
    s.ks = p.take(kC * (KP + 1));
    s.Dm = p.take(kC * kLdC);
    s.P = p.take(kC * kLdC);
    s.Ss = p.take(kBV * (KP + 1));
    s.us = p.take(kC * kLdBV);
    s.al = p.take(kC);
  }
  s.total = p.off;
  return s;
}

struct DuIntraSmem {
  int qs, ks, Dm, P, dos, al;
  int ph, pl;  // bf16 path: P split
  int total;
};
template <bool TC>
HYDRA_HD inline DuIntraSmem du_intra_smem(int KP, int VP) {
  SmemPlan p;
  DuIntraSmem s{};
  if constexpr (TC) {
    s.qs = p.take_bf(kC * ld_h(KP));
    s.ks = p.take_bf(kC * ld_h(KP));
    s.dos = p.take_bf(kC * ld_h(VP));
    s.P = p.take_al(kC * kLdCf);
    s.ph = p.take_bf(kC * kLdCh);
    s.pl = p.take_bf(kC * kLdCh);
    s.Dm = p.take_al(kC * kLdC);
    s.al = p.take(kC);
  } else {
    s.qs = p.take(kC * (KP + 1));
    s.ks = p.take(kC * (KP + 1));
    s.Dm = p.take(kC * kLdC);
    s.P = p.take(kC * kLdC);
    s.dos = p.take(kC * (VP + 1));
    s.al = p.take(kC);
  }
  s.total = p.off;
  return s;
}

struct StateBwdSmem {
  int dS, wk, ks, qg, dos, dus, al, gam, dl;
  // bf16 path: dS split (dsh, dsl), Wk split (wk = hi, wl = lo), k and q (ks, qg: exact bf16), (γ∘dO) split (dos =
  // hi, dol = lo), −dU split (nh, nl), the fp32 stage of K dSᵀ (tmp)
  int dsh, dsl, wl, dol, nh, nl, tmp;
  int total;
};
template <bool TC>
HYDRA_HD inline StateBwdSmem state_bwd_smem(int KP) {
  SmemPlan p;
  StateBwdSmem s{};
  if constexpr (TC) {
    s.dS = p.take_al(kBV * ld_f(KP));
    s.dsh = p.take_bf(kBV * ld_h(KP));
    s.dsl = p.take_bf(kBV * ld_h(KP));
    s.wk = p.take_bf(kC * ld_h(KP));
    s.wl = p.take_bf(kC * ld_h(KP));
    s.ks = p.take_bf(kC * ld_h(KP));
    s.qg = p.take_bf(kC * ld_h(KP));
    s.dus = p.take_al(kC * kLdCf);
    s.tmp = p.take_al(kC * kLdCf);
    s.dos = p.take_bf(kC * kLdCh);
    s.dol = p.take_bf(kC * kLdCh);
    s.nh = p.take_bf(kC * kLdCh);
    s.nl = p.take_bf(kC * kLdCh);
    s.al = p.take_al(kC);
    s.gam = p.take(kC);
    s.dl = p.take(kC + 1);
  } else {
    s.dS = p.take(kBV * (KP + 1));
    s.wk = p.take(kC * (KP + 1));
    s.ks = p.take(kC * (KP + 1));
    s.qg = p.take(kC * (KP + 1));
    s.dos = p.take(kC * kLdBV);
    s.dus = p.take(kC * kLdBV);
    s.al = p.take(kC);
    s.gam = p.take(kC);
    s.dl = p.take(kC + 1);
  }
  s.total = p.off;
  return s;
}

struct GradsSmem {
  int qs, ks, X, Y, Z;                  // C × (KP + 1)
  int Dm, Tm, G1, G2, QK, KK, dD;       // C × (C + 1)
  int dot, ut, dut, dwt;                // C × (kBV + 1): the current V tile of dO, U, dU, dW
  int s0t, dst;                         // kBV × (KP + 1): the current V tile of S₀ and dS
  int al, be, dbv, qx, ky, kz, red;     // vectors
  // bf16 path: qs, ks, dot exact bf16; Tm, ut, dut, s0t, dst hold the hi of a split with these lo's; dwt is the fp32
  // dW stage with its split in dwh / dwl; G1∘D and M + Mᵀ split (gdh/gdl, mh/ml); the fp32 dq / dk stage (stg).
  int tl, ul, dul, s0l, dsl, dwh, dwl, gdh, gdl, mh, ml, stg;
  int total;
};
template <bool TC>
HYDRA_HD inline GradsSmem grads_smem(int KP) {
  SmemPlan p;
  GradsSmem s{};
  if constexpr (TC) {
    s.qs = p.take_bf(kC * ld_h(KP));
    s.ks = p.take_bf(kC * ld_h(KP));
    s.X = p.take_al(kC * ld_f(KP));
    s.Y = p.take_al(kC * ld_f(KP));
    s.Z = p.take_al(kC * ld_f(KP));
    s.stg = p.take_al(kC * ld_f(KP));
    s.G1 = p.take_al(kC * kLdCf);
    s.G2 = p.take_al(kC * kLdCf);
    s.QK = p.take_al(kC * kLdCf);
    s.KK = p.take_al(kC * kLdCf);
    s.dwt = p.take_al(kC * kLdCf);
    s.Tm = p.take_bf(kC * kLdCh);
    s.tl = p.take_bf(kC * kLdCh);
    s.dot = p.take_bf(kC * kLdCh);
    s.ut = p.take_bf(kC * kLdCh);
    s.ul = p.take_bf(kC * kLdCh);
    s.dut = p.take_bf(kC * kLdCh);
    s.dul = p.take_bf(kC * kLdCh);
    s.dwh = p.take_bf(kC * kLdCh);
    s.dwl = p.take_bf(kC * kLdCh);
    s.gdh = p.take_bf(kC * kLdCh);
    s.gdl = p.take_bf(kC * kLdCh);
    s.mh = p.take_bf(kC * kLdCh);
    s.ml = p.take_bf(kC * kLdCh);
    s.s0t = p.take_bf(kBV * ld_h(KP));
    s.s0l = p.take_bf(kBV * ld_h(KP));
    s.dst = p.take_bf(kBV * ld_h(KP));
    s.dsl = p.take_bf(kBV * ld_h(KP));
    s.Dm = p.take_al(kC * kLdC);
    s.dD = p.take(kC * kLdC);
  } else {
    s.qs = p.take(kC * (KP + 1));
    s.ks = p.take(kC * (KP + 1));
    s.X = p.take(kC * (KP + 1));
    s.Y = p.take(kC * (KP + 1));
    s.Z = p.take(kC * (KP + 1));
    s.Dm = p.take(kC * kLdC);
    s.Tm = p.take(kC * kLdC);
    s.G1 = p.take(kC * kLdC);
    s.G2 = p.take(kC * kLdC);
    s.QK = p.take(kC * kLdC);
    s.KK = p.take(kC * kLdC);
    s.dD = p.take(kC * kLdC);
    s.dot = p.take(kC * kLdBV);
    s.ut = p.take(kC * kLdBV);
    s.dut = p.take(kC * kLdBV);
    s.dwt = p.take(kC * kLdBV);
    s.s0t = p.take(kBV * (KP + 1));
    s.dst = p.take(kBV * (KP + 1));
  }
  s.al = p.take(kC);
  s.be = p.take(kC);
  s.dbv = p.take(kC);
  s.qx = p.take(kC);
  s.ky = p.take(kC);
  s.kz = p.take(kC);
  s.red = p.take(32);
  s.total = p.off;
  return s;
}

// ---------------------------------------------------------------------------------------------------------
// Kernels

// Per (chunk, b·h): T = (I + A)⁻¹, Wk = T diag(βγ) K, Uv = T diag(β) V (and T itself when tinv is given).
// Grid: NC·BH blocks, block id = bh·NC + chunk. bf16: K Kᵀ, (T diag(βγ)) K and (T diag β) V on tensor cores, Wk and
// Uv stored from the accumulators straight into the fp32 scratch.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gated_delta_prep_kernel(const T* __restrict__ k, const T* __restrict__ v, const float* __restrict__ alpha,
                            const float* __restrict__ beta, float* __restrict__ wk, float* __restrict__ uv,
                            float* __restrict__ tinv, Dims d) {
  constexpr bool kTC = kTensorCores<T>;
  extern __shared__ __align__(128) float smem[];
  const PrepSmem L = prep_smem<kTC>(d.KP, d.VP);
  float* ks = smem + L.ks;  // fp32 path: k, scaled in place by βγ later
  float* vs = smem + L.vs;  // fp32 path: v, scaled in place by β later
  float* al = smem + L.al;
  float* be = smem + L.be;
  float* Dm = smem + L.Dm;
  float* Am = smem + L.Am;
  float* Tm = smem + L.Tm;
  const int KP = d.KP, VP = d.VP, ldk = KP + 1, ldv = VP + 1;
  const int ldA = kTC ? kLdCf : kLdC;
  const int64_t c = blockIdx.x % d.NC, bh = blockIdx.x / d.NC, b = bh / d.H, h = bh % d.H, t0 = c * kC;
  const int64_t row0 = scratch_row(d, bh, c, 0);

  if constexpr (kTC) {
    load_tokens(as_bf16(ks), ld_h(KP), k, d.K, d, b, h, t0, 0, KP);
    load_tokens(as_bf16(vs), ld_h(VP), v, d.V, d, b, h, t0, 0, VP);
  } else {
    load_tokens(ks, ldk, k, d.K, d, b, h, t0, 0, KP);
    load_tokens(vs, ldv, v, d.V, d, b, h, t0, 0, VP);
  }
  load_gates(al, be, alpha, beta, d, b, h, t0);
  __syncthreads();
  build_decay(Dm, al);
  __syncthreads();
  // A_{t,s} = β_t D_{t,s} (k_t·k_s) for s < t, else 0.
  if constexpr (kTC) {
    const Opnd kop{as_bf16(ks), nullptr, ld_h(KP)};
    mma_tiles<false, true>(kC, kC, KP, kop, kop, Am, kLdCf, false, 1.f, [&](int t, int s, float x) {
      Am[t * kLdCf + s] = s < t ? be[t] * Dm[t * kLdC + s + 1] * x : 0.f;
    });
  } else {
    for_each_tile(kC, kC, [&](int m0, int m1, int n0, int n1) {
      float acc[2][2] = {};
      mm_acc(acc, m0, m1, n0, n1, KP, [&](int m, int i) { return ks[m * ldk + i]; },
             [&](int i, int n) { return ks[n * ldk + i]; });
      tile_elems(m0, m1, n0, n1, [&](int t, int s, int r, int q) {
        Am[t * kLdC + s] = s < t ? be[t] * Dm[t * kLdC + s + 1] * acc[r][q] : 0.f;
      });
    });
  }
  __syncthreads();
  if (threadIdx.x < kC) {
    // T = (I + A)⁻¹ column by column (lane = column): T_{t,c} = δ_{tc} − Σ_{s<t} A_{t,s} T_{s,c}. Each lane reads
    // only the column it writes; A is read as a broadcast.
    const int col = threadIdx.x;
    for (int t = 0; t < kC; ++t) {
      float x = t == col ? 1.f : 0.f;
      for (int s = 0; s < t; ++s) x = fmaf(-Am[t * ldA + s], Tm[s * kLdC + col], x);
      Tm[t * kLdC + col] = t >= col ? x : 0.f;
    }
  } else if constexpr (!kTC) {
    // Meanwhile the other warps scale the rows: K ← diag(βγ) K, V ← diag(β) V (A has been built from K already).
    const int n = blockDim.x - kC;
    for (int idx = threadIdx.x - kC; idx < kC * KP; idx += n) {
      const int t = idx / KP, i = idx - t * KP;
      ks[t * ldk + i] *= be[t] * Dm[t * kLdC];
    }
    for (int idx = threadIdx.x - kC; idx < kC * VP; idx += n) {
      const int t = idx / VP, j = idx - t * VP;
      vs[t * ldv + j] *= be[t];
    }
  }
  __syncthreads();
  if constexpr (kTC) {
    // The gates go into the columns of T: Wk = (T diag(βγ)) K, Uv = (T diag β) V; T diag(·) split into hi + lo.
    bf16 *twh = as_bf16(smem + L.twh), *twl = as_bf16(smem + L.twl);
    bf16 *tuh = as_bf16(smem + L.tuh), *tul = as_bf16(smem + L.tul);
    split_tile(twh, twl, kLdCh, kC, kC, [&](int t, int s) { return Tm[t * kLdC + s] * (be[s] * Dm[s * kLdC]); });
    split_tile(tuh, tul, kLdCh, kC, kC, [&](int t, int s) { return Tm[t * kLdC + s] * be[s]; });
    __syncthreads();
    mma_tiles<false, false>(kC, KP, kC, Opnd{twh, twl, kLdCh}, Opnd{as_bf16(ks), nullptr, ld_h(KP)}, wk + row0 * KP,
                            KP, false, 1.f, NoEpilogue{});
    mma_tiles<false, false>(kC, VP, kC, Opnd{tuh, tul, kLdCh}, Opnd{as_bf16(vs), nullptr, ld_h(VP)}, uv + row0 * VP,
                            VP, false, 1.f, NoEpilogue{});
  } else {
    for_each_tile(kC, KP, [&](int m0, int m1, int n0, int n1) {
      float acc[2][2] = {};
      mm_acc(acc, m0, m1, n0, n1, kC, [&](int t, int s) { return Tm[t * kLdC + s]; },
             [&](int s, int i) { return ks[s * ldk + i]; });
      tile_elems(m0, m1, n0, n1, [&](int t, int i, int r, int q) { wk[(row0 + t) * KP + i] = acc[r][q]; });
    });
    for_each_tile(kC, VP, [&](int m0, int m1, int n0, int n1) {
      float acc[2][2] = {};
      mm_acc(acc, m0, m1, n0, n1, kC, [&](int t, int s) { return Tm[t * kLdC + s]; },
             [&](int s, int j) { return vs[s * ldv + j]; });
      tile_elems(m0, m1, n0, n1, [&](int t, int j, int r, int q) { uv[(row0 + t) * VP + j] = acc[r][q]; });
    });
  }
  if (tinv) store_tile(tinv + (bh * d.NC + c) * kC * kC, kC, Tm, kLdC, kC, kC);
}

// Per (V tile, b·h), sequential over chunks: stores each chunk-start state tile, turns Uv into U (in place) and
// carries the state. Grid: (VP/kBV)·BH blocks, block id = bh·(VP/kBV) + tile. s0 / s_final may be null.
// bf16: U = Uv + (−Wk) S₀ᵀ and S ← γ_{C−1} S + (D_{C−1,·} ∘ U)ᵀ K on tensor cores; the state S stays fp32 in shared
// memory (the accumulator of its update), its bf16 hi + lo copy is the operand of the U product.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gated_delta_state_fwd_kernel(const T* __restrict__ k, const float* __restrict__ alpha,
                                 const float* __restrict__ wk, float* __restrict__ u, const float* __restrict__ s0,
                                 float* __restrict__ states, float* __restrict__ s_final, Dims d) {
  constexpr bool kTC = kTensorCores<T>;
  extern __shared__ __align__(128) float smem[];
  const StateFwdSmem L = state_fwd_smem<kTC>(d.KP);
  float* S = smem + L.S;
  float* wks = smem + L.wk;
  float* kd = smem + L.kd;
  float* us = smem + L.us;
  float* al = smem + L.al;
  float* dl = smem + L.dl;
  const int KP = d.KP, VP = d.VP, ldk = KP + 1;
  const int ldS = kTC ? ld_f(KP) : ldk;     // S
  const int ldU = kTC ? kLdCf : kLdBV;      // us
  const int nvt = VP / kBV;
  const int64_t bh = blockIdx.x / nvt, b = bh / d.H, h = bh % d.H;
  const int v0 = static_cast<int>(blockIdx.x % nvt) * kBV;

  for (int idx = threadIdx.x; idx < kBV * KP; idx += blockDim.x) {
    const int j = idx / KP, i = idx - j * KP;
    const int64_t vj = v0 + j;
    S[j * ldS + i] = (s0 && vj < d.V && i < d.K) ? s0[(bh * d.V + vj) * d.K + i] : 0.f;
  }
  __syncthreads();
  for (int64_t c = 0; c < d.NC; ++c) {
    const int64_t t0 = c * kC, row0 = scratch_row(d, bh, c, 0);
    store_tile(states + state_base(d, bh, c) + static_cast<int64_t>(v0) * KP, KP, S, ldS, kBV, KP);
    if constexpr (kTC) {
      split_tile(as_bf16(smem + L.sh), as_bf16(smem + L.sl), ld_h(KP), kBV, KP,
                 [&](int j, int i) { return S[j * ldS + i]; });
      split_tile(as_bf16(wks), as_bf16(smem + L.wl), ld_h(KP), kC, KP,
                 [&](int t, int i) { return -wk[(row0 + t) * KP + i]; });
      load_tokens(as_bf16(kd), ld_h(KP), k, d.K, d, b, h, t0, 0, KP);
    } else {
      load_tile(wks, ldk, wk + row0 * KP, KP, kC, KP);
      load_tokens(kd, ldk, k, d.K, d, b, h, t0, 0, KP);
    }
    load_tile(us, ldU, u + row0 * VP + v0, VP, kC, kBV);
    load_gates(al, nullptr, alpha, nullptr, d, b, h, t0);
    __syncthreads();
    if (threadIdx.x == 0) suffix_decay(dl, al);
    __syncthreads();
    if constexpr (kTC) {
      // U = Uv + (−Wk) S₀ᵀ: the accumulator starts from Uv (us); U to us and to the scratch.
      mma_tiles<false, true>(kC, kBV, KP, Opnd{as_bf16(wks), as_bf16(smem + L.wl), ld_h(KP)},
                             Opnd{as_bf16(smem + L.sh), as_bf16(smem + L.sl), ld_h(KP)}, us, kLdCf, true, 1.f,
                             [&](int t, int j, float x) { u[(row0 + t) * VP + v0 + j] = x; });
      __syncthreads();
      split_tile(as_bf16(smem + L.uh), as_bf16(smem + L.ul), kLdCh, kC, kBV,
                 [&](int s, int j) { return dl[s] * us[s * kLdCf + j]; });
      __syncthreads();
      // S ← γ_{C−1} S + (D_{C−1,·} ∘ U)ᵀ K: A(j, s) = D_{C−1,s} U_{s,j} (stored [s][j], read col_major).
      mma_tiles<true, false>(kBV, KP, kC, Opnd{as_bf16(smem + L.uh), as_bf16(smem + L.ul), kLdCh},
                             Opnd{as_bf16(kd), nullptr, ld_h(KP)}, S, ldS, true, dl[kC], NoEpilogue{});
    } else {
      // U = Uv − Wk S₀ᵀ (written back over Uv), and the decayed keys kd_s = D_{C−1,s} k_s (disjoint buffers).
      for_each_tile(kC, kBV, [&](int m0, int m1, int n0, int n1) {
        float acc[2][2] = {};
        mm_acc(acc, m0, m1, n0, n1, KP, [&](int t, int i) { return wks[t * ldk + i]; },
               [&](int i, int j) { return S[j * ldk + i]; });
        tile_elems(m0, m1, n0, n1, [&](int t, int j, int r, int q) {
          const float x = us[t * kLdBV + j] - acc[r][q];
          us[t * kLdBV + j] = x;
          u[(row0 + t) * VP + v0 + j] = x;
        });
      });
      for (int idx = threadIdx.x; idx < kC * KP; idx += blockDim.x) {
        const int s = idx / KP, i = idx - s * KP;
        kd[s * ldk + i] *= dl[s];
      }
      __syncthreads();
      // S ← γ_{C−1} S + Uᵀ kd (each thread updates only the elements of its own tiles).
      const float gl = dl[kC];
      for_each_tile(kBV, KP, [&](int m0, int m1, int n0, int n1) {
        float acc[2][2] = {};
        mm_acc(acc, m0, m1, n0, n1, kC, [&](int j, int s) { return us[s * kLdBV + j]; },
               [&](int s, int i) { return kd[s * ldk + i]; });
        tile_elems(m0, m1, n0, n1,
                   [&](int j, int i, int r, int q) { S[j * ldk + i] = fmaf(gl, S[j * ldk + i], acc[r][q]); });
      });
    }
    __syncthreads();
  }
  if (s_final) {
    for (int idx = threadIdx.x; idx < kBV * KP; idx += blockDim.x) {
      const int j = idx / KP, i = idx - j * KP;
      const int64_t vj = v0 + j;
      if (vj < d.V && i < d.K) s_final[(bh * d.V + vj) * d.K + i] = S[j * ldS + i];
    }
  }
}

// Per (chunk, b·h): O = diag(γ) Q S₀ᵀ + (QKᵀ ∘ D) U, V walked in kBV-wide tiles. Grid: NC·BH, id = bh·NC + chunk.
// bf16: Q Kᵀ, Q S₀ᵀ and (QKᵀ ∘ D) U on tensor cores; the O tile is staged in fp32 (γ applied between the products).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gated_delta_out_kernel(const T* __restrict__ q, const T* __restrict__ k, const float* __restrict__ alpha,
                           const float* __restrict__ u, const float* __restrict__ states, T* __restrict__ o, Dims d) {
  constexpr bool kTC = kTensorCores<T>;
  extern __shared__ __align__(128) float smem[];
  const OutSmem L = out_smem<kTC>(d.KP);
  float* qs = smem + L.qs;
  float* ks = smem + L.ks;
  float* Dm = smem + L.Dm;
  float* P = smem + L.P;
  float* Ss = smem + L.Ss;
  float* us = smem + L.us;
  float* al = smem + L.al;
  const int KP = d.KP, VP = d.VP, ldk = KP + 1;
  const int64_t c = blockIdx.x % d.NC, bh = blockIdx.x / d.NC, b = bh / d.H, h = bh % d.H, t0 = c * kC;
  const int64_t row0 = scratch_row(d, bh, c, 0);

  if constexpr (kTC) {
    load_tokens(as_bf16(qs), ld_h(KP), q, d.K, d, b, h, t0, 0, KP);
    load_tokens(as_bf16(ks), ld_h(KP), k, d.K, d, b, h, t0, 0, KP);
  } else {
    load_tokens(qs, ldk, q, d.K, d, b, h, t0, 0, KP);
    load_tokens(ks, ldk, k, d.K, d, b, h, t0, 0, KP);
  }
  load_gates(al, nullptr, alpha, nullptr, d, b, h, t0);
  __syncthreads();
  build_decay(Dm, al);
  __syncthreads();
  if constexpr (kTC) {
    // P = QKᵀ ∘ D, kept only as its split (the A operand of P U).
    bf16 *ph = as_bf16(smem + L.ph), *pl = as_bf16(smem + L.pl);
    mma_tiles<false, true>(kC, kC, KP, Opnd{as_bf16(qs), nullptr, ld_h(KP)}, Opnd{as_bf16(ks), nullptr, ld_h(KP)},
                           P, kLdCf, false, 1.f, [&](int t, int s, float x) {
                             put_split(ph + t * kLdCh + s, pl + t * kLdCh + s, x * Dm[t * kLdC + s + 1]);
                           });
    float* os = smem + L.os;
    for (int v0 = 0; v0 < VP; v0 += kBV) {
      __syncthreads();  // ph / pl complete (first tile); the tile buffers are free again (later tiles)
      const float* Sg = states + state_base(d, bh, c) + static_cast<int64_t>(v0) * KP;
      split_tile(as_bf16(Ss), as_bf16(smem + L.sl), ld_h(KP), kBV, KP, [&](int j, int i) { return Sg[j * KP + i]; });
      split_tile(as_bf16(us), as_bf16(smem + L.ul), kLdCh, kC, kBV,
                 [&](int s, int j) { return u[(row0 + s) * VP + v0 + j]; });
      __syncthreads();
      // O = γ ∘ (Q S₀ᵀ) (epilogue, in place), then O += P U (the same warp owns the same O tiles in both calls).
      mma_tiles<false, true>(kC, kBV, KP, Opnd{as_bf16(qs), nullptr, ld_h(KP)},
                             Opnd{as_bf16(Ss), as_bf16(smem + L.sl), ld_h(KP)}, os, kLdCf, false, 1.f,
                             [&](int t, int j, float x) { os[t * kLdCf + j] = Dm[t * kLdC] * x; });
      mma_tiles<false, false>(kC, kBV, kC, Opnd{ph, pl, kLdCh}, Opnd{as_bf16(us), as_bf16(smem + L.ul), kLdCh}, os,
                              kLdCf, true, 1.f, [&](int t, int j, float x) {
                                const int64_t tg = t0 + t, vj = v0 + j;
                                if (tg < d.T && vj < d.V) o[tok_off(d, b, h, tg, d.V) + vj] = from_f<T>(x);
                              });
    }
  } else {
    for_each_tile(kC, kC, [&](int m0, int m1, int n0, int n1) {
      float acc[2][2] = {};
      mm_acc(acc, m0, m1, n0, n1, KP, [&](int t, int i) { return qs[t * ldk + i]; },
             [&](int i, int s) { return ks[s * ldk + i]; });
      tile_elems(m0, m1, n0, n1,
                 [&](int t, int s, int r, int qq) { P[t * kLdC + s] = acc[r][qq] * Dm[t * kLdC + s + 1]; });
    });
    for (int v0 = 0; v0 < VP; v0 += kBV) {
      __syncthreads();  // P complete (first tile); Ss / us free again (later tiles)
      load_tile(Ss, ldk, states + state_base(d, bh, c) + static_cast<int64_t>(v0) * KP, KP, kBV, KP);
      load_tile(us, kLdBV, u + row0 * VP + v0, VP, kC, kBV);
      __syncthreads();
      for_each_tile(kC, kBV, [&](int m0, int m1, int n0, int n1) {
        float acc[2][2] = {};
        mm_acc(acc, m0, m1, n0, n1, KP, [&](int t, int i) { return qs[t * ldk + i]; },
               [&](int i, int j) { return Ss[j * ldk + i]; });
        const float g0 = Dm[m0 * kLdC], g1 = Dm[m1 * kLdC];
        acc[0][0] *= g0;
        acc[0][1] *= g0;
        acc[1][0] *= g1;
        acc[1][1] *= g1;
        mm_acc(acc, m0, m1, n0, n1, kC, [&](int t, int s) { return P[t * kLdC + s]; },
               [&](int s, int j) { return us[s * kLdBV + j]; });
        tile_elems(m0, m1, n0, n1, [&](int t, int j, int r, int qq) {
          const int64_t tg = t0 + t, vj = v0 + j;
          if (tg < d.T && vj < d.V) o[tok_off(d, b, h, tg, d.V) + vj] = from_f<T>(acc[r][qq]);
        });
      });
    }
  }
}

// Per (chunk, b·h): dU_intra = (QKᵀ ∘ D)ᵀ dO into du. Grid: NC·BH, id = bh·NC + chunk. bf16: both products on
// tensor cores, dU_intra stored from the accumulators straight into the fp32 scratch.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gated_delta_du_intra_kernel(const T* __restrict__ q, const T* __restrict__ k, const float* __restrict__ alpha,
                                const T* __restrict__ dout, float* __restrict__ du, Dims d) {
  constexpr bool kTC = kTensorCores<T>;
  extern __shared__ __align__(128) float smem[];
  const DuIntraSmem L = du_intra_smem<kTC>(d.KP, d.VP);
  float* qs = smem + L.qs;
  float* ks = smem + L.ks;
  float* Dm = smem + L.Dm;
  float* P = smem + L.P;
  float* dos = smem + L.dos;
  float* al = smem + L.al;
  const int KP = d.KP, VP = d.VP, ldk = KP + 1, ldv = VP + 1;
  const int64_t c = blockIdx.x % d.NC, bh = blockIdx.x / d.NC, b = bh / d.H, h = bh % d.H, t0 = c * kC;
  const int64_t row0 = scratch_row(d, bh, c, 0);

  if constexpr (kTC) {
    load_tokens(as_bf16(qs), ld_h(KP), q, d.K, d, b, h, t0, 0, KP);
    load_tokens(as_bf16(ks), ld_h(KP), k, d.K, d, b, h, t0, 0, KP);
    load_tokens(as_bf16(dos), ld_h(VP), dout, d.V, d, b, h, t0, 0, VP);
  } else {
    load_tokens(qs, ldk, q, d.K, d, b, h, t0, 0, KP);
    load_tokens(ks, ldk, k, d.K, d, b, h, t0, 0, KP);
    load_tokens(dos, ldv, dout, d.V, d, b, h, t0, 0, VP);
  }
  load_gates(al, nullptr, alpha, nullptr, d, b, h, t0);
  __syncthreads();
  build_decay(Dm, al);
  __syncthreads();
  if constexpr (kTC) {
    bf16 *ph = as_bf16(smem + L.ph), *pl = as_bf16(smem + L.pl);
    mma_tiles<false, true>(kC, kC, KP, Opnd{as_bf16(qs), nullptr, ld_h(KP)}, Opnd{as_bf16(ks), nullptr, ld_h(KP)},
                           P, kLdCf, false, 1.f, [&](int t, int s, float x) {
                             put_split(ph + t * kLdCh + s, pl + t * kLdCh + s, x * Dm[t * kLdC + s + 1]);
                           });
    __syncthreads();
    // dU_intra(s, j) = Σ_t P_{t,s} dO_{t,j}: A = Pᵀ (P stored [t][s], read col_major).
    mma_tiles<true, false>(kC, VP, kC, Opnd{ph, pl, kLdCh}, Opnd{as_bf16(dos), nullptr, ld_h(VP)}, du + row0 * VP,
                           VP, false, 1.f, NoEpilogue{});
  } else {
    for_each_tile(kC, kC, [&](int m0, int m1, int n0, int n1) {
      float acc[2][2] = {};
      mm_acc(acc, m0, m1, n0, n1, KP, [&](int t, int i) { return qs[t * ldk + i]; },
             [&](int i, int s) { return ks[s * ldk + i]; });
      tile_elems(m0, m1, n0, n1,
                 [&](int t, int s, int r, int qq) { P[t * kLdC + s] = acc[r][qq] * Dm[t * kLdC + s + 1]; });
    });
    __syncthreads();
    for_each_tile(kC, VP, [&](int m0, int m1, int n0, int n1) {
      float acc[2][2] = {};
      mm_acc(acc, m0, m1, n0, n1, kC, [&](int s, int t) { return P[t * kLdC + s]; },
             [&](int t, int j) { return dos[t * ldv + j]; });
      tile_elems(m0, m1, n0, n1, [&](int s, int j, int r, int qq) { du[(row0 + s) * VP + j] = acc[r][qq]; });
    });
  }
}

// Per (V tile, b·h), chunks in reverse: dS (the gradient of the current chunk's end state) is stored to dstates,
// dU = dU_intra + diag(D_{C−1,·}) K dSᵀ completed in du, then dS ← γ_{C−1} dS + dOᵀ diag(γ) Q − dUᵀ Wk. At the end
// dS is the gradient of the initial state (written to ds0 when given). dfinal / ds0 may be null.
// Grid: (VP/kBV)·BH, id = bh·(VP/kBV) + tile. bf16: the three products on tensor cores, with γ folded into dO
// ((γ∘dO)ᵀ Q) and the sign into dU (+ (−dU)ᵀ Wk); dS stays fp32 in shared memory (the accumulator of its update),
// its bf16 hi + lo copy is the operand of K dSᵀ.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gated_delta_state_bwd_kernel(const T* __restrict__ q, const T* __restrict__ k, const float* __restrict__ alpha,
                                 const T* __restrict__ dout, const float* __restrict__ wk, float* __restrict__ du,
                                 const float* __restrict__ dfinal, float* __restrict__ dstates,
                                 float* __restrict__ ds0, Dims d) {
  constexpr bool kTC = kTensorCores<T>;
  extern __shared__ __align__(128) float smem[];
  const StateBwdSmem L = state_bwd_smem<kTC>(d.KP);
  float* dS = smem + L.dS;
  float* wks = smem + L.wk;
  float* ks = smem + L.ks;
  float* qg = smem + L.qg;
  float* dos = smem + L.dos;
  float* dus = smem + L.dus;
  float* al = smem + L.al;
  float* gam = smem + L.gam;
  float* dl = smem + L.dl;
  const int KP = d.KP, VP = d.VP, ldk = KP + 1;
  const int ldS = kTC ? ld_f(KP) : ldk;    // dS
  const int ldU = kTC ? kLdCf : kLdBV;     // dus
  const int nvt = VP / kBV;
  const int64_t bh = blockIdx.x / nvt, b = bh / d.H, h = bh % d.H;
  const int v0 = static_cast<int>(blockIdx.x % nvt) * kBV;

  for (int idx = threadIdx.x; idx < kBV * KP; idx += blockDim.x) {
    const int j = idx / KP, i = idx - j * KP;
    const int64_t vj = v0 + j;
    dS[j * ldS + i] = (dfinal && vj < d.V && i < d.K) ? dfinal[(bh * d.V + vj) * d.K + i] : 0.f;
  }
  __syncthreads();
  for (int64_t c = d.NC - 1; c >= 0; --c) {
    const int64_t t0 = c * kC, row0 = scratch_row(d, bh, c, 0);
    store_tile(dstates + state_base(d, bh, c) + static_cast<int64_t>(v0) * KP, KP, dS, ldS, kBV, KP);
    if constexpr (kTC) {
      split_tile(as_bf16(smem + L.dsh), as_bf16(smem + L.dsl), ld_h(KP), kBV, KP,
                 [&](int j, int i) { return dS[j * ldS + i]; });
      split_tile(as_bf16(wks), as_bf16(smem + L.wl), ld_h(KP), kC, KP,
                 [&](int t, int i) { return wk[(row0 + t) * KP + i]; });
      load_tokens(as_bf16(ks), ld_h(KP), k, d.K, d, b, h, t0, 0, KP);
      load_tokens(as_bf16(qg), ld_h(KP), q, d.K, d, b, h, t0, 0, KP);
    } else {
      load_tile(wks, ldk, wk + row0 * KP, KP, kC, KP);
      load_tokens(ks, ldk, k, d.K, d, b, h, t0, 0, KP);
      load_tokens(qg, ldk, q, d.K, d, b, h, t0, 0, KP);
      load_tokens(dos, kLdBV, dout, d.V, d, b, h, t0, v0, kBV);
    }
    load_tile(dus, ldU, du + row0 * VP + v0, VP, kC, kBV);
    load_gates(al, nullptr, alpha, nullptr, d, b, h, t0);
    __syncthreads();
    if (threadIdx.x == 0) suffix_decay(dl, al);
    if (threadIdx.x == 32) {  // another warp: the prefix products γ_t
      float p = 1.f;
      for (int t = 0; t < kC; ++t) {
        p *= al[t];
        gam[t] = p;
      }
    }
    __syncthreads();
    if constexpr (kTC) {
      bf16 *gh = as_bf16(dos), *gl = as_bf16(smem + L.dol), *nh = as_bf16(smem + L.nh), *nl = as_bf16(smem + L.nl);
      // dU = dU_intra + D_{C−1,s} (K dSᵀ)_{s,j} (epilogue; K dSᵀ staged in tmp), and the split of γ∘dO (disjoint).
      mma_tiles<false, true>(kC, kBV, KP, Opnd{as_bf16(ks), nullptr, ld_h(KP)},
                             Opnd{as_bf16(smem + L.dsh), as_bf16(smem + L.dsl), ld_h(KP)}, smem + L.tmp, kLdCf,
                             false, 1.f, [&](int s, int j, float x) {
                               const float y = fmaf(dl[s], x, dus[s * kLdCf + j]);
                               dus[s * kLdCf + j] = y;
                               du[(row0 + s) * VP + v0 + j] = y;
                             });
      split_tile(gh, gl, kLdCh, kC, kBV, [&](int t, int j) {
        const int64_t tg = t0 + t, vj = v0 + j;
        return (tg < d.T && vj < d.V) ? gam[t] * to_f(dout[tok_off(d, b, h, tg, d.V) + vj]) : 0.f;
      });
      __syncthreads();
      split_tile(nh, nl, kLdCh, kC, kBV, [&](int t, int j) { return -dus[t * kLdCf + j]; });
      __syncthreads();
      // dS ← γ_{C−1} dS + (γ∘dO)ᵀ Q + (−dU)ᵀ Wk: A(j, t) stored [t][j], read col_major; the same warp owns the same
      // dS tiles in both calls.
      mma_tiles<true, false>(kBV, KP, kC, Opnd{gh, gl, kLdCh}, Opnd{as_bf16(qg), nullptr, ld_h(KP)}, dS, ldS, true,
                             dl[kC], NoEpilogue{});
      mma_tiles<true, false>(kBV, KP, kC, Opnd{nh, nl, kLdCh}, Opnd{as_bf16(wks), as_bf16(smem + L.wl), ld_h(KP)},
                             dS, ldS, true, 1.f, NoEpilogue{});
    } else {
      // dU = dU_intra + D_{C−1,s} (k_s · dS_j), and qg_t = γ_t q_t (disjoint buffers).
      for_each_tile(kC, kBV, [&](int m0, int m1, int n0, int n1) {
        float acc[2][2] = {};
        mm_acc(acc, m0, m1, n0, n1, KP, [&](int s, int i) { return ks[s * ldk + i]; },
               [&](int i, int j) { return dS[j * ldk + i]; });
        tile_elems(m0, m1, n0, n1, [&](int s, int j, int r, int qq) {
          const float x = fmaf(dl[s], acc[r][qq], dus[s * kLdBV + j]);
          dus[s * kLdBV + j] = x;
          du[(row0 + s) * VP + v0 + j] = x;
        });
      });
      for (int idx = threadIdx.x; idx < kC * KP; idx += blockDim.x) {
        const int t = idx / KP, i = idx - t * KP;
        qg[t * ldk + i] *= gam[t];
      }
      __syncthreads();
      // dS ← γ_{C−1} dS + dOᵀ (γ∘Q) − dUᵀ Wk (each thread updates only the elements of its own tiles).
      const float gl = dl[kC];
      for_each_tile(kBV, KP, [&](int m0, int m1, int n0, int n1) {
        float pos[2][2] = {}, neg[2][2] = {};
        mm_acc(pos, m0, m1, n0, n1, kC, [&](int j, int t) { return dos[t * kLdBV + j]; },
               [&](int t, int i) { return qg[t * ldk + i]; });
        mm_acc(neg, m0, m1, n0, n1, kC, [&](int j, int t) { return dus[t * kLdBV + j]; },
               [&](int t, int i) { return wks[t * ldk + i]; });
        tile_elems(m0, m1, n0, n1, [&](int j, int i, int r, int qq) {
          dS[j * ldk + i] = fmaf(gl, dS[j * ldk + i], pos[r][qq] - neg[r][qq]);
        });
      });
    }
    __syncthreads();
  }
  if (ds0) {
    for (int idx = threadIdx.x; idx < kBV * KP; idx += blockDim.x) {
      const int j = idx / KP, i = idx - j * KP;
      const int64_t vj = v0 + j;
      if (vj < d.V && i < d.K) ds0[(bh * d.V + vj) * d.K + i] = dS[j * ldS + i];
    }
  }
}

// Per (chunk, b·h): every input gradient of the chunk from its start state S₀, end-state gradient dS, U and dU
// (formulas in the header comment). dq, dk, dv in the input dtype; dalpha, dbeta fp32. Grid: NC·BH, id = bh·NC + c.
// bf16: QKᵀ, KKᵀ, dW = Tᵀ dU, the contractions over V (G1, G2, X, Y, Z accumulated in fp32 shared memory across the
// V tiles) and dq, dk on tensor cores; the elementwise phases (dD, dβ, Horner sums, dα) are shared with fp32.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gated_delta_grads_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                             const float* __restrict__ alpha, const float* __restrict__ beta,
                             const T* __restrict__ dout, const float* __restrict__ u, const float* __restrict__ du,
                             const float* __restrict__ tinv, const float* __restrict__ states,
                             const float* __restrict__ dstates, T* __restrict__ dq, T* __restrict__ dk,
                             T* __restrict__ dv, float* __restrict__ dalpha, float* __restrict__ dbeta, Dims d) {
  constexpr bool kTC = kTensorCores<T>;
  extern __shared__ __align__(128) float smem[];
  const GradsSmem L = grads_smem<kTC>(d.KP);
  float* qs = smem + L.qs;
  float* ks = smem + L.ks;
  float* X = smem + L.X;
  float* Y = smem + L.Y;
  float* Z = smem + L.Z;
  float* Dm = smem + L.Dm;
  float* Tm = smem + L.Tm;
  float* G1 = smem + L.G1;
  float* G2 = smem + L.G2;
  float* QK = smem + L.QK;  // q_t·k_s; later (G1 ∘ D) (fp32 path)
  float* KK = smem + L.KK;  // k_t·k_s; later M + Mᵀ (fp32 path)
  float* dD = smem + L.dD;  // dD_{t,s} at [t][s + 1]; later the Horner sums Y_{t,r} at [t][r]
  float* dot = smem + L.dot;
  float* ut = smem + L.ut;
  float* dut = smem + L.dut;
  float* dwt = smem + L.dwt;
  float* s0t = smem + L.s0t;
  float* dst = smem + L.dst;
  float* al = smem + L.al;
  float* be = smem + L.be;
  float* dbv = smem + L.dbv;
  float* qx = smem + L.qx;
  float* ky = smem + L.ky;
  float* kz = smem + L.kz;
  float* red = smem + L.red;
  const int KP = d.KP, VP = d.VP, ldk = KP + 1;
  const int ldX = kTC ? ld_f(KP) : ldk;      // X, Y, Z
  const int ldG = kTC ? kLdCf : kLdC;        // G1, G2, QK, KK
  const int ldW = kTC ? kLdCf : kLdBV;       // dwt
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t c = blockIdx.x % d.NC, bh = blockIdx.x / d.NC, b = bh / d.H, h = bh % d.H, t0 = c * kC;
  const int64_t row0 = scratch_row(d, bh, c, 0);
  const float* S0g = states + state_base(d, bh, c);
  const float* dSg = dstates + state_base(d, bh, c);
  const float* Tg = tinv + (bh * d.NC + c) * kC * kC;
  // q and k elementwise (per-token dots), from the fp32 or the bf16 copies.
  auto q_at = [&](int t, int i) {
    if constexpr (kTC) {
      return __bfloat162float(as_bf16(qs)[t * ld_h(KP) + i]);
    } else {
      return qs[t * ldk + i];
    }
  };
  auto k_at = [&](int t, int i) {
    if constexpr (kTC) {
      return __bfloat162float(as_bf16(ks)[t * ld_h(KP) + i]);
    } else {
      return ks[t * ldk + i];
    }
  };

  // Phase 0: the chunk's q, k, gates and T; zero the accumulators.
  if constexpr (kTC) {
    load_tokens(as_bf16(qs), ld_h(KP), q, d.K, d, b, h, t0, 0, KP);
    load_tokens(as_bf16(ks), ld_h(KP), k, d.K, d, b, h, t0, 0, KP);
    split_tile(as_bf16(Tm), as_bf16(smem + L.tl), kLdCh, kC, kC, [&](int r, int s) { return Tg[r * kC + s]; });
  } else {
    load_tokens(qs, ldk, q, d.K, d, b, h, t0, 0, KP);
    load_tokens(ks, ldk, k, d.K, d, b, h, t0, 0, KP);
    load_tile(Tm, kLdC, Tg, kC, kC, kC);
  }
  load_gates(al, be, alpha, beta, d, b, h, t0);
  for (int idx = threadIdx.x; idx < kC * ldX; idx += blockDim.x) {
    X[idx] = 0.f;
    Y[idx] = 0.f;
    Z[idx] = 0.f;
  }
  for (int idx = threadIdx.x; idx < kC * ldG; idx += blockDim.x) {
    G1[idx] = 0.f;
    G2[idx] = 0.f;
  }
  for (int t = threadIdx.x; t < kC; t += blockDim.x) dbv[t] = 0.f;
  __syncthreads();
  // Phase 1: D; q_t·k_s and k_t·k_s.
  if constexpr (kTC) {
    const Opnd qop{as_bf16(qs), nullptr, ld_h(KP)}, kop{as_bf16(ks), nullptr, ld_h(KP)};
    mma_tiles<false, true>(kC, kC, KP, qop, kop, QK, kLdCf, false, 1.f, NoEpilogue{});
    mma_tiles<false, true>(kC, kC, KP, kop, kop, KK, kLdCf, false, 1.f, NoEpilogue{});
    build_decay(Dm, al);  // after the MMAs: its kC + 1 threads split warp 1
  } else {
    build_decay(Dm, al);
    for_each_tile(kC, kC, [&](int m0, int m1, int n0, int n1) {
      float aq[2][2] = {}, ak[2][2] = {};
      mm_acc(aq, m0, m1, n0, n1, KP, [&](int t, int i) { return qs[t * ldk + i]; },
             [&](int i, int s) { return ks[s * ldk + i]; });
      mm_acc(ak, m0, m1, n0, n1, KP, [&](int t, int i) { return ks[t * ldk + i]; },
             [&](int i, int s) { return ks[s * ldk + i]; });
      tile_elems(m0, m1, n0, n1, [&](int t, int s, int r, int qq) {
        QK[t * kLdC + s] = aq[r][qq];
        KK[t * kLdC + s] = ak[r][qq];
      });
    });
  }
  // Phase 2: the value dim in kBV-wide tiles.
  float sdot = 0.f;  // this thread's part of <dS, S₀>
  for (int v0 = 0; v0 < VP; v0 += kBV) {
    __syncthreads();  // phase 1 done (first tile); the tile buffers are free again (later tiles)
    if constexpr (kTC) {
      load_tokens(as_bf16(dot), kLdCh, dout, d.V, d, b, h, t0, v0, kBV);
      split_tile(as_bf16(ut), as_bf16(smem + L.ul), kLdCh, kC, kBV,
                 [&](int t, int j) { return u[(row0 + t) * VP + v0 + j]; });
      split_tile(as_bf16(dut), as_bf16(smem + L.dul), kLdCh, kC, kBV,
                 [&](int t, int j) { return du[(row0 + t) * VP + v0 + j]; });
    } else {
      load_tokens(dot, kLdBV, dout, d.V, d, b, h, t0, v0, kBV);
      load_tile(ut, kLdBV, u + row0 * VP + v0, VP, kC, kBV);
      load_tile(dut, kLdBV, du + row0 * VP + v0, VP, kC, kBV);
    }
    for (int idx = threadIdx.x; idx < kBV * KP; idx += blockDim.x) {
      const int j = idx / KP, i = idx - j * KP;
      const int64_t g = static_cast<int64_t>(v0 + j) * KP + i;
      const float s0v = S0g[g], dsv = dSg[g];
      if constexpr (kTC) {
        const int e = j * ld_h(KP) + i;
        put_split(as_bf16(s0t) + e, as_bf16(smem + L.s0l) + e, s0v);
        put_split(as_bf16(dst) + e, as_bf16(smem + L.dsl) + e, dsv);
      } else {
        s0t[j * ldk + i] = s0v;
        dst[j * ldk + i] = dsv;
      }
      sdot = fmaf(s0v, dsv, sdot);
    }
    __syncthreads();
    // dW = Tᵀ dU;  dv = β dW.
    if constexpr (kTC) {
      // A(t, t') = T_{t',t}: T stored row-major, read col_major.
      mma_tiles<true, false>(kC, kBV, kC, Opnd{as_bf16(Tm), as_bf16(smem + L.tl), kLdCh},
                             Opnd{as_bf16(dut), as_bf16(smem + L.dul), kLdCh}, dwt, kLdCf, false, 1.f,
                             [&](int t, int j, float x) {
                               const int64_t tg = t0 + t, vj = v0 + j;
                               if (tg < d.T && vj < d.V) dv[tok_off(d, b, h, tg, d.V) + vj] = from_f<T>(be[t] * x);
                             });
    } else {
      for_each_tile(kC, kBV, [&](int m0, int m1, int n0, int n1) {
        float acc[2][2] = {};
        mm_acc(acc, m0, m1, n0, n1, kC, [&](int t, int tp) { return Tm[tp * kLdC + t]; },
               [&](int tp, int j) { return dut[tp * kLdBV + j]; });
        tile_elems(m0, m1, n0, n1, [&](int t, int j, int r, int qq) {
          dwt[t * kLdBV + j] = acc[r][qq];
          const int64_t tg = t0 + t, vj = v0 + j;
          if (tg < d.T && vj < d.V) dv[tok_off(d, b, h, tg, d.V) + vj] = from_f<T>(be[t] * acc[r][qq]);
        });
      });
    }
    __syncthreads();
    // dbv_t += dW_t · v_t over the tile: warp per token, lane per value column (reads dwt only).
    auto add_dw_dot_v = [&] {
      for (int t = warp; t < kC; t += kWarps) {
        const int64_t tg = t0 + t, vj = v0 + lane;
        const float vv = (tg < d.T && vj < d.V) ? to_f(v[tok_off(d, b, h, tg, d.V) + vj]) : 0.f;
        const float x = warp_sum(dwt[t * ldW + lane] * vv);
        if (lane == 0) dbv[t] += x;
      }
    };
    // Contractions over this V tile, each into its own accumulator (one writer per element).
    if constexpr (kTC) {
      split_tile(as_bf16(smem + L.dwh), as_bf16(smem + L.dwl), kLdCh, kC, kBV,
                 [&](int t, int j) { return dwt[t * kLdCf + j]; });
      add_dw_dot_v();
      __syncthreads();
      const Opnd dop{as_bf16(dot), nullptr, kLdCh};
      const Opnd uop{as_bf16(ut), as_bf16(smem + L.ul), kLdCh};
      const Opnd dwop{as_bf16(smem + L.dwh), as_bf16(smem + L.dwl), kLdCh};
      const Opnd s0op{as_bf16(s0t), as_bf16(smem + L.s0l), ld_h(KP)};
      const Opnd dsop{as_bf16(dst), as_bf16(smem + L.dsl), ld_h(KP)};
      // G1 += dO Uᵀ, G2 += dW Uᵀ (B(j, s) = U_{s,j}: U read col_major); X += dO S₀, Y += dW S₀, Z += U dS.
      mma_tiles<false, true>(kC, kC, kBV, dop, uop, G1, kLdCf, true, 1.f, NoEpilogue{});
      mma_tiles<false, true>(kC, kC, kBV, dwop, uop, G2, kLdCf, true, 1.f, NoEpilogue{});
      mma_tiles<false, false>(kC, KP, kBV, dop, s0op, X, ldX, true, 1.f, NoEpilogue{});
      mma_tiles<false, false>(kC, KP, kBV, dwop, s0op, Y, ldX, true, 1.f, NoEpilogue{});
      mma_tiles<false, false>(kC, KP, kBV, uop, dsop, Z, ldX, true, 1.f, NoEpilogue{});
    } else {
      for_each_tile(kC, kC, [&](int m0, int m1, int n0, int n1) {
        float g1[2][2] = {}, g2[2][2] = {};
        mm_acc(g1, m0, m1, n0, n1, kBV, [&](int t, int j) { return dot[t * kLdBV + j]; },
               [&](int j, int s) { return ut[s * kLdBV + j]; });
        mm_acc(g2, m0, m1, n0, n1, kBV, [&](int t, int j) { return dwt[t * kLdBV + j]; },
               [&](int j, int s) { return ut[s * kLdBV + j]; });
        tile_elems(m0, m1, n0, n1, [&](int t, int s, int r, int qq) {
          G1[t * kLdC + s] += g1[r][qq];
          G2[t * kLdC + s] += g2[r][qq];
        });
      });
      for_each_tile(kC, KP, [&](int m0, int m1, int n0, int n1) {
        float ax[2][2] = {}, ay[2][2] = {}, az[2][2] = {};
        mm_acc(ax, m0, m1, n0, n1, kBV, [&](int t, int j) { return dot[t * kLdBV + j]; },
               [&](int j, int i) { return s0t[j * ldk + i]; });
        mm_acc(ay, m0, m1, n0, n1, kBV, [&](int t, int j) { return dwt[t * kLdBV + j]; },
               [&](int j, int i) { return s0t[j * ldk + i]; });
        mm_acc(az, m0, m1, n0, n1, kBV, [&](int t, int j) { return ut[t * kLdBV + j]; },
               [&](int j, int i) { return dst[j * ldk + i]; });
        tile_elems(m0, m1, n0, n1, [&](int t, int i, int r, int qq) {
          X[t * ldk + i] += ax[r][qq];
          Y[t * ldk + i] += ay[r][qq];
          Z[t * ldk + i] += az[r][qq];
        });
      });
      add_dw_dot_v();
    }
  }
  // Phase 3 (block_sum starts with a barrier: the accumulators are complete): <dS, S₀> and the per-token dots.
  const float sd = block_sum(sdot, red);
  for (int t = warp; t < kC; t += kWarps) {
    float a = 0.f, bb = 0.f, cc = 0.f;
    for (int i = lane; i < KP; i += 32) {
      const float kv = k_at(t, i);
      a = fmaf(q_at(t, i), X[t * ldX + i], a);
      bb = fmaf(kv, Y[t * ldX + i], bb);
      cc = fmaf(kv, Z[t * ldX + i], cc);
    }
    a = warp_sum(a);
    bb = warp_sum(bb);
    cc = warp_sum(cc);
    if (lane == 0) {
      qx[t] = a;
      ky[t] = bb;
      kz[t] = cc;
    }
  }
  __syncthreads();
  // Phase 4: dD and dβ.
  for (int idx = threadIdx.x; idx < kC * kLdC; idx += blockDim.x) {
    const int t = idx / kLdC, col = idx - t * kLdC, s = col - 1;
    float x;
    if (col == 0) {
      x = qx[t] - be[t] * ky[t] + (t == kC - 1 ? sd : 0.f);
    } else {
      x = s <= t ? G1[t * ldG + s] * QK[t * ldG + s] : 0.f;
      if (s < t) x -= G2[t * ldG + s] * be[t] * KK[t * ldG + s];
      if (t == kC - 1) x += kz[s];
    }
    dD[idx] = x;
  }
  if (threadIdx.x < kC) {
    const int t = threadIdx.x;
    float x = dbv[t] - Dm[t * kLdC] * ky[t];
    for (int s = 0; s < t; ++s) x -= G2[t * ldG + s] * Dm[t * kLdC + s + 1] * KK[t * ldG + s];
    if (t0 + t < d.T) dbeta[gate_off(d, b, h, t0 + t)] = x;
  }
  __syncthreads();
  // Phase 5: Horner sums in place over dD (thread t owns row t); G1∘D and M + Mᵀ (into QK and KK for fp32, as
  // split bf16 operands for the tensor cores).
  if (threadIdx.x < kC) {
    const int t = threadIdx.x;
    float y = dD[t * kLdC];  // Y_{t,0} = dD_{t,−1}
    for (int r = 1; r < kC; ++r) {
      y = fmaf(al[r - 1], y, dD[t * kLdC + r]);  // Y_{t,r} = dD_{t,r−1} + α_{r−1} Y_{t,r−1}; dD_{t,r−1} at [t][r]
      dD[t * kLdC + r] = y;
    }
  }
  for (int idx = threadIdx.x; idx < kC * kC; idx += blockDim.x) {
    const int t = idx / kC, s = idx - t * kC;
    const float gd = G1[t * ldG + s] * Dm[t * kLdC + s + 1];
    const float mts = s < t ? -G2[t * ldG + s] * be[t] * Dm[t * kLdC + s + 1] : 0.f;
    const float mst = t < s ? -G2[s * ldG + t] * be[s] * Dm[s * kLdC + t + 1] : 0.f;
    if constexpr (kTC) {
      const int e = t * kLdCh + s;
      put_split(as_bf16(smem + L.gdh) + e, as_bf16(smem + L.gdl) + e, gd);
      put_split(as_bf16(smem + L.mh) + e, as_bf16(smem + L.ml) + e, mts + mst);
    } else {
      QK[t * kLdC + s] = gd;
      KK[t * kLdC + s] = mts + mst;
    }
  }
  __syncthreads();
  // Phase 6: dα, dq, dk.
  if (threadIdx.x < kC) {
    const int r = threadIdx.x;
    float x = 0.f;
    for (int t = r; t < kC; ++t) x = fmaf(Dm[t * kLdC + r + 1], dD[t * kLdC + r], x);
    if (t0 + r < d.T) dalpha[gate_off(d, b, h, t0 + r)] = x;
  }
  if constexpr (kTC) {
    const Opnd gdop{as_bf16(smem + L.gdh), as_bf16(smem + L.gdl), kLdCh};
    const Opnd mop{as_bf16(smem + L.mh), as_bf16(smem + L.ml), kLdCh};
    const Opnd qop{as_bf16(qs), nullptr, ld_h(KP)}, kop{as_bf16(ks), nullptr, ld_h(KP)};
    float* stg = smem + L.stg;
    // dq = γ X + (G1∘D) K.
    mma_tiles<false, false>(kC, KP, kC, gdop, kop, stg, ldX, false, 1.f, [&](int t, int i, float x) {
      const int64_t tg = t0 + t;
      if (tg < d.T && i < d.K) dq[tok_off(d, b, h, tg, d.K) + i] = from_f<T>(fmaf(Dm[t * kLdC], X[t * ldX + i], x));
    });
    // dk = (G1∘D)ᵀ Q + (M + Mᵀ) K + D_{C−1,t} Z − βγ Y (the same warp owns the same stage tiles in all three calls).
    mma_tiles<true, false>(kC, KP, kC, gdop, qop, stg, ldX, false, 1.f, NoEpilogue{});
    mma_tiles<false, false>(kC, KP, kC, mop, kop, stg, ldX, true, 1.f, [&](int t, int i, float x) {
      const int64_t tg = t0 + t;
      if (tg < d.T && i < d.K) {
        const float xk = x + Dm[(kC - 1) * kLdC + t + 1] * Z[t * ldX + i] - be[t] * Dm[t * kLdC] * Y[t * ldX + i];
        dk[tok_off(d, b, h, tg, d.K) + i] = from_f<T>(xk);
      }
    });
  } else {
    for_each_tile(kC, KP, [&](int m0, int m1, int n0, int n1) {
      float aq[2][2] = {}, ak[2][2] = {};
      mm_acc(aq, m0, m1, n0, n1, kC, [&](int t, int s) { return QK[t * kLdC + s]; },
             [&](int s, int i) { return ks[s * ldk + i]; });
      mm_acc(ak, m0, m1, n0, n1, kC, [&](int s, int t) { return QK[t * kLdC + s]; },
             [&](int t, int i) { return qs[t * ldk + i]; });
      mm_acc(ak, m0, m1, n0, n1, kC, [&](int s, int uu) { return KK[s * kLdC + uu]; },
             [&](int uu, int i) { return ks[uu * ldk + i]; });
      tile_elems(m0, m1, n0, n1, [&](int t, int i, int r, int qq) {
        const int64_t tg = t0 + t;
        if (tg < d.T && i < d.K) {
          const float g = Dm[t * kLdC];
          const float xq = fmaf(g, X[t * ldk + i], aq[r][qq]);
          const float xk = ak[r][qq] + Dm[(kC - 1) * kLdC + t + 1] * Z[t * ldk + i] - be[t] * g * Y[t * ldk + i];
          dq[tok_off(d, b, h, tg, d.K) + i] = from_f<T>(xq);
          dk[tok_off(d, b, h, tg, d.K) + i] = from_f<T>(xk);
        }
      });
    });
  }
}

// One token: warp w of block x handles row j = (x mod ⌈V/8⌉)·8 + w of head bh = x / ⌈V/8⌉; lanes stride over K.
// s0 may be null (zero state).
// One state row per 16 lanes (a half warp): the row (K ≤ 128 floats) is read once into registers, 4 consecutive
// elements per lane and group of 64 (16-byte loads and stores when K % 4 == 0), S_j·k and the new row's ·q are sums
// over the 16 lanes (4 xor shuffles). kStepRows rows per block.
constexpr int kStepLanes = 16, kStepRows = kThreads / kStepLanes;
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gated_delta_step_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                            const float* __restrict__ alpha, const float* __restrict__ beta,
                            const float* __restrict__ s0, T* __restrict__ o, float* __restrict__ s_new, int64_t K,
                            int64_t V, bool vec) {
  const int64_t nb = (V + kStepRows - 1) / kStepRows;
  const int64_t bh = blockIdx.x / nb;
  const int64_t j = (blockIdx.x % nb) * kStepRows + threadIdx.x / kStepLanes;
  const int l = threadIdx.x % kStepLanes;
  const bool row_ok = j < V;  // lanes of a missing row still take part in the shuffles (full-warp masks)
  const float a = alpha[bh], be = beta[bh];
  const float* Sj = s0 ? s0 + (bh * V + j) * K : nullptr;
  const T* qh = q + bh * K;
  const T* kh = k + bh * K;
  float sr[8], kr[8], qr[8];  // elements 64m + 4l + c (m < 2, c < 4)
#pragma unroll
  for (int m = 0; m < 2; ++m) {
    const int64_t i0 = 64 * m + 4 * l;
    if (vec && row_ok && i0 < K) {
      const float4 x = Sj ? *reinterpret_cast<const float4*>(Sj + i0) : make_float4(0.f, 0.f, 0.f, 0.f);
      sr[4 * m] = x.x;
      sr[4 * m + 1] = x.y;
      sr[4 * m + 2] = x.z;
      sr[4 * m + 3] = x.w;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        kr[4 * m + c] = to_f(kh[i0 + c]);
        qr[4 * m + c] = to_f(qh[i0 + c]);
      }
    } else {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const bool ok = row_ok && i0 + c < K;
        sr[4 * m + c] = ok && Sj ? Sj[i0 + c] : 0.f;
        kr[4 * m + c] = ok ? to_f(kh[i0 + c]) : 0.f;
        qr[4 * m + c] = ok ? to_f(qh[i0 + c]) : 0.f;
      }
    }
  }
  float sk = 0.f;
#pragma unroll
  for (int e = 0; e < 8; ++e) sk = fmaf(sr[e], kr[e], sk);
#pragma unroll
  for (int off = kStepLanes / 2; off > 0; off >>= 1) sk += __shfl_xor_sync(0xffffffffu, sk, off);
  const float uj = row_ok ? be * (to_f(v[bh * V + j]) - a * sk) : 0.f;  // u_j = β (v_j − α (S k)_j)
  float oj = 0.f;
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    sr[e] = fmaf(a, sr[e], uj * kr[e]);  // S_j ← α S_j + u_j k
    oj = fmaf(sr[e], qr[e], oj);
  }
#pragma unroll
  for (int off = kStepLanes / 2; off > 0; off >>= 1) oj += __shfl_xor_sync(0xffffffffu, oj, off);
  if (!row_ok) return;
  float* Nj = s_new + (bh * V + j) * K;
#pragma unroll
  for (int m = 0; m < 2; ++m) {
    const int64_t i0 = 64 * m + 4 * l;
    if (vec && i0 < K) {
      *reinterpret_cast<float4*>(Nj + i0) = make_float4(sr[4 * m], sr[4 * m + 1], sr[4 * m + 2], sr[4 * m + 3]);
    } else {
#pragma unroll
      for (int c = 0; c < 4; ++c)
        if (i0 + c < K) Nj[i0 + c] = sr[4 * m + c];
    }
  }
  if (l == 0) o[bh * V + j] = from_f<T>(oj);
}

// ---------------------------------------------------------------------------------------------------------
// Launch helpers

int round32(int64_t x) { return static_cast<int>((x + 31) / 32 * 32); }

void check_head_dims(const char* op, int64_t K, int64_t V) {
  HYDRA_CHECK(K >= 1 && K <= kMaxHeadDim,
              "{}: key head dim K = {} (last dim of 'q' and 'k') is not supported by the CUDA kernel (supported: 1 to "
              "{})",
              op, K, kMaxHeadDim);
  HYDRA_CHECK(V >= 1 && V <= kMaxHeadDim,
              "{}: value head dim V = {} (last dim of 'v') is not supported by the CUDA kernel (supported: 1 to {})",
              op, V, kMaxHeadDim);
}

Dims make_dims(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V) {
  Dims d{};
  d.B = B;
  d.T = T;
  d.H = H;
  d.K = K;
  d.V = V;
  d.BH = B * H;
  d.NC = (T + kC - 1) / kC;
  d.KP = round32(K);
  d.VP = round32(V);
  return d;
}

Tensor as_f32(const Tensor& t) { return !t.defined() || t.dtype() == DType::Float32 ? t : t.to(DType::Float32); }

template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}
template <typename T>
T* mut_ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// Launches `kernel` with `blocks` blocks of kThreads and `floats` floats of dynamic shared memory on `stream`.
template <typename... P, typename... A>
void launch(const char* op, const char* name, void (*kernel)(P...), int64_t blocks, int floats, int device,
            cudaStream_t stream, A... args) {
  cuda::launch_kernel(op, name, kernel, blocks, kThreads, static_cast<std::size_t>(floats) * sizeof(float), device,
                      stream, args...);
}

// The dtype switch of the CUDA entry points: the dispatch has already refused everything but float32 / bfloat16.
template <typename F>
void dispatch_qkv(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::Float32: f.template operator()<float>(); return;
    case DType::BFloat16: f.template operator()<BFloat16>(); return;
    default: break;
  }
  HYDRA_CHECK(false, "{}: dtype {} not supported on CUDA (supported: float32, bfloat16)", op, dtype_name(t));
}

// Scratch of the chunk stages (all fp32): Wk [BH, NC·C, KP], Uv → U [BH, NC·C, VP], chunk-start states
// [BH, NC, VP, KP].
struct FwdScratch {
  Tensor wk, u, states;
};
FwdScratch make_fwd_scratch(const Dims& d, const Device& dev) {
  return {empty({d.BH, d.NC * kC, d.KP}, DType::Float32, dev), empty({d.BH, d.NC * kC, d.VP}, DType::Float32, dev),
          empty({d.BH, d.NC, d.VP, d.KP}, DType::Float32, dev)};
}

// The bf16 path stores wmma accumulators straight into the fp32 scratch (Wk, Uv, dU_intra at row offsets that are
// multiples of 32 rows): the base must be 32-byte aligned, which fresh allocations are (an internal invariant).
void check_wmma_aligned(const char* op, const char* name, const Tensor& t) {
  HYDRA_CHECK(reinterpret_cast<uintptr_t>(t.data<float>()) % 32 == 0,
              "{}: internal scratch '{}' is not 32-byte aligned (needed by the tensor-core stores)", op, name);
}

// The two state stages shared by forward and backward: prep (Wk, Uv, optionally T) and the state pass.
template <typename T>
void run_prep_and_states(const char* op, const Tensor& k, const Tensor& v, const Tensor& a32, const Tensor& b32,
                         const Tensor& s32, const FwdScratch& sc, const Tensor& tinv, const Tensor& s_final,
                         const Dims& d, int dev, cudaStream_t s) {
  constexpr bool tc = kTensorCores<T>;
  if (tc) {
    check_wmma_aligned(op, "wk", sc.wk);
    check_wmma_aligned(op, "u", sc.u);
  }
  launch(op, "gated_delta_prep_kernel", gated_delta_prep_kernel<T>, d.NC * d.BH, prep_smem<tc>(d.KP, d.VP).total,
         dev, s, k.data<T>(), v.data<T>(), a32.data<float>(), b32.data<float>(), sc.wk.data<float>(),
         sc.u.data<float>(), mut_ptr_or_null<float>(tinv), d);
  launch(op, "gated_delta_state_fwd_kernel", gated_delta_state_fwd_kernel<T>, (d.VP / kBV) * d.BH,
         state_fwd_smem<tc>(d.KP).total, dev, s, k.data<T>(), a32.data<float>(), sc.wk.data<float>(),
         sc.u.data<float>(), ptr_or_null<float>(s32), sc.states.data<float>(), mut_ptr_or_null<float>(s_final), d);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Entry points

GatedDeltaOutput gated_delta_forward_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& alpha,
                                          const Tensor& beta, const Tensor& initial_state) {
  const char* op = "gated_delta_forward";
  check_head_dims(op, q.size(3), v.size(3));
  const Device dev = q.device();
  cuda::DeviceGuard guard(dev.index);
  if (q.dtype() == DType::BFloat16)  // tensor-core kernels with chunk 64 (gated_delta_mma.cu)
    return gated_delta_forward_mma(q, k, v, as_f32(alpha), as_f32(beta), as_f32(initial_state));
  const Dims d = make_dims(q.size(0), q.size(1), q.size(2), q.size(3), v.size(3));
  GatedDeltaOutput out{empty({d.B, d.T, d.H, d.V}, q.dtype(), dev), empty({d.B, d.H, d.V, d.K}, DType::Float32, dev)};
  if (d.BH == 0) return out;
  const Tensor a32 = as_f32(alpha), b32 = as_f32(beta), s32 = as_f32(initial_state);
  const FwdScratch sc = make_fwd_scratch(d, dev);
  cudaStream_t s = cuda::stream_of(q);
  dispatch_qkv(q.dtype(), op, [&]<typename T>() {
    run_prep_and_states<T>(op, k, v, a32, b32, s32, sc, Tensor(), out.final_state, d, dev.index, s);
    launch(op, "gated_delta_out_kernel", gated_delta_out_kernel<T>, d.NC * d.BH, out_smem<kTensorCores<T>>(d.KP).total,
           dev.index, s, q.data<T>(), k.data<T>(), a32.data<float>(), sc.u.data<float>(), sc.states.data<float>(),
           out.o.data<T>(), d);
  });
  return out;
}

GatedDeltaGrads gated_delta_backward_cuda(const Tensor& do_, const Tensor& dfinal_state, const Tensor& q,
                                          const Tensor& k, const Tensor& v, const Tensor& alpha, const Tensor& beta,
                                          const Tensor& initial_state) {
  const char* op = "gated_delta_backward";
  check_head_dims(op, q.size(3), v.size(3));
  const Device dev = q.device();
  cuda::DeviceGuard guard(dev.index);
  if (q.dtype() == DType::BFloat16) {  // tensor-core kernels with chunk 64 (gated_delta_mma.cu)
    GatedDeltaGrads g = gated_delta_backward_mma(do_, as_f32(dfinal_state), q, k, v, as_f32(alpha), as_f32(beta),
                                                 as_f32(initial_state));
    if (alpha.dtype() != DType::Float32) g.dalpha = g.dalpha.to(alpha.dtype());
    if (beta.dtype() != DType::Float32) g.dbeta = g.dbeta.to(beta.dtype());
    if (g.dinitial_state.defined() && initial_state.dtype() != DType::Float32)
      g.dinitial_state = g.dinitial_state.to(initial_state.dtype());
    return g;
  }
  const Dims d = make_dims(q.size(0), q.size(1), q.size(2), q.size(3), v.size(3));
  GatedDeltaGrads g{empty(q.shape(), q.dtype(), dev),
                    empty(k.shape(), q.dtype(), dev),
                    empty(v.shape(), q.dtype(), dev),
                    Tensor(),
                    Tensor(),
                    Tensor()};
  Tensor da32 = empty(alpha.shape(), DType::Float32, dev), db32 = empty(beta.shape(), DType::Float32, dev);
  Tensor ds32 = initial_state.defined() ? empty(initial_state.shape(), DType::Float32, dev) : Tensor();
  if (d.BH > 0) {
    const Tensor a32 = as_f32(alpha), b32 = as_f32(beta), s32 = as_f32(initial_state), gf32 = as_f32(dfinal_state);
    const FwdScratch sc = make_fwd_scratch(d, dev);
    const Tensor tinv = empty({d.BH, d.NC, kC, kC}, DType::Float32, dev);
    const Tensor dstates = empty({d.BH, d.NC, d.VP, d.KP}, DType::Float32, dev);
    const Tensor du = empty({d.BH, d.NC * kC, d.VP}, DType::Float32, dev);
    cudaStream_t s = cuda::stream_of(q);
    dispatch_qkv(q.dtype(), op, [&]<typename T>() {
      // Recompute Wk, U, T and the chunk-start states, then walk the chunks in reverse for the state gradients.
      constexpr bool tc = kTensorCores<T>;
      run_prep_and_states<T>(op, k, v, a32, b32, s32, sc, tinv, Tensor(), d, dev.index, s);
      if (tc) check_wmma_aligned(op, "du", du);
      launch(op, "gated_delta_du_intra_kernel", gated_delta_du_intra_kernel<T>, d.NC * d.BH,
             du_intra_smem<tc>(d.KP, d.VP).total, dev.index, s, q.data<T>(), k.data<T>(), a32.data<float>(),
             do_.data<T>(), du.data<float>(), d);
      launch(op, "gated_delta_state_bwd_kernel", gated_delta_state_bwd_kernel<T>, (d.VP / kBV) * d.BH,
             state_bwd_smem<tc>(d.KP).total, dev.index, s, q.data<T>(), k.data<T>(), a32.data<float>(),
             do_.data<T>(), sc.wk.data<float>(), du.data<float>(), ptr_or_null<float>(gf32), dstates.data<float>(),
             mut_ptr_or_null<float>(ds32), d);
      launch(op, "gated_delta_grads_kernel", gated_delta_grads_kernel<T>, d.NC * d.BH, grads_smem<tc>(d.KP).total,
             dev.index, s, q.data<T>(), k.data<T>(), v.data<T>(), a32.data<float>(), b32.data<float>(),
             do_.data<T>(), sc.u.data<float>(), du.data<float>(), tinv.data<float>(), sc.states.data<float>(),
             dstates.data<float>(), g.dq.data<T>(), g.dk.data<T>(), g.dv.data<T>(), da32.data<float>(),
             db32.data<float>(), d);
    });
  }
  // Gradients in each input's own dtype.
  g.dalpha = alpha.dtype() == DType::Float32 ? da32 : da32.to(alpha.dtype());
  g.dbeta = beta.dtype() == DType::Float32 ? db32 : db32.to(beta.dtype());
  if (ds32.defined())
    g.dinitial_state = initial_state.dtype() == DType::Float32 ? ds32 : ds32.to(initial_state.dtype());
  return g;
}

GatedDeltaOutput gated_delta_step_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& alpha,
                                       const Tensor& beta, const Tensor& state) {
  const char* op = "gated_delta_step";
  const int64_t B = q.size(0), H = q.size(1), K = q.size(2), V = v.size(2);
  check_head_dims(op, K, V);
  const Device dev = q.device();
  cuda::DeviceGuard guard(dev.index);
  GatedDeltaOutput out{empty({B, H, V}, q.dtype(), dev), empty({B, H, V, K}, DType::Float32, dev)};
  const int64_t BH = B * H;
  if (BH == 0) return out;
  const Tensor a32 = as_f32(alpha), b32 = as_f32(beta), s32 = as_f32(state);
  cudaStream_t s = cuda::stream_of(q);
  const int64_t blocks = BH * ((V + kStepRows - 1) / kStepRows);
  // 16-byte state rows: K % 4 == 0 and 16-byte aligned bases (fresh allocations are).
  const bool vec = K % 4 == 0 && (!s32.defined() || reinterpret_cast<uintptr_t>(s32.data<float>()) % 16 == 0) &&
                   reinterpret_cast<uintptr_t>(out.final_state.data<float>()) % 16 == 0;
  dispatch_qkv(q.dtype(), op, [&]<typename T>() {
    launch(op, "gated_delta_step_kernel", gated_delta_step_kernel<T>, blocks, 0, dev.index, s, q.data<T>(),
           k.data<T>(), v.data<T>(), a32.data<float>(), b32.data<float>(), ptr_or_null<float>(s32), out.o.data<T>(),
           out.final_state.data<float>(), K, V, vec);
  });
  return out;
}

}  // namespace hydra
