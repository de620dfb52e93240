#!/usr/bin/python3
"""Chained trajectories of diffusers' EDM and LCM schedulers, for tests/test_edm_lcm.cpp.

usage: /usr/bin/python3 tools/make_edm_lcm_fixtures.py DIFFUSERS_SRC_DIR [OUT_DIR]

DIFFUSERS_SRC_DIR is a diffusers checkout's src/diffusers folder (the fixtures in tests/fixtures/edm_lcm/
were made from commit 58eb52c0803ea9af3abec60841c2a093bdf1f951, version 0.40.0.dev0). The modules
scheduling_edm_euler.py, scheduling_edm_dpmsolver_multistep.py and scheduling_lcm.py are imported from
there unchanged, with the framework stubs of tools/make_solver_fixtures.py (no stub does arithmetic;
randn_tensor hands out the noise this script supplies).

Two variants are written:
  - edm_lcm_float64.json: every "float32" dtype literal replaced by "float64" and torch's default dtype
    set to float64 (EDMDPMSolverMultistepScheduler builds its ramp with torch.linspace in the default
    dtype), float64 tensors: the reference the C++ double path matches to 1e-12;
  - edm_lcm_float32.json: the modules verbatim, float32 tensors, torch's default dtype float32.

Each case runs a pipeline's loop: latents = z·init_noise_sigma; per step input = scale_model_input(latents, t)
(LCM: the latents); out = model(input, t); latents = step(out, t, latents, ...).prev_sample, with the
closed-form fake model of make_solver_fixtures.py, out = 0.9·tanh(input) + 0.1·sin(0.01·t + 0.5·i), and
standard normal noise from numpy's PCG64 (seeded per case).
"""
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_solver_fixtures as base  # noqa: E402  (the stubs, the fake model)

MODULES = ["scheduling_edm_euler", "scheduling_edm_dpmsolver_multistep", "scheduling_lcm"]
SHAPE = base.SHAPE

EDM_EULER = [
    ("edm_euler", dict(), [1, 2, 3, 5, 12, 50]),
    ("edm_euler_v", dict(prediction_type="v_prediction"), [1, 2, 5, 12]),
    ("edm_euler_exponential", dict(sigma_schedule="exponential"), [1, 2, 5, 12]),
    ("edm_euler_sigma_min", dict(final_sigmas_type="sigma_min"), [1, 2, 5, 12]),
    ("edm_euler_churn", dict(s_churn=1.0, s_tmin=0.05, s_tmax=50.0), [2, 5, 12]),
    ("edm_euler_churn_noise", dict(s_churn=4.0, s_noise=1.007), [3, 12]),
    ("edm_euler_bounds", dict(sigma_min=0.01, sigma_max=120.0, sigma_data=1.0, rho=5.0), [2, 5, 12]),
    ("edm_euler_ramp", dict(ramp=[0.0, 0.3, 0.7, 1.0]), [4]),
]

EDM_DPM = [
    ("edm_dpm2", dict(), [1, 2, 3, 5, 12, 50]),
    ("edm_dpm1", dict(solver_order=1), [1, 2, 5]),
    ("edm_dpm3", dict(solver_order=3), [1, 2, 3, 5, 12, 20]),
    ("edm_dpm2_heun", dict(solver_type="heun"), [2, 5, 12]),
    ("edm_dpm2_v", dict(prediction_type="v_prediction"), [2, 5, 12]),
    ("edm_dpm3_v_exponential", dict(solver_order=3, prediction_type="v_prediction", sigma_schedule="exponential"), [2, 5, 12]),
    ("edm_dpm2_sigma_min", dict(final_sigmas_type="sigma_min"), [2, 5, 12]),
    ("edm_dpm3_sigma_min_no_lower", dict(solver_order=3, final_sigmas_type="sigma_min", lower_order_final=False), [3, 5, 20]),
    ("edm_dpm3_euler_at_final", dict(solver_order=3, euler_at_final=True, lower_order_final=False, final_sigmas_type="sigma_min"), [5, 20]),
    ("edm_sde1", dict(solver_order=1, algorithm_type="sde-dpmsolver++"), [2, 5]),
    ("edm_sde2", dict(algorithm_type="sde-dpmsolver++"), [1, 2, 5, 12]),
    ("edm_sde2_heun", dict(algorithm_type="sde-dpmsolver++", solver_type="heun"), [2, 5]),
    ("edm_dpm2_threshold", dict(thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=3.0), [2, 5, 12]),
    ("edm_dpm2_bounds", dict(sigma_min=0.01, sigma_max=120.0, sigma_data=1.0, rho=5.0), [5, 12]),
]

LCM = [
    ("lcm", dict(), [1, 2, 4, 8, 50]),
    ("lcm_v", dict(prediction_type="v_prediction"), [2, 4]),
    ("lcm_sample_clip", dict(prediction_type="sample", clip_sample=True, clip_sample_range=0.5), [4]),
    ("lcm_threshold", dict(thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=1.5), [4]),
    ("lcm_original100", dict(original_inference_steps=100), [3, 7]),
    ("lcm_scaling5", dict(timestep_scaling=5.0), [4]),
    ("lcm_linear", dict(beta_schedule="linear", beta_start=0.0001, beta_end=0.02), [4]),
    ("lcm_custom", dict(timesteps=[999, 759, 499, 259]), [4]),
    ("lcm_custom_off_grid", dict(timesteps=[899, 500, 3]), [3]),
]

STEP_ARGS = ("s_churn", "s_tmin", "s_tmax", "s_noise")


def load_variant(src_dir, wide):
    schedulers = os.path.join(src_dir, "schedulers")
    out = {}
    tmp = tempfile.mkdtemp(prefix="diffusers_f64_")
    for name in MODULES:
        path = os.path.join(schedulers, name + ".py")
        if wide:
            text = open(path).read().replace("torch.float32", "torch.float64").replace("np.float32", "np.float64")
            path = os.path.join(tmp, name + ".py")
            open(path, "w").write(text)
        base.install_stubs(schedulers)
        out[name] = base.load_module(path, name)
    return out


def run_case(cls, family, options, n, dtype, seed):
    options = dict(options)
    step_args = {k: options.pop(k) for k in STEP_ARGS if k in options}
    ramp = options.pop("ramp", None)
    timesteps = options.pop("timesteps", None)
    scheduler = cls(**options)
    if ramp is not None:
        scheduler.set_timesteps(sigmas=torch.tensor(ramp, dtype=torch.float64))
    elif timesteps is not None:
        scheduler.set_timesteps(timesteps=timesteps)
    else:
        scheduler.set_timesteps(n)
    rng = np.random.default_rng(seed)
    z = torch.from_numpy(rng.standard_normal(SHAPE)).to(dtype)
    latents = z * scheduler.init_noise_sigma
    steps = []
    for t in scheduler.timesteps:
        noise = torch.from_numpy(rng.standard_normal(SHAPE)).to(dtype)
        x_in = scheduler.scale_model_input(latents, t)
        out = base.model(x_in, t)
        base.NOISE_QUEUE.clear()
        base.NOISE_QUEUE.append(noise)
        prev = scheduler.step(out, t, latents, **step_args).prev_sample
        uses_noise = not base.NOISE_QUEUE  # the step drew it
        steps.append({
            "timestep": float(t),
            "model_input": x_in.flatten().tolist(),
            "model_output": out.flatten().tolist(),
            "noise": noise.flatten().tolist() if uses_noise else [],
            "prev_sample": prev.flatten().tolist(),
        })
        latents = prev
    # diffusers' float32 EDM DPM-Solver at order 3 with a sigma_min final and lower_order_final = False
    # divides 0 by 0 on its last step (the rounded final σ_min lies a hair above the last Karras σ):
    # those NaNs are written as null and the case is flagged.
    nan_steps = [k for k, s in enumerate(steps) if any(v != v for v in s["prev_sample"])]
    for k in nan_steps:
        steps[k]["prev_sample"] = [None if v != v else v for v in steps[k]["prev_sample"]]
    sigmas = getattr(scheduler, "sigmas", None) if family != "lcm" else None
    return {
        "steps": len(steps),
        "evaluations": len(steps),
        "initial_noise": z.flatten().tolist(),
        "init_noise_sigma": float(scheduler.init_noise_sigma),
        "sigmas": [float(s) for s in sigmas] if sigmas is not None else [],
        "timesteps": [float(t) for t in scheduler.timesteps],
        "trajectory": steps,
        "diffusers_nan_steps": nan_steps,
    }


def make(src_dir, wide):
    torch.set_default_dtype(torch.float64 if wide else torch.float32)
    modules = load_variant(src_dir, wide)
    dtype = torch.float64 if wide else torch.float32
    classes = {
        "edm_euler": modules["scheduling_edm_euler"].EDMEulerScheduler,
        "edm_dpm": modules["scheduling_edm_dpmsolver_multistep"].EDMDPMSolverMultistepScheduler,
        "lcm": modules["scheduling_lcm"].LCMScheduler,
    }
    cases = []
    seed = 4000
    for family, table in (("edm_euler", EDM_EULER), ("edm_dpm", EDM_DPM), ("lcm", LCM)):
        for name, options, counts in table:
            for n in counts:
                seed += 1
                case = run_case(classes[family], family, options, n, dtype, seed)
                case.update({"name": name, "family": family, "options": options})
                cases.append(case)
    torch.set_default_dtype(torch.float32)
    return cases


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    src_dir = sys.argv[1]
    out_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "edm_lcm")
    base.write_variants(out_dir, "edm_lcm", lambda wide: make(src_dir, wide),
                        variants=("float64 dtype literals, float64 default dtype", "verbatim float32"))


if __name__ == "__main__":
    main()
