#pragma once
/// \file
/// edm_euler_sampler and edm_dpm_solver_sampler: diffusers' EDMEulerScheduler and
/// EDMDPMSolverMultistepScheduler, driving a raw EDM network F (SPEC §12).
///
/// The state is x_σ = x0 + σ·ε; the model is the raw network, called with c_in(σ_k)·x_σ and the time
/// c_noise(σ_k) = ¼·ln σ_k; the step forms x̂0 = c_skip·x + c_out·F itself (edm_preconditioning). The
/// chain starts from √(σ_max² + 1)·z: diffusers' init_noise_sigma for both classes (not σ_max, and not
/// √(σ_max² + σ_d²)).
///
///     EDM Euler:    γ = min(s_churn/N, √2 − 1) when s_tmin ≤ σ ≤ s_tmax, else 0;  σ̂ = σ(γ + 1);
///                   x̂ = x + s_noise·√(σ̂² − σ²)·z (only when γ > 0);
///                   x̂0 = c_skip(σ̂)·x̂ + c_out(σ̂)·F;  x' = x̂ + (x̂ − x̂0)/σ̂·(σ_next − σ̂)
///     EDM DPM-Solver++: dpm_solver_sampler's formulas with α = 1, σ_VP = σ, λ = −ln σ, in x_σ, and
///                   x̂0 = c_skip(σ)·x + c_out(σ)·F
///
/// As in diffusers, the network sees the sample before the churn noise, at σ (not σ̂). The steps reuse
/// the kernels of euler_sampler and dpm_solver_sampler.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>

#include "diffuse/error.hpp"
#include "diffuse/samplers/dpm_solver.hpp"
#include "diffuse/samplers/edm_preconditioning.hpp"
#include "diffuse/samplers/euler.hpp"
#include "diffuse/samplers/solver.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// The step() arguments of EDMEulerScheduler (its churn).
struct edm_euler_options {
  double s_churn = 0.0;      ///< stochasticity: γ = min(s_churn/N, √2 − 1) inside [s_tmin, s_tmax]
  double s_tmin = 0.0;       ///< lowest σ that gets churn
  double s_tmax = HUGE_VAL;  ///< highest σ that gets churn
  double s_noise = 1.0;      ///< scale of the churn noise
  bool check_finite = true;  ///< a [diffuse.numeric] error on NaN or Inf
  bool vectorize = true;     ///< false: the scalar reference loop (same bits)
};

/// EDM Euler (EDMEulerScheduler), with optional churn.
///
/// Example:
/// \code
/// const diffuse::edm_euler_sampler solver({.sigma_min = 0.002, .sigma_max = 80.0, .sigma_data = 0.5}, 30);
/// auto net = [&](std::span<const float> x, double c_noise, std::span<float> out) { unet(x, c_noise, out); };
/// diffuse::solve(solver, net, std::span<float>(x), shape, {.seed = 42});
/// \endcode
class edm_euler_sampler : public detail::euler_family {
 public:
  /// The solver of set_timesteps(N).
  /// \throws diffuse::error for invalid EDM options (edm_options::validate) or churn options, N < 1.
  edm_euler_sampler(const edm_options& edm, int num_inference_steps, edm_euler_options options = {})
      : edm_euler_sampler(edm, checked(edm, [&] { return edm_sigmas(edm, num_inference_steps); }), options) {}
  /// The solver of set_timesteps(sigmas=ramp): diffusers' EDM Euler passes its `sigmas` argument through
  /// the schedule as the ramp r ∈ [0, 1], not as noise levels.
  /// \throws diffuse::error as the other constructor, and for a ramp whose sigmas do not decrease.
  edm_euler_sampler(const edm_options& edm, const std::vector<double>& ramp, edm_euler_options options = {})
      : edm_euler_sampler(edm, checked(edm, [&] { return edm_sigmas(edm, ramp); }), options) {}

  /// c_in(σ_k): the factor of the network input (diffusers' scale_model_input).
  double input_scale(int k) const { return p_.c_in(sigma(k)); }
  /// The preconditioning the step applies.
  const edm_preconditioning& preconditioning() const noexcept { return p_; }
  /// The options it was built with.
  const edm_euler_options& options() const noexcept { return options_; }
  /// γ of position k (0 without churn).
  double gamma(int k) const {
    const double s = sigma(k);
    if (!(options_.s_tmin <= s && s <= options_.s_tmax)) return 0.0;
    return std::min(options_.s_churn / static_cast<double>(num_steps()), std::sqrt(2.0) - 1.0);
  }
  /// Whether the step at k draws noise (churn with γ > 0).
  bool adds_noise(int k) const { return gamma(k) > 0.0; }

  /// One EDM Euler step: one fused pass (euler_sampler's) with x̂0 = c_skip(σ̂)·x̂ + c_out(σ̂)·F.
  /// \throws diffuse::error on buffers that do not match `shape`, a foreign state, and non-finite values.
  template <Real Scalar>
  void step(int k, const solver_buffers<Scalar>& io, const sample_shape& shape, solver_state<Scalar>& state) const {
    detail::check_position(k, num_steps());
    state.check(id(), shape, k, "edm_euler_sampler");
    const bool noisy = adds_noise(k);
    detail::check_solver_buffers(io, shape, noisy);
    const double s = sigma(k), s_hat = s * (gamma(k) + 1.0);
    const auto cs = static_cast<Scalar>(p_.c_skip(s_hat)), co = static_cast<Scalar>(p_.c_out(s_hat));
    detail::euler_step_pass<Scalar>(
        k, static_cast<int>(std::lround(model_time(k))),
        {.sigma_hat = s_hat, .dt = sigma(k + 1) - s_hat, .noise_scale = options_.s_noise, .churn = std::sqrt(std::max(0.0, s_hat * s_hat - s * s)),
         .next_input_scale = k + 1 < num_steps() ? input_scale(k + 1) : 1.0, .check = options_.check_finite, .vectorize = options_.vectorize},
        io, shape, noisy, [=]<class V>(V xv, V ov) { return V(cs) * xv + V(co) * ov; });
    state.advance(k);
  }

 private:
  template <class Make>
  static sigma_list checked(const edm_options& edm, Make make) {
    edm.validate();
    return make();
  }
  edm_euler_sampler(const edm_options& edm, sigma_list list, edm_euler_options options)
      : euler_family(std::move(list), false, edm.prediction), p_(edm.preconditioning()), options_(options) {
    initial_scale_ = std::sqrt(edm.sigma_max * edm.sigma_max + 1.0);
    if (!(options_.s_churn >= 0.0) || !std::isfinite(options_.s_churn) || !(options_.s_noise >= 0.0) || !std::isfinite(options_.s_noise) ||
        std::isnan(options_.s_tmin) || std::isnan(options_.s_tmax))
      detail::fail(error_kind::sampler, "EDM Euler churn options s_churn = ", options_.s_churn, ", s_noise = ", options_.s_noise,
                   "; expected finite s_churn >= 0 and s_noise >= 0, and s_tmin, s_tmax not NaN");
  }
  edm_preconditioning p_;
  edm_euler_options options_;
};

/// Options of EDM DPM-Solver++, named as EDMDPMSolverMultistepScheduler's config keys.
struct edm_dpm_solver_options {
  int order = 2;                                            ///< solver_order: 1, 2 or 3
  dpm_algorithm algorithm = dpm_algorithm::dpmsolver_pp;    ///< algorithm_type: dpmsolver++ or sde-dpmsolver++
  dpm_solver_type solver_type = dpm_solver_type::midpoint;  ///< solver_type
  bool lower_order_final = true;                            ///< lower the order of the last steps when N < 15
  bool euler_at_final = false;                              ///< first order on the last step
  std::optional<dynamic_threshold> threshold = std::nullopt;  ///< thresholding of x̂0 (dynamic_thresholding_ratio, sample_max_value)
  bool check_finite = true;                                 ///< a [diffuse.numeric] error on NaN or Inf
  bool vectorize = true;                                    ///< false: the scalar reference loop (same bits)
};

/// EDM DPM-Solver++ (EDMDPMSolverMultistepScheduler): dpm_solver_sampler's step in EDM's variable.
///
/// The final σ_min of final_sigmas_type "sigma_min" is the config's sigma_min, so the last step is
/// from σ_min to σ_min: it changes nothing (where diffusers' heun form at order 2 meets 0/0 when the σ
/// are bit-equal, diffuse takes the limit, the identity).
///
/// Example:
/// \code
/// const diffuse::edm_dpm_solver_sampler solver({.sigma_data = 0.5}, 20, {.order = 2});
/// diffuse::solve(solver, net, std::span<float>(x), shape);
/// \endcode
class edm_dpm_solver_sampler : public dpm_solver_sampler {
 public:
  /// The network's time c_noise is fractional.
  static constexpr bool fractional_time = true;

  /// The solver of set_timesteps(N).
  /// \throws diffuse::error for invalid EDM options, N < 1, an order outside 1–3, an algorithm other than
  ///         dpmsolver++ and sde-dpmsolver++, sde-dpmsolver++ at order 3 (diffusers has no such update),
  ///         or invalid thresholding options.
  edm_dpm_solver_sampler(const edm_options& edm, int num_inference_steps, edm_dpm_solver_options options = {})
      : dpm_solver_sampler(checked(edm, options, num_inference_steps), to_dpm(edm, options), edm.sigma_data),
        p_(edm.preconditioning()),
        options_(options),
        initial_scale_(std::sqrt(edm.sigma_max * edm.sigma_max + 1.0)) {}

  /// The fractional time c_noise(σ_k) the network is given at position k.
  double model_time(int k) const {
    detail::check_position(k, num_steps());
    return sigmas().model_times[static_cast<std::size_t>(k)];
  }
  /// c_in(σ_k): the factor of the network input.
  double input_scale(int k) const { return p_.c_in(sigma(k)); }
  /// diffusers' init_noise_sigma, √(σ_max² + 1).
  double initial_scale() const noexcept { return initial_scale_; }
  /// The state at position k is x0 + σ_k·ε: {1, σ_k}.
  std::pair<double, double> noising(int k) const { return {1.0, sigma(k)}; }
  /// The preconditioning the step applies.
  const edm_preconditioning& preconditioning() const noexcept { return p_; }
  /// The options it was built with.
  const edm_dpm_solver_options& options() const noexcept { return options_; }

 private:
  static sigma_list checked(const edm_options& edm, const edm_dpm_solver_options& o, int n) {
    edm.validate();
    if (o.algorithm != dpm_algorithm::dpmsolver_pp && o.algorithm != dpm_algorithm::sde_dpmsolver_pp)
      detail::fail(error_kind::sampler, "EDM DPM-Solver with a noise-form algorithm (dpmsolver / sde-dpmsolver); expected dpmsolver++ or "
                                        "sde-dpmsolver++ (diffusers' EDM class implements only these)");
    if (o.algorithm == dpm_algorithm::sde_dpmsolver_pp && o.order == 3)
      detail::fail(error_kind::sampler, "EDM sde-dpmsolver++ with solver_order 3: diffusers' EDM class has no third-order SDE update; "
                                        "expected solver_order 1 or 2");
    return edm_sigmas(edm, n, edm_final_rule::config_sigma_min);
  }
  static dpm_solver_options to_dpm(const edm_options& edm, const edm_dpm_solver_options& o) {
    return {.order = o.order, .algorithm = o.algorithm, .solver_type = o.solver_type, .prediction = edm.prediction,
            .lower_order_final = o.lower_order_final, .euler_at_final = o.euler_at_final, .threshold = o.threshold,
            .check_finite = o.check_finite, .vectorize = o.vectorize};
  }
  edm_preconditioning p_;
  edm_dpm_solver_options options_;
  double initial_scale_ = 1.0;
};

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
