#pragma once
/// \file
/// The layers of the reference UNet, on row-major NCHW tensors (PyTorch's layout): 2-D convolution as
/// im2col + GEMM, group normalisation fused with the time-embedding injection and SiLU, multi-head
/// self-attention over pixels, nearest 2× upsampling, linear layers and the sinusoidal time embedding.
///
/// Every layer works on one batch item and a fixed block of output columns at a time, and the blocks do
/// not depend on the thread count. Together with GEMMs always issued from inside our own parallel
/// regions (where Eigen runs them on one thread with the same blocking), that makes every output bit
/// independent of OMP_NUM_THREADS and of how a batch is split.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include "diffuse/detail/fma.hpp"
#include "diffuse/detail/simd_math.hpp"
#include "diffuse/detail/xsimd_compat.hpp"
#include "diffuse/error.hpp"
#include "diffuse/nn/attention_kernel.hpp"
#include "diffuse/nn/direct_conv.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {

/// A row-major dynamic matrix: weights as PyTorch stores them, (out, in).
template <class S>
using matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
/// A dynamic column vector (biases, norm parameters).
template <class S>
using column = Eigen::Matrix<S, Eigen::Dynamic, 1>;
/// A row-major view of part of a tensor: rows are channels, columns pixels, rows OuterStride apart.
template <class S>
using matrix_map = Eigen::Map<matrix<S>, Eigen::Unaligned, Eigen::OuterStride<>>;
/// The read-only matrix_map.
template <class S>
using const_matrix_map = Eigen::Map<const matrix<S>, Eigen::Unaligned, Eigen::OuterStride<>>;

/// Output columns (pixels) per GEMM task: fixed, so results do not depend on the thread count.
inline constexpr std::ptrdiff_t column_block = 256;

/// Threads our parallel regions use.
inline int max_threads() noexcept {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}
/// This thread's index in the current OpenMP team (0 outside one).
inline int thread_index() noexcept {
#if defined(_OPENMP)
  return omp_get_thread_num();
#else
  return 0;
#endif
}

/// Runs f(i) for i in [0, n) across the OpenMP team. Always opens a parallel region, even for one task,
/// so that Eigen's products inside never start threads of their own (they check for an enclosing team).
template <class F>
void parallel_for(std::ptrdiff_t n, F&& f) {
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (std::ptrdiff_t i = 0; i < n; ++i) f(i);
}

/// SiLU (swish): x·σ(x) = x / (1 + e^(−x)).
template <class S>
S silu(S x) noexcept {
  return x / (S(1) + std::exp(-x));
}

/// A linear layer y = W x + b with W (out, in), as torch.nn.Linear stores it.
template <class S>
struct linear {
  matrix<S> weight;  ///< (out, in)
  column<S> bias;    ///< (out)
  int in() const { return static_cast<int>(weight.cols()); }   ///< input features
  int out() const { return static_cast<int>(weight.rows()); }  ///< output features
};

/// The zero-bordered input the direct 3×3 kernel reads, which a producer may write instead of the
/// convolution copying it (conv2d::bordered_input). Per (item, channel) a plane of `plane` elements
/// holding `copies` images `tap` apart, each with `pad` zero rows above and below rows `row` apart:
///   - copies = 1 (rows that are whole SIMD vectors): rows of width + 2·pad, zero columns either side;
///   - copies = 3 (images narrower than a vector): rows of exactly `width`, copy kx holding input column
///     j + kx − pad at column j (zero where that is outside the image), so that a vector may span rows.
/// Inactive (row == 0) when the convolution needs its input as it is.
struct bordered_layout {
  int pad = 0;               ///< zero rows above and below (and zero columns with one copy)
  int width = 0;             ///< input columns
  int copies = 0;            ///< 1, or 3 column-shifted copies
  std::ptrdiff_t row = 0;    ///< elements between rows
  std::ptrdiff_t tap = 0;    ///< elements between copies (1 with one copy: the next tap column)
  std::ptrdiff_t plane = 0;  ///< elements between channel planes
  bool active() const noexcept { return row > 0; }  ///< whether the convolution reads this layout
};

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
  /// a 3×3 convolution on the direct path.
  bordered_layout bordered_input(int h, int w) const {
    if (!uses_direct_kernel(h, w) || kernel != 3) return {};
    return direct_3x3_layout(h, w);
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
  if (c.packed.empty() || c.kernel == 1) return im2col;
  // The direct kernel's zero-bordered input (packed convolutions are 1×1 or 3×3), plus room to align it.
  const auto layout = conv2d<S>::direct_3x3_layout(h, w);
  return std::max(im2col, static_cast<std::size_t>(n) * c.in * static_cast<std::size_t>(layout.plane) + detail::alignment_slack<S>);
}

/// Group normalisation's affine parameters and geometry.
template <class S>
struct group_norm {
  column<S> weight;  ///< γ, per channel
  column<S> bias;    ///< β, per channel
  int groups = 32;   ///< channels are split into this many groups of equal size
  double eps = 1e-5;  ///< added to the variance
  int channels() const { return static_cast<int>(weight.size()); }  ///< channels normalised
};

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
/// without its zero-bordered copy.
template <class S>
void conv2d_forward_bordered(const conv2d<S>& c, const S* bordered, int n, int h, int w, S* y, bool accumulate = false) {
  if (!c.bordered_input(h, w).active())
    diffuse::detail::fail(error_kind::argument, "conv2d_forward_bordered: this convolution does not read a bordered layout at ", h, "x", w);
  detail::conv2d_direct<S, 3>(c, bordered, n, h, w, y, {}, accumulate, /*bordered=*/true);
}

/// What group_norm_forward does after normalising (x + add).
template <class S>
struct norm_epilogue {
  const S* add = nullptr;    ///< per (item, channel), added before the statistics ("default" time conditioning)
  const S* scale = nullptr;  ///< per (item, channel): y ← y·(1 + scale) + shift ("scale_shift")
  const S* shift = nullptr;  ///< per (item, channel), with scale
  std::ptrdiff_t stride = 0;  ///< elements between items in add / scale / shift
  bool silu = false;          ///< apply SiLU last
  bordered_layout layout{};   ///< when active, y is written in this layout (borders zeroed), else contiguous
};

namespace detail {

/// Σ (x[p] + a) over n values: SIMD lanes of S within the row (at most a few thousand values, so a lane
/// sums at most a few hundred), the lanes then added as a tree (sum_lanes: log₂ L roundings, where
/// adding them one by one in double is a chain of L dependent additions that cost more than the whole
/// row of a small image) and the rows in double by the caller.
template <class S>
double sum_shifted(const S* x, std::ptrdiff_t n, S a) {
  using batch = xsimd::batch<S>;
  constexpr std::ptrdiff_t L = batch::size;
  batch acc(S(0));
  const batch va(a);
  std::ptrdiff_t p = 0;
  for (; p + L <= n; p += L) acc += batch::load_unaligned(x + p) + va;
  double sum = static_cast<double>(diffuse::detail::sum_lanes(acc));
  for (; p < n; ++p) sum += static_cast<double>(S(x[p] + a));
  return sum;
}

/// Σ ((x[p] + a) − mean)² over n values, accumulated like sum_shifted.
template <class S>
double sum_squared_deviation(const S* x, std::ptrdiff_t n, S a, double mean) {
  using batch = xsimd::batch<S>;
  constexpr std::ptrdiff_t L = batch::size;
  batch acc(S(0));
  const batch va(a), vm(static_cast<S>(mean));
  std::ptrdiff_t p = 0;
  for (; p + L <= n; p += L) {
    const batch d = (batch::load_unaligned(x + p) + va) - vm;
    acc = diffuse::detail::fused_multiply_add(d, d, acc);
  }
  double sum = static_cast<double>(diffuse::detail::sum_lanes(acc));
  for (; p < n; ++p) {
    const double d = static_cast<double>(S(x[p] + a)) - mean;
    sum += d * d;
  }
  return sum;
}

/// y[i·y_stride + j] = (x[i·width + j] + a)·mul + off for rows i and columns j < width, then SiLU when
/// asked: v / (1 + e^(−v)). One call per plane, whether its rows land contiguously (y_stride = width) or
/// in a zero-bordered layout: the rows of small images are a vector or two, too short to pay for a call.
template <class S>
void shifted_affine(const S* x, std::ptrdiff_t rows, std::ptrdiff_t width, S a, S mul, S off, bool apply_silu, S* y,
                    std::ptrdiff_t y_stride) {
  using batch = xsimd::batch<S>;
  constexpr std::ptrdiff_t L = batch::size;
  const batch va(a), vmul(mul), voff(off);
  for (std::ptrdiff_t i = 0; i < rows; ++i, x += width, y += y_stride) {
    std::ptrdiff_t p = 0;
    if (apply_silu) {
      for (; p + L <= width; p += L) {
        const batch v = diffuse::detail::fused_multiply_add(batch::load_unaligned(x + p) + va, vmul, voff);
        diffuse::detail::fast_silu(v).store_unaligned(y + p);
      }
      for (; p < width; ++p) y[p] = silu(S((x[p] + a) * mul + off));
    } else {
      for (; p + L <= width; p += L) diffuse::detail::fused_multiply_add(batch::load_unaligned(x + p) + va, vmul, voff).store_unaligned(y + p);
      for (; p < width; ++p) y[p] = (x[p] + a) * mul + off;
    }
  }
}

/// row ← softmax(row·scale) in place: max, e^(v − max) with its sum (lanes of S, then double), scale.
template <class S>
void scaled_softmax(S* row, std::ptrdiff_t n, S scale) {
  using batch = xsimd::batch<S>;
  constexpr std::ptrdiff_t L = batch::size;
  const batch vs(scale);
  S mx = row[0] * scale;
  std::ptrdiff_t p = 0;
  if (n >= L) {
    batch m = batch::load_unaligned(row) * vs;
    for (p = L; p + L <= n; p += L) m = xsimd::max(m, batch::load_unaligned(row + p) * vs);
    alignas(64) S lanes[L];
    m.store_aligned(lanes);
    mx = *std::max_element(lanes, lanes + L);
  }
  for (; p < n; ++p) mx = std::max(mx, row[p] * scale);
  const batch vm(mx);
  batch acc(S(0));
  for (p = 0; p + L <= n; p += L) {
    const batch e = diffuse::detail::fast_exp(xsimd::fms(batch::load_unaligned(row + p), vs, vm));
    e.store_unaligned(row + p);
    acc += e;
  }
  alignas(64) S parts[L];
  acc.store_aligned(parts);
  double sum = 0;
  for (std::ptrdiff_t l = 0; l < L; ++l) sum += static_cast<double>(parts[l]);
  for (; p < n; ++p) {
    row[p] = std::exp(row[p] * scale - mx);
    sum += static_cast<double>(row[p]);
  }
  const S inv = static_cast<S>(1.0 / sum);
  const batch vinv(inv);
  for (p = 0; p + L <= n; p += L) (batch::load_unaligned(row + p) * vinv).store_unaligned(row + p);
  for (; p < n; ++p) row[p] *= inv;
}

}  // namespace detail

/// y = GroupNorm(x + add)·γ + β, then the epilogue, for x (n, C, pixels). Two passes (mean, then the
/// biased variance PyTorch uses), each channel row summed in SIMD lanes of S and the rows in double.
template <class S>
void group_norm_forward(const group_norm<S>& g, const S* x, int n, std::ptrdiff_t pixels, S* y, const norm_epilogue<S>& e = {}) {
  const int C = g.channels(), per = C / g.groups;
  parallel_for(static_cast<std::ptrdiff_t>(n) * g.groups, [&](std::ptrdiff_t task) {
    const std::ptrdiff_t item = task / g.groups, grp = task % g.groups;
    const std::ptrdiff_t base = (item * C + grp * per) * pixels;
    const S* add = e.add ? e.add + item * e.stride + grp * per : nullptr;
    double sum = 0;
    for (int c = 0; c < per; ++c) sum += detail::sum_shifted(x + base + c * pixels, pixels, add ? add[c] : S(0));
    const double count = static_cast<double>(per) * static_cast<double>(pixels);
    const double mean = sum / count;
    double sq = 0;
    for (int c = 0; c < per; ++c) sq += detail::sum_squared_deviation(x + base + c * pixels, pixels, add ? add[c] : S(0), mean);
    const double inv = 1.0 / std::sqrt(sq / count + g.eps);
    for (int c = 0; c < per; ++c) {
      const int ch = static_cast<int>(grp) * per + c;
      // y = ((x + a) − mean)·inv·γ + β, folded into one multiply-add per element.
      S mul = static_cast<S>(inv * static_cast<double>(g.weight[ch]));
      S off = static_cast<S>(static_cast<double>(g.bias[ch]) - mean * inv * static_cast<double>(g.weight[ch]));
      if (e.scale) {
        const S s1 = S(1) + e.scale[item * e.stride + ch], sh = e.shift[item * e.stride + ch];
        mul *= s1;
        off = off * s1 + sh;
      }
      const S* from = x + base + c * pixels;
      const S shift = add ? add[c] : S(0);
      if (!e.layout.active()) {
        detail::shifted_affine(from, 1, pixels, shift, mul, off, e.silu, y + base + c * pixels, pixels);
        continue;
      }
      // The next convolution's zero-bordered input, written here instead of copied there.
      const bordered_layout& b = e.layout;
      const std::ptrdiff_t rows = pixels / b.width, border = b.pad * b.row;
      S* plane = y + (item * C + ch) * b.plane;
      if (b.copies == 1) {
        std::fill(plane, plane + border + b.pad, S(0));
        detail::shifted_affine(from, rows, b.width, shift, mul, off, e.silu, plane + border + b.pad, b.row);
        for (std::ptrdiff_t i = 0; i < rows; ++i) {
          S* after = plane + border + i * b.row + b.pad + b.width;
          std::fill(after, after + 2 * b.pad, S(0));  // this row's right, the next row's left border
        }
        std::fill(plane + border + rows * b.row + b.pad, plane + b.plane, S(0));
        continue;
      }
      // Three column-shifted copies: the middle one (shift 0) holds the rows unchanged, so the whole
      // plane goes through shifted_affine at once (the same vector operations as the unfused path), and
      // the outer copies are shifted from it while it is in L1.
      S* mid = plane + b.tap;
      for (int kx = 0; kx < 3; ++kx) {
        S* copy = plane + kx * b.tap;
        std::fill(copy, copy + border, S(0));
        std::fill(copy + border + pixels, copy + b.tap, S(0));
      }
      detail::shifted_affine(from, 1, pixels, shift, mul, off, e.silu, mid + border, pixels);
      // Copy 0 (column j holds column j − 1) is the middle copy read one element back, copy 2 one element
      // ahead: rows are contiguous, and the elements before the first row and after the last one are
      // border zeros. Then the column each shift brought in from the neighbouring row is zeroed.
      using batch = xsimd::batch<S>;
      constexpr std::ptrdiff_t L = batch::size;
      const S* m = mid + border;
      S* copy0 = plane + border;
      S* copy2 = plane + 2 * b.tap + border;
      std::ptrdiff_t k = 0;
      for (; k + L <= pixels; k += L) {
        batch::load_unaligned(m + k - 1).store_unaligned(copy0 + k);
        batch::load_unaligned(m + k + 1).store_unaligned(copy2 + k);
      }
      for (; k < pixels; ++k) copy0[k] = m[k - 1], copy2[k] = m[k + 1];
      for (std::ptrdiff_t i = 0; i < rows; ++i) copy0[i * b.width] = copy2[i * b.width + b.width - 1] = S(0);
    }
  });
}

/// y (n, out) = x (n, in) Wᵀ + b.
template <class S>
void linear_forward(const linear<S>& l, const S* x, int n, S* y) {
  const std::ptrdiff_t in = l.in(), out = l.out();
  parallel_for(n, [&](std::ptrdiff_t item) {
    Eigen::Map<const column<S>> xi(x + item * in, in);
    Eigen::Map<column<S>> yi(y + item * out, out);
    yi.noalias() = l.weight * xi;
    yi += l.bias;
  });
}

/// Nearest-neighbour 2× upsampling: (n·C, h, w) → (n·C, 2h, 2w).
template <class S>
void upsample_nearest2x(const S* x, std::ptrdiff_t planes, int h, int w, S* y) {
  parallel_for(planes, [&](std::ptrdiff_t pl) {
    const S* xp = x + pl * h * w;
    S* yp = y + pl * 4 * h * w;
    for (int i = 0; i < 2 * h; ++i)
      for (int j = 0; j < 2 * w; ++j) yp[static_cast<std::ptrdiff_t>(i) * 2 * w + j] = xp[static_cast<std::ptrdiff_t>(i / 2) * w + j / 2];
  });
}

/// Sinusoidal time embedding of width dim (diffusers' get_timestep_embedding with scale 1 and
/// max_period 10⁴): frequencies f_k = exp(−ln(10⁴)·k / (dim/2 − freq_shift)), [sin(t f), cos(t f)], the
/// halves swapped when flip_sin_to_cos, computed in S as PyTorch computes it in the model's dtype.
template <class S>
void timestep_embedding(std::span<const double> timesteps, int dim, bool flip_sin_to_cos, double freq_shift, S* out) {
  const int half = dim / 2;
  for (std::size_t i = 0; i < timesteps.size(); ++i) {
    S* row = out + i * static_cast<std::size_t>(dim);
    const S t = static_cast<S>(timesteps[i]);
    for (int k = 0; k < half; ++k) {
      const S exponent = static_cast<S>(-std::log(10000.0)) * static_cast<S>(k) / static_cast<S>(half - freq_shift);
      const S arg = t * std::exp(exponent);
      const S s = std::sin(arg), c = std::cos(arg);
      row[flip_sin_to_cos ? half + k : k] = s;
      row[flip_sin_to_cos ? k : half + k] = c;
    }
    if (dim % 2) row[dim - 1] = S(0);
  }
}

/// Multi-head self-attention over pixels as diffusers' Attention block does it: optional group norm,
/// q/k/v linear maps over channels, softmax(q kᵀ / √d) v per head, output map, residual, ÷ rescale.
template <class S>
struct attention {
  group_norm<S> norm;  ///< groups == 0: no normalisation
  bool has_norm = true;  ///< false: the input goes to q/k/v unnormalised
  linear<S> to_q;    ///< query map, channels → heads·head_dim
  linear<S> to_k;    ///< key map
  linear<S> to_v;    ///< value map
  linear<S> to_out;  ///< output map, heads·head_dim → channels
  int heads = 1;     ///< attention heads
  int head_dim = 1;  ///< channels per head
  double rescale = 1;  ///< the output (attention + residual) is divided by it (rescale_output_factor)
  int channels() const { return to_q.in(); }      ///< channels in and out
  int inner() const { return heads * head_dim; }  ///< heads·head_dim
};

/// Scratch an attention forward needs beyond its input: normalised input (n·C·P), q/k/v and the heads'
/// output (n·4·inner·P), and per thread one P×P score matrix and P per-query factors.
template <class S>
std::size_t attention_scratch(const attention<S>& a, int n, std::ptrdiff_t pixels) {
  return static_cast<std::size_t>(n) * pixels * (a.channels() + 4 * a.inner()) +
         static_cast<std::size_t>(max_threads()) * static_cast<std::size_t>(detail::attention_head_scratch<S>(pixels));
}

/// x (n, C, P) ← attention(x), in place.
template <class S>
void attention_forward(const attention<S>& a, S* x, int n, std::ptrdiff_t pixels, std::span<S> scratch) {
  const std::ptrdiff_t C = a.channels(), inner = a.inner(), P = pixels;
  if (scratch.size() < attention_scratch(a, n, P))
    diffuse::detail::fail(error_kind::argument, "attention scratch holds ", scratch.size(), " elements; expected ", attention_scratch(a, n, P));
  S* hn = scratch.data();
  S* qkvo = hn + n * C * P;  // per item: q, k, v, o, each (inner, P)
  S* scores = qkvo + n * 4 * inner * P;
  if (a.has_norm) group_norm_forward(a.norm, x, n, P, hn);
  else std::copy(x, x + n * C * P, hn);
  const std::ptrdiff_t blocks = (P + column_block - 1) / column_block;
  // Images of whole SIMD vectors take attention_kernel.hpp's register tiles for every product (the maps
  // too: at 64 to 256 pixels Eigen's packing costs as much as its multiply); others Eigen's GEMM.
  const bool own_kernel = detail::attention_kernel_fits<S>(P);
  // q, k, v = W hn + b for each item and column block.
  parallel_for(n * blocks * 3, [&](std::ptrdiff_t task) {
    const std::ptrdiff_t which = task % 3, rest = task / 3, item = rest / blocks, p0 = (rest % blocks) * column_block;
    const std::ptrdiff_t cols = std::min(column_block, P - p0);
    const linear<S>& l = which == 0 ? a.to_q : which == 1 ? a.to_k : a.to_v;
    if (own_kernel) {
      detail::attention_product<S>(inner, cols, C, l.weight.data(), C, 1, hn + item * C * P + p0, P, {.row_bias = l.bias.data()},
                                   qkvo + (item * 4 + which) * inner * P + p0, P);
      return;
    }
    const_matrix_map<S> in(hn + item * C * P + p0, C, cols, Eigen::OuterStride<>(P));
    matrix_map<S> out(qkvo + (item * 4 + which) * inner * P + p0, inner, cols, Eigen::OuterStride<>(P));
    out.noalias() = l.weight * in;
    out.colwise() += l.bias;
  });
  // Per item and head: S = qᵀk / √d (P × P), row softmax, o = v Sᵀ (d × P).
  const S scale = static_cast<S>(1.0 / std::sqrt(static_cast<double>(a.head_dim)));
  parallel_for(static_cast<std::ptrdiff_t>(n) * a.heads, [&](std::ptrdiff_t task) {
    const std::ptrdiff_t item = task / a.heads, head = task % a.heads, d = a.head_dim;
    S* base = qkvo + item * 4 * inner * P + head * d * P;
    S* head_scratch = scores + static_cast<std::ptrdiff_t>(thread_index()) * detail::attention_head_scratch<S>(P);
    if (own_kernel) {
      detail::attention_head<S>(base, base + inner * P, base + 2 * inner * P, base + 3 * inner * P, d, P, P, scale, head_scratch);
      return;
    }
    const_matrix_map<S> q(base, d, P, Eigen::OuterStride<>(P));
    const_matrix_map<S> k(base + inner * P, d, P, Eigen::OuterStride<>(P));
    const_matrix_map<S> v(base + 2 * inner * P, d, P, Eigen::OuterStride<>(P));
    matrix_map<S> o(base + 3 * inner * P, d, P, Eigen::OuterStride<>(P));
    matrix_map<S> w(head_scratch, P, P, Eigen::OuterStride<>(P));
    w.noalias() = q.transpose() * k;
    for (std::ptrdiff_t r = 0; r < P; ++r) detail::scaled_softmax(w.data() + r * P, P, scale);
    o.noalias() = v * w.transpose();
  });
  // x = (W_out o + b + x) / rescale.
  const S inv_rescale = static_cast<S>(1.0 / a.rescale);
  parallel_for(n * blocks, [&](std::ptrdiff_t task) {
    const std::ptrdiff_t item = task / blocks, p0 = (task % blocks) * column_block;
    const std::ptrdiff_t cols = std::min(column_block, P - p0);
    matrix_map<S> out(x + item * C * P + p0, C, cols, Eigen::OuterStride<>(P));
    if (own_kernel) {
      // (W o + b) added to the residual already in x: PyTorch's proj + residual.
      detail::attention_product<S>(C, cols, inner, a.to_out.weight.data(), inner, 1, qkvo + (item * 4 + 3) * inner * P + p0, P,
                                   {.row_bias = a.to_out.bias.data(), .accumulate = true}, x + item * C * P + p0, P);
    } else {
      const_matrix_map<S> o(qkvo + (item * 4 + 3) * inner * P + p0, inner, cols, Eigen::OuterStride<>(P));
      // Residual first, then the product added on: the same sum as PyTorch's (proj + residual).
      out.noalias() += a.to_out.weight * o;
      out.colwise() += a.to_out.bias;
    }
    if (a.rescale != 1) out *= inv_rescale;
  });
}

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
