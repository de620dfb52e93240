// custom_model: plugging your own network into diffuse, three ways.
//
//  1. a lambda with the Denoiser signature (x_t, t, out) — wrap ONNX Runtime, libtorch, ggml... here;
//  2. a class with that call operator, holding its own state;
//  3. your own loop over sampler.step(), for control over every step (logging, early exit, editing x).
//
// The "network" here is the exact optimal denoiser of 1-D data x_0 ~ N(μ, s²): ε̂ = (x_t − a μ)·b / (a² s² + b²),
// so every way must end with samples of mean μ and std s, which the program prints and checks.
#include <cmath>
#include <cstdio>
#include <span>
#include <vector>

#include "diffuse/ddpm.hpp"

namespace {

constexpr double kMean = 1.5, kStd = 0.5;

/// 2. A class: anything with operator()(std::span<const S>, int, std::span<S>) is a Denoiser.
class gaussian_network {
 public:
  explicit gaussian_network(const diffuse::noise_schedule& s) : schedule_(s) {}
  void operator()(std::span<const float> x, int t, std::span<float> out) {
    ++calls_;
    const double ab = schedule_.alpha_bar(t), a = std::sqrt(ab), b = std::sqrt(1 - ab);
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = static_cast<float>((x[i] - a * kMean) * b / (a * a * kStd * kStd + b * b));
  }
  int calls() const { return calls_; }

 private:
  const diffuse::noise_schedule& schedule_;
  int calls_ = 0;
};

bool report(const char* how, std::span<const float> x) {
  double m = 0, v = 0;
  for (float e : x) m += e;
  m /= static_cast<double>(x.size());
  for (float e : x) v += (e - m) * (e - m);
  const double s = std::sqrt(v / static_cast<double>(x.size() - 1));
  // 4096 samples: the mean's standard error is s/64 ≈ 0.008; allow 5 of them, and 10% on the std.
  const bool ok = std::abs(m - kMean) < 0.04 && std::abs(s - kStd) < 0.05;
  std::printf("%-28s mean %.3f (want %.3f)  std %.3f (want %.3f)  %s\n", how, m, kMean, s, kStd, ok ? "ok" : "WRONG");
  return ok;
}

}  // namespace

int main() {
  const auto schedule = diffuse::noise_schedule::linear(1000);
  const diffuse::sample_shape shape{4096, 1, 1};
  std::vector<float> x(shape.numel());
  bool ok = true;

  // 1. A lambda.
  auto lambda_model = [&](std::span<const float> xt, int t, std::span<float> out) {
    const double ab = schedule.alpha_bar(t), a = std::sqrt(ab), b = std::sqrt(1 - ab);
    for (std::size_t i = 0; i < xt.size(); ++i) out[i] = static_cast<float>((xt[i] - a * kMean) * b / (a * a * kStd * kStd + b * b));
  };
  diffuse::ddim_sampler ddim(schedule, diffuse::make_timesteps(1000, 50, diffuse::timestep_spacing::trailing));
  diffuse::fill_initial_noise<float>(x, shape, /*seed=*/1);  // x_T
  diffuse::sample(ddim, lambda_model, std::span<float>(x), shape, {.seed = 1});
  ok &= report("lambda, DDIM-50:", x);

  // 2. A class, with the ancestral sampler over the full chain.
  gaussian_network net(schedule);
  diffuse::ddpm_sampler ddpm(schedule, diffuse::make_timesteps(1000, 1000, diffuse::timestep_spacing::leading));
  diffuse::fill_initial_noise<float>(x, shape, /*seed=*/2);
  diffuse::sample(ddpm, net, std::span<float>(x), shape, {.seed = 2});
  ok &= report("class, DDPM-1000:", x);
  std::printf("  the class was called %d times\n", net.calls());

  // 3. Your own loop: step() does one update from buffers you own. With diffuse's counter-based noise
  //    (x_T is stream 0, step k draws stream k + 1) this equals sample() bit for bit; with η > 0 the
  //    step needs noise, here η = 0.5 to show it.
  diffuse::ddim_sampler ddim_eta(schedule, diffuse::make_timesteps(1000, 50, diffuse::timestep_spacing::trailing), {.eta = 0.5});
  std::vector<float> out(x.size()), noise(x.size()), x_prev(x.size()), x0(x.size());
  const diffuse::normal_generator generator(/*seed=*/3);
  diffuse::fill_initial_noise<float>(x, shape, 3);
  for (int k = 0; k < ddim_eta.num_steps(); ++k) {
    lambda_model(x, ddim_eta.timestep(k), out);
    const bool noisy = ddim_eta.adds_noise(k);
    if (noisy) diffuse::fill_batch<float>(generator, std::span<float>(noise), shape.batch, 0, diffuse::step_noise_stream(k));
    ddim_eta.step<float>(k, {.x_t = x, .model_output = out, .noise = noisy ? std::span<const float>(noise) : std::span<const float>(),
                             .x_prev = x_prev, .x0 = x0}, shape);
    std::swap(x, x_prev);  // x_prev becomes the next x_t
  }
  ok &= report("own loop over step():", x);
  std::vector<float> reference(x.size());
  diffuse::fill_initial_noise<float>(reference, shape, 3);
  diffuse::sample(ddim_eta, lambda_model, std::span<float>(reference), shape, {.seed = 3});
  const bool same = reference == x;
  std::printf("  own loop == sample(): %s\n", same ? "bit-identical" : "DIFFERENT");
  return ok && same ? 0 : 1;
}
