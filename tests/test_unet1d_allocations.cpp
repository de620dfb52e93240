// A 1-D UNet forward allocates nothing after the first one at a given batch size and horizon: neither
// through operator new (counted by counting_new.hpp) nor inside Eigen, whose matrix products may take
// heap buffers for their blocking (counted by counting_eigen_heap.hpp).
#include "counting_eigen_heap.hpp"  // first: it configures Eigen

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "counting_new.hpp"
#include "diffuse/nn/unet1d.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

struct counts {
  long operator_new = 0;  // allocations through operator new (std::vector and the like)
  long eigen_heap = 0;    // heap allocations inside Eigen (its matrix products' blocking buffers)
};

// Allocations made by two forwards and a smaller one after a first one sized the workspace, with 1 … max threads and
// the whole team forced (set_serial_threshold(0)); the worst thread count.
counts forward_allocations(diffuse::nn::unet1d<float>& net, int batch, int horizon) {
  net.set_serial_threshold(0);
  const auto& c = net.config();
  std::vector<float> x(static_cast<std::size_t>(batch) * horizon * c.input_dim, 0.25f), out(x.size());
  std::vector<float> g(static_cast<std::size_t>(batch) * c.global_cond_dim, 0.5f);
  std::vector<float> l(static_cast<std::size_t>(batch) * horizon * c.local_cond_dim, -0.5f);
  std::vector<double> t(batch, 17.0);
#if defined(_OPENMP)
  const int threads = omp_get_max_threads();
#else
  const int threads = 1;
#endif
  counts worst;
  for (int used = 1; used <= threads; ++used) {
#if defined(_OPENMP)
    omp_set_num_threads(used);
#endif
    net.forward(x, batch, horizon, t, g, l, out);  // sizes the workspace
    const long before = test::allocations(), eigen_before = test::eigen_heap_allocations.load();
    Eigen::internal::set_is_malloc_allowed(false);
    for (int repeat = 0; repeat < 2; ++repeat) net.forward(x, batch, horizon, t, g, l, out);
    // A smaller batch and horizon reuse the buffers too.
    net.forward(std::span<const float>(x).first(static_cast<std::size_t>(horizon / 2) * c.input_dim), 1, horizon / 2,
                std::span<const double>(t).first(1), std::span<const float>(g).first(c.global_cond_dim),
                std::span<const float>(l).first(static_cast<std::size_t>(horizon / 2) * c.local_cond_dim),
                std::span<float>(out).first(static_cast<std::size_t>(horizon / 2) * c.input_dim));
    Eigen::internal::set_is_malloc_allowed(true);
    worst.operator_new = std::max(worst.operator_new, test::allocations() - before);
    worst.eigen_heap = std::max(worst.eigen_heap, test::eigen_heap_allocations.load() - eigen_before);
  }
#if defined(_OPENMP)
  omp_set_num_threads(threads);
#endif
  return worst;
}

}  // namespace

TEST_CASE("a 1-D UNet forward allocates nothing after the first, with global and local conditioning, on every thread count") {
  // Three levels, FiLM scale and bias, local conditioning; channels wide enough for several GEMM row
  // blocks and im2col columns of a few hundred rows.
  diffuse::unet1d_config c;
  c.input_dim = 7;
  c.global_cond_dim = 20;
  c.local_cond_dim = 3;
  c.diffusion_step_embed_dim = 32;
  c.down_dims = {64, 128, 256};
  c.kernel_size = 5;
  c.cond_predict_scale = true;
  auto net = diffuse::nn::unet1d<float>::random(c, 3);
  const counts n = forward_allocations(net, 2, 16);
  MESSAGE("operator new: " << n.operator_new << ", Eigen heap: " << n.eigen_heap);
  CHECK(n.operator_new == 0);
  CHECK(n.eigen_heap == 0);
}
