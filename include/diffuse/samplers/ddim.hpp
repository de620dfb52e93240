#pragma once
/// \file
/// ddim_sampler (Song et al., eq. 12, with η) and ddim_inversion, SPEC §6.

#include <algorithm>
#include <cmath>
#include <span>
#include <type_traits>
#include <vector>

#include "diffuse/detail/step_kernel.hpp"
#include "diffuse/model.hpp"
#include "diffuse/posterior.hpp"
#include "diffuse/schedule.hpp"
#include "diffuse/shape.hpp"
#include "diffuse/step_buffers.hpp"
#include "diffuse/timesteps.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// Options of the DDIM sampler.
struct ddim_options {
  prediction_type prediction = prediction_type::epsilon;  ///< what the model predicts (epsilon, sample, v_prediction)
  double eta = 0.0;                 ///< 0: deterministic; 1: the fixed_small ancestral step on the same list
  bool set_alpha_to_one = true;     ///< the last step goes to ᾱ = 1 (else to ᾱ_0)
  bool use_clipped_model_output = false;  ///< re-derive ε̂ from the processed x̂0 (guided-diffusion always does)
  x0_processing processing = {};    ///< clipping or dynamic thresholding of x̂0
  /// Raise a [diffuse.numeric] error naming the step, its timestep and the buffer (model output or
  /// sampler state) when a step meets a NaN or an Inf. The check rides on the step's single pass over
  /// memory (docs/performance.md measures its cost); false lets non-finite values through.
  bool check_finite = true;
  /// false runs the scalar reference loop instead of the xsimd one: the same operations element by
  /// element, hence the same bits; for tests and benchmarks.
  bool vectorize = true;
  /// Reproduce diffusers' DDIMScheduler instead of the correct chain: each step goes to t − ⌊T/N⌋ (N the
  /// list's length; below 0, the final ᾱ) rather than to the next list entry. The two agree on leading
  /// lists and on trailing lists when N divides T; on linspace and other trailing lists diffusers' rule
  /// steps to timesteps the list does not visit (docs/concepts.md). Pair it with
  /// diffusers_float32_schedule() (diffusers_exact.hpp) for diffusers' float32 tables.
  bool diffusers_exact = false;
};

/// The coefficients of one DDIM step, computed once in double.
struct ddim_step_coefficients {
  int t = 0;                 ///< timestep of this position
  int prev = -1;             ///< the timestep it moves to (the next list entry; diffusers_exact: t − ⌊T/N⌋), −1 after the last
  double alpha_bar_t = 0;    ///< ᾱ_t
  double alpha_bar_prev = 0; ///< ᾱ_p: ᾱ of `prev`; after the last entry 1 (set_alpha_to_one) or ᾱ_0
  double sigma = 0;          ///< σ_t = η·√((1 − ᾱ_p)/(1 − ᾱ_t))·√(1 − ᾱ_t/ᾱ_p)
  double direction = 0;      ///< √max(0, 1 − ᾱ_p − σ_t²): clamped, since rounding can take it just below 0
  double sqrt_alpha_bar_prev = 0;         ///< √ᾱ_p, the factor of x̂0 in x_p
  double sqrt_alpha_bar_t = 0;            ///< √ᾱ_t: re-derives ε̂ from a processed x̂0, and x̂0 from a guided ε̂
  double sqrt_one_minus_alpha_bar_t = 0;  ///< √(1 − ᾱ_t): the same conversions, and the guidance shift −√(1 − ᾱ_t)·g
  /// Linear maps from (x_t, model output) to x̂0 and ε̂ at ᾱ_t, for the configured prediction type.
  detail::prediction_coefficients pred;
};

namespace detail {
inline void check_ddim_prediction(prediction_type p) {
  refuse_flow_prediction(p, "DDIM");
  if (p == prediction_type::previous_x)
    fail(error_kind::sampler, "DDIM needs a model that predicts epsilon, sample or v_prediction; got previous_x, "
                              "which only the ancestral sampler can use");
}
}  // namespace detail

/// DDIM over any descending timestep list: x_p = √ᾱ_p·x̂0 + √(1 − ᾱ_p − σ²)·ε̂ + σ·z.
///
/// The previous timestep is always the next entry of the list (diffusers computes t − T/N instead, which
/// differs for linspace and uneven trailing lists; see docs).
///
/// Example:
/// \code
/// diffuse::ddim_sampler sampler(schedule, diffuse::make_timesteps(1000, 50, diffuse::timestep_spacing::leading, 1),
///                               {.prediction = diffuse::prediction_type::v_prediction, .eta = 0.0});
/// \endcode
class ddim_sampler {
 public:
  /// \throws diffuse::error for η < 0 or NaN, a list that does not fit the schedule, previous_x prediction,
  ///         or epsilon prediction at ᾱ_t = 0.
  ddim_sampler(const noise_schedule& schedule, std::vector<int> timesteps, ddim_options options = {})
      : options_(options), timesteps_(custom_timesteps(schedule.size(), std::move(timesteps))) {
    options_.processing.validate();
    if (!(options_.eta >= 0.0) || !std::isfinite(options_.eta))
      detail::fail(error_kind::sampler, "eta = ", options_.eta, " is invalid; expected a finite eta >= 0");
    detail::check_ddim_prediction(options_.prediction);
    const int n = static_cast<int>(timesteps_.size());
    steps_.resize(timesteps_.size());
    for (int k = 0; k < n; ++k) {
      auto& s = steps_[static_cast<std::size_t>(k)];
      s.t = timesteps_[static_cast<std::size_t>(k)];
      s.prev = k + 1 < n ? timesteps_[static_cast<std::size_t>(k + 1)] : -1;
      if (options_.diffusers_exact) s.prev = std::max(-1, s.t - schedule.size() / n);
      s.alpha_bar_t = schedule.alpha_bar(s.t);
      s.alpha_bar_prev = s.prev >= 0 ? schedule.alpha_bar(s.prev) : (options_.set_alpha_to_one ? 1.0 : schedule.alpha_bar(0));
      if (options_.prediction == prediction_type::epsilon && s.alpha_bar_t <= 0.0)
        detail::fail(error_kind::numeric, "epsilon prediction cannot give x0 at step ", k, " (t = ", s.t,
                     ") where alpha_bar = 0 (a zero-terminal-SNR schedule); expected v_prediction or sample "
                     "prediction with such a schedule");
      const double var = (1.0 - s.alpha_bar_prev) / (1.0 - s.alpha_bar_t) * (1.0 - s.alpha_bar_t / s.alpha_bar_prev);
      s.sigma = options_.eta * std::sqrt(std::max(0.0, var));
      s.direction = std::sqrt(std::max(0.0, 1.0 - s.alpha_bar_prev - s.sigma * s.sigma));
      s.sqrt_alpha_bar_prev = std::sqrt(s.alpha_bar_prev);
      s.sqrt_alpha_bar_t = std::sqrt(s.alpha_bar_t);
      s.sqrt_one_minus_alpha_bar_t = std::sqrt(1.0 - s.alpha_bar_t);
      s.pred = detail::make_prediction_coefficients(options_.prediction, s.alpha_bar_t, 0.0, 0.0);
    }
  }

  /// Number of positions in the timestep list.
  int num_steps() const noexcept { return static_cast<int>(timesteps_.size()); }
  /// The training timestep at position k.
  int timestep(int k) const { return coefficients(k).t; }
  /// The descending timestep list.
  std::span<const int> timesteps() const noexcept { return timesteps_; }
  /// Always 1: DDIM has no learned variance, so the model outputs C channels.
  std::size_t output_factor() const noexcept { return 1; }
  /// Whether the step at position k adds noise (σ_t > 0, i.e. η > 0 and not a final step to ᾱ = 1).
  bool adds_noise(int k) const { return coefficients(k).sigma > 0.0; }
  /// The options it was built with.
  const ddim_options& options() const noexcept { return options_; }
  /// The precomputed coefficients of position k.
  /// \throws diffuse::error when k is not in [0, num_steps()).
  const ddim_step_coefficients& coefficients(int k) const {
    if (k < 0 || k >= num_steps())
      detail::fail(error_kind::argument, "step index ", k, " is out of range; expected 0 <= k < ", num_steps());
    return steps_[static_cast<std::size_t>(k)];
  }

  /// One DDIM step at position k.
  ///
  /// Without an x̂0 hook or dynamic thresholding the step is one pass over memory: it reads x_t, the model
  /// output and the noise, and writes x_prev (and x0 when given). A hook or thresholding needs x̂0 of a
  /// whole item first, so the step then makes a conversion pass and an update pass per item.
  /// \param k       position in the timestep list, 0 <= k < num_steps()
  /// \param io      the step's buffers: x_t, model output and x_prev, plus the noise (a buffer or generated)
  ///                when adds_noise(k), optionally x0 and a guidance gradient
  /// \param shape   batch, channels and spatial size every buffer must match
  /// \param x0_hook optional callable `hook(std::span<Scalar> x0, std::size_t item, int t)` that may edit
  ///                one batch item's x̂0 in place before clipping or thresholding (e.g. inpainting masks);
  ///                with OpenMP it may run for several items at once.
  /// \throws diffuse::error on buffers that do not match `shape`, and with `check_finite` on a NaN or Inf
  ///         in the model output or the state (x_prev is then unspecified).
  template <Real Scalar, class X0Hook = no_x0_hook>
  void step(int k, const step_buffers<Scalar>& io, const sample_shape& shape, X0Hook&& x0_hook = {}) const {
    const auto& s = coefficients(k);
    const bool noisy = s.sigma > 0.0;
    detail::check_step_buffers(io, shape, 1, noisy);
    const std::size_t per_item = shape.channels * shape.spatial;
    const auto px = static_cast<Scalar>(s.pred.x0_from_x), po = static_cast<Scalar>(s.pred.x0_from_out);
    const auto ex = static_cast<Scalar>(s.pred.eps_from_x), eo = static_cast<Scalar>(s.pred.eps_from_out);
    const auto a = static_cast<Scalar>(s.sqrt_alpha_bar_t), b = static_cast<Scalar>(s.sqrt_one_minus_alpha_bar_t);
    const auto inv_a = static_cast<Scalar>(1.0 / s.sqrt_alpha_bar_t), inv_b = static_cast<Scalar>(1.0 / s.sqrt_one_minus_alpha_bar_t);
    const auto ap = static_cast<Scalar>(s.sqrt_alpha_bar_prev), dir = static_cast<Scalar>(s.direction);
    const auto sigma = static_cast<Scalar>(s.sigma);
    const auto& proc = options_.processing;
    const bool has_processing = proc.threshold || proc.clip_range;
    const bool recompute_eps = options_.use_clipped_model_output && has_processing;
    const bool clip = !proc.threshold && proc.clip_range;  // thresholding replaces clipping
    const auto r = clip ? static_cast<Scalar>(*proc.clip_range) : Scalar(0);
    const bool check = options_.check_finite, vectorize = options_.vectorize;
    const bool guided = !io.guidance_gradient.empty();

    // The buffers of one item (or of the whole batch in the fused pass), indexed from 0.
    struct pointers {
      const Scalar *x, *out, *z, *g;
      Scalar *xp, *x0, *x0_out;
    };
    // x̂0 -> ε̂ -> x_prev for one element or vector. `bound` > 0 is the dynamic-thresholding s. With
    // fixed_flags the options are constants and the plain pass has no guidance, x̂0 output or re-derived ε̂.
    const auto update = [&](const pointers q, bool x0_ready, Scalar bound, auto flags) {
      using F = decltype(flags);
      const bool is_noisy = F::known ? F::noisy : noisy, is_checked = F::known ? F::check : check;
      const bool is_clipped = F::known ? F::clip : clip, is_guided = !F::known && guided;
      const bool is_recomputed = !F::known && recompute_eps, is_ready = !F::known && x0_ready;
      const bool has_bound = !F::known && bound > Scalar(0);
      Scalar* const x0_out = F::known ? nullptr : q.x0_out;
      return [=]<class V>(std::size_t j, detail::finite_probe<V>& p) {
        const V xv = detail::load<V>(q.x + j), ov = detail::load<V>(q.out + j);
        V x0 = is_ready ? detail::load<V>(q.x0 + j) : V(px) * xv + V(po) * ov;
        if (is_checked && !is_ready) {
          p.model += ov - ov;
          p.state += xv - xv;
        }
        if (has_bound) {
          x0 = detail::clamp_like_std(x0, V(-bound), V(bound)) / V(bound);
        } else if (is_clipped) {
          x0 = detail::clamp_like_std(x0, V(-r), V(r));
        }
        V eps = is_recomputed ? (xv - V(a) * x0) * V(inv_b) : V(ex) * xv + V(eo) * ov;
        if (is_guided) {
          // condition_score: ε̂ from the processed x̂0, shifted by −√(1−ᾱ)·g; x̂0 follows, not re-processed.
          eps = (xv - V(a) * x0) * V(inv_b) - V(b) * detail::load<V>(q.g + j);
          x0 = (xv - V(b) * eps) * V(inv_a);
        }
        if (x0_out) detail::store(x0_out + j, x0);
        V next = V(ap) * x0 + V(dir) * eps;
        if (is_noisy) next = next + V(sigma) * detail::load<V>(q.z + j);
        if (is_checked) p.result += next - next;
        detail::store(q.xp + j, next);
      };
    };
    const auto at = [&](std::size_t base, Scalar* x0) {
      return pointers{io.x_t.data() + base,
                      io.model_output.data() + base,
                      noisy && !io.noise.empty() ? io.noise.data() + base : nullptr,
                      guided ? io.guidance_gradient.data() + base : nullptr,
                      io.x_prev.data() + base,
                      x0,
                      io.x0.empty() ? nullptr : io.x0.data() + base};
    };

    bool bad = false;
    if (std::is_same_v<std::remove_cvref_t<X0Hook>, no_x0_hook> && !proc.threshold) {
      const bool plain = !guided && !recompute_eps && io.x0.empty();
      bad = detail::with_flags(plain, noisy, check, clip, [&](auto flags) {
              return detail::run_fused_pass<Scalar>(shape.numel(), per_item, vectorize, noisy, io.generated, at,
                                                    [&](const pointers& q) { return update(q, false, Scalar(0), flags); });
            }) != 0;
    } else {
      bad = detail::for_each_item(shape.batch, per_item, [&](std::size_t i) -> int {
              const std::size_t base = i * per_item;
              const std::span<Scalar> x0 = io.x0.empty() ? detail::thread_scratch<Scalar, detail::scratch_slot::x0>(per_item)
                                                         : io.x0.subspan(base, per_item);
              pointers q = at(base, x0.data());
              if (noisy && io.generated.generator) q.z = detail::generated_item_noise<Scalar>(io.generated, per_item, base);
              const int mask = detail::run_range<Scalar>(0, per_item, vectorize, [&]<class V>(std::size_t j, detail::finite_probe<V>& p) {
                const V xv = detail::load<V>(q.x + j), ov = detail::load<V>(q.out + j);
                if (check) {
                  p.model += ov - ov;
                  p.state += xv - xv;
                }
                detail::store(q.x0 + j, V(px) * xv + V(po) * ov);
              });
              if (mask != 0) return mask;
              x0_hook(x0, i, s.t);
              const Scalar bound = proc.threshold ? detail::threshold_bound<Scalar>(x0, *proc.threshold) : Scalar(0);
              return detail::run_range<Scalar>(0, per_item, vectorize, update(q, true, bound, detail::runtime_flags{}));
            }) < shape.batch;
    }
    if (bad) detail::fail_non_finite<Scalar>(k, s.t, io.model_output, 1, io.x_t, io.x_prev, shape);
  }

 private:
  ddim_options options_;
  std::vector<int> timesteps_;
  std::vector<ddim_step_coefficients> steps_;
};

/// Options of DDIM inversion.
struct ddim_inversion_options {
  prediction_type prediction = prediction_type::epsilon;  ///< what the model predicts (epsilon, sample, v_prediction)
  double eta = 0.0;  ///< must be 0: inversion is defined only for the deterministic sampler
  bool check_finite = true;  ///< raise a [diffuse.numeric] error on a NaN or Inf (as ddim_options)
  bool vectorize = true;     ///< false runs the scalar reference loop (same bits)
};

/// DDIM inversion (η = 0): maps a clean sample to the noise that DDIM with the same list maps back to it.
///
/// It walks the list upwards. The clean sample is taken as the state at the lowest timestep s_0 of the
/// list; step j evaluates the model at the current timestep s_j (so every conversion uses the ᾱ the model
/// was told, for any prediction type) and moves to s_{j+1}:
/// x_next = √ᾱ_next·x̂0 + √(1 − ᾱ_next)·ε̂. It takes N − 1 model calls for a list of N entries; the
/// result is the state at the highest entry, where ddim_sampler on the same list starts.
class ddim_inversion {
 public:
  /// \param schedule  the training noise schedule
  /// \param timesteps a strictly descending list of training timesteps, as ddim_sampler takes it
  /// \param options   prediction type, finite check, vectorisation
  /// \throws diffuse::error for η ≠ 0, previous_x prediction, a list that does not fit the schedule or
  ///         has fewer than 2 entries, or epsilon prediction at ᾱ_t = 0.
  ddim_inversion(const noise_schedule& schedule, std::vector<int> timesteps, ddim_inversion_options options = {})
      : options_(options), descending_(custom_timesteps(schedule.size(), std::move(timesteps))) {
    detail::check_ddim_prediction(options_.prediction);
    if (options_.eta != 0.0)
      detail::fail(error_kind::sampler, "DDIM inversion with eta = ", options_.eta,
                   "; expected eta = 0 (only the deterministic sampler can be inverted)");
    ascending_.assign(descending_.rbegin(), descending_.rend());
    const std::size_t n = ascending_.size();
    if (n < 2)
      detail::fail(error_kind::timesteps, "DDIM inversion needs a timestep list of at least 2 entries; got ", n);
    for (std::size_t j = 0; j + 1 < n; ++j) {
      inversion_step s;
      s.t = ascending_[j];
      s.next = ascending_[j + 1];
      const double ab = schedule.alpha_bar(s.t);
      if (options_.prediction == prediction_type::epsilon && ab <= 0.0)
        detail::fail(error_kind::numeric, "epsilon prediction cannot give x0 at t = ", s.t, " where alpha_bar = 0");
      s.pred = detail::make_prediction_coefficients(options_.prediction, ab, 0.0, 0.0);
      const double ab_next = schedule.alpha_bar(s.next);
      s.sqrt_alpha_bar_next = std::sqrt(ab_next);
      s.sqrt_one_minus_alpha_bar_next = std::sqrt(1.0 - ab_next);
      steps_.push_back(s);
    }
  }

  /// Number of inversion steps (list size − 1).
  int num_steps() const noexcept { return static_cast<int>(steps_.size()); }
  /// The timestep the model is evaluated at in step j (ascending).
  int timestep(int j) const { return at(j).t; }
  /// The timestep step j arrives at.
  int next_timestep(int j) const { return at(j).next; }
  /// The descending list, as ddim_sampler takes it to map the result back.
  std::span<const int> timesteps() const noexcept { return descending_; }

  /// One inversion step j: x_next from x (the state at timestep(j)) and the model output there.
  template <Real Scalar>
  void step(int j, std::span<const Scalar> x, std::span<const Scalar> model_output, std::span<Scalar> x_next,
            const sample_shape& shape) const {
    const auto& s = at(j);
    step_buffers<Scalar> io{.x_t = x, .model_output = model_output, .x_prev = x_next};
    detail::check_step_buffers(io, shape, 1, false);
    const auto px = static_cast<Scalar>(s.pred.x0_from_x), po = static_cast<Scalar>(s.pred.x0_from_out);
    const auto ex = static_cast<Scalar>(s.pred.eps_from_x), eo = static_cast<Scalar>(s.pred.eps_from_out);
    const auto an = static_cast<Scalar>(s.sqrt_alpha_bar_next), bn = static_cast<Scalar>(s.sqrt_one_minus_alpha_bar_next);
    const std::size_t n = shape.numel();
    const Scalar* xs = x.data();
    const Scalar* outs = model_output.data();
    Scalar* next = x_next.data();
    const bool check = options_.check_finite;
    const int mask = detail::run_elementwise<Scalar>(n, options_.vectorize, [=]<class V>(std::size_t e, detail::finite_probe<V>& p) {
      const V xv = detail::load<V>(xs + e), ov = detail::load<V>(outs + e);
      const V x0 = V(px) * xv + V(po) * ov;
      const V eps = V(ex) * xv + V(eo) * ov;
      const V r = V(an) * x0 + V(bn) * eps;
      if (check) {
        p.model += ov - ov;
        p.state += xv - xv;
        p.result += r - r;
      }
      detail::store(next + e, r);
    });
    if (mask != 0) detail::fail_non_finite<Scalar>(j, s.t, model_output, 1, x, x_next, shape);
  }

 private:
  struct inversion_step {
    int t = 0, next = 0;
    detail::prediction_coefficients pred;
    double sqrt_alpha_bar_next = 0, sqrt_one_minus_alpha_bar_next = 0;
  };
  const inversion_step& at(int j) const {
    if (j < 0 || j >= num_steps())
      detail::fail(error_kind::argument, "inversion step ", j, " is out of range; expected 0 <= j < ", num_steps());
    return steps_[static_cast<std::size_t>(j)];
  }
  ddim_inversion_options options_;
  std::vector<int> descending_, ascending_;
  std::vector<inversion_step> steps_;
};

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
