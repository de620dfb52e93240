#pragma once
/// \file
/// Direct 3×3 (and 1×1) stride-1 convolution with register blocking, for the reference UNet's hot loop.
///
/// Why not im2col + GEMM here: im2col writes every input value k² times and a general GEMM repacks the
/// weights on every call; at the small images and channel counts of pixel-space DDPMs those two passes
/// cost as much as the multiply-adds. Here the weights are packed once at load time, the input is copied
/// once into a zero-bordered buffer, and a micro-kernel keeps a tile of output channels × SIMD vectors of
/// output pixels in registers (direct_tile: 8 × 3 with AVX-512, 4 × 2 otherwise) while it walks the input
/// channels and the k×k taps: per tap it loads one input vector per column of the tile and broadcasts one
/// weight per row.
///
/// Every output element is the same sum in the same order whatever the thread count or batch split
/// (bias first, then input channel by channel, taps row by row), so results are reproducible bit for bit.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "diffuse/detail/fma.hpp"
#include "diffuse/error.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {

/// The direct kernel's register tile for S on the target the library is compiled for: `rows` output
/// channels × `vectors` SIMD vectors of output pixels, all accumulators live in registers. With 32 vector
/// registers (AVX-512) an 8 × 3 tile: per tap 3 input loads and 8 broadcasts feed 24 multiply-adds, and
/// consecutive tiles reuse one block of packed weights; measured on a Xeon core (BM_conv3x3) 175–192
/// GFLOP/s at 16×16 and 32×32 against 140–155 for 4 × 2. With 16 (AVX2, SSE) the 4 × 2 tile, which was
/// the fastest of 4×3, 4×2, 6×2, 3×4, 8×1, 2×4 and 2×5 on an AVX2 core, with consecutive tiles sharing
/// the input instead.
template <class S>
struct direct_tile {
  /// Whether the target has 32 vector registers.
  static constexpr bool wide = std::is_base_of_v<xsimd::avx512f, typename xsimd::batch<S>::arch_type>;
  static constexpr int rows = wide ? 8 : 4;     ///< output channels per tile (per packed weight block)
  static constexpr int vectors = wide ? 3 : 2;  ///< SIMD vectors of output pixels per tile
  static constexpr bool tile_innermost = wide;  ///< task order: tiles of one weight block consecutively
};

/// Weights of a convolution packed for the direct kernel: blocks of `rows` output channels, each block
/// (in·k·k, rows) so that the `rows` weights of one tap are adjacent. Output channels past `out` are zero.
template <class S>
struct packed_conv_weights {
  static constexpr int rows = direct_tile<S>::rows;  ///< output channels per block: the tile's height
  std::vector<S> values;                              ///< blocks × taps × rows
  int blocks = 0;                                     ///< ⌈out / rows⌉
  std::ptrdiff_t taps = 0;                            ///< in·k·k
  bool empty() const noexcept { return values.empty(); }  ///< not packed (the convolution takes im2col + GEMM)
};

namespace detail {

/// One tile: acc[r][v] = bias[r] + Σ_{ci, ky, kx} w[ci, ky, kx][r]·x_v[ci·plane + ky·row + kx·tap], stored
/// to (or added to) y. `x` is the input of one batch item as conv2d_direct lays it out (channels `plane`
/// apart, rows `row` apart, the copy for tap column kx at kx·tap), `in_vec[v]` the offset of vector v's
/// first tap in it, `out_vec[v]` the offset of its first output pixel in one output channel plane.
template <class S, int K, int V>
void direct_conv_tile(const S* x, int in_channels, std::ptrdiff_t plane, std::ptrdiff_t row, std::ptrdiff_t tap,
                      const S* w, const S* bias,
                      int valid_rows, const std::ptrdiff_t* in_vec, const std::ptrdiff_t* out_vec, S* y,
                      std::ptrdiff_t y_channel_stride, bool accumulate) {
  using batch = xsimd::batch<S>;
  constexpr int R = packed_conv_weights<S>::rows;
  batch acc[R][V];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) acc[r][v] = batch(r < valid_rows ? bias[r] : S(0));
  const S* xv[V];
  for (int v = 0; v < V; ++v) xv[v] = x + in_vec[v];
  for (int ci = 0; ci < in_channels; ++ci) {
    for (int ky = 0; ky < K; ++ky)
      for (int kx = 0; kx < K; ++kx) {
        const std::ptrdiff_t off = ky * row + kx * tap;
        batch in[V];
        for (int v = 0; v < V; ++v) in[v] = batch::load_unaligned(xv[v] + off);
        for (int r = 0; r < R; ++r) {
          const batch wr(w[r]);
          for (int v = 0; v < V; ++v) acc[r][v] = diffuse::detail::fused_multiply_add(wr, in[v], acc[r][v]);
        }
        w += R;
      }
    for (int v = 0; v < V; ++v) xv[v] += plane;
  }
  for (int r = 0; r < valid_rows; ++r)
    for (int v = 0; v < V; ++v) {
      S* dst = y + r * y_channel_stride + out_vec[v];
      if (accumulate) acc[r][v] += batch::load_unaligned(dst);
      acc[r][v].store_unaligned(dst);
    }
}

/// How a plane of `vectors` SIMD vectors of output pixels is cut into tiles: tiles of
/// direct_tile::vectors, except that when they do not divide the plane the last full tile and the
/// remainder become two near-equal tiles (3 + 1 becomes 2 + 2). A 1-vector tile has one input load per 8
/// broadcasts and runs at a third of the full tile's rate, which at 8×8 and 16×16 cost a tenth of the
/// forward.
template <class S>
struct plane_tiles {
  static constexpr int V = direct_tile<S>::vectors;
  std::ptrdiff_t vectors;  ///< vectors in the plane
  std::ptrdiff_t count;    ///< tiles
  std::ptrdiff_t even;     ///< leading tiles of exactly V vectors

  explicit plane_tiles(std::ptrdiff_t plane_vectors) noexcept
      : vectors(plane_vectors),
        count((plane_vectors + V - 1) / V),
        even(plane_vectors % V > 0 && plane_vectors / V > 0 ? plane_vectors / V - 1 : plane_vectors / V) {}

  /// Tile t: its first vector and its number of vectors.
  std::pair<std::ptrdiff_t, int> operator[](std::ptrdiff_t t) const noexcept {
    if (t < even) return {t * V, V};
    const std::ptrdiff_t left = vectors - even * V, first = (left + 1) / 2;  // one or two tiles remain
    if (count - even == 1) return {even * V, static_cast<int>(left)};
    return t == even ? std::pair{even * V, static_cast<int>(first)} : std::pair{even * V + first, static_cast<int>(left - first)};
  }
};

/// direct_conv_tile with a number of vectors (1 … direct_tile::vectors) known only at run time: a tile
/// at the end of a plane may be narrower than the full one.
template <class S, int K>
void direct_conv_tile_of(int vectors, const S* x, int in_channels, std::ptrdiff_t plane, std::ptrdiff_t row,
                         std::ptrdiff_t tap, const S* w, const S* bias, int valid_rows, const std::ptrdiff_t* in_vec,
                         const std::ptrdiff_t* out_vec, S* y, std::ptrdiff_t y_channel_stride, bool accumulate) {
  constexpr int V = direct_tile<S>::vectors;
  static_assert(V <= 3, "tiles of up to 3 vectors");
  const auto run = [&]<int Vectors>() {
    direct_conv_tile<S, K, Vectors>(x, in_channels, plane, row, tap, w, bias, valid_rows, in_vec, out_vec, y, y_channel_stride,
                                    accumulate);
  };
  if (vectors == V) run.template operator()<V>();
  else if constexpr (V == 3) {
    if (vectors == 2) run.template operator()<2>();
    else run.template operator()<1>();
  } else
    run.template operator()<1>();
}

}  // namespace detail

/// Lanes of one SIMD vector of S on the target the library is compiled for.
template <class S>
inline constexpr int simd_lanes = static_cast<int>(xsimd::batch<S>::size);

namespace detail {

/// Extra scratch elements that let aligned_scratch start on a SIMD-vector boundary.
template <class S>
inline constexpr std::size_t alignment_slack = static_cast<std::size_t>(simd_lanes<S>);

/// The first element of `scratch` at a multiple of the SIMD vector size in bytes (scratch holds
/// alignment_slack<S> elements more than the caller uses).
template <class S>
S* aligned_scratch(std::span<S> scratch) noexcept {
  constexpr std::uintptr_t bytes = sizeof(S) * simd_lanes<S>;
  const auto address = reinterpret_cast<std::uintptr_t>(scratch.data());
  return scratch.data() + ((bytes - address % bytes) % bytes) / sizeof(S);
}

}  // namespace detail

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
