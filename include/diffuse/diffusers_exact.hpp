#pragma once
/// \file
/// diffusers-exact mode: the float32 tables diffusers' schedulers compute, for reproducing a diffusers
/// pipeline to float32 rounding rather than computing the chain as exactly as double allows.
///
/// diffuse's default is the correct computation: tables in double, DDIM stepping to the next list entry,
/// no DDPM noise on the last list position. Three opt-ins reproduce diffusers instead (docs/howto/solvers.md,
/// "diffusers-exact mode", lists every difference):
/// - diffusers_float32_schedule() here: ᾱ as diffusers stores it (float32 betas, float32 1 − β, the
///   cumulative product rounded to float32), for every sampler and solver;
/// - ddim_options::diffusers_exact: DDIM's previous timestep t − ⌊T/N⌋;
/// - ddpm_options::diffusers_exact: DDPM's noise on a last step with t > 0 and its 1e-20 variance clamp.
///
/// Example:
/// \code
/// const auto tables = diffuse::diffusers_float32_schedule(diffuse::noise_schedule::scaled_linear(1000));
/// diffuse::ddim_sampler ddim(tables, diffuse::make_timesteps(1000, 30, diffuse::timestep_spacing::linspace),
///                            {.diffusers_exact = true});
/// diffuse::dpm_solver_sampler dpm(tables, 20);  // diffusers' float32 σ table
/// \endcode

#include <vector>

#include "diffuse/error.hpp"
#include "diffuse/schedule.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// The schedule whose ᾱ are the float32 values diffusers' schedulers hold for the same betas: each β
/// rounded to float32, α = 1 − β in float32, ᾱ_t = the running product of those α accumulated in double
/// and rounded to float32 at every t (PyTorch's CPU cumprod). The result keeps those ᾱ exactly (in
/// double); its β are 1 − ᾱ_t/ᾱ_{t−1}, as diffusers' DDPM step recomputes them.
///
/// Near t = 0, where ᾱ ≈ 1, 1 − ᾱ and hence σ_t = √((1 − ᾱ)/ᾱ) then carry diffusers' float32 error
/// (up to ~6e-4 relative for β ≈ 1e-4): reproducing it is the point of this mode, and the reason it is
/// not the default.
///
/// For cosine (and any betas diffusers receives as a double list) the result is diffusers' table bit for
/// bit. diffusers' "linear" and "scaled_linear" betas come from torch.linspace in float32, whose
/// vectorised kernel puts some entries an ulp away from the rounded double values; the ᾱ then differ by
/// an ulp or two and 1 − ᾱ by at most 4.6e-7 relative (diffuse's double tables: 2.6e-5 to 1.7e-4),
/// which tests/test_diffusers_exact.cpp measures against diffusers' own tables. A rescaled
/// zero-terminal-SNR schedule, which diffusers rescales in float32, is rounded the same way from
/// diffuse's double rescale (not checked bit for bit).
/// \throws diffuse::error when the rounded ᾱ are not strictly decreasing (betas below float32 resolution).
inline noise_schedule diffusers_float32_schedule(const noise_schedule& schedule) {
  const auto betas = schedule.betas();
  std::vector<double> alpha_bar(betas.size());
  double product = 1.0;
  for (std::size_t t = 0; t < betas.size(); ++t) {
    const float beta = static_cast<float>(betas[t]);
    const float alpha = 1.0f - beta;
    product *= static_cast<double>(alpha);
    const float rounded = static_cast<float>(product);
    alpha_bar[t] = static_cast<double>(rounded);
  }
  return noise_schedule::from_alphas_cumprod(std::move(alpha_bar));
}

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
