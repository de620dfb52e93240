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

/// The fixtures' closed-form model: 0.9·tanh(x) + 0.1·sin(0.01·t + 0.5·i).
template <class Scalar>
void fake_model(std::span<const Scalar> x, double t, std::span<Scalar> out) {
  for (std::size_t i = 0; i < x.size(); ++i)
    out[i] = static_cast<Scalar>(Scalar(0.9) * std::tanh(x[i]) +
                                 Scalar(0.1) * std::sin(Scalar(0.01) * static_cast<Scalar>(t) + Scalar(0.5) * static_cast<Scalar>(i)));
}

/// |a − e| / (|e| + max|e|), the SPEC §11 measure, worst over the tensor.
template <class A>
double relative_error(const A& actual, const std::vector<double>& expected) {
  double scale = 0, worst = 0;
  for (double e : expected) scale = std::max(scale, std::abs(e));
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double d = std::abs(static_cast<double>(actual[i]) - expected[i]), den = std::abs(expected[i]) + scale;
    worst = std::max(worst, den > 0 ? d / den : d);
  }
  return worst;
}

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
