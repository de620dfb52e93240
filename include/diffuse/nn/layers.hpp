#pragma once
/// \file
/// The layers of the reference UNet, on row-major NCHW tensors (PyTorch's layout): 2-D convolution as
/// im2col + GEMM, group normalisation fused with the time-embedding injection and SiLU, multi-head
/// self-attention over pixels, nearest 2× upsampling, linear layers and the sinusoidal time embedding.
///
/// Every layer works on one batch item and a fixed block of output columns at a time, and the blocks do
/// not depend on the thread count. Together with GEMMs always issued from inside our own parallel
/// regions (where Eigen runs them on one thread with the same blocking), that makes every output bit
/// independent of OMP_NUM_THREADS and of how a batch is split.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "diffuse/error.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {

template <class S>
using matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class S>
using column = Eigen::Matrix<S, Eigen::Dynamic, 1>;
template <class S>
using matrix_map = Eigen::Map<matrix<S>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class S>
using const_matrix_map = Eigen::Map<const matrix<S>, Eigen::Unaligned, Eigen::OuterStride<>>;

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
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t i = 0; i < n; ++i) f(i);
}

template <class S>
S silu(S x) noexcept {
  return x / (S(1) + std::exp(-x));
}

/// A linear layer y = W x + b with W (out, in), as torch.nn.Linear stores it.
template <class S>
struct linear {
  matrix<S> weight;
  column<S> bias;
  int in() const { return static_cast<int>(weight.cols()); }
  int out() const { return static_cast<int>(weight.rows()); }
};

/// A 2-D convolution: weight (out, in·k·k) in PyTorch's (out, in, kh, kw) order, bias, stride and the
/// padding on each side.
template <class S>
struct conv2d {
  matrix<S> weight;
  column<S> bias;
  int in = 0, out = 0, kernel = 3, stride = 1;
  int pad_top = 1, pad_left = 1, pad_bottom = 1, pad_right = 1;

  int out_height(int h) const { return (h + pad_top + pad_bottom - kernel) / stride + 1; }
  int out_width(int w) const { return (w + pad_left + pad_right - kernel) / stride + 1; }
  /// Scratch elements one task needs for its im2col block (0 for a 1×1, stride-1 convolution).
  std::size_t scratch_size() const {
    return direct() ? 0 : static_cast<std::size_t>(in) * kernel * kernel * column_block;
  }
  bool direct() const { return kernel == 1 && stride == 1 && pad_top == 0 && pad_left == 0; }
};

/// Group normalisation's affine parameters and geometry.
template <class S>
struct group_norm {
  column<S> weight, bias;
  int groups = 32;
  double eps = 1e-5;
  int channels() const { return static_cast<int>(weight.size()); }
};

namespace detail {

/// Copies the receptive fields of output pixels [p0, p0 + cols) into col (in·k·k rows, cols columns).
/// Walks output rows instead of dividing per element; the padded borders are zero runs and the inside
/// a (strided) copy.
template <class S>
void im2col(const conv2d<S>& c, const S* x, int h, int w, std::ptrdiff_t p0, std::ptrdiff_t cols, S* col) {
  const int wo = c.out_width(w), k = c.kernel, s = c.stride;
  for (int ci = 0; ci < c.in; ++ci) {
    const S* xc = x + static_cast<std::ptrdiff_t>(ci) * h * w;
    for (int ky = 0; ky < k; ++ky)
      for (int kx = 0; kx < k; ++kx) {
        S* row = col + ((static_cast<std::ptrdiff_t>(ci) * k + ky) * k + kx) * cols;
        std::ptrdiff_t j = 0;
        int oy = static_cast<int>(p0 / wo), ox = static_cast<int>(p0 % wo);
        while (j < cols) {
          const int run = static_cast<int>(std::min<std::ptrdiff_t>(wo - ox, cols - j));
          const int iy = oy * s - c.pad_top + ky;
          S* dst = row + j;
          if (iy < 0 || iy >= h) {
            std::fill(dst, dst + run, S(0));
          } else {
            // Input column of output column ox + r is base + r·s; [lo, hi) are the r inside the image.
            const int base = ox * s - c.pad_left + kx;
            const int lo = std::min(run, base < 0 ? (-base + s - 1) / s : 0);
            const int hi = std::max(lo, std::min(run, w - base > 0 ? (w - base + s - 1) / s : 0));
            std::fill(dst, dst + lo, S(0));
            const S* src = xc + static_cast<std::ptrdiff_t>(iy) * w + base;
            if (s == 1) std::copy(src + lo, src + hi, dst + lo);
            else
              for (int r = lo; r < hi; ++r) dst[r] = src[r * s];
            std::fill(dst + hi, dst + run, S(0));
          }
          j += run;
          ox = 0;
          ++oy;
        }
      }
  }
}

}  // namespace detail

/// y = conv(x) for a batch: x (n, in, h, w), y (n, out, h', w'). `scratch` holds one im2col block per
/// thread (max_threads() × c.scratch_size() elements). With `accumulate`, y += conv(x).
template <class S>
void conv2d_forward(const conv2d<S>& c, const S* x, int n, int h, int w, S* y, std::span<S> scratch, bool accumulate = false) {
  const int ho = c.out_height(h), wo = c.out_width(w);
  const std::ptrdiff_t pixels = static_cast<std::ptrdiff_t>(ho) * wo;
  const std::ptrdiff_t blocks = (pixels + column_block - 1) / column_block;
  const std::ptrdiff_t in_size = static_cast<std::ptrdiff_t>(c.in) * h * w, out_size = static_cast<std::ptrdiff_t>(c.out) * pixels;
  parallel_for(n * blocks, [&](std::ptrdiff_t task) {
    const std::ptrdiff_t item = task / blocks, p0 = (task % blocks) * column_block;
    const std::ptrdiff_t cols = std::min(column_block, pixels - p0);
    const S* xi = x + item * in_size;
    matrix_map<S> out(y + item * out_size + p0, c.out, cols, Eigen::OuterStride<>(pixels));
    if (c.direct()) {
      const_matrix_map<S> in(xi + p0, c.in, cols, Eigen::OuterStride<>(pixels));
      if (accumulate) out.noalias() += c.weight * in;
      else out.noalias() = c.weight * in;
    } else {
      S* col = scratch.data() + static_cast<std::size_t>(thread_index()) * c.scratch_size();
      detail::im2col(c, xi, h, w, p0, cols, col);
      const_matrix_map<S> in(col, c.weight.cols(), cols, Eigen::OuterStride<>(cols));
      if (accumulate) out.noalias() += c.weight * in;
      else out.noalias() = c.weight * in;
    }
    out.colwise() += c.bias;
  });
}

/// What group_norm_forward does after normalising (x + add).
template <class S>
struct norm_epilogue {
  const S* add = nullptr;    ///< per (item, channel), added before the statistics ("default" time conditioning)
  const S* scale = nullptr;  ///< per (item, channel): y ← y·(1 + scale) + shift ("scale_shift")
  const S* shift = nullptr;
  std::ptrdiff_t stride = 0;  ///< elements between items in add / scale / shift
  bool silu = false;          ///< apply SiLU last
};

/// y = GroupNorm(x + add)·γ + β, then the epilogue, for x (n, C, pixels). Statistics in double, two
/// passes (PyTorch's biased variance).
template <class S>
void group_norm_forward(const group_norm<S>& g, const S* x, int n, std::ptrdiff_t pixels, S* y, const norm_epilogue<S>& e = {}) {
  const int C = g.channels(), per = C / g.groups;
  parallel_for(static_cast<std::ptrdiff_t>(n) * g.groups, [&](std::ptrdiff_t task) {
    const std::ptrdiff_t item = task / g.groups, grp = task % g.groups;
    const std::ptrdiff_t base = (item * C + grp * per) * pixels;
    const S* add = e.add ? e.add + item * e.stride : nullptr;
    double sum = 0;
    for (int c = 0; c < per; ++c) {
      const double a = add ? static_cast<double>(add[grp * per + c]) : 0.0;
      const S* xc = x + base + c * pixels;
      for (std::ptrdiff_t p = 0; p < pixels; ++p) sum += static_cast<double>(add ? S(xc[p] + S(a)) : xc[p]);
    }
    const double count = static_cast<double>(per) * static_cast<double>(pixels);
    const double mean = sum / count;
    double sq = 0;
    for (int c = 0; c < per; ++c) {
      const S a = add ? add[grp * per + c] : S(0);
      const S* xc = x + base + c * pixels;
      for (std::ptrdiff_t p = 0; p < pixels; ++p) {
        const double d = static_cast<double>(add ? S(xc[p] + a) : xc[p]) - mean;
        sq += d * d;
      }
    }
    const double inv = 1.0 / std::sqrt(sq / count + g.eps);
    for (int c = 0; c < per; ++c) {
      const int ch = static_cast<int>(grp) * per + c;
      const S a = add ? add[ch] : S(0);
      // y = ((x + a) − mean)·inv·γ + β, folded into one multiply-add per element.
      S mul = static_cast<S>(inv * static_cast<double>(g.weight[ch]));
      S off = static_cast<S>(static_cast<double>(g.bias[ch]) - mean * inv * static_cast<double>(g.weight[ch]));
      if (e.scale) {
        const S s1 = S(1) + e.scale[item * e.stride + ch], sh = e.shift[item * e.stride + ch];
        mul *= s1;
        off = off * s1 + sh;
      }
      const S* xc = x + base + c * pixels;
      S* yc = y + base + c * pixels;
      if (e.silu) {
        for (std::ptrdiff_t p = 0; p < pixels; ++p) yc[p] = silu(S((xc[p] + a) * mul + off));
      } else {
        for (std::ptrdiff_t p = 0; p < pixels; ++p) yc[p] = (xc[p] + a) * mul + off;
      }
    }
  });
}

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

/// Nearest-neighbour 2× upsampling: (n·C, h, w) → (n·C, 2h, 2w).
template <class S>
void upsample_nearest2x(const S* x, std::ptrdiff_t planes, int h, int w, S* y) {
  parallel_for(planes, [&](std::ptrdiff_t pl) {
    const S* xp = x + pl * h * w;
    S* yp = y + pl * 4 * h * w;
    for (int i = 0; i < 2 * h; ++i)
      for (int j = 0; j < 2 * w; ++j) yp[static_cast<std::ptrdiff_t>(i) * 2 * w + j] = xp[static_cast<std::ptrdiff_t>(i / 2) * w + j / 2];
  });
}

/// Sinusoidal time embedding of width dim (diffusers' get_timestep_embedding with scale 1 and
/// max_period 10⁴): frequencies f_k = exp(−ln(10⁴)·k / (dim/2 − freq_shift)), [sin(t f), cos(t f)], the
/// halves swapped when flip_sin_to_cos, computed in S as PyTorch computes it in the model's dtype.
template <class S>
void timestep_embedding(std::span<const double> timesteps, int dim, bool flip_sin_to_cos, double freq_shift, S* out) {
  const int half = dim / 2;
  for (std::size_t i = 0; i < timesteps.size(); ++i) {
    S* row = out + i * static_cast<std::size_t>(dim);
    const S t = static_cast<S>(timesteps[i]);
    for (int k = 0; k < half; ++k) {
      const S exponent = static_cast<S>(-std::log(10000.0)) * static_cast<S>(k) / static_cast<S>(half - freq_shift);
      const S arg = t * std::exp(exponent);
      const S s = std::sin(arg), c = std::cos(arg);
      row[flip_sin_to_cos ? half + k : k] = s;
      row[flip_sin_to_cos ? k : half + k] = c;
    }
    if (dim % 2) row[dim - 1] = S(0);
  }
}

/// Multi-head self-attention over pixels as diffusers' Attention block does it: optional group norm,
/// q/k/v linear maps over channels, softmax(q kᵀ / √d) v per head, output map, residual, ÷ rescale.
template <class S>
struct attention {
  group_norm<S> norm;  ///< groups == 0: no normalisation
  bool has_norm = true;
  linear<S> to_q, to_k, to_v, to_out;
  int heads = 1, head_dim = 1;
  double rescale = 1;
  int channels() const { return to_q.in(); }
  int inner() const { return heads * head_dim; }
};

/// Scratch an attention forward needs beyond its input: normalised input (n·C·P), q/k/v and the heads'
/// output (n·4·inner·P), and one P×P score matrix per thread.
template <class S>
std::size_t attention_scratch(const attention<S>& a, int n, std::ptrdiff_t pixels) {
  return static_cast<std::size_t>(n) * pixels * (a.channels() + 4 * a.inner()) +
         static_cast<std::size_t>(max_threads()) * pixels * pixels;
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
  // q, k, v = W hn + b for each item and column block.
  parallel_for(n * blocks * 3, [&](std::ptrdiff_t task) {
    const std::ptrdiff_t which = task % 3, rest = task / 3, item = rest / blocks, p0 = (rest % blocks) * column_block;
    const std::ptrdiff_t cols = std::min(column_block, P - p0);
    const linear<S>& l = which == 0 ? a.to_q : which == 1 ? a.to_k : a.to_v;
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
    const_matrix_map<S> q(base, d, P, Eigen::OuterStride<>(P));
    const_matrix_map<S> k(base + inner * P, d, P, Eigen::OuterStride<>(P));
    const_matrix_map<S> v(base + 2 * inner * P, d, P, Eigen::OuterStride<>(P));
    matrix_map<S> o(base + 3 * inner * P, d, P, Eigen::OuterStride<>(P));
    matrix_map<S> w(scores + static_cast<std::ptrdiff_t>(thread_index()) * P * P, P, P, Eigen::OuterStride<>(P));
    w.noalias() = q.transpose() * k;
    for (std::ptrdiff_t r = 0; r < P; ++r) {
      S* row = w.data() + r * P;
      S mx = row[0] * scale;
      for (std::ptrdiff_t j = 0; j < P; ++j) mx = std::max(mx, row[j] * scale);
      double sum = 0;
      for (std::ptrdiff_t j = 0; j < P; ++j) {
        row[j] = std::exp(row[j] * scale - mx);
        sum += row[j];
      }
      const S inv = static_cast<S>(1.0 / sum);
      for (std::ptrdiff_t j = 0; j < P; ++j) row[j] *= inv;
    }
    o.noalias() = v * w.transpose();
  });
  // x = (W_out o + b + x) / rescale.
  const S inv_rescale = static_cast<S>(1.0 / a.rescale);
  parallel_for(n * blocks, [&](std::ptrdiff_t task) {
    const std::ptrdiff_t item = task / blocks, p0 = (task % blocks) * column_block;
    const std::ptrdiff_t cols = std::min(column_block, P - p0);
    const_matrix_map<S> o(qkvo + (item * 4 + 3) * inner * P + p0, inner, cols, Eigen::OuterStride<>(P));
    matrix_map<S> out(x + item * C * P + p0, C, cols, Eigen::OuterStride<>(P));
    // Residual first, then the product added on: the same sum as PyTorch's (proj + residual).
    out.noalias() += a.to_out.weight * o;
    out.colwise() += a.to_out.bias;
    if (a.rescale != 1) out *= inv_rescale;
  });
}

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
