// diffusers-exact mode against diffusers' own DDPMScheduler and DDIMScheduler (the ddpm / ddim cases of
// tests/fixtures/solvers/, made by tools/make_solver_fixtures.py from diffusers 58eb52c): the float32
// tables bit for bit, DDIM's t − ⌊T/N⌋ previous timestep, DDPM's noise on a last step with t > 0; and
// that the default (correct) mode differs from diffusers exactly on those cases.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "diffuse/diffusers_exact.hpp"
#include "diffuse/samplers/ancestral.hpp"
#include "diffuse/samplers/ddim.hpp"
#include "support.hpp"

namespace {

using nlohmann::json;

diffuse::noise_schedule schedule_named(const std::string& name) {
  if (name == "scaled_linear") return diffuse::noise_schedule::scaled_linear(1000, 0.00085, 0.012);
  if (name == "cosine") return diffuse::noise_schedule::cosine(1000);
  return diffuse::noise_schedule::linear(1000, 1e-4, 0.02);
}

using test::fake_model;
using test::relative_error;

/// Replays one DDPM or DDIM fixture case; returns the worst relative error of prev_sample over the chain.
/// With `exact`, also checks that diffuse adds noise exactly where diffusers drew it.
template <class Scalar>
double replay(const json& c, bool float32_tables, bool exact) {
  const json& o = c["options"];
  auto schedule = schedule_named(o.value("schedule", "linear"));
  if (float32_tables) schedule = diffuse::diffusers_float32_schedule(schedule);
  const auto& traj = c["trajectory"];
  std::vector<int> ts;
  for (const auto& s : traj) ts.push_back(static_cast<int>(s["timestep"].get<double>()));
  diffuse::x0_processing processing;
  if (o.value("clip_sample", true)) processing.clip_range = o.value("clip_sample_range", 1.0);
  const auto prediction = diffuse::parse_prediction_type(o.value("prediction_type", "epsilon"));
  const diffuse::sample_shape shape{.batch = 2, .channels = 1, .spatial = 3};
  const auto z = c["initial_noise"].get<std::vector<double>>();
  std::vector<Scalar> x(z.begin(), z.end()), out(x.size()), next(x.size()), noise(x.size());
  double worst = 0;
  const auto run = [&](const auto& sampler) {
    for (int k = 0; k < sampler.num_steps(); ++k) {
      const auto& s = traj[static_cast<std::size_t>(k)];
      fake_model<Scalar>(x, sampler.timestep(k), out);
      worst = std::max(worst, relative_error(out, s["model_output"].get<std::vector<double>>()));
      const auto zs = s["noise"].get<std::vector<double>>();
      const bool noisy = sampler.adds_noise(k);
      if (exact && c["family"] == "ddpm") CHECK_MESSAGE(noisy == !zs.empty(), "step " << k << " t = " << sampler.timestep(k));
      if (noisy) REQUIRE(!zs.empty());
      for (std::size_t i = 0; i < zs.size(); ++i) noise[i] = static_cast<Scalar>(zs[i]);
      sampler.template step<Scalar>(k, {.x_t = x, .model_output = out, .noise = noisy ? std::span<const Scalar>(noise) : std::span<const Scalar>(),
                                        .x_prev = next}, shape);
      worst = std::max(worst, relative_error(next, s["prev_sample"].get<std::vector<double>>()));
      x = next;
    }
  };
  if (c["family"] == "ddim") {
    run(diffuse::ddim_sampler(schedule, ts, {.prediction = prediction, .eta = o.value("eta", 0.0),
                                             .set_alpha_to_one = o.value("set_alpha_to_one", true),
                                             .use_clipped_model_output = o.value("use_clipped_model_output", false),
                                             .processing = processing, .diffusers_exact = exact}));
  } else {
    run(diffuse::ddpm_sampler(schedule, ts, {.prediction = prediction, .variance = diffuse::parse_variance_type(o.value("variance_type", "fixed_small")),
                                             .processing = processing, .diffusers_exact = exact}));
  }
  return worst;
}

}  // namespace

TEST_CASE("diffusers_float32_schedule holds diffusers' float32 alphas_cumprod") {
  // cosine: diffusers rounds double betas to float32, as diffuse does: bit for bit. linear and
  // scaled_linear: diffusers' betas come from torch.linspace in float32, whose vectorised kernel rounds
  // some entries an ulp away from the rounded double values; an α = 1 − β that rounds differently then
  // shifts every later ᾱ by an ulp or two. Bound: 1 − ᾱ, the quantity σ near t = 0 is made of, within
  // 1e-6 relative (diffuse's double table is 2.6e-5 to 1e-3 away there).
  const auto fx = test::fixture("solvers/solvers_float32.json");
  for (const auto& [name, values] : fx["alphas_cumprod"].items()) {
    CAPTURE(name);
    const auto expected = values.get<std::vector<double>>();
    const auto s = diffuse::diffusers_float32_schedule(schedule_named(name));
    const auto d = schedule_named(name);
    int differing = 0;
    double worst = 0, worst_double = 0;
    for (int t = 0; t < s.size(); ++t) {
      const double e = expected[static_cast<std::size_t>(t)];
      differing += s.alpha_bar(t) != e;
      worst = std::max(worst, std::abs(s.alpha_bar(t) - e) / (1.0 - e));
      worst_double = std::max(worst_double, std::abs(d.alpha_bar(t) - e) / (1.0 - e));
    }
    if (name == "cosine") CHECK(differing == 0);
    CHECK(worst <= 1e-6);
    CHECK(worst_double > 10 * worst);  // the double table really is farther: what the mode is for
    std::printf("%s: float32 tables differ from diffusers' at %d of 1000 t, 1 - alpha_bar by at most %.3g relative "
                "(double tables: %.3g)\n", name.c_str(), differing, worst, worst_double);
  }
}

TEST_CASE("DDIM and DDPM in diffusers-exact mode follow diffusers; the default deliberately does not") {
  const auto f64 = test::fixture("solvers/solvers_float64.json"), f32 = test::fixture("solvers/solvers_float32.json");
  double worst64 = 0, worst32 = 0, least_default = HUGE_VAL;
  int cases = 0;
  for (std::size_t i = 0; i < f64["cases"].size(); ++i) {
    const auto& c = f64["cases"][i];
    if (c["family"] != "ddpm" && c["family"] != "ddim") continue;
    const std::string name = c["name"];
    CAPTURE(name);
    ++cases;
    // float64 variant, double tables: SPEC §11's 1e-12 (the steps are a few multiply-adds; measured ~1e-15).
    const double e64 = replay<double>(c, false, true);
    CHECK(e64 <= 1e-12);
    worst64 = std::max(worst64, e64);
    // verbatim float32 variant, float path with diffusers' float32 tables: float32 rounding of a few
    // operations per step over up to 10 steps, 1e-5 (about 100 float32 ulps of the state).
    const auto& c32 = f32["cases"][i];
    REQUIRE(c32["name"] == c["name"]);
    const double e32 = replay<float>(c32, true, true);
    CHECK(e32 <= 1e-5);
    worst32 = std::max(worst32, e32);
    // Every case was chosen where the rules differ (DDIM on linspace / uneven trailing / offset lists is
    // t − ⌊T/N⌋; DDPM on trailing / offset lists ends with t > 0): the default mode must differ visibly.
    // Where they agree: DDIM's rules on leading lists and on trailing lists when N divides T; DDPM's on
    // lists that end at t = 0. ddpm_trailing (fixed_small) differs only by diffusers' last-step noise of
    // σ = √1e-20 = 1e-10.
    const bool same_rule = name == "ddim_leading_offset" || name == "ddim_cosine_trailing" || name == "ddpm_cosine_leading" ||
                           name == "ddpm_linspace_v";
    const double e_default = replay<double>(c, false, false);
    if (same_rule) {
      CHECK(e_default <= 1e-12);
    } else if (name == "ddpm_trailing") {
      CHECK(e_default > 1e-11);
    } else {
      CHECK(e_default > 1e-3);
      least_default = std::min(least_default, e_default);
    }
  }
  CHECK(cases == 13);
  CHECK(least_default < HUGE_VAL);
  std::printf("diffusers-exact DDPM / DDIM (%d cases): float64 %.3g (bound 1e-12), float32 with float32 tables %.3g (bound 1e-5); "
              "default mode differs by at least %.3g where the rules differ\n", cases, worst64, worst32, least_default);
}

TEST_CASE("diffusers-exact DDIM steps to t - T/N, DDPM adds noise on a last t > 0") {
  const auto s = diffuse::noise_schedule::linear(1000);
  const auto list = diffuse::make_timesteps(1000, 7, diffuse::timestep_spacing::linspace);  // 999, 832, 666, 500, 333, 167, 0
  const diffuse::ddim_sampler exact(s, list, {.diffusers_exact = true}), correct(s, list);
  CHECK(exact.coefficients(0).prev == 999 - 142);
  CHECK(correct.coefficients(0).prev == list[1]);
  CHECK(exact.coefficients(6).prev == -1);
  const auto trailing = diffuse::make_timesteps(1000, 10, diffuse::timestep_spacing::trailing);  // ..., 99
  const diffuse::ddpm_sampler large(s, trailing, {.variance = diffuse::variance_type::fixed_large, .diffusers_exact = true});
  CHECK(large.adds_noise(9));
  CHECK(large.coefficients(9).variance == doctest::Approx(1.0 - s.alpha_bar(99)).epsilon(1e-15));
  const diffuse::ddpm_sampler small(s, trailing, {.diffusers_exact = true});
  CHECK(small.coefficients(9).variance == 1e-20);
  CHECK_FALSE(diffuse::ddpm_sampler(s, trailing).adds_noise(9));
  // A last t = 0 adds no noise in either mode.
  CHECK_FALSE(diffuse::ddpm_sampler(s, {999, 500, 0}, {.diffusers_exact = true}).adds_noise(2));
}
