// Reading only regular files, of bounded size: every loader refuses a FIFO (without blocking on it), a
// device, a directory and an oversized file with a message naming what the path is, and reads exactly
// the bytes the file has.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "diffuse/detail/read_file.hpp"
#include "diffuse/io/diffusers_folder.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/io/scheduler_config.hpp"
#include "diffuse/nn/unet_config.hpp"
#include "support.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <sys/stat.h>
#include <unistd.h>
#define DIFFUSE_TEST_POSIX 1
#else
#define DIFFUSE_TEST_POSIX 0
#endif

namespace fs = std::filesystem;

namespace {

/// A fresh empty directory under the system's temporary directory, removed when the object dies.
struct temp_dir {
  fs::path path;
  temp_dir() {
    path = fs::temp_directory_path() / ("diffuse_read_file_" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

/// Aborts the test program if `seconds` pass before it is destroyed: a read that blocks on a FIFO would
/// otherwise hang the suite instead of failing it.
struct watchdog {
  std::atomic<bool> done{false};
  std::thread thread;
  explicit watchdog(int seconds) {
    thread = std::thread([this, seconds] {
      for (int i = 0; i < seconds * 10 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (!done) {
        std::fprintf(stderr, "test_read_file: a read blocked for %d s (a FIFO opened without O_NONBLOCK?)\n", seconds);
        std::_Exit(3);
      }
    });
  }
  ~watchdog() {
    done = true;
    thread.join();
  }
};

void write_text(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

}  // namespace

TEST_CASE("a regular file is read whole, and the loaders read theirs through the same path") {
  temp_dir dir;
  write_text(dir.path / "a.json", R"({"num_train_timesteps": 10})");
  CHECK(diffuse::detail::read_text_file(dir.path / "a.json", "config") == R"({"num_train_timesteps": 10})");
  CHECK(diffuse::scheduler_config::load(dir.path / "a.json").num_train_timesteps() == 10);
  write_text(dir.path / "empty", "");
  CHECK(diffuse::detail::read_text_file(dir.path / "empty", "config").empty());
  // An empty file is read (as nothing) and then refused as JSON, naming the real problem.
  test::check_error([&] { diffuse::scheduler_config::load(dir.path / "empty"); }, {"[diffuse.io]", "not valid JSON"});
}

TEST_CASE("a directory is refused as a directory, not as invalid JSON") {
  temp_dir dir;
  fs::create_directories(dir.path / "config.json");
  const std::string expected = "is a directory, expected a regular file";
  test::check_error([&] { diffuse::unet_config::load(dir.path / "config.json"); }, {"[diffuse.io]", "cannot read config.json", expected});
  test::check_error([&] { diffuse::scheduler_config::load(dir.path / "config.json"); }, {"cannot read scheduler_config.json", expected});
  test::check_error([&] { diffuse::safetensors_file::load(dir.path); }, {"cannot read safetensors file", expected});
  // model_index.json that is a directory, in a folder that otherwise looks like a pipeline.
  fs::create_directories(dir.path / "pipe" / "model_index.json");
  test::check_error([&] { diffuse::diffusers_folder::locate(dir.path / "pipe"); }, {"cannot read model_index.json", expected});
}

TEST_CASE("a file above the cap is refused before anything is allocated") {
  temp_dir dir;
  const fs::path big = dir.path / "scheduler_config.json";
  write_text(big, "{}");
  // Sparse: the size is what stat reports, no disk is used.
  fs::resize_file(big, diffuse::detail::max_config_file_bytes + 1);
  test::check_error([&] { diffuse::scheduler_config::load(big); }, {"[diffuse.io]", "33554433 bytes; expected at most 33554432"});
  fs::resize_file(big, diffuse::detail::max_config_file_bytes);  // at the cap: read, then refused as JSON (NUL bytes)
  test::check_error([&] { diffuse::scheduler_config::load(big); }, {"not valid JSON (a NUL byte at offset 2"});
  test::check_error([&] { diffuse::detail::read_text_file(big, "x", 100); }, {"expected at most 100"});
}

#if DIFFUSE_TEST_POSIX
TEST_CASE("a FIFO is refused at once, with or without a writer, never read") {
  temp_dir dir;
  const fs::path fifo = dir.path / "config.json";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  watchdog guard(20);
  const std::string expected = "is a FIFO (named pipe), expected a regular file";
  test::check_error([&] { diffuse::unet_config::load(fifo); }, {"[diffuse.io]", expected});
  test::check_error([&] { diffuse::scheduler_config::load(fifo); }, {expected});
  test::check_error([&] { diffuse::safetensors_file::load(fifo); }, {"cannot read safetensors file", expected});
  // The lower layer on its own: the descriptor check (after a non-blocking open) refuses it too.
  test::check_error([&] { diffuse::detail::regular_file f(fifo, "config.json", 1000); }, {expected});
}

TEST_CASE("a symbolic link to /dev/zero is refused as the device it points to, not read until memory runs out") {
  if (!fs::exists("/dev/zero")) return;
  temp_dir dir;
  const fs::path link = dir.path / "scheduler_config.json";
  fs::create_symlink("/dev/zero", link);
  const std::string expected = "is a character device, expected a regular file";
  test::check_error([&] { diffuse::scheduler_config::load(link); }, {"[diffuse.io]", expected});
  test::check_error([&] { diffuse::unet_config::load(link); }, {expected});
  test::check_error([&] { diffuse::safetensors_file::load(link); }, {expected});
  test::check_error([&] { diffuse::unet_config::load("/dev/null"); }, {expected});
}

TEST_CASE("an unreadable file names the reason") {
  if (::geteuid() == 0) return;  // root reads everything
  temp_dir dir;
  const fs::path p = dir.path / "config.json";
  write_text(p, "{}");
  fs::permissions(p, fs::perms::none);
  test::check_error([&] { diffuse::unet_config::load(p); }, {"[diffuse.io]", "cannot open it (Permission denied)"});
}
#endif

TEST_CASE("a missing file is named as missing") {
  test::check_error([] { diffuse::unet_config::load("/nonexistent/config.json"); }, {"[diffuse.io]", "cannot open it", "/nonexistent/config.json"});
  test::check_error([] { diffuse::detail::regular_file f("/nonexistent/x.safetensors", "safetensors file", 10); },
                    {"cannot read safetensors file /nonexistent/x.safetensors"});
}
