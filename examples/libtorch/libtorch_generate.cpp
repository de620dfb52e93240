// libtorch_generate: diffuse's DDIM sampler and classifier-free guidance driving a TorchScript network
// in libtorch, step by step, the way a program that already runs its models in libtorch would use it.
//
//   python3 tools/export_torchscript.py models/digits digits.pt     # once: the network as TorchScript
//   ./build/examples/libtorch/libtorch_generate digits.pt models/digits/scheduler_config.json
//       --digits 0,1,2,3,4,5,6,7,8,9 --steps 50 --guidance 2 --raw samples.safetensors   (one line)
//
// Sample i has class digits[i mod len] and draws noise stream i of the seed, exactly as the generate
// example does with diffuse's reference UNet: the two programs' samples differ only by the two
// networks' float rounding (tests/CMakeLists: example_libtorch_matches_reference_unet).
#include <torch/script.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "diffuse/ddpm.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/io/scheduler_config.hpp"

int main(int argc, char** argv) {
  CLI::App app{"DDIM + classifier-free guidance with diffuse, the network in libtorch (TorchScript)"};
  std::string module_path, scheduler_path, raw;
  std::vector<int> digits{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  int count = 10, steps = 50, null_class = 10, channels = 1, size = 16;
  double guidance = 2.0, eta = 0.0;
  bool clipped_eps = true;  // generate's default: ε re-derived from the clipped x̂0
  std::uint64_t seed = 0;
  app.add_option("module", module_path, "TorchScript file: forward(x [N,C,H,W] float, t [N] float, labels [N] long)")->required();
  app.add_option("scheduler_config", scheduler_path, "the model's scheduler_config.json")->required();
  app.add_option("--digits", digits, "classes to draw (sample i gets digits[i mod len])")->delimiter(',')->capture_default_str();
  app.add_option("--count", count, "number of samples")->capture_default_str()->check(CLI::Range(1, 4096));
  app.add_option("--steps", steps, "DDIM steps")->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("--guidance", guidance, "classifier-free guidance scale w")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  app.add_option("--eta", eta, "DDIM eta")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  app.add_option("--clipped-eps", clipped_eps, "DDIM: re-derive eps from the clipped x0 (diffusers' use_clipped_model_output)")
      ->capture_default_str();
  app.add_option("--null-class", null_class, "the unconditional class label")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  app.add_option("--channels", channels, "image channels")->capture_default_str()->check(CLI::Range(1, 64));
  app.add_option("--size", size, "image height and width")->capture_default_str()->check(CLI::Range(1, 4096));
  app.add_option("--seed", seed, "noise seed")->capture_default_str();
  app.add_option("--raw", raw, "write samples, labels and indices as safetensors (the layout generate --raw writes)");
  CLI11_PARSE(app, argc, argv);
  if (digits.empty()) {
    std::fprintf(stderr, "libtorch_generate: --digits is empty; expected at least one class\n");
    return 2;
  }

  try {
    torch::jit::script::Module module = torch::jit::load(module_path);
    module.eval();
    const auto sc = diffuse::scheduler_config::load(scheduler_path);
    const diffuse::ddim_sampler sampler(sc.schedule, sc.timesteps(steps),
                                        {.prediction = sc.prediction, .eta = eta, .set_alpha_to_one = sc.set_alpha_to_one,
                                         .use_clipped_model_output = clipped_eps, .processing = sc.processing});

    const auto n = static_cast<std::size_t>(count);
    const diffuse::sample_shape shape{n, static_cast<std::size_t>(channels), static_cast<std::size_t>(size) * size};
    // The network sees both halves at once: the n conditional items, then n unconditional ones.
    std::vector<std::int64_t> labels(2 * n, null_class);
    for (std::size_t i = 0; i < n; ++i) labels[i] = digits[i % digits.size()];
    const torch::Tensor label_tensor = torch::from_blob(labels.data(), {static_cast<std::int64_t>(2 * n)}, torch::kInt64).clone();

    // The Denoiser over 2n items: spans in, spans out, no copy of x or of the output.
    auto network = [&](std::span<const float> x2, int t, std::span<float> out2) {
      const std::int64_t items = static_cast<std::int64_t>(x2.size() / (shape.channels * shape.spatial));
      const auto input = torch::from_blob(const_cast<float*>(x2.data()), {items, channels, size, size}, torch::kFloat32);
      const auto times = torch::full({items}, static_cast<float>(t), torch::kFloat32);
      torch::NoGradGuard no_grad;
      const torch::Tensor y = module.forward({input, times, label_tensor.narrow(0, 0, items)}).toTensor().contiguous();
      if (y.numel() != static_cast<std::int64_t>(out2.size()))
        throw std::runtime_error("the module returned " + std::to_string(y.numel()) + " values; expected " + std::to_string(out2.size()));
      std::memcpy(out2.data(), y.data_ptr<float>(), out2.size() * sizeof(float));
    };
    diffuse::batched_cfg_model<float, decltype(network)> guided(network, shape, guidance);

    // The step loop of concepts.md ("Driving the loop yourself"): x_T is stream 0 of each sample, list
    // position k draws stream k + 1, so these are the samples sample() (and generate) would give.
    std::vector<float> x(shape.numel()), out(shape.numel()), noise(shape.numel()), x_prev(shape.numel());
    const diffuse::normal_generator generator(seed);
    diffuse::fill_initial_noise<float>(x, shape, seed);
    for (int k = 0; k < sampler.num_steps(); ++k) {
      guided(x, sampler.timestep(k), out);
      const bool noisy = sampler.adds_noise(k);
      if (noisy) diffuse::fill_batch<float>(generator, std::span<float>(noise), shape.batch, 0, diffuse::step_noise_stream(k));
      sampler.step<float>(k, {.x_t = x, .model_output = out, .noise = noisy ? std::span<const float>(noise) : std::span<const float>(),
                              .x_prev = x_prev}, shape);
      std::swap(x, x_prev);
    }

    double sum = 0, sq = 0;
    for (float v : x) sum += v, sq += static_cast<double>(v) * v;
    const double mean = sum / static_cast<double>(x.size());
    std::printf("%d samples of %dx%d with DDIM-%d, guidance %.2f (libtorch): mean %.4f, rms %.4f\n", count, size, size, steps, guidance,
                mean, std::sqrt(sq / static_cast<double>(x.size())));
    if (!raw.empty()) {
      std::vector<std::int64_t> label_out(labels.begin(), labels.begin() + static_cast<std::ptrdiff_t>(n)), indices(n);
      for (std::size_t i = 0; i < n; ++i) indices[i] = static_cast<std::int64_t>(i);
      const auto N = static_cast<std::int64_t>(n);
      diffuse::write_safetensors(raw, {{"samples", {N, channels, size, size}, x}}, {{"labels", {N}, label_out}, {"indices", {N}, indices}});
    }
  } catch (const diffuse::error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  } catch (const std::exception& e) {  // libtorch: c10::Error for a missing or incompatible module
    std::fprintf(stderr, "libtorch_generate: %s\n", e.what());
    return 1;
  }
  return 0;
}
