#pragma once
/// \file
/// Reading and writing safetensors files: the weight format HuggingFace diffusers saves.
///
/// Layout: an 8-byte little-endian header length N, N bytes of JSON
/// `{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}`,
/// then the data; offsets are relative to the end of the header. Everything in a file is checked
/// before any tensor is handed out: a corrupt, truncated or hostile file is a diffuse::error, never an
/// out-of-bounds read, and nothing is allocated beyond what the file's own size justifies.

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "diffuse/detail/json.hpp"
#include "diffuse/detail/read_file.hpp"
#include "diffuse/error.hpp"
#include "diffuse/io/write_file.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

/// Element types a safetensors file may hold.
enum class tensor_dtype { f64, f32, f16, bf16, i64, i32, i16, i8, u8, boolean };

/// The name safetensors gives a dtype ("F32", "BF16", ...).
constexpr std::string_view dtype_name(tensor_dtype d) noexcept {
  switch (d) {
    case tensor_dtype::f64: return "F64";
    case tensor_dtype::f32: return "F32";
    case tensor_dtype::f16: return "F16";
    case tensor_dtype::bf16: return "BF16";
    case tensor_dtype::i64: return "I64";
    case tensor_dtype::i32: return "I32";
    case tensor_dtype::i16: return "I16";
    case tensor_dtype::i8: return "I8";
    case tensor_dtype::u8: return "U8";
    case tensor_dtype::boolean: return "BOOL";
  }
  return "?";
}

/// Bytes per element.
constexpr std::size_t dtype_size(tensor_dtype d) noexcept {
  switch (d) {
    case tensor_dtype::f64: case tensor_dtype::i64: return 8;
    case tensor_dtype::f32: case tensor_dtype::i32: return 4;
    case tensor_dtype::f16: case tensor_dtype::bf16: case tensor_dtype::i16: return 2;
    case tensor_dtype::i8: case tensor_dtype::u8: case tensor_dtype::boolean: return 1;
  }
  return 1;
}

/// Shape as text, "(32, 1, 3, 3)", for messages.
inline std::string shape_text(std::span<const std::int64_t> shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + detail::to_text(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

/// One tensor's entry in the header.
struct tensor_info {
  tensor_dtype dtype{};             ///< element type as stored (F32, F16, BF16, I64, ...)
  std::vector<std::int64_t> shape;  ///< dimensions, outermost first (row-major, as PyTorch)
  /// First byte of the tensor's data, from the start of the data section.
  std::size_t begin = 0, end = 0;  ///< byte range within the data section
  /// Number of elements, the product of `shape` (1 for a scalar).
  std::size_t numel() const {
    std::size_t n = 1;
    for (auto d : shape) n *= static_cast<std::size_t>(d);
    return n;
  }
};

namespace detail {

/// IEEE half → float, subnormals, infinities and NaN included.
inline float half_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal half: normalise
    int e = -1;
    do { mant <<= 1; ++e; } while ((mant & 0x400u) == 0);
    bits = sign | (static_cast<std::uint32_t>(112 - e) << 23) | ((mant & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(bits);
}

inline float bf16_to_float(std::uint16_t b) noexcept { return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16); }

template <class T>
T load_le(const unsigned char* p) noexcept {
  using U = std::conditional_t<sizeof(T) == 8, std::uint64_t,
            std::conditional_t<sizeof(T) == 4, std::uint32_t, std::conditional_t<sizeof(T) == 2, std::uint16_t, std::uint8_t>>>;
  U u = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) u |= static_cast<U>(static_cast<U>(p[i]) << (8 * i));
  return std::bit_cast<T>(u);
}

/// The dtype named `s` ("F32", ...), or nothing for a name safetensors has but diffuse does not read.
inline std::optional<tensor_dtype> find_dtype(std::string_view s) noexcept {
  static constexpr tensor_dtype all[] = {tensor_dtype::f64, tensor_dtype::f32, tensor_dtype::f16, tensor_dtype::bf16,
                                         tensor_dtype::i64, tensor_dtype::i32, tensor_dtype::i16, tensor_dtype::i8,
                                         tensor_dtype::u8,  tensor_dtype::boolean};
  for (auto d : all)
    if (s == dtype_name(d)) return d;
  return std::nullopt;
}

/// Whether a float or double is finite, from its bits: unlike std::isfinite, not folded away under
/// -ffast-math, which lets the compiler assume no value is ever NaN or infinite.
template <class F>
bool finite_bits(F x) noexcept {
  static_assert(std::is_same_v<F, float> || std::is_same_v<F, double>);
  if constexpr (std::is_same_v<F, float>) return (std::bit_cast<std::uint32_t>(x) & 0x7f800000u) != 0x7f800000u;
  else return (std::bit_cast<std::uint64_t>(x) & 0x7ff0000000000000ull) != 0x7ff0000000000000ull;
}

/// Whether a float or double is NaN, from its bits (see finite_bits).
template <class F>
bool nan_bits(F x) noexcept {
  static_assert(std::is_same_v<F, float> || std::is_same_v<F, double>);
  if constexpr (std::is_same_v<F, float>) return (std::bit_cast<std::uint32_t>(x) & 0x7fffffffu) > 0x7f800000u;
  else return (std::bit_cast<std::uint64_t>(x) & 0x7fffffffffffffffull) > 0x7ff0000000000000ull;
}

/// SAX handler that turns a safetensors header into the tensor table directly, without a JSON value in
/// between: memory is the table itself, at most 8 bytes per header byte + 1 MiB (a tensor entry of 50
/// characters costs about 200 bytes; only a header of many tiny __metadata__ strings could exceed it).
///
/// The grammar it accepts: one object whose keys are unique; "__metadata__" maps to an object of
/// unique keys with string values; every other key maps to an object with exactly "dtype" (a string),
/// "shape" (at most 16 non-negative integers below 2^63) and "data_offsets" (two non-negative
/// integers). Each entry is checked against the data section as soon as it closes.
class safetensors_header_handler : public json_sax_state {
 public:
  using json = nlohmann::json;  ///< for the callback types

  /// Fills `tensors` and `metadata`; `data_size` is the byte count of the data section.
  safetensors_header_handler(std::map<std::string, tensor_info>& tensors, std::map<std::string, std::string>& metadata,
                             std::size_t header_bytes, std::size_t data_size)
      : tensors_(tensors), metadata_(metadata), data_size_(data_size),
        budget_(8 * static_cast<std::uint64_t>(header_bytes) + (std::uint64_t{1} << 20)) {}

  /// Whether the header was one JSON object (checked once parsing completes).
  bool saw_object() const noexcept { return saw_object_; }

  /// SAX callbacks (nlohmann's json_sax interface).
  bool null() { return scalar("null", false, 0), true; }
  /// \copydoc null
  bool boolean(bool b) { return scalar(b ? "true" : "false", false, 0), true; }
  /// \copydoc null
  bool number_integer(json::number_integer_t v) { return scalar(to_text(v), false, 0), true; }
  /// \copydoc null
  bool number_unsigned(json::number_unsigned_t v) { return scalar(to_text(v), true, v), true; }
  /// \copydoc null
  bool number_float(json::number_float_t, const json::string_t& raw) { return scalar(raw.substr(0, 32), false, 0), true; }
  /// \copydoc null
  bool string(json::string_t& s) {
    if (failed() || skipped_) return true;
    if (where_ == place::metadata) {
      charge(96 + metadata_key_.size() + s.size());
      if (!failed()) metadata_.emplace(std::move(metadata_key_), std::move(s));
    } else if (where_ == place::entry && field_ == field::dtype) {
      entry_.dtype_is_string = true;
      entry_.dtype = s.size() <= 16 ? std::move(s) : s.substr(0, 65);  // no dtype name is longer
    } else {
      scalar(json_quote(s, 32), false, 0);
    }
    return true;
  }
  /// \copydoc null
  bool binary(json::binary_t&) { return scalar("<binary>", false, 0), true; }
  /// \copydoc null
  bool start_object(std::size_t) { return container(true); }
  /// \copydoc null
  bool start_array(std::size_t) { return container(false); }
  /// \copydoc null
  bool key(json::string_t& k) {
    if (failed() || skipped_) return true;
    if (where_ == place::top) {
      if (k == "__metadata__") {
        if (seen_metadata_) return refuse("__metadata__ appears twice in the header; expected it at most once"), true;
        seen_metadata_ = true;
        top_value_ = place::metadata;
      } else {
        if (tensors_.count(k)) return refuse(cat("tensor ", json_quote(k), " appears twice in the header; expected unique names")), true;
        entry_ = {};
        entry_.name = std::move(k);
        top_value_ = place::entry;
      }
    } else if (where_ == place::metadata) {
      if (metadata_.count(k)) return refuse(cat("__metadata__ has the key ", json_quote(k), " twice; expected unique keys")), true;
      metadata_key_ = std::move(k);
    } else if (where_ == place::entry) {
      field f = k == "dtype" ? field::dtype : k == "shape" ? field::shape : k == "data_offsets" ? field::offsets : field::none;
      if (f == field::none) return malformed(), true;
      bool& seen = f == field::dtype ? entry_.has_dtype : f == field::shape ? entry_.has_shape : entry_.has_offsets;
      if (seen) return refuse(cat("entry ", json_quote(entry_.name), " has the key \"", k, "\" twice; expected each of dtype, shape and data_offsets once")), true;
      seen = true;
      field_ = f;
    }
    return true;
  }
  /// \copydoc null
  bool end_object() {
    --depth_;
    if (skipped_) return --skipped_, true;
    if (failed()) return true;
    if (where_ == place::entry) {
      finish_entry();
      where_ = place::top;
    } else if (where_ == place::metadata) {
      where_ = place::top;
    } else if (where_ == place::top) {
      where_ = place::done;
    }
    return true;
  }
  /// \copydoc null
  bool end_array() {
    --depth_;
    if (skipped_) return --skipped_, true;
    if (failed()) return true;
    if (where_ == place::shape || where_ == place::offsets) {
      (where_ == place::shape ? entry_.shape_text : entry_.offsets_text) += "]";
      where_ = place::entry;
    }
    return true;
  }

 private:
  enum class place { start, top, metadata, entry, shape, offsets, done };
  enum class field { none, dtype, shape, offsets };
  struct element {
    bool is_unsigned;
    std::uint64_t value;
  };
  struct pending_entry {
    std::string name, dtype, shape_text = "[", offsets_text = "[";
    bool has_dtype = false, has_shape = false, has_offsets = false;
    bool dtype_is_string = false, shape_is_array = false, offsets_is_array = false;
    std::vector<element> shape, offsets;
  };

  std::map<std::string, tensor_info>& tensors_;
  std::map<std::string, std::string>& metadata_;
  std::size_t data_size_;
  std::uint64_t used_ = 0, budget_;
  place where_ = place::start;
  place top_value_ = place::entry;  // what the value of the last top-level key is
  field field_ = field::none;       // which field of an entry the next value is
  int skipped_ = 0;                 // containers open that are not part of the grammar
  bool saw_object_ = false, seen_metadata_ = false;
  pending_entry entry_;
  std::string metadata_key_;

  void malformed() {
    refuse(cat("entry ", json_quote(entry_.name), " is malformed; expected exactly the keys dtype, shape and data_offsets"));
  }
  void charge(std::uint64_t bytes) {
    used_ += bytes;
    if (used_ > budget_)
      refuse(cat("header entries would take more than ", budget_, " bytes of memory (8 per header byte + 1 MiB); expected tensor entries "
                 "and a short __metadata__"));
  }

  // A value that is not a container, as text for messages; `is_unsigned` with its value when it is a
  // non-negative integer.
  void scalar(const std::string& text, bool is_unsigned, std::uint64_t value) {
    if (failed() || skipped_) return;
    switch (where_) {
      case place::start: break;  // not an object: reported when parsing ends
      case place::top:
        if (top_value_ == place::metadata) refuse("__metadata__ is not an object; expected string keys and string values");
        else malformed();
        break;
      case place::metadata: refuse(cat("__metadata__ entry ", json_quote(metadata_key_), " is not a string; expected string values")); break;
      case place::entry:
        if (field_ == field::dtype) break;  // dtype_is_string stays false
        break;                              // a non-array shape or data_offsets: is_array stays false
      case place::shape: append(entry_.shape, entry_.shape_text, text, is_unsigned, value, 16); break;
      case place::offsets: append(entry_.offsets, entry_.offsets_text, text, is_unsigned, value, 2); break;
      case place::done: break;
    }
  }

  void append(std::vector<element>& list, std::string& list_text, const std::string& text, bool is_unsigned, std::uint64_t value,
              std::size_t most) {
    if (list.size() == most) {
      // Refused at once: an array is never stored beyond what a valid entry can hold.
      if (&list == &entry_.shape) refuse(cat("entry ", json_quote(entry_.name), " has a bad shape; expected an array of at most 16 sizes"));
      else refuse(cat("entry ", json_quote(entry_.name), " has data_offsets ", list_text, ",...]; expected [begin, end] as non-negative integers"));
      return;
    }
    if (!list.empty()) list_text += ",";
    list_text += text;
    list.push_back({is_unsigned, value});
  }

  bool container(bool is_object) {
    if (!open()) return false;
    if (failed() || skipped_) return ++skipped_, true;
    switch (where_) {
      case place::start:
        if (is_object) {
          saw_object_ = true;
          where_ = place::top;
          return true;
        }
        break;
      case place::top:
        if (is_object) {
          where_ = top_value_;
          field_ = field::none;
          return true;
        }
        if (top_value_ == place::metadata) refuse("__metadata__ is not an object; expected string keys and string values");
        else malformed();
        break;
      case place::metadata: refuse(cat("__metadata__ entry ", json_quote(metadata_key_), " is not a string; expected string values")); break;
      case place::entry:
        if (!is_object && field_ == field::shape) {
          entry_.shape_is_array = true;
          where_ = place::shape;
          return true;
        }
        if (!is_object && field_ == field::offsets) {
          entry_.offsets_is_array = true;
          where_ = place::offsets;
          return true;
        }
        break;  // a container as dtype, or an object as shape / data_offsets: reported when the entry closes
      case place::shape: append(entry_.shape, entry_.shape_text, is_object ? "{...}" : "[...]", false, 0, 16); break;
      case place::offsets: append(entry_.offsets, entry_.offsets_text, is_object ? "{...}" : "[...]", false, 0, 2); break;
      case place::done: break;
    }
    ++skipped_;  // not part of the grammar: followed for its nesting only
    return true;
  }

  // The checks of one entry, in the order a reader of the message needs them.
  void finish_entry() {
    pending_entry& e = entry_;
    const std::string name = json_quote(e.name);
    if (!e.has_dtype || !e.has_shape || !e.has_offsets) return malformed();
    if (!e.dtype_is_string) return refuse(cat("entry ", name, " has a non-string dtype"));
    const std::optional<tensor_dtype> dtype = find_dtype(e.dtype);
    if (!dtype)
      return refuse(cat("tensor ", name, " has unknown dtype ", json_quote(e.dtype),
                        "; expected one of F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL"));
    if (!e.shape_is_array) return refuse(cat("entry ", name, " has a bad shape; expected an array of at most 16 sizes"));
    // A tensor with any zero dimension is empty; otherwise the element count may not exceed the data
    // section's byte count at any point, so neither it nor its byte size (<= 8 x data_size) can wrap.
    bool empty = false;
    for (const element& d : e.shape) {
      if (!d.is_unsigned || d.value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        return refuse(cat("entry ", name, " has shape ", e.shape_text, "; expected non-negative integers below 2^63"));
      empty = empty || d.value == 0;
    }
    tensor_info t;
    t.dtype = *dtype;
    std::uint64_t numel = empty ? 0 : 1;
    for (const element& d : e.shape) {
      if (!empty && d.value > data_size_ / numel)
        return refuse(cat("entry ", name, " has shape ", e.shape_text, ", more elements than the ", data_size_, "-byte data section holds"));
      numel *= d.value;
      t.shape.push_back(static_cast<std::int64_t>(d.value));
    }
    if (!e.offsets_is_array || e.offsets.size() != 2 || !e.offsets[0].is_unsigned || !e.offsets[1].is_unsigned)
      return refuse(cat("entry ", name, " has data_offsets ", e.offsets_is_array ? e.offsets_text : std::string("(not an array)"),
                        "; expected [begin, end] as non-negative integers"));
    const std::uint64_t b = e.offsets[0].value, end = e.offsets[1].value;
    if (b > end || end > data_size_)
      return refuse(cat("entry ", name, " has data_offsets [", b, ", ", end, "]; expected 0 <= begin <= end <= ", data_size_, " (the data section)"));
    if (end - b != numel * dtype_size(t.dtype))
      return refuse(cat("entry ", name, " spans ", end - b, " bytes; expected ", numel * dtype_size(t.dtype), " for ", dtype_name(t.dtype),
                        " of shape ", e.shape_text));
    t.begin = static_cast<std::size_t>(b);
    t.end = static_cast<std::size_t>(end);
    // A map node, the name and the shape, with the allocator's rounding.
    charge(160 + e.name.size() + 8 * t.shape.size());
    if (!failed()) tensors_.emplace(std::move(e.name), std::move(t));
  }
};

}  // namespace detail

/// A safetensors file in memory, validated on load.
///
/// Example:
/// \code
/// auto file = diffuse::safetensors_file::load("model.safetensors");
/// std::vector<float> w = file.read<float>("conv_in.weight");
/// \endcode
class safetensors_file {
 public:
  /// Largest header accepted, as in the reference implementation (100 MB).
  static constexpr std::uint64_t max_header_bytes = 100'000'000;
  /// Largest file load() reads (256 GiB): far above any diffusers checkpoint, and the whole file is held
  /// in memory, so a larger one could not be loaded anyway.
  static constexpr std::uint64_t max_file_bytes = std::uint64_t{256} << 30;
  /// Deepest JSON nesting accepted in a header (a valid one needs 3).
  static constexpr int max_json_depth = detail::max_json_depth;

  /// Reads and validates a file. The header is read and checked before the data section is allocated,
  /// so a hostile header costs its own size, never the size it claims for the data.
  /// \throws diffuse::error (io) when the path is not a readable regular file (a directory, FIFO or
  ///         device is named as such), the file changes size while being read, or it is not a valid
  ///         safetensors file (see from_bytes).
  static safetensors_file load(const std::filesystem::path& path) {
    detail::regular_file in(path, "safetensors file", max_file_bytes);
    safetensors_file f;
    f.origin_ = path.string();
    unsigned char length[8] = {};
    const std::uint64_t size = in.size();
    if (size >= 8) in.read(length, 8);
    const std::size_t n = f.check_length(size, length);
    std::string header(n, '\0');
    in.read(header.data(), n);
    const std::size_t data_size = static_cast<std::size_t>(size - 8 - n);
    f.parse_header(header, data_size);
    header = std::string();  // freed before the data section is allocated
    f.bytes_.resize(data_size);
    in.read(f.bytes_.data(), data_size);
    in.finish();
    return f;
  }

  /// Validates bytes already in memory; `origin` names them in messages.
  /// \throws diffuse::error (io) for a file shorter than its header length says; a header longer than
  ///         max_header_bytes, starting with a byte-order mark, not valid JSON, nested deeper than
  ///         max_json_depth, or with a key twice in one object; an entry without exactly dtype, shape and
  ///         data_offsets, of an unknown dtype, or whose byte range is outside the data section or does
  ///         not match its shape; and data ranges that overlap, leave a gap, or end before the file does
  ///         (as the reference reader refuses them).
  static safetensors_file from_bytes(std::vector<unsigned char> bytes, std::string origin = "<memory>") {
    safetensors_file f;
    f.origin_ = std::move(origin);
    f.bytes_ = std::move(bytes);
    const std::size_t n = f.check_length(f.bytes_.size(), f.bytes_.data());
    f.data_offset_ = 8 + n;
    f.parse_header(std::string_view(reinterpret_cast<const char*>(f.bytes_.data() + 8), n), f.bytes_.size() - 8 - n);
    return f;
  }

  /// Names of the tensors, sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> n;
    for (const auto& [k, v] : tensors_) n.push_back(k);
    return n;
  }
  /// Whether the file holds a tensor of this name.
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  /// Number of tensors in the file.
  std::size_t size() const { return tensors_.size(); }
  /// The header's "__metadata__" (string to string).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// Where the bytes came from (a path or "<memory>").
  const std::string& origin() const { return origin_; }

  /// The entry of one tensor; an error naming the file if it is absent.
  const tensor_info& info(const std::string& name) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) detail::fail(error_kind::io, "tensor \"", name, "\" is missing from ", origin_);
    return it->second;
  }

  /// The tensor's elements converted to T (float from F16/BF16/F32/F64; integers from integer dtypes).
  template <class T>
  std::vector<T> read(const std::string& name) const {
    std::vector<T> out(info(name).numel());
    read_into<T>(name, out);
    return out;
  }

  /// Same, into a caller's buffer of exactly numel() elements.
  template <class T>
  void read_into(const std::string& name, std::span<T> out) const {
    static_assert(std::is_arithmetic_v<T>, "safetensors_file::read needs an arithmetic element type");
    const tensor_info& t = info(name);
    if (out.size() != t.numel())
      detail::fail(error_kind::shape, "buffer for tensor \"", name, "\" has ", out.size(), " elements; expected ", t.numel());
    const bool is_float = t.dtype == tensor_dtype::f64 || t.dtype == tensor_dtype::f32 || t.dtype == tensor_dtype::f16 ||
                          t.dtype == tensor_dtype::bf16;
    if constexpr (std::is_floating_point_v<T>) {
      if (!is_float)
        detail::fail(error_kind::io, "tensor \"", name, "\" in ", origin_, " has dtype ", dtype_name(t.dtype),
                     "; expected a floating-point dtype (F64, F32, F16 or BF16)");
    } else {
      if (is_float || t.dtype == tensor_dtype::boolean)
        detail::fail(error_kind::io, "tensor \"", name, "\" in ", origin_, " has dtype ", dtype_name(t.dtype), "; expected an integer dtype");
    }
    using detail::load_le;
    const unsigned char* p = data_begin() + t.begin;
    // Each T compiles only the conversions its kind allows (the dtype was checked above).
    if constexpr (std::is_floating_point_v<T>) {
      switch (t.dtype) {
        case tensor_dtype::f64: return convert(name, p, dtype_size(t.dtype), out, [](const unsigned char* q) { return load_le<double>(q); });
        case tensor_dtype::f32: return convert(name, p, dtype_size(t.dtype), out, [](const unsigned char* q) { return load_le<float>(q); });
        case tensor_dtype::f16: return convert(name, p, dtype_size(t.dtype), out, [](const unsigned char* q) { return detail::half_to_float(load_le<std::uint16_t>(q)); });
        case tensor_dtype::bf16: return convert(name, p, dtype_size(t.dtype), out, [](const unsigned char* q) { return detail::bf16_to_float(load_le<std::uint16_t>(q)); });
        default: break;
      }
    } else {
      switch (t.dtype) {
        case tensor_dtype::i64: return convert(name, p, dtype_size(t.dtype), out, [](const unsigned char* q) { return load_le<std::int64_t>(q); });
        case tensor_dtype::i32: return convert(name, p, dtype_size(t.dtype), out, [](const unsigned char* q) { return load_le<std::int32_t>(q); });
        case tensor_dtype::i16: return convert(name, p, dtype_size(t.dtype), out, [](const unsigned char* q) { return load_le<std::int16_t>(q); });
        case tensor_dtype::i8: return convert(name, p, dtype_size(t.dtype), out, [](const unsigned char* q) { return static_cast<std::int8_t>(*q); });
        case tensor_dtype::u8: return convert(name, p, dtype_size(t.dtype), out, [](const unsigned char* q) { return static_cast<std::uint8_t>(*q); });
        default: break;
      }
    }
  }

 private:
  std::string origin_;
  std::vector<unsigned char> bytes_;
  std::size_t data_offset_ = 0;  // where the data section starts in bytes_ (0: bytes_ holds only the data)
  std::map<std::string, tensor_info> tensors_;
  std::map<std::string, std::string> metadata_;

  const unsigned char* data_begin() const { return bytes_.data() + data_offset_; }

  // Decodes every element with `load` and converts it to T, refusing a conversion that would change the
  // value beyond rounding: an integer outside T's range (2^40 + 5 as int32 would wrap to 5), or a finite
  // double beyond float's range (1e300 would become inf). NaN and infinities convert as they are.
  template <class T, class Load>
  void convert(const std::string& name, const unsigned char* p, std::size_t w, std::span<T> out, Load load) const {
    using Src = decltype(load(p));
    for (std::size_t i = 0; i < out.size(); ++i, p += w) {
      const Src v = load(p);
      if constexpr (std::is_integral_v<T>) {
        // Through intmax_t / uintmax_t so that bool and the character types (which std::in_range refuses)
        // are checked too.
        constexpr auto lo = static_cast<std::intmax_t>(std::numeric_limits<T>::min());
        constexpr auto hi = static_cast<std::uintmax_t>(std::numeric_limits<T>::max());
        if (std::cmp_less(v, lo) || std::cmp_greater(v, hi))
          detail::fail(error_kind::io, "tensor \"", name, "\" in ", origin_, " holds ", v, " at element ", i, ", outside the range [",
                       lo, ", ", hi, "] of the ", sizeof(T) * 8, "-bit ",
                       std::is_signed_v<T> ? "signed" : "unsigned", " integer type asked for; expected a wider type, or values that fit");
      } else if constexpr (sizeof(T) < sizeof(Src)) {
        constexpr Src most = static_cast<Src>(std::numeric_limits<T>::max());
        if (detail::finite_bits(v) && (v > most || v < -most))
          detail::fail(error_kind::io, "tensor \"", name, "\" in ", origin_, " holds ", v, " at element ", i, ", beyond the range of the ",
                       sizeof(T) * 8, "-bit float asked for (largest ", std::numeric_limits<T>::max(), "); expected read<double>, or values within range");
      }
      out[i] = static_cast<T>(v);
    }
  }

  [[noreturn]] void bad(const std::string& what) const { detail::fail(error_kind::io, origin_, ": ", what); }

  // The header length from the first 8 bytes of a file of `size` bytes, checked against the cap and the
  // size; `length` is read only when size >= 8.
  std::size_t check_length(std::uint64_t size, const unsigned char* length) const {
    if (size < 8) bad(detail::cat("file has ", size, " bytes; expected at least 8 (the header length)"));
    const std::uint64_t n = detail::load_le<std::uint64_t>(length);
    if (n > max_header_bytes) bad(detail::cat("header claims ", n, " bytes; expected at most ", max_header_bytes));
    if (n > size - 8)
      bad(detail::cat("header claims ", n, " bytes but only ", size - 8, " follow the length; the file is truncated or not safetensors"));
    if (n < 2) bad("header is empty; expected a JSON object");
    return static_cast<std::size_t>(n);
  }

  void parse_header(std::string_view text, std::size_t data_size) {
    if (detail::starts_with_bom(text))
      bad("header starts with a UTF-8 byte-order mark; expected JSON text without one (the reference reader refuses it)");
    if (const std::size_t at = detail::first_nul(text); at != std::string_view::npos)
      bad(detail::cat("header is not valid JSON (a NUL byte at offset ", at, "; expected JSON text, which has none; pad with spaces)"));
    detail::safetensors_header_handler handler(tensors_, metadata_, text.size(), data_size);
    nlohmann::json::sax_parse(text.data(), text.data() + text.size(), &handler);
    if (handler.too_deep()) bad(detail::cat("header JSON nests deeper than ", max_json_depth, " levels; expected a flat object of tensors"));
    if (!handler.syntax_error().empty()) bad(detail::cat("header is not valid JSON (", handler.syntax_error(), ")"));
    if (!handler.problem().empty()) bad(handler.problem());
    if (!handler.saw_object()) bad("header is not a JSON object; expected {\"name\": {\"dtype\", \"shape\", \"data_offsets\"}, ...}");

    // The reference reader requires the tensors, in order of their offsets, to tile the data section
    // exactly: no overlap (two tensors sharing bytes), no gap and nothing after the last one (bytes no
    // tensor owns, where a polyglot file could hide a second payload).
    std::vector<std::pair<std::size_t, std::size_t>> ranges;
    ranges.reserve(tensors_.size());
    for (const auto& [name, t] : tensors_) ranges.emplace_back(t.begin, t.end);
    std::sort(ranges.begin(), ranges.end());
    std::size_t covered = 0;
    for (std::size_t i = 0; i < ranges.size(); ++i) {
      if (ranges[i].first < covered)
        bad(detail::cat("tensor data ranges [", ranges[i - 1].first, ", ", ranges[i - 1].second, ") and [", ranges[i].first, ", ",
                        ranges[i].second, ") overlap; expected disjoint ranges"));
      if (ranges[i].first > covered)
        bad(detail::cat("bytes [", covered, ", ", ranges[i].first, ") of the data section belong to no tensor; expected tensors packed "
                        "without gaps, as the reference reader requires"));
      covered = ranges[i].second;
    }
    if (covered != data_size)
      bad(detail::cat(data_size - covered, " bytes follow the last tensor's data (the data section has ", data_size, " bytes, the tensors end at ",
                      covered, "); expected the file to end where its last tensor does, as the reference reader requires"));
  }
};

/// A tensor to write: name, shape and float or integer elements.
template <class T>
struct tensor_view {
  std::string name;                 ///< the tensor's name in the file
  std::vector<std::int64_t> shape;  ///< dimensions; their product must equal values.size()
  std::span<const T> values;        ///< the elements, row-major (not copied: must outlive the write)
};

/// The bytes of a safetensors file holding float tensors (as F32) and int64 tensors (as I64), in the
/// order given, with an optional `__metadata__` map.
/// \throws diffuse::error when a tensor's values do not match its shape or a name is given twice.
inline std::vector<unsigned char> encode_safetensors(const std::vector<tensor_view<float>>& floats,
                                                     const std::vector<tensor_view<std::int64_t>>& ints = {},
                                                     const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::size_t offset = 0;
  auto add = [&](const auto& t, std::string_view dtype, std::size_t width) {
    std::size_t n = 1;
    for (auto d : t.shape) {
      if (d < 0) detail::fail(error_kind::shape, "tensor \"", t.name, "\" has a negative size; expected sizes >= 0");
      n *= static_cast<std::size_t>(d);
    }
    if (n != t.values.size())
      detail::fail(error_kind::shape, "tensor \"", t.name, "\" has ", t.values.size(), " values for shape ", shape_text(t.shape), " (", n, ")");
    if (header.contains(t.name)) detail::fail(error_kind::argument, "tensor \"", t.name, "\" given twice; expected unique names");
    header[t.name] = {{"dtype", dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + n * width}}};
    offset += n * width;
  };
  for (const auto& t : floats) add(t, "F32", 4);
  for (const auto& t : ints) add(t, "I64", 8);
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  std::vector<unsigned char> out;
  out.reserve(8 + text.size() + offset);
  auto put = [&](auto v) {
    using U = std::conditional_t<sizeof(v) == 8, std::uint64_t, std::uint32_t>;
    const U u = std::bit_cast<U>(v);
    for (std::size_t i = 0; i < sizeof(U); ++i) out.push_back(static_cast<unsigned char>(u >> (8 * i)));
  };
  put(static_cast<std::uint64_t>(text.size()));
  out.insert(out.end(), text.begin(), text.end());
  for (const auto& t : floats)
    for (float v : t.values) put(v);
  for (const auto& t : ints)
    for (std::int64_t v : t.values) put(v);
  return out;
}

/// Writes float tensors (as F32) and int64 tensors (as I64) to a safetensors file. The file appears
/// complete or not at all, as diffuse::write_file guarantees (a device such as /dev/null is written into,
/// never replaced).
/// \throws diffuse::error as encode_safetensors and write_file.
inline void write_safetensors(const std::filesystem::path& path, const std::vector<tensor_view<float>>& floats,
                              const std::vector<tensor_view<std::int64_t>>& ints = {},
                              const std::map<std::string, std::string>& metadata = {}) {
  write_file(path, encode_safetensors(floats, ints, metadata));
}

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
