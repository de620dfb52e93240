#pragma once
/// \file
/// euler_sampler and euler_ancestral_sampler: Karras et al.'s Euler step in σ space, as diffusers'
/// EulerDiscreteScheduler and EulerAncestralDiscreteScheduler compute it (SPEC §12).
///
/// The state is x = x_t/√ᾱ_t (= x0 + σ·ε), the model sees x/√(σ² + 1) (diffusers' scale_model_input)
/// and the chain starts from σ_max·z, or √(σ_max² + 1)·z with leading spacing (init_noise_sigma).
/// With x̂0 from the model output at σ (ε: x − σ̂·ε̂; v: −σ/√(σ² + 1)·v̂ + x/(σ² + 1); sample: the output):
///
///     Euler:           γ = min(s_churn/N, √2 − 1) when s_tmin ≤ σ ≤ s_tmax, else 0;  σ̂ = σ(γ + 1);
///                      x̂ = x + s_noise·√(σ̂² − σ²)·z  (only when γ > 0);
///                      d = (x̂ − x̂0)/σ̂;  x' = x̂ + d·(σ_next − σ̂)
///     Euler ancestral: σ_up = √(σ_next²(σ² − σ_next²)/σ²), σ_down = √(σ_next² − σ_up²);
///                      d = (x − x̂0)/σ;  x' = x + d·(σ_down − σ) + σ_up·z
///
/// As in diffusers, churn noise is added after the model call, to the sample the step updates (the
/// model saw the sample before it), and x̂0 for ε uses σ̂ while v uses σ. The model time is
/// fractional: a model for these solvers takes double t (FractionalDenoiser).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "diffuse/detail/step_kernel.hpp"
#include "diffuse/error.hpp"
#include "diffuse/posterior.hpp"
#include "diffuse/samplers/sigmas.hpp"
#include "diffuse/samplers/solver.hpp"
#include "diffuse/schedule.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// Options of the Euler solver (EulerDiscreteScheduler's config keys and step() arguments).
struct euler_options {
  prediction_type prediction = prediction_type::epsilon;  ///< epsilon, sample or v_prediction
  double s_churn = 0.0;        ///< stochasticity: γ = min(s_churn/N, √2 − 1) inside [s_tmin, s_tmax]
  double s_tmin = 0.0;         ///< lowest σ that gets churn
  double s_tmax = HUGE_VAL;    ///< highest σ that gets churn
  double s_noise = 1.0;        ///< scale of the churn noise
  /// timestep_type "continuous" (v-prediction only, as diffusers): the model time is 0.25·log σ_k.
  bool continuous_timesteps = false;
  bool check_finite = true;    ///< a [diffuse.numeric] error on NaN or Inf
  bool vectorize = true;       ///< false: the scalar reference loop (same bits)
};

namespace detail {

/// What an Euler step (with churn) needs besides its buffers; computed in double once per step.
struct euler_step_plan {
  double sigma_hat = 0;         ///< σ̂ = σ(γ + 1)
  double dt = 0;                ///< σ_next − σ̂
  double noise_scale = 1;       ///< s_noise
  double churn = 0;             ///< √(σ̂² − σ²): with s_noise, the factor of the churn noise
  double next_input_scale = 1;  ///< the factor of the next model input (next_model_input)
  bool check = true;            ///< report non-finite values in the mask
  bool vectorize = true;        ///< false: the scalar reference loop
};

/// The Euler step with churn, shared by euler_sampler and edm_euler_sampler: x̂ = x + s_noise·churn·z when
/// noisy; x̂0 = x0_of(x̂, out); x' = x̂ + (x̂ − x̂0)/σ̂·dt, in run_one_step_pass (which also stores x̂0 and the
/// next model input when asked, and raises the [diffuse.numeric] error of step k, model time t).
template <Real Scalar, class X0>
void euler_step_pass(int k, int t, const euler_step_plan& plan, const solver_buffers<Scalar>& io, const sample_shape& shape, bool noisy,
                     const X0& x0_of) {
  const auto sh = static_cast<Scalar>(plan.sigma_hat), dt = static_cast<Scalar>(plan.dt);
  const auto churn = static_cast<Scalar>(plan.noise_scale * plan.churn);
  run_one_step_pass<Scalar>(k, t, io, shape, noisy, plan.vectorize, plan.check, static_cast<Scalar>(plan.next_input_scale),
                            [=]<class V>(V xv, V ov, V z, auto noisy_c) {
    if constexpr (decltype(noisy_c)::value) xv = xv + z * V(churn);
    const V x0 = x0_of(xv, ov);
    return one_step_values<V>{x0, xv + (xv - x0) / V(sh) * V(dt)};
  });
}

/// What Euler and Euler ancestral share: the sigma list, the model-time and scaling rules.
class euler_family {
 public:
  /// The model time may be fractional (diffusers' Euler family interpolates t from log σ, unrounded).
  static constexpr bool fractional_time = true;
  /// Its steps fill solver_buffers::next_model_input (the next position's scaled input) in their pass.
  static constexpr bool writes_next_input = true;

  int num_steps() const noexcept { return static_cast<int>(list_.model_times.size()); }
  /// The fractional training time the model is given at position k.
  double model_time(int k) const {
    check_position(k, num_steps());
    return list_.model_times[static_cast<std::size_t>(k)];
  }
  /// σ at position k; sigma(num_steps()) is where the chain ends.
  double sigma(int k) const { return list_.sigmas.at(static_cast<std::size_t>(k)); }
  const sigma_list& sigmas() const noexcept { return list_; }
  /// The state at position k is x0 + σ_k·ε (diffusers' add_noise): {1, σ_k}.
  std::pair<double, double> noising(int k) const { return {1.0, sigma(k)}; }
  /// 1/√(σ_k² + 1): diffusers' scale_model_input.
  double input_scale(int k) const { return 1.0 / std::sqrt(sigma(k) * sigma(k) + 1.0); }
  /// diffusers' init_noise_sigma: σ_max, or √(σ_max² + 1) with leading spacing.
  double initial_scale() const noexcept { return initial_scale_; }
  std::uint64_t id() const noexcept { return id_; }
  std::size_t history_slots() const noexcept { return 0; }
  template <Real Scalar>
  solver_state<Scalar> make_state(const sample_shape& shape) const {
    return solver_state<Scalar>(id_, 0, shape);
  }

 protected:
  euler_family(sigma_list list, bool leading, prediction_type prediction) : list_(std::move(list)), id_(next_solver_id()) {
    refuse_flow_prediction(prediction, "The Euler solvers (euler_sampler, euler_ancestral_sampler)");
    if (list_.flow)
      fail(error_kind::sampler, "the Euler solvers with a flow sigma list; expected VP sigmas (flow sigmas serve DPM-Solver++ and UniPC; "
                                "flow_euler_sampler integrates flow models)");
    if (prediction == prediction_type::previous_x)
      fail(error_kind::sampler, "the Euler solvers need a model that predicts epsilon, sample or v_prediction; got previous_x");
    const std::size_t n = list_.model_times.size();
    if (n == 0 || list_.sigmas.size() != n + 1)
      fail(error_kind::timesteps, "a sigma list of ", list_.sigmas.size(), " sigmas and ", n, " model times; expected N >= 1 model times and N + 1 sigmas");
    for (std::size_t i = 0; i < list_.sigmas.size(); ++i) {
      const double s = list_.sigmas[i];
      if (!valid_list_sigma(list_.sigmas, i))
        fail(error_kind::timesteps, "sigma ", i, " = ", s, " of the list; expected finite sigmas, strictly decreasing (the final one "
                                    "may repeat the last), > 0 except the final one");
    }
    const double smax = *std::max_element(list_.sigmas.begin(), list_.sigmas.end());
    initial_scale_ = leading ? std::sqrt(smax * smax + 1.0) : smax;
  }
  sigma_list list_;
  double initial_scale_ = 1.0;
  std::uint64_t id_ = 0;
};

}  // namespace detail

/// Euler (EulerDiscreteScheduler), with optional churn.
///
/// Example:
/// \code
/// const diffuse::euler_sampler solver(schedule, 20, {.kind = diffuse::sigma_kind::karras});
/// auto model = [&](std::span<const float> x, double t, std::span<float> out) { net(x, t, out); };
/// diffuse::solve(solver, model, std::span<float>(x), shape, {.seed = 42});
/// \endcode
class euler_sampler : public detail::euler_family {
 public:
  /// The solver of diffusers' set_timesteps(N).
  /// \throws diffuse::error on invalid sigma or churn options, or previous_x prediction.
  euler_sampler(const noise_schedule& schedule, int num_inference_steps, const sigma_options& sigmas = {}, euler_options options = {})
      : euler_sampler(euler_sigmas(schedule, num_inference_steps, sigmas), options, sigmas.spacing == timestep_spacing::leading) {}
  /// The solver over a given sigma list (e.g. custom_sigmas); `leading` picks diffusers' init_noise_sigma rule.
  euler_sampler(sigma_list list, euler_options options, bool leading = false)
      : euler_family(continuous(std::move(list), options), leading, options.prediction), options_(options) {
    if (!(options_.s_churn >= 0.0) || !std::isfinite(options_.s_churn) || !(options_.s_noise >= 0.0) || !std::isfinite(options_.s_noise) ||
        std::isnan(options_.s_tmin) || std::isnan(options_.s_tmax))
      detail::fail(error_kind::sampler, "Euler churn options s_churn = ", options_.s_churn, ", s_noise = ", options_.s_noise,
                   "; expected finite s_churn >= 0 and s_noise >= 0, and s_tmin, s_tmax not NaN");
  }
  /// The options it was built with.
  const euler_options& options() const noexcept { return options_; }
  /// With continuous_timesteps, the model times 0.25·log σ_k (diffusers' timestep_type = "continuous").
  static sigma_list continuous(sigma_list list, const euler_options& o) {
    if (!o.continuous_timesteps) return list;
    if (o.prediction != prediction_type::v_prediction)
      detail::fail(error_kind::sampler, "continuous timesteps with ", o.prediction == prediction_type::epsilon ? "epsilon" : "sample",
                   " prediction; expected v_prediction (diffusers uses timestep_type continuous only with it)");
    for (std::size_t k = 0; k < list.model_times.size(); ++k) list.model_times[k] = 0.25 * std::log(list.sigmas[k]);
    return list;
  }
  /// γ of position k (0 without churn).
  double gamma(int k) const {
    const double s = sigma(k);
    if (!(options_.s_tmin <= s && s <= options_.s_tmax)) return 0.0;
    return std::min(options_.s_churn / static_cast<double>(num_steps()), std::sqrt(2.0) - 1.0);
  }
  /// Whether the step at k draws noise (churn with γ > 0).
  bool adds_noise(int k) const { return gamma(k) > 0.0; }

  /// One Euler step: one fused pass over x, the model output and (with churn) the noise.
  template <Real Scalar>
  void step(int k, const solver_buffers<Scalar>& io, const sample_shape& shape, solver_state<Scalar>& state) const {
    detail::check_position(k, num_steps());
    state.check(id(), shape, k, "euler_sampler");
    const bool noisy = adds_noise(k);
    detail::check_solver_buffers(io, shape, noisy);
    const double s = sigma(k), g = gamma(k), s_hat = s * (g + 1.0);
    const auto sh = static_cast<Scalar>(s_hat);
    const auto vx = static_cast<Scalar>(s * s + 1.0), vo = static_cast<Scalar>(-s / std::sqrt(s * s + 1.0));
    const prediction_type pred = options_.prediction;
    detail::euler_step_pass<Scalar>(
        k, static_cast<int>(std::lround(model_time(k))),
        {.sigma_hat = s_hat, .dt = sigma(k + 1) - s_hat, .noise_scale = options_.s_noise, .churn = std::sqrt(std::max(0.0, s_hat * s_hat - s * s)),
         .next_input_scale = k + 1 < num_steps() ? input_scale(k + 1) : 1.0, .check = options_.check_finite, .vectorize = options_.vectorize},
        io, shape, noisy, [=]<class V>(V xv, V ov) {
          return pred == prediction_type::epsilon ? xv - V(sh) * ov : pred == prediction_type::v_prediction ? ov * V(vo) + xv / V(vx) : ov;
        });
    state.advance(k);
  }

 private:
  euler_options options_;
};

/// Options of the Euler ancestral solver.
struct euler_ancestral_options {
  prediction_type prediction = prediction_type::epsilon;  ///< epsilon, sample or v_prediction
  bool check_finite = true;                               ///< a [diffuse.numeric] error on NaN or Inf
  bool vectorize = true;                                  ///< false: the scalar reference loop (same bits)
};

/// Euler ancestral (EulerAncestralDiscreteScheduler): the Euler step to σ_down plus fresh noise σ_up·z.
class euler_ancestral_sampler : public detail::euler_family {
 public:
  /// The solver of diffusers' set_timesteps(N); diffusers' class has only the spacing options (Karras or
  /// exponential sigmas and a σ_min final are accepted here as extensions).
  euler_ancestral_sampler(const noise_schedule& schedule, int num_inference_steps, const sigma_options& sigmas = {},
                          euler_ancestral_options options = {})
      : euler_ancestral_sampler(euler_sigmas(schedule, num_inference_steps, sigmas), options, sigmas.spacing == timestep_spacing::leading) {}
  /// The solver over a given sigma list; `leading` = the list was made with leading spacing, which
  /// changes diffusers' init_noise_sigma to √(σ_max² + 1).
  euler_ancestral_sampler(sigma_list list, euler_ancestral_options options, bool leading = false)
      : euler_family(std::move(list), leading, options.prediction), options_(options) {}
  /// The options it was built with.
  const euler_ancestral_options& options() const noexcept { return options_; }
  /// Whether the step at k draws noise (every step except into σ = 0).
  bool adds_noise(int k) const { return sigma(k + 1) > 0.0 && !detail::repeats_last(sigma(k), sigma(k + 1)); }

  /// One Euler ancestral step: one fused pass.
  template <Real Scalar>
  void step(int k, const solver_buffers<Scalar>& io, const sample_shape& shape, solver_state<Scalar>& state) const {
    detail::check_position(k, num_steps());
    state.check(id(), shape, k, "euler_ancestral_sampler");
    const bool noisy = adds_noise(k);
    detail::check_solver_buffers(io, shape, noisy);
    const double s = sigma(k), sn = sigma(k + 1);
    const double up = std::sqrt(sn * sn * (s * s - sn * sn) / (s * s));
    const double down = std::sqrt(std::max(0.0, sn * sn - up * up));
    const auto ss = static_cast<Scalar>(s), dt = static_cast<Scalar>(down - s), zs = static_cast<Scalar>(up);
    const auto vx = static_cast<Scalar>(s * s + 1.0), vo = static_cast<Scalar>(-s / std::sqrt(s * s + 1.0));
    const prediction_type pred = options_.prediction;
    const bool check = options_.check_finite;
    const auto cin = static_cast<Scalar>(k + 1 < num_steps() ? input_scale(k + 1) : 1.0);
    detail::run_one_step_pass<Scalar>(k, static_cast<int>(std::lround(model_time(k))), io, shape, noisy, options_.vectorize, check, cin,
                                      [=]<class V>(V xv, V ov, V z, auto noisy_c) {
      const V x0 = pred == prediction_type::epsilon ? xv - V(ss) * ov : pred == prediction_type::v_prediction ? ov * V(vo) + xv / V(vx) : ov;
      V next = xv + (xv - x0) / V(ss) * V(dt);
      if constexpr (decltype(noisy_c)::value) next = next + z * V(zs);
      return detail::one_step_values<V>{x0, next};
    });
    state.advance(k);
  }

 private:
  euler_ancestral_options options_;
};

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
