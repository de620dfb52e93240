// Second translation unit of test_odr: includes every public header again and uses them, so that any
// non-inline definition in a header (a one-definition-rule violation) fails to link.
#include <diffuse/ddpm.hpp>
#include <diffuse/gaussian_mixture.hpp>
#include <diffuse/io/safetensors.hpp>
#include <diffuse/io/scheduler_config.hpp>
#include <diffuse/nn/unet.hpp>

#include <span>
#include <string>
#include <vector>

std::vector<float> odr_other_sample() {
  const auto schedule = diffuse::noise_schedule::cosine(1000);
  const diffuse::gaussian_mixture data({0.5, 0.5}, {{-1.0}, {1.0}}, {0.2, 0.2});
  auto model = data.denoiser<float>(schedule, diffuse::prediction_type::epsilon);
  const diffuse::ddim_sampler sampler(schedule, diffuse::make_timesteps(1000, 20, diffuse::timestep_spacing::trailing));
  const diffuse::sample_shape shape{.batch = 4, .channels = 1, .spatial = 1};
  std::vector<float> x(shape.numel());
  diffuse::fill_initial_noise<float>(x, shape, 5);
  diffuse::sample(sampler, model, std::span<float>(x), shape, {.seed = 5});
  return x;
}

std::string odr_other_config() {
  const auto sc = diffuse::scheduler_config::from_json(R"({"beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction"})");
  return diffuse::error(diffuse::error_kind::io, std::to_string(sc.num_train_timesteps())).what();
}
