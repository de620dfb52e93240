#pragma once
/// \file
/// img2img and partial chains: start a sampler part-way down its list from a noised clean sample.

#include <cmath>
#include <cstdint>
#include <span>

#include "diffuse/error.hpp"
#include "diffuse/random.hpp"
#include "diffuse/sample.hpp"
#include "diffuse/schedule.hpp"
#include "diffuse/shape.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// The list position an img2img run starts at: N − ⌊N·strength⌋ (strength 1 runs the whole list).
/// \throws diffuse::error for a strength outside (0, 1], or one so small that no step would run.
inline int img2img_start_index(int num_steps, double strength) {
  if (!(strength > 0.0 && strength <= 1.0))
    detail::fail(error_kind::argument, "strength = ", strength, " is outside (0, 1]; expected the fraction of the "
                                       "sampling chain to run");
  if (num_steps < 1) detail::fail(error_kind::argument, "num_steps = ", num_steps, "; expected >= 1");
  const int run = static_cast<int>(std::floor(num_steps * strength));
  if (run < 1)
    detail::fail(error_kind::argument, "strength = ", strength, " with ", num_steps,
                 " steps runs no step; expected strength >= 1/num_steps = ", 1.0 / num_steps);
  return num_steps - run;
}

/// Noises the clean samples x0 to training timestep t into x (x = √ᾱ_t·x0 + √(1 − ᾱ_t)·ε), drawing ε
/// from the initial-noise stream of the generator, so the result is reproducible per sample index.
template <Real Scalar>
void img2img_noise(const noise_schedule& schedule, int t, std::span<const Scalar> x0, std::span<Scalar> x,
                   const sample_shape& shape, std::uint64_t seed, std::uint64_t first_sample = 0) {
  if (t < 0 || t >= schedule.size())  // alpha_bar(-1) = 1 would return x0 unchanged
    detail::fail(error_kind::timesteps, "img2img timestep ", t, " is out of range; expected 0 <= t < ", schedule.size());
  if (x0.size() != shape.numel() || x.size() != shape.numel())
    detail::fail(error_kind::shape, "x0 has ", x0.size(), " and x has ", x.size(), " elements; expected ", shape.numel(), " each");
  if (detail::share_memory(x0, std::span<const Scalar>(x)))  // x is filled with noise first
    detail::fail(error_kind::argument, "x shares memory with x0; expected a separate buffer (x receives noise before x0 is read)");
  fill_initial_noise<Scalar>(x, shape, seed, first_sample);
  const auto a = static_cast<Scalar>(schedule.sqrt_alpha_bar(t));
  const auto b = static_cast<Scalar>(schedule.sqrt_one_minus_alpha_bar(t));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = a * x0[i] + b * x[i];
}

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
