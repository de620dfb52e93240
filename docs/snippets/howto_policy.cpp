// Run a LeRobot diffusion policy's denoiser with diffuse: normalise the observations, build the
// conditioning vector, denoise an action chunk with the policy's own scheduler settings, unnormalise it.
// Run from the repository root (the folder is a small test policy), or pass a policy folder.
#include <diffuse/ddpm.hpp>
#include <diffuse/io/lerobot_policy.hpp>
#include <diffuse/nn/unet1d.hpp>

#include <cstdio>
#include <filesystem>
#include <span>
#include <vector>

int main(int argc, char** argv) {
  const std::filesystem::path folder = argc > 1 ? argv[1] : "tests/fixtures/unet1d/lerobot_policy";
  const auto config = diffuse::lerobot_diffusion_config::load(folder / "config.json");
  auto net = diffuse::nn::unet1d<float>::load(folder);
  const auto normalizer = diffuse::policy_normalizer<float>::load(folder);

  // Two observation steps of [state (3), environment state (2)], oldest first, normalised.
  std::vector<float> state{0.1f, -0.4f, 0.9f, 0.2f, -0.3f, 1.0f};  // n_obs_steps × 3
  std::vector<float> env{0.5f, 1.5f, 0.6f, 1.4f};                   // n_obs_steps × 2
  normalizer.normalize("observation.state", state);
  normalizer.normalize("observation.environment_state", env);
  std::vector<float> cond;
  for (int k = 0; k < config.n_obs_steps; ++k) {
    cond.insert(cond.end(), state.begin() + 3 * k, state.begin() + 3 * (k + 1));
    cond.insert(cond.end(), env.begin() + 2 * k, env.begin() + 2 * (k + 1));
  }

  // The scheduler LeRobot trained with: DDPM, squaredcos_cap_v2, 100 steps, epsilon, clip_sample.
  const auto sc = config.scheduler();
  diffuse::ddpm_sampler sampler(sc.schedule, sc.timesteps(config.inference_steps()),
                                {.prediction = sc.prediction, .variance = sc.variance, .processing = sc.processing});
  const diffuse::sample_shape shape{1, static_cast<std::size_t>(config.horizon), static_cast<std::size_t>(config.action_dim())};
  std::vector<float> actions(shape.numel());
  diffuse::fill_initial_noise<float>(actions, shape, /*seed=*/7);
  diffuse::sample(sampler, net.conditioned(config.horizon, cond), std::span<float>(actions), shape, {.seed = 7});

  // Back to the robot's units; LeRobot executes actions n_obs_steps − 1 … + n_action_steps of the chunk.
  normalizer.unnormalize("action", actions);
  const int first = config.n_obs_steps - 1;
  std::printf("%d actions of %d, the first: (%.3f, %.3f)\n", config.n_action_steps, config.horizon, actions[first * 2], actions[first * 2 + 1]);
  return 0;
}
