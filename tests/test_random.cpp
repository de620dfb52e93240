// normal_generator: Philox known answers, the portable transcendental functions, reproducibility, moments.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <utility>
#include <vector>

#include "diffuse/random.hpp"
#include "support.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

using diffuse::normal_generator;
using diffuse::philox4x32;

TEST_CASE("Philox4x32-10 reproduces the published known-answer vectors") {
  // Salmon et al. (Random123) known-answer tests for philox4x32_10.
  auto a = philox4x32::generate(0, 0, 0, 0, 0, 0);
  CHECK(a.v[0] == 0x6627e8d5u);
  CHECK(a.v[1] == 0xe169c58du);
  CHECK(a.v[2] == 0xbc57ac4cu);
  CHECK(a.v[3] == 0x9b00dbd8u);
  auto b = philox4x32::generate(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu);
  CHECK(b.v[0] == 0x408f276du);
  CHECK(b.v[1] == 0x41c83b0eu);
  CHECK(b.v[2] == 0xa20bc7c6u);
  CHECK(b.v[3] == 0x6d5451fdu);
  auto c = philox4x32::generate(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u);
  CHECK(c.v[0] == 0xd16cfe09u);
  CHECK(c.v[1] == 0x94fdccebu);
  CHECK(c.v[2] == 0x5001e420u);
  CHECK(c.v[3] == 0x24126ea1u);
}

TEST_CASE("the portable float log, sin and cos are within a few float ulps of the exact values") {
  // They replace libm so that every platform gives the same bits. Measured against the double-precision
  // C library (exact to far below a float ulp): the log in units of its own last place, over every u1
  // the generator can produce an exponent of and a sweep of mantissas; sin and cos in absolute units of
  // 2^-24, the last place of values near 1, over a sweep of the quarter turn. The bounds hold the
  // measured worst (printed: 1.55 and 0.52 on x86-64) with a margin of about one ulp.
  double worst_log = 0, worst_sc = 0;
  for (int i = 0; i < 400000; ++i) {
    const std::uint32_t k = (static_cast<std::uint32_t>(i) * 2654435761u >> 8) | 1u;  // odd, below 2^24
    const float u = static_cast<float>(k >> (i % 24)) * 0x1.0p-24f;
    if (u == 0.0f) continue;
    const double exact = std::log(static_cast<double>(u));
    const double ulp = std::ldexp(1.0, std::ilogb(static_cast<float>(exact)) - 23);
    worst_log = std::max(worst_log, std::abs(diffuse::detail::portable_logf(u) - exact) / ulp);
    const float theta = static_cast<float>(i % (1 << 22)) * diffuse::detail::quarter_turn_step_f;
    float s = 0, c = 0;
    diffuse::detail::portable_sincos_quarterf(theta, s, c);
    worst_sc = std::max(worst_sc, std::abs(s - std::sin(static_cast<double>(theta))) / 0x1.0p-24);
    worst_sc = std::max(worst_sc, std::abs(c - std::cos(static_cast<double>(theta))) / 0x1.0p-24);
  }
  MESSAGE("worst log error ", worst_log, " ulp; worst sin/cos error ", worst_sc, " × 2^-24 absolute");
  CHECK(worst_log <= 2.5);
  CHECK(worst_sc <= 1.5);
}

TEST_CASE("the variates are the documented Box–Muller of the Philox words, to float rounding") {
  // An independent double-precision evaluation of the transform in the random.hpp comment, with the C
  // library's log, cos and sin: diffuse's float arithmetic must agree to a few float ulps of r (|z| ≤ r),
  // and the element order (4b, 4b+1 from w0, w1; 4b+2, 4b+3 from w2, w3) must be the documented one.
  const normal_generator gen(0xC0FFEEull);
  double worst = 0, largest = 0;
  for (std::uint64_t b = 0; b < 20000; ++b) {
    const auto w = philox4x32::generate(static_cast<std::uint32_t>(b), 0, 7, 3, 0xC0FFEEu, 0);
    for (int pair = 0; pair < 2; ++pair) {
      const std::uint32_t a = w.v[2 * pair], c = w.v[2 * pair + 1];
      const double u1 = static_cast<double>((a >> 8) | 1u) * 0x1.0p-24;
      const double u2 = static_cast<double>(c >> 8) * 0x1.0p-24;
      const double r = std::sqrt(-2.0 * std::log(u1));
      const double angle = 2 * std::numbers::pi * u2;
      const double expected[2] = {r * std::cos(angle), r * std::sin(angle)};
      for (int k = 0; k < 2; ++k) {
        const double z = gen.at<double>(3, 7, 4 * b + 2 * pair + k);
        worst = std::max(worst, std::abs(z - expected[k]) / (std::max(r, 1.0) * 0x1.0p-24));
        largest = std::max(largest, std::abs(z));
      }
    }
  }
  MESSAGE("worst difference from the double-precision transform: ", worst, " × max(r, 1)·2^-24");
  CHECK(worst <= 4.0);  // measured 2.99: the rounding of r, the angle, the polynomials and the product
  CHECK(largest <= std::sqrt(48 * std::numbers::ln2) + 1e-6);  // the documented bound on |z|
}

TEST_CASE_TEMPLATE("fill gives the same numbers as at() for any offset and length", T, float, double) {
  const normal_generator gen(1234);
  for (std::uint64_t offset : {0u, 1u, 2u, 3u, 7u}) {
    for (std::size_t n : {0u, 1u, 2u, 3u, 17u, 64u}) {
      std::vector<T> out(n);
      gen.fill<T>(out, 3, 9, offset);
      for (std::size_t i = 0; i < n; ++i) CHECK(out[i] == gen.at<T>(3, 9, offset + i));
    }
  }
  // double variates are the float variates, widened: float and double models see the same noise
  for (std::uint64_t e = 0; e < 64; ++e) CHECK(gen.at<double>(1, 2, e) == static_cast<double>(gen.at<float>(1, 2, e)));
}

TEST_CASE_TEMPLATE("the vector fill gives at()'s bits for every tail, offset and block counter", T, float, double) {
  // fill runs Philox and Box–Muller on vectors of blocks; at() is the scalar reference. Lengths cover
  // every remainder modulo the vector width; the last offset makes the block counter carry from its low
  // word into its high word inside a vector (blocks 2^32 − 3 … 2^32 + 500).
  const normal_generator gen(0x123456789abcdefull);
  for (std::uint64_t offset : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{2}, std::uint64_t{7}, (std::uint64_t{1} << 34) - 11}) {
    for (std::size_t n : {8u, 9u, 15u, 16u, 31u, 33u, 63u, 64u, 65u, 127u, 129u, 1000u, 2001u}) {
      std::vector<T> out(n);
      gen.fill<T>(out, 0xfffffffeull, 77, offset);
      std::size_t differing = 0;
      for (std::size_t i = 0; i < n; ++i) differing += out[i] != gen.at<T>(0xfffffffeull, 77, offset + i);
      INFO("offset ", offset, " length ", n);
      CHECK(differing == 0);
    }
  }
}

TEST_CASE_TEMPLATE("sample and step indices of 2^32 and above get noise of their own, the same in fill and at()", T, float, double) {
  // The counter holds the low 32 bits of sample and step; their high bits enter the key. An index
  // 2^32 apart from another (first_sample = rank << 32 | i) must not repeat its noise, and the indices
  // below 2^32 keep the bits they always had (the pinned values of the next test case).
  const normal_generator gen(7);
  constexpr std::uint64_t two32 = std::uint64_t{1} << 32, top = ~std::uint64_t{0};
  const std::pair<std::uint64_t, std::uint64_t> low[] = {{0, 0}, {1, 0}, {0, 1}, {1, 1}, {top & 0xffffffffu, top & 0xffffffffu}};
  const std::pair<std::uint64_t, std::uint64_t> high[] = {{two32, 0}, {two32 + 1, 0}, {0, two32}, {0, two32 + 1}, {top, top}, {top, 0}, {0, top}};
  constexpr std::size_t n = 37;
  auto noise = [&](std::uint64_t sample, std::uint64_t step) {
    std::vector<T> out(n);
    gen.fill<T>(out, sample, step, 3);  // an odd offset and length: vector body and scalar tail
    for (std::size_t i = 0; i < n; ++i) REQUIRE(out[i] == gen.at<T>(sample, step, 3 + i));
    return out;
  };
  for (const auto& [sh, th] : high) {
    const auto a = noise(sh, th);
    CHECK(a == noise(sh, th));
    for (const auto& [sl, tl] : low) {
      INFO("sample ", sh, " step ", th, " against sample ", sl, " step ", tl);
      CHECK(a != noise(sl, tl));
    }
    CHECK(a != noise(sh & 0xffffffffu, th & 0xffffffffu));
  }
  CHECK(noise(two32, 0) != noise(0, two32));
  CHECK(noise(top, top) != noise(top, 0));
}

TEST_CASE("fill_batch splits a large item between threads with the same bits") {
  const normal_generator gen(5);
  std::vector<float> whole(200'003), reference(200'003);
  diffuse::fill_batch<float>(gen, whole, 1, 9, 2);
  for (std::size_t i = 0; i < reference.size(); ++i) reference[i] = gen.at<float>(9, 2, i);
  CHECK(whole == reference);
}

TEST_CASE("streams are distinct and reproducible; the seed matters in both halves") {
  const normal_generator a(1), b(1), c(2), d(std::uint64_t{1} << 32 | 1);
  CHECK(a.at<double>(0, 0, 0) == b.at<double>(0, 0, 0));
  CHECK(a.at<double>(0, 0, 0) != c.at<double>(0, 0, 0));
  CHECK(a.at<double>(0, 0, 0) != d.at<double>(0, 0, 0));
  CHECK(a.at<double>(0, 0, 0) != a.at<double>(1, 0, 0));
  CHECK(a.at<double>(0, 0, 0) != a.at<double>(0, 1, 0));
  // Pinned bits: any change to the documented transform, or a build that lets the compiler contract
  // a*b+c into FMA (diffuse::diffuse adds -ffp-contract=off), changes them and users' results.
  CHECK(a.at<double>(0, 0, 0) == 0x1.8587bap-2);
  CHECK(a.at<double>(0, 0, 1) == -0x1.2f637ap-2);
  CHECK(a.at<double>(0, 0, 2) == -0x1.fe6e2p-3);
  CHECK(a.at<double>(0, 0, 3) == -0x1.00fb7ap+0);
  CHECK(normal_generator(42).at<double>(7, 3, 1001) == 0x1.33518ap+0);
}

TEST_CASE_TEMPLATE("batch items get the same noise alone or in any batch, whatever the thread count", T, float, double) {
  const normal_generator gen(77);
  const std::size_t per = 3 * 33;
  std::vector<T> big(8 * per), small(4 * per), single(per);
  diffuse::fill_batch<T>(gen, big, 8, 0, 5);
  diffuse::fill_batch<T>(gen, small, 4, 4, 5);
  CHECK(std::equal(small.begin(), small.end(), big.begin() + static_cast<std::ptrdiff_t>(4 * per)));
  gen.fill<T>(single, 6, 5);
  CHECK(std::equal(single.begin(), single.end(), big.begin() + static_cast<std::ptrdiff_t>(6 * per)));
#if defined(_OPENMP)
  std::vector<T> one(64 * 1024), two(64 * 1024);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  diffuse::fill_batch<T>(gen, one, 16, 0, 1);
  omp_set_num_threads(2);
  diffuse::fill_batch<T>(gen, two, 16, 0, 1);
  omp_set_num_threads(saved);
  CHECK(one == two);
#endif
}

TEST_CASE("one million variates have the moments of N(0, 1)") {
  const normal_generator gen(2026);
  const std::size_t n = 1'000'000;
  std::vector<double> z(n);
  gen.fill<double>(z, 0, 0);
  double m1 = 0, m2 = 0, m3 = 0, m4 = 0;
  for (double v : z) {
    m1 += v;
    m2 += v * v;
    m3 += v * v * v;
    m4 += v * v * v * v;
  }
  m1 /= n;
  m2 /= n;
  m3 /= n;
  m4 /= n;
  // Standard errors for n = 1e6: mean 1/√n = 1e-3, variance √(2/n) = 1.4e-3, third moment √(15/n) = 3.9e-3,
  // fourth moment √(96/n) = 9.8e-3. Bounds at 5 standard errors: a correct generator fails ~1 in 10^6.
  CHECK(std::abs(m1) < 5e-3);
  CHECK(std::abs(m2 - 1) < 7.1e-3);
  CHECK(std::abs(m3) < 2e-2);
  CHECK(std::abs(m4 - 3) < 4.9e-2);
  // Kolmogorov–Smirnov distance to Φ: the 1e-4 critical value is 1.95/√n ≈ 2e-3.
  std::sort(z.begin(), z.end());
  double ks = 0;
  for (std::size_t i = 0; i < n; i += 1) {
    const double cdf = 0.5 * std::erfc(-z[i] / std::numbers::sqrt2);
    ks = std::max({ks, std::abs(cdf - static_cast<double>(i) / n), std::abs(cdf - static_cast<double>(i + 1) / n)});
  }
  MESSAGE("KS distance ", ks);
  CHECK(ks < 1.95 / 1000.0);
}

TEST_CASE("fill_batch rejects a buffer that does not split into the batch") {
  const normal_generator gen(1);
  std::vector<float> z(10);
  test::check_error([&] { diffuse::fill_batch<float>(gen, z, 3, 0, 0); }, {"[diffuse.shape]", "10 elements does not split into 3"});
  test::check_error([&] { diffuse::fill_batch<float>(gen, z, 0, 0, 0); }, {"does not split into 0"});
}
