#pragma once
/// \file
/// diffusers' ResnetBlock2D as the UNet runs it, and the group norm → convolution fusion it (and the
/// UNet's output head) is built from: GroupNorm, SiLU, 3×3 convolution, the time embedding injected
/// (added before the second norm, or as a scale and shift after it), GroupNorm, SiLU, 3×3 convolution,
/// plus a (1×1-projected) shortcut.
///
/// The buffers are the caller's (block_workspace), sized once for the largest batch and image, so a
/// forward allocates nothing.

#include <algorithm>
#include <cstddef>
#include <optional>
#include <span>

#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/group_norm.hpp"
#include "diffuse/nn/linear.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {

/// A ResNet block: GroupNorm, SiLU, 3×3 conv, time embedding injected, GroupNorm, SiLU, 3×3 conv, plus a
/// (1×1-projected when the channels change) shortcut, divided by output_scale.
template <class S>
struct resnet_block {
  group_norm<S> norm1;  ///< before conv1
  group_norm<S> norm2;  ///< before conv2, with the time embedding
  conv2d<S> conv1;      ///< in → out channels
  conv2d<S> conv2;      ///< out → out channels
  linear<S> time_proj;  ///< SiLU(time embedding) → out channels (2·out for scale_shift)
  std::optional<conv2d<S>> shortcut;  ///< 1×1 projection of the input when in ≠ out
  bool scale_shift = false;  ///< resnet_time_scale_shift "scale_shift": norm2·(1 + scale) + shift; else an add before norm2
  double output_scale = 1;   ///< (shortcut + residual) / output_scale
  int in = 0;   ///< input channels
  int out = 0;  ///< output channels
};

/// Floating-point operations (multiply and add counted apart) of c on a batch of n at h×w.
template <class S>
double conv2d_flops(const conv2d<S>& c, int n, int h, int w) {
  return 2.0 * n * c.out * c.in * c.kernel * c.kernel * c.out_height(h) * c.out_width(w);
}

/// The buffers a block's forward uses besides its input and output, and the FLOPs it has run.
template <class S>
struct block_workspace {
  S* normed = nullptr;       ///< a normalised activation (n · channels · pixels) when it cannot go straight into a convolution
  S* hidden = nullptr;       ///< the block's inner activation (n · out · pixels)
  S* projection = nullptr;   ///< the time projection (n · time_proj.out())
  const S* time_silu = nullptr;  ///< SiLU(time embedding), (n, time_proj.in())
  std::span<S> conv_scratch;     ///< conv2d_scratch of the largest convolution, for the largest batch and image
  double flops = 0;              ///< FLOPs of the convolutions run through it, accumulated
};

/// y = conv(x) (or y += with `accumulate`) through the workspace's convolution scratch, counting its FLOPs.
template <class S>
void conv2d_forward(const conv2d<S>& c, const S* x, int n, int h, int w, S* y, block_workspace<S>& ws, bool accumulate = false) {
  ws.flops += conv2d_flops(c, n, h, w);
  conv2d_forward(c, x, n, h, w, y, ws.conv_scratch, accumulate);
}

/// y = conv(norm(x) with epilogue e) (or y += with `accumulate`): when the convolution reads a
/// zero-bordered layout, the norm writes it straight into the convolution's scratch, saving the
/// convolution its own copy (a read and a write of the activations, about 5% of a small model's
/// forward). The same sums either way.
template <class S>
void norm_then_conv(const group_norm<S>& g, norm_epilogue<S> e, const conv2d<S>& c, const S* x, int n, int h, int w, S* y,
                    block_workspace<S>& ws, bool accumulate = false) {
  const std::ptrdiff_t P = static_cast<std::ptrdiff_t>(h) * w;
  e.layout = c.bordered_input(h, w);
  if (!e.layout.active()) {
    group_norm_forward(g, x, n, P, ws.normed, e);
    conv2d_forward(c, ws.normed, n, h, w, y, ws, accumulate);
    return;
  }
  S* bordered = detail::aligned_scratch(ws.conv_scratch);
  group_norm_forward(g, x, n, P, bordered, e);
  ws.flops += conv2d_flops(c, n, h, w);
  // The Winograd path's per-thread tiles follow the bordered input in the same scratch.
  const std::size_t used = static_cast<std::size_t>(bordered - ws.conv_scratch.data()) +
                           static_cast<std::size_t>(n) * c.in * static_cast<std::size_t>(e.layout.plane);
  conv2d_forward_bordered(c, bordered, n, h, w, y, accumulate, ws.conv_scratch.subspan(std::min(used, ws.conv_scratch.size())));
}

/// y = resnet(x) for x (n, in, h·w), y (n, out, h·w).
template <class S>
void resnet_forward(const resnet_block<S>& b, const S* x, int n, int h, int w, S* y, block_workspace<S>& ws) {
  const std::ptrdiff_t P = static_cast<std::ptrdiff_t>(h) * w;
  norm_then_conv(b.norm1, {.silu = true}, b.conv1, x, n, h, w, ws.hidden, ws);
  // The shortcut (or the identity) into y first: the second convolution then adds onto it.
  if (b.shortcut) {
    conv2d_forward(*b.shortcut, x, n, h, w, y, ws);
  } else {
    std::copy(x, x + static_cast<std::ptrdiff_t>(n) * b.in * P, y);
  }
  linear_forward(b.time_proj, ws.time_silu, n, ws.projection);
  norm_epilogue<S> e{.stride = b.time_proj.out(), .silu = true};
  if (b.scale_shift) {
    e.scale = ws.projection;
    e.shift = ws.projection + b.out;
  } else {
    e.add = ws.projection;
  }
  norm_then_conv(b.norm2, e, b.conv2, ws.hidden, n, h, w, y, ws, /*accumulate=*/true);
  if (b.output_scale != 1) {
    const S inv = static_cast<S>(1.0 / b.output_scale);
    const std::ptrdiff_t total = static_cast<std::ptrdiff_t>(n) * b.out * P;
    for (std::ptrdiff_t i = 0; i < total; ++i) y[i] *= inv;
  }
}

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
