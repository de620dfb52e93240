#pragma once
/// \file
/// How the layers spread work over threads: OpenMP loops over tasks whose boundaries do not depend on the
/// thread count (batch items, channel groups, fixed blocks of output columns).
///
/// Every layer works on one batch item and a fixed block of output columns at a time. Together with GEMMs
/// always issued from inside these parallel regions (where Eigen runs them on one thread with the same
/// blocking), that makes every output bit independent of OMP_NUM_THREADS and of how a batch is split.

#include <cstddef>

#include "diffuse/version.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {

/// Output columns (pixels) per GEMM task: fixed, so results do not depend on the thread count.
inline constexpr std::ptrdiff_t column_block = 256;

/// Threads our parallel regions use.
inline int max_threads() noexcept {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}
/// This thread's index in the current OpenMP team (0 outside one).
inline int thread_index() noexcept {
#if defined(_OPENMP)
  return omp_get_thread_num();
#else
  return 0;
#endif
}

/// Runs f(i) for i in [0, n) across the OpenMP team. Always opens a parallel region, even for one task,
/// so that Eigen's products inside never start threads of their own (they check for an enclosing team).
template <class F>
void parallel_for(std::ptrdiff_t n, F&& f) {
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (std::ptrdiff_t i = 0; i < n; ++i) f(i);
}

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
