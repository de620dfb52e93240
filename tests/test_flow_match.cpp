// Flow matching (samplers/flow_sigmas.hpp, samplers/flow_euler.hpp): diffusers' own
// FlowMatchEulerDiscreteScheduler trajectories (tools/make_flow_fixtures.py), the closed-form flow velocity of
// a Gaussian mixture (convergence order, mode weights), the DDIM identity, determinism, allocations and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "counting_new.hpp"
#include "diffuse/gaussian_mixture.hpp"
#include "diffuse/guidance.hpp"
#include "diffuse/io/scheduler_config.hpp"
#include "diffuse/samplers/ancestral.hpp"
#include "diffuse/samplers/ddim.hpp"
#include "diffuse/samplers/dpm_solver.hpp"
#include "diffuse/samplers/euler.hpp"
#include "diffuse/samplers/flow_euler.hpp"
#include "diffuse/samplers/flow_heun.hpp"
#include "diffuse/samplers/flow_sigmas.hpp"
#include "diffuse/samplers/from_config.hpp"
#include "diffuse/samplers/heun.hpp"
#include "diffuse/samplers/unipc.hpp"
#include "support.hpp"

namespace {

using nlohmann::json;

using test::fake_model;
using test::relative_error;

diffuse::flow_match_options options_of(const json& config, const json& args) {
  diffuse::flow_match_options o;
  o.num_train_timesteps = config.value("num_train_timesteps", 1000);
  o.shift = config.value("shift", 1.0);
  o.use_dynamic_shifting = config.value("use_dynamic_shifting", false);
  if (config.value("time_shift_type", "exponential") == std::string("linear")) o.time_shift_type = diffuse::flow_time_shift_type::linear;
  if (config.contains("shift_terminal")) o.shift_terminal = config["shift_terminal"].get<double>();
  o.invert_sigmas = config.value("invert_sigmas", false);
  if (args.contains("mu")) o.mu = args["mu"].get<double>();
  return o;
}

diffuse::flow_euler_sampler solver_of(const json& c) {
  const json& config = c["config"];
  const json& args = c["set_timesteps"];
  const auto o = options_of(config, args);
  const diffuse::flow_euler_options e{.stochastic_sampling = config.value("stochastic_sampling", false)};
  if (args.contains("sigmas")) return diffuse::flow_euler_sampler(diffuse::flow_match_custom_sigmas(args["sigmas"].get<std::vector<double>>(), o), e);
  if (args.contains("timesteps"))
    return diffuse::flow_euler_sampler(diffuse::flow_match_custom_timesteps(args["timesteps"].get<std::vector<double>>(), o), e);
  return diffuse::flow_euler_sampler(c["steps"].get<int>(), o, e);
}

struct replay_result {
  double trajectory = 0;  ///< worst relative error of model output and prev_sample over the chain
  double times = 0;       ///< worst error of the grid (relative to 1) and the model times (relative to T)
};

/// Replays one fixture case step by step as a user's loop would, feeding its own states forward.
template <class Scalar>
replay_result replay(const diffuse::flow_euler_sampler& solver, const json& c) {
  replay_result r;
  const auto& traj = c["trajectory"];
  REQUIRE(solver.num_steps() == static_cast<int>(traj.size()));
  const auto sig = c["sigmas"].get<std::vector<double>>();
  REQUIRE(sig.size() == static_cast<std::size_t>(solver.num_steps() + 1));
  for (int k = 0; k <= solver.num_steps(); ++k) r.times = std::max(r.times, std::abs(solver.time(k) - sig[static_cast<std::size_t>(k)]));
  const double T = c["config"].value("num_train_timesteps", 1000);
  const diffuse::sample_shape shape{.batch = 2, .channels = 1, .spatial = 3};
  const auto z = c["initial_noise"].get<std::vector<double>>();
  std::vector<Scalar> x(z.size()), out(z.size()), next(z.size()), noise(z.size());
  for (std::size_t i = 0; i < z.size(); ++i) x[i] = static_cast<Scalar>(z[i]);
  auto state = solver.make_state<Scalar>(shape);
  for (int k = 0; k < solver.num_steps(); ++k) {
    const auto& s = traj[static_cast<std::size_t>(k)];
    r.times = std::max(r.times, std::abs(solver.model_time(k) - s["timestep"].get<double>()) / T);
    CHECK(solver.input_scale(k) == 1.0);
    fake_model<Scalar>(x, solver.model_time(k), out);
    r.trajectory = std::max(r.trajectory, relative_error(out, s["model_output"].get<std::vector<double>>()));
    const auto zs = s["noise"].get<std::vector<double>>();
    const bool noisy = solver.adds_noise(k);
    if (noisy) REQUIRE(!zs.empty());
    for (std::size_t i = 0; i < zs.size(); ++i) noise[i] = static_cast<Scalar>(zs[i]);
    solver.step<Scalar>(k, {.x = x, .model_output = out, .x_next = next, .noise = noisy ? std::span<const Scalar>(noise) : std::span<const Scalar>()},
                        shape, state);
    r.trajectory = std::max(r.trajectory, relative_error(next, s["prev_sample"].get<std::vector<double>>()));
    x = next;
  }
  return r;
}

/// Replays one FlowMatchHeunDiscreteScheduler case: every model evaluation (predictor or corrector) is a step.
/// With recorded_outputs, the step is fed diffusers' own model output instead of fake_model's (torch's float32
/// tanh and sin differ from the C library's by an ulp, which the step's x̂0 cancellation amplifies by 1/σ).
template <class Scalar>
replay_result replay_heun(const diffuse::flow_heun_sampler& solver, const json& c, bool recorded_outputs = false) {
  replay_result r;
  const auto& traj = c["trajectory"];
  REQUIRE(solver.num_steps() == static_cast<int>(traj.size()));
  // diffusers' sigmas list interleaves like the positions: σ_0, σ_1, σ_1, …, σ_{N−1}, σ_{N−1}, 0.
  const auto sig = c["sigmas"].get<std::vector<double>>();
  REQUIRE(sig.size() == static_cast<std::size_t>(solver.num_steps() + 1));
  for (int p = 0; p <= solver.num_steps(); ++p) r.times = std::max(r.times, std::abs(solver.time(p) - sig[static_cast<std::size_t>(p)]));
  const double T = c["config"].value("num_train_timesteps", 1000);
  const diffuse::sample_shape shape{.batch = 2, .channels = 1, .spatial = 3};
  const auto z = c["initial_noise"].get<std::vector<double>>();
  std::vector<Scalar> x(z.size()), out(z.size()), next(z.size());
  for (std::size_t i = 0; i < z.size(); ++i) x[i] = static_cast<Scalar>(z[i]);
  auto state = solver.make_state<Scalar>(shape);
  for (int p = 0; p < solver.num_steps(); ++p) {
    const auto& s = traj[static_cast<std::size_t>(p)];
    r.times = std::max(r.times, std::abs(solver.model_time(p) - s["timestep"].get<double>()) / T);
    fake_model<Scalar>(x, solver.model_time(p), out);
    const auto recorded = s["model_output"].get<std::vector<double>>();
    r.trajectory = std::max(r.trajectory, relative_error(out, recorded));
    if (recorded_outputs)
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<Scalar>(recorded[i]);
    solver.step<Scalar>(p, {.x = x, .model_output = out, .x_next = next}, shape, state);
    r.trajectory = std::max(r.trajectory, relative_error(next, s["prev_sample"].get<std::vector<double>>()));
    x = next;
  }
  return r;
}

const diffuse::gaussian_mixture& separated() {
  static const diffuse::gaussian_mixture gm({0.3, 0.7}, {{-2.0, 0.0}, {2.0, 1.0}}, {0.5, 0.3});
  return gm;
}

double rms(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(s / static_cast<double>(a.size()));
}

}  // namespace

TEST_CASE("flow Euler matches diffusers' FlowMatchEulerDiscreteScheduler (float64 variant to 1e-12, verbatim float32 to 2e-6)") {
  // float64: the same formulas in the same order, so only the last bits of exp / division differ.
  // float32: diffusers builds the grid in float32 (σ rounded to 6e-8 relative) and steps in float32;
  // the C++ grid is double, so each step's dt differs by up to ~1e-7, and chains of 50 steps accumulate it.
  for (const char* file : {"flow/flow_float64.json", "flow/flow_float32.json"}) {
    const json fx = test::fixture(file);
    const bool wide = std::string(file).find("64") != std::string::npos;
    double worst_traj = 0, worst_times = 0;
    int cases = 0;
    for (const auto& c : fx["cases"]) {
      CAPTURE(c["name"].get<std::string>());
      CAPTURE(c["steps"].get<int>());
      const auto solver = solver_of(c);
      const auto r = wide ? replay<double>(solver, c) : replay<float>(solver, c);
      worst_traj = std::max(worst_traj, r.trajectory);
      worst_times = std::max(worst_times, r.times);
      CHECK(r.trajectory <= (wide ? 1e-12 : 2e-6));
      CHECK(r.times <= (wide ? 1e-12 : 2e-7));
      ++cases;
    }
    std::printf("%s: %d cases, worst trajectory error %.2g, worst grid error %.2g\n", file, cases, worst_traj, worst_times);
    CHECK(cases == 76);
  }
}

TEST_CASE("the double shift of diffusers issue 13243: reproduced by default, shift_twice = false shifts once") {
  const json fx = test::fixture("flow/flow_float64.json");
  const auto twice = fx["shift3_n10_grids"]["double_shift_default"].get<std::vector<double>>();
  const auto once = fx["shift3_n10_grids"]["single_shift"].get<std::vector<double>>();
  const auto a = diffuse::flow_match_times(10, {.shift = 3.0});
  const auto b = diffuse::flow_match_times(10, {.shift = 3.0, .shift_twice = false});
  for (std::size_t i = 0; i < twice.size(); ++i) {
    CHECK(std::abs(a.times[i] - twice[i]) <= 1e-15);
    CHECK(std::abs(b.times[i] - once[i]) <= 1e-15);
  }
  // The last σ before 0: shift(shift(1/T)) = 0.00893 instead of shift(1/T) = 0.00299.
  CHECK(a.times[9] == doctest::Approx(9.0 / 1008.0).epsilon(1e-12));
  CHECK(b.times[9] == doctest::Approx(3.0 / 1002.0).epsilon(1e-12));
  // With shift 1 the two agree to the last bit.
  const auto c = diffuse::flow_match_times(7, {.shift = 1.0}), d = diffuse::flow_match_times(7, {.shift = 1.0, .shift_twice = false});
  CHECK(c.times == d.times);
}

TEST_CASE("flow grid: closed forms of the shift, the time shifts, calculate_shift, shift_terminal and inversion") {
  CHECK(diffuse::flow_shift_sigma(0.5, 3.0) == doctest::Approx(0.75).epsilon(1e-15));
  CHECK(diffuse::flow_time_shift(0.5, std::log(3.0), diffuse::flow_time_shift_type::exponential) == doctest::Approx(0.75).epsilon(1e-15));
  CHECK(diffuse::flow_time_shift(0.25, 2.0, diffuse::flow_time_shift_type::linear) == doctest::Approx(0.4).epsilon(1e-15));
  // A static shift s is the exponential time shift with μ = log s.
  for (double sg : {0.1, 0.37, 0.9})
    CHECK(diffuse::flow_shift_sigma(sg, 2.5) == doctest::Approx(diffuse::flow_time_shift(sg, std::log(2.5), diffuse::flow_time_shift_type::exponential)).epsilon(1e-14));
  CHECK(diffuse::flow_calculate_shift(256) == doctest::Approx(0.5).epsilon(1e-15));
  CHECK(diffuse::flow_calculate_shift(4096) == doctest::Approx(1.15).epsilon(1e-14));
  CHECK(diffuse::flow_calculate_shift(2176) == doctest::Approx(0.825).epsilon(1e-14));
  const auto g = diffuse::flow_match_times(6, {.shift = 3.0, .shift_terminal = 0.1});
  CHECK(g.times[5] == doctest::Approx(0.1).epsilon(1e-14));
  CHECK(g.times[6] == 0.0);
  const auto inv = diffuse::flow_match_times(4, {.invert_sigmas = true});
  CHECK(inv.noise_at_zero);
  CHECK(inv.times.front() == 0.0);
  CHECK(inv.times.back() == 1.0);
  for (int k = 0; k < 4; ++k) CHECK(inv.model_times[static_cast<std::size_t>(k)] == doctest::Approx(inv.times[static_cast<std::size_t>(k)] * 1000).epsilon(1e-15));
  const auto up = diffuse::flow_uniform_times(4, diffuse::flow_direction::noise_at_zero);
  CHECK(up.times == std::vector<double>{0.0, 0.25, 0.5, 0.75, 1.0});
  CHECK(up.model_times == std::vector<double>{0.0, 0.25, 0.5, 0.75});
  const auto down = diffuse::flow_uniform_times(4, diffuse::flow_direction::noise_at_one, 1000.0);
  CHECK(down.times == std::vector<double>{1.0, 0.75, 0.5, 0.25, 0.0});
  CHECK(down.model_times == std::vector<double>{1000.0, 750.0, 500.0, 250.0});
}

TEST_CASE("scheduler_config.json FlowMatchEulerDiscreteScheduler builds the flow solver of the same grid") {
  const std::string text = R"({"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0,
      "use_dynamic_shifting": false, "base_shift": 0.5, "max_shift": 1.15, "invert_sigmas": false, "shift_terminal": null,
      "use_karras_sigmas": false, "time_shift_type": "exponential", "stochastic_sampling": false})";
  const auto any = diffuse::solver_from_config(text, 12);
  REQUIRE(std::holds_alternative<diffuse::flow_euler_sampler>(any));
  const auto& s = std::get<diffuse::flow_euler_sampler>(any);
  CHECK(s.times().times == diffuse::flow_match_times(12, {.shift = 3.0}).times);
  CHECK(diffuse::scheduler_config::from_json(text).prediction == diffuse::prediction_type::flow_prediction);
  const std::string dynamic = R"({"_class_name": "FlowMatchEulerDiscreteScheduler", "use_dynamic_shifting": true,
      "base_image_seq_len": 256, "max_image_seq_len": 4096, "base_shift": 0.5, "max_shift": 1.15, "stochastic_sampling": true})";
  const double mu = diffuse::flow_mu_from_config(dynamic, 4096);
  CHECK(mu == doctest::Approx(1.15).epsilon(1e-14));
  const auto f = diffuse::flow_solver_from_config(dynamic, 8, mu);
  CHECK(f.times().times == diffuse::flow_match_times(8, {.use_dynamic_shifting = true, .mu = mu}).times);
  CHECK(f.options().stochastic_sampling);
  test::check_error([&] { (void)diffuse::solver_from_config(dynamic, 8); }, {"use_dynamic_shifting = true needs mu", "flow_solver_from_config"});
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "FlowMatchEulerDiscreteScheduler", "use_karras_sigmas": true})", 8); },
                    {"use_karras_sigmas = true", "not supported"});
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": "3"})", 8); },
                    {"\"shift\" is \"3\"; expected a number"});
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "FlowMatchEulerDiscreteScheduler", "prediction_type": "epsilon"})", 8); },
                    {"expected flow_prediction"});
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "FlowMatchEulerDiscreteScheduler", "time_shift_type": "cubic"})", 8); },
                    {"time_shift_type \"cubic\" is unknown"});
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "EulerDiscreteScheduler", "prediction_type": "flow_prediction"})", 8); },
                    {"flow_prediction", "FlowMatchEulerDiscreteScheduler"});
}

TEST_CASE("flow Euler converges with order 1 to the exact mixture flow") {
  // 64 two-dimensional points from σ = 1 (pure noise) to σ = 0.02 in N equal steps, the exact velocity of a
  // smooth (overlapping) mixture; the reference is classical RK4 with 2000 steps on the same interval (its
  // error ~1e-13 is far below Euler's at N = 40, ~1e-3). The interval stops at 0.02 because the closed-form
  // velocity is only defined for σ > 0 and RK4 evaluates the end point. Slopes of log error vs log N over
  // 5 → 10 → 20 → 40 must lie in [0.85, 1.15]: Euler's global error is C/N + O(1/N²).
  const diffuse::gaussian_mixture gm({0.3, 0.7}, {{-1.0, 0.0}, {1.0, 0.5}}, {0.8, 0.6});
  const diffuse::sample_shape shape{.batch = 64, .channels = 2, .spatial = 1};
  std::vector<double> z(shape.numel());
  diffuse::fill_initial_noise<double>(z, shape, 11);
  const double smin = 0.02;
  const auto velocity = [&](const std::vector<double>& x, double s) {
    std::vector<double> v(x.size());
    gm.flow_velocity<double>(x, s, v);
    return v;
  };
  std::vector<double> ref = z;
  {
    const int m = 2000;
    const double h = (smin - 1.0) / m;
    for (int i = 0; i < m; ++i) {
      const double s = 1.0 + h * i;
      auto axpy = [&](const std::vector<double>& a, const std::vector<double>& d, double c) {
        std::vector<double> r(a.size());
        for (std::size_t j = 0; j < a.size(); ++j) r[j] = a[j] + c * d[j];
        return r;
      };
      const auto k1 = velocity(ref, s), k2 = velocity(axpy(ref, k1, h / 2), s + h / 2), k3 = velocity(axpy(ref, k2, h / 2), s + h / 2),
                 k4 = velocity(axpy(ref, k3, h), s + h);
      for (std::size_t j = 0; j < ref.size(); ++j) ref[j] += h / 6 * (k1[j] + 2 * k2[j] + 2 * k3[j] + k4[j]);
    }
  }
  const auto euler = [&](int n) {
    diffuse::flow_times grid;
    for (int k = 0; k <= n; ++k) grid.times.push_back(1.0 + (smin - 1.0) * k / n);
    for (int k = 0; k < n; ++k) grid.model_times.push_back(grid.times[static_cast<std::size_t>(k)] * 1000.0);
    const diffuse::flow_euler_sampler solver(grid);
    std::vector<double> x = z;
    diffuse::solve(solver, gm.flow_model<double>(1000.0), std::span<double>(x), shape);
    return x;
  };
  double prev = 0;
  for (int n : {5, 10, 20, 40}) {
    const double e = rms(euler(n), ref);
    if (prev > 0) {
      const double slope = std::log(prev / e) / std::log(2.0);
      std::printf("flow Euler N = %d: rms error %.3g, slope %.3f\n", n, e, slope);
      CHECK(slope >= 0.85);
      CHECK(slope <= 1.15);
    }
    prev = e;
  }
}

TEST_CASE_TEMPLATE("flow Euler with shift 1 is DDIM (eta = 0, x0 prediction) in the flow parameterisation", Scalar, float, double) {
  // x_σ = (1 − σ)·x0 + σ·ε is the VP sample x_VP = x_σ/r with r = √((1 − σ)² + σ²) and ᾱ = (1 − σ)²/r².
  // DDIM's x' = √ᾱ'·x̂0 + √(1 − ᾱ')·ε̂ in that variable is (1 − σ')·x̂0 + σ'·ε̂ = x + (σ' − σ)·v, the flow Euler
  // step. Checked with diffuse's ddim_sampler over a schedule whose ᾱ_t are those of the grid (timesteps
  // N − 1 … 0, set_alpha_to_one for σ_N = 0) and the mixture's exact x̂0 as the "sample" model.
  // Tolerance: 1e-12 relative in double (rounding of r and √ᾱ), 2e-5 in float.
  const int n = 9;
  const auto grid = diffuse::flow_match_custom_sigmas({0.97, 0.9, 0.8, 0.66, 0.5, 0.37, 0.21, 0.1, 0.04});
  REQUIRE(grid.num_steps() == n);
  const auto alpha_bar = [](double s) { return (1 - s) * (1 - s) / ((1 - s) * (1 - s) + s * s); };
  std::vector<double> abar;
  for (int t = 0; t < n; ++t) abar.push_back(alpha_bar(grid.times[static_cast<std::size_t>(n - 1 - t)]));
  const auto schedule = diffuse::noise_schedule::from_alphas_cumprod(abar);
  std::vector<int> ts;
  for (int t = n - 1; t >= 0; --t) ts.push_back(t);
  const diffuse::ddim_sampler ddim(schedule, ts, {.prediction = diffuse::prediction_type::sample});
  const auto& gm = separated();
  const auto ddim_model = [&](std::span<const Scalar> x, int t, std::span<Scalar> out) {
    const double s = grid.times[static_cast<std::size_t>(n - 1 - t)], r = std::sqrt((1 - s) * (1 - s) + s * s);
    std::vector<double> xf(x.size()), v(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) xf[i] = r * static_cast<double>(x[i]);
    gm.flow_velocity<double>(xf, s, v);
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = static_cast<Scalar>(xf[i] - s * v[i]);
  };
  const diffuse::sample_shape shape{.batch = 50, .channels = 2, .spatial = 1};
  std::vector<Scalar> a(shape.numel()), b;
  diffuse::fill_initial_noise<Scalar>(a, shape, 3);
  b = a;
  const double r0 = std::sqrt((1 - 0.97) * (1 - 0.97) + 0.97 * 0.97);
  for (auto& v : a) v = static_cast<Scalar>(static_cast<double>(v) / r0);  // the VP sample at σ_0
  diffuse::sample(ddim, ddim_model, std::span<Scalar>(a), shape);
  const diffuse::flow_euler_sampler flow(grid);
  diffuse::solve(flow, gm.flow_model<Scalar>(1000.0), std::span<Scalar>(b), shape);
  const double tol = std::is_same_v<Scalar, double> ? 1e-12 : 2e-5;
  const std::vector<double> e(a.begin(), a.end());
  const double err = test::worst_relative(b, e, tol);
  std::printf("flow Euler vs DDIM (%s): %.3g of the bound %.0e\n", std::is_same_v<Scalar, double> ? "double" : "float", err * tol, tol);
  CHECK(err <= 1.0);
}

TEST_CASE("flow Euler reproduces the mixture's mode weights (any shift, either direction)") {
  // 4000 samples of π = (0.3, 0.7) with well-separated modes; the fraction nearer mode 0 has sampling
  // standard deviation √(0.3·0.7/4000) = 0.0072, and 100 steps leave a discretisation bias far below it:
  // |w − 0.3| ≤ 0.025 (3.5 sd). Also with shift 3 (a different grid of the same ODE) and for the
  // noise-at-zero direction (0 → 1, the output x0 − ε). diffusers' stochastic_sampling is printed, not
  // checked: it re-noises the posterior mean x̂0 with fresh noise at every step, which is not a sampler of
  // the data distribution for an exact velocity (it gives about 0.21 here); the fixtures check its formula.
  const auto& gm = separated();
  const diffuse::sample_shape shape{.batch = 4000, .channels = 2, .spatial = 1};
  const auto weight0 = [&](const auto& solver, auto model) {
    std::vector<double> x(shape.numel());
    diffuse::fill_initial_noise<double>(x, shape, 5);
    diffuse::solve(solver, model, std::span<double>(x), shape, {.seed = 9});
    int c0 = 0;
    for (std::size_t i = 0; i < shape.batch; ++i) {
      const double u = x[2 * i], v = x[2 * i + 1];
      c0 += (u + 2) * (u + 2) + v * v < (u - 2) * (u - 2) + (v - 1) * (v - 1);
    }
    return c0 / static_cast<double>(shape.batch);
  };
  const double w_euler = weight0(diffuse::flow_euler_sampler(100), gm.flow_model<double>());
  const double w_shift = weight0(diffuse::flow_euler_sampler(100, {.shift = 3.0}), gm.flow_model<double>());
  const double w_sde = weight0(diffuse::flow_euler_sampler(100, {}, {.stochastic_sampling = true}), gm.flow_model<double>());
  const double w_up = weight0(diffuse::flow_euler_sampler(diffuse::flow_uniform_times(100, diffuse::flow_direction::noise_at_zero)),
                              gm.flow_model<double>(1.0, diffuse::flow_direction::noise_at_zero));
  std::printf("mode-0 weight (0.3): Euler %.4f, shift 3 %.4f, stochastic %.4f, 0->1 %.4f\n", w_euler, w_shift, w_sde, w_up);
  for (double w : {w_euler, w_shift, w_up}) CHECK(std::abs(w - 0.3) <= 0.025);
}

TEST_CASE_TEMPLATE("flow Euler: the same bits for any batch split, thread count or vector path; solve() equals a step loop", Scalar, float, double) {
  const auto model = [](std::span<const Scalar> x, double t, std::span<Scalar> out) {
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = static_cast<Scalar>(std::sin(static_cast<double>(x[i]) + 0.001 * t));
  };
  const diffuse::flow_euler_sampler sde(8, {.shift = 3.0}, {.stochastic_sampling = true});
  const diffuse::flow_euler_sampler sde_scalar(8, {.shift = 3.0}, {.stochastic_sampling = true, .vectorize = false});
  const diffuse::flow_euler_sampler det(8, {.shift = 3.0});
  const auto run = [&](const diffuse::flow_euler_sampler& s, std::size_t batch, std::uint64_t first, std::size_t spatial) {
    const diffuse::sample_shape shape{.batch = batch, .channels = 3, .spatial = spatial};
    std::vector<Scalar> x(shape.numel());
    diffuse::fill_initial_noise<Scalar>(x, shape, 21, first);
    diffuse::solve(s, model, std::span<Scalar>(x), shape, {.seed = 21, .first_sample = first});
    return x;
  };
  const auto whole = run(sde, 6, 0, 37);
  auto joined = run(sde, 2, 0, 37);
  const auto rest = run(sde, 4, 2, 37);
  joined.insert(joined.end(), rest.begin(), rest.end());
  CHECK(joined == whole);
  CHECK(run(sde, 3, 0, 37) == run(sde_scalar, 3, 0, 37));
#if defined(_OPENMP)
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const auto one = run(sde, 2, 0, 40000);  // 240K elements: the parallel chunked path
  omp_set_num_threads(3);
  const auto three = run(sde, 2, 0, 40000);
  omp_set_num_threads(saved);
  CHECK(one == three);
#endif
  // A hand-written loop: model, step, swap, with the generated noise of step_noise_stream(k).
  const diffuse::sample_shape shape{.batch = 2, .channels = 3, .spatial = 5};
  for (const auto* s : {&det, &sde}) {
    std::vector<Scalar> x(shape.numel()), out(shape.numel()), next(shape.numel());
    diffuse::fill_initial_noise<Scalar>(x, shape, 4);
    std::vector<Scalar> y = x;
    const diffuse::normal_generator gen(4);
    auto state = s->template make_state<Scalar>(shape);
    for (int k = 0; k < s->num_steps(); ++k) {
      model(x, s->model_time(k), out);
      diffuse::solver_buffers<Scalar> io{.x = x, .model_output = out, .x_next = next};
      if (s->adds_noise(k)) io.generated = {&gen, 0, diffuse::step_noise_stream(k)};
      s->template step<Scalar>(k, io, shape, state);
      x.swap(next);
    }
    diffuse::solve(*s, model, std::span<Scalar>(y), shape, {.seed = 4});
    CHECK(x == y);
  }
}

namespace {
struct record_alpha_bar {
  static constexpr bool needs_gradient = false;
  std::vector<double>* seen;
  template <class Scalar>
  void operator()(const diffuse::guidance_context<Scalar>& ctx) const {
    seen->push_back(ctx.alpha_bar);
  }
};
}  // namespace

TEST_CASE("flow Euler: guidance hooks see the VP alpha_bar of the flow's signal-to-noise ratio; solve() allocates nothing after the first call") {
  const diffuse::sample_shape shape{.batch = 2, .channels = 3, .spatial = 300};
  const auto model = [](std::span<const float> x, double, std::span<float> out) {
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = 0.5f * x[i];
  };
  const diffuse::flow_euler_sampler solver(10, {.shift = 3.0}, {.stochastic_sampling = true});
  std::vector<double> seen;
  std::vector<float> x(shape.numel(), 0.1f);
  diffuse::solve(solver, model, std::span<float>(x), shape, {}, [](const auto&) {}, diffuse::guidance(record_alpha_bar{&seen}));
  REQUIRE(seen.size() == 10);
  for (int k = 0; k < 10; ++k) {
    const double s = solver.sigma(k);
    CHECK(seen[static_cast<std::size_t>(k)] == doctest::Approx((1 - s) * (1 - s) / ((1 - s) * (1 - s) + s * s)).epsilon(1e-15));
  }
  CHECK(seen[0] == 0.0);  // σ_0 = 1: pure noise
  diffuse::solver_workspace<float> ws;
  diffuse::solve(solver, model, std::span<float>(x), shape, {}, ws);
  const long before = test::allocations();
  diffuse::solve(solver, model, std::span<float>(x), shape, {}, ws);
  CHECK(test::allocations() == before);
}

TEST_CASE("flow matching: bad input is a diffuse::error that says what was expected") {
  test::check_error([] { (void)diffuse::flow_match_times(10, {.shift = 0.0}); }, {"flow shift = 0", "expected a finite shift > 0"});
  test::check_error([] { (void)diffuse::flow_match_times(10, {.shift = -2.0}); }, {"flow shift = -2"});
  test::check_error([] { (void)diffuse::flow_match_times(10, {.shift = std::nan("")}); }, {"flow shift = nan"});
  test::check_error([] { (void)diffuse::flow_match_times(10, {.use_dynamic_shifting = true}); }, {"use_dynamic_shifting without mu"});
  test::check_error([] { (void)diffuse::flow_match_times(10, {.use_dynamic_shifting = true, .mu = std::nan("")}); }, {"expected a finite mu"});
  test::check_error([] { (void)diffuse::flow_match_times(10, {.mu = 1.0}); }, {"without use_dynamic_shifting"});
  test::check_error([] { (void)diffuse::flow_match_times(10, {.use_dynamic_shifting = true, .mu = -1.0, .time_shift_type = diffuse::flow_time_shift_type::linear}); },
                    {"expected mu > 0"});
  test::check_error([] { (void)diffuse::flow_match_times(10, {.shift_terminal = 1.0}); }, {"shift_terminal = 1", "0 < shift_terminal < 1"});
  test::check_error([] { (void)diffuse::flow_match_times(1, {.shift_terminal = 0.1}); }, {"at least 2 steps"});
  test::check_error([] { (void)diffuse::flow_match_times(0); }, {"num_inference_steps = 0"});
  test::check_error([] { (void)diffuse::flow_match_custom_sigmas({1.0, 0.5, 0.7}); }, {"not strictly decreasing at entry 2"});
  test::check_error([] { (void)diffuse::flow_match_custom_sigmas({1.0, 0.5, 0.0}); }, {"custom sigmas 2 = 0", "the final 0 is appended"});
  test::check_error([] { (void)diffuse::flow_match_custom_sigmas({}); }, {"empty list of custom sigmas"});
  test::check_error([] { (void)diffuse::flow_match_custom_sigmas({1.5, 0.5}); }, {"flow time 0 = 1.5", "expected times in [0, 1]"});
  test::check_error([] { (void)diffuse::flow_match_custom_timesteps({900.0, 950.0}); }, {"custom timesteps are not strictly decreasing"});
  test::check_error([] { (void)diffuse::flow_uniform_times(0); }, {"num_steps = 0"});
  test::check_error([] { (void)diffuse::flow_uniform_times(4, diffuse::flow_direction::noise_at_one, 0.0); }, {"time_scale = 0"});
  test::check_error([] { (void)diffuse::flow_calculate_shift(1024, {.base_seq_len = 256, .max_seq_len = 256}); }, {"base_seq_len != max_seq_len"});
  test::check_error([] {
    diffuse::flow_times g{.times = {1.0, 0.5, 0.6, 0.0}, .model_times = {1000, 500, 600}};
    (void)diffuse::flow_euler_sampler(g);
  }, {"flow time 2 = 0.6", "strictly decreasing"});
  test::check_error([] { (void)diffuse::flow_euler_sampler(diffuse::flow_times{.times = {1.0, 0.0}, .model_times = {}}); }, {"expected N >= 1 model times"});
  test::check_error([] { (void)diffuse::flow_euler_sampler(4, {.invert_sigmas = true}, {.stochastic_sampling = true}); },
                    {"stochastic_sampling with a noise-at-zero grid"});
  // A flow-matching model handed to a sampler that cannot use it.
  const auto schedule = diffuse::noise_schedule::linear(1000);
  const auto flow = diffuse::prediction_type::flow_prediction;
  test::check_error([&] { (void)diffuse::ddim_sampler(schedule, {999, 500, 0}, {.prediction = flow}); }, {"DDIM needs", "got flow_prediction", "flow_euler_sampler"});
  test::check_error([&] { (void)diffuse::ddpm_sampler(schedule, {999, 500, 0}, {.prediction = flow}); }, {"DDPM sampler needs", "got flow_prediction"});
  test::check_error([&] { (void)diffuse::dpm_solver_sampler(schedule, 10, {}, {.prediction = flow}); }, {"DPM-Solver++ needs", "got flow_prediction"});
  test::check_error([&] { (void)diffuse::unipc_sampler(schedule, 10, {}, {.prediction = flow}); }, {"UniPC needs", "got flow_prediction"});
  test::check_error([&] { (void)diffuse::euler_sampler(schedule, 10, {}, {.prediction = flow}); }, {"Euler solvers", "got flow_prediction"});
  test::check_error([&] { (void)diffuse::euler_ancestral_sampler(schedule, 10, {}, {.prediction = flow}); }, {"Euler solvers", "got flow_prediction"});
  test::check_error([&] { (void)diffuse::heun_sampler(schedule, 10, {}, {.prediction = flow}); }, {"Heun solver needs", "got flow_prediction"});
  test::check_error([&] { (void)separated().denoiser<double>(schedule, flow); }, {"use flow_model"});
  test::check_error([] {
    std::vector<double> x(2), v(2);
    separated().flow_velocity<double>(x, 0.0, v);
  }, {"flow velocity at sigma = 0"});
  // A NaN from the model is a [diffuse.numeric] error naming the step.
  const auto nan_model = [](std::span<const float>, double t, std::span<float> out) {
    for (auto& o : out) o = t < 500 ? std::nanf("") : 0.0f;
  };
  std::vector<float> x(6, 0.0f);
  test::check_error([&] { diffuse::solve(diffuse::flow_euler_sampler(4), nan_model, std::span<float>(x), {.batch = 2, .channels = 1, .spatial = 3}); },
                    {"[diffuse.numeric]", "step 2"});
}

TEST_CASE("flow Heun matches diffusers' FlowMatchHeunDiscreteScheduler (float64 variant to 1e-12, verbatim float32 to 1e-6)") {
  // float64: the same operations in the same order (x̂0 = x − v·σ, d = (x − x̂0)/σ, ½(d + d')), so only the
  // last bits of the grid's shift differ. float32: diffusers rounds its grid to float32 (6e-8 relative);
  // the grid is checked against the C++ double grid to 2e-7 and the steps are replayed on it (below).
  for (const char* file : {"flow/flow_heun_float64.json", "flow/flow_heun_float32.json"}) {
    const json fx = test::fixture(file);
    const bool wide = std::string(file).find("64") != std::string::npos;
    double worst_traj = 0, worst_times = 0;
    int cases = 0;
    for (const auto& c : fx["cases"]) {
      CAPTURE(c["name"].get<std::string>());
      CAPTURE(c["steps"].get<int>());
      const diffuse::flow_heun_sampler solver(c["steps"].get<int>(), options_of(c["config"], json::object()));
      const auto r = wide ? replay_heun<double>(solver, c) : replay_heun<float>(solver, c);
      worst_times = std::max(worst_times, r.times);
      CHECK(r.times <= (wide ? 1e-12 : 2e-7));
      if (wide) {
        worst_traj = std::max(worst_traj, r.trajectory);
        CHECK(r.trajectory <= 1e-12);
      } else {
        // The step arithmetic at float32 rounding: replayed on diffusers' own float32 grid (given as a
        // custom grid) and fed diffusers' own model outputs, every evaluation agrees to float32 rounding
        // (1e-6 relative: a few ulps). With the C++ double grid and the C library's tanh / sin the chains
        // differ more where σ is small (shift 0.5, N = 2: σ = 2.5e-4): d = (x − x̂0)/σ turns the rounding
        // of x̂0 = x − v·σ (an ulp of x) into 1/σ times more, up to 1.4e-5 measured, bound 5e-5.
        const auto sig = c["sigmas"].get<std::vector<double>>();
        const auto ts = c["timesteps"].get<std::vector<double>>();
        diffuse::flow_times grid;
        const int n = c["steps"].get<int>();
        for (int k = 0; k < n; ++k) {
          const auto at = static_cast<std::size_t>(k == 0 ? 0 : 2 * k - 1);
          grid.times.push_back(sig[at]);
          grid.model_times.push_back(ts[at]);
        }
        grid.times.push_back(sig.back());
        const auto f32 = replay_heun<float>(diffuse::flow_heun_sampler(grid), c, true);
        worst_traj = std::max(worst_traj, f32.trajectory);
        CHECK(f32.trajectory <= 1e-6);
        CHECK(r.trajectory <= 5e-5);
      }
      ++cases;
    }
    std::printf("%s: %d cases, worst trajectory error %.2g (float32: on diffusers' grid), worst grid error %.2g\n", file, cases, worst_traj,
                worst_times);
    CHECK(cases == 17);
  }
}

TEST_CASE("flow Heun converges with order 2 to the exact mixture flow (and solve() equals a step loop)") {
  // The flow Euler convergence setup: 64 two-dimensional points from σ = 1 to σ = 0.02 in N equal steps of
  // the exact velocity of a smooth mixture, against classical RK4 with 2000 steps (error ~1e-13, far below
  // Heun's ~1e-5 at N = 40). Heun's global error is C/N² + O(1/N³), but its last step is Euler (as
  // diffusers'), whose local error O(1/N²) adds to the same order, so the slope stays 2. Slopes over
  // 5 → 10 → 20 → 40 must lie in [1.8, 2.3] (measured values are printed).
  const diffuse::gaussian_mixture gm({0.3, 0.7}, {{-1.0, 0.0}, {1.0, 0.5}}, {0.8, 0.6});
  const diffuse::sample_shape shape{.batch = 64, .channels = 2, .spatial = 1};
  std::vector<double> z(shape.numel());
  diffuse::fill_initial_noise<double>(z, shape, 11);
  const double smin = 0.02;
  const auto velocity = [&](const std::vector<double>& x, double s) {
    std::vector<double> v(x.size());
    gm.flow_velocity<double>(x, s, v);
    return v;
  };
  std::vector<double> ref = z;
  {
    const int m = 2000;
    const double h = (smin - 1.0) / m;
    auto axpy = [&](const std::vector<double>& a, const std::vector<double>& d, double c) {
      std::vector<double> r(a.size());
      for (std::size_t j = 0; j < a.size(); ++j) r[j] = a[j] + c * d[j];
      return r;
    };
    for (int i = 0; i < m; ++i) {
      const double s = 1.0 + h * i;
      const auto k1 = velocity(ref, s), k2 = velocity(axpy(ref, k1, h / 2), s + h / 2), k3 = velocity(axpy(ref, k2, h / 2), s + h / 2),
                 k4 = velocity(axpy(ref, k3, h), s + h);
      for (std::size_t j = 0; j < ref.size(); ++j) ref[j] += h / 6 * (k1[j] + 2 * k2[j] + 2 * k3[j] + k4[j]);
    }
  }
  const auto heun = [&](int n) {
    diffuse::flow_times grid;
    for (int k = 0; k <= n; ++k) grid.times.push_back(1.0 + (smin - 1.0) * k / n);
    for (int k = 0; k < n; ++k) grid.model_times.push_back(grid.times[static_cast<std::size_t>(k)] * 1000.0);
    const diffuse::flow_heun_sampler solver(grid);
    std::vector<double> x = z;
    int calls = 0;
    auto model = gm.flow_model<double>(1000.0);
    diffuse::solve(solver, [&](std::span<const double> in, double t, std::span<double> out) { ++calls; model(in, t, out); },
                   std::span<double>(x), shape);
    CHECK(calls == 2 * n - 1);
    // A user's own loop over step() gives the same bits.
    std::vector<double> y = z, out(z.size()), next(z.size());
    auto state = solver.make_state<double>(shape);
    for (int p = 0; p < solver.num_steps(); ++p) {
      model(y, solver.model_time(p), out);
      solver.step<double>(p, {.x = y, .model_output = out, .x_next = next}, shape, state);
      y.swap(next);
    }
    CHECK(y == x);
    return x;
  };
  double prev = 0;
  for (int n : {5, 10, 20, 40}) {
    const double e = rms(heun(n), ref);
    if (prev > 0) {
      const double slope = std::log(prev / e) / std::log(2.0);
      std::printf("flow Heun N = %d: rms error %.3g, slope %.3f\n", n, e, slope);
      CHECK(slope >= 1.8);
      CHECK(slope <= 2.3);
    }
    prev = e;
  }
}

TEST_CASE_TEMPLATE("flow Heun: vector and scalar paths give the same bits; noise-at-zero grids integrate the same flow", Scalar, float, double) {
  const diffuse::sample_shape shape{.batch = 3, .channels = 2, .spatial = 7};
  std::vector<Scalar> z(shape.numel());
  diffuse::fill_initial_noise<Scalar>(z, shape, 5);
  const diffuse::gaussian_mixture gm({0.3, 0.7}, {{-1.0, 0.0}, {1.0, 0.5}}, {0.8, 0.6});
  const diffuse::sample_shape gshape{.batch = 21, .channels = 2, .spatial = 1};
  std::vector<Scalar> a = z, b = z;
  const diffuse::flow_heun_sampler fast(8, {.shift = 3.0}), slow(8, {.shift = 3.0}, {.vectorize = false});
  diffuse::solve(fast, gm.flow_model<Scalar>(1000.0), std::span<Scalar>(a), gshape);
  diffuse::solve(slow, gm.flow_model<Scalar>(1000.0), std::span<Scalar>(b), gshape);
  CHECK(a == b);
  // The same uniform grid walked 0 → 1 (noise at 0, output x0 − ε) reaches the same points up to rounding.
  std::vector<Scalar> c = z, d = z;
  const diffuse::flow_heun_sampler down(diffuse::flow_uniform_times(6, diffuse::flow_direction::noise_at_one, 1000.0));
  const diffuse::flow_heun_sampler up(diffuse::flow_uniform_times(6, diffuse::flow_direction::noise_at_zero, 1000.0));
  // flow_model's time is σ·1000 for noise at one; for noise at zero it is given t·1000 with t = 1 − σ.
  diffuse::solve(down, gm.flow_model<Scalar>(1000.0), std::span<Scalar>(c), gshape);
  diffuse::solve(up, gm.flow_model<Scalar>(1000.0, diffuse::flow_direction::noise_at_zero), std::span<Scalar>(d), gshape);
  const double tol = std::is_same_v<Scalar, double> ? 1e-10 : 1e-4;
  for (std::size_t i = 0; i < c.size(); ++i) CHECK(std::abs(static_cast<double>(c[i] - d[i])) <= tol);
}

TEST_CASE("scheduler_config.json FlowMatchHeunDiscreteScheduler builds the flow Heun solver; keys it lacks are refused") {
  const std::string text = R"({"_class_name": "FlowMatchHeunDiscreteScheduler", "_diffusers_version": "0.40.0", "num_train_timesteps": 1000, "shift": 3.0})";
  const auto any = diffuse::solver_from_config(text, 12);
  REQUIRE(std::holds_alternative<diffuse::flow_heun_sampler>(any));
  const auto& s = std::get<diffuse::flow_heun_sampler>(any);
  CHECK(s.times().times == diffuse::flow_match_times(12, {.shift = 3.0}).times);
  CHECK(s.num_steps() == 23);
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "FlowMatchHeunDiscreteScheduler", "stochastic_sampling": true})", 8); },
                    {"stochastic_sampling", "has no such option"});
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "FlowMatchHeunDiscreteScheduler", "shift": null, "shift_terminal": 0.1})", 8); },
                    {"shift_terminal", "has no such option"});
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "FlowMatchHeunDiscreteScheduler", "prediction_type": "epsilon"})", 8); },
                    {"expected flow_prediction"});
  test::check_error([] { (void)diffuse::flow_heun_solver_from_config(R"({"_class_name": "FlowMatchEulerDiscreteScheduler"})", 8); },
                    {"expected FlowMatchHeunDiscreteScheduler"});
  // A chain that starts at a corrector, a foreign state.
  const diffuse::flow_heun_sampler h(4);
  const diffuse::sample_shape shape{.batch = 1, .channels = 1, .spatial = 2};
  std::vector<double> x(2, 0.1), out(2, 0.2), next(2);
  auto st = h.make_state<double>(shape);
  test::check_error([&] { h.step<double>(1, {.x = x, .model_output = out, .x_next = next}, shape, st); }, {"starts at position 1, a corrector"});
  const diffuse::flow_heun_sampler other(4);
  auto foreign = other.make_state<double>(shape);
  test::check_error([&] { h.step<double>(0, {.x = x, .model_output = out, .x_next = next}, shape, foreign); }, {"made for another sampler"});
  out[1] = std::nan("");
  test::check_error([&] { h.step<double>(0, {.x = x, .model_output = out, .x_next = next}, shape, st); }, {"NaN in the model output"});
}

namespace {

/// The solver of a DPMSolverMultistepScheduler / UniPCMultistepScheduler flow-sigma fixture case: through
/// solver_from_config (the case's config as a scheduler_config.json), or built directly when it needs μ.
diffuse::any_solver multistep_flow_solver(const json& c) {
  const json& config = c["config"];
  const json& extras = c["set_timesteps"];
  const int n = c["steps"].get<int>();
  if (!extras.contains("mu")) {
    json text = config;
    text["_class_name"] = c["class"];
    return diffuse::solver_from_config(text.dump(), n);
  }
  const auto schedule = diffuse::noise_schedule::linear(1000);
  diffuse::multistep_flow_options o{.mu = extras["mu"].get<double>()};
  if (config.value("time_shift_type", "exponential") == std::string("linear")) o.time_shift_type = diffuse::flow_time_shift_type::linear;
  if (config.contains("shift_terminal")) o.shift_terminal = config["shift_terminal"].get<double>();
  if (c["class"] == "DPMSolverMultistepScheduler")
    return diffuse::dpm_solver_sampler(diffuse::dpm_solver_flow_sigmas(schedule, n, o), {.prediction = diffuse::prediction_type::flow_prediction});
  return diffuse::unipc_sampler(diffuse::unipc_flow_sigmas(schedule, n, o), {.prediction = diffuse::prediction_type::flow_prediction});
}

/// Replays a multistep flow case step by step (integer model times, noise of the SDE variant given).
template <class Scalar, class Solver>
replay_result replay_multistep(const Solver& solver, const json& c) {
  replay_result r;
  const auto& traj = c["trajectory"];
  REQUIRE(solver.num_steps() == static_cast<int>(traj.size()));
  const auto sig = c["sigmas"].get<std::vector<double>>();
  REQUIRE(sig.size() == static_cast<std::size_t>(solver.num_steps() + 1));
  for (int k = 0; k <= solver.num_steps(); ++k) r.times = std::max(r.times, std::abs(solver.sigma(k) - sig[static_cast<std::size_t>(k)]));
  const diffuse::sample_shape shape{.batch = 2, .channels = 1, .spatial = 3};
  const auto z = c["initial_noise"].get<std::vector<double>>();
  std::vector<Scalar> x(z.size()), out(z.size()), next(z.size()), noise(z.size());
  for (std::size_t i = 0; i < z.size(); ++i) x[i] = static_cast<Scalar>(z[i]);
  auto state = solver.template make_state<Scalar>(shape);
  for (int k = 0; k < solver.num_steps(); ++k) {
    const auto& s = traj[static_cast<std::size_t>(k)];
    CHECK(solver.timestep(k) == s["timestep"].get<int>());
    fake_model<Scalar>(x, solver.model_time(k), out);
    r.trajectory = std::max(r.trajectory, relative_error(out, s["model_output"].get<std::vector<double>>()));
    const auto zs = s["noise"].get<std::vector<double>>();
    const bool noisy = solver.adds_noise(k);  // diffusers also draws (and multiplies by 0) noise into σ = 0
    if (noisy) REQUIRE(!zs.empty());
    for (std::size_t i = 0; i < zs.size(); ++i) noise[i] = static_cast<Scalar>(zs[i]);
    solver.template step<Scalar>(k, {.x = x, .model_output = out, .x_next = next, .noise = noisy ? std::span<const Scalar>(noise) : std::span<const Scalar>()},
                                 shape, state);
    r.trajectory = std::max(r.trajectory, relative_error(next, s["prev_sample"].get<std::vector<double>>()));
    x = next;
  }
  return r;
}

}  // namespace

TEST_CASE("flow sigmas in DPM-Solver++ and UniPC match diffusers' use_flow_sigmas (float64 variant to 1e-12, verbatim float32 to 2e-5 + 2g)") {
  // float64: the same grid (linspace, shift, flip / time shift, terminal stretch) and the same λ = log(1 − σ) −
  // log σ steps, so only the last bits of log / expm1 differ. float32: diffusers rounds its σ to float32 and
  // steps in float32 while the C++ coefficients are double. Where the grid starts at σ_0 = 1 − 10⁻⁶ (UniPC),
  // float32 rounds α_0 = 1 − σ_0 by 1% and diffusers' float32 run departs from its own float64 run by g (up to
  // 2e-4, UniPC bh1); the C++ float path follows the double coefficients, so the bound is 2e-5 + 2g with g
  // measured per case from the two fixture files (the cases are in the same order). The float32 σ are checked
  // to 2e-6 absolute (the VP σ_min of sigma_min comes from diffusers' float32 ᾱ table). Model times are
  // diffusers' int64 truncation of σ·T, compared exactly.
  const json f64 = test::fixture("flow/flow_multistep_float64.json");
  for (const char* file : {"flow/flow_multistep_float64.json", "flow/flow_multistep_float32.json"}) {
    const json fx = test::fixture(file);
    const bool wide = std::string(file).find("64") != std::string::npos;
    double worst_traj = 0, worst_times = 0;
    int cases = 0;
    for (const auto& c : fx["cases"]) {
      double gap = 0;  // diffusers' float32 run against its float64 run
      for (std::size_t k = 0; k < c["trajectory"].size(); ++k)
        gap = std::max(gap, relative_error(c["trajectory"][k]["prev_sample"].get<std::vector<double>>(),
                                           f64["cases"][static_cast<std::size_t>(cases)]["trajectory"][k]["prev_sample"].get<std::vector<double>>()));
      CAPTURE(c["name"].get<std::string>());
      CAPTURE(c["steps"].get<int>());
      const auto any = multistep_flow_solver(c);
      std::visit(
          [&](const auto& solver) {
            using S = std::remove_cvref_t<decltype(solver)>;
            if constexpr (std::is_same_v<S, diffuse::dpm_solver_sampler> || std::is_same_v<S, diffuse::unipc_sampler>) {
              CHECK(solver.sigmas().flow);
              const auto r = wide ? replay_multistep<double>(solver, c) : replay_multistep<float>(solver, c);
              worst_traj = std::max(worst_traj, r.trajectory);
              worst_times = std::max(worst_times, r.times);
              CHECK(r.trajectory <= (wide ? 1e-12 : 2e-5 + 2 * gap));
              CHECK(r.times <= (wide ? 1e-12 : 2e-6));
            } else {
              FAIL("the config did not give DPM-Solver++ or UniPC");
            }
          },
          any);
      ++cases;
    }
    std::printf("%s: %d cases, worst trajectory error %.2g, worst sigma error %.2g\n", file, cases, worst_traj, worst_times);
    CHECK(cases == 30);
  }
}

TEST_CASE("flow sigmas: DPM-Solver++ 2M and UniPC-2 converge with order 2 to the exact mixture flow") {
  // 64 two-dimensional points carried from σ = 0.98 to σ = 0.02 (N steps uniform in λ) by the exact velocity of
  // a smooth mixture; the reference is classical RK4 with 2000 steps in σ over the same interval (error ~1e-13).
  // The solvers see the flow as x̂0 = x − σ·v with α = 1 − σ (flow sigmas); the model is told the position k
  // (an integer model time) and evaluates the velocity at σ_k exactly, so the times' truncation to integers
  // does not blur the order. lower_order_final is off (the first step is still first order: its O(h²) local
  // error keeps the global order 2). As tests/test_solver_properties.cpp bounds them: the 20 → 40 slope in
  // [1.8, 2.2] for 2M; UniPC-2's corrector raises its predictor's order by up to one (the last step stays
  // uncorrected), so [1.8, 3.2]. All slopes are printed.
  const diffuse::gaussian_mixture gm({0.3, 0.7}, {{-1.0, 0.0}, {1.0, 0.5}}, {0.8, 0.6});
  const diffuse::sample_shape shape{.batch = 64, .channels = 2, .spatial = 1};
  std::vector<double> z(shape.numel());
  diffuse::fill_initial_noise<double>(z, shape, 11);
  const double smax = 0.98, smin = 0.02;
  const auto velocity = [&](const std::vector<double>& x, double s) {
    std::vector<double> v(x.size());
    gm.flow_velocity<double>(x, s, v);
    return v;
  };
  // The chain starts from the flow state at σ_max: (1 − σ)·x0 + σ·ε is not available without x0, so both the
  // reference and the solvers start from the same point z·σ_max (any common start serves an order test).
  std::vector<double> start = z;
  for (auto& v : start) v *= smax;
  std::vector<double> ref = start;
  {
    const int m = 2000;
    const double h = (smin - smax) / m;
    auto axpy = [&](const std::vector<double>& a, const std::vector<double>& d, double c) {
      std::vector<double> r(a.size());
      for (std::size_t j = 0; j < a.size(); ++j) r[j] = a[j] + c * d[j];
      return r;
    };
    for (int i = 0; i < m; ++i) {
      const double s = smax + h * i;
      const auto k1 = velocity(ref, s), k2 = velocity(axpy(ref, k1, h / 2), s + h / 2), k3 = velocity(axpy(ref, k2, h / 2), s + h / 2),
                 k4 = velocity(axpy(ref, k3, h), s + h);
      for (std::size_t j = 0; j < ref.size(); ++j) ref[j] += h / 6 * (k1[j] + 2 * k2[j] + 2 * k3[j] + k4[j]);
    }
  }
  const auto run = [&](int n, bool unipc) {
    diffuse::sigma_list list;
    list.flow = true;
    // Uniform in λ = log((1 − σ)/σ), the variable these solvers step in: σ = 1/(1 + e^λ).
    const double l0 = std::log((1 - smax) / smax), l1 = std::log((1 - smin) / smin);
    for (int k = 0; k <= n; ++k) list.sigmas.push_back(k == n ? smin : 1.0 / (1.0 + std::exp(l0 + (l1 - l0) * k / n)));
    list.sigmas.front() = smax;
    for (int k = 0; k < n; ++k) list.model_times.push_back(k);
    const auto sig = list.sigmas;
    auto model = [&](std::span<const double> x, int k, std::span<double> out) { gm.flow_velocity<double>(x, sig[static_cast<std::size_t>(k)], out); };
    std::vector<double> x = start;
    if (unipc) {
      const diffuse::unipc_sampler solver(list, {.order = 2, .prediction = diffuse::prediction_type::flow_prediction, .lower_order_final = false});
      diffuse::solve(solver, model, std::span<double>(x), shape);
    } else {
      const diffuse::dpm_solver_sampler solver(list, {.order = 2, .prediction = diffuse::prediction_type::flow_prediction, .lower_order_final = false});
      diffuse::solve(solver, model, std::span<double>(x), shape);
    }
    return x;
  };
  for (bool unipc : {false, true}) {
    const int ns[] = {5, 10, 20, 40};
    double err[4], slope[3];
    for (int i = 0; i < 4; ++i) err[i] = rms(run(ns[i], unipc), ref);
    for (int i = 0; i < 3; ++i) slope[i] = std::log(err[i] / err[i + 1]) / std::log(2.0);
    const double lo = 1.8, hi = unipc ? 3.2 : 2.2;
    std::printf("%s with flow sigmas: error at N = 5, 10, 20, 40: %.3e %.3e %.3e %.3e; slopes %.2f %.2f %.2f (bound on slope 3: [%.1f, %.1f])\n",
                unipc ? "UniPC-2" : "DPM-Solver++ 2M", err[0], err[1], err[2], err[3], slope[0], slope[1], slope[2], lo, hi);
    CHECK(slope[2] >= lo);
    CHECK(slope[2] <= hi);
    CHECK(err[3] < err[0]);
  }
}

TEST_CASE("flow sigmas: bad combinations are diffuse::errors that say what was expected") {
  const auto schedule = diffuse::noise_schedule::linear(1000);
  const auto flow = diffuse::prediction_type::flow_prediction;
  auto list = diffuse::unipc_flow_sigmas(schedule, 6, {.flow_shift = 3.0});
  test::check_error([&] { (void)diffuse::euler_sampler(list, {}); }, {"the Euler solvers with a flow sigma list"});
  test::check_error([&] { (void)diffuse::heun_sampler(list, {}); }, {"the Heun solver with a flow sigma list"});
  test::check_error([&] { (void)diffuse::dpm_solver_sampler(schedule, 6, {}, {.prediction = flow}); }, {"DPM-Solver++ needs", "flow sigmas"});
  test::check_error([&] { (void)diffuse::unipc_sampler(list, {.prediction = flow, .predict_x0 = false}); }, {"predict_x0 = false"});
  test::check_error([&] { (void)diffuse::dpm_solver_sampler(diffuse::dpm_solver_flow_sigmas(schedule, 6, {.final_type = diffuse::final_sigma::sigma_min}),
                                                           {.algorithm = diffuse::dpm_algorithm::dpmsolver, .prediction = flow}); },
                    {"flow_prediction with the noise-form algorithm dpmsolver"});
  test::check_error([&] { (void)diffuse::dpm_solver_flow_sigmas(schedule, 6, {.shift_terminal = 0.1}); }, {"shift_terminal with DPM-Solver++"});
  test::check_error([&] { (void)diffuse::dpm_solver_flow_sigmas(schedule, 6, {.mu = 0.5, .time_shift_type = diffuse::flow_time_shift_type::linear}); },
                    {"mu with the linear time shift"});
  test::check_error([&] { (void)diffuse::unipc_flow_sigmas(schedule, 6, {.flow_shift = -1.0}); }, {"flow_shift = -1"});
  test::check_error([&] { (void)diffuse::unipc_flow_sigmas(schedule, 0); }, {"num_inference_steps = 0"});
  test::check_error([&] { (void)diffuse::dpm_solver_flow_sigmas(schedule, 900, {.final_type = diffuse::final_sigma::sigma_min}); },
                    {"expected strictly decreasing flow sigmas"});
  // Classifier guidance's score form is written for VP sigmas: refused before the model is called.
  const diffuse::unipc_sampler solver(list, {.prediction = flow});
  const diffuse::sample_shape shape{.batch = 1, .channels = 2, .spatial = 1};
  std::vector<double> x(2, 0.0);
  int calls = 0;
  auto model = [&](std::span<const double>, int, std::span<double> out) {
    ++calls;
    std::fill(out.begin(), out.end(), 0.0);
  };
  auto hook = diffuse::classifier_guidance([](std::span<const double>, int, std::span<double> g) { std::fill(g.begin(), g.end(), 0.0); }, 1.0);
  test::check_error([&] { diffuse::solve(solver, model, std::span<double>(x), shape, {}, diffuse::no_callback{}, diffuse::guidance(hook)); },
                    {"classifier guidance with flow sigmas"});
  CHECK(calls == 0);
  // The multistep states: alpha = 1 - sigma, and noising / guidance_alpha_bar follow.
  CHECK(solver.noising(2).first == 1.0 - solver.sigma(2));
  CHECK(solver.noising(2).second == solver.sigma(2));
  const double a = 1.0 - solver.sigma(2), s = solver.sigma(2);
  CHECK(solver.guidance_alpha_bar(2) == doctest::Approx(a * a / (a * a + s * s)).epsilon(1e-15));
}
