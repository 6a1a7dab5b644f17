#pragma once
// CPU iteration over N strided operands of one shape (output first). Dims that are contiguous for every
// operand are merged, then the last dim becomes the inner loop: row(ptrs, n, inner_strides) gets byte
// pointers to each operand's first element of the row, the row length and the inner strides in elements.
// Rows, and pieces of long rows, run in parallel under OpenMP when the tensor is large; each element is written by
// results do not depend on the thread count.
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdint>

#include "tensor/shape.h"

namespace hydra::cpu {

constexpr int64_t kParallelGrain = 1 << 15;  // elements below which loops stay single-threaded

template <std::size_t N, typename Row>
void for_each_row(const Shape& shape, std::array<Shape, N> strides, std::array<char*, N> base,
                  std::array<int64_t, N> elem_size, Row&& row) {
  // Merge dims i and i+1 when every operand has stride[i] == stride[i+1] * shape[i+1]. Size-1 dims drop out.
  Shape sh;
  std::array<Shape, N> st;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!sh.empty()) {
      bool merge = true;
      for (std::size_t k = 0; k < N; ++k)
        if (st[k].back() != strides[k][d] * shape[d]) merge = false;
      if (merge) {
        sh.back() *= shape[d];
        for (std::size_t k = 0; k < N; ++k) st[k].back() = strides[k][d];
        continue;
      }
    }
    sh.push_back(shape[d]);
    for (std::size_t k = 0; k < N; ++k) st[k].push_back(strides[k][d]);
  }
  if (shape_numel(shape) == 0) return;
  if (sh.empty()) {  // a single element
    sh.push_back(1);
    for (std::size_t k = 0; k < N; ++k) st[k].push_back(1);
  }
  const int64_t nd = static_cast<int64_t>(sh.size());
  const int64_t inner = sh.back();
  const int64_t rows = shape_numel(sh) / inner;
  std::array<int64_t, N> inner_stride;
  for (std::size_t k = 0; k < N; ++k) inner_stride[k] = st[k].back();

  // Row r, elements [begin, begin + len): every caller's row function is elementwise along the row, so a row may
  // be cut into pieces (a contiguous tensor merges into one row, which would otherwise run on one thread).
  auto run_piece = [&](int64_t r, int64_t begin, int64_t len) {
    std::array<char*, N> p = base;
    int64_t rem = r;
    for (int64_t d = nd - 2; d >= 0; --d) {
      int64_t i = rem % sh[d];
      rem /= sh[d];
      for (std::size_t k = 0; k < N; ++k) p[k] += i * st[k][d] * elem_size[k];
    }
    for (std::size_t k = 0; k < N; ++k) p[k] += begin * inner_stride[k] * elem_size[k];
    row(p, len, inner_stride);
  };
  if (rows * inner >= kParallelGrain) {
    // Few long rows: cut each into pieces of at least kParallelGrain / 4 elements.
    const int64_t per_row = rows >= 64 ? 1 : std::max<int64_t>(1, inner / (kParallelGrain / 4));
    const int64_t piece = (inner + per_row - 1) / per_row;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < rows * per_row; ++t) {
      const int64_t r = t / per_row, begin = (t % per_row) * piece;
      if (begin < inner) run_piece(r, begin, std::min(piece, inner - begin));
    }
  } else {
    for (int64_t r = 0; r < rows; ++r) run_piece(r, 0, inner);
  }
}

// Runs f(begin, end) over [0, n) split into chunks, in parallel when n * cost_per_item is large.
template <typename F>
void parallel_for(int64_t n, int64_t cost_per_item, F&& f) {
  if (n <= 1 || n * cost_per_item < kParallelGrain) {
    if (n > 0) f(int64_t{0}, n);
    return;
  }
#pragma omp parallel
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t chunk = (n + nt - 1) / nt;
    const int64_t b = std::min(n, t * chunk), e = std::min(n, b + chunk);
    if (b < e) f(b, e);
  }
}

}  // namespace hydra::cpu
