#pragma once
/// \file
/// The blocks of Diffusion Policy's 1-D temporal UNet: the Conv1d block (Conv1d, GroupNorm, Mish) and the
/// conditional residual block built from two of them, with FiLM conditioning between them (Perez et
/// al. 2018: a per-channel bias, or a scale and a bias, predicted from the conditioning vector by
/// Mish → Linear) and a 1×1-projected residual when the channel count changes:
///
///   h = mish(gn1(conv1(x)));  h = scale·h + bias  (or h + bias);  y = mish(gn2(conv2(h))) + residual(x)
///
/// The buffers are the caller's (film_workspace), sized once for the largest batch and horizon, so a
/// forward allocates nothing.

#include <algorithm>
#include <cstddef>
#include <optional>
#include <span>

#include "diffuse/nn/activations.hpp"
#include "diffuse/nn/conv1d.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/group_norm.hpp"
#include "diffuse/nn/linear.hpp"
#include "diffuse/nn/parallel.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {

/// Conv1d → GroupNorm → Mish (Diffusion Policy's Conv1dBlock).
template <class S>
struct conv1d_block {
  conv1d<S> conv;      ///< kernel_size taps, "same" padding
  group_norm<S> norm;  ///< n_groups groups over the output channels
};

/// A conditional residual block (ConditionalResidualBlock1D): two Conv1d blocks, FiLM from the
/// conditioning vector between them, and the residual.
template <class S>
struct conditional_residual_block {
  conv1d_block<S> block1;             ///< in → out channels
  conv1d_block<S> block2;             ///< out → out channels
  linear<S> cond;                     ///< Mish(conditioning) → out (bias) or 2·out (scale, then bias)
  std::optional<conv2d<S>> residual;  ///< 1×1 projection of the input when in ≠ out
  bool predict_scale = false;         ///< cond_predict_scale / use_film_scale_modulation
  int in = 0;                         ///< input channels
  int out = 0;                        ///< output channels
};

/// The buffers a block's forward uses besides its input and output.
template <class S>
struct film_workspace {
  S* conv = nullptr;              ///< a convolution's output (n · out · length)
  S* hidden = nullptr;            ///< the normalised activation (n · out · length)
  S* projection = nullptr;        ///< the FiLM projection (n · cond.out())
  const S* cond_mish = nullptr;   ///< Mish(conditioning), (n, cond.in())
  std::span<S> conv_scratch;      ///< im2col columns of the largest convolution (conv1d::scratch_size)
};

/// y = mish(gn(conv(x))) for x (n, in, length), y (n, out, length), through ws.conv.
template <class S>
void conv1d_block_forward(const conv1d_block<S>& b, const S* x, int n, int length, S* y, film_workspace<S>& ws) {
  conv1d_forward(b.conv, x, n, length, ws.conv, ws.conv_scratch);
  group_norm_forward(b.norm, ws.conv, n, length, y);
  const std::ptrdiff_t total = static_cast<std::ptrdiff_t>(n) * b.conv.out * length;
  parallel_for(n, [&](std::ptrdiff_t item) {
    S* yi = y + item * (total / n);
    for (std::ptrdiff_t i = 0; i < total / n; ++i) yi[i] = mish(yi[i]);
  });
}

/// y = block(x, cond) for x (n, in, length), y (n, out, length); ws.cond_mish holds Mish of the
/// conditioning vector of every item.
template <class S>
void conditional_residual_forward(const conditional_residual_block<S>& b, const S* x, int n, int length, S* y, film_workspace<S>& ws) {
  const std::ptrdiff_t T = length, C = b.out, per = C * T;
  conv1d_block_forward(b.block1, x, n, length, ws.hidden, ws);
  linear_forward(b.cond, ws.cond_mish, n, ws.projection);
  // FiLM, per channel: scale·h + bias (scale first in the projection, as the reference splits it) or h + bias.
  const std::ptrdiff_t stride = b.cond.out();
  parallel_for(static_cast<std::ptrdiff_t>(n) * C, [&](std::ptrdiff_t task) {
    const std::ptrdiff_t item = task / C, c = task % C;
    const S* p = ws.projection + item * stride;
    S* h = ws.hidden + item * per + c * T;
    if (b.predict_scale) {
      const S scale = p[c], bias = p[C + c];
      for (std::ptrdiff_t t = 0; t < T; ++t) h[t] = scale * h[t] + bias;
    } else {
      const S bias = p[c];
      for (std::ptrdiff_t t = 0; t < T; ++t) h[t] += bias;
    }
  });
  // The residual into y first, then the second block's output added onto it.
  if (b.residual) conv2d_forward(*b.residual, x, n, 1, length, y, ws.conv_scratch);
  else std::copy(x, x + static_cast<std::ptrdiff_t>(n) * per, y);
  conv1d_forward(b.block2.conv, ws.hidden, n, length, ws.conv, ws.conv_scratch);
  group_norm_forward(b.block2.norm, ws.conv, n, length, ws.hidden);
  parallel_for(n, [&](std::ptrdiff_t item) {
    const S* h = ws.hidden + item * per;
    S* yi = y + item * per;
    for (std::ptrdiff_t i = 0; i < per; ++i) yi[i] = mish(h[i]) + yi[i];
  });
}

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
