#pragma once
/// \file
/// LeRobot diffusion-policy folders: the policy's config.json (LeRobot's DiffusionConfig, "type":
/// "diffusion"), the UNet architecture it implies, and the normalisation statistics of its processor
/// pipeline, applied by policy_normalizer.
///
/// A folder as `DiffusionPolicy.save_pretrained` and the processor pipelines' `save_pretrained` write it:
/// - `config.json`: every DiffusionConfig field by name (parsed strictly: an unknown key is refused);
/// - `model.safetensors`: DiffusionPolicy's state dict, the denoiser under "diffusion.unet." (LeRobot's
///   DiffusionConditionalUnet1d names: "down_modules.0.0.conv1.block.0.weight", …), the camera encoders
///   under "diffusion.rgb_encoder." (not run by diffuse: their features are part of the global_cond the
///   caller passes);
/// - `policy_preprocessor.json` naming the normaliser step's state file
///   (`policy_preprocessor_step_<i>_normalizer_processor.safetensors`, tensors "<feature>.<statistic>",
///   e.g. "observation.state.min") and its eps; `policy_postprocessor.json` likewise for the unnormaliser.
///
/// The conditioning vector the UNet takes is, per batch item, the n_obs_steps observations one after the
/// other, each [observation.state, camera features (2·spatial_softmax_num_keypoints per camera),
/// observation.environment_state], all normalised (LeRobot's _prepare_global_conditioning).

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "diffuse/detail/json.hpp"
#include "diffuse/detail/read_file.hpp"
#include "diffuse/error.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/io/scheduler_config.hpp"
#include "diffuse/nn/unet1d_config.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// One input or output feature of a LeRobot policy.
struct lerobot_feature {
  std::string name;        ///< e.g. "observation.state", "action"
  std::string type;        ///< "STATE", "ENV", "VISUAL", "ACTION"
  std::vector<int> shape;  ///< (dim) for vectors, (C, H, W) for images
};

/// The fields of LeRobot's DiffusionConfig diffuse uses; the others are checked for their type only.
struct lerobot_diffusion_config {
  int n_obs_steps = 2;        ///< observations per conditioning vector
  int horizon = 64;           ///< actions per denoised chunk
  int n_action_steps = 32;    ///< actions executed per chunk
  std::vector<lerobot_feature> input_features;   ///< observations
  std::vector<lerobot_feature> output_features;  ///< the action
  std::map<std::string, std::string> normalization_mapping;  ///< feature type → "MIN_MAX", "MEAN_STD", …
  std::vector<int> down_dims{512, 1024, 2048};  ///< UNet channels per level
  int kernel_size = 5;                 ///< UNet convolution taps
  int n_groups = 8;                    ///< UNet group norms
  int diffusion_step_embed_dim = 128;  ///< step embedding width
  bool use_film_scale_modulation = true;  ///< FiLM scale and bias
  int spatial_softmax_num_keypoints = 32;  ///< camera features are 2 × this per camera
  std::string noise_scheduler_type = "DDPM";  ///< "DDPM" or "DDIM"
  int num_train_timesteps = 100;               ///< training timesteps
  std::string beta_schedule = "squaredcos_cap_v2";  ///< diffusers' beta_schedule name
  double beta_start = 1e-4;  ///< linear schedules' first β
  double beta_end = 0.02;    ///< linear schedules' last β
  std::string prediction_type = "epsilon";  ///< "epsilon" or "sample"
  bool clip_sample = true;          ///< clip x̂0 to ±clip_sample_range at every step
  double clip_sample_range = 1.0;   ///< the clipping bound
  int num_inference_steps = 0;      ///< 0 (null): num_train_timesteps

  /// Dimension of the action (output_features["action"]).
  int action_dim() const;
  /// Length of one batch item's conditioning vector: n_obs_steps × (state + camera features + env state).
  int global_cond_dim() const;
  /// The denoiser's architecture, with LeRobot's weight names under "diffusion.unet.".
  unet1d_config unet() const;
  /// The noise scheduler LeRobot builds (DDPMScheduler or DDIMScheduler with num_train_timesteps,
  /// beta_start, beta_end, beta_schedule, clip_sample, clip_sample_range and prediction_type, diffusers'
  /// defaults otherwise: leading spacing, fixed_small variance, set_alpha_to_one).
  scheduler_config scheduler() const {
    nlohmann::json j{{"_class_name", noise_scheduler_type == "DDIM" ? "DDIMScheduler" : "DDPMScheduler"},
                     {"num_train_timesteps", num_train_timesteps}, {"beta_start", beta_start}, {"beta_end", beta_end},
                     {"beta_schedule", beta_schedule}, {"clip_sample", clip_sample}, {"clip_sample_range", clip_sample_range},
                     {"prediction_type", prediction_type}};
    return scheduler_config::from_json(j.dump(), "the LeRobot config's noise scheduler");
  }
  /// Denoising steps at inference: num_inference_steps, or num_train_timesteps when it is null.
  int inference_steps() const { return num_inference_steps > 0 ? num_inference_steps : num_train_timesteps; }
  /// Parses config.json text. \throws diffuse::error (model) for unknown keys, values of the wrong type,
  /// unsupported values or a horizon LeRobot itself refuses.
  static lerobot_diffusion_config from_json(const std::string& text, const std::string& origin = "config.json");
  /// Reads and parses a config.json file.
  static lerobot_diffusion_config load(const std::filesystem::path& path);
};

/// Whether config.json text is a LeRobot policy config (a JSON object with a "type" key) rather than
/// ConditionalUnet1D options. Parsed with the same limits as every config reader.
/// \throws diffuse::error (model) when the text is not valid JSON, naming `origin`.
inline bool is_lerobot_config(const std::string& text, const std::string& origin = "config.json") {
  auto bad = [&](const std::string& s) { detail::bad_config(origin, s); };
  const auto j = detail::parse_config_json(text, "options", bad);
  return j.is_object() && j.contains("type");
}

namespace detail {

inline std::vector<lerobot_feature> lerobot_features(const nlohmann::json& v, const std::string& key, const std::string& origin) {
  if (!v.is_object()) bad_config(origin, cat("\"", key, "\" is ", v.dump(), "; expected an object of {\"type\", \"shape\"} features"));
  std::vector<lerobot_feature> out;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const auto& f = it.value();
    if (!f.is_object() || !f.contains("type") || !f["type"].is_string() || !f.contains("shape") || !f["shape"].is_array() || f["shape"].empty())
      bad_config(origin, cat("feature \"", it.key(), "\" is ", f.dump(), "; expected {\"type\": name, \"shape\": [dims]}"));
    lerobot_feature lf{it.key(), f["type"].get<std::string>(), {}};
    for (const auto& d : f["shape"]) lf.shape.push_back(config_int(d, it.key(), origin, 1, 1 << 20));
    out.push_back(std::move(lf));
  }
  return out;
}

inline const lerobot_feature* find_feature(const std::vector<lerobot_feature>& fs, const std::string& type) {
  for (const auto& f : fs)
    if (f.type == type) return &f;
  return nullptr;
}

}  // namespace detail

inline int lerobot_diffusion_config::action_dim() const {
  for (const auto& f : output_features)
    if (f.name == "action") return f.shape[0];
  return 0;
}

inline int lerobot_diffusion_config::global_cond_dim() const {
  int per = 0, cameras = 0;
  for (const auto& f : input_features) {
    if (f.type == "STATE" || f.type == "ENV") per += f.shape[0];
    else if (f.type == "VISUAL") ++cameras;
  }
  return (per + cameras * 2 * spatial_softmax_num_keypoints) * n_obs_steps;
}

inline unet1d_config lerobot_diffusion_config::unet() const {
  unet1d_config c;
  c.input_dim = action_dim();
  c.global_cond_dim = global_cond_dim();
  c.local_cond_dim = 0;
  c.diffusion_step_embed_dim = diffusion_step_embed_dim;
  c.down_dims = down_dims;
  c.kernel_size = kernel_size;
  c.n_groups = n_groups;
  c.cond_predict_scale = use_film_scale_modulation;
  c.naming = unet1d_naming::lerobot;
  c.weight_prefix = "diffusion.unet.";
  return c;
}

inline lerobot_diffusion_config lerobot_diffusion_config::from_json(const std::string& text, const std::string& origin) {
  using detail::cat;
  using nlohmann::json;
  auto bad = [&](const std::string& s) { detail::bad_config(origin, s); };
  json j = detail::parse_config_json(text, "options", bad);
  if (!j.is_object()) bad("expected a JSON object of DiffusionConfig fields");
  if (!j.contains("type") || j["type"] != "diffusion")
    bad(cat("\"type\" is ", j.contains("type") ? j["type"].dump() : std::string("absent"), "; expected \"diffusion\" (a LeRobot diffusion policy)"));
  lerobot_diffusion_config c;
  auto str = [&](const json& v, const std::string& k) {
    if (!v.is_string()) bad(cat("\"", k, "\" is ", v.dump(), "; expected a string"));
    return v.get<std::string>();
  };
  auto one_of = [&](const json& v, const std::string& k, std::initializer_list<const char*> allowed) {
    const std::string s = str(v, k);
    std::string list;
    for (const char* a : allowed) {
      if (s == a) return s;
      list += list.empty() ? std::string("\"") + a + "\"" : std::string(", \"") + a + "\"";
    }
    bad(cat("\"", k, "\" is \"", s, "\", which is not supported; expected one of ", list));
    return s;  // not reached: bad() throws
  };
  bool have_inputs = false, have_outputs = false;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    if (k == "type") continue;
    if (k == "n_obs_steps") c.n_obs_steps = detail::config_int(v, k, origin, 1, 1 << 16);
    else if (k == "horizon") c.horizon = detail::config_int(v, k, origin, 1, 1 << 20);
    else if (k == "n_action_steps") c.n_action_steps = detail::config_int(v, k, origin, 1, 1 << 20);
    else if (k == "input_features") c.input_features = detail::lerobot_features(v, k, origin), have_inputs = true;
    else if (k == "output_features") c.output_features = detail::lerobot_features(v, k, origin), have_outputs = true;
    else if (k == "normalization_mapping") {
      if (!v.is_object()) bad(cat("\"normalization_mapping\" is ", v.dump(), "; expected an object of feature type -> mode"));
      for (auto m = v.begin(); m != v.end(); ++m)
        c.normalization_mapping[m.key()] = one_of(m.value(), "normalization_mapping." + m.key(), {"MIN_MAX", "MEAN_STD", "IDENTITY", "QUANTILES", "QUANTILE10"});
    } else if (k == "down_dims") {
      if (!v.is_array() || v.empty() || v.size() > 8) bad(cat("down_dims is ", v.dump(), "; expected a list of 1 to 8 integers"));
      c.down_dims.clear();
      for (const auto& e : v) c.down_dims.push_back(detail::config_int(e, k, origin, 1, 1 << 16));
    } else if (k == "kernel_size") c.kernel_size = detail::config_int(v, k, origin, 1, 1023);
    else if (k == "n_groups") c.n_groups = detail::config_int(v, k, origin, 1, 1 << 16);
    else if (k == "diffusion_step_embed_dim") c.diffusion_step_embed_dim = detail::config_int(v, k, origin, 1, 1 << 16);
    else if (k == "use_film_scale_modulation") c.use_film_scale_modulation = detail::config_bool(v, k, origin);
    else if (k == "spatial_softmax_num_keypoints") c.spatial_softmax_num_keypoints = detail::config_int(v, k, origin, 1, 1 << 16);
    else if (k == "noise_scheduler_type") c.noise_scheduler_type = one_of(v, k, {"DDPM", "DDIM"});
    else if (k == "num_train_timesteps") c.num_train_timesteps = detail::config_int(v, k, origin, 1, 1 << 20);
    else if (k == "beta_schedule") c.beta_schedule = one_of(v, k, {"linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"});
    else if (k == "beta_start") c.beta_start = detail::config_number(v, k, origin);
    else if (k == "beta_end") c.beta_end = detail::config_number(v, k, origin);
    else if (k == "prediction_type") c.prediction_type = one_of(v, k, {"epsilon", "sample"});
    else if (k == "clip_sample") c.clip_sample = detail::config_bool(v, k, origin);
    else if (k == "clip_sample_range") c.clip_sample_range = detail::config_number(v, k, origin);
    else if (k == "num_inference_steps") c.num_inference_steps = v.is_null() ? 0 : detail::config_int(v, k, origin, 1, 1 << 20);
    else if (k == "gradient_checkpointing" || k == "use_amp" || k == "use_peft" || k == "push_to_hub" || k == "crop_is_random" ||
             k == "use_group_norm" || k == "use_separate_rgb_encoder_per_camera" || k == "compile_model" || k == "do_mask_loss_for_padding") {
      detail::config_bool(v, k, origin);  // training, hub or camera-encoder options: no effect on the denoiser
    } else if (k == "drop_n_last_frames" || k == "scheduler_warmup_steps") {
      detail::config_int(v, k, origin, 0, 1 << 30);
    } else if (k == "crop_ratio" || k == "optimizer_lr" || k == "optimizer_eps" || k == "optimizer_weight_decay") {
      detail::config_number(v, k, origin);
    } else if (k == "device" || k == "repo_id" || k == "private" || k == "tags" || k == "license" || k == "pretrained_path" ||
               k == "pretrained_revision" || k == "vision_backbone" || k == "resize_shape" || k == "crop_shape" ||
               k == "pretrained_backbone_weights" || k == "compile_mode" || k == "optimizer_betas" || k == "scheduler_name") {
      // bookkeeping, hub, optimiser and camera-encoder settings the denoiser does not depend on
    } else {
      bad(cat("unknown option \"", k, "\"; expected only the fields of LeRobot's DiffusionConfig"));
    }
  }
  if (!have_inputs || !have_outputs) bad("no input_features / output_features; expected the policy's features (written by LeRobot)");
  if (!detail::find_feature(c.input_features, "STATE")) bad("no STATE input feature; expected \"observation.state\" (LeRobot requires it)");
  if (c.action_dim() < 1) bad("no \"action\" output feature; expected the action's shape");
  if (!detail::find_feature(c.input_features, "VISUAL") && !detail::find_feature(c.input_features, "ENV"))
    bad("neither camera (VISUAL) nor environment-state (ENV) input features; expected at least one, as LeRobot requires");
  for (const auto& f : c.input_features)
    if (f.type != "STATE" && f.type != "ENV" && f.type != "VISUAL")
      bad(cat("input feature \"", f.name, "\" has type \"", f.type, "\"; expected STATE, ENV or VISUAL"));
  // LeRobot's own check (DiffusionConfig.__post_init__): 2^len(down_dims), one more halving than the
  // network performs, so a folder LeRobot wrote always satisfies it.
  const long factor = 1L << c.down_dims.size();
  if (c.horizon % factor != 0)
    bad(cat("horizon ", c.horizon, " is not a multiple of 2^len(down_dims) = ", factor, "; expected a horizon LeRobot accepts for these down_dims"));
  if (c.n_action_steps > c.horizon - c.n_obs_steps + 1)
    bad(cat("n_action_steps ", c.n_action_steps, " exceeds horizon - n_obs_steps + 1 = ", c.horizon - c.n_obs_steps + 1,
            "; expected n_action_steps <= horizon - n_obs_steps + 1"));
  if (!(c.clip_sample_range > 0)) bad(cat("clip_sample_range is ", c.clip_sample_range, "; expected > 0"));
  c.unet().validate(origin);
  return c;
}

inline lerobot_diffusion_config lerobot_diffusion_config::load(const std::filesystem::path& path) {
  return from_json(detail::read_text_file(path, "config.json"), path.string());
}

/// How one feature is normalised (LeRobot's NormalizationMode).
enum class normalization_mode {
  identity,    ///< unchanged
  min_max,     ///< 2·(x − min)/(max − min) − 1, max − min replaced by eps where it is 0
  mean_std,    ///< (x − mean)/(std + eps); back: x·std + mean
  quantiles,   ///< min_max with q01 / q99
  quantile10,  ///< min_max with q10 / q90
};

/// LeRobot's normaliser and unnormaliser (NormalizerProcessorStep, UnnormalizerProcessorStep) for the
/// vector features of a policy: the statistics per feature and the mode of its type.
template <class S>
class policy_normalizer {
 public:
  /// One feature's statistics.
  struct feature {
    normalization_mode mode = normalization_mode::identity;  ///< from normalization_mapping[type]
    std::vector<double> low;   ///< min, mean, q01 or q10
    std::vector<double> high;  ///< max, std, q99 or q90
  };

  /// Reads the statistics of a LeRobot policy folder: the normaliser step of policy_preprocessor.json
  /// and its state file, the modes from the step's norm_map; without policy_preprocessor.json, the
  /// statistics older releases kept in model.safetensors (load_legacy).
  /// \throws diffuse::error (io) when the files are missing; (model) when a statistic a mode needs is
  ///         absent, of the wrong length or not finite.
  static policy_normalizer load(const std::filesystem::path& folder) {
    namespace fs = std::filesystem;
    using detail::cat;
    const fs::path pre = folder / "policy_preprocessor.json";
    if (!fs::exists(pre)) {
      if (fs::exists(folder / "model.safetensors") && fs::exists(folder / "config.json")) {
        const auto weights = safetensors_file::load(folder / "model.safetensors");
        for (const auto& name : weights.names())
          if (name.rfind("normalize_inputs.buffer_", 0) == 0) return load_legacy(lerobot_diffusion_config::load(folder / "config.json"), weights);
      }
      detail::fail(error_kind::io, folder.string(), " has no policy_preprocessor.json and its model.safetensors no normalize_inputs buffers; expected "
                   "LeRobot's processor pipeline with the normalisation statistics (or, from LeRobot releases before it, the statistics in the "
                   "policy's state dict)");
    }
    auto bad = [&](const std::string& s) { detail::fail(error_kind::model, pre.string(), ": ", s); };
    const nlohmann::json j = detail::parse_config_json(detail::read_text_file(pre, "policy_preprocessor.json"), "pipeline steps", bad);
    if (!j.is_object() || !j.contains("steps") || !j["steps"].is_array()) bad("expected an object with a \"steps\" list");
    const nlohmann::json* step = nullptr;
    for (const auto& s : j["steps"])
      if (s.is_object() && s.contains("registry_name") && s["registry_name"] == "normalizer_processor") step = &s;
    if (!step) bad("no step with registry_name \"normalizer_processor\"; expected the normaliser among the steps");
    if (!step->contains("config") || !(*step)["config"].is_object() || !step->contains("state_file") || !(*step)["state_file"].is_string())
      bad("the normaliser step lacks \"config\" or \"state_file\"; expected both");
    const auto& cfg = (*step)["config"];
    policy_normalizer n;
    if (cfg.contains("eps")) n.eps_ = detail::config_number(cfg["eps"], "eps", pre.string());
    if (!(n.eps_ > 0)) bad(cat("eps is ", n.eps_, "; expected > 0"));
    if (!cfg.contains("features") || !cfg.contains("norm_map")) bad("the normaliser config lacks \"features\" or \"norm_map\"; expected both");
    const auto features = detail::lerobot_features(cfg["features"], "features", pre.string());
    const auto& map = cfg["norm_map"];
    const std::string state_name = (*step)["state_file"].get<std::string>();
    if (state_name.find('/') != std::string::npos || state_name.find('\\') != std::string::npos)
      bad(cat("state_file \"", state_name, "\" is not a plain file name; expected a file next to policy_preprocessor.json"));
    const auto stats = safetensors_file::load(folder / state_name);
    for (const auto& f : features) {
      if (f.type == "VISUAL") continue;  // images are the camera encoder's business
      feature out;
      const std::string mode = map.contains(f.type) && map[f.type].is_string() ? map[f.type].get<std::string>() : "IDENTITY";
      const char *lo = nullptr, *hi = nullptr;
      if (mode == "MIN_MAX") out.mode = normalization_mode::min_max, lo = "min", hi = "max";
      else if (mode == "MEAN_STD") out.mode = normalization_mode::mean_std, lo = "mean", hi = "std";
      else if (mode == "QUANTILES") out.mode = normalization_mode::quantiles, lo = "q01", hi = "q99";
      else if (mode == "QUANTILE10") out.mode = normalization_mode::quantile10, lo = "q10", hi = "q90";
      else if (mode != "IDENTITY") bad(cat("norm_map gives \"", mode, "\" for ", f.type, "; expected MIN_MAX, MEAN_STD, QUANTILES, QUANTILE10 or IDENTITY"));
      // LeRobot leaves a feature without statistics unchanged.
      if (lo && stats.contains(f.name + "." + lo) && stats.contains(f.name + "." + hi)) {
        out.low = read_stat(stats, f.name + "." + lo, f.shape[0]);
        out.high = read_stat(stats, f.name + "." + hi, f.shape[0]);
      } else {
        out.mode = normalization_mode::identity;
      }
      n.features_[f.name] = std::move(out);
    }
    return n;
  }

  /// The statistics as LeRobot kept them before its processor pipelines: in the policy's state dict
  /// (`weights`, its model.safetensors), "normalize_inputs.buffer_<feature, dots as _>.<stat>" for the
  /// observations and "unnormalize_outputs.buffer_action.<stat>" for the action, with the modes of the
  /// config's normalization_mapping. Those releases computed MIN_MAX as (x − min)/(max − min + 1e-8)·2 − 1
  /// and back as (x + 1)/2·(max − min) + min, and MEAN_STD as (x − mean)/(std + 1e-8); legacy() is true.
  static policy_normalizer load_legacy(const lerobot_diffusion_config& config, const safetensors_file& weights) {
    using detail::cat;
    policy_normalizer n;
    n.legacy_ = true;
    auto add = [&](const lerobot_feature& f, const std::string& prefix) {
      if (f.type == "VISUAL") return;
      feature out;
      const auto it = config.normalization_mapping.find(f.type);
      const std::string mode = it == config.normalization_mapping.end() ? "IDENTITY" : it->second;
      std::string buffer = f.name;
      for (char& ch : buffer)
        if (ch == '.') ch = '_';
      const std::string base = prefix + buffer + ".";
      const char *lo = nullptr, *hi = nullptr;
      if (mode == "MIN_MAX") out.mode = normalization_mode::min_max, lo = "min", hi = "max";
      else if (mode == "MEAN_STD") out.mode = normalization_mode::mean_std, lo = "mean", hi = "std";
      else if (mode != "IDENTITY")
        detail::fail(error_kind::model, "normalization_mapping gives \"", mode, "\" for ", f.type, " in a policy with its statistics in the state dict; "
                     "expected MIN_MAX, MEAN_STD or IDENTITY (the modes of the LeRobot releases that stored them so)");
      if (lo) {
        if (!weights.contains(base + lo) || !weights.contains(base + hi))
          detail::fail(error_kind::model, weights.origin(), " lacks \"", base, lo, "\" or \"", base, hi, "\"; expected the ", mode,
                       " statistics of feature \"", f.name, "\"");
        out.low = read_stat(weights, base + lo, f.shape[0]);
        out.high = read_stat(weights, base + hi, f.shape[0]);
      }
      n.features_[f.name] = std::move(out);
    };
    for (const auto& f : config.input_features) add(f, "normalize_inputs.buffer_");
    for (const auto& f : config.output_features) add(f, "unnormalize_outputs.buffer_");
    return n;
  }

  /// Builds a normaliser from statistics given directly.
  policy_normalizer(std::map<std::string, feature> features, double eps = 1e-8) : features_(std::move(features)), eps_(eps) {}

  /// Whether the statistics came from a LeRobot release before the processor pipelines, whose formulas
  /// differ slightly (load_legacy).
  bool legacy() const noexcept { return legacy_; }

  /// Whether the normaliser has statistics (or an identity entry) for `name`.
  bool has(const std::string& name) const { return features_.count(name) > 0; }
  /// The statistics of `name`. \throws diffuse::error (argument) for an unknown feature.
  const feature& get(const std::string& name) const {
    const auto it = features_.find(name);
    if (it == features_.end()) detail::fail(error_kind::argument, "no normalisation entry for feature \"", name, "\"; expected one of the policy's features");
    return it->second;
  }

  /// values (rows × dim, dim the feature's size) ← normalised, in place, as LeRobot's normaliser in S.
  void normalize(const std::string& name, std::span<S> values) const { apply(name, values, false); }
  /// values ← unnormalised (model space → the robot's units), in place.
  void unnormalize(const std::string& name, std::span<S> values) const { apply(name, values, true); }

 private:
  policy_normalizer() = default;
  std::map<std::string, feature> features_;
  double eps_ = 1e-8;
  bool legacy_ = false;

  static std::vector<double> read_stat(const safetensors_file& f, const std::string& name, int dim) {
    const auto& info = f.info(name);
    std::size_t count = 1;
    for (auto d : info.shape) count *= static_cast<std::size_t>(d);
    if (count != static_cast<std::size_t>(dim))
      detail::fail(error_kind::model, "statistic \"", name, "\" in ", f.origin(), " has ", count, " values; expected ", dim, " (the feature's size)");
    auto v = f.read<double>(name);
    for (double x : v)
      if (!std::isfinite(x)) detail::fail(error_kind::model, "statistic \"", name, "\" in ", f.origin(), " is not finite; expected finite statistics");
    return v;
  }

  void apply(const std::string& name, std::span<S> values, bool inverse) const {
    const feature& f = get(name);
    if (f.mode == normalization_mode::identity) return;
    const std::size_t dim = f.low.size();
    if (values.size() % dim != 0)
      detail::fail(error_kind::shape, "got ", values.size(), " values for feature \"", name, "\"; expected a multiple of its size ", dim);
    // In S, operation by operation as LeRobot evaluates it on tensors of the statistics' dtype.
    const S eps = static_cast<S>(eps_);
    for (std::size_t i = 0; i < values.size(); ++i) {
      const std::size_t k = i % dim;
      const S lo = static_cast<S>(f.low[k]), hi = static_cast<S>(f.high[k]);
      S& x = values[i];
      if (legacy_) {
        if (f.mode == normalization_mode::mean_std) x = inverse ? x * hi + lo : (x - lo) / (hi + eps);
        else if (!inverse) x = (x - lo) / (hi - lo + eps) * S(2) - S(1);
        else x = (x + S(1)) / S(2) * (hi - lo) + lo;
        continue;
      }
      if (f.mode == normalization_mode::mean_std) {
        x = inverse ? x * hi + lo : (x - lo) / (hi + eps);
      } else {
        S denom = hi - lo;
        if (denom == S(0)) denom = eps;
        if (!inverse) x = S(2) * (x - lo) / denom - S(1);
        else if (f.mode == normalization_mode::min_max) x = (x + S(1)) / S(2) * denom + lo;
        else x = (x + S(1)) * denom / S(2) + lo;  // the quantile modes' order of operations
      }
    }
  }
};

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
