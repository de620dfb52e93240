// Smallest use of the packaged diffuse: a cosine schedule and a few DDIM steps with a lambda model.
// Exits 0 only if the result is finite.
#include <diffuse/ddpm.hpp>

#include <cmath>
#include <cstdio>
#include <span>
#include <vector>

int main() {
  const auto schedule = diffuse::noise_schedule::cosine(1000);
  const diffuse::ddim_sampler sampler(schedule, diffuse::make_timesteps(1000, 4, diffuse::timestep_spacing::trailing));
  const diffuse::sample_shape shape{.batch = 1, .channels = 2, .spatial = 8};
  std::vector<float> x(shape.numel());
  diffuse::fill_initial_noise<float>(x, shape, /*seed=*/1);
  auto model = [&schedule](std::span<const float> x_t, int t, std::span<float> eps) {
    const auto k = static_cast<float>(std::sqrt(1.0 - schedule.alpha_bar(t)));  // exact ε for N(0, 1) data
    for (std::size_t i = 0; i < x_t.size(); ++i) eps[i] = k * x_t[i];
  };
  diffuse::sample(sampler, model, std::span<float>(x), shape, {.seed = 1});
  for (const float v : x)
    if (!std::isfinite(v)) return 1;
  std::printf("diffuse %d.%d.%d test_package: ok\n", DIFFUSE_VERSION_MAJOR, DIFFUSE_VERSION_MINOR, DIFFUSE_VERSION_PATCH);
  return 0;
}
