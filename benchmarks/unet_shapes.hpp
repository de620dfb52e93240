// The three UNet shapes the performance work is held to (bench_unet, winograd_error,
// tools/compare_unet.py): the shipped digits model, a small CIFAR model and google/ddpm-cifar10-32.
#pragma once

#include "diffuse/nn/unet_config.hpp"

namespace bench {

inline const char* shape_names[] = {"digits", "cifar_small", "ddpm_cifar10"};

inline diffuse::unet_config shape_config(int which) {
  diffuse::unet_config c;
  c.norm_eps = 1e-6;
  if (which == 0) {  // the shipped digits model
    c.sample_height = c.sample_width = 16;
    c.in_channels = c.out_channels = 1;
    c.block_out_channels = {32, 64};
    c.down_block_types = {"DownBlock2D", "AttnDownBlock2D"};
    c.up_block_types = {"AttnUpBlock2D", "UpBlock2D"};
    c.attention_head_dim = 16;
    c.norm_num_groups = 8;
    c.num_class_embeds = 11;
  } else if (which == 1) {  // cifar-small
    c.sample_height = c.sample_width = 32;
    c.in_channels = c.out_channels = 3;
    c.block_out_channels = {64, 128, 128};
    c.down_block_types = {"DownBlock2D", "AttnDownBlock2D", "DownBlock2D"};
    c.up_block_types = {"UpBlock2D", "AttnUpBlock2D", "UpBlock2D"};
    c.attention_head_dim.reset();
  } else {  // google/ddpm-cifar10-32
    c.sample_height = c.sample_width = 32;
    c.in_channels = c.out_channels = 3;
    c.block_out_channels = {128, 256, 256, 256};
    c.down_block_types = {"DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"};
    c.up_block_types = {"UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"};
    c.attention_head_dim.reset();
  }
  return c;
}

}  // namespace bench
