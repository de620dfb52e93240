// Forward noising and the three training targets, one timestep per batch item.
#include <diffuse/ddpm.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  const auto schedule = diffuse::noise_schedule::cosine(1000);
  const diffuse::sample_shape shape{.batch = 2, .channels = 1, .spatial = 4};
  const std::vector<float> x0{0.5f, -0.5f, 1.0f, 0.0f, 0.25f, 0.75f, -1.0f, 0.5f};
  std::vector<float> eps(shape.numel()), x_t(shape.numel()), v(shape.numel()), back(shape.numel());
  diffuse::fill_initial_noise<float>(eps, shape, /*seed=*/1);  // any N(0, I) noise
  const std::vector<int> t{100, 900};                            // item 0 lightly noised, item 1 heavily

  diffuse::add_noise<float>(schedule, x0, eps, t, shape, x_t);    // x_t = √ᾱ x0 + √(1 − ᾱ) ε
  diffuse::velocity<float>(schedule, x0, eps, t, shape, v);       // v = √ᾱ ε − √(1 − ᾱ) x0

  // A v-predicting network that got v exactly right gives x0 back: x̂0 = √ᾱ x_t − √(1 − ᾱ) v.
  diffuse::x0_from_velocity<float>(schedule, x_t, v, t, shape, back);
  double worst = 0;
  for (std::size_t i = 0; i < x0.size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(back[i] - x0[i])));
  std::printf("largest |x0 - x0_from_velocity(x_t, v)| = %.2g\n", worst);
  return worst < 1e-5 ? 0 : 1;
}
