#pragma once
/// \file
/// noise_schedule: β_t, ᾱ_t and every table derived from them, in double (SPEC §1, §3).

#include <cmath>
#include <limits>
#include <numbers>
#include <span>
#include <vector>

#include "diffuse/error.hpp"
#include "diffuse/timesteps.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// A noise schedule over training timesteps t = 0 … T−1: β_t, ᾱ_t = ∏_{s≤t}(1 − β_s) and the derived
/// tables the samplers read, all computed once, in double, whatever Scalar the samples use.
///
/// Example:
/// \code
/// auto s = diffuse::noise_schedule::cosine(1000);
/// double snr = s.snr(500);
/// auto z = diffuse::noise_schedule::linear(1000).rescaled_zero_terminal_snr();  // ᾱ_999 == 0
/// \endcode
class noise_schedule {
 public:
  /// Ho et al.: β = linspace(beta_start, beta_end, T) (diffusers' "linear").
  /// \throws diffuse::error for T outside [1, max_train_timesteps] or ends outside (0, 1].
  static noise_schedule linear(int num_train_timesteps, double beta_start = 1e-4, double beta_end = 0.02) {
    check_count(num_train_timesteps);
    check_end("beta_start", beta_start);
    check_end("beta_end", beta_end);
    return from_betas(linspace(beta_start, beta_end, num_train_timesteps));
  }

  /// guided-diffusion's "linear": both ends multiplied by 1000/T first (identical to linear at T = 1000).
  static noise_schedule linear_scaled(int num_train_timesteps) {
    check_count(num_train_timesteps);
    const double scale = 1000.0 / num_train_timesteps;
    return linear(num_train_timesteps, scale * 0.0001, scale * 0.02);
  }

  /// Latent diffusion's "scaled_linear": β = linspace(√beta_start, √beta_end, T)².
  static noise_schedule scaled_linear(int num_train_timesteps, double beta_start = 0.00085, double beta_end = 0.012) {
    check_count(num_train_timesteps);
    check_end("beta_start", beta_start);
    check_end("beta_end", beta_end);
    auto b = linspace(std::sqrt(beta_start), std::sqrt(beta_end), num_train_timesteps);
    for (auto& v : b) v *= v;
    return from_betas(std::move(b));
  }

  /// Nichol & Dhariwal's cosine ("squaredcos_cap_v2"): β_t = min(1 − f((t+1)/T)/f(t/T), max_beta) with
  /// f(u) = cos²(((u + s)/(1 + s))·π/2). The cap binds at the end: cosine is not zero terminal SNR.
  static noise_schedule cosine(int num_train_timesteps, double s = 0.008, double max_beta = 0.999) {
    check_count(num_train_timesteps);
    if (!(s >= 0.0) || !std::isfinite(s)) detail::fail(error_kind::schedule, "cosine offset s = ", s, " is invalid; expected a finite s >= 0");
    check_end("max_beta", max_beta);
    const auto f = [s](double u) {
      const double c = std::cos((u + s) / (1.0 + s) * std::numbers::pi / 2.0);
      return c * c;
    };
    const double T = num_train_timesteps;
    std::vector<double> b(static_cast<std::size_t>(num_train_timesteps));
    for (int t = 0; t < num_train_timesteps; ++t)
      b[static_cast<std::size_t>(t)] = std::min(1.0 - f((t + 1) / T) / f(t / T), max_beta);
    return from_betas(std::move(b));
  }

  /// GeoDiff's sigmoid: β_t = logistic(z_t)·(beta_end − beta_start) + beta_start, z = linspace(−6, 6, T).
  static noise_schedule sigmoid(int num_train_timesteps, double beta_start = 1e-4, double beta_end = 0.02) {
    check_count(num_train_timesteps);
    check_end("beta_start", beta_start);
    check_end("beta_end", beta_end);
    auto z = linspace(-6.0, 6.0, num_train_timesteps);
    for (auto& v : z) v = 1.0 / (1.0 + std::exp(-v)) * (beta_end - beta_start) + beta_start;
    return from_betas(std::move(z));
  }

  /// A user list of β_t, each in (0, 1] (β = 1 only as the last entry, as a zero-terminal-SNR schedule has).
  static noise_schedule from_betas(std::vector<double> betas) {
    if (betas.empty()) detail::fail(error_kind::schedule, "the beta list is empty; expected at least one beta");
    check_list_size(betas.size(), "beta");
    for (std::size_t t = 0; t < betas.size(); ++t) {
      const double b = betas[t];
      if (!(b > 0.0 && b <= 1.0))
        detail::fail(error_kind::schedule, "beta[", t, "] = ", b, " is outside (0, 1]; expected every beta in (0, 1]");
      if (b == 1.0 && t + 1 != betas.size())
        detail::fail(error_kind::schedule, "beta[", t, "] = 1 before the last timestep; expected beta = 1 only as the "
                                           "last entry (it makes alpha_bar zero from there on)");
    }
    return noise_schedule(std::move(betas));
  }

  /// A user list of ᾱ_t, strictly decreasing in (0, 1] (the last entry may be 0): β_t = 1 − ᾱ_t/ᾱ_{t−1}.
  static noise_schedule from_alphas_cumprod(std::vector<double> alphas_cumprod) {
    if (alphas_cumprod.empty())
      detail::fail(error_kind::schedule, "the alpha_bar list is empty; expected at least one alpha_bar");
    check_list_size(alphas_cumprod.size(), "alpha_bar");
    std::vector<double> b(alphas_cumprod.size());
    double prev = 1.0;
    for (std::size_t t = 0; t < alphas_cumprod.size(); ++t) {
      const double a = alphas_cumprod[t];
      const bool last = t + 1 == alphas_cumprod.size();
      if (!(a >= 0.0 && a < prev) || (a == 0.0 && !last) || (t == 0 && !(a > 0.0 && a < 1.0)))
        detail::fail(error_kind::schedule, "alpha_bar[", t, "] = ", a, " after ", prev,
                     " is invalid; expected a strictly decreasing list in (0, 1) (0 allowed only as the last entry)");
      b[t] = 1.0 - a / prev;
      prev = a;
    }
    return noise_schedule(std::move(b), std::move(alphas_cumprod));
  }

  /// Lin et al. 2023, Algorithm 1: shifts and scales √ᾱ so that ᾱ_{T−1} = 0 exactly and ᾱ_0 is unchanged.
  /// Meant for v- or x0-prediction; samplers refuse epsilon prediction where ᾱ = 0.
  /// \throws diffuse::error when T < 2 (there is nothing to rescale).
  noise_schedule rescaled_zero_terminal_snr() const {
    if (size() < 2) detail::fail(error_kind::schedule, "the zero-terminal-SNR rescale needs T >= 2; got T = ", size());
    std::vector<double> a(alpha_bar_.size());
    for (std::size_t t = 0; t < a.size(); ++t) a[t] = std::sqrt(alpha_bar_[t]);
    const double first = a.front(), last = a.back();
    for (auto& v : a) v = (v - last) * first / (first - last);
    std::vector<double> ab(a.size()), b(a.size());
    for (std::size_t t = 0; t < a.size(); ++t) ab[t] = a[t] * a[t];
    ab.front() = alpha_bar_.front();  // (a0 − last)·a0/(a0 − last) can differ from a0 by an ulp
    ab.back() = 0.0;
    double prev = 1.0;
    for (std::size_t t = 0; t < ab.size(); ++t) {
      b[t] = 1.0 - ab[t] / prev;
      prev = ab[t];
    }
    return noise_schedule(std::move(b), std::move(ab));
  }

  /// T, the number of training timesteps.
  int size() const noexcept { return static_cast<int>(beta_.size()); }
  /// The T values β_t.
  std::span<const double> betas() const noexcept { return beta_; }
  /// The T values ᾱ_t (diffusers' alphas_cumprod).
  std::span<const double> alphas_cumprod() const noexcept { return alpha_bar_; }
  /// True when ᾱ_{T−1} is exactly 0 (after rescaled_zero_terminal_snr, or a custom list ending in 0).
  bool zero_terminal_snr() const noexcept { return alpha_bar_.back() == 0.0; }

  /// β_t. \throws diffuse::error unless 0 ≤ t < T (as every accessor below that takes a t).
  double beta(int t) const { return beta_[index(t)]; }
  /// α_t = 1 − β_t.
  double alpha(int t) const { return 1.0 - beta_[index(t)]; }
  /// ᾱ_t; t = −1 (before the first step) gives 1.
  double alpha_bar(int t) const { return t == -1 ? 1.0 : alpha_bar_[index(t)]; }
  /// √ᾱ_t, the signal coefficient of x_t.
  double sqrt_alpha_bar(int t) const { return std::sqrt(alpha_bar(t)); }
  /// √(1 − ᾱ_t), the noise coefficient of x_t.
  double sqrt_one_minus_alpha_bar(int t) const { return std::sqrt(1.0 - alpha_bar(t)); }
  /// 1/√ᾱ_t: infinite where ᾱ_t = 0.
  double sqrt_recip_alpha_bar(int t) const { return std::sqrt(1.0 / alpha_bar(t)); }
  /// √(1/ᾱ_t − 1): infinite where ᾱ_t = 0.
  double sqrt_recipm1_alpha_bar(int t) const { return std::sqrt(1.0 / alpha_bar(t) - 1.0); }
  /// Signal-to-noise ratio ᾱ_t/(1 − ᾱ_t).
  double snr(int t) const { return alpha_bar(t) / (1.0 - alpha_bar(t)); }
  /// β̃_t = β_t(1 − ᾱ_{t−1})/(1 − ᾱ_t) of the full chain (0 at t = 0).
  double posterior_variance(int t) const { return posterior_variance_[index(t)]; }
  /// log β̃_t with t = 0 clipped to the t = 1 value (for T = 1, log β_0).
  double posterior_log_variance_clipped(int t) const { return posterior_log_variance_clipped_[index(t)]; }
  /// c1 = √ᾱ_{t−1}·β_t/(1 − ᾱ_t) of the full-chain posterior mean.
  double posterior_mean_coef1(int t) const { return posterior_mean_coef1_[index(t)]; }
  /// c2 = √α_t·(1 − ᾱ_{t−1})/(1 − ᾱ_t) of the full-chain posterior mean.
  double posterior_mean_coef2(int t) const { return posterior_mean_coef2_[index(t)]; }

 private:
  explicit noise_schedule(std::vector<double> betas) : beta_(std::move(betas)) {
    alpha_bar_.resize(beta_.size());
    double prod = 1.0;
    for (std::size_t t = 0; t < beta_.size(); ++t) alpha_bar_[t] = prod *= (1.0 - beta_[t]);
    derive();
  }
  noise_schedule(std::vector<double> betas, std::vector<double> alphas_cumprod)
      : beta_(std::move(betas)), alpha_bar_(std::move(alphas_cumprod)) {
    derive();
  }

  // Every constructor ends here, so no schedule exists whose tables are not usable: each check names the
  // first bad t. ᾱ must fall strictly inside (0, 1) (the posterior divides by 1 − ᾱ_t, and a step between
  // equal ᾱ is no step); 0 is allowed only as the last entry, which the samplers treat as zero terminal SNR.
  void validate() const {
    const auto finite = [](double v) { return v - v == 0.0; };  // no fast-math can fold it (version.hpp refuses it)
    double prev = 1.0;
    const std::size_t n = alpha_bar_.size();
    for (std::size_t t = 0; t < n; ++t) {
      const double ab = alpha_bar_[t], b = beta_[t];
      const bool last = t + 1 == n;
      if (!(b > 0.0 && b <= 1.0))
        detail::fail(error_kind::schedule, "beta[", t, "] = ", b, " is outside (0, 1]; expected every beta in (0, 1]");
      if (!finite(ab))
        detail::fail(error_kind::schedule, "alpha_bar[", t, "] = ", ab, " is not finite; expected alpha_bar in (0, 1)");
      if (ab == 0.0 && last) break;  // zero terminal SNR
      if (ab == 1.0 || (t == 0 && !(ab < 1.0)))
        detail::fail(error_kind::schedule, "alpha_bar[", t, "] = ", ab, " (beta[", t, "] = ", b,
                     " is below the resolution of a double near 1); expected alpha_bar < 1 at every t: the posterior at "
                     "t = ", t, " divides by 1 - alpha_bar = 0");
      if (!(ab > 0.0))
        detail::fail(error_kind::schedule, "alpha_bar[", t, "] = ", ab,
                     " before the last timestep (of ", n, "): it underflows the double range; expected a schedule whose "
                     "alpha_bar stays above 2.2e-308 until the end (fewer timesteps or smaller betas), 0 only as the last");
      if (ab < std::numeric_limits<double>::min())
        detail::fail(error_kind::schedule, "alpha_bar[", t, "] = ", ab, " is subnormal: it underflows the double "
                     "range at t = ", t, " of ", n, "; expected a schedule whose alpha_bar stays "
                     "above 2.2e-308 (fewer timesteps or smaller betas)");
      if (!(ab < prev))
        detail::fail(error_kind::schedule, "alpha_bar[", t, "] = ", ab, " is not below alpha_bar[", t - 1, "] = ", prev,
                     " (beta[", t, "] = ", b, " is below its resolution); expected a strictly decreasing alpha_bar");
      prev = ab;
    }
    for (std::size_t t = 0; t < n; ++t)
      if (!finite(posterior_variance_[t]) || !finite(posterior_log_variance_clipped_[t]) ||
          !finite(posterior_mean_coef1_[t]) || !finite(posterior_mean_coef2_[t]))
        detail::fail(error_kind::schedule, "the posterior coefficients at t = ", t, " are not finite (variance ",
                     posterior_variance_[t], ", log variance ", posterior_log_variance_clipped_[t], ", mean coefficients ",
                     posterior_mean_coef1_[t], ", ", posterior_mean_coef2_[t], "); expected finite tables");
  }

  void derive() {
    const std::size_t n = beta_.size();
    posterior_variance_.resize(n);
    posterior_log_variance_clipped_.resize(n);
    posterior_mean_coef1_.resize(n);
    posterior_mean_coef2_.resize(n);
    for (std::size_t t = 0; t < n; ++t) {
      const double ab = alpha_bar_[t], ab_prev = t == 0 ? 1.0 : alpha_bar_[t - 1];
      posterior_variance_[t] = beta_[t] * (1.0 - ab_prev) / (1.0 - ab);
      posterior_mean_coef1_[t] = beta_[t] * std::sqrt(ab_prev) / (1.0 - ab);
      posterior_mean_coef2_[t] = (1.0 - ab_prev) * std::sqrt(1.0 - beta_[t]) / (1.0 - ab);
    }
    for (std::size_t t = 0; t < n; ++t) {
      const double v = t == 0 ? (n > 1 ? posterior_variance_[1] : beta_[0]) : posterior_variance_[t];
      posterior_log_variance_clipped_[t] = std::log(v);
    }
    validate();
  }

  std::size_t index(int t) const {
    if (t < 0 || t >= size())
      detail::fail(error_kind::timesteps, "timestep ", t, " is out of range; expected 0 <= t < ", size());
    return static_cast<std::size_t>(t);
  }
  static void check_count(int n) { detail::check_train_timesteps(n, error_kind::schedule); }
  static void check_list_size(std::size_t n, const char* what) {
    if (n > static_cast<std::size_t>(max_train_timesteps))
      detail::fail(error_kind::schedule, "the ", what, " list has ", n, " entries; expected at most ", max_train_timesteps,
                   " (max_train_timesteps)");
  }
  static void check_end(const char* name, double v) {
    if (!(v > 0.0 && v <= 1.0)) detail::fail(error_kind::schedule, name, " = ", v, " is outside (0, 1]; expected a beta in (0, 1]");
  }
  static std::vector<double> linspace(double a, double b, int n) {
    // numpy's linspace: a + i·step, with the last point exactly b.
    std::vector<double> v(static_cast<std::size_t>(n));
    const double step = n > 1 ? (b - a) / (n - 1) : 0.0;
    for (int i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = a + i * step;
    if (n > 1) v.back() = b;
    return v;
  }

  std::vector<double> beta_, alpha_bar_;
  std::vector<double> posterior_variance_, posterior_log_variance_clipped_;
  std::vector<double> posterior_mean_coef1_, posterior_mean_coef2_;
};

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
