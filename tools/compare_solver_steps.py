#!/usr/bin/python3
"""Times one step of each samplers/ solver against the same step of diffusers' own scheduler in PyTorch, and
prints medians and ratios measured in the same run.

usage: /usr/bin/python3 tools/compare_solver_steps.py DIFFUSERS_SRC_DIR --bench build-bench/benchmarks/bench_solvers

DIFFUSERS_SRC_DIR is a diffusers checkout's src/diffusers folder; its scheduler modules are imported unchanged,
with the framework stubs of tools/make_solver_fixtures.py (no arithmetic in them), except that randn_tensor
draws with torch.randn, as diffusers' does on the CPU, so the SDE / ancestral rows include noise generation on
both sides (diffuse's from its counter-based generator).

Each diffusers scheduler is built as bench_solvers builds its solver (scaled_linear betas 0.00085 … 0.012,
1000 training steps, 20 inference steps, the class defaults otherwise; the flow-matching and EDM classes, which
have no beta schedule, with their defaults alone), run through the positions before the
timed one with a closed-form model output, and then scheduler.step(model_output, t, sample) at that position
(5; 4 for the Heun classes' first, predictor, evaluation) is timed over and over on (1, 4, n/4) float32 tensors under
torch.inference_mode(), the scheduler's state (step index, history lists, last sample) restored before each
call. That restoring costs a few microseconds of Python (measured and printed, and subtracted). Both sides run
on one thread (torch.set_num_threads(1); bench_solvers sets OpenMP to one thread). diffusers' step is what a
pipeline calls once per model evaluation; Euler-family pipelines also call scale_model_input, which is not
timed here (diffuse's Euler step writes the next model input in the same pass).

The script re-executes itself with jemalloc preloaded for PyTorch, as tools/compare_steps.py does.
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from compare_steps import reexec_with_allocator, time_median  # noqa: E402

SIZES = [100 << 10, 16 << 20]
# bench_solvers benchmark → (module, class, constructor options, timed position, what the row is)
SOLVERS = [
    ("BM_dpm2m", "scheduling_dpmsolver_multistep", "DPMSolverMultistepScheduler", dict(solver_order=2), 5, "DPM-Solver++ 2M"),
    ("BM_dpm3m", "scheduling_dpmsolver_multistep", "DPMSolverMultistepScheduler", dict(solver_order=3), 5, "DPM-Solver++ 3M"),
    ("BM_sde_dpm2m", "scheduling_dpmsolver_multistep", "DPMSolverMultistepScheduler",
     dict(solver_order=2, algorithm_type="sde-dpmsolver++"), 5, "SDE-DPM-Solver++ 2M + noise"),
    ("BM_unipc2", "scheduling_unipc_multistep", "UniPCMultistepScheduler", dict(solver_order=2), 5, "UniPC-2 (P + C)"),
    ("BM_unipc3", "scheduling_unipc_multistep", "UniPCMultistepScheduler", dict(solver_order=3), 5, "UniPC-3 (P + C)"),
    ("BM_euler", "scheduling_euler_discrete", "EulerDiscreteScheduler", {}, 5, "Euler"),
    ("BM_euler_ancestral", "scheduling_euler_ancestral_discrete", "EulerAncestralDiscreteScheduler", {}, 5,
     "Euler ancestral + noise"),
    ("BM_heun_predictor", "scheduling_heun_discrete", "HeunDiscreteScheduler", {}, 4, "Heun, first evaluation"),
    ("BM_dpm2m_flow", "scheduling_dpmsolver_multistep", "DPMSolverMultistepScheduler",
     dict(solver_order=2, use_flow_sigmas=True, flow_shift=1.0, prediction_type="flow_prediction"), 5, "DPM-Solver++ 2M, flow sigmas"),
    ("BM_flow_euler", "scheduling_flow_match_euler_discrete", "FlowMatchEulerDiscreteScheduler", None, 5, "flow Euler"),
    ("BM_flow_heun_predictor", "scheduling_flow_match_heun_discrete", "FlowMatchHeunDiscreteScheduler", None, 4,
     "flow Heun, first evaluation"),
    ("BM_edm_euler", "scheduling_edm_euler", "EDMEulerScheduler", None, 5, "EDM Euler"),
    ("BM_edm_dpm2m", "scheduling_edm_dpmsolver_multistep", "EDMDPMSolverMultistepScheduler", None, 5, "EDM DPM-Solver++ 2M"),
    ("BM_lcm", "scheduling_lcm", "LCMScheduler", {}, 5, "LCM + noise"),
]
# Options None: a class without a beta schedule (flow matching, EDM), built with its defaults alone.
SCHEDULE = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)


def load_schedulers(src_dir, torch):
    import make_solver_fixtures as fx

    modules = fx.load_variant(src_dir, wide=False)
    schedulers = os.path.join(src_dir, "schedulers")
    for name in {row[1] for row in SOLVERS} - set(modules):
        fx.install_stubs(schedulers)
        modules[name] = fx.load_module(os.path.join(schedulers, name + ".py"), name)

    def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
        return torch.randn(shape, generator=generator, dtype=dtype)

    for m in modules.values():
        if hasattr(m, "randn_tensor"):
            m.randn_tensor = randn_tensor
    return modules


def snapshot(obj):
    return {k: (list(v) if isinstance(v, list) else v) for k, v in vars(obj).items()}


def restore(obj, saved):
    obj.__dict__.update({k: (list(v) if isinstance(v, list) else v) for k, v in saved.items()})


def diffusers_step(torch, cls, options, position, n):
    """A closure that runs cls.step at `position` from the same state every call, and one that only restores."""
    scheduler = cls() if options is None else cls(**SCHEDULE, **options)
    scheduler.set_timesteps(20)
    shape = (1, 4, n // 4)
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(shape, generator=g)
    out = torch.randn(shape, generator=g)
    for j in range(position):
        t = scheduler.timesteps[j]
        scheduler.is_scale_input_called = True
        sample = scheduler.step(0.9 * out + 0.01 * j, t, sample).prev_sample
    t = scheduler.timesteps[position]
    scheduler.is_scale_input_called = True  # Euler-family classes warn once per step otherwise
    saved = snapshot(scheduler)

    def step():
        restore(scheduler, saved)
        return scheduler.step(out, t, sample).prev_sample

    def restore_only():
        restore(scheduler, saved)

    return step, restore_only


def run_ours(bench, repetitions):
    cmd = [bench, "--benchmark_filter=BM_(dpm|sde|unipc|euler|heun|flow|edm|lcm)", f"--benchmark_repetitions={repetitions}",
           "--benchmark_report_aggregates_only=true", "--benchmark_format=json"]
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    medians = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name") == "median":
            scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
            medians[b["run_name"]] = b["real_time"] * scale
    return medians


def main():
    reexec_with_allocator()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("diffusers_src", help="a diffusers checkout's src/diffusers folder")
    parser.add_argument("--bench", default="build-bench/benchmarks/bench_solvers", help="path to bench_solvers")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds per PyTorch repetition")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    modules = load_schedulers(args.diffusers_src, torch)
    ours = run_ours(args.bench, args.repetitions)
    print(f"PyTorch {torch.__version__}, 1 thread, jemalloc {'on' if 'jemalloc' in os.environ.get('LD_PRELOAD', '') else 'off'};"
          f" medians of {args.repetitions} repetitions; diffusers step() minus the state restore")
    print()
    header = f"{'step':<30}{'elements':>10}{'diffuse':>12}{'diffusers':>12}{'ratio':>9}"
    print(header)
    print("-" * len(header))
    with torch.inference_mode():
        for bench_name, module, cls_name, options, position, label in SOLVERS:
            for n in SIZES:
                step, restore_only = diffusers_step(torch, getattr(modules[module], cls_name), options, position, n)
                t_restore = time_median(restore_only, args.repetitions, args.min_time / 4)
                t_torch = time_median(step, args.repetitions, args.min_time) - t_restore
                t_ours = ours[f"{bench_name}/{n}"]
                print(f"{label:<30}{n:>10}{t_ours * 1e6:>10.1f}us{t_torch * 1e6:>10.1f}us{t_torch / t_ours:>8.1f}x", flush=True)
    print(f"\n(state restore: {t_restore * 1e6:.1f} us per call, subtracted)")


if __name__ == "__main__":
    main()
