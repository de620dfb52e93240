// The solvers of include/diffuse/samplers/ against diffusers' own schedulers (chained trajectories from
// tools/make_solver_fixtures.py), and the sigma layer's options.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <variant>
#include <cstdio>
#include <string>
#include <vector>

#include "diffuse/diffusers_exact.hpp"
#include "diffuse/samplers/dpm_solver.hpp"
#include "diffuse/samplers/from_config.hpp"
#include "diffuse/samplers/euler.hpp"
#include "diffuse/samplers/heun.hpp"
#include "diffuse/samplers/unipc.hpp"
#include "support.hpp"

namespace {

using nlohmann::json;

diffuse::noise_schedule base_schedule_of(const json& options) {
  const std::string name = options.value("schedule", "linear");
  if (name == "scaled_linear") return diffuse::noise_schedule::scaled_linear(1000, 0.00085, 0.012);
  if (name == "cosine") return diffuse::noise_schedule::cosine(1000);
  return diffuse::noise_schedule::linear(1000, 1e-4, 0.02);
}

diffuse::noise_schedule schedule_of(const json& options) {
  const auto s = base_schedule_of(options);
  if (!options.value("rescale_betas_zero_snr", false)) return s;
  return s.rescaled_zero_terminal_snr();
}

diffuse::sigma_options sigma_options_of(const json& o) {
  diffuse::sigma_options s;
  const std::string spacing = o.value("timestep_spacing", "linspace");
  s.spacing = spacing == "leading" ? diffuse::timestep_spacing::leading
              : spacing == "trailing" ? diffuse::timestep_spacing::trailing
                                      : diffuse::timestep_spacing::linspace;
  s.steps_offset = o.value("steps_offset", 0);
  s.kind = diffuse::sigma_kind_from_flags(o.value("use_karras_sigmas", false), o.value("use_exponential_sigmas", false),
                                          o.value("use_lu_lambdas", false), o.value("use_beta_sigmas", false));
  if (o.contains("sigma_min")) s.sigma_min = o["sigma_min"].get<double>();
  if (o.contains("sigma_max")) s.sigma_max = o["sigma_max"].get<double>();
  s.final_type = o.value("final_sigmas_type", "zero") == std::string("sigma_min") ? diffuse::final_sigma::sigma_min : diffuse::final_sigma::zero;
  if (o.contains("lambda_min_clipped")) s.lambda_min_clipped = o["lambda_min_clipped"].get<double>();
  if (o.value("interpolation_type", "linear") == std::string("log_linear")) s.interpolation = diffuse::sigma_interpolation::log_linear;
  return s;
}

diffuse::prediction_type prediction_of(const json& o) { return diffuse::parse_prediction_type(o.value("prediction_type", "epsilon")); }

using test::fake_model;
using test::relative_error;

struct replay_result {
  double trajectory = 0;  ///< worst relative error of prev_sample over the chain
  double times = 0;       ///< worst relative error of the timesteps and sigmas
};

/// Replays one fixture case step by step, as a user's own loop would (the solver state it owns), feeding
/// its own states forward; compares the model input, time, output and prev_sample of every step.
template <class Scalar, class Sampler>
replay_result replay(const Sampler& solver, const json& c) {
  replay_result r;
  const auto& traj = c["trajectory"];
  REQUIRE(solver.num_steps() == static_cast<int>(traj.size()));
  const auto sig = c["sigmas"].get<std::vector<double>>();
  // (diffusers' Euler log_linear list carries one unused σ after the end.)
  for (int k = 0; k < std::min(static_cast<int>(sig.size()), solver.num_steps() + 1); ++k) r.times = std::max(r.times, std::abs(solver.sigma(k) - sig[static_cast<std::size_t>(k)]) / (sig[0] + 1e-300));
  r.times = std::max(r.times, std::abs(solver.initial_scale() - c["init_noise_sigma"].get<double>()) / c["init_noise_sigma"].get<double>());
  const diffuse::sample_shape shape{.batch = 2, .channels = 1, .spatial = 3};
  const auto z = c["initial_noise"].get<std::vector<double>>();
  std::vector<Scalar> x(z.size()), input(z.size()), out(z.size()), next(z.size()), noise(z.size());
  for (std::size_t i = 0; i < z.size(); ++i) x[i] = static_cast<Scalar>(z[i]) * static_cast<Scalar>(solver.initial_scale());
  auto state = solver.template make_state<Scalar>(shape);
  for (int k = 0; k < solver.num_steps(); ++k) {
    const auto& s = traj[static_cast<std::size_t>(k)];
    const double t = s["timestep"].get<double>();
    r.times = std::max(r.times, std::abs(solver.model_time(k) - t) / 1000.0);
    const auto c_in = static_cast<Scalar>(solver.input_scale(k));
    for (std::size_t i = 0; i < x.size(); ++i) input[i] = x[i] * c_in;
    r.trajectory = std::max(r.trajectory, relative_error(input, s["model_input"].get<std::vector<double>>()));
    fake_model<Scalar>(input, solver.model_time(k), out);
    r.trajectory = std::max(r.trajectory, relative_error(out, s["model_output"].get<std::vector<double>>()));
    const auto zs = s["noise"].get<std::vector<double>>();
    // diffusers also hands the SDE step noise on its last step into σ = 0, where it multiplies it by 0.
    const bool noisy = solver.adds_noise(k);
    if (noisy) REQUIRE(!zs.empty());
    for (std::size_t i = 0; i < zs.size(); ++i) noise[i] = static_cast<Scalar>(zs[i]);
    diffuse::solver_buffers<Scalar> io{.x = x, .model_output = out, .x_next = next,
                                       .noise = noisy ? std::span<const Scalar>(noise) : std::span<const Scalar>()};
    solver.template step<Scalar>(k, io, shape, state);
    r.trajectory = std::max(r.trajectory, relative_error(next, s["prev_sample"].get<std::vector<double>>()));
    x = next;
  }
  return r;
}

/// diffusers builds Euler's log_linear sigmas (torch.linspace) and continuous times (torch.Tensor) in
/// torch's default dtype, float32, even where every dtype literal says float64: those cases can match the
/// float64 variant only to float32 rounding, ~1e-7.
/// The fixture also holds DDPMScheduler / DDIMScheduler cases (tests/test_diffusers_exact.cpp replays them).
bool solver_case(const json& c) { return c["family"] != "ddpm" && c["family"] != "ddim"; }

bool float32_lists(const json& c) {
  const std::string name = c["name"];
  return name == "euler_log_linear" || name == "euler_continuous_v";
}

/// float32_tables: diffusers' float32 ᾱ (diffusers_float32_schedule), the diffusers-exact mode.
template <class Scalar>
replay_result replay_case(const json& c, bool float32_tables = false) {
  const json& o = c["options"];
  const auto schedule = float32_tables ? diffuse::diffusers_float32_schedule(schedule_of(o)) : schedule_of(o);
  const int n = c["steps"].get<int>();
  const std::string family = c["family"];
  if (family == "dpm") {
    diffuse::dpm_solver_options d;
    d.order = o.value("solver_order", 2);
    const std::string algo = o.value("algorithm_type", "dpmsolver++");
    d.algorithm = algo == "sde-dpmsolver++" ? diffuse::dpm_algorithm::sde_dpmsolver_pp
                  : algo == "dpmsolver"     ? diffuse::dpm_algorithm::dpmsolver
                  : algo == "sde-dpmsolver" ? diffuse::dpm_algorithm::sde_dpmsolver
                                            : diffuse::dpm_algorithm::dpmsolver_pp;
    d.solver_type = o.value("solver_type", "midpoint") == std::string("heun") ? diffuse::dpm_solver_type::heun : diffuse::dpm_solver_type::midpoint;
    d.prediction = prediction_of(o);
    d.lower_order_final = o.value("lower_order_final", true);
    d.euler_at_final = o.value("euler_at_final", false);
    if (o.value("thresholding", false))
      d.threshold = diffuse::dynamic_threshold{o.value("dynamic_thresholding_ratio", 0.995), o.value("sample_max_value", 1.0)};
    return replay<Scalar>(diffuse::dpm_solver_sampler(schedule, n, sigma_options_of(o), d), c);
  }
  if (family == "euler") {
    diffuse::euler_options e;
    e.prediction = prediction_of(o);
    e.s_churn = o.value("s_churn", 0.0);
    e.s_tmin = o.value("s_tmin", 0.0);
    e.s_tmax = o.value("s_tmax", HUGE_VAL);
    e.continuous_timesteps = o.value("timestep_type", "discrete") == std::string("continuous");
    return replay<Scalar>(diffuse::euler_sampler(schedule, n, sigma_options_of(o), e), c);
  }
  if (family == "unipc") {
    diffuse::unipc_options u;
    u.order = o.value("solver_order", 2);
    u.variant = o.value("solver_type", "bh2") == std::string("bh1") ? diffuse::unipc_variant::bh1 : diffuse::unipc_variant::bh2;
    u.prediction = prediction_of(o);
    u.predict_x0 = o.value("predict_x0", true);
    u.lower_order_final = o.value("lower_order_final", true);
    u.disable_corrector = o.value("disable_corrector", std::vector<int>{});
    if (o.value("thresholding", false))
      u.threshold = diffuse::dynamic_threshold{o.value("dynamic_thresholding_ratio", 0.995), o.value("sample_max_value", 1.0)};
    return replay<Scalar>(diffuse::unipc_sampler(schedule, n, sigma_options_of(o), u), c);
  }
  if (family == "heun") {
    diffuse::heun_options h;
    h.prediction = prediction_of(o);
    if (o.value("clip_sample", false)) h.clip_sample_range = o.value("clip_sample_range", 1.0);
    return replay<Scalar>(diffuse::heun_sampler(schedule, n, sigma_options_of(o), h), c);
  }
  return replay<Scalar>(diffuse::euler_ancestral_sampler(schedule, n, sigma_options_of(o), {.prediction = prediction_of(o)}), c);
}

}  // namespace

TEST_CASE("DPM-Solver++, UniPC, Euler, Euler ancestral and Heun match diffusers' float64 trajectories to 1e-12") {
  const auto fx = test::fixture("solvers/solvers_float64.json");
  double worst = 0, worst_times = 0, worst_float32_lists = 0;
  int cases = 0;
  std::string worst_name;
  std::vector<std::string> above;  // the cases above 1e-14
  for (const auto& c : fx["cases"]) {
    if (!solver_case(c)) continue;
    const std::string name = c["name"].get<std::string>() + " N=" + std::to_string(c["steps"].get<int>());
    CAPTURE(name);
    ++cases;
    const auto r = replay_case<double>(c);
    if (float32_lists(c)) {
      CHECK(r.trajectory <= 1e-6);
      CHECK(r.times <= 1e-6);
      worst_float32_lists = std::max(worst_float32_lists, std::max(r.trajectory, r.times));
      continue;
    }
    CHECK(r.trajectory <= 1e-12);
    CHECK(r.times <= 1e-12);
    if (r.trajectory > 1e-14) above.push_back(name);
    if (r.trajectory > worst) {
      worst = r.trajectory;
      worst_name = name;
    }
    worst_times = std::max(worst_times, r.times);
  }
  std::printf("solvers vs diffusers float64 (%d cases): worst relative error %.3g (%s); sigmas and times %.3g; Euler log_linear "
              "and continuous-time cases %.3g (bound 1e-6)\n", cases, worst, worst_name.c_str(), worst_times, worst_float32_lists);
  std::string list;
  for (const auto& a : above) list += " " + a + ";";
  std::printf("  cases above 1e-14:%s\n", list.c_str());
}

TEST_CASE("the float path follows diffusers' verbatim float32 trajectories to float rounding") {
  const auto fx = test::fixture("solvers/solvers_float32.json");
  double worst = 0, worst_heun = 0;
  for (const auto& c : fx["cases"]) {
    if (!solver_case(c)) continue;
    CAPTURE(c["name"].get<std::string>());
    CAPTURE(c["steps"].get<int>());
    const auto r = replay_case<float>(c);
    // Heun's corrector divides by σ_{j+1}; on linspace lists the last one is σ_0 ≈ 0.01, so diffusers'
    // float32 error in σ_0 (~6e-4 relative) reaches the result amplified by |dt|/σ_0 (~1e3).
    const bool heun = c["family"] == "heun";
    CHECK(r.trajectory <= (heun ? 0.1 : 3e-3));
    (heun ? worst_heun : worst) = std::max(heun ? worst_heun : worst, r.trajectory);
  }
  // Not a bit-exact mode: diffusers rounds betas and ᾱ to float32 and forms 1 − ᾱ there, which near
  // t = 0 (ᾱ ≈ 0.9999) puts a relative error of up to ~6e-4 into σ_t; diffuse keeps its tables in double.
  std::printf("float path vs diffusers verbatim float32: worst relative error %.3g (bound 3e-3, set by diffusers' "
              "float32 sigma table near t = 0); Heun %.3g (bound 0.1)\n", worst, worst_heun);
}

TEST_CASE("diffusers-exact tables: the float path follows diffusers' verbatim float32 trajectories to float32 rounding") {
  // With diffusers_float32_schedule the σ table carries diffusers' own float32 ᾱ, so what is left is the
  // float32 rounding of the steps' arithmetic (diffusers' in float32 tensors, diffuse's coefficients in
  // double applied to float), amplified by the formulas as in the double test.
  const auto fx = test::fixture("solvers/solvers_float32.json");
  double worst = 0, worst_default = 0;
  std::string worst_name;
  for (const auto& c : fx["cases"]) {
    if (!solver_case(c)) continue;
    const std::string name = c["name"].get<std::string>() + " N=" + std::to_string(c["steps"].get<int>());
    CAPTURE(name);
    const auto r = replay_case<float>(c, true);
    if (r.trajectory > worst) {
      worst = r.trajectory;
      worst_name = name;
    }
    worst_default = std::max(worst_default, replay_case<float>(c).trajectory);
  }
  // 1e-4: float32's 6e-8 times the ~1.5e3 amplification the double test measures in UniPC's noise form
  // and Heun at N = 2 (1.6e-13 there from double's 1.1e-16).
  CHECK(worst <= 1e-4);
  CHECK(worst < worst_default / 10);  // the exact tables are what closes the gap
  std::printf("float path with diffusers' float32 tables vs diffusers verbatim float32: worst relative error %.3g (%s; bound 1e-4), "
              "with diffuse's double tables %.3g\n", worst, worst_name.c_str(), worst_default);
}

TEST_CASE("solver_from_config: a scheduler_config.json of each class gives the solver that matches diffusers") {
  // Every fixture case as the scheduler_config.json diffusers would save for it (save_config writes the
  // constructor's arguments), replayed through the variant solver_from_config returns.
  const auto fx = test::fixture("solvers/solvers_float64.json");
  const std::map<std::string, std::string> classes = {{"dpm", "DPMSolverMultistepScheduler"}, {"unipc", "UniPCMultistepScheduler"},
                                                      {"euler", "EulerDiscreteScheduler"}, {"euler_ancestral", "EulerAncestralDiscreteScheduler"},
                                                      {"heun", "HeunDiscreteScheduler"}};
  double worst = 0;
  int cases = 0;
  for (const auto& c : fx["cases"]) {
    if (!solver_case(c)) continue;
    json cfg = c["options"];
    if (cfg.contains("s_churn")) continue;  // step() arguments, not config keys
    const std::string schedule = cfg.value("schedule", "linear");
    cfg.erase("schedule");
    cfg["_class_name"] = classes.at(c["family"].get<std::string>());
    cfg["_diffusers_version"] = "0.40.0.dev0";
    cfg["num_train_timesteps"] = 1000;
    cfg["beta_schedule"] = schedule == "cosine" ? "squaredcos_cap_v2" : schedule;
    cfg["beta_start"] = schedule == "scaled_linear" ? 0.00085 : 0.0001;
    cfg["beta_end"] = schedule == "scaled_linear" ? 0.012 : 0.02;
    CAPTURE(cfg.dump());
    const auto solver = diffuse::solver_from_config(cfg.dump(), c["steps"].get<int>());
    const auto r = std::visit([&](const auto& s) { return replay<double>(s, c); }, solver);
    if (float32_lists(c)) {
      CHECK(r.trajectory <= 1e-6);
      continue;
    }
    CHECK(r.trajectory <= 1e-12);
    worst = std::max(worst, r.trajectory);
    ++cases;
  }
  std::printf("solver_from_config over %d fixture cases: worst relative error %.3g\n", cases, worst);
}

TEST_CASE("solver_from_config: unknown classes and unsupported values are errors that say what is expected") {
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "LMSDiscreteScheduler"})", 10); },
                    {"[diffuse.io]", "_class_name \"LMSDiscreteScheduler\" is not a solver diffuse implements",
                     "DPMSolverMultistepScheduler, UniPCMultistepScheduler, EulerDiscreteScheduler"});
  test::check_error([] { (void)diffuse::solver_from_config(R"({"beta_schedule": "linear"})", 10); }, {"_class_name \"\" is not a solver"});
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "DDIMScheduler"})", 10); }, {"ddim_sampler"});
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "UniPCMultistepScheduler", "use_flow_sigmas": true, "use_karras_sigmas": true})", 10); },
                    {"use_flow_sigmas = true with Karras"});
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "DPMSolverMultistepScheduler", "use_flow_sigmas": true,
                                                              "use_dynamic_shifting": true})", 10); },
                    {"use_dynamic_shifting = true needs mu", "dpm_solver_flow_sigmas"});
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "DPMSolverMultistepScheduler", "prediction_type": "flow_prediction"})", 10); },
                    {"without use_flow_sigmas = true"});
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "UniPCMultistepScheduler", "use_flow_sigmas": true,
                                                              "prediction_type": "flow_prediction", "predict_x0": false})", 10); },
                    {"predict_x0 = false"});
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "EulerDiscreteScheduler", "use_flow_sigmas": true,
                                                              "prediction_type": "flow_prediction"})", 10); },
                    {"flow_prediction", "not supported"});
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver"})", 10); },
                    {"algorithm dpmsolver with a final sigma of 0", "expected final_sigmas_type sigma_min"});
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "sde-dpmsolver",
                                                              "final_sigmas_type": "sigma_min", "solver_order": 3})", 10); },
                    {"sde-dpmsolver with order 3"});
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpm"})", 10); },
                    {"algorithm_type \"dpm\" is unknown"});
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "DPMSolverMultistepScheduler", "solver_order": 4})", 10); },
                    {"order = 4", "expected solver_order 1, 2 or 3"});
  test::check_error(
      [] { (void)diffuse::solver_from_config(R"({"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": true, "use_exponential_sigmas": true})", 10); },
      {"more than one of use_karras_sigmas"});
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "EulerDiscreteScheduler", "interpolation_type": "cubic"})", 10); },
                    {"interpolation_type \"cubic\" is unknown; expected linear or log_linear"});
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "UniPCMultistepScheduler", "solver_order": "two"})", 10); },
                    {"\"solver_order\" is \"two\"; expected a number"});
  test::check_error([] { (void)diffuse::solver_from_config(R"({"_class_name": "HeunDiscreteScheduler", "prediction_type": "flow_prediction"})", 10); },
                    {"flow_prediction"});
  test::check_error([] { (void)diffuse::load_solver("/nonexistent/scheduler_config.json", 10); }, {"cannot open"});
}
