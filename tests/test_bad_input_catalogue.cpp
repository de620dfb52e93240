// A catalogue of invalid inputs across the whole public API. Every entry must raise diffuse::error whose
// message holds a distinctive fragment saying what was wrong; anything else (another exception type,
// std::bad_alloc, silent acceptance, a crash under the sanitizers) fails the entry. Each entry is an
// input a user or a damaged / hostile file can really produce.
#include <doctest/doctest.h>

#include <bit>
#include <climits>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <new>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <typeinfo>
#include <vector>

#include "diffuse/ddpm.hpp"
#include "diffuse/gaussian_mixture.hpp"
#include "diffuse/img2img.hpp"
#include "diffuse/io/diffusers_folder.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/io/scheduler_config.hpp"
#include "diffuse/nn/unet.hpp"
#include "diffuse/nn/unet_config.hpp"
#include "diffuse/sample.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <sys/stat.h>
#endif

namespace {

using bytes = std::vector<unsigned char>;
constexpr double not_a_number = std::numeric_limits<double>::quiet_NaN();

/// Runs f and checks that it throws diffuse::error whose what() contains every fragment. Any other
/// outcome is reported with what happened instead, so a regression says which input broke and how.
template <class F>
void expect_error(const std::string& input, F&& f, std::initializer_list<std::string> fragments) {
  INFO("input: " << input);
  try {
    f();
    FAIL_CHECK("accepted silently; expected a diffuse::error containing \"" << *fragments.begin() << "\"");
  } catch (const diffuse::error& e) {
    const std::string what = e.what();
    for (const std::string& frag : fragments)
      CHECK_MESSAGE(what.find(frag) != std::string::npos, "message: " << what << "\n  missing: " << frag);
  } catch (const std::bad_alloc&) {
    FAIL_CHECK("threw std::bad_alloc; expected a diffuse::error before any large allocation");
  } catch (const std::exception& e) {
    FAIL_CHECK("threw " << typeid(e).name() << " (" << e.what() << "); expected a diffuse::error");
  }
}

/// A safetensors image: 8-byte little-endian header length (`claimed`, or the header's size), header, data.
bytes st_file(const std::string& header, const bytes& data = {}, std::uint64_t claimed = 0) {
  bytes out;
  const std::uint64_t n = claimed ? claimed : header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<unsigned char>(n >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

diffuse::safetensors_file st_parse(const bytes& b) { return diffuse::safetensors_file::from_bytes(b, "catalogue.safetensors"); }

/// One header entry: "name": {"dtype": .., "shape": .., "data_offsets": ..}. Built by appending, since
/// GCC 12 reports a false -Wrestrict on "literal" + std::string chains.
std::string st_entry(const std::string& name, const std::string& dtype, const std::string& shape, const std::string& offsets) {
  std::string s = "\"";
  s += name;
  s += "\":{\"dtype\":\"";
  s += dtype;
  s += "\",\"shape\":";
  s += shape;
  s += ",\"data_offsets\":";
  s += offsets;
  s += "}";
  return s;
}

/// A header object from entries.
std::string st_header(std::initializer_list<std::string> entries) {
  std::string s = "{";
  for (const auto& e : entries) {
    if (s.size() > 1) s += ",";
    s += e;
  }
  s += "}";
  return s;
}

std::filesystem::path temp_file(const std::string& name, const bytes& content) {
  const auto path = std::filesystem::temp_directory_path() / ("diffuse_catalogue_" + name);
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(content.data()), static_cast<std::streamsize>(content.size()));
  return path;
}

/// A small valid UNet2DModel config (two levels, attention in the second) the config cases perturb:
/// `extra` (", \"key\": value, ...") adds keys or replaces the base's (the readers refuse a key twice).
std::string unet_json(const std::string& extra = "") {
  nlohmann::json base = nlohmann::json::parse(R"({"_class_name": "UNet2DModel", "sample_size": 8, "in_channels": 1, "out_channels": 1,
             "block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8, "attention_head_dim": 8,
             "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"]})");
  if (!extra.empty()) base.update(nlohmann::json::parse("{" + extra.substr(extra.find(',') + 1) + "}"));
  return base.dump();
}

const diffuse::noise_schedule& schedule1000() {
  static const auto s = diffuse::noise_schedule::linear(1000);
  return s;
}

}  // namespace

TEST_CASE("catalogue: noise schedule parameters") {
  using diffuse::noise_schedule;
  expect_error("linear(T = 0)", [] { noise_schedule::linear(0); }, {"[diffuse.schedule]", "num_train_timesteps = 0"});
  // 2^31 − 1 timesteps would need 120 GB of tables: refused by value, not by std::bad_alloc.
  expect_error("cosine(T = INT_MAX)", [] { noise_schedule::cosine(INT_MAX); }, {"[diffuse.schedule]", "expected at most 1000000"});
  expect_error("linear(beta_start = 0)", [] { noise_schedule::linear(1000, 0.0, 0.02); }, {"beta_start = 0", "outside (0, 1]"});
  expect_error("scaled_linear(beta_end = NaN)", [] { noise_schedule::scaled_linear(1000, 0.00085, not_a_number); }, {"beta_end = nan"});
  expect_error("sigmoid(beta_end = 1.5)", [] { noise_schedule::sigmoid(100, 1e-4, 1.5); }, {"beta_end = 1.5"});
  expect_error("cosine(s = -0.1)", [] { noise_schedule::cosine(1000, -0.1); }, {"cosine offset s = -0.1"});
  expect_error("cosine(max_beta = 0)", [] { noise_schedule::cosine(1000, 0.008, 0.0); }, {"max_beta = 0"});
  expect_error("from_betas({})", [] { noise_schedule::from_betas({}); }, {"beta list is empty"});
  expect_error("from_betas with NaN", [] { noise_schedule::from_betas({0.1, not_a_number, 0.2}); }, {"beta[1] = nan"});
  expect_error("from_betas with beta = 1 before the end", [] { noise_schedule::from_betas({0.1, 1.0, 0.2}); },
               {"beta[1] = 1 before the last timestep"});
  expect_error("from_alphas_cumprod increasing", [] { noise_schedule::from_alphas_cumprod({0.9, 0.95}); },
               {"alpha_bar[1] = 0.95 after 0.9", "strictly decreasing"});
  expect_error("linear(T = 80000): alpha_bar underflows", [] { noise_schedule::linear(80000); },
               {"[diffuse.schedule]", "underflows the double range", "fewer timesteps or smaller betas"});
  expect_error("linear(beta_start = 1e-20): alpha_bar_0 = 1", [] { noise_schedule::linear(1000, 1e-20, 0.02); },
               {"alpha_bar[0] = 1", "divides by 1 - alpha_bar = 0"});
  expect_error("from_betas with a beta below alpha_bar's resolution", [] { noise_schedule::from_betas({0.1, 1e-20}); },
               {"alpha_bar[1]", "strictly decreasing"});
  expect_error("zero-SNR rescale of T = 1", [] { noise_schedule::linear(1).rescaled_zero_terminal_snr(); }, {"needs T >= 2"});
  expect_error("alpha_bar(T)", [] { (void)schedule1000().alpha_bar(1000); }, {"[diffuse.timesteps]", "timestep 1000 is out of range"});
}

TEST_CASE("catalogue: timestep lists and respacing strings") {
  using diffuse::timestep_spacing;
  expect_error("make_timesteps(N > T)", [] { diffuse::make_timesteps(100, 101, timestep_spacing::leading); },
               {"num_inference_steps = 101", "1 <= N <= 100"});
  expect_error("make_timesteps(N = 0)", [] { diffuse::make_timesteps(1000, 0, timestep_spacing::linspace); }, {"num_inference_steps = 0"});
  expect_error("steps_offset with trailing spacing", [] { diffuse::make_timesteps(1000, 10, timestep_spacing::trailing, 1); },
               {"only meaningful with leading spacing"});
  // The offset is checked before it is added: INT_MAX would overflow k·r + offset (undefined behaviour).
  expect_error("leading steps_offset = INT_MAX", [] { diffuse::make_timesteps(1000, 10, timestep_spacing::leading, INT_MAX); },
               {"steps_offset = 2147483647", "expected every timestep < 1000"});
  expect_error("negative steps_offset", [] { diffuse::make_timesteps(1000, 10, timestep_spacing::leading, -1); }, {"steps_offset = -1"});
  expect_error("custom list empty", [] { diffuse::custom_timesteps(1000, {}); }, {"timestep list is empty"});
  expect_error("custom list ascending", [] { diffuse::custom_timesteps(1000, {10, 20}); }, {"entry 1 = 20 follows 10", "strictly descending"});
  expect_error("custom list with a repeat", [] { diffuse::custom_timesteps(1000, {20, 20}); }, {"entry 1 = 20 follows 20"});
  expect_error("custom list past T", [] { diffuse::custom_timesteps(1000, {1000, 5}); }, {"entry 0 = 1000 is out of range"});
  expect_error("respace \"\"", [] { diffuse::respace(1000, ""); }, {"respacing string \"\"", "whole number"});
  expect_error("respace \"ddim\"", [] { diffuse::respace(1000, "ddim"); }, {"respacing string \"ddim\""});
  expect_error("respace \"ddim0\"", [] { diffuse::respace(1000, "ddim0"); }, {"no integer stride gives exactly 0"});
  expect_error("respace \"ddim1001\"", [] { diffuse::respace(1000, "ddim1001"); }, {"no integer stride gives exactly 1001"});
  expect_error("respace \"ddim99999999999999999999\"", [] { diffuse::respace(1000, "ddim99999999999999999999"); },
               {"\"99999999999999999999\" where a whole number was expected"});
  expect_error("respace \"10,,20\"", [] { diffuse::respace(1000, "10,,20"); }, {"has \"\" where a whole number"});
  expect_error("respace \"10,-5\"", [] { diffuse::respace(1000, "10,-5"); }, {"negative count -5"});
  expect_error("respace \" 10\"", [] { diffuse::respace(1000, " 10"); }, {"has \" 10\" where a whole number"});
  expect_error("respace count above its section", [] { diffuse::respace(10, "3,7"); }, {"section 1 has 5 timesteps but asks for 7"});
  expect_error("respace selecting nothing", [] { diffuse::respace(1000, "0,0"); }, {"selects no timestep"});
  expect_error("respace with more sections than T", [] { diffuse::respace(3, "1,1,1,1"); }, {"has 4 sections; expected at most T = 3"});
  expect_error("respace with T = INT_MAX", [] { diffuse::respace(INT_MAX, "ddim2"); }, {"expected at most 1000000"});
}

TEST_CASE("catalogue: tensor shapes and sampler options") {
  const auto& sched = schedule1000();
  const auto ts = diffuse::make_timesteps(1000, 10, diffuse::timestep_spacing::trailing);
  const diffuse::ddim_sampler ddim(sched, ts, {.eta = 1.0});
  const diffuse::sample_shape shape{.batch = 2, .channels = 3, .spatial = 4};
  std::vector<float> x(shape.numel()), out(shape.numel()), noise(shape.numel()), prev(shape.numel());

  expect_error("x_t one element short", [&] {
    ddim.step<float>(0, {.x_t = std::span<const float>(x).first(23), .model_output = out, .noise = noise, .x_prev = prev}, shape);
  }, {"[diffuse.shape]", "x_t has 23 elements", "= 24"});
  expect_error("model output with 2C channels for a C-channel sampler", [&] {
    std::vector<float> out2(2 * shape.numel());
    ddim.step<float>(0, {.x_t = x, .model_output = out2, .noise = noise, .x_prev = prev}, shape);
  }, {"model output has 6 channels; expected 3"});
  expect_error("noisy step without noise", [&] { ddim.step<float>(0, {.x_t = x, .model_output = out, .x_prev = prev}, shape); },
               {"noise has 0 elements"});
  expect_error("batch 0", [&] {
    ddim.step<float>(0, {.x_t = x, .model_output = out, .noise = noise, .x_prev = prev}, {.batch = 0, .channels = 3, .spatial = 4});
  }, {"has no elements"});
  expect_error("x_prev aliasing x_t shifted by one element", [&] {
    std::vector<float> buf(shape.numel() + 1);
    ddim.step<float>(0, {.x_t = std::span<const float>(buf).first(24), .model_output = out, .noise = noise,
                         .x_prev = std::span<float>(buf).subspan(1)}, shape);
  }, {"[diffuse.argument]", "x_prev overlaps x_t shifted by 1 elements", "(in place) or a separate buffer"});
  expect_error("x_prev in the model output", [&] {
    ddim.step<float>(0, {.x_t = x, .model_output = out, .noise = noise, .x_prev = out}, shape);
  }, {"x_prev shares memory with the model output"});
  expect_error("x0 output over x_t", [&] {
    ddim.step<float>(0, {.x_t = x, .model_output = out, .noise = noise, .x_prev = prev, .x0 = x}, shape);
  }, {"x0 shares memory with x_t"});
  expect_error("sample() with batch 0 refuses before calling the model", [&] {
    bool called = false;
    std::vector<float> none;
    diffuse::sample(ddim, [&](std::span<const float>, int, std::span<float>) { called = true; }, std::span<float>(none),
                    {.batch = 0, .channels = 3, .spatial = 4});
    CHECK(!called);
  }, {"[diffuse.shape]", "has no elements"});
  expect_error("img2img_noise at t = -1", [&] {
    diffuse::img2img_noise<float>(sched, -1, x, std::span<float>(prev), shape, 0);
  }, {"[diffuse.timesteps]", "img2img timestep -1 is out of range"});
  expect_error("img2img_noise into x0 itself", [&] {
    diffuse::img2img_noise<float>(sched, 10, x, std::span<float>(x), shape, 0);
  }, {"x shares memory with x0"});
  // (2^62 + 1)·4 wraps to 4 in size_t: without the saturating product a 4-element buffer would pass the size
  // check and the step would walk 2^62 items past its end.
  expect_error("shape whose element count overflows size_t", [&] {
    const diffuse::sample_shape huge{.batch = (std::size_t{1} << 62) + 1, .channels = 4, .spatial = 1};
    std::vector<float> four(4);
    ddim.step<float>(0, {.x_t = four, .model_output = four, .noise = four, .x_prev = four}, huge);
  }, {"[diffuse.shape]", "x_t has 4 elements"});
  expect_error("add_noise with the overflowing shape", [&] {
    std::vector<float> four(4);
    const std::vector<int> t(1, 0);
    diffuse::add_noise<float>(sched, four, four, t, {.batch = 1, .channels = std::size_t{1} << 32, .spatial = std::size_t{1} << 32}, four);
  }, {"more elements than size_t can count"});
  expect_error("step index past the list", [&] { (void)ddim.coefficients(10); }, {"step index 10 is out of range"});
  expect_error("DDIM eta < 0", [&] { (void)diffuse::ddim_sampler(sched, ts, {.eta = -0.5}); }, {"[diffuse.sampler]", "eta = -0.5"});
  expect_error("DDIM eta NaN", [&] { (void)diffuse::ddim_sampler(sched, ts, {.eta = not_a_number}); }, {"eta = nan"});
  expect_error("DDIM with previous_x", [&] { (void)diffuse::ddim_sampler(sched, ts, {.prediction = diffuse::prediction_type::previous_x}); },
               {"got previous_x"});
  expect_error("epsilon prediction on a zero-terminal-SNR schedule", [&] {
    (void)diffuse::ddpm_sampler(sched.rescaled_zero_terminal_snr(), ts, {.prediction = diffuse::prediction_type::epsilon});
  }, {"[diffuse.numeric]", "alpha_bar = 0"});
  expect_error("sampler list past the schedule", [&] { (void)diffuse::ddpm_sampler(diffuse::noise_schedule::linear(100), ts); },
               {"entry 0 = 999 is out of range"});
  expect_error("clip_range = 0", [&] { (void)diffuse::ddpm_sampler(sched, ts, {.processing = {.clip_range = 0.0}}); }, {"clip_range = 0"});
  expect_error("threshold ratio = 0", [&] {
    (void)diffuse::ddim_sampler(sched, ts, {.processing = {.threshold = diffuse::dynamic_threshold{.ratio = 0.0}}});
  }, {"ratio = 0 is outside (0, 1]"});
  expect_error("threshold max_value = 0.5", [&] {
    (void)diffuse::ddim_sampler(sched, ts, {.processing = {.threshold = diffuse::dynamic_threshold{.ratio = 0.9, .max_value = 0.5}}});
  }, {"max_value = 0.5"});
  expect_error("DDIM inversion with eta", [&] { (void)diffuse::ddim_inversion(sched, ts, {.eta = 0.3}); }, {"eta = 0.3"});
  expect_error("DDIM inversion of one step", [&] { (void)diffuse::ddim_inversion(sched, {500}); }, {"at least 2 entries"});
  expect_error("posterior with prev >= t", [&] { diffuse::posterior(sched, 10, 10); }, {"previous timestep 10 of t = 10"});
  expect_error("unknown prediction type", [] { diffuse::parse_prediction_type("noise"); }, {"prediction_type \"noise\" is unknown"});
  expect_error("fixed_large_log", [] { diffuse::parse_variance_type("fixed_large_log"); }, {"produces NaN"});
  expect_error("add_noise with a timestep per item missing", [&] {
    const std::vector<int> t{5};
    diffuse::add_noise<float>(sched, x, noise, t, shape, out);
  }, {"got 1 timesteps for a batch of 2"});
  expect_error("add_noise with t = -1", [&] {
    const std::vector<int> t{5, -1};
    diffuse::add_noise<float>(sched, x, noise, t, shape, out);
  }, {"timestep -1 of batch item 1"});
  expect_error("sample() start_index past the list", [&] {
    diffuse::sample(ddim, [](std::span<const float>, int, std::span<float> o) { std::fill(o.begin(), o.end(), 0.f); },
                    std::span<float>(x), shape, {.start_index = 10});
  }, {"start_index = 10 is out of range"});
  expect_error("sample() with x one item short", [&] {
    std::vector<float> short_x(5);
    diffuse::sample(ddim, [](std::span<const float>, int, std::span<float>) {}, std::span<float>(short_x), shape);
  }, {"x has 5 elements"});
  expect_error("img2img strength 0", [] { diffuse::img2img_start_index(50, 0.0); }, {"strength = 0 is outside (0, 1]"});
  expect_error("img2img strength too small to run a step", [] { diffuse::img2img_start_index(50, 0.01); }, {"runs no step"});
  expect_error("fill_batch over batch 0", [] {
    std::vector<float> z(8);
    diffuse::fill_batch<float>(diffuse::normal_generator(1), z, 0, 0, 0);
  }, {"does not split into 0 batch items"});
  expect_error("Gaussian mixture weights not summing to 1", [] {
    (void)diffuse::gaussian_mixture({0.5, 0.6}, {{0.0}, {1.0}}, {1.0, 1.0});
  }, {"weights sum to 1.1"});
}

TEST_CASE("catalogue: guidance options") {
  const auto& sched = schedule1000();
  const diffuse::ddim_sampler ddim(sched, diffuse::make_timesteps(1000, 10, diffuse::timestep_spacing::leading));
  const diffuse::sample_shape shape{.batch = 2, .channels = 1, .spatial = 4};
  std::vector<float> x(shape.numel(), 0.5f);
  auto model = [](std::span<const float> xt, int, std::span<float> o) { std::copy(xt.begin(), xt.end(), o.begin()); };

  expect_error("window [5, 2]", [&] {
    diffuse::sample(ddim, model, std::span<float>(x), shape, {}, diffuse::no_callback{},
                    diffuse::guidance(diffuse::classifier_free_guidance(model, 2.0, {.window = {5, 2}})));
  }, {"[diffuse.guidance]", "window [5, 2]"});
  expect_error("window past the list", [&] {
    diffuse::sample(ddim, model, std::span<float>(x), shape, {}, diffuse::no_callback{},
                    diffuse::guidance(diffuse::classifier_free_guidance(model, 2.0, {.window = {10, 20}})));
  }, {"window starts at step 10"});
  expect_error("CFG scale -1", [&] {
    diffuse::sample(ddim, model, std::span<float>(x), shape, {}, diffuse::no_callback{},
                    diffuse::guidance(diffuse::classifier_free_guidance(model, -1.0)));
  }, {"classifier-free guidance scale -1"});
  expect_error("CFG scale 1e308 overflowing finite outputs (named, not blamed on the model)", [&] {
    std::vector<float> c{1.0f, 2.0f, 3.0f, 4.0f}, u{0.0f, 0.0f, 0.0f, 0.0f};
    diffuse::apply_cfg<float>(c, u, {.batch = 1, .channels = 1, .spatial = 4}, 1e308);
  }, {"[diffuse.guidance]", "scale 1e+308 overflows the finite model outputs of item 0"});
  expect_error("per-step scale returning NaN", [&] {
    auto scale = [](int, int) { return not_a_number; };
    diffuse::sample(ddim, model, std::span<float>(x), shape, {}, diffuse::no_callback{},
                    diffuse::guidance(diffuse::classifier_free_guidance(model, scale, {})));
  }, {"scale nan at step 0"});
  expect_error("classifier gradient with Inf", [&] {
    auto grad = [](std::span<const float>, int, std::span<float> g) {
      std::fill(g.begin(), g.end(), 0.f);
      g[3] = std::numeric_limits<float>::infinity();
    };
    diffuse::sample(ddim, model, std::span<float>(x), shape, {}, diffuse::no_callback{},
                    diffuse::guidance(diffuse::classifier_guidance(grad, 1.0)));
  }, {"non-finite value (inf) at element 3"});
  expect_error("rescale 2", [&] {
    std::vector<float> c(shape.numel()), u(shape.numel());
    diffuse::apply_cfg<float>(c, u, shape, 3.0, diffuse::cfg_formulation::standard, 2.0);
  }, {"guidance rescale 2 is outside [0, 1]"});
  expect_error("apply_cfg sizes differ", [&] {
    std::vector<float> c(shape.numel()), u(shape.numel() + 1);
    diffuse::apply_cfg<float>(c, u, shape, 3.0);
  }, {"conditional output has 8 elements and the unconditional 9"});
  expect_error("batched CFG with a window", [&] { diffuse::batched_cfg_model<float, decltype(model)>(model, shape, 2.0, {.window = {1, 3}}); },
               {"cannot apply a window"});
  // An empty shape once reached `out.size() / shape.numel()`: a division by zero at the first call.
  expect_error("batched CFG over an empty shape", [&] {
    diffuse::batched_cfg_model<float, decltype(model)> m(model, {.batch = 0, .channels = 1, .spatial = 4}, 2.0);
    std::vector<float> none;
    m(none, 0, none);
  }, {"[diffuse.shape]", "batched_cfg_model got the sample shape {batch 0"});
}

TEST_CASE("catalogue: corrupt, truncated and hostile safetensors files") {
  const std::string ok = st_header({st_entry("w", "F32", "[2]", "[0,8]")});
  const bytes eight(8, 0);
  REQUIRE_NOTHROW(st_parse(st_file(ok, eight)));

  expect_error("3-byte file", [] { st_parse(bytes{1, 2, 3}); }, {"[diffuse.io]", "catalogue.safetensors", "expected at least 8"});
  expect_error("header length 2^60", [&] { st_parse(st_file(ok, eight, std::uint64_t{1} << 60)); },
               {"header claims 1152921504606846976 bytes", "at most 100000000"});
  expect_error("header length 2^64 - 1", [&] { st_parse(st_file(ok, eight, ~std::uint64_t{0})); }, {"header claims 18446744073709551615"});
  expect_error("header length beyond the file", [&] { st_parse(st_file(ok, eight, ok.size() + 9)); }, {"truncated"});
  expect_error("header length 1", [&] { st_parse(st_file(ok, eight, 1)); }, {"header is empty"});
  expect_error("data_offsets past the data", [&] { st_parse(st_file(ok, bytes(4, 0))); }, {"data_offsets [0, 8]", "<= 4"});
  expect_error("data_offsets begin > end", [&] { st_parse(st_file(st_header({st_entry("w", "F32", "[0]", "[8,0]")}), eight)); },
               {"data_offsets [8, 0]"});
  expect_error("data_offsets 2^64 - 1", [&] {
    st_parse(st_file(st_header({st_entry("w", "U8", "[1]", "[18446744073709551614,18446744073709551615]")}), eight));
  }, {"data_offsets [18446744073709551614, 18446744073709551615]"});
  expect_error("negative data_offsets", [&] { st_parse(st_file(st_header({st_entry("w", "F32", "[2]", "[-8,0]")}), eight)); },
               {"non-negative integers"});
  expect_error("overlapping tensors", [&] {
    st_parse(st_file(st_header({st_entry("a", "F32", "[2]", "[0,8]"), st_entry("b", "F32", "[1]", "[4,8]")}), eight));
  }, {"[0, 8) and [4, 8) overlap"});
  expect_error("unknown dtype", [&] { st_parse(st_file(st_header({st_entry("w", "F8_E4M3", "[8]", "[0,8]")}), eight)); },
               {"unknown dtype \"F8_E4M3\""});
  expect_error("dtype not a string", [&] { st_parse(st_file(R"({"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", eight)); },
               {"non-string dtype"});
  expect_error("duplicate names", [&] { st_parse(st_file(st_header({st_entry("w", "F32", "[2]", "[0,8]"), st_entry("w", "F32", "[2]", "[0,8]")}), eight)); },
               {"\"w\" appears twice"});
  expect_error("non-UTF-8 name", [&] { st_parse(st_file(st_header({st_entry("\xff\xfe", "F32", "[2]", "[0,8]")}), eight)); },
               {"not valid JSON"});
  expect_error("100000 nested '['", [&] { st_parse(st_file(std::string(100000, '['), eight)); }, {"nests deeper than 8"});
  expect_error("nested objects in a tensor entry", [&] {
    st_parse(st_file(R"({"w":{"dtype":{"a":{"b":{"c":{"d":{"e":{"f":{"g":{}}}}}}}}}})", eight));
  }, {"nests deeper than 8"});
  expect_error("header is an array", [&] { st_parse(st_file("[1, 2]", eight)); }, {"not a JSON object"});
  expect_error("header with a NUL byte", [&] { st_parse(st_file(std::string("{\"w\"\0:{}}", 9), eight)); }, {"not valid JSON"});
  expect_error("JSON followed by garbage", [&] { st_parse(st_file(ok + "xyz", eight)); }, {"not valid JSON"});
  expect_error("number too large for a double", [&] { st_parse(st_file(st_header({st_entry("w", "F32", "[1e400]", "[0,8]")}), eight)); },
               {"not valid JSON"});
  expect_error("entry without data_offsets", [&] { st_parse(st_file(R"({"w":{"dtype":"F32","shape":[2]}})", eight)); },
               {"entry \"w\" is malformed"});
  expect_error("entry with an extra key", [&] { st_parse(st_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", eight)); },
               {"entry \"w\" is malformed"});
  expect_error("negative dimension", [&] { st_parse(st_file(st_header({st_entry("w", "F32", "[-2]", "[0,8]")}), eight)); },
               {"has shape [-2]"});
  expect_error("fractional dimension", [&] { st_parse(st_file(st_header({st_entry("w", "F32", "[2.0]", "[0,8]")}), eight)); },
               {"has shape [2.0]"});
  expect_error("17 dimensions", [&] { st_parse(st_file(st_header({st_entry("w", "U8", "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]", "[0,1]")}), eight)); },
               {"at most 16 sizes"});
  expect_error("shape whose product overflows", [&] {
    st_parse(st_file(st_header({st_entry("w", "F32", "[4294967296,4294967296,4294967296]", "[0,8]")}), eight));
  }, {"more elements than the 8-byte data section holds"});
  // 2^62 F32 elements are 2^64 bytes: a byte count that wraps to 0 and would have matched [0, 0].
  expect_error("shape whose byte size wraps to zero", [&] {
    st_parse(st_file(st_header({st_entry("w", "F32", "[4611686018427387904]", "[0,0]")}), eight));
  }, {"more elements than the 8-byte data section holds"});
  expect_error("dimension 2^63 in an empty tensor", [&] {
    st_parse(st_file(st_header({st_entry("w", "F32", "[0,9223372036854775808]", "[0,0]")}), eight));
  }, {"below 2^63"});
  expect_error("span not matching the shape", [&] { st_parse(st_file(st_header({st_entry("w", "F32", "[3]", "[0,8]")}), eight)); },
               {"spans 8 bytes; expected 12"});
  expect_error("__metadata__ with a number", [&] { st_parse(st_file(R"({"__metadata__":{"format":1}})", eight)); },
               {"__metadata__ entry \"format\" is not a string"});
  const auto f = st_parse(st_file(st_header({st_entry("w", "F32", "[2]", "[0,8]"), st_entry("i", "I64", "[1]", "[8,16]")}), bytes(16, 0)));
  expect_error("read<float> of an I64 tensor", [&] { (void)f.read<float>("i"); }, {"has dtype I64; expected a floating-point dtype"});
  expect_error("read<int> of an F32 tensor", [&] { (void)f.read<std::int32_t>("w"); }, {"has dtype F32; expected an integer dtype"});
  expect_error("read_into a short buffer", [&] {
    std::vector<float> one(1);
    f.read_into<float>("w", one);
  }, {"buffer for tensor \"w\" has 1 elements; expected 2"});
  expect_error("absent tensor", [&] { (void)f.info("missing"); }, {"tensor \"missing\" is missing"});

  expect_error("load(): no such file", [] { diffuse::safetensors_file::load("/nonexistent/diffuse.safetensors"); },
               {"cannot read safetensors file /nonexistent/diffuse.safetensors"});
  expect_error("load(): a directory", [] { diffuse::safetensors_file::load(std::filesystem::temp_directory_path()); },
               {"cannot read safetensors file"});
  const auto truncated = temp_file("truncated.safetensors", st_file(ok, eight, ok.size() + 1000));
  expect_error("load(): header length larger than the file", [&] { diffuse::safetensors_file::load(truncated); },
               {"truncated or not safetensors"});
  std::filesystem::remove(truncated);
}

TEST_CASE("catalogue: malformed scheduler_config.json") {
  auto cfg = [](const std::string& text) { return diffuse::scheduler_config::from_json(text, "scheduler_config.json"); };
  REQUIRE_NOTHROW(cfg("{}"));
  expect_error("not JSON", [&] { cfg("{\"beta_schedule\": "); }, {"[diffuse.io]", "scheduler_config.json", "not valid JSON"});
  expect_error("a list", [&] { cfg("[1]"); }, {"expected a JSON object of scheduler options"});
  expect_error("100000 nested '['", [&] { cfg(std::string(100000, '[')); }, {"nests deeper than 8 levels"});
  expect_error("closed deep nesting", [&] { cfg("{\"x\": " + std::string(20, '[') + std::string(20, ']') + "}"); },
               {"nests deeper than 8 levels"});
  // 1e10 does not fit an int: the range is checked before any conversion (which would be undefined).
  expect_error("num_train_timesteps 1e10", [&] { cfg(R"({"num_train_timesteps": 1e10})"); }, {"num_train_timesteps is 1e+10"});
  expect_error("num_train_timesteps 10.5", [&] { cfg(R"({"num_train_timesteps": 10.5})"); }, {"num_train_timesteps is 10.5"});
  expect_error("num_train_timesteps as text", [&] { cfg(R"({"num_train_timesteps": "1000"})"); }, {"\"num_train_timesteps\" is \"1000\"; expected a number"});
  expect_error("unknown beta_schedule", [&] { cfg(R"({"beta_schedule": "exponential"})"); }, {"beta_schedule \"exponential\" is unknown"});
  expect_error("beta_start 0", [&] { cfg(R"({"beta_start": 0})"); }, {"[diffuse.schedule]", "beta_start = 0"});
  expect_error("trained_betas not a list", [&] { cfg(R"({"trained_betas": 0.1})"); }, {"\"trained_betas\" is not a list"});
  expect_error("trained_betas with text", [&] { cfg(R"({"trained_betas": [0.1, "0.2"]})"); }, {"holds a non-number"});
  expect_error("trained_betas empty", [&] { cfg(R"({"trained_betas": []})"); }, {"beta list is empty"});
  expect_error("trained_betas with 1.5", [&] { cfg(R"({"trained_betas": [0.1, 1.5]})"); }, {"beta[1] = 1.5"});
  expect_error("trained_betas of another length than num_train_timesteps", [&] {
    cfg(R"({"num_train_timesteps": 1000, "trained_betas": [0.1, 0.2]})");
  }, {"\"trained_betas\" has 2 entries but num_train_timesteps is 1000"});
  expect_error("unknown prediction_type", [&] { cfg(R"({"prediction_type": "noise"})"); }, {"prediction_type \"noise\""});
  expect_error("fixed_large_log", [&] { cfg(R"({"variance_type": "fixed_large_log"})"); }, {"fixed_large_log"});
  expect_error("clip_sample as text", [&] { cfg(R"({"clip_sample": "yes"})"); }, {"\"clip_sample\" is \"yes\"; expected true or false"});
  expect_error("clip_sample_range -1", [&] { cfg(R"({"clip_sample_range": -1})"); }, {"clip_range = -1"});
  expect_error("dynamic_thresholding_ratio 1.5", [&] { cfg(R"({"thresholding": true, "dynamic_thresholding_ratio": 1.5})"); },
               {"ratio = 1.5"});
  expect_error("unknown timestep_spacing", [&] { cfg(R"({"timestep_spacing": "uniform"})"); }, {"timestep_spacing \"uniform\" is unknown"});
  expect_error("steps_offset 1e12", [&] { cfg(R"({"steps_offset": 1e12})"); }, {"steps_offset is 1e+12"});
  expect_error("steps_offset -1", [&] { cfg(R"({"steps_offset": -1})"); }, {"steps_offset is -1"});
  expect_error("zero-SNR rescale of one timestep", [&] { cfg(R"({"num_train_timesteps": 1, "rescale_betas_zero_snr": true})"); },
               {"needs T >= 2"});
  expect_error("zero-SNR rescale of a 100,000-step linear schedule (a fuzzer finding: NaN betas)", [&] {
    cfg(R"({"num_train_timesteps": 100000, "rescale_betas_zero_snr": true})");
  }, {"[diffuse.schedule]", "underflows the double range"});
  expect_error("load(): no such file", [] { diffuse::scheduler_config::load("/nonexistent/scheduler_config.json"); }, {"cannot open"});
}

TEST_CASE("catalogue: malformed config.json and UNet inputs") {
  auto cfg = [](const std::string& text) { return diffuse::unet_config::from_json(text, "config.json"); };
  REQUIRE_NOTHROW(cfg(unet_json()));
  expect_error("not JSON", [&] { cfg("{\"in_channels\": 3,"); }, {"[diffuse.model]", "config.json", "not valid JSON"});
  expect_error("100000 nested '['", [&] { cfg(std::string(100000, '[')); }, {"nests deeper than 8 levels"});
  expect_error("unknown option", [&] { cfg(unet_json(R"(, "cross_attention_dim": 768)")); }, {"unknown option \"cross_attention_dim\""});
  expect_error("another model class", [&] { cfg(R"({"_class_name": "UNet2DConditionModel"})"); }, {"_class_name is \"UNet2DConditionModel\""});
  expect_error("in_channels 0", [&] { cfg(unet_json(R"(, "in_channels": 0)")); }, {"\"in_channels\" is 0"});
  expect_error("in_channels as text", [&] { cfg(R"({"in_channels": "3"})"); }, {"\"in_channels\" is \"3\"; expected an integer"});
  expect_error("in_channels 2^40", [&] { cfg(R"({"in_channels": 1099511627776})"); }, {"\"in_channels\" is 1099511627776"});
  expect_error("sample_size [32]", [&] { cfg(R"({"sample_size": [32]})"); }, {"sample_size is [32]"});
  expect_error("block_out_channels []", [&] { cfg(R"({"block_out_channels": []})"); }, {"block_out_channels is []"});
  expect_error("block lists of different lengths", [&] { cfg(R"({"block_out_channels": [32, 64]})"); },
               {"down_block_types has 4 entries, up_block_types 4 and block_out_channels 2"});
  expect_error("unsupported down block", [&] {
    cfg(R"({"block_out_channels": [32], "down_block_types": ["CrossAttnDownBlock2D"], "up_block_types": ["UpBlock2D"]})");
  }, {"down block type \"CrossAttnDownBlock2D\" is not supported"});
  expect_error("norm groups not dividing the channels", [&] { cfg(unet_json(R"(, "norm_num_groups": 5)")); }, {"not divisible into 5 groups"});
  expect_error("attention_head_dim not dividing", [&] { cfg(unet_json(R"(, "attention_head_dim": 5)")); }, {"not divisible by attention_head_dim 5"});
  expect_error("act_fn gelu", [&] { cfg(unet_json(R"(, "act_fn": "gelu")")); }, {"act_fn \"gelu\" is not supported"});
  expect_error("resnet_time_scale_shift film", [&] { cfg(unet_json(R"(, "resnet_time_scale_shift": "film")")); },
               {"resnet_time_scale_shift is \"film\""});
  expect_error("norm_eps -1", [&] { cfg(unet_json(R"(, "norm_eps": -1)")); }, {"norm_eps is -1"});
  expect_error("freq_shift 1e300", [&] { cfg(unet_json(R"(, "freq_shift": 1e300)")); }, {"freq_shift is 1e+300"});
  expect_error("layers_per_block 100", [&] { cfg(unet_json(R"(, "layers_per_block": 100)")); }, {"\"layers_per_block\" is 100"});
  expect_error("load(): no such file", [] { diffuse::unet_config::load("/nonexistent/config.json"); }, {"[diffuse.io]", "cannot open"});

  // The UNet itself: weights that do not fit the config, and inputs that do not fit the network.
  const auto config = cfg(unet_json());
  const std::string w = st_header({st_entry("conv_in.weight", "F32", "[16,1,3,3]", "[0,576]")});
  const auto weights = st_parse(st_file(w, bytes(576, 0)));
  expect_error("weights lacking a tensor", [&] { diffuse::nn::unet2d<float>(config, weights); }, {"lack tensor \"conv_in.bias\""});
  const auto wrong = st_parse(st_file(st_header({st_entry("conv_in.weight", "F32", "[16,1,1,9]", "[0,576]")}), bytes(576, 0)));
  expect_error("mis-shaped weight", [&] { diffuse::nn::unet2d<float>(config, wrong); },
               {"tensor \"conv_in.weight\"", "has shape (16, 1, 1, 9); expected (16, 1, 3, 3)"});
  auto net = diffuse::nn::unet2d<float>::random(config, 7);
  std::vector<float> x(2 * 8 * 8), out(2 * 8 * 8);
  const double t = 10;
  expect_error("image size not a multiple of the downsampling", [&] {
    std::vector<float> x7(2 * 7 * 7), o7(2 * 7 * 7);
    net.forward(x7, 2, {7, 7}, std::span<const double>(&t, 1), {}, o7);
  }, {"image size 7 x 7 is not a positive multiple of 2"});
  expect_error("three timesteps for a batch of two", [&] {
    const std::vector<double> ts{1, 2, 3};
    net.forward(x, 2, {8, 8}, ts, {}, out);
  }, {"got 3 timesteps; expected 1 or one per batch item (2)"});
  expect_error("NaN timestep", [&] {
    const double bad = not_a_number;
    net.forward(x, 2, {8, 8}, std::span<const double>(&bad, 1), {}, out);
  }, {"timestep nan is not finite"});
  expect_error("labels for an unconditional UNet", [&] {
    const std::vector<int> labels{0, 1};
    net.forward(x, 2, {8, 8}, std::span<const double>(&t, 1), labels, out);
  }, {"got class labels for a UNet without class embeddings"});
}

TEST_CASE("catalogue: diffusers option values diffuse does not implement, and folders of neither layout") {
  auto cfg = [](const std::string& text) { return diffuse::unet_config::from_json(text, "config.json"); };
  expect_error("mid_block_type null (no mid block)", [&] { cfg(unet_json(R"(, "mid_block_type": null)")); },
               {"mid_block_type null is not supported", "expected \"UNetMidBlock2D\""});
  expect_error("time_embedding_type fourier", [&] { cfg(unet_json(R"(, "time_embedding_type": "fourier")")); },
               {"time_embedding_type \"fourier\" is not supported", "expected \"positional\""});
  expect_error("time_embedding_dim set", [&] { cfg(unet_json(R"(, "time_embedding_dim": 256)")); }, {"time_embedding_dim 256 is not supported"});
  expect_error("upsample_type resnet", [&] { cfg(unet_json(R"(, "upsample_type": "resnet")")); }, {"upsample_type \"resnet\" is not supported"});

  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / "diffuse_catalogue_folders";
  fs::remove_all(dir);
  fs::create_directories(dir / "neither");
  expect_error("a folder of neither layout", [&] { diffuse::diffusers_folder::locate(dir / "neither"); },
               {"neither config.json nor model_index.json", "model folder (config.json", "pipeline folder (model_index.json"});
  fs::create_directories(dir / "pipeline" / "unet");
  fs::create_directories(dir / "pipeline" / "scheduler");
  std::ofstream(dir / "pipeline" / "model_index.json") << R"({"unet": ["diffusers", "UNet2DConditionModel"], "scheduler": ["diffusers", "PNDMScheduler"]})";
  expect_error("a pipeline of another UNet class", [&] { diffuse::diffusers_folder::locate(dir / "pipeline"); },
               {"the unet is a UNet2DConditionModel; expected UNet2DModel"});
  std::ofstream(dir / "pipeline" / "model_index.json") << R"({"unet": ["diffusers", "UNet2DModel"], "scheduler": ["diffusers", "DDPMScheduler"]})";
  std::ofstream(dir / "pipeline" / "unet" / "config.json") << "{}";
  std::ofstream(dir / "pipeline" / "scheduler" / "scheduler_config.json") << "{}";
  std::ofstream(dir / "pipeline" / "unet" / "diffusion_pytorch_model.bin") << "pickle";
  expect_error("weights only as a PyTorch pickle", [&] { diffuse::diffusers_folder::locate(dir / "pipeline"); },
               {"diffusion_pytorch_model.bin, a PyTorch pickle", "expected diffusion_pytorch_model.safetensors"});
  fs::remove_all(dir);
}

TEST_CASE("catalogue: headers and configs the reference readers refuse, and reads that would change values") {
  const bytes eight(8, 0);
  const std::string ok = st_header({st_entry("w", "F32", "[2]", "[0,8]")});
  expect_error("safetensors header with a byte-order mark", [&] { st_parse(st_file("\xEF\xBB\xBF" + ok, eight)); },
               {"[diffuse.io]", "byte-order mark"});
  expect_error("safetensors header with a NUL byte after the JSON", [&] { st_parse(st_file(ok + std::string(1, '\0') + "x", eight)); },
               {"not valid JSON (a NUL byte at offset"});
  expect_error("a key twice in a tensor entry", [&] {
    st_parse(st_file(R"({"w":{"dtype":"F32","shape":[2],"shape":[2],"data_offsets":[0,8]}})", eight));
  }, {"has the key \"shape\" twice"});
  expect_error("a key twice in __metadata__", [&] { st_parse(st_file(R"({"__metadata__":{"format":"pt","format":"np"}})")); },
               {"__metadata__ has the key \"format\" twice"});
  expect_error("bytes after the last tensor", [&] { st_parse(st_file(ok, bytes(9, 0))); }, {"1 bytes follow the last tensor's data"});
  expect_error("a gap between tensors", [&] {
    st_parse(st_file(st_header({st_entry("a", "U8", "[1]", "[0,1]"), st_entry("b", "U8", "[1]", "[2,3]")}), bytes(3, 0)));
  }, {"bytes [1, 2) of the data section belong to no tensor"});
  bytes i64(8, 0);
  i64[0] = 5;
  i64[5] = 1;  // 2^40 + 5
  const auto ints = st_parse(st_file(st_header({st_entry("i", "I64", "[1]", "[0,8]")}), i64));
  expect_error("I64 2^40 + 5 read as int32", [&] { (void)ints.read<std::int32_t>("i"); },
               {"holds 1099511627781 at element 0, outside the range [-2147483648, 2147483647]"});
  bytes f64(8, 0);
  const auto big = std::bit_cast<std::uint64_t>(1e300);
  for (int i = 0; i < 8; ++i) f64[static_cast<std::size_t>(i)] = static_cast<unsigned char>(big >> (8 * i));
  const auto doubles = st_parse(st_file(st_header({st_entry("d", "F64", "[1]", "[0,8]")}), f64));
  expect_error("F64 1e300 read as float", [&] { (void)doubles.read<float>("d"); }, {"holds 1e+300 at element 0, beyond the range of the 32-bit float"});

  auto cfg = [](const std::string& text) { return diffuse::scheduler_config::from_json(text, "scheduler_config.json"); };
  expect_error("scheduler_config.json with a key twice", [&] { cfg(R"({"beta_end": 0.02, "beta_end": 0.5})"); },
               {"[diffuse.io]", "key \"beta_end\" appears twice"});
  expect_error("scheduler_config.json with a byte-order mark", [&] { cfg("\xEF\xBB\xBF{}"); }, {"byte-order mark"});
  expect_error("scheduler_config.json with a NUL byte after the object", [&] { cfg(std::string("{}\0{\"beta_end\": 9}", 18)); },
               {"not valid JSON (a NUL byte at offset 2"});
  expect_error("config.json with a key twice", [&] { diffuse::unet_config::from_json(R"({"in_channels": 1, "in_channels": 3})", "config.json"); },
               {"[diffuse.model]", "key \"in_channels\" appears twice"});
  std::string objects = R"({"x": [)";
  for (int i = 0; i < 300'000; ++i) objects += i ? ",{}" : "{}";
  expect_error("config of 300,000 empty objects", [&] { cfg(objects + "]}"); }, {"bytes of memory (8 per byte of text + 1 MiB)"});
}

TEST_CASE("catalogue: files that are not regular files, or too large") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / "diffuse_catalogue_files";
  fs::remove_all(dir);
  fs::create_directories(dir / "config.json");
  expect_error("config.json that is a directory", [&] { diffuse::unet_config::load(dir / "config.json"); },
               {"[diffuse.io]", "is a directory, expected a regular file"});
  expect_error("scheduler_config.json that is a directory", [&] { diffuse::scheduler_config::load(dir / "config.json"); },
               {"is a directory, expected a regular file"});
  std::ofstream(dir / "huge.json") << "{}";
  fs::resize_file(dir / "huge.json", std::uint64_t{64} << 20);  // sparse
  expect_error("a 64 MiB scheduler_config.json", [&] { diffuse::scheduler_config::load(dir / "huge.json"); },
               {"67108864 bytes; expected at most 33554432"});
#if defined(__unix__) || defined(__APPLE__)
  if (fs::exists("/dev/zero")) {
    fs::create_symlink("/dev/zero", dir / "zero.json");
    expect_error("scheduler_config.json linked to /dev/zero", [&] { diffuse::scheduler_config::load(dir / "zero.json"); },
                 {"is a character device, expected a regular file"});
    expect_error("weights linked to /dev/zero", [&] { diffuse::safetensors_file::load(dir / "zero.json"); },
                 {"cannot read safetensors file", "is a character device"});
  }
  const fs::path fifo = dir / "fifo.json";
  if (::mkfifo(fifo.c_str(), 0600) == 0) {
    expect_error("config.json that is a FIFO (no writer: would block)", [&] { diffuse::unet_config::load(fifo); },
                 {"is a FIFO (named pipe), expected a regular file"});
    expect_error("weights that are a FIFO", [&] { diffuse::safetensors_file::load(fifo); }, {"is a FIFO (named pipe)"});
  }
#endif
  fs::remove_all(dir);
}

TEST_CASE("catalogue: NaN and infinite weights") {
  const auto config = diffuse::unet_config::from_json(unet_json(), "config.json");
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    bytes data(576 + 64, 0);
    const auto b = std::bit_cast<std::uint32_t>(bad);
    for (int i = 0; i < 4; ++i) data[4 * 7 + static_cast<std::size_t>(i)] = static_cast<unsigned char>(b >> (8 * i));  // element 7
    const auto weights = st_parse(st_file(st_header({st_entry("conv_in.weight", "F32", "[16,1,3,3]", "[0,576]"),
                                                     st_entry("conv_in.bias", "F32", "[16]", "[576,640]")}), data));
    expect_error(std::isnan(bad) ? "a NaN weight" : "an infinite weight", [&] { diffuse::nn::unet2d<float>(config, weights); },
                 {"[diffuse.model]", "tensor \"conv_in.weight\"", std::isnan(bad) ? "holds NaN at element 7 of 144" : "holds an infinity at element 7",
                  "expected finite weights"});
  }
}
