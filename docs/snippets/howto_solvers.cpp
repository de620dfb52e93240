// DPM-Solver++ 2M on Karras sigmas, by solve() and by a loop of your own; Euler with a double-time model.
#include <diffuse/gaussian_mixture.hpp>
#include <diffuse/samplers/dpm_solver.hpp>
#include <diffuse/samplers/euler.hpp>

#include <cmath>
#include <cstdio>
#include <span>
#include <vector>

int main() {
  const auto schedule = diffuse::noise_schedule::scaled_linear(1000);
  const diffuse::gaussian_mixture data({0.5, 0.5}, {{-2.0, 0.0}, {2.0, 1.0}}, {0.3, 0.3});
  auto model = data.denoiser<float>(schedule, diffuse::prediction_type::epsilon);  // model(x, int t, out)
  const diffuse::sample_shape shape{.batch = 256, .channels = 2, .spatial = 1};

  // 1. The whole loop: 10 model calls, integer timesteps (diffusers rounds them for DPM-Solver).
  const diffuse::dpm_solver_sampler dpm(schedule, 10, {.kind = diffuse::sigma_kind::karras}, {.order = 2});
  std::vector<float> x(shape.numel());
  diffuse::fill_initial_noise<float>(x, shape, /*seed=*/1);
  diffuse::solve(dpm, model, std::span<float>(x), shape, {.seed = 1});

  // 2. The same chain from your own loop: the multistep history lives in a state you own.
  std::vector<float> y(shape.numel()), out(shape.numel()), next(shape.numel());
  diffuse::fill_initial_noise<float>(y, shape, /*seed=*/1);
  auto state = dpm.make_state<float>(shape);  // allocated once; bound to this solver and shape
  for (int k = 0; k < dpm.num_steps(); ++k) {
    model(y, dpm.timestep(k), out);
    dpm.step<float>(k, {.x = y, .model_output = out, .x_next = next}, shape, state);
    y.swap(next);
  }
  std::printf("solve() and the hand-written loop agree: %s\n", x == y ? "yes" : "no");

  // 3. Euler passes fractional times (999, 946.42, …): the model takes double t. The sampler scales the model
  //    input by 1/sqrt(sigma^2 + 1) and the initial noise by init_noise_sigma, as diffusers' pipelines do.
  const diffuse::euler_sampler euler(schedule, 20);
  auto fractional = [&](std::span<const float> in, double t, std::span<float> eps) { model(in, static_cast<int>(std::lround(t)), eps); };
  diffuse::fill_initial_noise<float>(x, shape, /*seed=*/2);
  diffuse::solve(euler, fractional, std::span<float>(x), shape, {.seed = 2});
  std::printf("Euler: model times %.2f, %.2f, ...; init_noise_sigma %.2f\n", euler.model_time(0), euler.model_time(1), euler.initial_scale());
}
