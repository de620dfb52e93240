// DDPM and DDIM steps against the float64 reference (tools/make_sampler_fixtures.py), in float and double.
#include <doctest/doctest.h>

#include <cstring>
#include <limits>
#include <map>
#include <string>

#include "diffuse/samplers/ancestral.hpp"
#include "diffuse/samplers/ddim.hpp"
#include "diffuse/random.hpp"
#include "diffuse/timesteps.hpp"
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

// ---------------------------------------------------------------------------------------------------
// The xsimd path against the scalar reference loop. Both evaluate the same IEEE operations in the same
// order without fused multiply-add (the library builds with -ffp-contract=off and never calls fma), so
// the tolerance is zero: every element must have the same bits, for every vector tail length, for the
// chunked multi-threaded pass, and for every branch of the step.

namespace {

template <class T>
std::vector<T> normal_values(std::size_t n, std::uint64_t stream, double scale) {
  std::vector<T> v(n);
  normal_generator(99).fill<T>(v, 0, stream);
  for (auto& e : v) e = static_cast<T>(static_cast<double>(e) * scale);
  return v;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Runs one step on both paths, with and without an x0 buffer, out of place and in place, and checks
// that every result has the same bits. Returns how many comparisons it made.
template <class T, class Sampler, class Options>
int compare_paths(const noise_schedule& schedule, const std::vector<int>& list, Options opt, int k, const sample_shape& shape,
                  std::size_t factor, bool guided) {
  const std::size_t n = shape.numel();
  const auto x = normal_values<T>(n, 1, 1.0), out = normal_values<T>(n * factor, 2, 1.5), z = normal_values<T>(n, 3, 1.0);
  auto g = normal_values<T>(n, 4, 0.1);
  if (!guided) g.clear();
  std::vector<std::vector<T>> results;
  for (bool vectorize : {false, true}) {
    opt.vectorize = vectorize;
    const Sampler sampler(schedule, list, opt);
    std::vector<T> xp(n), x0(n), xp_no_x0(n), in_place = x;
    sampler.template step<T>(k, {.x_t = x, .model_output = out, .noise = z, .x_prev = xp, .x0 = x0, .guidance_gradient = g}, shape);
    sampler.template step<T>(k, {.x_t = x, .model_output = out, .noise = z, .x_prev = xp_no_x0, .guidance_gradient = g}, shape);
    sampler.template step<T>(k, {.x_t = in_place, .model_output = out, .noise = z, .x_prev = in_place, .guidance_gradient = g}, shape);
    CHECK(same_bits(xp, xp_no_x0));
    CHECK(same_bits(xp, in_place));
    results.push_back(xp);
    results.push_back(x0);
    // Generated noise (the step draws it a piece at a time) gives the bits of the same numbers passed as a
    // buffer filled by fill_batch, on every path: the fused pass, x̂0 output, guidance, thresholding and
    // the learned variance, in place or not.
    const normal_generator gen(99);
    std::vector<T> zg(n), from_buffer(n), generated(n), x0_buffer(n), x0_generated(n), generated_in_place = x;
    fill_batch<T>(gen, zg, shape.batch, 5, 7);
    const generated_noise source{.generator = &gen, .first_sample = 5, .stream = 7};
    sampler.template step<T>(k, {.x_t = x, .model_output = out, .noise = zg, .x_prev = from_buffer, .x0 = x0_buffer, .guidance_gradient = g}, shape);
    sampler.template step<T>(k, {.x_t = x, .model_output = out, .x_prev = generated, .x0 = x0_generated, .guidance_gradient = g, .generated = source}, shape);
    CHECK(same_bits(from_buffer, generated));
    CHECK(same_bits(x0_buffer, x0_generated));
    sampler.template step<T>(k, {.x_t = x, .model_output = out, .noise = zg, .x_prev = from_buffer, .guidance_gradient = g}, shape);
    sampler.template step<T>(k, {.x_t = generated_in_place, .model_output = out, .x_prev = generated_in_place, .guidance_gradient = g, .generated = source}, shape);
    CHECK(same_bits(from_buffer, generated_in_place));
  }
  CHECK(same_bits(results[0], results[2]));
  CHECK(same_bits(results[1], results[3]));
  return 1;
}

const std::vector<sample_shape> path_shapes = {{1, 1, 1}, {1, 1, 7}, {2, 3, 5}, {1, 2, 33}, {3, 1, 1000}, {2, 3, 12345}};

}  // namespace

TEST_CASE_TEMPLATE("the vector DDPM step gives the scalar reference's bits", T, float, double) {
  const auto schedule = noise_schedule::cosine(1000);
  const auto list = make_timesteps(1000, 20, timestep_spacing::trailing);
  int n = 0;
  for (const auto& shape : path_shapes)
    for (auto pred : {prediction_type::epsilon, prediction_type::sample, prediction_type::v_prediction, prediction_type::previous_x})
      for (auto var : {variance_type::fixed_small, variance_type::fixed_large, variance_type::learned_range})
        for (int proc = 0; proc < 3; ++proc)
          for (bool guided : {false, true})
            for (int k : {0, 19}) {
              ddpm_options opt{.prediction = pred, .variance = var};
              if (proc == 1) opt.processing.clip_range = 1.0;
              if (proc == 2) opt.processing.threshold = dynamic_threshold{.ratio = 0.9, .max_value = 1.5};
              INFO("shape ", shape.batch, "x", shape.channels, "x", shape.spatial, " pred ", static_cast<int>(pred), " var ",
                   static_cast<int>(var), " proc ", proc, " guided ", guided, " k ", k);
              n += compare_paths<T, ddpm_sampler>(schedule, list, opt, k, shape, var == variance_type::learned_range ? 2 : 1, guided);
            }
  CHECK(n == 6 * 4 * 3 * 3 * 2 * 2);
}

TEST_CASE_TEMPLATE("the vector DDIM step and inversion give the scalar reference's bits", T, float, double) {
  const auto schedule = noise_schedule::linear(1000);
  const auto list = make_timesteps(1000, 25, timestep_spacing::leading, 1);
  int n = 0;
  for (const auto& shape : path_shapes)
    for (auto pred : {prediction_type::epsilon, prediction_type::sample, prediction_type::v_prediction})
      for (double eta : {0.0, 0.7})
        for (int proc = 0; proc < 3; ++proc)
          for (bool clipped_eps : {false, true})
            for (bool guided : {false, true}) {
              ddim_options opt{.prediction = pred, .eta = eta, .use_clipped_model_output = clipped_eps};
              if (proc == 1) opt.processing.clip_range = 1.0;
              if (proc == 2) opt.processing.threshold = dynamic_threshold{.ratio = 0.9, .max_value = 1.5};
              n += compare_paths<T, ddim_sampler>(schedule, list, opt, 3, shape, 1, guided);
            }
  CHECK(n == 6 * 3 * 2 * 3 * 2 * 2);
  for (const auto& shape : path_shapes) {
    const auto x = normal_values<T>(shape.numel(), 1, 1.0), out = normal_values<T>(shape.numel(), 2, 1.0);
    std::vector<T> scalar(x.size()), vector(x.size());
    ddim_inversion(schedule, list, {.prediction = prediction_type::v_prediction, .vectorize = false}).step<T>(4, x, out, scalar, shape);
    ddim_inversion(schedule, list, {.prediction = prediction_type::v_prediction}).step<T>(4, x, out, vector, shape);
    CHECK(same_bits(scalar, vector));
  }
}

// ---------------------------------------------------------------------------------------------------
// Non-finite detection.

TEST_CASE_TEMPLATE("a NaN or Inf in the model output or the state raises with the step, timestep, item and element", T, float, double) {
  const auto schedule = noise_schedule::linear(1000);
  const auto list = make_timesteps(1000, 10, timestep_spacing::leading);  // 900, 800, ..., 0
  const sample_shape shape{3, 2, 50};  // 100 elements per item: the bad ones sit in a vector body and a tail
  const std::size_t n = shape.numel();
  const auto clean_x = normal_values<T>(n, 1, 1.0), clean_out = normal_values<T>(2 * n, 2, 1.0), z = normal_values<T>(n, 3, 1.0);
  for (bool vectorize : {true, false})
    for (int proc = 0; proc < 2; ++proc)  // the fused pass, and the per-item passes of thresholding
      for (std::size_t element : {std::size_t{5}, std::size_t{97}}) {
        x0_processing processing;
        if (proc == 1) processing.threshold = dynamic_threshold{};
        const ddim_sampler ddim(schedule, list, {.eta = 0.5, .processing = processing, .vectorize = vectorize});
        const ddpm_sampler ddpm(schedule, list, {.processing = processing, .vectorize = vectorize});
        const ddpm_sampler learned(schedule, list, {.variance = variance_type::learned_range, .processing = processing, .vectorize = vectorize});
        std::vector<T> xp(n);
        INFO("vectorize ", vectorize, " processing ", proc, " element ", element);

        auto out = clean_out;
        out[1 * 100 + element] = std::numeric_limits<T>::quiet_NaN();
        const std::string where = "batch item 1, element " + std::to_string(element);
        test::check_error([&] { ddim.step<T>(2, {.x_t = clean_x, .model_output = std::span(out).first(n), .noise = z, .x_prev = xp}, shape); },
                          {"[diffuse.numeric]", "NaN in the model output at step 2 (t = 700), " + where, "check_finite = false"});
        test::check_error([&] { ddpm.step<T>(4, {.x_t = clean_x, .model_output = std::span(out).first(n), .noise = z, .x_prev = xp}, shape); },
                          {"NaN in the model output at step 4 (t = 500), " + where});
        // The learned variance channels (the second C of each item) are model output too.
        auto learned_out = clean_out;
        learned_out[2 * 100 + 100 + element] = std::numeric_limits<T>::infinity();
        test::check_error([&] { learned.step<T>(1, {.x_t = clean_x, .model_output = learned_out, .noise = z, .x_prev = xp}, shape); },
                          {"+Inf in the model output at step 1 (t = 800), batch item 1, element " + std::to_string(100 + element)});

        auto x = clean_x;
        x[2 * 100 + element] = -std::numeric_limits<T>::infinity();
        test::check_error([&] { ddim.step<T>(0, {.x_t = x, .model_output = std::span(clean_out).first(n), .noise = z, .x_prev = xp}, shape); },
                          {"-Inf in the sampler state x_t at step 0 (t = 900), batch item 2, element " + std::to_string(element)});
        std::vector<T> in_place = x;
        test::check_error([&] { ddpm.step<T>(0, {.x_t = in_place, .model_output = std::span(clean_out).first(n), .noise = z, .x_prev = in_place}, shape); },
                          {"in the sampler state (x_t, stepped in place) at step 0"});

        // Turned off, the values go through: the NaN reaches x_prev.
        const ddim_sampler unchecked(schedule, list, {.eta = 0.5, .processing = processing, .check_finite = false, .vectorize = vectorize});
        if (proc == 0) {
          unchecked.step<T>(2, {.x_t = clean_x, .model_output = std::span(out).first(n), .noise = z, .x_prev = xp}, shape);
          CHECK(std::isnan(xp[100 + element]));
        }
      }
  // Finite inputs the step itself overflows: x̂0 = x_t/√ᾱ at t = 900 exceeds the float range.
  if constexpr (std::is_same_v<T, float>) {
    const ddim_sampler ddim(schedule, list);
    std::vector<T> x(n, 1.0f), out(n, 0.0f), xp(n);
    x[7] = 3e38f;
    test::check_error([&] { ddim.step<T>(0, {.x_t = x, .model_output = out, .x_prev = xp}, shape); },
                      {"+Inf in the sampler state x_prev computed by the step from finite inputs at step 0 (t = 900), batch item 0, element 7"});
  }
}
