// Load a diffusers UNet2DModel folder and its scheduler_config.json, then sample with DDIM and
// classifier-free guidance. Run from the repository root, or pass the folder: load_model models/digits
#include <diffuse/ddpm.hpp>
#include <diffuse/io/scheduler_config.hpp>
#include <diffuse/nn/unet.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <span>
#include <vector>

int main(int argc, char** argv) {
  const std::filesystem::path folder = argc > 1 ? argv[1] : "models/digits";
  try {
    // config.json + diffusion_pytorch_model.safetensors: an unknown option or a missing tensor throws.
    auto unet = diffuse::nn::unet2d<float>::load(folder);
    // The schedule, prediction type, clipping and spacing the model was trained with.
    const auto sc = diffuse::scheduler_config::load(folder / "scheduler_config.json");

    const auto& cfg = unet.config();
    const diffuse::ddim_sampler sampler(sc.schedule, sc.timesteps(10),
                                        {.prediction = sc.prediction,
                                         .set_alpha_to_one = sc.set_alpha_to_one,
                                         .processing = sc.processing});
    const diffuse::sample_shape shape{.batch = 2,
                                      .channels = static_cast<std::size_t>(cfg.in_channels),
                                      .spatial = static_cast<std::size_t>(cfg.sample_height) * cfg.sample_width};
    std::vector<float> x(shape.numel());
    diffuse::fill_initial_noise<float>(x, shape, /*seed=*/0);

    if (unet.class_conditional()) {
      // The digits model: classes 0-9, class 10 is "no class". One network call per step runs the
      // conditional half (digits 3 and 7) and the unconditional half together.
      const int null_class = *cfg.num_class_embeds - 1;
      const std::vector<int> labels{3, 7, null_class, null_class};
      auto guided = diffuse::batched_cfg_model<float, decltype(unet.conditioned(labels))>(unet.conditioned(labels), shape, /*w=*/2.0);
      diffuse::sample(sampler, guided, std::span<float>(x), shape, {.seed = 0});
    } else {
      diffuse::sample(sampler, unet, std::span<float>(x), shape, {.seed = 0});  // the UNet is a Denoiser
    }
    const auto [lo, hi] = std::minmax_element(x.begin(), x.end());
    std::printf("%zu images of %dx%d, values in [%.2f, %.2f]\n", shape.batch, cfg.sample_height, cfg.sample_width, *lo, *hi);
  } catch (const diffuse::error& e) {
    std::fprintf(stderr, "%s\n", e.what());  // e.g. [diffuse.io] cannot open .../config.json; expected ...
    return 1;
  }
  return 0;
}
