// The JSON readers are linear in time and bounded in memory on hostile inputs: a header of 100,000
// tensors parses in well under a second (it took minutes with nlohmann's callback parser), and what a
// parse allocates beyond its input is a small multiple of the input's size, measured here with a
// replacement operator new that tracks live and peak bytes.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "diffuse/io/safetensors.hpp"
#include "diffuse/io/scheduler_config.hpp"
#include "support.hpp"

namespace {
std::size_t live_bytes = 0, peak_bytes = 0;
constexpr std::size_t kHeader = 16;  // the size, stored before each block (keeps 16-byte alignment)
}  // namespace

// GCC cannot see that the matching delete frees what this new mallocs.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  auto* p = static_cast<unsigned char*>(std::malloc(n + kHeader));
  if (!p) throw std::bad_alloc();
  *reinterpret_cast<std::size_t*>(p) = n;
  live_bytes += n;
  if (live_bytes > peak_bytes) peak_bytes = live_bytes;
  return p + kHeader;
}
void operator delete(void* q) noexcept {
  if (!q) return;
  auto* p = static_cast<unsigned char*>(q) - kHeader;
  live_bytes -= *reinterpret_cast<std::size_t*>(p);
  std::free(p);
}
void operator delete(void* q, std::size_t) noexcept { operator delete(q); }

namespace {

using bytes = std::vector<unsigned char>;

bytes with_length(const std::string& header, std::size_t data_bytes = 0) {
  bytes out;
  out.reserve(8 + header.size() + data_bytes);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<unsigned char>(static_cast<std::uint64_t>(header.size()) >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + data_bytes, 0);
  return out;
}

/// Peak bytes allocated by f beyond what was live when it started.
template <class F>
std::size_t peak_extra(F&& f) {
  const std::size_t base = live_bytes;
  peak_bytes = live_bytes;
  f();
  return peak_bytes - base;
}

}  // namespace

TEST_CASE("a header of 100,000 tensors parses in linear time and memory") {
  const int n = 100'000;
  std::string h = "{";
  for (int i = 0; i < n; ++i) {
    if (i) h += ",";
    h += "\"down_blocks." + std::to_string(i) + ".weight\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[" + std::to_string(i) + "," +
         std::to_string(i + 1) + "]}";
  }
  h += "}";
  bytes file = with_length(h, n);
  const std::size_t header_size = h.size();
  h = std::string();
  std::size_t tensors = 0;
  const auto start = std::chrono::steady_clock::now();
  const std::size_t extra = peak_extra([&] { tensors = diffuse::safetensors_file::from_bytes(std::move(file), "big.safetensors").size(); });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(tensors == static_cast<std::size_t>(n));
  // The bound is generous on purpose: the parse takes about 0.1 s in a release build on one core of a
  // 2024 server, the sanitizer and debug builds are several times slower, and CI machines are shared.
  // What it catches is the quadratic parser, which needed minutes for this header.
  CHECK_MESSAGE(seconds < 10, "parsing a " << header_size << "-byte header of " << n << " tensors took " << seconds << " s");
  // The table of 100,000 entries plus parser state: at most the handler's budget of 8 bytes per header byte.
  CHECK_MESSAGE(extra <= 8 * header_size + (std::size_t{1} << 20), "peak " << extra << " bytes for a " << header_size << "-byte header");
  MESSAGE("100,000 tensors: header ", header_size, " bytes, ", seconds, " s, peak ", extra, " bytes beyond the file");
}

TEST_CASE("a header holding one huge shape array is refused after 17 sizes, allocating almost nothing") {
  std::string h = R"({"w":{"dtype":"U8","data_offsets":[0,0],"shape":[)";
  h.reserve(h.size() + 20'000'002);
  for (int i = 0; i < 10'000'000; ++i) h += i ? ",1" : "1";
  h += "]}}";
  bytes file = with_length(h);
  h = std::string();
  const std::size_t extra = peak_extra([&] {
    test::check_error([&] { diffuse::safetensors_file::from_bytes(std::move(file), "shape.safetensors"); }, {"at most 16 sizes"});
  });
  CHECK_MESSAGE(extra <= (std::size_t{1} << 20), "peak " << extra << " bytes");
}

TEST_CASE("a header of many tiny __metadata__ strings is refused at the memory budget, not after allocating 18 bytes per byte") {
  // Keys of at most 4 characters and empty values: ~9 bytes of text per entry, ~100 in a map.
  std::string h = R"({"__metadata__":{)";
  const int n = 1'000'000;
  for (int i = 0; i < n; ++i) {
    std::string key;
    static constexpr char digits[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for (int v = i; v || key.empty(); v /= 62) key += digits[v % 62];
    h += (i ? ",\"" : "\"") + key + "\":\"\"";
  }
  h += "}}";
  const std::size_t size = h.size();
  bytes file = with_length(h);
  h = std::string();
  const std::size_t extra = peak_extra([&] {
    test::check_error([&] { diffuse::safetensors_file::from_bytes(std::move(file), "meta.safetensors"); }, {"bytes of memory (8 per header byte"});
  });
  MESSAGE("1,000,000 tiny __metadata__ entries: ", size, " bytes of header, peak ", extra, " bytes before the refusal");
  // The budget counts about what the entries cost; the allocator's real figure stays near it.
  CHECK_MESSAGE(extra <= 12 * size + (std::size_t{2} << 20), "peak " << extra << " bytes for a " << size << "-byte header");
}

TEST_CASE("a config of a million empty objects is refused at the memory budget") {
  std::string text = R"({"x": [)";
  for (int i = 0; i < 1'000'000; ++i) text += i ? ",{}" : "{}";
  text += "]}";
  std::size_t extra = peak_extra([&] {
    test::check_error([&] { diffuse::scheduler_config::from_json(text, "objects.json"); }, {"[diffuse.io]", "bytes of memory (8 per byte of text"});
  });
  CHECK_MESSAGE(extra <= 16 * text.size() + (std::size_t{2} << 20), "peak " << extra << " bytes for " << text.size() << " bytes of text");
  MESSAGE("1,000,000 empty objects: ", text.size(), " bytes of text, peak ", extra, " bytes before the refusal");
  // A long list of numbers, what a real config holds, stays well inside the budget.
  std::string betas = R"({"trained_betas": [)";
  for (int i = 0; i < 200'000; ++i) betas += i ? ",0.0001" : "0.0001";
  betas += "]}";
  extra = peak_extra([&] { CHECK(diffuse::scheduler_config::from_json(betas).num_train_timesteps() == 200'000); });
  MESSAGE("200,000 trained_betas: ", betas.size(), " bytes of text, peak ", extra, " bytes (schedule tables included)");
}
