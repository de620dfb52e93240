#pragma once
/// \file
/// 2-D convolution on row-major NCHW tensors: the layer's parameters and its forward pass, which picks one of
/// four paths per call: Winograd F(2×2, 3×3) or F(4×4, 3×3) (winograd.hpp) for the stride-1 "same" 3×3
/// convolutions select_algorithm chose it for, the direct register-blocked kernel (direct_conv.hpp) for
/// stride-1 "same" 1×1 and 3×3 convolutions on planes of whole SIMD vectors, the same kernel's tiles on
/// im2col columns for strided 3×3 convolutions, and im2col + GEMM (Eigen) for everything else.
///
/// Every output element is the same sum in the same order whatever the thread count or batch split (see
/// parallel.hpp). Kernels are square here; a 1-D convolution over time (k taps) is the same im2col + GEMM
/// path and direct-kernel tiles over one image row with a 1×k window.

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "diffuse/error.hpp"
#include "diffuse/nn/bordered_layout.hpp"
#include "diffuse/nn/direct_conv.hpp"
#include "diffuse/nn/matrix.hpp"
#include "diffuse/nn/parallel.hpp"
#include "diffuse/nn/winograd.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {

/// A 2-D convolution: weight (out, in·k·k) in PyTorch's (out, in, kh, kw) order, bias, stride and the
/// padding on each side.
template <class S>
struct conv2d {
  matrix<S> weight;  ///< (out, in·kernel·kernel)
  column<S> bias;    ///< (out)
  int in = 0;        ///< input channels
  int out = 0;       ///< output channels
  int kernel = 3;    ///< square kernel size
  int stride = 1;    ///< the same in both directions
  int pad_top = 1;     ///< zero rows above the input
  int pad_left = 1;    ///< zero columns left of the input
  int pad_bottom = 1;  ///< zero rows below (diffusers' downsample_padding = 0 pads only bottom and right)
  int pad_right = 1;   ///< zero columns right of the input

  int out_height(int h) const { return (h + pad_top + pad_bottom - kernel) / stride + 1; }  ///< output rows for h input rows
  int out_width(int w) const { return (w + pad_left + pad_right - kernel) / stride + 1; }   ///< output columns for w input columns
  /// Scratch elements one task needs for its im2col block (0 for a 1×1, stride-1 convolution).
  std::size_t scratch_size() const {
    return direct() ? 0 : static_cast<std::size_t>(in) * kernel * kernel * column_block;
  }
  /// A 1×1 stride-1 convolution: a plain matrix product over the input, no im2col.
  bool direct() const { return kernel == 1 && stride == 1 && pad_top == 0 && pad_left == 0; }

  /// Weights packed for the direct kernel (direct_conv.hpp); empty until pack() is called.
  packed_conv_weights<S> packed;
  /// Stride 1 with "same" padding: the convolutions the direct kernel reads from a bordered input.
  bool stride1_same() const {
    const int p = kernel / 2;
    return stride == 1 && pad_top == p && pad_left == p && pad_bottom == p && pad_right == p;
  }
  /// Packs the weights for the direct kernel's register tiles when the kernel is 1×1 or 3×3: stride-1
  /// "same" convolutions read a bordered input, the others (stride-2 downsampling) their im2col columns.
  /// Call again after changing `weight`.
  void pack() {
    packed = {};
    if (!(kernel == 1 || kernel == 3)) return;
    constexpr int R = packed_conv_weights<S>::rows;
    packed.taps = static_cast<std::ptrdiff_t>(in) * kernel * kernel;
    packed.blocks = (out + R - 1) / R;
    packed.values.assign(static_cast<std::size_t>(packed.blocks) * packed.taps * R, S(0));
    for (int o = 0; o < out; ++o)
      for (std::ptrdiff_t t = 0; t < packed.taps; ++t)
        packed.values[(static_cast<std::size_t>(o / R) * packed.taps + t) * R + o % R] = weight(o, t);
  }
  /// Whether conv2d_forward takes the direct kernel for h×w inputs: a stride-1 "same" convolution with
  /// packed weights whose output planes are whole SIMD vectors.
  bool uses_direct_kernel(int h, int w) const {
    return stride1_same() && !packed.empty() && (static_cast<std::ptrdiff_t>(h) * w) % simd_lanes<S> == 0;
  }
  /// Whether conv2d_forward runs the direct kernel's tiles on im2col columns for h×w inputs (instead of
  /// a GEMM): a 3×3 convolution off the direct path (stride 2) whose output planes are whole vectors.
  bool uses_tiles_on_columns(int h, int w) const {
    return kernel == 3 && !packed.empty() && !uses_direct_kernel(h, w) &&
           (static_cast<std::ptrdiff_t>(out_height(h)) * out_width(w)) % simd_lanes<S> == 0;
  }
  /// The layout the direct kernel reads for h×w inputs (and conv2d_forward_bordered expects): active for
  /// a 3×3 convolution on the direct or the Winograd path (which reads the same layout).
  bordered_layout bordered_input(int h, int w) const {
    if (uses_winograd(h, w)) return direct_3x3_layout(h, w);
    if (!uses_direct_kernel(h, w) || kernel != 3) return {};
    return direct_3x3_layout(h, w);
  }

  /// The algorithm select_algorithm chose: direct (the default), winograd2 or winograd4.
  conv_algorithm algorithm = conv_algorithm::direct;
  /// The filters in the Winograd domain for `algorithm`'s tile size; empty on the direct path.
  winograd_filters<S> winograd;
  /// Whether this convolution can run by Winograd: 3×3, stride 1, "same" padding.
  bool winograd_capable() const { return kernel == 3 && stride1_same(); }
  /// Smallest image side on which the Winograd path runs: 0 when forced, winograd_auto_min_size when
  /// chosen automatically (smaller images take the direct kernel).
  int winograd_min_size = 0;
  /// Whether the Winograd path may run for h×w inputs (and the group norm should write its bordered
  /// layout, the same as the direct kernel's).
  bool uses_winograd(int h, int w) const { return !winograd.empty() && std::min(h, w) >= winograd_min_size; }
  /// Whether conv2d_forward takes the Winograd path for a batch of n at h×w: where uses_winograd holds.
  /// The batch size n never enters the choice: a batch split into parts, or doubled for classifier-free
  /// guidance, takes the same path for every image and so gives the same bits.
  bool runs_winograd(int /*n*/, int h, int w) const { return uses_winograd(h, w); }

  /// Chooses how this convolution computes, transforming its filters once (call again after changing
  /// `weight`). `automatic` takes Winograd F(2×2, 3×3) for 3×3 stride-1 convolutions with at least
  /// winograd_min_channels input and output channels (F(4×4, 3×3) from winograd4_min_channels), on images of at least winograd_auto_min_size
  /// pixels a side (whatever the batch size, so that the bits do not depend on it), and the direct
  /// kernel otherwise: where the transforms, which grow with the channels
  /// rather than with their product, cost less than the multiply-adds saved (docs/performance.md). Its
  /// float error stays within the UNet's parity bound on every benchmark model (tools/winograd_error).
  /// \param a     the algorithm, or automatic
  /// \param name  the layer's name, for the error
  /// \throws diffuse::error (argument) when `a` is a Winograd algorithm and the convolution is not a
  ///         stride-1 "same" 3×3 one: the message names the layer and the algorithms it supports.
  void select_algorithm(conv_algorithm a, std::string_view name = "conv2d") {
    winograd = {};
    algorithm = conv_algorithm::direct;
    winograd_min_size = 0;
    if (a == conv_algorithm::automatic) {
      if (!winograd_capable() || std::min(in, out) < winograd4_min_channels) return;
      a = std::min(in, out) >= winograd_min_channels ? conv_algorithm::winograd2 : conv_algorithm::winograd4;
      winograd_min_size = winograd_auto_min_size;
    }
    if (a == conv_algorithm::direct) return;
    if (!winograd_capable())
      diffuse::detail::fail(error_kind::argument, "convolution \"", name, "\" (", kernel, "x", kernel, " kernel, stride ", stride,
                            ") cannot use ", conv_algorithm_name(a),
                            "; Winograd needs a 3x3 kernel with stride 1 and padding 1 on every side; this layer supports: direct, automatic");
    winograd = a == conv_algorithm::winograd2 ? detail::winograd_transform<2, S>(weight, in, out)
                                              : detail::winograd_transform<4, S>(weight, in, out);
    algorithm = a;
  }
  /// Input and output channels from which `automatic` picks Winograd: at 64 channels F(2×2, 3×3) only
  /// matches the direct kernel (BM_conv3x3), at 128 it is 1.2–1.4× faster.
  static constexpr int winograd_min_channels = 128;
  /// Input and output channels from which `automatic` picks F(4×4, 3×3) (below winograd_min_channels):
  /// at 64 channels its transforms cost less than F(2×2)'s per output, and it is 13–16% faster than
  /// the direct kernel at 32×32 (BM_conv3x3) where F(2×2) only matches it.
  static constexpr int winograd4_min_channels = 64;
  /// Smallest image side on which an automatically chosen Winograd path runs: at 8×8 a batch item has
  /// 16 tiles, too few to amortise the transforms.
  static constexpr int winograd_auto_min_size = 16;
  /// Scratch elements per thread the Winograd path needs for images of at most w columns (0 on the
  /// direct path).
  std::size_t winograd_scratch(int, int w) const {
    if (winograd.empty()) return 0;
    return static_cast<std::size_t>(winograd_plan<S>::scratch_bound(winograd.tile, in, out, w));
  }
  /// The direct 3×3 kernel's input layout at h×w, whichever path a given convolution takes there.
  static bordered_layout direct_3x3_layout(int h, int w) {
    if (w % simd_lanes<S> == 0) {
      const std::ptrdiff_t row = w + 2;
      return {.pad = 1, .width = w, .copies = 1, .row = row, .tap = 1, .plane = row * (h + 2)};
    }
    const std::ptrdiff_t image = static_cast<std::ptrdiff_t>(h + 2) * w;
    return {.pad = 1, .width = w, .copies = 3, .row = w, .tap = image, .plane = 3 * image};
  }
};

/// Scratch elements conv2d_forward needs for a batch of n at h×w on `threads` threads.
template <class S>
std::size_t conv2d_scratch(const conv2d<S>& c, int n, int h, int w, int threads) {
  // Both paths' needs: a caller that sizes for its largest resolution may run the same convolution at a
  // smaller one that takes the other path.
  const std::size_t im2col = c.scratch_size() * static_cast<std::size_t>(threads);
  if (!c.winograd.empty()) {
    // The bordered input a group norm writes for it, then one task's transformed tiles per thread.
    const auto layout = conv2d<S>::direct_3x3_layout(h, w);
    return std::max(im2col, static_cast<std::size_t>(n) * c.in * static_cast<std::size_t>(layout.plane) + detail::alignment_slack<S> +
                                c.winograd_scratch(h, w) * static_cast<std::size_t>(threads));
  }
  if (c.packed.empty() || c.kernel == 1) return im2col;
  // The direct kernel's zero-bordered input (packed convolutions are 1×1 or 3×3), plus room to align it.
  const auto layout = conv2d<S>::direct_3x3_layout(h, w);
  return std::max(im2col, static_cast<std::size_t>(n) * c.in * static_cast<std::size_t>(layout.plane) + detail::alignment_slack<S>);
}

namespace detail {

/// Copies the receptive fields of output pixels [p0, p0 + cols) into col (in·k·k rows, cols columns).
/// Walks output rows instead of dividing per element; the padded borders are zero runs and the inside
/// a (strided) copy.
template <class S>
void im2col(const conv2d<S>& c, const S* x, int h, int w, std::ptrdiff_t p0, std::ptrdiff_t cols, S* col) {
  const int wo = c.out_width(w), k = c.kernel, s = c.stride;
  for (int ci = 0; ci < c.in; ++ci) {
    const S* xc = x + static_cast<std::ptrdiff_t>(ci) * h * w;
    for (int ky = 0; ky < k; ++ky)
      for (int kx = 0; kx < k; ++kx) {
        S* row = col + ((static_cast<std::ptrdiff_t>(ci) * k + ky) * k + kx) * cols;
        std::ptrdiff_t j = 0;
        int oy = static_cast<int>(p0 / wo), ox = static_cast<int>(p0 % wo);
        while (j < cols) {
          const int run = static_cast<int>(std::min<std::ptrdiff_t>(wo - ox, cols - j));
          const int iy = oy * s - c.pad_top + ky;
          S* dst = row + j;
          if (iy < 0 || iy >= h) {
            std::fill(dst, dst + run, S(0));
          } else {
            // Input column of output column ox + r is base + r·s; [lo, hi) are the r inside the image.
            const int base = ox * s - c.pad_left + kx;
            const int lo = std::min(run, base < 0 ? (-base + s - 1) / s : 0);
            const int hi = std::max(lo, std::min(run, w - base > 0 ? (w - base + s - 1) / s : 0));
            std::fill(dst, dst + lo, S(0));
            const S* src = xc + static_cast<std::ptrdiff_t>(iy) * w + base;
            if (s == 1) std::copy(src + lo, src + hi, dst + lo);
            else
              for (int r = lo; r < hi; ++r) dst[r] = src[r * s];
            std::fill(dst + hi, dst + run, S(0));
          }
          j += run;
          ox = 0;
          ++oy;
        }
      }
  }
}

}  // namespace detail

namespace detail {

/// The direct-kernel path of conv2d_forward (see direct_conv.hpp).
/// `bordered`: x is already the zero-bordered input (conv2d::bordered_input), the copy is skipped.
template <class S, int K>
void conv2d_direct(const conv2d<S>& c, const S* x, int n, int h, int w, S* y, std::span<S> scratch, bool accumulate,
                   bool bordered = false) {
  constexpr int R = packed_conv_weights<S>::rows, pad = K / 2;
  const int L = simd_lanes<S>;
  const std::ptrdiff_t P = static_cast<std::ptrdiff_t>(h) * w;
  // The input the kernel reads (bordered_layout): for a 3×3 kernel the zero-bordered image, or three
  // column-shifted copies of it when a vector is wider than an image row; a 1×1 kernel reads the input
  // itself.
  const bordered_layout layout = c.bordered_input(h, w);
  const bool rows_fit = pad == 0 || layout.copies == 1;
  const std::ptrdiff_t row = pad == 0 ? w : layout.row, tap = pad == 0 ? 1 : layout.tap;
  const std::ptrdiff_t in_plane = pad == 0 ? P : layout.plane;
  const S* src = x;
  if (pad > 0 && !bordered) {
    S* padded = aligned_scratch(scratch);
    // Written as plain loops and vector copies rather than std::fill / std::copy: the rows are a few
    // dozen values, and the library calls per row cost as much as the copy (10% of a digits forward).
    using batch = xsimd::batch<S>;
    parallel_for(static_cast<std::ptrdiff_t>(n) * c.in, [&](std::ptrdiff_t pl) {
      const S* from = x + pl * P;
      for (int kx = 0; kx < (rows_fit ? 1 : K); ++kx) {
        // Column j of this copy holds input column j + shift.
        const int shift = rows_fit ? -pad : kx - pad, width = static_cast<int>(row);
        S* dst = padded + pl * in_plane + kx * tap;
        for (std::ptrdiff_t j = 0; j < pad * row; ++j) dst[j] = S(0);
        for (std::ptrdiff_t j = (h + pad) * row; j < (h + 2 * pad) * row; ++j) dst[j] = S(0);
        const int lo = std::max(0, -shift), hi = std::min(width, w - shift);
        for (int i = 0; i < h; ++i) {
          S* d = dst + (i + pad) * row;
          const S* f = from + static_cast<std::ptrdiff_t>(i) * w + shift;
          for (int j = 0; j < lo; ++j) d[j] = S(0);
          int j = lo;
          for (; j + L <= hi; j += L) batch::load_unaligned(f + j).store_unaligned(d + j);
          for (; j < hi; ++j) d[j] = f[j];
          for (j = hi; j < width; ++j) d[j] = S(0);
        }
      }
    });
    src = padded;
  }
  // Tiles of vectors of L output pixels (plane_tiles); tasks (item, tile, block), ordered so that
  // consecutive tasks share either the input tile or the weight block in cache
  // (direct_tile::tile_innermost).
  constexpr int V = direct_tile<S>::vectors;
  const plane_tiles<S> tiling(P / L);
  const std::ptrdiff_t tiles = tiling.count, blocks = c.packed.blocks;
  // One tile of one item: input channels from xi (`channels` of them), weight block wb, output rows yb.
  const auto run_tile = [&](std::ptrdiff_t tile, const S* xi, int channels, const S* wb, const S* bias, int valid, S* yb,
                            bool add) {
    const auto [start, count] = tiling[tile];
    std::ptrdiff_t in_vec[V], out_vec[V];
    for (int v = 0; v < count; ++v) {
      const std::ptrdiff_t p = (start + v) * L;
      in_vec[v] = rows_fit ? p / w * row + p % w : p;
      out_vec[v] = p;
    }
    direct_conv_tile_of<S, K>(count, xi, channels, in_plane, row, tap, wb, bias, valid, in_vec, out_vec, yb, P, add);
  };
  // A weight block larger than L1 (48 KB here; over 40 KB, e.g. 3×3 × 256 channels = 74 KB) streams from
  // L2 for every tile. Its input channels are then cut into near-equal chunks of at most 24 KB of
  // weights, and a task owns one (item, weight block) and runs every tile of a chunk before the next
  // chunk, adding the chunks' sums into y. Measured with BM_conv3x3 (one Xeon core): 256 channels at
  // 32×32 133 → 150 GFLOP/s, at 8×8 147 → 158; chunks of 128 channels (37 KB) gained nothing, and
  // 128-channel layers (37 KB whole) lose 0–5% when cut, so they are not.
  const std::size_t tap_bytes = static_cast<std::size_t>(K) * K * R * sizeof(S);
  const int most = std::max(1, static_cast<int>(24 * 1024 / tap_bytes));
  const int chunks = c.in * tap_bytes > 40 * 1024 ? (c.in + most - 1) / most : 1;
  const int chunk = (c.in + chunks - 1) / chunks;
  if (chunks > 1) {
    static constexpr S zero_bias[R] = {};
    parallel_for(static_cast<std::ptrdiff_t>(n) * blocks, [&](std::ptrdiff_t task) {
      const std::ptrdiff_t item = task / blocks, block = task % blocks;
      const int first = static_cast<int>(block) * R, valid = std::min(R, c.out - first);
      S* yb = y + (item * c.out + first) * P;
      for (int ci0 = 0; ci0 < c.in; ci0 += chunk) {
        const int channels = std::min(chunk, c.in - ci0);
        const S* xi = src + (item * c.in + ci0) * in_plane;
        const S* wb = c.packed.values.data() + (block * c.packed.taps + static_cast<std::ptrdiff_t>(ci0) * K * K) * R;
        const S* bias = ci0 == 0 ? c.bias.data() + first : zero_bias;
        const bool add = accumulate || ci0 > 0;
        for (std::ptrdiff_t tile = 0; tile < tiles; ++tile) run_tile(tile, xi, channels, wb, bias, valid, yb, add);
      }
    });
    return;
  }
  parallel_for(static_cast<std::ptrdiff_t>(n) * tiles * blocks, [&](std::ptrdiff_t task) {
    const std::ptrdiff_t item = task / (blocks * tiles), rest = task % (blocks * tiles);
    const std::ptrdiff_t tile = direct_tile<S>::tile_innermost ? rest % tiles : rest / blocks;
    const std::ptrdiff_t block = direct_tile<S>::tile_innermost ? rest / tiles : rest % blocks;
    const int first = static_cast<int>(block) * R, valid = std::min(R, c.out - first);
    run_tile(tile, src + item * c.in * in_plane, c.in, c.packed.values.data() + block * c.packed.taps * R,
             c.bias.data() + first, valid, y + (item * c.out + first) * P, accumulate);
  });
}

/// y[o][p0 + q] = conv at output pixels p0 … p0 + cols − 1 (cols a multiple of the vector width) for a
/// 3×3 convolution, from its im2col columns: every packed weight block × the plane_tiles of the columns,
/// as conv2d_direct runs them.
template <class S>
void direct_tiles_on_columns(const conv2d<S>& c, const S* col, std::ptrdiff_t cols, S* y, std::ptrdiff_t pixels,
                             std::ptrdiff_t p0, bool accumulate) {
  constexpr int R = packed_conv_weights<S>::rows, V = direct_tile<S>::vectors;
  const int L = simd_lanes<S>;
  const plane_tiles<S> tiling(cols / L);
  for (int block = 0; block < c.packed.blocks; ++block) {
    const S* wb = c.packed.values.data() + block * c.packed.taps * R;
    const int first = block * R, valid = std::min(R, c.out - first);
    for (std::ptrdiff_t tile = 0; tile < tiling.count; ++tile) {
      const auto [start, count] = tiling[tile];
      std::ptrdiff_t in_vec[V], out_vec[V];
      for (int v = 0; v < count; ++v) {
        in_vec[v] = (start + v) * L;
        out_vec[v] = p0 + (start + v) * L;
      }
      direct_conv_tile_of<S, 3>(count, col, c.in, 9 * cols, 3 * cols, cols, wb, c.bias.data() + first, valid, in_vec, out_vec,
                                y + first * pixels, pixels, accumulate);
    }
  }
}

}  // namespace detail

/// y = conv(x) for a batch: x (n, in, h, w), y (n, out, h', w'). `scratch` holds conv2d_scratch(c, n, h,
/// w, max_threads()) elements: the zero-bordered input for the direct kernel, else one im2col block per
/// thread. With `accumulate`, y += conv(x).
template <class S>
void conv2d_forward(const conv2d<S>& c, const S* x, int n, int h, int w, S* y, std::span<S> scratch, bool accumulate = false) {
  if (c.runs_winograd(n, h, w)) {
    // Reads the plain input where it is: the transform treats everything outside the image as zero.
    const std::ptrdiff_t plane = static_cast<std::ptrdiff_t>(h) * w;
    const winograd_input<S> in{.base = x, .item = c.in * plane, .plane = plane, .row = w, .origin = 0};
    winograd_forward(c.winograd, c.bias.data(), in, n, h, w, y, scratch, accumulate);
    return;
  }
  if (c.uses_direct_kernel(h, w)) {
    if (c.kernel == 3) detail::conv2d_direct<S, 3>(c, x, n, h, w, y, scratch, accumulate);
    else detail::conv2d_direct<S, 1>(c, x, n, h, w, y, scratch, accumulate);
    return;
  }
  const int ho = c.out_height(h), wo = c.out_width(w);
  const std::ptrdiff_t pixels = static_cast<std::ptrdiff_t>(ho) * wo;
  const std::ptrdiff_t blocks = (pixels + column_block - 1) / column_block;
  const std::ptrdiff_t in_size = static_cast<std::ptrdiff_t>(c.in) * h * w, out_size = static_cast<std::ptrdiff_t>(c.out) * pixels;
  const bool tiles_on_columns = c.uses_tiles_on_columns(h, w);
  parallel_for(n * blocks, [&](std::ptrdiff_t task) {
    const std::ptrdiff_t item = task / blocks, p0 = (task % blocks) * column_block;
    const std::ptrdiff_t cols = std::min(column_block, pixels - p0);
    const S* xi = x + item * in_size;
    matrix_map<S> out(y + item * out_size + p0, c.out, cols, Eigen::OuterStride<>(pixels));
    if (c.direct()) {
      const_matrix_map<S> in(xi + p0, c.in, cols, Eigen::OuterStride<>(pixels));
      if (accumulate) out.noalias() += c.weight * in;
      else out.noalias() = c.weight * in;
    } else {
      S* col = scratch.data() + static_cast<std::size_t>(thread_index()) * c.scratch_size();
      detail::im2col(c, xi, h, w, p0, cols, col);
      if (tiles_on_columns) {
        // The columns (in·9 rows of `cols` pixels) are the direct 3×3 kernel's input with taps `cols`
        // apart, tap rows 3·cols apart and channels 9·cols apart: its register tiles, no GEMM packing.
        detail::direct_tiles_on_columns(c, col, cols, y + item * out_size, pixels, p0, accumulate);
        return;
      }
      const_matrix_map<S> in(col, c.weight.cols(), cols, Eigen::OuterStride<>(cols));
      if (accumulate) out.noalias() += c.weight * in;
      else out.noalias() = c.weight * in;
    }
    out.colwise() += c.bias;
  });
}

/// y = conv(x) (or y += conv(x) with `accumulate`) for an input a producer has already written in
/// c.bordered_input(h, w)'s layout at `bordered` (which must be active): the same sums as conv2d_forward,
/// without its zero-bordered copy. `scratch` (not overlapping the bordered input) holds
/// c.winograd_scratch(h, w) elements per thread for the Winograd path; the direct path needs none.
template <class S>
void conv2d_forward_bordered(const conv2d<S>& c, const S* bordered, int n, int h, int w, S* y, bool accumulate = false,
                             std::span<S> scratch = {}) {
  const bordered_layout layout = c.bordered_input(h, w);
  if (!layout.active())
    diffuse::detail::fail(error_kind::argument, "conv2d_forward_bordered: this convolution does not read a bordered layout at ", h, "x", w);
  if (c.runs_winograd(n, h, w)) {
    // Row 0, column 0 of the image: one row of zeros down, and one column in (one copy) or copy 1 (three
    // column-shifted copies, whose copy 1 holds column j at j).
    const std::ptrdiff_t origin = layout.pad * layout.row + (layout.copies == 1 ? layout.pad : layout.tap);
    const winograd_input<S> in{.base = bordered, .item = c.in * layout.plane, .plane = layout.plane, .row = layout.row, .origin = origin};
    winograd_forward(c.winograd, c.bias.data(), in, n, h, w, y, scratch, accumulate);
    return;
  }
  detail::conv2d_direct<S, 3>(c, bordered, n, h, w, y, {}, accumulate, /*bordered=*/true);
}

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
