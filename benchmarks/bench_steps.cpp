// Sampler steps against the memory bandwidth they can reach, at 1K, 100K and 16M floats, on 1 and 2
// threads: the xsimd step and its scalar reference loop, with and without the non-finite check; a
// STREAM-triad kernel compiled into the same binary as the bandwidth reference; the noise generator alone;
// and noise generation followed by the step (what sample() does per step besides the model call).
//
// bytes_per_second counts 16 bytes per element for a step (x_t, model output and noise read, x_prev
// written) and 12 for the triad (two arrays read, one written), as STREAM counts; neither counts the
// read-for-ownership of the written line.
//
//   ./build/benchmarks/bench_steps --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstddef>
#include <span>
#include <vector>

#include "diffuse/ddpm.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

using diffuse::sample_shape;

constexpr std::int64_t sizes[] = {1 << 10, 100 << 10, 16 << 20};

bool set_threads([[maybe_unused]] benchmark::State& state, int threads) {
#if defined(_OPENMP)
  omp_set_num_threads(threads);
  return true;
#else
  if (threads > 1) state.SkipWithError("built without OpenMP");
  return threads == 1;
#endif
}

// Four channels, like a latent; the step is elementwise, so the split does not change the work.
sample_shape shape_of(std::size_t n) { return {.batch = 1, .channels = 4, .spatial = n / 4}; }

struct step_data {
  std::vector<float> x, out, noise, x_prev;
  explicit step_data(std::size_t n) : x(n), out(n), noise(n), x_prev(n) {
    const diffuse::normal_generator gen(1);
    gen.fill<float>(x, 0, 1);
    gen.fill<float>(out, 0, 2);
    gen.fill<float>(noise, 0, 3);
  }
};

// a = b + s·c over n floats, parallel like the step's pass (same threshold, same static split).
void BM_triad(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  if (!set_threads(state, static_cast<int>(state.range(1)))) return;
  std::vector<float> a(n), b(n, 1.0f), c(n, 2.0f);
  const float s = 3.0f;
  float* pa = a.data();
  const float* pb = b.data();
  const float* pc = c.data();
  const auto triad = [&](std::ptrdiff_t lo, std::ptrdiff_t hi) {
    for (std::ptrdiff_t i = lo; i < hi; ++i) pa[i] = pb[i] + s * pc[i];
  };
  for (auto _ : state) {
    // Below the threshold no parallel region is entered at all (an `if(false)` region still costs ~1 µs).
    if (n < diffuse::detail::parallel_threshold) {
      triad(0, static_cast<std::ptrdiff_t>(n));
    } else {
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
      for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(n); ++i) pa[i] = pb[i] + s * pc[i];
    }
    benchmark::DoNotOptimize(pa);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n * 12));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
}

// DDIM, v-prediction, η = 0.5 (a noisy step), x̂0 clipped to [−1, 1]: the step diffusers' DDIMScheduler
// takes with those options.
void BM_ddim_step(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  if (!set_threads(state, static_cast<int>(state.range(3)))) return;
  const auto schedule = diffuse::noise_schedule::scaled_linear(1000);
  const diffuse::ddim_sampler sampler(schedule, diffuse::make_timesteps(1000, 50, diffuse::timestep_spacing::trailing),
                                      {.prediction = diffuse::prediction_type::v_prediction,
                                       .eta = 0.5,
                                       .processing = {.clip_range = 1.0},
                                       .check_finite = state.range(2) != 0,
                                       .vectorize = state.range(1) != 0});
  step_data d(n);
  const auto shape = shape_of(n);
  for (auto _ : state) {
    sampler.step<float>(10, {.x_t = d.x, .model_output = d.out, .noise = d.noise, .x_prev = d.x_prev}, shape);
    benchmark::DoNotOptimize(d.x_prev.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n * 16));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
}

// DDPM ancestral, v-prediction, fixed_small variance, x̂0 clipped: diffusers' DDPMScheduler step.
void BM_ddpm_step(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  if (!set_threads(state, static_cast<int>(state.range(3)))) return;
  const auto schedule = diffuse::noise_schedule::linear(1000);
  const diffuse::ddpm_sampler sampler(schedule, diffuse::make_timesteps(1000, 1000, diffuse::timestep_spacing::leading),
                                      {.prediction = diffuse::prediction_type::v_prediction,
                                       .processing = {.clip_range = 1.0},
                                       .check_finite = state.range(2) != 0,
                                       .vectorize = state.range(1) != 0});
  step_data d(n);
  const auto shape = shape_of(n);
  for (auto _ : state) {
    sampler.step<float>(500, {.x_t = d.x, .model_output = d.out, .noise = d.noise, .x_prev = d.x_prev}, shape);
    benchmark::DoNotOptimize(d.x_prev.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n * 16));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
}

// The counter-based generator alone: n float variates of one step's streams (4 bytes written each).
void BM_noise(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  if (!set_threads(state, static_cast<int>(state.range(1)))) return;
  const diffuse::normal_generator gen(42);
  std::vector<float> z(n);
  std::uint64_t step = 0;
  for (auto _ : state) {
    diffuse::fill_batch<float>(gen, z, 1, 0, ++step);
    benchmark::DoNotOptimize(z.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n * 4));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
}

// A step that draws its noise, as sample() runs it (generated_noise: the step makes the noise a few
// thousand elements at a time just before it uses them): the comparison with a Python step that calls
// torch.randn. `sampler` 0 is DDIM (as BM_ddim_step), 1 is DDPM (as BM_ddpm_step).
void BM_step_with_noise(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const bool ddpm = state.range(1) != 0;
  if (!set_threads(state, static_cast<int>(state.range(2)))) return;
  const auto linear = diffuse::noise_schedule::linear(1000), scaled = diffuse::noise_schedule::scaled_linear(1000);
  const diffuse::ddim_sampler ddim(scaled, diffuse::make_timesteps(1000, 50, diffuse::timestep_spacing::trailing),
                                   {.prediction = diffuse::prediction_type::v_prediction, .eta = 0.5, .processing = {.clip_range = 1.0}});
  const diffuse::ddpm_sampler ancestral(linear, diffuse::make_timesteps(1000, 1000, diffuse::timestep_spacing::leading),
                                        {.prediction = diffuse::prediction_type::v_prediction, .processing = {.clip_range = 1.0}});
  const diffuse::normal_generator gen(42);
  step_data d(n);
  const auto shape = shape_of(n);
  for (auto _ : state) {
    const diffuse::step_buffers<float> io{.x_t = d.x, .model_output = d.out, .x_prev = d.x_prev,
                                          .generated = {.generator = &gen, .first_sample = 0, .stream = 11}};
    if (ddpm) {
      ancestral.step<float>(500, io, shape);
    } else {
      ddim.step<float>(10, io, shape);
    }
    benchmark::DoNotOptimize(d.x_prev.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
}

void step_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"n", "simd", "check", "threads"});
  for (auto n : sizes)
    for (int threads : {1, 2}) {
      b->Args({n, 0, 1, threads});
      b->Args({n, 1, 0, threads});
      b->Args({n, 1, 1, threads});
    }
}

void size_thread_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"n", "threads"});
  for (auto n : sizes)
    for (int threads : {1, 2}) b->Args({n, threads});
}

}  // namespace

BENCHMARK(BM_triad)->Apply(size_thread_args)->UseRealTime();
BENCHMARK(BM_ddim_step)->Apply(step_args)->UseRealTime();
BENCHMARK(BM_ddpm_step)->Apply(step_args)->UseRealTime();
BENCHMARK(BM_noise)->Apply(size_thread_args)->UseRealTime();
BENCHMARK(BM_step_with_noise)
    ->ArgNames({"n", "ddpm", "threads"})
    ->ArgsProduct({{sizes[0], sizes[1], sizes[2]}, {0, 1}, {1, 2}})
    ->UseRealTime();
