#pragma once
// Bounded reads of regular files: every file diffuse opens (config.json, scheduler_config.json,
// model_index.json, safetensors weights) goes through here. Not part of the public API.
//
// Why not std::ifstream + rdbuf(): a FIFO blocks the open (or the read) forever, a character device such
// as /dev/zero never ends, and a directory opens on some platforms and then reads as an I/O error that
// surfaces far from its cause. Here the path is stat'ed first, anything that is not a regular file is
// refused with a message naming what it is, the file is opened without blocking and checked again on the
// open descriptor (the path may have been swapped in between), its size is compared with a cap before
// anything is allocated, and exactly the stat'ed number of bytes is read: a file that shrinks or grows
// while it is read is an error, not a silently short or endless read.

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#if defined(__unix__) || defined(__unix) || defined(__APPLE__)
#define DIFFUSE_READ_FILE_POSIX 1
#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#else
#define DIFFUSE_READ_FILE_POSIX 0
#include <fstream>
#endif

#include "diffuse/error.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace detail {

/// Largest config.json / scheduler_config.json / model_index.json read (32 MiB): a scheduler_config.json
/// with trained_betas for the largest T diffuse accepts (max_train_timesteps = 10^6 betas written at full
/// double precision, about 24 MB) fits; real configs are a few kilobytes.
inline constexpr std::uint64_t max_config_file_bytes = std::uint64_t{32} << 20;

#if DIFFUSE_READ_FILE_POSIX
/// What a stat mode is, in words, for messages ("a directory", "a FIFO (named pipe)", ...).
inline const char* file_kind_text(mode_t mode) noexcept {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
#ifdef S_ISSOCK
  if (S_ISSOCK(mode)) return "a socket";
#endif
  return "not a regular file";
}
#else
/// What a file status is, in words, for messages.
inline const char* file_kind_text(std::filesystem::file_type t) noexcept {
  using ft = std::filesystem::file_type;
  switch (t) {
    case ft::directory: return "a directory";
    case ft::fifo: return "a FIFO (named pipe)";
    case ft::character: return "a character device";
    case ft::block: return "a block device";
    case ft::socket: return "a socket";
    default: return "not a regular file";
  }
}
#endif

/// A regular file opened for one sequential read of exactly its size.
///
/// `what` names the file in messages ("config.json", "safetensors file"); every error is a
/// diffuse::error(io) starting "cannot read <what> <path>: ".
class regular_file {
 public:
  /// Opens `path` after checking it is a regular file of at most `max_bytes` bytes.
  /// \throws diffuse::error (io) when the path is missing or unreadable, is not a regular file (a
  ///         directory, FIFO, device or socket, named as such), or is larger than `max_bytes`.
  regular_file(const std::filesystem::path& path, std::string_view what, std::uint64_t max_bytes)
      : path_(path.string()), what_(what) {
#if DIFFUSE_READ_FILE_POSIX
    struct stat st {};
    // stat() follows symbolic links, so a link to /dev/zero is seen as the device it is.
    if (::stat(path.c_str(), &st) != 0) bad_errno("cannot open it");
    if (!S_ISREG(st.st_mode)) not_regular(file_kind_text(st.st_mode));
    check_size(static_cast<std::uint64_t>(st.st_size), max_bytes);
    // O_NONBLOCK: if the path became a FIFO after the stat, open() returns at once instead of waiting
    // for a writer; fstat() below then refuses it. It has no effect on reads of a regular file.
    int flags = O_RDONLY | O_NONBLOCK;
#ifdef O_CLOEXEC
    flags |= O_CLOEXEC;
#endif
#ifdef O_NOCTTY
    flags |= O_NOCTTY;
#endif
    do fd_ = ::open(path.c_str(), flags);
    while (fd_ < 0 && errno == EINTR);
    if (fd_ < 0) bad_errno("cannot open it");
    struct stat opened {};
    if (::fstat(fd_, &opened) != 0) bad_errno("cannot stat the opened file");
    if (!S_ISREG(opened.st_mode)) not_regular(file_kind_text(opened.st_mode));
    size_ = static_cast<std::uint64_t>(opened.st_size);
    check_size(size_, max_bytes);
#else
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (ec || status.type() == fs::file_type::not_found) bad_text(cat("cannot open it (", ec ? ec.message() : std::string("no such file"), ")"));
    if (status.type() != fs::file_type::regular) not_regular(file_kind_text(status.type()));
    size_ = static_cast<std::uint64_t>(fs::file_size(path, ec));
    if (ec) bad_text(cat("cannot get its size (", ec.message(), ")"));
    check_size(size_, max_bytes);
    in_.open(path, std::ios::binary);
    if (!in_) bad_text("cannot open it; expected a readable regular file");
#endif
  }

  regular_file(const regular_file&) = delete;
  regular_file& operator=(const regular_file&) = delete;
  ~regular_file() {
#if DIFFUSE_READ_FILE_POSIX
    if (fd_ >= 0) ::close(fd_);
#endif
  }

  /// The file's size as stat'ed when it was opened.
  std::uint64_t size() const noexcept { return size_; }

  /// Reads the next `n` bytes into `dst`; the file ending sooner is an error (it shrank).
  void read(void* dst, std::size_t n) {
    auto* p = static_cast<unsigned char*>(dst);
    std::size_t done = 0;
#if DIFFUSE_READ_FILE_POSIX
    while (done < n) {
      // Some systems refuse single reads above INT_MAX bytes; 1 GiB chunks are always accepted.
      const std::size_t want = std::min<std::size_t>(n - done, std::size_t{1} << 30);
      const ssize_t got = ::read(fd_, p + done, want);
      if (got < 0) {
        if (errno == EINTR) continue;
        bad_errno("reading failed");
      }
      if (got == 0) shrank(position_ + done);
      done += static_cast<std::size_t>(got);
    }
#else
    in_.read(reinterpret_cast<char*>(p), static_cast<std::streamsize>(n));
    done = static_cast<std::size_t>(in_.gcount());
    if (done != n) shrank(position_ + done);
#endif
    position_ += n;
  }

  /// Checks that everything stat'ed was read and that nothing follows (the file did not grow).
  void finish() {
    if (position_ != size_) bad_text(cat("read ", position_, " of its ", size_, " bytes"));
    unsigned char extra = 0;
#if DIFFUSE_READ_FILE_POSIX
    ssize_t got;
    do got = ::read(fd_, &extra, 1);
    while (got < 0 && errno == EINTR);
    if (got < 0) bad_errno("reading failed");
    const bool grew = got > 0;
#else
    const bool grew = static_cast<bool>(in_.read(reinterpret_cast<char*>(&extra), 1)) && in_.gcount() == 1;
#endif
    if (grew) bad_text(cat("it grew beyond the ", size_, " bytes it had when opened; expected a file that is not being written"));
  }

 private:
  std::string path_, what_;
  std::uint64_t size_ = 0, position_ = 0;
#if DIFFUSE_READ_FILE_POSIX
  int fd_ = -1;
#else
  std::ifstream in_;
#endif

  [[noreturn]] void bad_text(const std::string& why) const { fail(error_kind::io, "cannot read ", what_, " ", path_, ": ", why); }
#if DIFFUSE_READ_FILE_POSIX
  [[noreturn]] void bad_errno(const char* doing) const {
    const int e = errno;
    bad_text(cat(doing, " (", std::generic_category().message(e), "); expected an existing, readable regular file"));
  }
#endif
  [[noreturn]] void not_regular(const char* kind) const { bad_text(cat("it is ", kind, ", expected a regular file")); }
  void check_size(std::uint64_t size, std::uint64_t max_bytes) const {
    if (size > max_bytes) bad_text(cat("it is ", size, " bytes; expected at most ", max_bytes, " for a ", what_));
  }
  [[noreturn]] void shrank(std::uint64_t at) const {
    bad_text(cat("it ended after ", at, " of the ", size_, " bytes it had when opened; expected a file that is not being written"));
  }
};

/// The whole text of a regular file of at most `max_bytes` bytes (configs: max_config_file_bytes).
/// \throws diffuse::error (io) as regular_file.
inline std::string read_text_file(const std::filesystem::path& path, std::string_view what, std::uint64_t max_bytes = max_config_file_bytes) {
  regular_file f(path, what, max_bytes);
  std::string text(static_cast<std::size_t>(f.size()), '\0');
  f.read(text.data(), text.size());
  f.finish();
  return text;
}

}  // namespace detail
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
