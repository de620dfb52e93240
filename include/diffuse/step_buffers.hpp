#pragma once
/// \file
/// step_buffers: the spans one sampler step reads and writes.

#include <cstdint>
#include <initializer_list>
#include <span>
#include <utility>

#include "diffuse/error.hpp"
#include "diffuse/shape.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

class normal_generator;

/// Noise a step draws itself instead of reading it from a buffer: batch item i gets stream
/// (first_sample + i, stream) of `generator`, the numbers fill_batch(*generator, noise, N, first_sample,
/// stream) would write, so the results are bit for bit those of the buffered step. The step makes it a
/// few thousand elements at a time, just before it uses them, so the noise never leaves L1: a noisy step
/// measured 6% faster at 100K elements and 14% at 16M than fill_batch then step (BM_step_with_noise).
/// sample() steps this way.
struct generated_noise {
  const normal_generator* generator = nullptr;  ///< the seeded generator; null: no generated noise
  std::uint64_t first_sample = 0;               ///< global sample index of batch item 0
  std::uint64_t stream = 0;                     ///< the step's stream (sample() uses step_noise_stream(k))
};

/// The buffers of one sampler step, all contiguous (N, C, ...) like the sample.
///
/// Only `x_t`, `model_output` and `x_prev` are required. `x_prev` may be exactly the memory of `x_t`
/// (the update is element by element); any other overlap between an output (`x_prev`, `x0`) and another
/// buffer is a diffuse::error.
template <class Scalar>
struct step_buffers {
  std::span<const Scalar> x_t;           ///< the current sample, N·C·spatial elements
  std::span<const Scalar> model_output;  ///< the model's output at (x_t, t): C channels, or 2C for a learned variance
  std::span<const Scalar> noise = {};    ///< standard normal noise for this step; needed only when the step adds noise
                                         ///< (or give `generated` instead)
  std::span<Scalar> x_prev;              ///< receives the sample at the previous timestep
  std::span<Scalar> x0 = {};             ///< optional: receives the (post-processed) x̂0 the step used
  /// Optional classifier-guidance gradient g = s·∇ log p(y | x_t), already scaled. The ancestral step
  /// shifts its mean by σ²·g (condition_mean), DDIM shifts ε̂ by −√(1−ᾱ_t)·g (condition_score).
  std::span<const Scalar> guidance_gradient = {};
  /// Alternative to `noise`: the step generates its noise itself (see generated_noise).
  generated_noise generated = {};
};

/// The default x̂0 hook: leaves x̂0 as the model gave it.
struct no_x0_hook {
  /// Ignores one item's x̂0, its batch index and its timestep.
  template <class Span>
  void operator()(Span, std::size_t, int) const noexcept {}
};

namespace detail {

/// True when two buffers share memory; compared as addresses, since the spans may view unrelated objects.
template <class T, class U>
bool share_memory(std::span<T> a, std::span<U> b) noexcept {
  if (a.empty() || b.empty()) return false;
  const auto a0 = reinterpret_cast<std::uintptr_t>(a.data()), b0 = reinterpret_cast<std::uintptr_t>(b.data());
  return a0 < b0 + b.size_bytes() && b0 < a0 + a.size_bytes();
}

/// A step's update reads its inputs element by element while it writes its outputs, and thresholding
/// reads a whole item's x̂0 before it writes: an output that overlaps an input at an offset would read
/// values it has already overwritten. So an output is either exactly `in_place` (the same memory, which
/// the element-wise update allows) or shares no byte with any input or other output.
template <class Scalar>
void check_output_aliasing(const char* name, std::span<const Scalar> out, std::span<const Scalar> in_place,
                           const char* in_place_name,
                           std::initializer_list<std::pair<const char*, std::span<const Scalar>>> others) {
  if (out.empty()) return;
  if (!in_place.empty() && share_memory(out, in_place) && out.data() != in_place.data()) {
    const auto offset = (static_cast<long long>(reinterpret_cast<std::uintptr_t>(out.data())) -
                         static_cast<long long>(reinterpret_cast<std::uintptr_t>(in_place.data()))) /
                        static_cast<long long>(sizeof(Scalar));
    fail(error_kind::argument, name, " overlaps ", in_place_name, " shifted by ", offset, " elements; expected ", name,
         " to be exactly the memory of ", in_place_name, " (in place) or a separate buffer");
  }
  for (const auto& [other_name, other] : others)
    if (share_memory(out, other))
      fail(error_kind::argument, name, " shares memory with ", other_name, "; expected a separate buffer");
}

/// Checks every buffer of a step against the sample shape; `output_factor` is 2 for a learned variance.
template <class Scalar>
void check_step_buffers(const step_buffers<Scalar>& b, const sample_shape& shape, std::size_t output_factor,
                        bool needs_noise) {
  const std::size_t n = shape.numel();
  if (n == 0) fail(error_kind::shape, "the sample shape has no elements; expected batch, channels and spatial size >= 1");
  if (b.x_t.size() != n)
    fail(error_kind::shape, "x_t has ", b.x_t.size(), " elements; expected batch ", shape.batch, " x channels ",
         shape.channels, " x spatial ", shape.spatial, " = ", n);
  if (b.x_prev.size() != n)
    fail(error_kind::shape, "x_prev has ", b.x_prev.size(), " elements; expected ", n, " like x_t");
  if (b.model_output.size() != n * output_factor) {
    const std::size_t got_channels = b.model_output.size() / (shape.batch * shape.spatial);
    const bool whole = b.model_output.size() % (shape.batch * shape.spatial) == 0;
    if (whole)
      fail(error_kind::shape, "the model output has ", got_channels, " channels; expected ", shape.channels * output_factor,
           output_factor == 2 ? " (2C: prediction and learned variance)" : " (C: a model without learned variance)");
    fail(error_kind::shape, "the model output has ", b.model_output.size(), " elements; expected ", n * output_factor);
  }
  if (b.generated.generator && !b.noise.empty())
    fail(error_kind::argument, "the step was given both a noise buffer and generated noise; expected one of them");
  if (needs_noise && !b.generated.generator && b.noise.size() != n)
    fail(error_kind::shape, "noise has ", b.noise.size(), " elements; expected ", n,
         " (this step adds noise; or give generated noise instead)");
  if (!b.x0.empty() && b.x0.size() != n) fail(error_kind::shape, "x0 has ", b.x0.size(), " elements; expected ", n, " or none");
  if (!b.guidance_gradient.empty() && b.guidance_gradient.size() != n)
    fail(error_kind::shape, "the guidance gradient has ", b.guidance_gradient.size(), " elements; expected ", n);
  const std::span<const Scalar> x_prev(b.x_prev), x0(b.x0);
  check_output_aliasing<Scalar>("x_prev", x_prev, b.x_t, "x_t",
                                {{"the model output", b.model_output}, {"the noise", b.noise},
                                 {"the guidance gradient", b.guidance_gradient}});
  check_output_aliasing<Scalar>("x0", x0, {}, "",
                                {{"x_t", b.x_t}, {"x_prev", x_prev}, {"the model output", b.model_output},
                                 {"the noise", b.noise}, {"the guidance gradient", b.guidance_gradient}});
}

}  // namespace detail
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
