// Reproducibility: the same seed gives the same bits (tolerance: none, every comparison is bitwise)
// whatever the OpenMP thread count, however a set of samples is split into batches, and however often
// it is run — for the noise generator, both samplers over the whole loop, and the reference UNet.
//
// Sizes are chosen above the library's parallel thresholds (2^15 elements for item-parallel steps,
// 2^16 for chunked passes, 2^14 for fill_batch), so the multi-threaded paths really run. The noise and
// sampler checks also use 3 threads, which splits their static schedules unevenly; the UNet ones use 1
// and 2 (its many parallel regions make an oversubscribed run slow on a 2-core CI machine).
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "diffuse/ddpm.hpp"
#include "diffuse/gaussian_mixture.hpp"
#include "diffuse/nn/unet.hpp"
#include "diffuse/sample.hpp"

namespace {

using namespace diffuse;

/// Runs f with `threads` OpenMP threads and restores the previous setting (a no-op without OpenMP).
template <class F>
void with_threads(int threads, F&& f) {
#if defined(_OPENMP)
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  f();
  omp_set_num_threads(saved);
#else
  (void)threads;
  f();
#endif
}

/// Bitwise equality, NaN payloads and signed zeros included (operator== would call −0 and +0 equal).
template <class T>
bool same_bits(std::span<const T> a, std::span<const T> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return same_bits(std::span<const T>(a), std::span<const T>(b));
}

/// A 16-D mixture with unequal weights and spreads: a non-linear exact denoiser, one row at a time.
const gaussian_mixture& mixture16() {
  static const gaussian_mixture gm = [] {
    std::vector<std::vector<double>> means(3, std::vector<double>(16));
    for (std::size_t j = 0; j < 16; ++j) {
      means[0][j] = 1.5 * std::cos(0.4 * static_cast<double>(j));
      means[1][j] = -1.0 + 0.1 * static_cast<double>(j);
      means[2][j] = j % 2 ? 2.0 : -2.0;
    }
    return gaussian_mixture({0.2, 0.5, 0.3}, means, {0.3, 0.5, 0.2});
  }();
  return gm;
}

/// Generates samples [first, first + shape.batch) from seed: x_T from the initial-noise stream, then the
/// whole loop. The only inputs are the seed and the sample indices.
template <class Sampler, class Model>
std::vector<float> generate(const Sampler& sampler, Model&& model, const sample_shape& shape, std::uint64_t seed, std::uint64_t first) {
  std::vector<float> x(shape.numel());
  fill_initial_noise<float>(x, shape, seed, first);
  sample(sampler, model, std::span<float>(x), shape, {.seed = seed, .first_sample = first});
  return x;
}

/// Runs one sampler three ways and checks the bits agree: 1, 2 and 3 threads; one batch of 6 versus
/// batches of 2 and 4 with the matching first_sample; and a repeat of the first run.
template <class Sampler>
void check_sampler(const Sampler& sampler, const noise_schedule& schedule) {
  auto model = mixture16().denoiser<float>(schedule, prediction_type::epsilon);
  const std::size_t per_item = 3 * 4096;  // 192 rows of 16 per item; 6 items = 73,728 elements
  const sample_shape six{6, 3, 4096}, two{2, 3, 4096}, four{4, 3, 4096};
  const std::uint64_t seed = 20261202;

  std::vector<float> one_thread, two_threads, three_threads, repeat;
  with_threads(1, [&] { one_thread = generate(sampler, model, six, seed, 0); });
  with_threads(2, [&] { two_threads = generate(sampler, model, six, seed, 0); });
  with_threads(3, [&] { three_threads = generate(sampler, model, six, seed, 0); });
  with_threads(2, [&] { repeat = generate(sampler, model, six, seed, 0); });
  CHECK(same_bits(one_thread, two_threads));
  CHECK(same_bits(one_thread, three_threads));
  CHECK(same_bits(two_threads, repeat));

  // Samples 0–1 and 2–5 as two batches (on 2 threads) equal the same samples inside the batch of 6.
  std::vector<float> head, tail;
  with_threads(2, [&] {
    head = generate(sampler, model, two, seed, 0);
    tail = generate(sampler, model, four, seed, 2);
  });
  CHECK(same_bits(std::span<const float>(head), std::span<const float>(one_thread).first(2 * per_item)));
  CHECK(same_bits(std::span<const float>(tail), std::span<const float>(one_thread).subspan(2 * per_item)));

  // A different seed must change the result: the comparisons above are not vacuous.
  std::vector<float> other;
  with_threads(2, [&] { other = generate(sampler, model, six, seed + 1, 0); });
  CHECK_FALSE(same_bits(one_thread, other));
}

}  // namespace

TEST_CASE_TEMPLATE("noise: the same bits on 1, 2 and 3 threads, for any batch split, on every run", T, float, double) {
  const normal_generator gen(0xD1FF05E);
  const std::size_t per = 3 * 2731;  // odd per-item size: items start on odd elements of no block
  const std::size_t batch = 8;       // 65,544 elements: fill_batch runs in parallel
  std::vector<T> one(batch * per), two(batch * per), three(batch * per), again(batch * per);
  with_threads(1, [&] { fill_batch<T>(gen, std::span<T>(one), batch, 100, 7); });
  with_threads(2, [&] { fill_batch<T>(gen, std::span<T>(two), batch, 100, 7); });
  with_threads(3, [&] { fill_batch<T>(gen, std::span<T>(three), batch, 100, 7); });
  with_threads(2, [&] { fill_batch<T>(gen, std::span<T>(again), batch, 100, 7); });
  CHECK(same_bits(one, two));
  CHECK(same_bits(one, three));
  CHECK(same_bits(two, again));

  // Samples 100–102 and 103–107 as two batches, and sample 105 alone.
  std::vector<T> head(3 * per), tail(5 * per), single(per);
  fill_batch<T>(gen, std::span<T>(head), 3, 100, 7);
  fill_batch<T>(gen, std::span<T>(tail), 5, 103, 7);
  gen.fill<T>(std::span<T>(single), 105, 7);
  CHECK(same_bits(std::span<const T>(head), std::span<const T>(one).first(3 * per)));
  CHECK(same_bits(std::span<const T>(tail), std::span<const T>(one).subspan(3 * per)));
  CHECK(same_bits(std::span<const T>(single), std::span<const T>(one).subspan(5 * per, per)));

  // Another step or seed gives other numbers.
  std::vector<T> other_step(batch * per), other_seed(batch * per);
  fill_batch<T>(gen, std::span<T>(other_step), batch, 100, 8);
  fill_batch<T>(normal_generator(0xD1FF05F), std::span<T>(other_seed), batch, 100, 7);
  CHECK_FALSE(same_bits(one, other_step));
  CHECK_FALSE(same_bits(one, other_seed));
}

TEST_CASE("DDPM sampling: the same bits on any thread count and batch split, on every run") {
  const auto schedule = noise_schedule::cosine(1000);
  // fixed_large and clipping exercise the noisy path and the x̂0 post-processing on every step.
  const ddpm_sampler sampler(schedule, respace(1000, "ddim25"),
                             {.prediction = prediction_type::epsilon, .variance = variance_type::fixed_large,
                              .processing = {.clip_range = 2.5}});
  check_sampler(sampler, schedule);
}

TEST_CASE("DDIM sampling with eta > 0: the same bits on any thread count and batch split, on every run") {
  const auto schedule = noise_schedule::linear(1000);
  // eta = 0.6 draws noise at every step but the last; dynamic thresholding adds a per-item quantile.
  const ddim_sampler sampler(schedule, make_timesteps(1000, 20, timestep_spacing::trailing),
                             {.prediction = prediction_type::epsilon, .eta = 0.6,
                              .processing = {.threshold = dynamic_threshold{.ratio = 0.99, .max_value = 3.0}}});
  check_sampler(sampler, schedule);
}

TEST_CASE("UNet forward: the same bits for a batch of 4 on 1 and 2 threads, split 1 + 3, and on every run") {
  // Attention at two levels, scale-shift conditioning and class labels: every layer kind runs.
  unet_config config;
  config.sample_height = config.sample_width = 8;
  config.in_channels = 2;
  config.out_channels = 2;
  config.block_out_channels = {16, 32};
  config.down_block_types = {"AttnDownBlock2D", "AttnDownBlock2D"};
  config.up_block_types = {"AttnUpBlock2D", "AttnUpBlock2D"};
  config.layers_per_block = 1;
  config.norm_num_groups = 8;
  config.attention_head_dim = 8;
  config.time_scale_shift = time_conditioning::scale_shift;
  config.num_class_embeds = 5;
  auto net = nn::unet2d<float>::random(config, 11);

  const int n = 4;
  const std::size_t per_in = 2 * 8 * 8, per_out = per_in;
  std::vector<float> x(n * per_in);
  normal_generator(3).fill<float>(std::span<float>(x), 0, 0);
  const std::vector<double> timesteps{999, 500.5, 17, 0};  // one per item, a fractional one included
  const std::vector<int> labels{4, 0, 2, 2};

  auto forward = [&](nn::unet2d<float>& model, int first, int count) {
    std::vector<float> out(static_cast<std::size_t>(count) * per_out);
    model.forward(std::span<const float>(x).subspan(first * per_in, count * per_in), count, {8, 8},
                  std::span<const double>(timesteps).subspan(first, count), std::span<const int>(labels).subspan(first, count),
                  std::span<float>(out));
    return out;
  };
  std::vector<float> one, two, repeat;
  with_threads(1, [&] { one = forward(net, 0, 4); });
  with_threads(2, [&] { two = forward(net, 0, 4); });
  with_threads(2, [&] { repeat = forward(net, 0, 4); });  // the workspace is reused from the last call
  CHECK(same_bits(one, two));
  CHECK(same_bits(two, repeat));

  // Items 0 and 1–3 as separate calls, on 2 threads: a batch of 1 then a batch of 3 resizes the workspace.
  std::vector<float> head, tail;
  with_threads(2, [&] {
    head = forward(net, 0, 1);
    tail = forward(net, 1, 3);
  });
  CHECK(same_bits(std::span<const float>(head), std::span<const float>(one).first(per_out)));
  CHECK(same_bits(std::span<const float>(tail), std::span<const float>(one).subspan(per_out)));

  // A second network from the same seed gives the same outputs; another seed does not.
  auto twin = nn::unet2d<float>::random(config, 11);
  auto other = nn::unet2d<float>::random(config, 12);
  std::vector<float> twin_out, other_out;
  with_threads(2, [&] {
    twin_out = forward(twin, 0, 4);
    other_out = forward(other, 0, 4);
  });
  CHECK(same_bits(one, twin_out));
  CHECK_FALSE(same_bits(one, other_out));
}

TEST_CASE("the shipped digits model: DDIM with classifier-free guidance gives the same images on 1 and 2 threads and split batches") {
  auto net = nn::unet2d<float>::load(std::string(DIFFUSE_SOURCE_DIR) + "/models/digits");
  const auto schedule = noise_schedule::linear(1000);
  const ddim_sampler sampler(schedule, make_timesteps(1000, 2, timestep_spacing::leading, 1), {.eta = 0.5});
  const std::size_t per = 16 * 16;
  // Four digits, conditional labels then the null class (10) for the unconditional half.
  auto run = [&](int first, int count) {
    std::vector<int> labels;
    for (int i = 0; i < count; ++i) labels.push_back(3 + first + i);
    for (int i = 0; i < count; ++i) labels.push_back(10);
    auto both = net.conditioned(labels);
    const sample_shape shape{static_cast<std::size_t>(count), 1, per};
    auto guided = batched_cfg_model<float, decltype(both)>(both, shape, 2.0);
    return generate(sampler, guided, shape, 77, static_cast<std::uint64_t>(first));
  };
  std::vector<float> one, two, head, tail;
  with_threads(1, [&] { one = run(0, 4); });
  with_threads(2, [&] {
    two = run(0, 4);
    head = run(0, 1);
    tail = run(1, 3);
  });
  CHECK(same_bits(one, two));
  CHECK(same_bits(std::span<const float>(head), std::span<const float>(one).first(per)));
  CHECK(same_bits(std::span<const float>(tail), std::span<const float>(one).subspan(per)));
}
