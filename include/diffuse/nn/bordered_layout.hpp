#pragma once
/// \file
/// The zero-bordered input layout the direct 3×3 convolution reads, shared by the convolution (which builds
/// it from a plain input) and by the layers that write their output straight into it (group norm).

#include <cstddef>

#include "diffuse/version.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {

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

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
