// Flow matching: diffusers' FlowMatchEulerDiscreteScheduler grid (shift, dynamic shifting) and a robot-policy loop.
#include <diffuse/gaussian_mixture.hpp>
#include <diffuse/samplers/flow_euler.hpp>
#include <diffuse/samplers/flow_sigmas.hpp>

#include <cstdio>
#include <span>
#include <vector>

int main() {
  // A flow_prediction model: the velocity v = eps - x0 of x = (1 - sigma) x0 + sigma eps, here the exact one
  // of a two-mode mixture. Its time is sigma * 1000, what diffusers' scheduler passes.
  const diffuse::gaussian_mixture data({0.3, 0.7}, {{-2.0, 0.0}, {2.0, 1.0}}, {0.5, 0.3});
  auto model = data.flow_model<float>(/*time_scale=*/1000.0);  // model(x, double t, out)
  const diffuse::sample_shape shape{.batch = 1000, .channels = 2, .spatial = 1};
  std::vector<float> x(shape.numel());

  // 1. SD3's scheduler_config (shift 3): 20 Euler steps from pure noise; no input scaling, no init_noise_sigma.
  const diffuse::flow_euler_sampler sd3(20, {.shift = 3.0});
  diffuse::fill_initial_noise<float>(x, shape, /*seed=*/1);
  diffuse::solve(sd3, model, std::span<float>(x), shape, {.seed = 1});
  int left = 0;
  for (std::size_t i = 0; i < shape.batch; ++i) left += x[2 * i] < 0.0f;
  std::printf("shift 3, 20 steps: first sigmas %.4f %.4f, last %.4f; %d of 1000 samples in the 0.3 mode\n", sd3.sigma(0), sd3.sigma(1),
              sd3.sigma(19), left);

  // 2. Flux-style resolution-dependent shifting: mu from the image's token count (1024 tokens = 512x512 latents).
  const double mu = diffuse::flow_calculate_shift(1024);
  const diffuse::flow_euler_sampler flux(diffuse::flow_match_custom_sigmas({1.0, 0.75, 0.5, 0.25}, {.use_dynamic_shifting = true, .mu = mu}));
  std::printf("mu = %.4f: sigmas %.4f %.4f %.4f %.4f -> 0\n", mu, flux.sigma(0), flux.sigma(1), flux.sigma(2), flux.sigma(3));

  // 3. A policy's loop: 10 equal steps, model time t in [0, 1] (pi0 integrates from t = 1 to 0).
  const diffuse::flow_euler_sampler policy(diffuse::flow_uniform_times(10, diffuse::flow_direction::noise_at_one));
  auto policy_model = data.flow_model<float>(/*time_scale=*/1.0);
  diffuse::fill_initial_noise<float>(x, shape, /*seed=*/2);
  diffuse::solve(policy, policy_model, std::span<float>(x), shape);
  std::printf("policy loop: model times %.1f %.1f ... %.1f\n", policy.model_time(0), policy.model_time(1), policy.model_time(9));
}
