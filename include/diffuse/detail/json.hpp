#pragma once
// Parsing of the JSON diffuse reads: the configs (config.json, scheduler_config.json, model_index.json)
// here, the safetensors header in io/safetensors.hpp; both with nlohmann's SAX interface. Not part of
// the public API.
//
// Why SAX and not nlohmann::json::parse with a callback: the callback parser of nlohmann 3.11 (what
// Debian ships) re-examines the parent object after every nested value, so a header of 100,000 tensors
// took minutes; the SAX parser is one pass. Building the value ourselves also lets us refuse what the DOM
// parser silently accepts (a second copy of a key replaces the first; a UTF-8 byte-order mark is
// skipped) and bound the memory a hostile text can make us allocate.
//
// Errors are reported in a fixed order whatever the text: nesting deeper than the limit, then invalid
// JSON, then the first problem with the content. So "[[[[…" is too deep rather than unterminated, and a
// file that is not JSON at all is said to be so. After the first content problem the handlers only
// follow the nesting (to find a syntax error or excess depth later in the text), building nothing more.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "diffuse/error.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace detail {

/// Deepest nesting of arrays and objects accepted in any JSON diffuse reads. A config needs 2 (an object
/// holding lists), a safetensors header 3.
inline constexpr int max_json_depth = 8;

/// Text of a JSON string for a message: quoted, control characters and quotes escaped, cut after
/// `max_chars` bytes so that a hostile 50 MB name cannot make a 50 MB message.
inline std::string json_quote(std::string_view s, std::size_t max_chars = 64) {
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size() && i < max_chars; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > max_chars) out += "...";
  return out + "\"";
}

/// Whether `text` starts with the UTF-8 byte-order mark. nlohmann skips one silently; Python's json
/// module (which diffusers reads configs with) and the reference safetensors reader refuse it.
inline bool starts_with_bom(std::string_view text) noexcept {
  return text.size() >= 3 && static_cast<unsigned char>(text[0]) == 0xEF && static_cast<unsigned char>(text[1]) == 0xBB &&
         static_cast<unsigned char>(text[2]) == 0xBF;
}

/// The offset of the first NUL byte in `text`, or npos. nlohmann's lexer takes a NUL outside a string as
/// the end of the input (for C strings), so "{}\0<anything>" would parse as "{}" with the rest ignored;
/// NUL is not JSON whitespace, and the reference safetensors reader refuses it.
inline std::size_t first_nul(std::string_view text) noexcept { return text.find('\0'); }

/// The state every SAX handler here shares: nesting depth against max_json_depth, the syntax error
/// nlohmann reported, and the first content problem (after which nothing more is built).
class json_sax_state {
 public:
  /// Whether the text nested deeper than max_json_depth (parsing stopped there).
  bool too_deep() const noexcept { return too_deep_; }
  /// nlohmann's message for invalid JSON, empty when the text was valid so far.
  const std::string& syntax_error() const noexcept { return syntax_; }
  /// The first problem with the content, empty if none.
  const std::string& problem() const noexcept { return problem_; }

  /// SAX callback: invalid JSON; parsing stops.
  bool parse_error(std::size_t, const std::string&, const nlohmann::json::exception& e) {
    syntax_ = e.what();
    return false;
  }

 protected:
  int depth_ = 0;  ///< arrays and objects open

  /// A container opens; false (stop parsing) past the depth limit.
  bool open() {
    if (++depth_ > max_json_depth) {
      too_deep_ = true;
      return false;
    }
    return true;
  }
  /// Whether a content problem was found: from then on only the nesting is followed.
  bool failed() const noexcept { return !problem_.empty(); }
  /// Records the first content problem.
  void refuse(std::string message) {
    if (!failed()) problem_ = std::move(message);
  }

 private:
  bool too_deep_ = false;
  std::string syntax_, problem_;
};

/// Builds an nlohmann::json value from SAX events, refusing a key repeated within one object and
/// bounding the memory of the result: each value is charged about what it costs in memory, and the
/// total may not exceed 8 bytes per byte of text plus 1 MiB (a real config costs under 4 per byte; a
/// list of numbers at most 8, 16 bytes per value of at least 2 characters). Without the bound, 32 MiB
/// of "[{},{},..." would allocate about 900 MB of empty objects.
class config_json_builder : public json_sax_state {
 public:
  using json = nlohmann::json;  ///< the value type built

  /// `text_bytes` sizes the memory budget.
  explicit config_json_builder(std::size_t text_bytes)
      : budget_(8 * static_cast<std::uint64_t>(text_bytes) + (std::uint64_t{1} << 20)) {}

  /// The value built (complete when none of too_deep, syntax_error, problem is set).
  json& result() noexcept { return root_; }

  /// SAX callbacks (nlohmann's json_sax interface).
  bool null() { return add(json(nullptr), 0), true; }
  /// \copydoc null
  bool boolean(bool b) { return add(json(b), 0), true; }
  /// \copydoc null
  bool number_integer(json::number_integer_t v) { return add(json(v), 0), true; }
  /// \copydoc null
  bool number_unsigned(json::number_unsigned_t v) { return add(json(v), 0), true; }
  /// \copydoc null
  bool number_float(json::number_float_t v, const json::string_t&) { return add(json(v), 0), true; }
  /// \copydoc null
  bool string(json::string_t& s) {
    const std::size_t cost = s.size() + sizeof(json::string_t);
    return add(json(std::move(s)), cost), true;
  }
  /// \copydoc null
  bool binary(json::binary_t&) { return add(json(nullptr), 0), true; }  // JSON text has no binary values
  /// \copydoc null
  bool start_object(std::size_t) {
    if (!open()) return false;
    if (add(json::object(), 48)) stack_.push_back(last_);
    else ++skipped_;
    return true;
  }
  /// \copydoc null
  bool key(json::string_t& k) {
    if (failed()) return true;
    if (stack_.back()->contains(k)) {
      refuse(cat("key ", json_quote(k), " appears twice in one object; expected unique keys (JSON readers disagree on which copy counts)"));
      return true;
    }
    if (charge(64 + k.size())) key_ = std::move(k);
    return true;
  }
  /// \copydoc null
  bool end_object() { return close(); }
  /// \copydoc null
  bool start_array(std::size_t) {
    if (!open()) return false;
    if (add(json::array(), 24)) stack_.push_back(last_);
    else ++skipped_;
    return true;
  }
  /// \copydoc null
  bool end_array() { return close(); }

 private:
  json root_;
  std::vector<json*> stack_;  // the open containers being built
  json* last_ = nullptr;      // the value added last
  int skipped_ = 0;           // containers opened after the first content problem, not built
  std::string key_;
  std::uint64_t used_ = 0, budget_;

  bool charge(std::size_t bytes) {
    used_ += bytes + sizeof(json);
    if (used_ > budget_)
      refuse(cat("its values would take more than ", budget_, " bytes of memory (8 per byte of text + 1 MiB); expected a config, "
                 "whose values take far less"));
    return !failed();
  }
  bool add(json&& v, std::size_t cost) {
    if (failed() || !charge(cost)) return false;
    if (stack_.empty()) {
      root_ = std::move(v);
      last_ = &root_;
    } else if (stack_.back()->is_array()) {
      stack_.back()->push_back(std::move(v));
      last_ = &stack_.back()->back();
    } else {
      last_ = &((*stack_.back())[key_] = std::move(v));
    }
    return true;
  }
  bool close() {
    --depth_;
    if (skipped_) --skipped_;
    else stack_.pop_back();
    return true;
  }
};

/// Parses `text`, refusing values nested deeper than 8 levels, a key twice in one object, a byte-order
/// mark, and texts whose values would take over 8 bytes of memory per byte. `bad` throws with the
/// message it is given; `options` names what the flat object holds, for the depth message.
template <class Fail>
nlohmann::json parse_config_json(const std::string& text, const std::string& options, Fail&& bad) {
  if (starts_with_bom(text))
    bad("starts with a UTF-8 byte-order mark; expected JSON text without one (Python's json.loads, which diffusers uses, refuses it)");
  if (const std::size_t at = first_nul(text); at != std::string_view::npos)
    bad(cat("not valid JSON (a NUL byte at offset ", at, "; expected JSON text, which has none outside strings and escapes it inside)"));
  config_json_builder builder(text.size());
  nlohmann::json::sax_parse(text.data(), text.data() + text.size(), &builder);
  if (builder.too_deep()) bad(cat("JSON nests deeper than ", max_json_depth, " levels; expected a flat object of ", options));
  if (!builder.syntax_error().empty()) bad(cat("not valid JSON (", builder.syntax_error(), ")"));
  if (!builder.problem().empty()) bad(builder.problem());
  return std::move(builder.result());
}

}  // namespace detail
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
