// libFuzzer harness for the scheduler_config.json reader: arbitrary bytes as the file text.
//
// An accepted config is then used as a program would: its schedule's tables and a few timestep lists.
// They must be finite and valid, or the request must be refused with diffuse::error.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "common.hpp"
#include "diffuse/io/scheduler_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto config = diffuse::scheduler_config::from_json(std::string(reinterpret_cast<const char*>(data), size));
    const int T = config.num_train_timesteps();
    fuzz::require(T >= 1 && T <= diffuse::max_train_timesteps, "T in range");
    for (double ab : config.schedule.alphas_cumprod()) fuzz::require(ab >= 0.0 && ab <= 1.0, "alpha_bar in [0, 1]");
    for (int steps : {1, 10, T}) {
      try {
        const auto list = config.timesteps(steps);
        fuzz::require(!list.empty() && list.front() < T && list.back() >= 0, "timesteps inside [0, T)");
      } catch (const diffuse::error&) {
      }
    }
  } catch (const diffuse::error&) {
  }
  return 0;
}
