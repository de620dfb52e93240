#pragma once
/// \file
/// Where the files of a diffusers folder are, in either layout diffusers saves.
///
/// - **model layout**, what `UNet2DModel.save_pretrained(dir)` writes: `config.json` and
///   `diffusion_pytorch_model.safetensors` side by side (diffuse's own models add
///   `scheduler_config.json` there too);
/// - **pipeline layout**, what `DDPMPipeline.save_pretrained(dir)` writes and the hub serves (as
///   google/ddpm-cifar10-32 is laid out): `model_index.json`, `unet/config.json`,
///   `unet/diffusion_pytorch_model.safetensors` and `scheduler/scheduler_config.json`.
///
/// `diffusers_folder::locate(dir)` tells which one `dir` is and returns the paths; the loaders
/// (`nn::unet2d<S>::load`, `nn::load_pipeline`) call it, so either layout loads with one call.

#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "diffuse/detail/json.hpp"
#include "diffuse/detail/read_file.hpp"
#include "diffuse/error.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// The files of a diffusers model or pipeline folder.
struct diffusers_folder {
  /// The two ways diffusers lays a folder out.
  enum class layout {
    model,     ///< config.json + diffusion_pytorch_model.safetensors in the folder itself
    pipeline,  ///< model_index.json + unet/ + scheduler/
  };
  layout kind = layout::model;        ///< which layout the folder has
  std::filesystem::path unet_config;  ///< the UNet2DModel config.json
  std::filesystem::path weights;      ///< its safetensors weights
  /// scheduler_config.json: required in a pipeline; in a model folder only when present.
  std::optional<std::filesystem::path> scheduler_config;
  std::string pipeline_class;   ///< model_index.json's "_class_name", e.g. "DDPMPipeline"; empty for a model folder
  std::string scheduler_class;  ///< model_index.json's scheduler class, e.g. "DDPMScheduler"; empty for a model folder

  /// Finds the files of `folder`, in the pipeline layout when it holds model_index.json, else in the
  /// model layout. The weights are diffusion_pytorch_model.safetensors, or its fp16 variant
  /// (diffusion_pytorch_model.fp16.safetensors) when only that is there.
  /// \throws diffuse::error (io) naming both layouts when the folder is neither, and naming the missing
  ///         file when one of the layout's files is absent (a PyTorch pickle .bin is named as unsupported).
  static diffusers_folder locate(const std::filesystem::path& folder);
};

namespace detail {

inline std::string folder_layouts_expected() {
  return "expected a diffusers model folder (config.json + diffusion_pytorch_model.safetensors) or a diffusers "
         "pipeline folder (model_index.json + unet/ + scheduler/)";
}

/// The weights file of a UNet folder: full precision first, then the fp16 variant.
inline std::filesystem::path locate_weights(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  for (const char* name : {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"})
    if (fs::exists(dir / name)) return dir / name;
  if (fs::exists(dir / "diffusion_pytorch_model.bin"))
    fail(error_kind::io, dir.string(), " holds diffusion_pytorch_model.bin, a PyTorch pickle, which diffuse does not read (it can run "
         "code); expected diffusion_pytorch_model.safetensors (diffusers: save_pretrained(..., safe_serialization=True))");
  fail(error_kind::io, dir.string(), " has no diffusion_pytorch_model.safetensors; expected the UNet's weights there");
}

/// The [library, class] pair of one component in model_index.json, e.g. ["diffusers", "UNet2DModel"].
inline std::string model_index_class(const nlohmann::json& index, const char* component, const std::string& origin) {
  if (!index.contains(component))
    fail(error_kind::io, origin, ": no \"", component, "\" component; expected a pipeline with a unet and a scheduler");
  const nlohmann::json& entry = index[component];
  if (!entry.is_array() || entry.size() != 2 || !entry[1].is_string())
    fail(error_kind::io, origin, ": \"", component, "\" is ", entry.dump(), "; expected [library, class name]");
  return entry[1].get<std::string>();
}

}  // namespace detail

inline diffusers_folder diffusers_folder::locate(const std::filesystem::path& folder) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(folder))
    detail::fail(error_kind::io, folder.string(), " is not a folder; ", detail::folder_layouts_expected());
  diffusers_folder f;
  if (fs::exists(folder / "model_index.json")) {
    const fs::path index_path = folder / "model_index.json";
    const std::string text = detail::read_text_file(index_path, "model_index.json");
    auto bad = [&](const std::string& s) { detail::fail(error_kind::io, index_path.string(), ": ", s); };
    const nlohmann::json index = detail::parse_config_json(text, "pipeline components", bad);
    if (!index.is_object()) bad("expected a JSON object of pipeline components");
    f.kind = layout::pipeline;
    if (index.contains("_class_name") && index["_class_name"].is_string()) f.pipeline_class = index["_class_name"].get<std::string>();
    const std::string unet_class = detail::model_index_class(index, "unet", index_path.string());
    if (unet_class != "UNet2DModel")
      bad(detail::cat("the unet is a ", unet_class, "; expected UNet2DModel, the architecture diffuse's reference UNet implements"));
    f.scheduler_class = detail::model_index_class(index, "scheduler", index_path.string());
    const fs::path unet = folder / "unet", scheduler = folder / "scheduler";
    if (!fs::exists(unet / "config.json")) bad(detail::cat("no unet/config.json next to it; expected the pipeline's UNet in unet/"));
    if (!fs::exists(scheduler / "scheduler_config.json"))
      bad(detail::cat("no scheduler/scheduler_config.json next to it; expected the pipeline's scheduler in scheduler/"));
    f.unet_config = unet / "config.json";
    f.weights = detail::locate_weights(unet);
    f.scheduler_config = scheduler / "scheduler_config.json";
    return f;
  }
  if (!fs::exists(folder / "config.json"))
    detail::fail(error_kind::io, folder.string(), " has neither config.json nor model_index.json; ", detail::folder_layouts_expected());
  f.kind = layout::model;
  f.unet_config = folder / "config.json";
  f.weights = detail::locate_weights(folder);
  if (fs::exists(folder / "scheduler_config.json")) f.scheduler_config = folder / "scheduler_config.json";
  return f;
}

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
