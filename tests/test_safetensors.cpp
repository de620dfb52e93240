// The safetensors reader and writer: dtype conversions, round trips, and every way a file can be
// corrupt, truncated or hostile, each a diffuse::error and never an out-of-bounds read.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "diffuse/io/safetensors.hpp"
#include "support.hpp"

namespace {

using bytes = std::vector<unsigned char>;

/// A file from a header text and a data section.
bytes make_file(const std::string& header, const bytes& data = {}, std::uint64_t claimed = 0) {
  bytes out;
  const std::uint64_t n = claimed ? claimed : header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<unsigned char>(n >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

diffuse::safetensors_file parse(const bytes& b) { return diffuse::safetensors_file::from_bytes(b, "test.safetensors"); }

}  // namespace

TEST_CASE("F16 and BF16 convert exactly, subnormals, infinities and signs included") {
  using diffuse::detail::bf16_to_float;
  using diffuse::detail::half_to_float;
  CHECK(half_to_float(0x3c00) == 1.0f);
  CHECK(half_to_float(0xc000) == -2.0f);
  CHECK(half_to_float(0x7bff) == 65504.0f);
  CHECK(half_to_float(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(half_to_float(0x03ff) == std::ldexp(1023.0f, -24));
  CHECK(half_to_float(0x7c00) == std::numeric_limits<float>::infinity());
  CHECK(std::isnan(half_to_float(0x7e00)));
  CHECK(std::signbit(half_to_float(0x8000)));
  CHECK(bf16_to_float(0x3f80) == 1.0f);
  CHECK(bf16_to_float(0xc0a0) == -5.0f);
}

TEST_CASE("a file written by write_safetensors reads back, F16 and BF16 tensors convert to float and double") {
  const auto path = std::filesystem::temp_directory_path() / "diffuse_test_roundtrip.safetensors";
  std::vector<float> a{1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, 7.0f};
  std::vector<std::int64_t> l{3, -1};
  diffuse::write_safetensors(path, {{"a", {2, 3}, a}}, {{"labels", {2}, l}}, {{"note", "hi"}});
  auto f = diffuse::safetensors_file::load(path);
  CHECK(f.read<float>("a") == a);
  CHECK(f.read<std::int64_t>("labels") == l);
  CHECK(f.info("a").shape == std::vector<std::int64_t>{2, 3});
  CHECK(f.metadata().at("note") == "hi");
  CHECK(!std::filesystem::exists(path.string() + ".partial"));
  std::filesystem::remove(path);

  // F16 {1, -2} and BF16 {1, -5}, hand-assembled.
  const std::string h = R"({"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[4,8]}})";
  auto g = parse(make_file(h, {0x00, 0x3c, 0x00, 0xc0, 0x80, 0x3f, 0xa0, 0xc0}));
  CHECK(g.read<double>("h") == std::vector<double>{1.0, -2.0});
  CHECK(g.read<float>("b") == std::vector<float>{1.0f, -5.0f});
}

TEST_CASE("corrupt, truncated and hostile safetensors files are errors that say what was wrong") {
  const std::string ok = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const bytes eight(8, 0);
  CHECK_NOTHROW(parse(make_file(ok, eight)));
  test::check_error([&] { parse(bytes{1, 2, 3}); }, {"[diffuse.io]", "test.safetensors", "expected at least 8"});
  test::check_error([&] { parse(make_file(ok, eight, std::uint64_t{1} << 60)); }, {"header claims 1152921504606846976 bytes", "at most 100000000"});
  test::check_error([&] { parse(make_file(ok, eight, ok.size() + 100)); }, {"truncated"});
  test::check_error([&] { parse(make_file(ok, bytes(4, 0))); }, {"data_offsets [0, 8]", "<= 4"});
  test::check_error([&] { parse(make_file("{\"w\": [1, 2", eight)); }, {"not valid JSON"});
  test::check_error([&] { parse(make_file("[1, 2, 3]", eight)); }, {"not a JSON object"});
  test::check_error([&] { parse(make_file(std::string(5000, '[') + std::string(5000, ']'), eight)); }, {"deeper than 8"});
  test::check_error([&] { parse(make_file("{\"\xff\xfe\":{}}", eight)); }, {"not valid JSON"});
  test::check_error([&] { parse(make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", eight)); },
                    {"\"w\" appears twice"});
  test::check_error([&] { parse(make_file(R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", eight)); },
                    {"unknown dtype \"F8_E4M3\""});
  test::check_error([&] { parse(make_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight)); },
                    {"spans 8 bytes", "expected 12"});
  test::check_error([&] { parse(make_file(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight)); },
                    {"non-negative integers"});
  test::check_error([&] { parse(make_file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", eight)); },
                    {"more elements than"});
  test::check_error([&] { parse(make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", eight)); },
                    {"data_offsets [8, 0]"});
  test::check_error([&] { parse(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight)); },
                    {"overlap"});
  test::check_error([&] { parse(make_file(R"({"w":{"dtype":"F32","shape":[2]}})", eight)); }, {"exactly the keys dtype, shape and data_offsets"});
  test::check_error([&] { parse(make_file(R"({"__metadata__":{"a":1}})", eight)); }, {"__metadata__ entry \"a\""});
  test::check_error([&] { parse(make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8.5]}})", eight)); }, {"data_offsets"});
  auto f = parse(make_file(ok, eight));
  test::check_error([&] { f.read<float>("v"); }, {"tensor \"v\" is missing"});
  test::check_error([&] { f.read<int>("w"); }, {"expected an integer dtype"});
  test::check_error([&] { diffuse::safetensors_file::load("/nonexistent/x.safetensors"); }, {"cannot read"});
}

TEST_CASE("write_safetensors refuses inconsistent tensors and unwritable paths without leaving a partial file") {
  std::vector<float> a{1, 2, 3};
  test::check_error([&] { diffuse::write_safetensors("/nonexistent/dir/out.safetensors", {{"a", {3}, a}}); }, {"[diffuse.io]", "cannot write"});
  const auto path = std::filesystem::temp_directory_path() / "diffuse_test_bad.safetensors";
  test::check_error([&] { diffuse::write_safetensors(path, {{"a", {2, 2}, a}}); }, {"3 values for shape (2, 2)"});
  CHECK(!std::filesystem::exists(path));
}

TEST_CASE("what the reference reader refuses is refused: repeated keys, a byte-order mark, gaps and trailing bytes") {
  const bytes eight(8, 0);
  const std::string ok = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  CHECK_NOTHROW(parse(make_file(ok, eight)));
  // Trailing JSON whitespace pads headers (write_safetensors aligns the data with spaces) and is accepted.
  CHECK_NOTHROW(parse(make_file(ok + "   \n\t", eight)));
  test::check_error([&] { parse(make_file("\xEF\xBB\xBF" + ok, eight)); }, {"[diffuse.io]", "byte-order mark"});
  test::check_error([&] { parse(make_file(R"({"w":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", eight)); },
                    {"entry \"w\" has the key \"dtype\" twice"});
  test::check_error([&] { parse(make_file(R"({"__metadata__":{"a":"1","a":"2"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", eight)); },
                    {"__metadata__ has the key \"a\" twice"});
  test::check_error([&] { parse(make_file(R"({"__metadata__":{},"__metadata__":{},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", eight)); },
                    {"__metadata__ appears twice"});
  test::check_error([&] { parse(make_file(ok, bytes(12, 0))); }, {"4 bytes follow the last tensor's data", "end where its last tensor does"});
  test::check_error([&] { parse(make_file(R"({"__metadata__":{"format":"pt"}})", eight)); }, {"8 bytes follow the last tensor's data"});
  test::check_error([&] {
    parse(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", bytes(12, 0)));
  }, {"bytes [4, 8) of the data section belong to no tensor"});
  test::check_error([&] { parse(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight)); },
                    {"bytes [0, 4) of the data section belong to no tensor"});
  // Empty tensors anywhere within the tiling are fine, as for the reference reader.
  CHECK_NOTHROW(parse(make_file(R"({"e":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", eight)));
  CHECK_NOTHROW(parse(make_file(R"({"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}})")));
}

TEST_CASE("a read that would change values is refused: integers out of range, doubles beyond float") {
  auto le = [](std::uint64_t v) {
    bytes b;
    for (int i = 0; i < 8; ++i) b.push_back(static_cast<unsigned char>(v >> (8 * i)));
    return b;
  };
  bytes data = le((std::uint64_t{1} << 40) + 5);
  const bytes minus_one = le(~std::uint64_t{0});
  data.insert(data.end(), minus_one.begin(), minus_one.end());
  const bytes big = le(std::bit_cast<std::uint64_t>(1e300)), inf = le(std::bit_cast<std::uint64_t>(HUGE_VAL)),
              small = le(std::bit_cast<std::uint64_t>(0.25));
  data.insert(data.end(), big.begin(), big.end());
  data.insert(data.end(), inf.begin(), inf.end());
  data.insert(data.end(), small.begin(), small.end());
  const std::string h = R"({"i":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},"d":{"dtype":"F64","shape":[2],"data_offsets":[16,32]},)"
                        R"("s":{"dtype":"F64","shape":[1],"data_offsets":[32,40]}})";
  auto f = parse(make_file(h, data));
  CHECK(f.read<std::int64_t>("i") == std::vector<std::int64_t>{(std::int64_t{1} << 40) + 5, -1});
  test::check_error([&] { f.read<std::int32_t>("i"); },
                    {"[diffuse.io]", "tensor \"i\"", "holds 1099511627781 at element 0", "32-bit signed integer", "[-2147483648, 2147483647]"});
  test::check_error([&] { f.read<std::uint64_t>("i"); }, {"holds -1 at element 1", "64-bit unsigned integer"});
  CHECK(f.read<double>("d") == std::vector<double>{1e300, HUGE_VAL});
  test::check_error([&] { f.read<float>("d"); }, {"tensor \"d\"", "holds 1e+300 at element 0", "beyond the range of the 32-bit float"});
  CHECK(f.read<float>("s") == std::vector<float>{0.25f});  // a double that fits converts
  // An infinity or NaN is not narrowed: it stays what it is (the UNet loader refuses non-finite weights).
  auto g = parse(make_file(R"({"x":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", inf));
  CHECK(std::isinf(g.read<float>("x")[0]));
  auto u8 = parse(make_file(R"({"u":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", {200, 7}));
  CHECK(u8.read<int>("u") == std::vector<int>{200, 7});
  test::check_error([&] { u8.read<std::int8_t>("u"); }, {"holds 200 at element 0", "8-bit signed integer"});
}
