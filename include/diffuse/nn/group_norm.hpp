#pragma once
/// \file
/// Group normalisation (torch.nn.GroupNorm) fused with what follows it in a UNet: an added per-channel
/// conditioning (the time embedding), a per-channel scale and shift (scale_shift, FiLM), SiLU, and writing
/// the result straight into the next convolution's zero-bordered input.
///
/// Statistics are summed in SIMD lanes of S per channel row and in double across rows, in an order fixed by
/// the shapes alone.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>

#include <xsimd/xsimd.hpp>

#include "diffuse/detail/fma.hpp"
#include "diffuse/detail/simd_math.hpp"
#include "diffuse/detail/xsimd_compat.hpp"
#include "diffuse/nn/activations.hpp"
#include "diffuse/nn/bordered_layout.hpp"
#include "diffuse/nn/matrix.hpp"
#include "diffuse/nn/parallel.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {

/// Group normalisation's affine parameters and geometry.
template <class S>
struct group_norm {
  column<S> weight;  ///< γ, per channel
  column<S> bias;    ///< β, per channel
  int groups = 32;   ///< channels are split into this many groups of equal size
  double eps = 1e-5;  ///< added to the variance
  int channels() const { return static_cast<int>(weight.size()); }  ///< channels normalised
};

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

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
