// Known values re-imposed after every step (inpaint.hpp): over sample() (DDPM, DDIM), solve() (every solver) and a
// user's own step loop; a full mask gives the condition, an empty one the unconditioned bits; bad shapes are
// errors; on a Gaussian mixture the renoise mode samples the conditional distribution of the unknown coordinate.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "counting_new.hpp"
#include "diffuse/gaussian_mixture.hpp"
#include "diffuse/inpaint.hpp"
#include "diffuse/sample.hpp"
#include "diffuse/samplers/ancestral.hpp"
#include "diffuse/samplers/ddim.hpp"
#include "diffuse/samplers/dpm_solver.hpp"
#include "diffuse/samplers/euler.hpp"
#include "diffuse/samplers/flow_euler.hpp"
#include "diffuse/samplers/flow_heun.hpp"
#include "diffuse/samplers/heun.hpp"
#include "diffuse/samplers/unipc.hpp"
#include "diffuse/timesteps.hpp"
#include "support.hpp"

namespace {

const diffuse::gaussian_mixture& mixture() {
  static const diffuse::gaussian_mixture gm({0.5, 0.5}, {{-2.0, -1.0}, {2.0, 1.0}}, {0.5, 0.5});
  return gm;
}

const diffuse::noise_schedule& schedule() {
  static const auto s = diffuse::noise_schedule::linear(1000);
  return s;
}

std::vector<int> leading(int n) { return diffuse::make_timesteps(1000, n, diffuse::timestep_spacing::leading); }

/// The exact mixture model for a solver: integer or fractional VP times (rounded), or the flow velocity.
auto vp_model() { return mixture().denoiser<double>(schedule(), diffuse::prediction_type::epsilon); }
auto vp_fractional() {
  return [m = vp_model()](std::span<const double> x, double t, std::span<double> out) mutable { m(x, static_cast<int>(std::lround(t)), out); };
}

/// Runs `sampler` (through sample() for DDPM / DDIM, solve() for a solver) from the seed-42 noise.
template <class S, class M>
std::vector<double> run(const S& sampler, M&& model, const diffuse::sample_shape& shape, bool solver) {
  std::vector<double> x(shape.numel());
  diffuse::fill_initial_noise<double>(x, shape, 42);
  if (solver) {
    for (auto& v : x) v *= 1.0;  // solve() applies initial_scale itself
    if constexpr (requires { sampler.sigma(0); }) diffuse::solve(sampler, model, std::span<double>(x), shape, {.seed = 9});
  } else {
    if constexpr (requires { sampler.coefficients(0).alpha_bar_t; }) diffuse::sample(sampler, model, std::span<double>(x), shape, {.seed = 9});
  }
  return x;
}

}  // namespace

TEST_CASE("inpainting, clamp mode, every element known: the result is the condition, for DDPM, DDIM and every solver") {
  const diffuse::sample_shape shape{.batch = 5, .channels = 2, .spatial = 3};
  std::vector<double> mask(shape.numel(), 1.0), known(shape.numel());
  for (std::size_t i = 0; i < known.size(); ++i) known[i] = 0.1 * static_cast<double>(i) - 1.0;
  const diffuse::known_values<double> k{mask, known, diffuse::inpaint_mode::clamp};
  const auto same = [&](const std::vector<double>& x) { CHECK(x == known); };
  same(run(diffuse::inpainting(diffuse::ddpm_sampler(schedule(), leading(20)), k, shape), vp_model(), shape, false));
  same(run(diffuse::inpainting(diffuse::ddim_sampler(schedule(), leading(20), {.eta = 0.5}), k, shape), vp_model(), shape, false));
  same(run(diffuse::inpainting(diffuse::dpm_solver_sampler(schedule(), 12), k, shape), vp_model(), shape, true));
  same(run(diffuse::inpainting(diffuse::dpm_solver_sampler(schedule(), 12, {}, {.algorithm = diffuse::dpm_algorithm::sde_dpmsolver_pp}), k, shape),
           vp_model(), shape, true));
  same(run(diffuse::inpainting(diffuse::unipc_sampler(schedule(), 12), k, shape), vp_model(), shape, true));
  same(run(diffuse::inpainting(diffuse::euler_sampler(schedule(), 12), k, shape), vp_fractional(), shape, true));
  same(run(diffuse::inpainting(diffuse::euler_ancestral_sampler(schedule(), 12), k, shape), vp_fractional(), shape, true));
  same(run(diffuse::inpainting(diffuse::heun_sampler(schedule(), 6), k, shape), vp_fractional(), shape, true));
  // The flow solvers with a mixture of the sample's dimension (2 channels × 3 → 6-d points would need a 6-d
  // mixture; the flow model here is any velocity, the clamp does not depend on it).
  const auto velocity = [](std::span<const double> x, double, std::span<double> out) {
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = 0.5 * x[i] - 0.1;
  };
  same(run(diffuse::inpainting(diffuse::flow_euler_sampler(8, {.shift = 3.0}), k, shape), velocity, shape, true));
  same(run(diffuse::inpainting(diffuse::flow_heun_sampler(8), k, shape), velocity, shape, true));
}

TEST_CASE("inpainting, nothing known: the bits of the unconditioned sampler, in both modes") {
  const diffuse::sample_shape shape{.batch = 3, .channels = 2, .spatial = 5};
  std::vector<double> mask(shape.numel(), 0.0), known(shape.numel(), 7.0);
  for (const auto mode : {diffuse::inpaint_mode::clamp, diffuse::inpaint_mode::renoise}) {
    const diffuse::known_values<double> k{mask, known, mode, 3};
    const diffuse::ddpm_sampler ddpm(schedule(), leading(15));
    CHECK(run(diffuse::inpainting(ddpm, k, shape), vp_model(), shape, false) == run(ddpm, vp_model(), shape, false));
    const diffuse::ddim_sampler ddim(schedule(), leading(15), {.eta = 1.0});
    CHECK(run(diffuse::inpainting(ddim, k, shape), vp_model(), shape, false) == run(ddim, vp_model(), shape, false));
    const diffuse::dpm_solver_sampler sde(schedule(), 10, {}, {.algorithm = diffuse::dpm_algorithm::sde_dpmsolver_pp});
    CHECK(run(diffuse::inpainting(sde, k, shape), vp_model(), shape, true) == run(sde, vp_model(), shape, true));
    const diffuse::unipc_sampler unipc(schedule(), 10, {}, {.order = 3});
    CHECK(run(diffuse::inpainting(unipc, k, shape), vp_model(), shape, true) == run(unipc, vp_model(), shape, true));
    const diffuse::euler_sampler euler(schedule(), 10, {.kind = diffuse::sigma_kind::karras}, {.s_churn = 1.0});  // fused next input
    CHECK(run(diffuse::inpainting(euler, k, shape), vp_fractional(), shape, true) == run(euler, vp_fractional(), shape, true));
    const diffuse::heun_sampler heun(schedule(), 5);
    CHECK(run(diffuse::inpainting(heun, k, shape), vp_fractional(), shape, true) == run(heun, vp_fractional(), shape, true));
  }
}

TEST_CASE("inpainting: solve() equals a user's step loop; a partial mask keeps the unknown elements moving; no allocation per call") {
  const diffuse::sample_shape shape{.batch = 4, .channels = 2, .spatial = 1};
  std::vector<double> mask(shape.numel(), 0.0), known(shape.numel(), 0.0);
  for (std::size_t i = 0; i < shape.batch; ++i) {
    mask[2 * i] = 1.0;  // channel 0 known
    known[2 * i] = 2.0;
  }
  const diffuse::inpainting painter(diffuse::euler_ancestral_sampler(schedule(), 10),
                                    diffuse::known_values<double>{mask, known, diffuse::inpaint_mode::renoise, 5}, shape);
  auto model = vp_fractional();
  std::vector<double> noise(shape.numel());
  diffuse::fill_initial_noise<double>(noise, shape, 1);
  std::vector<double> c = noise;
  painter.prepare(std::span<double>(c));  // for solve(), which multiplies by initial_scale()
  std::vector<double> a = c;
  for (auto& v : a) v *= painter.initial_scale();
  {
    // A user's loop over step(), with the noise streams solve() uses (the Euler family fuses the next input).
    std::vector<double> out(a.size()), input(a.size()), next(a.size());
    auto state = painter.make_state<double>(shape);
    const diffuse::normal_generator gen(9);
    for (int k = 0; k < painter.num_steps(); ++k) {
      const double s = painter.input_scale(k);
      for (std::size_t i = 0; i < a.size(); ++i) input[i] = a[i] * s;
      model(input, painter.model_time(k), out);
      painter.step<double>(k, {.x = a, .model_output = out, .x_next = next,
                               .generated = painter.adds_noise(k) ? diffuse::generated_noise{&gen, 0, diffuse::step_noise_stream(k)}
                                                                  : diffuse::generated_noise{}},
                           shape, state);
      a.swap(next);
    }
  }
  diffuse::solver_workspace<double> ws;
  std::vector<double> d = c;
  diffuse::solve(painter, model, std::span<double>(c), shape, {.seed = 9}, ws);
  CHECK(c == a);
  for (std::size_t i = 0; i < shape.batch; ++i) CHECK(a[2 * i] == 2.0);  // the last step lands on the clean values
  CHECK(a[1] != noise[1] * painter.initial_scale());                     // the unknown channel moved
  CHECK(d != c);
  // The exact mixture model allocates its own scratch; a plain model shows that solve() with inpainting does not.
  const auto plain = [](std::span<const double> x, double t, std::span<double> out) {
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = 0.3 * x[i] + 1e-4 * t;
  };
  diffuse::solve(painter, plain, std::span<double>(d), shape, {.seed = 9}, ws);
  const long before = test::allocations();
  diffuse::solve(painter, plain, std::span<double>(c), shape, {.seed = 9}, ws);
  CHECK(test::allocations() == before);
}

TEST_CASE("inpainting: a mask or values of the wrong size, or a step of another shape, is a diffuse::error") {
  const diffuse::sample_shape shape{.batch = 2, .channels = 1, .spatial = 3};
  std::vector<double> mask(5, 1.0), known(6, 0.0), ok(6, 1.0);
  test::check_error([&] { (void)diffuse::inpainting(diffuse::ddim_sampler(schedule(), leading(5)), diffuse::known_values<double>{mask, known}, shape); },
                    {"[diffuse.shape]", "inpainting mask has 5 and known values have 6 elements", "= 6 each"});
  test::check_error([&] { (void)diffuse::inpainting(diffuse::ddim_sampler(schedule(), leading(5)), diffuse::known_values<double>{ok, mask}, shape); },
                    {"mask has 6 and known values have 5"});
  const diffuse::inpainting painter(diffuse::dpm_solver_sampler(schedule(), 5), diffuse::known_values<double>{ok, known}, shape);
  const diffuse::sample_shape other{.batch = 3, .channels = 1, .spatial = 2};
  std::vector<double> x(6), out(6), next(6);
  auto state = painter.make_state<double>(other);
  test::check_error([&] { painter.step<double>(0, {.x = x, .model_output = out, .x_next = next}, other, state); },
                    {"inpainting made for batch 2 x channels 1 x spatial 3", "expected the shape it was made for"});
  std::vector<double> small(4);
  test::check_error([&] { painter.prepare(std::span<double>(small)); }, {"inpainting a state of 4 elements; expected 6"});
  test::check_error([&] { (void)painter.level(7); }, {"inpainting level at position 7"});
}

TEST_CASE("inpainting, renoise mode: a known first coordinate gives the mixture's conditional distribution of the second") {
  // Two components N((−2, −1), 0.5²) and N((2, 1), 0.5²) with equal weights. Knowing x0[0] = 2 makes the first
  // component's weight e^{−32}: the conditional of x0[1] is N(1, 0.5²), while unconditioned x0[1] is ±1 with
  // equal probability. 4000 samples with DDPM (50 leading steps, sample()) and SDE-DPM-Solver++ 2M (30 steps,
  // solve()) on the exact denoiser, the known coordinate re-noised to each next level. (Replacement needs the
  // sampler's fresh noise to mix the information in: with the deterministic flow Euler the same check
  // measured mean 0.75 and P(> 0) = 0.90 — RePaint-style inpainting is for ancestral / SDE samplers.) Checks (sampling error of the mean 0.008, of the
  // std about 0.006): mean within 0.1 of 1, std within [0.4, 0.6], P(x0[1] > 0) >= 0.95 (exact 0.977); the known
  // coordinate ends exactly at 2. Replacement without RePaint's resampling is an approximation; the bounds are
  // loose enough for its bias and tight enough to tell the conditional from the marginal (mean 0, P = 0.5).
  const auto& gm = mixture();
  const diffuse::sample_shape shape{.batch = 4000, .channels = 2, .spatial = 1};
  std::vector<double> mask(shape.numel(), 0.0), known(shape.numel(), 0.0);
  for (std::size_t i = 0; i < shape.batch; ++i) {
    mask[2 * i] = 1.0;
    known[2 * i] = 2.0;
  }
  const diffuse::known_values<double> k{mask, known, diffuse::inpaint_mode::renoise, 17};
  const auto check = [&](const std::vector<double>& x, const char* name) {
    double sum = 0, sq = 0, pos = 0;
    for (std::size_t i = 0; i < shape.batch; ++i) {
      const double v = x[2 * i + 1];
      sum += v;
      sq += v * v;
      pos += v > 0 ? 1 : 0;
      CHECK(x[2 * i] == 2.0);
    }
    const double n = static_cast<double>(shape.batch), mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
    std::printf("inpainting %s: conditional x0[1] mean %.3f (exact 1), std %.3f (exact 0.5), P(> 0) %.3f (exact 0.977)\n", name, mean, sd, pos / n);
    CHECK(std::abs(mean - 1.0) < 0.1);
    CHECK(sd > 0.4);
    CHECK(sd < 0.6);
    CHECK(pos / n >= 0.95);
  };
  {
    const diffuse::inpainting painter(diffuse::ddpm_sampler(schedule(), leading(50)), k, shape);
    std::vector<double> x(shape.numel());
    diffuse::fill_initial_noise<double>(x, shape, 3);
    painter.prepare(std::span<double>(x));
    diffuse::sample(painter, gm.denoiser<double>(schedule(), diffuse::prediction_type::epsilon), std::span<double>(x), shape, {.seed = 4});
    check(x, "DDPM");
  }
  {
    const diffuse::inpainting painter(diffuse::dpm_solver_sampler(schedule(), 30, {}, {.algorithm = diffuse::dpm_algorithm::sde_dpmsolver_pp}), k,
                                      shape);
    std::vector<double> x(shape.numel());
    diffuse::fill_initial_noise<double>(x, shape, 3);
    painter.prepare(std::span<double>(x));
    diffuse::solve(painter, gm.denoiser<double>(schedule(), diffuse::prediction_type::epsilon), std::span<double>(x), shape, {.seed = 4});
    check(x, "SDE-DPM-Solver++ 2M");
  }
}
