// A sampler step instantiated for a non-floating Scalar.
// expect: Real<Scalar>
// expect: samples must be float or double: pass std::span<float> or std::span<double>
#include <diffuse/ddpm.hpp>

#include <vector>

int main() {
  const auto schedule = diffuse::noise_schedule::linear(1000);
  const diffuse::ddim_sampler sampler(schedule, diffuse::make_timesteps(1000, 10, diffuse::timestep_spacing::trailing));
  const diffuse::sample_shape shape{.batch = 1, .channels = 1, .spatial = 4};
#ifdef DIFFUSE_COMPILE_FAIL_CONTROL
  using element = double;
#else
  using element = long;
#endif
  std::vector<element> x(shape.numel()), out(shape.numel()), x_prev(shape.numel());
  sampler.step<element>(0, {.x_t = x, .model_output = out, .x_prev = x_prev}, shape);
}
