#pragma once
/// \file
/// lcm_sampler: latent consistency model sampling (Luo et al. 2023) as diffusers' LCMScheduler computes
/// it, on the solver core.
///
/// Timesteps: with k = ⌊T/N_orig⌋ (N_orig = original_inference_steps), the distillation grid is
/// N_orig·k − 1, (N_orig − 1)·k − 1, …, k − 1, and N steps take its entries ⌊i·N_orig/N⌋, i = 0 … N − 1
/// (numpy's linspace(0, N_orig, N, endpoint=False) floored); or a custom descending list. Step k at t = t_k,
/// with t' = t_{k+1} (t itself on the last step), ᾱ = ᾱ_t:
///
///     x̂0 from the model output (ε: (x − √(1 − ᾱ)·ε̂)/√ᾱ; v: √ᾱ·x − √(1 − ᾱ)·v̂; sample: the output),
///        then thresholded, or else clipped to [−r, r] (thresholding / clip_sample);
///     boundary condition at s = t·timestep_scaling, σ_d = 0.5:
///        c_skip = σ_d²/(s² + σ_d²),  c_out = s/√(s² + σ_d²);   denoised = c_out·x̂0 + c_skip·x;
///     x' = √ᾱ_t'·denoised + √(1 − ᾱ_t')·z   (every step but the last, with fresh noise z);
///     x' = denoised                          (the last step)
///
/// The step is the first-order form of dpm_solver_sampler's kernel (x' = a·x + c0·x̂0 + noise·z). The
/// state is the VP sample x_t; the model gets it unscaled with the integer timestep. diffusers'
/// set_alpha_to_one (final_alpha_cumprod), steps_offset and timestep_spacing do not change LCM's maths.

#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "diffuse/error.hpp"
#include "diffuse/posterior.hpp"
#include "diffuse/samplers/dpm_solver.hpp"
#include "diffuse/samplers/solver.hpp"
#include "diffuse/schedule.hpp"
#include "diffuse/timesteps.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// Options of the LCM solver, named as LCMScheduler's config keys.
struct lcm_options {
  int original_inference_steps = 50;                      ///< N_orig: the distillation grid's size
  double timestep_scaling = 10.0;                         ///< s = t·timestep_scaling in the boundary condition
  prediction_type prediction = prediction_type::epsilon;  ///< epsilon, sample or v_prediction
  std::optional<double> clip_sample_range = std::nullopt; ///< clip_sample: clamp x̂0 to [−r, r]
  std::optional<dynamic_threshold> threshold = std::nullopt;  ///< thresholding (replaces clipping when both are set)
  bool check_finite = true;                               ///< a [diffuse.numeric] error on NaN or Inf
  bool vectorize = true;                                  ///< false: the scalar reference loop (same bits)
};

/// LCMScheduler's set_timesteps(N) timesteps for T training steps and N_orig original steps.
/// \throws diffuse::error for N_orig outside [1, T], N < 1 or N > N_orig (diffusers refuses these).
inline std::vector<int> lcm_timesteps(int num_train_timesteps, int num_inference_steps, int original_inference_steps = 50) {
  detail::check_train_timesteps(num_train_timesteps);
  if (original_inference_steps < 1 || original_inference_steps > num_train_timesteps)
    detail::fail(error_kind::timesteps, "original_inference_steps = ", original_inference_steps, "; expected 1 <= original_inference_steps <= ",
                 num_train_timesteps, " (num_train_timesteps)");
  if (num_inference_steps < 1 || num_inference_steps > original_inference_steps)
    detail::fail(error_kind::timesteps, "num_inference_steps = ", num_inference_steps, "; expected 1 <= N <= original_inference_steps = ",
                 original_inference_steps, " (LCM's steps are a subset of the distillation grid)");
  const int k = num_train_timesteps / original_inference_steps;
  const double step = static_cast<double>(original_inference_steps) / num_inference_steps;  // numpy's linspace step
  std::vector<int> out;
  for (int i = 0; i < num_inference_steps; ++i) {
    const auto j = static_cast<int>(std::floor(i * step));      // index into the descending grid
    out.push_back((original_inference_steps - j) * k - 1);
  }
  return out;
}

/// LCM (LCMScheduler): multi-step consistency sampling with fresh noise between steps.
///
/// Example:
/// \code
/// const diffuse::lcm_sampler solver(diffuse::noise_schedule::scaled_linear(1000), 4);
/// diffuse::fill_initial_noise<float>(x, shape, 42);
/// diffuse::solve(solver, model, std::span<float>(x), shape, {.seed = 42});
/// \endcode
class lcm_sampler {
 public:
  /// The model time is an integer timestep.
  static constexpr bool fractional_time = false;

  /// The solver of set_timesteps(N).
  /// \throws diffuse::error as lcm_timesteps, and for invalid options.
  lcm_sampler(const noise_schedule& schedule, int num_inference_steps, lcm_options options = {})
      : lcm_sampler(schedule, lcm_timesteps(schedule.size(), num_inference_steps, options.original_inference_steps), options) {}

  /// The solver of set_timesteps(timesteps=…): a custom strictly descending list in [0, T).
  /// \throws diffuse::error for a list that is not strictly descending within [0, T), or invalid options.
  lcm_sampler(const noise_schedule& schedule, std::vector<int> timesteps, lcm_options options)
      : options_(options), timesteps_(custom_timesteps(schedule.size(), std::move(timesteps))), id_(detail::next_solver_id()) {
    detail::refuse_flow_prediction(options_.prediction, "The LCM solver");
    if (options_.prediction == prediction_type::previous_x)
      detail::fail(error_kind::sampler, "the LCM solver needs a model that predicts epsilon, sample or v_prediction; got previous_x");
    if (!(options_.timestep_scaling >= 0.0) || !std::isfinite(options_.timestep_scaling))
      detail::fail(error_kind::sampler, "LCM timestep_scaling = ", options_.timestep_scaling, "; expected a finite value >= 0");
    x0_processing{.clip_range = options_.clip_sample_range, .threshold = options_.threshold}.validate();
    for (int t : timesteps_) alpha_bar_.push_back(schedule.alpha_bar(t));
  }

  /// Number of positions (model evaluations).
  int num_steps() const noexcept { return static_cast<int>(timesteps_.size()); }
  /// The integer timestep the model is given at position k.
  int timestep(int k) const {
    detail::check_position(k, num_steps());
    return timesteps_[static_cast<std::size_t>(k)];
  }
  /// timestep(k) as a double.
  double model_time(int k) const { return static_cast<double>(timestep(k)); }
  /// The VP σ = √((1 − ᾱ)/ᾱ) of the state at position k; sigma(num_steps()) = 0 (the result is denoised).
  double sigma(int k) const {
    if (k == num_steps()) return 0.0;
    detail::check_position(k, num_steps());
    const double ab = alpha_bar_[static_cast<std::size_t>(k)];
    return std::sqrt((1.0 - ab) / ab);
  }
  /// Always 1: the model sees the VP sample itself.
  double input_scale(int) const noexcept { return 1.0; }
  /// Always 1: the chain starts from standard normal noise.
  double initial_scale() const noexcept { return 1.0; }
  /// The state at position k is √ᾱ_t·x0 + √(1 − ᾱ_t)·ε.
  std::pair<double, double> noising(int k) const {
    detail::check_position(k, num_steps());
    const double ab = alpha_bar_[static_cast<std::size_t>(k)];
    return {std::sqrt(ab), std::sqrt(1.0 - ab)};
  }
  /// The options it was built with.
  const lcm_options& options() const noexcept { return options_; }
  /// This solver's identity, which its states remember.
  std::uint64_t id() const noexcept { return id_; }
  /// No history.
  std::size_t history_slots() const noexcept { return 0; }
  /// A state for this solver and shape.
  template <Real Scalar>
  solver_state<Scalar> make_state(const sample_shape& shape) const {
    return solver_state<Scalar>(id_, 0, shape);
  }
  /// Whether the step at k draws noise: every step but the last.
  bool adds_noise(int k) const { return k + 1 < num_steps(); }
  /// The boundary-condition scalings {c_skip, c_out} of position k.
  std::pair<double, double> boundary(int k) const {
    const double s = timestep(k) * options_.timestep_scaling, d2 = 0.25;
    return {d2 / (s * s + d2), s / std::sqrt(s * s + d2)};
  }

  /// One LCM step: one fused pass (two per item with thresholding).
  /// \param k     position, 0 <= k < num_steps(); with a state that has taken steps, the next position
  /// \param io x (the VP sample at t_k), the model output, x_next; noise (a buffer or generated) when
  ///           adds_noise(k); optionally x0, which receives the post-processed x̂0 (not `denoised`)
  /// \param shape the batch layout of the buffers
  /// \param state from make_state<Scalar>(shape), used for this chain only
  /// \throws diffuse::error on buffers that do not match `shape`, a foreign state, and non-finite values.
  template <Real Scalar>
  void step(int k, const solver_buffers<Scalar>& io, const sample_shape& shape, solver_state<Scalar>& state) const {
    detail::check_position(k, num_steps());
    state.check(id_, shape, k, "lcm_sampler");
    const bool noisy = adds_noise(k);
    detail::check_solver_buffers(io, shape, noisy);
    const double ab = alpha_bar_[static_cast<std::size_t>(k)];
    const auto [c_skip, c_out] = boundary(k);
    const double prev = noisy ? alpha_bar_[static_cast<std::size_t>(k) + 1] : 1.0;
    dpm_step_coefficients c;
    c.alpha_s = std::sqrt(ab);
    c.sigma_vp_s = std::sqrt(1.0 - ab);
    c.a = std::sqrt(prev) * c_skip;
    c.c0 = std::sqrt(prev) * c_out;
    c.noise = noisy ? std::sqrt(1.0 - prev) : 0.0;
    int conv = 1;  // ε: (x − √(1 − ᾱ)·ε̂)/√ᾱ
    if (options_.prediction == prediction_type::v_prediction) {
      conv = 2;
      c.x0_from_x = c.alpha_s;
      c.x0_from_out = -c.sigma_vp_s;
    } else if (options_.prediction == prediction_type::sample) {
      conv = 2;
      c.x0_from_out = 1.0;
    }
    const int mask = detail::dpm_step_pass<Scalar>({.c = c, .conversion = conv, .threshold = options_.threshold,
                                                    .clip = options_.threshold ? std::nullopt : options_.clip_sample_range,
                                                    .check = options_.check_finite, .vectorize = options_.vectorize},
                                                   io, shape, nullptr, nullptr, nullptr, noisy);
    if (mask != 0)
      detail::fail_non_finite<Scalar>(k, timestep(k), io.model_output, 1, io.x, std::span<const Scalar>(io.x_next), shape);
    state.advance(k);
  }

 private:
  lcm_options options_;
  std::vector<int> timesteps_;
  std::vector<double> alpha_bar_;
  std::uint64_t id_ = 0;
};

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
