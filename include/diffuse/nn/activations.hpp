#pragma once
/// \file
/// Elementwise activations, scalar forms (the SIMD forms are in detail/simd_math.hpp, where the fused
/// layers call them).

#include <cmath>

#include "diffuse/version.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {

/// SiLU (swish): x·σ(x) = x / (1 + e^(−x)).
template <class S>
S silu(S x) noexcept {
  return x / (S(1) + std::exp(-x));
}

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
