// noise_schedule: reference tables (tools/make_core_fixtures.py), closed-form identities, bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <map>
#include <numbers>
#include <string>

#include "diffuse/schedule.hpp"
#include "support.hpp"

using diffuse::noise_schedule;

namespace {

std::map<std::string, noise_schedule> named_schedules() {
  return {{"linear_1000", noise_schedule::linear(1000)},
          {"linear_scaled_50", noise_schedule::linear_scaled(50)},
          {"scaled_linear_1000", noise_schedule::scaled_linear(1000)},
          {"cosine_1000", noise_schedule::cosine(1000)},
          {"sigmoid_100", noise_schedule::sigmoid(100)},
          {"linear_1000_zero_snr", noise_schedule::linear(1000).rescaled_zero_terminal_snr()},
          {"scaled_linear_1000_zero_snr", noise_schedule::scaled_linear(1000).rescaled_zero_terminal_snr()}};
}

double table(const noise_schedule& s, const std::string& name, int t) {
  if (name == "betas") return s.beta(t);
  if (name == "alphas_cumprod") return s.alpha_bar(t);
  if (name == "sqrt_alphas_cumprod") return s.sqrt_alpha_bar(t);
  if (name == "sqrt_one_minus_alphas_cumprod") return s.sqrt_one_minus_alpha_bar(t);
  if (name == "sqrt_recip_alphas_cumprod") return s.sqrt_recip_alpha_bar(t);
  if (name == "sqrt_recipm1_alphas_cumprod") return s.sqrt_recipm1_alpha_bar(t);
  if (name == "snr") return s.snr(t);
  if (name == "posterior_variance") return s.posterior_variance(t);
  if (name == "posterior_log_variance_clipped") return s.posterior_log_variance_clipped(t);
  if (name == "posterior_mean_coef1") return s.posterior_mean_coef1(t);
  if (name == "posterior_mean_coef2") return s.posterior_mean_coef2(t);
  FAIL("unknown table " << name);
  return 0;
}

}  // namespace

TEST_CASE("every schedule table matches the float64 reference to 1e-12 relative") {
  // Both references compute these tables in float64; 1e-12 (SPEC §11 definition: relative to |e| + max|e|
  // over the table) leaves room for a different order of the same operations, and entries of the form
  // 1 − x get 4 ulps absolute on top.
  const auto fx = test::fixture("schedules.json");
  for (const auto& [name, schedule] : named_schedules()) {
    const auto& ref = fx["schedules"][name];
    const auto ts = ref["t"].get<std::vector<int>>();
    for (const auto& [key, values] : ref.items()) {
      if (key == "t") continue;
      std::vector<double> actual, expected;
      for (std::size_t i = 0; i < ts.size(); ++i) {
        if (values[i].is_null()) {  // the reference gives Inf (ᾱ = 0): so must we
          CHECK_MESSAGE(std::isinf(table(schedule, key, ts[i])), name << " " << key << " t=" << ts[i]);
          continue;
        }
        actual.push_back(table(schedule, key, ts[i]));
        expected.push_back(values[i].get<double>());
      }
      double scale = 0;
      for (double e : expected) scale = std::max(scale, std::abs(e));
      // The reference rescale recomputes ᾱ_0 (it can land 1 ulp off); diffuse pins it (SPEC §1: ᾱ_0 unchanged).
      // SNR = ᾱ/(1 − ᾱ) amplifies that ulp by 1/(1 − ᾱ_0) ≈ 1e4 at t = 0, hence 1e-11 there.
      const bool amplified = key == "snr" && name.ends_with("zero_snr");
      for (std::size_t i = 0; i < actual.size(); ++i) {
        const double tol = amplified && i == 0 ? 1e-11 : 1e-12;
        const double bound = tol * (std::abs(expected[i]) + scale) + 4 * std::numeric_limits<double>::epsilon();
        CHECK_MESSAGE(std::abs(actual[i] - expected[i]) <= bound,
                      name << " " << key << " entry " << i << ": " << actual[i] << " vs " << expected[i]);
      }
    }
  }
}

TEST_CASE("linear_scaled equals linear at T = 1000 and scales both ends by 1000/T") {
  const auto a = noise_schedule::linear_scaled(1000), b = noise_schedule::linear(1000);
  for (int t = 0; t < 1000; t += 37) CHECK(a.beta(t) == b.beta(t));
  const auto s = noise_schedule::linear_scaled(50);
  CHECK(s.beta(0) == doctest::Approx(0.002).epsilon(1e-15));
  CHECK(s.beta(49) == doctest::Approx(0.4).epsilon(1e-15));
}

TEST_CASE("zero-terminal-SNR rescale: alpha_bar[T-1] is exactly 0 and alpha_bar[0] unchanged") {
  for (const auto& base : {noise_schedule::linear(1000), noise_schedule::scaled_linear(1000), noise_schedule::cosine(1000),
                           noise_schedule::sigmoid(100), noise_schedule::linear(2)}) {
    const auto z = base.rescaled_zero_terminal_snr();
    CHECK(z.alpha_bar(z.size() - 1) == 0.0);
    CHECK(z.beta(z.size() - 1) == 1.0);
    CHECK(z.zero_terminal_snr());
    CHECK_FALSE(base.zero_terminal_snr());
    // Bit for bit: the algorithm's (a0 − aT)·a0/(a0 − aT) can land an ulp off, so diffuse pins ᾱ_0.
    CHECK(z.alpha_bar(0) == base.alpha_bar(0));
    for (int t = 1; t < z.size(); ++t) CHECK(z.alpha_bar(t) < z.alpha_bar(t - 1));
  }
}

TEST_CASE("cosine alpha_bar equals f((t+1)/T)/f(0) wherever the cap is inactive") {
  const int T = 1000;
  const double s = 0.008;
  const auto f = [&](double u) { return std::pow(std::cos((u + s) / (1 + s) * std::numbers::pi / 2), 2); };
  const auto sched = noise_schedule::cosine(T);
  int checked = 0;
  for (int t = 0; t < T; ++t) {
    if (sched.beta(t) >= 0.999) break;  // from the first capped step on, the product departs from f
    // The product telescopes; each factor carries one rounding, so allow 1e-12 relative over 1000 factors.
    CHECK(sched.alpha_bar(t) == doctest::Approx(f((t + 1.0) / T) / f(0.0)).epsilon(1e-12));
    ++checked;
  }
  CHECK(checked > 990);
  CHECK(sched.beta(T - 1) == 0.999);  // the cap binds at the end: cosine is not zero terminal SNR
  CHECK(sched.alpha_bar(T - 1) > 0.0);
}

TEST_CASE("custom beta and alpha_bar lists round-trip") {
  const auto lin = noise_schedule::linear(100);
  const std::vector<double> ab(lin.alphas_cumprod().begin(), lin.alphas_cumprod().end());
  const auto from_ab = noise_schedule::from_alphas_cumprod(ab);
  for (int t = 0; t < 100; ++t) CHECK(from_ab.beta(t) == doctest::Approx(lin.beta(t)).epsilon(1e-12));
  const auto z = noise_schedule::from_alphas_cumprod({0.9, 0.5, 0.0});
  CHECK(z.beta(2) == 1.0);
  CHECK(z.zero_terminal_snr());
  const auto b = noise_schedule::from_betas({0.1, 0.2, 1.0});
  CHECK(b.alpha_bar(2) == 0.0);
  CHECK(b.alpha_bar(-1) == 1.0);
}

TEST_CASE("full-chain posterior tables satisfy their definitions") {
  const auto s = noise_schedule::cosine(200);
  for (int t = 1; t < 200; ++t) {
    const double ab = s.alpha_bar(t), abp = s.alpha_bar(t - 1);
    CHECK(s.posterior_variance(t) == doctest::Approx(s.beta(t) * (1 - abp) / (1 - ab)).epsilon(1e-14));
    // The posterior mean of (x_t = √ᾱ_t x0, x0) is x0·√ᾱ_{t−1}: c1 + c2·√ᾱ_t = √ᾱ_{t−1}.
    CHECK(s.posterior_mean_coef1(t) + s.posterior_mean_coef2(t) * std::sqrt(ab) == doctest::Approx(std::sqrt(abp)).epsilon(1e-13));
  }
  CHECK(s.posterior_variance(0) == 0.0);
  CHECK(s.posterior_log_variance_clipped(0) == s.posterior_log_variance_clipped(1));
  CHECK(noise_schedule::linear(1).posterior_log_variance_clipped(0) == std::log(1e-4));
}

TEST_CASE("bad schedule parameters raise diffuse::error naming the value") {
  using test::check_error;
  check_error([] { noise_schedule::linear(0); }, {"[diffuse.schedule]", "num_train_timesteps = 0", "expected >= 1"});
  check_error([] { noise_schedule::linear(10, 0.0, 0.02); }, {"beta_start = 0", "outside (0, 1]"});
  check_error([] { noise_schedule::linear(10, 1e-4, 1.5); }, {"beta_end = 1.5"});
  check_error([] { noise_schedule::linear(10, std::nan(""), 0.02); }, {"beta_start = nan"});
  check_error([] { noise_schedule::scaled_linear(-3); }, {"num_train_timesteps = -3"});
  check_error([] { noise_schedule::cosine(10, -0.1); }, {"cosine offset s = -0.1"});
  check_error([] { noise_schedule::cosine(10, 0.008, 0.0); }, {"max_beta = 0"});
  check_error([] { noise_schedule::sigmoid(0); }, {"num_train_timesteps = 0"});
  check_error([] { noise_schedule::from_betas({}); }, {"beta list is empty"});
  check_error([] { noise_schedule::from_betas({0.1, -0.2}); }, {"beta[1] = -0.2", "outside (0, 1]"});
  check_error([] { noise_schedule::from_betas({0.1, std::nan("")}); }, {"beta[1] = nan"});
  check_error([] { noise_schedule::from_betas({0.1, 1.0, 0.2}); }, {"beta[1] = 1 before the last timestep"});
  check_error([] { noise_schedule::from_alphas_cumprod({}); }, {"alpha_bar list is empty"});
  check_error([] { noise_schedule::from_alphas_cumprod({0.9, 0.95}); }, {"alpha_bar[1] = 0.95", "strictly decreasing"});
  check_error([] { noise_schedule::from_alphas_cumprod({0.9, 0.0, 0.0}); }, {"alpha_bar[1] = 0"});
  check_error([] { noise_schedule::from_alphas_cumprod({1.0, 0.5}); }, {"alpha_bar[0] = 1"});
  check_error([] { noise_schedule::linear(1).rescaled_zero_terminal_snr(); }, {"needs T >= 2"});
  const auto s = noise_schedule::linear(10);
  check_error([&] { (void)s.beta(10); }, {"[diffuse.timesteps]", "timestep 10 is out of range", "0 <= t < 10"});
  check_error([&] { (void)s.alpha_bar(-2); }, {"timestep -2 is out of range"});
}

// Construction-time validation: no schedule exists whose tables are unusable.
TEST_CASE("every factory gives finite tables and a strictly decreasing alpha_bar in (0, 1), T = 1 … 60,000") {
  using factory = noise_schedule (*)(int);
  const std::pair<const char*, factory> factories[] = {
      {"linear", [](int T) { return noise_schedule::linear(T); }},
      {"linear_scaled", [](int T) { return noise_schedule::linear_scaled(T); }},
      {"scaled_linear", [](int T) { return noise_schedule::scaled_linear(T); }},
      {"cosine", [](int T) { return noise_schedule::cosine(T); }},
      {"sigmoid", [](int T) { return noise_schedule::sigmoid(T); }}};
  const auto finite = [](double v) { return std::isfinite(v); };
  for (const auto& [name, make] : factories)
    for (int T : {1, 2, 3, 10, 1000, 10000, 60000})
      for (bool zero_snr : {false, true}) {
        if (zero_snr && T < 2) continue;
        if (std::string(name) == "linear_scaled" && T < 20) continue;  // beta_end = 0.02·1000/T exceeds 1 (refused)
        CAPTURE(name);
        CAPTURE(T);
        CAPTURE(zero_snr);
        const auto s = zero_snr ? make(T).rescaled_zero_terminal_snr() : make(T);
        double prev = 1.0;
        for (int t = 0; t < T; ++t) {
          const double ab = s.alpha_bar(t);
          if (zero_snr && t == T - 1) {
            REQUIRE(ab == 0.0);
          } else {
            REQUIRE(ab >= std::numeric_limits<double>::min());
            REQUIRE(ab < prev);
          }
          prev = ab;
          REQUIRE(finite(s.beta(t)));
          REQUIRE(finite(s.posterior_variance(t)));
          REQUIRE(finite(s.posterior_log_variance_clipped(t)));
          REQUIRE(finite(s.posterior_mean_coef1(t)));
          REQUIRE(finite(s.posterior_mean_coef2(t)));
        }
      }
}

TEST_CASE("a schedule whose alpha_bar underflows is refused at the first such t, rescaled or not") {
  // Linear 1e-4 … 0.02 destroys e^-703 of the signal by T = 70,000; at T = 80,000 ᾱ leaves the normal double
  // range. The zero-terminal-SNR rescale of such a schedule used to produce NaN betas (0/0).
  constexpr int T = 80000;
  double prod = 1.0;
  int first = -1;
  for (int t = 0; t < T; ++t) {
    prod *= 1.0 - (1e-4 + t * ((0.02 - 1e-4) / (T - 1)));  // the factory's linspace
    if (prod < std::numeric_limits<double>::min()) {
      first = t;
      break;
    }
  }
  REQUIRE(first > 0);
  const std::string at = "alpha_bar[" + std::to_string(first) + "]";
  test::check_error([] { noise_schedule::linear(T); }, {"[diffuse.schedule]", at, "underflows the double range"});
  test::check_error([] { (void)noise_schedule::linear(T).rescaled_zero_terminal_snr(); }, {at, "underflows"});
  test::check_error([] { noise_schedule::sigmoid(200000); }, {"underflows"});
}

TEST_CASE("alpha_bar_0 = 1 and equal neighbouring alpha_bar are refused, naming the beta") {
  test::check_error([] { noise_schedule::linear(1000, 1e-20, 0.02); },
              {"[diffuse.schedule]", "alpha_bar[0] = 1", "beta[0] = 1e-20", "divides by 1 - alpha_bar = 0"});
  test::check_error([] { noise_schedule::from_betas({5e-324, 0.1}); }, {"alpha_bar[0] = 1", "beta[0] = 5e-324"});
  test::check_error([] { noise_schedule::from_betas({0.1, 1e-20, 0.1}); },
              {"alpha_bar[1] = 0.9", "is not below alpha_bar[0] = 0.9", "strictly decreasing"});
  // A one-step schedule with β = 1 is the degenerate zero-terminal-SNR schedule: allowed, finite tables.
  const auto one = noise_schedule::from_betas({1.0});
  CHECK(one.alpha_bar(0) == 0.0);
  CHECK(std::isfinite(one.posterior_log_variance_clipped(0)));
}
