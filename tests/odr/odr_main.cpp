// test_odr: two translation units of one program include the same diffuse headers (odr_other.cpp is
// the other one). It links only if every function defined in a header is inline or a template, and the
// two units must compute the same samples.
#include <diffuse/ddpm.hpp>
#include <diffuse/gaussian_mixture.hpp>
#include <diffuse/io/safetensors.hpp>
#include <diffuse/io/scheduler_config.hpp>
#include <diffuse/nn/unet.hpp>

#include <cstdio>
#include <span>
#include <string>
#include <vector>

std::vector<float> odr_other_sample();
std::string odr_other_config();

int main() {
  const auto schedule = diffuse::noise_schedule::cosine(1000);
  const diffuse::gaussian_mixture data({0.5, 0.5}, {{-1.0}, {1.0}}, {0.2, 0.2});
  auto model = data.denoiser<float>(schedule, diffuse::prediction_type::epsilon);
  const diffuse::ddim_sampler sampler(schedule, diffuse::make_timesteps(1000, 20, diffuse::timestep_spacing::trailing));
  const diffuse::sample_shape shape{.batch = 4, .channels = 1, .spatial = 1};
  std::vector<float> x(shape.numel());
  diffuse::fill_initial_noise<float>(x, shape, 5);
  diffuse::sample(sampler, model, std::span<float>(x), shape, {.seed = 5});
  const auto sc = diffuse::scheduler_config::from_json(R"({"beta_schedule": "linear"})");
  const bool same = x == odr_other_sample();
  const std::string other = odr_other_config();
  std::printf("two translation units: samples %s, other unit says \"%s\" (T = %d here)\n", same ? "identical" : "DIFFERENT",
              other.c_str(), sc.num_train_timesteps());
  return same && other == "[diffuse.io] 1000" ? 0 : 1;
}
