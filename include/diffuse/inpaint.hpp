#pragma once
/// \file
/// inpainting: known values re-imposed on the state after every step of any sampler (DDPM, DDIM, every
/// solver of samplers/), for inpainting and for conditioning a trajectory on known entries.
///
/// A per-element mask says which elements are known and `values` holds their clean values x0. After each
/// step the known elements of the new state are replaced, in one of two ways:
///
///     clamp:   x_next[i] = values[i]                        (Diffusion Policy's condition copy after each
///                                                           step; LeRobot's hard prefix clamp)
///     renoise: x_next[i] = a·values[i] + b·z_i              (RePaint's replacement, without its resampling:
///                                                           the known region noised to the level of the next
///                                                           position, {a, b} the state there, fresh z)
///
/// {a, b} is the sampler's own noising rule at the next position: √ᾱ and √(1 − ᾱ) for DDPM and DDIM (1 and
/// 0 after the last step), solver.noising(k + 1) for the solvers (α and σ_VP for DPM-Solver++ / UniPC, 1
/// and σ for the Euler family, 1 − σ and σ for flow matching). z comes from diffuse's counter-based
/// generator: stream inpaint_noise_stream(k) of the seed given here, for sample first_sample + item, so the
/// bits do not depend on the batch split, the thread count or the sampler's own noise.
///
/// It is a sampler wrapper, not a loop of its own: inpainting<Sampler, Scalar> is the sampler (it inherits
/// every member) with a step() that runs the sampler's step and then re-imposes the known values in place
/// on x_next (and, for the Euler family's fused next model input, on that too). So sample(), solve() and a
/// user's own step loop all drive it unchanged, and it allocates nothing. Before the first model call,
/// prepare(x, k) imposes the values at the start position's level, as Diffusion Policy conditions the
/// initial noise too; sample() and solve() do not call it for you (they do not know the wrapper).
///
/// Example:
/// \code
/// const diffuse::inpainting painter(diffuse::ddim_sampler(schedule, 50), diffuse::known_values<float>{mask, image,
///                                   diffuse::inpaint_mode::renoise, /*seed=*/7}, shape);
/// diffuse::fill_initial_noise<float>(x, shape, 42);
/// painter.prepare(std::span<float>(x));
/// diffuse::sample(painter, model, std::span<float>(x), shape, {.seed = 42});
/// \endcode

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>

#include "diffuse/error.hpp"
#include "diffuse/random.hpp"
#include "diffuse/sample.hpp"
#include "diffuse/samplers/solver.hpp"
#include "diffuse/shape.hpp"
#include "diffuse/step_buffers.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// How the known elements are re-imposed after each step.
enum class inpaint_mode {
  clamp,    ///< the clean known values themselves (trajectory conditioning, policy style)
  renoise,  ///< the known values noised to the next position's level with fresh noise (image inpainting)
};

/// The noise stream of the renoise draws after loop position k: far above the sampler's own streams
/// (step_noise_stream(k) = k + 1), so a shared seed never reuses the sampler's numbers.
constexpr std::uint64_t inpaint_noise_stream(int k) noexcept { return (std::uint64_t{1} << 40) + static_cast<std::uint64_t>(k); }

/// The known part of the sample: a mask and the clean values, both of the sample's shape (N, C, ...).
template <Real Scalar>
struct known_values {
  std::span<const Scalar> mask;    ///< per element: non-zero = known (re-imposed), 0 = left to the sampler
  std::span<const Scalar> values;  ///< the clean values x0 of the known elements (others are not read)
  inpaint_mode mode = inpaint_mode::clamp;  ///< clamp or renoise
  std::uint64_t seed = 0;          ///< renoise: the generator's seed
  std::uint64_t first_sample = 0;  ///< renoise: global index of batch item 0 (as sample_options::first_sample)
};

/// A sampler whose steps re-impose known values (see the file comment). It keeps a copy of the sampler and
/// references to the mask and values, which must outlive it.
template <class Sampler, Real Scalar>
class inpainting : public Sampler {
 public:
  /// Wraps `sampler` with the known values of samples of `shape`.
  /// \throws diffuse::error when the mask or the values do not have shape.numel() elements, or the shape
  ///         has none.
  inpainting(Sampler sampler, known_values<Scalar> known, const sample_shape& shape)
      : Sampler(std::move(sampler)), known_(known), shape_(shape) {
    const std::size_t n = shape.numel();
    if (n == 0)
      detail::fail(error_kind::shape, "inpainting for a sample shape with no elements; expected batch, channels and spatial size >= 1");
    if (known.mask.size() != n || known.values.size() != n)
      detail::fail(error_kind::shape, "inpainting mask has ", known.mask.size(), " and known values have ", known.values.size(),
                   " elements; expected batch ", shape.batch, " x channels ", shape.channels, " x spatial ", shape.spatial, " = ", n,
                   " each (one mask entry per sample element)");
  }

  /// The wrapped sampler.
  const Sampler& sampler() const noexcept { return *this; }
  /// The known values.
  const known_values<Scalar>& known() const noexcept { return known_; }

  /// {a, b} of the state at position k (0 … num_steps()): the state there is a·x0 + b·ε.
  std::pair<double, double> level(int k) const {
    const int n = Sampler::num_steps();
    if (k < 0 || k > n) detail::fail(error_kind::argument, "inpainting level at position ", k, "; expected 0 <= k <= ", n);
    if constexpr (requires(const Sampler& s) { s.noising(k); }) {
      return Sampler::noising(k);
    } else {
      // DDPM / DDIM: x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·ε at the list entry, and the clean sample after the last.
      double ab = 1.0;
      if (k < n) {
        ab = Sampler::coefficients(k).alpha_bar_t;
      } else if constexpr (requires(const Sampler& s) { s.coefficients(0).alpha_bar_prev; }) {
        ab = Sampler::coefficients(n - 1).alpha_bar_prev;  // DDIM's final ᾱ (set_alpha_to_one or ᾱ_0)
      }
      return {std::sqrt(ab), std::sqrt(std::max(0.0, 1.0 - ab))};
    }
  }

  /// Imposes the known values on x at position k's level (the start of a chain: call it on the initial
  /// state before sample() / solve(), with k = options.start_index). Noise stream: inpaint_noise_stream(k − 1).
  /// For a solver at k = 0, x is what solve() receives, the noise it then multiplies by initial_scale():
  /// the imposed values are divided by initial_scale() so that they are right after that scaling (a loop
  /// of your own that scales the noise first calls prepare on the unscaled noise too).
  /// \throws diffuse::error when x does not have the shape's element count or k is out of range.
  void prepare(std::span<Scalar> x, int k = 0) const {
    double unscale = 1.0;
    if constexpr (requires(const Sampler& s) { s.initial_scale(); })
      if (k == 0) unscale = 1.0 / Sampler::initial_scale();
    impose(k - 1, x, {}, Scalar(1), unscale);
  }

  /// A DDPM / DDIM step (sample()'s form), then the known values at the next position's level.
  template <Real S, class... Rest>
  void step(int k, const step_buffers<S>& io, const sample_shape& shape, Rest&&... rest) const {
    static_assert(std::is_same_v<S, Scalar>, "diffuse::inpainting: the step's element type must be the known values' Scalar");
    check_shape(shape);
    Sampler::template step<S>(k, io, shape, std::forward<Rest>(rest)...);
    impose(k, io.x_prev, {}, Scalar(1));
  }

  /// A solver step (solve()'s form), then the known values at the next position's level; a fused next
  /// model input (the Euler family's) is rescaled where values were replaced.
  template <Real S>
  void step(int k, const solver_buffers<S>& io, const sample_shape& shape, solver_state<S>& state) const {
    static_assert(std::is_same_v<S, Scalar>, "diffuse::inpainting: the step's element type must be the known values' Scalar");
    check_shape(shape);
    Sampler::template step<S>(k, io, shape, state);
    const Scalar cin = io.next_model_input.empty() ? Scalar(1)
                                                   : static_cast<Scalar>(k + 1 < Sampler::num_steps() ? Sampler::input_scale(k + 1) : 1.0);
    impose(k, io.x_next, io.next_model_input, cin);
  }

 private:
  void check_shape(const sample_shape& shape) const {
    if (shape.batch != shape_.batch || shape.channels != shape_.channels || shape.spatial != shape_.spatial)
      detail::fail(error_kind::shape, "inpainting made for batch ", shape_.batch, " x channels ", shape_.channels, " x spatial ", shape_.spatial,
                   " stepped with batch ", shape.batch, " x ", shape.channels, " x ", shape.spatial, "; expected the shape it was made for");
  }

  /// Replaces the known elements of x (the state at position k + 1) and, when given, of next_input (cin·x).
  void impose(int k, std::span<Scalar> x, std::span<Scalar> next_input, Scalar cin, double unscale = 1.0) const {
    const std::size_t n = shape_.numel();
    if (x.size() != n) detail::fail(error_kind::shape, "inpainting a state of ", x.size(), " elements; expected ", n);
    const Scalar* m = known_.mask.data();
    const Scalar* v = known_.values.data();
    Scalar* out = x.data();
    Scalar* ni = next_input.empty() ? nullptr : next_input.data();
    if (known_.mode == inpaint_mode::clamp && unscale == 1.0) {
      for (std::size_t i = 0; i < n; ++i)
        if (m[i] != Scalar(0)) {
          out[i] = v[i];
          if (ni) ni[i] = out[i] * cin;
        }
      return;
    }
    auto [a, b] = known_.mode == inpaint_mode::clamp ? std::pair<double, double>{1.0, 0.0} : level(k + 1);
    const auto sa = static_cast<Scalar>(a * unscale), sb = static_cast<Scalar>(b * unscale);
    const normal_generator generator(known_.seed);
    const std::size_t per_item = shape_.channels * shape_.spatial;
    constexpr std::size_t piece = 256;
    Scalar z[piece];
    for (std::size_t item = 0; item < shape_.batch; ++item)
      for (std::size_t lo = 0; lo < per_item; lo += piece) {
        const std::size_t len = std::min(piece, per_item - lo), base = item * per_item + lo;
        bool any = false;
        for (std::size_t j = 0; j < len && !any; ++j) any = m[base + j] != Scalar(0);
        if (!any) continue;  // no draws where nothing is known
        generator.fill<Scalar>(std::span<Scalar>(z, len), known_.first_sample + item, inpaint_noise_stream(k), lo);
        for (std::size_t j = 0; j < len; ++j)
          if (m[base + j] != Scalar(0)) {
            out[base + j] = sa * v[base + j] + sb * z[j];
            if (ni) ni[base + j] = out[base + j] * cin;
          }
      }
  }

  known_values<Scalar> known_;
  sample_shape shape_;
};

/// Deduces inpainting<Sampler, Scalar> from the sampler and the known values.
template <class Sampler, Real Scalar>
inpainting(Sampler, known_values<Scalar>, const sample_shape&) -> inpainting<Sampler, Scalar>;

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
