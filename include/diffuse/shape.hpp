#pragma once
/// \file
/// sample_shape: how the samplers see a contiguous batch (N, C, spatial...).

#include <cstddef>

#include "diffuse/error.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// A contiguous batch of N items, each C channels of `spatial` elements (H·W for images, or any
/// flattened rest: a (N, D) point cloud is {N, 1, D} or {N, D, 1}). Channels matter only to split a
/// 2C-channel model output (learned variance) into prediction and variance.
struct sample_shape {
  std::size_t batch = 1;     ///< N
  std::size_t channels = 1;  ///< C
  std::size_t spatial = 1;   ///< elements per channel (H·W, or the product of every trailing dimension)

  /// N·C·spatial; SIZE_MAX when the product does not fit in size_t, so that an absurd shape can never
  /// wrap round to the size of a real buffer and pass a size check.
  constexpr std::size_t numel() const noexcept { return saturating_product(saturating_product(batch, channels), spatial); }
  /// C·spatial, the elements of one batch item (saturating like numel()).
  constexpr std::size_t per_sample() const noexcept { return saturating_product(channels, spatial); }
  /// True when N·C·spatial fits in size_t.
  constexpr bool fits() const noexcept { return numel() != static_cast<std::size_t>(-1); }

 private:
  static constexpr std::size_t saturating_product(std::size_t a, std::size_t b) noexcept {
    return a != 0 && b > static_cast<std::size_t>(-1) / a ? static_cast<std::size_t>(-1) : a * b;
  }
};

namespace detail {

/// Throws a shape error unless `size` is the element count of `shape`.
inline void check_size(const char* name, std::size_t size, const sample_shape& shape) {
  if (!shape.fits())
    fail(error_kind::shape, "the sample shape {batch ", shape.batch, ", channels ", shape.channels, ", spatial ", shape.spatial,
         "} has more elements than size_t can count; expected a shape that fits in memory");
  if (shape.numel() == 0)
    fail(error_kind::shape, "the sample shape {batch ", shape.batch, ", channels ", shape.channels, ", spatial ", shape.spatial,
         "} has no elements; expected every dimension >= 1");
  if (size != shape.numel())
    fail(error_kind::shape, name, " has ", size, " elements; expected batch ", shape.batch, " x channels ", shape.channels,
         " x spatial ", shape.spatial, " = ", shape.numel());
}

}  // namespace detail
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
