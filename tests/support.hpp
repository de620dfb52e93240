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
