#pragma once
/// \file
/// heun_sampler: Karras et al.'s second-order Heun step in σ space, two model evaluations per step, as
/// diffusers' HeunDiscreteScheduler computes it (SPEC §12).
///
/// The solver's positions are model evaluations, as diffusers' interleaved timestep list: N steps give
/// 2N − 1 positions with sigmas σ_0, σ_1, σ_1, σ_2, σ_2, …, σ_{N−1}, σ_{N−1} and model times likewise.
/// An even position 2j is the predictor (an Euler step), the odd position after it the corrector, which
/// evaluates the model at the predicted sample and σ_{j+1}:
///
///     predictor at σ = σ_j:  x̂0 = f(out, σ);  d = (x − x̂0)/σ;  x_pred = x + d·(σ_{j+1} − σ)
///     corrector at σ' = σ_{j+1}: x̂0' = f(out', σ');  d' = (x_pred − x̂0')/σ';
///                            x' = x + (d + d')/2·(σ' − σ)
///
/// with f as Euler's (ε: x − σ·ε̂; v: −σ/√(σ² + 1)·v̂ + x/(σ² + 1); sample: the output), optionally
/// clipped (clip_sample). The last step, into σ_N = 0, is the predictor alone (Euler to x̂0). The state
/// keeps d and x of the pending predictor, so a user's own loop drives it like any solver.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
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

/// Options of the Heun solver (HeunDiscreteScheduler's config keys).
struct heun_options {
  prediction_type prediction = prediction_type::epsilon;  ///< epsilon, sample or v_prediction
  std::optional<double> clip_sample_range = std::nullopt; ///< clip_sample: clamp x̂0 to [−r, r]
  bool check_finite = true;                               ///< a [diffuse.numeric] error on NaN or Inf
  bool vectorize = true;                                  ///< false: the scalar reference loop (same bits)
};

/// Heun (HeunDiscreteScheduler): 2N − 1 model evaluations for N steps.
///
/// Example:
/// \code
/// const diffuse::heun_sampler solver(schedule, 10, {.kind = diffuse::sigma_kind::karras});
/// diffuse::solve(solver, model, std::span<float>(x), shape);  // 19 model calls
/// \endcode
class heun_sampler {
 public:
  /// The model time may be fractional (diffusers' Heun interpolates t from log σ and does not round).
  static constexpr bool fractional_time = true;
  /// Its steps fill solver_buffers::next_model_input (the next position's scaled input) in their pass.
  static constexpr bool writes_next_input = true;

  /// The solver of diffusers' set_timesteps(N) (final σ 0, Euler's spacing and Karras / exponential rules).
  /// \throws diffuse::error on invalid sigma options, previous_x prediction or a clip range <= 0.
  heun_sampler(const noise_schedule& schedule, int num_inference_steps, const sigma_options& sigmas = {}, heun_options options = {})
      : heun_sampler(euler_sigmas(schedule, num_inference_steps, sigmas), options, sigmas.spacing == timestep_spacing::leading) {}

  /// The solver over a sigma list of N steps (N + 1 sigmas); `leading` picks diffusers' init_noise_sigma rule.
  heun_sampler(sigma_list list, heun_options options, bool leading = false)
      : options_(options), list_(std::move(list)), id_(detail::next_solver_id()) {
    detail::refuse_flow_prediction(options_.prediction, "The Heun solver");
    if (list_.flow)
      detail::fail(error_kind::sampler, "the Heun solver with a flow sigma list; expected VP sigmas (flow_heun_sampler integrates flow models)");
    if (options_.prediction == prediction_type::previous_x)
      detail::fail(error_kind::sampler, "the Heun solver needs a model that predicts epsilon, sample or v_prediction; got previous_x");
    if (options_.clip_sample_range && !(*options_.clip_sample_range > 0.0))
      detail::fail(error_kind::sampler, "clip_sample_range = ", *options_.clip_sample_range, "; expected a range > 0");
    const std::size_t n = list_.model_times.size();
    if (n == 0 || list_.sigmas.size() != n + 1)
      detail::fail(error_kind::timesteps, "a sigma list of ", list_.sigmas.size(), " sigmas and ", n, " model times; expected N >= 1 model times and N + 1 sigmas");
    for (std::size_t i = 0; i < list_.sigmas.size(); ++i)
      if (!detail::valid_list_sigma(list_.sigmas, i))
        detail::fail(error_kind::timesteps, "sigma ", i, " = ", list_.sigmas[i], " of the list; expected finite sigmas, strictly decreasing, > 0 except the final one");
    const double smax = list_.sigmas.front();
    initial_scale_ = leading ? std::sqrt(smax * smax + 1.0) : smax;
  }

  /// Model evaluations: 2N − 1 for N steps.
  int num_steps() const noexcept { return 2 * static_cast<int>(list_.model_times.size()) - 1; }
  /// Steps (N).
  int num_heun_steps() const noexcept { return static_cast<int>(list_.model_times.size()); }
  /// Whether position p is a corrector (odd) or a predictor (even).
  static constexpr bool is_corrector(int p) noexcept { return p % 2 == 1; }
  /// The model time at position p: t_0, t_1, t_1, t_2, t_2, ….
  double model_time(int p) const {
    detail::check_position(p, num_steps());
    return list_.model_times[static_cast<std::size_t>((p + 1) / 2)];
  }
  /// σ at position p: σ_0, σ_1, σ_1, …; sigma(num_steps()) = σ_N, the end.
  double sigma(int p) const { return list_.sigmas.at(static_cast<std::size_t>((p + 1) / 2)); }
  /// The N + 1 sigmas of the steps.
  const sigma_list& sigmas() const noexcept { return list_; }
  /// The state at position p is x0 + σ_p·ε (diffusers' add_noise): {1, σ_p}.
  std::pair<double, double> noising(int p) const { return {1.0, sigma(p)}; }
  /// 1/√(σ_p² + 1).
  double input_scale(int p) const { return 1.0 / std::sqrt(sigma(p) * sigma(p) + 1.0); }
  /// diffusers' init_noise_sigma: σ_max, or √(σ_max² + 1) with leading spacing.
  double initial_scale() const noexcept { return initial_scale_; }
  /// Never: Heun is deterministic.
  bool adds_noise(int) const noexcept { return false; }
  /// The options it was built with.
  const heun_options& options() const noexcept { return options_; }
  /// This solver's identity, which its states remember.
  std::uint64_t id() const noexcept { return id_; }
  /// Two: the predictor's derivative and its starting sample.
  std::size_t history_slots() const noexcept { return 2; }
  /// A state for one chain of `shape` (the predictor's derivative and sample), to pass to step().
  template <Real Scalar>
  solver_state<Scalar> make_state(const sample_shape& shape) const {
    return solver_state<Scalar>(id_, 2, shape);
  }

  /// One evaluation's update at position p: the predictor (even p) or the corrector (odd p), one fused pass.
  /// \throws diffuse::error on mismatched buffers, a state of another solver or shape, a position out of
  ///         order, a chain that starts at a corrector, and with check_finite on NaN or Inf.
  template <Real Scalar>
  void step(int p, const solver_buffers<Scalar>& io, const sample_shape& shape, solver_state<Scalar>& state) const {
    detail::check_position(p, num_steps());
    state.check(id_, shape, p, "heun_sampler");
    const bool corrector = is_corrector(p);
    if (corrector && state.steps_taken() == 0)
      detail::fail(error_kind::sampler, "a Heun chain starts at position ", p, ", a corrector; expected an even position (a predictor)");
    detail::check_solver_buffers(io, shape, false);
    const std::size_t j = static_cast<std::size_t>(p / 2);  // the step: from σ_j to σ_{j+1}
    const double s_from = list_.sigmas[j], s_to = list_.sigmas[j + 1];
    const double s_eval = corrector ? s_to : s_from;
    const auto se = static_cast<Scalar>(s_eval), dt = static_cast<Scalar>(s_to - s_from);
    const auto vx = static_cast<Scalar>(s_eval * s_eval + 1.0), vo = static_cast<Scalar>(-s_eval / std::sqrt(s_eval * s_eval + 1.0));
    const prediction_type pred = options_.prediction;
    const bool clip = options_.clip_sample_range.has_value();
    const auto r = clip ? static_cast<Scalar>(*options_.clip_sample_range) : Scalar(0);
    const bool check = options_.check_finite;
    Scalar* dp = state.slot(0).data();
    Scalar* xs = state.slot(1).data();
    const Scalar* x = io.x.data();
    const Scalar* out = io.model_output.data();
    Scalar* xn = io.x_next.data();
    Scalar* x0p = io.x0.empty() ? nullptr : io.x0.data();
    Scalar* ni = io.next_model_input.empty() ? nullptr : io.next_model_input.data();
    const auto cin = static_cast<Scalar>(p + 1 < num_steps() ? input_scale(p + 1) : 1.0);
    const auto body = [=]<class V>(std::size_t e, detail::finite_probe<V>& probe) {
      const V xv = detail::load<V>(x + e), ov = detail::load<V>(out + e);
      V x0 = pred == prediction_type::epsilon ? xv - V(se) * ov : pred == prediction_type::v_prediction ? ov * V(vo) + xv / V(vx) : ov;
      if (clip) x0 = detail::clamp_like_std(x0, V(-r), V(r));
      if (x0p) detail::store(x0p + e, x0);
      V next;
      if (!corrector) {
        const V d = (xv - x0) / V(se);
        detail::store(dp + e, d);
        detail::store(xs + e, xv);
        next = xv + d * V(dt);
      } else {
        const V d = (detail::load<V>(dp + e) + (xv - x0) / V(se)) / V(Scalar(2));
        next = detail::load<V>(xs + e) + d * V(dt);
      }
      if (check) {
        probe.model += ov - ov;
        probe.state += xv - xv;
        probe.result += next - next;
      }
      detail::store(xn + e, next);
      if (ni) detail::store(ni + e, next * V(cin));
    };
    const int mask = detail::run_elementwise<Scalar>(shape.numel(), options_.vectorize, body);
    if (mask != 0)
      detail::fail_non_finite<Scalar>(p, static_cast<int>(std::lround(model_time(p))), io.model_output, 1, io.x,
                                      std::span<const Scalar>(io.x_next), shape);
    state.advance(p);
  }

 private:
  heun_options options_;
  sigma_list list_;
  double initial_scale_ = 1.0;
  std::uint64_t id_ = 0;
};

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
