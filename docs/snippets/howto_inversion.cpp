// DDIM inversion: find the noise x_T that deterministic DDIM maps back to a given sample.
#include <diffuse/ddpm.hpp>
#include <diffuse/gaussian_mixture.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <span>
#include <utility>
#include <vector>

int main() {
  const auto schedule = diffuse::noise_schedule::linear(1000);
  const diffuse::gaussian_mixture data({0.5, 0.5}, {{-2.0}, {2.0}}, {0.5, 0.5});  // stand-in network
  auto model = data.denoiser<float>(schedule, diffuse::prediction_type::epsilon);
  const auto list = diffuse::make_timesteps(1000, 250, diffuse::timestep_spacing::linspace);
  const diffuse::sample_shape shape{.batch = 5, .channels = 1, .spatial = 1};
  // Points near the modes: between them the map is ill-conditioned, and small errors can send a point
  // to the other mode.
  const std::vector<float> x0{-2.5f, -2.0f, -1.5f, 1.8f, 2.2f};

  // Walk the list upwards: N − 1 model calls from the lowest timestep to the highest.
  const diffuse::ddim_inversion inversion(schedule, list);
  std::vector<float> x = x0, out(x.size()), next(x.size());
  for (int j = 0; j < inversion.num_steps(); ++j) {
    model(x, inversion.timestep(j), out);
    inversion.step<float>(j, x, out, next, shape);
    std::swap(x, next);
  }
  // x is now the x_T of these samples. DDIM (η = 0) on the same list maps it back.
  diffuse::sample(diffuse::ddim_sampler(schedule, list), model, std::span<float>(x), shape);
  double worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    std::printf("%+.3f -> %+.3f\n", x0[i], x[i]);
    worst = std::max(worst, std::abs(static_cast<double>(x[i] - x0[i])));
  }
  return worst < 0.05 ? 0 : 1;
}
