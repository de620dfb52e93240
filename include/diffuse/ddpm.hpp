#pragma once
/// \file
/// The entry include of diffuse: schedules, timestep lists, forward noising, posterior, the DDPM
/// ancestral and DDIM samplers, the sampling loop and reproducible noise. Light: no Eigen, no iostream.
///
/// Example:
/// \code
/// #include <diffuse/ddpm.hpp>
///
/// auto schedule = diffuse::noise_schedule::cosine(1000);
/// diffuse::ddim_sampler sampler(schedule, diffuse::make_timesteps(1000, 50, diffuse::timestep_spacing::trailing));
/// diffuse::sample_shape shape{.batch = 4, .channels = 3, .spatial = 32 * 32};
/// std::vector<float> x(shape.numel());
/// diffuse::fill_initial_noise<float>(x, shape, /*seed=*/7);
/// diffuse::sample(sampler, my_model, std::span<float>(x), shape, {.seed = 7});
/// \endcode

#include "diffuse/samplers/ancestral.hpp"
#include "diffuse/samplers/ddim.hpp"
#include "diffuse/diffusers_exact.hpp"
#include "diffuse/error.hpp"
#include "diffuse/forward.hpp"
#include "diffuse/guidance.hpp"
#include "diffuse/img2img.hpp"
#include "diffuse/likelihood.hpp"
#include "diffuse/model.hpp"
#include "diffuse/posterior.hpp"
#include "diffuse/random.hpp"
#include "diffuse/sample.hpp"
#include "diffuse/schedule.hpp"
#include "diffuse/shape.hpp"
#include "diffuse/step_buffers.hpp"
#include "diffuse/timesteps.hpp"
