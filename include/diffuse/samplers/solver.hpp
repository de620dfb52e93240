#pragma once
/// \file
/// The continuous-time core every solver in samplers/ shares: models that take a fractional time, the
/// multistep state a user owns (solver_state), the buffers of one solver step, and solve(), the whole
/// loop for any solver.
///
/// A solver (dpm_solver_sampler, euler_sampler, …) provides:
/// - `num_steps()`, `sigma(k)` (σ at position k, σ(num_steps()) the end), `model_time(k)`;
/// - `static constexpr bool fractional_time`: whether model_time(k) may be non-integer;
/// - `input_scale(k)`: the factor the model input is multiplied by (diffusers' scale_model_input; 1 for
///   the VP-space solvers), and `initial_scale()` (diffusers' init_noise_sigma);
/// - `history_slots()`, `make_state<Scalar>(shape)` and `step<Scalar>(k, buffers, shape, state)`;
/// - `adds_noise(k)`: whether the step at k draws noise; `noising(k)`: {a, b} with the state at k equal to
///   a·x0 + b·ε (for img2img starts, solver_img2img_noise);
/// - optionally `static constexpr bool writes_next_input = true`: its step fills
///   solver_buffers::next_model_input, so solve() makes no separate scaling pass;
/// - optionally `guidance_alpha_bar(k)`: the ᾱ guidance hooks see, when σ(k) is not the VP σ (flow
///   matching); otherwise 1/(σ² + 1).

#include <algorithm>
#include <atomic>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "diffuse/detail/step_kernel.hpp"
#include "diffuse/error.hpp"
#include "diffuse/guidance.hpp"
#include "diffuse/model.hpp"
#include "diffuse/random.hpp"
#include "diffuse/sample.hpp"
#include "diffuse/shape.hpp"
#include "diffuse/step_buffers.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

namespace detail {
/// Converts to double and to nothing else: a parameter of type int (or float) cannot take it, so a
/// model that is callable with it really accepts a fractional time.
struct fractional_time_probe {
  double value;
  template <class T>
    requires std::same_as<T, double>
  operator T() const noexcept {
    return value;
  }
};
}  // namespace detail

/// A model that takes a fractional training time: `model(x, double t, out)`.
///
/// Euler-family solvers give the model diffusers' fractional timesteps (e.g. 978.61 for linspace or
/// Karras sigmas). A model taking `int t` satisfies Denoiser but not this; it still works with the
/// solvers whose times are integers (dpm_solver_sampler).
template <class M, class Scalar>
concept FractionalDenoiser = requires(M& model, std::span<const Scalar> x, detail::fractional_time_probe t, std::span<Scalar> out) {
  model(x, t, out);
};

/// The buffers of one solver step, all contiguous (N, C, ...) like the sample.
template <class Scalar>
struct solver_buffers {
  std::span<const Scalar> x;             ///< the solver's state at position k (what solve() keeps in x)
  std::span<const Scalar> model_output;  ///< the model's output at (input_scale(k)·x, model_time(k))
  std::span<Scalar> x_next;              ///< receives the state at position k + 1; may be exactly the memory of x
                                         ///< (any other overlap of the outputs with a buffer is a diffuse::error)
  std::span<Scalar> x0 = {};             ///< optional: receives the x̂0 the step used
  std::span<const Scalar> noise = {};    ///< standard normal noise when adds_noise(k), or give `generated`
  generated_noise generated = {};        ///< noise the step generates itself (see generated_noise)
  /// Optional, for solvers with `writes_next_input` (the Euler family): receives input_scale(k + 1)·x_next,
  /// the next model input, in the same pass (the bits of scaling x_next afterwards).
  std::span<Scalar> next_model_input = {};
};

/// The state a multistep solver carries from step to step: the x̂0 (or model outputs) of up to three
/// previous steps, allocated once for one solver and one sample shape.
///
/// Make it with `sampler.make_state<Scalar>(shape)` and pass it to every step() of one chain, in order.
/// It remembers which solver and shape it was made for, and the steps it has seen, so reusing it with
/// another solver or shape, or skipping a step, is a diffuse::error instead of silently wrong maths.
/// reset() starts a new chain with the same buffers (no allocation).
template <Real Scalar>
class solver_state {
 public:
  solver_state() = default;
  /// A state of `slots` history buffers of shape.numel() elements each, for the solver with identity `owner`.
  solver_state(std::uint64_t owner, std::size_t slots, const sample_shape& shape)
      : owner_(owner), slots_(slots), shape_(shape), history_(slots * shape.numel(), Scalar(0)) {}

  /// Forgets the history: the next step starts a chain (at any position, e.g. an img2img start).
  void reset() noexcept {
    steps_taken_ = 0;
    last_index_ = -1;
  }
  /// Steps taken since construction or reset().
  int steps_taken() const noexcept { return steps_taken_; }
  /// The position of the last step taken (−1 before the first).
  int last_index() const noexcept { return last_index_; }
  /// The shape it was made for.
  const sample_shape& shape() const noexcept { return shape_; }
  /// Whether it was made for the solver `owner` and this shape (solve() rebuilds it otherwise).
  bool fits(std::uint64_t owner, const sample_shape& shape) const noexcept {
    return owner_ == owner && shape_.batch == shape.batch && shape_.channels == shape.channels && shape_.spatial == shape.spatial;
  }

  /// Checks that step k of solver `owner` on `shape` may use this state: same solver, same shape, and k
  /// the position after the last step (any k for the first step of a chain).
  /// \throws diffuse::error naming what differs.
  void check(std::uint64_t owner, const sample_shape& shape, int k, const char* solver) const {
    if (owner_ == 0)
      detail::fail(error_kind::sampler, "the solver state is empty; expected one made by sampler.make_state<Scalar>(shape)");
    if (owner_ != owner)
      detail::fail(error_kind::sampler, "the solver state was made for another sampler; expected the state made by this ", solver,
                   "'s make_state (a state holds one sampler's history)");
    if (!fits(owner, shape))
      detail::fail(error_kind::shape, "the solver state was made for batch ", shape_.batch, " x channels ", shape_.channels, " x spatial ",
                   shape_.spatial, "; expected the same shape as the step (got ", shape.batch, " x ", shape.channels, " x ", shape.spatial, ")");
    if (steps_taken_ > 0 && k != last_index_ + 1)
      detail::fail(error_kind::sampler, "step ", k, " after step ", last_index_, " with the same solver state; expected step ", last_index_ + 1,
                   " (a multistep solver must see every step in order; reset() the state to start a new chain)");
  }
  /// History slot s (shape.numel() elements).
  std::span<Scalar> slot(std::size_t s) noexcept {
    const std::size_t n = shape_.numel();
    return std::span<Scalar>(history_.data() + s * n, n);
  }
  /// The number of history slots.
  std::size_t slots() const noexcept { return slots_; }
  /// Records that step k was taken.
  void advance(int k) noexcept {
    ++steps_taken_;
    last_index_ = k;
  }

 private:
  std::uint64_t owner_ = 0;
  std::size_t slots_ = 0;
  sample_shape shape_{};
  std::vector<Scalar> history_;
  int steps_taken_ = 0;
  int last_index_ = -1;
};

namespace detail {
/// A fresh identity for every solver constructed (copies share it: they compute the same steps).
inline std::uint64_t next_solver_id() noexcept {
  static std::atomic<std::uint64_t> counter{0};
  return ++counter;
}
}  // namespace detail

/// Classifier guidance in score form for a σ-space solver: shifts a model output so that the solver, which
/// converts it at σ, sees ε̂' = ε̂ − √(1 − ᾱ)·g with ᾱ = 1/(σ² + 1) and g = s·∇_{x_t} log p(y | x_t)
/// (SPEC §7's condition_score). Equivalently x̂0' = x̂0 + σ²·√ᾱ·g, the denoiser D + σ²·∇_{x_σ} log p(y) of
/// the σ-space ODE. Per prediction type: ε' = ε − σ√ᾱ·g; x0' = x0 + σ²√ᾱ·g; v' = v − σ·g.
///
/// solve() calls it after the guidance hooks; a loop of your own calls it between the model and step().
/// \param prediction   what model_output holds (epsilon, sample or v_prediction)
/// \param sigma        the solver's σ at this evaluation (sampler.sigma(k)), > 0
/// \param gradient     g, as many elements as model_output
/// \param model_output edited in place
/// \throws diffuse::error on sizes that differ, σ ≤ 0 or a previous_x prediction.
template <Real Scalar>
void apply_score_guidance(prediction_type prediction, double sigma, std::span<const Scalar> gradient, std::span<Scalar> model_output) {
  if (gradient.size() != model_output.size())
    detail::fail(error_kind::shape, "the guidance gradient has ", gradient.size(), " elements; expected ", model_output.size(),
                 " (one per model output element)");
  if (!(sigma > 0.0) || !std::isfinite(sigma))
    detail::fail(error_kind::guidance, "classifier guidance at sigma = ", sigma, "; expected a finite sigma > 0");
  const double a = 1.0 / std::sqrt(sigma * sigma + 1.0);
  double c = 0;
  switch (prediction) {
    case prediction_type::epsilon: c = -sigma * a; break;
    case prediction_type::sample: c = sigma * sigma * a; break;
    case prediction_type::v_prediction: c = -sigma; break;
    default: detail::fail(error_kind::guidance, "classifier guidance with previous_x prediction; expected epsilon, sample or v_prediction");
  }
  const auto cs = static_cast<Scalar>(c);
  const Scalar* g = gradient.data();
  Scalar* out = model_output.data();
  detail::run_elementwise<Scalar>(model_output.size(), true, [=]<class V>(std::size_t j, detail::finite_probe<V>&) {
    detail::store(out + j, detail::load<V>(out + j) + V(cs) * detail::load<V>(g + j));
  });
}

/// What solve()'s callback receives after each step.
template <class Scalar>
struct solver_event {
  int index;                    ///< position in the list (0 = noisiest)
  int num_steps;                ///< positions in the list
  double model_time;            ///< the training-time value the model was given
  double sigma;                 ///< σ at this position
  std::span<const Scalar> x;    ///< the solver state before the step
  std::span<const Scalar> x0;   ///< the x̂0 the step used
};

/// Buffers reused across calls to solve(): nothing is allocated after the first call with a shape.
template <Real Scalar>
struct solver_workspace {
  std::vector<Scalar> model_output;  ///< N·C·spatial elements
  std::vector<Scalar> model_input;   ///< the scaled model input (solvers with input_scale ≠ 1)
  std::vector<Scalar> x0;            ///< x̂0 of the step, for the callback
  std::vector<Scalar> x_next;        ///< the second state buffer
  std::vector<Scalar> gradient;      ///< the classifier-guidance gradient; sized only for guidance that needs one
  solver_state<Scalar> state;        ///< the multistep history, rebuilt when the solver or shape changes
};

/// Runs a solver from position options.start_index to the end, in place on x.
///
/// With start_index = 0, x comes in as standard normal noise (fill_initial_noise) and is multiplied by
/// the solver's initial_scale() (diffusers' init_noise_sigma). With a later start_index, x must already
/// be the solver's state there: the VP sample for DPM-Solver++, x_t/√ᾱ_t (= x0 + σ·ε) for Euler. The
/// result is the sample at the final σ. Step k draws noise stream step_noise_stream(k) of options.seed
/// for sample first_sample + i, so the bits do not depend on the batch split or the thread count.
///
/// \param sampler  a solver of samplers/ (dpm_solver_sampler, euler_sampler, euler_ancestral_sampler)
/// \param model    `model(std::span<const Scalar> x, t, std::span<Scalar> out)` with t of type int, or
///                 double for a solver whose times are fractional
/// \param x        N·C·spatial elements, the state at options.start_index on entry, the sample on return
/// \param shape    the batch layout of x
/// \param options  seed, first_sample, start_index and threads (start_index and seed as for sample())
/// \param workspace buffers reused across calls: nothing is allocated after the first call with a shape
/// \param callback called after each step with a solver_event (no_callback for none)
/// \param guidance hooks that edit the model output (classifier-free guidance) or add a classifier
///                 gradient g = s·∇_{x_t} log p(y | x_t) (classifier guidance); guidance_context gets the
///                 VP sample x_t the model saw, ᾱ = 1/(σ² + 1) (or the solver's guidance_alpha_bar(k)) and the model time rounded to an int. The
///                 gradient is applied in score form (apply_score_guidance): the model output is shifted so
///                 that ε̂' = ε̂ − √(1 − ᾱ)·g, i.e. x̂0' = x̂0 + σ²·√ᾱ·g, before the step.
/// \throws diffuse::error on shape mismatches or bad positions; every argument is checked before the model is
///         first called. If the model, a hook or the callback throws (or a step refuses a non-finite model
///         output), x holds a state of the chain (unspecified which) and the workspace's multistep state is
///         reset by the next solve(): refill x before reuse.
template <class Sampler, class Model, Real Scalar, class Callback = no_callback, class Guidance = no_guidance>
void solve(const Sampler& sampler, Model&& model, std::span<Scalar> x, const sample_shape& shape, const sample_options& options,
           solver_workspace<Scalar>& workspace, Callback&& callback = {}, Guidance&& guidance = {}) {
  using model_type = std::remove_reference_t<Model>;
  if constexpr (Sampler::fractional_time) {
    static_assert(FractionalDenoiser<model_type, Scalar>,
                  "diffuse::solve: this solver gives the model fractional training times (diffusers' Euler family passes e.g. "
                  "978.61): the model must be callable as model(std::span<const Scalar> x, double t, std::span<Scalar> out); "
                  "take double t and round inside the callable if the network needs an integer, or use a solver with "
                  "integer times (dpm_solver_sampler)");
  } else {
    static_assert(Denoiser<model_type, Scalar>,
                  "diffuse::solve: the model must be callable as model(std::span<const Scalar> x, int t, std::span<Scalar> out) "
                  "(or with double t), with Scalar the element type of x (float or double)");
  }
  using guidance_type = std::remove_cvref_t<Guidance>;
  if constexpr (guidance_type::needs_gradient)
    static_assert(requires { sampler.options().prediction; },
                  "diffuse::solve: classifier guidance needs the solver's prediction type (sampler.options().prediction) to "
                  "apply the gradient to the model output; the solvers of samplers/ have it");
  const int n = sampler.num_steps();
  if (options.start_index < 0 || options.start_index >= n)
    detail::fail(error_kind::argument, "start_index = ", options.start_index, " is out of range; expected 0 <= start_index < ", n);
  const std::size_t numel = shape.numel();
  if (numel == 0)  // before the model sees an empty batch
    detail::fail(error_kind::shape, "the sample shape (batch ", shape.batch, ", channels ", shape.channels, ", spatial ",
                 shape.spatial, ") has no elements; expected batch, channels and spatial size >= 1");
  if (x.size() != numel)
    detail::fail(error_kind::shape, "x has ", x.size(), " elements; expected batch ", shape.batch, " x channels ", shape.channels,
                 " x spatial ", shape.spatial, " = ", numel);
  if constexpr (!guidance_type::empty) guidance.validate(n);
  if constexpr (guidance_type::needs_gradient && requires { sampler.sigmas().flow; })
    if (sampler.sigmas().flow)
      detail::fail(error_kind::guidance, "classifier guidance with flow sigmas: apply_score_guidance converts at the VP sigma; expected "
                                         "VP sigmas (or classifier-free guidance, which needs no gradient)");
  auto& ws = workspace;
  if (ws.model_output.size() != numel) ws.model_output.assign(numel, Scalar(0));
  if (ws.x_next.size() != numel) ws.x_next.assign(numel, Scalar(0));
  constexpr bool wants_x0 = !std::is_same_v<std::remove_cvref_t<Callback>, no_callback>;
  if (wants_x0 && ws.x0.size() != numel) ws.x0.assign(numel, Scalar(0));
  if constexpr (guidance_type::needs_gradient)
    if (ws.gradient.size() != numel) ws.gradient.assign(numel, Scalar(0));
  if (!ws.state.fits(sampler.id(), shape)) ws.state = sampler.template make_state<Scalar>(shape);
  ws.state.reset();
  const normal_generator generator(options.seed);
  if (options.start_index == 0 && sampler.initial_scale() != 1.0) {
    const auto s = static_cast<Scalar>(sampler.initial_scale());
    for (auto& v : x) v *= s;
  }
  std::span<Scalar> current = x, next = ws.x_next;
  constexpr bool fuses_input = requires { requires Sampler::writes_next_input; };
  bool input_ready = false;  // the previous step wrote this position's scaled model input
  for (int k = options.start_index; k < n; ++k) {
    const double scale = sampler.input_scale(k);
    std::span<const Scalar> input = current;
    if (scale != 1.0 && input_ready) {
      input = ws.model_input;
    } else if (scale != 1.0) {
      if (ws.model_input.size() != numel) ws.model_input.assign(numel, Scalar(0));
      const auto c = static_cast<Scalar>(scale);
      const Scalar* src = current.data();
      Scalar* dst = ws.model_input.data();
      detail::run_elementwise<Scalar>(numel, true, [=]<class V>(std::size_t j, detail::finite_probe<V>&) {
        detail::store(dst + j, detail::load<V>(src + j) * V(c));
      });
      input = ws.model_input;
    }
    if constexpr (Sampler::fractional_time) {
      model(input, sampler.model_time(k), std::span<Scalar>(ws.model_output));
    } else {
      model(input, sampler.timestep(k), std::span<Scalar>(ws.model_output));
    }
    if constexpr (!guidance_type::empty) {
      // A solver whose σ is not the VP one (flow matching) says which ᾱ has the same signal-to-noise ratio.
      const double sg = sampler.sigma(k);
      double alpha_bar = 1.0 / (sg * sg + 1.0);
      if constexpr (requires { sampler.guidance_alpha_bar(k); }) alpha_bar = sampler.guidance_alpha_bar(k);
      std::span<Scalar> gradient;
      if constexpr (guidance_type::needs_gradient) {
        std::fill(ws.gradient.begin(), ws.gradient.end(), Scalar(0));
        gradient = ws.gradient;
      }
      guidance(guidance_context<Scalar>{k, n, static_cast<int>(std::lround(sampler.model_time(k))), alpha_bar, input,
                                        ws.model_output, gradient, shape});
      if constexpr (guidance_type::needs_gradient)
        apply_score_guidance<Scalar>(sampler.options().prediction, sg, ws.gradient, ws.model_output);
    }
    solver_buffers<Scalar> io{.x = current,
                              .model_output = ws.model_output,
                              .x_next = next,
                              .x0 = wants_x0 ? std::span<Scalar>(ws.x0) : std::span<Scalar>(),
                              .generated = sampler.adds_noise(k) ? generated_noise{&generator, options.first_sample, step_noise_stream(k)}
                                                                 : generated_noise{}};
    input_ready = false;
    if constexpr (fuses_input) {
      if (k + 1 < n && sampler.input_scale(k + 1) != 1.0) {
        if (ws.model_input.size() != numel) ws.model_input.assign(numel, Scalar(0));
        io.next_model_input = ws.model_input;
        input_ready = true;
      }
    }
    sampler.template step<Scalar>(k, io, shape, ws.state);
    callback(solver_event<Scalar>{k, n, sampler.model_time(k), sampler.sigma(k), std::span<const Scalar>(current),
                                  std::span<const Scalar>(ws.x0)});
    std::swap(current, next);
  }
  if (current.data() != x.data()) std::copy(current.begin(), current.end(), x.begin());
}

/// solve() with a workspace of its own (allocates once per call).
template <class Sampler, class Model, Real Scalar, class Callback = no_callback, class Guidance = no_guidance>
void solve(const Sampler& sampler, Model&& model, std::span<Scalar> x, const sample_shape& shape, const sample_options& options = {},
           Callback&& callback = {}, Guidance&& guidance = {}) {
  solver_workspace<Scalar> workspace;
  solve(sampler, std::forward<Model>(model), x, shape, options, workspace, std::forward<Callback>(callback),
        std::forward<Guidance>(guidance));
}

/// Noises clean samples x0 into the solver's state at position k (img2img, partial chains): x = a·x0 + b·ε
/// with {a, b} = solver.noising(k) (α and σ_VP for DPM-Solver++ / UniPC, 1 and σ for the Euler family,
/// as diffusers' add_noise), ε from the initial-noise stream of `seed` (fill_initial_noise). Then run
/// solve() with start_index = k (img2img_start_index gives k from a strength).
/// \throws diffuse::error when x0 or x do not have shape.numel() elements, or k is out of range.
template <class Sampler, Real Scalar>
void solver_img2img_noise(const Sampler& solver, int k, std::span<const Scalar> x0, std::span<Scalar> x, const sample_shape& shape,
                          std::uint64_t seed, std::uint64_t first_sample = 0) {
  if (k < 0 || k >= solver.num_steps())
    detail::fail(error_kind::argument, "start position ", k, " is out of range; expected 0 <= k < ", solver.num_steps());
  if (x0.size() != shape.numel() || x.size() != shape.numel())
    detail::fail(error_kind::shape, "x0 has ", x0.size(), " and x has ", x.size(), " elements; expected ", shape.numel(), " each");
  if (detail::share_memory(x0, std::span<const Scalar>(x)))  // x is filled with noise first
    detail::fail(error_kind::argument, "x shares memory with x0; expected a separate buffer (x receives noise before x0 is read)");
  fill_initial_noise<Scalar>(x, shape, seed, first_sample);
  const auto [a, b] = solver.noising(k);
  const auto sa = static_cast<Scalar>(a), sb = static_cast<Scalar>(b);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = sa * x0[i] + sb * x[i];
}

namespace detail {

/// Checks the buffers of one solver step against the sample shape.
template <class Scalar>
void check_solver_buffers(const solver_buffers<Scalar>& b, const sample_shape& shape, bool needs_noise) {
  const std::size_t n = shape.numel();
  if (n == 0) fail(error_kind::shape, "the sample shape has no elements; expected batch, channels and spatial size >= 1");
  if (b.x.size() != n)
    fail(error_kind::shape, "x has ", b.x.size(), " elements; expected batch ", shape.batch, " x channels ", shape.channels,
         " x spatial ", shape.spatial, " = ", n);
  if (b.x_next.size() != n) fail(error_kind::shape, "x_next has ", b.x_next.size(), " elements; expected ", n, " like x");
  if (b.model_output.size() != n)
    fail(error_kind::shape, "the model output has ", b.model_output.size(), " elements; expected ", n, " like x");
  if (b.generated.generator && !b.noise.empty())
    fail(error_kind::argument, "the step was given both a noise buffer and generated noise; expected one of them");
  if (needs_noise && !b.generated.generator && b.noise.size() != n)
    fail(error_kind::shape, "noise has ", b.noise.size(), " elements; expected ", n, " (this step adds noise; or give generated noise instead)");
  if (!b.x0.empty() && b.x0.size() != n) fail(error_kind::shape, "x0 has ", b.x0.size(), " elements; expected ", n, " or none");
  if (!b.next_model_input.empty() && b.next_model_input.size() != n)
    fail(error_kind::shape, "next_model_input has ", b.next_model_input.size(), " elements; expected ", n, " or none");
  const std::span<const Scalar> x_next(b.x_next), x0(b.x0), next_input(b.next_model_input);
  check_output_aliasing<Scalar>("x_next", x_next, b.x, "x", {{"the model output", b.model_output}, {"the noise", b.noise}});
  check_output_aliasing<Scalar>("x0", x0, {}, "",
                                {{"x", b.x}, {"x_next", x_next}, {"the model output", b.model_output}, {"the noise", b.noise}});
  check_output_aliasing<Scalar>("next_model_input", next_input, {}, "",
                                {{"x", b.x}, {"x_next", x_next}, {"x0", x0}, {"the model output", b.model_output},
                                 {"the noise", b.noise}});
}

inline void check_position(int k, int n) {
  if (k < 0 || k >= n) fail(error_kind::argument, "step index ", k, " is out of range; expected 0 <= k < ", n);
}

/// What one element's update of a one-step solver produces: the x̂0 it used and the next state.
template <class V>
struct one_step_values {
  V x0;    ///< x̂0 at this element (stored when the step was given an x0 buffer)
  V next;  ///< the state at the next position
};

/// The fused pass the one-step solvers share (Euler, Euler ancestral, flow Euler): one pass over x, the
/// model output and, when `noisy`, the noise (a buffer, or generated chunk by chunk), that stores x̂0
/// (when asked), x_next and (when asked) next_input_scale·x_next, and probes the model output, x and
/// x_next for non-finite values when `check`. The solver supplies only the per-element maths:
/// `update(x, out, z, noisy_constant)` returns the one_step_values of one element (or one vector of
/// elements); z is the noise when `decltype(noisy_constant)::value`, else 0 and not to be used.
/// (detail::store is named in full here: unqualified, argument-dependent lookup on an xsimd batch finds
/// xsimd::store, the aligned store, which faults on the unaligned buffers.) Raises the [diffuse.numeric] error of
/// step k (model time t) on a non-finite value. The caller checks the buffers first.
template <class Scalar, class Update>
void run_one_step_pass(int k, int t, const solver_buffers<Scalar>& io, const sample_shape& shape, bool noisy, bool vectorize, bool check,
                       Scalar next_input_scale, const Update& update) {
  struct pointers {
    const Scalar *x, *out, *z;
    Scalar *xn, *x0, *ni;
  };
  const auto at = [&](std::size_t base, std::nullptr_t) {
    return pointers{io.x.data() + base, io.model_output.data() + base, noisy && !io.noise.empty() ? io.noise.data() + base : nullptr,
                    io.x_next.data() + base, io.x0.empty() ? nullptr : io.x0.data() + base,
                    io.next_model_input.empty() ? nullptr : io.next_model_input.data() + base};
  };
  const Scalar cin = next_input_scale;
  const auto run = [&](auto noisy_c) {
    constexpr bool is_noisy = decltype(noisy_c)::value;
    return run_fused_pass<Scalar>(shape.numel(), shape.channels * shape.spatial, vectorize, is_noisy, io.generated, at,
                                  [&](const pointers& p) {
      return [=]<class V>(std::size_t j, finite_probe<V>& probe) {
        const V xv = detail::load<V>(p.x + j), ov = detail::load<V>(p.out + j);
        if (check) {
          probe.model += ov - ov;
          probe.state += xv - xv;
        }
        V z = V(lane_t<V>(0));
        if constexpr (is_noisy) z = detail::load<V>(p.z + j);
        const one_step_values<V> r = update(xv, ov, z, std::bool_constant<is_noisy>{});
        if (p.x0) detail::store(p.x0 + j, r.x0);
        if (check) probe.result += r.next - r.next;
        detail::store(p.xn + j, r.next);
        if (p.ni) detail::store(p.ni + j, r.next * V(cin));
      };
    });
  };
  const int mask = noisy ? run(std::true_type{}) : run(std::false_type{});
  if (mask != 0) fail_non_finite<Scalar>(k, t, io.model_output, 1, io.x, std::span<const Scalar>(io.x_next), shape);
}

}  // namespace detail
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
