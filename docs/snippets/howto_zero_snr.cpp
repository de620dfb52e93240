// Zero terminal SNR: ᾱ_{T-1} = 0, so the sampler starts from pure noise, as it is fed at inference.
#include <diffuse/ddpm.hpp>
#include <diffuse/gaussian_mixture.hpp>

#include <cstdio>
#include <span>
#include <vector>

int main() {
  const auto schedule = diffuse::noise_schedule::scaled_linear(1000).rescaled_zero_terminal_snr();
  std::printf("alpha_bar(0) = %.6f, alpha_bar(999) = %g\n", schedule.alpha_bar(0), schedule.alpha_bar(999));

  // Trailing spacing, so the list starts at t = 999, where the model sees pure noise.
  const auto timesteps = diffuse::make_timesteps(1000, 25, diffuse::timestep_spacing::trailing);

  // An ε-predicting model cannot give x̂0 where ᾱ = 0 (x̂0 = (x_t − √(1−ᾱ) ε̂)/√ᾱ): refused when the
  // sampler is built, not discovered as NaN after the first step.
  try {
    const diffuse::ddim_sampler refused(schedule, timesteps, {.prediction = diffuse::prediction_type::epsilon});
    return 1;
  } catch (const diffuse::error& e) {
    std::printf("epsilon: %s\n", e.what());
  }

  // v-prediction is well defined everywhere: at ᾱ = 0, x̂0 = −v̂.
  const diffuse::gaussian_mixture data({1.0}, {{0.5}}, {0.1});  // a v-predicting stand-in network
  auto model = data.denoiser<float>(schedule, diffuse::prediction_type::v_prediction);
  const diffuse::ddim_sampler sampler(schedule, timesteps, {.prediction = diffuse::prediction_type::v_prediction});
  const diffuse::sample_shape shape{.batch = 500, .channels = 1, .spatial = 1};
  std::vector<float> x(shape.numel());
  diffuse::fill_initial_noise<float>(x, shape, /*seed=*/11);
  diffuse::sample(sampler, model, std::span<float>(x), shape, {.seed = 11});
  double mean = 0;
  for (float v : x) mean += v / static_cast<double>(x.size());
  std::printf("v-prediction: sample mean %.3f (data 0.5)\n", mean);
  return mean > 0.45 && mean < 0.55 ? 0 : 1;
}
