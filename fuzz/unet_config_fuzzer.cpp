// libFuzzer harness for the strict config.json (UNet2DModel) parser: arbitrary bytes as the file text.
//
// An accepted config must pass its own validation again (from_json validates once; a config that
// parses but is inconsistent would reach the UNet builder).
#include <cstddef>
#include <cstdint>
#include <string>

#include "common.hpp"
#include "diffuse/nn/unet_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto config = diffuse::unet_config::from_json(std::string(reinterpret_cast<const char*>(data), size));
    config.validate("re-validation");
    fuzz::require(config.levels() >= 1 && config.levels() <= 8, "1 to 8 levels");
    fuzz::require(config.time_embed_dim() > 0, "positive time embedding width");
  } catch (const diffuse::error&) {
  }
  return 0;
}
