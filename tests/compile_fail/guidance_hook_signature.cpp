// A hook whose call operator does not take the guidance context.
// expect: diffuse::guidance: every hook must be callable as hook(const diffuse::guidance_context<Scalar>& ctx)
#include <diffuse/ddpm.hpp>

#include <span>
#include <vector>

struct my_hook {
  static constexpr bool needs_gradient = false;
#ifdef DIFFUSE_COMPILE_FAIL_CONTROL
  void operator()(const diffuse::guidance_context<float>& ctx) { (void)ctx; }
#else
  void operator()(std::span<float> model_output, int t) { (void)model_output, (void)t; }
#endif
};

int main() {
  const auto schedule = diffuse::noise_schedule::linear(1000);
  const diffuse::ddim_sampler sampler(schedule, diffuse::make_timesteps(1000, 10, diffuse::timestep_spacing::trailing));
  const diffuse::sample_shape shape{.batch = 1, .channels = 1, .spatial = 4};
  std::vector<float> x(shape.numel());
  auto model = [](std::span<const float>, int, std::span<float>) {};
  diffuse::sampling_workspace<float> workspace;
  diffuse::sample(sampler, model, std::span<float>(x), shape, {}, workspace, diffuse::no_callback{}, diffuse::guidance(my_hook{}));
}
