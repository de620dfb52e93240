#pragma once
/// \file
/// dpm_solver_sampler: DPM-Solver++ (Lu et al. 2022), multistep orders 1–3, ODE and SDE variants, as
/// diffusers' DPMSolverMultistepScheduler computes it (SPEC §12).
///
/// The formulas, in the VP variable x with α = 1/√(σ² + 1), σ_VP = σ·α, λ = log α − log σ_VP = −log σ,
/// stepping from position k (σ_s0) to k + 1 (σ_t), h = λ_t − λ_s0, m_j the x̂0 of the j-th latest step,
/// r0 = (λ_s0 − λ_s1)/h, r1 = (λ_s1 − λ_s2)/h:
///
///     D0 = m0;  order 2: D1 = (m0 − m1)/r0;
///     order 3: D1_0 = (m0 − m1)/r0, D1_1 = (m1 − m2)/r1, D1 = D1_0 + r0/(r0 + r1)·(D1_0 − D1_1),
///              D2 = (D1_0 − D1_1)/(r0 + r1)
///     dpmsolver++:     x' = (σ_VP,t/σ_VP,s0)·x − α_t(e^{−h} − 1)·D0
///                           − ½α_t(e^{−h} − 1)·D1            (order 2, midpoint)
///                           + α_t((e^{−h} − 1)/h + 1)·D1      (order 2 heun, and order 3)
///                           − α_t((e^{−h} − 1 + h)/h² − ½)·D2 (order 3)
///     sde-dpmsolver++: x' = (σ_VP,t/σ_VP,s0)e^{−h}·x + α_t(1 − e^{−2h})·D0
///                           + ½α_t(1 − e^{−2h})·D1                       (order 2, midpoint)
///                           + α_t((1 − e^{−2h})/(−2h) + 1)·D1             (order 2 heun, and order 3)
///                           + α_t((1 − e^{−2h} − 2h)/(2h)² − ½)·D2        (order 3)
///                           + σ_VP,t·√(1 − e^{−2h})·z
///
/// The deprecated noise-form algorithms keep ε̂ in the history (m_j = ε̂) and use, with e^h − 1:
///     dpmsolver:     x' = (α_t/α_s0)·x − σ_VP,t(e^h − 1)·D0 − ½σ_VP,t(e^h − 1)·D1 (midpoint)
///                         − σ_VP,t((e^h − 1)/h − 1)·D1 (heun, order 3) − σ_VP,t((e^h − 1 − h)/h² − ½)·D2
///     sde-dpmsolver: twice the D terms, + σ_VP,t·√(e^{2h} − 1)·z (orders 1–2)
///
/// A final σ of 0 is λ = +∞, h = +∞: diffusers gets x' = x̂0 through IEEE infinities. Here that step is
/// the limit written out (x' = m0, no noise), so no result depends on how Inf is handled (-ffast-math).
/// The order used at step k is diffusers': 1 on a chain's first step, 2 on its second, never above
/// `order`; 1 on the last step when euler_at_final, or lower_order_final with N < 15, or the final σ is
/// 0; 2 on the second-to-last when lower_order_final and N < 15.

#include <cmath>
#include <cstdint>
#include <optional>
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

/// diffusers' algorithm_type.
enum class dpm_algorithm {
  dpmsolver_pp,      ///< "dpmsolver++": the deterministic (probability-flow ODE) solver on x̂0
  sde_dpmsolver_pp,  ///< "sde-dpmsolver++": the SDE variant, fresh noise every step
  dpmsolver,         ///< "dpmsolver" (deprecated in diffusers): the ODE solver on ε̂; needs a final σ > 0
  sde_dpmsolver,     ///< "sde-dpmsolver" (deprecated): its SDE variant, orders 1–2; needs a final σ > 0
};

/// diffusers' solver_type: how the second-order term is formed (order 2 only; order 3 has one form).
enum class dpm_solver_type { midpoint, heun };

/// Options of DPM-Solver++, named as DPMSolverMultistepScheduler's config keys.
struct dpm_solver_options {
  int order = 2;                                          ///< solver_order: 1, 2 or 3
  dpm_algorithm algorithm = dpm_algorithm::dpmsolver_pp;  ///< algorithm_type
  dpm_solver_type solver_type = dpm_solver_type::midpoint;  ///< solver_type
  prediction_type prediction = prediction_type::epsilon;  ///< epsilon, sample or v_prediction
  bool lower_order_final = true;                          ///< lower the order of the last steps when N < 15
  bool euler_at_final = false;                            ///< first order on the last step
  /// thresholding: Imagen's dynamic thresholding of x̂0 per item (dynamic_thresholding_ratio,
  /// sample_max_value) before it enters the history; costs a second pass per item.
  std::optional<dynamic_threshold> threshold = std::nullopt;
  bool check_finite = true;                               ///< a [diffuse.numeric] error on NaN or Inf (as ddim_options)
  bool vectorize = true;                                  ///< false: the scalar reference loop (same bits)
};

/// Integer training timesteps as a DPM-Solver sigma list (diffusers' set_timesteps(timesteps=...)):
/// σ of each timestep from the table, then the final σ.
/// \throws diffuse::error for a list that is not strictly descending within [0, T).
inline sigma_list dpm_solver_timesteps(const noise_schedule& schedule, std::vector<int> timesteps, final_sigma final_type = final_sigma::zero) {
  const auto ts = custom_timesteps(schedule.size(), std::move(timesteps));
  const auto table = training_sigmas(schedule);
  sigma_list out;
  for (int t : ts) {
    out.sigmas.push_back(table[static_cast<std::size_t>(t)]);
    out.model_times.push_back(static_cast<double>(t));
  }
  out.sigmas.push_back(final_type == final_sigma::zero ? 0.0 : table.front());
  return out;
}

/// The per-step coefficients of a DPM-Solver++ step: x' = a·x + c0·D0 + c1·D1 + c2·D2 + noise·z, with D1's and
/// D2's r factors and the map from (x, model output) to x̂0. Also the first-order form other data-prediction
/// steps reduce to (LCM: a = √ᾱ_prev·c_skip, c0 = √ᾱ_prev·c_out, noise = √(1 − ᾱ_prev)).
struct dpm_step_coefficients {
  int order = 1;        ///< the order this step runs at (1–3)
  double a = 0;         ///< factor of x
  double c0 = 0;        ///< factor of D0 = x̂0 of this step
  double c1 = 0;        ///< factor of D1, the first difference of the history
  double c2 = 0;        ///< factor of D2, the second difference (order 3)
  double noise = 0;     ///< factor of the step noise z (SDE variants; 0 otherwise)
  double inv_r0 = 0;    ///< 1/r0
  double inv_r1 = 0;    ///< 1/r1
  double q = 0;         ///< r0/(r0 + r1)
  double inv_r01 = 0;   ///< 1/(r0 + r1)
  double x0_from_x = 0;    ///< x̂0 = x0_from_x·x + x0_from_out·out
  double x0_from_out = 0;  ///< see x0_from_x
  double alpha_s = 1;      ///< α at σ_k
  double sigma_vp_s = 0;   ///< σ_VP at σ_k (ε: x̂0 = (x − σ_VP·ε̂)/α)
};

namespace detail {

/// What one data-prediction step needs besides its buffers: the coefficients, how the model output
/// becomes the history value, and its post-processing.
struct dpm_step_plan {
  dpm_step_coefficients c;  ///< the step's coefficients (computed in double)
  /// data form 1: (x − σ_VP·ε̂)/α, 2: x0_from_x·x + x0_from_out·out (v, x0 itself, EDM's c_skip·x + c_out·F);
  /// noise form 3: ε̂ itself, 4: (x − α·x̂0)/σ_VP from x0, 5: α·v̂ + σ_VP·x from v.
  int conversion = 2;
  std::optional<dynamic_threshold> threshold = std::nullopt;  ///< dynamic thresholding of the data value
  std::optional<double> clip = std::nullopt;                   ///< clip_sample: clamp it to [−r, r] (without thresholding)
  bool check = true;                                           ///< report non-finite values in the mask
  bool vectorize = true;                                       ///< false: the scalar reference loop
};

/// The fused pass of a DPM-Solver++-form step (shared by dpm_solver_sampler, edm_dpm_solver_sampler and
/// lcm_sampler): forms the history value m0 from the model output (thresholded or clipped as planned),
/// stores it in m0p (and io.x0) and writes x_next = a·x + c0·D0 (+ c1·D1 + c2·D2) (+ noise·z). m1p, m2p
/// are the previous history values (orders 2, 3). Returns the non-finite mask (0: all finite).
template <Real Scalar>
int dpm_step_pass(const dpm_step_plan& plan, const solver_buffers<Scalar>& io, const sample_shape& shape, Scalar* m0p, const Scalar* m1p,
                  const Scalar* m2p, bool noisy) {
  // The kernel helpers are called as detail::…: unqualified, argument-dependent lookup on an xsimd batch
  // would pick xsimd::store, an aligned store.
  const dpm_step_coefficients& c = plan.c;
  const auto px = static_cast<Scalar>(c.x0_from_x), po = static_cast<Scalar>(c.x0_from_out);
  const auto A = static_cast<Scalar>(c.a), C0 = static_cast<Scalar>(c.c0), C1 = static_cast<Scalar>(c.c1), C2 = static_cast<Scalar>(c.c2);
  const auto S = static_cast<Scalar>(c.noise), ir0 = static_cast<Scalar>(c.inv_r0), ir1 = static_cast<Scalar>(c.inv_r1);
  const auto q = static_cast<Scalar>(c.q), ir01 = static_cast<Scalar>(c.inv_r01);
  const auto ae = static_cast<Scalar>(c.alpha_s), ve = static_cast<Scalar>(c.sigma_vp_s);
  const bool check = plan.check;
  const bool clipped = plan.clip.has_value();
  const auto clip = static_cast<Scalar>(plan.clip.value_or(1.0));
  // The conversion of the model output into what the history holds, as diffusers' convert_model_output:
  // data form 1: (x − σ_VP·ε̂)/α, 2: x0_from_x·x + x0_from_out·out (v, or x0 itself); noise form 3: ε̂
  // itself, 4: (x − α·x̂0)/σ_VP from x0, 5: α·v̂ + σ_VP·x from v.
  const int conv = plan.conversion;
  const auto convert = [=]<class V>(const V& xv, const V& ov) -> V {
    switch (conv) {
      case 1: return (xv - V(ve) * ov) / V(ae);
      case 3: return ov;
      case 4: return (xv - V(ae) * ov) / V(ve);
      case 5: return V(ae) * ov + V(ve) * xv;
      default: return V(px) * xv + V(po) * ov;
    }
  };
  struct pointers {
    const Scalar *x, *out, *z, *m1, *m2;
    Scalar *m0, *xn, *x0;
  };
  const auto at = [&](std::size_t base, std::nullptr_t) {
    return pointers{io.x.data() + base,
                    io.model_output.data() + base,
                    noisy && !io.noise.empty() ? io.noise.data() + base : nullptr,
                    m1p ? m1p + base : nullptr,
                    m2p ? m2p + base : nullptr,
                    m0p ? m0p + base : nullptr,
                    io.x_next.data() + base,
                    io.x0.empty() ? nullptr : io.x0.data() + base};
  };
  // The element body. Thresholded: m0 is the item's x̂0 already in p.m0, clamped to [−s, s] and divided
  // by s here (dynamic thresholding needs the whole item's x̂0 for s, so it takes two passes).
  const auto make_body = [&](auto order_c, auto noisy_c, auto thresholded_c, const pointers& p, Scalar bound) {
    constexpr int order = decltype(order_c)::value;
    constexpr bool is_noisy = decltype(noisy_c)::value, thresholded = decltype(thresholded_c)::value;
    return [=]<class V>(std::size_t j, detail::finite_probe<V>& probe) {
      const V xv = detail::load<V>(p.x + j), ov = detail::load<V>(p.out + j);
      // diffusers' conversion: (x − σ_VP·ε̂)/α for ε; α·x − σ_VP·v̂ for v; the output itself for x0.
      V m0;
      if constexpr (thresholded) {
        m0 = detail::clamp_like_std(detail::load<V>(p.m0 + j), V(-bound), V(bound)) / V(bound);
      } else {
        m0 = convert(xv, ov);
        if (clipped) m0 = detail::clamp_like_std(m0, V(-clip), V(clip));
      }
      if (p.m0) detail::store(p.m0 + j, m0);
      if (p.x0) detail::store(p.x0 + j, m0);
      V next = V(A) * xv + V(C0) * m0;
      if constexpr (order == 2) {
        const V d1 = V(ir0) * (m0 - detail::load<V>(p.m1 + j));
        next = next + V(C1) * d1;
      } else if constexpr (order == 3) {
        const V m1 = detail::load<V>(p.m1 + j), m2 = detail::load<V>(p.m2 + j);
        const V d10 = V(ir0) * (m0 - m1), d11 = V(ir1) * (m1 - m2);
        const V d1 = d10 + V(q) * (d10 - d11), d2 = V(ir01) * (d10 - d11);
        next = next + V(C1) * d1 + V(C2) * d2;
      }
      if constexpr (is_noisy) next = next + V(S) * detail::load<V>(p.z + j);
      if (check) {
        probe.model += ov - ov;
        probe.state += xv - xv;
        probe.result += next - next;
      }
      detail::store(p.xn + j, next);
    };
  };
  const std::size_t per_item = shape.channels * shape.spatial;
  const auto run = [&](auto order_c, auto noisy_c) -> int {
    constexpr bool is_noisy = decltype(noisy_c)::value;
    if (!plan.threshold)
      return detail::run_fused_pass<Scalar>(shape.numel(), per_item, plan.vectorize, is_noisy, io.generated, at, [&](const pointers& p) {
        return make_body(order_c, noisy_c, std::false_type{}, p, Scalar(1));
      });
    const std::size_t first_bad = detail::for_each_item(shape.batch, per_item, [&](std::size_t i) -> int {
      const std::size_t base = i * per_item;
      pointers p = at(base, nullptr);
      if (!p.m0) p.m0 = detail::thread_scratch<Scalar, detail::scratch_slot::x0>(per_item).data();
      if (is_noisy && io.generated.generator) p.z = detail::generated_item_noise<Scalar>(io.generated, per_item, base);
      Scalar* const m0 = p.m0;
      const int mask = detail::run_range<Scalar>(0, per_item, plan.vectorize, [=]<class V>(std::size_t j, detail::finite_probe<V>& probe) {
        const V xv = detail::load<V>(p.x + j), ov = detail::load<V>(p.out + j);
        if (check) {
          probe.model += ov - ov;
          probe.state += xv - xv;
        }
        detail::store(m0 + j, convert(xv, ov));
      });
      if (mask != 0) return mask;
      const Scalar bound = detail::threshold_bound<Scalar>(std::span<const Scalar>(m0, per_item), *plan.threshold);
      return detail::run_range<Scalar>(0, per_item, plan.vectorize, make_body(order_c, noisy_c, std::true_type{}, p, bound));
    });
    return first_bad < shape.batch ? 1 : 0;
  };
  using one = std::integral_constant<int, 1>;
  using two = std::integral_constant<int, 2>;
  using three = std::integral_constant<int, 3>;
  const auto with_noise = [&](auto order_c) {
    return noisy ? run(order_c, std::true_type{}) : run(order_c, std::false_type{});
  };
  return c.order == 1 ? with_noise(one{}) : c.order == 2 ? with_noise(two{}) : with_noise(three{});
}

}  // namespace detail

/// DPM-Solver++ over a sigma list, with integer model times (a Denoiser taking int t works).
///
/// Example:
/// \code
/// const diffuse::dpm_solver_sampler solver(schedule, 10, {.kind = diffuse::sigma_kind::karras}, {.order = 2});
/// diffuse::fill_initial_noise<float>(x, shape, 42);
/// diffuse::solve(solver, model, std::span<float>(x), shape, {.seed = 42});
/// \endcode
class dpm_solver_sampler {
 public:
  /// The model time is an integer (diffusers' int64 timesteps).
  static constexpr bool fractional_time = false;

  /// The solver of diffusers' set_timesteps(N) with these sigma options.
  /// \throws diffuse::error for an order outside 1–3, previous_x prediction, or invalid sigma options.
  dpm_solver_sampler(const noise_schedule& schedule, int num_inference_steps, const sigma_options& sigmas = {},
                     dpm_solver_options options = {})
      : dpm_solver_sampler(dpm_solver_sigmas(schedule, num_inference_steps, sigmas), options) {}

  /// The solver over a given sigma list (from dpm_solver_sigmas or dpm_solver_timesteps).
  /// \throws diffuse::error for an order outside 1–3, previous_x prediction, a list whose sigmas are not
  ///         strictly decreasing and ≥ 0, or whose model times are not integers.
  dpm_solver_sampler(sigma_list list, dpm_solver_options options) : dpm_solver_sampler(std::move(list), options, 0.0) {}

 protected:
  /// With edm_sigma_data > 0 the solver of EDMDPMSolverMultistepScheduler (edm_dpm_solver_sampler): the
  /// state is x_σ = x0 + σ·ε (α = 1, σ_VP = σ), x̂0 = c_skip·x + c_out·F, fractional model times allowed.
  dpm_solver_sampler(sigma_list list, dpm_solver_options options, double edm_sigma_data)
      : options_(options), list_(std::move(list)), id_(detail::next_solver_id()), edm_(edm_sigma_data) {
    if (options_.order < 1 || options_.order > 3)
      detail::fail(error_kind::sampler, "DPM-Solver++ order = ", options_.order, "; expected solver_order 1, 2 or 3");
    if (!list_.flow) detail::refuse_flow_prediction(options_.prediction, "DPM-Solver++");
    if (list_.flow && options_.prediction == prediction_type::flow_prediction && !data_form())
      detail::fail(error_kind::sampler, "flow_prediction with the noise-form algorithm ", options_.algorithm == dpm_algorithm::dpmsolver ? "dpmsolver" : "sde-dpmsolver",
                   "; expected dpmsolver++ or sde-dpmsolver++ (diffusers converts a flow output only to x0)");
    if (options_.prediction == prediction_type::previous_x)
      detail::fail(error_kind::sampler, "DPM-Solver++ needs a model that predicts epsilon, sample or v_prediction; got previous_x");
    if (options_.threshold) x0_processing{.threshold = options_.threshold}.validate();
    if (!data_form()) {
      const char* name = options_.algorithm == dpm_algorithm::dpmsolver ? "dpmsolver" : "sde-dpmsolver";
      if (!list_.sigmas.empty() && list_.sigmas.back() == 0.0)
        detail::fail(error_kind::sampler, "algorithm ", name, " with a final sigma of 0: the noise form has no limit there (diffusers "
                                          "refuses it too); expected final_sigmas_type sigma_min, or dpmsolver++");
      if (options_.algorithm == dpm_algorithm::sde_dpmsolver && options_.order == 3)
        detail::fail(error_kind::sampler, "sde-dpmsolver with order 3: diffusers has no third-order update for it; expected order 1 or 2");
      if (options_.threshold)
        detail::fail(error_kind::sampler, "thresholding with algorithm ", name, " is not supported; expected dpmsolver++ or sde-dpmsolver++");
    }
    const std::size_t n = list_.model_times.size();
    if (n == 0 || list_.sigmas.size() != n + 1)
      detail::fail(error_kind::timesteps, "a sigma list of ", list_.sigmas.size(), " sigmas and ", n, " model times; expected N >= 1 model times and N + 1 sigmas");
    for (std::size_t i = 0; i < list_.sigmas.size(); ++i) {
      const double s = list_.sigmas[i];
      if (!detail::valid_list_sigma(list_.sigmas, i))
        detail::fail(error_kind::timesteps, "sigma ", i, " = ", s, " of the list; expected finite sigmas, strictly decreasing (the "
                                            "final one may repeat the last), > 0 except the final one");
    }
    for (std::size_t i = 0; i < n && edm_ > 0.0; ++i)  // only for the error messages of a non-finite step
      timesteps_.push_back(static_cast<int>(std::lround(list_.model_times[i])));
    for (std::size_t i = 0; i < n && edm_ == 0.0; ++i) {
      const double t = list_.model_times[i];
      if (t != std::trunc(t) || t < 0.0)
        detail::fail(error_kind::timesteps, "model time ", i, " = ", t, "; DPM-Solver++ gives the model integer timesteps >= 0 "
                                            "(diffusers' int64), expected a list from dpm_solver_sigmas or dpm_solver_timesteps");
      timesteps_.push_back(static_cast<int>(t));
    }
  }


 public:
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
  /// sigmas {1 − σ_k, σ_k}, diffusers' scale_noise).
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
  /// The options it was built with.
  const dpm_solver_options& options() const noexcept { return options_; }
  /// This solver's identity, which its states remember.
  std::uint64_t id() const noexcept { return id_; }
  /// History buffers a state needs: the order (0 for order 1).
  std::size_t history_slots() const noexcept { return options_.order == 1 ? 0 : static_cast<std::size_t>(options_.order); }
  /// Whether the step at k draws noise (the SDE variants, except into σ = 0).
  bool adds_noise(int k) const {
    const bool sde = options_.algorithm == dpm_algorithm::sde_dpmsolver_pp || options_.algorithm == dpm_algorithm::sde_dpmsolver;
    return sde && sigma(k + 1) > 0.0 && !detail::repeats_last(sigma(k), sigma(k + 1));
  }
  /// Whether the history holds x̂0 (dpmsolver++, sde-dpmsolver++) rather than ε̂ (the deprecated pair).
  bool data_form() const noexcept {
    return options_.algorithm == dpm_algorithm::dpmsolver_pp || options_.algorithm == dpm_algorithm::sde_dpmsolver_pp;
  }

  /// A state for this solver and shape (allocated here, once).
  template <Real Scalar>
  solver_state<Scalar> make_state(const sample_shape& shape) const {
    return solver_state<Scalar>(id_, history_slots(), shape);
  }

  /// The order the step at position k uses when the chain has taken `steps_taken` steps before it.
  int order_at(int k, int steps_taken) const {
    const int n = num_steps();
    const bool last = k == n - 1, second_last = k == n - 2;
    const bool small = options_.lower_order_final && n < 15;
    const bool lower_final = last && (options_.euler_at_final || small || sigma(n) == 0.0);
    const bool lower_second = second_last && small;
    if (options_.order == 1 || steps_taken < 1 || lower_final) return 1;
    if (options_.order == 2 || steps_taken < 2 || lower_second) return 2;
    return 3;
  }

  /// The per-step coefficients (dpm_step_coefficients).
  using step_coefficients = dpm_step_coefficients;

  /// The coefficients of position k at the given order (computed in double).
  step_coefficients coefficients(int k, int order) const {
    detail::check_position(k, num_steps());
    step_coefficients c;
    c.order = order;
    // EDM's variable x_σ has α = 1, σ_VP = σ; flow lists α = 1 − σ, σ_VP = σ; VP lists α = 1/√(σ² + 1), σ_VP = σα.
    const bool edm = edm_ > 0.0;
    const auto alpha = [&](double s) { return edm ? 1.0 : list_.alpha(s); };
    const auto sigma_vp = [&](double s) { return edm ? s : list_.sigma_vp(s); };
    const auto lambda = [&](double s) { return std::log(alpha(s)) - std::log(sigma_vp(s)); };
    const double s0 = sigma(k), st = sigma(k + 1);
    const double a0 = alpha(s0), v0 = sigma_vp(s0);
    c.alpha_s = a0;
    c.sigma_vp_s = v0;
    if (edm) {  // EDM's precondition_outputs: x̂0 = c_skip·x + c_out·F, c_out negated for v_prediction
      const double d2 = edm_ * edm_;
      c.x0_from_x = d2 / (s0 * s0 + d2);
      c.x0_from_out = (options_.prediction == prediction_type::v_prediction ? -1.0 : 1.0) * s0 * edm_ / std::sqrt(s0 * s0 + d2);
    } else switch (options_.prediction) {
      case prediction_type::epsilon:
        c.x0_from_x = 1.0 / a0;
        c.x0_from_out = -v0 / a0;
        break;
      case prediction_type::v_prediction:
        c.x0_from_x = a0;
        c.x0_from_out = -v0;
        break;
      case prediction_type::flow_prediction:  // x̂0 = x − σ·v, as diffusers (1·x and −σ·v round as x − σ·v)
        c.x0_from_x = 1.0;
        c.x0_from_out = -s0;
        break;
      default:
        c.x0_from_out = 1.0;
        break;
    }
    if (st == 0.0) {  // λ_t = +∞: the limit x' = x̂0, with no noise
      c.order = 1;
      c.c0 = 1.0;
      return c;
    }
    if (detail::repeats_last(s0, st)) {  // h ≈ 0 (Karras or exponential sigmas ending at σ_min, then final σ_min): the identity,
      c.order = 1;   // the limit of every order's formula, where diffusers' heun and order 3 give 0/0
      c.a = 1.0;
      return c;
    }
    const double at = alpha(st), vt = sigma_vp(st);
    const double h = lambda(st) - lambda(s0);
    if (!data_form()) {  // the ε̂ form: x' = (α_t/α_s0)·x − σ_VP,t(e^h − 1)·D0 − …
      const bool sde_eps = options_.algorithm == dpm_algorithm::sde_dpmsolver;
      const double ep = std::expm1(h);  // e^h − 1
      const double f = sde_eps ? 2.0 : 1.0;
      c.a = at / a0;
      c.c0 = -f * vt * ep;
      if (sde_eps) c.noise = vt * std::sqrt(std::expm1(2.0 * h));
      if (order >= 2) {
        const double r0 = (lambda(s0) - lambda(sigma(k - 1))) / h;
        c.inv_r0 = 1.0 / r0;
        const bool heun_form = order == 3 || options_.solver_type == dpm_solver_type::heun;
        c.c1 = heun_form ? -f * vt * (ep / h - 1.0) : -0.5 * f * vt * ep;
        if (order == 3) {
          const double r1 = (lambda(sigma(k - 1)) - lambda(sigma(k - 2))) / h;
          c.inv_r1 = 1.0 / r1;
          c.q = r0 / (r0 + r1);
          c.inv_r01 = 1.0 / (r0 + r1);
          c.c2 = -vt * ((ep - h) / (h * h) - 0.5);
        }
      }
      return c;
    }
    const bool sde = options_.algorithm == dpm_algorithm::sde_dpmsolver_pp;
    const double em = std::expm1(-h);        // e^{−h} − 1
    const double e2 = -std::expm1(-2.0 * h);  // 1 − e^{−2h}
    if (!sde) {
      c.a = vt / v0;
      c.c0 = -at * em;
    } else {
      c.a = vt / v0 * std::exp(-h);
      c.c0 = at * e2;
      c.noise = vt * std::sqrt(e2);
    }
    if (order >= 2) {
      const double h0 = lambda(s0) - lambda(sigma(k - 1));
      const double r0 = h0 / h;
      c.inv_r0 = 1.0 / r0;
      const bool heun_form = order == 3 || options_.solver_type == dpm_solver_type::heun;
      if (!sde)
        c.c1 = heun_form ? at * (em / h + 1.0) : -0.5 * at * em;
      else
        c.c1 = heun_form ? at * (e2 / (-2.0 * h) + 1.0) : 0.5 * at * e2;
      if (order == 3) {
        const double h1 = lambda(sigma(k - 1)) - lambda(sigma(k - 2));
        const double r1 = h1 / h;
        c.inv_r1 = 1.0 / r1;
        c.q = r0 / (r0 + r1);
        c.inv_r01 = 1.0 / (r0 + r1);
        c.c2 = !sde ? -at * ((em + h) / (h * h) - 0.5) : at * ((e2 - 2.0 * h) / (4.0 * h * h) - 0.5);
      }
    }
    return c;
  }

  /// One DPM-Solver++ step at position k: one fused pass that forms x̂0 from the model output, stores it
  /// in the state's history and writes x_next from it and the history.
  /// \param k     position, 0 <= k < num_steps(); with a state that has taken steps, the next position
  /// \param io    x (the VP sample at σ_k), the model output there, x_next; noise (a buffer or generated)
  ///              when adds_noise(k); optionally x0
  /// \param shape the batch layout of the buffers
  /// \param state from make_state<Scalar>(shape), used for this chain only
  /// \throws diffuse::error on buffers that do not match `shape`, a state of another solver or shape or
  ///         out of order, and with check_finite on NaN or Inf.
  template <Real Scalar>
  void step(int k, const solver_buffers<Scalar>& io, const sample_shape& shape, solver_state<Scalar>& state) const {
    detail::check_position(k, num_steps());
    state.check(id_, shape, k, "dpm_solver_sampler");
    const bool noisy = adds_noise(k);
    detail::check_solver_buffers(io, shape, noisy);
    const int taken = state.steps_taken();
    const auto c = coefficients(k, order_at(k, taken));
    const std::size_t slots = state.slots();
    Scalar* m0p = slots ? state.slot(static_cast<std::size_t>(taken) % slots).data() : nullptr;
    const Scalar* m1p = c.order >= 2 ? state.slot(static_cast<std::size_t>(taken - 1) % slots).data() : nullptr;
    const Scalar* m2p = c.order >= 3 ? state.slot(static_cast<std::size_t>(taken - 2) % slots).data() : nullptr;
    const prediction_type pt = options_.prediction;
    const int conv = data_form() ? (pt == prediction_type::epsilon ? (edm_ ? 2 : 1) : 2)
                                 : (pt == prediction_type::epsilon ? 3 : pt == prediction_type::sample ? 4 : 5);
    const int mask = detail::dpm_step_pass<Scalar>({.c = c, .conversion = conv, .threshold = options_.threshold,
                                                    .check = options_.check_finite, .vectorize = options_.vectorize},
                                                   io, shape, m0p, m1p, m2p, noisy);
    if (mask != 0)
      detail::fail_non_finite<Scalar>(k, timesteps_[static_cast<std::size_t>(k)], io.model_output, 1, io.x, std::span<const Scalar>(io.x_next), shape);
    state.advance(k);
  }

 private:
  dpm_solver_options options_;
  sigma_list list_;
  std::vector<int> timesteps_;
  std::uint64_t id_ = 0;
  double edm_ = 0.0;  // EDM's σ_data; 0 for the VP solver
};

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
