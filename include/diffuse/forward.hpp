#pragma once
/// \file
/// Forward noising q(x_t | x_0), the training targets (ε, x0, v) and the conversions between them (SPEC §2).
///
/// Every function works on a contiguous batch with one timestep per batch item; coefficients are taken
/// from the schedule in double and applied in the data's precision.

#include <cmath>
#include <span>

#include "diffuse/error.hpp"
#include "diffuse/model.hpp"
#include "diffuse/schedule.hpp"
#include "diffuse/shape.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

namespace detail {

inline void check_timesteps(const noise_schedule& schedule, std::span<const int> timesteps, const sample_shape& shape) {
  if (timesteps.size() != shape.batch)
    fail(error_kind::shape, "got ", timesteps.size(), " timesteps for a batch of ", shape.batch, "; expected one per batch item");
  for (std::size_t i = 0; i < timesteps.size(); ++i)
    if (timesteps[i] < 0 || timesteps[i] >= schedule.size())
      fail(error_kind::timesteps, "timestep ", timesteps[i], " of batch item ", i, " is out of range; expected 0 <= t < ",
           schedule.size());
}

/// out = ca·a + cb·b per batch item, with (ca, cb) = coefficients(t_i).
template <class Scalar, class Coefficients>
void combine(const noise_schedule& schedule, std::span<const Scalar> a, std::span<const Scalar> b,
             std::span<const int> timesteps, const sample_shape& shape, std::span<Scalar> out, Coefficients coefficients) {
  check_size("the first input", a.size(), shape);
  check_size("the second input", b.size(), shape);
  check_size("the output", out.size(), shape);
  check_timesteps(schedule, timesteps, shape);
  const std::size_t m = shape.per_sample();
  for (std::size_t i = 0; i < shape.batch; ++i) {
    const auto [ca, cb] = coefficients(timesteps[i]);
    const auto sa = static_cast<Scalar>(ca), sb = static_cast<Scalar>(cb);
    for (std::size_t j = i * m; j < (i + 1) * m; ++j) out[j] = sa * a[j] + sb * b[j];
  }
}

struct coefficient_pair {
  double first, second;
};

}  // namespace detail

/// x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·noise, with t = timesteps[i] for batch item i. `out` may alias x0 or noise.
///
/// Example:
/// \code
/// diffuse::add_noise<float>(schedule, x0, noise, std::vector<int>{10, 500}, {.batch = 2, .channels = 1, .spatial = 64}, xt);
/// \endcode
template <Real Scalar>
void add_noise(const noise_schedule& schedule, std::span<const Scalar> x0, std::span<const Scalar> noise,
               std::span<const int> timesteps, const sample_shape& shape, std::span<Scalar> out) {
  detail::combine<Scalar>(schedule, x0, noise, timesteps, shape, out, [&](int t) {
    return detail::coefficient_pair{schedule.sqrt_alpha_bar(t), schedule.sqrt_one_minus_alpha_bar(t)};
  });
}

/// log(1 − ᾱ_t), the log variance of q(x_t | x_0) (guided-diffusion's log_one_minus_alphas_cumprod).
/// \throws diffuse::error unless 0 ≤ t < T.
inline double log_one_minus_alpha_bar(const noise_schedule& schedule, int t) {
  if (t < 0 || t >= schedule.size())
    detail::fail(error_kind::timesteps, "timestep ", t, " is out of range; expected 0 <= t < ", schedule.size());
  return std::log(1.0 - schedule.alpha_bar(t));
}

/// ᾱ_{t+1}, the target of a DDIM inversion step from t (guided-diffusion's alphas_cumprod_next): 0 at the
/// last timestep t = T − 1, as guided-diffusion defines it (the chain ends in pure noise).
/// \throws diffuse::error unless 0 ≤ t < T.
inline double alpha_bar_next(const noise_schedule& schedule, int t) {
  if (t < 0 || t >= schedule.size())
    detail::fail(error_kind::timesteps, "timestep ", t, " is out of range; expected 0 <= t < ", schedule.size());
  return t + 1 < schedule.size() ? schedule.alpha_bar(t + 1) : 0.0;
}

/// The marginal q(x_t | x_0) = N(√ᾱ_t·x0, (1 − ᾱ_t)·I) elementwise (guided-diffusion's q_mean_variance),
/// with t = timesteps[i] for batch item i.
///
/// Each output has the shape of x0 and may be empty to skip it; `mean` may alias x0. With the log variance
/// and normal_kl (likelihood.hpp), KL(q(x_{T−1} | x_0) ‖ N(0, I)) is the prior term of the variational bound.
/// \param schedule     the noise schedule
/// \param x0           the clean samples, shape.numel() elements
/// \param timesteps    one training timestep per batch item
/// \param shape        the batch layout of x0
/// \param mean         √ᾱ_t·x0
/// \param variance     1 − ᾱ_t
/// \param log_variance log(1 − ᾱ_t)
/// \throws diffuse::error on buffers that do not match `shape` or timesteps outside [0, T).
template <Real Scalar>
void q_mean_variance(const noise_schedule& schedule, std::span<const Scalar> x0, std::span<const int> timesteps,
                     const sample_shape& shape, std::span<Scalar> mean, std::span<Scalar> variance = {},
                     std::span<Scalar> log_variance = {}) {
  detail::check_size("x0", x0.size(), shape);
  if (!mean.empty()) detail::check_size("the mean", mean.size(), shape);
  if (!variance.empty()) detail::check_size("the variance", variance.size(), shape);
  if (!log_variance.empty()) detail::check_size("the log variance", log_variance.size(), shape);
  detail::check_timesteps(schedule, timesteps, shape);
  const std::size_t m = shape.per_sample();
  for (std::size_t i = 0; i < shape.batch; ++i) {
    const int t = timesteps[i];
    const auto a = static_cast<Scalar>(schedule.sqrt_alpha_bar(t));
    const auto v = static_cast<Scalar>(1.0 - schedule.alpha_bar(t));
    const auto lv = static_cast<Scalar>(log_one_minus_alpha_bar(schedule, t));
    for (std::size_t j = i * m; j < (i + 1) * m; ++j) {
      if (!mean.empty()) mean[j] = a * x0[j];
      if (!variance.empty()) variance[j] = v;
      if (!log_variance.empty()) log_variance[j] = lv;
    }
  }
}

/// The velocity target v = √ᾱ_t·noise − √(1 − ᾱ_t)·x0.
template <Real Scalar>
void velocity(const noise_schedule& schedule, std::span<const Scalar> x0, std::span<const Scalar> noise,
              std::span<const int> timesteps, const sample_shape& shape, std::span<Scalar> out) {
  detail::combine<Scalar>(schedule, x0, noise, timesteps, shape, out, [&](int t) {
    return detail::coefficient_pair{-schedule.sqrt_one_minus_alpha_bar(t), schedule.sqrt_alpha_bar(t)};
  });
}

/// x̂0 = (x_t − √(1 − ᾱ_t)·ε̂)/√ᾱ_t.
/// \throws diffuse::error (numeric) where ᾱ_t = 0: an ε prediction carries no information about x0 there.
template <Real Scalar>
void x0_from_epsilon(const noise_schedule& schedule, std::span<const Scalar> x_t, std::span<const Scalar> eps,
                     std::span<const int> timesteps, const sample_shape& shape, std::span<Scalar> out) {
  detail::combine<Scalar>(schedule, x_t, eps, timesteps, shape, out, [&](int t) {
    if (!(schedule.alpha_bar(t) > 0.0))
      detail::fail(error_kind::numeric, "epsilon prediction cannot give x0 at t = ", t,
                   " where alpha_bar = 0 (zero terminal SNR); expected a v or x0 prediction there");
    return detail::coefficient_pair{schedule.sqrt_recip_alpha_bar(t), -schedule.sqrt_recipm1_alpha_bar(t)};
  });
}

/// ε̂ = (x_t − √ᾱ_t·x̂0)/√(1 − ᾱ_t).
template <Real Scalar>
void epsilon_from_x0(const noise_schedule& schedule, std::span<const Scalar> x_t, std::span<const Scalar> x0,
                     std::span<const int> timesteps, const sample_shape& shape, std::span<Scalar> out) {
  detail::combine<Scalar>(schedule, x_t, x0, timesteps, shape, out, [&](int t) {
    const double b = schedule.sqrt_one_minus_alpha_bar(t);
    return detail::coefficient_pair{1.0 / b, -schedule.sqrt_alpha_bar(t) / b};
  });
}

/// x̂0 = √ᾱ_t·x_t − √(1 − ᾱ_t)·v̂.
template <Real Scalar>
void x0_from_velocity(const noise_schedule& schedule, std::span<const Scalar> x_t, std::span<const Scalar> v,
                      std::span<const int> timesteps, const sample_shape& shape, std::span<Scalar> out) {
  detail::combine<Scalar>(schedule, x_t, v, timesteps, shape, out, [&](int t) {
    return detail::coefficient_pair{schedule.sqrt_alpha_bar(t), -schedule.sqrt_one_minus_alpha_bar(t)};
  });
}

/// ε̂ = √ᾱ_t·v̂ + √(1 − ᾱ_t)·x_t.
template <Real Scalar>
void epsilon_from_velocity(const noise_schedule& schedule, std::span<const Scalar> x_t, std::span<const Scalar> v,
                           std::span<const int> timesteps, const sample_shape& shape, std::span<Scalar> out) {
  detail::combine<Scalar>(schedule, x_t, v, timesteps, shape, out, [&](int t) {
    return detail::coefficient_pair{schedule.sqrt_one_minus_alpha_bar(t), schedule.sqrt_alpha_bar(t)};
  });
}

/// v̂ = √ᾱ_t·ε̂ − √(1 − ᾱ_t)·x̂0 from (x_t, ε̂): v̂ = (ε̂ − √(1 − ᾱ_t)·x_t)/√ᾱ_t.
/// \throws diffuse::error (numeric) where ᾱ_t = 0.
template <Real Scalar>
void velocity_from_epsilon(const noise_schedule& schedule, std::span<const Scalar> x_t, std::span<const Scalar> eps,
                           std::span<const int> timesteps, const sample_shape& shape, std::span<Scalar> out) {
  detail::combine<Scalar>(schedule, x_t, eps, timesteps, shape, out, [&](int t) {
    if (!(schedule.alpha_bar(t) > 0.0))
      detail::fail(error_kind::numeric, "v cannot be derived from epsilon at t = ", t, " where alpha_bar = 0");
    const double a = schedule.sqrt_alpha_bar(t);
    return detail::coefficient_pair{-schedule.sqrt_one_minus_alpha_bar(t) / a, 1.0 / a};
  });
}

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
