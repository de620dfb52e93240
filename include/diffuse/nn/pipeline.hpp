#pragma once
/// \file
/// One call from a diffusers folder to a ready UNet and the scheduler settings it was trained with.
///
/// \code
/// auto p = diffuse::nn::load_pipeline<float>("ddpm-cifar10-32");   // model_index.json, unet/, scheduler/
/// diffuse::ddim_sampler sampler(p.scheduler.schedule, p.scheduler.timesteps(50),
///                               {.prediction = p.scheduler.prediction, .processing = p.scheduler.processing});
/// diffuse::sample(sampler, p.unet, std::span<float>(x), shape, {.seed = 0});
/// \endcode

#include <filesystem>

#include "diffuse/io/diffusers_folder.hpp"
#include "diffuse/io/scheduler_config.hpp"
#include "diffuse/nn/unet.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {

/// A loaded diffusers folder: the network, its scheduler settings and where they came from.
template <Real S>
struct pipeline {
  unet2d<S> unet;               ///< the network (config.json + safetensors weights)
  scheduler_config scheduler;   ///< the training schedule and sampling settings (scheduler_config.json)
  diffusers_folder files;       ///< which layout the folder has and where each file was
};

/// Loads a diffusers pipeline folder (model_index.json + unet/ + scheduler/) or a model folder that
/// holds a scheduler_config.json next to config.json.
/// \throws diffuse::error (io) naming both layouts when `folder` is neither, naming the missing
///         scheduler_config.json for a model folder without one, and as unet2d::load and
///         scheduler_config::load.
template <Real S>
pipeline<S> load_pipeline(const std::filesystem::path& folder) {
  diffusers_folder files = diffusers_folder::locate(folder);
  if (!files.scheduler_config)
    diffuse::detail::fail(error_kind::io, folder.string(), " is a model folder without scheduler_config.json; expected the scheduler settings "
                 "there, or a pipeline folder (model_index.json + unet/ + scheduler/)");
  auto unet = unet2d<S>::load(files.unet_config, files.weights);
  auto scheduler = scheduler_config::load(*files.scheduler_config);
  return pipeline<S>{std::move(unet), std::move(scheduler), std::move(files)};
}

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
