// Guidance: reference values (condition_mean / condition_score steps, diffusers' CFG and rescale), and
// behaviour with the exact Gaussian-mixture classifier and denoisers.
#include <doctest/doctest.h>

#include <map>

#include "diffuse/ddpm.hpp"
#include "diffuse/gaussian_mixture.hpp"
#include "support.hpp"

using namespace diffuse;

namespace {

template <class T>
std::vector<T> as(const nlohmann::json& j) {
  std::vector<T> v;
  for (const auto& e : j) v.push_back(static_cast<T>(e.get<double>()));
  return v;
}
// Same reasoning as test_sampler_steps.cpp: float64 reference, 1e-12 in double; float arithmetic with
// coefficients up to 1/√ᾱ ≈ 1e2: 2e-5 relative to the tensor scale.
template <class T>
constexpr double tolerance = std::is_same_v<T, double> ? 1e-12 : 2e-5;

gaussian_mixture mixture() { return gaussian_mixture({0.2, 0.5, 0.3}, {{-3.0, 0.0}, {2.0, 2.0}, {1.0, -3.0}}, {0.4, 0.6, 0.5}); }

std::vector<int> full_chain() {
  std::vector<int> ts(1000);
  for (int t = 0; t < 1000; ++t) ts[static_cast<std::size_t>(t)] = 999 - t;
  return ts;
}

struct component_stats {
  double purity = 0, mean_err = 0, variance = 0;
};

// Fraction of samples whose most likely clean component is y, and the mean error / variance of those.
component_stats stats_for(const gaussian_mixture& gm, const std::vector<double>& x, int y) {
  const std::size_t n = x.size() / 2, K = gm.components();
  std::vector<double> post(n * K), x0(x.size());
  gm.denoise<double>(x, 1.0 - 1e-12, x0, post);
  component_stats s;
  double m[2] = {0, 0}, count = 0;
  std::vector<std::size_t> in;
  for (std::size_t i = 0; i < n; ++i) {
    std::size_t best = 0;
    for (std::size_t k = 1; k < K; ++k)
      if (post[i * K + k] > post[i * K + best]) best = k;
    if (best == static_cast<std::size_t>(y)) {
      in.push_back(i);
      m[0] += x[2 * i];
      m[1] += x[2 * i + 1];
      ++count;
    }
  }
  s.purity = count / static_cast<double>(n);
  m[0] /= count;
  m[1] /= count;
  s.mean_err = std::hypot(m[0] - gm.mean(static_cast<std::size_t>(y))[0], m[1] - gm.mean(static_cast<std::size_t>(y))[1]);
  for (auto i : in) s.variance += (std::pow(x[2 * i] - m[0], 2) + std::pow(x[2 * i + 1] - m[1], 2)) / 2;
  s.variance /= (count - 1);
  return s;
}

template <class Sampler, class Model, class Guidance>
std::vector<double> run(const Sampler& sampler, Model model, Guidance g, std::size_t n, std::uint64_t seed) {
  const sample_shape shape{n, 1, 2};
  std::vector<double> x(shape.numel());
  fill_initial_noise<double>(x, shape, seed);
  sampling_workspace<double> ws;
  sample(sampler, model, std::span<double>(x), shape, {.seed = seed}, ws, no_callback{}, std::move(g));
  return x;
}

}  // namespace

TEST_CASE_TEMPLATE("guided steps match condition_mean and condition_score", T, float, double) {
  const auto j = test::fixture("sampler_steps.json");
  const sample_shape shape{j["shape"]["batch"], j["shape"]["channels"], j["shape"]["spatial"]};
  const auto x = as<T>(j["x_t"]), z = as<T>(j["noise"]), g = as<T>(j["guidance_gradient"]);
  const std::map<std::string, noise_schedule> schedules{{"linear", noise_schedule::linear(1000)}, {"cosine", noise_schedule::cosine(1000)}};
  int n = 0;
  for (const auto& c : j["guided_cases"]) {
    std::vector<int> list = c["list"] == "full" ? full_chain() : j["lists"][c["list"].get<std::string>()].get<std::vector<int>>();
    x0_processing proc;
    if (c["processing"] == "clip") proc.clip_range = j["clip_range"].get<double>();
    if (c["processing"] == "threshold") proc.threshold = dynamic_threshold{j["threshold"]["ratio"], j["threshold"]["max_value"]};
    std::vector<T> xp(x.size()), x0(x.size());
    const int k = c["k"];
    const auto pred = parse_prediction_type(c["prediction"].get<std::string>());
    if (c["sampler"] == "ddpm") {
      const auto var = parse_variance_type(c["variance"].get<std::string>());
      const auto out = as<T>(var == variance_type::learned_range ? j["model_output_learned"] : j["model_output"]);
      ddpm_sampler s(schedules.at(c["schedule"]), list, {pred, var, proc});
      s.template step<T>(k, {.x_t = x, .model_output = out, .noise = z, .x_prev = xp, .x0 = x0, .guidance_gradient = g}, shape);
    } else {
      const auto out = as<T>(j["model_output"]);
      ddim_sampler s(schedules.at(c["schedule"]), list, {.prediction = pred, .eta = c["eta"], .processing = proc});
      s.template step<T>(k, {.x_t = x, .model_output = out, .noise = z, .x_prev = xp, .x0 = x0, .guidance_gradient = g}, shape);
    }
    INFO(c.dump());
    CHECK(test::worst_relative(xp, c["x_prev"].get<std::vector<double>>(), tolerance<T>) <= 1.0);
    CHECK(test::worst_relative(x0, c["x0"].get<std::vector<double>>(), tolerance<T>) <= 1.0);
    ++n;
  }
  CHECK(n > 80);
}

TEST_CASE_TEMPLATE("classifier-free guidance and rescale match diffusers", T, float, double) {
  const auto j = test::fixture("guidance_cfg.json");
  const auto dims = j["shape"].get<std::vector<std::size_t>>();
  const sample_shape shape{dims[0], dims[1], dims[2] * dims[3]};
  const auto cond = as<T>(j["cond"]), uncond = as<T>(j["uncond"]);
  for (const auto& c : j["cases"]) {
    auto guided = cond;
    apply_cfg<T>(guided, uncond, shape, c["scale"], c["formulation"] == "standard" ? cfg_formulation::standard : cfg_formulation::original,
                 c["rescale"]);
    INFO(c["formulation"], " w=", c["scale"], " phi=", c["rescale"]);
    // double: the std ratio is accumulated in double by both; 1e-12. float: a few float operations on
    // values of order w·|ε| ≤ 20: 1e-6 relative to the tensor scale.
    CHECK(test::worst_relative(guided, c["guided"].get<std::vector<double>>(), std::is_same_v<T, double> ? 1e-12 : 1e-6) <= 1.0);
  }
}

TEST_CASE("classifier guidance with the exact p(y | x_t) samples the chosen component, sharper at larger scales") {
  const auto gm = mixture();
  const auto schedule = noise_schedule::cosine(1000);
  const int y = 0;  // the lightest component (weight 0.2)
  auto model = gm.denoiser<double>(schedule, prediction_type::epsilon);
  auto gradient = [&](std::span<const double> x, int t, std::span<double> g) {
    std::vector<double> x0(x.size());
    gm.denoise<double>(x, schedule.alpha_bar(t), x0, {}, y, g);
  };
  const std::size_t n = 2000;
  const double sd = gm.stddev(y);
  SUBCASE("DDPM, mean shift (condition_mean)") {
    const ddpm_sampler s(schedule, full_chain());
    const auto one = stats_for(gm, run(s, model, guidance(classifier_guidance(gradient, 1.0)), n, 1), y);
    const auto three = stats_for(gm, run(s, model, guidance(classifier_guidance(gradient, 3.0)), n, 1), y);
    MESSAGE("DDPM scale 1: purity ", one.purity, ", mean error ", one.mean_err, ", variance ", one.variance, " (true ", sd * sd,
            "); scale 3: purity ", three.purity, ", variance ", three.variance);
    // Without guidance 20% of samples land in component 0. At scale 1 the guided chain samples p(x | y):
    // purity ≥ 0.99, mean within 5 standard errors (5·s/√n = 0.045) + 0.02 discretisation, variance
    // within 5·s²√(2/(2n)) = 0.018 + 0.02.
    CHECK(one.purity >= 0.99);
    CHECK(one.mean_err <= 5 * sd / std::sqrt(n * one.purity) + 0.02);
    CHECK(std::abs(one.variance - sd * sd) <= 5 * sd * sd * std::sqrt(1.0 / (n * one.purity)) + 0.02);
    // Larger scales sharpen: p(x | y)·p(y | x)^{s−1} concentrates the component.
    CHECK(three.purity >= one.purity);
    CHECK(three.variance < one.variance);
  }
  SUBCASE("DDIM, score form (condition_score)") {
    const ddim_sampler s(schedule, make_timesteps(1000, 50, timestep_spacing::trailing));
    const auto one = stats_for(gm, run(s, model, guidance(classifier_guidance(gradient, 1.0)), n, 2), y);
    MESSAGE("DDIM-50 scale 1: purity ", one.purity, ", mean error ", one.mean_err, ", variance ", one.variance);
    CHECK(one.purity >= 0.99);
    CHECK(one.mean_err <= 5 * sd / std::sqrt(n * one.purity) + 0.05);
    CHECK(std::abs(one.variance - sd * sd) <= 5 * sd * sd * std::sqrt(1.0 / (n * one.purity)) + 0.05);
  }
}

TEST_CASE("classifier-free guidance at w = 1 from exact denoisers reproduces conditional sampling") {
  const auto gm = mixture();
  const gaussian_mixture component({1.0}, {{gm.mean(2)[0], gm.mean(2)[1]}}, {gm.stddev(2)});
  const auto schedule = noise_schedule::cosine(1000);
  const ddim_sampler s(schedule, make_timesteps(1000, 50, timestep_spacing::trailing));
  auto cond = component.denoiser<double>(schedule, prediction_type::epsilon);
  auto uncond = gm.denoiser<double>(schedule, prediction_type::epsilon);
  const auto direct = run(s, cond, no_guidance{}, 256, 4);
  const auto cfg = run(s, cond, guidance(classifier_free_guidance(uncond, 1.0)), 256, 4);
  // ε_u + 1·(ε_c − ε_u) differs from ε_c by rounding only; 50 deterministic steps keep it below 1e-10.
  CHECK(test::worst_relative(cfg, direct, 1e-10) <= 1.0);
  // and w = 0 is unconditional sampling
  const auto unc = run(s, uncond, no_guidance{}, 256, 4);
  const auto cfg0 = run(s, cond, guidance(classifier_free_guidance(uncond, 0.0)), 256, 4);
  CHECK(test::worst_relative(cfg0, unc, 1e-10) <= 1.0);
}

TEST_CASE("one batched call over both halves equals two calls") {
  const auto gm = mixture();
  const gaussian_mixture component({1.0}, {{gm.mean(1)[0], gm.mean(1)[1]}}, {gm.stddev(1)});
  const auto schedule = noise_schedule::linear(1000);
  const ddim_sampler s(schedule, make_timesteps(1000, 20, timestep_spacing::leading));
  auto cond = component.denoiser<double>(schedule, prediction_type::epsilon);
  auto uncond = gm.denoiser<double>(schedule, prediction_type::epsilon);
  const std::size_t n = 32;
  auto both = [&](std::span<const double> x2, int t, std::span<double> out2) {
    const std::size_t half = x2.size() / 2;
    cond(x2.first(half), t, out2.first(half));
    uncond(x2.subspan(half), t, out2.subspan(half));
  };
  const cfg_options opt{.rescale = 0.5};
  const auto two_calls = run(s, cond, guidance(classifier_free_guidance(uncond, 4.0, opt)), n, 8);
  const auto one_call = run(s, batched_cfg_model<double, decltype(both)>(both, {n, 1, 2}, 4.0, opt), no_guidance{}, n, 8);
  CHECK(two_calls == one_call);
}

TEST_CASE("hooks compose in order and windows limit them") {
  const auto gm = mixture();
  const auto schedule = noise_schedule::cosine(1000);
  const ddpm_sampler s(schedule, respace(1000, "100"));
  auto model = gm.denoiser<double>(schedule, prediction_type::epsilon);
  auto gradient = [&](int y) {
    return [&, y](std::span<const double> x, int t, std::span<double> g) {
      std::vector<double> x0(x.size());
      gm.denoise<double>(x, schedule.alpha_bar(t), x0, {}, y, g);
    };
  };
  // Two classifier hooks of scales 0.5 and 1.5 on the same class add up to one hook of scale 2.
  const auto a = run(s, model, guidance(classifier_guidance(gradient(0), 0.5), classifier_guidance(gradient(0), 1.5)), 64, 3);
  const auto b = run(s, model, guidance(classifier_guidance(gradient(0), 2.0)), 64, 3);
  CHECK(test::worst_relative(a, b, 1e-9) <= 1.0);
  // CFG then classifier guidance equals a model that applies CFG by hand, plus the classifier hook.
  const gaussian_mixture component({1.0}, {{gm.mean(1)[0], gm.mean(1)[1]}}, {gm.stddev(1)});
  auto cond = component.denoiser<double>(schedule, prediction_type::epsilon);
  auto uncond = gm.denoiser<double>(schedule, prediction_type::epsilon);
  auto by_hand = [&](std::span<const double> x, int t, std::span<double> out) {
    std::vector<double> u(out.size());
    cond(x, t, out);
    uncond(x, t, u);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = u[i] + 2.5 * (out[i] - u[i]);
  };
  const auto hooks = run(s, cond, guidance(classifier_free_guidance(uncond, 2.5), classifier_guidance(gradient(1), 0.7)), 64, 5);
  const auto manual = run(s, by_hand, guidance(classifier_guidance(gradient(1), 0.7)), 64, 5);
  CHECK(test::worst_relative(hooks, manual, 1e-12) <= 1.0);
  // A window is the same as a scale that is zero outside it.
  const auto windowed = run(s, model, guidance(classifier_guidance(gradient(0), 5.0, step_window{10, 20})), 64, 3);
  auto zero_outside = [](int k, int) { return k >= 10 && k <= 20 ? 5.0 : 0.0; };
  const auto scaled = run(s, model, guidance(classifier_guidance(gradient(0), zero_outside, step_window{})), 64, 3);
  const auto plain = run(s, model, no_guidance{}, 64, 3);
  CHECK(windowed == scaled);
  CHECK(windowed != plain);
}

TEST_CASE("a per-step scale is evaluated at every step") {
  const auto gm = mixture();
  const auto schedule = noise_schedule::linear(1000);
  const ddim_sampler s(schedule, make_timesteps(1000, 10, timestep_spacing::trailing));
  auto cond = gm.denoiser<double>(schedule, prediction_type::epsilon);
  std::vector<int> seen;
  auto scale = [&](int k, int t) {
    seen.push_back(t);
    return k < 5 ? 2.0 : 1.0;
  };
  run(s, cond, guidance(classifier_free_guidance(cond, scale, {})), 4, 1);
  CHECK(seen.size() == 10);
  CHECK(seen.front() == 999);
}

TEST_CASE("bad guidance input raises diffuse::error") {
  using test::check_error;
  const auto gm = mixture();
  const auto schedule = noise_schedule::linear(1000);
  const ddim_sampler s(schedule, make_timesteps(1000, 10, timestep_spacing::trailing));
  auto model = gm.denoiser<double>(schedule, prediction_type::epsilon);
  auto nan_gradient = [](std::span<const double>, int, std::span<double> g) {
    for (auto& v : g) v = 0;
    g[1] = std::nan("");
  };
  check_error([&] { run(s, model, guidance(classifier_guidance(nan_gradient, 1.0)), 4, 1); },
              {"[diffuse.guidance]", "non-finite value (nan) at element 1 at step 0 (t = 999)"});
  check_error([&] { run(s, model, guidance(classifier_free_guidance(model, -1.0)), 4, 1); },
              {"classifier-free guidance scale -1 at step 0", "expected a finite scale >= 0"});
  check_error([&] { run(s, model, guidance(classifier_guidance(nan_gradient, 1.0, step_window{10, 12})), 4, 1); },
              {"window starts at step 10 but the sampler has 10 steps"});
  check_error([&] { run(s, model, guidance(classifier_guidance(nan_gradient, 1.0, step_window{5, 2})), 4, 1); },
              {"window [5, 2] is empty"});
  std::vector<float> c(12), u(10);
  check_error([&] { apply_cfg<float>(c, u, {2, 1, 6}, 2.0); }, {"conditional output has 12 elements and the unconditional 10"});
  std::vector<float> u12(12);
  check_error([&] { apply_cfg<float>(c, u12, {2, 1, 6}, 2.0, cfg_formulation::standard, 1.5); }, {"guidance rescale 1.5 is outside [0, 1]"});
  check_error([&] { apply_cfg<float>(c, u12, {2, 1, 5}, 2.0); }, {"model output has 12 elements; expected 10"});
  auto m2 = [](std::span<const float>, int, std::span<float>) {};
  check_error([&] { batched_cfg_model<float, decltype(m2)>(m2, {1, 1, 2}, 1.0, {.window = {0, 3}}); }, {"cannot apply a window"});
  check_error([&] { batched_cfg_model<float, decltype(m2)>(m2, {1, 1, 2}, -2.0); }, {"scale -2 is invalid"});
}
