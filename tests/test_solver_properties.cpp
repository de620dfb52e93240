// Behaviour of the samplers/ solvers on the exact Gaussian-mixture denoiser (SPEC §10): convergence
// order of the probability-flow ODE, identities with DDIM, mode weights of the stochastic variants;
// and determinism, allocation and bad-input checks.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <numbers>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "counting_new.hpp"
#include "diffuse/samplers/ddim.hpp"
#include "diffuse/gaussian_mixture.hpp"
#include "diffuse/img2img.hpp"
#include "diffuse/sample.hpp"
#include "diffuse/samplers/dpm_solver.hpp"
#include "diffuse/samplers/euler.hpp"
#include "diffuse/samplers/from_config.hpp"
#include "diffuse/samplers/heun.hpp"
#include "diffuse/samplers/unipc.hpp"
#include "support.hpp"

namespace {

const diffuse::gaussian_mixture& mixture() {
  static const diffuse::gaussian_mixture gm({0.3, 0.7}, {{-2.0, 0.0}, {2.0, 1.0}}, {0.5, 0.3});
  return gm;
}

/// A sigma list N + 1 points log-uniform from σ_max to σ_min (no final zero), integer dummy model times:
/// the tests below drive the steps themselves and evaluate the exact x̂0 at σ_k.
diffuse::sigma_list geometric(int n, double sigma_max, double sigma_min) {
  diffuse::sigma_list l;
  for (int i = 0; i <= n; ++i)
    l.sigmas.push_back(std::exp(std::log(sigma_max) + (std::log(sigma_min) - std::log(sigma_max)) * i / n));
  l.model_times.assign(static_cast<std::size_t>(n), 0.0);
  return l;
}

/// Runs a solver step by step (a user's own loop) with the exact x̂0 of the mixture at each σ_k; x is the
/// solver's state variable. The model predicts x0 ("sample").
template <class Sampler>
void run_exact(const Sampler& solver, std::vector<double>& x, const diffuse::sample_shape& shape, const diffuse::gaussian_mixture& gm) {
  std::vector<double> input(x.size()), out(x.size()), next(x.size());
  auto state = solver.template make_state<double>(shape);
  for (int k = 0; k < solver.num_steps(); ++k) {
    const double s = solver.sigma(k), c = solver.input_scale(k);
    for (std::size_t i = 0; i < x.size(); ++i) input[i] = x[i] * c;
    // The model sees the VP sample at ᾱ = 1/(σ² + 1) (Euler's scale_model_input gives exactly that).
    gm.denoise<double>(input, 1.0 / (s * s + 1.0), out);
    solver.template step<double>(k, {.x = x, .model_output = out, .x_next = next}, shape, state);
    x.swap(next);
  }
}

double rms(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(s / static_cast<double>(a.size()));
}

}  // namespace

TEST_CASE("probability-flow ODE: Euler converges with order 1, Heun, DPM-Solver++ 2M and UniPC-2 with 2, 3M and UniPC-3 with 3") {
  // 64 two-dimensional points from σ_max = 80 to σ_min = 0.03, log-uniform steps (no final zero, no
  // lowered final orders), compared in the σ-space variable x/α at σ_min against DPM-Solver++ 3M with 4000
  // steps. The multistep solvers start as diffusers starts them: order 1 on the first step, 2 on the
  // second. That warm-up's O(h²) local error is damped by the flow (by about s/σ_max) but not removed,
  // so 3M shows its third order over N = 5 … 20 and tends to slope 2 for large N; its bound is checked
  // on the 10 → 20 slope, Euler's and 2M's on the 20 → 40 slope. UniPC-p's predictor has order p and its
  // corrector raises that by up to one (the last step stays uncorrected): its bounds span [p − 0.2, p + 1.2].
  // A mixture whose flow is smooth (overlapping modes), so the asymptotic range starts at a few steps.
  const diffuse::gaussian_mixture gm({0.3, 0.7}, {{-1.0, 0.0}, {1.0, 0.5}}, {0.8, 0.6});
  const double smax = 80, smin = 0.03;
  const diffuse::sample_shape shape{.batch = 64, .channels = 2, .spatial = 1};
  std::vector<double> z(shape.numel());
  diffuse::fill_initial_noise<double>(z, shape, 7);
  const double a_max = 1.0 / std::sqrt(smax * smax + 1.0), a_min = 1.0 / std::sqrt(smin * smin + 1.0);
  const auto dpm = [&](int n, int order) {
    const diffuse::dpm_solver_sampler solver(geometric(n, smax, smin), {.order = order, .prediction = diffuse::prediction_type::sample,
                                                                         .lower_order_final = false});
    std::vector<double> x(z.size());
    for (std::size_t i = 0; i < z.size(); ++i) x[i] = z[i] * smax * a_max;  // the VP sample at σ_max
    run_exact(solver, x, shape, gm);
    for (auto& v : x) v /= a_min;
    return x;
  };
  const auto euler = [&](int n) {
    const diffuse::euler_sampler solver(geometric(n, smax, smin), {.prediction = diffuse::prediction_type::sample});
    std::vector<double> x(z.size());
    for (std::size_t i = 0; i < z.size(); ++i) x[i] = z[i] * smax;  // x/α at σ_max
    run_exact(solver, x, shape, gm);
    return x;
  };
  const auto heun = [&](int n) {
    const diffuse::heun_sampler solver(geometric(n, smax, smin), {.prediction = diffuse::prediction_type::sample});
    std::vector<double> x(z.size());
    for (std::size_t i = 0; i < z.size(); ++i) x[i] = z[i] * smax;
    run_exact(solver, x, shape, gm);
    return x;
  };
  const auto unipc = [&](int n, int order) {
    const diffuse::unipc_sampler solver(geometric(n, smax, smin), {.order = order, .prediction = diffuse::prediction_type::sample,
                                                                   .lower_order_final = false});
    std::vector<double> x(z.size());
    for (std::size_t i = 0; i < z.size(); ++i) x[i] = z[i] * smax * a_max;
    run_exact(solver, x, shape, gm);
    for (auto& v : x) v /= a_min;
    return x;
  };
  const auto reference = dpm(4000, 3);
  const int ns[] = {5, 10, 20, 40};
  struct method {
    const char* name;
    int order;
    int pair;       // which slope is bounded: 1 for N = 10 → 20, 2 for N = 20 → 40
    double lo, hi;  // its bounds
  };
  for (const method m : {method{"Heun", -1, 2, 1.8, 2.2}, method{"Euler", 0, 2, 0.9, 1.1}, method{"DPM-Solver++ 1", 1, 2, 0.9, 1.1}, method{"DPM-Solver++ 2M", 2, 2, 1.8, 2.2},
                         method{"DPM-Solver++ 3M", 3, 1, 2.6, 3.4}, method{"UniPC-2", 12, 2, 1.8, 3.2}, method{"UniPC-3", 13, 1, 2.6, 4.2}}) {
    double err[4];
    for (int i = 0; i < 4; ++i) err[i] = rms(m.order < 0    ? heun(ns[i])
                                 : m.order == 0 ? euler(ns[i])
                                 : m.order > 10 ? unipc(ns[i], m.order - 10)
                                                : dpm(ns[i], m.order),
                                 reference);
    double slope[3];
    for (int i = 0; i < 3; ++i) slope[i] = std::log(err[i] / err[i + 1]) / std::log(2.0);
    std::printf("%-16s error at N = 5, 10, 20, 40: %.3e %.3e %.3e %.3e; slopes %.2f %.2f %.2f (bound on slope %d: [%.2f, %.2f])\n", m.name,
                err[0], err[1], err[2], err[3], slope[0], slope[1], slope[2], m.pair + 1, m.lo, m.hi);
    CAPTURE(std::string(m.name));
    CHECK(slope[m.pair] >= m.lo);
    CHECK(slope[m.pair] <= m.hi);
    CHECK(err[3] < err[0]);
  }
}

TEST_CASE_TEMPLATE("DPM-Solver++ order 1 is DDIM with eta = 0 on the same list", Scalar, float, double) {
  const auto schedule = diffuse::noise_schedule::linear(1000);
  const auto ts = diffuse::make_timesteps(1000, 12, diffuse::timestep_spacing::leading, 1);
  const diffuse::ddim_sampler ddim(schedule, ts, {.eta = 0.0});
  const diffuse::dpm_solver_sampler dpm(diffuse::dpm_solver_timesteps(schedule, ts), {.order = 1});
  const diffuse::sample_shape shape{.batch = 16, .channels = 2, .spatial = 1};
  const auto model = mixture().denoiser<Scalar>(schedule, diffuse::prediction_type::epsilon);
  std::vector<Scalar> a(shape.numel()), b(shape.numel());
  diffuse::fill_initial_noise<Scalar>(a, shape, 3);
  b = a;
  diffuse::sample(ddim, model, std::span<Scalar>(a), shape);
  diffuse::solve(dpm, model, std::span<Scalar>(b), shape);
  // The two write the same step differently ((x − σ_VP·ε̂)/α·α_t − ... against √ᾱ_p·x̂0 + √(1 − ᾱ_p)·ε̂):
  // rounding only, 1e-12 in double, 1e-5 in float.
  const double tol = std::is_same_v<Scalar, double> ? 1e-12 : 1e-5;
  std::vector<double> e(a.begin(), a.end());
  const double err = test::worst_relative(b, e, tol);
  std::printf("DPM-Solver++ 1 vs DDIM eta=0 (%s): %.3g of the bound %.0e\n", std::is_same_v<Scalar, double> ? "double" : "float", err * tol, tol);
  CHECK(err <= 1.0);
}

TEST_CASE_TEMPLATE("Euler is DDIM with eta = 0 in the rescaled variable x/sqrt(alpha_bar)", Scalar, float, double) {
  // Leading spacing gives integer timesteps, so Euler's σ are table values, and its init_noise_sigma
  // √(σ_max² + 1) = 1/√ᾱ_T is exactly the rescaling of DDIM's x_T; both end at σ = 0, x = x̂0.
  const auto schedule = diffuse::noise_schedule::linear(1000);
  const diffuse::sigma_options so{.spacing = diffuse::timestep_spacing::leading, .steps_offset = 1};
  const diffuse::euler_sampler euler(schedule, 10, so);
  std::vector<int> ts;
  for (int k = 0; k < euler.num_steps(); ++k) ts.push_back(static_cast<int>(euler.model_time(k)));
  const diffuse::ddim_sampler ddim(schedule, ts, {.eta = 0.0});
  const diffuse::sample_shape shape{.batch = 16, .channels = 2, .spatial = 1};
  const auto model = mixture().denoiser<Scalar>(schedule, diffuse::prediction_type::epsilon);
  const auto fractional = [&](std::span<const Scalar> x, double t, std::span<Scalar> out) { model(x, static_cast<int>(t), out); };
  std::vector<Scalar> a(shape.numel()), b(shape.numel());
  diffuse::fill_initial_noise<Scalar>(a, shape, 5);
  b = a;
  diffuse::sample(ddim, model, std::span<Scalar>(a), shape);
  diffuse::solve(euler, fractional, std::span<Scalar>(b), shape);
  const double tol = std::is_same_v<Scalar, double> ? 1e-12 : 1e-5;
  std::vector<double> e(a.begin(), a.end());
  const double err = test::worst_relative(b, e, tol);
  std::printf("Euler vs DDIM eta=0 (%s): %.3g of the bound %.0e\n", std::is_same_v<Scalar, double> ? "double" : "float", err * tol, tol);
  CHECK(err <= 1.0);
}

namespace {
/// Fraction of points nearer mode 0 (−2, 0) than mode 1 (2, 1), and the std of each mode's points.
struct mode_stats {
  double weight0, std0, std1;
};
mode_stats stats(const std::vector<double>& x) {
  const std::size_t n = x.size() / 2;
  double c0 = 0, s0 = 0, s1 = 0, c1 = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double u = x[2 * i], v = x[2 * i + 1];
    const double d0 = (u + 2) * (u + 2) + v * v, d1 = (u - 2) * (u - 2) + (v - 1) * (v - 1);
    if (d0 < d1) {
      ++c0;
      s0 += d0;
    } else {
      ++c1;
      s1 += d1;
    }
  }
  return {c0 / static_cast<double>(n), std::sqrt(s0 / c0 / 2), std::sqrt(s1 / c1 / 2)};
}
}  // namespace

TEST_CASE("SDE-DPM-Solver++ and Euler ancestral reproduce the mixture's mode weights and spreads") {
  const auto schedule = diffuse::noise_schedule::linear(1000);
  const diffuse::sample_shape shape{.batch = 4000, .channels = 2, .spatial = 1};
  const auto table = diffuse::training_sigmas(schedule);
  // The exact x̂0 at the σ the solver uses: the table's σ at the (possibly fractional) time, interpolated
  // as the solvers interpolate it.
  const auto exact = [&](std::span<const double> x, double t, std::span<double> out) {
    const auto j = static_cast<std::size_t>(std::floor(t));
    const double s = j + 1 < table.size() ? table[j] + (table[j + 1] - table[j]) * (t - static_cast<double>(j)) : table[j];
    mixture().denoise<double>(x, 1.0 / (s * s + 1.0), out);
  };
  const auto check = [&](const char* name, const std::vector<double>& x) {
    const auto s = stats(x);
    const double se = std::sqrt(0.3 * 0.7 / 4000.0);
    std::printf("%s: mode-0 weight %.4f (0.3 +- %.4f), spreads %.3f (0.5), %.3f (0.3)\n", name, s.weight0, 4 * se, s.std0, s.std1);
    CAPTURE(std::string(name));
    CHECK(std::abs(s.weight0 - 0.3) < 4 * se);
    CHECK(std::abs(s.std0 - 0.5) < 0.05);
    CHECK(std::abs(s.std1 - 0.3) < 0.03);
  };
  {
    const diffuse::dpm_solver_sampler solver(schedule, 50, {},
                                             {.order = 2, .algorithm = diffuse::dpm_algorithm::sde_dpmsolver_pp, .prediction = diffuse::prediction_type::sample});
    std::vector<double> x(shape.numel());
    diffuse::fill_initial_noise<double>(x, shape, 11);
    diffuse::solve(solver, [&](std::span<const double> in, int t, std::span<double> out) { exact(in, t, out); }, std::span<double>(x), shape,
                   {.seed = 11});
    check("SDE-DPM-Solver++ 2M, 50 steps", x);
  }
  {
    // First order in its drift: 50 steps leave the spreads ~12% low, 200 reach sampling error.
    const diffuse::euler_ancestral_sampler solver(schedule, 200, {}, {.prediction = diffuse::prediction_type::sample});
    std::vector<double> x(shape.numel());
    diffuse::fill_initial_noise<double>(x, shape, 12);
    // Euler's model input is the VP sample x/√(σ² + 1), which is what the exact denoiser takes.
    diffuse::solve(solver, exact, std::span<double>(x), shape, {.seed = 12});
    check("Euler ancestral, 200 steps", x);
  }
}

namespace {
/// Classifier guidance with the mixture's exact ∇ log p(y = label | x_t) at the solver's ᾱ = 1/(σ² + 1).
struct exact_classifier {
  static constexpr bool needs_gradient = true;
  int label = 0;
  double scale = 1.0;
  void operator()(const diffuse::guidance_context<double>& ctx) const {
    std::vector<double> x0(ctx.x_t.size()), g(ctx.x_t.size());
    mixture().denoise<double>(ctx.x_t, ctx.alpha_bar, x0, {}, label, g, scale);
    for (std::size_t i = 0; i < g.size(); ++i) ctx.gradient[i] += g[i];
  }
};
}  // namespace

TEST_CASE("apply_score_guidance: every prediction type shifts epsilon by -sqrt(1 - alpha_bar) g") {
  // Closed form: convert the shifted output back to ε̂ at ᾱ = 1/(σ² + 1); it must be ε̂ − b·g (1e-14, rounding).
  const double sigma = 2.5, ab = 1.0 / (sigma * sigma + 1.0), a = std::sqrt(ab), b = std::sqrt(1.0 - ab);
  const std::vector<double> x{0.3, -1.2}, eps{0.7, 0.1}, g{0.4, -2.0};
  for (auto p : {diffuse::prediction_type::epsilon, diffuse::prediction_type::sample, diffuse::prediction_type::v_prediction}) {
    std::vector<double> out(2);
    for (int i = 0; i < 2; ++i) {
      const double x0 = (x[i] - b * eps[i]) / a;
      out[i] = p == diffuse::prediction_type::epsilon ? eps[i] : p == diffuse::prediction_type::sample ? x0 : a * eps[i] - b * x0;
    }
    diffuse::apply_score_guidance<double>(p, sigma, g, out);
    for (int i = 0; i < 2; ++i) {
      const double e = p == diffuse::prediction_type::epsilon ? out[i]
                       : p == diffuse::prediction_type::sample ? (x[i] - a * out[i]) / b
                                                               : a * out[i] + b * x[i];
      CHECK(e == doctest::Approx(eps[i] - b * g[i]).epsilon(1e-14));
    }
  }
  std::vector<double> out(2);
  test::check_error([&] { diffuse::apply_score_guidance<double>(diffuse::prediction_type::epsilon, 0.0, g, out); }, {"[diffuse.guidance]", "sigma = 0"});
  test::check_error([&] { diffuse::apply_score_guidance<double>(diffuse::prediction_type::epsilon, 1.0, std::vector<double>(3), out); },
                    {"[diffuse.shape]", "gradient has 3 elements; expected 2"});
}

TEST_CASE("classifier guidance with solve(): the exact classifier at scale 1 samples the chosen component alone") {
  // With the exact score and the exact ∇ log p(y | x_t), the guided probability-flow ODE is that of
  // p(x0 | y): component y alone (weight 1, its own spread). Unguided the weight of mode 0 is 0.3.
  const auto schedule = diffuse::noise_schedule::linear(1000);
  const diffuse::sample_shape shape{.batch = 2000, .channels = 2, .spatial = 1};
  const auto table = diffuse::training_sigmas(schedule);
  // The exact output for prediction p at the σ the solver uses (the table interpolated at t, as the solvers do).
  const auto exact = [&](diffuse::prediction_type p) {
    return [&, p](std::span<const double> x, double t, std::span<double> out) {
      const auto j = static_cast<std::size_t>(std::floor(t));
      const double s = j + 1 < table.size() ? table[j] + (table[j + 1] - table[j]) * (t - static_cast<double>(j)) : table[j];
      const double ab = 1.0 / (s * s + 1.0), a = std::sqrt(ab), b = std::sqrt(1.0 - ab);
      mixture().denoise<double>(x, ab, out);
      for (std::size_t i = 0; i < x.size(); ++i) {
        const double x0 = out[i], eps = (x[i] - a * x0) / b;
        out[i] = p == diffuse::prediction_type::epsilon ? eps : p == diffuse::prediction_type::sample ? x0 : a * eps - b * x0;
      }
    };
  };
  const auto run = [&](const auto& solver, diffuse::prediction_type p, int label, std::uint64_t seed) {
    std::vector<double> x(shape.numel());
    diffuse::fill_initial_noise<double>(x, shape, seed);
    const auto model = exact(p);
    diffuse::solve(solver, [&](std::span<const double> in, auto t, std::span<double> out) { model(in, static_cast<double>(t), out); },
                   std::span<double>(x), shape, {.seed = seed}, diffuse::no_callback{}, diffuse::guidance(exact_classifier{label, 1.0}));
    return stats(x);
  };
  const auto eps = diffuse::prediction_type::epsilon, v = diffuse::prediction_type::v_prediction, x0 = diffuse::prediction_type::sample;
  struct outcome {
    const char* name;
    mode_stats s;
    int label;
  };
  const outcome results[] = {
      {"DPM-Solver++ 2M, 30 steps, epsilon, y = 0", run(diffuse::dpm_solver_sampler(schedule, 30, {}, {.prediction = eps}), eps, 0, 21), 0},
      {"UniPC-2, 30 steps, x0, y = 0", run(diffuse::unipc_sampler(schedule, 30, {}, {.prediction = x0}), x0, 0, 22), 0},
      {"Euler, 100 steps, v, y = 0", run(diffuse::euler_sampler(schedule, 100, {}, {.prediction = v}), v, 0, 23), 0},
      {"Heun, 30 steps, epsilon, y = 1", run(diffuse::heun_sampler(schedule, 30, {}, {.prediction = eps}), eps, 1, 24), 1},
  };
  for (const auto& r : results) {
    CAPTURE(std::string(r.name));
    std::printf("classifier guidance, %s: mode-0 weight %.4f (expected %d), spread of that mode %.3f (%.1f)\n", r.name, r.s.weight0,
                r.label == 0 ? 1 : 0, r.label == 0 ? r.s.std0 : r.s.std1, r.label == 0 ? 0.5 : 0.3);
    // Weight: every sample in the guided mode; 0.5% allows the few points of the far tail of N(μ_y, s_y²)
    // that fall nearer the other mean (none expected at these distances: |μ0 − μ1| = 4.1, s ≤ 0.5).
    if (r.label == 0) {
      CHECK(r.s.weight0 >= 0.995);
      CHECK(std::abs(r.s.std0 - 0.5) < 0.03);  // 2000 samples: std error of the std ~0.5/√4000 = 0.008; 0.03 adds discretization
    } else {
      CHECK(r.s.weight0 <= 0.005);
      CHECK(std::abs(r.s.std1 - 0.3) < 0.02);
    }
  }
}

TEST_CASE_TEMPLATE("solve(): the same bits whatever the batch split, thread count or vector path", Scalar, float, double) {
  const auto schedule = diffuse::noise_schedule::scaled_linear(1000);
  const auto model = [](std::span<const Scalar> x, double t, std::span<Scalar> out) {
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = static_cast<Scalar>(0.5) * x[i] + static_cast<Scalar>(1e-4 * t);
  };
  const auto run = [&](const auto& solver, std::size_t batch, std::uint64_t first, std::size_t spatial) {
    const diffuse::sample_shape shape{.batch = batch, .channels = 3, .spatial = spatial};
    std::vector<Scalar> x(shape.numel());
    diffuse::fill_initial_noise<Scalar>(x, shape, 9, first);
    diffuse::solve(solver, model, std::span<Scalar>(x), shape, {.seed = 9, .first_sample = first});
    return x;
  };
  const diffuse::dpm_solver_sampler sde(schedule, 8, {.kind = diffuse::sigma_kind::karras},
                                        {.order = 3, .algorithm = diffuse::dpm_algorithm::sde_dpmsolver_pp});
  const diffuse::dpm_solver_sampler sde_scalar(schedule, 8, {.kind = diffuse::sigma_kind::karras},
                                               {.order = 3, .algorithm = diffuse::dpm_algorithm::sde_dpmsolver_pp, .vectorize = false});
  const diffuse::euler_ancestral_sampler anc(schedule, 8);
  const diffuse::euler_ancestral_sampler anc_scalar(schedule, 8, {}, {.vectorize = false});
  const diffuse::euler_sampler churn(schedule, 8, {}, {.s_churn = 2.0});
  const diffuse::unipc_sampler unipc(schedule, 8, {}, {.order = 3});
  const diffuse::unipc_sampler unipc_scalar(schedule, 8, {}, {.order = 3, .vectorize = false});
  const diffuse::heun_sampler heun(schedule, 8, {.kind = diffuse::sigma_kind::karras});
  const diffuse::heun_sampler heun_scalar(schedule, 8, {.kind = diffuse::sigma_kind::karras}, {.vectorize = false});
  const auto same_split = [&](const auto& solver) {
    const auto whole = run(solver, 6, 0, 37);
    const auto first = run(solver, 2, 0, 37), rest = run(solver, 4, 2, 37);
    std::vector<Scalar> joined(first);
    joined.insert(joined.end(), rest.begin(), rest.end());
    CHECK(joined == whole);
  };
  same_split(sde);
  same_split(anc);
  same_split(churn);
  CHECK(run(sde, 3, 0, 37) == run(sde_scalar, 3, 0, 37));
  CHECK(run(anc, 3, 0, 37) == run(anc_scalar, 3, 0, 37));
  CHECK(run(heun, 3, 0, 37) == run(heun_scalar, 3, 0, 37));
  same_split(heun);
  same_split(unipc);
  CHECK(run(unipc, 3, 0, 37) == run(unipc_scalar, 3, 0, 37));
#if defined(_OPENMP)
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const auto one = run(sde, 2, 0, 40000);  // 240K elements: the parallel chunked path
  omp_set_num_threads(3);
  const auto three = run(sde, 2, 0, 40000);
  omp_set_num_threads(saved);
  CHECK(one == three);
#endif
}

TEST_CASE("solve() and a user's step loop allocate nothing after the first use") {
  const auto schedule = diffuse::noise_schedule::linear(1000);
  const diffuse::sample_shape shape{.batch = 2, .channels = 3, .spatial = 300};
  const auto model = [](std::span<const float> x, double, std::span<float> out) {
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = 0.5f * x[i];
  };
  const diffuse::dpm_solver_sampler dpm(schedule, 10, {}, {.order = 3, .algorithm = diffuse::dpm_algorithm::sde_dpmsolver_pp});
  const diffuse::euler_sampler euler(schedule, 10, {.kind = diffuse::sigma_kind::karras});
  std::vector<float> x(shape.numel(), 0.1f);
  diffuse::solver_workspace<float> ws;
  diffuse::solve(dpm, model, std::span<float>(x), shape, {}, ws);
  long before = test::allocations();
  diffuse::solve(dpm, model, std::span<float>(x), shape, {}, ws);
  CHECK(test::allocations() == before);
  diffuse::solver_workspace<float> ws2;
  diffuse::solve(euler, model, std::span<float>(x), shape, {}, ws2);
  before = test::allocations();
  diffuse::solve(euler, model, std::span<float>(x), shape, {}, ws2);
  CHECK(test::allocations() == before);
  const diffuse::unipc_sampler unipc(schedule, 10, {}, {.order = 3});
  diffuse::solver_workspace<float> ws4;
  diffuse::solve(unipc, model, std::span<float>(x), shape, {}, ws4);
  before = test::allocations();
  diffuse::solve(unipc, model, std::span<float>(x), shape, {}, ws4);
  CHECK(test::allocations() == before);
  const diffuse::heun_sampler heun(schedule, 10);
  diffuse::solver_workspace<float> ws3;
  diffuse::solve(heun, model, std::span<float>(x), shape, {}, ws3);
  before = test::allocations();
  diffuse::solve(heun, model, std::span<float>(x), shape, {}, ws3);
  CHECK(test::allocations() == before);
  // A user's own loop: the state is allocated by make_state, the steps allocate nothing.
  auto state = dpm.make_state<float>(shape);
  std::vector<float> out(shape.numel()), next(shape.numel()), noise(shape.numel(), 0.0f);
  before = test::allocations();
  for (int k = 0; k < dpm.num_steps(); ++k) {
    model(x, dpm.model_time(k), out);
    dpm.step<float>(k, {.x = x, .model_output = out, .x_next = next, .noise = dpm.adds_noise(k) ? std::span<const float>(noise) : std::span<const float>()},
                    shape, state);
    x.swap(next);
  }
  CHECK(test::allocations() == before);
}

TEST_CASE("beta sigmas: the incomplete beta and its quantile against closed forms and scipy") {
  // Closed forms: I_x(1, 1) = x; I_x(½, ½) = (2/π)·asin(√x); I_x(a, b) = 1 − I_{1−x}(b, a). 1e-14 absolute:
  // the continued fraction converges to 1e-16 per term, lgamma adds a few ulps.
  for (double x : {1e-6, 0.01, 0.3, 0.5, 0.77, 0.999}) {
    CHECK(diffuse::detail::regularized_incomplete_beta(x, 1.0, 1.0) == doctest::Approx(x).epsilon(1e-14));
    CHECK(diffuse::detail::regularized_incomplete_beta(x, 0.5, 0.5) == doctest::Approx(2.0 / std::numbers::pi * std::asin(std::sqrt(x))).epsilon(1e-14));
    CHECK(diffuse::detail::regularized_incomplete_beta(x, 0.6, 2.5) ==
          doctest::Approx(1.0 - diffuse::detail::regularized_incomplete_beta(1.0 - x, 2.5, 0.6)).epsilon(1e-14));
  }
  // scipy 1.10.1 stats.beta.ppf(p, 0.6, 0.6) (the call diffusers' _convert_to_beta makes); 1e-13 relative.
  const std::pair<double, double> scipy[] = {{1e-3, 1.855873851745199e-05}, {0.1, 0.03958440558878085}, {0.25, 0.17568037865269498},
                                             {0.5, 0.5000000000000001}, {0.9, 0.9604155944112192}, {0.999, 0.9999814412614826}};
  for (auto [p, q] : scipy) CHECK(diffuse::detail::beta_quantile(p, 0.6, 0.6) == doctest::Approx(q).epsilon(1e-13));
  CHECK(diffuse::detail::beta_quantile(0.0, 0.6, 0.6) == 0.0);
  CHECK(diffuse::detail::beta_quantile(1.0, 0.6, 0.6) == 1.0);
  // The list: N values from σ_max down to σ_min, denser at both ends than in the middle (α = β < 1).
  const auto s = diffuse::detail::beta_sigmas(0.03, 14.6, 9);
  CHECK(s.front() == doctest::Approx(14.6).epsilon(1e-15));
  CHECK(s.back() == 0.03);
  for (std::size_t i = 1; i < s.size(); ++i) CHECK(s[i] < s[i - 1]);
  CHECK(s[0] - s[1] < s[4] - s[5]);
  CHECK(s[7] - s[8] < s[3] - s[4]);
}

TEST_CASE("solvers: bad input is a diffuse::error that says what was expected") {
  const auto schedule = diffuse::noise_schedule::linear(1000);
  test::check_error([&] { (void)diffuse::sigma_kind_from_flags(true, true); },
                    {"[diffuse.timesteps]", "more than one of use_karras_sigmas, use_exponential_sigmas", "expected at most one"});
  test::check_error([&] { diffuse::dpm_solver_sampler(schedule, 10, {}, {.order = 0}); }, {"[diffuse.sampler]", "order = 0", "expected solver_order 1, 2 or 3"});
  test::check_error([&] { diffuse::dpm_solver_sampler(schedule, 10, {}, {.order = 4}); }, {"order = 4", "expected solver_order 1, 2 or 3"});
  test::check_error([&] { diffuse::dpm_solver_sampler(schedule, 10, {}, {.prediction = diffuse::prediction_type::previous_x}); },
                    {"got previous_x"});
  test::check_error([&] { (void)diffuse::custom_sigmas(schedule, {10.0, 5.0, 5.0, 0.0}); }, {"not strictly decreasing at entry 2", "expected sigma_0 > sigma_1"});
  test::check_error([&] { (void)diffuse::custom_sigmas(schedule, {10.0, -1.0}); }, {"custom sigma 1 = -1", "expected finite sigmas >= 0"});
  test::check_error([&] { (void)diffuse::custom_sigmas(schedule, {10.0, 0.0, 0.0}); }, {"custom sigma 1 = 0 before the end"});
  test::check_error([&] { (void)diffuse::custom_sigmas(schedule, {10.0}); }, {"expected at least 2"});
  test::check_error([&] { diffuse::dpm_solver_sampler(diffuse::custom_sigmas(schedule, {10.0, 3.0, 0.0}), {}); },
                    {"model time 0 =", "integer timesteps"});
  test::check_error([&] { (void)diffuse::dpm_solver_sigmas(schedule, 10, {.sigma_min = 0.1}); }, {"not keys of the DPM-Solver family"});
  test::check_error([&] { (void)diffuse::euler_sigmas(schedule, 10, {.kind = diffuse::sigma_kind::lu_lambdas}); }, {"use_lu_lambdas is a DPM-Solver key"});
  test::check_error([&] { (void)diffuse::euler_sigmas(schedule, 10, {.steps_offset = 1}); }, {"steps_offset = 1 with a spacing other than leading"});
  // diffusers refuses any two of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas (diffuse also counts use_lu_lambdas).
  test::check_error([&] { (void)diffuse::sigma_kind_from_flags(true, false, false, true); }, {"more than one of use_karras_sigmas", "use_beta_sigmas"});
  test::check_error([&] { (void)diffuse::sigma_kind_from_flags(false, true, false, true); }, {"more than one of"});
  test::check_error([&] { (void)diffuse::sigma_kind_from_flags(false, false, true, true); }, {"more than one of"});
  test::check_error([&] { (void)diffuse::solver_from_config(R"({"_class_name": "UniPCMultistepScheduler", "use_karras_sigmas": true, "use_beta_sigmas": true})", 10); },
                    {"more than one of use_karras_sigmas"});
  test::check_error([&] { (void)diffuse::solver_from_config(R"({"_class_name": "EulerAncestralDiscreteScheduler", "use_beta_sigmas": true})", 10); },
                    {"beta sigmas in EulerAncestralDiscreteScheduler"});
  test::check_error([&] { (void)diffuse::euler_sigmas(schedule, 10, {.kind = diffuse::sigma_kind::beta, .interpolation = diffuse::sigma_interpolation::log_linear}); },
                    {"log_linear with Karras, exponential or beta sigmas"});
  test::check_error([&] { diffuse::euler_sampler(schedule, 10, {}, {.s_churn = -1.0}); }, {"expected finite s_churn >= 0"});

  // A state is bound to its solver, its shape and the order of the steps.
  const diffuse::sample_shape shape{.batch = 2, .channels = 1, .spatial = 3}, other{.batch = 3, .channels = 1, .spatial = 2};
  const diffuse::dpm_solver_sampler a(schedule, 10), b(schedule, 10);
  std::vector<double> x(6, 0.1), out(6, 0.0), next(6);
  const diffuse::solver_buffers<double> io{.x = x, .model_output = out, .x_next = next};
  auto state = a.make_state<double>(shape);
  test::check_error([&] { b.step<double>(0, io, shape, state); }, {"[diffuse.sampler]", "made for another sampler", "dpm_solver_sampler"});
  test::check_error([&] { a.step<double>(0, io, other, state); }, {"[diffuse.shape]", "was made for batch 2 x channels 1 x spatial 3"});
  a.step<double>(0, io, shape, state);
  test::check_error([&] { a.step<double>(2, io, shape, state); }, {"step 2 after step 0", "expected step 1", "reset()"});
  state.reset();
  a.step<double>(4, io, shape, state);  // a new chain may start anywhere (img2img)
  diffuse::solver_state<double> empty;
  test::check_error([&] { a.step<double>(0, io, shape, empty); }, {"the solver state is empty"});
  const diffuse::dpm_solver_sampler sde(schedule, 10, {}, {.algorithm = diffuse::dpm_algorithm::sde_dpmsolver_pp});
  auto sde_state = sde.make_state<double>(shape);
  test::check_error([&] { sde.step<double>(0, io, shape, sde_state); }, {"noise has 0 elements", "this step adds noise"});
  test::check_error([&] { diffuse::unipc_sampler(schedule, 10, {.final_type = diffuse::final_sigma::sigma_min},
                                                 {.predict_x0 = false, .threshold = diffuse::dynamic_threshold{}}); },
                    {"UniPC thresholding with predict_x0 = false"});
  test::check_error([&] { diffuse::unipc_sampler(schedule, 10, {}, {.order = 4}); }, {"UniPC order = 4", "expected solver_order 1, 2 or 3"});
  test::check_error([&] { diffuse::unipc_sampler(schedule, 10, {}, {.predict_x0 = false}); },
                    {"predict_x0 = false and a final sigma of 0", "expected predict_x0 = true or final_sigmas_type sigma_min"});
  const diffuse::heun_sampler heun(schedule, 10);
  auto heun_state = heun.make_state<double>(shape);
  test::check_error([&] { heun.step<double>(3, io, shape, heun_state); }, {"starts at position 3, a corrector", "expected an even position"});
  test::check_error([&] { diffuse::heun_sampler(schedule, 10, {}, {.clip_sample_range = 0.0}); }, {"clip_sample_range = 0", "expected a range > 0"});
}

TEST_CASE_TEMPLATE("solve() gives the bits of a hand-written step loop (Euler family: the fused next-input scaling)", Scalar, float, double) {
  const auto schedule = diffuse::noise_schedule::scaled_linear(1000);
  const diffuse::sample_shape shape{.batch = 3, .channels = 2, .spatial = 19};
  const auto model = [](std::span<const Scalar> x, double t, std::span<Scalar> out) {
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = static_cast<Scalar>(0.7) * x[i] + static_cast<Scalar>(1e-4 * t);
  };
  const auto compare = [&](const auto& solver) {
    std::vector<Scalar> a(shape.numel());
    diffuse::fill_initial_noise<Scalar>(a, shape, 4);
    std::vector<Scalar> b = a, input(a.size()), out(a.size()), next(a.size());
    diffuse::solve(solver, model, std::span<Scalar>(a), shape, {.seed = 4});
    const auto s0 = static_cast<Scalar>(solver.initial_scale());
    for (auto& v : b) v *= s0;
    auto state = solver.template make_state<Scalar>(shape);
    const diffuse::normal_generator gen(4);
    for (int k = 0; k < solver.num_steps(); ++k) {
      const auto c = static_cast<Scalar>(solver.input_scale(k));
      for (std::size_t i = 0; i < b.size(); ++i) input[i] = b[i] * c;
      model(input, solver.model_time(k), out);
      diffuse::solver_buffers<Scalar> io{.x = b, .model_output = out, .x_next = next};
      if (solver.adds_noise(k)) io.generated = {&gen, 0, diffuse::step_noise_stream(k)};
      solver.template step<Scalar>(k, io, shape, state);
      b.swap(next);
    }
    CHECK(a == b);
  };
  compare(diffuse::euler_sampler(schedule, 9, {.kind = diffuse::sigma_kind::karras}));
  compare(diffuse::euler_sampler(schedule, 9, {}, {.s_churn = 1.0}));
  compare(diffuse::euler_ancestral_sampler(schedule, 9));
  compare(diffuse::heun_sampler(schedule, 6));
  compare(diffuse::dpm_solver_sampler(schedule, 9, {}, {.order = 3, .algorithm = diffuse::dpm_algorithm::sde_dpmsolver_pp}));
  compare(diffuse::unipc_sampler(schedule, 9, {}, {.order = 3}));
}

TEST_CASE("img2img: DPM-Solver++ 1 and Euler started part-way equal DDIM started there") {
  const auto schedule = diffuse::noise_schedule::linear(1000);
  const auto ts = diffuse::make_timesteps(1000, 10, diffuse::timestep_spacing::leading, 1);
  const diffuse::ddim_sampler ddim(schedule, ts, {.eta = 0.0});
  const diffuse::dpm_solver_sampler dpm(diffuse::dpm_solver_timesteps(schedule, ts), {.order = 1});
  const diffuse::euler_sampler euler(schedule, 10, {.spacing = diffuse::timestep_spacing::leading, .steps_offset = 1});
  const diffuse::sample_shape shape{.batch = 8, .channels = 2, .spatial = 1};
  const auto model = mixture().denoiser<double>(schedule, diffuse::prediction_type::epsilon);
  const auto fractional = [&](std::span<const double> x, double t, std::span<double> out) { model(x, static_cast<int>(t), out); };
  std::vector<double> clean(shape.numel());
  std::vector<int> labels(shape.batch);
  mixture().sample_data<double>(clean, labels, 21);
  const int k = diffuse::img2img_start_index(10, 0.6);
  std::vector<double> a(shape.numel()), b(shape.numel()), c(shape.numel());
  diffuse::img2img_noise<double>(schedule, ts[static_cast<std::size_t>(k)], clean, a, shape, 8);
  diffuse::solver_img2img_noise<diffuse::dpm_solver_sampler, double>(dpm, k, clean, b, shape, 8);
  diffuse::solver_img2img_noise<diffuse::euler_sampler, double>(euler, k, clean, c, shape, 8);
  diffuse::sample(ddim, model, std::span<double>(a), shape, {.start_index = k});
  diffuse::solve(dpm, model, std::span<double>(b), shape, {.start_index = k});
  diffuse::solve(euler, fractional, std::span<double>(c), shape, {.start_index = k});
  std::vector<double> e(a.begin(), a.end());
  CHECK(test::worst_relative(b, e, 1e-12) <= 1.0);
  CHECK(test::worst_relative(c, e, 1e-12) <= 1.0);
  test::check_error([&] { diffuse::solver_img2img_noise<diffuse::dpm_solver_sampler, double>(dpm, 10, clean, b, shape, 8); },
                    {"start position 10 is out of range"});
}

TEST_CASE("solvers: a NaN from the model is a [diffuse.numeric] error naming the step") {
  const auto schedule = diffuse::noise_schedule::linear(1000);
  const diffuse::sample_shape shape{.batch = 2, .channels = 1, .spatial = 4};
  const auto nan_model = [](std::span<const double> x, double, std::span<double> out) {
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = i == 5 ? std::nan("") : 0.1 * x[i];
  };
  std::vector<double> x(shape.numel(), 0.5);
  const auto expect = [&](const auto& solver) {
    test::check_error([&] { diffuse::solve(solver, nan_model, std::span<double>(x), shape); },
                      {"[diffuse.numeric]", "NaN in the model output at step 0", "batch item 1, element 1"});
  };
  expect(diffuse::dpm_solver_sampler(schedule, 5));
  expect(diffuse::dpm_solver_sampler(schedule, 5, {}, {.threshold = diffuse::dynamic_threshold{0.9, 2.0}}));
  expect(diffuse::unipc_sampler(schedule, 5));
  expect(diffuse::unipc_sampler(schedule, 5, {}, {.threshold = diffuse::dynamic_threshold{0.9, 2.0}}));
  expect(diffuse::euler_sampler(schedule, 5));
  expect(diffuse::euler_ancestral_sampler(schedule, 5));
  expect(diffuse::heun_sampler(schedule, 5));
}
