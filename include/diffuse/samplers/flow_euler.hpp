#pragma once
/// \file
/// flow_euler_sampler: the Euler step of flow-matching (rectified-flow) models, as diffusers'
/// FlowMatchEulerDiscreteScheduler computes it, and the fixed-step Euler loop of flow-matching robot
/// policies (SPEC §12). The grid comes from samplers/flow_sigmas.hpp.
///
/// The model predicts a velocity (prediction_type "flow_prediction"): with t = σ, v = ε − x0 for
/// x = (1 − σ)·x0 + σ·ε. Over the grid t_0 … t_N:
///
///     deterministic:        x' = x + (t_{k+1} − t_k)·v
///     stochastic_sampling:  x̂0 = x − t_k·v;  x' = (1 − t_{k+1})·x̂0 + t_{k+1}·z
///
/// There is no input scaling (the model sees x itself) and the chain starts from unscaled noise z; the
/// model time is the grid's (t·num_train_timesteps for diffusers' grids), fractional. With the grid
/// noise at t = 0 (invert_sigmas, 0 → 1 policies) the same deterministic formula integrates dx/dt = x0 − ε.
///
/// Relation to DDIM: with x = (1 − σ)·x0 + σ·ε, the η = 0 DDIM update through x̂0 = x − σ·v and
/// ε̂ = x + (1 − σ)·v, x' = (1 − σ')·x̂0 + σ'·ε̂, equals x + (σ' − σ)·v exactly: flow Euler is DDIM in
/// the flow parameterisation (for any shift, since the shift only moves the grid points).

#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>

#include "diffuse/detail/step_kernel.hpp"
#include "diffuse/error.hpp"
#include "diffuse/samplers/flow_sigmas.hpp"
#include "diffuse/samplers/solver.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// Options of the flow Euler solver.
struct flow_euler_options {
  /// diffusers' stochastic_sampling: re-noise x̂0 to the next σ with fresh noise instead of the Euler step
  /// (not with a noise-at-zero grid, where diffusers' formula would treat 1 − σ as the noise level).
  bool stochastic_sampling = false;
  bool check_finite = true;  ///< a [diffuse.numeric] error on NaN or Inf
  bool vectorize = true;     ///< false: the scalar reference loop (same bits)
};

/// Flow-matching Euler (FlowMatchEulerDiscreteScheduler), for models that predict a velocity.
///
/// Example:
/// \code
/// const diffuse::flow_euler_sampler solver(28, {.shift = 3.0});   // SD3's scheduler_config
/// auto model = [&](std::span<const float> x, double t, std::span<float> out) { net(x, t, out); };  // t = σ·1000
/// diffuse::solve(solver, model, std::span<float>(x), shape, {.seed = 42});
/// \endcode
class flow_euler_sampler {
 public:
  /// The model time is fractional (σ·num_train_timesteps).
  static constexpr bool fractional_time = true;

  /// The solver of diffusers' set_timesteps(N, mu=grid.mu).
  /// \throws diffuse::error as flow_match_times, and for stochastic sampling on an inverted grid.
  flow_euler_sampler(int num_inference_steps, const flow_match_options& grid = {}, flow_euler_options options = {})
      : flow_euler_sampler(flow_match_times(num_inference_steps, grid), options) {}
  /// The solver over a given grid (flow_match_custom_sigmas, flow_uniform_times, …).
  /// \throws diffuse::error for a grid that is not N + 1 strictly monotone times in [0, 1] with N model
  ///         times, or for stochastic sampling on a noise-at-zero grid.
  explicit flow_euler_sampler(flow_times times, flow_euler_options options = {})
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
    if (options_.stochastic_sampling && times_.noise_at_zero)
      detail::fail(error_kind::sampler, "stochastic_sampling with a noise-at-zero grid (invert_sigmas); expected one of them "
                                        "(the re-noising step needs t to be the noise level)");
  }

  /// N, the number of steps.
  int num_steps() const noexcept { return times_.num_steps(); }
  /// The grid's time t_k at position k (0 … N): what the step moves along.
  double time(int k) const { return times_.times.at(static_cast<std::size_t>(k)); }
  /// σ_k, the noise level at position k (0 … N): t_k, or 1 − t_k on a noise-at-zero grid.
  double sigma(int k) const { return times_.noise_level(k); }
  /// The (fractional) time the model is given at position k.
  double model_time(int k) const {
    detail::check_position(k, num_steps());
    return times_.model_times[static_cast<std::size_t>(k)];
  }
  /// 1: the model sees the state itself.
  double input_scale(int) const noexcept { return 1.0; }
  /// 1: the chain starts from standard normal noise.
  double initial_scale() const noexcept { return 1.0; }
  /// ᾱ of the VP process with the same signal-to-noise ratio, (1 − σ)²/((1 − σ)² + σ²), for guidance hooks.
  double guidance_alpha_bar(int k) const {
    const double s = sigma(k), a = 1.0 - s;
    return a * a / (a * a + s * s);
  }
  /// The state at position k is (1 − σ_k)·x0 + σ_k·ε (diffusers' scale_noise): {1 − σ_k, σ_k}.
  std::pair<double, double> noising(int k) const { return {1.0 - sigma(k), sigma(k)}; }
  /// Whether the step at k draws noise (stochastic sampling into a σ above 0).
  bool adds_noise(int k) const { return options_.stochastic_sampling && time(k + 1) > 0.0; }
  /// The grid.
  const flow_times& times() const noexcept { return times_; }
  /// The options it was built with.
  const flow_euler_options& options() const noexcept { return options_; }
  /// This solver's identity (copies share it), for solver_state checks.
  std::uint64_t id() const noexcept { return id_; }
  /// 0: a one-step method keeps no history.
  std::size_t history_slots() const noexcept { return 0; }
  /// An empty state bound to this solver and shape.
  template <Real Scalar>
  solver_state<Scalar> make_state(const sample_shape& shape) const {
    return solver_state<Scalar>(id_, 0, shape);
  }

  /// One step: one fused pass over x, the velocity and (stochastic) the noise.
  /// \throws diffuse::error for a bad position, buffer sizes, a foreign state, or NaN / Inf (check_finite).
  template <Real Scalar>
  void step(int k, const solver_buffers<Scalar>& io, const sample_shape& shape, solver_state<Scalar>& state) const {
    detail::check_position(k, num_steps());
    state.check(id(), shape, k, "flow_euler_sampler");
    const bool noisy = adds_noise(k);
    detail::check_solver_buffers(io, shape, noisy);
    const double t = time(k), tn = time(k + 1);
    const bool stochastic = options_.stochastic_sampling;
    const auto dt = static_cast<Scalar>(tn - t);
    // x̂0 = x − σ·v with the velocity ε − x0; on a noise-at-zero grid the output is x0 − ε: x̂0 = x + σ·out.
    const auto x0_coef = static_cast<Scalar>(times_.noise_at_zero ? sigma(k) : -t);
    const auto keep = static_cast<Scalar>(1.0 - tn), renoise = static_cast<Scalar>(tn);
    const bool check = options_.check_finite;
    // The model input is the state itself (input_scale 1), so a next_model_input buffer receives a copy.
    detail::run_one_step_pass<Scalar>(k, static_cast<int>(std::lround(model_time(k))), io, shape, noisy, options_.vectorize, check, Scalar(1),
                                      [=]<class V>(V xv, V ov, V z, auto noisy_c) {
      const V x0 = xv + V(x0_coef) * ov;
      V next = stochastic ? x0 * V(keep) : xv + V(dt) * ov;
      if constexpr (decltype(noisy_c)::value) next = next + z * V(renoise);
      return detail::one_step_values<V>{x0, next};
    });
    state.advance(k);
  }

 private:
  flow_times times_;
  flow_euler_options options_;
  std::uint64_t id_ = 0;
};

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
