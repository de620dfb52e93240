#pragma once
/// \file
/// Every layer of the reference UNet, one header per family (an umbrella include; include the family
/// headers directly to take only what a network needs):
///
/// | header | layers |
/// |---|---|
/// | matrix.hpp | Eigen matrix types and strided views of NCHW tensors |
/// | parallel.hpp | OpenMP task loops with thread-count-independent results |
/// | activations.hpp | SiLU |
/// | linear.hpp | linear layers |
/// | conv2d.hpp | 2-D convolution: its parameters and forward pass (direct kernel, im2col + GEMM) |
/// | direct_conv.hpp | the direct 3×3 / 1×1 convolution kernel's register tiles |
/// | bordered_layout.hpp | the zero-bordered input the direct 3×3 kernel reads |
/// | group_norm.hpp | group normalisation fused with conditioning, SiLU and the next convolution's layout |
/// | attention.hpp | multi-head self-attention over pixels |
/// | attention_kernel.hpp | one attention head's register-tiled products and softmax |
/// | embeddings.hpp | sinusoidal timestep embedding, class-label embedding |
/// | upsample.hpp | nearest-neighbour 2× upsampling |
/// | resnet_block.hpp | the UNet's ResNet block and the group norm → convolution fusion |
///
/// unet.hpp holds only the model: reading the weights, wiring the blocks, the workspace. A 1-D temporal
/// UNet (diffusion policies over action sequences) reuses parallel.hpp and matrix.hpp unchanged, linear.hpp
/// and embeddings.hpp for its timestep MLP, group_norm.hpp with its scale-and-shift epilogue for FiLM
/// conditioning, conv2d.hpp's im2col + GEMM path for a Conv1d (one image row, a 1×k window: the kernel
/// height has to become a parameter of its own), and adds Mish to activations.hpp.

#include "diffuse/nn/activations.hpp"
#include "diffuse/nn/attention.hpp"
#include "diffuse/nn/attention_kernel.hpp"
#include "diffuse/nn/bordered_layout.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/direct_conv.hpp"
#include "diffuse/nn/embeddings.hpp"
#include "diffuse/nn/group_norm.hpp"
#include "diffuse/nn/linear.hpp"
#include "diffuse/nn/matrix.hpp"
#include "diffuse/nn/parallel.hpp"
#include "diffuse/nn/resnet_block.hpp"
#include "diffuse/nn/upsample.hpp"
