#pragma once
/// \file
/// The time grid of flow-matching (rectified-flow) models: diffusers' FlowMatchEulerDiscreteScheduler
/// set_timesteps() (shift, resolution-dependent shifting with μ, shift_terminal, invert_sigmas, custom
/// sigmas or timesteps) and the plain grid of N equal steps that robot-policy flow models integrate (SPEC §12);
/// also the flow sigmas of the multistep solvers (DPMSolverMultistepScheduler's and UniPCMultistepScheduler's
/// use_flow_sigmas, which build their grids differently: dpm_solver_flow_sigmas, unipc_flow_sigmas).
///
/// A flow model sees x_σ = (1 − σ)·x0 + σ·ε, σ ∈ [0, 1], and predicts the velocity v = dx/dσ = ε − x0.
/// The grid is a list of N + 1 times t_0 … t_N (diffusers' scheduler.sigmas, the final one appended) and
/// the N model times the network is given; an Euler step moves x by (t_{k+1} − t_k)·v. Normally t = σ and
/// the list falls from near 1 (noise) to 0 (data). With invert_sigmas (Mochi) or a policy that integrates
/// from 0 to 1, t = 1 − σ rises from noise at 0 to data at 1, and the model's output is dx/dt = x0 − ε;
/// the Euler step is the same formula either way.
///
/// diffusers applies the shift twice when no custom list is given (diffusers issue 13243): the training
/// table's σ_min is already shifted, set_timesteps spaces N points from 1 to that σ_min and then shifts
/// every point again, so the last σ is shift(shift(1/T)) instead of shift(1/T) and the interior points
/// move slightly toward it. flow_match_options::shift_twice reproduces that (the default, so a
/// FlowMatchEulerDiscreteScheduler config gives the grid its diffusers pipeline used); false spaces the
/// points to the unshifted 1/T and shifts once. With shift = 1, with dynamic shifting and with custom
/// sigmas or timesteps the two are the same.

#include <cmath>
#include <cstddef>
#include <optional>
#include <vector>

#include "diffuse/error.hpp"
#include "diffuse/samplers/sigmas.hpp"
#include "diffuse/schedule.hpp"
#include "diffuse/version.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// How use_dynamic_shifting bends the grid with μ (diffusers' time_shift_type).
enum class flow_time_shift_type {
  exponential,  ///< σ' = e^μ / (e^μ + (1/σ − 1)) (Flux, SD3 with dynamic shifting)
  linear,       ///< σ' = μ / (μ + (1/σ − 1)), μ > 0
};

/// Options of the flow-matching grid, named as FlowMatchEulerDiscreteScheduler's config keys, plus μ
/// (an argument of set_timesteps).
struct flow_match_options {
  int num_train_timesteps = 1000;  ///< num_train_timesteps: the model time is t·num_train_timesteps
  double shift = 1.0;              ///< shift: σ' = s·σ / (1 + (s − 1)·σ), s > 0 (ignored with dynamic shifting)
  bool use_dynamic_shifting = false;  ///< use_dynamic_shifting: shift by μ instead (then mu is required)
  std::optional<double> mu = std::nullopt;  ///< set_timesteps(mu=): e.g. flow_calculate_shift(image_seq_len)
  flow_time_shift_type time_shift_type = flow_time_shift_type::exponential;  ///< time_shift_type
  /// shift_terminal: stretch the shifted σ so that the last one (before the appended 0) equals it, in (0, 1).
  std::optional<double> shift_terminal = std::nullopt;
  bool invert_sigmas = false;  ///< invert_sigmas (Mochi): t = 1 − σ, rising to an appended 1
  /// Reproduce diffusers' double shift of σ_min when no custom list is given (see the file comment);
  /// false: space the points from 1 to 1/T and shift once.
  bool shift_twice = true;
};

/// The line diffusers' Flux-family pipelines use to pick μ from the image sequence length (calculate_shift),
/// with the defaults of their scheduler configs (base_image_seq_len, max_image_seq_len, base_shift, max_shift).
struct flow_shift_line {
  double base_seq_len = 256;   ///< base_image_seq_len
  double max_seq_len = 4096;   ///< max_image_seq_len
  double base_shift = 0.5;     ///< base_shift: μ at base_seq_len
  double max_shift = 1.15;     ///< max_shift: μ at max_seq_len
};

/// The grid of a flow-matching solver: N + 1 times and N model times.
struct flow_times {
  /// t_0 … t_N: diffusers' scheduler.sigmas with the final 0 (or 1 when noise_at_zero) appended; strictly
  /// monotone. A step moves x by (t_{k+1} − t_k)·(model output).
  std::vector<double> times;
  std::vector<double> model_times;  ///< the value the model is given at position k (N entries)
  bool noise_at_zero = false;       ///< t = 1 − σ: noise at t = 0, data at t = 1 (invert_sigmas, 0 → 1 policies)

  /// N, the number of steps.
  int num_steps() const noexcept { return static_cast<int>(model_times.size()); }
  /// σ at position k (0 … N), the noise level of x = (1 − σ)·x0 + σ·ε: t_k, or 1 − t_k when noise_at_zero.
  double noise_level(int k) const { return noise_at_zero ? 1.0 - times.at(static_cast<std::size_t>(k)) : times.at(static_cast<std::size_t>(k)); }
};

/// Which end of [0, 1] the noise is at, for flow_uniform_times.
enum class flow_direction {
  noise_at_one,   ///< t falls 1 → 0, x_t = t·ε + (1 − t)·x0, output ε − x0 (diffusers, π0 / openpi)
  noise_at_zero,  ///< t rises 0 → 1, x_t = (1 − t)·ε + t·x0, output x0 − ε (policies that integrate forward)
};

/// diffusers' static shift of one σ: s·σ / (1 + (s − 1)·σ).
inline double flow_shift_sigma(double sigma, double shift) { return shift * sigma / (1.0 + (shift - 1.0) * sigma); }

/// diffusers' time_shift(μ, 1, σ): exponential e^μ/(e^μ + (1/σ − 1)), or linear μ/(μ + (1/σ − 1)).
inline double flow_time_shift(double sigma, double mu, flow_time_shift_type type) {
  const double r = 1.0 / sigma - 1.0;
  if (type == flow_time_shift_type::exponential) return std::exp(mu) / (std::exp(mu) + r);
  return mu / (mu + r);
}

/// μ for an image of image_seq_len latent tokens: the line through (base_seq_len, base_shift) and
/// (max_seq_len, max_shift), as diffusers' calculate_shift (not clamped: longer sequences extrapolate).
/// \throws diffuse::error unless the two lengths differ and every value is finite.
inline double flow_calculate_shift(double image_seq_len, const flow_shift_line& line = {}) {
  if (!std::isfinite(image_seq_len) || !std::isfinite(line.base_seq_len) || !std::isfinite(line.max_seq_len) ||
      !std::isfinite(line.base_shift) || !std::isfinite(line.max_shift) || line.max_seq_len == line.base_seq_len)
    detail::fail(error_kind::argument, "calculate_shift with image_seq_len = ", image_seq_len, ", base_seq_len = ", line.base_seq_len,
                 ", max_seq_len = ", line.max_seq_len, ", base_shift = ", line.base_shift, ", max_shift = ", line.max_shift,
                 "; expected finite values and base_seq_len != max_seq_len");
  const double m = (line.max_shift - line.base_shift) / (line.max_seq_len - line.base_seq_len);
  const double b = line.base_shift - m * line.base_seq_len;
  return image_seq_len * m + b;
}

namespace detail {

inline void check_flow_options(const flow_match_options& o) {
  if (o.num_train_timesteps < 1 || o.num_train_timesteps > 1000000)
    fail(error_kind::timesteps, "num_train_timesteps = ", o.num_train_timesteps, "; expected 1 to 1000000");
  if (!o.use_dynamic_shifting && !(o.shift > 0.0 && std::isfinite(o.shift)))
    fail(error_kind::timesteps, "flow shift = ", o.shift, "; expected a finite shift > 0 (1: no shift)");
  if (o.use_dynamic_shifting) {
    if (!o.mu)
      fail(error_kind::timesteps, "use_dynamic_shifting without mu; expected mu (e.g. flow_calculate_shift(image_seq_len)), as "
                                  "diffusers' set_timesteps(mu=...) requires");
    if (!std::isfinite(*o.mu)) fail(error_kind::timesteps, "mu = ", *o.mu, "; expected a finite mu");
    if (o.time_shift_type == flow_time_shift_type::linear && !(*o.mu > 0.0))
      fail(error_kind::timesteps, "mu = ", *o.mu, " with the linear time shift; expected mu > 0 (mu / (mu + 1/sigma - 1))");
    if (o.time_shift_type == flow_time_shift_type::exponential && *o.mu > 700.0)
      fail(error_kind::timesteps, "mu = ", *o.mu, "; expected mu <= 700 (exp(mu) must be finite)");
  } else if (o.mu) {
    fail(error_kind::timesteps, "mu = ", *o.mu, " without use_dynamic_shifting; expected mu only with use_dynamic_shifting (the "
                                "static shift is `shift`)");
  }
  if (o.shift_terminal && !(*o.shift_terminal > 0.0 && *o.shift_terminal < 1.0))
    fail(error_kind::timesteps, "shift_terminal = ", *o.shift_terminal, "; expected 0 < shift_terminal < 1");
}

/// Steps 2–6 of set_timesteps on N base sigmas: shift, stretch to shift_terminal, times, invert, append.
inline flow_times finish_flow_times(std::vector<double> s, const flow_match_options& o) {
  for (auto& v : s) v = o.use_dynamic_shifting ? flow_time_shift(v, *o.mu, o.time_shift_type) : flow_shift_sigma(v, o.shift);
  if (o.shift_terminal) {
    const double last = 1.0 - s.back();
    if (!(last > 0.0))
      fail(error_kind::timesteps, "shift_terminal with a grid whose last sigma is ", s.back(),
           "; expected a last sigma below 1 (at least 2 steps) to stretch toward shift_terminal");
    const double scale = last / (1.0 - *o.shift_terminal);
    for (auto& v : s) v = 1.0 - (1.0 - v) / scale;
  }
  const double T = o.num_train_timesteps;
  flow_times out;
  out.noise_at_zero = o.invert_sigmas;
  for (auto& v : s) {
    if (o.invert_sigmas) v = 1.0 - v;
    out.model_times.push_back(v * T);
  }
  s.push_back(o.invert_sigmas ? 1.0 : 0.0);
  for (std::size_t i = 0; i < s.size(); ++i) {
    const double v = s[i];
    const bool ok = std::isfinite(v) && v >= 0.0 && v <= 1.0 &&
                    (i == 0 || (o.invert_sigmas ? v > s[i - 1] : v < s[i - 1]));
    if (!ok)
      fail(error_kind::timesteps, "flow time ", i, " = ", v, " after shifting", i > 0 ? detail::cat(" (the one before is ", s[i - 1], ")") : std::string(),
           "; expected times in [0, 1], strictly ", o.invert_sigmas ? "increasing" : "decreasing", " to the appended ",
           o.invert_sigmas ? "1" : "0");
  }
  out.times = std::move(s);
  return out;
}

inline void check_flow_list(const std::vector<double>& v, const char* what) {
  if (v.empty()) fail(error_kind::timesteps, "an empty list of custom ", what, "; expected at least one");
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!(std::isfinite(v[i]) && v[i] > 0.0))
      fail(error_kind::timesteps, "custom ", what, " ", i, " = ", v[i], "; expected finite values > 0 (the final 0 is appended)");
    if (i > 0 && !(v[i] < v[i - 1]))
      fail(error_kind::timesteps, "custom ", what, " are not strictly decreasing at entry ", i, " (", v[i - 1], " then ", v[i], "); expected ",
           what, "_0 > ", what, "_1 > ...");
  }
}

}  // namespace detail

/// The grid of FlowMatchEulerDiscreteScheduler.set_timesteps(N, mu=o.mu).
///
/// Base sigmas: linspace(σ_max·T, σ_min·T, N)/T with σ_max, σ_min the first and last entries of the
/// training table (shift(1) and shift(1/T) unless dynamic shifting; see flow_match_options::shift_twice), then the shift (or the
/// μ time shift), the shift_terminal stretch, invert_sigmas, and the appended final time. Model times are
/// t·num_train_timesteps, fractional.
///
/// Example:
/// \code
/// auto grid = diffuse::flow_match_times(28, {.shift = 3.0});  // SD3's config
/// auto flux = diffuse::flow_match_times(28, {.use_dynamic_shifting = true, .mu = diffuse::flow_calculate_shift(4096)});
/// \endcode
/// \throws diffuse::error for N < 1, shift <= 0 or NaN, dynamic shifting without μ (or μ without it),
///         a shift_terminal outside (0, 1), or a grid that is not strictly monotone in [0, 1].
inline flow_times flow_match_times(int num_inference_steps, const flow_match_options& o = {}) {
  detail::check_flow_options(o);
  if (num_inference_steps < 1 || num_inference_steps > o.num_train_timesteps)
    detail::fail(error_kind::timesteps, "num_inference_steps = ", num_inference_steps, "; expected 1 to num_train_timesteps = ", o.num_train_timesteps);
  const double T = o.num_train_timesteps;
  const double table_min = 1.0 / T;  // the training table's last σ, 1/T, before its shift
  const double sigma_min = (!o.use_dynamic_shifting && o.shift_twice) ? flow_shift_sigma(table_min, o.shift) : table_min;
  // The table's first σ, T/T = 1, shifted as the table is (s/(1 + (s − 1)) need not round to exactly 1).
  const double sigma_max = (!o.use_dynamic_shifting && o.shift_twice) ? flow_shift_sigma(1.0, o.shift) : 1.0;
  // numpy.linspace(σ_max·T, σ_min·T, N) then divided by T, in diffusers' order of operations.
  const double start = sigma_max * T, stop = sigma_min * T;
  std::vector<double> s(static_cast<std::size_t>(num_inference_steps));
  const int n = num_inference_steps;
  if (n == 1) {
    s[0] = start;
  } else {
    const double step = (stop - start) / static_cast<double>(n - 1);
    for (int i = 0; i < n; ++i) s[static_cast<std::size_t>(i)] = start + static_cast<double>(i) * step;
    s.back() = stop;
  }
  for (auto& v : s) v /= T;
  return detail::finish_flow_times(std::move(s), o);
}

/// The grid of set_timesteps(sigmas=...): the given N sigmas, shifted (diffusers shifts custom sigmas
/// too), stretched, inverted and finished as flow_match_times. Flux-style pipelines pass
/// linspace(1, 1/N, N) here with dynamic shifting.
/// \throws diffuse::error unless the sigmas are finite, > 0 and strictly decreasing, and as flow_match_times.
inline flow_times flow_match_custom_sigmas(std::vector<double> sigmas, const flow_match_options& o = {}) {
  detail::check_flow_options(o);
  detail::check_flow_list(sigmas, "sigmas");
  return detail::finish_flow_times(std::move(sigmas), o);
}

/// The grid of set_timesteps(timesteps=...): σ = timestep / num_train_timesteps, then as
/// flow_match_custom_sigmas (the model times are recomputed from the shifted σ, as diffusers does).
/// \throws diffuse::error unless the timesteps are finite, > 0 and strictly decreasing, and as flow_match_times.
inline flow_times flow_match_custom_timesteps(std::vector<double> timesteps, const flow_match_options& o = {}) {
  detail::check_flow_options(o);
  detail::check_flow_list(timesteps, "timesteps");
  for (auto& v : timesteps) v /= static_cast<double>(o.num_train_timesteps);
  return detail::finish_flow_times(std::move(timesteps), o);
}

/// N equal steps over [0, 1], the loop flow-matching robot policies run: t_k = 1 − k/N (noise_at_one) or
/// k/N (noise_at_zero), each computed directly rather than accumulated, and model time t_k·time_scale
/// (1 for policies that take t in [0, 1], 1000 for diffusers-style timesteps).
///
/// Example:
/// \code
/// diffuse::flow_euler_sampler policy(diffuse::flow_uniform_times(10, diffuse::flow_direction::noise_at_one));
/// \endcode
/// \throws diffuse::error for N < 1 or a time_scale that is not finite and > 0.
inline flow_times flow_uniform_times(int num_steps, flow_direction direction = flow_direction::noise_at_one, double time_scale = 1.0) {
  if (num_steps < 1 || num_steps > 1000000)
    detail::fail(error_kind::timesteps, "num_steps = ", num_steps, "; expected 1 to 1000000");
  if (!(time_scale > 0.0 && std::isfinite(time_scale)))
    detail::fail(error_kind::timesteps, "time_scale = ", time_scale, "; expected a finite scale > 0");
  flow_times out;
  out.noise_at_zero = direction == flow_direction::noise_at_zero;
  const double n = num_steps;
  for (int k = 0; k <= num_steps; ++k) {
    const double u = static_cast<double>(k) / n;
    out.times.push_back(out.noise_at_zero ? u : 1.0 - u);
  }
  for (int k = 0; k < num_steps; ++k) out.model_times.push_back(out.times[static_cast<std::size_t>(k)] * time_scale);
  return out;
}

/// Options of the flow sigmas of DPM-Solver++ and UniPC (diffusers' use_flow_sigmas = true with
/// prediction_type flow_prediction), named as those classes' config keys.
struct multistep_flow_options {
  double flow_shift = 1.0;  ///< flow_shift: σ' = s·σ / (1 + (s − 1)·σ), s > 0
  /// set_timesteps(mu=) with use_dynamic_shifting: DPM-Solver++ then shifts by e^μ (exponential only),
  /// UniPC applies the time shift of time_shift_type with μ instead of flow_shift.
  std::optional<double> mu = std::nullopt;
  flow_time_shift_type time_shift_type = flow_time_shift_type::exponential;  ///< time_shift_type (UniPC; DPM-Solver++: exponential)
  std::optional<double> shift_terminal = std::nullopt;  ///< shift_terminal (UniPC only), in (0, 1)
  final_sigma final_type = final_sigma::zero;           ///< final_sigmas_type
};

namespace detail {
inline void check_multistep_flow(const noise_schedule& schedule, int n, const multistep_flow_options& o, const char* solver) {
  if (n < 1 || n > schedule.size())
    fail(error_kind::timesteps, "num_inference_steps = ", n, " with flow sigmas; expected 1 to num_train_timesteps = ", schedule.size());
  if (!o.mu && !(o.flow_shift > 0.0 && std::isfinite(o.flow_shift)))
    fail(error_kind::timesteps, "flow_shift = ", o.flow_shift, "; expected a finite flow_shift > 0 (1: no shift)");
  if (o.mu && !(std::isfinite(*o.mu) && *o.mu <= 700.0))
    fail(error_kind::timesteps, "mu = ", *o.mu, " with ", solver, "'s flow sigmas; expected a finite mu <= 700");
  if (o.shift_terminal && !(*o.shift_terminal > 0.0 && *o.shift_terminal < 1.0))
    fail(error_kind::timesteps, "shift_terminal = ", *o.shift_terminal, "; expected 0 < shift_terminal < 1");
}

/// Model times of flow sigmas: σ·T truncated to an integer, as diffusers' cast to int64.
inline sigma_list finish_multistep_flow(std::vector<double> s, double final_value, int T) {
  sigma_list out;
  out.flow = true;
  for (double v : s) out.model_times.push_back(std::trunc(v * static_cast<double>(T)));
  s.push_back(final_value);
  out.sigmas = std::move(s);
  return out;
}
}  // namespace detail

/// The flow sigmas of DPMSolverMultistepScheduler.set_timesteps(N) with use_flow_sigmas: σ_j =
/// shift(1 − a_{N−j}) for j = 0 … N − 1 with a = linspace(1, 1/T, N + 1) (so σ_0 = shift(1 − 1/T) < 1),
/// shift = flow_shift, or e^μ when μ is given (use_dynamic_shifting); model times trunc(σ·T); the final σ
/// 0 (final_sigmas_type zero) or the VP σ of the schedule's first timestep, √((1 − ᾱ_0)/ᾱ_0)
/// (sigma_min, as diffusers computes it even for flow sigmas). The list is marked `flow`: α = 1 − σ.
///
/// Example:
/// \code
/// const diffuse::dpm_solver_sampler solver(diffuse::dpm_solver_flow_sigmas(schedule, 20, {.flow_shift = 3.0}),
///                                          {.prediction = diffuse::prediction_type::flow_prediction});
/// \endcode
/// \throws diffuse::error for N outside 1 … T, flow_shift <= 0, a μ that is not finite, the linear time
///         shift or shift_terminal (DPMSolverMultistepScheduler has neither), or a list that is not strictly
///         decreasing (a final sigma_min above the last flow σ).
inline sigma_list dpm_solver_flow_sigmas(const noise_schedule& schedule, int num_inference_steps, const multistep_flow_options& o = {}) {
  detail::check_multistep_flow(schedule, num_inference_steps, o, "DPM-Solver++");
  if (o.mu && o.time_shift_type != flow_time_shift_type::exponential)
    detail::fail(error_kind::timesteps, "mu with the linear time shift in DPM-Solver++'s flow sigmas; expected time_shift_type exponential "
                                        "(diffusers sets flow_shift = exp(mu) and accepts nothing else)");
  if (o.shift_terminal)
    detail::fail(error_kind::timesteps, "shift_terminal with DPM-Solver++'s flow sigmas; expected none (DPMSolverMultistepScheduler has "
                                        "no shift_terminal; UniPC has)");
  const int T = schedule.size(), n = num_inference_steps;
  const double shift = o.mu ? std::exp(*o.mu) : o.flow_shift;
  // numpy.linspace(1, 1/T, N + 1): start + i·step, the last point exactly 1/T.
  const double stop = 1.0 / static_cast<double>(T), step = (stop - 1.0) / static_cast<double>(n);
  std::vector<double> s(static_cast<std::size_t>(n));
  for (int j = 0; j < n; ++j) {
    const int i = n - j;  // flipped: σ_0 comes from the last linspace point
    const double a = i == n ? stop : static_cast<double>(i) * step + 1.0;
    s[static_cast<std::size_t>(j)] = flow_shift_sigma(1.0 - a, shift);
  }
  const double ab0 = schedule.alpha_bar(0);
  const auto out = detail::finish_multistep_flow(std::move(s), o.final_type == final_sigma::zero ? 0.0 : std::sqrt((1.0 - ab0) / ab0), T);
  for (std::size_t i = 1; i < out.sigmas.size(); ++i)
    if (!(out.sigmas[i] < out.sigmas[i - 1]))
      detail::fail(error_kind::timesteps, "flow sigma ", i, " = ", out.sigmas[i], " after ", out.sigmas[i - 1],
                   "; expected strictly decreasing flow sigmas (with final_sigmas_type sigma_min the schedule's smallest VP sigma must lie "
                   "below the last flow sigma: use fewer steps or final_sigmas_type zero)");
  return out;
}

/// The flow sigmas of UniPCMultistepScheduler.set_timesteps(N) with use_flow_sigmas: linspace(1, 1/T, N + 1)
/// without its last point, shifted by flow_shift (or, with μ, the time shift of time_shift_type), stretched
/// to shift_terminal, and σ_0 lowered by 10⁻⁶ when within 10⁻⁶ of 1 (diffusers' guard against log 0); model
/// times trunc(σ·T); the final σ 0 (zero) or a repeat of the last σ (sigma_min: the last step is then
/// the identity). The list is marked `flow`: α = 1 − σ.
/// \throws diffuse::error for N outside 1 … T, flow_shift <= 0, a μ that is not finite (or <= 0 with the
///         linear shift), a shift_terminal outside (0, 1) or with N = 1.
inline sigma_list unipc_flow_sigmas(const noise_schedule& schedule, int num_inference_steps, const multistep_flow_options& o = {}) {
  detail::check_multistep_flow(schedule, num_inference_steps, o, "UniPC");
  if (o.mu && o.time_shift_type == flow_time_shift_type::linear && !(*o.mu > 0.0))
    detail::fail(error_kind::timesteps, "mu = ", *o.mu, " with the linear time shift; expected mu > 0");
  const int T = schedule.size(), n = num_inference_steps;
  const double stop = 1.0 / static_cast<double>(T), step = (stop - 1.0) / static_cast<double>(n);
  std::vector<double> s(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    const double base = static_cast<double>(i) * step + 1.0;
    s[static_cast<std::size_t>(i)] = o.mu ? flow_time_shift(base, *o.mu, o.time_shift_type) : flow_shift_sigma(base, o.flow_shift);
  }
  if (o.shift_terminal) {
    const double last = 1.0 - s.back();
    if (!(last > 0.0))
      detail::fail(error_kind::timesteps, "shift_terminal with a grid whose last sigma is ", s.back(), "; expected at least 2 steps");
    const double scale = last / (1.0 - *o.shift_terminal);
    for (auto& v : s) v = 1.0 - (1.0 - v) / scale;
  }
  if (std::abs(s.front() - 1.0) < 1e-6) s.front() -= 1e-6;
  const double final_value = o.final_type == final_sigma::zero ? 0.0 : s.back();
  auto out = detail::finish_multistep_flow(std::move(s), final_value, T);
  for (std::size_t i = 0; i < out.sigmas.size(); ++i)
    if (!detail::valid_list_sigma(out.sigmas, i) || out.sigmas[i] >= 1.0)
      detail::fail(error_kind::timesteps, "flow sigma ", i, " = ", out.sigmas[i], "; expected flow sigmas in [0, 1), strictly decreasing");
  return out;
}

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
