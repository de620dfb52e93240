#!/usr/bin/python3
"""Times diffuse's UNet and sampling loop against the same work in ONNX Runtime and PyTorch, in one run,
and prints ratios.

For every cell (shape × batch × threads) the sides run back to back, so all see the same machine load;
each figure is the median of several repetitions, and with --rounds N the median of N such rounds. The
models are the same architecture (tools/torch_unet.py is diffusers' UNet2DModel in plain torch ops, the
layout the C++ UNet loads) with random weights on every side: no operation's speed depends on the weight
values.

  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DDIFFUSE_BUILD_BENCHMARKS=ON && cmake --build build --target bench_unet
  /usr/bin/python3 tools/compare_unet.py [--bench build/benchmarks/bench_unet] [--repetitions 5] [--rounds 2] [--quick]

ONNX Runtime (CPU execution provider, its MLAS kernels) is the third column when its npm package is
present: it bundles libonnxruntime.so, and node only calls it (microseconds against millisecond
forwards). Install it outside the sources or under the ignored build/ folder, with no install scripts
(they would download CUDA libraries):

  mkdir -p build/ort && (cd build/ort && npm install --ignore-scripts onnxruntime-node@1.30.0)

and point --ort at build/ort/node_modules/onnxruntime-node (the default) or elsewhere. The three models are
exported once with torch.onnx (opset 16, dynamic batch) into --onnx-dir (default: next to the package).
Without node or the package the column is skipped with a message saying so.

PyTorch is set up the way a serious CPU user runs it: Debian's OpenBLAS (libopenblas0-openmp, which
install-deps.sh --python installs) instead of the reference BLAS, jemalloc preloaded with decay off
(libjemalloc2) so that large temporaries are not returned to the kernel and faulted in again each call,
and OPENBLAS_CORETYPE=SkylakeX on AVX-512 CPUs OpenBLAS does not recognise. The script re-executes
itself with that environment.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"


def tuned_environment():
    env = dict(os.environ)
    flags = open("/proc/cpuinfo").read()
    if " avx512f" in flags:
        env.setdefault("OPENBLAS_CORETYPE", "SkylakeX")
    if os.path.exists(JEMALLOC):
        env["LD_PRELOAD"] = JEMALLOC
        env["MALLOC_CONF"] = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
    env["DIFFUSE_COMPARE_TUNED"] = "1"
    return env


if os.environ.get("DIFFUSE_COMPARE_TUNED") != "1":
    os.execve(sys.executable, [sys.executable] + sys.argv, tuned_environment())

import torch  # noqa: E402

sys.path.insert(0, HERE)
from torch_unet import UNet2DModel  # noqa: E402

SHAPES = {
    0: ("digits", {"sample_size": 16, "in_channels": 1, "out_channels": 1, "block_out_channels": [32, 64],
                   "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
                   "attention_head_dim": 16, "norm_num_groups": 8, "num_class_embeds": 11}),
    1: ("cifar_small", {"sample_size": 32, "block_out_channels": [64, 128, 128],
                        "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
                        "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"], "attention_head_dim": None}),
    2: ("ddpm_cifar10", {"sample_size": 32, "block_out_channels": [128, 256, 256, 256],
                         "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
                         "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"], "attention_head_dim": None}),
}


def run_ours(bench, pattern, repetitions):
    """Median real time (ms) and counters of the benchmarks matching `pattern`."""
    out = subprocess.run([bench, f"--benchmark_filter={pattern}", f"--benchmark_repetitions={repetitions}",
                          "--benchmark_format=json", "--benchmark_report_aggregates_only=true"],
                         check=True, capture_output=True, text=True).stdout
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name") == "median":
            scale = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[b["time_unit"]]
            return b["real_time"] * scale, b
    raise RuntimeError(f"no median for {pattern}")


def median_ms(fn, repetitions, warmup=1, min_seconds=0.2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repetitions):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            if time.perf_counter() - t0 >= min_seconds:
                break
        times.append((time.perf_counter() - t0) / n * 1e3)
    return statistics.median(times)


def ort_setup(args):
    """The exported models' folder when ONNX Runtime can run, else None (after saying why)."""
    if not os.path.isdir(args.ort) or not os.path.exists(os.path.join(args.ort, "package.json")):
        print(f"ONNX Runtime column skipped: no onnxruntime-node package at {args.ort}; install it with\n"
              "  mkdir -p build/ort && (cd build/ort && npm install --ignore-scripts onnxruntime-node@1.30.0)\n"
              "or pass --ort PATH/node_modules/onnxruntime-node\n")
        return None
    if subprocess.run(["node", "--version"], capture_output=True).returncode != 0:
        print("ONNX Runtime column skipped: node (nodejs) is not installed\n")
        return None
    out = args.onnx_dir or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.ort))), "models")
    os.makedirs(out, exist_ok=True)
    for which, (name, _) in SHAPES.items():
        path = os.path.join(out, f"{name}.onnx")
        if os.path.exists(path):
            continue
        model = torch_model(which)
        cfg = model.config
        x = torch.full((2, cfg["in_channels"], cfg["sample_size"], cfg["sample_size"]), 0.5)
        t = torch.full((2,), 500.0)
        inputs = (x, t, torch.full((2,), 3, dtype=torch.long)) if cfg["num_class_embeds"] else (x, t)
        names = ["x", "t", "labels"][:len(inputs)]
        axes = {n: {0: "batch"} for n in names + ["out"]}
        torch.onnx.export(model, inputs, path, input_names=names, output_names=["out"], dynamic_axes=axes, opset_version=16)
    return out


def ort_ms(args, onnx_dir, which, batch, threads):
    """Median ms per ONNX Runtime forward, in a fresh node process."""
    name, cfg = SHAPES[which]
    env = dict(os.environ, ORT_NODE=os.path.abspath(args.ort), OMP_NUM_THREADS=str(threads))
    env.pop("LD_PRELOAD", None)  # ORT keeps its own allocator; jemalloc is PyTorch's tuning
    cmd = ["node", os.path.join(HERE, "ort_time_unet.js"), os.path.join(onnx_dir, f"{name}.onnx"), str(cfg.get("in_channels", 3)),
           str(cfg["sample_size"]), "1" if cfg.get("num_class_embeds") else "0", str(batch), str(threads), str(args.repetitions)]
    return float(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)


def torch_model(which):
    torch.manual_seed(0)
    model = UNet2DModel(SHAPES[which][1]).eval()
    return model


def torch_forward(model, which, batch):
    cfg = model.config
    size = cfg["sample_size"]
    x = torch.full((batch, cfg["in_channels"], size, size), 0.5)
    t = torch.full((batch,), 500.0)
    labels = torch.full((batch,), 3, dtype=torch.long) if cfg["num_class_embeds"] else None

    def fn():
        with torch.inference_mode():
            model(x, t, labels)
    return fn


def torch_ddim_cfg(model, steps=50, n=16, scale=2.0):
    """The same loop as BM_sample_digits_ddim50_cfg: v-prediction, x̂0 clipped, ε̂ re-derived, trailing."""
    import math
    T = 1000
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = [min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)]
    ab, acc = [], 1.0
    for b in betas:
        acc *= 1 - b
        ab.append(acc)
    ts = [int(round(T + k * ((T - T / steps) - T))) - 1 for k in range(steps)]
    labels = torch.arange(n) % 10
    both_labels = torch.cat([labels, torch.full_like(labels, 10)])

    def fn():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, 1, 16, 16, generator=g)
        with torch.inference_mode():
            for i, t in enumerate(ts):
                abt = ab[t]
                abp = ab[ts[i + 1]] if i + 1 < len(ts) else 1.0
                out = model(torch.cat([x, x]), torch.full((2 * n,), float(t)), both_labels)
                vc, vu = out[:n], out[n:]
                v = vu + scale * (vc - vu)
                a, b = math.sqrt(abt), math.sqrt(1 - abt)
                x0 = (a * x - b * v).clamp(-1, 1)
                eps = (x - a * x0) / b
                x = math.sqrt(abp) * x0 + math.sqrt(1 - abp) * eps
    return fn


def torch_forward_rss(which):
    """(peak RSS MB during one forward at batch 1 on one thread, its growth over the RSS just before),
    in a fresh process, with the peak reset after the model is built (/proc/self/clear_refs, Linux)."""
    code = f"""
import sys, torch
sys.path.insert(0, {HERE!r})
from compare_unet import SHAPES
from torch_unet import UNet2DModel
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return float(line.split()[1]) / 1024
torch.set_num_threads(1)
model = UNet2DModel(SHAPES[{which}][1]).eval()
cfg = model.config
x = torch.full((1, cfg["in_channels"], cfg["sample_size"], cfg["sample_size"]), 0.5)
t = torch.full((1,), 500.0)
y = torch.full((1,), 3, dtype=torch.long) if cfg["num_class_embeds"] else None
open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS")
with torch.inference_mode():
    model(x, t, y)
print(status("VmHWM"), status("VmHWM") - before)
"""
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env).stdout.split()
    return float(out[0]), float(out[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default=os.path.join(ROOT, "build", "benchmarks", "bench_unet"))
    ap.add_argument("--repetitions", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="batch 1 and digits only")
    ap.add_argument("--rounds", type=int, default=1, help="rounds over all cells; each figure is the median of the rounds")
    ap.add_argument("--ort", default=os.path.join(ROOT, "build", "ort", "node_modules", "onnxruntime-node"),
                    help="the onnxruntime-node package folder (see the docstring)")
    ap.add_argument("--onnx-dir", default=None, help="where the exported .onnx models are (made if missing)")
    ap.add_argument("--forward-only", action="store_true", help="only the forward table")
    args = ap.parse_args()
    if not os.path.exists(args.bench):
        sys.exit(f"{args.bench} not found: build it with -DDIFFUSE_BUILD_BENCHMARKS=ON (see the docstring)")
    print(f"torch {torch.__version__}, BLAS: {torch.__config__.show().count('openblas') and 'OpenBLAS' or 'see torch config'}, "
          f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '')}")

    peaks = {}
    for threads in (1, 2):
        ms, b = run_ours(args.bench, f"BM_sgemm/threads:{threads}/", args.repetitions)
        peaks[threads] = b["GFLOPs"]
    print(f"Eigen sgemm peak (256x2304 by 2304x1024): {peaks[1]:.1f} GFLOP/s on 1 thread, {peaks[2]:.1f} on 2\n")

    onnx_dir = ort_setup(args)
    shapes = [0] if args.quick else [0, 1, 2]
    batches = [1] if args.quick else [1, 16]
    cells = {}
    models = {which: torch_model(which) for which in shapes}
    for r in range(args.rounds):
        for which in shapes:
            for batch in batches:
                for threads in (1, 2):
                    torch.set_num_threads(threads)
                    ours, b = run_ours(args.bench, f"BM_unet_forward/shape:{which}/batch:{batch}/threads:{threads}/", args.repetitions)
                    ort = ort_ms(args, onnx_dir, which, batch, threads) if onnx_dir else float("nan")
                    theirs = median_ms(torch_forward(models[which], which, batch), args.repetitions)
                    cells.setdefault((which, batch, threads), []).append((ours, ort, theirs, b["GFLOPs"]))
                    print(f"round {r + 1}: {SHAPES[which][0]} batch {batch} threads {threads}: diffuse {ours:.2f} ms, "
                          f"ONNX Runtime {ort:.2f}, PyTorch {theirs:.2f}", flush=True)

    print("\n| shape | batch | threads | diffuse ms | ONNX Runtime ms | PyTorch ms | vs ONNX Runtime | vs PyTorch | diffuse GFLOP/s "
          "| % of sgemm peak |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (which, batch, threads), runs in cells.items():
        # Ratios per round (both sides under the same load), then the median over rounds.
        med = lambda values: statistics.median(values)
        ours, ort, theirs, gflops = (med([run[i] for run in runs]) for i in range(4))
        vs_ort = med([run[1] / run[0] for run in runs])
        vs_torch = med([run[2] / run[0] for run in runs])
        ort_text = f"{ort:.2f} | {vs_ort:.2f}x" if onnx_dir else "– | –"
        print(f"| {SHAPES[which][0]} | {batch} | {threads} | {ours:.2f} | {ort_text.split(' | ')[0]} | {theirs:.2f} | "
              f"{ort_text.split(' | ')[1]} | {vs_torch:.2f}x | {gflops:.1f} | {100 * gflops / peaks[threads]:.0f}% |", flush=True)
    print("\n(vs X = X's time / diffuse's time: above 1, diffuse is faster)")

    if not args.quick and not args.forward_only:
        print("\nEnd to end: DDIM-50 with classifier-free guidance (w = 2, batched), digits model, batch 16\n")
        print("| threads | diffuse s | PyTorch s | speed-up |")
        print("|---|---|---|---|")
        model = torch_model(0)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            ours, _ = run_ours(args.bench, f"BM_sample_digits_ddim50_cfg/threads:{threads}/", max(3, args.repetitions // 2))
            theirs = median_ms(torch_ddim_cfg(model), max(3, args.repetitions // 2), warmup=1, min_seconds=0)
            print(f"| {threads} | {ours / 1e3:.2f} | {theirs / 1e3:.2f} | {theirs / ours:.2f}x |", flush=True)

        print("\nMemory: one forward at batch 1 on one thread, each in a fresh process (peak RSS during the forward,")
        print("and its growth over the RSS just before it; the peak is reset after the model is built)\n")
        print("| shape | diffuse peak MB | PyTorch peak MB | ratio | diffuse growth MB | PyTorch growth MB | diffuse growth on a 2nd forward |")
        print("|---|---|---|---|---|---|---|")
        for which in shapes:
            out = subprocess.run([args.bench, f"--benchmark_filter=BM_forward_memory/shape:{which}/", "--benchmark_format=json"],
                                 check=True, capture_output=True, text=True).stdout
            ours = json.loads(out)["benchmarks"][0]
            theirs_peak, theirs_growth = torch_forward_rss(which)
            print(f"| {SHAPES[which][0]} | {ours['peak_MB']:.1f} | {theirs_peak:.1f} | {ours['peak_MB'] / theirs_peak:.2f} | "
                  f"{ours['forward_MB']:.1f} | {theirs_growth:.1f} | {ours['repeat_MB']:.1f} |", flush=True)

if __name__ == "__main__":
    main()
