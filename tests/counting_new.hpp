// Replaces the global operator new with one that counts calls, for tests that prove a loop allocates
// nothing. Include it in exactly one translation unit of a test program (it defines the replacement
// operators), and read test::allocations() before and after the code under test.
#pragma once

#include <atomic>
#include <cstdlib>
#include <new>

namespace test {
inline std::atomic<long> allocation_count{0};
/// operator new calls in this program so far.
inline long allocations() noexcept { return allocation_count.load(); }
}  // namespace test

// GCC cannot see that the matching delete frees what this new mallocs.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  ++test::allocation_count;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
