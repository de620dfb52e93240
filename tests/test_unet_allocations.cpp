// A UNet forward allocates nothing after the first one at a given batch size: neither through operator
// new (std::vector and the like, counted by counting_new.hpp) nor inside Eigen, whose matrix products
// may take heap buffers for their blocking (counted by counting_eigen_heap.hpp).
#include "counting_eigen_heap.hpp"  // first: it configures Eigen

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "counting_new.hpp"
#include "diffuse/nn/unet.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

// The shipped digits model's configuration (class-conditional, attention at 8×8), or a small
// unconditional one with attention at 32×32 and scale-shift time conditioning.
diffuse::unet_config config(bool digits) {
  if (digits) return diffuse::unet_config::load(std::string(DIFFUSE_SOURCE_DIR) + "/models/digits/config.json");
  diffuse::unet_config c;
  c.sample_height = c.sample_width = 32;
  c.in_channels = c.out_channels = 3;
  c.block_out_channels = {32, 64};
  c.down_block_types = {"AttnDownBlock2D", "DownBlock2D"};
  c.up_block_types = {"UpBlock2D", "AttnUpBlock2D"};
  c.norm_num_groups = 8;
  c.time_scale_shift = diffuse::time_conditioning::scale_shift;
  return c;
}

}  // namespace

namespace {

struct counts {
  long operator_new = 0;  // allocations through operator new (std::vector and the like)
  long eigen_heap = 0;    // heap allocations inside Eigen (its matrix products' blocking buffers)
};

// Allocations made by three forwards at batch 3 after a first one sized the workspace, with 1 … max
// threads; the worst thread count.
counts forward_allocations(bool digits) {
  auto net = diffuse::nn::unet2d<float>::random(config(digits), 7);
  const auto size = net.sample_size();
  const int batch = 3;
  const std::size_t per = static_cast<std::size_t>(size.height) * size.width;
  std::vector<float> x(batch * net.config().in_channels * per, 0.25f), out(batch * net.config().out_channels * per);
  std::vector<double> t{10.0, 500.0, 990.0};
  std::vector<int> labels(net.class_conditional() ? batch : 0, 4);
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
    net.forward(x, batch, size, t, labels, out);  // sizes the workspace
    const long before = test::allocations(), eigen_before = test::eigen_heap_allocations.load();
    Eigen::internal::set_is_malloc_allowed(false);
    for (int repeat = 0; repeat < 3; ++repeat) net.forward(x, batch, size, t, labels, out);
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

TEST_CASE("a UNet forward allocates nothing after the first at the same batch size, on every thread count") {
  const counts digits = forward_allocations(true);
  CHECK(digits.operator_new == 0);
  CHECK(digits.eigen_heap == 0);
  const counts larger = forward_allocations(false);
  CHECK(larger.operator_new == 0);
}

// Eigen's general matrix product takes heap buffers for its packed panels when they exceed
// EIGEN_STACK_ALLOCATION_LIMIT (128 KB), as the attention score products at 32×32 (1024 × 1024) and the
// im2col product of the stride-2 convolution here (in·9 × 256 columns) did: about 90 malloc/free pairs
// per forward. Attention now runs its own register tiles (attention_kernel.hpp) and strided 3×3
// convolutions the direct kernel's tiles on their im2col columns, so no product of this model reaches
// Eigen's GEMM.
TEST_CASE("a 32×32 model with attention allocates nothing inside Eigen either") {
  const long eigen_heap = forward_allocations(false).eigen_heap;
  MESSAGE("Eigen heap allocations over three forwards of the 32x32 model: " << eigen_heap);
  CHECK(eigen_heap == 0);
}
