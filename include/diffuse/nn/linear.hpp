#pragma once
/// \file
/// A linear (fully connected) layer as torch.nn.Linear stores and applies it, one batch item per task.

#include <Eigen/Core>
#include <cstddef>

#include "diffuse/nn/matrix.hpp"
#include "diffuse/nn/parallel.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {

/// A linear layer y = W x + b with W (out, in), as torch.nn.Linear stores it.
template <class S>
struct linear {
  matrix<S> weight;  ///< (out, in)
  column<S> bias;    ///< (out)
  int in() const { return static_cast<int>(weight.cols()); }   ///< input features
  int out() const { return static_cast<int>(weight.rows()); }  ///< output features
};

/// y (n, out) = x (n, in) Wᵀ + b.
template <class S>
void linear_forward(const linear<S>& l, const S* x, int n, S* y) {
  const std::ptrdiff_t in = l.in(), out = l.out();
  parallel_for(n, [&](std::ptrdiff_t item) {
    Eigen::Map<const column<S>> xi(x + item * in, in);
    Eigen::Map<column<S>> yi(y + item * out, out);
    yi.noalias() = l.weight * xi;
    yi += l.bias;
  });
}

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
