// bits_digest: prints a hash of the exact bits diffuse computes on fixed inputs, one line per result:
// the noise generator, DDPM and DDIM steps (each kernel path), a whole guided sampling loop, and the
// reference UNet's forward pass in float and double. scripts/ci-deps-matrix.sh builds it against each
// supported xsimd / Eigen release and requires the same lines from all of them, on one machine and one
// instruction set: the results must not depend on which release of a dependency diffuse was built with.
//
//   ./build/tests/bits_digest > digest.txt
//   ./build/tests/bits_digest --dump DIR   (also writes each result's values to DIR/<line>.bin, to measure
//                                           how far two builds' results are apart when their bits differ)
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "diffuse/ddpm.hpp"
#include "diffuse/gaussian_mixture.hpp"
#include "diffuse/nn/unet.hpp"

namespace {

/// FNV-1a over the bytes of the values.
template <class T>
std::uint64_t digest(std::span<const T> v) {
  std::uint64_t h = 1469598103934665603ull;
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  for (std::size_t i = 0; i < v.size() * sizeof(T); ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

std::string dump_dir;  // --dump DIR

template <class T>
void print(const std::string& what, const std::vector<T>& v) {
  std::printf("%-44s %016llx\n", what.c_str(), static_cast<unsigned long long>(digest(std::span<const T>(v))));
  if (dump_dir.empty()) return;
  std::string name = what;
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  if (std::FILE* f = std::fopen((dump_dir + "/" + name + (sizeof(T) == 4 ? ".f32" : ".f64")).c_str(), "wb")) {
    std::fwrite(v.data(), sizeof(T), v.size(), f);
    std::fclose(f);
  }
}

template <class S>
void samplers(const char* type) {
  const auto schedule = diffuse::noise_schedule::cosine(1000);
  const diffuse::sample_shape shape{.batch = 3, .channels = 2, .spatial = 1000};  // vector bodies and tails
  std::vector<S> x(shape.numel()), out(shape.numel()), next(shape.numel());
  diffuse::fill_initial_noise<S>(x, shape, 11);
  print(std::string("noise ") + type, x);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<S>(0.3) * x[(i * 7) % x.size()];
  const auto list = diffuse::make_timesteps(1000, 20, diffuse::timestep_spacing::trailing);
  const diffuse::normal_generator gen(11);
  const diffuse::generated_noise noise{.generator = &gen, .first_sample = 0, .stream = 5};
  const diffuse::ddim_sampler ddim(schedule, list, {.prediction = diffuse::prediction_type::v_prediction, .eta = 0.5});
  ddim.step<S>(3, {.x_t = x, .model_output = out, .x_prev = next, .generated = noise}, shape);
  print(std::string("ddim step eta 0.5, v ") + type, next);
  const diffuse::ddim_sampler clipped(schedule, list, {.prediction = diffuse::prediction_type::epsilon, .processing = {.clip_range = 1.0}});
  clipped.step<S>(3, {.x_t = x, .model_output = out, .x_prev = next}, shape);
  print(std::string("ddim step clip, eps ") + type, next);
  const diffuse::ddpm_sampler ddpm(schedule, list, {.prediction = diffuse::prediction_type::sample});
  ddpm.step<S>(3, {.x_t = x, .model_output = out, .x_prev = next, .generated = noise}, shape);
  print(std::string("ddpm step x0 ") + type, next);

  // A whole loop with classifier-free guidance on the exact Gaussian-mixture denoiser.
  const diffuse::gaussian_mixture data({0.3, 0.7}, {{-1.0, 0.5}, {1.0, -0.5}}, {0.2, 0.3});
  auto cond = data.denoiser<S>(schedule, diffuse::prediction_type::epsilon);
  const diffuse::sample_shape points{.batch = 64, .channels = 2, .spatial = 1};
  std::vector<S> y(points.numel());
  diffuse::fill_initial_noise<S>(y, points, 3);
  diffuse::sample(ddim, cond, std::span<S>(y), points, {.seed = 3});
  print(std::string("ddim-20 loop on a mixture ") + type, y);
}

template <class S>
void unet(const char* type, const std::string& folder) {
  auto net = diffuse::nn::unet2d<S>::load(folder);
  const auto& c = net.config();
  const int n = 2;
  const diffuse::sample_shape shape{.batch = static_cast<std::size_t>(n), .channels = static_cast<std::size_t>(c.in_channels),
                                    .spatial = static_cast<std::size_t>(c.sample_height) * c.sample_width};
  std::vector<S> x(shape.numel()), out(static_cast<std::size_t>(n) * c.out_channels * c.sample_height * c.sample_width);
  diffuse::fill_initial_noise<S>(x, shape, 7);
  const std::vector<double> t{640.0, 17.0};
  std::vector<int> l;
  if (net.class_conditional())
    for (int i = 0; i < n; ++i) l.push_back(i % *c.num_class_embeds);
  net.forward(x, n, {c.sample_height, c.sample_width}, t, l, out);
  print("unet " + std::filesystem::path(folder).filename().string() + " " + type, out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--dump") dump_dir = argv[2];
  try {
    samplers<float>("float");
    samplers<double>("double");
    const std::string fixtures = DIFFUSE_FIXTURE_DIR;
    unet<float>("float", fixtures + "/unet/class_attention");
    unet<double>("double", fixtures + "/unet/class_attention");
    unet<float>("float", fixtures + "/unet/scale_shift_mid_attention");
    unet<float>("float", std::string(DIFFUSE_SOURCE_DIR) + "/models/digits");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bits_digest: %s\n", e.what());
    return 1;
  }
  return 0;
}
