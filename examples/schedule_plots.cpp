// schedule_plots: the figures of docs/concepts.md, drawn from diffuse's own tables.
//
// Writes three PNGs into a directory:
//   alpha_bar.png  ᾱ_t against t for the linear, scaled-linear, cosine, sigmoid and zero-terminal-SNR
//                  (rescaled linear) schedules at T = 1000;
//   log_snr.png    log SNR(t) = ln(ᾱ_t/(1 − ᾱ_t)) for the same schedules;
//   timesteps.png  the N = 10 sampling lists of linspace, leading and trailing spacing at T = 1000.
// The committed copies in docs/figures/ are checked against a fresh run by the test suite, so the
// figures always show what the library computes.
//
//   schedule_plots [--output-dir docs/figures]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <diffuse/ddpm.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "support/png.hpp"

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-conversion"
#pragma GCC diagnostic ignored "-Wconversion"
#endif
#include <stb/stb_easy_font.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace {

struct rgb {
  std::uint8_t r, g, b;
};
constexpr rgb black{0, 0, 0}, grid_gray{225, 225, 225}, axis_gray{90, 90, 90};

// Text through stb_easy_font (ASCII quads), scaled up; a backquote puts a bar over the next character,
// so "`a_t" reads ᾱ_t. `vertical` draws bottom-to-top with (x, y) the start of the baseline.
class text_painter {
 public:
  explicit text_painter(examples::canvas& c) : c_(c) {}

  int width(const std::string& s, int scale) const { return plain_width(strip(s)) * scale; }
  static int height(int scale) { return 12 * scale; }

  void draw(int x, int y, const std::string& s, int scale, rgb color, bool vertical = false) {
    const std::string plain = strip(s);
    std::vector<char> text(plain.begin(), plain.end());
    text.push_back('\0');
    static std::vector<char> buffer(1 << 17);
    const int quads = stb_easy_font_print(0, 0, text.data(), nullptr, buffer.data(), static_cast<int>(buffer.size()));
    for (int q = 0; q < quads; ++q) {
      const auto* v = reinterpret_cast<const float*>(buffer.data() + static_cast<std::size_t>(q) * 4 * 16);
      const float x0 = v[0], y0 = v[1], x1 = v[4 * 2], y1 = v[4 * 2 + 1];  // corners 0 and 2 of the quad
      fill(x, y, x0, y0, x1, y1, scale, color, vertical);
    }
    // Overbars: over the character that follows each backquote.
    std::size_t plain_index = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i] != '`') {
        ++plain_index;
        continue;
      }
      const float left = static_cast<float>(plain_width(plain.substr(0, plain_index)));
      const float right = left + 5.0f;
      fill(x, y, left, -1.0f, right, 0.0f, scale, color, vertical);
    }
  }

 private:
  static std::string strip(const std::string& s) {
    std::string out;
    for (char ch : s)
      if (ch != '`') out += ch;
    return out;
  }
  static int plain_width(const std::string& s) {
    std::vector<char> text(s.begin(), s.end());
    text.push_back('\0');
    return stb_easy_font_width(text.data());
  }
  void fill(int x, int y, float x0, float y0, float x1, float y1, int scale, rgb color, bool vertical) {
    const int ax = static_cast<int>(std::lround(x0 * static_cast<float>(scale))), bx = static_cast<int>(std::lround(x1 * static_cast<float>(scale)));
    const int ay = static_cast<int>(std::lround(y0 * static_cast<float>(scale))), by = static_cast<int>(std::lround(y1 * static_cast<float>(scale)));
    for (int u = ax; u < bx; ++u)
      for (int w = ay; w < by; ++w) {
        if (vertical) c_.set(x + w, y - u, color.r, color.g, color.b);
        else c_.set(x + u, y + w, color.r, color.g, color.b);
      }
  }
  examples::canvas& c_;
};

// A rectangle of the canvas mapped to data coordinates.
struct axes {
  int left, top, width, height;
  double xmin, xmax, ymin, ymax;
  int px(double x) const { return left + static_cast<int>(std::lround((x - xmin) / (xmax - xmin) * (width - 1))); }
  int py(double y) const { return top + static_cast<int>(std::lround((ymax - y) / (ymax - ymin) * (height - 1))); }
};

void dot(examples::canvas& c, int x, int y, double radius, rgb color) {
  const int r = static_cast<int>(std::ceil(radius));
  for (int dy = -r; dy <= r; ++dy)
    for (int dx = -r; dx <= r; ++dx)
      if (dx * dx + dy * dy <= radius * radius) c.set(x + dx, y + dy, color.r, color.g, color.b);
}

void line(examples::canvas& c, int x0, int y0, int x1, int y1, double radius, rgb color) {
  const int n = std::max({std::abs(x1 - x0), std::abs(y1 - y0), 1});
  for (int i = 0; i <= n; ++i)
    dot(c, x0 + static_cast<int>(std::lround(static_cast<double>(x1 - x0) * i / n)),
        y0 + static_cast<int>(std::lround(static_cast<double>(y1 - y0) * i / n)), radius, color);
}

void rect_outline(examples::canvas& c, const axes& a, rgb color) {
  for (int x = a.left; x < a.left + a.width; ++x) {
    c.set(x, a.top, color.r, color.g, color.b);
    c.set(x, a.top + a.height - 1, color.r, color.g, color.b);
  }
  for (int y = a.top; y < a.top + a.height; ++y) {
    c.set(a.left, y, color.r, color.g, color.b);
    c.set(a.left + a.width - 1, y, color.r, color.g, color.b);
  }
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// Grid lines, tick labels, axis titles and the plot title.
void frame(examples::canvas& c, text_painter& text, const axes& a, const std::vector<double>& xticks, const std::vector<double>& yticks,
           const std::string& xlabel, const std::string& ylabel, const std::string& title) {
  for (double x : xticks)
    for (int y = a.top; y < a.top + a.height; ++y) c.set(a.px(x), y, grid_gray.r, grid_gray.g, grid_gray.b);
  for (double y : yticks)
    for (int x = a.left; x < a.left + a.width; ++x) c.set(x, a.py(y), grid_gray.r, grid_gray.g, grid_gray.b);
  rect_outline(c, a, axis_gray);
  for (double x : xticks) {
    for (int d = 0; d < 6; ++d) c.set(a.px(x), a.top + a.height + d, axis_gray.r, axis_gray.g, axis_gray.b);
    const std::string s = number(x);
    text.draw(a.px(x) - text.width(s, 2) / 2, a.top + a.height + 10, s, 2, black);
  }
  for (double y : yticks) {
    for (int d = 1; d <= 6; ++d) c.set(a.left - d, a.py(y), axis_gray.r, axis_gray.g, axis_gray.b);
    const std::string s = number(y);
    text.draw(a.left - 10 - text.width(s, 2), a.py(y) - 7, s, 2, black);
  }
  text.draw(a.left + a.width / 2 - text.width(xlabel, 2) / 2, a.top + a.height + 36, xlabel, 2, black);
  text.draw(a.left - 78, a.top + a.height / 2 + text.width(ylabel, 2) / 2, ylabel, 2, black, /*vertical=*/true);
  text.draw(a.left, a.top - 36, title, 2, black);
}

struct curve {
  std::string name;
  diffuse::noise_schedule schedule;
  rgb color;
  bool dashed;
};

void legend(examples::canvas& c, text_painter& text, int x, int y, const std::vector<curve>& curves) {
  for (std::size_t i = 0; i < curves.size(); ++i) {
    const int yy = y + static_cast<int>(i) * 30;
    for (int d = 0; d < 30; ++d)
      if (!curves[i].dashed || (d / 6) % 2 == 0) dot(c, x + d, yy + 7, 1.6, curves[i].color);
    text.draw(x + 40, yy, curves[i].name, 2, black);
  }
}

// One curve value per timestep; values below the axis are drawn on its lower edge.
template <class F>
void plot_curve(examples::canvas& c, const axes& a, const curve& k, F value) {
  const int T = k.schedule.size();
  int last_x = 0, last_y = 0;
  for (int t = 0; t < T; ++t) {
    const double v = std::clamp(value(k.schedule, t), a.ymin, a.ymax);
    const int x = a.px(t), y = a.py(v);
    const bool draw = !k.dashed || (t / 40) % 2 == 0;
    if (t > 0 && draw) line(c, last_x, last_y, x, y, 1.6, k.color);
    last_x = x;
    last_y = y;
  }
}

std::vector<curve> schedules() {
  const int T = 1000;
  // Okabe–Ito colours: distinguishable with the common colour-vision deficiencies.
  return {{"linear", diffuse::noise_schedule::linear(T), {230, 159, 0}, false},
          {"scaled_linear", diffuse::noise_schedule::scaled_linear(T), {0, 158, 115}, false},
          {"cosine", diffuse::noise_schedule::cosine(T), {0, 114, 178}, false},
          {"sigmoid", diffuse::noise_schedule::sigmoid(T), {204, 121, 167}, false},
          {"linear, zero SNR", diffuse::noise_schedule::linear(T).rescaled_zero_terminal_snr(), {213, 94, 0}, true}};
}

void alpha_bar_figure(const std::string& path) {
  examples::canvas c(1040, 560);
  text_painter text(c);
  const axes a{110, 60, 600, 400, 0, 1000, 0, 1};
  frame(c, text, a, {0, 200, 400, 600, 800, 1000}, {0, 0.2, 0.4, 0.6, 0.8, 1.0}, "training timestep t", "`a_t",
        "`a_t: the signal fraction left at step t (T = 1000)");
  const auto curves = schedules();
  for (const auto& k : curves) plot_curve(c, a, k, [](const diffuse::noise_schedule& s, int t) { return s.alpha_bar(t); });
  legend(c, text, a.left + a.width + 30, a.top + 10, curves);
  text.draw(a.left + a.width + 30, a.top + 190, "x_t = sqrt(`a_t) x_0", 2, black);
  text.draw(a.left + a.width + 30, a.top + 216, "    + sqrt(1 - `a_t) eps", 2, black);
  examples::write_png(path, c);
}

void log_snr_figure(const std::string& path) {
  examples::canvas c(1040, 560);
  text_painter text(c);
  const axes a{110, 60, 600, 400, 0, 1000, -25, 15};
  frame(c, text, a, {0, 200, 400, 600, 800, 1000}, {-25, -20, -15, -10, -5, 0, 5, 10, 15}, "training timestep t",
        "log SNR(t)", "log SNR(t) = ln(`a_t / (1 - `a_t))");
  const auto curves = schedules();
  for (const auto& k : curves)
    plot_curve(c, a, k, [](const diffuse::noise_schedule& s, int t) { return s.alpha_bar(t) > 0 ? std::log(s.snr(t)) : -1e300; });
  legend(c, text, a.left + a.width + 30, a.top + 10, curves);
  text.draw(a.left + a.width + 30, a.top + 190, "zero SNR: -inf at", 2, black);
  text.draw(a.left + a.width + 30, a.top + 216, "t = 999 (drawn at", 2, black);
  text.draw(a.left + a.width + 30, a.top + 242, "the lower edge)", 2, black);
  examples::write_png(path, c);
}

void timesteps_figure(const std::string& path) {
  const int T = 1000, N = 10;
  examples::canvas c(980, 360);
  text_painter text(c);
  const axes a{150, 60, 780, 240, 0, T - 1, 0, 3};
  text.draw(a.left - 130, a.top - 40, "make_timesteps(1000, 10, spacing): the 10 training timesteps a sampler visits", 2, black);
  struct row {
    const char* name;
    diffuse::timestep_spacing spacing;
    rgb color;
  };
  const std::vector<row> rows{{"linspace", diffuse::timestep_spacing::linspace, {230, 159, 0}},
                              {"leading", diffuse::timestep_spacing::leading, {0, 158, 115}},
                              {"trailing", diffuse::timestep_spacing::trailing, {0, 114, 178}}};
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const int y = a.top + 30 + static_cast<int>(r) * 80;
    for (int x = a.px(0); x <= a.px(T - 1); ++x) c.set(x, y, axis_gray.r, axis_gray.g, axis_gray.b);
    for (int t : {0, T - 1})
      for (int d = -5; d <= 5; ++d) c.set(a.px(t), y + d, axis_gray.r, axis_gray.g, axis_gray.b);
    text.draw(a.left - 130, y - 7, rows[r].name, 2, black);
    for (int t : diffuse::make_timesteps(T, N, rows[r].spacing)) {
      dot(c, a.px(t), y, 5.5, rows[r].color);
      const std::string s = std::to_string(t);
      text.draw(a.px(t) - text.width(s, 2) / 2, y + 14, s, 2, black);
    }
  }
  text.draw(a.left - 130, a.top + 260, "the sampler walks each list right to left; 0 and 999 are marked on every axis", 2, axis_gray);
  examples::write_png(path, c);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Draw the schedule and timestep figures of docs/concepts.md"};
  std::string dir = ".";
  app.add_option("-o,--output-dir", dir, "directory to write alpha_bar.png, log_snr.png and timesteps.png into")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    if (!std::filesystem::is_directory(dir)) throw std::runtime_error(dir + " is not a directory; expected an existing directory");
    const std::filesystem::path d(dir);
    alpha_bar_figure((d / "alpha_bar.png").string());
    log_snr_figure((d / "log_snr.png").string());
    timesteps_figure((d / "timesteps.png").string());
    std::printf("wrote alpha_bar.png, log_snr.png and timesteps.png in %s\n", dir.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "schedule_plots: %s\n", e.what());
    return 1;
  }
  return 0;
}
