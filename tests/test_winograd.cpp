// Winograd F(2×2, 3×3) and F(4×4, 3×3) convolution (include/diffuse/nn/winograd.hpp) against the direct
// sum in double: random shapes with channels that are not multiples of the SIMD width, odd image sizes and
// batches; the bordered input a group norm writes; accumulation; the algorithm selection and its errors.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/group_norm.hpp"
#include "diffuse/nn/resnet_block.hpp"
#include "support.hpp"

namespace {

using diffuse::nn::conv_algorithm;

template <class S>
diffuse::nn::conv2d<S> random_conv(int in, int out, std::mt19937& rng) {
  std::normal_distribution<double> nd;
  diffuse::nn::conv2d<S> c;
  c.in = in;
  c.out = out;
  c.weight.resize(out, in * 9);
  c.bias.resize(out);
  // PyTorch's default scale: unit-variance outputs for unit-variance inputs.
  for (Eigen::Index i = 0; i < c.weight.size(); ++i) c.weight.data()[i] = static_cast<S>(nd(rng) / std::sqrt(9.0 * in));
  for (int i = 0; i < out; ++i) c.bias[i] = static_cast<S>(0.1 * nd(rng));
  c.pack();
  return c;
}

/// The exact (double) 3×3 "same" convolution of x with c's weights, plus `base` (accumulate) if given.
template <class S>
std::vector<double> reference(const diffuse::nn::conv2d<S>& c, const std::vector<S>& x, int n, int h, int w) {
  std::vector<double> y(static_cast<std::size_t>(n) * c.out * h * w);
  for (int b = 0; b < n; ++b)
    for (int o = 0; o < c.out; ++o)
      for (int i = 0; i < h; ++i)
        for (int j = 0; j < w; ++j) {
          double s = static_cast<double>(c.bias[o]);
          for (int ci = 0; ci < c.in; ++ci)
            for (int ky = 0; ky < 3; ++ky)
              for (int kx = 0; kx < 3; ++kx) {
                const int iy = i - 1 + ky, ix = j - 1 + kx;
                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                s += static_cast<double>(c.weight(o, (ci * 3 + ky) * 3 + kx)) * static_cast<double>(x[((static_cast<std::size_t>(b) * c.in + ci) * h + iy) * w + ix]);
              }
          y[((static_cast<std::size_t>(b) * c.out + o) * h + i) * w + j] = s;
        }
  return y;
}

/// max |y − ref| / max |ref|: the error relative to the output scale, the form of the UNet's bound.
template <class S>
double scaled_error(const std::vector<S>& y, const std::vector<double>& ref) {
  double scale = 0, worst = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    scale = std::max(scale, std::abs(ref[i]));
    worst = std::max(worst, std::abs(static_cast<double>(y[i]) - ref[i]));
  }
  return worst / scale;
}

}  // namespace

TEST_CASE_TEMPLATE("Winograd convolution equals the direct sum within its tile size's rounding bound", S, float, double) {
  // Unit-normal inputs, weights of PyTorch's scale. Error max|y − exact| relative to max|exact| (the
  // form of the UNet's parity bound). Worst measured here (AVX-512): float F(2×2) 3e-7, F(4×4) 4.2e-6;
  // double 1.7e-15 and 9.4e-15. The bounds leave 2–4× for other ISAs' summation orders: float 1e-6 and
  // 2e-5, double 1e-14 and 5e-14. F(4×4) loses about a decimal digit to its transforms' coefficients
  // (up to 8 in Aᵀ, 5 in Bᵀ, 1/24 in G), F(2×2) stays within twice the direct kernel's rounding.
  const bool is_float = std::is_same_v<S, float>;
  const double bound2 = is_float ? 1e-6 : 1e-14, bound4 = is_float ? 2e-5 : 5e-14;
  std::mt19937 rng(11);
  std::normal_distribution<double> nd;
  // (n, in, out, h, w): channels off the vector width and the 8-row weight block, odd and tiny images,
  // images wider than one vector of tiles, batches.
  for (auto [n, in, out, h, w] : std::vector<std::array<int, 5>>{{1, 5, 7, 7, 9},
                                                                 {3, 19, 13, 8, 8},
                                                                 {2, 3, 17, 5, 13},
                                                                 {1, 32, 32, 16, 16},
                                                                 {2, 24, 9, 1, 1},
                                                                 {1, 9, 33, 3, 70},
                                                                 {2, 40, 24, 11, 6}}) {
    auto c = random_conv<S>(in, out, rng);
    std::vector<S> x(static_cast<std::size_t>(n) * in * h * w);
    for (auto& v : x) v = static_cast<S>(nd(rng));
    const auto exact = reference(c, x, n, h, w);
    for (auto a : {conv_algorithm::winograd2, conv_algorithm::winograd4}) {
      CAPTURE(n);
      CAPTURE(in);
      CAPTURE(out);
      CAPTURE(h);
      CAPTURE(w);
      const std::string name = diffuse::nn::conv_algorithm_name(a);
      CAPTURE(name);
      c.select_algorithm(a, "test");
      REQUIRE(c.uses_winograd(h, w));
      std::vector<S> scratch(diffuse::nn::conv2d_scratch(c, n, h, w, diffuse::nn::max_threads()), S(5));
      std::vector<S> y(exact.size(), S(-3));
      diffuse::nn::conv2d_forward(c, x.data(), n, h, w, y.data(), std::span<S>(scratch));
      const double err = scaled_error(y, exact);
      MESSAGE(std::string(diffuse::nn::conv_algorithm_name(a)) << " " << in << "->" << out << " " << h << "x" << w << " n=" << n << ": " << err);
      CHECK(err < (a == conv_algorithm::winograd2 ? bound2 : bound4));
      // Accumulating: y += conv(x) onto a base.
      std::vector<S> base(exact.size()), acc(exact.size());
      std::vector<double> expect(exact.size());
      for (std::size_t i = 0; i < base.size(); ++i) {
        base[i] = static_cast<S>(nd(rng));
        acc[i] = base[i];
        expect[i] = exact[i] + static_cast<double>(base[i]);
      }
      diffuse::nn::conv2d_forward(c, x.data(), n, h, w, acc.data(), std::span<S>(scratch), /*accumulate=*/true);
      CHECK(scaled_error(acc, expect) < 2 * (a == conv_algorithm::winograd2 ? bound2 : bound4));
    }
  }
}

TEST_CASE_TEMPLATE("Winograd reads the bordered input a group norm writes, with the plain path's bits", S, float, double) {
  // norm_then_conv lets the group norm write the zero-bordered layout straight into the convolution's
  // scratch: the Winograd transform must read the same values there (one bordered copy for rows of whole
  // vectors, three shifted copies for narrow images) as from the plain normalised input.
  std::mt19937 rng(3);
  std::normal_distribution<double> nd;
  const int L = diffuse::nn::simd_lanes<S>, n = 2, in = 16, out = 11;
  diffuse::nn::group_norm<S> g;
  g.groups = 4;
  g.eps = 1e-5;
  g.weight.resize(in);
  g.bias.resize(in);
  for (int ch = 0; ch < in; ++ch) g.weight[ch] = static_cast<S>(1 + 0.1 * nd(rng)), g.bias[ch] = static_cast<S>(0.1 * nd(rng));
  for (auto a : {conv_algorithm::winograd2, conv_algorithm::winograd4})
    for (auto [h, w] : std::vector<std::array<int, 2>>{{6, 2 * L}, {5, 3}, {4, 4}, {9, L + 1}}) {
      CAPTURE(h);
      CAPTURE(w);
      auto c = random_conv<S>(in, out, rng);
      c.select_algorithm(a, "test");
      REQUIRE(c.bordered_input(h, w).active());
      std::vector<S> x(static_cast<std::size_t>(n) * in * h * w), normed(x.size());
      for (auto& v : x) v = static_cast<S>(nd(rng));
      std::vector<S> scratch(diffuse::nn::conv2d_scratch(c, n, h, w, diffuse::nn::max_threads()), S(77));
      std::vector<S> plain(static_cast<std::size_t>(n) * out * h * w), fused(plain.size());
      diffuse::nn::group_norm_forward(g, x.data(), n, h * w, normed.data(), {.silu = true});
      diffuse::nn::conv2d_forward(c, normed.data(), n, h, w, plain.data(), std::span<S>(scratch));
      diffuse::nn::block_workspace<S> ws{.normed = normed.data(), .conv_scratch = std::span<S>(scratch)};
      diffuse::nn::norm_then_conv(g, {.silu = true}, c, x.data(), n, h, w, fused.data(), ws);
      CHECK(fused == plain);
    }
}

TEST_CASE("Winograd: same bits for any thread count and batch split") {
  std::mt19937 rng(8);
  std::normal_distribution<double> nd;
  auto c = random_conv<float>(20, 12, rng);
  c.select_algorithm(conv_algorithm::winograd4, "test");
  const int n = 3, h = 13, w = 10;
  std::vector<float> x(static_cast<std::size_t>(n) * 20 * h * w);
  for (auto& v : x) v = static_cast<float>(nd(rng));
  std::vector<float> scratch(diffuse::nn::conv2d_scratch(c, n, h, w, 4)), whole(static_cast<std::size_t>(n) * 12 * h * w), split(whole.size());
  diffuse::nn::conv2d_forward(c, x.data(), n, h, w, whole.data(), std::span<float>(scratch));
  const std::size_t in_per = x.size() / n, out_per = whole.size() / n;
  for (int i = 0; i < n; ++i)
    diffuse::nn::conv2d_forward(c, x.data() + i * in_per, 1, h, w, split.data() + i * out_per, std::span<float>(scratch));
  CHECK(whole == split);
}

TEST_CASE("Winograd selection: automatic picks by layer, forcing it on a strided or 1x1 convolution is an error") {
  std::mt19937 rng(1);
  auto c = random_conv<float>(128, 128, rng);
  c.select_algorithm(conv_algorithm::automatic, "mid");
  CHECK(c.algorithm == conv_algorithm::winograd2);
  CHECK(c.uses_winograd(16, 16));
  CHECK_FALSE(c.uses_winograd(8, 8));  // small images: the direct kernel
  CHECK(c.runs_winograd(4, 16, 16));
  CHECK(c.runs_winograd(1, 16, 16));  // the batch size never changes the path (nor the bits)
  CHECK(c.runs_winograd(1, 32, 32));
  auto middle = random_conv<float>(64, 96, rng);  // 64–127 channels: F(4×4, 3×3)
  middle.select_algorithm(conv_algorithm::automatic, "middle");
  CHECK(middle.algorithm == conv_algorithm::winograd4);
  auto narrow = random_conv<float>(32, 64, rng);
  narrow.select_algorithm(conv_algorithm::automatic, "narrow");
  CHECK(narrow.algorithm == conv_algorithm::direct);
  c.select_algorithm(conv_algorithm::winograd2, "mid");
  CHECK(c.uses_winograd(2, 2));  // forced: every image size and batch
  CHECK(c.runs_winograd(1, 2, 2));
  c.select_algorithm(conv_algorithm::direct, "mid");
  CHECK(c.algorithm == conv_algorithm::direct);
  CHECK_FALSE(c.uses_winograd(8, 8));
  auto thin = random_conv<float>(3, 8, rng);  // conv_in of an RGB model: the transforms would dominate
  thin.select_algorithm(conv_algorithm::automatic, "conv_in");
  CHECK(thin.algorithm == conv_algorithm::direct);

  auto strided = random_conv<float>(8, 8, rng);
  strided.stride = 2;
  strided.select_algorithm(conv_algorithm::automatic, "down");
  CHECK(strided.algorithm == conv_algorithm::direct);
  test::check_error([&] { strided.select_algorithm(conv_algorithm::winograd2, "down_blocks.0.downsamplers.0.conv"); },
                    {"[diffuse.argument]", "\"down_blocks.0.downsamplers.0.conv\"", "stride 2", "cannot use winograd2", "supports: direct"});
  diffuse::nn::conv2d<float> one;
  one.in = one.out = 4;
  one.kernel = 1;
  one.pad_top = one.pad_left = one.pad_bottom = one.pad_right = 0;
  one.weight = diffuse::nn::matrix<float>::Zero(4, 4);
  one.bias = diffuse::nn::column<float>::Zero(4);
  test::check_error([&] { one.select_algorithm(conv_algorithm::winograd4, "conv_shortcut"); },
                    {"\"conv_shortcut\"", "1x1 kernel", "cannot use winograd4", "supports: direct"});
}
