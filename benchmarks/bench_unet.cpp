// UNet forward passes for the three shapes the performance work is held to, at batch 1 and 16 and on
// 1 and 2 threads, with random weights. Reports samples/s and GFLOP/s (counters "GFLOPs").
//
//   ./build/benchmarks/bench_unet --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <vector>

#include "diffuse/nn/unet.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

diffuse::unet_config shape_config(int which) {
  diffuse::unet_config c;
  c.norm_eps = 1e-6;
  if (which == 0) {  // the shipped digits model
    c.sample_height = c.sample_width = 16;
    c.in_channels = c.out_channels = 1;
    c.block_out_channels = {32, 64};
    c.down_block_types = {"DownBlock2D", "AttnDownBlock2D"};
    c.up_block_types = {"AttnUpBlock2D", "UpBlock2D"};
    c.attention_head_dim = 16;
    c.norm_num_groups = 8;
    c.num_class_embeds = 11;
  } else if (which == 1) {  // cifar-small
    c.sample_height = c.sample_width = 32;
    c.in_channels = c.out_channels = 3;
    c.block_out_channels = {64, 128, 128};
    c.down_block_types = {"DownBlock2D", "AttnDownBlock2D", "DownBlock2D"};
    c.up_block_types = {"UpBlock2D", "AttnUpBlock2D", "UpBlock2D"};
    c.attention_head_dim.reset();
  } else {  // google/ddpm-cifar10-32
    c.sample_height = c.sample_width = 32;
    c.in_channels = c.out_channels = 3;
    c.block_out_channels = {128, 256, 256, 256};
    c.down_block_types = {"DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"};
    c.up_block_types = {"UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"};
    c.attention_head_dim.reset();
  }
  return c;
}

void BM_unet_forward(benchmark::State& state) {
  const int which = static_cast<int>(state.range(0)), batch = static_cast<int>(state.range(1)), threads = static_cast<int>(state.range(2));
#if defined(_OPENMP)
  omp_set_num_threads(threads);
#else
  if (threads > 1) state.SkipWithError("built without OpenMP");
#endif
  auto net = diffuse::nn::unet2d<float>::random(shape_config(which), 1);
  const auto size = net.sample_size();
  const std::size_t per = static_cast<std::size_t>(size.height) * size.width;
  std::vector<float> x(batch * net.config().in_channels * per, 0.5f), out(batch * net.config().out_channels * per);
  std::vector<double> t{500.0};
  std::vector<int> labels(net.class_conditional() ? batch : 0, 3);
  net.forward(x, batch, size, t, labels, out);  // warm-up: sizes the workspace
  for (auto _ : state) {
    net.forward(x, batch, size, t, labels, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.counters["GFLOPs"] = benchmark::Counter(net.last_forward_flops() * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  static const char* names[] = {"digits", "cifar_small", "ddpm_cifar10"};
  state.SetLabel(names[which]);
}

// One 3×3 "same" convolution, channels → channels at size×size, batch 16, one thread: the direct kernel
// (path 1) against im2col + Eigen GEMM (path 0).
void BM_conv3x3(benchmark::State& state) {
  const int channels = static_cast<int>(state.range(0)), size = static_cast<int>(state.range(1)), direct = static_cast<int>(state.range(2));
  const int n = 16;
#if defined(_OPENMP)
  omp_set_num_threads(1);
#endif
  diffuse::nn::conv2d<float> c;
  c.in = c.out = channels;
  c.weight = diffuse::nn::matrix<float>::Random(channels, channels * 9);
  c.bias = diffuse::nn::column<float>::Random(channels);
  if (direct) c.pack();
  std::vector<float> x(static_cast<std::size_t>(n) * channels * size * size, 0.25f), y(x.size());
  std::vector<float> scratch(diffuse::nn::conv2d_scratch(c, n, size, size, 1));
  for (auto _ : state) {
    diffuse::nn::conv2d_forward(c, x.data(), n, size, size, y.data(), std::span<float>(scratch));
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOPs"] = benchmark::Counter(2.0 * n * channels * channels * 9.0 * size * size * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(BM_unet_forward)
    ->ArgNames({"shape", "batch", "threads"})
    ->ArgsProduct({{0, 1, 2}, {1, 16}, {1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK(BM_conv3x3)
    ->ArgNames({"channels", "size", "direct"})
    ->ArgsProduct({{32, 64, 128, 256}, {8, 16, 32}, {0, 1}})
    ->Unit(benchmark::kMillisecond);
