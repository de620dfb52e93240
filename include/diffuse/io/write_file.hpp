/// \file
/// diffuse::write_file, the one way the library and its examples put bytes in a file.
#pragma once

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>

#include "diffuse/error.hpp"

/// \def DIFFUSE_DETAIL_POSIX_WRITE
/// 1 where write_file uses the POSIX calls (exclusive create, fsync, rename), 0 for the portable fallback.
#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#define DIFFUSE_DETAIL_POSIX_WRITE 1
#else
#include <fstream>
#define DIFFUSE_DETAIL_POSIX_WRITE 0
#endif

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE

namespace detail {

// The message of errno captured at the failing call, never a later (possibly reset) value.
inline std::string errno_text(int e) { return std::generic_category().message(e); }

[[noreturn]] inline void write_fail(const std::filesystem::path& path, const std::string& what, int e) {
  throw error(error_kind::io, "cannot write " + path.string() + ": " + what + (e ? ": " + errno_text(e) : std::string()) +
                                  "; expected a writable location with free space");
}

#if DIFFUSE_DETAIL_POSIX_WRITE
// Writes every byte, retrying after signals and short writes; returns 0 or the errno of the failing call.
inline int write_all(int fd, std::span<const unsigned char> bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    done += static_cast<std::size_t>(n);
  }
  return 0;
}

// A name no other writer uses: process id, a per-process counter and the clock, so two processes (or
// threads) writing one target never share a temporary, and O_EXCL catches what is left over.
inline std::filesystem::path unique_temporary(const std::filesystem::path& target, unsigned attempt) {
  static std::atomic<unsigned long long> counter{0};
  const auto tick = static_cast<unsigned long long>(std::chrono::steady_clock::now().time_since_epoch().count());
  std::filesystem::path tmp = target;
  tmp += ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1)) + "-" +
         std::to_string((tick ^ (tick >> 17)) + attempt);
  return tmp;
}
#endif

}  // namespace detail

/// Writes `bytes` to `path` so that readers see the old file or the whole new one, never a part.
///
/// A regular file or a missing name is replaced atomically: the bytes go to a temporary created
/// exclusively beside the target (no symlink followed, a fresh name per call, mode 0666 less the
/// umask), every write is checked, the file is flushed to disk (fsync) and then renamed over the target.
/// A device node or FIFO (such as /dev/null) is written into directly, as asked, and never replaced.
/// A directory target is refused. On failure nothing is left at the temporary, the target is untouched
/// (a device may have received part of the bytes), and the message names the cause reported by the system.
///
/// \param path  the file to write
/// \param bytes the complete contents
/// \throws diffuse::error (error_kind::io) when the target is a directory or any step fails.
///
/// Example:
/// \code
/// const std::vector<unsigned char> bytes{'h', 'i', '\\n'};
/// diffuse::write_file("out.txt", bytes);
/// \endcode
inline void write_file(const std::filesystem::path& path, std::span<const unsigned char> bytes) {
#if DIFFUSE_DETAIL_POSIX_WRITE
  struct stat st{};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) detail::write_fail(path, "it is a directory", 0);
    if (!S_ISREG(st.st_mode)) {
      // A device or FIFO the user named: write into it, never replace it with a regular file.
      const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) detail::write_fail(path, "cannot open the device", errno);
      const int e = detail::write_all(fd, bytes);
      const int c = ::close(fd) == 0 ? 0 : errno;
      if (e) detail::write_fail(path, "write failed", e);
      if (c && c != EINTR) detail::write_fail(path, "close failed", c);
      return;
    }
  }
  std::filesystem::path tmp;
  int fd = -1;
  for (unsigned attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    tmp = detail::unique_temporary(path, attempt);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) detail::write_fail(path, "cannot create a temporary file beside it", errno);
  }
  if (fd < 0) detail::write_fail(path, "no free temporary name beside it", EEXIST);
  auto abandon = [&](const char* what, int e) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    detail::write_fail(path, what, e);
  };
  if (const int e = detail::write_all(fd, bytes)) abandon("write failed", e);
  if (::fsync(fd) != 0) abandon("fsync failed", errno);
  const int closed = ::close(fd);
  const int close_errno = errno;
  fd = -1;
  if (closed != 0 && close_errno != EINTR) abandon("close failed", close_errno);
  // Re-check just before the rename: a directory, device or FIFO that appeared meanwhile is not replaced.
  if (::lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
    abandon("the target is no longer a regular file", 0);
  if (::rename(tmp.c_str(), path.c_str()) != 0) abandon("rename into place failed", errno);
#else
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) detail::write_fail(path, "it is a directory", 0);
  std::filesystem::path tmp = path;
  tmp += ".tmp-" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) detail::write_fail(path, "cannot create a temporary file beside it", 0);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    f.close();
    if (!f) {
      std::filesystem::remove(tmp, ec);
      detail::write_fail(path, "write failed", 0);
    }
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw error(error_kind::io, "cannot write " + path.string() + ": rename into place failed: " + ec.message());
  }
#endif
}

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
