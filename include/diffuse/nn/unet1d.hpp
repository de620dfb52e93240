#pragma once
/// \file
/// The 1-D temporal UNet of diffusion policies: Diffusion Policy's ConditionalUnet1D (Chi et al. 2023),
/// which LeRobot ships as DiffusionConditionalUnet1d, on (batch, horizon, action_dim) samples, loaded from
/// a converted Diffusion Policy checkpoint (tools/convert_diffusion_policy.py) or a LeRobot policy folder.
///
/// The network, as the reference computes it:
/// - step embedding: sinusoidal (nn/embeddings.hpp, sines first), Linear(d, 4d), Mish, Linear(4d, d);
///   the FiLM conditioning vector is [embedding, global_cond];
/// - down level i (channels down_dims[i]): two conditional residual blocks
///   (nn/conditional_residual_block.hpp), the output kept as a skip, then Conv1d(3, stride 2, pad 1)
///   except at the last level;
/// - two mid residual blocks; up level j: concatenation with a skip, two residual blocks,
///   ConvTranspose1d(4, stride 2, pad 1) (nn/conv1d.hpp) after every up level;
/// - head: a Conv1d block (with 8 groups whatever n_groups is) and a 1×1 convolution.
///
/// Reference behaviours kept for checkpoint compatibility, each documented where it acts:
/// - the finest level's skip is never consumed: there is one up level fewer than down levels, and the
///   up levels pop the skips from the coarsest;
/// - **local conditioning quirk**: with local_cond the reference builds two encoder blocks over it but adds
///   only the first one's output (after the first residual block of level 0). The second one's output is
///   meant for the last up level, yet the condition that would add it (`idx == len(up_modules)`) is never
///   true, and upstream leaves it so, since fixing it would change what published checkpoints compute.
///   diffuse loads and checks that block's weights and does not evaluate it: the output is the same;
/// - the output head's group norm uses 8 groups, Conv1dBlock's default, not n_groups.
///
/// Example:
/// \code
/// auto net = diffuse::nn::unet1d<float>::load("policies/pusht");   // LeRobot or converted folder
/// std::vector<float> obs_features(batch * net.config().global_cond_dim);
/// auto model = net.conditioned(horizon, obs_features);             // a Denoiser for sample()
/// diffuse::sample(sampler, model, actions, shape);
/// \endcode

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "diffuse/error.hpp"
#include "diffuse/io/lerobot_policy.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/model.hpp"
#include "diffuse/nn/activations.hpp"
#include "diffuse/nn/conditional_residual_block.hpp"
#include "diffuse/nn/conv1d.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/embeddings.hpp"
#include "diffuse/nn/group_norm.hpp"
#include "diffuse/nn/linear.hpp"
#include "diffuse/nn/parallel.hpp"
#include "diffuse/nn/unet.hpp"
#include "diffuse/nn/unet1d_config.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {

namespace detail {

/// While alive (and `active`), parallel regions opened by this thread have one thread; restores the
/// previous team size on destruction, exceptions included.
class one_thread_scope {
 public:
  explicit one_thread_scope(bool active) noexcept {
#if defined(_OPENMP)
    if (active) {
      previous_ = omp_get_max_threads();
      omp_set_num_threads(1);
    }
#else
    (void)active;
#endif
  }
  ~one_thread_scope() {
#if defined(_OPENMP)
    if (previous_ > 0) omp_set_num_threads(previous_);
#endif
  }
  one_thread_scope(const one_thread_scope&) = delete;
  one_thread_scope& operator=(const one_thread_scope&) = delete;

#if defined(_OPENMP)
 private:
  int previous_ = 0;
#endif
};

}  // namespace detail

template <Real S>
class unet1d;

/// A unet1d bound to a horizon and to its conditioning: the Denoiser the samplers call as
/// model(x_t, t, out), x_t and out (batch, horizon, input_dim) with the batch taken from x_t's size.
template <Real S>
class conditioned_unet1d {
 public:
  /// Binds `net` (kept by reference) to `horizon` and the conditioning spans (kept by reference).
  conditioned_unet1d(unet1d<S>& net, int horizon, std::span<const S> global_cond, std::span<const S> local_cond)
      : net_(&net), horizon_(horizon), global_(global_cond), local_(local_cond) {}
  /// out = UNet(x_t, t, global_cond, local_cond).
  void operator()(std::span<const S> x_t, int t, std::span<S> out) const;

 private:
  unet1d<S>* net_;
  int horizon_;
  std::span<const S> global_, local_;
};

/// Diffusion Policy's ConditionalUnet1D for inference.
template <Real S>
class unet1d {
 public:
  /// Loads a policy denoiser from a folder: a LeRobot policy folder (config.json with "type":
  /// "diffusion", model.safetensors; see io/lerobot_policy.hpp), or a converted Diffusion Policy
  /// checkpoint (config.json of ConditionalUnet1D options and model.safetensors).
  /// \throws diffuse::error (io) when files are missing or unreadable; (model) when the config or the
  ///         tensors are not what the network expects.
  static unet1d load(const std::filesystem::path& folder);

  /// Builds the network for `config` with the weights in `weights`, named as config.naming says under
  /// config.weight_prefix. Every tensor under the prefix must belong to the network; tensors outside it
  /// are left alone (a LeRobot file also holds the observation encoders).
  unet1d(unet1d_config config, const safetensors_file& weights) : cfg_(std::move(config)) {
    cfg_.validate();
    detail::weight_reader r(weights);
    build(r, &weights);
  }

  /// Builds the network for `config` with random parameters drawn from `seed` (benchmarks, tests).
  static unet1d random(unet1d_config config, std::uint64_t seed) {
    config.validate();
    detail::weight_reader r(seed);
    unet1d net(std::move(config));
    net.build(r, nullptr);
    return net;
  }

  /// The architecture.
  const unet1d_config& config() const noexcept { return cfg_; }
  /// Number of parameters read (the unused local-conditioning encoder block included).
  std::size_t parameter_count() const noexcept { return parameters_; }

  /// out = UNet(x, t, global_cond, local_cond) for x and out (n, horizon, input_dim), contiguous
  /// row-major as the reference takes them. `timesteps` holds one value for the batch or one per item;
  /// `global_cond` n × global_cond_dim values (none when the model has no global conditioning);
  /// `local_cond` (n, horizon, local_cond_dim) (none without local conditioning).
  /// \throws diffuse::error (shape) for a horizon that is not a multiple of the downsampling factor or
  ///         spans of the wrong sizes.
  void forward(std::span<const S> x, int n, int horizon, std::span<const double> timesteps, std::span<const S> global_cond,
               std::span<const S> local_cond, std::span<S> out) {
    forward_traced(x, n, horizon, timesteps, global_cond, local_cond, out, [](const char*, int, const S*, int, int, std::ptrdiff_t) {});
  }

  /// forward(), calling trace(module, index, data, channels, length, item_stride) after every module with
  /// its output: item i's (channels, length) values start at data + i·item_stride. The modules are named
  /// as the reference names them ("diffusion_step_encoder", "local_cond_encoder", "down_modules",
  /// "mid_modules", "up_modules", "final_conv"), `index` being the rest of the name as a number
  /// (10·level + position for down_modules and up_modules: 12 is "1.2"; −1 when there is none). For
  /// layer-by-layer parity tests.
  template <class Trace>
  void forward_traced(std::span<const S> x, int n, int horizon, std::span<const double> timesteps, std::span<const S> global_cond,
                      std::span<const S> local_cond, std::span<S> out, Trace&& trace) {
    check_inputs(x, n, horizon, timesteps, global_cond, local_cond, out);
    prepare(n, horizon);
    const detail::one_thread_scope serial(multiply_adds(n, horizon) < serial_below_);
    run(x.data(), n, horizon, timesteps, global_cond.data(), local_cond.data(), out.data(), trace);
  }

  /// Multiply-adds of a forward of n items at `horizon` (convolutions and linear maps).
  double multiply_adds(int n, int horizon) const {
    double macs = 0;
    for_each_conv([&](const conv1d<S>& c) { macs += static_cast<double>(c.out) * c.in * c.kernel * c.out_length(horizon); });
    return macs * n;
  }

  /// Forwards of fewer multiply-adds than this run on the calling thread alone (default 2·10⁶, about a
  /// millisecond): such a forward opens a hundred or more parallel regions of a few microseconds of work
  /// each, and on a busy machine every region's barrier can wait milliseconds for a descheduled thread.
  /// The result is the same bits either way (parallel.hpp); 0 always uses the whole team.
  void set_serial_threshold(double multiply_adds) noexcept { serial_below_ = multiply_adds; }

  /// A Denoiser for sample(): this network at `horizon`, conditioned on `global_cond` (batch ×
  /// global_cond_dim) and `local_cond`, which must outlive it. The batch is x_t's size / (horizon ·
  /// input_dim).
  conditioned_unet1d<S> conditioned(int horizon, std::span<const S> global_cond = {}, std::span<const S> local_cond = {}) {
    return conditioned_unet1d<S>(*this, horizon, global_cond, local_cond);
  }

 private:
  struct down_level {
    conditional_residual_block<S> res1, res2;
    std::optional<conv1d<S>> downsample;
  };
  struct up_level {
    conditional_residual_block<S> res1, res2;
    conv1d<S> upsample;
  };

  unet1d_config cfg_;
  std::size_t parameters_ = 0;
  double serial_below_ = 2e6;
  linear<S> step_1_, step_2_;
  std::optional<conditional_residual_block<S>> local_down_, local_up_;
  std::vector<down_level> down_;
  conditional_residual_block<S> mid_1_, mid_2_;
  std::vector<up_level> up_;
  conv1d_block<S> head_block_;
  conv2d<S> head_out_;

  // Workspace, sized by prepare() and reused.
  int planned_n_ = 0, planned_horizon_ = 0, planned_threads_ = 0;
  std::vector<S> emb_, hid_, gf_, gfm_, xin_, lc_, local_out_, a_, b_, cat_, conv_, hidden_, proj_, head_, y_, col_;
  std::vector<std::vector<S>> skips_;

  // ---- loading ----------------------------------------------------------------------------

  explicit unet1d(unet1d_config config) : cfg_(std::move(config)) {}

  struct reader {
    detail::weight_reader& r;
    std::string prefix;
    std::set<std::string> read;

    template <class T>
    void values(const std::string& name, std::vector<std::int64_t> shape, T* dst) {
      read.insert(prefix + name);
      r.read(prefix + name, std::move(shape), dst);
    }
    linear<S> lin(const std::string& p, int in, int out) {
      read.insert(prefix + p + ".weight");
      read.insert(prefix + p + ".bias");
      return r.read_linear<S>(prefix + p, in, out);
    }
    group_norm<S> norm(const std::string& p, int channels, int groups) {
      read.insert(prefix + p + ".weight");
      read.insert(prefix + p + ".bias");
      return r.read_norm<S>(prefix + p, channels, groups, 1e-5);
    }
    conv1d<S> conv(const std::string& p, int in, int out, int k, int stride, int pad) {
      r.expect(prefix + p + ".weight", {out, in, k});
      r.expect(prefix + p + ".bias", {out});
      conv1d<S> c;
      c.in = in;
      c.out = out;
      c.kernel = k;
      c.stride = stride;
      c.pad = pad;
      c.weight.resize(out, static_cast<Eigen::Index>(in) * k);
      c.bias.resize(out);
      values(p + ".weight", {out, in, k}, c.weight.data());
      values(p + ".bias", {out}, c.bias.data());
      return c;
    }
    conv1d<S> conv_transpose(const std::string& p, int channels, int k, int stride, int pad) {
      r.expect(prefix + p + ".weight", {channels, channels, k});
      r.expect(prefix + p + ".bias", {channels});
      std::vector<S> w(static_cast<std::size_t>(channels) * channels * k), b(static_cast<std::size_t>(channels));
      values(p + ".weight", {channels, channels, k}, w.data());
      values(p + ".bias", {channels}, b.data());
      return transposed_conv1d(w.data(), b.data(), channels, channels, k, stride, pad);
    }
    conv2d<S> pointwise(const std::string& p, int in, int out) {
      r.expect(prefix + p + ".weight", {out, in, 1});
      r.expect(prefix + p + ".bias", {out});
      conv2d<S> c;
      c.in = in;
      c.out = out;
      c.kernel = 1;
      c.pad_top = c.pad_left = c.pad_bottom = c.pad_right = 0;
      c.weight.resize(out, in);
      c.bias.resize(out);
      values(p + ".weight", {out, in, 1}, c.weight.data());
      values(p + ".bias", {out}, c.bias.data());
      return c;
    }
  };

  conv1d_block<S> read_block(reader& r, const std::string& p, int in, int out, int groups) {
    const int k = cfg_.kernel_size;
    conv1d_block<S> b;
    b.conv = r.conv(p + ".block.0", in, out, k, 1, k / 2);
    b.norm = r.norm(p + ".block.1", out, groups);
    return b;
  }

  conditional_residual_block<S> read_residual(reader& r, const std::string& p, int in, int out) {
    const bool lerobot = cfg_.naming == unet1d_naming::lerobot;
    conditional_residual_block<S> b;
    b.in = in;
    b.out = out;
    b.predict_scale = cfg_.cond_predict_scale;
    b.block1 = read_block(r, p + (lerobot ? ".conv1" : ".blocks.0"), in, out, cfg_.n_groups);
    b.cond = r.lin(p + ".cond_encoder.1", cfg_.cond_dim(), b.predict_scale ? 2 * out : out);
    b.block2 = read_block(r, p + (lerobot ? ".conv2" : ".blocks.1"), out, out, cfg_.n_groups);
    if (in != out) b.residual = r.pointwise(p + ".residual_conv", in, out);
    return b;
  }

  void build(detail::weight_reader& weights, const safetensors_file* file) {
    reader r{weights, cfg_.weight_prefix, {}};
    const auto& d = cfg_.down_dims;
    const int L = cfg_.levels(), E = cfg_.diffusion_step_embed_dim;
    const bool lerobot = cfg_.naming == unet1d_naming::lerobot;
    const std::string resample = lerobot ? "" : ".conv";
    step_1_ = r.lin("diffusion_step_encoder.1", E, 4 * E);
    step_2_ = r.lin("diffusion_step_encoder.3", 4 * E, E);
    if (cfg_.local_cond_dim > 0) {
      local_down_ = read_residual(r, "local_cond_encoder.0", cfg_.local_cond_dim, d[0]);
      local_up_ = read_residual(r, "local_cond_encoder.1", cfg_.local_cond_dim, d[0]);
    }
    int in = cfg_.input_dim;
    for (int i = 0; i < L; ++i) {
      const std::string p = "down_modules." + std::to_string(i);
      down_level lv{read_residual(r, p + ".0", in, d[i]), read_residual(r, p + ".1", d[i], d[i]), std::nullopt};
      if (i + 1 < L) lv.downsample = r.conv(p + ".2" + resample, d[i], d[i], 3, 2, 1);
      down_.push_back(std::move(lv));
      in = d[i];
    }
    mid_1_ = read_residual(r, "mid_modules.0", d.back(), d.back());
    mid_2_ = read_residual(r, "mid_modules.1", d.back(), d.back());
    for (int j = 0; j + 1 < L; ++j) {
      const int dim_out = d[L - 1 - j], dim_in = d[L - 2 - j];
      const std::string p = "up_modules." + std::to_string(j);
      up_level lv{read_residual(r, p + ".0", 2 * dim_out, dim_in), read_residual(r, p + ".1", dim_in, dim_in),
                  r.conv_transpose(p + ".2" + resample, dim_in, 4, 2, 1)};
      up_.push_back(std::move(lv));
    }
    head_block_ = read_block(r, "final_conv.0", d[0], d[0], unet1d_config::final_groups);
    head_out_ = r.pointwise("final_conv.1", d[0], cfg_.input_dim);
    parameters_ = r.r.values_read();
    if (!file) return;
    // Every tensor under the prefix must be one the architecture has.
    std::vector<std::string> extra;
    for (const auto& name : file->names())
      if (name.rfind(cfg_.weight_prefix, 0) == 0 && !r.read.count(name)) extra.push_back(name);
    if (!extra.empty()) {
      std::string list;
      for (std::size_t i = 0; i < extra.size() && i < 5; ++i) list += (i ? ", \"" : "\"") + extra[i] + "\"";
      if (extra.size() > 5) list += diffuse::detail::cat(" and ", extra.size() - 5, " more");
      diffuse::detail::fail(error_kind::model, "weights ", file->origin(), " hold ", extra.size(), " tensor(s) the 1-D UNet does not have (", list,
                            "); expected a checkpoint of the architecture the config describes");
    }
  }

  // ---- forward ----------------------------------------------------------------------------

  void check_inputs(std::span<const S> x, int n, int horizon, std::span<const double> timesteps, std::span<const S> global_cond,
                    std::span<const S> local_cond, std::span<S> out) const {
    using diffuse::detail::fail;
    if (n < 1) fail(error_kind::shape, "batch size is ", n, "; expected >= 1");
    const int f = cfg_.downsampling_factor();
    if (horizon < 1 || horizon % f != 0)
      fail(error_kind::shape, "horizon ", horizon, " is not a positive multiple of ", f, " (one halving per level but the last, ", cfg_.levels(),
           " levels); expected a horizon divisible by ", f);
    const std::size_t per = static_cast<std::size_t>(horizon) * cfg_.input_dim;
    if (x.size() != n * per)
      fail(error_kind::shape, "sample has ", x.size(), " elements; expected ", n, " x ", horizon, " x ", cfg_.input_dim, " (batch x horizon x input_dim)");
    if (out.size() != n * per)
      fail(error_kind::shape, "output has ", out.size(), " elements; expected ", n, " x ", horizon, " x ", cfg_.input_dim, " (batch x horizon x input_dim)");
    if (timesteps.size() != 1 && timesteps.size() != static_cast<std::size_t>(n))
      fail(error_kind::shape, "got ", timesteps.size(), " timesteps; expected 1 or one per batch item (", n, ")");
    for (double t : timesteps)
      if (!std::isfinite(t)) fail(error_kind::argument, "timestep ", t, " is not finite; expected a finite timestep");
    const std::size_t g = static_cast<std::size_t>(cfg_.global_cond_dim);
    if (global_cond.size() != n * g) {
      if (g == 0) fail(error_kind::shape, "got ", global_cond.size(), " global_cond values for a UNet without global conditioning; expected none");
      fail(error_kind::shape, "global_cond has ", global_cond.size(), " values; expected ", n, " x ", g, " (batch x global_cond_dim)");
    }
    const std::size_t l = static_cast<std::size_t>(cfg_.local_cond_dim) * horizon;
    if (local_cond.size() != n * l) {
      if (l == 0) fail(error_kind::shape, "got ", local_cond.size(), " local_cond values for a UNet without local conditioning; expected none");
      fail(error_kind::shape, "local_cond has ", local_cond.size(), " values; expected ", n, " x ", horizon, " x ", cfg_.local_cond_dim,
           " (batch x horizon x local_cond_dim)");
    }
    for (S v : global_cond)
      if (!std::isfinite(v)) fail(error_kind::numeric, "global_cond holds a non-finite value; expected finite conditioning");
    for (S v : local_cond)
      if (!std::isfinite(v)) fail(error_kind::numeric, "local_cond holds a non-finite value; expected finite conditioning");
  }

  static void ensure(std::vector<S>& v, std::size_t n) {
    if (v.size() < n) v.resize(n);
  }

  template <class F>
  void for_each_conv(F&& f) const {
    auto res = [&](const conditional_residual_block<S>& b) {
      f(b.block1.conv);
      f(b.block2.conv);
    };
    if (local_down_) res(*local_down_);
    for (const auto& d : down_) {
      res(d.res1);
      res(d.res2);
      if (d.downsample) f(*d.downsample);
    }
    res(mid_1_);
    res(mid_2_);
    for (const auto& u : up_) {
      res(u.res1);
      res(u.res2);
      f(u.upsample);
    }
    f(head_block_.conv);
  }

  /// Sizes every buffer for a batch of n at `horizon`; a no-op when nothing grew.
  void prepare(int n, int horizon) {
    if (n <= planned_n_ && horizon <= planned_horizon_ && max_threads() <= planned_threads_) return;
    n = std::max(n, planned_n_);
    horizon = std::max(horizon, planned_horizon_);
    const std::size_t N = static_cast<std::size_t>(n), T = static_cast<std::size_t>(horizon);
    const auto& d = cfg_.down_dims;
    const std::size_t E = static_cast<std::size_t>(cfg_.diffusion_step_embed_dim), C = static_cast<std::size_t>(cfg_.cond_dim());
    std::size_t maxd = static_cast<std::size_t>(*std::max_element(d.begin(), d.end()));
    const std::size_t wide = std::max({2 * maxd, static_cast<std::size_t>(cfg_.input_dim), static_cast<std::size_t>(cfg_.local_cond_dim)});
    ensure(emb_, N * E);
    ensure(hid_, N * 4 * E);
    ensure(gf_, N * C);
    ensure(gfm_, N * C);
    ensure(xin_, N * cfg_.input_dim * T);
    ensure(lc_, N * cfg_.local_cond_dim * T);
    ensure(local_out_, N * d[0] * T);
    for (auto* v : {&a_, &b_, &cat_, &conv_, &hidden_}) ensure(*v, N * wide * T);
    ensure(proj_, N * 2 * maxd);
    ensure(head_, N * d[0] * T);
    ensure(y_, N * cfg_.input_dim * T);
    // An upper bound: no convolution reads more than `horizon` samples (the upsamplers read half of it).
    std::size_t col = 0;
    for_each_conv([&](const conv1d<S>& c) { col = std::max(col, c.scratch_size(n, horizon)); });
    ensure(col_, col);
    skips_.resize(d.size());
    for (std::size_t i = 0; i < d.size(); ++i) ensure(skips_[i], N * d[i] * (T >> i));
    planned_n_ = n;
    planned_horizon_ = horizon;
    planned_threads_ = std::max(planned_threads_, max_threads());
  }

  film_workspace<S> workspace() {
    return {.conv = conv_.data(), .hidden = hidden_.data(), .projection = proj_.data(), .cond_mish = gfm_.data(), .conv_scratch = std::span<S>(col_)};
  }

  /// (n, rows, cols) → (n, cols, rows).
  static void transpose(const S* src, int n, int rows, int cols, S* dst) {
    parallel_for(n, [&](std::ptrdiff_t item) {
      const S* s = src + item * rows * cols;
      S* t = dst + item * rows * cols;
      for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c) t[static_cast<std::ptrdiff_t>(c) * rows + r] = s[static_cast<std::ptrdiff_t>(r) * cols + c];
    });
  }

  template <class Trace>
  void run(const S* x, int n, int horizon, std::span<const double> timesteps, const S* global_cond, const S* local_cond, S* out, Trace& trace) {
    const auto& d = cfg_.down_dims;
    const int L = cfg_.levels(), E = cfg_.diffusion_step_embed_dim, C = cfg_.cond_dim(), G = cfg_.global_cond_dim, D = cfg_.input_dim;
    // Step embedding; one timestep for the batch is embedded once and copied.
    sinusoidal_step_embedding<S>(timesteps, E / 2, emb_.data());
    for (std::size_t i = timesteps.size(); i < static_cast<std::size_t>(n); ++i)
      std::copy(emb_.begin(), emb_.begin() + E, emb_.begin() + static_cast<std::ptrdiff_t>(i * E));
    linear_forward(step_1_, emb_.data(), n, hid_.data());
    for (std::size_t i = 0; i < static_cast<std::size_t>(n) * 4 * E; ++i) hid_[i] = mish(hid_[i]);
    // The conditioning vector [step embedding, global_cond] per item, and its Mish, which every block's
    // FiLM encoder starts with.
    for (int i = 0; i < n; ++i) {
      S* g = gf_.data() + static_cast<std::ptrdiff_t>(i) * C;
      Eigen::Map<column<S>>(g, E).noalias() = step_2_.weight * Eigen::Map<const column<S>>(hid_.data() + static_cast<std::ptrdiff_t>(i) * 4 * E, 4 * E);
      Eigen::Map<column<S>>(g, E) += step_2_.bias;
      std::copy(global_cond + static_cast<std::ptrdiff_t>(i) * G, global_cond + static_cast<std::ptrdiff_t>(i + 1) * G, g + E);
    }
    for (std::size_t i = 0; i < static_cast<std::size_t>(n) * C; ++i) gfm_[i] = mish(gf_[i]);
    film_workspace<S> ws = workspace();
    trace("diffusion_step_encoder", -1, gf_.data(), E, 1, C);

    transpose(x, n, horizon, D, xin_.data());
    if (local_down_) {
      transpose(local_cond, n, horizon, cfg_.local_cond_dim, lc_.data());
      conditional_residual_forward(*local_down_, lc_.data(), n, horizon, local_out_.data(), ws);
      trace("local_cond_encoder", 0, local_out_.data(), d[0], horizon, static_cast<std::ptrdiff_t>(d[0]) * horizon);
      // local_up_ is not evaluated: the reference never adds its output (see the file comment).
    }
    const S* cur = xin_.data();
    int T = horizon;
    for (int i = 0; i < L; ++i) {
      auto& lv = down_[i];
      conditional_residual_forward(lv.res1, cur, n, T, a_.data(), ws);
      trace("down_modules", 10 * i, a_.data(), d[i], T, static_cast<std::ptrdiff_t>(d[i]) * T);
      if (i == 0 && local_down_) {
        const std::size_t total = static_cast<std::size_t>(n) * d[0] * T;
        for (std::size_t k = 0; k < total; ++k) a_[k] += local_out_[k];
      }
      conditional_residual_forward(lv.res2, a_.data(), n, T, skips_[i].data(), ws);
      trace("down_modules", 10 * i + 1, skips_[i].data(), d[i], T, static_cast<std::ptrdiff_t>(d[i]) * T);
      cur = skips_[i].data();
      if (lv.downsample) {
        conv1d_forward(*lv.downsample, cur, n, T, b_.data(), ws.conv_scratch);
        T = lv.downsample->out_length(T);
        cur = b_.data();
        trace("down_modules", 10 * i + 2, cur, d[i], T, static_cast<std::ptrdiff_t>(d[i]) * T);
      }
    }
    const int M = d.back();
    conditional_residual_forward(mid_1_, cur, n, T, a_.data(), ws);
    trace("mid_modules", 0, a_.data(), M, T, static_cast<std::ptrdiff_t>(M) * T);
    conditional_residual_forward(mid_2_, a_.data(), n, T, b_.data(), ws);
    trace("mid_modules", 1, b_.data(), M, T, static_cast<std::ptrdiff_t>(M) * T);
    S* now = b_.data();
    int channels = d.back();
    for (int j = 0; j + 1 < L; ++j) {
      auto& lv = up_[j];
      const S* skip = skips_[L - 1 - j].data();
      const std::ptrdiff_t P = T;
      parallel_for(n, [&](std::ptrdiff_t item) {
        S* dst = cat_.data() + item * 2 * channels * P;
        std::copy(now + item * channels * P, now + (item + 1) * channels * P, dst);
        std::copy(skip + item * channels * P, skip + (item + 1) * channels * P, dst + channels * P);
      });
      const int U = lv.res1.out;
      conditional_residual_forward(lv.res1, cat_.data(), n, T, a_.data(), ws);
      trace("up_modules", 10 * j, a_.data(), U, T, static_cast<std::ptrdiff_t>(U) * T);
      conditional_residual_forward(lv.res2, a_.data(), n, T, b_.data(), ws);
      trace("up_modules", 10 * j + 1, b_.data(), U, T, static_cast<std::ptrdiff_t>(U) * T);
      conv1d_forward(lv.upsample, b_.data(), n, T, a_.data(), ws.conv_scratch);
      T = lv.upsample.out_length(T);
      trace("up_modules", 10 * j + 2, a_.data(), U, T, static_cast<std::ptrdiff_t>(U) * T);
      now = a_.data();  // the next concatenation copies it out before a_ is written again
      channels = lv.upsample.out;
    }
    conv1d_block_forward(head_block_, now, n, T, head_.data(), ws);
    conv2d_forward(head_out_, head_.data(), n, 1, T, y_.data(), ws.conv_scratch);
    trace("final_conv", -1, y_.data(), D, T, static_cast<std::ptrdiff_t>(D) * T);
    transpose(y_.data(), n, D, T, out);
  }

  friend class conditioned_unet1d<S>;
};

template <Real S>
unet1d<S> unet1d<S>::load(const std::filesystem::path& folder) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(folder))
    diffuse::detail::fail(error_kind::io, folder.string(), " is not a folder; expected a LeRobot diffusion policy folder or a converted Diffusion Policy "
                          "checkpoint (config.json + model.safetensors)");
  const fs::path config = folder / "config.json", weights = folder / "model.safetensors";
  if (!fs::exists(config)) diffuse::detail::fail(error_kind::io, folder.string(), " has no config.json; expected the policy's configuration there");
  if (!fs::exists(weights)) diffuse::detail::fail(error_kind::io, folder.string(), " has no model.safetensors; expected the policy's weights there");
  const std::string text = diffuse::detail::read_text_file(config, "config.json");
  unet1d_config c = is_lerobot_config(text, config.string()) ? lerobot_diffusion_config::from_json(text, config.string()).unet() : unet1d_config::from_json(text, config.string());
  return unet1d(std::move(c), safetensors_file::load(weights));
}

template <Real S>
void conditioned_unet1d<S>::operator()(std::span<const S> x_t, int t, std::span<S> out) const {
  const std::size_t per = static_cast<std::size_t>(std::max(horizon_, 1)) * net_->config().input_dim;
  if (horizon_ < 1 || x_t.empty() || x_t.size() % per != 0)
    diffuse::detail::fail(error_kind::shape, "sample has ", x_t.size(), " elements; expected a positive multiple of horizon ", horizon_, " x input_dim ",
                          net_->config().input_dim);
  const double time = t;
  net_->forward(x_t, static_cast<int>(x_t.size() / per), horizon_, std::span<const double>(&time, 1), global_, local_, out);
}

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
