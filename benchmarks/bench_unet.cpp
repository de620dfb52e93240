// UNet forward passes for the three shapes the performance work is held to, at batch 1 and 16 and on
// 1 and 2 threads, with random weights. Reports samples/s and GFLOP/s (counters "GFLOPs").
//
//   ./build/benchmarks/bench_unet --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>


#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "diffuse/ddpm.hpp"
#include "diffuse/io/scheduler_config.hpp"
#include "diffuse/nn/unet.hpp"
#include "unet_shapes.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

void BM_unet_forward(benchmark::State& state) {
  const int which = static_cast<int>(state.range(0)), batch = static_cast<int>(state.range(1)), threads = static_cast<int>(state.range(2));
#if defined(_OPENMP)
  omp_set_num_threads(threads);
#else
  if (threads > 1) state.SkipWithError("built without OpenMP");
#endif
  // Optional fourth argument: the convolution algorithm (0 direct, 1 automatic — the default —, 2
  // winograd2, 3 winograd4).
  const int algorithm = state.range(3);
  static constexpr diffuse::nn::conv_algorithm algorithms[] = {diffuse::nn::conv_algorithm::direct, diffuse::nn::conv_algorithm::automatic,
                                                               diffuse::nn::conv_algorithm::winograd2, diffuse::nn::conv_algorithm::winograd4};
  diffuse::nn::unet_options options;
  options.convolution = algorithms[algorithm];
  auto net = diffuse::nn::unet2d<float>::random(bench::shape_config(which), 1, options);
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
  state.SetLabel(std::string(bench::shape_names[which]) + " " + diffuse::nn::conv_algorithm_name(algorithms[algorithm]));
}

// One 3×3 "same" convolution, channels → channels at size×size, batch 16, one thread: im2col + Eigen GEMM
// (path 0), the direct kernel (1), Winograd F(2×2, 3×3) (2) and F(4×4, 3×3) (3). GFLOP/s count the direct
// convolution's operations, so that the paths compare by time.
void BM_conv3x3(benchmark::State& state) {
  const int channels = static_cast<int>(state.range(0)), size = static_cast<int>(state.range(1)), path = static_cast<int>(state.range(2));
  const bool direct = path > 0;
  const int n = 16;
#if defined(_OPENMP)
  omp_set_num_threads(1);
#endif
  diffuse::nn::conv2d<float> c;
  c.in = c.out = channels;
  c.weight = diffuse::nn::matrix<float>::Random(channels, channels * 9);
  c.bias = diffuse::nn::column<float>::Random(channels);
  if (direct) c.pack();
  if (path >= 2) c.select_algorithm(path == 2 ? diffuse::nn::conv_algorithm::winograd2 : diffuse::nn::conv_algorithm::winograd4);
  std::vector<float> x(static_cast<std::size_t>(n) * channels * size * size, 0.25f), y(x.size());
  std::vector<float> scratch(diffuse::nn::conv2d_scratch(c, n, size, size, 1));
  for (auto _ : state) {
    diffuse::nn::conv2d_forward(c, x.data(), n, size, size, y.data(), std::span<float>(scratch));
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOPs"] = benchmark::Counter(2.0 * n * channels * channels * 9.0 * size * size * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

// The reference for "% of peak": Eigen's single-precision GEMM on a conv-shaped product (256 × 2304
// weights times 2304 × 1024 columns: a 256-channel 3×3 convolution over a 32×32 image), one thread.
void BM_sgemm(benchmark::State& state) {
#if defined(_OPENMP)
  omp_set_num_threads(static_cast<int>(state.range(0)));
#endif
  const Eigen::Index m = 256, k = 2304, n = 1024;
  const diffuse::nn::matrix<float> a = diffuse::nn::matrix<float>::Random(m, k), b = diffuse::nn::matrix<float>::Random(k, n);
  diffuse::nn::matrix<float> c(m, n);
  for (auto _ : state) {
    c.noalias() = a * b;
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["GFLOPs"] = benchmark::Counter(2.0 * m * k * n * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// End to end: 50 DDIM steps with classifier-free guidance (w = 2, one batched call over both halves) of
// the shipped digits model, batch 16: what `generate --count 16 --batch 16` does, without the I/O.
void BM_sample_digits_ddim50_cfg(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0)), n = 16;
#if defined(_OPENMP)
  omp_set_num_threads(threads);
#endif
  const std::filesystem::path dir = std::filesystem::path(DIFFUSE_MODELS_DIR) / "digits";
  auto net = diffuse::nn::unet2d<float>::load(dir);
  const auto sc = diffuse::scheduler_config::load(dir / "scheduler_config.json");
  diffuse::ddim_sampler sampler(sc.schedule, sc.timesteps(50),
                                {.prediction = sc.prediction, .set_alpha_to_one = sc.set_alpha_to_one,
                                 .use_clipped_model_output = true, .processing = sc.processing});
  std::vector<int> labels;
  for (int i = 0; i < n; ++i) labels.push_back(i % 10);
  for (int i = 0; i < n; ++i) labels.push_back(10);
  const diffuse::sample_shape shape{static_cast<std::size_t>(n), 1, 256};
  auto model = diffuse::batched_cfg_model<float, decltype(net.conditioned(labels))>(net.conditioned(labels), shape, 2.0);
  std::vector<float> x(shape.numel());
  diffuse::sampling_workspace<float> workspace;
  for (auto _ : state) {
    diffuse::fill_initial_noise<float>(x, shape, 0, 0);
    diffuse::sample(sampler, model, std::span<float>(x), shape, diffuse::sample_options{.seed = 0}, workspace);
    benchmark::DoNotOptimize(x.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}

// Resident-set figures from /proc/self/status (Linux), in MB: VmRSS now, VmHWM the peak since the
// process started or since reset_peak_rss().
double status_mb(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(field) + ":";
  while (std::getline(status, line))
    if (line.rfind(prefix, 0) == 0) return std::stod(line.substr(prefix.size())) / 1024.0;  // kB
  return 0;
}

// Writing 5 to /proc/self/clear_refs sets the peak resident set back to the current one (Linux ≥ 4.0),
// so that the peak measured next is the forward's own and not model construction's.
bool reset_peak_rss() {
  std::ofstream clear("/proc/self/clear_refs");
  return static_cast<bool>(clear << "5" << std::flush);
}

// Memory of one forward at batch 1 on one thread, measured in its own process:
//   bench_unet --benchmark_filter='BM_forward_memory/shape:2'
// peak_MB: the process's peak resident set during the first forward (model, workspace, everything);
// forward_MB: that peak minus the resident set just before it; repeat_MB: the growth of the peak over a
// second forward (0 when the first one allocated everything).
void BM_forward_memory(benchmark::State& state) {
  const int which = static_cast<int>(state.range(0));
#if defined(_OPENMP)
  omp_set_num_threads(1);
#endif
  auto net = diffuse::nn::unet2d<float>::random(bench::shape_config(which), 1);
  const auto size = net.sample_size();
  const std::size_t per = static_cast<std::size_t>(size.height) * size.width;
  std::vector<float> x(net.config().in_channels * per, 0.5f), out(net.config().out_channels * per);
  std::vector<double> t{500.0};
  std::vector<int> labels(net.class_conditional() ? 1 : 0, 3);
  if (!reset_peak_rss()) state.SkipWithError("cannot reset the peak RSS (/proc/self/clear_refs)");
  const double before = status_mb("VmRSS");
  double peak = 0, repeat = 0;
  for (auto _ : state) {
    net.forward(x, 1, size, t, labels, out);
    peak = status_mb("VmHWM");
    net.forward(x, 1, size, t, labels, out);
    repeat = status_mb("VmHWM") - peak;
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["peak_MB"] = peak;
  state.counters["forward_MB"] = peak - before;
  state.counters["repeat_MB"] = repeat;
}

}  // namespace

BENCHMARK(BM_unet_forward)
    ->ArgNames({"shape", "batch", "threads", "conv"})
    ->ArgsProduct({{0, 1, 2}, {1, 16}, {1, 2}, {1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Every convolution algorithm forced, for the per-algorithm comparison in docs/performance.md.
BENCHMARK(BM_unet_forward)
    ->Name("BM_unet_forward_algorithm")
    ->ArgNames({"shape", "batch", "threads", "conv"})
    ->ArgsProduct({{0, 1, 2}, {1, 16}, {1, 2}, {0, 2, 3}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK(BM_conv3x3)
    ->ArgNames({"channels", "size", "path"})
    ->ArgsProduct({{32, 64, 128, 256}, {8, 16, 32}, {0, 1, 2, 3}})
    ->Unit(benchmark::kMillisecond);

BENCHMARK(BM_sgemm)->ArgNames({"threads"})->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_sample_digits_ddim50_cfg)->ArgNames({"threads"})->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_forward_memory)->ArgNames({"shape"})->DenseRange(0, 2)->Iterations(1)->Unit(benchmark::kMillisecond);
