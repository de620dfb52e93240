// Sample i is a function of (seed, i) alone: split the work any way and the bits do not change.
#include <diffuse/ddpm.hpp>
#include <diffuse/gaussian_mixture.hpp>

#include <cstdint>
#include <cstdio>
#include <span>
#include <vector>

namespace {
const auto schedule = diffuse::noise_schedule::cosine(1000);
const diffuse::gaussian_mixture data({0.3, 0.7}, {{-1.0, 0.5}, {1.0, -0.5}}, {0.3, 0.2});
const diffuse::ddpm_sampler sampler(schedule, diffuse::make_timesteps(1000, 50, diffuse::timestep_spacing::trailing));
constexpr std::uint64_t seed = 2024;

// Samples [first, first + count) of the global sequence, as one process (or one MPI rank) would make them.
std::vector<float> make_samples(std::uint64_t first, std::size_t count) {
  auto model = data.denoiser<float>(schedule, diffuse::prediction_type::epsilon);
  const diffuse::sample_shape shape{.batch = count, .channels = 1, .spatial = 2};
  std::vector<float> x(shape.numel());
  diffuse::fill_initial_noise<float>(x, shape, seed, /*first_sample=*/first);
  diffuse::sample(sampler, model, std::span<float>(x), shape, {.seed = seed, .first_sample = first});
  return x;
}
}  // namespace

int main() {
  const std::vector<float> whole = make_samples(0, 10);  // samples 0..9 in one batch

  // The same ten samples as shards 0/3, 1/3 and 2/3 (indices [10k/3, 10(k+1)/3)), as three processes
  // would make them: each passes its first global index.
  std::vector<float> joined;
  for (std::uint64_t k = 0; k < 3; ++k) {
    const std::uint64_t first = 10 * k / 3, last = 10 * (k + 1) / 3;
    const auto part = make_samples(first, last - first);
    joined.insert(joined.end(), part.begin(), part.end());
  }
  std::printf("whole batch == three shards: %s\n", whole == joined ? "bit-identical" : "DIFFERENT");
  return whole == joined ? 0 : 1;
}
