// Driving a sampler yourself: one step() per model call, with buffers you own.
#include <diffuse/ddpm.hpp>
#include <diffuse/gaussian_mixture.hpp>

#include <cstdio>
#include <span>
#include <utility>
#include <vector>

int main() {
  const auto schedule = diffuse::noise_schedule::cosine(1000);
  const diffuse::gaussian_mixture data({0.5, 0.5}, {{-1.0}, {1.0}}, {0.2, 0.2});  // stands in for a network
  auto model = data.denoiser<float>(schedule, diffuse::prediction_type::epsilon);

  const diffuse::ddpm_sampler sampler(schedule, diffuse::make_timesteps(1000, 100, diffuse::timestep_spacing::leading));
  const diffuse::sample_shape shape{.batch = 8, .channels = 1, .spatial = 1};
  const std::uint64_t seed = 7;
  std::vector<float> x(shape.numel()), out(shape.numel()), noise(shape.numel()), x_prev(shape.numel());

  // The same noise streams sample() uses: x_T is stream 0, list position k draws stream k + 1, batch
  // item i is sample i. So this loop gives sample()'s result bit for bit.
  const diffuse::normal_generator generator(seed);
  diffuse::fill_initial_noise<float>(x, shape, seed);
  for (int k = 0; k < sampler.num_steps(); ++k) {
    model(x, sampler.timestep(k), out);  // any runtime: ONNX Runtime, libtorch, a GPU queue, ...
    const bool noisy = sampler.adds_noise(k);
    if (noisy) diffuse::fill_batch<float>(generator, std::span<float>(noise), shape.batch, 0, diffuse::step_noise_stream(k));
    sampler.step<float>(k, {.x_t = x, .model_output = out, .noise = noisy ? std::span<const float>(noise) : std::span<const float>(),
                            .x_prev = x_prev}, shape);
    std::swap(x, x_prev);
  }

  std::vector<float> reference(shape.numel());
  diffuse::fill_initial_noise<float>(reference, shape, seed);
  diffuse::sample(sampler, model, std::span<float>(reference), shape, {.seed = seed});
  for (float v : x) std::printf("%.3f ", v);
  std::printf("\nown loop == sample(): %s\n", x == reference ? "yes" : "no");
  return x == reference ? 0 : 1;
}
