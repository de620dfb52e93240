// diffusers folders as diffusers writes them: config files in save_config's exact form (every
// constructor argument, sorted keys, indent 2; tools/make_diffusers_configs.py wrote them from three
// diffusers releases' constructor signatures), both folder layouts, and the errors for what is not
// supported or not there.
#include <doctest/doctest.h>

#include <diffuse/ddpm.hpp>
#include <diffuse/io/diffusers_folder.hpp>
#include <diffuse/nn/pipeline.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support.hpp"

namespace fs = std::filesystem;
using diffuse::unet_config;

namespace {

const fs::path kReleases = fs::path(DIFFUSE_FIXTURE_DIR) / "diffusers";
const fs::path kDigits = fs::path(DIFFUSE_SOURCE_DIR) / "models" / "digits";
const std::vector<std::string> kVersions{"0.16.0.dev0", "0.28.0.dev0", "0.40.0.dev0"};

void check_same(const unet_config& a, const unet_config& b) {
  CHECK(a.sample_height == b.sample_height);
  CHECK(a.sample_width == b.sample_width);
  CHECK(a.in_channels == b.in_channels);
  CHECK(a.out_channels == b.out_channels);
  CHECK(a.center_input_sample == b.center_input_sample);
  CHECK(a.flip_sin_to_cos == b.flip_sin_to_cos);
  CHECK(a.freq_shift == b.freq_shift);
  CHECK(a.down_block_types == b.down_block_types);
  CHECK(a.up_block_types == b.up_block_types);
  CHECK(a.block_out_channels == b.block_out_channels);
  CHECK(a.layers_per_block == b.layers_per_block);
  CHECK(a.mid_block_scale_factor == b.mid_block_scale_factor);
  CHECK(a.downsample_padding == b.downsample_padding);
  CHECK(a.attention_head_dim == b.attention_head_dim);
  CHECK(a.norm_num_groups == b.norm_num_groups);
  CHECK(a.attn_norm_num_groups == b.attn_norm_num_groups);
  CHECK(a.norm_eps == b.norm_eps);
  CHECK(a.time_scale_shift == b.time_scale_shift);
  CHECK(a.add_attention == b.add_attention);
  CHECK(a.num_class_embeds == b.num_class_embeds);
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// The digits config as one release saved it, with one key's value replaced.
std::string with_value(const std::string& key, const std::string& value) {
  auto j = nlohmann::json::parse(read_text(kReleases / "0.40.0.dev0" / "unet" / "config.json"));
  j[key] = nlohmann::json::parse(value);
  return j.dump(2);
}

/// A fresh scratch folder under the system's temporary directory.
fs::path scratch(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("diffuse_test_diffusers_folder_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

/// A pipeline folder (model_index.json + unet/ + scheduler/) of one release's files and the digits weights.
fs::path pipeline_folder(const std::string& version, const std::string& name) {
  const fs::path d = scratch(name);
  fs::create_directories(d / "unet");
  fs::create_directories(d / "scheduler");
  fs::copy_file(kReleases / version / "model_index.json", d / "model_index.json");
  fs::copy_file(kReleases / version / "unet" / "config.json", d / "unet" / "config.json");
  fs::copy_file(kReleases / version / "scheduler" / "scheduler_config.json", d / "scheduler" / "scheduler_config.json");
  fs::create_symlink(kDigits / "diffusion_pytorch_model.safetensors", d / "unet" / "diffusion_pytorch_model.safetensors");
  return d;
}

}  // namespace

TEST_CASE("UNet2DModel config.json as diffusers 0.16, 0.28 and 0.40 save it loads, with the values of the shipped model") {
  const auto expected = unet_config::load(kDigits / "config.json");
  for (const auto& v : kVersions) {
    CAPTURE(v);
    const fs::path path = kReleases / v / "unet" / "config.json";
    const std::string text = read_text(path);
    // The file is in save_config's form: sorted keys, two-space indent, a final newline.
    const auto j = nlohmann::json::parse(text);
    CHECK(text == j.dump(2) + "\n");
    CHECK(j.at("_diffusers_version") == v);
    check_same(unet_config::load(path), expected);
  }
  // The newest release writes every constructor argument: 28 and the two bookkeeping keys.
  CHECK(nlohmann::json::parse(read_text(kReleases / "0.40.0.dev0" / "unet" / "config.json")).size() == 30);
}

TEST_CASE("DDPMScheduler and DDIMScheduler configs as diffusers saves them load") {
  const auto digits = diffuse::scheduler_config::load(kDigits / "scheduler_config.json");
  for (const auto& v : kVersions) {
    CAPTURE(v);
    for (const fs::path& p : {kReleases / v / "scheduler" / "scheduler_config.json", kReleases / v / "ddim_scheduler_config.json"}) {
      CAPTURE(p.string());
      const auto sc = diffuse::scheduler_config::load(p);
      CHECK(sc.prediction == digits.prediction);
      CHECK(sc.num_train_timesteps() == digits.num_train_timesteps());
      for (int t : {0, 500, 999}) CHECK(sc.schedule.alpha_bar(t) == digits.schedule.alpha_bar(t));
      CHECK(sc.processing.clip_range == digits.processing.clip_range);
      // 0.16 had no timestep_spacing argument: its schedulers spaced "leading", which is what loads.
      CHECK(sc.spacing == (v == "0.16.0.dev0" ? diffuse::timestep_spacing::leading : digits.spacing));
    }
  }
}

TEST_CASE("one call loads a pipeline folder (model_index.json + unet/ + scheduler/) or a model folder") {
  auto direct = diffuse::nn::unet2d<float>::load(kDigits);
  const diffuse::sample_shape shape{.batch = 1, .channels = 1, .spatial = 16 * 16};
  std::vector<float> x(shape.numel()), expected(shape.numel()), got(shape.numel());
  diffuse::fill_initial_noise<float>(x, shape, 3);
  const std::vector<int> label{4};
  direct.conditioned(label)(std::span<const float>(x), 500, std::span<float>(expected));

  for (const auto& v : kVersions) {
    CAPTURE(v);
    const fs::path dir = pipeline_folder(v, "pipeline_" + v);
    auto p = diffuse::nn::load_pipeline<float>(dir);
    CHECK(p.files.kind == diffuse::diffusers_folder::layout::pipeline);
    CHECK(p.files.pipeline_class == "DDPMPipeline");
    CHECK(p.files.scheduler_class == "DDPMScheduler");
    CHECK(p.unet.parameter_count() == direct.parameter_count());
    CHECK(p.scheduler.prediction == diffuse::prediction_type::v_prediction);
    p.unet.conditioned(label)(std::span<const float>(x), 500, std::span<float>(got));
    CHECK(got == expected);  // the same weights and architecture: the same bits
    // unet2d::load takes the pipeline folder too.
    CHECK(diffuse::nn::unet2d<float>::load(dir).parameter_count() == direct.parameter_count());
    fs::remove_all(dir);
  }
  // diffuse's own model folders hold scheduler_config.json next to config.json.
  auto own = diffuse::nn::load_pipeline<float>(kDigits);
  CHECK(own.files.kind == diffuse::diffusers_folder::layout::model);
  CHECK(own.scheduler.spacing == diffuse::timestep_spacing::trailing);
}

TEST_CASE("values diffuse does not implement, and folders of neither layout, are errors that say what is supported") {
  using test::check_error;
  check_error([] { unet_config::from_json(with_value("mid_block_type", "null")); },
              {"[diffuse.model]", "mid_block_type null", "not supported", "\"UNetMidBlock2D\""});
  check_error([] { unet_config::from_json(with_value("mid_block_type", "\"UNetMidBlock2DCrossAttn\"")); },
              {"mid_block_type \"UNetMidBlock2DCrossAttn\"", "expected \"UNetMidBlock2D\""});
  check_error([] { unet_config::from_json(with_value("time_embedding_type", "\"fourier\"")); },
              {"time_embedding_type \"fourier\"", "expected \"positional\""});
  check_error([] { unet_config::from_json(with_value("downsample_type", "\"resnet\"")); }, {"downsample_type \"resnet\"", "expected \"conv\""});
  check_error([] { unet_config::from_json(with_value("class_embed_type", "\"timestep\"")); }, {"class_embed_type \"timestep\"", "expected null"});
  check_error([] { unet_config::from_json(with_value("_class_name", "\"UNet2DConditionModel\"")); },
              {"_class_name is \"UNet2DConditionModel\"", "expected \"UNet2DModel\""});
  check_error([] { unet_config::from_json(with_value("cross_attention_dim", "768")); }, {"unknown option \"cross_attention_dim\""});

  const fs::path empty = scratch("empty");
  check_error([&] { diffuse::diffusers_folder::locate(empty); },
              {"[diffuse.io]", "neither config.json nor model_index.json", "model folder (config.json + diffusion_pytorch_model.safetensors)",
               "pipeline folder (model_index.json + unet/ + scheduler/)"});
  check_error([&] { diffuse::nn::unet2d<float>::load(empty / "missing"); }, {"is not a folder", "model folder", "pipeline folder"});

  const fs::path bin_only = scratch("bin_only");
  fs::copy_file(kDigits / "config.json", bin_only / "config.json");
  std::ofstream(bin_only / "diffusion_pytorch_model.bin") << "pickle";
  check_error([&] { diffuse::diffusers_folder::locate(bin_only); }, {"diffusion_pytorch_model.bin", "pickle", "expected diffusion_pytorch_model.safetensors"});
  check_error([&] { diffuse::nn::load_pipeline<float>(kDigits / ".." / ".." / "tests" / "fixtures" / "unet" / "class_attention"); },
              {"model folder without scheduler_config.json", "pipeline folder"});

  const fs::path conditioned = pipeline_folder("0.40.0.dev0", "conditioned");
  std::ofstream(conditioned / "model_index.json") << R"({"_class_name": "StableDiffusionPipeline", "scheduler": ["diffusers", "PNDMScheduler"], "unet": ["diffusers", "UNet2DConditionModel"]})";
  check_error([&] { diffuse::diffusers_folder::locate(conditioned); }, {"model_index.json", "UNet2DConditionModel", "expected UNet2DModel"});
  const fs::path no_scheduler = pipeline_folder("0.40.0.dev0", "no_scheduler");
  fs::remove_all(no_scheduler / "scheduler");
  check_error([&] { diffuse::diffusers_folder::locate(no_scheduler); }, {"no scheduler/scheduler_config.json"});
  std::ofstream(no_scheduler / "model_index.json") << R"({"unet": "UNet2DModel"})";
  check_error([&] { diffuse::diffusers_folder::locate(no_scheduler); }, {"\"unet\" is \"UNet2DModel\"", "expected [library, class name]"});
  for (const auto& d : {empty, bin_only, conditioned, no_scheduler}) fs::remove_all(d);
}
