// scheduler_config.json as diffusers writes it, turned into diffuse's schedule and sampler options.
#include <doctest/doctest.h>

#include "diffuse/io/scheduler_config.hpp"
#include "support.hpp"

using diffuse::scheduler_config;

TEST_CASE("a DDPMScheduler config of a v-prediction cosine model") {
  const auto c = scheduler_config::from_json(R"({"_class_name": "DDPMScheduler", "num_train_timesteps": 1000,
      "beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction", "variance_type": "fixed_small",
      "clip_sample": true, "clip_sample_range": 1.0, "timestep_spacing": "trailing", "steps_offset": 0})");
  CHECK(c.num_train_timesteps() == 1000);
  CHECK(c.prediction == diffuse::prediction_type::v_prediction);
  CHECK(c.schedule.alpha_bar(999) == doctest::Approx(diffuse::noise_schedule::cosine(1000).alpha_bar(999)).epsilon(1e-15));
  CHECK(c.processing.clip_range == 1.0);
  CHECK(c.timesteps(4) == std::vector<int>{999, 749, 499, 249});
}

TEST_CASE("defaults are diffusers' defaults; the zero-SNR rescale, thresholding and leading offset are honoured") {
  const auto d = scheduler_config::from_json("{}");
  CHECK(d.schedule.alpha_bar(0) == doctest::Approx(1 - 1e-4));
  CHECK(d.spacing == diffuse::timestep_spacing::leading);
  const auto z = scheduler_config::from_json(R"({"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
      "rescale_betas_zero_snr": true, "thresholding": true, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 2.0,
      "steps_offset": 1, "clip_sample": false})");
  CHECK(z.schedule.alpha_bar(999) == 0.0);
  CHECK(z.processing.threshold->ratio == 0.9);
  CHECK(!z.processing.clip_range);
  CHECK(z.timesteps(10).back() == 1);
}

TEST_CASE("bad scheduler configs are errors") {
  test::check_error([] { scheduler_config::from_json(R"({"beta_schedule": "exp"})"); }, {"[diffuse.io]", "beta_schedule \"exp\""});
  test::check_error([] { scheduler_config::from_json(R"({"num_train_timesteps": 10.5})"); }, {"num_train_timesteps"});
  test::check_error([] { scheduler_config::from_json(R"({"timestep_spacing": "karras"})"); }, {"timestep_spacing \"karras\""});
  test::check_error([] { scheduler_config::from_json(R"({"prediction_type": "flow"})"); }, {"flow"});
  test::check_error([] { scheduler_config::from_json(R"({"clip_sample": "yes"})"); }, {"expected true or false"});
  test::check_error([] { scheduler_config::from_json("[1]"); }, {"expected a JSON object"});
  test::check_error([] { scheduler_config::load("/nonexistent.json"); }, {"cannot open"});
}
