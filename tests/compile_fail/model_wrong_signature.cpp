// A model taking raw pointers instead of spans: sample() must say which call it expects.
// expect: diffuse::sample: the model must be callable as model(std::span<const Scalar> x_t, int t, std::span<Scalar> out)
#include <diffuse/ddpm.hpp>

#include <span>
#include <vector>

int main() {
  const auto schedule = diffuse::noise_schedule::linear(1000);
  const diffuse::ddim_sampler sampler(schedule, diffuse::make_timesteps(1000, 10, diffuse::timestep_spacing::trailing));
  const diffuse::sample_shape shape{.batch = 1, .channels = 1, .spatial = 4};
  std::vector<float> x(shape.numel());
#ifdef DIFFUSE_COMPILE_FAIL_CONTROL
  auto model = [](std::span<const float>, int, std::span<float>) {};
#else
  auto model = [](const float*, int, float*) {};
#endif
  diffuse::sample(sampler, model, std::span<float>(x), shape);
}
