#pragma once
/// \file
/// Timestep lists for sampling with N ≤ T steps: spacings, respacing strings, custom lists (SPEC §5, §11).
///
/// Every list is strictly descending; the previous timestep of a step is always the next entry of the list
/// in use (−1 after the last).

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "diffuse/error.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// How N inference timesteps are spread over T training timesteps.
enum class timestep_spacing {
  linspace,  ///< round(linspace(0, T − 1, N)), reversed
  leading,   ///< k·⌊T/N⌋ + steps_offset, reversed
  trailing,  ///< round(T − k·T/N) − 1: always includes T − 1 (what zero-terminal-SNR models need)
};

/// The largest number of training timesteps accepted anywhere (schedules, lists, configs). Real models
/// use 1000 to 4000; the bound keeps every table and list far from overflow and huge allocations.
inline constexpr int max_train_timesteps = 1'000'000;

namespace detail {

/// Throws unless 1 <= T <= max_train_timesteps.
inline void check_train_timesteps(int num_train_timesteps, error_kind kind = error_kind::timesteps) {
  if (num_train_timesteps < 1) fail(kind, "num_train_timesteps = ", num_train_timesteps, "; expected >= 1");
  if (num_train_timesteps > max_train_timesteps)
    fail(kind, "num_train_timesteps = ", num_train_timesteps, "; expected at most ", max_train_timesteps, " (max_train_timesteps)");
}

/// Python's round(): half to even, on the double value.
inline long long round_half_even(double v) { return static_cast<long long>(std::nearbyint(v)); }

inline void check_counts(int num_train_timesteps, int num_inference_steps) {
  check_train_timesteps(num_train_timesteps);
  if (num_inference_steps < 1 || num_inference_steps > num_train_timesteps)
    fail(error_kind::timesteps, "num_inference_steps = ", num_inference_steps, " is out of range; expected 1 <= N <= ",
         num_train_timesteps, " (the training timesteps)");
}

}  // namespace detail

/// Validates a user list: non-empty, strictly descending, every entry in [0, T). Returns it unchanged.
/// \throws diffuse::error naming the first offending entry.
inline std::vector<int> custom_timesteps(int num_train_timesteps, std::vector<int> descending) {
  detail::check_train_timesteps(num_train_timesteps);
  if (descending.empty()) detail::fail(error_kind::timesteps, "the timestep list is empty; expected at least one timestep");
  for (std::size_t k = 0; k < descending.size(); ++k) {
    const int t = descending[k];
    if (t < 0 || t >= num_train_timesteps)
      detail::fail(error_kind::timesteps, "timestep list entry ", k, " = ", t, " is out of range; expected 0 <= t < ",
                   num_train_timesteps);
    if (k > 0 && t >= descending[k - 1])
      detail::fail(error_kind::timesteps, "timestep list entry ", k, " = ", t, " follows ", descending[k - 1],
                   "; expected a strictly descending list");
  }
  return descending;
}

/// The descending list of N training timesteps for a spacing (SPEC §5; rounding half to even as numpy).
/// \param num_train_timesteps T, the timesteps the model was trained with
/// \param num_inference_steps N, how many of them the sampler visits (1 ≤ N ≤ T)
/// \param spacing      linspace, leading or trailing (see timestep_spacing)
/// \param steps_offset added to every entry of a leading list (diffusers' steps_offset; 0 or 1 in practice)
/// \throws diffuse::error for N outside [1, T], a negative offset, or an offset that pushes an entry past T − 1.
inline std::vector<int> make_timesteps(int num_train_timesteps, int num_inference_steps, timestep_spacing spacing,
                                       int steps_offset = 0) {
  detail::check_counts(num_train_timesteps, num_inference_steps);
  const int T = num_train_timesteps, N = num_inference_steps;
  if (steps_offset < 0) detail::fail(error_kind::timesteps, "steps_offset = ", steps_offset, "; expected >= 0");
  if (steps_offset != 0 && spacing != timestep_spacing::leading)
    detail::fail(error_kind::timesteps, "steps_offset = ", steps_offset,
                 " is only meaningful with leading spacing; expected 0 for linspace and trailing");
  std::vector<int> ts(static_cast<std::size_t>(N));
  switch (spacing) {
    case timestep_spacing::linspace: {
      // numpy: linspace(0, T − 1, N) = i·step with the last point exactly T − 1, then round.
      const double step = N > 1 ? static_cast<double>(T - 1) / (N - 1) : 0.0;
      for (int i = 0; i < N; ++i) {
        const double v = i + 1 == N && N > 1 ? static_cast<double>(T - 1) : i * step;
        ts[static_cast<std::size_t>(N - 1 - i)] = static_cast<int>(detail::round_half_even(v));
      }
      break;
    }
    case timestep_spacing::leading: {
      const int r = T / N;
      // Checked before adding: (N − 1)·r ≤ T − 1, so a large offset is refused here, never overflowed.
      if (steps_offset > T - 1 - (N - 1) * r)
        detail::fail(error_kind::timesteps, "leading spacing with steps_offset = ", steps_offset, " gives timestep ",
                     static_cast<long long>(N - 1) * r + steps_offset, "; expected every timestep < ", T, " (lower steps_offset)");
      for (int k = 0; k < N; ++k) ts[static_cast<std::size_t>(N - 1 - k)] = k * r + steps_offset;
      break;
    }
    case timestep_spacing::trailing: {
      // numpy's arange(T, 0, −T/N) computes T + k·δ with δ = (T − T/N) − T.
      const double delta = (T - static_cast<double>(T) / N) - T;
      for (int k = 0; k < N; ++k) ts[static_cast<std::size_t>(k)] = static_cast<int>(detail::round_half_even(T + k * delta)) - 1;
      break;
    }
  }
  return custom_timesteps(T, std::move(ts));
}

namespace detail {

inline int parse_count(std::string_view text, std::string_view whole) {
  int v = 0;
  const auto* end = text.data() + text.size();
  auto res = std::from_chars(text.data(), end, v);
  if (text.empty() || res.ec != std::errc{} || res.ptr != end)
    fail(error_kind::timesteps, "respacing string \"", std::string(whole), "\" has \"", std::string(text),
         "\" where a whole number was expected; expected \"ddimN\" or comma-separated counts like \"10,15,20\"");
  if (v < 0)
    fail(error_kind::timesteps, "respacing string \"", std::string(whole), "\" has a negative count ", v,
         "; expected counts >= 0");
  return v;
}

}  // namespace detail

/// guided-diffusion's respacing: "ddimN" (the smallest integer stride giving exactly N timesteps) or
/// comma-separated counts "a,b,c" (T split into equal sections, section j taking count_j evenly spaced
/// timesteps). Returns the descending list.
/// \throws diffuse::error for a malformed string, a "ddimN" no stride fits, a count above its section size,
///         or a result with no timestep.
inline std::vector<int> respace(int num_train_timesteps, std::string_view spec) {
  const int T = num_train_timesteps;
  detail::check_train_timesteps(T);
  std::set<int> use;
  if (spec.starts_with("ddim")) {
    const int n = detail::parse_count(spec.substr(4), spec);
    for (int stride = 1; stride < T; ++stride) {
      if ((T - 1) / stride + 1 == n) {  // ⌈T/s⌉
        for (int t = 0; t < T; t += stride) use.insert(t);
        break;
      }
    }
    if (use.empty())
      detail::fail(error_kind::timesteps, "respacing string \"", std::string(spec), "\": no integer stride gives exactly ",
                   n, " timesteps out of ", T, "; expected a count some stride 1 <= s < T reaches");
  } else {
    std::vector<int> counts;
    std::size_t pos = 0;
    while (true) {
      const std::size_t comma = spec.find(',', pos);
      counts.push_back(detail::parse_count(spec.substr(pos, comma == std::string_view::npos ? spec.npos : comma - pos), spec));
      if (comma == std::string_view::npos) break;
      pos = comma + 1;
    }
    const int sections = static_cast<int>(counts.size());
    if (sections > T)
      detail::fail(error_kind::timesteps, "respacing string \"", std::string(spec), "\" has ", sections,
                   " sections; expected at most T = ", T);
    const int base = T / sections, extra = T % sections;
    int start = 0;
    for (int j = 0; j < sections; ++j) {
      const int size = base + (j < extra ? 1 : 0);
      const int count = counts[static_cast<std::size_t>(j)];
      if (count > size)
        detail::fail(error_kind::timesteps, "respacing string \"", std::string(spec), "\": section ", j, " has ", size,
                     " timesteps but asks for ", count, "; expected a count <= the section size");
      if (count == 1) {
        use.insert(start);
      } else if (count > 1) {
        // Repeated addition, as guided-diffusion does: it differs from i·stride at ties.
        const double stride = static_cast<double>(size - 1) / (count - 1);
        double c = 0.0;
        for (int i = 0; i < count; ++i) {
          use.insert(start + static_cast<int>(detail::round_half_even(c)));
          c += stride;
        }
      }
      start += size;
    }
    if (use.empty())
      detail::fail(error_kind::timesteps, "respacing string \"", std::string(spec), "\" selects no timestep; expected at least one");
  }
  return std::vector<int>(use.rbegin(), use.rend());
}

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
