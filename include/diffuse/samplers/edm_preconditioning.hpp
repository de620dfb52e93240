#pragma once
/// \file
/// EDM's preconditioning and noise levels (Karras et al. 2022, SPEC §12), as diffusers' EDM schedulers
/// (EDMEulerScheduler, EDMDPMSolverMultistepScheduler) define them:
///
///     D(x; σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, c_noise(σ))
///     c_skip = σ_d²/(σ² + σ_d²),  c_out = ±σ·σ_d/√(σ² + σ_d²)  (− for v_prediction),
///     c_in = 1/√(σ² + σ_d²),      c_noise = ¼·ln σ
///
/// with F the raw network and σ_d = sigma_data. The noise levels are Karras' σ_i = (σ_max^{1/ρ} +
/// r_i·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ over the ramp r_i = i/(N − 1), or exponential (log-linear between
/// σ_min and σ_max, listed from the top). edm_denoiser turns F into D (k-diffusion's Denoiser), and
/// edm_solver_model hands D to any of diffuse's σ-space solvers run with prediction_type::sample.

#include <cmath>
#include <cstddef>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "diffuse/detail/step_kernel.hpp"
#include "diffuse/error.hpp"
#include "diffuse/posterior.hpp"
#include "diffuse/samplers/sigmas.hpp"
#include "diffuse/step_buffers.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// diffusers' sigma_schedule of the EDM classes.
enum class edm_sigma_schedule {
  karras,       ///< "karras": Karras' ρ-schedule from σ_max down to σ_min
  exponential,  ///< "exponential": log-linear from σ_max down to σ_min
};

/// The preconditioning of one EDM model: σ_data and the sign convention of its output.
struct edm_preconditioning {
  double sigma_data = 0.5;                                ///< σ_d, the data's standard deviation (> 0)
  prediction_type prediction = prediction_type::epsilon;  ///< epsilon (c_out > 0) or v_prediction (c_out < 0)

  /// c_skip(σ) = σ_d²/(σ² + σ_d²).
  double c_skip(double sigma) const noexcept { return sigma_data * sigma_data / (sigma * sigma + sigma_data * sigma_data); }
  /// c_out(σ) = σ·σ_d/√(σ² + σ_d²), negated for v_prediction (diffusers' precondition_outputs).
  double c_out(double sigma) const noexcept {
    const double c = sigma * sigma_data / std::sqrt(sigma * sigma + sigma_data * sigma_data);
    return prediction == prediction_type::v_prediction ? -c : c;
  }
  /// c_in(σ) = 1/√(σ² + σ_d²) (diffusers' precondition_inputs).
  double c_in(double sigma) const noexcept { return 1.0 / std::sqrt(sigma * sigma + sigma_data * sigma_data); }
  /// c_noise(σ) = ¼·ln σ: the time the network is given (diffusers' precondition_noise).
  static double c_noise(double sigma) noexcept { return 0.25 * std::log(sigma); }

  /// \throws diffuse::error for σ_d ≤ 0 or not finite, or a prediction type other than epsilon and
  ///         v_prediction (diffusers' EDM classes raise for the others).
  void validate() const {
    if (!(sigma_data > 0.0) || !std::isfinite(sigma_data))
      detail::fail(error_kind::sampler, "EDM sigma_data = ", sigma_data, "; expected a finite value > 0");
    if (prediction != prediction_type::epsilon && prediction != prediction_type::v_prediction)
      detail::fail(error_kind::sampler, "EDM preconditioning with prediction type ", static_cast<int>(prediction),
                   "; expected epsilon or v_prediction (diffusers' precondition_outputs supports only these)");
  }
};

/// The config keys of diffusers' EDM schedulers that fix the noise levels and the preconditioning.
struct edm_options {
  double sigma_min = 0.002;                                  ///< the lowest σ of the schedule (> 0)
  double sigma_max = 80.0;                                   ///< the highest σ (> sigma_min)
  double sigma_data = 0.5;                                   ///< σ_d of the preconditioning
  double rho = 7.0;                                          ///< ρ of the Karras schedule (> 0)
  edm_sigma_schedule schedule = edm_sigma_schedule::karras;  ///< sigma_schedule
  prediction_type prediction = prediction_type::epsilon;     ///< epsilon or v_prediction
  final_sigma final_type = final_sigma::zero;                ///< final_sigmas_type: 0, or σ_min (a last step that changes nothing)

  /// The preconditioning these options describe.
  edm_preconditioning preconditioning() const noexcept { return {sigma_data, prediction}; }
  /// \throws diffuse::error for σ_min ≤ 0, σ_min ≥ σ_max, ρ ≤ 0, σ_d ≤ 0, a NaN or infinite value, or a
  ///         prediction type other than epsilon and v_prediction.
  void validate() const {
    if (!(sigma_min > 0.0) || !(sigma_max > sigma_min) || !std::isfinite(sigma_max))
      detail::fail(error_kind::sampler, "EDM sigma_min = ", sigma_min, ", sigma_max = ", sigma_max,
                   "; expected finite 0 < sigma_min < sigma_max");
    if (!(rho > 0.0) || !std::isfinite(rho)) detail::fail(error_kind::sampler, "EDM rho = ", rho, "; expected a finite value > 0");
    preconditioning().validate();
  }
};

/// The EDM noise levels over a ramp r ∈ [0, 1] (diffusers' _compute_karras_sigmas /
/// _compute_exponential_sigmas): σ(r) of the Karras schedule, or, for the exponential one, exp of a
/// linspace from ln σ_min to ln σ_max of ramp.size() points listed from the top (which only counts the
/// ramp; one point gives σ_min, as diffusers). Computed in double (diffusers rounds them to float32).
/// \throws diffuse::error for invalid options or an empty ramp.
inline std::vector<double> edm_ramp_sigmas(const edm_options& o, const std::vector<double>& ramp) {
  o.validate();
  if (ramp.empty()) detail::fail(error_kind::timesteps, "an empty EDM ramp; expected at least one value in [0, 1]");
  std::vector<double> s(ramp.size());
  if (o.schedule == edm_sigma_schedule::karras) {
    const double lo = std::pow(o.sigma_min, 1.0 / o.rho), hi = std::pow(o.sigma_max, 1.0 / o.rho);
    for (std::size_t i = 0; i < s.size(); ++i) s[i] = std::pow(hi + ramp[i] * (lo - hi), o.rho);
  } else {
    const auto logs = detail::np_linspace(std::log(o.sigma_min), std::log(o.sigma_max), static_cast<int>(ramp.size()));
    for (std::size_t i = 0; i < s.size(); ++i) s[i] = std::exp(logs[s.size() - 1 - i]);
  }
  return s;
}

/// Which σ a σ_min final is: the schedule's last σ (EDMEulerScheduler) or the config's sigma_min
/// (EDMDPMSolverMultistepScheduler); the two differ by rounding only.
enum class edm_final_rule { last_sigma, config_sigma_min };

/// The sigma list of an EDM scheduler's set_timesteps over a ramp: the ramp's sigmas, then the final σ
/// (0, or σ_min by `rule`); model times c_noise(σ_k) = ¼·ln σ_k.
/// \throws diffuse::error for invalid options, an empty ramp or a ramp whose sigmas are not strictly
///         decreasing and finite.
inline sigma_list edm_sigmas(const edm_options& o, const std::vector<double>& ramp, edm_final_rule rule = edm_final_rule::last_sigma) {
  sigma_list out;
  out.sigmas = edm_ramp_sigmas(o, ramp);
  for (std::size_t i = 0; i < out.sigmas.size(); ++i) {
    if (!std::isfinite(out.sigmas[i]) || !(out.sigmas[i] > 0.0) || (i > 0 && !(out.sigmas[i] < out.sigmas[i - 1])))
      detail::fail(error_kind::timesteps, "EDM sigma ", i, " = ", out.sigmas[i], " (ramp value ", ramp[i],
                   "); expected finite sigmas > 0, strictly decreasing (an increasing ramp in [0, 1])");
    out.model_times.push_back(edm_preconditioning::c_noise(out.sigmas[i]));
  }
  const double last = rule == edm_final_rule::last_sigma ? out.sigmas.back() : o.sigma_min;
  out.sigmas.push_back(o.final_type == final_sigma::zero ? 0.0 : last);
  return out;
}

/// edm_sigmas over diffusers' default ramp for N steps, linspace(0, 1, N).
/// \throws diffuse::error for N < 1 and as edm_sigmas.
inline sigma_list edm_sigmas(const edm_options& o, int num_inference_steps, edm_final_rule rule = edm_final_rule::last_sigma) {
  if (num_inference_steps < 1 || num_inference_steps > 1000000)
    detail::fail(error_kind::timesteps, "num_inference_steps = ", num_inference_steps, "; expected 1 <= N <= 1000000");
  return edm_sigmas(o, detail::np_linspace(0.0, 1.0, num_inference_steps), rule);
}

/// The same sigma list with model times 0, 1, …, N − 1: labels for a solver that requires integer
/// times (dpm_solver_sampler), which edm_solver_model maps back to the positions' σ.
inline sigma_list with_position_times(sigma_list list) {
  for (std::size_t k = 0; k < list.model_times.size(); ++k) list.model_times[k] = static_cast<double>(k);
  return list;
}

/// k-diffusion's Denoiser: a raw network F made into the preconditioned denoiser
/// D(x; σ) = c_skip·x + c_out·F(c_in·x, c_noise).
///
/// F is any callable `net(std::span<const Scalar> input, double c_noise, std::span<Scalar> out)`.
/// The scaled input lives in a buffer of the denoiser's own, allocated on the first call with a size
/// (calls with the same size allocate nothing).
///
/// Example:
/// \code
/// diffuse::edm_denoiser denoiser(net, {.sigma_data = 0.5});
/// denoiser(std::span<const float>(x), 2.5, std::span<float>(d));  // d = D(x; 2.5)
/// \endcode
template <class Network>
class edm_denoiser {
 public:
  /// \throws diffuse::error for σ_d ≤ 0 or a prediction type other than epsilon and v_prediction.
  edm_denoiser(Network net, edm_preconditioning preconditioning) : net_(std::move(net)), p_(preconditioning) { p_.validate(); }

  /// out = D(x; σ).
  /// \throws diffuse::error for σ ≤ 0 or not finite, sizes that differ, or out overlapping x.
  template <Real Scalar>
  void operator()(std::span<const Scalar> x, double sigma, std::span<Scalar> out) {
    denoise_scaled(x, 1.0, sigma, out);
  }

  /// out = D(scale·x; σ) without forming scale·x (how a solver's scaled model input is undone).
  /// \throws diffuse::error as operator().
  template <Real Scalar>
  void denoise_scaled(std::span<const Scalar> x, double scale, double sigma, std::span<Scalar> out) {
    if (!(sigma > 0.0) || !std::isfinite(sigma))
      detail::fail(error_kind::argument, "EDM denoiser at sigma = ", sigma, "; expected a finite sigma > 0 (D(x; 0) is x itself)");
    if (x.size() != out.size())
      detail::fail(error_kind::shape, "the EDM denoiser's input has ", x.size(), " elements and its output ", out.size(), "; expected the same");
    if (detail::share_memory(x, std::span<const Scalar>(out)))
      detail::fail(error_kind::argument, "the EDM denoiser's output overlaps its input; expected separate buffers (F reads c_in·x while out is written)");
    auto& buf = scratch<Scalar>();
    if (buf.size() != x.size()) buf.assign(x.size(), Scalar(0));
    const auto cin = static_cast<Scalar>(p_.c_in(sigma) * scale);
    const auto cskip = static_cast<Scalar>(p_.c_skip(sigma) * scale), cout = static_cast<Scalar>(p_.c_out(sigma));
    const Scalar* src = x.data();
    Scalar* dst = buf.data();
    detail::run_elementwise<Scalar>(x.size(), true, [=]<class V>(std::size_t j, detail::finite_probe<V>&) {
      detail::store(dst + j, detail::load<V>(src + j) * V(cin));
    });
    net_(std::span<const Scalar>(buf), edm_preconditioning::c_noise(sigma), out);
    Scalar* o = out.data();
    detail::run_elementwise<Scalar>(x.size(), true, [=]<class V>(std::size_t j, detail::finite_probe<V>&) {
      detail::store(o + j, V(cskip) * detail::load<V>(src + j) + V(cout) * detail::load<V>(o + j));
    });
  }

  /// The preconditioning it applies.
  const edm_preconditioning& preconditioning() const noexcept { return p_; }
  /// The wrapped network.
  Network& network() noexcept { return net_; }

 private:
  template <class Scalar>
  std::vector<Scalar>& scratch() {
    if constexpr (std::is_same_v<Scalar, float>) return scratch_f_;
    else return scratch_d_;
  }
  Network net_;
  edm_preconditioning p_;
  std::vector<float> scratch_f_;
  std::vector<double> scratch_d_;
};

/// An EDM denoiser as the model of one of diffuse's σ-space solvers (euler_sampler, heun_sampler,
/// dpm_solver_sampler, …) built over an EDM sigma list with prediction_type::sample: the solver then
/// integrates EDM's probability-flow ODE dx/dσ = (x − D(x; σ))/σ with its own method.
///
/// Those solvers give the model x_σ/√(σ² + 1) (the Euler family's scaled input, or the VP sample of the
/// multistep ones) and a model time; this adapter looks the time up in the solver's positions to find σ
/// (every position's time must name one σ: use edm_sigmas for the Euler family and Heun, and
/// with_position_times(edm_sigmas(…)) for the solvers with integer times) and returns D(x_σ; σ).
/// It keeps a reference to the denoiser, which must outlive it.
///
/// Example:
/// \code
/// const auto list = diffuse::edm_sigmas({}, 20);
/// const diffuse::heun_sampler heun(list, {.prediction = diffuse::prediction_type::sample});
/// diffuse::edm_denoiser denoiser(net, {.sigma_data = 0.5});
/// diffuse::solve(heun, diffuse::edm_solver_model(heun, denoiser), std::span<float>(x), shape);
/// \endcode
template <class Denoiser>
class edm_solver_model {
 public:
  /// \throws diffuse::error when the solver does not predict `sample`, or two of its positions share a
  ///         model time with different sigmas.
  template <class Solver>
  edm_solver_model(const Solver& solver, Denoiser& denoiser) : denoiser_(&denoiser) {
    if (solver.options().prediction != prediction_type::sample)
      detail::fail(error_kind::sampler, "an EDM denoiser drives a solver built with prediction_type::sample (it returns x̂0 = D(x; σ)); "
                                        "the solver has another prediction type");
    for (int k = 0; k < solver.num_steps(); ++k) {
      const double t = solver.model_time(k), s = solver.sigma(k);
      for (std::size_t i = 0; i < times_.size(); ++i)
        if (times_[i] == t && sigmas_[i] != s)
          detail::fail(error_kind::timesteps, "positions with model time ", t, " have sigmas ", sigmas_[i], " and ", s,
                       "; expected one sigma per model time (build the solver over edm_sigmas, or with_position_times for integer times)");
      times_.push_back(t);
      sigmas_.push_back(s);
    }
  }

  /// out = D(x·√(σ² + 1); σ) with σ the sigma of the position whose model time is t.
  /// \throws diffuse::error for a time that is not one of the solver's, and as edm_denoiser.
  template <Real Scalar, class Time>
  void operator()(std::span<const Scalar> x, Time t, std::span<Scalar> out) const {
    const auto time = static_cast<double>(t);
    for (std::size_t i = 0; i < times_.size(); ++i)
      if (times_[i] == time) {
        const double s = sigmas_[i];
        denoiser_->denoise_scaled(x, std::sqrt(s * s + 1.0), s, out);
        return;
      }
    detail::fail(error_kind::argument, "model time ", time, " is not a position of the solver this EDM model was made for; expected one of its times");
  }

 private:
  Denoiser* denoiser_;
  std::vector<double> times_, sigmas_;
};

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
