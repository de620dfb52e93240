#pragma once
/// \file
/// Nearest-neighbour upsampling of NCHW planes (diffusers' Upsample2D before its convolution).

#include <cstddef>

#include "diffuse/nn/parallel.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {

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

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
