// A program using diffuse as a package would: the entry header, a cosine schedule and a few DDIM steps
// with a lambda model. Exits 0 only if every value of the result is finite (and not all zero).
#include <diffuse/ddpm.hpp>

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <span>
#include <vector>

int main() {
#if defined(DIFFUSE_CONSUMER_EXPECT_OPENMP) && !defined(_OPENMP)
  std::fprintf(stderr, "linked diffuse::openmp but _OPENMP is not defined: the OpenMP flags did not propagate\n");
  return 1;
#endif
  try {
    const auto schedule = diffuse::noise_schedule::cosine(1000);
    const diffuse::ddim_sampler sampler(schedule, diffuse::make_timesteps(1000, 8, diffuse::timestep_spacing::trailing),
                                        {.prediction = diffuse::prediction_type::epsilon, .eta = 0.0});
    const diffuse::sample_shape shape{.batch = 2, .channels = 3, .spatial = 16};
    std::vector<float> x(shape.numel());
    diffuse::fill_initial_noise<float>(x, shape, /*seed=*/42);
    // The exact ε-predictor for data drawn from N(0, 1): E[ε | x_t] = √(1 − ᾱ_t)·x_t.
    auto model = [&schedule](std::span<const float> x_t, int t, std::span<float> eps) {
      const auto k = static_cast<float>(std::sqrt(1.0 - schedule.alpha_bar(t)));
      for (std::size_t i = 0; i < x_t.size(); ++i) eps[i] = k * x_t[i];
    };
    diffuse::sample(sampler, model, std::span<float>(x), shape, {.seed = 42});
    bool any_nonzero = false;
    for (const float v : x) {
      if (!std::isfinite(v)) {
        std::fprintf(stderr, "non-finite value in the result\n");
        return 1;
      }
      any_nonzero = any_nonzero || v != 0.0f;
    }
    if (!any_nonzero) {
      std::fprintf(stderr, "the result is all zeros\n");
      return 1;
    }
    std::printf("diffuse %d.%d.%d: %zu finite values after %d DDIM steps, x[0] = %g\n", DIFFUSE_VERSION_MAJOR,
                DIFFUSE_VERSION_MINOR, DIFFUSE_VERSION_PATCH, x.size(), sampler.num_steps(), static_cast<double>(x[0]));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "diffuse threw: %s\n", e.what());
    return 1;
  }
}
