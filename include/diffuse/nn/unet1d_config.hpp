#pragma once
/// \file
/// The configuration of Diffusion Policy's 1-D temporal UNet (ConditionalUnet1D; LeRobot's
/// DiffusionConditionalUnet1d is the same network without local conditioning), parsed strictly.
///
/// The config.json this reads is the one tools/convert_diffusion_policy.py writes next to the weights:
/// ConditionalUnet1D's constructor arguments by their names, plus bookkeeping keys starting with "_"
/// (`"_class_name": "ConditionalUnet1D"`). LeRobot policy folders have a config.json of their own, read
/// by io/lerobot_policy.hpp, which yields this same structure.

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "diffuse/detail/json.hpp"
#include "diffuse/detail/read_file.hpp"
#include "diffuse/error.hpp"
#include "diffuse/nn/unet_config.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// How the weights of a 1-D UNet are named: the two reference implementations spell the same
/// parameters differently.
enum class unet1d_naming {
  diffusion_policy,  ///< ConditionalUnet1D: "blocks.0.block.0", "down_modules.0.2.conv", local_cond_encoder
  lerobot,           ///< DiffusionConditionalUnet1d: "conv1.block.0", "down_modules.0.2" (no local conditioning)
};

/// The options of ConditionalUnet1D.
struct unet1d_config {
  int input_dim = 2;                       ///< action dimension: the sample is (batch, horizon, input_dim)
  int local_cond_dim = 0;                  ///< per-time-step conditioning channels; 0: none (null)
  int global_cond_dim = 0;                 ///< conditioning vector length; 0: none (null)
  int diffusion_step_embed_dim = 256;      ///< width of the step embedding and its MLP's output
  std::vector<int> down_dims{256, 512, 1024};  ///< channels of each level, from the finest
  int kernel_size = 3;                     ///< taps of every Conv1d block (odd: "same" padding)
  int n_groups = 8;                        ///< groups of the residual blocks' group norms
  bool cond_predict_scale = false;         ///< FiLM predicts a scale as well as a bias
  unet1d_naming naming = unet1d_naming::diffusion_policy;  ///< how the weight names are spelled
  std::string weight_prefix;               ///< prefix of every UNet tensor in the file ("diffusion.unet." for LeRobot)

  /// Groups of the output head's Conv1d block: the reference builds it with Conv1dBlock's default of 8,
  /// whatever n_groups says.
  static constexpr int final_groups = 8;

  /// Number of resolution levels (down_dims entries).
  int levels() const { return static_cast<int>(down_dims.size()); }
  /// The horizon must be divisible by this: one halving per level but the last.
  int downsampling_factor() const { return 1 << (levels() - 1); }
  /// Length of the FiLM conditioning vector: the step embedding, then global_cond.
  int cond_dim() const { return diffusion_step_embed_dim + global_cond_dim; }

  /// Checks the combination; throws diffuse::error(model) naming the first inconsistency.
  void validate(const std::string& origin = "UNet1D config") const;
  /// Parses the config.json text of a converted Diffusion Policy checkpoint.
  static unet1d_config from_json(const std::string& text, const std::string& origin = "config.json");
  /// Reads and parses such a config.json file.
  /// \throws diffuse::error (io) when the path is not a readable regular file; (model) as from_json.
  static unet1d_config load(const std::filesystem::path& path);
};

inline void unet1d_config::validate(const std::string& o) const {
  using detail::cat;
  auto bad = [&](const std::string& s) { detail::bad_config(o, s); };
  if (down_dims.empty() || down_dims.size() > 8) bad(cat("down_dims has ", down_dims.size(), " entries; expected 1 to 8 levels"));
  if (input_dim < 1) bad(cat("input_dim is ", input_dim, "; expected >= 1"));
  if (local_cond_dim < 0 || global_cond_dim < 0) bad("local_cond_dim and global_cond_dim must be >= 0 (0: none)");
  if (local_cond_dim > 0 && naming == unet1d_naming::lerobot)
    bad("local conditioning with LeRobot weight names; expected local_cond_dim = 0 (LeRobot's UNet has no local conditioning)");
  if (diffusion_step_embed_dim < 4 || diffusion_step_embed_dim % 2 != 0)
    bad(cat("diffusion_step_embed_dim is ", diffusion_step_embed_dim, "; expected an even number >= 4 (sines and cosines of half of it, "
            "frequencies spaced over half - 1 intervals)"));
  if (kernel_size < 1 || kernel_size % 2 == 0)
    bad(cat("kernel_size is ", kernel_size, "; expected an odd number (padding kernel_size // 2 keeps the horizon only for odd kernels)"));
  if (n_groups < 1) bad(cat("n_groups is ", n_groups, "; expected >= 1"));
  for (int d : down_dims) {
    if (d < 1) bad(cat("down_dims holds ", d, "; expected channel counts >= 1"));
    if (d % n_groups != 0) bad(cat("down_dims holds ", d, ", not divisible into n_groups = ", n_groups, " groups; expected n_groups dividing every level's channels"));
  }
  if (down_dims.front() % final_groups != 0)
    bad(cat("down_dims[0] is ", down_dims.front(), "; expected a multiple of 8 (the output block's group norm has 8 groups whatever n_groups is, "
            "as in the reference)"));
}

inline unet1d_config unet1d_config::from_json(const std::string& text, const std::string& origin) {
  using detail::cat;
  using nlohmann::json;
  auto bad = [&](const std::string& s) { detail::bad_config(origin, s); };
  json j = detail::parse_config_json(text, "options", bad);
  if (!j.is_object()) bad("expected a JSON object of ConditionalUnet1D options");
  if (j.contains("_class_name") && j["_class_name"] != "ConditionalUnet1D")
    bad(cat("_class_name is ", j["_class_name"].dump(), "; expected \"ConditionalUnet1D\""));
  unet1d_config c;
  auto optional_dim = [&](const json& v, const std::string& k) { return v.is_null() ? 0 : detail::config_int(v, k, origin, 1, 1 << 20); };
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    if (k.rfind('_', 0) == 0) continue;
    if (k == "input_dim") c.input_dim = detail::config_int(v, k, origin, 1, 1 << 16);
    else if (k == "local_cond_dim") c.local_cond_dim = optional_dim(v, k);
    else if (k == "global_cond_dim") c.global_cond_dim = optional_dim(v, k);
    else if (k == "diffusion_step_embed_dim") c.diffusion_step_embed_dim = detail::config_int(v, k, origin, 1, 1 << 16);
    else if (k == "down_dims") {
      if (!v.is_array() || v.empty() || v.size() > 8) bad(cat("down_dims is ", v.dump(), "; expected a list of 1 to 8 integers"));
      c.down_dims.clear();
      for (const auto& e : v) c.down_dims.push_back(detail::config_int(e, k, origin, 1, 1 << 16));
    } else if (k == "kernel_size") c.kernel_size = detail::config_int(v, k, origin, 1, 1023);
    else if (k == "n_groups") c.n_groups = detail::config_int(v, k, origin, 1, 1 << 16);
    else if (k == "cond_predict_scale") c.cond_predict_scale = detail::config_bool(v, k, origin);
    else bad(cat("unknown option \"", k, "\"; expected only ConditionalUnet1D options (input_dim, local_cond_dim, global_cond_dim, "
                 "diffusion_step_embed_dim, down_dims, kernel_size, n_groups, cond_predict_scale)"));
  }
  if (!j.contains("input_dim")) bad("no \"input_dim\"; expected the action dimension");
  c.validate(origin);
  return c;
}

inline unet1d_config unet1d_config::load(const std::filesystem::path& path) {
  return from_json(detail::read_text_file(path, "config.json"), path.string());
}

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
