#pragma once
/// \file
/// normal_generator: counter-based (Philox4x32-10) standard normal noise, identical on every compiler,
/// thread count, SIMD width and batch split (SPEC §8).
///
/// Variate e of stream (sample, step) is a pure function of (seed, sample, step, e):
///   - block b = ⌊e/2⌋ runs Philox4x32-10 with key (seed low, seed high) and counter
///     (b low, b high, step, sample), giving words w0..w3;
///   - u1 = (⌊(w0·2³² + w1)/2¹¹⌋ + ½)·2⁻⁵³ and u2 = the same from (w2, w3), both in (0, 1);
///   - Box–Muller: r = √(−2 ln u1), z_{2b} = r·cos(2π u2), z_{2b+1} = r·sin(2π u2), in double;
///   - float output is the double variate rounded to float.
/// ln, cos and sin are diffuse's own polynomials in plain IEEE double arithmetic (not the C library's,
/// which differ between platforms). Bit-identity needs floating-point contraction off
/// (-ffp-contract=off), which the diffuse::diffuse CMake target adds for its consumers.
///
/// `fill` computes a vector of consecutive blocks at once with xsimd (Philox on 64-bit integer lanes
/// holding 32-bit words, the transform on double lanes), with exactly the scalar operations in the same
/// order: the vector path gives the bits of `at()`, which the tests check element by element.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "diffuse/error.hpp"
#include "diffuse/model.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// The Philox4x32-10 block function (Salmon et al., SC'11): 4 counter words and 2 key words to 4 words.
struct philox4x32 {
  std::uint32_t v[4];  ///< the 4 output words w0..w3

  /// Runs the 10 rounds on counter (c0, c1, c2, c3) with key (k0, k1), the key bumped by the Weyl
  /// constants each round after the first.
  /// \param c0 counter word 0 (normal_generator: block index, low 32 bits)
  /// \param c1 counter word 1 (block index, high 32 bits)
  /// \param c2 counter word 2 (step)
  /// \param c3 counter word 3 (sample)
  /// \param k0 key word 0 (seed, low 32 bits)
  /// \param k1 key word 1 (seed, high 32 bits)
  static constexpr philox4x32 generate(std::uint32_t c0, std::uint32_t c1, std::uint32_t c2, std::uint32_t c3,
                                       std::uint32_t k0, std::uint32_t k1) noexcept {
    constexpr std::uint64_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
    constexpr std::uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
    for (int round = 0; round < 10; ++round) {
      if (round > 0) {
        k0 += w0;
        k1 += w1;
      }
      const std::uint64_t p0 = m0 * c0, p1 = m1 * c2;
      const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
      const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
      const std::uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
      c0 = n0;
      c1 = lo1;
      c2 = n2;
      c3 = lo0;
    }
    return {{c0, c1, c2, c3}};
  }
};

namespace detail {

/// ln(u) for u in (0, 1], to about 1 ulp: u = m·2^e with m in [√½, √2), ln m = 2·atanh(s), s = (m−1)/(m+1).
inline double portable_log(double u) noexcept {
  int e = 0;
  double m = std::frexp(u, &e);  // exact
  if (m < 0.70710678118654752440) {
    m *= 2.0;
    e -= 1;
  }
  const double s = (m - 1.0) / (m + 1.0);
  const double s2 = s * s;
  // atanh series 1 + s²/3 + s⁴/5 + …: |s| ≤ 0.1716, so 12 terms reach below 1e-18.
  double p = 1.0 / 23.0;
  p = p * s2 + 1.0 / 21.0;
  p = p * s2 + 1.0 / 19.0;
  p = p * s2 + 1.0 / 17.0;
  p = p * s2 + 1.0 / 15.0;
  p = p * s2 + 1.0 / 13.0;
  p = p * s2 + 1.0 / 11.0;
  p = p * s2 + 1.0 / 9.0;
  p = p * s2 + 1.0 / 7.0;
  p = p * s2 + 1.0 / 5.0;
  p = p * s2 + 1.0 / 3.0;
  const double log_m = 2.0 * s + 2.0 * s * (s2 * p);
  // ln 2 split so that e·ln2_hi is exact.
  constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  const double de = e;
  return de * ln2_hi + (log_m + de * ln2_lo);
}

/// sin and cos of θ in [0, π/2] by their Taylor series (11 terms each: below 1e-17 on that range).
inline void portable_sincos_quarter(double theta, double& s, double& c) noexcept {
  const double x2 = theta * theta;
  double ps = -1.0 / 121645100408832000.0;  // −1/19!
  ps = ps * x2 + 1.0 / 355687428096000.0;     // 1/17!
  ps = ps * x2 - 1.0 / 1307674368000.0;       // −1/15!
  ps = ps * x2 + 1.0 / 6227020800.0;          // 1/13!
  ps = ps * x2 - 1.0 / 39916800.0;            // −1/11!
  ps = ps * x2 + 1.0 / 362880.0;              // 1/9!
  ps = ps * x2 - 1.0 / 5040.0;                // −1/7!
  ps = ps * x2 + 1.0 / 120.0;                 // 1/5!
  ps = ps * x2 - 1.0 / 6.0;                   // −1/3!
  s = theta + theta * (x2 * ps);
  double pc = 1.0 / 2432902008176640000.0;  // 1/20!
  pc = pc * x2 - 1.0 / 6402373705728000.0;  // −1/18!
  pc = pc * x2 + 1.0 / 20922789888000.0;    // 1/16!
  pc = pc * x2 - 1.0 / 87178291200.0;       // −1/14!
  pc = pc * x2 + 1.0 / 479001600.0;         // 1/12!
  pc = pc * x2 - 1.0 / 3628800.0;           // −1/10!
  pc = pc * x2 + 1.0 / 40320.0;             // 1/8!
  pc = pc * x2 - 1.0 / 720.0;               // −1/6!
  pc = pc * x2 + 1.0 / 24.0;                // 1/4!
  pc = pc * x2 - 0.5;                       // −1/2!
  c = 1.0 + x2 * pc;
}

/// cos(2πu) and sin(2πu) for u in [0, 1): quadrant from 4u (exact), then the quarter-turn series.
inline void portable_sincos_turns(double u, double& s, double& c) noexcept {
  const double r = 4.0 * u;
  const double q = std::floor(r);
  const double theta = (r - q) * 1.57079632679489661923;
  double sq = 0, cq = 0;
  portable_sincos_quarter(theta, sq, cq);
  switch (static_cast<int>(q)) {
    case 0: s = sq; c = cq; break;
    case 1: s = cq; c = -sq; break;
    case 2: s = -sq; c = -cq; break;
    default: s = -cq; c = sq; break;
  }
}

/// A uniform in (0, 1) from 53 bits of two words: (k + ½)·2⁻⁵³, never 0 or 1.
inline double uniform53(std::uint32_t hi, std::uint32_t lo) noexcept {
  const std::uint64_t k = ((static_cast<std::uint64_t>(hi) << 32) | lo) >> 11;
  return (static_cast<double>(k) + 0.5) * 0x1.0p-53;
}

/// 32 × 32 → 64-bit products of the low words of 64-bit lanes (pmuludq where the ISA has it).
template <class A>
inline xsimd::batch<std::uint64_t, A> mul_wide(const xsimd::batch<std::uint64_t, A>& a,
                                               const xsimd::batch<std::uint64_t, A>& b) noexcept {
#if XSIMD_WITH_AVX512F
  if constexpr (std::is_base_of_v<xsimd::avx512f, A>) return _mm512_mul_epu32(a.data, b.data);
#endif
#if XSIMD_WITH_AVX2
  if constexpr (std::is_base_of_v<xsimd::avx2, A>) return _mm256_mul_epu32(a.data, b.data);
#endif
#if XSIMD_WITH_SSE2
  if constexpr (std::is_base_of_v<xsimd::sse2, A>) return _mm_mul_epu32(a.data, b.data);
#endif
  return a * b;  // both operands are below 2^32, so the 64-bit product is exact
}

/// Writes the 2·count variates of blocks first_block … first_block + count − 1 of one stream to out,
/// simd<double>::size blocks at a time; returns how many blocks it wrote (a multiple of the vector size;
/// the caller finishes the rest with the scalar pair()). Every operation is the one normal_generator::pair
/// performs on the same lane, so the results are bit-identical.
template <class Scalar>
std::size_t fill_blocks_vector(std::uint32_t k0, std::uint32_t k1, std::uint32_t step, std::uint32_t sample,
                               std::uint64_t first_block, std::size_t count, Scalar* out) noexcept {
  using D = xsimd::batch<double>;
  using A = typename D::arch_type;
  using U = xsimd::batch<std::uint64_t, A>;
  static_assert(U::size == D::size, "64-bit integer and double vectors have the same lane count");
  constexpr std::size_t W = D::size;
  if (count < W) return 0;
  alignas(64) std::uint64_t iota_lanes[W];
  for (std::size_t l = 0; l < W; ++l) iota_lanes[l] = l;
  const U iota = U::load_unaligned(iota_lanes);
  const U low32(0xFFFFFFFFull), m0(0xD2511F53ull), m1(0xCD9E8D57ull);
  // The round keys do not depend on the counter: compute them once, as the scalar rounds do.
  std::uint32_t rk0[10], rk1[10];
  for (int round = 0; round < 10; ++round) {
    rk0[round] = k0;
    rk1[round] = k1;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  // K vectors are generated side by side, statement by statement: the polynomial chains are latency
  // bound, and interleaving independent chains lets the core overlap them.
  constexpr std::size_t K = 2;
  alignas(64) double z0s[K][W], z1s[K][W];
  const U magic_bits(0x4330000000000000ull);
  const D magic(0x1.0p52);
  // v < 2⁵² converts by the exponent trick (2⁵² + v has v as its mantissa): exact, like the scalar cast.
  const auto small_to_double = [&](const U& v) { return xsimd::bitwise_cast<D>(v | magic_bits) - magic; };
  // AVX2 has no 64-bit integer to double conversion (xsimd would go lane by lane), so k < 2⁵³ is split
  // as hi·2²⁶ + lo; each part, the scaling and the sum are exact.
  const auto to_double = [&](const U& k) {
    return small_to_double(k >> 26) * D(0x1.0p26) + small_to_double(k & U(0x3FFFFFFull));
  };
  std::size_t done = 0;
  for (; done + K * W <= count; done += K * W) {
    U c0[K], c1[K], c2[K], c3[K];
    for (std::size_t v = 0; v < K; ++v) {
      const U block = U(first_block + done + v * W) + iota;
      c0[v] = block & low32;
      c1[v] = block >> 32;
      c2[v] = U(std::uint64_t{step});
      c3[v] = U(std::uint64_t{sample});
    }
    for (int round = 0; round < 10; ++round) {
      for (std::size_t v = 0; v < K; ++v) {
        const U p0 = mul_wide<A>(m0, c0[v]), p1 = mul_wide<A>(m1, c2[v]);
        const U n0 = (p1 >> 32) ^ c1[v] ^ U(std::uint64_t{rk0[round]});
        const U n2 = (p0 >> 32) ^ c3[v] ^ U(std::uint64_t{rk1[round]});
        c1[v] = p1 & low32;
        c3[v] = p0 & low32;
        c0[v] = n0;
        c2[v] = n2;
      }
    }
    // uniform53: (k + ½)·2⁻⁵³.
    D u1[K], u2[K], m[K], de[K];
    for (std::size_t v = 0; v < K; ++v) {
      u1[v] = (to_double(((c0[v] << 32) | c1[v]) >> 11) + D(0.5)) * D(0x1.0p-53);
      u2[v] = (to_double(((c2[v] << 32) | c3[v]) >> 11) + D(0.5)) * D(0x1.0p-53);
      // portable_log(u1): u1 is a normal number in (0, 1), so frexp is its exponent and mantissa bits.
      const U bits = xsimd::bitwise_cast<U>(u1[v]);
      m[v] = xsimd::bitwise_cast<D>((bits & U(0x000FFFFFFFFFFFFFull)) | U(0x3FE0000000000000ull));
      de[v] = small_to_double(bits >> 52) - D(1022.0);
      const auto small = m[v] < D(0.70710678118654752440);
      m[v] = xsimd::select(small, m[v] * D(2.0), m[v]);
      de[v] = xsimd::select(small, de[v] - D(1.0), de[v]);
    }
    D s[K], s2[K], p[K];
    for (std::size_t v = 0; v < K; ++v) {
      s[v] = (m[v] - D(1.0)) / (m[v] + D(1.0));
      s2[v] = s[v] * s[v];
      p[v] = D(1.0 / 23.0);
    }
    for (const double c : {1.0 / 21.0, 1.0 / 19.0, 1.0 / 17.0, 1.0 / 15.0, 1.0 / 13.0, 1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0,
                           1.0 / 5.0, 1.0 / 3.0})
      for (std::size_t v = 0; v < K; ++v) p[v] = p[v] * s2[v] + D(c);
    D r[K], theta[K], q[K], x2[K], ps[K], pc[K];
    constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    for (std::size_t v = 0; v < K; ++v) {
      const D log_m = D(2.0) * s[v] + D(2.0) * s[v] * (s2[v] * p[v]);
      const D log_u1 = de[v] * D(ln2_hi) + (log_m + de[v] * D(ln2_lo));
      r[v] = xsimd::sqrt(D(-2.0) * log_u1);
      // portable_sincos_turns(u2): quadrant from 4u (exact), then the quarter-turn series.
      const D r4 = D(4.0) * u2[v];
      q[v] = xsimd::floor(r4);
      theta[v] = (r4 - q[v]) * D(1.57079632679489661923);
      x2[v] = theta[v] * theta[v];
      ps[v] = D(-1.0 / 121645100408832000.0);
      pc[v] = D(1.0 / 2432902008176640000.0);
    }
    // The same constants, signs and order as portable_sincos_quarter (x·y − c is x·y + (−c) exactly).
    constexpr double sin_terms[] = {1.0 / 355687428096000.0, -1.0 / 1307674368000.0, 1.0 / 6227020800.0, -1.0 / 39916800.0,
                                    1.0 / 362880.0, -1.0 / 5040.0, 1.0 / 120.0, -1.0 / 6.0};
    constexpr double cos_terms[] = {-1.0 / 6402373705728000.0, 1.0 / 20922789888000.0, -1.0 / 87178291200.0,
                                    1.0 / 479001600.0, -1.0 / 3628800.0, 1.0 / 40320.0, -1.0 / 720.0, 1.0 / 24.0, -0.5};
    for (std::size_t i = 0; i < 9; ++i)
      for (std::size_t v = 0; v < K; ++v) {
        if (i < 8) ps[v] = ps[v] * x2[v] + D(sin_terms[i]);
        pc[v] = pc[v] * x2[v] + D(cos_terms[i]);
      }
    for (std::size_t v = 0; v < K; ++v) {
      const D sq = theta[v] + theta[v] * (x2[v] * ps[v]);
      const D cq = D(1.0) + x2[v] * pc[v];
      const auto q0 = q[v] == D(0.0), q1 = q[v] == D(1.0), q2 = q[v] == D(2.0);
      const D sn = xsimd::select(q0, sq, xsimd::select(q1, cq, xsimd::select(q2, -sq, -cq)));
      const D cs = xsimd::select(q0, cq, xsimd::select(q1, -sq, xsimd::select(q2, -cq, sq)));
      (r[v] * cs).store_aligned(z0s[v]);
      (r[v] * sn).store_aligned(z1s[v]);
    }
    Scalar* o = out + 2 * done;
    for (std::size_t v = 0; v < K; ++v)
      for (std::size_t l = 0; l < W; ++l) {
        o[2 * (v * W + l)] = static_cast<Scalar>(z0s[v][l]);
        o[2 * (v * W + l) + 1] = static_cast<Scalar>(z1s[v][l]);
      }
  }
  return done;
}

}  // namespace detail

/// Seeded standard normal noise addressed by (sample, step, element): any element of any stream can be
/// computed alone, so results never depend on threads, batch splits or the order of generation.
///
/// Example:
/// \code
/// diffuse::normal_generator gen(42);
/// std::vector<float> z(3 * 32 * 32);
/// gen.fill<float>(z, /*sample=*/5, /*step=*/1);  // the same numbers whatever batch sample 5 is in
/// \endcode
class normal_generator {
 public:
  /// The generator of one seed: its low and high 32 bits are the Philox key.
  explicit constexpr normal_generator(std::uint64_t seed) noexcept
      : k0_(static_cast<std::uint32_t>(seed)), k1_(static_cast<std::uint32_t>(seed >> 32)) {}

  /// The pair of variates of block b of stream (sample, step): elements 2b and 2b + 1.
  void pair(std::uint64_t sample, std::uint64_t step, std::uint64_t block, double& z0, double& z1) const noexcept {
    const philox4x32 w = philox4x32::generate(static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                                              static_cast<std::uint32_t>(step), static_cast<std::uint32_t>(sample), k0_, k1_);
    const double u1 = detail::uniform53(w.v[0], w.v[1]);
    const double u2 = detail::uniform53(w.v[2], w.v[3]);
    const double r = std::sqrt(-2.0 * detail::portable_log(u1));
    double s = 0, c = 0;
    detail::portable_sincos_turns(u2, s, c);
    z0 = r * c;
    z1 = r * s;
  }

  /// Variate `element` of stream (sample, step).
  template <Real Scalar>
  Scalar at(std::uint64_t sample, std::uint64_t step, std::uint64_t element) const noexcept {
    double z0 = 0, z1 = 0;
    pair(sample, step, element / 2, z0, z1);
    return static_cast<Scalar>(element % 2 == 0 ? z0 : z1);
  }

  /// out[i] = variate element_offset + i of stream (sample, step). Allocates nothing.
  template <Real Scalar>
  void fill(std::span<Scalar> out, std::uint64_t sample, std::uint64_t step, std::uint64_t element_offset = 0) const noexcept {
    std::size_t i = 0;
    const std::size_t n = out.size();
    std::uint64_t e = element_offset;
    double z0 = 0, z1 = 0;
    if (n > 0 && e % 2 == 1) {  // an odd start takes the second half of its block
      pair(sample, step, e / 2, z0, z1);
      out[i++] = static_cast<Scalar>(z1);
      ++e;
    }
    // Whole blocks, a vector of them at a time, then the rest one block at a time.
    const std::size_t vector_blocks =
        detail::fill_blocks_vector<Scalar>(k0_, k1_, static_cast<std::uint32_t>(step), static_cast<std::uint32_t>(sample),
                                           e / 2, (n - i) / 2, out.data() + i);
    i += 2 * vector_blocks;
    e += 2 * vector_blocks;
    for (; i + 1 < n; i += 2, e += 2) {
      pair(sample, step, e / 2, z0, z1);
      out[i] = static_cast<Scalar>(z0);
      out[i + 1] = static_cast<Scalar>(z1);
    }
    if (i < n) {
      pair(sample, step, e / 2, z0, z1);
      out[i] = static_cast<Scalar>(z0);
    }
  }

 private:
  std::uint32_t k0_, k1_;
};

/// Fills a contiguous (batch, per_sample) buffer: item i gets stream (first_sample + i, step), so sample
/// i's noise is the same whether generated alone or inside a batch of any size. Parallel over items
/// with OpenMP; the numbers do not depend on the thread count.
/// \throws diffuse::error when out.size() is not a multiple of batch.
template <Real Scalar>
void fill_batch(const normal_generator& generator, std::span<Scalar> out, std::size_t batch, std::uint64_t first_sample,
                std::uint64_t step) {
  if (batch == 0 || out.size() % batch != 0)
    detail::fail(error_kind::shape, "noise buffer of ", out.size(), " elements does not split into ", batch,
                 " batch items; expected a multiple of the batch size");
  const std::size_t per = out.size() / batch;
  // Work is split into (item, chunk) pieces so that one large item also spreads over the threads; a chunk
  // starts at an even element, on a block boundary, and every element is addressed by its own counter.
  constexpr std::size_t chunk = std::size_t{1} << 14;
  const std::size_t chunks_per_item = (per + chunk - 1) / chunk;
  const auto pieces = static_cast<std::ptrdiff_t>(batch * chunks_per_item);
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (out.size() >= (std::size_t{1} << 14))
#endif
  for (std::ptrdiff_t piece = 0; piece < pieces; ++piece) {
    const std::size_t i = static_cast<std::size_t>(piece) / chunks_per_item;
    const std::size_t offset = static_cast<std::size_t>(piece) % chunks_per_item * chunk;
    generator.fill<Scalar>(out.subspan(i * per + offset, std::min(chunk, per - offset)),
                           first_sample + static_cast<std::uint64_t>(i), step, offset);
  }
}

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
