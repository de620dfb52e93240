#pragma once
/// \file
/// 1-D convolution over time on row-major (N, C, T) tensors (torch.nn.Conv1d), and the transposed
/// convolution (torch.nn.ConvTranspose1d) rewritten as one: a stride-s transposed convolution equals a
/// stride-1 convolution of the input with s − 1 zeros between samples, padded by k − 1 − p on each side,
/// with the kernel flipped and its in/out axes swapped.
///
/// The forward is im2col + GEMM, as conv2d.hpp's general path, in two passes: every batch item's
/// columns first, then one GEMM task per (item, fixed block of output channels). Policies run at batch
/// 1 over a dozen time steps, where blocking only over batch items and time (conv2d's tasks) would leave
/// every thread but one idle; the channel blocks do not depend on the thread count, so every output
/// element is the same sum whatever OMP_NUM_THREADS is (parallel.hpp).
///
/// 1×1 convolutions (the residual and output projections) are conv2d's kernel-1 path on a 1 × T image.

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>
#include <span>

#include "diffuse/error.hpp"
#include "diffuse/nn/matrix.hpp"
#include "diffuse/nn/parallel.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {

/// A 1-D convolution: weight (out, in·kernel) in PyTorch's (out, in, k) order, bias, stride, the zero
/// padding on each side and the input dilation (zeros inserted between input samples; 1 for a plain
/// convolution, the stride of the transposed convolution it stands for otherwise).
template <class S>
struct conv1d {
  matrix<S> weight;  ///< (out, in·kernel)
  column<S> bias;    ///< (out)
  int in = 0;        ///< input channels
  int out = 0;       ///< output channels
  int kernel = 3;    ///< taps
  int stride = 1;    ///< output stride
  int pad = 1;       ///< zeros before the first and after the last (dilated) input sample
  int dilation = 1;  ///< input dilation: input sample s sits at position s·dilation

  /// Output length for an input of `length` samples.
  int out_length(int length) const { return ((length - 1) * dilation + 1 + 2 * pad - kernel) / stride + 1; }
  /// Scratch elements conv1d_forward needs for a batch of n at `length` samples: the im2col columns.
  std::size_t scratch_size(int n, int length) const {
    return static_cast<std::size_t>(n) * in * kernel * static_cast<std::size_t>(std::max(out_length(length), 0));
  }
};

/// Output channels per GEMM task: fixed, so that results do not depend on the thread count.
inline constexpr int conv1d_row_block = 32;

/// Builds the convolution a torch.nn.ConvTranspose1d(in, out, kernel, stride, padding) computes, from its
/// weight in PyTorch's (in, out, kernel) order and its bias.
template <class S>
conv1d<S> transposed_conv1d(const S* weight, const S* bias, int in, int out, int kernel, int stride, int padding) {
  if (padding > kernel - 1)
    diffuse::detail::fail(error_kind::model, "a transposed convolution with padding ", padding, " and kernel ", kernel,
                          " is not supported; expected padding <= kernel - 1");
  conv1d<S> c;
  c.in = in;
  c.out = out;
  c.kernel = kernel;
  c.stride = 1;
  c.dilation = stride;
  c.pad = kernel - 1 - padding;
  c.weight.resize(out, static_cast<Eigen::Index>(in) * kernel);
  c.bias = Eigen::Map<const column<S>>(bias, out);
  for (int i = 0; i < in; ++i)
    for (int o = 0; o < out; ++o)
      for (int j = 0; j < kernel; ++j)
        c.weight(o, static_cast<Eigen::Index>(i) * kernel + j) = weight[(static_cast<std::ptrdiff_t>(i) * out + o) * kernel + (kernel - 1 - j)];
  return c;
}

/// y = conv(x) for x (n, in, length) and y (n, out, out_length(length)); `scratch` holds
/// c.scratch_size(n, length) elements.
template <class S>
void conv1d_forward(const conv1d<S>& c, const S* x, int n, int length, S* y, std::span<S> scratch) {
  const int lo = c.out_length(length), k = c.kernel;
  const std::ptrdiff_t rows = static_cast<std::ptrdiff_t>(c.in) * k;
  if (scratch.size() < c.scratch_size(n, length))
    diffuse::detail::fail(error_kind::argument, "conv1d_forward: scratch of ", scratch.size(), " elements; expected ", c.scratch_size(n, length));
  S* cols = scratch.data();
  // Column t of row (ci, j) holds the dilated input at u = t·stride − pad + j: x[u / dilation] when
  // u is a multiple of the dilation inside the input, else zero.
  parallel_for(static_cast<std::ptrdiff_t>(n) * c.in, [&](std::ptrdiff_t task) {
    const std::ptrdiff_t item = task / c.in, ci = task % c.in;
    const S* xc = x + (item * c.in + ci) * length;
    for (int j = 0; j < k; ++j) {
      S* row = cols + (item * rows + ci * k + j) * lo;
      for (int t = 0; t < lo; ++t) {
        const int u = t * c.stride - c.pad + j;
        row[t] = (u >= 0 && u % c.dilation == 0 && u / c.dilation < length) ? xc[u / c.dilation] : S(0);
      }
    }
  });
  const std::ptrdiff_t blocks = (c.out + conv1d_row_block - 1) / conv1d_row_block;
  parallel_for(static_cast<std::ptrdiff_t>(n) * blocks, [&](std::ptrdiff_t task) {
    const std::ptrdiff_t item = task / blocks, r0 = (task % blocks) * conv1d_row_block;
    const std::ptrdiff_t r = std::min<std::ptrdiff_t>(conv1d_row_block, c.out - r0);
    const_matrix_map<S> col(cols + item * rows * lo, rows, lo, Eigen::OuterStride<>(lo));
    matrix_map<S> out(y + (item * c.out + r0) * lo, r, lo, Eigen::OuterStride<>(lo));
    out.noalias() = c.weight.middleRows(r0, r) * col;
    out.colwise() += c.bias.segment(r0, r);
  });
}

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
