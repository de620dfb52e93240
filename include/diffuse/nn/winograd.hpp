#pragma once
/// \file
/// Winograd convolution F(2×2, 3×3) and F(4×4, 3×3) for stride-1 "same" 3×3 convolutions, the
/// alternative to the direct kernel (direct_conv.hpp) in the convolution family.
///
/// Why: the direct kernel does 9 multiply-adds per input channel and output pixel and already runs near
/// the core's FMA rate, so past it only fewer multiply-adds help. Winograd's minimal filtering computes an
/// m×m output tile from an (m+2)×(m+2) input tile with (m+2)² multiply-adds per channel pair instead of
/// 9m²: 16 instead of 36 for m = 2 (2.25× fewer), 36 instead of 144 for m = 4 (4×). The price is rounding:
/// the transforms add and scale values of mixed sign, so the float result is a few times further from the
/// exact sum than the direct one (more so for m = 4), which is why the UNet picks the tile size per layer
/// (conv2d::select_algorithm) and the tests bound the error per tile size.
///
/// The three steps, per task (a batch item and a fixed group of tile rows):
///   1. input transform V_ξ[ci][tile] = (Bᵀ d B)_ξ, read straight from the zero-bordered layout the group
///      norm writes (bordered_layout.hpp) or from a plain NCHW input, vectorised across the tiles of a
///      row: each input row is first split into its m column phases so that tile t's column c is phase
///      c mod m at position t + c / m, a contiguous vector load;
///   2. for each of the (m+2)² points ξ, M_ξ = U_ξ · V_ξ (out × in times in × tiles): the direct
///      kernel's register tile (a 1×1 convolution over the tiles) on filters transformed once at load
///      (U = G g Gᵀ, computed in double);
///   3. output transform Y = Aᵀ M A plus bias (plus y with `accumulate`, where the direct path adds
///      the residual), again across the tiles of a row, then interleaved back into image rows.
///
/// Every output element is the same sum in the same order whatever the thread count or batch split: the
/// tasks depend on the shape only.

#include <algorithm>
#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "diffuse/detail/fma.hpp"
#include "diffuse/error.hpp"
#include "diffuse/nn/direct_conv.hpp"
#include "diffuse/nn/parallel.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {

/// How a convolution computes its sums: chosen per layer at load time (conv2d::select_algorithm).
enum class conv_algorithm {
  automatic,  ///< per layer: Winograd where its tile size keeps the float UNet within its parity bound, else direct
  direct,     ///< the direct kernel (or im2col + GEMM): the only algorithm for strided or non-3×3 convolutions
  winograd2,  ///< Winograd F(2×2, 3×3): 2.25× fewer multiply-adds, about twice the direct rounding error
  winograd4,  ///< Winograd F(4×4, 3×3): 4× fewer multiply-adds, about ten times the direct rounding error
};

/// The option's name as the documentation and the error messages spell it.
inline const char* conv_algorithm_name(conv_algorithm a) noexcept {
  switch (a) {
    case conv_algorithm::automatic: return "automatic";
    case conv_algorithm::direct: return "direct";
    case conv_algorithm::winograd2: return "winograd2";
    case conv_algorithm::winograd4: return "winograd4";
  }
  return "?";
}

/// The transform matrices of F(m×m, 3×3) (Lavin and Gray's interpolation points 0, ±1, ±2, ∞), in the
/// correlation form PyTorch's convolution computes: Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A.
template <int M>
struct winograd_matrices;

/// F(2×2, 3×3): points 0, ±1, ∞.
template <>
struct winograd_matrices<2> {
  static constexpr int alpha = 4;  ///< input tile side m + 2
  /// Bᵀ (alpha × alpha)
  static constexpr double bt[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  /// G (alpha × 3)
  static constexpr double g[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  /// Aᵀ (m × alpha)
  static constexpr double at[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
};

/// F(4×4, 3×3): points 0, ±1, ±2, ∞.
template <>
struct winograd_matrices<4> {
  static constexpr int alpha = 6;  ///< input tile side m + 2
  /// Bᵀ (alpha × alpha)
  static constexpr double bt[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                      {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  /// G (alpha × 3)
  static constexpr double g[6][3] = {{1.0 / 4, 0, 0},
                                     {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                     {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                     {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                     {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                     {0, 0, 1}};
  /// Aᵀ (m × alpha)
  static constexpr double at[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
};

/// A 3×3 convolution's filters in the Winograd domain, packed for the direct kernel's register tile:
/// per point ξ of the alpha × alpha tile, blocks of `rows` output channels each (in, rows), as
/// packed_conv_weights lays out a 1×1 convolution. Output channels past `out` are zero.
template <class S>
struct winograd_filters {
  static constexpr int rows = packed_conv_weights<S>::rows;  ///< output channels per block
  int tile = 0;        ///< output tile side m (2 or 4); 0 when not transformed
  int in = 0;          ///< input channels
  int out = 0;         ///< output channels
  int blocks = 0;      ///< ⌈out / rows⌉
  std::vector<S> values;  ///< alpha² × blocks × in × rows
  bool empty() const noexcept { return values.empty(); }  ///< not transformed
  /// Input tile side m + 2.
  int alpha() const noexcept { return tile + 2; }
};

namespace detail {

/// U_ξ = (G g Gᵀ)_ξ for every (out, in) pair of a (out, in·9) weight matrix, in double.
template <int M, class S, class Weight>
winograd_filters<S> winograd_transform(const Weight& weight, int in, int out) {
  using T = winograd_matrices<M>;
  constexpr int A = T::alpha, R = winograd_filters<S>::rows;
  winograd_filters<S> f;
  f.tile = M;
  f.in = in;
  f.out = out;
  f.blocks = (out + R - 1) / R;
  f.values.assign(static_cast<std::size_t>(A) * A * f.blocks * in * R, S(0));
  for (int o = 0; o < out; ++o)
    for (int c = 0; c < in; ++c) {
      double gg[3][3], t[A][3];
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) gg[i][j] = static_cast<double>(weight(o, (c * 3 + i) * 3 + j));
      for (int i = 0; i < A; ++i)
        for (int j = 0; j < 3; ++j) t[i][j] = T::g[i][0] * gg[0][j] + T::g[i][1] * gg[1][j] + T::g[i][2] * gg[2][j];
      for (int i = 0; i < A; ++i)
        for (int j = 0; j < A; ++j) {
          const double u = t[i][0] * T::g[j][0] + t[i][1] * T::g[j][1] + t[i][2] * T::g[j][2];
          const std::size_t xi = static_cast<std::size_t>(i) * A + j;
          f.values[((xi * f.blocks + o / R) * in + c) * R + o % R] = static_cast<S>(u);
        }
    }
  return f;
}

/// One term of a transform row: s (+)= C·x, where the coefficient C = Coef[r][k] is a compile-time
/// constant, so that zeros vanish and ±1 cost no multiply.
template <const auto& Coef, int r, int k, class B>
inline void winograd_term(B& s, bool& started, const B& x) noexcept {
  constexpr double c = Coef[r][k];
  if constexpr (c != 0) {
    using value = typename B::value_type;
    if (!started) {
      if constexpr (c == 1) s = x;
      else if constexpr (c == -1) s = -x;
      else s = x * B(static_cast<value>(c));
    } else {
      if constexpr (c == 1) s += x;
      else if constexpr (c == -1) s -= x;
      else s = diffuse::detail::fused_multiply_add(B(static_cast<value>(c)), x, s);
    }
    started = true;
  }
}

/// y[r·YR + c·YC] = Σ_k Coef[r][k]·x[k·XK + c·XC] for r < Rows, c < Cols, k < Inner: one side of a
/// transform on SIMD vectors (each vector holds one value of consecutive tiles).
template <const auto& Coef, int Rows, int Inner, int Cols, int XK, int XC, int YR, int YC, class B>
inline void winograd_apply(const B* x, B* y) noexcept {
  [&]<int... R>(std::integer_sequence<int, R...>) {
    (
        [&]<int r>(std::integral_constant<int, r>) {
          for (int c = 0; c < Cols; ++c) {
            B s(0);
            bool started = false;
            [&]<int... K>(std::integer_sequence<int, K...>) {
              (winograd_term<Coef, r, K>(s, started, x[K * XK + c * XC]), ...);
            }(std::make_integer_sequence<int, Inner>{});
            y[r * YR + c * YC] = s;
          }
        }(std::integral_constant<int, R>{}),
        ...);
  }(std::make_integer_sequence<int, Rows>{});
}

}  // namespace detail

/// Where a Winograd convolution reads its input: for item i, channel c, input row r < h and column
/// j < w the element base[i·item + c·plane + origin + r·row + j]; everything outside the image is zero.
/// Covers a plain NCHW input and both forms of bordered_layout.
template <class S>
struct winograd_input {
  const S* base = nullptr;     ///< the input
  std::ptrdiff_t item = 0;     ///< elements between batch items
  std::ptrdiff_t plane = 0;    ///< elements between channels
  std::ptrdiff_t row = 0;      ///< elements between rows
  std::ptrdiff_t origin = 0;   ///< offset of row 0, column 0 in a channel plane
};

/// The shape of a Winograd convolution's tasks at h×w: tiles, tile rows per task and the scratch one task
/// uses, all depending on the shape only (never on the thread count).
template <class S>
struct winograd_plan {
  int tile = 0;                 ///< m
  int alpha = 0;                ///< m + 2
  int tiles_h = 0;              ///< ⌈h / m⌉
  int tiles_w = 0;              ///< ⌈w / m⌉
  int rows = 0;                 ///< tile rows of the whole batch: n·tiles_h
  int group = 0;                ///< tile rows per task (consecutive, possibly across batch items)
  int groups = 0;               ///< tasks
  std::ptrdiff_t stride = 0;    ///< elements between (point, channel) rows of tiles in the scratch
  std::ptrdiff_t phase = 0;     ///< elements per column phase of one row
  std::ptrdiff_t per_task = 0;  ///< scratch elements per task (per thread)

  /// The plan for a convolution in → out channels with m×m output tiles on a batch of n at h×w. A task
  /// takes consecutive tile rows of the batch, so small images fill the vectors with several items' tiles;
  /// every tile's sums are the same whichever task it falls in.
  winograd_plan(int m, int in, int out, int n, int h, int w) {
    const std::ptrdiff_t L = simd_lanes<S>;
    tile = m;
    alpha = m + 2;
    tiles_h = (h + m - 1) / m;
    tiles_w = (w + m - 1) / m;
    rows = n * tiles_h;
    // About 64 Ki elements of transformed tiles per task (L2-sized), but at least a full register tile's
    // worth of tile columns for the products and at most four.
    const std::ptrdiff_t per_tile = static_cast<std::ptrdiff_t>(alpha) * alpha * (in + out);
    const std::ptrdiff_t target = std::clamp<std::ptrdiff_t>((std::ptrdiff_t{1} << 16) / std::max<std::ptrdiff_t>(per_tile, 1), min_tiles(), max_tiles());
    group = static_cast<int>(std::clamp<std::ptrdiff_t>(target / tiles_w, 1, rows));
    groups = (rows + group - 1) / group;
    group = (rows + groups - 1) / groups;  // near-equal groups: no thin last task of narrow register tiles
    const std::ptrdiff_t tiles = static_cast<std::ptrdiff_t>(group) * tiles_w;
    stride = (tiles + L - 1) / L * L + L;  // whole vectors, plus the overhang of a row's last vector store
    phase = (tiles_w + L - 1) / L * L + L;
    per_task = scratch(m, in, out, stride, phase);
  }

  /// Elements between the points ξ of V (channels = in) or M (channels = out): one vector more than the
  /// channels' tiles, so that the alpha² values of one tile the transforms load or store together fall
  /// in different cache sets instead of a power-of-two stride apart.
  std::ptrdiff_t point_stride(int channels) const { return static_cast<std::ptrdiff_t>(channels) * stride + simd_lanes<S>; }

  /// Fewest tiles a task aims for: one register tile's width of columns (twice that measured slower at
  /// 128 and 256 channels: the transformed tiles then spill from L2).
  static std::ptrdiff_t min_tiles() { return simd_lanes<S> * direct_tile<S>::vectors; }
  /// Most tiles a task aims for (small channel counts).
  static std::ptrdiff_t max_tiles() { return 4 * min_tiles(); }

  /// Scratch elements per thread that suffice for every image of at most w columns (any height): a
  /// caller sizing for its largest image can run the same convolution at smaller ones.
  static std::ptrdiff_t scratch_bound(int m, int in, int out, int w) {
    const std::ptrdiff_t L = simd_lanes<S>, tw = (w + m - 1) / m;
    const std::ptrdiff_t tiles = std::max<std::ptrdiff_t>(max_tiles(), tw);
    return scratch(m, in, out, (tiles + L - 1) / L * L + L, (tw + L - 1) / L * L + L);
  }

 private:
  static std::ptrdiff_t scratch(int m, int in, int out, std::ptrdiff_t stride, std::ptrdiff_t phase) {
    const std::ptrdiff_t alpha = m + 2;
    return alpha * alpha * ((in + out) * stride + 2 * simd_lanes<S>)  // V and M
           + alpha * m * phase                  // input row phases
           + static_cast<std::ptrdiff_t>(m) * m * phase  // output row phases
           + static_cast<std::ptrdiff_t>(detail::alignment_slack<S>);
  }
};

namespace detail {

/// Input channels per chunk of the Winograd products: 64 rows of up to 3 vectors of tiles, 12 KiB of V.
inline constexpr int winograd_channel_chunk = 64;

/// The Winograd convolution with m = M (see the file comment): y (n, out, h, w) = conv(x) + bias, or
/// y += that with `accumulate`. `scratch` holds winograd_plan::per_task elements per thread.
template <class S, int M>
void winograd_conv(const winograd_filters<S>& f, const S* bias, const winograd_input<S>& x, int n, int h, int w, S* y,
                   std::span<S> scratch, bool accumulate) {
  using batch = xsimd::batch<S>;
  using T = winograd_matrices<M>;
  constexpr int A = T::alpha, AA = A * A, R = winograd_filters<S>::rows;
  constexpr int L = simd_lanes<S>;
  const int in = f.in, out = f.out;
  const winograd_plan<S> plan(M, in, out, n, h, w);
  const int tw = plan.tiles_w;
  const std::ptrdiff_t P = static_cast<std::ptrdiff_t>(h) * w, stride = plan.stride, phase = plan.phase;
  if (scratch.size() < static_cast<std::size_t>(plan.per_task) * static_cast<std::size_t>(max_threads()))
    diffuse::detail::fail(error_kind::argument, "winograd convolution: scratch of ", scratch.size(), " elements; expected ",
                          plan.per_task * max_threads());
  alignas(64) static constexpr S zero_bias[R] = {};
  const int th = plan.tiles_h;
  parallel_for(plan.groups, [&](std::ptrdiff_t task) {
    const int g0 = static_cast<int>(task) * plan.group;  // first tile row of the batch
    const int rows_here = std::min(plan.group, plan.rows - g0);
    const std::ptrdiff_t tiles = static_cast<std::ptrdiff_t>(rows_here) * tw;
    S* base = aligned_scratch(scratch.subspan(static_cast<std::size_t>(thread_index()) * plan.per_task, plan.per_task));
    const std::ptrdiff_t vxi = plan.point_stride(in), mxi = plan.point_stride(out);
    S* V = base;                // AA points × in × stride
    S* Mb = V + AA * vxi;       // AA points × out × stride
    S* ph = Mb + AA * mxi;      // A rows × M phases × phase
    S* oph = ph + static_cast<std::ptrdiff_t>(A) * M * phase;     // M rows × M phases × phase

    // 1. Input transform, tile row by tile row: the A input rows of a tile row split into column phases
    // (bordered column b = t·M + p at phase p, position t), then Bᵀ d B across the tiles of the row.
    for (int ci = 0; ci < in; ++ci) {
      for (int lr = 0; lr < rows_here; ++lr) {
        const int item = (g0 + lr) / th, ty = (g0 + lr) % th;
        const S* xc = x.base + static_cast<std::ptrdiff_t>(item) * x.item + x.origin + static_cast<std::ptrdiff_t>(ci) * x.plane;
        for (int k = 0; k < A; ++k) {
          const int r = ty * M - 1 + k;
          S* pk = ph + static_cast<std::ptrdiff_t>(k) * M * phase;
          if (r < 0 || r >= h) {
            std::fill(pk, pk + M * phase, S(0));
            continue;
          }
          const S* src = xc + static_cast<std::ptrdiff_t>(r) * x.row;
          for (int p = 0; p < M; ++p) {
            // Positions t whose input column t·M + p − 1 is inside the image: [lo, hi); zeros around.
            S* dst = pk + static_cast<std::ptrdiff_t>(p) * phase;
            const std::ptrdiff_t lo = p == 0 ? 1 : 0, hi = std::max(lo, p <= w ? std::min<std::ptrdiff_t>(phase, (w - p) / M + 1) : 0);
            for (std::ptrdiff_t t = 0; t < lo; ++t) dst[t] = S(0);
            const S* s = src + p - 1;
            for (std::ptrdiff_t t = lo; t < hi; ++t) dst[t] = s[t * M];
            for (std::ptrdiff_t t = hi; t < phase; ++t) dst[t] = S(0);
          }
        }
        for (int t0 = 0; t0 < tw; t0 += L) {
          batch d[AA], e[AA];
          for (int k = 0; k < A; ++k)
            for (int c = 0; c < A; ++c)
              d[k * A + c] = batch::load_unaligned(ph + (static_cast<std::ptrdiff_t>(k) * M + c % M) * phase + t0 + c / M);
          winograd_apply<T::bt, A, A, A, A, 1, A, 1>(d, e);  // e = Bᵀ d
          winograd_apply<T::bt, A, A, A, 1, A, 1, A>(e, d);  // d = e B
          S* dst = V + static_cast<std::ptrdiff_t>(ci) * stride + static_cast<std::ptrdiff_t>(lr) * tw + t0;
          for (int xi_ = 0; xi_ < AA; ++xi_) d[xi_].store_unaligned(dst + xi_ * vxi);
        }
      }
    }

    // 2. Per point ξ, M_ξ = U_ξ V_ξ on the direct kernel's register tiles (a 1×1 convolution over tiles),
    // in chunks of input channels whose rows of V stay in L1 while every block of output channels reads
    // them (unchunked, each V line came from L2 once per block: a third of the products' time at 256
    // channels). Chunks after the first add onto M, so the sums keep their channel order.
    const plane_tiles<S> cuts((tiles + L - 1) / L);
    for (int xi_ = 0; xi_ < AA; ++xi_) {
      const S* vx = V + xi_ * vxi;
      for (int c0 = 0; c0 < in; c0 += winograd_channel_chunk) {
        const int kc = std::min(winograd_channel_chunk, in - c0);
        for (int b = 0; b < f.blocks; ++b) {
          const S* wb = f.values.data() + ((static_cast<std::ptrdiff_t>(xi_) * f.blocks + b) * in + c0) * R;
          S* mb = Mb + xi_ * mxi + static_cast<std::ptrdiff_t>(b) * R * stride;
          const int valid = std::min(R, out - b * R);
          for (std::ptrdiff_t t = 0; t < cuts.count; ++t) {
            const auto [v0, nv] = cuts[t];
            std::ptrdiff_t off[direct_tile<S>::vectors];
            for (int v = 0; v < nv; ++v) off[v] = (v0 + v) * L;
            direct_conv_tile_of<S, 1>(nv, vx + c0 * stride, kc, stride, 0, 0, wb, zero_bias, valid, off, off, mb, stride, c0 > 0);
          }
        }
      }
    }

    // 3. Output transform Aᵀ M A + bias across the tiles of a row, then the phases back into image rows.
    for (int co = 0; co < out; ++co) {
      const batch bco(bias[co]);
      for (int lr = 0; lr < rows_here; ++lr) {
        const int item = (g0 + lr) / th, ty = (g0 + lr) % th;
        S* yc = y + (static_cast<std::ptrdiff_t>(item) * out + co) * P;
        for (int t0 = 0; t0 < tw; t0 += L) {
          batch m[AA], e[M * A], o[M * M];
          const S* src = Mb + static_cast<std::ptrdiff_t>(co) * stride + static_cast<std::ptrdiff_t>(lr) * tw + t0;
          for (int xi_ = 0; xi_ < AA; ++xi_) m[xi_] = batch::load_unaligned(src + xi_ * mxi);
          winograd_apply<T::at, M, A, A, A, 1, A, 1>(m, e);  // e = Aᵀ m   (M × A)
          winograd_apply<T::at, M, A, M, 1, A, 1, M>(e, o);  // o = e A    (M × M)
          for (int a = 0; a < M; ++a)
            for (int c = 0; c < M; ++c) (o[a * M + c] + bco).store_unaligned(oph + (static_cast<std::ptrdiff_t>(a) * M + c) * phase + t0);
        }
        for (int a = 0; a < M; ++a) {
          const int r = ty * M + a;
          if (r >= h) break;
          S* dst = yc + static_cast<std::ptrdiff_t>(r) * w;
          const S* op = oph + static_cast<std::ptrdiff_t>(a) * M * phase;
          if (accumulate)
            for (int j = 0; j < w; ++j) dst[j] += op[(j % M) * phase + j / M];
          else
            for (int j = 0; j < w; ++j) dst[j] = op[(j % M) * phase + j / M];
        }
      }
    }
  });
}

}  // namespace detail

/// y = conv(x) + bias (or y += that with `accumulate`) by Winograd F(m×m, 3×3), m = f.tile, for a
/// stride-1 "same" 3×3 convolution: x as `x` describes it (n items, f.in channels, h×w), y (n, f.out, h,
/// w) contiguous, `scratch` winograd_plan(f.tile, f.in, f.out, h, w).per_task elements per thread.
template <class S>
void winograd_forward(const winograd_filters<S>& f, const S* bias, const winograd_input<S>& x, int n, int h, int w, S* y,
                      std::span<S> scratch, bool accumulate = false) {
  if (f.tile == 2) detail::winograd_conv<S, 2>(f, bias, x, n, h, w, y, scratch, accumulate);
  else if (f.tile == 4) detail::winograd_conv<S, 4>(f, bias, x, n, h, w, y, scratch, accumulate);
  else diffuse::detail::fail(error_kind::argument, "winograd_forward: filters are not transformed; expected tile size 2 or 4");
}

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
