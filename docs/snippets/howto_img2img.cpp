// img2img: noise an existing sample part of the way, then run only the rest of the list.
#include <diffuse/ddpm.hpp>
#include <diffuse/gaussian_mixture.hpp>

#include <cstdio>
#include <span>
#include <vector>

int main() {
  const auto schedule = diffuse::noise_schedule::cosine(1000);
  const diffuse::gaussian_mixture data({0.5, 0.5}, {{-1.0}, {1.0}}, {0.1, 0.1});  // stand-in network
  auto model = data.denoiser<float>(schedule, diffuse::prediction_type::epsilon);
  const diffuse::ddim_sampler sampler(schedule, diffuse::make_timesteps(1000, 50, diffuse::timestep_spacing::trailing));
  const diffuse::sample_shape shape{.batch = 4, .channels = 1, .spatial = 1};

  const std::vector<float> input{-1.2f, -0.8f, 0.9f, 1.1f};  // the images to edit
  for (double strength : {0.3, 0.9}) {
    // strength 0.3 runs the last 30% of the list: the result stays close to the input.
    const int start = diffuse::img2img_start_index(sampler.num_steps(), strength);
    std::vector<float> x(shape.numel());
    // x = √ᾱ_t input + √(1 − ᾱ_t) ε at the start position's timestep, ε from the x_T noise stream.
    diffuse::img2img_noise<float>(schedule, sampler.timestep(start), input, x, shape, /*seed=*/9);
    diffuse::sample(sampler, model, std::span<float>(x), shape, {.seed = 9, .start_index = start});
    std::printf("strength %.1f: start at position %d (t = %d):", strength, start, sampler.timestep(start));
    for (float v : x) std::printf(" %.3f", v);
    std::printf("\n");
  }
  return 0;
}
