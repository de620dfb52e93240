// Posterior coefficients for adjacent and strided steps, config names, x̂0 processing options.
#include <doctest/doctest.h>

#include <cmath>

#include "diffuse/posterior.hpp"
#include "support.hpp"

using namespace diffuse;

TEST_CASE("a strided posterior with stride 1 equals the adjacent one") {
  const auto s = noise_schedule::cosine(1000);
  for (int t = 1; t < 1000; t += 13) {
    const auto p = posterior(s, t, t - 1);
    // The full chain uses the schedule's β_t bit for bit (SPEC §11)...
    CHECK(p.beta_prime == s.beta(t));
    CHECK(p.c1 == doctest::Approx(s.posterior_mean_coef1(t)).epsilon(1e-15));
    CHECK(p.c2 == doctest::Approx(s.posterior_mean_coef2(t)).epsilon(1e-15));
    CHECK(p.variance == doctest::Approx(s.posterior_variance(t)).epsilon(1e-15));
    // ...and 1 − ᾱ_t/ᾱ_{t−1} recomputed agrees to rounding: 1e-12 relative (cancellation in 1 − x).
    CHECK(1.0 - s.alpha_bar(t) / s.alpha_bar(t - 1) == doctest::Approx(s.beta(t)).epsilon(1e-12));
  }
}

TEST_CASE("the posterior mean of (x_t, x0) is unbiased over the forward noise") {
  // E[x_t | x0] = √ᾱ_t x0, so E[μ̃] = (c1 + c2·√ᾱ_t) x0 must equal E[x_p | x0] = √ᾱ_p x0, for any p < t.
  const auto s = noise_schedule::linear(1000);
  for (auto [t, p] : {std::pair{999, 979}, {500, 0}, {10, -1}, {1, 0}, {700, 350}}) {
    const auto post = posterior(s, t, p);
    CHECK(post.c1 + post.c2 * std::sqrt(s.alpha_bar(t)) == doctest::Approx(std::sqrt(s.alpha_bar(p))).epsilon(1e-13));
    // and the variances add up: Var[x_p | x0] = c2²·(1 − ᾱ_t) + β̃ = 1 − ᾱ_p
    CHECK(post.c2 * post.c2 * (1 - s.alpha_bar(t)) + post.variance == doctest::Approx(1 - s.alpha_bar(p)).epsilon(1e-12));
  }
  const auto last = posterior(s, 10, -1);
  CHECK(last.variance == 0.0);
  CHECK(last.alpha_bar_prev == 1.0);
  CHECK(last.log_variance_clipped == s.posterior_log_variance_clipped(10));
}

TEST_CASE("prediction and variance names parse as configs write them") {
  CHECK(parse_prediction_type("epsilon") == prediction_type::epsilon);
  CHECK(parse_prediction_type("v_prediction") == prediction_type::v_prediction);
  CHECK(parse_prediction_type("sample") == prediction_type::sample);
  CHECK(parse_prediction_type("previous_x") == prediction_type::previous_x);
  CHECK(parse_variance_type("fixed_small_log") == variance_type::fixed_small);
  CHECK(parse_variance_type("learned_range") == variance_type::learned_range);
  CHECK(parse_variance_type("learned") == variance_type::learned);
  test::check_error([] { parse_variance_type("fixed_large_log"); }, {"fixed_large_log", "not supported", "NaN"});
  test::check_error([] { parse_variance_type("huge"); }, {"variance_type \"huge\" is unknown"});
  test::check_error([] { parse_prediction_type("noise"); }, {"prediction_type \"noise\" is unknown", "expected epsilon"});
}

TEST_CASE("bad posterior and processing arguments raise diffuse::error") {
  const auto s = noise_schedule::linear(100);
  test::check_error([&] { posterior(s, 100, 5); }, {"timestep 100 is out of range"});
  test::check_error([&] { posterior(s, 5, 5); }, {"previous timestep 5 of t = 5 is invalid", "-1 <= prev < t"});
  test::check_error([&] { posterior(s, 5, -2); }, {"previous timestep -2"});
  test::check_error([] { x0_processing{.clip_range = 0.0}.validate(); }, {"clip_range = 0"});
  test::check_error([] { x0_processing{.threshold = dynamic_threshold{1.5, 1.0}}.validate(); }, {"ratio = 1.5"});
  test::check_error([] { x0_processing{.threshold = dynamic_threshold{0.9, 0.5}}.validate(); }, {"max_value = 0.5"});
}
