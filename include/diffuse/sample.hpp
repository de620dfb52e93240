#pragma once
/// \file
/// sample(): the whole sampling loop for any sampler and any Denoiser, with reproducible noise.

#include <algorithm>
#include <cstdint>
#include <utility>
#include <span>
#include <type_traits>
#include <vector>

#include "diffuse/error.hpp"
#include "diffuse/guidance.hpp"
#include "diffuse/model.hpp"
#include "diffuse/random.hpp"
#include "diffuse/shape.hpp"
#include "diffuse/step_buffers.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// What a per-step callback receives: position k in the list, its timestep, the sample before the step
/// and the x̂0 the step used.
template <class Scalar>
struct step_event {
  int index;                      ///< position in the timestep list (0 = noisiest)
  int num_steps;                  ///< number of positions the loop runs
  int timestep;                   ///< training timestep t at this position
  std::span<const Scalar> x_t;    ///< the sample the model saw
  std::span<const Scalar> x0;     ///< the (post-processed) x̂0 of this step
};

/// A callback that does nothing (the default): the compiler removes it.
struct no_callback {
  /// Ignores the step_event.
  template <class Event>
  void operator()(const Event&) const noexcept {}
};

/// Options of the sampling loop.
struct sample_options {
  std::uint64_t seed = 0;          ///< seed of the counter-based noise generator
  std::uint64_t first_sample = 0;  ///< global index of batch item 0: item i draws the noise of sample first_sample + i
  int start_index = 0;             ///< first list position to run (img2img and partial chains start later)
};

/// Buffers reused across calls to sample(), so that a loop allocates nothing after its first use.
template <class Scalar>
struct sampling_workspace {
  std::vector<Scalar> model_output;  ///< the model's output at each step: output_factor·N·C·spatial elements
  std::vector<Scalar> x0;            ///< the x̂0 each step writes for the callback
  std::vector<Scalar> x_next;        ///< the second state buffer, alternating with x so no step copies
  std::vector<Scalar> gradient;      ///< the guidance gradient; sized only for guidance that needs one
  /// Sizes model_output (numel·output_factor) and x0 (numel); keeps them when already the right size. (The
  /// steps generate their noise as they go: no noise buffer.)
  void reserve(std::size_t numel, std::size_t output_factor) {
    if (model_output.size() != numel * output_factor) model_output.assign(numel * output_factor, Scalar(0));
    if (x0.size() != numel) x0.assign(numel, Scalar(0));
  }
};

/// Noise stream numbers: step 0 is the initial noise x_T, position k of the loop draws stream k + 1.
constexpr std::uint64_t initial_noise_stream = 0;
/// The noise stream of loop position k: k + 1, after the initial noise's stream 0.
constexpr std::uint64_t step_noise_stream(int k) noexcept { return static_cast<std::uint64_t>(k) + 1; }

/// Fills x with the initial noise x_T of samples first_sample … first_sample + N − 1.
template <Real Scalar>
void fill_initial_noise(std::span<Scalar> x, const sample_shape& shape, std::uint64_t seed, std::uint64_t first_sample = 0) {
  if (x.size() != shape.numel())
    detail::fail(error_kind::shape, "x has ", x.size(), " elements; expected ", shape.numel());
  fill_batch<Scalar>(normal_generator(seed), x, shape.batch, first_sample, initial_noise_stream);
}

/// Runs a sampler from list position `options.start_index` to the end, in place on x.
///
/// \param sampler  ddpm_sampler or ddim_sampler (anything with num_steps, timestep, output_factor,
///                 adds_noise and step)
/// \param model    any Denoiser: `model(std::span<const Scalar> x_t, int t, std::span<Scalar> out)`
/// \param x        in: the starting sample (x_T, e.g. from fill_initial_noise); out: the result
/// \param shape    batch, channels and spatial size of x
/// \param options  seed, first_sample and start_index of the loop
/// \param workspace buffers reused across calls; sized on first use
/// \param callback called after every step with a step_event<Scalar>
/// \param guidance hooks between the model call and the update, from diffuse::guidance(h1, h2, ...)
/// \throws diffuse::error on shape mismatches or a model that returns the wrong number of elements.
///
/// Every argument is checked before the model is first called. If the model, a hook or the callback throws
/// (or a step refuses a non-finite model output), the exception leaves sample() and x holds a state of the
/// chain (the start or one of the intermediate samples, unspecified which): refill it before reuse.
///
/// Example:
/// \code
/// std::vector<float> x(shape.numel());
/// diffuse::fill_initial_noise<float>(x, shape, /*seed=*/42);
/// diffuse::sample(sampler, [&](std::span<const float> xt, int t, std::span<float> out) { net(xt, t, out); },
///                 std::span<float>(x), shape, {.seed = 42});
/// \endcode
template <class Sampler, class Model, Real Scalar, class Callback = no_callback, class Guidance = no_guidance>
void sample(const Sampler& sampler, Model&& model, std::span<Scalar> x, const sample_shape& shape,
            const sample_options& options, sampling_workspace<Scalar>& workspace, Callback&& callback = {},
            Guidance&& guidance = {}) {
  static_assert(Denoiser<std::remove_reference_t<Model>, Scalar>,
                "diffuse::sample: the model must be callable as model(std::span<const Scalar> x_t, int t, "
                "std::span<Scalar> out), with Scalar the element type of x (float or double)");
  const int n = sampler.num_steps();
  if (options.start_index < 0 || options.start_index >= n)
    detail::fail(error_kind::argument, "start_index = ", options.start_index, " is out of range; expected 0 <= start_index < ", n);
  if (shape.numel() == 0)  // before the model sees an empty batch
    detail::fail(error_kind::shape, "the sample shape (batch ", shape.batch, ", channels ", shape.channels, ", spatial ",
                 shape.spatial, ") has no elements; expected batch, channels and spatial size >= 1");
  if (x.size() != shape.numel())
    detail::fail(error_kind::shape, "x has ", x.size(), " elements; expected batch ", shape.batch, " x channels ",
                 shape.channels, " x spatial ", shape.spatial, " = ", shape.numel());
  workspace.reserve(shape.numel(), sampler.output_factor());
  if (workspace.x_next.size() != shape.numel()) workspace.x_next.assign(shape.numel(), Scalar(0));
  using guidance_type = std::remove_cvref_t<Guidance>;
  if constexpr (!guidance_type::empty) guidance.validate(n);
  if constexpr (guidance_type::needs_gradient)
    if (workspace.gradient.size() != shape.numel()) workspace.gradient.assign(shape.numel(), Scalar(0));
  const normal_generator generator(options.seed);
  // Two state buffers alternate so the callback sees x_t and the step's x̂0 together, without a copy.
  std::span<Scalar> current = x, next = workspace.x_next;
  for (int k = options.start_index; k < n; ++k) {
    const int t = sampler.timestep(k);
    model(std::span<const Scalar>(current), t, std::span<Scalar>(workspace.model_output));
    if constexpr (!guidance_type::empty) {
      std::span<Scalar> gradient;
      if constexpr (guidance_type::needs_gradient) {
        std::fill(workspace.gradient.begin(), workspace.gradient.end(), Scalar(0));
        gradient = workspace.gradient;
      }
      guidance(guidance_context<Scalar>{k, n, t, sampler.coefficients(k).alpha_bar_t, current, workspace.model_output,
                                        gradient, shape});
    }
    // The step draws its noise itself, a few thousand elements at a time (generated_noise): the same
    // numbers as fill_batch into a buffer, without the buffer's round trip through memory.
    step_buffers<Scalar> io{.x_t = current,
                            .model_output = workspace.model_output,
                            .x_prev = next,
                            // x̂0 is written only for a callback to see: without one the step saves that store.
                            .x0 = std::is_same_v<std::remove_cvref_t<Callback>, no_callback> ? std::span<Scalar>()
                                                                                              : std::span<Scalar>(workspace.x0),
                            .guidance_gradient = guidance_type::needs_gradient ? std::span<const Scalar>(workspace.gradient)
                                                                               : std::span<const Scalar>(),
                            .generated = sampler.adds_noise(k) ? generated_noise{&generator, options.first_sample, step_noise_stream(k)}
                                                               : generated_noise{}};
    sampler.template step<Scalar>(k, io, shape);
    callback(step_event<Scalar>{k, n, t, std::span<const Scalar>(current), std::span<const Scalar>(workspace.x0)});
    std::swap(current, next);
  }
  if (current.data() != x.data()) std::copy(current.begin(), current.end(), x.begin());
}

/// sample() with a workspace of its own (allocates once per call).
template <class Sampler, class Model, Real Scalar, class Callback = no_callback, class Guidance = no_guidance>
void sample(const Sampler& sampler, Model&& model, std::span<Scalar> x, const sample_shape& shape,
            const sample_options& options = {}, Callback&& callback = {}, Guidance&& guidance = {}) {
  sampling_workspace<Scalar> workspace;
  sample(sampler, std::forward<Model>(model), x, shape, options, workspace, std::forward<Callback>(callback),
         std::forward<Guidance>(guidance));
}

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
