#pragma once
/// \file
/// The terms of the variational bound of a diffusion model (Ho et al. §3.3; Nichol & Dhariwal §3.1): the KL
/// divergence of two diagonal Gaussians and the discretized Gaussian log-likelihood of 8-bit data.
///
/// With q_mean_variance (forward.hpp) for the prior term and ddpm_sampler::posterior_mean_variance /
/// mean_variance (samplers/ancestral.hpp) for the per-step terms, they give the bound in bits per dimension
/// as guided-diffusion's calc_bpd_loop computes it.
///
/// Example (the KL term of position k, in bits, averaged over one item's elements):
/// \code
/// sampler.posterior_mean_variance<double>(k, x0, xt, shape, {.mean = q_mean, .log_variance = q_logvar});
/// sampler.mean_variance<double>(k, xt, model_out, shape, {.mean = p_mean, .log_variance = p_logvar});
/// diffuse::normal_kl<double>(q_mean, q_logvar, p_mean, p_logvar, kl);
/// double bits = std::accumulate(kl.begin(), kl.end(), 0.0) / kl.size() / std::log(2.0);
/// \endcode

#include <algorithm>
#include <cmath>
#include <numbers>
#include <span>

#include "diffuse/error.hpp"
#include "diffuse/model.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

namespace detail {
inline void check_same_size(const char* name, std::size_t size, std::size_t expected) {
  if (size != expected)
    fail(error_kind::shape, name, " has ", size, " elements; expected ", expected, " (as many as the first input)");
}
}  // namespace detail

/// KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) per element, in nats:
/// ½·(−1 + logvar2 − logvar1 + e^(logvar1 − logvar2) + (mean1 − mean2)²·e^(−logvar2)).
///
/// Computed in double whatever Scalar is. `out` may alias any input.
/// \throws diffuse::error (shape) when the spans differ in size.
template <Real Scalar>
void normal_kl(std::span<const Scalar> mean1, std::span<const Scalar> log_variance1, std::span<const Scalar> mean2,
               std::span<const Scalar> log_variance2, std::span<Scalar> out) {
  const std::size_t n = mean1.size();
  detail::check_same_size("log_variance1", log_variance1.size(), n);
  detail::check_same_size("mean2", mean2.size(), n);
  detail::check_same_size("log_variance2", log_variance2.size(), n);
  detail::check_same_size("the output", out.size(), n);
  for (std::size_t j = 0; j < n; ++j) {
    const double lv1 = log_variance1[j], lv2 = log_variance2[j];
    const double d = static_cast<double>(mean1[j]) - static_cast<double>(mean2[j]);
    out[j] = static_cast<Scalar>(0.5 * (-1.0 + lv2 - lv1 + std::exp(lv1 - lv2) + d * d * std::exp(-lv2)));
  }
}

/// The standard normal CDF by the tanh approximation ½·(1 + tanh(√(2/π)·(x + 0.044715·x³))) that the
/// discretized likelihood of Ho et al. (and guided-diffusion) uses; bounds computed with it match theirs.
inline double approx_standard_normal_cdf(double x) noexcept {
  const double k = std::sqrt(2.0 / std::numbers::pi);
  return 0.5 * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
}

/// log P(x) per element, in nats, of the Gaussian N(mean, e^(2·log_scale)) discretized to the 256 bins of
/// 8-bit data rescaled to [−1, 1] (bin half-width 1/255): the decoder term of the variational bound.
///
/// The edge bins take the whole tail (x < −0.999: log CDF of the upper edge; x > 0.999: log of one minus
/// the CDF of the lower edge); every probability is clamped below at 1e-12 before its log, as the
/// reference does, so the result is finite. Computed in double; `out` may alias any input.
/// \param x          the data, 8-bit values rescaled to [−1, 1]
/// \param means      the Gaussian means
/// \param log_scales the log standard deviations (half the log variance)
/// \param out        log-likelihood per element
/// \throws diffuse::error (shape) when the spans differ in size.
template <Real Scalar>
void discretized_gaussian_log_likelihood(std::span<const Scalar> x, std::span<const Scalar> means,
                                         std::span<const Scalar> log_scales, std::span<Scalar> out) {
  const std::size_t n = x.size();
  detail::check_same_size("means", means.size(), n);
  detail::check_same_size("log_scales", log_scales.size(), n);
  detail::check_same_size("the output", out.size(), n);
  constexpr double half_bin = 1.0 / 255.0, min_probability = 1e-12;
  for (std::size_t j = 0; j < n; ++j) {
    const double xj = x[j], centered = xj - static_cast<double>(means[j]);
    const double inv_stdv = std::exp(-static_cast<double>(log_scales[j]));
    const double cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered + half_bin));
    const double cdf_min = approx_standard_normal_cdf(inv_stdv * (centered - half_bin));
    double lp;
    if (xj < -0.999) {
      lp = std::log(std::max(cdf_plus, min_probability));
    } else if (xj > 0.999) {
      lp = std::log(std::max(1.0 - cdf_min, min_probability));
    } else {
      lp = std::log(std::max(cdf_plus - cdf_min, min_probability));
    }
    out[j] = static_cast<Scalar>(lp);
  }
}

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
