// Forward noising and the conversions between ε, x0 and v: identities, round trips, bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "diffuse/forward.hpp"
#include "diffuse/random.hpp"
#include "support.hpp"

using namespace diffuse;

namespace {
// Round trips apply two linear maps with coefficients up to 1/√ᾱ (≈ 160 at t = 999 of linear) to values
// of order 1: float keeps ~1e-7·160 relative to the tensor scale, double ~1e-16·160.
template <class T>
constexpr double round_trip_tol = std::is_same_v<T, double> ? 1e-13 : 5e-5;
}  // namespace

TEST_CASE_TEMPLATE("add_noise uses each batch item's own timestep", T, float, double) {
  const auto s = noise_schedule::cosine(1000);
  const sample_shape shape{3, 2, 4};
  std::vector<T> x0(shape.numel()), eps(shape.numel()), xt(shape.numel());
  const normal_generator g(3);
  g.fill<T>(x0, 0, 0);
  g.fill<T>(eps, 1, 0);
  const std::vector<int> ts{0, 500, 999};
  add_noise<T>(s, x0, eps, ts, shape, xt);
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 8; ++j) {
      const std::size_t e = i * 8 + j;
      const double expect = s.sqrt_alpha_bar(ts[i]) * x0[e] + s.sqrt_one_minus_alpha_bar(ts[i]) * eps[e];
      CHECK(static_cast<double>(xt[e]) == doctest::Approx(expect).epsilon(1e-6));
    }
}

TEST_CASE_TEMPLATE("conversions between epsilon, x0 and v round-trip", T, float, double) {
  const auto s = noise_schedule::linear(1000);
  const sample_shape shape{4, 1, 16};
  const std::size_t n = shape.numel();
  std::vector<T> x0(n), eps(n), xt(n), v(n), a(n), b(n);
  const normal_generator g(9);
  g.fill<T>(x0, 0, 0);
  g.fill<T>(eps, 1, 0);
  const std::vector<int> ts{1, 100, 600, 999};
  add_noise<T>(s, x0, eps, ts, shape, xt);
  velocity<T>(s, x0, eps, ts, shape, v);
  x0_from_epsilon<T>(s, xt, eps, ts, shape, a);
  CHECK(test::worst_relative(a, x0, round_trip_tol<T>) <= 1.0);
  epsilon_from_x0<T>(s, xt, x0, ts, shape, a);
  CHECK(test::worst_relative(a, eps, round_trip_tol<T>) <= 1.0);
  x0_from_velocity<T>(s, xt, v, ts, shape, a);
  CHECK(test::worst_relative(a, x0, round_trip_tol<T>) <= 1.0);
  epsilon_from_velocity<T>(s, xt, v, ts, shape, a);
  CHECK(test::worst_relative(a, eps, round_trip_tol<T>) <= 1.0);
  velocity_from_epsilon<T>(s, xt, eps, ts, shape, b);
  CHECK(test::worst_relative(b, v, round_trip_tol<T>) <= 1.0);
}

TEST_CASE("velocity and x0 stay defined at zero terminal SNR; epsilon does not") {
  const auto z = noise_schedule::linear(1000).rescaled_zero_terminal_snr();
  const sample_shape shape{1, 1, 3};
  std::vector<double> x0{1, 2, 3}, eps{0.5, -0.5, 0.25}, xt(3), v(3), back(3);
  const std::vector<int> t{999};
  add_noise<double>(z, x0, eps, t, shape, xt);
  CHECK(xt == eps);  // pure noise
  velocity<double>(z, x0, eps, t, shape, v);
  for (std::size_t i = 0; i < 3; ++i) CHECK(v[i] == -x0[i]);
  x0_from_velocity<double>(z, xt, v, t, shape, back);
  CHECK(back == x0);
  test::check_error([&] { x0_from_epsilon<double>(z, xt, eps, t, shape, back); },
                    {"[diffuse.numeric]", "epsilon prediction cannot give x0 at t = 999", "alpha_bar = 0"});
}

TEST_CASE("bad forward input raises diffuse::error") {
  const auto s = noise_schedule::linear(100);
  const sample_shape shape{2, 1, 3};
  std::vector<float> a(6), b(6), out(6), short_(5);
  test::check_error([&] { add_noise<float>(s, a, b, std::vector<int>{1}, shape, out); }, {"[diffuse.shape]", "got 1 timesteps for a batch of 2"});
  test::check_error([&] { add_noise<float>(s, a, b, std::vector<int>{1, 100}, shape, out); },
                    {"[diffuse.timesteps]", "timestep 100 of batch item 1 is out of range"});
  test::check_error([&] { add_noise<float>(s, short_, b, std::vector<int>{1, 2}, shape, out); },
                    {"has 5 elements; expected batch 2 x channels 1 x spatial 3 = 6"});
  test::check_error([&] { add_noise<float>(s, a, b, std::vector<int>{1, 2}, {0, 1, 3}, out); }, {"has no elements"});
}
