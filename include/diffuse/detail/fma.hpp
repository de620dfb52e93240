#pragma once
// A fused multiply-add on xsimd batches that is fused on every target that has the instruction. Not part
// of the public API.
//
// Why not xsimd::fma alone: the xsimd 8 Debian ships defines fma for fma3<avx>, fma3<avx2> and fma4 but
// not for the AVX-512 architectures, whose batches then take the generic x*y + z; under the
// -ffp-contract=off diffuse::diffuse compiles with, that is a separate multiply and add, half the
// arithmetic rate of the convolution kernels on an AVX-512 machine (measured: direct 3×3 convolution 70
// GFLOP/s on one Xeon core with the generic path, against 145 for Eigen's GEMM, which calls the
// intrinsic itself). Here the AVX-512 batches call the intrinsic; everything else keeps xsimd::fma.

#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "diffuse/version.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace detail {

/// x·y + z rounded once.
template <class T, class A>
inline xsimd::batch<T, A> fused_multiply_add(const xsimd::batch<T, A>& x, const xsimd::batch<T, A>& y,
                                             const xsimd::batch<T, A>& z) noexcept {
#if defined(__AVX512F__)
  if constexpr (std::is_base_of_v<xsimd::avx512f, A>) {
    if constexpr (std::is_same_v<T, float>) return _mm512_fmadd_ps(x, y, z);
    else if constexpr (std::is_same_v<T, double>) return _mm512_fmadd_pd(x, y, z);
    else return xsimd::fma(x, y, z);
  } else
#endif
    return xsimd::fma(x, y, z);
}

}  // namespace detail
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
