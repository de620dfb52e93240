// Forward passes of the 1-D temporal UNet of diffusion policies at LeRobot's default diffusion-policy
// shape (PushT: down_dims 512, 1024, 2048, kernel 5, step embedding 128, FiLM scale; horizon 16, action 2,
// global_cond 132 = 2 observations × (state 2 + one camera's 64 keypoint features)), 251.5M parameters,
// random weights, at batch 1 and 8 on 1 and 2 threads. Counters: GMAC/s (multiply-adds of the
// convolutions) and the weights' GB/s (at batch 1 every forward streams the 1 GB of float32 weights once,
// which bounds it).
//
//   ./build/benchmarks/bench_unet1d --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <vector>

#include "diffuse/nn/unet1d.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

diffuse::nn::unet1d<float>& pusht() {
  static auto net = [] {
    diffuse::unet1d_config c;
    c.input_dim = 2;
    c.global_cond_dim = 132;
    c.diffusion_step_embed_dim = 128;
    c.down_dims = {512, 1024, 2048};
    c.kernel_size = 5;
    c.n_groups = 8;
    c.cond_predict_scale = true;
    return diffuse::nn::unet1d<float>::random(c, 1);
  }();
  return net;
}

void BM_unet1d_forward(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0)), threads = static_cast<int>(state.range(1)), horizon = 16;
#if defined(_OPENMP)
  omp_set_num_threads(threads);
#else
  (void)threads;
#endif
  auto& net = pusht();
  const auto& c = net.config();
  std::vector<float> x(static_cast<std::size_t>(batch) * horizon * c.input_dim, 0.1f), out(x.size());
  std::vector<float> g(static_cast<std::size_t>(batch) * c.global_cond_dim, 0.2f);
  std::vector<double> t{50};
  net.forward(x, batch, horizon, t, g, {}, out);
  for (auto _ : state) {
    net.forward(x, batch, horizon, t, g, {}, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GMACs"] = benchmark::Counter(net.multiply_adds(batch, horizon) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["weights_GBs"] = benchmark::Counter(static_cast<double>(net.parameter_count()) * sizeof(float) * 1e-9,
                                                     benchmark::Counter::kIsIterationInvariantRate);
  state.counters["chunks_per_s"] = benchmark::Counter(batch, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(BM_unet1d_forward)->ArgNames({"batch", "threads"})->Args({1, 1})->Args({1, 2})->Args({8, 1})->Args({8, 2})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
