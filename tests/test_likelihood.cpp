// The variational-bound pieces against guided-diffusion's own code (tests/fixtures/posterior_guided_diffusion.json,
// made by tools/make_posterior_fixtures.py from openai/guided-diffusion 22e0df8): every GaussianDiffusion table,
// q(x_t | x_0), q(x_{t-1} | x_t, x_0), p(x_prev | x_t) of a respaced chain for each variance type, normal_kl,
// the discretized Gaussian log-likelihood and the per-position VB terms (_vb_terms_bpd).
//
// Tolerance: SPEC §11's 1e-12 relative (|a − e| ≤ 1e-12·(|e| + max|e|)) everywhere. The reference computes
// in float64 (its float32 cast of table entries removed, see the script), so differences are rounding of
// differently ordered double operations: 1 − ᾱ/ᾱ' against β, 1/√ᾱ against √(1/ᾱ), and the logs and exps of
// the KL, each a few ulps, well inside 1e-12.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "diffuse/forward.hpp"
#include "diffuse/likelihood.hpp"
#include "diffuse/posterior.hpp"
#include "diffuse/samplers/ancestral.hpp"
#include "diffuse/timesteps.hpp"
#include "support.hpp"

using namespace diffuse;

namespace {

const nlohmann::json& gd() {
  static const nlohmann::json j = test::fixture("posterior_guided_diffusion.json");
  return j;
}

std::vector<double> vec(const nlohmann::json& j) { return j.get<std::vector<double>>(); }

noise_schedule guided_schedule(const std::string& name, int T) {
  return name == "cosine" ? noise_schedule::cosine(T) : noise_schedule::linear_scaled(T);
}

void check_close(const std::vector<double>& actual, const nlohmann::json& expected, const char* what, double tol = 1e-12) {
  const auto e = vec(expected);
  const double worst = test::worst_relative(actual, e, tol);
  CHECK_MESSAGE(worst <= 1.0, what << ": worst error / bound = " << worst);
}

}  // namespace

TEST_CASE("every guided-diffusion table, alphas_cumprod_next included, matches its code") {
  for (const auto& [key, tab] : gd()["tables"].items()) {
    CAPTURE(key);
    const auto s = guided_schedule(tab["schedule"], tab["T"]);
    const auto ts = tab["t"].get<std::vector<int>>();
    std::vector<double> next, log1m, recip, recipm1, logvar, c1, c2, var, prev;
    for (int t : ts) {
      next.push_back(alpha_bar_next(s, t));
      log1m.push_back(log_one_minus_alpha_bar(s, t));
      recip.push_back(s.sqrt_recip_alpha_bar(t));
      recipm1.push_back(s.sqrt_recipm1_alpha_bar(t));
      logvar.push_back(s.posterior_log_variance_clipped(t));
      c1.push_back(s.posterior_mean_coef1(t));
      c2.push_back(s.posterior_mean_coef2(t));
      var.push_back(s.posterior_variance(t));
      prev.push_back(s.alpha_bar(t - 1));
    }
    check_close(next, tab["alphas_cumprod_next"], "alphas_cumprod_next");
    CHECK(next.back() == 0.0);  // guided-diffusion appends 0 after the last timestep: exactly, not a limit
    check_close(log1m, tab["log_one_minus_alphas_cumprod"], "log_one_minus_alphas_cumprod");
    check_close(recip, tab["sqrt_recip_alphas_cumprod"], "sqrt_recip_alphas_cumprod");
    check_close(recipm1, tab["sqrt_recipm1_alphas_cumprod"], "sqrt_recipm1_alphas_cumprod");
    check_close(logvar, tab["posterior_log_variance_clipped"], "posterior_log_variance_clipped");
    check_close(c1, tab["posterior_mean_coef1"], "posterior_mean_coef1");
    check_close(c2, tab["posterior_mean_coef2"], "posterior_mean_coef2");
    check_close(var, tab["posterior_variance"], "posterior_variance");
    check_close(prev, tab["alphas_cumprod_prev"], "alphas_cumprod_prev");
  }
}

TEST_CASE_TEMPLATE("q_mean_variance and q_posterior_mean_variance match guided-diffusion", Scalar, float, double) {
  const auto& q = gd()["q"];
  const auto s = guided_schedule(q["schedule"], q["T"]);
  const sample_shape shape{.batch = 3, .channels = 2, .spatial = 5};
  const auto ts = q["t"].get<std::vector<int>>();
  const auto x0d = vec(q["x0"]), xtd = vec(q["x_t"]);
  const std::vector<Scalar> x0(x0d.begin(), x0d.end()), xt(xtd.begin(), xtd.end());
  std::vector<Scalar> mean(shape.numel()), var(shape.numel()), logvar(shape.numel());
  // float: the inputs and outputs are rounded to float, so 1e-6 relative (a few float ulps); double: 1e-12.
  const double tol = std::is_same_v<Scalar, float> ? 1e-6 : 1e-12;
  const auto d = [](const std::vector<Scalar>& v) { return std::vector<double>(v.begin(), v.end()); };
  q_mean_variance<Scalar>(s, x0, ts, shape, mean, var, logvar);
  check_close(d(mean), q["mean"], "mean", tol);
  check_close(d(var), q["variance"], "variance", tol);
  check_close(d(logvar), q["log_variance"], "log_variance", tol);
  q_posterior_mean_variance<Scalar>(s, x0, xt, ts, shape, mean, var, logvar);
  check_close(d(mean), q["posterior_mean"], "posterior mean", tol);
  check_close(d(var), q["posterior_variance"], "posterior variance", tol);
  check_close(d(logvar), q["posterior_log_variance_clipped"], "posterior log variance", tol);
  // The mean alone, written over x0 itself.
  std::vector<Scalar> inplace = x0;
  q_mean_variance<Scalar>(s, inplace, ts, shape, inplace);
  q_mean_variance<Scalar>(s, x0, ts, shape, mean);
  CHECK(inplace == mean);
}

TEST_CASE("p_mean_variance of a respaced chain, each variance type, and the VB terms match guided-diffusion") {
  const auto& p = gd()["p"];
  const auto s = guided_schedule(p["schedule"], p["T"]);
  const auto list = respace(p["T"], p["respacing"].get<std::string>());
  const auto gd_timesteps = p["timesteps"].get<std::vector<int>>();  // ascending, guided-diffusion's order
  REQUIRE(list.size() == gd_timesteps.size());
  const sample_shape shape{.batch = 2, .channels = 2, .spatial = 4};
  const std::size_t n = shape.numel(), per_item = shape.per_sample();
  const auto x = vec(p["x_t"]), x_start = vec(p["x_start"]);
  for (const auto& c : p["cases"]) {
    const std::string type = c["variance_type"];
    CAPTURE(type);
    const variance_type v = type == "learned" ? variance_type::learned_log : parse_variance_type(type);
    const ddpm_sampler sampler(s, list, {.variance = v, .processing = {.clip_range = 1.0}});
    const auto out = vec(c["model_output"]);
    for (const auto& pos : c["positions"]) {
      const int index = pos["index"];
      const int k = sampler.num_steps() - 1 - index;  // guided-diffusion's index 0 is the last position
      CAPTURE(k);
      REQUIRE(sampler.timestep(k) == pos["t"].get<int>());
      std::vector<double> mean(n), var(n), logvar(n), x0(n), qmean(n), qlogvar(n);
      sampler.mean_variance<double>(k, x, out, shape, {.mean = mean, .variance = var, .log_variance = logvar, .x0 = x0});
      check_close(mean, pos["mean"], "mean");
      check_close(var, pos["variance"], "variance");
      check_close(logvar, pos["log_variance"], "log_variance");
      check_close(x0, pos["x0"], "pred_xstart");
      sampler.posterior_mean_variance<double>(k, x_start, x, shape, {.mean = qmean, .log_variance = qlogvar});
      check_close(qmean, pos["true_mean"], "true posterior mean");
      check_close(qlogvar, pos["true_log_variance"], "true posterior log variance");
      // _vb_terms_bpd: the decoder NLL at the last position, else the KL; bits averaged per item.
      std::vector<double> term(n), half(n);
      if (index == 0) {
        for (std::size_t j = 0; j < n; ++j) half[j] = 0.5 * logvar[j];
        discretized_gaussian_log_likelihood<double>(x_start, mean, half, term);
        for (auto& e : term) e = -e;
      } else {
        normal_kl<double>(qmean, qlogvar, mean, logvar, term);
      }
      std::vector<double> bits(shape.batch);
      for (std::size_t i = 0; i < shape.batch; ++i)
        bits[i] = std::accumulate(term.begin() + i * per_item, term.begin() + (i + 1) * per_item, 0.0) / per_item / std::log(2.0);
      check_close(bits, pos["vb_bits"], "vb bits");
    }
  }
}

TEST_CASE("mean_variance agrees with step(): the step is its mean plus σ·z") {
  // Closed-form identity on the same buffers: x_prev = mean + √variance·z (learned_range, per element σ).
  const auto s = noise_schedule::cosine(1000);
  const ddpm_sampler sampler(s, make_timesteps(1000, 20, timestep_spacing::trailing), {.variance = variance_type::learned_range});
  const sample_shape shape{.batch = 2, .channels = 3, .spatial = 7};
  const std::size_t n = shape.numel();
  std::vector<double> x(n), out(2 * n), z(n), next(n), mean(n), var(n);
  for (std::size_t j = 0; j < n; ++j) {
    x[j] = std::sin(0.7 * j);
    z[j] = std::cos(1.3 * j);
  }
  for (std::size_t j = 0; j < 2 * n; ++j) out[j] = 0.9 * std::sin(2.1 * j + 0.3);
  for (int k : {0, 7, 19}) {
    sampler.step<double>(k, {.x_t = x, .model_output = out, .noise = z, .x_prev = next}, shape);
    sampler.mean_variance<double>(k, x, out, shape, {.mean = mean, .variance = var});
    for (std::size_t j = 0; j < n; ++j) {
      const double expected = mean[j] + (sampler.adds_noise(k) ? std::sqrt(var[j]) * z[j] : 0.0);
      // 1e-13 absolute: the step computes σ as exp(½·lv) and the check √(exp(lv)); values are O(1).
      CHECK(next[j] == doctest::Approx(expected).epsilon(1e-13));
    }
  }
}

TEST_CASE("normal_kl and the discretized log-likelihood match guided-diffusion's losses") {
  const auto& l = gd()["losses"];
  const auto m1 = vec(l["mean1"]), l1 = vec(l["logvar1"]), m2 = vec(l["mean2"]), l2 = vec(l["logvar2"]);
  std::vector<double> kl(m1.size());
  normal_kl<double>(m1, l1, m2, l2, kl);
  check_close(kl, l["normal_kl"], "normal_kl");
  const auto x = vec(l["x"]), means = vec(l["means"]), ls = vec(l["log_scales"]);
  std::vector<double> ll(x.size());
  discretized_gaussian_log_likelihood<double>(x, means, ls, ll);
  check_close(ll, l["log_likelihood"], "log likelihood");
  for (double v : ll) CHECK(std::isfinite(v));  // the 1e-12 clamp keeps far-off means finite
}

TEST_CASE("closed forms: KL of a distribution with itself is 0, of N(0,1) to N(0,e) is known") {
  const std::vector<double> m{0.3, -2.0}, lv{-1.0, 2.5};
  std::vector<double> kl(2);
  normal_kl<double>(m, lv, m, lv, kl);
  CHECK(kl[0] == 0.0);  // −1 + 0 + e^0 + 0: exactly 0 in floating point
  CHECK(kl[1] == 0.0);
  const std::vector<double> zero{0.0}, one{1.0};
  std::vector<double> k1(1);
  normal_kl<double>(zero, zero, zero, one, k1);
  CHECK(k1[0] == doctest::Approx(0.5 * (-1.0 + 1.0 + std::exp(-1.0))).epsilon(1e-15));
}

TEST_CASE("bad likelihood and marginal arguments raise diffuse::error") {
  const auto s = noise_schedule::linear(10);
  std::vector<double> a(4), b(3);
  test::check_error([&] { normal_kl<double>(a, a, a, b, a); }, {"[diffuse.shape]", "log_variance2 has 3 elements; expected 4"});
  test::check_error([&] { discretized_gaussian_log_likelihood<double>(a, b, a, a); }, {"means has 3 elements; expected 4"});
  test::check_error([&] { alpha_bar_next(s, 10); }, {"[diffuse.timesteps]", "timestep 10 is out of range; expected 0 <= t < 10"});
  test::check_error([&] { log_one_minus_alpha_bar(s, -1); }, {"timestep -1 is out of range"});
  const std::vector<int> ts{3, 11};
  test::check_error([&] { q_mean_variance<double>(s, a, ts, {.batch = 2, .channels = 1, .spatial = 2}, a); },
                    {"timestep 11 of batch item 1 is out of range"});
  const ddpm_sampler sampler(s, {9, 5, 0}, {.variance = variance_type::learned_range});
  test::check_error([&] { sampler.mean_variance<double>(0, a, a, {.batch = 1, .channels = 2, .spatial = 2}, {.mean = a}); },
                    {"the model output has 4 elements; expected 2 x 4 (2C channels: a learned variance)"});
  test::check_error([&] { sampler.posterior_mean_variance<double>(3, a, a, {.batch = 1, .channels = 2, .spatial = 2}, {.mean = a}); },
                    {"step index 3 is out of range"});
}
