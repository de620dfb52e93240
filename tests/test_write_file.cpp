// diffuse::write_file: atomic replacement, devices written into and never replaced, directories
// refused, no symlink followed at a temporary name, real causes in messages, and concurrent writers
// whose reader only ever sees complete files.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "diffuse/io/write_file.hpp"

namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("diffuse_write_file_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

std::vector<unsigned char> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

std::size_t entries(const fs::path& d) { return static_cast<std::size_t>(std::distance(fs::directory_iterator(d), {})); }

}  // namespace

TEST_CASE("write_file creates and replaces a regular file, leaving no temporary") {
  const fs::path d = fresh_dir("basic"), p = d / "out.bin";
  diffuse::write_file(p, bytes_of("first"));
  CHECK(slurp(p) == "first");
  diffuse::write_file(p, bytes_of("second, longer"));
  CHECK(slurp(p) == "second, longer");
  CHECK(entries(d) == 1);
  fs::remove_all(d);
}

TEST_CASE("write_file into /dev/full names ENOSPC and keeps the device") {
  if (!fs::exists("/dev/full")) return;
  try {
    diffuse::write_file("/dev/full", bytes_of("data"));
    FAIL("expected an error");
  } catch (const diffuse::error& e) {
    const std::string m = e.what();
    CHECK(m.find("[diffuse.io]") == 0);
    CHECK(m.find("No space left on device") != std::string::npos);
    CHECK(m.find("Success") == std::string::npos);
  }
  CHECK(fs::is_character_file("/dev/full"));
}

TEST_CASE("write_file into /dev/null writes into the device and never replaces it") {
  diffuse::write_file("/dev/null", bytes_of("discarded"));
  CHECK(fs::is_character_file("/dev/null"));
}

TEST_CASE("write_file into a FIFO writes into it") {
  const fs::path d = fresh_dir("fifo"), p = d / "pipe";
  REQUIRE(::mkfifo(p.c_str(), 0600) == 0);
  std::string got;
  std::thread reader([&] { got = slurp(p); });
  diffuse::write_file(p, bytes_of("through the pipe"));
  reader.join();
  CHECK(got == "through the pipe");
  CHECK(fs::is_fifo(p));
  fs::remove_all(d);
}

TEST_CASE("write_file refuses a directory target and leaves it alone") {
  const fs::path d = fresh_dir("dir"), p = d / "target";
  fs::create_directory(p);
  CHECK_THROWS_WITH_AS(diffuse::write_file(p, bytes_of("x")), doctest::Contains("is a directory"), diffuse::error);
  CHECK(fs::is_directory(p));
  CHECK(entries(d) == 1);
  fs::remove_all(d);
}

TEST_CASE("write_file does not follow a symlink planted at the old fixed temporary name") {
  const fs::path d = fresh_dir("symlink"), p = d / "out.bin", victim = d / "victim";
  { std::ofstream(victim) << "precious"; }
  fs::create_symlink(victim, d / "out.bin.partial");
  fs::create_directory(d / "out.bin.tmp");
  diffuse::write_file(p, bytes_of("new"));
  CHECK(slurp(victim) == "precious");
  CHECK(slurp(p) == "new");
  CHECK(fs::is_directory(d / "out.bin.tmp"));
  fs::remove_all(d);
}

TEST_CASE("write_file in a missing directory names the cause and leaves nothing") {
  const fs::path d = fresh_dir("missing");
  CHECK_THROWS_WITH_AS(diffuse::write_file(d / "no" / "out.bin", bytes_of("x")), doctest::Contains("No such file or directory"),
                       diffuse::error);
  CHECK(entries(d) == 0);
  fs::remove_all(d);
}

TEST_CASE("two concurrent writers: a reader only ever sees one complete file") {
  const fs::path d = fresh_dir("concurrent"), p = d / "out.bin";
  // Files large enough that a torn read would show, each a single repeated byte.
  const std::vector<unsigned char> a(64 * 1024, 'a'), b(96 * 1024, 'b');
  diffuse::write_file(p, a);
  std::atomic<bool> stop{false};
  std::atomic<int> torn{0}, reads{0};
  std::thread reader([&] {
    while (!stop) {
      const std::string s = slurp(p);
      ++reads;
      const bool whole = (s.size() == a.size() && s.find_first_not_of('a') == std::string::npos) ||
                         (s.size() == b.size() && s.find_first_not_of('b') == std::string::npos);
      if (!whole) ++torn;
    }
  });
  auto writer = [&](const std::vector<unsigned char>& v) {
    for (int i = 0; i < 300; ++i) diffuse::write_file(p, v);
  };
  std::thread wa(writer, std::cref(a)), wb(writer, std::cref(b));
  wa.join();
  wb.join();
  stop = true;
  reader.join();
  CHECK(torn == 0);
  CHECK(reads > 0);
  CHECK(entries(d) == 1);
  fs::remove_all(d);
}

TEST_CASE("write_files is all-or-nothing: a failing target leaves the others as they were") {
  const fs::path d = fresh_dir("several"), a = d / "a.bin", b = d / "b.bin";
  diffuse::write_file(a, bytes_of("old a"));
  // The second target's directory is missing: staging fails before anything is renamed.
  CHECK_THROWS_AS(diffuse::write_files({{a, bytes_of("new a")}, {d / "missing" / "b.bin", bytes_of("new b")}}), diffuse::error);
  CHECK(slurp(a) == "old a");
  CHECK(entries(d) == 1);  // no temporary left
  if (fs::exists("/dev/full")) {
    // A device is written before any rename: its failure leaves the regular target untouched.
    try {
      diffuse::write_files({{a, bytes_of("new a")}, {"/dev/full", bytes_of("png")}});
      FAIL("expected an error");
    } catch (const diffuse::error& e) {
      CHECK(std::string(e.what()).find("No space left on device") != std::string::npos);
    }
    CHECK(slurp(a) == "old a");
    CHECK(entries(d) == 1);
  }
  diffuse::write_files({{a, bytes_of("new a")}, {b, bytes_of("new b")}});
  CHECK(slurp(a) == "new a");
  CHECK(slurp(b) == "new b");
  CHECK(entries(d) == 2);
  fs::remove_all(d);
}

TEST_CASE("a staged file that is never committed leaves nothing; committing twice is refused") {
  const fs::path d = fresh_dir("staged"), p = d / "out.bin";
  const auto bytes = bytes_of("staged");
  {
    diffuse::staged_file f(p, bytes);
    CHECK(entries(d) == 1);  // the temporary
    CHECK(!fs::exists(p));
  }
  CHECK(entries(d) == 0);
  diffuse::staged_file f(p, bytes);
  f.commit();
  CHECK(slurp(p) == "staged");
  CHECK_THROWS_AS(f.commit(), diffuse::error);
  fs::remove_all(d);
}
