// generate: handwritten digits of chosen classes from the shipped class-conditional model, with DDPM or
// DDIM and classifier-free guidance; writes a PNG grid and, on request, the raw samples as safetensors.
//
//   ./build/examples/generate                                   # 40 digits, DDIM-50, guidance 2 -> digits.png
//   ./build/examples/generate --digits 3,7 --count 16 --sampler ddpm --guidance 3 --output sevens.png
//   ./build/examples/generate --shard 1/4 --raw part1.safetensors   # a quarter of the indices, bit-identical
#include "support/generation.hpp"

int main(int argc, char** argv) {
  examples::settings s;
  CLI::App app{"Generate handwritten digits with the shipped class-conditional diffusion model."};
  examples::add_generation_options(app, s);
  app.add_option("--shard", s.shard, "K/N: generate only shard K of N of the sample indices")->capture_default_str();
  if (const int status = examples::parse_command_line(app, argc, argv, "generate"); status >= 0) return status;
  try {
    const auto [shard, shards] = examples::parse_shard(s.shard);
    const long first = static_cast<long>(s.count) * shard / shards, last = static_cast<long>(s.count) * (shard + 1) / shards;
    if (first == last)
      examples::usage_error("--shard " + s.shard + " holds no sample of --count " + std::to_string(s.count) +
                            "; expected at most " + std::to_string(s.count) + " shards");
    examples::write_outputs(s, examples::generate_digits(s, first, last));
    return examples::exit_status::success;
  } catch (const examples::usage_exception& e) {
    std::cerr << "generate: " << e.what() << "\n";
    return examples::exit_status::usage;
  } catch (const std::exception& e) {
    std::cerr << "generate: " << e.what() << "\n";
    return examples::exit_status::failure;
  }
}
