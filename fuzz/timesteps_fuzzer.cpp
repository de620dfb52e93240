// libFuzzer harness for the timestep rules: guided-diffusion respacing strings and make_timesteps.
//
// Input layout: 4 bytes T (little endian), 4 bytes N, 4 bytes steps_offset, 1 byte spacing, then the
// respacing string. T, N and the offset are raw int32 so the extremes (negative, INT_MAX) are reached;
// every accepted list must be non-empty, strictly descending and inside [0, T).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "common.hpp"
#include "diffuse/timesteps.hpp"

namespace {

std::int32_t read_i32(const std::uint8_t* p) {
  std::uint32_t u = 0;
  for (int i = 0; i < 4; ++i) u |= static_cast<std::uint32_t>(p[i]) << (8 * i);
  std::int32_t v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

void check_list(const std::vector<int>& list, int T) {
  fuzz::require(!list.empty(), "non-empty list");
  for (std::size_t k = 0; k < list.size(); ++k) {
    fuzz::require(list[k] >= 0 && list[k] < T, "timestep inside [0, T)");
    fuzz::require(k == 0 || list[k] < list[k - 1], "strictly descending");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 13) return 0;
  const int T = read_i32(data), N = read_i32(data + 4), offset = read_i32(data + 8);
  const auto spacing = static_cast<diffuse::timestep_spacing>(data[12] % 3);
  const std::string_view spec(reinterpret_cast<const char*>(data + 13), size - 13);
  try {
    check_list(diffuse::respace(T, spec), T);
  } catch (const diffuse::error&) {
  }
  try {
    const auto list = diffuse::make_timesteps(T, N, spacing, offset);
    check_list(list, T);
    fuzz::require(list.size() == static_cast<std::size_t>(N), "exactly N timesteps");
  } catch (const diffuse::error&) {
  }
  return 0;
}
