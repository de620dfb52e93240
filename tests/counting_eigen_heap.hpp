// Counts the heap allocations made inside Eigen, for tests that prove a forward allocates nothing:
// EIGEN_RUNTIME_NO_MALLOC makes every Eigen heap allocation check a flag, and the eigen_assert below counts
// the ones made while the flag is off (Eigen's matrix products may take heap buffers for their blocking).
// Include it first in the test's translation unit: both macros must be defined before Eigen is seen.
#pragma once

#include <atomic>

namespace test {
inline std::atomic<long> eigen_heap_allocations{0};
}  // namespace test
#define EIGEN_RUNTIME_NO_MALLOC
#define eigen_assert(x) ((x) ? void(0) : void(++test::eigen_heap_allocations))
