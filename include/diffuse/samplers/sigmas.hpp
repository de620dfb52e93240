#pragma once
/// \file
/// The sigma-space timestep layer shared by the continuous-time solvers: σ_t = √((1 − ᾱ_t)/ᾱ_t), the
/// Karras (ρ), exponential, beta and Lu-λ sigma schedules, final_sigmas_type, diffusers' three spacings and
/// the log-σ interpolation that maps a σ back to a (fractional) training time (SPEC §12).
///
/// Two builders follow the two diffusers families, because they differ in more than naming:
/// - dpm_solver_sigmas(): DPMSolverMultistepScheduler / UniPCMultistepScheduler. The list has N + 1
///   points of which the first N are used (leading divides by N + 1), Karras and exponential ends come
///   from the whole training table, and the model time is an integer: rounded for Karras and Lu λ,
///   truncated for exponential (diffusers' astype(int64)).
/// - euler_sigmas(): EulerDiscreteScheduler / EulerAncestralDiscreteScheduler. N points, the base σ is
///   interpolated linearly in t at fractional timesteps, Karras and exponential ends come from those N
///   values, and the model time stays fractional (never rounded).

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "diffuse/error.hpp"
#include "diffuse/schedule.hpp"
#include "diffuse/timesteps.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// How the inference sigmas are spread between σ_max and σ_min.
enum class sigma_kind {
  timesteps,    ///< σ of the spaced timesteps themselves (diffusers' default)
  karras,       ///< Karras et al.: (σ_max^{1/ρ} + i/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ (use_karras_sigmas)
  exponential,  ///< log-linear from σ_max to σ_min (use_exponential_sigmas)
  lu_lambdas,   ///< Lu et al.'s uniform λ = −log σ (use_lu_lambdas; DPM-Solver family only)
  beta,         ///< Lee et al.'s beta-distribution spacing, α = β = 0.6 (use_beta_sigmas; see beta_sigmas())
};

/// Where the last step lands.
enum class final_sigma {
  zero,       ///< σ = 0: the last step returns the data prediction x̂0 (a limit, computed as such)
  sigma_min,  ///< σ = σ_0 of the training table (the last step stays at the table's smallest noise)
};

/// EulerDiscreteScheduler's interpolation_type.
enum class sigma_interpolation {
  linear,      ///< σ at a fractional t interpolated linearly between table entries
  log_linear,  ///< N + 1 sigmas log-uniform from the table's σ_{T−1} to σ_0 (the timesteps keep the spacing's values)
};

/// Options of the sigma layer, named as diffusers' scheduler_config.json keys.
struct sigma_options {
  timestep_spacing spacing = timestep_spacing::linspace;  ///< timestep_spacing
  int steps_offset = 0;                                   ///< steps_offset (leading spacing only)
  sigma_kind kind = sigma_kind::timesteps;                ///< use_karras_sigmas / use_exponential_sigmas / use_lu_lambdas
  final_sigma final_type = final_sigma::zero;             ///< final_sigmas_type
  double rho = 7.0;                                       ///< Karras ρ (diffusers fixes 7)
  std::optional<double> sigma_min = std::nullopt;                      ///< overrides σ_min of Karras / exponential (Euler's sigma_min)
  std::optional<double> sigma_max = std::nullopt;                      ///< overrides σ_max (Euler's sigma_max)
  /// DPM-Solver's lambda_min_clipped: training timesteps whose λ = log √ᾱ − log √(1 − ᾱ) is below it are
  /// cut from the top of the spacing (−∞: none; 5.1 is diffusers' advice for cosine schedules).
  double lambda_min_clipped = -HUGE_VAL;
  /// Euler's interpolation_type (log_linear ignores final_type: its N + 1 sigmas end at σ_0).
  sigma_interpolation interpolation = sigma_interpolation::linear;
};

/// The sigma list of a solver: N model times, N + 1 sigmas (the last is the σ the chain ends at).
struct sigma_list {
  std::vector<double> sigmas;       ///< σ_0 > σ_1 > … > σ_N ≥ 0 (position k steps from sigmas[k] to sigmas[k+1])
  std::vector<double> model_times;  ///< the training-time value the model is given at position k (N entries)
  /// Flow sigmas (diffusers' use_flow_sigmas, for DPM-Solver++ and UniPC only): σ ∈ [0, 1) is the flow
  /// noise level, x = (1 − σ)·x0 + σ·ε, so α = 1 − σ and σ_VP = σ instead of 1/√(σ² + 1) and σ·α.
  bool flow = false;

  /// α at σ: 1 − σ for flow sigmas, 1/√(σ² + 1) otherwise.
  double alpha(double sigma) const { return flow ? 1.0 - sigma : 1.0 / std::sqrt(sigma * sigma + 1.0); }
  /// σ_VP at σ (the noise factor of the state): σ for flow sigmas, σ·α otherwise.
  double sigma_vp(double sigma) const { return flow ? sigma : sigma * alpha(sigma); }
};

/// σ_t = √((1 − ᾱ_t)/ᾱ_t) for every training timestep t (increasing in t, except as below).
///
/// A zero-terminal-SNR schedule (rescaled_zero_terminal_snr, diffusers' rescale_betas_zero_snr) has
/// ᾱ_{T−1} = 0; diffusers' sigma-space schedulers replace it by 2^−24, so σ_{T−1} ≈ 4096 is finite, and
/// so does this table. (That value is above ᾱ_{T−2} for common schedules: the table's last σ is then
/// below the one before it, exactly as in diffusers.)
inline std::vector<double> training_sigmas(const noise_schedule& schedule) {
  std::vector<double> s(static_cast<std::size_t>(schedule.size()));
  for (int t = 0; t < schedule.size(); ++t) {
    double ab = schedule.alpha_bar(t);
    if (ab == 0.0 && t == schedule.size() - 1) ab = std::ldexp(1.0, -24);
    s[static_cast<std::size_t>(t)] = std::sqrt((1.0 - ab) / ab);
  }
  return s;
}

/// The training time of a σ by linear interpolation of log σ over the table (diffusers' _sigma_to_t):
/// the lower node is the last t with log σ_t ≤ log σ (clamped to [0, T − 2]), the weight is clipped to
/// [0, 1], so σ outside the table maps to 0 or T − 1. The result is fractional; whether a solver rounds
/// it is the solver's rule (see the file comment).
inline double sigma_to_t(double sigma, const std::vector<double>& log_sigmas) {
  const std::size_t n = log_sigmas.size();
  if (n < 2) return 0.0;
  const double ls = std::log(std::max(sigma, 1e-10));
  // argmax(cumsum(log σ_i ≤ log σ)): the last i where it holds (0 if none), as diffusers computes it,
  // which matters only where the table is not increasing (a zero-terminal-SNR end).
  std::size_t last = 0;
  for (std::size_t i = 0; i < n; ++i)
    if (log_sigmas[i] <= ls) last = i;
  const std::size_t low = std::min(last, n - 2), high = low + 1;
  const double lo = log_sigmas[low], hi = log_sigmas[high];
  const double w = std::clamp((lo - ls) / (lo - hi), 0.0, 1.0);
  return (1.0 - w) * static_cast<double>(low) + w * static_cast<double>(high);
}

namespace detail {

/// numpy.linspace(start, stop, num): start + i·step, the last entry exactly stop.
inline std::vector<double> np_linspace(double start, double stop, int num) {
  std::vector<double> v(static_cast<std::size_t>(num));
  if (num == 1) {
    v[0] = start;
    return v;
  }
  const double step = (stop - start) / static_cast<double>(num - 1);
  for (int i = 0; i < num; ++i) v[static_cast<std::size_t>(i)] = start + static_cast<double>(i) * step;
  v.back() = stop;
  return v;
}

/// numpy.interp(x, arange(n), fp) for x in [0, n − 1].
inline double np_interp_index(double x, const std::vector<double>& fp) {
  const std::size_t n = fp.size();
  if (x <= 0.0) return fp.front();
  if (x >= static_cast<double>(n - 1)) return fp.back();
  const auto j = static_cast<std::size_t>(std::floor(x));
  const double slope = (fp[j + 1] - fp[j]);
  return slope * (x - static_cast<double>(j)) + fp[j];
}

inline std::vector<double> karras(double sigma_min, double sigma_max, int n, double rho) {
  const auto ramp = np_linspace(0.0, 1.0, n);
  const double min_inv = std::pow(sigma_min, 1.0 / rho), max_inv = std::pow(sigma_max, 1.0 / rho);
  std::vector<double> s(ramp.size());
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = std::pow(max_inv + ramp[i] * (min_inv - max_inv), rho);
  return s;
}

inline std::vector<double> exponential(double sigma_min, double sigma_max, int n) {
  auto s = np_linspace(std::log(sigma_max), std::log(sigma_min), n);
  for (auto& v : s) v = std::exp(v);
  return s;
}

/// The regularized incomplete beta function I_x(a, b), by the continued fraction of the symmetric
/// expansion (modified Lentz), on the side of the mean where it converges fast, to double precision.
inline double regularized_incomplete_beta(double x, double a, double b) {
  if (x <= 0.0) return 0.0;
  if (x >= 1.0) return 1.0;
  if (x > (a + 1.0) / (a + b + 2.0)) return 1.0 - regularized_incomplete_beta(1.0 - x, b, a);
  const double log_front = a * std::log(x) + b * std::log1p(-x) - (std::lgamma(a) + std::lgamma(b) - std::lgamma(a + b));
  constexpr double tiny = 1e-300, eps = 1e-16;
  double f = 1.0, c = 1.0, d = 0.0;
  for (int i = 0; i <= 400; ++i) {
    const int m = i / 2;
    double numerator;
    if (i == 0) {
      numerator = 1.0;
    } else if (i % 2 == 0) {
      numerator = (m * (b - m) * x) / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
    } else {
      numerator = -((a + m) * (a + b + m) * x) / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
    }
    d = 1.0 + numerator * d;
    d = 1.0 / (std::abs(d) < tiny ? tiny : d);
    c = 1.0 + numerator / c;
    if (std::abs(c) < tiny) c = tiny;
    const double cd = c * d;
    f *= cd;
    if (std::abs(1.0 - cd) < eps) break;
  }
  return std::exp(log_front) * (f - 1.0) / a;
}

/// The quantile function (inverse CDF) of the Beta(a, b) distribution at p ∈ [0, 1], by bisection on
/// I_x(a, b) until the bracket cannot shrink: the answer is as exact as I_x itself (~1e-15 relative).
inline double beta_quantile(double p, double a, double b) {
  if (p <= 0.0) return 0.0;
  if (p >= 1.0) return 1.0;
  double lo = 0.0, hi = 1.0;
  for (int i = 0; i < 2000; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (mid <= lo || mid >= hi) break;
    (regularized_incomplete_beta(mid, a, b) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

/// Lee et al. 2024 ("Beta Sampling is All You Need"), as diffusers' _convert_to_beta: σ_i = σ_min +
/// Q(1 − i/(N−1))·(σ_max − σ_min) with Q the Beta(0.6, 0.6) quantile, i = 0 … N−1: dense at both ends.
inline std::vector<double> beta_sigmas(double sigma_min, double sigma_max, int n, double a = 0.6, double b = 0.6) {
  const auto ramp = np_linspace(0.0, 1.0, n);
  std::vector<double> s(ramp.size());
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = sigma_min + beta_quantile(1.0 - ramp[i], a, b) * (sigma_max - sigma_min);
  return s;
}

/// Whether a final σ repeats the one before it up to rounding (σ_min^{1/ρ} raised to ρ again).
inline bool repeats_last(double last, double final_sigma) { return std::abs(final_sigma - last) <= 1e-12 * last; }

/// Entry i of a solver's sigma list is acceptable: finite, ≥ 0, only the final one 0, each below the
/// one before, except that the final σ may equal the last (Karras or exponential sigmas ending at σ_min
/// followed by a σ_min final, as diffusers builds them, equal up to rounding: that step changes nothing).
inline bool valid_list_sigma(const std::vector<double>& sigmas, std::size_t i) {
  const double s = sigmas[i];
  const bool final_entry = i + 1 == sigmas.size();
  if (!std::isfinite(s) || s < 0.0 || (s == 0.0 && !final_entry)) return false;
  if (i == 0) return true;
  return s < sigmas[i - 1] || (final_entry && s > 0.0 && repeats_last(sigmas[i - 1], s));
}

inline void check_sigma_options(const sigma_options& o, int T, int n) {
  check_counts(T, n);
  if (o.steps_offset != 0 && o.spacing != timestep_spacing::leading)
    fail(error_kind::timesteps, "steps_offset = ", o.steps_offset, " with a spacing other than leading; expected steps_offset = 0 "
                                "(diffusers applies it to leading spacing only)");
  if (o.steps_offset < 0) fail(error_kind::timesteps, "steps_offset = ", o.steps_offset, "; expected >= 0");
  if (o.kind == sigma_kind::karras && !(o.rho > 0.0 && std::isfinite(o.rho)))
    fail(error_kind::timesteps, "Karras rho = ", o.rho, "; expected a finite rho > 0");
  if ((o.sigma_min || o.sigma_max) && o.kind != sigma_kind::karras && o.kind != sigma_kind::exponential && o.kind != sigma_kind::beta)
    fail(error_kind::timesteps, "sigma_min / sigma_max given without Karras, exponential or beta sigmas; expected them only with "
                                "use_karras_sigmas, use_exponential_sigmas or use_beta_sigmas");
  for (const auto& v : {o.sigma_min, o.sigma_max})
    if (v && !(*v > 0.0 && std::isfinite(*v)))
      fail(error_kind::timesteps, "sigma bound ", *v, "; expected a finite sigma > 0");
  if (o.sigma_min && o.sigma_max && !(*o.sigma_min < *o.sigma_max))
    fail(error_kind::timesteps, "sigma_min = ", *o.sigma_min, " is not below sigma_max = ", *o.sigma_max, "; expected sigma_min < sigma_max");
}

}  // namespace detail

/// Which of diffusers' boolean sigma keys is set, as one sigma_kind.
/// \throws diffuse::error when more than one is true (diffusers refuses that too).
inline sigma_kind sigma_kind_from_flags(bool use_karras_sigmas, bool use_exponential_sigmas, bool use_lu_lambdas = false,
                                        bool use_beta_sigmas = false) {
  const int set = int(use_karras_sigmas) + int(use_exponential_sigmas) + int(use_lu_lambdas) + int(use_beta_sigmas);
  if (set > 1)
    detail::fail(error_kind::timesteps, "more than one of use_karras_sigmas, use_exponential_sigmas, use_lu_lambdas, "
                                        "use_beta_sigmas is set; expected at most one sigma schedule");
  if (use_beta_sigmas) return sigma_kind::beta;
  if (use_karras_sigmas) return sigma_kind::karras;
  if (use_exponential_sigmas) return sigma_kind::exponential;
  if (use_lu_lambdas) return sigma_kind::lu_lambdas;
  return sigma_kind::timesteps;
}

/// The sigmas and integer model times of DPMSolverMultistepScheduler.set_timesteps(N).
///
/// Spacing: linspace round(linspace(0, L − 1, N + 1)) reversed without its last point; leading
/// k·⌊L/(N + 1)⌋ + steps_offset for k = N … 1; trailing round(L − k·T/N) − 1, k = 0 … N − 1 (exactly N
/// entries); L = T unless lambda_min_clipped cuts the top. The σ of each timestep is σ_t of the table;
/// Karras / exponential / beta / Lu-λ replace them by N values between the table's σ_0 and σ_{T−1}, and the
/// model time becomes _sigma_to_t(σ) rounded half to even (Karras, Lu λ) or truncated (exponential, beta), as
/// diffusers gives the model an int64 timestep. (diffusers skips the rounding for squaredcos_cap_v2
/// schedules and truncates instead; pass a cosine schedule's list through custom sigmas to get that.)
/// \throws diffuse::error on invalid options (see sigma_options).
inline sigma_list dpm_solver_sigmas(const noise_schedule& schedule, int num_inference_steps, const sigma_options& o = {}) {
  const int T = schedule.size(), N = num_inference_steps;
  if (o.interpolation != sigma_interpolation::linear)
    detail::fail(error_kind::timesteps, "interpolation_type is an Euler key; expected linear for the DPM-Solver family");
  if (o.sigma_min || o.sigma_max)
    detail::fail(error_kind::timesteps, "sigma_min / sigma_max are not keys of the DPM-Solver family; expected them unset "
                                        "(its Karras and exponential ends come from the training table)");
  detail::check_sigma_options(o, T, N);
  const auto table = training_sigmas(schedule);
  std::vector<double> log_sigmas(table.size());
  for (std::size_t i = 0; i < table.size(); ++i) log_sigmas[i] = std::log(table[i]);
  // searchsorted(flip(λ), lambda_min_clipped): how many of the lowest-λ (highest t) entries fall below it.
  int clipped = 0;
  for (int t = T - 1; t >= 0 && -log_sigmas[static_cast<std::size_t>(t)] < o.lambda_min_clipped; --t) ++clipped;
  const int last = T - clipped;
  if (last < 1) detail::fail(error_kind::timesteps, "lambda_min_clipped = ", o.lambda_min_clipped, " removes every timestep; expected a lower bound");
  std::vector<double> ts;
  switch (o.spacing) {
    case timestep_spacing::linspace: {
      const auto v = detail::np_linspace(0.0, static_cast<double>(last - 1), N + 1);
      for (int k = N; k >= 1; --k) ts.push_back(std::nearbyint(v[static_cast<std::size_t>(k)]));
      break;
    }
    case timestep_spacing::leading: {
      const int ratio = last / (N + 1);
      for (int k = N; k >= 1; --k) ts.push_back(static_cast<double>(k * ratio + o.steps_offset));
      break;
    }
    case timestep_spacing::trailing: {
      const double ratio = static_cast<double>(T) / static_cast<double>(N);
      const double delta = (static_cast<double>(last) - ratio) - static_cast<double>(last);  // numpy arange's step
      for (int k = 0; k < N; ++k) ts.push_back(std::nearbyint(static_cast<double>(last) + static_cast<double>(k) * delta) - 1.0);
      break;
    }
  }
  for (double t : ts)
    if (t < 0.0 || t > static_cast<double>(T - 1))
      detail::fail(error_kind::timesteps, "the spacing gives timestep ", t, " outside [0, ", T - 1, "]; expected fewer steps or a smaller steps_offset");
  sigma_list out;
  switch (o.kind) {
    case sigma_kind::timesteps:
      for (double t : ts) out.sigmas.push_back(table[static_cast<std::size_t>(t)]);
      out.model_times = ts;
      break;
    case sigma_kind::karras:
    case sigma_kind::exponential:
    case sigma_kind::beta:
    case sigma_kind::lu_lambdas: {
      out.sigmas = o.kind == sigma_kind::karras ? detail::karras(table.front(), table.back(), N, o.rho)
                   : o.kind == sigma_kind::beta ? detail::beta_sigmas(table.front(), table.back(), N)
                                                : detail::exponential(table.front(), table.back(), N);
      for (double s : out.sigmas) {
        const double t = sigma_to_t(s, log_sigmas);
        const bool truncated = o.kind == sigma_kind::exponential || o.kind == sigma_kind::beta;
        out.model_times.push_back(truncated ? std::trunc(t) : std::nearbyint(t));
      }
      break;
    }
  }
  out.sigmas.push_back(o.final_type == final_sigma::zero ? 0.0 : table.front());
  return out;
}

/// The sigmas and fractional model times of EulerDiscreteScheduler.set_timesteps(N) (also Euler
/// ancestral's, which has no Karras or final_sigmas_type keys: pass the defaults).
///
/// Spacing: linspace(0, T − 1, N) reversed (fractional); leading k·⌊T/N⌋ + steps_offset; trailing
/// round(T − k·T/N) − 1. σ at a fractional t is interpolated linearly between table entries
/// (interpolation_type "linear"). Karras / exponential / beta span [σ_min, σ_max] of those N sigmas (or the
/// sigma_min / sigma_max options), and the model time is _sigma_to_t(σ), not rounded.
/// \throws diffuse::error on invalid options.
inline sigma_list euler_sigmas(const noise_schedule& schedule, int num_inference_steps, const sigma_options& o = {}) {
  const int T = schedule.size(), N = num_inference_steps;
  detail::check_sigma_options(o, T, N);
  if (o.kind == sigma_kind::lu_lambdas)
    detail::fail(error_kind::timesteps, "use_lu_lambdas is a DPM-Solver key; expected Karras or exponential sigmas for Euler");
  if (o.lambda_min_clipped != -HUGE_VAL)
    detail::fail(error_kind::timesteps, "lambda_min_clipped is a DPM-Solver key; expected it unset for Euler");
  const auto table = training_sigmas(schedule);
  std::vector<double> log_sigmas(table.size());
  for (std::size_t i = 0; i < table.size(); ++i) log_sigmas[i] = std::log(table[i]);
  std::vector<double> ts;
  switch (o.spacing) {
    case timestep_spacing::linspace: {
      const auto v = detail::np_linspace(0.0, static_cast<double>(T - 1), N);
      ts.assign(v.rbegin(), v.rend());
      break;
    }
    case timestep_spacing::leading: {
      const int ratio = T / N;
      for (int k = N - 1; k >= 0; --k) ts.push_back(static_cast<double>(k * ratio + o.steps_offset));
      break;
    }
    case timestep_spacing::trailing: {
      const double ratio = static_cast<double>(T) / static_cast<double>(N);
      const double delta = (static_cast<double>(T) - ratio) - static_cast<double>(T);
      for (int k = 0; k < N; ++k) ts.push_back(std::nearbyint(static_cast<double>(T) + static_cast<double>(k) * delta) - 1.0);
      break;
    }
  }
  for (double t : ts)
    if (t < 0.0 || t > static_cast<double>(T - 1))
      detail::fail(error_kind::timesteps, "the spacing gives timestep ", t, " outside [0, ", T - 1, "]; expected fewer steps or a smaller steps_offset");
  sigma_list out;
  out.model_times = ts;
  if (o.interpolation == sigma_interpolation::log_linear) {
    if (o.kind != sigma_kind::timesteps)
      detail::fail(error_kind::timesteps, "interpolation_type log_linear with Karras, exponential or beta sigmas; expected one of them");
    out.sigmas = detail::exponential(table.front(), table.back(), N + 1);
    return out;
  }
  for (double t : ts) out.sigmas.push_back(detail::np_interp_index(t, table));
  if (o.kind == sigma_kind::karras || o.kind == sigma_kind::exponential || o.kind == sigma_kind::beta) {
    const double lo = o.sigma_min.value_or(out.sigmas.back()), hi = o.sigma_max.value_or(out.sigmas.front());
    out.sigmas = o.kind == sigma_kind::karras        ? detail::karras(lo, hi, N, o.rho)
                 : o.kind == sigma_kind::exponential ? detail::exponential(lo, hi, N)
                                                     : detail::beta_sigmas(lo, hi, N);
    out.model_times.clear();
    for (double s : out.sigmas) out.model_times.push_back(sigma_to_t(s, log_sigmas));
  }
  out.sigmas.push_back(o.final_type == final_sigma::zero ? 0.0 : table.front());
  return out;
}

/// A user's own sigma list (diffusers' set_timesteps(sigmas=...)): N + 1 values, strictly decreasing,
/// all finite and ≥ 0 (only the last may be 0); model times by _sigma_to_t, unrounded.
/// \throws diffuse::error naming the first offending entry.
inline sigma_list custom_sigmas(const noise_schedule& schedule, std::vector<double> sigmas) {
  if (sigmas.size() < 2)
    detail::fail(error_kind::timesteps, "a custom sigma list has ", sigmas.size(), " entries; expected at least 2 (N steps need N + 1 sigmas)");
  for (std::size_t i = 0; i < sigmas.size(); ++i) {
    const double s = sigmas[i];
    if (!std::isfinite(s) || s < 0.0)
      detail::fail(error_kind::timesteps, "custom sigma ", i, " = ", s, "; expected finite sigmas >= 0");
    if (s == 0.0 && i + 1 != sigmas.size())
      detail::fail(error_kind::timesteps, "custom sigma ", i, " = 0 before the end; expected only the last sigma to be 0");
    if (i > 0 && !(s < sigmas[i - 1]))
      detail::fail(error_kind::timesteps, "custom sigmas are not strictly decreasing at entry ", i, " (", sigmas[i - 1], " then ", s,
                   "); expected sigma_0 > sigma_1 > ...");
  }
  const auto table = training_sigmas(schedule);
  std::vector<double> log_sigmas(table.size());
  for (std::size_t i = 0; i < table.size(); ++i) log_sigmas[i] = std::log(table[i]);
  sigma_list out;
  out.sigmas = std::move(sigmas);
  for (std::size_t i = 0; i + 1 < out.sigmas.size(); ++i) out.model_times.push_back(sigma_to_t(out.sigmas[i], log_sigmas));
  return out;
}

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
