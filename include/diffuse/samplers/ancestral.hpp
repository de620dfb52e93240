#pragma once
/// \file
/// ddpm_sampler: the DDPM ancestral step (Ho et al.; improved-diffusion's respaced chains), SPEC §6.

#include <cmath>
#include <span>
#include <type_traits>
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
  /// Raise a [diffuse.numeric] error naming the step, its timestep and the buffer (model output or
  /// sampler state) when a step meets a NaN or an Inf. The check rides on the step's single pass over
  /// memory (docs/performance.md measures its cost); false lets non-finite values through.
  bool check_finite = true;
  /// false runs the scalar reference loop instead of the xsimd one: the same operations element by
  /// element, hence the same bits; for tests and benchmarks.
  bool vectorize = true;
  /// Reproduce diffusers' DDPMScheduler instead of the correct chain (docs/howto/solvers.md lists the
  /// differences): the last position adds noise whenever its t > 0 (trailing or offset-leading lists),
  /// with ᾱ_p = 1, so σ² = max(β̃, 1e-20) = 1e-20 for fixed_small and β' = 1 − ᾱ_t for fixed_large; and
  /// learned_range's lower end is log max(β̃, 1e-20), unclipped. Pair it with diffusers_float32_schedule()
  /// (diffusers_exact.hpp) for diffusers' float32 tables.
  bool diffusers_exact = false;
};

/// The coefficients of one step, computed once in double when the sampler is built.
struct ancestral_step_coefficients {
  int t = 0;                  ///< timestep of this position
  int prev = -1;              ///< the next list entry, −1 after the last
  double alpha_bar_t = 0;     ///< ᾱ_t
  double c1 = 0;              ///< posterior mean coefficient of x̂0: μ̃ = c1·x̂0 + c2·x_t
  double c2 = 0;              ///< posterior mean coefficient of x_t: μ̃ = c1·x̂0 + c2·x_t
  double variance = 0;        ///< σ² of the fixed variance types (0 for the learned ones)
  double posterior_variance = 0;  ///< β̃ of the true posterior q(x_p | x_t, x_0) (0 at the last position)
  bool noisy = false;         ///< whether the step adds σ·z: all but the last position (diffusers_exact: also a last t > 0)
  double log_variance = 0;    ///< clipped log β̃ of this position (SPEC §11)
  double log_beta = 0;        ///< log β'_t, the upper end of learned_range
  /// Linear maps from (x_t, model output) to x̂0 and ε̂ at ᾱ_t, for the configured prediction type.
  detail::prediction_coefficients pred;
};

/// Where ddpm_sampler::mean_variance and ddpm_sampler::posterior_mean_variance write a Gaussian's
/// parameters, elementwise, each of the sample's shape; an empty span skips that output.
template <Real Scalar>
struct gaussian_buffers {
  std::span<Scalar> mean = {};          ///< the mean
  std::span<Scalar> variance = {};      ///< σ² (0 where the step adds no noise, for the fixed types)
  std::span<Scalar> log_variance = {};  ///< log σ² (clipped: finite at the last position too, SPEC §11)
  std::span<Scalar> x0 = {};            ///< x̂0 after post-processing (mean_variance only)
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
    detail::refuse_flow_prediction(options_.prediction, "The DDPM sampler");
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
      s.posterior_variance = s.prev >= 0 ? post.variance : 0.0;
      const bool exact = options_.diffusers_exact;
      s.noisy = s.prev >= 0 || (exact && s.t > 0);
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
      // diffusers clamps β̃ at 1e-20 before every use and never clips its log.
      if (exact) s.log_variance = std::log(std::max(post.variance, 1e-20));
      switch (options_.variance) {
        case variance_type::fixed_small: s.variance = exact ? std::max(post.variance, 1e-20) : s.prev >= 0 ? post.variance : 0.0; break;
        // guided-diffusion's fixed_large puts the clipped β̃ at the last position instead of β'.
        case variance_type::fixed_large:
          s.variance = s.prev >= 0 || exact ? post.beta_prime : std::exp(s.log_variance);
          break;
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
  /// Whether the step at position k adds noise (all but the last position; with diffusers_exact also a
  /// last position whose t > 0).
  bool adds_noise(int k) const { return coefficients(k).noisy; }
  /// The options it was built with.
  const ddpm_options& options() const noexcept { return options_; }
  /// The precomputed coefficients of position k.
  const ancestral_step_coefficients& coefficients(int k) const {
    if (k < 0 || k >= num_steps())
      detail::fail(error_kind::argument, "step index ", k, " is out of range; expected 0 <= k < ", num_steps());
    return steps_[static_cast<std::size_t>(k)];
  }

  /// One ancestral step at position k.
  ///
  /// Without an x̂0 hook, dynamic thresholding or a learned variance the step is one pass over memory: it
  /// reads x_t, the model output and the noise, and writes x_prev (and x0 when given). Otherwise it makes
  /// a conversion pass and an update pass per item (the learned-variance update, with its log and exp per
  /// element, is scalar).
  /// \param k       position in the timestep list, 0 <= k < num_steps()
  /// \param io      the step's buffers: x_t, model output (2C channels for a learned variance) and x_prev,
  ///                plus the noise (a buffer or generated) when adds_noise(k), optionally x0 and a guidance
  ///                gradient
  /// \param shape   batch, channels and spatial size every buffer must match
  /// \param x0_hook optional callable `hook(std::span<Scalar> x0, std::size_t item, int t)` that may edit
  ///                one batch item's x̂0 in place before clipping or thresholding (e.g. inpainting masks);
  ///                with OpenMP it may run for several items at once.
  /// \throws diffuse::error on buffers that do not match `shape`, and with `check_finite` on a NaN or Inf
  ///         in the model output or the state (x_prev is then unspecified).
  template <Real Scalar, class X0Hook = no_x0_hook>
  void step(int k, const step_buffers<Scalar>& io, const sample_shape& shape, X0Hook&& x0_hook = {}) const {
    const auto& s = coefficients(k);
    const bool noisy = s.noisy;
    const std::size_t factor = output_factor();
    detail::check_step_buffers(io, shape, factor, noisy);
    const std::size_t per_item = shape.channels * shape.spatial;
    const bool learned = is_learned(options_.variance);
    const auto px = static_cast<Scalar>(s.pred.x0_from_x), po = static_cast<Scalar>(s.pred.x0_from_out);
    const auto c1 = static_cast<Scalar>(s.c1), c2 = static_cast<Scalar>(s.c2);
    const auto sigma_fixed = static_cast<Scalar>(std::sqrt(s.variance));
    const auto var_fixed = static_cast<Scalar>(s.variance);
    const bool previous_x = options_.prediction == prediction_type::previous_x;
    const auto& proc = options_.processing;
    const bool clip = !proc.threshold && proc.clip_range;  // thresholding replaces clipping
    const auto r = clip ? static_cast<Scalar>(*proc.clip_range) : Scalar(0);
    const bool check = options_.check_finite, vectorize = options_.vectorize;
    const bool guided = !io.guidance_gradient.empty();

    // The buffers of one item (or of the whole batch in the fused pass), indexed from 0.
    struct pointers {
      const Scalar *x, *out, *z, *g;
      Scalar *xp, *x0, *x0_out;
    };
    // x̂0 -> μ̃ -> x_prev for one element or vector. `bound` > 0 is the dynamic-thresholding s. With
    // fixed_flags the options are constants and the plain pass has no guidance and no x̂0 output.
    const auto update = [&](const pointers q, bool x0_ready, Scalar bound, auto flags) {
      using F = decltype(flags);
      const bool is_noisy = F::known ? F::noisy : noisy, is_checked = F::known ? F::check : check;
      const bool is_clipped = F::known ? F::clip : clip, is_guided = !F::known && guided;
      const bool is_ready = !F::known && x0_ready, has_bound = !F::known && bound > Scalar(0);
      Scalar* const x0_out = F::known ? nullptr : q.x0_out;
      return [=]<class V>(std::size_t j, detail::finite_probe<V>& p) {
        const V xv = detail::load<V>(q.x + j), ov = detail::load<V>(q.out + j);
        V x0 = is_ready ? detail::load<V>(q.x0 + j) : V(px) * xv + V(po) * ov;
        if (is_checked && !is_ready) {
          p.model += ov - ov;
          p.state += xv - xv;
        }
        if (has_bound) {
          x0 = detail::clamp_like_std(x0, V(-bound), V(bound)) / V(bound);
        } else if (is_clipped) {
          x0 = detail::clamp_like_std(x0, V(-r), V(r));
        }
        if (x0_out) detail::store(x0_out + j, x0);
        V mean = previous_x ? ov : V(c1) * x0 + V(c2) * xv;
        if (is_guided) mean = mean + V(var_fixed) * detail::load<V>(q.g + j);
        if (is_noisy) mean = mean + V(sigma_fixed) * detail::load<V>(q.z + j);
        if (is_checked) p.result += mean - mean;
        detail::store(q.xp + j, mean);
      };
    };
    // The learned-variance update: σ² from the model's extra channels, one element at a time.
    const auto learned_update = [&](const pointers q, Scalar bound) {
      const Scalar* var_out = q.out + per_item;
      return [=, this](std::size_t j, detail::finite_probe<Scalar>& p) {
        Scalar x0 = q.x0[j];
        if (bound > Scalar(0)) {
          x0 = detail::clamp_like_std(x0, -bound, bound) / bound;
        } else if (clip) {
          x0 = detail::clamp_like_std(x0, -r, r);
        }
        if (q.x0_out) q.x0_out[j] = x0;
        Scalar mean = previous_x ? q.out[j] : c1 * x0 + c2 * q.x[j];
        const double lv = learned_log_variance(s, static_cast<double>(var_out[j]));
        const auto var = static_cast<Scalar>(std::exp(lv));
        const auto sigma = static_cast<Scalar>(std::exp(0.5 * lv));
        if (guided) mean += var * q.g[j];
        if (noisy) mean = mean + sigma * q.z[j];
        if (check) {
          p.model += var_out[j] - var_out[j];
          p.result += mean - mean;
        }
        q.xp[j] = mean;
      };
    };
    // The pointers from element `base` on (in the fused pass, base may be inside an item).
    const auto at = [&](std::size_t base, Scalar* x0) {
      return pointers{io.x_t.data() + base,
                      io.model_output.data() + base * factor,
                      noisy && !io.noise.empty() ? io.noise.data() + base : nullptr,
                      guided ? io.guidance_gradient.data() + base : nullptr,
                      io.x_prev.data() + base,
                      x0,
                      io.x0.empty() ? nullptr : io.x0.data() + base};
    };

    bool bad = false;
    if (std::is_same_v<std::remove_cvref_t<X0Hook>, no_x0_hook> && !proc.threshold && !learned) {
      const bool plain = !guided && io.x0.empty();
      bad = detail::with_flags(plain, noisy, check, clip, [&](auto flags) {
              return detail::run_fused_pass<Scalar>(shape.numel(), per_item, vectorize, noisy, io.generated, at,
                                                    [&](const pointers& q) { return update(q, false, Scalar(0), flags); });
            }) != 0;
    } else {
      bad = detail::for_each_item(shape.batch, per_item, [&](std::size_t i) -> int {
              const std::span<Scalar> x0 = io.x0.empty() ? detail::thread_scratch<Scalar, detail::scratch_slot::x0>(per_item)
                                                         : io.x0.subspan(i * per_item, per_item);
              pointers q = at(i * per_item, x0.data());
              if (noisy && io.generated.generator) q.z = detail::generated_item_noise<Scalar>(io.generated, per_item, i * per_item);
              const int mask = detail::run_range<Scalar>(0, per_item, vectorize, [&]<class V>(std::size_t j, detail::finite_probe<V>& p) {
                const V xv = detail::load<V>(q.x + j), ov = detail::load<V>(q.out + j);
                if (check) {
                  p.model += ov - ov;
                  p.state += xv - xv;
                }
                detail::store(q.x0 + j, V(px) * xv + V(po) * ov);
              });
              if (mask != 0) return mask;
              x0_hook(x0, i, s.t);
              const Scalar bound = proc.threshold ? detail::threshold_bound<Scalar>(x0, *proc.threshold) : Scalar(0);
              if (learned) return detail::run_range<Scalar, false>(0, per_item, false, learned_update(q, bound));
              return detail::run_range<Scalar>(0, per_item, vectorize, update(q, true, bound, detail::runtime_flags{}));
            }) < shape.batch;
    }
    if (bad) detail::fail_non_finite<Scalar>(k, s.t, io.model_output, factor, io.x_t, io.x_prev, shape);
  }

  /// The model's reverse distribution p(x_p | x_t) at position k, elementwise: guided-diffusion's
  /// p_mean_variance on this sampler's chain, for the variational bound (likelihood.hpp).
  ///
  /// The mean is the one step() uses before noise is added (c1·x̂0 + c2·x_t from the post-processed x̂0,
  /// or the model output for previous_x); σ² and log σ² are those of the variance type, per element for
  /// the learned types (learned_range: ((v+1)/2)·log β' + (1 − (v+1)/2)·log β̃ clipped). At the last
  /// position fixed_small gives σ² = 0 with the clipped log, fixed_large the clipped β̃ (SPEC §11).
  /// \param k            position in the timestep list
  /// \param x_t          the sample at timestep(k)
  /// \param model_output the model's output at timestep(k) (2C channels for a learned variance)
  /// \param shape        batch, channels and spatial size of x_t
  /// \param out          where to write; empty spans are skipped
  /// \param x0_hook      the same optional x̂0 hook step() takes
  /// \throws diffuse::error on buffers that do not match `shape` or a position out of range.
  template <Real Scalar, class X0Hook = no_x0_hook>
  void mean_variance(int k, std::span<const Scalar> x_t, std::span<const Scalar> model_output, const sample_shape& shape,
                     const gaussian_buffers<Scalar>& out, X0Hook&& x0_hook = {}) const {
    const auto& s = coefficients(k);
    const std::size_t factor = output_factor();
    detail::check_size("x_t", x_t.size(), shape);
    if (model_output.size() / factor != shape.numel() || model_output.size() % factor != 0)
      detail::fail(error_kind::shape, "the model output has ", model_output.size(), " elements; expected ", factor,
                   " x ", shape.numel(), factor == 2 ? " (2C channels: a learned variance)" : "");
    check_outputs(out, shape);
    const std::size_t per_item = shape.per_sample();
    const auto px = static_cast<Scalar>(s.pred.x0_from_x), po = static_cast<Scalar>(s.pred.x0_from_out);
    const auto c1 = static_cast<Scalar>(s.c1), c2 = static_cast<Scalar>(s.c2);
    const auto& proc = options_.processing;
    const bool clip = !proc.threshold && proc.clip_range;
    const auto r = clip ? static_cast<Scalar>(*proc.clip_range) : Scalar(0);
    const bool learned = is_learned(options_.variance);
    // The fixed types: σ² as step() uses it, and its log (log β' away from the last position for fixed_large).
    const double fixed_log = options_.variance == variance_type::fixed_large && (s.prev >= 0 || options_.diffusers_exact)
                                 ? s.log_beta
                                 : s.log_variance;
    for (std::size_t i = 0; i < shape.batch; ++i) {
      const std::size_t base = i * per_item;
      const Scalar* x = x_t.data() + base;
      const Scalar* o = model_output.data() + base * factor;
      const std::span<Scalar> x0 = out.x0.empty() ? detail::thread_scratch<Scalar, detail::scratch_slot::x0>(per_item)
                                                  : out.x0.subspan(base, per_item);
      for (std::size_t j = 0; j < per_item; ++j) x0[j] = px * x[j] + po * o[j];
      x0_hook(x0, i, s.t);
      const Scalar bound = proc.threshold ? detail::threshold_bound<Scalar>(x0, *proc.threshold) : Scalar(0);
      for (std::size_t j = 0; j < per_item; ++j) {
        if (bound > Scalar(0)) {
          x0[j] = detail::clamp_like_std(x0[j], -bound, bound) / bound;
        } else if (clip) {
          x0[j] = detail::clamp_like_std(x0[j], -r, r);
        }
        if (!out.mean.empty())
          out.mean[base + j] = options_.prediction == prediction_type::previous_x ? o[j] : c1 * x0[j] + c2 * x[j];
        const double lv = learned ? learned_log_variance(s, static_cast<double>(o[per_item + j])) : fixed_log;
        if (!out.variance.empty()) out.variance[base + j] = static_cast<Scalar>(learned ? std::exp(lv) : s.variance);
        if (!out.log_variance.empty()) out.log_variance[base + j] = static_cast<Scalar>(lv);
      }
    }
  }

  /// The true posterior q(x_p | x_t, x_0) of position k, elementwise: mean c1·x0 + c2·x_t, variance β̃ and
  /// its clipped log (at the last position, where β̃ = 0, the log of the step before it, SPEC §11).
  /// With mean_variance and normal_kl it gives the KL term of the variational bound at any position.
  /// \param k     position in the timestep list
  /// \param x0    the clean sample
  /// \param x_t   the sample at timestep(k)
  /// \param shape batch, channels and spatial size of x0 and x_t
  /// \param out   where to write (its x0 member is ignored); empty spans are skipped
  /// \throws diffuse::error on buffers that do not match `shape` or a position out of range.
  template <Real Scalar>
  void posterior_mean_variance(int k, std::span<const Scalar> x0, std::span<const Scalar> x_t, const sample_shape& shape,
                               const gaussian_buffers<Scalar>& out) const {
    const auto& s = coefficients(k);
    detail::check_size("x0", x0.size(), shape);
    detail::check_size("x_t", x_t.size(), shape);
    check_outputs(out, shape);
    const auto c1 = static_cast<Scalar>(s.c1), c2 = static_cast<Scalar>(s.c2);
    const auto v = static_cast<Scalar>(s.posterior_variance), lv = static_cast<Scalar>(s.log_variance);
    for (std::size_t j = 0; j < shape.numel(); ++j) {
      if (!out.mean.empty()) out.mean[j] = c1 * x0[j] + c2 * x_t[j];
      if (!out.variance.empty()) out.variance[j] = v;
      if (!out.log_variance.empty()) out.log_variance[j] = lv;
    }
  }

 private:
  static bool is_learned(variance_type v) noexcept {
    return v == variance_type::learned || v == variance_type::learned_log || v == variance_type::learned_range;
  }
  template <class Scalar>
  static void check_outputs(const gaussian_buffers<Scalar>& out, const sample_shape& shape) {
    if (!out.mean.empty()) detail::check_size("the mean", out.mean.size(), shape);
    if (!out.variance.empty()) detail::check_size("the variance", out.variance.size(), shape);
    if (!out.log_variance.empty()) detail::check_size("the log variance", out.log_variance.size(), shape);
    if (!out.x0.empty()) detail::check_size("x0", out.x0.size(), shape);
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
