#pragma once
/// \file
/// The Denoiser concept: what a network must look like for the samplers to drive it.

#include <concepts>
#include <span>

#include "diffuse/version.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// A denoising network the samplers can call: `model(x_t, t, out)`.
///
/// - `x_t`: `std::span<const Scalar>`, the current sample, contiguous (N, C, ...) as the sampler was given it;
/// - `t`: `int`, the training timestep of this evaluation (the same for the whole batch);
/// - `out`: `std::span<Scalar>`, where the network writes its prediction: as many elements as `x_t`, or
///   twice as many channels (2C, prediction first) for a learned variance.
///
/// A lambda qualifies, so does any class with that call operator (the reference UNet is one), or a thin
/// wrapper around ONNX Runtime, libtorch or ggml. Class labels, prompts and other conditioning are
/// captured by the callable.
///
/// Example:
/// \code
/// auto model = [&](std::span<const float> x, int t, std::span<float> out) { my_net.run(x, t, out); };
/// \endcode
template <class M, class Scalar>
concept Denoiser = requires(M& model, std::span<const Scalar> x_t, int t, std::span<Scalar> out) {
  model(x_t, t, out);
};

/// The floating-point types diffuse's samplers and kernels are instantiated for.
template <class T>
concept Real = std::same_as<T, float> || std::same_as<T, double>;  // samples must be float or double: pass std::span<float> or std::span<double>

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
