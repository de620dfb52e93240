// The reference UNet: parity with the PyTorch implementation of diffusers' UNet2DModel
// (tools/make_unet_fixtures.py), layer tests against closed forms, determinism, no allocation once
// warm, and the errors for bad configs, weights and inputs.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
// GCC 12's avx512fintrin.h initialises the "undefined" operands of its intrinsics from themselves
// (__m512 __Y = __Y) and warns about it where the vector exp test below inlines them (GCC bug 105593,
// fixed in GCC 13). Set before any include, so that it covers the compiler's header.
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <vector>

#include "diffuse/ddpm.hpp"
#include "diffuse/nn/unet.hpp"
#include "support.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

// Counts every heap allocation, Eigen's included (it calls malloc directly), by interposing malloc.
// Under AddressSanitizer, which owns malloc and free, an interposed malloc would hand ASan's free memory
// it never allocated; the count comes from the sanitizer's allocation hook instead.
#if defined(__SANITIZE_ADDRESS__)
// Declared here: GCC ships the function in libasan but not clang's <sanitizer/allocator_interface.h>.
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*)(const volatile void*, std::size_t), void (*)(const volatile void*));
namespace {
std::atomic<long> g_mallocs{0};
void count_malloc(const volatile void*, std::size_t) { g_mallocs.fetch_add(1, std::memory_order_relaxed); }
void ignore_free(const volatile void*) {}
const int g_hooks_installed = __sanitizer_install_malloc_and_free_hooks(count_malloc, ignore_free);
}  // namespace
#else
extern "C" void* __libc_malloc(std::size_t);
namespace {
std::atomic<long> g_mallocs{0};
}
extern "C" void* malloc(std::size_t n) {
  g_mallocs.fetch_add(1, std::memory_order_relaxed);
  return __libc_malloc(n);
}
#endif

namespace fs = std::filesystem;
using diffuse::nn::unet2d;

namespace {

const fs::path kDir = fs::path(DIFFUSE_FIXTURE_DIR) / "unet";

template <class S>
struct parity_case {
  std::vector<S> x, expected;
  std::vector<double> timesteps;
  std::vector<int> labels;
  int n = 0, h = 0, w = 0;
};

template <class S>
parity_case<S> read_case(const fs::path& dir) {
  auto io = diffuse::safetensors_file::load(dir / "io.safetensors");
  auto io64 = diffuse::safetensors_file::load(dir / "io_f64.safetensors");
  parity_case<S> c;
  c.x = io.read<S>("x");
  const auto& shape = io.info("x").shape;
  c.n = static_cast<int>(shape[0]);
  c.h = static_cast<int>(shape[2]);
  c.w = static_cast<int>(shape[3]);
  c.timesteps = io.read<double>("timesteps");
  if (io.contains("labels"))
    for (auto l : io.read<std::int64_t>("labels")) c.labels.push_back(static_cast<int>(l));
  c.expected = std::is_same_v<S, float> ? io.read<S>("expected_f32") : io64.read<S>("expected_f64");
  return c;
}

template <class S>
double parity(const fs::path& dir, const fs::path& model_dir, double tol, const diffuse::nn::unet_options& options = {}) {
  auto net = unet2d<S>::load(model_dir, options);
  auto c = read_case<S>(dir);
  std::vector<S> out(c.expected.size());
  net.forward(c.x, c.n, {c.h, c.w}, c.timesteps, c.labels, out);
  return test::worst_relative(out, c.expected, tol);
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

// SPEC §11 form: |a − e| ≤ tol·(|e| + max|e|). Float: 1e-5 — float32 rounding differs from PyTorch's only
// in the order of accumulation (GEMM blocking, group-norm sums in double here), which the ~40 layers
// amplify to a few 1e-7 of the output scale. Double: 1e-10, the same argument at 2^-53.
TEST_CASE("UNet matches the PyTorch UNet2DModel for every fixture configuration") {
  for (std::string name : {"class_attention", "scale_shift_learned", "deep_no_mid_attention", "scale_shift_mid_attention"}) {
    CAPTURE(name);
    const double wf = parity<float>(kDir / name, kDir / name, 1e-5);
    const double wd = parity<double>(kDir / name, kDir / name, 1e-10);
    MESSAGE(name << ": worst error / tolerance  float " << wf << "  double " << wd);
    CHECK(wf <= 1.0);
    CHECK(wd <= 1.0);
  }
}

// The same parity, unchanged tolerances, with every 3×3 stride-1 convolution forced to each Winograd tile
// size (the fixture models' layers have fewer than 128 channels, so the default `automatic` above already
// runs them all on the direct kernel).
TEST_CASE("UNet parity holds with every convolution algorithm forced") {
  using diffuse::nn::conv_algorithm;
  for (auto a : {conv_algorithm::winograd2, conv_algorithm::winograd4})
    for (std::string name : {"class_attention", "scale_shift_learned", "deep_no_mid_attention", "scale_shift_mid_attention", "digits"}) {
      const fs::path model = name == "digits" ? fs::path(DIFFUSE_SOURCE_DIR) / "models" / "digits" : kDir / name;
      if (!fs::exists(kDir / name / "io.safetensors") || !fs::exists(model / "config.json")) continue;
      const std::string algorithm = diffuse::nn::conv_algorithm_name(a);
      CAPTURE(name);
      CAPTURE(algorithm);
      diffuse::nn::unet_options o;
      o.convolution = a;
      const double wf = parity<float>(kDir / name, model, 1e-5, o);
      const double wd = parity<double>(kDir / name, model, 1e-10, o);
      MESSAGE(name << " " << algorithm << ": worst error / tolerance  float " << wf << "  double " << wd);
      CHECK(wf <= 1.0);
      CHECK(wd <= 1.0);
    }
}

TEST_CASE("UNet options: a Winograd algorithm forced on a strided layer, or an unknown layer name, is an error") {
  using diffuse::nn::conv_algorithm;
  diffuse::nn::unet_options o;
  o.layers["down_blocks.0.downsamplers.0.conv"] = conv_algorithm::winograd2;
  test::check_error([&] { unet2d<float>::load(kDir / "deep_no_mid_attention", o); },
                    {"[diffuse.argument]", "\"down_blocks.0.downsamplers.0.conv\"", "stride 2", "cannot use winograd2", "supports: direct"});
  diffuse::nn::unet_options unknown;
  unknown.layers["down_blocks.9.conv"] = conv_algorithm::direct;
  test::check_error([&] { unet2d<float>::load(kDir / "deep_no_mid_attention", unknown); }, {"\"down_blocks.9.conv\"", "no convolution"});
  // A per-layer override wins over the model-wide choice.
  diffuse::nn::unet_options mixed;
  mixed.convolution = conv_algorithm::winograd4;
  mixed.layers["conv_out"] = conv_algorithm::direct;
  CHECK(parity<float>(kDir / "deep_no_mid_attention", kDir / "deep_no_mid_attention", 1e-5, mixed) <= 1.0);
}

TEST_CASE("UNet: the shipped digits model matches PyTorch") {
  const fs::path model = fs::path(DIFFUSE_SOURCE_DIR) / "models" / "digits";
  if (!fs::exists(kDir / "digits" / "io.safetensors") || !fs::exists(model / "config.json")) {
    MESSAGE("no digits fixture; skipped");
    return;
  }
  CHECK(parity<float>(kDir / "digits", model, 1e-5) <= 1.0);
  CHECK(parity<double>(kDir / "digits", model, 1e-10) <= 1.0);
}

TEST_CASE("UNet: the ddpm-cifar10-32 shape (35.7M parameters) matches PyTorch when its fixture was generated") {
  const char* dir = std::getenv("DIFFUSE_CIFAR_FIXTURE");
  if (!dir || !fs::exists(fs::path(dir) / "io.safetensors")) {
    MESSAGE("DIFFUSE_CIFAR_FIXTURE not set; the cifar-shape parity runs as its own ctest");
    return;
  }
  auto net = unet2d<float>::load(dir);
  CHECK(net.parameter_count() == 35746307);
  CHECK(parity<float>(dir, dir, 1e-5) <= 1.0);
  CHECK(parity<double>(dir, dir, 1e-10) <= 1.0);
}

TEST_CASE("UNet: Eigen tensor interface, Denoiser interface and batch broadcasting agree with forward()") {
  auto net = unet2d<double>::load(kDir / "class_attention");
  auto c = read_case<double>(kDir / "class_attention");
  diffuse::nn::image_tensor<double> x(c.n, 1, c.h, c.w);
  std::copy(c.x.begin(), c.x.end(), x.data());
  auto y = net.forward(x, c.timesteps, c.labels);
  CHECK(y.dimension(0) == c.n);
  CHECK(test::worst_relative(std::span<const double>(y.data(), y.size()), c.expected, 1e-10) <= 1.0);

  // One timestep for the batch equals the per-item call with the same value.
  std::vector<double> one{417.0}, three{417.0, 417.0, 417.0};
  std::vector<double> a(c.expected.size()), b(c.expected.size()), d(c.expected.size());
  net.forward(c.x, c.n, {c.h, c.w}, one, c.labels, a);
  net.forward(c.x, c.n, {c.h, c.w}, three, c.labels, b);
  CHECK(a == b);
  auto model = net.conditioned(c.labels);
  static_assert(diffuse::Denoiser<decltype(model), double>);
  model(c.x, 417, d);
  CHECK(a == d);
}

TEST_CASE("UNet: same bits for any batch split and thread count") {
  auto net = unet2d<float>::load(kDir / "deep_no_mid_attention");
  auto c = read_case<float>(kDir / "deep_no_mid_attention");
  std::vector<float> whole(c.expected.size()), split(c.expected.size());
  net.forward(c.x, c.n, {c.h, c.w}, c.timesteps, {}, whole);
  const std::size_t in_per = c.x.size() / c.n, out_per = whole.size() / c.n;
  for (int i = 0; i < c.n; ++i)
    net.forward(std::span<const float>(c.x).subspan(i * in_per, in_per), 1, {c.h, c.w}, std::span<const double>(&c.timesteps[i], 1), {},
                std::span<float>(split).subspan(i * out_per, out_per));
  CHECK(whole == split);
#if defined(_OPENMP)
  const int before = omp_get_max_threads();
  omp_set_num_threads(1);
  std::vector<float> one(whole.size());
  net.forward(c.x, c.n, {c.h, c.w}, c.timesteps, {}, one);
  omp_set_num_threads(2);
  std::vector<float> two(whole.size());
  net.forward(c.x, c.n, {c.h, c.w}, c.timesteps, {}, two);
  omp_set_num_threads(before);
  CHECK(one == whole);
  CHECK(two == whole);
#endif
}

TEST_CASE("UNet: no heap allocation in a forward pass once warm, with every convolution algorithm") {
  using diffuse::nn::conv_algorithm;
  for (auto a : {conv_algorithm::automatic, conv_algorithm::winograd2, conv_algorithm::winograd4}) {
    diffuse::nn::unet_options o;
    o.convolution = a;
    auto net = unet2d<float>::load(kDir / "class_attention", o);
    auto c = read_case<float>(kDir / "class_attention");
    std::vector<float> out(c.expected.size());
    net.forward(c.x, c.n, {c.h, c.w}, c.timesteps, c.labels, out);  // warm-up sizes the workspace
#if defined(__SANITIZE_ADDRESS__)
    REQUIRE(g_hooks_installed != 0);  // the count below relies on the sanitizer's hook
#endif
    const long before = g_mallocs.load();
    for (int i = 0; i < 3; ++i) net.forward(c.x, c.n, {c.h, c.w}, c.timesteps, c.labels, out);
    CHECK(g_mallocs.load() - before == 0);
  }
}

TEST_CASE("UNet drives the samplers, with batched classifier-free guidance over class labels") {
  auto net = unet2d<float>::load(kDir / "class_attention");
  const int n = 2;
  std::vector<int> labels{1, 3, 4, 4};  // conditional half, then the null class for the unconditional half
  auto both = net.conditioned(labels);
  diffuse::sample_shape shape{n, 1, 64};
  auto guided = diffuse::batched_cfg_model<float, decltype(both)>(both, shape, 2.0);
  auto schedule = diffuse::noise_schedule::cosine(1000);
  diffuse::ddim_sampler sampler(schedule, diffuse::make_timesteps(1000, 5, diffuse::timestep_spacing::trailing),
                               {.prediction = diffuse::prediction_type::epsilon});
  std::vector<float> x(shape.numel());
  diffuse::sample(sampler, guided, std::span<float>(x), shape, {.seed = 3});
  for (float v : x) REQUIRE(std::isfinite(v));
}

// ---- layers against closed forms ---------------------------------------------------------------

TEST_CASE("conv2d equals the direct sum, for 3x3 padded, strided, asymmetric padding and 1x1") {
  std::mt19937 rng(5);
  std::normal_distribution<double> nd;
  for (auto [k, stride, pt, pb] : std::vector<std::array<int, 4>>{{3, 1, 1, 1}, {3, 2, 1, 1}, {3, 2, 0, 1}, {1, 1, 0, 0}}) {
    diffuse::nn::conv2d<double> c;
    c.in = 3;
    c.out = 4;
    c.kernel = k;
    c.stride = stride;
    c.pad_top = c.pad_left = pt;
    c.pad_bottom = c.pad_right = pb;
    c.weight.resize(4, 3 * k * k);
    c.bias.resize(4);
    for (Eigen::Index i = 0; i < c.weight.size(); ++i) c.weight.data()[i] = nd(rng);
    for (int i = 0; i < 4; ++i) c.bias[i] = nd(rng);
    const int n = 2, h = 6, w = 7;
    std::vector<double> x(n * 3 * h * w);
    for (auto& v : x) v = nd(rng);
    const int ho = c.out_height(h), wo = c.out_width(w);
    std::vector<double> y(n * 4 * ho * wo), scratch(c.scratch_size() * diffuse::nn::max_threads() + 1);
    diffuse::nn::conv2d_forward(c, x.data(), n, h, w, y.data(), std::span<double>(scratch));
    double worst = 0;
    for (int b = 0; b < n; ++b)
      for (int o = 0; o < 4; ++o)
        for (int i = 0; i < ho; ++i)
          for (int j = 0; j < wo; ++j) {
            double s = c.bias[o];
            for (int ci = 0; ci < 3; ++ci)
              for (int ky = 0; ky < k; ++ky)
                for (int kx = 0; kx < k; ++kx) {
                  const int iy = i * stride - pt + ky, ix = j * stride - pt + kx;
                  if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                  s += c.weight(o, (ci * k + ky) * k + kx) * x[((b * 3 + ci) * h + iy) * w + ix];
                }
            worst = std::max(worst, std::abs(s - y[((b * 4 + o) * ho + i) * wo + j]));
          }
    CAPTURE(k);
    CAPTURE(stride);
    CHECK(worst < 1e-12);
  }
}

TEST_CASE_TEMPLATE("strided 3x3 convolutions on packed weights run the register tiles on im2col columns", S, float, double) {
  // Downsampling convolutions (stride 2, diffusers' padding 1 or bottom/right only) take the direct
  // kernel's tiles over their im2col columns once their weights are packed. Against the direct sum in
  // double: outputs of 8×8 and 16×16 pixels (the last tiles split evenly), 11 output channels
  // (a partial weight block), with and without accumulation into y. Tolerance: float 1e-5, double 1e-12
  // (sums of 45 products of unit normals).
  std::mt19937 rng(9);
  std::normal_distribution<double> nd;
  // Outputs of 8×8 and 16×16 pixels: whole vectors for every width up to 16 lanes (4 and 16 of them
  // with AVX-512 floats).
  for (auto [pt, h] : std::vector<std::array<int, 2>>{{1, 16}, {0, 16}, {1, 32}}) {
    const int w = h;
    diffuse::nn::conv2d<S> c;
    c.in = 5;
    c.out = 11;
    c.kernel = 3;
    c.stride = 2;
    c.pad_top = c.pad_left = pt;
    c.pad_bottom = c.pad_right = 1;
    c.weight.resize(c.out, c.in * 9);
    c.bias.resize(c.out);
    for (Eigen::Index i = 0; i < c.weight.size(); ++i) c.weight.data()[i] = static_cast<S>(nd(rng));
    for (int i = 0; i < c.out; ++i) c.bias[i] = static_cast<S>(nd(rng));
    c.pack();
    const int ho = c.out_height(h), wo = c.out_width(w);
    REQUIRE(c.uses_tiles_on_columns(h, w));
    const int n = 2;
    std::vector<S> x(n * c.in * h * w);
    for (auto& v : x) v = static_cast<S>(nd(rng));
    std::vector<S> y(n * c.out * ho * wo), y0(y.size()), scratch(diffuse::nn::conv2d_scratch(c, n, h, w, diffuse::nn::max_threads()));
    for (auto& v : y0) v = static_cast<S>(nd(rng));
    for (bool accumulate : {false, true}) {
      y = y0;
      diffuse::nn::conv2d_forward(c, x.data(), n, h, w, y.data(), std::span<S>(scratch), accumulate);
      double worst = 0;
      for (int b = 0; b < n; ++b)
        for (int o = 0; o < c.out; ++o)
          for (int i = 0; i < ho; ++i)
            for (int j = 0; j < wo; ++j) {
              const std::size_t at = ((static_cast<std::size_t>(b) * c.out + o) * ho + i) * wo + j;
              double sum = static_cast<double>(c.bias[o]) + (accumulate ? static_cast<double>(y0[at]) : 0.0);
              for (int ci = 0; ci < c.in; ++ci)
                for (int ky = 0; ky < 3; ++ky)
                  for (int kx = 0; kx < 3; ++kx) {
                    const int iy = i * 2 - pt + ky, ix = j * 2 - pt + kx;
                    if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                    sum += static_cast<double>(c.weight(o, (ci * 3 + ky) * 3 + kx)) * static_cast<double>(x[((b * c.in + ci) * h + iy) * w + ix]);
                  }
              worst = std::max(worst, std::abs(sum - static_cast<double>(y[at])));
            }
      INFO("padding ", pt, " size ", h, "x", w, " accumulate ", accumulate);
      CHECK(worst < (std::is_same_v<S, float> ? 1e-5 : 1e-12));
    }
  }
}

TEST_CASE_TEMPLATE("direct convolution kernel equals the direct sum; accumulate; partial channel blocks and tiles", S, float, double) {
  std::mt19937 rng(11);
  std::normal_distribution<double> nd;
  const int L = diffuse::nn::simd_lanes<S>;
  // Widths of 1, 2 and 5 SIMD vectors (tiles of several vectors with remainders), output channel counts
  // that fill one or two blocks of the register tile's rows (4 or 8) partially, and images narrower than a vector or of odd width, whose
  // vectors span rows (h·w a multiple of the vector, w not).
  const int half = std::max(1, L / 2);
  for (auto [k, in, out, h, w] : std::vector<std::array<int, 5>>{
           {3, 3, 5, 5, L}, {3, 7, 4, 3, 2 * L}, {1, 6, 9, 4, 5 * L}, {3, 2, 1, 7, 5 * L}, {3, 5, 6, 2 * L / half, half},
           {3, 4, 3, L, 3}, {1, 3, 5, L, 3}}) {
    const int n = 2;
    diffuse::nn::conv2d<S> c;
    c.in = in;
    c.out = out;
    c.kernel = k;
    c.pad_top = c.pad_left = c.pad_bottom = c.pad_right = k / 2;
    c.weight.resize(out, in * k * k);
    c.bias.resize(out);
    for (Eigen::Index i = 0; i < c.weight.size(); ++i) c.weight.data()[i] = static_cast<S>(nd(rng));
    for (int i = 0; i < out; ++i) c.bias[i] = static_cast<S>(nd(rng));
    c.pack();
    REQUIRE(c.uses_direct_kernel(h, w));
    std::vector<S> x(static_cast<std::size_t>(n) * in * h * w), base(static_cast<std::size_t>(n) * out * h * w);
    for (auto& v : x) v = static_cast<S>(nd(rng));
    for (auto& v : base) v = static_cast<S>(nd(rng));
    std::vector<S> scratch(diffuse::nn::conv2d_scratch(c, n, h, w, diffuse::nn::max_threads()));
    for (bool accumulate : {false, true}) {
      std::vector<S> y = base;
      diffuse::nn::conv2d_forward(c, x.data(), n, h, w, y.data(), std::span<S>(scratch), accumulate);
      double worst = 0, scale = 0;
      for (int b = 0; b < n; ++b)
        for (int o = 0; o < out; ++o)
          for (int i = 0; i < h; ++i)
            for (int j = 0; j < w; ++j) {
              const std::size_t at = ((static_cast<std::size_t>(b) * out + o) * h + i) * w + j;
              double s = c.bias[o] + (accumulate ? static_cast<double>(base[at]) : 0.0);
              for (int ci = 0; ci < in; ++ci)
                for (int ky = 0; ky < k; ++ky)
                  for (int kx = 0; kx < k; ++kx) {
                    const int iy = i - k / 2 + ky, ix = j - k / 2 + kx;
                    if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                    s += static_cast<double>(c.weight(o, (ci * k + ky) * k + kx)) * x[((static_cast<std::size_t>(b) * in + ci) * h + iy) * w + ix];
                  }
              worst = std::max(worst, std::abs(s - static_cast<double>(y[at])));
              scale = std::max(scale, std::abs(s));
            }
      CAPTURE(k);
      CAPTURE(out);
      CAPTURE(accumulate);
      // A sum of at most 64 products in S: a few ulps of S relative to the output scale.
      CHECK(worst <= scale * 64 * std::numeric_limits<S>::epsilon());
    }
  }
}

TEST_CASE("group norm: each group has mean beta and spread gamma; the time-embedding add and scale-shift forms") {
  diffuse::nn::group_norm<double> g;
  g.groups = 2;
  g.eps = 0;
  g.weight = Eigen::VectorXd::Constant(4, 2.0);
  g.bias = Eigen::VectorXd::Constant(4, 0.5);
  std::vector<double> x(4 * 5), y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(1.3 * i) * (i < 10 ? 1 : 7) + (i < 10 ? 3 : -2);
  diffuse::nn::group_norm_forward(g, x.data(), 1, 5, y.data());
  for (int grp = 0; grp < 2; ++grp) {
    double m = 0, v = 0;
    for (int i = 0; i < 10; ++i) m += y[grp * 10 + i] / 10;
    for (int i = 0; i < 10; ++i) v += (y[grp * 10 + i] - m) * (y[grp * 10 + i] - m) / 10;
    CHECK(m == doctest::Approx(0.5).epsilon(1e-12));
    CHECK(v == doctest::Approx(4.0).epsilon(1e-12));
  }
  // A constant per channel added before the statistics changes the mean of its channel only.
  std::vector<double> add{1, 0, 0, 0}, y2(x.size());
  diffuse::nn::group_norm_forward(g, x.data(), 1, 5, y2.data(), {.add = add.data(), .stride = 4});
  std::vector<double> x3 = x, y3(x.size());
  for (int i = 0; i < 5; ++i) x3[i] += 1;
  diffuse::nn::group_norm_forward(g, x3.data(), 1, 5, y3.data());
  for (std::size_t i = 0; i < x.size(); ++i) CHECK(y2[i] == doctest::Approx(y3[i]).epsilon(1e-12));
  // scale-shift: y·(1 + s) + b, then SiLU.
  std::vector<double> ss{0.5, 0.5, 0.5, 0.5}, sh{1, 1, 1, 1}, y4(x.size());
  diffuse::nn::group_norm_forward(g, x.data(), 1, 5, y4.data(), {.scale = ss.data(), .shift = sh.data(), .stride = 4, .silu = true});
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double z = y[i] * 1.5 + 1;
    CHECK(y4[i] == doctest::Approx(z / (1 + std::exp(-z))).epsilon(1e-12));
  }
}

TEST_CASE_TEMPLATE("a group norm writing the next convolution's bordered input gives the unfused pair's bits", S, float, double) {
  // The UNet lets a group norm write the zero-bordered layout the direct 3×3 kernel reads, instead of
  // the kernel copying it: the same operations on the same values, so the outputs are identical, garbage
  // left in the buffer included (every border element must be rewritten). Rows of whole vectors (one
  // bordered copy) and images narrower than a vector or of odd width (three shifted copies).
  std::mt19937 rng(5);
  std::normal_distribution<double> nd;
  const int L = diffuse::nn::simd_lanes<S>, n = 2, in = 8, out = 5, half = std::max(1, L / 2);
  diffuse::nn::group_norm<S> g;
  g.groups = 4;
  g.eps = 1e-5;
  g.weight.resize(in);
  g.bias.resize(in);
  for (int c = 0; c < in; ++c) g.weight[c] = static_cast<S>(1 + 0.1 * nd(rng)), g.bias[c] = static_cast<S>(0.1 * nd(rng));
  diffuse::nn::conv2d<S> c;
  c.in = in;
  c.out = out;
  c.weight.resize(out, in * 9);
  c.bias.resize(out);
  for (Eigen::Index i = 0; i < c.weight.size(); ++i) c.weight.data()[i] = static_cast<S>(nd(rng));
  for (int i = 0; i < out; ++i) c.bias[i] = static_cast<S>(nd(rng));
  c.pack();
  for (auto [h, w, copies] : std::vector<std::array<int, 3>>{{3, 2 * L, 1}, {2 * L / half, half, L > 1 ? 3 : 1}, {L, 3, L % 3 ? 3 : 1}}) {
    CAPTURE(h);
    CAPTURE(w);
    const auto layout = c.bordered_input(h, w);
    REQUIRE(layout.active());
    CHECK(layout.copies == copies);
    std::vector<S> x(static_cast<std::size_t>(n) * in * h * w), shift(static_cast<std::size_t>(n) * in);
    for (auto& v : x) v = static_cast<S>(nd(rng));
    for (auto& v : shift) v = static_cast<S>(nd(rng));
    const diffuse::nn::norm_epilogue<S> e{.add = shift.data(), .stride = in, .silu = true};
    // Unfused: norm into a plain buffer, then the convolution with its own bordered copy.
    std::vector<S> normed(x.size()), scratch(diffuse::nn::conv2d_scratch(c, n, h, w, diffuse::nn::max_threads()), S(7));
    std::vector<S> unfused(static_cast<std::size_t>(n) * out * h * w);
    diffuse::nn::group_norm_forward(g, x.data(), n, h * w, normed.data(), e);
    diffuse::nn::conv2d_forward(c, normed.data(), n, h, w, unfused.data(), std::span<S>(scratch));
    // Fused: the norm writes the bordered layout into a buffer full of garbage.
    std::vector<S> bordered(static_cast<std::size_t>(n) * in * layout.plane, S(123)), fused(unfused.size());
    auto fe = e;
    fe.layout = layout;
    diffuse::nn::group_norm_forward(g, x.data(), n, h * w, bordered.data(), fe);
    diffuse::nn::conv2d_forward_bordered(c, bordered.data(), n, h, w, fused.data());
    CHECK(fused == unfused);
  }
  // A convolution that reads its input as it is has no bordered layout, and the bordered entry refuses it.
  diffuse::nn::conv2d<S> one = c;
  one.kernel = 1;
  one.pad_top = one.pad_left = one.pad_bottom = one.pad_right = 0;
  one.weight.resize(out, in);
  one.pack();
  std::vector<S> any(static_cast<std::size_t>(n) * in * 4 * L), result(static_cast<std::size_t>(n) * out * 4 * L);
  CHECK_FALSE(one.bordered_input(4, L).active());
  CHECK_THROWS_AS(diffuse::nn::conv2d_forward_bordered(one, any.data(), n, 4, L, result.data()), diffuse::error);
}

TEST_CASE("attention over one pixel is the output map of the value map, plus the residual") {
  // softmax over a single key is 1, so the block reduces to x + W_o (W_v x + b_v) + b_o.
  diffuse::nn::attention<double> a;
  a.has_norm = false;
  a.heads = 2;
  a.head_dim = 2;
  auto lin = [](int out, int in, double s) {
    diffuse::nn::linear<double> l;
    l.weight.resize(out, in);
    l.bias.resize(out);
    for (int i = 0; i < out; ++i) {
      l.bias[i] = s * (i + 1);
      for (int j = 0; j < in; ++j) l.weight(i, j) = std::cos(s * (i * in + j + 1));
    }
    return l;
  };
  a.to_q = lin(4, 4, 0.3);
  a.to_k = lin(4, 4, 0.7);
  a.to_v = lin(4, 4, 1.1);
  a.to_out = lin(4, 4, 1.9);
  std::vector<double> x{0.5, -1.0, 2.0, 0.25}, scratch(diffuse::nn::attention_scratch(a, 1, 1));
  Eigen::Map<Eigen::VectorXd> xv(x.data(), 4);
  const Eigen::VectorXd expected = xv + a.to_out.weight * (a.to_v.weight * xv + a.to_v.bias) + a.to_out.bias;
  diffuse::nn::attention_forward(a, x.data(), 1, 1, std::span<double>(scratch));
  for (int i = 0; i < 4; ++i) CHECK(x[i] == doctest::Approx(expected[i]).epsilon(1e-12));
}

TEST_CASE_TEMPLATE("the attention head kernel equals softmax(qᵀk·scale) applied to v, for every tile remainder", S, float, double) {
  // attention_head builds the scores transposed in register tiles and normalises down the columns; the
  // reference here is the textbook row softmax in long double. Head sizes cover every row remainder of
  // the tile (6 or 4 rows) and pixel counts one to five vectors of queries (the column remainders);
  // scores reach ±8 so that the max subtraction matters. Tolerance: float 2e-6 relative to the largest
  // |o| (measured worst 7.7e-7: a few ulps of sums of 16 to 80 products and an exp per score), double
  // 1e-14 (measured 1.2e-15).
  using batch = xsimd::batch<S>;
  constexpr std::ptrdiff_t L = batch::size;
  std::mt19937 rng(17);
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  for (std::ptrdiff_t d : {1, 5, 7, 16, 23}) {
    for (std::ptrdiff_t P : {L, 2 * L, 3 * L, 4 * L, 5 * L}) {
      const std::ptrdiff_t ld = P + 3;  // rows of q, k, v, o further apart than P, as within a head's block
      std::vector<S> q(d * ld), k(d * ld), v(d * ld), o(d * ld, S(-7)), scratch(diffuse::nn::detail::attention_head_scratch<S>(P));
      for (auto* m : {&q, &k, &v})
        for (auto& e : *m) e = static_cast<S>(uni(rng) * (m == &v ? 1.0 : 2.5));
      const S scale = static_cast<S>(1.0 / std::sqrt(static_cast<double>(d)));
      diffuse::nn::detail::attention_head<S>(q.data(), k.data(), v.data(), o.data(), d, P, ld, scale, scratch.data());
      long double worst = 0, largest = 0;
      for (std::ptrdiff_t i = 0; i < P; ++i) {
        std::vector<long double> w(P);
        long double mx = -1e300L, sum = 0;
        for (std::ptrdiff_t j = 0; j < P; ++j) {
          long double s = 0;
          for (std::ptrdiff_t c = 0; c < d; ++c) s += static_cast<long double>(q[c * ld + i]) * k[c * ld + j];
          w[j] = s * static_cast<long double>(scale);
          mx = std::max(mx, w[j]);
        }
        for (auto& e : w) sum += (e = std::exp(e - mx));
        for (std::ptrdiff_t c = 0; c < d; ++c) {
          long double ref = 0;
          for (std::ptrdiff_t j = 0; j < P; ++j) ref += static_cast<long double>(v[c * ld + j]) * w[j] / sum;
          worst = std::max(worst, std::abs(ref - static_cast<long double>(o[c * ld + i])));
          largest = std::max(largest, std::abs(ref));
        }
      }
      INFO("d ", d, " pixels ", P);
      CHECK(static_cast<double>(worst / largest) < (std::is_same_v<S, float> ? 2e-6 : 1e-14));
      for (std::ptrdiff_t c = 0; c < d; ++c)  // the padding between rows is not written
        for (std::ptrdiff_t i = P; i < ld; ++i) CHECK(o[c * ld + i] == S(-7));
    }
  }
}

namespace {
// fast_exp or fast_silu over n floats (a multiple of the vector width).
void vector_apply(const float* in, float* out, std::size_t n, bool silu) {
  using batch = xsimd::batch<float>;
  for (std::size_t i = 0; i < n; i += batch::size) {
    const batch x = batch::load_unaligned(in + i);
    (silu ? diffuse::detail::fast_silu(x) : diffuse::detail::fast_exp(x)).store_unaligned(out + i);
  }
}
}  // namespace

TEST_CASE("the UNet's vector exp and SiLU are within a few float ulps of the exact functions") {
  // fast_exp replaces xsimd::exp in SiLU and softmax (detail/simd_math.hpp). Measured against double
  // std::exp over [−86, 88] in steps that hit every reduction interval: the worst error in units of the
  // float result's last place is printed (1.01 and 2.72 on AVX-512); the bounds keep about one ulp of
  // margin. SiLU adds a division
  // (or, with AVX-512, a reciprocal estimate and a Newton step). Outside the range the argument is
  // clamped, and NaN must come out as NaN: a NaN in the network has to reach the sampler's check.
  using batch = xsimd::batch<float>;
  constexpr std::size_t L = batch::size;
  double worst_exp = 0, worst_silu = 0;
  float in[L], quarter[L], e[L], s[L];
  for (int i = 0; i < 200000; i += static_cast<int>(L)) {
    for (std::size_t l = 0; l < L; ++l) {
      in[l] = -86.0f + 174.0f * static_cast<float>(i + l) / 200000.0f;
      quarter[l] = in[l] * 0.25f;
    }
    vector_apply(in, e, L, false);
    vector_apply(quarter, s, L, true);
    for (std::size_t l = 0; l < L; ++l) {
      const double x = in[l], exact = std::exp(x);
      worst_exp = std::max(worst_exp, std::abs(e[l] - exact) / std::ldexp(1.0, std::ilogb(static_cast<float>(exact)) - 23));
      const double v = static_cast<double>(in[l] * 0.25f), silu = v / (1.0 + std::exp(-v));
      if (std::abs(silu) > 1e-30)
        worst_silu = std::max(worst_silu, std::abs(s[l] - silu) / std::ldexp(1.0, std::ilogb(static_cast<float>(silu)) - 23));
    }
  }
  MESSAGE("fast_exp worst ", worst_exp, " ulp; fast_silu worst ", worst_silu, " ulp");
  CHECK(worst_exp <= 2.0);
  CHECK(worst_silu <= 4.0);
  const auto first_lane = [&](float value, bool silu) {
    std::fill(in, in + L, value);
    vector_apply(in, e, L, silu);
    return e[0];
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(std::isnan(first_lane(nan, false)));
  CHECK(std::isnan(first_lane(nan, true)));
  CHECK(first_lane(-1000.0f, false) < 1e-37f);  // clamped: stands for 0
  CHECK(first_lane(-1000.0f, true) <= 0.0f);
  CHECK(first_lane(1000.0f, true) == 1000.0f);
}

TEST_CASE("the double UNet's vector exp is within 2 ulps of the exact function, and NaN stays NaN") {
  // diffuse's own double e^x (detail/simd_math.hpp), not xsimd's, so that the double UNet gives the
  // same bits with every xsimd release. Compared with long double expl over [−708, 709]; printed worst
  // (0.95 ulp measured on AVX-512), bound 2 ulps.
  using batch = xsimd::batch<double>;
  constexpr std::size_t L = batch::size;
  double in[L], out[L], worst = 0;
  for (int i = 0; i < 400000; i += static_cast<int>(L)) {
    for (std::size_t l = 0; l < L; ++l) in[l] = -708.0 + 1417.0 * static_cast<double>(i + static_cast<int>(l)) / 400000.0;
    diffuse::detail::fast_exp(batch::load_unaligned(in)).store_unaligned(out);
    for (std::size_t l = 0; l < L; ++l) {
      const long double exact = std::exp(static_cast<long double>(in[l]));
      const double ulp = std::ldexp(1.0, std::ilogb(static_cast<double>(exact)) - 52);
      worst = std::max(worst, static_cast<double>(std::abs(static_cast<long double>(out[l]) - exact) / ulp));
    }
  }
  MESSAGE("fast_exp<double> worst ", worst, " ulp");
  CHECK(worst <= 2.0);
  std::fill(in, in + L, std::numeric_limits<double>::quiet_NaN());
  diffuse::detail::fast_exp(batch::load_unaligned(in)).store_unaligned(out);
  CHECK(std::isnan(out[0]));
  std::fill(in, in + L, -1e4);
  diffuse::detail::fast_exp(batch::load_unaligned(in)).store_unaligned(out);
  CHECK(out[0] < 1e-300);  // clamped: stands for 0
}

TEST_CASE("time embedding: cos and sin halves with frequencies 10000^(-k/(half - shift))") {
  std::vector<double> t{0.0, 10.0}, e(2 * 8);
  diffuse::nn::timestep_embedding<double>(t, 8, true, 1.0, e.data());
  for (int k = 0; k < 4; ++k) {
    CHECK(e[k] == doctest::Approx(1.0));        // cos(0)
    CHECK(e[4 + k] == doctest::Approx(0.0));    // sin(0)
    const double f = std::exp(-std::log(10000.0) * k / 3.0);
    CHECK(e[8 + k] == doctest::Approx(std::cos(10 * f)).epsilon(1e-14));
    CHECK(e[12 + k] == doctest::Approx(std::sin(10 * f)).epsilon(1e-14));
  }
}

TEST_CASE("nearest 2x upsampling repeats each pixel in a 2x2 block") {
  std::vector<float> x{1, 2, 3, 4, 5, 6}, y(24);
  diffuse::nn::upsample_nearest2x(x.data(), 1, 2, 3, y.data());
  const std::vector<float> expected{1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 4, 4, 5, 5, 6, 6};
  CHECK(y == expected);
}

// ---- bad input ---------------------------------------------------------------------------------

TEST_CASE("UNet config errors say what was expected") {
  using diffuse::unet_config;
  auto base = nlohmann::json::parse(read_text(kDir / "class_attention" / "config.json"));
  auto with = [&](const char* key, nlohmann::json v) {
    auto j = base;
    j[key] = v;
    return j.dump();
  };
  test::check_error([&] { unet_config::from_json(with("down_block_types", {"DownBlock2D", "CrossAttnDownBlock2D"})); },
                    {"[diffuse.model]", "CrossAttnDownBlock2D", "expected DownBlock2D or AttnDownBlock2D"});
  test::check_error([&] { unet_config::from_json(with("block_out_channels", {8, 16, 32})); }, {"expected the same length"});
  test::check_error([&] { unet_config::from_json(with("time_embedding_type", "fourier")); }, {"fourier", "expected \"positional\""});
  test::check_error([&] { unet_config::from_json(with("class_embed_type", "timestep")); }, {"class_embed_type", "not supported"});
  test::check_error([&] { unet_config::from_json(with("norm_num_groups", 3)); }, {"groups"});
  test::check_error([&] { unet_config::from_json(with("attention_head_dim", 3)); }, {"attention_head_dim 3"});
  test::check_error([&] { unet_config::from_json(with("some_new_option", 1)); }, {"unknown option \"some_new_option\""});
  test::check_error([&] { unet_config::from_json(with("layers_per_block", "two")); }, {"layers_per_block", "expected an integer"});
  test::check_error([&] { unet_config::from_json(with("resnet_time_scale_shift", "ada_group")); }, {"expected \"default\" or \"scale_shift\""});
  test::check_error([&] { unet_config::from_json("{\"sample_size\": 8,"); }, {"not valid JSON"});
  test::check_error([&] { unet_config::from_json(std::string(100, '[') + std::string(100, ']')); }, {"deeper"});
  test::check_error([&] { unet_config::load("/nonexistent/config.json"); }, {"[diffuse.io]", "cannot open"});
}

TEST_CASE("UNet weight errors name the tensor and both shapes") {
  const fs::path src = kDir / "class_attention";
  auto file = diffuse::safetensors_file::load(src / "diffusion_pytorch_model.safetensors");
  auto cfg = diffuse::unet_config::load(src / "config.json");
  // Another architecture's weights: two layers per block expects tensors this file lacks.
  auto deeper = cfg;
  deeper.layers_per_block = 2;
  test::check_error([&] { unet2d<float> net(deeper, file); }, {"lack tensor \"down_blocks.0.resnets.1.norm1.weight\"", "(8,)"});
  auto wider = cfg;
  wider.block_out_channels = {16, 16};
  test::check_error([&] { unet2d<float> net(wider, file); }, {"\"conv_in.weight\"", "has shape (8, 1, 3, 3)", "expected (16, 1, 3, 3)"});
  auto no_class = cfg;
  no_class.num_class_embeds.reset();
  test::check_error([&] { unet2d<float> net(no_class, file); }, {"the architecture does not have", "class_embedding.weight"});
  test::check_error([&] { unet2d<float>::load("/nonexistent/model"); }, {"[diffuse.io]", "model folder"});
}

TEST_CASE("UNet input errors: channels, spatial size, labels, timesteps") {
  auto net = unet2d<float>::load(kDir / "class_attention");
  std::vector<float> x(2 * 64), out(2 * 64);
  std::vector<double> t{10};
  std::vector<int> labels{1, 2};
  test::check_error([&] { net.forward(std::span<const float>(x).first(100), 2, {8, 8}, t, labels, out); }, {"[diffuse.shape]", "input has 100"});
  std::vector<float> x7(2 * 49), o7(2 * 49);
  test::check_error([&] { net.forward(x7, 2, {7, 7}, t, labels, o7); }, {"7 x 7", "divisible by 2"});
  test::check_error([&] { net.forward(x, 2, {8, 8}, t, std::vector<int>{1, 5}, out); }, {"class label 5", "num_class_embeds = 5"});
  test::check_error([&] { net.forward(x, 2, {8, 8}, t, std::vector<int>{1}, out); }, {"1 class labels for 2 batch items"});
  test::check_error([&] { net(x, 10, out); }, {"class-conditional", "conditioned(labels)"});
  test::check_error([&] { net.forward(x, 2, {8, 8}, std::vector<double>{NAN}, labels, out); }, {"not finite"});
  test::check_error([&] { net.forward(x, 2, {8, 8}, std::vector<double>{1, 2, 3}, labels, out); }, {"3 timesteps"});
  auto model = net.conditioned(labels);
  test::check_error([&] { model(std::span<const float>(x).first(65), 1, out); }, {"multiple of in_channels 1 x 8 x 8"});
  auto uncond = unet2d<float>::load(kDir / "deep_no_mid_attention");
  std::vector<float> ux(2 * 16 * 16), uo(ux.size());
  test::check_error([&] { uncond.forward(ux, 1, {16, 16}, t, labels, uo); }, {"without class embeddings"});
}

TEST_CASE("UNet: random initialisation builds the ddpm-cifar10-32 shape with exactly its 35,746,307 parameters") {
  diffuse::unet_config c;
  c.block_out_channels = {128, 256, 256, 256};
  c.down_block_types = {"DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"};
  c.up_block_types = {"UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"};
  c.attention_head_dim.reset();
  auto net = unet2d<float>::random(c, 1);
  CHECK(net.parameter_count() == 35746307);
  auto small = unet2d<float>::random(diffuse::unet_config::load(kDir / "class_attention" / "config.json"), 2);
  CHECK(small.parameter_count() == 45129);  // tools/make_unet_fixtures.py printed it for the same config
}
