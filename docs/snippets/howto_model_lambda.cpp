// A model is anything callable as model(x_t, t, out): here a lambda around an inference runtime.
#include <diffuse/ddpm.hpp>

#include <cstdint>
#include <cstdio>
#include <span>
#include <vector>

// Stands in for your runtime's session (ONNX Runtime, libtorch, TensorRT, ggml, ...): it takes raw
// pointers, a shape and a timestep tensor, as such APIs do.
struct runtime_session {
  void run(const float* input, const std::int64_t* dims, const std::int64_t* timestep, float* output) const {
    const std::int64_t n = dims[0] * dims[1] * dims[2] * dims[3];
    for (std::int64_t i = 0; i < n; ++i) output[i] = 0.1f * input[i] * static_cast<float>(*timestep) / 1000.0f;
  }
};

int main() {
  runtime_session session;  // loaded once, outside the sampling loop
  const std::int64_t height = 8, width = 8;

  // The adapter: spans in, spans out. Capture whatever the network also needs (image size, labels,
  // prompt embeddings); the sampler only ever passes (x_t, t, out).
  auto model = [&](std::span<const float> x_t, int t, std::span<float> out) {
    const std::int64_t dims[4] = {static_cast<std::int64_t>(x_t.size()) / (3 * height * width), 3, height, width};
    const std::int64_t timestep = t;
    session.run(x_t.data(), dims, &timestep, out.data());
  };
  static_assert(diffuse::Denoiser<decltype(model), float>);  // what sample() checks

  const auto schedule = diffuse::noise_schedule::scaled_linear(1000);
  const diffuse::ddim_sampler sampler(schedule, diffuse::make_timesteps(1000, 20, diffuse::timestep_spacing::leading, 1));
  const diffuse::sample_shape shape{.batch = 2, .channels = 3, .spatial = height * width};
  std::vector<float> x(shape.numel());
  diffuse::fill_initial_noise<float>(x, shape, /*seed=*/3);
  diffuse::sample(sampler, model, std::span<float>(x), shape, {.seed = 3});
  std::printf("x[0] = %.4f after %d steps\n", x[0], sampler.num_steps());
  return 0;
}
