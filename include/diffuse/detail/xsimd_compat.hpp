#pragma once
// The few xsimd calls whose spelling changed between the releases diffuse supports (xsimd 8.1, which
// Debian 12 ships, through 14.x, which vcpkg and ConanCenter serve). Not part of the public API.
//
// - bitwise_cast: xsimd ≤ 10 takes the target batch type (bitwise_cast<batch<U, A>>(x)), xsimd ≥ 11 the
//   target element type (bitwise_cast<U>(x)).
// - the horizontal sum: xsimd 8 calls it hadd, xsimd ≥ 9 reduce_add, and each release and architecture
//   is free to add the lanes in its own order. diffuse adds them itself in one fixed order, so that a
//   sum gives the same bits whatever xsimd release it is compiled against.

#include <cstddef>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "diffuse/version.hpp"

#if !defined(XSIMD_VERSION_MAJOR) || XSIMD_VERSION_MAJOR < 8 || XSIMD_VERSION_MAJOR > 14
#error "diffuse supports xsimd 8.1 through 14.x (the releases Debian, vcpkg and ConanCenter serve); this xsimd is outside that range"
#endif

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace detail {

/// The bits of x reinterpreted as the batch type To (a batch of another element type, same width).
template <class To, class T, class A>
inline To bit_cast_lanes(const xsimd::batch<T, A>& x) noexcept {
  static_assert(std::is_same_v<typename To::arch_type, A>, "bit_cast_lanes keeps the architecture");
#if XSIMD_VERSION_MAJOR >= 11
  return xsimd::bitwise_cast<typename To::value_type>(x);
#else
  return xsimd::bitwise_cast<To>(x);
#endif
}

/// Σ of the lanes of x, added as a tree: lane i + L/2 onto lane i, then i + L/4, … (log₂ L roundings,
/// the same order on every xsimd release).
template <class T, class A>
inline T sum_lanes(const xsimd::batch<T, A>& x) noexcept {
  constexpr std::size_t L = xsimd::batch<T, A>::size;
  T lanes[L];
  x.store_unaligned(lanes);
  for (std::size_t half = L / 2; half > 0; half /= 2)
    for (std::size_t i = 0; i < half; ++i) lanes[i] += lanes[i + half];
  return lanes[0];
}

}  // namespace detail
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
