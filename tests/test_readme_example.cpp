// The code sample of README.md, compiled and run as written (with a stand-in network).
#include <doctest/doctest.h>

#include <cmath>
#include <diffuse/ddpm.hpp>
#include <span>
#include <vector>

namespace {
void my_network(std::span<const float> x_t, int t, std::span<float> eps) {
  for (std::size_t i = 0; i < x_t.size(); ++i) eps[i] = 0.1f * x_t[i] * static_cast<float>(t) / 1000.0f;
}
}  // namespace

TEST_CASE("the README example compiles and runs") {
  // --- begin README sample ---
  // Any callable model(x_t, t, out) is a model: a lambda around ONNX Runtime, libtorch, ggml, ...
  auto model = [&](std::span<const float> x_t, int t, std::span<float> eps) { my_network(x_t, t, eps); };

  const auto schedule = diffuse::noise_schedule::cosine(1000);
  const diffuse::ddim_sampler sampler(schedule, diffuse::make_timesteps(1000, 50, diffuse::timestep_spacing::trailing),
                                      {.prediction = diffuse::prediction_type::epsilon, .eta = 0.0});
  const diffuse::sample_shape shape{.batch = 4, .channels = 3, .spatial = 32 * 32};
  std::vector<float> x(shape.numel());
  diffuse::fill_initial_noise<float>(x, shape, /*seed=*/42);                 // x_T
  diffuse::sample(sampler, model, std::span<float>(x), shape, {.seed = 42});  // x_T -> x_0 in place
  // --- end README sample ---
  for (float v : x) CHECK(std::isfinite(v));
}
