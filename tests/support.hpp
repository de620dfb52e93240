// Helpers shared by the test programs: fixtures, the SPEC §11 tolerance, error-message checks.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "diffuse/error.hpp"

namespace test {

/// Loads tests/fixtures/<name>.
inline nlohmann::json fixture(const std::string& name) {
  std::ifstream in(std::string(DIFFUSE_FIXTURE_DIR) + "/" + name);
  REQUIRE_MESSAGE(in.good(), "missing fixture " << name);
  return nlohmann::json::parse(in);
}

/// SPEC §11: |a − e| ≤ tol·(|e| + max|e|) elementwise; returns the worst ratio (≤ 1 passes).
template <class A, class E>
double worst_relative(const A& actual, const E& expected, double tol) {
  REQUIRE(actual.size() == expected.size());
  double scale = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) scale = std::max(scale, std::abs(static_cast<double>(expected[i])));
  double worst = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double e = static_cast<double>(expected[i]), a = static_cast<double>(actual[i]);
    const double bound = tol * (std::abs(e) + scale);
    const double err = std::abs(a - e);
    if (!(err <= bound)) worst = std::max(worst, bound > 0 ? err / bound : HUGE_VAL);
    else worst = std::max(worst, bound > 0 ? err / bound : 0.0);
  }
  return worst;
}

/// The closed-form model of the diffusers fixtures (tools/make_solver_fixtures.py, make_flow_fixtures.py,
/// make_sampler_fixtures.py): out_i = 0.9·tanh(x_i) + 0.1·sin(0.01·t + 0.5·i), i the flat element index, so
/// every step's model output is known exactly from its input and time. An integer time converts exactly.
template <class Scalar>
void fake_model(std::span<const Scalar> x, double t, std::span<Scalar> out) {
  for (std::size_t i = 0; i < x.size(); ++i)
    out[i] = static_cast<Scalar>(Scalar(0.9) * std::tanh(x[i]) +
                                 Scalar(0.1) * std::sin(Scalar(0.01) * static_cast<Scalar>(t) + Scalar(0.5) * static_cast<Scalar>(i)));
}

/// |a − e| / (|e| + max|e|), SPEC §11's measure, worst over the tensor (worst_relative gives the same as a
/// ratio to a tolerance).
template <class A>
double relative_error(const A& actual, const std::vector<double>& expected) {
  double scale = 0, worst = 0;
  for (double e : expected) scale = std::max(scale, std::abs(e));
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double d = std::abs(static_cast<double>(actual[i]) - expected[i]), den = std::abs(expected[i]) + scale;
    worst = std::max(worst, den > 0 ? d / den : d);
  }
  return worst;
}

/// Runs f, expects a diffuse::error whose message contains every fragment.
template <class F>
void check_error(F&& f, std::initializer_list<std::string> fragments) {
  try {
    f();
    FAIL("expected a diffuse::error containing \"" << *fragments.begin() << "\"");
  } catch (const diffuse::error& e) {
    const std::string what = e.what();
    for (const auto& frag : fragments) CHECK_MESSAGE(what.find(frag) != std::string::npos, "message: " << what << "\n  missing: " << frag);
  }
}

}  // namespace test
