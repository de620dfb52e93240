#pragma once
/// \file
/// unipc_sampler: UniPC (Zhao et al. 2023), the unified predictor-corrector multistep solver, orders
/// 1–3, B(h) = h (bh1) or e^h − 1 (bh2), as diffusers' UniPCMultistepScheduler computes it (SPEC §12).
///
/// In the VP variable with α = 1/√(σ² + 1), σ_VP = σ·α, λ = −log σ, the data form (predict_x0, m the x̂0
/// of each step; the noise form swaps α and σ_VP and uses ĥ = h):
///
///     ĥ = −h, h = λ_t − λ_s0;  φ = e^ĥ − 1;  r_i = (λ_{s_i} − λ_s0)/h, r_p = 1;  B = ĥ (bh1) or e^ĥ − 1 (bh2)
///     R_{j,i} = r_i^j,  b_j = j!·g_j/B with g_1 = φ/ĥ − 1, g_{j+1} = g_j/ĥ − 1/(j + 1)!
///     predictor (order p): ρ = 0.5 (p = 2) or R[:p−1, :p−1]⁻¹·b[:p−1] (p = 3)
///         x_t = (σ_VP,t/σ_VP,s0)·x − α_t·φ·m0 − α_t·B·Σ_i ρ_i (m_i − m0)/r_i
///     corrector (order p of the step it corrects; ρ = 0.5 for p = 1, else R⁻¹·b, all p rows):
///         x_t^c = (σ_VP,t/σ_VP,s0)·x_s0^c − α_t·φ·m0 − α_t·B·(Σ_{i<p} ρ_i (m_i − m0)/r_i + ρ_p·(m_t − m0))
///
/// The step at position k first corrects the sample the model saw with that model output (unless
/// k − 1 is in disable_corrector), then predicts position k + 1 from the corrected sample: one fused
/// pass. The small linear solves are in double (Gaussian elimination with partial pivoting). A final σ of
/// 0 is the limit x' = x̂0 (diffusers' IEEE path gives that for bh2 and NaN for bh1); the noise form
/// (predict_x0 = false) cannot reach σ = 0 and is refused there.

#include <array>
#include <cmath>
#include <optional>
#include <cstdint>
#include <span>
#include <type_traits>
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

/// diffusers' UniPC solver_type.
enum class unipc_variant {
  bh1,  ///< B(h) = h
  bh2,  ///< B(h) = e^h − 1 (diffusers' default)
};

/// Options of UniPC, named as UniPCMultistepScheduler's config keys.
struct unipc_options {
  int order = 2;                                          ///< solver_order: 1, 2 or 3
  unipc_variant variant = unipc_variant::bh2;             ///< solver_type
  prediction_type prediction = prediction_type::epsilon;  ///< epsilon, sample or v_prediction
  bool predict_x0 = true;                                 ///< solve in x̂0 (data) form; false: in ε form
  bool lower_order_final = true;                          ///< order min(order, N − k) at position k
  /// thresholding: dynamic thresholding of x̂0 per item (data form only, as diffusers); two passes per item.
  std::optional<dynamic_threshold> threshold = std::nullopt;
  std::vector<int> disable_corrector = {};                ///< positions k whose prediction is not corrected at k + 1
  bool check_finite = true;                               ///< a [diffuse.numeric] error on NaN or Inf
  bool vectorize = true;                                  ///< false: the scalar reference loop (same bits)
};

namespace detail {
/// Solves the n × n system a·x = b (n ≤ 3) by Gaussian elimination with partial pivoting, in double.
inline std::array<double, 3> solve_small(std::array<std::array<double, 3>, 3> a, std::array<double, 3> b, int n) {
  for (int c = 0; c < n; ++c) {
    int p = c;
    for (int r = c + 1; r < n; ++r)
      if (std::abs(a[static_cast<std::size_t>(r)][static_cast<std::size_t>(c)]) > std::abs(a[static_cast<std::size_t>(p)][static_cast<std::size_t>(c)])) p = r;
    std::swap(a[static_cast<std::size_t>(c)], a[static_cast<std::size_t>(p)]);
    std::swap(b[static_cast<std::size_t>(c)], b[static_cast<std::size_t>(p)]);
    const auto cu = static_cast<std::size_t>(c);
    if (a[cu][cu] == 0.0) fail(error_kind::numeric, "UniPC's coefficient system is singular (repeated sigmas in the history); expected distinct sigmas");
    for (int r = c + 1; r < n; ++r) {
      const auto ru = static_cast<std::size_t>(r);
      const double f = a[ru][cu] / a[cu][cu];
      for (int j = c; j < n; ++j) a[ru][static_cast<std::size_t>(j)] -= f * a[cu][static_cast<std::size_t>(j)];
      b[ru] -= f * b[cu];
    }
  }
  std::array<double, 3> x{};
  for (int r = n - 1; r >= 0; --r) {
    const auto ru = static_cast<std::size_t>(r);
    double s = b[ru];
    for (int j = r + 1; j < n; ++j) s -= a[ru][static_cast<std::size_t>(j)] * x[static_cast<std::size_t>(j)];
    x[ru] = s / a[ru][ru];
  }
  return x;
}
}  // namespace detail

/// UniPC over a DPM-Solver-style sigma list (integer model times), predictor and corrector.
///
/// Example:
/// \code
/// const diffuse::unipc_sampler solver(schedule, 10, {}, {.order = 2});
/// diffuse::solve(solver, model, std::span<float>(x), shape);
/// \endcode
class unipc_sampler {
 public:
  /// The model time is an integer (diffusers' int64 timesteps).
  static constexpr bool fractional_time = false;

  /// The solver of diffusers' set_timesteps(N): the DPM-Solver sigma rules (dpm_solver_sigmas).
  /// \throws diffuse::error for an order outside 1–3, previous_x prediction, the noise form with a final
  ///         σ of 0, or invalid sigma options.
  unipc_sampler(const noise_schedule& schedule, int num_inference_steps, const sigma_options& sigmas = {}, unipc_options options = {})
      : unipc_sampler(dpm_solver_sigmas(schedule, num_inference_steps, sigmas), std::move(options)) {}

  /// The solver over a given sigma list with integer model times.
  unipc_sampler(sigma_list list, unipc_options options) : options_(std::move(options)), list_(std::move(list)), id_(detail::next_solver_id()) {
    if (options_.order < 1 || options_.order > 3)
      detail::fail(error_kind::sampler, "UniPC order = ", options_.order, "; expected solver_order 1, 2 or 3");
    if (!list_.flow) detail::refuse_flow_prediction(options_.prediction, "UniPC");
    if (options_.prediction == prediction_type::flow_prediction && !options_.predict_x0)
      detail::fail(error_kind::sampler, "UniPC with flow_prediction and predict_x0 = false; expected predict_x0 = true (diffusers converts a "
                                        "flow output only to x0)");
    if (options_.prediction == prediction_type::previous_x)
      detail::fail(error_kind::sampler, "UniPC needs a model that predicts epsilon, sample or v_prediction; got previous_x");
    if (options_.threshold) {
      x0_processing{.threshold = options_.threshold}.validate();
      if (!options_.predict_x0)
        detail::fail(error_kind::sampler, "UniPC thresholding with predict_x0 = false; expected predict_x0 = true (diffusers thresholds x0 "
                                          "only in the data form)");
    }
    const std::size_t n = list_.model_times.size();
    if (n == 0 || list_.sigmas.size() != n + 1)
      detail::fail(error_kind::timesteps, "a sigma list of ", list_.sigmas.size(), " sigmas and ", n, " model times; expected N >= 1 model times and N + 1 sigmas");
    for (std::size_t i = 0; i < list_.sigmas.size(); ++i)
      if (!detail::valid_list_sigma(list_.sigmas, i))
        detail::fail(error_kind::timesteps, "sigma ", i, " = ", list_.sigmas[i], " of the list; expected finite sigmas, strictly decreasing, > 0 except the final one");
    if (!options_.predict_x0 && list_.sigmas.back() == 0.0)
      detail::fail(error_kind::sampler, "UniPC with predict_x0 = false and a final sigma of 0: its noise form has no limit there "
                                        "(diffusers computes 0 * inf); expected predict_x0 = true or final_sigmas_type sigma_min");
    for (std::size_t i = 0; i < n; ++i) {
      const double t = list_.model_times[i];
      if (t != std::trunc(t) || t < 0.0)
        detail::fail(error_kind::timesteps, "model time ", i, " = ", t, "; UniPC gives the model integer timesteps >= 0, expected a list "
                                            "from dpm_solver_sigmas or dpm_solver_timesteps");
      timesteps_.push_back(static_cast<int>(t));
    }
  }

  /// Number of positions (model evaluations).
  int num_steps() const noexcept { return static_cast<int>(timesteps_.size()); }
  /// The integer training timestep the model is given at position k.
  int timestep(int k) const {
    detail::check_position(k, num_steps());
    return timesteps_[static_cast<std::size_t>(k)];
  }
  /// timestep(k) as a double.
  double model_time(int k) const { return static_cast<double>(timestep(k)); }
  /// σ at position k; sigma(num_steps()) is where the chain ends.
  double sigma(int k) const { return list_.sigmas.at(static_cast<std::size_t>(k)); }
  /// The sigma list.
  const sigma_list& sigmas() const noexcept { return list_; }
  /// Always 1: the model sees the VP sample itself.
  double input_scale(int) const noexcept { return 1.0; }
  /// The state at position k is a·x0 + b·ε with {a, b} = {α, σ_VP} of σ_k (diffusers' add_noise; with flow
  /// sigmas {1 − σ_k, σ_k}).
  std::pair<double, double> noising(int k) const {
    const double s = sigma(k);
    return {list_.alpha(s), list_.sigma_vp(s)};
  }
  /// The ᾱ guidance hooks see at position k: α²/(α² + σ_VP²) (1/(σ² + 1) unless the sigmas are flow sigmas).
  double guidance_alpha_bar(int k) const {
    const double s = sigma(k), a = list_.alpha(s), v = list_.sigma_vp(s);
    return a * a / (a * a + v * v);
  }
  /// Always 1: the chain starts from standard normal noise (init_noise_sigma = 1).
  double initial_scale() const noexcept { return 1.0; }
  /// Always false: UniPC is deterministic.
  bool adds_noise(int) const noexcept { return false; }
  /// The options it was built with.
  const unipc_options& options() const noexcept { return options_; }
  /// This solver's identity, which its states remember.
  std::uint64_t id() const noexcept { return id_; }
  /// order + 1 model-output slots (the corrector reads one further back than the predictor) and the
  /// corrected sample of the previous position.
  std::size_t history_slots() const noexcept { return static_cast<std::size_t>(options_.order) + 2; }
  /// A state for one chain of `shape` (the history of model outputs), to pass to step().
  template <Real Scalar>
  solver_state<Scalar> make_state(const sample_shape& shape) const {
    return solver_state<Scalar>(id_, history_slots(), shape);
  }

  /// The predictor order at position k after `steps_taken` steps of the chain.
  int order_at(int k, int steps_taken) const {
    int p = options_.order;
    if (options_.lower_order_final) p = std::min(p, num_steps() - k);
    p = std::min(p, steps_taken + 1);
    if (sigma(k + 1) == 0.0 || detail::repeats_last(sigma(k), sigma(k + 1))) p = 1;  // the limit steps
    return p;
  }
  /// Whether position k corrects the prediction of position k − 1.
  bool corrects(int k, int steps_taken) const {
    if (k == 0 || steps_taken == 0) return false;
    for (int d : options_.disable_corrector)
      if (d == k - 1) return false;
    return true;
  }

  /// The coefficients of one update: x' = a·x + c0·m0 + Σ_i c_i·(m_i − m0) [+ c_t·(m_t − m0)].
  struct update_coefficients {
    double a = 0;                ///< factor of x
    double c0 = 0;               ///< factor of m0, the converted model output at the start position
    std::array<double, 3> ci{};  ///< of (m_i − m0), i = 1 … order − 1 (history further back)
    double ct = 0;               ///< corrector only: of (m_t − m0), the new model output
    int terms = 0;               ///< how many ci are used
  };

  /// Coefficients from position `from` to `to` = from + 1, with `order`, as predictor or corrector.
  update_coefficients coefficients(int from, int order, bool corrector) const {
    update_coefficients u;
    const double s0 = sigma(from), st = sigma(from + 1);
    const auto alpha = [&](double s) { return list_.alpha(s); };
    const auto lambda = [&](double s) { return std::log(alpha(s)) - std::log(list_.sigma_vp(s)); };
    const bool x0 = options_.predict_x0;
    if (st == 0.0) {  // λ_t = +∞, data form, order 1: x' = m0
      u.c0 = 1.0;
      return u;
    }
    if (detail::repeats_last(s0, st)) {  // h = 0: the identity
      u.a = 1.0;
      return u;
    }
    const double at = alpha(st), vt = list_.sigma_vp(st), a0 = alpha(s0), v0 = list_.sigma_vp(s0);
    const double h = lambda(st) - lambda(s0);
    const double hh = x0 ? -h : h;
    const double phi1 = std::expm1(hh);
    const double B = options_.variant == unipc_variant::bh1 ? hh : std::expm1(hh);
    std::array<double, 3> rk{};
    const int p = order;
    for (int i = 1; i < p; ++i) rk[static_cast<std::size_t>(i - 1)] = (lambda(sigma(from - i)) - lambda(s0)) / h;
    rk[static_cast<std::size_t>(p - 1)] = 1.0;
    std::array<std::array<double, 3>, 3> R{};
    std::array<double, 3> b{};
    double hk = phi1 / hh - 1.0, factorial = 1.0;
    for (int i = 1; i <= p; ++i) {
      for (int j = 0; j < p; ++j) R[static_cast<std::size_t>(i - 1)][static_cast<std::size_t>(j)] = std::pow(rk[static_cast<std::size_t>(j)], i - 1);
      b[static_cast<std::size_t>(i - 1)] = hk * factorial / B;
      factorial *= i + 1;
      hk = hk / hh - 1.0 / factorial;
    }
    std::array<double, 3> rho{};
    if (!corrector) {
      if (p == 2) rho[0] = 0.5;
      if (p == 3) rho = detail::solve_small(R, b, 2);
    } else {
      if (p == 1) rho[0] = 0.5;
      else rho = detail::solve_small(R, b, p);
    }
    const double scale_out = x0 ? at : vt;  // α_t (data form) or σ_VP,t (noise form)
    u.a = x0 ? vt / v0 : at / a0;
    u.c0 = -scale_out * phi1;
    u.terms = p - 1;
    for (int i = 0; i + 1 < p; ++i) u.ci[static_cast<std::size_t>(i)] = -scale_out * B * rho[static_cast<std::size_t>(i)] / rk[static_cast<std::size_t>(i)];
    if (corrector) u.ct = -scale_out * B * rho[static_cast<std::size_t>(p - 1)];
    return u;
  }

  /// One UniPC position: corrector (when it applies) then predictor, one fused pass over memory.
  /// \param k  position, 0 <= k < num_steps(); with a state that has taken steps, the next position
  /// \param io x is the sample the model saw at σ_k (the previous prediction), model_output its output;
  ///           x_next receives the prediction at σ_{k+1}; x0 (optional) the converted model output
  ///           (x̂0, or ε̂ in the noise form)
  /// \param shape the batch layout of the buffers
  /// \param state from make_state<Scalar>(shape), used for this chain only
  /// \throws diffuse::error on mismatched buffers, a state of another solver or shape or out of order,
  ///         and with check_finite on NaN or Inf.
  template <Real Scalar>
  void step(int k, const solver_buffers<Scalar>& io, const sample_shape& shape, solver_state<Scalar>& state) const {
    detail::check_position(k, num_steps());
    state.check(id_, shape, k, "unipc_sampler");
    detail::check_solver_buffers(io, shape, false);
    const int taken = state.steps_taken();
    const std::size_t ring = static_cast<std::size_t>(options_.order) + 1;
    const auto slot = [&](int steps_back) -> Scalar* {  // model output of the step `steps_back` before this one
      return state.slot(static_cast<std::size_t>(taken - steps_back + 3 * static_cast<int>(ring)) % ring).data();
    };
    Scalar* const last = state.slot(ring).data();
    const bool corr = corrects(k, taken);
    const int prev_order = corr ? order_at(k - 1, taken - 1) : 0;
    const auto cc = corr ? coefficients(k - 1, prev_order, true) : update_coefficients{};
    const int p = order_at(k, taken);
    const auto pc = coefficients(k, p, false);
    // Model output conversion at σ_k, from the sample the model saw.
    const double sk = sigma(k), ak = list_.alpha(sk), vk = list_.sigma_vp(sk);
    const prediction_type pred = options_.prediction;
    const bool x0_form = options_.predict_x0;
    const auto A = static_cast<Scalar>(ak), Vs = static_cast<Scalar>(vk);
    // Which conversion: 0 output as is, 1 (x − V·out)/A, 2 A·x − V·out, 3 (x − A·out)/V, 4 A·out + V·x,
    // 5 x − σ·out (a flow velocity; σ = V for flow sigmas).
    int conv = 0;
    if (x0_form)
      conv = pred == prediction_type::epsilon ? 1 : pred == prediction_type::v_prediction ? 2 : pred == prediction_type::flow_prediction ? 5 : 0;
    else conv = pred == prediction_type::sample ? 3 : pred == prediction_type::v_prediction ? 4 : 0;
    struct coeffs {
      Scalar a, c0, c1, c2, ct;
    };
    const coeffs C{static_cast<Scalar>(cc.a), static_cast<Scalar>(cc.c0), static_cast<Scalar>(cc.ci[0]), static_cast<Scalar>(cc.ci[1]),
                   static_cast<Scalar>(cc.ct)};
    const coeffs P{static_cast<Scalar>(pc.a), static_cast<Scalar>(pc.c0), static_cast<Scalar>(pc.ci[0]), static_cast<Scalar>(pc.ci[1]), Scalar(0)};
    const int cterms = cc.terms, pterms = pc.terms;
    const Scalar* x = io.x.data();
    const Scalar* out = io.model_output.data();
    Scalar* const mt = slot(0);  // this step's converted output
    const Scalar* m1 = taken >= 1 ? slot(1) : nullptr;
    const Scalar* m2 = taken >= 2 ? slot(2) : nullptr;
    const Scalar* m3 = taken >= 3 && ring > 3 ? slot(3) : nullptr;
    Scalar* xn = io.x_next.data();
    Scalar* x0p = io.x0.empty() ? nullptr : io.x0.data();
    const bool check = options_.check_finite;
    // thresholded: m is the item's converted output already in mt, clamped to [−s, s] and divided by s.
    const auto make_body = [=](bool thresholded, Scalar bound) {
    return [=]<class V>(std::size_t e, detail::finite_probe<V>& probe) {
      const V xv = detail::load<V>(x + e), ov = detail::load<V>(out + e);
      V m;
      if (thresholded) {
        m = detail::clamp_like_std(detail::load<V>(mt + e), V(-bound), V(bound)) / V(bound);
      } else switch (conv) {
        case 1: m = (xv - V(Vs) * ov) / V(A); break;
        case 2: m = V(A) * xv - V(Vs) * ov; break;
        case 3: m = (xv - V(A) * ov) / V(Vs); break;
        case 4: m = V(A) * ov + V(Vs) * xv; break;
        case 5: m = xv - V(Vs) * ov; break;
        default: m = ov; break;
      }
      V xc = xv;
      if (corr) {
        // m_{k−1} is the corrected step's m0; m_{k−2}, m_{k−3} its history.
        const V mp = detail::load<V>(m1 + e);
        V r = V(C.a) * detail::load<V>(last + e) + V(C.c0) * mp;
        if (cterms >= 1) r = r + V(C.c1) * (detail::load<V>(m2 + e) - mp);
        if (cterms >= 2) r = r + V(C.c2) * (detail::load<V>(m3 + e) - mp);
        xc = r + V(C.ct) * (m - mp);
      }
      detail::store(mt + e, m);
      detail::store(last + e, xc);
      if (x0p) detail::store(x0p + e, m);
      V next = V(P.a) * xc + V(P.c0) * m;
      if (pterms >= 1) next = next + V(P.c1) * (detail::load<V>(m1 + e) - m);
      if (pterms >= 2) next = next + V(P.c2) * (detail::load<V>(m2 + e) - m);
      if (check) {
        probe.model += ov - ov;
        probe.state += xv - xv;
        probe.result += next - next;
      }
      detail::store(xn + e, next);
    };
    };
    int mask = 0;
    if (!options_.threshold) {
      mask = detail::run_elementwise<Scalar>(shape.numel(), options_.vectorize, make_body(false, Scalar(1)));
    } else {
      const std::size_t per_item = shape.channels * shape.spatial;
      const auto convert_only = [=]<class V>(std::size_t e, detail::finite_probe<V>& probe) {
        const V xv = detail::load<V>(x + e), ov = detail::load<V>(out + e);
        V m;
        switch (conv) {
          case 1: m = (xv - V(Vs) * ov) / V(A); break;
          case 2: m = V(A) * xv - V(Vs) * ov; break;
          case 3: m = (xv - V(A) * ov) / V(Vs); break;
          case 4: m = V(A) * ov + V(Vs) * xv; break;
          case 5: m = xv - V(Vs) * ov; break;
          default: m = ov; break;
        }
        if (check) {
          probe.model += ov - ov;
          probe.state += xv - xv;
        }
        detail::store(mt + e, m);
      };
      const std::size_t first_bad = detail::for_each_item(shape.batch, per_item, [&](std::size_t i) -> int {
        const std::size_t lo = i * per_item, hi = lo + per_item;
        // Pass 1 stores the converted outputs in mt; pass 2 thresholds them and updates.
        const int m1mask = detail::run_range<Scalar>(lo, hi, options_.vectorize, convert_only);
        if (m1mask != 0) return m1mask;
        const Scalar bound = detail::threshold_bound<Scalar>(std::span<const Scalar>(mt + lo, per_item), *options_.threshold);
        return detail::run_range<Scalar>(lo, hi, options_.vectorize, make_body(true, bound));
      });
      mask = first_bad < shape.batch ? 1 : 0;
    }
    if (mask != 0)
      detail::fail_non_finite<Scalar>(k, timesteps_[static_cast<std::size_t>(k)], io.model_output, 1, io.x, std::span<const Scalar>(io.x_next), shape);
    state.advance(k);
  }

 private:
  unipc_options options_;
  sigma_list list_;
  std::vector<int> timesteps_;
  std::uint64_t id_ = 0;
};

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
