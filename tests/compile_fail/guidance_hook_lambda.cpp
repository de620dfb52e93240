// A plain lambda given to diffuse::guidance(): a hook must also say whether it needs a gradient.
// expect: diffuse::guidance: every hook needs a member `static constexpr bool needs_gradient`
#include <diffuse/ddpm.hpp>

#include <span>
#include <vector>

#ifdef DIFFUSE_COMPILE_FAIL_CONTROL
struct hook_type {
  static constexpr bool needs_gradient = false;
  void operator()(const diffuse::guidance_context<float>&) {}
};
#endif

int main() {
  const auto schedule = diffuse::noise_schedule::linear(1000);
  const diffuse::ddim_sampler sampler(schedule, diffuse::make_timesteps(1000, 10, diffuse::timestep_spacing::trailing));
  const diffuse::sample_shape shape{.batch = 1, .channels = 1, .spatial = 4};
  std::vector<float> x(shape.numel());
  auto model = [](std::span<const float>, int, std::span<float>) {};
  diffuse::sampling_workspace<float> workspace;
#ifdef DIFFUSE_COMPILE_FAIL_CONTROL
  hook_type hook;
#else
  auto hook = [](const diffuse::guidance_context<float>&) {};
#endif
  diffuse::sample(sampler, model, std::span<float>(x), shape, {}, workspace, diffuse::no_callback{}, diffuse::guidance(hook));
}
