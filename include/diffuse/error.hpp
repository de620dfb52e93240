#pragma once
/// \file
/// diffuse::error, the one exception type the library throws on bad input.

#include <charconv>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

#include "diffuse/version.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// What part of the library rejected the input; also the stable prefix of every message.
enum class error_kind {
  schedule,   ///< "[diffuse.schedule]" noise schedule parameters and tables
  timesteps,  ///< "[diffuse.timesteps]" timestep lists and respacing strings
  shape,      ///< "[diffuse.shape]" tensor shapes and buffer sizes
  argument,   ///< "[diffuse.argument]" any other out-of-range argument
  numeric,    ///< "[diffuse.numeric]" a computation that would give Inf or NaN
  sampler,    ///< "[diffuse.sampler]" sampler options
  guidance,   ///< "[diffuse.guidance]" guidance hooks
  io,         ///< "[diffuse.io]" files: safetensors, config.json
  model,      ///< "[diffuse.model]" the reference UNet and its configuration
};

/// The stable prefix of an error kind, e.g. "[diffuse.schedule]".
constexpr std::string_view prefix(error_kind k) noexcept {
  switch (k) {
    case error_kind::schedule: return "[diffuse.schedule]";
    case error_kind::timesteps: return "[diffuse.timesteps]";
    case error_kind::shape: return "[diffuse.shape]";
    case error_kind::argument: return "[diffuse.argument]";
    case error_kind::numeric: return "[diffuse.numeric]";
    case error_kind::sampler: return "[diffuse.sampler]";
    case error_kind::guidance: return "[diffuse.guidance]";
    case error_kind::io: return "[diffuse.io]";
    case error_kind::model: return "[diffuse.model]";
  }
  return "[diffuse]";
}

/// Thrown for every invalid input. what() is "<prefix> <what was wrong>; expected <what was expected>".
///
/// Example:
/// \code
/// try { auto s = diffuse::noise_schedule::linear(0); }
/// catch (const diffuse::error& e) { std::cerr << e.what() << '\n'; }  // [diffuse.schedule] ...
/// \endcode
class error : public std::runtime_error {
 public:
  /// The message is prefixed with the kind's stable prefix, e.g. "[diffuse.schedule] ".
  error(error_kind kind, const std::string& message)
      : std::runtime_error(std::string(prefix(kind)) + " " + message), kind_(kind) {}
  /// The component that raised it.
  error_kind kind() const noexcept { return kind_; }

 private:
  error_kind kind_;
};

namespace detail {

/// Shortest round-trip text of a number, identical on every platform (used in error messages).
template <class T>
std::string to_text(T value) {
  if constexpr (std::is_same_v<T, bool>) {
    return value ? "true" : "false";
  } else if constexpr (std::is_arithmetic_v<T>) {
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof buf, value);
    if (res.ec != std::errc{}) return "?";
    return std::string(buf, res.ptr);
  } else {
    return std::string(value);
  }
}

/// Concatenates pieces (strings and numbers) into one message.
template <class... Parts>
std::string cat(const Parts&... parts) {
  std::string s;
  ((s += to_text(parts)), ...);
  return s;
}

/// Throws diffuse::error(kind, cat(parts...)).
template <class... Parts>
[[noreturn]] void fail(error_kind kind, const Parts&... parts) {
  throw error(kind, cat(parts...));
}

}  // namespace detail
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
