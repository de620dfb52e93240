// diffuse::error: the stable prefixes and the message helpers every component uses.
#include <doctest/doctest.h>

#include <string>

#include "diffuse/error.hpp"

using diffuse::error;
using diffuse::error_kind;

TEST_CASE("error messages start with the stable prefix of their kind") {
  try {
    diffuse::detail::fail(error_kind::schedule, "num_train_timesteps = ", 0, "; expected >= 1");
    FAIL("fail() returned");
  } catch (const error& e) {
    CHECK(e.kind() == error_kind::schedule);
    CHECK(std::string(e.what()) == "[diffuse.schedule] num_train_timesteps = 0; expected >= 1");
  }
  CHECK(diffuse::prefix(error_kind::io) == "[diffuse.io]");
  CHECK(diffuse::prefix(error_kind::shape) == "[diffuse.shape]");
}

TEST_CASE("numbers in messages are printed shortest round-trip") {
  CHECK(diffuse::detail::cat("beta = ", 0.1) == "beta = 0.1");
  CHECK(diffuse::detail::cat(1e-4f) == "1e-04");  // to_chars picks the shorter of fixed and scientific
  CHECK(diffuse::detail::cat(std::size_t{96}, " ", -3) == "96 -3");
  CHECK(diffuse::detail::cat(true) == "true");
}

TEST_CASE("diffuse::error is a std::runtime_error") {
  CHECK_THROWS_AS(diffuse::detail::fail(error_kind::io, "x"), std::runtime_error);
}
