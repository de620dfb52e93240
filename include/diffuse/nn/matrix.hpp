#pragma once
/// \file
/// Eigen matrix types and strided views the layers use for weights and for parts of NCHW tensors (rows are
/// channels, columns pixels, or time steps for a 1-D network).

#include <Eigen/Core>

#include "diffuse/version.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {

/// A row-major dynamic matrix: weights as PyTorch stores them, (out, in).
template <class S>
using matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
/// A dynamic column vector (biases, norm parameters).
template <class S>
using column = Eigen::Matrix<S, Eigen::Dynamic, 1>;
/// A row-major view of part of a tensor: rows are channels, columns pixels, rows OuterStride apart.
template <class S>
using matrix_map = Eigen::Map<matrix<S>, Eigen::Unaligned, Eigen::OuterStride<>>;
/// The read-only matrix_map.
template <class S>
using const_matrix_map = Eigen::Map<const matrix<S>, Eigen::Unaligned, Eigen::OuterStride<>>;

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
