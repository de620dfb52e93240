// Integer samples (e.g. 8-bit pixels passed straight in): diffuse computes in float or double.
// expect: Real<Scalar>
// expect: samples must be float or double: pass std::span<float> or std::span<double>
#include <diffuse/ddpm.hpp>

#include <span>
#include <vector>

int main() {
  const auto schedule = diffuse::noise_schedule::linear(1000);
  const diffuse::ddim_sampler sampler(schedule, diffuse::make_timesteps(1000, 10, diffuse::timestep_spacing::trailing));
  const diffuse::sample_shape shape{.batch = 1, .channels = 1, .spatial = 4};
#ifdef DIFFUSE_COMPILE_FAIL_CONTROL
  using element = float;
#else
  using element = int;
#endif
  std::vector<element> x(shape.numel());
  auto model = [](std::span<const element>, int, std::span<element>) {};
  diffuse::sample(sampler, model, std::span<element>(x), shape);
}
