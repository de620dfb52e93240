#pragma once
/// \file
/// flow_heun_sampler: the second-order Heun step of flow-matching (rectified-flow) models, two model
/// evaluations per step, as diffusers' FlowMatchHeunDiscreteScheduler computes it (SPEC §12). The grid
/// comes from samplers/flow_sigmas.hpp.
///
/// Like heun_sampler, the positions are model evaluations: N steps over the grid t_0 … t_N give 2N − 1
/// positions with times t_0, t_1, t_1, t_2, t_2, …, t_{N−1}, t_{N−1}. An even position 2j is the
/// predictor (an Euler step), the odd position after it the corrector, which evaluates the velocity at
/// the predicted sample and t_{j+1}:
///
///     predictor at σ = t_j:        x̂0 = x − σ·v;  d = (x − x̂0)/σ;  x_pred = x + d·(t_{j+1} − t_j)
///     corrector at σ' = t_{j+1}:   x̂0' = x_pred − σ'·v';  d' = (x_pred − x̂0')/σ';
///                                  x' = x + ½(d + d')·(t_{j+1} − t_j)
///
/// d is the velocity v itself up to rounding; it is computed through x̂0 as diffusers does, so the float32
/// path rounds as diffusers' float32 step. The last step (into t_N, 0 for diffusers' grids) is the
/// predictor alone. On a grid with the noise at t = 0 (invert_sigmas, 0 → 1 policies) the output is
/// dx/dt = x0 − ε and d is that output directly (x̂0 = x + σ·out). Each step is one fused pass; the
/// state keeps d and x of the pending predictor, so a user's own loop drives it like any solver.
///
/// diffusers' step() also takes Euler-style churn arguments (s_churn, s_tmin, s_tmax, s_noise) that no
/// pipeline passes; they are not implemented (the solver is deterministic).

#include <cmath>
#include <cstdint>
#include <span>
#include <utility>

#include "diffuse/detail/step_kernel.hpp"
#include "diffuse/error.hpp"
#include "diffuse/samplers/flow_sigmas.hpp"
#include "diffuse/samplers/solver.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// Options of the flow Heun solver.
struct flow_heun_options {
  bool check_finite = true;  ///< a [diffuse.numeric] error on NaN or Inf
  bool vectorize = true;     ///< false: the scalar reference loop (same bits)
};

/// Flow-matching Heun (FlowMatchHeunDiscreteScheduler): 2N − 1 velocity evaluations for N steps.
///
/// Example:
/// \code
/// const diffuse::flow_heun_sampler solver(10, {.shift = 3.0});   // 19 model calls
/// auto model = [&](std::span<const float> x, double t, std::span<float> out) { net(x, t, out); };  // t = σ·1000
/// diffuse::solve(solver, model, std::span<float>(x), shape, {.seed = 42});
/// \endcode
class flow_heun_sampler {
 public:
  /// The model time is fractional (σ·num_train_timesteps).
  static constexpr bool fractional_time = true;

  /// The solver of diffusers' set_timesteps(N). FlowMatchHeunDiscreteScheduler has only the static shift
  /// (applied twice, as FlowMatchEulerDiscreteScheduler's, diffusers issue 13243); the other grid options
  /// are accepted as extensions.
  /// \throws diffuse::error as flow_match_times.
  explicit flow_heun_sampler(int num_inference_steps, const flow_match_options& grid = {}, flow_heun_options options = {})
      : flow_heun_sampler(flow_match_times(num_inference_steps, grid), options) {}
  /// The solver over a given grid of N steps (flow_match_custom_sigmas, flow_uniform_times, …).
  /// \throws diffuse::error for a grid that is not N + 1 strictly monotone times in [0, 1] with N finite
  ///         model times.
  explicit flow_heun_sampler(flow_times times, flow_heun_options options = {})
      : times_(std::move(times)), options_(options), id_(detail::next_solver_id()) {
    const std::size_t n = times_.model_times.size();
    if (n == 0 || times_.times.size() != n + 1)
      detail::fail(error_kind::timesteps, "a flow grid of ", times_.times.size(), " times and ", n,
                   " model times; expected N >= 1 model times and N + 1 times");
    for (std::size_t i = 0; i < times_.times.size(); ++i) {
      const double t = times_.times[i];
      const bool monotone = i == 0 || (times_.noise_at_zero ? t > times_.times[i - 1] : t < times_.times[i - 1]);
      if (!(std::isfinite(t) && t >= 0.0 && t <= 1.0 && monotone))
        detail::fail(error_kind::timesteps, "flow time ", i, " = ", t, "; expected times in [0, 1], strictly ",
                     times_.noise_at_zero ? "increasing (noise at 0)" : "decreasing (noise at 1)");
    }
    for (std::size_t i = 0; i < n; ++i)
      if (!std::isfinite(times_.model_times[i]))
        detail::fail(error_kind::timesteps, "flow model time ", i, " = ", times_.model_times[i], "; expected a finite value");
  }

  /// Model evaluations: 2N − 1 for N steps.
  int num_steps() const noexcept { return 2 * times_.num_steps() - 1; }
  /// Steps (N).
  int num_heun_steps() const noexcept { return times_.num_steps(); }
  /// Whether position p is a corrector (odd) or a predictor (even).
  static constexpr bool is_corrector(int p) noexcept { return p % 2 == 1; }
  /// The grid time at position p: t_0, t_1, t_1, t_2, …; time(num_steps()) = t_N, the end.
  double time(int p) const { return times_.times.at(static_cast<std::size_t>((p + 1) / 2)); }
  /// The noise level at position p: time(p), or 1 − time(p) on a noise-at-zero grid.
  double sigma(int p) const { return times_.noise_level((p + 1) / 2); }
  /// The (fractional) time the model is given at position p: diffusers' interleaved timesteps.
  double model_time(int p) const {
    detail::check_position(p, num_steps());
    return times_.model_times[static_cast<std::size_t>((p + 1) / 2)];
  }
  /// 1: the model sees the state itself.
  double input_scale(int) const noexcept { return 1.0; }
  /// 1: the chain starts from standard normal noise.
  double initial_scale() const noexcept { return 1.0; }
  /// ᾱ of the VP process with the same signal-to-noise ratio, (1 − σ)²/((1 − σ)² + σ²), for guidance hooks.
  double guidance_alpha_bar(int p) const {
    const double s = sigma(p), a = 1.0 - s;
    return a * a / (a * a + s * s);
  }
  /// The state at position p is (1 − σ_p)·x0 + σ_p·ε (diffusers' scale_noise): {1 − σ_p, σ_p}.
  std::pair<double, double> noising(int p) const { return {1.0 - sigma(p), sigma(p)}; }
  /// Never: the solver is deterministic.
  bool adds_noise(int) const noexcept { return false; }
  /// The grid.
  const flow_times& times() const noexcept { return times_; }
  /// The options it was built with.
  const flow_heun_options& options() const noexcept { return options_; }
  /// This solver's identity (copies share it), for solver_state checks.
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
    state.check(id_, shape, p, "flow_heun_sampler");
    const bool corrector = is_corrector(p);
    if (corrector && state.steps_taken() == 0)
      detail::fail(error_kind::sampler, "a flow Heun chain starts at position ", p, ", a corrector; expected an even position (a predictor)");
    detail::check_solver_buffers(io, shape, false);
    const std::size_t j = static_cast<std::size_t>(p / 2);  // the step: from t_j to t_{j+1}
    const double t_from = times_.times[j], t_to = times_.times[j + 1];
    const bool at_zero = times_.noise_at_zero;
    // The noise level the output is converted at: the predictor's σ_j or the corrector's σ_{j+1}.
    const double s_eval = times_.noise_level(static_cast<int>(corrector ? j + 1 : j));
    const auto se = static_cast<Scalar>(s_eval), dt = static_cast<Scalar>(t_to - t_from);
    const bool check = options_.check_finite;
    Scalar* dp = state.slot(0).data();
    Scalar* xs = state.slot(1).data();
    const Scalar* x = io.x.data();
    const Scalar* out = io.model_output.data();
    Scalar* xn = io.x_next.data();
    Scalar* x0p = io.x0.empty() ? nullptr : io.x0.data();
    Scalar* ni = io.next_model_input.empty() ? nullptr : io.next_model_input.data();  // input scale 1: a copy
    const auto body = [=]<class V>(std::size_t e, detail::finite_probe<V>& probe) {
      const V xv = detail::load<V>(x + e), ov = detail::load<V>(out + e);
      // Noise at 1: diffusers' x̂0 = x − v·σ and d = (x − x̂0)/σ. Noise at 0: the output is dx/dt itself.
      const V x0 = at_zero ? xv + ov * V(se) : xv - ov * V(se);
      if (x0p) detail::store(x0p + e, x0);
      const V d_here = at_zero ? ov : (xv - x0) / V(se);
      V next;
      if (!corrector) {
        detail::store(dp + e, d_here);
        detail::store(xs + e, xv);
        next = xv + d_here * V(dt);
      } else {
        const V d = V(Scalar(0.5)) * (detail::load<V>(dp + e) + d_here);
        next = detail::load<V>(xs + e) + d * V(dt);
      }
      if (check) {
        probe.model += ov - ov;
        probe.state += xv - xv;
        probe.result += next - next;
      }
      detail::store(xn + e, next);
      if (ni) detail::store(ni + e, next);
    };
    const int mask = detail::run_elementwise<Scalar>(shape.numel(), options_.vectorize, body);
    if (mask != 0)
      detail::fail_non_finite<Scalar>(p, static_cast<int>(std::lround(model_time(p))), io.model_output, 1, io.x,
                                      std::span<const Scalar>(io.x_next), shape);
    state.advance(p);
  }

 private:
  flow_times times_;
  flow_heun_options options_;
  std::uint64_t id_ = 0;
};

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
