// A double model driven with float samples: the element types must agree.
// expect: diffuse::sample: the model must be callable as model(std::span<const Scalar> x_t, int t, std::span<Scalar> out), with Scalar the element type of x
#include <diffuse/ddpm.hpp>

#include <span>
#include <vector>

int main() {
  const auto schedule = diffuse::noise_schedule::linear(1000);
  const diffuse::ddpm_sampler sampler(schedule, diffuse::make_timesteps(1000, 10, diffuse::timestep_spacing::leading));
  const diffuse::sample_shape shape{.batch = 1, .channels = 1, .spatial = 4};
  std::vector<float> x(shape.numel());
#ifdef DIFFUSE_COMPILE_FAIL_CONTROL
  auto model = [](std::span<const float>, int, std::span<float>) {};
#else
  auto model = [](std::span<const double>, int, std::span<double>) {};
#endif
  diffuse::sample(sampler, model, std::span<float>(x), shape);
}
