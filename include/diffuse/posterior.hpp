#pragma once
/// \file
/// The posterior q(x_p | x_t, x_0) for adjacent and strided steps (SPEC §3), the kinds of model output
/// (SPEC §4) and the post-processing of x̂0 (clipping, dynamic thresholding).

#include <cmath>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "diffuse/error.hpp"
#include "diffuse/forward.hpp"
#include "diffuse/model.hpp"
#include "diffuse/schedule.hpp"
#include "diffuse/shape.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// Coefficients of the Gaussian posterior q(x_p | x_t, x_0) = N(c1·x_0 + c2·x_t, variance).
struct posterior_coefficients {
  /// The timestep t the step starts from.
  int t = 0, prev = -1;  ///< the timestep p it goes to (−1: the clean sample)
  double alpha_bar_t = 0;       ///< ᾱ_t
  double alpha_bar_prev = 1;    ///< ᾱ_p (1 when p = −1)
  double beta_prime = 0;        ///< β'_t = 1 − ᾱ_t/ᾱ_p (the schedule's β_t itself on the full chain)
  /// Coefficient of x0 in the mean, c1 = √ᾱ_p·β'/(1 − ᾱ_t).
  double c1 = 0, c2 = 0;        ///< coefficient of x_t in the mean, c2 = √(1 − β')·(1 − ᾱ_p)/(1 − ᾱ_t)
  double variance = 0;          ///< β̃ = β'·(1 − ᾱ_p)/(1 − ᾱ_t); 0 when p = −1
  double log_variance_clipped = 0;  ///< log β̃; where β̃ = 0 (p = −1), the full-chain clipped value at t
};

/// The posterior of a step from t to any earlier timestep p (p = t − 1 on the full chain, −1 after the last).
///
/// Full-chain steps use the schedule's β_t itself so coefficients match the reference tables to the last
/// bit (SPEC §11). On a strided chain the clipped log variance of the last position is that of the step
/// before it; ddpm_sampler handles that, since it needs the whole list.
/// \throws diffuse::error unless −1 ≤ p < t < T.
inline posterior_coefficients posterior(const noise_schedule& schedule, int t, int prev) {
  if (t < 0 || t >= schedule.size())
    detail::fail(error_kind::timesteps, "timestep ", t, " is out of range; expected 0 <= t < ", schedule.size());
  if (prev < -1 || prev >= t)
    detail::fail(error_kind::timesteps, "previous timestep ", prev, " of t = ", t, " is invalid; expected -1 <= prev < t");
  posterior_coefficients p;
  p.t = t;
  p.prev = prev;
  p.alpha_bar_t = schedule.alpha_bar(t);
  p.alpha_bar_prev = schedule.alpha_bar(prev);
  const bool adjacent = prev == t - 1;
  p.beta_prime = adjacent ? schedule.beta(t) : 1.0 - p.alpha_bar_t / p.alpha_bar_prev;
  const double one_minus = 1.0 - p.alpha_bar_t;
  p.c1 = p.beta_prime * std::sqrt(p.alpha_bar_prev) / one_minus;
  p.c2 = (1.0 - p.alpha_bar_prev) * std::sqrt(1.0 - p.beta_prime) / one_minus;
  p.variance = p.beta_prime * (1.0 - p.alpha_bar_prev) / one_minus;
  p.log_variance_clipped = p.variance > 0.0 ? std::log(p.variance) : schedule.posterior_log_variance_clipped(t);
  return p;
}

/// The full-chain posterior q(x_{t−1} | x_t, x_0) elementwise (guided-diffusion's q_posterior_mean_variance),
/// with t = timesteps[i] for batch item i: mean c1·x0 + c2·x_t, variance β̃_t and its clipped log.
///
/// Each output has the shape of x0 and may be empty to skip it; `mean` may alias x0 or x_t. On a strided
/// chain, where the clipped log variance of the last position depends on the list, use
/// ddpm_sampler::posterior_mean_variance instead.
/// \throws diffuse::error on buffers that do not match `shape` or timesteps outside [0, T).
template <Real Scalar>
void q_posterior_mean_variance(const noise_schedule& schedule, std::span<const Scalar> x0, std::span<const Scalar> x_t,
                               std::span<const int> timesteps, const sample_shape& shape, std::span<Scalar> mean,
                               std::span<Scalar> variance = {}, std::span<Scalar> log_variance_clipped = {}) {
  detail::check_size("x0", x0.size(), shape);
  detail::check_size("x_t", x_t.size(), shape);
  if (!mean.empty()) detail::check_size("the mean", mean.size(), shape);
  if (!variance.empty()) detail::check_size("the variance", variance.size(), shape);
  if (!log_variance_clipped.empty()) detail::check_size("the log variance", log_variance_clipped.size(), shape);
  detail::check_timesteps(schedule, timesteps, shape);
  const std::size_t m = shape.per_sample();
  for (std::size_t i = 0; i < shape.batch; ++i) {
    const int t = timesteps[i];
    const auto c1 = static_cast<Scalar>(schedule.posterior_mean_coef1(t));
    const auto c2 = static_cast<Scalar>(schedule.posterior_mean_coef2(t));
    const auto v = static_cast<Scalar>(schedule.posterior_variance(t));
    const auto lv = static_cast<Scalar>(schedule.posterior_log_variance_clipped(t));
    for (std::size_t j = i * m; j < (i + 1) * m; ++j) {
      if (!mean.empty()) mean[j] = c1 * x0[j] + c2 * x_t[j];
      if (!variance.empty()) variance[j] = v;
      if (!log_variance_clipped.empty()) log_variance_clipped[j] = lv;
    }
  }
}

/// What the network predicts.
enum class prediction_type {
  epsilon,       ///< the noise ε
  sample,        ///< x0 itself
  v_prediction,  ///< the velocity v = √ᾱ·ε − √(1 − ᾱ)·x0
  previous_x,    ///< guided-diffusion's PREVIOUS_X: the posterior mean μ̃ directly (ancestral sampler only)
  /// A flow-matching velocity v = ε − x0 of x = (1 − σ)·x0 + σ·ε (diffusers' "flow_prediction"): only
  /// flow_euler_sampler (samplers/flow_euler.hpp) can use it; every other sampler refuses it.
  flow_prediction,
};

/// Where the ancestral step's variance comes from.
enum class variance_type {
  fixed_small,    ///< σ² = β̃ (diffusers' fixed_small and fixed_small_log)
  fixed_large,    ///< σ² = β' (guided-diffusion's FIXED_LARGE: the clipped β̃ at the last position)
  learned,        ///< diffusers' "learned": the extra C channels are σ² itself
  learned_log,    ///< guided-diffusion's LEARNED: the extra C channels are log σ²
  learned_range,  ///< the extra channels v interpolate: log σ² = ((v+1)/2)·log β' + (1 − (v+1)/2)·log β̃ (clipped)
};

/// Parses a prediction type as written in configs: "epsilon", "sample", "v_prediction", "previous_x",
/// "flow_prediction".
inline prediction_type parse_prediction_type(std::string_view name) {
  if (name == "epsilon") return prediction_type::epsilon;
  if (name == "sample") return prediction_type::sample;
  if (name == "v_prediction") return prediction_type::v_prediction;
  if (name == "previous_x") return prediction_type::previous_x;
  if (name == "flow_prediction") return prediction_type::flow_prediction;
  detail::fail(error_kind::argument, "prediction_type \"", std::string(name),
               "\" is unknown; expected epsilon, sample, v_prediction, previous_x or flow_prediction");
}

namespace detail {
/// The refusal every diffusion sampler gives a flow-matching model: its output is a velocity, not ε, x0 or v.
/// \throws diffuse::error (sampler) when p is flow_prediction.
inline void refuse_flow_prediction(prediction_type p, const char* sampler) {
  if (p == prediction_type::flow_prediction)
    fail(error_kind::sampler, sampler, " needs a model that predicts epsilon, sample or v_prediction; got flow_prediction (a "
                              "flow-matching velocity), which flow_euler_sampler, flow_heun_sampler, and DPM-Solver++ / UniPC over flow sigmas (dpm_solver_flow_sigmas, unipc_flow_sigmas) use");
}
}  // namespace detail

/// Parses a variance type as written in configs. fixed_small_log is fixed_small; fixed_large_log is
/// refused (it gives NaN in the Python reference).
inline variance_type parse_variance_type(std::string_view name) {
  if (name == "fixed_small" || name == "fixed_small_log") return variance_type::fixed_small;
  if (name == "fixed_large") return variance_type::fixed_large;
  if (name == "learned") return variance_type::learned;
  if (name == "learned_log") return variance_type::learned_log;
  if (name == "learned_range") return variance_type::learned_range;
  if (name == "fixed_large_log")
    detail::fail(error_kind::argument, "variance_type \"fixed_large_log\" is not supported (its reference "
                                       "implementation produces NaN); expected fixed_large");
  detail::fail(error_kind::argument, "variance_type \"", std::string(name),
               "\" is unknown; expected fixed_small, fixed_small_log, fixed_large, learned, learned_log or learned_range");
}

/// Imagen's dynamic thresholding of x̂0 (SPEC §4, §11).
struct dynamic_threshold {
  double ratio = 0.995;    ///< the quantile p of |x̂0| per batch item
  double max_value = 1.0;  ///< the upper bound on the threshold s (diffusers' sample_max_value)
};

/// Post-processing of x̂0 before it is used: none, static clipping, or dynamic thresholding (which
/// replaces clipping when both are set).
struct x0_processing {
  std::optional<double> clip_range = std::nullopt;            ///< clip x̂0 to [−r, r]
  std::optional<dynamic_threshold> threshold = std::nullopt;  ///< dynamic thresholding

  /// \throws diffuse::error for r ≤ 0, p outside (0, 1] or max_value < 1.
  void validate() const {
    if (clip_range && !(*clip_range > 0.0 && std::isfinite(*clip_range)))
      detail::fail(error_kind::argument, "clip_range = ", *clip_range, "; expected a finite value > 0");
    if (threshold) {
      if (!(threshold->ratio > 0.0 && threshold->ratio <= 1.0))
        detail::fail(error_kind::argument, "dynamic threshold ratio = ", threshold->ratio, " is outside (0, 1]");
      if (!(threshold->max_value >= 1.0 && std::isfinite(threshold->max_value)))
        detail::fail(error_kind::argument, "dynamic threshold max_value = ", threshold->max_value, "; expected a finite value >= 1");
    }
  }
};

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
