#pragma once
/// \file
/// gaussian_mixture: data whose optimal denoiser is known in closed form (SPEC §10), to test samplers
/// and guidance on behaviour, and to play with them without a trained network.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <span>
#include <vector>

#include "diffuse/error.hpp"
#include "diffuse/model.hpp"
#include "diffuse/posterior.hpp"
#include "diffuse/random.hpp"
#include "diffuse/samplers/flow_sigmas.hpp"
#include "diffuse/schedule.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// x_0 ~ Σ_k π_k N(μ_k, s_k² I) in d dimensions. For x = a·x_0 + b·ε the marginal is Σ_k π_k N(a μ_k, v_k I)
/// with v_k = a² s_k² + b², and E[x_0 | x], the score and the class posterior are exact: at noise level ᾱ of a
/// VP schedule a = √ᾱ, b² = 1 − ᾱ; for flow matching at σ, a = 1 − σ, b = σ (flow_velocity, flow_model).
/// Samples are contiguous (n, d) rows; everything is computed in double.
///
/// Example:
/// \code
/// diffuse::gaussian_mixture gm({0.3, 0.7}, {{-2.0, 0.0}, {2.0, 1.0}}, {0.5, 0.3});
/// auto model = gm.denoiser<float>(schedule, diffuse::prediction_type::epsilon);  // a Denoiser
/// \endcode
class gaussian_mixture {
 public:
  /// \throws diffuse::error unless the weights are positive and sum to 1 (within 1e-9), every mean has the
  ///         same dimension d ≥ 1, and every std is positive and finite.
  gaussian_mixture(std::vector<double> weights, std::vector<std::vector<double>> means, std::vector<double> stds)
      : weights_(std::move(weights)), stds_(std::move(stds)) {
    const std::size_t k = weights_.size();
    if (k == 0) detail::fail(error_kind::argument, "a Gaussian mixture needs at least one component; got none");
    if (means.size() != k || stds_.size() != k)
      detail::fail(error_kind::argument, "got ", k, " weights, ", means.size(), " means and ", stds_.size(),
                   " stds; expected one of each per component");
    double sum = 0;
    for (std::size_t i = 0; i < k; ++i) {
      if (!(weights_[i] > 0.0) || !std::isfinite(weights_[i]))
        detail::fail(error_kind::argument, "weight ", i, " = ", weights_[i], "; expected a positive weight");
      if (!(stds_[i] > 0.0) || !std::isfinite(stds_[i]))
        detail::fail(error_kind::argument, "std ", i, " = ", stds_[i], "; expected a positive, finite std");
      sum += weights_[i];
    }
    if (std::abs(sum - 1.0) > 1e-9) detail::fail(error_kind::argument, "the weights sum to ", sum, "; expected 1");
    dim_ = means.front().size();
    if (dim_ == 0) detail::fail(error_kind::argument, "the means have dimension 0; expected d >= 1");
    for (std::size_t i = 0; i < k; ++i) {
      if (means[i].size() != dim_)
        detail::fail(error_kind::argument, "mean ", i, " has dimension ", means[i].size(), "; expected ", dim_, " like mean 0");
      means_.insert(means_.end(), means[i].begin(), means[i].end());
    }
  }

  /// d, the dimension of one sample.
  std::size_t dim() const noexcept { return dim_; }
  /// K, the number of components.
  std::size_t components() const noexcept { return weights_.size(); }
  /// π_k, the weight of component k.
  double weight(std::size_t k) const { return weights_.at(k); }
  /// s_k, the standard deviation of component k (the same in every dimension).
  double stddev(std::size_t k) const { return stds_.at(k); }
  /// μ_k, the mean of component k (d values).
  std::span<const double> mean(std::size_t k) const { return std::span<const double>(means_).subspan(k * dim_, dim_); }

  /// Draws n clean samples into out (n × d) and their components into labels (n), reproducibly:
  /// sample i depends only on (seed, first_sample + i).
  template <Real Scalar>
  void sample_data(std::span<Scalar> out, std::span<int> labels, std::uint64_t seed, std::uint64_t first_sample = 0) const {
    const std::size_t n = labels.size();
    if (out.size() != n * dim_)
      detail::fail(error_kind::shape, "out has ", out.size(), " elements; expected ", n, " samples x ", dim_, " dimensions");
    const normal_generator gen(seed);
    std::vector<double> z(dim_);
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t id = first_sample + i;
      const auto w = philox4x32::generate(static_cast<std::uint32_t>(id), static_cast<std::uint32_t>(id >> 32), 0xffffffffu,
                                          0x6d6978u, static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
      const double u = detail::uniform53(w.v[0], w.v[1]);
      std::size_t k = 0;
      double acc = weights_[0];
      while (u > acc && k + 1 < components()) acc += weights_[++k];
      labels[i] = static_cast<int>(k);
      gen.fill<double>(z, id, 0xfffffffeu);
      for (std::size_t j = 0; j < dim_; ++j) out[i * dim_ + j] = static_cast<Scalar>(means_[k * dim_ + j] + stds_[k] * z[j]);
    }
  }

  /// log p_t(x) of each row of x (n × d) at noise level ᾱ.
  template <Real Scalar>
  void log_density(std::span<const Scalar> x, double alpha_bar, std::span<double> out) const {
    check_rows(x.size(), out.size());
    std::vector<double> logp(components());
    const double a = std::sqrt(alpha_bar), b2 = 1.0 - alpha_bar;
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = component_log_joint(x.subspan(i * dim_, dim_), a, b2, logp);
  }

  /// The exact denoiser at noise level ᾱ for rows x (n × d): x̂0 = E[x_0 | x_t], and optionally the class
  /// posterior p(k | x_t) (n × K) and ∇_x log p(y = label | x_t) scaled by `scale` (n × d).
  template <Real Scalar>
  void denoise(std::span<const Scalar> x, double alpha_bar, std::span<Scalar> x0, std::span<double> class_posterior = {},
               int label = -1, std::span<Scalar> class_gradient = {}, double scale = 1.0) const {
    denoise_affine(x, std::sqrt(alpha_bar), 1.0 - alpha_bar, x0, class_posterior, label, class_gradient, scale);
  }

  /// The exact flow-matching velocity at noise level σ ∈ (0, 1] for rows x (n × d) of x = (1 − σ)·x_0 + σ·ε:
  /// v = E[ε − x_0 | x] = (x − E[x_0 | x])/σ, the output a perfectly trained flow_prediction model gives.
  /// \throws diffuse::error for σ outside (0, 1] or rows that do not match the dimension.
  template <Real Scalar>
  void flow_velocity(std::span<const Scalar> x, double sigma, std::span<Scalar> v) const {
    if (!(sigma > 0.0 && sigma <= 1.0))
      detail::fail(error_kind::argument, "flow velocity at sigma = ", sigma, "; expected 0 < sigma <= 1 (the velocity at sigma = 0 is "
                                         "never evaluated by an Euler step)");
    if (v.size() != x.size()) detail::fail(error_kind::shape, "v has ", v.size(), " elements; expected ", x.size(), " like x");
    std::vector<Scalar> x0(x.size());
    denoise_affine(x, 1.0 - sigma, sigma * sigma, std::span<Scalar>(x0));
    for (std::size_t i = 0; i < x.size(); ++i)
      v[i] = static_cast<Scalar>((static_cast<double>(x[i]) - static_cast<double>(x0[i])) / sigma);
  }

  /// The exact flow_prediction model for flow solvers (a FractionalDenoiser on (n, d) rows): σ = t/time_scale
  /// for a noise-at-one grid (diffusers: time_scale 1000), σ = 1 − t/time_scale and output −v = x_0 − ε for a
  /// noise-at-zero grid (flow_direction::noise_at_zero). Keeps a reference to the mixture.
  template <Real Scalar>
  auto flow_model(double time_scale = 1000.0, flow_direction direction = flow_direction::noise_at_one) const {
    if (!(time_scale > 0.0 && std::isfinite(time_scale)))
      detail::fail(error_kind::argument, "flow model time_scale = ", time_scale, "; expected a finite scale > 0");
    return [this, time_scale, direction](std::span<const Scalar> x, double t, std::span<Scalar> out) {
      const double u = t / time_scale;
      flow_velocity<Scalar>(x, direction == flow_direction::noise_at_one ? u : 1.0 - u, out);
      if (direction == flow_direction::noise_at_zero)
        for (auto& o : out) o = -o;
    };
  }

 private:
  /// E[x_0 | x] for x = a·x_0 + b·ε with b² = b2, and optionally the class posterior and class gradient.
  template <Real Scalar>
  void denoise_affine(std::span<const Scalar> x, double a, double b2, std::span<Scalar> x0, std::span<double> class_posterior = {},
                      int label = -1, std::span<Scalar> class_gradient = {}, double scale = 1.0) const {
    check_rows(x.size(), x0.size());
    const std::size_t n = x.size() / dim_, K = components();
    if (!class_posterior.empty() && class_posterior.size() != n * K)
      detail::fail(error_kind::shape, "class_posterior has ", class_posterior.size(), " elements; expected ", n, " x ", K);
    if (!class_gradient.empty()) {
      if (class_gradient.size() != x.size())
        detail::fail(error_kind::shape, "class_gradient has ", class_gradient.size(), " elements; expected ", x.size());
      if (label < 0 || static_cast<std::size_t>(label) >= K)
        detail::fail(error_kind::argument, "label ", label, " is out of range; expected 0 <= label < ", K);
    }
    std::vector<double> logp(K), r(K), score(dim_);
    for (std::size_t i = 0; i < n; ++i) {
      const auto xi = x.subspan(i * dim_, dim_);
      const double lse = component_log_joint(xi, a, b2, logp);
      for (std::size_t k = 0; k < K; ++k) r[k] = std::exp(logp[k] - lse);
      std::fill(score.begin(), score.end(), 0.0);
      for (std::size_t j = 0; j < dim_; ++j) {
        double m = 0;
        for (std::size_t k = 0; k < K; ++k) {
          const double s2 = stds_[k] * stds_[k], v = a * a * s2 + b2;
          const double mu = means_[k * dim_ + j], xj = static_cast<double>(xi[j]);
          m += r[k] * (mu + a * s2 / v * (xj - a * mu));
          score[j] -= r[k] * (xj - a * mu) / v;
        }
        x0[i * dim_ + j] = static_cast<Scalar>(m);
      }
      if (!class_posterior.empty()) std::copy(r.begin(), r.end(), class_posterior.begin() + static_cast<std::ptrdiff_t>(i * K));
      if (!class_gradient.empty()) {
        const auto k = static_cast<std::size_t>(label);
        const double v = a * a * stds_[k] * stds_[k] + b2;
        for (std::size_t j = 0; j < dim_; ++j) {
          const double g = -(static_cast<double>(xi[j]) - a * means_[k * dim_ + j]) / v - score[j];
          class_gradient[i * dim_ + j] = static_cast<Scalar>(scale * g);
        }
      }
    }
  }


 public:
  /// The exact network output for a prediction type at timestep t of a schedule: a Denoiser
  /// (x_t is (n, d) rows; t is a training timestep of `schedule`). Keeps a reference to both.
  template <Real Scalar>
  auto denoiser(const noise_schedule& schedule, prediction_type prediction) const {
    if (prediction == prediction_type::previous_x || prediction == prediction_type::flow_prediction)
      detail::fail(error_kind::argument, "the mixture denoiser gives epsilon, sample or v_prediction; got ",
                   prediction == prediction_type::previous_x ? "previous_x" : "flow_prediction (use flow_model for flow solvers)");
    return [this, &schedule, prediction](std::span<const Scalar> x, int t, std::span<Scalar> out) {
      const double ab = schedule.alpha_bar(t), a = std::sqrt(ab), b = std::sqrt(1.0 - ab);
      denoise<Scalar>(x, ab, out);
      if (prediction == prediction_type::sample) return;
      for (std::size_t i = 0; i < x.size(); ++i) {
        const double x0 = static_cast<double>(out[i]), xt = static_cast<double>(x[i]);
        const double eps = (xt - a * x0) / b;
        out[i] = static_cast<Scalar>(prediction == prediction_type::epsilon ? eps : a * eps - b * x0);
      }
    };
  }

 private:
  void check_rows(std::size_t x_size, std::size_t out_size) const {
    if (x_size % dim_ != 0)
      detail::fail(error_kind::shape, "x has ", x_size, " elements; expected a multiple of the dimension ", dim_);
    const std::size_t n = x_size / dim_;
    if (out_size != n && out_size != x_size)
      detail::fail(error_kind::shape, "the output has ", out_size, " elements; expected ", x_size, " (or ", n, " per-row values)");
  }

  /// log π_k N(x; a μ_k, v_k I) with v_k = a² s_k² + b² for every k into logp; returns their log-sum-exp, log p(x).
  template <class Scalar>
  double component_log_joint(std::span<const Scalar> x, double a, double b2, std::vector<double>& logp) const {
    double top = -std::numeric_limits<double>::infinity();
    for (std::size_t k = 0; k < components(); ++k) {
      const double v = a * a * stds_[k] * stds_[k] + b2;
      double d2 = 0;
      for (std::size_t j = 0; j < dim_; ++j) {
        const double diff = static_cast<double>(x[j]) - a * means_[k * dim_ + j];
        d2 += diff * diff;
      }
      logp[k] = std::log(weights_[k]) - 0.5 * d2 / v - 0.5 * static_cast<double>(dim_) * std::log(2 * std::numbers::pi * v);
      top = std::max(top, logp[k]);
    }
    double sum = 0;
    for (double l : logp) sum += std::exp(l - top);
    return top + std::log(sum);
  }

  std::vector<double> weights_, means_, stds_;
  std::size_t dim_ = 0;
};

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
