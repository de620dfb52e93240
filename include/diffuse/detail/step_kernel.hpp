#pragma once
// The per-element maths shared by every sampler step: model output -> x̂0 -> post-processing -> update,
// run as one pass over memory with xsimd vectors, and the non-finite check folded into that pass.
// Not part of the public API.
//
// Every element formula is written once, as a generic lambda over a value type V that is either the
// Scalar itself (the scalar reference path and the loop tails) or an xsimd batch of Scalar. Both run the
// same IEEE operations in the same order, with no fused multiply-add (diffuse::diffuse compiles with
// -ffp-contract=off and the kernels never call fma), so the vector path gives the scalar path's bits
// exactly, for every vector width and every split of the work between threads.

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstddef>
#include <span>
#include <type_traits>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "diffuse/error.hpp"
#include "diffuse/posterior.hpp"
#include "diffuse/random.hpp"
#include "diffuse/shape.hpp"
#include "diffuse/step_buffers.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace detail {

/// x̂0 = x0_from_x·x_t + x0_from_out·out and ε̂ = eps_from_x·x_t + eps_from_out·out, as the prediction
/// type says (SPEC §2, §4). Computed once per step in double.
struct prediction_coefficients {
  double x0_from_x = 0, x0_from_out = 0;
  double eps_from_x = 0, eps_from_out = 0;
};

/// Linear maps from (x_t, model output) to x̂0 and ε̂ at a step with ᾱ_t; c1, c2 are the posterior
/// coefficients (only used for previous-x prediction).
inline prediction_coefficients make_prediction_coefficients(prediction_type type, double alpha_bar_t, double c1,
                                                            double c2) {
  const double a = std::sqrt(alpha_bar_t);
  const double b = std::sqrt(1.0 - alpha_bar_t);
  prediction_coefficients k;
  switch (type) {
    case prediction_type::epsilon:
      // The same table values guided-diffusion uses: x̂0 = x/√ᾱ − √(1/ᾱ − 1)·ε.
      k.x0_from_x = 1.0 / a;
      k.x0_from_out = -std::sqrt(1.0 / alpha_bar_t - 1.0);
      k.eps_from_out = 1.0;
      break;
    case prediction_type::sample:
      k.x0_from_out = 1.0;
      k.eps_from_x = 1.0 / b;
      k.eps_from_out = -a / b;
      break;
    case prediction_type::v_prediction:
      k.x0_from_x = a;
      k.x0_from_out = -b;
      k.eps_from_x = b;
      k.eps_from_out = a;
      break;
    case prediction_type::flow_prediction:
      refuse_flow_prediction(type, "the DDPM / DDIM samplers");
      break;
    case prediction_type::previous_x:
      // x̂0 = (μ − c2·x_t)/c1; ε̂ then follows from x̂0.
      k.x0_from_x = -c2 / c1;
      k.x0_from_out = 1.0 / c1;
      k.eps_from_x = (1.0 - a * k.x0_from_x) / b;
      k.eps_from_out = -a * k.x0_from_out / b;
      break;
  }
  return k;
}

/// Which per-thread scratch buffer: each use has its own so they never overlap.
enum class scratch_slot { quantile, x0, noise };

/// Per-thread scratch of at least n elements: it grows once, then is reused, so steps after the first
/// allocate nothing (one buffer per thread and slot, safe under OpenMP).
template <class Scalar, scratch_slot Slot>
std::span<Scalar> thread_scratch(std::size_t n) {
  thread_local std::vector<Scalar> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return std::span<Scalar>(buffer.data(), n);
}

/// The p-quantile of |v| with linear interpolation between order statistics (SPEC §11).
template <class Scalar>
double abs_quantile(std::span<const Scalar> values, double p) {
  const auto scratch = thread_scratch<Scalar, scratch_slot::quantile>(values.size());
  const std::size_t n = values.size();
  for (std::size_t i = 0; i < n; ++i) scratch[i] = std::abs(values[i]);
  const double h = p * static_cast<double>(n - 1);
  const auto lo = static_cast<std::size_t>(std::floor(h));
  auto first = scratch.begin();
  std::nth_element(first, first + static_cast<std::ptrdiff_t>(lo), first + static_cast<std::ptrdiff_t>(n));
  const double v_lo = static_cast<double>(scratch[lo]);
  if (lo + 1 >= n) return v_lo;
  // The next order statistic is the smallest element above position lo.
  const double v_hi = static_cast<double>(
      *std::min_element(first + static_cast<std::ptrdiff_t>(lo + 1), first + static_cast<std::ptrdiff_t>(n)));
  return v_lo + (h - static_cast<double>(lo)) * (v_hi - v_lo);
}

/// The dynamic-thresholding bound s of one item's x̂0: clamp(quantile_p(|x̂0|), 1, max_value) (SPEC §4).
/// The quantile needs every element of the item before any can be scaled, so it stays a pass of its own;
/// the clamp-and-divide by s is folded into the update pass.
template <class Scalar>
Scalar threshold_bound(std::span<const Scalar> x0, const dynamic_threshold& threshold) {
  const double s = std::clamp(abs_quantile<Scalar>(x0, threshold.ratio), 1.0, threshold.max_value);
  return static_cast<Scalar>(s);
}

// ---------------------------------------------------------------------------------------------------
// Element access and operations shared by the scalar and the vector paths.

/// The vector type of the kernels: xsimd's widest instruction set enabled at compile time (AVX-512 with
/// -march=native on a recent x86, SSE2 for a plain x86-64 build, NEON on ARM).
template <class Scalar>
using simd = xsimd::batch<Scalar>;

template <class V>
struct lane {
  using type = V;
};
template <class T, class A>
struct lane<xsimd::batch<T, A>> {
  using type = T;
};
/// The element type of V (V itself for a scalar).
template <class V>
using lane_t = typename lane<V>::type;

template <class V, class S>
inline V load(const S* p) noexcept {
  if constexpr (std::is_same_v<V, S>) {
    return *p;
  } else {
    return V::load_unaligned(p);
  }
}

template <class V, class S>
inline void store(S* p, const V& v) noexcept {
  if constexpr (std::is_same_v<V, S>) {
    *p = v;
  } else {
    v.store_unaligned(p);
  }
}

/// (v < lo ? lo : v), then (hi < that ? hi : that): std::clamp's exact semantics, NaN passing through,
/// in both paths (a vector min/max instruction would treat NaN differently).
template <class V>
inline V clamp_like_std(const V& v, const V& lo, const V& hi) noexcept {
  if constexpr (std::is_arithmetic_v<V>) {
    const V m = v < lo ? lo : v;
    return hi < m ? hi : m;
  } else {
    const V m = xsimd::select(v < lo, lo, v);
    return xsimd::select(hi < m, hi, m);
  }
}

/// Running probes for non-finite values: acc += v − v stays 0 while every v is finite and becomes NaN
/// at the first Inf or NaN. One subtraction and one addition per element, on data already in registers.
template <class V>
struct finite_probe {
  V model = V(lane_t<V>(0));   ///< the model output
  V state = V(lane_t<V>(0));   ///< x_t, the state the step starts from
  V result = V(lane_t<V>(0));  ///< x_prev, the state the step produces
};

/// Bits of the mask a kernel returns: which buffers hold a non-finite value.
enum non_finite_bits : int { non_finite_model = 1, non_finite_state = 2, non_finite_result = 4 };

template <class V>
inline bool any_nan(const V& v) noexcept {
  if constexpr (std::is_arithmetic_v<V>) {
    return v != v;
  } else {
    return xsimd::any(xsimd::isnan(v));  // not v != v: xsimd's != is the ordered compare, false on NaN
  }
}

template <class V>
inline int probe_mask(const finite_probe<V>& p) noexcept {
  return (any_nan(p.model) ? non_finite_model : 0) | (any_nan(p.state) ? non_finite_state : 0) |
         (any_nan(p.result) ? non_finite_result : 0);
}

/// Runs `body(j, probe)` over elements [lo, hi): vectors of simd<Scalar>::size while they fit (when
/// `vectorize`; `Vector = false` for bodies with no vector form), then one element at a time. Returns the
/// non-finite mask of the probes.
template <class Scalar, bool Vector = true, class Body>
int run_range(std::size_t lo, std::size_t hi, bool vectorize, const Body& shared_body) {
  // A private copy of the closure: its coefficients and flags then live in registers. Read through the
  // caller's reference they are reloaded after every store to x_prev, which the compiler must assume
  // may alias them (they are Scalars too).
  const Body body = shared_body;
  std::size_t j = lo;
  int mask = 0;
  if constexpr (Vector) {
    using V = simd<Scalar>;
    if (vectorize) {
      finite_probe<V> p;
      for (; j + V::size <= hi; j += V::size) body(j, p);
      mask |= probe_mask(p);
    }
  }
  finite_probe<Scalar> p;
  for (; j < hi; ++j) body(j, p);
  return mask | probe_mask(p);
}

/// Elements below which an elementwise pass runs on one thread: starting a parallel region costs a few
/// microseconds, which a pass over 64K floats (1 MB of traffic) no longer notices.
inline constexpr std::size_t parallel_threshold = std::size_t{1} << 16;

/// Runs run_chunk(lo, hi) over [0, n) split into fixed chunks shared between OpenMP threads when n is
/// large (one chunk otherwise); returns the OR of the chunks' non-finite masks. Chunks are a multiple of
/// every vector width, so only the last one has a scalar tail.
template <class RunChunk>
int for_each_chunk(std::size_t n, const RunChunk& run_chunk) {
#if defined(_OPENMP)
  if (n >= parallel_threshold && omp_get_max_threads() > 1 && !omp_in_parallel()) {
    constexpr std::size_t chunk = std::size_t{1} << 14;
    const auto chunks = static_cast<std::ptrdiff_t>((n + chunk - 1) / chunk);
    int mask = 0;
#pragma omp parallel for schedule(static) reduction(| : mask)
    for (std::ptrdiff_t c = 0; c < chunks; ++c) {
      const std::size_t lo = static_cast<std::size_t>(c) * chunk;
      mask |= run_chunk(lo, std::min(n, lo + chunk));
    }
    return mask;
  }
#endif
  return run_chunk(std::size_t{0}, n);
}

/// Runs `body` over elements [0, n), in chunks shared between OpenMP threads when n is large. Each
/// element is computed by the same operations whatever the split, so the bits do not depend on the
/// thread count. Returns the OR of the chunks' non-finite masks.
template <class Scalar, class Body>
int run_elementwise(std::size_t n, bool vectorize, const Body& body) {
  return for_each_chunk(n, [&](std::size_t lo, std::size_t hi) { return run_range<Scalar>(lo, hi, vectorize, body); });
}

/// out[0, hi − lo) = the generated noise of elements [lo, hi) of a batch stored flat, items of per_item
/// elements: each item's stream from its own element offset, as fill_batch addresses it.
template <class Scalar>
void fill_generated_noise(const generated_noise& g, std::size_t per_item, std::size_t lo, std::size_t hi, Scalar* out) {
  while (lo < hi) {
    const std::size_t item = lo / per_item, offset = lo % per_item, count = std::min(hi - lo, per_item - offset);
    g.generator->fill<Scalar>(std::span<Scalar>(out, count), g.first_sample + item, g.stream, offset);
    out += count;
    lo += count;
  }
}

/// run_elementwise for a step that generates its noise: each thread makes the noise of `piece`
/// elements into its own buffer (16 KB of floats, which stays in L1) and at once runs
/// make_body(offset, noise) over them, a body whose pointers start at element `offset` and whose noise
/// is the buffer. The chunks and the bits are those of run_elementwise over a filled noise buffer.
template <class Scalar, class MakeBody>
int run_elementwise_generated(std::size_t n, std::size_t per_item, bool vectorize, const generated_noise& g,
                              const MakeBody& make_body) {
  constexpr std::size_t piece = 4096;  // a multiple of every vector width
  return for_each_chunk(n, [&](std::size_t lo, std::size_t hi) {
    const std::span<Scalar> noise = thread_scratch<Scalar, scratch_slot::noise>(piece);
    int mask = 0;
    for (std::size_t a = lo; a < hi; a += piece) {
      const std::size_t b = std::min(hi, a + piece);
      fill_generated_noise(g, per_item, a, b, noise.data());
      mask |= run_range<Scalar>(0, b - a, vectorize, make_body(a, static_cast<const Scalar*>(noise.data())));
    }
    return mask;
  });
}

/// The fused pass of a step over its n elements. `at(offset, nullptr)` gives the step's pointers from
/// element `offset`, `make_update(pointers)` its element body. With generated noise the body runs piece
/// by piece on freshly generated noise; otherwise once over the buffers.
template <class Scalar, class At, class MakeUpdate>
int run_fused_pass(std::size_t n, std::size_t per_item, bool vectorize, bool noisy, const generated_noise& g, const At& at,
                   const MakeUpdate& make_update) {
  if (noisy && g.generator)
    return run_elementwise_generated<Scalar>(n, per_item, vectorize, g, [&](std::size_t offset, const Scalar* z) {
      auto q = at(offset, nullptr);
      q.z = z;
      return make_update(q);
    });
  return run_elementwise<Scalar>(n, vectorize, make_update(at(0, nullptr)));
}

/// One item's generated noise (elements [base, base + per_item)) in this thread's noise scratch, for
/// the per-item passes.
template <class Scalar>
const Scalar* generated_item_noise(const generated_noise& g, std::size_t per_item, std::size_t base) {
  const std::span<Scalar> z = thread_scratch<Scalar, scratch_slot::noise>(per_item);
  fill_generated_noise(g, per_item, base, base + per_item, z.data());
  return z.data();
}

/// Runs `body(i)` for every batch item, in parallel when OpenMP is on and the work is large enough to pay
/// for the threads. `body` returns a non-finite mask; the result is the lowest item that reported one
/// (batch when none did), the same for any thread count.
template <class Body>
std::size_t for_each_item(std::size_t batch, std::size_t per_item, Body&& body) {
  std::size_t first = batch;
#if defined(_OPENMP)
  const bool parallel = batch > 1 && batch * per_item >= (std::size_t{1} << 15);
#pragma omp parallel for schedule(static) if (parallel) reduction(min : first)
  for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(batch); ++i)
    if (body(static_cast<std::size_t>(i)) != 0) first = std::min(first, static_cast<std::size_t>(i));
#else
  (void)per_item;
  for (std::size_t i = 0; i < batch; ++i)
    if (body(i) != 0) first = std::min(first, i);
#endif
  return first;
}

/// Step options fixed at compile time for the plain fused pass (no guidance, no x̂0 output, no re-derived
/// ε̂): the loop then carries no branch on them, which is worth 1.5× when the data sit in cache.
template <bool Noisy, bool Check, bool Clip>
struct fixed_flags {
  static constexpr bool known = true, noisy = Noisy, check = Check, clip = Clip;
};
/// Every option read at run time (the general pass).
struct runtime_flags {
  static constexpr bool known = false, noisy = false, check = false, clip = false;
};

/// Calls f(fixed_flags<noisy, check, clip>{}) when `plain`, else f(runtime_flags{}).
template <class F>
int with_flags(bool plain, bool noisy, bool check, bool clip, F&& f) {
  if (!plain) return f(runtime_flags{});
  switch ((noisy ? 1 : 0) | (check ? 2 : 0) | (clip ? 4 : 0)) {
    case 0: return f(fixed_flags<false, false, false>{});
    case 1: return f(fixed_flags<true, false, false>{});
    case 2: return f(fixed_flags<false, true, false>{});
    case 3: return f(fixed_flags<true, true, false>{});
    case 4: return f(fixed_flags<false, false, true>{});
    case 5: return f(fixed_flags<true, false, true>{});
    case 6: return f(fixed_flags<false, true, true>{});
    default: return f(fixed_flags<true, true, true>{});
  }
}

// ---------------------------------------------------------------------------------------------------
// The non-finite error.

template <class Scalar>
std::size_t first_non_finite(std::span<const Scalar> v) noexcept {
  for (std::size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i])) return i;
  return v.size();
}

/// Raises the [diffuse.numeric] error of a step whose pass found a non-finite value: finds the first one,
/// model output first (a model fault is the usual cause, and an in-place step may already have
/// overwritten x_t), then x_t, then the x_prev the step computed.
template <class Scalar>
[[noreturn]] void fail_non_finite(int k, int t, std::span<const Scalar> model_output, std::size_t output_factor,
                                  std::span<const Scalar> x_t, std::span<const Scalar> x_prev, const sample_shape& shape) {
  const std::size_t per_item = shape.channels * shape.spatial;
  const char* which = "sampler state x_prev computed by the step from finite inputs";
  std::size_t at = first_non_finite(model_output), per = per_item * output_factor;
  Scalar value = at < model_output.size() ? model_output[at] : Scalar(0);
  if (at < model_output.size()) {
    which = "model output";
  } else if ((at = first_non_finite(x_t)) < x_t.size()) {
    which = x_t.data() == x_prev.data() ? "sampler state (x_t, stepped in place)" : "sampler state x_t";
    value = x_t[at];
    per = per_item;
  } else {
    at = first_non_finite(x_prev);
    value = at < x_prev.size() ? x_prev[at] : Scalar(0);
    per = per_item;
  }
  const char* kind = std::isnan(value) ? "NaN" : (value > 0 ? "+Inf" : "-Inf");
  fail(error_kind::numeric, kind, " in the ", which, " at step ", k, " (t = ", t, "), batch item ", at / per,
       ", element ", at % per, "; expected finite values (check_finite = false in the sampler options lets them "
       "through)");
}

}  // namespace detail
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
