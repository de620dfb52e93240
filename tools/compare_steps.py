#!/usr/bin/python3
"""Times one DDIM and one DDPM sampler step in PyTorch, written as diffusers writes them, against
diffuse's benchmarks/bench_steps run from this same script, and prints a table of medians and ratios.

The PyTorch steps are those of diffusers' DDIMScheduler.step (v_prediction, clip_sample, eta = 0.5) and
DDPMScheduler.step (v_prediction, clip_sample, fixed_small), with the schedule coefficients as 0-dim
tensors taken from alphas_cumprod and the noise from torch.randn, under torch.inference_mode(). The
matching diffuse benchmark is BM_step_with_noise (fill_batch from the counter-based generator, then the
step); the step alone (noise given) is compared with the PyTorch step given its noise tensor.

Run with Debian's python3-torch:

    /usr/bin/python3 tools/compare_steps.py --bench build-steps/benchmarks/bench_steps --threads 1

The script re-executes itself with jemalloc preloaded for PyTorch (LD_PRELOAD, MALLOC_CONF: freed pages
kept, so the per-op 64 MB temporaries at 16M elements are recycled rather than returned to the kernel)
and OPENBLAS_CORETYPE=SkylakeX, as a tuned PyTorch deployment would run; the step makes no BLAS call.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
SIZES = [1 << 10, 100 << 10, 16 << 20]


def reexec_with_allocator():
    if os.environ.get("DIFFUSE_COMPARE_CHILD") == "1":
        return
    env = dict(os.environ, DIFFUSE_COMPARE_CHILD="1", OPENBLAS_CORETYPE="SkylakeX")
    if os.path.exists(JEMALLOC):
        env["LD_PRELOAD"] = JEMALLOC
        env["MALLOC_CONF"] = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
    else:
        print(f"warning: {JEMALLOC} not found (Debian libjemalloc2); PyTorch runs on glibc malloc", file=sys.stderr)
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def time_median(fn, repetitions, min_time):
    """Median over repetitions of the mean time per call, each repetition running >= min_time seconds."""
    fn()
    fn()
    calls = 1
    while True:  # calibrate the number of calls per repetition
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time / 4 or calls >= 1 << 20:
            break
        calls *= 2
    calls = max(1, int(calls * min_time / max(elapsed, 1e-9)))
    samples = []
    for _ in range(repetitions):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def torch_steps(torch, n):
    """The diffusers step bodies on (1, 4, n/4) float32 tensors; returns closures with and without randn."""
    shape = (1, 4, n // 4)
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(shape, generator=g)
    model_output = torch.randn(shape, generator=g)
    given_noise = torch.randn(shape, generator=g)

    # DDIMScheduler: scaled_linear betas, trailing 50 steps, t = 799 -> 779 at list position 10.
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float32) ** 2
    ddim_alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    # DDPMScheduler: linear betas, t = 499 -> 498.
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float32)
    ddpm_alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    eta, clip = 0.5, 1.0

    def ddim(noise):
        timestep, prev_timestep = 799, 779
        alpha_prod_t = ddim_alphas_cumprod[timestep]
        alpha_prod_t_prev = ddim_alphas_cumprod[prev_timestep]
        beta_prod_t = 1 - alpha_prod_t
        pred_original_sample = (alpha_prod_t**0.5) * sample - (beta_prod_t**0.5) * model_output
        pred_epsilon = (alpha_prod_t**0.5) * model_output + (beta_prod_t**0.5) * sample
        pred_original_sample = pred_original_sample.clamp(-clip, clip)
        beta_prod_t_prev = 1 - alpha_prod_t_prev
        variance = (beta_prod_t_prev / beta_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev)
        std_dev_t = eta * variance ** (0.5)
        pred_sample_direction = (1 - alpha_prod_t_prev - std_dev_t**2) ** (0.5) * pred_epsilon
        prev_sample = alpha_prod_t_prev ** (0.5) * pred_original_sample + pred_sample_direction
        variance_noise = torch.randn(model_output.shape, dtype=model_output.dtype) if noise is None else noise
        return prev_sample + std_dev_t * variance_noise

    one = torch.tensor(1.0)

    def ddpm(noise):
        t, prev_t = 499, 498
        alpha_prod_t = ddpm_alphas_cumprod[t]
        alpha_prod_t_prev = ddpm_alphas_cumprod[prev_t] if prev_t >= 0 else one
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_t_prev = 1 - alpha_prod_t_prev
        current_alpha_t = alpha_prod_t / alpha_prod_t_prev
        current_beta_t = 1 - current_alpha_t
        pred_original_sample = (alpha_prod_t**0.5) * sample - (beta_prod_t**0.5) * model_output
        pred_original_sample = pred_original_sample.clamp(-clip, clip)
        pred_original_sample_coeff = (alpha_prod_t_prev ** (0.5) * current_beta_t) / beta_prod_t
        current_sample_coeff = current_alpha_t ** (0.5) * beta_prod_t_prev / beta_prod_t
        pred_prev_sample = pred_original_sample_coeff * pred_original_sample + current_sample_coeff * sample
        variance = (1 - alpha_prod_t_prev) / (1 - alpha_prod_t) * current_beta_t
        variance = torch.clamp(variance, min=1e-20)
        variance_noise = torch.randn(model_output.shape, dtype=model_output.dtype) if noise is None else noise
        return pred_prev_sample + (variance**0.5) * variance_noise

    return {
        ("ddim", True): lambda: ddim(None),
        ("ddim", False): lambda: ddim(given_noise),
        ("ddpm", True): lambda: ddpm(None),
        ("ddpm", False): lambda: ddpm(given_noise),
    }


def run_ours(bench, threads, repetitions):
    """Medians (seconds per step) of bench_steps' step benchmarks at `threads` threads."""
    filt = f"BM_(step_with_noise|ddim_step|ddpm_step|triad)/.*threads:{threads}/"
    cmd = [bench, f"--benchmark_filter={filt}", f"--benchmark_repetitions={repetitions}",
           "--benchmark_report_aggregates_only=true", "--benchmark_format=json"]
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    medians = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        name = b["run_name"]
        scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
        medians[name] = (b["real_time"] * scale, b.get("bytes_per_second"))
    return medians


def main():
    reexec_with_allocator()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", default="build-steps/benchmarks/bench_steps", help="path to bench_steps")
    parser.add_argument("--threads", type=int, default=1, help="threads for both (torch.set_num_threads, OpenMP)")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds per PyTorch repetition")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    ours = run_ours(args.bench, args.threads, args.repetitions)
    print(f"PyTorch {torch.__version__}, {args.threads} thread(s), jemalloc {'on' if 'jemalloc' in os.environ.get('LD_PRELOAD', '') else 'off'};"
          f" medians of {args.repetitions} repetitions")
    print()
    header = f"{'step':<26}{'elements':>10}{'diffuse':>12}{'PyTorch':>12}{'ratio':>9}"
    print(header)
    print("-" * len(header))
    rows = []
    with torch.inference_mode():
        for sampler in ("ddim", "ddpm"):
            for with_noise in (True, False):
                for n in SIZES:
                    fns = torch_steps(torch, n)
                    t_torch = time_median(fns[(sampler, with_noise)], args.repetitions, args.min_time)
                    if with_noise:
                        key = f"BM_step_with_noise/n:{n}/ddpm:{int(sampler == 'ddpm')}/threads:{args.threads}/real_time"
                    else:
                        key = f"BM_{sampler}_step/n:{n}/simd:1/check:1/threads:{args.threads}/real_time"
                    t_ours = ours[key][0]
                    label = f"{sampler.upper()} {'+ noise generation' if with_noise else '(noise given)'}"
                    rows.append((label, n, t_ours, t_torch))
                    print(f"{label:<26}{n:>10}{t_ours * 1e6:>10.1f}us{t_torch * 1e6:>10.1f}us{t_torch / t_ours:>8.1f}x")
    print()
    print("bandwidth of the fused step (16 bytes/element) against the STREAM triad in the same binary:")
    for n in SIZES:
        triad = ours[f"BM_triad/n:{n}/threads:{args.threads}/real_time"][1]
        for sampler in ("ddim", "ddpm"):
            for simd, check in ((1, 1), (1, 0), (0, 1)):
                bw = ours[f"BM_{sampler}_step/n:{n}/simd:{simd}/check:{check}/threads:{args.threads}/real_time"][1]
                print(f"  {sampler} n={n:<9} simd={simd} check={check}: {bw / 1e9:6.1f} GB/s = {100 * bw / triad:5.1f}% of triad "
                      f"({triad / 1e9:.1f} GB/s)")


if __name__ == "__main__":
    main()
