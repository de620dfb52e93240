#pragma once
/// \file
/// Every layer of the reference UNet, one header per family (an umbrella include; include the family
/// headers directly to take only what a network needs):
///
/// | header | layers |
/// |---|---|
/// | matrix.hpp | Eigen matrix types and strided views of NCHW tensors |
/// | parallel.hpp | OpenMP task loops with thread-count-independent results |
/// | activations.hpp | SiLU, Mish |
/// | linear.hpp | linear layers |
/// | conv2d.hpp | 2-D convolution: its parameters and forward pass (direct kernel, im2col + GEMM) |
/// | conv1d.hpp | 1-D convolution over time and the transposed one (im2col + GEMM) |
/// | direct_conv.hpp | the direct 3×3 / 1×1 convolution kernel's register tiles |
/// | bordered_layout.hpp | the zero-bordered input the direct 3×3 kernel reads |
/// | group_norm.hpp | group normalisation fused with conditioning, SiLU and the next convolution's layout |
/// | attention.hpp | multi-head self-attention over pixels |
/// | attention_kernel.hpp | one attention head's register-tiled products and softmax |
/// | embeddings.hpp | sinusoidal timestep embeddings (diffusers', Diffusion Policy's), class-label embedding |
/// | upsample.hpp | nearest-neighbour 2× upsampling |
/// | resnet_block.hpp | the UNet's ResNet block and the group norm → convolution fusion |
/// | conditional_residual_block.hpp | the 1-D UNet's Conv1d block and FiLM-conditioned residual block |
///
/// unet.hpp holds only the model: reading the weights, wiring the blocks, the workspace. The 1-D temporal
/// UNet of diffusion policies (unet1d.hpp) reuses parallel.hpp and matrix.hpp unchanged, linear.hpp and
/// embeddings.hpp for its step MLP, group_norm.hpp for its norms, conv2d.hpp's 1×1 path for its residual
/// and output projections, and adds conv1d.hpp (k-tap and transposed convolutions over time), Mish and
/// the FiLM residual block.

#include "diffuse/nn/activations.hpp"
#include "diffuse/nn/attention.hpp"
#include "diffuse/nn/attention_kernel.hpp"
#include "diffuse/nn/bordered_layout.hpp"
#include "diffuse/nn/conditional_residual_block.hpp"
#include "diffuse/nn/conv1d.hpp"
#include "diffuse/nn/conv2d.hpp"
#include "diffuse/nn/direct_conv.hpp"
#include "diffuse/nn/embeddings.hpp"
#include "diffuse/nn/group_norm.hpp"
#include "diffuse/nn/linear.hpp"
#include "diffuse/nn/matrix.hpp"
#include "diffuse/nn/parallel.hpp"
#include "diffuse/nn/resnet_block.hpp"
#include "diffuse/nn/upsample.hpp"
