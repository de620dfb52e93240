#pragma once
/// \file
/// The reference CPU UNet: diffusers' UNet2DModel on row-major NCHW tensors, loaded from a diffusers
/// model folder (config.json + diffusion_pytorch_model.safetensors).
///
/// Example:
/// \code
/// auto unet = diffuse::nn::unet2d<float>::load("models/digits");
/// std::vector<int> labels{3, 3, 7, 7};
/// auto model = unet.conditioned(labels);           // a Denoiser for sample()
/// diffuse::sample(sampler, model, x, shape);
/// \endcode

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <unsupported/Eigen/CXX11/Tensor>
#include <vector>

#include "diffuse/error.hpp"
#include "diffuse/io/diffusers_folder.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/model.hpp"
#include "diffuse/nn/activations.hpp"
#include "diffuse/nn/attention.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/embeddings.hpp"
#include "diffuse/nn/group_norm.hpp"
#include "diffuse/nn/linear.hpp"
#include "diffuse/nn/resnet_block.hpp"
#include "diffuse/nn/upsample.hpp"
#include "diffuse/nn/unet_config.hpp"

namespace diffuse {
DIFFUSE_BEGIN_NAMESPACE
namespace nn {

/// Height and width of the images a forward pass sees.
struct image_size {
  int height = 0;  ///< rows
  int width = 0;   ///< columns
};

/// How a UNet's convolutions compute, chosen once at load time.
///
/// Example (every 3×3 stride-1 convolution by F(2×2, 3×3), conv_in direct):
/// \code
/// diffuse::nn::unet_options o;
/// o.convolution = diffuse::nn::conv_algorithm::winograd2;
/// o.layers["conv_in"] = diffuse::nn::conv_algorithm::direct;
/// auto unet = diffuse::nn::unet2d<float>::load("models/digits", o);
/// \endcode
struct unet_options {
  /// The algorithm for every stride-1 "same" 3×3 convolution. `automatic` (the default) takes Winograd
  /// (F(2×2, 3×3) from 128 channels, F(4×4, 3×3) from 64) where conv2d::select_algorithm's rule does, which keeps the float UNet within 1e-5 of
  /// the double reference on the benchmark models; forcing winograd2 or winograd4 here applies to the 3×3
  /// stride-1 convolutions only (downsamplers and 1×1 shortcuts stay direct); `direct` turns Winograd off.
  conv_algorithm convolution = conv_algorithm::automatic;
  /// Per-layer overrides by diffusers parameter prefix ("conv_in", "down_blocks.0.resnets.1.conv2", …),
  /// taking precedence over `convolution`. Forcing a Winograd algorithm on a layer that cannot use it
  /// (stride 2, a 1×1 kernel) throws diffuse::error naming the layer; a name that is no convolution of
  /// the architecture throws too.
  std::map<std::string, conv_algorithm, std::less<>> layers;
};

/// Row-major NCHW batch, as PyTorch lays it out.
template <class S>
using image_tensor = Eigen::Tensor<S, 4, Eigen::RowMajor>;

namespace detail {

/// Reads parameters by their diffusers names, checks every shape, and remembers what it read so that
/// tensors the architecture does not have are reported.
class weight_reader {
 public:
  explicit weight_reader(const safetensors_file& f, const unet_options& o = {}) : file_(&f), options_(&o) {}
  /// No file: parameters drawn at random (PyTorch-like scales), for benchmarks and tests.
  explicit weight_reader(std::uint64_t seed, const unet_options& o = {}) : rng_(seed), options_(&o) {}

  /// Checks that the file holds `name` with this shape (nothing to check for random weights). Called
  /// before a layer allocates its parameters, so that a config.json claiming huge layers next to a small
  /// weight file fails on the first missing tensor instead of allocating what the config claims.
  void expect(const std::string& name, const std::vector<std::int64_t>& shape) const {
    if (!file_) return;
    if (!file_->contains(name))
      diffuse::detail::fail(error_kind::model, "weights ", file_->origin(), " lack tensor \"", name, "\" of shape ", shape_text(shape),
                            "; expected a checkpoint of the architecture config.json describes");
    const tensor_info& info = file_->info(name);
    if (info.shape != shape)
      diffuse::detail::fail(error_kind::model, "tensor \"", name, "\" in ", file_->origin(), " has shape ", shape_text(info.shape), "; expected ",
                            shape_text(shape), " for the architecture config.json describes");
  }

  template <class S>
  void read(const std::string& name, std::vector<std::int64_t> shape, S* dst) {
    std::size_t count = 1;
    for (auto d : shape) count *= static_cast<std::size_t>(std::max<std::int64_t>(d, 0));
    values_ += count;
    if (!file_) {
      fill_random(name, shape, dst);
      return;
    }
    expect(name, shape);
    const safetensors_file& file_ = *this->file_;
    std::size_t n = 1;
    for (auto d : shape) n *= static_cast<std::size_t>(d);
    file_.read_into<S>(name, std::span<S>(dst, n));
    // A NaN or infinite weight makes every forward NaN; refused here, where the tensor can be named,
    // rather than at the first step, where only "the model output" could be blamed. Checked on the bits
    // so that -ffast-math cannot remove the test.
    for (std::size_t i = 0; i < n; ++i)
      if (!diffuse::detail::finite_bits(dst[i]))
        diffuse::detail::fail(error_kind::model, "tensor \"", name, "\" in ", file_.origin(), " holds ", diffuse::detail::nan_bits(dst[i]) ? "NaN" : "an infinity",
                              " at element ", i, " of ", n, "; expected finite weights (the checkpoint is corrupt or diverged in training)");
    used_.insert(name);
  }

  template <class S>
  linear<S> read_linear(const std::string& p, int in, int out) {
    expect(p + ".weight", {out, in});
    expect(p + ".bias", {out});
    linear<S> l;
    l.weight.resize(out, in);
    l.bias.resize(out);
    read(p + ".weight", {out, in}, l.weight.data());
    read(p + ".bias", {out}, l.bias.data());
    return l;
  }

  template <class S>
  conv2d<S> read_conv(const std::string& p, int in, int out, int k, int stride = 1, int pad = -1) {
    conv2d<S> c;
    c.in = in;
    c.out = out;
    c.kernel = k;
    c.stride = stride;
    const int pd = pad < 0 ? k / 2 : pad;
    c.pad_top = c.pad_left = c.pad_bottom = c.pad_right = pd;
    expect(p + ".weight", {out, in, k, k});
    expect(p + ".bias", {out});
    c.weight.resize(out, static_cast<Eigen::Index>(in) * k * k);
    c.bias.resize(out);
    read(p + ".weight", {out, in, k, k}, c.weight.data());
    read(p + ".bias", {out}, c.bias.data());
    c.pack();
    select(c, p);
    return c;
  }

  /// Chooses c's algorithm from the options: its own override, else the model-wide choice where it can
  /// apply (3×3 stride 1), else direct.
  template <class S>
  void select(conv2d<S>& c, const std::string& name) {
    if (const auto it = options_->layers.find(name); it != options_->layers.end()) {
      c.select_algorithm(it->second, name);
      overridden_.insert(name);
      return;
    }
    c.select_algorithm(c.winograd_capable() ? options_->convolution : conv_algorithm::direct, name);
  }

  template <class S>
  group_norm<S> read_norm(const std::string& p, int channels, int groups, double eps) {
    expect(p + ".weight", {channels});
    expect(p + ".bias", {channels});
    group_norm<S> g;
    g.groups = groups;
    g.eps = eps;
    g.weight.resize(channels);
    g.bias.resize(channels);
    read(p + ".weight", {channels}, g.weight.data());
    read(p + ".bias", {channels}, g.bias.data());
    return g;
  }

  /// Number of parameter values read so far.
  std::size_t values_read() const noexcept { return values_; }
  /// Throws if the file holds tensors that were never read.
  void finish() const {
    for (const auto& [name, a] : options_->layers)
      if (!overridden_.count(name))
        diffuse::detail::fail(error_kind::argument, "unet_options.layers names \"", name, "\", which is no convolution of this UNet; expected a "
                              "diffusers parameter prefix such as \"conv_in\" or \"down_blocks.0.resnets.0.conv1\"");
    if (!file_) return;
    const safetensors_file& file_ = *this->file_;
    std::vector<std::string> extra;
    for (const auto& n : file_.names())
      if (!used_.count(n)) extra.push_back(n);
    if (!extra.empty()) {
      std::string list;
      for (std::size_t i = 0; i < extra.size() && i < 5; ++i) list += (i ? ", \"" : "\"") + extra[i] + "\"";
      if (extra.size() > 5) list += diffuse::detail::cat(" and ", extra.size() - 5, " more");
      diffuse::detail::fail(error_kind::model, "weights ", file_.origin(), " hold ", extra.size(), " tensor(s) the architecture does not have (",
                            list, "); expected a checkpoint of the architecture config.json describes");
    }
  }

 private:
  const safetensors_file* file_ = nullptr;
  std::set<std::string> used_;
  std::mt19937_64 rng_;
  std::size_t values_ = 0;
  const unet_options* options_ = nullptr;
  std::set<std::string, std::less<>> overridden_;

  template <class S>
  void fill_random(const std::string& name, const std::vector<std::int64_t>& shape, S* dst) {
    std::size_t n = 1;
    for (auto d : shape) n *= static_cast<std::size_t>(d);
    const bool is_weight = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
    const bool is_norm = name.find("norm") != std::string::npos;
    const double fan_in = shape.size() > 1 ? static_cast<double>(n / static_cast<std::size_t>(shape[0])) : 1.0;
    std::normal_distribution<double> normal(0.0, 1.0);
    for (std::size_t i = 0; i < n; ++i) {
      const double z = normal(rng_);
      dst[i] = static_cast<S>(is_norm ? (is_weight ? 1.0 + 0.1 * z : 0.1 * z) : (shape.size() > 1 ? z / std::sqrt(fan_in) : 0.05 * z));
    }
  }
};

}  // namespace detail

/// diffusers' UNet2DModel for inference. Satisfies Denoiser through conditioned() (class-conditional
/// models) or directly (unconditional models), at the config's sample size.
template <Real S>
class unet2d {
 public:
  /// Loads the UNet of a diffusers folder in either layout (diffusers_folder.hpp): a model folder
  /// (config.json + diffusion_pytorch_model.safetensors) or a pipeline folder (model_index.json, unet/).
  /// `options` choose the convolution algorithms (unet_options).
  static unet2d load(const std::filesystem::path& folder, const unet_options& options = {}) {
    const diffusers_folder files = diffusers_folder::locate(folder);
    return load(files.unet_config, files.weights, options);
  }
  /// Loads explicit config and weight files; `options` choose the convolution algorithms.
  static unet2d load(const std::filesystem::path& config_json, const std::filesystem::path& weights, const unet_options& options = {}) {
    return unet2d(unet_config::load(config_json), safetensors_file::load(weights), options);
  }

  /// Builds the network for `config` with the weights in `weights` (names as diffusers writes them).
  /// \throws diffuse::error when `options` force Winograd on a layer that cannot use it or name no layer.
  unet2d(unet_config config, const safetensors_file& weights, const unet_options& options = {}) : cfg_(std::move(config)) {
    cfg_.validate();
    detail::weight_reader reader(weights, options);
    build(reader);
  }

  /// Builds the network for `config` with random parameters drawn from `seed` (benchmarks, tests).
  static unet2d random(unet_config config, std::uint64_t seed, const unet_options& options = {}) {
    return unet2d(std::move(config), seed, options);
  }

  /// Floating-point operations (multiply and add counted apart) of the last forward pass: every
  /// convolution, linear map and attention product.
  double last_forward_flops() const noexcept { return work_.flops; }

  /// The architecture, as parsed from config.json.
  const unet_config& config() const noexcept { return cfg_; }
  /// Number of parameters.
  std::size_t parameter_count() const noexcept { return parameters_; }
  /// Whether the model takes class labels (num_class_embeds in the config).
  bool class_conditional() const noexcept { return cfg_.num_class_embeds.has_value(); }

  /// out = UNet(x, t, labels) for x (n, in_channels, h, w) and out (n, out_channels, h, w), both
  /// contiguous row-major. `timesteps` holds one value for the whole batch or one per item (any real t,
  /// as diffusers accepts); `labels` one class per item for a class-conditional model, none otherwise.
  void forward(std::span<const S> x, int n, image_size size, std::span<const double> timesteps, std::span<const int> labels,
               std::span<S> out) {
    check_inputs(x, n, size, timesteps, labels, out);
    prepare(n, size);
    run(x.data(), n, size, timesteps, labels, out.data());
  }

  /// The same on Eigen tensors: x (n, in_channels, h, w) → (n, out_channels, h, w).
  image_tensor<S> forward(const image_tensor<S>& x, std::span<const double> timesteps, std::span<const int> labels = {}) {
    const auto& d = x.dimensions();
    if (d[1] != cfg_.in_channels)
      diffuse::detail::fail(error_kind::shape, "input has ", d[1], " channels; expected in_channels = ", cfg_.in_channels);
    image_tensor<S> out(d[0], cfg_.out_channels, d[2], d[3]);
    forward(std::span<const S>(x.data(), static_cast<std::size_t>(x.size())), static_cast<int>(d[0]),
            {static_cast<int>(d[2]), static_cast<int>(d[3])}, timesteps, labels, std::span<S>(out.data(), static_cast<std::size_t>(out.size())));
    return out;
  }

  /// Denoiser call for an unconditional model at the config's sample size; the batch is inferred.
  void operator()(std::span<const S> x, int t, std::span<S> out) {
    if (class_conditional())
      diffuse::detail::fail(error_kind::model, "this UNet is class-conditional (num_class_embeds = ", *cfg_.num_class_embeds,
                            "); expected class labels: call it through unet.conditioned(labels)");
    const double tt = t;
    const int n = infer_batch(x.size(), sample_size());
    forward(x, n, sample_size(), std::span<const double>(&tt, 1), {}, out);
  }

  /// The config's sample_size.
  image_size sample_size() const noexcept { return {cfg_.sample_height, cfg_.sample_width}; }

  /// A Denoiser that calls this UNet with fixed class labels (one per batch item) at `size`.
  class conditioned_model {
   public:
    /// Refers to `net`, which must outlive it; one label per batch item.
    conditioned_model(unet2d& net, std::vector<int> labels, image_size size) : net_(&net), labels_(std::move(labels)), size_(size) {}
    /// The Denoiser call: out = UNet(x, t, labels), the batch inferred from x.size().
    void operator()(std::span<const S> x, int t, std::span<S> out) {
      const double tt = t;
      const int n = net_->infer_batch(x.size(), size_);
      net_->forward(x, n, size_, std::span<const double>(&tt, 1), labels_, out);
    }
    /// The call with a fractional training time, as the Euler family's solvers pass it (diffusers'
    /// UNet2DModel embeds a float timestep as it is; nothing is rounded).
    void operator()(std::span<const S> x, double t, std::span<S> out) {
      const int n = net_->infer_batch(x.size(), size_);
      net_->forward(x, n, size_, std::span<const double>(&t, 1), labels_, out);
    }
    /// The class labels, one per batch item.
    std::span<const int> labels() const noexcept { return labels_; }

   private:
    unet2d* net_;
    std::vector<int> labels_;
    image_size size_;
  };

  /// Binds class labels (checked at each call against the batch). The UNet must outlive the result.
  conditioned_model conditioned(std::span<const int> labels, std::optional<image_size> size = {}) {
    return conditioned_model(*this, std::vector<int>(labels.begin(), labels.end()), size.value_or(sample_size()));
  }

 private:
  struct down_level {
    std::vector<resnet_block<S>> resnets;
    std::vector<attention<S>> attentions;
    std::optional<conv2d<S>> downsample;
  };
  struct up_level {
    std::vector<resnet_block<S>> resnets;
    std::vector<attention<S>> attentions;
    std::optional<conv2d<S>> upsample;
  };

  unet_config cfg_;
  std::size_t parameters_ = 0;
  conv2d<S> conv_in_, conv_out_;
  linear<S> time_1_, time_2_;
  matrix<S> class_embedding_;
  std::vector<down_level> down_;
  resnet_block<S> mid_1_, mid_2_;
  std::optional<attention<S>> mid_attention_;
  std::vector<up_level> up_;
  group_norm<S> norm_out_;

  // Workspace, sized for the largest batch and image seen; reused so a forward allocates nothing once warm.
  int planned_n_ = 0, planned_threads_ = 0;
  image_size planned_size_{};
  std::vector<S> temb0_, temb_hidden_, temb_, temb_silu_, proj_, xin_, a_, b_, t1_, t2_, cat_, col_, attn_;
  std::vector<std::vector<S>> skips_;
  block_workspace<S> work_;  // views of t1_, t2_, proj_, temb_silu_ and col_, set at each forward; the FLOP count

  int infer_batch(std::size_t elements, image_size size) const {
    const std::size_t per = static_cast<std::size_t>(cfg_.in_channels) * size.height * size.width;
    if (per == 0 || elements == 0 || elements % per != 0)
      diffuse::detail::fail(error_kind::shape, "input has ", elements, " elements; expected a positive multiple of in_channels ", cfg_.in_channels,
                            " x ", size.height, " x ", size.width, " = ", per);
    return static_cast<int>(elements / per);
  }

  void check_inputs(std::span<const S> x, int n, image_size size, std::span<const double> timesteps, std::span<const int> labels,
                    std::span<S> out) const {
    using diffuse::detail::fail;
    if (n < 1) fail(error_kind::shape, "batch size is ", n, "; expected >= 1");
    const int f = cfg_.downsampling_factor();
    if (size.height < 1 || size.width < 1 || size.height % f != 0 || size.width % f != 0)
      fail(error_kind::shape, "image size ", size.height, " x ", size.width, " is not a positive multiple of ", f, " (one halving per level but the last); "
           "expected height and width divisible by ", f);
    const std::size_t pixels = static_cast<std::size_t>(size.height) * size.width;
    if (x.size() != static_cast<std::size_t>(n) * cfg_.in_channels * pixels)
      fail(error_kind::shape, "input has ", x.size(), " elements; expected ", n, " x ", cfg_.in_channels, " x ", size.height, " x ", size.width,
           " (batch x in_channels x height x width)");
    if (out.size() != static_cast<std::size_t>(n) * cfg_.out_channels * pixels)
      fail(error_kind::shape, "output has ", out.size(), " elements; expected ", n, " x ", cfg_.out_channels, " x ", size.height, " x ", size.width,
           " (batch x out_channels x height x width)");
    if (timesteps.size() != 1 && timesteps.size() != static_cast<std::size_t>(n))
      fail(error_kind::shape, "got ", timesteps.size(), " timesteps; expected 1 or one per batch item (", n, ")");
    for (double t : timesteps)
      if (!std::isfinite(t)) fail(error_kind::argument, "timestep ", t, " is not finite; expected a finite timestep");
    if (class_conditional()) {
      if (labels.size() != static_cast<std::size_t>(n))
        fail(error_kind::model, "got ", labels.size(), " class labels for ", n, " batch items; this UNet is class-conditional and expects one label per item");
      for (int l : labels)
        if (l < 0 || l >= *cfg_.num_class_embeds)
          fail(error_kind::model, "class label ", l, " is out of range; expected 0 <= label < num_class_embeds = ", *cfg_.num_class_embeds);
    } else if (!labels.empty()) {
      fail(error_kind::model, "got class labels for a UNet without class embeddings; expected none (num_class_embeds is null)");
    }
  }

  resnet_block<S> read_resnet(detail::weight_reader& r, const std::string& p, int in, int out, double output_scale = 1) {
    resnet_block<S> b;
    const int g = cfg_.norm_num_groups;
    b.in = in;
    b.out = out;
    b.scale_shift = cfg_.time_scale_shift == time_conditioning::scale_shift;
    b.output_scale = output_scale;
    b.norm1 = r.read_norm<S>(p + ".norm1", in, g, cfg_.norm_eps);
    b.conv1 = r.read_conv<S>(p + ".conv1", in, out, 3);
    b.time_proj = r.read_linear<S>(p + ".time_emb_proj", cfg_.time_embed_dim(), b.scale_shift ? 2 * out : out);
    b.norm2 = r.read_norm<S>(p + ".norm2", out, g, cfg_.norm_eps);
    b.conv2 = r.read_conv<S>(p + ".conv2", out, out, 3);
    if (in != out) b.shortcut = r.read_conv<S>(p + ".conv_shortcut", in, out, 1);
    return b;
  }

  attention<S> read_attention(detail::weight_reader& r, const std::string& p, int channels, int groups, double rescale = 1) {
    attention<S> a;
    a.head_dim = cfg_.attention_head_dim.value_or(channels);
    a.heads = channels / a.head_dim;
    a.rescale = rescale;
    a.has_norm = groups > 0;
    if (a.has_norm) a.norm = r.read_norm<S>(p + ".group_norm", channels, groups, cfg_.norm_eps);
    a.to_q = r.read_linear<S>(p + ".to_q", channels, a.inner());
    a.to_k = r.read_linear<S>(p + ".to_k", channels, a.inner());
    a.to_v = r.read_linear<S>(p + ".to_v", channels, a.inner());
    a.to_out = r.read_linear<S>(p + ".to_out.0", a.inner(), channels);
    return a;
  }

  unet2d(unet_config config, std::uint64_t seed, const unet_options& options) : cfg_(std::move(config)) {
    cfg_.validate();
    detail::weight_reader reader(seed, options);
    build(reader);
  }

  void build(detail::weight_reader& r) {
    const auto& boc = cfg_.block_out_channels;
    const int L = cfg_.levels(), layers = cfg_.layers_per_block, T = cfg_.time_embed_dim();
    conv_in_ = r.read_conv<S>("conv_in", cfg_.in_channels, boc[0], 3);
    time_1_ = r.read_linear<S>("time_embedding.linear_1", boc[0], T);
    time_2_ = r.read_linear<S>("time_embedding.linear_2", T, T);
    if (class_conditional()) {
      r.expect("class_embedding.weight", {*cfg_.num_class_embeds, T});
      class_embedding_.resize(*cfg_.num_class_embeds, T);
      r.read("class_embedding.weight", {*cfg_.num_class_embeds, T}, class_embedding_.data());
    }
    int out = boc[0];
    for (int i = 0; i < L; ++i) {
      const int in = out;
      out = boc[i];
      down_level d;
      const std::string p = "down_blocks." + std::to_string(i);
      for (int j = 0; j < layers; ++j) {
        d.resnets.push_back(read_resnet(r, p + ".resnets." + std::to_string(j), j == 0 ? in : out, out));
        if (unet_config::is_attention_block(cfg_.down_block_types[i]))
          d.attentions.push_back(read_attention(r, p + ".attentions." + std::to_string(j), out, cfg_.norm_num_groups));
      }
      if (i + 1 < L) {
        d.downsample = r.read_conv<S>(p + ".downsamplers.0.conv", out, out, 3, 2, cfg_.downsample_padding);
        if (cfg_.downsample_padding == 0) {  // diffusers pads right and bottom by one instead
          d.downsample->pad_top = d.downsample->pad_left = 0;
          d.downsample->pad_bottom = d.downsample->pad_right = 1;
        }
      }
      down_.push_back(std::move(d));
    }
    const double ms = cfg_.mid_block_scale_factor;
    mid_1_ = read_resnet(r, "mid_block.resnets.0", boc.back(), boc.back(), ms);
    if (cfg_.add_attention) mid_attention_ = read_attention(r, "mid_block.attentions.0", boc.back(), cfg_.mid_attention_groups(), ms);
    mid_2_ = read_resnet(r, "mid_block.resnets.1", boc.back(), boc.back(), ms);
    out = boc.back();
    for (int i = 0; i < L; ++i) {
      const int prev = out;
      out = boc[L - 1 - i];
      const int skip_in = boc[std::max(L - 2 - i, 0)];
      up_level u;
      const std::string p = "up_blocks." + std::to_string(i);
      for (int j = 0; j <= layers; ++j) {
        const int skip = j == layers ? skip_in : out;
        u.resnets.push_back(read_resnet(r, p + ".resnets." + std::to_string(j), (j == 0 ? prev : out) + skip, out));
        if (unet_config::is_attention_block(cfg_.up_block_types[i]))
          u.attentions.push_back(read_attention(r, p + ".attentions." + std::to_string(j), out, cfg_.norm_num_groups));
      }
      if (i + 1 < L) u.upsample = r.read_conv<S>(p + ".upsamplers.0.conv", out, out, 3);
      up_.push_back(std::move(u));
    }
    norm_out_ = r.read_norm<S>("conv_norm_out", boc[0], cfg_.norm_num_groups, cfg_.norm_eps);
    conv_out_ = r.read_conv<S>("conv_out", boc[0], cfg_.out_channels, 3);
    r.finish();
    parameters_ = r.values_read();
  }

  // ---- forward -------------------------------------------------------------------------------

  template <class F>
  void for_each_conv(F&& f) const {
    f(conv_in_);
    f(conv_out_);
    auto res = [&](const resnet_block<S>& b) {
      f(b.conv1);
      f(b.conv2);
      if (b.shortcut) f(*b.shortcut);
    };
    for (const auto& d : down_) {
      for (const auto& b : d.resnets) res(b);
      if (d.downsample) f(*d.downsample);
    }
    res(mid_1_);
    res(mid_2_);
    for (const auto& u : up_) {
      for (const auto& b : u.resnets) res(b);
      if (u.upsample) f(*u.upsample);
    }
  }

  static void ensure(std::vector<S>& v, std::size_t n) {
    if (v.size() < n) v.resize(n);
  }

  /// Sizes every buffer for a batch of n at `size`; a no-op when nothing grew.
  void prepare(int n, image_size size) {
    // Scratch is per thread: a larger team after planning needs more of it.
    if (n <= planned_n_ && size.height == planned_size_.height && size.width == planned_size_.width && max_threads() <= planned_threads_) return;
    const auto& boc = cfg_.block_out_channels;
    const int L = cfg_.levels(), T = cfg_.time_embed_dim();
    const std::size_t N = static_cast<std::size_t>(n), P0 = static_cast<std::size_t>(size.height) * size.width;
    const std::size_t maxc = static_cast<std::size_t>(*std::max_element(boc.begin(), boc.end()));
    ensure(temb0_, N * boc[0]);
    ensure(temb_hidden_, N * T);
    ensure(temb_, N * T);
    ensure(temb_silu_, N * T);
    ensure(proj_, N * 2 * maxc);
    if (cfg_.center_input_sample) ensure(xin_, N * cfg_.in_channels * P0);
    const std::size_t big = N * std::max<std::size_t>(2 * maxc, static_cast<std::size_t>(cfg_.in_channels)) * P0;
    ensure(a_, big);
    ensure(b_, big);
    ensure(t1_, big);
    ensure(t2_, big);
    ensure(cat_, big);
    std::size_t col = 0;
    // Bounded by the input size: no convolution runs at a higher resolution than the input.
    for_each_conv([&](const conv2d<S>& c) { col = std::max(col, conv2d_scratch(c, n, size.height, size.width, max_threads())); });
    ensure(col_, col);
    // Skip connections: conv_in, every down ResNet, every downsampler.
    std::vector<std::size_t> skip_sizes{N * boc[0] * P0};
    std::size_t attn = 0;
    std::size_t P = P0;
    for (int i = 0; i < L; ++i) {
      for (std::size_t j = 0; j < down_[i].resnets.size(); ++j) {
        skip_sizes.push_back(N * boc[i] * P);
        if (!down_[i].attentions.empty()) attn = std::max(attn, attention_scratch(down_[i].attentions[j], n, static_cast<std::ptrdiff_t>(P)));
      }
      if (down_[i].downsample) {
        P /= 4;
        skip_sizes.push_back(N * boc[i] * P);
      }
    }
    if (mid_attention_) attn = std::max(attn, attention_scratch(*mid_attention_, n, static_cast<std::ptrdiff_t>(P)));
    for (int i = 0; i < L; ++i) {
      for (const auto& a : up_[i].attentions) attn = std::max(attn, attention_scratch(a, n, static_cast<std::ptrdiff_t>(P)));
      if (up_[i].upsample) P *= 4;
    }
    ensure(attn_, attn);
    skips_.resize(skip_sizes.size());
    for (std::size_t k = 0; k < skip_sizes.size(); ++k) ensure(skips_[k], skip_sizes[k]);
    const bool same_size = size.height == planned_size_.height && size.width == planned_size_.width;
    planned_n_ = same_size ? std::max(n, planned_n_) : n;
    planned_size_ = size;
    planned_threads_ = std::max(planned_threads_, max_threads());
  }

  void conv(const conv2d<S>& c, const S* x, int n, int h, int w, S* y) { conv2d_forward(c, x, n, h, w, y, work_); }
  void attend(const attention<S>& a, S* x, int n, std::ptrdiff_t P, std::span<S> scratch) {
    work_.flops += 2.0 * n * P * 4.0 * a.channels() * a.inner() + 2.0 * 2.0 * n * static_cast<double>(P) * P * a.inner();
    attention_forward(a, x, n, P, scratch);
  }

  void run(const S* x, int n, image_size size, std::span<const double> timesteps, std::span<const int> labels, S* out) {
    const auto& boc = cfg_.block_out_channels;
    const int L = cfg_.levels(), T = cfg_.time_embed_dim();
    work_ = {.normed = t1_.data(), .hidden = t2_.data(), .projection = proj_.data(), .time_silu = temb_silu_.data(),
             .conv_scratch = std::span<S>(col_), .flops = 0};
    // Time (and class) embedding, then SiLU once: every ResNet projects silu(temb). One timestep for
    // the batch is embedded once and copied.
    timestep_embedding<S>(timesteps, boc[0], cfg_.flip_sin_to_cos, cfg_.freq_shift, temb0_.data());
    for (std::size_t i = timesteps.size(); i < static_cast<std::size_t>(n); ++i)
      std::copy(temb0_.begin(), temb0_.begin() + boc[0], temb0_.begin() + static_cast<std::ptrdiff_t>(i * boc[0]));
    linear_forward(time_1_, temb0_.data(), n, temb_hidden_.data());
    for (std::size_t i = 0; i < static_cast<std::size_t>(n) * T; ++i) temb_hidden_[i] = silu(temb_hidden_[i]);
    linear_forward(time_2_, temb_hidden_.data(), n, temb_.data());
    if (class_conditional()) add_class_embedding<S>(class_embedding_, labels, temb_.data());
    for (int i = 0; i < n; ++i) {
      const S* e = temb_.data() + static_cast<std::ptrdiff_t>(i) * T;
      S* s = temb_silu_.data() + static_cast<std::ptrdiff_t>(i) * T;
      for (int k = 0; k < T; ++k) s[k] = silu(e[k]);
    }

    int h = size.height, w = size.width;
    const S* input = x;
    if (cfg_.center_input_sample) {
      const std::size_t total = static_cast<std::size_t>(n) * cfg_.in_channels * h * w;
      for (std::size_t i = 0; i < total; ++i) xin_[i] = S(2) * x[i] - S(1);
      input = xin_.data();
    }
    std::size_t k = 0;
    conv(conv_in_, input, n, h, w, skips_[k].data());
    const S* cur = skips_[k++].data();
    for (int i = 0; i < L; ++i) {
      auto& d = down_[i];
      for (std::size_t j = 0; j < d.resnets.size(); ++j) {
        resnet_forward(d.resnets[j], cur, n, h, w, skips_[k].data(), work_);
        if (!d.attentions.empty())
          attend(d.attentions[j], skips_[k].data(), n, static_cast<std::ptrdiff_t>(h) * w, std::span<S>(attn_));
        cur = skips_[k++].data();
      }
      if (d.downsample) {
        conv(*d.downsample, cur, n, h, w, skips_[k].data());
        h = d.downsample->out_height(h);
        w = d.downsample->out_width(w);
        cur = skips_[k++].data();
      }
    }
    resnet_forward(mid_1_, cur, n, h, w, a_.data(), work_);
    if (mid_attention_) attend(*mid_attention_, a_.data(), n, static_cast<std::ptrdiff_t>(h) * w, std::span<S>(attn_));
    resnet_forward(mid_2_, a_.data(), n, h, w, b_.data(), work_);
    S* now = b_.data();
    int channels = boc.back();
    for (int i = 0; i < L; ++i) {
      auto& u = up_[i];
      for (std::size_t j = 0; j < u.resnets.size(); ++j) {
        // cat([h, skip], channels) per item.
        const std::ptrdiff_t P = static_cast<std::ptrdiff_t>(h) * w;
        const S* skip = skips_[--k].data();
        const int skip_c = u.resnets[j].in - channels;
        parallel_for(n, [&](std::ptrdiff_t item) {
          S* dst = cat_.data() + item * (channels + skip_c) * P;
          std::copy(now + item * channels * P, now + (item + 1) * channels * P, dst);
          std::copy(skip + item * skip_c * P, skip + (item + 1) * skip_c * P, dst + channels * P);
        });
        S* next = now == a_.data() ? b_.data() : a_.data();
        resnet_forward(u.resnets[j], cat_.data(), n, h, w, next, work_);
        if (!u.attentions.empty()) attend(u.attentions[j], next, n, P, std::span<S>(attn_));
        now = next;
        channels = u.resnets[j].out;
      }
      if (u.upsample) {
        upsample_nearest2x(now, static_cast<std::ptrdiff_t>(n) * channels, h, w, t1_.data());
        h *= 2;
        w *= 2;
        S* next = now == a_.data() ? b_.data() : a_.data();
        conv(*u.upsample, t1_.data(), n, h, w, next);
        now = next;
      }
    }
    norm_then_conv(norm_out_, {.silu = true}, conv_out_, now, n, h, w, out, work_);
  }
};

}  // namespace nn
DIFFUSE_END_NAMESPACE
}  // namespace diffuse
