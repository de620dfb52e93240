/// \file
/// diffuse::write_file and write_files (over staged_file), the one way the library and its examples put
/// bytes in a file.
#pragma once

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <system_error>
#include <vector>

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

/// One file written in two phases: the constructor puts the bytes in a temporary beside the target and
/// flushes them to disk, commit() renames it into place. Several staged files committed together make
/// one run's outputs all-or-nothing (write_files): any failure while staging leaves every target as it was.
///
/// A regular file or a missing name is replaced atomically: the temporary is created exclusively (no
/// symlink followed, a fresh name per call, mode 0666 less the umask), every write is checked, the file is
/// fsync'ed and then renamed over the target, so readers see the old file or the whole new one, never a
/// part; two concurrent writers each rename a complete file. A device node or FIFO (such as /dev/null) is
/// written into directly at commit(), as asked, and never replaced. A directory target is refused. On
/// failure nothing is left at the temporary, the target is untouched (a device may have received part of
/// the bytes), and the message names the cause reported by the system. A staged file that is never
/// committed is removed by the destructor. These guarantees are POSIX ones: elsewhere (no <unistd.h>) the
/// temporary is made with std::ofstream, neither exclusively nor fsync'ed, and renamed into place.
class staged_file {
 public:
  /// Stages `bytes` for `path`. For a device or FIFO target the bytes are only referenced: they must
  /// outlive commit().
  /// \throws diffuse::error (error_kind::io) when the target is a directory or any step fails.
  staged_file(const std::filesystem::path& path, std::span<const unsigned char> bytes) : path_(path), bytes_(bytes) {
#if DIFFUSE_DETAIL_POSIX_WRITE
    struct stat st{};
    if (::stat(path.c_str(), &st) == 0) {
      if (S_ISDIR(st.st_mode)) detail::write_fail(path, "it is a directory", 0);
      if (!S_ISREG(st.st_mode)) {
        device_ = true;  // a device or FIFO the user named: written into at commit(), never replaced
        return;
      }
    }
    int fd = -1;
    for (unsigned attempt = 0; attempt < 100 && fd < 0; ++attempt) {
      tmp_ = detail::unique_temporary(path, attempt);
      fd = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
      if (fd < 0 && errno != EEXIST) detail::write_fail(path, "cannot create a temporary file beside it", errno);
    }
    if (fd < 0) detail::write_fail(path, "no free temporary name beside it", EEXIST);
    auto abandon = [&](const char* what, int e) {
      if (fd >= 0) ::close(fd);
      ::unlink(tmp_.c_str());
      tmp_.clear();
      detail::write_fail(path, what, e);
    };
    if (const int e = detail::write_all(fd, bytes)) abandon("write failed", e);
    if (::fsync(fd) != 0) abandon("fsync failed", errno);
    const int closed = ::close(fd);
    const int close_errno = errno;
    fd = -1;
    if (closed != 0 && close_errno != EINTR) abandon("close failed", close_errno);
#else
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) detail::write_fail(path, "it is a directory", 0);
    tmp_ = path;
    tmp_ += ".tmp-" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
    std::ofstream f(tmp_, std::ios::binary | std::ios::trunc);
    if (!f) {
      tmp_.clear();
      detail::write_fail(path, "cannot create a temporary file beside it", 0);
    }
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    f.close();
    if (!f) {
      std::filesystem::remove(tmp_, ec);
      tmp_.clear();
      detail::write_fail(path, "write failed", 0);
    }
#endif
  }
  staged_file(const staged_file&) = delete;
  staged_file& operator=(const staged_file&) = delete;
  /// Removes the temporary of a file that was never committed.
  ~staged_file() {
    if (!tmp_.empty()) {
      std::error_code ec;
      std::filesystem::remove(tmp_, ec);
    }
  }

  /// True when the target is a device or FIFO, written into at commit() (nothing was staged).
  bool writes_into_device() const noexcept { return device_; }

  /// Puts the staged bytes in place: renames the temporary over the target, or writes into the device.
  /// \throws diffuse::error (error_kind::io) when the rename or the device write fails, or the target
  ///         became a directory, device or FIFO since staging (it is then not replaced).
  void commit() {
#if DIFFUSE_DETAIL_POSIX_WRITE
    if (device_) {
      device_ = false;
      const int fd = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) detail::write_fail(path_, "cannot open the device", errno);
      const int e = detail::write_all(fd, bytes_);
      const int c = ::close(fd) == 0 ? 0 : errno;
      if (e) detail::write_fail(path_, "write failed", e);
      if (c && c != EINTR) detail::write_fail(path_, "close failed", c);
      return;
    }
    if (tmp_.empty()) detail::write_fail(path_, "the staged file was already committed", 0);
    // Re-check just before the rename: a directory, device or FIFO that appeared meanwhile is not replaced.
    struct stat st{};
    if (::lstat(path_.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
      detail::write_fail(path_, "the target is no longer a regular file", 0);
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) detail::write_fail(path_, "rename into place failed", errno);
    tmp_.clear();
#else
    if (tmp_.empty()) detail::write_fail(path_, "the staged file was already committed", 0);
    std::error_code ec;
    std::filesystem::rename(tmp_, path_, ec);
    if (ec) throw error(error_kind::io, "cannot write " + path_.string() + ": rename into place failed: " + ec.message());
    tmp_.clear();
#endif
  }

 private:
  std::filesystem::path path_, tmp_;
  std::span<const unsigned char> bytes_;
  bool device_ = false;
};

/// Writes `bytes` to `path` so that readers see the old file or the whole new one, never a part (see
/// staged_file for what is guaranteed, for devices and FIFOs, and on failure).
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
  staged_file(path, bytes).commit();
}

/// A file for write_files: the target and its complete contents.
struct file_contents {
  std::filesystem::path path;            ///< the file to write
  std::span<const unsigned char> bytes;  ///< its contents (not copied)
};

/// Writes several files all-or-nothing: every file is staged (written and flushed beside its target)
/// before any is put in place, so a failure while writing any of them — a full disk, a bad directory —
/// leaves every target as it was. Devices and FIFOs are written first, then the staged files renamed; only a
/// rename failing after another succeeded (a directory made read-only meanwhile) could leave a part in
/// place, and the message then names the file.
/// \throws diffuse::error (error_kind::io) as write_file.
inline void write_files(std::initializer_list<file_contents> files) {
  std::vector<std::unique_ptr<staged_file>> staged;
  staged.reserve(files.size());
  for (const auto& f : files) staged.push_back(std::make_unique<staged_file>(f.path, f.bytes));
  // Devices first: their writes can still fail (a full device), a rename of a staged file hardly can.
  for (auto& f : staged)
    if (f->writes_into_device()) f->commit();
  for (auto& f : staged)
    if (!f->writes_into_device()) f->commit();
}

DIFFUSE_END_NAMESPACE
}  // namespace diffuse
