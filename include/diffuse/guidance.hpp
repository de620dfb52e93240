#pragma once
/// \file
/// Guidance hooks between the model call and the sampler update (SPEC §7): classifier guidance,
/// classifier-free guidance with guidance rescale, step windows, per-step scales and composition.
///
/// A hook is any object with `void operator()(const guidance_context<Scalar>&)` and a
/// `static constexpr bool needs_gradient`. The loop calls the hooks in the order given, after the model
/// and before the step. Hooks that change the model output (classifier-free guidance) edit
/// `ctx.model_output`; hooks that guide with a classifier add s·∇ log p(y | x_t) into `ctx.gradient`,
/// which the ancestral step applies as μ + σ²·g (condition_mean), DDIM as ε̂ − √(1 − ᾱ_t)·g
/// (condition_score) and solve() in the same score form (apply_score_guidance, samplers/solver.hpp).
/// With no hooks, the loop compiles to exactly the unguided one.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <limits>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "diffuse/error.hpp"
#include "diffuse/model.hpp"
#include "diffuse/shape.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// What a guidance hook sees at one step.
template <class Scalar>
struct guidance_context {
  int index;                        ///< position in the timestep list
  int num_steps;                    ///< positions in the list
  int timestep;                     ///< training timestep t
  double alpha_bar;                 ///< ᾱ_t
  std::span<const Scalar> x_t;      ///< the sample the model saw
  std::span<Scalar> model_output;   ///< the model output, editable (C or 2C channels per item)
  std::span<Scalar> gradient;       ///< classifier gradient accumulator (empty unless a hook needs it)
  sample_shape shape;               ///< the sample's shape (model_output may have 2C channels)
};

/// A guidance hook for samples of type Scalar.
template <class H, class Scalar>
concept GuidanceHook = requires(H& hook, const guidance_context<Scalar>& ctx) {
  hook(ctx);
  { std::bool_constant<std::remove_cvref_t<H>::needs_gradient>{} };
};

/// The steps a hook is active in: list positions first … last (inclusive).
struct step_window {
  int first = 0;                               ///< first list position where the hook acts
  int last = std::numeric_limits<int>::max();  ///< last list position where it acts (default: to the end)
  /// Whether list position k is inside the window.
  bool contains(int k) const noexcept { return k >= first && k <= last; }
  /// \throws diffuse::error for an empty window or one that starts past the list.
  void validate(int num_steps) const {
    if (first < 0 || last < first)
      detail::fail(error_kind::guidance, "guidance window [", first, ", ", last, "] is empty or negative; expected 0 <= first <= last");
    if (first >= num_steps)
      detail::fail(error_kind::guidance, "guidance window starts at step ", first, " but the sampler has ", num_steps,
                   " steps; expected first < ", num_steps);
  }
};

/// A constant guidance scale.
struct constant_scale {
  double value = 1.0;  ///< the scale at every step
  /// The scale at list position `index` (training timestep `timestep`): always `value`.
  double operator()(int /*index*/, int /*timestep*/) const noexcept { return value; }
};

namespace detail {
/// Whether H declares `needs_gradient` (the mark of a guidance hook).
template <class H>
concept has_needs_gradient = requires { std::remove_cvref_t<H>::needs_gradient; };
/// H::needs_gradient, or false when H is not a hook (its static_assert reports that).
template <class H>
constexpr bool hook_needs_gradient() {
  if constexpr (has_needs_gradient<H>) return std::remove_cvref_t<H>::needs_gradient;
  else return false;
}

/// Scratch for hooks that serve float and double samples: grows once, then is reused.
struct typed_buffers {
  std::vector<float> f;
  std::vector<double> d;
  template <class Scalar>
  std::vector<Scalar>& get(std::size_t n) {
    auto& v = [this]() -> std::vector<Scalar>& {
      if constexpr (std::is_same_v<Scalar, float>) return f;
      else return d;
    }();
    if (v.size() != n) v.resize(n);
    return v;
  }
};

template <class ScaleFn>
double checked_scale(const ScaleFn& fn, int index, int t, const char* what) {
  const double s = fn(index, t);
  if (!(s >= 0.0) || !std::isfinite(s))
    fail(error_kind::guidance, what, " scale ", s, " at step ", index, " (t = ", t, ") is invalid; expected a finite scale >= 0");
  return s;
}
}  // namespace detail

/// Classifier guidance: adds scale·∇_{x_t} log p(y | x_t, t) to the gradient. `gradient_fn(x_t, t, out)`
/// writes the gradient of the log class probability (the user's classifier) into out (same size as x_t).
///
/// Example:
/// \code
/// auto cg = diffuse::classifier_guidance([&](std::span<const float> x, int t, std::span<float> g) { clf.grad(x, t, label, g); }, 2.0);
/// diffuse::sample(sampler, model, x, shape, {}, ws, diffuse::no_callback{}, diffuse::guidance(cg));
/// \endcode
template <class GradientFn, class ScaleFn = constant_scale>
struct classifier_guidance {
  static constexpr bool needs_gradient = true;  ///< it adds into guidance_context::gradient
  GradientFn gradient_fn;  ///< `gradient_fn(x_t, t, out)`: writes ∇_{x_t} log p(y | x_t, t) into out
  ScaleFn scale{};         ///< the guidance scale s, as a callable of (index, timestep)
  step_window window{};    ///< the list positions where it acts

  /// Guidance with a constant scale `s` (≥ 0) inside window `w`.
  classifier_guidance(GradientFn fn, double s, step_window w = {}) : gradient_fn(std::move(fn)), scale{s}, window(w) {}
  /// Guidance with a per-step scale: `s(index, timestep)` returns the scale at each list position.
  classifier_guidance(GradientFn fn, ScaleFn s, step_window w) : gradient_fn(std::move(fn)), scale(std::move(s)), window(w) {}

  /// Adds s·∇ log p(y | x_t) into ctx.gradient at the positions of the window.
  /// \throws diffuse::error for a negative or non-finite scale, or a non-finite gradient.
  template <class Scalar>
  void operator()(const guidance_context<Scalar>& ctx) {
    if (!window.contains(ctx.index)) return;
    const double s = detail::checked_scale(scale, ctx.index, ctx.timestep, "classifier guidance");
    auto& buffer = buffers_.template get<Scalar>(ctx.x_t.size());
    Scalar* g = buffer.data();
    gradient_fn(ctx.x_t, ctx.timestep, std::span<Scalar>(buffer));
    for (std::size_t i = 0; i < ctx.x_t.size(); ++i) {
      if (!std::isfinite(g[i]))
        detail::fail(error_kind::guidance, "the classifier gradient has a non-finite value (", static_cast<double>(g[i]),
                     ") at element ", i, " at step ", ctx.index, " (t = ", ctx.timestep, "); expected finite gradients");
      ctx.gradient[i] += static_cast<Scalar>(s) * g[i];
    }
  }

 private:
  detail::typed_buffers buffers_;
};
/// Deduces classifier_guidance<F> from a gradient callable and a constant scale.
template <class F>
classifier_guidance(F, double, step_window = {}) -> classifier_guidance<F>;
/// Deduces classifier_guidance<F, S> from a gradient callable and a per-step scale callable.
template <class F, class S>
classifier_guidance(F, S, step_window) -> classifier_guidance<F, S>;

/// How the two branches of classifier-free guidance are combined.
enum class cfg_formulation {
  standard,  ///< ε̂ = ε_u + w(ε_c − ε_u): w = 1 is no guidance (diffusers, Ho & Salimans with w + 1)
  original,  ///< ε̂ = ε_c + w(ε_c − ε_u): w = 0 is no guidance (Ho & Salimans' own parameterisation)
};

/// Classifier-free guidance on prediction channels for one batch: `cond` is edited in place from the
/// conditional output into the guided one; `uncond` is the unconditional output. Works for whatever the
/// model predicts (ε, x0 or v). With a learned variance (2C channels), only the first C channels of each
/// item are guided; the variance channels stay the conditional ones. `rescale` is guidance rescale φ
/// (Lin et al. §3.4; per item r = std(ε_c)/std(ε̂), unbiased, ε̂ ← φ·r·ε̂ + (1 − φ)·ε̂).
/// \throws diffuse::error on sizes that do not match the shape, w < 0 or φ outside [0, 1], or a w that
///         overflows finite outputs.
template <Real Scalar>
void apply_cfg(std::span<Scalar> cond, std::span<const Scalar> uncond, const sample_shape& shape, double scale,
               cfg_formulation form = cfg_formulation::standard, double rescale = 0.0) {
  if (cond.size() != uncond.size())
    detail::fail(error_kind::guidance, "the conditional output has ", cond.size(), " elements and the unconditional ",
                 uncond.size(), "; expected the same size");
  const std::size_t per_item_pred = shape.per_sample();
  if (shape.numel() == 0 || cond.size() % shape.numel() != 0 || cond.size() / shape.numel() > 2)
    detail::fail(error_kind::guidance, "the model output has ", cond.size(), " elements; expected ", shape.numel(),
                 " (C channels) or ", 2 * shape.numel(), " (2C channels)");
  if (!(scale >= 0.0) || !std::isfinite(scale))
    detail::fail(error_kind::guidance, "classifier-free guidance scale ", scale, " is invalid; expected a finite scale >= 0");
  if (!(rescale >= 0.0 && rescale <= 1.0))
    detail::fail(error_kind::guidance, "guidance rescale ", rescale, " is outside [0, 1]");
  const std::size_t stride = cond.size() / shape.batch;  // C or 2C channels per item
  const auto w = static_cast<Scalar>(scale);
  for (std::size_t i = 0; i < shape.batch; ++i) {
    Scalar* c = cond.data() + i * stride;
    const Scalar* u = uncond.data() + i * stride;
    double sum_c = 0, sum_c2 = 0;
    if (rescale > 0.0)
      for (std::size_t j = 0; j < per_item_pred; ++j) {
        sum_c += static_cast<double>(c[j]);
        sum_c2 += static_cast<double>(c[j]) * static_cast<double>(c[j]);
      }
    // A large w can overflow finite outputs into ±inf; that is the scale's fault, not the model's, so it is
    // named here instead of by the step's finite check. (& not &&: the loop stays branch-free.)
    bool overflow = false;
    for (std::size_t j = 0; j < per_item_pred; ++j) {
      const Scalar cj = c[j], uj = u[j];
      const Scalar g = form == cfg_formulation::standard ? uj + w * (cj - uj) : cj + w * (cj - uj);
      overflow |= !(g - g == Scalar(0)) & (cj - cj == Scalar(0)) & (uj - uj == Scalar(0));
      c[j] = g;
    }
    if (overflow)
      detail::fail(error_kind::guidance, "classifier-free guidance scale ", scale, " overflows the finite model outputs of item ", i,
                   " to infinity; expected a scale small enough that u + w(c - u) stays finite");
    if (rescale > 0.0) {
      const double n = static_cast<double>(per_item_pred);
      double sum_g = 0, sum_g2 = 0;
      for (std::size_t j = 0; j < per_item_pred; ++j) {
        sum_g += static_cast<double>(c[j]);
        sum_g2 += static_cast<double>(c[j]) * static_cast<double>(c[j]);
      }
      const double var_c = (sum_c2 - sum_c * sum_c / n) / (n - 1), var_g = (sum_g2 - sum_g * sum_g / n) / (n - 1);
      if (!(var_g > 0.0)) continue;  // a constant guided output: nothing to rescale
      const double r = std::sqrt(std::max(0.0, var_c) / var_g);
      const auto factor = static_cast<Scalar>(rescale * r + (1.0 - rescale));
      for (std::size_t j = 0; j < per_item_pred; ++j) c[j] *= factor;
    }
  }
}

/// Options of classifier-free guidance.
struct cfg_options {
  cfg_formulation formulation = cfg_formulation::standard;  ///< how the two outputs are combined
  double rescale = 0.0;     ///< guidance rescale φ in [0, 1]
  step_window window = {};  ///< steps where guidance applies (elsewhere the conditional output is used)
};

/// Classifier-free guidance as a hook: the sampled model is the conditional one; `uncond_model` (any
/// Denoiser) is evaluated at the same (x_t, t) and the two are combined. For one batched network call
/// over both halves, wrap the network with batched_cfg_model instead.
template <class UncondModel, class ScaleFn = constant_scale>
struct classifier_free_guidance {
  static constexpr bool needs_gradient = false;  ///< it edits the model output only
  UncondModel uncond_model;  ///< the unconditional model, any Denoiser
  ScaleFn scale{};           ///< the guidance weight w, as a callable of (index, timestep)
  cfg_options options{};     ///< formulation, rescale and window

  /// Guidance with a constant weight `w` (≥ 0).
  classifier_free_guidance(UncondModel m, double w, cfg_options o = {}) : uncond_model(std::move(m)), scale{w}, options(o) {}
  /// Guidance with a per-step weight: `w(index, timestep)` returns the weight at each list position.
  classifier_free_guidance(UncondModel m, ScaleFn w, cfg_options o) : uncond_model(std::move(m)), scale(std::move(w)), options(o) {}

  /// Runs the unconditional model at (x_t, t) and combines its output with ctx.model_output in place.
  /// \throws diffuse::error for a negative or non-finite weight, and as apply_cfg.
  template <class Scalar>
  void operator()(const guidance_context<Scalar>& ctx) {
    if (!options.window.contains(ctx.index)) return;
    const double w = detail::checked_scale(scale, ctx.index, ctx.timestep, "classifier-free guidance");
    std::span<Scalar> u(buffers_.template get<Scalar>(ctx.model_output.size()));
    uncond_model(ctx.x_t, ctx.timestep, u);
    apply_cfg<Scalar>(ctx.model_output, u, ctx.shape, w, options.formulation, options.rescale);
  }

 private:
  detail::typed_buffers buffers_;
};
/// Deduces classifier_free_guidance<M> from an unconditional model and a constant weight.
template <class M>
classifier_free_guidance(M, double, cfg_options = {}) -> classifier_free_guidance<M>;
/// Deduces classifier_free_guidance<M, S> from an unconditional model and a per-step weight callable.
template <class M, class S>
classifier_free_guidance(M, S, cfg_options) -> classifier_free_guidance<M, S>;

/// Classifier-free guidance with ONE network call over both halves: `model2(x2, t, out2)` receives the
/// batch twice, (x_t; x_t) with 2N items — the network conditions the first N on the labels and the last
/// N on the null label — and the guided output of the first N is returned. This wrapper is a Denoiser.
///
/// Example:
/// \code
/// auto net2 = unet.conditioned(labels_then_nulls);  // 2N labels: the N conditions, then N null labels
/// diffuse::batched_cfg_model<float, decltype(net2)> guided(net2, shape, 3.0);
/// diffuse::sample(sampler, guided, std::span<float>(x), shape);
/// \endcode
template <Real Scalar, class Model2>
class batched_cfg_model {
 public:
  /// \param model2  the network over 2N items: `model2(x2, t, out2)`, conditional half first
  /// \param shape   the shape of ONE half (the N samples being drawn)
  /// \param scale   the guidance weight w (≥ 0)
  /// \param options formulation and rescale; a step window is refused (this wrapper does not know the
  ///                step index: use the classifier_free_guidance hook for windows)
  /// \throws diffuse::error for an empty shape, an invalid scale, or a window.
  batched_cfg_model(Model2 model2, sample_shape shape, double scale, cfg_options options = {})
      : model2_(std::move(model2)), shape_(shape), scale_(scale), options_(options) {
    if (shape.numel() == 0 || !shape.fits())
      detail::fail(error_kind::shape, "batched_cfg_model got the sample shape {batch ", shape.batch, ", channels ", shape.channels,
                   ", spatial ", shape.spatial, "}; expected every dimension >= 1 and a product that fits in memory");
    if (!(scale >= 0.0) || !std::isfinite(scale))
      detail::fail(error_kind::guidance, "classifier-free guidance scale ", scale, " is invalid; expected a finite scale >= 0");
    if (options.window.first != 0 || options.window.last != step_window{}.last)
      detail::fail(error_kind::guidance, "batched_cfg_model does not know the step index, so it cannot apply a window; "
                                         "expected the classifier_free_guidance hook for windowed guidance");
  }
  /// The Denoiser call: one call of model2 over (x; x), then the guided combination into out. The time
  /// goes to model2 as it is given: an int, or a fractional double for the Euler family of solvers when
  /// model2 accepts one (then this wrapper is a FractionalDenoiser too).
  /// \throws diffuse::error when x or out do not match the shape it was built for.
  template <class Time>
    requires std::invocable<Model2&, std::span<const Scalar>, Time, std::span<Scalar>>
  void operator()(std::span<const Scalar> x, Time t, std::span<Scalar> out) {
    if (x.size() != shape_.numel())
      detail::fail(error_kind::shape, "x has ", x.size(), " elements; expected ", shape_.numel(), " as the guided model was built for");
    const std::size_t factor = out.size() / shape_.numel();
    if (out.size() % shape_.numel() != 0 || factor < 1 || factor > 2)
      detail::fail(error_kind::shape, "the output has ", out.size(), " elements; expected ", shape_.numel(), " or ", 2 * shape_.numel());
    x2_.resize(2 * x.size());
    out2_.resize(2 * out.size());
    std::copy(x.begin(), x.end(), x2_.begin());
    std::copy(x.begin(), x.end(), x2_.begin() + static_cast<std::ptrdiff_t>(x.size()));
    model2_(std::span<const Scalar>(x2_), t, std::span<Scalar>(out2_));
    std::span<Scalar> cond(out2_.data(), out.size());
    std::span<const Scalar> uncond(out2_.data() + out.size(), out.size());
    apply_cfg<Scalar>(cond, uncond, shape_, scale_, options_.formulation, options_.rescale);
    std::copy(cond.begin(), cond.end(), out.begin());
  }

 private:
  Model2 model2_;
  sample_shape shape_;
  double scale_;
  cfg_options options_;
  std::vector<Scalar> x2_, out2_;
};

/// Hooks applied in the order given. Build it with diffuse::guidance(h1, h2, ...).
template <class... Hooks>
struct guidance_set {
  static_assert((detail::has_needs_gradient<Hooks> && ...),
                "diffuse::guidance: every hook needs a member `static constexpr bool needs_gradient` (true when it adds "
                "a classifier gradient into ctx.gradient) and `void operator()(const diffuse::guidance_context<Scalar>& ctx)`; "
                "wrap a plain lambda in a struct with both, or use classifier_guidance / classifier_free_guidance");
  std::tuple<Hooks...> hooks;                           ///< the hooks, in the order they run
  static constexpr bool empty = sizeof...(Hooks) == 0;  ///< true for no_guidance: the loop skips the hook call
  /// True when a hook adds a classifier gradient: the loop then provides guidance_context::gradient.
  static constexpr bool needs_gradient = (detail::hook_needs_gradient<Hooks>() || ... || false);

  /// Runs every hook on the step's context, in order.
  template <class Scalar>
  void operator()(const guidance_context<Scalar>& ctx) {
    static_assert((GuidanceHook<Hooks, Scalar> && ...),
                  "diffuse::guidance: every hook must be callable as hook(const diffuse::guidance_context<Scalar>& ctx), "
                  "with Scalar the element type of the samples (float or double), and have `static constexpr bool "
                  "needs_gradient`");
    if constexpr ((GuidanceHook<Hooks, Scalar> && ...)) std::apply([&](auto&... h) { (h(ctx), ...); }, hooks);
  }
  /// Checks every hook's window against the number of steps.
  void validate(int num_steps) const {
    std::apply([&](const auto&... h) { (validate_one(h, num_steps), ...); }, hooks);
  }

 private:
  template <class H>
  static void validate_one(const H& h, int num_steps) {
    if constexpr (requires { h.window; }) h.window.validate(num_steps);
    else if constexpr (requires { h.options.window; }) h.options.window.validate(num_steps);
  }
};

/// No guidance: the default of sample().
using no_guidance = guidance_set<>;

/// Composes hooks, applied in this order at every step.
template <class... Hooks>
guidance_set<std::decay_t<Hooks>...> guidance(Hooks&&... hooks) {
  return {std::tuple<std::decay_t<Hooks>...>(std::forward<Hooks>(hooks)...)};
}

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
