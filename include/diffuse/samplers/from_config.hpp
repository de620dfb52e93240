#pragma once
/// \file
/// solver_from_config(): a diffusers scheduler_config.json whose `_class_name` is one of the solver
/// classes, and a step count, turned into a ready solver (a std::variant of the samplers/ solvers).
///
/// Example:
/// \code
/// auto solver = diffuse::load_solver("model/scheduler/scheduler_config.json", 20);
/// auto model = [&](std::span<const float> x, double t, std::span<float> out) { net(x, t, out); };
/// std::visit([&](const auto& s) { diffuse::solve(s, model, std::span<float>(x), shape); }, solver);
/// \endcode
/// A model driven through the variant must take `double t` (the Euler family's times are fractional).
/// FlowMatchEulerDiscreteScheduler configs give a flow_euler_sampler (flow_solver_from_config when the
/// config uses dynamic shifting and needs μ), FlowMatchHeunDiscreteScheduler configs a flow_heun_sampler.

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "diffuse/detail/json.hpp"
#include "diffuse/error.hpp"
#include "diffuse/io/scheduler_config.hpp"
#include "diffuse/samplers/dpm_solver.hpp"
#include "diffuse/samplers/edm.hpp"
#include "diffuse/samplers/euler.hpp"
#include "diffuse/samplers/flow_euler.hpp"
#include "diffuse/samplers/flow_heun.hpp"
#include "diffuse/samplers/flow_sigmas.hpp"
#include "diffuse/samplers/heun.hpp"
#include "diffuse/samplers/lcm.hpp"
#include "diffuse/samplers/sigmas.hpp"
#include "diffuse/samplers/unipc.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// Any solver a scheduler_config.json can name.
using any_solver = std::variant<dpm_solver_sampler, unipc_sampler, euler_sampler, euler_ancestral_sampler, heun_sampler, flow_euler_sampler,
                                flow_heun_sampler, edm_euler_sampler, edm_dpm_solver_sampler, lcm_sampler>;

/// The diffusers classes solver_from_config() accepts, as its error message lists them.
inline constexpr const char* supported_solver_classes =
    "DPMSolverMultistepScheduler, UniPCMultistepScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, "
    "HeunDiscreteScheduler, FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler, EDMEulerScheduler, EDMDPMSolverMultistepScheduler, LCMScheduler";

namespace detail {

/// Typed reads of one scheduler_config.json object: a key that is absent or null gives the fallback,
/// a value of another type is a diffuse::error (io) naming the key and the type expected.
struct config_reader {
  const nlohmann::json& j;    ///< the parsed object
  const std::string& origin;  ///< the name used in error messages

  [[noreturn]] void bad(const std::string& s) const { fail(error_kind::io, origin, ": ", s); }
  bool has(const char* key) const { return j.contains(key) && !j[key].is_null(); }
  bool flag(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!j[key].is_boolean()) bad(cat("\"", key, "\" is ", j[key].dump(), "; expected true or false"));
    return j[key].get<bool>();
  }
  double number(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    if (!j[key].is_number()) bad(cat("\"", key, "\" is ", j[key].dump(), "; expected a number"));
    return j[key].get<double>();
  }
  std::string text(const char* key, const char* fallback) const {
    if (!has(key)) return fallback;
    if (!j[key].is_string()) bad(cat("\"", key, "\" is ", j[key].dump(), "; expected a string"));
    return j[key].get<std::string>();
  }
  int integer(const char* key, int fallback) const {
    const double v = number(key, fallback);
    if (v != std::floor(v) || std::abs(v) > 1e6) bad(cat("\"", key, "\" is ", v, "; expected an integer"));
    return static_cast<int>(v);
  }
};

}  // namespace detail

/// The flow_euler_sampler a FlowMatchEulerDiscreteScheduler scheduler_config.json describes, for `steps` steps.
///
/// Keys read: num_train_timesteps, shift, use_dynamic_shifting, time_shift_type, shift_terminal (0 or null:
/// none, as diffusers' truth test), invert_sigmas, stochastic_sampling; prediction_type, when present, must be
/// flow_prediction; use_karras_sigmas / use_exponential_sigmas / use_beta_sigmas = true are refused (not
/// implemented for flow grids). base_shift, max_shift, base_image_seq_len and max_image_seq_len only serve the
/// pipeline's choice of μ: see flow_mu_from_config.
/// \param text   the JSON object of scheduler_config.json
/// \param steps  N, the number of inference steps
/// \param mu     set_timesteps(mu=): required when the config has use_dynamic_shifting, refused otherwise
/// \param origin the name used in error messages
/// \throws diffuse::error (io) for invalid JSON, another `_class_name`, a value of the wrong type or one not
///         implemented, and flow_match_times' errors (shift <= 0, dynamic shifting without μ, …).
inline flow_euler_sampler flow_solver_from_config(const std::string& text, int steps, std::optional<double> mu = std::nullopt,
                                                  const std::string& origin = "scheduler_config.json") {
  using nlohmann::json;
  auto bad = [&](const std::string& s) { detail::fail(error_kind::io, origin, ": ", s); };
  const json j = detail::parse_config_json(text, "scheduler options", bad);
  if (!j.is_object()) bad("expected a JSON object of scheduler options");
  const detail::config_reader read{j, origin};
  const auto flag = [&](const char* key) { return read.flag(key, false); };
  const auto number = [&](const char* key, double fallback) { return read.number(key, fallback); };
  const auto text_of = [&](const char* key, const char* fallback) { return read.text(key, fallback); };
  const std::string cls = text_of("_class_name", "");
  if (cls != "FlowMatchEulerDiscreteScheduler")
    bad(detail::cat("_class_name \"", cls, "\"; expected FlowMatchEulerDiscreteScheduler"));
  const std::string pred = text_of("prediction_type", "flow_prediction");
  if (pred != "flow_prediction") bad(detail::cat("prediction_type \"", pred, "\" with FlowMatchEulerDiscreteScheduler; expected flow_prediction"));
  for (const char* key : {"use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"})
    if (flag(key)) bad(detail::cat(key, " = true with FlowMatchEulerDiscreteScheduler is not supported yet; expected false"));
  flow_match_options o;
  const double T = number("num_train_timesteps", 1000);
  if (!(T >= 1 && T <= 1000000) || T != std::floor(T)) bad(detail::cat("num_train_timesteps is ", T, "; expected an integer in [1, 1000000]"));
  o.num_train_timesteps = static_cast<int>(T);
  o.shift = number("shift", 1.0);
  o.use_dynamic_shifting = flag("use_dynamic_shifting");
  const std::string shift_type = text_of("time_shift_type", "exponential");
  if (shift_type == "exponential") o.time_shift_type = flow_time_shift_type::exponential;
  else if (shift_type == "linear") o.time_shift_type = flow_time_shift_type::linear;
  else bad(detail::cat("time_shift_type \"", shift_type, "\" is unknown; expected exponential or linear"));
  if (const double st = number("shift_terminal", 0.0); st != 0.0) o.shift_terminal = st;
  o.invert_sigmas = flag("invert_sigmas");
  o.mu = mu;
  return flow_euler_sampler(steps, o, {.stochastic_sampling = flag("stochastic_sampling")});
}

/// The flow_heun_sampler a FlowMatchHeunDiscreteScheduler scheduler_config.json describes, for `steps` steps.
///
/// The class has two keys, num_train_timesteps and shift (applied as FlowMatchEulerDiscreteScheduler's, twice;
/// see flow_match_options::shift_twice); prediction_type, when present, must be flow_prediction. Keys of the
/// Euler class that change the grid (use_dynamic_shifting, shift_terminal, invert_sigmas, stochastic_sampling,
/// Karras / exponential / beta sigmas) are not read by diffusers' Heun class: set to a non-default value they
/// are refused rather than silently ignored.
/// \param text   the JSON object of scheduler_config.json
/// \param steps  N, the number of inference steps (2N − 1 model evaluations)
/// \param origin the name used in error messages
/// \throws diffuse::error (io) for invalid JSON, another `_class_name`, a value of the wrong type or a key the class
///         does not have set to a non-default value, and flow_match_times' errors.
inline flow_heun_sampler flow_heun_solver_from_config(const std::string& text, int steps, const std::string& origin = "scheduler_config.json") {
  using nlohmann::json;
  auto bad = [&](const std::string& s) { detail::fail(error_kind::io, origin, ": ", s); };
  const json j = detail::parse_config_json(text, "scheduler options", bad);
  if (!j.is_object()) bad("expected a JSON object of scheduler options");
  const detail::config_reader read{j, origin};
  const auto has = [&](const char* key) { return read.has(key); };
  const auto number = [&](const char* key, double fallback) { return read.number(key, fallback); };
  const auto text_of = [&](const char* key, const char* fallback) { return read.text(key, fallback); };
  const std::string cls = text_of("_class_name", "");
  if (cls != "FlowMatchHeunDiscreteScheduler") bad(detail::cat("_class_name \"", cls, "\"; expected FlowMatchHeunDiscreteScheduler"));
  const std::string pred = text_of("prediction_type", "flow_prediction");
  if (pred != "flow_prediction") bad(detail::cat("prediction_type \"", pred, "\" with FlowMatchHeunDiscreteScheduler; expected flow_prediction"));
  for (const char* key : {"use_dynamic_shifting", "invert_sigmas", "stochastic_sampling", "use_karras_sigmas", "use_exponential_sigmas",
                          "use_beta_sigmas"})
    if (has(key) && !(j[key].is_boolean() && !j[key].get<bool>()))
      bad(detail::cat("\"", key, "\" is ", j[key].dump(), " with FlowMatchHeunDiscreteScheduler, which has no such option; expected it absent or false"));
  if (has("shift_terminal") && number("shift_terminal", 0.0) != 0.0)
    bad("shift_terminal with FlowMatchHeunDiscreteScheduler, which has no such option; expected it absent or null");
  flow_match_options o;
  const double T = number("num_train_timesteps", 1000);
  if (!(T >= 1 && T <= 1000000) || T != std::floor(T)) bad(detail::cat("num_train_timesteps is ", T, "; expected an integer in [1, 1000000]"));
  o.num_train_timesteps = static_cast<int>(T);
  o.shift = number("shift", 1.0);
  return flow_heun_sampler(steps, o);
}

/// μ for use_dynamic_shifting from a FlowMatchEulerDiscreteScheduler config and the image sequence length
/// (latent tokens), as diffusers' Flux-family pipelines compute it: flow_calculate_shift with the config's
/// base_image_seq_len, max_image_seq_len, base_shift and max_shift (diffusers' defaults when absent).
/// \param text          the JSON object of scheduler_config.json
/// \param image_seq_len the number of latent tokens of the image (e.g. (H/16)·(W/16) for Flux)
/// \param origin        the name used in error messages
/// \throws diffuse::error (io) for invalid JSON or a non-number, and as flow_calculate_shift.
inline double flow_mu_from_config(const std::string& text, double image_seq_len, const std::string& origin = "scheduler_config.json") {
  auto bad = [&](const std::string& s) { detail::fail(error_kind::io, origin, ": ", s); };
  const nlohmann::json j = detail::parse_config_json(text, "scheduler options", bad);
  if (!j.is_object()) bad("expected a JSON object of scheduler options");
  const auto number = [&](const char* key, double fallback) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_number()) bad(detail::cat("\"", key, "\" is ", j[key].dump(), "; expected a number"));
    return j[key].get<double>();
  };
  return flow_calculate_shift(image_seq_len, {.base_seq_len = number("base_image_seq_len", 256), .max_seq_len = number("max_image_seq_len", 4096),
                                              .base_shift = number("base_shift", 0.5), .max_shift = number("max_shift", 1.15)});
}

namespace detail {

/// The EDM classes' keys: sigma_min, sigma_max, sigma_data, sigma_schedule, num_train_timesteps (which does
/// not change set_timesteps(N)), prediction_type, rho, final_sigmas_type, and for
/// EDMDPMSolverMultistepScheduler solver_order, thresholding, dynamic_thresholding_ratio, sample_max_value,
/// algorithm_type, solver_type, lower_order_final, euler_at_final.
inline any_solver edm_solver_from_config(const config_reader& read, const std::string& cls, int steps) {
  edm_options e;
  e.sigma_min = read.number("sigma_min", 0.002);
  e.sigma_max = read.number("sigma_max", 80.0);
  e.sigma_data = read.number("sigma_data", 0.5);
  e.rho = read.number("rho", 7.0);
  const std::string schedule = read.text("sigma_schedule", "karras");
  if (schedule == "karras") e.schedule = edm_sigma_schedule::karras;
  else if (schedule == "exponential") e.schedule = edm_sigma_schedule::exponential;
  else read.bad(cat("sigma_schedule \"", schedule, "\" is unknown; expected karras or exponential"));
  const int T = read.integer("num_train_timesteps", 1000);
  if (T < 1) read.bad(cat("num_train_timesteps is ", T, "; expected an integer >= 1"));
  const std::string pred = read.text("prediction_type", "epsilon");
  if (pred == "epsilon") e.prediction = prediction_type::epsilon;
  else if (pred == "v_prediction") e.prediction = prediction_type::v_prediction;
  else read.bad(cat("prediction_type \"", pred, "\" with ", cls, "; expected epsilon or v_prediction (diffusers' EDM "
                    "precondition_outputs supports only these)"));
  const std::string fin = read.text("final_sigmas_type", "zero");
  if (fin == "zero") e.final_type = final_sigma::zero;
  else if (fin == "sigma_min") e.final_type = final_sigma::sigma_min;
  else read.bad(cat("final_sigmas_type \"", fin, "\" is unknown; expected zero or sigma_min"));
  if (cls == "EDMEulerScheduler") return edm_euler_sampler(e, steps);
  edm_dpm_solver_options o;
  o.order = read.integer("solver_order", 2);
  const std::string algo = read.text("algorithm_type", "dpmsolver++");
  if (algo == "dpmsolver++" || algo == "deis") o.algorithm = dpm_algorithm::dpmsolver_pp;  // diffusers maps deis to dpmsolver++
  else if (algo == "sde-dpmsolver++") o.algorithm = dpm_algorithm::sde_dpmsolver_pp;
  else read.bad(cat("algorithm_type \"", algo, "\" is not implemented for EDMDPMSolverMultistepScheduler; expected dpmsolver++ or sde-dpmsolver++"));
  const std::string st = read.text("solver_type", "midpoint");
  if (st == "heun") o.solver_type = dpm_solver_type::heun;
  else if (st == "midpoint" || st == "logrho" || st == "bh1" || st == "bh2") o.solver_type = dpm_solver_type::midpoint;  // diffusers' mapping
  else read.bad(cat("solver_type \"", st, "\" is unknown; expected midpoint or heun"));
  o.lower_order_final = read.flag("lower_order_final", true);
  o.euler_at_final = read.flag("euler_at_final", false);
  if (read.flag("thresholding", false))
    o.threshold = dynamic_threshold{read.number("dynamic_thresholding_ratio", 0.995), read.number("sample_max_value", 1.0)};
  return edm_dpm_solver_sampler(e, steps, o);
}

/// LCMScheduler's keys: the training schedule (with LCM's defaults scaled_linear, 0.00085, 0.012),
/// original_inference_steps, clip_sample, clip_sample_range, prediction_type, thresholding,
/// dynamic_thresholding_ratio, sample_max_value, timestep_scaling; set_alpha_to_one, steps_offset and
/// timestep_spacing are checked for their type and do not change LCM's maths.
inline any_solver lcm_solver_from_config(const config_reader& read, int steps) {
  nlohmann::json with_defaults = read.j;
  const auto fill = [&](const char* key, nlohmann::json value) {
    if (!read.has(key)) with_defaults[key] = std::move(value);
  };
  fill("beta_schedule", "scaled_linear");
  fill("beta_start", 0.00085);
  fill("beta_end", 0.012);
  const scheduler_config base = scheduler_config::from_json(with_defaults.dump(), read.origin);
  lcm_options o;
  o.original_inference_steps = read.integer("original_inference_steps", 50);
  o.timestep_scaling = read.number("timestep_scaling", 10.0);
  const std::string pred = read.text("prediction_type", "epsilon");
  if (pred != "epsilon" && pred != "sample" && pred != "v_prediction")
    read.bad(cat("prediction_type \"", pred, "\" with LCMScheduler; expected epsilon, sample or v_prediction"));
  o.prediction = parse_prediction_type(pred);
  if (read.flag("clip_sample", false)) o.clip_sample_range = read.number("clip_sample_range", 1.0);
  if (read.flag("thresholding", false))
    o.threshold = dynamic_threshold{read.number("dynamic_thresholding_ratio", 0.995), read.number("sample_max_value", 1.0)};
  (void)read.flag("set_alpha_to_one", true);
  (void)read.integer("steps_offset", 0);
  const std::string spacing = read.text("timestep_spacing", "leading");
  if (spacing != "leading" && spacing != "linspace" && spacing != "trailing")
    read.bad(cat("timestep_spacing \"", spacing, "\" is unknown; expected linspace, leading or trailing (LCM does not use it)"));
  return lcm_sampler(base.schedule, steps, o);
}

}  // namespace detail

/// The solver a scheduler_config.json describes, for `steps` inference steps.
///
/// `_class_name` picks the solver; the training schedule (beta_schedule, beta_start, beta_end,
/// num_train_timesteps, trained_betas) is read as scheduler_config reads it, and then every key of that
/// class that changes the maths: prediction_type, timestep_spacing (the class default linspace when
/// absent), steps_offset, use_karras_sigmas / use_exponential_sigmas / use_lu_lambdas / use_beta_sigmas,
/// final_sigmas_type, and per class solver_order, algorithm_type, solver_type, lower_order_final,
/// euler_at_final, lambda_min_clipped (DPM-Solver), thresholding, dynamic_thresholding_ratio,
/// sample_max_value (both), predict_x0, disable_corrector (UniPC), sigma_min,
/// sigma_max, interpolation_type, timestep_type (Euler), clip_sample, clip_sample_range (Heun), and for
/// DPM-Solver++ and UniPC use_flow_sigmas with flow_shift (and UniPC's shift_terminal, time_shift_type):
/// dpm_solver_flow_sigmas / unipc_flow_sigmas, prediction_type flow_prediction allowed. Keys with values
/// diffuse does not implement (learned variances, use_dynamic_shifting, which needs μ) are errors;
/// rescale_betas_zero_snr rescales the schedule, whose σ table then ends at ᾱ = 2^−24 as diffusers'
/// (training_sigmas); keys that only concern other classes are ignored. EDMEulerScheduler and
/// EDMDPMSolverMultistepScheduler read sigma_min, sigma_max, sigma_data, sigma_schedule, rho,
/// num_train_timesteps, prediction_type (epsilon or v_prediction), final_sigmas_type and the DPM-Solver keys
/// above (algorithm_type dpmsolver++, sde-dpmsolver++ or deis); LCMScheduler reads the training schedule
/// (with its defaults scaled_linear, 0.00085, 0.012), original_inference_steps, timestep_scaling,
/// prediction_type, clip_sample, clip_sample_range, thresholding, dynamic_thresholding_ratio,
/// sample_max_value, and type-checks set_alpha_to_one, steps_offset and timestep_spacing (which do not
/// change its maths).
/// \throws diffuse::error (io) for invalid JSON, an unknown or missing `_class_name` (the message lists
///         the supported ones) or an unsupported value, and the solvers' own errors for invalid options.
inline any_solver solver_from_config(const std::string& text, int steps, const std::string& origin = "scheduler_config.json") {
  using nlohmann::json;
  auto bad = [&](const std::string& s) { detail::fail(error_kind::io, origin, ": ", s); };
  const json j = detail::parse_config_json(text, "scheduler options", bad);
  if (!j.is_object()) bad("expected a JSON object of scheduler options");
  const detail::config_reader read{j, origin};
  const auto has = [&](const char* key) { return read.has(key); };
  const auto text_of = [&](const char* key, const char* fallback) { return read.text(key, fallback); };
  const auto flag = [&](const char* key, bool fallback) { return read.flag(key, fallback); };
  const auto number = [&](const char* key, double fallback) { return read.number(key, fallback); };
  const auto integer = [&](const char* key, int fallback) { return read.integer(key, fallback); };
  const auto refuse_if = [&](bool condition, const std::string& what) {
    if (condition) bad(what + " is not supported by diffuse's solvers yet; expected the default");
  };

  const std::string cls = text_of("_class_name", "");
  // Flow matching has no noise schedule; a config with use_dynamic_shifting needs μ: flow_solver_from_config.
  if (cls == "FlowMatchEulerDiscreteScheduler") {
    if (flag("use_dynamic_shifting", false))
      bad("use_dynamic_shifting = true needs mu, which the config does not hold; expected flow_solver_from_config(text, steps, mu) "
          "(flow_mu_from_config gives mu from the image sequence length)");
    return flow_solver_from_config(text, steps, std::nullopt, origin);
  }
  if (cls == "FlowMatchHeunDiscreteScheduler") return flow_heun_solver_from_config(text, steps, origin);
  if (cls == "EDMEulerScheduler" || cls == "EDMDPMSolverMultistepScheduler") return detail::edm_solver_from_config(read, cls, steps);
  if (cls == "LCMScheduler") return detail::lcm_solver_from_config(read, steps);
  const bool dpm = cls == "DPMSolverMultistepScheduler", unipc = cls == "UniPCMultistepScheduler";
  const bool euler = cls == "EulerDiscreteScheduler", ancestral = cls == "EulerAncestralDiscreteScheduler";
  const bool heun = cls == "HeunDiscreteScheduler";
  if (!(dpm || unipc || euler || ancestral || heun))
    bad(detail::cat("_class_name \"", cls, "\" is not a solver diffuse implements; expected one of ", supported_solver_classes,
                    " (DDPMScheduler and DDIMScheduler configs go through scheduler_config with ddpm_sampler / ddim_sampler)"));

  // The training schedule, read exactly as scheduler_config reads it; the class's own defaults below.
  const std::string pred = text_of("prediction_type", "epsilon");
  const bool flow_sigmas = (dpm || unipc) && flag("use_flow_sigmas", false);
  if (pred == "flow_prediction" && !flow_sigmas)
    bad(detail::cat("prediction_type \"flow_prediction\" with _class_name ", cls, " is not supported",
                    dpm || unipc ? " without use_flow_sigmas = true" : "", "; expected epsilon, sample or v_prediction",
                    dpm || unipc ? ", use_flow_sigmas = true" : "", ", or a FlowMatchEulerDiscreteScheduler config for a flow-matching model"));
  const scheduler_config base = scheduler_config::from_json(text, origin);
  if (heun && flag("rescale_betas_zero_snr", false)) bad("rescale_betas_zero_snr is not a key of HeunDiscreteScheduler; expected it absent");
  const prediction_type prediction = parse_prediction_type(pred);
  if (prediction == prediction_type::previous_x) bad("prediction_type \"previous_x\"; expected epsilon, sample or v_prediction");

  sigma_options so;
  const std::string spacing = text_of("timestep_spacing", "linspace");
  if (spacing == "linspace") so.spacing = timestep_spacing::linspace;
  else if (spacing == "leading") so.spacing = timestep_spacing::leading;
  else if (spacing == "trailing") so.spacing = timestep_spacing::trailing;
  else bad(detail::cat("timestep_spacing \"", spacing, "\" is unknown; expected linspace, leading or trailing"));
  // diffusers adds steps_offset to leading lists only and ignores it otherwise.
  so.steps_offset = so.spacing == timestep_spacing::leading ? integer("steps_offset", 0) : 0;
  so.kind = sigma_kind_from_flags(flag("use_karras_sigmas", false), flag("use_exponential_sigmas", false),
                                  dpm && flag("use_lu_lambdas", false), flag("use_beta_sigmas", false));
  if (!ancestral && !heun) {
    const std::string fin = text_of("final_sigmas_type", "zero");
    if (fin == "zero") so.final_type = final_sigma::zero;
    else if (fin == "sigma_min") so.final_type = final_sigma::sigma_min;
    else bad(detail::cat("final_sigmas_type \"", fin, "\" is unknown; expected zero or sigma_min"));
  }
  // Flow sigmas (use_flow_sigmas): the grid replaces the timestep spacing, which diffusers then ignores.
  multistep_flow_options flow_opts;
  if (flow_sigmas) {
    if (so.kind != sigma_kind::timesteps)
      bad("use_flow_sigmas = true with Karras / exponential / beta / Lu sigmas is not supported (diffusers builds VP sigmas then and "
          "converts them as flow sigmas); expected only use_flow_sigmas");
    if (flag("use_dynamic_shifting", false))
      bad("use_dynamic_shifting = true needs mu, which the config does not hold; expected the solver built from "
          "dpm_solver_flow_sigmas / unipc_flow_sigmas(schedule, steps, {.mu = ...})");
    flow_opts.flow_shift = number("flow_shift", 1.0);
    flow_opts.final_type = so.final_type;
    if (unipc) {
      if (const double st = number("shift_terminal", 0.0); st != 0.0) flow_opts.shift_terminal = st;
      const std::string shift_type = text_of("time_shift_type", "exponential");
      if (shift_type == "linear") flow_opts.time_shift_type = flow_time_shift_type::linear;
      else if (shift_type != "exponential") bad(detail::cat("time_shift_type \"", shift_type, "\" is unknown; expected exponential or linear"));
    }
  } else if (dpm || unipc) {
    refuse_if(flag("use_dynamic_shifting", false), "use_dynamic_shifting = true without use_flow_sigmas");
  }

  if (dpm) {
    dpm_solver_options o;
    o.order = integer("solver_order", 2);
    o.prediction = prediction;
    const std::string algo = text_of("algorithm_type", "dpmsolver++");
    if (algo == "dpmsolver++" || algo == "deis") o.algorithm = dpm_algorithm::dpmsolver_pp;  // diffusers maps deis to dpmsolver++
    else if (algo == "sde-dpmsolver++") o.algorithm = dpm_algorithm::sde_dpmsolver_pp;
    else if (algo == "dpmsolver") o.algorithm = dpm_algorithm::dpmsolver;
    else if (algo == "sde-dpmsolver") o.algorithm = dpm_algorithm::sde_dpmsolver;
    else bad(detail::cat("algorithm_type \"", algo, "\" is unknown; expected dpmsolver++, sde-dpmsolver++, dpmsolver or sde-dpmsolver"));
    const std::string st = text_of("solver_type", "midpoint");
    if (st == "heun") o.solver_type = dpm_solver_type::heun;
    else if (st == "midpoint" || st == "logrho" || st == "bh1" || st == "bh2") o.solver_type = dpm_solver_type::midpoint;  // diffusers' mapping
    else bad(detail::cat("solver_type \"", st, "\" is unknown; expected midpoint or heun"));
    o.lower_order_final = flag("lower_order_final", true);
    o.euler_at_final = flag("euler_at_final", false);
    if (flag("thresholding", false))
      o.threshold = dynamic_threshold{number("dynamic_thresholding_ratio", 0.995), number("sample_max_value", 1.0)};
    if (has("variance_type")) bad("variance_type (a learned variance) is not supported by DPM-Solver++ here; expected null");
    if (has("lambda_min_clipped")) so.lambda_min_clipped = number("lambda_min_clipped", -HUGE_VAL);
    if (flow_sigmas) return dpm_solver_sampler(dpm_solver_flow_sigmas(base.schedule, steps, flow_opts), o);
    return dpm_solver_sampler(base.schedule, steps, so, o);
  }
  if (unipc) {
    unipc_options o;
    o.order = integer("solver_order", 2);
    o.prediction = prediction;
    const std::string st = text_of("solver_type", "bh2");
    if (st == "bh1") o.variant = unipc_variant::bh1;
    else if (st == "bh2" || st == "midpoint" || st == "heun" || st == "logrho") o.variant = unipc_variant::bh2;  // diffusers' mapping
    else bad(detail::cat("solver_type \"", st, "\" is unknown; expected bh1 or bh2"));
    o.predict_x0 = flag("predict_x0", true);
    if (flag("thresholding", false))
      o.threshold = dynamic_threshold{number("dynamic_thresholding_ratio", 0.995), number("sample_max_value", 1.0)};
    o.lower_order_final = flag("lower_order_final", true);
    if (has("disable_corrector")) {
      if (!j["disable_corrector"].is_array()) bad("\"disable_corrector\" is not a list; expected a list of step indices");
      for (const auto& v : j["disable_corrector"]) {
        if (!v.is_number_integer()) bad("\"disable_corrector\" holds a non-integer; expected step indices");
        o.disable_corrector.push_back(v.get<int>());
      }
    }
    refuse_if(has("sigma_min") || has("sigma_max"), "UniPC's sigma_min / sigma_max");
    refuse_if(has("solver_p"), "solver_p");
    if (flow_sigmas) return unipc_sampler(unipc_flow_sigmas(base.schedule, steps, flow_opts), std::move(o));
    return unipc_sampler(base.schedule, steps, so, std::move(o));
  }
  if (euler || heun || ancestral) {
    if (euler) {
      if (has("sigma_min")) so.sigma_min = number("sigma_min", 0);
      if (has("sigma_max")) so.sigma_max = number("sigma_max", 0);
      const std::string interp = text_of("interpolation_type", "linear");
      if (interp == "log_linear") so.interpolation = sigma_interpolation::log_linear;
      else if (interp != "linear") bad(detail::cat("interpolation_type \"", interp, "\" is unknown; expected linear or log_linear"));
      const std::string tt = text_of("timestep_type", "discrete");
      if (tt != "discrete" && tt != "continuous") bad(detail::cat("timestep_type \"", tt, "\" is unknown; expected discrete or continuous"));
      // diffusers uses continuous times only with v-prediction, and ignores the key otherwise.
      const bool continuous = tt == "continuous" && prediction == prediction_type::v_prediction;
      return euler_sampler(base.schedule, steps, so, {.prediction = prediction, .continuous_timesteps = continuous});
    }
    if (heun) {
      heun_options o;
      o.prediction = prediction;
      if (flag("clip_sample", false)) o.clip_sample_range = number("clip_sample_range", 1.0);
      return heun_sampler(base.schedule, steps, so, o);
    }
    refuse_if(so.kind != sigma_kind::timesteps, "Karras / exponential / beta sigmas in EulerAncestralDiscreteScheduler (not keys of that class)");
    return euler_ancestral_sampler(base.schedule, steps, so, {.prediction = prediction});
  }
  bad("unreachable");
  return dpm_solver_sampler(base.schedule, steps);
}

/// solver_from_config() on a scheduler_config.json file.
/// \throws diffuse::error (io) when the file cannot be read, and as solver_from_config.
inline any_solver load_solver(const std::filesystem::path& path, int steps) {
  std::ifstream in(path);
  if (!in) detail::fail(error_kind::io, "cannot open ", path.string(), "; expected a readable scheduler_config.json");
  std::ostringstream s;
  s << in.rdbuf();
  return solver_from_config(s.str(), steps, path.string());
}

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
