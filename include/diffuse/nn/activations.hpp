#pragma once
/// \file
/// Elementwise activations (SiLU, Mish), scalar forms (the SIMD forms are in detail/simd_math.hpp, where the fused
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

/// Mish (Misra 2019): x·tanh(softplus(x)) = x·tanh(ln(1 + eˣ)), written as PyTorch's CPU kernel writes it.
/// For large x, eˣ overflows to +inf and the result is x; for very negative x it is −0 or a tiny value.
template <class S>
S mish(S x) noexcept {
  return x * std::tanh(std::log1p(std::exp(x)));
}

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
