#pragma once
/// \file
/// Conditioning embeddings: the sinusoidal timestep embeddings diffusers and Diffusion Policy use, and the class-label lookup
/// added to the time embedding of class-conditional models.

#include <cmath>
#include <cstddef>
#include <span>

#include "diffuse/nn/matrix.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {

/// Sinusoidal time embedding of width dim (diffusers' get_timestep_embedding with scale 1 and
/// max_period 10⁴): frequencies f_k = exp(−ln(10⁴)·k / (dim/2 − freq_shift)), [sin(t f), cos(t f)], the
/// halves swapped when flip_sin_to_cos, computed in S as PyTorch computes it in the model's dtype.
template <class S>
void timestep_embedding(std::span<const double> timesteps, int dim, bool flip_sin_to_cos, double freq_shift, S* out) {
  const int half = dim / 2;
  for (std::size_t i = 0; i < timesteps.size(); ++i) {
    S* row = out + i * static_cast<std::size_t>(dim);
    const S t = static_cast<S>(timesteps[i]);
    for (int k = 0; k < half; ++k) {
      const S exponent = static_cast<S>(-std::log(10000.0)) * static_cast<S>(k) / static_cast<S>(half - freq_shift);
      const S arg = t * std::exp(exponent);
      const S s = std::sin(arg), c = std::cos(arg);
      row[flip_sin_to_cos ? half + k : k] = s;
      row[flip_sin_to_cos ? k : half + k] = c;
    }
    if (dim % 2) row[dim - 1] = S(0);
  }
}

/// Sinusoidal diffusion-step embedding of width dim = 2·half (Diffusion Policy's SinusoidalPosEmb,
/// LeRobot's DiffusionSinusoidalPosEmb): f_k = exp(−k·ln(10⁴)/(half − 1)), [sin(t f), cos(t f)] (sines
/// first). As PyTorch evaluates it in the model's dtype S: ln(10⁴)/(half − 1) in double rounded to S once,
/// k·(−that) in S, then exp, the product with t and sin / cos in S. Needs half ≥ 2.
template <class S>
void sinusoidal_step_embedding(std::span<const double> timesteps, int half, S* out) {
  const S step = static_cast<S>(-(std::log(10000.0) / (half - 1)));
  for (std::size_t i = 0; i < timesteps.size(); ++i) {
    S* row = out + i * static_cast<std::size_t>(2 * half);
    const S t = static_cast<S>(timesteps[i]);
    for (int k = 0; k < half; ++k) {
      const S arg = t * std::exp(static_cast<S>(k) * step);
      row[k] = std::sin(arg);
      row[half + k] = std::cos(arg);
    }
  }
}

/// temb[i·dim + k] += table(labels[i], k) for every item i: a class-conditional model's label embedding
/// (torch.nn.Embedding, rows = classes) added to the time embedding of width dim = table.cols().
template <class S>
void add_class_embedding(const matrix<S>& table, std::span<const int> labels, S* temb) {
  const std::ptrdiff_t dim = table.cols();
  for (std::size_t i = 0; i < labels.size(); ++i) {
    S* e = temb + static_cast<std::ptrdiff_t>(i) * dim;
    for (std::ptrdiff_t k = 0; k < dim; ++k) e[k] += table(labels[i], k);
  }
}

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
