#pragma once
/// \file
/// Multi-head self-attention over pixels as diffusers' Attention block does it, on (n, C, pixels) tensors:
/// the layer's parameters, its scratch and its forward pass. Images of whole SIMD vectors run every product
/// on attention_kernel.hpp's register tiles, others on Eigen GEMMs.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>

#include <xsimd/xsimd.hpp>

#include "diffuse/detail/simd_math.hpp"
#include "diffuse/error.hpp"
#include "diffuse/nn/attention_kernel.hpp"
#include "diffuse/nn/group_norm.hpp"
#include "diffuse/nn/linear.hpp"
#include "diffuse/nn/matrix.hpp"
#include "diffuse/nn/parallel.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {

namespace detail {

/// row ← softmax(row·scale) in place: max, e^(v − max) with its sum (lanes of S, then double), scale.
template <class S>
void scaled_softmax(S* row, std::ptrdiff_t n, S scale) {
  using batch = xsimd::batch<S>;
  constexpr std::ptrdiff_t L = batch::size;
  const batch vs(scale);
  S mx = row[0] * scale;
  std::ptrdiff_t p = 0;
  if (n >= L) {
    batch m = batch::load_unaligned(row) * vs;
    for (p = L; p + L <= n; p += L) m = xsimd::max(m, batch::load_unaligned(row + p) * vs);
    alignas(64) S lanes[L];
    m.store_aligned(lanes);
    mx = *std::max_element(lanes, lanes + L);
  }
  for (; p < n; ++p) mx = std::max(mx, row[p] * scale);
  const batch vm(mx);
  batch acc(S(0));
  for (p = 0; p + L <= n; p += L) {
    const batch e = diffuse::detail::fast_exp(xsimd::fms(batch::load_unaligned(row + p), vs, vm));
    e.store_unaligned(row + p);
    acc += e;
  }
  alignas(64) S parts[L];
  acc.store_aligned(parts);
  double sum = 0;
  for (std::ptrdiff_t l = 0; l < L; ++l) sum += static_cast<double>(parts[l]);
  for (; p < n; ++p) {
    row[p] = std::exp(row[p] * scale - mx);
    sum += static_cast<double>(row[p]);
  }
  const S inv = static_cast<S>(1.0 / sum);
  const batch vinv(inv);
  for (p = 0; p + L <= n; p += L) (batch::load_unaligned(row + p) * vinv).store_unaligned(row + p);
  for (; p < n; ++p) row[p] *= inv;
}

}  // namespace detail

/// Multi-head self-attention over pixels as diffusers' Attention block does it: optional group norm,
/// q/k/v linear maps over channels, softmax(q kᵀ / √d) v per head, output map, residual, ÷ rescale.
template <class S>
struct attention {
  group_norm<S> norm;  ///< groups == 0: no normalisation
  bool has_norm = true;  ///< false: the input goes to q/k/v unnormalised
  linear<S> to_q;    ///< query map, channels → heads·head_dim
  linear<S> to_k;    ///< key map
  linear<S> to_v;    ///< value map
  linear<S> to_out;  ///< output map, heads·head_dim → channels
  int heads = 1;     ///< attention heads
  int head_dim = 1;  ///< channels per head
  double rescale = 1;  ///< the output (attention + residual) is divided by it (rescale_output_factor)
  int channels() const { return to_q.in(); }      ///< channels in and out
  int inner() const { return heads * head_dim; }  ///< heads·head_dim
};

/// Scratch an attention forward needs beyond its input: normalised input (n·C·P), q/k/v and the heads'
/// output (n·4·inner·P), and per thread one P×P score matrix and P per-query factors.
template <class S>
std::size_t attention_scratch(const attention<S>& a, int n, std::ptrdiff_t pixels) {
  return static_cast<std::size_t>(n) * pixels * (a.channels() + 4 * a.inner()) +
         static_cast<std::size_t>(max_threads()) * static_cast<std::size_t>(detail::attention_head_scratch<S>(pixels));
}

/// x (n, C, P) ← attention(x), in place.
template <class S>
void attention_forward(const attention<S>& a, S* x, int n, std::ptrdiff_t pixels, std::span<S> scratch) {
  const std::ptrdiff_t C = a.channels(), inner = a.inner(), P = pixels;
  if (scratch.size() < attention_scratch(a, n, P))
    diffuse::detail::fail(error_kind::argument, "attention scratch holds ", scratch.size(), " elements; expected ", attention_scratch(a, n, P));
  S* hn = scratch.data();
  S* qkvo = hn + n * C * P;  // per item: q, k, v, o, each (inner, P)
  S* scores = qkvo + n * 4 * inner * P;
  if (a.has_norm) group_norm_forward(a.norm, x, n, P, hn);
  else std::copy(x, x + n * C * P, hn);
  const std::ptrdiff_t blocks = (P + column_block - 1) / column_block;
  // Images of whole SIMD vectors take attention_kernel.hpp's register tiles for every product (the maps
  // too: at 64 to 256 pixels Eigen's packing costs as much as its multiply); others Eigen's GEMM.
  const bool own_kernel = detail::attention_kernel_fits<S>(P);
  // q, k, v = W hn + b for each item and column block.
  parallel_for(n * blocks * 3, [&](std::ptrdiff_t task) {
    const std::ptrdiff_t which = task % 3, rest = task / 3, item = rest / blocks, p0 = (rest % blocks) * column_block;
    const std::ptrdiff_t cols = std::min(column_block, P - p0);
    const linear<S>& l = which == 0 ? a.to_q : which == 1 ? a.to_k : a.to_v;
    if (own_kernel) {
      detail::attention_product<S>(inner, cols, C, l.weight.data(), C, 1, hn + item * C * P + p0, P, {.row_bias = l.bias.data()},
                                   qkvo + (item * 4 + which) * inner * P + p0, P);
      return;
    }
    const_matrix_map<S> in(hn + item * C * P + p0, C, cols, Eigen::OuterStride<>(P));
    matrix_map<S> out(qkvo + (item * 4 + which) * inner * P + p0, inner, cols, Eigen::OuterStride<>(P));
    out.noalias() = l.weight * in;
    out.colwise() += l.bias;
  });
  // Per item and head: S = qᵀk / √d (P × P), row softmax, o = v Sᵀ (d × P).
  const S scale = static_cast<S>(1.0 / std::sqrt(static_cast<double>(a.head_dim)));
  parallel_for(static_cast<std::ptrdiff_t>(n) * a.heads, [&](std::ptrdiff_t task) {
    const std::ptrdiff_t item = task / a.heads, head = task % a.heads, d = a.head_dim;
    S* base = qkvo + item * 4 * inner * P + head * d * P;
    S* head_scratch = scores + static_cast<std::ptrdiff_t>(thread_index()) * detail::attention_head_scratch<S>(P);
    if (own_kernel) {
      detail::attention_head<S>(base, base + inner * P, base + 2 * inner * P, base + 3 * inner * P, d, P, P, scale, head_scratch);
      return;
    }
    const_matrix_map<S> q(base, d, P, Eigen::OuterStride<>(P));
    const_matrix_map<S> k(base + inner * P, d, P, Eigen::OuterStride<>(P));
    const_matrix_map<S> v(base + 2 * inner * P, d, P, Eigen::OuterStride<>(P));
    matrix_map<S> o(base + 3 * inner * P, d, P, Eigen::OuterStride<>(P));
    matrix_map<S> w(head_scratch, P, P, Eigen::OuterStride<>(P));
    w.noalias() = q.transpose() * k;
    for (std::ptrdiff_t r = 0; r < P; ++r) detail::scaled_softmax(w.data() + r * P, P, scale);
    o.noalias() = v * w.transpose();
  });
  // x = (W_out o + b + x) / rescale.
  const S inv_rescale = static_cast<S>(1.0 / a.rescale);
  parallel_for(n * blocks, [&](std::ptrdiff_t task) {
    const std::ptrdiff_t item = task / blocks, p0 = (task % blocks) * column_block;
    const std::ptrdiff_t cols = std::min(column_block, P - p0);
    matrix_map<S> out(x + item * C * P + p0, C, cols, Eigen::OuterStride<>(P));
    if (own_kernel) {
      // (W o + b) added to the residual already in x: PyTorch's proj + residual.
      detail::attention_product<S>(C, cols, inner, a.to_out.weight.data(), inner, 1, qkvo + (item * 4 + 3) * inner * P + p0, P,
                                   {.row_bias = a.to_out.bias.data(), .accumulate = true}, x + item * C * P + p0, P);
    } else {
      const_matrix_map<S> o(qkvo + (item * 4 + 3) * inner * P + p0, inner, cols, Eigen::OuterStride<>(P));
      // Residual first, then the product added on: the same sum as PyTorch's (proj + residual).
      out.noalias() += a.to_out.weight * o;
      out.colwise() += a.to_out.bias;
    }
    if (a.rescale != 1) out *= inv_rescale;
  });
}

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
