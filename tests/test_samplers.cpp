// Samplers on behaviour: the exact Gaussian-mixture denoiser (SPEC §10) must be reproduced by DDPM and
// DDIM; inversion must reconstruct; the same seed must give the same bits; the loop must not allocate.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "diffuse/ddpm.hpp"
#include "diffuse/gaussian_mixture.hpp"
#include "support.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "counting_new.hpp"

using namespace diffuse;

namespace {

struct mixture_stats {
  std::vector<double> weight;                // fraction of samples per component
  std::vector<std::vector<double>> mean;     // per component mean
  std::vector<double> variance;              // per component variance, averaged over dimensions
};

// Assigns each sample to its most likely component (at ᾱ = 1 − 1e-12, i.e. the clean density).
mixture_stats statistics(const gaussian_mixture& gm, const std::vector<double>& x) {
  const std::size_t d = gm.dim(), K = gm.components(), n = x.size() / d;
  std::vector<double> post(n * K), x0(x.size());
  gm.denoise<double>(x, 1.0 - 1e-12, x0, post);
  mixture_stats s{std::vector<double>(K), std::vector<std::vector<double>>(K, std::vector<double>(d)), std::vector<double>(K)};
  std::vector<std::size_t> label(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::size_t best = 0;
    for (std::size_t k = 1; k < K; ++k)
      if (post[i * K + k] > post[i * K + best]) best = k;
    label[i] = best;
    s.weight[best] += 1;
    for (std::size_t j = 0; j < d; ++j) s.mean[best][j] += x[i * d + j];
  }
  for (std::size_t k = 0; k < K; ++k)
    for (std::size_t j = 0; j < d; ++j) s.mean[k][j] /= std::max(1.0, s.weight[k]);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < d; ++j) {
      const double e = x[i * d + j] - s.mean[label[i]][j];
      s.variance[label[i]] += e * e;
    }
  for (std::size_t k = 0; k < K; ++k) {
    s.variance[k] /= std::max(1.0, (s.weight[k] - 1) * static_cast<double>(d));
    s.weight[k] /= static_cast<double>(n);
  }
  return s;
}

// Checks sampled statistics against the mixture. Tolerances are 5 standard errors of the estimate for
// this sample size (a correct sampler fails about once in 10^6 per check) plus `bias`, the
// discretisation error a finite number of steps may leave, stated by each caller.
void check_reproduces(const gaussian_mixture& gm, const std::vector<double>& x, double bias) {
  const auto s = statistics(gm, x);
  const double n = static_cast<double>(x.size() / gm.dim());
  for (std::size_t k = 0; k < gm.components(); ++k) {
    const double pi = gm.weight(k), sd = gm.stddev(k), nk = std::max(1.0, pi * n);
    INFO("component ", k, ": weight ", s.weight[k], " (true ", pi, "), variance ", s.variance[k], " (true ", sd * sd, ")");
    CHECK(std::abs(s.weight[k] - pi) <= 5 * std::sqrt(pi * (1 - pi) / n) + bias);
    for (std::size_t j = 0; j < gm.dim(); ++j) CHECK(std::abs(s.mean[k][j] - gm.mean(k)[j]) <= 5 * sd / std::sqrt(nk) + bias);
    // The variance averaged over d dimensions has standard error s²·√(2/(n_k·d)).
    CHECK(std::abs(s.variance[k] - sd * sd) <= 5 * sd * sd * std::sqrt(2 / (nk * static_cast<double>(gm.dim()))) + bias);
  }
}

gaussian_mixture mixture_2d() { return gaussian_mixture({0.2, 0.5, 0.3}, {{-3.0, 0.0}, {2.0, 2.0}, {1.0, -3.0}}, {0.4, 0.6, 0.5}); }

gaussian_mixture mixture_16d() {
  std::vector<std::vector<double>> means(3, std::vector<double>(16, 0.0));
  for (int j = 0; j < 16; ++j) {
    means[0][static_cast<std::size_t>(j)] = j % 2 ? 1.5 : -1.5;
    means[1][static_cast<std::size_t>(j)] = j < 8 ? 1.5 : -1.0;
    means[2][static_cast<std::size_t>(j)] = -0.5;
  }
  return gaussian_mixture({0.6, 0.25, 0.15}, means, {0.5, 0.3, 0.4});
}

template <class Sampler>
std::vector<double> run(const Sampler& sampler, const gaussian_mixture& gm, const noise_schedule& schedule,
                        prediction_type pred, std::size_t n, std::uint64_t seed) {
  const sample_shape shape{n, 1, gm.dim()};
  std::vector<double> x(shape.numel());
  fill_initial_noise<double>(x, shape, seed);
  sample(sampler, gm.denoiser<double>(schedule, pred), std::span<double>(x), shape, {.seed = seed});
  return x;
}

}  // namespace

TEST_CASE("DDPM (1000 steps) and DDIM (eta 0, 50 steps; eta 1, 100 steps) reproduce a 2-D mixture") {
  const auto gm = mixture_2d();
  const auto schedule = noise_schedule::cosine(1000);
  const std::size_t n = 4000;
  std::vector<int> full(1000);
  for (int t = 0; t < 1000; ++t) full[static_cast<std::size_t>(t)] = 999 - t;
  SUBCASE("DDPM full chain") {
    // With 1000 steps the discretisation error is far below sampling error: no allowance.
    check_reproduces(gm, run(ddpm_sampler(schedule, full), gm, schedule, prediction_type::epsilon, n, 1), 0.0);
  }
  SUBCASE("DDIM eta 0, 50 trailing steps") {
    // Deterministic DDIM with 50 steps slightly contracts the components; allow 0.02 absolute.
    const ddim_sampler s(schedule, make_timesteps(1000, 50, timestep_spacing::trailing), {.prediction = prediction_type::v_prediction});
    check_reproduces(gm, run(s, gm, schedule, prediction_type::v_prediction, n, 2), 0.02);
  }
  SUBCASE("DDIM eta 1, 100 leading steps") {
    const ddim_sampler s(schedule, make_timesteps(1000, 100, timestep_spacing::leading, 1), {.eta = 1.0});
    check_reproduces(gm, run(s, gm, schedule, prediction_type::epsilon, n, 3), 0.02);
  }
}

TEST_CASE("DDPM and DDIM reproduce a 16-D mixture with unequal weights") {
  const auto gm = mixture_16d();
  const auto schedule = noise_schedule::linear(1000);
  const std::size_t n = 2000;
  SUBCASE("DDPM, x0 prediction, fixed_large, respaced to 250 steps") {
    check_reproduces(gm, run(ddpm_sampler(schedule, respace(1000, "250"), {.prediction = prediction_type::sample, .variance = variance_type::fixed_large}),
                             gm, schedule, prediction_type::sample, n, 4),
                     0.02);
  }
  SUBCASE("DDPM full chain of 1000 steps") {
    check_reproduces(gm, run(ddpm_sampler(schedule, make_timesteps(1000, 1000, timestep_spacing::leading)), gm, schedule,
                             prediction_type::epsilon, n, 6),
                     0.0);
  }
  SUBCASE("DDIM eta 0, 50 steps") {
    const ddim_sampler s(schedule, make_timesteps(1000, 50, timestep_spacing::linspace));
    check_reproduces(gm, run(s, gm, schedule, prediction_type::epsilon, n, 5), 0.02);
  }
  SUBCASE("DDIM eta 1, 100 steps") {
    const ddim_sampler s(schedule, make_timesteps(1000, 100, timestep_spacing::trailing), {.eta = 1.0});
    check_reproduces(gm, run(s, gm, schedule, prediction_type::epsilon, n, 7), 0.02);
  }
}

TEST_CASE("DDIM inversion then sampling reconstructs x0, better with more steps") {
  const auto gm = mixture_2d();
  const auto schedule = noise_schedule::cosine(1000);
  const std::size_t n = 200;
  std::vector<double> x0(n * 2);
  std::vector<int> labels(n);
  gm.sample_data<double>(x0, labels, 11);
  const sample_shape shape{n, 1, 2};
  double previous = HUGE_VAL;
  for (int steps : {10, 50, 250}) {
    const auto list = make_timesteps(1000, steps, timestep_spacing::leading);
    const ddim_inversion inv(schedule, list);
    const auto model = gm.denoiser<double>(schedule, prediction_type::epsilon);
    std::vector<double> x = x0, out(x.size()), next(x.size());
    for (int j = 0; j < inv.num_steps(); ++j) {
      model(x, inv.timestep(j), out);
      inv.step<double>(j, x, out, next, shape);
      x.swap(next);
    }
    sample(ddim_sampler(schedule, list), model, std::span<double>(x), shape);
    std::vector<double> errs;
    for (std::size_t i = 0; i < x.size(); ++i) errs.push_back(std::abs(x[i] - x0[i]));
    std::sort(errs.begin(), errs.end());
    const double err = errs[errs.size() / 2];
    MESSAGE("DDIM inversion + sampling with ", steps, " steps: median |x0 error| = ", err, ", 90% ", errs[errs.size() * 9 / 10], ", max ", errs.back());
    CHECK(err < previous);
    previous = err;
  }
  // The error is first order in the step size (measured medians 0.19, 0.048, 0.0098 for 10, 50, 250
  // steps). With 250 steps the median round trip is within 0.02 of the data (whose spread is about 3).
  // The worst points are those between modes, where the flow is ill-conditioned and a small error sends
  // them to the other mode: the maximum is not a useful measure, the median is.
  CHECK(previous < 0.02);
}

TEST_CASE("DDIM with eta 1 equals the fixed_small ancestral step on the same list") {
  const auto gm = mixture_2d();
  const auto schedule = noise_schedule::linear(1000);
  const auto list = make_timesteps(1000, 20, timestep_spacing::leading);
  const auto a = run(ddim_sampler(schedule, list, {.eta = 1.0}), gm, schedule, prediction_type::epsilon, 64, 9);
  const auto b = run(ddpm_sampler(schedule, list), gm, schedule, prediction_type::epsilon, 64, 9);
  // Same noise streams, the same maths arranged differently: 1e-9 relative to the sample scale.
  CHECK(test::worst_relative(a, b, 1e-9) <= 1.0);
}

TEST_CASE("the same seed gives the same bits for any batch split and thread count") {
  const auto gm = mixture_2d();
  const auto schedule = noise_schedule::cosine(1000);
  const ddpm_sampler sampler(schedule, respace(1000, "50"));
  auto model = gm.denoiser<float>(schedule, prediction_type::epsilon);
  const sample_shape eight{8, 1, 2}, four{4, 1, 2};
  std::vector<float> all(16), first(8), second(8);
  fill_initial_noise<float>(all, eight, 5);
  sample(sampler, model, std::span<float>(all), eight, {.seed = 5});
  fill_initial_noise<float>(first, four, 5, 0);
  sample(sampler, model, std::span<float>(first), four, {.seed = 5, .first_sample = 0});
  fill_initial_noise<float>(second, four, 5, 4);
  sample(sampler, model, std::span<float>(second), four, {.seed = 5, .first_sample = 4});
  CHECK(std::equal(first.begin(), first.end(), all.begin()));
  CHECK(std::equal(second.begin(), second.end(), all.begin() + 8));
#if defined(_OPENMP)
  // Large enough that the step and noise loops run in parallel.
  const sample_shape big{64, 3, 1024};
  auto linear_model = [](std::span<const float> x, int, std::span<float> out) {
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = 0.5f * x[i];
  };
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    std::vector<float> x(big.numel());
    fill_initial_noise<float>(x, big, 3);
    sample(ddim_sampler(schedule, make_timesteps(1000, 10, timestep_spacing::trailing), {.eta = 0.7, .processing = {.threshold = dynamic_threshold{}}}),
           linear_model, std::span<float>(x), big, {.seed = 3});
    results.push_back(x);
  }
  CHECK(results[0] == results[1]);
#endif
}

TEST_CASE("a NaN from the model at step k stops sample() naming k and its timestep; check_finite = false lets it through") {
  const auto schedule = noise_schedule::linear(1000);
  const auto list = make_timesteps(1000, 20, timestep_spacing::trailing);
  const sample_shape shape{2, 3, 64};
  auto model_failing_at = [](int bad_call, std::size_t bad_element) {
    return [bad_call, bad_element, calls = 0](std::span<const float> x, int, std::span<float> out) mutable {
      for (std::size_t i = 0; i < x.size(); ++i) out[i] = 0.3f * x[i];
      if (calls++ == bad_call) out[bad_element] = std::nanf("");
    };
  };
  const ddpm_sampler ddpm(schedule, list);
  const ddim_sampler ddim(schedule, list, {.eta = 0.3, .processing = {.clip_range = 1.0}});
  const ddim_sampler ddim_threshold(schedule, list, {.processing = {.threshold = dynamic_threshold{}}});
  for (int k : {0, 7, 19}) {
    const std::string expected = "NaN in the model output at step " + std::to_string(k) + " (t = " + std::to_string(list[static_cast<std::size_t>(k)]) +
                                 "), batch item 1, element 10";
    // A fresh x_T each time: a run that raised leaves x unspecified.
    std::vector<float> x(shape.numel());
    fill_initial_noise<float>(x, shape, 4);
    test::check_error([&] { sample(ddpm, model_failing_at(k, 64 * 3 + 10), std::span<float>(x), shape, {.seed = 4}); },
                      {"[diffuse.numeric]", expected});
    fill_initial_noise<float>(x, shape, 4);
    test::check_error([&] { sample(ddim, model_failing_at(k, 64 * 3 + 10), std::span<float>(x), shape, {.seed = 4}); }, {expected});
    fill_initial_noise<float>(x, shape, 4);
    test::check_error([&] { sample(ddim_threshold, model_failing_at(k, 64 * 3 + 10), std::span<float>(x), shape, {.seed = 4}); }, {expected});
  }
  // Started part-way down the list, the index is still the list position.
  std::vector<float> x(shape.numel());
  fill_initial_noise<float>(x, shape, 4);
  test::check_error([&] { sample(ddpm, model_failing_at(2, 0), std::span<float>(x), shape, {.seed = 4, .start_index = 10}); },
                    {"at step 12 (t = " + std::to_string(list[12]) + "), batch item 0, element 0"});
  // Unchecked, the NaN flows into the state and on to the result.
  const ddpm_sampler unchecked(schedule, list, {.check_finite = false});
  fill_initial_noise<float>(x, shape, 4);
  sample(unchecked, model_failing_at(15, 5), std::span<float>(x), shape, {.seed = 4});
  CHECK(std::isnan(x[5]));
  CHECK(std::isfinite(x[64 * 3 + 5]));  // other items are untouched by item 0's NaN
}

TEST_CASE("the fused step gives the same bits on one and two threads") {
#if defined(_OPENMP)
  const auto schedule = noise_schedule::cosine(1000);
  const sample_shape big{2, 3, 40000};  // 240K elements: above the threshold for the chunked parallel pass
  auto model = [](std::span<const float> x, int, std::span<float> out) {
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = 0.5f * x[i];
  };
  const ddim_sampler ddim(schedule, make_timesteps(1000, 5, timestep_spacing::trailing), {.prediction = prediction_type::v_prediction, .eta = 0.5, .processing = {.clip_range = 1.0}});
  const ddpm_sampler ddpm(schedule, make_timesteps(1000, 5, timestep_spacing::trailing));
  const int saved = omp_get_max_threads();
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    std::vector<float> x(big.numel()), y(big.numel());
    fill_initial_noise<float>(x, big, 8);
    y = x;
    sample(ddim, model, std::span<float>(x), big, {.seed = 8});
    sample(ddpm, model, std::span<float>(y), big, {.seed = 8});
    results.push_back(x);
    results.push_back(y);
  }
  omp_set_num_threads(saved);
  CHECK(results[0] == results[2]);
  CHECK(results[1] == results[3]);
#endif
}

TEST_CASE("the sampling loop allocates nothing after its first use") {
  const auto schedule = noise_schedule::linear(1000);
  const sample_shape shape{4, 3, 256};
  auto model = [](std::span<const float> x, int t, std::span<float> out) {
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = 0.01f * static_cast<float>(t % 7) * x[i];
  };
  std::vector<float> x(shape.numel());
  sampling_workspace<float> ws;
  const ddpm_sampler ddpm(schedule, respace(1000, "ddim25"), {.processing = {.threshold = dynamic_threshold{}}});
  const ddim_sampler ddim(schedule, make_timesteps(1000, 25, timestep_spacing::trailing), {.eta = 0.5, .processing = {.clip_range = 1.0}});
  fill_initial_noise<float>(x, shape, 1);
  sample(ddpm, model, std::span<float>(x), shape, {.seed = 1}, ws);  // warm-up: workspace and scratch grow here
  sample(ddim, model, std::span<float>(x), shape, {.seed = 1}, ws);
  const long before = test::allocations();
  int steps = 0;
  sample(ddpm, model, std::span<float>(x), shape, {.seed = 2}, ws, [&](const step_event<float>&) { ++steps; });
  sample(ddim, model, std::span<float>(x), shape, {.seed = 2}, ws);
  CHECK(test::allocations() - before == 0);
  CHECK(steps == 25);
}

TEST_CASE("the callback sees every position with its timestep, x_t and x0") {
  const auto schedule = noise_schedule::linear(1000);
  const auto gm = mixture_2d();
  const ddim_sampler s(schedule, make_timesteps(1000, 10, timestep_spacing::trailing));
  const sample_shape shape{3, 1, 2};
  std::vector<float> x(shape.numel());
  fill_initial_noise<float>(x, shape, 1);
  std::vector<int> seen;
  sample(s, gm.denoiser<float>(schedule, prediction_type::epsilon), std::span<float>(x), shape, {.seed = 1, .start_index = 2},
         [&](const step_event<float>& e) {
           seen.push_back(e.timestep);
           CHECK(e.num_steps == 10);
           CHECK(e.x_t.size() == 6);
           CHECK(e.x0.size() == 6);
           CHECK(e.timestep == s.timestep(e.index));
         });
  CHECK(seen.size() == 8);
  CHECK(seen.front() == s.timestep(2));
}

TEST_CASE("an x0 hook edits x0 before clipping") {
  const auto schedule = noise_schedule::linear(1000);
  const ddim_sampler s(schedule, {500, 0}, {.prediction = prediction_type::sample, .processing = {.clip_range = 1.0}});
  const sample_shape shape{2, 1, 2};
  std::vector<float> x{0.1f, 0.2f, 0.3f, 0.4f}, out{0.5f, 0.5f, 0.5f, 0.5f}, xp(4), x0(4);
  std::vector<std::size_t> items;
  s.step<float>(0, {.x_t = x, .model_output = out, .x_prev = xp, .x0 = x0}, shape, [&](std::span<float> item, std::size_t i, int t) {
    CHECK(t == 500);
    items.push_back(i);
    for (auto& v : item) v = i == 0 ? 3.0f : -0.25f;  // item 0 then gets clipped to 1
  });
  CHECK(items.size() == 2);
  CHECK(x0 == std::vector<float>{1.0f, 1.0f, -0.25f, -0.25f});
}

TEST_CASE("img2img starts at N - floor(N * strength)") {
  CHECK(img2img_start_index(50, 1.0) == 0);
  CHECK(img2img_start_index(50, 0.5) == 25);
  CHECK(img2img_start_index(50, 0.3) == 35);
  CHECK(img2img_start_index(10, 0.1) == 9);
  const auto schedule = noise_schedule::linear(1000);
  const sample_shape shape{2, 1, 3};
  std::vector<float> x0{1, 2, 3, 4, 5, 6}, x(6);
  img2img_noise<float>(schedule, 999, x0, x, shape, 1);
  std::vector<float> noise(6);
  fill_initial_noise<float>(noise, shape, 1);
  for (std::size_t i = 0; i < 6; ++i)
    CHECK(x[i] == doctest::Approx(schedule.sqrt_alpha_bar(999) * x0[i] + schedule.sqrt_one_minus_alpha_bar(999) * noise[i]).epsilon(1e-6));
}

TEST_CASE("zero-terminal-SNR schedules refuse epsilon prediction and work with v prediction") {
  const auto z = noise_schedule::linear(1000).rescaled_zero_terminal_snr();
  const auto list = make_timesteps(1000, 10, timestep_spacing::trailing);
  test::check_error([&] { ddim_sampler(z, list); }, {"[diffuse.numeric]", "epsilon prediction cannot give x0 at step 0 (t = 999)", "v_prediction"});
  test::check_error([&] { ddpm_sampler(z, list); }, {"[diffuse.numeric]", "alpha_bar = 0"});
  const auto gm = mixture_2d();
  const ddim_sampler s(z, list, {.prediction = prediction_type::v_prediction});
  const auto x = run(s, gm, z, prediction_type::v_prediction, 16, 1);
  for (double v : x) CHECK(std::isfinite(v));
}

TEST_CASE("bad sampler input raises diffuse::error with what was expected") {
  using test::check_error;
  const auto schedule = noise_schedule::linear(1000);
  const auto list = make_timesteps(1000, 10, timestep_spacing::leading);
  check_error([&] { ddim_sampler(schedule, list, {.eta = -0.1}); }, {"[diffuse.sampler]", "eta = -0.1", "eta >= 0"});
  check_error([&] { ddim_sampler(schedule, list, {.eta = std::nan("")}); }, {"eta = nan"});
  check_error([&] { ddim_sampler(schedule, list, {.prediction = prediction_type::previous_x}); }, {"previous_x"});
  check_error([&] { ddpm_sampler(schedule, {5, 10}); }, {"[diffuse.timesteps]", "strictly descending"});
  check_error([&] { ddpm_sampler(noise_schedule::linear(100), {150, 10}); }, {"entry 0 = 150 is out of range", "0 <= t < 100"});
  check_error([&] { ddim_inversion(schedule, {5}); }, {"at least 2 entries"});
  check_error([&] { ddim_inversion(schedule, list, {.eta = 0.5}); }, {"[diffuse.sampler]", "inversion with eta = 0.5", "expected eta = 0"});
  check_error([&] { ddpm_sampler(schedule, list, {.processing = {.clip_range = -1.0}}); }, {"clip_range = -1"});
  check_error([] { img2img_start_index(50, 0.0); }, {"strength = 0 is outside (0, 1]"});
  check_error([] { img2img_start_index(50, 1.5); }, {"strength = 1.5"});
  check_error([] { img2img_start_index(10, 0.05); }, {"runs no step"});

  const ddpm_sampler learned(schedule, list, {.variance = variance_type::learned_range});
  const sample_shape shape{2, 3, 4};
  std::vector<float> x(24), out_c(24), out_2c(48), noise(24), xp(24), wrong(23);
  check_error([&] { learned.step<float>(0, {.x_t = x, .model_output = out_c, .noise = noise, .x_prev = xp}, shape); },
              {"[diffuse.shape]", "model output has 3 channels; expected 6 (2C"});
  const ddpm_sampler plain(schedule, list);
  check_error([&] { plain.step<float>(0, {.x_t = x, .model_output = out_2c, .noise = noise, .x_prev = xp}, shape); },
              {"model output has 6 channels; expected 3 (C"});
  check_error([&] { plain.step<float>(0, {.x_t = wrong, .model_output = out_c, .noise = noise, .x_prev = xp}, shape); },
              {"x_t has 23 elements; expected batch 2 x channels 3 x spatial 4 = 24"});
  check_error([&] { plain.step<float>(0, {.x_t = x, .model_output = out_c, .x_prev = xp}, shape); },
              {"noise has 0 elements; expected 24 (this step adds noise; or give generated noise instead)"});
  const normal_generator gen(1);
  check_error([&] {
    plain.step<float>(0, {.x_t = x, .model_output = out_c, .noise = noise, .x_prev = xp, .generated = {.generator = &gen}}, shape);
  }, {"[diffuse.argument]", "both a noise buffer and generated noise; expected one of them"});
  check_error([&] { plain.step<float>(10, {.x_t = x, .model_output = out_c, .noise = noise, .x_prev = xp}, shape); },
              {"step index 10 is out of range"});
  check_error([&] { sample(plain, [](std::span<const float>, int, std::span<float>) {}, std::span<float>(wrong), shape); },
              {"x has 23 elements"});
  check_error([&] { sample(plain, [](std::span<const float>, int, std::span<float>) {}, std::span<float>(x), shape, {.start_index = 10}); },
              {"start_index = 10 is out of range"});
}
