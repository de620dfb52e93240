#!/usr/bin/python3
"""Chained trajectories of diffusers' own FlowMatchEulerDiscreteScheduler and FlowMatchHeunDiscreteScheduler, for
tests/test_flow_match.cpp.

usage: /usr/bin/python3 tools/make_flow_fixtures.py DIFFUSERS_SRC_DIR [OUT_DIR]

DIFFUSERS_SRC_DIR is a diffusers checkout's src/diffusers folder (the fixtures in tests/fixtures/flow/ were
made from commit 58eb52c0803ea9af3abec60841c2a093bdf1f951, version 0.40.0.dev0). The module
schedulers/scheduling_flow_match_euler_discrete.py is imported from there unchanged, with the framework stubs of
tools/make_solver_fixtures.py (config recording, logging, BaseOutput, randn_tensor handing out the noise this script
supplies; no stub does arithmetic). torch and numpy are the real ones.

Two variants, as for the other solvers:
  - flow_float64.json: every "float32" dtype literal of the module replaced by "float64", float64 tensors (the
    reference the C++ double path matches to 1e-12);
  - flow_float32.json: the module verbatim, float32 tensors (diffusers as pipelines run it).

Each case runs the loop diffusers' flow pipelines (SD3, Flux) run: latents = z (no init_noise_sigma, no
scale_model_input); per step out = model(latents, t); latents = step(out, t, latents).prev_sample, with the closed-form
fake model 0.9·tanh(x) + 0.1·sin(0.01·t + 0.5·i) of make_solver_fixtures.py, and the noise of stochastic sampling
from numpy's PCG64. Every case records the grid (scheduler.sigmas, scheduler.timesteps) and every step. mu, custom
sigmas and custom timesteps are arguments of set_timesteps and are recorded with the case.

FlowMatchHeunDiscreteScheduler (schedulers/scheduling_flow_match_heun_discrete.py, same stubs, same two variants) is
run the same way into flow_heun_float64.json and flow_heun_float32.json: its timesteps list interleaves each model
time twice (predictor, corrector), and every model evaluation is recorded as one step.

DPMSolverMultistepScheduler and UniPCMultistepScheduler (scheduling_dpmsolver_multistep.py,
scheduling_unipc_multistep.py, same stubs, same two variants) with use_flow_sigmas = True and prediction_type
"flow_prediction" are run into flow_multistep_float64.json and flow_multistep_float32.json with the loop of
diffusers' flow pipelines that use them (Wan, SANA): latents = z, out = model(latents, t) with t the int64
timestep, latents = step(out, t, latents).prev_sample; the noise of sde-dpmsolver++ from numpy's PCG64 as above.

The "double_shift_*" entries record what the module does with a static shift and no custom list: the training
table's σ_min is shifted in __init__, set_timesteps spaces N points between σ_max and that shifted σ_min and then
shifts every point again (diffusers issue 13243); "single_shift" is the same grid with the shift applied once
(linspace(1, 1/T, N) passed as custom sigmas, which the module shifts once).
"""
import json
import math
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_solver_fixtures as base  # noqa: E402

SHAPE = base.SHAPE
MODULE = "scheduling_flow_match_euler_discrete"
SHORT = [1, 2, 3, 5, 12]
LONG = [1, 2, 3, 5, 12, 28, 50]


def calculate_shift(seq_len, base_seq_len=256, max_seq_len=4096, base_shift=0.5, max_shift=1.15):
    # The pipelines' helper (pipeline_flux.py), restated: the line through the two (length, μ) points.
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return seq_len * m + (base_shift - m * base_seq_len)


def flux_sigmas(n):
    return list(np.linspace(1.0, 1 / n, n))


# name, config, set_timesteps extras (a function of N), step counts
CASES = [
    ("flow", dict(), None, LONG),
    ("flow_shift3", dict(shift=3.0), None, LONG),
    ("flow_shift0.5", dict(shift=0.5), None, SHORT),
    ("flow_shift3_sigmas", dict(shift=3.0), lambda n: dict(sigmas=flux_sigmas(n)), SHORT),
    ("flow_shift3_timesteps", dict(shift=3.0), lambda n: dict(timesteps=[1000.0 * (1 - k / (n + 1)) for k in range(n)]), SHORT),
    ("flow_dynamic", dict(use_dynamic_shifting=True), lambda n: dict(mu=calculate_shift(4096)), SHORT),
    ("flow_dynamic_sigmas", dict(use_dynamic_shifting=True), lambda n: dict(sigmas=flux_sigmas(n), mu=calculate_shift(1024)), LONG),
    ("flow_dynamic_linear", dict(use_dynamic_shifting=True, time_shift_type="linear"), lambda n: dict(mu=0.8), SHORT),
    ("flow_shift_terminal", dict(shift=3.0, shift_terminal=0.1), None, [2, 3, 5, 12]),
    ("flow_dynamic_terminal", dict(use_dynamic_shifting=True, shift_terminal=0.02), lambda n: dict(mu=1.5), [2, 3, 5, 12]),
    ("flow_invert", dict(invert_sigmas=True), None, SHORT),
    ("flow_invert_shift3", dict(invert_sigmas=True, shift=3.0), None, SHORT),
    ("flow_stochastic", dict(stochastic_sampling=True), None, SHORT),
    ("flow_stochastic_shift3", dict(stochastic_sampling=True, shift=3.0), None, [5, 12]),
    ("flow_T100", dict(num_train_timesteps=100, shift=2.0), None, SHORT),
]


HEUN_MODULE = "scheduling_flow_match_heun_discrete"
# name, config, step counts (the class has only num_train_timesteps and shift)
HEUN_CASES = [
    ("flow_heun", dict(), [1, 2, 3, 5, 12, 28]),
    ("flow_heun_shift3", dict(shift=3.0), [1, 2, 3, 5, 12, 28]),
    ("flow_heun_shift0.5", dict(shift=0.5), [2, 5]),
    ("flow_heun_T100", dict(num_train_timesteps=100, shift=2.0), [1, 3, 12]),
]


def load(src_dir, wide, module=MODULE, cls_name="FlowMatchEulerDiscreteScheduler"):
    path = os.path.join(src_dir, "schedulers", module + ".py")
    if wide:
        text = open(path).read().replace("torch.float32", "torch.float64").replace("np.float32", "np.float64")
        path = os.path.join(tempfile.mkdtemp(prefix="diffusers_f64_"), module + ".py")
        open(path, "w").write(text)
    base.install_stubs(os.path.join(src_dir, "schedulers"))
    return getattr(base.load_module(path, module), cls_name)


def run_case(cls, config, extras, n, dtype, seed):
    scheduler = cls(**config)
    args = extras(n) if extras else {}
    if "sigmas" in args or "timesteps" in args:
        scheduler.set_timesteps(**args)  # N is the list's length
    else:
        scheduler.set_timesteps(n, **args)
    rng = np.random.default_rng(seed)
    z = torch.from_numpy(rng.standard_normal(SHAPE)).to(dtype)
    latents = z
    steps = []
    for t in scheduler.timesteps:
        noise = torch.from_numpy(rng.standard_normal(SHAPE)).to(dtype)
        out = base.model(latents, t)
        base.NOISE_QUEUE.clear()
        base.NOISE_QUEUE.append(noise)
        prev = scheduler.step(out, t, latents).prev_sample
        uses_noise = not base.NOISE_QUEUE
        steps.append({"timestep": float(t), "model_input": latents.flatten().tolist(), "model_output": out.flatten().tolist(),
                      "noise": noise.flatten().tolist() if uses_noise else [], "prev_sample": prev.flatten().tolist()})
        latents = prev
    return {"steps": n, "initial_noise": z.flatten().tolist(), "sigmas": [float(s) for s in scheduler.sigmas],
            "timesteps": [float(t) for t in scheduler.timesteps], "set_timesteps": {k: [float(x) for x in v] if isinstance(v, list) else v
                                                                                 for k, v in args.items()},
            "trajectory": steps}


def make(src_dir, wide):
    cls = load(src_dir, wide)
    dtype = torch.float64 if wide else torch.float32
    cases, seed = [], 101
    for name, config, extras, counts in CASES:
        for n in counts:
            seed += 1
            case = run_case(cls, config, extras, n, dtype, seed)
            case.update({"name": name, "config": config})
            cases.append(case)
    # The double shift: the module's own grid versus the singly shifted one, at N = 10, shift 3.
    grids = {}
    for label, args in (("double_shift_default", {}), ("single_shift", dict(sigmas=list(np.linspace(1.0, 1.0 / 1000, 10))))):
        s = cls(shift=3.0)
        if args:
            s.set_timesteps(**args)
        else:
            s.set_timesteps(10)
        grids[label] = [float(v) for v in s.sigmas]
    return cases, grids


def make_heun(src_dir, wide):
    cls = load(src_dir, wide, HEUN_MODULE, "FlowMatchHeunDiscreteScheduler")
    dtype = torch.float64 if wide else torch.float32
    cases, seed = [], 501
    for name, config, counts in HEUN_CASES:
        for n in counts:
            seed += 1
            scheduler = cls(**config)
            scheduler.set_timesteps(n)
            rng = np.random.default_rng(seed)
            z = torch.from_numpy(rng.standard_normal(SHAPE)).to(dtype)
            latents = z
            steps = []
            for t in scheduler.timesteps:
                out = base.model(latents, t)
                prev = scheduler.step(out, t, latents).prev_sample
                steps.append({"timestep": float(t), "model_input": latents.flatten().tolist(), "model_output": out.flatten().tolist(),
                              "prev_sample": prev.flatten().tolist()})
                latents = prev
            cases.append({"name": name, "config": config, "steps": n, "initial_noise": z.flatten().tolist(),
                          "sigmas": [float(v) for v in scheduler.sigmas], "timesteps": [float(v) for v in scheduler.timesteps],
                          "trajectory": steps})
    return cases


MULTISTEP_CASES = [
    # name, module, class, config, set_timesteps extras, step counts
    ("dpm_flow_2m_shift3", "scheduling_dpmsolver_multistep", "DPMSolverMultistepScheduler", dict(flow_shift=3.0), {}, [1, 2, 3, 5, 12, 20]),
    ("dpm_flow_3m", "scheduling_dpmsolver_multistep", "DPMSolverMultistepScheduler", dict(solver_order=3), {}, [3, 5, 12]),
    ("dpm_flow_2m_heun_sigma_min", "scheduling_dpmsolver_multistep", "DPMSolverMultistepScheduler",
     dict(flow_shift=3.0, solver_type="heun", final_sigmas_type="sigma_min"), {}, [5, 12]),
    ("dpm_flow_sde_2m", "scheduling_dpmsolver_multistep", "DPMSolverMultistepScheduler",
     dict(flow_shift=2.0, algorithm_type="sde-dpmsolver++"), {}, [5, 12]),
    ("dpm_flow_dynamic", "scheduling_dpmsolver_multistep", "DPMSolverMultistepScheduler", dict(use_dynamic_shifting=True), dict(mu=0.8), [5, 12]),
    ("unipc_flow_bh2_shift3", "scheduling_unipc_multistep", "UniPCMultistepScheduler", dict(flow_shift=3.0), {}, [1, 2, 3, 5, 12, 20]),
    # bh1 into a final sigma of 0 gives NaN in the module (B(h) = -h is -inf there, then inf - inf): not a case.
    ("unipc_flow_bh2_3", "scheduling_unipc_multistep", "UniPCMultistepScheduler", dict(solver_order=3), {}, [3, 5, 12]),
    ("unipc_flow_bh1_sigma_min", "scheduling_unipc_multistep", "UniPCMultistepScheduler", dict(solver_type="bh1", final_sigmas_type="sigma_min"), {}, [5]),
    ("unipc_flow_sigma_min", "scheduling_unipc_multistep", "UniPCMultistepScheduler", dict(flow_shift=5.0, final_sigmas_type="sigma_min"), {},
     [5, 12]),
    ("unipc_flow_dynamic_terminal", "scheduling_unipc_multistep", "UniPCMultistepScheduler",
     dict(use_dynamic_shifting=True, shift_terminal=0.05), dict(mu=1.2), [5, 12]),
    ("unipc_flow_dynamic_linear", "scheduling_unipc_multistep", "UniPCMultistepScheduler",
     dict(use_dynamic_shifting=True, time_shift_type="linear"), dict(mu=0.7), [5]),
]


def make_multistep(src_dir, wide):
    dtype = torch.float64 if wide else torch.float32
    classes = {}
    cases, seed = [], 701
    for name, module, cls_name, config, extras, counts in MULTISTEP_CASES:
        if module not in classes:
            classes[module] = load(src_dir, wide, module, cls_name)
        cls = classes[module]
        for n in counts:
            seed += 1
            full = dict(config, use_flow_sigmas=True, prediction_type="flow_prediction")
            scheduler = cls(**full)
            scheduler.set_timesteps(n, **extras)
            rng = np.random.default_rng(seed)
            z = torch.from_numpy(rng.standard_normal(SHAPE)).to(dtype)
            latents = z
            steps = []
            for t in scheduler.timesteps:
                noise = torch.from_numpy(rng.standard_normal(SHAPE)).to(dtype)
                out = base.model(latents, t)
                base.NOISE_QUEUE.clear()
                base.NOISE_QUEUE.append(noise)
                prev = scheduler.step(out, t, latents).prev_sample
                uses_noise = not base.NOISE_QUEUE
                steps.append({"timestep": int(t), "model_input": latents.flatten().tolist(), "model_output": out.flatten().tolist(),
                              "noise": noise.flatten().tolist() if uses_noise else [], "prev_sample": prev.flatten().tolist()})
                latents = prev
            cases.append({"name": name, "class": cls_name, "config": full, "set_timesteps": extras, "steps": n,
                          "initial_noise": z.flatten().tolist(), "sigmas": [float(v) for v in scheduler.sigmas],
                          "timesteps": [int(v) for v in scheduler.timesteps], "trajectory": steps})
    return cases


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    src_dir = sys.argv[1]
    out_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "flow")
    os.makedirs(out_dir, exist_ok=True)
    for wide, name in ((True, "flow_float64.json"), (False, "flow_float32.json")):
        cases, grids = make(src_dir, wide)
        meta = {"diffusers_commit": "58eb52c0803ea9af3abec60841c2a093bdf1f951", "diffusers_version": "0.40.0.dev0",
                "module": MODULE + ".py", "torch": torch.__version__, "numpy": np.__version__, "shape": list(SHAPE),
                "variant": "float64 dtype literals" if wide else "verbatim float32", "shift3_n10_grids": grids, "cases": cases}
        with open(os.path.join(out_dir, name), "w") as f:
            json.dump(meta, f, separators=(",", ":"))
        print(name, len(cases), "cases", file=sys.stderr)
    for wide, name in ((True, "flow_multistep_float64.json"), (False, "flow_multistep_float32.json")):
        cases = make_multistep(src_dir, wide)
        meta = {"diffusers_commit": "58eb52c0803ea9af3abec60841c2a093bdf1f951", "diffusers_version": "0.40.0.dev0",
                "modules": ["scheduling_dpmsolver_multistep.py", "scheduling_unipc_multistep.py"], "torch": torch.__version__,
                "numpy": np.__version__, "shape": list(SHAPE), "variant": "float64 dtype literals" if wide else "verbatim float32",
                "cases": cases}
        with open(os.path.join(out_dir, name), "w") as f:
            json.dump(meta, f, separators=(",", ":"))
        print(name, len(cases), "cases", file=sys.stderr)
    for wide, name in ((True, "flow_heun_float64.json"), (False, "flow_heun_float32.json")):
        cases = make_heun(src_dir, wide)
        meta = {"diffusers_commit": "58eb52c0803ea9af3abec60841c2a093bdf1f951", "diffusers_version": "0.40.0.dev0",
                "module": HEUN_MODULE + ".py", "torch": torch.__version__, "numpy": np.__version__, "shape": list(SHAPE),
                "variant": "float64 dtype literals" if wide else "verbatim float32", "cases": cases}
        with open(os.path.join(out_dir, name), "w") as f:
            json.dump(meta, f, separators=(",", ":"))
        print(name, len(cases), "cases", file=sys.stderr)


if __name__ == "__main__":
    main()
