#pragma once
// Parsing of the JSON configs diffuse reads (config.json, scheduler_config.json). Not part of the
// public API.

#include <algorithm>
#include <string>

#include <nlohmann/json.hpp>

#include "diffuse/error.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace detail {

/// Parses `text`, refusing values nested deeper than 8 levels: nlohmann's depth callback would otherwise
/// silently discard them, turning a hostile "[[[[…" into null or an option into an empty list. `bad`
/// throws with the message it is given; `options` names what the flat object holds, for that message.
template <class Fail>
nlohmann::json parse_config_json(const std::string& text, const std::string& options, Fail&& bad) {
  const std::string too_deep = "JSON nests deeper than 8 levels; expected a flat object of " + options;
  nlohmann::json j;
  int depth_seen = 0;
  try {
    j = nlohmann::json::parse(text, [&](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
      depth_seen = std::max(depth_seen, depth);
      return depth <= 8;
    });
  } catch (const nlohmann::json::exception& e) {
    // An unclosed "[[[[…" fails as JSON too, but its depth is the reason worth reporting.
    if (depth_seen > 8) bad(too_deep);
    bad(cat("not valid JSON (", e.what(), ")"));
  }
  if (depth_seen > 8) bad(too_deep);
  return j;
}

}  // namespace detail
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
