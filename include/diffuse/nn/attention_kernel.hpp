#pragma once
/// \file
/// One attention head over the pixels of one image, o = v·softmax(qᵀk·scale)ᵀ, with register-blocked
/// SIMD products and a softmax that needs no horizontal reduction.
///
/// Why not two GEMM calls and a row softmax: at the attention sizes of pixel-space DDPMs (64 to 256
/// pixels, heads of 16 to 256 channels) a general GEMM spends as long packing its operands and choosing
/// its blocking as multiplying, and a softmax along rows of 64 scores ends every row with horizontal
/// reductions (a max and a sum across the lanes of a vector) that cost more than the row. Here the score
/// matrix is built transposed, eᵀ[j][i] for key j and query i, so that each SIMD vector holds one key's
/// scores for consecutive queries: the softmax over keys is then elementwise maxima, exponentials and
/// sums down the columns, and both products are the same small kernel, a tile of rows × SIMD vectors of
/// queries held in registers while it walks the shared dimension (per step: one vector load per column of
/// the tile, one broadcast per row).
///
/// The vector path needs the pixel count to be a multiple of the SIMD width; attention_forward uses the
/// GEMM path otherwise. Every output is the same sum in the same order whatever the thread count or the
/// batch split.

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "diffuse/detail/fma.hpp"
#include "diffuse/detail/simd_math.hpp"
#include "diffuse/version.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {
namespace detail {

/// The attention kernel's register tile: rows × vectors accumulators, plus the vectors' operands and a
/// broadcast, within the register file (32 vector registers with AVX-512: 6 × 4 = 24 accumulators; 16
/// elsewhere: 4 × 2).
template <class S>
struct attention_tile {
  static constexpr bool wide = std::is_base_of_v<xsimd::avx512f, typename xsimd::batch<S>::arch_type>;
  static constexpr int rows = wide ? 6 : 4;
  static constexpr int vectors = wide ? 4 : 2;
};

/// What a product tile does with its sums before storing them: c = (Σ·column_scale[col] + row_bias[r])
/// (+ c's previous value when accumulating), each part only when given.
template <class S>
struct product_epilogue {
  const S* column_scale = nullptr;  ///< one factor per column of c
  const S* row_bias = nullptr;      ///< one value per row of c
  bool accumulate = false;          ///< add to c instead of overwriting it (a residual already there)
};

/// c[r][col] = epilogue(Σ_k a[r·a_row + k·a_step]·b[k·ldb + col]) for R rows and V vectors of columns:
/// the R × V accumulators stay in registers for the whole sum over k.
template <class S, int R, int V>
inline void attention_product_tile(const S* a, std::ptrdiff_t a_row, std::ptrdiff_t a_step, const S* b, std::ptrdiff_t ldb,
                                   std::ptrdiff_t depth, const product_epilogue<S>& e, S* c, std::ptrdiff_t ldc) noexcept {
  using batch = xsimd::batch<S>;
  constexpr std::ptrdiff_t L = batch::size;
  batch acc[R][V];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) acc[r][v] = batch(S(0));
  for (std::ptrdiff_t k = 0; k < depth; ++k) {
    batch bv[V];
    for (int v = 0; v < V; ++v) bv[v] = batch::load_unaligned(b + k * ldb + v * L);
    for (int r = 0; r < R; ++r) {
      const batch ar(a[r * a_row + k * a_step]);
      for (int v = 0; v < V; ++v) acc[r][v] = diffuse::detail::fused_multiply_add(ar, bv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) {
      batch value = acc[r][v];
      if (e.column_scale) value = value * batch::load_unaligned(e.column_scale + v * L);
      if (e.row_bias) value = value + batch(e.row_bias[r]);
      S* to = c + r * ldc + v * L;
      if (e.accumulate) value = batch::load_unaligned(to) + value;
      value.store_unaligned(to);
    }
}

/// The tile for R rows and v (< V) vectors, chosen at run time among the compiled shapes.
template <class S, int R, int V = attention_tile<S>::vectors>
inline void attention_product_rows(const S* a, std::ptrdiff_t a_row, std::ptrdiff_t a_step, const S* b, std::ptrdiff_t ldb,
                                   std::ptrdiff_t depth, const product_epilogue<S>& e, S* c, std::ptrdiff_t ldc,
                                   int vectors) noexcept {
  if constexpr (V > 1) {
    if (vectors < V) {
      attention_product_rows<S, R, V - 1>(a, a_row, a_step, b, ldb, depth, e, c, ldc, vectors);
      return;
    }
  }
  attention_product_tile<S, R, V>(a, a_row, a_step, b, ldb, depth, e, c, ldc);
}

/// R (≤ the tile's rows) chosen at run time.
template <class S, int R = attention_tile<S>::rows>
inline void attention_product_block(int rows, const S* a, std::ptrdiff_t a_row, std::ptrdiff_t a_step, const S* b,
                                    std::ptrdiff_t ldb, std::ptrdiff_t depth, const product_epilogue<S>& e, S* c,
                                    std::ptrdiff_t ldc, int vectors) noexcept {
  if constexpr (R > 1) {
    if (rows < R) {
      attention_product_block<S, R - 1>(rows, a, a_row, a_step, b, ldb, depth, e, c, ldc, vectors);
      return;
    }
  }
  attention_product_rows<S, R>(a, a_row, a_step, b, ldb, depth, e, c, ldc, vectors);
}

/// c (m × n, row stride ldc) = epilogue(A·B), A(r, k) = a[r·a_row + k·a_step], B (depth × n, row stride
/// ldb); n a multiple of the SIMD width.
template <class S>
inline void attention_product(std::ptrdiff_t m, std::ptrdiff_t n, std::ptrdiff_t depth, const S* a, std::ptrdiff_t a_row,
                              std::ptrdiff_t a_step, const S* b, std::ptrdiff_t ldb, const product_epilogue<S>& e, S* c,
                              std::ptrdiff_t ldc) noexcept {
  constexpr std::ptrdiff_t L = xsimd::batch<S>::size;
  constexpr int R = attention_tile<S>::rows, V = attention_tile<S>::vectors;
  for (std::ptrdiff_t col = 0; col < n; col += V * L) {
    const int vectors = static_cast<int>(std::min<std::ptrdiff_t>(V, (n - col) / L));
    for (std::ptrdiff_t r = 0; r < m; r += R) {
      const product_epilogue<S> block{.column_scale = e.column_scale ? e.column_scale + col : nullptr,
                                      .row_bias = e.row_bias ? e.row_bias + r : nullptr,
                                      .accumulate = e.accumulate};
      attention_product_block<S>(static_cast<int>(std::min<std::ptrdiff_t>(R, m - r)), a + r * a_row, a_row, a_step, b + col,
                                 ldb, depth, block, c + r * ldc + col, ldc, vectors);
    }
  }
}

/// Whether attention_head can run on `pixels` pixels (a whole number of SIMD vectors).
template <class S>
constexpr bool attention_kernel_fits(std::ptrdiff_t pixels) noexcept {
  return pixels > 0 && pixels % static_cast<std::ptrdiff_t>(xsimd::batch<S>::size) == 0;
}

/// Scratch attention_head needs: the P × P transposed scores and P per-query factors.
template <class S>
constexpr std::ptrdiff_t attention_head_scratch(std::ptrdiff_t pixels) noexcept {
  return pixels * pixels + pixels;
}

/// o (d × P) = v (d × P) · softmax_keys(kᵀq·scale) for one head: q, k, v, o rows `ld` apart (channels
/// of the head), scratch of attention_head_scratch(P) elements. P must satisfy attention_kernel_fits.
/// Softmax as PyTorch defines it, e^(s − max) / Σ e^(s − max); the division by each query's sum is
/// applied once, to its output column.
template <class S>
void attention_head(const S* q, const S* k, const S* v, S* o, std::ptrdiff_t d, std::ptrdiff_t P, std::ptrdiff_t ld,
                    S scale, S* scratch) noexcept {
  using batch = xsimd::batch<S>;
  constexpr std::ptrdiff_t L = batch::size;
  S* et = scratch;                // eᵀ: P keys × P queries
  S* factor = scratch + P * P;    // per query: first the score scale, then 1 / Σ e
  std::fill(factor, factor + P, scale);
  // eᵀ[j][i] = scale·Σ_c k[c][j]·q[c][i]: rows j (k read down a column: a_row = 1, a_step = ld).
  attention_product<S>(P, P, d, k, 1, ld, q, ld, {.column_scale = factor}, et, P);
  // Softmax over keys, down each column of L queries: maxima, exponentials and their sum, elementwise.
  for (std::ptrdiff_t i = 0; i < P; i += L) {
    S* col = et + i;
    batch mx = batch::load_unaligned(col);
    for (std::ptrdiff_t j = 1; j < P; ++j) mx = xsimd::max(mx, batch::load_unaligned(col + j * P));
    batch sum(S(0));
    for (std::ptrdiff_t j = 0; j < P; ++j) {
      const batch e = diffuse::detail::fast_exp(batch::load_unaligned(col + j * P) - mx);
      e.store_unaligned(col + j * P);
      sum += e;
    }
    (batch(S(1)) / sum).store_unaligned(factor + i);
  }
  // o[c][i] = (1/Σ)[i]·Σ_j v[c][j]·eᵀ[j][i]: rows c (v read along its row: a_row = ld, a_step = 1).
  attention_product<S>(d, P, P, v, ld, 1, et, P, {.column_scale = factor}, o, ld);
}

}  // namespace detail
}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
