// Flow sigmas in the multistep solvers: a flow_prediction model sampled with UniPC and DPM-Solver++ (use_flow_sigmas).
#include <diffuse/gaussian_mixture.hpp>
#include <diffuse/samplers/dpm_solver.hpp>
#include <diffuse/samplers/flow_sigmas.hpp>
#include <diffuse/samplers/unipc.hpp>

#include <cstdio>
#include <span>
#include <vector>

int main() {
  // A flow model (velocity eps - x0, time sigma * 1000); these solvers give it diffusers' integer times.
  const diffuse::gaussian_mixture data({0.3, 0.7}, {{-2.0, 0.0}, {2.0, 1.0}}, {0.5, 0.3});
  auto model = data.flow_model<float>(1000.0);
  const diffuse::sample_shape shape{.batch = 1000, .channels = 2, .spatial = 1};
  const auto schedule = diffuse::noise_schedule::linear(1000);  // only its length (and sigma_min) matter here
  std::vector<float> x(shape.numel());
  const auto flow = diffuse::prediction_type::flow_prediction;

  // Wan-style UniPC (flow_shift 3) and SANA-style DPM-Solver++ 2M, 20 steps each.
  const diffuse::unipc_sampler unipc(diffuse::unipc_flow_sigmas(schedule, 20, {.flow_shift = 3.0}), {.prediction = flow});
  const diffuse::dpm_solver_sampler dpm(diffuse::dpm_solver_flow_sigmas(schedule, 20, {.flow_shift = 3.0}), {.prediction = flow});
  for (int which = 0; which < 2; ++which) {
    diffuse::fill_initial_noise<float>(x, shape, /*seed=*/1);
    if (which == 0) diffuse::solve(unipc, model, std::span<float>(x), shape);
    else diffuse::solve(dpm, model, std::span<float>(x), shape);
    int left = 0;
    for (std::size_t i = 0; i < shape.batch; ++i) left += x[2 * i] < 0.0f;
    std::printf("%s: first sigma %.6f, first time %d; %d of 1000 samples in the 0.3 mode\n", which == 0 ? "UniPC" : "DPM-Solver++",
                which == 0 ? unipc.sigma(0) : dpm.sigma(0), which == 0 ? unipc.timestep(0) : dpm.timestep(0), left);
  }
}
