// Noise schedules: every table is computed once, in double, when the schedule is built.
#include <diffuse/schedule.hpp>

#include <cmath>
#include <cstdio>

int main() {
  const int T = 1000;
  const auto linear = diffuse::noise_schedule::linear(T);                // β: 1e-4 ... 0.02
  const auto scaled = diffuse::noise_schedule::scaled_linear(T);         // β: (√0.00085 ... √0.012)²
  const auto cosine = diffuse::noise_schedule::cosine(T);                // squaredcos_cap_v2
  const auto sigmoid = diffuse::noise_schedule::sigmoid(T);              // GeoDiff
  const auto zero_snr = linear.rescaled_zero_terminal_snr();             // ᾱ_{T-1} = 0 exactly

  for (int t : {0, 250, 500, 750, 999})
    std::printf("t = %3d  alpha_bar: linear %.3g  scaled %.3g  cosine %.3g  sigmoid %.3g  zero-SNR %.3g\n", t,
                linear.alpha_bar(t), scaled.alpha_bar(t), cosine.alpha_bar(t), sigmoid.alpha_bar(t), zero_snr.alpha_bar(t));

  // log SNR(t) = ln(ᾱ_t / (1 − ᾱ_t)): how much signal is left, on the scale a network feels it.
  std::printf("log SNR at t = 999: linear %.2f, cosine %.2f, zero-SNR %s\n", std::log(linear.snr(999)),
              std::log(cosine.snr(999)), zero_snr.zero_terminal_snr() ? "-inf" : "finite");

  // The cosine cap (β ≤ 0.999) binds at the end: cosine is close to, but not, zero terminal SNR.
  return !cosine.zero_terminal_snr() && zero_snr.zero_terminal_snr() && zero_snr.alpha_bar(0) == linear.alpha_bar(0) ? 0 : 1;
}
