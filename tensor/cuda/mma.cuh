#pragma once
// Warp-level tensor-core building blocks for the hand-written CUDA kernels (bf16 operands, fp32 accumulators):
// asynchronous global→shared copies, ldmatrix loads of operand fragments and the m16n8k16 MMA. Device code only.
//
// Fragment layouts of mma.sync.m16n8k16 (PTX ISA, "Matrix Fragments for mma.m16n8k16"); g = lane / 4, c = lane % 4:
//   A (16×16, row-major)  a[0] = A(g, 2c..2c+1)   a[1] = A(g+8, 2c..2c+1)   a[2] = A(g, 2c+8..)   a[3] = A(g+8, 2c+8..)
//   B (16×8)              b[0] = B(2c..2c+1, g)   b[1] = B(2c+8..2c+9, g)
//   C (16×8, fp32)        c[0..1] = C(g, 2c..2c+1)   c[2..3] = C(g+8, 2c..2c+1)
// Two adjacent C tiles (columns 16s..16s+15) rounded to bf16 are exactly the A fragment of k-step s (pack_a_from_c):
// a product's output feeds the next product without leaving registers (the flash-attention P·V trick).
//
// Operands in shared memory are row-major tiles of bf16 with a row stride `ld` (elements) whose byte size is a
// multiple of 16 and not of 128 (e.g. D + 8): the 8 row addresses of one ldmatrix 8×8 matrix then fall in distinct
// 16-byte bank groups (no conflicts).
//   load_a:      A = X[16 rows][16 cols at k0]                 (X row-major: rows = M, cols = K)
//   load_b_nk:   B(k, n) = Y[n][k], two n-tiles of 8 at n0     (Y row-major [N][K], e.g. keys for Q·Kᵀ)
//   load_b_kn:   B(k, n) = Y[k][n], two n-tiles of 8 at n0     (Y row-major [K][N], e.g. values for P·V; .trans)
//   load_a_t:    A(m, k) = Y[k][m], rows m0..m0+15              (Y row-major [K][M], e.g. Uᵀ·K; .trans)
// load_rows stages a tile of rows of a [rows, H, D]-strided tensor in shared memory in the layout above.
#include <cuda_bf16.h>

#include <cstdint>

namespace hydra::cuda {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global→shared copy that bypasses L1; src_bytes < 16 zero-fills the rest (0: the whole chunk is zeros and
// src is not read). Both addresses 16-byte aligned.
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// c += a·b (m16n8k16, bf16 × bf16 → fp32).
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// c += a·b (m16n8k8, tf32 × tf32 → fp32). Fragments (g = lane / 4, c = lane % 4): a[0] = A(g, c), a[1] = A(g+8, c),
// a[2] = A(g, c+4), a[3] = A(g+8, c+4); b0 = B(c, g), b1 = B(c+4, g); the C layout is that of m16n8k16.
__device__ __forceinline__ void mma_1688_tf32(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// A float rounded to tf32 (10-bit mantissa, round to nearest, ties away), as an MMA operand register.
__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}

// Two floats → one register of two bf16 (round to nearest even), lo in the low half.
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// A fragment of rows 0..15, columns k0..k0+15 of a row-major bf16 tile x (row stride ld elements).
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const __nv_bfloat16* x, int ld, int k0) {
  const int lane = threadIdx.x & 31;
  ldmatrix_x4(a, x + (lane & 15) * ld + k0 + ((lane >> 4) << 3));
}

// B fragments of n-tiles n0..n0+7 (b[0], b[1]) and n0+8..n0+15 (b[2], b[3]) at k-step k0, with B(k, n) = y[n][k].
__device__ __forceinline__ void load_b_nk(uint32_t (&b)[4], const __nv_bfloat16* y, int ld, int n0, int k0) {
  const int lane = threadIdx.x & 31;
  ldmatrix_x4(b, y + (n0 + (lane & 7) + ((lane >> 4) << 3)) * ld + k0 + (((lane >> 3) & 1) << 3));
}

// The same with B(k, n) = y[k][n] (transposing load).
__device__ __forceinline__ void load_b_kn(uint32_t (&b)[4], const __nv_bfloat16* y, int ld, int n0, int k0) {
  const int lane = threadIdx.x & 31;
  ldmatrix_x4_trans(b, y + (k0 + (lane & 7) + (((lane >> 3) & 1) << 3)) * ld + n0 + ((lane >> 4) << 3));
}

// A fragment of Aᵀ-stored operand: A(m, k) = y[k][m] for m in m0..m0+15, k in k0..k0+15 (transposing load).
__device__ __forceinline__ void load_a_t(uint32_t (&a)[4], const __nv_bfloat16* y, int ld, int m0, int k0) {
  const int lane = threadIdx.x & 31;
  ldmatrix_x4_trans(a, y + (k0 + (lane & 7) + ((lane >> 4) << 3)) * ld + m0 + (((lane >> 3) & 1) << 3));
}

// The A fragment of k-step s from the fp32 accumulators of n-tiles 2s (c0) and 2s+1 (c1), rounded to bf16.
__device__ __forceinline__ void pack_a_from_c(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
  a[0] = pack_bf16(c0[0], c0[1]);
  a[1] = pack_bf16(c0[2], c0[3]);
  a[2] = pack_bf16(c1[0], c1[1]);
  a[3] = pack_bf16(c1[2], c1[3]);
}

// Rows [r0, r0 + ROWS) of a tensor (row stride `stride` elements, `width` valid columns) into the shared tile dst
// (D columns, row stride D + 8); rows ≥ r_end and columns ≥ width are zeros. Called by all NT threads of the block.
// vec (width % 8 == 0 and 16-byte aligned rows): asynchronous 16-byte copies (the caller commits and waits);
// otherwise plain element loads.
template <int D, int ROWS, int NT>
__device__ __forceinline__ void load_rows(__nv_bfloat16* dst, const __nv_bfloat16* __restrict__ src, int64_t stride,
                                          int64_t r0, int64_t r_end, int64_t width, bool vec) {
  constexpr int CH = D / 8, LD = D + 8;  // 16-byte chunks per row
  constexpr int N = ROWS * CH, IT = (N + NT - 1) / NT;
  // A fixed trip count, unrolled: no loop bookkeeping per chunk (the sequential gated-delta kernels call this three
  // to five times per chunk step, where the general loop's instructions were a large part of the step).
#pragma unroll
  for (int it = 0; it < IT; ++it) {
    const int i = static_cast<int>(threadIdx.x) + it * NT;
    if (N % NT != 0 && i >= N) break;
    const int r = i / CH, c = (i - r * CH) * 8;
    __nv_bfloat16* to = dst + r * LD + c;
    const int64_t g = r0 + r;
    if (vec) {
      const bool ok = g < r_end && c < width;
      cp_async_16(to, ok ? src + g * stride + c : src, ok ? 16 : 0);
    } else {
      alignas(16) __nv_bfloat16 tmp[8];
#pragma unroll
      for (int e = 0; e < 8; ++e)
        tmp[e] = (g < r_end && c + e < width) ? src[g * stride + c + e] : __float2bfloat16(0.f);
      *reinterpret_cast<uint4*>(to) = *reinterpret_cast<const uint4*>(tmp);
    }
  }
}

}  // namespace hydra::cuda
