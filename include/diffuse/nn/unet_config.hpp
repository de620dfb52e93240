#pragma once
/// \file
/// The configuration of a diffusers UNet2DModel (its config.json), parsed strictly.
///
/// Every key diffusers writes for UNet2DModel is known here. Options the reference UNet implements are
/// read; options it does not implement are accepted only at the value that means "off" (e.g.
/// `class_embed_type: null`) and refused otherwise, so a model is never run with a setting silently
/// ignored. Unknown keys are refused too, except the bookkeeping keys that start with "_".

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "diffuse/detail/json.hpp"
#include "diffuse/detail/read_file.hpp"
#include "diffuse/error.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// How a ResNet block injects the time embedding (diffusers' resnet_time_scale_shift).
enum class time_conditioning {
  add,          ///< "default": h = norm2(h + proj(temb))
  scale_shift,  ///< "scale_shift": h = norm2(h)·(1 + scale) + shift
};

/// The options of diffusers' UNet2DModel the reference UNet implements.
struct unet_config {
  /// sample_size (height); the default generation size only.
  int sample_height = 32, sample_width = 32;  ///< sample_size; the default generation size only
  /// Channels of the input sample.
  int in_channels = 3, out_channels = 3;      ///< out = 2·in for a learned variance
  bool center_input_sample = false;           ///< x ← 2x − 1 before the first convolution
  bool flip_sin_to_cos = true;                ///< cos half first in the time embedding
  double freq_shift = 0;                      ///< frequencies exp(−ln(10⁴)·k / (half − freq_shift))
  /// One entry per resolution level, from the finest: DownBlock2D or AttnDownBlock2D.
  std::vector<std::string> down_block_types{"DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"};
  /// One entry per level, from the coarsest: UpBlock2D or AttnUpBlock2D.
  std::vector<std::string> up_block_types{"AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"};
  std::vector<int> block_out_channels{224, 448, 672, 896};  ///< channels of each level, from the finest
  int layers_per_block = 2;  ///< ResNet blocks per down level (up levels have one more)
  double mid_block_scale_factor = 1;  ///< mid-block ResNet and attention outputs are divided by it
  int downsample_padding = 1;         ///< 1: pad 1 all round; 0: pad right and bottom by 1
  std::optional<int> attention_head_dim = 8;  ///< none: one head over all channels
  int norm_num_groups = 32;  ///< groups of every group norm (channels must be divisible by it)
  std::optional<int> attn_norm_num_groups;  ///< mid-block attention's group norm; see mid_attention_groups()
  double norm_eps = 1e-5;  ///< ε of every group norm
  /// resnet_time_scale_shift: how the time embedding enters the ResNet blocks.
  time_conditioning time_scale_shift = time_conditioning::add;
  bool add_attention = true;              ///< attention in the mid block
  std::optional<int> num_class_embeds;    ///< class-conditional when set
  std::optional<int> num_train_timesteps; ///< informative only

  /// Number of resolution levels.
  int levels() const { return static_cast<int>(block_out_channels.size()); }
  /// The spatial size must be divisible by this (one halving per level but the last).
  int downsampling_factor() const { return 1 << (levels() - 1); }
  /// Width of the time embedding MLP (4 × the first block's channels).
  int time_embed_dim() const { return 4 * block_out_channels.front(); }
  /// Groups of the mid-block attention's group norm, or 0 for none: diffusers gives it one only when
  /// attn_norm_num_groups is set or the ResNets use "default" time conditioning.
  int mid_attention_groups() const {
    if (attn_norm_num_groups) return *attn_norm_num_groups;
    return time_scale_shift == time_conditioning::add ? norm_num_groups : 0;
  }
  /// Whether a block type name has attention ("AttnDownBlock2D", "AttnUpBlock2D").
  static bool is_attention_block(const std::string& type) { return type.rfind("Attn", 0) == 0; }

  /// Checks the combination; throws diffuse::error(model) naming the first inconsistency.
  void validate(const std::string& origin = "UNet config") const;
  /// Parses config.json text.
  static unet_config from_json(const std::string& text, const std::string& origin = "config.json");
  /// Reads and parses a config.json file.
  /// \throws diffuse::error (io) when the path is not a readable regular file (a directory, FIFO or device
  ///         is named as such) or is larger than 32 MiB; (model) as from_json.
  static unet_config load(const std::filesystem::path& path);
};

namespace detail {

[[noreturn]] inline void bad_config(const std::string& origin, const std::string& what) { fail(error_kind::model, origin, ": ", what); }

inline int config_int(const nlohmann::json& v, const std::string& key, const std::string& origin, int lo, int hi) {
  if (!v.is_number_integer()) bad_config(origin, cat("\"", key, "\" is ", v.dump(), "; expected an integer"));
  const auto x = v.get<std::int64_t>();
  if (x < lo || x > hi) bad_config(origin, cat("\"", key, "\" is ", x, "; expected an integer in [", lo, ", ", hi, "]"));
  return static_cast<int>(x);
}

inline double config_number(const nlohmann::json& v, const std::string& key, const std::string& origin) {
  if (!v.is_number()) bad_config(origin, cat("\"", key, "\" is ", v.dump(), "; expected a number"));
  const double x = v.get<double>();
  if (!std::isfinite(x)) bad_config(origin, cat("\"", key, "\" is not finite; expected a finite number"));
  return x;
}

inline bool config_bool(const nlohmann::json& v, const std::string& key, const std::string& origin) {
  if (!v.is_boolean()) bad_config(origin, cat("\"", key, "\" is ", v.dump(), "; expected true or false"));
  return v.get<bool>();
}

inline std::vector<std::string> config_strings(const nlohmann::json& v, const std::string& key, const std::string& origin) {
  if (!v.is_array() || v.empty() || v.size() > 8) bad_config(origin, cat("\"", key, "\" is ", v.dump(), "; expected a list of 1 to 8 block names"));
  std::vector<std::string> out;
  for (const auto& e : v) {
    if (!e.is_string()) bad_config(origin, cat("\"", key, "\" holds ", e.dump(), "; expected block names as strings"));
    out.push_back(e.get<std::string>());
  }
  return out;
}

}  // namespace detail

inline void unet_config::validate(const std::string& o) const {
  using detail::cat;
  auto bad = [&](const std::string& s) { detail::bad_config(o, s); };
  if (block_out_channels.empty()) bad("block_out_channels is empty; expected one channel count per level");
  if (down_block_types.size() != block_out_channels.size() || up_block_types.size() != block_out_channels.size())
    bad(cat("down_block_types has ", down_block_types.size(), " entries, up_block_types ", up_block_types.size(), " and block_out_channels ",
            block_out_channels.size(), "; expected the same length"));
  for (const auto& t : down_block_types)
    if (t != "DownBlock2D" && t != "AttnDownBlock2D")
      bad(cat("down block type \"", t, "\" is not supported; expected DownBlock2D or AttnDownBlock2D"));
  for (const auto& t : up_block_types)
    if (t != "UpBlock2D" && t != "AttnUpBlock2D") bad(cat("up block type \"", t, "\" is not supported; expected UpBlock2D or AttnUpBlock2D"));
  if (in_channels < 1 || out_channels < 1) bad("in_channels and out_channels must be >= 1");
  if (layers_per_block < 1 || layers_per_block > 16) bad(cat("layers_per_block is ", layers_per_block, "; expected 1 to 16"));
  if (downsample_padding != 0 && downsample_padding != 1) bad(cat("downsample_padding is ", downsample_padding, "; expected 0 or 1"));
  if (!(norm_eps > 0)) bad(cat("norm_eps is ", norm_eps, "; expected > 0"));
  if (!(mid_block_scale_factor > 0)) bad(cat("mid_block_scale_factor is ", mid_block_scale_factor, "; expected > 0"));
  if (block_out_channels.front() % 2 != 0) bad(cat("block_out_channels[0] is ", block_out_channels.front(), "; expected an even number (time embedding)"));
  if (!(freq_shift < block_out_channels.front() / 2)) bad(cat("freq_shift is ", freq_shift, "; expected < block_out_channels[0] / 2"));
  if (num_class_embeds && *num_class_embeds < 1) bad(cat("num_class_embeds is ", *num_class_embeds, "; expected >= 1 or null"));
  if (sample_height < 1 || sample_width < 1) bad("sample_size must be >= 1");
  auto check_groups = [&](int channels, int groups, const char* where) {
    if (groups < 1 || channels % groups != 0)
      bad(cat(where, " has ", channels, " channels, not divisible into ", groups, " groups; expected norm groups dividing every channel count"));
  };
  auto check_heads = [&](int channels, const char* where) {
    const int d = attention_head_dim.value_or(channels);
    if (d < 1 || channels % d != 0) bad(cat(where, " has ", channels, " channels, not divisible by attention_head_dim ", d));
  };
  for (int i = 0; i < levels(); ++i) {
    const int c = block_out_channels[i];
    if (c < 1) bad("block_out_channels must be >= 1");
    check_groups(c, norm_num_groups, "a block");
    if (is_attention_block(down_block_types[i])) check_heads(c, "an attention down block");
  }
  // Up-block ResNets see concatenated channels.
  const int L = levels();
  for (int i = 0; i < L; ++i) {
    const int out = block_out_channels[L - 1 - i], prev = i == 0 ? block_out_channels[L - 1] : block_out_channels[L - i];
    const int cin = block_out_channels[std::max(L - 2 - i, 0)];
    check_groups(prev + out, norm_num_groups, "an up block input");
    check_groups(out + out, norm_num_groups, "an up block input");
    check_groups(out + cin, norm_num_groups, "an up block input");
    if (is_attention_block(up_block_types[i])) check_heads(out, "an attention up block");
  }
  if (add_attention) {
    check_heads(block_out_channels.back(), "the mid block");
    if (mid_attention_groups() > 0) check_groups(block_out_channels.back(), mid_attention_groups(), "the mid-block attention");
  }
}

inline unet_config unet_config::from_json(const std::string& text, const std::string& origin) {
  using nlohmann::json;
  using detail::cat;
  auto bad = [&](const std::string& s) { detail::bad_config(origin, s); };
  json j = detail::parse_config_json(text, "options", bad);
  if (!j.is_object()) bad("expected a JSON object of UNet2DModel options");
  if (j.contains("_class_name") && j["_class_name"] != "UNet2DModel")
    bad(cat("_class_name is ", j["_class_name"].dump(), "; expected \"UNet2DModel\""));

  unet_config c;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    if (k.rfind('_', 0) == 0) continue;  // _class_name, _diffusers_version, _name_or_path
    if (k == "sample_size") {
      if (v.is_array()) {
        if (v.size() != 2) bad(cat("sample_size is ", v.dump(), "; expected an integer or [height, width]"));
        c.sample_height = detail::config_int(v[0], k, origin, 1, 1 << 16);
        c.sample_width = detail::config_int(v[1], k, origin, 1, 1 << 16);
      } else if (!v.is_null()) {
        c.sample_height = c.sample_width = detail::config_int(v, k, origin, 1, 1 << 16);
      }
    } else if (k == "in_channels") c.in_channels = detail::config_int(v, k, origin, 1, 4096);
    else if (k == "out_channels") c.out_channels = detail::config_int(v, k, origin, 1, 4096);
    else if (k == "center_input_sample") c.center_input_sample = detail::config_bool(v, k, origin);
    else if (k == "flip_sin_to_cos") c.flip_sin_to_cos = detail::config_bool(v, k, origin);
    else if (k == "freq_shift") c.freq_shift = detail::config_number(v, k, origin);
    else if (k == "down_block_types") c.down_block_types = detail::config_strings(v, k, origin);
    else if (k == "up_block_types") c.up_block_types = detail::config_strings(v, k, origin);
    else if (k == "block_out_channels") {
      if (!v.is_array() || v.empty() || v.size() > 8) bad(cat("block_out_channels is ", v.dump(), "; expected a list of 1 to 8 integers"));
      c.block_out_channels.clear();
      for (const auto& e : v) c.block_out_channels.push_back(detail::config_int(e, k, origin, 1, 8192));
    } else if (k == "layers_per_block") c.layers_per_block = detail::config_int(v, k, origin, 1, 16);
    else if (k == "mid_block_scale_factor") c.mid_block_scale_factor = detail::config_number(v, k, origin);
    else if (k == "downsample_padding") c.downsample_padding = detail::config_int(v, k, origin, 0, 1);
    else if (k == "attention_head_dim") {
      if (v.is_null()) c.attention_head_dim.reset();
      else c.attention_head_dim = detail::config_int(v, k, origin, 1, 8192);
    } else if (k == "norm_num_groups") c.norm_num_groups = detail::config_int(v, k, origin, 1, 8192);
    else if (k == "attn_norm_num_groups") {
      if (v.is_null()) c.attn_norm_num_groups.reset();
      else c.attn_norm_num_groups = detail::config_int(v, k, origin, 1, 8192);
    } else if (k == "norm_eps") c.norm_eps = detail::config_number(v, k, origin);
    else if (k == "resnet_time_scale_shift") {
      if (v == "default") c.time_scale_shift = time_conditioning::add;
      else if (v == "scale_shift") c.time_scale_shift = time_conditioning::scale_shift;
      else bad(cat("resnet_time_scale_shift is ", v.dump(), "; expected \"default\" or \"scale_shift\""));
    } else if (k == "add_attention") c.add_attention = detail::config_bool(v, k, origin);
    else if (k == "num_class_embeds") {
      if (v.is_null()) c.num_class_embeds.reset();
      else c.num_class_embeds = detail::config_int(v, k, origin, 1, 1 << 20);
    } else if (k == "num_train_timesteps") {
      if (v.is_null()) c.num_train_timesteps.reset();
      else c.num_train_timesteps = detail::config_int(v, k, origin, 1, 1 << 20);
    } else if (k == "dropout") {
      detail::config_number(v, k, origin);  // training only
    } else if (k == "time_embedding_type") {
      if (v != "positional") bad(cat("time_embedding_type ", v.dump(), " is not supported; expected \"positional\""));
    } else if (k == "act_fn") {
      if (v != "silu") bad(cat("act_fn ", v.dump(), " is not supported; expected \"silu\""));
    } else if (k == "class_embed_type") {
      if (!v.is_null()) bad(cat("class_embed_type ", v.dump(), " is not supported; expected null (an embedding table from num_class_embeds)"));
    } else if (k == "time_embedding_dim") {
      if (!v.is_null()) bad(cat("time_embedding_dim ", v.dump(), " is not supported; expected null (4 × block_out_channels[0])"));
    } else if (k == "downsample_type") {
      if (v != "conv") bad(cat("downsample_type ", v.dump(), " is not supported; expected \"conv\""));
    } else if (k == "upsample_type") {
      if (v != "conv") bad(cat("upsample_type ", v.dump(), " is not supported; expected \"conv\""));
    } else if (k == "mid_block_type") {
      // diffusers 0.33 on; null drops the mid block, which the reference UNet always has.
      if (v != "UNetMidBlock2D") bad(cat("mid_block_type ", v.dump(), " is not supported; expected \"UNetMidBlock2D\""));
    } else if (k == "time_embedding_act_fn") {
      if (!v.is_null()) bad(cat("time_embedding_act_fn ", v.dump(), " is not supported; expected null"));
    } else {
      bad(cat("unknown option \"", k, "\"; expected only UNet2DModel options"));
    }
  }
  c.validate(origin);
  return c;
}

inline unet_config unet_config::load(const std::filesystem::path& path) {
  return from_json(detail::read_text_file(path, "config.json"), path.string());
}

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
