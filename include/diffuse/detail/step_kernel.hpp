#pragma once
// The per-element maths shared by every sampler step: model output -> x̂0 -> post-processing -> update.
// Not part of the public API.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "diffuse/error.hpp"
#include "diffuse/posterior.hpp"
#include "diffuse/shape.hpp"

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
enum class scratch_slot { quantile, x0 };

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

/// Applies static clipping or dynamic thresholding (which replaces clipping) to one batch item's x̂0.
template <class Scalar>
void process_x0_item(std::span<Scalar> x0, const x0_processing& processing) {
  if (processing.threshold) {
    double s = abs_quantile<Scalar>(x0, processing.threshold->ratio);
    s = std::clamp(s, 1.0, processing.threshold->max_value);
    const auto ss = static_cast<Scalar>(s);
    for (auto& v : x0) v = std::clamp(v, -ss, ss) / ss;
  } else if (processing.clip_range) {
    const auto r = static_cast<Scalar>(*processing.clip_range);
    for (auto& v : x0) v = std::clamp(v, -r, r);
  }
}

/// Runs `body(i)` for every batch item, in parallel when OpenMP is on and the work is large enough to
/// pay for the threads. Each item is computed the same way whatever the thread count.
template <class Body>
void for_each_item(std::size_t batch, std::size_t per_item, Body&& body) {
#if defined(_OPENMP)
  const bool parallel = batch > 1 && batch * per_item >= (std::size_t{1} << 15);
#pragma omp parallel for schedule(static) if (parallel)
  for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(batch); ++i) body(static_cast<std::size_t>(i));
#else
  (void)per_item;
  for (std::size_t i = 0; i < batch; ++i) body(i);
#endif
}

}  // namespace detail
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
