#pragma once
/// \file
/// ddpm_sampler: the DDPM ancestral step (Ho et al.; improved-diffusion's respaced chains), SPEC §6.

#include <cmath>
#include <span>
#include <vector>

#include "diffuse/detail/step_kernel.hpp"
#include "diffuse/model.hpp"
#include "diffuse/posterior.hpp"
#include "diffuse/schedule.hpp"
#include "diffuse/shape.hpp"
#include "diffuse/step_buffers.hpp"
#include "diffuse/timesteps.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// Options of the ancestral sampler.
struct ddpm_options {
  prediction_type prediction = prediction_type::epsilon;  ///< what the model predicts
  variance_type variance = variance_type::fixed_small;    ///< where σ² comes from
  x0_processing processing = {};                          ///< clipping or dynamic thresholding of x̂0
};

/// The coefficients of one step, computed once in double when the sampler is built.
struct ancestral_step_coefficients {
  int t = 0;                  ///< timestep of this position
  int prev = -1;              ///< the next list entry, −1 after the last
  double alpha_bar_t = 0;     ///< ᾱ_t
  double c1 = 0, c2 = 0;      ///< posterior mean coefficients μ̃ = c1·x̂0 + c2·x_t
  double variance = 0;        ///< σ² of the fixed variance types (0 for the learned ones)
  double log_variance = 0;    ///< clipped log β̃ of this position (SPEC §11)
  double log_beta = 0;        ///< log β'_t, the upper end of learned_range
  detail::prediction_coefficients pred;
};

/// DDPM ancestral sampling over any descending timestep list: x_p = μ̃(x̂0, x_t) + σ·z, no noise on the
/// last position of the list (whatever its t).
///
/// The sampler holds only double coefficients; `step` works on float or double buffers.
///
/// Example:
/// \code
/// diffuse::ddpm_sampler sampler(schedule, diffuse::make_timesteps(1000, 50, diffuse::timestep_spacing::trailing),
///                               {.prediction = diffuse::prediction_type::epsilon});
/// for (int k = 0; k < sampler.num_steps(); ++k) {
///   net(x, sampler.timestep(k), out);
///   gen.fill<float>(noise, 0, k + 1);
///   sampler.step<float>(k, {.x_t = x, .model_output = out, .noise = noise, .x_prev = x}, shape);
/// }
/// \endcode
class ddpm_sampler {
 public:
  /// \param schedule  the training noise schedule
  /// \param timesteps a strictly descending list of training timesteps (see timesteps.hpp)
  /// \param options   prediction type, variance type, x̂0 post-processing
  /// \throws diffuse::error when the list does not fit the schedule, or when an epsilon model would have
  ///         to give x̂0 at ᾱ_t = 0 (zero-terminal-SNR schedules: use v or x0 prediction).
  ddpm_sampler(const noise_schedule& schedule, std::vector<int> timesteps, ddpm_options options = {})
      : options_(options), timesteps_(custom_timesteps(schedule.size(), std::move(timesteps))) {
    options_.processing.validate();
    const int n = static_cast<int>(timesteps_.size());
    steps_.resize(timesteps_.size());
    for (int k = 0; k < n; ++k) {
      auto& s = steps_[static_cast<std::size_t>(k)];
      s.t = timesteps_[static_cast<std::size_t>(k)];
      s.prev = k + 1 < n ? timesteps_[static_cast<std::size_t>(k + 1)] : -1;
      const posterior_coefficients post = posterior(schedule, s.t, s.prev);
      s.alpha_bar_t = post.alpha_bar_t;
      s.c1 = post.c1;
      s.c2 = post.c2;
      if (options_.prediction == prediction_type::epsilon && s.alpha_bar_t <= 0.0)
        detail::fail(error_kind::numeric, "epsilon prediction cannot give x0 at step ", k, " (t = ", s.t,
                     ") where alpha_bar = 0 (a zero-terminal-SNR schedule); expected v_prediction or sample "
                     "prediction with such a schedule");
      s.pred = detail::make_prediction_coefficients(options_.prediction, s.alpha_bar_t, s.c1, s.c2);
      // Clipped log variance: at the last position, where β̃ = 0, the value of the step before it.
      if (s.prev >= 0) {
        s.log_variance = post.log_variance_clipped;
      } else if (n >= 2) {
        s.log_variance = std::log(posterior(schedule, timesteps_[static_cast<std::size_t>(n - 2)], s.t).variance);
      } else {
        s.log_variance = schedule.posterior_log_variance_clipped(s.t);
      }
      s.log_beta = std::log(post.beta_prime);
      switch (options_.variance) {
        case variance_type::fixed_small: s.variance = s.prev >= 0 ? post.variance : 0.0; break;
        // guided-diffusion's fixed_large puts the clipped β̃ at the last position instead of β'.
        case variance_type::fixed_large: s.variance = s.prev >= 0 ? post.beta_prime : std::exp(s.log_variance); break;
        default: s.variance = 0.0; break;
      }
    }
  }

  /// Number of positions in the timestep list.
  int num_steps() const noexcept { return static_cast<int>(timesteps_.size()); }
  /// The training timestep at position k.
  int timestep(int k) const { return coefficients(k).t; }
  /// The descending timestep list.
  std::span<const int> timesteps() const noexcept { return timesteps_; }
  /// 2 when the model outputs 2C channels (learned variance types), else 1.
  std::size_t output_factor() const noexcept { return is_learned(options_.variance) ? 2 : 1; }
  /// Whether the step at position k adds noise (all but the last position).
  bool adds_noise(int k) const { return coefficients(k).prev >= 0; }
  /// The options it was built with.
  const ddpm_options& options() const noexcept { return options_; }
  /// The precomputed coefficients of position k.
  const ancestral_step_coefficients& coefficients(int k) const {
    if (k < 0 || k >= num_steps())
      detail::fail(error_kind::argument, "step index ", k, " is out of range; expected 0 <= k < ", num_steps());
    return steps_[static_cast<std::size_t>(k)];
  }

  /// One ancestral step at position k.
  /// \throws diffuse::error on buffers that do not match `shape`.
  /// \param x0_hook optional callable `hook(std::span<Scalar> x0, std::size_t item, int t)` that may edit
  ///                one batch item's x̂0 in place before clipping or thresholding (e.g. inpainting masks);
  ///                with OpenMP it may run for several items at once.
  template <Real Scalar, class X0Hook = no_x0_hook>
  void step(int k, const step_buffers<Scalar>& io, const sample_shape& shape, X0Hook&& x0_hook = {}) const {
    const auto& s = coefficients(k);
    const bool noisy = s.prev >= 0;
    detail::check_step_buffers(io, shape, output_factor(), noisy);
    const std::size_t per_item = shape.channels * shape.spatial;
    const bool learned = is_learned(options_.variance);
    const auto px = static_cast<Scalar>(s.pred.x0_from_x), po = static_cast<Scalar>(s.pred.x0_from_out);
    const auto c1 = static_cast<Scalar>(s.c1), c2 = static_cast<Scalar>(s.c2);
    const auto sigma_fixed = static_cast<Scalar>(std::sqrt(s.variance));
    const auto var_fixed = static_cast<Scalar>(s.variance);
    const bool previous_x = options_.prediction == prediction_type::previous_x;

    detail::for_each_item(shape.batch, per_item, [&](std::size_t i) {
      const std::size_t base = i * per_item;
      const Scalar* x = io.x_t.data() + base;
      const Scalar* out = io.model_output.data() + i * per_item * output_factor();
      const Scalar* var_out = learned ? out + per_item : nullptr;
      const std::span<Scalar> x0 = io.x0.empty() ? detail::thread_scratch<Scalar, detail::scratch_slot::x0>(per_item)
                                                 : io.x0.subspan(base, per_item);
      for (std::size_t j = 0; j < per_item; ++j) x0[j] = px * x[j] + po * out[j];
      x0_hook(x0, i, s.t);
      detail::process_x0_item<Scalar>(x0, options_.processing);

      Scalar* xp = io.x_prev.data() + base;
      const Scalar* z = noisy ? io.noise.data() + base : nullptr;
      const Scalar* g = io.guidance_gradient.empty() ? nullptr : io.guidance_gradient.data() + base;
      for (std::size_t j = 0; j < per_item; ++j) {
        Scalar mean = previous_x ? out[j] : c1 * x0[j] + c2 * x[j];
        Scalar sigma = sigma_fixed, var = var_fixed;
        if (learned) {
          const double lv = learned_log_variance(s, static_cast<double>(var_out[j]));
          var = static_cast<Scalar>(std::exp(lv));
          sigma = static_cast<Scalar>(std::exp(0.5 * lv));
        }
        if (g) mean += var * g[j];
        xp[j] = noisy ? mean + sigma * z[j] : mean;
      }
    });
  }

 private:
  static bool is_learned(variance_type v) noexcept {
    return v == variance_type::learned || v == variance_type::learned_log || v == variance_type::learned_range;
  }
  double learned_log_variance(const ancestral_step_coefficients& s, double v) const {
    switch (options_.variance) {
      case variance_type::learned: return std::log(v);  // diffusers' "learned": the model gives σ² itself
      case variance_type::learned_log: return v;        // guided-diffusion's LEARNED: the model gives log σ²
      default: {                                        // learned_range: v interpolates the log variance
        const double frac = (v + 1.0) / 2.0;
        return frac * s.log_beta + (1.0 - frac) * s.log_variance;
      }
    }
  }

  ddpm_options options_;
  std::vector<int> timesteps_;
  std::vector<ancestral_step_coefficients> steps_;
};

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
