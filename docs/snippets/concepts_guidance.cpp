// Guidance on data with two classes: class 0 near −2, class 1 near +2, equally likely.
#include <diffuse/ddpm.hpp>
#include <diffuse/gaussian_mixture.hpp>

#include <cstdio>
#include <span>
#include <vector>

namespace {
double fraction_positive(const std::vector<float>& x) {
  int n = 0;
  for (float v : x) n += v > 0;
  return static_cast<double>(n) / static_cast<double>(x.size());
}
}  // namespace

int main() {
  const auto schedule = diffuse::noise_schedule::cosine(1000);
  const diffuse::gaussian_mixture both({0.5, 0.5}, {{-2.0}, {2.0}}, {0.3, 0.3});
  const diffuse::gaussian_mixture class1({1.0}, {{2.0}}, {0.3});
  const diffuse::ddim_sampler sampler(schedule, diffuse::make_timesteps(1000, 50, diffuse::timestep_spacing::trailing));
  const diffuse::sample_shape shape{.batch = 2000, .channels = 1, .spatial = 1};
  std::vector<float> x(shape.numel());
  diffuse::sampling_workspace<float> workspace;

  // Classifier guidance: the hook adds s·∇ log p(y = 1 | x_t); DDIM applies it in score form.
  auto classifier = [&](std::span<const float> x_t, int t, std::span<float> gradient) {
    std::vector<float> x0(x_t.size());
    both.denoise<float>(x_t, schedule.alpha_bar(t), x0, {}, /*label=*/1, gradient);
  };
  auto unconditional = both.denoiser<float>(schedule, diffuse::prediction_type::epsilon);
  diffuse::fill_initial_noise<float>(x, shape, 1);
  diffuse::sample(sampler, unconditional, std::span<float>(x), shape, {.seed = 1}, workspace, diffuse::no_callback{},
                  diffuse::guidance(diffuse::classifier_guidance(classifier, /*scale=*/3.0)));
  const double with_classifier = fraction_positive(x);

  // Classifier-free guidance: the sampled model is the conditional one, the hook also runs the
  // unconditional model and combines them, ε̂ = ε_u + w(ε_c − ε_u).
  auto conditional = class1.denoiser<float>(schedule, diffuse::prediction_type::epsilon);
  diffuse::fill_initial_noise<float>(x, shape, 2);
  diffuse::sample(sampler, conditional, std::span<float>(x), shape, {.seed = 2}, workspace, diffuse::no_callback{},
                  diffuse::guidance(diffuse::classifier_free_guidance(unconditional, /*w=*/2.0)));
  const double with_cfg = fraction_positive(x);

  std::printf("share of class-1 samples: unguided 0.5, classifier guidance %.3f, classifier-free %.3f\n", with_classifier, with_cfg);
  return with_classifier > 0.9 && with_cfg > 0.99 ? 0 : 1;
}
