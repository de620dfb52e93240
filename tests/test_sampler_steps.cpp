// DDPM and DDIM steps against the float64 reference (tools/make_sampler_fixtures.py), in float and double.
#include <doctest/doctest.h>

#include <map>

#include "diffuse/ancestral.hpp"
#include "diffuse/ddim.hpp"
#include "support.hpp"

using namespace diffuse;

namespace {

struct fixture_data {
  nlohmann::json json = test::fixture("sampler_steps.json");
  std::map<std::string, noise_schedule> schedules{
      {"linear", noise_schedule::linear(1000)},
      {"cosine", noise_schedule::cosine(1000)},
      {"linear_zero_snr", noise_schedule::linear(1000).rescaled_zero_terminal_snr()}};
  std::vector<int> list(const std::string& name) const {
    if (name == "full") {
      std::vector<int> all(1000);
      for (int t = 0; t < 1000; ++t) all[static_cast<std::size_t>(t)] = 999 - t;
      return all;
    }
    return json["lists"][name].get<std::vector<int>>();
  }
  x0_processing processing(const std::string& p) const {
    x0_processing proc;
    if (p == "clip") proc.clip_range = json["clip_range"].get<double>();
    if (p == "threshold") proc.threshold = dynamic_threshold{json["threshold"]["ratio"], json["threshold"]["max_value"]};
    return proc;
  }
};

const fixture_data& data() {
  static const fixture_data d;
  return d;
}

template <class T>
std::vector<T> as(const nlohmann::json& j) {
  std::vector<T> v;
  for (const auto& e : j) v.push_back(static_cast<T>(e.get<double>()));
  return v;
}

// Tolerances. double: the reference is float64 and computes the same formulas with coefficients
// from the same tables; 1e-12 relative (SPEC §11 definition) covers different operation order.
// float: inputs are rounded to float and the step runs in float arithmetic with double coefficients
// rounded once; a handful of float operations per element, amplified by at most 1/√ᾱ ≤ 1e2 for
// x̂0 from ε at the noisiest steps → 2e-5 relative to the tensor scale.
template <class T>
constexpr double tolerance = std::is_same_v<T, double> ? 1e-12 : 2e-5;

}  // namespace

TEST_CASE_TEMPLATE("DDPM ancestral steps match the reference for every prediction, variance and processing", T, float, double) {
  const auto& d = data();
  const auto& j = d.json;
  const sample_shape shape{j["shape"]["batch"], j["shape"]["channels"], j["shape"]["spatial"]};
  const auto x = as<T>(j["x_t"]), z = as<T>(j["noise"]);
  int n = 0;
  for (const auto& c : j["cases"]) {
    if (c["sampler"] != "ddpm") continue;
    const std::string var = c["variance"];
    ddpm_options opt{parse_prediction_type(c["prediction"].get<std::string>()), parse_variance_type(var),
                     d.processing(c["processing"])};
    const ddpm_sampler sampler(d.schedules.at(c["schedule"]), d.list(c["list"]), opt);
    const auto out = as<T>(var == "learned" ? j["model_output_learned_sigma2"]
                           : var.starts_with("learned") ? j["model_output_learned"] : j["model_output"]);
    std::vector<T> xp(x.size()), x0(x.size());
    const int k = c["k"];
    sampler.template step<T>(k, {.x_t = x, .model_output = out, .noise = z, .x_prev = xp, .x0 = x0}, shape);
    INFO(c["schedule"], " ", c["list"], " k=", k, " ", c["prediction"], " ", var, " ", c["processing"]);
    CHECK(test::worst_relative(xp, c["x_prev"].get<std::vector<double>>(), tolerance<T>) <= 1.0);
    CHECK(test::worst_relative(x0, c["x0"].get<std::vector<double>>(), tolerance<T>) <= 1.0);
    ++n;
  }
  CHECK(n > 500);
}

TEST_CASE_TEMPLATE("DDIM steps match the reference for every eta, final alpha, epsilon source and processing", T, float, double) {
  const auto& d = data();
  const auto& j = d.json;
  const sample_shape shape{j["shape"]["batch"], j["shape"]["channels"], j["shape"]["spatial"]};
  const auto x = as<T>(j["x_t"]), z = as<T>(j["noise"]), out = as<T>(j["model_output"]);
  int n = 0;
  for (const auto& c : j["cases"]) {
    if (c["sampler"] != "ddim") continue;
    ddim_options opt{.prediction = parse_prediction_type(c["prediction"].get<std::string>()),
                     .eta = c["eta"],
                     .set_alpha_to_one = c["set_alpha_to_one"],
                     .use_clipped_model_output = c["use_clipped_model_output"],
                     .processing = d.processing(c["processing"])};
    const ddim_sampler sampler(d.schedules.at(c["schedule"]), d.list(c["list"]), opt);
    std::vector<T> xp(x.size()), x0(x.size());
    const int k = c["k"];
    sampler.template step<T>(k, {.x_t = x, .model_output = out, .noise = z, .x_prev = xp, .x0 = x0}, shape);
    INFO(c["schedule"], " ", c["list"], " k=", k, " ", c["prediction"], " eta=", c["eta"], " one=", c["set_alpha_to_one"],
         " clipped_eps=", c["use_clipped_model_output"], " ", c["processing"]);
    CHECK(test::worst_relative(xp, c["x_prev"].get<std::vector<double>>(), tolerance<T>) <= 1.0);
    CHECK(test::worst_relative(x0, c["x0"].get<std::vector<double>>(), tolerance<T>) <= 1.0);
    ++n;
  }
  CHECK(n > 500);
}

TEST_CASE("DDIM steps to the next list entry; stepping to t - T/N would reproduce diffusers there") {
  // diffuse deliberately differs from diffusers' DDIM on linspace and uneven trailing lists (SPEC §5).
  const auto& d = data();
  const auto& j = d.json;
  const sample_shape shape{j["shape"]["batch"], j["shape"]["channels"], j["shape"]["spatial"]};
  const auto x = as<double>(j["x_t"]), out = as<double>(j["model_output"]);
  int differing = 0;
  for (const auto& c : j["ddim_prev_timestep_difference"]) {
    const auto list = d.list(c["list"]);
    const ddim_sampler ours(d.schedules.at("linear"), list);
    std::vector<double> xp(x.size());
    const int k = c["k"];
    ours.step<double>(k, {.x_t = x, .model_output = out, .x_prev = xp}, shape);
    CHECK(test::worst_relative(xp, c["x_prev_ours"].get<std::vector<double>>(), 1e-12) <= 1.0);
    // A two-entry list (t, t − ⌊T/N⌋) makes our sampler take diffusers' step.
    const int t = c["t"], p = c["prev_diffusers"];
    if (p >= 0 && p < t) {
      const ddim_sampler theirs(d.schedules.at("linear"), {t, p});
      theirs.step<double>(0, {.x_t = x, .model_output = out, .x_prev = xp}, shape);
      CHECK(test::worst_relative(xp, c["x_prev_diffusers"].get<std::vector<double>>(), 1e-12) <= 1.0);
    }
    if (c["prev_ours"] != c["prev_diffusers"]) ++differing;
  }
  CHECK(differing > 0);
}
