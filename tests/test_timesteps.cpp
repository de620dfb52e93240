// Timestep lists: spacings and respacing strings against numpy (tools/make_core_fixtures.py), bad input.
#include <doctest/doctest.h>

#include "diffuse/timesteps.hpp"
#include "support.hpp"

using diffuse::timestep_spacing;

namespace {
timestep_spacing spacing_of(const std::string& s) {
  if (s == "linspace") return timestep_spacing::linspace;
  if (s == "leading") return timestep_spacing::leading;
  return timestep_spacing::trailing;
}
}  // namespace

TEST_CASE("spacings reproduce numpy's linspace/arange with round-half-even exactly") {
  const auto fx = test::fixture("timesteps.json");
  int cases = 0;
  for (const auto& c : fx["spacing"]) {
    const auto expected = c["timesteps"].get<std::vector<int>>();
    const auto got = diffuse::make_timesteps(c["T"], c["N"], spacing_of(c["spacing"]), c["offset"]);
    CHECK_MESSAGE(got == expected, "T=" << c["T"] << " N=" << c["N"] << " " << c["spacing"] << " offset=" << c["offset"]);
    ++cases;
  }
  CHECK(cases > 60);
}

TEST_CASE("respacing strings reproduce guided-diffusion's space_timesteps exactly") {
  const auto fx = test::fixture("timesteps.json");
  for (const auto& c : fx["respacing"]) {
    const std::string spec = c["spec"];
    if (c["timesteps"].is_null()) {
      CHECK_THROWS_AS(diffuse::respace(c["T"], spec), diffuse::error);
    } else {
      CHECK_MESSAGE(diffuse::respace(c["T"], spec) == c["timesteps"].get<std::vector<int>>(), spec);
    }
  }
}

TEST_CASE("rounding is half to even, as numpy does") {
  // linspace(0, 49, 7)[3] = 24.5 → 24 (SPEC §11)
  const auto ts = diffuse::make_timesteps(50, 7, timestep_spacing::linspace);
  CHECK(ts[3] == 24);
  // trailing always starts at T − 1 and has exactly N entries, none negative
  for (int n : {1, 3, 7, 11, 333, 999}) {
    const auto tr = diffuse::make_timesteps(1000, n, timestep_spacing::trailing);
    CHECK(tr.size() == static_cast<std::size_t>(n));
    CHECK(tr.front() == 999);
    CHECK(tr.back() >= 0);
  }
}

TEST_CASE("custom lists are validated and kept as given") {
  CHECK(diffuse::custom_timesteps(1000, {999, 500, 3}) == std::vector<int>{999, 500, 3});
  CHECK(diffuse::custom_timesteps(10, {0}) == std::vector<int>{0});
}

TEST_CASE("bad timestep arguments raise diffuse::error naming the value") {
  using test::check_error;
  using diffuse::make_timesteps;
  check_error([] { make_timesteps(1000, 0, timestep_spacing::leading); }, {"[diffuse.timesteps]", "num_inference_steps = 0", "1 <= N <= 1000"});
  check_error([] { make_timesteps(1000, 1001, timestep_spacing::trailing); }, {"num_inference_steps = 1001"});
  check_error([] { make_timesteps(0, 1, timestep_spacing::trailing); }, {"num_train_timesteps = 0"});
  check_error([] { make_timesteps(1000, 10, timestep_spacing::leading, -1); }, {"steps_offset = -1"});
  check_error([] { make_timesteps(1000, 1000, timestep_spacing::leading, 1); }, {"gives timestep 1000", "lower steps_offset"});
  check_error([] { make_timesteps(1000, 10, timestep_spacing::trailing, 1); }, {"only meaningful with leading"});
  check_error([] { diffuse::custom_timesteps(1000, {}); }, {"list is empty"});
  check_error([] { diffuse::custom_timesteps(1000, {10, 10}); }, {"entry 1 = 10 follows 10", "strictly descending"});
  check_error([] { diffuse::custom_timesteps(1000, {5, 7}); }, {"entry 1 = 7 follows 5"});
  check_error([] { diffuse::custom_timesteps(1000, {1000, 5}); }, {"entry 0 = 1000 is out of range", "0 <= t < 1000"});
  check_error([] { diffuse::custom_timesteps(1000, {5, -1}); }, {"entry 1 = -1 is out of range"});
  check_error([] { diffuse::respace(1000, ""); }, {"respacing string \"\"", "whole number"});
  check_error([] { diffuse::respace(1000, "10,"); }, {"respacing string \"10,\""});
  check_error([] { diffuse::respace(1000, "ddimx"); }, {"\"x\" where a whole number was expected"});
  check_error([] { diffuse::respace(1000, "ddim1"); }, {"no integer stride gives exactly 1"});
  check_error([] { diffuse::respace(1000, "ddim0"); }, {"no integer stride gives exactly 0"});
  check_error([] { diffuse::respace(10, "6,1"); }, {"section 0 has 5 timesteps but asks for 6"});
  check_error([] { diffuse::respace(1000, "0,0"); }, {"selects no timestep"});
  check_error([] { diffuse::respace(1000, "-3"); }, {"\"-3\""});
  check_error([] { diffuse::respace(1000, "1.5"); }, {"\"1.5\" where a whole number"});
  check_error([] { diffuse::respace(3, "1,1,1,1"); }, {"has 4 sections; expected at most T = 3"});
}
