#pragma once
// e^x and SiLU on xsimd float and double batches with fused multiply-adds, for the UNet's activations
// and softmax. Not part of the public API.
//
// Why not xsimd::exp: its float kernel is written with xsimd::fma, which the xsimd 8 Debian ships turns
// into a separate multiply and add on AVX-512 (see fma.hpp), and it wraps the polynomial in range checks
// for arguments the network never produces at a cost as large again. Measured inside a UNet forward,
// SiLU and softmax spent most of their time there. And its results are its own: they differ between
// xsimd releases (measured: the double UNet's outputs changed in the last bits from xsimd 8.1 to 13.2),
// where diffuse promises the same bits whatever release it is built with.
//
// Method (Cody–Waite reduction, then Taylor), float: x is clamped to [−86, 88] (so that e^x and every
// intermediate is a normal float; e^88 ≈ 1.65e38 stands for +∞ and e^−86 ≈ 4.4e−38 for 0, which
// x/(1 + e^−x) and a softmax cannot tell apart from the true values), k = round(x·log₂e),
// r = x − k·ln 2 in two fused steps (|r| ≤ ½ ln 2), e^r = 1 + r + r²·(1/2! + r/3! + … + r⁵/7!) (the first
// term left out, r⁸/8!, is below 6·10⁻⁹ relative), and 2^k is added to the exponent field. Within 2 ulps
// of the correctly rounded value on [−86, 88] (tests/test_unet.cpp). NaN propagates.
// Double: the same with x clamped to [−708, 709] (normal results) and the Taylor series to r¹³/13! (the
// first term left out, r¹⁴/14!, is below 5·10⁻¹⁸ relative); within 2 ulps (tests/test_unet.cpp).

#include <cstdint>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "diffuse/detail/fma.hpp"
#include "diffuse/detail/xsimd_compat.hpp"
#include "diffuse/version.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace detail {

template <class T, class A>
inline xsimd::batch<T, A> fast_exp(xsimd::batch<T, A> x) noexcept {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "fast_exp takes float or double batches");
  using F = xsimd::batch<T, A>;
  constexpr bool single = std::is_same_v<T, float>;
  using I = xsimd::batch<std::conditional_t<single, std::int32_t, std::int64_t>, A>;
  // Clamped by comparisons, which are false for NaN, so a NaN passes through unchanged: xsimd's own
  // min/max return the second operand on NaN up to 13.x and the first from 14.0 on.
  const F hi(single ? T(88.0f) : T(709.0)), lo(single ? T(-86.0f) : T(-708.0));
  x = xsimd::select(x > hi, hi, x);
  x = xsimd::select(x < lo, lo, x);
  const F k = xsimd::nearbyint(x * F(T(1.44269504088896340736)));
  F r, p;
  if constexpr (single) {
    // ln 2 = ln2_hi + ln2_lo, ln2_hi with 12 significant bits.
    r = fused_multiply_add(-k, F(0x1.62ep-1f), x);
    r = fused_multiply_add(-k, F(0x1.0bfbe8p-15f), r);
    p = F(1.0f / 5040.0f);
    for (const float c : {1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f, 0.5f}) p = fused_multiply_add(p, r, F(c));
  } else {
    // ln 2 = ln2_hi + ln2_lo, ln2_hi with 32 significant bits: k·ln2_hi is exact even where the
    // multiply-add is not fused (SSE2), so x − k·ln2_hi is too.
    r = fused_multiply_add(-k, F(0x1.62e42feep-1), x);
    r = fused_multiply_add(-k, F(0x1.a39ef35793c76p-33), r);
    // 1/13!, 1/12!, ..., 1/2!
    p = F(1.0 / 6227020800.0);
    for (const double c : {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0,
                           1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5})
      p = fused_multiply_add(p, r, F(c));
  }
  const F y = fused_multiply_add(p, r * r, r) + F(T(1));
  // y·2^k by adding k to the biased exponent: y is in [0.7, 1.42] and k keeps the result normal
  // (float: k in [−124, 127]; double: k in [−1021, 1023]).
  constexpr int mantissa_bits = single ? 23 : 52;
  // A NaN lane converts k = 0 instead: y is NaN there already, and a NaN → integer conversion is
  // undefined behaviour where xsimd converts lane by lane (double → int64 below AVX-512DQ).
  const I scaled = bit_cast_lanes<I>(y) + (xsimd::to_int(xsimd::select(k == k, k, F(T(0)))) << mantissa_bits);
  return bit_cast_lanes<F>(scaled);
}

/// SiLU, v·σ(v) = v / (1 + e^−v). With AVX-512 the division is a reciprocal estimate (14 bits) and one
/// Newton step (to within 2 ulps of 1/(1 + e^−v)): a vdivps on 16 floats blocks the divider for longer
/// than the rest of the function takes. Elsewhere a division.
template <class T, class A>
inline xsimd::batch<T, A> fast_silu(const xsimd::batch<T, A>& v) noexcept {
  using B = xsimd::batch<T, A>;
  const B d = B(T(1)) + fast_exp(-v);
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float> && std::is_base_of_v<xsimd::avx512f, A>) {
    const B r0 = _mm512_rcp14_ps(d);
    const B r = fused_multiply_add(r0, fused_multiply_add(-d, r0, B(1.0f)), r0);  // r0 + r0·(1 − d·r0)
    return v * r;
  }
#endif
  return v / d;
}

}  // namespace detail
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
