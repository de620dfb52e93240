#!/usr/bin/python3
"""Chained trajectories of diffusers' own multistep and Euler schedulers, for tests/test_solvers.cpp.

usage: /usr/bin/python3 tools/make_solver_fixtures.py DIFFUSERS_SRC_DIR [OUT_DIR]

DIFFUSERS_SRC_DIR is a diffusers checkout's src/diffusers folder (the fixtures in tests/fixtures/solvers/
were made from commit 58eb52c0803ea9af3abec60841c2a093bdf1f951, version 0.40.0.dev0). The scheduler
modules scheduling_dpmsolver_multistep.py, scheduling_euler_discrete.py,
scheduling_euler_ancestral_discrete.py, scheduling_heun_discrete.py, scheduling_unipc_multistep.py,
scheduling_ddpm.py and scheduling_ddim.py are imported from there unchanged; only the framework imports
they make are stubbed (configuration_utils' ConfigMixin / register_to_config, which record the
constructor's arguments as the config; utils' deprecate, logging, BaseOutput, is_scipy_available;
scheduling_utils' SchedulerMixin / SchedulerOutput / KarrasDiffusionSchedulers; torch_utils'
randn_tensor, which hands out the noise this script supplies). No stub does arithmetic. torch and numpy
are the real ones (Debian's python3-torch 1.13, numpy 1.24).

Two variants are written:
  - solvers_float64.json: the same modules with every "float32" dtype literal (torch.float32,
    np.float32) replaced by "float64", and float64 tensors: the reference the C++ double path matches
    to 1e-12;
  - solvers_float32.json: the modules verbatim, float32 tensors (diffusers as pipelines run it).

Each case runs the pipeline loop diffusers' pipelines run: latents = z·init_noise_sigma; per step
input = scale_model_input(latents, t); out = model(input, t); latents = step(out, t, latents, ...).prev_sample,
with a closed-form fake model out = 0.9·tanh(input) + 0.1·sin(0.01·t + 0.5·i) (i the flat element
index) and standard normal noise from numpy's PCG64 (seeded per case). Every step records the model
input, the timestep as passed, the model output, the noise given to the step (SDE / ancestral / churn)
and prev_sample.
"""
import enum
import functools
import importlib.util
import inspect
import json
import logging as pylogging
import os
import sys
import tempfile
import types
from dataclasses import dataclass

import numpy as np
import torch

SHAPE = (2, 1, 3)  # batch, channels, spatial: 6 elements
MODULES = ["scheduling_dpmsolver_multistep", "scheduling_euler_discrete", "scheduling_euler_ancestral_discrete",
           "scheduling_heun_discrete", "scheduling_unipc_multistep", "scheduling_ddpm", "scheduling_ddim"]


# ---------------------------------------------------------------------------------------------------
# Framework stubs (no arithmetic).

class _Config(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)

    def __setattr__(self, name, value):
        self[name] = value


def register_to_config(init):
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        self._internal_dict = _Config({k: v for k, v in bound.arguments.items() if k != "self"})
        init(self, *args, **kwargs)

    return wrapper


class ConfigMixin:
    @property
    def config(self):
        return self._internal_dict

    def register_to_config(self, **kwargs):
        self._internal_dict.update(kwargs)


class BaseOutput:
    pass


@dataclass
class SchedulerOutput(BaseOutput):
    prev_sample: torch.Tensor


class SchedulerMixin:
    pass


class KarrasDiffusionSchedulers(enum.Enum):
    placeholder = 1


NOISE_QUEUE = []


def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
    tensor = NOISE_QUEUE.pop(0)
    assert tuple(tensor.shape) == tuple(shape)
    return tensor.to(dtype=dtype)


def deprecate(*args, **kwargs):
    pass


def install_stubs(schedulers_dir):
    root = types.ModuleType("diffusers")
    root.__path__ = []
    cfg = types.ModuleType("diffusers.configuration_utils")
    cfg.ConfigMixin, cfg.register_to_config = ConfigMixin, register_to_config
    utils = types.ModuleType("diffusers.utils")
    utils.__path__ = []
    utils.BaseOutput, utils.deprecate = BaseOutput, deprecate
    utils.is_scipy_available = lambda: True  # the real scipy: _convert_to_beta calls scipy.stats.beta.ppf
    utils.logging = types.SimpleNamespace(get_logger=pylogging.getLogger)
    torch_utils = types.ModuleType("diffusers.utils.torch_utils")
    torch_utils.randn_tensor = randn_tensor
    sched = types.ModuleType("diffusers.schedulers")
    sched.__path__ = [schedulers_dir]
    sutils = types.ModuleType("diffusers.schedulers.scheduling_utils")
    sutils.SchedulerMixin, sutils.SchedulerOutput = SchedulerMixin, SchedulerOutput
    sutils.KarrasDiffusionSchedulers = KarrasDiffusionSchedulers
    for name, mod in [("diffusers", root), ("diffusers.configuration_utils", cfg), ("diffusers.utils", utils),
                      ("diffusers.utils.torch_utils", torch_utils), ("diffusers.schedulers", sched),
                      ("diffusers.schedulers.scheduling_utils", sutils)]:
        sys.modules[name] = mod


def load_module(path, name):
    spec = importlib.util.spec_from_file_location("diffusers.schedulers." + name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def load_variant(src_dir, wide):
    """The three modules, verbatim or with float32 dtype literals widened to float64."""
    schedulers = os.path.join(src_dir, "schedulers")
    out = {}
    tmp = tempfile.mkdtemp(prefix="diffusers_f64_")
    for name in MODULES:
        path = os.path.join(schedulers, name + ".py")
        if wide:
            text = open(path).read().replace("torch.float32", "torch.float64").replace("np.float32", "np.float64")
            path = os.path.join(tmp, name + ".py")
            open(path, "w").write(text)
        install_stubs(schedulers)
        out[name] = load_module(path, name)
    return out


# ---------------------------------------------------------------------------------------------------
# The cases.

def model(x, t):
    i = torch.arange(x.numel(), dtype=x.dtype).reshape(x.shape)
    return 0.9 * torch.tanh(x) + 0.1 * torch.sin(0.01 * float(t) + 0.5 * i)


SCHEDULES = {
    "linear": dict(beta_schedule="linear", beta_start=0.0001, beta_end=0.02),
    "scaled_linear": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    "cosine": dict(beta_schedule="squaredcos_cap_v2"),
}

SHORT = [1, 2, 3, 5, 12]
LONG = [1, 2, 3, 5, 12, 50]

DPM = [
    ("dpm1", dict(solver_order=1), SHORT),
    ("dpm2", dict(solver_order=2), LONG),
    ("dpm3", dict(solver_order=3), LONG),
    ("dpm2_heun", dict(solver_order=2, solver_type="heun"), SHORT),
    ("dpm2_v", dict(solver_order=2, prediction_type="v_prediction"), SHORT),
    ("dpm3_x0", dict(solver_order=3, prediction_type="sample"), SHORT),
    ("dpm2_karras", dict(solver_order=2, use_karras_sigmas=True, schedule="scaled_linear"), LONG),
    ("dpm3_karras", dict(solver_order=3, use_karras_sigmas=True, schedule="scaled_linear"), SHORT),
    ("dpm2_exponential", dict(solver_order=2, use_exponential_sigmas=True), SHORT),
    ("dpm2_lu", dict(solver_order=2, use_lu_lambdas=True), SHORT),
    ("dpm2_sigma_min", dict(solver_order=2, final_sigmas_type="sigma_min"), SHORT),
    ("dpm3_sigma_min_no_lower", dict(solver_order=3, final_sigmas_type="sigma_min", lower_order_final=False), [3, 5, 12, 20]),
    ("dpm3_euler_at_final", dict(solver_order=3, euler_at_final=True, lower_order_final=False, final_sigmas_type="sigma_min"), [5, 20]),
    ("dpm2_leading", dict(solver_order=2, timestep_spacing="leading", steps_offset=1), SHORT),
    ("dpm2_trailing", dict(solver_order=2, timestep_spacing="trailing"), SHORT),
    ("dpm2_cosine_clipped", dict(solver_order=2, schedule="cosine", lambda_min_clipped=-5.1), SHORT),
    ("dpm2_zero_snr_v", dict(solver_order=2, rescale_betas_zero_snr=True, prediction_type="v_prediction",
                             timestep_spacing="trailing"), SHORT),
    ("dpm2_threshold", dict(solver_order=2, thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=3.0), SHORT),
    ("dpm3_threshold_v", dict(solver_order=3, thresholding=True, dynamic_thresholding_ratio=0.8, sample_max_value=2.0,
                              prediction_type="v_prediction"), SHORT),
    ("eps_dpm1", dict(solver_order=1, algorithm_type="dpmsolver", final_sigmas_type="sigma_min"), SHORT),
    ("eps_dpm2", dict(solver_order=2, algorithm_type="dpmsolver", final_sigmas_type="sigma_min"), SHORT),
    ("eps_dpm2_heun_v", dict(solver_order=2, algorithm_type="dpmsolver", solver_type="heun", prediction_type="v_prediction",
                             final_sigmas_type="sigma_min"), SHORT),
    ("eps_dpm3_x0", dict(solver_order=3, algorithm_type="dpmsolver", prediction_type="sample", final_sigmas_type="sigma_min"), SHORT),
    ("eps_sde1", dict(solver_order=1, algorithm_type="sde-dpmsolver", final_sigmas_type="sigma_min"), SHORT),
    ("eps_sde2", dict(solver_order=2, algorithm_type="sde-dpmsolver", final_sigmas_type="sigma_min"), SHORT),
    ("eps_sde2_heun", dict(solver_order=2, algorithm_type="sde-dpmsolver", solver_type="heun", final_sigmas_type="sigma_min"), SHORT),
    ("sde2", dict(solver_order=2, algorithm_type="sde-dpmsolver++"), LONG),
    ("sde2_heun", dict(solver_order=2, algorithm_type="sde-dpmsolver++", solver_type="heun"), SHORT),
    ("sde3", dict(solver_order=3, algorithm_type="sde-dpmsolver++"), SHORT),
]

EULER = [
    ("euler", dict(), LONG),
    ("euler_leading", dict(timestep_spacing="leading", steps_offset=1), SHORT),
    ("euler_trailing", dict(timestep_spacing="trailing"), SHORT),
    ("euler_v", dict(prediction_type="v_prediction"), SHORT),
    ("euler_x0", dict(prediction_type="sample"), SHORT),
    ("euler_karras", dict(use_karras_sigmas=True, schedule="scaled_linear"), LONG),
    ("euler_exponential", dict(use_exponential_sigmas=True), SHORT),
    ("euler_karras_sigma_min", dict(use_karras_sigmas=True, final_sigmas_type="sigma_min"), SHORT),
    ("euler_churn", dict(s_churn=1.0, s_tmin=0.5, s_tmax=50.0), SHORT),
    ("euler_log_linear", dict(interpolation_type="log_linear"), SHORT),
    ("euler_continuous_v", dict(timestep_type="continuous", prediction_type="v_prediction", use_karras_sigmas=True), SHORT),
    ("euler_zero_snr_v", dict(rescale_betas_zero_snr=True, prediction_type="v_prediction", timestep_spacing="trailing"), SHORT),
]

ANCESTRAL = [
    ("euler_ancestral", dict(), LONG),
    ("euler_ancestral_v", dict(prediction_type="v_prediction"), SHORT),
    ("euler_ancestral_leading", dict(timestep_spacing="leading", steps_offset=1), SHORT),
]

UNIPC = [
    ("unipc1", dict(solver_order=1), SHORT),
    ("unipc2", dict(solver_order=2), LONG),
    ("unipc3", dict(solver_order=3), LONG),
    ("unipc2_bh1", dict(solver_order=2, solver_type="bh1", final_sigmas_type="sigma_min"), SHORT),
    ("unipc3_bh1", dict(solver_order=3, solver_type="bh1", final_sigmas_type="sigma_min"), SHORT),
    ("unipc2_v", dict(solver_order=2, prediction_type="v_prediction"), SHORT),
    ("unipc3_x0", dict(solver_order=3, prediction_type="sample"), SHORT),
    ("unipc2_noise_form", dict(solver_order=2, predict_x0=False, final_sigmas_type="sigma_min"), SHORT),
    ("unipc3_noise_form_v", dict(solver_order=3, predict_x0=False, prediction_type="v_prediction", final_sigmas_type="sigma_min"), SHORT),
    ("unipc3_no_lower", dict(solver_order=3, lower_order_final=False, final_sigmas_type="sigma_min"), [3, 5, 12, 20]),
    ("unipc2_disable_corrector", dict(solver_order=2, disable_corrector=[0, 2]), SHORT),
    ("unipc2_karras", dict(solver_order=2, use_karras_sigmas=True, schedule="scaled_linear"), SHORT),
    ("unipc2_leading", dict(solver_order=2, timestep_spacing="leading", steps_offset=1), SHORT),
    ("unipc2_trailing", dict(solver_order=2, timestep_spacing="trailing"), SHORT),
    ("unipc2_threshold", dict(solver_order=2, thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=3.0), SHORT),
    ("unipc3_threshold_v", dict(solver_order=3, thresholding=True, dynamic_thresholding_ratio=0.8, sample_max_value=2.0,
                                prediction_type="v_prediction"), SHORT),
    ("unipc2_zero_snr_v", dict(solver_order=2, rescale_betas_zero_snr=True, prediction_type="v_prediction",
                               timestep_spacing="trailing"), SHORT),
]

HEUN = [
    ("heun", dict(), LONG),
    ("heun_karras", dict(use_karras_sigmas=True, schedule="scaled_linear"), SHORT),
    ("heun_exponential", dict(use_exponential_sigmas=True), SHORT),
    ("heun_v", dict(prediction_type="v_prediction"), SHORT),
    ("heun_x0_clip", dict(prediction_type="sample", clip_sample=True, clip_sample_range=0.5), SHORT),
    ("heun_leading", dict(timestep_spacing="leading", steps_offset=1), SHORT),
]

# use_beta_sigmas (Beta(0.6, 0.6) quantiles from scipy.stats), run after every table above so that the
# seeds, hence the noise, of the earlier cases stay what they were.
BETA = [
    ("dpm", "dpm2_beta", dict(solver_order=2, use_beta_sigmas=True), SHORT),
    ("dpm", "dpm3_beta_sigma_min", dict(solver_order=3, use_beta_sigmas=True, final_sigmas_type="sigma_min",
                                        schedule="scaled_linear"), SHORT),
    ("dpm", "sde2_beta", dict(solver_order=2, algorithm_type="sde-dpmsolver++", use_beta_sigmas=True), SHORT),
    ("unipc", "unipc2_beta", dict(solver_order=2, use_beta_sigmas=True), SHORT),
    # Not N = 1: UniPC's final sigma_min is the last converted σ, which for one step is σ_max itself (a step
    # from σ_max to σ_max); diffuse ends at the table's σ_0, as DPM-Solver does.
    ("unipc", "unipc3_beta_sigma_min", dict(solver_order=3, use_beta_sigmas=True, final_sigmas_type="sigma_min"), [2, 3, 5, 12]),
    ("euler", "euler_beta", dict(use_beta_sigmas=True), SHORT),
    ("euler", "euler_beta_bounds", dict(use_beta_sigmas=True, sigma_min=0.05, sigma_max=10.0, schedule="scaled_linear"), SHORT),
    ("heun", "heun_beta", dict(use_beta_sigmas=True), SHORT),
]

# DDPMScheduler and DDIMScheduler as diffusers runs them, for diffuse's diffusers-exact mode: the DDIM
# previous timestep t − T/N (linspace and uneven trailing lists), DDPM noise on a last step with t > 0
# (trailing, offset leading), and the float32 tables of the verbatim variant.
DDIM_DDPM = [
    ("ddim", "ddim_linspace", dict(timestep_spacing="linspace"), [7, 10]),
    ("ddim", "ddim_trailing", dict(timestep_spacing="trailing"), [7]),
    ("ddim", "ddim_leading_offset", dict(timestep_spacing="leading", steps_offset=1), [10]),
    ("ddim", "ddim_eta1_trailing", dict(timestep_spacing="trailing", eta=1.0), [7]),
    ("ddim", "ddim_eta05_clipped_output", dict(eta=0.5, use_clipped_model_output=True, timestep_spacing="linspace"), [7]),
    ("ddim", "ddim_v_no_clip_alpha0", dict(prediction_type="v_prediction", clip_sample=False, set_alpha_to_one=False,
                                           timestep_spacing="linspace", schedule="scaled_linear"), [7]),
    ("ddim", "ddim_cosine_trailing", dict(schedule="cosine", timestep_spacing="trailing"), [10]),
    ("ddpm", "ddpm_trailing", dict(timestep_spacing="trailing"), [10]),
    ("ddpm", "ddpm_trailing_large", dict(timestep_spacing="trailing", variance_type="fixed_large"), [10]),
    ("ddpm", "ddpm_leading_offset_large", dict(timestep_spacing="leading", steps_offset=1, variance_type="fixed_large",
                                               schedule="scaled_linear"), [10]),
    ("ddpm", "ddpm_linspace_v", dict(timestep_spacing="linspace", prediction_type="v_prediction", clip_sample=False), [7]),
    ("ddpm", "ddpm_cosine_leading", dict(schedule="cosine"), [10]),
]

STEP_ARGS = ("s_churn", "s_tmin", "s_tmax", "eta", "use_clipped_model_output")


def run_case(cls, family, options, n, dtype, seed):
    options = dict(options)
    schedule = options.pop("schedule", "linear")
    step_args = {k: options.pop(k) for k in STEP_ARGS if k in options}
    scheduler = cls(num_train_timesteps=1000, **SCHEDULES[schedule], **options)
    scheduler.set_timesteps(n)
    rng = np.random.default_rng(seed)
    z = torch.from_numpy(rng.standard_normal(SHAPE)).to(dtype)
    latents = z * scheduler.init_noise_sigma
    steps = []
    for t in scheduler.timesteps:
        noise = torch.from_numpy(rng.standard_normal(SHAPE)).to(dtype)
        x_in = scheduler.scale_model_input(latents, t)
        out = model(x_in, t)
        NOISE_QUEUE.clear()
        if family == "unipc":
            prev = scheduler.step(out, t, latents).prev_sample
            uses_noise = False
        elif family == "dpm":
            uses_noise = scheduler.config.algorithm_type.startswith("sde")
            prev = scheduler.step(out, t, latents, variance_noise=noise if uses_noise else None).prev_sample
        else:
            NOISE_QUEUE.append(noise)
            prev = scheduler.step(out, t, latents, **step_args).prev_sample
            uses_noise = not NOISE_QUEUE  # the step drew it
        steps.append({
            "timestep": float(t),
            "model_input": x_in.flatten().tolist(),
            "model_output": out.flatten().tolist(),
            "noise": noise.flatten().tolist() if uses_noise else [],
            "prev_sample": prev.flatten().tolist(),
        })
        latents = prev
    return {
        "steps": n,
        "evaluations": len(steps),
        "initial_noise": z.flatten().tolist(),
        "init_noise_sigma": float(scheduler.init_noise_sigma),
        "sigmas": [float(s) for s in getattr(scheduler, "sigmas", [])],
        "trajectory": steps,
    }


def make(src_dir, wide):
    modules = load_variant(src_dir, wide)
    dtype = torch.float64 if wide else torch.float32
    classes = {
        "dpm": modules["scheduling_dpmsolver_multistep"].DPMSolverMultistepScheduler,
        "euler": modules["scheduling_euler_discrete"].EulerDiscreteScheduler,
        "euler_ancestral": modules["scheduling_euler_ancestral_discrete"].EulerAncestralDiscreteScheduler,
        "heun": modules["scheduling_heun_discrete"].HeunDiscreteScheduler,
        "unipc": modules["scheduling_unipc_multistep"].UniPCMultistepScheduler,
        "ddpm": modules["scheduling_ddpm"].DDPMScheduler,
        "ddim": modules["scheduling_ddim"].DDIMScheduler,
    }
    cases = []
    seed = 17
    for family, table in (("dpm", DPM), ("euler", EULER), ("euler_ancestral", ANCESTRAL), ("heun", HEUN),
                          ("unipc", UNIPC)):
        for name, options, counts in table:
            for n in counts:
                seed += 1
                case = run_case(classes[family], family, options, n, dtype, seed)
                case.update({"name": name, "family": family, "options": options})
                cases.append(case)
    for family, name, options, counts in BETA + DDIM_DDPM:
        for n in counts:
            seed += 1
            case = run_case(classes[family], family, options, n, dtype, seed)
            case.update({"name": name, "family": family, "options": options})
            cases.append(case)
    return cases


def tables(src_dir, wide):
    """DDPMScheduler's alphas_cumprod per schedule (float32 in the verbatim variant), bit for bit."""
    cls = load_variant(src_dir, wide)["scheduling_ddpm"].DDPMScheduler
    return {name: [float(v) for v in cls(num_train_timesteps=1000, **sched).alphas_cumprod] for name, sched in SCHEDULES.items()}


def write_variants(out_dir, stem, make_cases, variants=("float64 dtype literals", "verbatim float32"), extra=lambda wide: {}):
    """Writes <stem>_float64.json and <stem>_float32.json: make_cases(wide) with the provenance fields every
    fixture file of diffusers' schedulers carries (the commit these were made from, torch, numpy, shape)."""
    os.makedirs(out_dir, exist_ok=True)
    for wide, variant in ((True, variants[0]), (False, variants[1])):
        name = f"{stem}_{'float64' if wide else 'float32'}.json"
        cases = make_cases(wide)
        meta = {"diffusers_commit": "58eb52c0803ea9af3abec60841c2a093bdf1f951", "diffusers_version": "0.40.0.dev0",
                "torch": torch.__version__, "numpy": np.__version__, "shape": list(SHAPE), "variant": variant,
                **extra(wide), "cases": cases}
        with open(os.path.join(out_dir, name), "w") as f:
            json.dump(meta, f, separators=(",", ":"))
        print(name, len(cases), "cases")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    src_dir = sys.argv[1]
    out_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "solvers")
    write_variants(out_dir, "solvers", lambda wide: make(src_dir, wide), extra=lambda wide: {"alphas_cumprod": tables(src_dir, wide)})


if __name__ == "__main__":
    main()
