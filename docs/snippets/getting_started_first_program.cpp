// first_program.cpp: DDIM sampling of 1-D data with a network whose answer is known in closed form.
#include <diffuse/ddpm.hpp>

#include <cmath>
#include <cstdio>
#include <span>
#include <vector>

int main() {
  // The training noise schedule: T = 1000 steps, β from 1e-4 to 0.02 (Ho et al.).
  const auto schedule = diffuse::noise_schedule::linear(1000);

  // The "network". For data x0 ~ N(2, 0.5²) the best possible ε-prediction is known exactly, so this
  // program needs no weights; a real program runs its network here (see docs/howto/own-model.md).
  auto model = [&](std::span<const float> x_t, int t, std::span<float> eps) {
    const double a = schedule.sqrt_alpha_bar(t), b = schedule.sqrt_one_minus_alpha_bar(t);
    const double mean = 2.0, variance = 0.25;
    for (std::size_t i = 0; i < x_t.size(); ++i)
      eps[i] = static_cast<float>(b * (x_t[i] - a * mean) / (a * a * variance + b * b));
  };

  // DDIM with 50 of the 1000 training timesteps, deterministic (η = 0).
  const diffuse::ddim_sampler sampler(schedule, diffuse::make_timesteps(1000, 50, diffuse::timestep_spacing::trailing));

  // 1000 samples of one channel of one element each: shape (N, C, spatial).
  const diffuse::sample_shape shape{.batch = 1000, .channels = 1, .spatial = 1};
  std::vector<float> x(shape.numel());
  diffuse::fill_initial_noise<float>(x, shape, /*seed=*/42);                 // x_T ~ N(0, I)
  diffuse::sample(sampler, model, std::span<float>(x), shape, {.seed = 42});  // x_T -> x_0, in place

  double sum = 0, sum2 = 0;
  for (float v : x) {
    sum += v;
    sum2 += static_cast<double>(v) * v;
  }
  const double n = static_cast<double>(x.size()), mean = sum / n, sd = std::sqrt(sum2 / n - mean * mean);
  std::printf("samples: mean %.3f (data 2), std %.3f (data 0.5)\n", mean, sd);
  return std::abs(mean - 2.0) < 0.1 && std::abs(sd - 0.5) < 0.1 ? 0 : 1;
}
