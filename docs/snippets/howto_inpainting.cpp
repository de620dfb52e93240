// Known values re-imposed every step: image-style inpainting (renoise) and a policy's conditioned trajectory (clamp).
#include <diffuse/gaussian_mixture.hpp>
#include <diffuse/inpaint.hpp>
#include <diffuse/sample.hpp>
#include <diffuse/samplers/ancestral.hpp>
#include <diffuse/samplers/flow_euler.hpp>
#include <diffuse/timesteps.hpp>

#include <cstdio>
#include <span>
#include <vector>

int main() {
  // Two-dimensional data with modes at (-2, -1) and (2, 1): knowing the first coordinate is 2 pins the second near 1.
  const diffuse::gaussian_mixture data({0.5, 0.5}, {{-2.0, -1.0}, {2.0, 1.0}}, {0.5, 0.5});
  const auto schedule = diffuse::noise_schedule::linear(1000);
  const diffuse::sample_shape shape{.batch = 1000, .channels = 2, .spatial = 1};
  std::vector<float> mask(shape.numel(), 0.0f), known(shape.numel(), 0.0f), x(shape.numel());
  for (std::size_t i = 0; i < shape.batch; ++i) {
    mask[2 * i] = 1.0f;   // channel 0 is known ...
    known[2 * i] = 2.0f;  // ... and equals 2
  }

  // 1. Inpainting (RePaint-style replacement): the known part re-noised to each next level, DDPM, 50 steps.
  const diffuse::inpainting painter(diffuse::ddpm_sampler(schedule, diffuse::make_timesteps(1000, 50, diffuse::timestep_spacing::leading)),
                                    diffuse::known_values<float>{mask, known, diffuse::inpaint_mode::renoise, /*seed=*/7}, shape);
  diffuse::fill_initial_noise<float>(x, shape, /*seed=*/3);
  painter.prepare(std::span<float>(x));  // the start, as the loop will see it
  diffuse::sample(painter, data.denoiser<float>(schedule, diffuse::prediction_type::epsilon), std::span<float>(x), shape, {.seed = 3});
  double mean = 0;
  for (std::size_t i = 0; i < shape.batch; ++i) mean += x[2 * i + 1] / 1000.0;
  std::printf("inpainting: known x[0] = %.1f, mean of the unknown x[1] = %.2f (conditional mean 1, marginal 0)\n", x[0], mean);

  // 2. A flow policy's conditioned trajectory: the clean values copied in after every Euler step (clamp).
  const diffuse::inpainting policy(diffuse::flow_euler_sampler(diffuse::flow_uniform_times(10)),
                                   diffuse::known_values<float>{mask, known, diffuse::inpaint_mode::clamp}, shape);
  diffuse::fill_initial_noise<float>(x, shape, /*seed=*/4);
  policy.prepare(std::span<float>(x));
  diffuse::solve(policy, data.flow_model<float>(1.0), std::span<float>(x), shape);
  std::printf("clamped policy: x[0] = %.1f at every step and at the end\n", x[0]);
}
