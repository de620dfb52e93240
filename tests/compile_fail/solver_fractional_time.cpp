// An int-only model driven by Euler, whose model times are fractional: solve() must say what to do.
// expect: this solver gives the model fractional training times
// expect: model(std::span<const Scalar> x, double t, std::span<Scalar> out)
#include <diffuse/samplers/euler.hpp>

#include <span>
#include <vector>

int main() {
  const auto schedule = diffuse::noise_schedule::linear(1000);
  const diffuse::euler_sampler solver(schedule, 10);
  const diffuse::sample_shape shape{.batch = 1, .channels = 1, .spatial = 4};
  std::vector<float> x(shape.numel());
#ifdef DIFFUSE_COMPILE_FAIL_CONTROL
  auto model = [](std::span<const float>, double, std::span<float>) {};
#else
  auto model = [](std::span<const float>, int, std::span<float>) {};
#endif
  diffuse::solve(solver, model, std::span<float>(x), shape);
}
