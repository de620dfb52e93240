// The posterior q(x_p | x_t, x0) of one step, on the full chain and on a strided list.
#include <diffuse/posterior.hpp>

#include <cstdio>

int main() {
  const auto schedule = diffuse::noise_schedule::linear(1000);
  // Full chain: p = t − 1, and β' is the schedule's own β_t.
  const auto full = diffuse::posterior(schedule, 500, 499);
  // A 50-step list visits 500 then 480: one step covers 20 training steps, β' = 1 − ᾱ_500/ᾱ_480.
  const auto strided = diffuse::posterior(schedule, 500, 480);
  // After the last entry (p = −1) the step lands on x0: ᾱ_p = 1 and the variance is 0.
  const auto last = diffuse::posterior(schedule, 20, -1);

  std::printf("500 -> 499: c1 %.4f  c2 %.4f  variance %.3g\n", full.c1, full.c2, full.variance);
  std::printf("500 -> 480: c1 %.4f  c2 %.4f  variance %.3g\n", strided.c1, strided.c2, strided.variance);
  std::printf(" 20 ->  -1: c1 %.4f  c2 %.4f  variance %.3g\n", last.c1, last.c2, last.variance);
  return full.beta_prime == schedule.beta(500) && last.variance == 0.0 ? 0 : 1;
}
