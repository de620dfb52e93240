// forward: how much of an image survives the forward process under each schedule.
//
// Writes a PNG with one row per schedule (linear, cosine, linear rescaled to zero terminal SNR): the
// same image noised with the same ε at increasing t, and beside it the log10 SNR curve of each schedule.
// Also prints ᾱ_t and the SNR at those timesteps.
//
//   forward [--output forward.png] [--seed 0] [--size 32]
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <diffuse/ddpm.hpp>
#include <string>
#include <vector>

#include "support/png.hpp"

namespace {

// A test image in [−1, 1]: a ring and a diagonal bar, smooth enough to see fade into noise.
std::vector<float> test_image(int n) {
  std::vector<float> img(static_cast<std::size_t>(n) * n);
  for (int y = 0; y < n; ++y)
    for (int x = 0; x < n; ++x) {
      const double u = (x + 0.5) / n - 0.5, v = (y + 0.5) / n - 0.5;
      const double ring = std::exp(-std::pow((std::hypot(u, v) - 0.3) / 0.06, 2));
      const double bar = std::exp(-std::pow((u - v) / 0.08, 2)) * (std::abs(u + v) < 0.5 ? 1.0 : 0.0);
      img[static_cast<std::size_t>(y) * n + x] = static_cast<float>(2.0 * std::min(1.0, ring + bar) - 1.0);
    }
  return img;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Noise one image at several timesteps under the linear, cosine and zero-terminal-SNR schedules"};
  std::string output = "forward.png";
  std::uint64_t seed = 0;
  int size = 32;
  app.add_option("-o,--output", output, "PNG file to write")->capture_default_str();
  app.add_option("--seed", seed, "seed of the noise")->capture_default_str();
  app.add_option("--size", size, "image side in pixels")->check(CLI::Range(4, 256))->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    const int T = 1000;
    struct row {
      const char* name;
      diffuse::noise_schedule schedule;
      std::uint8_t r, g, b;
    };
    const std::vector<row> rows{{"linear", diffuse::noise_schedule::linear(T), 200, 40, 40},
                                {"cosine", diffuse::noise_schedule::cosine(T), 40, 110, 200},
                                {"zero-SNR linear", diffuse::noise_schedule::linear(T).rescaled_zero_terminal_snr(), 30, 150, 60}};
    const std::vector<int> ts{0, 50, 100, 200, 300, 500, 700, 999};

    const diffuse::sample_shape shape{1, 1, static_cast<std::size_t>(size) * size};
    const auto x0 = test_image(size);
    std::vector<float> eps(shape.numel()), xt(shape.numel());
    diffuse::fill_initial_noise<float>(eps, shape, seed);

    const int zoom = std::max(1, 96 / size), tile = size * zoom, pad = 4;
    const int plot_w = 3 * tile, plot_h = static_cast<int>(rows.size()) * (tile + pad) - pad;
    examples::canvas img(pad + static_cast<int>(ts.size()) * (tile + pad) + plot_w + pad, pad + plot_h + pad);

    std::printf("%-24s", "t");
    for (int t : ts) std::printf("%10d", t);
    std::printf("\n");
    for (std::size_t r = 0; r < rows.size(); ++r) {
      const auto& s = rows[r].schedule;
      for (std::size_t c = 0; c < ts.size(); ++c) {
        diffuse::add_noise<float>(s, x0, eps, std::vector<int>{ts[c]}, shape, xt);
        img.tile(pad + static_cast<int>(c) * (tile + pad), pad + static_cast<int>(r) * (tile + pad), xt.data(), size, size, zoom);
      }
      std::printf("%-24s", (std::string(rows[r].name) + " alpha_bar").c_str());
      for (int t : ts) std::printf("%10.3g", s.alpha_bar(t));
      std::printf("\n%-24s", (std::string(rows[r].name) + " SNR").c_str());
      for (int t : ts) std::printf("%10.3g", s.snr(t));
      std::printf("\n");
    }

    // log10 SNR against t, from 10^4 down to 10^−6 (zero SNR is drawn at the bottom edge).
    const int px0 = pad + static_cast<int>(ts.size()) * (tile + pad), py0 = pad;
    for (int x = 0; x < plot_w; ++x) img.set(px0 + x, py0 + plot_h - 1, 0, 0, 0);
    for (int y = 0; y < plot_h; ++y) img.set(px0, py0 + y, 0, 0, 0);
    for (int decade = -6; decade <= 4; decade += 2) {
      const int y = py0 + static_cast<int>((4.0 - decade) / 10.0 * (plot_h - 1));
      for (int x = 0; x < plot_w; x += 3) img.set(px0 + x, y, 180, 180, 180);
    }
    for (const auto& row : rows) {
      for (int x = 0; x < plot_w; ++x) {
        const int t = x * (T - 1) / (plot_w - 1);
        const double l = std::log10(std::max(row.schedule.snr(t), 1e-6));
        const int y = py0 + static_cast<int>((4.0 - std::min(l, 4.0)) / 10.0 * (plot_h - 1));
        for (int dy = -1; dy <= 1; ++dy) img.set(px0 + x, y + dy, row.r, row.g, row.b);
      }
    }
    examples::write_png(output, img);
    std::printf("wrote %s: rows linear, cosine, zero-terminal-SNR; columns t = 0 … 999; right: log10 SNR(t) "
                "(red linear, blue cosine, green zero-SNR; grid every 2 decades from 1e4 to 1e-6)\n",
                output.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "forward: %s\n", e.what());
    return 1;
  }
  return 0;
}
