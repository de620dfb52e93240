#pragma once
/// \file
/// Direct 3×3 (and 1×1) stride-1 convolution with register blocking, for the reference UNet's hot loop.
///
/// Why not im2col + GEMM here: im2col writes every input value k² times and a general GEMM repacks the
/// weights on every call; at the small images and channel counts of pixel-space DDPMs those two passes
/// cost as much as the multiply-adds. Here the weights are packed once at load time, the input is copied
/// once into a zero-bordered buffer, and a micro-kernel keeps a tile of 4 output channels × (up to) 3 SIMD
/// vectors of output pixels in registers while it walks the input channels and the k×k taps: per tap it
/// loads 3 input vectors and broadcasts 4 weights for 12 fused multiply-adds.
///
/// Every output element is the same sum in the same order whatever the thread count or batch split
/// (bias first, then input channel by channel, taps row by row), so results are reproducible bit for bit.

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "diffuse/error.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {

/// Weights of a convolution packed for the direct kernel: blocks of `rows` output channels, each block
/// (in·k·k, rows) so that the `rows` weights of one tap are adjacent. Output channels past `out` are zero.
template <class S>
struct packed_conv_weights {
  static constexpr int rows = 4;  ///< output channels per block: the micro-kernel's register tile height
  std::vector<S> values;          ///< blocks × taps × rows
  int blocks = 0;                 ///< ⌈out / rows⌉
  std::ptrdiff_t taps = 0;        ///< in·k·k
  bool empty() const noexcept { return values.empty(); }  ///< not packed (the convolution takes im2col + GEMM)
};

namespace detail {

/// One tile: acc[r][v] = bias[r] + Σ_{ci, ky, kx} w[ci, ky, kx][r]·x_v[ci·plane + ky·row + kx], stored to
/// (or added to) y. `x` is the zero-bordered input of one batch item (channel planes of `plane`
/// elements, rows of `row`), `in_vec[v]` the offset of vector v's first tap in it, `out_vec[v]` the
/// offset of its first output pixel in one output channel plane.
template <class S, int K, int V>
void direct_conv_tile(const S* x, int in_channels, std::ptrdiff_t plane, std::ptrdiff_t row, const S* w, const S* bias,
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
        const std::ptrdiff_t off = ky * row + kx;
        batch in[V];
        for (int v = 0; v < V; ++v) in[v] = batch::load_unaligned(xv[v] + off);
        for (int r = 0; r < R; ++r) {
          const batch wr(w[r]);
          for (int v = 0; v < V; ++v) acc[r][v] = xsimd::fma(wr, in[v], acc[r][v]);
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

}  // namespace detail

/// Lanes of one SIMD vector of S on the target the library is compiled for.
template <class S>
inline constexpr int simd_lanes = static_cast<int>(xsimd::batch<S>::size);

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
