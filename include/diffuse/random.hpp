#pragma once
/// \file
/// normal_generator: counter-based (Philox4x32-10) standard normal noise, identical on every compiler,
/// thread count, SIMD width and batch split (SPEC §8).
///
/// Variate e of stream (sample, step) is a pure function of (seed, sample, step, e):
///   - block b = ⌊e/4⌋ runs Philox4x32-10 with key (seed low, seed high) and counter
///     (b low, b high, step, sample), giving words w0..w3; elements 4b, 4b+1 come from the pair (w0, w1),
///     elements 4b+2, 4b+3 from (w2, w3);
///   - for a pair (a, c): u1 = ((a >> 8) | 1)·2⁻²⁴, an odd multiple of 2⁻²⁴ in (0, 1); the angle 2π·u2
///     with u2 = (c >> 8)·2⁻²⁴ is taken as quadrant q = c >> 30 plus θ = ((c >> 8) mod 2²²)·(π/2)·2⁻²²;
///   - Box–Muller in float: r = √(−2 ln u1), first element r·cos(2π u2), second r·sin(2π u2);
///   - double output is the float variate, widened exactly (float and double models see the same noise).
/// ln, cos and sin are diffuse's own polynomials in plain IEEE float arithmetic (not the C library's,
/// which differ between platforms). Bit-identity needs floating-point contraction off
/// (-ffp-contract=off), which the diffuse::diffuse CMake target adds for its consumers.
///
/// Consequences of the float transform, by design: |z| ≤ √(48 ln 2) ≈ 5.77 (u1 ≥ 2⁻²⁴; a true normal
/// exceeds it with probability 8·10⁻⁹), and each variate carries float rounding (a few units in its
/// 24-bit last place), far below anything a sampler can resolve. In exchange one core makes about four
/// times as many variates per second as with a double-precision transform (docs/performance.md).
///
/// `fill` computes a vector of consecutive blocks at once with xsimd (Philox on 64-bit integer lanes
/// holding 32-bit words, Box–Muller on float lanes), with exactly the scalar operations in the same
/// order: the vector path gives the bits of `at()`, which the tests check element by element.

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "diffuse/detail/xsimd_compat.hpp"
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
/// A uniform in (0, 1) from 53 bits of two words: (k + ½)·2⁻⁵³, never 0 or 1.
inline double uniform53(std::uint32_t hi, std::uint32_t lo) noexcept {
  const std::uint64_t k = ((static_cast<std::uint64_t>(hi) << 32) | lo) >> 11;
  return (static_cast<double>(k) + 0.5) * 0x1.0p-53;
}

// The float constants of the transform, shared by the scalar and the vector path.
inline constexpr float sqrt_half_f = 0.70710678118654752440f;
// ln 2 split so that e·ln2_hi is exact for |e| < 2¹² (ln2_hi has 12 significant bits).
inline constexpr float ln2_hi_f = 0x1.62ep-1f, ln2_lo_f = 0x1.0bfbe8p-15f;
inline constexpr float quarter_turn_step_f = 1.57079632679489661923f * 0x1.0p-22f;  // (π/2)·2⁻²², exact scaling
// atanh series 2s(1 + s²/3 + s⁴/5 + s⁶/7 + s⁸/9): |s| ≤ 0.1716, the first term left out is below 2·10⁻⁹.
inline constexpr float log_terms_f[] = {1.0f / 7.0f, 1.0f / 5.0f, 1.0f / 3.0f};  // after p = 1/9
// Taylor series on [0, π/2]: the first terms left out are below 7·10⁻¹⁰ (sin) and 7·10⁻⁹ (cos).
inline constexpr float sin_terms_f[] = {-1.0f / 39916800.0f, 1.0f / 362880.0f, -1.0f / 5040.0f, 1.0f / 120.0f,
                                        -1.0f / 6.0f};  // after p = 1/13!
inline constexpr float cos_terms_f[] = {-1.0f / 3628800.0f, 1.0f / 40320.0f, -1.0f / 720.0f, 1.0f / 24.0f,
                                        -0.5f};  // after p = 1/12!

/// ln(u) in float for a normal u in (0, 1): u = m·2^e with m in [√½, √2), ln m = 2·atanh(s),
/// s = (m−1)/(m+1). Within 2 ulps of the exact value on the range the generator uses (tests/test_random.cpp).
inline float portable_logf(float u) noexcept {
  const auto bits = std::bit_cast<std::uint32_t>(u);
  float e = static_cast<float>(static_cast<int>(bits >> 23) - 126);  // exact: a small integer
  float m = std::bit_cast<float>((bits & 0x007FFFFFu) | 0x3F000000u);  // [½, 1)
  if (m < sqrt_half_f) {
    m = m * 2.0f;
    e = e - 1.0f;
  }
  const float s = (m - 1.0f) / (m + 1.0f);
  const float s2 = s * s;
  float p = 1.0f / 9.0f;
  for (const float c : log_terms_f) p = p * s2 + c;
  const float log_m = 2.0f * s + 2.0f * s * (s2 * p);
  return e * ln2_hi_f + (log_m + e * ln2_lo_f);
}

/// sin and cos of θ in [0, π/2) in float, by their Taylor series.
inline void portable_sincos_quarterf(float theta, float& s, float& c) noexcept {
  const float x2 = theta * theta;
  float ps = 1.0f / 6227020800.0f;  // 1/13!
  for (const float t : sin_terms_f) ps = ps * x2 + t;
  s = theta + theta * (x2 * ps);
  float pc = 1.0f / 479001600.0f;  // 1/12!
  for (const float t : cos_terms_f) pc = pc * x2 + t;
  c = 1.0f + x2 * pc;
}

/// The two variates of one Box–Muller pair from the words (a, c), as the file comment defines them.
inline void box_muller_pair(std::uint32_t a, std::uint32_t c, float& z_cos, float& z_sin) noexcept {
  const float u1 = static_cast<float>(static_cast<std::int32_t>((a >> 8) | 1u)) * 0x1.0p-24f;
  const float r = std::sqrt(-2.0f * portable_logf(u1));
  const float theta = static_cast<float>(static_cast<std::int32_t>((c >> 8) & 0x3FFFFFu)) * quarter_turn_step_f;
  float sq = 0, cq = 0;
  portable_sincos_quarterf(theta, sq, cq);
  float s = 0, co = 0;
  switch (c >> 30) {
    case 0: s = sq; co = cq; break;
    case 1: s = cq; co = -sq; break;
    case 2: s = -sq; co = -cq; break;
    default: s = -cq; co = sq; break;
  }
  z_cos = r * co;
  z_sin = r * s;
}

/// 32 × 32 → 64-bit products of the low words of 64-bit lanes (pmuludq where the ISA has it); the high
/// words of the operands are ignored.
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
  const xsimd::batch<std::uint64_t, A> low32(0xFFFFFFFFull);
  return (a & low32) * (b & low32);  // both factors below 2^32: the 64-bit product is exact
}

/// Stores even[0], odd[0], even[1], odd[1], … (2·size floats) to out.
template <class A>
inline void store_interleaved(const xsimd::batch<float, A>& even, const xsimd::batch<float, A>& odd, float* out) noexcept {
  using F = xsimd::batch<float, A>;
#if XSIMD_WITH_AVX512F
  if constexpr (std::is_base_of_v<xsimd::avx512f, A>) {
    const __m512i first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i second = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    _mm512_storeu_ps(out, _mm512_permutex2var_ps(even.data, first, odd.data));
    _mm512_storeu_ps(out + 16, _mm512_permutex2var_ps(even.data, second, odd.data));
    return;
  }
#endif
#if XSIMD_WITH_AVX
  if constexpr (std::is_base_of_v<xsimd::avx, A>) {
    const __m256 lo = _mm256_unpacklo_ps(even.data, odd.data);  // e0 o0 e1 o1 | e4 o4 e5 o5
    const __m256 hi = _mm256_unpackhi_ps(even.data, odd.data);  // e2 o2 e3 o3 | e6 o6 e7 o7
    _mm256_storeu_ps(out, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
    return;
  }
#endif
  if constexpr (F::size == 4) {  // one 128-bit register (SSE, NEON): zip is the whole interleave
    xsimd::zip_lo(even, odd).store_unaligned(out);
    xsimd::zip_hi(even, odd).store_unaligned(out + 4);
  } else {
    alignas(64) float e[F::size], o[F::size];
    even.store_aligned(e);
    odd.store_aligned(o);
    for (std::size_t l = 0; l < F::size; ++l) {
      out[2 * l] = e[l];
      out[2 * l + 1] = o[l];
    }
  }
}

/// The Philox round keys of one seed as vectors of 64-bit lanes, computed once per fill as the scalar
/// rounds compute them.
template <class A>
struct philox_round_keys {
  xsimd::batch<std::uint64_t, A> k0[10], k1[10];
  philox_round_keys(std::uint32_t key0, std::uint32_t key1) noexcept {
    for (int round = 0; round < 10; ++round) {
      k0[round] = xsimd::batch<std::uint64_t, A>(std::uint64_t{key0});
      k1[round] = xsimd::batch<std::uint64_t, A>(std::uint64_t{key1});
      key0 += 0x9E3779B9u;
      key1 += 0xBB67AE85u;
    }
  }
};

/// Writes the 4·K·W float variates of blocks first_block … first_block + K·W − 1 (W blocks per vector) to
/// out. The K vectors go side by side, statement by statement: the Philox rounds and the polynomials are
/// dependency chains, and interleaving independent ones lets the core overlap them. Every operation is
/// the one box_muller_pair performs on the same lane, so the results are bit-identical.
template <std::size_t K, class A>
inline void fill_block_vectors(const philox_round_keys<A>& keys, std::uint32_t step, std::uint32_t sample,
                               std::uint64_t first_block, float* out) noexcept {
  using F = xsimd::batch<float, A>;
  using U = xsimd::batch<std::uint64_t, A>;   // Philox words, one block per 64-bit lane
  using UI = xsimd::batch<std::uint32_t, A>;  // the same words as 32-bit lanes, two per block
  using I = xsimd::batch<std::int32_t, A>;
  static_assert(2 * U::size == F::size && UI::size == F::size, "a float vector holds two words per 64-bit lane");
  constexpr std::size_t W = U::size;
  alignas(64) std::uint64_t iota_lanes[W];
  for (std::size_t l = 0; l < W; ++l) iota_lanes[l] = l;
  const U iota = U::load_aligned(iota_lanes);
  const U low32(0xFFFFFFFFull), m0(0xD2511F53ull), m1(0xCD9E8D57ull);
  U c0[K], c1[K], c2[K], c3[K];
  for (std::size_t v = 0; v < K; ++v) {
    const U block = U(first_block + v * W) + iota;
    c0[v] = block;  // only its low word is read
    c1[v] = block >> 32;
    c2[v] = U(std::uint64_t{step});
    c3[v] = U(std::uint64_t{sample});
  }
  // The rounds keep each 32-bit word in the low half of its lane and leave whatever the arithmetic
  // puts in the high half there: mul_wide reads only low halves, and the words are masked at the end.
  for (int round = 0; round < 10; ++round) {
    for (std::size_t v = 0; v < K; ++v) {
      const U p0 = mul_wide<A>(m0, c0[v]), p1 = mul_wide<A>(m1, c2[v]);
      const U n0 = (p1 >> 32) ^ c1[v] ^ keys.k0[round];
      const U n2 = (p0 >> 32) ^ c3[v] ^ keys.k1[round];
      c1[v] = p1;
      c3[v] = p0;
      c0[v] = n0;
      c2[v] = n2;
    }
  }
  // Lane 2j of a float vector is block j's pair (w0, w1), lane 2j + 1 its pair (w2, w3).
  F r[K], theta[K];
  UI angle_words[K];
  for (std::size_t v = 0; v < K; ++v) {
    const UI a = bit_cast_lanes<UI>((c0[v] & low32) | (c2[v] << 32));
    angle_words[v] = bit_cast_lanes<UI>((c1[v] & low32) | (c3[v] << 32));
    const F u1 = xsimd::to_float(bit_cast_lanes<I>((a >> 8) | UI(1u))) * F(0x1.0p-24f);
    // portable_logf(u1): u1 is a normal float, so its exponent and mantissa are its bit fields.
    const UI bits = bit_cast_lanes<UI>(u1);
    F e = xsimd::to_float(bit_cast_lanes<I>(bits >> 23)) - F(126.0f);
    F m = bit_cast_lanes<F>((bits & UI(0x007FFFFFu)) | UI(0x3F000000u));
    const auto small = m < F(sqrt_half_f);
    m = xsimd::select(small, m * F(2.0f), m);
    e = xsimd::select(small, e - F(1.0f), e);
    const F s = (m - F(1.0f)) / (m + F(1.0f));
    const F s2 = s * s;
    F p(1.0f / 9.0f);
    for (const float t : log_terms_f) p = p * s2 + F(t);
    const F log_m = F(2.0f) * s + F(2.0f) * s * (s2 * p);
    const F log_u1 = e * F(ln2_hi_f) + (log_m + e * F(ln2_lo_f));
    r[v] = xsimd::sqrt(F(-2.0f) * log_u1);
    theta[v] = xsimd::to_float(bit_cast_lanes<I>((angle_words[v] >> 8) & UI(0x3FFFFFu))) * F(quarter_turn_step_f);
  }
  for (std::size_t v = 0; v < K; ++v) {
    // portable_sincos_quarterf(θ), then the quadrant: q odd swaps sin and cos, and the sign bits of
    // sin (q ≥ 2) and cos (q = 1 or 2) are the top angle bit and the XOR of the top two, as in the
    // scalar switch.
    const F x2 = theta[v] * theta[v];
    F ps(1.0f / 6227020800.0f), pc(1.0f / 479001600.0f);
    for (std::size_t i = 0; i < 5; ++i) {
      ps = ps * x2 + F(sin_terms_f[i]);
      pc = pc * x2 + F(cos_terms_f[i]);
    }
    const UI sq = bit_cast_lanes<UI>(theta[v] + theta[v] * (x2 * ps));
    const UI cq = bit_cast_lanes<UI>(F(1.0f) + x2 * pc);
    const UI c = angle_words[v];
    const UI swap = bit_cast_lanes<UI>(bit_cast_lanes<I>(c << 1) >> 31);  // all ones when q is odd
    const UI differ = (sq ^ cq) & swap;
    const UI sign_bit(0x80000000u);
    const F sin_turn = bit_cast_lanes<F>(sq ^ differ ^ (c & sign_bit));
    const F cos_turn = bit_cast_lanes<F>(cq ^ differ ^ ((c ^ (c << 1)) & sign_bit));
    store_interleaved<A>(r[v] * cos_turn, r[v] * sin_turn, out + 4 * v * W);
  }
}

/// The vectors of blocks fill_blocks_vector runs side by side: four with 16-float vectors (AVX-512, 32
/// registers), two with narrower ones (16 registers on x86: more would spill). Measured on AVX-512 with
/// 1, 2, 3, 4, 6: 1.27, 1.03, 0.88, 0.83, 1.00 ns per variate (bench_steps BM_noise, 100K elements).
template <class A>
inline constexpr std::size_t noise_vectors_side_by_side = xsimd::batch<float, A>::size >= 16 ? 4 : 2;

/// Writes the 4·count float variates of blocks first_block … first_block + count − 1 of one stream to
/// out, whole vectors of blocks at a time; returns how many blocks it wrote (a multiple of the vector
/// size; the caller finishes the rest with the scalar quad()).
inline std::size_t fill_blocks_vector(std::uint32_t k0, std::uint32_t k1, std::uint32_t step, std::uint32_t sample,
                                      std::uint64_t first_block, std::size_t count, float* out) noexcept {
  using A = xsimd::default_arch;
  constexpr std::size_t W = xsimd::batch<std::uint64_t, A>::size;
  constexpr std::size_t K = noise_vectors_side_by_side<A>;
  if (count < W) return 0;
  const philox_round_keys<A> keys(k0, k1);
  std::size_t done = 0;
  for (; done + K * W <= count; done += K * W) fill_block_vectors<K, A>(keys, step, sample, first_block + done, out + 4 * done);
  for (; done + W <= count; done += W) fill_block_vectors<1, A>(keys, step, sample, first_block + done, out + 4 * done);
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

  /// The four variates of block b of stream (sample, step): elements 4b … 4b + 3.
  void quad(std::uint64_t sample, std::uint64_t step, std::uint64_t block, float (&z)[4]) const noexcept {
    std::uint32_t k0, k1;
    stream_key(sample, step, k0, k1);
    const philox4x32 w = philox4x32::generate(static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                                              static_cast<std::uint32_t>(step), static_cast<std::uint32_t>(sample), k0, k1);
    detail::box_muller_pair(w.v[0], w.v[1], z[0], z[1]);
    detail::box_muller_pair(w.v[2], w.v[3], z[2], z[3]);
  }

  /// Variate `element` of stream (sample, step).
  template <Real Scalar>
  Scalar at(std::uint64_t sample, std::uint64_t step, std::uint64_t element) const noexcept {
    float z[4];
    quad(sample, step, element / 4, z);
    return static_cast<Scalar>(z[element % 4]);
  }

  /// out[i] = variate element_offset + i of stream (sample, step). Allocates nothing.
  template <Real Scalar>
  void fill(std::span<Scalar> out, std::uint64_t sample, std::uint64_t step, std::uint64_t element_offset = 0) const noexcept {
    if constexpr (std::is_same_v<Scalar, float>) {
      fill_float(out, sample, step, element_offset);
    } else {
      // The variates are floats: make them a stack buffer at a time and widen.
      constexpr std::size_t piece = 1024;
      alignas(64) float buffer[piece];
      for (std::size_t i = 0; i < out.size(); i += piece) {
        const std::size_t n = std::min(piece, out.size() - i);
        fill_float(std::span<float>(buffer, n), sample, step, element_offset + i);
        for (std::size_t j = 0; j < n; ++j) out[i + j] = static_cast<Scalar>(buffer[j]);
      }
    }
  }

 private:
  // The counter holds only the low 32 bits of sample and step. Their high 32 bits perturb the key
  // instead, and only when nonzero, so every stream with both below 2^32 keeps the bits it always had
  // and samples 2^32 apart no longer share their noise.
  void stream_key(std::uint64_t sample, std::uint64_t step, std::uint32_t& k0, std::uint32_t& k1) const noexcept {
    k0 = k0_;
    k1 = k1_;
    const auto sample_hi = static_cast<std::uint32_t>(sample >> 32), step_hi = static_cast<std::uint32_t>(step >> 32);
    if ((sample_hi | step_hi) == 0) return;
    const philox4x32 h = philox4x32::generate(sample_hi, step_hi, 0x64696666u, 0x75736521u, 0x68696768u, 0x62697473u);
    k0 ^= h.v[0];
    k1 ^= h.v[1];
  }

  void fill_float(std::span<float> out, std::uint64_t sample, std::uint64_t step, std::uint64_t element_offset) const noexcept {
    std::size_t i = 0;
    const std::size_t n = out.size();
    std::uint64_t e = element_offset;
    std::uint32_t k0, k1;
    stream_key(sample, step, k0, k1);
    float z[4];
    if (n > 0 && e % 4 != 0) {  // a start inside a block takes the rest of that block
      quad(sample, step, e / 4, z);
      for (std::size_t k = e % 4; k < 4 && i < n; ++k, ++i, ++e) out[i] = z[k];
    }
    // Whole blocks, vectors of them at a time, then the rest one block at a time.
    const std::size_t vector_blocks = detail::fill_blocks_vector(
        k0, k1, static_cast<std::uint32_t>(step), static_cast<std::uint32_t>(sample), e / 4, (n - i) / 4, out.data() + i);
    i += 4 * vector_blocks;
    e += 4 * vector_blocks;
    for (; i < n; e += 4) {
      quad(sample, step, e / 4, z);
      for (std::size_t k = 0; k < 4 && i < n; ++k) out[i++] = z[k];
    }
  }

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
