#pragma once
/// \file
/// diffusers' scheduler_config.json: the noise schedule, prediction type, variance, x̂0 processing and
/// timestep spacing a model was trained with, turned into diffuse's types.
///
/// Example:
/// \code
/// auto sc = diffuse::scheduler_config::load("models/digits/scheduler_config.json");
/// diffuse::ddim_sampler sampler(sc.schedule, sc.timesteps(50), {.prediction = sc.prediction, .processing = sc.processing});
/// \endcode

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "diffuse/detail/json.hpp"
#include "diffuse/detail/read_file.hpp"
#include "diffuse/error.hpp"
#include "diffuse/posterior.hpp"
#include "diffuse/schedule.hpp"
#include "diffuse/timesteps.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// What a scheduler_config.json says, in diffuse's terms. Keys of other scheduler classes that do not
/// change the maths (e.g. "skip_prk_steps") are ignored; known keys with a value diffuse does not
/// implement are errors.
struct scheduler_config {
  /// The training schedule: beta_schedule, beta_start, beta_end, num_train_timesteps or trained_betas,
  /// rescaled when rescale_betas_zero_snr is true.
  noise_schedule schedule = noise_schedule::linear(1000);
  prediction_type prediction = prediction_type::epsilon;  ///< prediction_type
  variance_type variance = variance_type::fixed_small;    ///< variance_type (used by ddpm_sampler)
  x0_processing processing{.clip_range = 1.0};  ///< diffusers' default: clip_sample true, range 1
  timestep_spacing spacing = timestep_spacing::leading;  ///< timestep_spacing (diffusers' default: leading)
  int steps_offset = 0;                                   ///< steps_offset, added to leading lists
  bool set_alpha_to_one = true;                           ///< set_alpha_to_one (used by ddim_sampler)
  /// `_class_name`; a FlowMatch… class sets prediction to flow_prediction (samplers/from_config.hpp builds its solver).
  std::string class_name;

  /// T, the number of training timesteps.
  int num_train_timesteps() const { return schedule.size(); }
  /// The descending list of `steps` timesteps with this config's spacing and offset.
  std::vector<int> timesteps(int steps) const {
    return make_timesteps(num_train_timesteps(), steps, spacing, spacing == timestep_spacing::leading ? steps_offset : 0);
  }

  /// Parses the text of a scheduler_config.json.
  /// \param text   the JSON object
  /// \param origin the name used in error messages (a path, or where the text came from)
  /// \throws diffuse::error (io) for invalid JSON, a value of the wrong type, or a value diffuse does not
  ///         implement (an unknown beta_schedule, timestep_spacing, prediction_type or variance_type).
  static scheduler_config from_json(const std::string& text, const std::string& origin = "scheduler_config.json") {
    using nlohmann::json;
    auto bad = [&](const std::string& s) { detail::fail(error_kind::io, origin, ": ", s); };
    json j = detail::parse_config_json(text, "scheduler options", bad);
    if (!j.is_object()) bad("expected a JSON object of scheduler options");
    auto number = [&](const char* key, double fallback) {
      if (!j.contains(key) || j[key].is_null()) return fallback;
      if (!j[key].is_number()) bad(detail::cat("\"", key, "\" is ", j[key].dump(), "; expected a number"));
      return j[key].get<double>();
    };
    auto text_of = [&](const char* key, const char* fallback) -> std::string {
      if (!j.contains(key) || j[key].is_null()) return fallback;
      if (!j[key].is_string()) bad(detail::cat("\"", key, "\" is ", j[key].dump(), "; expected a string"));
      return j[key].get<std::string>();
    };
    auto flag = [&](const char* key, bool fallback) {
      if (!j.contains(key) || j[key].is_null()) return fallback;
      if (!j[key].is_boolean()) bad(detail::cat("\"", key, "\" is ", j[key].dump(), "; expected true or false"));
      return j[key].get<bool>();
    };
    scheduler_config c;
    // Range first: converting a double outside int's range to int is undefined behaviour.
    const double T_real = number("num_train_timesteps", 1000);
    if (!(T_real >= 1 && T_real <= max_train_timesteps) || T_real != std::floor(T_real))
      bad(detail::cat("num_train_timesteps is ", T_real, "; expected an integer in [1, ", max_train_timesteps, "]"));
    const int T = static_cast<int>(T_real);
    const double b0 = number("beta_start", 1e-4), b1 = number("beta_end", 0.02);
    if (j.contains("trained_betas") && !j["trained_betas"].is_null()) {
      if (!j["trained_betas"].is_array()) bad("\"trained_betas\" is not a list; expected a list of betas");
      std::vector<double> betas;
      for (const auto& b : j["trained_betas"]) {
        if (!b.is_number()) bad("\"trained_betas\" holds a non-number; expected numbers");
        betas.push_back(b.get<double>());
      }
      // diffusers takes T from the list but spaces inference timesteps with num_train_timesteps: both must agree.
      if (j.contains("num_train_timesteps") && !j["num_train_timesteps"].is_null() && betas.size() != static_cast<std::size_t>(T))
        bad(detail::cat("\"trained_betas\" has ", betas.size(), " entries but num_train_timesteps is ", T,
                        "; expected one beta per training timestep"));
      c.schedule = noise_schedule::from_betas(std::move(betas));
    } else {
      const std::string kind = text_of("beta_schedule", "linear");
      if (kind == "linear") c.schedule = noise_schedule::linear(T, b0, b1);
      else if (kind == "scaled_linear") c.schedule = noise_schedule::scaled_linear(T, b0, b1);
      else if (kind == "squaredcos_cap_v2") c.schedule = noise_schedule::cosine(T);
      else if (kind == "sigmoid") c.schedule = noise_schedule::sigmoid(T, b0, b1);
      else bad(detail::cat("beta_schedule \"", kind, "\" is unknown; expected linear, scaled_linear, squaredcos_cap_v2 or sigmoid"));
    }
    if (flag("rescale_betas_zero_snr", false)) c.schedule = c.schedule.rescaled_zero_terminal_snr();
    c.class_name = text_of("_class_name", "");
    const bool flow = c.class_name.rfind("FlowMatch", 0) == 0;  // flow matching: the model predicts a velocity
    c.prediction = parse_prediction_type(text_of("prediction_type", flow ? "flow_prediction" : "epsilon"));
    c.variance = parse_variance_type(text_of("variance_type", "fixed_small"));
    if (flag("clip_sample", true)) c.processing.clip_range = number("clip_sample_range", 1.0);
    else c.processing.clip_range.reset();
    if (flag("thresholding", false))
      c.processing.threshold = dynamic_threshold{number("dynamic_thresholding_ratio", 0.995), number("sample_max_value", 1.0)};
    c.processing.validate();
    const std::string spacing = text_of("timestep_spacing", "leading");
    if (spacing == "leading") c.spacing = timestep_spacing::leading;
    else if (spacing == "trailing") c.spacing = timestep_spacing::trailing;
    else if (spacing == "linspace") c.spacing = timestep_spacing::linspace;
    else bad(detail::cat("timestep_spacing \"", spacing, "\" is unknown; expected leading, trailing or linspace"));
    const double off = number("steps_offset", 0);
    if (!(off >= 0 && off < T) || off != std::floor(off)) bad(detail::cat("steps_offset is ", off, "; expected an integer in [0, T)"));
    c.steps_offset = static_cast<int>(off);
    c.set_alpha_to_one = flag("set_alpha_to_one", true);
    return c;
  }

  /// Reads and parses a scheduler_config.json file.
  /// \throws diffuse::error (io) when the path is not a readable regular file (a directory, FIFO or device
  ///         is named as such) or is larger than 32 MiB, and as from_json.
  static scheduler_config load(const std::filesystem::path& path) {
    return from_json(detail::read_text_file(path, "scheduler_config.json"), path.string());
  }
};

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
