// How far each convolution algorithm's float result is from the double direct convolution, for every
// stride-1 3×3 layer shape of the three benchmark models, and for the whole float UNet against the double
// one (random weights, the same draws): the measurements behind conv2d::select_algorithm's automatic rule.
//
//   ./build/benchmarks/winograd_error            (about a minute on one core)
//
// Per layer: max|y − exact| / max|exact| on unit-normal inputs, batch 2. Per model: the SPEC §11 ratio
// max |a − e| / (1e-5·(|e| + max|e|)) of the float UNet against the double direct UNet (≤ 1 passes the
// parity bound the tests hold the UNet to).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <set>
#include <span>
#include <tuple>
#include <vector>

#include "diffuse/nn/unet.hpp"
#include "unet_shapes.hpp"

namespace {

using diffuse::nn::conv_algorithm;

// (in, out, side) of every stride-1 3×3 convolution of the model, as unet2d::build lays them out.
std::set<std::tuple<int, int, int>> conv_shapes(const diffuse::unet_config& c) {
  std::set<std::tuple<int, int, int>> s;
  const auto& boc = c.block_out_channels;
  const int L = c.levels(), layers = c.layers_per_block;
  int side = c.sample_height, out = boc[0];
  s.insert({c.in_channels, boc[0], side});
  std::vector<int> skips{boc[0]};
  for (int i = 0; i < L; ++i) {
    const int in = out;
    out = boc[i];
    for (int j = 0; j < layers; ++j) {
      s.insert({j == 0 ? in : out, out, side});
      s.insert({out, out, side});
      skips.push_back(out);
    }
    if (i + 1 < L) {
      side /= 2;
      skips.push_back(out);
    }
  }
  s.insert({boc.back(), boc.back(), side});
  for (int i = 0; i < L; ++i) {
    const int prev = out;
    out = boc[L - 1 - i];
    for (int j = 0; j <= layers; ++j) {
      const int skip = skips.back();
      skips.pop_back();
      s.insert({(j == 0 ? prev : out) + skip, out, side});
      s.insert({out, out, side});
    }
    if (i + 1 < L) {
      side *= 2;
      s.insert({out, out, side});
    }
  }
  s.insert({boc[0], c.out_channels, side});
  return s;
}

double layer_error(int in, int out, int side, conv_algorithm a, std::mt19937& rng) {
  std::normal_distribution<double> nd;
  const int n = 2;
  diffuse::nn::conv2d<double> exact;
  exact.in = in;
  exact.out = out;
  exact.weight.resize(out, in * 9);
  exact.bias.resize(out);
  for (Eigen::Index i = 0; i < exact.weight.size(); ++i) exact.weight.data()[i] = static_cast<float>(nd(rng) / std::sqrt(9.0 * in));
  for (int i = 0; i < out; ++i) exact.bias[i] = static_cast<float>(0.05 * nd(rng));
  exact.pack();
  diffuse::nn::conv2d<float> c;
  c.in = in;
  c.out = out;
  c.weight = exact.weight.cast<float>();
  c.bias = exact.bias.cast<float>();
  c.pack();
  c.select_algorithm(a);
  std::vector<double> xd(static_cast<std::size_t>(n) * in * side * side), yd(static_cast<std::size_t>(n) * out * side * side);
  std::vector<float> xf(xd.size()), yf(yd.size());
  for (std::size_t i = 0; i < xd.size(); ++i) xf[i] = static_cast<float>(nd(rng)), xd[i] = xf[i];
  std::vector<double> sd(diffuse::nn::conv2d_scratch(exact, n, side, side, diffuse::nn::max_threads()));
  std::vector<float> sf(diffuse::nn::conv2d_scratch(c, n, side, side, diffuse::nn::max_threads()));
  diffuse::nn::conv2d_forward(exact, xd.data(), n, side, side, yd.data(), std::span<double>(sd));
  diffuse::nn::conv2d_forward(c, xf.data(), n, side, side, yf.data(), std::span<float>(sf));
  double scale = 0, worst = 0;
  for (std::size_t i = 0; i < yd.size(); ++i) {
    scale = std::max(scale, std::abs(yd[i]));
    worst = std::max(worst, std::abs(yf[i] - yd[i]));
  }
  return worst / scale;
}

}  // namespace

int main() {
  std::mt19937 rng(2024);
  std::printf("| model | in → out | side | direct | winograd2 | winograd4 |\n|---|---|---|---|---|---|\n");
  for (int m = 0; m < 3; ++m)
    for (auto [in, out, side] : conv_shapes(bench::shape_config(m))) {
      std::printf("| %s | %d → %d | %d |", bench::shape_names[m], in, out, side);
      for (auto a : {conv_algorithm::direct, conv_algorithm::winograd2, conv_algorithm::winograd4})
        std::printf(" %.2g |", layer_error(in, out, side, a, rng));
      std::printf("\n");
      std::fflush(stdout);
    }
  std::printf("\n| model | float UNet vs double direct, error / 1e-5 bound: direct | automatic | winograd2 | winograd4 |\n|---|---|---|---|---|\n");
  for (int m = 0; m < 3; ++m) {
    const auto cfg = bench::shape_config(m);
    diffuse::nn::unet_options direct;
    direct.convolution = conv_algorithm::direct;
    auto reference = diffuse::nn::unet2d<double>::random(cfg, 1, direct);
    const int n = 2;
    const auto size = reference.sample_size();
    const std::size_t count = static_cast<std::size_t>(n) * cfg.in_channels * size.height * size.width;
    std::normal_distribution<double> nd;
    std::vector<double> xd(count), yd(static_cast<std::size_t>(n) * cfg.out_channels * size.height * size.width);
    std::vector<float> xf(count), yf(yd.size());
    for (std::size_t i = 0; i < count; ++i) xf[i] = static_cast<float>(nd(rng)), xd[i] = xf[i];
    const std::vector<double> t{500.0, 20.0};
    std::vector<int> labels(reference.class_conditional() ? n : 0, 3);
    reference.forward(xd, n, size, t, labels, yd);
    double scale = 0;
    for (double v : yd) scale = std::max(scale, std::abs(v));
    std::printf("| %s |", bench::shape_names[m]);
    for (auto a : {conv_algorithm::direct, conv_algorithm::automatic, conv_algorithm::winograd2, conv_algorithm::winograd4}) {
      diffuse::nn::unet_options o;
      o.convolution = a;
      auto net = diffuse::nn::unet2d<float>::random(cfg, 1, o);
      net.forward(xf, n, size, t, labels, yf);
      double worst = 0;
      for (std::size_t i = 0; i < yd.size(); ++i) worst = std::max(worst, std::abs(yf[i] - yd[i]) / (1e-5 * (std::abs(yd[i]) + scale)));
      std::printf(" %.3f |", worst);
      std::fflush(stdout);
    }
    std::printf("\n");
  }
}
