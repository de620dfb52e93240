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
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

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

inline tensor_dtype parse_dtype(const std::string& s, const std::string& name) {
  static constexpr tensor_dtype all[] = {tensor_dtype::f64, tensor_dtype::f32, tensor_dtype::f16, tensor_dtype::bf16,
                                         tensor_dtype::i64, tensor_dtype::i32, tensor_dtype::i16, tensor_dtype::i8,
                                         tensor_dtype::u8,  tensor_dtype::boolean};
  for (auto d : all)
    if (s == dtype_name(d)) return d;
  fail(error_kind::io, "tensor \"", name, "\" has unknown dtype \"", s, "\"; expected one of F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL");
}

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
  /// Deepest JSON nesting accepted in a header (a valid one needs 3).
  static constexpr int max_json_depth = 8;

  /// Reads and validates a file.
  static safetensors_file load(const std::filesystem::path& path) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    if (ec) detail::fail(error_kind::io, "cannot read safetensors file ", path.string(), " (", ec.message(), "); expected an existing, readable file");
    std::ifstream in(path, std::ios::binary);
    if (!in) detail::fail(error_kind::io, "cannot open safetensors file ", path.string(), "; expected a readable file");
    std::vector<unsigned char> bytes(static_cast<std::size_t>(size));
    if (size && !in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size)))
      detail::fail(error_kind::io, "reading safetensors file ", path.string(), " failed after ", in.gcount(), " of ", size, " bytes");
    return from_bytes(std::move(bytes), path.string());
  }

  /// Validates bytes already in memory; `origin` names them in messages.
  static safetensors_file from_bytes(std::vector<unsigned char> bytes, std::string origin = "<memory>") {
    safetensors_file f;
    f.origin_ = std::move(origin);
    f.bytes_ = std::move(bytes);
    f.parse();
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
    const unsigned char* p = data_begin() + t.begin;
    const std::size_t w = dtype_size(t.dtype);
    for (std::size_t i = 0; i < out.size(); ++i, p += w) out[i] = convert<T>(t.dtype, p);
  }

 private:
  std::string origin_;
  std::vector<unsigned char> bytes_;
  std::size_t header_bytes_ = 0;
  std::map<std::string, tensor_info> tensors_;
  std::map<std::string, std::string> metadata_;

  const unsigned char* data_begin() const { return bytes_.data() + 8 + header_bytes_; }

  template <class T>
  static T convert(tensor_dtype d, const unsigned char* p) {
    using detail::load_le;
    switch (d) {
      case tensor_dtype::f64: return static_cast<T>(load_le<double>(p));
      case tensor_dtype::f32: return static_cast<T>(load_le<float>(p));
      case tensor_dtype::f16: return static_cast<T>(detail::half_to_float(load_le<std::uint16_t>(p)));
      case tensor_dtype::bf16: return static_cast<T>(detail::bf16_to_float(load_le<std::uint16_t>(p)));
      case tensor_dtype::i64: return static_cast<T>(load_le<std::int64_t>(p));
      case tensor_dtype::i32: return static_cast<T>(load_le<std::int32_t>(p));
      case tensor_dtype::i16: return static_cast<T>(load_le<std::int16_t>(p));
      case tensor_dtype::i8: return static_cast<T>(static_cast<std::int8_t>(*p));
      case tensor_dtype::u8: case tensor_dtype::boolean: return static_cast<T>(*p);
    }
    return T{};
  }

  [[noreturn]] void bad(const std::string& what) const { detail::fail(error_kind::io, origin_, ": ", what); }

  void parse() {
    using json = nlohmann::json;
    if (bytes_.size() < 8) bad(detail::cat("file has ", bytes_.size(), " bytes; expected at least 8 (the header length)"));
    const std::uint64_t n = detail::load_le<std::uint64_t>(bytes_.data());
    if (n > max_header_bytes) bad(detail::cat("header claims ", n, " bytes; expected at most ", max_header_bytes));
    if (n > bytes_.size() - 8)
      bad(detail::cat("header claims ", n, " bytes but only ", bytes_.size() - 8, " follow the length; the file is truncated or not safetensors"));
    if (n < 2) bad("header is empty; expected a JSON object");
    header_bytes_ = static_cast<std::size_t>(n);
    const std::size_t data_size = bytes_.size() - 8 - header_bytes_;
    const auto* text = reinterpret_cast<const char*>(bytes_.data() + 8);

    // Duplicate names and deep nesting are refused while parsing: nlohmann would keep the last duplicate
    // silently and recurse without bound.
    std::set<std::string> top_keys;
    std::string duplicate;
    bool too_deep = false;
    auto guard = [&](int depth, json::parse_event_t event, json& parsed) {
      if (depth > max_json_depth) too_deep = true;
      if (event == json::parse_event_t::key && depth == 1 && !top_keys.insert(parsed.get<std::string>()).second && duplicate.empty())
        duplicate = parsed.get<std::string>();
      return !too_deep;
    };
    json header;
    try {
      header = json::parse(text, text + header_bytes_, guard);
    } catch (const json::exception& e) {
      if (too_deep) bad(detail::cat("header JSON nests deeper than ", max_json_depth, " levels; expected a flat object of tensors"));
      bad(detail::cat("header is not valid JSON (", e.what(), ")"));
    }
    if (too_deep) bad(detail::cat("header JSON nests deeper than ", max_json_depth, " levels; expected a flat object of tensors"));
    if (!duplicate.empty()) bad(detail::cat("tensor \"", duplicate, "\" appears twice in the header; expected unique names"));
    if (!header.is_object()) bad("header is not a JSON object; expected {\"name\": {\"dtype\", \"shape\", \"data_offsets\"}, ...}");

    std::vector<std::pair<std::size_t, std::size_t>> ranges;
    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      const json& v = it.value();
      if (name == "__metadata__") {
        if (!v.is_object()) bad("__metadata__ is not an object; expected string keys and string values");
        for (auto m = v.begin(); m != v.end(); ++m) {
          if (!m.value().is_string()) bad(detail::cat("__metadata__ entry \"", m.key(), "\" is not a string; expected string values"));
          metadata_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets") || v.size() != 3)
        bad(detail::cat("entry \"", name, "\" is malformed; expected exactly the keys dtype, shape and data_offsets"));
      if (!v["dtype"].is_string()) bad(detail::cat("entry \"", name, "\" has a non-string dtype"));
      tensor_info t;
      t.dtype = detail::parse_dtype(v["dtype"].get<std::string>(), name);
      const json& shape = v["shape"];
      if (!shape.is_array() || shape.size() > 16) bad(detail::cat("entry \"", name, "\" has a bad shape; expected an array of at most 16 sizes"));
      // A tensor with any zero dimension is empty; otherwise the element count may not exceed the data
      // section's byte count at any point, so neither it nor its byte size (≤ 8 × data_size) can wrap.
      bool empty = false;
      for (const json& d : shape) {
        if (!d.is_number_unsigned() || d.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
          bad(detail::cat("entry \"", name, "\" has shape ", shape.dump(), "; expected non-negative integers below 2^63"));
        empty = empty || d.get<std::uint64_t>() == 0;
      }
      std::uint64_t numel = empty ? 0 : 1;
      for (const json& d : shape) {
        const std::uint64_t dim = d.get<std::uint64_t>();
        if (!empty && dim > data_size / numel)
          bad(detail::cat("entry \"", name, "\" has shape ", shape.dump(), ", more elements than the ", data_size, "-byte data section holds"));
        numel *= dim;
        t.shape.push_back(static_cast<std::int64_t>(dim));
      }
      const json& off = v["data_offsets"];
      if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
        bad(detail::cat("entry \"", name, "\" has data_offsets ", off.dump(), "; expected [begin, end] as non-negative integers"));
      const std::uint64_t b = off[0].get<std::uint64_t>(), e = off[1].get<std::uint64_t>();
      if (b > e || e > data_size)
        bad(detail::cat("entry \"", name, "\" has data_offsets [", b, ", ", e, "]; expected 0 <= begin <= end <= ", data_size, " (the data section)"));
      if (e - b != numel * dtype_size(t.dtype))
        bad(detail::cat("entry \"", name, "\" spans ", e - b, " bytes; expected ", numel * dtype_size(t.dtype), " for ", dtype_name(t.dtype),
                        " of shape ", shape.dump()));
      t.begin = static_cast<std::size_t>(b);
      t.end = static_cast<std::size_t>(e);
      if (t.end > t.begin) ranges.emplace_back(t.begin, t.end);
      tensors_.emplace(name, std::move(t));
    }
    std::sort(ranges.begin(), ranges.end());
    for (std::size_t i = 1; i < ranges.size(); ++i)
      if (ranges[i].first < ranges[i - 1].second)
        bad(detail::cat("tensor data ranges [", ranges[i - 1].first, ", ", ranges[i - 1].second, ") and [", ranges[i].first, ", ",
                        ranges[i].second, ") overlap; expected disjoint ranges"));
  }
};

/// A tensor to write: name, shape and float or integer elements.
template <class T>
struct tensor_view {
  std::string name;                 ///< the tensor's name in the file
  std::vector<std::int64_t> shape;  ///< dimensions; their product must equal values.size()
  std::span<const T> values;        ///< the elements, row-major (not copied: must outlive the write)
};

/// Writes float tensors (as F32) and int64 tensors (as I64) to a safetensors file. The file appears
/// complete or not at all, as diffuse::write_file guarantees (a device such as /dev/null is written into,
/// never replaced).
inline void write_safetensors(const std::filesystem::path& path, const std::vector<tensor_view<float>>& floats,
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

  write_file(path, out);
}

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
