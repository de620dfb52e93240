// toy2d: sampling a 2-D Gaussian mixture whose optimal denoiser is known exactly (SPEC §10). Panels of
// one PNG: the true density, then samples from DDPM (1000 steps), DDIM-50, and DDIM-50 with classifier
// guidance towards one component (exact ∇ log p(y | x_t)), each over the density's contours.
//
//   ./build/examples/toy2d --output toy2d.png --samples 2000 --guidance 2
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <vector>

#include "diffuse/ddpm.hpp"
#include "diffuse/gaussian_mixture.hpp"
#include "support/png.hpp"

namespace {

constexpr double kExtent = 5.0;  // panels show [−5, 5]²

/// Paints the log density of x_0 (ᾱ = 1) as a grey background of one panel.
void paint_density(examples::canvas& c, int x0, int size, const diffuse::gaussian_mixture& gm) {
  std::vector<double> pts(2 * static_cast<std::size_t>(size) * size), logp(static_cast<std::size_t>(size) * size);
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      pts[2 * (y * size + x)] = (x + 0.5) / size * 2 * kExtent - kExtent;
      pts[2 * (y * size + x) + 1] = kExtent - (y + 0.5) / size * 2 * kExtent;
    }
  gm.log_density<double>(pts, 1.0, logp);
  const double top = *std::max_element(logp.begin(), logp.end());
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      const double v = std::exp(logp[y * size + x] - top);  // 1 at the densest point
      const auto g = static_cast<std::uint8_t>(255 - 120 * v);
      c.set(x0 + x, y, g, g, 255);
    }
}

void paint_points(examples::canvas& c, int x0, int size, const std::vector<double>& xy, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
  for (std::size_t i = 0; i + 1 < xy.size(); i += 2) {
    const int px = static_cast<int>((xy[i] + kExtent) / (2 * kExtent) * size), py = static_cast<int>((kExtent - xy[i + 1]) / (2 * kExtent) * size);
    for (int dy = 0; dy < 2; ++dy)
      for (int dx = 0; dx < 2; ++dx)
        if (px + dx >= 0 && px + dx < size) c.set(x0 + px + dx, py + dy, r, g, b);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string output = "toy2d.png";
  int samples = 2000, size = 300, label = 0;
  double scale = 2.0;
  std::uint64_t seed = 0;
  CLI::App app{"Sample a 2-D Gaussian mixture with its exact denoiser: DDPM, DDIM and classifier guidance."};
  app.add_option("--output", output, "PNG to write")->capture_default_str();
  app.add_option("--samples", samples, "points per panel")->check(CLI::Range(1, 1000000))->capture_default_str();
  app.add_option("--size", size, "panel size in pixels")->check(CLI::Range(16, 2000))->capture_default_str();
  app.add_option("--guidance", scale, "classifier guidance scale")->check(CLI::Range(0.0, 100.0))->capture_default_str();
  app.add_option("--component", label, "component the guided panel aims for (0, 1 or 2)")->check(CLI::Range(0, 2))->capture_default_str();
  app.add_option("--seed", seed, "noise seed")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    const diffuse::gaussian_mixture gm({0.2, 0.5, 0.3}, {{-3.0, 0.0}, {2.0, 2.0}, {1.0, -3.0}}, {0.4, 0.6, 0.5});
    const auto schedule = diffuse::noise_schedule::cosine(1000);
    auto model = gm.denoiser<double>(schedule, diffuse::prediction_type::epsilon);
    const diffuse::sample_shape shape{static_cast<std::size_t>(samples), 1, 2};

    examples::canvas c(4 * size + 3 * 4, size, 255);
    for (int p = 0; p < 4; ++p) paint_density(c, p * (size + 4), size, gm);

    std::vector<double> x(shape.numel());
    diffuse::ddpm_sampler ddpm(schedule, diffuse::make_timesteps(1000, 1000, diffuse::timestep_spacing::leading));
    diffuse::fill_initial_noise<double>(x, shape, seed);
    diffuse::sample(ddpm, model, std::span<double>(x), shape, {.seed = seed});
    paint_points(c, 1 * (size + 4), size, x, 200, 30, 30);

    diffuse::ddim_sampler ddim(schedule, diffuse::make_timesteps(1000, 50, diffuse::timestep_spacing::trailing));
    diffuse::fill_initial_noise<double>(x, shape, seed);
    diffuse::sample(ddim, model, std::span<double>(x), shape, {.seed = seed});
    paint_points(c, 2 * (size + 4), size, x, 30, 130, 30);

    // Classifier guidance: the exact ∇_{x_t} log p(y | x_t) of the mixture, in DDIM's score form.
    auto gradient = [&](std::span<const double> xt, int t, std::span<double> g) {
      std::vector<double> x0(xt.size());
      gm.denoise<double>(xt, schedule.alpha_bar(t), x0, {}, label, g);
    };
    diffuse::fill_initial_noise<double>(x, shape, seed);
    diffuse::sample(ddim, model, std::span<double>(x), shape, {.seed = seed}, diffuse::no_callback{},
                    diffuse::guidance(diffuse::classifier_guidance(gradient, scale)));
    paint_points(c, 3 * (size + 4), size, x, 30, 30, 200);
    examples::write_png(output, c);
    std::cout << "panels: true density | DDPM-1000 | DDIM-50 | DDIM-50 guided to component " << label << " (scale " << scale << ") -> "
              << output << "\n";
  } catch (const std::exception& e) {
    std::cerr << "toy2d: " << e.what() << "\n";
    return 1;
  }
}
