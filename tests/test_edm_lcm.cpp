// EDM (edm_euler_sampler, edm_dpm_solver_sampler, edm_denoiser) and LCM (lcm_sampler) against diffusers'
// own EDMEulerScheduler, EDMDPMSolverMultistepScheduler and LCMScheduler (chained trajectories from
// tools/make_edm_lcm_fixtures.py), closed-form identities, convergence orders on the exact Gaussian
// mixture, reproducibility, allocations and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <variant>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "counting_new.hpp"
#include "diffuse/diffusers_exact.hpp"
#include "diffuse/gaussian_mixture.hpp"
#include "diffuse/samplers/dpm_solver.hpp"
#include "diffuse/samplers/edm.hpp"
#include "diffuse/samplers/edm_preconditioning.hpp"
#include "diffuse/samplers/euler.hpp"
#include "diffuse/samplers/from_config.hpp"
#include "diffuse/samplers/heun.hpp"
#include "diffuse/samplers/lcm.hpp"
#include "support.hpp"

namespace {

using nlohmann::json;

using test::fake_model;
using test::relative_error;

struct replay_result {
  double trajectory = 0;  ///< worst relative error of the model inputs, outputs and prev_sample over the chain
  double times = 0;       ///< worst relative error of the sigmas, times and init_noise_sigma
};

/// Replays one case step by step as a user's own loop would, feeding its own states forward.
template <class Scalar, class Sampler>
replay_result replay(const Sampler& solver, const json& c) {
  replay_result r;
  const auto& traj = c["trajectory"];
  REQUIRE(solver.num_steps() == static_cast<int>(traj.size()));
  const auto sig = c["sigmas"].get<std::vector<double>>();
  for (std::size_t k = 0; k < sig.size(); ++k)
    r.times = std::max(r.times, std::abs(solver.sigma(static_cast<int>(k)) - sig[k]) / (sig[0] + 1e-300));
  r.times = std::max(r.times, std::abs(solver.initial_scale() - c["init_noise_sigma"].get<double>()) / c["init_noise_sigma"].get<double>());
  const diffuse::sample_shape shape{.batch = 2, .channels = 1, .spatial = 3};
  const auto z = c["initial_noise"].get<std::vector<double>>();
  std::vector<Scalar> x(z.size()), input(z.size()), out(z.size()), next(z.size()), noise(z.size());
  for (std::size_t i = 0; i < z.size(); ++i) x[i] = static_cast<Scalar>(z[i]) * static_cast<Scalar>(solver.initial_scale());
  auto state = solver.template make_state<Scalar>(shape);
  for (int k = 0; k < solver.num_steps(); ++k) {
    const auto& s = traj[static_cast<std::size_t>(k)];
    const double t = s["timestep"].get<double>();
    r.times = std::max(r.times, std::abs(solver.model_time(k) - t) / std::max(1.0, std::abs(t)));
    const auto c_in = static_cast<Scalar>(solver.input_scale(k));
    for (std::size_t i = 0; i < x.size(); ++i) input[i] = x[i] * c_in;
    r.trajectory = std::max(r.trajectory, relative_error(input, s["model_input"].get<std::vector<double>>()));
    fake_model<Scalar>(input, solver.model_time(k), out);
    r.trajectory = std::max(r.trajectory, relative_error(out, s["model_output"].get<std::vector<double>>()));
    const auto zs = s["noise"].get<std::vector<double>>();
    const bool noisy = solver.adds_noise(k);
    if (noisy) REQUIRE(!zs.empty());
    for (std::size_t i = 0; i < zs.size(); ++i) noise[i] = static_cast<Scalar>(zs[i]);
    diffuse::solver_buffers<Scalar> io{.x = x, .model_output = out, .x_next = next,
                                       .noise = noisy ? std::span<const Scalar>(noise) : std::span<const Scalar>()};
    solver.template step<Scalar>(k, io, shape, state);
    if (s["prev_sample"][0].is_null()) {  // diffusers' NaN (diffusers_nan_steps): diffuse takes the limit, the identity
      CHECK(next == x);
      break;
    }
    r.trajectory = std::max(r.trajectory, relative_error(next, s["prev_sample"].get<std::vector<double>>()));
    x = next;
  }
  return r;
}

diffuse::edm_options edm_options_of(const json& o) {
  diffuse::edm_options e;
  e.sigma_min = o.value("sigma_min", 0.002);
  e.sigma_max = o.value("sigma_max", 80.0);
  e.sigma_data = o.value("sigma_data", 0.5);
  e.rho = o.value("rho", 7.0);
  e.schedule = o.value("sigma_schedule", "karras") == std::string("exponential") ? diffuse::edm_sigma_schedule::exponential
                                                                                 : diffuse::edm_sigma_schedule::karras;
  e.prediction = diffuse::parse_prediction_type(o.value("prediction_type", "epsilon"));
  e.final_type = o.value("final_sigmas_type", "zero") == std::string("sigma_min") ? diffuse::final_sigma::sigma_min : diffuse::final_sigma::zero;
  return e;
}

diffuse::noise_schedule lcm_schedule_of(const json& o) {
  if (o.value("beta_schedule", "scaled_linear") == std::string("linear"))
    return diffuse::noise_schedule::linear(1000, o.value("beta_start", 0.0001), o.value("beta_end", 0.02));
  return diffuse::noise_schedule::scaled_linear(1000, o.value("beta_start", 0.00085), o.value("beta_end", 0.012));
}

template <class Scalar>
replay_result replay_case(const json& c, bool float32_tables = false) {
  const json& o = c["options"];
  const std::string family = c["family"];
  const int n = c["steps"].get<int>();
  if (family == "edm_euler") {
    const diffuse::edm_euler_options eo{.s_churn = o.value("s_churn", 0.0), .s_tmin = o.value("s_tmin", 0.0),
                                        .s_tmax = o.value("s_tmax", HUGE_VAL), .s_noise = o.value("s_noise", 1.0)};
    if (o.contains("ramp")) return replay<Scalar>(diffuse::edm_euler_sampler(edm_options_of(o), o["ramp"].get<std::vector<double>>(), eo), c);
    return replay<Scalar>(diffuse::edm_euler_sampler(edm_options_of(o), n, eo), c);
  }
  if (family == "edm_dpm") {
    diffuse::edm_dpm_solver_options d;
    d.order = o.value("solver_order", 2);
    d.algorithm = o.value("algorithm_type", "dpmsolver++") == std::string("sde-dpmsolver++") ? diffuse::dpm_algorithm::sde_dpmsolver_pp
                                                                                         : diffuse::dpm_algorithm::dpmsolver_pp;
    d.solver_type = o.value("solver_type", "midpoint") == std::string("heun") ? diffuse::dpm_solver_type::heun : diffuse::dpm_solver_type::midpoint;
    d.lower_order_final = o.value("lower_order_final", true);
    d.euler_at_final = o.value("euler_at_final", false);
    if (o.value("thresholding", false)) d.threshold = diffuse::dynamic_threshold{o["dynamic_thresholding_ratio"], o["sample_max_value"]};
    return replay<Scalar>(diffuse::edm_dpm_solver_sampler(edm_options_of(o), n, d), c);
  }
  diffuse::lcm_options l;
  l.original_inference_steps = o.value("original_inference_steps", 50);
  l.timestep_scaling = o.value("timestep_scaling", 10.0);
  l.prediction = diffuse::parse_prediction_type(o.value("prediction_type", "epsilon"));
  if (o.value("clip_sample", false)) l.clip_sample_range = o.value("clip_sample_range", 1.0);
  if (o.value("thresholding", false)) l.threshold = diffuse::dynamic_threshold{o["dynamic_thresholding_ratio"], o["sample_max_value"]};
  const auto schedule = float32_tables ? diffuse::diffusers_float32_schedule(lcm_schedule_of(o)) : lcm_schedule_of(o);
  if (o.contains("timesteps")) return replay<Scalar>(diffuse::lcm_sampler(schedule, o["timesteps"].get<std::vector<int>>(), l), c);
  return replay<Scalar>(diffuse::lcm_sampler(schedule, n, l), c);
}

}  // namespace

TEST_CASE("EDM Euler, EDM DPM-Solver++ and LCM match diffusers' float64 trajectories to 1e-12") {
  const auto fx = test::fixture("edm_lcm/edm_lcm_float64.json");
  std::map<std::string, double> worst;
  double worst_times = 0;
  int cases = 0;
  for (const auto& c : fx["cases"]) {
    const std::string name = c["name"].get<std::string>() + " N=" + std::to_string(c["steps"].get<int>());
    CAPTURE(name);
    const auto r = replay_case<double>(c);
    CHECK(r.trajectory <= 1e-12);
    CHECK(r.times <= 1e-12);
    auto& w = worst[c["family"].get<std::string>()];
    w = std::max(w, r.trajectory);
    worst_times = std::max(worst_times, r.times);
    ++cases;
  }
  std::printf("EDM / LCM vs diffusers float64 (%d cases): worst relative error EDM Euler %.3g, EDM DPM-Solver++ %.3g, LCM %.3g; "
              "sigmas and times %.3g (bound 1e-12)\n", cases, worst["edm_euler"], worst["edm_dpm"], worst["lcm"], worst_times);
}

TEST_CASE("the float path follows diffusers' verbatim float32 EDM and LCM trajectories to float32 rounding") {
  // diffusers rounds the EDM sigmas and LCM's betas / ᾱ to float32; diffuse keeps them in double (LCM: or
  // takes diffusers' float32 ᾱ with diffusers_float32_schedule). What remains is float32 rounding of the
  // arithmetic, amplified by the chain (EDM Euler's x̂ − x̂0 at σ ≈ 0.002, divided by σ̂): measured ~1.4e-6,
  // 20 float32 ulps; bound 1e-5. With diffusers' float32 ᾱ, LCM's worst is ~4e-7; bound 2e-6.
  const auto fx = test::fixture("edm_lcm/edm_lcm_float32.json");
  std::map<std::string, double> worst;
  double worst_exact_tables = 0;
  for (const auto& c : fx["cases"]) {
    const std::string name = c["name"].get<std::string>() + " N=" + std::to_string(c["steps"].get<int>());
    CAPTURE(name);
    const auto r = replay_case<float>(c);
    CHECK(r.trajectory <= 1e-5);
    auto& w = worst[c["family"].get<std::string>()];
    w = std::max(w, r.trajectory);
    if (c["family"] == "lcm") {
      const auto e = replay_case<float>(c, true);
      CHECK(e.trajectory <= 2e-6);
      worst_exact_tables = std::max(worst_exact_tables, e.trajectory);
    }
  }
  std::printf("float path vs diffusers verbatim float32: worst relative error EDM Euler %.3g, EDM DPM-Solver++ %.3g, LCM %.3g (bound 1e-5); "
              "LCM with diffusers' float32 tables %.3g (bound 2e-6)\n", worst["edm_euler"], worst["edm_dpm"], worst["lcm"], worst_exact_tables);
}

TEST_CASE("solver_from_config: EDM and LCM scheduler_config.json give the solver that matches diffusers") {
  const auto fx = test::fixture("edm_lcm/edm_lcm_float64.json");
  const std::map<std::string, std::string> classes = {
      {"edm_euler", "EDMEulerScheduler"}, {"edm_dpm", "EDMDPMSolverMultistepScheduler"}, {"lcm", "LCMScheduler"}};
  double worst = 0;
  int cases = 0;
  for (const auto& c : fx["cases"]) {
    json cfg = c["options"];
    if (cfg.contains("s_churn") || cfg.contains("ramp") || cfg.contains("timesteps")) continue;  // step() / set_timesteps() arguments
    cfg["_class_name"] = classes.at(c["family"].get<std::string>());
    cfg["_diffusers_version"] = "0.40.0.dev0";
    CAPTURE(cfg.dump());
    const auto solver = diffuse::solver_from_config(cfg.dump(), c["steps"].get<int>());
    const auto r = std::visit([&](const auto& s) { return replay<double>(s, c); }, solver);
    CHECK(r.trajectory <= 1e-12);
    worst = std::max(worst, r.trajectory);
    ++cases;
  }
  std::printf("solver_from_config over %d EDM / LCM fixture cases: worst relative error %.3g\n", cases, worst);
}

namespace {

/// A user's own loop over any solver, noise from diffuse's generator (stream step_noise_stream(k) of
/// `seed`, as solve() draws it); x is the solver's state on entry and on return.
template <class Scalar, class Sampler, class Model>
void run_loop(const Sampler& solver, Model&& model, std::vector<Scalar>& x, const diffuse::sample_shape& shape, std::uint64_t seed = 5) {
  const diffuse::normal_generator gen(seed);
  std::vector<Scalar> input(x.size()), out(x.size()), next(x.size());
  auto state = solver.template make_state<Scalar>(shape);
  for (int k = 0; k < solver.num_steps(); ++k) {
    const auto c = static_cast<Scalar>(solver.input_scale(k));
    for (std::size_t i = 0; i < x.size(); ++i) input[i] = x[i] * c;
    model(std::span<const Scalar>(input), solver.model_time(k), std::span<Scalar>(out));
    diffuse::solver_buffers<Scalar> io{.x = x, .model_output = out, .x_next = next};
    if (solver.adds_noise(k)) io.generated = diffuse::generated_noise{&gen, 0, diffuse::step_noise_stream(k)};
    solver.template step<Scalar>(k, io, shape, state);
    x.swap(next);
  }
}

double max_relative(const std::vector<double>& a, const std::vector<double>& b) {
  double scale = 0, worst = 0;
  for (double v : b) scale = std::max(scale, std::abs(v));
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / (std::abs(b[i]) + scale));
  return worst;
}

/// The raw network F whose preconditioned denoiser is the mixture's exact one: with σ = e^{4·c_noise},
/// x_σ = y/c_in, D(x_σ; σ) = E[x0 | x_σ] (the VP sample x_σ/√(σ² + 1) at ᾱ = 1/(σ² + 1)), F = (D − c_skip·x_σ)/c_out.
struct exact_edm_network {
  const diffuse::gaussian_mixture* gm;
  diffuse::edm_preconditioning p;
  void operator()(std::span<const double> y, double c_noise, std::span<double> out) const {
    const double s = std::exp(4.0 * c_noise), cin = p.c_in(s), a = 1.0 / std::sqrt(s * s + 1.0);
    std::vector<double> vp(y.size());
    for (std::size_t i = 0; i < y.size(); ++i) vp[i] = y[i] / cin * a;
    gm->denoise<double>(vp, a * a, out);
    for (std::size_t i = 0; i < y.size(); ++i) out[i] = (out[i] - p.c_skip(s) * (y[i] / cin)) / p.c_out(s);
  }
};

const diffuse::gaussian_mixture& smooth_mixture() {
  static const diffuse::gaussian_mixture gm({0.3, 0.7}, {{-1.0, 0.0}, {1.0, 0.5}}, {0.8, 0.6});
  return gm;
}

}  // namespace

TEST_CASE("identity: EDM Euler with sigma_data = 1 and v-prediction is euler_sampler's v step on the same sigmas") {
  // With σ_d = 1, EDM's c_skip = 1/(σ² + 1), c_out = −σ/√(σ² + 1) (v) and c_in = 1/√(σ² + 1) are exactly
  // Euler's v-prediction map x̂0 = x/(σ² + 1) − σ/√(σ² + 1)·v̂ and its scale_model_input, so the two chains
  // agree on any sigma list without churn. (Euler on x_σ is DDIM with η = 0 in the rescaled variable,
  // test_solver_properties: EDM Euler with these constants is the DDIM η = 0 path too.) With churn they
  // differ by design: diffusers' EDM Euler forms x̂0 at σ̂, its Euler v-prediction at σ. Bound 1e-13: the
  // two forms round differently.
  const diffuse::edm_options e{.sigma_min = 0.01, .sigma_max = 50.0, .sigma_data = 1.0, .prediction = diffuse::prediction_type::v_prediction};
  const diffuse::edm_euler_sampler edm(e, 12);
  const diffuse::euler_sampler euler(diffuse::edm_sigmas(e, 12), {.prediction = diffuse::prediction_type::v_prediction});
  const diffuse::sample_shape shape{.batch = 3, .channels = 2, .spatial = 5};
  std::vector<double> z(shape.numel());
  diffuse::fill_initial_noise<double>(z, shape, 3);
  std::vector<double> a(z), b(z);
  for (std::size_t i = 0; i < z.size(); ++i) a[i] = b[i] = 50.0 * z[i];
  run_loop<double>(edm, fake_model<double>, a, shape);
  run_loop<double>(euler, fake_model<double>, b, shape);
  CHECK(max_relative(a, b) <= 1e-13);
  for (int k = 0; k < 12; ++k) CHECK(edm.input_scale(k) == doctest::Approx(euler.input_scale(k)).epsilon(1e-15));
}

TEST_CASE("edm_denoiser drives Euler, Heun and DPM-Solver++: the same chains as the EDM solvers, Heun at order 2") {
  const auto& gm = smooth_mixture();
  const diffuse::edm_options e{.sigma_min = 0.03, .sigma_max = 80.0, .sigma_data = 0.5, .final_type = diffuse::final_sigma::zero};
  const exact_edm_network net{&gm, e.preconditioning()};
  diffuse::edm_denoiser denoiser(net, e.preconditioning());
  const diffuse::sample_shape shape{.batch = 32, .channels = 2, .spatial = 1};
  std::vector<double> z(shape.numel());
  diffuse::fill_initial_noise<double>(z, shape, 7);
  // D(x; σ) itself: c_skip·x + c_out·F(c_in·x, c_noise) is the exact denoiser again.
  {
    std::vector<double> d(z.size()), vp(z.size()), exact(z.size());
    const double s = 3.0, a = 1.0 / std::sqrt(s * s + 1.0);
    denoiser(std::span<const double>(z), s, std::span<double>(d));
    for (std::size_t i = 0; i < z.size(); ++i) vp[i] = z[i] * a;
    gm.denoise<double>(vp, a * a, exact);
    CHECK(max_relative(d, exact) <= 1e-13);
  }
  const auto sample = diffuse::prediction_type::sample;
  // Euler over the EDM list with prediction sample + the adapter = edm_euler_sampler with F.
  {
    const diffuse::euler_sampler euler(diffuse::edm_sigmas(e, 10), {.prediction = sample});
    const diffuse::edm_euler_sampler edm(e, 10);
    std::vector<double> a(z), b(z);
    for (std::size_t i = 0; i < z.size(); ++i) a[i] = b[i] = 80.0 * z[i];
    run_loop<double>(euler, diffuse::edm_solver_model(euler, denoiser), a, shape);
    run_loop<double>(edm, net, b, shape);
    CHECK(max_relative(a, b) <= 1e-12);
  }
  // DPM-Solver++ 2M in the VP variable with position labels + the adapter = edm_dpm_solver_sampler (in x_σ);
  // at the final σ = 0 the two variables coincide. Driven by solve() (initial scales 1 and √(σ_max² + 1)).
  {
    const diffuse::dpm_solver_sampler dpm(diffuse::with_position_times(diffuse::edm_sigmas(e, 10, diffuse::edm_final_rule::config_sigma_min)),
                                          {.order = 2, .prediction = sample});
    const diffuse::edm_dpm_solver_sampler edm(e, 10, {.order = 2});
    std::vector<double> a(z), b(z);
    diffuse::solve(dpm, diffuse::edm_solver_model(dpm, denoiser), std::span<double>(a), shape);
    diffuse::solve(edm, net, std::span<double>(b), shape);
    CHECK(max_relative(a, b) <= 1e-12);
  }
  // Heun with the adapter converges at order 2 (the probability-flow ODE in σ, reference: EDM DPM-Solver++ 3M,
  // 2000 steps; sigma_min final, the last step the identity; slope on N = 20 → 40 in [1.8, 2.2]).
  {
    diffuse::edm_options o = e;
    o.final_type = diffuse::final_sigma::sigma_min;
    const auto heun = [&](int n) {
      const diffuse::heun_sampler solver(diffuse::edm_sigmas(o, n), {.prediction = sample});
      std::vector<double> x(z.size());
      for (std::size_t i = 0; i < z.size(); ++i) x[i] = 80.0 * z[i];
      run_loop<double>(solver, diffuse::edm_solver_model(solver, denoiser), x, shape);
      return x;
    };
    const diffuse::edm_dpm_solver_sampler ref_solver(o, 2000, {.order = 3, .lower_order_final = false});
    std::vector<double> ref(z.size());
    for (std::size_t i = 0; i < z.size(); ++i) ref[i] = 80.0 * z[i];
    run_loop<double>(ref_solver, net, ref, shape);
    double err[4];
    const int ns[] = {5, 10, 20, 40};
    for (int i = 0; i < 4; ++i) {
      const auto x = heun(ns[i]);
      double s = 0;
      for (std::size_t j = 0; j < x.size(); ++j) s += (x[j] - ref[j]) * (x[j] - ref[j]);
      err[i] = std::sqrt(s / static_cast<double>(x.size()));
    }
    const double slope = std::log(err[2] / err[3]) / std::log(2.0);
    std::printf("Heun + edm_denoiser error at N = 5, 10, 20, 40: %.3e %.3e %.3e %.3e; slope 20 -> 40 %.2f (bound [1.8, 2.2])\n", err[0], err[1],
                err[2], err[3], slope);
    CHECK(slope >= 1.8);
    CHECK(slope <= 2.2);
  }
}

TEST_CASE("probability-flow ODE: EDM Euler converges with order 1, EDM DPM-Solver++ 2M with order 2") {
  // The exact network of the smooth mixture, Karras sigmas from 80 to 0.03 with a sigma_min final (the last
  // step the identity, so the N-step list has N − 1 steps that move), 64 points; reference EDM DPM-Solver++
  // 3M with 2000 steps. Slopes on N = 20 → 40: Euler in [0.9, 1.1], 2M in [1.8, 2.2].
  const auto& gm = smooth_mixture();
  const diffuse::edm_options e{.sigma_min = 0.03, .sigma_max = 80.0, .sigma_data = 0.5, .final_type = diffuse::final_sigma::sigma_min};
  const exact_edm_network net{&gm, e.preconditioning()};
  const diffuse::sample_shape shape{.batch = 64, .channels = 2, .spatial = 1};
  std::vector<double> z(shape.numel());
  diffuse::fill_initial_noise<double>(z, shape, 7);
  const auto start = [&] {
    std::vector<double> x(z.size());
    for (std::size_t i = 0; i < z.size(); ++i) x[i] = 80.0 * z[i];
    return x;
  };
  auto ref = start();
  run_loop<double>(diffuse::edm_dpm_solver_sampler(e, 2000, {.order = 3, .lower_order_final = false}), net, ref, shape);
  const auto rms = [&](const std::vector<double>& x) {
    double s = 0;
    for (std::size_t j = 0; j < x.size(); ++j) s += (x[j] - ref[j]) * (x[j] - ref[j]);
    return std::sqrt(s / static_cast<double>(x.size()));
  };
  const int ns[] = {5, 10, 20, 40};
  for (const int order : {1, 2}) {
    double err[4];
    for (int i = 0; i < 4; ++i) {
      auto x = start();
      if (order == 1) run_loop<double>(diffuse::edm_euler_sampler(e, ns[i]), net, x, shape);
      else run_loop<double>(diffuse::edm_dpm_solver_sampler(e, ns[i], {.order = 2, .lower_order_final = false}), net, x, shape);
      err[i] = rms(x);
    }
    const double slope = std::log(err[2] / err[3]) / std::log(2.0);
    std::printf("%s error at N = 5, 10, 20, 40: %.3e %.3e %.3e %.3e; slopes %.2f %.2f %.2f\n", order == 1 ? "EDM Euler      " : "EDM DPM++ 2M   ",
                err[0], err[1], err[2], err[3], std::log(err[0] / err[1]) / std::log(2.0), std::log(err[1] / err[2]) / std::log(2.0), slope);
    CAPTURE(order);
    CHECK(slope >= order - 0.1 * order);
    CHECK(slope <= order + 0.1 * order);
  }
}

TEST_CASE("LCM: multistep sampling with fresh noise reproduces the mixture's mode weights and spreads") {
  // An exact consistency model of a two-mode mixture (weights 0.3 / 0.7): its x0 prediction at (x_t, t) is
  // the probability-flow ODE's solution from t to 0 (DPM-Solver++ 2M, 40 geometric steps from σ_t to 0.002,
  // then to 0, on the exact x̂0). With c_skip ≈ 0 (t·timestep_scaling ≥ 190) each LCM step maps x_t to a
  // sample of the data and re-noises it to the next grid time, so the chain's result has the mixture's
  // distribution: the mode weight to 4 standard errors of 4000 chains, the spreads 0.5 and 0.3 to 10%.
  const auto schedule = diffuse::noise_schedule::scaled_linear(1000);
  const diffuse::gaussian_mixture gm({0.3, 0.7}, {{-2.0, 0.0}, {2.0, 1.0}}, {0.5, 0.3});
  const diffuse::sample_shape shape{.batch = 4000, .channels = 2, .spatial = 1};
  const auto consistency = [&](std::span<const double> x, int t, std::span<double> out) {
    const double ab = schedule.alpha_bar(t), s0 = std::sqrt((1.0 - ab) / ab);
    diffuse::sigma_list l;
    const int n = 40;
    for (int i = 0; i < n; ++i) l.sigmas.push_back(std::exp(std::log(s0) + (std::log(0.002) - std::log(s0)) * i / (n - 1)));
    l.sigmas.push_back(0.0);
    l.model_times.assign(n, 0.0);
    const diffuse::dpm_solver_sampler ode(l, {.order = 2, .prediction = diffuse::prediction_type::sample});
    std::vector<double> v(x.begin(), x.end()), x0(x.size()), next(x.size());  // the VP sample at σ_t is x_t itself
    auto state = ode.make_state<double>(shape);
    for (int k = 0; k < ode.num_steps(); ++k) {
      const double s = ode.sigma(k);
      gm.denoise<double>(v, 1.0 / (s * s + 1.0), x0);
      ode.step<double>(k, {.x = v, .model_output = x0, .x_next = next}, shape, state);
      v.swap(next);
    }
    std::copy(v.begin(), v.end(), out.begin());
  };
  for (const int n : {2, 4}) {
    const diffuse::lcm_sampler solver(schedule, n, {.prediction = diffuse::prediction_type::sample});
    // The chain starts from an exact sample of p_t at t = 999 (ᾱ = 0.0047 is not 0: pure noise there would
    // bias the weights by ~0.02 through the schedule, not through LCM).
    std::vector<double> data(shape.numel()), x(shape.numel());
    std::vector<int> labels(shape.batch);
    gm.sample_data<double>(data, labels, 20);
    diffuse::solver_img2img_noise<diffuse::lcm_sampler, double>(solver, 0, data, x, shape, 21);
    diffuse::solve(solver, consistency, std::span<double>(x), shape, {.seed = 21});
    double c0 = 0, s0 = 0, s1 = 0;
    for (std::size_t i = 0; i < shape.batch; ++i) {
      const double u = x[2 * i], v = x[2 * i + 1];
      const double d0 = (u + 2) * (u + 2) + v * v, d1 = (u - 2) * (u - 2) + (v - 1) * (v - 1);
      if (d0 < d1) {
        ++c0;
        s0 += d0;
      } else {
        s1 += d1;
      }
    }
    const double nb = static_cast<double>(shape.batch);
    const double w = c0 / nb, se = std::sqrt(0.3 * 0.7 / nb);
    const double std0 = std::sqrt(s0 / c0 / 2), std1 = std::sqrt(s1 / (nb - c0) / 2);
    std::printf("LCM %d steps (exact consistency model): mode-0 weight %.4f (0.3 +- %.4f), spreads %.3f (0.5), %.3f (0.3)\n", n, w, 4 * se, std0, std1);
    CAPTURE(n);
    CHECK(std::abs(w - 0.3) < 4 * se);
    CHECK(std::abs(std0 - 0.5) < 0.05);
    CHECK(std::abs(std1 - 0.3) < 0.03);
  }
}

TEST_CASE_TEMPLATE("EDM and LCM: the same bits whatever the batch split, thread count or vector path", Scalar, float, double) {
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
  const auto schedule = diffuse::noise_schedule::scaled_linear(1000);
  const diffuse::lcm_sampler lcm(schedule, 6);
  const diffuse::lcm_sampler lcm_scalar(schedule, 6, {.vectorize = false});
  const diffuse::lcm_sampler lcm_threshold(schedule, 6, {.threshold = diffuse::dynamic_threshold{0.9, 1.5}});
  const diffuse::edm_euler_sampler churn({}, 8, {.s_churn = 3.0});
  const diffuse::edm_euler_sampler churn_scalar({}, 8, {.s_churn = 3.0, .vectorize = false});
  const diffuse::edm_dpm_solver_sampler sde({}, 8, {.algorithm = diffuse::dpm_algorithm::sde_dpmsolver_pp});
  const auto same_split = [&](const auto& solver) {
    const auto whole = run(solver, 6, 0, 37);
    const auto first = run(solver, 2, 0, 37), rest = run(solver, 4, 2, 37);
    std::vector<Scalar> joined(first);
    joined.insert(joined.end(), rest.begin(), rest.end());
    CHECK(joined == whole);
  };
  same_split(lcm);
  same_split(lcm_threshold);
  same_split(churn);
  same_split(sde);
  CHECK(run(lcm, 3, 0, 37) == run(lcm_scalar, 3, 0, 37));
  CHECK(run(churn, 3, 0, 37) == run(churn_scalar, 3, 0, 37));
#if defined(_OPENMP)
  const int saved = omp_get_max_threads();
  for (const auto* s : {&lcm}) {
    omp_set_num_threads(1);
    const auto one = run(*s, 2, 0, 40000);  // 240K elements: the parallel chunked path
    omp_set_num_threads(3);
    const auto three = run(*s, 2, 0, 40000);
    CHECK(one == three);
  }
  omp_set_num_threads(1);
  const auto one = run(churn, 2, 0, 40000);
  omp_set_num_threads(3);
  const auto three = run(churn, 2, 0, 40000);
  omp_set_num_threads(saved);
  CHECK(one == three);
#endif
}

TEST_CASE("EDM and LCM: solve(), the EDM denoiser and a user's step loop allocate nothing after the first use") {
  const diffuse::sample_shape shape{.batch = 2, .channels = 3, .spatial = 300};
  const auto model = [](std::span<const float> x, double, std::span<float> out) {
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = 0.5f * x[i];
  };
  std::vector<float> x(shape.numel(), 0.1f);
  const auto twice = [&](const auto& solver, auto&& m) {
    diffuse::solver_workspace<float> ws;
    diffuse::solve(solver, m, std::span<float>(x), shape, {}, ws);
    const long before = test::allocations();
    diffuse::solve(solver, m, std::span<float>(x), shape, {}, ws);
    CHECK(test::allocations() == before);
  };
  twice(diffuse::edm_euler_sampler({}, 10, {.s_churn = 2.0}), model);
  twice(diffuse::edm_dpm_solver_sampler({}, 10, {.order = 2, .algorithm = diffuse::dpm_algorithm::sde_dpmsolver_pp}), model);
  twice(diffuse::edm_dpm_solver_sampler({}, 10, {.order = 3, .threshold = diffuse::dynamic_threshold{0.9, 2.0}}), model);
  twice(diffuse::lcm_sampler(diffuse::noise_schedule::scaled_linear(1000), 4, {.clip_sample_range = 1.0}), model);
  const diffuse::heun_sampler heun(diffuse::edm_sigmas({}, 10), {.prediction = diffuse::prediction_type::sample});
  diffuse::edm_denoiser denoiser(model, {});
  twice(heun, diffuse::edm_solver_model(heun, denoiser));
  // A user's own LCM loop: the steps allocate nothing.
  const diffuse::lcm_sampler lcm(diffuse::noise_schedule::scaled_linear(1000), 4);
  auto state = lcm.make_state<float>(shape);
  std::vector<float> out(shape.numel()), next(shape.numel()), noise(shape.numel(), 0.0f);
  const long before = test::allocations();
  for (int k = 0; k < lcm.num_steps(); ++k) {
    model(x, lcm.model_time(k), out);
    lcm.step<float>(k, {.x = x, .model_output = out, .x_next = next, .noise = lcm.adds_noise(k) ? std::span<const float>(noise) : std::span<const float>()},
                    shape, state);
    x.swap(next);
  }
  CHECK(test::allocations() == before);
}

TEST_CASE("EDM and LCM: bad input is a diffuse::error that says what was expected") {
  using diffuse::edm_options;
  const double nan = std::nan("");
  test::check_error([&] { diffuse::edm_euler_sampler(edm_options{.sigma_data = 0.0}, 10); }, {"[diffuse.sampler]", "sigma_data = 0", "expected a finite value > 0"});
  test::check_error([&] { diffuse::edm_euler_sampler(edm_options{.sigma_data = nan}, 10); }, {"sigma_data = nan"});
  test::check_error([&] { diffuse::edm_euler_sampler(edm_options{.sigma_min = 80.0, .sigma_max = 80.0}, 10); },
                    {"sigma_min = 80, sigma_max = 80", "expected finite 0 < sigma_min < sigma_max"});
  test::check_error([&] { diffuse::edm_dpm_solver_sampler(edm_options{.sigma_min = 0.0}, 10); }, {"sigma_min = 0", "0 < sigma_min < sigma_max"});
  test::check_error([&] { diffuse::edm_dpm_solver_sampler(edm_options{.sigma_max = nan}, 10); }, {"sigma_max = nan"});
  test::check_error([&] { diffuse::edm_euler_sampler(edm_options{.rho = 0.0}, 10); }, {"rho = 0", "expected a finite value > 0"});
  test::check_error([&] { diffuse::edm_euler_sampler(edm_options{.rho = nan}, 10); }, {"rho = nan"});
  test::check_error([&] { diffuse::edm_euler_sampler(edm_options{.prediction = diffuse::prediction_type::sample}, 10); },
                    {"expected epsilon or v_prediction"});
  test::check_error([&] { diffuse::edm_euler_sampler(edm_options{}, 0); }, {"num_inference_steps = 0", "expected 1 <= N"});
  test::check_error([&] { diffuse::edm_euler_sampler(edm_options{}, std::vector<double>{0.0, 0.5, 0.5}); }, {"EDM sigma 2", "strictly decreasing"});
  test::check_error([&] { diffuse::edm_euler_sampler(edm_options{}, 10, {.s_churn = -1.0}); }, {"s_churn = -1", "expected finite s_churn >= 0"});
  test::check_error([&] { diffuse::edm_dpm_solver_sampler(edm_options{}, 10, {.order = 4}); }, {"order = 4", "expected solver_order 1, 2 or 3"});
  test::check_error([&] { diffuse::edm_dpm_solver_sampler(edm_options{}, 10, {.algorithm = diffuse::dpm_algorithm::dpmsolver}); },
                    {"noise-form algorithm", "expected dpmsolver++ or sde-dpmsolver++"});
  test::check_error([&] { diffuse::edm_dpm_solver_sampler(edm_options{}, 10, {.order = 3, .algorithm = diffuse::dpm_algorithm::sde_dpmsolver_pp}); },
                    {"sde-dpmsolver++ with solver_order 3", "expected solver_order 1 or 2"});
  test::check_error([&] { diffuse::edm_dpm_solver_sampler(edm_options{}, 10, {.threshold = diffuse::dynamic_threshold{1.5, 1.0}}); },
                    {"dynamic threshold ratio = 1.5"});
  // The denoiser and its solver adapter.
  const auto net = [](std::span<const double> x, double, std::span<double> out) { std::copy(x.begin(), x.end(), out.begin()); };
  diffuse::edm_denoiser denoiser(net, {});
  std::vector<double> a(4, 1.0), b(3, 0.0);
  test::check_error([&] { denoiser(std::span<const double>(a), 0.0, std::span<double>(a)); }, {"sigma = 0", "expected a finite sigma > 0"});
  test::check_error([&] { denoiser(std::span<const double>(a), 1.0, std::span<double>(b)); }, {"4 elements and its output 3", "expected the same"});
  test::check_error([&] { denoiser(std::span<const double>(a), 1.0, std::span<double>(a)); }, {"overlaps its input", "expected separate buffers"});
  test::check_error([&] { diffuse::edm_denoiser bad(net, {.sigma_data = -1.0}); }, {"sigma_data = -1"});
  const diffuse::euler_sampler eps(diffuse::edm_sigmas({}, 5), {});
  test::check_error([&] { diffuse::edm_solver_model m(eps, denoiser); }, {"prediction_type::sample"});
  const diffuse::heun_sampler heun(diffuse::edm_sigmas({}, 5), {.prediction = diffuse::prediction_type::sample});
  const diffuse::edm_solver_model m(heun, denoiser);
  test::check_error([&] { m(std::span<const double>(a), 123.0, std::span<double>(b)); }, {"model time 123 is not a position"});
  auto clash = diffuse::edm_sigmas({}, 5);
  clash.model_times.assign(5, 0.0);
  const diffuse::euler_sampler clashing(clash, {.prediction = diffuse::prediction_type::sample});
  test::check_error([&] { diffuse::edm_solver_model c(clashing, denoiser); }, {"positions with model time 0 have sigmas", "one sigma per model time"});
  // LCM.
  const auto schedule = diffuse::noise_schedule::scaled_linear(1000);
  test::check_error([&] { diffuse::lcm_sampler(schedule, 51); }, {"[diffuse.timesteps]", "num_inference_steps = 51", "original_inference_steps = 50"});
  test::check_error([&] { diffuse::lcm_sampler(schedule, 0); }, {"num_inference_steps = 0"});
  test::check_error([&] { diffuse::lcm_sampler(schedule, 4, {.original_inference_steps = 1001}); }, {"original_inference_steps = 1001", "<= 1000"});
  test::check_error([&] { diffuse::lcm_sampler(schedule, 4, {.original_inference_steps = 0}); }, {"original_inference_steps = 0"});
  test::check_error([&] { diffuse::lcm_sampler(schedule, 4, {.timestep_scaling = nan}); }, {"timestep_scaling = nan", "expected a finite value >= 0"});
  test::check_error([&] { diffuse::lcm_sampler(schedule, 4, {.clip_sample_range = 0.0}); }, {"clip_range = 0", "expected a finite value > 0"});
  test::check_error([&] { diffuse::lcm_sampler(schedule, 4, {.prediction = diffuse::prediction_type::previous_x}); }, {"got previous_x"});
  test::check_error([&] { diffuse::lcm_sampler(schedule, std::vector<int>{500, 700}, {}); }, {"entry 1 = 700 follows 500", "strictly descending"});
  test::check_error([&] { diffuse::lcm_sampler(schedule, std::vector<int>{1000, 500}, {}); }, {"entry 0 = 1000 is out of range"});
  test::check_error([&] { diffuse::lcm_sampler(schedule, std::vector<int>{500, -1}, {}); }, {"entry 1 = -1 is out of range"});
  // A NaN from the model is a [diffuse.numeric] error naming the step.
  {
    const diffuse::lcm_sampler lcm(schedule, 4);
    const diffuse::sample_shape shape{.batch = 1, .channels = 1, .spatial = 3};
    std::vector<double> x(3, 0.5);
    test::check_error([&] {
      diffuse::solve(lcm, [&](std::span<const double>, int, std::span<double> out) { std::fill(out.begin(), out.end(), nan); }, std::span<double>(x), shape);
    }, {"[diffuse.numeric]", "NaN in the model output at step 0 (t = 999)"});
    const diffuse::edm_euler_sampler edm({}, 4);
    test::check_error([&] {
      diffuse::solve(edm, [&](std::span<const double>, double, std::span<double> out) { std::fill(out.begin(), out.end(), nan); }, std::span<double>(x), shape);
    }, {"[diffuse.numeric]", "NaN in the model output at step 0"});
  }
  // solver_from_config refuses invalid EDM / LCM values with the key named.
  const auto cfg = [](const char* cls, const std::string& extra) { return std::string("{\"_class_name\": \"") + cls + "\"" + extra + "}"; };
  test::check_error([&] { (void)diffuse::solver_from_config(cfg("EDMEulerScheduler", ", \"sigma_data\": 0"), 10); }, {"sigma_data = 0"});
  test::check_error([&] { (void)diffuse::solver_from_config(cfg("EDMEulerScheduler", ", \"sigma_min\": 100"), 10); }, {"sigma_min = 100", "sigma_max = 80"});
  test::check_error([&] { (void)diffuse::solver_from_config(cfg("EDMEulerScheduler", ", \"rho\": -7"), 10); }, {"rho = -7"});
  test::check_error([&] { (void)diffuse::solver_from_config(cfg("EDMEulerScheduler", ", \"sigma_schedule\": \"beta\""), 10); },
                    {"[diffuse.io]", "sigma_schedule \"beta\" is unknown", "expected karras or exponential"});
  test::check_error([&] { (void)diffuse::solver_from_config(cfg("EDMEulerScheduler", ", \"prediction_type\": \"sample\""), 10); },
                    {"prediction_type \"sample\" with EDMEulerScheduler", "expected epsilon or v_prediction"});
  test::check_error([&] { (void)diffuse::solver_from_config(cfg("EDMEulerScheduler", ", \"final_sigmas_type\": \"one\""), 10); },
                    {"final_sigmas_type \"one\" is unknown"});
  test::check_error([&] { (void)diffuse::solver_from_config(cfg("EDMDPMSolverMultistepScheduler", ", \"algorithm_type\": \"dpmsolver\""), 10); },
                    {"algorithm_type \"dpmsolver\" is not implemented for EDMDPMSolverMultistepScheduler"});
  test::check_error([&] { (void)diffuse::solver_from_config(cfg("EDMDPMSolverMultistepScheduler", ", \"algorithm_type\": \"magic\""), 10); },
                    {"algorithm_type \"magic\"", "expected dpmsolver++ or sde-dpmsolver++"});
  test::check_error([&] { (void)diffuse::solver_from_config(cfg("EDMDPMSolverMultistepScheduler", ", \"solver_type\": \"rk4\""), 10); },
                    {"solver_type \"rk4\" is unknown"});
  test::check_error([&] { (void)diffuse::solver_from_config(cfg("EDMDPMSolverMultistepScheduler", ", \"sigma_max\": \"80\""), 10); },
                    {"\"sigma_max\" is \"80\"", "expected a number"});
  test::check_error([&] { (void)diffuse::solver_from_config(cfg("LCMScheduler", ", \"original_inference_steps\": 2000"), 4); },
                    {"original_inference_steps = 2000"});
  test::check_error([&] { (void)diffuse::solver_from_config(cfg("LCMScheduler", ", \"original_inference_steps\": 2.5"), 4); },
                    {"\"original_inference_steps\" is 2.5", "expected an integer"});
  test::check_error([&] { (void)diffuse::solver_from_config(cfg("LCMScheduler", ", \"prediction_type\": \"flow_prediction\""), 4); },
                    {"prediction_type \"flow_prediction\" with LCMScheduler"});
  test::check_error([&] { (void)diffuse::solver_from_config(cfg("LCMScheduler", ", \"timestep_scaling\": -1"), 4); }, {"timestep_scaling = -1"});
  test::check_error([&] { (void)diffuse::solver_from_config(cfg("LCMScheduler", ", \"timestep_spacing\": \"random\""), 4); },
                    {"timestep_spacing \"random\" is unknown"});
  test::check_error([&] { (void)diffuse::solver_from_config(cfg("LCMScheduler", ", \"set_alpha_to_one\": 1"), 4); },
                    {"\"set_alpha_to_one\" is 1", "expected true or false"});
}
