#pragma once
// e^x and SiLU on xsimd float batches with fused multiply-adds, for the UNet's activations and softmax.
// Not part of the public API.
//
// Why not xsimd::exp: its float kernel is written with xsimd::fma, which the xsimd 8 Debian ships turns
// into a separate multiply and add on AVX-512 (see fma.hpp), and it wraps the polynomial in range checks
// for arguments the network never produces at a cost as large again. Measured inside a UNet forward,
// SiLU and softmax spent most of their time there. Double batches keep xsimd::exp: the double UNet is the
// exact reference of the parity tests.
//
// Method (Cody–Waite reduction, then Taylor): x is clamped to [−86, 88] (so that e^x and every
// intermediate is a normal float; e^88 ≈ 1.65e38 stands for +∞ and e^−86 ≈ 4.4e−38 for 0, which
// x/(1 + e^−x) and a softmax cannot tell apart from the true values), k = round(x·log₂e),
// r = x − k·ln 2 in two fused steps (|r| ≤ ½ ln 2), e^r = 1 + r + r²·(1/2! + r/3! + … + r⁵/7!) (the first
// term left out, r⁸/8!, is below 6·10⁻⁹ relative), and 2^k is added to the exponent field. Within 2 ulps
// of the correctly rounded value on [−86, 88] (tests/test_unet.cpp). NaN propagates.

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
  if constexpr (!std::is_same_v<T, float>) {
    return xsimd::exp(x);
  } else {
    using F = xsimd::batch<float, A>;
    using I = xsimd::batch<std::int32_t, A>;
    // Clamped by comparisons, which are false for NaN, so a NaN passes through unchanged: xsimd's own
    // min/max return the second operand on NaN up to 13.x and the first from 14.0 on.
    x = xsimd::select(x > F(88.0f), F(88.0f), x);
    x = xsimd::select(x < F(-86.0f), F(-86.0f), x);
    const F k = xsimd::nearbyint(x * F(1.44269504088896340736f));
    // ln 2 = ln2_hi + ln2_lo, ln2_hi with 12 significant bits.
    F r = fused_multiply_add(-k, F(0x1.62ep-1f), x);
    r = fused_multiply_add(-k, F(0x1.0bfbe8p-15f), r);
    F p(1.0f / 5040.0f);
    p = fused_multiply_add(p, r, F(1.0f / 720.0f));
    p = fused_multiply_add(p, r, F(1.0f / 120.0f));
    p = fused_multiply_add(p, r, F(1.0f / 24.0f));
    p = fused_multiply_add(p, r, F(1.0f / 6.0f));
    p = fused_multiply_add(p, r, F(0.5f));
    const F y = fused_multiply_add(p, r * r, r) + F(1.0f);
    // y·2^k by adding k to the biased exponent: y is in [0.7, 1.42] and k in [−124, 127], so the result
    // is a normal float.
    const I scaled = bit_cast_lanes<I>(y) + (xsimd::to_int(k) << 23);
    return bit_cast_lanes<F>(scaled);
  }
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
