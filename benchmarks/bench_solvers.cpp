// One step of each samplers/ solver at 100K and 16M floats, on one thread: DPM-Solver++ 2M and 3M (ODE
// and SDE with generated noise; 2M also on flow sigmas), UniPC-2 and 3 (predictor and corrector), Euler,
// Euler ancestral and a Heun predictor, flow Euler and a flow Heun predictor, EDM Euler and EDM
// DPM-Solver++ 2M, and LCM (with its fresh noise), each the one fused pass it is written as; DDIM's step
// beside them as the reference. tools/compare_solver_steps.py times diffusers' own steps beside them.
//
// bytes_per_second counts the arrays each step reads and writes once per element: x, the model output
// and x_next, plus the history it reads (order − 1 x̂0 for DPM-Solver++, one more and the corrected
// sample for UniPC) and the x̂0 it stores.
//
//   ./build/benchmarks/bench_solvers --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstddef>
#include <span>
#include <vector>

#include "diffuse/ddpm.hpp"
#include "diffuse/samplers/dpm_solver.hpp"
#include "diffuse/samplers/edm.hpp"
#include "diffuse/samplers/euler.hpp"
#include "diffuse/samplers/flow_euler.hpp"
#include "diffuse/samplers/flow_heun.hpp"
#include "diffuse/samplers/flow_sigmas.hpp"
#include "diffuse/samplers/heun.hpp"
#include "diffuse/samplers/lcm.hpp"
#include "diffuse/samplers/unipc.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

constexpr std::int64_t sizes[] = {100 << 10, 16 << 20};
const diffuse::noise_schedule& schedule() {
  static const auto s = diffuse::noise_schedule::scaled_linear(1000);
  return s;
}

// Runs position `k` of `solver` over and over on a state that has taken k steps, so the multistep
// history of that order is in use.
template <class Solver>
void run_step(benchmark::State& state, const Solver& solver, int k, double arrays) {
#if defined(_OPENMP)
  omp_set_num_threads(1);
#endif
  const auto n = static_cast<std::size_t>(state.range(0));
  const diffuse::sample_shape shape{.batch = 1, .channels = 4, .spatial = n / 4};
  std::vector<float> x(n), out(n), next(n);
  const diffuse::normal_generator gen(1);
  gen.fill<float>(x, 0, 1);
  gen.fill<float>(out, 0, 2);
  auto s = solver.template make_state<float>(shape);
  const auto io = [&](int j) {
    diffuse::solver_buffers<float> b{.x = x, .model_output = out, .x_next = next};
    if (solver.adds_noise(j)) b.generated = {&gen, 0, diffuse::step_noise_stream(j)};
    return b;
  };
  for (int j = 0; j < k; ++j) solver.template step<float>(j, io(j), shape, s);
  for (auto _ : state) {
    s.reset();
    for (int j = 0; j < k; ++j) s.advance(j);  // the history buffers keep their values: only the count matters
    solver.template step<float>(k, io(k), shape, s);
    benchmark::DoNotOptimize(next.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(arrays * 4.0 * static_cast<double>(n)));
}

void BM_dpm2m(benchmark::State& st) { run_step(st, diffuse::dpm_solver_sampler(schedule(), 20, {}, {.order = 2}), 5, 5); }
void BM_dpm3m(benchmark::State& st) { run_step(st, diffuse::dpm_solver_sampler(schedule(), 20, {}, {.order = 3}), 5, 6); }
void BM_sde_dpm2m(benchmark::State& st) {
  run_step(st, diffuse::dpm_solver_sampler(schedule(), 20, {}, {.order = 2, .algorithm = diffuse::dpm_algorithm::sde_dpmsolver_pp}), 5, 5);
}
void BM_unipc2(benchmark::State& st) { run_step(st, diffuse::unipc_sampler(schedule(), 20, {}, {.order = 2}), 5, 7); }
void BM_unipc3(benchmark::State& st) { run_step(st, diffuse::unipc_sampler(schedule(), 20, {}, {.order = 3}), 5, 8); }
void BM_euler(benchmark::State& st) { run_step(st, diffuse::euler_sampler(schedule(), 20), 5, 3); }
void BM_euler_ancestral(benchmark::State& st) { run_step(st, diffuse::euler_ancestral_sampler(schedule(), 20), 5, 3); }
void BM_heun_predictor(benchmark::State& st) { run_step(st, diffuse::heun_sampler(schedule(), 20), 4, 5); }
void BM_dpm2m_flow(benchmark::State& st) {
  run_step(st, diffuse::dpm_solver_sampler(diffuse::dpm_solver_flow_sigmas(schedule(), 20), {.order = 2, .prediction = diffuse::prediction_type::flow_prediction}),
           5, 5);
}
void BM_flow_euler(benchmark::State& st) { run_step(st, diffuse::flow_euler_sampler(20), 5, 3); }
void BM_flow_heun_predictor(benchmark::State& st) { run_step(st, diffuse::flow_heun_sampler(20), 4, 5); }
void BM_edm_euler(benchmark::State& st) { run_step(st, diffuse::edm_euler_sampler({}, 20), 5, 3); }
void BM_edm_dpm2m(benchmark::State& st) { run_step(st, diffuse::edm_dpm_solver_sampler({}, 20), 5, 5); }
void BM_lcm(benchmark::State& st) { run_step(st, diffuse::lcm_sampler(schedule(), 20), 5, 3); }

void BM_ddim(benchmark::State& state) {
#if defined(_OPENMP)
  omp_set_num_threads(1);
#endif
  const auto n = static_cast<std::size_t>(state.range(0));
  const diffuse::sample_shape shape{.batch = 1, .channels = 4, .spatial = n / 4};
  const diffuse::ddim_sampler sampler(schedule(), diffuse::make_timesteps(1000, 20, diffuse::timestep_spacing::leading, 1));
  std::vector<float> x(n), out(n), next(n);
  const diffuse::normal_generator gen(1);
  gen.fill<float>(x, 0, 1);
  gen.fill<float>(out, 0, 2);
  for (auto _ : state) {
    sampler.step<float>(5, {.x_t = x, .model_output = out, .x_prev = next}, shape);
    benchmark::DoNotOptimize(next.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(12 * n));
}

}  // namespace

BENCHMARK(BM_ddim)->ArgsProduct({{sizes[0], sizes[1]}});
BENCHMARK(BM_dpm2m)->ArgsProduct({{sizes[0], sizes[1]}});
BENCHMARK(BM_dpm3m)->ArgsProduct({{sizes[0], sizes[1]}});
BENCHMARK(BM_sde_dpm2m)->ArgsProduct({{sizes[0], sizes[1]}});
BENCHMARK(BM_unipc2)->ArgsProduct({{sizes[0], sizes[1]}});
BENCHMARK(BM_unipc3)->ArgsProduct({{sizes[0], sizes[1]}});
BENCHMARK(BM_euler)->ArgsProduct({{sizes[0], sizes[1]}});
BENCHMARK(BM_euler_ancestral)->ArgsProduct({{sizes[0], sizes[1]}});
BENCHMARK(BM_heun_predictor)->ArgsProduct({{sizes[0], sizes[1]}});
BENCHMARK(BM_dpm2m_flow)->ArgsProduct({{sizes[0], sizes[1]}});
BENCHMARK(BM_flow_euler)->ArgsProduct({{sizes[0], sizes[1]}});
BENCHMARK(BM_flow_heun_predictor)->ArgsProduct({{sizes[0], sizes[1]}});
BENCHMARK(BM_edm_euler)->ArgsProduct({{sizes[0], sizes[1]}});
BENCHMARK(BM_edm_dpm2m)->ArgsProduct({{sizes[0], sizes[1]}});
BENCHMARK(BM_lcm)->ArgsProduct({{sizes[0], sizes[1]}});
